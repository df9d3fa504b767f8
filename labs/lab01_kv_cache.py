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
# | 1 | `attention(q, k, v, causal=True)` | 10 |
# | 2 | `KVCache` | 8 |
# | 3 | `forward(model, idx, cache=None)` | 8 |
# | 4 | `generate(model, prompt_ids, max_new_tokens, use_cache=True)` | 6 |
# | 5 | written answers on the benchmark (graded by hand) | 7 |
# | | **total** | **39** |
#
# Each task has a visible test you can run now. More tests, on shapes and inputs you have not
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
# A mask built as `tril(ones(T_q, T_k))`, or PyTorch's
# `scaled_dot_product_attention(..., is_causal=True)` (which aligns its mask to the top-left
# corner), gives query 0 only key 0: right when $T_q = T_k$, wrong as soon as there is a past.
#
# **Grouped-query attention.** MiniGPT has $H = 4$ query heads but only $H_{kv} = 2$ key/value
# heads: each KV head serves a *group* of $H / H_{kv} = 2$ consecutive query heads. Query head
# $h$ uses KV head $\lfloor h / (H/H_{kv}) \rfloor$: heads 0, 1 use KV head 0, heads 2, 3 use KV
# head 1. To expand the KV heads to match, `k.repeat_interleave(H // H_kv, dim=1)` gives the
# order `[kv0, kv0, kv1, kv1]`; `k.repeat(1, H // H_kv, 1, 1)` gives `[kv0, kv1, kv0, kv1]`,
# which pairs query head 1 with the wrong KV head. (Expanding costs a copy; it is fine here.)
#
# ### Task 1 (10 points)
#
# Write `attention(q, k, v, causal=True)`:
#
# * `q`: `(B, H, T_q, D)`; `k`, `v`: `(B, H_kv, T_k, D)`, with `H % H_kv == 0` and
#   `T_q <= T_k`. Return `(B, H, T_q, D)` in the dtype of `q`.
# * With `causal=True`, query $i$ sees keys $0 \dots T_k - T_q + i$; with `causal=False`,
#   every key.
# * Raise `ValueError` (with a message naming the problem) if `H` is not a multiple of
#   `H_kv`, or if `T_q > T_k`.
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
    group = H // H_kv
    k = k.repeat_interleave(group, dim=1)  # (B, H, T_k, D): query head h uses KV head h // group
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, T_q, T_k)
    if causal:
        past_len = T_k - T_q
        query_pos = torch.arange(T_q, device=q.device)[:, None] + past_len  # absolute positions
        key_pos = torch.arange(T_k, device=q.device)[None, :]
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # over the keys
    return weights @ v
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
# outputs computed by the course's solution (the reference file records the device, the
# PyTorch version and the precision settings it was made with). The measure is the *relative
# error norm* $\lVert \text{yours} - \text{ref} \rVert_2 / \lVert \text{ref} \rVert_2$ over
# the whole tensor, and the tests accept $\le 10^{-4}$. Why this number: a correct fp32
# implementation differs from the reference only by rounding, because it adds and multiplies
# in a different order (`einsum` instead of `@`, a loop over heads, float64 inside, PyTorch's
# fused attention with an explicit mask, another CPU or a GPU). We measured those
# differences: at most $5 \cdot 10^{-7}$, 200x below the tolerance. Every real bug
# we tried (a missing $1/\sqrt{D}$, a mask not offset, the softmax on the wrong axis, the wrong
# GQA head order, a cache not appended or returning its whole buffer, positions restarting at
# 0) is off by at least $0.2$, more than 1000x above it. A relative norm does not care how
# large the values are, unlike an elementwise `atol=1e-5`, which on another assignment
# rejected correct code that merely rounded differently. One thing does break it: TF32, which
# NVIDIA GPUs may use for fp32 matrix products, rounds the inputs to 10 mantissa bits and
# alone gives errors of $2$ to $6 \cdot 10^{-4}$. The first cell of this notebook switches it
# off; leave it off.

