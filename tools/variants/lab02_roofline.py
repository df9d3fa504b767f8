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
              attainable: str = "min(peak_flops, intensity * mem_bandwidth)") -> str:
    return "\n\n".join([_INTENSITY.format(expr=intensity), _RIDGE.format(expr=ridge),
                        _ATTAINABLE.format(expr=attainable)])


_DECODE = '''def decode_tokens_per_s_bound(weight_bytes, kv_cache_bytes, mem_bandwidth, batch_size=1):
    """Aggregate tokens/s ceiling of a decode step."""
    if mem_bandwidth <= 0 or batch_size < 1 or weight_bytes < 0 or kv_cache_bytes < 0:
        raise ValueError("bad decode input")
    return {expr}
'''


def _decode(expr: str) -> str:
    return _DECODE.format(expr=expr)


_RIGHT_FLOPS = "    return n_heads * (4 * n_q * n_kv * head_dim + 5 * n_q * n_kv)\n"
_RIGHT_DECODE = "batch_size * mem_bandwidth / (weight_bytes + batch_size * kv_cache_bytes)"

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
    },
    # float arithmetic that stays integral, GB/s converted back and forth
    "unit_roundtrip": {
        "attention_flops": _flops("    return float(n_heads * (4.0 * n_q * n_kv * head_dim + 5.0 * n_q * n_kv))\n"),
        "decode_tokens_per_s_bound": _decode(
            "batch_size / ((weight_bytes + batch_size * kv_cache_bytes) / 1e9 / (mem_bandwidth / 1e9))"),
    },
}

# --------------------------------------------------------------------------------------------
# Realistic mistakes
# --------------------------------------------------------------------------------------------

_F = "test_attention_flops"
_B = "test_attention_bytes"
_R = "test_roofline_model"
_D = "test_decode_tokens_per_s_bound"

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
    # no input validation anywhere: right numbers, no ValueError
    {"name": "no_validation",
     "cells": {"attention_flops": _flops(_RIGHT_FLOPS, check=False),
               "attention_bytes": _bytes(_bytes_terms(), check=False)},
     "fails": ["test_bad_input"], "message": "expected it to raise ValueError"},
]

# One mistake per cell for the demo's "mistakes" submission.
SAMPLE_MISTAKES: list[str] = ["flops_no_muladd", "bytes_fused_counts_sp", "ridge_gbps", "decode_kv_once"]
