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
"""

from __future__ import annotations

import time
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

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        from tools import pipeline

        started = time.perf_counter()
        submitted, source = self._paths(resources)
        sandboxed = None if self.sandboxed == "default" else self.sandboxed == "on"
        if not source.is_file():
            result = verdict_tool.Verdict(error=f"no instructor notebook at {source}")
        else:
            try:
                result = verdict_tool.run_in_subprocess(submitted, source, sandboxed=sandboxed,
                                                        cell_timeout=self._cell_timeout(), warm=self.warm)
            except Exception as exc:  # noqa: BLE001 - fail closed: every test fails, with the reason
                result = verdict_tool.Verdict(error=f"{type(exc).__name__}: {str(exc)[:200]}")
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
            "wall_seconds": round(time.perf_counter() - started, 2),
            "disagreements": disagreements,
            "sha256_submitted": pipeline.sha256_of(submitted),
        }
        return nb, resources
