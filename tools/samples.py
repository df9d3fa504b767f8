"""Build submissions from the release notebooks: the solution, the untouched release, mistakes.

A submission is the release notebook with some answer cells filled in, exactly what a student
would hand in. Variants (``tools/variants/<lab>.py``) say what goes into which cell.

    python -m tools.samples            # write the demo's sample submissions into submitted/
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import nbformat

from tools import layout
from tools.layout import ROOT, available_labs

__all__ = ["ROOT", "available_labs", "load_variants", "solution_code", "fill", "submission_cells",
           "write_submission", "write_samples"]

#: The demo's sample students.
SAMPLE_STUDENTS = ("solution", "untouched", "mistakes")

_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*\n", re.MULTILINE)


#: The variants module of a lab (tools/variants/<lab>.py), or None if it has none.
load_variants = layout.variants


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solution_code(root: Path, lab: str, code_only: bool = False) -> dict[str, str]:
    """Solution cells of the source notebook, as a student would write them (markers removed).

    Includes the written (markdown) answers unless ``code_only``."""
    nb = nbformat.read(layout.source_notebook(lab, root), as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and (cell.cell_type == "code" or not code_only):
            out[meta["grade_id"]] = _MARKERS.sub("", cell.source)
    return out


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
    module = load_variants(lab)
    if module is None:
        raise LookupError(f"{lab} has no variants module (tools/variants/{lab}.py)")
    if variant == "mistakes":
        by_name = {m["name"]: m for m in module.MUTANTS}
        for name in module.SAMPLE_MISTAKES:
            cells.update(by_name[name]["cells"])
        return cells
    kind, _, name = variant.partition(":")
    if kind == "correct":
        cells.update(module.CORRECT[name])
        return cells
    if kind == "mutant":
        cells.update({m["name"]: m for m in module.MUTANTS}[name]["cells"])
        return cells
    raise ValueError(f"unknown submission variant {variant!r}")


def write_submission(root: Path, lab: str, student: str, variant: str) -> Path:
    """Write submitted/<student>/<lab>/<lab>.ipynb for the given variant."""
    release_nb = nbformat.read(layout.release_notebook(lab, root), as_version=4)
    cells = submission_cells(root, lab, variant)
    nb = release_nb if cells is None else fill(release_nb, cells)
    target = layout.submitted_notebook(student, lab, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


#: Extra demo students built on Lab 00: two tampering attempts and one broken file.
DEMO_TAMPER = ("rebind-checker", "input-transformer")
DEMO_BROKEN = ("invalid-json",)


def write_samples(root: Path = ROOT, extras: bool = True) -> list[Path]:
    """The demo's sample submissions for every lab that has a release.

    With ``extras``, also a few tampering and broken Lab 00 submissions (tools/variants/tamper.py),
    to show that they are caught and reported without stopping the batch."""
    from tools.variants import tamper

    written = []
    for lab in available_labs(root):
        if not layout.release_notebook(lab, root).exists():
            continue
        for student in SAMPLE_STUDENTS:
            if student == "mistakes" and load_variants(lab) is None:
                continue
            written.append(write_submission(root, lab, student, student))
    if extras and layout.release_notebook(tamper.LAB, root).exists():
        by_name = {a["name"]: a for a in tamper.TAMPER}
        for name in DEMO_TAMPER:
            written.append(tamper.write_tamper(root, by_name[name], f"tamper-{name}"))
        for name in DEMO_BROKEN:
            written.append(tamper.write_broken(root, name, f"broken-{name}"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    for path in write_samples():
        print("wrote", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
