"""Warm sandboxed processes (tools/warm.py, tools/zygote.py): forks of one warm parent, each
isolated from every other before any student code runs.

Two copies run at the same time here, as two submissions would in one grading worker: the second
must not see, reach or change anything of the first (files in /tmp, HOME, /dev/shm, its
working folder, its processes, its sockets, its uid, the modules it changed in memory), nor the
parent's staging folder and socket; it has no capability and cannot regain one; killing its
stand-in kills every process it started. The budgets of warm copies are tested with the cold
ones in tests/test_sandbox_budget.py; the attacks through nbgrader in tests/test_sandbox.py
(which grade with warm copies wherever they are available).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import budget, sandbox, warm

_PROBE = sandbox.probe() if sys.platform == "linux" else sandbox.Probe(False, "not Linux")
needs_warm = pytest.mark.skipif(not (_PROBE.works and os.geteuid() == 0 and warm.setting()),
                                reason="warm copies need the bwrap sandbox and root")


class Copy:
    """One warm copy running ``program`` with its own uid, runtime folder and budget."""

    def __init__(self, program: str, tmp_path: Path, name: str, files: dict[str, str] | None = None) -> None:
        self.work = tmp_path / name / "lab"
        self.work.mkdir(parents=True)
        for filename, text in (files or {}).items():
            (self.work / filename).write_text(text)
        (self.work / "lab.ipynb").write_text("SECRET-HIDDEN-TESTS")
        socket = warm.socket_path()
        assert socket, warm.status_line()
        self.uid = sandbox.sandbox_uid()
        self.runtime = sandbox.prepare_runtime_dir(self.uid, Path(socket).parent)
        self.box = budget.new_budget(2**30, 64, str(self.work), self.uid)
        cmd = warm.copy_command(socket, self.runtime, uid=self.uid, lab="lab", limits=sandbox.Limits(),
                                procs_files=self.box.procs_files(), program=program, workdir=self.work)
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.box.watch(self.process.pid)

    def line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def finish(self, stdin: str = "") -> str:
        out, _ = self.process.communicate(stdin, timeout=60)
        return out

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.box.close()
        warm.cleanup(self.runtime)
        shutil.rmtree(self.runtime, ignore_errors=True)
        sandbox.release_uid(self.uid)


FIRST = r"""
import json, os, socket, sys, numpy
numpy.pi = 3.0                      # a module changed in memory
import course_lib.grading as g
g.check_int = lambda *a, **k: None  # a grading helper replaced
for path in ["/tmp/first.txt", os.path.expanduser("~/first.txt"), "/dev/shm/first", "first.txt"]:
    open(path, "w").write("FIRST")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("\0kvcourse-first")     # an abstract socket: per network namespace
server.listen(1)
tcp = socket.socket()
try:
    tcp.bind(("127.0.0.1", 47123)); tcp.listen(1); bound = True
except OSError:
    bound = False
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "tcp": bound}), flush=True)
sys.stdin.read()                    # stays alive until the test says so
"""

SECOND = r"""
import json, os, socket, numpy, course_lib.grading as g
def exists(p):
    try:
        return os.path.exists(p)
    except OSError:
        return False
found = {p: exists(p) for p in ["/tmp/first.txt", os.path.expanduser("~/first.txt"), "/dev/shm/first",
                                "first.txt", "../../first", "lab.ipynb", SOCKET]}
def connect(addr, family=socket.AF_UNIX):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(addr); return True
    except OSError:
        return False
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
def readable(folder):
    try:
        os.listdir(folder); return True
    except OSError:
        return False
killed = []
for pid in range(2, 70000):  # 1: its own reaper
    if pid == os.getpid():
        continue
    try:
        os.kill(pid, 0); killed.append(pid)
    except OSError:
        pass
