"""Roofline helpers for Lab 02: measure this machine's memory bandwidth and matmul peak.

A roofline needs two numbers per device: the peak arithmetic rate (FLOP/s) and the
memory bandwidth (bytes/s). For the GPUs in :data:`course_lib.specs.HARDWARE` we
take them from the datasheets; for *this* machine we measure them:

- :func:`measure_bandwidth` copies a large array (much larger than the last-level
  cache) and counts **bytes read + bytes written**: a copy of ``n`` bytes moves
  ``2 n`` bytes.
- :func:`measure_matmul_peak` times a large square matrix product and counts
  ``2 n^3`` FLOPs (one multiply and one add per term of each dot product).

Both repeat the measurement a few times and report the **median** (with the spread),
as :mod:`course_lib.timing` does everywhere in the course.

Why a copy under-reports a little: on x86 CPUs an ordinary store first reads the
destination cache line ("write-allocate"), so a copy really moves about 3 bytes of
DRAM traffic per byte copied while we count 2. The figure is therefore a slightly
conservative bandwidth, the rate a program that reads and writes its data actually
gets; a kernel that only streams reads (like decode attention reading the KV cache)
can get a little closer to the hardware limit. :func:`measure_read_bandwidth`
measures that read-only rate, for comparison.

This module holds helpers, never the answers students write (the FLOP and byte
counts of attention are theirs).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, replace
from typing import Any

from .specs import HARDWARE, HardwareSpec
from .timing import Timing, is_autograding, measure
from .units import MB

#: Default probe sizes: large enough to defeat a 32 MiB L3 cache on CPUs, GPU-sized otherwise.
CPU_COPY_BYTES: int = 256 * MB
GPU_COPY_BYTES: int = 2048 * MB
CPU_MATMUL_N: int = 2048
GPU_MATMUL_N: int = 8192
#: Repeats of each probe while a notebook is autograded (Lab 02 uses it; 5 otherwise).
GRADING_REPEATS: int = 2


@dataclass(frozen=True)
class Probe:
    """One measured rate: ``work`` units (bytes or FLOPs) per call, timed ``timing``.

    ``rate`` is ``work / timing.median`` (the median run), ``best_rate`` uses the
    fastest run. ``unit`` is ``"B/s"`` or ``"FLOP/s"``.
    """

    what: str
    work: float
    unit: str
    timing: Timing
    device: str
    dtype: str

    @property
    def rate(self) -> float:
        """Work per second of the median run (bytes/s or FLOP/s)."""
        return self.work / self.timing.median

    @property
    def best_rate(self) -> float:
        """Work per second of the fastest run."""
        return self.work / self.timing.minimum

    def __str__(self) -> str:
        from .units import format_rate

        unit = self.unit.removesuffix("/s")
        return (f"{self.what} on {self.device} ({self.dtype}): {format_rate(self.rate, unit + '/s')} "
                f"median of {self.timing.repeats} (best {format_rate(self.best_rate, unit + '/s')}, "
                f"spread {self.timing.spread:.0%})")


@dataclass(frozen=True)
class MachineRoofline:
    """Measured roofline of one device: bandwidth probe and matmul probe."""

    name: str
    bandwidth: Probe
    matmul: Probe
    note: str = ""  # printed under the probes (e.g. where a grading run measured them)

    @property
    def mem_bandwidth(self) -> float:
        """Measured memory bandwidth in bytes/s (median of the copy probe)."""
        return self.bandwidth.rate

    @property
    def peak_flops(self) -> float:
        """Measured matmul rate in FLOP/s (median of the matmul probe)."""
        return self.matmul.rate

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) at which the two measured roofs meet."""
        return self.peak_flops / self.mem_bandwidth

    def __str__(self) -> str:
        text = f"{self.name}\n  {self.bandwidth}\n  {self.matmul}\n  ridge {self.ridge:.3g} FLOP/byte"
        return text + (f"\n  ({self.note})" if self.note else "")


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp64": torch.float64, "float64": torch.float64}
    if dtype not in names:
        raise ValueError(f"dtype must be a torch dtype or one of {', '.join(names)}, got {dtype!r}")
    return names[dtype]


