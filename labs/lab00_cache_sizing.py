# Source of source/lab00_cache_sizing/lab00_cache_sizing.ipynb (built by `python -m tools.nbbuild`).
# ruff: noqa: E402, B018, F811

# %% [markdown]
# # Lab 00 — How big is the KV cache?
#
# When a transformer generates text, every new token attends to all earlier tokens. Recomputing
# the keys and values of those earlier tokens at every step would be wasteful, so inference
# engines keep them in memory: the **KV cache**. It is often the largest thing in GPU memory
# after the weights, and it decides how long a context and how large a batch a GPU can serve.
#
# In this lab you derive the size of the cache from first principles, turn the formula into
# exact functions, and use them on real models and GPUs:
#
# 1. the formula, and why each factor is there;
# 2. a table of cache sizes for real models;
# 3. reverse problems: the longest context, the largest batch, the number of GPUs;
# 4. tensor parallelism, and what happens when there are more GPUs than KV heads;
# 5. GQA, MQA and MLA: how modern models shrink the cache;
# 6. the memory a pre-allocated cache wastes.
#
# **Conventions used everywhere in this course.** Sizes are exact integers in *bytes*.
# Vendors quote memory in decimal units: an "80 GB" GPU holds $80 \cdot 10^9$ bytes. Binary
# units are written GiB: $1\ \text{GiB} = 2^{30}$ bytes $= 1.0737 \cdot 10^9$ bytes. Every
# number printed in this lab says which one it is.
#
# | Part | Graded function | Points |
# |---|---|---|
# | 1 | `kv_bytes_per_token` | 3 |
# | 1 | `kv_cache_bytes` | 3 |
# | 2 | `cache_size_table` | 3 |
# | 3 | `max_context_len` | 3 |
# | 3 | `gpus_to_hold_weights` | 2 |
# | 3 | `max_batch_size` | 3 |
# | 4 | `max_batch_size_tp` | 3 |
# | 5 | `model_kv_bytes_per_token` | 2 |
# | 6 | `preallocation_waste` | 2 |
# | 7 | written answers (graded by hand) | 6 |
# | | **total** | **30** |
#
# Each task has a visible test you can run now. More tests, on inputs you have not seen, run
# when the lab is graded: make your functions correct in general, not just on the examples.

# %%
import math

import numpy as np
import pandas as pd

from course_lib.grading import AnswerError, check_int, check_real, describe_call, expect_error
from course_lib.specs import HARDWARE, MODELS, model
from course_lib.units import GB, GiB, dtype_bytes, format_bytes

pd.set_option("display.width", 120)
print(f"{len(MODELS)} models and {len(HARDWARE)} devices in course_lib.specs")

# %% [markdown]
# ## Part 1 — The formula
#
# Take one transformer layer and one token. The layer projects the token's hidden state into a
# query, a key and a value for every attention head. Later tokens need this token's **key**
# (to score it) and its **value** (to mix it in), but never its query. So per layer and per
# token the cache keeps one key vector and one value vector for each **key/value head**:
#
# $$\underbrace{2}_{K \text{ and } V} \cdot H_{kv} \cdot d_h \quad \text{numbers.}$$
#
# Multiply by the number of layers $L$, the number of tokens $S$ in each sequence, the number
# of sequences $B$ in the batch, and the bytes per number $s$:
#
# $$\boxed{\text{bytes} = 2 \cdot L \cdot H_{kv} \cdot d_h \cdot S \cdot B \cdot s}$$
#
# Three details cause most wrong answers:
#
# * **$H_{kv} \cdot d_h$, not $d_\text{model}$.** In multi-head attention (MHA) every query head
#   has its own K and V head, and usually $H \cdot d_h = d_\text{model}$. Grouped-query
#   attention (GQA) lets several query heads share one KV head, so $H_{kv} < H$ and the cache
#   shrinks by $H / H_{kv}$. Some models also have $H \cdot d_h \ne d_\text{model}$
#   (Gemma-2-9B: $16 \cdot 256 = 4096$ while $d_\text{model} = 3584$).
# * **Bytes, not bits.** fp16 and bf16 take $s = 2$ bytes; fp32 takes 4; int8 and fp8 take 1.
#   Writing 16 for fp16 makes every answer 8x too large.
# * **The 2.** It is there because both K and V are stored. Forget it and every answer is
#   half the truth.
#
# ### Task 1a: bytes per token
#
# Write `kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem)`: the cache
# bytes one token adds to one sequence, across all layers. Return an `int`.
#
# * The sizes may arrive as NumPy integers (e.g. `np.int32`, as when a config is read from an
#   array). NumPy's fixed-width integers silently wrap around when a product is too large, so
#   convert them with `int(...)` first and let Python's unbounded integers do the arithmetic.
#   `bytes_per_elem` is a Python number and may be fractional (int4 takes 0.5 bytes).
# * Raise a `ValueError` when an argument is negative (zero is allowed and gives 0).

# %% solution id=kv_bytes_per_token
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    """Bytes of K and V that one token adds to the cache of one sequence (all layers)."""
    ### BEGIN SOLUTION
    for name, value in [("n_layers", n_layers), ("n_kv_heads", n_kv_heads),
                        ("head_dim", head_dim), ("bytes_per_elem", bytes_per_elem)]:
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    k_and_v = 2
    n_bytes = k_and_v * int(n_layers) * int(n_kv_heads) * int(head_dim) * bytes_per_elem
    return int(n_bytes)
    ### END SOLUTION

# %% tests id=test_kv_bytes_per_token points=3
# Llama-2-7B in fp16: 32 layers, 32 KV heads of dimension 128, 2 bytes per number.
check_int(kv_bytes_per_token(32, 32, 128, 2), 524_288,
          call="kv_bytes_per_token(n_layers=32, n_kv_heads=32, head_dim=128, bytes_per_elem=2)",
          mistakes={"bits instead of bytes: fp16 is 2 bytes, not 16": 32 * 32 * 128 * 16 * 2,
                    "forgot the factor 2 (the cache stores K *and* V)": 32 * 32 * 128 * 2})
