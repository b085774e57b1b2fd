"""Embedding: known lookups, the scatter-add vjp (repeated ids summed) by hand and against
np.add.at, finite differences on the table, composition, PyTorch, and bad ids."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import initializers, losses, random, tree
from funcdl import layers as L
from funcdl.layers.embed import Embedding
from funcdl.testing import check_layer, check_vjp

TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)  # row i = [3i, 3i+1, 3i+2]


def test_known_lookups_and_shapes():
    layer = Embedding(4, 3)
    params = {"table": TABLE}
    np.testing.assert_array_equal(layer.apply(params, np.array([2, 0])), TABLE[[2, 0]])
    y = layer.apply(params, np.array([[3, 1, 1], [0, 0, 2]], np.int32))
    assert y.shape == (2, 3, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y[1, 2], [6.0, 7.0, 8.0])
    np.testing.assert_array_equal(layer.apply(params, 1), [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(layer.apply(params, [[1], [3]]), TABLE[[[1], [3]]])
    assert layer.apply(params, np.zeros((2, 0), np.uint8)).shape == (2, 0, 3)
    out_shape, _ = layer.init(random.key(0), (None, 7))
    assert out_shape == (None, 7, 3)


def test_default_init_is_standard_normal_and_w_init_is_used():
    _, params = Embedding(1000, 64).init(random.key(0), (None,))
    t = params["table"]
    assert t.shape == (1000, 64) and t.dtype == np.float32
    assert abs(t.mean()) < 0.01 and abs(t.std() - 1.0) < 0.01
    _, params = Embedding(5, 2, w_init=initializers.zeros()).init(random.key(0), (None,))
    np.testing.assert_array_equal(params["table"], np.zeros((5, 2), np.float32))


def test_repeated_ids_are_summed_by_hand():
    layer = Embedding(4, 3)
    ids = np.array([[1, 3], [1, 1]])
    _, pullback = layer.vjp({"table": TABLE}, ids)
    dy = np.array([[[1, 2, 3], [4, 5, 6]], [[10, 20, 30], [100, 200, 300]]], np.float32)
    grads, dx = pullback(dy)
    assert dx is None
    expected = np.array([[0, 0, 0], [111, 222, 333], [0, 0, 0], [4, 5, 6]], np.float32)
    np.testing.assert_array_equal(grads["table"], expected)
    assert grads["table"].dtype == np.float32
    # all ids distinct (the plain-scatter path)
    _, pullback = layer.vjp({"table": TABLE}, np.array([2, 0]))
    grads, _ = pullback(np.array([[1, 1, 1], [2, 2, 2]], np.float32))
    np.testing.assert_array_equal(grads["table"], [[2, 2, 2], [0, 0, 0], [1, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize(("n", "vocab", "dim"), [(500, 20, 4), (30, 1000, 5), (1, 3, 2),
                                                 (0, 3, 2), (64, 64, 3)])
def test_dtable_matches_add_at(n, vocab, dim):
    ids = random.permutation(random.key(n), max(n, vocab))[:n] % vocab
    if n == 500:
        ids = (random.uniform(random.key(1), (n,)) ** 3 * vocab).astype(np.int64)  # skewed
    layer = Embedding(vocab, dim)
    _, params = layer.init(random.key(0), (None,))
    dy = random.normal(random.key(2), (n, dim), np.float64)
    grads, _ = layer.vjp(tree.astype(params, np.float64), ids)[1](dy)
    expected = np.zeros((vocab, dim))
    np.add.at(expected, ids, dy)
    np.testing.assert_allclose(grads["table"], expected, rtol=1e-12, atol=1e-12)


def test_dtable_rows_depend_only_on_their_own_ids_cotangents():
    # each id's rows reach its sum in input order (a stable sort), so interleaving the
    # other ids differently leaves every bit of its row of the gradient as it was
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 4, 400)
    dy = (rng.standard_normal((400, 3)) * np.exp(3 * rng.standard_normal((400, 1)))).astype(
        np.float32)
    ids2 = ids[rng.permutation(400)]
    dy2 = np.empty_like(dy)
    for i in range(4):
        dy2[ids2 == i] = dy[ids == i]
    layer, params = Embedding(4, 3), {"table": TABLE}
    g1 = layer.vjp(params, ids)[1](dy)[0]["table"]
    g2 = layer.vjp(params, ids2)[1](dy2)[0]["table"]
    np.testing.assert_array_equal(g1, g2)
    expected = np.zeros((4, 3), np.float32)
    np.add.at(expected, ids, dy)
    np.testing.assert_allclose(g1, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("shape", [(6,), (3, 4), (2, 2, 3)])
def test_check_vjp_and_check_layer(shape):
    layer = Embedding(5, 3)
    _, params = layer.init(random.key(0), (None, *shape[1:]))
    ids = (random.uniform(random.key(1), shape) * 5).astype(np.int64)
    check_vjp(layer, tree.astype(params, np.float64), ids)
    check_layer(layer, (None, *shape[1:]), x=ids)


def test_in_a_sequential_with_value_and_grad():
    model = L.Sequential(Embedding(6, 2), L.Flatten(), L.Dense(1))
    _, params = model.init(random.key(0), (None, 3))
    params = tree.astype(params, np.float64)
    ids = np.array([[0, 5, 5], [2, 2, 1], [4, 0, 3]])
    target = np.array([[1.0], [-1.0], [0.5]])
    value, grads = fd.value_and_grad(model, losses.mse)(params, ids, target)
    _, (_, dx) = fd.value_and_grad(model, losses.mse, wrt_input=True)(params, ids, target)
    assert dx is None
    assert value == pytest.approx(losses.mse(model.apply(params, ids), target))
    flat, unravel = tree.ravel(params)
    g, e = tree.ravel(grads)[0], 1e-6
    for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = e
        fd_i = (losses.mse(model.apply(unravel(flat + step), ids), target)
                - losses.mse(model.apply(unravel(flat - step), ids), target)) / (2 * e)
        assert g[i] == pytest.approx(fd_i, rel=1e-6, abs=1e-10)


def test_inputs_untouched():
    layer = Embedding(4, 3)
    table, ids = TABLE.copy(), np.array([3, 3, 0])
    _, pullback = layer.vjp({"table": table}, ids)
    pullback(np.ones((3, 3), np.float32))
    np.testing.assert_array_equal(table, TABLE)
    np.testing.assert_array_equal(ids, [3, 3, 0])


def test_matches_torch():
    torch = pytest.importorskip("torch")
    table = random.normal(random.key(0), (7, 4), np.float64)
    ids = np.array([[1, 6, 1], [0, 1, 3]])
    dy = random.normal(random.key(1), (2, 3, 4), np.float64)
    emb = torch.nn.Embedding(7, 4).double()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(table))
    out = emb(torch.from_numpy(ids))
    out.backward(torch.from_numpy(dy))
    y, pullback = Embedding(7, 4).vjp({"table": table}, ids)
    np.testing.assert_array_equal(y, out.detach().numpy())
    np.testing.assert_allclose(pullback(dy)[0]["table"], emb.weight.grad.numpy(), rtol=1e-12)


def test_bad_input():
    layer = Embedding(4, 3)
    params = {"table": TABLE}
    with pytest.raises(ValueError, match=r"Embedding\(4, 3\): ids must be in \[0, 4\) "
                                         r"\(vocabulary size 4\), got ids in \[0, 4\]"):
        layer.apply(params, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"got ids in \[-1, 2\] \(1 out of range\)"):
        layer.vjp(params, np.array([[-1, 2]]))
    with pytest.raises(TypeError, match=r"Embedding\(4, 3\): expected integer ids, got dtype "
                                        r"float64"):
        layer.apply(params, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="integer ids"):
        layer.apply(params, np.array([True, False]))
    with pytest.raises(ValueError, match=r"params\['table'\] has shape \(3, 3\), expected "
                                         r"\(4, 3\)"):
        layer.apply({"table": TABLE[:3]}, np.array([0]))
    with pytest.raises(ValueError, match="expected params as a dict"):
        layer.apply((), np.array([0]))
    _, pullback = layer.vjp(params, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"pullback expected dy of shape \(2, 3\)"):
        pullback(np.ones((2, 4), np.float32))
    for bad in (0, -2):
        with pytest.raises(ValueError, match=r"Embedding: vocab must be >= 1"):
            Embedding(bad, 3)
    for bad in (2.5, True):
        with pytest.raises(TypeError, match=r"Embedding: dim must be an int"):
            Embedding(3, bad)


def _slice_embed(index: slice) -> L.Layer:
    return L.Sequential(L.Slice(index), Embedding(10, 4), L.Flatten())


ROUTED = {
    "slice": lambda: L.Sequential(_slice_embed(np.s_[:2]), L.Dense(1)),
    "fanout-parallel": lambda: L.Sequential(
        L.FanOut(2), L.Parallel(_slice_embed(np.s_[:2]), _slice_embed(np.s_[2:])),
        L.FanInConcat(), L.Dense(1)),
    "fanout-shared": lambda: L.Sequential(
        L.FanOut(2), L.Shared(L.Sequential(Embedding(10, 4), L.Flatten())), L.FanInSum(),
        L.Dense(1)),
    "residual": lambda: L.Sequential(
        L.Residual(L.Sequential(Embedding(10, 2), L.Flatten(), L.Dense(3))), L.Dense(1)),
}


@pytest.mark.parametrize("name", list(ROUTED))
def test_routing_layers_before_an_embedding(name):
    # Nothing flows back into integer ids: the layers before an Embedding get a None
    # cotangent, pass it on, and the table's gradient is still right.
    model = ROUTED[name]()
    _, params = model.init(random.key(0), (None, 3))
    params = tree.astype(params, np.float64)
    ids = np.array([[1, 2, 3], [3, 3, 0], [9, 4, 4]])
    check_vjp(model, params, ids)
    target = np.array([[1.0], [-1.0], [0.5]])
    (_, (dparams, dx)) = fd.value_and_grad(model, losses.mse, wrt_input=True)(
        params, ids, target)
    assert dx is None
    grads = fd.value_and_grad(model, losses.mse)(params, ids, target)[1]
    for a, b in zip(tree.leaves(dparams), tree.leaves(grads), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(g != 0) for g in tree.leaves(grads))


def test_ids_beside_features_give_dx_none_for_the_ids_only():
    model = L.Sequential(L.Parallel(L.Sequential(Embedding(5, 2), L.Flatten()), L.Dense(3)),
                         L.FanInConcat(), L.Dense(1))
    _, params = model.init(random.key(0), ((None, 2), (None, 4)))
    params = tree.astype(params, np.float64)
    ids = np.array([[0, 4], [2, 2]])
    feats = random.normal(random.key(1), (2, 4), np.float64)
    _, pullback = model.vjp(params, (ids, feats))
    dy = np.array([[1.0], [-2.0]])
    dparams, (d_ids, d_feats) = pullback(dy)
    assert d_ids is None
    # d_feats = dy · W_out[features part] · W_dense^T, by hand
    w_out = params[2]["w"][4:]  # the concat puts the 4 embedding entries first
    np.testing.assert_allclose(d_feats, (dy @ w_out.T) @ params[0][1]["w"].T, rtol=1e-12)
    # the table's gradient: each id row gets dy_n · W_out[its slot]
    want = np.zeros((5, 2))
    for n in range(2):
        for j in range(2):
            want[ids[n, j]] += dy[n, 0] * params[2]["w"][2 * j:2 * j + 2, 0]
    np.testing.assert_allclose(dparams[0][0][0]["table"], want, rtol=1e-12)


@pytest.mark.parametrize("padding_idx, row", [(2, 2), (-1, 5)])
def test_padding_idx_row_starts_at_zero_and_gets_no_gradient(padding_idx, row):
    emb = Embedding(6, 3, padding_idx=padding_idx)
    _, params = emb.init(random.key(0), (None, 4))
    assert not params["table"][row].any() and params["table"][(row + 1) % 6].any()
    ids = np.array([[row, 0, row, 1], [1, row, 3, 4]])
    y, pullback = emb.vjp(tree.astype(params, np.float64), ids)
    dtable = pullback(np.ones_like(y))[0]["table"]
    assert not dtable[row].any()
    np.testing.assert_array_equal(dtable[1], [2.0, 2.0, 2.0])  # the others summed as before
    # where the padding id does not occur the vjp is the table's gradient
    check_vjp(emb, tree.astype(params, np.float64), np.array([[0, 1], [3, 4]]))


def test_padding_idx_against_torch():
    torch = pytest.importorskip("torch")
    emb = Embedding(6, 3, padding_idx=2)
    table = emb.init(random.key(0), (None, 4))[1]["table"].astype(np.float64)
    ref = torch.nn.Embedding(6, 3, padding_idx=2).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(table))
    ids = np.array([[2, 0, 2, 5], [1, 2, 3, 2]])
    dy = np.random.default_rng(0).normal(size=(2, 4, 3))
    ref(torch.from_numpy(ids)).backward(torch.from_numpy(dy))
    _, pullback = emb.vjp({"table": table}, ids)
    np.testing.assert_array_equal(pullback(dy)[0]["table"], ref.weight.grad.numpy())


@pytest.mark.parametrize("bad, error", [(6, ValueError), (-7, ValueError), (1.5, TypeError)])
def test_bad_padding_idx_is_named(bad, error):
    with pytest.raises(error, match=r"Embedding: padding_idx must be"):
        Embedding(6, 3, padding_idx=bad)


@pytest.mark.parametrize("padding_idx", [0, 3, -1])
def test_check_layer_draws_no_padding_id(padding_idx):
    # the padding row's gradient is 0 by design, which finite differences contradict: the
    # checker draws every other id, and none of that one (Layer.frozen_id)
    emb = Embedding(7, 3, padding_idx=padding_idx)
    assert emb.frozen_id == padding_idx % 7
    check_layer(emb, (None, 5))
    check_layer(L.Sequential(emb, L.Dense(2)), (None, 5))
    check_layer(L.Remat(emb), (None, 5))
    from funcdl._check_io import random_input
    drawn = random_input(random.key(1), (None, 400), 3, 7, padding_idx % 7)
    assert set(np.unique(drawn)) == set(range(7)) - {padding_idx % 7}
    assert set(np.unique(random_input(random.key(1), (None, 400), 3, 7))) == set(range(7))


def test_frozen_id_must_be_an_id():
    with pytest.raises(TypeError, match=r"frozen_id must be None or an int >= 0"):
        L.Layer(lambda k, s: (s, ()), lambda p, x: x, lambda p, x: (x, None), frozen_id=-1)
