"""Adversarial review of funcdl.metrics against sklearn.metrics (and torchmetrics' documented
rules where sklearn has none).

Tests marked ``# DEFECT:`` failed on the reviewed code (funcdl/metrics.py at 0aec03e) and
pass since the fixes that followed; the others pin behaviour found correct. sklearn
cross-checks skip where sklearn is not installed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from funcdl import metrics


def _skm():
    pytest.importorskip("sklearn")
    return pytest.importorskip("sklearn.metrics")


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


# ---------------------------------------------------------------------------------------
# Defects
# ---------------------------------------------------------------------------------------


def test_accuracy_zero_column_scores_named_error():
    # DEFECT: accuracy(y, scores of shape (N, 0)) leaks NumPy's "attempt to get argmax of
    # an empty sequence", which names neither metrics.accuracy nor the argument: the argmax
    # is taken before y_true is checked against C = 0 columns.
    with pytest.raises(ValueError, match=r"metrics\.accuracy"):
        metrics.accuracy([0, 1, 2], np.zeros((3, 0)))


def test_log_loss_zero_column_probs_message():
    # DEFECT: log_loss(y, probs of shape (N, 0)) says y_true "must be class indices in
    # 0 .. -1": an impossible range, instead of saying probs has no columns.
    with pytest.raises(ValueError, match=r"metrics\.log_loss") as e:
        metrics.log_loss([0, 1, 2], np.zeros((3, 0)))
    assert "0 .. -1" not in str(e.value)


def test_confusion_matrix_big_num_classes_message_names_num_classes():
    # DEFECT: with labels 0/1 and num_classes=100_000 the error reads "labels run to
    # 99999, a 100000 x 100000 matrix; labels must be 0..K-1: map yours with np.unique":
    # the labels are fine, it is the num_classes argument that is too large, and the
    # message never mentions it.
    with pytest.raises(ValueError, match=r"metrics\.confusion_matrix") as e:
        metrics.confusion_matrix([0, 1], [0, 1], num_classes=100_000)
    assert "num_classes" in str(e.value)


def test_precision_recall_f1_stray_large_label_is_refused_cleanly():
    # DEFECT: precision_recall_f1 has no cap on the class count that confusion_matrix has
    # (_MAX_CLASSES): one stray label (an id) sizes np.bincount(minlength=label+1): 2**40
    # asks for 8 TiB (a bare MemoryError naming nothing), 2**60 gives NumPy's "array is too
    # big", and a label near 1e8-1e9 silently allocates gigabytes. 2**60 is used here as it
    # fails before allocating anything, whatever the machine's overcommit setting.
    with pytest.raises(ValueError, match=r"metrics\.precision_recall_f1"):
        metrics.precision_recall_f1([0, 2**60], [0, 0])


def test_log_loss_rows_not_summing_to_one_are_flagged():
    # DEFECT: sklearn.metrics.log_loss warns "The y_prob values do not sum to one. Make sure
    # to pass probabilities." (rtol sqrt(eps)); funcdl, which claims sklearn's semantics,
    # silently returns a number for rows like [0.9, 0.9] (per-class sigmoids, or scores
    # that happen to lie in [0, 1]): a silent wrong answer. Either a warning or a
    # ValueError would do.
    probs = np.array([[0.9, 0.9], [0.2, 0.3]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            metrics.log_loss([0, 1], probs)
        except ValueError:
            return
    assert any("sum" in str(w.message) for w in caught), "unnormalised probs not flagged"


def test_accuracy_binary_logits_follow_torchmetrics_rule_as_documented():
    # DEFECT: accuracy's docstring says 1-D float scores predict 1 "where score > threshold
    # (torchmetrics' rule)", but torchmetrics' documented rule is: a float preds tensor with
    # values outside [0, 1] is logits and gets a sigmoid before the threshold. On logits
    # funcdl thresholds at 0.5 instead of 0, silently: here 2/3 instead of 1.0.
    y = np.array([1, 1, 0])
    logits = np.array([0.3, 2.0, -1.0])  # sigmoid: 0.574, 0.881, 0.269
    assert metrics.accuracy(y, logits) == 1.0


@pytest.mark.parametrize("fn", [metrics.precision_recall_f1, metrics.confusion_matrix])
def test_float_probability_y_pred_error_does_not_advise_truncation(fn):
    # DEFECT: passing probabilities as y_pred gives "cast with y_pred.astype(int) (or pass
    # scores where scores go)": astype(int) truncates every probability in [0, 1) to class 0,
    # a silent wrong answer, and these functions take no scores anywhere. The message
    # should say to threshold or argmax (e.g. (p > 0.5).astype(int), p.argmax(axis=1)).
    with pytest.raises(TypeError) as e:
        fn([0, 1, 1], [0.3, 0.7, 0.9])
    assert "astype(int)" not in str(e.value) or "argmax" in str(e.value)


def test_roc_auc_two_column_scores_message_points_at_the_positive_column():
    # DEFECT: roc_auc(y, predict_proba-style (N, 2) scores) says "pass one row of scores
    # per example", which is what was passed; the fix is a column, scores[:, 1].
    with pytest.raises(ValueError, match=r"metrics\.roc_auc") as e:
        metrics.roc_auc([0, 1], [[0.9, 0.1], [0.2, 0.8]])
    assert "[:, 1]" in str(e.value) or "column" in str(e.value)


# ---------------------------------------------------------------------------------------
# Behaviour found correct
# ---------------------------------------------------------------------------------------


def test_roc_auc_ties_and_dtypes_match_sklearn():
    skm = _skm()
    rng = np.random.default_rng(0)
    n = 301
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    cases = [
        rng.integers(0, 3, n).astype(np.float32) / 3,  # heavy ties, float32
        rng.integers(-2, 3, n),  # int scores
        rng.integers(0, 2, n).astype(bool),  # bool scores
        np.where(rng.random(n) < 0.5, -0.0, 0.0),  # -0.0 ties +0.0
        np.where(rng.random(n) < 0.2, np.inf, rng.normal(size=n)),  # infinities
        np.full(n, 0.25),  # all tied -> 0.5
    ]
    for s in cases:
        # sklearn refuses inf; a finite stand-in above every other score keeps the ranks
        want = skm.roc_auc_score(y, np.where(np.isinf(s), 1e30, s) if s.dtype.kind == "f"
                                 else s)
        assert metrics.roc_auc(y.astype(bool), s) == pytest.approx(want, abs=1e-12)


def test_roc_auc_single_class_raises_as_documented():
    with pytest.raises(ValueError, match=r"metrics\.roc_auc.*only class 1"):
        metrics.roc_auc([1, 1], [0.1, 0.2])


def test_top_k_ties_match_sklearn():
    skm = _skm()
    rng = np.random.default_rng(1)
    n, c = 200, 5
    y = rng.integers(0, c, n)
    s = rng.integers(0, 3, (n, c)).astype(np.float32)
    s[s == 0] = np.where(rng.random((s == 0).sum()) < 0.5, -0.0, 0.0)
    s[:5, 0] = np.inf
    for k in range(1, c + 1):
        want = _quiet(skm.top_k_accuracy_score, y, np.where(np.isinf(s), 1e30, s), k=k,
                      labels=np.arange(c))  # sklearn refuses inf: a rank-keeping stand-in
        assert metrics.top_k_accuracy(y, s, k=k) == pytest.approx(want, abs=1e-12)


def test_top_k_k_above_c_raises_named():
    with pytest.raises(ValueError, match=r"metrics\.top_k_accuracy.*k"):
        metrics.top_k_accuracy([0, 1], [[0.1, 0.9], [0.8, 0.2]], k=3)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
def test_prf_absent_classes_and_label_dtypes_match_sklearn(average, zero_division):
    skm = _skm()
    # class 2 only predicted, class 3 only true, class 4 in neither (num_classes=5)
    y = np.array([0, 0, 1, 1, 3, 3], dtype=np.uint8)
    p = np.array([0, 1, 1, 2, 0, 2], dtype=np.int64)
    for num_classes, labels in ((None, None), (5, np.arange(5))):
        if average is None and num_classes is None:
            labels = np.arange(4)
        got = metrics.precision_recall_f1(y, p.tolist(), average, zero_division=zero_division,
                                          num_classes=num_classes)
        want = _quiet(skm.precision_recall_fscore_support, y, p, average=average,
                      labels=labels, zero_division=zero_division)
        for g, w in zip(got, want):
            if w is not None:
                np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
@pytest.mark.parametrize("pos_label", [0, 1])
def test_prf_binary_bool_labels_match_sklearn(zero_division, pos_label):
    skm = _skm()
    for y, p in (([False, False, True], [False, False, False]), ([0, 0], [0, 0]),
                 ([1, 0, 1, 1], [1, 1, 0, 1])):
        got = metrics.precision_recall_f1(np.array(y), np.array(p), "binary",
                                          zero_division=zero_division, pos_label=pos_label)
        want = _quiet(skm.precision_recall_fscore_support, np.array(y, dtype=int),
                      np.array(p, dtype=int), average="binary", labels=[0, 1],
                      pos_label=pos_label, zero_division=zero_division)
        np.testing.assert_allclose(got, want[:3], rtol=0, atol=1e-12)
        assert all(type(v) is float for v in got)


def test_prf_per_class_dtypes():
    prec, rec, f1, sup = metrics.precision_recall_f1([0, 1, 1], [0, 1, 0], None)
    assert prec.dtype == rec.dtype == f1.dtype == np.float64 and sup.dtype == np.int64
    np.testing.assert_array_equal(sup, [1, 2])


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_bool_labels_and_empty_rows_match_sklearn(normalize):
    skm = _skm()
    y = np.array([True, True, False, True])
    p = np.array([True, True, True, True])
    got = metrics.confusion_matrix(y, p, num_classes=3, normalize=normalize)
    want = _quiet(skm.confusion_matrix, y.astype(int), p.astype(int), labels=[0, 1, 2],
                  normalize=normalize)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got.dtype == (np.int64 if normalize is None else np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_loss_clipping_and_dtypes_match_sklearn(dtype):
    skm = _skm()
    y = np.array([0, 1, 2, 2])
    p = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]],
                 dtype=dtype)
    want = skm.log_loss(y, p, labels=[0, 1, 2])
    rel = 1e-6 if dtype is np.float32 else 1e-12  # sklearn takes the log in float32
    assert metrics.log_loss(y, p) == pytest.approx(want, rel=rel)
    yb = np.array([0, 1, 1, 0])
    pb = np.array([0.0, 1.0, 0.3, 0.99], dtype=dtype)
    want = skm.log_loss(yb, pb, labels=[0, 1])
    assert metrics.log_loss(yb, pb) == pytest.approx(want, rel=rel)


def test_log_loss_refuses_logits():
    with pytest.raises(ValueError, match=r"metrics\.log_loss.*\[0, 1\].*softmax"):
        metrics.log_loss([0, 1], [[2.0, -1.0], [0.5, 0.7]])


def test_accuracy_binary_probability_threshold_is_strict_and_labels_path():
    # probabilities: predict 1 where p > 0.5 (0.5 itself is class 0)
    assert metrics.accuracy([0, 1, 1], np.array([0.5, 0.51, 0.9], np.float32)) == 1.0
    assert metrics.accuracy([0, 1, 1], [0.2, 0.4, 0.9], threshold=0.3) == 1.0
    # bool predictions take the label path, not the threshold
    assert metrics.accuracy(np.array([0, 1, 1]), np.array([False, True, False])) == \
        pytest.approx(2 / 3)
    # one-hot integer predictions (N, C) are read by their argmax
    assert metrics.accuracy([2, 0], np.eye(3, dtype=int)[[2, 0]]) == 1.0


def test_accuracy_one_column_scores_refused():
    with pytest.raises(ValueError, match=r"metrics\.accuracy.*one column"):
        metrics.accuracy([0, 1], [[0.2], [0.9]])


@pytest.mark.parametrize("call", [
    lambda: metrics.accuracy([], []),
    lambda: metrics.top_k_accuracy([], np.zeros((0, 3)), k=1),
    lambda: metrics.confusion_matrix([], []),
    lambda: metrics.precision_recall_f1([], []),
    lambda: metrics.roc_auc([], []),
    lambda: metrics.log_loss([], np.zeros((0, 2))),
])
def test_empty_inputs_raise_named(call):
    with pytest.raises(ValueError, match=r"metrics\.\w+: .*empty"):
        call()


@pytest.mark.parametrize("call", [
    lambda: metrics.accuracy([0, 1], [[np.nan, 1.0], [0.0, 1.0]]),
    lambda: metrics.accuracy([0, 1], [np.nan, 0.7]),
    lambda: metrics.top_k_accuracy([0, 1], [[np.nan, 1.0], [0.0, 1.0]], k=1),
    lambda: metrics.roc_auc([0, 1], [np.nan, 0.7]),
    lambda: metrics.log_loss([0, 1], [np.nan, 0.7]),
])
def test_nan_scores_raise_named(call):
    with pytest.raises(ValueError, match=r"metrics\.\w+: .*NaN"):
        call()


@pytest.mark.parametrize("call", [
    lambda: metrics.accuracy(["a", "b"], ["a", "b"]),
    lambda: metrics.confusion_matrix(np.array([0, 1], dtype=object), [0, 1]),
    lambda: metrics.roc_auc([0.0, 1.0], [0.1, 0.9]),
    lambda: metrics.precision_recall_f1([0, -1], [0, 1]),
])
def test_bad_label_dtypes_and_values_raise_named(call):
    with pytest.raises((TypeError, ValueError), match=r"metrics\.\w+: y_"):
        call()


def test_one_hot_targets_refused_with_shape():
    with pytest.raises(ValueError, match=r"metrics\.accuracy: y_true must be 1-D.*\(2, 2\)"):
        metrics.accuracy(np.eye(2, dtype=int), [[0.9, 0.1], [0.2, 0.8]])


def test_scalar_results_are_python_floats():
    y, s = [0, 1, 2, 1], np.eye(3)[[0, 1, 2, 2]]
    results = [
        metrics.accuracy(y, s),
        metrics.top_k_accuracy(y, s, k=2),
        metrics.log_loss(y, s),
        metrics.roc_auc([0, 1, 1, 0], [0.1, 0.8, 0.5, 0.5]),
        *metrics.precision_recall_f1(y, [0, 1, 2, 2], "weighted"),
    ]
    assert all(type(r) is float for r in results)
