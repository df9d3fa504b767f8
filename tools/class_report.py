"""The class report: one HTML page an instructor reads the morning after the deadline.

For every lab: how many students were graded, not graded or missing, mean and median score,
the score distribution and the result of every graded test cell (matplotlib figures embedded
as PNG, so the page is a single file that opens anywhere); when the rows carry the written
answers graded by hand (the course's report does), every submission's autograded, hand-graded
and final points (less any late penalty, with the raw total beside a penalised one) and the
submissions whose answers still need hand grading; then the most
common named mistakes across the class (the feedback sentence the students read), the
submissions held by the integrity check, and the missing or broken ones.

``tools.pipeline.report`` writes it for the course (``report.html`` beside ``grades.csv``);
``tools.classroom.report`` for a synthetic class, with a section checking every grade against
its expected score.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import html
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools import layout


@dataclass
class ReportRow:
    """One student's result for one lab, as the report shows it."""

    student: str
    lab: str
    graded: bool  # False: not graded (broken) or missing; ``status`` says which and why
    status: str
    score: float | None  # autograded points, manual overrides (integrity holds) included
    max_score: float
    cells: dict[str, float] = field(default_factory=dict)  # test grade_id -> points
    mistakes: dict[str, str] = field(default_factory=dict)  # test grade_id -> named mistake
    integrity: str = ""  # "HELD for review: ..." or "note: ..." or ""
    # the written answers graded by hand in the formgrader (tools.pipeline.GradeRow): points so
    # far, maximum, the answers not graded by hand yet, and whether the total is final
    manual_score: float = 0.0
    manual_max: float = 0.0
    manual_pending: list[str] = field(default_factory=list)
    total_is: str = ""  # "final", "not graded", "provisional: <why>" ("" when not known)
    # the late penalty (tools/late.py, tools.grades.GradeRow): points off the total, and its percentage
    late_penalty: float = 0.0
    late_percent: float = 0.0

    @property
    def total(self) -> float:
        return (self.score or 0.0) + self.manual_score

    @property
    def total_max(self) -> float:
        return self.max_score + self.manual_max

    @property
    def final(self) -> float:
        """The total less the late penalty, never below 0 (``GradeRow.final``)."""
        return max(0.0, self.total - self.late_penalty)


