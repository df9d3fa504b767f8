"""Grades into the LMS: the course's final grades as a file Canvas, Moodle or Blackboard imports.

Two exports, each one row per student and one column per lab (its final score: autograded plus
hand-graded points less any late penalty, ``grades.csv``'s ``final_points``; tools/late.py)::

    python -m tools.lms canvas  --map ids.csv --out canvas_grades.csv
    python -m tools.lms generic --map ids.csv --out lms_grades.csv     # + lms_grades_max.csv

**The id mapping file** (``--map``) is a CSV, UTF-8, with a header row. Column names are
matched ignoring case and repeated spaces; other columns are ignored, so a Canvas gradebook
export with an ``nbgrader_id`` column added serves as it is:

* ``nbgrader_id`` (both exports): the student's folder name under ``submitted/``.
* Canvas: ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, the first five
  columns of Canvas' own gradebook export. Each row needs at least one of ``ID`` (the Canvas
  user id, a whole number), ``SIS User ID``, ``SIS Login ID``: Canvas matches a student by
  ``ID``, then ``SIS User ID``, then ``SIS Login ID``, then by name.
* generic: ``lms_id``, what the LMS matches a student on (a username, an email address or an
  ID number; you choose which in the LMS's import form).

**The Canvas file** follows what Canvas' gradebook importer reads (``GradebookImporter`` in
instructure/canvas-lms, ``app/models/gradebook_importer.rb``): the header ``Student, ID, SIS
User ID, SIS Login ID, Section`` then one column per lab named by :func:`lab_title` (Canvas
puts the scores into the course's assignment of exactly that name, or creates a published
assignment of that name); a second row whose first cell is ``Points Possible`` with each lab's
points (the points of an assignment the import creates); then one row per student, scores as
plain numbers (at most two decimals, which is what Canvas shows).

**The generic file** (Moodle, Blackboard, others): header ``lms_id`` (``--id-header`` renames it,
e.g. ``Username`` for Blackboard) and the same lab columns; the maximum of each lab goes into a
second file beside it, ``<out>_max.csv`` (``column,max_points``), since a comment line would
break the LMS's CSV reader.

**Cells**: a lab the student did not submit, or a submission that could not be graded, is an
empty cell (both Canvas and Moodle read an empty cell as "no grade", not 0), or 0 with
``--missing-as-zero``. A provisional total (written answers not graded by hand yet, or points
held for review by the integrity check: ``GradeRow.total_is``) stops the export with the list of
them, unless ``--allow-provisional``, which exports the total as it stands (ungraded answers
count 0).

**Bad input** stops with :class:`LmsInputError`, whose message starts ``FILE:LINE:``: a
missing column, an empty ``nbgrader_id`` or LMS identity, a student id or LMS identity on two
lines, a Canvas ``ID`` that is not a whole number, a file that is not UTF-8, a student with
grades and no line. A line for a student with no submission at all is not an error (a student
on the LMS roster who handed nothing in): it is exported with empty cells and reported as a
warning with its line. Files are written only after every check passed, each to a temporary
file in the same folder renamed over the output at the end, so an error never leaves a file
half-written (and an older export stays as it was).

Why one module of this size: reading the instructor's id mapping with line-numbered errors and
writing the two export formats share one model of a student's row; apart, each would repeat
the validation.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools.grades import GradeRow, collect_grades
from tools.late import DeadlinesError
from tools.layout import ROOT, SUBMITTED

#: The mapping file's column naming the student in nbgrader (the folder under ``submitted/``).
NBGRADER_ID = "nbgrader_id"
#: Canvas' identity columns, in the order of Canvas' gradebook export and import.
CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
#: Of those, the ones Canvas matches a student on (``ID`` first); a row needs one of them.
CANVAS_MATCHED_ON = ["ID", "SIS User ID", "SIS Login ID"]
#: The first cell of Canvas' points row (its importer looks for this text in the first column).
POINTS_POSSIBLE = "Points Possible"
#: The mapping file's column, and the generic export's first column, naming the student in the LMS.
LMS_ID = "lms_id"

CANVAS_COLUMNS = [NBGRADER_ID, *CANVAS_IDENTITY]
GENERIC_COLUMNS = [NBGRADER_ID, LMS_ID]


class LmsError(Exception):
    """An export that cannot be written as asked; the message says why."""


class LmsInputError(LmsError):
    """Bad input in a file: ``str(err)`` reads ``FILE:LINE: what is wrong`` (no line: ``FILE: ...``)."""

    def __init__(self, path: Path, line: int | None, message: str):
        self.path, self.line = Path(path), line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class ProvisionalError(LmsError):
    """Totals that are not final yet; ``rows`` are the GradeRows concerned."""

    def __init__(self, rows: list[GradeRow]):
        self.rows = rows
        listed = "\n".join(f"  {r.student}/{r.lab}: {r.total_is}" for r in rows)
        super().__init__(
            f"{len(rows)} total(s) are provisional, not exported:\n{listed}\n"
            "Grade the written answers in the formgrader (and review held submissions), run "
            "`make report`, then export again; or pass --allow-provisional to export these "
            "totals as they stand (answers not graded yet count 0).")


@dataclass
class MapRow:
    """One line of the mapping file: its line number, the nbgrader id, the other columns read."""

    line: int
    student: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportResult:
    """What an export wrote, and its warnings (lines of the mapping file with no submission)."""

    paths: list[Path]
    warnings: list[str]


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


def read_mapping(path: Path, columns: list[str]) -> list[MapRow]:
    """The mapping file's rows, with ``columns`` (the first of them the nbgrader id) required.

    Checks: readable UTF-8 (a byte-order mark is fine), a header with every column, no column
    twice, no empty nbgrader id, no nbgrader id on two lines. Values are stripped of spaces;
    blank lines, and a line whose first cell says ``Points Possible`` (Canvas' export has one),
    are skipped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LmsInputError(path, None, "no such file (the id mapping file: see README, 'Grades into the LMS')") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise LmsInputError(path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x}): save the file as "
                                        "'CSV UTF-8' (in Excel: Save As > CSV UTF-8)") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)  # blank lines before the header
        if header is None:
            raise LmsInputError(path, 1, f"empty file: expected a header with the columns {', '.join(columns)}")
        header_line = reader.line_num
        names = [_norm(h) for h in header]
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name and name in seen:
                raise LmsInputError(path, header_line, f"column '{header[i].strip()}' appears twice in the header")
            seen[name] = i
        missing = [c for c in columns if _norm(c) not in seen]
        if missing:
            raise LmsInputError(path, header_line,
                                f"missing column(s) {', '.join(repr(c) for c in missing)} in the header "
                                f"(found: {', '.join(repr(h.strip()) for h in header)}; needed: "
                                f"{', '.join(columns)})")
        where = {c: seen[_norm(c)] for c in columns}
        rows: list[MapRow] = []
        first_line: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if _norm(POINTS_POSSIBLE) in _norm(cells[0]):
                continue  # the points row of a Canvas gradebook export used as the mapping file
            values = {c: (cells[i].strip() if i < len(cells) else "") for c, i in where.items()}
            student = values.pop(columns[0])
            if not student:
                raise LmsInputError(path, line, f"empty {columns[0]} (the student's folder name under submitted/)")
            if student in first_line:
                raise LmsInputError(path, line, f"student id '{student}' is already on line {first_line[student]}")
            first_line[student] = line
            rows.append(MapRow(line, student, values))
    except csv.Error as exc:
        raise LmsInputError(path, reader.line_num, f"not a readable CSV file: {exc}") from None
    return rows


