"""GroupNorm (funcdl.layers.groupnorm) and BatchNorm's momentum=None and
track_running_stats=False: vjps against finite differences, GroupNorm against a naive
loop-per-group NumPy reference and against LayerNorm (one group), float32, bad inputs; the
cumulative running average over three batches by hand; batch statistics in inference; and
the affine=False paths, which skip the scale/bias gradients, giving the affine layer's
numbers. PyTorch cross-checks are in test_norm_group_torch.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _norm_util import EPS, _bn_setup, _normal

from funcdl import layers as L
from funcdl import random, tree
from funcdl.layers import groupnorm as groupnorm_module
from funcdl.layers import layernorm as layernorm_module
from funcdl.layers import norm as norm_module
from funcdl.layers.groupnorm import GroupNorm
from funcdl.layers.norm import BatchNorm, LayerNorm
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)

# (num_groups, in_shape): (N, C), (N, L, C), NHWC, (N, D, H, W, C); one group, several, C.
GN_TABLE = [(2, (None, 6)), (6, (None, 6)), (1, (None, 3, 4)), (3, (None, 3, 2, 6)),
            (2, (None, 2, 3, 2, 4))]


def _gn_setup(groups, in_shape, batch=3, seed=0):
    layer = GroupNorm(groups)
    c = in_shape[-1]
    params = {"scale": _normal(seed + 1, (c,), 0.5, 1.0), "bias": _normal(seed + 2, (c,))}
    x = _normal(seed + 3, (batch, *in_shape[1:]), 2.0, 0.5)
    return layer, params, x


def naive_group_norm(x, scale, bias, groups, dy):
    """y and the vjp by loops over examples and groups, each group's block as one vector:
    LayerNorm's textbook forward and ``dx = (g - mean g - x̂ mean(g x̂))/σ``, ``g = dy·w``."""
    cg = x.shape[-1] // groups
    y, dx = np.empty_like(x), np.empty_like(x)
    dscale, dbias = np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
    for i in range(x.shape[0]):
        for j in range(groups):
            ch = slice(j * cg, (j + 1) * cg)
            v, d = x[i, ..., ch], dy[i, ..., ch]
            mu = v.sum() / v.size
            sigma = np.sqrt(((v - mu) ** 2).sum() / v.size + EPS)
            xh = (v - mu) / sigma
            y[i, ..., ch] = xh * scale[ch] + bias[ch]
            g = d * scale[ch]
            dx[i, ..., ch] = (g - g.mean() - xh * (g * xh).mean()) / sigma
            dscale[ch] += (d * xh).reshape(-1, cg).sum(0)
            dbias[ch] += d.reshape(-1, cg).sum(0)
    return y, dx, dscale, dbias


# ---------------------------------------------------------------------------- GroupNorm

@pytest.mark.parametrize(("groups", "in_shape"), GN_TABLE)
@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_check_layer(groups, in_shape, affine):
    check_layer(GroupNorm(groups, affine=affine), in_shape, batch=2)


@pytest.mark.parametrize(("groups", "in_shape"), GN_TABLE)
def test_groupnorm_vjp_float64(groups, in_shape):
    layer, params, x = _gn_setup(groups, in_shape)
    check_vjp(layer, params, x)
    check_vjp(GroupNorm(groups, affine=False), (), 1e4 + x)  # the refined-mean path too


@pytest.mark.parametrize(("groups", "in_shape"), GN_TABLE)
def test_groupnorm_against_naive_reference(groups, in_shape):
    layer, params, x = _gn_setup(groups, in_shape, batch=4)
    dy = _normal(9, x.shape)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    want = naive_group_norm(x, params["scale"], params["bias"], groups, dy)
    for got, ref in zip((y, dx, grads["scale"], grads["bias"]), want):
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(layer.apply(params, x), y)
    # dx sums to 0 over each group (x̂ is centred), a wrong factor on mean(g) would not
    cg = x.shape[-1] // groups
    sums = dx.reshape(x.shape[0], -1, groups, cg).sum(axis=(1, 3))
    np.testing.assert_allclose(sums, 0, atol=1e-11)