# %% tests id=test_attention points=10
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
        raise AnswerError("GQA heads mapped with repeat instead of repeat_interleave: query heads 0 and 1 "
                          "must share KV head 0, heads 2 and 3 KV head 1")
    if not (same01 and torch.allclose(w_gqa[:, 2], w_gqa[:, 3], atol=1e-6)) or same02:
        raise AnswerError("GQA: query head h must use KV head h // (H // H_kv)")
    v = torch.randn(1, 2, 5, 8)
    k_equal = torch.randn(1, 2, 1, 8).expand(1, 2, 5, 8)  # equal keys: uniform weights
    check_tensor(attention(torch.randn(1, 2, 3, 8), k_equal, v, causal=False),
                 v.mean(dim=2, keepdim=True).expand(1, 2, 3, 8), rtol=1e-4,
                 call="attention(q, k_all_equal, v, causal=False)")

_visible_error = None
try:
    _visible_attention_tests()
except Exception as _exc:  # noqa: BLE001 - reported at the end of the cell
    _visible_error = _exc
### BEGIN HIDDEN TESTS
_refs = np.load("ref/lab01_refs.npz", allow_pickle=False)
_BUGS = {
    "no_scale": "scores not divided by sqrt(D): s = q.k / sqrt(head_dim)",
    "mask_not_offset": "causal mask not offset by past_len = T_k - T_q (query i must see keys "
                       "0..T_k-T_q+i; tril(T_q, T_k) and SDPA is_causal=True align the mask top-left)",
    "sdpa_is_causal": "causal mask not offset by past_len = T_k - T_q (scaled_dot_product_attention("
                      "is_causal=True) aligns the mask top-left, wrong when T_q < T_k)",
    "softmax_wrong_axis": "softmax over the wrong axis: normalise over the keys (dim=-1)",
    "gqa_repeat": "GQA heads mapped with repeat instead of repeat_interleave: query head h must use "
                  "KV head h // (H // H_kv)",
}
_n_cases = int(_refs["attn/n_cases"])
for _i in range(_n_cases):
    _p = f"attn/{_i}/"
    _q, _k, _v = (torch.from_numpy(_refs[_p + n]) for n in ("q", "k", "v"))
    _causal = bool(_refs[_p + "causal"])
    _B, _H, _Tq, _D = _q.shape
    _Hkv, _Tk = _k.shape[1], _k.shape[2]
    _call = (f"attention(q{tuple(_q.shape)}, k{tuple(_k.shape)}, v{tuple(_v.shape)}, causal={_causal})")
    _known = {}
    for _name, _label in _BUGS.items():
        if _p + "bug/" + _name in _refs.files:
            if _name in ("mask_not_offset", "sdpa_is_causal") and _Tq == 1:
                _label = "decode step attends only to the first key: " + _label
            _known[_label] = _refs[_p + "bug/" + _name]
    _q0, _k0, _v0 = _q.clone(), _k.clone(), _v.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _got = attention(_q, _k, _v, causal=_causal)
    if not (torch.equal(_q, _q0) and torch.equal(_k, _k0) and torch.equal(_v, _v0)):
        raise AnswerError(f"{_call} modified its inputs in place; work on new tensors")
    check_tensor(_got, _refs[_p + "out"], call=_call, rtol=1e-4, known=_known, dtype=torch.float32,
                 axes=("batch", "head", "query", "dim"),
                 shape_mistakes={(_B, _Hkv, _Tq, _D): "returned H_kv heads: expand k and v to the H "
                                 "query heads (repeat_interleave) before the products",
                                 (_B, _H, _Tk, _D): "returned T_k rows: the output has one row per query"})
