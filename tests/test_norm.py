"""BatchNorm and LayerNorm: vjps against finite differences in both modes, batch and running
statistics against hand formulas, the state threaded through Sequential and value_and_grad,
a PyTorch cross-check in float64 when torch is installed, and bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.layers.norm import BatchNorm, LayerNorm
from funcdl.testing import check_layer, check_vjp

EPS = 1e-5

# (constructor, in_shape): (N, C), NHWC, channels on axis 1 of (N, C, L) and NCHW.
BN_TABLE = [
    (BatchNorm, (None, 4)),
    (BatchNorm, (None, 3, 3, 2)),
    (lambda: BatchNorm(axis=1), (None, 3, 5)),
    (lambda: BatchNorm(momentum=0.3, eps=1e-3, axis=1), (None, 2, 3, 2)),
]
LN_TABLE = [
    (LayerNorm, (None, 6)),
    (LayerNorm, (None, 3, 5)),
    (lambda: LayerNorm(axis=(-2, -1)), (None, 3, 4)),
    (lambda: LayerNorm(eps=1e-3, axis=1), (None, 4, 3)),
    (lambda: LayerNorm(axis=(1, 3)), (None, 2, 3, 2)),  # not one run of axes: NumPy's sums
]


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


def _bcast(v, x, axis):
    shape = [1] * x.ndim
    shape[axis] = v.size
    return np.asarray(v).reshape(shape)


# ---------------------------------------------------------------------------- gradients

@pytest.mark.parametrize(("make", "in_shape"), BN_TABLE)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("batch", [2, 5])
def test_batchnorm_check_layer(make, in_shape, train, batch):
    check_layer(make(), in_shape, batch=batch, train=train)


@pytest.mark.parametrize(("make", "in_shape"), BN_TABLE)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("batch", [2, 6])
def test_batchnorm_vjp_float64(make, in_shape, train, batch):
    layer = make()
    params, state, x = _bn_setup(layer, in_shape, batch)
    check_vjp(layer, params, x, state=state, train=train)


def test_batchnorm_one_example_with_spatial_axes_trains():
    # (1, H, W, C): H·W values per channel, as PyTorch's BatchNorm2d allows.
    check_layer(BatchNorm(), (None, 3, 2, 2), batch=1, train=True)


@pytest.mark.parametrize(("make", "in_shape"), LN_TABLE)
@pytest.mark.parametrize("batch", [1, 4])
def test_layernorm_check_layer(make, in_shape, batch):
    check_layer(make(), in_shape, batch=batch)


@pytest.mark.parametrize(("make", "in_shape"), LN_TABLE)
def test_layernorm_vjp_float64(make, in_shape):
    layer = make()
    _, params = layer.init(random.key(0), in_shape)
    s = params["scale"].shape
    params = {"scale": _normal(1, s, 0.5, 1.0), "bias": _normal(2, s)}
    x = _normal(3, tuple(3 if d is None else d for d in in_shape), 2.0, 0.5)
    check_vjp(layer, params, x)


# ---------------------------------------------------------------------------- BatchNorm values

@pytest.mark.parametrize(("axis", "shape"), [(-1, (6, 3)), (-1, (2, 3, 4, 5)), (1, (4, 3, 5))])
def test_train_output_is_standardised_per_channel(axis, shape):
    layer = BatchNorm(axis=axis)
    _, params, state = layer.init(random.key(0), (None, *shape[1:]))
    x = _normal(1, shape, 3.0, 7.0)
    y, _ = layer.apply(params, x, state=state, train=True)
    red = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    m = np.prod([shape[i] for i in red])
    np.testing.assert_allclose(y.mean(axis=red), 0.0, atol=1e-12)
    # biased variance, shrunk by eps: var(x̂) = σ²/(σ² + eps)
    var = x.var(axis=red)
    np.testing.assert_allclose(y.var(axis=red), var / (var + EPS), rtol=1e-12)
    assert m > 1


def test_train_output_and_state_by_hand():
    layer = BatchNorm(momentum=0.25)
    params, state, x = _bn_setup(layer, (None, 3), 5)
    before = tree.map(np.copy, (params, state, x))
    y, new_state = layer.apply(params, x, state=state, train=True)
    mu, var_b, var_u = x.mean(0), x.var(0), x.var(0, ddof=1)
    expected = params["scale"] * (x - mu) / np.sqrt(var_b + EPS) + params["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new_state["mean"], 0.75 * state["mean"] + 0.25 * mu, rtol=1e-12)
    np.testing.assert_allclose(new_state["var"], 0.75 * state["var"] + 0.25 * var_u, rtol=1e-12)
    # nothing passed in was touched
    for got, old in zip(tree.leaves((params, state, x)), tree.leaves(before)):
        np.testing.assert_array_equal(got, old)
    assert new_state is not state and new_state["mean"] is not state["mean"]


def test_eval_uses_running_statistics_and_returns_state_unchanged():
    layer = BatchNorm(axis=1)
    params, state, x = _bn_setup(layer, (None, 3, 4), 2)
    y, same = layer.apply(params, x, state=state)
    scale, bias, mean, var = (_bcast(v, x, 1) for v in (params["scale"], params["bias"],
                                                           state["mean"], state["var"]))
    np.testing.assert_allclose(y, scale * (x - mean) / np.sqrt(var + EPS) + bias, rtol=1e-12,
                               atol=1e-12)
    assert same is state
    y2, _pullback, same2 = layer.vjp(params, x, state=state)
    assert same2 is state
    np.testing.assert_array_equal(y2, y)
    # a batch of one is fine at inference
    y1, _ = layer.apply(params, x[:1], state=state)
    np.testing.assert_allclose(y1, y[:1], rtol=1e-12)


def test_running_statistics_over_several_steps():
    layer = BatchNorm(momentum=0.1, axis=-1)
    _, params, state = layer.init(random.key(0), (None, 2, 2, 3))
    mean, var = np.zeros(3), np.ones(3)
    for step in range(5):
        x = _normal(10 + step, (4, 2, 2, 3), 1.0 + step, step - 2.0).astype(np.float32)
        _, state = layer.apply(params, x, state=state, train=True)
        x64 = x.astype(np.float64).reshape(-1, 3)
        mean = 0.9 * mean + 0.1 * x64.mean(0)
        var = 0.9 * var + 0.1 * x64.var(0, ddof=1)
        assert state["mean"].dtype == np.float32 and state["var"].dtype == np.float32
        np.testing.assert_allclose(state["mean"], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["var"], var, rtol=1e-5)
    # the vjp moves the state exactly as apply does
    _, _, state_vjp = layer.vjp(params, x, state=state, train=True)
    _, state_apply = layer.apply(params, x, state=state, train=True)
    tree.map(np.testing.assert_array_equal, state_vjp, state_apply)


def test_running_statistics_keep_the_states_dtype_under_float64_input():
    # computed in float64 (the input's), moved in the old state's float32, as documented
    layer = BatchNorm(momentum=0.25)
    _, params, state = layer.init(random.key(0), (None, 3))
    x = _normal(1, (5, 3), 2.0, 1.0)
    for new in (layer.apply(params, x, state=state, train=True)[1],
                layer.vjp(params, x, state=state, train=True)[2]):
        assert {k: v.dtype for k, v in new.items()} == {"mean": np.float32, "var": np.float32}
        np.testing.assert_allclose(new["mean"], 0.25 * x.mean(0), rtol=1e-6)
        np.testing.assert_allclose(new["var"], 0.75 + 0.25 * x.var(0, ddof=1), rtol=1e-6)


def test_train_gradients_by_hand():
    layer = BatchNorm()
    params, state, x = _bn_setup(layer, (None, 3), 4)
    _, pullback, _ = layer.vjp(params, x, state=state, train=True)
    dy = _normal(7, x.shape)
    grads, dx = pullback(dy)
    m, inv_std = x.shape[0], 1 / np.sqrt(x.var(0) + EPS)
    xhat = (x - x.mean(0)) * inv_std
    dxhat = dy * params["scale"]
    expected = inv_std / m * (m * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["scale"], (dy * xhat).sum(0), rtol=1e-10)
    np.testing.assert_allclose(grads["bias"], dy.sum(0), rtol=1e-12)


@pytest.mark.parametrize("train", [True, False])
def test_float32_stays_float32(train):
    layer = BatchNorm()
    _, params, state = layer.init(random.key(0), (None, 2, 2, 3))
    x = random.normal(random.key(1), (4, 2, 2, 3), np.float32) * 100 + 1e4
    y, pullback, new_state = layer.vjp(params, x, state=state, train=train)
    grads, dx = pullback(np.ones_like(y))
    for a in (y, dx, *tree.leaves(grads), *tree.leaves(new_state)):
        assert a.dtype == np.float32
    # two-pass statistics: a large offset costs no accuracy
    x64 = x.astype(np.float64)
    y64, _ = layer.apply(params, x64, state=state, train=train)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- Sequential

def test_state_threads_through_sequential_and_value_and_grad():
    bn1, bn2 = BatchNorm(), BatchNorm()
    model = L.Sequential(L.Dense(3), bn1, L.ReLU(), L.Dense(2), bn2)
    assert model.stateful
    _, params, state = model.init(random.key(0), (None, 4))
    assert state[0] == () and state[2] == () and set(state[1]) == {"mean", "var"}
    params, state = tree.astype(params, np.float64), tree.astype(state, np.float64)
    x, target = _normal(1, (8, 4)), _normal(2, (8, 2))

    # the children by hand
    h, s1 = bn1.apply(params[1], L.Dense(3).apply(params[0], x), state=state[1], train=True)
    y, s4 = bn2.apply(params[4], L.Dense(2).apply(params[3], np.maximum(h, 0)),
                      state=state[4], train=True)
    y_seq, new_state = model.apply(params, x, state=state, train=True)
    np.testing.assert_array_equal(y_seq, y)
    tree.map(np.testing.assert_array_equal, new_state, ((), s1, (), (), s4))

    (value, vg_state), grads = fd.value_and_grad(model, losses.mse)(params, x, target,
                                                                    state=state)
    assert value == pytest.approx(losses.mse(y, target))
    tree.map(np.testing.assert_array_equal, vg_state, new_state)
    flat, unravel = tree.ravel(params)
    g, e = tree.ravel(grads)[0], 1e-6
    for i in range(0, flat.size, 2):
        step = np.zeros_like(flat)
        step[i] = e
        up = losses.mse(model.apply(unravel(flat + step), x, state=state, train=True)[0], target)
        down = losses.mse(model.apply(unravel(flat - step), x, state=state, train=True)[0],
                          target)
        assert g[i] == pytest.approx((up - down) / (2 * e), rel=1e-5, abs=1e-10)
    check_vjp(model, params, x, state=state, train=True)
    check_vjp(model, params, x, state=state, train=False)

    # inference through the Sequential hands back each BatchNorm's state object untouched
    _, eval_state = model.apply(params, x, state=new_state)
    assert eval_state[1] is new_state[1] and eval_state[4] is new_state[4]
    with pytest.raises(TypeError, match="state="):
        fd.value_and_grad(model, losses.mse)(params, x, target)


# ---------------------------------------------------------------------------- LayerNorm values

@pytest.mark.parametrize(("axis", "shape", "red"), [
    (-1, (3, 5), (1,)), (-1, (2, 3, 4), (2,)), ((-2, -1), (2, 3, 4), (1, 2)), (1, (2, 4, 3), (1,)),
])
def test_layernorm_by_hand(axis, shape, red):
    layer = LayerNorm(axis=axis)
    _, params = layer.init(random.key(0), (None, *shape[1:]))
    s = params["scale"].shape
    assert s == tuple(shape[i] for i in red)
    params = {"scale": _normal(1, s), "bias": _normal(2, s)}
    x = _normal(3, shape, 3.0, -2.0)
    before = tree.map(np.copy, (params, x))
    y = layer.apply(params, x)
    bshape = tuple(shape[i] if i in red else 1 for i in range(len(shape)))
    mu, var = x.mean(axis=red, keepdims=True), x.var(axis=red, keepdims=True)
    expected = ((x - mu) / np.sqrt(var + EPS) * params["scale"].reshape(bshape)
                + params["bias"].reshape(bshape))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    for got, old in zip(tree.leaves((params, x)), tree.leaves(before)):
        np.testing.assert_array_equal(got, old)


# ---------------------------------------------------------------------------- PyTorch

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize(("axis", "shape", "kind"), [
    (-1, (6, 3), "1d"), (1, (4, 3, 5), "1d"), (-1, (2, 3, 4, 5), "2d"), (1, (2, 5, 3, 4), "2d"),
])
def test_batchnorm_matches_torch(torch, axis, shape, kind):
    layer = BatchNorm(momentum=0.2, axis=axis)
    params, state, _ = _bn_setup(layer, (None, *shape[1:]), shape[0])
    c = params["scale"].size
    bn = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(
        c, momentum=0.2, eps=EPS).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["scale"]))
        bn.bias.copy_(torch.from_numpy(params["bias"]))
        bn.running_mean.copy_(torch.from_numpy(state["mean"]))
        bn.running_var.copy_(torch.from_numpy(state["var"]))
    # torch wants channels on axis 1: NHWC -> NCHW
    to_torch = (0, 3, 1, 2) if axis == -1 and len(shape) == 4 else tuple(range(len(shape)))
    back = tuple(np.argsort(to_torch))
    for step in range(3):
        x = _normal(20 + step, shape, 1.5 + step, step)
        dy = _normal(30 + step, shape)
        bn.zero_grad()
        xt = torch.from_numpy(x.transpose(to_torch).copy()).requires_grad_(True)
        out = bn.train()(xt)
        out.backward(torch.from_numpy(dy.transpose(to_torch).copy()))
        y, pullback, state = layer.vjp(params, x, state=state, train=True)
        grads, dx = pullback(dy)
        np.testing.assert_allclose(y, out.detach().numpy().transpose(back), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy().transpose(back), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["scale"], bn.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(grads["bias"], bn.bias.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(state["mean"], bn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["var"], bn.running_var.numpy(), rtol=1e-12)
    x = _normal(40, shape)
    with torch.no_grad():
        ref = bn.eval()(torch.from_numpy(x.transpose(to_torch).copy())).numpy()
    np.testing.assert_allclose(layer.apply(params, x, state=state)[0], ref.transpose(back),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("shape", "normalized"), [((4, 6), (6,)), ((2, 3, 5), (3, 5))])
def test_layernorm_matches_torch(torch, shape, normalized):
    axis = tuple(range(-len(normalized), 0))
    layer = LayerNorm(axis=axis)
    params = {"scale": _normal(1, normalized), "bias": _normal(2, normalized)}
    x, dy = _normal(3, shape, 2.0, 1.0), _normal(4, shape)
    ln = torch.nn.LayerNorm(normalized, eps=EPS).double()
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(params["scale"]))
        ln.bias.copy_(torch.from_numpy(params["bias"]))
    xt = torch.from_numpy(x).requires_grad_(True)
    out = ln(xt)
    out.backward(torch.from_numpy(dy))
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["scale"], ln.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grads["bias"], ln.bias.grad.numpy(), rtol=1e-10)


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("layer", [BatchNorm(), LayerNorm()], ids=["BatchNorm", "LayerNorm"])
@pytest.mark.parametrize("train", [True, False])
def test_norm_grads_keep_float32_params_dtype_under_float64_input(layer, train):
    # As JAX: each grad has its param's dtype; a float64 input must not make them float64.
    made = layer.init(random.key(0), (None, 3))
    params, kw = made[1], ({"state": made[2]} if layer.stateful else {})
    x = _normal(1, (5, 3), 2.0, 1.0)  # float64
    y, pullback, *_ = layer.vjp(params, x, train=train, **kw)
    dparams, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float64
    assert {k: g.dtype for k, g in dparams.items()} == {"scale": np.float32, "bias": np.float32}
    lists = {k: v.tolist() for k, v in params.items()}  # as every layer: arrays, not lists
    with pytest.raises(TypeError, match=r"params\['scale'\] must be a NumPy array.*list"):
        layer.vjp(lists, x, train=train, **kw)


def test_batchnorm_bad_input():
    layer = BatchNorm()
    _, params, state = layer.init(random.key(0), (None, 3))
    with pytest.raises(ValueError, match=r"BatchNorm\(\): expected 3 channels .*shape \(4, 5\)"):
        layer.apply(params, np.ones((4, 5)), state=state)
    with pytest.raises(ValueError, match=r"BatchNorm\(\): expected an input of rank >= 2.*\(3,\)"):
        layer.apply(params, np.ones(3), state=state)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        layer.vjp(params, np.ones((1, 3)), state=state, train=True)
    for call in (layer.apply, layer.vjp):
        with pytest.raises(TypeError, match=r"BatchNorm\(\) is stateful: pass state="):
            call(params, np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"state\['var'\] has shape \(2,\), expected \(3,\)"):
        layer.apply(params, np.ones((4, 3)), state={"mean": np.zeros(3), "var": np.ones(2)})
    with pytest.raises(ValueError, match=r"expected params as a dict with keys"):
        layer.apply((), np.ones((4, 3)), state=state)
    with pytest.raises(TypeError, match="numeric"):
        layer.apply(params, np.array([["a", "b", "c"]] * 2), state=state)
    with pytest.raises(ValueError, match="channel axis -1 of in_shape must be a known size"):
        layer.init(random.key(0), (None, None))
    with pytest.raises(ValueError, match="is the batch axis"):
        BatchNorm(axis=0).init(random.key(0), (None, 3))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        BatchNorm(eps=0.0)


@pytest.mark.parametrize("shape", [(256, 32), (64, 28, 28, 16)])
def test_float32_batch_statistics_of_shifted_data_keep_float32_accuracy(shape):
    # NumPy's float32 sum over leading axes adds slice by slice: on (64, 28, 28, 16) values
    # near 1e4 the mean came out 0.01 off and y by 2.5 of its standard deviations; BLAS's
    # blocked sums leave only the rounding of x itself (1e4 to float32: ~0.01 of y's scale)
    x = (_normal(0, shape, 0.1, 1e4)).astype(np.float32)
    layer = BatchNorm()
    _, params, state = layer.init(random.key(1), (None, *shape[1:]))
    y32, s32 = layer.apply(params, x, state=state, train=True)
    y64, s64 = layer.apply(tree.astype(params, np.float64), x.astype(np.float64),
                           state=state, train=True)
    assert y32.dtype == s32["mean"].dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=0.03)
    np.testing.assert_allclose(s32["mean"], s64["mean"], atol=3e-4)


@pytest.mark.parametrize("value", [1.7, 5.3, 12.9, 123.456, 12345.678, 65881.3, -9.87e6])
@pytest.mark.parametrize("width", [3, 7, 100])
def test_constant_rows_and_channels_normalise_to_zero(value, width):
    # x̂ is 0 for constant data, as PyTorch's Welford moments give; the two-pass float32 mean
    # is an ulp off there, which is more than sqrt(eps) from ~1e3 on: x̂ was ±0.3-1
    x = np.full((5, width), value, np.float32)
    ln, bn = LayerNorm(), BatchNorm()
    _, p = ln.init(random.key(0), (None, width))
    bias = _normal(4, (width,)).astype(np.float32)
    y_rows = ln.apply({"scale": p["scale"], "bias": bias}, x)  # the (rows, S) path
    y_axes = LayerNorm(axis=(1, 2)).apply({"scale": np.ones((5, width), np.float32),
                                           "bias": np.zeros((5, width), np.float32)},
                                          x[None, :, :, None])  # the general path
    _, bp, bs = bn.init(random.key(0), (None, 5))
    y_bn, state = bn.apply(bp, np.ascontiguousarray(x.T), state=bs, train=True)
    np.testing.assert_array_equal(y_rows, np.broadcast_to(bias, x.shape))
    np.testing.assert_array_equal(y_axes, 0)
    np.testing.assert_array_equal(y_bn, 0)
    np.testing.assert_array_equal(state["mean"], np.float32(0.1) * np.float32(value))
    assert y_rows.dtype == y_axes.dtype == y_bn.dtype == np.float32


@pytest.mark.parametrize("make", [LayerNorm, BatchNorm])
def test_offset_data_refines_the_mean_and_keeps_the_vjp(make):
    # |μ| > 64 σ takes the refining pass; its vjp is the same function's
    layer = make()
    x = 1e4 + _normal(5, (6, 4), 1.0)
    if layer.stateful:
        _, params, state = layer.init(random.key(0), (None, 4))
        check_vjp(layer, tree.astype(params, np.float64), x, state=state, train=True)
    else:
        _, params = layer.init(random.key(0), (None, 4))
        check_vjp(layer, tree.astype(params, np.float64), x)
    y32 = (layer.apply(params, x.astype(np.float32), state=state, train=True)[0]
           if layer.stateful else layer.apply(params, x.astype(np.float32)))
    y64 = (layer.apply(params, x, state=state, train=True)[0]
           if layer.stateful else layer.apply(params, x))
    np.testing.assert_allclose(y32, y64, atol=0.02)  # x's own rounding: 1e4 ± 5e-4


@pytest.mark.parametrize(("make", "error", "says"), [
    (lambda: BatchNorm(momentum="0.1"), TypeError,
     "BatchNorm: momentum must be a real number, got '0.1' (str)"),
    (lambda: BatchNorm(momentum=True), TypeError, "momentum must be a real number"),
    (lambda: BatchNorm(momentum=np.nan), ValueError,
     "momentum must be a finite number in [0, 1], got nan"),
    (lambda: BatchNorm(eps=np.inf), ValueError, "BatchNorm: eps must be a finite number > 0"),
    (lambda: LayerNorm(eps=-1e-5), ValueError, "LayerNorm: eps must be a finite number > 0"),
    (lambda: LayerNorm(eps=None), TypeError, "LayerNorm: eps must be a real number, got None"),
])
def test_settings_are_real_numbers_in_range(make, error, says):
    # a string was a ValueError, and eps=inf normalised every input to 0
    with pytest.raises(error, match=re.escape(says)):
        make()
    assert BatchNorm(momentum=np.array(0.5), eps=np.float32(0.5)).name == \
        "BatchNorm(momentum=0.5, eps=0.5)"  # NumPy numbers taken, as Python's


def test_batchnorm_in_sequential_names_the_child():
    model = L.Sequential(L.Dense(4), BatchNorm())
    _, params, state = model.init(random.key(0), (None, 2))
    with pytest.raises(ValueError, match=r"Sequential\[1\] BatchNorm\(\): Expected more"):
        model.apply(params, np.ones((1, 2), np.float32), state=state, train=True)


def test_layernorm_bad_input():
    layer = LayerNorm(axis=(-2, -1))
    _, params = layer.init(random.key(0), (None, 3, 4))
    with pytest.raises(ValueError, match=r"LayerNorm\(axis=\(-2, -1\)\): expected the normalised"
                                         r" axes .*\(3, 4\).*shape \(2, 4, 3\)"):
        layer.apply(params, np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match="includes the batch axis"):
        layer.apply(params, np.ones((3, 4)))
    with pytest.raises(ValueError, match="out of range"):
        layer.apply(params, np.ones(4))
    with pytest.raises(ValueError, match="twice"):
        LayerNorm(axis=(1, -1)).init(random.key(0), (None, 3))
    with pytest.raises(TypeError, match="axis must be an int"):
        LayerNorm(axis=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="known sizes"):
        LayerNorm().init(random.key(0), (None, None))


# ---------------------------------------------------------------------------- shared

def test_shared_batchnorm_threads_its_state_through_the_branches():
    # PyTorch's rule for a module called twice: branch 1 normalises with its own batch and
    # moves the statistics that branch 0 already moved.
    layer = BatchNorm(momentum=0.3)
    shared = L.Shared(L.Sequential(L.Dense(3), layer))
    assert shared.stateful
    out, params, state = shared.init(random.key(0), ((None, 4), (None, 4)))
    assert out == ((None, 3), (None, 3))
    assert isinstance(state, tuple) and len(state) == 1  # one entry per child, as Residual's
    p64, (s64,) = tree.astype(params, np.float64), tree.astype(state, np.float64)
    x0, x1 = _normal(1, (6, 4), 2.0, 1.0), _normal(2, (5, 4), 0.5, -1.0)
    (y0, y1), (new,) = shared.apply(p64, (x0, x1), state=(s64,), train=True)
    enc = L.Sequential(L.Dense(3), layer)
    z0, mid = enc.apply(p64, x0, state=s64, train=True)
    z1, last = enc.apply(p64, x1, state=mid, train=True)
    np.testing.assert_allclose(y0, z0)
    np.testing.assert_allclose(y1, z1)
    for a, b in zip(tree.leaves(new), tree.leaves(last)):
        np.testing.assert_allclose(a, b)
    (v0, v1), _, (from_vjp,) = shared.vjp(p64, (x0, x1), state=(s64,), train=True)
    np.testing.assert_allclose(v0, z0)  # the vjp's forward and state follow the same rule
    np.testing.assert_allclose(v1, z1)
    for a, b in zip(tree.leaves(from_vjp), tree.leaves(last)):
        np.testing.assert_allclose(a, b)
    moved_once = enc.apply(p64, x1, state=s64, train=True)[1]
    assert not np.allclose(tree.leaves(new)[0], tree.leaves(moved_once)[0])
    with pytest.raises(ValueError, match=r"Shared\(.*expected state as a tuple with one entry "
                                         r"per layer \(1\), got a tuple of length 2"):
        shared.apply(p64, (x0, x1), state=new)  # the layer's own state, unwrapped
    (e0, e1), (same,) = shared.apply(p64, (x0, x1), state=(new,))
    np.testing.assert_allclose(e0, enc.apply(p64, x0, state=new)[0])  # running statistics
    assert all(a is b for a, b in zip(tree.leaves(same), tree.leaves(new)))
    np.testing.assert_allclose(e1, enc.apply(p64, x1, state=new)[0])


@pytest.mark.parametrize("train", [True, False])
def test_shared_batchnorm_vjp_matches_finite_differences(train):
    shared = L.Shared(L.Sequential(L.Dense(3), BatchNorm(momentum=0.2)), 3)
    _, params, state = shared.init(random.key(0), ((None, 4),) * 3)
    state = tree.map(lambda a: a + _normal(9, a.shape, 0.1, 0.5), state)
    xs = tuple(_normal(10 + i, (5, 4), 1.0 + i, i) for i in range(3))
    check_vjp(shared, tree.astype(params, np.float64), xs, state=tree.astype(state, np.float64),
              train=train)


def test_shared_batchnorm_matches_torch_module_called_twice(torch):
    layer = L.Shared(BatchNorm(momentum=0.2))
    params, state, _ = _bn_setup(BatchNorm(momentum=0.2), (None, 3), 6)
    bn = torch.nn.BatchNorm1d(3, momentum=0.2, eps=EPS).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["scale"]))
        bn.bias.copy_(torch.from_numpy(params["bias"]))
        bn.running_mean.copy_(torch.from_numpy(state["mean"]))
        bn.running_var.copy_(torch.from_numpy(state["var"]))
    x0, x1 = _normal(1, (6, 3), 2.0, 1.0), _normal(2, (4, 3), 0.5, -1.0)
    dy0, dy1 = _normal(3, (6, 3)), _normal(4, (4, 3))
    t0, t1 = (torch.from_numpy(x).requires_grad_(True) for x in (x0, x1))
    o0, o1 = bn.train()(t0), bn(t1)
    ((o0 * torch.from_numpy(dy0)).sum() + (o1 * torch.from_numpy(dy1)).sum()).backward()
    (y0, y1), pullback, (new,) = layer.vjp(params, (x0, x1), state=(state,), train=True)
    grads, (dx0, dx1) = pullback((dy0, dy1))
    for ours, theirs in [(y0, o0), (y1, o1), (dx0, t0.grad), (dx1, t1.grad),
                         (grads["scale"], bn.weight.grad), (grads["bias"], bn.bias.grad),
                         (new["mean"], bn.running_mean), (new["var"], bn.running_var)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- short rows
# LayerNorm over trailing axes runs as (rows, S) with BLAS row sums and expanded per-row
# factors; BatchNorm's per-channel products run on rows tiled to 1024 values
# (funcdl.layers.base.chan, per_row). Checked against float64 formulas, finite differences,
# the general path (LayerNorm over a non-trailing axis) and NumPy's broadcast, bit for bit.

def test_chan_is_numpy_broadcast_bit_for_bit(monkeypatch):
    from funcdl.layers._sums import chan
    rng = np.random.default_rng(0)
    tiles, real_tile = [], np.tile  # chan calls np.tile only when it tiles

    def tile(*args):
        tiles.append(args)
        return real_tile(*args)

    monkeypatch.setattr(np, "tile", tile)
    # tiled whole (64, 7, 5, 16) or with leftover rows (6001, 3), (2100, 25); below
    # base.TILE_FROM elements or TILE_ROWS rows, or one channel: NumPy's broadcast as it is
    tiled = [(64, 7, 5, 16), (6001, 3), (2100, 25)]
    for shape in [*tiled, (3, 5), (1000, 3), (1100, 25), (7, 1), (2, 0, 4), (20000, 1)]:
        tiles.clear()
        a = rng.standard_normal(shape).astype(np.float32)
        v = rng.standard_normal(shape[-1:]).astype(np.float32).reshape(
            (1,) * (len(shape) - 1) + shape[-1:])
        for ufunc in (np.add, np.subtract, np.multiply):
            got = chan(ufunc, a, v)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ufunc(a, v))
            out = np.empty_like(a)
            assert chan(ufunc, a, v, out=out) is out
            np.testing.assert_array_equal(out, ufunc(a, v))
        np.testing.assert_array_equal(chan(np.multiply, a, v.astype(np.float64)), a * v.astype(
            np.float64))
        assert bool(tiles) == (shape in tiled), shape


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (9, 7), (2, 3, 2, 130)])
def test_layernorm_rows_path_by_hand_and_against_general_path(shape):
    layer = LayerNorm()
    s = shape[-1:]
    params = {"scale": _normal(1, s, 0.5, 1.0), "bias": _normal(2, s)}
    x, dy = _normal(3, shape, 2.0, 0.5), _normal(4, shape)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    inv = 1 / np.sqrt(var + EPS)
    xhat = (x - mu) * inv
    np.testing.assert_allclose(y, xhat * params["scale"] + params["bias"], rtol=1e-13, atol=1e-14)
    g = dy * params["scale"]
    expected = inv * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-13)
    red = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(grads["scale"], (dy * xhat).sum(red), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["bias"], dy.sum(red), rtol=1e-12, atol=1e-13)
    # the same normalisation over axis 1 of the transposed input takes the general path
    t = (0, len(shape) - 1, *range(1, len(shape) - 1))
    other = LayerNorm(axis=1)
    y1, pullback1 = other.vjp(params, x.transpose(t))
    np.testing.assert_allclose(y1, y.transpose(t), rtol=1e-13, atol=1e-14)
    g1, dx1 = pullback1(dy.transpose(t))
    np.testing.assert_allclose(dx1, dx.transpose(t), rtol=1e-12, atol=1e-13)
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13), g1, grads)
    check_vjp(layer, params, x)


@pytest.mark.parametrize("make", [LayerNorm, BatchNorm])
@pytest.mark.parametrize("train", [True, False])
def test_short_rows_float32_against_float64(make, train):
    layer = make()
    shape = (64, 7, 7, 16)  # 3136 rows of 16: the tiled rows and a remainder
    x = _normal(5, shape, 3.0, 100.0).astype(np.float32)
    dy = _normal(6, shape).astype(np.float32)
    init = layer.init(random.key(0), (None, *shape[1:]))
    params = {"scale": _normal(7, (16,), 0.5, 1.0).astype(np.float32),
              "bias": _normal(8, (16,)).astype(np.float32)}
    kw = {"state": {"mean": _normal(9, (16,), 1.0, 100.0).astype(np.float32),
                    "var": np.full(16, 9.0, np.float32)}, "train": train} if len(init) == 3 else {}
    out32 = layer.vjp(params, x, **kw)
    out64 = layer.vjp(tree.astype(params, np.float64), x.astype(np.float64),
                      **({**kw, "state": tree.astype(kw["state"], np.float64)} if kw else {}))
    (g32, dx32), (g64, dx64) = out32[1](dy), out64[1](dy.astype(np.float64))
    assert out32[0].dtype == dx32.dtype == g32["scale"].dtype == np.float32
    np.testing.assert_allclose(out32[0], out64[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-2)
    if len(init) == 3:
        np.testing.assert_array_equal(layer.apply(params, x, **kw)[0], out32[0])
    else:
        np.testing.assert_array_equal(layer.apply(params, x), out32[0])


def test_batchnorm_non_contiguous_input_matches_contiguous():
    layer = BatchNorm()
    params, state, x = _bn_setup(layer, (None, 4, 6, 5), 3)
    view = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    for train in (True, False):
        y, pullback, _ = layer.vjp(params, x, state=state, train=train)
        y2, pullback2, _ = layer.vjp(params, view, state=state, train=train)
        np.testing.assert_array_equal(y, y2)
        dy = _normal(11, y.shape)
        tree.map(np.testing.assert_array_equal, pullback(dy), pullback2(dy))


def test_a_nan_row_leaves_the_other_rows_refined():
    # np.maximum.reduce over the rows' |mu|/sigma was NaN with one NaN row, and the whole
    # batch skipped the refinement: rows constant at 12345.678 gave x-hat 0.3, not 0
    x = np.full((3, 7), 12345.678, np.float32)
    x[2, 0] = np.nan
    _, p = LayerNorm().init(random.key(0), (None, 7))
    with np.errstate(invalid="ignore"):
        y = LayerNorm().apply(p, x)
    np.testing.assert_array_equal(y[:2], 0)
    assert np.isnan(y[2]).all()


def test_rows_near_1e4_refine_to_float64s_accuracy():
    # distinct values around 1e4 with sigma 0.05: mu is not representable, and x-hat stays
    # within float32 rounding of the float64 result (x's own rounding: 1e4 +- 5e-4)
    x64 = 1e4 + np.random.default_rng(0).standard_normal((64, 16)) * 0.05
    x = x64.astype(np.float32)
    _, p = LayerNorm().init(random.key(0), (None, 16))
    np.testing.assert_allclose(LayerNorm().apply(p, x), LayerNorm().apply(p, x.astype(np.float64)),
                               atol=2e-5)
