"""Grading at class scale: a synthetic class, parallel autograding, a class report.

    python -m tools.classroom generate --lab lab00_cache_sizing --n 200   # synthetic class
    python -m tools.classroom grade --workers 2                           # autograde (resumable)
    python -m tools.classroom report                                      # CSV + HTML + feedback
    python -m tools.classroom all --lab lab00_cache_sizing --n 40 --workers 2

Everything happens in a course folder of its own (default ``build/classroom/``): a copy of
``source/`` and ``nbgrader_config.py``, its own ``release/``, ``submitted/``, ``autograded/``,
``feedback/`` and gradebook, so the real course is never touched.

**Synthetic class.** Each student's submission is the release notebook filled in with one
variant of ``tools/variants/<lab>.py`` (the solution, a correct alternative, a realistic
mistake, several mistakes, or the untouched release), plus a few broken submissions (invalid
JSON, a folder without the notebook, no submission at all) whose expected outcome is "not
graded". The expected score of every variant is found by grading each *distinct* variant once
with the course's serial pipeline (``tools.pipeline.autograde``) in a scratch course, and checked
against what the variants declare (correct ones at full marks, a mutant at 0 in the tests it
names). It is cached in ``<course>/calibration/`` keyed by the notebook and variants' hashes.
``classroom.json`` holds the roster with each student's variant and expected score.

**Grading** goes through nbgrader's own ``NbGraderAPI.autograde``, driven by the course's
``tools.pipeline.autograde``: students are split into disjoint shares, one per worker; each
worker is one process that runs nbgrader over its whole share (nbgrader's start-up is paid once
per worker, not per student); one worker grades in this process. One worker uses SQLite
(``<course>/gradebook.db``); several workers share a PostgreSQL gradebook, because SQLite is not
safe for concurrent writers (nbgrader's FAQ). The PostgreSQL server is a throwaway cluster that
this tool creates with Debian's ``initdb`` / ``pg_ctl`` (as the ``postgres`` user when run as
root), listening only on a unix socket in its own folder under the temporary directory; it is
started for a command and stopped after it.

As each submission's result arrives, ``grade`` writes ``<course>/state/<lab>/<student>.json``. A later
``grade`` skips a submission whose state says it was graded into the same gradebook from the
same ``timestamp.txt`` and notebook hash, so an interrupted batch resumes where it stopped. A
submission that fails (broken JSON, dead kernel, ...) is recorded and never stops the batch; a
worker that dies takes only its unfinished share with it, and the next ``grade`` redoes those.

Why one module of this size: generating, grading, resuming and reporting a synthetic class
share its manifest and state files; the grading itself is ``tools/autograde.py``'s.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import hashlib
import html
import json
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools import class_report, layout
from tools.class_report import ReportRow, test_points
from tools.samples import ROOT, available_labs, load_variants, write_submission

#: Default course folder of the synthetic class.
DEFAULT_COURSE = ROOT / "build" / "classroom"
#: Kinds of broken submission and what makes them: expected outcome "not graded".
BROKEN_KINDS = ("broken:json", "broken:no_notebook", "absent")
#: How often each family of variants is drawn for a student.
WEIGHTS = {"correct": 0.40, "mutant": 0.45, "mistakes": 0.08, "untouched": 0.07}


# ----------------------------------------------------------------------------- course folder


def setup_course(course: Path, root: Path = ROOT) -> Path:
    """Create the class's course folder (copy of source/ + config) and its release/."""
    from tools.pipeline import release

    course = Path(course)
    course.mkdir(parents=True, exist_ok=True)
    stale = any(_sha256(layout.source_notebook(lab, root)) != _sha256(layout.source_notebook(lab, course))
                for lab in available_labs(root))
    if stale or not (course / layout.RELEASE).exists() or not (course / "nbgrader_config.py").exists():
        if (course / layout.SOURCE).exists():
            shutil.rmtree(course / layout.SOURCE)
        shutil.copytree(root / layout.SOURCE, course / layout.SOURCE)
        shutil.copy(root / "nbgrader_config.py", course / "nbgrader_config.py")
        release(course)
    return course


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def variant_pool(lab: str) -> list[str]:
    """Every distinct submission variant a lab can produce."""
    module = load_variants(lab)
    pool = ["solution", "untouched"]
    if module is None:
        return pool
    pool += [f"correct:{name}" for name in module.CORRECT]
    pool += [f"mutant:{m['name']}" for m in module.MUTANTS]
    if getattr(module, "SAMPLE_MISTAKES", None):
        pool.append("mistakes")
    return pool


