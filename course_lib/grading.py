"""Grading helpers: compare an answer with the expected value and name the likely mistake.

Tests in the notebooks call these. A failed check raises :class:`AnswerError`
(an ``AssertionError``) whose message says what was called, what came back,
what was expected, how far off it is, and, when the error matches a known
mistake, which one: "8x too large: bits instead of bytes?".

The checks are strict about *types* on purpose: a size in bytes must be a real
``int`` (or a NumPy integer, or an integral float), not an object that merely
claims to be equal to everything.

A hidden test declares its calls as :class:`Case` records (arguments, the right
answer, each named mistake's answer) and checks them with :func:`check_cases`;
the tolerances live here (:data:`REAL_RTOL`, :data:`TENSOR_RTOL`).

Why one module of this size: every check students meet (integers, reals, tensors, tokens,
errors, declared cases) shares the message format that names a mistake; the tolerances live
here once.
"""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

#: Exact numeric types accepted as integers (subclasses are refused: they can override ``==``).
_NUMPY_INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
_NUMPY_FLOATS = (np.float16, np.float32, np.float64)


class AnswerError(AssertionError):
    """A graded answer is wrong; the message explains how."""


# --------------------------------------------------------------------------------------------
# How a failed check looks in a notebook: the test's line and the course's message, without
# the frames of this module (a student has no use for the checker's internals).
# --------------------------------------------------------------------------------------------

