"""A norm layer with its affine map held at the identity, PyTorch's ``affine=False``
(BatchNorm) and ``elementwise_affine=False`` (LayerNorm): no params, the normalisation
alone. The layer runs with ``scale = 1`` and ``bias = 0`` and its pullback drops their
gradients, so ``y = x̂`` and ``dx`` is the normalisation's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random
from funcdl.layers.base import Array, Layer, no_params

__all__ = ["fixed_affine"]


def fixed_affine(layer: Layer, shape_of: Callable[[tuple[int, ...]], tuple[int, ...]]
                 ) -> Layer:
    """``layer`` (params ``{'scale', 'bias'}`` of shape ``shape_of(x.shape)``) with params
    ``()``; state, if any, as the layer's."""
    name = layer.name

    def consts(x: Any) -> dict[str, Array]:
        a = x if type(x) is np.ndarray else np.asarray(x)
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

        def pull(dy: Any) -> tuple[Any, Any]:
            return (), pullback(dy)[1]

        return (y, pull, *state)

    return Layer(init, apply, vjp, stateful=layer.stateful, name=name)
