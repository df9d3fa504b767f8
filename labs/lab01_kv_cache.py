# Source of source/lab01_kv_cache/lab01_kv_cache.ipynb (built by `python -m tools.nbbuild`).
# ruff: noqa: E402, B018, F811, E731, B023

# %% [markdown]
# # Lab 01 — A KV cache for MiniGPT
#
# In Lab 00 you computed how much memory a KV cache takes. Now you build one. You write
# attention from its definition, a cache that stores the keys and values of every token
# already seen, a forward pass of a small GPT that uses it, and a generation loop. Then you
# prove that generating with the cache gives exactly the same tokens as generating without it,
# and you measure what the cache buys.
#
# The model is **MiniGPT**, the course's own tiny GPT (`course_lib.minigpt`): 4 layers,
# 4 query heads that share 2 key/value heads (grouped-query attention, GQA), head dimension 32,
# $d_\text{model} = 128$, a byte-level vocabulary of 256 tokens, fp32. It is small enough that a
# 10,000-token prompt runs on a laptop CPU (the uncached attention of such a prompt needs about
# 3 GB of memory for its $S \times S$ score matrices; the cached decode steps need almost none). `course_lib` gives you its parts (embedding, norms,
# projections, rotary positions, MLP, output head). Attention, the cache and the loop are yours.
#
# | Part | Graded | Points |
# |---|---|---|
# | 1 | `attention(q, k, v, causal=True)`: the computation 9, refusing bad shapes 1 | 10 |
# | 2 | `KVCache`: storing and returning 6, refusing overflow and wrong shapes 2 | 8 |
# | 3 | `forward(model, idx, cache=None)` | 8 |
# | 4 | `generate(model, prompt_ids, max_new_tokens, use_cache=True)` | 6 |
# | 5 | written answers on the benchmark (graded by hand) | 7 |
# | | **total** | **39** |
#
# Checking the inputs (raising `ValueError`) is graded in its own small test cell, so a correct
# computation keeps its points even if a check is missing. Each task has a visible test you can run now. More tests, on shapes and inputs you have not
# seen, run when the lab is graded; they compare your outputs with reference outputs computed
# by the course's own solution. Make your code correct in general, not just on the examples.
#
# **Conventions.** Tensors are written with their shapes: `q: (B, H, T_q, D)` means batch,
# heads, tokens, head dimension. Memory is in bytes; 1 MiB $= 2^{20}$ bytes, 1 MB $= 10^6$
# bytes. Times are wall-clock seconds on *your* machine.

# %% tags=setup
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.grading import AnswerError, check_tensor, check_tokens, rel_error
from course_lib.minigpt import count_params, decode, encode, load_minigpt
from course_lib.specs import MINIGPT
from course_lib.timing import format_seconds, is_autograding, measure, progress
from course_lib.units import format_bytes

# Exact fp32 matrix products everywhere (on NVIDIA GPUs, TF32 would round inputs to 10 bits).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")

model = load_minigpt()
L, H, H_kv, D = model.n_layers, model.n_heads, model.n_kv_heads, model.head_dim
print(f"MiniGPT: {L} layers, {H} query heads, {H_kv} KV heads, head_dim {D}, "
      f"d_model {model.d_model}, vocab {model.vocab_size}, {count_params(model):,} parameters (fp32)")

# %% [markdown]
# ## Part 1 — Attention from the definition
#
# For one head, a query vector $q_i$ scores every key $k_j$ by a scaled dot product, the
# scores become weights by a softmax over the keys, and the output is the weighted sum of the
# values:
#
# $$ s_{ij} = \frac{q_i \cdot k_j}{\sqrt{D}}, \qquad
#    w_{ij} = \frac{e^{s_{ij}}}{\sum_{j'} e^{s_{ij'}}}, \qquad
#    o_i = \sum_j w_{ij}\, v_j . $$
#
# In matrix form, for all queries of a head at once: $O = \mathrm{softmax}(QK^\top/\sqrt{D})\,V$,
# with the softmax taken along each row (over the keys, the last axis). The $1/\sqrt{D}$ keeps
# the scores at a size where the softmax is not saturated: a dot product of two $D$-dimensional
# vectors with unit-variance entries has variance $D$.
#
# **Causal mask.** A language model may not look at the future: the token at position $p$
# sees keys at positions $0 \dots p$ only. Masked scores are set to $-\infty$ before the
# softmax, so their weight is exactly 0.
#
# **Where the queries sit.** Without a cache, queries and keys are the same $T$ tokens and the
# mask is the lower triangle of a $T \times T$ matrix. With a cache, a call brings $T_q$ new
# queries, but the keys are all $T_k$ tokens so far: the $T_k - T_q$ cached ones
# (`past_len`) and the $T_q$ new ones. Query $i$ of the call sits at absolute position
# $\text{past\_len} + i$ and sees keys $0 \dots \text{past\_len} + i$. In a decode step
# ($T_q = 1$) the single query is the *last* token and sees **every** key. The mask is the lower
# triangle shifted right by `past_len`:
#
# ```
# T_q = 2, T_k = 5 (past_len = 3)      keys  0 1 2 3 4
#   query 0 (absolute position 3)            x x x x .
#   query 1 (absolute position 4)            x x x x x
# ```
#
# Calls with $1 < T_q < T_k$ are not a corner case. **Chunked prefill** feeds a long prompt
# through the cache a few hundred tokens at a time (so one huge prompt does not stall the
# decode steps of other requests): every chunk after the first is $T_q$ queries over a past.
# **Speculative decoding** lets a small draft model guess several tokens, then the large model
# *verifies* all of them in one call: $T_q$ = the number of guesses, over the cache of
# everything accepted so far. The test below uses such a chunk.
#
# This mask is aligned to the **bottom-right** corner of the $T_q \times T_k$ score matrix:
# the last query sees every key. FlashAttention's `flash_attn_func(..., causal=True)` does
# exactly this when `seqlen_q != seqlen_k` (its documentation: "the causal mask is aligned to
# the bottom right corner of the attention matrix"). A mask built as `tril(ones(T_q, T_k))`,
# or PyTorch's `scaled_dot_product_attention(..., is_causal=True)`, is aligned to the
# **top-left** corner instead and gives query 0 only key 0: right when $T_q = T_k$, wrong as
# soon as there is a past. (PyTorch offers the bottom-right form as
# `torch.nn.attention.bias.causal_lower_right(T_q, T_k)`, passed as `attn_mask`.)
#
# **Grouped-query attention.** MiniGPT has $H = 4$ query heads but only $H_{kv} = 2$ key/value
# heads: each KV head serves a *group* of $g = H / H_{kv} = 2$ consecutive query heads. Query
# head $h$ uses KV head $\lfloor h / g \rfloor$: heads 0, 1 use KV head 0, heads 2, 3 use KV
# head 1. Two ways to compute it:
#
# * **Expand K and V** to $H$ heads: `k.repeat_interleave(g, dim=1)` gives the order
#   `[kv0, kv0, kv1, kv1]` (right; `k.repeat(1, g, 1, 1)` gives `[kv0, kv1, kv0, kv1]`, which
#   pairs query head 1 with the wrong KV head). Simple, but it *copies* the keys and values
#   $g$ times at every call: a decode step then reads and writes $g\times$ the cache bytes
#   that GQA was designed to save.
# * **Group the queries** instead (no copy of K or V): view `q` as
#   `(B, H_kv, g, T_q, D)`: the $g$ query heads of a group next to their KV head. Then merge
#   the group into the query axis, `(B, H_kv, g * T_q, D)`: for KV head $j$ that is one
#   matrix of $g \cdot T_q$ query rows, multiplied by that head's $K^\top$ read once. This is
#   what GQA kernels do. (Broadcasting a 5-D `q @ k[:, :, None].transpose(-2, -1)` looks
#   equivalent, but `torch.matmul` materialises broadcast batch dimensions, i.e. copies K
#   anyway: PyTorch issue #154128. The cell after the tests measures all three.)
#
# Either is accepted; the tests compare results, not the method.
#
# ### Task 1 (10 points: 9 for the computation, 1 for refusing bad shapes)
#
# Write `attention(q, k, v, causal=True)`:
#
# * `q`: `(B, H, T_q, D)`; `k`, `v`: `(B, H_kv, T_k, D)`, with `H % H_kv == 0` and
#   `T_q <= T_k`. Return `(B, H, T_q, D)` in the dtype of `q`.
# * With `causal=True`, query $i$ sees keys $0 \dots T_k - T_q + i$; with `causal=False`,
#   every key.
# * Raise `ValueError` (with a message naming the problem) if `H` is not a multiple of
#   `H_kv`, or if `T_q > T_k` (graded in its own test cell, 1 point).
# * Use plain tensor operations (`@`, `torch.softmax`, `masked_fill`, ...). Do not modify
#   the inputs.