def _check_positive_int(name: str, value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _probe_array(n_bytes: int | None, repeats: int, device: str, dtype: Any) -> tuple[Any, Any]:
    """The bandwidth probes' array: ``n_bytes`` (default by device) of ones, checked arguments."""
    import torch

    if n_bytes is None:
        n_bytes = GPU_COPY_BYTES if "cuda" in str(device) else CPU_COPY_BYTES
    _check_positive_int("n_bytes", n_bytes)
    _check_positive_int("repeats", repeats)
    tdtype = _torch_dtype(dtype)
    elem = torch.empty((), dtype=tdtype).element_size()
    return torch.ones(max(1, n_bytes // elem), dtype=tdtype, device=device), tdtype


def measure_bandwidth(n_bytes: int | None = None, repeats: int = 5, device: str = "cpu",
                      dtype: Any = "fp32") -> Probe:
    """Memory bandwidth from a large copy ``dst.copy_(src)``, counting bytes read + written.

    ``n_bytes`` is the size of *one* array (default 256 MB on a CPU, 2 GB on a GPU:
    far larger than any cache); the copy moves ``2 * n_bytes`` (read ``src``, write
    ``dst``), and that is the work counted. Returns a :class:`Probe` whose ``rate``
    is the median bytes/s over ``repeats`` timed copies (after one warm-up copy).
    """
    import torch

    src, tdtype = _probe_array(n_bytes, repeats, device, dtype)
    n, elem = src.numel(), src.element_size()
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), repeats=repeats, warmup=1, device=device)
    moved = 2 * n * elem
    return Probe("copy bandwidth (read + write)", float(moved), "B/s", timing, str(device),
                 _dtype_name(tdtype))


def measure_read_bandwidth(n_bytes: int | None = None, repeats: int = 5, device: str = "cpu",
                           dtype: Any = "fp32") -> Probe:
    """Read-only bandwidth from summing a large array (``n_bytes`` read, nothing written back).

    For comparison with :func:`measure_bandwidth`: streaming reads avoid the
    write-allocate traffic of a copy, so this is usually somewhat higher.
    """
    src, tdtype = _probe_array(n_bytes, repeats, device, dtype)
    n, elem = src.numel(), src.element_size()
    timing = measure(lambda: src.sum(), repeats=repeats, warmup=1, device=device)
    return Probe("read bandwidth (sum)", float(n * elem), "B/s", timing, str(device),
                 _dtype_name(tdtype))


def measure_matmul_peak(n: int | None = None, repeats: int = 5, device: str = "cpu",
                        dtype: Any = "fp32") -> Probe:
    """Matmul rate from an ``n x n`` by ``n x n`` product, counting ``2 n^3`` FLOPs.

    Default ``n`` is 2048 on a CPU and 8192 on a GPU (use ``dtype="fp16"`` or
    ``"bf16"`` there to reach the tensor cores). The median of ``repeats`` timed
    products (after one warm-up) is the ``rate``. This is what a well-tuned kernel
    achieves, usually a little below the vendor's peak: it is the practical roof.
    """
    import torch

    if n is None:
        n = GPU_MATMUL_N if "cuda" in str(device) else CPU_MATMUL_N
    _check_positive_int("n", n)
    _check_positive_int("repeats", repeats)
    tdtype = _torch_dtype(dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32).to(device=device, dtype=tdtype)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32).to(device=device, dtype=tdtype)
    out = torch.empty(n, n, dtype=tdtype, device=device)
    timing = measure(lambda: torch.matmul(a, b, out=out), repeats=repeats, warmup=1, device=device)
    return Probe(f"matmul {n}x{n}x{n}", float(2 * n**3), "FLOP/s", timing, str(device),
                 _dtype_name(tdtype))


@dataclass(frozen=True)
class AttentionTiming:
    """One timed call of an attention function: ``T_q`` queries over ``T_k = N`` keys."""

    phase: str  # "prefill" (T_q = N) or "decode" (T_q = 1)
    n: int
    t_q: int
    t_k: int
    timing: Timing


