"""Lab 00: the spec table and the solution agree, to the byte, with an independent source.

The independent source is the course's fact sheet, ``docs/facts.md``: its per-token and
per-sequence sizes (section 2) were computed by hand from the cited configs, and its section 7
lists the memory capacities the hardware table must hold. The last tests grade every variant of
``tools/variants/lab00_cache_sizing.py`` in-process (no nbgrader): correct ones pass every test
cell, each mistake fails the cells it declares with its message, and a missing input check costs
only its own small cell.
"""

from __future__ import annotations

import re
import traceback

import pytest

from course_lib.specs import HARDWARE, MODELS, SOURCES
from course_lib.units import GiB, MiB, dtype_bytes
from tools import variant_cells
from tools.samples import ROOT, solution_code
from tools.variants import lab00_cache_sizing as variants

FACTS = ROOT / "docs" / "facts.md"
LAB = "lab00_cache_sizing"

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


def _section(number: int) -> str:
    text = FACTS.read_text()
    return text.split(f"\n## {number}.", 1)[1].split("\n## ", 1)[0]


def _fact_sheet_sizes() -> dict[str, tuple[int, int, int]]:
    """model -> (bytes/token, bytes at 4096, bytes at 32768) from the fact sheet's section 2 (16-bit)."""
    out = {}
    for line in _section(2).splitlines():
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
         "from course_lib.specs import HARDWARE, MODELS, hardware, model, usable_bytes\n"
         "from course_lib.units import GB, GiB, dtype_bytes, format_bytes\n", ns)
    for code in solution_code(ROOT, LAB, code_only=True).values():
        exec(code, ns)
    return ns


def test_fact_sheet_is_in_the_repository_and_parsed():
    assert FACTS.exists(), "docs/facts.md is the course's fact sheet"
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
    names = ["GPT-2 small", "Llama-2-7B", "Llama-2-13B", "Llama-2-70B (MHA)", "GPT-3 175B", "Gemma-2-9B"]
    table = ns["cache_size_table"](names, [4096, 32768], "bf16")
    facts = _fact_sheet_sizes()
    for name in names:
        spec = MODELS[name]
        # an independent re-derivation: numbers per token, layer by layer, 2 bytes each
        numbers = sum(2 * spec.n_kv_heads * spec.head_dim for _layer in range(spec.n_layers))
        assert table.loc[name, "per_token"] == numbers * 2
        assert table.loc[name, "S=4096"] == numbers * 2 * 4096
        # the table ignores sliding windows (Gemma-2's fact-sheet row "all 42 layers full")
        assert (table.loc[name, "per_token"], table.loc[name, "S=4096"], table.loc[name, "S=32768"]) == facts[name]
    # the cache dtype is the argument, not the weights' dtype: MiniGPT's weights are fp32
    assert MODELS["MiniGPT"].dtype == "fp32"
    assert ns["cache_size_table"](["MiniGPT"], [1], "fp32").loc["MiniGPT", "per_token"] == 2 * 4 * 2 * 32 * 4
    assert ns["cache_size_table"](["MiniGPT"], [1], "bf16").loc["MiniGPT", "per_token"] == 2 * 4 * 2 * 32 * 2
    assert ns["cache_size_table"](["Llama-3-8B"], [1], "fp8").loc["Llama-3-8B", "per_token"] == 131_072 // 2


def test_seed_mistake_is_4x():
    """The seed write-up's 4 GiB per 8k Llama-3-8B sequence used all 32 heads: 4x too large."""
    ns = _solution_namespace()
    spec = MODELS["Llama-3-8B"]
    right = ns["kv_cache_bytes"](spec.n_layers, spec.n_kv_heads, spec.head_dim, 8192, 1, 2)
    wrong = ns["kv_cache_bytes"](spec.n_layers, spec.n_heads, spec.head_dim, 8192, 1, 2)
    assert right == 2**30 and wrong == 4 * 2**30


# ---- hardware capacities: binary, as reported, and the same as the fact sheet ----------------------

