"""Deadlines, extensions and late penalties: ``deadlines.toml`` into nbgrader's gradebook and its
late-penalty plugin.

**The file** (``deadlines.toml`` at the course root; ``deadlines.example.toml`` is a commented
sample)::

    [policy]                  # optional; no [policy] (or no file): lateness is shown, never penalised
    percent_per_day = 10      # 0..100
    per = "started day"       # "started day" (1 min late = 1 day) or "day" (pro rata, by the second)
    max_percent = 50          # the cap, 0..100 (default 100)
    zero_after_days = 7       # optional cut-off: more than 7 days late scores 0
    grace_minutes = 5         # optional: up to 5 min late is not penalised (default 0)

    [policy.lab02_roofline]   # optional: a lab's own policy, any of the keys above; the
    zero_after_days = 3       # others are the course's ("never": no cut-off for this lab)

    [due]                     # one line per lab, always with its time zone
    lab00_cache_sizing = 2025-10-06T23:59:00+02:00        # a TOML date-time with its UTC offset
    lab01_kv_cache = "2025-10-20 23:59 Europe/Berlin"     # or a string with an IANA zone name

    [[extension]]             # one table per student and lab
    student = "alice"         # the folder name under submitted/ (or a student in the gradebook)
    lab = "lab01_kv_cache"
    days = 3                  # extra days (fractions allowed), or instead:
    # due = 2025-10-24T12:00:00+02:00                     # a new due date for this student
    reason = "medical"        # optional, for the instructor's records (shown nowhere)

**Where nbgrader reads it.** :func:`set_deadlines` (``make deadlines``) puts each lab's due date
into the gradebook (``Assignment.duedate``, what ``nbgrader db assignment add --duedate``
sets) and each extension into the student's submission (``SubmittedAssignment.extension``,
nbgrader's ``grant_extension``). nbgrader itself then computes lateness: the submission's
``timestamp.txt`` (written by ``nbgrader submit`` / ``collect``) against the due date plus the
extension, ``SubmittedAssignment.total_seconds_late``. Nothing in the course computes lateness
another way. While grading, :class:`CourseLatePenalties` (nbgrader's ``AssignLatePenalties``,
in the autograde steps of ``nbgrader_config.py``) first writes the student's extension into
their submission (nbgrader creates the submission only when it grades it) and checks that the
gradebook's due date is the file's; nbgrader then calls :class:`CoursePenaltyPlugin`
(``c.AssignLatePenalties.plugin_class``) with the seconds late, and stores the penalty it
returns in ``SubmittedNotebook.late_submission_penalty``.

**The penalty** is a percentage of the lab's total (autograded plus hand-graded points):
:meth:`Policy.percent` of the lab's policy (:meth:`Deadlines.policy_for`: the course's, with the
keys of the lab's own ``[policy.<lab>]`` table in their place); in points :func:`penalty_points`,
never more than the score, so a score never goes below 0 and 0 stays 0. ``tools.grades`` reads the
seconds late from the gradebook (:func:`lateness`) and applies the same policy to the current
total, so a written answer graded by hand later is penalised too; :func:`refresh_penalties` (run by
``make report`` and ``make deadlines``) brings nbgrader's stored penalties up to date for the
formgrader and ``nbgrader export``.

**Bad input** stops with :class:`DeadlinesError`, whose message reads ``FILE:LINE: what is wrong``,
before anything is written: not TOML, an unknown table or key, a due date without a time zone or in
a wrong format, an unknown lab, a penalty below 0 or above 100%, a cut-off neither a number nor
``"never"``, a lab's own policy for an unknown lab or a lab without a due date, an extension for an
unknown student or lab, for a lab without a due date, twice for the same student and lab, with both
or neither of ``days`` and ``due``. :func:`set_deadlines` also refuses a due date in the past that
the gradebook does not already hold, unless ``allow_past`` (``make deadlines
DEADLINES_FLAGS=--allow-past``: re-grading an old term); extensions may lie in the past (they are
often granted after the fact). The gradebook is written in one transaction.

Why one module of this size: the file's model (policy, due dates, extensions, their line
numbers), writing it into the gradebook, nbgrader's two hooks and the report's lateness all
read the same model; apart, each would need the others' validation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import math
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties

from tools import layout
from tools.layout import ROOT, SUBMITTED, available_labs

#: The course's deadlines file, at the course root.
DEADLINES_FILE = "deadlines.toml"
#: The commented sample to start from.
EXAMPLE_FILE = "deadlines.example.toml"

DAY = 86400.0
PER_CHOICES = ("started day", "day")
POLICY_KEYS = ("percent_per_day", "per", "max_percent", "zero_after_days", "grace_minutes")
EXTENSION_KEYS = ("student", "lab", "days", "due", "reason")
TABLES = ("policy", "due", "extension")
#: ``zero_after_days = "never"``: no cut-off (a lab's own policy drops the course's cut-off).
NEVER = "never"
UTC = dt.UTC


class DeadlinesError(Exception):
    """Bad deadlines: ``str(err)`` reads ``FILE:LINE: what is wrong`` (no line: ``FILE: ...``)."""

    def __init__(self, path: Path, line: int | None, message: str):
        self.path, self.line = Path(path), line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


# --- the policy ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """How much a late submission loses, as a percentage of its total."""

    percent_per_day: float = 0.0
    per: str = "started day"
    max_percent: float = 100.0
    zero_after_days: float | None = None
    grace_minutes: float = 0.0

    def percent(self, seconds_late: float) -> float:
        """The penalty in percent (0..100) for a submission ``seconds_late`` after its due date
        (nbgrader's ``total_seconds_late``: the student's extension is already counted)."""
        if seconds_late <= self.grace_minutes * 60:
            return 0.0
        if self.zero_after_days is not None and seconds_late > self.zero_after_days * DAY:
            return 100.0
        days = seconds_late / DAY if self.per == "day" else math.ceil(seconds_late / DAY)
        return float(min(self.percent_per_day * days, self.max_percent, 100.0))

    @property
    def penalises(self) -> bool:
        return self.percent_per_day > 0 or self.zero_after_days is not None

    def describe(self) -> str:
        """The policy in words: ``10% per started day late, at most 50%; 0 points after 7 days``."""
        if not self.penalises:
            return "no late penalty"
        parts = []
        if self.percent_per_day > 0:
            rate = f"{self.percent_per_day:g}% per {self.per} late"
            parts.append(rate + (f", at most {self.max_percent:g}%" if self.max_percent < 100 else ""))
        if self.zero_after_days is not None:
            parts.append(f"0 points when more than {_days(self.zero_after_days)} late")
        if self.grace_minutes > 0:
            parts.append(f"{self.grace_minutes:g} min grace")
        return "; ".join(parts)


def _days(n: float) -> str:
    return f"{n:g} day" + ("" if n == 1 else "s")


def penalty_points(score: float, percent: float) -> float:
    """``percent`` of ``score`` in points (two decimals; all of it at 100%), never more than the
    score nor below 0."""
    score = max(0.0, float(score or 0.0))
    return score if percent >= 100 else min(score, round(score * percent / 100.0, 2))


# --- the file -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Due:
    """A lab's due date as the file states it (aware), and its line."""

    when: dt.datetime
    line: int | None


