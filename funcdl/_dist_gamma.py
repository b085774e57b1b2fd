"""funcdl.random's gamma family: ``gamma``, ``loggamma``, ``beta``, ``dirichlet``,
``chisquare`` and ``t`` (re-exported by ``funcdl.random``; arguments as ``jax.random``'s,
checked by ``_distributions``' helpers).

Every one is built on ``_log_gamma``, log-samples of Gamma(a, 1) by G. Marsaglia and
W. W. Tsang, "A simple method for generating gamma variables", ACM TOMS 26 (2000), 363-372:
for ``a >= 1``, with ``d = a - 1/3`` and ``c = 1/sqrt(9 d)``, draw ``z`` normal and ``u``
uniform, ``v = (1 + c z)³``, and keep ``d v`` when ``v > 0`` and ``log u < z²/2 + d - d v +
d log v`` (at least 95% of proposals are kept, so the loop over rounds, each vectorised over
the entries still rejected, ends after a handful). For ``a < 1`` the boost of the same paper:
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
from funcdl._distributions import F64, dims_for, param
from funcdl._keys import Key, _gen, check_key

__all__ = ["beta", "chisquare", "dirichlet", "gamma", "loggamma", "t"]


def _log_gamma(g: np.random.Generator, a: F64, dims: tuple[int, ...]) -> F64:
    """log of Gamma(a, 1) samples of shape ``dims``; ``a > 0`` broadcasts to ``dims``."""
    n = math.prod(dims)
    shared = a.size == 1  # one a for all: no gathering per round
    flat = a.reshape(1) if shared else np.broadcast_to(a, dims).ravel()
    boost = flat < 1.0
    d = np.where(boost, flat + 1.0, flat) - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        dd, cc = (d, c) if shared else (d[todo], c[todo])
        z = g.standard_normal(todo.size)
        v = 1.0 + cc * z
        ok = v > 0.0
        log_v3 = 3.0 * np.log(np.where(ok, v, 1.0))
        log_u = np.log1p(-g.random(todo.size))  # 1 - u is uniform in (0, 1]: no log(0)
        with np.errstate(over="ignore"):  # a rejected far z only
            keep = ok & (log_u < 0.5 * z * z + dd - dd * np.exp(log_v3) + dd * log_v3)
        out[todo[keep]] = (np.log(dd) + log_v3)[keep] if shared else \
            np.log(dd[keep]) + log_v3[keep]
        todo = todo[~keep]
    if boost.any():
        i = np.arange(n) if shared else np.flatnonzero(boost)
        out[i] += np.log1p(-g.random(i.size)) / flat[0 if shared else i]
    return out.reshape(dims)


def _setup(key: Key, where: str, dtype: DTypeLike) -> tuple[np.random.Generator,
                                                             np.dtype[Any]]:
    dt = float_dtype_arg(dtype, where)
    return _gen(check_key(key, where)), dt


def gamma(key: Key, a: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Gamma(a, 1) samples (density ``x^(a-1) e^-x / Gamma(a)``, mean and variance ``a``);
    ``a > 0`` a number or array, ``shape`` (default ``a``'s shape) holding it. A sample
    below ``dtype``'s smallest subnormal is 0: use ``loggamma`` for a tiny ``a``."""
    where = "random.gamma"
    g, dt = _setup(key, where, dtype)
    aa = param(a, "a", where)
    dims = dims_for(shape, where, a=aa.shape)
    with np.errstate(under="ignore"):
        return np.asarray(np.exp(_log_gamma(g, aa, dims)).astype(dt))


def loggamma(key: Key, a: Any, shape: Any = None,
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """``log`` of Gamma(a, 1) samples (mean ``digamma(a)``, variance ``trigamma(a)``),
    finite however small ``a > 0`` is, as ``jax.random.loggamma``."""
    where = "random.loggamma"
    g, dt = _setup(key, where, dtype)
    aa = param(a, "a", where)
    dims = dims_for(shape, where, a=aa.shape)
    return np.asarray(_log_gamma(g, aa, dims).astype(dt, copy=False))


def beta(key: Key, a: Any, b: Any, shape: Any = None,
         dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Beta(a, b) samples in [0, 1] (mean ``a/(a+b)``, variance ``ab/((a+b)²(a+b+1))``):
    ``X / (X + Y)`` with X ~ Gamma(a), Y ~ Gamma(b), as ``exp(log X - logaddexp(log X,
    log Y))`` so that tiny ``a`` and ``b`` (both gammas underflowing) give 0 or 1, not NaN;
    ``a, b > 0``."""
    where = "random.beta"
    g, dt = _setup(key, where, dtype)
    aa, bb = param(a, "a", where), param(b, "b", where)
    dims = dims_for(shape, where, a=aa.shape, b=bb.shape)
    lx, ly = _log_gamma(g, aa, dims), _log_gamma(g, bb, dims)
    with np.errstate(under="ignore"):
        return np.asarray(np.exp(lx - np.logaddexp(lx, ly)).astype(dt))


def dirichlet(key: Key, alpha: Any, shape: Any = None,
              dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Dirichlet(alpha) samples of shape ``shape + (k,)``, each summing to 1 along the last
    axis (mean ``alpha / sum(alpha)``): ``alpha`` of shape ``(..., k)``, every entry > 0,
    ``shape`` (default ``alpha.shape[:-1]``) holding its batch shape. Gammas normalised in
    log space (a softmax of loggammas), so tiny alphas give a vertex, not NaN."""
    where = "random.dirichlet"
    g, dt = _setup(key, where, dtype)
    al = param(alpha, "alpha", where)
    if al.ndim < 1 or al.shape[-1] == 0:
        raise ValueError(f"{where}: alpha must have shape (..., k) with k >= 1 categories, "
                         f"got shape {al.shape}")
    dims = dims_for(shape, where, **{"alpha's batch": al.shape[:-1]})
    shape_arg((*dims, al.shape[-1]), where)  # with k included, the samples must fit an array
    lg = _log_gamma(g, al, (*dims, al.shape[-1]))
    lg -= lg.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(lg)
    e /= e.sum(axis=-1, keepdims=True)
    return np.asarray(e.astype(dt, copy=False))


def chisquare(key: Key, df: Any, shape: Any = None,
              dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Chi-square samples ``2 Gamma(df/2)`` (mean ``df``, variance ``2 df``); ``df > 0``."""
    where = "random.chisquare"
    g, dt = _setup(key, where, dtype)
    k = param(df, "df", where)
    dims = dims_for(shape, where, df=k.shape)
    with np.errstate(under="ignore"):
        return np.asarray((2.0 * np.exp(_log_gamma(g, k / 2.0, dims))).astype(dt))


def t(key: Key, df: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Student's t samples ``Z / sqrt(V / df)``, Z normal and V chi-square(df) (variance
    ``df / (df - 2)`` for df > 2), as ``Z sqrt(df/2) exp(-log Gamma(df/2) / 2)``; ``df >
    0``."""
    where = "random.t"
    g, dt = _setup(key, where, dtype)
    k = param(df, "df", where)
    dims = dims_for(shape, where, df=k.shape)
    z = g.standard_normal(dims)
    with np.errstate(over="ignore"):  # a tiny df has a tail beyond float's range
        x = z * np.sqrt(k / 2.0) * np.exp(-0.5 * _log_gamma(g, k / 2.0, dims))
        return np.asarray(x.astype(dt))
