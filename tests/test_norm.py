"""BatchNorm and LayerNorm, the core: vjps against finite differences in both modes, batch and
running statistics and LayerNorm's output against hand formulas, the state threaded through
Sequential, value_and_grad and Shared, and bad inputs and settings. PyTorch cross-checks are in
test_norm_torch.py, float32 accuracy and the short-rows paths in test_norm_float32.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _norm_util import EPS, _bn_setup, _normal

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.layers.norm import BatchNorm, LayerNorm
from funcdl.testing import check_layer, check_vjp

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
    np.testing.assert_allclose(y.mean(axis=red), 0.0, atol=1e-12)
    # biased variance, shrunk by eps: var(x̂) = σ²/(σ² + eps)
    var = x.var(axis=red)
    np.testing.assert_allclose(y.var(axis=red), var / (var + EPS), rtol=1e-12)


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


# ---------------------------------------------------------------------------- bad input

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
    with pytest.raises(TypeError, match=r"params must be a dict with keys \['scale', 'bias'\] "
                                        r"\(as init returns them\), got tuple"):
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



@pytest.mark.parametrize("axis, shape", [(-1, (2, 0)), ((-2, -1), (2, 3, 0)), (1, (2, 0, 3))])
def test_layernorm_without_params_refuses_empty_normalised_axes_as_init_does(axis, shape):
    # with no params to check, apply and vjp reached a bare NumPy "cannot reshape array of
    # size 0" (or a mean of nothing); init refuses these axes by name
    layer = LayerNorm(axis=axis, elementwise_affine=False)
    for run in (layer.apply, layer.vjp):
        with pytest.raises(ValueError, match=re.escape(
                f"{layer.name}: the normalised axes {axis} of the input must have sizes > 0, "
                f"got an input of shape {shape}")):
            run((), np.ones(shape))
    no_examples = (0, *(3 for _ in shape[1:]))  # nothing to normalise: an empty output
    assert layer.apply((), np.ones(no_examples)).shape == no_examples
