"""Grade untrusted notebooks in a bubblewrap sandbox.

During ``nbgrader autograde`` the student's code runs in the same kernel as the hidden tests.
Without a box around that kernel it could read the restored notebook beside it (hidden tests
included), walk up to ``gradebook.db`` (every hidden test of every lab), list ``source/``,
reach the network, or take the machine down with a memory or fork bomb. This module starts
the grading kernel inside Debian's ``bwrap`` (bubblewrap) instead:

* a fresh mount namespace in which only these exist: the system (``/usr``, ``/etc``, ...),
  the Python installation and the venv (read-only), editable packages the venv points to
  (``course_lib``), a writable working folder ``/home/student/<lab>`` in memory (tmpfs)
  holding read-only binds of the submission's *non-notebook* files (``ref/`` ...; it is also
  ``HOME``), a private ``/tmp``, and one runtime folder with the kernel's connection file and
  IPC sockets (made read-only to the kernel once it has answered).
  The course root, ``source/``, ``release/``, the gradebook, other students' folders and the
  notebook being graded do not exist in there;
* new network, PID, IPC, UTS and cgroup namespaces: no network at all (not even the host's
  loopback); the client talks to the kernel over ZeroMQ ``ipc://`` sockets in the runtime
  folder, which work across network namespaces;
* as root, the kernel runs as an unprivileged throw-away uid with no capabilities and
  ``no_new_privs``; it is killed with its parent (``--die-with-parent``) and every process it
  forks dies with the PID namespace;
* rlimits: data segment (memory), CPU seconds, processes+threads, file size; tmpfs sizes.

Why ``transport = "ipc"`` failed when set globally in ``nbgrader_config.py``: jupyter_client
derives the socket path from ``KernelManager.ip``, whose default for IPC is the *relative*
path ``kernel-ipc`` unless the connection file is already known. The kernel binds it relative
to its own working folder (the submission's folder), the client connects relative to the
grader's working folder (the course root): two different sockets, so "Kernel didn't respond in
60 seconds". :class:`SandboxKernelManager` sets an absolute path in the runtime folder.

Use it for autograde only (the student's own JupyterLab keeps the normal kernel):
:func:`autograde_preprocessors` returns nbgrader's autograde preprocessors with ``Execute``
replaced by :class:`SandboxExecute`. ``tools/course_api.py`` (``make_api``) does that by default when
:func:`probe` says the sandbox works here; ``KVCOURSE_SANDBOX=0`` turns it off, ``=1`` makes
a missing sandbox an error instead of a warning.

What it does not protect against: code in the same kernel as the tests can still tamper with
them (monkey-patching ``np.testing``, fake ``int`` subclasses ...; that is the grader-trust
issue), print the source of the test that calls it (``inspect``: see
``tools.feedback.StripHiddenTestOutput``, which removes verbatim quotes from feedback, not encoded ones),
use its CPU share until the cell timeout, use memory in many processes at once (the limits are
per process; a total needs cgroups), or attack the Linux kernel itself (bwrap shares it).
A fork bomb hangs its kernel (forked children share its ZeroMQ sockets) until the cell timeout.

    python -m tools.sandbox        # probe and print the status line

Why one module of this size: the bwrap command, the probe, and the jupyter/nbgrader hooks that
start the kernel with it share the runtime folder's life cycle. What the graded notebook and
the feedback keep of the outputs is ``tools/feedback.py``.
"""

from __future__ import annotations

