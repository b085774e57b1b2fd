"""funcdl.random's discrete and extreme-value samplers: ``randint``, ``choice``,
``categorical``, ``gumbel``, ``exponential`` (re-exported by ``funcdl.random``, whose keys,
checks and conventions they share: same key, same numbers; errors name ``random.<name>``).

Their arguments follow ``jax.random``'s; the differences are in each docstring.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import (
    bool_arg,
    count_arg,
    float_dtype_arg,
    is_int,
    number,
    shape_arg,
)
from funcdl._keys import Key, _axis, _broadcasts, _gen, _reals, check_key, int_dtype

__all__ = ["categorical", "choice", "exponential", "gumbel", "randint"]

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def gumbel(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard Gumbel samples, ``-log(E)`` with ``E`` standard exponential (mean Euler's
    gamma 0.5772, variance pi²/6); float32 or float64, both from float64 ``E``."""
    return _gumbel(key, shape, dtype, "random.gumbel")


def _gumbel(key: Key, shape: Any, dtype: DTypeLike, where: str) -> NDArray[Any]:
    dt = float_dtype_arg(dtype, where)
    # float64 E for float32 samples too: NumPy's float32 exponential is a multiple of ~1e-7
    # near 0, and exactly 0 once in 8e6 draws, which gave G = -log(tiny) = 87.3, where
    # P(G > 87) is 1e-38 (and nothing between 16 and 87). In float64, E = 0 has
    # probability ~2**-53, kept from +inf and a divide warning by the same clamp.
    e = _gen(check_key(key, where)).standard_exponential(shape_arg(shape, where))
    np.maximum(e, np.finfo(np.float64).tiny, out=e)
    np.log(e, out=e)
    np.negative(e, out=e)
    return e if dt == np.float64 else e.astype(dt)


