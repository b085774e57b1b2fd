"""funcdl.random's gamma family: ``gamma``, ``loggamma``, ``beta``, ``dirichlet``,
``chisquare`` and ``t`` (re-exported by ``funcdl.random``; arguments as ``jax.random``'s,
checked by ``_keys``' helpers).

Every one is built on ``_log_gamma``, log-samples of Gamma(a, 1) by G. Marsaglia and
W. W. Tsang, "A simple method for generating gamma variables", ACM TOMS 26 (2000), 363-372:
for ``a >= 1``, with ``d = a - 1/3`` and ``c = 1/sqrt(9 d)``, draw ``z`` normal and ``u``
uniform, ``v = (1 + c z)³``, and keep ``d v`` when ``v > 0`` and ``log u < z²/2 + d - d v +
d log v``, evaluated with ``x = c z`` as ``z²/2 + d (3 log1p(x) - x (3 + x (3 + x)))``, as
``d`` and ``d v`` would cancel, losing ``d eps`` (1 at a = 1e16). At least 95% of proposals
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


def _log_gamma(g: np.random.Generator, a: Float64s, dims: tuple[int, ...]) -> Float64s:
    """log of Gamma(a, 1) samples of shape ``dims``; ``a > 0`` broadcasts to ``dims``."""
    n = math.prod(dims)
    shared = a.size == 1  # one a for all: no gathering per round
    flat = a.reshape(1) if shared else np.broadcast_to(a, dims).ravel()
    boost = flat < 1.0
    d = np.where(boost, flat + 1.0, flat) - 1.0 / 3.0
    c = 1.0 / (3.0 * np.sqrt(d))  # not sqrt(9 d): 9 d overflows for a past 2e307
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        dd, cc = (d, c) if shared else (d[todo], c[todo])
        z = g.standard_normal(todo.size)
        x = cc * z
        ok = x > -1.0  # v = (1 + x)³ > 0
        log_v3 = 3.0 * np.log1p(np.where(ok, x, 0.0))
        log_u = np.log1p(-g.random(todo.size))  # 1 - u is uniform in (0, 1]: no log(0)
        # d - d v + d log v = d (log v - (3x + 3x² + x³)): no d-sized terms to cancel
        keep = ok & (log_u < 0.5 * z * z + dd * (log_v3 - x * (3.0 + x * (3.0 + x))))
        out[todo[keep]] = (np.log(dd) + log_v3)[keep] if shared else \
            np.log(dd[keep]) + log_v3[keep]
        todo = todo[~keep]
    if boost.any():
        i = np.arange(n) if shared else np.flatnonzero(boost)
        out[i] += np.log1p(-g.random(i.size)) / flat[0 if shared else i]
    return out.reshape(dims)


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
    with np.errstate(under="ignore"):
        return rounded(np.exp(_log_gamma(g, aa, dims)), dt)


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
    ``X / (X + Y)`` with X ~ Gamma(a), Y ~ Gamma(b), as ``exp(log X - logaddexp(log X,
    log Y))`` so that tiny ``a`` and ``b`` (both gammas underflowing) give 0 or 1, not NaN;
    ``a, b >= 1e-300``."""
    where = "random.beta"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    aa, bb = param(a, "a", where, least=_LEAST), param(b, "b", where, least=_LEAST)
    dims = dims_for(shape, where, a=aa.shape, b=bb.shape)
    lx, ly = _log_gamma(g, aa, dims), _log_gamma(g, bb, dims)
    with np.errstate(under="ignore"):
        return rounded(np.exp(lx - np.logaddexp(lx, ly)), dt)


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
    with np.errstate(under="ignore"):
        _, e, total = shifted_exp(_log_gamma(g, al, (*dims, al.shape[-1])), -1)
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
    with np.errstate(under="ignore"):
        return rounded(2.0 * np.exp(_log_gamma(g, k / 2.0, dims)), dt)


def t(key: Key, df: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Student's t samples ``Z / sqrt(V / df)``, Z normal and V chi-square(df) (variance
    ``df / (df - 2)`` for df > 2), as ``Z sqrt(df/2) exp(-log Gamma(df/2) / 2)``; ``df >=
    1e-300`` (a tiny df's tail beyond ``dtype``'s range is ±inf)."""
    where = "random.t"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    k = param(df, "df", where, least=_LEAST)
    dims = dims_for(shape, where, df=k.shape)
    z = g.standard_normal(dims)
    with np.errstate(over="ignore"):  # a tiny df has a tail beyond float's range
        return rounded(z * np.sqrt(k / 2.0) * np.exp(-0.5 * _log_gamma(g, k / 2.0, dims)), dt)
