"""funcdl.random's closed-form samplers: ``laplace``, ``logistic``, ``cauchy``,
``rademacher``, ``rayleigh``, ``weibull_min``, ``pareto``, ``lognormal`` and
``multivariate_normal``, re-exported by ``funcdl.random`` (their argument checks, shared
with ``_dist_gamma`` and ``_dist_discrete``, are in ``_keys``).

Arguments follow ``jax.random``'s: ``f(key, <parameters>, shape, dtype)``, the parameters
numbers or arrays; ``shape=None`` is their broadcast shape, and a given ``shape`` must hold
them: ``np.broadcast_shapes(shape, *their shapes) == shape`` (as JAX checks), else a
ValueError. Each sample is a transform of float64 uniforms, exponentials or normals of the
key's Philox stream, rounded once to ``dtype`` (float32 by default, as in funcdl); beyond
``dtype``'s range a sample is ±inf, as in JAX.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import float_dtype_arg, shape_arg
from funcdl._keys import (
    Float64s,
    Key,
    _gen,
    _reals,
    check_key,
    dims_for,
    int_dtype,
    param,
    rounded,
)

__all__ = ["cauchy", "laplace", "logistic", "lognormal", "multivariate_normal", "pareto",
           "rademacher", "rayleigh", "weibull_min"]

# ------------------------------------------------------------------- parameterless ones

def _standard(key: Any, shape: Any, dtype: DTypeLike, where: str, kind: str) -> NDArray[Any]:
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    dims = shape_arg(shape, where)
    r = g.random(dims)  # k 2**-53 in [0, 1)
    if kind == "laplace":  # -sign(u) log(1 - |u|), u = 2r - 1 in (-1, 1)
        # r = 0 (once in 2**53) would give u = -1, log(0), a -inf sample: taken as
        # r = 2**-54, half the least positive draw (JAX draws u above -1 likewise)
        u = 2.0 * np.maximum(r, _HALF_ULP) - 1.0
        x = -np.sign(u) * np.log1p(-np.abs(u))
    elif kind == "logistic":  # log(u / (1 - u)), u in (0, 1): r = 0 as for laplace
        u = np.maximum(r, _HALF_ULP)
        x = np.log(u) - np.log1p(-u)
    else:  # cauchy: tan(pi (u - 1/2)), the inverse CDF; u = 0 gives -1.6e16, finite
        x = np.tan(np.pi * (r - 0.5))
    return rounded(x, dt)


_HALF_ULP = 2.0**-54  # below Generator.random's least positive value, 2**-53


def laplace(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard Laplace samples, density ``exp(-|x|)/2`` (mean 0, variance 2), by the
    inverse CDF ``-sign(u) log(1 - |u|)`` with ``u`` uniform in (-1, 1): always finite."""
    return _standard(key, shape, dtype, "random.laplace", "laplace")


