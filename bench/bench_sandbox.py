"""Benchmark: what the grading sandbox (tools/sandbox.py) costs per submission (not a test).

    .venv/bin/python bench/bench_sandbox.py                    # Lab 00, 3 submissions, ~3 min
    .venv/bin/python bench/bench_sandbox.py --labs lab00_cache_sizing lab01_kv_cache --n 4

Three measurements, sandbox off vs on, interleaved so that load from other work on the
machine hits both alike:

1. ``bwrap`` alone: run ``/bin/true`` directly and inside the sandbox (mounts, namespaces,
   rlimits, uid switch, joining the submission's budget), many times.
1b. the per-submission budget (tools/budget.py): creating and removing it (a cgroup, or the
   watchdog's bookkeeping), and one look of its watchdog at a running submission (every 0.2 s),
   for this machine's backend and for the watchdog fallback.
2. kernel: start a kernel, run ``import numpy, course_lib`` and ``1 + 1``, shut it down
   (nbclient, as nbgrader does), with the normal kernel manager and the sandboxed one.
3. autograde: the real ``nbgrader autograde`` (tools/pipeline.py) of ``--n`` copies of each
   lab's solution in a scratch course, sandbox off, on, on, off (after one warm-up run);
   every one must get full marks.

Prints medians and the difference (on - off). Timings depend on what else runs here.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from tools import budget, layout, pipeline, sandbox  # noqa: E402
from tools.samples import write_submission  # noqa: E402


def bench_bwrap(repeats: int) -> tuple[list[float], list[float]]:
    """Seconds to run /bin/true directly and inside the sandbox."""
    off, on = [], []
    with tempfile.TemporaryDirectory(prefix="kvsb-bench-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        uid = sandbox.sandbox_uid()
        runtime = sandbox.prepare_runtime_dir(uid)
        try:
            for _ in range(repeats):
                t = time.perf_counter()
                subprocess.run(["/bin/true"], check=True)
                off.append(time.perf_counter() - t)
                t = time.perf_counter()
                box = budget.new_budget(sandbox.DEFAULT_LIMITS.memory_bytes, sandbox.DEFAULT_LIMITS.tasks,
                                        str(work), uid)
                cmd = sandbox.wrap_command(["/bin/true"], work, runtime, uid=uid, prefix=box.prefix())
                subprocess.run(cmd, check=True, cwd=work)
                box.close()
                on.append(time.perf_counter() - t)
        finally:
            shutil.rmtree(runtime, ignore_errors=True)
    return off, on


def bench_budget(repeats: int) -> list[tuple[str, list[float]]]:
    """Seconds to create and remove a budget, and for one watchdog look at a running sandbox."""
    rows = []
    kinds = [budget.backend()] + (["watchdog"] if budget.backend() != "watchdog" else [])
    with tempfile.TemporaryDirectory(prefix="kvsb-bench-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        for kind in kinds:
            def make(kind: str = kind) -> budget.Budget:
                if kind == "watchdog":
                    return budget.WatchdogBudget(sandbox.DEFAULT_LIMITS.memory_bytes, sandbox.DEFAULT_LIMITS.tasks,
                                                 str(work))
                return budget.CgroupBudget(kind, sandbox.DEFAULT_LIMITS.memory_bytes, sandbox.DEFAULT_LIMITS.tasks,
                                           str(work))
            setup = []
            for _ in range(repeats):
                t = time.perf_counter()
                make().close()
                setup.append(time.perf_counter() - t)
            rows.append((f"budget ({kind}): create + remove", setup))
            # one look at a submission of 1 kernel-sized process (a Python with numpy loaded)
            box = make()
            proc = subprocess.Popen(box.prefix() + [sys.executable, "-c", "import numpy, time; time.sleep(60)"])
            box._root_pid = proc.pid
            time.sleep(1.0)
            looks = []
            for _ in range(repeats * 4):
                t = time.perf_counter()
                if box.exceeded():
                    raise RuntimeError("an idle Python exceeded the budget")
                looks.append(time.perf_counter() - t)
            proc.kill()
            proc.wait()
            box.close()
            rows.append((f"budget ({kind}): one watchdog look (every 0.2 s)", looks))
    return rows


def bench_kernel(repeats: int) -> tuple[list[float], list[float]]:
    """Seconds to start a kernel, run two small cells, and shut it down."""
    from nbclient import NotebookClient

    off, on = [], []
    with tempfile.TemporaryDirectory(prefix="kvsb-bench-") as tmp:
        for _ in range(repeats):
            for managed, out in ((None, off), (sandbox.SandboxKernelManager, on)):
                nb = nbformat.v4.new_notebook()
                nb.cells = [nbformat.v4.new_code_cell("import numpy, course_lib"), nbformat.v4.new_code_cell("1 + 1")]
                kwargs = {"kernel_manager_class": managed} if managed else {}
                client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                        resources={"metadata": {"path": tmp}}, **kwargs)
                t = time.perf_counter()
                client.execute()
                out.append(time.perf_counter() - t)
                if nb.cells[1].outputs[0]["data"]["text/plain"] != "2":
                    raise RuntimeError("the kernel did not compute 1 + 1")
    return off, on


def bench_autograde(labs: list[str], n: int) -> dict[tuple[str, bool], list[float]]:
    """Seconds per autograded submission, per (lab, sandbox on)."""
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kvsb-bench-course-") as tmp:
        root = Path(tmp)
        (root / layout.SOURCE).mkdir()
        for lab in labs:
            shutil.copytree(ROOT / layout.SOURCE / lab, root / layout.SOURCE / lab)
        shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        pipeline.release(root)
        pairs = []
        for lab in labs:
            for i in range(n):
                write_submission(root, lab, f"s{i:02d}", "solution")
                pairs.append((f"s{i:02d}", lab))
        pipeline.autograde(root, pairs[:1], verbose=False, sandbox=False)  # warm-up, not counted
        # each run re-grades the same submissions; the order alternates between rounds
        for on in (False, True, True, False):
            runs = pipeline.autograde(root, pairs, verbose=False, sandbox=on)
            rows = {(r.student, r.lab): r for r in pipeline.collect_grades(root, runs)}
            for run in runs:
                row = rows[(run.student, run.lab)]
                if not run.success or row.auto_score != row.auto_max:
                    raise RuntimeError(f"{run.lab}/{run.student} sandbox={on}: {row.status}, "
                                       f"{row.auto_score}/{row.auto_max}")
                times.setdefault((run.lab, on), []).append(run.seconds)
    return times


def _row(name: str, off: list[float], on: list[float]) -> str:
    a, b = statistics.median(off), statistics.median(on)
    return f"{name:<48} {len(off):>3} {a:>9.3f} {b:>9.3f} {b - a:>+9.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labs", nargs="+", default=["lab00_cache_sizing"])
    parser.add_argument("--n", type=int, default=3, help="submissions per lab (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="kernel starts per mode (default 5)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be >= 1")
    result = sandbox.probe()
    if not result.works:
        print(f"sandbox unavailable: {result.reason}")
        return 1
    print(sandbox.status_line())
    lines = [f"{'measurement (median seconds)':<48} {'n':>3} {'off':>9} {'on':>9} {'on - off':>9}", "-" * 83]
    off, on = bench_bwrap(20)
    lines.append(_row("bwrap + budget around /bin/true", off, on))
    for name, values in bench_budget(args.repeats):
        lines.append(f"{name:<48} {len(values):>3} {'':>9} {statistics.median(values):>9.4f} "
                     f"{statistics.median(values):>+9.4f}")
    off, on = bench_kernel(args.repeats)
    lines.append(_row("kernel start + 2 cells + shutdown", off, on))
    times = bench_autograde(args.labs, args.n)
    for lab in args.labs:
        lines.append(_row(f"autograde {lab} (per submission)", times[(lab, False)], times[(lab, True)]))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
