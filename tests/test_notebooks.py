"""Every source notebook runs top to bottom with all its tests passing; the release fails them.

Notebooks run in the quick mode they use while grading (NBGRADER_EXECUTION=autograde shrinks
the ungraded benchmarks); the solutions site runs them in full.
"""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tools.nbbuild import parse_lab
from tools.samples import ROOT, available_labs


def _execute(path, cwd):
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        if old is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = old
    return nb


def _errors(nb):
    out = {}
    for i, cell in enumerate(nb.cells):
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {i}")
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                out[gid] = f"{o.ename}: {o.evalue}"[:400]
            elif o.output_type == "stream" and o.name == "stderr" and cell.metadata.get("nbgrader", {}).get("grade"):
                out[gid] = "stderr in a test cell: " + o.text[:300]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("lab", available_labs())
def test_source_notebook_passes_all_its_tests(lab):
    nb = _execute(ROOT / "source" / lab / f"{lab}.ipynb", ROOT / "source" / lab)
    assert not _errors(nb)


def test_nbbuild_parses_cell_kinds():
    text = """# %% [markdown]
# # Title
#
# text
# %% solution id=f
def f():
    ### BEGIN SOLUTION
    return 1
    ### END SOLUTION
# %% tests id=test_f points=2
assert f() == 1
# %% [markdown] answer id=why points=3
# because
"""
    nb = parse_lab(text)
    kinds = [(c["cell_type"], c["metadata"].get("nbgrader", {})) for c in nb["cells"]]
    assert kinds[0] == ("markdown", {}) and nb["cells"][0]["source"] == "# Title\n\ntext"
    assert kinds[1][1]["solution"] and not kinds[1][1]["grade"]
    assert kinds[2][1] == {"grade": True, "grade_id": "test_f", "locked": True, "schema_version": 3,
                           "solution": False, "task": False, "points": 2}
    assert kinds[3][1]["grade"] and kinds[3][1]["solution"] and kinds[3][1]["points"] == 3


@pytest.mark.parametrize("bad,match", [("# %% tests points=2\nx", "needs id"),
                                        ("# %% solution id=a\nx\n# %% solution id=a\ny", "duplicate"),
                                        ("# %% [markdown]\nnot a comment", "must start with"),
                                        ("# %% wat id=a\nx", "unknown cell kind")])
def test_nbbuild_rejects_bad_cells(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_lab(bad)


@pytest.mark.parametrize("lab", available_labs())
def test_written_questions_survive_the_release(lab):
    """nbgrader replaces a whole answer cell with its stub, so a question written inside the
    answer cell would vanish from the student's notebook: each answer cell must follow a
    markdown cell that asks something and is still there in the release."""
    source = nbformat.read(ROOT / "source" / lab / f"{lab}.ipynb", as_version=4)
    release = nbformat.read(ROOT / "release" / lab / f"{lab}.ipynb", as_version=4)
    released = {c.get("id"): c for c in release.cells}
    answers = 0
    for i, cell in enumerate(source.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "markdown" or not meta.get("solution"):
            continue
        answers += 1
        gid = meta["grade_id"]
        assert released[cell.get("id")].source.strip() == "YOUR ANSWER HERE", gid
        question = source.cells[i - 1]
        assert question.cell_type == "markdown" and not question.metadata.get("nbgrader", {}).get("solution"), gid
        assert len(question.source.strip()) >= 40, (gid, question.source)  # the task, not a heading
        assert "**Question" not in cell.source, f"{gid}: the question is inside the answer cell"
        assert released[question.get("id")].source == question.source, gid
    assert answers, f"{lab} has no written answers"
