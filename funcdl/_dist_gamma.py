"""funcdl.random's gamma family: ``gamma``, ``loggamma``, ``beta``, ``dirichlet``,
``chisquare`` and ``t`` (re-exported by ``funcdl.random``; arguments as ``jax.random``'s,
checked by ``_keys``' helpers).

Every one is built on ``_gamma_parts``, Gamma(a, 1) samples ``d exp(w)`` by G. Marsaglia and
W. W. Tsang, "A simple method for generating gamma variables", ACM TOMS 26 (2000), 363-372:
for ``a >= 1``, with ``d = a - 1/3`` and ``c = 1/sqrt(9 d)``, draw ``z`` normal and ``u``
uniform, ``v = (1 + c z)³``, and keep ``d v`` when ``v > 0`` and ``log u < z²/2 + d - d v +
d log v``. With ``x = c z`` and ``z²/2 = 9 d x²/2`` that right side is ``3 d h(x)``, ``h(x)
= log1p(x) - x + x²/2 - x³/3 = -x⁴/4 + x⁵/5 - ...``, summed as that series for ``|x| <
1e-3``: written as ``z²/2 + d (...)``, terms ``z²/2`` apart cancel, each rounded by ``~|z|
sqrt(d) eps``, ~1 from a = 1e28 on. And the sample is kept as ``(d, w = log v)``, not as its
log ``log d + w``, which holds it only to the ulp of ``log d`` (1.4e-14 of it at a = 1e28,
where its spread is 1e-14): ``gamma`` is ``d exp(w)``, ``beta`` and ``t`` take ``log(dx /
dy) + wx - wy``. Before both, a = 1e28 had its mean 160 standard errors off and its
variance 16%, and at a = 1e30 every sample was the same number. At least 95% of proposals
are kept, so the loop over rounds, each vectorised over the entries still rejected, ends
after a handful. For ``a < 1`` the boost of the same paper:
``Gamma(a) = Gamma(a + 1) U^(1/a)``, taken in logs, ``log Gamma(a + 1) + log(U) / a``, so
that a tiny ``a`` (1e-3: most samples below 1e-300) keeps its log exactly where the sample
itself underflows to 0. Beta and Dirichlet normalise gammas in log space for the same reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import float_dtype_arg, shape_arg
from funcdl._keys import Float64s, Key, _gen, check_key, dims_for, param, rounded
from funcdl._special import shifted_exp

__all__ = ["beta", "chisquare", "dirichlet", "gamma", "loggamma", "t"]


# Below it log(U) / a (|log U| up to 37) may overflow float64, and two -inf log-samples
# make beta and dirichlet NaN: refused, where JAX returns -inf or NaN.
_LEAST = 1e-300


# h(x) = sum_{j >= 4} (-1)^(j+1) x^j / j: below |x| = 1e-3 the terms past x^9 are under
# 1e-16 of the first, so these six, highest power first, give h to float64 accuracy.
_H_SERIES = tuple((-1.0) ** (j + 1) / j for j in range(9, 3, -1))
_H_SMALL = 1e-3


def _h(x: Float64s, log_v3: Float64s) -> Float64s:
    """``h(x) = log1p(x) - x + x²/2 - x³/3`` for ``x > -1`` (``log_v3 = 3 log1p(x)``): the
    Marsaglia-Tsang acceptance exponent over ``3 d``. Directly for ``|x| >= 1e-3``, which
    loses ~4 |x| eps to cancellation, times ``3 d = z² / (3 x²)`` below 1e-11 for |z| < 6;
    by the series from x⁴ on below, where the direct form cancels to ~x⁴/4 (every x, for
    a past ~1e7)."""
    small = np.abs(x) < _H_SMALL
    if small.all():
        return _h_series(x)
    h: Float64s = log_v3 / 3.0 - x * (1.0 - x * (0.5 - x / 3.0))
    if small.any():
        h[small] = _h_series(x[small])
    return h


def _h_series(x: Float64s) -> Float64s:
    s = x * _H_SERIES[0]
    for coef in _H_SERIES[1:-1]:
        s += coef
        s *= x
    s += _H_SERIES[-1]
    s *= np.square(x * x)
    return s


def _gamma_parts(g: np.random.Generator, a: Float64s,
                 dims: tuple[int, ...]) -> tuple[Float64s, Float64s]:
    """Gamma(a, 1) samples of shape ``dims`` as ``(d, w)``, the sample ``d exp(w)`` (``a > 0``
    broadcasts to ``dims``; ``d``, Marsaglia and Tsang's, is of shape ``dims``, or 0-d for
    one ``a``). Kept apart because ``log d`` (up to 709) holds the sample's log only to its
    ulp, 1.4e-14 at a = 1e28, when the sample's relative spread ``1/sqrt(a)`` is 1e-14."""
    n = math.prod(dims)
    shared = a.size == 1  # one a for all: no gathering per round
    flat = a.reshape(1) if shared else np.broadcast_to(a, dims).ravel()
    boost = flat < 1.0
    d = np.where(boost, flat + 1.0, flat) - 1.0 / 3.0
    c = 1.0 / (3.0 * np.sqrt(d))  # not sqrt(9 d): 9 d overflows for a past 2e307
    w = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        dd, cc = (d, c) if shared else (d[todo], c[todo])
        z = g.standard_normal(todo.size)
        x = cc * z
        ok = x > -1.0  # v = (1 + x)³ > 0
        xs = np.where(ok, x, 0.0)
        log_v3 = 3.0 * np.log1p(xs)
        log_u = np.log1p(-g.random(todo.size))  # 1 - u is uniform in (0, 1]: no log(0)
        keep = ok & (log_u < 3.0 * dd * _h(xs, log_v3))
        w[todo[keep]] = log_v3[keep]
        todo = todo[~keep]
    if boost.any():
        i = np.arange(n) if shared else np.flatnonzero(boost)
        w[i] += np.log1p(-g.random(i.size)) / flat[0 if shared else i]
    return d.reshape(() if shared else dims), w.reshape(dims)