# %% solution id=attention
def attention(q, k, v, causal=True):
    """Scaled dot-product attention with a causal mask offset by past_len = T_k - T_q, and GQA."""
    ### BEGIN SOLUTION
    B, H, T_q, D = q.shape
    H_kv, T_k = k.shape[1], k.shape[2]
    if H % H_kv != 0:
        raise ValueError(f"H={H} query heads is not a multiple of H_kv={H_kv} KV heads")
    if T_q > T_k:
        raise ValueError(f"T_q={T_q} queries but only T_k={T_k} keys: T_q must be <= T_k")
    group = H // H_kv  # query heads per KV head: query head h uses KV head h // group
    # GQA without copying K or V: the `group` query heads of KV head j become extra query rows
    # of that head. (B, H, T_q, D) = (B, H_kv, group, T_q, D) -> (B, H_kv, group * T_q, D).
    q_rows = q.reshape(B, H_kv, group * T_q, D)
    scores = (q_rows @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H_kv, group * T_q, T_k)
    scores = scores.view(B, H_kv, group, T_q, T_k)  # back to one (T_q, T_k) block per query head
    if causal:
        past_len = T_k - T_q
        query_pos = torch.arange(T_q, device=q.device)[:, None] + past_len  # absolute positions
        key_pos = torch.arange(T_k, device=q.device)[None, :]
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # over the keys
    out = weights.view(B, H_kv, group * T_q, T_k) @ v  # (B, H_kv, group * T_q, D)
    return out.view(B, H, T_q, D)
    ### END SOLUTION


# %% [markdown]
# The visible test checks properties you can reason about by hand. It passes the identity
# matrix as `v` (one unit vector per key), so that row $i$ of the output *is* the weight vector
# $w_{i0}, w_{i1}, \dots$ of query $i$. It checks that each query's weights sum to 1, that a
# full causal call gives no weight to later keys, that a decode step ($T_q = 1$) gives weight
# to every key, that a chunk of 2 queries over 5 keys sees keys $0 \dots 3$ and $0 \dots 4$,
# that query heads 0, 1 share KV head 0, and that equal keys give uniform weights.
#
# **How your tensors are compared.** The hidden tests compare your outputs with reference
# outputs computed by the course's solution. The reference file records the device, the
# PyTorch and CUDA versions and the precision settings it was made with; today's references
# were made on an **NVIDIA H200 GPU** (`device: cuda`, CUDA 13.0, TF32 off). The measure is the
# *relative error norm* $\lVert \text{yours} - \text{ref} \rVert_2 / \lVert \text{ref} \rVert_2$
# over the whole tensor, and the tests accept $\le 10^{-4}$.
#
# *Why this number.* A correct fp32 implementation differs from the reference only by
# rounding, because it adds and multiplies in a different order. **What was measured** (the
# course's calibration report, `docs/calibration_lab01.md`, made by `make calibrate` on a CPU
# against the GPU's references, so every figure is an error between two machines, the change
# your notebook makes too): ten correct implementations written in other styles
# (`repeat_interleave`, a 5-D broadcast, `einsum`, float64 inside, PyTorch's fused attention
# with an explicit mask or with `enable_gqa`, a loop over heads, other caches and loops) differ
# from the reference by at most $5.7 \cdot 10^{-7}$, 175x below the tolerance. Every real bug
# tried (a missing $1/\sqrt{D}$, a mask not offset, the softmax on the wrong axis, the wrong GQA
# head order, a cache not appended or returning its whole buffer, positions restarting at 0) is
# off by at least $0.21$, 2,100x above it. The course requires at least 10x on both sides.
#
# **TF32 breaks it.** NVIDIA GPUs may run fp32 matrix products as TF32, which rounds the inputs
# to 10 mantissa bits. Measured on the same H200 with TF32 on, the reference run itself moves by
# up to $5.8 \cdot 10^{-4}$, above the tolerance (simulated on a CPU, by rounding the matrix
# operands, $1.8$ to $5.8 \cdot 10^{-4}$). The first cell of this notebook switches TF32 off;
# leave it off. (A relative norm does not care how large the values are, unlike an elementwise
# `atol=1e-5`, which on another assignment rejected correct code that merely rounded
# differently.)

# %% tests id=test_attention points=9
# Trick: with v = identity (one value vector per key, T_k <= D), the output row of query i *is*
# its attention weights w_i0, w_i1, ... So these tests can look at the weights themselves.
# A failure is reported at the end of the cell.
def _attention_weights(q, k, causal):
    B, H_kv, T_k, D = k.shape
    v_identity = torch.eye(T_k, D).expand(B, H_kv, T_k, D)
    out = attention(q, k, v_identity, causal=causal)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(q.shape):
        raise AnswerError(f"attention(q{tuple(q.shape)}, k{tuple(k.shape)}, v{tuple(k.shape)}) returned "
                          f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}; "
                          f"expected a tensor of the shape of q, {tuple(q.shape)}")
    return out[..., :T_k]

def _visible_attention_tests():
    torch.manual_seed(0)
    k = torch.randn(1, 2, 5, 8)
    w = _attention_weights(torch.randn(1, 4, 5, 8), k, causal=True)  # (1, 4, 5, 5)
    if not torch.allclose(w.sum(-1), torch.ones(1, 4, 5), atol=1e-5):
        if torch.allclose(w.sum(-2), torch.ones(1, 4, 5), atol=1e-5):
            raise AnswerError("each key's weights sum to 1 instead of each query's: softmax over the "
                              "wrong axis? Normalise over the keys (dim=-1)")
        raise AnswerError(f"the attention weights of a query do not sum to 1 (sums {w.sum(-1)[0, 0].tolist()})")
    if w.triu(diagonal=1).abs().max() > 1e-6:
        raise AnswerError("with causal=True, query i gave weight to keys after position i: causal mask missing?")
    w_dec = _attention_weights(torch.randn(1, 4, 1, 8), k, causal=True)  # decode: T_q=1, T_k=5
    if w_dec[..., 1:].abs().max() < 1e-6:
        raise AnswerError("decode step attends only to the first key: causal mask not offset by past_len = "
                          "T_k - T_q? (a mask made with tril(T_q, T_k), or scaled_dot_product_attention("
                          "is_causal=True), is aligned top-left)")
    if w_dec.min() <= 0:
        raise AnswerError("a decode step (T_q=1) must give weight to every key: the new token is the last one")
    w_chunk = _attention_weights(torch.randn(1, 4, 2, 8), k, causal=True)  # T_q=2 at positions 3, 4
    if w_chunk[..., 0, 4].abs().max() > 1e-6 or w_chunk[..., 0, :4].min() <= 0 or w_chunk.min() < 0:
        raise AnswerError("with T_q=2 new queries over T_k=5 keys, query 0 (absolute position 3) must see "
                          "keys 0..3 and not key 4: mask not offset by past_len = T_k - T_q?")
    q_same = torch.randn(1, 1, 5, 8).expand(1, 4, 5, 8)  # every query head asks the same
    w_gqa = _attention_weights(q_same, k, causal=True)
    same01 = torch.allclose(w_gqa[:, 0], w_gqa[:, 1], atol=1e-6)
    same02 = torch.allclose(w_gqa[:, 0], w_gqa[:, 2], atol=1e-6)
    if not same01 and same02:
        raise AnswerError("GQA: query heads 0 and 2 share a KV head, i.e. head h uses KV head h % H_kv "
                          "(k.repeat(1, g, 1, 1), or q grouped as (B, g, H_kv, ...)); heads 0 and 1 must "
                          "share KV head 0, heads 2 and 3 KV head 1: KV head h // g with g = H // H_kv")
    if not (same01 and torch.allclose(w_gqa[:, 2], w_gqa[:, 3], atol=1e-6)) or same02:
        raise AnswerError("GQA: query head h must use KV head h // (H // H_kv)")
    v = torch.randn(1, 2, 5, 8)
    k_equal = torch.randn(1, 2, 1, 8).expand(1, 2, 5, 8)  # equal keys: uniform weights
    check_tensor(attention(torch.randn(1, 2, 3, 8), k_equal, v, causal=False),
                 v.mean(dim=2, keepdim=True).expand(1, 2, 3, 8), call="attention(q, k_all_equal, v, causal=False)")

_visible_error = None
try:
    _visible_attention_tests()
except Exception as _exc:  # noqa: BLE001 - reported at the end of the cell
    _visible_error = _exc
### BEGIN HIDDEN TESTS
# The reference outputs (course_lib.lab01_refs): each case's inputs, output and named mistakes' outputs.
from course_lib import lab01_refs as _ref

