"""One grading path, untrusted cells, a verdict that an answer cannot dodge, and
tamper-evident verdicts (tools/integrity.py, tools/pipeline.py, nbgrader_config.py).

The command-line test runs the real ``nbgrader autograde`` and ``nbgrader generate_feedback``
in a scratch copy of the course: they must use the same sandbox and integrity check as
``make autograde``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import integrity, pipeline, sandbox, submissions
from tools.samples import ROOT, fill, solution_code, write_submission
from tools.variants import adversarial, tamper

LAB = "lab00_cache_sizing"
_PROBE = sandbox.probe() if sys.platform == "linux" else sandbox.Probe(False, "not Linux")
needs_bwrap = pytest.mark.skipif(not _PROBE.works, reason=f"bwrap sandbox cannot run here: {_PROBE.reason}")

#: Correct answers in the notebook's kernel, but the function ends its process anywhere else:
#: in the verdict's process, which it recognises by the missing kernel.
KILLS_THE_VERDICT = '''

_honest = kv_bytes_per_token


def kv_bytes_per_token(*args, **kwargs):
    if getattr(get_ipython(), "kernel", None) is None:
        import os
        os._exit(0)
    return _honest(*args, **kwargs)
'''


def _scratch(tmp_path_factory, name: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    return root


def _write(root: Path, student: str, cells: dict[str, str], extra_cells: list | None = None) -> Path:
    nb = fill(nbformat.read(root / "release" / LAB / f"{LAB}.ipynb", as_version=4), cells)
    for index, cell in extra_cells or []:
        nb.cells.insert(index, cell)
    target = root / "submitted" / student / LAB / f"{LAB}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def _nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBGRADER"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)


# ---- the nbgrader command line ----------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_course(tmp_path_factory):
    root = _scratch(tmp_path_factory, "cli")
    write_submission(root, LAB, "solution", "solution")
    (root / "submitted" / "solution" / LAB / "notes.txt").write_text("a file next to the notebook\n")
    submissions.write_tamper(root, tamper.TAMPER[0], "tamper-rebind-checker")
    adversarial.write_attack(root, "read_notebook", "attack_read_notebook")
    autograde = _nbgrader(root, "autograde", LAB, "--force")
    feedback = _nbgrader(root, "generate_feedback", LAB, "--force")
    return root, autograde, feedback


@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_nbgrader_autograde_uses_the_sandbox_and_the_integrity_check(cli_course):
    root, autograde, _ = cli_course
    assert autograde.returncode == 0, autograde.stderr[-3000:]
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(root / "gradebook.db")) as gb:
        scores = {s: gb.find_submission(LAB, s).score for s in
                  ("solution", "tamper-rebind-checker", "attack_read_notebook")}
        max_score = gb.find_assignment(LAB).max_score
    assert scores["tamper-rebind-checker"] == 0, scores  # held by the hook's integrity check
    assert scores["solution"] > 0
    records = json.loads((root / "integrity_verdicts.json").read_text())
    assert records[f"tamper-rebind-checker/{LAB}"]["held"]
    assert not records[f"solution/{LAB}"]["held"] and records[f"solution/{LAB}"]["sha256_submitted"]
    # the attack ran in the sandbox: no notebook in its working folder
    nb = nbformat.read(root / "autograded" / "attack_read_notebook" / LAB / f"{LAB}.ipynb", as_version=4)
    out = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"cwd {sandbox.SANDBOX_HOME}/{LAB} holds []" in out and "LEAK" not in out
    assert max_score > 0


@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_nbgrader_generate_feedback_strips_and_cleans(cli_course):
    root, _, feedback = cli_course
    assert feedback.returncode == 0, feedback.stderr[-3000:]
    folder = root / "feedback" / "solution" / LAB
    assert (folder / f"{LAB}.html").exists()
    assert not (folder / "notes.txt").exists(), "files of the graded folder must not reach the feedback"
    assert (root / "autograded" / "solution" / LAB / "notes.txt").exists()
    page = (folder / f"{LAB}.html").read_text()
    assert "BEGIN HIDDEN TESTS" not in page


@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_a_later_change_of_a_graded_notebook_is_reported(cli_course, capsys):
    root, _, _ = cli_course
    rows = {r.student: r for r in pipeline.collect_grades(root)}
    assert not rows["solution"].integrity.startswith("CHANGED")
    submitted = root / "submitted" / "solution" / LAB / f"{LAB}.ipynb"
    graded = root / "autograded" / "solution" / LAB / f"{LAB}.ipynb"
    before = submitted.read_bytes(), graded.read_bytes()
    try:
        submitted.write_bytes(before[0].replace(b"return", b"return  ", 1))
        rows = {r.student: r for r in pipeline.collect_grades(root)}
        assert rows["solution"].integrity.startswith("CHANGED since graded: the submitted notebook changed")
        graded.chmod(0o644)
        graded.write_bytes(before[1] + b"\n")
        changed = pipeline.changed_since_checked(root)[("solution", LAB)]
        assert "submitted notebook changed" in changed and "autograded notebook changed" in changed
        pipeline.report(root)
        assert "WARNING: 1 graded notebook(s) changed" in capsys.readouterr().out
        assert "CHANGED since graded" in (root / "grades.csv").read_text()
    finally:
        submitted.write_bytes(before[0])
        graded.write_bytes(before[1])
    assert ("solution", LAB) not in pipeline.changed_since_checked(root)


# ---- a verdict that is killed, one that must look like the real run -----------------------------
@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_a_verdict_killed_by_the_answer_holds_the_points(tmp_path_factory):
    root = _scratch(tmp_path_factory, "killer")
    cells = solution_code(root, LAB)
    cells["kv_bytes_per_token"] += KILLS_THE_VERDICT
    _write(root, "killer", cells)
    runs = pipeline.autograde(root, [("killer", LAB)], verbose=False, timeout=30)
    plain = pipeline.collect_grades(root, runs)[0]
    # the student's kernel passed every visible test; the verdict inside autograde did not
    assert plain.auto_score < plain.auto_max, plain.failed_tests
    verdict = pipeline.check_integrity(root, runs, verbose=False)[("killer", LAB)]
    assert verdict.held and "test_kv_bytes_per_token" in verdict.disagreements, verdict.summary()
    assert "stopped answering" in verdict.messages["test_kv_bytes_per_token"]
    row = pipeline.collect_grades(root, runs, {("killer", LAB): verdict})[0]
    assert row.auto_score < row.auto_max and "the verdict fails" in row.integrity, row.integrity
    # the feedback says why a test that passed in the kernel scores 0
    pipeline.feedback(root, [LAB])
    html = (root / "feedback" / "killer" / LAB / f"{LAB}.html").read_text()
    assert "Failed when the grader ran this test (run apart from your code)" in html
    assert "stopped answering" in html


LOOKS_AT_ITS_RUN = '''

import os
_honest = kv_bytes_per_token


def kv_bytes_per_token(*args, **kwargs):
    seen = (os.environ.get("NB" + "GRADER_EXECUTION"), os.getcwd(), os.environ.get("HOME"),
            sorted(k for k in os.environ if k.startswith("NB" + "GRADER")), sorted(os.listdir(".")))
    real = ("auto" + "grade", "/home/student/lab00_cache_sizing", "/home/student",
            ["NB" + "GRADER_EXECUTION"], [])
    right = _honest(*args, **kwargs)
    return right if seen == real else right + 1
'''


@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_the_verdict_looks_like_the_graded_run(tmp_path_factory):
    """An answer that is right only in nbgrader's run (environment, folder, HOME, files) is also
    right in the verdict's process."""
    root = _scratch(tmp_path_factory, "lookalike")
    cells = solution_code(root, LAB)
    cells["kv_bytes_per_token"] += LOOKS_AT_ITS_RUN
    _write(root, "lookalike", cells)
    runs = pipeline.autograde(root, [("lookalike", LAB)], verbose=False, sandbox=True, timeout=30)
    plain = pipeline.collect_grades(root, runs)[0]
    assert plain.auto_score == plain.auto_max, plain.failed_tests
    verdicts = pipeline.check_integrity(root, runs, verbose=False)
    assert not verdicts[("lookalike", LAB)].disagreements, verdicts[("lookalike", LAB)].summary()


