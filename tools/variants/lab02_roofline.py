"""Variants of Lab 02 (roofline): correct alternatives and realistic mistakes.

Format: see tools/variants/README.md. Every entry maps a solution cell's grade_id to the
*full* code of that cell. The ``roofline_model`` cell holds three functions, so its
variants are assembled from the three function sources below, one of them changed.
"""

from __future__ import annotations

LAB = "lab02_roofline"

# --------------------------------------------------------------------------------------------
# Correct pieces (the same behaviour as the source solution, written plainly)
# --------------------------------------------------------------------------------------------

_FLOPS_HEAD = '''def attention_flops(n_q, n_kv, head_dim, n_heads=1):
    """FLOPs of one attention call."""
'''
_FLOPS_CHECK = '''    for name, value in [("n_q", n_q), ("n_kv", n_kv), ("head_dim", head_dim), ("n_heads", n_heads)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
'''


def _flops(body: str, check: bool = True) -> str:
    return _FLOPS_HEAD + (_FLOPS_CHECK if check else "") + body


_BYTES_HEAD = '''def attention_bytes(n_q, n_kv, head_dim, bytes_per_elem, n_heads=1, n_kv_heads=None, fused=False):
    """Bytes moved by one attention call."""
    if n_kv_heads is None:
        n_kv_heads = n_heads
'''
_BYTES_CHECK = '''    for name, value in [("n_q", n_q), ("n_kv", n_kv), ("head_dim", head_dim),
                        ("bytes_per_elem", bytes_per_elem), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if n_heads % n_kv_heads:
        raise ValueError("n_heads must be a multiple of n_kv_heads")
'''


def _bytes(body: str, check: bool = True) -> str:
    return _BYTES_HEAD + (_BYTES_CHECK if check else "") + body


def _bytes_terms(q: str = "n_heads * n_q * head_dim", o: str = "n_heads * n_q * head_dim",
                 k: str = "n_kv_heads * n_kv * head_dim", v: str = "n_kv_heads * n_kv * head_dim",
                 sp: str = "4 * n_heads * n_q * n_kv", sp_when: str = "not fused",
                 scale: str = "bytes_per_elem") -> str:
    """Body of attention_bytes with each term replaceable (for the mutants)."""
    return (f"    elements = ({q}) + ({k}) + ({v}) + ({o})\n"
            f"    if {sp_when}:\n"
            f"        elements += {sp}\n"
            f"    return int(elements * {scale})\n")


_INTENSITY = '''def arithmetic_intensity(flops, bytes_moved):
    """FLOP per byte."""
    if flops < 0 or bytes_moved <= 0:
        raise ValueError("flops must be >= 0 and bytes_moved > 0")
    return {expr}
'''
_RIDGE = '''def ridge_point(peak_flops, mem_bandwidth):
    """FLOP/byte where the roofs meet."""
    if peak_flops <= 0 or mem_bandwidth <= 0:
        raise ValueError("peak_flops and mem_bandwidth must be > 0")
    return {expr}
'''
_ATTAINABLE = '''def attainable_flops(intensity, peak_flops, mem_bandwidth):
    """Roofline bound in FLOP/s."""
    if intensity < 0 or peak_flops <= 0 or mem_bandwidth <= 0:
        raise ValueError("bad roofline input")
    return {expr}
'''


def _roofline(intensity: str = "flops / bytes_moved", ridge: str = "peak_flops / mem_bandwidth",
              attainable: str = "min(peak_flops, intensity * mem_bandwidth)", check: bool = True) -> str:
    cell = "\n\n".join([_INTENSITY.format(expr=intensity), _RIDGE.format(expr=ridge),
                        _ATTAINABLE.format(expr=attainable)])
    return cell if check else _drop_checks(cell)


def _drop_checks(cell: str) -> str:
    """The same cell without its `if ...: raise ValueError(...)` lines (right numbers, no validation)."""
    lines = cell.splitlines(keepends=True)
    out = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.lstrip().startswith("if ") and "raise ValueError" in nxt:
            continue
        if "raise ValueError" in line:
            continue
        out.append(line)
    return "".join(out)