for _case in _ref.attention_cases(np.load(_ref.PATH, allow_pickle=False)):
    _inputs = (_case.q.clone(), _case.k.clone(), _case.v.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _got = attention(*_inputs, causal=_case.causal)
    if not all(torch.equal(_a, _b) for _a, _b in zip(_inputs, (_case.q, _case.k, _case.v), strict=True)):
        raise AnswerError(f"{_case.call} modified its inputs in place; work on new tensors")
    check_tensor(_got, _case.expected, call=_case.call, known=_case.known, dtype=torch.float32,
                 axes=("batch", "head", "query", "dim"), shape_mistakes=_case.shape_mistakes)
### END HIDDEN TESTS
if _visible_error is not None:
    raise _visible_error
print("Tests passed.")

# %% tests id=test_attention_validation points=1
# attention must refuse shapes it cannot serve with a ValueError (not a crash deeper inside, not NaN).
def _expect_attention_value_error(shape_q, shape_k, why):
    call = f"attention(q{shape_q}, k{shape_k}, v{shape_k})"
    try:
        attention(torch.zeros(shape_q), torch.zeros(shape_k), torch.zeros(shape_k))
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - say what came instead
        raise AnswerError(f"{call}, where {why}, raised {type(exc).__name__}: {exc}; expected ValueError: "
                          f"check the shapes first and raise ValueError with a message") from None
    raise AnswerError(f"{call}, where {why}, returned a result; expected ValueError")

_expect_attention_value_error((1, 3, 2, 8), (1, 2, 2, 8), "H=3 query heads are not a multiple of H_kv=2")
print("Visible test passed.")
### BEGIN HIDDEN TESTS
for _shape_q, _shape_k, _why in [((1, 4, 5, 8), (1, 2, 3, 8), "T_q=5 queries > T_k=3 keys"),
                                 ((2, 6, 1, 8), (2, 4, 9, 8), "H=6 is not a multiple of H_kv=4"),
                                 ((1, 2, 4, 16), (1, 4, 4, 16), "H=2 query heads < H_kv=4 KV heads"),
                                 ((1, 8, 7, 16), (1, 2, 6, 16), "T_q=7 > T_k=6 (one query too many)")]:
    _expect_attention_value_error(_shape_q, _shape_k, _why)
### END HIDDEN TESTS

# %% [markdown]
# Try PyTorch's fused attention on a chunk of 3 new queries over 8 keys (a chunked prefill, or
# the verification of 3 speculated tokens). With `is_causal=True` it disagrees with yours: its
# mask is aligned top-left, as if the 3 queries were positions 0, 1, 2. With the bottom-right
# mask (`causal_lower_right`, FlashAttention's alignment) or an explicit boolean mask
# (`True` = may attend) built from the absolute positions, it agrees. (Ungraded.)

# %%
from torch.nn.attention.bias import causal_lower_right

_q, _k, _v = torch.randn(1, 4, 3, 32), torch.randn(1, 4, 8, 32), torch.randn(1, 4, 8, 32)
_ours = attention(_q, _k, _v, causal=True)
_sdpa_top_left = F.scaled_dot_product_attention(_q, _k, _v, is_causal=True)
_sdpa_bottom_right = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=causal_lower_right(3, 8))
_allowed = torch.arange(8)[None, :] <= (torch.arange(3)[:, None] + 8 - 3)
_sdpa_offset = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_allowed)
print(f"relative error, SDPA is_causal=True (top-left) vs yours:        {rel_error(_sdpa_top_left, _ours):.2e}")
print(f"relative error, SDPA causal_lower_right (bottom-right) vs yours: {rel_error(_sdpa_bottom_right, _ours):.2e}")
print(f"relative error, SDPA explicit mask vs yours:                     {rel_error(_sdpa_offset, _ours):.2e}")

# %% [markdown]
# **What the GQA copy costs.** One decode step of attention ($T_q = 1$) over a long cache,
# three ways: expanding K and V with `repeat_interleave`, broadcasting a 5-D `@` (which
# copies K and V inside `torch.matmul`), and grouping the queries (no copy). MiniGPT's groups
# are small ($g = 2$); the second row uses the head counts of one Llama-3-8B layer (from the
# course's table, `course_lib.specs`), where the group is larger. All three give the same
# result; the times are this machine's (median of 5 runs). (Ungraded.)

