"""Combinators and routing layers: vjps against finite differences, equivalence with the
children composed by hand, weight sharing summing gradients, state per child, and the
dtypes the merges take and give back. Bad inputs and a user's own layer inside a
combinator: test_combinators_checks.py."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

TABLE = [
    (lambda: L.Parallel(L.Dense(3), L.Tanh()), ((None, 2), (None, 4))),
    (lambda: L.Sequential(L.FanOut(3), L.Parallel(L.Dense(2), L.Dense(2), L.Identity()),
                          L.FanInConcat()), (None, 2)),
    (lambda: L.Sequential(L.FanOut(2), L.Parallel(L.Dense(4), L.Sigmoid()), L.FanInSum()),
     (None, 4)),
    (lambda: L.Residual(L.Sequential(L.Dense(5), L.ReLU(), L.Dense(5))), (None, 5)),
    (lambda: L.Residual(L.Tanh()), (None, 2, 3)),
    (lambda: L.Sequential(L.FanOut(2), L.Shared(L.Sequential(L.Dense(3), L.Tanh())),
                          L.FanInSum()), (None, 4)),
    (lambda: L.Sequential(L.FanOut(2), L.Parallel(L.Slice(np.s_[0:2]), L.Slice(np.s_[2:])),
                          L.Shared(L.Dense(3)), L.FanInConcat(), L.Dense(1)), (None, 4)),
    (lambda: L.Slice(np.s_[:, 1]), (None, 3, 4)),
    (lambda: L.Slice(1), (None, 3)),
    (lambda: L.Slice(np.s_[::2, 1:]), (None, 5, 4)),
    (lambda: L.FanInConcat(axis=1), ((None, 2, 3), (None, 4, 3))),
    (L.FanInSum, ((None, 3), (None, 3), (None, 3))),
    (lambda: L.Shared(L.Dense(2), 3), ((None, 4), (None, 4), (None, 4))),
]
IDS = [f"{i}-{c().name}" for i, (c, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_check_layer(make, in_shape, batch):
    check_layer(make(), in_shape, batch=batch)


def test_dropout_inside_branches_gets_distinct_keys(key):
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Dropout(0.5), L.Dropout(0.5)))
    _, params = model.init(key, (None, 100))
    a, b = model.apply(params, np.ones((4, 100), np.float32), key=random.key(3), train=True)
    assert not np.array_equal(a, b)
    check_vjp(model, params, np.ones((2, 10)), key=random.key(3), train=True)


def test_fanout_pullback_sums_cotangents():
    _, pullback = L.FanOut(3).vjp((), np.zeros((2, 2)))
    _, dx = pullback((np.ones((2, 2)), 2 * np.ones((2, 2)), 3 * np.ones((2, 2))))
    np.testing.assert_array_equal(dx, 6 * np.ones((2, 2)))


def test_residual_equals_manual(key):
    f = L.Sequential(L.Dense(3), L.Tanh())
    res = L.Residual(f)
    _, params = res.init(key, (None, 3))
    x = random.normal(random.key(1), (4, 3), np.float64)
    p64 = tree.astype(params, np.float64)
    y, pullback = res.vjp(p64, x)
    fy, fpb = f.vjp(p64, x)
    np.testing.assert_allclose(y, x + fy)
    dy = random.normal(random.key(2), (4, 3), np.float64)
    (dp, dx), (fdp, fdx) = pullback(dy), fpb(dy)
    np.testing.assert_allclose(dx, dy + fdx)
    tree.map(np.testing.assert_allclose, dp, fdp, shapes=True)


def test_shared_gradient_is_sum_of_per_use_gradients(key):
    enc = L.Sequential(L.Dense(4), L.Tanh())
    shared = L.Shared(enc)
    out, params = shared.init(key, ((None, 3), (None, 3)))
    assert out == ((None, 4), (None, 4))
    assert tree.structure(params) == tree.structure(enc.init(key, (None, 3))[1])
    p64 = tree.astype(params, np.float64)
    x1 = random.normal(random.key(1), (5, 3), np.float64)
    x2 = random.normal(random.key(2), (5, 3), np.float64)
    dy1 = random.normal(random.key(3), (5, 4), np.float64)
    dy2 = random.normal(random.key(4), (5, 4), np.float64)
    (y1, _), pullback = shared.vjp(p64, (x1, x2))
    dparams, (dx1, dx2) = pullback((dy1, dy2))
    g1, e1 = enc.vjp(p64, x1)[1](dy1)
    g2, e2 = enc.vjp(p64, x2)[1](dy2)
    tree.map(lambda d, a, b: np.testing.assert_allclose(d, a + b), dparams, g1, g2,
             shapes=True)
    np.testing.assert_allclose(dx1, e1)
    np.testing.assert_allclose(dx2, e2)
    np.testing.assert_allclose(y1, enc.apply(p64, x1))


def test_shared_model_trains_with_value_and_grad(key):
    # two points -> same side of the disk boundary? one encoder applied to both points
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Slice(np.s_[0:2]), L.Slice(np.s_[2:4])),
                         L.Shared(L.Sequential(L.Dense(8), L.ReLU(), L.Dense(1))),
                         L.FanInConcat(), L.Dense(1))
    _, params = model.init(key, (None, 4))
    x = random.uniform(random.key(1), (16, 4), dtype=np.float64)
    y = np.ones((16, 1))
    p64 = tree.astype(params, np.float64)
    value, grads = fd.value_and_grad(model, fd.losses.bce_with_logits)(p64, x, y)
    assert np.isfinite(value)
    tree.check_same(p64, grads, shapes=True)


def test_parallel_params_and_state_per_child(key):
    model = L.Parallel(L.Dense(2), L.ReLU(), L.Dense(3))
    out, params = model.init(key, ((None, 1), (None, 2), (None, 2)))
    assert out == ((None, 2), (None, 2), (None, 3))
    assert params[1] == () and set(params[0]) == {"b", "w"}


def test_a_residual_state_holds_one_entry_for_its_one_child(key):
    # DESIGN: a combinator's state holds one entry per child; its params are the child's
    model = L.Residual(L.BatchNorm())
    _, params, state = model.init(key, (None, 3))
    _, bn_params, bn_state = L.BatchNorm().init(key, (None, 3))
    assert set(params) == set(bn_params)
    assert type(state) is tuple and len(state) == 1 and set(state[0]) == {"mean", "var"}
    x = np.arange(12.0).reshape(4, 3)
    y, new_state = model.apply(params, x, state=state, train=True)
    y_bn, bn_new = L.BatchNorm().apply(bn_params, x, state=bn_state, train=True)
    np.testing.assert_allclose(y, x + y_bn)
    assert len(new_state) == 1
    np.testing.assert_allclose(new_state[0]["var"], bn_new["var"])
    _, _, vjp_state = model.vjp(params, x, state=state, train=True)
    np.testing.assert_allclose(vjp_state[0]["mean"], bn_new["mean"])
    with pytest.raises(ValueError, match=r"Residual\(BatchNorm\(\)\): expected state as a "
                                         r"tuple with one entry"):
        model.apply(params, x, state=bn_state)  # the child's state unwrapped
    # the vjp through the wrapped state, in training (batch statistics) and inference
    for train in (True, False):
        check_vjp(model, params, x + np.sin(x), state=state, train=train)


def test_slice_known_values_and_vjp():
    x = np.arange(12.0).reshape(2, 6)
    y, pullback = L.Slice(np.s_[1:3]).vjp((), x)
    np.testing.assert_array_equal(y, [[1, 2], [7, 8]])
    _, dx = pullback(np.ones((2, 2)))
    np.testing.assert_array_equal(dx, [[0, 1, 1, 0, 0, 0]] * 2)


def test_fan_in_concat_splits_cotangent():
    xs = (np.ones((2, 1)), np.zeros((2, 3)))
    y, pullback = L.FanInConcat().vjp((), xs)
    assert y.shape == (2, 4)
    _, (d1, d2) = pullback(np.arange(8.0).reshape(2, 4))
    np.testing.assert_array_equal(d1, [[0], [4]])
    np.testing.assert_array_equal(d2, [[1, 2, 3], [5, 6, 7]])


def test_a_stateful_sequential_under_check_finite_returns_the_new_state(key):
    # the checked forward (child by child) must hand back the children's new states
    model = L.Sequential(L.Dense(3), L.BatchNorm())
    _, params, state = model.init(key, (None, 2))
    x = random.normal(random.key(1), (5, 2), np.float64)
    _, expected = model.apply(params, x, state=state, train=True)
    assert not np.allclose(expected[1]["mean"], state[1]["mean"])
    with fd.debug.check_finite():
        _, new_state = model.apply(params, x, state=state, train=True)
        _, _, vjp_state = model.vjp(params, x, state=state, train=True)
    for got in (new_state, vjp_state):
        assert got[0] == ()
        tree.map(np.testing.assert_array_equal, got, expected, shapes=True)


def test_a_layer_below_an_embedding_gets_no_cotangent_and_the_grads_keep_their_structure(key):
    # nothing flows back from the ids: the Slice below the Embedding (no params) gets (),
    # and the pullback does not stumble on the None dx
    model = L.Sequential(L.Slice(np.s_[1:]), L.Embedding(5, 2), L.Flatten(), L.Dense(1))
    _, params = model.init(key, (None, 3))
    y, pullback = model.vjp(params, np.array([[0, 1, 4], [3, 2, 2]]))
    grads, dx = pullback(np.ones_like(y))
    assert dx is None and grads[0] == ()
    tree.check_same(params, grads, shapes=True)


def test_a_branch_whose_cotangent_is_none_gets_zero_grads(key):
    # a None entry (that branch's output came from ids, see FanOut): zero grads of that
    # branch's own params and a None dx; the other branch's grads as its layer's own
    xs = (random.normal(random.key(1), (2, 4), np.float64),
          random.normal(random.key(2), (2, 1), np.float64))
    model = L.Parallel(L.Dense(2), L.Dense(3))
    _, params = model.init(key, ((None, 4), (None, 1)))
    params = tree.astype(params, np.float64)
    dy = random.normal(random.key(3), (2, 2), np.float64)
    grads, (dx0, dx1) = model.vjp(params, xs)[1]((dy, None))
    tree.check_same(params, grads, shapes=True)
    assert dx1 is None and not any(g.any() for g in tree.leaves(grads[1]))
    g0, e0 = L.Dense(2).vjp(params[0], xs[0])[1](dy)
    tree.map(np.testing.assert_array_equal, grads[0], g0, shapes=True)
    np.testing.assert_array_equal(dx0, e0)
    shared = L.Shared(L.Dense(2))  # the sum over branches takes nothing from the None one
    grads, (dx0, dx1) = shared.vjp(params[0], (xs[0], 2 * xs[0]))[1]((dy, None))
    assert dx1 is None
    tree.map(np.testing.assert_array_equal, grads, g0, shapes=True)
    np.testing.assert_array_equal(dx0, e0)


def test_parallel_grads_come_in_the_params_container(key):
    model = L.Parallel(L.Dense(2), L.Tanh())
    _, params = model.init(key, ((None, 3), (None, 2)))
    xs = (np.ones((2, 3), np.float32), np.ones((2, 2), np.float32))
    for given in (params, list(params)):
        ys, pullback = model.vjp(given, xs)
        grads, _ = pullback(tuple(np.ones_like(y) for y in ys))
        assert type(grads) is type(given) and grads[1] == ()


def test_a_stateful_parallel_returns_each_branch_new_state(key):
    model = L.Parallel(L.BatchNorm(), L.Dense(2))
    _, params, state = model.init(key, ((None, 3), (None, 3)))
    x = np.arange(12.0).reshape(4, 3) ** 2
    _, bn_new = L.BatchNorm().apply(params[0], x, state=state[0], train=True)
    assert not np.allclose(bn_new["mean"], state[0]["mean"])
    _, new_state = model.apply(params, (x, x), state=state, train=True)
    _, _, vjp_state = model.vjp(params, (x, x), state=state, train=True)
    for got in (new_state, vjp_state):
        assert len(got) == 2 and got[1] == ()
        tree.map(np.testing.assert_array_equal, got[0], bn_new, shapes=True)


def test_shared_dropout_draws_one_mask_per_branch(key):
    # as a PyTorch module called twice: each branch its own key, in apply and vjp alike
    shared = L.Shared(L.Dropout(0.5))
    x = np.ones((4, 50))
    a, b = shared.apply((), (x, x), key=random.key(3), train=True)
    assert not np.array_equal(a, b)
    (ya, yb), _ = shared.vjp((), (x, x), key=random.key(3), train=True)
    np.testing.assert_array_equal(ya, a)
    np.testing.assert_array_equal(yb, b)
    check_vjp(shared, (), (x[:2, :10], 2 * x[:2, :10]), key=random.key(3), train=True)



@pytest.mark.parametrize("model", [
    L.Residual(L.Identity()),
    L.Sequential(L.FanOut(2), L.FanInSum()),
    L.Sequential(L.FanOut(2), L.Parallel(L.Identity(), L.ReLU()), L.FanInSum()),
])
@pytest.mark.parametrize(("x", "doubled"), [(np.uint8([[200, 1]]), [[400, 2]]),
                                            (np.array([[True, False]]), [[2, 0]])])
def test_combinators_that_add_take_integer_and_bool_inputs_as_float32(model, x, doubled):
    # as the activations do: uint8 must not wrap (200 + 200 = 144), bools must not or
    _, params = model.init(random.key(0), (None, 2))
    y = model.apply(params, x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, doubled)


@pytest.mark.parametrize("ids", [np.int64, np.uint8, np.bool_])
def test_fan_in_concat_takes_ids_beside_floats_in_the_floats_dtype(ids):
    # as Residual and FanInSum: int64 ids beside float32 features must not give float64
    layer = L.FanInConcat()
    xs = (np.array([[1, 0]], ids), np.array([[0.5]], np.float32))
    y = layer.apply((), xs)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[1, 0, 0.5]])
    y, pullback = layer.vjp((), xs)
    assert [d.dtype for d in pullback(np.ones_like(y))[1]] == [np.float32, np.float32]
    only_ids = layer.apply((), (xs[0], xs[0]))  # nothing to take a dtype from: kept as is
    assert only_ids.dtype == np.dtype(ids)


def test_residual_takes_a_list_as_every_layer_does():
    # merged() read x.shape of the list: AttributeError
    layer = L.Residual(L.Dense(2))
    _, params = layer.init(random.key(0), (None, 2))
    rows = [[1.0, 2.0], [3.0, -1.0]]
    want = layer.apply(params, np.array(rows, np.float32))  # Python floats: float32
    np.testing.assert_array_equal(layer.apply(params, rows), want)
    y, pullback = layer.vjp(params, rows)
    np.testing.assert_array_equal(y, want)
    assert pullback(np.ones((2, 2)))[1].shape == (2, 2)


@pytest.mark.parametrize("layer", [L.FanInSum(), L.FanInConcat()])
def test_merges_give_each_input_its_own_dtype_back(layer):
    # dx_i was dy, in the promoted output's dtype, for a float32 input beside a float64 one
    xs = (np.ones((2, 3), np.float32), np.full((2, 3), 2.0))
    y, pullback = layer.vjp((), xs)
    assert y.dtype == np.float64
    dy = np.arange(y.size, dtype=np.float64).reshape(y.shape) / 7
    _, (d32, d64) = pullback(dy)
    assert (d32.dtype, d64.dtype) == (np.float32, np.float64)
    want = (dy, dy) if y.shape == (2, 3) else (dy[:, :3], dy[:, 3:])
    np.testing.assert_array_equal(d32, want[0].astype(np.float32))
    np.testing.assert_array_equal(d64, want[1])