def _log_ratio(d1: Float64s, d2: Float64s) -> Float64s:
    """``log(d1 / d2)`` for positive ``d1``, ``d2``: from the rounded ratio (within eps) unless
    it overflows or underflows, when ``log d1 - log d2`` (within 1e-13 of a result beyond
    ±690) is as good."""
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        r = d1 / d2
        return np.where((r > 1e-300) & (r < 1e300), np.log(r), np.log(d1) - np.log(d2))


def _gamma(g: np.random.Generator, a: Float64s, dims: tuple[int, ...]) -> Float64s:
    """Gamma(a, 1) samples of shape ``dims``, ``d exp(w)`` (0 or inf beyond float64's
    range)."""
    d, w = _gamma_parts(g, a, dims)
    with np.errstate(under="ignore", over="ignore"):
        return np.asarray(d * np.exp(w))


def _log_gamma(g: np.random.Generator, a: Float64s, dims: tuple[int, ...]) -> Float64s:
    """log of Gamma(a, 1) samples of shape ``dims`` (``loggamma``'s)."""
    d, w = _gamma_parts(g, a, dims)
    return np.asarray(np.log(d) + w)


def beta_samples(g: np.random.Generator, a: Float64s, b: Float64s,
          dims: tuple[int, ...]) -> Float64s:
    """Beta(a, b) samples of shape ``dims``: ``X / (X + Y) = 1 / (1 + e^-t)`` with ``t =
    log(X / Y) = log(dx / dy) + wx - wy``, whose parts are exact where a and b are huge (the
    spread of t is ~1e-14 at a = b = 1e28) and finite where they are tiny (gammas that
    underflow: 0 or 1, not NaN)."""
    dx, wx = _gamma_parts(g, a, dims)
    dy, wy = _gamma_parts(g, b, dims)
    t = _log_ratio(dx, dy) + (wx - wy)  # |wx - wy| < 1e302: no overflow
    # Near t = 0 (a ~ b), 1/2 + tanh(t/2)/2 rounds once; exp(-log(1 + e^-t)) would round
    # e^-t to 1's ulp, 5% of t's spread at a = b = 1e30. Elsewhere, the relative accuracy
    # of that form where the sample is tiny.
    with np.errstate(under="ignore"):
        return np.asarray(np.where(np.abs(t) < 1.0, 0.5 + 0.5 * np.tanh(0.5 * t),
                                   np.exp(-np.logaddexp(0.0, -t))))