def _without_checker_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback ``tb`` less the frames of this module (the student's own frames stay)."""
    kept: list[types.TracebackType] = []
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") != __name__:
            kept.append(tb)
        tb = tb.tb_next
    trimmed = None
    for entry in reversed(kept):
        trimmed = types.TracebackType(trimmed, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return trimmed


def _show_answer_error(shell: Any, etype: type, value: BaseException, tb: types.TracebackType | None,
                       tb_offset: int | None = None) -> list[str]:
    """IPython's handler for :class:`AnswerError`: the usual traceback, less this module's frames.

    The cell still ends in an error output (nbgrader scores it 0 and its feedback shows the same
    text): IPython leaves showing it to the handler.
    """
    stb = shell.InteractiveTB.structured_traceback(etype, value, _without_checker_frames(tb),
                                                   tb_offset=tb_offset)
    shell._showtraceback(etype, value, stb)
    return stb


def _install_notebook_display() -> None:
    """Inside IPython (a notebook kernel), show failed checks without this module's frames."""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: tracebacks as usual
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "set_custom_exc"):
        shell.set_custom_exc((AnswerError,), _show_answer_error)


_install_notebook_display()


# Ratios got/expected that point to a common slip, whatever the function.
GENERIC_RATIOS: list[tuple[float, str]] = [
    (8.0, "8x too large: bits instead of bytes (16 for fp16 instead of 2)?"),
    (1 / 8, "8x too small: divided by 8 once too often (bytes vs bits)?"),
    (2.0, "2x too large: a factor of 2 counted twice?"),
    (0.5, "2x too small: forgot the factor 2 (K *and* V)?"),
    (2**30 / 10**9, "7.4% too large (x1.0737): GiB (2^30) used where GB (10^9) was meant?"),
    (10**9 / 2**30, "7.4% too small (x0.9313): GB (10^9) used where GiB (2^30) was meant?"),
    (2**20 / 10**6, "4.9% too large (x1.0486): MiB vs MB?"),
    (10**6 / 2**20, "4.9% too small (x0.9537): MB vs MiB?"),
    (1024.0, "1024x too large: a unit conversion (KiB/MiB/GiB) went the wrong way?"),
    (1 / 1024, "1024x too small: a unit conversion (KiB/MiB/GiB) went the wrong way?"),
    (1000.0, "1000x too large: a unit conversion (kB/MB/GB) went the wrong way?"),
    (1e-3, "1000x too small: a unit conversion (kB/MB/GB) went the wrong way?"),
]


def _type_name(value: object) -> str:
    return type(value).__module__.replace("builtins", "") + "." + type(value).__qualname__ \
        if type(value).__module__ != "builtins" else type(value).__name__


def as_exact_int(value: Any, what: str) -> int:
    """Return ``value`` as a Python ``int`` if it is an exact integer, else raise AnswerError.

    Accepted: ``int``, NumPy integer scalars, and floats with an integral value
    below 2**53 (where floats are still exact). Refused: ``bool``, subclasses of
    ``int`` (they can redefine ``==``), arrays, strings, ``None``, non-integral floats.
    """
    kind = type(value)
    if kind is int:
        return value
    if kind in _NUMPY_INTS:
        return int(value)
    if kind is float or kind in _NUMPY_FLOATS:
        f = float(value)
        if math.isfinite(f) and f.is_integer() and abs(f) < 2**53:
            return int(f)
        raise AnswerError(f"{what} returned the float {f!r}; sizes and counts here are whole "
                          f"numbers: round with // or math.floor / math.ceil as the task says")
    if value is None:
        raise AnswerError(f"{what} returned None: did you forget the `return` statement?")
    if kind is bool:
        raise AnswerError(f"{what} returned a bool ({value}); an integer was expected")
    raise AnswerError(f"{what} returned a {_type_name(value)}; an int was expected "
                      f"(a plain Python int or a NumPy integer)")


def as_exact_real(value: Any, what: str) -> float:
    """Return ``value`` as a Python float if it is a plain real number (int, float, NumPy scalar)."""
    kind = type(value)
    if kind is int or kind is float or kind in _NUMPY_INTS or kind in _NUMPY_FLOATS:
        return float(value)
    if kind is Fraction:
        return float(value)
    if value is None:
        raise AnswerError(f"{what} returned None: did you forget the `return` statement?")
    raise AnswerError(f"{what} returned a {_type_name(value)}; a number (int or float) was expected")


def _ratio_text(got: float, expected: float) -> str:
    if expected == 0:
        return "expected 0"
    r = got / expected
    if r == 1:
        return "equal"
    if r > 1:
        return f"{r:.4g}x too large"
    if r > 0:
        return f"{1 / r:.4g}x too small"
    return f"ratio {r:.4g}"


def _matches(got: float, candidate: float, rel: float) -> bool:
    if isinstance(got, int) and isinstance(candidate, int):
        return got == candidate
    return math.isclose(got, candidate, rel_tol=rel, abs_tol=0.0) or got == candidate


def diagnose(got: float, expected: float, mistakes: Mapping[str, float] | None = None,
             rel: float = 1e-6, generic: bool = True) -> str | None:
    """Name the likely mistake behind ``got`` (or None when nothing fits).

    ``mistakes`` maps a description to the value that mistake would produce for
    these inputs (computed by the test); it is tried first. Then, when
    ``generic`` is true, come generic guesses: ratios (x8, x2, GiB/GB, ...),
    off-by-one and a negative result. A test passes ``generic=False`` when such a
    guess could name a mistake the function cannot make (a named mistake must be
    right or absent).
    """
    for label, wrong in (mistakes or {}).items():
        if wrong != expected and _matches(got, wrong, rel):
            return label
    if not generic:
        return None
    if expected != 0 and got != 0:
        r = got / expected
        for ratio, label in GENERIC_RATIOS:
            if math.isclose(r, ratio, rel_tol=1e-3):
                return label
    if isinstance(got, int) and isinstance(expected, int) and abs(got - expected) == 1:
        return ("off by one: rounded the wrong way? 'largest that fits' rounds down (floor), "
                "'how many are needed' rounds up (ceil)")
    if got < 0 <= expected:
        return "negative: when nothing fits the answer is 0, not a negative number"
    return None


def _message(call: str, got: float, expected: float, label: str | None) -> str:
    fmt = (lambda v: f"{v:,}") if isinstance(got, int) and isinstance(expected, int) \
        else (lambda v: f"{v:.6g}")
    msg = f"{call} returned {fmt(got)}, expected {fmt(expected)} ({_ratio_text(got, expected)})."
    if label:
        msg += f"\n  Likely mistake: {label}"
    return msg


def check_int(got: Any, expected: int, *, call: str,
              mistakes: Mapping[str, float] | None = None, generic: bool = True) -> None:
    """Check an exact integer answer; on failure raise AnswerError naming the likely mistake.

    ``call`` describes the call in the student's terms, e.g.
    ``"kv_bytes_per_token(n_layers=32, n_kv_heads=8, head_dim=128, bytes_per_elem=2)"``.
    ``mistakes`` and ``generic`` are as in :func:`diagnose`.
    """
    __tracebackhide__ = True
    value = as_exact_int(got, call)
    if type(expected) is not int:
        raise TypeError("check_int: expected must be an int (test bug)")
    if value != expected:
        raise AnswerError(_message(call, value, expected, diagnose(value, expected, mistakes,
                                                                   generic=generic)))


#: The relative tolerance of real-valued answers: a correct float computation differs from the
#: expected value only by rounding, many orders of magnitude below it.
REAL_RTOL: float = 1e-9


def check_real(got: Any, expected: float, *, call: str, rel: float = REAL_RTOL,
               mistakes: Mapping[str, float] | None = None, generic: bool = True) -> None:
    """Check a real-valued answer to relative tolerance ``rel``; name the likely mistake."""
    __tracebackhide__ = True
    value = as_exact_real(got, call)
    if math.isnan(value) or not math.isclose(value, expected, rel_tol=rel, abs_tol=0.0):
        raise AnswerError(_message(call, value, float(expected),
                                   diagnose(value, float(expected), mistakes, rel=max(rel, 1e-6),
                                            generic=generic)))


def describe_call(func_name: str, /, *args: Any, **kwargs: Any) -> str:
    """Render a call the way a student would write it: ``f(1, 2, batch_size=8)``."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{func_name}({', '.join(parts)})"


def expect_error(func: Any, args: tuple, kwargs: Mapping[str, Any] | None, error: type[BaseException],
                 why: str) -> None:
    """Check that ``func(*args, **kwargs)`` raises ``error`` (e.g. ValueError for negative sizes)."""
    kwargs = dict(kwargs or {})
    call = describe_call(getattr(func, "__name__", "function"), *args, **kwargs)
    try:
        result = func(*args, **kwargs)
    except error:
        return
    except Exception as exc:  # noqa: BLE001 - report what came instead
        raise AnswerError(f"{call} raised {type(exc).__name__}: {exc}; expected {error.__name__} "
                          f"({why})") from None
    raise AnswerError(f"{call} returned {result!r}; expected it to raise {error.__name__} ({why})")


# --------------------------------------------------------------------------------------------
# Declared cases: a hidden test is a table of calls, each with its answer and its named mistakes
# --------------------------------------------------------------------------------------------

def named_together(mistakes: Mapping[str, float | None]) -> dict[str, float]:
    """The mistakes that can show (value not None); those giving the same value share one label "a or b"."""
    by_value: dict[float, list[str]] = {}
    for label, value in mistakes.items():
        if value is not None:
            by_value.setdefault(value, []).append(label)
    return {" or ".join(labels): value for value, labels in by_value.items()}


@dataclass(frozen=True)
class Case:
    """One graded call: its arguments, the right answer, and what each named mistake returns instead.

    ``expected`` is an integer (checked exactly) or a ``float`` (checked to :data:`REAL_RTOL`).
    ``mistakes`` maps a description to the value that mistake gives for these arguments (None
    where it cannot show). ``errors`` names a mistake by the error it raises: a piece of the
    error's text (``"ValueError"``, ``"truth value of an array"``) -> the mistake. ``call`` is
    how feedback shows the call (default: as written, :func:`describe_call`, followed by
    ``# note`` when there is a ``note``, e.g. the GPU whose figures the arguments are).
    """

    args: tuple[Any, ...]
    expected: int | float
    mistakes: Mapping[str, float | None] = field(default_factory=dict)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    call: str = ""
    errors: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    def by_keyword(self, *names: str) -> Case:
        """The same case with its last ``len(names)`` arguments passed by keyword, under ``names``."""
        cut = len(self.args) - len(names)
        return replace(self, args=self.args[:cut], kwargs={**dict(zip(names, self.args[cut:], strict=True)),
                                                           **self.kwargs})


def _called(func: Callable[..., Any], case: Case, call: str) -> Any:
    """``func`` on the case's arguments; an error the case names becomes an AnswerError naming it."""
    try:
        return func(*case.args, **case.kwargs)
    except Exception as exc:
        kinds = " ".join(kind.__name__ for kind in type(exc).__mro__)  # a ValueError subclass is a ValueError
        label = next((label for piece, label in case.errors.items() if piece in f"{kinds}: {exc}"), None)
        if label is None:
            raise
        raise AnswerError(f"{call} raised {type(exc).__name__}: {exc}\n  Likely mistake: {label}") from None


def check_cases(func: Callable[..., Any], cases: Iterable[Case]) -> None:
    """Check ``func`` on every case, in order; the first wrong answer raises AnswerError naming its mistake.

    An integer answer is checked exactly (:func:`check_int`), a ``float`` one to :data:`REAL_RTOL`
    (:func:`check_real`), with the case's mistakes only (no generic guesses: a named mistake
    must be right or absent).
    """
    __tracebackhide__ = True
    name = getattr(func, "__name__", "function")
    for case in cases:
        call = case.call or describe_call(name, *case.args, **case.kwargs) + (f"  # {case.note}" if case.note else "")
        got = _called(func, case, call)
        mistakes = named_together(case.mistakes)
        if isinstance(case.expected, numbers.Integral):
            check_int(got, int(case.expected), call=call, mistakes=mistakes, generic=False)
        else:
            check_real(got, float(case.expected), call=call, mistakes=mistakes, generic=False)


# --------------------------------------------------------------------------------------------
# Tensors (Lab 01): relative error norms, shape messages, naming a bug from its known output
# --------------------------------------------------------------------------------------------

def _as_float64_array(value: Any, what: str) -> np.ndarray:
    """``value`` (torch tensor or NumPy array) as a float64 NumPy array, else AnswerError."""
    if value is None:
        raise AnswerError(f"{what} returned None: did you forget the `return` statement?")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if getattr(value, "is_complex", lambda: False)():
            raise AnswerError(f"{what} returned a complex tensor; a real one was expected")
        return value.double().numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float64)
    raise AnswerError(f"{what} returned a {_type_name(value)}; a tensor was expected")


def rel_error(got: Any, expected: Any) -> float:
    """Relative error norm ``||got - expected||_2 / ||expected||_2`` (over all elements).

    Unlike an elementwise ``atol``, it does not depend on the scale of the values,
    and one outlier cannot hide: a single wrong row of 64 shows up as ~1/8.
    Returns ``inf`` for mismatched shapes or non-finite values.
    """
    g = _as_float64_array(got, "got")
    e = _as_float64_array(expected, "expected")
    if g.shape != e.shape or not np.all(np.isfinite(g)):
        return math.inf
    denom = float(np.linalg.norm(e))
    diff = float(np.linalg.norm(g - e))
    return diff / denom if denom > 0 else diff


def _shape_hint(got: tuple[int, ...], expected: tuple[int, ...],
                shape_mistakes: Mapping[tuple[int, ...], str] | None) -> str | None:
    for shape, label in (shape_mistakes or {}).items():
        if tuple(shape) == got:
            return label
    if sorted(got) == sorted(expected):
        return "same sizes in a different order: axes transposed or permuted?"
    if len(got) != len(expected):
        return f"{len(got)} axes instead of {len(expected)}: a squeeze/unsqueeze or reshape missing?"
    return None


#: The relative error norm Lab 01's tensors are graded with: correct fp32 code on any machine is
#: far below it, every known mistake far above it (measured in docs/calibration_lab01.md, made by
#: ``make calibrate``; the calibration uses this constant). The one place this number is set.
TENSOR_RTOL: float = 1e-4


def check_tensor(got: Any, expected: Any, *, call: str, rtol: float = TENSOR_RTOL,
                 known: Mapping[str, Any] | None = None,
                 shape_mistakes: Mapping[tuple[int, ...], str] | None = None,
                 dtype: Any = None, axes: tuple[str, ...] | None = None) -> None:
    """Check a tensor answer by its relative error norm; name the likely mistake on failure.

    ``rtol`` bounds :func:`rel_error` (the calibrated :data:`TENSOR_RTOL` unless a test says
    otherwise). ``known`` maps a mistake's description to
    the output that mistake produces on the same inputs (computed on the reference
    device); an answer within ``rtol`` of one of them is named. ``shape_mistakes``
    maps a wrong shape to its likely cause. ``dtype`` (a torch dtype), when given,
    must match the answer's dtype. ``axes`` names the axes for the
    "largest difference at ..." line.
    """
    g = _as_float64_array(got, call)
    e = _as_float64_array(expected, "expected")
    if g.shape != e.shape:
        msg = f"{call} returned shape {tuple(g.shape)}, expected {tuple(e.shape)}."
        hint = _shape_hint(tuple(g.shape), tuple(e.shape), shape_mistakes)
        if hint:
            msg += f"\n  Likely mistake: {hint}"
        raise AnswerError(msg)
    if dtype is not None and getattr(got, "dtype", dtype) != dtype:
        raise AnswerError(f"{call} returned dtype {got.dtype}, expected {dtype}: compute in the "
                          f"input's dtype (or cast the result back to it)")
    if not np.all(np.isfinite(g)):
        n_bad = int(np.sum(~np.isfinite(g)))
        raise AnswerError(f"{call} returned {n_bad} NaN/inf values out of {g.size}.\n  Likely "
                          f"mistake: a query row with every key masked (softmax of all -inf is "
                          f"NaN), or -inf multiplied by 0")
    err = rel_error(g, e)
    if err <= rtol:
        return
    msg = (f"{call} is wrong: relative error ||got - expected|| / ||expected|| = {err:.3g} "
           f"(tolerance {rtol:.0e}).")
    worst = np.unravel_index(int(np.argmax(np.abs(g - e))), g.shape)
    if axes and len(axes) == g.ndim:
        where = ", ".join(f"{a}={i}" for a, i in zip(axes, worst, strict=True))
    else:
        where = "index " + str(tuple(int(i) for i in worst))
    msg += f"\n  Largest difference at {where}: got {g[worst]:.6g}, expected {e[worst]:.6g}."
    for label, wrong in (known or {}).items():
        w = _as_float64_array(wrong, "known mistake")
        if w.shape == g.shape and rel_error(e, w) > rtol and rel_error(g, w) <= rtol:
            msg += f"\n  Likely mistake: {label}"
            break
    raise AnswerError(msg)


def check_tokens(got: Any, expected: Any, *, call: str) -> None:
    """Check integer token ids exactly; on failure say where the first difference is."""
    if got is None:
        raise AnswerError(f"{call} returned None: did you forget the `return` statement?")
    if hasattr(got, "detach"):
        got = got.detach().cpu().numpy()
    if not isinstance(got, np.ndarray):
        raise AnswerError(f"{call} returned a {_type_name(got)}; a tensor of token ids was expected")
    e = np.asarray(expected)
    if got.dtype.kind not in "iu":
        raise AnswerError(f"{call} returned dtype {got.dtype}; token ids are integers (torch.long)")
    if got.shape != e.shape:
        raise AnswerError(f"{call} returned shape {tuple(got.shape)}, expected {tuple(e.shape)} "
                          f"(batch, prompt length + max_new_tokens)")
    diff = np.argwhere(got != e)
    if diff.size:
        b, t = (int(x) for x in diff[0])
        raise AnswerError(f"{call}: token {t} of sequence {b} is {int(got[b, t])}, expected "
                          f"{int(e[b, t])} ({len(diff)} of {e.size} tokens differ)")
