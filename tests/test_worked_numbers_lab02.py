"""Every number Lab 02 states in its text and model answers, recomputed from the course's table.

Each entry of ``worked_numbers()`` is a phrase of the lab's markdown with its numbers
filled in from ``course_lib.specs`` (and ``course_lib.roofline``'s probe sizes, and the
lab's own measurement settings), by formulas written here independently of the notebook's
code. A changed spec changes the phrase, and the test fails until the text is updated. A
second test scans the markdown for numbers that no worked phrase accounts for: only small
structural constants and the sizes the lab chooses as inputs may appear bare, so a new
number cannot enter the text without a recomputation here.

Capacity-dependent results (how many sequences fit next to the weights) depend on how the
table records memory; the text states them only qualitatively, and the test checks that the
qualitative statement holds for the table's capacity.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from course_lib import roofline
from course_lib.specs import hardware, model
from course_lib.units import MB
from tools import nbbuild

ROOT = Path(__file__).resolve().parent.parent
LAB_FILE = ROOT / "labs" / "lab02_roofline.py"

CONTEXT = 4096          # the context of Part 5 (decode), a chosen input
BYTES = 2               # fp16 / bf16
TILE_ROWS = 128         # query rows on chip in the tiled fused count (Part 3)
TTFT_PROMPT = 4096      # the prompt of the written answer (d) of Part 4
SHORT_PROMPT = 16       # the short prompt it is contrasted with


def _markdown() -> str:
    """All markdown cells of the lab (explanations and model answers), whitespace collapsed."""
    nb = json.loads(nbbuild.render(LAB_FILE))
    text = "\n".join(c["source"] for c in nb["cells"] if c["cell_type"] == "markdown")
    return " ".join(text.split())


def _setting(name: str) -> object:
    """A top-level constant of the lab's code, e.g. PREFILL_N = [..] if GRADING else [..]."""
    tree = ast.parse(LAB_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.value
    raise KeyError(name)


def _first(pred, lo: int = 1, hi: int = 2**24) -> int:
    """Smallest integer n in [lo, hi] with pred(n) true (pred monotonic)."""
    assert pred(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- the counting convention of Part 1, written out ------------------------------------------

def _flops(n_q: int, n_kv: int, d: int, h: int = 1) -> int:
    return h * (4 * n_q * n_kv * d + 5 * n_q * n_kv)


def _bytes(n_q: int, n_kv: int, d: int, b: int, h: int = 1, hkv: int | None = None, fused: bool = False) -> int:
    hkv = h if hkv is None else hkv
    return b * (2 * h * n_q * d + 2 * hkv * n_kv * d + (0 if fused else 4 * h * n_q * n_kv))


# -- whole-model counts (Llama-style, untied embeddings) -------------------------------------

def _untied_params(m) -> int:
    layer = (2 * m.d_model * m.n_heads * m.head_dim + 2 * m.d_model * m.n_kv_heads * m.head_dim
             + 3 * m.d_model * m.d_ff + 2 * m.d_model)
    return 2 * m.vocab_size * m.d_model + m.n_layers * layer + m.d_model


def _kv_bytes(m, tokens: int) -> int:
    return 2 * m.n_layers * m.n_kv_heads * m.head_dim * tokens * BYTES


def _prefill(m, n: int) -> tuple[int, int]:
    table = m.vocab_size * m.d_model
    flops = 2 * n * (m.n_params - 2 * table) + 2 * table + m.n_layers * _flops(n, n, m.head_dim, m.n_heads)
    nbytes = (m.n_params - table) * BYTES + n * m.d_model * BYTES + _kv_bytes(m, n)
    return flops, nbytes


def _decode(m) -> tuple[int, int, int]:
    """(weights read per step, bytes one sequence reads, FLOPs of one token)."""
    table = m.vocab_size * m.d_model
    weights = (m.n_params - table) * BYTES
    per_seq = _kv_bytes(m, CONTEXT) + m.d_model * BYTES
    flops = 2 * (m.n_params - table) + m.n_layers * _flops(1, CONTEXT, m.head_dim, m.n_heads)
    return weights, per_seq, flops


def worked_numbers() -> list[str]:
    """Phrases of the lab's markdown, their numbers computed from the table."""
    l2, l3 = model("Llama-2-7B"), model("Llama-3-8B")
    h100, a100 = hardware("H100 SXM"), hardware("A100 80GB SXM")
    ridge_h = h100.peak_flops_fp16 / h100.mem_bandwidth
    ridge_a = a100.peak_flops_fp16 / a100.mem_bandwidth
    d = l2.head_dim
    assert l3.head_dim == d and _untied_params(l2) == l2.n_params and _untied_params(l3) == l3.n_params
    out = []

    # Part 1 and Part 3: the two models, per layer
    out.append(f"one head of Llama-2-7B's attention (head dimension {d}, fp16)")
    out.append(f"Llama-2-7B uses MHA ({l2.n_heads} query heads, {l2.n_kv_heads} KV heads); Llama-3-8B uses "
               f"GQA ({l3.n_heads} query heads sharing {l3.n_kv_heads} KV heads, a group of {l3.group_size}). "
               f"Both have head dimension {d}.")
    mha_decode = (4 * d + 5) / (4 * d)
    out.append(f"$I \\to (4d+5)/(4d) \\approx {mha_decode:.2f}$")
    out.append(f"the intensity is multiplied by the group size: about {l3.group_size} for Llama-3-8B")
    unfused_limit = (4 * d + 5) / (4 * BYTES)
    out.append(f"about {unfused_limit:.1f} FLOP/B in fp16, below both ridges")
    tiled_limit = TILE_ROWS * (4 * d + 5) / (2 * d * BYTES)
    assert TILE_ROWS == d
    out.append(f"\\approx {tiled_limit:.0f} \\text{{ FLOP/B for }} T = d = {d} \\text{{ in fp16}}")

    # answer_phases
    out.append(f"$(4d+5)/(4d) = {4 * d + 5}/{4 * d} \\approx {mha_decode:.2f}$ FLOP/B for $d = {d}$")
    lengths = (512, 4096, 32768)  # the N of Part 3's table
    unfused_dec = {f"{_flops(1, n, d) / _bytes(1, n, d, BYTES):.2f}" for n in lengths}
    assert len(unfused_dec) == 1
    out.append(f"({unfused_dec.pop()} unfused, whose extra $S$/$P$ traffic is tiny in decode), "
               f"at $N = {lengths[0]}$ as at $N = {lengths[-1]}$")
    gqa = {f"{_flops(1, n, d, l3.n_heads) / _bytes(1, n, d, BYTES, l3.n_heads, l3.n_kv_heads, True):.1f}"
           for n in lengths}
    mha = {f"{_flops(1, n, d) / _bytes(1, n, d, BYTES, fused=True):.1f}" for n in lengths}
    assert len(gqa) == len(mha) == 1
    out.append(f"about {gqa.pop()} FLOP/B for Llama-3-8B (group {l3.group_size}) instead of {mha.pop()} for Llama-2-7B")
    out.append(f"({ridge_h:.1f} on an H100 SXM, {ridge_a:.1f} on an A100 80GB SXM)")
    out.append(f"$(4d+5)/(4 \\cdot 2) \\approx {unfused_limit:.1f}$ FLOP/B for $d = {d}$ in fp16")

    def ideal(n: int) -> float:
        return _flops(n, n, d) / _bytes(n, n, d, BYTES, fused=True)

    cross_h = _first(lambda n: ideal(n) >= ridge_h)
    cross_a = _first(lambda n: ideal(n) >= ridge_a)
    out.append(f"cross the H100 ridge at $N \\approx {cross_h}$ (A100: about {round(cross_a, -2)})")
    assert abs(cross_a - round(cross_a, -2)) <= 10
    out.append(f"with {TILE_ROWS}-row tiles the intensity levels off near {tiled_limit:.0f} FLOP/B")
    assert tiled_limit < ridge_a < ridge_h  # "below the H100's ridge" (and the A100's)

    # answer_phases (d): the weight GEMMs and the time to first token
    k, n_ff = l3.d_model, l3.d_ff
    gemm_cross = _first(lambda n: 2 * n * k * n_ff / (BYTES * (k * n_ff + n * k + n * n_ff)) >= ridge_h)
    prefill_cross = _first(lambda n: (lambda f, q: f / q)(*_prefill(l3, n)) >= ridge_h, hi=2**16)
    out.append(f"({gemm_cross} for the ${k} \\times {n_ff}$ up-projection, {prefill_cross} for the whole "
               f"Llama-3-8B prefill)")
    f_long, q_long = _prefill(l3, TTFT_PROMPT)
    t_compute, t_memory = 1e3 * f_long / h100.peak_flops_fp16, 1e3 * q_long / h100.mem_bandwidth
    assert t_compute > t_memory
    out.append(f"{TTFT_PROMPT}-token prompt the estimate is {t_compute:.1f} ms of arithmetic against "
               f"{t_memory:.1f} ms of memory traffic")
    out.append(f"({t_compute:.1f} ms by this estimate) waits for the tensor cores, {t_compute / t_memory:.0f}x longer")
    f_short, q_short = _prefill(l3, SHORT_PROMPT)
    s_compute, s_memory = 1e3 * f_short / h100.peak_flops_fp16, 1e3 * q_short / h100.mem_bandwidth
    assert s_memory > s_compute
    out.append(f"At {SHORT_PROMPT} tokens it is the opposite: {s_memory:.1f} ms, the time to read the weights, "
               f"for {s_compute:.2f} ms of arithmetic")

    # answer_batching (Part 5)
    w2, c2, f2 = _decode(l2)
    w3, c3, f3 = _decode(l3)
    kv2, kv3 = _kv_bytes(l2, CONTEXT), _kv_bytes(l3, CONTEXT)
    tps2, tps3 = h100.mem_bandwidth / (w2 + c2), h100.mem_bandwidth / (w3 + c3)
    out.append(f"At batch 1 and {CONTEXT} tokens of context, a Llama-2-7B token reads {w2 / 1e9:.2f} GB of weights")
    out.append(f"plus a {kv2 / 1e9:.2f} GB cache: {(w2 + c2) / 1e9:.2f} GB, so at "
               f"{h100.mem_bandwidth / 1e12:.2f} TB/s at most about {tps2:.0f} tokens/s ({1e3 / tps2:.1f} ms per token)")
    out.append(f"Llama-3-8B reads {w3 / 1e9:.2f} GB of weights and only {kv3 / 1e9:.2f} GB of cache (GQA): "
               f"{(w3 + c3) / 1e9:.2f} GB, about {tps3:.0f} tokens/s")
    out.append(f"Its {l3.vocab_size:,}-token vocabulary makes its embedding table "
               f"{l3.vocab_size * l3.d_model * BYTES / 1e9:.2f} GB")
    out.append(f"$B \\approx {h100.peak_flops_fp16 / 1e12:.0f}/{h100.mem_bandwidth / 1e12:.2f} \\approx {ridge_h:.0f}$")
    assert kv2 % kv3 == 0
    out.append(f"about {h100.mem_bandwidth / c2:,.0f} tokens/s for Llama-2-7B but {h100.mem_bandwidth / c3:,.0f} "
               f"for Llama-3-8B, whose cache is {kv2 // kv3}x smaller")
    out.append(f"about {f2 / c2:.1f} FLOP/B for Llama-2-7B and {f3 / c3:.1f} for Llama-3-8B, far below the ridge "
               f"of {ridge_h:.0f}")
    out.append(f"caches of {CONTEXT} tokens and about four times as many for Llama-3-8B")
    out.append(f"far below the {ridge_h:.0f} the weights would need to become compute-bound")

    # Part 6: the measurement settings and the CPU intensities
    out.append(f"copy an array of {roofline.CPU_COPY_BYTES // MB} MB")
    out.append(f"$2 \\times {roofline.CPU_COPY_BYTES // MB}$ MB per copy")
    n_mm = roofline.CPU_MATMUL_N
    out.append(f"multiply two ${n_mm} \\times {n_mm}$ fp32 matrices and count $2 \\cdot {n_mm}^3$ FLOPs")
    grading_n, full_n = (ast.literal_eval(_setting("PREFILL_N").body), ast.literal_eval(_setting("PREFILL_N").orelse))
    decode_n = ast.literal_eval(_setting("DECODE_N").orelse)
    heads, dim, fp32 = 8, 64, 4  # measure_attention_points("cpu", torch.float32, 4, 8, 64, ...)
    assert f'measure_attention_points("cpu", torch.float32, {fp32}, {heads}, {dim},' in LAB_FILE.read_text()
    kv_mb = 2 * heads * decode_n[0] * dim * fp32 / 1e6
    out.append(f"one sequence of $H = {heads}$ heads of dimension $D = {dim}$, fp32 ({fp32} bytes)")
    out.append(f"The decode lengths start at $N = {decode_n[0]}$: K and V then take $2 \\cdot {heads} \\cdot "
               f"{decode_n[0]} \\cdot {dim} \\cdot {fp32}$ B $= {kv_mb:.0f}$ MB")
    out.append(f"Starting at {kv_mb:.0f} MB of K/V")
    gpu_heads, gpu_dim = 32, 128  # measure_attention_points("cuda", torch.float16, 2, 32, 128, ...)
    assert f'measure_attention_points("cuda", torch.float16, 2, {gpu_heads}, {gpu_dim},' in LAB_FILE.read_text()
    out.append(f"in fp16 with {gpu_heads} heads of dimension {gpu_dim} (a Llama-like layer)")
    decode_i = {f"{_flops(1, n, dim, heads) / _bytes(1, n, dim, fp32, heads):.2f}" for n in decode_n}
    assert decode_i == {f"{(4 * dim + 5) / (4 * (2 * dim + 4)):.2f}"}
    out.append(f"Decode sits at about {decode_i.pop()} FLOP/B")
    out.append(f"$(4d+5)/(4(2d+4))$ for $d = {dim}$")

    def cpu_prefill(n: int) -> float:
        return _flops(n, n, dim, heads) / _bytes(n, n, dim, fp32, heads)

    out.append(f"Prefill sits at {cpu_prefill(full_n[0]):.1f} to {cpu_prefill(full_n[-1]):.1f} FLOP/B "
               f"({cpu_prefill(grading_n[0]):.1f} and {cpu_prefill(grading_n[-1]):.1f} for the two lengths "
               f"measured while grading)")
    assert len(grading_n) == 2
    return out


@pytest.mark.parametrize("phrase", worked_numbers())
def test_worked_number_is_in_the_text(phrase):
    assert phrase in _markdown(), f"Lab 02's text no longer says (recomputed from the table): {phrase!r}"


def test_capacity_dependent_claims_hold_for_the_table():
    """Part 5 says the H100 holds 'a few tens' of Llama-2-7B caches and 'about four times as many'
    Llama-3-8B ones, far below the ridge: true for the capacity the table records."""
    h100 = hardware("H100 SXM")
    ridge = h100.peak_flops_fp16 / h100.mem_bandwidth
    fits = {}
    for name in ("Llama-2-7B", "Llama-3-8B"):
        m = model(name)
        _, per_seq, _ = _decode(m)
        fits[name] = (h100.mem_bytes - m.n_params * BYTES) // per_seq
    assert 10 <= fits["Llama-2-7B"] < 100
    assert 3.5 <= fits["Llama-3-8B"] / fits["Llama-2-7B"] <= 4.5
    assert max(fits.values()) < ridge
    text = _markdown()
    assert "the H100 holds only a few tens of Llama-2-7B caches" in text


# Numbers that may appear bare in the text: structural constants (2 bytes, 5 FLOPs of softmax,
# K and V, small counts and part numbers), percentages and the sizes the lab chooses as inputs.
ALLOWED_BARE = {str(i) for i in range(11)} | {"16", "30", "64", "100", "128", "256", "512", "2048", "4096",
                                               "32768", "4,000"}
# Names and references that contain digits but state no worked number.
NAMES = [r"Llama-[23]-\d+B", r"A100 80GB SXM", r'"80GB" card holds about 80 GiB', r"Lab 0\d", r"Part \d",
         r"Task \d[ab]?", r"Theorem 2", r"Proposition 3", r"Dao et al\. 2022", r"\$10\^\{?\d+\}?\$",
         r"\$2\^\{30\}\$", r"2:4", r"\d–\d", r"\(\d\)", r"^\d\.", r" \d\. "]


def test_no_number_in_the_text_is_left_unchecked():
    text = _markdown()
    for phrase in worked_numbers():
        text = text.replace(phrase, " ")
    for pattern in NAMES:
        text = re.sub(pattern, " ", text)
    bare = re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", text)
    unchecked = sorted({t.rstrip(",") for t in bare} - ALLOWED_BARE)
    assert not unchecked, (f"numbers in Lab 02's text that no test recomputes: {unchecked}; add the phrase "
                           "to worked_numbers() with its computation")


def test_untied_parameter_count_matches_the_table():
    """The decode and prefill counts assume untied embeddings (a separate LM head of
    vocab x d_model): the table's parameter counts say so, to the parameter."""
    for name in ("Llama-2-7B", "Llama-3-8B"):
        m = model(name)
        assert _untied_params(m) == m.n_params