@dataclass(frozen=True)
class Extension:
    """One student's extension for one lab: ``delta`` past the lab's due date, ``to`` the new one."""

    student: str
    lab: str
    delta: dt.timedelta
    to: dt.datetime
    line: int | None


@dataclass(frozen=True)
class LabPolicy:
    """A lab's own policy (``[policy.<lab>]``): the course's with ``keys`` (as the file writes
    them) in their place, and the line of its table."""

    policy: Policy
    keys: dict[str, Any]
    line: int | None

    def changes(self) -> str:
        """What the lab's table sets: ``zero_after_days = 3, grace_minutes = 10``."""
        return ", ".join(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value:g}"
                         for key, value in self.keys.items())


@dataclass
class Deadlines:
    """The validated contents of the deadlines file (``exists`` False: no file, no penalty)."""

    path: Path
    exists: bool = False
    policy: Policy = field(default_factory=Policy)  # the course's
    due: dict[str, Due] = field(default_factory=dict)
    extensions: dict[tuple[str, str], Extension] = field(default_factory=dict)
    lab_policies: dict[str, LabPolicy] = field(default_factory=dict)  # lab -> its own policy

    def policy_for(self, lab: str | None) -> Policy:
        """The policy that penalises ``lab``: its own (``[policy.<lab>]``), else the course's."""
        own = self.lab_policies.get(lab) if lab is not None else None
        return own.policy if own is not None else self.policy

    def zone(self, lab: str) -> dt.tzinfo:
        """The time zone a lab's times are shown in: that of its due date in the file, else UTC."""
        due = self.due.get(lab)
        return due.when.tzinfo if due is not None and due.when.tzinfo is not None else UTC


