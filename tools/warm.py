"""Warm sandboxed processes: the grader's side of ``tools/zygote.py``.

One warm parent per grading process (started on first use, inside the same bwrap sandbox a
cold kernel gets, with the capabilities it needs to isolate its copies; it never runs student
code). Each sandboxed process the grader needs, the notebook's kernel
(:class:`tools.sandbox.SandboxKernelManager`) or the verdict's student process
(:class:`tools.verdict.StudentProcess`), is then a fork of it, isolated before any student code
runs, reached through a tiny stand-in process (``tools/warm_shim.py``) that the grader starts
and kills like the cold one. What each copy may see and do is the cold sandbox's rule set
(``tools/sandbox.py``); the test suite checks both paths with the same attacks.

Only as root (the copies change to throw-away uids and mount file systems); elsewhere, with
``KVCOURSE_WARM=0``, or when the warm parent cannot start, the grader starts cold processes as
before (a note in the log says why).

    python -m tools.warm        # start a warm parent, time one copy, print the status
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "KVCOURSE_WARM"
#: The warm parent's socket, for processes this grader starts (the verdict's grader forks).
SOCKET_ENV = "KVCOURSE_WARM_SOCKET"
HERE = Path(__file__).resolve().parent
SHIM = HERE / "warm_shim.py"
START_TIMEOUT = 120.0


def setting() -> bool:
    """``KVCOURSE_WARM``: on unless 0/off/no/false."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "off", "no", "false")


@dataclass
class Parent:
    """A running warm parent: its bwrap process, its staging folder and socket."""

    process: subprocess.Popen
    stage: Path
    #: the process that started it (a fork of that process reaches it through the socket only)
    owner: int = 0
    #: :func:`code_version` when it started: its imports are of that version
    version: tuple = ()

    @property
    def socket(self) -> Path:
        return self.stage / "zygote.sock"

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.stage, ignore_errors=True)


_PARENT: Parent | None = None
_LOCK = threading.Lock()
_WHY_COLD: str | None = None


def lab_modules() -> list[str]:
    """The modules the labs import (``import X``, ``from X import Y``: X, and X.Y in case it
    is a module), for the warm parent to import before its first fork. A new lab's imports are
    warmed with no other edit."""
    import ast

    from tools import layout

    names: set[str] = set()
    for path in layout.lab_files():
        try:
            tree = ast.parse(path.read_text())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return sorted(names)


def code_version() -> tuple:
    """Modification times of ``course_lib`` and the lab files: a warm parent started before one
    of them changed holds the old code (a long-running formgrader), so it is replaced."""
    import course_lib
    from tools import layout

    files = sorted(Path(course_lib.__file__).resolve().parent.rglob("*.py")) + layout.lab_files()
    return tuple((str(f), f.stat().st_mtime_ns) for f in files if f.is_file())


def _zygote_command(stage: Path) -> list[str]:
    from tools import sandbox

    program = (HERE / "zygote.py").read_text()
    cmd = [sys.executable, "-c", program, str(stage / "zygote.sock"), json.dumps(lab_modules())]
    return sandbox.wrap_command(cmd, None, stage, warm_parent=True)


