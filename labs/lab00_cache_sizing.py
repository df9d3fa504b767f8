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
# **Conventions used everywhere in this course.** Sizes are exact integers in *bytes*. Two
# prefixes are in use and every number printed here says which: decimal, $1\ \text{GB} =
# 10^9$ bytes, and binary, $1\ \text{GiB} = 2^{30}$ bytes $= 1.0737 \cdot 10^9$ bytes. Memory
# *bandwidths* are decimal (TB/s). GPU memory *capacities* are binary, whatever the label
# says: a card sold as "80GB" holds about 80 GiB (Part 3 shows the numbers).
#
# | Part | Graded | Points |
# |---|---|---|
# | 1 | `kv_bytes_per_token`: the size 2, input checks 1 | 3 |
# | 1 | `kv_cache_bytes`: the size 2, input checks 1 | 3 |
# | 1 | NumPy `int32` inputs (both functions) | 1 |
# | 2 | `cache_size_table` | 3 |
# | 3 | `max_context_len` | 2 |
# | 3 | `gpus_to_hold_weights` | 2 |
# | 3 | `max_batch_size` | 2 |
# | 4 | `max_batch_size_tp` | 2 |
# | 5 | `model_kv_bytes_per_token` | 2 |
# | 6 | `preallocation_waste`: the fraction 2, NumPy arrays 1, input checks 1 | 4 |
# | 7 | written answers (graded by hand) | 6 |
# | | **total** | **30** |
#
# Each task has a visible test you can run now. More tests, on inputs you have not seen, run
# when the lab is graded: make your functions correct in general, not just on the examples.
# Checking inputs and handling NumPy integers are graded in their own small tests, so a
# correct computation keeps its points even if a check is missing.

# %%
import math

import numpy as np
import pandas as pd

from course_lib.grading import check_int, check_real, describe_call, expect_error
from course_lib.specs import (
    HARDWARE,
    MODELS,
    VLLM_GPU_MEMORY_UTILIZATION,
    hardware,
    model,
    usable_bytes,
)
from course_lib.units import GB, GiB, MiB, dtype_bytes, format_bytes

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

