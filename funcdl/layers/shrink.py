"""PyTorch's shrinking and gating activations: Softshrink, Hardshrink, Tanhshrink and
Threshold from activations.py's factory (forward ``f(x)`` and vjp ``dx = df(x, y, dy)``
side by side); Softmin along an axis; GLU, which halves an axis.

Semantics, defaults and the subgradient at each kink are ``torch.nn.functional``'s,
NaN included (it passes through the forward, and its slope is torch's).
PyTorch's ``Softmax2d`` is not here: it is a softmax over the channel axis, which in
funcdl's NHWC layout is the last, i.e. ``Softmax()`` (axis=-1) as it is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import call_name, int_arg, real_arg
from funcdl.layers._step import LAST_AXIS
from funcdl.layers.activations import _elementwise, _normalised, sigmoid
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    axis_in_range,
    check_cotangent,
    check_in_shape,
    no_params,
)

__all__ = ["GLU", "Hardshrink", "Softmin", "Softshrink", "Tanhshrink", "Threshold"]


def _lambd(ctor: str, lambd: Any) -> float:
    return real_arg(lambd, ctor, "lambd (the half-width of the zeroed band)", low=0.0,
                    hint="; pass a number >= 0, e.g. 0.5")


_F32_MAX = float(np.finfo(np.float32).max)


def _in_range(x: Array, bound: float) -> float:
    """A bound as x's dtype holds it: past float32's range, ±inf, quietly (NumPy's cast of
    the Python float would warn)."""
    if abs(bound) > _F32_MAX and x.dtype == np.float32:
        return math.copysign(math.inf, bound)
    return bound


def _outside(x: Array, lam: float) -> Array:
    """``not -λ <= x <= λ``: True at NaN, where PyTorch's shrink slopes pass ``dy``."""
    lam = _in_range(x, lam)
    band = x >= -lam
    band &= x <= lam
    return ~band


def Softshrink(lambd: float = 0.5) -> Layer:
    """``y = x - λ`` for ``x > λ``, ``x + λ`` for ``x < -λ``, else 0 (``x - clip(x, -λ, λ)``);
    ``dx = dy·[y != 0]``, which is ``dy·[not -λ <= x <= λ]`` (0 at ±λ, ``dy`` at NaN, as
    PyTorch; and at a NaN output, ±inf with λ past the dtype's range). ``λ >= 0``, as
    PyTorch requires."""
    lam = _lambd("Softshrink", lambd)
    name = call_name("Softshrink", (), lambd=(lam, 0.5))

    def f(x: Array) -> Array:
        # x - x is exactly 0 inside the band; NaN stays NaN through clip
        bound = _in_range(x, lam)
        c = np.clip(x, -bound, bound)
        out: Array = np.subtract(x, c, out=c) if type(c) is np.ndarray else x - c
        return out

    def df(x: Array, y: Array, dy: Array) -> Array:
        out: Array = dy * (y != 0)  # the forward's band test: y is 0 exactly inside it
        return out

    return _elementwise(name, f, df, reads="y")


def Hardshrink(lambd: float = 0.5) -> Layer:
    """``y = x`` for ``|x| > λ``, else 0; ``dx = dy·[y != 0]``, i.e. ``dy·[not -λ <= x <=
    λ]`` (0 at ±λ; ``dy`` at NaN, which passes through, as PyTorch's; see Softshrink).
    ``λ >= 0``."""
    lam = _lambd("Hardshrink", lambd)
    name = call_name("Hardshrink", (), lambd=(lam, 0.5))

    def f(x: Array) -> Array:
        out: Array = x * _outside(x, lam)  # -0.0 inside the band for x < 0: equal to 0
        return out

    def df(x: Array, y: Array, dy: Array) -> Array:
        out: Array = dy * (y != 0)  # the forward's band test: y is 0 exactly inside it
        return out

    return _elementwise(name, f, df, reads="y")


