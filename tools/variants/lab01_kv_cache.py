"""Lab 01 variants: correct alternatives (the calibration set) and realistic mistakes.

Format: see tools/variants/README.md. A cell is either complete code (what a student's cell would
hold) or a list of edits of the solution's own cell, read from the source notebook
(``tools/variant_cells.py``): a mistake made that way follows the solution when it changes, and
an edit that no longer applies stops the tools that use it. ``tools.references`` runs the
mistakes named in ``course_lib.lab01_refs`` (each one a mutant here) on the reference inputs
and stores their outputs, so that the hidden tests can name the mistake behind a wrong answer.
"""

from __future__ import annotations

LAB = "lab01_kv_cache"


def _expand_kv(repeat: str) -> list[tuple[str, str]]:
    """Edits of the solution's attention: K and V expanded to H heads with ``k.<repeat>``, and the
    product taken per query head, instead of grouping the queries (the common student form)."""
    return [("    q_rows = q.reshape(B, H_kv, group * T_q, D)\n",
             f"    k, v = k.{repeat}, v.{repeat}  # (B, H, T_k, D)\n"),
            ("(q_rows @ k.transpose(-2, -1))", "(q @ k.transpose(-2, -1))"),
            ("    scores = scores.view(B, H_kv, group, T_q, T_k)  # back to one (T_q, T_k) block per query head\n", ""),
            ("weights.view(B, H_kv, group * T_q, T_k) @ v", "weights @ v")]


#: The solution's attention with K and V copied to every query head (``repeat_interleave``).
REPEAT_INTERLEAVE = _expand_kv("repeat_interleave(group, dim=1)")

# ---------------------------------------------------------------------------------------------
# Correct alternatives: the calibration set. Each must get every autograded point.
# ---------------------------------------------------------------------------------------------

_CHECKS = '''\
    B, H, T_q, D = q.shape
    H_kv, T_k = k.shape[1], k.shape[2]
    if H % H_kv or T_q > T_k:
        raise ValueError(f"bad shapes: q {tuple(q.shape)}, k {tuple(k.shape)}")
'''

ATTN_EINSUM = '''\
def attention(q, k, v, causal=True):
''' + _CHECKS + '''\
    g = H // H_kv
    qg = q.reshape(B, H_kv, g, T_q, D)
    s = torch.einsum("bhgqd,bhkd->bhgqk", qg, k) * D ** -0.5
    if causal:
        keep = torch.ones(T_q, T_k, dtype=torch.bool).tril(diagonal=T_k - T_q)
        s = s.masked_fill(~keep, float("-inf"))
    w = s.softmax(dim=-1)
    return torch.einsum("bhgqk,bhkd->bhgqd", w, v).reshape(B, H, T_q, D)
'''

ATTN_FLOAT64 = '''\
def attention(q, k, v, causal=True):
''' + _CHECKS + '''\
    q64, k64, v64 = q.double(), k.double(), v.double()
    k64 = k64.repeat_interleave(H // H_kv, dim=1)
    v64 = v64.repeat_interleave(H // H_kv, dim=1)
    s = q64 @ k64.transpose(-1, -2) / math.sqrt(D)
    if causal:
        i = torch.arange(T_q).view(-1, 1) + (T_k - T_q)
        j = torch.arange(T_k).view(1, -1)
        s = torch.where(j <= i, s, torch.tensor(float("-inf"), dtype=s.dtype))
    s = s - s.max(dim=-1, keepdim=True).values
    e = s.exp()
    return ((e / e.sum(dim=-1, keepdim=True)) @ v64).to(q.dtype)
'''

ATTN_SDPA_MASK = '''\
def attention(q, k, v, causal=True):
''' + _CHECKS + '''\
    k = k.repeat_interleave(H // H_kv, dim=1)
    v = v.repeat_interleave(H // H_kv, dim=1)
    mask = None
    if causal:
        mask = torch.arange(T_k)[None, :] <= torch.arange(T_q)[:, None] + (T_k - T_q)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
'''