def _check_unique(path: Path, mapping: list[MapRow], column: str) -> None:
    """No two students with the same (non-empty) LMS identity in ``column``."""
    first: dict[str, int] = {}
    for row in mapping:
        value = row.fields.get(column, "")
        if not value:
            continue
        if value in first:
            raise LmsInputError(path, row.line, f"{column} '{value}' is already on line {first[value]}: two "
                                                "students would get the same LMS gradebook row")
        first[value] = row.line


def _check_canvas_identity(path: Path, mapping: list[MapRow]) -> None:
    for row in mapping:
        if not any(row.fields[c] for c in CANVAS_MATCHED_ON):
            raise LmsInputError(path, row.line, f"student '{row.student}' has an empty ID, SIS User ID and SIS "
                                                "Login ID: Canvas needs one of them to find the student")
        if row.fields["ID"] and not row.fields["ID"].isdigit():
            raise LmsInputError(path, row.line, f"ID '{row.fields['ID']}' is not a Canvas user id (a whole "
                                                "number; leave it empty to match on the SIS ids)")
    for column in CANVAS_MATCHED_ON:
        _check_unique(path, mapping, column)


def _check_generic_identity(path: Path, mapping: list[MapRow]) -> None:
    for row in mapping:
        if not row.fields[LMS_ID]:
            raise LmsInputError(path, row.line, f"empty {LMS_ID} for student '{row.student}'")
    _check_unique(path, mapping, LMS_ID)