# Llama-3-8B in bf16 keeps only 8 KV heads (GQA).
check_int(kv_bytes_per_token(32, 8, 128, 2), 131_072,
          call="kv_bytes_per_token(n_layers=32, n_kv_heads=8, head_dim=128, bytes_per_elem=2)")
print("Visible tests passed: 524,288 B per token for Llama-2-7B, 131,072 B for Llama-3-8B.")
### BEGIN HIDDEN TESTS
import warnings as _w


def _expected_bpt(L, h, d, s):
    return 2 * int(L) * int(h) * int(d) * s

_cases = [(12, 12, 64, 2), (80, 8, 128, 2), (4, 2, 32, 4), (61, 1, 576, 2), (96, 96, 128, 1),
          (42, 8, 256, 2), (1, 1, 1, 1), (0, 8, 128, 2), (7, 3, 5, 4), (126, 8, 128, 8)]
for _L, _h, _d, _s in _cases:
    _call = describe_call("kv_bytes_per_token", _L, _h, _d, _s)
    _exp = _expected_bpt(_L, _h, _d, _s)
    check_int(kv_bytes_per_token(_L, _h, _d, _s), _exp, call=_call,
              mistakes={"bits instead of bytes (used the bit width, 8x too large)": _exp * 8,
                        "forgot the factor 2 for K and V": _exp // 2 if _exp % 2 == 0 else -1,
                        "forgot a factor: n_layers missing": 2 * _h * _d * _s,
                        "forgot a factor: bytes_per_elem missing": 2 * _L * _h * _d})
# NumPy int32 inputs whose product overflows int32 (and int4 = half a byte per number)
with _w.catch_warnings(), np.errstate(all="ignore"):
    _w.simplefilter("ignore")
    _got = kv_bytes_per_token(np.int32(1000), np.int32(1000), np.int32(1000), 4)
_exp = _expected_bpt(1000, 1000, 1000, 4)
_wrapped = int(np.int64(_exp).astype(np.int32))
check_int(_got, _exp, call="kv_bytes_per_token(np.int32(1000), np.int32(1000), np.int32(1000), 4)",
          mistakes={"int32 overflow: NumPy int32 inputs wrap around; convert them with int() first": _wrapped})
check_int(kv_bytes_per_token(32, 8, 128, 0.5), 32_768, call="kv_bytes_per_token(32, 8, 128, 0.5)  # int4")
for _bad in [(-1, 8, 128, 2), (32, -8, 128, 2), (32, 8, -128, 2), (32, 8, 128, -2)]:
    expect_error(kv_bytes_per_token, _bad, None, ValueError, "negative sizes are invalid")
### END HIDDEN TESTS

# %% [markdown]
# ### Task 1b: the whole cache
#
# Write `kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem)`:
# the bytes of the cache for `batch_size` sequences of `seq_len` tokens each. Reuse
# `kv_bytes_per_token`. Same rules: exact `int`, NumPy integers allowed, `ValueError` for
# negative arguments.

# %% solution id=kv_cache_bytes
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    """Bytes of the KV cache for batch_size sequences of seq_len tokens."""
    ### BEGIN SOLUTION
    if seq_len < 0 or batch_size < 0:
        raise ValueError(f"seq_len and batch_size must be >= 0, got {seq_len} and {batch_size}")
    per_token = kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem)
    return per_token * int(seq_len) * int(batch_size)
    ### END SOLUTION

# %% tests id=test_kv_cache_bytes points=3
# Llama-2-7B, fp16, one sequence of 4096 tokens: exactly 2 GiB.
check_int(kv_cache_bytes(32, 32, 128, 4096, 1, 2), 2 * GiB,
          call="kv_cache_bytes(n_layers=32, n_kv_heads=32, head_dim=128, seq_len=4096, batch_size=1, bytes_per_elem=2)",
          mistakes={"reported in GB-sized units? 2 GiB is 2,147,483,648 bytes": 2 * GB})
print("Llama-2-7B, 4096 tokens:", format_bytes(kv_cache_bytes(32, 32, 128, 4096, 1, 2), "GiB", exact=True))
### BEGIN HIDDEN TESTS
import warnings as _w

_cases = [(32, 8, 128, 8192, 1, 2), (80, 8, 128, 4096, 16, 2), (4, 2, 32, 10_000, 3, 4),
          (96, 96, 128, 2048, 64, 2), (12, 12, 64, 1, 1, 2), (32, 8, 128, 0, 5, 2), (61, 1, 576, 131_072, 7, 1)]
for _c in _cases:
    _L, _h, _d, _S, _B, _s = _c
    _exp = 2 * _L * _h * _d * _S * _B * _s
    check_int(kv_cache_bytes(*_c), _exp, call=describe_call("kv_cache_bytes", *_c),
              mistakes={"batch forgotten: each of the batch_size sequences has its own cache": _exp // _B if _B else -1,
                        "seq_len forgotten: the cache grows with every token": _exp // _S if _S else -1,
                        "bits instead of bytes": 8 * _exp})
with _w.catch_warnings(), np.errstate(all="ignore"):
    _w.simplefilter("ignore")
    _got = kv_cache_bytes(np.int32(96), np.int32(96), np.int32(128), np.int32(32768), np.int32(64), 2)
_exp = 2 * 96 * 96 * 128 * 32768 * 64 * 2
check_int(_got, _exp, call="kv_cache_bytes(np.int32(96), np.int32(96), np.int32(128), np.int32(32768), np.int32(64), 2)",
          mistakes={"int32 overflow: convert NumPy inputs with int() first": int(np.int64(_exp).astype(np.int32))})
for _bad in [(32, 8, 128, -1, 1, 2), (32, 8, 128, 10, -1, 2)]:
    expect_error(kv_cache_bytes, _bad, None, ValueError, "negative sizes are invalid")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 — Real models
#
# `course_lib.specs.MODELS` holds the configurations of real models, each with its sources
# (`model("Llama-3-8B").sources`). Every figure below is computed from that table, never typed.

# %%
from course_lib.specs import models_table

models_table()[["L", "H", "H_kv", "d_h", "d_model", "attention", "dtype", "sources"]]

