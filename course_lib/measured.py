"""GPU measurements made once for the course and shipped with it (``course_lib/data/``).

Few students have a datacenter GPU at hand. The course measured two things on one, with
``bench/gpu_measure.sh``, and the notebooks show them beside the student's own CPU
measurements:

- ``gpu_lab01_bench.json``: Lab 01's decode benchmark (``bench/bench_lab01.py --json``):
  seconds per decode step with and without the cache, the GQA comparison, whole generations;
- ``gpu_roofline.json``: Lab 02's roofs (copy and read bandwidth, matmul rate per dtype) and
  timings of the course solution's attention (``bench/gpu_roofline.py``). It stores times and
  shapes only: the notebook computes FLOPs and bytes with the student's own functions.

Each file's ``meta`` records where it ran (device name, CUDA, driver and torch versions, date);
:func:`device_label` writes that for a title or a table. Everything here is data and loaders:
nothing measures, nothing holds an answer.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: The stored files, by short name.
FILES = {"lab01_bench": "gpu_lab01_bench.json", "roofline": "gpu_roofline.json"}


def load(name: str) -> dict[str, Any]:
    """The stored measurement ``name`` (a key of :data:`FILES`) as a dict with ``meta``."""
    if name not in FILES:
        raise ValueError(f"no stored measurement {name!r}; known: {', '.join(FILES)}")
    text = resources.files("course_lib").joinpath("data", FILES[name]).read_text(encoding="utf-8")
    return require_cuda(json.loads(text), FILES[name])


def require_cuda(data: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` itself, if its ``meta`` says it ran on a CUDA device; else a ValueError."""
    meta = data.get("meta", {})
    if meta.get("device") != "cuda" or not meta.get("device_name"):
        raise ValueError(f"{what} does not record a CUDA device (meta.device is {meta.get('device')!r}): "
                         "it cannot be shown as a GPU measurement")
    return data


def gpu_lab01_bench() -> dict[str, Any]:
    """Lab 01's decode benchmark measured on a GPU (seconds; see the module docstring)."""
    return load("lab01_bench")


def gpu_roofline() -> dict[str, Any]:
    """Lab 02's GPU roofs and attention timings (seconds and shapes; see the module docstring)."""
    return load("roofline")


def device_label(meta: dict[str, Any]) -> str:
    """E.g. ``NVIDIA H200 (CUDA 13.0, driver 580.159.04, torch 2.11.0+cu130), measured 2026-11-29``."""
    parts = [f"CUDA {meta['cuda_version']}"] if meta.get("cuda_version") else []
    if meta.get("cuda_driver"):
        parts.append(f"driver {meta['cuda_driver']}")
    parts.append(f"torch {meta['torch_version']}")
    return f"{meta['device_name']} ({', '.join(parts)}), measured {meta['created_utc'][:10]}"


def probe(data: dict[str, Any], what: str, dtype: str) -> dict[str, Any]:
    """One probe row of :func:`gpu_roofline` data: ``what`` is "copy", "read" or "matmul"."""
    for row in data["probes"]:
        if row["what"].startswith(what) and row["dtype"] == dtype:
            return row
    raise KeyError(f"no {what} probe in {dtype} among {[(r['what'], r['dtype']) for r in data['probes']]}")


def roof(data: dict[str, Any], dtype: str) -> tuple[str, float, float]:
    """``(label, peak FLOP/s, bandwidth bytes/s)`` of the measured GPU for ``plot_roofline``.

    The peak is the matmul probe in ``dtype`` ("float16", "bfloat16" or "float32", TF32 off);
    the bandwidth is the copy probe (bytes read + written), which does not depend on the dtype.
    """
    peak = probe(data, "matmul", dtype)["rate"]
    bandwidth = probe(data, "copy", "float16")["rate"]
    return f"{data['meta']['device_name']} (measured, {dtype})", float(peak), float(bandwidth)
