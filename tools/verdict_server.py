"""A warm grader process for the verdict: Python and the course's imports paid once per batch.

Every verdict needs a grader process of its own (the instructor's cells of one submission must
not share a process with anything else). Started cold, each pays Python's start and the imports
of IPython, NumPy, pandas, torch and course_lib again, seconds per submission. This server
imports them once, runs no instructor cell and no student code itself, and forks a fresh copy
of itself for each verdict: the copy runs :func:`tools.verdict.run` and exits, so no verdict
ever sees what another one left behind. The student's side is unchanged (a new sandboxed
process per submission, ``tools/verdict.py``).

Protocol (one JSON object per line): the client writes ``{"source", "submission", "sandboxed",
"cell_timeout", "result", "warm_socket"}`` (``warm_socket``: the grading process's warm parent,
``tools/warm.py``, whose copies run the verdicts' student processes; the client starts it while
the server imports); the fork writes the verdict as JSON to the ``result`` file; the server
answers ``{"exit": code}`` when the fork has ended. :class:`Client` restarts a server that died
and falls back to a cold ``python -m tools.verdict`` when none can start.

    python -m tools.verdict_server      # serve on stdin/stdout (started by Client)
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

#: Modules the server imports before its first fork (the verdict's own; the labs' imports are
#: added from the lab files, ``tools.warm.lab_modules``).
WARM_MODULES = ("nbformat", "IPython.core.interactiveshell", "numpy", "pandas", "torch",
                "course_lib", "tools.wire", "tools.verdict", "tools.sandbox", "tools.budget", "tools.warm")


def _warm_up() -> None:
    import importlib

    from tools.warm import lab_modules

    for name in (*WARM_MODULES, *lab_modules()):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that cannot be imported is imported cold, later
            pass
    from tools import sandbox

    sandbox.enabled()  # probes bwrap once (cached)
    torch = sys.modules.get("torch")
    if torch is not None:  # the grader's checks run beside the kernel and the student's process
        torch.set_num_threads(int(sandbox.sandbox_env()["OMP_NUM_THREADS"]))
    gc.collect()
    gc.freeze()  # what every fork inherits stays out of its garbage collections (no copy-on-write)


def _one(request: dict) -> int:
    """Fork, run one verdict in the child, return the child's exit status."""
    try:  # the instructor's notebook parsed once, here, for every fork to inherit
        from tools import verdict

        verdict.source_and_plan(Path(request["source"]))
    except Exception:  # noqa: BLE001, S110 - the fork reads it itself and reports what is wrong
        pass
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the fresh copy: runs the verdict and exits, never returns to the loop
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # what instructor cells print is not part of the answer
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            from tools import verdict, warm

            if request.get("warm_socket"):  # the grading process's warm parent (tools/warm.py)
                os.environ[warm.SOCKET_ENV] = request["warm_socket"]
            else:  # none there: cold processes, never a warm parent of this fork's own
                os.environ[warm.ENV_VAR] = "0"

            sandboxed = request.get("sandboxed")
            result = verdict.run(Path(request["submission"]), Path(request["source"]),
                                 sandboxed=None if sandboxed is None else bool(sandboxed),
                                 cell_timeout=float(request["cell_timeout"]))
            Path(request["result"]).write_text(result.to_json())
            code = 0
        except BaseException:  # noqa: BLE001 - the client reads a missing result as a failure
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def serve() -> int:
    _warm_up()
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # nothing but answers on the protocol's stream
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        out.write(json.dumps({"exit": _one(json.loads(line))}) + "\n")
        out.flush()
    return 0


class Client:
    """One warm server per grading process (started on first use, restarted if it died)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.ready = False
        self.lock = threading.Lock()

    def _launch(self) -> None:
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen([sys.executable, "-m", "tools.verdict_server"], cwd=root,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True,
                                        start_new_session=True)  # its forks share its group
        self.ready = False

    def _wait_ready(self) -> bool:
        """Whether the launched server has answered that it is ready (it imports first)."""
        if self.ready:
            return True
        assert self.process is not None and self.process.stdout is not None
        self.ready = self.process.stdout.readline().startswith('{"ready"')
        if not self.ready:
            self.stop()
        return self.ready

    def stop(self) -> None:
        """End the server and any verdict it is running (one process group)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, submission: Path, source: Path, sandboxed: bool | None, cell_timeout: float,
            timeout: float) -> tuple[str, str]:
        """("ok", the verdict's JSON), ("failed", why) when the verdict's process failed or took
        longer than ``timeout`` seconds, or ("unavailable", why) when no server could start."""
        from tools import warm

        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._launch()
            # the warm parent of this grading process (started now if it is the first), while the
            # server imports: each verdict's student process is a copy of it
            socket = warm.socket_path() if sandboxed is not False else None
            if not self._wait_ready():
                return "unavailable", "the verdict's server did not start"
            assert self.process is not None and self.process.stdin is not None
            stdout = self.process.stdout
            assert stdout is not None
            with tempfile.TemporaryDirectory(prefix="kvverdict-result-") as folder:
                result = Path(folder) / "verdict.json"
                request = {"source": str(source), "submission": str(submission), "sandboxed": sandboxed,
                           "cell_timeout": cell_timeout, "result": str(result), "warm_socket": socket}
                try:
                    self.process.stdin.write(json.dumps(request) + "\n")
                    self.process.stdin.flush()
                except OSError:
                    self.stop()
                    return "unavailable", "the verdict's server had stopped"
                answer: list[str] = []
                reader = threading.Thread(target=lambda: answer.append(stdout.readline()), daemon=True)
                reader.start()
                reader.join(timeout)
                if not answer:
                    self.stop()  # the next verdict gets a fresh server
                    return "failed", f"the verdict took longer than {timeout:.0f} s"
                try:
                    code = json.loads(answer[0])["exit"]
                except (ValueError, KeyError, TypeError):
                    self.stop()
                    return "failed", "the verdict's server stopped while grading"
                if code != 0 or not result.is_file():
                    return "failed", f"the verdict's process failed (exit {code})"
                return "ok", result.read_text()


_CLIENT: Client | None = None


def client() -> Client:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = Client()
    return _CLIENT


if __name__ == "__main__":
    raise SystemExit(serve())
