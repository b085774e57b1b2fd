"""A user's loss on a tuple pred (a two-branch model's) whose pullback returns the wrong
number of cotangents: value_and_grad names the loss, not the model's last combinator."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L


def _model():
    model = L.Shared(L.Dense(3))
    _, params = model.init(fd.random.key(0), ((None, 4), (None, 4)))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    return model, params, (x, x)


@pytest.mark.parametrize(("returned", "got"), [
    (lambda p: (np.ones_like(p[0]),), "a tuple of 1"),
    (lambda p: [np.ones_like(p[0])] * 3, "a list of 3"),
    (lambda p: np.ones_like(p[0]), r"an array of shape \(5, 3\)"),
])
def test_wrong_number_of_cotangents_names_the_loss(returned, got):
    model, params, x = _model()
    loss = fd.losses.Loss("two_views", lambda p, t: (0.0, lambda g=1.0: returned(p)))
    with pytest.raises(ValueError, match=rf"loss two_views returned {got}; pred is a tuple "
                                         r"of 2, so it must return a tuple of 2"):
        fd.value_and_grad(model, loss)(params, x, None)


def test_one_cotangent_per_entry_still_works():
    model, params, x = _model()
    loss = fd.losses.Loss("two_views", lambda p, t: (
        0.0, lambda g=1.0: [np.ones_like(p[0]), None]))
    _, grads = fd.value_and_grad(model, loss)(params, x, None)
    np.testing.assert_allclose(grads["w"], x[0].T @ np.ones((5, 3), np.float32), rtol=1e-6)
