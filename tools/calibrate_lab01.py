"""Calibrate Lab 01's tolerance: errors of correct implementations and of bugs vs the references.

    python -m tools.calibrate_lab01            # print the report and write docs/calibration_lab01.md
    python -m tools.calibrate_lab01 --check    # exit 1 unless the margins are >= 10x both ways
    python -m tools.calibrate_lab01 --tf32-refs PATH   # TF32 outputs measured on a GPU (default below)

For every reference in ``source/lab01_kv_cache/ref/lab01_refs.npz`` (attention cases,
forward logits without and with a cache), it runs

* the correct alternatives of ``tools/variants/lab01_kv_cache.py`` (explicit matmul + softmax,
  einsum, float64 inside, SDPA with an explicit mask, a loop over heads, a list-based cache),
* the same attention with its matmul operands rounded to TF32 (10-bit mantissa), to show
  why the references are made with TF32 off,
* the realistic mistakes (no 1/sqrt(d), mask not offset, SDPA is_causal=True, softmax axis,
  repeat vs repeat_interleave, cache not appended, whole buffer, positions restarting at 0),

and reports the relative error norm ``||got - ref|| / ||ref||`` of each, with the tolerance
the tests use and the margins on both sides. Runs on this machine's CPU: when the references
were made on a CUDA GPU, every row is an error between machines (this CPU against the GPU).

If the references' GPU run also produced outputs with TF32 on (``bench/gpu_measure.sh`` does,
into ``docs/benchmarks/gpu_h200/``), their error against the references is reported beside
the simulated TF32 column: measured, not simulated.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from course_lib import lab01_refs as K
from course_lib.grading import TENSOR_RTOL
from tools import layout
from tools import references as R

ROOT = layout.ROOT
REPORT = ROOT / "docs" / "calibration_lab01.md"
#: Outputs of the same reference run with TF32 on (made by bench/gpu_measure.sh on a GPU).
TF32_REFS = ROOT / "docs" / "benchmarks" / "gpu_h200" / "lab01_refs_cuda_tf32.npz"

#: The tolerance the notebook's tests use (relative error norm), from its one definition.
TOLERANCE = TENSOR_RTOL
#: Required margin on each side.
MARGIN = 10.0

_TF32_ATTENTION = '''\
def _tf32(x):
    # round to nearest with a 10-bit mantissa, as TF32 tensor cores read fp32 operands
    i = x.contiguous().view(torch.int32)
    i = (i + 0x1000) & ~0x1FFF
    return i.view(torch.float32)

def attention(q, k, v, causal=True):
    B, H, T_q, D = q.shape
    H_kv, T_k = k.shape[1], k.shape[2]
    k = k.repeat_interleave(H // H_kv, dim=1)
    v = v.repeat_interleave(H // H_kv, dim=1)
    scores = (_tf32(q) @ _tf32(k).transpose(-2, -1)) / math.sqrt(D)
    if causal:
        keep = torch.arange(T_k)[None, :] <= torch.arange(T_q)[:, None] + (T_k - T_q)
        scores = scores.masked_fill(~keep, float("-inf"))
    return _tf32(torch.softmax(scores, dim=-1)) @ _tf32(v)
'''


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _maxabs(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))))


def _load_tf32(path: Path | None, refs, meta: dict) -> tuple[dict | None, dict | None]:
    """The TF32-on outputs of the references' own run (same device, inputs and weights), if any."""
    if path is None or not path.exists():
        return None, None
    tf32_meta = R.read_meta(path)
    same = all(tf32_meta.get(k) == meta.get(k) for k in ("device_name", "weights_fingerprint", "input_seed",
                                                         "solution_sha256", "torch_version"))
    if not (tf32_meta.get("allow_tf32_matmul") and same):
        print(f"{path}: not a TF32 run of these references; ignored", file=sys.stderr)
        return None, None
    with np.load(path, allow_pickle=False) as data:
        n_cases = int(data[K.ATTENTION_COUNT])
        inputs = [K.attention_key(i, "q") for i in range(n_cases)]
        outputs = [K.attention_key(i, "out") for i in range(n_cases)] + [K.FORWARD_LOGITS]
        arrays = {k: data[k] for k in inputs + outputs}
    for key in inputs:  # same inputs, or the comparison means nothing
        if not np.array_equal(arrays[key], refs[key]):
            print(f"{path}: its inputs differ from the references'; ignored", file=sys.stderr)
            return None, None
    return arrays, tf32_meta


