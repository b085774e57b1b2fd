"""layers.EmbeddingBag (torch's nn.EmbeddingBag on padded bags (N, L)): values and gradients
against torch in float64 for every mode, padding_idx and per_sample_weights, the vjp against
finite differences and by hand (1/count, max routing, ties), init as Embedding's, per-example
gradients, dtypes kept, bad input named."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_layer, check_vjp

KEY = fd.random.key(0)
# bag 1 repeats an id, bag 2 is all padding when padding_idx is 0, bag 3 has one entry
IDS = np.array([[3, 1, 4, 1, 5], [0, 0, 0, 0, 0], [2, 0, 0, 0, 0], [6, 5, 3, 0, 2]])


def _params(layer, in_shape=(None, 5), seed=0):
    _, params = layer.init(fd.random.key(seed), in_shape)
    return fd.tree.astype(params, np.float64)


def _torch_bag(torch, table, mode, padding_idx):
    bag = torch.nn.EmbeddingBag(*table.shape, mode=mode, padding_idx=padding_idx).double()
    with torch.no_grad():
        bag.weight.copy_(torch.from_numpy(table))
    return bag


@pytest.mark.parametrize("padding_idx", [None, 0, -1, 3])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_against_torch(mode, padding_idx):
    torch = pytest.importorskip("torch")
    layer = L.EmbeddingBag(7, 4, mode=mode, padding_idx=padding_idx)
    # a table with rows at the padding id too: torch leaves them out of the bags, as here
    table = np.random.default_rng(1).normal(size=(7, 4))
    params = {"table": table}
    dy = np.random.default_rng(2).normal(size=(4, 4))
    y, pullback = layer.vjp(params, IDS)
    dparams, dx = pullback(dy)
    bag = _torch_bag(torch, table, mode, padding_idx)
    out = bag(torch.from_numpy(IDS))
    out.backward(torch.from_numpy(dy))
    assert dx is None and y.shape == (4, 4)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dparams["table"], bag.weight.grad.numpy(), rtol=1e-14,
                               atol=1e-15)
    np.testing.assert_array_equal(layer.apply(params, IDS), y)


@pytest.mark.parametrize("padding_idx", [None, 0])
def test_per_sample_weights_against_torch(padding_idx):
    torch = pytest.importorskip("torch")
    layer = L.EmbeddingBag(7, 4, mode="sum", padding_idx=padding_idx, per_sample_weights=True)
    rng = np.random.default_rng(3)
    table, w, dy = rng.normal(size=(7, 4)), rng.normal(size=IDS.shape), rng.normal(size=(4, 4))
    y, pullback = layer.vjp({"table": table}, (IDS, w))
    dparams, (dids, dw) = pullback(dy)
    bag = _torch_bag(torch, table, "sum", padding_idx)
    tw = torch.tensor(w, requires_grad=True)
    out = bag(torch.from_numpy(IDS), per_sample_weights=tw)
    out.backward(torch.from_numpy(dy))
    assert dids is None
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dparams["table"], bag.weight.grad.numpy(), rtol=1e-14,
                               atol=1e-15)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-14, atol=1e-15)


def test_max_ties_go_to_the_first_entry_as_torch():
    """Two ids with equal values: torch routes dy to the first in the bag; so does this."""
    torch = pytest.importorskip("torch")
    table = np.array([[1.0, 2.0], [1.0, 5.0], [0.0, 5.0], [3.0, 5.0]])
    ids = np.array([[1, 2, 0], [2, 1, 3], [0, 0, 2]])
    y, pullback = L.EmbeddingBag(4, 2, mode="max").vjp({"table": table}, ids)
    dtable = pullback(np.array([[1.0, 10.0], [100.0, 1000.0], [7.0, 70.0]]))[0]["table"]
    np.testing.assert_array_equal(dtable, [[7, 0], [1, 10], [0, 1070], [100, 0]])
    bag = _torch_bag(torch, table, "max", None)
    out = bag(torch.from_numpy(ids))
    out.backward(torch.tensor([[1.0, 10.0], [100.0, 1000.0], [7.0, 70.0]], dtype=torch.float64))
    np.testing.assert_array_equal(y, out.detach().numpy())
    np.testing.assert_array_equal(dtable, bag.weight.grad.numpy())


def test_mean_gradient_is_one_over_the_count_without_padding():
    """dtable[i] = Σ dy / c over the bag's entries of id i, c not counting padding: a wrong
    sign, a count with the pads, or the sum's gradient fails."""
    layer = L.EmbeddingBag(4, 2, mode="mean", padding_idx=0)
    table = np.arange(8.0).reshape(4, 2)
    y, pullback = layer.vjp({"table": table}, np.array([[1, 2, 2, 0], [0, 0, 0, 0]]))
    np.testing.assert_allclose(y, [[(2 + 4 + 4) / 3, (3 + 5 + 5) / 3], [0, 0]])
    dtable = pullback(np.array([[3.0, 6.0], [5.0, 5.0]]))[0]["table"]
    np.testing.assert_allclose(dtable, [[0, 0], [1, 2], [2, 4], [0, 0]], rtol=1e-15)