# bad input: a clear ValueError
for _shape_q, _shape_k, _why in [((1, 3, 2, 8), (1, 2, 2, 8), "H=3 is not a multiple of H_kv=2"),
                                 ((1, 4, 5, 8), (1, 2, 3, 8), "T_q=5 > T_k=3")]:
    try:
        attention(torch.zeros(_shape_q), torch.zeros(_shape_k), torch.zeros(_shape_k))
    except ValueError:
        pass
    except Exception as _exc:  # noqa: BLE001
        raise AnswerError(f"attention with {_why} raised {type(_exc).__name__}: {_exc}; "
                          f"expected ValueError") from None
    else:
        raise AnswerError(f"attention with {_why} returned a result; expected a ValueError")
### END HIDDEN TESTS
if _visible_error is not None:
    raise _visible_error
print("Tests passed.")

# %% [markdown]
# Try PyTorch's fused attention on a chunk of 3 new queries over 8 keys. With `is_causal=True`
# it disagrees with yours: its mask is aligned top-left, as if the 3 queries were positions
# 0, 1, 2. With an explicit boolean mask (`True` = may attend) built from the absolute
# positions, it agrees. (Ungraded.)

# %%
_q, _k, _v = torch.randn(1, 4, 3, 32), torch.randn(1, 4, 8, 32), torch.randn(1, 4, 8, 32)
_ours = attention(_q, _k, _v, causal=True)
_sdpa_top_left = F.scaled_dot_product_attention(_q, _k, _v, is_causal=True)
_allowed = torch.arange(8)[None, :] <= (torch.arange(3)[:, None] + 8 - 3)
_sdpa_offset = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_allowed)
print(f"relative error, SDPA is_causal=True vs yours:  {rel_error(_sdpa_top_left, _ours):.2e}")
print(f"relative error, SDPA explicit mask vs yours:   {rel_error(_sdpa_offset, _ours):.2e}")

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
# ### Task 2 (8 points)
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
#   anything (nothing is silently overwritten or truncated). Also raise `ValueError` if
#   `k_new`'s batch size, KV heads or head dimension do not match the buffers.
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


# %% tests id=test_kv_cache points=8
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
try:
    _c.update(0, torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))
except ValueError:
    pass
else:
    raise AnswerError("appending 4 tokens to 5 cached with max_seq_len=8 did not raise ValueError")
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
def _no_raise(fn, what):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        raise AnswerError(f"{what} raised {type(exc).__name__}: {exc}") from None

def _expect_value_error(fn, what):
    try:
        fn()
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AnswerError(f"{what} raised {type(exc).__name__}: {exc}; expected ValueError") from None
    raise AnswerError(f"{what} did not raise; expected ValueError")

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
# overflow: clear error and nothing written
_before = _c.seq_len(0)
_expect_value_error(lambda: _c.update(0, torch.randn(_b, _hk, _ms - _before + 1, _d),
                                      torch.randn(_b, _hk, _ms - _before + 1, _d)),
                    f"update(0, ...) appending {_ms - _before + 1} tokens to {_before} cached (max_seq_len={_ms})")
_cache_check(_c.seq_len(0) == _before, f"after a refused overflowing update, seq_len(0) changed from "
             f"{_before} to {_c.seq_len(0)}: check the size before writing anything")
_ko, _ = _c.update(0, torch.randn(_b, _hk, _ms - _before, _d), torch.randn(_b, _hk, _ms - _before, _d))
_cache_check(_ko.shape[2] == _ms, "filling the cache exactly to max_seq_len must work (off by one in the overflow check?)")
_expect_value_error(lambda: _c.update(0, torch.randn(_b, _hk, 1, _d), torch.randn(_b, _hk, 1, _d)),
                    "update on a full cache")
# wrong shapes
_expect_value_error(lambda: _c.update(1, torch.randn(_b, _hk + 1, 1, _d), torch.randn(_b, _hk + 1, 1, _d)),
                    "update with 3 KV heads on a cache for 2")
_expect_value_error(lambda: _c.update(1, torch.randn(_b + 1, _hk, 1, _d), torch.randn(_b + 1, _hk, 1, _d)),
                    "update with batch 4 on a cache for batch 3")
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


