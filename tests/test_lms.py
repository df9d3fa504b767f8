"""tools/lms.py: the course's grades as Canvas' gradebook import and a generic LMS CSV.

Fast: grade rows are built by hand (no nbgrader). The Canvas file is read back with the rules
of Canvas' own importer (instructure/canvas-lms, app/models/gradebook_importer.rb): the header
starts with a "Student" and an "ID" column, the identity columns end with "Section", a trailing
"(digits)" in a column name is an assignment id, a row whose first cell says "Points Possible"
holds the points, every other row is a student.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import lms
from tools.grades import GradeRow
from tools.layout import ROOT

LAB0, LAB1 = "lab00_cache_sizing", "lab01_kv_cache"
TITLE0, TITLE1 = "Lab 00: cache sizing", "Lab 01: KV cache"

CANVAS_MAP = """nbgrader_id,Student,ID,SIS User ID,SIS Login ID,Section,Notes
alice,"Doe, Alice",101,S101,alice,Sec A,first
bob,"Roe, Bob",102,,bob,Sec A,
carol,"Poe, Carol",,S103,,Sec B,matched on SIS User ID
"""

GENERIC_MAP = """nbgrader_id,lms_id
alice,alice@example.edu
bob,bob@example.edu
carol,carol@example.edu
"""


def rows() -> list[GradeRow]:
    """alice: both labs final; bob: Lab 00 only (12.5 + 6); carol: Lab 00 broken, Lab 01 all 0."""
    return [
        GradeRow("alice", LAB0, "graded", auto_score=20, auto_max=24, manual_max=6, manual_score=5),
        GradeRow("alice", LAB1, "graded", auto_score=30, auto_max=32, manual_max=7, manual_score=6),
        GradeRow("bob", LAB0, "graded", auto_score=12.5, auto_max=24, manual_max=6, manual_score=6),
        GradeRow("carol", LAB0, "not graded: NotJSONError: broken", auto_max=24, manual_max=6),
        GradeRow("carol", LAB1, "graded", auto_score=0, auto_max=32, manual_max=7, manual_score=0),
    ]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- Canvas' importer, as instructure/canvas-lms app/models/gradebook_importer.rb reads a file -----
_TITLE_AND_ID = re.compile(r"\A(.*)\s\((\d+)\)\Z")  # Assignment.title_and_id


def read_like_canvas(path: Path) -> tuple[list[str], dict[str, float], dict[str, dict]]:
    """(assignment columns, points possible per column, student key -> identity and scores).

    A student's key is what Canvas matches on first: ID, else SIS User ID, else SIS Login ID.
    Scores: None for an empty cell, else the number (float)."""
    table = list(csv.reader(path.open(encoding="utf-8", newline="")))
    header = table[0]
    assert len(header) > 3 and "Student" in header[0] and "ID" in header[1], header  # row_has_student_headers?
    student_columns = 3
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        student_columns += 1
    elif re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID", header[3]):
        student_columns += 2
    assert "Section" in header[student_columns - 1], "Canvas: 'Invalid header row'"
    assignments = header[student_columns:]
    points: dict[str, float] = {}
    students: dict[str, dict] = {}
    for row in table[1:]:
        if "Points Possible" in row[0]:
            points = {a: float(v) for a, v in zip(assignments, row[student_columns:], strict=True)}
            continue
        identity = dict(zip(header[:student_columns], row[:student_columns], strict=True))
        key = identity["ID"] or identity.get("SIS User ID") or identity.get("SIS Login ID")
        scores = {a: (float(v) if v.strip() else None)
                  for a, v in zip(assignments, row[student_columns:], strict=True)}
        students[key] = {"identity": identity, "scores": scores}
    return assignments, points, students


def test_canvas_export_reads_back_as_canvas_does(tmp_path):
    ids = write(tmp_path / "ids.csv", CANVAS_MAP)
    out = tmp_path / "canvas_grades.csv"
    result = lms.export_canvas(rows(), ids, out)
    assert result.paths == [out] and result.warnings == []
    header = next(csv.reader(out.open(encoding="utf-8")))
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assignments, points, students = read_like_canvas(out)
    assert assignments == [TITLE0, TITLE1]  # one column per lab, in course order, no "Notes"
    assert not any(_TITLE_AND_ID.match(a) for a in assignments)  # a name, never read as an assignment id
    assert points == {TITLE0: 30.0, TITLE1: 39.0}
    assert set(students) == {"101", "102", "S103"}
    assert students["101"]["identity"] == {"Student": "Doe, Alice", "ID": "101", "SIS User ID": "S101",
                                           "SIS Login ID": "alice", "Section": "Sec A"}
    assert students["101"]["scores"] == {TITLE0: 25.0, TITLE1: 36.0}
    assert students["102"]["scores"] == {TITLE0: 18.5, TITLE1: None}  # not submitted: empty, not 0
    assert students["S103"]["scores"] == {TITLE0: None, TITLE1: 0.0}  # not gradable: empty; a real 0 stays 0


def test_canvas_missing_as_zero(tmp_path):
    out = tmp_path / "canvas.csv"
    lms.export_canvas(rows(), write(tmp_path / "ids.csv", CANVAS_MAP), out, missing_as_zero=True)
    _, _, students = read_like_canvas(out)
    assert students["102"]["scores"][TITLE1] == 0.0
    assert students["S103"]["scores"][TITLE0] == 0.0
    assert students["101"]["scores"] == {TITLE0: 25.0, TITLE1: 36.0}


def test_canvas_export_of_a_canvas_gradebook_export_used_as_mapping(tmp_path):
    """A Canvas export with nbgrader_id added (BOM, its Points Possible row, headers spaced oddly)."""
    text = ("\ufeffStudent,ID,SIS  User ID,sis login id,Section,Quiz 1 (555),NBGRADER_ID\n"
            "    Points Possible,,,,,10,\n"
            '"Doe, Alice",101,S101,alice,Sec A,7,alice\n'
            '"Roe, Bob",102,,bob,Sec A,8,bob\n'
            '"Poe, Carol",,S103,,Sec B,,carol\n')
    out = tmp_path / "canvas.csv"
    lms.export_canvas(rows(), write(tmp_path / "ids.csv", text), out)
    assignments, _, students = read_like_canvas(out)
    assert assignments == [TITLE0, TITLE1]
    assert students["101"]["scores"][TITLE0] == 25.0


def test_generic_export_and_its_maxima(tmp_path):
    ids = write(tmp_path / "ids.csv", GENERIC_MAP)
    out = tmp_path / "lms_grades.csv"
    result = lms.export_generic(rows(), ids, out)
    assert result.paths == [out, tmp_path / "lms_grades_max.csv"]
    table = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert list(table[0]) == ["lms_id", TITLE0, TITLE1]
    by_id = {r["lms_id"]: r for r in table}
    assert [r["lms_id"] for r in table] == ["alice@example.edu", "bob@example.edu", "carol@example.edu"]
    assert float(by_id["alice@example.edu"][TITLE0]) == 25.0
    assert float(by_id["alice@example.edu"][TITLE1]) == 36.0
    assert float(by_id["bob@example.edu"][TITLE0]) == 18.5 and by_id["bob@example.edu"][TITLE1] == ""
    assert by_id["carol@example.edu"][TITLE0] == "" and float(by_id["carol@example.edu"][TITLE1]) == 0.0
    maxima = {r["column"]: float(r["max_points"])
              for r in csv.DictReader((tmp_path / "lms_grades_max.csv").open(encoding="utf-8"))}
    assert maxima == {TITLE0: 30.0, TITLE1: 39.0}


def test_generic_id_header_for_blackboard(tmp_path):
    out = tmp_path / "bb.csv"
    lms.export_generic(rows(), write(tmp_path / "ids.csv", GENERIC_MAP), out, id_header="Username")
    assert next(csv.reader(out.open(encoding="utf-8")))[0] == "Username"


@pytest.mark.parametrize("provisional", [
    GradeRow("bob", LAB1, "graded; needs hand grading: 2 answers", auto_score=30, auto_max=32, manual_max=7,
             manual_pending=["got_wrong", "pitfalls"]),
    GradeRow("bob", LAB1, "graded", auto_score=0, auto_max=32, manual_max=7, manual_score=7,
             integrity="HELD for review: tamper"),
], ids=["answers-not-hand-graded", "held-for-review"])
@pytest.mark.parametrize("fmt", ["canvas", "generic"])
def test_provisional_totals_refused_unless_allowed(tmp_path, provisional, fmt):
    ids = write(tmp_path / "ids.csv", CANVAS_MAP if fmt == "canvas" else GENERIC_MAP)
    out = tmp_path / "out.csv"
    export = lms.export_canvas if fmt == "canvas" else lms.export_generic
    with pytest.raises(lms.ProvisionalError) as err:
        export([*rows(), provisional], ids, out)
    assert "bob/lab01_kv_cache" in str(err.value) and "--allow-provisional" in str(err.value)
    assert err.value.rows == [provisional]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.csv"]  # nothing written
    export([*rows(), provisional], ids, out, allow_provisional=True)
    cell = [r for r in csv.reader(out.open(encoding="utf-8")) if "102" in r or "bob@example.edu" in r][0][-1]
    assert float(cell) == provisional.total  # the total as it stands


BAD_MAPS = [  # (id, format, file content, line of the error, words in the message)
    ("missing-column", "canvas", "nbgrader_id,Student,ID,SIS User ID,Section\nalice,A,101,S1,X\n", 1,
     ["missing column", "SIS Login ID"]),
    ("missing-lms_id", "generic", "nbgrader_id,email\nalice,a@x\n", 1, ["missing column", "lms_id"]),
    ("no-nbgrader_id", "generic", "student,lms_id\nalice,a@x\n", 1, ["nbgrader_id"]),
    ("empty-file", "generic", "", 1, ["empty file"]),
    ("duplicate-student", "generic", "nbgrader_id,lms_id\nalice,a@x\nbob,b@x\nalice,c@x\n", 4,
     ["alice", "already on line 2"]),
    ("empty-nbgrader_id", "generic", "nbgrader_id,lms_id\nalice,a@x\n  ,b@x\n", 3, ["empty nbgrader_id"]),
    ("empty-lms_id", "generic", "nbgrader_id,lms_id\nalice,a@x\nbob,\n", 3, ["empty lms_id", "bob"]),
    ("duplicate-lms_id", "generic", "nbgrader_id,lms_id\nalice,a@x\nbob,a@x\n", 3, ["a@x", "line 2"]),
    ("no-canvas-identity", "canvas", "nbgrader_id,Student,ID,SIS User ID,SIS Login ID,Section\nalice,A,,,,X\n",
     2, ["alice", "ID, SIS User ID and SIS Login ID"]),
    ("canvas-id-not-a-number", "canvas",
     "nbgrader_id,Student,ID,SIS User ID,SIS Login ID,Section\nalice,A,abc,,,X\n", 2, ["'abc'", "whole number"]),
    ("duplicate-canvas-id", "canvas",
     "nbgrader_id,Student,ID,SIS User ID,SIS Login ID,Section\nalice,A,101,,,X\nbob,B,101,,,X\n", 3,
     ["ID '101'", "line 2"]),
    ("not-utf8", "generic", "nbgrader_id,lms_id\nalice,a@x\nbob,M\u00fcller@x\n".encode("latin-1"), 3,
     ["not UTF-8", "0xfc"]),
    ("broken-quote", "generic", 'nbgrader_id,lms_id\nalice,a@x\nbob,"b@x\n', 3, ["not a readable CSV"]),
    ("column-twice", "generic", "nbgrader_id,lms_id,LMS_ID\nalice,a@x,b\n", 1, ["appears twice"]),
]


@pytest.mark.parametrize("case", BAD_MAPS, ids=[c[0] for c in BAD_MAPS])
def test_bad_mapping_file_is_an_error_with_its_line_and_writes_nothing(tmp_path, case):
    _, fmt, content, line, words = case
    ids = write(tmp_path / "ids.csv", content)
    out = tmp_path / "out.csv"
    export = lms.export_canvas if fmt == "canvas" else lms.export_generic
    with pytest.raises(lms.LmsInputError) as err:
        export(rows(), ids, out)
    message = str(err.value)
    assert err.value.path == ids and err.value.line == line, message
    assert message.startswith(f"{ids}:{line}: "), message
    for word in words:
        assert word in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.csv"]  # no output, no temporary file


def test_student_with_grades_but_no_line(tmp_path):
    ids = write(tmp_path / "ids.csv", "nbgrader_id,lms_id\nalice,a@x\ncarol,c@x\nbbo,b@x\n")
    with pytest.raises(lms.LmsInputError) as err:
        lms.export_generic(rows(), ids, tmp_path / "out.csv")
    message = str(err.value)
    assert message.startswith(f"{ids}: no line for 1 student(s) with grades: bob"), message
    assert "'bbo' (line 4)" in message  # the likely typo
    assert not (tmp_path / "out.csv").exists()


def test_line_for_a_student_without_submissions_is_a_warning(tmp_path):
    ids = write(tmp_path / "ids.csv", CANVAS_MAP + 'dave,"Loe, Dave",104,,dave,Sec B,\n')
    out = tmp_path / "canvas.csv"
    result = lms.export_canvas(rows(), ids, out)
    assert result.warnings == [f"{ids}:5: student 'dave' has no submission: exported with empty cells (no grade)"]
    _, _, students = read_like_canvas(out)
    assert students["104"]["scores"] == {TITLE0: None, TITLE1: None}


def test_an_error_leaves_an_older_export_as_it_was(tmp_path):
    out = write(tmp_path / "canvas.csv", "the previous export\n")
    ids = write(tmp_path / "ids.csv", "nbgrader_id,Student,ID,SIS User ID,SIS Login ID,Section\n,A,1,,,X\n")
    with pytest.raises(lms.LmsInputError):
        lms.export_canvas(rows(), ids, out)
    assert out.read_text() == "the previous export\n"


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    ids = write(tmp_path / "ids.csv", GENERIC_MAP)

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(lms.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        lms.export_generic(rows(), ids, tmp_path / "lms_grades.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.csv"]


def test_output_never_overwrites_the_mapping_file(tmp_path):
    ids = write(tmp_path / "ids.csv", GENERIC_MAP)
    with pytest.raises(lms.LmsError, match="overwrite the id mapping file"):
        lms.export_generic(rows(), ids, ids)
    assert ids.read_text() == GENERIC_MAP


def test_lab_titles_and_numbers():
    assert lms.lab_title("lab00_cache_sizing") == TITLE0
    assert lms.lab_title("lab02_roofline") == "Lab 02: roofline"
    assert [lms._number(x) for x in (24.0, 12.5, 0.0, 1 / 3, 30.999)] == ["24", "12.5", "0", "0.33", "31"]
    assert lms.max_path(Path("x/lms_grades.csv")) == Path("x/lms_grades_max.csv")


def test_demo_export(tmp_path):
    for student in ("alice", "bob", "carol", "dave"):  # dave: a folder without a graded lab
        (tmp_path / "submitted" / student).mkdir(parents=True)
    provisional = GradeRow("bob", LAB1, "graded; needs hand grading: 1 answer", auto_score=30, auto_max=32,
                           manual_max=7, manual_pending=["why"])
    paths = lms.demo_export(tmp_path, [*rows(), provisional])
    build = tmp_path / "build" / "lms"
    assert paths == [build / "demo_ids.csv", build / "canvas_grades.csv", build / "lms_grades.csv",
                     build / "lms_grades_max.csv"]
    assignments, _, students = read_like_canvas(build / "canvas_grades.csv")
    assert assignments == [TITLE0, TITLE1] and len(students) == 4
    scores = {s["identity"]["SIS Login ID"]: s["scores"] for s in students.values()}
    assert scores["bob@example.edu"][TITLE1] == 30.0  # provisional, exported as it stands
    generic = list(csv.DictReader((build / "lms_grades.csv").open(encoding="utf-8")))
    assert [r["lms_id"] for r in generic] == [f"{s}@example.edu" for s in ("alice", "bob", "carol", "dave")]


def test_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lms, "collect_grades", lambda root: rows())
    ids = write(tmp_path / "ids.csv", CANVAS_MAP)
    out = tmp_path / "canvas_grades.csv"
    assert lms.main(["canvas", "--map", str(ids), "--out", str(out), "--root", str(tmp_path)]) == 0
    assert read_like_canvas(out)[0] == [TITLE0, TITLE1]
    gen = tmp_path / "lms_grades.csv"
    generic_ids = write(tmp_path / "generic_ids.csv", GENERIC_MAP)
    assert lms.main(["generic", "--map", str(generic_ids), "--out", str(gen), "--root", str(tmp_path)]) == 0
    assert (tmp_path / "lms_grades_max.csv").exists()
    capsys.readouterr()
    bad = write(tmp_path / "bad.csv", "nbgrader_id,lms_id\nalice,\n")
    assert lms.main(["generic", "--map", str(bad), "--out", str(tmp_path / "x.csv"), "--root", str(tmp_path)]) == 2
    assert f"error: {bad}:2: empty lms_id" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_command_line_refuses_provisional_totals(tmp_path, monkeypatch, capsys):
    held = GradeRow("bob", LAB1, "graded", auto_score=0, auto_max=32, manual_max=7, integrity="HELD for review: x")
    monkeypatch.setattr(lms, "collect_grades", lambda root: [*rows(), held])
    ids = write(tmp_path / "ids.csv", CANVAS_MAP)
    argv = ["canvas", "--map", str(ids), "--out", str(tmp_path / "c.csv"), "--root", str(tmp_path)]
    assert lms.main(argv) == 2
    assert "bob/lab01_kv_cache: provisional" in capsys.readouterr().err
    assert lms.main([*argv, "--allow-provisional"]) == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lms_runs_the_canvas_export():
    dry = subprocess.run(["make", "-n", "lms", "MAP=my_ids.csv"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m tools.lms canvas --map my_ids.csv --out canvas_grades.csv" in dry.stdout