# %%
def gqa_repeat_interleave(q, k, v):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def gqa_broadcast_5d(q, k, v):
    B, H, T_q, D = q.shape
    H_kv = k.shape[1]
    q5 = q.reshape(B, H_kv, H // H_kv, T_q, D)
    w = torch.softmax(q5 @ k[:, :, None].transpose(-2, -1) / math.sqrt(D), dim=-1)
    return (w @ v[:, :, None]).reshape(B, H, T_q, D)


def gqa_grouped_rows(q, k, v):
    B, H, T_q, D = q.shape
    H_kv = k.shape[1]
    q_rows = q.reshape(B, H_kv, (H // H_kv) * T_q, D)
    w = torch.softmax(q_rows @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)
    return (w @ v).reshape(B, H, T_q, D)


# %%
GQA_S, GQA_REPEATS = 8192, 5
from course_lib.specs import model as _model_spec

_llama = _model_spec("Llama-3-8B")
GQA_SHAPES = [(H, H_kv, D), (_llama.n_heads, _llama.n_kv_heads, _llama.head_dim)]
if is_autograding():  # the course's three functions, not yours: the same table for every student
    print("GQA comparison not run in the grader's copy of this notebook (it times the course's "
          "functions above, the same for every student).")
    GQA_SHAPES = []
else:
    print(f"one decode step of attention over S={GQA_S:,} cached tokens, fp32, batch 1 (median of {GQA_REPEATS})")
    print(f"{'H/H_kv':>7} {'K,V bytes':>10} {'repeat_interleave':>18} {'5-D broadcast @':>16} {'grouped rows':>13}")
for _H, _Hkv, _D in GQA_SHAPES:
    _q, _k, _v = torch.randn(1, _H, 1, _D), torch.randn(1, _Hkv, GQA_S, _D), torch.randn(1, _Hkv, GQA_S, _D)
    _ref = gqa_repeat_interleave(_q, _k, _v)
    _times = []
    for _fn in (gqa_repeat_interleave, gqa_broadcast_5d, gqa_grouped_rows):
        if rel_error(_fn(_q, _k, _v), _ref) > 1e-5:
            raise RuntimeError(f"{_fn.__name__} disagrees with repeat_interleave")
        _times.append(measure(lambda: _fn(_q, _k, _v), repeats=GQA_REPEATS, warmup=1).median)
    print(f"{_H:>3}/{_Hkv:<3} {format_bytes(2 * _k.numel() * 4, 'MiB'):>10} "
          + " ".join(f"{format_seconds(t):>{w}}" for t, w in zip(_times, (18, 16, 13), strict=True))
          + f"   (repeat_interleave / grouped = {_times[0] / _times[2]:.1f}x)")

# %% [markdown]
# ## Part 2 — The cache as a preallocated buffer
#
# **Why decode needs only the new query.** At step $t$ the model needs the output at the
# newest position only (its logits give the next token). That output depends on the newest
# query and on the keys and values of *all* positions $0 \dots t$. The keys and values of
# the old positions are the same at every step (position $p$ sees only positions $\le p$, so
# nothing later changes them). Recomputing them every step redoes $t$ tokens' worth of work
# to get one token out. The cache keeps them instead: each step computes $q, k, v$ for the
# new token only, appends $k, v$, and attends over everything cached.
#
# **Preallocate.** Appending with `torch.cat` allocates a new tensor and copies the whole
# cache at every step: $O(t)$ bytes moved for one token, $O(T^2)$ over a generation. Inference
# engines allocate the buffer once for the longest sequence they will serve and write each
# new token into the next free slot. A view of the filled part, `buffer[..., :length, :]`,
# costs nothing.
#
# ### Task 2 (8 points: 6 for storing and returning, 2 for refusing overflow and wrong shapes)
#
# Write the class `KVCache`:
#
# * `__init__(self, n_layers, batch_size, n_kv_heads, max_seq_len, head_dim,
#   dtype=torch.float32, device="cpu")` allocates key and value buffers for every layer,
#   each able to hold `max_seq_len` positions of shape `(batch_size, n_kv_heads, ·, head_dim)`.
# * `update(self, layer_idx, k_new, v_new)`: `k_new`, `v_new` are `(B, H_kv, T_new, D)`. Write
#   them at the current position of that layer, advance the position by `T_new`, and return
#   `(k, v)`: everything cached so far for that layer, `(B, H_kv, seq_len, D)`, as **views
#   of the buffers** (slices, not copies).
# * `seq_len(self, layer_idx=0)`: how many positions that layer holds.
# * `reset(self)`: empty the cache (every layer back to length 0) so it can be reused.
# * Overflow: if an update would go past `max_seq_len`, raise `ValueError` *before* writing
#   anything (nothing is silently overwritten or truncated); filling the buffer exactly to
#   `max_seq_len` is fine. Also raise `ValueError` if `k_new`'s batch size, KV heads or head
#   dimension do not match the buffers. (These checks are graded in their own test cell.)
#
# Each layer keeps its own position: the forward pass updates layer 0, then layer 1, ...

# %% solution id=kv_cache
class KVCache:
    """Preallocated per-layer key/value buffers with a write position per layer."""

    def __init__(self, n_layers, batch_size, n_kv_heads, max_seq_len, head_dim,
                 dtype=torch.float32, device="cpu"):
        ### BEGIN SOLUTION
        shape = (n_layers, batch_size, n_kv_heads, max_seq_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_seq_len = max_seq_len
        self.lengths = [0] * n_layers
        ### END SOLUTION

    def update(self, layer_idx, k_new, v_new):
        ### BEGIN SOLUTION
        expected = (self.k.shape[1], self.k.shape[2], self.k.shape[4])
        for name, t in (("k_new", k_new), ("v_new", v_new)):
            if t.dim() != 4 or (t.shape[0], t.shape[1], t.shape[3]) != expected:
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected (B, H_kv, T_new, D) "
                                 f"with (B, H_kv, D) = {expected}")
        if k_new.shape != v_new.shape:
            raise ValueError(f"k_new {tuple(k_new.shape)} and v_new {tuple(v_new.shape)} differ")
        start = self.lengths[layer_idx]
        end = start + k_new.shape[2]
        if end > self.max_seq_len:
            raise ValueError(f"KV cache overflow in layer {layer_idx}: {start} cached + "
                             f"{k_new.shape[2]} new > max_seq_len={self.max_seq_len}")
        self.k[layer_idx, :, :, start:end] = k_new
        self.v[layer_idx, :, :, start:end] = v_new
        self.lengths[layer_idx] = end
        return self.k[layer_idx, :, :, :end], self.v[layer_idx, :, :, :end]
        ### END SOLUTION

    def seq_len(self, layer_idx=0):
        ### BEGIN SOLUTION
        return self.lengths[layer_idx]
        ### END SOLUTION

    def reset(self):
        ### BEGIN SOLUTION
        self.lengths = [0] * len(self.lengths)
        ### END SOLUTION


# %% tests id=test_kv_cache points=6
def _cache_check(cond, msg):
    if not cond:
        raise AnswerError(msg)

def _kv_pair(result, call):
    # update must return (keys, values): say so before unpacking anything else
    if result is None:
        raise AnswerError(f"{call} returned None: did you forget `return k, v`?")
    if not isinstance(result, tuple | list) or len(result) != 2 or not all(isinstance(t, torch.Tensor) for t in result):
        raise AnswerError(f"{call} returned {type(result).__name__}; expected a tuple (keys, values) of tensors")
    return result

torch.manual_seed(1)
_c = KVCache(n_layers=2, batch_size=1, n_kv_heads=2, max_seq_len=8, head_dim=4)
_k1, _v1 = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
_k2, _v2 = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
_ko, _vo = _kv_pair(_c.update(0, _k1, _v1), "update(0, k, v)")
_cache_check(tuple(_ko.shape) == (1, 2, 3, 4),
             f"after appending 3 tokens, update returned keys of shape {tuple(_ko.shape)}, expected (1, 2, 3, 4)"
             + ("; that is the whole buffer: return only the filled part [:, :, :seq_len]" if _ko.shape[2] == 8 else ""))
_ko, _vo = _kv_pair(_c.update(0, _k2, _v2), "update(0, k, v)")
_cache_check(tuple(_ko.shape) == (1, 2, 5, 4),
             f"after appending 3 then 2 tokens, update returned keys of shape {tuple(_ko.shape)}, "
             f"expected (1, 2, 5, 4): the cache is not appended (the new keys go after the old ones)")
_cache_check(torch.equal(_ko, torch.cat([_k1, _k2], 2)) and torch.equal(_vo, torch.cat([_v1, _v2], 2)),
             "update(0, ...) returned the right shape but not [old keys, new keys] in order")
_cache_check(_c.seq_len(0) == 5 and _c.seq_len(1) == 0,
             f"seq_len(0)={_c.seq_len(0)!r}, seq_len(1)={_c.seq_len(1)!r}; expected 5 and 0 (layers are separate)")
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
def _no_raise(fn, what):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        raise AnswerError(f"{what} raised {type(exc).__name__}: {exc}") from None

_g = torch.Generator().manual_seed(2024)
_nl, _b, _hk, _ms, _d = 3, 3, 2, 40, 8
_c = _no_raise(lambda: KVCache(_nl, _b, _hk, _ms, _d), "KVCache(3, 3, 2, 40, 8)")
_all_k = [torch.empty(_b, _hk, 0, _d) for _ in range(_nl)]
_all_v = [torch.empty(_b, _hk, 0, _d) for _ in range(_nl)]
_ptrs = {}
for _step, _tn in enumerate([5, 1, 1, 7, 1, 3, 1, 1, 10, 1]):
    for _layer in range(_nl):
        _kn = torch.randn(_b, _hk, _tn, _d, generator=_g)
        _vn = torch.randn(_b, _hk, _tn, _d, generator=_g)
        _all_k[_layer] = torch.cat([_all_k[_layer], _kn], 2)
        _all_v[_layer] = torch.cat([_all_v[_layer], _vn], 2)
        _ko, _vo = _no_raise(lambda: _c.update(_layer, _kn, _vn), f"update({_layer}, ...) at step {_step}")
        _n = _all_k[_layer].shape[2]
        _what = f"step {_step}, layer {_layer}: after {_n} tokens in total, update returned"
        _cache_check(isinstance(_ko, torch.Tensor) and isinstance(_vo, torch.Tensor),
                     f"{_what} {type(_ko).__name__}, {type(_vo).__name__}; expected two tensors (k, v)")
        if _ko.shape[2] == _ms:
            raise AnswerError(f"{_what} all max_seq_len={_ms} positions: return only the filled part "
                              f"buffer[..., :seq_len, :], not the whole buffer (its empty slots are "
                              f"zeros that attention would count as keys)")
        if _ko.shape[2] == _tn and _n > _tn:
            raise AnswerError(f"{_what} only the {_tn} new positions: the cache is not appended "
                              f"(keep the old keys and return old + new)")
        _cache_check(tuple(_ko.shape) == (_b, _hk, _n, _d),
                     f"{_what} keys of shape {tuple(_ko.shape)}, expected {(_b, _hk, _n, _d)}")
        _cache_check(torch.equal(_ko, _all_k[_layer]) and torch.equal(_vo, _all_v[_layer]),
                     f"{_what} the right shape but wrong contents: positions overwritten or layers "
                     f"mixed up? (each layer keeps its own buffer and position)")
        _cache_check(_c.seq_len(_layer) == _n, f"{_what}: seq_len({_layer}) = {_c.seq_len(_layer)!r}, expected {_n}")
        _cap = _b * _hk * _ms * _d * _ko.element_size()
        if _ko.untyped_storage().nbytes() < _cap or _vo.untyped_storage().nbytes() < _cap:
            raise AnswerError(f"{_what} tensors that are not views of a preallocated buffer "
                              f"(their storage holds {_ko.untyped_storage().nbytes():,} bytes, a buffer "
                              f"for max_seq_len={_ms} needs {_cap:,}): growing the cache with torch.cat "
                              f"copies it at every step; write into a buffer allocated in __init__")
        _ptrs.setdefault(_layer, set()).add(_ko.untyped_storage().data_ptr())
_cache_check(all(len(s) == 1 for s in _ptrs.values()),
             "update returned views of different storages over time: the buffer was reallocated; "
             "allocate it once in __init__")
# reset
_no_raise(_c.reset, "reset()")
_cache_check(all(_c.seq_len(_l) == 0 for _l in range(_nl)), "after reset(), seq_len must be 0 for every layer")
_kn = torch.randn(_b, _hk, 2, _d)
_ko, _vo = _c.update(2, _kn, _kn)
_cache_check(tuple(_ko.shape) == (_b, _hk, 2, _d) and torch.equal(_ko, _kn),
             "after reset(), the next update must start at position 0 and return only the new tokens")
# default layer_idx, dtype
_cache_check(_c.seq_len() == 0, "seq_len() without argument must report layer 0")
_c64 = KVCache(1, 1, 1, 4, 2, dtype=torch.float64)
_ko, _ = _c64.update(0, torch.ones(1, 1, 1, 2, dtype=torch.float64), torch.ones(1, 1, 1, 2, dtype=torch.float64))
_cache_check(_ko.dtype == torch.float64, f"KVCache(..., dtype=torch.float64) returned {_ko.dtype}: use the dtype argument")
### END HIDDEN TESTS

# %% tests id=test_kv_cache_validation points=2
# A cache must refuse what it cannot hold, with a ValueError raised before anything is written.
def _expect_value_error(fn, what):
    try:
        fn()
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - say what came instead
        raise AnswerError(f"{what} raised {type(exc).__name__}: {exc}; expected ValueError") from None
    raise AnswerError(f"{what} did not raise ValueError")

_c = KVCache(n_layers=2, batch_size=1, n_kv_heads=2, max_seq_len=8, head_dim=4)
_c.update(0, torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4))
_expect_value_error(lambda: _c.update(0, torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)),
                    "appending 4 tokens to 5 cached with max_seq_len=8")
print("Visible test passed.")
### BEGIN HIDDEN TESTS
_nl, _b, _hk, _ms, _d = 3, 3, 2, 40, 8
_c = KVCache(_nl, _b, _hk, _ms, _d)
for _layer in range(_nl):
    _c.update(_layer, torch.randn(_b, _hk, 23, _d), torch.randn(_b, _hk, 23, _d))
# overflow: clear error and nothing written
_before = _c.seq_len(0)
_expect_value_error(lambda: _c.update(0, torch.randn(_b, _hk, _ms - _before + 1, _d),
                                      torch.randn(_b, _hk, _ms - _before + 1, _d)),
                    f"update(0, ...) appending {_ms - _before + 1} tokens to {_before} cached (max_seq_len={_ms})")
if _c.seq_len(0) != _before:
    raise AnswerError(f"after a refused overflowing update, seq_len(0) changed from {_before} to "
                      f"{_c.seq_len(0)}: check the size before writing anything")
try:
    _ko, _ = _c.update(0, torch.randn(_b, _hk, _ms - _before, _d), torch.randn(_b, _hk, _ms - _before, _d))
except Exception as _exc:  # noqa: BLE001
    raise AnswerError(f"filling the cache exactly to max_seq_len={_ms} raised {type(_exc).__name__}: {_exc}: "
                      f"off by one in the overflow check? ({_ms} cached positions fit in {_ms} slots)") from None
if _ko.shape[2] != _ms:
    raise AnswerError(f"after filling the cache exactly to max_seq_len={_ms}, update returned {_ko.shape[2]} positions")
_expect_value_error(lambda: _c.update(0, torch.randn(_b, _hk, 1, _d), torch.randn(_b, _hk, 1, _d)),
                    "update on a full cache")
# wrong shapes (layer 1 still has room)
for _shape, _what in [((_b, _hk + 1, 1, _d), "update with 3 KV heads on a cache for 2"),
                      ((_b, 1, 1, _d), "update with 1 KV head on a cache for 2 (it would broadcast silently)"),
                      ((_b + 1, _hk, 1, _d), "update with batch 4 on a cache for batch 3"),
                      ((_b, _hk, 1, _d * 2), f"update with head_dim {_d * 2} on a cache for head_dim {_d}")]:
    _expect_value_error(lambda: _c.update(1, torch.randn(_shape), torch.randn(_shape)), _what)
### END HIDDEN TESTS

# %% [markdown]
# How big is this cache? Lab 00's formula, for a buffer of $S$ positions, batch $B$, $s$
# bytes per number: $\text{bytes} = 2 \cdot L \cdot H_{kv} \cdot d_h \cdot S \cdot B \cdot s$.
# Measure what your `KVCache` actually allocated (every tensor it holds) and compare. (Ungraded.)

# %%
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    """Lab 00's formula (bytes)."""
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_elem


def tensor_bytes(obj):
    """Bytes of all distinct tensor storages held by obj's attributes (also inside lists/dicts)."""
    seen, total, todo = set(), 0, list(vars(obj).values())
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
    return total


# %%
_mem_S, _mem_B = 4096, 2
_mem_cache = KVCache(L, _mem_B, H_kv, _mem_S, D)
_measured = tensor_bytes(_mem_cache)
_formula = kv_cache_bytes(L, H_kv, D, _mem_S, _mem_B, 4)
print(f"KVCache for S={_mem_S}, B={_mem_B}: measured {format_bytes(_measured, 'MiB', exact=True)}, "
      f"formula {format_bytes(_formula, 'MiB', exact=True)}")
print(f"Full context (S={MINIGPT.max_seq_len}, B=1): "
      f"{format_bytes(kv_cache_bytes(L, H_kv, D, MINIGPT.max_seq_len, 1, 4), 'MiB', exact=True)}")

# %% [markdown]
# ## Part 3 — The forward pass, with and without the cache
#
# MiniGPT's parts (see `help(type(model))` and `help(type(model.blocks[0]))`):
#
# * `model.embed(idx)`: token ids `(B, T)` to vectors `(B, T, d_model)`;
# * for each `block` in `model.blocks` (pre-norm): `h = block.attn_norm(x)`;
#   `q, k, v = block.qkv(h)` gives `q: (B, H, T, D)`, `k, v: (B, H_kv, T, D)`;
#   `model.rope(t, positions)` rotates queries or keys by their absolute positions (a 1-D
#   `torch.long` tensor of length `T`); `block.out(a)` merges the heads of the attention
#   output `a: (B, H, T, D)` and projects back to `(B, T, d_model)`; then the MLP:
#   `x = x + block.mlp(block.mlp_norm(x))`;
# * `model.logits(x)`: final norm and output head, `(B, T, vocab)`.
#
# **Positions.** MiniGPT uses rotary position embeddings: queries and keys are rotated by
# an angle proportional to their **absolute** position, so that $q_i \cdot k_j$ depends on
# $i - j$. Without a cache the positions of the $T$ tokens are $0 \dots T-1$. With a cache
# holding `past_len` tokens, the new tokens are at `past_len ... past_len + T - 1`. Keys are
# rotated *before* they go into the cache, so cached keys keep their own positions.
#
# ### Task 3 (8 points)
#
# Write `forward(model, idx, cache=None)` that returns the logits `(B, T, vocab)` of the `T`
# new tokens `idx: (B, T)`:
#
# * without a cache: attention over the `T` tokens themselves;
# * with a cache: read `past_len` from the cache, rotate with the right positions, append each
#   layer's new keys and values to the cache and attend over everything it returns.
#
# Use your `attention` with `causal=True`.

# %% solution id=forward
def forward(model, idx, cache=None):
    """Logits (B, T, vocab) for the new tokens idx (B, T), appending to `cache` if given."""
    ### BEGIN SOLUTION
    B, T = idx.shape
    past_len = cache.seq_len(0) if cache is not None else 0
    positions = torch.arange(past_len, past_len + T, device=idx.device)
    x = model.embed(idx)
    for layer, block in enumerate(model.blocks):
        q, k, v = block.qkv(block.attn_norm(x))
        q = model.rope(q, positions)
        k = model.rope(k, positions)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        x = x + block.out(attention(q, k, v, causal=True))
        x = x + block.mlp(block.mlp_norm(x))
    return model.logits(x)
    ### END SOLUTION


# %% tests id=test_forward points=8
# Cached and uncached logits must agree. A failure is reported at the end of the cell.
def _visible_forward_tests():
    idx = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = forward(model, idx)
        if not isinstance(full, torch.Tensor) or tuple(full.shape) != (2, 12, 256):
            raise AnswerError(f"forward(model, idx (2, 12)) returned "
                              f"{tuple(full.shape) if isinstance(full, torch.Tensor) else type(full).__name__}; "
                              f"expected logits of shape (2, 12, 256)")
        cache = KVCache(L, 2, H_kv, 16, D)
        parts = [forward(model, idx[:, :8], cache)] + [forward(model, idx[:, t:t + 1], cache) for t in range(8, 12)]
    check_tensor(parts[0], full[:, :8], call="forward(model, idx[:, :8], empty_cache) (prefill)",
                 axes=("batch", "position", "vocab"))
    if cache.seq_len(0) != 12:
        raise AnswerError(f"after a prefill of 8 tokens and 4 decode steps the cache holds {cache.seq_len(0)} "
                          f"positions in layer 0, expected 12: is every layer's k, v appended?")
    check_tensor(torch.cat(parts, dim=1), full, axes=("batch", "position", "vocab"),
                 call="forward with a cache (prefill 8 tokens, then 4 decode steps)")
    print("Visible tests passed: cached and uncached logits agree.")

_visible_error = None
try:
    _visible_forward_tests()
except Exception as _exc:  # noqa: BLE001 - reported at the end of the cell
    _visible_error = _exc
### BEGIN HIDDEN TESTS
# The reference logits (course_lib.lab01_refs): all at once, then in chunks through a cache.
from course_lib import lab01_refs as _ref
from course_lib.minigpt import weights_fingerprint as _wfp

_case = _ref.forward_case(np.load(_ref.PATH, allow_pickle=False))
if _wfp(model) != _case.weights_fingerprint:
    raise AnswerError("the MiniGPT weights differ from those the references were made with: "
                      "reload the model with load_minigpt() and do not change its weights")
_B, _T = _case.idx.shape
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _got = forward(model, _case.idx)
check_tensor(_got, _case.logits, call=f"forward(model, idx{(_B, _T)}) without a cache",
             known=_case.known_uncached, axes=("batch", "position", "vocab"), dtype=torch.float32)
_cache = KVCache(L, _B, H_kv, _case.capacity, D)  # room to spare: overflow is graded in Part 2
_parts, _t = [], 0
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for _n in _case.schedule:
        try:
            _parts.append(forward(model, _case.idx[:, _t:_t + _n], _cache))
        except Exception as _exc:  # noqa: BLE001
            raise AnswerError(f"forward(model, idx[:, {_t}:{_t + _n}], cache) with {_t} tokens cached "
                              f"raised {type(_exc).__name__}: {_exc}") from None
        _t += _n
check_tensor(torch.cat(_parts, dim=1), _case.logits, known=_case.known, axes=("batch", "position", "vocab"),
             call=f"forward with a cache, chunks of {_case.schedule} tokens, logits concatenated")
if _cache.seq_len(0) != _T or _cache.seq_len(L - 1) != _T:
    raise AnswerError(f"after forward over {_T} tokens the cache holds {_cache.seq_len(0)} (layer 0) and "
                      f"{_cache.seq_len(L - 1)} (layer {L - 1}); every layer must append its keys")
### END HIDDEN TESTS
if _visible_error is not None:
    raise _visible_error

# %% [markdown]
# ## Part 4 — Greedy generation, with and without the cache
#
# Greedy decoding appends the most likely next token (the argmax of the last position's
# logits) and repeats. Without a cache, every step runs the model over the whole sequence so
# far. With a cache, the prompt goes through once (the *prefill*), and each later step feeds
# only the one new token (a *decode* step).
#
# ### Task 4 (6 points)
#
# Write `generate(model, prompt_ids, max_new_tokens, use_cache=True)`: greedy decoding from
# `prompt_ids: (B, T0)`, returning `(B, T0 + max_new_tokens)` token ids (prompt included). With
# `use_cache=True`, allocate a `KVCache` just large enough for the whole sequence. Both paths
# must give **the same tokens**. Run under `torch.no_grad()`. `max_new_tokens=0` returns the
# prompt.

# %% solution id=generate
def generate(model, prompt_ids, max_new_tokens, use_cache=True):
    """Greedy decoding: (B, T0) -> (B, T0 + max_new_tokens), with or without a KV cache."""
    ### BEGIN SOLUTION
    ids = prompt_ids
    with torch.no_grad():
        if use_cache:
            B, T0 = prompt_ids.shape
            cache = KVCache(model.n_layers, B, model.n_kv_heads, T0 + max_new_tokens,
                            model.head_dim, device=prompt_ids.device)
            logits = forward(model, prompt_ids, cache)  # prefill
            for step in range(max_new_tokens):
                next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # (B, 1)
                ids = torch.cat([ids, next_id], dim=1)
                if step < max_new_tokens - 1:
                    logits = forward(model, next_id, cache)  # decode: only the new token
        else:
            for _ in range(max_new_tokens):
                logits = forward(model, ids)
                next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)
                ids = torch.cat([ids, next_id], dim=1)
    return ids
    ### END SOLUTION


