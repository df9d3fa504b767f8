"""The late note on a student's feedback page: when a submission was late, what it cost.

:class:`LateNote` is a step of nbgrader's ``generate_feedback``: named in
``c.GenerateFeedback.preprocessors`` (``nbgrader_config.py``, after nbgrader's ``GetGrades``), so
``nbgrader generate_feedback`` and the formgrader's feedback button run it, and added by
:func:`tools.feedback.feedback_preprocessors` for ``make report`` whatever the configuration
says. For a submission nbgrader counts late (``total_seconds_late`` > 0: after the due date plus
the student's extension) it puts a note at the top of the page: the due date with its time zone,
the extension if any, the time submitted, how late, the lab's policy, the penalty in points and
the score before and after it. The page of a submission on time is as nbgrader makes it.

The numbers are grades.csv's: the notebook's points read as :mod:`tools.grades` reads them
(:func:`tools.grades.add_grades`), the lateness and the lab's policy of :mod:`tools.late`. The
page's own header (nbgrader's ``GetGrades``: the score less the penalty stored at grading) is set
to the same final score, so a page never shows two.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from tools import late
from tools.class_report import points_text
from tools.grades import GradeRow, add_grades

#: The id of the note's element on the feedback page.
NOTE_ID = "late-submission"


class LateNote(Preprocessor):
    """Feedback step: the late note (:func:`note_html`) as the page's first cell, for a late
    submission only; the page's header score becomes the final score."""

    #: nbconvert runs a Preprocessor only when enabled (its default is False)
    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        import nbformat

        info = resources.get("nbgrader", {})
        row = graded_row(info, late.course_root(resources, self.config))
        if row is None or row.lateness is None or not row.lateness.late:
            return nb, resources
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note_html(row)))
        info["score"], info["late_penalty"] = row.final, row.late_penalty  # nbgrader's header and contents
        return nb, resources


def graded_row(info: dict, root: Path) -> GradeRow | None:
    """The notebook nbgrader is turning into feedback (``resources["nbgrader"]``: its notebook,
    assignment, student and gradebook) as a :class:`~tools.grades.GradeRow` with its lateness;
    None if the gradebook does not hold it."""
    from nbgrader.api import Gradebook, MissingEntry

    deadlines = late.load(root, db_url=info["db_url"])
    with Gradebook(info["db_url"]) as gb:
        try:
            nb = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
        except MissingEntry:
            return None
        row = GradeRow(info["student"], info["assignment"], "graded")
        add_grades(row, nb)
        row.lateness = late.lateness(nb.assignment, deadlines)
    return row


def when(time: dt.datetime) -> str:
    """``2025-10-06 23:59 +02:00``, with the zone's name when the deadlines file gave one
    (``2025-10-20 23:59 +02:00 (Europe/Berlin)``)."""
    name = f" ({time.tzinfo.key})" if isinstance(time.tzinfo, ZoneInfo) else ""
    return late.show(time) + name


def note_lines(row: GradeRow) -> list[tuple[str, str]]:
    """The note's (label, text) lines for a late ``row``; none for a row that was not late."""
    x = row.lateness
    if x is None or not x.late:
        return []
    pending = bool(row.manual_pending)
    lines = [("Due", when(x.lab_due))]
    if x.extended:
        lines.append(("Extension", f"{late.duration((x.due - x.lab_due).total_seconds())}, to {when(x.due)}"))
    lines += [("Submitted", when(x.submitted) if x.submitted else "unknown"),
              ("Late by", late.duration(x.seconds_late) + (" (after the extension)" if x.extended else "")),
              ("Late policy", x.policy.describe()),
              ("Penalty", f"{row.late_penalty:g} points: {x.why()}"),
              ("Score", f"{points_text(row.total, row.total_max, pending)} \N{RIGHTWARDS ARROW} "
                        f"{points_text(row.final, row.total_max, pending)}")]
    return lines


def note_html(row: GradeRow) -> str:
    """The note as one HTML block (a markdown cell's source; nbgrader's page styles it)."""
    e = html.escape
    cells = "".join(f'<tr><th style="padding-right:1em">{e(label)}</th><td>{e(text)}</td></tr>'
                    for label, text in note_lines(row))
    star = ("<p>* provisional: written answers not graded by hand yet count 0.</p>"
            if row.manual_pending else "")
    return (f'<div id="{NOTE_ID}" class="alert alert-warning"><p><b>Late submission.</b> Your score is the '
            f"total less the late penalty.</p><table>{cells}</table>{star}</div>")