def _family(variant: str) -> str:
    if variant == "solution" or variant.startswith("correct:"):
        return "correct"
    if variant.startswith("mutant:"):
        return "mutant"
    return variant


# ----------------------------------------------------------------------------- expected scores


def declared_expectation(course: Path, lab: str, variant: str) -> dict[str, float]:
    """Per-test points that a variant's declaration allows: correct -> full marks everywhere;
    a mutant -> 0 in the tests it names (others: full, the declaration says nothing more)."""
    points = test_points(course, lab)
    if _family(variant) == "correct":
        return dict(points)
    fails: set[str] = set()
    module = load_variants(lab)
    if variant.startswith("mutant:"):
        fails = set({m["name"]: m for m in module.MUTANTS}[variant.split(":", 1)[1]]["fails"])
    elif variant == "mistakes":
        by_name = {m["name"]: m for m in module.MUTANTS}
        for name in module.SAMPLE_MISTAKES:
            fails |= set(by_name[name]["fails"])
    elif variant == "untouched":
        fails = set(points)
    return {gid: (0.0 if gid in fails else p) for gid, p in points.items()}


def _calibration_key(course: Path, lab: str) -> str:
    h = hashlib.sha256()
    h.update((layout.source_notebook(lab, course)).read_bytes())
    h.update((layout.release_notebook(lab, course)).read_bytes())
    module = layout.variants(lab)
    if module is not None:
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def calibrate(course: Path, lab: str, variants: list[str], verbose: bool = True) -> dict[str, dict]:
    """Expected per-test scores of each distinct variant, by grading it once (cached).

    Grading uses the course's serial pipeline (``tools.pipeline.autograde``, SQLite) in a scratch
    course, independent of this module's driver. Returns variant -> {"cells": {gid: score},
    "total": float, "problems": [str]}; a problem means the variant does not do what it declares.
    """
    from nbgrader.api import Gradebook, MissingEntry

    from tools.grades import test_scores
    from tools.pipeline import autograde, release

    cache_file = course / "calibration" / f"{lab}-{_calibration_key(course, lab)}.json"
    cache: dict[str, dict] = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    todo = [v for v in dict.fromkeys(variants) if v not in cache]
    if todo:
        scratch = Path(tempfile.mkdtemp(prefix="kvcourse-calibrate-"))
        try:
            shutil.copytree(course / layout.SOURCE, scratch / layout.SOURCE)
            shutil.copy(course / "nbgrader_config.py", scratch / "nbgrader_config.py")
            release(scratch)
            names = {}
            for i, variant in enumerate(todo):
                names[variant] = f"cal{i:03d}"
                write_submission(scratch, lab, names[variant], variant)
            if verbose:
                print(f"calibration: grading {len(todo)} distinct variants of {lab} once (serial pipeline)",
                      flush=True)
            runs = {r.student: r for r in autograde(scratch, [(names[v], lab) for v in todo], verbose=verbose)}
            points = test_points(course, lab)
            with Gradebook("sqlite:///" + str(scratch / "gradebook.db")) as gb:
                for variant in todo:
                    student = names[variant]
                    entry: dict = {"cells": {}, "total": None, "problems": []}
                    if not runs[student].success:
                        entry["problems"].append(f"not graded: {runs[student].error}")
                    else:
                        try:
                            nb = gb.find_submission_notebook(lab, lab, student)
                        except MissingEntry:
                            entry["problems"].append("no gradebook entry")
                        else:
                            entry["cells"] = {gid: points for gid, (points, _max) in test_scores(nb).items()}
                            entry["total"] = sum(entry["cells"].values())
                            declared = declared_expectation(course, lab, variant)
                            for gid, allowed in declared.items():
                                got = entry["cells"].get(gid)
                                if _family(variant) == "correct" and got != points[gid]:
                                    entry["problems"].append(f"{gid}: correct variant got {got}/{points[gid]:g}")
                                elif _family(variant) != "correct" and allowed == 0.0 and got:
                                    entry["problems"].append(f"{gid}: declared failing test gave {got:g} points")
                    cache[variant] = entry
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(cache, indent=1, sort_keys=True))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {v: cache[v] for v in variants}