# %% tests id=test_generate points=6
_prompt = encode("The KV cache")
_with = generate(model, _prompt, 12, use_cache=True)
_without = generate(model, _prompt, 12, use_cache=False)
check_tokens(_with, _without, call="generate(model, prompt, 12, use_cache=True) vs use_cache=False")
check_tokens(_with[:, :_prompt.shape[1]], _prompt, call="generate(...)[:, :T0] (the prompt must come first)")
print("Visible tests passed. Generated bytes:", repr(decode(_with[0, _prompt.shape[1]:])))
### BEGIN HIDDEN TESTS
# The reference generations (course_lib.lab01_refs): the greedy tokens, prompt included.
from course_lib import lab01_refs as _ref

for _case in _ref.generation_cases(np.load(_ref.PATH, allow_pickle=False)):
    for _uc in (True, False):
        _call = f"generate(model, prompt{tuple(_case.prompt.shape)}, {_case.max_new}, use_cache={_uc})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                _got = generate(model, _case.prompt.clone(), _case.max_new, use_cache=_uc)
            except Exception as _exc:  # noqa: BLE001
                raise AnswerError(f"{_call} raised {type(_exc).__name__}: {_exc}") from None
        check_tokens(_got, _case.tokens, call=_call)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 5 — What does the cache buy? (benchmark, ungraded code)
