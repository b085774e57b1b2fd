"""A combinator, as a layer, returns the state object it was given where nothing moved it
(inference), names a tuple passed as a pullback's dy as the cotangent, and SpectralNorm
names its state (not its params) in a dtype error."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random

X = np.ones((4, 3), np.float32)
MODELS = {
    "Sequential": lambda: L.Sequential(L.Dense(3), L.BatchNorm()),
    "Residual": lambda: L.Residual(L.Sequential(L.Dense(3), L.BatchNorm())),
    "Remat": lambda: L.Remat(L.Sequential(L.Dense(3), L.BatchNorm())),
    "Tied": lambda: L.Tied(L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(3)), [0, 2]),
    "Repeat": lambda: L.Repeat(L.Sequential(L.Dense(3), L.BatchNorm()), 2),
    "nested": lambda: L.Sequential(L.Residual(L.BatchNorm()), L.Dense(2)),
    "SpectralNorm": lambda: L.Sequential(L.SpectralNorm(L.Dense(3)), L.ReLU()),
}


@pytest.mark.parametrize("name", MODELS)
def test_inference_returns_the_state_object_and_training_a_new_one(name):
    model = MODELS[name]()
    _, params, state = model.init(random.key(0), (None, 3))
    assert model.apply(params, X, state=state)[1] is state
    assert model.vjp(params, X, state=state)[2] is state
    moved = model.apply(params, X, state=state, train=True)[1]
    assert moved is not state
    np.testing.assert_array_equal(np.concatenate([np.ravel(v) for v in _leaves(state)]),
                                  np.concatenate([np.ravel(v) for v in _leaves(
                                      model.apply(params, X, state=state)[1])]))


def _leaves(t: object) -> list:
    if isinstance(t, dict):
        return [x for k in sorted(t) for x in _leaves(t[k])]
    if isinstance(t, tuple):
        return [x for v in t for x in _leaves(v)]
    return [t]


def test_a_tuple_dy_is_named_as_the_cotangent():
    model = L.Sequential(L.Dense(3), L.Tanh())
    _, params = model.init(random.key(0), (None, 3))
    _, pullback = model.vjp(params, X)
    with pytest.raises(TypeError, match=r"Sequential\[1\] Tanh\(\): the pullback's dy must be "
                                        r"one array, got a tuple of 1.*output of shape \(4, 3\)"):
        pullback((np.ones((4, 3), np.float32),))


def test_spectral_norm_names_its_state_in_a_dtype_error():
    layer = L.SpectralNorm(L.Dense(4))
    _, params, state = layer.init(random.key(0), (None, 3))
    bad = {"u": state["u"].astype(np.int64), "v": state["v"]}
    with pytest.raises(TypeError, match=r"SpectralNorm\(Dense\(4\)\): state\['u'\] has dtype "
                                        r"int64; state's entries are float32 or float64"):
        layer.apply(params, X, state=bad)