def logistic(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard logistic samples, CDF ``1 / (1 + exp(-x))`` (mean 0, variance pi²/3), by
    the inverse CDF ``log(u / (1 - u))``, ``u`` uniform in (0, 1): always finite."""
    return _standard(key, shape, dtype, "random.logistic", "logistic")


def cauchy(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard Cauchy samples, CDF ``1/2 + atan(x)/pi`` (no mean; median 0, quartiles
    ±1), by the inverse CDF ``tan(pi (u - 1/2))``."""
    return _standard(key, shape, dtype, "random.cauchy", "cauchy")


def rademacher(key: Key, shape: Any = (), dtype: DTypeLike = np.int64) -> NDArray[Any]:
    """-1 or +1, each with probability 1/2, of a signed integer ``dtype`` (int64 by
    default; JAX's is int32 without 64-bit ints)."""
    where = "random.rademacher"
    g = _gen(check_key(key, where))
    dt = int_dtype(dtype, where, "i")
    bits = g.integers(0, 2, size=shape_arg(shape, where), dtype=dt)
    return np.asarray(2 * bits - 1, dt)


# ------------------------------------------------------------------ one-parameter ones

def rayleigh(key: Key, scale: Any, shape: Any = None,
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Rayleigh samples ``scale sqrt(2 E)``, E standard exponential (CDF ``1 -
    exp(-x²/(2 scale²))``, mean ``scale sqrt(pi/2)``); ``scale > 0``."""
    where = "random.rayleigh"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    s = param(scale, "scale", where)
    dims = dims_for(shape, where, scale=s.shape)
    with np.errstate(over="ignore"):  # past the dtype's range: inf, as the module says
        return rounded(s * np.sqrt(2.0 * g.standard_exponential(dims)), dt)


def weibull_min(key: Key, scale: Any, concentration: Any, shape: Any = None,
                dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Weibull samples ``scale E^(1/concentration)``, E standard exponential (CDF ``1 -
    exp(-(x/scale)^concentration)``); both parameters > 0, numbers or arrays, ``shape``
    (default: their broadcast shape, ``()`` for numbers as JAX's default) holding them. A
    small concentration has a tail beyond ``dtype``'s range: those samples are inf."""
    where = "random.weibull_min"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    s, c = param(scale, "scale", where), param(concentration, "concentration", where)
    dims = dims_for(shape, where, scale=s.shape, concentration=c.shape)
    e = g.standard_exponential(dims)
    # E = 0 gives log 0; a tiny E^(1/c) underflows to 0, a large one (c << 1) overflows
    with np.errstate(divide="ignore", under="ignore", over="ignore"):
        return rounded(s * np.exp(np.log(e) / c), dt)


def pareto(key: Key, b: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Pareto samples ``exp(E / b)`` >= 1, E standard exponential (CDF ``1 - x^-b``, mean
    ``b / (b - 1)`` for b > 1); ``b > 0``. Beyond ``dtype``'s range a sample is inf."""
    where = "random.pareto"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    bb = param(b, "b", where)
    dims = dims_for(shape, where, b=bb.shape)
    e = g.standard_exponential(dims)
    with np.errstate(over="ignore"):  # a small b has a tail beyond float64's range
        return rounded(np.exp(e / bb), dt)


def lognormal(key: Key, sigma: Any = 1.0, shape: Any = None,
              dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Log-normal samples ``exp(sigma Z)``, Z standard normal (mean ``exp(sigma²/2)``);
    ``sigma >= 0``."""
    where = "random.lognormal"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    s = param(sigma, "sigma", where, strict=False)
    dims = dims_for(shape, where, sigma=s.shape)
    z = g.standard_normal(dims)
    with np.errstate(over="ignore"):  # a large sigma has a tail beyond float64's range
        return rounded(np.exp(s * z), dt)


# ------------------------------------------------------------------ multivariate normal

_METHODS = ("cholesky", "eigh", "svd")


def multivariate_normal(key: Key, mean: Any, cov: Any, shape: Any = None,
                        dtype: DTypeLike = np.float32, method: str = "cholesky") -> NDArray[Any]:
    """Samples ``mean + A z`` of shape ``shape + (n,)``, z standard normal and ``A A^T =
    cov``: ``mean`` (..., n) and ``cov`` (..., n, n) batched as in
    ``jax.random.multivariate_normal``, ``shape`` (default: their batch shapes broadcast)
    holding both batch shapes. ``method``: 'cholesky' (A lower triangular; cov must be
    positive definite), 'eigh' (A = V sqrt(w)) or 'svd' (A = U sqrt(s)), which take a
    positive semi-definite (singular) cov. cov must be symmetric; a negative eigenvalue
    (beyond rounding) is a ValueError with every method, which JAX does not check."""
    where = "random.multivariate_normal"
    g = _gen(check_key(key, where))
    dt = float_dtype_arg(dtype, where)
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"{where}: method must be one of {_METHODS}, got {method!r}")
    mu, c = _reals(mean), _reals(cov)
    if mu is None or c is None:
        raise TypeError(f"{where}: mean and cov must be arrays of numbers, got {mean!r} and "
                        f"{cov!r}")
    if mu.ndim < 1 or c.ndim < 2 or c.shape[-2:] != (mu.shape[-1],) * 2:
        raise ValueError(f"{where}: needs mean of shape (..., n) and cov of shape (..., n, "
                         f"n), got shapes {mu.shape} and {c.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(c).all()):
        raise ValueError(f"{where}: mean and cov must be finite")
    n = mu.shape[-1]
    dims = dims_for(shape, where, **{"mean's batch": mu.shape[:-1],
                                     "cov's batch": c.shape[:-2]})
    shape_arg((*dims, n), where)  # the samples' size, n included, must fit an array
    factor = _factor(c, method, where)
    z = g.standard_normal((*dims, n))
    if factor.ndim == 2:  # one cov: a single BLAS product for every sample
        x = z @ factor.T
    else:
        x = np.matmul(factor, z[..., None])[..., 0]
    return rounded(x + mu, dt)


def _factor(c: Float64s, method: str, where: str) -> Float64s:
    """A with ``A A^T = c`` for each matrix of the stack ``c``, after the checks."""
    n = c.shape[-1]
    if n == 0:  # no dimension: nothing to factor (svd's 1 - 1/n would divide by 0)
        return np.zeros(c.shape)
    # each matrix's own rounding tolerance: one large matrix in a stack must not pass a
    # small one's negative eigenvalue or asymmetry as rounding
    scale = np.abs(c).max(axis=(-2, -1), keepdims=True)
    tol_m = 8 * n * np.finfo(np.float64).eps * np.maximum(scale, np.finfo(np.float64).tiny)
    tol = tol_m[..., 0]  # per matrix, against its eigen- or singular values (..., n)
    with np.errstate(over="ignore", invalid="ignore"):  # ±1e308 entries: inf, not symmetric
        asymmetric = ~(np.abs(c - np.swapaxes(c, -1, -2)) <= tol_m).all()
    if asymmetric:
        raise ValueError(f"{where}: cov must be symmetric (cov == cov.T up to rounding); "
                         f"pass (cov + cov.T) / 2")
    if method == "cholesky":
        try:
            return np.asarray(np.linalg.cholesky(c), np.float64)
        except np.linalg.LinAlgError:
            raise ValueError(f"{where}: cov is not positive definite, which method="
                             f"'cholesky' needs; pass method='eigh' or 'svd' for a positive "
                             f"semi-definite (singular) cov") from None
    neg = "cov is not positive semi-definite ({}); a covariance has no negative eigenvalue"
    # eigenvalues within rounding of 0 are 0: a singular cov's samples stay on its subspace
    if method == "svd":
        u, s, vh = np.linalg.svd(c)
        # Symmetric c = U S V^T: v_j = u_j for an eigenvalue s_j > 0, -u_j for -s_j. Where
        # +s and -s are both eigenvalues, U may mix their eigenvectors, so u_j . v_j < 0 can
        # miss them; yet the dots over that subspace sum to (#positive - #negative), so one
        # is <= 1 - 2/n: below 1 - 1/n flags every case (a PSD c's dots are 1 - O(eps)).
        dot = (u * np.swapaxes(vh, -1, -2)).sum(-2)
        bad = (s > tol) & (dot < 1.0 - 1.0 / n)
        if bad.any():
            raise ValueError(f"{where}: " + neg.format(f"an eigenvalue of about "
                                                       f"{-float(s[bad].max()):.3g}"))
        return np.asarray(u * np.sqrt(np.where(s > tol, s, 0.0))[..., None, :])
    w, v = np.linalg.eigh(c)
    if (w < -tol).any():
        raise ValueError(f"{where}: " + neg.format(f"smallest eigenvalue {float(w.min()):.3g}"))
    return np.asarray(v * np.sqrt(np.where(w > tol, w, 0.0))[..., None, :])