def _measured_tf32(label: str, tf32: dict, key: str, refs) -> dict:
    return {"ref": label, "impl": "TF32 on, measured on the references' GPU (not allowed)", "kind": "tf32 measured",
            "rel": _rel(tf32[key], refs[key]), "maxabs": _maxabs(tf32[key], refs[key])}


def calibrate(ref_path: Path = R.REF_DIR / R.REF_FILE,
              tf32_path: Path | None = TF32_REFS) -> tuple[list[dict], dict]:
    """Rows of (reference, implementation, kind, rel error, max abs diff) and the ref metadata.

    The metadata gains ``tf32_measured`` (the TF32 run's metadata) when ``tf32_path`` holds a
    TF32-on run of the same references.
    """
    R.set_exact_fp32()
    refs = np.load(ref_path, allow_pickle=False)
    meta = R.read_meta(ref_path)
    tf32, tf32_meta = _load_tf32(tf32_path, refs, meta)
    if tf32_meta is not None:
        meta = {**meta, "tf32_measured": tf32_meta}
    setup, solutions = R.notebook_code()
    variants = R.load_variants()
    spaces: dict[str, dict] = {"solution (explicit matmul + softmax)": R.build_namespace(setup, solutions)}
    kinds = dict.fromkeys(spaces, "correct")
    for name in variants.CORRECT:
        spaces[name], kinds[name] = R.variant_namespace(setup, solutions, f"correct:{name}"), "correct"
    tf32_name = "TF32-rounded operands, simulated (not allowed)"
    spaces[tf32_name] = R.build_namespace(setup, solutions, replace={"attention": _TF32_ATTENTION})
    kinds[tf32_name] = "tf32"
    for name in R.stored_mistakes():
        spaces[name], kinds[name] = R.variant_namespace(setup, solutions, f"mutant:{name}"), "bug"

    rows: list[dict] = []
    for i, case in enumerate(K.attention_cases(refs)):
        label = f"attention {tuple(case.q.shape)} x {tuple(case.k.shape)}{'' if case.causal else ' non-causal'}"
        for name, kind in kinds.items():
            if kind == "bug" and name not in K.ATTENTION_MISTAKES:
                continue
            with torch.no_grad():
                got = spaces[name]["attention"](case.q, case.k, case.v, causal=case.causal).numpy()
            rows.append({"ref": label, "impl": name, "kind": kind, "rel": _rel(got, case.expected),
                         "maxabs": _maxabs(got, case.expected)})
        if tf32 is not None:
            rows.append(_measured_tf32(label, tf32, K.attention_key(i, "out"), refs))
    fwd = K.forward_case(refs)
    for name, kind in kinds.items():
        ns = spaces[name]
        with torch.no_grad():
            full = ns["forward"](ns["model"], fwd.idx).numpy()
        rows.append({"ref": f"forward logits {tuple(fwd.idx.shape)}, no cache", "impl": name, "kind": kind,
                     "rel": _rel(full, fwd.logits), "maxabs": _maxabs(full, fwd.logits)})
        if tf32 is not None and name == next(iter(kinds)):
            rows.append(_measured_tf32(f"forward logits {tuple(fwd.idx.shape)}, no cache", tf32, K.FORWARD_LOGITS,
                                       refs))
        try:
            cached = R.run_forward_schedule(ns, fwd.idx, fwd.schedule)
            rel, mx = _rel(cached, fwd.logits), _maxabs(cached, fwd.logits)
        except Exception:  # noqa: BLE001 - a bug may crash: that also fails the test
            rel = mx = math.inf
        rows.append({"ref": f"forward logits, cache, chunks {fwd.schedule}", "impl": name, "kind": kind,
                     "rel": rel, "maxabs": mx})
    return rows, meta


