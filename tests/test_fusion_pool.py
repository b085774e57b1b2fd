"""Sequential runs a ReLU right before a MaxPool2D after the pool (Pointwise.commutes_with_max
and Layer.selects_max), in vjp and apply, with or without stateful children (whose models
fuse Dense + activation too): the same numbers, structures and error locations as layer by
layer, ties, -inf and NaN included, and the ReLU really sees the pooled shape. "The same"
is np.testing.assert_array_equal's: a zero gradient may be -0.0 one way and 0.0 the other
where pool windows overlap (dy·0 summed into zeros), nothing else differs."""

from __future__ import annotations

import numpy as np
import pytest
from _fused import opaque, relu_spy
from hypothesis import given, settings
from hypothesis import strategies as st

from funcdl import layers as L
from funcdl import random, tree
from funcdl.layers import _fusion
from funcdl.layers._fusion import steps as _steps
from funcdl.layers.base import Layer, Pointwise
from funcdl.testing import check_vjp

POOLS = [lambda: L.MaxPool2D(2), lambda: L.MaxPool2D(3, 2, "SAME"), lambda: L.MaxPool2D(2, 1),
         lambda: L.MaxPool2D((2, 3), (1, 2), padding=((1, 0), (0, 1)))]


def _models(pool, dtype, conv=True):
    make = [lambda: L.Conv2D(3, 2), L.ReLU, pool] if conv else [L.ReLU, pool]
    fused = L.Sequential(*[m() for m in make], L.Flatten(), L.Dense(2))
    plain = L.Sequential(*[opaque(m()) for m in make], L.Flatten(), L.Dense(2))
    _, params = fused.init(random.key(0), (None, 5, 6, 2))
    return fused, plain, tree.astype(params, dtype)


def _tied(dtype, shape=(3, 5, 6, 2)):
    """Values on a coarse grid, most of them <= 0: ties of equal maxima and of zeros after
    the ReLU in most windows; a few -inf (a window may hold nothing else)."""
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal(shape) * 2 - 1).astype(dtype) / 2
    x[rng.random(shape) < 0.1] = -np.inf
    return x


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nan", [False, True])
def test_relu_after_the_pool_equals_layer_by_layer(pool, dtype, nan):
    fused, plain, params = _models(pool, dtype, conv=False)
    x = _tied(dtype)
    if nan:  # a NaN is its window's maximum (PyTorch's rule), before the ReLU or after
        x[np.random.default_rng(6).random(x.shape) < 0.1] = np.nan
    y1, pb1 = fused.vjp(params, x)
    y2, pb2 = plain.vjp(params, x)
    np.testing.assert_array_equal(y1, y2)
    dy = random.normal(random.key(2), y1.shape, dtype)
    (g1, dx1), (g2, dx2) = pb1(dy), pb2(dy)
    assert tree.structure(g1) == tree.structure(g2) == tree.structure(params)
    assert g1[0] == () and g1[1] == ()
    def same(a, b):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)

    tree.map(same, g1, g2, shapes=True)
    assert dx1.dtype == dtype
    np.testing.assert_array_equal(dx1, dx2)
    # dy reaches positive winners only, and NaN ones (ReLU passes dy at NaN, as torch's)
    assert (dx1 != 0).any() and ((x[dx1 != 0] > 0) | np.isnan(x[dx1 != 0])).all()


@pytest.mark.parametrize("pool", POOLS)
def test_conv_relu_pool_equals_layer_by_layer_with_ties(pool):
    fused, plain, params = _models(pool, np.float32)
    # an integer-valued input and kernel: many exact ties of the convolution's outputs
    params = tree.map(np.round, tree.map(lambda p: p * 4, params))
    x = np.round(_tied(np.float32) * 2)
    x[~np.isfinite(x)] = 0
    (y1, pb1), (y2, pb2) = fused.vjp(params, x), plain.vjp(params, x)
    np.testing.assert_array_equal(y1, y2)
    dy = np.ones_like(y1)
    tree.map(np.testing.assert_array_equal, pb1(dy), pb2(dy), shapes=True)


