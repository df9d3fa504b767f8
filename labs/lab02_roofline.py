# Source of source/lab02_roofline/lab02_roofline.ipynb (built by `python -m tools.nbbuild`).
# ruff: noqa: E402, B018, F811, E731

# %% [markdown]
# # Lab 02 — The roofline: why decode is slow and prefill is fast
#
# The same GPU that reads a 4,000-token prompt in a fraction of a second then needs several
# milliseconds for *every* token it generates. Nothing is wrong with it: prefill and decode
# ask the hardware for different things. Prefill does a lot of arithmetic on each byte it
# loads; decode loads a lot of bytes (the weights, the KV cache) and does almost no arithmetic
# on each. The **roofline model** turns that sentence into numbers.
#
# In this lab you:
#
# 1. count the FLOPs and the bytes of one attention call, under a convention stated exactly;
# 2. build the roofline: arithmetic intensity, ridge point, attainable FLOP/s;
# 3. compare prefill and decode attention against context length, for MHA and GQA, find
#    where each crosses the ridge point of an H100 and an A100, and see what on-chip memory
#    does to a fused kernel;
# 4. find the real reason a prompt is compute-bound (the weight matrix products) and estimate
#    the time to first token of Llama-3-8B on an H100;
# 5. bound the decode speed of Llama-2-7B and Llama-3-8B on an H100, and see what batching
#    changes (and what it does not);
# 6. measure your own Lab 01 `attention` on this machine and put the points on a roofline you
#    measure yourself.
#
# **Units.** Bandwidths are decimal, as vendors quote them: 1 TB/s = $10^{12}$ bytes/s, and
# so are the byte counts we print in GB ($10^9$ bytes). Memory *capacities* are not: an
# "80GB" card holds about 80 GiB ($2^{30}$ bytes each), and the course's table records the
# capacity a program sees. FLOP/s figures are **dense** (no 2:4 sparsity). Every graded
# function takes and returns plain SI units: FLOPs, bytes, FLOP/s, bytes/s, seconds. Never
# GB/s or TFLOP/s inside a function: convert only when you print.
#
# | Part | Graded | Points |
# |---|---|---|
# | 1 | `attention_flops` | 3 |
# | 1 | `attention_bytes` | 4 |
# | 2 | `arithmetic_intensity`, `ridge_point`, `attainable_flops` | 3 |
# | 4 | `roofline_seconds` (time to first token) | 2 |
# | 5 | `decode_tokens_per_s_bound` | 3 |
# | 1–5 | bad input raises `ValueError` (one small test per task) | 5 |
# | 3–6 | written answers (graded by hand) | 10 |
# | | **total** | **30** |
#
# A task whose computation is right but that forgets to reject bad input loses only the
# point of its `ValueError` test.
#
# Each task has a visible test you can run now. More tests, on sizes and devices you have not
# seen, run when the lab is graded: make your functions right in general, not just on the
# examples.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from course_lib import roofline
from course_lib.grading import check_int, check_real, describe_call, expect_error
from course_lib.plotting import new_axes, plot_intensity_vs_length, plot_roofline
from course_lib.specs import hardware, hardware_table, model
from course_lib.timing import format_seconds, is_autograding
from course_lib.units import GB, GiB

pd.set_option("display.width", 140)
pd.set_option("display.precision", 4)
torch.manual_seed(0)
GRADING = is_autograding()  # the measurements at the end run smaller while the lab is graded

# %% [markdown]
# ## Part 1 — Counting FLOPs and bytes
#
# Take one attention call with $n_q$ queries and $n_{kv}$ keys and values, head dimension $d$,
# $H$ query heads and $H_{kv}$ key/value heads ($H_{kv} = H$ for MHA, $H_{kv} < H$ for GQA,
# 1 for MQA). For one query head it computes
#
# $$S = Q K^\top \;(n_q \times n_{kv}), \qquad P = \operatorname{softmax}(S) \text{ row by row},
# \qquad O = P V \;(n_q \times d),$$
#
# with $Q$ of shape $n_q \times d$ and $K$, $V$ of shape $n_{kv} \times d$ (the $1/\sqrt{d}$
# scale and the causal mask are applied to $S$). **Prefill** processes a prompt of $N$ tokens:
# $n_q = n_{kv} = N$. **Decode** generates one token that attends to the $N$ cached ones:
# $n_q = 1$, $n_{kv} = N$.
#
# Counts of FLOPs differ from book to book by small terms. Ours are exact under this
# **convention**, which the tests check to the last FLOP and byte:
#
# **FLOPs**
#
# * A matrix product $(m \times k)(k \times n)$ costs $2\,m\,k\,n$ FLOPs: each of the $m\,n$
#   outputs is a dot product of length $k$, and every term is one multiply and one add (a
#   multiply-add counts as **2** FLOPs).
# * The softmax costs **5 FLOPs per score element**: compare with the row maximum, subtract the
#   maximum, exponentiate, add to the row sum, divide by the sum.
# * The $1/\sqrt{d}$ scale is **not** counted (think of it as folded into $Q$ beforehand), and
#   neither is the causal mask.
# * **The causal mask does not halve anything.** We count the full $n_q \times n_{kv}$ score
#   matrix, because that is what your Lab 01 `attention` computes: it computes every score,
#   then overwrites the masked ones with $-\infty$. (Kernels that skip fully masked blocks do
#   about half the work in prefill; we do not model them.)
# * Every query head does its own products and softmax. GQA shares the *data* of a K/V head
#   between $H/H_{kv}$ query heads, not the arithmetic.
#
# **Bytes** (the traffic to main memory: HBM on a GPU, DRAM on a CPU)
#
# * Every tensor is read or written **exactly once**, at `bytes_per_elem` bytes per element:
#   read $Q$, read $K$, read $V$, write $O$. (This assumes perfect reuse on chip: nothing is
#   read twice. Part 3 shows what a finite on-chip memory changes.)
# * $Q$ and $O$ exist once per *query* head; $K$ and $V$ once per *KV* head.
# * **Unfused** attention, as in Lab 01, runs three separate steps, so the score matrices go
#   through memory: the first product **writes** $S$, the softmax **reads** $S$ and **writes**
#   $P$, the second product **reads** $P$. $S$ and $P$ are stored at `bytes_per_elem` too.
# * **Fused** attention (FlashAttention-style) keeps tiles of $S$ and $P$ in on-chip memory:
#   **no** bytes for $S$ or $P$.
# * Not counted: the mask, the row maxima and sums, the scale, the weights of the projections
#   (they come in Part 4).
#
# Working out the totals from these rules is your job.
#
# ### Task 1a: FLOPs
#
# Write `attention_flops(n_q, n_kv, head_dim, n_heads=1)`: the FLOPs of one attention call
# under the convention, as an `int`. Raise `ValueError` if any argument is smaller than 1.

