"""Unit tests of course_lib's units, specs and grading helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib import grading, specs, units
from course_lib.grading import AnswerError, as_exact_int, check_int, check_real, diagnose


# ---- units ---------------------------------------------------------------------------------
def test_units_are_exact():
    assert units.GiB == 1_073_741_824 and units.GB == 1_000_000_000
    assert units.format_bytes(2**31) == "2.000 GiB"
    assert units.format_bytes(2**31, "GB", exact=True) == "2.147 GB (2,147,483,648 B)"
    assert units.format_bytes(512, "auto-binary") == "512 B"
    assert units.format_bytes(3 * 10**12, "auto-decimal") == "3.000 TB"
    assert units.format_rate(3.35e12) == "3.35 TB/s"
    assert units.format_rate(989e12, "FLOP/s") == "989 TFLOP/s"


@pytest.mark.parametrize("name,size", [("fp16", 2), ("bfloat16", 2), ("torch.float32", 4), ("float32", 4),
                                       ("int8", 1), ("int4", 0.5), ("BF16", 2)])
def test_dtype_bytes(name, size):
    assert units.dtype_bytes(name) == size


def test_units_bad_input():
    with pytest.raises(ValueError, match="unknown dtype"):
        units.dtype_bytes("fp12")
    with pytest.raises(ValueError, match="unknown unit"):
        units.format_bytes(10, "gigs")
    with pytest.raises(TypeError, match="n_bytes"):
        units.format_bytes("10")


# ---- specs ---------------------------------------------------------------------------------
def test_every_spec_has_known_sources():
    for m in specs.MODELS.values():
        assert m.sources and all(s in specs.SOURCES for s in m.sources), m.name
        assert m.n_heads % m.n_kv_heads == 0 or m.attention == "MLA", m.name
    for h in specs.HARDWARE.values():
        assert h.sources and all(s in specs.SOURCES for s in h.sources), h.name
        assert h.mem_bandwidth > 1e10 and h.peak_flops_fp16 > 1e12, h.name


def test_spec_table_matches_configs():
    # a few figures from the cited configs, as a guard against typos in the table
    llama3 = specs.model("Llama-3-8B")
    assert (llama3.n_layers, llama3.n_heads, llama3.n_kv_heads, llama3.head_dim) == (32, 32, 8, 128)
    assert specs.model("Falcon-7B").n_kv_heads == 1
    assert specs.model("Gemma-2-9B").head_dim == 256
    assert specs.model("Llama-2-70B").n_kv_heads == 8 and specs.model("Llama-2-70B (MHA)").n_kv_heads == 64
    assert specs.hardware("H100 SXM").peak_flops_fp16 == 989e12  # dense, not the sparse 1979
    assert round(specs.hardware("H100 SXM").ridge_fp16, 1) == 295.2
    # MLA heads: query/key 128 + 64 RoPE = 192 wide, values 128; the cache is the 512 + 64 latent
    for name in ("DeepSeek-V2", "DeepSeek-V3"):
        m = specs.model(name)
        assert (m.head_dim, m.v_head_dim, m.mla_kv_lora_rank, m.mla_rope_dim) == (192, 128, 512, 64), name
    # sliding windows: every Mistral layer, half of Gemma-2's
    assert (specs.model("Mistral-7B").sliding_window, specs.model("Mistral-7B").n_window_layers) == (4096, 32)
    assert (specs.model("Gemma-2-9B").sliding_window, specs.model("Gemma-2-9B").n_window_layers) == (4096, 21)
    assert specs.model("Mixtral-8x7B").sliding_window is None


def test_parameter_counts_follow_from_configs():
    """The Llama-family parameter counts in the table follow from the layer formulas."""
    for name in ["Llama-2-7B", "Llama-2-13B", "Llama-2-70B", "Llama-3-8B", "Mistral-7B", "Llama-3.1-70B"]:
        m = specs.model(name)
        d, L, V, inter = m.d_model, m.n_layers, m.vocab_size, m.d_ff
        attn = d * m.n_heads * m.head_dim + 2 * d * m.n_kv_heads * m.head_dim + m.n_heads * m.head_dim * d
        total = 2 * V * d + L * (attn + 3 * d * inter + 2 * d) + d
        assert total == m.n_params, name


def test_lookup_errors_list_known_names():
    with pytest.raises(KeyError, match="known models"):
        specs.model("Llama-9")
    with pytest.raises(KeyError, match="known devices"):
        specs.hardware("H900")


def test_tables_render():
    models = specs.models_table()
    assert "Llama-3-8B" in models.index and models.loc["DeepSeek-V3", "weight dtype"] == "fp8"
    assert models.loc["DeepSeek-V3", "d_v"] == 128 and models.loc["Gemma-2-9B", "window"] == "4096 on 21 of 42 layers"
    hw = specs.hardware_table()
    assert hw.loc["H100 SXM", "bandwidth (TB/s)"] == pytest.approx(3.35)
    assert hw.loc["H100 SXM", "memory label"] == "80GB" and hw.loc["H100 SXM", "memory (GiB)"] == pytest.approx(79.65)
    assert hw.loc["A100 80GB SXM", "memory (GiB)"] == 80 and bool(hw.loc["A100 80GB SXM", "measured"])


# ---- memory capacities: binary, as reported; the usable budget --------------------------------------
def test_capacities_are_reported_binary_figures():
    reported_mib = {"A100 40GB SXM": 40960, "A100 80GB SXM": 81920, "H100 SXM": 81559, "H200 SXM": 143771,
                    "L4": 23034, "RTX 4090": 24564}
    for name, mib in reported_mib.items():
        assert specs.hardware(name).mem_bytes == mib * units.MiB and specs.hardware(name).mem_measured, name
    for dev in specs.HARDWARE.values():
        assert dev.mem_bytes % units.MiB == 0 and dev.mem_bytes % units.GB != 0, dev.name
        assert dev.mem_label.endswith("GB"), dev.name
    pcie = specs.hardware("A100 80GB PCIe")   # the row course_lib.roofline maps "A100 80GB PCIe" to
    assert (pcie.mem_bytes, pcie.mem_bandwidth, pcie.mem_measured) == (80 * units.GiB, 1.935e12, False)
    assert pcie.peak_flops_fp16 == specs.hardware("A100 80GB SXM").peak_flops_fp16


def test_usable_bytes_is_an_exact_fraction_of_the_reported_capacity():
    h100 = specs.hardware("H100 SXM")
    assert specs.VLLM_GPU_MEMORY_UTILIZATION == 0.9
    assert specs.usable_bytes(h100) == 81559 * units.MiB * 9 // 10
    assert specs.usable_bytes(h100, 1) == h100.mem_bytes
    assert specs.usable_bytes(specs.hardware("A100 80GB SXM"), 0.5) == 40 * units.GiB
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            specs.usable_bytes(h100, bad)


def test_docstrings_state_the_capacity_convention():
    for doc in (specs.__doc__, units.__doc__):
        assert "binary" in doc and "80 GiB" in doc
    assert "docs/facts.md" in specs.__doc__ and "shared" not in specs.__doc__


# ---- grading -------------------------------------------------------------------------------
class LiesAboutEquality(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def test_int_subclass_refused():
    with pytest.raises(AnswerError, match="LiesAboutEquality"):
        check_int(LiesAboutEquality(3), 5, call="f()")


@pytest.mark.parametrize("value", [np.int32(7), np.int64(7), 7, 7.0, np.float64(7.0)])
def test_exact_ints_accepted(value):
    assert as_exact_int(value, "f()") == 7


@pytest.mark.parametrize("value,match", [(7.5, "float"), (None, "return"), (True, "bool"), ("7", "str"),
                                         (np.array([7]), "ndarray"), (float("nan"), "float"), (2.0**60, "float")])
def test_non_ints_refused(value, match):
    with pytest.raises(AnswerError, match=match):
        as_exact_int(value, "f()")


@pytest.mark.parametrize("got,expected,label", [
    (8 * 1000, 1000, "bits instead of bytes"),
    (500, 1000, "factor 2"),
    (round(5 * 2**30), 5 * 10**9, "GiB"),
    (5 * 10**9, round(5 * 2**30), "GB (10^9)"),
    (101, 100, "off by one"),
    (-3, 5, "negative"),
])
def test_diagnose_generic(got, expected, label):
    assert label in diagnose(got, expected)


def test_diagnose_specific_first():
    assert diagnose(4000, 1000, {"used all heads": 4000}) == "used all heads"
    assert diagnose(1234, 1000) is None


def test_check_messages_name_the_call_and_mistake():
    with pytest.raises(AnswerError) as err:
        check_int(8 * 131_072, 131_072, call="kv_bytes_per_token(32, 8, 128, 2)")
    msg = str(err.value)
    assert "kv_bytes_per_token(32, 8, 128, 2) returned 1,048,576, expected 131,072 (8x too large)" in msg
    assert "Likely mistake: 8x too large: bits instead of bytes" in msg
    check_real(0.1 + 0.2, 0.3, call="x")
    with pytest.raises(AnswerError, match="used fraction"):
        check_real(0.25, 0.75, call="waste()", mistakes={"used fraction": 0.25})
    with pytest.raises(AnswerError):
        check_real(float("nan"), 1.0, call="x")


def test_expect_error():
    def ok(x):
        if x < 0:
            raise ValueError("negative")
        return x

    grading.expect_error(ok, (-1,), None, ValueError, "negative")
    with pytest.raises(AnswerError, match="returned 1; expected it to raise ValueError"):
        grading.expect_error(ok, (1,), None, ValueError, "why")
    with pytest.raises(AnswerError, match="raised TypeError"):
        grading.expect_error(lambda x: x + "a", (1,), None, ValueError, "why")


def test_describe_call():
    assert grading.describe_call("f", 1, "a", k=2) == "f(1, 'a', k=2)"
    assert math.isclose(grading.GENERIC_RATIOS[4][0], 1.073741824)