ATTN_HEAD_LOOP = '''\
def attention(q, k, v, causal=True):
''' + _CHECKS + '''\
    out = torch.empty_like(q)
    past = T_k - T_q
    for b in range(B):
        for h in range(H):
            kh = k[b, h // (H // H_kv)]
            vh = v[b, h // (H // H_kv)]
            s = q[b, h] @ kh.T / math.sqrt(D)
            if causal:
                for i in range(T_q):
                    s[i, past + i + 1:] = float("-inf")
            out[b, h] = torch.softmax(s, dim=-1) @ vh
    return out
'''

KV_CACHE_LISTS = '''\
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, max_seq_len, head_dim,
                 dtype=torch.float32, device="cpu"):
        self.max_len = max_seq_len
        self.keys = [torch.empty(batch_size, n_kv_heads, max_seq_len, head_dim, dtype=dtype, device=device)
                     for _ in range(n_layers)]
        self.values = [torch.empty_like(t) for t in self.keys]
        self.pos = {i: 0 for i in range(n_layers)}
        self.shape = (batch_size, n_kv_heads, head_dim)

    def update(self, layer_idx, k_new, v_new):
        b, h, t, d = k_new.shape
        if (b, h, d) != self.shape or v_new.shape != k_new.shape:
            raise ValueError("k_new / v_new do not match the cache")
        p = self.pos[layer_idx]
        if p + t > self.max_len:
            raise ValueError("KV cache is full")
        self.keys[layer_idx][:, :, p:p + t].copy_(k_new)
        self.values[layer_idx][:, :, p:p + t].copy_(v_new)
        self.pos[layer_idx] = p + t
        return self.keys[layer_idx].narrow(2, 0, p + t), self.values[layer_idx].narrow(2, 0, p + t)

    def seq_len(self, layer_idx=0):
        return self.pos[layer_idx]

    def reset(self):
        for i in self.pos:
            self.pos[i] = 0
'''

FORWARD_LOCAL_POS = '''\
def forward(model, idx, cache=None):
    start = 0 if cache is None else cache.seq_len()
    pos = start + torch.arange(idx.shape[1])
    h = model.embed(idx)
    for i in range(model.n_layers):
        blk = model.blocks[i]
        q, k, v = blk.qkv(blk.attn_norm(h))
        q, k = model.rope(q, pos), model.rope(k, pos)
        if cache is not None:
            k, v = cache.update(i, k, v)
        h = h + blk.out(attention(q, k, v))
        h = h + blk.mlp(blk.mlp_norm(h))
    return model.logits(h)
'''

GENERATE_WHILE = '''\
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, use_cache=True):
    out = prompt_ids.clone()
    cache = None
    if use_cache:
        cache = KVCache(model.n_layers, out.shape[0], model.n_kv_heads,
                        out.shape[1] + max_new_tokens, model.head_dim)
    feed = out
    while out.shape[1] < prompt_ids.shape[1] + max_new_tokens:
        logits = forward(model, feed, cache)
        nxt = torch.argmax(logits[:, -1], dim=-1).unsqueeze(1)
        out = torch.cat((out, nxt), dim=1)
        feed = nxt if use_cache else out
    return out
'''

# GQA by expand + reshape (Hugging Face's repeat_kv), q scaled before the product, a boolean
# triu mask filled with the dtype's most negative finite value (not -inf), F.softmax.
ATTN_EXPAND_FINFO = '''\
def attention(q, k, v, causal=True):
    B, H, T_q, D = q.shape
    _, H_kv, T_k, _ = k.shape
    if H % H_kv != 0:
        raise ValueError(f"{H} query heads cannot share {H_kv} KV heads evenly")
    if T_q > T_k:
        raise ValueError(f"more queries ({T_q}) than keys ({T_k})")
    n_rep = H // H_kv
    k = k[:, :, None, :, :].expand(B, H_kv, n_rep, T_k, D).reshape(B, H, T_k, D)
    v = v[:, :, None, :, :].expand(B, H_kv, n_rep, T_k, D).reshape(B, H, T_k, D)
    scores = torch.matmul(q * D ** -0.5, k.transpose(2, 3))
    if causal:
        future = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).triu(diagonal=T_k - T_q + 1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    return torch.matmul(F.softmax(scores, dim=-1), v)
'''

