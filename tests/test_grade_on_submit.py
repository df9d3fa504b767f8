"""Grade on submit (tools/grade_on_submit.py): a worker grades each new submission in nbgrader's
exchange with the course's grading path and releases the student's feedback.

The fast tests drive the worker's bookkeeping with a stand-in grader. The slow ones run the real
thing: tools/exchange.py's round trip (students as their own Unix users when root), the worker
as its own process (`python -m tools.grade_on_submit --once`), nbgrader's fetch_feedback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tools import classroom, exchange
from tools import grade_on_submit as gos
from tools.layout import ROOT

LAB = "lab00_cache_sizing"
TS1 = "2026-10-05 21:59:03.123456 UTC"
TS2 = "2026-10-05 22:10:00.000001 UTC"


# --- the bookkeeping, with a stand-in grader (fast) -------------------------------------------------

def _entry(inbound: Path, student: str, timestamp: str, complete: bool = True) -> Path:
    """An inbound entry as nbgrader submit leaves it (``complete=False``: still being copied)."""
    path = inbound / f"{student}+{LAB}+{timestamp}+rnd"
    path.mkdir(parents=True)
    (path / f"{LAB}.ipynb").write_text("{}")
    if complete:
        (path / gos.TIMESTAMP_FILE).write_text(timestamp)
    return path


class FakeGrader:
    """Records what it was asked to grade; fails for the students in ``failing``."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.failing = set(failing)
        self.calls: list[str] = []

    def __call__(self, entry: gos.Entry) -> gos.Outcome:
        self.calls.append(entry.name)
        if entry.student in self.failing:
            raise RuntimeError("the gradebook is locked")
        return gos.Outcome(True, 1.0, 2.0, feedback_released=True)


def _worker(root: Path, grade, **kw) -> gos.Worker:
    kw.setdefault("settle", 0)
    return gos.Worker(root, root / "inbound", [LAB], grade, **kw)


def test_restart_does_not_regrade_and_resubmission_does(tmp_path):
    grader = FakeGrader()
    _entry(tmp_path / "inbound", "ann", TS1)
    assert _worker(tmp_path, grader).run_pass().graded == [f"ann/{LAB}"]
    assert _worker(tmp_path, grader).run_pass().graded == []  # a new worker: the state says graded
    _entry(tmp_path / "inbound", "ann", TS2)
    assert _worker(tmp_path, grader).run_pass().graded == [f"ann/{LAB}"]
    assert [name.split("+")[2] for name in grader.calls] == [TS1, TS2]
    record = gos.load_state(tmp_path / gos.STATE_FILE)[f"ann/{LAB}"]
    assert (record.status, record.timestamp, record.attempts, record.score) == ("graded", TS2, 1, 1.0)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # written atomically


def test_failure_is_retried_a_bounded_number_of_times_and_kept(tmp_path):
    grader = FakeGrader(failing={"bob"})
    bob = _entry(tmp_path / "inbound", "bob", TS1)
    _entry(tmp_path / "inbound", "cy", TS2)
    worker = _worker(tmp_path, grader, policy=gos.Policy(max_attempts=2, retry_after=0))
    first = worker.run_pass()
    assert (first.failed, first.graded) == ([f"bob/{LAB}"], [f"cy/{LAB}"])  # the others go on
    assert worker.run_pass().failed == [f"bob/{LAB}"]
    assert worker.run_pass().failed == []  # two attempts, no third
    assert _worker(tmp_path, grader, policy=gos.Policy(2, 0)).run_pass().failed == []  # nor after a restart
    assert sum("bob" in c for c in grader.calls) == 2
    record = gos.load_state(tmp_path / gos.STATE_FILE)[f"bob/{LAB}"]
    assert (record.status, record.attempts) == ("failed", 2)
    assert "RuntimeError: the gradebook is locked" in record.error
    assert (bob / f"{LAB}.ipynb").exists()  # the submission stays in the exchange
    waiting = _worker(tmp_path, grader, policy=gos.Policy(3, retry_after=3600))
    assert waiting.run_pass().failed == []  # a third attempt is allowed, but not yet due


