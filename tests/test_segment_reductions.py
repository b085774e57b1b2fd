"""layers.segment_mean / segment_max (torch's scatter_reduce 'mean' / 'amax' with
include_self=False, jax.ops.segment_max but 0 for an empty segment) and the SegmentMean /
SegmentMax layers (PyG's global_mean_pool / global_max_pool): values against a loop and
torch in float64, the vjps against finite differences, by hand and against torch's
(ties split evenly), dtypes kept, bad input named."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_vjp

IDS = np.array([3, 0, 3, 3, 1, 0, 3])  # repeats; segments 2 and 4 empty


def _loop(data: np.ndarray, ids: np.ndarray, n: int, reduce) -> np.ndarray:
    out = np.zeros((n, *data.shape[1:]), np.result_type(data.dtype, np.float64)
                   if reduce is np.mean and data.dtype.kind != "f" else data.dtype)
    for i in range(n):
        if (ids == i).any():
            out[i] = reduce(data[ids == i], axis=0)
    return out


def _torch_reduce(torch, data: np.ndarray, ids: np.ndarray, n: int, how: str):
    index = torch.from_numpy(ids).reshape(-1, *[1] * (data.ndim - 1)).expand(data.shape)
    src = torch.from_numpy(data)
    return torch.zeros((n, *data.shape[1:]), dtype=src.dtype).scatter_reduce(
        0, index, src, how, include_self=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (7, 3), (7, 2, 3)])
@pytest.mark.parametrize("fn, reduce", [(L.segment_mean, np.mean), (L.segment_max, np.max)])
def test_is_the_loop(fn, reduce, dtype, shape):
    data = (np.random.default_rng(0).normal(size=shape) * 4).astype(dtype)
    got = fn(data, IDS, 5)
    assert got.dtype == dtype and got.shape == (5, *shape[1:])
    np.testing.assert_allclose(got, _loop(data, IDS, 5, reduce), rtol=1e-6)
    assert not got[2].any() and not got[4].any()  # empty: 0, not JAX's -inf for max
    assert fn(data, IDS).shape == (4, *shape[1:])  # None: the largest id + 1


def test_integer_data():
    data = np.array([[1, -5], [2, 7], [4, 3]])
    mean = L.segment_mean(data, np.array([0, 0, 1]), 3)  # float64, as np.mean
    assert mean.dtype == np.float64
    np.testing.assert_array_equal(mean, [[1.5, 1.0], [4, 3], [0, 0]])
    top = L.segment_max(data, np.array([0, 0, 1]), 3)  # ints kept, as jax's
    assert top.dtype == data.dtype
    np.testing.assert_array_equal(top, [[2, 7], [4, 3], [0, 0]])
    negative = L.segment_max(np.array([-3, -1], np.int32), np.array([0, 0]))
    assert negative.tolist() == [-1] and negative.dtype == np.int32


def test_nan_propagates_in_max():
    got = L.segment_max(np.array([1.0, np.nan, 3.0]), np.array([0, 0, 1]))
    assert np.isnan(got[0]) and got[1] == 3.0


@pytest.mark.parametrize("fn", [L.segment_mean, L.segment_max])
def test_empty(fn):
    assert fn(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), 2).tolist() == [[0.0] * 3] * 2
    assert fn(np.zeros((0, 3)), np.zeros(0, np.int64)).shape == (0, 3)
    assert fn(np.ones((2, 0)), np.array([1, 1]), 3).shape == (3, 0)


@pytest.mark.parametrize("fn", [L.segment_mean, L.segment_max])
def test_does_not_write_its_inputs(fn):
    data, ids = np.arange(8.0).reshape(4, 2), np.array([0, 1, 0, 1])
    data.setflags(write=False)
    ids.setflags(write=False)
    want = [[2, 3], [4, 5]] if fn is L.segment_mean else [[4, 5], [6, 7]]
    np.testing.assert_array_equal(fn(data, ids, 2), want)


@pytest.mark.parametrize("fn, how", [(L.segment_mean, "mean"), (L.segment_max, "amax")])
@pytest.mark.parametrize("shape", [(300,), (300, 5), (300, 2, 3)])
def test_against_torch_scatter_reduce(fn, how, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    data, ids = rng.normal(size=shape), rng.integers(0, 40, 300)
    ids[ids == 7] = 8  # segment 7 empty: 0 in both
    want = _torch_reduce(torch, data, ids, 45, how).numpy()
    np.testing.assert_allclose(fn(data, ids, 45), want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("fn, where", [(L.segment_mean, "segment_mean"),
                                       (L.segment_max, "segment_max")])
@pytest.mark.parametrize("bad, err, words", [
    (dict(segment_ids=np.array([0.0, 1.0, 1.0])), TypeError, "integers, got dtype float64"),
    (dict(segment_ids=np.array([0, 1])), ValueError, "shape (3,), one id per row of data, "
                                                     "got shape (2,)"),
    (dict(segment_ids=np.array([0, 2, 1])), ValueError, "in [0, 2) (num_segments 2), got "
                                                        "ids in [0, 2]"),
    (dict(segment_ids=np.array([0, -1, 1])), ValueError, "got ids in [-1, 1]"),
    (dict(num_segments=-1), ValueError, "num_segments must be >= 0"),
    (dict(data=np.array([True, False, True])), TypeError, "ints or floats, got dtype bool"),
    (dict(data=np.float64(1.0)), ValueError, "rows on axis 0"),
])
def test_bad_input(fn, where, bad, err, words):
    args = {"data": np.ones((3, 2)), "segment_ids": np.array([0, 1, 1]), "num_segments": 2,
            **bad}
    with pytest.raises(err) as e:
        fn(**args)
    assert str(e.value).startswith(f"{where}: ") and words in str(e.value)


# ---------------------------------------------------------------------------- the layers

@pytest.mark.parametrize("make", [L.SegmentMean, L.SegmentMax])
def test_layer_vjp_against_finite_differences(make):
    rng = np.random.default_rng(3)
    x, ids = rng.normal(size=(9, 2, 3)), np.array([1, 1, 0, 3, 1, 0, 0, 3, 1])  # 2 empty
    layer = make(4)
    out_shape, params = layer.init(fd.random.key(0), ((None, 2, 3), (None,)))
    assert out_shape == (4, 2, 3) and params == ()
    check_vjp(layer, params, (x, ids))


def test_mean_vjp_divides_by_the_count():
    """dx[j] = dy[ids[j]] / count: a wrong sign, a missing 1/count (the sum's) or a wrong
    row fails."""
    ids = np.array([2, 0, 2, 1])
    y, pullback = L.SegmentMean(4).vjp((), (np.array([[1.0, 2], [3, 4], [5, 8], [7, 9]]), ids))
    np.testing.assert_array_equal(y, [[3, 4], [7, 9], [3, 5], [0, 0]])
    dparams, (dx, dids) = pullback(np.array([[1.0, 2.0], [3.0, 4.0], [6.0, 8.0], [9.0, 9.0]]))
    assert dparams == () and dids is None
    np.testing.assert_array_equal(dx, [[3, 4], [1, 2], [3, 4], [3, 4]])


def test_max_vjp_routes_to_the_max_and_splits_ties():
    """dx goes to the row holding each segment's max, entry by entry; rows tied at the max
    share it evenly, as torch's scatter_reduce('amax') backward."""
    x = np.array([[1.0, 5.0], [4.0, 5.0], [2.0, 0.0], [4.0, -1.0], [3.0, 3.0]])
    ids = np.array([0, 0, 1, 0, 1])
    y, pullback = L.SegmentMax(3).vjp((), (x, ids))
    np.testing.assert_array_equal(y, [[4, 5], [3, 3], [0, 0]])
    _, (dx, _) = pullback(np.array([[2.0, -6.0], [10.0, 20.0], [7.0, 7.0]]))
    np.testing.assert_array_equal(dx, [[0, -3], [1, -3], [0, 0], [1, 0], [10, 20]])


@pytest.mark.parametrize("make, how", [(L.SegmentMean, "mean"), (L.SegmentMax, "amax")])
def test_layer_vjp_against_torch_with_ties(make, how):
    """Torch's base is -100, a value no row takes: on a zeros base torch 2.13's 'amax'
    backward also counts the excluded base as a tie where a segment's max is 0, and its
    rows get a share of dy less (2/3 of it for two tied rows); here the rows share all."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, size=(60, 4)).astype(np.float64)  # small ints: many ties
    ids = rng.integers(0, 12, 60)
    ids[ids == 5] = 6  # segment 5 empty: 0 here, torch's base there
    dy = rng.normal(size=(12, 4))
    y, pullback = make(12).vjp((), (x, ids))
    src = torch.tensor(x, requires_grad=True)
    out = torch.full((12, 4), -100.0, dtype=torch.float64).scatter_reduce(
        0, torch.from_numpy(ids)[:, None].expand(60, 4), src, how, include_self=False)
    out.backward(torch.from_numpy(dy))
    want = out.detach().numpy()
    want[5] = 0
    np.testing.assert_allclose(y, want, rtol=1e-14)
    if how == "amax":  # more rows at a max than (segment, feature) pairs: ties
        assert (x == y[ids]).sum() > 11 * 4 + 10
    np.testing.assert_allclose(pullback(dy)[1][0], src.grad.numpy(), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("make", [L.SegmentMean, L.SegmentMax])
def test_layer_dtypes(make):
    ids = np.array([0, 1, 1])
    for dtype in (np.float32, np.float64):
        y, pullback = make(2).vjp((), (np.arange(12).reshape(3, 4).astype(dtype), ids))
        dx = pullback(np.ones((2, 4)))[1][0]  # a float64 dy: dx in x's dtype still
        assert y.dtype == dtype and dx.dtype == dtype
    y = make(2).apply((), (np.arange(12).reshape(3, 4), ids))
    assert y.dtype == np.float32  # integer data as float32, as the other layers take it


def test_graph_readouts_train_as_torch():
    """Node MLP, per-graph mean and max (readouts) concatenated, graph head: value and grads
    as torch's scatter_reduce in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, graph = rng.normal(size=(10, 3)), np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    target = rng.normal(size=(3, 1))
    node = L.Sequential(L.Dense(4), L.Tanh())
    model = L.Sequential(L.Parallel(node, L.Identity()), L.FanOut(2),
                         L.Parallel(L.SegmentMean(3), L.SegmentMax(3)), L.FanInConcat(),
                         L.Dense(1))
    _, params = model.init(fd.random.key(1), ((None, 3), (None,)))
    params = fd.tree.astype(params, np.float64)
    value, grads = fd.value_and_grad(model, fd.losses.mse)(params, (x, graph), target)

    w1, b1, w2, b2 = (torch.tensor(a, requires_grad=True) for a in (
        params[0][0][0]["w"], params[0][0][0]["b"], params[4]["w"], params[4]["b"]))
    h = torch.tanh(torch.from_numpy(x) @ w1 + b1)
    index = torch.from_numpy(graph)[:, None].expand(10, 4)
    pooled = [torch.zeros(3, 4, dtype=torch.float64).scatter_reduce(0, index, h, how,
                                                                    include_self=False)
              for how in ("mean", "amax")]
    loss = torch.nn.functional.mse_loss(torch.cat(pooled, 1) @ w2 + b2,
                                        torch.from_numpy(target))
    loss.backward()
    assert abs(value - loss.item()) < 1e-12
    for got, t in ((grads[0][0][0]["w"], w1), (grads[0][0][0]["b"], b1),
                   (grads[4]["w"], w2), (grads[4]["b"], b2)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, tag", [(L.SegmentMean, "SegmentMean(2)"),
                                       (L.SegmentMax, "SegmentMax(2)")])
