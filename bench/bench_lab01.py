"""Benchmark Lab 01's reference implementation against context length, and a peer (HF transformers).

    .venv/bin/python bench/bench_lab01.py                       # default lengths, ~2-4 min on 2 cores
    .venv/bin/python bench/bench_lab01.py --lengths 128 1024 --repeats 2 --new-tokens 8
    .venv/bin/python bench/bench_lab01.py --device cuda         # on a GPU (TF32 off)
    .venv/bin/python bench/bench_lab01.py --threads 1           # steadier on a shared, busy machine

Prints one table. For each context length S:

* ``cached``: time of one decode step (one new token, S tokens already in the KV cache) of the
  course's reference solution (the solution cells of the Lab 01 notebook, via
  ``course_lib.references.load_solution``), median of ``--repeats`` runs of ``--new-tokens`` steps;
* ``uncached``: time of one forward pass over all S+1 tokens (what a step costs without a cache);
* ``speedup`` = uncached / cached, beside the FLOP-predicted speedup;
* ``HF cached``: Hugging Face transformers' ``LlamaForCausalLM.generate(use_cache=True)`` with the
  same shape (4 layers, 4 query / 2 KV heads, head_dim 32, d_model 128, vocab 256, fp32, random
  weights, no download): decode time per token = (time for 1 + N new tokens - time for 1) / N.
  Its MLP is SwiGLU (3 matrices of 128x512) where MiniGPT's is GELU (2), so it does ~1.5x the MLP
  FLOPs per token; its attention uses PyTorch SDPA.

This is a measurement script, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib.minigpt import count_params  # noqa: E402
from course_lib.references import load_solution, set_exact_fp32  # noqa: E402
from course_lib.specs import MINIGPT  # noqa: E402
from course_lib.timing import format_seconds  # noqa: E402


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
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers peer")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 is steadier on a busy machine")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.new_tokens < 2 or args.repeats < 1:
        parser.error("--new-tokens must be >= 2 and --repeats >= 1")
    set_exact_fp32()
    ns = load_solution(device=args.device)
    print(f"MiniGPT ({count_params(ns['model']):,} parameters, fp32) on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} repeats, spread = (max-min)/median",
          file=sys.stderr)
    ref = bench_reference(ns, args.lengths, args.repeats, args.new_tokens, args.device)
    hf = None if args.no_hf else bench_hf(args.lengths, args.repeats, args.new_tokens, args.device)

    header = (f"{'S':>7} | {'cached/token':>12} {'spread':>6} | {'uncached/token':>14} {'spread':>6} | "
              f"{'speedup':>8} {'FLOP pred.':>10} | {'HF cached/token':>15} {'spread':>6}")
    print(header)
    print("-" * len(header))
    for s in args.lengths:
        (c, cs), (u, us) = ref[s]
        hf_txt = f"{format_seconds(hf[s][0]):>15} {hf[s][1]:>6.0%}" if hf else f"{'n/a':>15} {'':>6}"
        print(f"{s:>7,} | {format_seconds(c):>12} {cs:>6.0%} | {format_seconds(u):>14} {us:>6.0%} | "
              f"{u / c:>7.1f}x {flop_speedup(ns['model'], s):>9.0f}x | {hf_txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
