"""End-to-end generation time and a cost model fitted on your machine (Lab 01, Part 5).

A forward pass of MiniGPT over ``t_q`` new tokens that attend to ``t_k`` keys (``t_k - t_q``
of them cached) costs, in this model,

    time = overhead + FLOPs / peak + bytes / bandwidth

* ``overhead``: a fixed cost per forward call (Python, launching a few hundred small tensor
  operations), whatever the sizes;
* ``FLOPs`` (:func:`forward_flops`): ``2 P t_q`` for the weight matrices (``P`` weights in
  matrix products) plus ``4 L H D t_q t_k`` for the attention products (``QK^T`` and the
  product with ``V``; masked pairs are computed too);
* ``bytes`` (:func:`forward_bytes`): the weights read once, the cached keys and values read
  once (``2 L H_kv D t_k`` numbers: each KV head is read once when the query heads of a group
  share it without a copy), and the ``L H t_q t_k`` attention scores written and read
  :data:`SCORE_PASSES` times.

The three constants are not taken from a data sheet: :func:`fit_step_cost` fits them to
forward passes timed on this machine (non-negative least squares on relative errors), and
:meth:`StepCostModel.generation_time` adds the steps of a whole generation, cached or not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SCORE_PASSES", "ForwardShape", "StepCostModel", "forward_flops", "forward_bytes",
           "fit_step_cost", "generation_steps"]

#: How many times the course's attention writes or reads a (t_q x t_k) score matrix per head:
#: ``q @ k^T`` writes it (1), ``/ sqrt(D)`` reads and writes it (2), ``masked_fill`` (2),
#: ``softmax`` (2), ``@ v`` reads it (1).
SCORE_PASSES: int = 8


@dataclass(frozen=True)
class ForwardShape:
    """What the cost of a forward pass depends on (sizes of MiniGPT, or of any GPT like it)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    matmul_params: int  # weights in matrix products (the embedding lookup is not one)
    bytes_per_elem: int = 4

    @classmethod
    def of(cls, model: Any) -> ForwardShape:
        """The shape of a MiniGPT (fp32): every 2-D weight except the token embedding is a matmul."""
        params = sum(p.numel() for name, p in model.named_parameters()
                     if p.dim() == 2 and "tok_emb" not in name)
        return cls(int(model.n_layers), int(model.n_heads), int(model.n_kv_heads), int(model.head_dim),
                   int(params), int(next(model.parameters()).element_size()))


def _check_tokens(t_q: int, t_k: int) -> None:
    if type(t_q) is not int or type(t_k) is not int:  # noqa: E721 - bools and floats are not token counts
        raise TypeError(f"t_q and t_k must be ints, got {type(t_q).__name__} and {type(t_k).__name__}")
    if t_q < 1 or t_k < t_q:
        raise ValueError(f"need 1 <= t_q <= t_k, got t_q={t_q}, t_k={t_k}")


def forward_flops(shape: ForwardShape, t_q: int, t_k: int) -> int:
    """FLOPs of one forward pass: ``2 P t_q + 4 L H D t_q t_k``."""
    _check_tokens(t_q, t_k)
    weights = 2 * shape.matmul_params * t_q
    attention = 4 * shape.n_layers * shape.n_heads * shape.head_dim * t_q * t_k
    return weights + attention


def forward_bytes(shape: ForwardShape, t_q: int, t_k: int, score_passes: int = SCORE_PASSES) -> int:
    """Bytes one forward pass moves: weights + cached K and V (read once) + score-matrix passes."""
    _check_tokens(t_q, t_k)
    s = shape.bytes_per_elem
    weights = s * shape.matmul_params
    keys_values = s * 2 * shape.n_layers * shape.n_kv_heads * shape.head_dim * t_k
    scores = s * score_passes * shape.n_layers * shape.n_heads * t_q * t_k
    return weights + keys_values + scores


def generation_steps(prompt_len: int, new_tokens: int, cached: bool) -> list[tuple[int, int]]:
    """The forward passes ``(t_q, t_k)`` of a greedy generation of ``new_tokens`` after ``prompt_len``.

    With a cache: the prefill ``(S, S)``, then ``new_tokens - 1`` decode steps ``(1, S + i)`` (the
    last new token needs no forward pass). Without: ``new_tokens`` passes over ``S + i`` tokens.
    """
    if prompt_len < 1 or new_tokens < 0:
        raise ValueError(f"need prompt_len >= 1 and new_tokens >= 0, got {prompt_len}, {new_tokens}")
    if new_tokens == 0:
        return []
    if cached:
        return [(prompt_len, prompt_len)] + [(1, prompt_len + i) for i in range(1, new_tokens)]
    return [(prompt_len + i, prompt_len + i) for i in range(new_tokens)]