_DECODE = '''def decode_tokens_per_s_bound(weight_bytes, kv_cache_bytes, mem_bandwidth, batch_size=1):
    """Aggregate tokens/s ceiling of a decode step."""
    if mem_bandwidth <= 0 or batch_size < 1 or weight_bytes < 0 or kv_cache_bytes < 0:
        raise ValueError("bad decode input")
    return {expr}
'''


def _decode(expr: str, check: bool = True) -> str:
    cell = _DECODE.format(expr=expr)
    return cell if check else _drop_checks(cell)


_SECONDS = '''def roofline_seconds(flops, bytes_moved, peak_flops, mem_bandwidth):
    """Least time of a kernel: compute and memory traffic overlapped."""
    if flops < 0 or bytes_moved < 0:
        raise ValueError("flops and bytes_moved must be >= 0")
    if peak_flops <= 0 or mem_bandwidth <= 0:
        raise ValueError("peak_flops and mem_bandwidth must be > 0")
    return {expr}
'''


def _seconds(expr: str, check: bool = True) -> str:
    cell = _SECONDS.format(expr=expr)
    return cell if check else _drop_checks(cell)


_RIGHT_FLOPS = "    return n_heads * (4 * n_q * n_kv * head_dim + 5 * n_q * n_kv)\n"
_RIGHT_DECODE = "batch_size * mem_bandwidth / (weight_bytes + batch_size * kv_cache_bytes)"
_RIGHT_SECONDS = "max(flops / peak_flops, bytes_moved / mem_bandwidth)"

# --------------------------------------------------------------------------------------------
# Correct implementations written differently
# --------------------------------------------------------------------------------------------

