"""Activations: elementwise families from one factory, plus Softmax and LogSoftmax.

Each entry gives the forward ``f(x)`` and the vjp ``dx = df(x, y, dy)``; the pullback keeps
only what ``df`` reads (x, y or both). ELU and Softplus take one more exponential there,
for the digits a slope rebuilt from y would lose (see ELU). All forms are stable at any
finite input: no overflow warning, no NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import int_arg, real_arg
from funcdl._special import shifted_exp
from funcdl.layers._step import LAST_AXIS, POSITIONWISE
from funcdl.layers.base import (
    Array,
    Layer,
    Pointwise,
    Shape,
    as_floats,
    axis_in_range,
    check_cotangent,
    check_in_shape,
    kept,
    no_params,
)

__all__ = [
    "ELU",
    "LeakyReLU",
    "LogSoftmax",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "sigmoid",
]


def _shapeless_init(name: str) -> Callable[[random.Key, Shape], tuple[Shape, Any]]:
    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        return check_in_shape(name, in_shape, min_rank=0), ()
    return init


def _elementwise(name: str, f: Callable[[Array], Array],
                 df: Callable[[Array, Array, Array], Array],
                 commutes_with_max: bool = False, reads: str = "xy") -> Layer:
    """A parameterless layer ``y = f(x)`` with ``dx = df(x, y, dy)`` (``commutes_with_max``,
    ``reads``: see ``Pointwise``; the pullback keeps only what ``df`` reads)."""
    pointwise = Pointwise(name, f, df, commutes_with_max, reads)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        return f(as_floats(name, x))

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        x = as_floats(name, x)
        y = kept(f(x))
        y_shape, y_dtype = y.shape, y.dtype
        xr, yr = pointwise.residuals(x, y)

        def pullback(dy: Any) -> tuple[Any, Array]:
            return params, df(xr, yr, check_cotangent(name, dy, y_shape, y_dtype))

        return y, pullback

    return Layer(_shapeless_init(name), apply, vjp, name=name, pointwise=pointwise,
                 step=POSITIONWISE)


def sigmoid(x: Array) -> Array:
    """1 / (1 + e^-x). For x below about -88 (float32) e^-x overflows to inf and the result
    is the correct 0; the overflow is expected, so it is not reported."""
    with np.errstate(over="ignore"):
        e = np.exp(-x)
    e += 1
    # A 0-d input gives a NumPy scalar here, which has no buffer to write into.
    out: Array = np.reciprocal(e, out=e) if type(e) is np.ndarray else np.reciprocal(e)
    return out


def ReLU() -> Layer:
    """``y = max(x, 0)``; ``dx = dy · [y != 0]``: 0 at x <= 0 (at 0 too), dy at a NaN (y
    NaN), as PyTorch's ``threshold_backward`` on the output; a NaN or inf ``dy`` gives NaN
    where y is 0 too (torch 0: a masked copy would cost 8x the product).

    In a Sequential, a ReLU right before a MaxPool2D runs after it, on a quarter of the
    values for a 2 x 2 pool (the same numbers; see ``Pointwise.commutes_with_max``)."""
    return _elementwise("ReLU()", lambda x: np.maximum(x, 0),
                        lambda x, y, dy: dy * (y != 0), commutes_with_max=True, reads="y")


def LeakyReLU(alpha: float = 0.01) -> Layer:
    """``y = x if x > 0 else alpha·x``; ``dx = dy if x > 0 else alpha·dy``.

    Written with max/min, not ``np.where``: NumPy's where on an unpredictable mask costs
    about ten elementwise passes, as in ELU and Softplus below, which keep it only for
    settings the max cannot express ((64, 28, 28, 16) float32, NumPy 2.4: LeakyReLU apply
    3.0 ms with where, 0.24 ms without, a one-off timing not kept, in commit ffa9748's
    message; ``benchmarks/layer_micro.py`` times every activation now)."""
    a = real_arg(alpha, "LeakyReLU", "alpha")
    pick = np.maximum if a <= 1 else np.minimum  # x or a·x: the larger one when a <= 1
    if 0 <= a <= 1:  # the slope as max(a, [x > 0]): exactly a or 1
        def df(x: Array, y: Array, dy: Array) -> Array:
            out: Array = dy * np.maximum(x > 0, dy.dtype.type(a))
            return out
    else:  # the slope as a·[x <= 0] + [x > 0], exactly a or 1 (a NaN x takes a, as torch)
        def df(x: Array, y: Array, dy: Array) -> Array:
            up = x > 0
            slope: Array = np.multiply(~up, dy.dtype.type(a))
            slope += up
            slope *= dy
            return slope
    if a == 0:  # max(x, 0·x) is NaN at x = inf (0·inf), where x is picked
        def zero_slope(x: Array) -> Array:
            y: Array = np.maximum(x, 0)
            below = np.isneginf(x)  # 0·(-inf) is NaN, as torch's and JAX's leaky_relu give
            if below.any():
                y[below] = np.nan
            return y

        return _elementwise(f"LeakyReLU({a})", zero_slope, df, reads="x")
    if abs(a) <= 1:
        return _elementwise(f"LeakyReLU({a})", lambda x: pick(x, a * x), df, reads="x")

    def f(x: Array) -> Array:
        with np.errstate(over="ignore"):  # a·x overflows for huge x even where x is picked
            out: Array = pick(x, a * x)
        return out
    return _elementwise(f"LeakyReLU({a})", f, df, reads="x")


def Tanh() -> Layer:
    """``y = tanh(x)``; ``dx = dy · (1 - y²)``."""
    return _elementwise("Tanh()", np.tanh, lambda x, y, dy: dy * (1 - y * y), reads="y")


def Sigmoid() -> Layer:
    """``y = σ(x)``; ``dx = dy · y (1 - y)``."""
    return _elementwise("Sigmoid()", sigmoid, lambda x, y, dy: dy * (y * (1 - y)),
                        reads="y")


def Softplus(beta: float = 1.0, threshold: float = 20.0) -> Layer:
    """As ``torch.nn.Softplus``: ``y = log(1 + e^(βx)) / β``, and ``y = x`` where
    ``βx > threshold``; ``dx = dy · σ(βx) = dy · (1 - e^(-βy))``, and ``dx = dy`` there.

    The linear part starts where ``e^(-βx)`` is below float32's resolution, so it changes
    nothing in float32, and makes float64 agree with PyTorch there to the last digit (below
    it, within 2 ulp: the log1p and exp of another library; ``jax.nn.softplus`` has no
    threshold: it differs by up to ``e^-20`` there; ``threshold=inf`` gives its numbers).
    """
    b = real_arg(beta, "Softplus", "beta", low=0.0, open_low=True)
    t = real_arg(threshold, "Softplus", "threshold", finite=False)  # inf: none, as JAX
    name = "Softplus()" if (b, t) == (1.0, 20.0) else f"Softplus(beta={b}, threshold={t})"

    def scaled(x: Array) -> Array:  # βx, with no pass over x at the default β = 1
        if b == 1.0:
            return x
        with np.errstate(over="ignore"):  # βx beyond the range is inf: the linear part
            return b * x

    def plain(x: Array) -> bool:
        # float32 past x = 17.5: x + e^-x rounds to x and σ(x) to 1, so the threshold (at
        # the default β = 1) changes no bit, and its masks can be skipped
        return b == 1.0 and t >= 17.5 and x.dtype == np.float32

    def f(x: Array) -> Array:
        # max(x, 0) + log(1 + e^-|βx|)/β, the log term zeroed past the threshold (y = x
        # there, as max(x, 0) is x when t >= 0); np.logaddexp is a scalar loop, 12x slower
        bx = scaled(x)
        soft = np.abs(bx)
        if type(soft) is np.ndarray:  # in place; a 0-d input gives a NumPy scalar here
            np.negative(soft, out=soft)
            np.log1p(np.exp(soft, out=soft), out=soft)
        else:
            soft = np.log1p(np.exp(-soft))
        if t < 0:  # the linear part reaches below 0
            return np.where(bx > t, x, soft / b + np.maximum(x, 0))
        if not plain(x):
            soft *= bx <= t
        if b != 1.0:
            soft /= b
        soft += np.maximum(x, 0)
        return soft

    def df(x: Array, y: Array, dy: Array) -> Array:
        slope = -np.expm1(-scaled(y))  # σ(βx), in [0, 1): max with [βx > t] is 1 there
        if t < 0:
            return np.where(scaled(x) > t, dy, dy * slope)
        if plain(x):
            slope *= dy
            return slope
        return dy * np.maximum(slope, scaled(x) > t)

    return _elementwise(name, f, df)


def ELU(alpha: float = 1.0) -> Layer:
    """``y = x if x > 0 else alpha (e^x - 1)``; ``dx = dy if x > 0 else dy·alpha·e^x``.

    Not ``dy (y + alpha)``: adding alpha back cancels e^x's digits (3% off at x = -13.7 in
    float32, 0 below -17, where PyTorch's ``alpha·e^x`` keeps them)."""
    a = real_arg(alpha, "ELU", "alpha")
    if 0 < a <= 1:  # a·(e^x - 1) >= x for x <= 0, 0 < x above: the max picks the branch
        return _elementwise(
            f"ELU({a})", lambda x: np.maximum(x, a * np.expm1(np.minimum(x, 0))),
            # ~(x <= 0), fmin: NaN takes the x > 0 slope, dy, as torch's on a few values
            # (0 < a <= 1 here; [x > 0] gave a there, what fmin(NaN, 0) = 0 makes)
            lambda x, y, dy: dy * np.fmax(~(x <= 0), a * np.exp(np.fmin(x, 0))), reads="x")

    def f(x: Array) -> Array:  # a·(e^min(x,0) - 1) + max(x, 0): one term is exactly 0
        y = np.expm1(np.minimum(x, 0))
        y *= a
        y += np.maximum(x, 0)
        return y

    def df(x: Array, y: Array, dy: Array) -> Array:  # a·e^x·[x <= 0] + [x > 0], likewise
        up = ~(x <= 0)  # NaN takes the x > 0 slope, dy, as torch's
        slope = np.exp(np.fmin(x, 0))
        slope *= a
        slope *= ~up
        slope += up
        slope *= dy
        return slope

    return _elementwise(f"ELU({a})", f, df, reads="x")


