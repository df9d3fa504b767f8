"""Benchmark Lab 01's reference implementation against context length, and a peer (HF transformers).

    .venv/bin/python bench/bench_lab01.py                       # default lengths, ~2-4 min on 2 cores
    .venv/bin/python bench/bench_lab01.py --lengths 128 1024 --repeats 2 --new-tokens 8
    .venv/bin/python bench/bench_lab01.py --device cuda         # on a GPU (TF32 off)
    .venv/bin/python bench/bench_lab01.py --threads 1           # steadier on a shared, busy machine
    .venv/bin/python bench/bench_lab01.py --e2e-lengths 10000   # 20 tokens after 10,000 (minutes on a CPU)
    .venv/bin/python bench/bench_lab01.py --json out.json       # also write every measurement as data

Prints three tables. The first, for each context length S:

* ``cached``: time of one decode step (one new token, S tokens already in the KV cache) of the
  course's reference solution (the solution cells of the Lab 01 notebook, via
  ``tools.references.load_solution``), median of ``--repeats`` runs of ``--new-tokens`` steps;
* ``uncached``: time of one forward pass over all S+1 tokens (what a step costs without a cache);
* ``speedup`` = uncached / cached, beside the FLOP-predicted speedup;
* ``HF cached``: Hugging Face transformers' ``LlamaForCausalLM.generate(use_cache=True)`` with the
  same shape (4 layers, 4 query / 2 KV heads, head_dim 32, d_model 128, vocab 256, fp32, random
  weights, no download): decode time per token = (time for 1 + N new tokens - time for 1) / N.
  Its MLP is SwiGLU (3 matrices of 128x512) where MiniGPT's is GELU (2), so it does ~1.5x the MLP
  FLOPs per token; its attention uses PyTorch SDPA.

The second: one decode step of attention over ``--gqa-length`` cached tokens, GQA three ways,
all timed in the same run: K and V expanded with ``repeat_interleave`` (a copy of (H/H_kv)x the
cache at every call), a 5-D broadcast ``@`` (``torch.matmul`` materialises the broadcast K and V:
a copy too), and the query heads of a group stacked as rows (the course's solution: no copy).
Rows: MiniGPT's heads and one Llama-3-8B layer's (from ``course_lib.specs``).

The third: whole generations, ``--e2e-new-tokens`` (default 20) new tokens after prompts of
``--e2e-lengths`` tokens, with and without the cache (the solution's ``generate``): time to first
token, per-token latency, totals, and the speedup predicted by the cost model of
``course_lib.e2e`` fitted on the first table's forward passes.

This is a measurement script, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import math  # noqa: E402

from course_lib.e2e import ForwardShape, fit_step_cost  # noqa: E402
from course_lib.minigpt import count_params  # noqa: E402
from course_lib.specs import MINIGPT  # noqa: E402
from course_lib.specs import model as model_spec  # noqa: E402
from course_lib.timing import format_seconds  # noqa: E402
from tools.references import code_cell_defining, device_meta, load_solution, set_exact_fp32  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_spread(samples: list[float]) -> tuple[float, float]:
    med = statistics.median(samples)
    return med, (max(samples) - min(samples)) / med if med > 0 else 0.0


def bench_reference(ns: dict, lengths: list[int], repeats: int, new_tokens: int, device: str) -> dict:
    """Cached decode-step and uncached full-forward times of the reference solution."""
    model, forward, kv_cache = ns["model"], ns["forward"], ns["KVCache"]
    gen = torch.Generator().manual_seed(0)
    out = {}
    with torch.no_grad():
        for s in lengths:
            prompt = torch.randint(0, 256, (1, s), generator=gen).to(device)
            cached, uncached = [], []
            for _ in range(repeats):
                cache = kv_cache(model.n_layers, 1, model.n_kv_heads, s + new_tokens + 1, model.head_dim,
                                 device=device)
                nxt = forward(model, prompt, cache)[:, -1:].argmax(-1)
                forward(model, nxt, cache)  # warm-up step
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(new_tokens - 1):
                    nxt = forward(model, nxt, cache)[:, -1:].argmax(-1)
                _sync(device)
                cached.append((time.perf_counter() - t0) / (new_tokens - 1))
            full = torch.cat([prompt, prompt[:, :1]], dim=1)
            if s <= 1024:
                forward(model, full)  # warm-up
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                forward(model, full)
                _sync(device)
                uncached.append(time.perf_counter() - t0)
            out[s] = (_median_spread(cached), _median_spread(uncached))
            print(f"  reference S={s:,} done", file=sys.stderr, flush=True)
    return out


def bench_hf(lengths: list[int], repeats: int, new_tokens: int, device: str) -> dict | None:
    """Decode time per token of HF transformers' Llama with MiniGPT's shape (None if unavailable)."""
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        return None
    transformers.logging.set_verbosity_error()
    spec = MINIGPT
    config = LlamaConfig(vocab_size=spec.vocab_size, hidden_size=spec.d_model, intermediate_size=spec.d_ff,
                         num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
                         num_key_value_heads=spec.n_kv_heads, head_dim=spec.head_dim,
                         max_position_embeddings=spec.max_seq_len, pad_token_id=0, bos_token_id=None,
                         eos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device).eval()
    gen = torch.Generator().manual_seed(1)

    def run(prompt: torch.Tensor, n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                       do_sample=False, use_cache=True, pad_token_id=0)
        _sync(device)
        return time.perf_counter() - t0

    out = {}
    with torch.no_grad():
        for s in lengths:
            prompt = torch.randint(0, spec.vocab_size, (1, s), generator=gen).to(device)
            run(prompt, 2)  # warm-up
            per_token = []
            for _ in range(repeats):
                t_one = run(prompt, 1)
                t_many = run(prompt, 1 + new_tokens)
                per_token.append(max(t_many - t_one, 0.0) / new_tokens)
            out[s] = _median_spread(per_token)
            print(f"  HF S={s:,} done", file=sys.stderr, flush=True)
    return out


def _timed(fn, repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def gqa_attention_ways() -> dict:
    """Three ways to attend with H query heads over H_kv < H KV heads (same result): the
    functions of the Lab 01 notebook's GQA comparison cell, run as the notebook defines them."""
    ns: dict = {"math": math, "torch": torch}
    exec(compile(code_cell_defining("gqa_grouped_rows"), "<lab01 GQA cell>", "exec"), ns)  # noqa: S102
    return {"repeat_interleave": ns["gqa_repeat_interleave"], "5-D broadcast @": ns["gqa_broadcast_5d"],
            "grouped rows": ns["gqa_grouped_rows"]}