#
# Two ways to produce one new token after a context of $S$ tokens:
#
# * **without a cache**: run `forward` over all $S+1$ tokens and keep the last logits;
# * **with a cache** (filled by a prefill): run `forward` on the one new token.
#
# **FLOP count.** Per token, the weight matrices cost $2 P$ FLOPs, where $P$ is the number of
# weights in the matrix products (the embedding lookup is free). Attention costs, per layer
# and query head, $2 D$ FLOPs per (query, key) pair for $QK^\top$ and $2D$ for the product with
# $V$. Our `attention` computes every pair, masked or not. So producing one token costs
#
# * without cache: $2P\,(S+1) + 4 L H D\,(S+1)^2$
# * with cache: $2P + 4 L H D\,(S+1)$
#
# and the FLOP ratio is exactly $S+1$. Measured time is another matter: a decode step is tiny,
# and fixed costs (Python, launching a few hundred small operations) and moving bytes through
# memory dominate it. The benchmark below measures the time per decode step at several context
# lengths (median of several repeats, with min..max), both ways. It uses your `KVCache` and
# `forward`. The full run (contexts up to 10,000 tokens, then the end-to-end generations
# further down) takes a few minutes on a laptop CPU and prints a line as each length finishes.
#
# **While the lab is graded** (nbgrader sets `NBGRADER_EXECUTION`, also when you press
# Validate) every benchmark of this part runs a small version, to keep grading fast: decode
# steps after 16, 64 and 128 tokens timed once each, end-to-end generations of 8 new tokens
# after prompts of 16 and 64 tokens timed once each. The tables are printed but not plotted
# (the figures would show the same numbers), the course's GPU measurement is printed but not
# plotted, and the GQA comparison above is not run (it times the course's functions, the same
# for everyone). None of it is graded. The grader's copy of
# your notebook therefore shows short contexts only, where fixed overheads dominate; its
# numbers say little about long contexts.

# %%
P_MATMUL = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "tok_emb" not in name)


def decode_flops(context_len, cached):
    """FLOPs to produce one token after `context_len` tokens (see the formula above)."""
    n = context_len + 1
    if cached:
        return 2 * P_MATMUL + 4 * L * H * D * n
    return 2 * P_MATMUL * n + 4 * L * H * D * n * n


if is_autograding():
    LENGTHS, REPEATS, WARMUP = [16, 64, 128], 1, 0
else:
    LENGTHS, REPEATS, WARMUP = [10, 30, 100, 300, 1000, 3000, 10_000], 3, 1

_gen = torch.Generator().manual_seed(7)
results = {}
with torch.no_grad():
    for S in progress(LENGTHS, desc="decode steps, context lengths"):
        prompt = torch.randint(0, 256, (1, S), generator=_gen)
        cache = KVCache(L, 1, H_kv, S + REPEATS + 2, D)
        next_id = forward(model, prompt, cache)[:, -1:].argmax(-1)
        t_cached = measure(lambda: forward(model, next_id, cache), repeats=REPEATS, warmup=WARMUP)
        full = torch.cat([prompt, next_id], dim=1)
        # a forward pass over 3,000+ tokens takes seconds on a CPU: no warm-up, 2 repeats there
        t_uncached = measure(lambda: forward(model, full), repeats=REPEATS if S <= 1000 else 2,
                             warmup=WARMUP if S <= 1000 else 0)
        results[S] = (t_cached, t_uncached)

print(f"time of one step producing one token after S tokens ({model.device.type}, "
      f"{torch.get_num_threads()} threads; median, spread = (max - min) / median)")
print(f"{'S':>7} {'cached':>10} {'uncached':>10} {'speedup':>8} {'FLOP ratio':>10} {'spread c/u':>12}")
for S, (tc, tu) in results.items():
    print(f"{S:>7,} {format_seconds(tc.median):>10} {format_seconds(tu.median):>10} "
          f"{tu.median / tc.median:>7.1f}x {decode_flops(S, False) / decode_flops(S, True):>9.0f}x "
          f"{tc.spread:>5.0%}/{tu.spread:<5.0%}")

# %% [markdown]
# **A cost model fitted on this machine.** The FLOP ratio ignores two costs that dominate a
# small model: a fixed cost per forward pass, and bytes moved through memory. Model the time
# of one forward pass over $T_q$ new tokens attending to $T_k$ keys as
#
# $$ t(T_q, T_k) = t_0 + \frac{\text{FLOPs}(T_q, T_k)}{\text{peak}} + \frac{\text{bytes}(T_q, T_k)}{\text{bandwidth}} $$
#
# * $\text{FLOPs} = 2 P\, T_q + 4 L H D\, T_q T_k$ (as above, for any $T_q$);
# * $\text{bytes} = 4\,\bigl(P + 2 L H_{kv} D\, T_k + 8\, L H\, T_q T_k\bigr)$ in fp32: the weights
#   read once, the cached keys and values read once (GQA without copies), and the $L \cdot H$
#   score matrices of $T_q \times T_k$ numbers, which the solution's attention writes and reads
#   8 times (`q @ k^T` writes them, `/ sqrt(D)`, `masked_fill` and `softmax` each read and write
#   them, `@ v` reads them);
# * $t_0$, peak and bandwidth are **not** taken from a data sheet: they are fitted to the
#   forward passes just timed (one decode step and one uncached pass per length, the fastest
#   of the repeats: other programs on the machine can only add time), by least squares on
#   relative errors with every constant $\ge 0$ (`course_lib.e2e.fit_step_cost`).
#
# The fitted "peak" and "bandwidth" are the effective rates of this code on this machine,
# usually far below the hardware's figures (small matrices, several passes, Python between
# operations). Your implementation may make more or fewer passes; the fit absorbs part of that.

# %%
from course_lib.e2e import ForwardShape, fit_step_cost

SHAPE = ForwardShape.of(model)
timed_passes = []
for S, (tc, tu) in results.items():
    timed_passes.append((1, S + 1, tc.minimum))      # decode step: 1 query over S + 1 keys
    timed_passes.append((S + 1, S + 1, tu.minimum))  # no cache: S + 1 queries over S + 1 keys
cost = fit_step_cost(SHAPE, timed_passes)
print("Fitted on this machine:", cost.describe())


def _dominant(t_q, t_k):
    parts = cost.parts(t_q, t_k)
    return max(parts, key=parts.get)


print("fastest run of each pass, measured vs predicted by the fitted model")
print(f"{'S':>7} {'cached':>10} {'predicted':>10} {'uncached':>10} {'predicted':>10} "
      f"{'speedup':>8} {'predicted':>10} {'FLOP ratio':>10}   largest term (cached / uncached)")
for S, (tc, tu) in results.items():
    pc, pu = cost.step_time(1, S + 1), cost.step_time(S + 1, S + 1)
    print(f"{S:>7,} {format_seconds(tc.minimum):>10} {format_seconds(pc):>10} {format_seconds(tu.minimum):>10} "
          f"{format_seconds(pu):>10} {tu.minimum / tc.minimum:>7.1f}x {pu / pc:>9.1f}x "
          f"{decode_flops(S, False) / decode_flops(S, True):>9.0f}x   {_dominant(1, S + 1)} / {_dominant(S + 1, S + 1)}")
