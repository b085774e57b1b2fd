"""Evaluation metrics with scikit-learn's semantics (``sklearn.metrics``), NumPy only.

Labels are integers ``0 .. K-1`` (NumPy arrays or lists; bools count as 0/1); scores and
probabilities are float32 or float64. Every function is one vectorised pass over the
examples (``np.bincount`` for the per-class counts), returns a Python float for a scalar
result and a float64 (or int64 counts) array for a per-class one.

Where funcdl differs from scikit-learn: classes are the integers ``0 .. K-1`` (sklearn's
``labels=range(K)``) rather than whatever values appear; an empty input, ROC AUC with a
single class in ``y_true``, ``top_k_accuracy`` with k above the number of classes, and
``log_loss`` rows of probabilities that do not sum to 1 raise ValueError (sklearn raises
for the empty input, and for the others warns and returns NaN, 1.0 or the loss).

The calibration metrics ``brier_score`` (sklearn's ``brier_score_loss``) and
``calibration_error`` (the ECE; torchmetrics' ``calibration_error``) check their
probabilities as ``log_loss`` does.

For a CTC model, ``ctc_greedy_decode`` (best-path decoding) and ``edit_distance``
(Levenshtein distances of a batch of padded label rows), in ``funcdl._sequence_metrics``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import int_arg, number, real_arg
from funcdl._calibration import brier_score, calibration_error
from funcdl._jaccard import jaccard_index, without_ignored
from funcdl._metric_args import columns as _columns
from funcdl._metric_args import labels as _labels
from funcdl._metric_args import nanaverage as _nanaverage
from funcdl._metric_args import numbers as _array
from funcdl._metric_args import one_column as _one_column
from funcdl._metric_args import probabilities as _probabilities
from funcdl._metric_args import same_length as _same_length
from funcdl._metric_args import scores as _scores
from funcdl._sequence_metrics import ctc_greedy_decode, edit_distance

__all__ = ["accuracy", "brier_score", "calibration_error", "confusion_matrix",
           "ctc_greedy_decode", "edit_distance", "jaccard_index", "log_loss",
           "precision_recall_f1", "roc_auc", "top_k_accuracy"]

_AVERAGES = ("macro", "micro", "weighted", "binary", None)
_NORMALIZE = (None, "true", "pred", "all")


_MAX_CLASSES = 2**15  # a confusion matrix of 2**30 counts, 8 GiB: past it, labels are ids
_MAX_COUNTS = 2**24  # per-class count vectors of 128 MiB each


_RAISE_K = " or raise num_classes"
_ARGMAX = "the predicted class (the argmax of each row) is undefined"
_THRESHOLD = "the prediction (score > threshold) is undefined"
_BINARY_SCORES = ("; scores (N,) predict 0 or 1 by the threshold: pass scores (N, C) with a "
                  "column per class for more classes")


def _num_classes(fn: str, num_classes: Any) -> int | None:
    if num_classes is None:
        return None
    return int_arg(num_classes, f"metrics.{fn}", "num_classes", 1)


def accuracy(y_true: Any, y_pred_or_scores: Any, *, threshold: float = 0.5) -> float:
    """The fraction of examples predicted right: ``mean(pred == y_true)``.

    ``y_pred_or_scores``: integer labels (N,); scores or probabilities (N, C), whose argmax
    (the first on ties, as ``np.argmax``) is the prediction; or float scores (N,) for a
    binary task, predicting 1 where ``p > threshold``, p the probability of class 1: the
    scores themselves when they all lie in [0, 1], else their sigmoid, as logits
    (torchmetrics' rule for ``BinaryAccuracy``).
    """
    fn = "accuracy"
    p = _array(y_pred_or_scores, fn, "y_pred_or_scores")
    _one_column(fn, "y_pred_or_scores", p, "pass y_pred_or_scores[:, 0], of shape (N,): float "
                "scores (N,) predict 1 where score > threshold")
    if p.ndim == 2:
        pred = np.argmax(_scores(p, fn, "y_pred_or_scores", (2,), _ARGMAX), axis=1)
        t = _labels(y_true, fn, "y_true", p.shape[1], _columns(p.shape[1]))
    elif p.ndim == 1 and p.dtype.kind == "f":
        cut = real_arg(threshold, f"metrics.{fn}", "threshold",
                       fix="; pass e.g. threshold=0.5 for probabilities")
        s = _scores(p, fn, "y_pred_or_scores", (1,), _THRESHOLD)
        if (s < 0).any() or (s > 1).any():  # logits: sigmoid(s) = (1 + tanh(s/2))/2, no overflow
            s = 0.5 * (1.0 + np.tanh(0.5 * s))
        pred = (s > cut).astype(np.int64)
        t = _labels(y_true, fn, "y_true", 2, _BINARY_SCORES)
    elif p.ndim == 1:
        pred = _labels(p, fn, "y_pred_or_scores")
        t = _labels(y_true, fn, "y_true")
    else:
        raise ValueError(f"metrics.{fn}: y_pred_or_scores must have shape (N,) (labels, or "
                         f"binary scores) or (N, C) (scores), got shape {p.shape}; pass one "
                         "label or one row of scores per example")
    _same_length(fn, t, pred, "y_true and y_pred_or_scores")
    return float(np.mean(t == pred))


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """The fraction of examples whose true class is among the ``k`` highest scores.

    ``scores`` (N, C), ``y_true`` (N,) in ``0 .. C-1``. Ties as sklearn's
    ``top_k_accuracy_score``: among equal scores the higher class index ranks first, so
    class t is a hit iff ``#{j: s_j > s_t} + #{j > t: s_j == s_t} < k``.
    """
    fn = "top_k_accuracy"
    s = _scores(scores, fn, "scores", (2,))
    _one_column(fn, "scores", s, "pass scores (N, 2) with a column per class, or use "
                "metrics.accuracy(y_true, scores[:, 0]), which predicts 1 where score > "
                "threshold")
    c = s.shape[1]
    k = int_arg(k, f"metrics.{fn}", "k", 1)
    if k > c:
        raise ValueError(f"metrics.{fn}: k must be an int in 1 .. C = {c} (the number of "
                         f"score columns), got {k!r}; pass a smaller k")
    t = _labels(y_true, fn, "y_true", c, _columns(c))
    _same_length(fn, t, s, "y_true and scores")
    st = np.take_along_axis(s, t[:, None], axis=1)
    above = (s > st).sum(axis=1)
    # sklearn sorts stably then reverses, so of tied classes the higher index comes first
    tied_after = ((s == st) & (np.arange(c) > t[:, None])).sum(axis=1)
    return float(np.mean(above + tied_after < k))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None,
                     normalize: str | None = None, *,
                     ignore_index: int | None = None) -> NDArray[Any]:
    """The (K, K) matrix whose entry [i, j] counts examples of true class i predicted j.

    K is ``num_classes`` or ``max(y_true, y_pred) + 1``. ``normalize``: None (int64
    counts), ``'true'`` (each row over its sum), ``'pred'`` (each column over its sum),
    ``'all'`` (over N); a row or column of zeros stays 0, as sklearn's. ``ignore_index``
    (torchmetrics'): examples whose true label it is are not counted, e.g. 255 for the
    unlabelled pixels of a segmentation's flattened label map.
    """
    fn = "confusion_matrix"
    if normalize not in _NORMALIZE:
        raise ValueError(f"metrics.{fn}: normalize must be one of {_NORMALIZE}, got "
                         f"{normalize!r}; pass e.g. normalize='true' for per-class recall")
    k = _num_classes(fn, num_classes)
    if k is not None and k > _MAX_CLASSES:
        raise ValueError(f"metrics.{fn}: num_classes={k} would need a {k} x {k} matrix of "
                         f"counts (at most {_MAX_CLASSES} classes); pass the number of classes "
                         f"the labels take")
    y_true, y_pred = without_ignored(fn, y_true, y_pred, ignore_index)
    t = _labels(y_true, fn, "y_true", k, _RAISE_K)
    p = _labels(y_pred, fn, "y_pred", k, _RAISE_K)
    _same_length(fn, t, p, "y_true and y_pred")
    if k is None:
        k = int(max(t.max(), p.max())) + 1 if t.size else 0
    if k > _MAX_CLASSES:  # K x K counts: a stray label of 1e5 would ask for 80 GB
        raise ValueError(f"metrics.{fn}: labels run to {k - 1}, a {k} x {k} matrix; labels "
                         f"must be 0..K-1: map yours with np.unique(labels, "
                         f"return_inverse=True)[1]")
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)
    if normalize is None:
        return cm
    f = cm.astype(np.float64)
    if normalize == "all":
        out: NDArray[np.float64] = f / f.sum()
        return out
    axis = 1 if normalize == "true" else 0
    den = f.sum(axis=axis, keepdims=True)
    out = np.zeros_like(f)
    np.divide(f, den, out=out, where=den != 0)
    return out


def _divide(num: NDArray[Any], den: NDArray[Any], zero_division: float) -> NDArray[Any]:
    out = np.full(num.shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(y_true: Any, y_pred: Any, average: str | None = "macro", *,
                        zero_division: float = 0.0, num_classes: int | None = None,
                        pos_label: int = 1) -> tuple[Any, ...]:
    """Precision tp/(tp+fp), recall tp/(tp+fn) and F1 2tp/(2tp+fp+fn), per class or averaged.

    sklearn's ``precision_recall_fscore_support``: a ratio with denominator 0 is
    ``zero_division`` (0.0, 1.0 or nan). ``average``: ``'macro'`` (the plain mean over
    classes, nan ones skipped), ``'weighted'`` (weighted by each class's support, the count
    in y_true), ``'micro'`` (from tp, fp, fn summed over classes), ``'binary'`` (class
    ``pos_label`` only; labels must be 0/1) -> three floats; None -> per-class (K,) float64
    precision, recall, f1 and int64 support. The classes averaged over are those present in
    y_true or y_pred (sklearn's default), or all ``0 .. num_classes-1`` if it is given.
    """
    fn = "precision_recall_f1"
    if average not in _AVERAGES:
        raise ValueError(f"metrics.{fn}: average must be one of {_AVERAGES}, got "
                         f"{average!r}; pass e.g. average='macro'")
    zd = number(zero_division)
    if not isinstance(zd, (int, float, np.integer, np.floating)) or isinstance(zd, bool) or not (
            zd in (0.0, 1.0) or math.isnan(zd)):
        raise ValueError(f"metrics.{fn}: zero_division must be 0.0, 1.0 or nan, got {zd!r}; "
                         "pass the value a ratio with denominator 0 should take")
    zd = float(zd)
    k = _num_classes(fn, num_classes)
    if average == "binary":
        if not (isinstance(pos_label, (int, float, np.number)) and pos_label in (0, 1)):
            raise ValueError(f"metrics.{fn}: pos_label must be 0 or 1 with average='binary', "
                             f"got {pos_label!r}; pass pos_label=1")
        pos_label = int(pos_label)  # True and 1.0 as sklearn takes them, and as an index
        k = None  # the 0/1 check below says more than a range error would
    t = _labels(y_true, fn, "y_true", k, _RAISE_K)
    p = _labels(y_pred, fn, "y_pred", k, _RAISE_K)
    _same_length(fn, t, p, "y_true and y_pred")
    if average == "binary" and max(t.max(), p.max()) > 1:
        raise ValueError(f"metrics.{fn}: average='binary' needs 0/1 labels, got labels up to "
                         f"{max(t.max(), p.max())}; pass average='macro' (or 'micro', "
                         "'weighted', None) for multiclass")
    kk = 2 if average == "binary" else k if k is not None else int(max(t.max(), p.max())) + 1
    if kk > _MAX_COUNTS:  # three count vectors of kk int64: a stray id of 2**40 asks TiBs
        raise ValueError(f"metrics.{fn}: labels run to {kk - 1}, {kk} classes' counts; labels "
                         f"must be 0..K-1 (at most {_MAX_COUNTS} classes): map yours with "
                         f"np.unique(labels, return_inverse=True)[1]")
    true_sum = np.bincount(t, minlength=kk)
    pred_sum = np.bincount(p, minlength=kk)
    tp = np.bincount(t[t == p], minlength=kk)
    if average is None:
        prec, rec, f1 = _prf(tp, pred_sum, true_sum, zd)
        return prec, rec, f1, true_sum.astype(np.int64)
    if average == "binary":
        sel = np.array([pos_label])
    elif num_classes is None:
        sel = np.flatnonzero((true_sum > 0) | (pred_sum > 0))
    else:
        sel = np.arange(kk)
    tp, pred_sum, true_sum = tp[sel], pred_sum[sel], true_sum[sel]
    if average == "micro":
        tp, pred_sum, true_sum = tp.sum(keepdims=True), pred_sum.sum(keepdims=True), \
            true_sum.sum(keepdims=True)
    prec, rec, f1 = _prf(tp, pred_sum, true_sum, zd)
    w = true_sum if average == "weighted" else None
    return _nanaverage(prec, w), _nanaverage(rec, w), _nanaverage(f1, w)


def _prf(tp: NDArray[Any], pred_sum: NDArray[Any], true_sum: NDArray[Any],
         zd: float) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    return (_divide(tp, pred_sum, zd), _divide(tp, true_sum, zd),
            _divide(2 * tp, true_sum + pred_sum, zd))


def roc_auc(y_true: Any, scores: Any) -> float:
    """Binary ROC AUC: P(score of a positive > score of a negative), ties counted half.

    ``y_true`` (N,) of 0/1, ``scores`` (N,). The Mann-Whitney U over n1 positives and n0
    negatives with average ranks for ties: ``(sum of positive ranks - n1(n1+1)/2)/(n1 n0)``,
    equal to sklearn's ``roc_auc_score`` (the trapezoid area under the ROC curve).
    """
    fn = "roc_auc"
    s = _scores(scores, fn, "scores", (1,))
    t = _labels(y_true, fn, "y_true", 2, "; roc_auc is binary: pass y_true == positive_class "
                "(0/1), or one-vs-rest columns of scores one at a time")
    _same_length(fn, t, s, "y_true and scores")
    n1 = int(t.sum())
    n0 = t.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError(f"metrics.{fn}: y_true holds only class {int(t[0])} ({t.size} "
                         "examples); ROC AUC needs both 0 and 1 (sklearn warns and returns "
                         "nan): pass examples of both classes")
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    # a tie group occupying ranks start+1 .. start+count gets their mean, start + (count+1)/2
    start = np.cumsum(counts) - counts
    ranks = (start + (counts + 1) / 2.0)[inv.reshape(-1)]
    return float((ranks[t == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def log_loss(y_true: Any, probs: Any, eps: float | None = None) -> float:
    """The mean negative log-probability of the true class: ``-mean(log p[n, y_n])``.

    ``probs`` (N, C) rows of class probabilities, or (N,) the probability of class 1;
    clipped to ``[eps, 1 - eps]``, ``eps=None`` being ``finfo(probs.dtype).eps`` (sklearn's).
    Rows of (N, C) must sum to 1 within sqrt(eps) of float32 (of float16 for float16
    probs), where sklearn warns past float64's.
    """
    fn = "log_loss"
    t, p, _ = _probabilities(fn, y_true, probs,
                             "the log-probability is undefined (sklearn raises too)")
    if eps is None:
        eps = float(np.finfo(p.dtype).eps)
    eps = real_arg(eps, f"metrics.{fn}", "eps", low=0.0, open_low=True, high=0.5,
                   open_high=True,
                   fix="; pass e.g. eps=1e-15, or None for the dtype's machine epsilon")
    pt = np.clip(np.take_along_axis(p, t[:, None], axis=1)[:, 0], eps, 1.0 - eps)
    return float(-np.mean(np.log(pt.astype(np.float64))))
