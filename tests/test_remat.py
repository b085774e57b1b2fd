"""Remat: gradients bit for bit equal to the plain layer's (an MLP, Dropout in training with
a key, BatchNorm in training with its new state), float32 and float64, through
value_and_grad and inside Sequential / Parallel / Residual; the pullback recomputes (the
child's vjp runs at pullback time, not before); finite differences; the memory the
closure holds after the forward (tracemalloc, deterministic); bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest
from test_residual_memory import held

import funcdl as fd
from funcdl import random
from funcdl.layers import (
    BatchNorm,
    Dense,
    Dropout,
    FanInSum,
    FanOut,
    Layer,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Tanh,
)
from funcdl.layers.remat import Remat
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)


def leaves_equal(a, b):
    la, lb = fd.tree.leaves(a), fd.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(la, lb))


def rand(*shape, dtype=np.float32, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def as_dtype(params, dtype):
    return fd.tree.map(lambda a: a.astype(dtype), params)


def mlp():
    return Sequential(Dense(16), ReLU(), Dense(16), Tanh(), Dense(3))


def same_step(model, x, target, dtype, key=None, stateful=False):
    """value_and_grad of model and Remat(model) give identical values, grads (and state)."""
    made = model.init(KEY, (None, *x.shape[1:]))
    params, state = as_dtype(made[1], dtype), (made[2] if stateful else None)
    kw = {"key": key, "train": True, **({"state": state} if stateful else {})}
    outs = [fd.value_and_grad(m, fd.losses.mse, wrt_input=True)(
        params, x.astype(dtype), target.astype(dtype), **kw) for m in (model, Remat(model))]
    (v0, g0), (v1, g1) = outs
    assert leaves_equal(v0, v1) and leaves_equal(g0, g1)
    assert all(a.dtype == dtype for a in fd.tree.leaves(g1))
    return outs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_bit_for_bit(dtype):
    same_step(mlp(), rand(8, 5), rand(8, 3), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_train_bit_for_bit(dtype):
    model = Sequential(Dense(32), ReLU(), Dropout(0.5), Dense(3))
    same_step(model, rand(8, 5), rand(8, 3), dtype, key=random.key(7))
    # the masks come from the key: a different key gives different grads (not vacuous)
    made = model.init(KEY, (None, 5))
    f = fd.value_and_grad(Remat(model), fd.losses.mse)
    g7 = f(made[1], rand(8, 5), rand(8, 3), key=random.key(7))[1]
    g8 = f(made[1], rand(8, 5), rand(8, 3), key=random.key(8))[1]
    assert not leaves_equal(g7, g8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_train_bit_for_bit(dtype):
    model = Sequential(Dense(6), BatchNorm(), ReLU(), Dense(2))
    (v0, _), (v1, _) = same_step(model, rand(10, 4), rand(10, 2), dtype, stateful=True)
    _, new_state = v1
    assert leaves_equal(v0[1], new_state)  # the child's state, in the child's structure
    # a BatchNorm alone: Remat's state is BatchNorm's own, and moves as it does
    bn = BatchNorm()
    _, p, s = bn.init(KEY, (None, 3))
    x = rand(6, 3, dtype=dtype) * 3 + 1
    y0, pb0, s0 = bn.vjp(p, x, state=s, train=True)
    y1, pb1, s1 = Remat(bn).vjp(p, x, state=s, train=True)
    dy = rand(6, 3, dtype=dtype, seed=2)
    assert leaves_equal((y0, s0, pb0(dy)), (y1, s1, pb1(dy)))
    assert not leaves_equal(s, s1)  # the running statistics did move
    assert leaves_equal(Remat(bn).init(KEY, (None, 3)), bn.init(KEY, (None, 3)))


def test_pullback_recomputes_and_keeps_input_state():
    """The child's vjp runs in the pullback, on the state the call was given."""
    calls = []
    bn = BatchNorm()

    def vjp(p, x, *, state, key=None, train=False):
        calls.append(("vjp", state))
        return bn.vjp(p, x, state=state, key=key, train=train)

    def apply(p, x, *, state, key=None, train=False):
        calls.append(("apply", state))
        return bn.apply(p, x, state=state, key=key, train=train)

    spy = Layer(bn.init, apply, vjp, stateful=True, name="Spy")
    _, p, s = spy.init(KEY, (None, 3))
    y, pullback, _ = Remat(spy).vjp(p, rand(5, 3), state=s, train=True)
    assert [c[0] for c in calls] == ["apply"]
    pullback(np.ones_like(y))
    assert [c[0] for c in calls] == ["apply", "vjp"] and calls[1][1] is s