# An additive float mask (0 where allowed, -inf in the future), einsum on expanded heads.
ATTN_ADDITIVE_MASK = '''\
def attention(q, k, v, causal=True):
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError("number of query heads must be a multiple of the number of KV heads")
    if q.shape[2] > k.shape[2]:
        raise ValueError("T_q must not exceed T_k")
    T_q, T_k, D = q.shape[2], k.shape[2], q.shape[3]
    rep = q.shape[1] // k.shape[1]
    k_full = torch.repeat_interleave(k, rep, dim=1)
    v_full = torch.repeat_interleave(v, rep, dim=1)
    s = torch.einsum("bhqd,bhkd->bhqk", q, k_full) / D ** 0.5
    if causal:
        mask = torch.full((T_q, T_k), float("-inf"), dtype=q.dtype, device=q.device)
        mask = torch.triu(mask, diagonal=T_k - T_q + 1)
        s = s + mask
    return torch.einsum("bhqk,bhkd->bhqd", s.softmax(-1), v_full)
'''

# PyTorch's fused attention doing the GQA itself (enable_gqa, PyTorch >= 2.5), with an explicit
# boolean mask: the last T_q rows of the full T_k x T_k lower triangle (aligned bottom-right).
ATTN_SDPA_GQA = '''\
def attention(q, k, v, causal=True):
    B, H, T_q, D = q.shape
    H_kv, T_k = k.shape[1], k.shape[2]
    if H % H_kv:
        raise ValueError(f"H={H} not divisible by H_kv={H_kv}")
    if T_q > T_k:
        raise ValueError(f"T_q={T_q} > T_k={T_k}")
    mask = None
    if causal:
        mask = torch.ones(T_k, T_k, dtype=torch.bool, device=q.device).tril()[T_k - T_q:]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
'''

# Buffers laid out (layer, batch, position, head, dim), as flash-attention kernels store them;
# update returns transposed views. Validation by tuple comparison, reset zeroes the buffers too.
KV_CACHE_SEQ_MAJOR = '''\
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, max_seq_len, head_dim,
                 dtype=torch.float32, device="cpu"):
        self.k_buf = torch.zeros(n_layers, batch_size, max_seq_len, n_kv_heads, head_dim, dtype=dtype, device=device)
        self.v_buf = torch.zeros_like(self.k_buf)
        self.capacity = max_seq_len
        self.filled = [0 for _ in range(n_layers)]

    def update(self, layer_idx, k_new, v_new):
        want = (self.k_buf.shape[1], self.k_buf.shape[3], self.k_buf.shape[4])
        for t in (k_new, v_new):
            if (t.shape[0], t.shape[1], t.shape[3]) != want:
                raise ValueError(f"got {tuple(t.shape)}, the cache holds (B, H_kv, ., D) = {want}")
        old = self.filled[layer_idx]
        new = old + k_new.shape[2]
        if new > self.capacity:
            raise ValueError(f"cannot append {k_new.shape[2]} tokens to {old}: capacity {self.capacity}")
        self.k_buf[layer_idx, :, old:new] = k_new.transpose(1, 2)
        self.v_buf[layer_idx, :, old:new] = v_new.transpose(1, 2)
        self.filled[layer_idx] = new
        return self.k_buf[layer_idx, :, :new].transpose(1, 2), self.v_buf[layer_idx, :, :new].transpose(1, 2)

    def seq_len(self, layer_idx=0):
        return self.filled[layer_idx]

    def reset(self):
        self.k_buf.zero_()
        self.v_buf.zero_()
        self.filled = [0 for _ in self.filled]
'''

