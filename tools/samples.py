"""The demo's sample submissions: the solution, the untouched release, typical mistakes, and a few
tampering and broken ones.

    python -m tools.samples            # write the demo's sample submissions into submitted/

What goes into which cell is declared by the variants (``tools/variants/<lab>.py``); the
notebooks are written by ``tools/submissions.py``, whose functions are also importable from
here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools import layout
from tools.layout import ROOT, available_labs
from tools.submissions import (
    fill,
    solution_code,
    submission_cells,
    write_broken,
    write_submission,
    write_tamper,
)
from tools.variants import tamper

__all__ = ["ROOT", "available_labs", "load_variants", "solution_code", "fill", "submission_cells",
           "write_submission", "write_samples"]

#: The demo's sample students.
SAMPLE_STUDENTS = ("solution", "untouched", "mistakes")

#: The variants module of a lab (tools/variants/<lab>.py), or None if it has none.
load_variants = layout.variants

#: Extra demo students built on Lab 00: two tampering attempts and one broken file.
DEMO_TAMPER = ("rebind-checker", "input-transformer")
DEMO_BROKEN = ("invalid-json",)


def write_samples(root: Path = ROOT, extras: bool = True) -> list[Path]:
    """The demo's sample submissions for every lab that has a release.

    With ``extras``, also a few tampering and broken Lab 00 submissions (tools/variants/tamper.py),
    to show that they are caught and reported without stopping the batch."""
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
            written.append(write_tamper(root, by_name[name], f"tamper-{name}"))
        for name in DEMO_BROKEN:
            written.append(write_broken(root, name, f"broken-{name}"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    for path in write_samples():
        print("wrote", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