def test_sum_and_weights_by_hand():
    layer = L.EmbeddingBag(3, 2, mode="sum", padding_idx=2, per_sample_weights=True)
    table = np.array([[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]])
    ids, w = np.array([[0, 1, 1, 2]]), np.array([[2.0, -1.0, 0.5, np.inf]])  # inf at a pad
    y, pullback = layer.vjp({"table": table}, (ids, w))
    np.testing.assert_array_equal(y, [[2 - 3 + 1.5, 4 - 4 + 2]])
    dparams, (_, dw) = pullback(np.array([[1.0, 10.0]]))
    np.testing.assert_array_equal(dparams["table"], [[2, 20], [-0.5, -5], [0, 0]])
    np.testing.assert_array_equal(dw, [[21, 43, 43, 0]])


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 0])
def test_vjp_against_finite_differences(mode, padding_idx):
    layer = L.EmbeddingBag(7, 3, mode=mode, padding_idx=padding_idx)
    check_vjp(layer, _params(layer, seed=4), IDS)
    check_layer(L.EmbeddingBag(7, 3, mode=mode, padding_idx=padding_idx), (4, 5))


def test_weighted_vjp_against_finite_differences():
    layer = L.EmbeddingBag(7, 3, mode="sum", padding_idx=0, per_sample_weights=True)
    params = _params(layer, ((None, 5), (None, 5)), seed=5)
    check_vjp(layer, params, (IDS, np.random.default_rng(6).normal(size=IDS.shape)))


def test_init_is_embeddings():
    """N(0, 1) as torch's: the same draw as Embedding's table for the same key, the padding
    row 0."""
    out_shape, params = L.EmbeddingBag(7, 4).init(KEY, (None, 5))
    assert out_shape == (None, 4) and params["table"].dtype == np.float32
    np.testing.assert_array_equal(params["table"], L.Embedding(7, 4).init(KEY, (None,))[1]["table"])
    padded = L.EmbeddingBag(7, 4, padding_idx=-2).init(KEY, (3, 5))[1]["table"]
    assert not padded[5].any() and padded[4].all()
    big = L.EmbeddingBag(500, 200).init(KEY, (None, 5))[1]["table"]
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    init = fd.initializers.zeros()
    assert not L.EmbeddingBag(3, 2, w_init=init).init(KEY, (None, 2))[1]["table"].any()
    shape, _ = L.EmbeddingBag(3, 2, mode="sum", per_sample_weights=True).init(
        KEY, ((6, 4), (6, 4)))
    assert shape == (6, 2)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_empty_bags_and_batches(mode):
    layer = L.EmbeddingBag(5, 3, mode=mode)
    params = _params(layer)
    y, pullback = layer.vjp(params, np.zeros((2, 0), np.int64))  # bags of length 0
    assert y.tolist() == [[0.0] * 3] * 2
    assert not pullback(np.ones((2, 3)))[0]["table"].any()
    y, pullback = layer.vjp(params, np.zeros((0, 4), np.int64))
    assert y.shape == (0, 3) and not pullback(np.zeros((0, 3)))[0]["table"].any()


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_float32_stays_float32(mode):
    layer = L.EmbeddingBag(5, 3, mode=mode, padding_idx=0)
    _, params = layer.init(KEY, (None, 4))
    ids = np.array([[1, 2, 0, 2], [4, 4, 3, 0]], np.int32)
    y, pullback = layer.vjp(params, ids)
    assert y.dtype == np.float32
    assert pullback(np.ones((2, 3)))[0]["table"].dtype == np.float32  # a float64 dy too
    weighted = L.EmbeddingBag(5, 3, mode="sum", per_sample_weights=True)
    y, pullback = weighted.vjp(params, (ids, np.ones((2, 4))))  # float64 weights
    dparams, (_, dw) = pullback(np.ones((2, 3), np.float32))
    assert y.dtype == np.float32 and dparams["table"].dtype == np.float32
    assert dw.dtype == np.float64  # in the weights' own dtype, as an input's dx


@pytest.mark.parametrize("mode", ["sum", "mean", "max", "weighted"])
def test_per_example_gradients_are_the_loop(mode):
    weighted = mode == "weighted"
    bag = L.EmbeddingBag(6, 3, mode="sum" if weighted else mode, padding_idx=0,
                         per_sample_weights=weighted)
    model = L.Sequential(bag, L.Dense(2))
    _, params = model.init(KEY, ((None, 4), (None, 4)) if weighted else (None, 4))
    params = fd.tree.astype(params, np.float64)
    ids = np.array([[1, 2, 2, 0], [0, 0, 0, 0], [5, 3, 1, 1], [4, 0, 4, 2]])
    weights = np.random.default_rng(8).normal(size=ids.shape)
    x = (ids, weights) if weighted else ids
    target = np.random.default_rng(7).normal(size=(4, 2))
    grads = fd.per_example_grad(model, fd.losses.mse)(params, x, target)
    g = fd.grad(model, fd.losses.mse)
    assert grads[0]["table"].shape == (4, 6, 3)
    for i in range(4):
        row = (ids[i:i + 1], weights[i:i + 1]) if weighted else ids[i:i + 1]
        want = g(params, row, target[i:i + 1])
        for got, w in zip(fd.tree.leaves(grads), fd.tree.leaves(want)):
            np.testing.assert_allclose(got[i], w, rtol=1e-12, atol=1e-14)