# ----------------------------------------------------------------------------- generator


@dataclass
class Student:
    """One roster entry of the synthetic class for one lab."""

    student: str
    lab: str
    variant: str
    expected_status: str  # "graded" | "not graded" | "missing"
    expected: float | None = None
    expected_cells: dict[str, float] = field(default_factory=dict)


def _manifest_path(course: Path) -> Path:
    return Path(course) / "classroom.json"


def load_manifest(course: Path) -> dict:
    """classroom.json: {"labs": {lab: {"max": float, "students": {student: Student-dict}}}}."""
    path = _manifest_path(course)
    return json.loads(path.read_text()) if path.exists() else {"labs": {}}


def roster(course: Path, lab: str | None = None) -> list[Student]:
    """Students of the synthetic class (all labs or one), sorted by lab and name."""
    manifest = load_manifest(course)
    out = []
    for lab_name, entry in sorted(manifest["labs"].items()):
        if lab is None or lab_name == lab:
            out += [Student(**s) for _, s in sorted(entry["students"].items())]
    return out


def _timestamp(rng: random.Random) -> str:
    deadline = dt.datetime(2026, 11, 20, 23, 59, 0)
    when = deadline - dt.timedelta(seconds=rng.randint(60, 3 * 24 * 3600))
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"


def generate(course: Path = DEFAULT_COURSE, lab: str = "lab00_cache_sizing", n: int = 200, seed: int = 0,
             pool: list[str] | None = None, n_broken: int = 3, verbose: bool = True) -> list[Student]:
    """Write a synthetic class of ``n`` gradable submissions plus ``n_broken`` broken ones.

    ``pool`` restricts the variants drawn (default: every variant of the lab). Expected scores
    come from :func:`calibrate`. Replaces any earlier class of this lab in the course folder.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(n_broken, int) or n_broken < 0:
        raise ValueError(f"n_broken must be a non-negative int, got {n_broken!r}")
    course = setup_course(Path(course))
    if lab not in available_labs(course):
        raise ValueError(f"lab {lab!r} has no source notebook; available: {available_labs(course)}")
    pool = list(pool) if pool is not None else variant_pool(lab)
    unknown = set(pool) - set(variant_pool(lab))
    if unknown:
        raise ValueError(f"pool has variants unknown to {lab}: {sorted(unknown)}")
    rng = random.Random(seed)
    families: dict[str, list[str]] = collections.defaultdict(list)
    for v in pool:
        families[_family(v)].append(v)
    names = [f for f in WEIGHTS if families.get(f)]
    weights = [WEIGHTS[f] for f in names]
    # every variant of the pool at least once (when n allows), then weighted draws
    chosen = list(pool[:n])
    while len(chosen) < n:
        chosen.append(rng.choice(families[rng.choices(names, weights)[0]]))
    rng.shuffle(chosen)
    broken = [BROKEN_KINDS[i % len(BROKEN_KINDS)] for i in range(n_broken)]
    kinds = chosen + broken
    order = list(range(len(kinds)))
    rng.shuffle(order)

    expected = calibrate(course, lab, sorted(set(chosen)), verbose=verbose)
    problems = {v: e["problems"] for v, e in expected.items() if e["problems"]}
    if problems and verbose:
        print(f"warning: variants that do not behave as declared (expected = what they got): {problems}")

    for old in (course / layout.SUBMITTED).glob(f"*/{lab}"):
        shutil.rmtree(old)
    students = {}
    for position, index in enumerate(order):
        name = f"s{position + 1:04d}"
        variant = kinds[index]
        target = layout.submission_dir(name, lab, course)
        if variant == "absent":
            students[name] = Student(name, lab, variant, "missing")
            continue
        if variant == "broken:json":
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{lab}.ipynb").write_text('{"cells": [ {"cell_type": "code", "source": "x = 1"')
            students[name] = Student(name, lab, variant, "not graded")
        elif variant == "broken:no_notebook":
            target.mkdir(parents=True, exist_ok=True)
            (target / "my_answers.py").write_text("# the student uploaded the wrong file\n")
            students[name] = Student(name, lab, variant, "not graded")
        else:
            write_submission(course, lab, name, variant)
            e = expected[variant]
            status = "graded" if e["total"] is not None else "not graded"
            students[name] = Student(name, lab, variant, status, e["total"], dict(e["cells"]))
        (target / "timestamp.txt").write_text(_timestamp(rng))
    manifest = load_manifest(course)
    manifest["labs"][lab] = {"max": sum(test_points(course, lab).values()), "seed": seed,
                             "students": {k: asdict(v) for k, v in students.items()}}
    _manifest_path(course).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return list(students.values())


# ----------------------------------------------------------------------------- PostgreSQL


class PostgresCluster:
    """A throwaway PostgreSQL cluster for the gradebook, on a unix socket only.

    The data folder (also the socket folder) lives under the temporary directory, named after
    the course folder, so that it survives an interrupted run (resume) and a later ``report``.
    ``destroy()`` removes it. Run as root, the server runs as the ``postgres`` user (``initdb``
    refuses root).
    """

    def __init__(self, course: Path, database: str = "gradebook") -> None:
        digest = hashlib.sha256(str(Path(course).resolve()).encode()).hexdigest()[:10]
        self.data_dir = Path(tempfile.gettempdir()) / f"kvcourse-pg-{digest}"
        self.database = database
        self.bin_dir = self._find_bin()
        self._as_postgres = os.geteuid() == 0

    @staticmethod
    def _find_bin() -> Path:
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).resolve().parent
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not versions:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; "
                               "or run tools/install_system_deps.sh)")
        return versions[-1].parent

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the gradebook database."""
        return f"postgresql+psycopg2://postgres@/{self.database}?host={self.data_dir}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def _check(self, result: subprocess.CompletedProcess, what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> str:
        """Create the cluster if needed, start it, create the database; returns the URL."""
        if not (self.data_dir / "PG_VERSION").exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir(mode=0o700)
            if self._as_postgres:
                pw = pwd.getpwnam("postgres")
                os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            self._check(self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                                  "-E", "UTF8", "--no-sync"), "initdb")
        if self._run("pg_ctl", "-D", str(self.data_dir), "status").returncode != 0:
            options = (f"-c listen_addresses='' -c unix_socket_directories='{self.data_dir}' "
                       "-c fsync=off -c synchronous_commit=off -c max_connections=60")
            self._check(self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                                  "-o", options, "-w", "-t", "60", "start"), "pg_ctl start")
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", user="postgres", host=str(self.data_dir))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        conn.close()
        return self.url

    def stop(self) -> None:
        """Stop the server (data kept)."""
        if (self.data_dir / "PG_VERSION").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def gradebook_url(course: Path, kind: str):  # -> Iterator[str]
    """The gradebook URL for ``kind`` ("sqlite" or "postgres"), with the server running."""
    from tools.pipeline import _ensure_venv_on_path

    _ensure_venv_on_path()  # a new gradebook runs `alembic` from PATH
    if kind == "sqlite":
        yield "sqlite:///" + str(Path(course) / "gradebook.db")
    elif kind == "postgres":
        with PostgresCluster(course) as pg:
            yield pg.url
    else:
        raise ValueError(f"db must be 'sqlite' or 'postgres', got {kind!r}")


