"""The softmax cross-entropy, on integer labels or on probabilities, and the negative
log-likelihood of log-probabilities."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl._args import array_arg, int_arg, real_arg
from funcdl._special import shifted_exp
from funcdl.losses._base import (
    Array,
    Pullback,
    add_reduce,
    check_one_hot,
    check_probabilities,
    check_weights,
    label_error,
    pred_array,
    target_like,
    weighed,
)
from funcdl.losses._reduction import reduce_loss


def softmax_cross_entropy_vjp(pred: Any, target: Any, reduction: str = "mean",
                              label_smoothing: float = 0.0, *, weight: Any = None,
                              ignore_index: Any = None) -> tuple[Any, Pullback]:
    """Logits ``z`` of shape (..., C) against integer labels (...) or probabilities / one-hot
    (..., C), floats or ints (an int one-hot needs batched logits of C >= 2: see
    ``check_one_hot``): ``-Σ_c t_c log softmax(z)_c``, averaged over examples;
    ``dz = softmax(z) Σ_c t_c - t``; a term of ``t_c = 0`` is 0, its limit, also at a logit of
    -inf (torch: ``0·-inf``, NaN). ``label_smoothing`` ε, as torch's: the target is
    ``(1 - ε) t + ε / C`` (t one-hot for labels).

    As torch's ``CrossEntropyLoss``: ``weight`` (C,) weighs class c's term by ``w_c``
    (``-Σ_c w_c t_c log p_c``), and the mean over labels divides by ``Σ w_label`` (over
    examples for probabilities); ``ignore_index``: examples of that label count for
    nothing, in the sum and in the mean's divisor (labels only)."""
    name = "softmax_cross_entropy"
    smooth = real_arg(label_smoothing, name, "label_smoothing", low=0.0, high=1.0)
    z = pred_array(name, pred)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"{name}: logits need a class axis of at least one class, got "
                         f"shape {z.shape}")
    one_class(name, z)
    n_classes = z.shape[-1]
    labels, w, ignore = _label_args(name, target, z.shape, z.dtype, weight, ignore_index)
    logp, e, total = shifted_exp(z, -1)
    logp -= np.log(total)
    if labels.dtype.kind in "iu" and labels.shape != z.shape:  # (an int one-hot: below)
        return _of_labels(name, z, labels, logp, e, total, smooth, w, ignore, reduction)
    if labels.shape == z.shape[:-1]:  # one value per example, not an int: meant as labels
        raise label_error(name, labels, *class_label_words(z.shape))
    if labels.dtype.kind not in "fbiu":
        raise TypeError(f"{name}: target must be integer labels or float probabilities, "
                        f"got dtype {labels.dtype}")
    # probabilities, or one-hot (torch's one_hot: int64)
    if ignore is not None:
        raise ValueError(f"{name}: ignore_index={ignore} applies to integer labels of "
                         f"shape {z.shape[:-1]}; a target of probabilities or one-hot rows "
                         f"has none to ignore (give those rows 0)")
    t = dense_target(name, z, labels)
    if smooth:
        t = (1 - smooth) * t + smooth / n_classes
    if w is not None:
        t = t * w  # -Σ_c w_c t_c log p_c: the weighted target in the same formulas
    with np.errstate(invalid="ignore"):  # 0 · -inf, dropped by the where below
        tlogp = t * logp
    per = -np.where(t != 0, tlogp, 0).sum(axis=-1)  # 0 · log 0 = 0, as in the limit

    def grad(c: Any) -> Array:
        g = (e / total) * t.sum(axis=-1, keepdims=True) - t
        out: Array = g * (c[..., None] if np.ndim(c) else c)
        return out

    return reduce_loss(name, per, reduction, per.size, grad)


def class_label_words(shape: tuple[int, ...], fix: str | None = None) -> tuple[str, str, str]:
    """``label_error``'s words for class labels against scores of ``shape`` (..., C);
    ``fix`` another way, "" for none (None: probabilities, as the cross-entropies take)."""
    k = shape[-1]
    if fix is None:
        fix = (f", or probabilities of shape {shape} (one-hot rows: "
               f"funcdl.data.one_hot(labels, {k}))")
    return (f"class labels of shape {shape[:-1]}",
            f"class ids must be integers in [0, {k}), one per example", fix)


def one_class(name: str, z: Array) -> None:
    """Refuse batched logits of one class: the cross-entropy is 0 whatever the logits and
    the targets, and the gradient 0 (torch's too), so nothing would train."""
    if z.ndim > 1 and z.shape[-1] == 1:
        raise ValueError(f"{name}: logits of shape {z.shape} hold one class, where the loss "
                         f"is 0 whatever the logits and the targets, so any target is refused "
                         f"with one class: for binary targets, one logit per example, use "
                         f"bce_with_logits")


