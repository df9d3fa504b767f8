"""Regenerate Lab 01's reference outputs: ``python -m tools.references [--device cuda]``.

The hidden tests of Lab 01 compare a student's ``attention``, ``forward`` and
``generate`` with reference outputs stored in
``source/lab01_kv_cache/ref/lab01_refs.npz``, whose keys and named mistakes are defined once in
``course_lib/lab01_refs.py``. This script makes that file. It needs only torch, numpy and
course_lib (a GPU machine usually has torch but not nbgrader: of the course's tools it imports
only ``tools.layout``, ``tools.variant_cells`` and the lab's variants, which need nothing
more), and it holds no answers itself: it reads the **solution cells** of the instructor
notebook (``source/lab01_kv_cache/lab01_kv_cache.ipynb``) and runs them on secret inputs. It
also runs the realistic mistakes of ``tools/variants/lab01_kv_cache.py`` that
``course_lib.lab01_refs`` names on the same inputs and stores their outputs, so a test can say
"this looks like a mask that is not offset".

Every run records, inside the ``.npz`` (key ``meta``, a JSON string) and in a
``lab01_refs_meta.json`` beside it: the device kind and name, torch and numpy
versions, dtype, the TF32 flags and float32 matmul precision (TF32 is switched
off: it would put ~1e-3 of error into the reference itself), and the MiniGPT
weights' fingerprint. Run it on an NVIDIA GPU (``--device cuda``) when one is
available; a CPU run says ``"device": "cpu"``.

Load the file with ``np.load(path, allow_pickle=False)``.

Why one module of this size: generating the reference file, recording the device it ran on and
refusing a file whose recorded precision differs from the one asked for are one job; the
schema itself lives in course_lib/lab01_refs.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib import lab01_refs as K
from course_lib.minigpt import load_minigpt, weights_fingerprint
from tools import layout, variant_cells

LAB = "lab01_kv_cache"
SOURCE_NOTEBOOK = layout.source_notebook(LAB)
REF_DIR = layout.reference_dir(LAB)
REF_FILE = K.FILE
META_FILE = K.META_FILE
ROOT = layout.ROOT

#: Seed of the secret inputs (the inputs themselves are stored in the reference file).
INPUT_SEED = 20261123

#: Attention cases: (B, H, H_kv, T_q, T_k, D, causal). Order matters for feedback: full causal
#: calls first, then decode (T_q = 1), then chunked prefill, so that a mask that is not offset
#: first fails on a decode step, where its message is the clearest.
ATTENTION_CASES: list[tuple[int, int, int, int, int, int, bool]] = [
    (1, 4, 2, 9, 9, 32, True),     # GQA, full causal (MiniGPT's heads)
    (2, 6, 6, 7, 7, 16, True),     # MHA, batch 2
    (3, 8, 2, 1, 23, 32, True),    # decode, GQA groups of 4, batch 3
    (1, 4, 4, 1, 17, 8, True),     # decode, MHA
    (2, 4, 2, 5, 19, 32, True),    # chunked prefill, T_q < T_k
    (1, 8, 1, 6, 6, 16, True),     # MQA (one KV head)
    (2, 4, 2, 4, 11, 32, False),   # not causal, T_q < T_k
    (1, 2, 1, 3, 40, 64, True),    # chunk after a longer past, head_dim 64
    (2, 4, 2, 64, 64, 32, True),   # larger full causal
]

#: Forward test: token ids (B, T) and the chunk sizes fed through a cache.
FORWARD_SHAPE = (2, 40)
FORWARD_SCHEDULE = [17, 1, 1, 6, 1, 1, 13]
#: Free slots left in the forward test's cache (capacity T + this): filling a cache exactly is
#: graded by the KVCache validation cell, not again by the forward test.
FORWARD_SPARE_SLOTS = 3

#: Generation cases: (B, T0, max_new_tokens).
GENERATE_CASES = [(2, 16, 24), (1, 1, 12), (1, 200, 8), (3, 5, 0)]
#: Prompts are re-drawn until every greedy step's top-1 logit beats the runner-up by this much
#: (fp32 rounding moves logits by ~1e-6, so ties cannot flip a token).
MIN_MARGIN = 1e-2


# ---------------------------------------------------------------------------------------------
# Reading the solution out of the notebook
# ---------------------------------------------------------------------------------------------

def notebook_code(notebook: Path = SOURCE_NOTEBOOK) -> tuple[list[str], dict[str, str]]:
    """The notebook's setup cells (tag ``setup``) and its solution code cells (grade_id -> code)."""
    solutions = variant_cells.solution_cells(notebook, code_only=True)
    if not solutions:
        raise RuntimeError(f"no solution cells in {notebook}")
    return variant_cells.setup_cells(notebook), solutions