def Tanhshrink() -> Layer:
    """``y = x - tanh(x)``; ``dx = dy·tanh²(x)``, tanh recomputed: ``x - y`` would lose
    its digits to cancellation at large ``|x|``."""

    def f(x: Array) -> Array:
        out: Array = x - np.tanh(x)
        return out

    def df(x: Array, y: Array, dy: Array) -> Array:
        t = np.tanh(x)
        t *= t
        t *= dy
        return t

    return _elementwise("Tanhshrink()", f, df, reads="x")


def Threshold(threshold: float, value: float) -> Layer:
    """``y = x`` for ``x > threshold``, else ``value``; ``dx = dy·[not x <= threshold]``
    (NaN passes through with slope 1, as PyTorch's). Both arguments are required, as in
    PyTorch; ``Threshold(0, 0)`` is ReLU."""
    t = real_arg(threshold, "Threshold", "threshold", finite=False)
    v = real_arg(value, "Threshold", "value", finite=False)
    name = f"Threshold({t!r}, {v!r})"

    def f(x: Array) -> Array:
        tt, vv = x.dtype.type(_in_range(x, t)), x.dtype.type(_in_range(x, v))
        out: Array = np.where(x <= tt, vv, x)  # where: the mask is the data, no faster form
        return out

    def df(x: Array, y: Array, dy: Array) -> Array:
        out: Array = dy * ~(x <= x.dtype.type(_in_range(x, t)))
        return out

    return _elementwise(name, f, df, reads="x")


def Softmin(axis: int = -1) -> Layer:
    """``y = e^-x / Σ e^-x`` along ``axis`` (softmax of ``-x``);
    ``dx = -y (dy - Σ dy·y)``, the softmax vjp with its sign flipped."""
    a = int_arg(axis, "Softmin", "axis", None)
    return _normalised(f"Softmin(axis={a})", a, log=False, negate=True)


def GLU(axis: int = -1) -> Layer:
    """PyTorch's gated linear unit: ``x = [a, b]`` split in halves along ``axis`` (size
    ``2m -> m``), ``y = a·σ(b)``; vjp: ``da = dy·σ(b)``, ``db = dy·a·σ(b)(1 - σ(b))``."""
    ax = int_arg(axis, "GLU", "axis", None)
    name = f"GLU(axis={ax})"

    def halves(size: int | None, shape: tuple[Any, ...]) -> int | None:
        if size is not None and size % 2:
            raise ValueError(f"{name}: the axis {ax} is split in two halves and must have "
                             f"an even size, got size {size} (input shape {tuple(shape)}); "
                             f"give the layer before it an even number of outputs")
        return None if size is None else size // 2

    def check(params: Any, x: Any) -> tuple[Array, int, int]:
        no_params(name, params)
        xa = as_floats(name, x)
        if xa.ndim == 0:
            raise ValueError(f"{name}: expected an input with an axis {ax} to halve, got a "
                             f"scalar (shape ())")
        k = axis_in_range(name, ax, xa.shape)
        m = halves(xa.shape[k], xa.shape)
        assert m is not None
        return xa, k, m

    def split(x: Array, k: int, m: int) -> tuple[Array, Array]:
        lo = (slice(None),) * k
        return x[(*lo, slice(0, m))], x[(*lo, slice(m, 2 * m))]

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        xa, k, m = check(params, x)
        a, b = split(xa, k, m)
        g = sigmoid(b)
        g *= a
        return g

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        xa, k, m = check(params, x)
        a, b = split(xa, k, m)
        s = sigmoid(b)
        y = a * s
        x_shape = xa.shape

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dx = np.empty(x_shape, y_dtype)
            da, db = split(dx, k, m)
            np.multiply(dy, s, out=da)
            # σ(b)(1 - σ(b)) <= 1/4 first, a and dy after: a·σ(b) alone can overflow where
            # db is finite (a = 1e308, b = 0.5: 9.4e307, torch's), or meet 0 as inf·0
            np.subtract(1, s, out=db)
            db *= s
            db *= dy
            db *= a
            return params, dx

        return y, pullback

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=1)
        k = axis_in_range(name, ax, shape)
        return (*shape[:k], halves(shape[k], shape), *shape[k + 1:]), ()

    return Layer(init, apply, vjp, name=name, step=LAST_AXIS if ax == -1 else None)
