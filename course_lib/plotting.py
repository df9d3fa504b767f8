"""Plotting helpers: every axis labelled with its unit, log scales where the range needs them.

Sections: latency plots (Lab 01) and roofline plots (Lab 02).
"""

from __future__ import annotations


def new_axes(figsize: tuple[float, float] = (7.0, 4.5)):  # -> (Figure, Axes)
    """A figure and axes with the course's defaults (grid, readable font sizes)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


# ============================================================================================
# Latency plots (Lab 01)
# ============================================================================================


def _timing_stats(t: object) -> tuple[float, float, float]:
    """(median, min, max) seconds of a :class:`course_lib.timing.Timing` or a plain number."""
    if hasattr(t, "median"):
        return float(t.median), float(t.minimum), float(t.maximum)
    value = float(t)  # type: ignore[arg-type]
    return value, value, value


def plot_latency(lengths, series, *, ax=None, title: str | None = None,
                 xlabel: str = "context length S (tokens)", ylabel: str = "time per token (s)"):
    """Latency against context length, log-log, one line per series with min..max error bars.

    ``lengths``: the x values (tokens). ``series``: ``{label: [Timing or seconds, ...]}``, one
    entry per length. Returns the axes.
    """
    if ax is None:
        _, ax = new_axes()
    xs = [float(x) for x in lengths]
    for label, timings in series.items():
        if len(timings) != len(xs):
            raise ValueError(f"series {label!r} has {len(timings)} timings for {len(xs)} lengths")
        stats = [_timing_stats(t) for t in timings]
        med = [m for m, _, _ in stats]
        err = [[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=f"{label} (median, min..max)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Latency")
    ax.legend()
    return ax


def plot_speedup(lengths, measured, predicted=None, *, ax=None, title: str | None = None,
                 xlabel: str = "context length S (tokens)"):
    """Measured speedup (and optionally a predicted one) against context length, log-log.

    ``measured`` and ``predicted`` are ratios (dimensionless, e.g. uncached / cached time).
    Returns the axes.
    """
    if ax is None:
        _, ax = new_axes()
    xs = [float(x) for x in lengths]
    if len(measured) != len(xs):
        raise ValueError(f"measured has {len(measured)} values for {len(xs)} lengths")
    ax.plot(xs, [float(m) for m in measured], marker="o", label="measured")
    if predicted is not None:
        if len(predicted) != len(xs):
            raise ValueError(f"predicted has {len(predicted)} values for {len(xs)} lengths")
        ax.plot(xs, [float(p) for p in predicted], linestyle="--", marker="x",
                label="predicted from FLOP count")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("speedup (x, dimensionless)")
    ax.set_title(title or "Speedup")
    ax.legend()
    return ax



# ============================================================================================
# Roofline plots (Lab 02)
# ============================================================================================

def _roof_of(device: object) -> tuple[str, float, float]:
    """(label, peak FLOP/s, bandwidth B/s) of a device given in any accepted form."""
    from .specs import HardwareSpec

    if isinstance(device, HardwareSpec):
        return f"{device.name} (fp16/bf16 dense, datasheet)", device.peak_flops_fp16, device.mem_bandwidth
    if isinstance(device, tuple) and len(device) == 3:
        label, peak, bandwidth = device
        return str(label), float(peak), float(bandwidth)
    if all(hasattr(device, a) for a in ("name", "peak_flops", "mem_bandwidth")):
        return str(device.name), float(device.peak_flops), float(device.mem_bandwidth)  # type: ignore[attr-defined]
    raise TypeError("a roofline device must be (label, peak_flops, mem_bandwidth), a HardwareSpec, "
                    f"or have name/peak_flops/mem_bandwidth; got {type(device).__name__}")


def _point_of(point: object) -> tuple[str, float, float, str]:
    """(label, intensity FLOP/B, achieved FLOP/s, group) of a measured point."""
    if isinstance(point, dict):
        return (str(point["label"]), float(point["intensity"]), float(point["flops"]),
                str(point.get("group", "")))
    if isinstance(point, tuple) and len(point) in (3, 4):
        label, intensity, flops = point[:3]
        group = point[3] if len(point) == 4 else ""
        return str(label), float(intensity), float(flops), str(group)
    raise TypeError("a roofline point must be (label, intensity, flops[, group]) or a dict with "
                    f"label/intensity/flops[/group]; got {type(point).__name__}")


def plot_roofline(devices: list | tuple, points: list | tuple = (), *, ax=None,
                  intensity_range: tuple[float, float] | None = None, title: str | None = None,
                  annotate_points: bool = True):  # -> Axes
    """Draw rooflines of several devices, mark their ridge points, and place measured points.

    ``devices``: a sequence of devices, each ``(label, peak FLOP/s, bandwidth bytes/s)``, a
    :class:`course_lib.specs.HardwareSpec` (its dense fp16/bf16 peak), or an object with
    ``name``, ``peak_flops`` and ``mem_bandwidth`` (a measured
    :class:`course_lib.roofline.MachineRoofline`). Each roof is
    ``min(peak, intensity * bandwidth)``, drawn on log-log axes; its ridge point
    (``peak / bandwidth`` FLOP/byte) gets a marker and its value.

    ``points``: measured kernels, each ``(label, intensity, achieved FLOP/s[, group])``
    or a dict with those keys; points of one ``group`` (e.g. "prefill", "decode")
    share a marker and colour and appear once in the legend.

    Axes: x = arithmetic intensity (FLOP/byte), y = performance (FLOP/s, with SI
    prefixes on the ticks). Returns the matplotlib Axes.
    """
    import numpy as np
    from matplotlib.ticker import EngFormatter

    from .units import format_rate

    roofs = [_roof_of(d) for d in devices]
    pts = [_point_of(p) for p in points]
    if not roofs and not pts:
        raise ValueError("plot_roofline needs at least one device or one point")
    for label, peak, bandwidth in roofs:
        if not (peak > 0 and bandwidth > 0):
            raise ValueError(f"device {label!r}: peak_flops and mem_bandwidth must be > 0")
    for label, intensity, flops, _ in pts:
        if not (intensity > 0 and flops > 0):
            raise ValueError(f"point {label!r}: intensity and FLOP/s must be > 0 on log axes")
    if ax is None:
        _, ax = new_axes((8.0, 5.0))
    if intensity_range is None:
        xs = [peak / bw for _, peak, bw in roofs] + [i for _, i, _, _ in pts]
        intensity_range = (min(xs) / 20, max(xs) * 20)
    lo, hi = intensity_range
    if not (0 < lo < hi):
        raise ValueError(f"intensity_range must be (low, high) with 0 < low < high, got {intensity_range}")
    grid = np.logspace(np.log10(lo), np.log10(hi), 400)
    colors = [f"C{i}" for i in range(10)]
    for i, (label, peak, bandwidth) in enumerate(roofs):
        color = colors[i % len(colors)]
        ridge = peak / bandwidth
        ax.plot(grid, np.minimum(peak, grid * bandwidth), color=color, lw=2,
                label=f"{label}: {format_rate(peak, 'FLOP/s')}, {format_rate(bandwidth, 'B/s')}")
        if lo <= ridge <= hi:
            ax.plot([ridge], [peak], marker="o", ms=8, mfc="white", mec=color, mew=2, ls="none")
            # stack the labels of nearby ridges instead of printing them on top of each other
            ax.annotate(f"ridge {ridge:.3g} FLOP/B", (ridge, peak), textcoords="offset points",
                        xytext=(6, -14 - 12 * i), fontsize=8, color=color)
    markers = ["s", "^", "D", "v", "P", "X"]
    groups: list[str] = []
    for _, _, _, group in pts:
        if group not in groups:
            groups.append(group)
    for g, group in enumerate(groups):
        mine = [p for p in pts if p[3] == group]
        ax.scatter([p[1] for p in mine], [p[2] for p in mine], marker=markers[g % len(markers)],
                   s=45, zorder=5, color=colors[(len(roofs) + g) % len(colors)],
                   edgecolor="black", linewidth=0.5, label=f"measured: {group}" if group else "measured")
        if annotate_points:
            # labels of one group on one side (alternating sides between groups), and alternately
            # above and below in order of height, so that points at equal intensity stay readable
            side = 1 if g % 2 == 0 else -1
            for k, (label, intensity, flops, _) in enumerate(sorted(mine, key=lambda p: p[2])):
                ax.annotate(label, (intensity, flops), textcoords="offset points",
                            xytext=(6 * side, -9 if k % 2 == 0 else 3), fontsize=7,
                            ha="left" if side > 0 else "right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = [peak for _, peak, _ in roofs] + [f for _, _, f, _ in pts]
    ys_low = [min(peak, lo * bw) for _, peak, bw in roofs] + [f for _, _, f, _ in pts]
    ax.set_ylim(min(ys_low) / 2, max(ys) * 2.5)
    ax.yaxis.set_major_formatter(EngFormatter(unit="FLOP/s"))
    ax.set_xlabel("Arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("Performance (FLOP/s)")
    ax.set_title(title or "Roofline: attainable FLOP/s = min(peak, intensity x bandwidth)")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_intensity_vs_length(lengths: list | tuple | range, series: dict, ridges: dict | None = None,
                             *, ax=None, title: str | None = None,
                             xlabel: str = "Context length N (tokens)"):  # -> Axes
    """Arithmetic intensity against context length, with devices' ridge points as lines.

    ``series`` maps a label (e.g. "prefill, unfused") to intensities (FLOP/byte), one per
    entry of ``lengths``; ``ridges`` maps a device label to its ridge point (FLOP/byte),
    drawn as a dashed horizontal line: above it a kernel is compute-bound on that
    device, below it memory-bound. Log-log axes. Returns the matplotlib Axes.
    """
    lengths = list(lengths)
    if not lengths or min(lengths) <= 0:
        raise ValueError("lengths must be a non-empty sequence of positive numbers")
    if ax is None:
        _, ax = new_axes((8.0, 5.0))
    for label, values in series.items():
        values = list(values)
        if len(values) != len(lengths):
            raise ValueError(f"series {label!r} has {len(values)} values for {len(lengths)} lengths")
        ax.plot(lengths, values, marker="o", ms=3, lw=2, label=label)
    for i, (label, ridge) in enumerate((ridges or {}).items()):
        ax.axhline(ridge, color="black", ls=["--", ":", "-."][i % 3], lw=1.2,
                   label=f"ridge {label}: {ridge:.3g} FLOP/B")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Arithmetic intensity (FLOP/byte)")
    ax.set_title(title or "Arithmetic intensity of attention vs context length")
    ax.legend(fontsize=8)
    return ax
