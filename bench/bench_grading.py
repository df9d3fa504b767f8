"""Benchmark: autograde a synthetic class with nbgrader, serial vs parallel (not a test).

    .venv/bin/python bench/bench_grading.py                       # every lab, 200 students each
    .venv/bin/python bench/bench_grading.py --lab lab00_cache_sizing --n 200 --serial-sample 30

Steps, per lab: generate the class (tools/classroom.py; expected scores from grading each
distinct variant once; every lab's class in one course folder, the same students), grade
``--serial-sample`` students with one worker on SQLite with warm sandboxed processes
(tools/warm.py), grade ``--cold-sample`` of them again with cold ones (``KVCOURSE_WARM=0``: the
ratio measured in the same run) and time nbgrader's own one-process-per-student command. Then
the whole class on every lab in **one** run with ``--workers`` workers on PostgreSQL, as an
instructor's ``make autograde`` grades it (PostgreSQL, the warm parents and the verdict's servers
started once), every grade checked against its expected score; printed: seconds per submission,
wall time, speedup, each lab's share of the workers' time and where the time of one submission
goes (cells, verdict, the rest), then a summary.

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


#: The verdict runs beside the kernel (tools.verdict_step.StartVerdict): what autograde waited
#: for it after the kernel's step is part of a submission's time, its own wall time overlaps.
VERDICT_WAIT = "verdict: waited for after the kernel's step"
VERDICT_BESIDE = "verdict: its own wall time (beside the kernel; not in the sum)"


def _cell_times(course: Path, lab: str, students: list[str]) -> dict[str, float]:
    """Median per-submission seconds spent in the kernel's test cells, answer cells and other
    cells (nbclient's execution timestamps in the autograded notebooks) and in the verdict (its
    wall time and the wait for it after the kernel, recorded by tools/verdict_step.py in the
    notebook's metadata)."""
    def ts(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    sums: dict[str, list[float]] = {"first code cell (imports)": [], "test cells (visible parts)": [],
                                    "answer cells": [], "other cells": [], VERDICT_WAIT: [], VERDICT_BESIDE: []}
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
        acc[VERDICT_BESIDE] = float(record.get("wall_seconds", 0.0))
        acc[VERDICT_WAIT] = float(record.get("waited_seconds", record.get("wall_seconds", 0.0)))
        for k, v in acc.items():
            sums[k].append(v)
    return {k: statistics.median(v) if v else 0.0 for k, v in sums.items()}


def _warm_kernel_probe(repeats: int = 3) -> float:
    """Seconds to start a sandboxed kernel until ready and shut it down (a warm copy where
    tools/warm.py can start one, else cold), median of ``repeats``."""
    import asyncio
    import tempfile

    from tools import sandbox

    async def one(cwd: str) -> float:
        km = sandbox.SandboxKernelManager(kernel_name="python3")
        t0 = time.perf_counter()
        await km.start_kernel(cwd=cwd)
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        kc.stop_channels()
        await km.shutdown_kernel()
        return time.perf_counter() - t0

    work = Path(tempfile.mkdtemp(prefix="kvbench-")) / "lab"
    work.mkdir()
    work.parent.chmod(0o755)
    return statistics.median(asyncio.run(one(str(work))) for _ in range(repeats))


def bench_lab(lab: str, args: argparse.Namespace, course: Path) -> dict:
    """Generate the lab's class into ``course``, grade samples serially (warm, then cold) and
    with nbgrader's own command; print the lab's serial table; return its numbers."""
    print(f"\n=== {lab}: {args.n} synthetic submissions (+3 broken), {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    t0 = time.perf_counter()
    pool = args.pool.split(",") if args.pool else None
    entries = classroom.generate(course, lab, args.n, args.seed, pool=pool, n_broken=3)
    t_generate = time.perf_counter() - t0
    gradable = [s.student for s in entries if s.expected_status != "missing"]
    n_sample = len(gradable) if args.serial_sample is None else min(args.serial_sample, len(gradable))
    sample = set(gradable[:n_sample])
    print(f"generated in {t_generate:.0f} s (includes grading each distinct variant once)")

    def serial(students: set[str], warm: bool) -> tuple[float, float, list[str], int]:
        """(wall seconds, median seconds of one graded submission, mismatches, rows)."""
        os.environ["KVCOURSE_WARM"] = "1" if warm else "0"
        t = time.perf_counter()
        classroom.grade(course, [lab], workers=1, db="sqlite", resume=False, students=students, progress=False)
        seconds = time.perf_counter() - t
        rows = classroom.results(course, [lab], students=students)
        each = [r.seconds for r in rows if r.status == "graded"]
        return seconds, statistics.median(each) if each else float("nan"), classroom.mismatches(rows), len(rows)

    t_serial, med_serial, serial_bad, n_serial_rows = serial(sample, warm=True)
    cold = set(sorted(sample)[: args.cold_sample])
    t_cold, med_cold, cold_bad, n_cold_rows = serial(cold, warm=False) if cold else (0.0, float("nan"), [], 0)
    os.environ["KVCOURSE_WARM"] = "1"

    per_serial = t_serial / len(sample)
    per_cold = t_cold / len(cold) if cold else float("nan")
    label = "measured" if n_sample == len(gradable) else f"extrapolated from {n_sample}"
    print()
    print(f"{'run':<44}{'submissions':>12}{'wall s':>10}{'s / submission':>16}{'speedup':>9}{'median s':>10}")
    print("-" * 101)
    if cold:
        print(f"{'serial, cold kernels (KVCOURSE_WARM=0)':<44}{len(cold):>12}{t_cold:>10.0f}{per_cold:>16.2f}"
              f"{per_cold / per_cold:>9.2f}{med_cold:>10.2f}")
    print(f"{'serial, warm copies (1 worker, SQLite)':<44}{len(sample):>12}{t_serial:>10.0f}{per_serial:>16.2f}"
          f"{(per_cold / per_serial) if cold else 1.0:>9.2f}{med_serial:>10.2f}")
    if n_sample != len(gradable):
        print(f"{'serial, whole class (' + label + ')':<44}{len(gradable):>12}{per_serial * len(gradable):>10.0f}"
              f"{per_serial:>16.2f}")
    print("speedup against the first row; median s: one graded submission's own time (the serial wall "
          "time also holds the one-off start of the warm parent and the verdict's server).")
    wrong = serial_bad + cold_bad
    print(f"serial grades checked against expected scores: {n_serial_rows + n_cold_rows - len(wrong)}/"
          f"{n_serial_rows + n_cold_rows} as expected")
    for line in wrong[:20]:
        print("  MISMATCH", line)

    t_cli = float("nan")
    if args.cli_sample:
        import subprocess

        names = sorted(sample)[: args.cli_sample]
        t0 = time.perf_counter()
        for name in names:
            subprocess.run([sys.executable, "-m", "nbgrader", "autograde", lab, f"--student={name}", "--force"],
                           cwd=course, capture_output=True, check=False,
                           env={**os.environ, "KVCOURSE_WARM": "0",
                                "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]})
        t_cli = (time.perf_counter() - t0) / max(1, len(names))
        print(f"nbgrader's default, one `nbgrader autograde {lab} --student=X` process per student "
              f"({len(names)} timed, cold): {t_cli:.2f} s per submission")
    return {"lab": lab, "n": len(gradable), "serial": per_serial, "cold": per_cold, "serial_median": med_serial,
            "checked": n_serial_rows + n_cold_rows, "wrong": len(wrong)}


def bench_class(labs: list[str], args: argparse.Namespace, course: Path, results: list[dict]) -> tuple[float, int]:
    """Grade every lab's class in one run with ``args.workers`` workers on PostgreSQL; check every
    grade; print each lab's share and breakdown into ``results``' rows. Returns (wall seconds,
    submissions in the run)."""
    print(f"\n=== the class on every lab in one run: {args.workers} workers, PostgreSQL, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    t0 = time.perf_counter()
    classroom.grade(course, labs, workers=args.workers, db="postgres", resume=False, progress=False)
    t_parallel = time.perf_counter() - t0
    n_total = 0
    for r in results:
        lab = r["lab"]
        rows = classroom.results(course, [lab])
        bad = classroom.mismatches(rows)
        graded = [x for x in rows if x.status == "graded"]
        worker_seconds = sum(x.seconds for x in rows)
        r.update(parallel_share=worker_seconds / args.workers / r["n"], wrong=r["wrong"] + len(bad),
                 checked=r["checked"] + len(rows), parallel_median=statistics.median(x.seconds for x in graded) if graded else 0.0)
        n_total += r["n"]
        print(f"\n{lab}: {len(graded)} graded, "
              f"{sum(x.status.startswith('not graded') for x in rows)} not graded, "
              f"{sum(x.status == 'missing' for x in rows)} missing; grades as expected: {len(rows) - len(bad)}/"
              f"{len(rows)}; the workers' seconds on this lab / {args.workers}: {worker_seconds / args.workers:.0f} s "
              f"({r['parallel_share']:.2f} s per submission)")
        for line in bad[:20]:
            print("  MISMATCH", line)
        cells = _cell_times(course, lab, [x.student for x in graded])
        per_sub = r["parallel_median"]
        print(f"where one submission's time goes (medians over {len(graded)} graded submissions of the run)")
        print(f"  {'autograde of one submission (worker wall time)':<58}{per_sub:>8.2f} s")
        for k, v in cells.items():
            print(f"  {'  notebook ' + k:<58}{v:>8.2f} s")
        rest = per_sub - sum(v for k, v in cells.items() if k != VERDICT_BESIDE)
        print(f"  {'  the rest: kernel start and stop, nbgrader copy/DB/restore':<58}{rest:>8.2f} s")
    print(f"\nwall time of the run: {t_parallel:.0f} s for {n_total} submissions "
          "(includes starting PostgreSQL, loading the labs into its gradebook and starting each worker's "
          "warm parent and verdict server)")
    return t_parallel, n_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="all", help="a lab, comma-separated labs, or all (default)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serial-sample", type=int, default=10,
                        help="grade this many students serially and extrapolate (default 10; 0: all)")
    parser.add_argument("--cold-sample", type=int, default=5,
                        help="grade this many of them again with cold kernels (KVCOURSE_WARM=0), for the ratio")
    parser.add_argument("--course", type=Path, default=ROOT / "build" / "bench_grading")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", help="comma-separated variants to draw from (default: every variant)")
    parser.add_argument("--cli-sample", type=int, default=3,
                        help="also time this many `nbgrader autograde --student` commands (one process each)")
    args = parser.parse_args(argv)
    if args.serial_sample == 0:
        args.serial_sample = None
    os.chdir(ROOT)
    labs = available_labs() if args.lab == "all" else args.lab.split(",")
    from tools import sandbox, warm

    print(f"bench_grading: labs {', '.join(labs)}; {args.n} students each; {args.workers} workers")
    print(f"autograde kernels in the bwrap sandbox: {'on' if sandbox.enabled() else 'off'}; {warm.status_line()}")
    probe_cold, _ = _kernel_probe("")
    _, torch_import = _kernel_probe("import torch")
    probe_warm = _warm_kernel_probe()
    print(f"probe: a plain python3 kernel, start until ready {probe_cold:.2f} s, `import torch` in it "
          f"{torch_import:.2f} s; a sandboxed kernel (warm copy), start, ready and stop {probe_warm:.2f} s")
    course = args.course.resolve()
    results = [bench_lab(lab, args, course) for lab in labs]
    t_parallel, n_total = bench_class(labs, args, course, results)

    print(f"\n=== summary: seconds per submission, {os.cpu_count()} CPU cores")
    print(f"{'lab':<22}{'students':>9}{'cold serial':>13}{'warm serial':>13}{'warm median':>13}"
          f"{'share of parallel':>19}{'grades as expected':>20}")
    for r in results:
        print(f"{r['lab']:<22}{r['n']:>9}{r['cold']:>13.2f}{r['serial']:>13.2f}{r['serial_median']:>13.2f}"
              f"{r['parallel_share']:>19.2f}{r['checked'] - r['wrong']:>14}/{r['checked']}")
    print(f"{'all labs, one run':<22}{n_total:>9}{'':>13}{'':>13}{'':>13}{t_parallel / n_total:>19.2f}"
          f"  wall {t_parallel:.0f} s ({t_parallel / 60:.1f} min for the class on every lab with "
          f"{args.workers} workers)")
    print("share of parallel: the workers' seconds on that lab / workers / submissions (the run's wall "
          "time is shared by the labs; the last row is measured)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 1 if any(r["wrong"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