# K and V in one tensor (layer, 2, batch, head, position, dim), lengths in a torch tensor.
KV_CACHE_STACKED = '''\
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, max_seq_len, head_dim,
                 dtype=torch.float32, device="cpu"):
        self.buf = torch.empty(n_layers, 2, batch_size, n_kv_heads, max_seq_len, head_dim,
                               dtype=dtype, device=device)
        self.lens = torch.zeros(n_layers, dtype=torch.long)

    def update(self, layer_idx, k_new, v_new):
        _, _, B, H_kv, S_max, D = self.buf.shape
        if k_new.shape != v_new.shape:
            raise ValueError("k_new and v_new differ in shape")
        if k_new.shape[0] != B or k_new.shape[1] != H_kv or k_new.shape[-1] != D:
            raise ValueError(f"expected (B={B}, H_kv={H_kv}, T, D={D}), got {tuple(k_new.shape)}")
        n = int(self.lens[layer_idx])
        t = k_new.shape[2]
        if n + t > S_max:
            raise ValueError(f"overflow: {n} + {t} > {S_max}")
        self.buf[layer_idx, 0, :, :, n:n + t] = k_new
        self.buf[layer_idx, 1, :, :, n:n + t] = v_new
        self.lens[layer_idx] = n + t
        kv = self.buf[layer_idx, :, :, :, :n + t]
        return kv[0], kv[1]

    def seq_len(self, layer_idx=0):
        return int(self.lens[layer_idx])

    def reset(self):
        self.lens.zero_()
'''

# past_len read per layer (each layer's own length before its update), positions as offset + arange.
FORWARD_PER_LAYER_PAST = '''\
def forward(model, idx, cache=None):
    T = idx.shape[1]
    x = model.embed(idx)
    for i, block in enumerate(model.blocks):
        past = 0 if cache is None else cache.seq_len(i)
        pos = past + torch.arange(T, dtype=torch.long, device=idx.device)
        h = block.attn_norm(x)
        q, k, v = block.qkv(h)
        q = model.rope(q, pos)
        k = model.rope(k, pos)
        if cache is not None:
            k, v = cache.update(i, k, v)
        a = attention(q, k, v, causal=True)
        x = x + block.out(a)
        x = x + block.mlp(block.mlp_norm(x))
    return model.logits(x)
'''

# torch.inference_mode instead of no_grad; a decode forward after every new token (the last one
# is wasted but fills the cache exactly to T0 + max_new_tokens, no overflow).
GENERATE_INFERENCE_MODE = '''\
@torch.inference_mode()
def generate(model, prompt_ids, max_new_tokens, use_cache=True):
    B, T0 = prompt_ids.shape
    tokens = prompt_ids
    if not use_cache:
        for _ in range(max_new_tokens):
            logits = forward(model, tokens)
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
        return tokens
    cache = KVCache(model.n_layers, B, model.n_kv_heads, T0 + max_new_tokens, model.head_dim)
    logits = forward(model, prompt_ids, cache)
    for _ in range(max_new_tokens):
        new = logits[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, new], dim=-1)
        logits = forward(model, new, cache)
    return tokens
'''

# New tokens collected in a list and concatenated once; the cache sized from the global spec.
GENERATE_LIST = '''\
def generate(model, prompt_ids, max_new_tokens, use_cache=True):
    with torch.no_grad():
        new_tokens = []
        if use_cache:
            cache = KVCache(len(model.blocks), prompt_ids.shape[0], model.n_kv_heads,
                            prompt_ids.shape[1] + max_new_tokens, model.head_dim,
                            dtype=torch.float32, device=prompt_ids.device)
            feed = prompt_ids
            for _ in range(max_new_tokens):
                nxt = torch.argmax(forward(model, feed, cache)[:, -1, :], dim=-1)[:, None]
                new_tokens.append(nxt)
                feed = nxt
        else:
            seq = prompt_ids
            for _ in range(max_new_tokens):
                nxt = torch.argmax(forward(model, seq)[:, -1, :], dim=-1)[:, None]
                new_tokens.append(nxt)
                seq = torch.cat([seq, nxt], dim=1)
        return torch.cat([prompt_ids, *new_tokens], dim=1)
'''

# GQA by a 5-D broadcast: q as (B, H_kv, g, T_q, D) against k, v as (B, H_kv, 1, T_k, D). Correct;
# torch.matmul copies the broadcast K and V internally (slower than repeat_interleave; the lab
# measures it), and the bottom-right mask built with tril(diagonal=T_k - T_q).
ATTN_BROADCAST_5D = '''\
def attention(q, k, v, causal=True):
''' + _CHECKS + '''\
    g = H // H_kv
    q5 = q.reshape(B, H_kv, g, T_q, D)
    s = q5 @ k[:, :, None].transpose(-2, -1) / math.sqrt(D)
    if causal:
        allowed = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril(diagonal=T_k - T_q)
        s = s.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(s, dim=-1) @ v[:, :, None]).reshape(B, H, T_q, D)
'''

