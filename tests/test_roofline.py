"""Tests of Lab 02 (roofline): course_lib.roofline, the roofline plots, the notebook and its variants.

The notebook checks run the solution and test cells in this process (fast, no kernel): the
source solution must pass every test cell, the release stubs must fail every one, each
correct variant must pass, and each mutant must fail its intended test with its named
message. (tests/test_notebooks.py executes the whole notebook in a Jupyter kernel.)
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sys
import warnings
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tools` when run as `pytest`

import matplotlib.pyplot as plt  # noqa: E402

from course_lib import roofline  # noqa: E402
from course_lib.plotting import plot_intensity_vs_length, plot_roofline  # noqa: E402
from course_lib.specs import HARDWARE, hardware  # noqa: E402
from course_lib.timing import Timing  # noqa: E402
from tools import nbbuild, variant_cells  # noqa: E402
from tools.variants import lab02_roofline as variants  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAB_FILE = ROOT / "labs" / "lab02_roofline.py"
NOTEBOOK = ROOT / "source" / "lab02_roofline" / "lab02_roofline.ipynb"
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION", re.S | re.M)
CORE_IDS = ["test_attention_flops", "test_attention_bytes", "test_roofline_model", "test_roofline_seconds",
            "test_decode_tokens_per_s_bound"]
TEST_IDS = [t for core in CORE_IDS for t in (core, core + "_validation")]


# --------------------------------------------------------------------------------------------
# course_lib.roofline
# --------------------------------------------------------------------------------------------

def _fixed_timing(seconds: float):
    def fake_measure(fn, repeats=5, warmup=1, device=None):
        fn()
        return Timing(seconds, seconds * 0.9, seconds * 1.2, repeats, (seconds,) * repeats)
    return fake_measure


def test_bandwidth_probe_counts_bytes_read_and_written(monkeypatch):
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.5))
    probe = roofline.measure_bandwidth(4_000_000, repeats=3)
    # 1,000,000 fp32 elements copied: 4 MB read + 4 MB written in 0.5 s
    assert probe.work == 8_000_000
    assert probe.rate == pytest.approx(16e6)
    assert probe.best_rate == pytest.approx(8e6 / 0.45)
    assert probe.unit == "B/s" and "read + write" in probe.what


def test_read_probe_counts_bytes_read_only(monkeypatch):
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.25))
    probe = roofline.measure_read_bandwidth(2_000_000, repeats=2, dtype="fp16")
    assert probe.work == 2_000_000 and probe.rate == pytest.approx(8e6)


def test_matmul_probe_counts_2n3(monkeypatch):
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.001))
    probe = roofline.measure_matmul_peak(64, repeats=2)
    assert probe.work == 2 * 64**3
    assert probe.rate == pytest.approx(2 * 64**3 / 0.001)


def test_machine_roofline_combines_medians(monkeypatch):
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.01))
    machine = roofline.measure_machine("cpu", "fp32", repeats=2, copy_bytes=400_000, matmul_n=32)
    assert machine.mem_bandwidth == pytest.approx(800_000 / 0.01)
    assert machine.peak_flops == pytest.approx(2 * 32**3 / 0.01)
    assert machine.ridge == pytest.approx(machine.peak_flops / machine.mem_bandwidth)
    assert "ridge 0.0819 FLOP/byte" in str(machine) and "80 MB/s" in str(machine)


def test_a_shared_measurement_is_returned_only_while_autograding_with_the_same_arguments(monkeypatch):
    """A grading run measures its machine once (tools/zygote.py shares it); its notebooks print
    that measurement, with a note, instead of measuring again. Nothing is shared otherwise."""
    import torch

    monkeypatch.setattr(roofline, "_SHARED", {})
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.01))
    measured = roofline.measure_machine("cpu", "fp32", repeats=roofline.GRADING_REPEATS)
    back = roofline.roofline_from_dict(json.loads(json.dumps(roofline.roofline_to_dict(measured))))
    assert back == measured
    threads = torch.get_num_threads()
    kept = roofline.share_measurement(back, threads=threads)
    assert roofline.shared_measurement(threads=threads) is kept
    assert "measured once for this grading run" in str(kept) and kept.mem_bandwidth == measured.mem_bandwidth
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.02))  # a new measurement would differ
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert roofline.measure_machine("cpu", "fp32", repeats=roofline.GRADING_REPEATS) is kept
    assert roofline.measure_machine("cpu", "fp32", repeats=5) is not kept  # other arguments
    assert roofline.shared_measurement(threads=threads + 1) is None  # another thread count
    monkeypatch.delenv("NBGRADER_EXECUTION")
    fresh = roofline.measure_machine("cpu", "fp32", repeats=roofline.GRADING_REPEATS)
    assert fresh is not kept and fresh.note == "" and fresh.mem_bandwidth == pytest.approx(kept.mem_bandwidth / 2)


def test_real_probes_give_positive_rates():
    bw = roofline.measure_bandwidth(8_000_000, repeats=2)
    mm = roofline.measure_matmul_peak(128, repeats=2)
    assert bw.rate > 1e8 and mm.rate > 1e7
    assert bw.timing.repeats == 2 and mm.timing.median > 0


@pytest.mark.parametrize("kwargs, error", [({"n_bytes": 0}, ValueError), ({"n_bytes": 1.5}, TypeError),
                                           ({"repeats": 0}, ValueError), ({"dtype": "int3"}, ValueError)])
def test_bandwidth_probe_rejects_bad_input(kwargs, error):
    with pytest.raises(error):
        roofline.measure_bandwidth(**{"n_bytes": 1000, **kwargs})


def test_spec_for_gpu_matches_names():
    assert roofline.spec_for_gpu("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert roofline.spec_for_gpu("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert roofline.spec_for_gpu("NVIDIA A100-SXM4-40GB").name == "A100 40GB SXM"
    assert roofline.spec_for_gpu("NVIDIA A100-SXM4-80GB").name == "A100 80GB SXM"
    assert roofline.spec_for_gpu("NVIDIA L4").name == "L4"
    assert roofline.spec_for_gpu("NVIDIA L40S") is None
    assert roofline.spec_for_gpu("Tesla T4").name == "T4"
    assert roofline.spec_for_gpu("NVIDIA A100-PCIE-40GB").name == "A100 40GB SXM"  # same 1.555 TB/s
    assert roofline.spec_for_gpu("NVIDIA H200").name == "H200 SXM"
    assert roofline.spec_for_gpu("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert roofline.spec_for_gpu("AMD Instinct MI300X").name == "MI300X"


def test_spec_for_gpu_maps_a100_80gb_pcie_to_its_own_row():
    # torch.cuda.get_device_name() on an A100 80GB PCIe; the SXM row has 2.039 TB/s, this card 1.935
    spec = roofline.spec_for_gpu("NVIDIA A100 80GB PCIe")
    assert spec is not None and spec.name == "A100 80GB PCIe"
    assert spec.mem_bandwidth == pytest.approx(1.935e12)


@pytest.mark.parametrize("name", ["NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA GH200 480GB", "NVIDIA L40",
                                  "NVIDIA GeForce RTX 4090 Laptop GPU", "NVIDIA GeForce RTX 4090 D",
                                  "Tesla V100-SXM2-16GB", "NVIDIA RTX A4000"])
def test_spec_for_gpu_gives_no_neighbour_figures(name):
    assert roofline.spec_for_gpu(name) is None


def test_device_name_of_cpu():
    assert roofline.device_name("cpu").startswith("CPU ")


# --------------------------------------------------------------------------------------------
# Roofline plots
# --------------------------------------------------------------------------------------------

def test_plot_roofline_axes_legend_and_ridges():
    h100 = hardware("H100 SXM")
    points = [("decode N=1024", 1.0, 2.0e12, "decode"), ("prefill N=4096", 500.0, 4e14, "prefill"),
              {"label": "decode N=8192", "intensity": 1.01, "flops": 2.5e12, "group": "decode"}]
    ax = plot_roofline([h100, ("CPU", 1e11, 2e10)], points)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "FLOP/byte" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("H100 SXM" in t and "TB/s" in t for t in legend)
    assert any("CPU" in t and "GB/s" in t for t in legend)
    assert sum("measured" not in t for t in legend) == 2
    assert {"decode", "prefill"} <= {t.split(": ")[-1] for t in legend}
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("ridge 295") for t in texts) and any(t.startswith("ridge 5 ") for t in texts)
    assert "decode N=1024" in texts
    # the roof of each device is min(peak, I * bandwidth)
    line = ax.get_lines()[0]
    xs, ys = line.get_data()
    for x, y in zip(xs[::50], ys[::50], strict=True):
        assert y == pytest.approx(min(h100.peak_flops_fp16, x * h100.mem_bandwidth))
    plt.close("all")


def test_plot_roofline_accepts_measured_machine(monkeypatch):
    monkeypatch.setattr(roofline, "measure", _fixed_timing(0.01))
    machine = roofline.measure_machine("cpu", repeats=2, copy_bytes=400_000, matmul_n=32)
    ax = plot_roofline([machine], [("x", 0.5, 1e6)])
    assert machine.name in ax.get_legend().get_texts()[0].get_text()
    plt.close("all")


@pytest.mark.parametrize("devices, points", [([], []), ([("bad", 0.0, 1e9)], []),
                                             ([("ok", 1e12, 1e9)], [("p", -1.0, 1e9)]), ([42], [])])
def test_plot_roofline_rejects_bad_input(devices, points):
    with pytest.raises((ValueError, TypeError)):
        plot_roofline(devices, points)
    plt.close("all")


def test_plot_intensity_vs_length():
    ax = plot_intensity_vs_length([64, 128, 256], {"prefill": [30.0, 60.0, 120.0], "decode": [1.0, 1.0, 1.0]},
                                  {"H100 SXM": 295.2})
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "tokens" in ax.get_xlabel() and "FLOP/byte" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["prefill", "decode", "ridge H100 SXM: 295 FLOP/B"]
    with pytest.raises(ValueError):
        plot_intensity_vs_length([64, 128], {"x": [1.0]})
    plt.close("all")


# --------------------------------------------------------------------------------------------
# The notebook: solution, release, variants (in this process, no kernel)
# --------------------------------------------------------------------------------------------

def _notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def _grade_id(cell: dict) -> str | None:
    return cell["metadata"].get("nbgrader", {}).get("grade_id")


def _run_graded_cells(substitutions: dict[str, str] | None = None, release: bool = False) -> dict[str, str]:
    """Run the setup cell, the solution cells and the test cells; return {test id: '' or failure}."""
    substitutions = substitutions or {}
    cells = [c for c in _notebook()["cells"] if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__main__"}
    results: dict[str, str] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(cells[0]["source"], "setup", "exec"), namespace)  # imports
        for cell in cells[1:]:
            meta = cell["metadata"].get("nbgrader", {})
            gid = meta.get("grade_id")
            if meta.get("solution"):
                source = substitutions.get(gid, cell["source"])
                if release and gid not in substitutions:
                    source = SOLUTION.sub(r"\1# YOUR CODE HERE\n\1raise NotImplementedError()", source)
                with contextlib.suppress(Exception):
                    exec(compile(source, gid, "exec"), namespace)
            elif meta.get("grade"):
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err), warnings.catch_warnings():
                        warnings.simplefilter("default")
                        exec(compile(cell["source"], gid, "exec"), namespace)
                    results[gid] = f"wrote to stderr: {err.getvalue()}" if err.getvalue() else ""
                except Exception as exc:  # noqa: BLE001 - the failure message is the result
                    results[gid] = f"{type(exc).__name__}: {exc}"
    return results


def test_notebook_is_built_from_lab_source():
    assert NOTEBOOK.read_text() == nbbuild.render(LAB_FILE), "run `python -m tools.nbbuild`"


def test_points_table_matches_cells():
    nb = _notebook()
    points = {_grade_id(c): c["metadata"]["nbgrader"]["points"] for c in nb["cells"]
              if c["metadata"].get("nbgrader", {}).get("grade")}
    assert set(TEST_IDS) <= set(points)
    total = sum(points.values())
    intro = nb["cells"][0]["source"]
    assert f"**{total}**" in intro, f"the points table must say **{total}**"
    written = sum(p for gid, p in points.items() if gid.startswith("answer"))
    assert f"graded by hand) | {written} |" in intro


def test_solution_passes_every_test():
    results = _run_graded_cells()
    assert results == {gid: "" for gid in TEST_IDS}


def test_release_fails_every_test():
    results = _run_graded_cells(release=True)
    assert set(results) == set(TEST_IDS)
    for gid, failure in results.items():
        assert failure, f"{gid} passed on the unsolved release notebook"


def _cells(variant: str) -> dict[str, str]:
    """A variant's answer cells as code (edits made on the solution's cells)."""
    return variant_cells.variant_cells(variants, variant, variant_cells.solution_cells(NOTEBOOK))


@pytest.mark.parametrize("name", sorted(variants.CORRECT))
def test_correct_variant_passes(name):
    results = _run_graded_cells(_cells(f"correct:{name}"))
    assert results == {gid: "" for gid in TEST_IDS}, results


@pytest.mark.parametrize("mutant", variants.MUTANTS, ids=[m["name"] for m in variants.MUTANTS])
def test_mutant_is_caught_with_its_message(mutant):
    results = _run_graded_cells(_cells(f"mutant:{mutant['name']}"))
    for gid in mutant["fails"]:
        assert results[gid], f"{mutant['name']}: {gid} passed"
        assert mutant["message"] in results[gid], f"{mutant['name']}: {results[gid]}"
    # partial credit: a mistake loses the points of its own tests only
    knock_on = {gid: r for gid, r in results.items() if r and gid not in mutant["fails"]}
    assert not knock_on, f"{mutant['name']} also fails {knock_on}"
    assert all(not r.startswith("wrote to stderr") for r in results.values())


def test_sample_mistakes_are_mutants_one_per_cell():
    by_name = {m["name"]: m for m in variants.MUTANTS}
    cells = [cell for name in variants.SAMPLE_MISTAKES for cell in by_name[name]["cells"]]
    assert len(cells) == len(set(cells))


def test_hardware_used_by_the_lab_exists():
    for name in ("H100 SXM", "A100 80GB SXM", "A100 40GB SXM", "MI300X", "L4", "H200 SXM", "T4",
                 "RTX 4090", "TPU v5e", "H100 PCIe"):
        assert name in HARDWARE
        assert math.isfinite(HARDWARE[name].ridge_fp16)


def test_time_attention_hands_over_inputs_of_the_asked_shapes():
    """Prefill and decode points: q, k, v of the right shapes, dtype and layout, normal-looking
    values; beyond RANDOM_POSITIONS the positions repeat (the bytes and FLOPs are what count)."""
    import torch

    seen = []

    def attention(q, k, v, causal=True):
        seen.append((q, k, v, causal))
        return q

    n = roofline.RANDOM_POSITIONS * 2 + 37  # not a multiple: the tail is cut off
    timed = roofline.time_attention(attention, device="cpu", dtype=torch.float32, n_heads=3, head_dim=8,
                                    prefill_lengths=[5], decode_lengths=[n], repeats=1, warmup=0)
    assert [(t.phase, t.n, t.t_q, t.t_k) for t in timed] == [("prefill", 5, 5, 5), ("decode", n, 1, n)]
    (q1, k1, v1, c1), (q2, k2, v2, c2) = seen
    assert c1 and c2
    assert q1.shape == k1.shape == v1.shape == (1, 3, 5, 8)
    assert q2.shape == (1, 3, 1, 8) and k2.shape == v2.shape == (1, 3, n, 8)
    for t in (q1, k1, v1, q2, k2, v2):
        assert t.dtype == torch.float32 and t.is_contiguous()
    assert not torch.equal(k2, v2)
    drawn = k2[:, :, : roofline.RANDOM_POSITIONS]
    assert 0.8 < float(drawn.std()) < 1.2 and abs(float(drawn.mean())) < 0.1
    assert torch.equal(k2[:, :, roofline.RANDOM_POSITIONS:2 * roofline.RANDOM_POSITIONS], drawn)
    with pytest.raises(ValueError):
        roofline.time_attention(attention, device="cpu", dtype=torch.float32, n_heads=3, head_dim=8,
                                prefill_lengths=[0], decode_lengths=[], repeats=1)
