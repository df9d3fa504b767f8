"""The instructor's pipeline: release, autograde, feedback, grades, report.

Everything runs through nbgrader's own Python API (``nbgrader.apps.NbGraderAPI``) in one
process, so nbgrader's start-up is paid once, not once per student and command.

    python -m tools.pipeline demo        # everything below, then the solutions site
    python -m tools.pipeline release     # source/ -> release/ (reference files kept out)
    python -m tools.pipeline autograde   # submitted/ -> autograded/ + gradebook, integrity check
    python -m tools.pipeline autograde --workers 8   # the same in 8 processes (PostgreSQL gradebook)
    python -m tools.pipeline report      # feedback/ HTML, grades.csv, score table

A submission that cannot be graded (broken JSON, dead kernel, ...) is reported in the table
and the CSV; the batch goes on and the command still succeeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from tools.samples import ROOT, available_labs, write_samples

#: Files of source/<lab>/ that graders need but students must not see.
REFERENCE_DIRS = ("ref",)


def _quiet() -> None:
    # nbgrader's gradebook triggers harmless SQLAlchemy autoflush warnings on every run.
    import warnings

    warnings.filterwarnings("ignore", message=".*not in session.*")


def _ensure_venv_on_path() -> None:
    # nbgrader runs `alembic` from PATH when it creates the gradebook; without the venv's
    # bin/ on PATH that fails and leaves a half-made database.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _load_config(root: Path):  # -> traitlets Config
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config())
    return config


def gradebook_db_url(root: Path = ROOT, config=None) -> str:
    """The gradebook's SQLAlchemy URL: ``c.CourseDirectory.db_url`` of ``root/nbgrader_config.py``
    when it is set there (PostgreSQL, for grading with several workers), else SQLite
    ``root/gradebook.db``. nbgrader's own commands and the formgrader read the same setting."""
    config = _load_config(root) if config is None else config
    configured = config.CourseDirectory.get("db_url")
    return str(configured) if configured else "sqlite:///" + str(Path(root) / "gradebook.db")


