"""A lab's variants as answer-cell code: the solution's cells, and the variants declared from them.

A variant (``tools/variants/<lab>.py``, format in ``tools/variants/README.md``) gives each answer
cell it changes either as **full code** (a string: what a student's cell would hold) or as
**edits of the solution's cell** (a list of ``(old, new)`` or ``(old, new, count)``): the
solution's own cell, read from the source notebook, with ``old`` replaced by ``new``. A variant
made by edits follows the solution when the solution changes; an edit whose ``old`` no longer
stands in the solution exactly ``count`` times (default once) raises :class:`EditDoesNotApply`
instead of quietly testing stale code.

Plain Python and JSON only (no nbformat): the reference script runs this on a GPU machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

#: One edit of a solution cell: ``(old, new)`` (old stands there once) or ``(old, new, count)``.
Edit = tuple[str, str] | tuple[str, str, int]
#: A variant's cell: full code, or edits of the solution's cell.
CellSpec = str | Sequence[Edit]

#: nbgrader's solution markers: the marker lines go, everything else stays.
_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


class EditDoesNotApply(ValueError):
    """A variant's edit does not match the solution's cell (the solution changed): update the variant."""


def _code_cells(notebook: Path) -> list[dict]:
    cells = json.loads(Path(notebook).read_text())["cells"]
    for cell in cells:
        if not isinstance(cell["source"], str):
            cell["source"] = "".join(cell["source"])
    return cells


def solution_cells(notebook: Path, code_only: bool = False) -> dict[str, str]:
    """A source notebook's solution cells (grade_id -> source), markers removed, as a student
    would write them; with ``code_only``, without the written (markdown) answers."""
    return {cell["metadata"]["nbgrader"]["grade_id"]: _MARKERS.sub("", cell["source"])
            for cell in _code_cells(notebook)
            if cell.get("metadata", {}).get("nbgrader", {}).get("solution")
            and (cell["cell_type"] == "code" or not code_only)}


def setup_cells(notebook: Path) -> list[str]:
    """The code of a source notebook's cells tagged ``setup`` (imports, the model), in order."""
    return [cell["source"] for cell in _code_cells(notebook)
            if cell["cell_type"] == "code" and "setup" in cell.get("metadata", {}).get("tags", [])]


def apply_edits(code: str, edits: Sequence[Edit], where: str) -> str:
    """``code`` with every edit made in turn; each ``old`` must stand there exactly ``count`` times."""
    for edit in edits:
        old, new, count = (*edit, 1) if len(edit) == 2 else edit
        found = code.count(old)
        if found != count:
            raise EditDoesNotApply(f"{where}: {old!r} stands {found} times in the solution's cell, the "
                                   f"variant expects {count}: the solution changed, update the variant")
        code = code.replace(old, new)
    return code


def resolve(cells: Mapping[str, CellSpec], solution: Mapping[str, str], where: str) -> dict[str, str]:
    """A variant's cells as code (grade_id -> source): full code as given, edits made on ``solution``."""
    out = {}
    for grade_id, spec in cells.items():
        if isinstance(spec, str):
            out[grade_id] = spec
        elif grade_id not in solution:
            raise EditDoesNotApply(f"{where}: no solution cell {grade_id!r} to edit")
        else:
            out[grade_id] = apply_edits(solution[grade_id], spec, f"{where}, cell {grade_id}")
    return out


def mutant(module: ModuleType, name: str) -> dict:
    """The mutant ``name`` of a variants module (KeyError if it has none of that name)."""
    found = [m for m in module.MUTANTS if m["name"] == name]
    if not found:
        raise KeyError(f"{module.__name__} has no mutant {name!r}")
    return found[0]


def variant_cells(module: ModuleType, variant: str, solution: Mapping[str, str]) -> dict[str, str]:
    """The cells a variant changes, as code: ``correct:<name>``, ``mutant:<name>`` or ``mistakes``
    (the demo's combination, ``SAMPLE_MISTAKES``)."""
    if variant == "mistakes":
        out: dict[str, str] = {}
        for name in module.SAMPLE_MISTAKES:
            out.update(variant_cells(module, f"mutant:{name}", solution))
        return out
    kind, _, name = variant.partition(":")
    if kind == "correct":
        return resolve(module.CORRECT[name], solution, f"{module.__name__}: correct variant {name!r}")
    if kind == "mutant":
        return resolve(mutant(module, name)["cells"], solution, f"{module.__name__}: mutant {name!r}")
    raise ValueError(f"unknown variant {variant!r}: correct:<name>, mutant:<name> or mistakes")
