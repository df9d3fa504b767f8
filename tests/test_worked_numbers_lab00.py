"""Every number Lab 00 states in its text and model answers is recomputed here from the spec table.

The lab's code cells compute and print their numbers; its Markdown cannot. So each claim below
is a pattern over the lab's Markdown whose groups must equal values computed from
``course_lib.specs`` (and a few quoted figures, each with the source it quotes). A changed spec
that would leave a stale number in the text makes a claim fail, and a worked number the claims do
not cover (a decimal, a number of 100 or more, or one with a unit) fails the coverage test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction

import nbformat
import pytest

from course_lib.specs import (
    DEEPSEEK_67B_CACHE,
    MINIGPT,
    VLLM_GPU_MEMORY_UTILIZATION,
    hardware,
    model,
    usable_bytes,
)
from course_lib.units import GB, GiB, MiB, dtype_bytes
from tools.samples import ROOT

LAB = "lab00_cache_sizing"
WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
FRACTION_WORDS = {2: "half", 4: "quarter", 8: "eighth"}


def _markdown() -> str:
    nb = nbformat.read(ROOT / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    # the points table is checked against the cells' metadata by tests/test_lab00.py
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    return " ".join(text.split())


# ---- the quantities, computed from the spec table --------------------------------------------------

def _per_token(name: str, s: float = 2) -> int:
    m = model(name)
    if m.attention == "MLA":
        return int(m.n_layers * (m.mla_kv_lora_rank + m.mla_rope_dim) * s)
    return int(2 * m.n_layers * m.n_kv_heads * m.head_dim * s)


def _gib(n: float, digits: int = 2) -> str:
    return f"{n / GiB:.{digits}f}"


def _max_context(budget: int, weights: int, name: str, batch: int) -> int:
    return max(0, (budget - weights) // (_per_token(name) * batch))


def _max_batch(budget: int, weights: int, per_seq: int, tp: int = 1, kv_heads: int | None = None) -> int:
    shards = min(tp, kv_heads) if kv_heads else tp
    return max(0, (tp * budget - weights) * shards // (tp * per_seq))


A100_40, A100_80, H100, H200 = hardware("A100 40GB SXM"), hardware("A100 80GB SXM"), hardware("H100 SXM"), hardware("H200 SXM")
MI300X, L4 = hardware("MI300X"), hardware("L4")
LLAMA2_7B, LLAMA3_8B, GPT3, GEMMA2, MISTRAL = (model(n) for n in ("Llama-2-7B", "Llama-3-8B", "GPT-3 175B",
                                                                   "Gemma-2-9B", "Mistral-7B"))
GPT3_32K = _per_token("GPT-3 175B") * 32768
PER_SEQ_8K = _per_token("Llama-3-8B") * 8192
PER_SEQ_8K_ALL_HEADS = 2 * LLAMA3_8B.n_layers * LLAMA3_8B.n_heads * LLAMA3_8B.head_dim * 2 * 8192
W_LLAMA3 = LLAMA3_8B.n_params * 2
W_LLAMA2 = LLAMA2_7B.n_params * 2
DS67 = 2 * DEEPSEEK_67B_CACHE["n_layers"] * DEEPSEEK_67B_CACHE["n_kv_heads"] * DEEPSEEK_67B_CACHE["head_dim"] * 2
DS_V2 = _per_token("DeepSeek-V2")
WASTED = 32 * (32768 - 1024) * _per_token("Llama-2-7B")


def _label_number(dev) -> str:
    return dev.mem_label.removesuffix("GB")


def _gemma_dims():
    return (str(GEMMA2.n_heads), str(GEMMA2.head_dim), str(GEMMA2.n_heads * GEMMA2.head_dim), str(GEMMA2.d_model))


def _windows():
    assert MISTRAL.n_window_layers == MISTRAL.n_layers and MISTRAL.sliding_window == GEMMA2.sliding_window
    assert 2 * GEMMA2.n_window_layers == GEMMA2.n_layers   # "half of Gemma-2-9B's layers"
    return (f"{GEMMA2.sliding_window:,}",)


def _pick_gpus():
    n = 8
    needed = math.ceil(Fraction(GPT3.n_params * 2, usable_bytes(H100)))
    assert n >= needed and GPT3.n_heads % n == 0 and n & (n - 1) == 0
    return (str(n),)


def _tp_growth():
    batches = {x: _max_batch(usable_bytes(H100), W_LLAMA3, PER_SEQ_8K, x, LLAMA3_8B.n_kv_heads) for x in (1, 2, 4, 8)}
    assert all(batches[x] > x * batches[1] for x in (2, 4, 8))
    return (str(LLAMA3_8B.n_kv_heads),)


def _tp_plateau():
    b = {x: _max_batch(usable_bytes(H100), W_LLAMA3, PER_SEQ_8K, x, LLAMA3_8B.n_kv_heads) for x in (8, 32)}
    return (str(b[8]), "8", str(b[32]), "32")


def _seed_batch():
    # the seed write-up: (80 - 15) GB free, 4 GB per sequence -> 16; quoted, recomputed from its own numbers
    return (str(LLAMA3_8B.n_heads), str(PER_SEQ_8K_ALL_HEADS // GiB), str((80 - 15) // 4), "80", "80")


def _gqa_batch():
    right = _max_batch(usable_bytes(H100), W_LLAMA3, PER_SEQ_8K)
    wrong = _max_batch(usable_bytes(H100), W_LLAMA3, PER_SEQ_8K_ALL_HEADS)
    assert right % wrong == 0
    return (str(LLAMA3_8B.n_kv_heads), str(PER_SEQ_8K // GiB), WORDS[right // wrong], str(PER_SEQ_8K_ALL_HEADS // GiB))


def _ds_reconstruction():
    six_bit = 1 - Fraction(DS_V2 * 6, 16 * DS67)
    assert f"{float(six_bit) * 100:.1f}" == "93.3"   # rounds to the paper's figure
    return ("6", f"{float(six_bit) * 100:.2f}", "93.3")


#: (pattern over the lab's Markdown, the groups it must show, computed)
CLAIMS: list[tuple[str, Callable[[], tuple[str, ...]]]] = [
    (r"\$1\\ \\text\{GiB\} = 2\^\{30\}\$ bytes \$= ([\d.]+) \\cdot 10\^9\$ bytes", lambda: (f"{GiB / GB:.4f}",)),
    (r'a card sold as "(\d+)GB" holds about (\d+) GiB \(Part 3', lambda: (_label_number(A100_80), _gib(A100_80.mem_bytes, 0))),
    (r"Gemma-2-9B: \$(\d+) \\cdot (\d+) = (\d+)\$ while \$d_\\text\{model\} = (\d+)\$", _gemma_dims),
    (r"Gemma-2-9B even has \$H d_h = (\d+) \\ne d_\\text\{model\} = (\d+)\$",
     lambda: (str(GEMMA2.n_heads * GEMMA2.head_dim), str(GEMMA2.d_model))),
    (r"fp16 and bf16 take \$s = (\d)\$ bytes; fp32 takes (\d); int8 and fp8 take (\d)\.",
     lambda: tuple(str(int(dtype_bytes(d))) for d in ("fp16", "fp32", "int8"))),
    (r"Writing (\d+) for fp16 makes every answer (\d+)x too large", lambda: ("16", str(16 // int(dtype_bytes("fp16"))))),
    (r"int4 takes ([\d.]+) bytes", lambda: (str(dtype_bytes("int4")),)),
    (r"\(int4 = ([\d.]+)\)", lambda: (str(dtype_bytes("int4")),)),
    (r'`"bf16"` gives (\d), `"fp8"` gives (\d), `"fp32"` gives (\d)',
     lambda: tuple(str(int(dtype_bytes(d))) for d in ("bf16", "fp8", "fp32"))),
    (r"DeepSeek-V3 was released with (\w+) weights", lambda: (model("DeepSeek-V3").dtype,)),
    (r"Mistral-7B and half of Gemma-2-9B's layers only attend to the last ([\d,]+) tokens", _windows),
    (r"MiniGPT \(Lab 01\) runs in (\w+), so its cache is sized with (\d) bytes per number",
     lambda: (MINIGPT.dtype, str(int(dtype_bytes(MINIGPT.dtype))))),
    (r"at (\d+)k tokens a single GPT-3-sized MHA sequence needs (\d+) GiB of cache \(([\d.]+) GB\)",
     lambda: ("32", _gib(GPT3_32K, 0), f"{GPT3_32K / GB:.1f}")),
    (r"more than an H100 \(([\d.]+) GiB reported\) or an H200 \(([\d.]+) GiB\) holds",
     lambda: (_gib(H100.mem_bytes) if H100.mem_bytes < GPT3_32K else "fits", _gib(H200.mem_bytes, 1)
              if H200.mem_bytes < GPT3_32K else "fits")),
    (r"MI300X \((\d+) GiB\) would hold it with (\d+) GiB to spare, but GPT-3's fp16 weights alone are (\d+) GiB",
     lambda: (_gib(MI300X.mem_bytes, 0), _gib(MI300X.mem_bytes - GPT3_32K, 0), _gib(GPT3.n_params * 2, 0))),
    (r"Llama-2-70B \(MHA\) stores \$(\d+) \\cdot (\d+)\$ KV heads per token, (\d+) times the real Llama-2-70B",
     lambda: (str(model("Llama-2-70B (MHA)").n_layers), str(model("Llama-2-70B (MHA)").n_kv_heads),
              str(_per_token("Llama-2-70B (MHA)") // _per_token("Llama-2-70B")))),
    (r'an "(\d+)GB" card holds about (\d+) GiB \$= ([\d.]+) \\cdot 10\^9\$ bytes, \*more\* than \$(\d+) \\cdot 10\^9\$',
     lambda: (_label_number(A100_80), _gib(A100_80.mem_bytes, 0), f"{A100_80.mem_bytes / GB:.1f}", _label_number(A100_80))),
    (r"reports (\d+) MiB \(exactly (\d+) GiB\) for an A100 80GB and (\d+) MiB \(([\d.]+) GiB\) for an H100 80GB HBM3; "
     r'an L4 sold as "(\d+)GB" reports (\d+) MiB \(([\d.]+) GiB\)',
     lambda: (str(A100_80.mem_bytes // MiB), _gib(A100_80.mem_bytes, 0), str(H100.mem_bytes // MiB), _gib(H100.mem_bytes),
              _label_number(L4), str(L4.mem_bytes // MiB), _gib(L4.mem_bytes))),
    (r"engine use (\d+)% of the GPU by default \(`gpu_memory_utilization=([\d.]+)`\)",
     lambda: (f"{VLLM_GPU_MEMORY_UTILIZATION * 100:.0f}", f"{VLLM_GPU_MEMORY_UTILIZATION:g}")),
    (r"\\lfloor ([\d.]+) \\times\$ reported capacity", lambda: (f"{VLLM_GPU_MEMORY_UTILIZATION:g}",)),
    (r"and the (\d+)% left over is assumed", lambda: (f"{(1 - VLLM_GPU_MEMORY_UTILIZATION) * 100:.0f}",)),
    (r'Reading "(\d+)GB" as \$(\d+) \\cdot 10\^9\$ bytes is wrong twice: it understates the card by (\d+)%',
     lambda: (_label_number(A100_80), _label_number(A100_80), f"{(1 - GB / GiB) * 100:.0f}")),
    (r"Its weights are \$([\d{},]+) \\times (\d)\$ bytes \$= ([\d.]+)\$ GB \(([\d.]+) GiB\)",
     lambda: (f"{LLAMA2_7B.n_params:,}".replace(",", "{,}"), "2", f"{W_LLAMA2 / GB:.2f}", _gib(W_LLAMA2))),
    (r'assumed "(\d+) GiB" of weights, ([\d.]+) GB', lambda: ("14", f"{14 * GiB / GB:.2f}")),   # quoted from the seed
    (r"batch (\d) would allow a ([\d,]+)-token context and batch (\d) still ([\d,]+) tokens per sequence, both beyond "
     r"the ([\d,]+) tokens the model was trained for",
     lambda: ("1", f"{_max_context(usable_bytes(A100_40), W_LLAMA2, 'Llama-2-7B', 1):,}", "8",
              f"{_max_context(usable_bytes(A100_40), W_LLAMA2, 'Llama-2-7B', 8):,}", f"{LLAMA2_7B.max_seq_len:,}")
     if _max_context(usable_bytes(A100_40), W_LLAMA2, "Llama-2-7B", 8) > LLAMA2_7B.max_seq_len else ("not beyond",)),
    (r"you would pick (\d+) GPUs for fp16", _pick_gpus),
    (r'with all (\d+) heads, got (\d+) GiB per sequence and a batch of (\d+) \(it also read "(\d+)GB" as (\d+) GB',
     _seed_batch),
    (r"Llama 3 uses GQA with (\d+) KV heads: each 8k sequence takes (\d+) GiB, and the batch is (\w+) times larger than "
     r"with (\d+) GiB per sequence", _gqa_batch),
    (r"Up to (\d+) GPUs the batch grows a little faster than the GPU count", _tp_growth),
    (r"From (\d+) GPUs on, each GPU holds an (\w+) of every sequence \(one whole KV head of (\d+)\)",
     lambda: (str(LLAMA3_8B.n_kv_heads), FRACTION_WORDS[LLAMA3_8B.n_kv_heads], str(LLAMA3_8B.n_kv_heads))),
    (r"\((\d+) sequences at TP (\d+), (\d+) at TP (\d+)\)", _tp_plateau),
    (r"each query/key head has \$(\d+) \+ (\d+) = (\d+)\$ numbers",
     lambda: (str(model("DeepSeek-V2").head_dim - model("DeepSeek-V2").mla_rope_dim), str(model("DeepSeek-V2").mla_rope_dim),
              str(model("DeepSeek-V2").head_dim))),
    (r"each value head (\d+) \(`spec.v_head_dim`\)", lambda: (str(model("DeepSeek-V2").v_head_dim),)),
    (r"stores \$H \\cdot \((\d+) \+ (\d+)\)\$ numbers per layer",
     lambda: (str(model("DeepSeek-V3").head_dim), str(model("DeepSeek-V3").v_head_dim))),
    (r"Mistral-7B saves (\d)x cache memory vs Llama-2-7B by using GQA with (\d+) KV heads instead of (\d+)\.",
     lambda: (f"{_per_token('Llama-2-7B') // _per_token('Mistral-7B')}", str(MISTRAL.n_kv_heads), str(LLAMA2_7B.n_kv_heads))),
    (r"Same layers \((\d+)\), same head dimension \((\d+)\), both (\d) bytes per number \((\w+) vs (\w+)\): the ratio of "
     r"per-token sizes is exactly \$(\d+) / (\d+) = (\d+)\$",
     lambda: (str(MISTRAL.n_layers) if MISTRAL.n_layers == LLAMA2_7B.n_layers else "differ",
              str(MISTRAL.head_dim) if MISTRAL.head_dim == LLAMA2_7B.head_dim else "differ",
              str(int(dtype_bytes(LLAMA2_7B.dtype))), LLAMA2_7B.dtype, MISTRAL.dtype, str(LLAMA2_7B.n_kv_heads),
              str(MISTRAL.n_kv_heads), str(LLAMA2_7B.n_kv_heads // MISTRAL.n_kv_heads))),
    (r"every layer has a sliding window of ([\d,]+) tokens, so a rolling buffer overwrites the oldest entries and past "
     r"(\d+)k tokens", lambda: (f"{MISTRAL.sliding_window:,}", str(MISTRAL.sliding_window // 1024))),
    (r"Gemma-2-9B windows only half of its layers \((\d+) local, (\d+) global\)",
     lambda: (str(GEMMA2.n_window_layers), str(GEMMA2.n_layers - GEMMA2.n_window_layers))),
    (r"DeepSeek-V2 reports a ([\d.]+)% smaller cache than DeepSeek 67B", lambda: ("93.3",)),   # quoted (P6)
    (r"MLA alone \(both caches in bf16\) gives ([\d.]+)%", lambda: (f"{(1 - DS_V2 / DS67) * 100:.1f}",)),
    (r"quantizes the cache to about (\d) bits per element on average \(§3\.2\.3\)", lambda: ("6",)),   # quoted (P6)
    (r"MLA at (\d) bits gives ([\d.]+)%, which rounds to the reported ([\d.]+)%", _ds_reconstruction),
    (r"its authors report (\d+)–(\d+)% of cache memory wasted", lambda: ("60", "80")),   # quoted (P1)
    (r"(\d+) GiB reserved for nothing: the memory of more than (\w+) H100s",
     lambda: (_gib(WASTED, 0), WORDS[int(WASTED // H100.mem_bytes)])),
    (r"Llama-3-8B has \$d_\\text\{model\} = (\d+)\$ but caches \$(\d+) \\cdot (\d+) = (\d+)\$ numbers per layer",
     lambda: (str(LLAMA3_8B.d_model), str(LLAMA3_8B.n_kv_heads), str(LLAMA3_8B.head_dim),
              str(LLAMA3_8B.n_kv_heads * LLAMA3_8B.head_dim))),
    (r"overstates its cache (\d)x \((\d) GiB instead of (\d) GiB per 8k sequence\)",
     lambda: (str(LLAMA3_8B.d_model // (LLAMA3_8B.n_kv_heads * LLAMA3_8B.head_dim)),
              str(2 * LLAMA3_8B.n_layers * LLAMA3_8B.d_model * 2 * 8192 // GiB), str(PER_SEQ_8K // GiB))),
    (r"reserving ([\d,]+) slots per sequence when the average is ([\d,]+) wastes ([\d.]+)% of the cache: (\d+) GiB for "
     r"Llama-2-7B at batch (\d+)", lambda: ("32,768", "1,024", f"{(1 - 1024 / 32768) * 100:.2f}", _gib(WASTED, 0), "32")),
    (r"Llama-3-8B and got (\d) GiB per 8k sequence; the GQA test named the (\d)x",
     lambda: (str(PER_SEQ_8K_ALL_HEADS // GiB), str(PER_SEQ_8K_ALL_HEADS // PER_SEQ_8K))),
    (r'I took "(\d+)GB" to mean \$(\d+) \\cdot 10\^9\$ free bytes and got a batch of (\d+) for Llama-3-8B on an H100\. '
     r"The card reports ([\d.]+) GiB, and only (\d+)% of that is a safe budget once the CUDA context and activations are "
     r"counted: the batch is (\d+)\.",
     lambda: (_label_number(H100), _label_number(H100),
              str(_max_batch(int(_label_number(H100)) * GB, W_LLAMA3, PER_SEQ_8K)), _gib(H100.mem_bytes),
              f"{VLLM_GPU_MEMORY_UTILIZATION * 100:.0f}", str(_max_batch(usable_bytes(H100), W_LLAMA3, PER_SEQ_8K)))),
]

#: device labels and section references: names, not worked numbers
NAMES = [r'"an 80GB GPU"', r'\*\*The label\.\*\* "80GB" is the product\'s name',
         r"\*\*Llama-2-7B on an A100 40GB\.\*\*"]


@pytest.mark.parametrize("pattern,expected", CLAIMS, ids=[f"claim{i:02d}" for i in range(len(CLAIMS))])
def test_claim_matches_the_spec_table(pattern, expected):
    text = _markdown()
    found = re.search(pattern, text)
    assert found, f"the lab no longer says: {pattern}"
    assert found.groups() == tuple(expected()), (pattern, found.groups(), expected())


_UNIT = r"(?=\s?(?:GiB|GB|MiB|%|x\b|-token|tokens|sequences|GPUs))"
_NUMBER = re.compile(r"(?<![\w.\\^{])\d+(?:(?:\{,\}|,)\d{3})*(?:\.\d+)?")


def test_every_worked_number_in_the_text_is_claimed():
    text = _markdown()
    covered = [m.span() for pattern, _ in CLAIMS for m in re.finditer(pattern, text)]
    covered += [m.span() for pattern in NAMES for m in re.finditer(pattern, text)]
    loose = []
    for m in _NUMBER.finditer(text):
        token = m.group(0)
        value = float(token.replace("{,}", "").replace(",", ""))
        worked = "." in token or value >= 100 or re.match(_UNIT, text[m.end():])
        if worked and not any(a <= m.start() and m.end() <= b for a, b in covered):
            loose.append(text[max(0, m.start() - 40):m.end() + 20])
    assert not loose, "numbers in Lab 00's text that no claim recomputes:\n" + "\n".join(loose)


def test_usable_budget_is_the_stated_fraction():
    for dev in (A100_40, H100, L4):
        assert usable_bytes(dev) == dev.mem_bytes * 9 // 10
    assert VLLM_GPU_MEMORY_UTILIZATION == 0.9