def make_api(root: Path = ROOT, for_release: bool = False, timeout: int | None = None,
             sandbox: bool | None = None):  # -> NbGraderAPI
    """An NbGraderAPI configured by ``root/nbgrader_config.py``.

    ``for_release=True``: the configuration for ``generate_assignment`` (autograde's steps left
    as configured). The reference folders (``ref/``) are in ``CourseDirectory.ignore`` for
    every command: they reach neither release/ nor autograded/ (only the verdict's grader
    process reads them, from source/).

    ``sandbox``: run autograde's kernels in bwrap (tools/sandbox.py); None = the default
    (on where bwrap works, unless KVCOURSE_SANDBOX=0). Feedback always drops output lines
    that quote hidden tests.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from tools import feedback as feedback_tool
    from tools import sandbox as sandbox_tool

    _ensure_venv_on_path()
    _quiet()
    config = _load_config(root)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = gradebook_db_url(root, config)
    ignored = list(config.CourseDirectory.ignore)
    config.CourseDirectory.ignore = ignored + [d for d in REFERENCE_DIRS if d not in ignored]
    if not for_release:
        configured = config.Autograde.get("autograde_preprocessors")
        boxed = sandbox_tool.enabled() if sandbox is None else sandbox
        config.Autograde.autograde_preprocessors = sandbox_tool.autograde_preprocessors(
            list(configured) if configured is not None else None, sandbox=boxed)
        config.CourseVerdict.sandboxed = "on" if boxed else "off"
    # the pipeline runs the integrity check itself, for the whole batch (nbgrader_config.py's
    # hook is for `nbgrader autograde` and the formgrader)
    config.Autograde.post_convert_hook = None
    config.GenerateFeedback.preprocessors = feedback_tool.feedback_preprocessors(
        list(config.GenerateFeedback.get("preprocessors") or _default_feedback_preprocessors()))
    config.GenerateFeedback.post_convert_hook = feedback_tool.clean_feedback_folder
    if timeout is not None:
        config.Execute.timeout = timeout
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def _default_feedback_preprocessors() -> list:
    from nbgrader.converters.generate_feedback import GenerateFeedback

    return list(GenerateFeedback.class_traits()["preprocessors"].default())


def release(root: Path = ROOT) -> list[str]:
    """Generate release/<lab>/ for every lab in source/. Raises if nbgrader fails."""
    api = make_api(root, for_release=True)
    labs = available_labs(root)
    for lab in labs:
        result = api.generate_assignment(lab, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"generate_assignment {lab} failed:\n{result.get('error') or result.get('log')}")
        leaked = [d for d in REFERENCE_DIRS if (root / "release" / lab / d).exists()]
        if leaked:
            raise RuntimeError(f"reference files leaked into release/{lab}: {leaked}")
    return labs


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
    for student_dir in sorted((root / "submitted").iterdir()) if (root / "submitted").exists() else []:
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
    if not (Path(root) / "submitted" / student / lab / f"{lab}.ipynb").exists():
        result = {"success": False, "error": f"no {lab}.ipynb in the submission (no notebook to grade)"}
    else:
        try:
            result = api.autograde(lab, student, force=True, create=True)
        except Exception as exc:  # noqa: BLE001 - one broken submission must not stop the batch
            result = {"success": False, "error": f"{type(exc).__name__}: {exc}"}
    from tools import budget

    killed = budget.pop_kill_reason(Path(root) / "autograded" / student / lab)
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
    """Kernels started from this process get ``cores // n_workers`` threads: workers x threads
    should not exceed the cores (torch and NumPy otherwise start one thread per core in every
    kernel and fight over the cores). Settings already in the environment win."""
    threads = str(max(1, (os.cpu_count() or 1) // n_workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
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
    for student, lab in items:
        run = _grade_one(api, root_path, student, lab)
        run.worker = index
        queue.put(("run", index, asdict(run)))
        print(f"[worker {index}] {lab} / {student}: {'ok' if run.success else run.error} ({run.seconds:.1f} s)",
              flush=True)
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

    path = root / "feedback" / run.student / run.lab / f"{run.lab}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_NOT_GRADED_HTML.format(lab=html.escape(run.lab), reason=html.escape(run.error),
                                            advice=html.escape(_advice(run.error))))
    return path


def feedback(root: Path = ROOT, labs: list[str] | None = None) -> None:
    """Write feedback/<student>/<lab>/<lab>.html (hidden tests cleared) for every graded lab."""
    api = make_api(root)
    for lab in labs or available_labs(root):
        if not any((root / "autograded").glob(f"*/{lab}")):
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


def cell_timeout(root: Path = ROOT) -> int:
    """The per-cell time limit of nbgrader's run (``c.Execute.timeout`` in nbgrader_config.py)."""
    value = _load_config(root).Execute.get("timeout", 120)
    return int(value) if isinstance(value, int | float) and value > 0 else 120


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
        source = source or nbformat.read(Path(root) / "source" / lab / f"{lab}.ipynb", as_version=4)
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
                sources[run.lab] = nbformat.read(root / "source" / run.lab / f"{run.lab}.ipynb", as_version=4)
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
    return {"submitted": Path(root) / "submitted" / student / lab / f"{lab}.ipynb",
            "autograded": Path(root) / "autograded" / student / lab / f"{lab}.ipynb"}


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
        score = d["manual_score"] if d["manual_score"] is not None else d["auto_score"]
        row.auto_score += score or 0.0
        row.cells[d["name"]] = float(score or 0.0)
        row.manual_score += extra
        return
    row.manual_max += max_score
    score = d["manual_score"] if d["manual_score"] is not None else d["auto_score"]
    if score is None:
        row.manual_pending.append(d["name"])
    else:
        row.manual_score += float(score)
    row.manual_score += extra


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
                present = set(cell_errors(root / "autograded" / student / lab / f"{lab}.ipynb", every=True))
                missing = [g.name for g in nb.grades if g.cell_type == "code" and g.name not in present]
                if missing:
                    row.status = f"graded; {len(missing)} test cells missing from the notebook: needs manual grading"
                for grade in nb.grades:
                    _add_grade(row, grade.to_dict())
                row.manual_pending.sort()
                if row.manual_pending:
                    row.status += "; " + _hand_grading_status(row.manual_pending)
                row.failed_tests = named_mistakes(root / "autograded" / student / lab / f"{lab}.ipynb")
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
               "total_percent", "total_is", "grading_seconds", "failed_tests", "integrity"]


