"""Lab 01, Part 5: the cost model (course_lib.e2e), the plain-text progress lines, and the lab's
own text (points split, tolerance numbers quoted from the calibration report, zero-copy GQA)."""

from __future__ import annotations

import io
import json
import math
import re
from contextlib import redirect_stdout

import pytest
import torch

from course_lib import e2e, timing
from course_lib.minigpt import load_minigpt
from course_lib.specs import MINIGPT
from tools import references as R

LAB = R.ROOT / "labs" / "lab01_kv_cache.py"


@pytest.fixture(scope="module")
def shape() -> e2e.ForwardShape:
    return e2e.ForwardShape.of(load_minigpt())


def test_shape_of_minigpt_counts_the_matmul_weights(shape):
    s = MINIGPT
    per_layer = s.d_model * (s.n_heads + 2 * s.n_kv_heads) * s.head_dim + s.n_heads * s.head_dim * s.d_model \
        + 2 * s.d_model * s.d_ff
    assert shape.matmul_params == s.n_layers * per_layer + s.d_model * s.vocab_size  # + lm_head, no embedding
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.head_dim, shape.bytes_per_elem) == \
        (s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim, 4)


def test_flops_and_bytes_follow_the_formulas(shape):
    p, lay, h, hkv, d = shape.matmul_params, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.head_dim
    assert e2e.forward_flops(shape, 1, 101) == 2 * p + 4 * lay * h * d * 101
    assert e2e.forward_flops(shape, 50, 50) == 2 * p * 50 + 4 * lay * h * d * 50 * 50
    # the decode FLOP ratio of the lab: (S + 1) exactly
    s = 999
    assert e2e.forward_flops(shape, s + 1, s + 1) == (s + 1) * e2e.forward_flops(shape, 1, s + 1)
    assert e2e.forward_bytes(shape, 1, 10) == 4 * (p + 2 * lay * hkv * d * 10 + e2e.SCORE_PASSES * lay * h * 10)
    with pytest.raises(ValueError):
        e2e.forward_flops(shape, 5, 4)
    with pytest.raises(TypeError):
        e2e.forward_bytes(shape, 1.0, 4)  # type: ignore[arg-type]


def test_generation_steps_are_the_forward_passes_of_generate():
    assert e2e.generation_steps(10, 3, cached=True) == [(10, 10), (1, 11), (1, 12)]
    assert e2e.generation_steps(10, 3, cached=False) == [(10, 10), (11, 11), (12, 12)]
    assert e2e.generation_steps(10, 0, cached=True) == []
    with pytest.raises(ValueError):
        e2e.generation_steps(0, 3, cached=True)


def test_fit_recovers_known_constants_from_exact_times(shape):
    true = e2e.StepCostModel(shape, overhead_s=2e-3, seconds_per_flop=1 / 30e9, seconds_per_byte=1 / 6e9)
    passes = [(t_q, t_k) for s in (10, 100, 1000, 3000) for t_q, t_k in ((1, s + 1), (s + 1, s + 1))]
    fitted = e2e.fit_step_cost(shape, [(tq, tk, true.step_time(tq, tk)) for tq, tk in passes])
    assert math.isclose(fitted.overhead_s, 2e-3, rel_tol=1e-6)
    assert math.isclose(fitted.peak_flops, 30e9, rel_tol=1e-6)
    assert math.isclose(fitted.bandwidth, 6e9, rel_tol=1e-6)
    # and so predicts whole generations exactly; speedup -> n when the prefill dominates
    n = 20
    speedup = fitted.generation_time(100_000, n, False) / fitted.generation_time(100_000, n, True)
    assert 0.9 * n < speedup < 1.1 * n


def test_fit_never_returns_a_negative_constant(shape):
    # times that fall with size would need a negative slope: the fit keeps every constant >= 0
    samples = [(1, 11, 5e-3), (11, 11, 4e-3), (1, 1001, 3e-3), (1001, 1001, 2e-3)]
    fitted = e2e.fit_step_cost(shape, samples)
    assert fitted.overhead_s >= 0 and fitted.seconds_per_flop >= 0 and fitted.seconds_per_byte >= 0
    assert "not needed by the fit" in fitted.describe()
    with pytest.raises(ValueError):
        e2e.fit_step_cost(shape, samples[:2])
    with pytest.raises(ValueError):
        e2e.fit_step_cost(shape, samples[:3] + [(1, 5, 0.0)])


