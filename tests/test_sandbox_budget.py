"""Per-submission budgets (tools/budget.py): memory spread over processes and a fork bomb each
kill only their own sandbox, within seconds, with every backend this machine offers.

Small budgets (256 MiB, 32 tasks) keep these tests light; every bomb also runs under its own
throw-away uid with RLIMIT_NPROC, so even a failing test cannot take the machine down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tools import budget, sandbox

_PROBE = sandbox.probe() if sys.platform == "linux" else sandbox.Probe(False, "not Linux")
needs_bwrap = pytest.mark.skipif(not _PROBE.works, reason=f"bwrap sandbox cannot run here: {_PROBE.reason}")

MEMORY = 256 * 2**20
TASKS = 32

SPREAD = """
import os, time
for i in range(3):  # 3 x 120 MiB: each far below the budget, together over it
    if os.fork() == 0:
        hog = bytearray(120 * 2**20)
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


def _run(kind: str, code: str, tmp_path) -> tuple[float, int, str | None, budget.Budget]:
    work = tmp_path / "lab"
    work.mkdir()
    uid = sandbox.sandbox_uid()
    runtime = sandbox.prepare_runtime_dir(uid)
    if kind == "watchdog":
        box: budget.Budget = budget.WatchdogBudget(MEMORY, TASKS, str(work), uid)
    else:
        box = budget.CgroupBudget(kind, MEMORY, TASKS, str(work))
    limits = sandbox.Limits(memory_bytes=MEMORY, tasks=TASKS)
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
    shutil.rmtree(runtime, ignore_errors=True)
    if uid is not None:
        assert not sandbox._uid_busy(uid), "a process of the submission survived"
        sandbox.release_uid(uid)
    return seconds, proc.returncode, budget.pop_kill_reason(work), box


@pytest.mark.system
@needs_bwrap
@pytest.mark.parametrize("kind", _backends())
def test_memory_spread_over_processes_is_killed(kind, tmp_path):
    seconds, code, reason, box = _run(kind, SPREAD, tmp_path)
    assert reason and "memory budget" in reason, (code, reason)
    assert seconds < 15, seconds
    assert code != 0
    if isinstance(box, budget.CgroupBudget):
        assert not any(folder.exists() for folder in box.folders), "the cgroup was not removed"


@pytest.mark.system
@needs_bwrap
@pytest.mark.parametrize("kind", _backends())
def test_fork_bomb_is_killed(kind, tmp_path):
    seconds, code, reason, _ = _run(kind, FORK_BOMB, tmp_path)
    assert reason and f"limit of {TASKS} processes" in reason, (code, reason)
    assert seconds < 15, seconds


@pytest.mark.system
@needs_bwrap
@pytest.mark.parametrize("kind", _backends())
def test_a_submission_within_its_budget_is_left_alone(kind, tmp_path):
    seconds, code, reason, _ = _run(kind, QUIET, tmp_path)
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
