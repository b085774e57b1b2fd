"""Weight initializers.

One convention: every name is a factory, called, returning ``init(key, shape, dtype)``::

    w = glorot_uniform()(key, (fan_in, fan_out), np.float32)

Fans follow the kernel layouts of funcdl's layers, ``(..., in, out)``: for a shape
``(*receptive, in, out)``, ``fan_in = in * prod(receptive)`` and
``fan_out = out * prod(receptive)`` (Dense ``(in, out)``, Conv2D ``(kh, kw, in, out)``).
A 1-D shape ``(n,)`` has ``fan_in = fan_out = n``.

``init`` takes its shape as ``funcdl.random``'s samplers do (an int ``n`` is ``(n,)``);
``dtype=None`` is float32. Settings are checked when the factory is called, and every error
names the initializer that was called (``initializers.he_normal: ...``), Python's own
argument errors included (``initializers.he_normal(...)() missing 1 required positional
argument: 'shape'``).

Normal variants draw from a plain (untruncated) normal, as PyTorch's ``nn.init`` does;
``truncated_normal`` and ``variance_scaling(..., "truncated_normal")`` are JAX's truncated ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl import random
from funcdl._args import FLOAT_MAX, dtype_arg, float_dtype_arg, is_int, real_arg, shape_arg
from funcdl._truncnorm import _truncated_normal

__all__ = [
    "Initializer",
    "constant",
    "delta_orthogonal",
    "fans",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "torch_default",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Initializer = Callable[..., NDArray[Any]]

# A bound on |z| from NumPy's standard_normal: its ziggurat's tail returns r + E / r with
# r = 3.654 and E = -log1p(-U) <= 24 ln 2 (float32) or 53 ln 2 (float64), so |z| <= 8.2 or
# 13.7; |mean| + 16 std within a dtype's range cannot overflow.
_Z_MAX = 16.0


def _real(value: Any, where: str, what: str, **bounds: Any) -> float:
    """``_args.real_arg``, its TypeError saying how initializers are called."""
    return real_arg(value, where, what, hint=f"; initializers are factories, called first "
                    f"with their settings: {where}(...)(key, shape, dtype)", **bounds)


def _one_of(value: Any, allowed: tuple[str, ...], where: str, what: str) -> str:
    """``value`` if it is one of the strings ``allowed``, else a TypeError or ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: {what} must be a str, one of {', '.join(allowed)}; got "
                        f"{value!r} ({type(value).__name__})")
    if value not in allowed:
        raise ValueError(f"{where}: {what} must be {', '.join(allowed[:-1])} or "
                         f"{allowed[-1]}, got {value!r}")
    return value


def _numeric(dtype: DTypeLike, where: str) -> np.dtype[Any]:
    """``dtype`` as a NumPy bool or number dtype (None is float32), else a TypeError."""
    if dtype is None:
        return np.dtype(np.float32)
    return dtype_arg(dtype, where, "dtype", "biufc",
                     "a NumPy number or bool dtype (float32 by default)")


def _named(init: Initializer, where: str) -> Initializer:
    """``init`` under the call that made it, for Python's own errors (a missing shape, an
    unknown keyword), which would otherwise name ``_variance_scaling.<locals>.init``."""
    init.__qualname__ = f"{where}(...)"
    return init