def code_cell_defining(name: str, notebook: Path = SOURCE_NOTEBOOK) -> str:
    """The source of the notebook's code cell that defines function ``name`` (for scripts that run
    the lab's own demonstration code, e.g. the benchmark's GQA comparison)."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "code" and re.search(rf"^def {re.escape(name)}\(", src, re.MULTILINE):
            return src
    raise LookupError(f"no code cell of {notebook} defines {name}()")


def build_namespace(setup: list[str], solutions: dict[str, str], replace: dict[str, str] | None = None,
                    device: str = "cpu") -> dict[str, Any]:
    """Execute the setup and solution cells (some replaced) and return their namespace.

    ``model`` in the namespace is MiniGPT on ``device``.
    """
    ns: dict[str, Any] = {"__name__": "lab01_solution"}
    with contextlib.redirect_stdout(io.StringIO()):
        for src in setup:
            exec(compile(src, "<setup>", "exec"), ns)  # noqa: S102 - instructor's own notebook
        for grade_id, src in solutions.items():
            code = (replace or {}).get(grade_id, src)
            exec(compile(code, f"<{grade_id}>", "exec"), ns)  # noqa: S102
    ns["model"] = load_minigpt(device)
    return ns


def load_solution(notebook: Path = SOURCE_NOTEBOOK, device: str = "cpu") -> dict[str, Any]:
    """The reference solution's functions (``attention``, ``KVCache``, ``forward``, ``generate``)."""
    setup, solutions = notebook_code(notebook)
    return build_namespace(setup, solutions, device=device)


def load_variants():  # -> module
    """The realistic mistakes and correct variants of Lab 01 (``tools/variants/lab01_kv_cache.py``)."""
    module = layout.variants(LAB)
    if module is None:
        raise RuntimeError(f"tools/variants/{LAB}.py is missing: the mistakes' outputs cannot be stored")
    return module


def variant_namespace(setup: list[str], solutions: dict[str, str], variant: str,
                      device: str = "cpu") -> dict[str, Any]:
    """The namespace of the solution with a variant's cells (``correct:<name>``, ``mutant:<name>``)."""
    replace = variant_cells.variant_cells(load_variants(), variant, solutions)
    return build_namespace(setup, solutions, replace=replace, device=device)


def stored_mistakes() -> list[str]:
    """The mistakes whose outputs the reference file stores: attention ones first, then forward ones."""
    return list(dict.fromkeys([*K.ATTENTION_MISTAKES, *K.FORWARD_MISTAKES]))


# ---------------------------------------------------------------------------------------------
# Precision settings and metadata
# ---------------------------------------------------------------------------------------------

