"""funcdl.random's ``truncated_normal``, by exact rejection sampling (re-exported by
``funcdl.random``).

The density is proportional to ``exp(-x²/2)`` on ``[lower, upper]``. An interval in the
left half is mirrored into the right one, after which each entry uses the proposal that
accepts at least ~45% of draws for its interval (C. P. Robert, "Simulation of truncated
normal variables", Statistics and Computing 5 (1995), 121-125):

* it straddles 0 and is at least sqrt(2 pi) wide: a standard normal, kept inside;
* it is narrow, (upper - c)(upper + c) <= 2 with c = max(lower, 0) the density's peak:
  a uniform on the interval, kept with probability ``exp((c² - x²)/2)``;
* otherwise (lower >= 0, wide: a right tail): ``lower + E / alpha`` with E exponential and
  ``alpha = (lower + sqrt(lower² + 4)) / 2``, kept with probability ``exp(-(x - alpha)²/2)``
  and when ``x <= upper``.

Rejected entries are redrawn in rounds (a loop over rounds, each vectorised over what is
left: a few dozen rounds for millions of samples). Being exact, no inverse CDF is needed and
far tails (lower = 8, 40 or 1e10) are as accurate as the centre: no NaN, no sample outside
the bounds, no erf of a tiny probability.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import FLOAT_MAX, float_dtype_arg
from funcdl._keys import Key, _gen, _reals, check_key, dims_for

__all__ = ["truncated_normal"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_NORMAL, _UNIFORM, _EXPONENTIAL = 0, 1, 2


def truncated_normal(key: Key, lower: Any, upper: Any, shape: Any = None,
                     dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard normal samples conditioned on ``[lower, upper]`` (numbers or arrays that
    broadcast to ``shape``; ``shape`` defaults to their broadcast shape), float32 or float64,
    as ``jax.random.truncated_normal``. Bounds may be infinite (``-inf, inf`` is a plain
    normal) and equal (every sample is that value); NaN, ``lower > upper``, ``lower = +inf``
    or ``upper = -inf`` are a ValueError. Samples lie in the closed ``[lower, upper]``
    rounded to ``dtype`` (JAX's lie strictly inside)."""
    return _truncated_normal(key, lower, upper, shape, dtype, "random.truncated_normal")


def _truncated_normal(key: Key, lower: Any, upper: Any, shape: Any, dtype: DTypeLike,
                      where: str) -> NDArray[Any]:
    """``truncated_normal``, its errors naming ``where``."""
    dt = float_dtype_arg(dtype, where)
    a, b = _reals(lower), _reals(upper)
    if a is None or b is None:
        raise TypeError(f"{where}: lower and upper must be numbers or arrays of numbers, got "
                        f"{lower!r} and {upper!r}")
    dims = dims_for(shape, where, lower=a.shape, upper=b.shape)
    _check_bounds(a, b, lower, upper, dt, where)
    g = _gen(check_key(key, where))
    n = math.prod(dims)
    if a.size == b.size == 1:
        a, b = a.reshape(1), b.reshape(1)
    else:
        a, b = np.broadcast_to(a, dims).ravel(), np.broadcast_to(b, dims).ravel()
    x = _sample(g, a, b, n).reshape(dims).astype(dt, copy=False)
    # float64 samples inside [a, b] round into [a, b] rounded: the clip is for the record
    lo, hi = a.astype(dt), b.astype(dt)
    return np.asarray(np.clip(x, *((lo[0], hi[0]) if a.size == 1 else
                                  (lo.reshape(dims), hi.reshape(dims)))))


def _check_bounds(a: NDArray[np.float64], b: NDArray[np.float64], lower: Any, upper: Any,
                  dt: np.dtype[Any], where: str) -> None:
    got = f"got lower={lower!r}, upper={upper!r}"
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError(f"{where}: lower and upper must not be NaN, {got}")
    if (a == np.inf).any() or (b == -np.inf).any():
        raise ValueError(f"{where}: needs lower < inf and upper > -inf (no normal sample "
                         f"lies beyond infinity), {got}")
    if not (a <= b).all():
        raise ValueError(f"{where}: needs lower <= upper, {got}")
    top = FLOAT_MAX[dt]
    with np.errstate(invalid="ignore"):  # inf * 0 never reached: infinite bounds are fine
        beyond = (np.isfinite(a) & (np.abs(a) > top)).any() or (
            np.isfinite(b) & (np.abs(b) > top)).any()
    if beyond:
        raise ValueError(f"{where}: finite bounds must lie within {dt}'s range "
                         f"[-{top:.8g}, {top:.8g}], {got}; pass dtype=np.float64")


def _sample(g: np.random.Generator, a: NDArray[np.float64], b: NDArray[np.float64],
            n: int) -> NDArray[np.float64]:
    """``n`` truncated normals in float64, for the flat bounds ``a <= b`` of size ``n``,
    or of size 1 shared by all."""
    flip = (b <= 0) & (a < 0)  # mirrored into lo >= 0 (or an interval straddling 0)
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    peak = np.maximum(lo, 0.0)
    # inf - inf (a NaN, unread) only where lo = -inf, which straddles 0 and uses neither
    # the narrow test nor alpha; hi + peak may overflow to inf, which is not narrow.
    with np.errstate(invalid="ignore", over="ignore"):
        wide = hi - lo >= _SQRT_2PI
        narrow = (hi - peak) * (hi + peak) <= 2.0
        # alpha = (lo + sqrt(lo² + 4)) / 2, halved first: lo near the max cannot overflow
        alpha = 0.5 * lo + 0.5 * np.hypot(lo, 2.0)
    method = np.where(lo < 0, np.where(wide, _NORMAL, _UNIFORM),
                      np.where(narrow, _UNIFORM, _EXPONENTIAL))
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        if a.size == 1:  # shared bounds (an initializer's): one proposal, no gathering
            L, H = lo, hi
            x, log_keep = _propose(g, int(method[0]), lo, hi, peak, alpha, todo.size)
        else:
            m, L, H = method[todo], lo[todo], hi[todo]
            x, log_keep = np.empty(todo.size), np.empty(todo.size)
            for code in (_NORMAL, _UNIFORM, _EXPONENTIAL):
                i = np.flatnonzero(m == code)
                j = todo[i]
                x[i], log_keep[i] = _propose(g, code, lo[j], hi[j], peak[j], alpha[j], i.size)
        keep = (x >= L) & (x <= H) & (g.random(todo.size) < np.exp(log_keep))
        out[todo[keep]] = x[keep]
        todo = todo[~keep]
    np.negative(out, out=out, where=flip)
    return out


def _propose(g: np.random.Generator, code: int, lo: NDArray[np.float64],
             hi: NDArray[np.float64], peak: NDArray[np.float64], alpha: NDArray[np.float64],
             size: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``size`` proposals of one method and the log of their keep probabilities; the
    bounds are of that size, or of size 1."""
    if code == _NORMAL:
        return g.standard_normal(size), np.zeros(size)
    if code == _UNIFORM:
        x = lo + g.random(size) * (hi - lo)
        return x, -0.5 * (x - peak) * (x + peak)
    x = lo + g.standard_exponential(size) / alpha
    return x, -0.5 * np.square(x - alpha)
