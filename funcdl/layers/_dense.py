"""The affine map that Dense and Unembed share, ``y = x @ w + b`` on the last axis, w
being (in, out). Dense stores it so (``'w'``); Unembed stores its transpose, (out, in)
(``'table'``, Embedding's layout, PyTorch's Linear weight), and reads it as a view. One
forward, one pullback, one set of checks: only the layout's few products differ."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl.layers import _per_example as per_example
from funcdl.layers._params import drawn, in_param_dtypes, param_arrays
from funcdl.layers._step import LAST_AXIS
from funcdl.layers._sums import CASCADE, chan, dot, ones, product, rows_sum
from funcdl.layers.base import (
    _F32,
    _F64,
    Array,
    Layer,
    Pointwise,
    Shape,
    as_array,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    kept,
)

__all__ = ["affine_layer"]

_ND = np.ndarray
matmul = np.matmul
_SMALL = 1 << 14  # elements of a product below which its call overhead dominates


def affine_layer(name: str, out: int, use_bias: bool, w_init: initializers.Initializer | None,
                 b_init: initializers.Initializer | None, *, wkey: str = "w",
                 out_in: bool = False) -> Layer:
    """The layer ``y = x @ w + b``, ``(..., in) -> (..., out)``; vjp ``dw = xᵀ dy``, ``db =
    Σ dy``, ``dx = dy wᵀ``. ``params[wkey]`` is w, (in, out), or with ``out_in`` its
    transpose, (out, in), whose gradient comes as ``dyᵀ x``, C-contiguous. Default init
    (``w_init`` None) PyTorch's ``nn.Linear``: w, b ~ U(±1/sqrt(in)), the same draws in
    either layout (an ``out_in`` table is Dense's w transposed, for one key)."""
    keys = (wkey, "b") if use_bias else (wkey,)
    shown = f"({out}, dim)" if out_in else f"(in, {out})"

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = check_in_shape(name, in_shape)
        fan_in = shape[-1]
        if fan_in is None or fan_in == 0:
            raise ValueError(f"{name}: the last axis of in_shape must be a known size > 0, "
                             f"got {shape}")
        kw, kb = random.split_for(key, 2, name)
        if out_in and w_init is not None:  # the caller's initializer sees the stored shape
            w = drawn(name, "w_init", w_init, kw, (out, fan_in))
        else:
            w = drawn(name, "w_init", w_init or initializers.torch_default(), kw, (fan_in, out))
            w = np.ascontiguousarray(w.T) if out_in else w
        params = {wkey: w}
        if use_bias:
            bias = b_init or initializers.uniform(1 / math.sqrt(fan_in), -1 / math.sqrt(fan_in))
            params["b"] = drawn(name, "b_init", bias, kb, (out,))
        return (*shape[:-1], out), params

    def weights(params: Any) -> tuple[Array, Any]:
        """``(w, b)``, w as (in, out) (a view of an ``out_in`` table), both checked."""
        b: Any = None
        try:
            w, b = params[wkey], (params["b"] if use_bias else None)
        except (KeyError, TypeError, IndexError):
            w = None
        if not (type(w) is _ND and w.dtype.char in "fd" and len(params) == len(keys)
                and (not use_bias or (type(b) is _ND and b.dtype.char in "fd"))):
            # else: an error naming what is wrong
            w, *rest = param_arrays(name, params, keys)
            b = rest[0] if rest else None
        if w.ndim != 2 or w.shape[0 if out_in else 1] != out or (use_bias and b.shape != (out,)):
            got = f"{w.shape}" + (f" and params['b'] {b.shape}" if use_bias else "")
            raise ValueError(f"{name}: params['{wkey}'] must have shape {shown}"
                             + (f" and params['b'] ({out},)" if use_bias else "")
                             + f", got params['{wkey}'] {got}")
        return (w.T if out_in else w), b

    def affine(params: Any, x: Any) -> tuple[Array, Array, Array]:
        """``(w, x, x w + b)``, the input checked (converted, cast) as it came."""
        w, b = weights(params)
        # The common case in a few attribute reads; anything else takes the slow path that
        # converts, casts integers, or explains what is wrong.
        if not (type(x) is _ND and x.ndim == 2 and x.shape[1] == w.shape[0]
                and (x.dtype is _F32 or x.dtype is _F64)):
            x = cast_ints(as_array(name, x, w.dtype), w.dtype)
            if x.ndim == 0 or x.shape[-1] != w.shape[0]:
                raise ValueError(f"{name}: expected input (..., {w.shape[0]}) as the params "
                                 f"were initialised, got shape {x.shape}")
        # np.dot: the 2-D product with less per-call overhead than @ (same BLAS call), but
        # up to 15% slower with a large transposed operand (an out_in table's view)
        f = matmul if out_in and w.size >= _SMALL else dot
        h: Array = (product(f, x, w) if x.ndim == 2 else
                    product(f, x.reshape(-1, w.shape[0]), w).reshape(*x.shape[:-1], out))
        if use_bias:  # many rows of few outputs (10 logits): tiled rows, see chan
            if b.dtype is h.dtype or h.dtype.itemsize >= b.dtype.itemsize:
                chan(np.add, h, b, out=h)
            else:  # a float64 bias beside float32 w and x: promoted (NumPy's, JAX's), not
                h = h + b  # rounded into the float32 product
        return w, x, h

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return affine(params, x)[2]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        return vjp_then(params, x, None)

    def vjp_then(params: Any, x: Any, act: Pointwise | None) -> Any:
        # y = act.f(x w + b); the pullback takes dy through act.df first (see Layer).
        w, x, h = affine(params, x)
        flat, b_dtype = x.ndim == 2, params["b"].dtype if use_bias else None
        each = per_example.ON.get()  # the grads per example (autodiff.per_example_*)
        if each and x.ndim < 2:
            raise ValueError(f"{name}: per-example gradients need a batch axis, got an "
                             f"input of shape {x.shape}")
        y = h if act is None else kept(act.f(h))
        y_shape, y_dtype = y.shape, y.dtype
        res: tuple[Any, Any] = (None, None) if act is None else act.residuals(h, y)
        hr, yr = res
        del h  # a ReLU's df reads y only: its input need not outlive the forward

        def pullback(dy: Array, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name if act is None else act.name, dy, y_shape, y_dtype)
            if act is not None:
                dy = act.df(hr, yr, dy)
            if each:
                each_grads = {wkey: per_example.outer(dy, x) if out_in
                              else per_example.outer(x, dy)}
                if use_bias:
                    each_grads["b"] = per_example.sums(dy)
                grads = in_param_dtypes(each_grads, params)
                dx = None if not need_dx else in_input_dtype(product(np.matmul, dy, w.T), x.dtype)
                return grads, dx
            x2, dy2 = (x, dy) if flat else (x.reshape(-1, w.shape[0]), dy.reshape(-1, out))
            # BLAS reads x2.T and w.T in place (no transposed copies). np.dot costs less per
            # call than @, but is up to 15% slower with a large transposed operand; the
            # choice goes by the size of the product.
            f = dot if w.size < _SMALL else matmul
            gw = product(f, dy2.T, x2) if out_in else product(f, x2.T, dy2)
            grads = {wkey: gw}
            if use_bias:
                rows = len(dy2)  # rows_sum's first branch inline (a call less a step)
                grads["b"] = gb = (product(dot, ones(rows, dy2.dtype), dy2)
                                   if rows <= CASCADE else rows_sum(dy2))
            if gw.dtype is not w.dtype or (use_bias and gb.dtype is not b_dtype):
                in_param_dtypes(grads, params)  # a float64 x: grads in the params' dtypes
            if not need_dx:
                return grads, None
            dx = in_input_dtype(product(dot if x2.size < _SMALL else matmul, dy2, w.T),
                                x.dtype)
            return grads, dx if flat else dx.reshape(x.shape)

        return y, pullback

    # an out_in table is torch's weight as it is: SpectralNorm's u, v as torch's (dim=0)
    return Layer(init, apply, vjp, name=name, dx_optional=True, vjp_then=vjp_then,
                 weight_out_axis=0 if out_in else -1, step=LAST_AXIS)
