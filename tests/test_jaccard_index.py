"""metrics.jaccard_index (per-class IoU, mIoU) and confusion_matrix's ignore_index: hand
values, sklearn's jaccard_score on random cases, a segmentation's ignored pixels, and the
errors naming the metric."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from funcdl import metrics

# true 0 0 1 1 2 2 ; pred 0 1 1 1 0 2
T = np.array([0, 0, 1, 1, 2, 2])
P = np.array([0, 1, 1, 1, 0, 2])
# class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1, fn 0 -> 2/3; class 2: tp 1, fn 1 -> 1/2
IOU = np.array([1 / 3, 2 / 3, 1 / 2])


def test_per_class_iou_by_hand():
    np.testing.assert_allclose(metrics.jaccard_index(T, P, average=None), IOU, rtol=0, atol=1e-15)


def test_averages_by_hand():
    assert metrics.jaccard_index(T, P) == pytest.approx(IOU.mean(), abs=1e-15)
    assert metrics.jaccard_index(T, P, average="weighted") == pytest.approx(
        IOU @ [2, 2, 2] / 6, abs=1e-15)
    assert metrics.jaccard_index(T, P, average="micro") == pytest.approx(4 / 8, abs=1e-15)


def test_iou_is_tp_over_union_of_the_confusion_matrix():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    cm = metrics.confusion_matrix(t, p, 5)
    tp = np.diag(cm)
    want = tp / (cm.sum(0) + cm.sum(1) - tp)
    np.testing.assert_allclose(metrics.jaccard_index(t, p, 5, None), want, rtol=0, atol=1e-15)


def test_absent_class_takes_zero_division():
    t, p = np.array([0, 0, 1]), np.array([0, 1, 1])
    iou = metrics.jaccard_index(t, p, 3, None)
    assert iou[2] == 0.0
    assert math.isnan(metrics.jaccard_index(t, p, 3, None, zero_division=math.nan)[2])
    # nan leaves class 2 out of the mean (mmsegmentation's nanmean), 0 pulls it down
    assert metrics.jaccard_index(t, p, 3, zero_division=math.nan) == pytest.approx(0.5)
    assert metrics.jaccard_index(t, p, 3) == pytest.approx(1 / 3)
    # without num_classes only the classes present count (sklearn's rule)
    assert metrics.jaccard_index(t, p) == pytest.approx(0.5)


def test_ignore_index_drops_the_unlabelled_pixels():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, (4, 8, 8))
    y[:, 0] = 255
    pred = rng.integers(0, 3, (4, 8, 8))
    keep = y != 255
    want = metrics.jaccard_index(y[keep], pred[keep], 3, None)
    got = metrics.jaccard_index(y.ravel(), pred.ravel(), 3, None, ignore_index=255)
    np.testing.assert_array_equal(got, want)
    cm = metrics.confusion_matrix(y.ravel(), pred.ravel(), 3, ignore_index=255)
    np.testing.assert_array_equal(cm, metrics.confusion_matrix(y[keep], pred[keep], 3))
    assert cm.sum() == keep.sum()


def test_ignore_index_inside_the_classes_is_left_out_of_the_mean():
    t = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    iou = metrics.jaccard_index(t, p, 3, None, ignore_index=0)
    assert math.isnan(iou[0])
    # class 1: tp 2, fp 0, fn 0; class 2: tp 1, fn 1 (predicted 0): 1/2
    np.testing.assert_allclose(iou[1:], [1.0, 0.5])
    assert metrics.jaccard_index(t, p, 3, ignore_index=0) == pytest.approx(0.75)


def test_ignore_index_may_be_negative_as_torch_default():
    t = np.array([0, -100, 1])
    p = np.array([0, 1, 1])
    assert metrics.jaccard_index(t, p, ignore_index=-100) == 1.0


@pytest.mark.parametrize("call, kwargs, exc, match", [
    (metrics.jaccard_index, {"ignore_index": None}, ValueError, r"0 \.\. 2.*ignore_index="),
    (metrics.confusion_matrix, {}, ValueError, r"0 \.\. 2"),
])
def test_an_unlabelled_255_without_ignore_index_is_refused(call, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        call([0, 255, 1], [0, 1, 2], 3, **kwargs)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((np.zeros((2, 4), int), np.zeros((2, 4), int)), {}, ValueError, r"\(2, 4\).*ravel\(\)"),
    ((T, P), {"average": "binary"}, ValueError, "average"),
    ((T, P), {"zero_division": 0.5}, ValueError, "zero_division"),
    ((T, P), {"ignore_index": 2.5}, TypeError, "ignore_index"),
    ((T, P, 0), {}, ValueError, "num_classes"),
    ((T, P[:5]), {}, ValueError, "one entry per example"),
    (([255, 255], [0, 1]), {"ignore_index": 255}, ValueError, "every example.*ignore_index"),
    (([0.5, 1.0], [0, 1]), {}, TypeError, "integer labels"),
])
def test_bad_input_names_the_metric(args, kwargs, exc, match):
    with pytest.raises(exc, match=match) as e:
        metrics.jaccard_index(*args, **kwargs)
    assert "metrics.jaccard_index" in str(e.value)


def test_against_sklearn_jaccard_score():
    skm = pytest.importorskip("sklearn.metrics")
    for seed in range(16):
        rng = np.random.default_rng(seed)
        n, c = int(rng.integers(1, 60)), int(rng.integers(2, 8))
        y = rng.choice(c, n, p=rng.dirichlet(np.full(c, 0.4)))
        pred = np.where(rng.random(n) < 0.5, y, rng.integers(0, c, n))
        for average in ("macro", "micro", "weighted", None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = skm.jaccard_score(y, pred, average=average, zero_division=0.0)
                want_all = skm.jaccard_score(y, pred, labels=np.arange(c), average=average,
                                             zero_division=0.0)
            got = metrics.jaccard_index(y, pred, average=average)
            got_all = metrics.jaccard_index(y, pred, c, average=average)
            if average is None:  # sklearn's per-class vector covers the classes present
                present = np.union1d(y, pred)
                got = got[present]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
            np.testing.assert_allclose(got_all, want_all, rtol=0, atol=1e-12)