# ----------------------------------------------------------------------------- grading driver


@dataclass
class Outcome:
    """What happened to one submission in one ``grade`` run."""

    student: str
    lab: str
    status: str  # "graded" | "not graded: <why>" | "missing" | "skipped (up to date)"
    seconds: float = 0.0
    worker: int = 0


def _state_path(course: Path, lab: str, student: str) -> Path:
    return Path(course) / "state" / lab / f"{student}.json"


def _fingerprint(course: Path, lab: str, student: str) -> dict:
    folder = layout.submission_dir(student, lab, Path(course))
    stamp = folder / "timestamp.txt"
    return {"timestamp": stamp.read_text().strip() if stamp.exists() else "",
            "sha256": _sha256(folder / f"{lab}.ipynb")}


def is_up_to_date(course: Path, lab: str, student: str, db_kind: str) -> bool:
    """True if this submission was autograded into this gradebook from its current files."""
    path = _state_path(course, lab, student)
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    autograded = layout.autograded_dir(student, lab, Path(course))
    stamp = autograded / "timestamp.txt"
    return (state.get("status") == "graded" and state.get("db") == db_kind
            and state.get("fingerprint") == _fingerprint(course, lab, student)
            and (autograded / f"{lab}.ipynb").exists()
            and (not stamp.exists() or stamp.read_text().strip() == state["fingerprint"]["timestamp"]))


