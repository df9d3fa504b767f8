"""The class-scale workflow (tools/classroom.py) on a small synthetic class of Lab 00.

One class is generated per module; it is graded serially on SQLite, then by two workers on a
throwaway PostgreSQL cluster, then resumed, then reported. Real nbgrader throughout.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from tools import classroom, pipeline

LAB = "lab00_cache_sizing"
MUTANT = "mutant:bits_not_bytes"
POOL = ["solution", MUTANT, "untouched"]


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """(course folder, roster) of 3 gradable + 3 broken submissions; PostgreSQL removed after."""
    course = tmp_path_factory.mktemp("classroom")
    students = classroom.generate(course, LAB, n=3, seed=1, pool=POOL, n_broken=3, verbose=False)
    yield course, students
    classroom.PostgresCluster(course).destroy()


@pytest.fixture(scope="module")
def serial(klass):
    course, _ = klass
    outcomes = classroom.grade(course, workers=1, progress=False)
    return outcomes, classroom.results(course)


@pytest.fixture(scope="module")
def parallel(klass, serial):
    course, _ = klass
    outcomes = classroom.grade(course, workers=2, db="postgres", progress=False)
    return outcomes, classroom.results(course)


@pytest.mark.slow
def test_generator_and_expected_scores(klass):
    course, students = klass
    points = classroom.test_points(course, LAB)
    full = sum(points.values())
    by_variant = {}
    for s in students:
        by_variant.setdefault(s.variant, []).append(s)
    assert set(by_variant) == set(POOL) | set(classroom.BROKEN_KINDS)
    assert len(students) == 6 and len({s.student for s in students}) == 6
    for s in by_variant["solution"]:
        assert s.expected == full and s.expected_cells == points
    for s in by_variant["untouched"]:
        assert s.expected == 0.0
    mutant = by_variant[MUTANT][0]
    assert mutant.expected_cells["test_kv_bytes_per_token"] == 0.0  # the test its declaration names
    assert 0 < mutant.expected < full
    # broken ones: expected "not graded" / "missing", and really broken on disk
    sub = course / "submitted"
    json_broken = by_variant["broken:json"][0]
    with pytest.raises(nbformat.reader.NotJSONError):
        nbformat.read(sub / json_broken.student / LAB / f"{LAB}.ipynb", as_version=4)
    assert json_broken.expected_status == "not graded" and json_broken.expected is None
    no_nb = by_variant["broken:no_notebook"][0]
    assert (sub / no_nb.student / LAB).is_dir() and not (sub / no_nb.student / LAB / f"{LAB}.ipynb").exists()
    absent = by_variant["absent"][0]
    assert absent.expected_status == "missing" and not (sub / absent.student).exists()
    # every gradable submission has a submission time for nbgrader
    assert all((sub / s.student / LAB / "timestamp.txt").exists() for s in students if s.variant != "absent")
    # the manifest records the same roster
    manifest = json.loads((course / "classroom.json").read_text())
    assert manifest["labs"][LAB]["max"] == full and len(manifest["labs"][LAB]["students"]) == 6


@pytest.mark.slow
def test_bad_arguments(klass):
    course, _ = klass
    with pytest.raises(ValueError, match="n must be"):
        classroom.generate(course, LAB, n=-1, verbose=False)
    with pytest.raises(ValueError, match="pool"):
        classroom.generate(course, LAB, n=1, pool=["mutant:no_such_mistake"], verbose=False)
    with pytest.raises(ValueError, match="workers"):
        pipeline.worker_shares(["a"], 0)
    with pytest.raises(ValueError, match="SQLite"):
        classroom.grade(course, workers=2, db="sqlite", progress=False)


def test_shares_are_disjoint_and_complete():
    students = [f"s{i:03d}" for i in range(11)]
    parts = pipeline.worker_shares(students, 3)
    flat = [s for part in parts for s in part]
    assert sorted(flat) == students and len(set(flat)) == len(flat)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.slow
def test_serial_sqlite_grades_as_expected(klass, serial):
    course, students = klass
    outcomes, rows = serial
    assert json.loads((course / "gradebook.json").read_text())["db"] == "sqlite"
    assert classroom.mismatches(rows) == []
    status = {r.variant: r.status for r in rows}
    assert status["broken:json"].startswith("not graded: NotJSONError")
    assert "no lab00_cache_sizing.ipynb" in status["broken:no_notebook"]
    assert status["absent"] == "missing"
    # the check can fail: a wrong expectation is reported
    wrong = rows[0].__class__(**{**rows[0].__dict__, "expected": -1.0, "expected_status": "graded"})
    assert not wrong.as_expected and classroom.mismatches([wrong])


@pytest.mark.slow
@pytest.mark.system
def test_two_workers_on_postgres_give_the_serial_grades(klass, serial, parallel):
    course, _ = klass
    outcomes, rows = parallel
    assert json.loads((course / "gradebook.json").read_text())["db"] == "postgres"
    graded_by = {o.student: o.worker for o in outcomes if o.status == "graded"}
    assert set(graded_by.values()) == {0, 1}, "both workers must have graded a share"
    assert classroom.mismatches(rows) == []
    serial_rows = {(r.student, r.lab): r for r in serial[1]}
    for r in rows:
        s = serial_rows[(r.student, r.lab)]
        assert (r.status.split(":")[0], r.score, r.cells) == (s.status.split(":")[0], s.score, s.cells), r.student


@pytest.mark.slow
@pytest.mark.system
def test_resume_skips_up_to_date_and_regrades_stale(klass, parallel):
    course, students = klass
    again = classroom.grade(course, workers=2, db="postgres", progress=False)
    graded = [o for o in again if o.status.startswith(("graded", "skipped"))]
    assert graded and all(o.status == "skipped (up to date)" for o in graded)
    # a student resubmits (new timestamp), and a run was interrupted before another's state was saved
    gradable = sorted(s.student for s in students if s.expected_status == "graded")
    resubmitted, interrupted = gradable[0], gradable[1]
    (course / "submitted" / resubmitted / LAB / "timestamp.txt").write_text("2026-11-21 09:00:00.000000 UTC")
    (course / "state" / LAB / f"{interrupted}.json").unlink()
    third = {o.student: o for o in classroom.grade(course, workers=2, db="postgres", progress=False)}
    regraded = {name for name, o in third.items() if o.status == "graded"}
    assert regraded == {resubmitted, interrupted}
    rows = classroom.results(course)
    assert classroom.mismatches(rows) == []
    stamp = (course / "autograded" / resubmitted / LAB / "timestamp.txt").read_text().strip()
    assert stamp == "2026-11-21 09:00:00.000000 UTC"


@pytest.mark.slow
@pytest.mark.system
def test_report_html_csv_and_feedback(klass, parallel):
    course, students = klass
    rows = classroom.report(course, feedback=True, verbose=False)
    html = (course / "report" / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") >= 2  # class distribution + per-cell figure
    assert "Most common mistakes" in html and "bits instead of bytes" in html
    assert "not answered (NotImplementedError)" in html
    for s in students:
        if s.expected_status != "graded":
            assert f"<td>{s.student}</td>" in html.split("id='problems'")[1]
    csv_lines = (course / "report" / "grades.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(rows) == 1 + len(students)
    solution = next(s for s in students if s.variant == "solution")
    feedback = course / "feedback" / solution.student / LAB / f"{LAB}.html"
    assert feedback.exists()
    assert "BEGIN HIDDEN TESTS" not in feedback.read_text()
