"""Lab 00: the spec table and the solution agree, to the byte, with an independent source.

The independent source is the course's fact sheet (../shared/facts/FACTS.md, section 2),
whose per-token and per-sequence sizes were computed by hand from the cited configs.
"""

from __future__ import annotations

import re

import pytest

from course_lib.specs import MODELS
from course_lib.units import dtype_bytes
from tools.samples import ROOT, solution_code

FACTS = ROOT.parent / "shared" / "facts" / "FACTS.md"

# fact-sheet row label -> course model name
FACT_ROWS = {
    "GPT-2 small": "GPT-2 small",
    "GPT-2 XL": "GPT-2 XL",
    "Llama-2-7B": "Llama-2-7B",
    "Llama-2-13B": "Llama-2-13B",
    "Llama-2-70B (real, H_kv = 8)": "Llama-2-70B",
    'Llama-2-70B "MHA" (hypothetical H_kv = 64)': "Llama-2-70B (MHA)",
    "Llama-3-8B": "Llama-3-8B",
    "Llama-3.1-70B": "Llama-3.1-70B",
    "Mistral-7B-v0.1, naive (no window)": "Mistral-7B",
    "Mixtral-8x7B": "Mixtral-8x7B",
    "GPT-3 175B": "GPT-3 175B",
    "Qwen2.5-7B": "Qwen2.5-7B",
    "Gemma-2-9B, all 42 layers full": "Gemma-2-9B",
    "Falcon-7B (MQA, H_kv = 1)": "Falcon-7B",
    "DeepSeek-V2 (MLA, absorbed cache)": "DeepSeek-V2",
    "DeepSeek-V3 (MLA, absorbed cache)": "DeepSeek-V3",
}


def _fact_sheet_sizes() -> dict[str, tuple[int, int, int]]:
    """model -> (bytes/token, bytes at 4096, bytes at 32768) from FACTS.md section 2 (16-bit)."""
    if not FACTS.exists():
        pytest.skip(f"fact sheet not found at {FACTS}")
    text = FACTS.read_text()
    section = text.split("## 2.", 1)[1].split("## 3.", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] not in FACT_ROWS:
            continue
        per_token = int(re.search(r"\*\*([\d,]+) B\*\*", cells[1]).group(1).replace(",", ""))
        at = [re.search(r"([\d,]{5,}) B", c) for c in cells[2:4]]
        sizes = [int(m.group(1).replace(",", "")) if m else None for m in at]
        out[FACT_ROWS[cells[0]]] = (per_token, *sizes)
    return out


def _solution_namespace() -> dict:
    ns: dict = {}
    exec("import math\nimport numpy as np\nimport pandas as pd\n"
         "from course_lib.specs import HARDWARE, MODELS, model\n"
         "from course_lib.units import GB, GiB, dtype_bytes, format_bytes\n", ns)
    for code in solution_code(ROOT, "lab00_cache_sizing", code_only=True).values():
        exec(code, ns)
    return ns


def test_fact_sheet_parsed():
    sizes = _fact_sheet_sizes()
    assert len(sizes) == len(FACT_ROWS), sorted(set(FACT_ROWS.values()) - set(sizes))


def test_solution_matches_fact_sheet_to_the_byte():
    ns = _solution_namespace()
    for name, (per_token, at_4k, at_32k) in _fact_sheet_sizes().items():
        assert ns["model_kv_bytes_per_token"](MODELS[name], 2) == per_token, name
        if at_4k is not None and MODELS[name].attention != "MLA":
            assert ns["kv_cache_bytes"](MODELS[name].n_layers, MODELS[name].n_kv_heads,
                                        MODELS[name].head_dim, 4096, 1, 2) == at_4k, name
        if at_32k is not None and MODELS[name].attention != "MLA":
            assert ns["kv_cache_bytes"](MODELS[name].n_layers, MODELS[name].n_kv_heads,
                                        MODELS[name].head_dim, 32768, 1, 2) == at_32k, name


def test_forward_table_matches_independent_calculation():
    ns = _solution_namespace()
    names = ["MiniGPT", "GPT-2 small", "Llama-2-7B", "Llama-2-13B", "Llama-2-70B (MHA)", "GPT-3 175B"]
    table = ns["cache_size_table"](names, [4096, 32768])
    facts = _fact_sheet_sizes()
    for name in names:
        spec = MODELS[name]
        s = int(dtype_bytes(spec.dtype))
        # an independent re-derivation: numbers per token, layer by layer
        numbers = sum(2 * spec.n_kv_heads * spec.head_dim for _layer in range(spec.n_layers))
        assert table.loc[name, "per_token"] == numbers * s
        assert table.loc[name, "S=4096"] == numbers * s * 4096
        if name in facts and s == 2:
            assert (table.loc[name, "per_token"], table.loc[name, "S=4096"], table.loc[name, "S=32768"]) == facts[name]
    # MiniGPT is fp32: 2 * 4 layers * 2 KV heads * 32 dims * 4 bytes
    assert table.loc["MiniGPT", "per_token"] == 2048


def test_seed_mistake_is_4x():
    """The seed write-up's 4 GiB per 8k Llama-3-8B sequence used all 32 heads: 4x too large."""
    ns = _solution_namespace()
    spec = MODELS["Llama-3-8B"]
    right = ns["kv_cache_bytes"](spec.n_layers, spec.n_kv_heads, spec.head_dim, 8192, 1, 2)
    wrong = ns["kv_cache_bytes"](spec.n_layers, spec.n_heads, spec.head_dim, 8192, 1, 2)
    assert right == 2**30 and wrong == 4 * 2**30


def test_lab00_solutions_do_not_live_in_course_lib():
    text = "\n".join(p.read_text() for p in (ROOT / "course_lib").glob("*.py"))
    for name in ["def kv_bytes_per_token", "def kv_cache_bytes", "def max_context_len", "def max_batch_size",
                 "def gpus_to_hold_weights", "def preallocation_waste", "def cache_size_table"]:
        assert name not in text, f"course_lib must not hold the answer {name}"


def test_points_table_matches_cell_metadata():
    import nbformat

    for nb_path in sorted((ROOT / "source").glob("*/*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        points = sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in nb.cells)
        intro = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
        m = re.search(r"\*\*total\*\*\s*\|\s*\*\*(\d+)\*\*", intro)
        assert m, f"{nb_path.name}: no '**total** | **N**' row in the points table near the top"
        assert int(m.group(1)) == points, f"{nb_path.name}: table says {m.group(1)}, cells sum to {points}"


def test_minigpt_row_is_the_course_model():
    spec = MODELS["MiniGPT"]
    assert spec.dtype == "fp32" and spec.n_kv_heads < spec.n_heads  # GQA exercised