def grade(course: Path = DEFAULT_COURSE, labs: list[str] | None = None, workers: int = 1, db: str = "auto",
          resume: bool = True, progress: bool = True, students: set[str] | None = None) -> list[Outcome]:
    """Autograde the synthetic class with ``workers`` processes on disjoint students.

    ``db``: "sqlite" (one worker only), "postgres", or "auto" (SQLite for one worker, PostgreSQL
    for more). With ``resume`` a submission already autograded into this gradebook from its
    current files is skipped. ``students`` restricts the run to these names. Returns one
    outcome per roster entry graded (or skipped) in this run.
    """
    course = Path(course).resolve()
    db_kind = ("sqlite" if workers == 1 else "postgres") if db == "auto" else db
    if db_kind == "sqlite" and workers > 1:
        raise ValueError("SQLite is not safe for concurrent writers: use db='postgres' with workers > 1")
    entries = [s for s in roster(course) if (labs is None or s.lab in labs)
               and (students is None or s.student in students)]
    if not entries:
        raise ValueError(f"no synthetic class in {course} (run `python -m tools.classroom generate` first)")
    outcomes: dict[tuple[str, str], Outcome] = {}
    todo = []
    for s in entries:
        if not (layout.submission_dir(s.student, s.lab, course)).exists():
            outcomes[(s.student, s.lab)] = Outcome(s.student, s.lab, "missing")
        elif resume and is_up_to_date(course, s.lab, s.student, db_kind):
            outcomes[(s.student, s.lab)] = Outcome(s.student, s.lab, "skipped (up to date)")
        else:
            todo.append((s.student, s.lab))
    (course / "logs").mkdir(exist_ok=True)
    (course / "gradebook.json").write_text(json.dumps({"db": db_kind}))
    if todo:
        from tools.pipeline import autograde

        def record(run) -> None:  # called as each result arrives: what makes `grade` resumable
            status = "graded" if run.success else f"not graded: {run.error}"
            outcomes[(run.student, run.lab)] = Outcome(run.student, run.lab, status, run.seconds, run.worker)
            state = {"status": status, "seconds": run.seconds, "db": db_kind, "worker": run.worker,
                     "fingerprint": _fingerprint(course, run.lab, run.student)}
            path = _state_path(course, run.lab, run.student)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(path)

        with gradebook_url(course, db_kind) as url:
            autograde(course, todo, verbose=progress, workers=min(workers, len(todo)), db_url=url, on_run=record)
    return [outcomes[(s.student, s.lab)] for s in entries]


