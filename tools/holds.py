"""The integrity check's holds: points withheld for the instructor's review, and why.

After autograde, the recorded verdict (``tools/verdict_step.py``) and the static scan of the
submission (``tools/integrity.py``) decide, per test, whether the kernel's result stands. A
test the verdict failed where the kernel passed, a verdict that could not be computed, or
tampering found by the scan holds points: a manual score of 0 in the gradebook, the submission
flagged in the formgrader with the reason in a comment. The findings are saved in
``integrity_verdicts.json`` with the SHA-256 of what was judged, so ``make report`` can say when
a graded notebook changed after the check.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat

from tools import layout
from tools.autograde import GradeRun
from tools.course_api import gradebook_db_url
from tools.layout import ROOT


def integrity_hook(assignment: str, student: str, notebooks: list[str]) -> None:
    """``Autograde.post_convert_hook`` of nbgrader_config.py: the integrity check of one
    submission right after ``nbgrader autograde`` (command line or formgrader) graded it, as
    ``make autograde`` does for a batch. nbgrader ignores a failing hook, so any error here holds
    every autograded point of the submission instead (manual score 0, with the reason)."""
    if not notebooks:
        return
    # nbgrader passes its patterns here ("*" for every student): the notebook path says who
    notebook = Path(notebooks[0]).resolve()  # <root>/submitted/<student>/<lab>/<lab>.ipynb
    root, student, assignment = notebook.parents[3], notebook.parent.parent.name, notebook.parent.name
    run = GradeRun(student, assignment, True, 0.0)
    try:
        check_integrity(root, [run], verbose=True)
    except Exception as exc:  # noqa: BLE001 - fail closed
        reason = f"the integrity check failed ({type(exc).__name__}: {str(exc)[:200]})"
        print(f"  integrity {assignment} / {student}: HELD: {reason}", flush=True)
        _hold_all(root, student, assignment, reason)


def _hold_all(root: Path, student: str, lab: str, reason: str) -> None:
    """Hold every autograded point of one submission (manual score 0) and record why, also in
    the formgrader (flagged, with the reason in a comment)."""
    from nbgrader.api import Gradebook

    from tools import integrity

    ledger_path = root / "integrity_holds.json"
    ledger = set(map(tuple, json.loads(ledger_path.read_text()))) if ledger_path.exists() else set()
    with Gradebook(gradebook_db_url(root)) as gb:
        nb = gb.find_submission_notebook(lab, lab, student)
        tests = []
        for grade in nb.grades:
            if grade.cell_type == "code":
                grade.manual_score = 0.0
                ledger.add((student, lab, grade.name))
                tests.append(grade.name)
        _flag_held(nb, reason, _first_solution_cell(root, lab))
        gb.db.commit()
    ledger_path.write_text(json.dumps(sorted(ledger), indent=0))
    verdict = integrity.Verdict([], sorted(tests), reason)
    _save_verdicts(root, [GradeRun(student, lab, True, 0.0)], {(student, lab): verdict})


#: Starts the line the integrity check writes into a formgrader comment of a held submission;
#: only lines that start with it are ever replaced or removed (the instructor's text is kept).
HOLD_COMMENT_MARK = "[integrity check]"


def _first_solution_cell(root: Path, lab: str, source=None) -> str | None:
    """grade_id of the first answer cell of the lab's source notebook: the formgrader shows its
    comment box at the top of the submission."""
    try:
        source = source or nbformat.read(layout.source_notebook(lab, Path(root)), as_version=4)
    except (OSError, nbformat.reader.NotJSONError):
        return None
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") or meta.get("task"):
            return meta.get("grade_id")
    return None


def _hold_comment(nb, cell: str | None):  # -> nbgrader.api.Comment | None
    """The comment of the submitted notebook ``nb`` that carries the hold's reason: that of
    ``cell`` if it has one, else the first by name (None if the lab has no answer cells)."""
    comments = sorted(nb.comments, key=lambda c: c.name)
    return next((c for c in comments if c.name == cell), comments[0] if comments else None)


def _without_hold_lines(text: str | None) -> str:
    return "\n".join(line for line in (text or "").split("\n")
                     if not line.startswith(HOLD_COMMENT_MARK)).strip()


def _flag_held(nb, reason: str, cell: str | None) -> None:
    """Show a hold in the formgrader: flag the submitted notebook (nbgrader's ``flagged``) and
    put the reason into a comment (``manual_comment``, which the formgrader shows and the
    instructor can edit). A comment the instructor wrote is kept: the reason goes below it, and
    a later hold replaces only the line the check wrote before."""
    nb.flagged = True
    comment = _hold_comment(nb, cell)
    if comment is None:
        return
    line = f"{HOLD_COMMENT_MARK} HELD for review (the held points count 0 until an instructor " \
           f"reviews them): {reason}"
    kept = _without_hold_lines(comment.manual_comment)
    comment.manual_comment = (kept + "\n\n" if kept else "") + line


def _unflag_held(nb) -> None:
    """Undo _flag_held when a later check finds the submission clean: remove the check's line
    from the comments and, if there was one, the flag (the instructor's own text stays)."""
    placed = False
    for comment in nb.comments:
        text = comment.manual_comment or ""
        if any(line.startswith(HOLD_COMMENT_MARK) for line in text.split("\n")):
            placed = True
            comment.manual_comment = _without_hold_lines(text) or None
    if placed:
        nb.flagged = False


def _recorded_verdict(root: Path, student: str, lab: str) -> tuple[list[str], str, dict[str, str]]:
    """(tests the verdict failed in their visible part while the student's kernel passed them,
    why the verdict could not be computed or "", test -> the verdict's message) from the
    autograded notebook, where the verdict step of nbgrader's autograde recorded it
    (tools/verdict_step.py). No record fails closed: every test counts as unverified."""
    from tools import verdict_step

    path = _graded_files(root, student, lab)["autograded"]
    try:
        record = verdict_step.stored_verdict(nbformat.read(path, as_version=4))
    except (OSError, nbformat.reader.NotJSONError) as exc:
        return [], f"the autograded notebook could not be read ({type(exc).__name__})", {}
    if record is None:
        return [], "no verdict in the autograded notebook (is tools.verdict_step.CourseVerdict " \
                   "in nbgrader_config.py's autograde preprocessors?)", {}
    messages = {t: r.get("message", "") for t, r in record.get("tests", {}).items() if not r.get("passed")}
    return list(record.get("disagreements", [])), str(record.get("error") or ""), messages


def check_integrity(root: Path, runs: list[GradeRun], verbose: bool = True) -> dict[tuple[str, str], object]:
    """The integrity check of every graded submission: the static scan (tools/integrity.py) and
    the verdict that nbgrader's autograde recorded in the autograded notebook.

    The verdict's failures already score 0 (tools/verdict_step.py puts them into the cells). A
    test whose visible part the student's kernel passed and the verdict failed (the same code
    on the same inputs: tampering, or a nondeterministic answer), a verdict that could not be
    computed, and a tamper finding of the scan hold points (manual score 0 in the gradebook,
    every autograded point for a tamper finding or a missing verdict) and flag the submission
    for the instructor to review in the formgrader.
    Verdicts are also kept in ``integrity_verdicts.json`` for a later ``report``, with the SHA-256
    of the submitted and the autograded notebook they judged.
    """
    from nbgrader.api import Gradebook, MissingEntry

    from tools import integrity

    # the holds this check placed, so that a re-run can lift them (nbgrader keeps manual scores
    # across re-grading, and an instructor's own manual scores must not be touched)
    ledger_path = root / "integrity_holds.json"
    ledger = set(map(tuple, json.loads(ledger_path.read_text()))) if ledger_path.exists() else set()
    verdicts: dict[tuple[str, str], object] = {}
    sources: dict[str, object] = {}  # lab -> the instructor's notebook
    with Gradebook(gradebook_db_url(root)) as gb:
        for run in runs:
            if not run.success:
                continue
            submitted = _graded_files(root, run.student, run.lab)["submitted"]
            try:
                submission = nbformat.read(submitted, as_version=4)
                nb = gb.find_submission_notebook(run.lab, run.lab, run.student)
            except (MissingEntry, OSError, nbformat.reader.NotJSONError):
                continue
            if run.lab not in sources:
                sources[run.lab] = nbformat.read(layout.source_notebook(run.lab, root), as_version=4)
            findings = integrity.scan(submission, sources[run.lab])
            disagreements, unverified, messages = _recorded_verdict(root, run.student, run.lab)
            tests = [g.name for g in nb.grades if g.cell_type == "code" and g.max_score]
            if unverified:
                disagreements = tests
            verdict = integrity.Verdict(findings, disagreements, unverified,
                                        {t: messages.get(t, "") for t in disagreements})
            verdicts[(run.student, run.lab)] = verdict
            hold_all = unverified or any(f.severity == integrity.TAMPER for f in findings)
            for grade in nb.grades:
                if grade.cell_type != "code":
                    continue
                key = (run.student, run.lab, grade.name)
                if hold_all or grade.name in disagreements:
                    grade.manual_score = 0.0
                    ledger.add(key)
                elif key in ledger:
                    grade.manual_score = None  # held by an earlier run, clean now
                    grade.needs_manual_grade = False
                    ledger.discard(key)
            if verdict.held:  # the formgrader shows it too: flagged, the reason in a comment
                _flag_held(nb, verdict.summary(),
                           _first_solution_cell(root, run.lab, sources[run.lab]))
            else:
                _unflag_held(nb)
            gb.db.commit()
            if verbose and (findings or disagreements):
                print(f"  integrity {run.lab} / {run.student}: {'HELD' if verdict.held else 'noted'}: "
                      f"{verdict.summary()}", flush=True)
    ledger_path.write_text(json.dumps(sorted(ledger), indent=0))
    _save_verdicts(root, runs, verdicts)
    return verdicts


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, or "" if it does not exist."""
    import hashlib

    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _graded_files(root: Path, student: str, lab: str) -> dict[str, Path]:
    return {"submitted": layout.submitted_notebook(student, lab, Path(root)),
            "autograded": layout.autograded_notebook(student, lab, Path(root))}


def _save_verdicts(root: Path, runs: list[GradeRun], verdicts: dict) -> None:
    """integrity_verdicts.json: "student/lab" -> the latest check's verdict ("held", "summary")
    with the SHA-256 of the submitted and the autograded notebook it judged, for every checked
    submission (a clean one has held False and an empty summary)."""
    path = root / "integrity_verdicts.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    for run in runs:
        saved.pop(f"{run.student}/{run.lab}", None)
    for (student, lab), verdict in verdicts.items():
        record = {"held": verdict.held,
                  "summary": verdict.summary() if (verdict.findings or verdict.disagreements) else "",
                  "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for kind, notebook in _graded_files(root, student, lab).items():
            record[f"sha256_{kind}"] = sha256_of(notebook)
        saved[f"{student}/{lab}"] = record
    path.write_text(json.dumps(saved, indent=1, sort_keys=True))


def saved_verdicts(root: Path = ROOT) -> dict[tuple[str, str], tuple[bool, str]]:
    """(student, lab) -> (held, summary) of the latest integrity check (integrity_verdicts.json),
    for the submissions it flagged."""
    path = root / "integrity_verdicts.json"
    if not path.exists():
        return {}
    return {tuple(key.split("/", 1)): (v["held"], v["summary"]) for key, v in json.loads(path.read_text()).items()
            if v.get("summary")}


def changed_since_checked(root: Path = ROOT) -> dict[tuple[str, str], str]:
    """(student, lab) -> what changed since the integrity check judged it: the submitted or the
    autograded notebook no longer has the SHA-256 recorded with the verdict (edited, replaced or
    removed after grading). Submissions graded without a record are not listed."""
    path = Path(root) / "integrity_verdicts.json"
    if not path.exists():
        return {}
    out = {}
    for key, record in json.loads(path.read_text()).items():
        student, lab = key.split("/", 1)
        changes = []
        for kind, notebook in _graded_files(root, student, lab).items():
            recorded = record.get(f"sha256_{kind}")
            if recorded is None:
                changes.append(f"no SHA-256 of the {kind} notebook in the record")
                continue
            now = sha256_of(notebook)
            if now != recorded:
                state = f"sha256 {now[:12]}" if now else "missing"
                changes.append(f"the {kind} notebook changed since it was graded "
                               f"(sha256 {recorded[:12]} then, {state} now)")
        if changes:
            out[(student, lab)] = "; ".join(changes)
    return out