_S_top = max(LENGTHS)
print(f"At S={_S_top:,} one (1, {H}, S, S) fp32 score tensor is {format_bytes(4 * H * _S_top ** 2, 'auto-decimal')} "
      f"(per layer, per pass); a decode step reads {format_bytes(SHAPE.bytes_per_elem * SHAPE.matmul_params, 'MiB')} "
      f"of weights and {format_bytes(kv_cache_bytes(L, H_kv, D, _S_top, 1, 4), 'MiB')} of cache, "
      f"and does {decode_flops(_S_top, True) / 1e6:.1f} MFLOP.")

# %% [markdown]
# ## End to end: 20 new tokens after a long prompt
#
# A write-up of this assignment timed whole generations, $n = 20$ new tokens after prompts of
# up to 10,000 tokens, and found the cached generation 19x faster at 10,000 tokens. Here is
# that measurement with your `generate`, and what the 19x is.
#
# With the cache, the first new token costs a prefill over the $S$ prompt tokens: that is the
# **time to first token** (TTFT), what a user waits before the first word appears. Each
# further token costs one decode step, $t_\text{decode}$, the **per-token latency** (the pace of
# the words after the first). Without the cache every token costs a forward pass over the
# whole sequence, each about one TTFT. So
#
# $$ \text{cached} \approx \text{TTFT} + (n-1)\, t_\text{decode}, \qquad
#    \text{uncached} \approx n \cdot \text{TTFT}, \qquad
#    \text{speedup} \approx \frac{n \cdot \text{TTFT}}{\text{TTFT} + (n-1)\, t_\text{decode}} < n . $$
#
# The end-to-end speedup can never reach $n$: the cache does not make the prefill cheaper, and
# both ways pay it. For long prompts the prefill dominates ($\text{TTFT} \gg (n-1)\,t_\text{decode}$)
# and the speedup is close to $n$: the write-up's 19x with $n = 20$ is this limit, a property
# of $n$, not of the cache at 10,000 tokens (one decode step there is far faster than an
# uncached step: see the table above). For short prompts both ways are a string of
# overhead-bound steps and the speedup is near 1.
#
# The cell below measures, for each prompt length $S$: TTFT (the time of
# `generate(model, prompt, 1)`), the total time of `generate(model, prompt, 20)` with and
# without the cache, and the per-token latency $(\text{total} - \text{TTFT}) / 19$. It predicts
# each total from the fitted model, as the sum of the forward passes the generation makes
# (`course_lib.e2e.generation_steps`: with the cache one prefill and $n-1$ decode steps; without, $n$ passes over
# $S, S+1, \dots$ tokens), and prints how far the predicted speedup is from the measured one.
# Prompts stop at 3,000 tokens: without the cache, 20 tokens after a 10,000-token prompt are 20
# forward passes over 10,000 tokens each; the cell prints the model's prediction for that
# length instead (how long it would take here, and the speedup). `bench/bench_lab01.py`
# measures it (`--e2e-lengths 10000`) when you have the time.

# %%
N_NEW = 8 if is_autograding() else 20
E2E_LENGTHS = [16, 64] if is_autograding() else [10, 30, 100, 300, 1000, 3000]

e2e = {}
with torch.no_grad():
    for S in progress(E2E_LENGTHS, desc="end-to-end generations, prompt lengths"):
        prompt = torch.randint(0, 256, (1, S), generator=_gen)
        reps = 3 if S <= 300 else (2 if S <= 1000 else 1)  # 20 uncached passes over 3,000 tokens: seconds
        warm = 1 if S <= 1000 else 0
        if is_autograding():  # the grader's run: once each (see the text above)
            reps, warm = 1, 0
        ttft = measure(lambda: generate(model, prompt, 1, use_cache=True), repeats=reps, warmup=warm)
        cached = measure(lambda: generate(model, prompt, N_NEW, use_cache=True), repeats=reps, warmup=warm)
        uncached = measure(lambda: generate(model, prompt, N_NEW, use_cache=False), repeats=reps,
                           warmup=warm if S <= 300 else 0)
        e2e[S] = (ttft, cached, uncached)

print(f"generate(model, prompt (1, S), {N_NEW}): fastest of the repeats on this machine; "
      f"speedup = uncached / cached total")
print(f"{'S':>6} {'TTFT':>9} {'per token':>10} {'per token':>10} {'total':>9} {'total':>9} "
      f"{'speedup':>8} {'predicted':>9} {'pred/meas':>9}")
print(f"{'':>6} {'':>9} {'cached':>10} {'uncached':>10} {'cached':>9} {'uncached':>9}")
e2e_deviation = {}
def per_token(total, first):
    """Latency of each token after the first: (total - TTFT) / (n - 1), or None if noise hid it."""
    rest = total.minimum - first.minimum
    return rest / (N_NEW - 1) if rest > 0 else None


def _fmt(seconds):
    return "n/a" if seconds is None else format_seconds(seconds)


for S, (ttft, cached, uncached) in e2e.items():
    measured = uncached.minimum / cached.minimum
    predicted = cost.generation_time(S, N_NEW, cached=False) / cost.generation_time(S, N_NEW, cached=True)
    e2e_deviation[S] = predicted / measured - 1
    print(f"{S:>6,} {format_seconds(ttft.minimum):>9} {_fmt(per_token(cached, ttft)):>10} "
          f"{_fmt(per_token(uncached, ttft)):>10} "
          f"{format_seconds(cached.minimum):>9} {format_seconds(uncached.minimum):>9} "
          f"{measured:>7.1f}x {predicted:>8.1f}x {predicted / measured:>9.2f}")
_worst = max(e2e_deviation, key=lambda s: abs(e2e_deviation[s]))
print(f"Largest deviation of the predicted speedup from the measured one: {e2e_deviation[_worst]:+.0%} "
      f"(S={_worst:,}). The model was fitted on single forward passes, not on these generations.")
for S in [s for s in LENGTHS if s > max(E2E_LENGTHS)]:
    pc, pu = cost.generation_time(S, N_NEW, cached=True), cost.generation_time(S, N_NEW, cached=False)
    print(f"Not measured end to end, predicted for S={S:,}: cached {format_seconds(pc)} "
          f"(TTFT {format_seconds(cost.step_time(S, S))}), uncached {format_seconds(pu)}, "
          f"speedup {pu / pc:.1f}x (n = {N_NEW})")

# %%
import matplotlib.pyplot as plt

from course_lib.plotting import new_axes, plot_latency

_S, _E = list(results), list(e2e)
if is_autograding():  # the grader's copy: the tables above hold the same numbers
    print("Figures not drawn in the grader's copy of this notebook: the tables above hold the same "
          "numbers.")
