"""A small Lab 00 course graded with the real nbgrader, for the tests of hand grading and holds.

Shared by tests/test_manual_grades.py (scores written into the gradebook as the formgrader
does) and tests/test_formgrader_browser.py (the formgrader itself, in Chromium). Each student
is one of the sample kinds below; the course folder holds ``source/`` and ``nbgrader_config.py``
copied from the repository, ``release/`` made by ``pipeline.release``, the submissions, and
everything ``pipeline.autograde`` and the integrity check write.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import nbformat

from tools import pipeline, submissions
from tools.samples import ROOT, write_submission
from tools.variants import tamper

LAB = "lab00_cache_sizing"
SOLUTION, UNTOUCHED, TAMPERED, BROKEN = "solution", "untouched", "tamper-rebind-checker", "broken-invalid-json"


def written_answers(root: Path) -> dict[str, float]:
    """grade_id -> points of the lab's written answers (markdown cells graded by hand)."""
    nb = nbformat.read(root / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c in nb.cells
            if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")}


def _write(root: Path, student: str) -> None:
    """The submission of ``student``, one of SOLUTION, UNTOUCHED, TAMPERED, BROKEN."""
    if student in (SOLUTION, UNTOUCHED):
        write_submission(root, LAB, student, student)
    elif student == TAMPERED:
        submissions.write_tamper(root, next(a for a in tamper.TAMPER if a["name"] == "rebind-checker"), TAMPERED)
    elif student == BROKEN:
        submissions.write_broken(root, "invalid-json", BROKEN)
    else:
        raise ValueError(f"unknown sample student {student!r}")


def build(root: Path, students: Iterable[str]) -> tuple[Path, dict[str, float]]:
    """Release Lab 00 in ``root``, write the students' submissions, autograde them and run the
    integrity check (the tampered one is held). Returns the root and :func:`written_answers`."""
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    for student in students:
        _write(root, student)
    runs = pipeline.autograde(root, verbose=False, timeout=30)
    pipeline.check_integrity(root, runs, verbose=False)
    answers = written_answers(root)
    assert len(answers) >= 2 and sum(answers.values()) > 0, answers
    return root, answers


def html_row(student: str, auto: str, hand: str, total: str) -> str:
    """The start of a submission's row in report.html: student, lab, autograded, by hand, total."""
    return f"<tr><td>{student}</td><td>{LAB}</td><td>{auto}</td><td>{hand}</td><td>{total}</td>"
