"""The similarity check: pairs of submissions whose answer code overlaps, listed for a person to judge.

    python -m tools.similarity                                  # every lab with submissions
    python -m tools.similarity --lab lab00_cache_sizing --threshold 0.8
    python -m tools.similarity --root build/classroom           # another course folder

A listed pair is a question for the instructor, never a verdict: nothing here changes a grade,
holds points or writes to the gradebook. Students write the same formula for the same task and
may have worked from the same lecture example; only a person who reads both answers can tell.

**What is compared.** Per student and lab, the code of the answer cells (nbgrader cells with
``solution: true`` that are code cells) of ``submitted/<student>/<lab>/<lab>.ipynb``. A cell
left as released or equal to the instructor's solution (blank lines and comments aside) is left
out. In the others, the stub's two lines (``# YOUR CODE HERE``, ``raise NotImplementedError()``)
are dropped and the lines the release cell gives everyone (the signature, the docstring) become
``# given:`` comments, which are not compared. Each cell is then compared with the same cell of
the other answer by copydetect's winnowing (the algorithm of MOSS): its tokenizer replaces every
name by one letter, so renamed variables do not hide a copy, and its fingerprints cover short
runs of tokens, so reordered statements keep most of theirs. The release notebook's answer
cells and the instructor's solution are its boilerplate: code a student shares with them
counts for no one.

**When a pair is listed.** Its similarity (the mean of the two students' shares: the part of
one's compared code found in the other's) is at least :data:`THRESHOLD`, and the shared code is
at least :data:`MIN_OVERLAP` tokens, about six lines of code. The second rule keeps short
answers out: a one-line formula, the same for everyone, is about :data:`TOKENS_PER_LINE` tokens
(a fingerprint covers :data:`NOISE_TOKENS`), and two students who made the same small change to
the solution's code share only the few tokens around it. A notebook that cannot be read (broken JSON, no notebook)
or that holds no code of the student's own is skipped, and the report says why. The defaults
were set on the course's variants (``tools/variants/<lab>.py``): a renamed, reordered and
reformatted copy (:func:`disguised`) of each correct variant scores 0.75 to 1.00, with 106
shared tokens or more; two different correct variants of a lab score 0.61 at most.

Where it shows: the course's report (``report.html``, :func:`report_section`), the synthetic
class's report (:func:`classroom_section`) and ``make similarity`` (this command line). The demo
adds two sample students, one a renamed and reordered copy of the other
(:func:`write_demo_pair`), so that its report shows what a listed pair looks like.

Why one module of this size: collecting the answers, the comparison and the HTML section share
one model of a pair (which cells, which shared code) and must agree on what was left out.
"""

from __future__ import annotations

import argparse
import ast
import collections
import copy
import difflib
import html
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
from copydetect import CodeFingerprint, compare_files

from tools import layout
from tools.layout import ROOT

#: Smallest run of matching tokens (characters of copydetect's filtered code, in which every
#: name is one letter) that counts as shared: copydetect's noise threshold (its default is 25;
#: 20 told copies from independent answers apart best on the course's variants).
NOISE_TOKENS = 20
#: Every shared run at least this long is found (copydetect's guarantee threshold).
GUARANTEE_TOKENS = 20
#: A pair is listed from this similarity on ...
THRESHOLD = 0.7
#: ... when the students share at least this many tokens.
MIN_OVERLAP = 100
#: Tokens in a line of answer code, on average (measured on the course's correct variants).
TOKENS_PER_LINE = 17
#: Listed pairs shown with their code in the HTML, per lab (the table lists them all).
SHOWN_PAIRS = 20
#: The longest answer cell compared (characters); a longer one is cut there.
MAX_CHARS = 50_000
#: The stub's lines, dropped wherever a student left them.
STUB_LINES = ("# YOUR CODE HERE", "raise NotImplementedError()")
#: The demo's two sample students (:func:`write_demo_pair`).
DEMO_STUDENTS = ("pair-original", "pair-renamed-copy")

_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$", re.MULTILINE)
_HEADER = "# answer cell {gid}\n"


