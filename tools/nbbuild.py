"""Build the instructor notebooks in ``source/`` from their text form in ``labs/``.

Each lab is written as one Python file in a "percent" format, so that it can be
reviewed, diffed and linted like code. Cells start with a marker line:

    # %% [markdown]                       explanation (lines lose their leading "# ")
    # %%                                  ordinary code cell
    # %% solution id=NAME                 autograded answer cell (### BEGIN/END SOLUTION inside)
    # %% tests id=NAME points=N           locked test cell (### BEGIN/END HIDDEN TESTS inside)
    # %% [markdown] answer id=NAME points=N   manually graded written answer
    # %% readonly                         locked code cell the student should not edit

Usage:  python -m tools.nbbuild          (write source/<lab>/<lab>.ipynb for every lab)
        python -m tools.nbbuild --check  (exit 1 if a notebook is out of date)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tools import layout
from tools.layout import LABS_DIR, ROOT

SOURCE_DIR = ROOT / layout.SOURCE

_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


def _parse_marker(rest: str) -> tuple[str, str | None, dict[str, str]]:
    rest = rest.strip()
    cell_type = "code"
    if rest.startswith("[markdown]"):
        cell_type = "markdown"
        rest = rest[len("[markdown]"):].strip()
    words = rest.split()
    kind = None
    attrs: dict[str, str] = {}
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
            attrs[key] = value
        elif kind is None:
            kind = word
        else:
            raise ValueError(f"cannot parse cell marker '# %% {rest}'")
    return cell_type, kind, attrs


def _markdown_source(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() == "#":
            out.append("")
        else:
            raise ValueError(f"markdown line must start with '# ': {line!r}")
    return "\n".join(out)


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _nbgrader_meta(kind: str | None, attrs: dict[str, str], cell_type: str, where: str) -> dict | None:
    if kind is None:
        return None
    if kind not in ("solution", "tests", "answer", "readonly"):
        raise ValueError(f"{where}: unknown cell kind {kind!r}")
    grade_id = attrs.get("id")
    if not grade_id:
        raise ValueError(f"{where}: a {kind} cell needs id=NAME")
    meta = {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": False, "task": False}
    if kind == "solution":
        meta["solution"] = True
    elif kind == "tests":
        meta.update(grade=True, locked=True, points=int(attrs["points"]))
    elif kind == "answer":
        if cell_type != "markdown":
            raise ValueError(f"{where}: answer cells are markdown")
        meta.update(grade=True, solution=True, points=int(attrs["points"]))
    elif kind == "readonly":
        meta["locked"] = True
    return meta


def parse_lab(text: str, name: str = "lab") -> dict:
    """Turn the percent-format text of a lab into an nbformat v4 notebook (as a dict)."""
    cells: list[dict] = []
    current: tuple[str, str | None, dict[str, str]] | None = None
    body: list[str] = []
    seen_ids: set[str] = set()

    def flush() -> None:
        if current is None:
            return
        cell_type, kind, attrs = current
        lines = _strip_blank(body[:])
        where = f"{name}, cell {len(cells) + 1}"
        source = _markdown_source(lines) if cell_type == "markdown" else "\n".join(lines)
        cell: dict = {"cell_type": cell_type, "metadata": {}, "source": source}
        meta = _nbgrader_meta(kind, attrs, cell_type, where)
        if meta is not None:
            if meta["grade_id"] in seen_ids:
                raise ValueError(f"{where}: duplicate id {meta['grade_id']!r}")
            seen_ids.add(meta["grade_id"])
            cell["metadata"]["nbgrader"] = meta
            if meta["locked"]:
                cell["metadata"]["editable"] = False
                cell["metadata"]["deletable"] = False
        if "tags" in attrs:
            cell["metadata"]["tags"] = attrs["tags"].split(",")
        if cell_type == "code":
            cell["execution_count"] = None
            cell["outputs"] = []
        cells.append(cell)

    for line in text.splitlines():
        m = _MARKER.match(line)
        if m:
            flush()
            current = _parse_marker(m.group("rest"))
            body = []
        elif current is not None:
            body.append(line)
        # lines before the first marker (module docstring, lint pragmas) are not part of the notebook
    flush()
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _with_ids(nb: dict, lab: str) -> dict:
    # nbformat 4.5 wants cell ids; make them stable so rebuilds do not churn.
    for i, cell in enumerate(nb["cells"]):
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        cell["id"] = grade_id.replace("_", "-") if grade_id else f"{lab.split('_')[0]}-cell-{i:03d}"
        # canonical key order: id first, like nbformat writes it
        nb["cells"][i] = {"id": cell.pop("id"), **cell}
    return nb


def render(lab_file: Path) -> str:
    """The notebook JSON text that ``lab_file`` builds to."""
    lab = lab_file.stem
    nb = _with_ids(parse_lab(lab_file.read_text(), lab), lab)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def lab_files() -> list[Path]:
    return layout.lab_files(LABS_DIR)


def target_for(lab_file: Path) -> Path:
    return layout.source_notebook(lab_file.stem, SOURCE_DIR.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that source/ is up to date")
    args = parser.parse_args(argv)
    stale = []
    for lab_file in lab_files():
        target = target_for(lab_file)
        text = render(lab_file)
        if target.exists() and target.read_text() == text:
            continue
        if args.check:
            stale.append(str(target.relative_to(ROOT)))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print("out of date (run `make notebooks`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