# %% [markdown]
# ### Task 2: the forward table
#
# Write `cache_size_table(names, seq_lens)`. For each model name, look up its spec with
# `model(name)` and use its own dtype (`dtype_bytes(spec.dtype)`: MiniGPT is fp32, DeepSeek-V3
# fp8, the others 16-bit; MLA models are sized with their own formula in Part 5). Return a `pandas.DataFrame` indexed by model name with these `int` columns:
#
# * `"per_token"`: bytes per token (one sequence);
# * one column per sequence length `S` in `seq_lens`, named `f"S={S}"`: bytes for one sequence
#   of `S` tokens.
#
# Use the number of **KV** heads of each model. (Some sequence lengths are longer than a model
# was trained for; the table still shows what the cache would take.)

# %% solution id=cache_size_table
def cache_size_table(names, seq_lens):
    """DataFrame of KV-cache bytes per token and per sequence of each length, one row per model."""
    ### BEGIN SOLUTION
    rows = {}
    for name in names:
        spec = model(name)
        per_token = kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim,
                                       dtype_bytes(spec.dtype))
        row = {"per_token": per_token}
        for seq_len in seq_lens:
            row[f"S={seq_len}"] = per_token * seq_len
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
    ### END SOLUTION

# %%
TABLE_MODELS = ["MiniGPT", "GPT-2 small", "Llama-2-7B", "Llama-2-13B", "Llama-2-70B (MHA)",
                "GPT-3 175B"]
table = cache_size_table(TABLE_MODELS, [4096, 32768])
readable = table.map(lambda b: format_bytes(b, "auto-binary"))
readable

# %% tests id=test_cache_size_table points=3
def _check_table(df, names, seq_lens):
    assert isinstance(df, pd.DataFrame), f"cache_size_table should return a pandas DataFrame, got {type(df).__name__}"
    missing = [n for n in names if n not in df.index]
    assert not missing, f"rows missing from the table (index should be the model names): {missing}"
    for col in ["per_token"] + [f"S={S}" for S in seq_lens]:
        assert col in df.columns, f"column {col!r} missing; columns are {list(df.columns)}"
    for name in names:
        spec = model(name)
        s = dtype_bytes(spec.dtype)
        per_token = int(2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * s)
        all_heads = int(2 * spec.n_layers * spec.n_heads * spec.head_dim * s)
        d_model = int(2 * spec.n_layers * spec.d_model * s)
        wrong = {}
        if all_heads != per_token and all_heads == d_model:
            wrong[f"used all {spec.n_heads} query heads (or d_model = {spec.d_model}) instead of the "
                  f"{spec.n_kv_heads} KV heads: the cache holds n_kv_heads * head_dim numbers per layer"] = all_heads
        elif all_heads != per_token:
            wrong[f"used all {spec.n_heads} query heads instead of the {spec.n_kv_heads} KV heads"] = all_heads
        if d_model != per_token and d_model != all_heads:
            wrong[f"used d_model={spec.d_model} instead of n_kv_heads * head_dim = {spec.n_kv_heads * spec.head_dim}"] = d_model
        if s != 2:
            wrong[f"assumed 2 bytes per number; {name} is {spec.dtype}"] = per_token // s * 2
        check_int(df.loc[name, "per_token"], per_token, call=f"cache_size_table(...).loc[{name!r}, 'per_token']",
                  mistakes=wrong)
        for S in seq_lens:
            check_int(df.loc[name, f"S={S}"], per_token * S, call=f"cache_size_table(...).loc[{name!r}, 'S={S}']",
                      mistakes={k: v * S for k, v in wrong.items()})

_check_table(cache_size_table(["Llama-2-7B", "MiniGPT"], [4096]), ["Llama-2-7B", "MiniGPT"], [4096])
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
_check_table(cache_size_table(TABLE_MODELS, [4096, 32768]), TABLE_MODELS, [4096, 32768])
_names = ["Llama-3-8B", "Llama-2-70B", "Falcon-7B", "Gemma-2-9B", "Qwen2.5-7B", "GPT-2 XL", "Mixtral-8x7B"]
_check_table(cache_size_table(_names, [1, 1000, 131072]), _names, [1, 1000, 131072])
### END HIDDEN TESTS

# %% [markdown]
# A quick look: at 32k tokens a single GPT-3-sized MHA sequence needs about 155 GB (144 GiB)
# of cache, more than an 80 GB H100 or a 141 GB H200 holds; only the 192 GB MI300X could hold it,
# with nothing left for the weights. The ratio between rows is worth a glance too: Llama-2-70B
# (MHA) stores $80 \cdot 64$ KV heads per token, 8 times the real Llama-2-70B, which uses GQA
# (Part 5).

# %%
big = table.copy()
big["S=32768 (GiB)"] = big["S=32768"] / GiB
big["S=32768 (GB)"] = big["S=32768"] / GB
big[["per_token", "S=32768", "S=32768 (GiB)", "S=32768 (GB)"]].round(3)

# %% [markdown]
# ## Part 3 — Reverse problems: what fits?
#
# A GPU's memory holds the weights plus the cache (plus activations and framework overhead,
# which we ignore here: real servers keep a few GB for them). Whatever the weights leave free
# bounds the cache:
#
# $$B \cdot S \cdot \text{bytes per token} \le M - W.$$
#
# "Largest context" and "largest batch" round **down** (a sequence that does not fit whole
# does not fit); "GPUs needed" rounds **up**. A budget that cannot even hold the weights
# gives 0, not a negative number. Weights take `n_params * bytes_per_param` bytes.
#
# ### Task 3a: the longest context
#
# Write `max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size,
# bytes_per_elem)`: the largest `S` such that `batch_size` sequences of `S` tokens fit next to
# the weights. Work in exact integers (floor division `//`).

# %% solution id=max_context_len
def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    """Largest sequence length whose KV cache for batch_size sequences fits beside the weights."""
    ### BEGIN SOLUTION
    free = int(mem_bytes) - int(weight_bytes)
    if free <= 0:
        return 0
    per_token_all_sequences = kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(batch_size)
    return free // per_token_all_sequences
    ### END SOLUTION