@pytest.mark.parametrize("x, err, words", [
    (np.ones((3, 2)), TypeError, "expected the input as a pair (data, segment_ids), got "
                                 "ndarray"),
    ((np.ones((3, 2)), np.array([0, 1])), ValueError, "shape (3,), one id per row"),
    ((np.ones((3, 2)), np.array([0, 1, 2])), ValueError, "in [0, 2) (num_segments 2)"),
    ((np.ones((3, 2)), np.array([0.0, 1.0, 1.0])), TypeError, "integers, got dtype float64"),
])
def test_layer_bad_input(make, tag, x, err, words):
    for call in (make(2).apply, make(2).vjp):
        with pytest.raises(err) as e:
            call((), x)
        assert str(e.value).startswith(f"{tag}: ") and words in str(e.value)


@pytest.mark.parametrize("make, tag", [(L.SegmentMean, "SegmentMean"),
                                       (L.SegmentMax, "SegmentMax")])
def test_layer_bad_shapes_cotangent_and_ctor(make, tag):
    with pytest.raises(ValueError, match=rf"{tag}\(2\): data has 5 rows but segment_ids 4"):
        make(2).init(fd.random.key(0), ((5, 3), (4,)))
    _, pullback = make(2).vjp((), (np.ones((3, 2)), np.array([0, 1, 1])))
    with pytest.raises(ValueError, match=rf"{tag}\(2\): pullback expected dy of shape "
                                         r"\(2, 2\)"):
        pullback(np.ones((3, 2)))
    with pytest.raises(ValueError, match=f"{tag}: num_segments must be >= 0"):
        make(-1)


@pytest.mark.parametrize("make, tag", [(L.SegmentMean, "SegmentMean"),
                                       (L.SegmentMax, "SegmentMax")])
def test_layer_refuses_per_example_gradients_by_name(make, tag):
    model = L.Sequential(L.Parallel(L.Dense(2), L.Identity()), make(2), L.Dense(1))
    _, params = model.init(fd.random.key(0), ((None, 3), (None,)))
    x, ids = np.ones((4, 3), np.float32), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=rf"{tag}\(2\): no per-example gradients: its "
                                         r"output's rows are segments"):
        fd.per_example_grad(model, fd.losses.mse)(params, (x, ids), np.zeros((2, 1), np.float32))
