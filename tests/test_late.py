"""Deadlines, extensions and late penalties (tools/late.py, deadlines.toml, `make deadlines`).

Fast tests: the policy's arithmetic, a lab's own policy in place of the course's, and every kind
of bad input in the deadlines file, each refused with ``FILE:LINE:`` and nothing written to
nbgrader's gradebook (a scratch course with a real gradebook, no grading); the report's grades
table and the score table with final scores (rows made by hand). Slow tests: a scratch Lab 00
course graded with the real nbgrader under Lab 00's own policy, six submissions with
``timestamp.txt`` files around the due date (on time, late within the cap, capped, past the
cut-off, late but on time with an extension, an untouched release handed in late); nbgrader's
``AssignLatePenalties`` calls the course's plugin, and grades.csv, the score table, report.html,
the LMS export and the feedback pages (the late note, also from ``nbgrader generate_feedback``)
show the raw and the penalised scores.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tools import class_report, grades, late, late_feedback, lms, pipeline
from tools.late import DAY, DeadlinesError, Policy
from tools.layout import ROOT

# nbgrader's gradebook warns harmlessly on every new submission (SQLAlchemy autoflush)
pytestmark = pytest.mark.filterwarnings("ignore:.*not in session")

LAB, OTHER = "lab00_cache_sizing", "lab01_kv_cache"
BERLIN = dt.timezone(dt.timedelta(hours=2))
DUE = dt.datetime(2025, 10, 6, 23, 59, tzinfo=BERLIN)
POLICY = """[policy]
percent_per_day = 10
per = "started day"
max_percent = 50
zero_after_days = 7
"""


def _gradebook(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(pipeline.gradebook_db_url(root))


def _state(root: Path) -> dict:
    """Everything set_deadlines writes: due dates, extensions, stored penalties."""
    from nbgrader.api import SubmittedNotebook

    with _gradebook(root) as gb:
        return {"due": {a.name: a.duedate for a in gb.assignments},
                "ext": {(s.student.id, s.assignment.name): s.extension for a in gb.assignments for s in a.submissions},
                "penalty": {(n.assignment.student.id, n.assignment.assignment.name): n.late_submission_penalty
                            for n in gb.db.query(SubmittedNotebook).all()}}


# --- the policy ---------------------------------------------------------------------------------

def test_policy_per_started_day_capped_with_cut_off():
    p = Policy(percent_per_day=10, per="started day", max_percent=50, zero_after_days=7)
    assert [p.percent(s) for s in (0, 1, DAY, DAY + 1, 1.125 * DAY)] == [0, 10, 10, 20, 20]
    assert p.percent(4.5 * DAY) == 50 and p.percent(7 * DAY) == 50  # capped, up to the cut-off
    assert p.percent(7 * DAY + 1) == 100  # past the cut-off: 0 points
    assert p.describe() == "10% per started day late, at most 50%; 0 points when more than 7 days late"


def test_policy_pro_rata_grace_and_none():
    assert Policy(percent_per_day=10, per="day").percent(1.5 * DAY) == pytest.approx(15)
    graced = Policy(percent_per_day=10, grace_minutes=5)
    assert graced.percent(300) == 0 and graced.percent(301) == 10
    assert Policy().percent(30 * DAY) == 0 and Policy().describe() == "no late penalty"


def test_penalty_never_makes_a_score_negative_and_zero_stays_zero():
    assert late.penalty_points(24, 20) == 4.8 and late.penalty_points(24, 100) == 24
    assert late.penalty_points(0, 50) == 0 and late.penalty_points(-1, 50) == 0
    assert late.penalty_points(10 / 3, 100) == pytest.approx(10 / 3)


def test_times_in_words():
    assert late.duration(DAY + 3 * 3600 + 59) == "1 d 3 h" and late.duration(5 * 3600 + 12 * 60) == "5 h 12 min"
    assert late.duration(40) == "40 s" and late.duration(2 * DAY + 30) == "2 d"
    assert late.show(DUE) == "2025-10-06 23:59 +02:00" and late.show(DUE, dt.UTC) == "2025-10-06 21:59 UTC"
    assert late.parse_when("2025-10-06 23:59 Europe/Berlin", "x") == DUE
    assert late.parse_when("2025-10-06T21:59Z", "x") == DUE
    assert late.parse_when(DUE, "x") == DUE


# --- the file: a scratch course with a real gradebook, no grading -------------------------------

VALID = f"""{POLICY}
[due]
{LAB} = 2025-10-06T23:59:00+02:00
{OTHER} = "2025-10-20 23:59 Europe/Berlin"