def lab_title(lab: str) -> str:
    """The LMS column (Canvas assignment) name of a lab: ``lab00_cache_sizing`` -> ``Lab 00: cache sizing``.

    Plain ASCII, so that a spreadsheet opening the file without guessing UTF-8 keeps it, and
    no parenthesis: Canvas reads a trailing ``(digits)`` as an assignment id, and keeps any
    other one as part of the name of the assignment it creates."""
    m = re.fullmatch(r"lab(\d+)_(.+)", lab)
    if not m:
        return lab
    words = [_ACRONYMS.get(word, word) for word in m.group(2).split("_")]
    return f"Lab {m.group(1)}: {' '.join(words)}"


#: Words of lab names written in capitals in a title.
_ACRONYMS = {"kv": "KV", "gpu": "GPU", "mla": "MLA", "gqa": "GQA", "mqa": "MQA", "tp": "TP"}


def _number(x: float) -> str:
    """A score as Canvas and Moodle read it: a plain decimal, at most two decimals (``24``, ``12.5``)."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _labs(rows: list[GradeRow]) -> list[str]:
    return sorted({r.lab for r in rows})


def lab_points(rows: list[GradeRow]) -> dict[str, float]:
    """Each lab's maximum (autograded + hand-graded points), in course order."""
    return {lab: max(r.total_max for r in rows if r.lab == lab) for lab in _labs(rows)}


def _missing(r: GradeRow | None) -> bool:
    """No total to export: no submission, or one that could not be graded."""
    return r is None or r.total_is == "not graded"


def _table(rows: list[GradeRow], map_path: Path, mapping: list[MapRow], allow_provisional: bool,
           missing_as_zero: bool) -> tuple[list[str], list[tuple[MapRow, list[str]]], list[str]]:
    """The labs, each mapped student's cells (in the mapping file's order), and the warnings."""
    mapped = {m.student for m in mapping}
    unmapped = sorted({r.student for r in rows} - mapped)
    graded_students = {r.student for r in rows}
    if unmapped:
        orphans = [f"'{m.student}' (line {m.line})" for m in mapping if m.student not in graded_students]
        hint = f" Lines whose student has no submission (a typo?): {', '.join(orphans)}." if orphans else ""
        raise LmsInputError(map_path, None, f"no line for {len(unmapped)} student(s) with grades: "
                                            f"{', '.join(unmapped)}; add a line for each "
                                            f"({NBGRADER_ID} = the folder name under submitted/).{hint}")
    provisional = [r for r in rows if r.total_is.startswith("provisional")]
    if provisional and not allow_provisional:
        raise ProvisionalError(provisional)
    labs = _labs(rows)
    by_key = {(r.student, r.lab): r for r in rows}
    table, warnings = [], []
    for m in mapping:
        if m.student not in graded_students:
            warnings.append(f"{map_path}:{m.line}: student '{m.student}' has no submission: exported with "
                            + ("0 for every lab" if missing_as_zero else "empty cells (no grade)"))
        cells = []
        for lab in labs:
            r = by_key.get((m.student, lab))
            cells.append(("0" if missing_as_zero else "") if _missing(r) else _number(r.final))
        table.append((m, cells))
    return labs, table, warnings


def _write_atomic(files: dict[Path, list[list[str]]]) -> None:
    """Write each CSV to a temporary file in its folder, then rename them all over the outputs."""
    umask = os.umask(0)
    os.umask(umask)
    temps: list[tuple[Path, Path]] = []
    try:
        for path, csv_rows in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append((Path(tmp), path))
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(csv_rows)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask)
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise


def _check_out(map_path: Path, *outs: Path) -> None:
    for out in outs:
        if Path(out).resolve() == Path(map_path).resolve():
            raise LmsError(f"{out}: the output would overwrite the id mapping file")


def export_canvas(rows: list[GradeRow], map_path: Path, out: Path, *, allow_provisional: bool = False,
                  missing_as_zero: bool = False) -> ExportResult:
    """Write ``out``, a CSV for Canvas' gradebook import (Grades > Import): identity columns, one
    column per lab, a ``Points Possible`` row, one row per student of the mapping file."""
    map_path, out = Path(map_path), Path(out)
    _check_out(map_path, out)
    mapping = read_mapping(map_path, CANVAS_COLUMNS)
    _check_canvas_identity(map_path, mapping)
    labs, table, warnings = _table(rows, map_path, mapping, allow_provisional, missing_as_zero)
    points = lab_points(rows)
    csv_rows = [CANVAS_IDENTITY + [lab_title(lab) for lab in labs],
                [POINTS_POSSIBLE] + [""] * (len(CANVAS_IDENTITY) - 1) + [_number(points[lab]) for lab in labs]]
    csv_rows += [[m.fields[c] for c in CANVAS_IDENTITY] + cells for m, cells in table]
    _write_atomic({out: csv_rows})
    return ExportResult([out], warnings)


