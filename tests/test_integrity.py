"""Grader trust: tampering gets no credit, broken submissions never stop the batch."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from tools import integrity, pipeline, submissions
from tools.samples import ROOT, write_submission
from tools.variants import tamper

LAB = tamper.LAB


# ---- unit tests of the scan and the definitions filter ------------------------------------
@pytest.mark.parametrize("code,what", [
    ("check_int = lambda *a, **k: None", "rebinds the checker name 'check_int'"),
    ("import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None", "patches np.testing.assert_allclose"),
    ("import torch\ntorch.allclose = lambda *a, **k: True", "patches torch.allclose"),
    ("get_ipython().input_transformers_cleanup.append(lambda l: [])", "input_transformers_cleanup"),
    ("import os\nif os.environ['NBGRADER_EXECUTION']: pass", "nbgrader's environment"),
    ("class A(int):\n    def __eq__(self, o): return True", "subclasses int"),
    ("def f():\n    globals()['check_int'] = print", "writes into globals()"),
    ("import builtins\nbuiltins.isinstance = lambda *a: True", "patches builtins.isinstance"),
    ("setattr(np.testing, 'assert_allclose', print)", "setattr() on np.testing"),
    ("def f():\n    return open('lab00.ipynb').read()", "reads files"),
    ("import numpy as np\nx = np.load('ref/lab01_refs.npz')", "reads files"),
])
def test_scan_finds_tampering(code, what):
    findings = integrity.scan_source(code, "cell")
    assert any(f.severity == integrity.TAMPER and what in f.what for f in findings), findings


@pytest.mark.parametrize("code", [
    "import torch\ntorch.backends.cuda.matmul.allow_tf32 = False",
    "import math\ndef f(x, y=2):\n    return math.ceil(x / y)",
    "import numpy as np\nclass KVCache:\n    def __init__(self):\n        self.k = np.zeros(3)\n    def __len__(self):\n        return 3",
    "pd.options.display.width = 120",
    "total = 0\nfor i in range(3):\n    total += i",
])
def test_scan_accepts_ordinary_code(code):
    assert not [f for f in integrity.scan_source(code) if f.severity == integrity.TAMPER]


# ---- end to end, with the real nbgrader -----------------------------------------------------
@pytest.fixture(scope="module")
def attacked_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacked")
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    pairs = [("solution", LAB), ("correct-loops", LAB)]
    write_submission(root, LAB, "solution", "solution")
    write_submission(root, LAB, "correct-loops", "correct:loops_fractions")
    for attack in tamper.TAMPER:
        submissions.write_tamper(root, attack, f"tamper-{attack['name']}")
        pairs.append((f"tamper-{attack['name']}", LAB))
    submissions.write_tamper(root, {"name": "none", "cells": tamper.WRONG_ANSWERS}, "wrong-answers")
    pairs.append(("wrong-answers", LAB))
    for name in tamper.BROKEN:
        submissions.write_broken(root, name, f"broken-{name}")
        pairs.append((f"broken-{name}", LAB))
    runs = pipeline.autograde(root, pairs, verbose=False, timeout=5)
    plain = {(r.student): r for r in pipeline.collect_grades(root, runs)}
    verdicts = pipeline.check_integrity(root, runs, verbose=False)
    rows = {r.student: r for r in pipeline.report(root, runs, verdicts)}
    return root, runs, plain, rows


@pytest.mark.slow
def test_nbgrader_s_own_score_already_holds_no_attack_above_the_honest_one(attacked_course):
    """The hidden tests run only in the verdict, inside nbgrader's autograde: before any hold of
    the integrity check, no attack scores more than the same wrong answers without the attack."""
    _, _, plain, _ = attacked_course
    honest = plain["wrong-answers"].auto_score
    assert honest < plain["wrong-answers"].auto_max
    over = {n: r.auto_score for n, r in plain.items() if n.startswith("tamper-") and r.auto_score > honest}
    assert not over, (honest, over)


@pytest.mark.slow
@pytest.mark.parametrize("attack", [a["name"] for a in tamper.TAMPER])
def test_tampering_gets_no_credit_and_is_flagged(attacked_course, attack):
    root, _, _, rows = attacked_course
    row = rows[f"tamper-{attack}"]
    assert row.auto_score == 0, (row.auto_score, row.integrity)
    assert row.integrity.startswith("HELD"), row.integrity
    # and the gradebook agrees (nbgrader's own export would show the same)
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(root / "gradebook.db")) as gb:
        assert gb.find_submission(LAB, f"tamper-{attack}").score == 0


@pytest.mark.slow
@pytest.mark.parametrize("student", ["solution", "correct-loops"])
def test_honest_work_is_not_flagged(attacked_course, student):
    _, _, _, rows = attacked_course
    row = rows[student]
    assert row.auto_score == row.auto_max and not row.integrity.startswith("HELD"), row.integrity


@pytest.mark.slow
@pytest.mark.parametrize("name", list(tamper.BROKEN))
def test_broken_submissions_are_reported_not_fatal(attacked_course, name):
    root, runs, _, rows = attacked_course
    row = rows[f"broken-{name}"]
    expected = tamper.BROKEN[name][1]
    if expected == "graded":
        assert row.status.startswith("graded"), row.status
    else:
        assert row.status.startswith("not graded"), row.status
        html = (root / "feedback" / f"broken-{name}" / LAB / f"{LAB}.html").read_text()
        assert "could not be graded" in html and "Nothing you submitted is lost" in html
    # the student's file is untouched
    if name not in ("no-notebook",):
        assert (root / "submitted" / f"broken-{name}" / LAB / f"{LAB}.ipynb").exists()


@pytest.mark.slow
def test_infinite_loop_is_interrupted_and_the_rest_graded(attacked_course):
    root, _, _, rows = attacked_course
    row = rows["broken-infinite-loop"]
    assert 0 < row.auto_score < row.auto_max
    # the loop sits in kv_cache_bytes's answer cell: exactly the tests that call it fail
    errors = pipeline.cell_errors(root / "autograded" / "broken-infinite-loop" / LAB / f"{LAB}.ipynb")
    assert "test_kv_cache_bytes" in row.failed_tests
    assert all("kv_cache_bytes" in errors[t] for t in row.failed_tests), errors


@pytest.mark.slow
def test_huge_output_is_capped(attacked_course):
    root, _, _, rows = attacked_course
    assert rows["broken-huge-output"].auto_score == rows["broken-huge-output"].auto_max
    size = (root / "autograded" / "broken-huge-output" / LAB / f"{LAB}.ipynb").stat().st_size
    assert size < 5_000_000, size


@pytest.mark.slow
def test_regrading_is_idempotent(attacked_course):
    root, _, _, rows = attacked_course
    pairs = [("solution", LAB), ("broken-os-exit", LAB), ("tamper-rebind-checker", LAB)]
    runs = pipeline.autograde(root, pairs, verbose=False, timeout=5)
    verdicts = pipeline.check_integrity(root, runs, verbose=False)
    again = {r.student: r for r in pipeline.collect_grades(root, runs, verdicts)}
    for student, _ in pairs:
        assert (again[student].auto_score, again[student].status[:10]) == \
            (rows[student].auto_score, rows[student].status[:10]), student


def test_the_verdict_runs_every_test_of_the_source():
    from tools import verdict

    source = nbformat.read(ROOT / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    tests = [c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    steps = verdict.plan(source)
    assert steps.tests == [c.metadata["nbgrader"]["grade_id"] for c in tests]
    run = [payload for kind, _, payload in steps.steps if kind == "test"]
    assert run == [c.source for c in tests] and any("### BEGIN HIDDEN TESTS" in code for code in run)


# ---- no false alarms on honest work, in every lab -------------------------------------------
def _honest_submissions():
    from tools.samples import available_labs, load_variants

    for lab in available_labs():
        yield lab, "solution"
        module = load_variants(lab)
        for name in getattr(module, "CORRECT", {}):
            yield lab, f"correct:{name}"


@pytest.mark.parametrize("lab,variant", list(_honest_submissions()))
def test_honest_answers_are_not_flagged(lab, variant):
    """The scan finds nothing to hold in honest answers: otherwise correct work would lose points."""
    from tools.samples import submission_cells

    cells = submission_cells(ROOT, lab, variant)
    source = nbformat.read(ROOT / "source" / lab / f"{lab}.ipynb", as_version=4)
    code_ids = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    for gid, code in cells.items():
        if gid not in code_ids:
            continue
        tamper = [f for f in integrity.scan_source(code, gid) if f.severity == integrity.TAMPER]
        assert not tamper, tamper


@pytest.mark.slow
@pytest.mark.parametrize("lab", __import__("tools.samples", fromlist=["x"]).available_labs())
def test_the_verdict_passes_the_solution(lab, tmp_path):
    from tools.samples import fill, solution_code

    course = tmp_path / "course"  # a release made now (the committed one may lag behind source/)
    shutil.copytree(ROOT / "source" / lab, course / "source" / lab)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    pipeline.release(course)
    release_nb = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
    path = tmp_path / f"{lab}.ipynb"
    nbformat.write(fill(release_nb, solution_code(ROOT, lab)), path)
    from tools import verdict

    result = verdict.run_in_subprocess(path, ROOT / "source" / lab / f"{lab}.ipynb")
    assert result.tests and all(result.passed().values()), result


@pytest.mark.slow
def test_a_verdict_that_cannot_be_computed_holds_the_points(graded_course, tmp_path, monkeypatch):
    """A verdict that cannot be computed (its process fails) fails every test, with the reason,
    and the integrity check holds the submission for review; an autograded notebook without a
    verdict record (a configuration without the verdict step) is held too. A later clean grading
    lifts the hold."""
    root, _, runs = graded_course
    course = tmp_path / "course"
    shutil.copytree(root, course)  # the session's graded course stays untouched

    def cannot_run(*args, **kwargs):
        raise RuntimeError("kernel died")

    monkeypatch.setattr(__import__("tools.verdict", fromlist=["x"]), "run_in_subprocess", cannot_run)
    mine = pipeline.autograde(course, [("solution", LAB)], verbose=False)
    verdict = pipeline.check_integrity(course, mine, verbose=False)[("solution", LAB)]
    assert verdict.held and verdict.unverified == "RuntimeError: kernel died"
    assert "could not be computed (RuntimeError: kernel died)" in verdict.summary()
    row = next(r for r in pipeline.collect_grades(course) if (r.student, r.lab) == ("solution", LAB))
    assert row.auto_score == 0 < row.auto_max and row.integrity.startswith("HELD"), row.integrity
    monkeypatch.undo()
    # no record at all: held
    graded = course / "autograded" / "solution" / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(graded, as_version=4)
    nb.metadata.pop("kvcourse", None)
    nbformat.write(nb, graded)
    verdict = pipeline.check_integrity(course, mine, verbose=False)[("solution", LAB)]
    assert verdict.held and "no verdict in the autograded notebook" in verdict.unverified
    # graded again, cleanly: the hold is lifted
    mine = pipeline.autograde(course, [("solution", LAB)], verbose=False)
    verdict = pipeline.check_integrity(course, mine, verbose=False)[("solution", LAB)]
    assert not verdict.held, verdict.summary()
    row = next(r for r in pipeline.collect_grades(course) if (r.student, r.lab) == ("solution", LAB))
    assert row.auto_score == row.auto_max, row.integrity