_S, _B = 4096, 2
_cache = KVCache(L, _B, H_kv, _S, D)
_measured = tensor_bytes(_cache)
_formula = kv_cache_bytes(L, H_kv, D, _S, _B, 4)
print(f"KVCache for S={_S}, B={_B}: measured {format_bytes(_measured, 'MiB', exact=True)}, "
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
    check_tensor(parts[0], full[:, :8], call="forward(model, idx[:, :8], empty_cache) (prefill)", rtol=1e-4,
                 axes=("batch", "position", "vocab"))
    if cache.seq_len(0) != 12:
        raise AnswerError(f"after a prefill of 8 tokens and 4 decode steps the cache holds {cache.seq_len(0)} "
                          f"positions in layer 0, expected 12: is every layer's k, v appended?")
    check_tensor(torch.cat(parts, dim=1), full, rtol=1e-4, axes=("batch", "position", "vocab"),
                 call="forward with a cache (prefill 8 tokens, then 4 decode steps)")
    print("Visible tests passed: cached and uncached logits agree.")

_visible_error = None
try:
    _visible_forward_tests()
except Exception as _exc:  # noqa: BLE001 - reported at the end of the cell
    _visible_error = _exc
### BEGIN HIDDEN TESTS
import json as _json

from course_lib.minigpt import weights_fingerprint as _wfp

_refs = np.load("ref/lab01_refs.npz", allow_pickle=False)
_meta = _json.loads(str(_refs["meta"]))
if _wfp(model) != _meta["weights_fingerprint"]:
    raise AnswerError("the MiniGPT weights differ from those the references were made with: "
                      "reload the model with load_minigpt() and do not change its weights")
_FWD_BUGS = {
    "positions_restart": "positions restart at 0 for the new tokens: with a cache they are "
                         "past_len, past_len+1, ... (read past_len from cache.seq_len())",
    "cache_not_appended": "the cache is not appended: the new keys must go after the old ones",
    "whole_buffer": "the cache returns its whole buffer (empty slots included) instead of the filled part",
    "mask_not_offset": "causal mask not offset by past_len = T_k - T_q (decode step attends only to the "
                       "first key? tril(T_q, T_k) and SDPA is_causal=True align the mask top-left)",
    "sdpa_is_causal": "causal mask not offset by past_len: scaled_dot_product_attention(is_causal=True) "
                      "is wrong when T_q < T_k",
    "no_scale": "attention scores not divided by sqrt(D)",
    "softmax_wrong_axis": "softmax over the wrong axis",
    "gqa_repeat": "GQA heads mapped with repeat instead of repeat_interleave",
}
_idx = torch.from_numpy(_refs["fwd/idx"])
_ref_logits = _refs["fwd/logits"]
_B, _T = _idx.shape
_known = {lab: _refs["fwd/bug/" + n] for n, lab in _FWD_BUGS.items() if "fwd/bug/" + n in _refs.files}
_known_uncached = {lab: _refs["fwd/bug_uncached/" + n] for n, lab in _FWD_BUGS.items()
                   if "fwd/bug_uncached/" + n in _refs.files}
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _got = forward(model, _idx)
check_tensor(_got, _ref_logits, call=f"forward(model, idx{tuple(_idx.shape)}) without a cache", rtol=1e-4,
             known=_known_uncached, axes=("batch", "position", "vocab"), dtype=torch.float32)
_schedule = [int(s) for s in _refs["fwd/schedule"]]
_cache = KVCache(L, _B, H_kv, _T, D)
_parts, _t = [], 0
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for _n in _schedule:
        try:
            _parts.append(forward(model, _idx[:, _t:_t + _n], _cache))
        except Exception as _exc:  # noqa: BLE001
            raise AnswerError(f"forward(model, idx[:, {_t}:{_t + _n}], cache) with {_t} tokens cached "
                              f"raised {type(_exc).__name__}: {_exc}") from None
        _t += _n
_cache_call = f"forward with a cache, chunks of {_schedule} tokens, logits concatenated"
check_tensor(torch.cat(_parts, dim=1), _ref_logits, call=_cache_call, rtol=1e-4,
             known=_known, axes=("batch", "position", "vocab"))
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
_refs = np.load("ref/lab01_refs.npz", allow_pickle=False)
for _i in range(int(_refs["gen/n_cases"])):
    _p = torch.from_numpy(_refs[f"gen/{_i}/prompt"])
    _n = int(_refs[f"gen/{_i}/max_new"])
    _exp = _refs[f"gen/{_i}/tokens"]
    for _uc in (True, False):
        _call = f"generate(model, prompt{tuple(_p.shape)}, {_n}, use_cache={_uc})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                _got = generate(model, _p.clone(), _n, use_cache=_uc)
            except Exception as _exc:  # noqa: BLE001
                raise AnswerError(f"{_call} raised {type(_exc).__name__}: {_exc}") from None
        check_tokens(_got, _exp, call=_call)
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
# and the predicted speedup is the ratio: exactly $S+1$. Measured time is another matter:
# a decode step is tiny, and fixed costs (Python, launching a few hundred small operations) and reading
# the weights and the cache from memory dominate it. The benchmark below measures the time
# per decode step at several context lengths (median of several repeats, with min..max), both
# ways, and plots them. It uses your `KVCache` and `forward`. The full run (up to 10,000 tokens)
# takes a few minutes on a laptop; while the lab is graded it runs a small version.

# %%
P_MATMUL = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "tok_emb" not in name)