CORRECT: dict[str, dict] = {
    "repeat_interleave": {"attention": REPEAT_INTERLEAVE},
    "broadcast_5d": {"attention": ATTN_BROADCAST_5D},
    "einsum_grouped": {"attention": ATTN_EINSUM},
    "float64_inside": {"attention": ATTN_FLOAT64},
    "sdpa_explicit_mask": {"attention": ATTN_SDPA_MASK},
    "loop_over_heads": {"attention": ATTN_HEAD_LOOP},
    "list_cache_narrow_forward_while": {"kv_cache": KV_CACHE_LISTS, "forward": FORWARD_LOCAL_POS,
                                        "generate": GENERATE_WHILE},
    "expand_finfo_seq_major_inference_mode": {"attention": ATTN_EXPAND_FINFO, "kv_cache": KV_CACHE_SEQ_MAJOR,
                                              "forward": FORWARD_PER_LAYER_PAST,
                                              "generate": GENERATE_INFERENCE_MODE},
    "additive_mask_stacked_cache_list_generate": {"attention": ATTN_ADDITIVE_MASK, "kv_cache": KV_CACHE_STACKED,
                                                  "generate": GENERATE_LIST},
    "sdpa_enable_gqa": {"attention": ATTN_SDPA_GQA},
}

# The subset of CORRECT that replaces attention (the calibration report's rows).
CORRECT_ATTENTION = ["repeat_interleave", "broadcast_5d", "einsum_grouped", "float64_inside",
                     "sdpa_explicit_mask", "loop_over_heads"]

# ---------------------------------------------------------------------------------------------
# Realistic mistakes, each an edit of the solution (or of the repeat_interleave form above)
# ---------------------------------------------------------------------------------------------