# %% tests id=test_kv_bytes_per_token points=2
# Llama-2-7B in fp16: 32 layers, 32 KV heads of dimension 128, 2 bytes per number.
check_int(kv_bytes_per_token(32, 32, 128, 2), 524_288,
          call="kv_bytes_per_token(n_layers=32, n_kv_heads=32, head_dim=128, bytes_per_elem=2)",
          mistakes={"bits instead of bytes: fp16 is 2 bytes, not 16": 8 * 524_288,
                    "forgot the factor 2 (the cache stores K *and* V)": 524_288 // 2}, generic=False)
# Llama-3-8B in bf16 keeps only 8 KV heads (GQA).
check_int(kv_bytes_per_token(32, 8, 128, 2), 131_072,
          call="kv_bytes_per_token(n_layers=32, n_kv_heads=8, head_dim=128, bytes_per_elem=2)",
          mistakes={"bits instead of bytes: bf16 is 2 bytes, not 16": 8 * 131_072,
                    "forgot the factor 2 (the cache stores K *and* V)": 131_072 // 2}, generic=False)
print("Visible tests passed: 524,288 B per token for Llama-2-7B, 131,072 B for Llama-3-8B.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _bytes_per_token_case(L, h, d, s):
    """2 L h d s bytes, and what each slip returns instead."""
    right = int(2 * L * h * d * s)
    return Case((L, h, d, s), right, {
        "bits instead of bytes (used the bit width, 8x too large)": 8 * right,
        "forgot the factor 2 for K and V": right // 2 if right % 2 == 0 else None,
        "forgot a factor: n_layers missing": int(2 * h * d * s),
        "forgot a factor: bytes_per_elem missing": 2 * L * h * d})


check_cases(kv_bytes_per_token, [_bytes_per_token_case(*sizes) for sizes in [
    (12, 12, 64, 2), (80, 8, 128, 2), (4, 2, 32, 4), (61, 1, 576, 2), (96, 96, 128, 1),
    (42, 8, 256, 2), (1, 1, 1, 1), (7, 3, 5, 4), (126, 8, 128, 8), (32, 8, 128, 0.5)]])
### END HIDDEN TESTS

# %% tests id=test_kv_bytes_per_token_validation points=1
expect_error(kv_bytes_per_token, (-1, 8, 128, 2), None, ValueError, "a negative number of layers is invalid")
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases

for _bad in [(32, -8, 128, 2), (32, 8, -128, 2), (32, 8, 128, -2), (-32, -8, -128, -2)]:
    expect_error(kv_bytes_per_token, _bad, None, ValueError, "negative sizes are invalid")
check_cases(kv_bytes_per_token, [Case(sizes, 0, errors={"ValueError": "zero is allowed and gives 0"})
                                 for sizes in [(0, 8, 128, 2), (32, 0, 128, 2), (32, 8, 128, 0)]])
### END HIDDEN TESTS

# %% [markdown]
# ### Task 1b: the whole cache
#
# Write `kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem)`:
# the bytes of the cache for `batch_size` sequences of `seq_len` tokens each. Reuse
# `kv_bytes_per_token`. Same rules: exact `int`, NumPy integers allowed (convert `seq_len` and
# `batch_size` with `int()` too), `ValueError` for negative arguments, zero allowed.

# %% solution id=kv_cache_bytes
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    """Bytes of the KV cache for batch_size sequences of seq_len tokens."""
    ### BEGIN SOLUTION
    if seq_len < 0 or batch_size < 0:
        raise ValueError(f"seq_len and batch_size must be >= 0, got {seq_len} and {batch_size}")
    per_token = kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem)
    return per_token * int(seq_len) * int(batch_size)
    ### END SOLUTION

# %% tests id=test_kv_cache_bytes points=2
# Llama-2-7B, fp16, one sequence of 4096 tokens: exactly 2 GiB.
check_int(kv_cache_bytes(32, 32, 128, 4096, 1, 2), 2 * GiB,
          call="kv_cache_bytes(n_layers=32, n_kv_heads=32, head_dim=128, seq_len=4096, batch_size=1, bytes_per_elem=2)",
          mistakes={"seq_len forgotten: the cache grows with every token": 2 * GiB // 4096,
                    "bits instead of bytes": 8 * 2 * GiB}, generic=False)
print("Llama-2-7B, 4096 tokens:", format_bytes(kv_cache_bytes(32, 32, 128, 4096, 1, 2), "GiB", exact=True))
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _cache_case(L, h, d, S, B, s):
    """2 L h d S B s bytes, and what each slip returns instead."""
    right = int(2 * L * h * d * S * B * s)
    return Case((L, h, d, S, B, s), right, {
        "batch forgotten: each of the batch_size sequences has its own cache": right // B,
        "seq_len forgotten: the cache grows with every token": right // S,
        "bits instead of bytes": 8 * right,
        "forgot the factor 2 for K and V": right // 2})


check_cases(kv_cache_bytes, [_cache_case(*sizes) for sizes in [
    (32, 8, 128, 8192, 1, 2), (80, 8, 128, 4096, 16, 2), (4, 2, 32, 10_000, 3, 4), (96, 96, 128, 2048, 64, 2),
    (12, 12, 64, 1, 1, 2), (61, 1, 576, 131_072, 7, 1), (32, 8, 128, 1000, 5, 0.5)]])
### END HIDDEN TESTS

# %% tests id=test_kv_cache_bytes_validation points=1
expect_error(kv_cache_bytes, (32, 8, 128, -1, 1, 2), None, ValueError, "a negative seq_len is invalid")
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases

for _bad, _why in [((32, 8, 128, 10, -1, 2), "a negative batch_size is invalid"),
                   ((32, 8, 128, -10, -1, 2), "negative sizes are invalid")]:
    expect_error(kv_cache_bytes, _bad, None, ValueError, _why)
check_cases(kv_cache_bytes, [Case(sizes, 0, errors={"ValueError": "zero is allowed and gives 0"})
                             for sizes in [(32, 8, 128, 0, 5, 2), (32, 8, 128, 4096, 0, 2)]])
### END HIDDEN TESTS

# %% [markdown]
# **NumPy integers.** Configs read from arrays hand you `np.int32` values. The next test calls
# both functions with them: a product that overflows 32 bits must still come out exact.

# %% tests id=test_numpy_int32_inputs points=1
import warnings as _w

_INT32_SLIP = "int32 overflow: NumPy int32 inputs wrap around; convert them with int() first"


def _quietly(f):
    """f, with NumPy's overflow warnings silenced (the test names the overflow itself)."""
    def call(*args):
        with _w.catch_warnings(), np.errstate(all="ignore"):
            _w.simplefilter("ignore")
            return f(*args)
    call.__name__ = getattr(f, "__name__", "function")
    return call


def _wrapped(n):
    return int(np.int64(n).astype(np.int32))


# Llama-3.1-70B, 131,072 tokens, batch 64, every size an np.int32
_args = tuple(np.int32(x) for x in (80, 8, 128, 131_072, 64)) + (2,)
_exp = 2 * 80 * 8 * 128 * 131_072 * 64 * 2
check_int(_quietly(kv_cache_bytes)(*_args), _exp,
          call="kv_cache_bytes(np.int32(80), np.int32(8), np.int32(128), np.int32(131072), np.int32(64), 2)",
          mistakes={_INT32_SLIP: _wrapped(_exp)}, generic=False)
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _int32_case(sizes, bytes_per_elem):
    """Every size an np.int32: the exact bytes, and what an int32 product wraps around to."""
    right = 2 * math.prod(sizes) * bytes_per_elem
    return Case((*(np.int32(n) for n in sizes), bytes_per_elem), right, {_INT32_SLIP: _wrapped(right)})


check_cases(_quietly(kv_bytes_per_token), [_int32_case((1000, 1000, 1000), 4)])
check_cases(_quietly(kv_cache_bytes), [_int32_case((96, 96, 128, 32768, 64), 2)])
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 — Real models
#
# `course_lib.specs.MODELS` holds the configurations of real models, each with its sources
# (`model("Llama-3-8B").sources`). Every figure below is computed from that table, never typed.
# The `weight dtype` column is the dtype each model's weights were released in; `window` says
# which layers attend only to a sliding window of recent tokens.

# %%
from course_lib.specs import models_table

models_table()[["L", "H", "H_kv", "d_h", "d_model", "attention", "weight dtype", "window", "sources"]]

# %% [markdown]
# ### Task 2: the forward table
#
# Write `cache_size_table(names, seq_lens, cache_dtype)`. For each model name, look up its
# spec with `model(name)`. Return a `pandas.DataFrame` indexed by model name with these `int`
# columns:
#
# * `"per_token"`: bytes per token (one sequence);
# * one column per sequence length `S` in `seq_lens`, named `f"S={S}"`: bytes for one sequence
#   of `S` tokens.
#
# Two rules, stated here because real models differ:
#
# * **The cache dtype is an input**, the same for every row: `dtype_bytes(cache_dtype)` bytes
#   per number (`"bf16"` gives 2, `"fp8"` gives 1, `"fp32"` gives 4). It is a serving choice,
#   not the weights' dtype: DeepSeek-V3 was released with fp8 weights, while DeepSeek's own
#   inference code keeps its cache in bf16; vLLM stores the cache in the model's dtype unless
#   it is told `--kv-cache-dtype fp8`. Do not use `spec.dtype` here.
# * **Ignore sliding windows.** The table gives the full-attention size: every layer keeps all
#   `S` tokens. (Mistral-7B and half of Gemma-2-9B's layers only attend to the last 4,096
#   tokens; Part 5 shows what that saves.) Use the number of **KV** heads of each model.
#
# Some sequence lengths are longer than a model was trained for; the table still shows what
# the cache would take. (MLA models have their own formula, in Part 5; the table is not asked
# for them.)

# %% solution id=cache_size_table
def cache_size_table(names, seq_lens, cache_dtype):
    """DataFrame of KV-cache bytes per token and per sequence of each length, one row per model."""
    ### BEGIN SOLUTION
    bytes_per_elem = dtype_bytes(cache_dtype)
    rows = {}
    for name in names:
        spec = model(name)
        per_token = kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim, bytes_per_elem)
        row = {"per_token": per_token}
        for seq_len in seq_lens:
            row[f"S={seq_len}"] = per_token * seq_len
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
    ### END SOLUTION

# %%
TABLE_MODELS = ["GPT-2 small", "Llama-2-7B", "Llama-2-13B", "Llama-2-70B (MHA)", "GPT-3 175B"]
table = cache_size_table(TABLE_MODELS, [4096, 32768], "fp16")
readable = table.map(lambda b: format_bytes(b, "auto-binary"))
readable

# %% [markdown]
# The course's own MiniGPT (Lab 01) runs in fp32, so its cache is sized with 4 bytes per number:

# %%
cache_size_table(["MiniGPT"], [256, 4096], "fp32")

# %% tests id=test_cache_size_table points=3
from course_lib.grading import Case, check_cases


def _table_cases(names, seq_lens, cache_dtype):
    """Every cell of the table: its bytes, and what each slip would put there."""
    s = dtype_bytes(cache_dtype)
    for name in names:
        spec = model(name)
        per_layer = int(2 * spec.n_kv_heads * spec.head_dim * s)   # K and V of one token in one layer
        per_token = spec.n_layers * per_layer
        all_heads = int(2 * spec.n_layers * spec.n_heads * spec.head_dim * s)
        d_model = int(2 * spec.n_layers * spec.d_model * s)
        wrong = {"bits instead of bytes (8x too large)": 8 * per_token,
                 "forgot the factor 2 (the cache stores K *and* V)": per_token // 2}
        if all_heads != per_token and all_heads == d_model:
            wrong[f"used all {spec.n_heads} query heads (or d_model = {spec.d_model}) instead of the "
                  f"{spec.n_kv_heads} KV heads: the cache holds n_kv_heads * head_dim numbers per layer"] = all_heads
        elif all_heads != per_token:
            wrong[f"used all {spec.n_heads} query heads instead of the {spec.n_kv_heads} KV heads"] = all_heads
        if d_model != per_token and d_model != all_heads:
            wrong[f"used d_model={spec.d_model} instead of n_kv_heads * head_dim = {spec.n_kv_heads * spec.head_dim}"] = d_model
        weight_s = dtype_bytes(spec.dtype)
        if weight_s != s:
            wrong[f"used the weights' dtype ({spec.dtype}, spec.dtype) instead of cache_dtype={cache_dtype!r}"] = \
                int(per_token * weight_s / s)
        if s != 2:
            wrong[f"ignored cache_dtype={cache_dtype!r}: assumed 2 bytes per number"] = int(per_token * 2 / s)
        yield Case((name, "per_token"), per_token, wrong,
                   call=f"cache_size_table(..., {cache_dtype!r}).loc[{name!r}, 'per_token']")
        for S in seq_lens:
            wrong_S = {k: v * S for k, v in wrong.items()}
            if spec.sliding_window and S > spec.sliding_window:
                windowed = per_layer * ((spec.n_layers - spec.n_window_layers) * S + spec.n_window_layers * spec.sliding_window)
                wrong_S["applied the sliding window: this table ignores windows (every layer keeps all S tokens)"] = windowed
            yield Case((name, f"S={S}"), per_token * S, wrong_S,
                       call=f"cache_size_table(..., {cache_dtype!r}).loc[{name!r}, 'S={S}']")


def _check_table(df, names, seq_lens, cache_dtype):
    assert isinstance(df, pd.DataFrame), f"cache_size_table should return a pandas DataFrame, got {type(df).__name__}"
    missing = [n for n in names if n not in df.index]
    assert not missing, f"rows missing from the table (index should be the model names): {missing}"
    for col in ["per_token"] + [f"S={S}" for S in seq_lens]:
        assert col in df.columns, f"column {col!r} missing; columns are {list(df.columns)}"
    check_cases(lambda name, column: df.loc[name, column], _table_cases(names, seq_lens, cache_dtype))

# a bf16 cache for every row, even for MiniGPT, whose weights are fp32
_check_table(cache_size_table(["Llama-3-8B", "MiniGPT"], [4096], "bf16"), ["Llama-3-8B", "MiniGPT"], [4096], "bf16")
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
_names = ["Llama-3-8B", "Llama-2-70B", "Falcon-7B", "Gemma-2-9B", "Mistral-7B", "Qwen2.5-7B", "GPT-2 XL", "Mixtral-8x7B"]
for _models, _seq_lens, _dtype in [(TABLE_MODELS, [4096, 32768], "fp16"), (["MiniGPT", "Llama-3-8B"], [1, 4096], "fp32"),
                                   (_names, [1, 1000, 131072], "bf16"), (_names, [4096, 32768], "fp8")]:
    _check_table(cache_size_table(_models, _seq_lens, _dtype), _models, _seq_lens, _dtype)
### END HIDDEN TESTS

# %% [markdown]
# A quick look: at 32k tokens a single GPT-3-sized MHA sequence needs 144 GiB of cache
# (154.6 GB). That is more than an H100 (79.65 GiB reported) or an H200 (140.4 GiB) holds. An
# MI300X (192 GiB) would hold it with 48 GiB to spare, but GPT-3's fp16 weights alone are
# 326 GiB. The ratio between rows is worth a glance too: Llama-2-70B (MHA) stores $80 \cdot 64$
# KV heads per token, 8 times the real Llama-2-70B, which uses GQA (Part 5). The cell below
# computes each of these numbers.

# %%
gpt3_32k = int(table.loc["GPT-3 175B", "S=32768"])
print("GPT-3 175B, one 32,768-token sequence:", format_bytes(gpt3_32k, "GiB"), "=", format_bytes(gpt3_32k, "GB"))
for name in ["H100 SXM", "H200 SXM", "MI300X"]:
    dev = hardware(name)
    left = dev.mem_bytes - gpt3_32k
    print(f"  {name} ({dev.mem_label} label, {format_bytes(dev.mem_bytes, 'GiB')} reported): "
          + (f"holds it, {format_bytes(left, 'GiB')} left" if left >= 0 else "cannot hold it"))
gpt3_weights = model("GPT-3 175B").n_params * 2
print("GPT-3 175B fp16 weights:", format_bytes(gpt3_weights, "GiB"), "=", format_bytes(gpt3_weights, "GB"))
per_token_70b = cache_size_table(["Llama-2-70B (MHA)", "Llama-2-70B"], [1], "fp16")["per_token"]
print("Llama-2-70B (MHA) / Llama-2-70B per token:", per_token_70b["Llama-2-70B (MHA)"] / per_token_70b["Llama-2-70B"])

# %% [markdown]
# ## Part 3 — Reverse problems: what fits?
#
# ### How much memory does a GPU have?
#
# Three different numbers hide behind "an 80GB GPU":
#
# 1. **The label.** "80GB" is the product's name, not a byte count.
# 2. **The capacity the card reports.** GPU memory is built in binary sizes, so an "80GB" card
#    holds about 80 GiB $= 85.9 \cdot 10^9$ bytes, *more* than $80 \cdot 10^9$; the driver keeps
#    a little of it. `nvidia-smi` reports 81920 MiB (exactly 80 GiB) for an A100 80GB and
#    81559 MiB (79.65 GiB) for an H100 80GB HBM3; an L4 sold as "24GB" reports 23034 MiB
#    (22.49 GiB). `HardwareSpec.mem_bytes` holds this reported capacity in bytes, with its
#    source; `mem_label` keeps the label.
# 3. **What you can use.** The CUDA context, the framework's allocator and the activations of
#    each forward pass need memory too, and a server that fills the card dies of an
#    out-of-memory error at the first spike. Real sizing starts from a **usable budget**, a
#    stated fraction of the reported capacity. vLLM, a widely used inference server, lets its
#    engine use 90% of the GPU by default (`gpu_memory_utilization=0.9`): that budget holds the
#    weights, the activations and the KV cache, and whatever the weights and activations leave
#    goes to the cache.
#
# This lab follows the same rule, simplified: the budget for weights plus cache is
# `usable_bytes(device)` $= \lfloor 0.9 \times$ reported capacity$\rfloor$ (from
# `course_lib.specs`), and the 10% left over is assumed to cover the CUDA context and the
# activations. One stated fraction is the honest minimum: it is what a serving engine would
# really hand to the cache, it is one number you can change, and it keeps you from sizing
# against a label. Reading "80GB" as $80 \cdot 10^9$ bytes is wrong twice: it understates the
# card by 7%, and it forgets that the card cannot be filled to the last byte.

# %%
for name in ["A100 40GB SXM", "A100 80GB SXM", "H100 SXM", "L4"]:
    dev = hardware(name)
    label_as_decimal = int(dev.mem_label.removesuffix("GB")) * GB
    print(f"{name:14s} label {dev.mem_label:>5s} | read as decimal {format_bytes(label_as_decimal, 'GB')} "
          f"| reported {dev.mem_bytes // MiB} MiB = {format_bytes(dev.mem_bytes, 'GiB')} = "
          f"{format_bytes(dev.mem_bytes, 'GB')} | usable ({VLLM_GPU_MEMORY_UTILIZATION:.0%}) "
          f"{format_bytes(usable_bytes(dev), 'GiB')}")

# %% [markdown]
# Whatever the budget $M$ leaves after the weights $W$ bounds the cache:
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
# the weights in a budget of `mem_bytes` bytes (in the examples, `usable_bytes(device)`).
# Work in exact integers (floor division `//`).

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

# %% tests id=test_max_context_len points=2
_llama2_7b = model("Llama-2-7B")
_budget = usable_bytes(hardware("A100 40GB SXM"))   # 90% of the 40 GiB an A100 40GB reports
_w_bytes = _llama2_7b.n_params * 2                  # fp16 weights
_per_token = 2 * 32 * 32 * 128 * 2
check_int(max_context_len(_budget, _w_bytes, 32, 32, 128, 1, 2), (_budget - _w_bytes) // _per_token,
          call="max_context_len(usable_bytes(A100 40GB), Llama-2-7B fp16 weights, 32, 32, 128, batch_size=1, 2)",
          mistakes={"weights not subtracted": _budget // _per_token,
                    "rounded up: the largest context that fits rounds down": -(-(_budget - _w_bytes) // _per_token)},
          generic=False)
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _context_case(M, W, L, h, d, B, s):
    """The largest S with B * S * (2 L h d s) <= M - W (0 when nothing fits), and each slip's value."""
    per_token, free = 2 * L * h * d * s, M - W
    return Case((M, W, L, h, d, B, s), max(0, free // (per_token * B)), {
        "weights not subtracted": M // (per_token * B),
        "batch forgotten: the free memory is shared by batch_size sequences": max(0, free // per_token),
        "rounded up: the largest context that fits rounds down": -(-free // (per_token * B)),
        "negative when the weights do not fit: return 0": free // (per_token * B)})


_fp16_weights = {name: model(name).n_params * 2 for name in ("Llama-3-8B", "Llama-2-7B", "Llama-2-70B")}
check_cases(max_context_len, [_context_case(*c) for c in [
    (usable_bytes(hardware("H100 SXM")), _fp16_weights["Llama-3-8B"], 32, 8, 128, 1, 2),
    (usable_bytes(hardware("H100 SXM")), _fp16_weights["Llama-3-8B"], 32, 8, 128, 32, 2),
    (usable_bytes(hardware("RTX 4090")), _fp16_weights["Llama-2-7B"], 32, 32, 128, 4, 2),
    (usable_bytes(hardware("H200 SXM")), _fp16_weights["Llama-2-70B"], 80, 8, 128, 3, 2),
    (usable_bytes(hardware("T4")), 20 * GiB, 32, 8, 128, 1, 2),
    (16 * GiB, 16 * GiB, 32, 8, 128, 1, 2),
    (2 * GiB, 0, 4, 2, 32, 1, 4), (10**12 + 7, 3, 61, 1, 576, 9, 1)]])
### END HIDDEN TESTS

# %% [markdown]
# **Llama-2-7B on an A100 40GB.** Its weights are $6{,}738{,}415{,}616 \times 2$ bytes
# $= 13.48$ GB (12.55 GiB). (The seed handout this lab grew from assumed "14 GiB" of weights,
# 15.03 GB: close, but not the model.) The cell compares three readings of the card's memory:
# the label read as decimal bytes (wrong), the capacity it reports, and the usable budget.

# %%
llama2_7b = model("Llama-2-7B")
a100_40 = hardware("A100 40GB SXM")
w_llama2_7b = llama2_7b.n_params * 2
print("weights:", format_bytes(w_llama2_7b, "GB", exact=True), "=", format_bytes(w_llama2_7b, "GiB"))
readings = {"label read as decimal (wrong)": int(a100_40.mem_label.removesuffix("GB")) * GB,
            "reported capacity": a100_40.mem_bytes,
            f"usable budget ({VLLM_GPU_MEMORY_UTILIZATION:.0%})": usable_bytes(a100_40)}
for reading, mem in readings.items():
    s_max = {batch: max_context_len(mem, w_llama2_7b, llama2_7b.n_layers, llama2_7b.n_kv_heads,
                                    llama2_7b.head_dim, batch, 2) for batch in (1, 8)}
    print(f"{reading:30s} {format_bytes(mem, 'GiB')}: S_max = {s_max[1]:,} tokens at batch 1, "
          f"{s_max[8]:,} at batch 8")
print(f"the model was trained for {llama2_7b.max_seq_len:,} tokens")

# %% [markdown]
# With the usable budget, batch 1 would allow a 48,022-token context and batch 8 still 6,002
# tokens per sequence, both beyond the 4,096 tokens the model was trained for: here the model,
# not the memory, is the limit.
#
# ### Task 3b: GPUs just to hold the weights
#
# Write `gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes)`: the smallest number
# of GPUs whose memory budgets (`gpu_mem_bytes` each) together hold the weights (ignore the
# cache here). `bytes_per_param` may be fractional (int4 = 0.5).

# %% solution id=gpus_to_hold_weights
def gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes):
    """Smallest number of GPUs of gpu_mem_bytes each that together hold the weights."""
    ### BEGIN SOLUTION
    weight_bytes = n_params * bytes_per_param
    return math.ceil(weight_bytes / gpu_mem_bytes)
    ### END SOLUTION

# %% tests id=test_gpus_to_hold_weights points=2
def _fewest_gpus(weight_bytes, budget):
    """The definition, step by step: add GPUs until their budgets hold the weights."""
    n = 0
    while n * budget < weight_bytes:
        n += 1
    return n

_h100_budget = usable_bytes(hardware("H100 SXM"))
_exp = _fewest_gpus(175_000_000_000 * 2, _h100_budget)
check_int(gpus_to_hold_weights(175_000_000_000, 2, _h100_budget), _exp,
          call="gpus_to_hold_weights(175e9 params, 2 bytes, usable_bytes(H100 SXM))",
          mistakes={f"rounded down: {_exp - 1} GPUs hold only {format_bytes((_exp - 1) * _h100_budget, 'GB')} "
                    f"of the {format_bytes(175_000_000_000 * 2, 'GB')}": _exp - 1}, generic=False)
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from fractions import Fraction

from course_lib.grading import Case, check_cases


def _gpus_case(n_params, bytes_per_param, budget, call=""):
    """The fewest GPUs whose budgets hold n_params * bytes_per_param bytes (exact ceil), and each slip's value."""
    weight_bytes = Fraction(int(n_params)) * Fraction(bytes_per_param)
    return Case((n_params, bytes_per_param, budget), math.ceil(weight_bytes / int(budget)), {
        "rounded down: the GPUs must hold *all* the weights (ceil)": int((n_params * bytes_per_param) // budget),
        "bits instead of bytes": int(-(-(n_params * bytes_per_param * 8) // budget))}, call=call)


_params = {name: model(name).n_params for name in ("GPT-3 175B", "Llama-3.1-70B", "Llama-3-8B", "DeepSeek-V3")}
check_cases(gpus_to_hold_weights, [_gpus_case(*c) for c in [
    (_params["GPT-3 175B"], 1, _h100_budget), (_params["Llama-3.1-70B"], 2, usable_bytes(hardware("A100 80GB SXM"))),
    (_params["Llama-3.1-70B"], 0.5, usable_bytes(hardware("RTX 4090"))), (_params["Llama-3-8B"], 2, usable_bytes(hardware("T4"))),
    (_params["DeepSeek-V3"], 1, usable_bytes(hardware("H200 SXM"))), (40 * 10**9, 2, 80 * 10**9),
    (40 * 10**9 + 1, 2, 80 * 10**9), (1, 4, usable_bytes(hardware("L4")))]]
            + [_gpus_case(np.int64(_params["GPT-3 175B"]), 2, np.int64(_h100_budget),
                          call="gpus_to_hold_weights with NumPy integer inputs")])
### END HIDDEN TESTS

# %%
gpt3 = model("GPT-3 175B")
h100 = hardware("H100 SXM")
h100_budget = usable_bytes(h100)
for label, bpp in [("fp16", 2), ("int8", 1)]:
    n = gpus_to_hold_weights(gpt3.n_params, bpp, h100_budget)
    print(f"GPT-3 175B {label}: weights {format_bytes(gpt3.n_params * bpp, 'GB')} -> {n} x H100 "
          f"({format_bytes(h100_budget, 'GB')} usable each; "
          f"{format_bytes(n * h100_budget - gpt3.n_params * bpp, 'GB')} left for the cache)")

# %% [markdown]
# In practice you would pick 8 GPUs for fp16 (tensor parallelism likes powers of two that divide
# the head count), and the leftover budget is what the cache gets.
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

# %% tests id=test_max_batch_size points=2
_w3 = model("Llama-3-8B").n_params * 2
_per_seq = 2 * 32 * 8 * 128 * 8192 * 2   # 1 GiB per 8k-token sequence, with the 8 KV heads
_budget = usable_bytes(hardware("H100 SXM"))
check_int(max_batch_size(_budget, _w3, _per_seq), (_budget - _w3) // _per_seq,
          call="max_batch_size(usable_bytes(H100 SXM), Llama-3-8B bf16 weights, per_seq_cache_bytes=1 GiB)",
          mistakes={"per-sequence cache computed with all 32 query heads (4 GiB): use the 8 KV heads": (_budget - _w3) // (4 * _per_seq),
                    "weights not subtracted": _budget // _per_seq}, generic=False)
print("Visible test passed.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _batch_case(M, W, C, X):
    """The largest B with B * C <= X * M - W (0 when nothing fits), and each slip's value."""
    free = X * M - W   # the weights are split over the X GPUs: subtracted once from their total
    return Case((M, W, C, X), max(0, free // C), {
        "weights subtracted on every GPU: they are split, so subtract them once from the total": max(0, X * (M - W) // C),
        "weights not subtracted": X * M // C,
        "tp_degree ignored: the cache is split over tp_degree GPUs": max(0, (M - W) // C),
        "negative when the weights do not fit: return 0": free // C},
        call=describe_call("max_batch_size", M, W, C, tp_degree=X))


_w70 = model("Llama-2-70B").n_params * 2
_seq70 = 2 * 80 * 8 * 128 * 4096 * 2     # Llama-2-70B, one 4096-token sequence, fp16
check_cases(max_batch_size, [_batch_case(*c) for c in [
    (_budget, _w3, _per_seq, 2), (_budget, _w3, _per_seq, 8),
    (usable_bytes(hardware("H200 SXM")), _w70, _seq70, 1), (usable_bytes(hardware("H200 SXM")), _w70, _seq70, 4),
    (usable_bytes(hardware("RTX 4090")), model("Llama-2-7B").n_params * 2, 2 * GiB, 1),
    (usable_bytes(hardware("T4")), 20 * GiB, GiB, 1),
    (usable_bytes(hardware("A100 40GB SXM")), model("GPT-3 175B").n_params * 2, GiB, 8),
    (80 * 10**9, 0, 3, 3)]]
            + [Case((_budget, _w3, _per_seq), (4 * _budget - _w3) // _per_seq, kwargs={"tp_degree": np.int64(4)},
                    call="max_batch_size(..., tp_degree=np.int64(4))")])
### END HIDDEN TESTS

# %% [markdown]
# **Llama-3-8B, bf16, 8k context, one H100.** A write-up this course grew from sized the cache
# with all 32 heads, got 4 GiB per sequence and a batch of 16 (it also read "80GB" as 80 GB of
# free memory). Llama 3 uses GQA with 8 KV heads: each 8k sequence takes 1 GiB, and the batch
# is four times larger than with 4 GiB per sequence, on the same usable budget.

# %%
llama3 = model("Llama-3-8B")
w_llama3 = llama3.n_params * 2
per_seq = kv_cache_bytes(llama3.n_layers, llama3.n_kv_heads, llama3.head_dim, 8192, 1, 2)
per_seq_all_heads = kv_cache_bytes(llama3.n_layers, llama3.n_heads, llama3.head_dim, 8192, 1, 2)
print("weights:", format_bytes(w_llama3, "GB"), "| cache per 8k sequence:", format_bytes(per_seq, "GiB", exact=True))
print(f"largest batch on one H100 ({format_bytes(h100_budget, 'GiB')} usable):",
      max_batch_size(h100_budget, w_llama3, per_seq),
      f"(with all {llama3.n_heads} heads: {max_batch_size(h100_budget, w_llama3, per_seq_all_heads)})")
for x in (1, 2, 4, 8):
    print(f"  tensor parallel over {x} GPU(s): batch {max_batch_size(h100_budget, w_llama3, per_seq, x)}")

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
# n_kv_heads)`. Assume `tp_degree` divides `n_kv_heads` or is a multiple of it. Each GPU has a
# budget of `gpu_mem_bytes` and holds `weight_bytes / tp_degree` of weights and, per sequence,
# `per_seq_cache_bytes / min(tp_degree, n_kv_heads)` of cache. Return the largest batch that
# fits on every GPU (an exact floor: avoid floating point, e.g. multiply out the fractions or
# use `fractions.Fraction`).

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

# %% tests id=test_max_batch_size_tp points=2
_w3 = model("Llama-3-8B").n_params * 2
_per_seq = 2 * 32 * 8 * 128 * 8192 * 2
_budget = usable_bytes(hardware("H100 SXM"))
check_int(max_batch_size_tp(_budget, _w3, _per_seq, 4, 8), (4 * _budget - _w3) // _per_seq,
          call="max_batch_size_tp(usable_bytes(H100 SXM), Llama-3-8B weights, 1 GiB, tp_degree=4, n_kv_heads=8)",
          generic=False)
_exp16 = (16 * _budget - _w3) * 8 // (16 * _per_seq)
check_int(max_batch_size_tp(_budget, _w3, _per_seq, 16, 8), _exp16,
          call="max_batch_size_tp(usable_bytes(H100 SXM), Llama-3-8B weights, 1 GiB, tp_degree=16, n_kv_heads=8)",
          mistakes={"cache split over all 16 GPUs: with 8 KV heads each GPU still holds 1/8 of every sequence":
                    (16 * _budget - _w3) // _per_seq}, generic=False)
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
from course_lib.grading import Case, check_cases


def _tp_case(M, W, C, X, h):
    """The largest B with M - W/X >= B * C / min(X, h) on every GPU (an exact floor), and each slip's value."""
    shards = min(X, h)   # one sequence's cache is cut into this many pieces
    right = max(0, (X * M - W) * shards // (X * C))
    by_float = max(0, math.floor((M - W / X) / (C / shards)))
    return Case((M, W, C, X, h), right, {
        "cache split over every GPU although there are fewer KV heads than GPUs (replicate heads)": max(0, (X * M - W) // C),
        "weights not split over the GPUs": max(0, (M - W) * shards // C),
        "negative when the weights do not fit: return 0": (X * M - W) * shards // (X * C),
        "floating-point rounding: compute the floor with exact integers": by_float if by_float != right else None},
        call=describe_call("max_batch_size_tp", M, W, C, tp_degree=X, n_kv_heads=h))


_h200 = usable_bytes(hardware("H200 SXM"))
_a100 = usable_bytes(hardware("A100 80GB SXM"))
_w70, _w7 = model("Llama-2-70B").n_params * 2, model("Llama-2-7B").n_params * 2
_seq70 = 2 * 80 * 8 * 128 * 4096 * 2     # Llama-2-70B, one 4096-token sequence, fp16
check_cases(max_batch_size_tp, [_tp_case(*c) for c in [
    (_budget, _w3, _per_seq, 1, 8), (_budget, _w3, _per_seq, 8, 8), (_budget, _w3, _per_seq, 32, 8),
    (_h200, _w70, _seq70, 16, 8), (_a100, _w70, _seq70, 2, 8),
    (_a100, _w7, 2 * GiB, 64, 32), (usable_bytes(hardware("L4")), _w7, 2 * GiB, 2, 1),
    (10 * 10**9, 700 * 10**9, GiB, 16, 8), (_budget, model("Mistral-7B").n_params * 2, 10**9 + 7, 12, 4)]])
### END HIDDEN TESTS

# %%
print(f"Llama-3-8B, 8k context, H100 budgets of {format_bytes(h100_budget, 'GiB')}, {llama3.n_kv_heads} KV heads:")
tp_batches = {}
for x in (1, 2, 4, 8, 16, 32):
    even = max_batch_size(h100_budget, w_llama3, per_seq, x)
    tp_batches[x] = max_batch_size_tp(h100_budget, w_llama3, per_seq, x, llama3.n_kv_heads)
    print(f"  TP={x:>2}: batch {tp_batches[x]:>5}   (an even split would promise {even})")

# %% [markdown]
# Up to 8 GPUs the batch grows a little faster than the GPU count (the weights are paid once).
# From 8 GPUs on, each GPU holds an eighth of every sequence (one whole KV head of 8), so the
# batch stops growing (558 sequences at TP 8, 569 at TP 32): past $H_{kv}$, tensor
# parallelism buys compute, not cache. To serve more sequences, add data-parallel replicas or
# pipeline stages instead.
#
# ## Part 5 — Sharing heads: GQA, MQA and MLA
#
# * **MHA**: $H_{kv} = H$. **GQA**: $1 < H_{kv} < H$ (Llama-3, Mistral, Llama-2-70B). **MQA**:
#   $H_{kv} = 1$ (Falcon-7B).
# * **MLA** (DeepSeek-V2/V3), as DeepSeek's own inference code runs it, caches no per-head K
#   and V at all: each layer stores one compressed latent of `kv_lora_rank` numbers plus a
#   `rope` key of `qk_rope_head_dim` numbers, and attention works on the latent directly (the
#   up-projections are folded into the query and output matrices). Per token:
#   $L \cdot (r_{kv} + d_{rope}) \cdot s$ bytes, with no factor 2 (the latent serves K and V
#   alike). Note that MLA's heads are not all the same width: each query/key head has
#   $128 + 64 = 192$ numbers (a part without rotary position encoding and a RoPE part; the
#   table's `d_h`), each value head 128 (`spec.v_head_dim`). An implementation that
#   decompresses the latent and caches per-head K and V (Hugging Face's eager DeepSeek-V3
#   does) stores $H \cdot (192 + 128)$ numbers per layer and gives up the saving.
#
# ### Task 5: bytes per token for any model
#
# Write `model_kv_bytes_per_token(spec, bytes_per_elem)` for a `ModelSpec`: use
# `spec.n_kv_heads` and `spec.head_dim` for MHA/GQA/MQA and the latent (`spec.mla_kv_lora_rank`,
# `spec.mla_rope_dim`) when `spec.attention == "MLA"`. The cache dtype is a separate choice
# from the weights' dtype, so its bytes per number are an argument. Sliding windows do not
# change the bytes per token.

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
def _mla_slips(m, s):
    """Named mistakes for an MLA model, computed from its spec."""
    latent = m.n_layers * (m.mla_kv_lora_rank + m.mla_rope_dim) * s
    return {"MLA stores one latent per layer, not K and V: no factor 2": 2 * latent,
            f"MLA treated like MHA: {m.n_kv_heads} KV heads of head_dim {m.head_dim} instead of the latent":
                2 * m.n_layers * m.n_kv_heads * m.head_dim * s,
            f"MLA: sized the decompressed per-head K ({m.head_dim}) and V ({m.v_head_dim}), not the latent the cache stores":
                m.n_layers * m.n_kv_heads * (m.head_dim + m.v_head_dim) * s,
            "MLA: rope key dimension forgotten": m.n_layers * m.mla_kv_lora_rank * s}

check_int(model_kv_bytes_per_token(model("Mistral-7B"), 2), 131_072,
          call="model_kv_bytes_per_token(model('Mistral-7B'), 2)",
          mistakes={"used all 32 query heads: Mistral keeps 8 KV heads": 4 * 131_072}, generic=False)
check_int(model_kv_bytes_per_token(model("DeepSeek-V2"), 2), 69_120,
          call="model_kv_bytes_per_token(model('DeepSeek-V2'), 2)",
          mistakes=_mla_slips(model("DeepSeek-V2"), 2), generic=False)
print("Visible tests passed.")
### BEGIN HIDDEN TESTS
from dataclasses import replace as _replace

from course_lib.grading import Case, check_cases


def _model_case(m, s, call):
    """MLA's latent, or K and V of the KV heads, for every layer; and each slip's value."""
    if m.attention == "MLA":
        return Case((m, s), m.n_layers * (m.mla_kv_lora_rank + m.mla_rope_dim) * s, _mla_slips(m, s), call=call)
    right = 2 * m.n_layers * m.n_kv_heads * m.head_dim * s
    return Case((m, s), right, {
        f"used all {m.n_heads} query heads instead of the {m.n_kv_heads} KV heads": 2 * m.n_layers * m.n_heads * m.head_dim * s,
        "used d_model instead of n_kv_heads * head_dim": 2 * m.n_layers * m.d_model * s,
        "forgot the factor 2 (K and V)": right // 2}, call=call)


# every model of the table, and a made-up MLA model the notebook never shows
_toy = _replace(model("DeepSeek-V2"), name="toy-MLA", n_layers=7, mla_kv_lora_rank=96, mla_rope_dim=32)
check_cases(model_kv_bytes_per_token,
            [_model_case(model(_name), _s, f"model_kv_bytes_per_token(model({_name!r}), {_s})")
             for _name in MODELS for _s in (1, 2, 4)]
            + [_model_case(_toy, 2, "model_kv_bytes_per_token(toy MLA model, 2)")])
### END HIDDEN TESTS

# %% [markdown]
# **Checking a claim.** "Mistral-7B saves 4x cache memory vs Llama-2-7B by using GQA with 8
# KV heads instead of 32." Same layers (32), same head dimension (128), both 2 bytes per number
# (fp16 vs bf16): the ratio of per-token sizes is exactly $32 / 8 = 4$. And Mistral-7B goes
# further: every layer has a sliding window of 4,096 tokens, so a rolling buffer overwrites the
# oldest entries and past 4k tokens its cache stops growing at all. Gemma-2-9B windows only
# half of its layers (21 local, 21 global), so its cache keeps growing, at half the rate.

# %%
def windowed_cache_bytes(spec, seq_len, bytes_per_elem):
    """One sequence's cache when the windowed layers keep only their last sliding_window tokens."""
    per_layer_token = model_kv_bytes_per_token(spec, bytes_per_elem) // spec.n_layers
    full_layers = spec.n_layers - spec.n_window_layers
    window = min(seq_len, spec.sliding_window) if spec.sliding_window else seq_len
    return per_layer_token * (full_layers * seq_len + spec.n_window_layers * window)


mistral, llama2, gemma2 = model("Mistral-7B"), model("Llama-2-7B"), model("Gemma-2-9B")
ratio = model_kv_bytes_per_token(llama2, 2) / model_kv_bytes_per_token(mistral, 2)
print(f"Llama-2-7B / Mistral-7B bytes per token: {ratio} (exactly {llama2.n_kv_heads} / {mistral.n_kv_heads})")
S = 32768
llama_32k = model_kv_bytes_per_token(llama2, 2) * S
mistral_32k = windowed_cache_bytes(mistral, S, 2)
print(f"at {S:,} tokens: Llama-2-7B {format_bytes(llama_32k, 'GiB')}, Mistral-7B with its rolling buffer "
      f"{format_bytes(mistral_32k, 'GiB')} -> {llama_32k / mistral_32k:.0f}x")
gemma_full = model_kv_bytes_per_token(gemma2, 2) * S
gemma_windowed = windowed_cache_bytes(gemma2, S, 2)
print(f"Gemma-2-9B at {S:,} tokens: {format_bytes(gemma_full, 'GiB')} if every layer kept everything, "
      f"{format_bytes(gemma_windowed, 'GiB')} with {gemma2.n_window_layers} layers capped at "
      f"{gemma2.sliding_window:,} tokens")

# %%
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

names = ["Llama-2-7B", "Llama-2-70B (MHA)", "Llama-2-70B", "Llama-3-8B", "Mistral-7B", "Qwen2.5-7B",
         "Gemma-2-9B", "Falcon-7B", "DeepSeek-V2", "DeepSeek-V3"]
kib = [model_kv_bytes_per_token(model(n), 2) / 2**10 for n in names]
colors = {"MHA": "tab:red", "GQA": "tab:blue", "MQA": "tab:green", "MLA": "tab:purple"}
fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
ax.barh(names, kib, color=[colors[model(n).attention] for n in names])
ax.set_xscale("log")
ax.set_xlabel("KV cache per token, 16-bit cache (KiB, log scale)")
ax.set_title("Cache per token: MHA vs GQA vs MQA vs MLA")
# one legend entry per attention type, drawn with that type's colour
ax.legend(handles=[Patch(facecolor=color, label=attention) for attention, color in colors.items()],
          loc="lower right")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# DeepSeek-V2 reports a 93.3% smaller cache than DeepSeek 67B, a dense GQA model. With the
# formulas above, MLA alone (both caches in bf16) gives 82.2%. The paper does not show how the
# rest arises. Our reconstruction, not the paper's: its deployed model quantizes the cache to
# about 6 bits per element on average (§3.2.3), and MLA at 6 bits gives 93.34%, which rounds
# to the reported 93.3%.

# %%
from course_lib.specs import DEEPSEEK_67B_CACHE

ds67 = kv_bytes_per_token(DEEPSEEK_67B_CACHE["n_layers"], DEEPSEEK_67B_CACHE["n_kv_heads"],
                          DEEPSEEK_67B_CACHE["head_dim"], 2)   # DeepSeek LLM 67B, bf16
ds_v2 = model_kv_bytes_per_token(model("DeepSeek-V2"), 2)
print(f"DeepSeek-V2 (MLA, bf16) / DeepSeek 67B (GQA, bf16) = {ds_v2 / ds67:.3f} -> {1 - ds_v2 / ds67:.1%} smaller")
print(f"with ~6-bit cache entries: {ds_v2 * 6 / 16 / ds67:.4f} -> {1 - ds_v2 * 6 / 16 / ds67:.2%} smaller")

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
_USED = "returned the used fraction; the task asks for the unused (wasted) fraction"
_PERCENT = "returned a percentage: the task asks for a fraction in [0, 1]"
check_real(preallocation_waste(32768, [1024] * 32), 1 - 1024 / 32768, call="preallocation_waste(32768, [1024] * 32)",
           mistakes={_USED: 1024 / 32768, _PERCENT: 100 * (1 - 1024 / 32768)}, generic=False)
print("Visible test passed.")
### BEGIN HIDDEN TESTS
import random as _random

from course_lib.grading import Case, check_cases


def _waste_case(max_seq_len, lens, call=""):
    """1 - sum(lens) / (max_seq_len * len(lens)), and what the used fraction or a percentage would be."""
    right = 1 - sum(lens) / (max_seq_len * len(lens))
    return Case((max_seq_len, lens), right, {_USED: 1 - right, _PERCENT: 100 * right}, call=call)


_rng = _random.Random(20261123)
_cases = []
for _trial in range(6):
    _smax = _rng.randint(16, 20000)
    _lens = [_rng.randint(0, _smax) for _ in range(_rng.randint(1, 50))]
    _cases.append(_waste_case(_smax, _lens, f"preallocation_waste({_smax}, <list of {len(_lens)} lengths>)"))
check_cases(preallocation_waste, _cases + [_waste_case(4096, [4096, 4096]), _waste_case(100, (0,)),
                                           _waste_case(10, (1, 2, 3))])
### END HIDDEN TESTS

# %% tests id=test_preallocation_waste_arrays points=1
from course_lib.grading import Case, check_cases

_USED = "returned the used fraction; the task asks for the unused (wasted) fraction"
# an array's truth value is ambiguous: name that mistake instead of showing a bare traceback
_NO_TRUTH = ("tested emptiness with `not actual_lens` or `actual_lens == []`, which fails for a NumPy array; "
             "use len(actual_lens) == 0")


def _array_case(max_seq_len, lens, call):
    """The unused fraction for lengths in a NumPy array, and what the used fraction would be."""
    right = 1 - float(np.sum(lens)) / (max_seq_len * len(lens))
    return Case((max_seq_len, lens), right, {_USED: 1 - right}, call=call,
                errors={"truth value of an array": _NO_TRUTH, "could not be broadcast": _NO_TRUTH})


check_cases(preallocation_waste, [_array_case(100, np.array([10, 20, 60]), "preallocation_waste(100, np.array([10, 20, 60]))")])
print("Visible test passed.")
### BEGIN HIDDEN TESTS
_nprng = np.random.default_rng(20261123)
_cases = []
for _trial in range(4):
    _smax = int(_nprng.integers(16, 20000))
    _lens = _nprng.integers(0, _smax + 1, size=int(_nprng.integers(2, 50)))
    _cases.append(_array_case(_smax, _lens, f"preallocation_waste({_smax}, <NumPy array of {len(_lens)} lengths>)"))
check_cases(preallocation_waste, _cases + [_array_case(10, np.array([1, 2, 3], dtype=np.int32),
                                                       "preallocation_waste(10, np.array([1, 2, 3], dtype=np.int32))")])
### END HIDDEN TESTS

# %% tests id=test_preallocation_waste_validation points=1
expect_error(preallocation_waste, (100, []), None, ValueError, "no sequences")
print("Visible test passed.")
### BEGIN HIDDEN TESTS
for _args, _why in [((100, ()), "no sequences (an empty tuple)"),
                    ((100, np.array([], dtype=np.int64)), "no sequences (an empty array)"),
                    ((100, [50, 101]), "a sequence longer than max_seq_len"), ((100, [50, -1]), "a negative length")]:
    expect_error(preallocation_waste, _args, None, ValueError, _why)
### END HIDDEN TESTS

# %%
waste = preallocation_waste(32768, [1024] * 32)
per_token_llama2 = model_kv_bytes_per_token(model("Llama-2-7B"), 2)
wasted_bytes = 32 * (32768 - 1024) * per_token_llama2
print(f"Llama-2-7B fp16, batch 32, max_seq_len 32768, average length 1024: {waste:.2%} of the cache is never used")
print("wasted:", format_bytes(wasted_bytes, "GiB", exact=True), "=", format_bytes(wasted_bytes, "GB"))
print(f"that is {wasted_bytes / h100.mem_bytes:.2f} times the {format_bytes(h100.mem_bytes, 'GiB')} an H100 reports")

# %% [markdown]
# 496 GiB reserved for nothing: the memory of more than six H100s. This is why production
# servers allocate the cache in pages as sequences grow.
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
# 3. **dtype**: no. The cache dtype is a serving choice, which is why `cache_size_table` takes
#    it as an argument: DeepSeek-V3 was released with fp8 weights, while DeepSeek's reference
#    inference code keeps its cache in bf16; vLLM stores the cache in the model's dtype unless
#    it is asked for an fp8 cache, which halves it. Frameworks let the two differ because the
#    cache, not the weights, grows with batch and context.
# 4. **Pre-allocation**: reserving 32,768 slots per sequence when the average is 1,024 wastes
#    96.88% of the cache: 496 GiB for Llama-2-7B at batch 32.

# %% [markdown]
# **Question 7b (2 points).** Things I got wrong the first time: list at least one mistake you
# made (or nearly made) in this lab, how a test or a number revealed it, and what you changed.

# %% [markdown] answer id=got_wrong points=2
# * I first used $d_\text{model}$ for Llama-3-8B and got 4 GiB per 8k sequence; the GQA test
#   named the 4x and I switched to $H_{kv} \cdot d_h$.
# * I took "80GB" to mean $80 \cdot 10^9$ free bytes and got a batch of 59 for Llama-3-8B on an
#   H100. The card reports 79.65 GiB, and only 90% of that is a safe budget once the CUDA
#   context and activations are counted: the batch is 56.
# * With NumPy `int32` inputs my product wrapped around to a negative number; converting with
#   `int()` fixed it.