#: Positions of fresh random values in :func:`time_attention`'s inputs; longer inputs repeat them.
RANDOM_POSITIONS: int = 1024


def time_attention(attention: Any, *, device: str, dtype: Any, n_heads: int, head_dim: int,
                   prefill_lengths: list[int], decode_lengths: list[int], repeats: int = 5,
                   warmup: int = 1, seed: int = 0) -> list[AttentionTiming]:
    """Time ``attention(q, k, v, causal=True)`` for one sequence of ``n_heads`` heads.

    Prefill: ``T_q = T_k = N`` for each N of ``prefill_lengths``; decode: ``T_q = 1``,
    ``T_k = N`` for each N of ``decode_lengths``. Random normal inputs in ``dtype`` on
    ``device`` (drawn for the first :data:`RANDOM_POSITIONS` positions and repeated along the
    sequence beyond them), median of ``repeats`` calls after ``warmup`` (the GPU synchronised
    around each). Only times: counting the FLOPs and bytes of each call is Lab 02's task.
    """
    import torch

    for name, value in (("n_heads", n_heads), ("head_dim", head_dim), ("repeats", repeats)):
        _check_positive_int(name, value)
    tdtype = _torch_dtype(dtype)
    gen = torch.Generator(device=device).manual_seed(seed)

    def normal(length: int) -> Any:
        """(1, n_heads, length, head_dim) of normal values: the same bytes to move and the same
        arithmetic as fresh ones (neither depends on the values), without drawing 10^8 of them
        (~0.3 s on one CPU core for a decode point of 32,768 positions)."""
        drawn = torch.randn(1, n_heads, min(length, RANDOM_POSITIONS), head_dim, generator=gen,
                            device=device, dtype=tdtype)
        if length <= RANDOM_POSITIONS:
            return drawn
        tiled = drawn.repeat(1, 1, -(-length // RANDOM_POSITIONS), 1)
        return tiled if tiled.shape[2] == length else tiled[:, :, :length].contiguous()

    out = []
    for phase, lengths in (("prefill", prefill_lengths), ("decode", decode_lengths)):
        for n in lengths:
            _check_positive_int("sequence length", n)
            n_q = n if phase == "prefill" else 1
            q = normal(n_q)
            k = normal(n)
            v = normal(n)
            with torch.inference_mode():
                timing = measure(lambda q=q, k=k, v=v: attention(q, k, v, causal=True), repeats=repeats,
                                 warmup=warmup, device=device)
            out.append(AttentionTiming(phase, n, n_q, n, timing))
            del q, k, v
    return out


def measure_machine(device: str = "cpu", dtype: Any = "fp32", repeats: int = 5,
                    copy_bytes: int | None = None, matmul_n: int | None = None) -> MachineRoofline:
    """Measure both roofs of ``device``: copy bandwidth and matmul peak (medians).

    While a notebook is autograded, a measurement the grader already made on this machine with
    the same arguments and thread count (:func:`share_measurement`) is returned instead, with a
    note saying so."""
    key = _share_key(device, dtype, repeats, copy_bytes, matmul_n)
    if is_autograding() and key in _SHARED:
        return _SHARED[key]
    name = device_name(device)
    bandwidth = measure_bandwidth(copy_bytes, repeats=repeats, device=device, dtype=dtype)
    matmul = measure_matmul_peak(matmul_n, repeats=repeats, device=device, dtype=dtype)
    return MachineRoofline(f"{name} (measured, {_dtype_name(_torch_dtype(dtype))})", bandwidth, matmul)


#: Measurements kept by :func:`share_measurement`, by arguments and thread count.
_SHARED: dict[tuple[Any, ...], MachineRoofline] = {}


def _share_key(device: str, dtype: Any, repeats: int, copy_bytes: int | None,
               matmul_n: int | None, threads: int | None = None) -> tuple[Any, ...]:
    import torch

    return (str(device), _dtype_name(_torch_dtype(dtype)), repeats, copy_bytes, matmul_n,
            torch.get_num_threads() if threads is None else threads)


def share_measurement(measured: MachineRoofline, *, threads: int, device: str = "cpu", dtype: Any = "fp32",
                      repeats: int = GRADING_REPEATS, copy_bytes: int | None = None,
                      matmul_n: int | None = None) -> MachineRoofline:
    """Keep a grading run's one measurement of its machine for the notebooks it grades.

    The grader's warm parent (``tools/zygote.py``) measures the machine once, with these
    arguments on ``threads`` threads, before it forks the first kernel of a lab that measures
    it, and passes the result here; every kernel forked after that, while autograding, gets it
    from :func:`measure_machine` (same arguments, same thread count) instead of measuring
    again: the grader's machine is the same for every student, and each kernel saves the
    probe's time (about a second on one thread). Outside autograding nothing is shared."""
    plural = "s" if threads != 1 else ""
    note = f"measured once for this grading run, on {threads} thread{plural}, before this notebook started"
    kept = replace(measured, note=note)
    _SHARED[_share_key(device, dtype, repeats, copy_bytes, matmul_n, threads)] = kept
    return kept


def shared_measurement(*, threads: int, device: str = "cpu", dtype: Any = "fp32",
                       repeats: int = GRADING_REPEATS, copy_bytes: int | None = None,
                       matmul_n: int | None = None) -> MachineRoofline | None:
    """The measurement :func:`share_measurement` keeps for these arguments on ``threads``
    threads, or None."""
    return _SHARED.get(_share_key(device, dtype, repeats, copy_bytes, matmul_n, threads))


def roofline_to_dict(machine: MachineRoofline) -> dict[str, Any]:
    """A measurement as plain data (JSON-ready); :func:`roofline_from_dict` reverses it."""
    return asdict(machine)


def roofline_from_dict(data: dict[str, Any]) -> MachineRoofline:
    """The :class:`MachineRoofline` that :func:`roofline_to_dict` wrote."""

    def probe(d: dict[str, Any]) -> Probe:
        timing = Timing(**{**d["timing"], "samples": tuple(d["timing"]["samples"])})
        return Probe(**{**d, "timing": timing})

    return MachineRoofline(data["name"], probe(data["bandwidth"]), probe(data["matmul"]), data.get("note", ""))


def device_name(device: str = "cpu") -> str:
    """A readable name for ``device``: the GPU's name, or the CPU model with its core count."""
    import torch

    if "cuda" in str(device):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {model}, {threads} thread{'s' if threads != 1 else ''}"


def spec_for_gpu(gpu_name: str) -> HardwareSpec | None:
    """The :data:`~course_lib.specs.HARDWARE` row matching a CUDA device name, or None.

    Matches the names ``torch.cuda.get_device_name()`` reports, e.g. "NVIDIA A100-SXM4-80GB",
    "NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe". Variants
    the table has no row for return None rather than a neighbour's figures: the H100 NVL and
    H200 NVL (other bandwidth or clocks), the GH200 (its name contains "H200"), laptop and
    "D" versions of the RTX 4090, the L40/L40S.

    >>> spec_for_gpu("NVIDIA H100 80GB HBM3").name
    'H100 SXM'
    >>> spec_for_gpu("NVIDIA A100 80GB PCIe").name
    'A100 80GB PCIe'
    """
    name = gpu_name.upper().replace("-", " ")
    words = set(name.split())
    if words & {"NVL", "LAPTOP", "MOBILE", "D"} or "GH200" in name or "L40" in name:
        return None
    rules = [
        (("H200",), "H200 SXM"),
        (("H100", "PCIE"), "H100 PCIe"),
        (("H100",), "H100 SXM"),
        (("A100", "80GB", "PCIE"), "A100 80GB PCIe"),
        (("A100", "40GB"), "A100 40GB SXM"),  # PCIe 40GB: same 1.555 TB/s and 312 TFLOP/s
        (("A100",), "A100 80GB SXM"),
        (("L4",), "L4"),
        (("4090",), "RTX 4090"),
        (("T4",), "T4"),
        (("MI300X",), "MI300X"),
    ]
    for parts, key in rules:
        if all(part in words or (len(part) > 3 and part in name) for part in parts):
            return HARDWARE.get(key)
    return None