def test_a_worker_that_stopped_mid_grading_counts_an_attempt(tmp_path):
    state = tmp_path / gos.STATE_FILE
    _entry(tmp_path / "inbound", "dee", TS1)
    during = []

    def grade(entry: gos.Entry) -> gos.Outcome:  # what a crash at this moment would leave
        during.append(gos.load_state(state)[f"dee/{LAB}"])
        return gos.Outcome(True, 1.0, 1.0)

    gos.save_state(state, {f"dee/{LAB}": gos.Record(
        f"dee+{LAB}+{TS1}+rnd", TS1, gos.GRADING, attempts=1, updated=gos._now().isoformat())})
    waiting = _worker(tmp_path, grade, policy=gos.Policy(3, retry_after=3600))
    assert waiting.run_pass().graded == []
    record = gos.load_state(state)[f"dee/{LAB}"]
    assert (record.status, record.error) == ("failed", "the worker stopped while grading it")
    assert _worker(tmp_path, grade, policy=gos.Policy(3, retry_after=0)).run_pass().graded == [f"dee/{LAB}"]
    assert [(r.status, r.attempts) for r in during] == [("grading", 2)]
    assert gos.load_state(state)[f"dee/{LAB}"].attempts == 2
    # a submission that kills the worker each time is given up after the last attempt
    gos.save_state(state, {f"dee/{LAB}": gos.Record(f"dee+{LAB}+{TS1}+rnd", TS1, gos.GRADING, attempts=3)})
    assert _worker(tmp_path, grade, policy=gos.Policy(3, retry_after=0)).run_pass().graded == []
    assert len(during) == 1


def test_half_copied_entry_waits(tmp_path):
    grader = FakeGrader()
    entry = _entry(tmp_path / "inbound", "eve", TS1, complete=False)
    worker = _worker(tmp_path, grader)
    assert worker.run_pass().waiting == [entry.name] and grader.calls == []
    (entry / gos.TIMESTAMP_FILE).write_text(TS1)
    clock = [0.0]
    settling = _worker(tmp_path, grader, settle=5.0)
    settling.settling.clock = lambda: clock[0]
    assert settling.run_pass().waiting == [entry.name]  # seen once
    clock[0] = 3.0
    (entry / "more.txt").write_text("still copying")
    assert settling.run_pass().waiting == [entry.name]  # changed: starts again
    clock[0] = 7.0
    assert settling.run_pass().waiting == [entry.name]
    clock[0] = 8.5
    assert settling.run_pass().graded == [f"eve/{LAB}"]


def test_parse_entry_names():
    inbound = Path("/x/inbound")
    entry = gos.parse_entry(inbound / f"a+b+{LAB}+{TS1}+rnd", [LAB])
    assert (entry.student, entry.lab, entry.timestamp) == ("a+b", LAB, TS1)
    assert gos.parse_entry(inbound / f"ann+{LAB}+{TS1}", [LAB]).student == "ann"  # no random part
    assert gos.parse_entry(inbound / f"ann+lab09_other+{TS1}", [LAB]) is None
    assert gos.parse_entry(inbound / f"ann+{LAB}+not a time", [LAB]) is None


def test_stop_signal_finishes_the_current_one_a_second_abandons_it(tmp_path):
    for student, ts in (("fay", TS1), ("gus", TS2)):
        _entry(tmp_path / "inbound", student, ts)
    stop = gos.Stop()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop.install()
    try:
        def grade_then_signal(times: int):
            def grade(entry: gos.Entry) -> gos.Outcome:
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.05)  # the handler runs in between
                return gos.Outcome(True, 1.0, 1.0)
            return grade

        worker = _worker(tmp_path, grade_then_signal(1), stop=stop)
        assert worker.run_pass().graded == [f"fay/{LAB}"]  # finished; gus left for the next start
        stop = gos.Stop()
        stop.install()
        worker = _worker(tmp_path, grade_then_signal(2), stop=stop)
        with pytest.raises(gos.Abandoned):
            worker.run_pass()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert set(gos.load_state(tmp_path / gos.STATE_FILE)) == {f"fay/{LAB}"}  # gus: not recorded


def test_lock_names_the_file_and_the_holder(tmp_path):
    fd = gos.acquire_lock(tmp_path / gos.LOCK_FILE)
    try:
        with pytest.raises(gos.LockHeld, match=rf"pid {os.getpid()}\).*{re.escape(str(tmp_path / gos.LOCK_FILE))}"):
            gos.acquire_lock(tmp_path / gos.LOCK_FILE)
    finally:
        os.close(fd)
    os.close(gos.acquire_lock(tmp_path / gos.LOCK_FILE))  # freed with its holder


