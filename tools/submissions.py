"""Write submissions: the release notebook with answer cells filled in, as a student hands it in.

The variants (``tools/variants/``) only declare what goes into which cell; this module turns a
declaration into a notebook under ``submitted/<student>/<lab>/``:

* :func:`write_submission`: the solution, the untouched release, a correct variant, a mutant or
  the demo's combination of mistakes (:func:`submission_cells`);
* :func:`write_tamper` and :func:`write_broken`: Lab 00's tampering and broken submissions
  (``tools/variants/tamper.py``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat

from tools import layout, variant_cells
from tools.variants import tamper

__all__ = ["solution_code", "fill", "submission_cells", "write_submission", "write_tamper", "write_broken"]


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solution_code(root: Path, lab: str, code_only: bool = False) -> dict[str, str]:
    """Solution cells of the source notebook, as a student would write them (markers removed).

    Includes the written (markdown) answers unless ``code_only``."""
    return variant_cells.solution_cells(layout.source_notebook(lab, root), code_only)


def fill(release_nb, cells: dict[str, str]):
    """A copy of a release notebook with the given answer cells (grade_id -> source) replaced."""
    nb = copy.deepcopy(release_nb)
    known = {_grade_id(c) for c in nb.cells}
    unknown = set(cells) - known
    if unknown:
        raise KeyError(f"no cells with grade_id {sorted(unknown)} in the release notebook")
    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid in cells:
            cell.source = cells[gid]
    return nb


def submission_cells(root: Path, lab: str, variant: str) -> dict[str, str] | None:
    """Cell contents for a named submission: "solution", "untouched", "mistakes",
    "correct:<name>" or "mutant:<name>". Returns None for the untouched release."""
    if variant == "untouched":
        return None
    cells = solution_code(root, lab)
    if variant == "solution":
        return cells
    module = layout.variants(lab)
    if module is None:
        raise LookupError(f"{lab} has no variants module (tools/variants/{lab}.py)")
    cells.update(variant_cells.variant_cells(module, variant, cells))
    return cells


def _write(nb, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def _release(root: Path, lab: str):
    return nbformat.read(layout.release_notebook(lab, root), as_version=4)


def write_submission(root: Path, lab: str, student: str, variant: str) -> Path:
    """Write submitted/<student>/<lab>/<lab>.ipynb for the given variant."""
    release_nb = _release(root, lab)
    cells = submission_cells(root, lab, variant)
    nb = release_nb if cells is None else fill(release_nb, cells)
    return _write(nb, layout.submitted_notebook(student, lab, root))


def write_tamper(root: Path, attack: dict, student: str) -> Path:
    """Write a tampering submission for ``attack`` (an entry of ``tamper.TAMPER``) as ``student``."""
    return _write(fill(_release(root, tamper.LAB), attack["cells"]),
                  layout.submitted_notebook(student, tamper.LAB, root))


def write_broken(root: Path, name: str, student: str) -> Path:
    """Write the broken submission ``name`` (a key of ``tamper.BROKEN``) as ``student``; returns its folder."""
    if name not in tamper.BROKEN:
        raise KeyError(f"unknown broken submission {name!r}; known: {', '.join(tamper.BROKEN)}")
    folder = layout.submission_dir(student, tamper.LAB, root)
    target = folder / f"{tamper.LAB}.ipynb"
    folder.mkdir(parents=True, exist_ok=True)
    if name in tamper.BROKEN_CELLS:  # the solution, with code put before one answer
        cells = solution_code(root, tamper.LAB)
        for gid, code in tamper.BROKEN_CELLS[name].items():
            cells[gid] = code + "\n\n" + cells[gid]
        _write(fill(_release(root, tamper.LAB), cells), target)
    elif name == "invalid-json":
        text = json.dumps(nbformat.v4.new_notebook())
        target.write_text(text[: len(text) // 2])
    elif name == "other-lab":
        other = nbformat.v4.new_notebook()
        other.cells = [nbformat.v4.new_code_cell(tamper.OTHER_LAB_CELL)]
        _write(other, target)
    elif name == "no-notebook":
        (folder / "notes.txt").write_text(tamper.NO_NOTEBOOK_NOTE)
    else:
        raise KeyError(f"tamper.BROKEN lists {name!r} but nothing here writes it")
    return folder