MUTANTS: list[dict] = [
    {"name": "no_scale",
     "cells": {"attention": [(" / math.sqrt(D)", "")]},
     "fails": ["test_attention", "test_forward"],
     "message": "not divided by sqrt(D)"},
    {"name": "mask_not_offset",
     "cells": {"attention": [("        past_len = T_k - T_q\n", "        past_len = 0\n")]},
     "fails": ["test_attention", "test_forward"],
     "message": "decode step attends only to the first key"},
    {"name": "sdpa_is_causal",
     "cells": {"attention": [("    q_rows = q.reshape(", "    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, "
                                                      "enable_gqa=True)\n    q_rows = q.reshape(")]},
     "fails": ["test_attention", "test_forward"],
     "message": "is_causal=True"},
    {"name": "softmax_wrong_axis",
     "cells": {"attention": [("torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=-2)")]},
     "fails": ["test_attention", "test_forward"],
     "message": "softmax over the wrong axis"},
    {"name": "gqa_repeat",
     "cells": {"attention": _expand_kv("repeat(1, group, 1, 1)")},
     "fails": ["test_attention", "test_forward"],
     "message": "KV head h % H_kv"},
    # the grouped (copy-free) form with the group axes swapped: (B, g, H_kv, ...) instead of
    # (B, H_kv, g, ...); query head h then uses KV head h % H_kv, as with repeat
    {"name": "gqa_grouped_wrong_order",
     "cells": {"attention": [("q_rows = q.reshape(B, H_kv, group * T_q, D)",
                              "q_rows = q.reshape(B, group, H_kv, T_q, D).transpose(1, 2).reshape(B, H_kv, group * T_q, D)"),
                             ("return out.view(B, H, T_q, D)",
                              "return out.view(B, H_kv, group, T_q, D).transpose(1, 2).reshape(B, H, T_q, D)")]},
     "fails": ["test_attention", "test_forward"],
     "message": "KV head h % H_kv"},
    # a correct computation whose checks build a ValueError but never raise it: loses only the
    # validation cell
    {"name": "attention_no_validation",
     "cells": {"attention": [("raise ValueError(", "ValueError(", 2)]},
     "fails": ["test_attention_validation"],
     "message": "expected ValueError"},
    {"name": "cache_not_appended",
     "cells": {"kv_cache": [("        self.lengths[layer_idx] = end\n", "")]},
     "fails": ["test_kv_cache", "test_forward"],
     "message": "not appended"},
    {"name": "whole_buffer",
     "cells": {"kv_cache": [("return self.k[layer_idx, :, :, :end], self.v[layer_idx, :, :, :end]",
                             "return self.k[layer_idx], self.v[layer_idx]")]},
     "fails": ["test_kv_cache", "test_forward"],
     "message": "whole buffer"},
    {"name": "torch_cat_cache",
     "cells": {"kv_cache": '''\
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, max_seq_len, head_dim,
                 dtype=torch.float32, device="cpu"):
        self.max_seq_len = max_seq_len
        self.k = [torch.zeros(batch_size, n_kv_heads, 0, head_dim, dtype=dtype, device=device)
                  for _ in range(n_layers)]
        self.v = [t.clone() for t in self.k]
        self.shape = (batch_size, n_kv_heads, head_dim)

    def update(self, layer_idx, k_new, v_new):
        b, h, t, d = k_new.shape
        if (b, h, d) != self.shape:
            raise ValueError("shape mismatch")
        if self.k[layer_idx].shape[2] + t > self.max_seq_len:
            raise ValueError("overflow")
        self.k[layer_idx] = torch.cat([self.k[layer_idx], k_new], dim=2)
        self.v[layer_idx] = torch.cat([self.v[layer_idx], v_new], dim=2)
        return self.k[layer_idx], self.v[layer_idx]

    def seq_len(self, layer_idx=0):
        return self.k[layer_idx].shape[2]

    def reset(self):
        self.k = [t[:, :, :0] for t in self.k]
        self.v = [t[:, :, :0] for t in self.v]
'''},
     "fails": ["test_kv_cache"],
     "message": "not views of a preallocated buffer"},
    # what does not fit is cut off instead of refused
    {"name": "overflow_truncates",
     "cells": {"kv_cache": [("        if end > self.max_seq_len:\n",
                             "        end = min(end, self.max_seq_len)\n"
                             "        k_new, v_new = k_new[:, :, :end - start], v_new[:, :, :end - start]\n"
                             "        if end > self.max_seq_len:\n")]},
     "fails": ["test_kv_cache_validation"],
     "message": "did not raise ValueError"},
    # a correct cache whose three checks build a ValueError but never raise it: loses only the
    # validation cell
    {"name": "cache_no_validation",
     "cells": {"kv_cache": [("raise ValueError(", "ValueError(", 3)]},
     "fails": ["test_kv_cache_validation"],
     "message": "expected ValueError"},
    # filling the buffer exactly is refused: loses the validation cell, and generate(..., 0) with a
    # cache (a prefill that fills its buffer exactly) crashes in test_generate too
    {"name": "overflow_off_by_one",
     "cells": {"kv_cache": [("if end > self.max_seq_len:", "if end >= self.max_seq_len:")]},
     "fails": ["test_kv_cache_validation"],
     "message": "off by one"},
    {"name": "positions_restart",
     "cells": {"forward": [("torch.arange(past_len, past_len + T, device=idx.device)", "torch.arange(T, device=idx.device)")]},
     "fails": ["test_forward"],
     "message": "positions restart at 0"},
    {"name": "generate_first_position",
     "cells": {"generate": [("logits[:, -1, :].argmax(dim=-1, keepdim=True)  # (B, 1)",
                             "logits[:, 0, :].argmax(dim=-1, keepdim=True)  # (B, 1)")]},
     "fails": ["test_generate"],
     "message": "differ"},
]

# Bugs that do not cascade into each other's tests (an attention bug would fail every test),
# so the demo's "mistakes" submission gets partial credit with each bug named.
SAMPLE_MISTAKES: list[str] = ["overflow_truncates", "generate_first_position"]
