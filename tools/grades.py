"""Grades and feedback: the one reader of scores from the gradebook, and the one CSV writer.

:func:`collect_grades` reads every submission's autograded and hand-graded points (with the
integrity check's holds and the named mistakes of failed tests); :func:`write_csv` writes
``grades.csv`` (the course's final grades); :func:`format_table` the score table;
:func:`feedback` the students' feedback pages (and a page saying why for a submission that
could not be graded); :func:`report` all of these and the class report.

Why one module of this size: the score of record is read once here and every output of it
(grades.csv, the table, feedback pages, the report) must agree with that one reading.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools import late, layout
from tools.autograde import GradeRun, _short_error, saved_runs, submissions
from tools.class_report import ReportRow, points_text
from tools.course_api import gradebook_db_url, make_api
from tools.holds import changed_since_checked, saved_verdicts
from tools.layout import ROOT, available_labs

_NOT_GRADED_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{lab}: not graded</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>{lab}: your submission could not be graded</h1>
<p><b>Reason:</b> {reason}</p>
<p>{advice}</p>
<p>Nothing you submitted is lost: your notebook is kept as you handed it in. Fix the problem,
check it with <b>Validate</b> in JupyterLab (it runs the notebook the way the grader does), and
submit again, or ask your instructor.</p>
</body></html>
"""


def _advice(reason: str) -> str:
    text = reason.lower()
    if "killed by the sandbox" in text:
        return ("The grader stopped your notebook: all the processes it starts share one memory budget and "
                "one limit on processes and threads. Look for a loop that allocates or forks without end.")
    if "json" in text:
        return "The file is not a valid notebook (its JSON is broken): was it edited outside Jupyter or cut short?"
    if "dead" in text or "died" in text:
        return ("The Python kernel died while running your notebook: a call such as os._exit() or "
                "sys.exit(), a crash in native code, or running out of memory.")
    if "timeout" in text or "timed out" in text:
        return "A cell ran past the time limit and could not be interrupted (does it ignore Ctrl-C?)."
    if "no notebook" in text or "could not find" in text or "matched" in text:
        return "No notebook with the lab's name was found in your submission."
    return "The grader stopped with the error above."


def write_failure_feedback(root: Path, run: GradeRun) -> Path:
    """feedback/<student>/<lab>/<lab>.html explaining why a submission was not graded."""
    import html

    path = layout.feedback_page(run.student, run.lab, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_NOT_GRADED_HTML.format(lab=html.escape(run.lab), reason=html.escape(run.error),
                                            advice=html.escape(_advice(run.error))))
    return path


def feedback(root: Path = ROOT, labs: list[str] | None = None) -> None:
    """Write feedback/<student>/<lab>/<lab>.html (hidden tests cleared) for every graded lab."""
    api = make_api(root)
    for lab in labs or available_labs(root):
        if not any((root / layout.AUTOGRADED).glob(f"*/{lab}")):
            continue
        result = api.generate_feedback(lab, force=True)
        if not result["success"]:
            print(f"warning: generate_feedback {lab} failed: {_short_error(result)}", file=sys.stderr)


_LIKELY = re.compile(r"Likely mistake: ([^\n]+)")


