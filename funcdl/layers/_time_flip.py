"""A layer run backward in time, the default backward direction of ``Bidirectional``
(``blocks``): its input reversed along the time axis (each padded sequence within its own
length), its output and its cotangents reversed back."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl.layers._children import name_of
from funcdl.layers._wrap import child_call
from funcdl.layers.base import Layer, as_array, check_cotangent


def flipped(layer: Any) -> Layer:
    """``layer`` run backward in time: ``y = flip(f(flip(x)))``, the output flipped back when
    it keeps the time axis (a sequence), as it is otherwise (the last step's state, which
    is then that of step 0); vjp: ``dx = flip(f_xᵀ flip(dy))``, ``dparams = f_pᵀ flip(dy)``.
    Flips are views (axis 1, reversed strides): the recurrent layers copy to time-major
    anyway."""
    child = name_of(layer)
    name = f"reversed {child}"

    def flip(x: Any) -> tuple[Any, Any, int]:
        """``(x reversed in time, idx, rank of x)``: idx ``(N, T)`` the gather that reverses
        each sequence of a padded pair ``(x, lengths)`` within its own length (its own
        inverse; None for a plain x, flipped whole)."""
        if isinstance(x, (tuple, list)) and len(x) == 2:
            xs, ln = as_array(name, x[0]), np.asarray(x[1])
            if (xs.ndim < 3 or ln.dtype.kind not in "iu" or ln.shape != xs.shape[:1]
                    or (ln.size and (ln.min() < 0 or ln.max() > xs.shape[1]))):
                return x, None, xs.ndim  # as it is: the child says what is wrong
            steps = np.arange(xs.shape[1])
            ln = ln.astype(np.int64)  # uint64 - int64 is float64, no index
            idx = np.where(steps >= ln[:, None], steps, ln[:, None] - 1 - steps)
            return (gather(xs, idx), x[1]), idx, xs.ndim
        x = as_array(name, x)
        if x.ndim < 3:
            raise ValueError(f"{name}: expected an input (N, T, C) with a time axis, got "
                             f"shape {x.shape}")
        return x[:, ::-1], None, x.ndim

    def gather(a: Any, idx: Any) -> Any:
        """``a`` reversed in time as ``flip`` reversed the input: by idx, else whole."""
        if idx is None:
            return a[:, ::-1]
        return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)

    def call(fn: Any, *args: Any, **kw: Any) -> Any:
        return child_call(name, child, fn, *args, **kw)

    def init(key: random.Key, in_shape: Any) -> Any:
        return call(layer.init, key, in_shape)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        xf, idx, rank = flip(x)
        y = call(layer.apply, params, xf, key=key, train=train)
        return gather(y, idx) if np.ndim(y) == rank else y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        xf, idx, rank = flip(x)
        y, pb = call(layer.vjp, params, xf, key=key, train=train)
        seq_out = np.ndim(y) == rank
        y_shape = np.shape(y)
        y_dtype = np.asarray(y).dtype if seq_out else np.dtype(np.float32)  # read if seq_out

        def pullback(dy: Any) -> tuple[Any, Any]:
            if seq_out:  # checked before the flip, which would broadcast a (1, T, H) dy
                # over the batch (take_along_axis) or fail on a short T with NumPy's error
                dy = gather(check_cotangent(name, dy, y_shape, y_dtype), idx)
            grads, dx = call(pb, dy)
            if dx is None:
                return grads, None
            if isinstance(dx, tuple):  # a padded pair's (dx, None)
                return grads, (gather(dx[0], idx), dx[1])
            return grads, gather(dx, idx)

        return (gather(y, idx) if seq_out else y), pullback

    return Layer(init, apply, vjp, name=name)