def dense_target(name: str, z: Array, target: Any) -> Array:
    """A target of the logits' shape, in their dtype: a one-hot (integers or booleans,
    checked by ``check_one_hot``) or probabilities (floats, checked to lie in [0, 1])."""
    t = target_like(name, z, target)
    kind = getattr(target, "dtype", t.dtype).kind  # t took z's dtype: the given one decides
    return check_one_hot(name, t, z.shape) if kind != "f" else check_probabilities(name, t)


class _Picked(NamedTuple):
    """Integer labels (...) against (..., C) scores, as both label losses index them: row r
    of the flattened examples, column ``cols[r]`` (an ignored example's: 0, its term then
    dropped by ``keep``); ``wy`` its class weight; ``divisor`` the mean's."""

    keep: Array | None  # the examples not ignored (None: all of them)
    rows: Array
    cols: Array
    wy: Array | None
    divisor: float


def pick_labels(name: str, what: str, shape: tuple[int, ...], labels: Array, w: Array | None,
                ignore: int | None, reduction: str) -> _Picked:
    """Check ``labels`` against ``what`` (logits, ...) of ``shape`` and index them (see
    ``_Picked``); the mean over labels divides by ``Σ w_y`` over the kept ones (their count
    without weights)."""
    n_classes = shape[-1]
    if labels.shape != shape[:-1]:
        torch = len(shape) > 2 and labels.shape == shape[:1] + shape[2:]
        raise ValueError(f"{name}: integer labels must have shape {shape[:-1]} for "
                         f"{what} of shape {shape}, got {labels.shape}"
                         + ("; classes go last here: for torch's (N, C, d1, ...) layout pass "
                            "np.moveaxis(pred, 1, -1)" if torch else ""))
    keep = None if ignore is None else labels != ignore
    if keep is not None and keep.all():
        keep = None
    kept = labels if keep is None else labels[keep]
    lo, hi = ((np.minimum.reduce(kept, axis=None), np.maximum.reduce(kept, axis=None))
              if kept.size else (0, -1))
    if lo < 0 or hi >= n_classes:
        also = "" if ignore is None else f" (or the ignore_index, {ignore})"
        torch_pad = ignore is None and lo == -100
        raise ValueError(f"{name}: labels must be in [0, {n_classes}){also}, got values in "
                         f"[{lo}, {hi}]" + ("; -100 is PyTorch's default ignore_index, here "
                                            "None: pass ignore_index=-100" if torch_pad
                                            else ""))
    rows = np.arange(labels.size)
    cols = labels.reshape(-1) if keep is None else np.where(keep, labels, 0).reshape(-1)
    wy = None if w is None else w[cols].reshape(labels.shape)
    if wy is None:
        count: float = labels.size if keep is None else int(np.count_nonzero(keep))
    else:
        counted = wy if keep is None else np.where(keep, wy, 0)
        # in float64: float32 weights of 1e37 sum past float32's range (a NaN loss, then 0)
        with np.errstate(over="ignore"):
            count = float(add_reduce(counted, axis=None, dtype=np.float64))
        if count == math.inf and isinstance(reduction, str) and reduction == "mean":
            # float64 weights past float64's range: the mean (a ratio) was 0 or NaN. It is
            # unchanged by scaling every weight by 2^-k (exact), which brings their sum in
            k = math.ceil(math.log2(wy.size)) + 1
            wy = np.ldexp(wy, -k)
            count = float(add_reduce(np.ldexp(counted, -k), axis=None))
    if isinstance(reduction, str) and reduction == "mean" and count == 0 and labels.size:
        raise ValueError(f"{name}: reduction='mean' divides by the weight of the examples "
                         f"not ignored, which is 0 here; skip such batches, or pass "
                         f"reduction='sum'")
    return _Picked(keep, rows, cols, wy, count)


def _label_args(name: str, target: Any, shape: tuple[int, ...], dtype: Any, weight: Any,
                ignore_index: Any) -> tuple[Array, Array | None, int | None]:
    labels = array_arg(target, name, "target")
    w = check_weights(name, "weight", weight, shape[-1:], dtype, per_class=True)
    ignore = None if ignore_index is None else int_arg(ignore_index, name, "ignore_index",
                                                       minimum=None)
    return labels, w, ignore