def set_exact_fp32() -> None:
    """Switch TF32 off and ask for full fp32 matmul precision."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def set_tf32() -> None:
    """Switch TF32 on (for measuring the error it causes; never for the references)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version nvidia-smi reports, or None where it cannot be asked."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_meta(device: str) -> dict[str, Any]:
    """What a reference must record about where and how it was computed."""
    kind = torch.device(device).type
    if kind == "cuda":
        name = torch.cuda.get_device_name(torch.device(device))
        cuda, driver = torch.version.cuda, _nvidia_driver()
        cudnn = torch.backends.cudnn.version()
    else:
        name = _cpu_name()
        cuda = driver = cudnn = None
    return {
        "device": kind,
        "device_name": name,
        "cuda_version": cuda,
        "cuda_driver": driver,
        "cudnn_version": cudnn,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "dtype": "float32",
        "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "allow_tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# The reference computations
# ---------------------------------------------------------------------------------------------

def attention_inputs(gen: torch.Generator) -> list[dict[str, Any]]:
    """The secret attention inputs (on CPU, float32)."""
    cases = []
    for b, h, h_kv, t_q, t_k, d, causal in ATTENTION_CASES:
        q = 1.5 * torch.randn(b, h, t_q, d, generator=gen)   # peaky softmax: bugs show clearly
        k = 1.5 * torch.randn(b, h_kv, t_k, d, generator=gen)
        v = torch.randn(b, h_kv, t_k, d, generator=gen)
        cases.append({"q": q, "k": k, "v": v, "causal": causal})
    return cases


def run_attention(ns: dict[str, Any], case: dict[str, Any], device: str) -> np.ndarray:
    q, k, v = (case[n].to(device) for n in ("q", "k", "v"))
    with torch.no_grad():
        return _np(ns["attention"](q, k, v, causal=case["causal"]))


def run_forward_schedule(ns: dict[str, Any], idx: torch.Tensor, schedule: list[int],
                         capacity: int | None = None) -> np.ndarray:
    """Logits of ``idx`` fed in chunks through a cache, concatenated: (B, T, vocab).

    The cache holds ``capacity`` positions (default ``T + FORWARD_SPARE_SLOTS``, as the test).
    """
    model = ns["model"]
    if capacity is None:
        capacity = idx.shape[1] + FORWARD_SPARE_SLOTS
    cache = ns["KVCache"](model.n_layers, idx.shape[0], model.n_kv_heads, capacity, model.head_dim,
                          device=model.device)
    parts, t = [], 0
    with torch.no_grad():
        for n in schedule:
            parts.append(ns["forward"](model, idx[:, t:t + n], cache))
            t += n
    return _np(torch.cat(parts, dim=1))


def greedy_margin(ns: dict[str, Any], tokens: torch.Tensor, t0: int) -> float:
    """Smallest (top-1 minus top-2) logit gap over the greedy steps that produced ``tokens``."""
    if tokens.shape[1] == t0:
        return float("inf")
    with torch.no_grad():
        logits = ns["forward"](ns["model"], tokens[:, :-1])[:, t0 - 1:]
    top2 = logits.topk(2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1]).min())


