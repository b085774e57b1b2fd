"""StopGradient: the identity forward, no cotangent backward (``jax.lax.stop_gradient``,
PyTorch's ``x.detach()``), as a layer so that a model can hold it.

A Siamese model's stop-gradient branch (SimSiam's ``D(p1, sg(z2))``, one pass through the
encoder with ``FanOut(2)`` and ``Parallel(predictor, StopGradient())``), a VQ-VAE's
straight-through estimator ``x + sg(q - x)``, a target computed by the model but not
trained through: the layer passes its input on unchanged and gives it a zero cotangent, so
nothing before it gets a gradient from the branch it is on (another branch, through a
``FanOut``, still gives its own).

Its vjp is not the derivative of its apply, on purpose: ``testing.check_vjp`` and
``check_layer`` fail it, as ``jax.test_util.check_grads`` fails ``stop_gradient``. Check a
model holding it against the same model with the stopped value fed in as data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl.layers._passthrough import cotangents
from funcdl.layers._step import POSITIONWISE
from funcdl.layers.base import _F32, Array, Layer, none_cotangent
from funcdl.layers.core import identity_layer

__all__ = ["StopGradient"]


def _zero(a: Array) -> Array:
    """A zero cotangent for ``a``: its shape, its dtype when it is inexact (float32 for an
    integer or boolean input, as a layer casts those to its params' dtype)."""
    return np.zeros(a.shape, a.dtype if a.dtype.kind in "fc" else _F32)


def StopGradient() -> Layer:
    """``y = x``, ``dx = 0``: the input passed on, no gradient passed back (JAX's
    ``stop_gradient``, torch's ``detach()``); any pytree of arrays, as ``Identity``.

    forward: ``y = x`` (the same arrays, or views, as ``Identity``'s); vjp: ``dx = 0`` of
    x's structure, shapes and dtypes, ``dparams = ()``; the cotangent ``dy`` is checked
    against y's structure and shapes, then dropped (None is refused, as by ``Identity``).

    Example, SimSiam's branches on the two views stacked into one batch: ``Sequential(
    encoder, projector, FanOut(2), Parallel(predictor, StopGradient()))`` gives ``(p, z)``;
    a loss comparing ``p`` of each view with ``z`` of the other trains the encoder through
    ``p`` alone.
    """
    name = "StopGradient()"
    identity = identity_layer(name)

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any]:
        out_shape, params = identity.init(key, in_shape)
        return out_shape, params

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return identity.apply(params, x)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y = identity.apply(params, x)  # checks params and x as Identity does

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            if dy is None:
                raise none_cotangent(name)
            cotangents(name, y, dy, "dy")  # a wrong cotangent is still the caller's error
            return params, (tree.map(_zero, y) if need_dx else None)  # as Identity

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True, step=POSITIONWISE)