class _Lines:
    """Where each table header and key of a TOML file is: the line numbers errors name.

    Covers the file's documented shape (``[policy]``, ``[due]``, ``[[extension]]`` tables of
    ``key = value`` lines); anything else falls back to its table's header line."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")

    def __init__(self, text: str):
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        table, index, counts = "", 0, {}
        in_string = None
        for number, line in enumerate(text.splitlines(), 1):
            if in_string:
                if line.count(in_string) % 2:
                    in_string = None
                continue
            header = self._HEADER.match(line)
            if header:
                table = header.group(2).strip().strip("\"'")
                index = counts.get(table, -1) + 1 if header.group(1) == "[[" else 0
                counts[table] = index
                self.headers.setdefault((table, index), number)
                continue
            key = self._KEY.match(line)
            if key:
                self.keys.setdefault((table, index, key.group(1).strip("\"'")), number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2:
                    in_string = quote

    def of(self, table: str, key: str | None = None, index: int = 0) -> int | None:
        """The line of ``key`` in the ``index``-th ``table`` (or of the table's header)."""
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.headers.get((table, index)) or (self.keys.get(("", 0, table)) if table else None)


def deadlines_path(root: Path = ROOT) -> Path:
    return Path(root) / DEADLINES_FILE


def known_students(root: Path = ROOT, db_url: str | None = None) -> set[str]:
    """Students the course knows: folders under ``submitted/`` and students in the gradebook
    (``nbgrader db student add`` / ``import``). A gradebook file that does not exist is not made."""
    from nbgrader.api import Gradebook

    from tools.course_api import gradebook_db_url

    folder = Path(root) / SUBMITTED
    names = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    url = db_url or gradebook_db_url(Path(root))
    if not _gradebook_exists(url):
        return names
    with Gradebook(url) as gb:
        return names | {s.id for s in gb.students}


def load(root: Path = ROOT, students: set[str] | None = None, db_url: str | None = None) -> Deadlines:
    """The course's deadlines file, read and validated (:class:`DeadlinesError` if it is bad).

    No file: ``Deadlines(exists=False)``, no due dates and no penalty. ``students``: the students
    extensions may name (default :func:`known_students`)."""
    path = deadlines_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Deadlines(path)
    labs = available_labs(Path(root))
    return parse(path, data, labs, lambda: known_students(root, db_url) if students is None else students)


def parse(path: Path, data: bytes, labs: list[str], students: set[str] | Callable[[], set[str]]) -> Deadlines:
    """Validate the bytes of a deadlines file. ``labs``: the course's labs; ``students``: a set of
    known student ids, or a function returning it (called only if the file has extensions)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DeadlinesError(path, data[:exc.start].count(b"\n") + 1, "not UTF-8: save the file as UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        line = int(m.group(1)) if m else None
        raise DeadlinesError(path, line, f"not valid TOML: {what}" + (f" (column {m.group(2)})" if m else "")) \
            from None
    lines = _Lines(text)
    for name in doc:
        if name not in TABLES:
            raise DeadlinesError(path, lines.of(name), f"unknown table or key '{name}' (expected "
                                 "[policy], [due] and [[extension]] tables)")
    out = Deadlines(path, exists=True)
    policy = _table(path, lines, doc.get("policy", {}), "policy")
    out.policy = _policy(path, lines, policy)
    out.due = _due(path, lines, doc.get("due", {}), labs)
    out.lab_policies = _lab_policies(path, lines, policy, out.policy, out.due, labs)
    extensions = doc.get("extension", [])
    if extensions:
        known = students() if callable(students) else students
        out.extensions = _extensions(path, lines, extensions, out.due, labs, set(known))
    return out


def _table(path: Path, lines: _Lines, value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise DeadlinesError(path, lines.of(name), f"'{name}' must be a table ([{name}] on a line of its own)")
    return value


def _number(path: Path, line: int | None, name: str, value: Any, low: float, high: float | None,
            low_open: bool = False, percent: bool = False) -> float:
    """A number within [low, high] (or (low, high] with ``low_open``), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DeadlinesError(path, line, f"{name} = {value!r}: expected a number")
    bad_low = value <= low if low_open else value < low
    if bad_low or (high is not None and value > high):
        if percent:
            raise DeadlinesError(path, line, f"{name} = {value:g}: a penalty is a percentage from 0 to 100")
        bound = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise DeadlinesError(path, line, f"{name} = {value:g}: must be {bound}"
                             + (f" and at most {high:g}" if high is not None else ""))
    return float(value)


def _policy(path: Path, lines: _Lines, table: dict) -> Policy:
    """The course's policy: the keys of ``[policy]`` (its sub-tables are the labs' own)."""
    course = {key: value for key, value in table.items() if not isinstance(value, dict)}
    return Policy(**_policy_values(path, lambda key: lines.of("policy", key), course, "[policy]"))


def _lab_policies(path: Path, lines: _Lines, table: dict, course: Policy, due: dict[str, Due],
                  labs: list[str]) -> dict[str, LabPolicy]:
    """Each ``[policy.<lab>]`` table: the course's policy with its keys in their place."""
    out = {}
    for lab, keys in table.items():
        if not isinstance(keys, dict):
            continue
        where = f"[policy.{lab}]"

        def at(key: str | None = None, lab: str = lab) -> int | None:
            return lines.of(f"policy.{lab}", key) or lines.of("policy", lab)

        if lab not in labs:
            raise DeadlinesError(path, at(), f"{where}: unknown lab '{lab}' (the course's labs: "
                                 f"{', '.join(labs) or 'none'})")
        if lab not in due:
            raise DeadlinesError(path, at(), f"{where}: {lab} has no due date in [due]: its policy would never "
                                 "apply")
        values = _policy_values(path, at, keys, where)
        out[lab] = LabPolicy(replace(course, **values), dict(keys), at())
    return out


def _policy_values(path: Path, at: Callable[[str], int | None], table: dict, where: str) -> dict[str, Any]:
    """The keys of a policy table as :class:`Policy` arguments, each checked (only those given)."""
    for key in table:
        if key not in POLICY_KEYS:
            hint = f"; a lab's own policy is a table [policy.{key}]" if where == "[policy]" else ""
            raise DeadlinesError(path, at(key), f"unknown key '{key}' in {where} "
                                 f"(allowed: {', '.join(POLICY_KEYS)}{hint})")
    out: dict[str, Any] = {}
    for key, high in (("percent_per_day", 100), ("max_percent", 100), ("grace_minutes", None)):
        if key in table:
            out[key] = _number(path, at(key), key, table[key], 0, high, percent=high == 100)
    if "zero_after_days" in table:
        out["zero_after_days"] = _cut_off(path, at("zero_after_days"), table["zero_after_days"])
    if "per" in table:
        if table["per"] not in PER_CHOICES:
            raise DeadlinesError(path, at("per"), f"per = {table['per']!r}: expected "
                                 + " or ".join(repr(p) for p in PER_CHOICES))
        out["per"] = table["per"]
    return out


def _cut_off(path: Path, line: int | None, value: Any) -> float | None:
    """``zero_after_days``: a number of days (at least 0), or ``"never"`` (no cut-off)."""
    if value == NEVER:
        return None
    if isinstance(value, str):
        raise DeadlinesError(path, line, f"zero_after_days = {value!r}: expected a number of days or "
                             f'"{NEVER}" (no cut-off)')
    return _number(path, line, "zero_after_days", value, 0, None)


_ZONE_FORM = '"2025-10-06 23:59 Europe/Berlin"'


def parse_when(value: Any, what: str) -> dt.datetime:
    """A due date with its time zone: a TOML offset date-time, or a string ``YYYY-MM-DD HH:MM[:SS]``
    followed by a UTC offset (``+02:00``, ``Z``) or an IANA zone name (``Europe/Berlin``).
    ValueError (the message names ``what``) for anything else."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{what}: {value.isoformat()} has no time zone: write its UTC offset "
                             f"({value.isoformat()}+02:00) or a zone name ({_ZONE_FORM})")
        return value
    if isinstance(value, dt.date):
        raise ValueError(f"{what}: {value.isoformat()} is a date without a time: write the time and its "
                         f"time zone ({value.isoformat()}T23:59:00+02:00 or {_ZONE_FORM})")
    if not isinstance(value, str):
        raise ValueError(f"{what}: {value!r} is not a date and time (expected 2025-10-06T23:59:00+02:00 "
                         f"or {_ZONE_FORM})")
    text = value.strip()
    try:
        when = dt.datetime.fromisoformat(text.replace(" Z", "Z"))
    except ValueError:
        when = None
    if when is not None:
        if when.tzinfo is None:
            raise ValueError(f"{what}: '{text}' has no time zone: add its UTC offset ('{text}+02:00') "
                             f"or a zone name ('{text} Europe/Berlin')")
        return when
    stamp, _, zone_name = text.rpartition(" ")
    try:
        local = dt.datetime.fromisoformat(stamp.strip()) if stamp.strip() else None
    except ValueError:
        local = None
    if local is None or local.tzinfo is not None:
        raise ValueError(f"{what}: '{text}' is not a date and time in a format the course reads "
                         f"(2025-10-06T23:59:00+02:00 or {_ZONE_FORM})")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{what}: unknown time zone '{zone_name}' (an IANA name such as Europe/Berlin, "
                         "America/New_York or UTC; abbreviations such as CEST are ambiguous)") from None
    return _in_zone(local, zone, what, text)


def _in_zone(local: dt.datetime, zone: ZoneInfo, what: str, text: str) -> dt.datetime:
    """``local`` wall-clock time in ``zone``: an error for a time the clocks skip or show twice."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        problem = "does not exist (the clocks jump over it)" if back != local else "happens twice (the clocks go back)"
        raise ValueError(f"{what}: '{text}' {problem}: write it with its UTC offset instead")
    return first


def _due(path: Path, lines: _Lines, value: Any, labs: list[str]) -> dict[str, Due]:
    table = _table(path, lines, value, "due")
    out = {}
    for lab, raw in table.items():
        line = lines.of("due", lab)
        if lab not in labs:
            raise DeadlinesError(path, line, f"unknown lab '{lab}' (the course's labs: {', '.join(labs) or 'none'})")
        try:
            out[lab] = Due(parse_when(raw, f"due date of {lab}"), line)
        except ValueError as exc:
            raise DeadlinesError(path, line, str(exc)) from None
    return out


def _extensions(path: Path, lines: _Lines, value: Any, due: dict[str, Due], labs: list[str],
                students: set[str]) -> dict[tuple[str, str], Extension]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DeadlinesError(path, lines.of("extension"), "'extension' must be [[extension]] tables, one per "
                             "student and lab")
    out: dict[tuple[str, str], Extension] = {}
    for i, entry in enumerate(value):
        out_key, ext = _extension(path, lines, i, entry, due, labs, students)
        if out_key in out:
            raise DeadlinesError(path, ext.line, f"a second extension for {ext.student} / {ext.lab} (the first "
                                 f"is on line {out[out_key].line}): keep one")
        out[out_key] = ext
    return out


def _extension(path: Path, lines: _Lines, i: int, entry: dict, due: dict[str, Due], labs: list[str],
               students: set[str]) -> tuple[tuple[str, str], Extension]:
    def at(key: str | None = None) -> int | None:
        return lines.of("extension", key, i)

    for key in entry:
        if key not in EXTENSION_KEYS:
            raise DeadlinesError(path, at(key), f"unknown key '{key}' in [[extension]] (allowed: "
                                 f"{', '.join(EXTENSION_KEYS)})")
    for key in ("student", "lab"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise DeadlinesError(path, at(key if key in entry else None), f"[[extension]] needs {key} = \"...\"")
    student, lab = entry["student"].strip(), entry["lab"].strip()
    if student not in students:
        shown = ", ".join(sorted(students)[:12]) + (", ..." if len(students) > 12 else "")
        raise DeadlinesError(path, at("student"), f"unknown student '{student}': not under {SUBMITTED}/ nor in the "
                             f"gradebook (known: {shown or 'none'}). A typo? A student who has not submitted yet "
                             f"must be in the gradebook first: nbgrader db student add {student}")
    if lab not in labs:
        raise DeadlinesError(path, at("lab"), f"unknown lab '{lab}' (the course's labs: {', '.join(labs)})")
    if lab not in due:
        raise DeadlinesError(path, at("lab"), f"{lab} has no due date in [due]: an extension needs one")
    if "reason" in entry and not isinstance(entry["reason"], str):
        raise DeadlinesError(path, at("reason"), "reason must be a string")
    delta = _extra_time(path, at, entry, f"{student} / {lab}", due[lab].when)
    return (student, lab), Extension(student, lab, delta, due[lab].when + delta, at())


def _extra_time(path: Path, at: Callable[..., int | None], entry: dict, who: str, lab_due: dt.datetime) -> dt.timedelta:
    """The time an extension adds to the lab's due date: its ``days``, or up to its ``due``."""
    if ("days" in entry) == ("due" in entry):
        raise DeadlinesError(path, at(), f"extension for {who}: give either days = N (extra days) or due = <new "
                             "due date>, " + ("not both" if "days" in entry else "one of them"))
    if "days" in entry:
        return dt.timedelta(days=_number(path, at("days"), "days", entry["days"], 0, None, low_open=True))
    try:
        to = parse_when(entry["due"], f"extended due date of {who}")
    except ValueError as exc:
        raise DeadlinesError(path, at("due"), str(exc)) from None
    if to <= lab_due:
        raise DeadlinesError(path, at("due"), f"extended due date {show(to)} of {who} is not after the lab's due "
                             f"date {show(lab_due)}: an extension moves it later")
    return to - lab_due


# --- times in words -----------------------------------------------------------------------------

def show(when: dt.datetime, zone: dt.tzinfo | None = None) -> str:
    """``2025-10-06 23:59 +02:00`` (seconds shown only when not 0); naive times are UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if zone is not None:
        when = when.astimezone(zone)
    offset = when.strftime("%z")
    offset = "UTC" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return when.strftime("%Y-%m-%d %H:%M" + (":%S" if when.second else "")) + f" {offset}"


def duration(seconds: float) -> str:
    """``1 d 3 h``, ``5 h 12 min``, ``3 min``, ``40 s``: the two largest units, rounded down."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    units = [("d", seconds // 86400), ("h", seconds % 86400 // 3600), ("min", seconds % 3600 // 60)]
    while units and units[0][1] == 0:
        units.pop(0)
    return " ".join(f"{n} {u}" for u, n in units[:2] if n)


def _utc(when: dt.datetime) -> dt.datetime:
    """An aware time as the gradebook stores it: naive UTC."""
    return when.astimezone(UTC).replace(tzinfo=None)


# --- one submission's lateness, as nbgrader computed it ---------------------------------------

@dataclass(frozen=True)
class Lateness:
    """A graded submission against its due date, from nbgrader's gradebook
    (``SubmittedAssignment``: ``timestamp``, ``duedate`` with the extension, ``total_seconds_late``)
    and the policy of the deadlines file. Times are aware, in the lab's zone."""

    lab_due: dt.datetime
    due: dt.datetime
    submitted: dt.datetime | None
    seconds_late: float
    percent: float
    policy: Policy

    @property
    def extended(self) -> bool:
        return self.due != self.lab_due

    @property
    def late(self) -> bool:
        return self.seconds_late > 0

    def note(self) -> str:
        """Why the submission loses what it loses: ``late 1 d 3 h: -20% (10% per started day late)``,
        ``extension to 2025-10-09 23:59 +02:00: on time``; "" when on time without an extension."""
        parts = [f"extension to {show(self.due)}"] if self.extended else []
        if self.submitted is None:
            parts.append("no submission time (no timestamp.txt): not checked for lateness")
        elif not self.late:
            if self.extended:
                parts.append("on time")
        else:
            parts.append(f"late {duration(self.seconds_late)}: " + self.why())
        return "; ".join(parts)

    def why(self) -> str:
        """What the lab's policy makes of the lateness: ``-20% (10% per started day late)``,
        ``within the 5 min grace period, no penalty``."""
        policy = self.policy
        if self.percent == 0:
            if self.seconds_late <= policy.grace_minutes * 60:
                return f"within the {policy.grace_minutes:g} min grace period, no penalty"
            return "no penalty (no late policy)" if not policy.penalises else "no penalty"
        if policy.zero_after_days is not None and self.seconds_late > policy.zero_after_days * DAY:
            return f"-100% (more than {_days(policy.zero_after_days)} late scores 0)"
        capped = self.percent >= policy.max_percent and policy.max_percent < 100
        return f"-{self.percent:g}% ({policy.percent_per_day:g}% per {policy.per} late" + \
            (f", capped at {policy.max_percent:g}%" if capped else "") + ")"


def lateness(submission: Any, deadlines: Deadlines) -> Lateness | None:
    """The lateness of one of nbgrader's ``SubmittedAssignment`` rows; None if its lab has no due date.

    The seconds late are nbgrader's own ``total_seconds_late`` (timestamp against the due date
    plus the extension); the percent is the lab's policy in the deadlines file."""
    lab_due = submission.assignment.duedate
    if lab_due is None:
        return None
    lab = submission.assignment.name
    zone, policy = deadlines.zone(lab), deadlines.policy_for(lab)
    seconds = float(submission.total_seconds_late)
    stamp = submission.timestamp
    return Lateness(lab_due=show_zone(lab_due, zone), due=show_zone(submission.duedate, zone),
                    submitted=None if stamp is None else show_zone(stamp, zone), seconds_late=seconds,
                    percent=policy.percent(seconds), policy=policy)


def show_zone(naive_utc: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """A gradebook time (naive UTC) as an aware time in ``zone``."""
    return naive_utc.replace(tzinfo=UTC).astimezone(zone)


# --- nbgrader: the late-penalty plugin and the step that prepares it --------------------------

class CoursePenaltyPlugin(LateSubmissionPlugin):
    """nbgrader's late-penalty plugin (``c.AssignLatePenalties.plugin_class``): the policy of the
    lab being graded in the course's deadlines file. nbgrader calls it only for a submission with
    ``total_seconds_late`` > 0 (the extension already counted) and stores what it returns as the
    notebook's penalty."""

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        policy = getattr(self.parent, "policy", None)
        if policy is None:  # a plain AssignLatePenalties: read the file of the configured course
            root = Path(self.config.get("CourseDirectory", {}).get("root", ".") or ".")
            policy = load(root).policy_for(getattr(self.parent, "assignment_id", None))
        percent = policy.percent(total_seconds_late)
        self.log.info("%s is %s late: %s -> %g%%", student_id, duration(total_seconds_late), policy.describe(),
                      percent)
        return penalty_points(score, percent) if percent > 0 else None


class CourseLatePenalties(AssignLatePenalties):
    """nbgrader's ``AssignLatePenalties`` step, after the student's extension from the deadlines file
    is written into their submission (nbgrader makes the submission only when it grades it) and
    the gradebook's due date is checked against the file's (``make deadlines`` sets it)."""

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        info = resources["nbgrader"]
        root = course_root(resources, self.config)
        deadlines = load(root, db_url=info["db_url"])
        self.policy = deadlines.policy_for(info["assignment"])
        if deadlines.exists:
            prepare_submission(info["db_url"], deadlines, info["assignment"], info["student"])
        return super().preprocess(nb, resources)


def course_root(resources: dict, config: Any) -> Path:
    """The course folder of a notebook nbgrader converts: above ``autograded/<student>/<lab>``
    (the notebook being graded, or turned into feedback), else ``c.CourseDirectory.root``."""
    folder = resources.get("metadata", {}).get("path")
    if folder and Path(folder).resolve().parent.parent.name == layout.AUTOGRADED:
        return Path(folder).resolve().parents[2]
    return Path(config.get("CourseDirectory", {}).get("root", ".") or ".")


def prepare_submission(db_url: str, deadlines: Deadlines, lab: str, student: str) -> None:
    """Before nbgrader computes a submission's lateness: its lab's due date in the gradebook must be
    the file's (else :class:`DeadlinesError`), and its extension becomes the file's."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        problem = _due_mismatch(deadlines, lab, gb.find_assignment(lab).duedate)
        if problem:
            raise DeadlinesError(deadlines.path, *problem)
        submission = gb.find_submission(lab, student)
        ext = deadlines.extensions.get((student, lab))
        submission.extension = ext.delta if ext else None
        gb.db.commit()


def _due_mismatch(deadlines: Deadlines, lab: str, held: dt.datetime | None) -> tuple[int | None, str] | None:
    """(line, message) when the gradebook's due date ``held`` of ``lab`` is not the file's."""
    due = deadlines.due.get(lab)
    wanted = _utc(due.when) if due else None
    if held == wanted:
        return None
    here = f"due {show(due.when)} here" if due else "no due date here"
    there = show(held, deadlines.zone(lab)) if held else "none"
    return (due.line if due else None, f"{lab}: {here}, {there} in the gradebook: run `make deadlines`")


def check_ready(root: Path = ROOT, db_url: str | None = None) -> Deadlines:
    """The deadlines file, validated, with every due date in the gradebook as the file states it
    (:class:`DeadlinesError` otherwise): what grading needs."""
    from nbgrader.api import Gradebook, MissingEntry

    from tools.course_api import gradebook_db_url

    deadlines = load(root, db_url=db_url)
    if not deadlines.exists:
        return deadlines
    with Gradebook(db_url or gradebook_db_url(Path(root))) as gb:
        for lab in available_labs(Path(root)):
            try:
                held = gb.find_assignment(lab).duedate
            except MissingEntry:
                held = None
            problem = _due_mismatch(deadlines, lab, held)
            if problem:
                raise DeadlinesError(deadlines.path, *problem)
    return deadlines


# --- the gradebook ------------------------------------------------------------------------------

@dataclass
class SetResult:
    """What :func:`set_deadlines` wrote: the deadlines, the gradebook, the lateness of graded work."""

    deadlines: Deadlines
    db_url: str
    assessed: list[tuple[str, str, Lateness]] = field(default_factory=list)


def set_deadlines(root: Path = ROOT, allow_past: bool = False, now: dt.datetime | None = None) -> SetResult:
    """``make deadlines``: validate the file, then, in one transaction, put each lab's due date
    into the gradebook (none for a lab the file does not list), each submission's extension
    (none for a submission the file does not list), and the penalty of every graded submission.

    A due date before ``now`` that the gradebook does not already hold is refused unless
    ``allow_past``. Any error leaves the gradebook as it was (a gradebook that does not exist
    yet is made only once every check has passed)."""
    from nbgrader.api import Gradebook

    from tools.course_api import _ensure_venv_on_path, _load_config, gradebook_db_url

    root = Path(root)
    url = gradebook_db_url(root)
    deadlines = load(root)
    if not deadlines.exists:
        raise DeadlinesError(deadlines.path, None, f"no such file: copy {EXAMPLE_FILE} to {DEADLINES_FILE} and "
                             "edit it (README: 'Deadlines, extensions and late penalties')")
    now = now or dt.datetime.now(UTC)
    held = _held_due_dates(url)
    for lab, due in deadlines.due.items():
        if due.when < now and held.get(lab) != _utc(due.when) and not allow_past:
            raise DeadlinesError(deadlines.path, due.line, f"{lab}: due date {show(due.when)} is in the past "
                                 "(a typo in the year?). If you mean it (re-grading an old term), run "
                                 "`make deadlines DEADLINES_FLAGS=--allow-past`")
    _ensure_venv_on_path()  # a new gradebook runs `alembic` from PATH
    course_id = _load_config(root).CourseDirectory.get("course_id", "default_course")
    with Gradebook(url, course_id) as gb:
        try:
            assessed = _write(gb, deadlines, available_labs(root), course_id)
            gb.db.commit()
        except BaseException:
            gb.db.rollback()
            raise
    return SetResult(deadlines, url, assessed)


def _gradebook_exists(url: str) -> bool:
    """False only for a SQLite gradebook whose file is not there (opening it would make one)."""
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


def _held_due_dates(url: str) -> dict[str, dt.datetime | None]:
    """Each lab's due date in the gradebook (naive UTC), without making a gradebook."""
    from nbgrader.api import Gradebook

    if not _gradebook_exists(url):
        return {}
    with Gradebook(url) as gb:
        return {a.name: a.duedate for a in gb.assignments}


def _write(gb: Any, deadlines: Deadlines, labs: list[str], course_id: str) -> list[tuple[str, str, Lateness]]:
    """Due dates, extensions and penalties into an open gradebook session (not committed)."""
    from nbgrader.api import Assignment, SubmittedAssignment

    existing = {a.name: a for a in gb.db.query(Assignment).all()}
    for lab in labs:
        due = deadlines.due.get(lab)
        if lab not in existing and due is None:
            continue
        assignment = existing.get(lab) or Assignment(name=lab, course_id=course_id)
        assignment.duedate = _utc(due.when) if due else None
        gb.db.add(assignment)
    for submission in gb.db.query(SubmittedAssignment).all():
        if submission.assignment.name in labs:
            ext = deadlines.extensions.get((submission.student.id, submission.assignment.name))
            submission.extension = ext.delta if ext else None
    gb.db.flush()
    return _store_penalties(gb, deadlines, labs)


def _store_penalties(gb: Any, deadlines: Deadlines, labs: list[str]) -> list[tuple[str, str, Lateness]]:
    """Each submitted notebook's ``late_submission_penalty`` as nbgrader's AssignLatePenalties would
    set it with :class:`CoursePenaltyPlugin`, from its score now. Returns the submissions with a due date."""
    from nbgrader.api import SubmittedNotebook

    assessed = []
    for notebook in gb.db.query(SubmittedNotebook).all():
        submission = notebook.assignment
        lab = submission.assignment.name
        if lab not in labs:
            continue
        late = lateness(submission, deadlines)
        percent = late.percent if late else 0.0
        notebook.late_submission_penalty = penalty_points(notebook.score, percent) if percent > 0 else None
        if late is not None:
            assessed.append((submission.student.id, lab, late))
    return sorted(assessed, key=lambda item: (item[1], item[0]))


def refresh_penalties(root: Path = ROOT) -> None:
    """Bring nbgrader's stored penalties up to date with the scores now (hand grading, integrity
    holds), for the formgrader and ``nbgrader export``; the course's own outputs compute them
    from the total anyway. Due dates and extensions are left as they are (``make deadlines``)."""
    from nbgrader.api import Gradebook

    from tools.course_api import gradebook_db_url

    url = gradebook_db_url(Path(root))
    if not _gradebook_exists(url):
        return
    deadlines = load(root)
    with Gradebook(url) as gb:
        try:
            _store_penalties(gb, deadlines, available_labs(Path(root)))
            gb.db.commit()
        except BaseException:
            gb.db.rollback()
            raise


def out_of_sync(root: Path = ROOT) -> list[str]:
    """What the gradebook holds differently from the deadlines file (due dates, extensions of
    graded submissions), each as ``FILE:LINE: ...: run `make deadlines```."""
    from nbgrader.api import Gradebook, SubmittedAssignment

    from tools.course_api import gradebook_db_url

    url = gradebook_db_url(Path(root))
    deadlines = load(root)
    if not deadlines.exists or not _gradebook_exists(url):
        return []
    out = []
    held = _held_due_dates(url)
    for lab in available_labs(Path(root)):
        problem = _due_mismatch(deadlines, lab, held[lab]) if lab in held else None
        if problem:
            out.append(str(DeadlinesError(deadlines.path, *problem)))
    with Gradebook(url) as gb:
        for sub in gb.db.query(SubmittedAssignment).all():
            ext = deadlines.extensions.get((sub.student.id, sub.assignment.name))
            if (sub.extension or dt.timedelta(0)) != (ext.delta if ext else dt.timedelta(0)):
                out.append(str(DeadlinesError(deadlines.path, ext.line if ext else None,
                                              f"the extension of {sub.student.id} / {sub.assignment.name} is not "
                                              "the gradebook's: run `make deadlines`")))
    return out


# --- what the course's outputs show -------------------------------------------------------------

def report_html(rows: list[Any]) -> str:
    """The class report's section on deadlines (``tools.grades.GradeRow`` rows): the policy, then
    every submission that was late, had an extension or has no submission time; "" if no lab has
    a due date."""
    dated = [r for r in rows if getattr(r, "lateness", None) is not None]
    if not dated:
        return ""
    e = html.escape
    shown = [r for r in dated if r.lateness.late or r.lateness.extended or r.lateness.submitted is None]
    parts = [f"<h2 id='late'>Deadlines and late penalties ({sum(r.lateness.late for r in dated)} late)</h2>",
             f"<p>{_policies_html(dated)} The penalty is a percentage of the total "
             "(autograded + by hand); <b>final</b> = total - penalty, never below 0 (* provisional: written "
             "answers not graded by hand yet count 0). Lateness is nbgrader's (the submission's "
             "<code>timestamp.txt</code> against the due date plus the extension).</p>",
             "<table><tr><th>student</th><th>lab</th><th>due</th><th>submitted</th><th>late by</th>"
             "<th>penalty</th><th>total</th><th>final</th><th>why</th></tr>"]
    for r in shown:
        late, star = r.lateness, "*" if r.manual_pending else ""
        parts.append(f"<tr><td>{e(r.student)}</td><td>{e(r.lab)}</td><td>{e(show(late.due))}</td>"
                     f"<td>{e(show(late.submitted)) if late.submitted else ''}</td>"
                     f"<td>{e(duration(late.seconds_late)) if late.late else ''}</td>"
                     f"<td>{late.percent:g}% ({r.late_penalty:g} points)</td>"
                     f"<td>{r.total:g}{star} / {r.total_max:g}</td><td>{r.final:g}{star} / {r.total_max:g}</td>"
                     f"<td>{e(late.note())}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _policies_html(rows: list[Any]) -> str:
    """``Policy: ...``, or each lab's where the labs' policies differ."""
    described = {r.lab: r.lateness.policy.describe() for r in rows}
    if len(set(described.values())) == 1:
        return f"Policy: {html.escape(next(iter(described.values())))}."
    return "Policies: " + "; ".join(f"<b>{html.escape(lab)}</b>: {html.escape(text)}"
                                    for lab, text in described.items()) + "."


# --- the demo -----------------------------------------------------------------------------------

DEMO_MARK = "# Written by `make demo`"
DEMO_BASE = dt.datetime(2025, 10, 6, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))
#: The demo's sample submissions handed in late, by (student, index of the lab): time after the due date.
DEMO_LATE = {("mistakes", 0): dt.timedelta(days=1, hours=3),       # -20%
             ("solution", 1): dt.timedelta(days=2, hours=5),       # on time with its 3-day extension
             ("solution", 2): dt.timedelta(days=5, hours=1),       # 6 started days: capped at 50%
             ("mistakes", 2): dt.timedelta(days=8)}                # past the 7-day cut-off: 0
DEMO_EXTENSION = ("solution", 1, 3)


def demo_text(labs: list[str]) -> str:
    """The demo's deadlines file: an old term's due dates two weeks apart, the policy, one extension."""
    lines = [f"{DEMO_MARK} for its sample submissions; it rewrites this file while this line is here.",
             f"# Delete this line to keep your own edits (or start from {EXAMPLE_FILE}).", "",
             "[policy]", "percent_per_day = 10", 'per = "started day"', "max_percent = 50", "zero_after_days = 7",
             "", "[due]"]
    lines += [f"{lab} = {(DEMO_BASE + dt.timedelta(days=14 * i)).isoformat()}" for i, lab in enumerate(labs)]
    student, index, days = DEMO_EXTENSION
    if index < len(labs):
        lines += ["", "[[extension]]", f'student = "{student}"', f'lab = "{labs[index]}"', f"days = {days}",
                  'reason = "demo: an extension that makes a late submission on time"']
    return "\n".join(lines) + "\n"


def demo(root: Path, samples: list[Path]) -> list[str]:
    """The demo's deadlines: write ``deadlines.toml`` (unless the course has its own, without the
    demo's first line), give each sample submission (``samples``: paths under ``submitted/``) a
    ``timestamp.txt``, on time or late as in DEMO_LATE, then :func:`set_deadlines` (past dates
    allowed: the demo re-grades an old term). Returns lines to print."""
    root = Path(root)
    path = deadlines_path(root)
    labs = available_labs(root)
    ours = not path.exists() or path.read_text(encoding="utf-8", errors="replace").startswith(DEMO_MARK)
    if ours:
        path.write_text(demo_text(labs), encoding="utf-8")
    deadlines = load(root)
    for student, lab in _submissions_of(root, samples):
        folder = layout.submission_dir(student, lab, root)
        if lab in deadlines.due and folder.is_dir():
            late_by = DEMO_LATE.get((student, labs.index(lab)), dt.timedelta(hours=-2))
            stamp = (deadlines.due[lab].when + late_by).astimezone(UTC)
            (folder / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    result = set_deadlines(root, allow_past=True)
    whose = "the demo's sample" if ours else "the course's own file, used as it is"
    return [f"{DEADLINES_FILE} ({whose}): {len(deadlines.due)} due dates, {len(deadlines.extensions)} "
            f"extension(s), set in {result.db_url}", f"policy: {deadlines.policy.describe()}"]


def _submissions_of(root: Path, paths: list[Path]) -> list[tuple[str, str]]:
    """The (student, lab) folders under ``submitted/`` that ``paths`` lie in."""
    pairs = set()
    for path in paths:
        try:
            parts = Path(path).relative_to(root / SUBMITTED).parts
        except ValueError:
            continue
        if len(parts) >= 2:
            pairs.add((parts[0], parts[1]))
    return sorted(pairs)


# --- command line -------------------------------------------------------------------------------

def summary(deadlines: Deadlines) -> list[str]:
    """The file in words: the course's policy, each lab's due date (and its own policy, with
    what its table changes), each extension."""
    out = [f"policy: {deadlines.policy.describe()}"]
    for lab, due in deadlines.due.items():
        out.append(f"  {lab:<22} due {show(due.when)}   ({show(due.when, UTC)})")
        own = deadlines.lab_policies.get(lab)
        if own is not None:
            out.append(f"  {'':<22} its own policy ({own.changes()}): {own.policy.describe()}")
    for ext in deadlines.extensions.values():
        out.append(f"  extension {ext.student} / {ext.lab}: due {show(ext.to, deadlines.zone(ext.lab))} "
                   f"(+{duration(ext.delta.total_seconds())})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.late", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "set"],
                        help="check: validate deadlines.toml and print it; set: put it into the gradebook")
    parser.add_argument("--allow-past", action="store_true",
                        help="set: accept due dates in the past (re-grading an old term)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the course folder (default: this repository)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            deadlines = load(args.root)
            if not deadlines.exists:
                print(f"{deadlines.path}: no such file: no due dates, no late penalty (see {EXAMPLE_FILE})")
                return 0
            print(f"{deadlines.path}: valid")
            print("\n".join(summary(deadlines)))
            return 0
        result = set_deadlines(args.root, allow_past=args.allow_past)
    except DeadlinesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary(result.deadlines)))
    print(f"set in the gradebook {result.db_url}")
    noted = [(s, lab, x) for s, lab, x in result.assessed if x.note()]
    if result.assessed:
        print(f"graded submissions with a due date: {len(result.assessed)}, late: "
              f"{sum(x.late for *_, x in result.assessed)}")
    for student, lab, x in noted:
        print(f"  {student} / {lab}: {x.note()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