@dataclass(frozen=True)
class StepCostModel:
    """``time = overhead_s + seconds_per_flop * FLOPs + seconds_per_byte * bytes`` per forward pass."""

    shape: ForwardShape
    overhead_s: float
    seconds_per_flop: float
    seconds_per_byte: float

    @property
    def peak_flops(self) -> float:
        """Fitted FLOP/s (``inf`` when the fit found no FLOP term)."""
        return 1.0 / self.seconds_per_flop if self.seconds_per_flop > 0 else math.inf

    @property
    def bandwidth(self) -> float:
        """Fitted bytes/s (``inf`` when the fit found no byte term)."""
        return 1.0 / self.seconds_per_byte if self.seconds_per_byte > 0 else math.inf

    def step_time(self, t_q: int, t_k: int) -> float:
        """Predicted seconds of one forward pass."""
        return (self.overhead_s + self.seconds_per_flop * forward_flops(self.shape, t_q, t_k)
                + self.seconds_per_byte * forward_bytes(self.shape, t_q, t_k))

    def parts(self, t_q: int, t_k: int) -> dict[str, float]:
        """The three terms of :meth:`step_time` (seconds), to see which one dominates."""
        return {"overhead": self.overhead_s,
                "flops": self.seconds_per_flop * forward_flops(self.shape, t_q, t_k),
                "bytes": self.seconds_per_byte * forward_bytes(self.shape, t_q, t_k)}

    def generation_time(self, prompt_len: int, new_tokens: int, cached: bool) -> float:
        """Predicted seconds of a whole greedy generation (sum of its forward passes)."""
        return sum(self.step_time(tq, tk) for tq, tk in generation_steps(prompt_len, new_tokens, cached))

    def describe(self) -> str:
        def rate(value: float, unit: str) -> str:
            return "not needed by the fit" if math.isinf(value) else f"{value / 1e9:.3g} G{unit}/s"
        return (f"overhead {self.overhead_s * 1e3:.3g} ms per forward pass, "
                f"peak {rate(self.peak_flops, 'FLOP')}, bandwidth {rate(self.bandwidth, 'B')} "
                f"(GB = 10^9 bytes)")


def fit_step_cost(shape: ForwardShape, samples: Iterable[tuple[int, int, float]]) -> StepCostModel:
    """Fit overhead, 1/peak and 1/bandwidth to timed forward passes ``(t_q, t_k, seconds)``.

    Minimises the sum of squared *relative* errors (a 2 ms decode step counts as much as a
    2 s prefill), with every constant >= 0: each subset of the three terms is solved by least
    squares and the best solution without a negative constant wins (exact for 3 unknowns).
    """
    rows = [(int(tq), int(tk), float(sec)) for tq, tk, sec in samples]
    if len(rows) < 3:
        raise ValueError(f"need at least 3 timed forward passes to fit 3 constants, got {len(rows)}")
    if any(sec <= 0 or not math.isfinite(sec) for _, _, sec in rows):
        raise ValueError("every time must be a positive number of seconds")
    # Each row divided by the measured time: the residual is the relative error.
    a = np.array([[1.0 / sec, forward_flops(shape, tq, tk) / sec, forward_bytes(shape, tq, tk) / sec]
                  for tq, tk, sec in rows])
    b = np.ones(len(rows))
    scale = a.max(axis=0)  # columns of very different magnitude: solve in scaled units
    best: tuple[float, np.ndarray] | None = None
    for k in range(1, 4):
        for cols in itertools.combinations(range(3), k):
            idx = list(cols)
            x_sub, *_ = np.linalg.lstsq(a[:, idx] / scale[idx], b, rcond=None)
            if np.any(x_sub < 0):
                continue
            x = np.zeros(3)
            x[idx] = x_sub / scale[idx]
            resid = float(np.sum((a @ x - b) ** 2))
            if best is None or resid < best[0]:
                best = (resid, x)
    assert best is not None  # the overhead alone always gives a non-negative solution
    x = best[1]
    return StepCostModel(shape, float(x[0]), float(x[1]), float(x[2]))