# ----------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """One student's own answer code for one lab, as compared: answer cell grade_id -> code, in
    notebook order (lines given in the release notebook turned into ``# given:`` comments)."""

    student: str
    lab: str
    cells: dict[str, str]

    @property
    def starts(self) -> dict[str, int]:
        """Where each cell's code begins in :attr:`document`."""
        out, at = {}, 0
        for gid, code in self.cells.items():
            out[gid] = at + len(_HEADER.format(gid=gid))
            at = out[gid] + len(code) + 2
        return out

    @property
    def document(self) -> str:
        """The cells, each under a comment naming it: what a report shows."""
        return "".join(f"{_HEADER.format(gid=gid)}{code}\n\n" for gid, code in self.cells.items())


@dataclass(frozen=True)
class Skipped:
    """A submission left out of the comparison, and why."""

    student: str
    lab: str
    reason: str


@dataclass(frozen=True)
class Boilerplate:
    """What every student of a lab is given or shown: the release stub and the instructor's
    solution, answer cell grade_id -> code."""

    stub: dict[str, str]
    solution: dict[str, str]

    @property
    def texts(self) -> list[str]:
        return [*self.stub.values(), *self.solution.values()]


def _answer_cells(nb) -> dict[str, str]:
    """grade_id -> source of a notebook's answer code cells (``solution: true``), in order."""
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("solution") and meta.get("grade_id"):
            out[str(meta["grade_id"])] = str(cell.get("source", ""))
    return out


def boilerplate(lab: str, root: Path = ROOT) -> Boilerplate:
    """The release notebook's answer cells and the source notebook's solutions (markers removed)."""
    stub = _answer_cells(nbformat.read(layout.release_notebook(lab, root), as_version=4))
    solution = _answer_cells(nbformat.read(layout.source_notebook(lab, root), as_version=4))
    return Boilerplate(stub, {gid: _MARKERS.sub("", code) for gid, code in solution.items()})


def _without_stub_lines(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if line.strip() not in STUB_LINES)


def _normalised(code: str) -> str:
    """The code's lines less blank lines, comment lines and the stub's lines."""
    lines = (line.rstrip() for line in _without_stub_lines(code).splitlines())
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


def own_cells(cells: dict[str, str], common: Boilerplate) -> dict[str, str]:
    """The answer code cells that are the student's own (not as released, not the solution),
    less the stub's lines."""
    out = {}
    for gid, code in cells.items():
        if gid not in common.stub:
            continue  # not an answer code cell of the release (a written answer, say)
        mine = _normalised(code)
        if mine and mine not in (_normalised(common.stub[gid]), _normalised(common.solution.get(gid, ""))):
            out[gid] = _without_stub_lines(code)
    return out


def _given_lines(lines: list[str], stub: str) -> set[int]:
    """Which of ``lines`` stand as given in the release cell: runs of lines in the stub's order
    (difflib), and a single line only if it says something (a lone closing quote is no evidence)."""
    mine, given = [line.strip() for line in lines], [line.strip() for line in stub.splitlines()]
    out: set[int] = set()
    for block in difflib.SequenceMatcher(None, mine, given, autojunk=False).get_matching_blocks():
        if block.size > 1 or (block.size == 1 and len(mine[block.a]) >= 8):
            out.update(i for i in range(block.a, block.a + block.size) if mine[i])
    return out


def _given_marked(code: str, stub: str) -> str:
    """``code`` with the lines given in the release cell (the signature, the docstring) turned
    into ``# given:`` comments: they are the same for everyone and count for no one."""
    lines = code.strip("\n").splitlines()
    given = _given_lines(lines, stub)
    marked = [f"{line[:len(line) - len(line.lstrip())]}# given: {line.strip()}" if i in given else line
              for i, line in enumerate(lines)]
    return "\n".join(marked)[:MAX_CHARS]


def to_answer(student: str, lab: str, cells: dict[str, str], common: Boilerplate) -> Answer | None:
    """The student's own answer cells as compared, or None if there are none."""
    mine = own_cells(cells, common)
    return Answer(student, lab, {gid: _given_marked(code, common.stub[gid]) for gid, code in mine.items()}) \
        if mine else None


def read_cells(student: str, lab: str, root: Path = ROOT) -> dict[str, str] | Skipped:
    """A submission's answer code cells (grade_id -> source), or why it cannot be read."""
    path = layout.submitted_notebook(student, lab, root)
    if not path.is_file():
        return Skipped(student, lab, f"no notebook named {path.name} in the submission")
    try:
        return _answer_cells(nbformat.read(path, as_version=4))
    except Exception as exc:  # broken JSON, not UTF-8, not a notebook: reported, never fatal
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        return Skipped(student, lab, f"unreadable notebook ({type(exc).__name__}: {first})")


def read_answer(student: str, lab: str, common: Boilerplate, root: Path = ROOT) -> Answer | Skipped:
    """A student's own answer code for a lab, or why the submission is left out."""
    cells = read_cells(student, lab, root)
    if isinstance(cells, Skipped):
        return cells
    return to_answer(student, lab, cells, common) or Skipped(
        student, lab, "no answer code of its own (only the release stub or the instructor's solution)")


def students(lab: str, root: Path = ROOT) -> list[str]:
    """The students with a submission folder for ``lab``, by name."""
    folder = Path(root) / layout.SUBMITTED
    return sorted(p.parent.name for p in folder.glob(f"*/{lab}") if p.is_dir()) if folder.is_dir() else []


# ----------------------------------------------------------------------------- comparison


@dataclass
class Pair:
    """Two students whose answers overlap. ``share_a``: the part of a's compared code found in b's."""

    lab: str
    student_a: str
    student_b: str
    share_a: float
    share_b: float
    overlap: int  # shared tokens
    code_a: str = field(repr=False, default="")
    code_b: str = field(repr=False, default="")
    slices_a: list[tuple[int, int]] = field(repr=False, default_factory=list)
    slices_b: list[tuple[int, int]] = field(repr=False, default_factory=list)
    cells_a: tuple[str, ...] = ()  # the answer cells compared
    cells_b: tuple[str, ...] = ()

    @property
    def similarity(self) -> float:
        """The mean of the two shares."""
        return (self.share_a + self.share_b) / 2


@dataclass
class LabCheck:
    """The similarity check of one lab: who was compared, who was skipped, the pairs listed."""

    lab: str
    threshold: float
    min_overlap: int
    compared: list[str]
    skipped: list[Skipped]
    pairs: list[Pair]  # most similar first


def _fingerprint(code: str, common_hashes: np.ndarray) -> CodeFingerprint:
    window = GUARANTEE_TOKENS - NOISE_TOKENS + 1
    return CodeFingerprint("answer.py", NOISE_TOKENS, window, common_hashes, language="python", fp=io.StringIO(code))


def boilerplate_hashes(texts: Iterable[str]) -> np.ndarray:
    """Every fingerprint of the given code (window 1, as copydetect's boilerplate)."""
    hashes: list[int] = []
    for text in texts:
        hashes += CodeFingerprint("common.py", NOISE_TOKENS, 1, language="python", fp=io.StringIO(text)).hashes
    return np.unique(np.array(hashes, dtype=np.int64))


def _slices(array, shift: int) -> list[tuple[int, int]]:
    if len(array) == 0 or len(array[0]) == 0:
        return []
    return [(int(start) + shift, int(end) + shift) for start, end in zip(array[0], array[1], strict=True)]


@dataclass
class _Prints:
    """One distinct answer's fingerprints, cell by cell (a fingerprint never spans two cells)."""

    answer: Answer
    cells: dict[str, CodeFingerprint]

    @property
    def coverage(self) -> float:
        return float(sum(fp.token_coverage for fp in self.cells.values()))


def _compare(a: _Prints, b: _Prints) -> tuple[int, float, float, list, list]:
    """(shared tokens, a's share, b's share, a's and b's shared runs in their documents), each
    cell compared with the same cell of the other answer."""
    overlap, covered_a, covered_b, slices_a, slices_b = 0, 0.0, 0.0, [], []
    starts_a, starts_b = a.answer.starts, b.answer.starts
    for gid in a.cells.keys() & b.cells.keys():
        fa, fb = a.cells[gid], b.cells[gid]
        tokens, (share_a, share_b), (runs_a, runs_b) = compare_files(fa, fb)
        if tokens:
            overlap += int(tokens)
            covered_a, covered_b = covered_a + share_a * fa.token_coverage, covered_b + share_b * fb.token_coverage
            slices_a += _slices(runs_a, starts_a[gid])
            slices_b += _slices(runs_b, starts_b[gid])
    return (overlap, float(covered_a / a.coverage) if a.coverage else 0.0,
            float(covered_b / b.coverage) if b.coverage else 0.0,
            sorted(slices_a), sorted(slices_b))


def _candidates(prints: list[_Prints]) -> set[tuple[int, int]]:
    """Pairs of answers with a fingerprint in common in the same cell (the others share no code)."""
    holders: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    for i, p in enumerate(prints):
        for gid, fp in p.cells.items():
            for h in fp.hashes:
                holders[(gid, h)].append(i)
    return {(x, y) for docs in holders.values() for n, x in enumerate(docs) for y in docs[n + 1:]}


def compare(answers: list[Answer], common: Iterable[str], threshold: float = THRESHOLD,
            min_overlap: int = MIN_OVERLAP) -> list[Pair]:
    """The pairs of ``answers`` with a similarity of ``threshold`` or more and ``min_overlap``
    shared tokens or more, most similar first. ``common``: code everyone has (the boilerplate).

    Identical answers are fingerprinted and compared once (a synthetic class has many)."""
    common_hashes = boilerplate_hashes(common)
    groups: dict[str, list[Answer]] = collections.defaultdict(list)
    for answer in answers:
        groups[answer.document].append(answer)
    prints = [_Prints(group[0], {gid: _fingerprint(code, common_hashes) for gid, code in group[0].cells.items()})
              for group in groups.values()]
    members = list(groups.values())
    found = []
    for i, j in sorted(_candidates(prints) | {(i, i) for i, group in enumerate(members) if len(group) > 1}):
        overlap, share_a, share_b, slices_a, slices_b = _compare(prints[i], prints[j])
        if overlap < min_overlap or (share_a + share_b) / 2 < threshold:
            continue
        for n, a in enumerate(members[i]):
            for b in members[i][n + 1:] if i == j else members[j]:
                found.append(Pair(a.lab, a.student, b.student, share_a, share_b, overlap, a.document, b.document,
                                  slices_a, slices_b, tuple(a.cells), tuple(b.cells)))
    return sorted(found, key=lambda p: (-p.similarity, -p.overlap, p.student_a, p.student_b))


def check(lab: str, root: Path = ROOT, threshold: float = THRESHOLD, min_overlap: int = MIN_OVERLAP,
          only: Iterable[str] | None = None) -> LabCheck:
    """The similarity check of one lab over ``submitted/`` (or over the students in ``only``)."""
    common = boilerplate(lab, root)
    answers, skipped = [], []
    for student in sorted(only) if only is not None else students(lab, root):
        got = read_answer(student, lab, common, root)
        (answers if isinstance(got, Answer) else skipped).append(got)
    pairs = compare(answers, common.texts, threshold, min_overlap)
    return LabCheck(lab, threshold, min_overlap, [a.student for a in answers], skipped, pairs)


def check_course(root: Path = ROOT, labs: Iterable[str] | None = None, threshold: float = THRESHOLD,
                 min_overlap: int = MIN_OVERLAP) -> list[LabCheck]:
    """The check of every lab (or of ``labs``) that has submissions and a release notebook."""
    chosen = list(labs) if labs is not None else layout.available_labs(root)
    return [check(lab, root, threshold, min_overlap) for lab in chosen
            if students(lab, root) and layout.release_notebook(lab, root).exists()]


def _by_reason(skipped: list[Skipped]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    for s in skipped:
        out[s.reason].append(s.student)
    return dict(out)


# ----------------------------------------------------------------------------- text table


def format_table(checks: list[LabCheck]) -> str:
    """The listed pairs as a plain-text table, then each lab's counts and skipped submissions."""
    lines = [f"{'lab':<20} {'student':<22} {'student':<22} {'similar':>7} {'1st in 2nd':>10} "
             f"{'2nd in 1st':>10} {'tokens':>6}", "-" * 103]
    for c in checks:
        lines += [f"{c.lab:<20} {p.student_a:<22} {p.student_b:<22} {p.similarity:>7.2f} {p.share_a:>10.0%} "
                  f"{p.share_b:>10.0%} {p.overlap:>6}" for p in c.pairs]
    lines.append("")
    for c in checks:
        lines.append(f"{c.lab}: {len(c.compared)} submissions compared, {len(c.pairs)} pairs listed "
                     f"(similarity >= {c.threshold:g}, >= {c.min_overlap} shared tokens), {len(c.skipped)} skipped")
        lines += [f"   skipped, {reason}: {', '.join(names)}" for reason, names in _by_reason(c.skipped).items()]
    lines.append("A listed pair is for a person to read side by side (report.html shows the code); "
                 "nothing here changes a grade.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML

STYLE = ("<style>.sim-pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:.5em;margin-bottom:1.5em}"
         ".sim-pair pre{margin:0;padding:.4em;background:#f7f7f7;border:1px solid #ccc;overflow-x:auto;"
         "font-size:80%;white-space:pre}.sim-pair mark{background:#ffd27f}</style>")


def _unmarked_lines(code: str) -> list[tuple[int, int]]:
    """Where the lines that never count are: cell headers and ``# given:`` lines."""
    out, at = [], 0
    for line in code.splitlines(keepends=True):
        if line.lstrip().startswith(("# given:", _HEADER.split("{")[0])):
            out.append((at, at + len(line)))
        at += len(line)
    return out


def _split(slices: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``slices`` less the ``holes`` (both sorted, not overlapping among themselves)."""
    out = []
    for start, end in slices:
        for h_start, h_end in holes:
            if h_start < end and start < h_end:
                if start < h_start:
                    out.append((start, h_start))
                start = max(start, h_end)
        if start < end:
            out.append((start, end))
    return out


def highlight(code: str, slices: list[tuple[int, int]]) -> str:
    """``code`` as escaped HTML, the shared runs (``slices``) in ``<mark>``, except on lines
    that never count (a run's span may cross them, as comments are not compared)."""
    out, at = [], 0
    for start, end in _split(sorted(slices), _unmarked_lines(code)):
        start, end = max(start, at), min(end, len(code))
        if start < end:
            out += [html.escape(code[at:start]), "<mark>", html.escape(code[start:end]), "</mark>"]
            at = end
    out.append(html.escape(code[at:]))
    return "".join(out)


def pair_html(pair: Pair, label_a: str = "", label_b: str = "") -> str:
    """One pair side by side, the shared code highlighted; every text escaped."""
    e = html.escape
    label_a, label_b = label_a or pair.student_a, label_b or pair.student_b
    return (f"<h4>{e(pair.lab)}: {e(label_a)} and {e(label_b)}: similarity {pair.similarity:.2f} "
            f"({pair.share_a:.0%} of the first found in the second, {pair.share_b:.0%} the other way; "
            f"{pair.overlap} shared tokens)</h4><div class='sim-pair'>"
            f"<div><b>{e(label_a)}</b><pre>{highlight(pair.code_a, pair.slices_a)}</pre></div>"
            f"<div><b>{e(label_b)}</b><pre>{highlight(pair.code_b, pair.slices_b)}</pre></div></div>")


def rules_html(threshold: float = THRESHOLD, min_overlap: int = MIN_OVERLAP) -> str:
    """What is compared and when a pair is listed, for the reader of a report."""
    return (f"<p>A pair of students is listed when their answer code is at least {threshold:.0%} similar (the "
            f"mean of the two shares: the part of one's code found in the other's) and they share at least "
            f"{min_overlap} tokens (about {max(1, round(min_overlap / TOKENS_PER_LINE))} lines of code). Compared: the answer code cells only; cells left as "
            "released or equal to the instructor's solution are left out, and code shared with the release "
            "stub or the solution counts for no one. Names are ignored, so renaming does not hide a copy, and "
            "reordered lines keep most of their match. <b>A listed pair is a question, not a verdict:</b> read "
            "both answers side by side (shared code highlighted) before asking anyone about it. Nothing here "
            "changes a grade.</p>")


def pairs_table(pairs: list[Pair]) -> str:
    """The pairs, one row each."""
    e = html.escape
    rows = "".join(f"<tr><td>{e(p.student_a)}</td><td>{e(p.student_b)}</td><td>{p.similarity:.2f}</td>"
                   f"<td>{p.share_a:.0%}</td><td>{p.share_b:.0%}</td><td>{p.overlap}</td></tr>" for p in pairs)
    return ("<table><tr><th>student</th><th>student</th><th>similarity</th><th>first in second</th>"
            f"<th>second in first</th><th>shared tokens</th></tr>{rows}</table>")


def skipped_html(skipped: list[Skipped]) -> str:
    """The skipped submissions, grouped by reason."""
    if not skipped:
        return ""
    e = html.escape
    rows = "".join(f"<tr><td>{e(reason)}</td><td>{len(names)}</td><td>{e(', '.join(names))}</td></tr>"
                   for reason, names in _by_reason(skipped).items())
    return f"<table><tr><th>skipped because</th><th>submissions</th><th>students</th></tr>{rows}</table>"


def lab_html(c: LabCheck, shown: int = SHOWN_PAIRS) -> str:
    """One lab's part: the pairs' table, the code of the first ``shown`` pairs, the skipped."""
    parts = [f"<h3>{html.escape(c.lab)}: {len(c.pairs)} pairs listed ({len(c.compared)} submissions compared, "
             f"{len(c.skipped)} skipped)</h3>"]
    if c.pairs:
        parts += [pairs_table(c.pairs), *(pair_html(p) for p in c.pairs[:shown])]
        if len(c.pairs) > shown:
            parts.append(f"<p>The other {len(c.pairs) - shown} pairs' code: read their notebooks in "
                         "<code>submitted/</code>.</p>")
    parts.append(skipped_html(c.skipped))
    return "\n".join(parts)


def html_section(checks: list[LabCheck], note: str = "") -> str:
    """A report's "Similarity" section; ``note`` (HTML) goes after the rules."""
    parts = [STYLE, "<h2 id='similarity'>Similarity</h2>",
             rules_html(checks[0].threshold, checks[0].min_overlap) if checks else "", note]
    parts += [lab_html(c) for c in checks] if checks else ["<p>No submissions to compare.</p>"]
    return "\n".join(parts)


def _failed(exc: Exception) -> str:
    return (f"{STYLE}<h2 id='similarity'>Similarity</h2><p>The similarity check failed: "
            f"{html.escape(type(exc).__name__)}: {html.escape(str(exc)[:300])}</p>")


def report_section(root: Path = ROOT) -> str:
    """The course report's section (``tools.grades.write_class_report``); it never stops the report."""
    try:
        return html_section(check_course(root))
    except Exception as exc:  # the grades matter more than this section
        return _failed(exc)


# ----------------------------------------------------------------------------- a disguised copy


class _Renamer(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node


def _names(node: ast.AST, ctx: type) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _local_names(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The names a function assigns, less every parameter (its own and nested ones) and globals."""
    params = {a.arg for n in ast.walk(func) if isinstance(n, ast.arguments)
              for a in [*n.posonlyargs, *n.args, *n.kwonlyargs, *filter(None, [n.vararg, n.kwarg])]}
    declared = {name for n in ast.walk(func) if isinstance(n, ast.Global | ast.Nonlocal) for name in n.names}
    return _names(func, ast.Store) - params - declared


def _binds(stmt: ast.stmt) -> set[str] | None:
    """The names a statement binds, if it is one that may move: an assignment to plain names, an
    import, a function or class definition; None for any other statement."""
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        return _names(stmt, ast.Store)
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    return None


def _independent(first: ast.stmt, second: ast.stmt) -> bool:
    """Two movable statements that neither read nor bind what the other binds."""
    binds_1, binds_2 = _binds(first), _binds(second)
    if binds_1 is None or binds_2 is None:
        return False
    return not (binds_1 & (_names(second, ast.Load) | binds_2) or binds_2 & _names(first, ast.Load))


def _swap_independent(body: list[ast.stmt]) -> None:
    """Swap adjacent independent statements, two by two."""
    i = 0
    while i + 1 < len(body):
        if _independent(body[i], body[i + 1]):
            body[i], body[i + 1] = body[i + 1], body[i]
            i += 2
        else:
            i += 1


def disguised(code: str) -> str:
    """``code`` as a copier might hand it in: every function's local variables renamed
    (``my_<name>``), adjacent independent statements swapped, comments dropped and the layout
    redone (``ast.unparse``). Behaviour is unchanged: parameters, attributes and keyword
    arguments keep their names, and only statements that do not touch each other move.
    Raises SyntaxError for code that does not parse."""
    tree = ast.parse(code)
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
        names = {name: f"my_{name}" for name in _local_names(func)}
        for stmt in func.body:
            _Renamer(names).visit(stmt)
        _swap_independent(func.body)
    _swap_independent(tree.body)
    return "# my own solution\n" + ast.unparse(tree) + "\n"


def disguised_cells(cells: dict[str, str], common: Boilerplate) -> dict[str, str]:
    """The student's own answer cells (:func:`own_cells`), each :func:`disguised`."""
    return {gid: disguised(code) for gid, code in own_cells(cells, common).items()}


# ----------------------------------------------------------------------------- the demo's pair


def demo_answer(lab: str, root: Path = ROOT) -> dict[str, str] | None:
    """The answer cells of the correct variant of ``lab`` with the most code of its own
    (tools/variants), the solution in its other cells; None if the lab has no correct variant."""
    from tools.samples import submission_cells

    module = layout.variants(lab)
    if module is None or not getattr(module, "CORRECT", None):
        return None
    common = boilerplate(lab, root)
    variants = {name: submission_cells(root, lab, f"correct:{name}") for name in sorted(module.CORRECT)}
    size = {name: len(Answer("", lab, own_cells(cells, common)).document) for name, cells in variants.items()}
    return variants[max(size, key=size.get)]


def write_answer(root: Path, lab: str, student: str, cells: dict[str, str]) -> Path:
    """submitted/<student>/<lab>/<lab>.ipynb: the release notebook with these cells filled in."""
    nb = copy.deepcopy(nbformat.read(layout.release_notebook(lab, root), as_version=4))
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
    target = layout.submitted_notebook(student, lab, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def _demo_lab(root: Path) -> str | None:
    """The first lab with a release notebook and correct variants."""
    return next((lab for lab in layout.available_labs(root) if layout.release_notebook(lab, root).exists()
                 and getattr(layout.variants(lab), "CORRECT", None)), None)


def write_demo_pair(root: Path = ROOT, lab: str | None = None) -> list[Path]:
    """The demo's listed pair, unless the other submissions already have one: ``pair-original``
    (the correct variant of :func:`demo_answer`) and ``pair-renamed-copy`` (its own answer cells
    :func:`disguised`). Returns the notebooks written (none when a pair is already listed)."""
    lab = lab or _demo_lab(root)
    original = demo_answer(lab, root) if lab else None
    if original is None or check(lab, root, only=[s for s in students(lab, root) if s not in DEMO_STUDENTS]).pairs:
        return []
    return [write_answer(root, lab, DEMO_STUDENTS[0], original),
            write_answer(root, lab, DEMO_STUDENTS[1], {**original, **disguised_cells(original, boilerplate(lab, root))})]


# ----------------------------------------------------------------------------- synthetic class


def _is_mistake(variant: str) -> bool:
    return variant.startswith("mutant:") or variant == "mistakes"


def _expected(pair: Pair, variants: dict[tuple[str, str], str]) -> str:
    """Why the synthetic class holds this pair by construction ("" if it does not): the same
    variant, or a mistake (each is a small edit of cells other variants share)."""
    a, b = variants.get((pair.student_a, pair.lab), ""), variants.get((pair.student_b, pair.lab), "")
    if a == b:
        return "same variant"
    return "a mistake" if _is_mistake(a) or _is_mistake(b) else ""


def _demo_pair_html(course: Path, c: LabCheck, variants: dict[tuple[str, str], str]) -> str:
    """The largest correct answer of the lab beside a disguised copy made here (not a student)."""
    common = boilerplate(c.lab, course)
    first = {variants.get((s, c.lab), s): s for s in reversed(c.compared)}  # one student per variant
    answers = [(to_answer(s, c.lab, cells, common), cells) for v, s in sorted(first.items())
               if not _is_mistake(v) and not isinstance(cells := read_cells(s, c.lab, course), Skipped)]
    for original, cells in sorted(answers, key=lambda pair: -len(pair[0].document) if pair[0] else 0):
        try:
            copied = to_answer("renamed copy", c.lab, {**cells, **disguised_cells(cells, common)}, common)
        except SyntaxError:
            continue
        pairs = compare([original, copied], common.texts, c.threshold, c.min_overlap) if original and copied else []
        if pairs:
            label = f"{original.student} ({variants.get((original.student, c.lab), '?')})"
            return ("<p><b>Demo pair</b> (made for this report, not two students): an answer of the class beside "
                    "a copy of it with its variables renamed, independent lines swapped and comments dropped. "
                    "This is what a listed pair looks like.</p>" + pair_html(pairs[0], label, "renamed copy (demo)"))
    return ""


_CLASS_NOTE = ("<p><b>In this synthetic class identical answers are expected.</b> Its students are drawn from a "
               "few variants (<code>tools/variants/&lt;lab&gt;.py</code>): every two students given the same "
               "variant hand in the same code, and each of the variants' mistakes is a small edit of the "
               "solution or of a correct variant, so two students given mistakes, or a mistake and the variant "
               "it was made from, hand in near copies. Those pairs are counted, not shown. Two students given "
               "<i>different correct</i> variants wrote independently: a pair of them would be a false alarm "
               "and is shown.</p>")


def _class_lab_html(course: Path, c: LabCheck, variants: dict[tuple[str, str], str]) -> tuple[str, str]:
    """(the lab's row of the counts table, the lab's part below it)."""
    e = html.escape
    why = [_expected(p, variants) for p in c.pairs]
    other = [p for p, w in zip(c.pairs, why, strict=True) if not w]
    row = (f"<tr><td>{e(c.lab)}</td><td>{len(c.compared)}</td><td>{len(c.skipped)}</td><td>{len(c.pairs)}</td>"
           f"<td>{why.count('same variant')}</td><td>{why.count('a mistake')}</td><td>{len(other)}</td></tr>")
    shown = [pair_html(p, f"{p.student_a} ({variants.get((p.student_a, c.lab))})",
                       f"{p.student_b} ({variants.get((p.student_b, c.lab))})") for p in other[:SHOWN_PAIRS]]
    return row, "\n".join([f"<h3>{e(c.lab)}</h3>", _demo_pair_html(course, c, variants), *shown,
                           skipped_html(c.skipped)])


def classroom_section(course: Path, variants: dict[tuple[str, str], str]) -> str:
    """The synthetic class's "Similarity" section. ``variants``: (student, lab) -> the variant the
    student was given. Pairs the class's construction explains are counted, the others (false
    alarms) shown, and a demo pair shows what a listed pair looks like. Never stops the report."""
    try:
        parts = [_class_lab_html(course, c, variants) for c in check_course(course, sorted({lab for _, lab in variants}))]
    except Exception as exc:  # the grades matter more than this section
        return _failed(exc)
    table = ("<table><tr><th>lab</th><th>compared</th><th>skipped</th><th>pairs listed</th><th>same variant</th>"
             "<th>a mistake and another variant</th><th>two different correct variants (false alarms)</th></tr>"
             + "".join(row for row, _ in parts) + "</table>")
    return "\n".join([STYLE, "<h2 id='similarity'>Similarity</h2>", rules_html(), _CLASS_NOTE, table,
                      *(body for _, body in parts)])


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Print the listed pairs of every lab (or of ``--lab``). Exit status 0 when the check ran,
    listed pairs or not (they are for a person to judge); 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m tools.similarity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", action="append", help="a lab (repeatable; default: every lab with submissions)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"similarity from which a pair is listed, 0 to 1 (default {THRESHOLD})")
    parser.add_argument("--min-overlap", type=int, default=MIN_OVERLAP,
                        help=f"fewest shared tokens for a pair to be listed (default {MIN_OVERLAP})")
    parser.add_argument("--root", type=Path, default=ROOT, help="the course folder (default: this repository)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1, got {args.threshold:g}")
    if args.min_overlap < 0:
        parser.error(f"--min-overlap must not be negative, got {args.min_overlap}")
    known = layout.available_labs(args.root)
    unknown = [lab for lab in args.lab or [] if lab not in known]
    if unknown:
        parser.error(f"unknown lab: {', '.join(unknown)} (the labs: {', '.join(known) or 'none'})")
    checks = check_course(args.root, args.lab, args.threshold, args.min_overlap)
    print(format_table(checks) if checks else f"no submissions to compare in {args.root / layout.SUBMITTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
