"""Defects found reviewing funcdl.autodiff / funcdl.debug (2026-12-07), each fixed: the
list of rows, a stateful f's keywords, the per-example mode kept out of the loss, a
user's layer of funcdl layers per example, has_aux through a partial."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, tree

KEY = fd.random.key(0)
RNG = np.random.default_rng(7)


def _mlp():
    model = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(2))
    _, params = model.init(KEY, (None, 4))
    return model, tree.astype(params, np.float64)


# 1. per_example_grad refuses a list of rows that value_and_grad, grad and every layer read
#    as a batch (README: "a list of rows is read as a batch, as NumPy reads it"), saying
#    "need a batch axis ... got shape ()"
def test_per_example_grad_takes_a_list_of_rows_as_grad_does():
    model, params = _mlp()
    x = RNG.normal(size=(5, 4))
    t = RNG.normal(size=(5, 2))
    want = fd.per_example_grad(model, losses.mse)(params, x, t)
    got = fd.per_example_grad(model, losses.mse)(params, x.tolist(), t)  # raises today
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    emb = L.Sequential(L.Embedding(6, 3), L.Dense(2))
    _, p_emb = emb.init(KEY, (None,))
    ids = [1, 4, 4, 0]
    got = fd.per_example_grad(emb, losses.mse)(p_emb, ids, np.zeros((4, 2), np.float32))
    assert got[0]["table"].shape == (4, 6, 3)


# 2. a stateful model's f given a loss's option (or a typo'd keyword) raises Python's bare
#    "Sequential(...).vjp() got an unexpected keyword argument 'delta'", blaming the model;
#    a stateless model's f says what f takes and how to bind a loss's options
def test_a_stateful_models_f_names_unexpected_keywords_as_a_stateless_ones_does():
    model = L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(2))
    _, params, state = model.init(KEY, (None, 4))
    x, t = np.ones((5, 4), np.float32), np.zeros((5, 2), np.float32)
    for make, where in ((fd.value_and_grad, "value_and_grad"), (fd.grad, "grad")):
        with pytest.raises(TypeError, match=rf"^{where}: unexpected keyword arguments "
                                            rf"\['delta'\].*functools\.partial"):
            make(model, losses.huber)(params, x, t, state=state, delta=0.5)


# 3. the per-example mode leaks out of the model into the loss: a loss that runs a layer
#    itself (a frozen feature extractor, a perceptual loss) gets per-example dparams from it
#    ((N, ...) arrays it did not ask for), and one holding a BatchThreads is refused as if
#    the model held it; the same loss works under grad
def test_the_per_example_mode_stays_in_the_model_not_the_loss():
    model, params = _mlp()
    feat = L.Dense(2)
    _, p_feat = feat.init(KEY, (None, 2))
    seen = []

    def perceptual(pred, target):
        _, pullback = fd.vjp(feat, p_feat, pred)
        seen.append(pullback(np.ones((len(pred), 2)))[0]["w"].shape)
        return losses.mse.vjp(pred, target)

    x, t = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 2))
    fd.per_example_grad(model, losses.Loss("perceptual", perceptual))(params, x, t)
    assert seen == [(2, 2)]  # (5, 2, 2) today
    threads = L.BatchThreads(L.Dense(2), 2)
    _, p_thr = threads.init(KEY, (None, 2))

    def threaded(pred, target):
        fd.vjp(threads, p_thr, pred)
        return losses.mse.vjp(pred, target)

    want = fd.per_example_grad(model, losses.mse)(params, x, t)
    got = fd.per_example_grad(model, losses.Loss("threaded", threaded))(params, x, t)
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


# 4. a user's layer built of funcdl layers (README's "your own cell ... with its pullbacks in
#    reverse order and their gradients summed") gives correct per-example grads, but the
#    guard around user layers refuses them: "Wrap: the pullback's dparams must have the
#    structure and shapes of the params: shape mismatch at ['b']", blaming a correct pullback
def _twice(dense):
    """A user's layer: ``dense`` applied twice with one set of params (a tiny recurrence)."""
    def vjp(p, x, **kw):
        h, pb1 = dense.vjp(p, x)
        y, pb2 = dense.vjp(p, h)

        def pullback(dy):
            g2, dh = pb2(dy)
            g1, dx = pb1(dh)
            return tree.map(np.add, g1, g2), dx
        return y, pullback

    return L.Layer(dense.init, lambda p, x, **kw: dense.apply(p, dense.apply(p, x)), vjp,
                   name="Twice")


def test_a_users_layer_of_funcdl_layers_gives_per_example_grads():
    cell = _twice(L.Dense(3))
    model = L.Sequential(L.Dense(3), cell)
    _, params = model.init(KEY, (None, 3))
    params = tree.astype(params, np.float64)
    x, t = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    got = fd.per_example_grad(model, losses.mse)(params, x, t)  # ValueError today
    g = fd.grad(model, losses.mse)
    for i in range(4):
        row = g(params, x[i:i + 1], t[i:i + 1])
        for a, b in zip(tree.leaves(got), tree.leaves(row), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-14)
    # a user's layer without such grads is still named by the per-example check
    own = L.Layer(lambda k, s: (s, {"a": np.ones(s[-1])}), lambda p, x, **kw: x * p["a"],
                  lambda p, x, **kw: (x * p["a"], lambda dy: ({"a": (dy * x).sum(0)},
                                                              dy * p["a"])), name="Scale")
    with pytest.raises(ValueError, match=r"params\['a'\] came back .* no per-example rule"):
        fd.per_example_grad(own, losses.mse)({"a": np.ones(3)}, x, t)


# 5. a user's loss whose call gives (value, aux) and whose vjp gives (value, pullback) (the
#    form value_and_grad's docstring and tests take) fails under has_aux once its options
#    are bound with functools.partial, as README says to bind them: bound() turns the
#    partial into a Loss whose call gives the value alone, and the error says the loss
#    "must return (value, aux), got a float" of a loss that does
class _HuberWithAccuracy:
    def __call__(self, pred, target, delta=1.0):
        return (losses.huber(pred, target, delta=delta),
                float(np.mean(np.abs(pred - target) < delta)))

    def vjp(self, pred, target, delta=1.0):
        return losses.huber.vjp(pred, target, delta=delta)


def test_has_aux_takes_the_aux_from_a_partial_of_a_loss_whose_call_gives_it():
    model, params = _mlp()
    x, t = RNG.normal(size=(6, 4)), 3 * RNG.normal(size=(6, 2))
    loss = functools.partial(_HuberWithAccuracy(), delta=0.5)
    (value, acc), grads = fd.value_and_grad(model, loss, has_aux=True)(params, x, t)
    assert (value, acc) == loss(model.apply(params, x), t)
    want = fd.grad(model, functools.partial(losses.huber, delta=0.5))(params, x, t)
    for a, b in zip(tree.leaves(grads), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