# ---- untrusted cells ----------------------------------------------------------------------------
def _code_cell(source: str, **nbgrader) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "solution": False, "grade": False, "locked": False,
                                     **nbgrader}
    return cell


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Lab 00's release generated now from source/ (the committed release/ may lag behind)."""
    return _scratch(tmp_path_factory, "fresh")


def _release_and_source(root: Path):
    release = nbformat.read(root / "release" / LAB / f"{LAB}.ipynb", as_version=4)
    source = nbformat.read(root / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    return release, source


@pytest.mark.parametrize("metadata", [
    {},  # an added cell
    {"grade_id": "my_helper", "solution": True},  # a made-up answer id
    {"grade_id": "test_made_up", "grade": True, "locked": True, "points": 5},  # claims to be a test
    {"grade_id": "test_kv_bytes_per_token", "grade": True, "locked": True, "points": 2},  # duplicates a real id
    {"grade_id": "kv_bytes_per_token", "solution": True},  # duplicates an answer id
])
def test_cells_outside_the_answer_cells_are_scanned_and_never_trusted(fresh, metadata):
    release, source = _release_and_source(fresh)
    nb = fill(release, solution_code(ROOT, LAB))
    attack = _code_cell("check_int = lambda *a, **k: None\nTRUSTED_MARK = 1\n", **metadata)
    nb.cells.insert(3, attack)
    findings = integrity.scan(nb, source)
    assert any(f.severity == integrity.TAMPER and "check_int" in f.what for f in findings), findings
    if metadata.get("grade_id"):
        assert any(f.severity == integrity.SUSPICIOUS for f in findings), findings


def test_edited_plain_cell_is_scanned(fresh):
    release, source = _release_and_source(fresh)
    nb = fill(release, solution_code(ROOT, LAB))
    plain = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "nbgrader" not in c.metadata)
    original = source.cells[plain].source if source.cells[plain].get("id") == nb.cells[plain].get("id") else None
    nb.cells[plain].source += "\nimport builtins\nbuiltins.isinstance = lambda *a: True\n"
    assert any("builtins.isinstance" in f.what for f in integrity.scan(nb, source))
    assert original is None or original != nb.cells[plain].source


