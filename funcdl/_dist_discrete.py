"""funcdl.random's counting samplers: ``poisson``, ``geometric``, ``binomial`` (re-exported
by ``funcdl.random``; arguments as ``jax.random``'s, checked by ``_keys``' helpers).

Poisson: for ``lam < 10``, inversion, walking the CDF ``F(k) = sum_{j<=k} e^-lam lam^j / j!``
up to the uniform ``u`` (one vectorised step per k, over the entries not yet placed: ~lam + a
few steps); for ``lam >= 10``, the transformed rejection with squeeze PTRS of W. Hörmann,
"The transformed rejection method for generating Poisson random variables", Insurance:
Mathematics and Economics 12 (1993), 39-45 (over 85% kept; rounds vectorised over what is
left), whose acceptance test needs ``log(lam^k e^-lam / k!)``: with a table of ``log k!``
below k = 256; from there Stirling's series taken relative to lam (the terms ``lam``,
``k log lam`` and ``log k!``, 1e15 at lam = 2**47, would cancel to ~1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import float_dtype_arg
from funcdl._dist_gamma import beta_samples
from funcdl._keys import (
    Float64s,
    Key,
    _gen,
    check_key,
    dims_for,
    int_dtype,
    param,
    rounded,
    to_ints,
)

__all__ = ["binomial", "geometric", "poisson"]

_LOG_FACT = np.array([math.lgamma(k + 1.0) for k in range(256)])
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_INVERSION_BELOW = 10.0
_LAM_MAX = 2.0 ** 53 / 64  # k stays an exact whole float64 well past lam + 40 sqrt(lam)


def _log_pmf(k: Float64s, lam: Float64s, loglam: Float64s) -> Float64s:
    """``log(lam^k e^-lam / k!)`` for whole ``k >= 0``. From k = 256, with m = k + 1 and
    Stirling's series for ``log k! = lgamma(m)``, ``k log lam - (k + 1/2) log m`` is
    ``-log(lam)/2 - (k + 1/2) log1p((m - lam)/lam)``: no lam-sized terms left to cancel."""
    small = -lam + k * loglam - _LOG_FACT[np.minimum(k, 255.0).astype(np.intp)]
    m = np.maximum(k, 255.0) + 1.0
    r2 = 1.0 / (m * m)
    big = ((m - lam) - (m - 0.5) * np.log1p((m - lam) / lam) - 0.5 * loglam - _HALF_LOG_2PI
           - (1.0 / m) * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 / 1260.0)))
    return np.where(k < 256, small, big)


def _inversion(g: np.random.Generator, lam: Float64s, n: int) -> Float64s:
    """Poisson(lam) by inversion of the CDF; ``lam`` of size n (a walk, one vectorised
    step per k), or 1 shared (a table and one search)."""
    u = g.random(n)
    if lam.size == 1:  # one lam: its CDF tabled once (P(k > 80) < 1e-50 for lam < 10)
        pmf = np.empty(81)
        pmf[0] = math.exp(-float(lam[0]))
        for j in range(1, 81):  # the walk's own recurrence, so the same rounded CDF
            pmf[j] = pmf[j - 1] * float(lam[0]) / j
        return np.minimum(np.searchsorted(np.cumsum(pmf), u, side="left"), 80).astype(float)
    k = np.zeros(n)
    p = np.broadcast_to(np.exp(-lam), (n,)).copy()
    cdf = p.copy()
    todo = np.flatnonzero(u > cdf)
    while todo.size:
        k[todo] += 1.0
        p[todo] *= lam[todo] / k[todo]
        cdf[todo] += p[todo]
        # p = 0 ends a walk the rounded CDF never finishes (u within 1e-16 of 1)
        todo = todo[(u[todo] > cdf[todo]) & (p[todo] > 0.0)]
    return k


def _ptrs(g: np.random.Generator, lam: Float64s, n: int) -> Float64s:
    """Poisson(lam >= 10) by Hörmann's PTRS; ``lam`` of size n, or 1 shared."""
    slam, loglam = np.sqrt(lam), np.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = np.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    out = np.empty(n)
    todo = np.arange(n)
    shared = lam.size == 1
    while todo.size:
        at: Any = slice(None) if shared else todo  # shared: the size-1 parameters broadcast
        A, B, L = a[at], b[at], lam[at]
        u = g.random(todo.size) - 0.5
        v = g.random(todo.size)
        us = 0.5 - np.abs(u)
        # us = 0 (u = -1/2) or v = 0: infinities, refused or accepted by the tests below
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor((2.0 * A / us + B) * u + L + 0.43)
            lhs = np.log(v) + log_inv_alpha[at] - np.log(A / (us * us) + B)
            rhs = _log_pmf(np.clip(k, 0.0, 2.0 ** 60), L, loglam[at])
        squeeze = (us >= 0.07) & (v <= vr[at])
        keep = squeeze | ((k >= 0) & ~((us < 0.013) & (v > us)) & (lhs <= rhs))
        out[todo[keep]] = k[keep]
        todo = todo[~keep]
    return out


def poisson(key: Key, lam: Any, shape: Any = None, dtype: DTypeLike = np.int64) -> NDArray[Any]:
    """Poisson(lam) counts (mean and variance ``lam``) of an integer ``dtype`` (int64 by
    default; JAX's int32 without 64-bit ints): ``lam >= 0`` (0 gives 0) and at most 2**47,
    a number or array; ``shape`` (default ``lam``'s) holding it. Inversion below lam = 10,
    PTRS rejection from there."""
    where = "random.poisson"
    dt = int_dtype(dtype, where)
    lm = param(lam, "lam", where, strict=False, high=_LAM_MAX, high_ok=True)
    dims = dims_for(shape, where, lam=lm.shape)
    g = _gen(check_key(key, where))
    n = math.prod(dims)
    flat = lm.reshape(1) if lm.size == 1 else np.broadcast_to(lm, dims).ravel()
    if flat.size == 1:
        k = (_inversion if flat[0] < _INVERSION_BELOW else _ptrs)(g, flat, n)
    else:
        k = np.empty(n)
        small = flat < _INVERSION_BELOW
        i, j = np.flatnonzero(small), np.flatnonzero(~small)
        k[i] = _inversion(g, flat[i], i.size)
        k[j] = _ptrs(g, flat[j], j.size)
    return to_ints(k.reshape(dims), dt, where, "pass a wider dtype such as np.int64")


