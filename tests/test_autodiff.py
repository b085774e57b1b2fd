"""value_and_grad / grad / vjp: chaining, has_aux, wrt_input, agreement with finite
differences of the whole loss."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree


def _model_and_data(key):
    model = L.Sequential(L.Dense(6), L.Tanh(), L.Dense(1), L.Sigmoid())
    _, params = model.init(key, (None, 2))
    x, y = fd.data.disk(random.key(1), 8)
    return model, tree.astype(params, np.float64), x.astype(np.float64), y.astype(np.float64)


def test_value_and_grad_matches_finite_differences(key):
    model, params, x, y = _model_and_data(key)
    value, grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    assert value == pytest.approx(losses.mse(model.apply(params, x), y))
    flat, unravel = tree.ravel(params)
    eps = 1e-6
    for i in range(0, flat.size, 3):
        e = np.zeros_like(flat)
        e[i] = eps
        up = losses.mse(model.apply(unravel(flat + e), x), y)
        down = losses.mse(model.apply(unravel(flat - e), x), y)
        assert tree.ravel(grads)[0][i] == pytest.approx((up - down) / (2 * eps), rel=1e-5,
                                                        abs=1e-10)


def test_wrt_input_and_grad(key):
    model, params, x, y = _model_and_data(key)
    _value, (dparams, dx) = fd.value_and_grad(model, losses.bce, wrt_input=True)(params, x, y)
    g = fd.grad(model, losses.bce)(params, x, y)
    np.testing.assert_allclose(tree.ravel(g)[0], tree.ravel(dparams)[0])
    eps = 1e-6
    e = np.zeros_like(x)
    e[3, 1] = eps
    fd_x = (losses.bce(model.apply(params, x + e), y)
            - losses.bce(model.apply(params, x - e), y)) / (2 * eps)
    assert dx[3, 1] == pytest.approx(fd_x, rel=1e-5)


def test_has_aux(key):
    model, params, x, y = _model_and_data(key)

    def mse_with_accuracy(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return (value, float(np.mean((pred > 0.5) == (target > 0.5)))), pullback

    loss = losses.Loss("mse_acc", mse_with_accuracy)
    (value, acc), grads = fd.value_and_grad(model, loss, has_aux=True)(params, x, y)
    plain_value, plain_grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    assert value == plain_value and 0.0 <= acc <= 1.0
    np.testing.assert_array_equal(tree.ravel(grads)[0], tree.ravel(plain_grads)[0])
    _g, aux = fd.grad(model, loss, has_aux=True)(params, x, y)
    assert aux == acc


def test_key_reaches_dropout(key):
    model = L.Sequential(L.Dense(50), L.Dropout(0.5), L.Dense(1))
    _, params = model.init(key, (None, 2))
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    f = fd.value_and_grad(model, losses.mse)
    a, _ = f(params, x, y, key=random.key(1))
    b, _ = f(params, x, y, key=random.key(1))
    c, _ = f(params, x, y, key=random.key(2))
    d, _ = f(params, x, y, train=False)
    assert a == b and a != c and d == losses.mse(model.apply(params, x), y)
    with pytest.raises(ValueError, match=r"Dropout.*key"):
        f(params, x, y)


def test_vjp_reexport(key):
    model, params, x, _ = _model_and_data(key)
    y, _pullback = fd.vjp(model, params, x)
    np.testing.assert_array_equal(y, model.apply(params, x))


def test_bad_loss_and_kwargs(key):
    model, params, x, y = _model_and_data(key)
    with pytest.raises(TypeError, match=r"\.vjp"):
        fd.value_and_grad(model, lambda p, t: 0.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fd.value_and_grad(model, losses.mse)(params, x, y, state=())
    with pytest.raises(ValueError, match=r"mse: pred has shape \(8, 1\) but target"):
        fd.value_and_grad(model, losses.mse)(params, x, y[:, 0])
