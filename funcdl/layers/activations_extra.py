"""More of PyTorch's elementwise activations, each from activations.py's factory (forward
``f(x)`` and vjp ``dx = df(x, y, dy)`` side by side, fused after a Dense in a Sequential):
ReLU6, Hardtanh, Hardsigmoid, Hardswish, Mish, SELU, CELU, Softsign, LogSigmoid; plus PReLU,
whose slope is a param.

Semantics, defaults and the subgradient at each kink are ``torch.nn.functional``'s; none
warns at any finite input; at ±inf each gives PyTorch's value (NaN where it computes
inf·0 or inf/inf, silently, as GELU and SiLU do), but Softsign's slope, 0 (see it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import F32, F64, FLOAT_MAX, call_name, int_arg, real_arg
from funcdl._special import softplus
from funcdl.layers import _per_example as per_example
from funcdl.layers._norm_stats import compute_dtype
from funcdl.layers._params import in_param_dtypes, param_arrays, weak_dtype
from funcdl.layers._step import LAST_AXIS
from funcdl.layers._sums import block_sum
from funcdl.layers.activations import _elementwise, sigmoid
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    kept,
)

__all__ = ["CELU", "SELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LogSigmoid", "Mish",
           "PReLU", "ReLU6", "Softsign"]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _quiet() -> Any:
    """inf·0 (at an infinite input) is NaN, as PyTorch gives, and overflow is the right
    ±inf: neither is reported, as the other activations report neither."""
    return np.errstate(over="ignore", invalid="ignore")


def _clipped(name: str, lo: float, hi: float) -> Layer:
    """``y = min(max(x, lo), hi)``; ``dx = dy·[lo < x < hi]``, 0 at both kinks, and ``dy``
    at NaN (PyTorch's ``(x <= lo) | (x >= hi) ? 0 : dy``)."""

    def bounds(x: Array) -> tuple[Any, Any]:
        with np.errstate(over="ignore"):  # a bound beyond float32 is ±inf in float32
            return x.dtype.type(lo), x.dtype.type(hi)

    def f(x: Array) -> Array:
        a, b = bounds(x)
        y = np.maximum(x, a)
        out: Array = np.minimum(y, b, out=y) if type(y) is np.ndarray else np.minimum(y, b)
        return out

    def df(x: Array, y: Array, dy: Array) -> Array:
        a, b = bounds(x)
        flat = x <= a
        flat |= x >= b
        out: Array = dy * ~flat
        return out

    return _elementwise(name, f, df, reads="x")


def ReLU6() -> Layer:
    """``y = min(max(x, 0), 6)``; ``dx = dy·[0 < x < 6]`` (0 at x = 0 and 6, as PyTorch)."""
    return _clipped("ReLU6()", 0.0, 6.0)


def Hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> Layer:
    """``y = min(max(x, min_val), max_val)``; ``dx = dy·[min_val < x < max_val]`` (0 at the
    kinks, as PyTorch). ``min_val > max_val`` is refused, as PyTorch refuses it; an infinite
    bound is none (``Hardtanh(0, inf)`` is ReLU)."""
    lo = real_arg(min_val, "Hardtanh", "min_val", finite=False)  # ±inf: one side open
    hi = real_arg(max_val, "Hardtanh", "max_val", finite=False)
    if lo > hi:
        raise ValueError(f"Hardtanh: min_val must be <= max_val, got min_val={lo}, "
                         f"max_val={hi}; swap them")
    name = call_name("Hardtanh", (), min_val=(lo, -1.0), max_val=(hi, 1.0))
    return _clipped(name, lo, hi)


def Hardsigmoid() -> Layer:
    """``y = min(max(x + 3, 0), 6) / 6``; ``dx = dy/6·[-3 < x < 3]`` (0 at ±3 and NaN, as
    PyTorch; its float64 slope is float32's 1/6, 3e-8 off, this one is exact)."""

    def f(x: Array) -> Array:
        y: Array = np.clip(x + 3, 0, 6)
        y /= 6
        return y

    def df(x: Array, y: Array, dy: Array) -> Array:
        inside = x > -3
        inside &= x < 3
        out: Array = dy * inside
        out /= 6
        return out

    return _elementwise("Hardsigmoid()", f, df, reads="x")


def Hardswish() -> Layer:
    """``y = x·min(max(x + 3, 0), 6)/6``; ``dx = 0`` for x <= -3, ``dy (x/3 + 1/2)`` for
    -3 < x < 3, ``dy`` for x >= 3 and NaN (PyTorch's choice at the kinks: 0 at -3, 1 at 3).
    At -inf y is -inf·0, NaN, as PyTorch gives."""

    def f(x: Array) -> Array:
        g: Array = np.clip(x + 3, 0, 6)
        g /= 6
        with _quiet():
            g *= x
        return g

    def df(x: Array, y: Array, dy: Array) -> Array:
        # z = x clipped to [-3, 3], NaN taken as 3: z/3 + 1/2 is finite, then 0 where
        # x <= -3 and 1.5 - 1/2 where x >= 3 or NaN; no inf·0 on the way
        z = np.fmin(np.maximum(x, -3), 3)
        z /= 3
        z += 0.5
        z *= ~(x <= -3)
        z -= x.dtype.type(0.5) * ~(x < 3)  # a float 0.5 · bool: float64 for a 0-d x
        z *= dy
        return z

    return _elementwise("Hardswish()", f, df, reads="x")


def Mish() -> Layer:
    """``y = x·tanh(softplus(x))``; ``dx = dy (t + x σ(x) (1 - t²))``, t = tanh(softplus(x))
    (recomputed, as y/x is 0/0 at 0). At ±inf the vjp, at -inf y too, is NaN (inf·0), as
    PyTorch gives."""

    def f(x: Array) -> Array:
        t = np.tanh(softplus(x))
        with _quiet():
            t *= x
        return t

    def df(x: Array, y: Array, dy: Array) -> Array:
        t = np.tanh(softplus(x))
        d = 1 - t * t
        d *= sigmoid(x)
        with _quiet():
            d *= x
        d += t
        d *= dy
        return d

    return _elementwise("Mish()", f, df, reads="x")


def _elu(name: str, a: float, s: float, k: float,
         narrow: tuple[np.dtype[Any], ...] = ()) -> Layer:
    """``y = s·x`` for x > 0, ``s·a·(e^(kx) - 1)`` for x <= 0; ``dx = dy·s`` for x > 0 (and
    NaN), ``dy·s·a·k·e^(kx)`` for x <= 0 (PyTorch's ELU family: SELU, CELU). ``narrow``:
    the input dtypes whose range ``k`` or ``s·a`` is past, refused (0·inf would be NaN)."""

    def f(x: Array) -> Array:  # one term is exactly 0
        if x.dtype in narrow:
            raise ValueError(f"{name}: alpha={a:g} is past {x.dtype}'s range for a {x.dtype} "
                             f"input (alpha or 1/alpha overflows it; PyTorch refuses it too); "
                             f"pass a float64 input, or |alpha| in [{1 / FLOAT_MAX[F32]:.3g}, "
                             f"{FLOAT_MAX[F32]:.3g}]")
        with _quiet():  # k·x and e^(kx) overflow to inf for k < 0: the right limit
            y = np.expm1(k * np.minimum(x, 0))
            y *= s * a
            y += s * np.maximum(x, 0)
        return y

    def df(x: Array, y: Array, dy: Array) -> Array:
        down = x <= 0
        with _quiet():
            slope = np.exp(k * np.fmin(x, 0))  # fmin: NaN takes the x > 0 slope, as torch
            slope *= s * a * k
        slope *= down
        slope += x.dtype.type(s) * ~down  # (a float s · bool: float64 for a 0-d x)
        slope *= dy
        return slope

    return _elementwise(name, f, df, reads="x")


def SELU() -> Layer:
    """``y = scale·x`` for x > 0, ``scale·alpha·(e^x - 1)`` for x <= 0, PyTorch's constants
    (alpha ≈ 1.6733, scale ≈ 1.0507); ``dx = dy·scale`` (x > 0), ``dy·scale·alpha·e^x``
    (x <= 0: scale·alpha at 0, as PyTorch)."""
    return _elu("SELU()", _SELU_ALPHA, _SELU_SCALE, 1.0)


def CELU(alpha: float = 1.0) -> Layer:
    """``y = x`` for x > 0, ``alpha·(e^(x/alpha) - 1)`` for x <= 0; ``dx = dy`` (x > 0),
    ``dy·e^(x/alpha)`` (x <= 0). alpha 0 is refused, as PyTorch refuses it."""
    a = real_arg(alpha, "CELU", "alpha")
    if a == 0:
        raise ValueError("CELU: alpha must be non-zero (it divides x), got 0.0; "
                         "1.0 is PyTorch's default")
    name = call_name("CELU", () if a == 1.0 else (a,))
    if abs(a) < 1 / FLOAT_MAX[F64]:  # 1/alpha is inf, and 0·inf NaN at x >= 0
        raise ValueError(f"{name}: |alpha| must be at least {1 / FLOAT_MAX[F64]:.4g}, so that "
                         f"1/alpha, which scales x, is within float64's range")
    fits32 = 1 / FLOAT_MAX[F32] <= abs(a) <= FLOAT_MAX[F32]
    return _elu(name, a, 1.0, 1 / a, () if fits32 else (np.dtype(np.float32),))


def Softsign() -> Layer:
    """``y = x / (1 + |x|)``; ``dx = dy / (1 + |x|)²``. At ±inf y is inf/inf, NaN, as
    PyTorch and JAX give; dx there is 0, the limit (PyTorch's autograd gives NaN)."""

    def f(x: Array) -> Array:
        d = np.abs(x)
        d += 1
        with _quiet():
            return np.divide(x, d, out=d) if type(d) is np.ndarray else x / d

    def df(x: Array, y: Array, dy: Array) -> Array:
        r = np.abs(x)
        r += 1
        r = np.reciprocal(r)  # squared after: (1 + |x|)² would overflow
        r *= r
        r *= dy
        return r

    return _elementwise("Softsign()", f, df, reads="x")


def LogSigmoid() -> Layer:
    """``y = log σ(x) = min(x, 0) - log(1 + e^-|x|)``; ``dx = dy·σ(-x) = -dy·(e^y - 1)``,
    accurate at both ends (expm1 of a y near 0 keeps e^-x's digits)."""

    def f(x: Array) -> Array:
        s = np.log1p(np.exp(-np.abs(x)))
        return np.minimum(x, 0) - s

    def df(x: Array, y: Array, dy: Array) -> Array:
        slope = np.expm1(y)
        slope *= dy
        return np.negative(slope, out=slope) if type(slope) is np.ndarray else -slope

    return _elementwise("LogSigmoid()", f, df, reads="y")


def PReLU(num_parameters: int = 1, init: float = 0.25) -> Layer:
    """As ``torch.nn.PReLU``, the channel axis last: ``y = x`` for x > 0, ``a·x`` for
    x <= 0, a learnable slope per channel (``num_parameters`` C: the input's last axis has
    C entries; 1: one slope for all). params: ``{'a': full((C,), init)}`` (float32).
    vjp: ``dx = dy`` (x > 0), ``a·dy`` (x <= 0 or NaN: a at 0, as PyTorch);
    ``da = Σ dy·min(x, 0)`` over every axis but the channel's."""
    c = int_arg(num_parameters, "PReLU", "num_parameters", 1)
    a0 = real_arg(init, "PReLU", "init")
    name = call_name("PReLU", (), num_parameters=(c, 1), init=(a0, 0.25))
    if abs(a0) > FLOAT_MAX[F32]:  # np.full would overflow to inf, with NumPy's warning
        raise ValueError(f"{name}: init must be within float32's range (the params' dtype), "
                         f"|init| <= {FLOAT_MAX[F32]:.4g}; 0.25 is PyTorch's default")

    def shape_ok(shape: tuple[Any, ...]) -> bool:
        return c == 1 or (len(shape) >= 1 and shape[-1] in (c, None))

    def wrong(shape: tuple[Any, ...]) -> ValueError:
        return ValueError(f"{name}: expected an input whose last (channel) axis has {c} "
                          f"entries, one per slope, got shape {shape}; pass "
                          f"num_parameters=<channels> or 1")

    def init_(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=0)
        if not shape_ok(shape):
            raise wrong(shape)
        return shape, {"a": np.full(c, a0, np.float32)}

    def prepare(params: Any, x: Any) -> tuple[Array, Array]:
        x = as_array(name, x, weak_dtype(params, "a", name))
        (a,) = param_arrays(name, params, ("a",))
        if a.shape != (c,):
            raise ValueError(f"{name}: params['a'] has shape {a.shape}, expected ({c},)")
        if not shape_ok(x.shape):
            raise wrong(x.shape)
        dt = compute_dtype(x, a)
        return x.astype(dt, copy=False), a.astype(dt, copy=False)

    def forward(x: Array, a: Array) -> tuple[Array, Array]:
        """``(y, min(x, 0))``: the pullback's da reads the negative part too."""
        neg = np.minimum(x, 0)
        with _quiet():  # a·x overflows for |a| > 1; a = 0 at -inf is 0·inf, NaN as PyTorch
            y = neg * (a if c > 1 else a[0])
        # x where x > 0, as PyTorch: not 0·a + x, which an inf or NaN slope makes NaN
        return np.where(x > 0, x, y), neg

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(*prepare(params, x))[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x_dtype = getattr(x, "dtype", None)
        xs, a = prepare(params, x)
        y, neg = forward(xs, a)
        y = kept(y)
        each = per_example.ON.get()
        if each and xs.ndim < (2 if c > 1 else 1):
            raise ValueError(f"{name}: per-example gradients need a batch axis, got an "
                             f"input of shape {xs.shape}")

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            up = xs > 0
            slope = np.where(up, xs.dtype.type(1), a if c > 1 else a[0])  # not 0·a at x > 0
            slope *= dy
            with _quiet():  # (a sum past the float range: inf, as the products')
                t = neg * dy
                if each:  # per example (_per_example): (N, c), each example's own sum
                    da = (per_example.sums(t) if c > 1 else
                          t.reshape(len(t), math.prod(t.shape[1:])).sum(axis=1, keepdims=True))
                else:
                    da = (block_sum(t, t.ndim - 1, t.ndim) if c > 1 else np.atleast_1d(t.sum()))
            return (in_param_dtypes({"a": da}, params), in_input_dtype(slope, x_dtype))

        return y, pullback

    return Layer(init_, apply, vjp, name=name, step=LAST_AXIS)  # a slope per channel