def start_parent() -> Parent:
    """Start a warm parent and wait until it has imported everything (a few seconds)."""
    stage = Path(tempfile.mkdtemp(prefix="kvwarm-", dir="/tmp"))
    stage.chmod(0o700)
    process = subprocess.Popen(_zygote_command(stage), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert process.stdout is not None
    answer: list[str] = []
    reader = threading.Thread(target=lambda: answer.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    parent = Parent(process, stage, os.getpid(), code_version())
    if not answer or not answer[0].startswith('{"ready"'):
        parent.close()
        raise RuntimeError(f"the warm parent did not start ({(answer or ['no answer'])[0].strip()[:200]})")
    return parent


def available() -> bool:
    """Whether sandboxed processes can be warm copies here (root, sandbox on, setting on)."""
    from tools import sandbox

    return setting() and os.geteuid() == 0 and sandbox.enabled()


def socket_path() -> str | None:
    """The warm parent's socket for this grading process: started on first use (or the one
    this process inherited through ``KVCOURSE_WARM_SOCKET``); None means: start cold."""
    global _PARENT, _WHY_COLD
    if not available():
        return None
    with _LOCK:
        if _PARENT is not None and _PARENT.owner == os.getpid():
            if _PARENT.alive() and _PARENT.version == code_version():
                return str(_PARENT.socket)
            _PARENT.close()
            _PARENT = None
        inherited = os.environ.get(SOCKET_ENV)
        if inherited and _reachable(inherited):
            return inherited
        try:
            _PARENT = start_parent()
        except (OSError, RuntimeError, ValueError) as exc:
            _WHY_COLD = str(exc)
            print(f"warm sandbox unavailable, starting cold processes: {exc}", file=sys.stderr, flush=True)
            os.environ[ENV_VAR] = "0"  # do not try again in this process
            return None
        os.environ[SOCKET_ENV] = str(_PARENT.socket)
        return str(_PARENT.socket)


def _reachable(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            probe.connect(path)
        return True
    except OSError:
        return False


def stop() -> None:
    """End this process's warm parent (its copies die with it)."""
    global _PARENT
    with _LOCK:
        if _PARENT is not None and _PARENT.owner == os.getpid():
            _PARENT.close()
            os.environ.pop(SOCKET_ENV, None)
        _PARENT = None


atexit.register(stop)


def stage_files(workdir: Path | None, runtime: Path) -> Path | None:
    """Copies of the submission's non-notebook files for the copy to bind read-only
    (``runtime/../<name>-files``); None when there are none."""
    if workdir is None:
        return None
    from tools import sandbox

    entries = sandbox.visible_entries(workdir)
    if not entries:
        return None
    files = runtime.parent / f"{runtime.name}-files"
    files.mkdir(mode=0o755)
    for entry in entries:
        if entry.is_dir():
            shutil.copytree(entry, files / entry.name, symlinks=False,
                            ignore=lambda d, names: [n for n in names if sandbox.hidden_name(n)
                                                     or (Path(d) / n).is_symlink()])
        else:
            shutil.copy2(entry, files / entry.name)
    return files


def copy_command(socket: str, runtime: Path, *, uid: int | None, lab: str, limits: object,
                 procs_files: list[str], workdir: Path | None = None, program: str | None = None,
                 connection_file: str | None = None, env: dict[str, str] | None = None,
                 share_probe: bool | None = None) -> list[str]:
    """The command that starts one warm copy: a kernel (``connection_file``) or a program
    (``program``, talking over the command's standard input and output).

    ``runtime``: the copy's runtime folder, made in the parent's staging folder
    (``tools.sandbox.prepare_runtime_dir(uid, Path(socket).parent)``); ``workdir``: the
    submission folder whose non-notebook files the copy sees read-only; ``limits``: a
    ``tools.sandbox.Limits``; ``procs_files``: the budget's (``Budget.procs_files``);
    ``share_probe``: the parent measures the machine for the copy first, once per grading run
    (default: for the kernel of a lab that measures it, :func:`measures_machine`)."""
    from tools import sandbox

    if (program is None) == (connection_file is None):
        raise ValueError("give either program or connection_file")
    cleanup(runtime)  # a kernel's restart stages again
    staged = stage_files(workdir, runtime)
    request = {"kind": "program" if program is not None else "kernel", "uid": uid, "lab": lab,
               "runtime": str(runtime), "files": str(staged) if staged else None,
               "env": env if env is not None else sandbox.sandbox_env(),
               "limits": limits.for_warm_copy(),  # type: ignore[attr-defined]
               "program": program, "connection_file": connection_file,
               "share_probe": (program is None and measures_machine(lab)) if share_probe is None else share_probe}
    return shim_command(socket, request_file(runtime, request), procs_files)


@functools.cache
def measures_machine(lab: str) -> bool:
    """Whether the lab's notebook measures this machine's roofline (``roofline.measure_machine``
    in ``labs/<lab>.py``): the warm parent then measures it once for the grading run
    (``course_lib.roofline.share_measurement``) instead of every kernel measuring it again."""
    from tools import layout

    path = next((p for p in layout.lab_files() if p.stem == lab), None)
    return path is not None and "roofline.measure_machine(" in path.read_text()


def request_file(runtime: Path, request: dict) -> Path:
    """The request, written beside the runtime folder (the shim reads it, root only)."""
    path = runtime.parent / f"{runtime.name}-request.json"
    path.write_text(json.dumps(request))
    path.chmod(0o600)
    return path


def shim_command(socket: str, request: Path, cgroup_procs: list[str]) -> list[str]:
    """The command that starts one warm copy and stands in for it."""
    return [sys.executable, "-I", "-S", str(SHIM), socket, str(request), *cgroup_procs]


def cleanup(runtime: Path) -> None:
    """Remove what :func:`stage_files` and :func:`request_file` left beside ``runtime``."""
    shutil.rmtree(runtime.parent / f"{runtime.name}-files", ignore_errors=True)
    try:
        (runtime.parent / f"{runtime.name}-request.json").unlink()
    except OSError:
        pass


def status_line() -> str:
    if not setting():
        return f"warm sandboxed processes off ({ENV_VAR}=0): every kernel starts cold"
    if os.geteuid() != 0:
        return "warm sandboxed processes need root here (uids, mounts): every kernel starts cold"
    return _WHY_COLD or "warm sandboxed processes: forks of one warm parent per grading process"


def main() -> int:
    t0 = time.perf_counter()
    path = socket_path()
    print(status_line())
    if path is None:
        return 1
    print(f"warm parent ready in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