# ----------------------------------------------------------------------------- results


@dataclass
class Result:
    """A student's grade for one lab, from the gradebook, with the expectation beside it."""

    student: str
    lab: str
    variant: str
    status: str
    score: float | None
    max_score: float
    expected: float | None
    expected_status: str
    cells: dict[str, float] = field(default_factory=dict)
    mistakes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def as_expected(self) -> bool:
        """Graded to its expected score, or not graded when it should not be."""
        if self.expected_status == "graded":
            return self.status == "graded" and self.score is not None and abs(self.score - self.expected) < 1e-9
        if self.expected_status == "missing":
            return self.status == "missing"
        return self.status.startswith("not graded")


def results(course: Path = DEFAULT_COURSE, labs: list[str] | None = None,
            students: set[str] | None = None) -> list[Result]:
    """Read every roster entry's grade (or only ``students``') from the gradebook last used by ``grade``."""
    from nbgrader.api import Gradebook, MissingEntry

    from tools.grades import named_mistakes, test_scores

    course = Path(course).resolve()
    db_kind = json.loads((course / "gradebook.json").read_text())["db"]
    manifest = load_manifest(course)
    out = []
    with gradebook_url(course, db_kind) as url, Gradebook(url) as gb:
        for s in roster(course):
            if (labs is not None and s.lab not in labs) or (students is not None and s.student not in students):
                continue
            state_file = _state_path(course, s.lab, s.student)
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
            if not (layout.submission_dir(s.student, s.lab, course)).exists():
                status = "missing"
            else:
                status = state.get("status", "not graded: not autograded yet")
            r = Result(s.student, s.lab, s.variant, status, None, manifest["labs"][s.lab]["max"], s.expected,
                       s.expected_status, seconds=state.get("seconds", 0.0))
            if status == "graded":
                try:
                    nb = gb.find_submission_notebook(s.lab, s.lab, s.student)
                except MissingEntry:
                    r.status = "not graded: no gradebook entry"
                else:
                    r.cells = {gid: points for gid, (points, _max) in test_scores(nb).items()}
                    r.score = sum(r.cells.values())
                    r.mistakes = named_mistakes(layout.autograded_notebook(s.student, s.lab, course))
            out.append(r)
    return out


def mismatches(rows: list[Result]) -> list[str]:
    """Human-readable list of students whose grade differs from the expected one."""
    out = []
    for r in rows:
        if not r.as_expected:
            out.append(f"{r.lab}/{r.student} ({r.variant}): expected {r.expected_status} "
                       f"{'' if r.expected is None else format(r.expected, 'g')}, got {r.status} "
                       f"{'' if r.score is None else format(r.score, 'g')}")
    return out


# ----------------------------------------------------------------------------- report


def write_csv(rows: list[Result], path: Path) -> None:
    """grades.csv: one row per student and lab."""
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "lab", "status", "score", "max_score", "percent", "expected_score",
                    "as_expected", "grading_seconds", "named_mistakes"])
        for r in rows:
            pct = "" if r.score is None or not r.max_score else f"{100.0 * r.score / r.max_score:.1f}"
            w.writerow([r.student, r.lab, r.status, "" if r.score is None else f"{r.score:g}", f"{r.max_score:g}",
                        pct, "" if r.expected is None else f"{r.expected:g}", r.as_expected, f"{r.seconds:.2f}",
                        "; ".join(f"{k}: {v}" for k, v in sorted(r.mistakes.items()))])