# %% solution id=attention_flops
def attention_flops(n_q: int, n_kv: int, head_dim: int, n_heads: int = 1) -> int:
    """FLOPs of one attention call: n_heads query heads, n_q queries, n_kv keys, head_dim d.

    Counts, for every query head: S = Q K^T (a matmul), the softmax at 5 FLOPs per score
    element, and O = P V (a matmul), with a matmul (m x k)(k x n) = 2*m*k*n FLOPs. The scale
    and the causal mask are not counted; the mask does not halve anything.
    Returns an int. Raises ValueError if an argument is < 1.
    """
    ### BEGIN SOLUTION
    for name, value in [("n_q", n_q), ("n_kv", n_kv), ("head_dim", head_dim), ("n_heads", n_heads)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    scores = 2 * n_q * head_dim * n_kv     # S = Q K^T: (n_q x d)(d x n_kv)
    softmax = 5 * n_q * n_kv               # 5 FLOPs per score element
    output = 2 * n_q * n_kv * head_dim     # O = P V: (n_q x n_kv)(n_kv x d)
    return int(n_heads * (scores + softmax + output))
    ### END SOLUTION


# %% tests id=test_attention_flops points=3
from course_lib.grading import check_int, describe_call

MULADD = ("2x too few matmul FLOPs: a multiply-add is 2 FLOPs, so a matmul (m x k)(k x n) costs "
          "2*m*k*n, and attention has two matmuls (Q K^T and P V)")
NO_SOFTMAX = "softmax left out: the convention counts 5 FLOPs per score element"
CAUSAL_HALF = ("halved for the causal mask: the convention counts the full n_q x n_kv score matrix "
               "(Lab 01's attention computes every score, then masks)")
ONE_HEAD = ("counted one head only: every one of the n_heads query heads computes its own scores "
            "(multiply by n_heads)")
SWAPPED = ("N^2 vs N*d terms swapped: the softmax runs over the n_q x n_kv scores, "
           "not over an n_q x head_dim matrix")
SQUARE = ("score matrix taken as n_q x n_q: it is n_q x n_kv (a row per query, a column per key; "
          "in decode n_q = 1 but n_kv = N)")


def SOFTMAX_AS(c):
    return (f"softmax counted as {c} FLOPs per score element; the convention is 5 "
            "(max, subtract, exp, sum, divide)")


# Prefill, one head: N = 1024 queries and keys, head_dim 128.
check_int(attention_flops(1024, 1024, 128), 542_113_792,
          call=describe_call("attention_flops", 1024, 1024, 128),
          mistakes={MULADD: 273_678_336, NO_SOFTMAX: 536_870_912, CAUSAL_HALF: 271_056_896,
                    SWAPPED: 537_526_272, SOFTMAX_AS(3): 540_016_640, SOFTMAX_AS(4): 541_065_216,
                    SOFTMAX_AS(6): 543_162_368}, generic=False)
# Decode, 32 heads: one new token attending to 4096 cached ones.
check_int(attention_flops(1, 4096, 128, n_heads=32), 67_764_224,
          call=describe_call("attention_flops", 1, 4096, 128, n_heads=32),
          mistakes={MULADD: 34_209_792, NO_SOFTMAX: 67_108_864, CAUSAL_HALF: 33_882_112,
                    ONE_HEAD: 2_117_632, SWAPPED: 67_129_344, SQUARE: 16_544,
                    SOFTMAX_AS(3): 67_502_080, SOFTMAX_AS(4): 67_633_152, SOFTMAX_AS(6): 67_895_296},
          generic=False)
print("Visible tests passed: prefill N=1024 costs 542,113,792 FLOPs per head; "
      "decode at N=4096 with 32 heads costs 67,764,224.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _flops_case(n_q, n_kv, d, h):
    """h (4 n_q n_kv d + 5 n_q n_kv) FLOPs, and what each slip counts instead."""
    qk = n_q * n_kv
    slips = {MULADD: h * (2 * qk * d + 5 * qk), NO_SOFTMAX: h * 4 * qk * d,
             CAUSAL_HALF: h * (4 * qk * d + 5 * qk) / 2, ONE_HEAD: 4 * qk * d + 5 * qk,
             SWAPPED: h * (4 * qk * d + 5 * n_q * d), SQUARE: h * (4 * n_q * n_q * d + 5 * n_q * n_q)}
    for c in (1, 2, 3, 4, 6, 7):
        slips[SOFTMAX_AS(c)] = h * (4 * qk * d + c * qk)
    return Case((n_q, n_kv, d, h), h * (4 * qk * d + 5 * qk), slips)


check_cases(attention_flops, [_flops_case(*c) for c in [
    (1, 1, 1, 1), (7, 13, 5, 3), (2048, 2048, 64, 12), (1, 32768, 128, 64), (1, 8192, 256, 16),
    (300, 300, 96, 1), (16, 4096, 128, 32), (1, 131072, 128, 128), (5, 5, 1, 1), (1, 2, 80, 71)]]
            # keyword arguments, as the notebook calls them
            + [_flops_case(3, 9, 4, 2).by_keyword("n_q", "n_kv", "head_dim", "n_heads")])


def _doubled(n_q, n_kv):
    """attention_flops at twice the context (and twice the queries, unless one is decoded), over once."""
    return attention_flops(n_q if n_q == 1 else 2 * n_q, 2 * n_kv, 64) / attention_flops(n_q, n_kv, 64)


# prefill per head grows like N^2, decode like N
check_cases(_doubled, [
    Case((256, 256), 2.0 ** 2, call="attention_flops(512, 512, 64) / attention_flops(256, 256, 64): prefill at twice N"),
    Case((1, 256), 2.0 ** 1, call="attention_flops(1, 512, 64) / attention_flops(1, 256, 64): decode at twice N")])
### END HIDDEN TESTS


# %% tests id=test_attention_flops_validation points=1
from course_lib.grading import expect_error

expect_error(attention_flops, (0, 16, 64), None, ValueError, "n_q must be >= 1")
print("Visible test passed: attention_flops rejects a size of 0.")
### BEGIN HIDDEN TESTS
for _args, _kwargs, _why in [((4, 0, 64), None, "sizes must be >= 1"), ((4, 16, 0), None, "sizes must be >= 1"),
                             ((-1, 16, 64), None, "sizes must be >= 1"),
                             ((4, 16, 64), {"n_heads": 0}, "n_heads must be >= 1")]:
    expect_error(attention_flops, _args, _kwargs, ValueError, _why)
### END HIDDEN TESTS

# %% [markdown]
# ### Task 1b: bytes
#
# Write `attention_bytes(n_q, n_kv, head_dim, bytes_per_elem, n_heads=1, n_kv_heads=None,
# fused=False)`: the bytes one attention call moves to and from memory under the convention,
# as an `int`.
#
# * `n_kv_heads=None` means MHA: as many KV heads as query heads.
# * `bytes_per_elem` is a whole number of bytes (4 for fp32, 2 for fp16/bf16, 1 for fp8).
# * `fused=False`: unfused attention (S and P go through memory); `fused=True`: fused
#   attention (they do not).
# * Raise `ValueError` if any of `n_q`, `n_kv`, `head_dim`, `bytes_per_elem`, `n_heads` or
#   `n_kv_heads` is smaller than 1, or if `n_heads` is not a multiple of `n_kv_heads`.

# %% solution id=attention_bytes
def attention_bytes(n_q: int, n_kv: int, head_dim: int, bytes_per_elem: int, n_heads: int = 1,
                    n_kv_heads: int | None = None, fused: bool = False) -> int:
    """Bytes one attention call moves to and from memory under the counting convention above
    (S and P count only when unfused), as an int. n_kv_heads=None means n_kv_heads = n_heads.
    Raises ValueError if any of n_q, n_kv, head_dim, bytes_per_elem, n_heads, n_kv_heads is
    < 1, or if n_heads is not a multiple of n_kv_heads.
    """
    ### BEGIN SOLUTION
    if n_kv_heads is None:
        n_kv_heads = n_heads
    for name, value in [("n_q", n_q), ("n_kv", n_kv), ("head_dim", head_dim),
                        ("bytes_per_elem", bytes_per_elem), ("n_heads", n_heads),
                        ("n_kv_heads", n_kv_heads)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if n_heads % n_kv_heads != 0:
        raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
    q_and_o = 2 * n_heads * n_q * head_dim           # read Q, write O
    k_and_v = 2 * n_kv_heads * n_kv * head_dim       # read K, read V (once per KV head)
    elements = q_and_o + k_and_v
    if not fused:
        elements += 4 * n_heads * n_q * n_kv         # write S, read S, write P, read P
    return int(elements * bytes_per_elem)
    ### END SOLUTION


# %% tests id=test_attention_bytes points=4
from course_lib.grading import check_int, describe_call

FUSED_SP = ("S/P bytes counted for fused attention: a fused (FlashAttention-style) kernel keeps "
            "S and P on chip, so only Q, K, V and O touch memory")
NO_SP = ("S and P left out of unfused attention: it writes S, reads S back, writes P and "
         "reads P back (4 x n_q x n_kv elements per head)")
SP_ONCE = ("S and P counted once each: each is written once AND read back once "
           "(4 x n_q x n_kv elements per head in all)")
SP_THRICE = ("S and P counted 3 times: S is written and read, P is written and read "
             "(4 x n_q x n_kv elements per head)")
SWAPPED_B = "N^2 vs N*d terms swapped: S and P are n_q x n_kv per head, not n_q x head_dim"
KV_AS_Q = ("query heads vs KV heads: K and V exist once per KV head (n_kv_heads of them), "
           "not once per query head")
Q_AS_KV = ("query heads vs KV heads: Q and O (and S, P) belong to every query head (n_heads), "
           "not to the n_kv_heads KV heads")
KV_NQ = "K and V sized with n_q rows: the cache holds n_kv keys and n_kv values per KV head"
ONLY_K = "only K counted: V is read too (2 x n_kv_heads x n_kv x head_dim elements)"
NO_QO = ("Q read or O write left out: each is n_heads x n_q x head_dim elements, "
         "read (Q) or written (O) once")
ELEMENTS = "counted elements, not bytes: multiply by bytes_per_elem"
BITS = "8x too large: bits instead of bytes (bytes_per_elem is in bytes: 2 for fp16, not 16 bits)"

# Prefill, one head, N = 512, head_dim 64, fp16: unfused, then fused.
check_int(attention_bytes(512, 512, 64, 2), 2_359_296,
          call=describe_call("attention_bytes", 512, 512, 64, 2),
          mistakes={NO_SP: 262_144, SP_ONCE: 1_310_720, SP_THRICE: 1_835_008, SWAPPED_B: 524_288,
                    ONLY_K: 2_293_760, ELEMENTS: 1_179_648, BITS: 18_874_368}, generic=False)
check_int(attention_bytes(512, 512, 64, 2, fused=True), 262_144,
          call=describe_call("attention_bytes", 512, 512, 64, 2, fused=True),
          mistakes={FUSED_SP: 2_359_296, ONLY_K: 196_608, ELEMENTS: 131_072, BITS: 2_097_152}, generic=False)
# Decode with GQA (32 query heads, 8 KV heads), N = 8192, head_dim 128, bf16: fused, then unfused.
check_int(attention_bytes(1, 8192, 128, 2, n_heads=32, n_kv_heads=8, fused=True), 33_570_816,
          call=describe_call("attention_bytes", 1, 8192, 128, 2, n_heads=32, n_kv_heads=8, fused=True),
          mistakes={FUSED_SP: 35_667_968, KV_AS_Q: 134_234_112, Q_AS_KV: 33_558_528, KV_NQ: 20_480,
                    ONLY_K: 16_793_600, NO_QO: 33_562_624, ELEMENTS: 16_785_408, BITS: 268_566_528},
          generic=False)
check_int(attention_bytes(1, 8192, 128, 2, n_heads=32, n_kv_heads=8), 35_667_968,
          call=describe_call("attention_bytes", 1, 8192, 128, 2, n_heads=32, n_kv_heads=8),
          mistakes={NO_SP: 33_570_816, SP_ONCE: 34_619_392, SP_THRICE: 35_143_680,
                    SWAPPED_B: 33_603_584, KV_AS_Q: 136_331_264, Q_AS_KV: 34_082_816,
                    KV_NQ: 2_117_632, ONLY_K: 18_890_752, NO_QO: 35_659_776, ELEMENTS: 17_833_984,
                    BITS: 285_343_744}, generic=False)
print("Visible tests passed: prefill N=512 moves 2,359,296 B unfused and 262,144 B fused; "
      "GQA decode at N=8192 moves 33,570,816 B fused.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _bytes_case(n_q, n_kv, d, b, **heads_and_fused):
    """attention_bytes(n_q, n_kv, d, b, **heads_and_fused): b (2 h n_q d + 2 h_kv n_kv d [+ 4 h n_q n_kv
    unfused]) bytes, and what each slip counts instead."""
    h = heads_and_fused.get("n_heads", 1)
    hkv = heads_and_fused.get("n_kv_heads") or h
    fused = heads_and_fused.get("fused", False)
    qo = 2 * h * n_q * d
    kv = 2 * hkv * n_kv * d
    sp = 0 if fused else 4 * h * n_q * n_kv
    slips = {}
    if fused:
        slips[FUSED_SP] = b * (qo + kv + 4 * h * n_q * n_kv)
    else:
        slips[NO_SP] = b * (qo + kv)
        slips[SP_ONCE] = b * (qo + kv + sp // 2)
        slips[SP_THRICE] = b * (qo + kv + 3 * sp // 4)
        slips[SWAPPED_B] = b * (qo + kv + 4 * h * n_q * d)
    slips[KV_AS_Q] = b * (qo + 2 * h * n_kv * d + sp)
    slips[Q_AS_KV] = b * (2 * hkv * n_q * d + kv + sp * hkv // h)
    slips[KV_NQ] = b * (qo + 2 * hkv * n_q * d + sp)
    slips[ONLY_K] = b * (qo + kv // 2 + sp)
    slips[NO_QO] = b * (qo // 2 + kv + sp)
    slips[ELEMENTS] = qo + kv + sp
    slips[BITS] = 8 * b * (qo + kv + sp)
    return Case((n_q, n_kv, d, b), b * (qo + kv + sp), slips, kwargs=heads_and_fused)


_cases = [_bytes_case(n_q, n_kv, d, b, n_heads=h, n_kv_heads=hkv, fused=fused) for n_q, n_kv, d, b, h, hkv, fused in [
    (1, 1, 1, 1, 1, 1, False), (1, 1, 1, 1, 1, 1, True), (3, 10, 7, 4, 6, 2, False), (3, 10, 7, 4, 6, 2, True),
    (2048, 2048, 128, 2, 32, 8, False), (2048, 2048, 128, 2, 32, 8, True), (1, 65536, 128, 2, 64, 8, False),
    (1, 65536, 128, 2, 64, 8, True), (1, 2048, 64, 2, 71, 1, True), (1, 2048, 64, 2, 71, 1, False),
    (4096, 4096, 64, 4, 12, 12, False), (1, 100_000, 256, 1, 16, 8, True), (128, 8192, 128, 2, 28, 4, False)]]
# the default n_kv_heads (None) means MHA, for several head counts
_cases += [_bytes_case(1, 1000, 64, 2, n_heads=h, fused=fused) for h in (1, 4, 25) for fused in (False, True)]
# positional arguments in the documented order
_by_name = _bytes_case(5, 9, 3, 2, n_heads=4, n_kv_heads=2, fused=True)
_cases.append(Case((5, 9, 3, 2, 4, 2, True), _by_name.expected, _by_name.mistakes))
check_cases(attention_bytes, _cases)
### END HIDDEN TESTS


# %% tests id=test_attention_bytes_validation points=1
from course_lib.grading import expect_error

expect_error(attention_bytes, (4, 16, 64, 2), {"n_heads": 6, "n_kv_heads": 4}, ValueError,
             "6 query heads cannot be split into groups over 4 KV heads")
print("Visible test passed: attention_bytes rejects 6 query heads over 4 KV heads.")
### BEGIN HIDDEN TESTS
for _args, _kw in [((4, 16, 64, 0), None), ((0, 16, 64, 2), None), ((4, 16, 64, 2), {"n_heads": 8, "n_kv_heads": 3}),
                   ((4, 16, 64, 2), {"n_heads": 8, "n_kv_heads": 0}), ((1, 16, 64, 2), {"n_heads": 0})]:
    expect_error(attention_bytes, _args, _kw, ValueError, "invalid sizes or head counts")
### END HIDDEN TESTS

# %% [markdown]
# With the two counts, the **arithmetic intensity** of a kernel is FLOPs per byte moved.
# Here is one head of Llama-2-7B's attention (head dimension 128, fp16) for a prompt and for
# a generated token:

# %%
for _phase, _n_q in (("prefill", 4096), ("decode ", 1)):
    _f = attention_flops(_n_q, 4096, 128)
    _b = attention_bytes(_n_q, 4096, 128, 2)
    _bf = attention_bytes(_n_q, 4096, 128, 2, fused=True)
    print(f"{_phase} N=4096: {_f:>13,} FLOPs, {_b:>11,} B unfused ({_f / _b:6.2f} FLOP/B), "
          f"{_bf:>10,} B fused ({_f / _bf:7.2f} FLOP/B)")

# %% [markdown]
# ## Part 2 — The roofline
#
# A kernel that performs $F$ FLOPs and moves $Q$ bytes needs at least $F / \text{peak}$ seconds
# of arithmetic and at least $Q / \text{bandwidth}$ seconds of memory traffic. With the two
# overlapped perfectly, its time is the larger of the two, so its rate is at most
#
# $$\text{attainable FLOP/s} = \min\bigl(\text{peak FLOP/s},\; I \times \text{bandwidth}\bigr),
# \qquad I = \frac{F}{Q}\ \text{(FLOP/byte)}.$$
#
# On log-log axes this is a slanted line (memory-bound: performance grows with $I$) that meets
# a flat line (compute-bound) at the **ridge point** $I^* = \text{peak} / \text{bandwidth}$.
# A kernel with $I < I^*$ waits for memory whatever the peak of the chip; one with $I > I^*$
# waits for the arithmetic units.
#
# The table of devices comes from `course_lib.specs` (datasheet figures, with sources):

# %%
display(hardware_table())

# %% [markdown]
# ### Task 2: intensity, ridge point, attainable FLOP/s
#
# Write the three functions below, all in SI units (FLOPs, bytes, FLOP/s, bytes/s), each
# returning a `float`. Raise `ValueError` when `bytes_moved`, `peak_flops` or
# `mem_bandwidth` is not positive, or when `flops` or `intensity` is negative.

# %% solution id=roofline_model
def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOPs per byte moved (FLOP/byte)."""
    ### BEGIN SOLUTION
    if flops < 0:
        raise ValueError(f"flops must be >= 0, got {flops}")
    if bytes_moved <= 0:
        raise ValueError(f"bytes_moved must be > 0, got {bytes_moved}")
    return float(flops / bytes_moved)
    ### END SOLUTION


def ridge_point(peak_flops: float, mem_bandwidth: float) -> float:
    """Intensity (FLOP/byte) where the compute roof (peak_flops, FLOP/s) meets the memory roof
    (mem_bandwidth, bytes/s)."""
    ### BEGIN SOLUTION
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be > 0, got {peak_flops}")
    if mem_bandwidth <= 0:
        raise ValueError(f"mem_bandwidth must be > 0, got {mem_bandwidth}")
    return float(peak_flops / mem_bandwidth)
    ### END SOLUTION


def attainable_flops(intensity: float, peak_flops: float, mem_bandwidth: float) -> float:
    """Roofline bound in FLOP/s for a kernel of the given intensity (FLOP/byte)."""
    ### BEGIN SOLUTION
    if intensity < 0:
        raise ValueError(f"intensity must be >= 0, got {intensity}")
    if peak_flops <= 0 or mem_bandwidth <= 0:
        raise ValueError(f"peak_flops and mem_bandwidth must be > 0, got {peak_flops}, {mem_bandwidth}")
    memory_roof = intensity * mem_bandwidth
    return float(min(peak_flops, memory_roof))
    ### END SOLUTION


# %% tests id=test_roofline_model points=3
from course_lib.grading import check_real, describe_call

INVERTED_I = "inverted: arithmetic intensity is FLOPs per byte, flops / bytes_moved"
INVERTED_R = "inverted: the ridge point is peak FLOP/s divided by bandwidth (bytes/s), in FLOP/byte"
GBPS_DIV = "bandwidth in GB/s vs bytes/s: mem_bandwidth is already in bytes/s (do not divide it by 1e9)"
GBPS_MUL = "bandwidth in GB/s vs bytes/s: mem_bandwidth is already in bytes/s (do not multiply it by 1e9)"
TBPS_DIV = "bandwidth in TB/s vs bytes/s: mem_bandwidth is already in bytes/s (do not divide it by 1e12)"
TFLOPS = "peak in TFLOP/s vs FLOP/s: peak_flops is already in FLOP/s"
NO_CAP = ("no compute ceiling: above the ridge point attainable FLOP/s is capped at peak_flops "
          "(take the min of the two roofs, not the max)")
NO_SLOPE = ("no memory roof: below the ridge point attainable FLOP/s is intensity x mem_bandwidth "
            "(take the min of the two roofs, not the max)")

check_real(arithmetic_intensity(4e9, 2e9), 2.0, call="arithmetic_intensity(4e9, 2e9)",
           mistakes={INVERTED_I: 0.5}, generic=False)
# A100 40GB: 312 TFLOP/s dense fp16, 1.555 TB/s
check_real(ridge_point(312e12, 1.555e12), 200.64308681672026, call="ridge_point(312e12, 1.555e12)",
           mistakes={INVERTED_R: 0.004983974358974359, GBPS_DIV: 200643086816.72025,
                     GBPS_MUL: 2.0064308681672026e-07, TBPS_DIV: 200643086816720.25,
                     TFLOPS: 2.0064308681672027e-10}, generic=False)
# H100 SXM: 989 TFLOP/s, 3.35 TB/s; intensity 10 (memory-bound), then 1000 (compute-bound)
check_real(attainable_flops(10.0, 989e12, 3.35e12), 33.5e12, call="attainable_flops(10.0, 989e12, 3.35e12)",
           mistakes={NO_SLOPE: 989e12, GBPS_DIV: 33500.0}, generic=False)
check_real(attainable_flops(1000.0, 989e12, 3.35e12), 989e12, call="attainable_flops(1000.0, 989e12, 3.35e12)",
           mistakes={NO_CAP: 3.35e15, GBPS_DIV: 3.35e6}, generic=False)
print("Visible tests passed: the A100 40GB ridge is 200.6 FLOP/B; an H100 SXM gives 33.5 TFLOP/s "
      "at 10 FLOP/B and its 989 TFLOP/s peak at 1000 FLOP/B.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases
from course_lib.specs import hardware as _hw


def _ridge_case(p, bw, note=""):
    """p / bw FLOP/byte, and what each slip gives instead."""
    return Case((p, bw), p / bw, {INVERTED_R: bw / p, GBPS_DIV: p / (bw / 1e9), GBPS_MUL: p / (bw * 1e9),
                                  TBPS_DIV: p / (bw / 1e12), TFLOPS: (p / 1e12) / bw}, note=note)


def _attainable_case(i, p, bw, note=""):
    """min(p, i * bw) FLOP/s, and what each slip gives instead (a missing roof only where it binds)."""
    return Case((i, p, bw), min(p, i * bw), {GBPS_DIV: min(p, i * bw / 1e9), GBPS_MUL: min(p, i * bw * 1e9),
                                             NO_CAP: i * bw if i * bw > p else None,
                                             NO_SLOPE: p if i * bw <= p else None}, note=note)


check_cases(arithmetic_intensity, [Case((f, q), f / q, {INVERTED_I: q / f if f else None})
                                   for f, q in [(1.0, 3.0), (67_764_224, 33_570_816), (0.0, 5.0), (3e15, 7e12), (12, 12)]])
for _name in ("MI300X", "L4", "H200 SXM", "T4", "RTX 4090", "TPU v5e", "H100 PCIe"):
    _p, _bw = _hw(_name).peak_flops_fp16, _hw(_name).mem_bandwidth
    check_cases(ridge_point, [_ridge_case(_p, _bw, note=_name)])
    check_cases(attainable_flops, [_attainable_case(i, _p, _bw, note=_name)
                                   for i in (0.25, 1.0, 0.5 * _p / _bw, _p / _bw, 2.0 * _p / _bw, 5000.0)])
check_cases(attainable_flops, [_attainable_case(0.0, 1e12, 1e11)])
check_cases(ridge_point, [_ridge_case(100e9, 20e9, note="the CPU of a laptop: 100 GFLOP/s, 20 GB/s")])
### END HIDDEN TESTS


# %% tests id=test_roofline_model_validation points=1
from course_lib.grading import expect_error

expect_error(ridge_point, (1e12, 0.0), None, ValueError, "a bandwidth of 0 bytes/s is meaningless")
print("Visible test passed: ridge_point rejects a bandwidth of 0.")
### BEGIN HIDDEN TESTS
for _f, _args, _why in [(arithmetic_intensity, (1e9, 0), "bytes_moved must be > 0"),
                        (arithmetic_intensity, (-1.0, 10.0), "flops must be >= 0"),
                        (ridge_point, (0.0, 1e12), "peak_flops must be > 0"),
                        (ridge_point, (1e12, -2e12), "mem_bandwidth must be > 0"),
                        (attainable_flops, (-1.0, 1e12, 1e11), "intensity must be >= 0"),
                        (attainable_flops, (1.0, 1e12, 0.0), "mem_bandwidth must be > 0"),
                        (attainable_flops, (1.0, 0.0, 1e11), "peak_flops must be > 0")]:
    expect_error(_f, _args, None, ValueError, _why)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 — Prefill and decode against context length
#
# Now put the counts side by side for one layer of two real models, in fp16/bf16 (2 bytes).
# Llama-2-7B uses MHA (32 query heads, 32 KV heads); Llama-3-8B uses GQA (32 query heads
# sharing 8 KV heads, a group of 4). Both have head dimension 128.

# %%
H100 = hardware("H100 SXM")
A100 = hardware("A100 80GB SXM")
RIDGES = {"H100 SXM": ridge_point(H100.peak_flops_fp16, H100.mem_bandwidth),
          "A100 80GB SXM": ridge_point(A100.peak_flops_fp16, A100.mem_bandwidth)}
print("Ridge points (dense fp16/bf16):", ", ".join(f"{k} {v:.1f} FLOP/B" for k, v in RIDGES.items()))

rows = []
for _name in ("Llama-2-7B", "Llama-3-8B"):
    _m = model(_name)
    for _N in (512, 4096, 32768):
        for _phase, _n_q in (("prefill", _N), ("decode", 1)):
            _f = attention_flops(_n_q, _N, _m.head_dim, _m.n_heads)
            _row = {"model": _name, "phase": _phase, "N": _N, "FLOPs": _f}
            for _fused in (False, True):
                _b = attention_bytes(_n_q, _N, _m.head_dim, 2, _m.n_heads, _m.n_kv_heads, fused=_fused)
                _row["intensity " + ("fused" if _fused else "unfused")] = arithmetic_intensity(_f, _b)
            rows.append(_row)
display(pd.DataFrame(rows).set_index(["model", "phase", "N"]))

# %% [markdown]
# Read the decode rows. Per query head and per cached token, decode does $4d + 5$ FLOPs
# (two multiply-adds per element of the key and value, and the softmax) and has to read $2d$
# numbers (the key and the value) of 2 bytes each. For MHA, $I \to (4d+5)/(4d) \approx 1.01$
# FLOP/byte, **whatever $N$**: a longer context means more work *and* proportionally more
# bytes. With GQA, the $H/H_{kv}$ query heads of a group share the key and value they read, so
# the intensity is multiplied by the group size: about 4 for Llama-3-8B. Both are far below
# the ridge points printed above.
#
# Prefill is different: the work grows like $N^2$, the unavoidable bytes ($Q$, $K$, $V$, $O$)
# like $N$. The plot shows intensity against $N$ for both phases. The "fused (ideal)" curve
# follows our convention, where every tensor goes through memory once; the curve below it
# drops that assumption (see the next section).

# %%
TILE_ROWS = 128  # query rows a fused kernel keeps on chip at once (see below)


def fused_tiled_bytes(n, head_dim, bytes_per_elem, tile_rows=TILE_ROWS):
    """Bytes of fused prefill attention for one head when only `tile_rows` queries fit on chip:
    the convention's single pass, plus K and V read again for every further tile of queries."""
    n_tiles = math.ceil(n / tile_rows)
    rereads = (n_tiles - 1) * 2 * n * head_dim * bytes_per_elem  # K and V, once more per extra tile
    return attention_bytes(n, n, head_dim, bytes_per_elem, fused=True) + rereads


LENGTHS = [2**i for i in range(6, 18)]
_d, _b = 128, 2
series = {
    "prefill, unfused (MHA)": [arithmetic_intensity(attention_flops(n, n, _d), attention_bytes(n, n, _d, _b))
                               for n in LENGTHS],
    "prefill, fused (MHA), ideal: one pass": [
        arithmetic_intensity(attention_flops(n, n, _d), attention_bytes(n, n, _d, _b, fused=True)) for n in LENGTHS],
    f"prefill, fused (MHA), {TILE_ROWS}-row query tiles": [
        arithmetic_intensity(attention_flops(n, n, _d), fused_tiled_bytes(n, _d, _b)) for n in LENGTHS],
    "decode, fused, GQA group 4 (Llama-3-8B)": [
        arithmetic_intensity(attention_flops(1, n, _d, 32), attention_bytes(1, n, _d, _b, 32, 8, fused=True))
        for n in LENGTHS],
    "decode, fused (MHA)": [arithmetic_intensity(attention_flops(1, n, _d), attention_bytes(1, n, _d, _b, fused=True))
                            for n in LENGTHS],
    "decode, unfused (MHA)": [arithmetic_intensity(attention_flops(1, n, _d), attention_bytes(1, n, _d, _b))
                              for n in LENGTHS],
}
ax = plot_intensity_vs_length(LENGTHS, series, RIDGES, xlabel="Context length N (tokens)",
                              title="Attention intensity vs context length (head_dim 128, fp16/bf16)")
ax.text(0.98, 0.21, "ideal: Q, K, V, O each through memory once (unlimited on-chip memory)\n"
        f"{TILE_ROWS}-row tiles: K and V re-read for every tile of {TILE_ROWS} queries",
        transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
plt.show()

# %% [markdown]
# Where does each curve cross a ridge point? Prefill intensity grows with $N$, so a binary
# search finds the first $N$ at or above the ridge (or says it never gets there):

# %%
def first_length_at_or_above(intensity_of, ridge, n_max=2**24):
    """Smallest N in [1, n_max] with intensity_of(N) >= ridge (intensity_of must grow with N), or None."""
    if intensity_of(n_max) < ridge:
        return None
    lo, hi = 1, n_max
    while lo < hi:
        mid = (lo + hi) // 2
        if intensity_of(mid) >= ridge:
            hi = mid
        else:
            lo = mid + 1
    return lo


phases = {
    "prefill, fused (ideal)": lambda n: arithmetic_intensity(attention_flops(n, n, 128),
                                                             attention_bytes(n, n, 128, 2, fused=True)),
    f"prefill, fused ({TILE_ROWS}-row tiles)": lambda n: arithmetic_intensity(attention_flops(n, n, 128),
                                                                            fused_tiled_bytes(n, 128, 2)),
    "prefill, unfused": lambda n: arithmetic_intensity(attention_flops(n, n, 128), attention_bytes(n, n, 128, 2)),
    "decode, fused (MHA)": lambda n: arithmetic_intensity(attention_flops(1, n, 128), attention_bytes(1, n, 128, 2, fused=True)),
    "decode, fused (GQA 4)": lambda n: arithmetic_intensity(attention_flops(1, n, 128, 32),
                                                            attention_bytes(1, n, 128, 2, 32, 8, fused=True)),
}
for _phase, _fn in phases.items():
    for _dev, _ridge in RIDGES.items():
        _n = first_length_at_or_above(_fn, _ridge)
        _where = f"N >= {_n:,}" if _n else f"never (limit as N grows: {_fn(2**24):.1f} FLOP/B)"
        print(f"{_phase:28s} compute-bound on {_dev:14s} (ridge {_ridge:6.1f}): {_where}")

# %% [markdown]
# **Unfused** prefill never crosses a ridge: its $S$ and $P$ traffic grows like $N^2$ just
# like the work, so its intensity levels off at $(4d+5)/(4 \cdot \text{bytes})$, about
# 64.6 FLOP/B in fp16, below both ridges. That ceiling is what FlashAttention removes. Decode
# never gets anywhere near a ridge.
#
# ### How far can a fused kernel go? On-chip memory sets a cap
#
# The ideal fused curve grows like $N/2$ without end, but only under our convention that
# each of $Q$, $K$, $V$ and $O$ goes through memory **once**. That needs room on chip for all
# of one head's keys and values ($2Nd$ numbers) while every query passes by, and on-chip
# memory is small. A real fused kernel keeps a **tile** of $T$ query rows (and their running
# outputs) on chip and streams $K$ and $V$ past it; for the next tile it must read $K$ and $V$
# again. Its bytes are the single pass plus $(\lceil N/T \rceil - 1) \cdot 2Nd$ elements of
# re-reads, which grow like $N^2 d / T$, as fast as the work. The intensity therefore levels
# off, at
#
# $$I_\text{tiled} \to \frac{T\,(4d+5)}{2\,d \cdot \text{bytes}} \approx 129 \text{ FLOP/B
# for } T = d = 128 \text{ in fp16}.$$
#
# This is the FlashAttention paper's result in our units (Dao et al. 2022, Theorem 2): with
# an on-chip SRAM of $M$ elements, FlashAttention needs $\Theta(N^2 d^2 / M)$ accesses to
# main memory, against $\Theta(Nd + N^2)$ for standard attention. Its blocks are sized by the
# SRAM ($\lceil M/4d \rceil$ rows of $K$ and $V$, $\min(\lceil M/4d \rceil, d)$ rows of $Q$),
# and one operand is read again for every block of the other: $N^2 d$ divided by a block of
# about $M/4d$ rows, $\Theta(N^2 d^2 / M)$. Our $T$ plays the role of that block size; $T = d$
# is the largest query block the paper's rule allows. The paper also proves (Proposition 3)
# that no exact attention algorithm does asymptotically better for every SRAM size: the cap
# comes from the size of on-chip memory, not from one algorithm's choices.
#
# Where a real GPU lands between the two fused curves depends on the kernel and the chip: the
# tiled count assumes nothing is reused between tiles, while a cache shared by the whole GPU
# can serve one $K$/$V$ tile to several query tiles running at the same time. The lesson
# holds either way: **attention alone is not what makes a prompt compute-bound**. The next
# part shows what is.

# %% [markdown]
# ## Part 4 — Whole-model prefill: the weight GEMMs and the time to first token
#
# Attention is only part of a layer. Every layer also multiplies its weight matrices (the
# query, key, value and output projections, the MLP) by the activations of the tokens. In
# prefill it does so for all $N$ prompt tokens **at once**: for a weight matrix of
# $k \times n$, one matrix product (a GEMM) $(N \times k)(k \times n)$. Its FLOPs are
# $2Nkn$; its bytes are at least the weights ($kn$ elements) plus the activations in and out
# ($Nk + Nn$ elements):
#
# $$I_\text{GEMM} = \frac{2Nkn}{\text{bytes} \cdot (kn + Nk + Nn)} \approx \frac{2N}{\text{bytes}}
# = N \text{ FLOP/B in bf16, for } N \ll k, n.$$
#
# Over a whole model of $P$ parameters that is $2NP$ FLOPs for about $2P$ bytes of weights:
# each weight, once loaded, is used by all $N$ tokens. The intensity of the weight GEMMs is
# the number of tokens processed together. Here is Llama-3-8B's MLP up-projection
# ($d_\text{model} \times d_\text{ff}$), with the activations counted:

# %%
LLAMA3 = model("Llama-3-8B")


def gemm_intensity(n_tokens, k, n, bytes_per_elem=2):
    """FLOP/B of an (n_tokens x k)(k x n) product: weights and activations through memory once."""
    flops = 2 * n_tokens * k * n
    nbytes = bytes_per_elem * (k * n + n_tokens * k + n_tokens * n)
    return arithmetic_intensity(flops, nbytes)


_k, _d_ff = LLAMA3.d_model, LLAMA3.d_ff
display(pd.DataFrame([{"tokens N": _N, "GEMM intensity (FLOP/B)": gemm_intensity(_N, _k, _d_ff),
                       "approximation 2N / bytes": 2 * _N / 2,
                       "on an H100 SXM": "compute-bound" if gemm_intensity(_N, _k, _d_ff) >= RIDGES["H100 SXM"]
                       else "memory-bound"}
                      for _N in (1, 16, 128, 512, 4096)]).set_index("tokens N"))
for _dev, _ridge in RIDGES.items():
    _n_star = first_length_at_or_above(lambda n: gemm_intensity(n, _k, _d_ff), _ridge)
    print(f"{_k} x {_d_ff} GEMM: compute-bound on {_dev} from N = {_n_star:,} tokens (ridge {_ridge:.1f} FLOP/B)")

# %% [markdown]
# Decode runs the same GEMMs with $N = 1$ token per sequence: about 1 FLOP/B, deep in the
# memory-bound region (Part 5 comes back to it). A prompt of a few hundred tokens puts the
# weight GEMMs past the ridge. That, and not attention, is why prefill is compute-bound: at
# moderate lengths the GEMMs also do most of the FLOPs.
#
# ### Task 4: the time a kernel needs
#
# A kernel (or a whole prefill) that performs $F$ FLOPs and moves $Q$ bytes needs at least
# $F / \text{peak}$ seconds of arithmetic and $Q / \text{bandwidth}$ seconds of memory
# traffic. With the two overlapped perfectly, it takes the larger of the two:
#
# $$t = \max\left(\frac{F}{\text{peak FLOP/s}},\ \frac{Q}{\text{bandwidth}}\right).$$
#
# Write `roofline_seconds(flops, bytes_moved, peak_flops, mem_bandwidth)`: that time in
# seconds, as a `float`. Raise `ValueError` when `flops` or `bytes_moved` is negative, or
# when `peak_flops` or `mem_bandwidth` is not positive.

# %% solution id=roofline_seconds
def roofline_seconds(flops: float, bytes_moved: float, peak_flops: float, mem_bandwidth: float) -> float:
    """Seconds a kernel needs at least: the larger of compute time and memory time (perfect overlap)."""
    ### BEGIN SOLUTION
    if flops < 0:
        raise ValueError(f"flops must be >= 0, got {flops}")
    if bytes_moved < 0:
        raise ValueError(f"bytes_moved must be >= 0, got {bytes_moved}")
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be > 0 FLOP/s, got {peak_flops}")
    if mem_bandwidth <= 0:
        raise ValueError(f"mem_bandwidth must be > 0 bytes/s, got {mem_bandwidth}")
    compute_seconds = flops / peak_flops
    memory_seconds = bytes_moved / mem_bandwidth
    return float(max(compute_seconds, memory_seconds))
    ### END SOLUTION


# %% tests id=test_roofline_seconds points=2
from course_lib.grading import check_real, describe_call

SUM_T = ("added compute time and memory time: the roofline assumes they overlap, so the time is "
         "the LARGER of the two (max), not their sum")
ONLY_COMPUTE = ("used only the compute time flops / peak_flops (or the smaller of the two times): here memory "
                "traffic takes longer, and the time is max(flops / peak_flops, bytes_moved / mem_bandwidth)")
ONLY_MEMORY = ("used only the memory time bytes_moved / mem_bandwidth (or the smaller of the two times): here the "
               "arithmetic takes longer, and the time is max(flops / peak_flops, bytes_moved / mem_bandwidth)")
INVERTED_T = "inverted (a rate, not a time): compute time is flops / peak_flops, memory time bytes_moved / mem_bandwidth"
GBPS_T = "bandwidth in GB/s vs bytes/s: mem_bandwidth is already in bytes/s (do not divide it by 1e9)"
TFLOPS_T = "peak in TFLOP/s vs FLOP/s: peak_flops is already in FLOP/s (do not divide it by 1e12)"
MS_T = "milliseconds instead of seconds: return seconds"


def _time_slips(f, q, p, bw):
    right = max(f / p, q / bw)
    slips = {SUM_T: f / p + q / bw, GBPS_T: max(f / p, q / (bw / 1e9)), TFLOPS_T: max(f / (p / 1e12), q / bw),
             MS_T: 1e3 * right}
    if f / p < q / bw:
        slips[ONLY_COMPUTE] = f / p
    elif q / bw < f / p:
        slips[ONLY_MEMORY] = q / bw
    if f > 0 and q > 0:
        slips[INVERTED_T] = max(p / f, bw / q)
    return slips


# 1e12 FLOPs and 2e9 bytes on an H100 SXM (989 TFLOP/s, 3.35 TB/s): compute-bound.
check_real(roofline_seconds(1e12, 2e9, 989e12, 3.35e12), 1e12 / 989e12,
           call="roofline_seconds(1e12, 2e9, 989e12, 3.35e12)", mistakes=_time_slips(1e12, 2e9, 989e12, 3.35e12),
           generic=False)
# 2e10 FLOPs and 1.6e10 bytes (a decode step of an 8B model): memory-bound.
check_real(roofline_seconds(2e10, 1.6e10, 989e12, 3.35e12), 1.6e10 / 3.35e12,
           call="roofline_seconds(2e10, 1.6e10, 989e12, 3.35e12)", mistakes=_time_slips(2e10, 1.6e10, 989e12, 3.35e12),
           generic=False)
print("Visible tests passed: 1.01 ms (compute-bound) and 4.78 ms (memory-bound) on an H100 SXM.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases
from course_lib.specs import hardware as _hw


def _seconds_case(f, q, p, bw, note=""):
    """max(f / p, q / bw) seconds, and what each slip gives instead."""
    return Case((f, q, p, bw), max(f / p, q / bw), _time_slips(f, q, p, bw), note=note)


def _attained(f, q):
    """The FLOP/s a kernel of f FLOPs and q bytes reaches in the time roofline_seconds gives it (H100 SXM)."""
    return f / roofline_seconds(f, q, 989e12, 3.35e12)


_cases = [_seconds_case(f, q, _hw(name).peak_flops_fp16, _hw(name).mem_bandwidth, note=name)
          for name in ("A100 40GB SXM", "L4", "MI300X", "T4")
          for f, q in [(1e9, 1e9), (1e15, 1e9), (3e11, 7e8), (123456789.0, 98765.0), (0.0, 5e9), (5e12, 0.0)]]
# exactly at the ridge both times are equal; integers in
_cases += [_seconds_case(300e12, 1e12, 300e12, 1e12), _seconds_case(10**12, 10**9, 10**14, 10**11)]
check_cases(roofline_seconds, _cases)
# consistent with the roofline: flops / time is the attainable rate
check_cases(_attained, [Case((f, q), min(989e12, f / q * 3.35e12),
                             call=f"{f!r} / roofline_seconds({f!r}, {q!r}, 989e12, 3.35e12)")
                        for f, q in [(4e12, 1e10), (4e12, 1e9)]])
### END HIDDEN TESTS


# %% tests id=test_roofline_seconds_validation points=1
from course_lib.grading import expect_error

expect_error(roofline_seconds, (1e12, 1e9, 989e12, 0.0), None, ValueError, "mem_bandwidth must be > 0")
print("Visible test passed: roofline_seconds rejects a bandwidth of 0.")
### BEGIN HIDDEN TESTS
for _args, _why in [((-1.0, 1e9, 989e12, 3.35e12), "flops must be >= 0"),
                    ((1e12, -1.0, 989e12, 3.35e12), "bytes_moved must be >= 0"),
                    ((1e12, 1e9, 0.0, 3.35e12), "peak_flops must be > 0"),
                    ((1e12, 1e9, -989e12, 3.35e12), "peak_flops must be > 0"),
                    ((1e12, 1e9, 989e12, -3.35e12), "mem_bandwidth must be > 0")]:
    expect_error(roofline_seconds, _args, None, ValueError, _why)
### END HIDDEN TESTS

# %% [markdown]
# ### Time to first token: Llama-3-8B on an H100 SXM
#
# The first generated token comes out of the prefill: one forward pass over the $N$ prompt
# tokens. Its work and its traffic, in bf16, under our conventions:
#
# * **FLOPs**: the weight GEMMs, $2N$ FLOPs per parameter, for every weight except the
#   embedding table (a lookup, no arithmetic); the LM head for the **last** position only
#   (the first new token needs only its logits); and the attention of every layer, counted
#   with your `attention_flops` (full score matrices, as our convention says: a kernel that
#   skips fully masked blocks does about half of this part).
# * **Bytes**: every weight read once except the embedding table, of which only the $N$ rows
#   of the prompt are read; the KV cache written once. Activations between layers are not
#   counted (a real prefill moves them too).
#
# The table reads $d_\text{model}$, $L$, $H$, $H_{kv}$, $d_h$ and the vocabulary from
# `course_lib.specs`. Its parameter count has a separate LM head (Llama's embeddings are
# untied): the first line checks that the architecture adds up to it.

# %%
def llama_params(m, tied_embeddings=False):
    """Parameters of a Llama-style model (no biases, RMSNorm), from its architecture."""
    embedding = m.vocab_size * m.d_model
    attention = m.d_model * m.n_heads * m.head_dim + 2 * m.d_model * m.n_kv_heads * m.head_dim \
        + m.n_heads * m.head_dim * m.d_model
    mlp = 3 * m.d_model * m.d_ff           # gate, up and down projections
    norms = 2 * m.d_model                  # two RMSNorms per layer
    head = 0 if tied_embeddings else m.vocab_size * m.d_model
    return embedding + m.n_layers * (attention + mlp + norms) + m.d_model + head


print(f"{LLAMA3.name}: {llama_params(LLAMA3):,} parameters from the architecture with an untied LM head, "
      f"{LLAMA3.n_params:,} in the table")
assert llama_params(LLAMA3) == LLAMA3.n_params


def prefill_flops_and_bytes(m, n_tokens, bytes_per_elem=2):
    """(FLOPs, bytes) of a prefill of n_tokens for a Llama-style model with untied embeddings."""
    embedding = m.vocab_size * m.d_model
    head = m.vocab_size * m.d_model
    gemm_params = m.n_params - embedding - head           # the layers' weight matrices (and norms)
    flops = (2 * n_tokens * gemm_params                    # every token through every layer
             + 2 * head                                    # LM head for the last position only
             + m.n_layers * attention_flops(n_tokens, n_tokens, m.head_dim, m.n_heads))
    weights_read = (m.n_params - embedding) * bytes_per_elem
    embedding_rows = n_tokens * m.d_model * bytes_per_elem
    kv_written = 2 * m.n_layers * m.n_kv_heads * m.head_dim * n_tokens * bytes_per_elem
    return flops, weights_read + embedding_rows + kv_written


rows = []
for _N in (16, 128, 512, 4096):
    _f, _q = prefill_flops_and_bytes(LLAMA3, _N)
    _t = roofline_seconds(_f, _q, H100.peak_flops_fp16, H100.mem_bandwidth)
    rows.append({"prompt N": _N, "TFLOPs": _f / 1e12, "GB moved": _q / GB,
                 "intensity (FLOP/B)": arithmetic_intensity(_f, _q),
                 "compute (ms)": 1e3 * _f / H100.peak_flops_fp16, "memory (ms)": 1e3 * _q / H100.mem_bandwidth,
                 "TTFT estimate (ms)": 1e3 * _t,
                 "bound by": "compute" if _f / H100.peak_flops_fp16 >= _q / H100.mem_bandwidth else "memory"})
display(pd.DataFrame(rows).set_index("prompt N"))
_n_star = first_length_at_or_above(lambda n: arithmetic_intensity(*prefill_flops_and_bytes(LLAMA3, n)),
                                   RIDGES["H100 SXM"])
print(f"A {LLAMA3.name} prefill is compute-bound on an H100 SXM from N = {_n_star:,} prompt tokens.")

# %% [markdown]
# A short prompt costs about the time to read the weights once, whatever its length; past a
# few hundred tokens the arithmetic takes over and the time to first token grows with $N$.
# These are estimates from datasheet peaks that real kernels do not reach, so a measured time
# to first token is longer; what the roofline predicts reliably is *which* resource a prompt
# waits for.
#
# **Written answer (4 points).** In your own words: (a) why decode attention stays near
# 1 FLOP/byte for MHA at every context length while prefill grows with $N$; (b) what GQA changes
# and why; (c) why *unfused* prefill attention never becomes compute-bound on an H100 in fp16,
# what a fused kernel changes, and what still caps it; (d) why a whole prefill is compute-bound
# nonetheless, with the time to first token of a 4096-token prompt for Llama-3-8B on an H100
# SXM and what it waits for. Use numbers from the tables and printouts above.

# %% [markdown] answer id=answer_phases points=4
# (a) In decode one query meets $N$ cached keys and values. Per query head and per cached token
# it does $4d + 5$ FLOPs (a multiply-add with each of the $d$ numbers of the key and of the
# value, plus 5 for the softmax) and must read that token's key and value, $2d$ numbers of
# 2 bytes. Work and bytes both grow like $N$, so the ratio is fixed:
# $(4d+5)/(4d) = 517/512 \approx 1.01$ FLOP/B for $d = 128$ (0.99 unfused, whose extra $S$/$P$
# traffic is tiny in decode), at $N = 512$ as at $N = 32768$. Each byte of the cache is used for
# one multiply-add and thrown away. In prefill every key is used by all $N$ queries: the work
# grows like $N^2 d$ while $Q$, $K$, $V$, $O$ grow like $N d$, so the ideal fused intensity grows
# like $N/2$ (fp16).
#
# (b) With GQA, $H/H_{kv}$ query heads share one K/V head. The bytes of K and V are read once
# for the group, the FLOPs are done once per query head, so decode intensity is multiplied by
# the group size: about 4.0 FLOP/B for Llama-3-8B (group 4) instead of 1.0 for Llama-2-7B. Still
# far below the ridge points (295.2 on an H100 SXM, 153.0 on an A100 80GB SXM), but the KV
# traffic per token is 4x smaller, so decode attention is 4x faster at the same $N$.
#
# (c) Unfused attention writes and re-reads the $N \times N$ matrices $S$ and $P$: $4N^2$
# elements per head, which grow like $N^2$ exactly as the work does. The intensity tends to
# $(4d+5)/(4 \cdot 2) \approx 64.6$ FLOP/B for $d = 128$ in fp16, below the H100's ridge and
# the A100's, so unfused prefill attention stays memory-bound at any length. A fused kernel
# keeps $S$ and $P$ on chip. With unlimited on-chip memory its bytes would grow only like $N$
# and it would cross the H100 ridge at $N \approx 585$ (A100: about 300). But on-chip memory
# holds only a tile of queries, so $K$ and $V$ are read again for every tile: with 128-row
# tiles the intensity levels off near 129 FLOP/B (FlashAttention's $\Theta(N^2d^2/M)$ memory
# accesses), below the H100's ridge. How much a cache shared across the chip saves depends on
# the kernel.
#
# (d) The weight GEMMs are the answer: each weight, once read, serves all $N$ prompt tokens, so
# their intensity is about $N$ FLOP/B in bf16, past the H100's ridge from a few hundred tokens
# (326 for the $4096 \times 14336$ up-projection, 315 for the whole Llama-3-8B prefill). For a
# 4096-token prompt the estimate is 66.8 ms of arithmetic against 4.7 ms of memory traffic:
# the time to first token (66.8 ms by this estimate) waits for the tensor cores, 14x longer than
# the memory traffic takes. At 16 tokens it is the opposite: 4.5 ms, the time to read the
# weights, for 0.23 ms of arithmetic.

# %% [markdown]
# ## Part 5 — Whole-model decode
#
# Attention is only part of a decode step. To generate one token, the model runs the same
# weight GEMMs as in prefill, now with one token per sequence: it must **read its weights**
# once per step. Which weights exactly?
#
# * every weight matrix of every layer, and the final norm;
# * the **LM head** ($V \times d_\text{model}$ for a vocabulary of $V$ tokens), in full: every
#   logit of the next token needs its row;
# * of the **embedding table**, only the rows of the tokens being fed in, one per sequence.
#   Llama's LM head is a separate matrix ("untied" embeddings), so the rest of the table is
#   never touched. (With tied embeddings the table *is* the LM head and is read in full.)
#
# With a batch of $B$ sequences decoded together, one step reads those weights once for the
# whole batch, and each sequence reads **its own KV cache** (and its own embedding row). Its
# bytes are
#
# $$\text{bytes per step} = W + B \cdot C,$$
#
# with $W$ the bytes of the weights a step reads and $C$ the bytes one sequence reads on its
# own: its KV cache (all layers, at its current length) and its embedding row. Reading them at
# the memory bandwidth takes at least $(W + B\,C)/\text{bandwidth}$ seconds, and the step
# produces $B$ tokens. Everything else a step does (the arithmetic, writing the new token's
# keys and values, moving activations) can only make it slower, never faster, so the tokens/s
# this gives is a true **upper bound**, a ceiling.
#
# ### Task 5: the tokens/s ceiling
#
# Write `decode_tokens_per_s_bound(weight_bytes, kv_cache_bytes, mem_bandwidth, batch_size=1)`
# as documented below. Raise `ValueError` if `mem_bandwidth` is not positive, `batch_size` is
# smaller than 1, or a byte count is negative.

# %% solution id=decode_tokens_per_s_bound
def decode_tokens_per_s_bound(weight_bytes: float, kv_cache_bytes: float, mem_bandwidth: float,
                              batch_size: int = 1) -> float:
    """Upper bound on decode throughput from memory bandwidth, in tokens/s for the WHOLE batch.

    One decode step generates one token for each of the batch_size sequences. It reads the
    weights once (weight_bytes: the weights a step reads, shared by the batch) and the KV cache
    of every sequence (kv_cache_bytes: what ONE sequence reads on its own, its cache at its
    current length, all layers), so it moves weight_bytes + batch_size * kv_cache_bytes bytes
    at mem_bandwidth bytes/s.
    Returns batch_size / (minimum seconds per step): aggregate tokens/s (divide by
    batch_size for the tokens/s of one sequence). Compute time is ignored: this is a ceiling.
    """
    ### BEGIN SOLUTION
    if mem_bandwidth <= 0:
        raise ValueError(f"mem_bandwidth must be > 0 bytes/s, got {mem_bandwidth}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if weight_bytes < 0 or kv_cache_bytes < 0:
        raise ValueError(f"byte counts must be >= 0, got {weight_bytes} and {kv_cache_bytes}")
    bytes_per_step = weight_bytes + batch_size * kv_cache_bytes
    seconds_per_step = bytes_per_step / mem_bandwidth
    return float(batch_size / seconds_per_step)
    ### END SOLUTION


# %% tests id=test_decode_tokens_per_s_bound points=3
from course_lib.grading import check_real, describe_call

PER_SEQ = ("tokens/s of ONE sequence: the bound asked for is the aggregate over the batch "
           "(batch_size tokens per step)")
W_PER_SEQ = "weights read once per sequence: a decode step reads the weights ONCE, shared by the whole batch"
KV_ONCE = ("KV cache read once for the whole batch: kv_cache_bytes is ONE sequence's cache, and each "
           "sequence reads its own (batch_size x kv_cache_bytes per step)")
NO_KV = "KV cache bytes left out: each step reads the weights AND every sequence's KV cache"
INVERSE = "seconds per token (the inverse): the bound is tokens per second"
GBPS_MUL = "bandwidth in GB/s vs bytes/s: mem_bandwidth is already in bytes/s (do not multiply it by 1e9)"
GBPS_DIV = "bandwidth in GB/s vs bytes/s: mem_bandwidth is already in bytes/s (do not divide it by 1e9)"

# 14 GB of weights, a 1 GB cache per sequence, 2 TB/s: batch 1, then batch 16.
check_real(decode_tokens_per_s_bound(14e9, 1e9, 2e12), 133.33333333333334,
           call="decode_tokens_per_s_bound(14e9, 1e9, 2e12)",
           mistakes={NO_KV: 142.85714285714286, INVERSE: 0.0075, GBPS_MUL: 133333333333.33334,
                     GBPS_DIV: 1.3333333333333334e-07}, generic=False)
check_real(decode_tokens_per_s_bound(14e9, 1e9, 2e12, batch_size=16), 1066.6666666666667,
           call="decode_tokens_per_s_bound(14e9, 1e9, 2e12, batch_size=16)",
           mistakes={PER_SEQ: 66.66666666666667, W_PER_SEQ: 133.33333333333334, KV_ONCE: 2133.3333333333335,
                     NO_KV: 2285.714285714286, INVERSE: 0.0009375, GBPS_MUL: 1066666666666.6667,
                     GBPS_DIV: 1.0666666666666667e-06}, generic=False)
print("Visible tests passed: 133.3 tokens/s at batch 1 and 1066.7 tokens/s (66.7 per sequence) "
      "at batch 16.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases
from course_lib.specs import hardware as _hw
from course_lib.specs import model as _model


def _decode_case(w, kv, bw, batch, note=""):
    """batch * bw / (w + batch * kv) tokens/s, and what each slip gives instead."""
    right = batch * bw / (w + batch * kv)
    return Case((w, kv, bw, batch), right, {
        PER_SEQ: bw / (w + batch * kv), W_PER_SEQ: batch * bw / (batch * w + batch * kv),
        KV_ONCE: batch * bw / (w + kv), NO_KV: batch * bw / w if w else None, INVERSE: 1 / right,
        GBPS_MUL: right * 1e9, GBPS_DIV: right / 1e9}, note=note)


_cases = []
for _mname, _dname, _ctx in [("Mistral-7B", "L4", 8192), ("Qwen2.5-7B", "MI300X", 32768),
                             ("Llama-2-13B", "A100 40GB SXM", 4096), ("Gemma-2-9B", "H200 SXM", 8192)]:
    _m = _model(_mname)
    _w = _m.n_params * 2                                               # bf16 weights
    _kv = 2 * _m.n_layers * _m.n_kv_heads * _m.head_dim * _ctx * 2     # one sequence's bf16 cache
    _cases += [_decode_case(_w, _kv, _hw(_dname).mem_bandwidth, batch, note=f"{_mname} on {_dname}, context {_ctx}")
               .by_keyword("batch_size") for batch in (1, 3, 8, 64, 256)]
# no KV cache yet (first token): only the weights; then integers in, a positional batch size
_cases += [_decode_case(2e9, 0, 1e12, 4).by_keyword("batch_size"), _decode_case(1_000_000, 250_000, 100_000_000, 2)]
check_cases(decode_tokens_per_s_bound, _cases)
### END HIDDEN TESTS

# %% tests id=test_decode_tokens_per_s_bound_validation points=1
from course_lib.grading import expect_error

expect_error(decode_tokens_per_s_bound, (14e9, 1e9, 2e12), {"batch_size": 0}, ValueError,
             "batch_size must be >= 1")
print("Visible test passed: decode_tokens_per_s_bound rejects a batch of 0.")
### BEGIN HIDDEN TESTS
for _args, _kwargs, _why in [((14e9, 1e9, 0.0), None, "mem_bandwidth must be > 0"),
                             ((14e9, 1e9, -2e12), None, "mem_bandwidth must be > 0"),
                             ((-1.0, 1e9, 2e12), None, "weight_bytes must be >= 0"),
                             ((14e9, -1.0, 2e12), None, "kv_cache_bytes must be >= 0"),
                             ((14e9, 1e9, 2e12), {"batch_size": -3}, "batch_size must be >= 1")]:
    expect_error(decode_tokens_per_s_bound, _args, _kwargs, ValueError, _why)
### END HIDDEN TESTS

# %% [markdown]
# ### Llama-2-7B and Llama-3-8B on an H100 SXM
#
# Weights in fp16/bf16 (2 bytes per parameter), a context of 4096 tokens per sequence. The KV
# cache of one sequence is $2 \cdot L \cdot H_{kv} \cdot d \cdot T \cdot 2$ bytes (Lab 00).
# The bytes a step reads leave out the embedding table but one row per sequence (both models
# have untied embeddings: `llama_params` in Part 4 reproduces both parameter counts of the
# table with a separate LM head). The memory must still **hold** every weight, the table
# included: the last columns use the H100's capacity from the table to find how many
# sequences fit next to the weights, and the ceiling at that batch.

# %%
CONTEXT = 4096
BYTES = 2  # fp16 / bf16


def decode_sizes(m, context=CONTEXT, bytes_per_elem=BYTES):
    """Bytes of a decode step of Llama-style model m (untied embeddings), as
    (weights read once per step, bytes each sequence reads on its own, weights held in memory)."""
    assert llama_params(m) == m.n_params, f"{m.name}: not a Llama-style model with an untied LM head"
    embedding_table = m.vocab_size * m.d_model
    weights_read = (m.n_params - embedding_table) * bytes_per_elem   # layers, final norm, LM head
    kv_cache = 2 * m.n_layers * m.n_kv_heads * m.head_dim * context * bytes_per_elem
    embedding_row = m.d_model * bytes_per_elem                        # the sequence's new token
    weights_held = m.n_params * bytes_per_elem
    return weights_read, kv_cache + embedding_row, weights_held


CAPACITY = f"{H100.mem_bytes / GiB:.1f} GiB"
rows = []
for _name in ("Llama-2-7B", "Llama-3-8B"):
    _m = model(_name)
    _w, _c, _held = decode_sizes(_m)
    _tps = decode_tokens_per_s_bound(_w, _c, H100.mem_bandwidth)
    _b_max = int((H100.mem_bytes - _held) // _c)
    rows.append({"model": _name, "weights held (GB)": _held / GB, "weights read / step (GB)": _w / GB,
                 "per sequence: KV cache + row (GB)": _c / GB, "bytes / token at B=1 (GB)": (_w + _c) / GB,
                 "tokens/s ceiling, B=1": _tps, "ms / token, B=1": 1e3 / _tps,
                 f"max batch in {CAPACITY}": _b_max,
                 "tokens/s ceiling at max batch": decode_tokens_per_s_bound(_w, _c, H100.mem_bandwidth, _b_max),
                 "limit B -> inf (bandwidth / C)": H100.mem_bandwidth / _c})
display(pd.DataFrame(rows).set_index("model"))

# %% [markdown]
# **Batching.** A decode step does 2 FLOPs per weight it multiplies, per sequence (one
# multiply-add per weight and token), plus the attention of every sequence. With $B$ sequences:
#
# * the **weight reads** do $2B$ FLOPs per weight on 2 bytes per weight: intensity $= B$
#   FLOP/B in fp16, the GEMM intensity of Part 4 with $N = B$. Batching shares each weight byte
#   among $B$ tokens, so the intensity grows with $B$ and crosses the ridge at $B$ = the ridge
#   point (printed below).
# * the **KV cache reads** do not share: every sequence reads its own cache for its own query.
#   Their intensity is that of decode attention, about 1 (MHA) or 4 (GQA 4) FLOP/B, **whatever
#   $B$**.
#
# So the whole step's intensity rises with $B$ only until the KV traffic dominates:

# %%
def decode_flops_per_token(m, context=CONTEXT):
    """FLOPs of one sequence's token in a decode step: 2 per weight multiplied (all but the
    embedding table), plus attention over the context in every layer."""
    gemm_weights = m.n_params - m.vocab_size * m.d_model
    return 2 * gemm_weights + m.n_layers * attention_flops(1, context, m.head_dim, m.n_heads)


BATCHES = [2**i for i in range(0, 11)]
series = {}
for _name in ("Llama-2-7B", "Llama-3-8B"):
    _m = model(_name)
    _w, _c, _ = decode_sizes(_m)
    _gemm_flops = 2 * (_m.n_params - _m.vocab_size * _m.d_model)       # per token
    _attn_flops = _m.n_layers * attention_flops(1, CONTEXT, _m.head_dim, _m.n_heads)  # per sequence, all layers
    if not series:  # the same for every model in fp16: B FLOP/B
        series["weight reads only (both models)"] = [arithmetic_intensity(_gemm_flops * B, _w) for B in BATCHES]
    series[f"{_name}: KV reads only"] = [arithmetic_intensity(B * _attn_flops, B * _c) for B in BATCHES]
    series[f"{_name}: whole step"] = [arithmetic_intensity(B * decode_flops_per_token(_m), _w + B * _c)
                                      for B in BATCHES]
ax = plot_intensity_vs_length(BATCHES, series, {"H100 SXM": RIDGES["H100 SXM"]}, xlabel="Batch size B (sequences)",
                              title=f"Decode step intensity vs batch size (context {CONTEXT}, fp16/bf16)")
plt.show()

B_STAR = ridge_point(H100.peak_flops_fp16, H100.mem_bandwidth) * BYTES / 2
print(f"Weight reads alone become compute-bound on an H100 SXM at B = ridge x bytes/param / 2 = {B_STAR:.0f}.")
for _name in ("Llama-2-7B", "Llama-3-8B"):
    _m = model(_name)
    _w, _c, _ = decode_sizes(_m)
    print(f"{_name}: as B grows, the whole step tends to (FLOPs of one token) / (bytes of one sequence) "
          f"= {arithmetic_intensity(decode_flops_per_token(_m), _c):.1f} FLOP/B")

# %% [markdown]
# And the tokens/s ceiling against the batch size, with the compute ceiling
# (peak FLOP/s divided by the FLOPs per token) and the largest batch whose caches fit in the
# H100's memory next to the weights:

# %%
fig, ax = new_axes((8.0, 5.0))
for _i, _name in enumerate(("Llama-2-7B", "Llama-3-8B")):
    _m = model(_name)
    _w, _c, _held = decode_sizes(_m)
    _bs = np.unique(np.logspace(0, 11, 200, base=2).astype(int))
    ax.plot(_bs, [decode_tokens_per_s_bound(_w, _c, H100.mem_bandwidth, int(b)) for b in _bs],
            color=f"C{_i}", lw=2, label=f"{_name}: memory ceiling")
    ax.axhline(H100.peak_flops_fp16 / decode_flops_per_token(_m), color=f"C{_i}", ls=":",
               label=f"{_name}: compute ceiling ({H100.peak_flops_fp16 / 1e12:.0f} TFLOP/s)")
    ax.axvline((H100.mem_bytes - _held) // _c, color=f"C{_i}", ls="--", lw=1,
               label=f"{_name}: largest batch that fits in {CAPACITY}")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("Batch size B (sequences)")
ax.set_ylabel("Decode throughput ceiling (tokens/s, whole batch)")
ax.set_title(f"H100 SXM decode ceilings, context {CONTEXT}, fp16/bf16")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Written answer (3 points).** Using the numbers above: (a) the tokens/s ceiling of each model
# at batch 1, what dominates the bytes of a token, and why the ceiling is an upper bound; (b) why
# batching raises the intensity of the weight reads but not of the KV cache reads, and the batch
# at which the weight reads become compute-bound on an H100; (c) why Llama-3-8B gains much more
# from batching than Llama-2-7B, and what stops the batch from growing in practice.

# %% [markdown] answer id=answer_batching points=3
# (a) At batch 1 and 4096 tokens of context, a Llama-2-7B token reads 13.21 GB of weights (all
# but the embedding table, of which it reads one row) plus a 2.15 GB cache: 15.36 GB, so at
# 3.35 TB/s at most about 218 tokens/s (4.6 ms per token). Llama-3-8B reads 15.01 GB of weights
# and only 0.54 GB of cache (GQA): 15.55 GB, about 215 tokens/s. Its 128,256-token vocabulary
# makes its embedding table 1.05 GB, which a decode step does not read; its LM head, the same
# size, it reads in full. At batch 1 the weights dominate both. The ceiling counts only bytes a
# step cannot avoid reading, at the datasheet bandwidth, and ignores the arithmetic and every
# other transfer: a real step can only be slower.
#
# (b) A weight byte read in a step is used by every sequence of the batch (one multiply-add
# each), so the weight reads do $2B$ FLOPs per 2-byte weight: intensity $B$ FLOP/B. A KV cache
# byte belongs to one sequence and is used only by that sequence's query: the KV reads do $B$
# times the work on $B$ times the bytes, so their intensity stays at the decode-attention value
# (about 1 for Llama-2-7B, 4 for Llama-3-8B). The weight reads cross the H100's ridge at
# $B \approx 989/3.35 \approx 295$.
#
# (c) As $B$ grows, the bytes of a step approach $B \cdot C$ and the ceiling approaches
# bandwidth / $C$: about 1,560 tokens/s for Llama-2-7B but 6,240 for Llama-3-8B, whose cache is
# 4x smaller. The whole-step intensity flattens at (FLOPs of one token) / (bytes of one
# sequence): about 7.2 FLOP/B for Llama-2-7B and 32.0 for Llama-3-8B, far below the ridge of 295:
# at this context length decode stays memory-bound however large the batch. In practice memory
# capacity stops the batch first: next to the weights, the H100 holds only a few tens of
# Llama-2-7B caches of 4096 tokens and about four times as many for Llama-3-8B (the table gives
# the exact numbers for the capacity it records), far below the 295 the weights would need to
# become compute-bound.

# %% [markdown]
# ## Part 6 — Measured points on a measured roofline
#
# Time to check the model against a real machine. First, paste **your Lab 01 `attention`**
# into the cell below (the whole function; keep its name and signature). It is not graded
# again here; this lab measures it.
#
# `attention(q, k, v, causal=True)`: `q` is `(B, H, T_q, D)`, `k` and `v` are
# `(B, H_kv, T_k, D)`, and query $i$ sits at absolute position $T_k - T_q + i$.

# %% solution id=attention_from_lab01
def attention(q, k, v, causal=True):
    """Your Lab 01 attention: scaled dot-product attention, causal mask offset by T_k - T_q, GQA."""
    ### BEGIN SOLUTION
    B, H, T_q, D = q.shape
    H_kv, T_k = k.shape[1], k.shape[2]
    if H % H_kv != 0:
        raise ValueError(f"H={H} query heads is not a multiple of H_kv={H_kv} KV heads")
    if T_q > T_k:
        raise ValueError(f"T_q={T_q} queries but only T_k={T_k} keys")
    group = H // H_kv
    if group > 1:
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
    if causal:
        query_pos = torch.arange(T_q, device=q.device)[:, None] + (T_k - T_q)
        key_pos = torch.arange(T_k, device=q.device)[None, :]
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v
    ### END SOLUTION


# %% [markdown]
# ### This machine's roofline
#
# `course_lib.roofline` measures the two roofs of this computer, with the same method you would
# use on any machine:
#
# * **bandwidth**: copy an array of 256 MB (larger than the caches of most CPUs) into another
#   and count the bytes **read and written**, $2 \times 256$ MB per copy;
# * **peak**: multiply two $2048 \times 2048$ fp32 matrices and count $2 \cdot 2048^3$ FLOPs.
#
# Each is repeated and the **median** is used. A copy under-reports the hardware: on x86 an
# ordinary store first reads the destination line into cache ("write-allocate"), so the memory
# really moves up to 3 bytes per byte copied while we count 2, and our bandwidth can be up to a
# third low. That makes our roof a conservative one; a pure streaming read (printed too,
# except while grading) avoids that extra traffic and often measures higher.

# %%
REPEATS = roofline.GRADING_REPEATS if GRADING else 5
cpu = roofline.measure_machine("cpu", "fp32", repeats=REPEATS)
print(cpu)
if not GRADING:  # for comparison only; skipped while grading to save time
    print(" ", roofline.measure_read_bandwidth(repeats=REPEATS))

# %% [markdown]
# ### Timing your attention
#
# Prefill and decode at several $N$, one sequence of $H = 8$ heads of dimension $D = 64$, fp32
# (4 bytes). Your attention materialises $S$ and $P$, so the bytes are counted **unfused**,
# with **your** `attention_flops` and `attention_bytes`.
#
# The decode lengths start at $N = 32768$: K and V then take $2 \cdot 8 \cdot 32768 \cdot 64
# \cdot 4$ B $= 134$ MB, more than the last-level cache of most CPUs. With less, the timing
# loop would re-read K and V from the CPU's cache on every repeat, and the point could land *above* a
# roofline drawn with the main-memory bandwidth. (That is a real effect, not an error: caches
# are a higher, narrower roof.)
#
# While the lab is graded (and when you press Validate) this runs small: prefill at $N = 256$
# and $512$, decode at $N = 32768$ only, two repeats, after a two-repeat probe. The grader
# measures its machine's probe once per grading run, before your notebook starts, and every
# notebook it grades prints that same measurement (with a line saying so). Nothing here is
# graded; your written answers are read against your own printout.

# %%
def measure_attention_points(device, dtype, bytes_per_elem, n_heads, head_dim, prefill_lengths,
                             decode_lengths, repeats):
    """Time attention() for prefill (T_q = T_k = N) and decode (T_q = 1, T_k = N); one row per point."""
    timed = roofline.time_attention(attention, device=device, dtype=dtype, n_heads=n_heads, head_dim=head_dim,
                                    prefill_lengths=prefill_lengths, decode_lengths=decode_lengths,
                                    repeats=repeats)
    return pd.DataFrame([point_row(t.phase, t.n, t.t_q, t.t_k, t.timing.median, t.timing.spread, n_heads,
                                   head_dim, bytes_per_elem) for t in timed])


def point_row(phase, n, t_q, t_k, seconds, spread, n_heads, head_dim, bytes_per_elem):
    """One measured point, counted with your attention_flops and attention_bytes."""
    flops = attention_flops(t_q, t_k, head_dim, n_heads)
    nbytes = attention_bytes(t_q, t_k, head_dim, bytes_per_elem, n_heads)
    return {"phase": phase, "N": n, "time": format_seconds(seconds), "spread": f"{spread:.0%}",
            "FLOPs": flops, "bytes": nbytes, "intensity (FLOP/B)": arithmetic_intensity(flops, nbytes),
            "GFLOP/s": flops / seconds / 1e9, "GB/s": nbytes / seconds / 1e9}


def compare_with_roof(points, peak, bandwidth):
    """Add the roofline bound and the fraction of it each point reaches."""
    points = points.copy()
    points["roof GFLOP/s"] = [attainable_flops(i, peak, bandwidth) / 1e9 for i in points["intensity (FLOP/B)"]]
    points["fraction of roof"] = points["GFLOP/s"] / points["roof GFLOP/s"]
    return points


def report(points, where):
    """Print how close the best decode point gets, and check every point is under the roof."""
    decode = points[points["phase"] == "decode"]
    best = decode.loc[decode["fraction of roof"].idxmax()]
    print(f"{where}: best decode point N={best['N']:,} reaches {best['GB/s']:.1f} GB/s, "
          f"{best['fraction of roof']:.0%} of the roofline ({best['GFLOP/s']:.2f} of "
          f"{best['roof GFLOP/s']:.2f} GFLOP/s).")
    over = points[points["fraction of roof"] > 1.0]
    if len(over) == 0:
        print(f"{where}: all {len(points)} measured points lie under the measured roofline.")
    else:
        print(f"{where}: {len(over)} point(s) ABOVE the roofline: N = {list(over['N'])}. Either a byte "
              "count is too small, the data fit in a cache, or the probe ran while the machine was busy: "
              "re-run this cell and the probe cell.")


PREFILL_N = [256, 512] if GRADING else [256, 512, 1024, 2048]
DECODE_N = [32768] if GRADING else [32768, 65536, 131072, 262144]
cpu_points = measure_attention_points("cpu", torch.float32, 4, 8, 64, PREFILL_N, DECODE_N, REPEATS)
cpu_points = compare_with_roof(cpu_points, cpu.peak_flops, cpu.mem_bandwidth)
display(cpu_points)
report(cpu_points, "CPU")

# %%
def roofline_points(points):
    """(label, intensity, FLOP/s, phase) tuples for plot_roofline."""
    return [(f"N={n:,}", intensity, gflops * 1e9, phase)
            for phase, n, intensity, gflops in zip(points["phase"], points["N"], points["intensity (FLOP/B)"],
                                                   points["GFLOP/s"], strict=True)]


_pts = roofline_points(cpu_points)
ax = plot_roofline([cpu], _pts, title="Your attention on this CPU (fp32), on the measured CPU roofline")
plt.show()

# %% [markdown]
# ### On a GPU
#
# If this notebook runs on a machine with a CUDA GPU, the cell below repeats the measurement
# there, in fp16 with 32 heads of dimension 128 (a Llama-like layer), and draws the GPU's
# measured roofline next to its datasheet roofline. On a CPU-only machine it does nothing; the
# cell after it shows the same measurement made by the course on a GPU.

# %%
if torch.cuda.is_available():
    gpu = roofline.measure_machine("cuda", "fp16", repeats=REPEATS)
    print(gpu)
    gpu_points = measure_attention_points("cuda", torch.float16, 2, 32, 128, [1024, 2048, 4096, 8192],
                                          [8192, 32768, 131072], REPEATS)
    gpu_points = compare_with_roof(gpu_points, gpu.peak_flops, gpu.mem_bandwidth)
    display(gpu_points)
    report(gpu_points, "GPU")
    _spec = roofline.spec_for_gpu(torch.cuda.get_device_name())
    _devices = [gpu] + ([_spec] if _spec is not None else [])
    _pts = roofline_points(gpu_points)
    ax = plot_roofline(_devices, _pts, title="Your attention on this GPU (fp16)")
    plt.show()
else:
    print("No CUDA GPU on this machine: the next cell shows the course's own GPU measurement.")

# %% [markdown]
# ### Measured by the course on a datacenter GPU
#
# Few students have an H100 or H200 at hand, so the course ran this measurement once on an
# NVIDIA H200 (`bench/gpu_roofline.py`; the file `course_lib/data/gpu_roofline.json` records the
# GPU, the driver, CUDA and PyTorch versions). It holds **times and shapes only**: the cell
# below places each point with **your** `attention_flops` and `attention_bytes`, on the GPU's
# *measured* roofs (the same copy and matmul probes as above; fp32 with TF32 off, and fp16).
# The attention timed is the course solution's, unfused like yours.
#
# * First plot: the notebook's CPU setting (fp32, the same heads and lengths as your CPU points),
#   your CPU points and roof next to the GPU's. Same code, same intensities: only the roofs move.
# * Second plot: a Llama-like layer in fp16, on the GPU's measured roof and its datasheet roof.
#
# While the lab is graded the tables are printed but the two plots are not drawn: they are the
# same for every student. (Your own CPU measurement above also runs smaller then: two
# repeats, two prefill lengths and one decode length.)

# %%
from course_lib import measured


def stored_points(setting):
    """The stored GPU timings of one setting, placed with your attention_flops and attention_bytes."""
    return pd.DataFrame([point_row(p["phase"], p["N"], p["T_q"], p["T_k"], p["median_s"], p["spread"],
                                   setting["n_heads"], setting["head_dim"], setting["bytes_per_elem"])
                         for p in setting["points"]])


GPU_DATA = measured.gpu_roofline()
print("Measured by the course on", measured.device_label(GPU_DATA["meta"]))
for _row in GPU_DATA["probes"]:
    _unit = "TB/s" if _row["unit"] == "B/s" else "TFLOP/s"
    print(f"  {_row['what']} ({_row['dtype']}): {_row['rate'] / 1e12:.3g} {_unit}, median of {_row['repeats']}")
GPU_SETTINGS = {setting["dtype"]: setting for setting in GPU_DATA["settings"]}
gpu_tables = {}
for _dtype, _setting in GPU_SETTINGS.items():
    _label, _peak, _bandwidth = measured.roof(GPU_DATA, _dtype)
    gpu_tables[_dtype] = compare_with_roof(stored_points(_setting), _peak, _bandwidth)
    print(_setting["label"])
    display(gpu_tables[_dtype])
    report(gpu_tables[_dtype], f"{GPU_DATA['meta']['device_name']}, {_dtype}")

# %%
# The same for every student: not drawn while the lab is graded (the tables above are printed).
_name = GPU_DATA["meta"]["device_name"]
_pts = [(f"N={n:,}", i, g * 1e9, f"{phase}, this CPU") for phase, n, i, g in
        zip(cpu_points["phase"], cpu_points["N"], cpu_points["intensity (FLOP/B)"], cpu_points["GFLOP/s"], strict=True)]
_t = gpu_tables["float32"]
_pts += [(f"N={n:,}", i, g * 1e9, f"{phase}, {_name}") for phase, n, i, g in
         zip(_t["phase"], _t["N"], _t["intensity (FLOP/B)"], _t["GFLOP/s"], strict=True)]
if not GRADING:
    ax = plot_roofline([cpu, measured.roof(GPU_DATA, "float32")], _pts, annotate_points=False,
                       title=f"The same fp32 attention on this CPU and on an {_name} (measured roofs)")
    plt.show()
    _spec = roofline.spec_for_gpu(_name)
    ax = plot_roofline([measured.roof(GPU_DATA, "float16")] + ([_spec] if _spec is not None else []),
                       roofline_points(gpu_tables["float16"]),
                       title=f"A Llama-like layer (fp16) on an {_name}: measured and datasheet roofs")
    plt.show()

# %% [markdown]
# **Written answer (3 points).** Look at your measured points. (a) Which side of the CPU's
# ridge point does each phase fall on, and is that what Part 3 predicts? (b) How close to the
# roofline does your best decode point get, and what keeps it from 100%? (c) Why are the
# prefill points further below their roof? (d) Why must the decode K/V be larger than the CPU's
# caches for this comparison to be fair?

# %% [markdown] answer id=answer_measured points=3
# *For the grader: the measured figures depend on the machine and on how busy it was; grade
# them against the student's own printout, not against fixed numbers. The intensities do not
# depend on the machine.*
#
# (a) Decode sits at about 0.49 FLOP/B (fp32 with unfused $S$/$P$: $(4d+5)/(4(2d+4))$ for
# $d = 64$), far left of any CPU's ridge, which is a few to a few tens of FLOP/B (the printed
# matmul rate divided by the printed copy bandwidth): memory-bound, as Part 3 predicts. Prefill
# sits at 13.1 to 15.8 FLOP/B (13.1 and 14.5 for the two lengths measured while grading),
# close to a CPU's ridge: compute-bound (its roof is the matmul peak) if the printed ridge is
# below that, memory-bound if above. Either is right when it matches the printout. Unlike on a
# GPU, whose ridge is in the hundreds, unfused prefill can be compute-bound on a CPU: fp32
# costs 4 bytes per element but the CPU's peak is low.
#
# (b) The fraction is the one `report` printed. What keeps it below 100%: work the model does
# not see (the separate steps of an unfused attention, scale, mask and softmax, each read and
# write the scores again), PyTorch's per-operation overhead, and a read-mostly kernel on a few
# cores that does not keep enough memory requests in flight. The copy probe itself
# under-reports the bandwidth (write-allocate), which pushes the fraction up, not down.
#
# (c) Prefill runs further below its roof because its matmuls have an inner dimension of only
# 64 ($QK^\top$) and produce large $N \times N$ outputs that do not stay in cache; the softmax's
# 5 FLOPs per element run at vector speed, not matmul speed; and the extra passes over $S$ add
# memory traffic, so in practice the kernel is partly memory-bound even where the count says
# compute-bound.
#
# (d) The roofline's slanted roof is the *main-memory* bandwidth. If K and V fit in the
# last-level cache (tens of MiB on most CPUs), every timed repeat reads them from cache, which
# is several times faster than DRAM, and the point can rise above the DRAM roof. Starting at
# 134 MB of K/V forces every repeat to stream from main memory, the situation of a real KV
# cache of many sequences.