def test_groupnorm_with_one_group_is_layernorm_over_the_example():
    layer, params, x = _gn_setup(1, (None, 3, 2, 4))
    ln = LayerNorm(axis=(1, 2, 3))
    tiled = {k: np.broadcast_to(v, x.shape[1:]).copy() for k, v in params.items()}
    dy = _normal(9, x.shape)
    y, pullback = layer.vjp(params, x)
    y_ln, pullback_ln = ln.vjp(tiled, x)
    np.testing.assert_allclose(y, y_ln, rtol=1e-12, atol=1e-13)
    (grads, dx), (grads_ln, dx_ln) = pullback(dy), pullback_ln(dy)
    np.testing.assert_allclose(dx, dx_ln, rtol=1e-11, atol=1e-12)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(grads[k], grads_ln[k].sum(axis=(0, 1)), rtol=1e-11)


def test_groupnorm_float32_in_float32_out():
    layer, params, x = _gn_setup(4, (None, 7, 5, 16), batch=8)
    p32, x32 = tree.astype(params, np.float32), (1e3 + 30 * x).astype(np.float32)
    assert tree.leaves(layer.init(KEY, (None, 7, 5, 16))[1])[0].dtype == np.float32
    dy = _normal(9, x.shape)
    y, pullback = layer.vjp(p32, x32)
    grads, dx = pullback(dy.astype(np.float32))
    assert y.dtype == dx.dtype == grads["scale"].dtype == grads["bias"].dtype == np.float32
    y64, pullback64 = layer.vjp(params, x32.astype(np.float64))
    grads64, dx64 = pullback64(dy)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dx64, rtol=1e-3, atol=1e-5)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(grads[k], grads64[k], rtol=1e-3, atol=1e-3)
    # float64 input, float32 params: dx float64, the params' grads float32 (as JAX)
    g, dx = layer.vjp(p32, x)[1](dy)
    assert dx.dtype == np.float64 and g["scale"].dtype == g["bias"].dtype == np.float32
    assert GroupNorm(2, affine=False).apply((), np.ones((2, 4), np.int32)).dtype == np.float32


def test_groupnorm_bad_input():
    say = re.escape
    with pytest.raises(ValueError, match=say("GroupNorm(4): C = 6 channels") + ".*"
                       + say("num_groups = 4") + ".*num_groups=3 or 6"):
        GroupNorm(4).init(KEY, (None, 5, 6))
    with pytest.raises(ValueError, match=say("GroupNorm(4, affine=False): C = 6") + ".*"
                       + say("num_groups = 4")):
        GroupNorm(4, affine=False).apply((), np.ones((2, 6)))
    six = {"scale": np.ones(6), "bias": np.zeros(6)}  # params made by hand for C = 6
    for call in (GroupNorm(4).apply, GroupNorm(4).vjp):
        with pytest.raises(ValueError, match=say("C = 6") + ".*" + say("num_groups = 4")):
            call(six, np.ones((2, 6)))
    layer = GroupNorm(2)
    _, params = layer.init(KEY, (None, 3, 4))
    with pytest.raises(ValueError, match=say("GroupNorm(2): expected 4 channels on the last "
                                             "axis") + r".*\(2, 3, 6\)"):
        layer.apply(params, np.ones((2, 3, 6)))
    with pytest.raises(ValueError, match=r"GroupNorm\(2\): expected an input of rank >= 2"):
        layer.apply(params, np.ones(4))
    with pytest.raises(ValueError, match=r"GroupNorm\(2\): the channel axis .* known size"):
        layer.init(KEY, (None, 3, None))
    with pytest.raises(TypeError, match=r"GroupNorm\(2\): expected a numeric array"):
        layer.apply(params, np.array([["a"] * 4] * 2))
    _, pullback = layer.vjp(params, np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"GroupNorm\(2\): pullback expected dy of shape"):
        pullback(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"GroupNorm\(2\): params\['scale'\] must be a vector"):
        layer.apply({"scale": np.ones((2, 4)), "bias": np.zeros((2, 4))}, np.ones((2, 3, 4)))
    for bad, err, says in [({"num_groups": 0}, ValueError, "num_groups must be >= 1"),
                           ({"num_groups": 2.5}, TypeError, "num_groups must be an int"),
                           ({"num_groups": True}, TypeError, "num_groups must be an int"),
                           ({"num_groups": 2, "eps": 0}, ValueError, "eps must be a finite"),
                           ({"num_groups": 2, "affine": "no"}, TypeError, "affine must be")]:
        with pytest.raises(err, match="GroupNorm: " + say(says)):
            GroupNorm(**bad)
    assert GroupNorm(np.int64(2), eps=1e-3).name == "GroupNorm(2, eps=0.001)"


# ---------------------------------------------------------------------------- momentum=None