@pytest.mark.parametrize("pool", POOLS)
def test_swapped_pair_vjp_matches_finite_differences(pool):
    fused, _, params = _models(pool, np.float64)
    x = random.normal(random.key(1), (2, 5, 6, 2), np.float64)
    check_vjp(fused, params, x)


def test_the_activation_runs_on_the_pooled_values():
    seen = []
    x = np.ones((2, 6, 4, 3), np.float32)
    for commutes in (True, False):
        L.Sequential(relu_spy(seen, "f", commutes), L.MaxPool2D(2)).vjp(((), ()), x)
    assert seen == [(2, 3, 2, 3)]  # without the flag the spy's f is not called by a step


def test_apply_runs_the_pool_first():
    seen = []
    x = _tied(np.float32, (2, 6, 4, 3))
    model = L.Sequential(relu_spy(seen), L.MaxPool2D(2))
    y = model.apply(((), ()), x)
    assert seen == [(2, 3, 2, 3)]
    np.testing.assert_array_equal(y, L.MaxPool2D(2).apply((), np.maximum(x, 0)))
    np.testing.assert_array_equal(y, model.vjp(((), ()), x)[0])


def test_which_pairs_are_swapped():
    layers = [L.Dense(3), L.ReLU(), L.MaxPool2D(2), L.LeakyReLU(0.1), L.MaxPool2D(2),
              L.MaxPool2D(2), L.ReLU(), L.Tanh(), L.MaxPool2D(2), L.ReLU(), L.AvgPool2D(2),
              L.ReLU(), L.Dense(1), L.ReLU()]

    def kind(i, then):
        return None if then is None else "fused" if then is layers[i].vjp_then else "swapped"

    got = [(i, kind(i, then), act and act.name) for i, then, act in _steps(layers)]
    assert got == [(0, None, None),  # the ReLU goes with the pool behind it, not the Dense
                   (1, "swapped", "ReLU()"), (3, None, None), (4, None, None),
                   (5, "fused", "ReLU()"),  # MaxPool then ReLU: the usual order
                   (7, None, None), (8, "fused", "ReLU()"), (10, None, None),
                   (11, None, None), (12, "fused", "ReLU()")]


def test_errors_keep_their_layer():
    model = L.Sequential(L.Conv2D(2, 3), L.ReLU(), L.MaxPool2D(2))
    _, params = model.init(random.key(0), (None, 4, 4, 1))
    x = np.ones((2, 4, 4, 1), np.float32)
    _, pb = model.vjp(params, x)
    with pytest.raises(ValueError, match=r"Sequential\[2\] MaxPool2D\(2\).*\(2, 2, 2, 2\)"):
        pb(np.ones((2, 2, 2, 3), np.float32))
    bad = (params[0], {"w": np.ones(1)}, ())
    with pytest.raises(ValueError, match=r"Sequential\[1\] ReLU\(\)"):
        model.vjp(bad, x)
    with pytest.raises(ValueError, match=r"Sequential\[2\] MaxPool2D\(2\)"):
        model.vjp((params[0], (), {"w": np.ones(1)}), x)
    flat = L.Sequential(L.ReLU(), L.MaxPool2D(2))
    with pytest.raises(ValueError, match=r"Sequential\[1\] MaxPool2D\(2\).*rank 4"):
        flat.vjp(((), ()), np.ones((2, 4, 4), np.float32))


def _stateful_layers():
    return [L.Conv2D(3, 2), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(4),
            L.ReLU(), L.Dense(2)]


