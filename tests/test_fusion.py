"""Sequential runs Dense + an elementwise activation as one step (Layer.vjp_then and
Layer.pointwise): the same numbers, structures and error locations as layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
from _fused import opaque

import funcdl as fd
from funcdl import debug, random, tree
from funcdl import layers as L
from funcdl.layers.base import Layer
from funcdl.testing import check_vjp

ACTS = [L.ReLU, L.Tanh, L.Sigmoid, L.Softplus, L.ELU, lambda: L.LeakyReLU(0.1),
        lambda: L.GELU(approximate=True), L.SiLU]


def _pair(act, dtype, in_shape=(None, 3)):
    fused = L.Sequential(L.Dense(4), act(), L.Dense(2), act())
    plain = L.Sequential(*[opaque(l) for l in (L.Dense(4), act(), L.Dense(2), act())])
    _, params = fused.init(random.key(0), in_shape)
    params = tree.astype(params, dtype)
    x = random.normal(random.key(1), (5, *in_shape[1:]), dtype)
    return fused, plain, params, x


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_equals_layer_by_layer_bitwise(act, dtype):
    fused, plain, params, x = _pair(act, dtype)
    y1, pb1 = fused.vjp(params, x)
    y2, pb2 = plain.vjp(params, x)
    np.testing.assert_array_equal(y1, y2)
    dy = random.normal(random.key(2), y1.shape, dtype)
    for need_dx in (True, False):
        (g1, dx1), (g2, dx2) = pb1(dy, need_dx=need_dx), pb2(dy, need_dx=need_dx)
        assert tree.structure(g1) == tree.structure(g2) == tree.structure(params)
        assert g1[1] == () and g1[3] == ()
        for a, b in zip(tree.leaves(g1), tree.leaves(g2), strict=True):
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)
        if need_dx:
            np.testing.assert_array_equal(dx1, dx2)
        else:
            assert dx1 is None and dx2 is None


@pytest.mark.parametrize("act", ACTS)
def test_fused_pair_vjp_matches_finite_differences(act):
    fused, _, params, x = _pair(act, np.float64, (None, 2, 3))  # Dense on a 3-D input too
    check_vjp(fused, params, x)


def test_fusion_only_where_a_dense_precedes_a_pointwise_layer():
    from funcdl.layers._fusion import steps as _steps

    layers = [L.Dense(3), L.ReLU(), L.ReLU(), L.Dense(2), L.Dropout(0.5), L.Dense(1),
              L.Softmax(), L.Dense(1, use_bias=False), L.Tanh(), L.Dense(1)]
    fused = [(i, then is not None) for i, then, _ in _steps(layers)]
    assert fused == [(0, True), (2, False), (3, False), (4, False), (5, False), (6, False),
                     (7, True), (9, False)]


def test_fused_model_trains_and_dropout_keys_are_unchanged(key):
    # keys are split per layer as before, so Dropout after a fused pair draws the same mask
    model = L.Sequential(L.Dense(8), L.ReLU(), L.Dropout(0.5), L.Dense(1), L.Sigmoid())
    plain = L.Sequential(*[opaque(l) for l in (L.Dense(8), L.ReLU(), L.Dropout(0.5),
                                                L.Dense(1), L.Sigmoid())])
    _, params = model.init(key, (None, 2))
    x, y = fd.data.disk(random.key(3), 32)
    k = random.key(4)
    v1, g1 = fd.value_and_grad(model, fd.losses.bce)(params, x, y, key=k)
    v2, g2 = fd.value_and_grad(plain, fd.losses.bce)(params, x, y, key=k)
    assert v1 == v2
    for a, b in zip(tree.leaves(g1), tree.leaves(g2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_errors_name_the_layer_inside_a_fused_pair(key):
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(1), L.Sigmoid())
    _, params = model.init(key, (None, 3))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Dense\(4\).*\(\.\.\., 3\)"):
        model.vjp(params, np.ones((2, 5), np.float32))
    _, pb = model.vjp(params, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Sequential\[3\] Sigmoid\(\).*\(2, 1\).*\(2, 2\)"):
        pb(np.ones((2, 2), np.float32))


def test_check_finite_runs_layer_by_layer(key):
    # with the checks on, each layer's own output is verified, so nothing is fused
    def boom(*args):
        raise AssertionError("fused")

    dense = L.Dense(2)
    spy = Layer(dense.init, dense.apply, dense.vjp, name="Spy", dx_optional=True,
                vjp_then=boom)
    model = L.Sequential(spy, L.Tanh())
    _, params = model.init(key, (None, 1))
    x = np.ones((3, 1), np.float32)
    with pytest.raises(AssertionError, match="fused"):
        model.vjp(params, x)
    with debug.check_finite():
        y, _ = model.vjp(params, x)
    np.testing.assert_array_equal(y, model.apply(params, x))
    nan_w = ({**params[0], "w": params[0]["w"] * np.nan}, ())  # a NaN input names the data
    with debug.check_finite(), pytest.raises(FloatingPointError, match=r"Sequential\[0\] Spy"):
        model.vjp(nan_w, x)


TORCH_ACTS = [  # funcdl activation, torch.nn.functional name and keyword arguments
    (L.ReLU, "relu", {}), (L.Tanh, "tanh", {}), (L.Sigmoid, "sigmoid", {}),
    (L.Softplus, "softplus", {}), (L.ELU, "elu", {}),
    (lambda: L.LeakyReLU(0.1), "leaky_relu", {"negative_slope": 0.1}),
    (L.GELU, "gelu", {}), (lambda: L.GELU(approximate=True), "gelu", {"approximate": "tanh"}),
    (L.SiLU, "silu", {}),
]


@pytest.mark.parametrize(("act", "torch_name", "kw"), TORCH_ACTS)
def test_fused_mlp_matches_torch_autograd_float64(act, torch_name, kw):
    torch = pytest.importorskip("torch")
    model = L.Sequential(L.Dense(5), act(), L.Dense(3), act(), L.Dense(1))
    _, params = model.init(random.key(0), (None, 4))
    params = tree.astype(params, np.float64)
    x = random.normal(random.key(1), (6, 4), np.float64)
    y = random.normal(random.key(2), (6, 1), np.float64)
    value, (grads, dx) = fd.value_and_grad(model, fd.losses.mse, wrt_input=True)(params, x, y)

    fn = getattr(torch.nn.functional, torch_name)
    tp = [{k: torch.tensor(v, requires_grad=True) for k, v in p.items()} if p else p
          for p in params]
    tx = torch.tensor(x, requires_grad=True)
    h = fn(tx @ tp[0]["w"] + tp[0]["b"], **kw)
    h = fn(h @ tp[2]["w"] + tp[2]["b"], **kw)
    out = h @ tp[4]["w"] + tp[4]["b"]
    loss = torch.nn.functional.mse_loss(out, torch.tensor(y))
    loss.backward()
    assert value == pytest.approx(loss.item(), rel=1e-12)
    for i in (0, 2, 4):
        for k in ("w", "b"):
            np.testing.assert_allclose(grads[i][k], tp[i][k].grad.numpy(), rtol=1e-10,
                                       atol=1e-13)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-13)
