"""The reductions every loss ends with, ``'mean'``, ``'sum'`` and ``'none'``, and their
pullbacks: the cotangent checked, the mean's 1/count applied, overflow kept quiet."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl._args import array_arg, choice_arg
from funcdl.losses._base import Array, Pullback, add_reduce


def _mean(per: Array, n: float) -> float:
    """``Σ per / n``, under an errstate ignoring overflow and inf - inf. A sum that is not
    finite is taken again in float64 on the terms scaled by 2^-k (exact), k enough that no
    partial sum of them overflows: float32 terms whose mean fits and sum does not, or partial
    sums that overflowed to +inf and -inf (NaN) where the terms' sum fits. A value past the
    terms' dtype's range is inf, as PyTorch's in that dtype."""
    value = float(add_reduce(per, axis=None)) / n
    if not math.isfinite(value) and per.size > 1:
        k = math.ceil(math.log2(per.size))
        scaled = np.ldexp(per, -k, dtype=np.float64)
        value = float(add_reduce(scaled, axis=None)) / n * 2.0 ** k
        if per.dtype.kind == "f" and abs(value) > float(np.finfo(per.dtype).max):
            value = math.copysign(math.inf, value)
    return value


def reduce_loss(name: str, per: Array, reduction: str, count: float,
                grad: Callable[[Any], Array], quiet: bool = False) -> tuple[Any, Pullback]:
    """Reduce per-element losses; ``grad(c)`` maps a per-element cotangent ``c`` (scalar or
    array) to dpred. The mean's pullback scales by 1/count. The pullback is named for the
    loss, so that Python's own errors (``pullback(g, 2.0)``) name it too. ``quiet``: called
    under the loss's own ``np.errstate(over='ignore', invalid='ignore')``, which the sum
    then needs no other."""
    choice_arg(reduction, name, "reduction", ("mean", "sum", "none"))
    if reduction in ("mean", "sum"):
        if reduction == "mean" and count == 0:  # NumPy and PyTorch: NaN and a warning
            raise ValueError(f"{name}: reduction='mean' over an empty batch (losses of "
                             f"shape {per.shape}) is undefined; skip empty batches, or pass "
                             f"reduction='sum'")
        n = count if reduction == "mean" else 1

        def pullback(g: Any = 1.0) -> Array:
            c = g if type(g) is float else _scalar(name, reduction, g)
            if -1.0 <= c <= 1.0:  # see below: dpred in range without an errstate
                return grad(c / n)
            with np.errstate(over="ignore"):  # a loss scale of 2**16 times a huge slope: inf
                return grad(c / n)

        pullback.__qualname__ = f"losses.{name}: pullback"

        # every loss's sum, and only its sum, ignores overflow (a float32 Σ of huge finite
        # terms, 3e38 + 3e38) and inf - inf (partial sums of 1e308-sized terms of both signs)
        if quiet:
            value = _mean(per, n)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                value = _mean(per, n)
        # a finite value means finite terms: each loss's dpred is then in range for a
        # cotangent of at most 1 (pullback quiets larger ones)
        return value, (pullback if math.isfinite(value) else _quiet(pullback))

    def pullback_each(g: Any = None) -> Array:  # reduction='none'
        c = np.ones_like(per) if g is None else array_arg(g, name, "the cotangent")
        if c.shape != per.shape:
            raise ValueError(f"{name}: pullback expected a cotangent of shape "
                             f"{per.shape} (reduction='none'), got {c.shape}")
        if c.dtype is not per.dtype:
            if c.dtype.kind not in "iuf":  # complex would lose its imaginary part
                raise TypeError(f"{name}: pullback expected a real cotangent of shape "
                                f"{per.shape} (reduction='none'), got dtype {c.dtype}")
            c = c.astype(per.dtype)
        return grad(c)

    pullback_each.__qualname__ = f"losses.{name}: pullback"
    return per, _quiet(pullback_each)


def _scalar(name: str, reduction: str, g: Any) -> float:
    """The cotangent of a reduced loss: one real number (None stands for 1, as for 'none')."""
    if g is None:
        return 1.0
    c = array_arg(g, name, "the cotangent")
    if c.ndim or c.dtype.kind not in "iuf":
        raise TypeError(f"{name}: pullback expected a scalar cotangent (reduction="
                        f"{reduction!r} gives one number), got {type(g).__name__} of shape "
                        f"{c.shape} and dtype {c.dtype}; pass reduction='none' for "
                        f"per-element cotangents")
    return float(c)


def _quiet(pullback: Pullback) -> Pullback:
    """``pullback`` under ``np.errstate(over="ignore")``: its dpred of huge values is inf."""
    def quiet(*args: Any, **kwargs: Any) -> Array:
        with np.errstate(over="ignore"):
            return pullback(*args, **kwargs)
    return quiet