@pytest.mark.parametrize("train", [True, False])
def test_stateful_models_fuse_and_swap_as_layer_by_layer(train):
    fused = L.Sequential(*_stateful_layers())
    plain = L.Sequential(*[l if l.stateful else opaque(l) for l in _stateful_layers()])
    kinds = [(i, then is not None) for i, then, _ in _steps(_stateful_layers())]
    assert kinds == [(0, False), (1, False), (2, True), (4, False), (5, True), (7, False)]
    _, params, state = fused.init(random.key(0), (None, 5, 6, 2))
    x = _tied(np.float32)
    x[~np.isfinite(x)] = -3
    y1, s1 = fused.apply(params, x, state=state, train=train)
    y2, s2 = plain.apply(params, x, state=state, train=train)
    (z1, pb1, t1), (z2, pb2, t2) = (m.vjp(params, x, state=state, train=train)
                                    for m in (fused, plain))
    for a, b in ((y1, y2), (z1, z2), (y1, z1)):
        np.testing.assert_array_equal(a, b)
    for a, b in ((s1, s2), (t1, t2), (s1, t1)):
        assert tree.structure(a) == tree.structure(b) == tree.structure(state)
        tree.map(np.testing.assert_array_equal, a, b, shapes=True)
    dy = random.normal(random.key(2), z1.shape, np.float32)
    tree.map(np.testing.assert_array_equal, pb1(dy), pb2(dy), shapes=True)
    check_vjp(fused, tree.astype(params, np.float64), random.normal(random.key(4), x.shape,
                                                                    np.float64),
              state=tree.astype(state, np.float64), train=train)


def test_stateful_models_name_the_layer_of_a_bad_state_entry():
    model = L.Sequential(*_stateful_layers())
    _, params, state = model.init(random.key(0), (None, 4, 4, 1))
    x = np.ones((2, 4, 4, 1), np.float32)
    for i, name in ((2, r"ReLU\(\)"), (3, r"MaxPool2D\(2\)"), (6, r"ReLU\(\)")):
        bad = (*state[:i], {"n": 1}, *state[i + 1:])
        for run in (model.vjp, model.apply):
            with pytest.raises(ValueError, match=rf"Sequential\[{i}\] {name}: expected \(\)"):
                run(params, x, state=bad)
    bad = (*params[:3], {"w": np.ones(1)}, *params[4:])
    with pytest.raises(ValueError, match=r"Sequential\[3\] MaxPool2D\(2\)"):
        model.vjp(bad, x, state=state)


VOCAB = {  # shape-keeping spatial layers: every neighbour pair Sequential might fuse or swap
    "conv": lambda: L.Conv2D(3, 3), "dense": lambda: L.Dense(3), "relu": L.ReLU,
    "leaky": lambda: L.LeakyReLU(0.2), "tanh": L.Tanh, "bn": L.BatchNorm,
    "max2": lambda: L.MaxPool2D(2, 1, "SAME"), "max3": lambda: L.MaxPool2D(3, 1, "SAME"),
    "avg": lambda: L.AvgPool2D(2, 1, "SAME"),
}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(sorted(VOCAB)), min_size=1, max_size=7), st.booleans())
def test_any_stack_runs_as_layer_by_layer(names, train):
    fused = L.Sequential(*[VOCAB[k]() for k in names])
    plain = L.Sequential(*[l if l.stateful else opaque(l) for l in (VOCAB[k]() for k in names)])
    out = fused.init(random.key(0), (None, 4, 5, 3))
    params, kw = out[1], ({"state": out[2]} if fused.stateful else {})
    x = _tied(np.float32, (2, 4, 5, 3))
    x[~np.isfinite(x)] = -2
    y1, *r1 = fused.vjp(params, x, train=train, **kw)
    y2, *r2 = plain.vjp(params, x, train=train, **kw)
    a1, a2 = fused.apply(params, x, train=train, **kw), plain.apply(params, x, train=train, **kw)
    dy = np.round(random.normal(random.key(2), y1.shape, np.float32) * 4) / 4
    for a, b in ((y1, y2), (a1, a2), (r1[1:], r2[1:]), (r1[0](dy), r2[0](dy))):
        tree.map(np.testing.assert_array_equal, a, b, shapes=True)