def write_html(course: Path, rows: list[Result], path: Path) -> None:
    """The class report (tools/class_report.py) with the check against the expected scores."""
    e = html.escape
    wrong = mismatches(rows)
    extra = (f"<h2>Check against the synthetic class's expected scores</h2><p>{len(rows) - len(wrong)} of "
             f"{len(rows)} as expected.</p>")
    if wrong:
        extra += "<ul>" + "".join(f"<li>{e(w)}</li>" for w in wrong) + "</ul>"
    report_rows = [ReportRow(r.student, r.lab, r.status == "graded", r.status, r.score, r.max_score,
                             dict(r.cells), dict(r.mistakes)) for r in rows]
    from tools.similarity import classroom_section

    extra += classroom_section(course, {(r.student, r.lab): r.variant for r in rows})
    class_report.write_html(path, course, report_rows, extra)


def report(course: Path = DEFAULT_COURSE, feedback: bool = True, verbose: bool = True) -> list[Result]:
    """Write <course>/report/grades.csv, <course>/report/report.html and feedback HTML."""
    course = Path(course).resolve()
    rows = results(course)
    out = course / "report"
    out.mkdir(exist_ok=True)
    write_csv(rows, out / "grades.csv")
    write_html(course, rows, out / "report.html")
    if feedback:
        from tools.pipeline import make_api

        db_kind = json.loads((course / "gradebook.json").read_text())["db"]
        with gradebook_url(course, db_kind) as url:
            api = make_api(course)
            api.coursedir.db_url = url
            for lab in dict.fromkeys(r.lab for r in rows if r.status == "graded"):
                result = api.generate_feedback(lab, force=True)
                if not result["success"]:
                    print(f"warning: generate_feedback {lab} failed", file=sys.stderr)
    if verbose:
        wrong = mismatches(rows)
        print(f"report: {out / 'report.html'}\ngrades: {out / 'grades.csv'}")
        print(f"{len(rows)} roster entries, {sum(r.status == 'graded' for r in rows)} graded, "
              f"{len(rows) - len(wrong)} as expected")
        for w in wrong:
            print("  MISMATCH", w)
    return rows


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from tools.pipeline import _ensure_venv_on_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["generate", "grade", "report", "all", "clean"])
    parser.add_argument("--course", type=Path, default=DEFAULT_COURSE, help="course folder (default build/classroom)")
    parser.add_argument("--lab", action="append", help="lab (repeatable; default: Lab 01 if present, else Lab 00)")
    parser.add_argument("--n", type=int, default=200, help="gradable submissions per lab (default 200)")
    parser.add_argument("--broken", type=int, default=3, help="broken submissions per lab (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--db", choices=["auto", "sqlite", "postgres"], default="auto")
    parser.add_argument("--no-resume", action="store_true", help="regrade everything")
    parser.add_argument("--no-feedback", action="store_true", help="report: skip per-student feedback HTML")
    args = parser.parse_args(argv)
    _ensure_venv_on_path()
    course = args.course.resolve()
    labs = args.lab or [("lab01_kv_cache" if "lab01_kv_cache" in available_labs() else "lab00_cache_sizing")]
    if args.command == "clean":
        PostgresCluster(course).destroy()
        shutil.rmtree(course, ignore_errors=True)
        return 0
    if args.command in ("generate", "all"):
        for lab in labs:
            made = generate(course, lab, args.n, args.seed, n_broken=args.broken)
            print(f"{lab}: {len(made)} students written to {course / 'submitted'}")
    if args.command in ("grade", "all"):
        t0 = time.perf_counter()
        outcomes = grade(course, labs if args.lab else None, args.workers, args.db, resume=not args.no_resume)
        counts = collections.Counter(o.status.split(":")[0] for o in outcomes)
        print(f"graded in {time.perf_counter() - t0:.0f} s: {dict(counts)}")
    if args.command in ("report", "all"):
        rows = report(course, feedback=not args.no_feedback)
        return 1 if mismatches(rows) else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