# %% tests id=test_max_context_len points=3
_llama2_7b = model("Llama-2-7B")
_a100_40 = HARDWARE["A100 40GB SXM"]
_w_bytes = _llama2_7b.n_params * 2
check_int(max_context_len(_a100_40.mem_bytes, _w_bytes, 32, 32, 128, 1, 2), 50_588,
          call="max_context_len(40 GB, Llama-2-7B fp16 weights, 32, 32, 128, batch_size=1, 2)",
          mistakes={"weights not subtracted": 40 * GB // 524_288,
                    "used GiB for the GPU: a '40 GB' GPU holds 40 * 10**9 bytes": (40 * GiB - _w_bytes) // 524_288})
print("Visible test passed.")
### BEGIN HIDDEN TESTS
_cases = [(80 * GB, 16_060_522_496, 32, 8, 128, 1, 2), (80 * GB, 16_060_522_496, 32, 8, 128, 32, 2),
          (24 * GB, 13_476_831_232, 32, 32, 128, 4, 2), (141 * GB, 137_953_296_384, 80, 8, 128, 3, 2),
          (16 * GB, 20 * GB, 32, 8, 128, 1, 2), (16 * GB, 16 * GB, 32, 8, 128, 1, 2),
          (2 * GiB, 0, 4, 2, 32, 1, 4), (10**12 + 7, 3, 61, 1, 576, 9, 1)]
for _c in _cases:
    _M, _W, _L, _h, _d, _B, _s = _c
    _per = 2 * _L * _h * _d * _s
    _exp = max(0, (_M - _W) // (_per * _B))
    check_int(max_context_len(*_c), _exp, call=describe_call("max_context_len", *_c),
              mistakes={"weights not subtracted": _M // (_per * _B),
                        "batch forgotten: the free memory is shared by batch_size sequences": max(0, (_M - _W) // _per),
                        "rounded up: the largest context that fits rounds down": -(-(_M - _W) // (_per * _B)),
                        "negative when the weights do not fit: return 0": (_M - _W) // (_per * _B)})
_got = max_context_len(np.int64(80 * GB), np.int64(16_060_522_496), np.int32(32), np.int32(8), np.int32(128), np.int32(7), 2)
check_int(_got, (80 * GB - 16_060_522_496) // (131_072 * 7), call="max_context_len with NumPy integer inputs")
### END HIDDEN TESTS

# %% [markdown]
# **Llama-2-7B on an A100 40 GB.** Its weights are $6{,}738{,}415{,}616 \times 2$ bytes
# $= 13.48$ GB (12.55 GiB). (The seed handout this lab grew from assumed "14 GiB" of weights,
# 15.03 GB: close, but not the model.)

# %%
llama2_7b = model("Llama-2-7B")
a100_40 = HARDWARE["A100 40GB SXM"]
w_llama2_7b = llama2_7b.n_params * 2
print("weights:", format_bytes(w_llama2_7b, "GB", exact=True), "=", format_bytes(w_llama2_7b, "GiB"))
for batch in (1, 8):
    s_max = max_context_len(a100_40.mem_bytes, w_llama2_7b, llama2_7b.n_layers, llama2_7b.n_kv_heads,
                            llama2_7b.head_dim, batch, 2)
    print(f"batch {batch}: S_max = {s_max:,} tokens "
          f"({'beyond' if s_max > llama2_7b.max_seq_len else 'within'} the model's trained context of "
          f"{llama2_7b.max_seq_len:,})")

# %% [markdown]
# At batch 1 the memory would allow a 50k-token context, but the model was trained for 4,096
# tokens: here the model, not the memory, is the limit. At batch 8 each sequence can still have
# 6,323 tokens.
#
# ### Task 3b: GPUs just to hold the weights
#
# Write `gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes)`: the smallest number
# of GPUs whose memory together holds the weights (ignore the cache here). `bytes_per_param`
# may be fractional (int4 = 0.5).

# %% solution id=gpus_to_hold_weights
def gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes):
    """Smallest number of GPUs of gpu_mem_bytes each that together hold the weights."""
    ### BEGIN SOLUTION
    weight_bytes = n_params * bytes_per_param
    return math.ceil(weight_bytes / gpu_mem_bytes)
    ### END SOLUTION

# %% tests id=test_gpus_to_hold_weights points=2
check_int(gpus_to_hold_weights(175_000_000_000, 2, 80 * GB), 5,
          call="gpus_to_hold_weights(175e9 params, 2 bytes, 80 GB)",
          mistakes={"rounded down: 4 GPUs hold only 320 GB of the 350 GB": 4,
                    "used GiB: an 80 GB GPU holds 80 * 10**9 bytes": math.ceil(350e9 / (80 * GiB))})
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from fractions import Fraction

_cases = [(175_000_000_000, 1, 80 * GB), (70_553_706_496, 2, 80 * GB), (70_553_706_496, 0.5, 24 * GB),
          (8_030_261_248, 2, 16 * GB), (671_000_000_000, 1, 141 * GB), (40 * 10**9, 2, 80 * GB),
          (40 * 10**9 + 1, 2, 80 * GB), (1, 4, 80 * GB)]
for _n, _b, _m in _cases:
    _exp = math.ceil(Fraction(_n) * Fraction(_b) / _m)
    check_int(gpus_to_hold_weights(_n, _b, _m), _exp, call=describe_call("gpus_to_hold_weights", _n, _b, _m),
              mistakes={"rounded down: the GPUs must hold *all* the weights (ceil)": int((_n * _b) // _m),
                        "bits instead of bytes": int(-(-(_n * _b * 8) // _m))})
check_int(gpus_to_hold_weights(np.int64(175_000_000_000), 2, np.int64(80 * GB)), 5,
          call="gpus_to_hold_weights with NumPy integer inputs")
### END HIDDEN TESTS

# %%
gpt3 = model("GPT-3 175B")
h100 = HARDWARE["H100 SXM"]
for label, bpp in [("fp16", 2), ("int8", 1)]:
    n = gpus_to_hold_weights(gpt3.n_params, bpp, h100.mem_bytes)
    print(f"GPT-3 175B {label}: weights {format_bytes(gpt3.n_params * bpp, 'GB')} -> {n} x H100 80 GB "
          f"({format_bytes(n * h100.mem_bytes - gpt3.n_params * bpp, 'GB')} left for the cache)")

# %% [markdown]
# In practice you would pick 8 GPUs for fp16 (tensor parallelism likes powers of two that divide
# the head count), and the leftover memory is what the cache gets.
#
# ### Task 3c: the largest batch
#
# Write `max_batch_size(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree=1)`: the
# largest number of sequences whose caches fit. With tensor parallelism over `tp_degree` GPUs,
# the weights and every sequence's cache are split evenly across the GPUs, so the budget is
# `tp_degree * gpu_mem_bytes` minus the weights, once.

# %% solution id=max_batch_size
def max_batch_size(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree=1):
    """Largest batch whose caches fit, weights and caches split evenly over tp_degree GPUs."""
    ### BEGIN SOLUTION
    free = int(tp_degree) * int(gpu_mem_bytes) - int(weight_bytes)
    if free <= 0:
        return 0
    return free // int(per_seq_cache_bytes)
    ### END SOLUTION

# %% tests id=test_max_batch_size points=3
_llama3 = model("Llama-3-8B")
_w3 = _llama3.n_params * 2
_per_seq = 2 * 32 * 8 * 128 * 8192 * 2   # 1 GiB per 8k-token sequence, with the 8 KV heads
check_int(max_batch_size(80 * GB, _w3, _per_seq), 59,
          call="max_batch_size(80 GB, Llama-3-8B bf16 weights, per_seq_cache_bytes=1 GiB)",
          mistakes={"per-sequence cache computed with all 32 query heads (4 GiB): use the 8 KV heads": (80 * GB - _w3) // (4 * _per_seq),
                    "weights not subtracted": 80 * GB // _per_seq})
print("Visible test passed.")
### BEGIN HIDDEN TESTS
_cases = [(80 * GB, _w3, _per_seq, 2), (80 * GB, _w3, _per_seq, 8), (141 * GB, 137_953_296_384, 1_342_177_280, 1),
          (141 * GB, 137_953_296_384, 1_342_177_280, 4), (24 * GB, 13_476_831_232, 2 * GiB, 1),
          (16 * GB, 20 * GB, GiB, 1), (40 * GB, 350 * GB, GiB, 8), (80 * GB, 0, 3, 3)]
for _M, _W, _C, _X in _cases:
    _exp = max(0, (_X * _M - _W) // _C)
    check_int(max_batch_size(_M, _W, _C, _X), _exp, call=describe_call("max_batch_size", _M, _W, _C, tp_degree=_X),
              mistakes={"weights subtracted on every GPU: they are split, so subtract them once from the total": max(0, _X * (_M - _W) // _C),
                        "weights not subtracted": _X * _M // _C,
                        "tp_degree ignored: the cache is split over tp_degree GPUs": max(0, (_M - _W) // _C),
                        "negative when the weights do not fit: return 0": (_X * _M - _W) // _C})
check_int(max_batch_size(80 * GB, _w3, _per_seq, tp_degree=np.int64(4)), (4 * 80 * GB - _w3) // _per_seq,
          call="max_batch_size(..., tp_degree=np.int64(4))")
### END HIDDEN TESTS

# %% [markdown]
# **Llama-3-8B, bf16, 8k context, one 80 GB GPU.** A write-up this course grew from sized the
# cache with all 32 heads, got 4 GiB per sequence and a batch of 16. Llama 3 uses GQA with 8 KV
# heads: each 8k sequence takes 1 GiB, and the batch is almost four times larger.

# %%
llama3 = model("Llama-3-8B")
w_llama3 = llama3.n_params * 2
per_seq = kv_cache_bytes(llama3.n_layers, llama3.n_kv_heads, llama3.head_dim, 8192, 1, 2)
print("weights:", format_bytes(w_llama3, "GB"), "| cache per 8k sequence:", format_bytes(per_seq, "GiB", exact=True))
print("largest batch on one 80 GB GPU:", max_batch_size(80 * GB, w_llama3, per_seq))
for x in (1, 2, 4, 8):
    print(f"  tensor parallel over {x} GPU(s): batch {max_batch_size(80 * GB, w_llama3, per_seq, x)}")

# %% [markdown]
# ## Part 4 — Tensor parallelism has a limit: KV heads
#
# Tensor parallelism splits attention **by heads**: with $X$ GPUs and $H_{kv}$ KV heads, each
# GPU keeps $H_{kv}/X$ KV heads of every sequence. That works while $X \le H_{kv}$. Past that,
# a KV head cannot be split further (its query heads on different GPUs all need all of it), so
# each KV head is **replicated** on $X / H_{kv}$ GPUs: every GPU keeps one full KV head per
# sequence, i.e. $1/H_{kv}$ of a sequence's cache, no matter how many more GPUs you add.
# Weights keep splitting evenly.
#
# ### Task 4: the largest batch with replicated KV heads
#
# Write `max_batch_size_tp(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree,
# n_kv_heads)`. Assume `tp_degree` divides `n_kv_heads` or is a multiple of it. Each GPU holds
# `weight_bytes / tp_degree` of weights and, per sequence, `per_seq_cache_bytes / min(tp_degree,
# n_kv_heads)` of cache. Return the largest batch that fits on every GPU (an exact floor: avoid
# floating point, e.g. multiply out the fractions or use `fractions.Fraction`).

# %% solution id=max_batch_size_tp
def max_batch_size_tp(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree, n_kv_heads):
    """Largest batch with tensor parallelism, KV heads replicated once tp_degree > n_kv_heads."""
    ### BEGIN SOLUTION
    X = int(tp_degree)
    shards = min(X, int(n_kv_heads))  # how many pieces one sequence's cache is cut into
    # per GPU: gpu_mem - W/X >= B * C / shards   <=>   B <= (X*M - W) * shards / (X * C)
    numerator = (X * int(gpu_mem_bytes) - int(weight_bytes)) * shards
    if numerator <= 0:
        return 0
    return numerator // (X * int(per_seq_cache_bytes))
    ### END SOLUTION

# %% tests id=test_max_batch_size_tp points=3
_w3 = model("Llama-3-8B").n_params * 2
_per_seq = 2 * 32 * 8 * 128 * 8192 * 2
check_int(max_batch_size_tp(80 * GB, _w3, _per_seq, 4, 8), (4 * 80 * GB - _w3) // _per_seq,
          call="max_batch_size_tp(80 GB, Llama-3-8B weights, 1 GiB, tp_degree=4, n_kv_heads=8)")
_exp16 = (16 * 80 * GB - _w3) * 8 // (16 * _per_seq)
check_int(max_batch_size_tp(80 * GB, _w3, _per_seq, 16, 8), _exp16,
          call="max_batch_size_tp(80 GB, Llama-3-8B weights, 1 GiB, tp_degree=16, n_kv_heads=8)",
          mistakes={"cache split over all 16 GPUs: with 8 KV heads each GPU still holds 1/8 of every sequence":
                    (16 * 80 * GB - _w3) // _per_seq})
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
_cases = [(80 * GB, _w3, _per_seq, 1, 8), (80 * GB, _w3, _per_seq, 8, 8), (80 * GB, _w3, _per_seq, 32, 8),
          (141 * GB, 137_953_296_384, 1_342_177_280, 16, 8), (80 * GB, 137_953_296_384, 1_342_177_280, 2, 8),
          (80 * GB, 13_476_831_232, 2 * GiB, 64, 32), (24 * GB, 13_476_831_232, 2 * GiB, 2, 1),
          (10 * GB, 700 * GB, GiB, 16, 8), (80 * GB, 14_483_464_192, 10**9 + 7, 12, 4)]
for _M, _W, _C, _X, _h in _cases:
    _exp = max(0, (_X * _M - _W) * min(_X, _h) // (_X * _C))
    _float = max(0, math.floor((_M - _W / _X) / (_C / min(_X, _h))))
    _wrong = {"cache split over every GPU although there are fewer KV heads than GPUs (replicate heads)": max(0, (_X * _M - _W) // _C),
              "weights not split over the GPUs": max(0, (_M - _W) * min(_X, _h) // _C),
              "negative when the weights do not fit: return 0": (_X * _M - _W) * min(_X, _h) // (_X * _C)}
    if _float != _exp:
        _wrong["floating-point rounding: compute the floor with exact integers"] = _float
    check_int(max_batch_size_tp(_M, _W, _C, _X, _h), _exp,
              call=describe_call("max_batch_size_tp", _M, _W, _C, tp_degree=_X, n_kv_heads=_h), mistakes=_wrong)
### END HIDDEN TESTS

# %%
print("Llama-3-8B, 8k context, 80 GB GPUs, 8 KV heads:")
for x in (1, 2, 4, 8, 16, 32):
    even = max_batch_size(80 * GB, w_llama3, per_seq, x)
    real = max_batch_size_tp(80 * GB, w_llama3, per_seq, x, llama3.n_kv_heads)
    print(f"  TP={x:>2}: batch {real:>5}   (an even split would promise {even})")

# %% [markdown]
# Up to 8 GPUs the batch grows a little faster than the GPU count (the weights are paid once).
# From 16 GPUs on, each GPU still holds an eighth of every sequence (one whole KV head of 8), so
# the batch stops growing (about 590 sequences at TP 8, 16 and 32): past $H_{kv}$, tensor
# parallelism buys compute, not cache. To serve more sequences,
# add data-parallel replicas or pipeline stages instead.
#
# ## Part 5 — Sharing heads: GQA, MQA and MLA
#
# * **MHA**: $H_{kv} = H$. **GQA**: $1 < H_{kv} < H$ (Llama-3, Mistral, Llama-2-70B). **MQA**:
#   $H_{kv} = 1$ (Falcon-7B).
# * **MLA** (DeepSeek-V2/V3), as DeepSeek's own inference code runs it, caches no per-head K
#   and V at all: each layer stores one compressed latent of `kv_lora_rank` numbers plus a
#   `rope` key of `qk_rope_head_dim` numbers, and attention works on the latent directly (the
#   up-projections are folded into the query and output matrices). An implementation that
#   decompresses the latent and caches per-head K and V (Hugging Face's eager DeepSeek-V3 does)
#   gives up the saving. Per token: $L \cdot (r_{kv} + d_{rope}) \cdot s$ bytes,
#   with no factor 2 (the latent serves K and V alike).
#
# ### Task 5: bytes per token for any model
#
# Write `model_kv_bytes_per_token(spec, bytes_per_elem)` for a `ModelSpec`: use
# `spec.n_kv_heads` for MHA/GQA/MQA and the latent (`spec.mla_kv_lora_rank`,
# `spec.mla_rope_dim`) when `spec.attention == "MLA"`. The cache dtype is a separate choice
# from the weights' dtype, so it is an argument.

# %% solution id=model_kv_bytes_per_token
def model_kv_bytes_per_token(spec, bytes_per_elem):
    """Cache bytes per token of a model: per-head K and V, or MLA's shared latent."""
    ### BEGIN SOLUTION
    if spec.attention == "MLA":
        latent = spec.mla_kv_lora_rank + spec.mla_rope_dim
        return int(spec.n_layers * latent * bytes_per_elem)
    return kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim, bytes_per_elem)
    ### END SOLUTION

# %% tests id=test_model_kv_bytes_per_token points=2
check_int(model_kv_bytes_per_token(model("Mistral-7B"), 2), 131_072,
          call="model_kv_bytes_per_token(model('Mistral-7B'), 2)",
          mistakes={"used all 32 query heads: Mistral keeps 8 KV heads": 524_288})
check_int(model_kv_bytes_per_token(model("DeepSeek-V2"), 2), 69_120,
          call="model_kv_bytes_per_token(model('DeepSeek-V2'), 2)",
          mistakes={"MLA stores one latent per layer, not K and V: no factor 2": 138_240,
                    "MLA: used the config's 128 KV heads instead of the latent": 2 * 60 * 128 * 128 * 2})
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
from dataclasses import replace as _replace

for _name in MODELS:
    _m = model(_name)
    for _s in (1, 2, 4):
        if _m.attention == "MLA":
            _exp = _m.n_layers * (_m.mla_kv_lora_rank + _m.mla_rope_dim) * _s
            _wrong = {"MLA stores one latent per layer, not K and V: no factor 2": 2 * _exp,
                      "MLA: per-head K and V used instead of the latent": 2 * _m.n_layers * _m.n_kv_heads * _m.head_dim * _s,
                      "MLA: rope key dimension forgotten": _m.n_layers * _m.mla_kv_lora_rank * _s}
        else:
            _exp = 2 * _m.n_layers * _m.n_kv_heads * _m.head_dim * _s
            _wrong = {f"used all {_m.n_heads} query heads instead of the {_m.n_kv_heads} KV heads": 2 * _m.n_layers * _m.n_heads * _m.head_dim * _s,
                      "used d_model instead of n_kv_heads * head_dim": 2 * _m.n_layers * _m.d_model * _s}
        check_int(model_kv_bytes_per_token(_m, _s), _exp, call=f"model_kv_bytes_per_token(model({_name!r}), {_s})",
                  mistakes=_wrong)
# a made-up MLA model the notebook never shows
_toy = _replace(model("DeepSeek-V2"), name="toy-MLA", n_layers=7, mla_kv_lora_rank=96, mla_rope_dim=32)
check_int(model_kv_bytes_per_token(_toy, 2), 7 * 128 * 2, call="model_kv_bytes_per_token(toy MLA model, 2)")
### END HIDDEN TESTS

# %% [markdown]
# **Checking a claim.** "Mistral-7B saves 4x cache memory vs Llama-2-7B by using GQA with 8
# KV heads instead of 32." Same layers (32), same head dimension (128), both 2 bytes per number
# (fp16 vs bf16): the ratio of per-token sizes is exactly $32 / 8 = 4$. And Mistral-7B goes
# further: its sliding window of 4,096 tokens lets a rolling buffer overwrite the oldest entries,
# so past 4k tokens its cache stops growing at all.

# %%
mistral, llama2 = model("Mistral-7B"), model("Llama-2-7B")
ratio = model_kv_bytes_per_token(llama2, 2) / model_kv_bytes_per_token(mistral, 2)
print(f"Llama-2-7B / Mistral-7B bytes per token: {ratio} (exactly {llama2.n_kv_heads} / {mistral.n_kv_heads})")
S = 32768
llama_32k = model_kv_bytes_per_token(llama2, 2) * S
mistral_32k = model_kv_bytes_per_token(mistral, 2) * min(S, mistral.sliding_window)
print(f"at {S:,} tokens: Llama-2-7B {format_bytes(llama_32k, 'GiB')}, Mistral-7B with its rolling buffer "
      f"{format_bytes(mistral_32k, 'GiB')} -> {llama_32k / mistral_32k:.0f}x")

# %%
import matplotlib.pyplot as plt

names = ["Llama-2-7B", "Llama-2-70B (MHA)", "Llama-2-70B", "Llama-3-8B", "Mistral-7B", "Qwen2.5-7B",
         "Gemma-2-9B", "Falcon-7B", "DeepSeek-V2", "DeepSeek-V3"]
kib = [model_kv_bytes_per_token(model(n), 2) / 2**10 for n in names]
colors = {"MHA": "tab:red", "GQA": "tab:blue", "MQA": "tab:green", "MLA": "tab:purple"}
fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
ax.barh(names, kib, color=[colors[model(n).attention] for n in names])
ax.set_xscale("log")
ax.set_xlabel("KV cache per token, 16-bit cache (KiB, log scale)")
ax.set_title("Cache per token: MHA vs GQA vs MQA vs MLA")
for attention, color in colors.items():
    ax.barh([], [], color=color, label=attention)
ax.legend(loc="lower right")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# DeepSeek-V2 reports a 93.3% smaller cache than DeepSeek 67B. With the formulas above, MLA
# alone gives 82%. The paper does not show how the rest arises; our reconstruction: its
# deployed model quantizes the cache to about 6 bits per element on average (§3.2.3), and MLA
# at 6 bits gives the 93.3% exactly.

# %%
ds67 = 2 * 95 * 8 * 128 * 2   # DeepSeek LLM 67B: 95 layers, 8 KV heads of 128, bf16
ds_v2 = model_kv_bytes_per_token(model("DeepSeek-V2"), 2)
print(f"DeepSeek-V2 (MLA, bf16) / DeepSeek 67B (GQA, bf16) = {ds_v2 / ds67:.3f} -> {1 - ds_v2 / ds67:.1%} smaller")
print(f"with ~6-bit cache entries: {ds_v2 * 6 / 16 / ds67:.3f} -> {1 - ds_v2 * 6 / 16 / ds67:.1%} smaller")

# %% [markdown]
# ## Part 6 — Pre-allocation waste
#
# A simple server reserves a cache of `max_seq_len` tokens for every sequence when it starts,
# because it does not know how long the answer will be. Tokens that are never generated leave
# their slots empty. (PagedAttention in vLLM allocates the cache in small blocks on demand; its
# authors report 60–80% of cache memory wasted in earlier systems.)
#
# ### Task 6
#
# Write `preallocation_waste(max_seq_len, actual_lens)`: the fraction of a pre-allocated cache
# (`max_seq_len` slots for each sequence in `actual_lens`) that is never used, a float in
# [0, 1]. `actual_lens` may be a list, a tuple or a 1-D NumPy array of ints (the tests pass all
# three; `len(actual_lens)` works for each, `if not actual_lens` does not work for an array).
# Raise `ValueError` if `actual_lens` is empty, if a length is negative, or if a length exceeds
# `max_seq_len` (that sequence would not fit).

# %% solution id=preallocation_waste
def preallocation_waste(max_seq_len, actual_lens):
    """Fraction of a cache pre-allocated at max_seq_len per sequence that is never used."""
    ### BEGIN SOLUTION
    lengths = [int(n) for n in actual_lens]
    if not lengths:
        raise ValueError("actual_lens is empty")
    for n in lengths:
        if n < 0 or n > max_seq_len:
            raise ValueError(f"each length must be in [0, max_seq_len={max_seq_len}], got {n}")
    reserved = max_seq_len * len(lengths)
    used = sum(lengths)
    return 1 - used / reserved
    ### END SOLUTION

# %% tests id=test_preallocation_waste points=2
def _waste(max_seq_len, lens, call):
    # an array's truth value is ambiguous: name that mistake instead of showing a bare traceback
    try:
        return preallocation_waste(max_seq_len, lens)
    except ValueError as exc:
        if "truth value of an array" in str(exc) or "could not be broadcast" in str(exc):
            raise AnswerError(f"{call} raised ValueError: {exc}\n  Likely mistake: tested emptiness with "
                              "`not actual_lens` or `actual_lens == []`, which fails for a NumPy array; "
                              "use len(actual_lens) == 0") from None
        raise


check_real(preallocation_waste(32768, [1024] * 32), 0.96875, call="preallocation_waste(32768, [1024] * 32)",
           mistakes={"returned the used fraction; the task asks for the unused (wasted) fraction": 0.03125})
_call = "preallocation_waste(100, np.array([25, 50, 75]))"
check_real(_waste(100, np.array([25, 50, 75]), _call), 0.5, call=_call)
print("Visible test passed.")
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(20261123)
for _trial in range(6):
    _smax = int(_rng.integers(16, 20000))
    _lens = _rng.integers(0, _smax + 1, size=int(_rng.integers(1, 50)))
    _exp = 1 - float(np.sum(_lens)) / (_smax * len(_lens))
    _call = f"preallocation_waste({_smax}, <NumPy array of {len(_lens)} lengths>)"
    check_real(_waste(_smax, _lens, _call), _exp, call=_call,
               rel=1e-9, mistakes={"returned the used fraction instead of the wasted one": 1 - _exp,
                                   "returned a percentage: the task asks for a fraction in [0, 1]": 100 * _exp})
check_real(preallocation_waste(4096, [4096, 4096]), 0.0, call="preallocation_waste(4096, [4096, 4096])")
check_real(preallocation_waste(100, (0,)), 1.0, call="preallocation_waste(100, (0,))")
_call = "preallocation_waste(10, np.array([1, 2, 3], dtype=np.int32))"
check_real(_waste(10, np.array([1, 2, 3], dtype=np.int32), _call), 0.8, call=_call)
expect_error(preallocation_waste, (100, []), None, ValueError, "no sequences")
expect_error(preallocation_waste, (100, np.array([], dtype=np.int64)), None, ValueError, "no sequences (an empty array)")
expect_error(preallocation_waste, (100, [50, 101]), None, ValueError, "a sequence longer than max_seq_len")
expect_error(preallocation_waste, (100, [50, -1]), None, ValueError, "a negative length")
### END HIDDEN TESTS

# %%
waste = preallocation_waste(32768, [1024] * 32)
per_token_llama2 = model_kv_bytes_per_token(model("Llama-2-7B"), 2)
wasted_bytes = 32 * (32768 - 1024) * per_token_llama2
print(f"Llama-2-7B fp16, batch 32, max_seq_len 32768, average length 1024: {waste:.2%} of the cache is never used")
print("wasted:", format_bytes(wasted_bytes, "GiB", exact=True), "=", format_bytes(wasted_bytes, "GB"))

# %% [markdown]
# 496 GiB reserved for nothing: more than six 80 GB GPUs. This is why production servers
# allocate the cache in pages as sequences grow.
#
# ## Part 7 — Written answers
#
# Answer in your own words, each with a number or a counter-example from this lab.
#
# **Question 7a (4 points).** The four pitfalls: (1) where the factor 2 comes from; (2) when
# $d_\text{model}$ and $H_{kv} \cdot d_h$ differ, with an example; (3) is the cache always in
# the same dtype as the weights? (4) why pre-allocation wastes memory, with this lab's number.

# %% [markdown] answer id=pitfalls points=4
# 1. **The 2**: each layer caches a key *and* a value vector per KV head and token; both are
#    needed by later tokens (the key to score, the value to mix). Dropping it halves every size.
# 2. **$d_\text{model}$ vs $H_{kv} d_h$**: they agree only for MHA with $H d_h = d_\text{model}$.
#    With GQA the cache holds $H_{kv}$ heads: Llama-3-8B has $d_\text{model} = 4096$ but caches
#    $8 \cdot 128 = 1024$ numbers per layer for K (and as many for V), so using $d_\text{model}$
#    overstates its cache 4x (4 GiB instead of 1 GiB per 8k sequence). Gemma-2-9B even has
#    $H d_h = 4096 \ne d_\text{model} = 3584$.
# 3. **dtype**: no. The cache dtype is a serving choice: fp16/bf16 usually, but fp8 or int8 caches
#    halve it again (DeepSeek-V3 ships fp8 weights while its cache is commonly kept in bf16), and
#    frameworks let the cache dtype differ from the weights because the cache, not the weights,
#    grows with batch and context.
# 4. **Pre-allocation**: reserving 32,768 slots per sequence when the average is 1,024 wastes
#    96.9% of the cache: 496 GiB for Llama-2-7B at batch 32.

# %% [markdown]
# **Question 7b (2 points).** Things I got wrong the first time: list at least one mistake you
# made (or nearly made) in this lab, how a test or a number revealed it, and what you changed.

# %% [markdown] answer id=got_wrong points=2
# * I first used $d_\text{model}$ for Llama-3-8B and got 4 GiB per 8k sequence; the GQA test
#   named the 4x and I switched to $H_{kv} \cdot d_h$.
# * I compared "80 GB" with my GiB figures; 80 GB is only 74.5 GiB, so my first batch size was
#   too large by a few sequences.
# * With NumPy `int32` inputs my product wrapped around to a negative number; converting with
#   `int()` fixed it.
