"""Repeat: one layer, one set of params, applied n times in series (weight sharing across
depth). Its gradient is the sum over the applications, which the Sequential of n copies
with equal params gives leaf by leaf."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp


@pytest.mark.parametrize(("make", "in_shape"), [
    (lambda: L.Repeat(L.Sequential(L.Dense(4), L.Tanh()), 3), (None, 4)),
    (lambda: L.Repeat(L.Residual(L.Sequential(L.Dense(3), L.Tanh(), L.Dense(3))), 2),
     (None, 2, 3)),
    (lambda: L.Repeat(L.Dense(2), 1), (None, 2)),
])
def test_check_layer(make, in_shape):
    check_layer(make(), in_shape)


def test_equals_n_copies_in_sequence_with_grads_summed(key):
    block = L.Sequential(L.Dense(5), L.Tanh())
    tied, chain = L.Repeat(block, 3), L.Sequential(block, block, block)
    _, p = tied.init(key, (None, 5))
    x = random.normal(random.key(1), (4, 5), np.float64)
    p = tree.astype(p, np.float64)
    y, pb = tied.vjp(p, x)
    y3, pb3 = chain.vjp((p, p, p), x)
    np.testing.assert_array_equal(y, y3)
    dy = random.normal(random.key(2), y.shape, np.float64)
    (g, dx), (g3, dx3) = pb(dy), pb3(dy)
    np.testing.assert_array_equal(dx, dx3)
    summed = tree.map(lambda a, b, c: a + b + c, *g3)
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14, atol=0), g, summed,
             shapes=True)


def test_known_gradient_of_a_matrix_applied_twice():
    # y = x W W: dW = xᵀ (dy Wᵀ) + (x W)ᵀ dy, dx = dy Wᵀ Wᵀ; one application alone, or
    # twice the last one's gradient, would both miss
    w = np.array([[1.0, 2.0], [-1.0, 0.5]])
    x = np.array([[1.0, -2.0]])
    dy = np.array([[0.5, 1.0]])
    y, pb = L.Repeat(L.Dense(2, use_bias=False), 2).vjp({"w": w}, x)
    np.testing.assert_allclose(y, x @ w @ w)
    g, dx = pb(dy)
    np.testing.assert_allclose(g["w"], x.T @ (dy @ w.T) + (x @ w).T @ dy)
    np.testing.assert_allclose(dx, dy @ w.T @ w.T)


def test_a_stateful_layer_carries_its_state_through_the_applications(key):
    bn = L.BatchNorm()
    _, p, s = bn.init(key, (None, 3))
    x = random.normal(random.key(1), (6, 3))
    y1, s1 = bn.apply(p, x, state=s, train=True)
    y2, s2 = bn.apply(p, y1, state=s1, train=True)
    tied = L.Repeat(bn, 2)
    _, tp, ts = tied.init(key, (None, 3))
    y, (t_state,) = tied.apply(tp, x, state=ts, train=True)
    np.testing.assert_array_equal(y, y2)
    tree.map(np.testing.assert_array_equal, t_state, s2, shapes=True)
    check_layer(tied, (None, 3))
    check_layer(tied, (None, 3), train=True, batch=5)  # batch statistics, state carried


def test_dropout_draws_a_mask_per_application(key):
    drop = L.Dropout(0.5)
    x = np.ones((8, 16), np.float32)
    k1, k2 = random.split(key, 2)
    by_hand = drop.apply((), drop.apply((), x, key=k1, train=True), key=k2, train=True)
    np.testing.assert_array_equal(L.Repeat(drop, 2).apply((), x, key=key, train=True), by_hand)
    model = L.Repeat(L.Sequential(L.Dense(4), L.Dropout(0.5)), 2)
    _, params = model.init(key, (None, 4))
    check_vjp(model, tree.astype(params, np.float64), random.normal(random.key(3), (6, 4)),
              key=key, train=True)


def test_trains_under_value_and_grad(key):
    model = L.Sequential(L.Repeat(L.Residual(L.Sequential(L.Dense(8), L.Tanh())), 3),
                         L.Dense(1))
    _, params = model.init(key, (None, 8))
    x = random.normal(random.key(1), (32, 8))
    target = x[:, :1] * x[:, 1:2]
    loss_and_grad = fd.value_and_grad(model, fd.losses.mse)
    opt = fd.optim.adam(1e-2)
    state = opt.init(params)
    first = loss_and_grad(params, x, target)[0]
    for _ in range(100):
        loss, grads = loss_and_grad(params, x, target)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
    assert loss < 0.5 * first
    assert all(leaf.dtype == np.float32 for leaf in tree.leaves(params))


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: L.Repeat(L.Dense(3), 2).init(random.key(0), (None, 4)), ValueError,
     r"Repeat\(Dense\(3\), 2\): the layer maps in_shape \(None, 4\) to \(None, 3\); to "
     r"apply it again it must keep the shape"),
    (lambda: L.Repeat(L.Dense(3), 0), ValueError, r"Repeat: n must be >= 1 \(positive\), got 0"),
    (lambda: L.Repeat(L.Dense(3), 2.0), TypeError, r"Repeat: n must be an int"),
    (lambda: L.Repeat(L.Dense, 2), TypeError, r"call the constructor: Dense\(\)"),
    (lambda: L.Repeat(L.Dense(3), 2).apply({"w": np.ones((3, 3)), "b": np.ones(3)},
                                           np.ones((2, 4))),
     ValueError, r"Repeat\[0\] Dense\(3\): expected input \(\.\.\., 3\)"),
    (lambda: L.Repeat(L.Dense(3), 2).vjp({"w": np.ones((3, 3)), "b": np.ones(3)},
                                         np.ones((2, 3)))[1](None),
     TypeError, r"Repeat\(Dense\(3\), 2\): pullback expected dy"),
])
def test_bad_inputs(make, error, match):
    with pytest.raises(error, match=match):
        make()