def fans(shape: Any) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a kernel shape ``(*receptive, in, out)`` (an int ``n`` is
    ``(n,)``; a 1-D shape ``(n,)`` gives ``(n, n)``, a 0-D one ``(1, 1)``)."""
    return _fans(shape_arg(shape, "initializers.fans"))


def _fans(dims: tuple[int, ...]) -> tuple[int, int]:
    if len(dims) == 0:
        return 1, 1
    if len(dims) == 1:
        return dims[0], dims[0]
    receptive = math.prod(dims[:-2])
    return dims[-2] * receptive, dims[-1] * receptive


def zeros() -> Initializer:
    """All zeros (of any number or bool dtype; the key is not read, and may be None)."""
    return _constant(np.zeros, "initializers.zeros")


def ones() -> Initializer:
    """All ones (of any number or bool dtype; the key is not read, and may be None)."""
    return _constant(np.ones, "initializers.ones")


def _constant(fill: Callable[..., NDArray[Any]], where: str) -> Initializer:
    """``fill(shape, dtype)``; the key is checked only so that a swapped call
    ``init(shape, key)`` is refused instead of read as a shape ``(key[0], key[1])``."""
    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        if key is not None:  # unread, as JAX's
            random.check_key(key, where)
        dt = _numeric(dtype, where)
        return fill(shape_arg(shape, where, dt.itemsize), dt)
    return _named(init, where)


def normal(std: float = 1e-2, mean: float = 0.0) -> Initializer:
    """N(mean, std²) (JAX's default std 1e-2); ``std >= 0`` and ``mean`` finite."""
    where = "initializers.normal"
    return _normal(_real(std, where, "std", low=0.0), _real(mean, where, "mean"), where)


def _normal(std: float, mean: float, where: str) -> Initializer:
    """``mean + std z`` in the sample dtype, whose range must hold every possible sample."""
    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        dt = float_dtype_arg(dtype, where)
        if abs(mean) + _Z_MAX * std > FLOAT_MAX[dt]:
            raise ValueError(f"{where}: mean={mean:g} and std={std:g} give samples beyond "
                             f"{dt}'s range (needs |mean| + {_Z_MAX:g} std <= "
                             f"{FLOAT_MAX[dt]:.4g}); pass dtype=np.float64 or a smaller std")
        z = random._normal(key, shape, dt, where)
        np.multiply(z, dt.type(std), out=z)  # in place: a 0-d result stays an array
        np.add(z, dt.type(mean), out=z)
        return z
    return _named(init, where)


def uniform(scale: float = 1e-2, low: float | None = None) -> Initializer:
    """U[0, scale), as JAX's ``uniform(scale)``; ``low=-scale`` gives U[-scale, scale).
    ``low`` (0 by default) and ``scale`` are finite, ``low <= scale``."""
    where = "initializers.uniform"
    hi = _real(scale, where, "scale")
    lo = 0.0 if low is None else _real(low, where, "low")
    if not lo <= hi:
        raise ValueError(f"{where}: samples lie in [low, scale), so needs low <= scale, got "
                         f"low={lo:g} (0 unless given) and scale={hi:g}")

    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        return random._uniform(key, shape, lo, hi, dtype, where)
    return _named(init, where)


def constant(value: float) -> Initializer:
    """Every entry ``value`` (a finite real number), in any number or bool dtype that holds
    it exactly up to float rounding: an integer dtype needs a whole number in its range,
    bool 0 or 1, a float dtype a value within its range. The key is not read (None is
    fine). JAX's ``constant(value, dtype)`` also takes an array value and a factory dtype;
    here the dtype is the init's, as for every initializer, and an array is refused."""
    where = "initializers.constant"
    v = _real(value, where, "value")
    whole = is_int(value)
    exact: Any = int(value) if whole else v  # an int64 past 2**53 keeps its digits

    def fill(dims: tuple[int, ...], dt: np.dtype[Any]) -> NDArray[Any]:
        if dt.kind in "iub":
            info = (0, 1) if dt.kind == "b" else (np.iinfo(dt).min, np.iinfo(dt).max)
            if v != math.floor(v) or not info[0] <= exact <= info[1]:
                raise ValueError(f"{where}: value={value!r} is not a {dt} value (whole, in "
                                 f"[{info[0]}, {info[1]}]); pass a float dtype or round it")
        elif dt.kind in "fc" and abs(v) > float(np.finfo(dt).max):
            wide = "np.float64" if dt.kind == "f" else "np.complex128"
            raise ValueError(f"{where}: value={value!r} is beyond {dt}'s range; pass "
                             f"dtype={wide}")
        return np.full(dims, exact, dt)
    return _constant(fill, where)


def truncated_normal(stddev: float = 1e-2, lower: float = -2.0,
                     upper: float = 2.0) -> Initializer:
    """``stddev * z`` with ``z`` a standard normal truncated to ``[lower, upper]``, as JAX's
    ``truncated_normal(stddev, lower=, upper=)``: ``stddev`` is the untruncated normal's
    (the samples' std is smaller: 0.88 stddev for ±2) and the bounds count in its units, so
    samples lie in ``[stddev * lower, stddev * upper]``. PyTorch's ``trunc_normal_(w, mean=0,
    std=s, a=A, b=B)`` takes absolute bounds: it is ``truncated_normal(s, A / s, B / s)``.
    ``stddev >= 0``; the bounds finite, ``lower < upper``."""
    where = "initializers.truncated_normal"
    s = _real(stddev, where, "stddev", low=0.0)
    lo, hi = _real(lower, where, "lower"), _real(upper, where, "upper")
    if not lo < hi:
        raise ValueError(f"{where}: needs lower < upper, got lower={lo:g}, upper={hi:g}")
    return _truncated(s, lo, hi, where)


def _truncated(s: float, lo: float, hi: float, where: str) -> Initializer:
    """``s z``, ``z`` standard normal on ``[lo, hi]``, in the sample dtype."""
    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        dt = float_dtype_arg(dtype, where)
        if s * max(abs(lo), abs(hi)) > FLOAT_MAX[dt]:
            raise ValueError(f"{where}: stddev={s:g} with bounds [{lo:g}, {hi:g}] gives "
                             f"samples beyond {dt}'s range; pass dtype=np.float64")
        z = _truncated_normal(key, lo, hi, shape_arg(shape, where), np.float64, where)
        return np.asarray((s * z).astype(dt))  # scaled in float64: one rounding to dt
    return _named(init, where)


_MODES = ("fan_in", "fan_out", "fan_avg")
# The std of a standard normal truncated to [-2, 2], sqrt(1 - 4 phi(2) / erf(sqrt 2)): JAX
# divides by it so that variance_scaling's truncated samples have variance scale / n.
_TRUNCATED_STD = 0.87962566103423978


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Variance ``scale / n`` (``scale > 0``) with n the fan_in, fan_out or their mean
    (``mode``), from a ``normal`` or ``uniform`` distribution with that variance (as JAX's,
    untruncated) or JAX's ``truncated_normal``: a normal of std ``sqrt(scale / n) /
    0.8796...`` truncated at ±2 of that std, whose variance is ``scale / n``. (JAX's
    in_axis, out_axis, batch_axis and dtype options are not offered.)"""
    return _variance_scaling(scale, mode, distribution, "initializers.variance_scaling")


def _variance_scaling(scale: float, mode: str, distribution: str, where: str) -> Initializer:
    """``variance_scaling``, its errors naming ``where`` (glorot_uniform, he_normal, ...)."""
    s = _real(scale, where, "scale", low=0.0, open_low=True)
    _one_of(mode, _MODES, where, "mode")
    _one_of(distribution, ("normal", "truncated_normal", "uniform"), where, "distribution")

    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        dims = shape_arg(shape, where)
        fan_in, fan_out = _fans(dims)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        var = s / max(n, 1)
        if distribution == "normal":
            return _normal(math.sqrt(var), 0.0, where)(key, dims, dtype)
        if distribution == "truncated_normal":
            return _truncated(math.sqrt(var) / _TRUNCATED_STD, -2.0, 2.0, where)(key, dims,
                                                                                  dtype)
        bound = math.sqrt(3.0 * var)
        return random._uniform(key, dims, -bound, bound, dtype, where)
    return _named(init, where)


def glorot_uniform() -> Initializer:
    """Xavier uniform: U(±sqrt(6 / (fan_in + fan_out)))."""
    return _variance_scaling(1.0, "fan_avg", "uniform", "initializers.glorot_uniform")


def glorot_normal() -> Initializer:
    """Xavier normal: N(0, 2 / (fan_in + fan_out)), untruncated as torch's ``xavier_normal_``
    (JAX's truncates at 2 std, rescaled)."""
    return _variance_scaling(1.0, "fan_avg", "normal", "initializers.glorot_normal")


def xavier_uniform() -> Initializer:
    """PyTorch's name for ``glorot_uniform``."""
    return _variance_scaling(1.0, "fan_avg", "uniform", "initializers.xavier_uniform")


def xavier_normal() -> Initializer:
    """PyTorch's name for ``glorot_normal``."""
    return _variance_scaling(1.0, "fan_avg", "normal", "initializers.xavier_normal")


def he_uniform() -> Initializer:
    """Kaiming uniform (ReLU gain): U(±sqrt(6 / fan_in))."""
    return _variance_scaling(2.0, "fan_in", "uniform", "initializers.he_uniform")


def he_normal() -> Initializer:
    """Kaiming normal (ReLU gain): N(0, 2 / fan_in), untruncated as torch's
    ``kaiming_normal_`` (JAX's truncates at 2 std, rescaled)."""
    return _variance_scaling(2.0, "fan_in", "normal", "initializers.he_normal")


def lecun_normal() -> Initializer:
    """LeCun normal: N(0, 1 / fan_in), untruncated (JAX's truncates at 2 std, rescaled)."""
    return _variance_scaling(1.0, "fan_in", "normal", "initializers.lecun_normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: U(±sqrt(3 / fan_in))."""
    return _variance_scaling(1.0, "fan_in", "uniform", "initializers.lecun_uniform")


def torch_default() -> Initializer:
    """PyTorch's ``nn.Linear``/``nn.Conv*`` weight init, kaiming_uniform(a=sqrt(5)):
    U(±1 / sqrt(fan_in)), for a shape of rank >= 2, as torch's. (Its bias rule has the
    same bound with the layer's fan_in, which a bias's own shape does not carry: Dense and
    Conv apply it when ``b_init`` is left as None.)"""
    where = "initializers.torch_default"
    weights = _variance_scaling(1.0 / 3.0, "fan_in", "uniform", where)

    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        dims = shape_arg(shape, where)
        if len(dims) < 2:  # torch: "Fan in and fan out can not be computed ..."
            raise ValueError(f"{where}: needs a weight shape of rank >= 2 (..., fan_in, "
                             f"out), got {dims}; for PyTorch's bias, U(±1/sqrt(fan_in)) "
                             f"with the layer's fan_in, leave b_init=None in Dense and "
                             f"Conv, or pass initializers.uniform(b, low=-b) with "
                             f"b = 1/sqrt(fan_in)")
        return weights(key, dims, dtype)
    return _named(init, where)


def orthogonal(scale: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix over ``(prod(shape[:-1]), shape[-1])``, from the QR of a
    normal matrix with the signs of R's diagonal folded in (uniform over orthogonal
    matrices), times ``scale``; float32 or float64, a shape of rank >= 2."""
    where = "initializers.orthogonal"
    return _orthogonal(_real(scale, where, "scale"), where)


def _orthogonal(s: float, where: str) -> Initializer:
    """``orthogonal(s)``, its errors naming ``where``."""
    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        dims, dt = shape_arg(shape, where), float_dtype_arg(dtype, where)
        if len(dims) < 2:
            raise ValueError(f"{where}: needs a shape of rank >= 2, got {dims}")
        if abs(s) > FLOAT_MAX[dt]:  # |q_ij| <= 1: this bounds every entry
            raise ValueError(f"{where}: scale={s:g} is beyond {dt}'s range; pass "
                             f"dtype=np.float64 or a smaller scale")
        rows, cols = math.prod(dims[:-1]), dims[-1]
        a = random._normal(key, (max(rows, cols), min(rows, cols)), np.float64, where)
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (s * q).reshape(dims).astype(dt)
    return _named(init, where)


def delta_orthogonal(scale: float = 1.0) -> Initializer:
    """JAX's delta-orthogonal conv kernel (Xiao et al. 2018): for a shape ``(*spatial, in,
    out)`` with 1 to 3 spatial axes and ``in <= out``, zeros but at the centre tap
    ``(k - 1) // 2`` of each spatial axis, which holds ``orthogonal(scale)`` of ``(in,
    out)``, so the conv is an isometry at init. (JAX's column_axis is not offered.)"""
    where = "initializers.delta_orthogonal"
    ortho = _orthogonal(_real(scale, where, "scale"), where)

    def init(key: random.Key, shape: Any, dtype: DTypeLike = np.float32) -> NDArray[Any]:
        dims, dt = shape_arg(shape, where), float_dtype_arg(dtype, where)
        if len(dims) not in (3, 4, 5):
            raise ValueError(f"{where}: needs a conv kernel shape (*spatial, in, out) of rank "
                             f"3, 4 or 5, got {dims}; for a dense (in, out) use orthogonal")
        if dims[-2] > dims[-1]:
            raise ValueError(f"{where}: needs in <= out (the centre tap's rows are "
                             f"orthonormal), got in={dims[-2]}, out={dims[-1]} in {dims}")
        w = np.zeros(dims, dt)
        if all(dims[:-2]):  # a spatial axis of 0 taps has no centre: nothing to place
            w[tuple((k - 1) // 2 for k in dims[:-2])] = ortho(key, dims[-2:], dt)
        return w
    return _named(init, where)