def test_composes():
    x = rand(4, 6, dtype=np.float64)
    block = Sequential(Dense(6), ReLU())
    plain = Sequential(Residual(block), Dense(2))
    remat = Sequential(Residual(Remat(block)), Dense(2))
    _, params = plain.init(KEY, (None, 6))
    assert leaves_equal(remat.init(KEY, (None, 6))[1], params)
    for model in (remat,
                  Sequential(FanOut(2), Parallel(Remat(Dense(3)), Dense(3)), FanInSum()),
                  Remat(Remat(mlp()))):
        check_layer(model, (None, 6))
    y0, pb0 = plain.vjp(params, x)
    y1, pb1 = remat.vjp(params, x)
    dy = rand(4, 2, dtype=np.float64)
    assert leaves_equal((y0, pb0(dy)), (y1, pb1(dy)))


@pytest.mark.parametrize("layer, shape, train", [
    (Remat(mlp()), (None, 5), False), (Remat(Dense(4)), (None, 3), False),
    (Remat(Sequential(Dense(8), Dropout(0.3), Tanh())), (None, 3), True)])
def test_check_layer(layer, shape, train):
    check_layer(layer, shape, key=random.key(3), train=train)
    _, p = layer.init(KEY, shape)
    check_vjp(layer, p, rand(4, *shape[1:], dtype=np.float64), key=random.key(4),
              train=train)


def test_check_vjp_stateful():
    layer = Remat(Sequential(Dense(4), BatchNorm(), Tanh()))
    _, p, s = layer.init(KEY, (None, 3))
    check_vjp(layer, p, rand(6, 3, dtype=np.float64), state=s, train=True)
    assert layer.stateful and layer.name == "Remat(Sequential(Dense(4), BatchNorm(), Tanh()))"


def test_fields():
    r = Remat(Sequential(Dense(3), ReLU()))
    assert r.dx_optional and r.pointwise is None and r.vjp_then is None
    assert Remat(ReLU()).pointwise is None and not Remat(ReLU()).dx_optional
    _, p = r.init(KEY, (None, 2))
    dp, dx = r.vjp(p, rand(2, 2))[1](np.ones((2, 3), np.float32), need_dx=False)
    assert dx is None and leaves_equal(dp, r.vjp(p, rand(2, 2))[1](np.ones((2, 3),
                                                                          np.float32))[0])
    # a child without dx_optional: need_dx=False still answers None for dx
    assert Remat(ReLU()).vjp((), rand(2, 2))[1](np.ones((2, 2), np.float32),
                                                need_dx=False) == ((), None)


def test_need_dx_passed_through():
    """value_and_grad's need_dx=False reaches a dx_optional child's pullback."""
    seen = []
    dense = Dense(2)

    def vjp(p, x, *, key=None, train=False):
        y, pb = dense.vjp(p, x)

        def pullback(dy, need_dx=True):
            seen.append(need_dx)
            return pb(dy, need_dx=need_dx)
        return y, pullback

    spy = Layer(dense.init, dense.apply, vjp, name="Spy", dx_optional=True)
    _, p = spy.init(KEY, (None, 3))
    fd.value_and_grad(Remat(spy), fd.losses.mse)(p, rand(4, 3), rand(4, 2))
    assert seen == [False]


def held_after_forward(model, params, x):
    """Bytes traced as allocated after vjp returned (the output left out), and after the
    pullback too: what the closure keeps alive between the passes."""
    return held(model, params, x)[0]


def test_memory():
    """The closure of a Remat'd deep stack holds far less than the plain one: 8 Dense(512)
    + ReLU keep their 7 hidden activations of 512 KiB each (a ReLU's pullback keeps its
    output only); Remat keeps none of them."""
    layers = []
    for _ in range(8):
        layers += [Dense(512), ReLU()]
    model = Sequential(*layers)
    _, params = model.init(KEY, (None, 512))
    x = rand(256, 512)
    plain = held_after_forward(model, params, x)
    remat = held_after_forward(Remat(model), params, x)
    assert plain >= 7 * x.nbytes  # the plain closure does hold the activations
    assert remat < plain / 3, (remat, plain)
    assert remat < x.nbytes  # small bookkeeping only


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"Remat: expected a layer to recompute.*got 3"):
        Remat(3)
    with pytest.raises(TypeError, match=r"Remat.*call the constructor: Dense\(\), not Dense"):
        Remat(Dense)
    with pytest.raises(ValueError, match=r"Remat Dense\(3\).*"):
        Remat(Dense(3)).apply(Dense(3).init(KEY, (None, 2))[1], np.zeros((2, 5), np.float32))
    bn = Remat(BatchNorm())
    _, p, _ = bn.init(KEY, (None, 3))
    with pytest.raises(TypeError, match=r"Remat\(BatchNorm\(\)\) is stateful.*state="):
        bn.apply(p, np.zeros((2, 3), np.float32))