NAME = "EmbeddingBag(5, 3, mode='mean')"


@pytest.mark.parametrize("x, err, words", [
    (np.array([[0.0, 1.0]]), TypeError, "expected integer ids, got dtype float64"),
    (np.array([[0, 5]]), ValueError, "ids must be in [0, 5) (vocabulary size 5), got ids in "
                                     "[0, 5] (1 out of range)"),
    (np.array([[-1, 2]]), ValueError, "got ids in [-1, 2]"),
    (np.array([0, 1]), ValueError, "expected ids of shape (N, L), a padded bag per row, got "
                                   "shape (2,)"),
    (np.zeros((2, 2, 2), np.int64), ValueError, "got shape (2, 2, 2)"),
    ((np.array([[0, 1]]), np.ones((1, 2))), TypeError, "build EmbeddingBag(..., mode='sum', "
                                                       "per_sample_weights=True)"),
])
def test_bad_input(x, err, words):
    layer = L.EmbeddingBag(5, 3)
    _, params = layer.init(KEY, (None, 2))
    for call in (layer.apply, layer.vjp):
        with pytest.raises(err) as e:
            call(params, x)
        assert str(e.value).startswith(f"{NAME}: ") and words in str(e.value)


WNAME = "EmbeddingBag(5, 3, mode='sum', per_sample_weights=True)"


@pytest.mark.parametrize("x, err, words", [
    (np.array([[0, 1]]), TypeError, "expected the input as a pair (ids, per_sample_weights), "
                                    "got ndarray"),
    ((np.array([[0, 1]]), np.ones((1, 3))), ValueError, "per_sample_weights must have the "
                                                        "ids' shape (1, 2), got (1, 3)"),
    ((np.array([[0, 1]]), None), TypeError, "per_sample_weights must be an array of floats"),
    ((np.array([[0.0, 1.0]]), np.ones((1, 2))), TypeError, "expected integer ids"),
])
def test_bad_weighted_input(x, err, words):
    layer = L.EmbeddingBag(5, 3, mode="sum", per_sample_weights=True)
    _, params = layer.init(KEY, ((None, 2), (None, 2)))
    for call in (layer.apply, layer.vjp):
        with pytest.raises(err) as e:
            call(params, x)
        assert str(e.value).startswith(f"{WNAME}: ") and words in str(e.value)


@pytest.mark.parametrize("kw, err, words", [
    (dict(mode="mean", per_sample_weights=True), ValueError,
     "EmbeddingBag: per_sample_weights=True needs mode='sum' (as torch's), got mode='mean'"),
    (dict(mode="max", per_sample_weights=True), ValueError, "got mode='max'"),
    (dict(mode="avg"), ValueError, "EmbeddingBag: mode must be 'sum', 'mean' or 'max', got "
                                   "'avg'"),
    (dict(padding_idx=5), ValueError, "EmbeddingBag: padding_idx must be an id in [-5, 5)"),
    (dict(padding_idx=1.0), TypeError, "EmbeddingBag: padding_idx must be an int"),
])
def test_bad_constructor(kw, err, words):
    with pytest.raises(err) as e:
        L.EmbeddingBag(5, 3, **kw)
    assert words in str(e.value)


@pytest.mark.parametrize("in_shape, err, words", [
    ((None,), ValueError, "expected an input shape (N, L) of rank 2, got (None,)"),
    ((None, 2, 3), ValueError, "of rank 2, got (None, 2, 3)"),
])
def test_bad_in_shape_params_and_cotangent(in_shape, err, words):
    layer = L.EmbeddingBag(5, 3)
    with pytest.raises(err) as e:
        layer.init(KEY, in_shape)
    assert str(e.value).startswith(f"{NAME}: ") and words in str(e.value)
    with pytest.raises(ValueError, match=r"params\['table'\] has shape \(4, 3\), expected "
                                         r"\(5, 3\)"):
        layer.apply({"table": np.zeros((4, 3), np.float32)}, np.zeros((1, 2), np.int64))
    _, pullback = layer.vjp(layer.init(KEY, (None, 2))[1], np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"pullback expected dy of shape \(2, 3\)"):
        pullback(np.ones((2, 2)))
    weighted = L.EmbeddingBag(5, 3, mode="sum", per_sample_weights=True)
    with pytest.raises(ValueError, match=r"ids have shape \(2, 4\) but per_sample_weights "
                                         r"\(2, 3\)"):
        weighted.init(KEY, ((2, 4), (2, 3)))