def bench_gqa(length: int, repeats: int, device: str) -> list[tuple[str, int, int, int, dict]]:
    """Decode-step attention times of the three GQA ways for MiniGPT's and a Llama-3-8B layer's heads."""
    llama = model_spec("Llama-3-8B")
    rows = []
    gen = torch.Generator().manual_seed(2)
    for name, h, h_kv, d in [("MiniGPT", MINIGPT.n_heads, MINIGPT.n_kv_heads, MINIGPT.head_dim),
                             ("Llama-3-8B layer", llama.n_heads, llama.n_kv_heads, llama.head_dim)]:
        q = torch.randn(1, h, 1, d, generator=gen).to(device)
        k = torch.randn(1, h_kv, length, d, generator=gen).to(device)
        v = torch.randn(1, h_kv, length, d, generator=gen).to(device)
        ways = gqa_attention_ways()
        ref = ways["repeat_interleave"](q, k, v)
        times = {}
        with torch.no_grad():
            for label, fn in ways.items():
                out = fn(q, k, v)
                if float((out - ref).norm() / ref.norm()) > 1e-5:
                    raise RuntimeError(f"{label} disagrees with repeat_interleave")
                times[label] = _timed(lambda fn=fn, q=q, k=k, v=v: fn(q, k, v), max(repeats, 5), device)
        rows.append((name, h, h_kv, 2 * k.numel() * k.element_size(), times))
        print(f"  GQA {name} done", file=sys.stderr, flush=True)
    return rows


