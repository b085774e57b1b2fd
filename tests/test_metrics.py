"""funcdl.metrics on small cases worked out by hand, and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import metrics

# true [0 0 1 2 2 2], pred [0 1 1 2 0 2]: tp (1, 1, 2), predicted (2, 2, 2), true (2, 1, 3)
Y_TRUE = [0, 0, 1, 2, 2, 2]
Y_PRED = [0, 1, 1, 2, 0, 2]


def test_accuracy_labels_scores_and_threshold():
    assert metrics.accuracy([0, 1, 2, 1], np.array([0, 2, 2, 1])) == 0.75
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    out = metrics.accuracy([0, 1, 1], scores)
    assert type(out) is float and out == pytest.approx(2 / 3)
    # ties go to the first column, as np.argmax
    assert metrics.accuracy([0], [[0.5, 0.5]]) == 1.0
    # a score equal to the threshold predicts 0 (torchmetrics' `>`)
    probs = np.array([0.2, 0.5, 0.7])
    assert metrics.accuracy([0, 0, 1], probs) == 1.0
    assert metrics.accuracy([0, 0, 1], probs, threshold=0.1) == pytest.approx(1 / 3)


def test_top_k_basic():
    s = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]])
    assert metrics.top_k_accuracy([1, 2, 0], s, k=1) == pytest.approx(1 / 3)
    # row 3: class 0 ties class 1, which ranks first, and 0.4 beats both: rank 3
    assert metrics.top_k_accuracy([1, 2, 0], s, k=2) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy([1, 2, 0], s, k=3) == 1.0


def test_top_k_ties_rank_the_higher_index_first():
    # three classes tied at 0.5: sklearn's order among them is 2, 1, 0, so with k=2
    # class 0 misses and class 2 hits (lower-index-first would give 2/3, ties-as-hits 1)
    s = np.tile([0.5, 0.5, 0.5, 0.1], (3, 1))
    assert metrics.top_k_accuracy([0, 0, 2], s, k=2) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy([1], s[:1], k=2) == 1.0
    assert metrics.top_k_accuracy([1], s[:1], k=1) == 0.0


def test_confusion_matrix_rows_are_true_classes():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.dtype == np.int64
    cm4 = metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4)
    assert cm4.shape == (4, 4) and cm4[3].sum() == 0 and cm4[:, 3].sum() == 0


def test_confusion_matrix_normalize():
    t = metrics.confusion_matrix(Y_TRUE, Y_PRED, normalize="true")
    np.testing.assert_allclose(t, [[.5, .5, 0], [0, 1, 0], [1 / 3, 0, 2 / 3]], rtol=1e-15)
    p = metrics.confusion_matrix(Y_TRUE, Y_PRED, normalize="pred")
    np.testing.assert_allclose(p, [[.5, .5, 0], [0, .5, 0], [.5, 0, 1]], rtol=1e-15)
    a = metrics.confusion_matrix(Y_TRUE, Y_PRED, normalize="all")
    np.testing.assert_allclose(a, np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]]) / 6, rtol=1e-15)
    # an empty row (class 3 never true) stays 0, not NaN
    t4 = metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4, normalize="true")
    assert np.isfinite(t4).all() and t4[3].sum() == 0


def test_prf_per_class():
    p, r, f, s = metrics.precision_recall_f1(Y_TRUE, Y_PRED, average=None)
    np.testing.assert_allclose(p, [.5, .5, 1], rtol=1e-15)
    np.testing.assert_allclose(r, [.5, 1, 2 / 3], rtol=1e-15)
    np.testing.assert_allclose(f, [.5, 2 / 3, .8], rtol=1e-15)
    np.testing.assert_array_equal(s, [2, 1, 3])


def test_prf_macro_weighted_micro_differ():
    mac = metrics.precision_recall_f1(Y_TRUE, Y_PRED, "macro")
    np.testing.assert_allclose(mac, [2 / 3, 13 / 18, 59 / 90], rtol=1e-14)
    wei = metrics.precision_recall_f1(Y_TRUE, Y_PRED, "weighted")
    np.testing.assert_allclose(wei, [3 / 4, 2 / 3, 61 / 90], rtol=1e-14)
    mic = metrics.precision_recall_f1(Y_TRUE, Y_PRED, "micro")
    np.testing.assert_allclose(mic, [2 / 3] * 3, rtol=1e-14)
    assert all(type(v) is float for v in mac + wei + mic)


def test_prf_binary_is_not_symmetric_in_true_and_pred():
    # tp 2, fp 0, fn 1: precision 1, recall 2/3 (swapped arguments would give 2/3, 1)
    out = metrics.precision_recall_f1([1, 1, 0, 0, 1], [1, 0, 0, 0, 1], "binary")
    np.testing.assert_allclose(out, [1.0, 2 / 3, 0.8], rtol=1e-15)
    out0 = metrics.precision_recall_f1([1, 1, 0, 0, 1], [1, 0, 0, 0, 1], "binary",
                                       pos_label=0)
    np.testing.assert_allclose(out0, [2 / 3, 1.0, 0.8], rtol=1e-15)


def test_prf_zero_division_and_absent_classes():
    p, r, f, s = metrics.precision_recall_f1([0, 0], [0, 0], None, num_classes=2,
                                             zero_division=1.0)
    np.testing.assert_array_equal(p, [1, 1])
    np.testing.assert_array_equal(s, [2, 0])
    p, r, f, s = metrics.precision_recall_f1([0, 0], [0, 0], None, num_classes=2)
    np.testing.assert_array_equal(r, [1, 0])
    np.testing.assert_array_equal(f, [1, 0])
    # class 1 appears nowhere: left out of the macro mean unless num_classes asks for it
    assert metrics.precision_recall_f1([0, 2], [0, 2])[0] == 1.0
    assert metrics.precision_recall_f1([0, 2], [0, 2], num_classes=3)[0] == pytest.approx(2 / 3)
    # zero_division=nan entries are skipped by the mean
    out = metrics.precision_recall_f1([0, 2], [0, 2], num_classes=3, zero_division=math.nan)
    assert out == (1.0, 1.0, 1.0)
    # class 0 predicted never: precision 0/0
    p, *_ = metrics.precision_recall_f1([0, 1], [1, 1], None, zero_division=math.nan)
    assert math.isnan(p[0]) and p[1] == 0.5


def test_roc_auc_closed_form_and_ties():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.6, 0.65, 0.2]) == 0.25
    # the tie 0.5 (positive) vs 0.5 (negative) counts half: 3.5 / 4
    assert metrics.roc_auc([0, 1, 0, 1], np.array([0.5, 0.5, 0.2, 0.9], np.float32)) == 0.875
    assert metrics.roc_auc([True, False, True], [3, 3, 3]) == 0.5


def test_log_loss():
    want = -(math.log(0.8) + math.log(0.6)) / 2
    assert metrics.log_loss([0, 1], [[0.8, 0.2], [0.4, 0.6]]) == pytest.approx(want, rel=1e-15)
    assert metrics.log_loss([0, 1], [0.2, 0.6]) == pytest.approx(want, rel=1e-15)
    # a probability 0 on the true class is clipped to eps, not inf
    assert metrics.log_loss([0], [[0.0, 1.0]]) == pytest.approx(-math.log(2.0 ** -52))
    assert metrics.log_loss([0], [[0.0, 1.0]], eps=1e-3) == pytest.approx(-math.log(1e-3))


BAD = [
    (metrics.accuracy, ([0, 1], [0, 1, 1]), {}, ValueError, "one entry per example"),
    (metrics.accuracy, ([0.0, 1.0], [0, 1]), {}, TypeError, "integer labels"),
    (metrics.accuracy, ([0, 2], [[0.1, 0.9], [0.3, 0.7]]), {}, ValueError, r"0 \.\. 1"),
    (metrics.accuracy, ([0], np.zeros((1, 2, 2))), {}, ValueError, "shape"),
    (metrics.accuracy, ([], []), {}, ValueError, "empty"),
    (metrics.accuracy, (["a"], ["a"]), {}, TypeError, "numbers"),
    (metrics.confusion_matrix, ([], []), {}, ValueError, "empty"),
    (metrics.top_k_accuracy, ([], np.zeros((0, 3))), {"k": 1}, ValueError, "empty"),
    (metrics.roc_auc, ([], []), {}, ValueError, "empty"),
    (metrics.top_k_accuracy, ([0], [[0.1, 0.2]]), {"k": 3}, ValueError, "k must"),
    (metrics.top_k_accuracy, ([0], [[0.1, 0.2]]), {"k": 0}, ValueError, "k must"),
    (metrics.top_k_accuracy, ([0], [0.1, 0.2]), {"k": 1}, ValueError, r"\(N, C\)"),
    (metrics.top_k_accuracy, ([0], [[np.nan, 0.2]]), {"k": 1}, ValueError, "NaN"),
    (metrics.confusion_matrix, ([0, 3], [0, 1]), {"num_classes": 3}, ValueError, r"0 \.\. 2"),
    (metrics.confusion_matrix, ([0, -1], [0, 1]), {}, ValueError, "0 or more"),
    (metrics.confusion_matrix, ([0], [0]), {"normalize": "rows"}, ValueError, "normalize"),
    (metrics.confusion_matrix, ([0], [0]), {"num_classes": 0}, ValueError, "num_classes"),
    (metrics.precision_recall_f1, ([0], [0]), {"average": "samples"}, ValueError, "average"),
    (metrics.precision_recall_f1, ([0, 2], [0, 1]), {"average": "binary"}, ValueError,
     "average='macro'"),
    (metrics.precision_recall_f1, ([0], [0]), {"zero_division": "warn"}, ValueError,
     "zero_division"),
    (metrics.precision_recall_f1, ([[0]], [[0]]), {}, ValueError, "1-D"),
    (metrics.roc_auc, ([1, 1], [0.1, 0.2]), {}, ValueError, "both 0 and 1"),
    (metrics.roc_auc, ([0, 1], [[0.1], [0.2]]), {}, ValueError, r"\(N,\)"),
    (metrics.roc_auc, ([0, 2], [0.1, 0.2]), {}, ValueError, r"0 \.\. 1"),
    (metrics.log_loss, ([0], [[1.5, -0.5]]), {}, ValueError, "softmax"),
]


@pytest.mark.parametrize(("fn", "args", "kw", "exc", "msg"), BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_the_function(fn, args, kw, exc, msg):
    with pytest.raises(exc, match=f"metrics.{fn.__name__}: ") as info:
        fn(*args, **kw)
    assert info.match(msg)


def test_inputs_are_not_written():
    s = np.array([[0.2, 0.8], [0.6, 0.4]])
    y = np.array([1, 1])
    s0, y0 = s.copy(), y.copy()
    metrics.top_k_accuracy(y, s, k=1)
    metrics.log_loss(y, s)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(y, y0)


def test_numpy_numbers_serve_as_arguments_as_everywhere_in_funcdl() -> None:
    """threshold, eps, k and num_classes through _args (np.float32(0.5) was refused as 'not
    a finite number', k=np.array(1) as 'not an int')."""
    assert metrics.accuracy([0, 1], [0.2, 0.9], threshold=np.float32(0.5)) == 1.0
    assert metrics.top_k_accuracy([1], [[0.1, 0.2]], k=np.array(1)) == 1.0
    assert metrics.confusion_matrix([0, 1], [0, 1], num_classes=np.int64(3)).shape == (3, 3)
    want = metrics.log_loss([0, 1], [0.2, 0.9], eps=1e-7)
    assert metrics.log_loss([0, 1], [0.2, 0.9], eps=np.float32(1e-7)) == pytest.approx(want)
    with pytest.raises(TypeError, match=r"metrics\.accuracy: threshold must be a real number"):
        metrics.accuracy([0, 1], [0.2, 0.9], threshold="0.5")


@pytest.mark.parametrize("pos", [True, 1.0, np.int64(1)])
def test_binary_pos_label_takes_true_and_one_point_zero_as_sklearn(pos):
    # a bare NumPy IndexError: the label was used as an index as given
    got = metrics.precision_recall_f1([0, 1, 1, 0], [0, 1, 0, 0], average="binary",
                                      pos_label=pos)
    assert got == pytest.approx((1.0, 0.5, 2 / 3))
    with pytest.raises(ValueError, match="pos_label must be 0 or 1"):
        metrics.precision_recall_f1([0, 1], [0, 1], average="binary", pos_label="1")


def test_a_confusion_matrix_of_a_huge_label_is_refused_before_allocating_it():
    # K x K from max(label) + 1: a label of 3e9 gave NumPy's bare "array is too big"
    with pytest.raises(ValueError, match=r"labels run to 3000000000.*np\.unique"):
        metrics.confusion_matrix([0, 3_000_000_000], [0, 1])
