"""Helpers shared by the BatchNorm and LayerNorm tests (tests/test_norm*.py): the eps the
layers default to, seeded float64 normals, and a BatchNorm set up away from its init values."""

from __future__ import annotations

import numpy as np

from funcdl import random

EPS = 1e-5


def _normal(seed, shape, scale=1.0, shift=0.0):
    return random.normal(random.key(seed), shape, np.float64) * scale + shift


def _bn_setup(layer, in_shape, batch, seed=0):
    """float64 params, state and input, all away from their trivial init values."""
    _, params, state = layer.init(random.key(seed), in_shape)
    c = params["scale"].shape
    params = {"scale": _normal(seed + 1, c, 0.5, 1.0), "bias": _normal(seed + 2, c)}
    state = {"mean": _normal(seed + 3, c), "var": np.exp(_normal(seed + 4, c, 0.5))}
    x = _normal(seed + 5, tuple(batch if d is None else d for d in in_shape), 2.0, 0.5)
    return params, state, x
