"""Units: bytes, decimal vs binary prefixes, and one formatting helper.

The course never writes a bare "GB". Decimal units (1 GB = 10**9 bytes, 1 TB/s
= 10**12 bytes/s) are what vendors use for **bandwidth** and for file and disk
sizes; binary units (1 GiB = 2**30 bytes) are what operating systems, drivers
and PyTorch report. GPU memory **capacity** is binary too, whatever the label
says: a card sold as "80GB" holds about 80 GiB (nvidia-smi reports 81920 MiB for
an A100 80GB), i.e. 85.9 * 10**9 bytes, not 80 * 10**9. The two prefixes differ
by 7.4% at the giga scale: reading a capacity label as decimal understates the
card by that much, and printing a byte count in the wrong unit overstates or
understates it by the same factor.
"""

from __future__ import annotations

from typing import Literal

KB: int = 10**3
MB: int = 10**6
GB: int = 10**9
TB: int = 10**12
KiB: int = 2**10
MiB: int = 2**20
GiB: int = 2**30
TiB: int = 2**40

#: Bytes per element for the dtypes the course uses.
DTYPE_BYTES: dict[str, float] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,  # stored as 32 bits, multiplied with 10-bit mantissas
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}

_UNITS: dict[str, int] = {
    "B": 1,
    "KB": KB,
    "MB": MB,
    "GB": GB,
    "TB": TB,
    "KiB": KiB,
    "MiB": MiB,
    "GiB": GiB,
    "TiB": TiB,
}

Unit = Literal["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "auto-binary", "auto-decimal"]


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype`` ("fp16", "bf16", "fp32", "int8", ...).

    >>> dtype_bytes("bf16")
    2
    """
    key = str(dtype).lower().removeprefix("torch.").replace("bfloat", "bf").replace("float", "fp")
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number of bytes, got {type(value).__name__}")
    return value  # type: ignore[return-value]


def to_unit(n_bytes: float, unit: str) -> float:
    """Convert a byte count to ``unit`` ("GB" = 10**9 bytes, "GiB" = 2**30 bytes, ...)."""
    _check_number("n_bytes", n_bytes)
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r}; use one of {', '.join(_UNITS)}")
    return float(n_bytes) / _UNITS[unit]


def format_bytes(n_bytes: float, unit: Unit = "auto-binary", digits: int = 3,
                 exact: bool = False) -> str:
    """Format a byte count with an explicit unit, never ambiguous.

    ``unit`` is one of B, KB, MB, GB, TB (powers of 10), KiB, MiB, GiB, TiB
    (powers of 2), or "auto-binary"/"auto-decimal" to pick the largest unit
    of that family that keeps the number >= 1. With ``exact=True`` the exact
    byte count follows in parentheses.

    >>> format_bytes(2**31)
    '2.000 GiB'
    >>> format_bytes(2**31, "GB", exact=True)
    '2.147 GB (2,147,483,648 B)'
    """
    _check_number("n_bytes", n_bytes)
    if unit in ("auto-binary", "auto-decimal"):
        family = ["TiB", "GiB", "MiB", "KiB"] if unit == "auto-binary" else ["TB", "GB", "MB", "KB"]
        unit = "B"
        for candidate in family:
            if abs(float(n_bytes)) >= _UNITS[candidate]:
                unit = candidate
                break
    value = to_unit(n_bytes, unit)
    text = f"{int(n_bytes):,} B" if unit == "B" else f"{value:.{digits}f} {unit}"
    if exact and unit != "B":
        text += f" ({int(n_bytes):,} B)"
    return text


def format_rate(value: float, unit: str = "B/s") -> str:
    """Format a rate with a decimal SI prefix: 3.35e12 -> '3.35 TB/s', 9.89e14 -> '989 TFLOP/s'."""
    _check_number("value", value)
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