import ast
import os
import random
import re
import shutil
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ENV_VAR = "KVCOURSE_SANDBOX"
#: Where the working folder appears inside the sandbox (``/home/student/<lab>``).
SANDBOX_HOME = "/home/student"
MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's sandboxed kernel.

    ``memory_bytes`` and ``tasks`` are budgets of the whole submission (all its processes
    together: tools/budget.py); the others are rlimits of each process."""

    #: all processes of the submission together (cgroup memory.max, or the watchdog's PSS sum);
    #: also RLIMIT_DATA of each process (heap + private anonymous memory: a bomb gets MemoryError).
    memory_bytes: int = 4 * GiB
    #: RLIMIT_CPU: CPU seconds per process (cells also have nbgrader's wall-clock timeout).
    cpu_seconds: int = 900
    #: processes + threads of the submission together (cgroup pids.max, and RLIMIT_NPROC of its
    #: own throw-away uid); reaching it kills the submission (a fork bomb).
    tasks: int = 256
    #: RLIMIT_FSIZE: largest file the kernel may write.
    file_bytes: int = 256 * MiB
    #: size of each tmpfs (the working folder and /tmp).
    tmpfs_bytes: int = 512 * MiB

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "tasks", "file_bytes", "tmpfs_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")

    def for_warm_copy(self) -> dict[str, int]:
        """The limits as a warm copy sets them on itself (``tools/zygote.py``)."""
        return {"data": self.memory_bytes, "cpu": self.cpu_seconds, "nproc": self.tasks,
                "fsize": self.file_bytes, "tmpfs": self.tmpfs_bytes}


DEFAULT_LIMITS = Limits()


def setting() -> str:
    """The ``KVCOURSE_SANDBOX`` setting: "auto" (default), "on" or "off"."""
    raw = os.environ.get(ENV_VAR, "auto").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in ("1", "on", "yes", "true", "require", "required"):
        return "on"
    if raw in ("0", "off", "no", "false"):
        return "off"
    raise ValueError(f"{ENV_VAR} must be auto, on/1 or off/0, got {raw!r}")


def bwrap_path() -> str | None:
    """Absolute path of ``bwrap``, or None if it is not installed."""
    return shutil.which("bwrap")


# ---------------------------------------------------------------------------------------
# the command line


def _python_roots() -> list[str]:
    """Folders the kernel's Python needs: venv, base installation, real executable's prefix."""
    exe = Path(os.path.realpath(sys.executable))
    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), str(exe.parent.parent)}
    return sorted(roots)


@lru_cache(maxsize=1)
def _editable_roots() -> tuple[str, ...]:
    """Source folders of editable installs (``course_lib``) and plain ``.pth`` path lines."""
    found: set[str] = set()
    for sp in site.getsitepackages():
        spath = Path(sp)
        if not spath.is_dir():
            continue
        for finder in spath.glob("__editable__*finder.py"):
            m = re.search(r"^MAPPING[^=]*=\s*(\{.*?\})\s*$", finder.read_text(), re.MULTILINE)
            if m:
                found.update(str(v) for v in ast.literal_eval(m.group(1)).values())
        for pth in spath.glob("*.pth"):
            for line in pth.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")) and os.path.isdir(line):
                    found.add(os.path.realpath(line))
    return tuple(sorted(found))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _mkdirs(dest: str, made: set[str], args: list[str]) -> None:
    """Create the parents of ``dest`` inside the sandbox, world-readable (bwrap's own are 0700)."""
    parts = Path(dest).parts[1:-1]
    current = ""
    for part in parts:
        current += "/" + part
        if current not in made:
            made.add(current)
            args += ["--perms", "0755", "--dir", current]


def hidden_name(name: str) -> bool:
    """Files of the submission folder the kernel must not see."""
    return name.endswith(".ipynb") or name == ".ipynb_checkpoints"


_hidden = hidden_name


def visible_entries(workdir: Path) -> list[Path]:
    """The entries of a submission folder its kernel sees (no notebook, no symlink)."""
    return [entry for entry in sorted(Path(workdir).iterdir())
            if not hidden_name(entry.name) and not entry.is_symlink() and (entry.is_dir() or entry.is_file())]


def _bind_workdir(src: Path, dest: str, args: list[str]) -> None:
    """Read-only binds of everything in ``src`` except notebooks and symlinks, below ``dest``."""
    for entry in sorted(src.iterdir()):
        if _hidden(entry.name) or entry.is_symlink():
            continue
        target = f"{dest}/{entry.name}"
        if entry.is_dir():
            clean = not any(_hidden(p.name) or p.is_symlink() for p in entry.rglob("*"))
            if clean:
                args += ["--ro-bind", str(entry), target]
            else:
                args += ["--perms", "0755", "--dir", target]
                _bind_workdir(entry, target, args)
        elif entry.is_file():
            args += ["--ro-bind", str(entry), target]


#: Processes of one submission that run at once while it is graded: its notebook's kernel and
#: its verdict's student process (``tools.verdict_step.StartVerdict`` runs them side by side).
PROCESSES_AT_ONCE = 2
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_share(graders: int = 1) -> int:
    """Threads for each sandboxed process when ``graders`` grading processes share this machine's
    cores, each running :data:`PROCESSES_AT_ONCE` processes at once. torch and NumPy otherwise
    start one thread per core in every process, and threads that spin while waiting for work
    slow everything down once there are more of them than cores (measured: Lab 01 submissions
    took 15-55 s instead of 3 s). ``OMP_NUM_THREADS`` set in the grader's environment wins."""
    return max(1, (os.cpu_count() or 1) // (graders * PROCESSES_AT_ONCE))


def _passthrough_env() -> dict[str, str]:
    keep = ("NBGRADER_EXECUTION", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED", *THREAD_VARS,
            "MPLBACKEND")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    for var in THREAD_VARS:
        env.setdefault(var, env.get("OMP_NUM_THREADS") or str(thread_share()))
    return env


_UID_DIR = Path(tempfile.gettempdir()) / "kvcourse-uids"


def sandbox_uid() -> int | None:
    """A throw-away uid for one kernel when we are root (rlimits on processes do not apply to
    root), None when not root (bwrap then maps the caller's own uid).

    The uid is unique among the kernels of every grader on this machine (a lock file per uid
    in ``/tmp/kvcourse-uids``) and owns no running process, so that ``RLIMIT_NPROC`` counts the
    tasks of one submission only; :func:`release_uid` frees it."""
    if os.geteuid() != 0:
        return None
    _UID_DIR.mkdir(mode=0o700, exist_ok=True)
    for _ in range(1000):
        uid = random.randint(200_000, 259_999)
        try:
            fd = os.open(_UID_DIR / str(uid), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if _uid_busy(uid):
            continue  # left running by a grader that died: keep its lock, take another
        return uid
    raise RuntimeError(f"no free throw-away uid in 200000..259999 (see {_UID_DIR})")


def _uid_busy(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return True
            except OSError:
                continue
    return False


def release_uid(uid: int | None) -> None:
    """Give a uid of :func:`sandbox_uid` back once no process of it is left."""
    if uid is not None and not _uid_busy(uid):
        try:
            (_UID_DIR / str(uid)).unlink()
        except OSError:
            pass


#: What the warm parent (tools/zygote.py, root, never running student code) keeps: mounts and
#: namespaces for each copy, reading the staged files, killing its copies, changing to their uid.
WARM_PARENT_CAPS = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL",
                    "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER")


def wrap_command(cmd: list[str], workdir: str | os.PathLike[str] | None, runtime_dir: str | os.PathLike[str],
                 limits: Limits | None = None, uid: int | None = None,
                 prefix: list[str] | None = None, warm_parent: bool = False) -> list[str]:
    """The command line that runs ``cmd`` (a kernel command) inside the sandbox.

    ``workdir`` is the submission folder nbgrader runs the notebook in (its notebooks are left
    out); ``runtime_dir`` is bound read-write at the same path (connection file, IPC sockets,
    nothing else). ``uid`` is the uid to drop to (only as root; see :func:`sandbox_uid`).
    ``limits``: None = :data:`DEFAULT_LIMITS`. ``prefix``: words that put the command into the
    submission's budget (:meth:`tools.budget.Budget.prefix`), run first, as the caller.

    ``warm_parent``: the command of the warm parent (``tools/zygote.py``, as root only) instead
    of a kernel: no working folder (``workdir`` None), the same view of the system, the PID
    namespace of the caller (each copy makes its own), the capabilities of
    :data:`WARM_PARENT_CAPS`, no rlimits (each copy sets its own) and ``runtime_dir`` is the
    staging folder of its requests.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    bwrap = bwrap_path()
    if bwrap is None:
        raise FileNotFoundError("bwrap is not installed (Debian package 'bubblewrap')")
    if not cmd:
        raise ValueError("cmd must not be empty")
    runtime = str(Path(runtime_dir).resolve())
    if warm_parent:
        if os.geteuid() != 0:
            raise PermissionError("the warm parent needs root (it changes its copies' uids)")
        workdir = None
    else:
        if workdir is None:
            raise ValueError("workdir is needed")
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise ValueError(f"workdir {workdir} is not a folder")
    args = list(prefix or [])
    if not warm_parent:
        prlimit = shutil.which("prlimit")
        if prlimit is None:  # util-linux; without it there would be no limits
            raise FileNotFoundError("prlimit is not installed (Debian package 'util-linux')")
        args += [prlimit, f"--data={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}",
                 f"--nproc={limits.tasks}", f"--fsize={limits.file_bytes}", "--core=0", "--"]
    args += [bwrap, "--unshare-ipc", "--unshare-net", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "grading"]
    if warm_parent:
        args += ["--cap-drop", "ALL"]
        for cap in WARM_PARENT_CAPS:
            args += ["--cap-add", cap]
    else:
        args += ["--unshare-pid"]
        if uid is None:  # unprivileged bwrap: a user namespace, no way back to more privileges
            args += ["--unshare-user", "--disable-userns"]
        else:  # bwrap as root: keep only what setpriv needs to drop to the throw-away uid
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP"]
    made: set[str] = set()
    # the system, read-only
    args += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev"]
    # private /tmp first, so that nothing bound below it is hidden by it
    args += ["--perms", "1777", "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp"]
    made.add("/tmp")
    # Python, the venv and editable packages, read-only; never a folder holding the submission
    roots: list[str] = []
    for root in _python_roots() + list(_editable_roots()):
        if (workdir is not None and _inside(str(workdir), root)) or any(_inside(root, r) for r in roots) or _inside(root, "/usr"):
            continue
        roots.append(root)
    for root in roots:
        _mkdirs(root, made, args)
        args += ["--ro-bind", root, root]
    # the runtime folder, the working folder (in memory, notebooks left out)
    _mkdirs(runtime, made, args)
    args += ["--bind", runtime, runtime]
    _mkdirs(SANDBOX_HOME + "/x", made, args)
    args += ["--perms", "1777", "--size", str(limits.tmpfs_bytes), "--tmpfs", SANDBOX_HOME]
    if workdir is not None:
        inside_dir = f"{SANDBOX_HOME}/{workdir.name}"
        args += ["--perms", "0777", "--dir", inside_dir]
        _bind_workdir(workdir, inside_dir, args)
    else:  # the warm parent: its copies' staging mount points; it waits in HOME
        inside_dir = SANDBOX_HOME
        args += ["--dir", "/run/kvstage/rt", "--dir", "/run/kvstage/files"]
        # where a copy parks the read-only roots below /tmp (a course or venv kept in /tmp)
        # while it puts a fresh tmpfs on /tmp
        for i in range(sum(1 for root in roots if _inside(root, "/tmp"))):
            args += ["--dir", f"/run/kvstage/keep{i}"]
    # HOME is the tmpfs too; matplotlib's font cache (seconds to rebuild per kernel) read-only
    cache = _mpl_cache_dir()
    if cache is not None:
        inside_cache = f"{SANDBOX_HOME}/.cache/matplotlib"
        args += ["--perms", "0777", "--dir", f"{SANDBOX_HOME}/.cache", "--perms", "0777", "--dir", inside_cache]
        for font_list in sorted(cache.glob("fontlist-*.json")):
            args += ["--ro-bind", str(font_list), f"{inside_cache}/{font_list.name}"]
    args += ["--chdir", inside_dir, "--clearenv"]
    for key, value in sorted(sandbox_env().items()):
        args += ["--setenv", key, value]
    if uid is not None and not warm_parent:
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        args += [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    return args + list(cmd)


def sandbox_env() -> dict[str, str]:
    """The environment of a sandboxed process: nothing of the grader's but what notebooks need."""
    return {"HOME": SANDBOX_HOME, "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
            # 1 = "no parent to watch" for ipykernel (its poller would see pid 1 as a dead parent)
            # and no console banner
            "JPY_PARENT_PID": "1", **_passthrough_env()}


def prepare_runtime_dir(uid: int | None, parent: Path | None = None) -> Path:
    """A fresh runtime folder for the connection file and the IPC sockets (short path: socket
    paths are limited to ~100 bytes), owned by the sandbox uid so that the kernel can create
    its sockets; :func:`seal_runtime_dir` takes it back once they exist."""
    if parent is None:
        parent = Path("/tmp") if os.path.isdir("/tmp") else None
    runtime = Path(tempfile.mkdtemp(prefix="kvsb-", dir=parent))
    if uid is not None:
        os.chown(runtime, uid, uid)
    runtime.chmod(0o700)
    return runtime


def seal_runtime_dir(runtime: Path) -> None:
    """After the kernel has bound its sockets: make the runtime folder root's and read-only to
    the kernel, so that it cannot fill the host's disk through it (root only; the sockets stay
    usable)."""
    if os.geteuid() == 0:
        os.chown(runtime, 0, 0)
        runtime.chmod(0o755)


@lru_cache(maxsize=1)
def _mpl_cache_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    try:
        from matplotlib import font_manager  # noqa: F401 - builds the cache if missing
    except Exception:  # noqa: BLE001 - a broken font cache only costs time
        return None
    path = Path(matplotlib.get_cachedir())
    return path if any(path.glob("fontlist-*.json")) else None


# ---------------------------------------------------------------------------------------
# probe


@dataclass(frozen=True)
class Probe:
    """Whether the sandbox works on this machine, and why not."""

    works: bool
    reason: str


@lru_cache(maxsize=1)
def probe() -> Probe:
    """Start the sandbox once around a tiny Python check (about 0.1 s; cached per process).

    The check runs with the real binds and limits and verifies that the venv's Python starts,
    that a notebook in the working folder is absent, and that there is no network interface
    but loopback."""
    if sys.platform != "linux":
        return Probe(False, f"bubblewrap needs Linux, this is {sys.platform}")
    if bwrap_path() is None:
        return Probe(False, "bwrap not found (install Debian's 'bubblewrap': bash tools/install_system_deps.sh)")
    check = ("import os, socket, sys\n"
             "assert not os.path.exists('secret.ipynb'), 'notebook visible'\n"
             "assert os.path.exists('ref/x.txt'), 'reference files missing'\n"
             "names = [n for _, n in socket.if_nameindex()]\n"
             "assert names == ['lo'], f'network interfaces {names}'\n"
             "print('sandbox-ok', os.getuid())\n")
    uid = sandbox_uid()
    with tempfile.TemporaryDirectory(prefix="kvsb-probe-") as tmp:
        work = Path(tmp) / "work"
        (work / "ref").mkdir(parents=True)
        (work / "ref" / "x.txt").write_text("x")
        (work / "secret.ipynb").write_text("{}")
        os.chmod(tmp, 0o755)
        runtime = Path(tmp) / "rt"
        runtime.mkdir()
        if uid is not None:
            os.chown(runtime, uid, uid)
        try:
            cmd = wrap_command([sys.executable, "-I", "-S", "-c", check], work, runtime, uid=uid)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=work)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return Probe(False, f"bwrap could not start: {exc}")
    if proc.returncode != 0 or "sandbox-ok" not in proc.stdout:
        detail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return Probe(False, f"bwrap failed here: {detail[:200]}")
    return Probe(True, "bwrap works")


def enabled() -> bool:
    """Whether autograde should use the sandbox: the setting, and the probe for "auto".

    Raises RuntimeError if ``KVCOURSE_SANDBOX=1`` but the sandbox does not work."""
    mode = setting()
    if mode == "off":
        return False
    result = probe()
    if mode == "on" and not result.works:
        raise RuntimeError(f"{ENV_VAR}=1 but the sandbox does not work: {result.reason}")
    return result.works


def status_line() -> str:
    """One loud line for the demo: on, off by choice, or a fallback with the reason."""
    mode = setting()
    if mode == "off":
        return (f"SANDBOX OFF ({ENV_VAR}=0): student code runs unconfined, as this user, "
                "beside the gradebook and the hidden tests")
    result = probe()
    if result.works:
        from tools import budget

        lim = DEFAULT_LIMITS
        return (f"SANDBOX ON: grading kernels run in bwrap (no network, only their own submission "
                f"folder; per submission {lim.memory_bytes / GiB:g} GiB of memory and {lim.tasks} tasks "
                f"in all, enforced by {budget.backend()}; {lim.cpu_seconds} CPU s per process; "
                f"{ENV_VAR}=0 turns it off)")
    return (f"WARNING: SANDBOX UNAVAILABLE ({result.reason}); student code runs unconfined. "
            f"Set {ENV_VAR}=1 to make this an error.")


# ---------------------------------------------------------------------------------------
# nbgrader / jupyter_client hooks

from queue import Empty  # noqa: E402

from jupyter_client.asynchronous import AsyncKernelClient  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.util import run_sync  # noqa: E402
from nbgrader.preprocessors import Execute  # noqa: E402


class SandboxKernelClient(AsyncKernelClient):
    """jupyter_client's client, ready as soon as the kernel has answered on both channels.

    jupyter_client's own wait ends by listening to IOPub until it has been quiet for 0.2 s, a
    fixed cost per kernel; here the quiet wait is 0.02 s. A late IOPub message of the start
    does no harm: nbclient reads only the messages of the cell it runs."""

    #: seconds of IOPub silence that end the wait
    quiet_seconds = 0.02

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:  # IOPub is connected once it carries the request's status messages
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while True:
            try:
                await self.iopub_channel.get_msg(timeout=self.quiet_seconds)
            except Empty:
                return

    wait_for_ready = _async_wait_for_ready


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager that starts the kernel inside bwrap and talks to it over IPC.

    Everything per kernel (connection file, sockets, HOME) lives in one runtime folder that
    is removed when the kernel is cleaned up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_factory = SandboxKernelClient
        self.transport = "ipc"
        self.cache_ports = False
        self._sandbox_runtime: Path | None = None
        self._sandbox_uid: int | None = None
        self._budget: Any = None
        self._warm_socket: str | None = None

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        if self._sandbox_runtime is None:
            from tools import warm

            self._warm_socket = warm.socket_path()
            self._sandbox_uid = sandbox_uid()
            stage = Path(self._warm_socket).parent if self._warm_socket else None
            self._sandbox_runtime = prepare_runtime_dir(self._sandbox_uid, stage)
            self.connection_file = str(self._sandbox_runtime / "kernel.json")
            # absolute: the default "kernel-ipc" is relative to each side's own cwd
            self.ip = str(self._sandbox_runtime / "k")
        if self.kernel_spec is not None:
            # with --new-session a SIGINT to bwrap's process group would not reach the kernel
            # (and would kill bwrap): interrupt through the control channel instead
            self.kernel_spec.interrupt_mode = "message"
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        assert self._sandbox_runtime is not None
        if self._sandbox_uid is not None:
            os.chown(self.connection_file, self._sandbox_uid, self._sandbox_uid)
        cwd = self._launch_args.get("cwd") or os.getcwd()
        from tools import budget

        limits = DEFAULT_LIMITS
        if self._budget is not None:
            self._budget.close()
        self._budget = budget.new_budget(limits.memory_bytes, limits.tasks, str(cwd), self._sandbox_uid)
        if self._warm_socket:  # a fork of the warm parent (tools/zygote.py), isolated the same way
            from tools import warm

            return warm.copy_command(self._warm_socket, self._sandbox_runtime, uid=self._sandbox_uid,
                                     lab=Path(cwd).name, limits=limits, workdir=Path(cwd),
                                     procs_files=self._budget.procs_files(),
                                     connection_file=self.connection_file)
        return wrap_command(cmd, cwd, self._sandbox_runtime, limits=limits, uid=self._sandbox_uid,
                            prefix=self._budget.prefix())

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        if self._budget is not None:
            process = getattr(self.provisioner, "process", None)
            self._budget.watch(getattr(process, "pid", None))

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        # jupyter_client polls a stopping kernel every 0.1 s; a sandboxed kernel (nothing to save:
        # no history) is gone within a few ms of its shutdown request, so poll every 5 ms
        await super()._async_wait(pollinterval=min(pollinterval, 0.005))

    def seal_runtime(self) -> None:
        """Called once the kernel answered (its sockets exist): see :func:`seal_runtime_dir`."""
        if self._sandbox_runtime is not None:
            seal_runtime_dir(self._sandbox_runtime)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self._budget is not None:  # whatever the kernel left running dies with it
            self._budget.close()
            self._budget = None
        if not restart and self._sandbox_runtime is not None:
            from tools import warm

            warm.cleanup(self._sandbox_runtime)
            shutil.rmtree(self._sandbox_runtime, ignore_errors=True)
            self._sandbox_runtime = None
        if not restart and self._sandbox_uid is not None:
            release_uid(self._sandbox_uid)
            self._sandbox_uid = None

    # AsyncKernelManager binds these public names to the base class's coroutines
    pre_start_kernel = _async_pre_start_kernel
    cleanup_resources = _async_cleanup_resources


class _SandboxedKernel:
    """Mixin for nbclient-based executors: start the kernel with :class:`SandboxKernelManager`
    and seal its runtime folder once the kernel answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()  # type: ignore[misc]
        if isinstance(self.km, SandboxKernelManager):  # type: ignore[attr-defined]
            self.km.seal_runtime()  # type: ignore[attr-defined]
        return kc

    # nbclient binds the sync name to the base class's coroutine (ExecutePreprocessor uses it)
    start_new_kernel_client = run_sync(async_start_new_kernel_client)


def visible_part(source: str) -> str:
    """A test cell as the student's release has it: the hidden block (markers included) removed."""
    return re.sub(r"[ \t]*### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS[ \t]*\n?", "", source, flags=re.DOTALL)


class _VisibleTestsOnly:
    """Mixin for nbgrader's Execute: the student's kernel runs each test cell's visible part only
    (what the released notebook runs), so no hidden input or expected value ever enters it. The
    hidden tests run in the verdict (``tools/verdict_step.py``). The cell keeps its full source."""

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> Any:
        if cell.cell_type != "code" or "### BEGIN HIDDEN TESTS" not in cell.source:
            return super().preprocess_cell(cell, resources, index)  # type: ignore[misc]
        full = cell.source
        cell.source = visible_part(full)
        try:
            return super().preprocess_cell(cell, resources, index)  # type: ignore[misc]
        finally:
            cell.source = full


class VisibleExecute(_VisibleTestsOnly, Execute):
    """nbgrader's Execute, unsandboxed, running the visible part of each test cell only."""


class SandboxExecute(_VisibleTestsOnly, _SandboxedKernel, Execute):
    """nbgrader's Execute preprocessor with the kernel started by :class:`SandboxKernelManager`,
    running the visible part of each test cell only.

    (nbgrader's Execute passes ``kernel_manager_class`` as a keyword, which beats config, so a
    subclass is the hook.)"""


class CourseExecute(SandboxExecute):
    """The Execute preprocessor named in nbgrader_config.py (``nbgrader autograde``, the
    formgrader): the sandbox wherever :func:`enabled` says so, else nbgrader's normal kernel with
    a warning in nbgrader's log (``KVCOURSE_SANDBOX=1`` turns that into an error)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not enabled():
            from jupyter_client.manager import AsyncKernelManager as Plain

            kwargs.setdefault("kernel_manager_class", Plain)
        super().__init__(*args, **kwargs)
        if not isinstance(self.kernel_manager_class, type) or \
                not issubclass(self.kernel_manager_class, SandboxKernelManager):
            self.log.warning(status_line())


class SandboxNotebookClient(_SandboxedKernel, NotebookClient):
    """nbclient's NotebookClient with the kernel in the sandbox."""


_EXECUTE_NAMES = {"nbgrader.preprocessors.Execute", "nbgrader.preprocessors.execute.Execute",
                  "tools.sandbox.SandboxExecute", "tools.sandbox.CourseExecute", "tools.sandbox.VisibleExecute"}


def autograde_preprocessors(current: list[Any] | None = None, sandbox: bool = True) -> list[Any]:
    """``Autograde.autograde_preprocessors`` with the Execute step (nbgrader's, or this module's
    CourseExecute as configured in nbgrader_config.py) replaced by SandboxExecute, or by
    VisibleExecute (no sandbox) when ``sandbox`` is False.

    ``current``: the configured list (classes or dotted names, as in nbgrader_config.py);
    None = nbgrader's default. Everything else in it is kept, in order."""
    from nbgrader.converters.autograde import Autograde

    if current is None:
        current = list(Autograde.class_traits()["autograde_preprocessors"].default())
    replacement = SandboxExecute if sandbox else VisibleExecute

    def is_execute(p: Any) -> bool:
        return p in (Execute, SandboxExecute, CourseExecute, VisibleExecute) or p in _EXECUTE_NAMES

    out = [replacement if is_execute(p) else p for p in current]
    if replacement not in out:
        raise RuntimeError(f"no Execute preprocessor to replace in {current!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    print(status_line())
    return 0 if setting() == "off" or probe().works else 1


if __name__ == "__main__":
    raise SystemExit(main())
