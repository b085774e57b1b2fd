"""Explicit random keys: no global seed, the same numbers on every machine.

A key is a ``uint64`` array of shape ``(2,)``, the 128-bit key of a Philox counter-based
generator (NumPy's ``Philox`` bit generator, whose output is fixed by the key alone and
does not depend on the platform). Every sampler takes a key first and never advances
anything: calling it twice with one key gives the same numbers. Use ``split`` to get
independent keys, ``fold_in`` to derive a key from data (an epoch, a rank).

Samplers: ``normal``, ``uniform``, ``bernoulli``, ``permutation`` here; ``randint``,
``choice``, ``categorical``, ``gumbel``, ``exponential`` (in ``_sampling``) and
``truncated_normal`` (in ``_truncnorm``), with ``jax.random``'s arguments but
``uniform(key, shape, low, high, dtype)`` (DESIGN.md's order and names; JAX's ``minval``,
``maxval`` come after the dtype) and ``permutation(key, n)``.
More distributions, with ``jax.random``'s names and arguments: ``gamma``, ``loggamma``,
``beta``, ``dirichlet``, ``chisquare``, ``t`` (in ``_dist_gamma``), ``poisson``,
``geometric``, ``binomial`` (in ``_dist_discrete``), ``laplace``, ``logistic``, ``cauchy``,
``rademacher``, ``rayleigh``, ``weibull_min``, ``pareto``, ``lognormal``,
``multivariate_normal`` (in ``_distributions``).

NumPy documents that a ``Generator``'s output for one seed may change between NumPy
versions; within one NumPy version the stream is identical across machines. So are
``normal``, ``uniform``, ``randint``, ``bernoulli``, ``permutation``, ``choice``,
``categorical``, ``poisson``, ``truncated_normal`` and float32 samples; float64
samples drawn through ``log``, ``exp`` or ``tan`` (gumbel, laplace, logistic, cauchy, the
gamma family, ...) may differ in their last bit or two between machines whose NumPy runs
those functions in other SIMD code (AVX-512 or not) (and so, where that last bit decides
the rounding, about once in 1e9 draws, a float32 sample computed through them in
float64: gumbel's, the gamma family's), and ``multivariate_normal``'s
``'eigh'``/``'svd'`` and ``initializers.orthogonal`` in float64 with the BLAS build, as
JAX's samples do across backends (a probe: 1-2 ulp, 1e-10 for the factorisations).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import (
    F32,
    FLOAT_MAX,
    count_arg,
    float_dtype_arg,
    int_arg,
    shape_arg,
    shown,
)
from funcdl._dist_discrete import binomial, geometric, poisson
from funcdl._dist_gamma import beta, chisquare, dirichlet, gamma, loggamma, t
from funcdl._distributions import (
    cauchy,
    laplace,
    logistic,
    lognormal,
    multivariate_normal,
    pareto,
    rademacher,
    rayleigh,
    weibull_min,
)
from funcdl._keys import Key, _broadcasts, _gen, _reals, check_key
from funcdl._sampling import _candidates, categorical, choice, exponential, gumbel, randint
from funcdl._truncnorm import truncated_normal

__all__ = ["Key", "PRNGKey", "bernoulli", "beta", "binomial", "categorical", "cauchy", "check_key",
           "chisquare", "choice", "dirichlet", "exponential", "fold_in", "gamma", "geometric",
           "gumbel", "key", "laplace", "loggamma", "logistic", "lognormal", "multivariate_normal",
           "normal", "pareto", "permutation", "poisson", "rademacher", "randint", "rayleigh",
           "split", "t", "truncated_normal", "uniform", "weibull_min"]

_MASK64 = (1 << 64) - 1
_INT64_MIN = -(1 << 63)


def key(seed: int | np.integer[Any]) -> Key:
    """A key from an integer seed: a Python or NumPy int, or a 0-d integer array.

    A seed in ``[0, 2**128)`` is the 128-bit Philox key itself, ``[seed mod 2**64,
    seed // 2**64]``. A negative seed in ``[-2**63, 0)`` (int64's) is read as its 64-bit
    two's complement, ``seed + 2**64``, as JAX with 64-bit ints reads ``PRNGKey(-1)``:
    ``key(-1) == key(2**64 - 1)``, and ``np.int64(s)`` gives the key of its ``np.uint64``
    bits. Other ints are a ValueError; floats, bools and arrays of several entries a
    TypeError.
    """
    s = int_arg(seed, "random.key", "seed", minimum=None)
    if not _INT64_MIN <= s < 1 << 128:
        raise ValueError(f"random.key: seed must be in [-2**63, 2**128) (a negative seed is "
                         f"read as its 64-bit two's complement, seed + 2**64), got {s}")
    if s < 0:
        s += 1 << 64
    return np.array([s & _MASK64, s >> 64], dtype=np.uint64)


PRNGKey = key
"""``jax.random.PRNGKey``'s name for ``key``: the same function, for code moved from JAX."""


def split(key: Key, num: int = 2) -> tuple[Key, ...]:
    """``num`` new independent keys derived from ``key``."""
    return split_for(key, num, "random.split")


def split_for(key: Key, num: int, where: str) -> tuple[Key, ...]:
    """``split(key, num)``, its bad key or num named after ``where`` (the layer that split
    it), not random.split."""
    num = count_arg(num, where, "num", 16)  # 16 bytes a key
    bits = _gen(check_key(key, where)).integers(0, _MASK64, size=(num, 2), dtype=np.uint64,
                                                endpoint=True)
    return tuple(bits)


def fold_in(key: Key, data: int | np.integer[Any]) -> Key:
    """A new key that depends on ``key`` and the integer ``data`` in ``[0, 2**64)`` (e.g. an
    epoch number; a Python or NumPy int, or a 0-d integer array)."""
    d = int_arg(data, "random.fold_in", "data", minimum=None)
    if not 0 <= d <= _MASK64:  # not wrapped: 2**64 would be 0's stream, -1 2**64 - 1's
        raise ValueError(f"random.fold_in: data must be in [0, 2**64), got {shown(d)}")
    # Philox's counter is its other 256-bit input: placing data there gives a stream per value.
    g = _gen(check_key(key, "random.fold_in"), np.array([d, 1, 0, 0], np.uint64))
    return g.integers(0, _MASK64, size=2, dtype=np.uint64, endpoint=True)


def normal(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard normal samples of the given shape and dtype (float32 or float64)."""
    return _normal(key, shape, dtype, "random.normal")


def _normal(key: Key, shape: Any, dtype: DTypeLike, where: str) -> NDArray[Any]:
    """``normal``, its errors naming ``where`` (an initializer calls it with its own name)."""
    dt = float_dtype_arg(dtype, where)
    return _gen(check_key(key, where)).standard_normal(shape_arg(shape, where), dtype=dt)


def uniform(key: Key, shape: Any = (), low: Any = 0.0, high: Any = 1.0,
            dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Uniform samples in ``[low, high)``; ``low`` and ``high`` are numbers or arrays that
    broadcast to ``shape`` (as ``jax.random.uniform``'s ``minval``, ``maxval``). They must be
    finite, within the range of ``dtype`` (float32 or float64), and ``low <= high``."""
    return _uniform(key, shape, low, high, dtype, "random.uniform")


def _uniform(key: Key, shape: Any, low: Any, high: Any, dtype: DTypeLike,
             where: str) -> NDArray[Any]:
    """``uniform``, its errors naming ``where``: ``low + u (high - low)`` with ``u`` in
    [0, 1) and the span rounded once to ``dtype``, clamped below ``high``."""
    dt = float_dtype_arg(dtype, where)
    dims = shape_arg(shape, where)
    lo64, hi64 = _reals(low), _reals(high)
    if lo64 is None or hi64 is None:  # as bernoulli's p
        dtype_first = isinstance(low, (type, np.dtype, str))  # jax.random.uniform's order
        raise TypeError(f"{where}: low and high must be numbers or arrays of numbers, got "
                        f"{low!r} and {high!r}" + ("; the dtype comes after them, "
                        "uniform(key, shape, low, high, dtype) (JAX's is uniform(key, shape, "
                        "dtype, minval, maxval))" if dtype_first else ""))
    if not _broadcasts(dims, lo64.shape, hi64.shape):
        raise ValueError(f"{where}: low and high must broadcast to shape {dims}, got "
                         f"{low!r} and {high!r}")
    big = _largest_bound(lo64, hi64, low, high, dt, where)
    u = _gen(check_key(key, where)).random(dims, dtype=dt)
    if not (lo64.ndim or hi64.ndim) and low == 0.0 and high == 1.0:
        return u
    lo, hi = lo64.astype(dt), hi64.astype(dt)
    # The plain formula, and its numbers, wherever the span fits dt: always when
    # |high - low| <= 2 big <= max; for float32, the float64 span says (finite here).
    if big <= FLOAT_MAX[dt] / 2 or (dt == F32 and np.all(hi64 - lo64 <= FLOAT_MAX[dt])):
        out = np.asarray(u * (hi64 - lo64).astype(dt) + lo)  # the span rounded once; 0-d too
    else:
        out = _wide(u, lo64, hi64, dt)
        np.maximum(out, lo, out=out)
    # low + u (high - low) can round up to high itself; keep the interval half-open.
    np.minimum(out, np.nextafter(hi, lo), out=out)
    return out


def _largest_bound(lo64: NDArray[np.float64], hi64: NDArray[np.float64], low: Any,
                   high: Any, dt: np.dtype[Any], where: str) -> float:
    """``max |bound|``, after checking that the bounds are finite, fit ``dt`` and are
    ordered (a ValueError naming ``where`` otherwise)."""
    if lo64.ndim == 0 and hi64.ndim == 0:  # the common call: Python floats, no reductions
        a, b = abs(float(lo64)), abs(float(hi64))
        fits, ordered = a <= FLOAT_MAX[dt] and b <= FLOAT_MAX[dt], float(lo64) <= float(hi64)
    else:
        a, b = float(np.abs(lo64).max(initial=0.0)), float(np.abs(hi64).max(initial=0.0))
        fits, ordered = a <= FLOAT_MAX[dt] and b <= FLOAT_MAX[dt], bool((lo64 <= hi64).all())
    if not fits:  # NaN fails too
        got = f"got low={low!r}, high={high!r}"
        if np.isnan(lo64).any() or np.isnan(hi64).any():
            raise ValueError(f"{where}: low and high must not be NaN, {got}")
        if not (np.isfinite(lo64).all() and np.isfinite(hi64).all()):
            raise ValueError(f"{where}: low and high must be finite, {got}")
        top = FLOAT_MAX[dt]
        raise ValueError(f"{where}: low and high must lie within {dt}'s range "
                         f"[-{top:.8g}, {top:.8g}] for {dt} samples, {got}; pass "
                         f"dtype=np.float64 for wider bounds")
    if not ordered:
        raise ValueError(f"{where}: needs low <= high, got low={low}, high={high}")
    return max(a, b)


def _wide(u: NDArray[Any], lo64: NDArray[np.float64], hi64: NDArray[np.float64],
          dt: np.dtype[Any]) -> NDArray[Any]:
    """``low + u (high - low)`` for bounds whose span may overflow ``dt``: in float64 for
    float32 samples (bounds within float32's range have a finite float64 span), and as
    ``(low - u low) + u high`` for float64, whose two terms have opposite signs whenever
    the span overflows, so that the sum cannot."""
    if dt == F32:
        return np.asarray((lo64 + u.astype(np.float64) * (hi64 - lo64)).astype(dt))
    with np.errstate(over="ignore"):  # same-sign bounds at the max may round past it: clamped
        return np.asarray(lo64 - u * lo64 + u * hi64)


def bernoulli(key: Key, p: Any = 0.5, shape: Any = None) -> NDArray[np.bool_]:
    """Booleans, each True with probability ``p`` (a number, or an array broadcasting to
    ``shape``); ``shape`` defaults to ``p``'s, as in ``jax.random.bernoulli``. A 0-d
    result is a 0-d array, as ``normal``'s and ``uniform``'s are."""
    prob = _reals(p)
    if prob is None:  # None, a bool, a string: not a probability
        raise TypeError(f"random.bernoulli: p must be a number or an array of numbers, got "
                        f"{p!r}")
    if not np.all((prob >= 0.0) & (prob <= 1.0)):
        raise ValueError(f"random.bernoulli: p must be in [0, 1], got {p}")
    dims = prob.shape if shape is None else shape_arg(shape, "random.bernoulli")
    if not _broadcasts(dims, prob.shape):
        raise ValueError(f"random.bernoulli: p of shape {prob.shape} does not broadcast to "
                         f"shape {dims}")
    u = _gen(check_key(key, "random.bernoulli")).random(dims, dtype=np.float64)
    return np.asarray(u < prob)  # u < p has probability p; a 0-d comparison gives np.bool_


def permutation(key: Key, n: Any, axis: int = 0) -> NDArray[Any]:
    """A random permutation of ``range(n)`` (int64) for an int ``n``. For an array ``n`` of
    rank >= 1, a copy of it shuffled along ``axis``: ``np.take(n, permutation(key,
    n.shape[axis]), axis)``, ``n[permutation(key, len(n))]`` for axis 0, as
    ``jax.random.permutation(key, x, axis)`` (whose ``independent`` option is not offered).
    A list is refused: pass ``np.asarray`` of it."""
    size, ax = _candidates(n, axis, "random.permutation", "n", "to shuffle")
    order = _permutation(key, size)
    return order if ax is None else np.take(n, order, axis=ax)


def _permutation(key: Key, n: int) -> NDArray[np.int64]:
    return _gen(check_key(key, "random.permutation")).permutation(n).astype(np.int64, copy=False)