def test_progress_prints_plain_lines_and_never_a_widget(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    out = io.StringIO()
    with redirect_stdout(out):
        assert list(timing.progress([3, 4], desc="lengths")) == [3, 4]
    lines = out.getvalue().splitlines()
    assert [ln.split(" done")[0] for ln in lines] == ["lengths: 1/2", "lengths: 2/2"]
    source = (R.ROOT / "course_lib" / "timing.py").read_text()
    assert "tqdm.auto" not in source.replace("``tqdm.auto``", "") and "tqdm.notebook" not in source
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    out = io.StringIO()
    with redirect_stdout(out):
        assert list(timing.progress(range(3))) == [0, 1, 2]
    assert out.getvalue() == ""


# ---------------------------------------------------------------------------------------------
# The lab's text and cells
# ---------------------------------------------------------------------------------------------

def _source_cells() -> list[dict]:
    return json.loads(R.SOURCE_NOTEBOOK.read_text())["cells"]


def test_points_table_matches_the_graded_cells():
    cells = _source_cells()
    points = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
              for c in cells if c["metadata"].get("nbgrader", {}).get("grade")}
    assert points["test_attention"] + points["test_attention_validation"] == 10
    assert points["test_attention_validation"] < points["test_attention"]
    assert points["test_kv_cache"] + points["test_kv_cache_validation"] == 8
    assert points["test_kv_cache_validation"] < points["test_kv_cache"]
    assert sum(points.values()) == 39
    text = LAB.read_text()
    assert "the computation 9, refusing bad shapes 1 | 10 |" in text
    assert "storing and returning 6, refusing overflow and wrong shapes 2 | 8 |" in text
    # validation lives only in the validation cells: the core cells never expect a ValueError
    by_id = {c["metadata"].get("nbgrader", {}).get("grade_id"): "".join(c["source"]) for c in cells}
    assert "ValueError" not in by_id["test_attention"]
    assert "ValueError" not in by_id["test_kv_cache"]


def test_solution_attention_copies_no_keys_or_values():
    _, solutions = R.notebook_code()
    code = solutions["attention"]
    for copying in ("repeat_interleave", ".repeat(", ".expand(", "k[:, :, None]"):
        assert copying not in code, copying
    ns = R.load_solution()
    # a decode step with 8 query heads over 1 KV head: same result as the expanded form
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, t, 16, generator=gen) for n, t in ((8, 1), (1, 33), (1, 33)))
    expanded = torch.softmax(q @ k.expand(2, 8, 33, 16).transpose(-2, -1) / 4.0, dim=-1) @ v.expand(2, 8, 33, 16)
    assert torch.allclose(ns["attention"](q, k, v), expanded, atol=1e-6)


def _sci(x: float) -> str:
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa} \\cdot 10^{{{int(exponent)}}}"


def test_tolerance_text_quotes_the_calibration_report():
    """The lab says what was measured, with the report's numbers, and on which device."""
    report = (R.ROOT / "docs" / "calibration_lab01.md").read_text()
    m = re.search(r"worst correct implementation \*\*([0-9.e+-]+)\*\* \(([0-9,]+)x below the tolerance\); "
                  r"smallest bug error \*\*([0-9.e+-]+)\*\* \(([0-9,]+)x above it\)", report)
    assert m, "calibration report summary line not found"
    worst, below, bug, above = float(m[1]), m[2], float(m[3]), m[4]
    rows = [row.split("|") for row in report.splitlines()
            if row.startswith("| attention") or row.startswith("| forward")][:11]
    simulated = [float(cells[5]) for cells in rows]
    measured = re.search(r"TF32 on the GPU, measured: up to \*\*([0-9.e+-]+)\*\*", report)
    text = " ".join(line.removeprefix("# ").strip() for line in LAB.read_text().splitlines())
    assert f"at most ${_sci(worst)}$, {below}x below the tolerance" in text
    assert f"off by at least ${bug:.2f}$, {above}x above it" in text
    lo, hi = _sci(min(simulated)).split(" \\cdot")[0], _sci(max(simulated))
    assert f"${lo}$ to ${hi}$" in text
    from tools.variants import lab01_kv_cache as V

    words = {9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}
    assert f"{words[len(V.CORRECT)]} correct implementations" in text
    meta = R.read_meta()
    if meta["device"] == "cuda":
        assert f"made on an **{meta['device_name']} GPU** (`device: cuda`, CUDA {meta['cuda_version']}, TF32 off)" \
            in text
        assert measured, "the references are CUDA-made: the report must show TF32 measured on that GPU"
        assert f"up to ${_sci(float(measured[1]))}$, above the tolerance" in text
    else:
        assert "device: cpu" in text and "**Not measured: a GPU.**" in text
