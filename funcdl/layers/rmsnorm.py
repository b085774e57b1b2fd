"""RMSNorm: root-mean-square normalisation over the last axis, as ``torch.nn.RMSNorm(C)``.

Every computation runs in the input's and the params' floating dtypes promoted (float32 in
with init's float32 params, float32 out; see norm.py).
A row whose squares overflow (|x| beyond ~1e19 in float32) has mean(x²) = inf, where
PyTorch's float32 gives 0 silently: its mean(x²) is then taken again in float64 (a check
of the means otherwise), so x̂ is right, as LayerNorm's statistics are. An infinite input
gives inf·0, NaN, and NumPy's "invalid value" word stands.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, call_name, eps_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._norm_stats import channel_vectors, compute_dtype
from funcdl.layers._params import in_param_dtypes, weak_dtype
from funcdl.layers._step import LAST_AXIS
from funcdl.layers._sums import block_sum, chan, per_row, row_dots
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    as_floats,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    kept,
    no_params,
)

__all__ = ["RMSNorm"]


def RMSNorm(eps: float | None = None, elementwise_affine: bool = True) -> Layer:
    """RMS normalisation of each vector along the last axis (C entries), as
    ``torch.nn.RMSNorm(C, eps, elementwise_affine)``.

    params: ``{'scale': ones(C)}`` (float32); ``elementwise_affine=False``: none (``()``).
    forward: ``y = x·r·scale``, ``r = 1/sqrt(mean(x²) + eps)`` per vector; ``eps=None`` is
    PyTorch's default, ``finfo(dtype).eps`` of the computation dtype.
    vjp: ``dx = r·(g - x̂·mean(g·x̂))`` with ``x̂ = x·r``, ``g = dy·scale``;
    ``dscale = Σ dy·x̂`` over every axis but the last.
    """
    e = None if eps is None else eps_arg(eps, "RMSNorm", "normalized_shape",
                                         "so torch's RMSNorm(C) is RMSNorm() here, with eps "
                                         "the dtype's epsilon",
                                         hint=", or None (PyTorch's default)")
    affine = bool_arg(elementwise_affine, "RMSNorm", "elementwise_affine")
    name = call_name("RMSNorm", (), eps=(e, None), elementwise_affine=(affine, True))

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        if shape[-1] is None or shape[-1] == 0:
            raise ValueError(f"{name}: the last axis of in_shape (the normalised one) must be "
                             f"a known size > 0, got {shape}")
        return shape, ({"scale": np.ones(shape[-1], np.float32)} if affine else ())

    def prepare(params: Any, x: Any) -> tuple[Array, Array | None]:
        """The input in the computation dtype, and the scale (None without affine)."""
        if not affine:
            no_params(name, params)
            xa = as_floats(name, x)
            scale = None
        else:
            xa = as_array(name, x, weak_dtype(params, "scale", name))
        if xa.ndim == 0 or xa.shape[-1] == 0:
            raise ValueError(f"{name}: expected an input with a last axis of size > 0 to "
                             f"normalise, got shape {xa.shape}")
        if affine:
            (scale,) = channel_vectors(name, params, ("scale",), "params")
            if scale.shape != xa.shape[-1:]:
                raise ValueError(f"{name}: expected the input's last axis to have "
                                 f"{scale.shape} entries as params['scale'] was initialised, "
                                 f"got an input of shape {xa.shape}")
            dt = compute_dtype(xa, scale)
            return xa.astype(dt, copy=False), scale.astype(dt, copy=False)
        return xa, scale

    def forward(x: Array, scale: Array | None) -> tuple[Array, Array, Array]:
        """``(y, x̂, r)`` on x as (rows, C); apply and vjp share it bit for bit."""
        c = x.shape[-1]
        x2 = x.reshape(-1, c)
        with np.errstate(over="ignore"):  # mean(x²) = inf: r = 0, as PyTorch
            ms = row_dots(x2, x2)
        if x.dtype == np.float32 and np.isposinf(ms).any():  # again in float64: x̂ right
            x64 = x2.astype(np.float64)
            ms = row_dots(x64, x64)
        ms /= c
        ms += np.finfo(x.dtype).eps if e is None else e
        r = np.sqrt(ms, out=ms)
        np.reciprocal(r, out=r)
        r = r.astype(x.dtype, copy=False)
        xhat = np.multiply(x2, per_row(r, c))
        y = xhat if scale is None else chan(np.multiply, xhat, scale)
        return y, xhat, r

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        xs, scale = prepare(params, x)
        return forward(xs, scale)[0].reshape(xs.shape)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x_dtype = getattr(x, "dtype", None)
        xs, scale = prepare(params, x)
        y2, xhat, r = forward(xs, scale)
        y = kept(y2.reshape(xs.shape))  # read-only: without scale it is x̂, the pullback's
        c = xs.shape[-1]

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free
        each = per_example.ON.get() and scale is not None
        if each and xs.ndim < 2:
            raise ValueError(f"{name}: per-example gradients need a batch axis, got an "
                             f"input of shape {xs.shape}")

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype).reshape(-1, c)
            grads = cast(Any, params)
            g = dy
            if each:  # per example (_per_example): Σ over each example's positions
                t = (dy * xhat).reshape(y_shape)
                grads = in_param_dtypes({"scale": per_example.sums(t)}, params)
            elif scale is not None:
                grads = in_param_dtypes({"scale": block_sum(dy * xhat, 1, 2)}, params)
            if scale is not None:
                g = chan(np.multiply, dy, scale)
            m = row_dots(g, xhat)
            m /= c
            dx = np.multiply(xhat, per_row(m, c))
            np.subtract(g, dx, out=dx)
            dx *= per_row(r, c)
            return grads, in_input_dtype(dx, x_dtype).reshape(y_shape)

        return y, pullback

    return Layer(init, apply, vjp, name=name, step=LAST_AXIS)