def geometric(key: Key, p: Any, shape: Any = None, dtype: DTypeLike = np.int64) -> NDArray[Any]:
    """Geometric(p) counts: trials up to and including the first success, in {1, 2, ...}
    (mean ``1/p``, variance ``(1-p)/p²``), ``1 + floor(log(1-u) / log(1-p))``, an integer
    ``dtype`` (int64 by default); ``0 < p <= 1``."""
    where = "random.geometric"
    dt = int_dtype(dtype, where)
    pp = param(p, "p", where, high=1.0, high_ok=True)
    dims = dims_for(shape, where, p=pp.shape)
    u = _gen(check_key(key, where)).random(dims)
    # p = 1: log(0) = -inf, every count 1; a subnormal p: a count past float64, inf
    with np.errstate(divide="ignore", over="ignore"):
        k = 1.0 + np.floor(np.log1p(-u) / np.log1p(-pp))
    return to_ints(np.asarray(k, np.float64), dt, where,
                   "pass a larger p" + ("" if dt == np.int64 else
                                        " or a wider dtype such as np.int64"))


def binomial(key: Key, n: Any, p: Any, shape: Any = None,
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Binomial(n, p) counts (mean ``n p``, variance ``n p (1-p)``) as floats of ``dtype``,
    as ``jax.random.binomial`` returns them: ``n`` whole numbers in [0, 2**62], ``p`` in
    [0, 1]. Drawn by NumPy's Generator.binomial (exact: inversion or BTPE rejection) on the
    key's stream, after ``_halve`` has brought every ``n`` to at most 2**48 (beyond, NumPy's
    draws lose their law)."""
    where = "random.binomial"
    dt = float_dtype_arg(dtype, where)
    nn = param(n, "n", where, strict=False, high=2.0 ** 62, high_ok=True)
    if not (nn == np.floor(nn)).all():
        raise ValueError(f"{where}: n must be whole numbers (a count of trials), got {n!r}")
    pp = param(p, "p", where, strict=False, high=1.0, high_ok=True)
    dims = dims_for(shape, where, n=nn.shape, p=pp.shape)
    g = _gen(check_key(key, where))
    if not (nn > _BINOMIAL_MAX).any():  # NumPy's own range: its draws, unchanged
        return rounded(np.asarray(g.binomial(nn.astype(np.int64), pp, size=dims)), dt)
    trials = np.broadcast_to(nn, dims).astype(np.int64).ravel()
    prob = np.broadcast_to(pp, dims).astype(np.float64).ravel()
    done, sign = _halve(g, trials, prob)
    return rounded((done + sign * g.binomial(trials, prob)).reshape(dims), dt)


# NumPy's BTPE forms n - k + 1 and its kin in float64: from n ~ 2**53 they round, and its
# draws drift (2**56 trials at n p = 200: mean off by 25 standard errors, variance by 8%;
# 2**62 at p = 0.3: variance off by 6%). Measured sound up to 2**52; 2**48 leaves a margin.
_BINOMIAL_MAX = 2.0 ** 48


def _halve(g: np.random.Generator, n: NDArray[np.int64],
           p: Float64s) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rewrite ``n`` and ``p`` in place, every ``n`` at most 2**48 and ``p <= 1/2``, and
    return ``(done, sign)`` with Binomial(n, p) = ``done + sign`` Binomial(new n, new p).

    Of n uniforms, the i-th smallest, i = (n + 1) // 2, is U ~ Beta(i, n + 1 - i); given U,
    the i - 1 below it are uniform on (0, U) and the n - i above on (U, 1). So if U <= p,
    the count is i + Binomial(n - i, (p - U) / (1 - U)), else Binomial(i - 1, p / U) (L.
    Devroye, Non-Uniform Random Variate Generation (1986), X.4.3): each step halves n, 14
    from 2**62. A probability above 1/2 is traded for its complement, ``n - Binomial(n, 1 -
    p)``, with ``1 - p`` and ``(U - p) / U`` exact (Sterbenz): rounding p/U near 1 would move
    a tiny failure probability by 1e-16, a whole count per 2**53 trials."""
    sign = np.where(p > 0.5, -1, 1)
    done = np.where(sign < 0, n, 0)
    np.subtract(1.0, p, out=p, where=sign < 0)
    big = np.flatnonzero(n > _BINOMIAL_MAX)
    while big.size:
        m, q, s = n[big], p[big], sign[big]
        i = (m + 1) // 2
        u = beta_samples(g, i.astype(np.float64), (m + 1 - i).astype(np.float64), (big.size,))
        below = u <= q  # then (q - u) / (1 - u) <= q <= 1/2
        r = q / u
        flip = ~below & (r > 0.5)  # u/2 < q < u: u - q is exact
        done[big] += s * np.where(below, i, np.where(flip, i - 1, 0))
        n[big] = np.where(below, m - i, i - 1)
        p[big] = np.where(below, (q - u) / (1.0 - u), np.where(flip, (u - q) / u, r))
        sign[big] = np.where(flip, -s, s)
        big = big[n[big] > _BINOMIAL_MAX]
    return done, sign
