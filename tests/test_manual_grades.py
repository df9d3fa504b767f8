"""Written answers graded by hand in the formgrader reach grades.csv, the score table and
report.html; nbgrader's own export does not overwrite the course's grades file; a held
submission is flagged in the formgrader with its reason.

A small course (Lab 00: the solution, the untouched release, a tampering attempt and a broken
file) is graded once with the real nbgrader; the tests then write manual scores into nbgrader's
gradebook the way the formgrader does (its GradeHandler: ``manual_score``, and
``needs_manual_grade`` only when neither score is set) and run ``pipeline.report``.

Re-grading (tools/hand_grades.py) runs in courses of its own: students graded by hand, then
autograded again through ``pipeline.autograde``, the ``nbgrader autograde --force`` command
line and two parallel workers on PostgreSQL, with their answers unchanged, changed or broken.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hand_grading_course import BROKEN, LAB, SOLUTION, TAMPERED, UNTOUCHED, build
from hand_grading_course import html_row as _html_row
from hand_grading_course import written_answers as _written_answers

from tools import classroom, hand_grades, pipeline
from tools.samples import ROOT, write_submission

pytestmark = pytest.mark.slow  # real nbgrader autograde of four submissions


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return build(tmp_path_factory.mktemp("manual"), [SOLUTION, UNTOUCHED, TAMPERED, BROKEN])


def _gradebook(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(pipeline.gradebook_db_url(root))


def _hand_grade(root: Path, student: str, scores: dict[str, float | None]) -> None:
    """Set manual scores as the formgrader does (nbgrader's formgrader GradeHandler.put)."""
    with _gradebook(root) as gb:
        for name, value in scores.items():
            grade = gb.find_grade(name, LAB, LAB, student)
            grade.manual_score = value
            grade.needs_manual_grade = value is None and grade.auto_score is None
        gb.db.commit()


def _report(root: Path, capsys) -> tuple[dict, dict, dict[str, str], str]:
    """pipeline.report: (rows, CSV rows, score-table line of each student, report.html)."""
    capsys.readouterr()
    rows = {r.student: r for r in pipeline.report(root)}
    printed = capsys.readouterr().out
    with (root / "grades.csv").open(newline="") as f:
        table = {r["student"]: r for r in csv.DictReader(f)}
    lines = {line.split()[0]: line for line in printed.splitlines()
             if line.split() and line.split()[0] in rows and LAB in line}
    return rows, table, lines | {"": printed}, (root / "report.html").read_text()


def test_hand_graded_points_reach_grades_csv_the_table_and_the_report(course, capsys):
    root, answers = course
    given = {name: points - 1 if i == 0 else points for i, (name, points) in enumerate(answers.items())}
    _hand_grade(root, SOLUTION, given)
    rows, table, lines, html = _report(root, capsys)

    hand, hand_max = sum(given.values()), sum(answers.values())
    row = rows[SOLUTION]
    assert (row.auto_score, row.manual_score, row.manual_max, row.manual_pending) == \
        (row.auto_max, hand, hand_max, []), row
    assert row.total == row.auto_max + hand and row.total_max == row.auto_max + hand_max
    assert row.status == "graded" and row.total_is == "final", (row.status, row.total_is)
    with _gradebook(root) as gb:  # the total is nbgrader's own score of the submission
        assert gb.find_submission_notebook(LAB, LAB, SOLUTION).score == row.total

    line = table[SOLUTION]
    assert (line["autograded_points"], line["hand_graded_points"], line["hand_graded_max"], line["total_points"],
            line["total_max"], line["answers_not_hand_graded"], line["total_is"]) == \
        (f"{row.auto_max:g}", f"{hand:g}", f"{hand_max:g}", f"{row.total:g}", f"{row.total_max:g}", "", "final")
    assert line["total_percent"] == f"{100 * row.total / row.total_max:.1f}"

    assert f"{hand:g} / {hand_max:g}" in lines[SOLUTION] and f"{row.total:g} / {row.total_max:g}" in lines[SOLUTION]
    assert "needs hand grading" not in lines[SOLUTION]
    assert _html_row(SOLUTION, f"{row.auto_max:g} / {row.auto_max:g}", f"{hand:g} / {hand_max:g}",
                     f"{row.total:g} / {row.total_max:g}") in html


def test_answers_not_graded_by_hand_are_listed_and_never_counted_as_earned(course, capsys):
    root, answers = course
    first, *rest = answers
    _hand_grade(root, SOLUTION, {first: None} | {name: answers[name] for name in rest})
    rows, table, lines, html = _report(root, capsys)

    row = rows[SOLUTION]
    so_far = sum(answers[name] for name in rest)
    assert row.manual_pending == [first] and row.manual_score == so_far, row
    assert row.status == "graded; needs hand grading: 1 answer", row.status
    assert row.total == row.auto_max + so_far and row.total_is.startswith("provisional"), row.total_is
    line = table[SOLUTION]
    assert "needs hand grading: 1 answer" in line["status"] and line["answers_not_hand_graded"] == first
    assert line["hand_graded_points"] == f"{so_far:g}" and line["total_is"].startswith("provisional")
    assert f"{so_far:g}* / {row.manual_max:g}" in lines[SOLUTION], lines[SOLUTION]
    assert f"{row.total:g}* / {row.total_max:g}" in lines[SOLUTION]
    assert "needs hand grading" in lines[SOLUTION] and f"{SOLUTION}/{LAB}" in lines[""].split("needs hand grading (")[1]
    assert _html_row(SOLUTION, f"{row.auto_max:g} / {row.auto_max:g}", f"{so_far:g}* / {row.manual_max:g}",
                     f"{row.total:g}* / {row.total_max:g}") in html
    assert "Needs hand grading (1 submissions, 1 answers)" in html

    # none graded yet (as right after autograde): nothing counted, the maximum nowhere as earned
    _hand_grade(root, SOLUTION, dict.fromkeys(answers))
    rows, table, lines, html = _report(root, capsys)
    row = rows[SOLUTION]
    hand_max = sum(answers.values())
    assert row.manual_score == 0 and sorted(row.manual_pending) == sorted(answers), row
    assert row.status == f"graded; needs hand grading: {len(answers)} answers", row.status
    assert (table[SOLUTION]["hand_graded_points"], table[SOLUTION]["total_points"]) == ("0", f"{row.auto_max:g}")
    assert f"0* / {hand_max:g}" in lines[SOLUTION] and f"+{hand_max:g}" not in lines[SOLUTION]
    assert f"{hand_max:g} / {hand_max:g}" not in lines[SOLUTION]


@pytest.mark.parametrize("student", [UNTOUCHED, BROKEN])
def test_untouched_and_broken_submissions_earn_no_hand_graded_points(course, capsys, student):
    root, answers = course
    rows, table, lines, html = _report(root, capsys)
    hand_max = sum(answers.values())
    row = rows[student]
    assert (row.manual_score, row.manual_max, row.manual_pending, row.total) == (0, hand_max, [], 0), row
    assert "needs hand grading" not in row.status
    if student == BROKEN:
        assert row.status.startswith("not graded") and row.total_is == "not graded"
    else:  # answers left as released: nbgrader scores them 0 by itself, nothing to grade by hand
        assert row.status == "graded" and row.total_is == "final"
    assert (table[student]["hand_graded_points"], table[student]["hand_graded_max"],
            table[student]["total_points"]) == ("0", f"{hand_max:g}", "0")
    assert f"0 / {hand_max:g}" in lines[student] and f"+{hand_max:g}" not in lines[student], lines[student]
    assert _html_row(student, f"0 / {row.auto_max:g}", f"0 / {hand_max:g}", f"0 / {row.total_max:g}") in html


def test_nbgrader_export_does_not_overwrite_the_course_grades_file(course, capsys):
    root, _ = course
    _report(root, capsys)
    ours = (root / "grades.csv").read_bytes()
    assert ours.startswith(b"student,lab,status,autograded_points")
    nbgrader = Path(sys.executable).parent / "nbgrader"
    env = dict(os.environ, PATH=str(nbgrader.parent) + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run([str(nbgrader), "export"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (root / "grades.csv").read_bytes() == ours
    exported = (root / pipeline.NBGRADER_EXPORT).read_text()
    assert exported.startswith("assignment,duedate,timestamp,student_id") and SOLUTION in exported
    # an explicit --to still chooses the file
    done = subprocess.run([str(nbgrader), "export", "--to", "mine.csv"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and (root / "mine.csv").read_text().startswith("assignment,"), done.stderr[-2000:]
    assert (root / "grades.csv").read_bytes() == ours


def _hold_comments(root: Path, student: str) -> tuple[bool, dict[str, str]]:
    with _gradebook(root) as gb:
        nb = gb.find_submission_notebook(LAB, LAB, student)
        return nb.flagged, {c.name: c.manual_comment for c in nb.comments if c.manual_comment}


def test_a_held_submission_is_flagged_with_its_reason_in_the_formgrader(course, capsys):
    root, _ = course
    flagged, comments = _hold_comments(root, TAMPERED)
    assert flagged
    [(cell, text)] = comments.items()
    assert text.startswith(pipeline.HOLD_COMMENT_MARK + " HELD for review") and "check_int" in text, text
    assert cell == pipeline._first_solution_cell(root, LAB)

    # the instructor's comment is kept; checking again neither erases nor repeats the reason
    with _gradebook(root) as gb:
        gb.find_comment(cell, LAB, LAB, TAMPERED).manual_comment = "Talk to the student on Monday."
        gb.db.commit()
    runs = [pipeline.GradeRun(TAMPERED, LAB, True, 0.0)]
    for _ in range(2):
        pipeline.check_integrity(root, runs, verbose=False)
    flagged, comments = _hold_comments(root, TAMPERED)
    assert flagged and comments[cell].startswith("Talk to the student on Monday.\n\n")
    assert comments[cell].count(pipeline.HOLD_COMMENT_MARK) == 1 and "check_int" in comments[cell]

    rows, table, lines, _ = _report(root, capsys)
    assert rows[TAMPERED].integrity.startswith("HELD for review") and rows[TAMPERED].auto_score == 0
    assert "held for review" in table[TAMPERED]["total_is"] and table[TAMPERED]["total_is"].startswith("provisional")


def test_a_hold_the_check_lifts_itself_leaves_the_instructor_s_comment(course):
    """_hold_all (the post-convert hook when the check itself fails) flags too; a later clean
    check removes its line and the flag, and keeps what the instructor wrote."""
    root, _ = course
    cell = pipeline._first_solution_cell(root, LAB)
    with _gradebook(root) as gb:
        gb.find_comment(cell, LAB, LAB, UNTOUCHED).manual_comment = "Answers left empty."
        gb.db.commit()
    pipeline._hold_all(root, UNTOUCHED, LAB, "the integrity check failed (RuntimeError: for the test)")
    flagged, comments = _hold_comments(root, UNTOUCHED)
    assert flagged and comments[cell].startswith("Answers left empty.\n\n")
    assert "the integrity check failed (RuntimeError: for the test)" in comments[cell]

    verdict = pipeline.check_integrity(root, [pipeline.GradeRun(UNTOUCHED, LAB, True, 0.0)], verbose=False)
    assert not verdict[(UNTOUCHED, LAB)].held
    assert _hold_comments(root, UNTOUCHED) == (False, {cell: "Answers left empty."})


# --- re-grading a submission graded by hand (tools/hand_grades.py) ---------------------------------

RESUBMITS_API, RESUBMITS_CLI = "resubmits-api", "resubmits-cli"


def _regrade_course(root: Path, students: list[str], workers: int = 1) -> tuple[Path, dict[str, float]]:
    """A course of ``students`` (each the solution, written answers to grade by hand), autograded once."""
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    if not (root / "nbgrader_config.py").exists():
        shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    for student in students:
        write_submission(root, LAB, student, "solution")
    runs = pipeline.autograde(root, verbose=False, timeout=30, workers=workers)
    assert all(r.success for r in runs), runs
    return root, _written_answers(root)


@pytest.fixture(scope="module")
def regrade(tmp_path_factory):
    return _regrade_course(tmp_path_factory.mktemp("regrade"), [RESUBMITS_API, RESUBMITS_CLI])


def _formgrader_put(root: Path, student: str, name: str, manual: float | None, extra: float | None = None) -> None:
    """What the formgrader's GradeHandler.put does with a score typed into one answer."""
    with _gradebook(root) as gb:
        grade = gb.find_grade(name, LAB, LAB, student)
        grade.manual_score, grade.extra_credit = manual, extra
        grade.needs_manual_grade = manual is None and grade.auto_score is None
        gb.db.commit()


def _state(root: Path, student: str) -> dict[str, tuple]:
    """Written answer -> (manual score, extra credit, needs manual grading) in the gradebook."""
    with _gradebook(root) as gb:
        return {g.name: (g.manual_score, g.extra_credit, g.needs_manual_grade)
                for g in gb.find_submission_notebook(LAB, LAB, student).grades if g.cell_type == "markdown"}


def _csv_row(root: Path, student: str) -> dict[str, str]:
    """The student's row of grades.csv as the course writes it (collect_grades, write_csv)."""
    pipeline.write_csv(pipeline.collect_grades(root), root / pipeline.GRADES_CSV)
    with (root / pipeline.GRADES_CSV).open(newline="") as f:
        return next(r for r in csv.DictReader(f) if r["student"] == student)


def _edit_answer(root: Path, student: str, name: str, text: str) -> None:
    """The student hands in another text for the written answer ``name`` (nbgrader collect replaces the file)."""
    path = root / "submitted" / student / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == name)
    cell.source = text
    nbformat.write(nb, path)


def _autograde(root: Path, student: str) -> pipeline.GradeRun:
    [run] = pipeline.autograde(root, [(student, LAB)], verbose=False, timeout=30)
    return run


def _nbgrader_autograde(root: Path, student: str) -> subprocess.CompletedProcess:
    """`nbgrader autograde LAB --student S --force` in the course folder (the formgrader's Autograde
    button runs the same converter with the same nbgrader_config.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBGRADER"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "nbgrader", "autograde", LAB, "--student", student, "--force"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_a_hand_grade_stands_while_its_answer_is_unchanged_and_drops_when_it_changes(regrade):
    root, answers = regrade
    first, second = answers
    student = RESUBMITS_API
    _formgrader_put(root, student, first, answers[first] - 1, extra=1.0)  # the second: never graded by hand
    assert _autograde(root, student).success
    assert _state(root, student) == {first: (answers[first] - 1, 1.0, False), second: (None, None, True)}
    row = _csv_row(root, student)
    assert (row["answers_not_hand_graded"], row["hand_graded_points"]) == (second, f"{answers[first]:g}"), row
    assert row["total_is"].startswith("provisional"), row

    _formgrader_put(root, student, second, answers[second], extra=0.5)
    graded = {first: (answers[first] - 1, 1.0, False), second: (answers[second], 0.5, False)}
    for _ in range(2):  # re-grading an unchanged submission changes nothing, however often
        assert _autograde(root, student).success
        assert _state(root, student) == graded
    row = _csv_row(root, student)
    assert (row["status"], row["total_is"], row["answers_not_hand_graded"]) == ("graded", "final", ""), row
    assert row["hand_graded_points"] == f"{answers[first] + answers[second] + 0.5:g}", row
    with _gradebook(root) as gb:
        assert f"{gb.find_submission_notebook(LAB, LAB, student).score:g}" == row["total_points"]

    # a broken resubmission is not graded: the hand grades wait for the next one that is
    notebook = root / "submitted" / student / LAB / f"{LAB}.ipynb"
    handed_in = notebook.read_bytes()
    notebook.write_text('{"cells": [')
    assert not _autograde(root, student).success
    assert _state(root, student) == graded

    # the next resubmission answers the second question differently: only that one is to grade again
    notebook.write_bytes(handed_in)
    _edit_answer(root, student, second, "A different answer, written after grading.")
    for _ in range(2):  # its score and extra credit no longer count, however often it is re-graded
        assert _autograde(root, student).success
        assert _state(root, student) == {first: (answers[first] - 1, 1.0, False), second: (None, None, True)}
    row = _csv_row(root, student)
    assert (row["answers_not_hand_graded"], row["hand_graded_points"]) == (second, f"{answers[first]:g}"), row
    assert row["total_is"].startswith("provisional") and "needs hand grading: 1 answer" in row["status"], row


def test_nbgrader_autograde_force_keeps_hand_grades_of_unchanged_answers(regrade):
    root, answers = regrade
    first, second = answers
    student = RESUBMITS_CLI
    for name, points in answers.items():
        _formgrader_put(root, student, name, points)
    done = _nbgrader_autograde(root, student)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _state(root, student) == {first: (answers[first], None, False), second: (answers[second], None, False)}
    row = _csv_row(root, student)
    assert (row["total_is"], row["hand_graded_points"]) == ("final", f"{sum(answers.values()):g}"), row

    _edit_answer(root, student, first, "Rewritten after it was graded.")
    done = _nbgrader_autograde(root, student)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "changed since it was scored by hand" in done.stderr
    assert _state(root, student) == {first: (None, None, True), second: (answers[second], None, False)}
    row = _csv_row(root, student)
    assert (row["answers_not_hand_graded"], row["hand_graded_points"]) == (first, f"{answers[second]:g}"), row
    assert row["total_is"].startswith("provisional"), row


@pytest.mark.system  # a PostgreSQL server (Debian package)
def test_parallel_workers_keep_and_drop_hand_grades_in_a_postgresql_gradebook(tmp_path):
    students = ["pg-unchanged", "pg-changed"]
    cluster = classroom.PostgresCluster(tmp_path)
    url = cluster.start()
    try:
        config = (ROOT / "nbgrader_config.py").read_text() + f"\nc.CourseDirectory.db_url = {url!r}\n"
        (tmp_path / "nbgrader_config.py").write_text(config)
        root, answers = _regrade_course(tmp_path, students, workers=2)  # both workers create the table
        for student in students:
            for name, points in answers.items():
                _formgrader_put(root, student, name, points)
        first, second = answers
        _edit_answer(root, "pg-changed", first, "Rewritten after it was graded.")
        runs = pipeline.autograde(root, [(s, LAB) for s in students], verbose=False, timeout=30, workers=2)
        assert all(r.success for r in runs) and {r.worker for r in runs} == {0, 1}, runs
        assert _state(root, "pg-unchanged") == {n: (p, None, False) for n, p in answers.items()}
        assert _state(root, "pg-changed") == {first: (None, None, True), second: (answers[second], None, False)}
        assert _csv_row(root, "pg-unchanged")["total_is"] == "final"
        assert _csv_row(root, "pg-changed")["total_is"].startswith("provisional")
    finally:
        cluster.destroy()


def test_an_answer_s_fingerprint_is_its_text_and_a_test_s_is_every_answer():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f():\n    return 1", metadata={"nbgrader": {"grade_id": "f", "solution": True}}),
        nbformat.v4.new_code_cell("assert f() == 1", metadata={"nbgrader": {"grade_id": "test_f", "grade": True}}),
        nbformat.v4.new_markdown_cell("My answer.", metadata={"nbgrader": {"grade_id": "why", "grade": True,
                                                                           "solution": True}}),
    ])
    before = {name: hand_grades.answer_fingerprint(nb, name) for name in ("test_f", "why")}
    nb.cells[2].source = "  My answer.   \n\n"  # whitespace around the text and at line ends does not count
    assert {name: hand_grades.answer_fingerprint(nb, name) for name in before} == before
    nb.cells[0].source = "def f():\n    return 2"  # the code a test checks is part of the test's answer
    assert hand_grades.answer_fingerprint(nb, "test_f") != before["test_f"]
    assert hand_grades.answer_fingerprint(nb, "why") == before["why"]
    nb.cells[2].source = "My answer, changed."
    assert hand_grades.answer_fingerprint(nb, "why") != before["why"]
    assert hand_grades.answer_fingerprint(nb, "gone") == hand_grades.MISSING