def decode_flops(context_len, cached):
    """FLOPs to produce one token after `context_len` tokens (see the formula above)."""
    n = context_len + 1
    if cached:
        return 2 * P_MATMUL + 4 * L * H * D * n
    return 2 * P_MATMUL * n + 4 * L * H * D * n * n


if is_autograding():
    LENGTHS, REPEATS = [16, 64, 256], 2
else:
    LENGTHS, REPEATS = [10, 30, 100, 300, 1000, 3000, 10_000], 3

_gen = torch.Generator().manual_seed(7)
results = {}
with torch.no_grad():
    for S in progress(LENGTHS, desc="context lengths"):
        prompt = torch.randint(0, 256, (1, S), generator=_gen)
        cache = KVCache(L, 1, H_kv, S + REPEATS + 2, D)
        next_id = forward(model, prompt, cache)[:, -1:].argmax(-1)
        t_cached = measure(lambda: forward(model, next_id, cache), repeats=REPEATS, warmup=1)
        full = torch.cat([prompt, next_id], dim=1)
        t_uncached = measure(lambda: forward(model, full), repeats=REPEATS, warmup=1 if S <= 1000 else 0)
        results[S] = (t_cached, t_uncached)

print(f"{'S':>7} {'cached':>10} {'uncached':>10} {'speedup':>8} {'FLOP-predicted':>14} {'spread c/u':>12}")
for S, (tc, tu) in results.items():
    print(f"{S:>7,} {format_seconds(tc.median):>10} {format_seconds(tu.median):>10} "
          f"{tu.median / tc.median:>7.1f}x {decode_flops(S, False) / decode_flops(S, True):>13.0f}x "
          f"{tc.spread:>5.0%}/{tu.spread:<5.0%}")

# %%
from course_lib.plotting import plot_latency, plot_speedup

_S = list(results)
_ = plot_latency(_S, {"with KV cache": [results[s][0] for s in _S],
                      "without cache": [results[s][1] for s in _S]},
                 title="MiniGPT: time to produce one token after S tokens (CPU)")
_ = plot_speedup(_S, measured=[results[s][1].median / results[s][0].median for s in _S],
                 predicted=[decode_flops(s, False) / decode_flops(s, True) for s in _S],
                 title="Speedup of a decode step from the KV cache")

# %% [markdown]
# **Memory: measured vs Lab 00's formula.** The cache used above for the longest context:

