"""The instructor's pipeline, from the command line: release, autograde, feedback, grades, report.

    python -m tools.pipeline demo        # everything below, then the solutions site
    python -m tools.pipeline release     # source/ -> release/ (reference files kept out)
    python -m tools.pipeline autograde   # submitted/ -> autograded/ + gradebook, integrity check
    python -m tools.pipeline autograde --workers 8   # the same in 8 processes (PostgreSQL gradebook)
    python -m tools.pipeline report      # feedback/ HTML, grades.csv, score table

A submission that cannot be graded (broken JSON, dead kernel, ...) is reported in the table
and the CSV; the batch goes on and the command still succeeds.

Each job has its module; this one holds the demo and the command line, and names the jobs'
functions so that ``from tools import pipeline; pipeline.autograde(...)`` works:

- ``tools/course_api.py``: nbgrader's API with the course's configuration; release;
- ``tools/autograde.py``: grading, serial or in parallel workers;
- ``tools/holds.py``: the integrity check's holds;
- ``tools/grades.py``: the one reader of scores, the one CSV writer, feedback pages, the report;
- ``tools/late.py``: deadlines, extensions and late penalties (``deadlines.toml``, ``make deadlines``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tools import late
from tools.autograde import (  # noqa: F401 - the pipeline's jobs, importable from here as before
    GradeRun,
    autograde,
    ensure_assignments,
    saved_runs,
    submissions,
    worker_shares,
)
from tools.course_api import (  # noqa: F401
    REFERENCE_DIRS,
    _ensure_venv_on_path,
    _load_config,
    cell_timeout,
    gradebook_db_url,
    make_api,
    release,
)
from tools.grades import (  # noqa: F401
    GRADES_CSV,
    NBGRADER_EXPORT,
    GradeRow,
    cell_errors,
    collect_grades,
    feedback,
    format_table,
    named_mistakes,
    report,
    sandbox_status,
    write_class_report,
    write_csv,
    write_failure_feedback,
)
from tools.holds import (  # noqa: F401
    HOLD_COMMENT_MARK,
    _first_solution_cell,
    _hold_all,
    changed_since_checked,
    check_integrity,
    integrity_hook,
    saved_verdicts,
    sha256_of,
)
from tools.layout import ROOT
from tools.samples import write_samples


def demo(root: Path = ROOT, site: bool = True) -> list[GradeRow]:
    """The main job: release, sample submissions, autograde, feedback, grades, site."""
    t0 = time.perf_counter()
    print("1. release: source/ -> release/")
    for lab in release(root):
        print(f"   release/{lab}/")
    print("2. sample submissions -> submitted/")
    from tools.similarity import write_demo_pair

    samples = write_samples(root) + write_demo_pair(root)  # + a pair for the similarity check
    for path in samples:
        print(f"   {path.relative_to(root)}")
    for line in late.demo(root, samples):  # due dates, an extension, the samples' times: some late
        print(f"   deadlines: {line}")
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
    from tools.lms import demo_export

    print("   LMS export (sample id mapping, provisional totals allowed): "
          + ", ".join(str(p.relative_to(root)) for p in demo_export(root, rows)))
    if site:
        from tools import site as site_tool

        print("6. solutions site -> build/site/")
        if site_tool.main([]) != 0:
            raise RuntimeError("building the solutions site failed (see above)")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return rows


def grade(root: Path = ROOT, pairs: list[tuple[str, str]] | None = None, workers: int = 1,
          verbose: bool = True) -> tuple[list[GradeRun], dict]:
    """`make autograde`'s grading path, for every submission in submitted/ or only ``pairs``
    ((student, lab); grade-on-submit passes one): deadlines.toml checked, nbgrader's autograde
    (sandbox, verdict, hand grades kept), the integrity check, the late penalties nbgrader stores
    (on the scores after the holds), a feedback page for each submission that could not be graded.

    Returns the runs and the integrity verdicts. Raises ``late.DeadlinesError`` (deadlines.toml
    invalid, or its due dates not set: `make deadlines`) or ValueError (several workers on a
    SQLite gradebook) before grading anything."""
    late.check_ready(root)  # deadlines.toml valid, its due dates set (`make deadlines`)
    runs = autograde(root, pairs=pairs, workers=workers, verbose=verbose)
    verdicts = check_integrity(root, runs, verbose=verbose)
    late.refresh_penalties(root)
    for run in runs:
        if not run.success:
            write_failure_feedback(root, run)
    return runs, verdicts


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
        try:
            demo(ROOT, site=not args.no_site)
        except late.DeadlinesError as exc:  # the course's own deadlines.toml is bad
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "release":
        for lab in release(ROOT):
            print(f"release/{lab}/")
    elif args.command == "samples":
        write_samples(ROOT)
    elif args.command == "autograde":
        print(sandbox_status())
        try:
            runs, verdicts = grade(ROOT, workers=args.workers)
        except (ValueError, late.DeadlinesError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        failed = [r for r in runs if not r.success]
        print(f"{len(runs)} submissions autograded into {gradebook_db_url(ROOT)}, {len(failed)} not graded")
        print(f"integrity: {len(verdicts)} graded submissions checked, "
              f"{sum(v.held for v in verdicts.values())} held for review (`make report` writes feedback and grades)")
    elif args.command == "report":
        try:
            report(ROOT)
        except late.DeadlinesError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