def _fact_sheet_capacities() -> dict[str, int]:
    """device -> bytes, from the capacity table of the fact sheet's section 7."""
    out = {}
    for line in _section(7).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d,]+", cells[3]):
            out[cells[0]] = int(cells[3].replace(",", ""))
    return out


def test_capacities_are_binary_and_match_the_fact_sheet():
    capacities = _fact_sheet_capacities()
    assert set(capacities) == set(HARDWARE), set(capacities) ^ set(HARDWARE)
    for name, dev in HARDWARE.items():
        assert type(dev.mem_bytes) is int and dev.mem_bytes == capacities[name], name
        assert dev.mem_bytes % MiB == 0, f"{name}: a reported capacity is a whole number of MiB"
        assert dev.mem_bytes % 10**9 != 0, f"{name}: {dev.mem_bytes} B is a decimal N x 10**9 figure"
        label_gib = int(dev.mem_label.removesuffix("GB")) * GiB
        if dev.mem_measured:
            assert set(dev.sources) & {"H16", "H17", "H18"}, f"{name}: a measured capacity cites its measurement"
            assert f"{dev.mem_bytes // MiB} MiB" in dev.notes, name
            assert 0.9 * label_gib < dev.mem_bytes <= label_gib, name   # the label, less what the driver keeps
        else:
            assert dev.mem_bytes == label_gib, name
            assert "label is read as GiB" in dev.notes, name


