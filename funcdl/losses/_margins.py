"""PyTorch's margin losses of classification: hinge_embedding and soft_margin (targets ±1),
multi_margin (scores against integer labels), multilabel_soft_margin (0/1 targets per
class) and multilabel_margin (per example, its class indices, padded with -1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import is_int, number, real_arg, shown
from funcdl._special import softplus_sigmoid
from funcdl.losses._base import (
    Array,
    Pullback,
    add_reduce,
    check_probabilities,
    check_weights,
    int_labels,
    pred_array,
    target_like,
    weighed,
)
from funcdl.losses._cross_entropy import class_label_words, pick_labels
from funcdl.losses._elementwise import bce_with_logits_vjp
from funcdl.losses._reduction import reduce_loss

_TORCH_SIGNS = "torch's convention; it gives any other value a meaningless loss"


def sign_target(name: str, pred: Array, target: Any, why: str = _TORCH_SIGNS) -> Array:
    """The target as 1s and -1s of pred's shape and dtype. torch takes any value and gives
    the others a loss with no meaning (hinge_embedding adds both branches for a 0; soft_margin
    of a 0 is log 2 whatever pred, with no gradient), so 0/1 labels would train silently
    wrong: refused, ``why`` saying whose convention it is."""
    t = target_like(name, pred, target)
    if t.size and not (np.abs(t) == 1).all():
        bad = np.unique(t[np.abs(t) != 1])[:5]
        raise ValueError(f"{name}: target must hold 1 or -1 ({why}), got values such as "
                         f"{bad}; for 0/1 labels pass 2 * target - 1")
    return t


def class_count(name: str, x: Array, what: str) -> int:
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name}: pred needs a class axis, last, of at least one class "
                         f"({what}), got shape {x.shape}")
    return int(x.shape[-1])


# ---------------------------------------------------------------------------- ±1 targets

def hinge_embedding_vjp(pred: Any, target: Any, margin: float = 1.0,
                        reduction: str = "mean") -> tuple[Any, Pullback]:
    """torch's ``HingeEmbeddingLoss``, y = ±1 of pred's shape: ``x`` where y = 1,
    ``max(0, margin - x)`` where y = -1; ``dx = 1`` where y = 1, ``-1`` where y = -1 and
    ``margin - x >= 0`` (torch's clamp passes the gradient at the kink), else 0."""
    name = "hinge_embedding"
    m = real_arg(margin, name, "margin")  # torch takes a negative margin too
    x = pred_array(name, pred)
    y = sign_target(name, x, target)
    pos = y == 1
    with np.errstate(over="ignore"):  # a margin or x near the dtype's maximum: inf, as torch
        gap = m - x
    per = np.where(pos, x, np.maximum(gap, 0))
    slope = pos.astype(x.dtype)  # 1 where y = 1, -1 on the hinge's active side (>= 0)
    slope -= ~pos & (gap >= 0)
    # the one margin loss unbounded below: x = -inf (y = 1) beside an inf term sums to NaN,
    # as torch's, silently as every loss's NaN from infinite input
    with np.errstate(invalid="ignore"):
        return reduce_loss(name, per, reduction, per.size, lambda c: c * slope)


def soft_margin_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """torch's ``SoftMarginLoss``, y = ±1 of pred's shape: ``log(1 + e^v)``, ``v = -y x``,
    computed as ``max(v, 0) + log(1 + e^-|v|)`` (torch's ``log1p(exp(v))`` is inf from
    v ~ 710 on, its gradient NaN); ``dx = -y σ(v)``."""
    name = "soft_margin"
    x = pred_array(name, pred)
    y = sign_target(name, x, target)
    v = -y * x  # exact: y is ±1
    per, sig = softplus_sigmoid(v)
    slope = -y * sig
    return reduce_loss(name, per, reduction, per.size, lambda c: c * slope)


# ---------------------------------------------------------------------------- multi_margin

def _power(name: str, p: Any) -> int:
    p = number(p)
    if isinstance(p, float) and p in (1.0, 2.0):
        p = int(p)
    if not is_int(p):
        raise TypeError(f"{name}: p must be the int 1 or 2, got {shown(p)} "
                        f"({type(p).__name__})")
    if p not in (1, 2):
        raise ValueError(f"{name}: p must be 1 (the hinge) or 2 (its square), as torch "
                         f"supports, got {shown(int(p))}")
    return int(p)


def multi_margin_vjp(pred: Any, target: Any, p: int = 1, margin: float = 1.0,
                     weight: Any = None, reduction: str = "mean") -> tuple[Any, Pullback]:
    """torch's ``MultiMarginLoss``, classes last: scores x (..., C) against integer labels y
    (...): ``per = w_y Σ_{i≠y} max(0, margin - x_y + x_i)^p / C`` (w = 1 without ``weight``;
    torch weighs the powered term, and its mean is over examples whatever the weights);
    with ``z_i = margin - x_y + x_i``, ``dx_i = w_y (1 or 2 z_i) / C`` where ``z_i > 0``
    (0 at the kink, as torch), and ``dx_y = -Σ_{i≠y} dx_i``."""
    name = "multi_margin"
    power = _power(name, p)
    m = real_arg(margin, name, "margin")  # torch takes a negative margin too
    x = pred_array(name, pred)
    n_classes = class_count(name, x, "the scores")
    labels = int_labels(name, target, *class_label_words(x.shape, ""))
    w = check_weights(name, "weight", weight, x.shape[-1:], x.dtype, per_class=True)
    # no weights to pick_labels: its weighted mean divides by Σ w_y, torch's here by the count
    _, rows, cols, _, _ = pick_labels(name, "scores", x.shape, labels, None, None, reduction)
    xs = x.reshape(-1, n_classes)
    # huge scores: inf, as torch; inf - inf is NaN, which fails z > 0 as in torch's loop
    with np.errstate(over="ignore", invalid="ignore"):
        z = (m - xs[rows, cols])[:, None] + xs
        act = z > 0
        act[rows, cols] = False  # the label's own term is not in the sum
        h = np.where(act, z, 0)
        per = add_reduce(h * h if power == 2 else h, axis=-1) / n_classes
        if w is not None:
            wy = w[cols]
            per = weighed(per, wy)  # a class of weight 0: 0, even beside an inf term
        # h (2 / C), not 2 h / C: 2 h overflows from half the maximum on (torch: 2 g z, g
        # = 1/C); a weight past 1 may still carry it to inf, as torch's
        coef = h * (2 / n_classes) if power == 2 else act.astype(x.dtype) / n_classes
        if w is not None:
            coef *= wy[:, None]
    per = per.reshape(labels.shape)

    def grad(c: Any) -> Array:
        with np.errstate(over="ignore", invalid="ignore"):
            g = coef * (c.reshape(-1, 1) if np.ndim(c) else c)
            g[rows, cols] = -add_reduce(g, axis=-1)
        out: Array = g.reshape(x.shape)
        return out

    return reduce_loss(name, per, reduction, per.size, grad)


# ---------------------------------------------------------------------------- multilabel

def multilabel_soft_margin_vjp(pred: Any, target: Any, weight: Any = None,
                               reduction: str = "mean") -> tuple[Any, Pullback]:
    """torch's ``MultiLabelSoftMarginLoss``, classes last: logits x (..., C) against targets
    t in [0, 1] of their shape: ``per = Σ_c w_c bce_with_logits(x_c, t_c) / C`` (w = 1
    without ``weight``, which broadcasts to x), one value per example;
    ``dx = w (σ(x) - t) / C``."""
    name = "multilabel_soft_margin"
    x = pred_array(name, pred)
    n_classes = class_count(name, x, "one logit per label")
    t = check_probabilities(name, target_like(name, x, target))
    w = check_weights(name, "weight", weight, x.shape, x.dtype)
    terms, term_pullback = bce_with_logits_vjp(x, t, "none", weight=w)
    with np.errstate(over="ignore"):  # a row of huge terms: inf, as torch's sum over classes
        per = add_reduce(terms, axis=-1) / n_classes

    def grad(c: Any) -> Array:
        each = np.broadcast_to(np.asarray(c / n_classes, x.dtype)[..., None], x.shape)
        out: Array = term_pullback(each)
        return out

    return reduce_loss(name, per, reduction, per.size, grad)


def multilabel_margin_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """torch's ``MultiLabelMarginLoss``, classes last: scores x (..., C) against integer
    targets of their shape, each row its example's classes followed by -1 (what follows the
    first -1 is ignored): ``per = Σ_j Σ_{i ∉ J} max(0, 1 - x_j + x_i) / C``, j over the row's
    listed classes (a class listed twice counts twice, as in torch), J their set;
    ``dx_i = (number of j with 1 - x_j + x_i > 0) / C`` for i ∉ J and ``dx_j -= (number of
    i with it > 0) / C`` (0 at the kink, as torch)."""
    name = "multilabel_margin"
    x = pred_array(name, pred)
    n_classes = class_count(name, x, "the scores")
    y = int_labels(name, target, f"class indices padded with -1, of pred's shape {x.shape}",
                   f"class indices must be integers in [0, {n_classes}), -1 for padding")
    if y.shape != x.shape:
        raise ValueError(f"{name}: target must have pred's shape {x.shape} (per example, its "
                         f"classes, then -1s), got {y.shape}")
    if y.size and not (np.minimum.reduce(y, axis=None) >= -1
                       and np.maximum.reduce(y, axis=None) < n_classes):
        raise ValueError(f"{name}: target must hold class indices in [0, {n_classes}) or "
                         f"the padding -1 (torch refuses others, even after the first -1), "
                         f"got values in [{np.minimum.reduce(y, axis=None)}, "
                         f"{np.maximum.reduce(y, axis=None)}]")
    ys = y.reshape(-1, n_classes)
    n = ys.shape[0]
    listed = np.logical_and.accumulate(ys >= 0, axis=-1)  # the entries before the first -1
    # only as many target positions as the longest list: (n, k, C) pairs, not (n, C, C)
    k = int(np.maximum.reduce(add_reduce(listed, axis=-1), axis=None)) if n else 0
    listed = listed[:, :k]
    js = np.where(listed, ys[:, :k], 0)
    flat = (np.arange(n)[:, None] * n_classes + js)  # index of (row, class) in x.ravel()
    is_target = np.bincount(flat[listed], minlength=n * n_classes).reshape(n, n_classes) > 0
    xs = x.reshape(n, n_classes)
    # huge scores: inf, as torch; inf - inf is NaN, which fails z > 0 as in torch's loop
    with np.errstate(over="ignore", invalid="ignore"):
        z = (1 - np.take_along_axis(xs, js, axis=-1))[:, :, None] + xs[:, None, :]
        act = (z > 0) & listed[:, :, None] & ~is_target[:, None, :]
        per = add_reduce(add_reduce(np.where(act, z, 0), axis=-1), axis=-1) / n_classes
    per = per.reshape(y.shape[:-1])
    a = act.astype(x.dtype) / n_classes

    def grad(c: Any) -> Array:
        ac = a * c.reshape(-1, 1, 1) if np.ndim(c) else a * c
        g = add_reduce(ac, axis=1)  # each non-target class i, once per j it is active against
        # each listed class j, minus once per active i; a repeated j adds up (bincount)
        down = np.bincount(flat.reshape(-1), add_reduce(ac, axis=-1).reshape(-1),
                           minlength=n * n_classes)
        g -= down.reshape(n, n_classes).astype(x.dtype, copy=False)
        out: Array = g.reshape(x.shape)
        return out

    return reduce_loss(name, per, reduction, per.size, grad)
