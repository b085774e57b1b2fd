"""LayerNorm: normalisation over each example's trailing (or given) axes, PyTorch's
``nn.LayerNorm`` (split from norm.py, which re-exports it beside BatchNorm).

Every computation runs in the input's and the params' floating dtypes promoted (float32 in
with init's float32 params, float32 out; see norm.py); where float32 squares overflow the
statistics are taken again in float64 (see norm.py and ``_norm_stats.moments``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, call_name, eps_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._affine import fixed_affine
from funcdl.layers._norm_stats import (
    channel_vectors,
    compute_dtype,
    example_axes,
    moments,
    trailing,
)
from funcdl.layers._params import in_param_dtypes, weak_dtype
from funcdl.layers._step import LAST_AXIS
from funcdl.layers._sums import block_sum, chan, per_row
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
)

__all__ = ["LayerNorm"]


# ---------------------------------------------------------------------------- LayerNorm

def LayerNorm(eps: float = 1e-5, axis: int | tuple[int, ...] = -1,
              elementwise_affine: bool = True, bias: bool = True) -> Layer:
    """Layer normalisation of each example over the axes ``axis`` (an int or a tuple; on
    trailing axes this is PyTorch's ``LayerNorm(normalized_shape)``).

    params: ``{'scale': ones(S), 'bias': zeros(S)}``, S the normalised axes' shape.
    forward: ``y = scale·x̂ + bias``, ``x̂ = (x - μ)/sqrt(σ² + eps)``, μ and (biased) σ² over
    the normalised axes of each example;
    vjp: ``dx = (g - mean(g) - x̂·mean(g·x̂))/sqrt(σ² + eps)`` with ``g = dy·scale``,
    ``dscale = Σ dy·x̂``, ``dbias = Σ dy`` (means over the normalised axes, sums over the rest).
    ``elementwise_affine=False``, as PyTorch's: no params (``()``), ``y = x̂``.
    ``bias=False``, as PyTorch's (2.1): params ``{'scale'}`` alone, ``y = scale·x̂``, the
    same vjp without ``dbias``.
    """
    raw = axis if isinstance(axis, tuple) else (axis,)
    if not raw or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in raw):
        raise TypeError(f"LayerNorm: axis must be an int or a non-empty tuple of ints, got "
                        f"{axis!r}")
    axes = tuple(int(a) for a in raw)
    eps = eps_arg(eps, "LayerNorm", "normalized_shape",
                  "so torch's LayerNorm(C) is LayerNorm() here, with eps 1e-5, over the "
                  "last axis (axis= for others)")
    affine = bool_arg(elementwise_affine, "LayerNorm", "elementwise_affine")
    shift = bool_arg(bias, "LayerNorm", "bias")
    name = call_name("LayerNorm", (), eps=(eps, 1e-5),
                     axis=(axes if isinstance(axis, tuple) else axes[0], -1),
                     elementwise_affine=(affine, True), bias=(shift, True))
    # without affine, fixed_affine below hands in a constant scale and bias: read both
    shift = shift or not affine
    keys = ("scale", "bias") if shift else ("scale",)

    def pair(dscale: Array, total: Callable[[Array], Array], dy: Array) -> dict[str, Array]:
        """The affine grads: ``dscale``, and ``dbias = total(dy)`` when there is a bias."""
        return {"scale": dscale, "bias": total(dy)} if shift else {"scale": dscale}

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        norm_shape = tuple(shape[a] for a in example_axes(name, axis, axes, shape))
        if any(d is None or d == 0 for d in norm_shape):
            raise ValueError(f"{name}: the normalised axes {axis} of in_shape must have known "
                             f"sizes > 0, got {shape}")
        sizes = cast(tuple[int, ...], norm_shape)  # known: checked above
        params = {"scale": np.ones(sizes, np.float32)}
        if shift:
            params["bias"] = np.zeros(sizes, np.float32)
        return shape, params

    def prepare(params: Any, x: Any) -> Any:
        x = as_array(name, x, weak_dtype(params, "scale", name, keys))
        res = example_axes(name, axis, axes, x.shape)
        normed = tuple(x.shape[a] for a in res)
        if 0 in normed:  # as init: no mean over nothing (and the (rows, S) view needs S)
            raise ValueError(f"{name}: the normalised axes {axis} of the input must have "
                             f"sizes > 0, got an input of shape {x.shape}")
        scale, *bias = channel_vectors(name, params, keys, "params", fits=normed)
        if normed != scale.shape:
            raise ValueError(f"{name}: expected the normalised axes {axis} of the input to "
                             f"have shape {scale.shape} as the params were initialised, got an "
                             f"input of shape {x.shape}")
        dt = compute_dtype(x, scale, *bias)
        bshape = tuple(x.shape[i] if i in res else 1 for i in range(x.ndim))
        other = tuple(i for i in range(x.ndim) if i not in res)
        return (x.astype(dt, copy=False), res, other, scale.astype(dt).reshape(bshape),
                bias[0].astype(dt).reshape(bshape) if bias else None)

    def forward(x: Array, res: tuple[int, ...], scale: Array, bias: Array | None,
                keep: bool) -> tuple[Array, Array | None, Array]:
        """``(y, x̂ (or None), 1/sqrt(σ² + eps))``; apply and vjp share it bit for bit.
        Trailing normalised axes of S values run as ``(rows, S)``: statistics by BLAS row
        sums, per-row and per-column factors expanded to whole rows (``_sums.chan``,
        ``_sums.per_row``)."""
        if not trailing(x, res):
            with np.errstate(over="ignore"):
                _, xc, sq, _, inv_std = moments(x, lambda a: a.mean(axis=res, keepdims=True),
                                                np.subtract, eps)
                xhat = np.multiply(xc, inv_std, out=xc)
            y = sq if keep else xhat  # kept, x̂ is the pullback's: y goes in sq
            if affine:
                np.multiply(xhat, scale, out=y)
                if bias is not None:
                    y += bias
            elif keep:  # y = x̂, a copy: the caller may write to y
                np.copyto(y, xhat)
            return y, (xhat if keep else None), inv_std
        s = scale.size
        x2 = x.reshape(-1, s)
        with np.errstate(over="ignore"):
            _, xc, sq, _, inv_std = moments(x2, lambda a: block_sum(a, 0, 1) / s,
                                            lambda a, b, out=None: np.subtract(
                                                a, per_row(b, s), out=out), eps)
            xhat = np.multiply(xc, per_row(inv_std, s), out=xc)
        y = sq if keep else xhat
        if affine:
            chan(np.multiply, xhat, scale.reshape(s), out=y)
            if bias is not None:
                chan(np.add, y, bias.reshape(s), out=y)
        elif keep:
            np.copyto(y, xhat)
        return (y.reshape(x.shape), (xhat if keep else None),
                inv_std.reshape(*x.shape[:x.ndim - len(res)], *(1,) * len(res)))

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x, res, _, scale, bias = prepare(params, x)
        return forward(x, res, scale, bias, keep=False)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x_dtype = getattr(x, "dtype", None)
        x, res, other, scale, bias = prepare(params, x)
        y, xhat, inv_std = forward(x, res, scale, bias, keep=True)
        assert xhat is not None
        rows = trailing(x, res)
        shape = tuple(x.shape[a] for a in res)
        block = res == tuple(range(res[0], res[0] + len(res)))  # trailing axes, or any run

        def total(a: Array) -> Array:  # Σ over the examples' axes, in params' shape
            return (block_sum(a, res[0], res[0] + len(res)) if block
                    else a.sum(axis=other).reshape(shape))

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            if rows:  # x̂ as (rows, S)
                return rows_pullback(dy.reshape(xhat.shape))
            t = dy * xhat
            g, grads = dy, cast(Any, ())  # without affine: scale is 1, and no grads made
            if affine:
                grads = in_param_dtypes(pair(total(t), total, dy), params)
                g = dy * scale
                t *= scale                                        # g·x̂
            dx = g - g.mean(axis=res, keepdims=True)
            dx -= xhat * t.mean(axis=res, keepdims=True)
            dx *= inv_std
            return grads, in_input_dtype(dx, x_dtype)

        def rows_pullback(dy: Array) -> tuple[Any, Array]:
            """The same on (rows, S), with ``dx = inv·g - a - x̂·b`` for the per-row
            ``a = inv·mean(g)`` and ``b = inv·mean(g·x̂)``."""
            s, inv = xhat.shape[1], inv_std.reshape(-1)
            t = dy * xhat
            g, grads = dy, cast(Any, ())
            if affine:
                grads = in_param_dtypes(pair(block_sum(t, 1, 2).reshape(shape),
                                             lambda a: block_sum(a, 1, 2).reshape(shape), dy),
                                        params)
                g = chan(np.multiply, dy, scale.reshape(s))
                chan(np.multiply, t, scale.reshape(s), out=t)     # g·x̂
            a, b = block_sum(g, 0, 1), block_sum(t, 0, 1)
            a *= inv / s
            b *= inv / s
            dx = np.multiply(g, per_row(inv, s), out=g if affine else None)  # never into dy
            t = np.multiply(xhat, per_row(b, s), out=t)
            t += per_row(a, s)
            dx -= t
            return grads, in_input_dtype(dx, x_dtype).reshape(y_shape)

        if not (affine and per_example.ON.get()):
            return y, pullback
        kept = tuple(a for a in other if a != 0)  # all but the examples' and the params' axes

        def each(dy: Array) -> tuple[Any, Array]:  # per example (_per_example)
            dx = pullback(dy)[1]
            dy = np.asarray(dy).reshape(y_shape)
            t = dy * xhat.reshape(y_shape)
            n = y_shape[0]
            return in_param_dtypes(pair(t.sum(axis=kept).reshape(n, *shape),
                                        lambda a: a.sum(axis=kept).reshape(n, *shape), dy),
                                   params), dx

        return y, each

    layer = Layer(init, apply, vjp, name=name, step=LAST_AXIS if axes == (-1,) else None)
    return layer if affine else fixed_affine(
        layer, lambda shape: tuple(shape[a] for a in example_axes(name, axis, axes, shape)))
