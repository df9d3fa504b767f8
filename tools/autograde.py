"""Autograde submissions with nbgrader's API, in this process or in parallel workers.

A submission that cannot be graded (broken JSON, dead kernel, ...) is recorded as a failed
:class:`GradeRun`; the batch goes on. Parallel workers need a PostgreSQL gradebook. The runs
of the latest batch are saved in ``autograde_runs.json`` for ``make report``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tools import layout
from tools.course_api import _ensure_venv_on_path, gradebook_db_url, make_api
from tools.grading_batch import grading_batch
from tools.layout import ROOT, available_labs


@dataclass
class GradeRun:
    """The outcome of autograding one submission."""

    student: str
    lab: str
    success: bool
    seconds: float
    error: str = ""
    worker: int = 0  # which worker process graded it (0 when grading serially)


def submissions(root: Path = ROOT) -> list[tuple[str, str]]:
    """(student, lab) pairs found in submitted/, sorted."""
    pairs = []
    labs = set(available_labs(root))
    folder = root / layout.SUBMITTED
    for student_dir in sorted(folder.iterdir()) if folder.exists() else []:
        if not student_dir.is_dir():
            continue
        for lab_dir in sorted(student_dir.iterdir()):
            if lab_dir.is_dir() and lab_dir.name in labs:
                pairs.append((student_dir.name, lab_dir.name))
    return pairs


_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit))(?::\s*(.*))?$")


def _short_error(result: dict) -> str:
    """The most telling line of a failed nbgrader run: the last "SomeError: message" line."""
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for line in reversed(text.strip().splitlines()):
        m = _EXC_LINE.match(line.strip())
        if m:
            return (m.group(1) + (": " + m.group(2) if m.group(2) else ""))[:200]
    m = re.search(r"ERROR\] ([^\n]+)", text)
    if m:
        return m.group(1).strip()[:200]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"


def _grade_one(api, root: Path, student: str, lab: str) -> GradeRun:
    """nbgrader's autograde of one submission; any failure becomes a GradeRun, never an exception."""
    start = time.perf_counter()
    if not layout.submitted_notebook(student, lab, Path(root)).exists():
        result = {"success": False, "error": f"no {lab}.ipynb in the submission (no notebook to grade)"}
    else:
        try:
            result = api.autograde(lab, student, force=True, create=True)
        except Exception as exc:  # noqa: BLE001 - one broken submission must not stop the batch
            result = {"success": False, "error": f"{type(exc).__name__}: {exc}"}
    from tools import budget

    killed = budget.pop_kill_reason(layout.autograded_dir(student, lab, Path(root)))
    if killed and result["success"]:  # a child was killed, the kernel lived: no points either way
        result = {"success": False, "error": killed}
    return GradeRun(student, lab, bool(result["success"]), time.perf_counter() - start,
                    "" if result["success"] else (killed or _short_error(result)))


def autograde(root: Path = ROOT, pairs: list[tuple[str, str]] | None = None,
              verbose: bool = True, timeout: int | None = None,
              sandbox: bool | None = None, workers: int = 1, db_url: str | None = None,
              on_run: Callable[[GradeRun], None] | None = None) -> list[GradeRun]:
    """Autograde submissions with nbgrader's API; a failure never stops the batch.

    One worker grades in this process, one submission after the other. ``workers`` > 1 starts
    that many processes on disjoint shares of the students, each running nbgrader over its whole
    share; they write to one gradebook at once, which SQLite does not support (nbgrader's FAQ),
    so the gradebook must be PostgreSQL (``c.CourseDirectory.db_url`` in nbgrader_config.py, or
    ``db_url``); a SQLite URL raises ValueError. Returns one GradeRun per pair, in order.

    ``timeout`` overrides the per-cell time limit of nbgrader_config.py (seconds).
    ``sandbox``: see make_api (None = on where bwrap works, unless KVCOURSE_SANDBOX=0).
    ``on_run`` is called in this process with each GradeRun as soon as it is known.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    pairs = submissions(root) if pairs is None else list(pairs)
    url = db_url or gradebook_db_url(root)
    ensure_assignments(root, url, sorted({lab for _, lab in pairs}))
    if workers > 1 and len(pairs) > 1:
        if url.startswith("sqlite"):
            raise ValueError(
                f"{workers} workers cannot share the SQLite gradebook {url} (SQLite is not safe for "
                "concurrent writers): set c.CourseDirectory.db_url to a PostgreSQL URL in "
                "nbgrader_config.py (README: 'Grading in parallel'), or grade with one worker")
        runs = _autograde_parallel(root, pairs, workers, url, verbose, timeout, sandbox, on_run)
    else:
        api = make_api(root, timeout=timeout, sandbox=sandbox)
        api.coursedir.db_url = url
        runs = []
        with grading_batch():
            for i, (student, lab) in enumerate(pairs, 1):
                run = _grade_one(api, root, student, lab)
                runs.append(run)
                if on_run is not None:
                    on_run(run)
                if verbose:
                    status = "ok" if run.success else f"FAILED ({run.error})"
                    print(f"  [{i}/{len(pairs)}] autograde {lab} / {student}: {run.seconds:.1f} s, {status}",
                          flush=True)
    _save_runs(root, runs)
    return runs


def _save_runs(root: Path, runs: list[GradeRun]) -> None:
    """autograde_runs.json: the latest outcome per "student/lab", for a later ``report``
    (nbgrader leaves a gradebook entry even for a notebook it could not grade)."""
    path = Path(root) / "autograde_runs.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    for run in runs:
        saved[f"{run.student}/{run.lab}"] = asdict(run)
    path.write_text(json.dumps(saved, indent=1, sort_keys=True))


def saved_runs(root: Path = ROOT) -> list[GradeRun]:
    """The latest autograde outcome of every submission graded in ``root`` (autograde_runs.json)."""
    path = Path(root) / "autograde_runs.json"
    return [GradeRun(**v) for v in json.loads(path.read_text()).values()] if path.exists() else []


def worker_shares(students: list[str], workers: int) -> list[list[str]]:
    """Split students into ``workers`` disjoint shares of nearly equal size (sorted, round robin)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    ordered = sorted(dict.fromkeys(students))
    return [ordered[i::workers] for i in range(workers)]