def write_csv(rows: list[GradeRow], path: Path) -> None:
    """grades.csv: one row per student and lab (columns: CSV_COLUMNS).

    autograded_*: the test cells (integrity holds included); hand_graded_*: the written answers
    graded by hand in the formgrader so far (and extra credit); answers_not_hand_graded: the
    written answers still to grade ("; "-separated cell names); total_*: both together;
    total_is: "final", "not graded" or "provisional: <why>" (answers not graded by hand yet,
    points held for review)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            mistakes = "; ".join(f"{k}: {v}" for k, v in sorted(r.failed_tests.items()))
            writer.writerow([r.student, r.lab, r.status, f"{r.auto_score:g}", f"{r.auto_max:g}",
                             f"{r.percent:.1f}", f"{r.manual_score:g}", f"{r.manual_max:g}",
                             "; ".join(r.manual_pending), f"{r.total:g}", f"{r.total_max:g}",
                             f"{r.total_percent:.1f}", r.total_is, f"{r.seconds:.2f}", mistakes, r.integrity])


def _points(score: float, max_score: float, provisional: bool = False) -> str:
    return f"{score:g}{'*' if provisional else ''} / {max_score:g}"


def format_table(rows: list[GradeRow]) -> str:
    """The score table printed at the end of the demo: autograded, hand-graded and total points.

    A star marks a provisional number: written answers not graded by hand yet count 0 so far."""
    w = max([len("student")] + [len(r.student) for r in rows])
    lines = [f"{'student':<{w}} {'lab':<20} {'autograded':>12} {'auto %':>6} {'by hand':>9} {'total':>11} "
             f"{'total %':>7} {'time':>7}  status",
             "-" * (w + 90)]
    indent = " " * (w + 4)
    for r in rows:
        pending = bool(r.manual_pending)
        total_pct = f"{r.total_percent:.1f}{'*' if pending else ''}"
        lines.append(f"{r.student:<{w}} {r.lab:<20} {r.auto_score:>5g} / {r.auto_max:<4g} {r.percent:>6.1f} "
                     f"{_points(r.manual_score, r.manual_max, pending):>9} "
                     f"{_points(r.total, r.total_max, pending):>11} {total_pct:>7} {r.seconds:>6.1f}s  {r.status}")
        if r.integrity:
            lines.append(f"{indent}! {r.integrity}")
        if pending:
            lines.append(f"{indent}? not graded by hand yet: {', '.join(r.manual_pending)}")
        for test, mistake in sorted(r.failed_tests.items()):
            lines.append(f"{indent}- {test}: {mistake}")
    todo = [r for r in rows if r.manual_pending]
    if todo:
        lines.append("")
        lines.append(f"needs hand grading ({len(todo)} submissions, "
                     f"{sum(len(r.manual_pending) for r in todo)} answers; totals marked * are provisional): "
                     + ", ".join(f"{r.student}/{r.lab}" for r in todo))
    return "\n".join(lines)


def write_class_report(root: Path, rows: list[GradeRow]) -> Path:
    """report.html (tools/class_report.py): distributions, grades with the hand-graded points,
    answers still to grade by hand, common mistakes, holds, broken work."""
    from tools.class_report import ReportRow, write_html

    report_rows = [ReportRow(r.student, r.lab, r.status.startswith("graded"), r.status, r.auto_score, r.auto_max,
                             dict(r.cells), dict(r.failed_tests), r.integrity, manual_score=r.manual_score,
                             manual_max=r.manual_max, manual_pending=list(r.manual_pending),
                             total_is=r.total_is) for r in rows]
    return write_html(root / "report.html", root, report_rows)


def report(root: Path = ROOT, runs: list[GradeRun] | None = None,
           verdicts: dict | None = None) -> list[GradeRow]:
    """Feedback HTML, grades.csv (the final grades), the class report (report.html) and the score table.

    Hand-graded points are read from the gradebook as the formgrader left them: grade the
    written answers there first, then run this again.
    ``runs``/``verdicts``: None reads the latest ones saved in the course folder."""
    runs = saved_runs(root) if runs is None else runs
    feedback(root)
    for run in runs:
        if not run.success:
            write_failure_feedback(root, run)
    rows = collect_grades(root, runs, verdicts)
    write_csv(rows, root / GRADES_CSV)
    write_class_report(root, rows)
    print(format_table(rows))
    print("\n'by hand' = points of the written answers graded by hand in the formgrader so far; "
          "'total' = autograded + by hand.\n* provisional: written answers not graded by hand yet count 0 "
          "(grade them in the formgrader, then `make report` again).")
    changed = changed_since_checked(root)
    if changed:
        print(f"WARNING: {len(changed)} graded notebook(s) changed after the integrity check judged them "
              f"(marked CHANGED above; their recorded SHA-256 no longer matches): "
              + ", ".join(f"{s}/{lab}" for s, lab in sorted(changed)))
    if "WARNING" in sandbox_status():
        print(sandbox_status())
    print(f"grades (final when no total is provisional): {(root / GRADES_CSV).relative_to(root)}; "
          "class report: report.html; feedback: feedback/<student>/<lab>/<lab>.html")
    return rows


def sandbox_status() -> str:
    """The sandbox's status line (tools/sandbox.py): on, off by choice, or unavailable."""
    from tools import sandbox as sandbox_tool

    return sandbox_tool.status_line()


