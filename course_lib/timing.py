"""Timing helpers: repeats, medians, spreads and progress bars.

Wall-clock timings on a laptop are noisy: the first call pays for warm-up
(allocation, lazy initialisation, caches), and later calls vary by a few
percent. Report the median of several repeats with the spread (min..max),
never a single run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeats`` timed runs (after ``warmup`` untimed ones)."""

    median: float
    minimum: float
    maximum: float
    repeats: int
    samples: tuple[float, ...]

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.05 means the runs varied by 5% of the median."""
        return (self.maximum - self.minimum) / self.median if self.median > 0 else 0.0

    def __str__(self) -> str:
        return (f"{format_seconds(self.median)} median of {self.repeats} "
                f"(min {format_seconds(self.minimum)}, max {format_seconds(self.maximum)})")


def format_seconds(seconds: float) -> str:
    """Human units: 0.000012 -> '12.0 us', 0.0153 -> '15.3 ms', 2.5 -> '2.50 s'."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _sync(device: Any) -> None:
    if device is not None and "cuda" in str(device):
        import torch

        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: Any = None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls.

    Pass ``device="cuda"`` to synchronise the GPU around each call (GPU work is
    asynchronous: without a sync you time the launch, not the work).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), min(samples), max(samples), repeats, tuple(samples))


def is_autograding() -> bool:
    """True while nbgrader autogrades or validates this notebook.

    Used only to shrink *ungraded* benchmarks so grading stays fast; graded
    answers never depend on it ("second_opinion" is the grader's re-run in
    tools/integrity.py).
    """
    return os.environ.get("NBGRADER_EXECUTION") in ("autograde", "validate", "second_opinion")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterator[T]:
    """Progress of long work: a text bar in a terminal, one plain line per item elsewhere.

    * In a terminal: ``tqdm.std``'s text bar on stderr.
    * In a notebook (and anywhere stderr is not a terminal): after each item, one line on
      stdout, ``"<desc>: 3/7 done, 12.5 s"``. Plain text on purpose: ``tqdm.auto`` would
      create an ipywidgets widget, which needs JavaScript from the network to show in a
      saved notebook or on the solutions site.
    * While autograding: nothing (nbgrader counts any stderr output of a test cell as a
      failure, and the grader's log needs no progress).
    """
    if is_autograding():
        yield from iterable
        return
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm.std import tqdm

        yield from tqdm(iterable, desc=desc, total=total)
        return
    start = time.perf_counter()
    for done, item in enumerate(iterable, start=1):
        yield item
        of = f"/{total}" if total is not None else ""
        print(f"{desc + ': ' if desc else ''}{done}{of} done, {format_seconds(time.perf_counter() - start)}",
              flush=True)