def test_errors_name_the_layer_that_sees_the_input_first():
    # layer by layer the ReLU sees a bad input first; the swapped pair asks it first too
    model = L.Sequential(L.ReLU(), L.MaxPool2D(2))
    x16 = np.ones((2, 4, 4, 1), np.float16)
    for run in (model.apply, model.vjp):
        with pytest.raises(TypeError, match=r"Sequential\[0\] ReLU\(\): float16"):
            run(((), ()), x16)
        with pytest.raises(ValueError, match=r"Sequential\[0\] ReLU\(\): this layer has no"):
            run(({"w": 1}, {"w": 1}), np.ones((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"Sequential\[1\] MaxPool2D\(2\).*rank 4"):
        model.apply(((), ()), np.ones((2, 4, 4), np.float32))  # the ReLU takes any rank
    stateful = L.Sequential(*_stateful_layers())
    _, params, state = stateful.init(random.key(0), (None, 4, 4, 1))
    x = np.ones((2, 4, 4, 1), np.float32)
    bad_state = (*state[:2], {"n": 1}, {"n": 1}, *state[4:])
    bad_relu = (*params[:2], {"w": 1}, *params[3:])
    for run in (stateful.apply, stateful.vjp):
        with pytest.raises(ValueError, match=r"Sequential\[2\] ReLU\(\): expected \(\)"):
            run(params, x, state=bad_state)
        with pytest.raises(ValueError, match=r"Sequential\[2\] ReLU\(\): this layer has no"):
            run(bad_relu, x, state=(*state[:3], {"n": 1}, *state[4:]))


@pytest.mark.parametrize("act", [L.ELU, lambda: L.ELU(2.0), L.Softplus, L.Sigmoid, L.Tanh,
                                 lambda: L.LeakyReLU(3.0)])
def test_pool_then_any_activation_fuses_as_layer_by_layer(act):
    fused = L.Sequential(L.MaxPool2D(2), act())
    plain = L.Sequential(opaque(L.MaxPool2D(2)), opaque(act()))
    assert [then is not None for _, then, _ in _steps([L.MaxPool2D(2), act()])] == [True]
    x = -np.abs(random.normal(random.key(0), (2, 4, 4, 3), np.float64)) * 3  # maxima < 0
    (y1, pb1), (y2, pb2) = fused.vjp(((), ()), x), plain.vjp(((), ()), x)
    np.testing.assert_array_equal(y1, y2)
    dy = random.normal(random.key(1), y1.shape, np.float64)
    np.testing.assert_array_equal(pb1(dy)[1], pb2(dy)[1])
    with pytest.raises(ValueError, match=r"Sequential\[1\] .*pullback expected dy"):
        pb1(np.ones((2, 2, 2, 1)))  # would broadcast
    # distinct values below 0: one maximum per window, so finite differences see it
    distinct = -np.random.default_rng(2).permutation(96).reshape(2, 4, 4, 3) / 9.0 - 0.1
    check_vjp(fused, ((), ()), distinct)


def test_a_pointwise_without_the_flag_runs_where_it_stands():
    relu = L.ReLU()
    pw = relu.pointwise
    assert pw is not None
    mine = Layer(relu.init, relu.apply, relu.vjp, name="Mine",
                 pointwise=Pointwise("Mine", pw.f, pw.df))
    assert not mine.pointwise.commutes_with_max
    layers = [mine, L.MaxPool2D(2)]
    steps = _steps(layers)
    assert [then for _, then, _ in steps] == [None, None]
    assert _fusion.order(steps, _fusion.swaps(layers, steps)) == [0, 1]


def test_stateful_apply_runs_the_pool_first():
    seen = []
    model = L.Sequential(L.BatchNorm(), relu_spy(seen), L.MaxPool2D(2))
    _, params, state = model.init(random.key(0), (None, 6, 4, 3))
    model.apply(params, np.ones((2, 6, 4, 3), np.float32), state=state)
    assert seen == [(2, 3, 2, 3)]