def demo(root: Path = ROOT, site: bool = True) -> list[GradeRow]:
    """The main job: release, sample submissions, autograde, feedback, grades, site."""
    t0 = time.perf_counter()
    print("1. release: source/ -> release/")
    for lab in release(root):
        print(f"   release/{lab}/")
    print("2. sample submissions -> submitted/")
    for path in write_samples(root):
        print(f"   {path.relative_to(root)}")
    print("3. autograde (one nbgrader process for the whole batch)")
    print("   " + sandbox_status())
    runs = autograde(root)
    if runs:
        per = sum(r.seconds for r in runs) / len(runs)
        print(f"   {len(runs)} submissions, {per:.1f} s per submission on average")
    print("4. integrity: static scan, and the verdicts recorded while grading")
    verdicts = check_integrity(root, runs)
    print(f"   {len(verdicts)} graded submissions checked, {sum(v.held for v in verdicts.values())} held for review")
    print("5. feedback, grades.csv and scores")
    rows = report(root, runs, verdicts)
    if site:
        from tools import site as site_tool

        print("6. solutions site -> build/site/")
        if site_tool.main([]) != 0:
            raise RuntimeError("building the solutions site failed (see above)")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["demo", "release", "samples", "autograde", "report"])
    parser.add_argument("--no-site", action="store_true", help="demo: skip building the solutions site")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade without the bwrap sandbox (same as KVCOURSE_SANDBOX=0)")
    parser.add_argument("--workers", type=int, default=1,
                        help="autograde: processes grading disjoint students at once (more than 1 needs a "
                             "PostgreSQL gradebook in nbgrader_config.py; default 1)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.no_sandbox:
        os.environ["KVCOURSE_SANDBOX"] = "0"
    os.chdir(ROOT)
    if args.command == "demo":
        demo(ROOT, site=not args.no_site)
    elif args.command == "release":
        for lab in release(ROOT):
            print(f"release/{lab}/")
    elif args.command == "samples":
        write_samples(ROOT)
    elif args.command == "autograde":
        print(sandbox_status())
        try:
            runs = autograde(ROOT, workers=args.workers)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        failed = [r for r in runs if not r.success]
        print(f"{len(runs)} submissions autograded into {gradebook_db_url(ROOT)}, {len(failed)} not graded")
        verdicts = check_integrity(ROOT, runs)
        print(f"integrity: {len(verdicts)} graded submissions checked, "
              f"{sum(v.held for v in verdicts.values())} held for review (`make report` writes feedback and grades)")
        for run in failed:
            write_failure_feedback(ROOT, run)
    elif args.command == "report":
        report(ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
