"""Benchmark: autograde a synthetic class with nbgrader, serial vs parallel (not a test).

    .venv/bin/python bench/bench_grading.py                       # Lab 01 if present, 200 students
    .venv/bin/python bench/bench_grading.py --lab lab00_cache_sizing --n 200 --serial-sample 30

Steps: generate the class (tools/classroom.py; expected scores from grading each distinct
variant once), grade ``--serial-sample`` students with one worker on SQLite (serial; default:
the whole class), grade the whole class with ``--workers`` workers on PostgreSQL, check every
grade against its expected score, and print seconds per submission, wall time, speedup, and
where the time of one submission goes (kernel start, torch import, notebook cells).

When the serial run covers a sample only, the serial wall time for the whole class is
extrapolated from it (printed as such). Timings depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from tools import classroom, layout  # noqa: E402
from tools.samples import available_labs  # noqa: E402


def _kernel_probe(code: str, repeats: int = 3) -> tuple[float, float]:
    """(seconds to start a python3 kernel and get it ready, seconds to run ``code`` in it)."""
    from jupyter_client.manager import start_new_kernel

    starts, runs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        t1 = time.perf_counter()
        if code:
            kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        t2 = time.perf_counter()
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        starts.append(t1 - t0)
        runs.append(t2 - t1)
    return statistics.median(starts), statistics.median(runs)


def _cell_times(course: Path, lab: str, students: list[str]) -> dict[str, float]:
    """Median per-submission seconds spent in the kernel's test cells, answer cells and other
    cells (nbclient's execution timestamps in the autograded notebooks) and in the verdict (its
    wall time, recorded by tools/verdict_step.py in the notebook's metadata)."""
    def ts(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    sums: dict[str, list[float]] = {"first code cell (imports)": [], "test cells (visible parts)": [],
                                    "answer cells": [], "other cells": [],
                                    "verdict (grader fork + student process, every test)": []}
    for student in students:
        path = layout.autograded_notebook(student, lab, course)
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        acc = dict.fromkeys(sums, 0.0)
        first = True
        for cell in nb.cells:
            ex = cell.metadata.get("execution")
            if cell.cell_type != "code" or not ex or "shell.execute_reply" not in ex:
                continue
            seconds = (ts(ex["shell.execute_reply"]) - ts(ex["iopub.execute_input"])).total_seconds()
            meta = cell.metadata.get("nbgrader", {})
            key = ("first code cell (imports)" if first else "test cells (visible parts)" if meta.get("grade")
                   else "answer cells" if meta.get("solution") else "other cells")
            acc[key] += seconds
            first = False
        record = nb.metadata.get("kvcourse", {}).get("verdict", {})  # tools/verdict_step.py
        acc["verdict (grader fork + student process, every test)"] = float(record.get("wall_seconds", 0.0))
        for k, v in acc.items():
            sums[k].append(v)
    return {k: statistics.median(v) if v else 0.0 for k, v in sums.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_lab = "lab01_kv_cache" if "lab01_kv_cache" in available_labs() else "lab00_cache_sizing"
    parser.add_argument("--lab", default=default_lab)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serial-sample", type=int, default=None,
                        help="grade only this many students serially and extrapolate (default: all)")
    parser.add_argument("--course", type=Path, default=ROOT / "build" / "bench_grading")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", help="comma-separated variants to draw from (default: every variant)")
    parser.add_argument("--cli-sample", type=int, default=3,
                        help="also time this many `nbgrader autograde --student` commands (one process each)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    course = args.course.resolve()
    lab = args.lab
    print(f"lab {lab}, {args.n} synthetic submissions (+3 broken), {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    try:
        from tools import sandbox

        sandboxed = "on" if sandbox.enabled() else "off"
    except ImportError:
        sandboxed = "not available"
    print(f"autograde kernels in the bwrap sandbox (tools/sandbox.py): {sandboxed}")

    t0 = time.perf_counter()
    pool = args.pool.split(",") if args.pool else None
    entries = classroom.generate(course, lab, args.n, args.seed, pool=pool, n_broken=3)
    t_generate = time.perf_counter() - t0
    gradable = [s.student for s in entries if s.expected_status != "missing"]
    n_sample = len(gradable) if args.serial_sample is None else min(args.serial_sample, len(gradable))
    sample = set(gradable[:n_sample])
    print(f"generated in {t_generate:.0f} s (includes grading each distinct variant once)")

    t0 = time.perf_counter()
    classroom.grade(course, [lab], workers=1, db="sqlite", resume=False, students=sample)
    t_serial = time.perf_counter() - t0
    serial_rows = classroom.results(course, [lab], students=sample)
    serial_bad = classroom.mismatches(serial_rows)

    t0 = time.perf_counter()
    classroom.grade(course, [lab], workers=args.workers, db="postgres", resume=False)
    t_parallel = time.perf_counter() - t0
    rows = classroom.results(course, [lab])
    bad = classroom.mismatches(rows)

    per_serial = t_serial / len(sample)
    serial_full = per_serial * len(gradable)
    per_parallel = t_parallel / len(gradable)
    graded = [r for r in rows if r.status == "graded"]
    label = "measured" if n_sample == len(gradable) else f"extrapolated from {n_sample}"
    print()
    print(f"{'run':<34}{'submissions':>12}{'wall s':>10}{'s / submission':>16}{'speedup':>9}")
    print("-" * 81)
    print(f"{'serial (1 worker, SQLite)':<34}{len(sample):>12}{t_serial:>10.0f}{per_serial:>16.2f}{1.0:>9.2f}")
    if n_sample != len(gradable):
        print(f"{'serial, whole class (' + label + ')':<34}{len(gradable):>12}{serial_full:>10.0f}"
              f"{per_serial:>16.2f}{1.0:>9.2f}")
    print(f"{f'parallel ({args.workers} workers, PostgreSQL)':<34}{len(gradable):>12}{t_parallel:>10.0f}"
          f"{per_parallel:>16.2f}{serial_full / t_parallel:>9.2f}")
    print(f"\nparallel wall time includes starting PostgreSQL and loading the lab into its gradebook; "
          f"serial speedup basis: {label}.")
    print(f"grades checked against expected scores: serial {len(serial_rows) - len(serial_bad)}/{len(serial_rows)}, "
          f"parallel {len(rows) - len(bad)}/{len(rows)} as expected "
          f"({len(graded)} graded, {sum(r.status.startswith('not graded') for r in rows)} not graded, "
          f"{sum(r.status == 'missing' for r in rows)} missing)")
    for line in (serial_bad + bad)[:20]:
        print("  MISMATCH", line)

    if args.cli_sample:
        import subprocess

        names = [r.student for r in graded][: args.cli_sample]
        t0 = time.perf_counter()
        for name in names:
            subprocess.run([sys.executable, "-m", "nbgrader", "autograde", lab, f"--student={name}", "--force"],
                           cwd=course, capture_output=True, check=False,
                           env={**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]})
        t_cli = (time.perf_counter() - t0) / max(1, len(names))
        print(f"\nnbgrader's default, one `nbgrader autograde {lab} --student=X` process per student "
              f"({len(names)} timed, no bwrap sandbox): {t_cli:.2f} s per submission "
              f"(vs {per_serial:.2f} s serial in one process, {per_parallel:.2f} s with {args.workers} workers)")

    # where the time of one submission goes
    per_sub = statistics.median(r.seconds for r in graded) if graded else 0.0
    cells = _cell_times(course, lab, [r.student for r in graded])
    start_empty, _ = _kernel_probe("")
    _, torch_import = _kernel_probe("import torch")
    print(f"\nwhere one submission's time goes (medians over {len(graded)} graded submissions of the parallel run; "
          f"kernel probes: 3 runs on this machine)")
    print(f"  {'autograde of one submission (worker wall time)':<52}{per_sub:>8.2f} s")
    for k, v in cells.items():
        print(f"  {'  notebook ' + k:<52}{v:>8.2f} s")
    rest = per_sub - sum(cells.values())
    print(f"  {'  the rest: kernel start, nbgrader copy/DB/restore':<52}{rest:>8.2f} s")
    print("  (the first verdict of each worker also starts its warm server: tools/verdict_server.py)")
    print(f"  {'probe: start a python3 kernel until ready':<52}{start_empty:>8.2f} s")
    print(f"  {'probe: `import torch` in a fresh kernel':<52}{torch_import:>8.2f} s")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    return 1 if bad or serial_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
