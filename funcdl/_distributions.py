"""funcdl.random's closed-form samplers, and the argument checks every parametrised sampler
shares (``_dist_gamma`` and ``_dist_discrete`` use them): ``laplace``, ``logistic``,
``cauchy``, ``rademacher``, ``rayleigh``, ``weibull_min``, ``pareto``, ``lognormal`` and
``multivariate_normal``, re-exported by ``funcdl.random``.

Arguments follow ``jax.random``'s: ``f(key, <parameters>, shape, dtype)``, the parameters
numbers or arrays; ``shape=None`` is their broadcast shape, and a given ``shape`` must hold
them: ``np.broadcast_shapes(shape, *their shapes) == shape`` (as JAX checks), else a
ValueError. Each sample is a transform of float64 uniforms, exponentials or normals of the
key's Philox stream, rounded once to ``dtype`` (float32 by default, as in funcdl).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import dtype_arg, float_dtype_arg, shape_arg
from funcdl._keys import Key, _broadcasts, _gen, _reals, check_key

__all__ = ["cauchy", "laplace", "logistic", "lognormal", "multivariate_normal", "pareto",
           "rademacher", "rayleigh", "weibull_min"]

F64 = NDArray[np.float64]


# ----------------------------------------------------------------------- shared checks

def param(value: Any, name: str, where: str, *, low: float = 0.0, strict: bool = True,
          high: float = np.inf, high_ok: bool = False) -> F64:
    """``value`` (a number or an array of them) as float64, every entry finite and in
    ``(low, high)`` (``[low, ...`` when not ``strict``, ``..., high]`` when ``high_ok``);
    a TypeError or ValueError naming ``where`` and ``name``."""
    x = _reals(value)
    if x is None:
        raise TypeError(f"{where}: {name} must be a number or an array of numbers, got "
                        f"{value!r}")
    with np.errstate(invalid="ignore"):
        ok = (x > low if strict else x >= low) & (x <= high if high_ok else x < high)
    if not (ok & np.isfinite(x)).all():
        lo = f"{'>' if strict else '>='} {low:g}"
        hi = "" if high == np.inf else f" and {'<=' if high_ok else '<'} {high:g}"
        bad = float(x[~(ok & np.isfinite(x))].ravel()[0])
        raise ValueError(f"{where}: {name} must be finite, {lo}{hi}, got {name} = {bad!r}"
                         f"{'' if x.ndim == 0 else ' (one entry)'}")
    return x


def dims_for(shape: Any, where: str, **params: tuple[int, ...]) -> tuple[int, ...]:
    """The sample shape: ``shape``, which must hold the parameters' shapes, or their
    broadcast shape when None; a ValueError naming ``where`` otherwise."""
    shapes = tuple(params.values())
    names = " and ".join(f"{n} of shape {s}" for n, s in params.items())
    if shape is None:
        try:
            return np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(f"{where}: {names} do not broadcast together") from None
    dims = shape_arg(shape, where)
    if not _broadcasts(dims, *shapes):
        raise ValueError(f"{where}: shape {dims} must hold the parameters' shapes "
                         f"(np.broadcast_shapes(shape, ...) == shape, as in JAX), got "
                         f"{names}; pass shape=None for their broadcast shape")
    return dims


def int_dtype(dtype: Any, where: str, kinds: str = "iu") -> np.dtype[Any]:
    """An integer sample dtype: None is int64 (JAX's int with 64-bit ints on)."""
    if dtype is None:
        return np.dtype(np.int64)
    wanted = "a signed integer dtype such as np.int64" if kinds == "i" else \
        "an integer dtype such as np.int64"
    return dtype_arg(dtype, where, "dtype", kinds, wanted)


def to_ints(k: F64, dt: np.dtype[Any], where: str, hint: str) -> NDArray[Any]:
    """Whole-number float64 samples ``k`` as ``dt``; a ValueError if one does not fit."""
    bound = 2.0 ** (8 * dt.itemsize - (dt.kind == "i"))  # exact in float64, unlike max
    if not (k < bound).all():
        raise ValueError(f"{where}: a sample is beyond {dt}'s largest value "
                         f"{np.iinfo(dt).max}; {hint}")
    return np.asarray(k.astype(dt))


def _flat_key(key: Key, where: str) -> np.random.Generator:
    return _gen(check_key(key, where))


# ------------------------------------------------------------------- parameterless ones

def _standard(key: Any, shape: Any, dtype: DTypeLike, where: str, kind: str) -> NDArray[Any]:
    dt = float_dtype_arg(dtype, where)
    dims = shape_arg(shape, where)
    g = _flat_key(key, where)
    with np.errstate(divide="ignore"):  # log(0) only for u = 0 exactly: an infinite sample
        if kind == "laplace":  # u in (-1, 1): -sign(u) log(1 - |u|)
            u = 2.0 * g.random(dims) - 1.0
            x = -np.sign(u) * np.log1p(-np.abs(u))
        elif kind == "logistic":  # log(u / (1 - u)), u in (0, 1)
            u = g.random(dims)
            x = np.log(u) - np.log1p(-u)
        else:  # cauchy: tan(pi (u - 1/2)), the inverse CDF; u = 0 gives -1.6e16, finite
            x = np.tan(np.pi * (g.random(dims) - 0.5))
    return np.asarray(x.astype(dt, copy=False))


def laplace(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard Laplace samples, density ``exp(-|x|)/2`` (mean 0, variance 2), by the
    inverse CDF ``-sign(u) log(1 - |u|)`` with ``u`` uniform in [-1, 1)."""
    return _standard(key, shape, dtype, "random.laplace", "laplace")


def logistic(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard logistic samples, CDF ``1 / (1 + exp(-x))`` (mean 0, variance pi²/3), by
    the inverse CDF ``log(u / (1 - u))``."""
    return _standard(key, shape, dtype, "random.logistic", "logistic")


def cauchy(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard Cauchy samples, CDF ``1/2 + atan(x)/pi`` (no mean; median 0, quartiles
    ±1), by the inverse CDF ``tan(pi (u - 1/2))``."""
    return _standard(key, shape, dtype, "random.cauchy", "cauchy")


def rademacher(key: Key, shape: Any = (), dtype: DTypeLike = np.int64) -> NDArray[Any]:
    """-1 or +1, each with probability 1/2, of a signed integer ``dtype`` (int64 by
    default; JAX's is int32 without 64-bit ints)."""
    where = "random.rademacher"
    dt = int_dtype(dtype, where, "i")
    bits = _flat_key(key, where).integers(0, 2, size=shape_arg(shape, where), dtype=dt)
    return np.asarray(2 * bits - 1, dt)


# ------------------------------------------------------------------ one-parameter ones

def rayleigh(key: Key, scale: Any, shape: Any = None,
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Rayleigh samples ``scale sqrt(2 E)``, E standard exponential (CDF ``1 -
    exp(-x²/(2 scale²))``, mean ``scale sqrt(pi/2)``); ``scale > 0``."""
    where = "random.rayleigh"
    dt = float_dtype_arg(dtype, where)
    s = param(scale, "scale", where)
    dims = dims_for(shape, where, scale=s.shape)
    e = _flat_key(key, where).standard_exponential(dims)
    return np.asarray((s * np.sqrt(2.0 * e)).astype(dt, copy=False))


def weibull_min(key: Key, scale: Any, concentration: Any, shape: Any = (),
                dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Weibull samples ``scale E^(1/concentration)``, E standard exponential (CDF ``1 -
    exp(-(x/scale)^concentration)``); both parameters > 0. ``shape`` defaults to ``()``
    as in JAX; None is the parameters' broadcast shape."""
    where = "random.weibull_min"
    dt = float_dtype_arg(dtype, where)
    s, c = param(scale, "scale", where), param(concentration, "concentration", where)
    dims = dims_for(shape, where, scale=s.shape, concentration=c.shape)
    e = _flat_key(key, where).standard_exponential(dims)
    with np.errstate(divide="ignore", under="ignore"):  # E = 0, or a tiny E^(1/c): 0
        x = s * np.exp(np.log(e) / c)
    return np.asarray(x.astype(dt, copy=False))


def pareto(key: Key, b: Any, shape: Any = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Pareto samples ``exp(E / b)`` >= 1, E standard exponential (CDF ``1 - x^-b``, mean
    ``b / (b - 1)`` for b > 1); ``b > 0``. Beyond ``dtype``'s range a sample is inf."""
    where = "random.pareto"
    dt = float_dtype_arg(dtype, where)
    bb = param(b, "b", where)
    dims = dims_for(shape, where, b=bb.shape)
    e = _flat_key(key, where).standard_exponential(dims)
    with np.errstate(over="ignore"):  # a small b has a tail beyond float's range
        return np.asarray(np.exp(e / bb).astype(dt))


def lognormal(key: Key, sigma: Any = 1.0, shape: Any = None,
              dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Log-normal samples ``exp(sigma Z)``, Z standard normal (mean ``exp(sigma²/2)``);
    ``sigma >= 0``."""
    where = "random.lognormal"
    dt = float_dtype_arg(dtype, where)
    s = param(sigma, "sigma", where, strict=False)
    dims = dims_for(shape, where, sigma=s.shape)
    z = _flat_key(key, where).standard_normal(dims)
    with np.errstate(over="ignore"):
        return np.asarray(np.exp(s * z).astype(dt))


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
    dt = float_dtype_arg(dtype, where)
    if method not in _METHODS:
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
    z = _flat_key(key, where).standard_normal((*dims, n))
    if factor.ndim == 2:  # one cov: a single BLAS product for every sample
        x = z @ factor.T
    else:
        x = np.matmul(factor, z[..., None])[..., 0]
    return np.asarray((x + mu).astype(dt, copy=False))


def _factor(c: F64, method: str, where: str) -> F64:
    """A with ``A A^T = c`` for each matrix of the stack ``c``, after the checks."""
    n = c.shape[-1]
    scale = float(np.abs(c).max(initial=0.0))
    tol = 8 * n * np.finfo(np.float64).eps * max(scale, np.finfo(np.float64).tiny)
    if not (np.abs(c - np.swapaxes(c, -1, -2)) <= tol).all():
        raise ValueError(f"{where}: cov must be symmetric (cov == cov.T up to rounding); "
                         f"pass (cov + cov.T) / 2")
    if method == "cholesky":
        try:
            return np.asarray(np.linalg.cholesky(c), np.float64)
        except np.linalg.LinAlgError:
            raise ValueError(f"{where}: cov is not positive definite, which method="
                             f"'cholesky' needs; pass method='eigh' or 'svd' for a positive "
                             f"semi-definite (singular) cov") from None
    w, v = np.linalg.eigh(c)
    if (w < -tol).any():
        raise ValueError(f"{where}: cov is not positive semi-definite (smallest eigenvalue "
                         f"{float(w.min()):.3g}); a covariance has no negative eigenvalue")
    # eigenvalues within rounding of 0 are 0: a singular cov's samples stay on its subspace
    if method == "eigh":
        return np.asarray(v * np.sqrt(np.where(w > tol, w, 0.0))[..., None, :])
    u, s, _ = np.linalg.svd(c)  # for symmetric PSD c, s = w and U = V up to the order
    return np.asarray(u * np.sqrt(np.where(s > tol, s, 0.0))[..., None, :])
