"""Measure Lab 02's roofline points on a GPU and write them as data the notebook plots.

    python bench/gpu_roofline.py --out course_lib/data/gpu_roofline.json     # on a CUDA machine

Lab 02 (Part 6) times the student's attention on the student's own machine, usually a CPU.
This script makes the GPU counterpart once, on a machine with an NVIDIA GPU:

* the two roofs of the GPU with ``course_lib.roofline``: copy bandwidth (bytes read + written),
  read-only bandwidth, and the matmul rate in fp16, bf16 and fp32 (TF32 off);
* the course solution's attention (the ``attention_from_lab01`` solution cell of the Lab 02
  source notebook, unfused: it materialises the scores) timed at prefill (``T_q = T_k = N``)
  and decode (``T_q = 1``) lengths, in two settings: the notebook's CPU setting (fp32, 8 heads
  of 64) and a Llama-like layer (fp16, 32 heads of 128).

Only times and shapes are stored, never FLOP or byte counts: the notebook places the points
with the student's own ``attention_flops`` and ``attention_bytes``. Every file records the GPU,
driver, CUDA and torch versions it was made with. This is a measurement script, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib import roofline  # noqa: E402
from tools import layout  # noqa: E402
from tools.references import device_meta, notebook_code, set_exact_fp32  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAB02_SOURCE = layout.source_notebook("lab02_roofline")

#: (label, dtype, bytes per element, heads, head_dim, prefill lengths, decode lengths)
SETTINGS = [
    ("fp32, 8 heads x 64 (the notebook's CPU setting)", torch.float32, 4, 8, 64,
     [256, 512, 1024, 2048], [32768, 65536, 131072, 262144]),
    ("fp16, 32 heads x 128 (a Llama-like layer)", torch.float16, 2, 32, 128,
     [1024, 2048, 4096, 8192], [8192, 32768, 131072]),
]


def solution_attention():
    """The Lab 02 solution's ``attention`` (the student's Lab 01 attention, as the course writes it)."""
    _, solutions = notebook_code(LAB02_SOURCE)
    ns = {"math": math, "torch": torch, "__name__": "lab02_solution"}
    exec(compile(solutions["attention_from_lab01"], "<attention_from_lab01>", "exec"), ns)  # noqa: S102
    return ns["attention"]


def probe_row(probe: roofline.Probe) -> dict:
    return {"what": probe.what, "dtype": probe.dtype, "work": probe.work, "unit": probe.unit,
            "median_s": probe.timing.median, "min_s": probe.timing.minimum, "spread": probe.timing.spread,
            "repeats": probe.timing.repeats, "rate": probe.rate}


def attention_points(attention, device: str, dtype, n_heads: int, head_dim: int, prefill: list[int],
                     decode: list[int], repeats: int) -> list[dict]:
    timed = roofline.time_attention(attention, device=device, dtype=dtype, n_heads=n_heads, head_dim=head_dim,
                                    prefill_lengths=prefill, decode_lengths=decode, repeats=repeats, warmup=2)
    for t in timed:
        print(f"  {t.phase} N={t.n:,}: {t.timing.median * 1e3:.3f} ms", file=sys.stderr, flush=True)
    return [{"phase": t.phase, "N": t.n, "T_q": t.t_q, "T_k": t.t_k, "median_s": t.timing.median,
             "min_s": t.timing.minimum, "spread": t.timing.spread, "repeats": t.timing.repeats} for t in timed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script, not data")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device is available", file=sys.stderr)
        return 2
    set_exact_fp32()
    attention = solution_attention()
    settings_run, copy_bytes, matmul_n = SETTINGS, None, None
    if args.quick:
        settings_run = [(label + " [quick]", dtype, nbytes, 2, 16, [32], [64])
                        for label, dtype, nbytes, *_ in SETTINGS]
        copy_bytes, matmul_n = 2**20, 128
    probes = [roofline.measure_bandwidth(copy_bytes, repeats=args.repeats, device=args.device, dtype="fp16"),
              roofline.measure_read_bandwidth(copy_bytes, repeats=args.repeats, device=args.device, dtype="fp16")]
    for dtype in ("fp16", "bf16", "fp32"):
        probes.append(roofline.measure_matmul_peak(matmul_n, repeats=args.repeats, device=args.device, dtype=dtype))
    for p in probes:
        print(p, file=sys.stderr, flush=True)
    settings = []
    for label, dtype, nbytes, heads, head_dim, prefill, decode in settings_run:
        print(label, file=sys.stderr, flush=True)
        settings.append({"label": label, "dtype": str(dtype).removeprefix("torch."), "bytes_per_elem": nbytes,
                         "n_heads": heads, "head_dim": head_dim,
                         "points": attention_points(attention, args.device, dtype, heads, head_dim, prefill,
                                                    decode, args.repeats)})
    meta = device_meta(args.device)
    meta.update({"made_by": "bench/gpu_roofline.py", "attention": "Lab 02 solution (unfused, repeat_interleave)"})
    data = {"meta": meta, "probes": [probe_row(p) for p in probes], "settings": settings}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out} ({meta['device_name']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