def test_momentum_none_is_the_cumulative_average_over_three_batches():
    layer = BatchNorm(momentum=None)
    assert layer.name == "BatchNorm(momentum=None)" and layer.stateful
    _, params, state = layer.init(KEY, (None, 2, 2, 3))
    assert set(state) == {"mean", "var", "count"} and set(BatchNorm().init(
        KEY, (None, 3))[2]) == {"mean", "var"}  # the default layout is unchanged
    assert state["count"].shape == () and state["count"].dtype == np.int64
    params, state = tree.astype(params, np.float64), tree.astype(state, np.float64)
    xs = [_normal(10 + i, (4, 2, 2, 3), 1.0 + i, 2.0 * i - 1) for i in range(3)]
    for i, x in enumerate(xs):
        _, from_vjp = layer.vjp(params, x, state=state, train=True)[::2]
        _, state = layer.apply(params, x, state=state, train=True)
        tree.map(np.testing.assert_array_equal, from_vjp, state)
        assert int(state["count"]) == i + 1 and state["count"].dtype == np.int64
    rows = [x.reshape(-1, 3) for x in xs]  # by hand: the plain mean of the batches' stats
    mean = (rows[0].mean(0) + rows[1].mean(0) + rows[2].mean(0)) / 3
    var = (rows[0].var(0, ddof=1) + rows[1].var(0, ddof=1) + rows[2].var(0, ddof=1)) / 3
    np.testing.assert_allclose(state["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(state["var"], var, rtol=1e-12)
    x = _normal(20, (5, 2, 2, 3))
    y, same = layer.apply(params, x, state=state)  # inference: those statistics, no move
    assert same is state
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + EPS), rtol=1e-12, atol=1e-12)


def test_momentum_none_float32_state_and_gradients():
    layer = BatchNorm(momentum=None, axis=1)
    check_layer(layer, (None, 3, 4), train=True)
    check_layer(layer, (None, 3, 4), train=False)
    params, state, x = _bn_setup(BatchNorm(axis=1), (None, 3, 4), 5)
    state = {**state, "count": np.asarray(7)}
    check_vjp(layer, params, x, state=state, train=True)
    _, new = layer.apply(tree.astype(params, np.float32), x.astype(np.float32),
                         state=tree.astype(state, np.float32), train=True)
    assert {k: v.dtype for k, v in new.items()} == {"mean": np.float32, "var": np.float32,
                                                    "count": np.int64}
    np.testing.assert_allclose(new["mean"], (7 * state["mean"] + x.mean((0, 2))) / 8,
                               rtol=1e-6)


def test_momentum_none_bad_count():
    layer = BatchNorm(momentum=None)
    _, params, state = layer.init(KEY, (None, 3))
    x = np.ones((4, 3), np.float32)
    for count, err, says in [(-1, ValueError, "in [0, 2**63 - 1), got -1"),
                             (2.5, TypeError, "an int (a 0-d int64 array"),
                             (np.array([1]), TypeError, "an array of shape (1,)"),
                             (np.bool_(True), TypeError, "an int")]:
        with pytest.raises(err, match=re.escape("BatchNorm(momentum=None): state['count'] ")
                           + ".*" + re.escape(says)):
            layer.apply(params, x, state={**state, "count": count}, train=True)
    with pytest.raises(ValueError, match=re.escape("expected state as a dict with keys ['mean', "
                                                   "'var', 'count']")):
        layer.apply(params, x, state=BatchNorm().init(KEY, (None, 3))[2])
    moved = layer.apply(params, x, state={**state, "count": 2.0}, train=True)[1]
    assert moved["count"] == 3 and moved["count"].dtype == np.int64  # a whole float counts
    with pytest.raises(TypeError, match=r"momentum must be a real number.*or None"):
        BatchNorm(momentum="0.1")


# ---------------------------------------------------------------------------- no running stats

