"""Variants are declarations, turned into answer cells from the solution's own cells.

Every declared variant of every lab resolves against today's solution; an edit whose text the
solution no longer holds stops with an error instead of testing stale code; the variants import
nothing that writes submissions (no import cycle between declarations and the writer).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools import layout, submissions, variant_cells
from tools.layout import ROOT

LABS_WITH_VARIANTS = [lab for lab in layout.labs() if layout.variants(lab) is not None]


def _declared(lab: str) -> list[str]:
    module = layout.variants(lab)
    return ([f"correct:{name}" for name in module.CORRECT] + [f"mutant:{m['name']}" for m in module.MUTANTS]
            + ["mistakes"])


@pytest.mark.parametrize("lab", LABS_WITH_VARIANTS)
def test_every_variant_resolves_against_the_solution(lab):
    solution = submissions.solution_code(ROOT, lab)
    module = layout.variants(lab)
    for variant in _declared(lab):
        cells = variant_cells.variant_cells(module, variant, solution)
        assert cells and set(cells) <= set(solution), variant
        for grade_id, code in cells.items():
            compile(code, f"{lab} {variant} {grade_id}", "exec")  # each cell is Python
            assert code != solution[grade_id] or variant.startswith("correct:"), (variant, grade_id)


def test_lab01_mistakes_are_made_from_the_solution():
    """Lab 01's forward, cache and generate mistakes are the solution's own cells with one edit."""
    lab = "lab01_kv_cache"
    solution = submissions.solution_code(ROOT, lab)
    module = layout.variants(lab)
    for name, cell in [("positions_restart", "forward"), ("cache_not_appended", "kv_cache"),
                       ("generate_first_position", "generate"), ("no_scale", "attention")]:
        code = variant_cells.variant_cells(module, f"mutant:{name}", solution)[cell]
        changed = [line for line in code.splitlines() if line not in solution[cell].splitlines()]
        assert len(changed) <= 1, (name, changed)  # one line edited (or one removed)
        assert len(code.splitlines()) >= len(solution[cell].splitlines()) - 1, name


def test_an_edit_that_no_longer_applies_stops_loudly():
    solution = {"f": "def f(x):\n    return 2 * x\n"}
    assert variant_cells.resolve({"f": [("2 * x", "x")]}, solution, "here") == {"f": "def f(x):\n    return x\n"}
    with pytest.raises(variant_cells.EditDoesNotApply, match="stands 0 times"):
        variant_cells.resolve({"f": [("3 * x", "x")]}, solution, "here")
    with pytest.raises(variant_cells.EditDoesNotApply, match="stands 1 times .* expects 2"):
        variant_cells.resolve({"f": [("x", "y", 2)]}, {"f": "x + 1"}, "here")
    with pytest.raises(variant_cells.EditDoesNotApply, match="no solution cell"):
        variant_cells.resolve({"g": [("x", "y")]}, solution, "here")
    assert variant_cells.resolve({"g": "def g():\n    pass\n"}, solution, "here")["g"].startswith("def g")


def test_a_submission_holds_the_resolved_mutant(tmp_path):
    lab = "lab01_kv_cache"
    cells = submissions.submission_cells(ROOT, lab, "mutant:positions_restart")
    assert "positions = torch.arange(T, device=idx.device)" in cells["forward"]
    assert "### BEGIN SOLUTION" not in cells["forward"]
    assert cells["attention"] == submissions.solution_code(ROOT, lab)["attention"]


def test_variants_import_nothing_that_writes_submissions():
    """Declarations (tools/variants/) and the writer (tools/submissions.py) do not import each other
    both ways: importing the lab and tamper declarations loads neither the writer nor the samples."""
    modules = [f"tools.variants.{lab}" for lab in LABS_WITH_VARIANTS] + ["tools.variants.tamper"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m.startswith('tools.') and not m.startswith('tools.variants')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