def along_axis(name: str, axis: int, forward: Callable[[Array], tuple[Array, Any]],
               backward: Callable[[Array, Any, Array], Array]) -> Layer:
    """A parameterless layer normalising along ``axis``, any shape in and out, from
    ``forward(x) -> (y, residual)`` and ``backward(y, residual, dy) -> dx``: the checks, the
    apply and vjp shells (y kept read-only for the pullback) and init that Softmax,
    LogSoftmax, Softmin and Sparsemax share."""

    def check(x: Any) -> Array:
        xa = as_floats(name, x)
        axis_in_range(name, axis, xa.shape)
        return xa

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        return forward(check(x))[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        y, residual = forward(check(x))
        kept(y)

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape, y.dtype)
            return params, backward(y, residual, dy)

        return y, pullback

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=1)
        axis_in_range(name, axis, shape)
        return shape, ()

    # along the last axis: position-wise on (N, T, features); another axis may be time
    return Layer(init, apply, vjp, name=name, step=LAST_AXIS if axis == -1 else None)


def _normalised(name: str, axis: int, log: bool, negate: bool = False) -> Layer:
    """Softmax / LogSoftmax along ``axis`` of ``x``, or of ``-x`` with ``negate`` (Softmin),
    shifted by the max so e^z never overflows.

    softmax vjp: ``dx = y (dy - Σ dy·y)``; log-softmax vjp: ``dx = dy - e^y Σ dy``; both
    negated with ``negate`` (the chain rule through ``-x``).
    """

    def forward(x: Array) -> tuple[Array, tuple[Array, Array]]:
        """``(y, (e, total))``: the output, and shifted_exp's e and Σ e for the pullback."""
        if x.shape[axis] == 0:  # nothing to normalise, and a max over it has no identity
            return x.copy(), (x, np.ones_like(x.sum(axis=axis, keepdims=True)))
        s, e, total = shifted_exp(-x if negate else x, axis, keep_s=log)
        if log:  # s, e and total are fresh: divide and subtract in place
            s -= np.log(total)
            return s, (e, total)
        return np.divide(e, total, out=e), (e, total)  # the pullback reads y, not e

    def backward(y: Array, residual: tuple[Array, Array], dy: Array) -> Array:
        e, total = residual
        if log:  # e^y = e / total: a division, not a second exp, on Σdy's few entries
            g = dy.sum(axis=axis, keepdims=True)
            g /= total
            dx = e * g
            # -(dy - dx) is dx - dy exactly: the negation costs no pass
            out: Array = (np.subtract(dx, dy, out=dx) if negate
                          else np.subtract(dy, dx, out=dx))
            return out
        s = (dy * y).sum(axis=axis, keepdims=True)
        dx_: Array = s - dy if negate else dy - s  # likewise
        if type(dx_) is not np.ndarray:  # 0-d: a NumPy scalar
            return y * dx_
        # y·(dy - s), one array fewer; y first, as before: of two NaNs the product keeps the
        # first one's sign bit
        return np.multiply(y, dx_, out=dx_)

    return along_axis(name, axis, forward, backward)


def Softmax(axis: int = -1) -> Layer:
    """``y = e^x / Σ e^x`` along ``axis`` (any shape); vjp: ``dx = y ⊙ (dy - Σ dy ⊙ y)``,
    the sum along ``axis``."""
    a = int_arg(axis, "Softmax", "axis", None)  # int(1.5) would normalise over axis 1
    return _normalised(f"Softmax(axis={a})", a, log=False)


def LogSoftmax(axis: int = -1) -> Layer:
    """``y = x - log Σ e^x`` along ``axis`` (any shape); vjp: ``dx = dy - e^y Σ dy``,
    the sum along ``axis``."""
    a = int_arg(axis, "LogSoftmax", "axis", None)
    return _normalised(f"LogSoftmax(axis={a})", a, log=True)

