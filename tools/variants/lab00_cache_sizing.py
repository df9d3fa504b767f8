"""Lab 00 variants: correct answers written differently, and realistic mistakes.

Format: tools/variants/README.md.
"""

LAB = "lab00_cache_sizing"

CORRECT: dict[str, dict[str, str]] = {
    # everything through NumPy int64 (no overflow at these sizes) and math.prod
    "numpy_prod": {
        "kv_bytes_per_token": '''
import numpy as np
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    if min(n_layers, n_kv_heads, head_dim, bytes_per_elem) < 0:
        raise ValueError("sizes must be non-negative")
    return int(np.prod([2, n_layers, n_kv_heads, head_dim], dtype=np.int64)) * bytes_per_elem
''',
        "kv_cache_bytes": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    import math
    if min(seq_len, batch_size) < 0:
        raise ValueError("negative")
    return math.prod([int(x) for x in (2, n_layers, n_kv_heads, head_dim, seq_len, batch_size)]) * bytes_per_elem
''',
        "preallocation_waste": '''
import numpy as np
def preallocation_waste(max_seq_len, actual_lens):
    lens = np.asarray(actual_lens, dtype=np.float64)
    if lens.size == 0 or (lens < 0).any() or (lens > max_seq_len).any():
        raise ValueError("bad lengths")
    return float(np.mean(1 - lens / max_seq_len))
''',
    },
    # explicit loops, floats converted back to int, Fraction for exact floors
    "loops_fractions": {
        "kv_bytes_per_token": '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    total = 1
    for x in (n_layers, n_kv_heads, head_dim):
        if x < 0:
            raise ValueError(f"negative size {x}")
        total *= int(x)
    if bytes_per_elem < 0:
        raise ValueError("negative bytes_per_elem")
    return round(2 * total * bytes_per_elem)
''',
        "max_context_len": '''
from fractions import Fraction
import math
def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    per_step = Fraction(kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem)) * int(batch_size)
    return max(0, math.floor(Fraction(int(mem_bytes) - int(weight_bytes)) / per_step))
''',
        "gpus_to_hold_weights": '''
from fractions import Fraction
import math
def gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes):
    return math.ceil(Fraction(int(n_params)) * Fraction(bytes_per_param) / int(gpu_mem_bytes))
''',
        "max_batch_size": '''
def max_batch_size(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree=1):
    batch = 0
    budget = int(tp_degree) * int(gpu_mem_bytes) - int(weight_bytes)
    return max(0, budget // int(per_seq_cache_bytes))
''',
        "max_batch_size_tp": '''
from fractions import Fraction
import math
def max_batch_size_tp(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree, n_kv_heads):
    free_per_gpu = Fraction(int(gpu_mem_bytes)) - Fraction(int(weight_bytes), int(tp_degree))
    cache_per_gpu_per_seq = Fraction(int(per_seq_cache_bytes), min(int(tp_degree), int(n_kv_heads)))
    return max(0, math.floor(free_per_gpu / cache_per_gpu_per_seq))
''',
        "model_kv_bytes_per_token": '''
def model_kv_bytes_per_token(spec, bytes_per_elem):
    if spec.mla_kv_lora_rank is not None:
        return spec.n_layers * (spec.mla_kv_lora_rank + spec.mla_rope_dim) * bytes_per_elem
    return 2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * bytes_per_elem
''',
        "cache_size_table": '''
def cache_size_table(names, seq_lens, cache_dtype):
    records = []
    s = int(dtype_bytes(cache_dtype))
    for name in names:
        m = model(name)
        p = 2 * m.n_layers * m.n_kv_heads * m.head_dim * s
        records.append({"model": name, "per_token": p, **{f"S={S}": p * S for S in seq_lens}})
    return pd.DataFrame(records).set_index("model")
''',
    },
    # a ValueError subclass, helpers reused across tasks, integer ceil by negation, float floor
    # for the batch (Task 3c does not ask for exact integers; the values stay far below 2**53),
    # a DataFrame built column by column
    "reuse_helpers": {
        "kv_bytes_per_token": """
import math
class NegativeSizeError(ValueError):
    pass
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    sizes = {"n_layers": n_layers, "n_kv_heads": n_kv_heads, "head_dim": head_dim,
             "bytes_per_elem": bytes_per_elem}
    bad = [k for k, v in sizes.items() if v < 0]
    if bad:
        raise NegativeSizeError(f"negative: {bad}")
    return 2 * math.prod(int(x) for x in (n_layers, n_kv_heads, head_dim)) * bytes_per_elem
""",
        "kv_cache_bytes": """
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    for x in (n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
        if x < 0:
            raise ValueError("sizes must be non-negative")
    return kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(seq_len) * int(batch_size)
""",
        "cache_size_table": """
def cache_size_table(names, seq_lens, cache_dtype="bf16"):
    per_token = [kv_bytes_per_token(model(n).n_layers, model(n).n_kv_heads, model(n).head_dim,
                                    dtype_bytes(cache_dtype)) for n in names]
    df = pd.DataFrame({"per_token": per_token}, index=list(names))
    for S in seq_lens:
        df[f"S={S}"] = df["per_token"] * S
    return df
""",
        "max_context_len": """
def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    per_step = kv_cache_bytes(n_layers, n_kv_heads, head_dim, 1, batch_size, bytes_per_elem)
    tokens, _rest = divmod(int(mem_bytes) - int(weight_bytes), per_step)
    return tokens if tokens > 0 else 0
""",
        "gpus_to_hold_weights": """
def gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes):
    return int(-(-(n_params * bytes_per_param) // gpu_mem_bytes))
""",
        "max_batch_size": """
import math
def max_batch_size(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree=1):
    free = tp_degree * gpu_mem_bytes - weight_bytes
    return max(0, math.floor(free / per_seq_cache_bytes))
""",
        "max_batch_size_tp": """
def max_batch_size_tp(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree, n_kv_heads):
    if tp_degree <= n_kv_heads:   # heads split evenly: Task 3c
        return max(0, (tp_degree * gpu_mem_bytes - weight_bytes) // per_seq_cache_bytes)
    # every GPU: gpu_mem - W/X >= B * C/H_kv  <=>  B <= H_kv * (X*M - W) / (X*C)
    return max(0, n_kv_heads * (tp_degree * gpu_mem_bytes - weight_bytes) // (tp_degree * per_seq_cache_bytes))
""",
        "model_kv_bytes_per_token": """
def model_kv_bytes_per_token(spec, bytes_per_elem):
    if spec.attention.upper() == "MLA":
        per_layer = spec.mla_kv_lora_rank + spec.mla_rope_dim
    else:
        per_layer = 2 * spec.n_kv_heads * spec.head_dim
    return int(spec.n_layers * per_layer * bytes_per_elem)
""",
        "preallocation_waste": """
def preallocation_waste(max_seq_len, actual_lens):
    if len(actual_lens) == 0:
        raise ValueError("no sequences")
    if any(n < 0 or n > max_seq_len for n in actual_lens):
        raise ValueError("a length is outside [0, max_seq_len]")
    wasted = sum(max_seq_len - n for n in actual_lens)
    return wasted / (max_seq_len * len(actual_lens))
""",
    },
}