def test_points(course: Path, lab: str) -> dict[str, float]:
    """Autograded test cells of the source notebook: grade_id -> points."""
    nb = nbformat.read(layout.source_notebook(lab, Path(course)), as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            out[meta["grade_id"]] = float(meta.get("points", 0))
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def figures(lab: str, rows: list[ReportRow], points: dict[str, float]) -> tuple[str, str]:
    """(score distribution, per-test-cell results) of one lab, as PNG data URLs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graded = [r for r in rows if r.graded]
    max_score = sum(points.values())
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    pct = [100.0 * (r.score or 0.0) / max_score if max_score else 0.0 for r in graded]
    ax.hist(pct, bins=list(range(0, 105, 5)), color="#4477aa", edgecolor="white")
    ax.set_xlabel(f"autograded score (% of {max_score:g} points)")
    ax.set_ylabel("students")
    ax.set_title(f"{lab}: score distribution ({len(graded)} graded)")
    total = _png(fig)

    gids = list(points)
    full = [sum(r.cells.get(g, 0.0) >= points[g] for r in graded) for g in gids]
    lost = [len(graded) - f for f in full]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(gids) + 1.2))
    ax.barh(gids, full, color="#228833", label="full points")
    ax.barh(gids, lost, left=full, color="#cc3311", label="lost points")
    ax.invert_yaxis()
    ax.set_xlabel("students")
    ax.set_title(f"{lab}: result per graded test cell")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 / max(1, len(gids)) - 0.08), ncol=2, fontsize=8)
    cells = _png(fig)
    return total, cells


def top_mistakes(rows: list[ReportRow], limit: int = 25) -> list[tuple[int, str, str, str]]:
    """(students, lab, test, mistake), most common first (ties in lab and test order)."""
    counter = collections.Counter((r.lab, test, text) for r in rows for test, text in r.mistakes.items())
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return [(n, lab, test, text) for (lab, test, text), n in ranked[:limit]]


def points_text(score: float, max_score: float, provisional: bool = False) -> str:
    """``12 / 24``, or ``12* / 24`` for a provisional number (the score table uses it too)."""
    return f"{score:g}{'*' if provisional else ''} / {max_score:g}"


def final_html(r: ReportRow) -> str:
    """The final score's cell: the final points; where a late penalty applies, the raw total and
    the penalty after them, linked to the report's section on deadlines (``#late``)."""
    pending = bool(r.manual_pending)
    final = points_text(r.final, r.total_max, pending)
    if not r.late_penalty:
        return final
    return (f"{final} <a class='late' href='#late' title='late penalty: {r.late_penalty:g} points'>(raw "
            f"{points_text(r.total, r.total_max, pending)}, late &minus;{r.late_percent:g}%)</a>")


def grades_html(rows: list[ReportRow]) -> str:
    """Every submission's autograded, hand-graded and final points (their total less any late
    penalty, :func:`final_html`), then the submissions whose written answers still need hand
    grading. A provisional number (answers not graded by hand yet count 0) carries a star; the
    maximum is never shown as earned."""
    e = html.escape
    todo = [r for r in rows if r.manual_pending]
    parts = ["<h2 id='grades'>Grades</h2><p>Autograded points, the written answers' points graded by hand "
             "in the formgrader so far, and the final score: their total less any late penalty (a penalised "
             "score is followed by its raw total, linked to <a href='#late'>Deadlines and late penalties</a>). "
             "<b>*</b> provisional: written answers not graded by hand yet count 0. The same numbers are in "
             "<code>grades.csv</code> (<code>final_points</code>, <code>total_points</code>).</p>",
             "<table><tr><th>student</th><th>lab</th><th>autograded</th><th>by hand</th><th>final</th>"
             "<th>% final</th><th>total is</th></tr>"]
    for r in rows:
        pending = bool(r.manual_pending)
        pct = 100.0 * r.final / r.total_max if r.total_max else 0.0
        parts.append(f"<tr><td>{e(r.student)}</td><td>{e(r.lab)}</td>"
                     f"<td>{points_text(r.score or 0.0, r.max_score, False)}</td>"
                     f"<td>{points_text(r.manual_score, r.manual_max, pending)}</td>"
                     f"<td>{final_html(r)}</td>"
                     f"<td>{pct:.1f}{'*' if pending else ''}</td><td>{e(r.total_is)}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2 id='hand-grading'>Needs hand grading ({len(todo)} submissions, "
                 f"{sum(len(r.manual_pending) for r in todo)} answers)</h2>"
                 "<p>Grade these answers in the formgrader (JupyterLab: Nbgrader &gt; Formgrader), then run "
                 "<code>make report</code> again.</p><table><tr><th>student</th><th>lab</th>"
                 "<th>answers not graded by hand yet</th><th>by hand so far</th></tr>")
    for r in todo:
        parts.append(f"<tr><td>{e(r.student)}</td><td>{e(r.lab)}</td><td>{e(', '.join(r.manual_pending))}</td>"
                     f"<td>{points_text(r.manual_score, r.manual_max, True)}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


def write_html(path: Path, course: Path, rows: list[ReportRow], extra_html: str = "") -> Path:
    """Write the class report to ``path``; ``extra_html`` goes before the feedback note."""
    e = html.escape
    hand = any(r.manual_max or r.manual_score or r.manual_pending for r in rows)
    penalised = any(r.late_penalty for r in rows)
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Class report</title>"
             "<link rel='icon' href='data:,'>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
             "th{background:#eee}img{max-width:100%}</style></head><body>",
             "<h1>Class report</h1>",
             f"<p>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC from <code>{e(str(course))}</code>. "
             "Scores and figures are autograded points (points withheld by the integrity check included); "
             "written answers are graded by hand in the formgrader"
             + (" and counted in <a href='#grades'>Grades</a> as far as they are graded." if hand else ".")
             + (" <a href='#grades'>Grades</a> shows the final scores, late penalties applied." if penalised else "")
             + "</p>"]
    labs = list(dict.fromkeys(r.lab for r in rows))
    parts.append("<h2>Summary</h2><table><tr><th>lab</th><th>students</th><th>graded</th><th>not graded</th>"
                 "<th>missing</th><th>held</th><th>mean %</th><th>median %</th><th>full marks</th>"
                 + ("<th>need hand grading</th>" if hand else "") + "</tr>")
    for lab in labs:
        lr = [r for r in rows if r.lab == lab]
        g = [100.0 * (r.score or 0.0) / r.max_score for r in lr if r.graded and r.max_score]
        parts.append(f"<tr><td>{e(lab)}</td><td>{len(lr)}</td><td>{len(g)}</td>"
                     f"<td>{sum(not r.graded and r.status != 'missing' for r in lr)}</td>"
                     f"<td>{sum(r.status == 'missing' for r in lr)}</td>"
                     f"<td>{sum(r.integrity.startswith('HELD') for r in lr)}</td>"
                     f"<td>{statistics.mean(g) if g else 0:.1f}</td><td>{statistics.median(g) if g else 0:.1f}</td>"
                     f"<td>{sum(x >= 100.0 - 1e-9 for x in g)}</td>"
                     + (f"<td>{sum(bool(r.manual_pending) for r in lr)}</td>" if hand else "") + "</tr>")
    parts.append("</table>")
    if hand or penalised:
        parts.append(grades_html(rows))
    for lab in labs:
        lr = [r for r in rows if r.lab == lab]
        total, cells = figures(lab, lr, test_points(course, lab))
        parts.append(f"<h2>{e(lab)}</h2><h3>Score distribution</h3><img alt='score distribution of {e(lab)}' "
                     f"src='{total}'><h3>Per graded cell</h3><img alt='per-cell results of {e(lab)}' src='{cells}'>")
    parts.append("<h2 id='mistakes'>Most common mistakes</h2><table><tr><th>students</th><th>lab</th>"
                 "<th>test</th><th>named mistake (feedback the student read)</th></tr>")
    for n, lab, test, text in top_mistakes(rows):
        parts.append(f"<tr><td>{n}</td><td>{e(lab)}</td><td>{e(test)}</td><td>{e(text)}</td></tr>")
    parts.append("</table>")
    held = [r for r in rows if r.integrity]
    parts.append(f"<h2 id='integrity'>Integrity check ({sum(r.integrity.startswith('HELD') for r in held)} held "
                 "for review)</h2><table><tr><th>student</th><th>lab</th><th>verdict</th></tr>")
    for r in held:
        parts.append(f"<tr><td>{e(r.student)}</td><td>{e(r.lab)}</td><td>{e(r.integrity)}</td></tr>")
    parts.append("</table>")
    bad = [r for r in rows if not r.graded]
    parts.append(f"<h2 id='problems'>Missing or broken submissions ({len(bad)})</h2><table><tr><th>student</th>"
                 "<th>lab</th><th>status</th></tr>")
    for r in bad:
        parts.append(f"<tr><td>{e(r.student)}</td><td>{e(r.lab)}</td><td>{e(r.status)}</td></tr>")
    parts.append("</table>")
    parts.append(extra_html)
    parts.append("<h2>Feedback</h2><p>Per-student feedback (hidden tests removed): "
                 "<code>feedback/&lt;student&gt;/&lt;lab&gt;/&lt;lab&gt;.html</code> in the course folder.</p>")
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts))
    return path