def _share_cores(n_workers: int) -> None:
    """Sandboxed processes started from this worker get its share of the cores
    (``tools.sandbox.thread_share``). Settings already in the environment win."""
    from tools import sandbox

    threads = str(sandbox.thread_share(n_workers))
    for var in sandbox.THREAD_VARS:
        os.environ.setdefault(var, threads)


def _autograde_worker(root: str, url: str, items: list[tuple[str, str]], index: int, n_workers: int,
                      timeout: int | None, sandbox: bool | None, queue) -> None:
    """One worker process: nbgrader's API over its share of (student, lab) pairs."""
    root_path = Path(root)
    (root_path / "logs").mkdir(exist_ok=True)
    log = open(root_path / "logs" / f"autograde-worker-{index}.log", "a")  # noqa: SIM115 - lives with the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    os.chdir(root_path)
    _share_cores(n_workers)
    api = make_api(root_path, timeout=timeout, sandbox=sandbox)
    api.coursedir.db_url = url
    with grading_batch():
        for student, lab in items:
            run = _grade_one(api, root_path, student, lab)
            run.worker = index
            queue.put(("run", index, asdict(run)))
            print(f"[worker {index}] {lab} / {student}: {'ok' if run.success else run.error} "
                  f"({run.seconds:.1f} s)", flush=True)
    queue.put(("done", index, None))


def _autograde_parallel(root: Path, pairs: list[tuple[str, str]], workers: int, url: str, verbose: bool,
                        timeout: int | None, sandbox: bool | None,
                        on_run: Callable[[GradeRun], None] | None) -> list[GradeRun]:
    import multiprocessing as mp
    import queue as queue_module

    from tqdm import tqdm

    root = Path(root).resolve()
    shares = [s for s in worker_shares([student for student, _ in pairs], workers) if s]
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited nbgrader or kernel state
    results: dict[tuple[str, str], GradeRun] = {}
    queue = ctx.Queue()
    procs = []
    for index, share in enumerate(shares):
        members = set(share)
        items = [(student, lab) for student, lab in pairs if student in members]
        proc = ctx.Process(target=_autograde_worker,
                           args=(str(root), url, items, index, len(shares), timeout, sandbox, queue))
        proc.start()
        procs.append((proc, items))
    running = len(procs)
    bar = tqdm(total=len(pairs), desc=f"autograde ({len(procs)} workers)", unit="nb", disable=not verbose,
               file=sys.stderr)
    try:
        while running:
            try:
                kind, _, payload = queue.get(timeout=5)
            except queue_module.Empty:
                if all(not proc.is_alive() for proc, _ in procs):
                    break
                continue
            if kind == "done":
                running -= 1
                continue
            run = GradeRun(**payload)
            results[(run.student, run.lab)] = run
            bar.update(1)
            if on_run is not None:
                on_run(run)
            if verbose and not run.success:
                bar.write(f"  autograde {run.lab} / {run.student}: FAILED ({run.error})")
    finally:
        bar.close()
        for proc, _ in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    for proc, items in procs:
        for student, lab in items:
            if (student, lab) not in results:
                run = GradeRun(student, lab, False, 0.0, f"worker died (exit {proc.exitcode}) before grading it",
                               worker=procs.index((proc, items)))
                results[(student, lab)] = run
                if on_run is not None:
                    on_run(run)
    return [results[pair] for pair in pairs]


def ensure_assignments(root: Path, url: str, labs: list[str]) -> None:
    """Put the labs (notebooks, grade cells) into the gradebook at ``url`` if they are not there,
    as ``generate_assignment`` does on release (a new PostgreSQL gradebook starts empty)."""
    from nbgrader.api import Gradebook, MissingEntry

    _ensure_venv_on_path()  # a new gradebook runs `alembic` from PATH
    with Gradebook(url) as gb:
        missing = []
        for lab in labs:
            try:
                gb.find_assignment(lab)
            except MissingEntry:
                missing.append(lab)
    if not missing:
        return
    api = make_api(root, for_release=True)
    api.coursedir.db_url = url
    for lab in missing:
        result = api.generate_assignment(lab, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"generate_assignment {lab} into {url} failed:\n{result.get('log')}")
