"""LocalResponseNorm: PyTorch's ``nn.LocalResponseNorm`` (AlexNet's), across channels, which
are the last axis in funcdl's NHWC / NWC layout.

Each channel ``c`` is divided by a power of the sum of squares over the window of channels
``[c - size//2, c + (size-1)//2]`` (those past either end count as zeros, as torch's
zero-padded average pool, which divides by ``size`` whatever the edge). The window sums
are ``size`` shifted slice additions over the channel axis (each one vectorised over the
batch and pixels; ``size`` is small, 5 in AlexNet), not a cumulative sum, whose
differences would lose a small window's digits next to large channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import call_name, int_arg, real_arg
from funcdl.layers._step import LAST_AXIS
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    kept,
    no_params,
)

__all__ = ["LocalResponseNorm"]


def _window_sum(a: Array, lo: int, hi: int) -> Array:
    """``s[..., c] = Σ_{δ=-lo..hi} a[..., c + δ]`` over the last axis, entries past either
    end left out: one slice addition per offset."""
    c = a.shape[-1]
    s = a.copy()
    for d in range(-min(lo, c - 1), min(hi, c - 1) + 1):
        if d > 0:
            s[..., :c - d] += a[..., d:]
        elif d < 0:
            s[..., -d:] += a[..., :c + d]
    return s


def LocalResponseNorm(size: int, alpha: float = 1e-4, beta: float = 0.75,
                      k: float = 1.0) -> Layer:
    """``(N, ..., C) -> (N, ..., C)`` (rank >= 3, as PyTorch), no params.

    forward: ``d_c = k + α/size · Σ_{j in W(c)} x_j²``, ``y_c = x_c · d_c^-β``, with
    ``W(c) = [c - size//2, c + (size-1)//2]`` clipped to the channels;
    vjp: ``dx_i = dy_i d_i^-β - (2αβ/size) x_i Σ_{c: i in W(c)} dy_c x_c d_c^(-β-1)``.
    """
    n = int_arg(size, "LocalResponseNorm", "size (the channels in each window)", minimum=1)
    a = real_arg(alpha, "LocalResponseNorm", "alpha")
    b = real_arg(beta, "LocalResponseNorm", "beta")
    kk = real_arg(k, "LocalResponseNorm", "k")
    name = call_name("LocalResponseNorm", (n,), alpha=(a, 1e-4), beta=(b, 0.75), k=(kk, 1.0))
    lo, hi = n // 2, (n - 1) // 2

    def rank3(shape: tuple[Any, ...], at_init: bool) -> None:
        if len(shape) < 3:
            what, got = ("shape ", "") if at_init else ("", "shape ")
            raise ValueError(f"{name}: expected an input {what}(N, ..., C) of rank >= 3, "
                             f"channels last (NWC or NHWC), got {got}{tuple(shape)}; for "
                             f"(N, C) add an axis: x[:, None, :]")

    def check(params: Any, x: Any) -> Array:
        no_params(name, params)
        xa = as_floats(name, x)
        rank3(xa.shape, False)
        return xa

    def forward(x: Array) -> tuple[Array, Array, Array]:
        """``(y, d^-β, d)``; squares past the dtype's range are inf, d^-β 0, silently (as
        torch's); with k = 0 a window of zeros has d = 0, d^-β inf and y NaN, silently too."""
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            d = _window_sum(x * x, lo, hi)
            d *= a / n
            d += kk
            p = np.power(d, -b)
            return x * p, p, d

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(check(params, x))[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        xa = check(params, x)
        y, p, d = forward(xa)
        y = kept(y)  # read-only: the pullback reads it, and a caller's y -= 1 would move dx

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape, y.dtype)
            if kk == 0:  # d = 0 in a window of zeros: inf·0 and 0/0, NaN as torch's, quietly
                with np.errstate(divide="ignore", invalid="ignore"):
                    return grads(dy)
            return grads(dy)

        def grads(dy: Array) -> tuple[Any, Array]:
            dx = dy * p
            if b != 0 and a != 0:
                g = dy * y  # dy_c x_c d_c^(-β-1) as dy_c y_c / d_c: no second power
                g /= d
                # the reversed window: i in W(c) iff c in [i - hi, i + lo]
                r = _window_sum(g, hi, lo)
                r *= xa
                r *= 2 * a * b / n
                dx -= r
            return params, dx

        return y, pullback

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=0)
        rank3(shape, True)
        return shape, ()

    return Layer(init, apply, vjp, name=name, step=LAST_AXIS)  # across the channels, last