CORRECT: dict[str, dict[str, str]] = {
    # closed forms: everything factored
    "closed_form": {
        "attention_flops": _flops("    return n_heads * n_q * n_kv * (4 * head_dim + 5)\n"),
        "attention_bytes": _bytes(
            "    per_head_sp = 0 if fused else 4 * n_q * n_kv\n"
            "    return bytes_per_elem * (n_heads * (2 * n_q * head_dim + per_head_sp)"
            " + 2 * n_kv_heads * n_kv * head_dim)\n"),
        "roofline_model": _roofline(attainable="peak_flops if intensity >= peak_flops / mem_bandwidth "
                                               "else intensity * mem_bandwidth"),
        "decode_tokens_per_s_bound": _decode("1.0 / ((weight_bytes / batch_size + kv_cache_bytes) / mem_bandwidth)"),
        "roofline_seconds": _seconds("flops / peak_flops if flops / peak_flops > bytes_moved / mem_bandwidth "
                                     "else bytes_moved / mem_bandwidth"),
    },
    # NumPy scalars everywhere (np.int64 counts, np.float64 rates) and a loop over heads
    "numpy_loops": {
        "attention_flops": _flops(
            "    import numpy as np\n"
            "    total = np.int64(0)\n"
            "    for _ in range(n_heads):\n"
            "        total += np.int64(2 * n_q * head_dim * n_kv) + np.int64(5 * n_q * n_kv)"
            " + np.int64(2 * n_q * n_kv * head_dim)\n"
            "    return total\n"),
        "attention_bytes": _bytes(
            "    import numpy as np\n"
            "    tensors = {'Q': (n_heads, n_q, head_dim), 'K': (n_kv_heads, n_kv, head_dim),\n"
            "               'V': (n_kv_heads, n_kv, head_dim), 'O': (n_heads, n_q, head_dim)}\n"
            "    total = sum(np.int64(np.prod(shape)) for shape in tensors.values())\n"
            "    if not fused:\n"
            "        for _ in ('write S', 'read S', 'write P', 'read P'):\n"
            "            total += np.int64(n_heads) * n_q * n_kv\n"
            "    return total * np.int64(bytes_per_elem)\n"),
        "roofline_model": _roofline(intensity="__import__('numpy').float64(flops) / bytes_moved",
                                    ridge="__import__('numpy').divide(peak_flops, mem_bandwidth)",
                                    attainable="__import__('numpy').minimum(peak_flops, intensity * mem_bandwidth)"),
        "decode_tokens_per_s_bound": _decode("__import__('numpy').float64(batch_size) * mem_bandwidth / "
                                             "(weight_bytes + batch_size * kv_cache_bytes)"),
        "roofline_seconds": _seconds("__import__('numpy').maximum(__import__('numpy').float64(flops) / peak_flops, "
                                     "bytes_moved / mem_bandwidth)"),
    },
    # float arithmetic that stays integral, GB/s converted back and forth
    "unit_roundtrip": {
        "attention_flops": _flops("    return float(n_heads * (4.0 * n_q * n_kv * head_dim + 5.0 * n_q * n_kv))\n"),
        "decode_tokens_per_s_bound": _decode(
            "batch_size / ((weight_bytes + batch_size * kv_cache_bytes) / 1e9 / (mem_bandwidth / 1e9))"),
        "roofline_seconds": _seconds("max(flops / 1e12 / (peak_flops / 1e12), bytes_moved / 1e9 / (mem_bandwidth / 1e9))"),
    },
    # helpers per matmul and per tensor, a ValueError subclass, validation by any()/all(),
    # attainable_flops reusing ridge_point (which validates peak and bandwidth itself),
    # the decode bound as time per step, and annotated keyword-only style calls
    "helpers_and_reuse": {
        "attention_flops": '''
class BadSizeError(ValueError):
    """A size or count below 1."""


def matmul_flops(m, k, n):
    return 2 * m * k * n


def attention_flops(n_q, n_kv, head_dim, n_heads=1):
    if any(x < 1 for x in (n_q, n_kv, head_dim, n_heads)):
        raise BadSizeError(f"sizes must be >= 1: {(n_q, n_kv, head_dim, n_heads)}")
    per_head = (matmul_flops(n_q, head_dim, n_kv)      # S = Q K^T
                + 5 * n_q * n_kv                        # softmax
                + matmul_flops(n_q, n_kv, head_dim))    # O = P V
    return per_head * n_heads
''',
        "attention_bytes": '''
import math


def attention_bytes(n_q, n_kv, head_dim, bytes_per_elem, n_heads=1, n_kv_heads=None, fused=False):
    kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    if not all(x >= 1 for x in (n_q, n_kv, head_dim, bytes_per_elem, n_heads, kv_heads)):
        raise ValueError("every size must be at least 1")
    if n_heads % kv_heads != 0:
        raise ValueError(f"{n_heads} query heads do not split into groups over {kv_heads} KV heads")
    traffic = {  # (shape, times it goes through memory)
        "Q": ((n_heads, n_q, head_dim), 1),
        "K": ((kv_heads, n_kv, head_dim), 1),
        "V": ((kv_heads, n_kv, head_dim), 1),
        "O": ((n_heads, n_q, head_dim), 1),
    }
    if not fused:
        traffic["S"] = ((n_heads, n_q, n_kv), 2)   # written, then read by the softmax
        traffic["P"] = ((n_heads, n_q, n_kv), 2)   # written, then read by P V
    return sum(math.prod(shape) * times for shape, times in traffic.values()) * bytes_per_elem
''',
        "roofline_model": '''
def arithmetic_intensity(flops, bytes_moved):
    if bytes_moved <= 0:
        raise ValueError("bytes_moved must be positive")
    if flops < 0:
        raise ValueError("flops must be non-negative")
    return flops / bytes_moved


def ridge_point(peak_flops, mem_bandwidth):
    if min(peak_flops, mem_bandwidth) <= 0:
        raise ValueError("peak_flops and mem_bandwidth must be positive")
    return peak_flops / mem_bandwidth


def attainable_flops(intensity, peak_flops, mem_bandwidth):
    if intensity < 0:
        raise ValueError("intensity must be non-negative")
    if intensity >= ridge_point(peak_flops, mem_bandwidth):   # compute-bound
        return float(peak_flops)
    return float(intensity * mem_bandwidth)                    # memory-bound
''',
        "decode_tokens_per_s_bound": '''
def decode_tokens_per_s_bound(weight_bytes, kv_cache_bytes, mem_bandwidth, batch_size=1):
    if not mem_bandwidth > 0:
        raise ValueError("mem_bandwidth must be > 0")
    if not batch_size >= 1:
        raise ValueError("batch_size must be >= 1")
    if weight_bytes < 0 or kv_cache_bytes < 0:
        raise ValueError("byte counts must be >= 0")
    step_bytes = weight_bytes + batch_size * kv_cache_bytes
    step_seconds = step_bytes / mem_bandwidth
    tokens_per_step = batch_size
    return tokens_per_step / step_seconds
''',
        # the time through the roofline: flops / attainable FLOP/s, reusing the student's own functions
        "roofline_seconds": '''
def roofline_seconds(flops, bytes_moved, peak_flops, mem_bandwidth):
    for name, value in {"flops": flops, "bytes_moved": bytes_moved}.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0")
    for name, value in {"peak_flops": peak_flops, "mem_bandwidth": mem_bandwidth}.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0")
    if bytes_moved == 0:
        return flops / peak_flops
    rate = attainable_flops(arithmetic_intensity(flops, bytes_moved), peak_flops, mem_bandwidth)
    if flops == 0:
        return bytes_moved / mem_bandwidth
    return flops / rate
''',
    },
}

