"""Segmentation's overlap metric, the Jaccard index (intersection over union, IoU) per
class and its mean (mIoU), and the ``ignore_index`` pixels drop, re-exported by
``funcdl.metrics``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._args import int_arg, number
from funcdl._metric_args import labels, nanaverage, numbers, same_length

_AVERAGES = ("macro", "micro", "weighted", None)
_MAX_COUNTS = 2**24  # per-class count vectors of 128 MiB each: past it, labels are ids


def without_ignored(fn: str, y_true: Any, y_pred: Any,
                    ignore_index: Any) -> tuple[Any, Any]:
    """``(y_true, y_pred)`` without the examples whose true label is ``ignore_index``
    (torchmetrics' ``ignore_index``, torch's loss one: 255 for unlabelled pixels); the
    arguments unchanged when it is None, or when they are not 1-D labels of one length,
    which the metric's own checks then refuse by name."""
    if ignore_index is None:
        return y_true, y_pred
    ig = int_arg(ignore_index, f"metrics.{fn}", "ignore_index", None)
    t = numbers(y_true, fn, "y_true", "int")
    p = numbers(y_pred, fn, "y_pred", "int")
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        return t, p
    keep = t != ig
    if not keep.any() and t.size:
        raise ValueError(f"metrics.{fn}: every example's y_true is ignore_index={ig} "
                         f"({t.size} examples); the metric is undefined: pass at least one "
                         "labelled example")
    return t[keep], p[keep]


def _zero_division(fn: str, value: Any) -> float:
    zd = number(value)
    if not isinstance(zd, (int, float, np.integer, np.floating)) or isinstance(zd, bool) or not (
            zd in (0.0, 1.0) or math.isnan(zd)):
        raise ValueError(f"metrics.{fn}: zero_division must be 0.0, 1.0 or nan, got {zd!r}; "
                         "pass the IoU of a class absent from y_true and y_pred (nan: left "
                         "out of the mean)")
    return float(zd)


def jaccard_index(y_true: Any, y_pred: Any, num_classes: int | None = None,
                  average: str | None = "macro", *, ignore_index: int | None = None,
                  zero_division: float = 0.0) -> Any:
    """Per-class intersection over union ``IoU_c = tp_c / (tp_c + fp_c + fn_c)`` and its
    mean over classes (mIoU), from integer labels (N,): sklearn's ``jaccard_score``,
    torchmetrics' ``MulticlassJaccardIndex``. For a segmentation, flatten the label maps
    first, ``jaccard_index(y.ravel(), pred.ravel(), K, ignore_index=255)``.

    ``average``: ``'macro'`` (the plain mean over classes, nan ones skipped), ``'weighted'``
    (by each class's support in y_true), ``'micro'`` (``Σ tp / Σ (tp + fp + fn)``, which for
    single-label data is ``correct / (2N - correct)``) -> a float; None -> the (K,) float64
    IoUs. The classes are those present in y_true or y_pred, or all ``0 .. num_classes-1``
    when it is given (sklearn's rule). A class with ``tp + fp + fn = 0`` (absent from both)
    has IoU ``zero_division``: 0.0 (sklearn's, torchmetrics'), 1.0, or nan, which leaves it
    out of 'macro' (mmsegmentation's nanmean). ``ignore_index``: examples whose true label
    it is are dropped first; a class of that number is then out of the averages, nan in the
    per-class IoUs.
    """
    fn = "jaccard_index"
    if average not in _AVERAGES:
        raise ValueError(f"metrics.{fn}: average must be one of {_AVERAGES}, got {average!r}; "
                         "pass 'macro' for the mean IoU, None for the per-class IoUs")
    zd = _zero_division(fn, zero_division)
    k = None if num_classes is None else int_arg(num_classes, f"metrics.{fn}", "num_classes", 1)
    y_true, y_pred = without_ignored(fn, y_true, y_pred, ignore_index)
    widen = " or raise num_classes"
    t = labels(y_true, fn, "y_true", k, widen + ("" if ignore_index is not None else
                                                 ", or pass ignore_index= for unlabelled ones"))
    p = labels(y_pred, fn, "y_pred", k, widen)
    same_length(fn, t, p, "y_true and y_pred")
    kk = k if k is not None else int(max(t.max(), p.max())) + 1
    if kk > _MAX_COUNTS:  # count vectors of kk int64: a stray id of 2**40 asks TiBs
        raise ValueError(f"metrics.{fn}: labels run to {kk - 1}, {kk} classes' counts; labels "
                         f"must be 0..K-1: map yours with np.unique(labels, "
                         f"return_inverse=True)[1]")
    true_sum = np.bincount(t, minlength=kk)
    pred_sum = np.bincount(p, minlength=kk)
    tp = np.bincount(t[t == p], minlength=kk)
    union = true_sum + pred_sum - tp
    iou = np.full(kk, zd, dtype=np.float64)
    np.divide(tp, union, out=iou, where=union != 0)
    sel = np.arange(kk) if k is not None else np.flatnonzero(union > 0)
    ig = None if ignore_index is None else int(number(ignore_index))
    if ig is not None and 0 <= ig < kk:
        iou[ig] = math.nan
        sel = sel[sel != ig]
    if average is None:
        return iou
    if average == "micro":
        u = union[sel].sum()
        return float(tp[sel].sum() / u) if u else zd
    return nanaverage(iou[sel], true_sum[sel] if average == "weighted" else None)