def exponential(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard exponential samples (rate 1: mean 1, variance 1), float32 or float64."""
    where = "random.exponential"
    dt = float_dtype_arg(dtype, where)
    return _gen(check_key(key, where)).standard_exponential(shape_arg(shape, where), dtype=dt)


# ------------------------------------------------------------------------------ randint

def randint(key: Key, shape: Any, minval: Any, maxval: Any,
            dtype: DTypeLike = np.int64) -> NDArray[Any]:
    """Uniform integers in ``[minval, maxval)`` of an integer ``dtype`` (int64 by default;
    None is int64), exact (unbiased) over the whole range of the dtype: ``minval`` and
    ``maxval`` are ints or integer arrays broadcasting to ``shape``.

    As ``jax.random.randint``, bounds beyond the dtype are clipped to it, a ``maxval`` past
    its largest value making that value possible: ``randint(k, s, -2**63, 2**63)`` covers
    all of int64. Unlike JAX, which returns ``minval`` for an empty range, ``minval >=
    maxval`` (after clipping) is a ValueError, and float bounds are a TypeError."""
    where = "random.randint"
    # torch's randint(low, high, size) order: said where the bounds then fail
    swapped = ((f"; the order is randint(key, shape, minval, maxval), JAX's: for torch's "
                f"randint(low, high, size) pass randint(key, {maxval!r}, {shape!r}, "
                f"{minval!r})") if isinstance(maxval, tuple) and not isinstance(shape, tuple)
               else "")
    dt = int_dtype(dtype, where, examples="np.int64 or np.uint8")
    dims = shape_arg(shape, where, dt.itemsize)
    info = np.iinfo(dt)
    lo, lo_above, _ = _int_bound(minval, "minval", info, dt, where)
    top, hi_above, hi_below = _int_bound(maxval, "maxval", info, dt, where)
    if not _broadcasts(dims, lo.shape, top.shape):
        raise ValueError(f"{where}: minval and maxval must broadcast to shape {dims}, got "
                         f"shapes {lo.shape} and {top.shape}{swapped}")
    if lo_above.any() or hi_below.any() or (top == info.min).any():
        raise ValueError(f"{where}: [minval, maxval) holds no {dt} value ({dt} spans "
                         f"[{info.min}, {info.max}]); pass bounds within it or a wider dtype")
    # The largest value drawn: maxval - 1, or the dtype's max for a maxval beyond it (safe:
    # top > info.min here, so top - 1 cannot wrap).
    hi = np.where(hi_above, dt.type(info.max), top - dt.type(1)).astype(dt, copy=False)
    if not (lo <= hi).all():
        raise ValueError(f"{where}: needs minval < maxval, got minval={minval!r}, "
                         f"maxval={maxval!r}{swapped}")
    g = _gen(check_key(key, where))
    return np.asarray(g.integers(lo, hi, size=dims, dtype=dt, endpoint=True))


def _int_bound(value: Any, what: str, info: np.iinfo[Any], dt: np.dtype[Any],
               where: str) -> tuple[NDArray[Any], NDArray[np.bool_], NDArray[np.bool_]]:
    """``value`` clipped to ``dt``'s range, as ``dt``, and where it lay above and below that
    range; compared without a float cast, which would round 2**63 - 1 to 2**63."""
    v = number(value)
    if is_int(v):
        i = int(v)
        return (np.asarray(min(max(i, info.min), info.max), dt), np.asarray(i > info.max),
                np.asarray(i < info.min))
    try:
        arr = None if isinstance(v, (bool, np.bool_)) else np.asarray(v)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.dtype.kind not in "iu":
        got = (f"an array of dtype {arr.dtype}" if isinstance(arr, np.ndarray) and
               isinstance(v, np.ndarray) else f"{v!r} ({type(v).__name__})")
        raise TypeError(f"{where}: {what} must be an int or an array of ints, got {got}; "
                        f"for a float bound pass int(bound), or use random.uniform")
    if arr.dtype.kind == "u":
        wide = arr.astype(np.uint64, copy=False)
        above = wide > np.uint64(info.max)
        return (np.minimum(wide, np.uint64(info.max)).astype(dt), above,
                np.zeros(arr.shape, bool))
    wide = arr.astype(np.int64, copy=False)
    low, high = max(info.min, _I64_MIN), min(info.max, _I64_MAX)
    return np.clip(wide, low, high).astype(dt), wide > high, wide < low


# ------------------------------------------------------------------------------- choice

def choice(key: Key, a: Any, shape: Any = (), replace: bool = True, p: Any = None,
           axis: int = 0) -> NDArray[Any]:
    """Samples of ``range(a)`` for an int ``a`` (int64, of ``shape``), or entries of the
    array ``a`` along ``axis`` (shape ``a.shape[:axis] + shape + a.shape[axis+1:]``), as
    ``jax.random.choice``. ``p``: probabilities of the ``n`` candidates (1-D, >= 0, summing
    to 1 within sqrt of its dtype's eps, as NumPy's; JAX renormalises silently); uniform
    when None. ``replace=False`` needs ``prod(shape) <= n`` (with ``p``, that many entries
    of ``p`` > 0) and draws in order, each pick removing its candidate (with ``p``: Gumbel
    top-k, i.e. successive draws proportional to ``p``)."""
    where = "random.choice"
    replace = bool_arg(replace, where, "replace")
    dims = shape_arg(shape, where)
    n, ax = _candidates(a, axis, where, "a", "to sample from")
    k = math.prod(dims)
    prob = None if p is None else _probabilities(p, n, where)
    if k and n == 0:
        raise ValueError(f"{where}: cannot take {k} samples from an empty a (n = 0)")
    if not replace and k > n:
        raise ValueError(f"{where}: replace=False takes each of the n = {n} candidates at "
                         f"most once, so needs prod(shape) <= {n}, got shape {dims}; pass "
                         f"replace=True or a smaller shape")
    g = _gen(check_key(key, where))
    if k == 0:  # NumPy refuses to draw from an empty range, even nothing
        idx: Any = np.zeros(0, np.int64)
    elif prob is None:
        idx = (g.integers(0, n, size=k) if replace else g.choice(n, size=k, replace=False))
    elif replace:
        cdf = np.cumsum(prob)
        last = int(np.flatnonzero(prob)[-1])  # u * total may round to total: never past it
        idx = np.minimum(np.searchsorted(cdf, g.random(k) * cdf[-1], side="right"), last)
    else:
        positive = int(np.count_nonzero(prob))
        if k > positive:
            raise ValueError(f"{where}: replace=False needs prod(shape) = {k} candidates "
                             f"of p > 0, but p has {positive}")
        # Gumbel top-k: log p + G ranks candidates as successive draws proportional to p.
        score = np.full(n, -np.inf)
        np.log(prob, out=score, where=prob > 0)
        score += _gumbel(key, (n,), np.float64, where)
        top = np.argpartition(-score, k - 1)[:k]
        idx = top[np.argsort(-score[top], kind="stable")]
    picks: NDArray[np.int64] = np.asarray(idx, np.int64).reshape(dims)
    return picks if ax is None else np.asarray(np.take(a, picks, axis=ax))


def _candidates(a: Any, axis: Any, where: str, what: str,
                purpose: str) -> tuple[int, int | None]:
    """``choice``'s and ``permutation``'s first argument ``a`` (named ``what``): an array of
    rank >= 1 gives its length along ``axis`` and that axis (>= 0); an int, or a 0-d
    integer array as in JAX, gives ``range(a)``: ``a`` and None (``axis`` must then be 0 or
    -1). ``purpose`` says what an array is for (``to shuffle``)."""
    if isinstance(a, np.ndarray) and a.ndim > 0:
        ax = _axis(axis, a.ndim, where)
        return int(a.shape[ax]), ax
    size = number(a)
    if not is_int(size):
        got = (f"a 0-d array of dtype {size.dtype}" if isinstance(size, np.ndarray)
               else f"{size!r} ({type(size).__name__})")
        hint = f"; pass np.asarray(it) {purpose} it" if isinstance(size, (list, tuple)) else ""
        raise TypeError(f"{where}: {what} must be an int or an array of rank >= 1 {purpose}, "
                        f"got {got}{hint}")
    _axis(axis, 1, where)  # range(a) has one axis
    return count_arg(size, where, what, 8), None


def _probabilities(p: Any, n: int, where: str) -> NDArray[np.float64]:
    """``p`` as float64 probabilities over ``n`` candidates, normalised, after checks."""
    prob = _reals(p)
    if prob is None:
        raise TypeError(f"{where}: p must be an array of numbers, got {p!r}")
    if prob.shape != (n,):
        raise ValueError(f"{where}: p must be 1-D with one probability per candidate, "
                         f"shape ({n},), got shape {prob.shape}")
    if not (np.isfinite(prob).all() and (prob >= 0).all()):
        raise ValueError(f"{where}: p must be finite and >= 0, got {p}")
    kind = np.asarray(p).dtype
    tol = math.sqrt(np.finfo(kind if kind.kind == "f" else np.float64).eps)
    total = float(prob.sum())
    if not abs(total - 1.0) <= tol:
        raise ValueError(f"{where}: p must sum to 1 (within {tol:.2g}), got sum {total!r}; "
                         f"pass p / p.sum()")
    return prob / total


# -------------------------------------------------------------------------- categorical

def categorical(key: Key, logits: Any, axis: int = -1, shape: Any = None,
                replace: bool = True) -> NDArray[np.int64]:
    """Class indices (int64) drawn from ``softmax(logits)`` along ``axis``, by Gumbel-max:
    ``argmax(logits + G)``. A -inf logit is a class of probability 0, never drawn; NaN or
    +inf is a ValueError, as is a slice of all -inf. ``shape`` (default: ``logits.shape``
    without ``axis``) may add leading axes, for several draws per row, as in
    ``jax.random.categorical`` (whose result is int32). ``replace=False``, as JAX's: the
    ``k`` draws of a row (``k`` the product of the leading axes) are distinct classes, the
    top ``k`` of one ``logits + G`` (Gumbel-top-k), in the order drawn; ``shape`` must then
    end with the batch shape itself, and ``k`` not exceed a row's classes of probability
    above 0 (a ValueError)."""
    where = "random.categorical"
    replace = bool_arg(replace, where, "replace")
    x = _reals(logits)
    if x is None or x.ndim == 0:
        got = f"{logits!r}" if x is None else "a 0-d value"
        raise TypeError(f"{where}: logits must be an array of numbers of rank >= 1 (classes "
                        f"along axis), got {got}")
    ax = _axis(axis, x.ndim, where)
    batch = x.shape[:ax] + x.shape[ax + 1:]
    dims = batch if shape is None else shape_arg(shape, where)
    if shape is not None and not _broadcasts(dims, batch):
        raise ValueError(f"{where}: shape {dims} must end with the batch shape {batch} "
                         f"(logits.shape {x.shape} without axis {ax}) or broadcast from it")
    if x.shape[ax] == 0:
        raise ValueError(f"{where}: logits have no classes along axis {ax}")
    if not (x < np.inf).all():
        raise ValueError(f"{where}: logits must not be NaN or +inf (-inf is a class of "
                         f"probability 0)")
    if ax != x.ndim - 1:  # the classes last; moveaxis costs more than a small draw
        x = np.moveaxis(x, ax, -1)
    if not (x > -np.inf).any(axis=-1).all():
        raise ValueError(f"{where}: a slice of logits is -inf for every class, giving no "
                         f"class to draw")
    if not replace:
        return _without_replacement(key, x, dims, batch, where)
    score = _gumbel(key, (*dims, x.shape[-1]), np.float64, where)
    score += x  # broadcasts the logits over shape's extra leading axes
    return np.asarray(np.argmax(score, axis=-1), np.int64)


def _without_replacement(key: Key, x: NDArray[Any], dims: tuple[int, ...],
                         batch: tuple[int, ...], where: str) -> NDArray[np.int64]:
    """``categorical``'s ``replace=False``: the top ``k`` classes of each row of ``x +
    G`` (classes last), the best first, as ``(k, *batch)`` reshaped to ``dims``."""
    lead = len(dims) - len(batch)
    if lead < 0 or dims[lead:] != batch:
        raise ValueError(f"{where}: with replace=False, shape {dims} must end with the batch "
                         f"shape {batch} itself (the draws of each row lead)")
    k = math.prod(dims[:lead])
    if k > int((x > -np.inf).sum(axis=-1).min(initial=x.shape[-1])):
        raise ValueError(f"{where}: {k} draws without replacement from rows of "
                         f"{x.shape[-1]} classes, some of them -inf (probability 0): a row "
                         f"has fewer classes to draw; draw at most as many as it has")
    score = _gumbel(key, x.shape, np.float64, where)
    score += x
    top = np.argsort(-score, axis=-1, kind="stable")[..., :k]  # (*batch, k)
    return np.asarray(np.moveaxis(top, -1, 0).reshape(dims), np.int64)
