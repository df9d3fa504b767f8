"""The verdict as a step of nbgrader's autograde (named in nbgrader_config.py).

nbgrader grades a test cell by its outputs. Grading runs in two places:

* the student's kernel (``tools.sandbox.CourseExecute``) runs the student's notebook with the
  *visible* part of every test cell only, exactly what the student could run: no hidden input,
  no expected value, no reference file ever reaches it;
* this step, after the kernel has stopped, runs the verdict (``tools/verdict.py``): the
  instructor's test cells, hidden tests included, in a grader process that runs no student
  code, against the student's definitions in a sandboxed process of their own.

For every test the verdict failed, an error output with the verdict's message is put *first*
among the cell's outputs, so nbgrader's ``SaveAutoGrades`` scores the cell 0 (it reads outputs in
order and stops at the first error or result). A cell scores its points only if both the
student's kernel and the verdict pass it. The verdict itself is kept in the notebook's metadata
(``kvcourse.verdict``), written by nbgrader's process after the student's kernel has ended; the
integrity check (``tools/holds.py``) and the feedback (``tools/feedback.py``) read it there.

A verdict that cannot be computed fails every test, with the reason.

The verdict needs nothing the kernel produces (it reads the submitted notebook and the
instructor's), so :class:`StartVerdict`, named before the kernel's step in nbgrader_config.py,
starts it in a background thread and :class:`CourseVerdict` waits for it: the two run side by
side, each in its own processes, uid and budget (the sandbox gives each half the grader's
threads: ``tools.sandbox.thread_share``). Without :class:`StartVerdict` the verdict runs here,
after the kernel.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Float, Unicode

from tools import layout
from tools import verdict as verdict_tool

#: The notebook metadata key holding the verdict.
METADATA_KEY = "kvcourse"
#: ``ename`` of the output the verdict puts into a test cell it failed.
ENAME = "GraderVerdict"


def _banner(result: verdict_tool.TestResult) -> str:
    part = "in the hidden tests" if result.where == "hidden" else "when the grader ran this test"
    return f"Failed {part} (run apart from your code): {result.message or 'no message'}"


def verdict_output(result: verdict_tool.TestResult) -> Any:
    """The error output for a test the verdict failed."""
    import nbformat

    text = _banner(result)
    return nbformat.v4.new_output("error", ename=ENAME, evalue=result.message or "failed",
                                  traceback=[text])


def stored_verdict(nb: Any) -> dict | None:
    """The verdict recorded in an autograded notebook (None if the step did not run)."""
    return nb.metadata.get(METADATA_KEY, {}).get("verdict")


def kernel_passed(cell: Any) -> bool:
    """Whether nbgrader's own rule (``nbgrader.utils.determine_grade``) gives the test cell full
    points for the student's kernel's outputs."""
    from nbgrader.utils import determine_grade

    score, max_points = determine_grade(cell)
    return score is not None and score >= max_points


class CourseVerdict(Preprocessor):
    """nbgrader autograde preprocessor: run the verdict and put its failures into the notebook."""

    #: nbconvert runs a Preprocessor only when enabled (its default is False)
    enabled = Bool(True).tag(config=True)
    sandboxed = Unicode("default", help="'default' (tools.sandbox.enabled()), 'on' or 'off'").tag(config=True)
    timeout = Float(0.0, help="seconds a test may wait on the student's code (0: Execute.timeout)").tag(config=True)
    warm = Bool(True, help="fork each verdict's grader from a warm server (tools/verdict_server.py)").tag(config=True)

    def _paths(self, resources: dict) -> tuple[Path, Path]:
        folder = Path(resources.get("metadata", {}).get("path") or ".").resolve()  # <root>/autograded/<s>/<lab>
        info = resources.get("nbgrader", {})
        lab, student, notebook = info.get("assignment"), info.get("student"), info.get("notebook")
        root = folder.parents[2]
        if not (lab and student and notebook):  # resources without nbgrader's ids: the folder says
            lab, student, notebook = folder.name, folder.parent.name, folder.name
        return (layout.submitted_notebook(student, lab, root, notebook),
                layout.source_notebook(lab, root, notebook))

    def _cell_timeout(self) -> float:
        if self.timeout > 0:
            return self.timeout
        value = self.config.get("Execute", {}).get("timeout", verdict_tool.CELL_TIMEOUT)
        return float(value) if isinstance(value, int | float) and value > 0 else verdict_tool.CELL_TIMEOUT

    def compute(self, submitted: Path, source: Path) -> verdict_tool.Verdict:
        """The verdict on ``submitted``; never raises (a verdict that cannot be computed fails
        every test, with the reason)."""
        sandboxed = None if self.sandboxed == "default" else self.sandboxed == "on"
        if not source.is_file():
            return verdict_tool.Verdict(error=f"no instructor notebook at {source}")
        try:
            return verdict_tool.run_in_subprocess(submitted, source, sandboxed=sandboxed,
                                                  cell_timeout=self._cell_timeout(), warm=self.warm)
        except Exception as exc:  # noqa: BLE001 - fail closed: every test fails, with the reason
            return verdict_tool.Verdict(error=f"{type(exc).__name__}: {str(exc)[:200]}")

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        from tools import pipeline

        submitted, source = self._paths(resources)
        waited = time.perf_counter()
        sha256 = pipeline.sha256_of(submitted)
        pending = _take_pending(submitted, source)
        if pending is None or pending.sha256 != sha256:  # none started, or on other contents
            pending = _Pending(time.perf_counter(), sha256)
            pending.finish(self.compute(submitted, source))
        result = pending.wait()
        waited = time.perf_counter() - waited
        disagreements = []
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade") \
                    or cell.metadata.get("nbgrader", {}).get("solution"):
                continue
            test = result.tests.get(grade_id) or verdict_tool.TestResult(
                False, result.error or "the verdict did not run this test")
            if test.passed:
                continue
            if kernel_passed(cell) and test.where != "hidden":
                disagreements.append(grade_id)
            cell.outputs.insert(0, verdict_output(test))
        nb.metadata.setdefault(METADATA_KEY, {})["verdict"] = {
            "tests": {t: {"passed": r.passed, "message": r.message, "where": r.where}
                      for t, r in result.tests.items()},
            "error": result.error, "notes": result.notes[:20], "seconds": result.seconds,
            "wall_seconds": pending.seconds,  # from its start to its result
            "waited_seconds": round(waited, 2),  # how long autograde waited for it here
            "disagreements": disagreements,
            "sha256_submitted": sha256,
        }
        return nb, resources


class StartVerdict(CourseVerdict):
    """nbgrader autograde preprocessor, named before the kernel's step: start the verdict on the
    submission in a background thread; :class:`CourseVerdict`, later in the same autograde,
    takes its result (configured through ``CourseVerdict``'s settings). Changes nothing in the
    notebook."""

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        from tools import pipeline

        submitted, source = self._paths(resources)
        pending = _Pending(time.perf_counter(), pipeline.sha256_of(submitted))

        def run() -> None:
            result = verdict_tool.Verdict(error="the verdict's thread stopped before a result")
            try:
                result = self.compute(submitted, source)
            finally:  # whatever happens, CourseVerdict's wait ends (fail closed)
                pending.finish(result)

        thread = threading.Thread(target=run, name=f"verdict {submitted.parent.parent.name}", daemon=True)
        _put_pending(submitted, source, pending)
        thread.start()
        return nb, resources


@dataclass
class _Pending:
    """A verdict started by :class:`StartVerdict`, until :class:`CourseVerdict` takes it."""

    started: float
    sha256: str  # of the submitted notebook the verdict read
    done: threading.Event = field(default_factory=threading.Event)
    result: verdict_tool.Verdict | None = None
    seconds: float = 0.0

    def finish(self, result: verdict_tool.Verdict) -> None:
        self.result, self.seconds = result, round(time.perf_counter() - self.started, 2)
        self.done.set()

    def wait(self) -> verdict_tool.Verdict:
        self.done.wait()  # the verdict's own time limits end it (tools/verdict.py)
        assert self.result is not None
        return self.result


#: Verdicts started and not yet taken, by (submitted notebook, instructor notebook).
_PENDING: dict[tuple[Path, Path], _Pending] = {}
_PENDING_LOCK = threading.Lock()


def _put_pending(submitted: Path, source: Path, pending: _Pending) -> None:
    """Register ``pending``; one left by an autograde that stopped early (its kernel's step
    failed, so :class:`CourseVerdict` never took it) is finished first: its result is stale."""
    with _PENDING_LOCK:
        stale = _PENDING.pop((submitted, source), None)
    if stale is not None:
        stale.done.wait()
    with _PENDING_LOCK:
        _PENDING[(submitted, source)] = pending


def _take_pending(submitted: Path, source: Path) -> _Pending | None:
    with _PENDING_LOCK:
        return _PENDING.pop((submitted, source), None)