def max_path(out: Path) -> Path:
    """The generic export's file of maxima beside ``out``: ``lms_grades.csv`` -> ``lms_grades_max.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_max{out.suffix or '.csv'}")


def export_generic(rows: list[GradeRow], map_path: Path, out: Path, *, allow_provisional: bool = False,
                   missing_as_zero: bool = False, id_header: str = LMS_ID) -> ExportResult:
    """Write ``out`` (``id_header``, then one column per lab; one row per student of the mapping
    file) and :func:`max_path` (``column,max_points``: each lab column's maximum)."""
    map_path, out = Path(map_path), Path(out)
    _check_out(map_path, out, max_path(out))
    if not id_header.strip():
        raise LmsError("--id-header must not be empty")
    mapping = read_mapping(map_path, GENERIC_COLUMNS)
    _check_generic_identity(map_path, mapping)
    labs, table, warnings = _table(rows, map_path, mapping, allow_provisional, missing_as_zero)
    points = lab_points(rows)
    grades = [[id_header] + [lab_title(lab) for lab in labs]]
    grades += [[m.fields[LMS_ID]] + cells for m, cells in table]
    maxima = [["column", "max_points"]] + [[lab_title(lab), _number(points[lab])] for lab in labs]
    _write_atomic({out: grades, max_path(out): maxima})
    return ExportResult([out, max_path(out)], warnings)


DEMO_DIR = Path("build") / "lms"


def demo_export(root: Path, rows: list[GradeRow]) -> list[Path]:
    """The demo's LMS export: a made-up mapping for the sample students (the folders under
    ``submitted/``) in ``build/lms/demo_ids.csv``, and both exports from it in ``build/lms/``.

    The demo's totals are provisional (its written answers are never graded by hand, some
    submissions are held), so they are exported as they stand (``allow_provisional``)."""
    out_dir = Path(root) / DEMO_DIR
    students = sorted(p.name for p in (Path(root) / SUBMITTED).iterdir() if p.is_dir()) \
        if (Path(root) / SUBMITTED).is_dir() else []
    students = sorted(set(students) | {r.student for r in rows})
    ids = out_dir / "demo_ids.csv"
    header = [NBGRADER_ID, *CANVAS_IDENTITY, LMS_ID]
    lines = [header] + [[s, f"Sample, {s}", str(1001 + i), f"S{1001 + i}", f"{s}@example.edu", "Demo section",
                         f"{s}@example.edu"] for i, s in enumerate(students)]
    _write_atomic({ids: lines})
    canvas = export_canvas(rows, ids, out_dir / "canvas_grades.csv", allow_provisional=True)
    generic = export_generic(rows, ids, out_dir / "lms_grades.csv", allow_provisional=True)
    return [ids, *canvas.paths, *generic.paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=["canvas", "generic"],
                        help="canvas: Canvas' gradebook import; generic: lms_id + one column per lab (Moodle, Blackboard)")
    parser.add_argument("--map", required=True, type=Path, help="the id mapping file (CSV; columns in the docstring above)")
    parser.add_argument("--out", required=True, type=Path, help="the CSV to write")
    parser.add_argument("--root", type=Path, default=ROOT, help="the course folder (default: this repository)")
    parser.add_argument("--allow-provisional", action="store_true",
                        help="export provisional totals as they stand instead of stopping")
    parser.add_argument("--missing-as-zero", action="store_true",
                        help="0 for a lab not submitted or not gradable (default: an empty cell, no grade)")
    parser.add_argument("--id-header", default=LMS_ID,
                        help=f"generic: the name of the first column (default {LMS_ID}; Blackboard: Username)")
    args = parser.parse_args(argv)
    try:
        rows = collect_grades(args.root)
    except DeadlinesError as exc:  # a bad deadlines.toml: no final grades to export
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = {"allow_provisional": args.allow_provisional, "missing_as_zero": args.missing_as_zero}
    try:
        if not rows:
            raise LmsError(f"{args.root / SUBMITTED}: no submissions, so no grades to export")
        if args.format == "canvas":
            result = export_canvas(rows, args.map, args.out, **options)
        else:
            result = export_generic(rows, args.map, args.out, id_header=args.id_header, **options)
    except LmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    labs = len(lab_points(rows))
    for path in result.paths:
        print(f"wrote {path}")
    print(f"{len(set(r.student for r in rows))} students with grades, {labs} lab column(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
