"""Layers with a wrong (or a float64) vjp for the tests of funcdl.testing itself
(test_testing.py and test_testing_checker.py): a layer with its pullback's output tampered
with, a float64 Dense with params and input, Tanh's vjp forward in float64, and a scale
layer with one wrong entry in a large gradient."""

from __future__ import annotations

import numpy as np

from funcdl import layers as L
from funcdl import random
from funcdl.layers import Layer


def _tampered(layer, change):
    """The layer with its pullback's output passed through ``change(dparams, dx)``."""

    def vjp(params, x, **kw):
        y, pullback = layer.vjp(params, x, **kw)
        return y, lambda dy: change(*pullback(dy))

    return Layer(layer.init, layer.apply, vjp, name="Tampered")


def _params(layer, in_shape):
    return layer.init(random.key(0), in_shape)[1]


def _dense64():
    dense = L.Dense(3)
    params = {k: v.astype(np.float64) for k, v in _params(dense, (None, 5)).items()}
    return dense, params, random.normal(random.key(1), (4, 5), np.float64)


def _tanh64_vjp(p, x, **kw):
    """Tanh's vjp with its forward in float64 whatever x's dtype (dx back in x's)."""
    return np.tanh(x.astype(np.float64)), lambda dy: ((), (dy * (1 - np.tanh(x) ** 2)).astype(
        x.dtype))


def _scale_layer(n, wrong, factor):
    """``y = x ∘ w`` over ``n`` features, with entry ``wrong`` of dw multiplied by
    ``factor``: a user's layer with one wrong gradient entry in a large leaf."""

    def vjp(p, x, **kw):
        def pullback(dy):
            dw = (dy * x).sum(0)
            dw[wrong] *= factor
            return {"w": dw.astype(x.dtype)}, (dy * p["w"]).astype(x.dtype)

        return x * p["w"], pullback

    return Layer(lambda k, s: (s, {"w": np.linspace(0.5, 1.5, n).astype(np.float32)}),
                 lambda p, x, **kw: x * p["w"], vjp, name="Scale")