def test_unchanged_cells_are_not_scanned(fresh):
    """The lab's own cells (locked tests, plain setup cells) are the source's: no false alarm,
    even where they read reference files or call nbgrader-looking names."""
    release, source = _release_and_source(fresh)
    nb = fill(release, solution_code(ROOT, LAB))
    answers = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
               if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    scanned = integrity.student_cells(nb, source)
    assert {integrity._cell_key(c) for c in scanned} == answers
    assert not integrity.structure_findings(nb, source)


def test_answer_cell_moved_or_relabelled_is_not_trusted(fresh):
    release, source = _release_and_source(fresh)
    nb = fill(release, solution_code(ROOT, LAB))
    ids = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")
           and c.cell_type == "code"]
    moved = nb.cells.pop(ids[-1])
    nb.cells.insert(0, moved)  # the last answer cell now first: out of place
    trusted = integrity.answer_cells(nb, source)
    assert moved.metadata["nbgrader"]["grade_id"] not in trusted
    relabelled = fill(release, solution_code(ROOT, LAB))
    relabelled.cells[ids[0]].metadata["nbgrader"]["grade"] = True  # an answer claiming to be a test
    assert relabelled.cells[ids[0]].metadata["nbgrader"]["grade_id"] not in integrity.answer_cells(relabelled, source)