[[extension]]
student = "alice"
lab = "{LAB}"
days = 2
reason = "medical"
"""


def _scratch(root: Path) -> Path:
    """Two labs (placeholder notebooks), alice and bob under submitted/, nbgrader_config.py."""
    for lab in (LAB, OTHER):
        (root / "source" / lab).mkdir(parents=True)
        (root / "source" / lab / f"{lab}.ipynb").write_text("{}")
    for student in ("alice", "bob"):
        (root / "submitted" / student / LAB).mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


def _submit(root: Path, student: str, lab: str, when: dt.datetime | None, score: float) -> None:
    """A graded submission in the gradebook as nbgrader's autograde leaves it (one code cell)."""
    from nbgrader.api import MissingEntry

    with _gradebook(root) as gb:
        try:
            gb.find_notebook(lab, lab)
        except MissingEntry:
            gb.add_notebook(lab, lab)
            gb.add_grade_cell("test", lab, lab, max_score=30, cell_type="code")
        gb.update_or_create_student(student)
        gb.add_submission(lab, student, timestamp=when)
        grade = gb.find_grade("test", lab, lab, student)
        grade.auto_score = score
        gb.db.commit()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course whose gradebook holds VALID's deadlines and three graded Lab 00 submissions:
    alice late 1 d 3 h with a 2-day extension, bob late 1 d 3 h, dora (in the gradebook only, no
    folder) without a submission time."""
    root = _scratch(tmp_path_factory.mktemp("deadlines"))
    (root / "deadlines.toml").write_text(VALID)
    late.set_deadlines(root, allow_past=True)
    _submit(root, "alice", LAB, DUE + dt.timedelta(days=1, hours=3), 24)
    _submit(root, "bob", LAB, DUE + dt.timedelta(days=1, hours=3), 24)
    _submit(root, "dora", LAB, None, 12)
    late.set_deadlines(root)  # the due dates are the gradebook's already: no --allow-past needed
    return root


def test_set_deadlines_puts_due_dates_extensions_and_penalties_where_nbgrader_reads_them(course):
    state = _state(course)
    assert state["due"][LAB] == dt.datetime(2025, 10, 6, 21, 59)  # naive UTC, as nbgrader stores it
    assert state["due"][OTHER] == dt.datetime(2025, 10, 20, 21, 59)  # Europe/Berlin is +02:00 then
    assert state["ext"] == {("alice", LAB): dt.timedelta(days=2), ("bob", LAB): None, ("dora", LAB): None}
    # alice is on time with her extension; bob loses 2 started days x 10% of 24; dora has no time
    assert state["penalty"] == {("alice", LAB): None, ("bob", LAB): 4.8, ("dora", LAB): None}
    with _gradebook(course) as gb:
        deadlines = late.load(course)
        alice, bob, dora = (late.lateness(gb.find_submission(LAB, s), deadlines) for s in ("alice", "bob", "dora"))
        assert gb.find_submission(LAB, "bob").total_seconds_late == DAY + 3 * 3600  # nbgrader's own count
    assert alice.note() == "extension to 2025-10-08 23:59 +02:00; on time" and alice.percent == 0
    assert bob.note() == "late 1 d 3 h: -20% (10% per started day late)" and bob.percent == 20
    assert "no submission time" in dora.note() and dora.percent == 0


def test_the_plugin_is_nbgraders_and_applies_the_policy(course):
    from nbgrader.preprocessors import AssignLatePenalties
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config())
    step = late.CourseLatePenalties(config=config)
    assert isinstance(step, AssignLatePenalties) and step.plugin_class is late.CoursePenaltyPlugin
    step.policy = late.load(course).policy
    plugin = step.plugin_class(parent=step)
    assert plugin.late_submission_penalty("bob", 24.0, DAY + 1) == 4.8
    assert plugin.late_submission_penalty("bob", 24.0, 8 * DAY) == 24.0
    assert plugin.late_submission_penalty("bob", 0.0, 8 * DAY) == 0.0


OTHER_DUE = dt.datetime(2025, 10, 20, 23, 59, tzinfo=BERLIN)
#: Lab 01's own policy: 25% per started day (the cap of 50% is the course's), no cut-off.
LAB_POLICY = f"""
[policy.{OTHER}]
percent_per_day = 25
zero_after_days = "never"
"""


def test_a_lab_s_own_policy_overrides_the_course_s(course, capsys):
    """erin and fred hand Lab 01 in late (1 d 3 h, 9 d): Lab 01's own policy, not the course's,
    sets their penalty, in the gradebook (make deadlines) and in nbgrader's plugin; Lab 00 keeps
    the course's."""
    from nbgrader.preprocessors import AssignLatePenalties
    from traitlets.config import Config

    _submit(course, "erin", LAB, DUE + dt.timedelta(days=1, hours=3), 24)
    _submit(course, "erin", OTHER, OTHER_DUE + dt.timedelta(days=1, hours=3), 24)
    _submit(course, "fred", OTHER, OTHER_DUE + dt.timedelta(days=9), 24)
    path = course / "deadlines.toml"
    path.write_text(VALID + LAB_POLICY)
    try:
        deadlines = late.load(course)
        assert deadlines.policy_for(LAB) == deadlines.policy == Policy(10, "started day", 50, 7)
        assert deadlines.policy_for(OTHER) == Policy(25, "started day", 50, None)
        capsys.readouterr()
        assert late.main(["set", "--root", str(course)]) == 0  # make deadlines
        printed = capsys.readouterr().out
        assert ('its own policy (percent_per_day = 25, zero_after_days = "never"): 25% per started day late, '
                "at most 50%\n") in printed, printed
        assert "erin / lab01_kv_cache: late 1 d 3 h: -50% (25% per started day late, capped at 50%)" in printed
        penalty = _state(course)["penalty"]  # the course's policy: 4.8, 4.8 and 24 (past its cut-off)
        assert (penalty[("erin", LAB)], penalty[("erin", OTHER)], penalty[("fred", OTHER)]) == (4.8, 12, 12)
        step = AssignLatePenalties(config=Config({"CourseDirectory": {"root": str(course)}}))
        step.assignment_id = OTHER  # nbgrader's own step, as it grades Lab 01: the plugin reads the file
        assert late.CoursePenaltyPlugin(parent=step).late_submission_penalty("fred", 24.0, 9 * DAY) == 12
        step.assignment_id = LAB
        assert late.CoursePenaltyPlugin(parent=step).late_submission_penalty("fred", 24.0, 9 * DAY) == 24
    finally:
        path.write_text(VALID)
        late.set_deadlines(course)
    assert _state(course)["penalty"][("erin", OTHER)] == 4.8


