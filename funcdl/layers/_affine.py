"""A norm layer with its affine map held at the identity, PyTorch's ``affine=False``
(BatchNorm, GroupNorm) and ``elementwise_affine=False`` (LayerNorm): no params, the
normalisation alone, ``y = x̂`` and ``dx`` the normalisation's.

The wrapped layer is built knowing it (its constructor's flag, threaded to its forward and
pullback): it skips the products by ``scale = 1`` and the sums of ``bias = 0`` where they
cost a pass, and its pullback makes no ``dscale``/``dbias`` (PyTorch's ``affine=False``
computes none either), returning ``()`` for them. The wrapper gives it that ``scale`` and
``bias`` only for the checks and the computation dtype it shares with the affine layer
(vectors of C values), and turns its params into ``()`` (dparams: the empty params given).
The numbers are the affine layer's at ``scale = 1``, ``bias = 0`` (x·1 and x + 0 are
exact; a -0.0 output stays -0.0 where adding 0 would make it 0.0)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random
from funcdl.layers.base import Array, Layer, as_array, no_params

__all__ = ["fixed_affine"]


def fixed_affine(layer: Layer, shape_of: Callable[[tuple[int, ...]], tuple[int, ...]]
                 ) -> Layer:
    """``layer`` (params ``{'scale', 'bias'}`` of shape ``shape_of(x.shape)``, built with
    its affine flag False) with params ``()``; state, if any, as the layer's."""
    name = layer.name

    def consts(x: Any) -> dict[str, Array]:
        a = x if type(x) is np.ndarray else as_array(name, x)  # a ragged list: named
        # float32 for what the params would have made float32 (a list of Python floats)
        dt = a.dtype if type(x) is np.ndarray and a.dtype.char in "fd" else np.float32
        shape = shape_of(a.shape)
        return {"scale": np.ones(shape, dt), "bias": np.zeros(shape, dt)}

    def init(key: random.Key, in_shape: Any) -> Any:
        out = layer.init(key, in_shape)
        return (out[0], (), *out[2:])

    def apply(params: Any, x: Any, **kw: Any) -> Any:
        no_params(name, params)
        return layer.apply(consts(x), x, **kw)

    def vjp(params: Any, x: Any, **kw: Any) -> Any:
        no_params(name, params)
        y, pullback, *state = layer.vjp(consts(x), x, **kw)

        def pull(dy: Any) -> tuple[Any, Any]:  # dparams: the empty params as given (None, [])
            return params, pullback(dy)[1]

        return (y, pull, *state)

    return Layer(init, apply, vjp, stateful=layer.stateful, name=name, step=layer.step)