print(json.dumps({
    "found": found, "pi": numpy.pi, "check_int_is_lambda": g.check_int.__name__ == "<lambda>",
    "abstract": connect("\0kvcourse-first"), "tcp": connect(("127.0.0.1", 47123), socket.AF_INET),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "signalable": killed,
    "uid": os.getuid(), "cwd": os.getcwd(), "ls": sorted(os.listdir(".")), "data": open("data.txt").read(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(), "hostname": socket.gethostname(),
    "ifaces": [n for _, n in socket.if_nameindex()], "tmp": sorted(os.listdir("/tmp")),
    "stage": sorted(os.listdir(STAGE)),
    "reaper_fds": readable("/proc/1/fd"),
}), flush=True)
"""


@pytest.mark.system
@needs_warm
def test_a_copy_sees_nothing_of_another(tmp_path):
    first = Copy(FIRST, tmp_path, "first")
    second = None
    try:
        about_first = json.loads(first.line())
        stage = str(Path(warm.socket_path()).parent)
        program = SECOND.replace("STAGE", repr(stage)).replace("SOCKET", repr(warm.socket_path()))
        second = Copy(program, tmp_path, "second", files={"data.txt": "second's own file"})
        seen = json.loads(second.finish())
    finally:
        first.close()
        if second is not None:
            second.close()
    assert not any(seen["found"].values()), seen["found"]
    assert seen["pi"] != 3.0 and not seen["check_int_is_lambda"], "a module changed by another copy"
    assert not seen["abstract"] and not seen["tcp"], "reached another copy's socket"
    assert seen["pids"] == [1, 2] and seen["signalable"] == [], seen["pids"]
    assert seen["uid"] not in (0, about_first["uid"]) and about_first["uid"] != 0
    assert seen["cwd"] == f"{sandbox.SANDBOX_HOME}/lab" and seen["ls"] == ["data.txt"]
    assert seen["data"] == "second's own file"
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_bnd"], 16) == 0 and seen["no_new_privs"] == "1"
    assert seen["hostname"] == "grading" and seen["ifaces"] == ["lo"]
    # /tmp holds only the path to the copy's own runtime folder (no socket, no other copy's
    # folder) and the paths of read-only roots kept below /tmp (a venv there)
    roots = [*sandbox._python_roots(), *sandbox._editable_roots()]
    kept = {Path(root).parts[2] for root in roots if root.startswith("/tmp/")}
    assert sorted(seen["tmp"]) == sorted({Path(warm.socket_path()).parent.name, *kept})
    assert seen["stage"] == [second.runtime.name]
    assert not seen["reaper_fds"], "the reaper's file descriptors are open to the student's process"


@pytest.mark.system
@needs_warm
def test_the_submission_folder_is_read_only_and_writes_stay_inside(tmp_path):
    program = r"""
import json, os
result = {}
try:
    open("data.txt", "w").write("changed"); result["overwrote"] = True
except OSError:
    result["overwrote"] = False
open("new.txt", "w").write("scratch")
print(json.dumps(result), flush=True)
"""
    copy = Copy(program, tmp_path, "writer", files={"data.txt": "original"})
    try:
        result = json.loads(copy.finish())
    finally:
        copy.close()
    assert result == {"overwrote": False}
    assert (copy.work / "data.txt").read_text() == "original"
    assert not (copy.work / "new.txt").exists()


@pytest.mark.system
@needs_warm
def test_killing_the_stand_in_kills_every_process_of_the_copy(tmp_path):
    program = r"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
if os.fork() == 0:
    os.setsid()                     # a grandchild that tries to get away
    time.sleep(300)
print("running", flush=True)
time.sleep(300)
"""
    copy = Copy(program, tmp_path, "sleeper")
    try:
        assert copy.line().strip() == "running"
        assert sandbox._uid_busy(copy.uid)
        copy.process.send_signal(signal.SIGKILL)
        copy.process.wait()
        deadline = time.monotonic() + 5
        while sandbox._uid_busy(copy.uid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sandbox._uid_busy(copy.uid), "a process of the copy survived its stand-in"
    finally:
        copy.close()


@pytest.mark.system
@needs_warm
def test_exit_status_and_output_come_back(tmp_path):
    copy = Copy("import sys\nprint('bye')\nsys.exit(7)\n", tmp_path, "exiter")
    try:
        out = copy.finish()
    finally:
        copy.close()
    assert out == "bye\n" and copy.process.returncode == 7


def test_lab_imports_are_warmed():
    modules = warm.lab_modules()
    for name in ("torch", "numpy", "course_lib.grading", "torch.nn.attention.bias", "matplotlib.pyplot"):
        assert name in modules, name


def test_cold_when_turned_off(monkeypatch):
    monkeypatch.setenv(warm.ENV_VAR, "0")
    assert warm.socket_path() is None
    assert "off" in warm.status_line()


@pytest.mark.system
@needs_warm
def test_a_course_kept_in_tmp_still_runs(tmp_path):
    """The copies put a fresh tmpfs on /tmp: the Python installation, the venv and the course
    must still be there when they live below /tmp (a clone in a temporary folder)."""
    if not shutil.which("mount"):
        pytest.skip("mount(8) is not installed")
    root = Path(__file__).resolve().parent.parent
    seen_from = tmp_path / "course"
    seen_from.mkdir()
    if subprocess.run(["mount", "--bind", str(root), str(seen_from)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        venv_python = seen_from / Path(sys.prefix).relative_to(root) / "bin" / "python" \
            if Path(sys.prefix).is_relative_to(root) else Path(sys.executable)
        check = ("import sys, tempfile; sys.path.insert(0, '.'); from pathlib import Path\n"
                 "from tools import sandbox, warm\n"
                 "from tests.test_warm import Copy\n"
                 "copy = Copy('import torch, course_lib; print(\"ok\")', "
                 "Path(tempfile.mkdtemp()), 'x')\n"
                 "print(copy.finish().strip(), copy.process.returncode); copy.close()\n")
        proc = subprocess.run([str(venv_python), "-c", check], cwd=seen_from, capture_output=True,
                              text=True, timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(seen_from)], check=False)
    assert proc.stdout.strip().endswith("ok 0"), (proc.stdout, proc.stderr[-2000:])


@pytest.mark.system
@needs_warm
def test_a_parent_older_than_the_code_is_replaced(monkeypatch):
    first = warm.socket_path()
    assert first
    monkeypatch.setattr(warm, "code_version", lambda: ("changed",))
    second = warm.socket_path()
    assert second and second != first and not Path(first).exists()


@pytest.mark.system
@needs_warm
def test_a_copy_takes_the_graders_thread_share(tmp_path):
    """Parallel workers give each kernel their share of the cores (OMP_NUM_THREADS); a copy of a
    parent that imported torch with more must use the share, or spinning threads of several
    workers fight over the cores (measured: ~7x slower with 3 copies on 2 cores)."""
    socket = warm.socket_path()
    uid = sandbox.sandbox_uid()
    runtime = sandbox.prepare_runtime_dir(uid, Path(socket).parent)
    try:
        cmd = warm.copy_command(socket, runtime, uid=uid, lab="lab", limits=sandbox.Limits(), procs_files=[],
                                program="import torch\nprint(torch.get_num_threads())\n",
                                env={**sandbox.sandbox_env(), "OMP_NUM_THREADS": "1"})
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    finally:
        warm.cleanup(runtime)
        shutil.rmtree(runtime, ignore_errors=True)
        sandbox.release_uid(uid)
    assert out.strip() == "1"


def test_the_labs_that_measure_the_machine_are_found():
    assert warm.measures_machine("lab02_roofline")
    assert not warm.measures_machine("lab00_cache_sizing") and not warm.measures_machine("no_such_lab")


@pytest.mark.system
@needs_warm
def test_the_machine_is_measured_once_and_copies_on_threads_still_run(tmp_path):
    """A lab that measures the machine (Lab 02): the parent measures it once per thread count
    and its copies, while autograding, print that one measurement, saying so. A copy on two
    threads still runs parallel torch work afterwards: a parent that had run OpenMP threads
    itself would fork copies that hang at their first parallel operation (the parent measures
    in a child of its own)."""
    socket = warm.socket_path()
    program = ("import json, torch\nfrom course_lib import roofline\n"
               "m = roofline.measure_machine('cpu', 'fp32', repeats=roofline.GRADING_REPEATS)\n"
               "a = torch.randn(512, 512)\nfor _ in range(5):\n    a @ a\n"
               "print(json.dumps([m.note, m.mem_bandwidth, m.peak_flops, torch.get_num_threads()]))\n")
    answers = []
    for _ in range(2):
        uid = sandbox.sandbox_uid()
        runtime = sandbox.prepare_runtime_dir(uid, Path(socket).parent)
        threads = dict.fromkeys(sandbox.THREAD_VARS, "2")
        try:
            cmd = warm.copy_command(socket, runtime, uid=uid, lab="lab", limits=sandbox.Limits(), procs_files=[],
                                    program=program, share_probe=True,
                                    env={**sandbox.sandbox_env(), **threads, "NBGRADER_EXECUTION": "autograde"})
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        finally:
            warm.cleanup(runtime)
            shutil.rmtree(runtime, ignore_errors=True)
            sandbox.release_uid(uid)
        assert done.returncode == 0, done.stderr[-2000:]
        answers.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert answers[0] == answers[1]  # the same measurement, to the last digit
    note, bandwidth, flops, threads_used = answers[0]
    assert "measured once for this grading run, on 2 threads" in note and threads_used == 2
    assert bandwidth > 0 and flops > 0
