"""Per-submission budgets (tools/budget.py): memory spread over processes and a fork bomb each
kill only their own sandbox, within seconds, with every backend this machine offers, in a cold
sandboxed process and in a warm copy (tools/warm.py) alike.

Small budgets (256 MiB cold, 1 GiB warm; 32 tasks) keep these tests light; every bomb also runs under its own
throw-away uid with RLIMIT_NPROC, so even a failing test cannot take the machine down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import budget, sandbox, warm

_PROBE = sandbox.probe() if sys.platform == "linux" else sandbox.Probe(False, "not Linux")
needs_bwrap = pytest.mark.skipif(not _PROBE.works, reason=f"bwrap sandbox cannot run here: {_PROBE.reason}")

#: A warm copy starts with the warm parent's imports mapped (torch ...: ~350 MiB of data
#: segment, shared copy-on-write, charged to the parent's cgroup); RLIMIT_DATA counts them, so its
#: per-process limit needs room above them.
MEMORY = {"cold": 256 * 2**20, "warm": 1024 * 2**20}
TASKS = 32

SPREAD = """
import os, time
for i in range(3):  # 3 x 47% of the budget: each below it, together over it
    if os.fork() == 0:
        hog = bytearray(int(0.47 * {memory}))
        for j in range(0, len(hog), 4096):
            hog[j] = 1
        time.sleep(120)
        os._exit(0)
time.sleep(120)
"""
FORK_BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""
QUIET = "import time; x = bytearray(50 * 2**20); time.sleep(2); print('done')"


def _backends() -> list[str]:
    found = ["watchdog"]
    if budget.backend() != "watchdog":
        found.insert(0, budget.backend())
    return found


def _starts() -> list[str]:
    return ["cold", "warm"] if warm.available() else ["cold"]


def _run(kind: str, code: str, tmp_path, start: str = "cold") -> tuple[float, int, str | None, budget.Budget]:
    work = tmp_path / "lab"
    work.mkdir()
    uid = sandbox.sandbox_uid()
    socket = warm.socket_path() if start == "warm" else None
    assert start == "cold" or socket, warm.status_line()
    runtime = sandbox.prepare_runtime_dir(uid, Path(socket).parent if socket else None)
    if kind == "watchdog":
        box: budget.Budget = budget.WatchdogBudget(MEMORY[start], TASKS, str(work), uid)
    else:
        box = budget.CgroupBudget(kind, MEMORY[start], TASKS, str(work))
    limits = sandbox.Limits(memory_bytes=MEMORY[start], tasks=TASKS)
    if socket:
        cmd = warm.copy_command(socket, runtime, uid=uid, lab=work.name, limits=limits,
                                procs_files=box.procs_files(), program=code)
    else:
        cmd = sandbox.wrap_command([sys.executable, "-c", code], work, runtime, limits=limits, uid=uid,
                                   prefix=box.prefix())
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    box.watch(proc.pid)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    seconds = time.perf_counter() - start
    box.close()
    warm.cleanup(runtime)
    shutil.rmtree(runtime, ignore_errors=True)
    if uid is not None:
        assert not sandbox._uid_busy(uid), "a process of the submission survived"
        sandbox.release_uid(uid)
    return seconds, proc.returncode, budget.pop_kill_reason(work), box


@pytest.mark.system
@needs_bwrap
@pytest.mark.parametrize("start", _starts())
@pytest.mark.parametrize("kind", _backends())
def test_memory_spread_over_processes_is_killed(kind, start, tmp_path):
    seconds, code, reason, box = _run(kind, SPREAD.replace("{memory}", str(MEMORY[start])), tmp_path, start)
    assert reason and "memory budget" in reason, (code, reason)
    assert seconds < 15, seconds
    assert code != 0
    if isinstance(box, budget.CgroupBudget):
        assert not any(folder.exists() for folder in box.folders), "the cgroup was not removed"


@pytest.mark.system
@needs_bwrap
@pytest.mark.parametrize("start", _starts())
@pytest.mark.parametrize("kind", _backends())
def test_fork_bomb_is_killed(kind, start, tmp_path):
    seconds, code, reason, _ = _run(kind, FORK_BOMB, tmp_path, start)
    assert reason and f"limit of {TASKS} processes" in reason, (code, reason)
    assert seconds < 15, seconds


@pytest.mark.system
@needs_bwrap
@pytest.mark.parametrize("start", _starts())
@pytest.mark.parametrize("kind", _backends())
def test_a_submission_within_its_budget_is_left_alone(kind, start, tmp_path):
    seconds, code, reason, _ = _run(kind, QUIET, tmp_path, start)
    assert reason is None and code == 0, (code, reason)


@pytest.mark.system
def test_throwaway_uids_are_unique():
    if os.geteuid() != 0:
        pytest.skip("throw-away uids exist only when grading as root")
    uids = [sandbox.sandbox_uid() for _ in range(20)]
    try:
        assert len(set(uids)) == len(uids)
        assert all(200_000 <= u <= 259_999 for u in uids)
    finally:
        for uid in uids:
            sandbox.release_uid(uid)


def test_backend_is_reported():
    assert budget.backend() in ("cgroup2", "cgroup1", "watchdog")
    assert budget.backend() in sandbox.status_line() or "SANDBOX ON" not in sandbox.status_line()