@pytest.mark.parametrize("affine", [True, False])
def test_track_running_stats_false_uses_batch_statistics_in_inference(affine):
    layer = BatchNorm(track_running_stats=False, affine=affine)
    assert not layer.stateful
    assert layer.name == "BatchNorm(" + ("" if affine else "affine=False, ") + \
        "track_running_stats=False)"
    out = layer.init(KEY, (None, 2, 3))
    assert len(out) == 2 and out[0] == (None, 2, 3)
    params, state, x = _bn_setup(BatchNorm(), (None, 2, 3), 4)
    if not affine:
        params = ()
    dy = _normal(8, x.shape)
    y_train, y_eval = layer.apply(params, x, train=True), layer.apply(params, x)
    np.testing.assert_array_equal(y_train, y_eval)
    (y1, pb1), (y0, pb0) = layer.vjp(params, x, train=True), layer.vjp(params, x)
    np.testing.assert_array_equal(y1, y_eval)
    np.testing.assert_array_equal(y0, y_eval)
    tree.map(np.testing.assert_array_equal, pb0(dy), pb1(dy))
    # the stateful layer's training numbers, without its state
    ref = BatchNorm(affine=affine)
    y_ref, pb_ref, _ = ref.vjp(params, x, state=state, train=True)
    np.testing.assert_array_equal(y_eval, y_ref)
    tree.map(np.testing.assert_array_equal, pb0(dy), pb_ref(dy))
    r = x.reshape(-1, 3)
    xhat = ((r - r.mean(0)) / np.sqrt(r.var(0) + EPS)).reshape(x.shape)
    np.testing.assert_allclose(y_eval, xhat * params["scale"] + params["bias"] if affine
                               else xhat, rtol=1e-12, atol=1e-12)
    check_vjp(layer, params, x)
    check_layer(layer, (None, 2, 3), batch=1)  # batch 1: its rows depend on each other
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        layer.apply(params, x[:1, :1])  # in inference too, as PyTorch
    with pytest.raises(TypeError, match=r"BatchNorm\(.*track_running_stats=False\).apply\(\)"
                                        r" got an unexpected keyword argument 'state'"):
        layer.apply(params, x, state=state)
    with pytest.raises(TypeError, match="BatchNorm: track_running_stats must be True or False"):
        BatchNorm(track_running_stats=None)


def test_track_running_stats_false_in_a_model_is_stateless():
    model = L.Sequential(L.Dense(4), BatchNorm(track_running_stats=False, momentum=None),
                         L.ReLU())
    assert not model.stateful
    _, params = model.init(KEY, (None, 3))
    x = _normal(1, (6, 3)).astype(np.float32)
    assert model.apply(params, x).dtype == np.float32
    check_vjp(model, tree.astype(params, np.float64), x.astype(np.float64))


# ---------------------------------------------------------------------------- affine=False

def _counting(monkeypatch, module):
    calls = []
    real = module.block_sum
    monkeypatch.setattr(module, "block_sum", lambda *a: calls.append(a) or real(*a))
    return calls


@pytest.mark.parametrize(("make", "in_shape", "sums"), [
    (lambda a: BatchNorm(affine=a), (None, 4, 5), (0, 2)),          # inference pullback
    (lambda a: LayerNorm(elementwise_affine=a), (None, 4, 5), (2, 4)),  # rows
    (lambda a: LayerNorm(axis=1, elementwise_affine=a), (None, 4, 5), (0, 2)),  # general
    (lambda a: GroupNorm(2, affine=a), (None, 3, 4), (0, 2)),
])
def test_without_affine_no_param_grads_are_made_and_the_numbers_stay(monkeypatch, make,
                                                                    in_shape, sums):
    plain, affine = make(False), make(True)
    made = affine.init(KEY, in_shape)
    ones = tree.map(lambda a: np.ones_like(a, np.float64), made[1])
    ones["bias"] = np.zeros_like(ones["bias"])
    kw = {"state": tree.astype(made[2], np.float64)} if affine.stateful else {}
    x = _normal(1, (3, *in_shape[1:]), 2.0, 1.0)
    dy = _normal(2, x.shape)
    module = (groupnorm_module if "Group" in affine.name else
              layernorm_module if "Layer" in affine.name else norm_module)
    for layer, params, want in ((plain, (), sums[0]), (affine, ones, sums[1])):
        y, pullback, *_ = layer.vjp(params, x, **kw)
        calls = _counting(monkeypatch, module)
        grads, dx = pullback(dy)
        assert len(calls) == want, (layer.name, len(calls))
        monkeypatch.undo()
        if layer is plain:
            y_plain, dx_plain = y.copy(), dx
            assert grads == ()
            y[...] = 7.0  # y is the caller's: the pullback's x̂ is not it
            np.testing.assert_array_equal(pullback(dy)[1], dx)
    np.testing.assert_array_equal(y_plain, y)  # the affine layer's at scale 1, bias 0
    np.testing.assert_array_equal(dx_plain, dx)
    np.testing.assert_array_equal(plain.apply((), x, **kw)[0] if kw else plain.apply((), x),
                                  y_plain)