# --- the real exchange, nbgrader and students (slow) ------------------------------------------------

#: submitted in this order: a broken notebook first, to show it does not stop the others
FIRST = {"kvstudent3": "broken", "kvstudent1": "solution", "kvstudent2": "mutant:weights_not_subtracted"}
SCORE = re.compile(r"Score: ([\d.]+) / ([\d.]+)")


def _expected(course: Path, variant: str) -> float:
    return float(sum(classroom.declared_expectation(course, LAB, variant).values()))


def _once(rt: exchange.RoundTrip) -> subprocess.CompletedProcess:
    return subprocess.run(_worker_command(rt, "--once"), cwd=rt.course, env=_worker_env(rt),
                          capture_output=True, text=True, timeout=300)


def _worker_command(rt: exchange.RoundTrip, *args: str) -> list[str]:
    # --retry-after: the broken submission is not tried again while the story runs
    return [sys.executable, "-m", "tools.grade_on_submit", "--root", str(rt.course), "--settle", "0.3",
            "--retry-after", "3600", *args]


def _worker_env(rt: exchange.RoundTrip) -> dict[str, str]:
    env = rt._env(rt.course)  # the instructor's: the exchange config, the venv on PATH
    env["PYTHONPATH"] = str(ROOT)
    return env


def _state(rt: exchange.RoundTrip) -> dict:
    return json.loads((rt.course / gos.STATE_FILE).read_text())["submissions"]


def _fetched(rt: exchange.RoundTrip, student: str) -> dict[str, str]:
    """The feedback pages the student fetches (timestamp -> HTML); none if nothing was released."""
    try:
        return {t: page.read_text() for t, page in rt.fetch_feedback(student).items()}
    except RuntimeError as exc:  # nbgrader fails when the exchange has no feedback folder yet
        if "not found" not in str(exc):
            raise
        return {}


def _submit_broken(rt: exchange.RoundTrip, student: str) -> None:
    notebook = rt.fetch(student)
    notebook.write_text(notebook.read_text()[:500])  # cut short: invalid JSON
    rt.submit(student, "untouched")