MUTANTS: list[dict] = [
    # Task 6 says actual_lens may be a NumPy array; `not array` raises "truth value ... ambiguous".
    # (Found as unfair grading when the statement did not say so; the statement now does.)
    {"name": "empty_check_by_truthiness",
     "cells": {"preallocation_waste": """
def preallocation_waste(max_seq_len, actual_lens):
    if not actual_lens:
        raise ValueError("actual_lens is empty")
    if min(actual_lens) < 0 or max(actual_lens) > max_seq_len:
        raise ValueError("a length is outside [0, max_seq_len]")
    return 1 - sum(actual_lens) / (max_seq_len * len(actual_lens))
"""},
     "fails": ["test_preallocation_waste_arrays"], "message": "fails for a NumPy array"},
    {"name": "bits_not_bytes",
     "cells": {"kv_bytes_per_token": [("int(head_dim) * bytes_per_elem", "int(head_dim) * (8 * bytes_per_elem)")]},
     "fails": ["test_kv_bytes_per_token"], "message": "bits instead of bytes"},
    {"name": "missing_factor_2",
     "cells": {"kv_bytes_per_token": [("k_and_v = 2", "k_and_v = 1")]},
     "fails": ["test_kv_bytes_per_token"], "message": "factor 2"},
    {"name": "int32_overflow",
     "cells": {"kv_bytes_per_token": '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    if min(n_layers, n_kv_heads, head_dim, bytes_per_elem) < 0:
        raise ValueError("negative")
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_elem
'''},
     "fails": ["test_numpy_int32_inputs"], "message": "int32 overflow"},
    # correct sizes without the input checks: only the small validation test loses its point
    {"name": "no_negative_check",
     "cells": {"kv_bytes_per_token": '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    return 2 * int(n_layers) * int(n_kv_heads) * int(head_dim) * bytes_per_elem
'''},
     "fails": ["test_kv_bytes_per_token_validation"], "message": "expected it to raise ValueError"},
    {"name": "zero_rejected",
     "cells": {"kv_bytes_per_token": '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    if min(n_layers, n_kv_heads, head_dim, bytes_per_elem) <= 0:
        raise ValueError("sizes must be positive")
    return 2 * int(n_layers) * int(n_kv_heads) * int(head_dim) * bytes_per_elem
'''},
     "fails": ["test_kv_bytes_per_token_validation"], "message": "zero is allowed"},
    {"name": "cache_no_negative_check",
     "cells": {"kv_cache_bytes": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    return kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(seq_len) * int(batch_size)
'''},
     "fails": ["test_kv_cache_bytes_validation"], "message": "expected it to raise ValueError"},
    # int() in kv_bytes_per_token but not for seq_len and batch_size: the int32 product wraps
    {"name": "cache_int32_overflow",
     "cells": {"kv_cache_bytes": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    if seq_len < 0 or batch_size < 0:
        raise ValueError("negative")
    return kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * seq_len * batch_size
'''},
     "fails": ["test_numpy_int32_inputs"], "message": "int32 overflow"},
    {"name": "batch_forgotten",
     "cells": {"kv_cache_bytes": '''
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):
    if seq_len < 0 or batch_size < 0:
        raise ValueError("negative")
    return kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(seq_len)
'''},
     "fails": ["test_kv_cache_bytes"], "message": "batch forgotten"},
    {"name": "all_heads_in_table",
     "cells": {"cache_size_table": [("spec.n_kv_heads", "spec.n_heads")]},
     "fails": ["test_cache_size_table"], "message": "query heads"},
    {"name": "d_model_in_table",
     "cells": {"cache_size_table": [
         ("kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim, bytes_per_elem)",
          "int(2 * spec.n_layers * spec.d_model * bytes_per_elem)")]},
     "fails": ["test_cache_size_table"], "message": "d_model"},
    # Task 2 says the cache dtype is an argument, not the weights' dtype
    {"name": "weight_dtype_for_cache",
     "cells": {"cache_size_table": [("spec.head_dim, bytes_per_elem)", "spec.head_dim, dtype_bytes(spec.dtype))")]},
     "fails": ["test_cache_size_table"], "message": "used the weights' dtype"},
    {"name": "fp16_everywhere",
     "cells": {"cache_size_table": [("bytes_per_elem = dtype_bytes(cache_dtype)", "bytes_per_elem = 2")]},
     "fails": ["test_cache_size_table"], "message": "assumed 2 bytes per number"},
    # Task 2 says to ignore sliding windows; a student who applies Part 5's window anyway
    {"name": "window_in_table",
     "cells": {"cache_size_table": '''
def cache_size_table(names, seq_lens, cache_dtype):
    rows = {}
    for name in names:
        spec = model(name)
        per_layer = 2 * spec.n_kv_heads * spec.head_dim * dtype_bytes(cache_dtype)
        row = {"per_token": int(spec.n_layers * per_layer)}
        for S in seq_lens:
            windowed = min(S, spec.sliding_window) if spec.sliding_window else S
            full_layers = spec.n_layers - spec.n_window_layers
            row[f"S={S}"] = int(per_layer * (full_layers * S + spec.n_window_layers * windowed))
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
'''},
     "fails": ["test_cache_size_table"], "message": "applied the sliding window"},
    {"name": "weights_not_subtracted",
     "cells": {"max_context_len": '''
def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    return int(mem_bytes) // (kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(batch_size))
'''},
     "fails": ["test_max_context_len"], "message": "weights not subtracted"},
    {"name": "negative_context",
     "cells": {"max_context_len": '''
def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    free = int(mem_bytes) - int(weight_bytes)
    return free // (kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(batch_size))
'''},
     "fails": ["test_max_context_len"], "message": "return 0"},
    {"name": "floor_gpus",
     "cells": {"gpus_to_hold_weights": '''
def gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes):
    return int(n_params * bytes_per_param // gpu_mem_bytes)
'''},
     "fails": ["test_gpus_to_hold_weights"], "message": "rounded down"},
    {"name": "ceil_context",
     "cells": {"max_context_len": '''
import math
def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    free = int(mem_bytes) - int(weight_bytes)
    if free <= 0:
        return 0
    return math.ceil(free / (kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * int(batch_size)))
'''},
     "fails": ["test_max_context_len"], "message": "rounded"},
    {"name": "tp_weights_on_every_gpu",
     "cells": {"max_batch_size": '''
def max_batch_size(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree=1):
    free = int(tp_degree) * (int(gpu_mem_bytes) - int(weight_bytes))
    return max(0, free // int(per_seq_cache_bytes))
'''},
     "fails": ["test_max_batch_size"], "message": "weights subtracted on every GPU"},
    {"name": "tp_no_replication",
     "cells": {"max_batch_size_tp": '''
def max_batch_size_tp(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree, n_kv_heads):
    return max(0, (int(tp_degree) * int(gpu_mem_bytes) - int(weight_bytes)) // int(per_seq_cache_bytes))
'''},
     "fails": ["test_max_batch_size_tp"], "message": "cache split over"},
    {"name": "mla_like_mha",
     "cells": {"model_kv_bytes_per_token": '''
def model_kv_bytes_per_token(spec, bytes_per_elem):
    return kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim, bytes_per_elem)
'''},
     "fails": ["test_model_kv_bytes_per_token"], "message": "MLA treated like MHA"},
    {"name": "mla_decompressed",
     "cells": {"model_kv_bytes_per_token": '''
def model_kv_bytes_per_token(spec, bytes_per_elem):
    if spec.attention == "MLA":
        return spec.n_layers * spec.n_kv_heads * (spec.head_dim + spec.v_head_dim) * bytes_per_elem
    return kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim, bytes_per_elem)
'''},
     "fails": ["test_model_kv_bytes_per_token"], "message": "decompressed per-head K"},
    {"name": "mla_factor_2",
     "cells": {"model_kv_bytes_per_token": '''
def model_kv_bytes_per_token(spec, bytes_per_elem):
    if spec.attention == "MLA":
        return 2 * spec.n_layers * (spec.mla_kv_lora_rank + spec.mla_rope_dim) * bytes_per_elem
    return kv_bytes_per_token(spec.n_layers, spec.n_kv_heads, spec.head_dim, bytes_per_elem)
'''},
     "fails": ["test_model_kv_bytes_per_token"], "message": "no factor 2"},
    {"name": "waste_no_validation",
     "cells": {"preallocation_waste": '''
def preallocation_waste(max_seq_len, actual_lens):
    return 1 - sum(actual_lens) / (max_seq_len * len(actual_lens))
'''},
     "fails": ["test_preallocation_waste_validation"], "message": "expected ValueError"},
    {"name": "used_fraction",
     "cells": {"preallocation_waste": '''
def preallocation_waste(max_seq_len, actual_lens):
    lens = list(actual_lens)
    if not lens or min(lens) < 0 or max(lens) > max_seq_len:
        raise ValueError("bad lengths")
    return sum(lens) / (max_seq_len * len(lens))
'''},
     "fails": ["test_preallocation_waste", "test_preallocation_waste_arrays"], "message": "used fraction"},
]

# Mistakes in different functions that do not cascade into each other's tests.
SAMPLE_MISTAKES: list[str] = ["all_heads_in_table", "weights_not_subtracted", "floor_gpus",
                              "tp_no_replication", "used_fraction"]
