"""BatchNorm(affine=False) and LayerNorm(elementwise_affine=False), as PyTorch's: no params,
y = x̂, the normalisation's own gradient."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

RNG = np.random.default_rng(0)


def test_layernorm_without_affine_is_x_hat_with_no_params():
    ln = L.LayerNorm(elementwise_affine=False)
    assert ln.name == "LayerNorm(elementwise_affine=False)"
    shape, params = ln.init(random.key(0), (None, 6))
    assert shape == (None, 6) and params == ()
    x = RNG.normal(size=(4, 6)) * 3 + 1
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln.apply((), x), xhat, rtol=1e-12)
    dy = RNG.normal(size=x.shape)
    dparams, dx = ln.vjp((), x)[1](dy)
    _, with_affine = L.LayerNorm().vjp({"scale": np.ones(6), "bias": np.zeros(6)}, x)
    assert dparams == ()
    np.testing.assert_array_equal(dx, with_affine(dy)[1])  # the normalisation's own dx
    check_vjp(ln, (), x)
    check_layer(L.LayerNorm(axis=(1, 2), elementwise_affine=False), (None, 3, 4))


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_without_affine_keeps_its_running_statistics(train):
    bn = L.BatchNorm(affine=False)
    _, params, state = bn.init(random.key(0), (None, 4, 4, 3))
    assert params == () and set(state) == {"mean", "var"}
    x = RNG.normal(size=(5, 4, 4, 3))
    state64 = tree.astype(state, np.float64)
    y, pullback, new = bn.vjp((), x, state=state64, train=train)
    ref = {"scale": np.ones(3), "bias": np.zeros(3)}
    y_ref, pullback_ref, new_ref = L.BatchNorm().vjp(ref, x, state=state64, train=train)
    np.testing.assert_array_equal(y, y_ref)
    tree.check_same(new, new_ref, shapes=True)
    np.testing.assert_array_equal(new["var"], new_ref["var"])
    dy = RNG.normal(size=x.shape)
    assert pullback(dy)[0] == ()
    np.testing.assert_array_equal(pullback(dy)[1], pullback_ref(dy)[1])
    check_layer(bn, (None, 4, 4, 3), train=train)


def test_in_a_model_the_norms_without_affine_hold_no_params():
    model = L.Sequential(L.Dense(6), L.LayerNorm(elementwise_affine=False), L.ReLU(),
                         L.Dense(3), L.BatchNorm(affine=False))
    _, params, state = model.init(random.key(0), (None, 4))
    assert params[1] == () and params[4] == ()
    x, t = RNG.normal(size=(8, 4)).astype(np.float32), np.zeros((8, 3), np.float32)
    (value, _), grads = fd.value_and_grad(model, fd.losses.mse)(params, x, t, state=state)
    assert np.isfinite(value) and grads[1] == () and grads[4] == ()
    assert all(g.dtype == np.float32 for g in tree.leaves(grads))


def test_params_given_to_a_norm_without_affine_and_a_bad_flag_are_named():
    ln = L.LayerNorm(elementwise_affine=False)
    with pytest.raises(ValueError, match=r"LayerNorm\(elementwise_affine=False\): this layer "
                                         r"has no parameters"):
        ln.apply({"scale": np.ones(6), "bias": np.zeros(6)}, np.ones((2, 6)))
    with pytest.raises(TypeError, match=r"BatchNorm: affine must be True or False"):
        L.BatchNorm(affine="no")


def test_against_torch():
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(5, 4, 4, 3))
    bn = L.BatchNorm(affine=False)
    state = tree.astype(bn.init(random.key(0), (None, 4, 4, 3))[2], np.float64)
    ref = torch.nn.BatchNorm2d(3, affine=False).double()
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    out = ref(xt)
    dy = RNG.normal(size=x.shape)
    out.backward(torch.tensor(np.moveaxis(dy, -1, 1)))
    y, pullback, new = bn.vjp((), x, state=state, train=True)
    np.testing.assert_allclose(y, np.moveaxis(out.detach().numpy(), 1, -1), atol=1e-14)
    np.testing.assert_allclose(pullback(dy)[1], np.moveaxis(xt.grad.numpy(), 1, -1),
                               atol=1e-14)
    np.testing.assert_allclose(new["var"], ref.running_var.numpy(), rtol=1e-14)
    ln = torch.nn.LayerNorm(6, elementwise_affine=False).double()
    x2 = RNG.normal(size=(4, 6))
    np.testing.assert_allclose(L.LayerNorm(elementwise_affine=False).apply((), x2),
                               ln(torch.tensor(x2)).detach().numpy(), atol=1e-14)