def cell_errors(notebook_path: Path, every: bool = False) -> dict[str, str]:
    """Test-cell grade_id -> the full error ("Name: message") of a failed test cell: the
    verdict's if it failed the test (tools/verdict_step.py; it ran the whole cell, as a notebook
    with the hidden tests would, and its message already reads "Name: message"), else the error
    of the visible part in the student's kernel.

    With ``every``, test cells without an error are included too (mapped to "")."""
    from tools import verdict_step

    out: dict[str, str] = {}
    if not notebook_path.exists():
        return out
    nb = nbformat.read(notebook_path, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        if every:
            out[meta["grade_id"]] = ""
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        kernel = [o for o in errors if o.get("ename") != verdict_step.ENAME]
        verdict = [o for o in errors if o.get("ename") == verdict_step.ENAME]
        if verdict:
            out[meta["grade_id"]] = str(verdict[0].get("evalue"))
        elif kernel:
            out[meta["grade_id"]] = f"{kernel[0].get('ename')}: {kernel[0].get('evalue')}"
    return out


def named_mistakes(notebook_path: Path) -> dict[str, str]:
    """Test-cell grade_id -> the mistake its failure names (or the error's first line)."""
    out = {}
    for grade_id, text in cell_errors(notebook_path).items():
        m = _LIKELY.search(text)
        if text.startswith("NotImplementedError"):
            out[grade_id] = "not answered (NotImplementedError)"
        else:
            out[grade_id] = m.group(1) if m else text.splitlines()[0][:160]
    return out


@dataclass
class GradeRow:
    """One student's result for one lab.

    ``auto_score``: the autograded test cells' points (manual overrides win, the integrity
    check's held points among them). ``manual_score``: the points of the written answers
    (markdown cells with points) graded so far, as nbgrader's ``Grade.score`` counts them: the
    instructor's manual score from the formgrader, else nbgrader's automatic 0 for an answer
    left as released, plus any extra credit given in the formgrader. ``manual_pending``: the
    written answers no one has graded by hand yet; they count nothing, and ``total`` is then
    provisional."""

    student: str
    lab: str
    status: str
    auto_score: float = 0.0
    auto_max: float = 0.0
    manual_max: float = 0.0
    seconds: float = 0.0
    failed_tests: dict[str, str] = field(default_factory=dict)
    integrity: str = ""
    cells: dict[str, float] = field(default_factory=dict)  # test grade_id -> points (manual overrides win)
    manual_score: float = 0.0  # hand-graded points so far (written answers, extra credit)
    manual_pending: list[str] = field(default_factory=list)  # written answers not graded by hand yet
    lateness: late.Lateness | None = None  # against its due date (tools/late.py); None: the lab has none

    @property
    def percent(self) -> float:
        """Autograded points as a percentage of the autograded maximum."""
        return 100.0 * self.auto_score / self.auto_max if self.auto_max else 0.0

    @property
    def total(self) -> float:
        """Autograded plus hand-graded points (provisional while ``manual_pending``)."""
        return self.auto_score + self.manual_score

    @property
    def total_max(self) -> float:
        return self.auto_max + self.manual_max

    @property
    def total_percent(self) -> float:
        return 100.0 * self.total / self.total_max if self.total_max else 0.0

    @property
    def late_penalty(self) -> float:
        """The late penalty in points: the policy's percentage of ``total`` (0 when on time)."""
        return late.penalty_points(self.total, self.lateness.percent) if self.lateness else 0.0

    @property
    def final(self) -> float:
        """The score of record: ``total`` less the late penalty, never below 0 (the LMS gets this)."""
        return max(0.0, self.total - self.late_penalty)

    @property
    def final_percent(self) -> float:
        return 100.0 * self.final / self.total_max if self.total_max else 0.0

    @property
    def total_is(self) -> str:
        """"final", "not graded", or "provisional: <why>"."""
        if self.status.startswith("not graded"):
            return "not graded"
        why = []
        if self.manual_pending:
            why.append(_answers(len(self.manual_pending)) + " not graded by hand yet (counted as 0)")
        if "HELD for review" in self.integrity:
            why.append("points held for review by the integrity check")
        return "provisional: " + "; ".join(why) if why else "final"


def _answers(n: int) -> str:
    return f"{n} answer" + ("" if n == 1 else "s")


def _hand_grading_status(pending: list[str]) -> str:
    """The status note of a submission whose written answers are not all graded by hand."""
    return f"needs hand grading: {_answers(len(pending))}" if pending else ""


def score_of_record(d: dict) -> float | None:
    """The points of one of nbgrader's Grade rows (``Grade.to_dict()``): a manual score (the
    formgrader's, or an integrity hold's 0) replaces the automatic one; None if it has neither."""
    return d["manual_score"] if d["manual_score"] is not None else d["auto_score"]


def test_scores(nb) -> dict[str, tuple[float, float]]:  # nb: nbgrader.api.SubmissionNotebook
    """Each autograded test cell of a graded notebook: grade_id -> (points of record, max points).

    The one way the course reads test scores from the gradebook: the grades, the class-scale
    tools, their calibration and the mutation matrix all count what the gradebook holds."""
    out = {}
    for grade in nb.grades:
        d = grade.to_dict()
        if d["cell_type"] == "code":
            out[d["name"]] = (float(score_of_record(d) or 0.0), float(d["max_score"] or 0.0))
    return out


def _add_grade(row: GradeRow, d: dict) -> None:
    """Add one of nbgrader's Grade rows (``Grade.to_dict()``) to ``row``.

    Code cells are the autograded tests (a manual score, such as an integrity hold, replaces the
    automatic one). Every other graded cell is a written answer graded by hand: it counts the
    manual score if there is one, else nbgrader's automatic score (0 for an answer left as
    released), and nothing, pending, if it has neither (nbgrader's ``Grade.score`` gives 0 there
    too; here it is listed, so that a total never looks final before the answers are graded).
    Extra credit given in the formgrader counts as hand-graded points."""
    max_score = float(d["max_score"] or 0.0)
    extra = float(d.get("extra_credit") or 0.0)
    if d["cell_type"] == "code":
        row.auto_max += max_score
        score = score_of_record(d)
        row.auto_score += score or 0.0
        row.cells[d["name"]] = float(score or 0.0)
        row.manual_score += extra
        return
    row.manual_max += max_score
    score = score_of_record(d)
    if score is None:
        row.manual_pending.append(d["name"])
    else:
        row.manual_score += float(score)
    row.manual_score += extra


def add_grades(row: GradeRow, nb) -> None:  # nb: nbgrader.api.SubmittedNotebook
    """Every grade of a graded notebook into ``row`` (:func:`_add_grade`): its autograded and
    hand-graded points, and the written answers still to grade by hand (sorted)."""
    for grade in nb.grades:
        _add_grade(row, grade.to_dict())
    row.manual_pending.sort()


def collect_grades(root: Path = ROOT, runs: list[GradeRun] | None = None,
                   verdicts: dict | None = None) -> list[GradeRow]:
    """Scores per (student, lab) from the gradebook, with the named mistakes of failed tests.

    Autograded scores include manual overrides (the integrity check's withheld points among
    them); the written answers' points are those graded by hand in the formgrader so far
    (``GradeRow.manual_score``, ``manual_pending``: see GradeRow).
    ``runs``, ``verdicts``: those of this session's autograde and integrity check; None reads
    the latest ones saved in the course folder (autograde_runs.json, integrity_verdicts.json)."""
    from nbgrader.api import Gradebook, MissingEntry

    timing = {(r.student, r.lab): r for r in (saved_runs(root) if runs is None else runs)}
    if verdicts is None:  # those of the latest integrity check, as saved by check_integrity
        notes = saved_verdicts(root)
    else:
        notes = {key: (v.held, v.summary()) for key, v in verdicts.items() if v.findings or v.disagreements}
    changed = changed_since_checked(root)
    deadlines = late.load(root)
    rows = []
    with Gradebook(gradebook_db_url(root)) as gb:
        for student, lab in submissions(root):
            run = timing.get((student, lab))
            row = GradeRow(student, lab, "graded", seconds=run.seconds if run else 0.0)
            try:
                nb = gb.find_submission_notebook(lab, lab, student)
            except MissingEntry:
                nb = None
            if run is not None and not run.success:
                row.status = f"not graded: {run.error}"
            elif nb is None:
                row.status = "not graded"
            if nb is not None and (run is None or run.success):
                present = set(cell_errors(layout.autograded_notebook(student, lab, root), every=True))
                missing = [g.name for g in nb.grades if g.cell_type == "code" and g.name not in present]
                if missing:
                    row.status = f"graded; {len(missing)} test cells missing from the notebook: needs manual grading"
                add_grades(row, nb)
                if row.manual_pending:
                    row.status += "; " + _hand_grading_status(row.manual_pending)
                row.failed_tests = named_mistakes(layout.autograded_notebook(student, lab, root))
                row.lateness = late.lateness(nb.assignment, deadlines)
                if (student, lab) in notes:
                    held, summary = notes[(student, lab)]
                    row.integrity = ("HELD for review: " if held else "note: ") + summary
                if (student, lab) in changed:
                    row.integrity = "CHANGED since graded: " + changed[(student, lab)] + \
                        " (regrade with `make autograde`)" + ("; " + row.integrity if row.integrity else "")
            else:
                # still report the points the lab is worth (none of them earned)
                try:
                    assignment = gb.find_assignment(lab)
                    for notebook in assignment.notebooks:
                        for cell in notebook.grade_cells:
                            if cell.cell_type == "code":
                                row.auto_max += cell.max_score
                            else:
                                row.manual_max += cell.max_score
                except MissingEntry:
                    pass
            rows.append(row)
    return rows


#: The course's grades file (the final grades), written by ``report``. nbgrader's own
#: ``nbgrader export`` writes NBGRADER_EXPORT instead (``c.ExportPlugin.to`` in nbgrader_config.py).
GRADES_CSV = "grades.csv"
NBGRADER_EXPORT = "nbgrader_export.csv"

CSV_COLUMNS = ["student", "lab", "status", "autograded_points", "autograded_max", "autograded_percent",
               "hand_graded_points", "hand_graded_max", "answers_not_hand_graded", "total_points", "total_max",
               "total_percent", "total_is", "grading_seconds", "failed_tests", "integrity",
               "due", "submitted", "late_by", "late_penalty_percent", "late_penalty_points", "final_points",
               "final_percent", "late_note"]


def write_csv(rows: list[GradeRow], path: Path) -> None:
    """grades.csv: one row per student and lab (columns: CSV_COLUMNS).

    autograded_*: the test cells (integrity holds included); hand_graded_*: the written answers
    graded by hand in the formgrader so far (and extra credit); answers_not_hand_graded: the
    written answers still to grade ("; "-separated cell names); total_*: both together;
    total_is: "final", "not graded" or "provisional: <why>" (answers not graded by hand yet,
    points held for review); due: the student's due date (extension included), submitted: the
    submission's time, late_by, late_penalty_*: as nbgrader measured the lateness and the
    deadlines file's policy penalises it (tools/late.py); final_*: the grade, total less the
    late penalty (= total when not late); late_note: why."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            mistakes = "; ".join(f"{k}: {v}" for k, v in sorted(r.failed_tests.items()))
            writer.writerow([r.student, r.lab, r.status, f"{r.auto_score:g}", f"{r.auto_max:g}",
                             f"{r.percent:.1f}", f"{r.manual_score:g}", f"{r.manual_max:g}",
                             "; ".join(r.manual_pending), f"{r.total:g}", f"{r.total_max:g}",
                             f"{r.total_percent:.1f}", r.total_is, f"{r.seconds:.2f}", mistakes, r.integrity,
                             *_late_cells(r)])


def _late_cells(r: GradeRow) -> list[str]:
    """grades.csv's due, submitted, late_by, late_penalty_percent, late_penalty_points, final_points,
    final_percent and late_note of one row."""
    x = r.lateness
    due = [late.show(x.due), late.show(x.submitted) if x.submitted else "",
           late.duration(x.seconds_late) if x.late else "", f"{x.percent:g}"] if x else ["", "", "", "0"]
    return [*due, f"{r.late_penalty:g}", f"{r.final:g}", f"{r.final_percent:.1f}", x.note() if x else ""]


def format_table(rows: list[GradeRow]) -> str:
    """The score table printed at the end of the demo: autograded, hand-graded and final points
    (their total less any late penalty).

    A star marks a provisional number: written answers not graded by hand yet count 0 so far. A
    ``~`` after a final score marks a late penalty: the row's ``~`` line gives the raw total."""
    w = max([len("student")] + [len(r.student) for r in rows])
    lines = [f"{'student':<{w}} {'lab':<20} {'autograded':>12} {'auto %':>6} {'by hand':>9} {'final':>12} "
             f"{'final %':>7} {'time':>7}  status",
             "-" * (w + 91)]
    indent = " " * (w + 4)
    for r in rows:
        pending = bool(r.manual_pending)
        star = "*" if pending else ""
        final = f"{points_text(r.final, r.total_max, pending):>11}" + ("~" if r.late_penalty else " ")
        lines.append(f"{r.student:<{w}} {r.lab:<20} {r.auto_score:>5g} / {r.auto_max:<4g} {r.percent:>6.1f} "
                     f"{points_text(r.manual_score, r.manual_max, pending):>9} "
                     f"{final:>12} {r.final_percent:>6.1f}{star or ' '} {r.seconds:>6.1f}s  {r.status}")
        if r.integrity:
            lines.append(f"{indent}! {r.integrity}")
        if pending:
            lines.append(f"{indent}? not graded by hand yet: {', '.join(r.manual_pending)}")
        if r.lateness and r.lateness.note():
            raw = (f"total {points_text(r.total, r.total_max, pending)}, final "
                   f"{points_text(r.final, r.total_max, pending)} ({r.final_percent:.1f}%{star})")
            lines.append(f"{indent}~ {r.lateness.note()}" + (f": {raw}" if r.late_penalty else ""))
        for test, mistake in sorted(r.failed_tests.items()):
            lines.append(f"{indent}- {test}: {mistake}")
    todo = [r for r in rows if r.manual_pending]
    if todo:
        lines.append("")
        lines.append(f"needs hand grading ({len(todo)} submissions, "
                     f"{sum(len(r.manual_pending) for r in todo)} answers; totals marked * are provisional): "
                     + ", ".join(f"{r.student}/{r.lab}" for r in todo))
    return "\n".join(lines)


def report_rows(rows: list[GradeRow]) -> list[ReportRow]:
    """The rows as the class report shows them: points, hand grading, late penalty."""
    return [ReportRow(r.student, r.lab, r.status.startswith("graded"), r.status, r.auto_score, r.auto_max,
                      dict(r.cells), dict(r.failed_tests), r.integrity, manual_score=r.manual_score,
                      manual_max=r.manual_max, manual_pending=list(r.manual_pending), total_is=r.total_is,
                      late_penalty=r.late_penalty, late_percent=r.lateness.percent if r.lateness else 0.0)
            for r in rows]


def write_class_report(root: Path, rows: list[GradeRow]) -> Path:
    """report.html (tools/class_report.py): distributions, grades with the hand-graded points and
    the final scores (late penalties applied), answers still to grade by hand, common mistakes,
    holds, broken work, then the deadlines and late penalties."""
    from tools.class_report import write_html
    from tools.similarity import report_section

    return write_html(root / "report.html", root, report_rows(rows), report_section(root)  # + pairs to read
                      + late.report_html(rows))  # + deadlines and late penalties


def report(root: Path = ROOT, runs: list[GradeRun] | None = None,
           verdicts: dict | None = None) -> list[GradeRow]:
    """Feedback HTML, grades.csv (the final grades), the class report (report.html) and the score table.

    Hand-graded points are read from the gradebook as the formgrader left them: grade the
    written answers there first, then run this again.
    ``runs``/``verdicts``: None reads the latest ones saved in the course folder."""
    runs = saved_runs(root) if runs is None else runs
    late.refresh_penalties(root)  # nbgrader's own copy, for the formgrader and `nbgrader export`
    feedback(root)
    for run in runs:
        if not run.success:
            write_failure_feedback(root, run)
    rows = collect_grades(root, runs, verdicts)
    write_csv(rows, root / GRADES_CSV)
    write_class_report(root, rows)
    print(format_table(rows))
    print("\n'by hand' = points of the written answers graded by hand in the formgrader so far; "
          "'final' = autograded + by hand, less any late penalty (~: penalised; its ~ line gives the raw "
          "total).\n* provisional: written answers not graded by hand yet count 0 "
          "(grade them in the formgrader, then `make report` again).")
    changed = changed_since_checked(root)
    if changed:
        print(f"WARNING: {len(changed)} graded notebook(s) changed after the integrity check judged them "
              f"(marked CHANGED above; their recorded SHA-256 no longer matches): "
              + ", ".join(f"{s}/{lab}" for s, lab in sorted(changed)))
    for problem in late.out_of_sync(root):
        print(f"WARNING: {problem}")
    if "WARNING" in sandbox_status():
        print(sandbox_status())
    print(f"grades (final_points: the total less any late penalty; final when no total is provisional): "
          f"{(root / GRADES_CSV).relative_to(root)}; "
          "class report: report.html; feedback: feedback/<student>/<lab>/<lab>.html")
    return rows


def sandbox_status() -> str:
    """The sandbox's status line (tools/sandbox.py): on, off by choice, or unavailable."""
    from tools import sandbox as sandbox_tool

    return sandbox_tool.status_line()