# %%
_S_max = max(LENGTHS)
_cache = KVCache(L, 1, H_kv, _S_max, D)
print(f"S={_S_max:,}: measured {format_bytes(tensor_bytes(_cache), 'MiB', exact=True)}, "
      f"Lab 00's formula {format_bytes(kv_cache_bytes(L, H_kv, D, _S_max, 1, 4), 'MiB', exact=True)}")
print(f"The weights: {format_bytes(4 * count_params(model), 'MiB', exact=True)}")

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
print(f"{'N':>7} {'prealloc/token':>15} {'torch.cat/token':>16}")
for n, (tp, tc) in append_results.items():
    print(f"{n:>7,} {format_seconds(tp.median / n):>15} {format_seconds(tc.median / n):>16}")

# %% [markdown]
# **Question 1 (3 points).** How does the measured speedup of a decode step grow with the
# context length $S$? Compare it with the FLOP prediction ($S+1$): where is it far below, where
# closer, and why?

# %% [markdown] answer id=ans_speedup points=3
# *Model answer.* The uncached step grows quickly with $S$ (linearly for small $S$, where the
# weight products dominate, then quadratically once the $S \times S$ attention dominates), while
# the cached step stays almost flat (a few milliseconds on a laptop CPU, growing slowly with
# the cache it reads). So the measured speedup grows with $S$: near 1x for tens of tokens,
# tens to hundreds for thousands of tokens. It is far below the FLOP prediction at short
# contexts because a decode step does very little arithmetic (about 1.5 MFLOP for MiniGPT)
# and its time is fixed overhead: Python and framework dispatch of a few hundred small operations,
# and reading the weights from memory. The uncached step at small $S$ pays the same overhead
# once, so the ratio is small. At long contexts the uncached step is dominated by real work
# (and by the memory traffic of the $S \times S$ score matrices: at 10,000 tokens one
# $(1, 4, S, S)$ fp32 tensor is 1.6 GB, and each layer makes several), so the ratio grows, but it stays below $S+1$ because the cached step
# still pays its overhead and reads the whole cache.

# %% [markdown]
# **Question 2 (2 points).** Does the memory your cache allocates match Lab 00's formula? What
# does the formula's $S$ mean for a preallocated cache, and what does that cost when most
# sequences are short?

# %% [markdown] answer id=ans_memory points=2
# *Model answer.* Yes, to the byte: $2 \cdot L \cdot H_{kv} \cdot d_h \cdot S \cdot B \cdot 4$
# bytes, i.e. 2,048 bytes per token for MiniGPT: 8 MiB at $S = 4096$, $B = 1$ (half for K, half
# for V), 19.5 MiB (20,480,000 B) for 10,000 tokens, and 32 MiB at the full 16,384 positions,
# about 10x the weights (3.0 MiB). For a preallocated cache
# $S$ is the *capacity* (`max_seq_len`), not the number of tokens actually generated: the
# memory is reserved up front. A sequence that stops at 500 tokens in a 16,384-slot buffer
# wastes 97% of it; this is why servers allocate cache memory in blocks (paged attention)
# instead of one buffer of the maximum length per sequence.

# %% [markdown]
# **Question 3 (2 points).** Compare the preallocated buffer with growing the cache by
# `torch.cat`. How does the time per appended token behave as $N$ grows, and why?

# %% [markdown] answer id=ans_cat points=2
# *Model answer.* With the preallocated buffer the time per appended token stays constant
# (tens of microseconds: two small copies into the next slot plus Python overhead), whatever
# $N$. With `torch.cat` it grows with $N$, because every append allocates a new tensor and
# copies all $t$ cached positions: the total work is $O(N^2)$, so the time per token grows
# roughly linearly with $N$ once the copies outweigh the fixed overhead. For a few hundred
# tokens `torch.cat` can even be faster (the copies are tiny and `update` does more Python
# work); at thousands of tokens it is 10x or more slower per token. It also churns the allocator
# (a new tensor every step, the old one freed), which on a GPU fragments memory.