def _of_labels(name: str, z: Array, labels: Array, logp: Array, e: Array, total: Array,
               smooth: float, w: Array | None, ignore: int | None,
               reduction: str) -> tuple[Any, Pullback]:
    """The cross-entropy against integer labels: ``per = (1-ε) w_y (-log p_y) + (ε/C)
    Σ_c w_c (-log p_c)`` (w = 1 without weights), 0 for an ignored example;
    ``dz = (1-ε) w_y (p - e_y) + (ε/C)(W p - w)``, ``W = Σ_c w_c``."""
    n_classes = z.shape[-1]
    keep, rows, cols, wy, count = pick_labels(name, "logits", z.shape, labels, w, ignore, reduction)
    per = -logp.reshape(-1, n_classes)[rows, cols].reshape(labels.shape)
    # huge weights times huge -log p: inf, the loss's value, as PyTorch's, without a warning
    with np.errstate(over="ignore"):
        if wy is not None:
            per = weighed(per, wy)
        if smooth:  # (1 - ε)·(-log p_label) + ε·(-mean_c log p_c)
            # scaled before the sum: the sum of log p over the classes overflows float32
            # where the logits are ~1e38 apart, the mean does not
            scaled = -smooth / n_classes if w is None else w * (-smooth / n_classes)
            uniform = add_reduce(logp * scaled if w is None else weighed(logp, scaled), axis=-1)
            # ε = 1: no label term (an infinite -log p_label times 0 would be NaN)
            per = per * (1 - smooth) + uniform if smooth < 1 else uniform
    if keep is not None:
        per = np.where(keep, per, 0)

    def grad(c: Any) -> Array:
        # softmax, a fresh C-ordered array: of permuted logits' layout the reshape below
        # would be a copy, and the subtraction lost
        g = np.divide(e, total, order="C")
        if wy is None:
            g.reshape(-1, n_classes)[rows, cols] -= 1 - smooth
            if smooth:
                g -= smooth / n_classes
        else:
            assert w is not None
            # weights near the dtype's maximum make an infinite loss: its dz is inf or NaN
            with np.errstate(over="ignore", invalid="ignore"):
                # Σ_c w_c only with smoothing: else 0 · inf (weights summing past float64's
                # maximum) made every dz NaN, where torch's are finite
                spread = (smooth / n_classes) * float(add_reduce(w, dtype=np.float64)) if smooth \
                    else 0.0
                g *= ((1 - smooth) * wy + spread)[..., None]
                g.reshape(-1, n_classes)[rows, cols] -= (1 - smooth) * wy.reshape(-1)
                if smooth:
                    g -= (smooth / n_classes) * w
        if keep is not None:
            g *= keep[..., None]
        if np.ndim(c):
            g *= c[..., None]
        else:
            g *= c
        return g

    return reduce_loss(name, per, reduction, count, grad)


def nll_vjp(pred: Any, target: Any, reduction: str = "mean", *, weight: Any = None,
            ignore_index: Any = None) -> tuple[Any, Pullback]:
    """PyTorch's ``nll_loss``, classes last: log-probabilities ``lp`` (..., C), a
    ``LogSoftmax``'s output, against integer labels (...): ``per = -w_y lp_y`` (w = 1 without
    weights), 0 for an ignored example, the mean dividing by ``Σ w_y`` over the kept ones;
    ``dlp = -w_y c e_y`` (c the cotangent of ``per``). ``LogSoftmax`` then ``nll`` is
    ``softmax_cross_entropy`` in two steps."""
    name = "nll"
    lp = pred_array(name, pred)
    if lp.ndim == 0 or lp.shape[-1] == 0:
        raise ValueError(f"{name}: log-probabilities need a class axis of at least one "
                         f"class, got shape {lp.shape}")
    labels, w, ignore = _label_args(name, target, lp.shape, lp.dtype, weight, ignore_index)
    if labels.dtype.kind not in "iu":
        raise label_error(name, labels, *class_label_words(
            lp.shape, f"; for probabilities of shape {lp.shape} use softmax_cross_entropy "
                      f"on the logits"))
    n_classes = lp.shape[-1]
    keep, rows, cols, wy, count = pick_labels(name, "log-probabilities", lp.shape, labels, w,
                                              ignore, reduction)
    per = -lp.reshape(-1, n_classes)[rows, cols].reshape(labels.shape)
    if wy is not None:
        with np.errstate(over="ignore"):  # huge weights times huge -lp: inf, as PyTorch
            per = weighed(per, wy)
    if keep is not None:
        per = np.where(keep, per, 0)
    coef = np.full(labels.shape, -1, lp.dtype) if wy is None else -wy
    if keep is not None:
        coef = coef * keep

    def grad(c: Any) -> Array:
        g = np.zeros((labels.size, n_classes), lp.dtype)
        g[rows, cols] = (coef * c).reshape(-1)
        return g.reshape(lp.shape)

    return reduce_loss(name, per, reduction, count, grad)
