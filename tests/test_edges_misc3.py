"""Edges of the losses, metrics, testing, io, tree and data found by probes: triplet_margin
on an empty feature axis, (N, 1) scores in the metrics, check_loss on an empty batch,
bfloat16 (ml_dtypes) refused in words that say so, one_hot's integer and bool dtypes, and
Python lists read by the losses as weakly typed floats."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pytest

from funcdl import data, io, losses, metrics, tree
from funcdl.testing import check_loss

# ------------------------------------------------------------- triplet_margin, D = 0

TRIPLET_SETTINGS = [(p, swap) for p in (1.0, 1.5, 2.0) for swap in (False, True)]


@pytest.mark.parametrize(("p", "swap"), TRIPLET_SETTINGS)
def test_triplet_margin_of_an_empty_feature_axis_is_the_margin(p, swap):
    # both distances of 0-vectors are 0 (torch's pairwise_distance), so the hinge is margin
    a = np.zeros((2, 0), np.float32)
    kw = {"p": p, "swap": swap, "margin": 0.5}
    assert losses.triplet_margin((a, a, a), None, **kw) == pytest.approx(0.5)
    assert losses.triplet_margin((a, a, a), None, reduction="sum", **kw) == pytest.approx(1.0)
    per = losses.triplet_margin((a, a, a), None, reduction="none", **kw)
    np.testing.assert_array_equal(per, np.full(2, 0.5, np.float32))
    assert per.dtype == np.float32
    _, pullback = losses.triplet_margin.vjp((a, a, a), None, **kw)
    grads = pullback(1.0)
    assert len(grads) == 3
    for g in grads:
        assert g.shape == (2, 0) and g.dtype == np.float32


@pytest.mark.parametrize(("p", "swap"), TRIPLET_SETTINGS)
def test_triplet_margin_of_an_empty_feature_axis_matches_torch(p, swap):
    torch = pytest.importorskip("torch")
    a = np.zeros((3, 0), np.float32)
    ts = [torch.from_numpy(a.copy()).requires_grad_() for _ in range(3)]
    want = torch.nn.functional.triplet_margin_loss(*ts, p=p, swap=swap)
    want.backward()
    value, pullback = losses.triplet_margin.vjp((a, a, a), None, p=p, swap=swap)
    assert value == pytest.approx(want.item())
    for g, t in zip(pullback(1.0), ts, strict=True):
        assert g.shape == tuple(t.grad.shape)


# ------------------------------------------------------------- (N, 1) scores

ONE_COLUMN = np.array([[0.2], [0.9], [0.7]], np.float32)  # a sigmoid head's P(y = 1)


@pytest.mark.parametrize("y", [[0, 0, 0], [0, 1, 1]])
@pytest.mark.parametrize(("fn", "arg"), [
    (metrics.accuracy, "y_pred_or_scores"),
    (metrics.log_loss, "probs"),
    (partial(metrics.top_k_accuracy, k=1), "scores"),
])
def test_metrics_refuse_one_column_scores(fn, arg, y):
    # y of 0s only used to give accuracy 1.0 and log_loss 0.69: one class's scores
    name = getattr(fn, "func", fn).__name__
    with pytest.raises(ValueError, match=rf"metrics\.{name}: {arg} of shape \(3, 1\) has "
                                         r"one column.*binary task.*\[:, 0\]"):
        fn(np.array(y), ONE_COLUMN)


def test_metrics_one_column_message_points_to_the_binary_reading_that_works():
    y = np.array([0, 0, 0])
    assert metrics.accuracy(y, ONE_COLUMN[:, 0]) == pytest.approx(1 / 3)
    assert metrics.log_loss(y, ONE_COLUMN[:, 0]) == pytest.approx(
        -np.mean(np.log([0.8, 0.1, 0.3])), rel=1e-6)
    with pytest.raises(ValueError, match=r"metrics\.accuracy: y_pred_or_scores of shape"):
        metrics.accuracy(y, np.array([[0], [1], [0]]))  # (N, 1) integer labels too


# ------------------------------------------------------------- check_loss, empty batch

@pytest.mark.parametrize(("loss", "pred", "target"), [
    (partial(losses.mse, reduction="sum"), np.zeros((0, 2), np.float32),
     np.zeros((0, 2), np.float32)),
    (partial(losses.softmax_cross_entropy, reduction="sum"), np.zeros((0, 3), np.float32),
     np.zeros((0,), np.int64)),
    (losses.mse, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)),
    (partial(losses.margin_ranking, reduction="sum"),
     (np.zeros(0, np.float32), np.zeros(0, np.float32)), np.zeros(0)),
    (partial(losses.triplet_margin, reduction="sum"), (np.zeros((2, 0), np.float32),) * 3,
     None),
])
def test_check_loss_refuses_an_empty_batch(loss, pred, target):
    with pytest.raises(ValueError, match=r"check_loss\(.*\): pred is empty .*nothing to "
                                         r"check; pass a non-empty batch"):
        check_loss(loss, pred, target)


def test_check_loss_still_checks_a_batch_of_one():
    check_loss(partial(losses.mse, reduction="sum"), np.array([[0.5, -1.0]], np.float32),
               np.zeros((1, 2), np.float32))


# ------------------------------------------------------------- bfloat16

def _bf16(a):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16)


def test_io_save_refuses_bfloat16_naming_the_leaf(tmp_path):
    f = tmp_path / "bf.npz"
    with pytest.raises(TypeError, match=r"io\.save: the leaf at \['w'\]\[1\] has dtype "
                                        r"bfloat16.*raw bytes.*cast it to float32"):
        io.save(f, {"w": [np.zeros(2, np.float32), _bf16([1.5, -2.0])]})
    assert not os.path.exists(f)
    with pytest.raises(TypeError, match=r"io\.save: the leaf at the root has dtype bfloat16"):
        io.save(f, _bf16(1.0)[()])  # a NumPy-scalar leaf too


def test_io_load_explains_a_bfloat16_like(tmp_path):
    f = tmp_path / "w.npz"
    io.save(f, {"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"like has bfloat16; like holds bfloat16 leaves, "
                                         r"which funcdl does not support.*cast to float32"):
        io.load(f, like={"w": _bf16([0.0, 0.0])})


@pytest.mark.parametrize(("call", "message"), [
    (lambda: losses.mse(_bf16(np.ones(3)), np.ones(3, np.float32)),
     r"mse: bfloat16 pred is not supported; cast it to float32"),
    (lambda: losses.mse(np.ones(3, np.float32), _bf16(np.ones(3))),
     r"mse: bfloat16 target is not supported; cast it to float32"),
    (lambda: losses.softmax_cross_entropy(np.zeros((2, 3), np.float32), _bf16([0, 1])),
     r"softmax_cross_entropy: target must be integer .* got dtype bfloat16; .*pass "
     r"target\.astype\(int\)"),
    (lambda: tree.astype({"a": np.ones(2, np.float32)}, _bf16(0).dtype),
     r"tree\.astype: bfloat16 is not supported.*pass np\.float32"),
    (lambda: metrics.log_loss(np.array([0, 1]), _bf16([[0.9, 0.1], [0.2, 0.8]])),
     r"metrics\.log_loss: bfloat16 probs is not supported; cast it: "
     r"probs\.astype\(np\.float32\)"),
    (lambda: metrics.accuracy(_bf16([0, 1]), np.array([0, 1])),  # labels: to int, not float
     r"metrics\.accuracy: bfloat16 y_true is not supported; cast it: y_true\.astype\(int\)"),
])
def test_bfloat16_is_refused_in_words_that_say_so(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_float16_pred_keeps_its_message():
    with pytest.raises(TypeError, match=r"mse: float16 pred is not supported; cast it to "
                                        r"float32"):
        losses.mse(np.ones(3, np.float16), np.ones(3, np.float32))


# ------------------------------------------------------------- one_hot dtypes

@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int8, bool, "i4"])
def test_one_hot_takes_integer_and_bool_dtypes(dtype):
    labels = np.array([[0, 2], [-1, 3]])
    out = data.one_hot(labels, 3, dtype)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, data.one_hot(labels, 3).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, ">i4", np.complex64, "V8"])
def test_one_hot_still_refuses_other_dtypes(dtype):
    with pytest.raises(TypeError, match=r"data\.one_hot: dtype must be float32, float64, an "
                                        r"integer or bool dtype"):
        data.one_hot([0, 1], 2, dtype)


@pytest.mark.parametrize("dtype", ["int32", "bool", "uint8"])
def test_one_hot_integer_dtypes_match_jax(dtype):
    jax = pytest.importorskip("jax")
    labels = np.array([0, 2, -1, 3, 1])
    want = np.asarray(jax.nn.one_hot(labels, 3, dtype=dtype))
    got = data.one_hot(labels, 3, dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------- lists into the losses

ROWS = [[0.1, 0.2], [0.3, 0.4]]


def test_a_list_pred_beside_a_float32_target_stays_float32():
    target = np.zeros((2, 2), np.float32)
    value, pullback = losses.mse.vjp(ROWS, target)
    g = pullback(1.0)
    assert g.dtype == np.float32
    want, pb = losses.mse.vjp(np.array(ROWS, np.float32), target)
    assert value == want
    np.testing.assert_array_equal(g, pb(1.0))


def test_two_lists_are_float32_as_jnp_asarray():
    _, pullback = losses.huber.vjp(ROWS, [[0.0, 0.0], [1.0, 1.0]])
    assert pullback(1.0).dtype == np.float32
    _, pullback = losses.softmax_cross_entropy.vjp(ROWS, [0, 1])
    assert pullback(1.0).dtype == np.float32


def test_a_list_in_a_pair_takes_the_other_arrays_dtype():
    for dt in (np.float32, np.float64):
        _, pullback = losses.margin_ranking.vjp(([0.1, 0.2], np.zeros(2, dt)), np.ones(2))
        d1, d2 = pullback(1.0)
        assert d1.dtype == d2.dtype == dt


def test_float64_arrays_and_numpy_floats_keep_float64():
    _, pullback = losses.mse.vjp(np.array(ROWS), np.zeros((2, 2)))
    assert pullback(1.0).dtype == np.float64
    _, pullback = losses.mse.vjp([np.float64(0.5)], np.zeros(1))  # NumPy's float64 asks for it
    assert pullback(1.0).dtype == np.float64
