"""Grade on submit: a worker that grades each new submission in nbgrader's exchange.

    python -m tools.grade_on_submit                 # poll every 10 s until Ctrl-C or SIGTERM
    python -m tools.grade_on_submit --once          # grade what is new, then exit (cron, tests)
    python -m tools.grade_on_submit --lab lab00_cache_sizing --interval 30

It watches the exchange's inbound folder (``<exchange root>/<course id>/inbound/``, one entry
``<student>+<lab>+<timestamp>[+random]`` per ``nbgrader submit``) and, for each new one, runs
the course's own grading path for that student only:

1. collect: the entry is copied into ``submitted/<student>/<lab>/`` as ``nbgrader collect
   --update`` would (the same filters; a submission newer than the one there replaces it), but
   exactly the entry that was judged complete, never a newer one still being copied;
2. autograde: :func:`tools.pipeline.grade`, what ``make autograde`` runs (sandbox, verdict,
   hand grades kept, integrity check, late penalties), for this (student, lab) only;
3. feedback: nbgrader's ``generate_feedback`` for the student (or the page saying why the
   submission could not be graded), then ``release_feedback`` into the exchange, where the
   student's ``nbgrader fetch_feedback`` (or the Assignments tab) finds it.

What it graded is kept in ``.grade_on_submit.json`` in the course folder (written atomically):
a restart does not grade anything again, a resubmission (a newer timestamp) is graded again. An
entry counts only once it has its ``timestamp.txt`` (``nbgrader submit`` writes it after the
notebook) and nothing in it changed for ``--settle`` seconds. A submission that fails is logged
and tried again on a later pass, ``--max-attempts`` times at most, ``--retry-after`` seconds
apart; nothing in the exchange is ever moved or deleted. SIGINT or SIGTERM stops the worker
after the submission being graded; a second one abandons that submission (graded again at the
next start). A lock file, ``.grade_on_submit.lock``, keeps a second worker off the course.
Every graded submission is one line of the log (stderr and ``logs/grade_on_submit.log``).

Exchange settings (root, course id) are read from the same nbgrader_config.py files nbgrader's
own commands read: Jupyter's config folders (``/etc/jupyter``, ``$JUPYTER_CONFIG_DIR``, ...),
then the course folder's. Run it as the instructor's Unix user (the owner of the inbound folder).

Why one module of this size: it is one service with one state file. Its parts are small and
apart (the exchange's entries, the state, one submission's grading in :class:`CourseGrader`,
signals and the lock, the :class:`Worker` that ties them), and the worker's bookkeeping is
tested with a stand-in for the grading (tests/test_grade_on_submit.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import pwd
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from tools import layout
from tools.layout import ROOT, available_labs

STATE_FILE = ".grade_on_submit.json"
LOCK_FILE = ".grade_on_submit.lock"
LOG_FILE = Path("logs") / "grade_on_submit.log"
#: nbgrader submit writes this file after the notebook: an entry without it is still being copied
TIMESTAMP_FILE = "timestamp.txt"
SECRET_FILE = "submission_secret.txt"  # release_feedback names the feedback page with it

DEFAULT_INTERVAL = 10.0
DEFAULT_SETTLE = 2.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_AFTER = 60.0

log = logging.getLogger("grade_on_submit")


# --- the exchange ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One submission in the inbound folder: ``<student>+<lab>+<timestamp>[+random]``."""

    path: Path
    student: str
    lab: str
    timestamp: str  # as nbgrader wrote it, e.g. "2026-10-05 21:59:03.123456 UTC"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def key(self) -> str:
        """The state's key: one record per student and lab."""
        return f"{self.student}/{self.lab}"

    @property
    def when(self) -> dt.datetime:
        return parse_timestamp(self.timestamp)


def parse_timestamp(text: str) -> dt.datetime:
    """An exchange timestamp as an aware UTC datetime (nbgrader's own parser)."""
    from nbgrader.utils import parse_utc

    return parse_utc(text)