@pytest.fixture(scope="module")
def story():
    """Students submit through the exchange; the worker grades, is run again, grades a
    resubmission, and refuses to run beside another worker. What each step saw, by step."""
    # not tmp_path: pytest's folder is closed to other users, and students must reach theirs
    workdir = Path(tempfile.mkdtemp(prefix="kvcourse-gos-test-"))
    workdir.chmod(0o755)
    seen: dict = {}
    try:
        rt = exchange.RoundTrip(workdir / "trip", LAB)
        rt.setup()
        rt.release()
        for student, variant in FIRST.items():
            _submit_broken(rt, student) if variant == "broken" else rt.student_turn(student, variant)
        t0 = time.perf_counter()
        seen["first"] = _once(rt)
        seen["first_seconds"] = time.perf_counter() - t0
        seen["first_state"] = _state(rt)
        seen["feedback"] = {s: _fetched(rt, s) for s in FIRST}
        graded = rt.course / "autograded" / "kvstudent1" / LAB / f"{LAB}.ipynb"
        seen["graded_mtime"] = graded.stat().st_mtime_ns

        half = rt.exchange / "kv-cache-course" / "inbound" / f"kvstudent4+{LAB}+2026-01-01 00:00:00.000000 UTC+x"
        half.mkdir()
        (half / f"{LAB}.ipynb").write_text("{")  # being copied: no timestamp.txt yet
        seen["second"] = _once(rt)
        seen["second_state"] = _state(rt)
        shutil.rmtree(half)

        rt.submit("kvstudent2", "solution")  # a resubmission
        seen["third"] = _once(rt)
        seen["third_state"] = _state(rt)
        seen["refetched"] = _fetched(rt, "kvstudent2")
        seen["graded_mtime_after"] = graded.stat().st_mtime_ns

        worker = subprocess.Popen(_worker_command(rt, "--interval", "1"), cwd=rt.course, env=_worker_env(rt),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = rt.course / gos.LOG_FILE
        deadline = time.monotonic() + 60
        while "watching every" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        seen["worker_pid"] = worker.pid
        seen["refused"] = _once(rt)
        worker.send_signal(signal.SIGTERM)
        seen["worker_output"] = worker.communicate(timeout=60)[0]
        seen["worker_rc"] = worker.returncode
        seen["rt"] = rt
        yield seen
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.system
def test_submission_is_graded_and_feedback_fetched(story):
    first = story["first"]
    assert first.returncode == 0, first.stderr
    course = story["rt"].course
    state = story["first_state"]
    for student in ("kvstudent1", "kvstudent2"):
        expected = _expected(course, FIRST[student])
        record = state[f"{student}/{LAB}"]
        assert (record["status"], record["score"], record["feedback_released"]) == ("graded", expected, True)
        assert re.search(rf"graded {student} / {LAB}: {expected:g} / 24 autograded points in [\d.]+ s", first.stderr)
        pages = story["feedback"][student]
        assert list(pages) == [record["timestamp"]]  # the feedback of the submission just made
        assert float(SCORE.search(pages[record["timestamp"]]).group(1)) == expected
        assert "BEGIN HIDDEN TESTS" not in pages[record["timestamp"]]
    assert story["first_state"]["kvstudent1/" + LAB]["score"] > story["first_state"]["kvstudent2/" + LAB]["score"]
    assert (course / gos.LOG_FILE).read_text().count("graded kvstudent") >= 2
    print(f"first --once, 3 submissions: {story['first_seconds']:.1f} s")


@pytest.mark.slow
@pytest.mark.system
def test_broken_submission_is_recorded_as_failed_without_stopping_others(story):
    record = story["first_state"][f"kvstudent3/{LAB}"]
    assert (record["status"], record["attempts"]) == ("failed", 1)
    assert "NotJSONError" in record["error"] or "JSON" in record["error"], record["error"]
    assert re.search(rf"FAILED kvstudent3 / {LAB}: .*attempt 1 of 3", story["first"].stderr)
    (page,) = story["feedback"]["kvstudent3"].values()  # the student learns why
    assert "could not be graded" in page
    assert list(story["first_state"]) == sorted(f"{s}/{LAB}" for s in FIRST)  # graded after it


@pytest.mark.slow
@pytest.mark.system
def test_second_run_grades_nothing_and_waits_for_a_half_copied_entry(story):
    second = story["second"]
    assert second.returncode == 0, second.stderr
    assert "done: 0 graded, 0 failed, 1 still being copied" in second.stderr
    assert f"waiting for kvstudent4+{LAB}" in second.stderr
    assert story["second_state"] == story["first_state"]


@pytest.mark.slow
@pytest.mark.system
def test_resubmission_is_graded_again_and_only_it(story):
    third = story["third"]
    assert third.returncode == 0, third.stderr
    assert "done: 1 graded, 0 failed" in third.stderr
    before, after = story["first_state"], story["third_state"]
    record = after[f"kvstudent2/{LAB}"]
    assert record["timestamp"] > before[f"kvstudent2/{LAB}"]["timestamp"]
    assert (record["status"], record["score"]) == ("graded", _expected(story["rt"].course, "solution"))
    assert "(resubmitted," in third.stderr
    for key in (f"kvstudent1/{LAB}", f"kvstudent3/{LAB}"):
        assert after[key] == before[key]
    assert story["graded_mtime_after"] == story["graded_mtime"]  # kvstudent1 not graded again
    pages = story["refetched"]
    assert len(pages) == 2  # one page per submission; the new one has the new score
    assert float(SCORE.search(pages[record["timestamp"]]).group(1)) == record["score"]


@pytest.mark.slow
@pytest.mark.system
def test_lock_refuses_a_second_worker_and_sigterm_stops_cleanly(story):
    refused = story["refused"]
    lock = story["rt"].course / gos.LOCK_FILE
    assert refused.returncode == 3
    assert f"(pid {story['worker_pid']}) holds the lock {lock}" in refused.stderr
    assert story["worker_rc"] == 0, story["worker_output"]
    assert "SIGTERM: stopping" in story["worker_output"] and story["worker_output"].rstrip().endswith("stopped")