def gamma(key: Key, a: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Gamma(a, 1) samples (density ``x^(a-1) e^-x / Gamma(a)``, mean and variance ``a``);
    ``a >= 1e-300`` (smaller is a ValueError, for the whole family) a number or array,
    ``shape`` (default ``a``'s shape) holding it. A sample below ``dtype``'s smallest
    subnormal is 0, above its largest inf: use ``loggamma`` for a tiny ``a``."""
    where = "random.gamma"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    aa = param(a, "a", where, least=_LEAST)
    dims = dims_for(shape, where, a=aa.shape)
    return rounded(_gamma(g, aa, dims), dt)


def loggamma(key: Key, a: Any, shape: Any = None,
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """``log`` of Gamma(a, 1) samples (mean ``digamma(a)``, variance ``trigamma(a)``),
    finite in float64 for every ``a >= 1e-300`` (smaller is a ValueError); in float32 the
    log-samples below -3.4e38 (most, for ``a`` below ~1e-38) are -inf."""
    where = "random.loggamma"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    aa = param(a, "a", where, least=_LEAST)
    dims = dims_for(shape, where, a=aa.shape)
    return rounded(_log_gamma(g, aa, dims), dt)


def beta(key: Key, a: Any, b: Any, shape: Any = None,
         dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Beta(a, b) samples in [0, 1] (mean ``a/(a+b)``, variance ``ab/((a+b)²(a+b+1))``):
    ``X / (X + Y)`` with X ~ Gamma(a), Y ~ Gamma(b), as ``1 / (1 + Y / X)`` from ``log(X /
    Y)``, so that tiny ``a`` and ``b`` (both gammas underflowing) give 0 or 1, not NaN;
    ``a, b >= 1e-300``."""
    where = "random.beta"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    aa, bb = param(a, "a", where, least=_LEAST), param(b, "b", where, least=_LEAST)
    dims = dims_for(shape, where, a=aa.shape, b=bb.shape)
    return rounded(beta_samples(g, aa, bb, dims), dt)


def dirichlet(key: Key, alpha: Any, shape: Any = None,
              dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Dirichlet(alpha) samples of shape ``shape + (k,)``, each summing to 1 along the last
    axis (mean ``alpha / sum(alpha)``): ``alpha`` of shape ``(..., k)``, entries >= 1e-300,
    ``shape`` (default ``alpha.shape[:-1]``) holding its batch shape. Gammas normalised in
    log space (a softmax of loggammas), so tiny alphas give a vertex, not NaN."""
    where = "random.dirichlet"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    al = param(alpha, "alpha", where, least=_LEAST)
    if al.ndim < 1 or al.shape[-1] == 0:
        raise ValueError(f"{where}: alpha must have shape (..., k) with k >= 1 categories, "
                         f"got shape {al.shape}")
    dims = dims_for(shape, where, **{"alpha's batch": al.shape[:-1]})
    shape_arg((*dims, al.shape[-1]), where)  # with k included, the samples must fit an array
    d, w = _gamma_parts(g, al, (*dims, al.shape[-1]))
    # log(X_j / max_i d_i): log d itself would hold a huge alpha's gammas only to its ulp
    top = d.max(axis=-1, keepdims=True) if d.ndim else d
    with np.errstate(under="ignore"):
        _, e, total = shifted_exp(_log_ratio(d, top) + w, -1)
    return rounded(e / total, dt)


def chisquare(key: Key, df: Any, shape: Any = None,
              dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Chi-square samples ``2 Gamma(df/2)`` (mean ``df``, variance ``2 df``); ``df >=
    1e-300``."""
    where = "random.chisquare"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    k = param(df, "df", where, least=_LEAST)
    dims = dims_for(shape, where, df=k.shape)
    return rounded(2.0 * _gamma(g, k / 2.0, dims), dt)


def t(key: Key, df: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Student's t samples ``Z / sqrt(V / df)``, Z normal and V chi-square(df) (variance
    ``df / (df - 2)`` for df > 2), as ``Z exp((log(df / (2 d)) - w) / 2)`` with ``V / 2 = d
    exp(w)`` (one exp: no overflow short of the result's own); ``df >= 1e-300`` (a tiny
    df's tail beyond ``dtype``'s range is ±inf)."""
    where = "random.t"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    k = param(df, "df", where, least=_LEAST)
    dims = dims_for(shape, where, df=k.shape)
    z = g.standard_normal(dims)
    d, w = _gamma_parts(g, k / 2.0, dims)
    with np.errstate(over="ignore"):  # a tiny df has a tail beyond float's range
        return rounded(z * np.exp(0.5 * (_log_ratio(k / 2.0, d) - w)), dt)
