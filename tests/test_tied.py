"""Tests for layers.Tied: one params subtree used at several places of a model, its
gradients summed; the copies are None in params and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

X = np.random.default_rng(0).normal(size=(5, 4))


def _chain():
    return L.Sequential(L.Dense(4), L.Tanh(), L.Dense(4))


def test_tied_params_are_kept_once_and_used_at_every_place():
    model = L.Tied(_chain(), [0, 2])
    shape, params = model.init(random.key(0), (None, 4))
    assert shape == (None, 4) and params[2] is None and set(params[0]) == {"w", "b"}
    full = (params[0], (), params[0])
    np.testing.assert_array_equal(model.apply(params, X), _chain().apply(full, X))


def test_the_gradient_of_tied_params_is_the_sum_over_their_places():
    model = L.Tied(_chain(), [0, 2])
    params = tree.astype(model.init(random.key(0), (None, 4))[1], np.float64)
    y, pullback = model.vjp(params, X)
    dy = np.random.default_rng(1).normal(size=y.shape)
    grads, dx = pullback(dy)
    y0, pullback0 = _chain().vjp((params[0], (), params[0]), X)
    grads0, dx0 = pullback0(dy)
    np.testing.assert_array_equal(y, y0)
    for k in ("w", "b"):  # not one place's alone, nor their mean
        np.testing.assert_allclose(grads[0][k], grads0[0][k] + grads0[2][k], rtol=1e-13)
    assert grads[1] == () and grads[2] is None
    np.testing.assert_array_equal(dx, dx0)
    check_vjp(model, params, X)
    check_layer(model, (None, 4))


def test_a_tie_may_name_one_leaf_or_a_nested_layer():
    weights = L.Tied(_chain(), [(0, "w"), (2, "w")])
    _, params = weights.init(random.key(0), (None, 4))
    assert params[2]["w"] is None and params[2]["b"].shape == (4,)
    check_vjp(weights, tree.astype(params, np.float64), X)
    nested = L.Tied(L.Sequential(L.Dense(4), L.Sequential(L.Tanh(), L.Dense(4))), [0, (1, 1)])
    _, params = nested.init(random.key(0), (None, 4))
    assert params[1][1] is None
    check_vjp(nested, tree.astype(params, np.float64), X)


def test_a_tied_model_trains_saves_and_composes(tmp_path):
    model = L.Sequential(L.Tied(_chain(), [0, 2]), L.Dense(1))
    _, params = model.init(random.key(0), (None, 4))
    opt = fd.optim.adam(1e-2)
    state = opt.init(params)
    x, t = X.astype(np.float32), np.ones((5, 1), np.float32)
    f = fd.value_and_grad(model, fd.losses.mse)
    first, _ = f(params, x, t)
    for _ in range(20):
        value, grads = f(params, x, t)
        assert grads[0][2] is None
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
    assert value < first and params[0][2] is None
    assert all(a.dtype == np.float32 for a in tree.leaves(params))
    fd.io.save(tmp_path / "p.npz", params)
    back = fd.io.load(tmp_path / "p.npz", like=params)
    np.testing.assert_array_equal(model.apply(back, x), model.apply(params, x))


def test_a_stateful_model_keeps_a_state_per_place():
    model = L.Tied(L.Sequential(L.Dense(4), L.BatchNorm(), L.Dense(4)), [0, 2])
    assert model.stateful
    _, params, state = model.init(random.key(0), (None, 4))
    (value, new_state), grads = fd.value_and_grad(model, fd.losses.mse)(
        params, X.astype(np.float32), np.zeros((5, 4), np.float32), state=state)
    assert grads[2] is None and np.isfinite(value)
    assert tree.structure(new_state) == tree.structure(state)
    assert not np.array_equal(new_state[1]["mean"], state[1]["mean"])


def test_tied_against_torch_reusing_one_module():
    torch = pytest.importorskip("torch")
    model = L.Tied(_chain(), [0, 2])
    params = tree.astype(model.init(random.key(0), (None, 4))[1], np.float64)
    lin = torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(params[0]["w"].T.copy()))
        lin.bias.copy_(torch.from_numpy(params[0]["b"]))
    xt = torch.from_numpy(X)
    out = lin(torch.tanh(lin(xt)))
    (out ** 2).sum().backward()
    y, pullback = model.vjp(params, X)
    grads, _ = pullback(2 * y)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(grads[0]["w"], lin.weight.grad.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(grads[0]["b"], lin.bias.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("ties, error, match", [
    ([[0]], TypeError, r"each tie is a list of two or more paths"),
    ([], TypeError, r"give at least one tie"),
    ([[0, 2.0]], TypeError, r"a path is an index or key"),
    ([[2, -1]], ValueError, r"a path's indices count from 0, got -1"),
    ([[0, 5]], ValueError, r"the params have nothing at \[5\]"),
    ([[0, 1]], ValueError, r"^Tied\(Sequential.*\): tied params must be alike: tree structure "
                           r"mismatch at the root: \[0\] has a dict .*\[1\] has a tuple"),
    ([[0, (0, "w")]], ValueError, r"the tie paths \[0\] and \[0\]\['w'\] overlap"),
    ([[(0, "w", 3), (2, "w", 3)]], ValueError, r"the tie path \[0\]\['w'\]\[3\] goes past a "
                                               r"leaf at \[0\]\['w'\]"),
])
def test_bad_ties_are_named(ties, error, match):
    with pytest.raises(error, match=match):
        L.Tied(_chain(), *ties).init(random.key(0), (None, 4))


def test_places_of_other_shapes_and_untied_params_are_refused():
    model = L.Tied(L.Sequential(L.Dense(4), L.Tanh(), L.Dense(3)), [0, 2])
    with pytest.raises(ValueError, match=r"tied params must be alike: shape mismatch at "
                                         r"\['b'\]: \[0\] has \(4,\), \[2\] has \(3,\)"):
        model.init(random.key(0), (None, 4))
    tied = L.Tied(_chain(), [0, 2])
    _, untied = _chain().init(random.key(0), (None, 4))
    with pytest.raises(ValueError, match=r"the params at \[2\] must be None, tied to \[0\]"):
        tied.apply(untied, X)


def test_a_tied_model_reading_ids_says_so_to_check_layer():
    model = L.Tied(L.Sequential(L.Embedding(5, 3), L.Dense(3), L.Tanh(), L.Dense(3)), [1, 3])
    assert model.ids == 5
    check_layer(model, (None, 4))  # draws ids in [0, 5), not floats


def test_three_places_and_two_ties_each_sum_their_gradients():
    # every test had one tie of two places: a sum of the first two places alone, or of the
    # first tie alone, passed
    model = L.Tied(L.Sequential(*body_layers()), [0, 2, 4], [(6, "w"), (8, "w")])
    params = tree.astype(model.init(random.key(0), (None, 4))[1], np.float64)
    assert params[2] is None and params[4] is None and params[8]["w"] is None
    y, pullback = model.vjp(params, X)
    dy = np.random.default_rng(2).normal(size=y.shape)
    grads, _ = pullback(dy)
    full = list(params)
    full[2] = full[4] = params[0]
    full[8] = {"w": params[6]["w"], "b": params[8]["b"]}
    untied, _ = L.Sequential(*body_layers()).vjp(tuple(full), X)[1](dy)
    for k in ("w", "b"):
        np.testing.assert_allclose(grads[0][k], untied[0][k] + untied[2][k] + untied[4][k],
                                   rtol=1e-12)
    np.testing.assert_allclose(grads[6]["w"], untied[6]["w"] + untied[8]["w"], rtol=1e-12)
    np.testing.assert_array_equal(grads[8]["b"], untied[8]["b"])
    check_vjp(model, params, X)


def body_layers():
    return [L.Dense(4), L.Tanh(), L.Dense(4), L.Tanh(), L.Dense(4), L.Tanh(), L.Dense(4),
            L.Tanh(), L.Dense(4)]