def parse_entry(path: Path, labs: list[str]) -> Entry | None:
    """The inbound entry at ``path``, or None if it is no submission of one of ``labs``.

    A student id may contain ``+`` (nbgrader allows it): the lab is found as a whole field."""
    for lab in labs:
        student, sep, rest = path.name.partition(f"+{lab}+")
        if sep and student and rest:
            timestamp = rest.split("+", 1)[0]
            try:
                parse_timestamp(timestamp)
            except (ValueError, OverflowError):
                return None
            return Entry(path, student, lab, timestamp)
    return None


def exchange_config(root: Path) -> Any:  # -> traitlets Config
    """nbgrader's configuration as its commands see it when started in the course folder:
    nbgrader_config.py and .json of every Jupyter config folder, then the course folder's (which
    wins)."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

    config = Config()
    for folder in [*reversed(jupyter_config_path()), str(root)]:  # lowest priority first
        for loader in (PyFileConfigLoader("nbgrader_config.py", path=folder),
                       JSONFileConfigLoader("nbgrader_config.json", path=folder)):
            try:
                config.merge(loader.load_config())
            except ConfigFileNotFound:
                continue
    return config


def inbound_folder(root: Path, exchange: Path | None = None) -> Path:
    """``<exchange root>/<course id>/inbound``; ``exchange`` overrides the configured root."""
    from nbgrader.exchange.default.exchange import Exchange

    config = exchange_config(root)
    course_id = config.CourseDirectory.get("course_id") or ""
    if not course_id:
        raise ValueError(f"no c.CourseDirectory.course_id in {root / 'nbgrader_config.py'}")
    base = exchange or Path(config.Exchange.get("root") or Exchange.class_traits()["root"].default())
    return Path(base) / str(course_id) / "inbound"


def newest_entries(inbound: Path, labs: list[str]) -> list[Entry]:
    """The newest entry of each (student, lab) in ``inbound``, sorted by time of submission.

    The newest is the one ``nbgrader collect --update`` takes, complete or not."""
    newest: dict[str, Entry] = {}
    try:
        paths = [p for p in inbound.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []
    for path in paths:
        entry = parse_entry(path, labs)
        if entry is not None and (entry.key not in newest or entry.when > newest[entry.key].when):
            newest[entry.key] = entry
    return sorted(newest.values(), key=lambda e: (e.when, e.key))


def fingerprint(path: Path) -> tuple:
    """What an entry holds now: every file's relative path, size and modification time."""
    out = []
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            full = Path(dirpath) / name
            try:
                st = full.stat()
            except FileNotFoundError:  # removed while we looked: not settled
                continue
            out.append((str(full.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


READY, SETTLING, INCOMPLETE = "ready", "settling", "incomplete"


class Settling:
    """Tells when an entry is complete: it has its timestamp.txt and has not changed for
    ``settle`` seconds (two looks at least that far apart saw the same files)."""

    def __init__(self, settle: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle = settle
        self.clock = clock
        self._seen: dict[str, tuple[tuple, float]] = {}  # entry name -> (fingerprint, since)

    def check(self, entry: Entry) -> str:
        """READY, SETTLING (complete, but changed less than ``settle`` seconds ago, or seen
        once only) or INCOMPLETE (no timestamp.txt yet)."""
        if not (entry.path / TIMESTAMP_FILE).is_file():
            return INCOMPLETE
        now, print_ = self.clock(), fingerprint(entry.path)
        seen = self._seen.get(entry.name)
        if seen is None or seen[0] != print_:
            self._seen[entry.name] = (print_, now)
            return READY if self.settle <= 0 else SETTLING
        return READY if now - seen[1] >= self.settle else SETTLING

    def keep_only(self, names: set[str]) -> None:
        """Forget the entries not in ``names`` (gone, or superseded by a newer submission)."""
        self._seen = {name: seen for name, seen in self._seen.items() if name in names}


# --- what was graded ------------------------------------------------------------------------------

GRADING, GRADED, FAILED = "grading", "graded", "failed"


@dataclass
class Record:
    """The latest grading of one student's lab: which entry, how it went, how often it was tried."""

    entry: str
    timestamp: str
    status: str  # GRADING (left so by a worker that stopped while grading), GRADED or FAILED
    attempts: int = 0
    score: float | None = None  # autograded points of record (integrity holds included)
    max_score: float | None = None
    seconds: float = 0.0
    error: str = ""
    held: bool = False  # points held for review by the integrity check
    feedback_released: bool = False
    updated: str = ""  # ISO time (UTC) of the latest change

    def age(self, now: dt.datetime) -> float:
        """Seconds since the latest change (infinite when unknown)."""
        try:
            return (now - dt.datetime.fromisoformat(self.updated)).total_seconds()
        except ValueError:
            return float("inf")


class StateError(Exception):
    """The state file cannot be read."""


def load_state(path: Path) -> dict[str, Record]:
    """The records of ``path`` (none if it does not exist)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {key: Record(**value) for key, value in data["submissions"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path} cannot be read ({type(exc).__name__}: {exc}); move it away to grade "
                         "every submission in the exchange again (hand grades are kept)") from exc


def save_state(path: Path, records: dict[str, Record]) -> None:
    """Write ``records`` to ``path`` atomically (a reader sees the old file or the new one)."""
    data = {"version": 1, "submissions": {key: asdict(r) for key, r in sorted(records.items())}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Policy:
    """When a failed submission is tried again."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_after: float = DEFAULT_RETRY_AFTER


def why_grade(entry: Entry, record: Record | None, policy: Policy, now: dt.datetime) -> str | None:
    """Why ``entry`` is to be graded now ("new", "resubmitted", "retry"), or None."""
    if record is None:
        return "new"
    if entry.name != record.entry:
        try:
            newer = entry.when > parse_timestamp(record.timestamp)
        except (ValueError, OverflowError):
            newer = True
        return "resubmitted" if newer else None
    if record.status == GRADED or record.attempts >= policy.max_attempts:
        return None
    return "retry" if record.age(now) >= policy.retry_after else None


# --- one submission through the course's grading path -------------------------------------------

@dataclass
class Outcome:
    """What grading one submission gave."""

    success: bool
    score: float | None = None
    max_score: float | None = None
    error: str = ""
    held: bool = False
    feedback_released: bool = False


class CourseProblem(Exception):
    """The course, not the submission, is not ready to grade (deadlines.toml): nothing is graded
    and no attempt is counted until it is fixed."""


class Abandoned(Exception):
    """A second stop signal came while a submission was being graded."""


def collect_entry(root: Path, entry: Entry, coursedir: Any) -> Path:
    """``nbgrader collect --update`` of exactly ``entry``: ``submitted/<student>/<lab>/``
    replaced by a copy of it, filtered as nbgrader's collect filters (``CourseDirectory.ignore``,
    ``include``, ``max_file_size``). The copy is made beside it and renamed into place."""
    from nbgrader.utils import ignore_patterns

    _warn_if_not_owner(entry)
    dest = layout.submission_dir(entry.student, entry.lab, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{entry.lab}.collecting"
    old = dest.parent / f".{entry.lab}.replaced"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(entry.path, tmp, ignore=ignore_patterns(
        exclude=coursedir.ignore, include=coursedir.include, max_file_size=coursedir.max_file_size))
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _warn_if_not_owner(entry: Entry) -> None:
    """nbgrader's collect check: an entry owned by another Unix user than the student it names."""
    try:
        owner = pwd.getpwuid(entry.path.stat().st_uid).pw_name
    except KeyError:
        return  # no such user here (a shared filesystem, students unknown to this machine)
    if owner != entry.student and pwd.getpwnam(owner).pw_uid != 0:
        try:
            pwd.getpwnam(entry.student)
        except KeyError:
            return  # students are not Unix users here
        log.warning("%s claims to be submitted by %s but is owned by %s: cheating attempt?",
                    entry.path, entry.student, owner)


class CourseGrader:
    """Grades one entry with the course's pipeline: collect, :func:`tools.pipeline.grade`,
    feedback, release into the exchange."""

    def __init__(self, root: Path, exchange: Path | None = None,
                 checkpoint: Callable[[], None] = lambda: None) -> None:
        self.root = Path(root)
        self.exchange = exchange
        self.checkpoint = checkpoint  # raises Abandoned between steps once a second signal came

    def api(self) -> Any:  # -> NbGraderAPI
        """nbgrader's API with the course's configuration and the exchange settings."""
        from traitlets.config import Config

        from tools.course_api import make_api

        api = make_api(self.root)
        full = exchange_config(self.root)
        extra = Config({name: section for name, section in full.items() if name.startswith("Exchange")})
        if self.exchange is not None:
            extra.Exchange.root = str(self.exchange)
        api.config.merge(extra)
        return api

    def __call__(self, entry: Entry) -> Outcome:
        from tools import late, pipeline

        api = self.api()
        collect_entry(self.root, entry, api.coursedir)
        self.checkpoint()
        try:
            runs, verdicts = pipeline.grade(self.root, pairs=[(entry.student, entry.lab)], verbose=False)
        except late.DeadlinesError as exc:
            raise CourseProblem(str(exc)) from exc
        self.checkpoint()
        run = runs[0]
        outcome = Outcome(run.success, error=run.error)
        verdict = verdicts.get((entry.student, entry.lab))
        outcome.held = bool(verdict is not None and verdict.held)
        if run.success:
            outcome.score, outcome.max_score = self.score(entry)
            result = api.generate_feedback(entry.lab, entry.student, force=True)
            if not result["success"]:
                raise RuntimeError(f"generate_feedback failed: {_tail(result)}")
        else:  # the page saying why (pipeline.grade wrote it) is released like feedback
            self._feedback_beside_submission(entry)
        self.checkpoint()
        result = api.release_feedback(entry.lab, entry.student)
        if not result["success"]:
            raise RuntimeError(f"release_feedback failed: {_tail(result)}")
        outcome.feedback_released = True
        return outcome

    def score(self, entry: Entry) -> tuple[float, float]:
        """The submission's autograded points of record and their maximum, from the gradebook."""
        from nbgrader.api import Gradebook

        from tools.course_api import gradebook_db_url
        from tools.grades import test_scores

        with Gradebook(gradebook_db_url(self.root)) as gb:
            cells = test_scores(gb.find_submission_notebook(entry.lab, entry.lab, entry.student))
        return sum(p for p, _ in cells.values()), sum(m for _, m in cells.values())

    def _feedback_beside_submission(self, entry: Entry) -> None:
        """release_feedback needs the submission's timestamp.txt and secret beside the page."""
        folder = layout.feedback_dir(entry.student, entry.lab, self.root)
        for name in (TIMESTAMP_FILE, SECRET_FILE):
            source = layout.submission_dir(entry.student, entry.lab, self.root) / name
            if source.is_file():
                shutil.copy(source, folder / name)


def _tail(result: dict) -> str:
    from tools.autograde import _short_error

    return _short_error(result)


# --- stopping and the lock ------------------------------------------------------------------------

class Stop:
    """SIGINT/SIGTERM: the first asks the worker to stop after the current submission, a second
    abandons it."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.abandoned = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.abandoned = True
            log.warning("%s again: abandoning the submission being graded", signal.Signals(signum).name)
            raise KeyboardInterrupt
        self.requested.set()
        log.info("%s: stopping after the submission being graded (send it again to abandon that one)",
                 signal.Signals(signum).name)

    def checkpoint(self) -> None:
        if self.abandoned:
            raise Abandoned


class LockHeld(Exception):
    """Another worker holds the course's lock."""


def acquire_lock(path: Path) -> int:
    """Hold ``path`` (an exclusive ``flock``, freed when this process ends) with our pid in it;
    returns its file descriptor, to keep open. Raises LockHeld naming the holder's pid."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockHeld(f"another grade-on-submit worker (pid {holder}) holds the lock {path}: "
                       "stop it first; one worker per course") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# --- the worker -----------------------------------------------------------------------------------

@dataclass
class PassResult:
    """What one look at the exchange did."""

    graded: list[str] = field(default_factory=list)  # "student/lab" graded successfully
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # entries not complete yet
    course_problem: str = ""


class Worker:
    """Looks at the inbound folder and grades what is due, one submission at a time."""

    def __init__(self, root: Path, inbound: Path, labs: list[str], grade: Callable[[Entry], Outcome],
                 policy: Policy | None = None, settle: float = DEFAULT_SETTLE, stop: Stop | None = None) -> None:
        self.root = Path(root)
        self.inbound = inbound
        self.labs = labs
        self.grade = grade
        self.policy = policy or Policy()
        self.settling = Settling(settle)
        self.stop = stop or Stop()
        self.state_path = self.root / STATE_FILE
        self.records = load_state(self.state_path)
        self._told: set[str] = set()  # entries already logged as waiting
        self._recover()

    def _recover(self) -> None:
        """A record left "grading" by a worker that stopped mid-way counts as a failed attempt."""
        changed = False
        for key, record in self.records.items():
            if record.status == GRADING:
                record.status, record.error = FAILED, "the worker stopped while grading it"
                changed = True
                log.warning("%s: %s (attempt %d of %d)", key, record.error, record.attempts,
                            self.policy.max_attempts)
        if changed:
            save_state(self.state_path, self.records)

    def run_pass(self) -> PassResult:
        """Grade every entry that is due and complete, newest submissions last."""
        result = PassResult()
        now = _now()
        entries = newest_entries(self.inbound, self.labs)
        self.settling.keep_only({entry.name for entry in entries})
        for entry in entries:
            if self.stop.requested.is_set():
                break
            reason = why_grade(entry, self.records.get(entry.key), self.policy, now)
            if reason is None:
                continue
            state = self.settling.check(entry)
            if state != READY:
                result.waiting.append(entry.name)
                if state == INCOMPLETE and entry.name not in self._told:
                    self._told.add(entry.name)
                    log.info("waiting for %s: still being copied (no %s yet)", entry.name, TIMESTAMP_FILE)
                continue
            try:
                ok = self._grade(entry, reason)
            except CourseProblem as exc:
                result.course_problem = str(exc)
                log.error("not grading: %s", exc)
                break
            (result.graded if ok else result.failed).append(entry.key)
        return result

    def _grade(self, entry: Entry, reason: str) -> bool:
        """Grade one entry, record it, log one line. True if it was graded."""
        previous = self.records.get(entry.key)
        attempts = previous.attempts + 1 if previous is not None and previous.entry == entry.name else 1
        self.records[entry.key] = Record(entry.name, entry.timestamp, GRADING, attempts, updated=_now().isoformat())
        save_state(self.state_path, self.records)  # a crash now counts as an attempt
        start = time.perf_counter()
        try:
            outcome = self.grade(entry)
        except (Abandoned, KeyboardInterrupt):
            self._abandon(entry, previous)
        except CourseProblem:
            self._restore(entry.key, previous)
            raise
        except Exception as exc:  # noqa: BLE001 - one submission must not stop the worker
            if self.stop.abandoned:  # the interruption surfaced as another error
                self._abandon(entry, previous)
            outcome = Outcome(False, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        seconds = time.perf_counter() - start
        record = Record(entry.name, entry.timestamp, GRADED if outcome.success else FAILED, attempts,
                        outcome.score, outcome.max_score, round(seconds, 2), outcome.error, outcome.held,
                        outcome.feedback_released, _now().isoformat())
        self.records[entry.key] = record
        save_state(self.state_path, self.records)
        self._log(entry, reason, record)
        return outcome.success

    def _abandon(self, entry: Entry, previous: Record | None) -> NoReturn:
        """The grading of ``entry`` was interrupted: its record goes back to what it was (the
        attempt does not count), so the next start grades it again."""
        self._restore(entry.key, previous)
        log.warning("abandoned %s / %s: graded again at the next start", entry.student, entry.lab)
        raise Abandoned

    def _restore(self, key: str, previous: Record | None) -> None:
        if previous is None:
            self.records.pop(key, None)
        else:
            self.records[key] = previous
        save_state(self.state_path, self.records)

    def _log(self, entry: Entry, reason: str, record: Record) -> None:
        """One line per graded submission: student, lab, score, time taken."""
        released = "feedback released" if record.feedback_released else "feedback NOT released"
        if record.status == GRADED:
            held = "; points HELD for review by the integrity check" if record.held else ""
            log.info("graded %s / %s: %s / %s autograded points in %.1f s (%s, submitted %s; %s%s)",
                     entry.student, entry.lab, _points(record.score), _points(record.max_score),
                     record.seconds, reason, entry.timestamp, released, held)
            return
        if record.attempts < self.policy.max_attempts:
            then = f"tried again in {self.policy.retry_after:.0f} s"
        else:
            then = "no more attempts; it stays in the exchange (resubmit, or grade it by hand)"
        log.error("FAILED %s / %s: not graded in %.1f s: %s (%s, attempt %d of %d, %s; %s)",
                  entry.student, entry.lab, record.seconds, record.error, reason, record.attempts,
                  self.policy.max_attempts, then, released)

    def run_once(self) -> PassResult:
        """One pass; entries that only need to settle are waited for once, so that a submission
        finished just before is not left for the next run."""
        result = self.run_pass()
        if result.waiting and self.settling.settle > 0 and not self.stop.requested.is_set():
            self.stop.requested.wait(self.settling.settle)
            again = self.run_pass()
            again.graded[:0], again.failed[:0] = result.graded, result.failed
            result = again
        return result

    def run_forever(self, interval: float) -> None:
        """Pass after pass, ``interval`` seconds apart, until a stop signal."""
        while not self.stop.requested.is_set():
            result = self.run_pass()
            # an entry that arrived is looked at again once it may have settled
            soon = result.waiting and self.settling.settle < interval
            self.stop.requested.wait(self.settling.settle if soon else interval)


def _points(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


# --- the command line -----------------------------------------------------------------------------

def setup_logging(root: Path) -> Path:
    """Log lines to stderr and to ``logs/grade_on_submit.log`` in the course folder."""
    path = root / LOG_FILE
    path.parent.mkdir(exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(path)):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="grade what is new, then exit (cron, tests)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"seconds between looks at the exchange (default {DEFAULT_INTERVAL:g})")
    parser.add_argument("--lab", action="append", help="grade only this lab (repeatable; default every lab)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the course folder (default: this repository)")
    parser.add_argument("--exchange", type=Path,
                        help="the exchange root (default: c.Exchange.root of nbgrader's config files)")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE,
                        help=f"seconds an entry must stay unchanged before it is graded (default {DEFAULT_SETTLE:g})")
    parser.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS,
                        help=f"tries of a failing submission (default {DEFAULT_MAX_ATTEMPTS})")
    parser.add_argument("--retry-after", type=float, default=DEFAULT_RETRY_AFTER,
                        help=f"seconds before a failed submission is tried again (default {DEFAULT_RETRY_AFTER:g})")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.settle < 0 or args.max_attempts < 1 or args.retry_after < 0:
        parser.error("--interval must be > 0, --settle and --retry-after >= 0, --max-attempts >= 1")
    root = args.root.resolve()
    labs = available_labs(root)
    unknown = sorted(set(args.lab or []) - set(labs))
    if unknown:
        parser.error(f"no such lab in {root}: {', '.join(unknown)} (labs: {', '.join(labs)})")
    os.chdir(root)
    log_path = setup_logging(root)
    try:
        lock = acquire_lock(root / LOCK_FILE)
    except LockHeld as exc:
        log.error("%s", exc)
        return 3
    try:
        return _serve(root, args, args.lab or labs, log_path)
    finally:
        os.close(lock)


def _serve(root: Path, args: argparse.Namespace, labs: list[str], log_path: Path) -> int:
    """Start the worker with the lock held; its exit status."""
    from tools.grades import sandbox_status

    stop = Stop()
    stop.install()
    try:
        inbound = inbound_folder(root, args.exchange)
        worker = Worker(root, inbound, labs, CourseGrader(root, args.exchange, stop.checkpoint),
                        Policy(args.max_attempts, args.retry_after), args.settle, stop)
    except (ValueError, StateError) as exc:
        log.error("%s", exc)
        return 2
    log.info("grade on submit: %s, labs %s, state %s, log %s; %s", inbound, ", ".join(labs),
             root / STATE_FILE, log_path, sandbox_status())
    try:
        if args.once:
            result = worker.run_once()
            log.info("done: %d graded, %d failed, %d still being copied", len(result.graded),
                     len(result.failed), len(result.waiting))
            return 2 if result.course_problem else 0
        log.info("watching every %g s (Ctrl-C or SIGTERM stops)", args.interval)
        worker.run_forever(args.interval)
    except (Abandoned, KeyboardInterrupt):
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