def summarise(rows: list[dict]) -> list[dict]:
    """Per reference: worst correct error, best (smallest) bug error that changes the output."""
    out = []
    for ref in dict.fromkeys(r["ref"] for r in rows):
        mine = [r for r in rows if r["ref"] == ref]
        correct = max(r["rel"] for r in mine if r["kind"] == "correct")
        bug_errs = [r["rel"] for r in mine if r["kind"] == "bug" and r["rel"] > 1e-6]
        tf32 = [r["rel"] for r in mine if r["kind"] == "tf32"]
        tf32_gpu = [r["rel"] for r in mine if r["kind"] == "tf32 measured"]
        solution = [r["rel"] for r in mine if r["kind"] == "correct"][0]
        bug = min(bug_errs) if bug_errs else math.inf
        out.append({"ref": ref, "worst_correct": correct, "smallest_bug": bug, "solution": solution,
                    "tf32": tf32[0] if tf32 else math.nan,
                    "tf32_measured": tf32_gpu[0] if tf32_gpu else math.nan,
                    "margin_correct": TOLERANCE / correct if correct > 0 else math.inf,
                    "margin_bug": bug / TOLERANCE,
                    "correct_fail_atol_1e-5": sum(1 for r in mine if r["kind"] == "correct" and r["maxabs"] > 1e-5),
                    "n_correct": sum(1 for r in mine if r["kind"] == "correct")})
    return out


