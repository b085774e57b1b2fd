"""layers.segment_sum (jax.ops.segment_sum, torch's index_add_) and the SegmentSum layer
(PyG's global_add_pool): values against a loop and torch in float64, the vjp against finite
differences and by hand, dtypes kept, bad input named."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.layers import segment as seg
from funcdl.testing import check_vjp


def _loop(data: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, *data.shape[1:]), data.dtype)
    for j, i in enumerate(ids):
        out[i] += data[j]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(7,), (7, 3), (7, 2, 3)])
def test_segment_sum_is_the_loop(dtype, shape):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=shape) * 4).astype(dtype)
    ids = np.array([3, 0, 3, 3, 1, 0, 3])  # repeats, and segments 2 and 4 empty
    got = L.segment_sum(data, ids, 5)
    assert got.dtype == dtype and got.shape == (5, *shape[1:])
    np.testing.assert_allclose(got, _loop(data, ids, 5), rtol=1e-6)
    assert not got[2].any() and not got[4].any()
    assert L.segment_sum(data, ids).shape == (4, *shape[1:])  # None: the largest id + 1


def test_segment_sum_in_chunks_is_the_same(monkeypatch):
    rng = np.random.default_rng(1)
    data, ids = rng.normal(size=(50, 6)), rng.integers(0, 9, 50)
    whole = L.segment_sum(data, ids, 9)
    monkeypatch.setattr(seg, "_CHUNK", 7)  # 1 row per chunk: many chunks, a ragged last one
    np.testing.assert_allclose(L.segment_sum(data, ids, 9), whole, rtol=1e-14)
    np.testing.assert_allclose(whole, _loop(data, ids, 9), rtol=1e-12)


def test_segment_sum_empty():
    assert L.segment_sum(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), 2).tolist() == \
        [[0.0] * 3] * 2
    assert L.segment_sum(np.zeros((0, 3)), np.zeros(0, np.int64)).shape == (0, 3)
    assert L.segment_sum(np.ones((2, 0)), np.array([1, 1]), 3).shape == (3, 0)


def test_segment_sum_does_not_write_its_inputs():
    data, ids = np.ones((4, 2)), np.array([0, 1, 0, 1])
    data.setflags(write=False)
    ids.setflags(write=False)
    np.testing.assert_array_equal(L.segment_sum(data, ids, 2), [[2, 2], [2, 2]])


def test_segment_sum_against_torch_index_add():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    data, ids = rng.normal(size=(200, 5)), rng.integers(0, 30, 200)
    want = torch.zeros(30, 5, dtype=torch.float64).index_add_(
        0, torch.from_numpy(ids), torch.from_numpy(data)).numpy()
    np.testing.assert_allclose(L.segment_sum(data, ids, 30), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bad, err, words", [
    (dict(segment_ids=np.array([0.0, 1.0, 1.0])), TypeError, "integers, got dtype float64"),
    (dict(segment_ids=np.array([True, False, True])), TypeError, "got dtype bool"),
    (dict(segment_ids=np.array([0, 1])), ValueError, "shape (3,), one id per row of data, "
                                                     "got shape (2,)"),
    (dict(segment_ids=np.array([[0, 1, 1]])), ValueError, "got shape (1, 3)"),
    (dict(segment_ids=np.array([0, 2, 1])), ValueError, "in [0, 2) (num_segments 2), got "
                                                        "ids in [0, 2]"),
    (dict(segment_ids=np.array([0, -1, 1])), ValueError, "got ids in [-1, 1]"),
    (dict(num_segments=-1), ValueError, "num_segments must be >= 0"),
    (dict(num_segments=2.0), TypeError, "num_segments must be an int"),
    (dict(data=np.array([True, False, True])), TypeError, "ints or floats, got dtype bool"),
    (dict(data=np.float64(1.0)), ValueError, "rows on axis 0"),
    (dict(segment_ids=None), TypeError, "segment_ids must be an array of ints"),
])
def test_segment_sum_bad_input(bad, err, words):
    args = {"data": np.ones((3, 2)), "segment_ids": np.array([0, 1, 1]), "num_segments": 2,
            **bad}
    with pytest.raises(err) as e:
        L.segment_sum(**args)
    assert str(e.value).startswith("segment_sum: ") and words in str(e.value)


# ---------------------------------------------------------------------------- the layer

def test_segment_sum_layer_vjp_against_finite_differences():
    rng = np.random.default_rng(3)
    x, ids = rng.normal(size=(9, 2, 3)), np.array([1, 1, 0, 3, 1, 0, 0, 3, 1])  # 2 empty
    layer = L.SegmentSum(4)
    out_shape, params = layer.init(fd.random.key(0), ((None, 2, 3), (None,)))
    assert out_shape == (4, 2, 3) and params == ()
    check_vjp(layer, params, (x, ids))


def test_segment_sum_layer_vjp_is_the_gather():
    """dx = dy[ids]: a wrong sign, a factor (a mean's 1/count) or a wrong row fails."""
    x, ids = np.zeros((4, 2)), np.array([2, 0, 2, 1])
    _, pullback = L.SegmentSum(3).vjp((), (x, ids))
    dy = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    dparams, (dx, dids) = pullback(dy)
    assert dparams == () and dids is None
    np.testing.assert_array_equal(dx, [[5, 6], [1, 2], [5, 6], [3, 4]])


def test_segment_sum_layer_dtypes():
    ids = np.array([0, 1, 1])
    for dtype in (np.float32, np.float64):
        y, pullback = L.SegmentSum(2).vjp((), (np.ones((3, 4), dtype), ids))
        dx = pullback(np.ones((2, 4)))[1][0]  # a float64 dy: dx in x's dtype still
        assert y.dtype == dtype and dx.dtype == dtype
    y = L.SegmentSum(2).apply((), (np.ones((3, 4), np.int64), ids))
    assert y.dtype == np.float32  # integer data as float32, as the other layers take it
    np.testing.assert_array_equal(y, [[1] * 4, [2] * 4])


def test_graph_readout_trains_as_torch_global_add_pool():
    """Node MLP, per-graph sum (readout), graph head: value and grads as torch's in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, graph = rng.normal(size=(10, 3)), np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    target = rng.normal(size=(3, 1))
    model = L.Sequential(L.Parallel(L.Sequential(L.Dense(4), L.Tanh()), L.Identity()),
                         L.SegmentSum(3), L.Dense(1))
    _, params = model.init(fd.random.key(1), ((None, 3), (None,)))
    params = fd.tree.astype(params, np.float64)
    value, grads = fd.value_and_grad(model, fd.losses.mse)(params, (x, graph), target)

    w1, b1, w2, b2 = (torch.tensor(a, requires_grad=True) for a in (
        params[0][0][0]["w"], params[0][0][0]["b"], params[2]["w"], params[2]["b"]))
    h = torch.tanh(torch.from_numpy(x) @ w1 + b1)
    pooled = torch.zeros(3, 4, dtype=torch.float64).index_add_(0, torch.from_numpy(graph), h)
    loss = torch.nn.functional.mse_loss(pooled @ w2 + b2, torch.from_numpy(target))
    loss.backward()
    assert abs(value - loss.item()) < 1e-12
    for got, t in ((grads[0][0][0]["w"], w1), (grads[0][0][0]["b"], b1),
                   (grads[2]["w"], w2), (grads[2]["b"], b2)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("x, err, words", [
    (np.ones((3, 2)), TypeError, "expected the input as a pair (data, segment_ids), got "
                                 "ndarray"),
    ((np.ones((3, 2)),), TypeError, "got a tuple of 1 entries"),
    ((np.ones((3, 2)), np.array([0, 1])), ValueError, "shape (3,), one id per row"),
    ((np.ones((3, 2)), np.array([0, 1, 2])), ValueError, "in [0, 2) (num_segments 2)"),
    ((np.ones((3, 2)), np.array([0.0, 1.0, 1.0])), TypeError, "integers, got dtype float64"),
])
def test_segment_sum_layer_bad_input(x, err, words):
    for call in (L.SegmentSum(2).apply, L.SegmentSum(2).vjp):
        with pytest.raises(err) as e:
            call((), x)
        assert str(e.value).startswith("SegmentSum(2): ") and words in str(e.value)


@pytest.mark.parametrize("in_shape, err, words", [
    ((None, 3), TypeError, "shapes of (data, segment_ids), e.g. ((None, F), (None,))"),
    (((5, 3), (4,)), ValueError, "data has 5 rows but segment_ids 4"),
    (((None, 3), (None, 1)), ValueError, "rank 1"),
])
def test_segment_sum_layer_bad_in_shape(in_shape, err, words):
    with pytest.raises(err) as e:
        L.SegmentSum(2).init(fd.random.key(0), in_shape)
    assert str(e.value).startswith("SegmentSum(2): ") and words in str(e.value)


def test_segment_sum_layer_bad_cotangent_and_ctor():
    _, pullback = L.SegmentSum(2).vjp((), (np.ones((3, 2)), np.array([0, 1, 1])))
    with pytest.raises(ValueError, match=r"SegmentSum\(2\): pullback expected dy of shape "
                                         r"\(2, 2\)"):
        pullback(np.ones((3, 2)))
    with pytest.raises(ValueError, match="SegmentSum: num_segments must be >= 0"):
        L.SegmentSum(-1)


def test_segment_sum_layer_refuses_per_example_gradients_by_name():
    model = L.Sequential(L.Parallel(L.Dense(2), L.Identity()), L.SegmentSum(2), L.Dense(1))
    _, params = model.init(fd.random.key(0), ((None, 3), (None,)))
    x, ids = np.ones((4, 3), np.float32), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"SegmentSum\(2\): no per-example gradients: its "
                                         r"output's rows are segments"):
        fd.per_example_grad(model, fd.losses.mse)(params, (x, ids), np.zeros((2, 1), np.float32))