else:
    _ = plot_latency(_S, {"with KV cache": [results[s][0] for s in _S],
                          "without cache": [results[s][1] for s in _S]},
                     title=f"MiniGPT: time to produce one token after S tokens ({model.device.type})")

    _, _ax = new_axes()
    _ax.plot(_S, [results[s][1].minimum / results[s][0].minimum for s in _S], marker="o",
             label="measured (fastest runs)")
    _ax.plot(_S, [cost.step_time(s + 1, s + 1) / cost.step_time(1, s + 1) for s in _S], linestyle="--",
             marker="x", label="fitted model (overhead + FLOPs + bytes)")
    _ax.plot(_S, [decode_flops(s, False) / decode_flops(s, True) for s in _S], linestyle=":",
             label="FLOP ratio (S + 1)")
    _ax.set_xscale("log")
    _ax.set_yscale("log")
    _ax.set_xlabel("context length S (tokens)")
    _ax.set_ylabel("speedup of one decode step (x)")
    _ax.set_title("Speedup of a decode step from the KV cache")
    _ax.legend()

    _fig, (_ax1, _ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    _ax1.plot(_E, [e2e[s][0].minimum for s in _E], marker="o", label="TTFT (prefill)")
    _ax1.plot(_E, [per_token(e2e[s][1], e2e[s][0]) or math.nan for s in _E], marker="o",
              label="per token, with cache")
    _ax1.plot(_E, [per_token(e2e[s][2], e2e[s][0]) or math.nan for s in _E], marker="o",
              label="per token, without cache")
    _ax1.set_xscale("log")
    _ax1.set_yscale("log")
    _ax1.set_xlabel("prompt length S (tokens)")
    _ax1.set_ylabel("time (s)")
    _ax1.set_title("Time to first token vs per-token latency")
    _ax1.grid(True, which="both", alpha=0.3)
    _ax1.legend()
    _ax2.plot(_E, [e2e[s][2].minimum / e2e[s][1].minimum for s in _E], marker="o", label="measured")
    _ax2.plot(_E, [cost.generation_time(s, N_NEW, False) / cost.generation_time(s, N_NEW, True) for s in _E],
              linestyle="--", marker="x", label="fitted model")
    _ax2.axhline(N_NEW, color="grey", linestyle=":", label=f"n = {N_NEW} (the limit)")
    _ax2.set_xscale("log")
    _ax2.set_xlabel("prompt length S (tokens)")
    _ax2.set_ylabel("speedup of the whole generation (x)")
    _ax2.set_title(f"{N_NEW} new tokens: uncached / cached total time")
    _ax2.grid(True, which="both", alpha=0.3)
    _ax2.legend()

# %% [markdown]
# ### The same benchmark on a datacenter GPU
#
# The course ran the solution's version of this benchmark once on an NVIDIA H200
# (`bench/bench_lab01.py --device cuda`, TF32 off). The file, `course_lib/data/gpu_lab01_bench.json`,
# records the GPU, the driver, CUDA and PyTorch versions; the cell below prints it beside your
# own measurements and draws both. A GPU does not make MiniGPT's decode step fast: the step is a
# few hundred tiny operations, and on a GPU each one is a kernel launched from Python, a fixed
# cost of microseconds whatever the work inside. Compare the cached rows with your CPU's, and
# see at which $S$ the uncached step on the GPU starts to cost more than the fixed cost: only
# there does the cache begin to pay on this small model. (The "HF cached" column is Hugging
# Face transformers' Llama with MiniGPT's shape, on the same GPU.)

# %%
from course_lib import measured

GPU_BENCH = measured.gpu_lab01_bench()
print(f"Stored measurement: {measured.device_label(GPU_BENCH['meta'])}; "
      f"median of {GPU_BENCH['meta']['repeats']} runs")
print(f"{'S':>7} {'cached':>10} {'uncached':>10} {'speedup':>8} {'HF cached':>10}   (seconds per token)")
for _row in GPU_BENCH["decode"]:
    _hf = format_seconds(_row["hf_cached_s"]) if "hf_cached_s" in _row else "n/a"
    print(f"{_row['S']:>7,} {format_seconds(_row['cached_s']):>10} {format_seconds(_row['uncached_s']):>10} "
          f"{_row['uncached_s'] / _row['cached_s']:>7.1f}x {_hf:>10}")
print(f"Whole generations on the GPU, {GPU_BENCH['meta']['e2e_new_tokens']} new tokens:")
for _row in GPU_BENCH["e2e"]:
    print(f"  S={_row['S']:>6,}: TTFT {format_seconds(_row['ttft_s'])}, cached {format_seconds(_row['cached_total_s'])}, "
          f"uncached {format_seconds(_row['uncached_total_s'])}, "
          f"speedup {_row['uncached_total_s'] / _row['cached_total_s']:.1f}x")

if not is_autograding():  # the same for every student: not drawn in the grader's copy
    _ax = plot_latency(_S, {f"with KV cache, {model.device.type} (yours)": [results[s][0] for s in _S],
                            f"without cache, {model.device.type} (yours)": [results[s][1] for s in _S]})
    _G = [row["S"] for row in GPU_BENCH["decode"]]
    _ = plot_latency(_G, {f"with KV cache, {GPU_BENCH['meta']['device_name']}": [r["cached_s"] for r in GPU_BENCH["decode"]],
                          f"without cache, {GPU_BENCH['meta']['device_name']}": [r["uncached_s"] for r in GPU_BENCH["decode"]]},
                     ax=_ax, title="One token after S tokens: your machine and the course's GPU measurement")

# %% [markdown]
# **Memory: measured vs Lab 00's formula.** The cache used above for the longest context:

# %%
_S_max = max(LENGTHS)
_cache = KVCache(L, 1, H_kv, _S_max, D)
_weights = 4 * count_params(model)
_per_token = kv_cache_bytes(L, H_kv, D, 1, 1, 4)
print(f"S={_S_max:,}: measured {format_bytes(tensor_bytes(_cache), 'MiB', exact=True)}, "
      f"Lab 00's formula {format_bytes(kv_cache_bytes(L, H_kv, D, _S_max, 1, 4), 'MiB', exact=True)}")
print(f"Per token: {_per_token:,} B (half K, half V). The weights: {format_bytes(_weights, 'MiB', exact=True)}")
_full = kv_cache_bytes(L, H_kv, D, MINIGPT.max_seq_len, 1, 4)
print(f"A buffer for the full context (S={MINIGPT.max_seq_len:,}): {format_bytes(_full, 'MiB')}, "
      f"{_full / _weights:.1f}x the weights; a sequence that stops after 500 tokens uses "
      f"{500 / MINIGPT.max_seq_len:.1%} of it")

# %% [markdown]
# **Preallocated buffer vs `torch.cat`.** Append $N$ tokens one at a time to the cache of one
# layer, first into your preallocated `KVCache`, then by growing tensors with `torch.cat`
# (which copies everything cached so far at every step).

# %%
def append_prealloc(n_tokens):
    c = KVCache(1, 1, H_kv, n_tokens, D)
    k1 = torch.randn(1, H_kv, 1, D)
    for _ in range(n_tokens):
        c.update(0, k1, k1)


def append_cat(n_tokens):
    k1 = torch.randn(1, H_kv, 1, D)
    k = v = torch.empty(1, H_kv, 0, D)
    for _ in range(n_tokens):
        k = torch.cat([k, k1], dim=2)
        v = torch.cat([v, k1], dim=2)


APPEND_N = [256, 1024] if is_autograding() else [512, 2048, 8192]
append_results = {n: (measure(lambda: append_prealloc(n), repeats=REPEATS),
                      measure(lambda: append_cat(n), repeats=REPEATS)) for n in APPEND_N}
print(f"{'N':>7} {'prealloc/token':>15} {'torch.cat/token':>16} {'cat / prealloc':>15}")
for n, (tp, tc) in append_results.items():
    print(f"{n:>7,} {format_seconds(tp.median / n):>15} {format_seconds(tc.median / n):>16} "
          f"{tc.median / tp.median:>14.2f}x")

# %% [markdown]
# **Question 1 (3 points).** How does the measured speedup of a decode step grow with the
# context length $S$? Compare it with the FLOP prediction ($S+1$): where is it far below, where
# closer, and why?

# %% [markdown] answer id=ans_speedup points=3
# *Model answer.* (Numbers depend on the machine: read them from the tables above; on any CPU
# the pattern is the same.) The uncached step grows quickly with $S$ (about linearly for short
# contexts, where the weight products and the fixed cost dominate, then about quadratically
# once the $S \times S$ attention dominates), while the cached step stays almost flat
# (milliseconds on a laptop CPU, growing slowly with the cache it reads). So the measured
# speedup grows with $S$: close to 1x for the shortest contexts, and up to the largest value in
# the table at the longest. It is far below the FLOP ratio $S+1$ at short contexts because a
# decode step does very little arithmetic (the MFLOP printed above) and its time is a fixed
# cost: Python and framework dispatch of a few hundred small operations, plus reading the
# weights. The uncached step at small $S$ pays the same fixed cost once, so the ratio is near 1.
# At long contexts the uncached step is dominated by real work and by the memory traffic of the
# $S \times S$ score matrices (the size of one is printed above; each layer writes and reads
# several), so the ratio grows and gets closer to $S+1$, but stays below it because the cached
# step still pays its fixed cost and reads the whole cache. The fitted model (overhead + FLOPs
# + bytes) reproduces the measured curve where the FLOP ratio alone does not.
#
# *For the grader:* full marks for (a) the trend read correctly from the student's own table,
# (b) fixed per-step cost (overhead) and/or memory traffic named as why the speedup is far
# below $S+1$ at short contexts, (c) the quadratic growth of the uncached step at long
# contexts. Do not mark down numbers that differ from the rendered solution: each machine gives
# its own.

# %% [markdown]
# **Question 2 (2 points).** Does the memory your cache allocates match Lab 00's formula? What
# does the formula's $S$ mean for a preallocated cache, and what does that cost when most
# sequences are short?

# %% [markdown] answer id=ans_memory points=2
# *Model answer.* Yes, to the byte: the two numbers printed above are equal,
# $2 \cdot L \cdot H_{kv} \cdot d_h \cdot S \cdot B \cdot 4$ bytes (the per-token figure is
# printed too, half for K and half for V). For a preallocated cache $S$ is the *capacity*
# (`max_seq_len`), not the number of tokens actually generated: the memory is reserved up front.
# A buffer for MiniGPT's full context is several times the weights (printed above), and a
# sequence that stops after 500 tokens uses a few percent of it: the rest is wasted for as long
# as the sequence lives. This is why servers allocate cache memory in blocks (paged attention)
# instead of one buffer of the maximum length per sequence.

# %% [markdown]
# **Question 3 (2 points).** Compare the preallocated buffer with growing the cache by
# `torch.cat`. How does the time per appended token behave as $N$ grows, and why?

# %% [markdown] answer id=ans_cat points=2
# *Model answer.* With the preallocated buffer the time per appended token stays about
# constant whatever $N$ (two small copies into the next slot plus Python overhead). With
# `torch.cat` it grows with $N$, because every append allocates a new tensor and copies all $t$
# cached positions: the total work is $O(N^2)$, so the time per token grows roughly linearly
# with $N$ once the copies outweigh the fixed overhead. How large the gap is depends on the
# machine and on $N$: for a few hundred tokens `torch.cat` can even be faster (the copies are
# tiny and `update` does more Python work); the last column of the table above shows the ratio
# growing with $N$ (on a laptop CPU it is typically between about 1x and a few x at
# 8,192 tokens, and it keeps growing for longer caches). It also churns the allocator (a new
# tensor every step, the old one freed), which on a GPU fragments memory.
#
# *For the grader:* full marks for "flat vs growing with $N$" and the reason (copying the whole
# cache at every append, $O(N^2)$ in total), read from the student's own table. The size of the
# ratio is the student's machine's; any ratio that grows with $N$ is right.