def make_references(device: str = "cpu", notebook: Path = SOURCE_NOTEBOOK, with_bugs: bool = True,
                    log: Callable[[str], None] = print,
                    tf32: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Compute every reference array; returns (arrays for np.savez, metadata).

    ``tf32=True`` computes them with TF32 on, only to measure the error TF32 causes (the
    metadata says so); the course's references are always made with it off.
    """
    setup, solutions = notebook_code(notebook)
    ns = build_namespace(setup, solutions, device=device)
    bug_ns = {name: variant_namespace(setup, solutions, f"mutant:{name}", device)
              for name in (stored_mistakes() if with_bugs else [])}
    # after the notebook's setup cells, which switch TF32 off themselves
    if tf32:
        set_tf32()
    else:
        set_exact_fp32()

    gen = torch.Generator().manual_seed(INPUT_SEED)
    arrays: dict[str, np.ndarray] = {}

    # attention
    cases = attention_inputs(gen)
    arrays[K.ATTENTION_COUNT] = np.array(len(cases))
    for i, case in enumerate(cases):
        for name in ("q", "k", "v"):
            arrays[K.attention_key(i, name)] = _np(case[name])
        arrays[K.attention_key(i, "causal")] = np.array(case["causal"])
        arrays[K.attention_key(i, "out")] = run_attention(ns, case, device)
        for name in (K.ATTENTION_MISTAKES if with_bugs else []):
            arrays[K.attention_mistake_key(i, name)] = run_attention(bug_ns[name], case, device)
    log(f"attention: {len(cases)} cases")

    # forward
    idx = torch.randint(0, 256, FORWARD_SHAPE, generator=gen)
    with torch.no_grad():
        logits = ns["forward"](ns["model"], idx.to(device))
    arrays[K.FORWARD_IDX] = _np(idx)
    arrays[K.FORWARD_LOGITS] = _np(logits)
    arrays[K.FORWARD_SCHEDULE] = np.array(FORWARD_SCHEDULE)
    arrays[K.FORWARD_CAPACITY] = np.array(idx.shape[1] + FORWARD_SPARE_SLOTS)
    cached = run_forward_schedule(ns, idx.to(device), FORWARD_SCHEDULE)
    self_err = float(np.linalg.norm(cached.astype(np.float64) - arrays[K.FORWARD_LOGITS])
                     / np.linalg.norm(arrays[K.FORWARD_LOGITS].astype(np.float64)))
    for name, bns in bug_ns.items():
        if name not in K.FORWARD_MISTAKES:
            continue
        try:
            arrays[K.forward_mistake_key(name)] = run_forward_schedule(bns, idx.to(device), FORWARD_SCHEDULE)
            with torch.no_grad():
                bug_full = _np(bns["forward"](bns["model"], idx.to(device)))
            if not np.array_equal(bug_full, arrays[K.FORWARD_LOGITS]):
                arrays[K.forward_mistake_key(name, cached=False)] = bug_full
        except Exception as exc:  # noqa: BLE001 - a mistake may crash; then there is nothing to store
            log(f"  forward mutant {name} raised {type(exc).__name__}: {exc} (not stored)")
    log(f"forward: idx {tuple(idx.shape)}, cached-vs-uncached relative error {self_err:.2e}")

    # generate
    margins = []
    arrays[K.GENERATION_COUNT] = np.array(len(GENERATE_CASES))
    for i, (b, t0, n) in enumerate(GENERATE_CASES):
        for _attempt in range(100):
            prompt = torch.randint(0, 256, (b, t0), generator=gen)
            tokens = ns["generate"](ns["model"], prompt.to(device), n, use_cache=False)
            margin = greedy_margin(ns, tokens, t0)
            if margin >= MIN_MARGIN:
                break
        else:
            raise RuntimeError(f"no prompt with greedy margin >= {MIN_MARGIN} for case {i}")
        tokens_cached = ns["generate"](ns["model"], prompt.to(device), n, use_cache=True)
        if not torch.equal(tokens, tokens_cached):
            if not tf32:
                raise RuntimeError(f"the solution's cached and uncached generations differ (case {i})")
            log(f"  TF32: cached and uncached generations differ (case {i})")
        arrays[K.generation_key(i, "prompt")] = _np(prompt)
        arrays[K.generation_key(i, "tokens")] = _np(tokens)
        arrays[K.generation_key(i, "max_new")] = np.array(n)
        arrays[K.generation_key(i, "min_margin")] = np.array(margin)
        margins.append(margin)
    log(f"generate: {len(GENERATE_CASES)} cases, smallest greedy margin {min(margins):.3g}")

    solution_text = "\n".join(solutions[k] for k in sorted(solutions))
    meta = device_meta(device)
    if meta["allow_tf32_matmul"] != tf32:
        raise RuntimeError(f"TF32 was {'on' if meta['allow_tf32_matmul'] else 'off'} at the end, "
                           f"asked for {'on' if tf32 else 'off'}: something changed the flag")
    meta.update({
        "lab": LAB,
        "input_seed": INPUT_SEED,
        "weights_fingerprint": weights_fingerprint(ns["model"]),
        "solution_sha256": hashlib.sha256(solution_text.encode()).hexdigest()[:16],
        "cached_vs_uncached_rel_error": self_err,
        "generate_min_margin": min(margins),
        "bugs_stored": sorted(bug_ns),
        "load_with": "np.load(path, allow_pickle=False)",
    })
    arrays[K.META] = np.array(json.dumps(meta, sort_keys=True))
    return arrays, meta


def write_references(out_dir: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write the .npz and the human-readable metadata JSON; return the .npz path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REF_FILE
    np.savez_compressed(path, **arrays)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(path: Path = REF_DIR / REF_FILE) -> dict[str, Any]:
    """The metadata recorded in a reference file."""
    with np.load(path, allow_pickle=False) as refs:
        return K.metadata(refs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--notebook", type=Path, default=SOURCE_NOTEBOOK)
    parser.add_argument("--out", type=Path, default=REF_DIR)
    parser.add_argument("--no-bugs", action="store_true", help="do not store the mistakes' outputs")
    parser.add_argument("--tf32", action="store_true",
                        help="TF32 on: only to measure the error it causes, never for the course's references")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    if args.tf32 and args.out.resolve() == REF_DIR.resolve():
        parser.error("--tf32 needs --out elsewhere: the course's references are made with TF32 off")
    arrays, meta = make_references(args.device, args.notebook, with_bugs=not args.no_bugs, tf32=args.tf32)
    path = write_references(args.out, arrays, meta)
    print(f"wrote {path} ({path.stat().st_size:,} bytes) on {meta['device']} ({meta['device_name']}), "
          f"torch {meta['torch_version']}, TF32 matmul {meta['allow_tf32_matmul']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
