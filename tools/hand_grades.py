"""Hand grades that survive re-grading while the answer they graded is unchanged.

nbgrader's ``SaveAutoGrades`` marks every cell that has a manual score as "needs manual grading"
again whenever a submission is autograded, even when nothing changed: a re-run of
``make autograde``, ``nbgrader autograde --force`` or the formgrader's Autograde button would
send the instructor back to every written answer already graded. Two autograde steps around
``SaveAutoGrades`` (named in ``nbgrader_config.py``, so every grading path runs them) decide
instead, cell by cell:

* :class:`ReadHandGrades` (just before ``SaveAutoGrades``) reads each grade of the submission
  from the gradebook as it stands, with the fingerprint of the answer it was last graded on,
  and compares that with the answer being graded now (:func:`answer_fingerprint`).
* :class:`KeepHandGrades` (just after it) applies the decision and records the fingerprints of
  the answers just graded, in one transaction:

  - **unchanged** answer, hand grade confirmed (a manual score or extra credit, "needs manual
    grading" cleared, as the formgrader leaves it): the hand grade stands, the cell stays graded;
  - **changed** answer (the student resubmitted other text or code, or deleted the cell): the
    hand grade no longer applies. Its manual score and extra credit are dropped (the autograde
    log names the cell and the points it had), and the cell is graded as a fresh one: a written
    answer needs grading by hand again, so the course's totals say provisional until it is
    graded (an answer set back to the released text scores nbgrader's automatic 0); a test cell
    counts the autograder's new score;
  - a hand grade whose answer was never fingerprinted (graded before these steps were
    configured), or one still marked "needs manual grading": nbgrader's own rule, needs
    manual grading, the score kept, until the instructor confirms it in the formgrader.

**The answer** of a written answer (a cell that is both an answer and graded) is its own text;
that of a test or task cell is its own source and every answer cell of the notebook (the code
it tests). Whitespace at line ends and around the text does not count.

**Where the fingerprints live**: in the gradebook itself, in the course's table
``course_hand_graded_answer`` (nbgrader's grade id -> SHA-256 of the answer), beside nbgrader's
tables in the same database (SQLite or PostgreSQL). nbgrader's own tables have no field for it
(a comment would be shown to the student), ``autograded/`` is deleted by a forced re-grade, and
the submitted notebook is the student's. In the gradebook the fingerprint survives both,
travels with the grades it describes, and is written in the same transaction as the grade
decision; parallel workers grade disjoint students, so they write disjoint rows. nbgrader and
its migrations ignore a table they do not know; a submission deleted from the gradebook leaves
rows that no grade id refers to any more, which nothing reads.

A submission whose notebook cannot be graded (broken JSON, a dead kernel) never reaches these
steps: its grades and fingerprints stay as they were until it is graded again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from nbformat import NotebookNode
from nbgrader.api import Grade, Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

#: The course's table in nbgrader's gradebook database: grade id -> fingerprint of the answer.
TABLE = "course_hand_graded_answer"
_METADATA = sa.MetaData()
_ANSWERS = sa.Table(TABLE, _METADATA,
                    sa.Column("grade_id", sa.String(32), primary_key=True),  # nbgrader's Grade.id
                    sa.Column("fingerprint", sa.String(64), nullable=False))

#: Where ReadHandGrades leaves its decisions for KeepHandGrades (nbconvert's resources).
RESOURCE_KEY = "course_hand_grades"

#: Fingerprint of a graded cell missing from the submitted notebook.
MISSING = "missing"

KEEP, DROP, NBGRADER = "keep", "drop", "nbgrader"


@dataclass(frozen=True)
class Decision:
    """What happens to one grade of the submission: ``action`` (KEEP the hand grade, DROP it,
    or leave it to nbgrader's rule) and the fingerprint of the answer graded now."""

    action: str
    fingerprint: str
    points: float | None = None  # the dropped manual score, for the log
    extra_credit: float | None = None


def _meta(cell: NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def _text(cell: NotebookNode) -> str:
    """The cell's source with whitespace at line ends and around the text left out."""
    return "\n".join(line.rstrip() for line in cell.source.strip().splitlines())


def _is_answer(cell: NotebookNode) -> bool:
    return bool(_meta(cell).get("solution"))


def answer_fingerprint(nb: NotebookNode, grade_id: str) -> str:
    """SHA-256 (hex) of the answer that the graded cell ``grade_id`` grades in ``nb``: a written
    answer's own text; for a test or task cell, its own source and every answer cell of the
    notebook. MISSING if no cell of ``nb`` has that grade id."""
    return answer_fingerprints(nb, [grade_id])[grade_id]


def answer_fingerprints(nb: NotebookNode, grade_ids: list[str]) -> dict[str, str]:
    """:func:`answer_fingerprint` of each grade id, the notebook read once."""
    cells: dict[str, NotebookNode] = {}
    answers: list[tuple[str, str, str]] = []
    for cell in nb.cells:
        meta = _meta(cell)
        grade_id = meta.get("grade_id")
        if grade_id is not None:
            cells.setdefault(grade_id, cell)
        if meta.get("solution"):
            answers.append((meta.get("grade_id", ""), cell.cell_type, _text(cell)))
    out = {}
    for grade_id in grade_ids:
        cell = cells.get(grade_id)
        if cell is None:
            out[grade_id] = MISSING
            continue
        parts = [(grade_id, cell.cell_type, _text(cell))]
        if not _is_answer(cell):
            parts += answers
        digest = hashlib.sha256()
        for part in parts:
            digest.update("\0".join(part).encode() + b"\1")
        out[grade_id] = digest.hexdigest()
    return out


#: Gradebooks known to have the fingerprint table (checked once per gradebook and process).
_TABLE_SEEN: set[str] = set()


def _ensure_table(gb: Gradebook) -> None:
    """Create the fingerprint table in the gradebook unless it exists (two workers may try at
    once: the loser's error is harmless once the table is there)."""
    if str(gb.engine.url) in _TABLE_SEEN:
        return
    try:
        _ANSWERS.create(gb.db.connection(), checkfirst=True)
        gb.db.commit()
    except sa.exc.SQLAlchemyError:
        gb.db.rollback()
        if not sa.inspect(gb.engine).has_table(TABLE):
            raise
    _TABLE_SEEN.add(str(gb.engine.url))


def stored_fingerprints(gb: Gradebook, grade_ids: list[str]) -> dict[str, str]:
    """Grade id -> the fingerprint recorded when that grade's answer was last autograded."""
    if not grade_ids:
        return {}
    rows = gb.db.execute(sa.select(_ANSWERS.c.grade_id, _ANSWERS.c.fingerprint)
                         .where(_ANSWERS.c.grade_id.in_(grade_ids)))
    return {grade_id: fingerprint for grade_id, fingerprint in rows}


def _record_fingerprints(gb: Gradebook, fingerprints: dict[str, str]) -> None:
    """Replace the recorded fingerprints of these grade ids (committed with the grades)."""
    if not fingerprints:
        return
    gb.db.execute(sa.delete(_ANSWERS).where(_ANSWERS.c.grade_id.in_(list(fingerprints))))
    gb.db.execute(sa.insert(_ANSWERS), [{"grade_id": g, "fingerprint": f} for g, f in fingerprints.items()])


def decide(grade: Any, stored: str | None, now: str) -> Decision:
    """The decision for one of nbgrader's Grade rows, read before ``SaveAutoGrades``: ``stored``
    is the fingerprint of the answer it was last autograded on (None if never recorded),
    ``now`` that of the answer graded now."""
    hand_graded = grade.manual_score is not None or bool(grade.extra_credit)
    if not hand_graded or stored is None:
        return Decision(NBGRADER, now)
    if stored != now:
        return Decision(DROP, now, grade.manual_score, grade.extra_credit)
    return Decision(NBGRADER if grade.needs_manual_grade else KEEP, now)


def _grades(gb: Gradebook, info: dict) -> list[Any]:  # nbgrader.api.Grade
    """The submission's grades, with their cells (for the grade ids) loaded in one query."""
    try:
        submitted = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
    except MissingEntry:
        return []
    return (gb.db.query(Grade).options(sa.orm.selectinload(Grade.cell))
            .filter(Grade.notebook_id == submitted.id).all())


class ReadHandGrades(NbGraderPreprocessor):
    """Autograde step just before nbgrader's ``SaveAutoGrades``: for each grade of the submission,
    whether its hand grade stands (see the module's docstring). Writes nothing."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources["nbgrader"]
        decisions: dict[str, Decision] = {}
        with Gradebook(info["db_url"]) as gb:
            _ensure_table(gb)
            grades = _grades(gb, info)
            stored = stored_fingerprints(gb, [g.id for g in grades])
            now = answer_fingerprints(nb, [g.name for g in grades])
            for grade in grades:
                decisions[grade.name] = decide(grade, stored.get(grade.id), now[grade.name])
        resources[RESOURCE_KEY] = decisions
        return nb, resources


class KeepHandGrades(NbGraderPreprocessor):
    """Autograde step just after nbgrader's ``SaveAutoGrades``: keeps the hand grades of
    unchanged answers graded, drops those of changed answers, and records the fingerprint of
    every answer graded now (see the module's docstring)."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        if RESOURCE_KEY not in resources:
            raise RuntimeError("tools.hand_grades.KeepHandGrades needs tools.hand_grades.ReadHandGrades "
                               "before nbgrader's SaveAutoGrades in c.Autograde.autograde_preprocessors")
        decisions: dict[str, Decision] = resources.pop(RESOURCE_KEY)
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            grades = _grades(gb, info)
            for grade in grades:
                if grade.name in decisions:
                    self._apply(grade, decisions[grade.name], info)
            _record_fingerprints(gb, {g.id: decisions[g.name].fingerprint for g in grades if g.name in decisions})
            gb.db.commit()
        return nb, resources

    def _apply(self, grade: Any, decision: Decision, info: dict) -> None:
        """Apply one decision to one of nbgrader's Grade rows (after SaveAutoGrades wrote it)."""
        where = f"{info['assignment']} / {info['student']}: {grade.name}"
        if decision.action == KEEP:
            grade.needs_manual_grade = False
            self.log.info("%s: graded by hand, answer unchanged: the hand grade stands", where)
        elif decision.action == DROP:
            grade.manual_score = None
            grade.extra_credit = None
            grade.needs_manual_grade = grade.auto_score is None  # nbgrader's rule for a fresh cell
            self.log.warning("%s: the answer changed since it was scored by hand; its manual score (%s) "
                             "and extra credit (%s) no longer count%s", where, decision.points,
                             decision.extra_credit, ": grade it again" if grade.needs_manual_grade else "")