BAD = {  # name: (deadlines.toml, line of the error, words of its message)
    "not TOML": (f"{POLICY}\n[due\n", 7, "not valid TOML"),
    "no time zone": (f"[due]\n{LAB} = 2025-10-06T23:59:00\n", 2, "has no time zone"),
    "string without zone": (f'[due]\n{LAB} = "2025-10-06 23:59"\n', 2, "has no time zone"),
    "date only": (f"[due]\n{LAB} = 2025-10-06\n", 2, "a date without a time"),
    "wrong format": (f'[due]\n{OTHER} = "2025-11-01T00:00:00+01:00"\n{LAB} = "06/10/2025 23:59"\n', 3,
                     "not a date and time in a format"),
    "unknown zone": (f'[due]\n{LAB} = "2025-10-06 23:59 CEST"\n', 2, "unknown time zone 'CEST'"),
    "skipped hour": (f'[due]\n{LAB} = "2026-03-29 02:30 Europe/Berlin"\n', 2, "does not exist"),
    "unknown lab": (f'[due]\n{LAB} = 2025-10-06T23:59:00+02:00\nlab09_nope = 2025-10-06T23:59:00+02:00\n', 3,
                    "unknown lab 'lab09_nope'"),
    "negative penalty": ("[policy]\npercent_per_day = -5\n", 2, "a penalty is a percentage from 0 to 100"),
    "cap over 100%": ("[policy]\npercent_per_day = 10\nmax_percent = 150\n", 3, "percentage from 0 to 100"),
    "penalty not a number": ("[policy]\npercent_per_day = true\n", 2, "expected a number"),
    "negative cut-off": ("[policy]\nzero_after_days = -1\n", 2, "must be at least 0"),
    "unknown unit": ('[policy]\nper = "week"\n', 2, "expected 'started day' or 'day'"),
    "misspelt key": ("[policy]\npercent_per_dya = 10\n", 2, "unknown key 'percent_per_dya'"),
    "misspelt table": (f"{POLICY}\n[extensions]\nstudent = 'alice'\n", 7, "unknown table or key 'extensions'"),
    "unknown student": (f'{VALID}\n[[extension]]\nstudent = "carol"\nlab = "{LAB}"\ndays = 1\n', 18,
                        "unknown student 'carol'"),
    "extension, unknown lab": (f'{VALID}\n[[extension]]\nstudent = "bob"\nlab = "lab9"\ndays = 1\n', 19,
                               "unknown lab 'lab9'"),
    "extension, lab without due date": (f'[due]\n{LAB} = 2025-10-06T23:59:00+02:00\n[[extension]]\n'
                                        f'student = "bob"\nlab = "{OTHER}"\ndays = 1\n', 5, "has no due date"),
    "extension, days and due": (f'{VALID}\n[[extension]]\nstudent = "bob"\nlab = "{LAB}"\ndays = 1\n'
                                'due = 2025-10-09T23:59:00+02:00\n', 17, "not both"),
    "extension, neither": (f'{VALID}\n[[extension]]\nstudent = "bob"\nlab = "{LAB}"\n', 17, "one of them"),
    "extension, no days": (f'{VALID}\n[[extension]]\nstudent = "bob"\nlab = "{LAB}"\ndays = 0\n', 20,
                           "must be more than 0"),
    "extension, earlier due date": (f'{VALID}\n[[extension]]\nstudent = "bob"\nlab = "{LAB}"\n'
                                    'due = 2025-10-05T23:59:00+02:00\n', 20, "is not after"),
    "extension, twice": (f'{VALID}\n[[extension]]\nstudent = "alice"\nlab = "{LAB}"\ndays = 5\n', 17,
                         "a second extension for alice / lab00_cache_sizing (the first is on line 11)"),
    "lab policy, misspelt key": (f"{VALID}\n[policy.{OTHER}]\nzero_after_dys = 3\n", 18,
                                 "unknown key 'zero_after_dys' in [policy.lab01_kv_cache]"),
    "lab policy, penalty over 100%": (f"{VALID}\n[policy.{OTHER}]\nzero_after_days = 3\nmax_percent = 120\n", 19,
                                      "max_percent = 120: a penalty is a percentage from 0 to 100"),
    "lab policy, cut-off not a number": (f'{VALID}\n[policy.{OTHER}]\nzero_after_days = "soon"\n', 18,
                                         'expected a number of days or "never"'),
    "lab policy, unknown unit": (f'{VALID}\n[policy.{OTHER}]\nper = "hour"\n', 18, "expected 'started day' or 'day'"),
    "lab policy, unknown lab": (f"{VALID}\n[policy.lab09_nope]\nzero_after_days = 3\n", 17,
                                "[policy.lab09_nope]: unknown lab 'lab09_nope'"),
    "lab policy, lab without due date": (f"[due]\n{LAB} = 2025-10-06T23:59:00+02:00\n\n[policy.{OTHER}]\n"
                                         "zero_after_days = 3\n", 4, "its policy would never apply"),
    "lab policy, not a table": (f"{POLICY}{OTHER} = 3\n", 6, "a lab's own policy is a table [policy.lab01_kv_cache]"),
    "lab policy, inline table": (f"[policy]\npercent_per_day = 10\n{OTHER} = {{ max_percent = 500 }}\n[due]\n"
                                 f"{OTHER} = 2025-10-20T23:59:00+02:00\n", 3, "a penalty is a percentage from 0 to 100"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_the_file_and_line_and_writes_nothing(course, case):
    text, line, words = BAD[case]
    path = course / "deadlines.toml"
    before = _state(course)
    path.write_text(text)
    try:
        with pytest.raises(DeadlinesError) as err:
            late.set_deadlines(course, allow_past=True)
        assert str(err.value).startswith(f"{path}:{line}: ") and words in str(err.value), str(err.value)
        assert _state(course) == before
        assert late.main(["check", "--root", str(course)]) == 2
    finally:
        path.write_text(VALID)


def test_a_student_known_only_from_the_gradebook_may_have_an_extension(course):
    path = course / "deadlines.toml"
    path.write_text(f'{VALID}\n[[extension]]\nstudent = "dora"\nlab = "{LAB}"\ndays = 1\n')
    try:
        assert ("dora", LAB) in late.load(course).extensions  # dora has no folder under submitted/
    finally:
        path.write_text(VALID)


def test_a_due_date_in_the_past_is_refused_unless_allowed(tmp_path):
    root = _scratch(tmp_path)
    path = root / "deadlines.toml"
    path.write_text(VALID)
    now = dt.datetime(2025, 10, 10, tzinfo=dt.UTC)  # after Lab 00's due date, before Lab 01's
    with pytest.raises(DeadlinesError) as err:
        late.set_deadlines(root, now=now)
    assert str(err.value).startswith(f"{path}:8: {LAB}: due date 2025-10-06 23:59 +02:00 is in the past")
    assert "--allow-past" in str(err.value)
    assert not (root / "gradebook.db").exists()  # nothing written, not even a new gradebook
    late.set_deadlines(root, allow_past=True, now=now)
    assert _state(root)["due"][LAB] == dt.datetime(2025, 10, 6, 21, 59)
    late.set_deadlines(root, now=now)  # the gradebook holds it already: no flag needed
    path.write_text(VALID.replace("2025-10-06T23:59", "2025-10-05T23:59"))  # moved, still in the past
    with pytest.raises(DeadlinesError, match="is in the past"):
        late.set_deadlines(root, now=now)


def test_no_deadlines_file_means_no_penalty(tmp_path):
    root = _scratch(tmp_path)
    deadlines = late.load(root)
    assert not deadlines.exists and deadlines.policy.percent(30 * DAY) == 0 and not deadlines.due
    with pytest.raises(DeadlinesError, match="no such file: copy deadlines.example.toml"):
        late.set_deadlines(root)
    assert late.check_ready(root).exists is False


def test_an_edited_file_not_yet_set_is_caught_before_grading(course, capsys):
    path = course / "deadlines.toml"
    path.write_text(VALID.replace("2025-10-06T23:59", "2025-10-07T23:59"))
    try:
        with pytest.raises(DeadlinesError) as err:
            late.check_ready(course)
        assert str(err.value) == (f"{path}:8: {LAB}: due 2025-10-07 23:59 +02:00 here, 2025-10-06 23:59 +02:00 "
                                  "in the gradebook: run `make deadlines`")
        assert [w for w in late.out_of_sync(course) if ":8: " in w] == [str(err.value)]
    finally:
        path.write_text(VALID)
    assert late.out_of_sync(course) == []


def test_the_sample_file_is_valid():
    labs = ["lab00_cache_sizing", "lab01_kv_cache", "lab02_roofline"]
    data = (ROOT / late.EXAMPLE_FILE).read_bytes()
    sample = late.parse(ROOT / late.EXAMPLE_FILE, data, labs, {"alice", "bob"})
    assert sample.policy.penalises and set(sample.due) == set(labs) and sample.extensions


def test_the_demo_writes_its_deadlines_and_the_samples_times(tmp_path):
    root = _scratch(tmp_path)
    samples = [root / "submitted" / s / LAB / f"{LAB}.ipynb" for s in ("mistakes", "solution")]
    for path in samples:
        path.parent.mkdir(parents=True)
    (root / "submitted" / "alice" / LAB / "timestamp.txt").write_text("2020-01-01 00:00:00 UTC")  # not a sample
    lines = late.demo(root, samples)
    assert "the demo's sample" in lines[0] and (root / "deadlines.toml").read_text().startswith(late.DEMO_MARK)
    stamps = {s: (root / "submitted" / s / LAB / "timestamp.txt").read_text() for s in ("mistakes", "solution")}
    assert stamps == {"mistakes": "2025-10-08 00:59:00.000000 UTC", "solution": "2025-10-06 19:59:00.000000 UTC"}
    assert (root / "submitted" / "alice" / LAB / "timestamp.txt").read_text() == "2020-01-01 00:00:00 UTC"
    assert _state(root)["due"] == {LAB: dt.datetime(2025, 10, 6, 21, 59), OTHER: dt.datetime(2025, 10, 20, 21, 59)}
    own = VALID.replace("2025-10-06T23:59", "2025-10-13T23:59")  # the course's own file: kept as it is
    (root / "deadlines.toml").write_text(own)
    assert "the course's own file" in late.demo(root, samples)[0] and (root / "deadlines.toml").read_text() == own


def test_the_grades_table_and_the_score_table_show_final_scores():
    """report.html's main table and the score table show the final score, and beside a penalised
    one the raw total with a marker: a link to the late section, a ``~`` and its line."""
    policy = Policy(10, "started day", 50, 7)
    late_by = DAY + 3 * 3600
    rows = [grades.GradeRow("late", LAB, "graded", auto_score=20, auto_max=24, manual_max=6, manual_pending=["q1"],
                            lateness=late.Lateness(DUE, DUE, DUE + dt.timedelta(seconds=late_by), late_by, 20, policy)),
            grades.GradeRow("on-time", LAB, "graded", auto_score=24, auto_max=24, manual_score=6, manual_max=6,
                            lateness=late.Lateness(DUE, DUE, DUE - dt.timedelta(hours=2), 0, 0, policy))]
    html = class_report.grades_html(grades.report_rows(rows)).split("id='hand-grading'")[0]
    assert (f"<tr><td>late</td><td>{LAB}</td><td>20 / 24</td><td>0* / 6</td><td>16* / 30 <a class='late' "
            "href='#late' title='late penalty: 4 points'>(raw 20* / 30, late &minus;20%)</a></td><td>53.3*</td>") in html
    assert f"<tr><td>on-time</td><td>{LAB}</td><td>24 / 24</td><td>6 / 6</td><td>30 / 30</td><td>100.0</td>" in html
    assert "<th>final</th>" in html and "<th>total</th>" not in html
    late_line, _, note, on_time = grades.format_table(rows).splitlines()[2:6]
    assert " 16* / 30~   53.3* " in late_line and " 30 / 30   100.0  " in on_time, (late_line, on_time)
    assert note.strip() == "~ late 1 d 3 h: -20% (10% per started day late): total 20* / 30, final 16* / 30 (53.3%*)"


def test_the_late_note_names_the_extension_and_the_time_zone():
    """A submission late after its extension: the note's lines, times in the zone the file named."""
    lab_due = dt.datetime(2025, 10, 20, 23, 59, tzinfo=ZoneInfo("Europe/Berlin"))
    x = late.Lateness(lab_due, lab_due + dt.timedelta(days=1), lab_due + dt.timedelta(days=1, hours=3), 3 * 3600, 10,
                      Policy(percent_per_day=10))
    row = grades.GradeRow("late", OTHER, "graded", auto_score=24, auto_max=24, manual_score=6, manual_max=6, lateness=x)
    assert dict(late_feedback.note_lines(row)) == {
        "Due": "2025-10-20 23:59 +02:00 (Europe/Berlin)", "Extension": "1 d, to 2025-10-21 23:59 +02:00 (Europe/Berlin)",
        "Submitted": "2025-10-22 02:59 +02:00 (Europe/Berlin)", "Late by": "3 h (after the extension)",
        "Late policy": "10% per started day late", "Penalty": "3 points: -10% (10% per started day late)",
        "Score": "30 / 30 \N{RIGHTWARDS ARROW} 27 / 30"}
    assert "provisional" not in late_feedback.note_html(row)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_deadlines_sets_them():
    dry = subprocess.run(["make", "-n", "deadlines", "DEADLINES_FLAGS=--allow-past"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m tools.late set --allow-past" in dry.stdout


# --- graded with the real nbgrader --------------------------------------------------------------

#: student -> (sample submission, time handed in after the due date)
GRADED = {"on-time": ("solution", dt.timedelta(hours=-2)),
          "late": ("solution", dt.timedelta(days=1, hours=3)),          # 2 started days: -20%
          "capped": ("solution", dt.timedelta(days=5, hours=1)),        # 6 started days: capped at -50%
          "cut-off": ("solution", dt.timedelta(days=8)),                # more than 7 days: 0
          "extended": ("solution", dt.timedelta(days=2, hours=5)),      # on time with 3 more days
          "zero-late": ("untouched", dt.timedelta(days=1))}             # 0 points stay 0
#: The course's policy has no cap and no cut-off; Lab 00's own adds both (POLICY's numbers), so
#: nbgrader's grading applies the lab's policy over the course's.
GRADED_FILE = f"""[policy]
percent_per_day = 10
per = "started day"

[policy.{LAB}]
max_percent = 50
zero_after_days = 7

[due]
{LAB} = 2025-10-06T23:59:00+02:00

[[extension]]
student = "extended"
lab = "{LAB}"
days = 3
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from tools.samples import write_submission

    root = tmp_path_factory.mktemp("late-graded")
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    for student, (variant, after) in GRADED.items():
        folder = write_submission(root, LAB, student, variant).parent
        (folder / "timestamp.txt").write_text((DUE + after).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    (root / "deadlines.toml").write_text(GRADED_FILE)
    late.set_deadlines(root, allow_past=True)
    runs = pipeline.autograde(root, verbose=False, timeout=30)
    assert all(r.success for r in runs), runs
    return root


def _rows(root: Path) -> dict[str, pipeline.GradeRow]:
    return {r.student: r for r in pipeline.collect_grades(root)}


@pytest.mark.slow
def test_nbgrader_applies_the_plugins_penalty_while_grading(graded):
    from nbgrader.api import SubmittedNotebook

    rows = _rows(graded)
    full = rows["on-time"].auto_max
    assert [rows[s].auto_score for s in GRADED] == [full] * 5 + [0]
    with _gradebook(graded) as gb:  # what nbgrader's AssignLatePenalties stored, from the plugin
        stored = {n.assignment.student.id: n.late_submission_penalty for n in gb.db.query(SubmittedNotebook).all()}
        seconds = {s: gb.find_submission(LAB, s).total_seconds_late for s in GRADED}
    penalty = {s: late.penalty_points(full, p) for s, p in (("late", 20), ("capped", 50), ("cut-off", 100))}
    assert stored == {"on-time": None, **penalty, "extended": None, "zero-late": 0.0}
    assert seconds["on-time"] == 0 and seconds["extended"] == 0 and seconds["late"] == DAY + 3 * 3600
    percent = {s: rows[s].lateness.percent for s in GRADED}
    assert percent == {"on-time": 0, "late": 20, "capped": 50, "cut-off": 100, "extended": 0, "zero-late": 10}
    finals = {s: rows[s].final for s in GRADED}
    assert finals == {"on-time": full, "late": full - penalty["late"], "capped": full - penalty["capped"],
                      "cut-off": 0, "extended": full, "zero-late": 0}
    assert all(rows[s].total == rows[s].auto_score for s in GRADED)  # the raw total keeps its meaning


def _note(page: str) -> dict[str, str]:
    """The late note of a feedback page: label -> text (empty: no note)."""
    import html
    import re

    if f'id="{late_feedback.NOTE_ID}"' not in page:
        return {}
    block = page.split(f'id="{late_feedback.NOTE_ID}"')[1].split("</table>")[0]
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<th[^>]*>(.*?)</th><td>(.*?)</td>", block)}


@pytest.mark.slow
def test_grades_csv_the_table_and_the_report_show_raw_and_penalised_scores(graded, capsys):
    capsys.readouterr()
    rows = {r.student: r for r in pipeline.report(graded)}
    printed = capsys.readouterr().out
    with (graded / "grades.csv").open(newline="") as f:
        table = {r["student"]: r for r in csv.DictReader(f)}
    full = rows["on-time"].auto_max
    line = table["late"]
    assert (line["total_points"], line["final_points"], line["late_penalty_percent"], line["late_penalty_points"],
            line["late_by"]) == (f"{full:g}", f"{0.8 * full:g}", "20", f"{0.2 * full:g}", "1 d 3 h")
    assert (line["due"], line["submitted"]) == ("2025-10-06 23:59 +02:00", "2025-10-08 02:59 +02:00")
    assert line["late_note"] == "late 1 d 3 h: -20% (10% per started day late)"
    assert table["capped"]["late_note"] == "late 5 d 1 h: -50% (10% per started day late, capped at 50%)"
    assert table["cut-off"]["final_points"] == "0" and "more than 7 days late scores 0" in table["cut-off"]["late_note"]
    assert table["extended"]["late_note"] == "extension to 2025-10-09 23:59 +02:00; on time"
    assert (table["extended"]["final_points"], table["extended"]["due"]) == (f"{full:g}", "2025-10-09 23:59 +02:00")
    assert (table["zero-late"]["total_points"], table["zero-late"]["final_points"]) == ("0", "0")
    assert (table["on-time"]["late_note"], table["on-time"]["final_points"]) == ("", f"{full:g}")
    total_max = rows["late"].total_max
    assert (f"~ late 1 d 3 h: -20% (10% per started day late): total {full:g}* / {total_max:g}, final "
            f"{0.8 * full:g}* / {total_max:g}") in printed
    assert f" {0.8 * full:g}* / {total_max:g}~ " in next(line for line in printed.splitlines() if line.startswith("late "))
    assert "~ extension to 2025-10-09 23:59 +02:00; on time" in printed
    html = (graded / "report.html").read_text()
    assert "Deadlines and late penalties (4 late)" in html and "capped at 50%" in html
    assert f"<td>{full:g}* / {total_max:g}</td><td>{0.8 * full:g}* / {total_max:g}</td>" in html
    main = html.split("id='grades'")[1].split("id='hand-grading'")[0]  # the main table: final scores
    assert (f"<td>{0.8 * full:g}* / {total_max:g} <a class='late' href='#late' title='late penalty: "
            f"{0.2 * full:g} points'>(raw {full:g}* / {total_max:g}, late &minus;20%)</a></td>") in main
    assert f"<td>on-time</td><td>{LAB}</td><td>{full:g} / {full:g}</td>" in main
    assert f"<td>0* / {total_max:g} <a class='late' href='#late'" in main  # cut-off: 0
    pages = {s: (graded / "feedback" / s / LAB / f"{LAB}.html").read_text() for s in GRADED}  # make report's
    assert _note(pages["late"])["Score"] == f"{full:g}* / {total_max:g} \N{RIGHTWARDS ARROW} {0.8 * full:g}* / {total_max:g}"
    assert _note(pages["cut-off"])["Penalty"] == f"{full:g} points: -100% (more than 7 days late scores 0)"
    assert _note(pages["zero-late"])["Penalty"] == "0 points: -10% (10% per started day late)"
    assert _note(pages["on-time"]) == {} and _note(pages["extended"]) == {}
    assert not [line for line in printed.splitlines() if line.startswith("WARNING") and "deadlines" in line]


@pytest.mark.slow
def test_nbgrader_generate_feedback_shows_a_late_student_the_note(graded):
    """nbgrader's own command (nbgrader_config.py names the step), for two students: the late
    note with the due date, the submission time, how late, the lab's policy, the penalty and the
    score, and nbgrader's header with the final score; nothing new for the submission on time."""
    nbgrader = Path(sys.executable).parent / "nbgrader"
    env = dict(os.environ, PATH=str(nbgrader.parent) + os.pathsep + os.environ.get("PATH", ""))
    paths = {s: graded / "feedback" / s / LAB / f"{LAB}.html" for s in ("late", "on-time")}
    for path in paths.values():
        path.unlink(missing_ok=True)
    done = subprocess.run([str(nbgrader), "generate_feedback", LAB, "--force", "--student=[lo]*"], cwd=graded,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    page, on_time = (path.read_text() for path in paths.values())
    row = _rows(graded)["late"]
    star = "*" if row.manual_pending else ""
    assert row.late_penalty == pytest.approx(0.2 * row.total) and row.late_penalty > 0
    assert _note(page) == {
        "Due": "2025-10-06 23:59 +02:00", "Submitted": "2025-10-08 02:59 +02:00", "Late by": "1 d 3 h",
        "Late policy": "10% per started day late, at most 50%; 0 points when more than 7 days late",
        "Penalty": f"{row.late_penalty:g} points: -20% (10% per started day late)",
        "Score": f"{row.total:g}{star} / {row.total_max:g} \N{RIGHTWARDS ARROW} {row.final:g}{star} / {row.total_max:g}"}
    assert f"(Score: {round(row.final, 2)} / {row.total_max:.1f})" in page  # nbgrader's header: the final score
    assert _note(on_time) == {} and f"(Score: {_rows(graded)['on-time'].total:.1f} / " in on_time


@pytest.mark.slow
def test_the_lms_export_gets_the_penalised_score(graded, tmp_path):
    rows = pipeline.collect_grades(graded)
    ids = tmp_path / "ids.csv"
    ids.write_text("nbgrader_id,lms_id\n" + "".join(f"{s},{s}@example.edu\n" for s in GRADED))
    out = tmp_path / "lms.csv"
    lms.export_generic(rows, ids, out, allow_provisional=True)
    exported = {r["lms_id"].split("@")[0]: r[lms.lab_title(LAB)] for r in csv.DictReader(out.open())}
    assert exported == {r.student: lms._number(r.final) for r in rows}
    assert exported["late"] != lms._number(next(r.total for r in rows if r.student == "late"))


@pytest.mark.slow
def test_an_extension_granted_after_grading_needs_no_regrading(graded):
    path = graded / "deadlines.toml"
    path.write_text(GRADED_FILE + '\n[[extension]]\nstudent = "late"\nlab = "lab00_cache_sizing"\n'
                    'due = "2025-10-08 12:00 Europe/Berlin"\n')
    try:
        result = late.set_deadlines(graded)  # the due date is the gradebook's: no --allow-past
        assert ("late", LAB) in {(s, lab) for s, lab, x in result.assessed if not x.late}
        row = _rows(graded)["late"]
        assert row.final == row.total and row.lateness.note() == "extension to 2025-10-08 12:00 +02:00; on time"
        assert _state(graded)["penalty"][("late", LAB)] is None
    finally:
        path.write_text(GRADED_FILE)
        late.set_deadlines(graded)
    assert _state(graded)["penalty"][("late", LAB)] == late.penalty_points(_rows(graded)["late"].auto_max, 20)


@pytest.mark.slow
def test_hand_graded_points_are_penalised_too(graded):
    with _gradebook(graded) as gb:
        written = [g for g in gb.find_submission_notebook(LAB, LAB, "late").grades if g.cell_type == "markdown"]
        for grade in written:
            grade.manual_score = grade.max_score
        gb.db.commit()
    late.refresh_penalties(graded)  # as `make report` does
    row = _rows(graded)["late"]
    assert row.total == row.total_max and row.final == pytest.approx(0.8 * row.total_max)
    with _gradebook(graded) as gb:  # nbgrader's own score less its stored penalty agrees (nbgrader export)
        nb = gb.find_submission_notebook(LAB, LAB, "late")
        assert nb.score - nb.late_submission_penalty == pytest.approx(row.final)


@pytest.mark.slow
def test_a_due_date_edited_but_not_set_stops_grading_with_its_line(graded):
    """nbgrader's own autograde refuses it (the last test here: that submission is left ungraded)."""
    path = graded / "deadlines.toml"
    path.write_text(GRADED_FILE.replace("2025-10-06T23:59", "2025-10-07T23:59"))
    try:
        [run] = pipeline.autograde(graded, [("on-time", LAB)], verbose=False, timeout=30)
        assert not run.success and "deadlines.toml:10: " in run.error and "run `make deadlines`" in run.error, \
            run.error
    finally:
        path.write_text(GRADED_FILE)