def render(rows: list[dict], summary: list[dict], meta: dict) -> str:
    lines = [
        "# Lab 01 — tolerance calibration",
        "",
        "Generated by `python -m tools.calibrate_lab01` (do not edit by hand).",
        "",
        "**Metric.** Relative error norm `||got - ref||_2 / ||ref||_2` over the whole tensor.",
        f"**Tolerance used by the tests: {TOLERANCE:.0e}.** Required margin: {MARGIN:.0f}x on both sides "
        "(correct implementations at least 10x below it, bugs at least 10x above it).",
        "",
        "## Where the references come from",
        "",
        f"- device: **{meta['device']}** ({meta['device_name']}), torch {meta['torch_version']}, "
        f"numpy {meta['numpy_version']}, dtype {meta['dtype']}",
        f"- TF32 matmul {meta['allow_tf32_matmul']}, TF32 cuDNN {meta['allow_tf32_cudnn']}, "
        f"float32 matmul precision `{meta['float32_matmul_precision']}`",
        f"- created {meta['created_utc']}, MiniGPT weights fingerprint `{meta['weights_fingerprint']}`",
        "",
    ]
    if meta["device"] == "cuda":
        lines[-1:-1] = [f"- CUDA {meta['cuda_version']}, driver {meta.get('cuda_driver') or 'not recorded'}, "
                        f"cuDNN {meta.get('cudnn_version') or 'not recorded'}, Python {meta['python_version']}"]
        lines += [
            f"The references were computed on a CUDA GPU ({meta['device_name']}). This report runs on a CPU,",
            "so every row below is an error **between machines**: an implementation run here against",
            "the GPU's output. The column *solution here* is the course's own solution on this CPU: the",
            "error that only the change of machine causes.",
            "",
        ]
    else:
        lines += [
            "> **These references were computed on a CPU, not on a CUDA GPU.** Every error below is a",
            "> CPU implementation against a CPU reference on the same machine (different summation",
            "> orders and kernels). **Not measured:** a GPU against these references: regenerate on a",
            "> GPU with `python -m tools.references --device cuda` and rerun this script.",
            "",
        ]
    measured = meta.get("tf32_measured")
    if measured:
        lines += [
            f"*TF32 measured*: the same reference run repeated on the same GPU with TF32 on "
            f"(`allow_tf32` true, created {measured['created_utc']}, "
            "`docs/benchmarks/gpu_h200/lab01_refs_cuda_tf32.npz`), compared with the references: the",
            "error a GPU with TF32 left on would put into a student's output. *TF32 simulated*: the",
            "matmul operands rounded to TF32's 10-bit mantissa on this CPU.",
            "",
        ]
    else:
        lines += ["*TF32 simulated*: the matmul operands rounded to TF32's 10-bit mantissa on this CPU "
                  "(no TF32 run measured on a GPU).", ""]
    lines += [
        "## Summary per reference",
        "",
        "| reference | solution here | worst correct | smallest bug | TF32 simulated | TF32 measured | "
        "margin below tol | margin above tol | correct impls failing `atol=1e-5` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        measured_txt = "—" if math.isnan(s["tf32_measured"]) else f"{s['tf32_measured']:.2e}"
        lines.append(f"| {s['ref']} | {s['solution']:.2e} | {s['worst_correct']:.2e} | {s['smallest_bug']:.2e} | "
                     f"{s['tf32']:.2e} | {measured_txt} | {s['margin_correct']:,.0f}x | {s['margin_bug']:,.0f}x | "
                     f"{s['correct_fail_atol_1e-5']} of {s['n_correct']} |")
    worst = max(s["worst_correct"] for s in summary)
    best_bug = min(s["smallest_bug"] for s in summary)
    solution = max(s["solution"] for s in summary)
    lines += [
        "",
        f"Over all references: worst correct implementation **{worst:.2e}** "
        f"({TOLERANCE / worst:,.0f}x below the tolerance); smallest bug error **{best_bug:.2e}** "
        f"({best_bug / TOLERANCE:,.0f}x above it); the solution on this machine against the "
        f"{meta['device']} references at most **{solution:.2e}**.",
    ]
    tf32_measured = [s["tf32_measured"] for s in summary if not math.isnan(s["tf32_measured"])]
    if tf32_measured:
        over = sum(1 for e in tf32_measured if e > TOLERANCE)
        lines.append(f"TF32 on the GPU, measured: up to **{max(tf32_measured):.2e}**; {over} of "
                     f"{len(tf32_measured)} outputs above the tolerance (the others came out bit-identical "
                     "to the TF32-off run: for those shapes the GPU's kernels did not use TF32).")
    lines += [
        "",
        "Bugs that do not change a given output (e.g. a mask that is not offset when `T_q = T_k`, or",
        "`repeat` vs `repeat_interleave` with one KV head) are left out of that reference's minimum;",
        "other references catch them. The last column counts correct implementations whose largest",
        "elementwise difference exceeds `1e-5`: an elementwise `atol=1e-5` test on unnormalised",
        "values is the kind of test that failed correct student code in the seed write-up.",
        "",
        "## Generation",
        "",
        "Greedy generations are compared token for token. Prompts were drawn until every greedy step's",
        f"top-1 logit beats the runner-up by at least {R.MIN_MARGIN} (the smallest margin recorded is "
        f"{meta['generate_min_margin']:.3g}); rounding moves logits by about 1e-6, so no token can flip.",
        "",
        "## Every measurement",
        "",
        "| reference | implementation | kind | rel. error | max abs diff |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['ref']} | {r['impl']} | {r['kind']} | {r['rel']:.2e} | {r['maxabs']:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="do not write the report; exit 1 on a small margin")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--tf32-refs", type=Path, default=TF32_REFS,
                        help="a TF32-on run of the references (bench/gpu_measure.sh); ignored if absent")
    args = parser.parse_args(argv)
    rows, meta = calibrate(tf32_path=args.tf32_refs)
    summary = summarise(rows)
    text = render(rows, summary, meta)
    ok = all(s["margin_correct"] >= MARGIN and s["margin_bug"] >= MARGIN for s in summary)
    for s in summary:
        print(f"{s['ref']:<60} correct <= {s['worst_correct']:.1e}  bugs >= {s['smallest_bug']:.1e}  "
              f"TF32 simulated {s['tf32']:.1e}, measured {s['tf32_measured']:.1e}")
    print("margins >= 10x both ways" if ok else "MARGIN TOO SMALL")
    if not args.check:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