def bench_e2e(ns: dict, lengths: list[int], new_tokens: int, repeats: int, device: str) -> dict:
    """TTFT and total times of the solution's generate, cached and uncached (medians)."""
    model, generate = ns["model"], ns["generate"]
    gen = torch.Generator().manual_seed(3)
    out = {}
    with torch.no_grad():
        for s in lengths:
            prompt = torch.randint(0, 256, (1, s), generator=gen).to(device)
            reps = repeats if s <= 1000 else 1
            row = []
            for n, use_cache in ((1, True), (new_tokens, True), (new_tokens, False)):
                samples = []
                for _ in range(reps):
                    _sync(device)
                    t0 = time.perf_counter()
                    generate(model, prompt, n, use_cache=use_cache)
                    _sync(device)
                    samples.append(time.perf_counter() - t0)
                row.append(statistics.median(samples))
            out[s] = tuple(row)
            print(f"  end-to-end S={s:,} done", file=sys.stderr, flush=True)
    return out


def flop_speedup(model, s: int) -> float:
    """Predicted speedup of a decode step: FLOPs of a full forward over S+1 tokens / one cached step."""
    p = sum(t.numel() for name, t in model.named_parameters() if t.dim() == 2 and "tok_emb" not in name)
    a = 4 * model.n_layers * model.n_heads * model.head_dim
    n = s + 1
    return (2 * p * n + a * n * n) / (2 * p + a * n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gqa-length", type=int, default=8192, help="cached tokens of the GQA table")
    parser.add_argument("--e2e-lengths", type=int, nargs="*", default=[128, 1024],
                        help="prompt lengths of the end-to-end table (none: skip it)")
    parser.add_argument("--e2e-new-tokens", type=int, default=20)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers peer")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the measurements, with the device they ran on, to this JSON file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 is steadier on a busy machine")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.new_tokens < 2 or args.repeats < 1 or args.e2e_new_tokens < 2 or args.gqa_length < 1:
        parser.error("--new-tokens and --e2e-new-tokens must be >= 2, --repeats and --gqa-length >= 1")
    set_exact_fp32()
    ns = load_solution(device=args.device)
    print(f"MiniGPT ({count_params(ns['model']):,} parameters, fp32) on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} repeats, spread = (max-min)/median",
          file=sys.stderr)
    ref = bench_reference(ns, args.lengths, args.repeats, args.new_tokens, args.device)
    hf = None
    if not args.no_hf:
        try:
            hf = bench_hf(args.lengths, args.repeats, args.new_tokens, args.device)
        except Exception as exc:  # noqa: BLE001 - the peer is optional; the course's own rows still count
            print(f"  HF transformers failed ({type(exc).__name__}: {exc}); its column is left out",
                  file=sys.stderr)
    gqa = bench_gqa(args.gqa_length, args.repeats, args.device)
    e2e = bench_e2e(ns, args.e2e_lengths, args.e2e_new_tokens, args.repeats, args.device)

    header = (f"{'S':>7} | {'cached/token':>12} {'spread':>6} | {'uncached/token':>14} {'spread':>6} | "
              f"{'speedup':>8} {'FLOP pred.':>10} | {'HF cached/token':>15} {'spread':>6}")
    print(header)
    print("-" * len(header))
    for s in args.lengths:
        (c, cs), (u, us) = ref[s]
        hf_txt = f"{format_seconds(hf[s][0]):>15} {hf[s][1]:>6.0%}" if hf else f"{'n/a':>15} {'':>6}"
        print(f"{s:>7,} | {format_seconds(c):>12} {cs:>6.0%} | {format_seconds(u):>14} {us:>6.0%} | "
              f"{u / c:>7.1f}x {flop_speedup(ns['model'], s):>9.0f}x | {hf_txt}")

    print()
    print(f"GQA: one decode step of attention over {args.gqa_length:,} cached tokens (median, same run)")
    labels = list(gqa[0][4])
    header = f"{'heads':<22} | {'K,V bytes':>10} | " + " | ".join(f"{lab:>17}" for lab in labels) + \
        " | repeat_interleave / grouped"
    print(header)
    print("-" * len(header))
    for name, h, h_kv, kv_bytes, times in gqa:
        print(f"{name + f' ({h}/{h_kv})':<22} | {kv_bytes / 2**20:>6.1f} MiB | "
              + " | ".join(f"{format_seconds(times[lab]):>17}" for lab in labels)
              + f" | {times['repeat_interleave'] / times['grouped rows']:>10.1f}x")

    if e2e:
        # the cost model: fitted on the first table's timed forward passes
        samples = []
        for s in args.lengths:
            (c, _), (u, _) = ref[s]
            samples += [(1, s + 1, c), (s + 1, s + 1, u)]
        cost = fit_step_cost(ForwardShape.of(ns["model"]), samples)
        n = args.e2e_new_tokens
        print()
        print(f"End to end: generate({n} new tokens) after a prompt of S tokens; cost model fitted on the "
              f"first table: {cost.describe()}")
        header = (f"{'S':>7} | {'TTFT':>9} | {'per token cached':>16} | {'per token uncached':>18} | "
                  f"{'total cached':>12} | {'total uncached':>14} | {'speedup':>8} | {'predicted':>9}")
        print(header)
        print("-" * len(header))
        for s, (ttft, cached, uncached) in e2e.items():
            pred = cost.generation_time(s, n, cached=False) / cost.generation_time(s, n, cached=True)
            print(f"{s:>7,} | {format_seconds(ttft):>9} | {format_seconds((cached - ttft) / (n - 1)):>16} | "
                  f"{format_seconds((uncached - ttft) / (n - 1)):>18} | {format_seconds(cached):>12} | "
                  f"{format_seconds(uncached):>14} | {uncached / cached:>7.1f}x | {pred:>8.1f}x")
    if args.json is not None:
        write_json(args.json, args, ns["model"], ref, hf, gqa, e2e)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def write_json(path: Path, args: argparse.Namespace, model, ref: dict, hf: dict | None, gqa: list,
               e2e: dict) -> None:
    """The measurements as data (seconds), with the device and software they were measured on."""
    meta = device_meta(args.device)
    meta.update({"torch_threads": torch.get_num_threads(), "repeats": args.repeats,
                 "new_tokens": args.new_tokens, "e2e_new_tokens": args.e2e_new_tokens,
                 "gqa_length": args.gqa_length, "model": f"MiniGPT, {count_params(model):,} parameters, fp32",
                 "made_by": "bench/bench_lab01.py"})
    decode = []
    for s in args.lengths:
        (c, cs), (u, us) = ref[s]
        row = {"S": s, "cached_s": c, "cached_spread": cs, "uncached_s": u, "uncached_spread": us,
               "flop_ratio": flop_speedup(model, s)}
        if hf:
            row["hf_cached_s"], row["hf_cached_spread"] = hf[s]
        decode.append(row)
    data = {
        "meta": meta,
        "decode": decode,
        "gqa": [{"heads": name, "H": h, "H_kv": h_kv, "kv_bytes": kv_bytes, "seconds": times}
                for name, h, h_kv, kv_bytes, times in gqa],
        "e2e": [{"S": s, "ttft_s": ttft, "cached_total_s": cached, "uncached_total_s": uncached}
                for s, (ttft, cached, uncached) in e2e.items()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