def test_the_measured_figures_of_the_fact_sheet():
    mib = {name: dev.mem_bytes // MiB for name, dev in HARDWARE.items()}
    assert (mib["A100 40GB SXM"], mib["A100 80GB SXM"], mib["H100 SXM"], mib["H200 SXM"]) == (40960, 81920, 81559, 143771)
    conventions = FACTS.read_text().split("**Conventions**", 1)[1].split("---", 1)[0]
    for figure in ("40960 MiB", "81920 MiB", "81559 MiB", "143771 MiB"):
        assert figure in conventions


def test_every_source_key_is_in_the_fact_sheet():
    text = FACTS.read_text()
    for key in SOURCES:
        if key != "course":
            assert f"| {key} |" in text, f"source {key} is not explained in docs/facts.md"


def test_course_files_do_not_reach_outside_the_repository():
    for path in [ROOT / "course_lib" / "specs.py", ROOT / "course_lib" / "units.py", ROOT / "labs" / f"{LAB}.py",
                 ROOT / "tools" / "variants" / f"{LAB}.py", FACTS]:
        text = path.read_text()
        outside = "../" + "shared"  # the folder beside the repository that users do not have
        assert outside not in text and "shared/facts" not in text, path


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


def test_lab00_points_per_row_match_the_cells():
    """Each row of Lab 00's table gives the points of the test cells of its function."""
    import nbformat

    nb = nbformat.read(ROOT / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"].get("points", 0)
             for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    intro = nb.cells[0].source
    for func in ["kv_bytes_per_token", "kv_cache_bytes", "cache_size_table", "max_context_len", "gpus_to_hold_weights",
                 "max_batch_size", "max_batch_size_tp", "model_kv_bytes_per_token", "preallocation_waste"]:
        row = re.search(rf"^\| \d \| `{func}`.*\| (\d+) \|$", intro, re.MULTILINE)
        assert row, func
        ids = [gid for gid in cells if gid == f"test_{func}" or gid.startswith(f"test_{func}_")
               and not any(gid.startswith(f"test_{other}") for other in ("max_batch_size_tp",) if other != func)]
        assert int(row.group(1)) == sum(cells[g] for g in ids), (func, ids)
    assert cells["test_numpy_int32_inputs"] == 1
    # input checks and NumPy hygiene are small cells of their own; the computation carries the most
    for gid, pts in cells.items():
        if gid.endswith(("_validation", "_arrays")) or gid == "test_numpy_int32_inputs":
            assert pts == 1, gid


def test_minigpt_row_is_the_course_model():
    spec = MODELS["MiniGPT"]
    assert spec.dtype == "fp32" and spec.n_kv_heads < spec.n_heads  # GQA exercised


def test_cache_dtypes_used_by_the_lab_are_known():
    for dtype in ("fp16", "bf16", "fp8", "fp32"):
        assert dtype_bytes(dtype) in (1, 2, 4)


# ---- every variant, graded in-process: exact partial credit ------------------------------------------

def _notebook_cells():
    import nbformat

    nb = nbformat.read(ROOT / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    return [(c.metadata.get("nbgrader", {}), c.source) for c in nb.cells if c.cell_type == "code"]


def _grade_in_process(replacements: dict[str, str]) -> dict[str, str | None]:
    """Run the source notebook with some answer cells replaced: test grade_id -> error text (None: passed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns: dict = {"__name__": "__lab00__"}
    results: dict[str, str | None] = {}
    try:
        for meta, source in _notebook_cells():
            gid = meta.get("grade_id")
            code = replacements.get(gid, source) if meta.get("solution") else source
            try:
                exec(compile(code, f"<cell {gid}>", "exec"), ns)
            except Exception as exc:  # noqa: BLE001 - a failing cell is a result here
                if meta.get("grade") and not meta.get("solution"):
                    results[gid] = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=1)
                    continue
                if meta.get("solution"):
                    raise
                # an ordinary cell may use a wrong answer (e.g. a worked example); go on like a kernel
                continue
            if meta.get("grade") and not meta.get("solution"):
                results[gid] = None
    finally:
        plt.close("all")
    return results


#: mutants whose declared failing cells are *all* the cells they fail (the rest keep their points)
CASCADING = {"bits_not_bytes", "missing_factor_2", "batch_forgotten"}
EXACT = {m["name"] for m in variants.MUTANTS} - CASCADING
#: a missing input check or NumPy slip with a correct computation: only its own small cell
HYGIENE = {"no_negative_check", "zero_rejected", "cache_no_negative_check", "cache_int32_overflow", "int32_overflow",
           "empty_check_by_truthiness", "waste_no_validation"}


def test_solution_passes_every_test_cell_in_process():
    results = _grade_in_process({})
    assert results and all(err is None for err in results.values()), {k: v for k, v in results.items() if v}


def _cells(variant: str) -> dict[str, str]:
    """A variant's answer cells as code (edits made on the solution's cells)."""
    return variant_cells.variant_cells(variants, variant, solution_code(ROOT, LAB))


@pytest.mark.parametrize("name", sorted(variants.CORRECT))
def test_correct_variant_passes_every_test_cell(name):
    results = _grade_in_process(_cells(f"correct:{name}"))
    assert all(err is None for err in results.values()), {k: v for k, v in results.items() if v}


@pytest.mark.parametrize("mutant", variants.MUTANTS, ids=[m["name"] for m in variants.MUTANTS])
def test_mutant_fails_where_declared_with_its_message(mutant):
    results = _grade_in_process(_cells(f"mutant:{mutant['name']}"))
    failed = {gid for gid, err in results.items() if err}
    for gid in mutant["fails"]:
        assert gid in failed, f"{mutant['name']}: {gid} did not catch it"
        assert mutant["message"].lower() in results[gid].lower(), (mutant["name"], results[gid][:500])
    if mutant["name"] in EXACT:
        assert failed == set(mutant["fails"]), f"{mutant['name']} also lost {sorted(failed - set(mutant['fails']))}"


def test_input_checks_and_hygiene_cost_only_their_small_cell():
    by_name = {m["name"]: m for m in variants.MUTANTS}
    assert HYGIENE <= EXACT
    for name in HYGIENE:
        assert len(by_name[name]["fails"]) == 1, name
        assert by_name[name]["fails"][0].endswith(("_validation", "_arrays")) \
            or by_name[name]["fails"][0] == "test_numpy_int32_inputs", name
    # a wrong size in kv_bytes_per_token or kv_cache_bytes is reused by every later task: those cascade
    assert CASCADING <= set(by_name)