# --------------------------------------------------------------------------------------------
# Realistic mistakes
# --------------------------------------------------------------------------------------------

_F = "test_attention_flops"
_B = "test_attention_bytes"
_R = "test_roofline_model"
_D = "test_decode_tokens_per_s_bound"
_T = "test_roofline_seconds"

MUTANTS: list[dict] = [
    # attention_flops
    {"name": "flops_no_muladd",
     "cells": {"attention_flops": _flops("    return n_heads * (2 * n_q * n_kv * head_dim + 5 * n_q * n_kv)\n")},
     "fails": [_F], "message": "multiply-add is 2 FLOPs"},
    {"name": "flops_no_softmax",
     "cells": {"attention_flops": _flops("    return n_heads * 4 * n_q * n_kv * head_dim\n")},
     "fails": [_F], "message": "softmax left out"},
    {"name": "flops_softmax_3",
     "cells": {"attention_flops": _flops("    return n_heads * (4 * n_q * n_kv * head_dim + 3 * n_q * n_kv)\n")},
     "fails": [_F], "message": "softmax counted as 3 FLOPs"},
    {"name": "flops_causal_half",
     "cells": {"attention_flops": _flops("    return n_heads * (4 * n_q * n_kv * head_dim + 5 * n_q * n_kv) // 2\n")},
     "fails": [_F], "message": "halved for the causal mask"},
    {"name": "flops_one_head",
     "cells": {"attention_flops": _flops("    return 4 * n_q * n_kv * head_dim + 5 * n_q * n_kv\n")},
     "fails": [_F], "message": "counted one head only"},
    {"name": "flops_swapped_nd",
     "cells": {"attention_flops": _flops("    return n_heads * (4 * n_q * n_kv * head_dim + 5 * n_q * head_dim)\n")},
     "fails": [_F], "message": "N^2 vs N*d terms swapped"},
    {"name": "flops_square_scores",
     "cells": {"attention_flops": _flops("    return n_heads * (4 * n_q * n_q * head_dim + 5 * n_q * n_q)\n")},
     "fails": [_F], "message": "score matrix taken as n_q x n_q"},
    # attention_bytes
    {"name": "bytes_fused_counts_sp",
     "cells": {"attention_bytes": _bytes(_bytes_terms(sp_when="True"))},
     "fails": [_B], "message": "S/P bytes counted for fused attention"},
    {"name": "bytes_unfused_no_sp",
     "cells": {"attention_bytes": _bytes(_bytes_terms(sp_when="False"))},
     "fails": [_B], "message": "S and P left out"},
    {"name": "bytes_sp_once",
     "cells": {"attention_bytes": _bytes(_bytes_terms(sp="2 * n_heads * n_q * n_kv"))},
     "fails": [_B], "message": "S and P counted once each"},
    {"name": "bytes_kv_query_heads",
     "cells": {"attention_bytes": _bytes(_bytes_terms(k="n_heads * n_kv * head_dim", v="n_heads * n_kv * head_dim"))},
     "fails": [_B], "message": "K and V exist once per KV head"},
    {"name": "bytes_q_kv_heads",
     "cells": {"attention_bytes": _bytes(_bytes_terms(q="n_kv_heads * n_q * head_dim", o="n_kv_heads * n_q * head_dim",
                                                      sp="4 * n_kv_heads * n_q * n_kv"))},
     "fails": [_B], "message": "Q and O (and S, P) belong to every query head"},
    {"name": "bytes_swapped_nd",
     "cells": {"attention_bytes": _bytes(_bytes_terms(sp="4 * n_heads * n_q * head_dim"))},
     "fails": [_B], "message": "N^2 vs N*d terms swapped"},
    {"name": "bytes_kv_nq_rows",
     "cells": {"attention_bytes": _bytes(_bytes_terms(k="n_kv_heads * n_q * head_dim", v="n_kv_heads * n_q * head_dim"))},
     "fails": [_B], "message": "K and V sized with n_q rows"},
    {"name": "bytes_bits",
     "cells": {"attention_bytes": _bytes(_bytes_terms(scale="bytes_per_elem * 8"))},
     "fails": [_B], "message": "bits instead of bytes"},
    {"name": "bytes_elements",
     "cells": {"attention_bytes": _bytes(_bytes_terms(scale="1"))},
     "fails": [_B], "message": "counted elements, not bytes"},
    {"name": "bytes_only_k",
     "cells": {"attention_bytes": _bytes(_bytes_terms(v="0"))},
     "fails": [_B], "message": "only K counted"},
    # roofline model
    {"name": "intensity_inverted",
     "cells": {"roofline_model": _roofline(intensity="bytes_moved / flops")},
     "fails": [_R], "message": "arithmetic intensity is FLOPs per byte"},
    {"name": "ridge_inverted",
     "cells": {"roofline_model": _roofline(ridge="mem_bandwidth / peak_flops")},
     "fails": [_R], "message": "the ridge point is peak FLOP/s divided by bandwidth"},
    {"name": "ridge_gbps",
     "cells": {"roofline_model": _roofline(ridge="peak_flops / (mem_bandwidth / 1e9)")},
     "fails": [_R], "message": "bandwidth in GB/s vs bytes/s"},
    {"name": "attainable_max",
     "cells": {"roofline_model": _roofline(attainable="max(peak_flops, intensity * mem_bandwidth)")},
     "fails": [_R], "message": "not the max"},
    {"name": "attainable_no_cap",
     "cells": {"roofline_model": _roofline(attainable="intensity * mem_bandwidth")},
     "fails": [_R], "message": "no compute ceiling"},
    {"name": "attainable_no_slope",
     "cells": {"roofline_model": _roofline(attainable="peak_flops")},
     "fails": [_R], "message": "no memory roof"},
    # decode ceiling
    {"name": "decode_per_sequence",
     "cells": {"decode_tokens_per_s_bound": _decode("mem_bandwidth / (weight_bytes + batch_size * kv_cache_bytes)")},
     "fails": [_D], "message": "tokens/s of ONE sequence"},
    {"name": "decode_weights_per_sequence",
     "cells": {"decode_tokens_per_s_bound": _decode("mem_bandwidth / (weight_bytes + kv_cache_bytes)")},
     "fails": [_D], "message": "weights read once per sequence"},
    {"name": "decode_kv_once",
     "cells": {"decode_tokens_per_s_bound": _decode("batch_size * mem_bandwidth / (weight_bytes + kv_cache_bytes)")},
     "fails": [_D], "message": "KV cache read once for the whole batch"},
    {"name": "decode_no_kv",
     "cells": {"decode_tokens_per_s_bound": _decode("batch_size * mem_bandwidth / weight_bytes")},
     "fails": [_D], "message": "KV cache bytes left out"},
    {"name": "decode_gbps",
     "cells": {"decode_tokens_per_s_bound": _decode(f"{_RIGHT_DECODE} * 1e9")},
     "fails": [_D], "message": "bandwidth in GB/s vs bytes/s"},
    {"name": "decode_seconds_per_token",
     "cells": {"decode_tokens_per_s_bound": _decode("(weight_bytes + batch_size * kv_cache_bytes) / "
                                                    "(batch_size * mem_bandwidth)")},
     "fails": [_D], "message": "seconds per token"},
    # time of a kernel
    {"name": "seconds_sum",
     "cells": {"roofline_seconds": _seconds("flops / peak_flops + bytes_moved / mem_bandwidth")},
     "fails": [_T], "message": "added compute time and memory time"},
    {"name": "seconds_min",
     "cells": {"roofline_seconds": _seconds("min(flops / peak_flops, bytes_moved / mem_bandwidth)")},
     "fails": [_T], "message": "the smaller of the two times"},
    {"name": "seconds_compute_only",
     "cells": {"roofline_seconds": _seconds("flops / peak_flops")},
     "fails": [_T], "message": "used only the compute time"},
    {"name": "seconds_memory_only",
     "cells": {"roofline_seconds": _seconds("bytes_moved / mem_bandwidth")},
     "fails": [_T], "message": "used only the memory time"},
    {"name": "seconds_milliseconds",
     "cells": {"roofline_seconds": _seconds(f"1000 * {_RIGHT_SECONDS}")},
     "fails": [_T], "message": "milliseconds instead of seconds"},
    # `n_kv_heads or n_heads`: a plausible idiom for the None default, but n_kv_heads=0 then
    # means MHA instead of raising the ValueError the statement asks for
    {"name": "kv_heads_or_default",
     "cells": {"attention_bytes": _BYTES_HEAD.replace("    if n_kv_heads is None:\n        n_kv_heads = n_heads\n",
                                                      "    n_kv_heads = n_kv_heads or n_heads\n")
               + _BYTES_CHECK + _bytes_terms()},
     "fails": ["test_attention_bytes_validation"], "message": "expected it to raise ValueError"},
    # right numbers, no input validation: each loses only the point of its validation test
    {"name": "flops_no_validation",
     "cells": {"attention_flops": _flops(_RIGHT_FLOPS, check=False)},
     "fails": ["test_attention_flops_validation"], "message": "expected it to raise ValueError"},
    {"name": "bytes_no_validation",
     "cells": {"attention_bytes": _bytes(_bytes_terms(), check=False)},
     "fails": ["test_attention_bytes_validation"], "message": "expected it to raise ValueError"},
    {"name": "roofline_no_validation",
     "cells": {"roofline_model": _roofline(check=False)},
     "fails": ["test_roofline_model_validation"], "message": "expected ValueError"},
    {"name": "seconds_no_validation",
     "cells": {"roofline_seconds": _seconds(_RIGHT_SECONDS, check=False)},
     "fails": ["test_roofline_seconds_validation"], "message": "expected ValueError"},
    {"name": "decode_no_validation",
     "cells": {"decode_tokens_per_s_bound": _decode(_RIGHT_DECODE, check=False)},
     "fails": ["test_decode_tokens_per_s_bound_validation"], "message": "expected it to raise ValueError"},
    # validates sizes but forgets the GQA divisibility check
    {"name": "bytes_no_group_check",
     "cells": {"attention_bytes": _BYTES_HEAD + _BYTES_CHECK.replace(
         "    if n_heads % n_kv_heads:\n        raise ValueError(\"n_heads must be a multiple of n_kv_heads\")\n", "")
         + _bytes_terms()},
     "fails": ["test_attention_bytes_validation"], "message": "expected it to raise ValueError"},
]

# One mistake per cell for the demo's "mistakes" submission.
SAMPLE_MISTAKES: list[str] = ["flops_no_muladd", "bytes_fused_counts_sp", "ridge_gbps", "seconds_sum",
                               "decode_kv_once"]
