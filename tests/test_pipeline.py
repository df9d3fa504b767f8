"""The round trip through real nbgrader: release, submit, autograde, feedback, grades."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from tools import pipeline
from tools.samples import ROOT, available_labs, load_variants


def _row(rows, student, lab):
    matches = [r for r in rows if r.student == student and r.lab == lab]
    assert matches, f"no grade row for {student}/{lab}"
    return matches[0]


@pytest.mark.slow
@pytest.mark.parametrize("lab", available_labs())
def test_solution_gets_every_autograded_point(graded_course, lab):
    _, rows, _ = graded_course
    row = _row(rows, "solution", lab)
    # its written answers wait for hand grading in the formgrader: listed, counted as nothing yet
    assert row.status == f"graded; needs hand grading: {len(row.manual_pending)} answers", row.status
    assert row.manual_pending and row.manual_score == 0 and row.manual_max > 0
    assert row.auto_max > 0
    assert row.auto_score == row.auto_max, row.failed_tests


@pytest.mark.slow
@pytest.mark.parametrize("lab", available_labs())
def test_untouched_release_gets_nothing(graded_course, lab):
    _, rows, _ = graded_course
    row = _row(rows, "untouched", lab)
    assert row.status == "graded", row.status  # answers left as released: nbgrader scores them 0
    assert row.auto_score == 0 and row.manual_score == 0 and not row.manual_pending
    assert row.failed_tests and all("NotImplementedError" in m for m in row.failed_tests.values())


@pytest.mark.slow
@pytest.mark.parametrize("lab", [lab for lab in available_labs() if load_variants(lab)])
def test_mistakes_get_partial_credit_and_named_feedback(graded_course, lab):
    root, rows, _ = graded_course
    row = _row(rows, "mistakes", lab)
    assert 0 < row.auto_score < row.auto_max, (row.auto_score, row.auto_max)
    module = load_variants(lab)
    html = (root / "feedback" / "mistakes" / lab / f"{lab}.html").read_text()
    by_name = {m["name"]: m for m in module.MUTANTS}
    errors = pipeline.cell_errors(root / "autograded" / "mistakes" / lab / f"{lab}.ipynb")
    for name in module.SAMPLE_MISTAKES:
        mutant = by_name[name]
        for test in mutant["fails"]:
            assert test in row.failed_tests, f"{name}: {test} did not fail"
            # the failing test itself names the mistake, and the feedback shows it
            assert mutant["message"].lower() in errors[test].lower(), (name, errors[test])
        assert mutant["message"].lower() in html.lower(), f"feedback does not name {name!r}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", available_labs())
def test_feedback_hides_hidden_tests(graded_course, lab):
    root, _, _ = graded_course
    for student in ("solution", "mistakes"):
        path = root / "feedback" / student / lab / f"{lab}.html"
        if not path.exists():
            continue
        html = path.read_text()
        assert "BEGIN HIDDEN TESTS" not in html
        source = nbformat.read(root / "source" / lab / f"{lab}.ipynb", as_version=4)
        # a line that only exists inside hidden tests must not leak
        for cell in source.cells:
            if "### BEGIN HIDDEN TESTS" in cell.source:
                hidden = cell.source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS")[0]
                probe = max((ln.strip() for ln in hidden.splitlines()), key=len)
                assert probe and probe not in html, f"hidden test line leaked into feedback: {probe}"


@pytest.mark.slow
def test_lab01_grader_copy_prints_its_tables_and_skips_what_is_the_same_for_everyone(graded_course):
    """While graded, Lab 01 prints the student's measurements as tables, draws no figure of them,
    and does not time the course's own GQA functions (saying so in the output)."""
    from tools import layout

    root, _, _ = graded_course
    nb = nbformat.read(layout.autograded_notebook("solution", "lab01_kv_cache", root), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "time of one step producing one token after S tokens" in text  # the student's table
    assert "Figures not drawn in the grader's copy" in text
    assert "GQA comparison not run in the grader's copy" in text
    assert "repeat_interleave / grouped" not in text
    assert not [o for o in outputs if "image/png" in o.get("data", {})]


@pytest.mark.slow
def test_reference_files_reach_neither_release_nor_the_graded_folder(graded_course):
    """Expected outputs stay with the instructor: the verdict's grader reads them from source/;
    the student's kernel (which runs in the graded folder) never has them, yet the solution
    scores full marks on every lab."""
    root, rows, _ = graded_course
    checked = 0
    for lab in available_labs():
        refs = [p for d in pipeline.REFERENCE_DIRS for p in (root / "source" / lab / d).glob("*")]
        if not refs:
            continue
        checked += 1
        for folder in [root / "release" / lab, *(root / "autograded").glob(f"*/{lab}")]:
            assert not any((folder / d).exists() for d in pipeline.REFERENCE_DIRS), folder
        row = next(r for r in rows if (r.student, r.lab) == ("solution", lab))
        assert row.auto_score == row.auto_max, row.failed_tests
    assert checked, "no lab has reference files"


@pytest.mark.slow
def test_grades_csv(graded_course, tmp_path):
    root, rows, _ = graded_course
    out = tmp_path / "grades.csv"
    pipeline.write_csv(rows, out)
    text = out.read_text()
    assert text.splitlines()[0].startswith("student,lab,status,autograded_points")
    assert len(text.splitlines()) == 1 + len(rows)
    table = pipeline.format_table(rows)
    assert "solution" in table and "100.0" in table


@pytest.mark.slow
def test_broken_submission_is_reported_not_fatal(graded_course):
    root, _, _ = graded_course
    lab = available_labs()[0]
    bad = root / "submitted" / "broken-json" / lab / f"{lab}.ipynb"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"cells": [ this is not json')
    runs = pipeline.autograde(root, [("broken-json", lab), ("solution", lab)], verbose=False)
    assert [r.success for r in runs] == [False, True]
    assert "JSON" in runs[0].error or "json" in runs[0].error.lower()
    rows = pipeline.collect_grades(root, runs)
    row = _row(rows, "broken-json", lab)
    assert row.status.startswith("not graded") and row.auto_score == 0 and row.auto_max > 0
    shutil.rmtree(bad.parent.parent)


def test_committed_release_matches_source(tmp_path):
    """release/ is committed; it must be what nbgrader generates from source/ today."""
    shutil.copytree(ROOT / "source", tmp_path / "source")
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    pipeline.release(tmp_path)
    for lab in available_labs():
        fresh = json.loads((tmp_path / "release" / lab / f"{lab}.ipynb").read_text())
        committed_path = ROOT / "release" / lab / f"{lab}.ipynb"
        assert committed_path.exists(), f"release/{lab} missing: run `make release`"
        committed = json.loads(committed_path.read_text())
        assert fresh == committed, f"release/{lab} is stale: run `make release` and commit"
        fresh_files = sorted(p.relative_to(tmp_path / "release" / lab).as_posix()
                             for p in (tmp_path / "release" / lab).rglob("*") if p.is_file())
        committed_files = sorted(p.relative_to(ROOT / "release" / lab).as_posix()
                                 for p in (ROOT / "release" / lab).rglob("*") if p.is_file()
                                 and ".ipynb_checkpoints" not in p.parts)
        assert fresh_files == committed_files
