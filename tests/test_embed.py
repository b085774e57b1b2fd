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
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive int"):
            Embedding(bad, 3)
