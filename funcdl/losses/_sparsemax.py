"""Sparsemax (Martins & Astudillo 2016), the Euclidean projection onto the simplex, and
optax's two sparsemax losses: ``sparsemax`` (optax's ``sparsemax_loss``, binary, 0/1
labels) and ``multiclass_sparsemax`` (optax's ``multiclass_sparsemax_loss``, integer
labels). The projection (``funcdl._simplex``) is shared with ``funcdl.layers.Sparsemax``."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._simplex import shifted_simplex_projection
from funcdl.losses._base import (
    Array,
    Pullback,
    add_reduce,
    int_labels,
    pred_array,
    target_like,
)
from funcdl.losses._cross_entropy import class_label_words, pick_labels
from funcdl.losses._margins import class_count
from funcdl.losses._reduction import reduce_loss


def _binary_labels(name: str, x: Array, target: Any) -> Array:
    """The 0/1 target as a boolean mask of pred's shape. optax reads any truthy value as 1,
    so ±1 labels would train with every -1 read as a 1: refused."""
    t = target_like(name, x, target)
    if t.size and not ((t == 0) | (t == 1)).all():
        bad = np.unique(t[(t != 0) & (t != 1)])[:5]
        raise ValueError(f"{name}: target must hold the labels 0 or 1 (optax's "
                         f"sparsemax_loss), got values such as {bad}; for ±1 labels pass "
                         f"(target + 1) // 2")
    out: Array = t == 1
    return out


def sparsemax_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's binary ``sparsemax_loss``: logits x against 0/1 labels y of their shape,
    ``sparse_plus(v)``, ``v = -x`` where y = 1 else ``x``: 0 for ``v <= -1``, ``(v + 1)²/4``
    for ``|v| < 1``, ``v`` for ``v >= 1``; ``dx = ±clip((v + 1)/2, 0, 1)`` (-, where y = 1:
    optax's sparse_sigmoid). Zero iff ``sparse_sigmoid(x) == y``."""
    name = "sparsemax"
    x = pred_array(name, pred)
    pos = _binary_labels(name, x, target)
    v = np.where(pos, -x, x)
    with np.errstate(over="ignore"):  # the quadratic only for |v| < 1, never overflowing
        per = np.where(v <= -1, 0, np.where(v >= 1, v, (v + 1) * (v + 1) / 4)).astype(x.dtype)
    slope = np.clip((v + 1) / 2, 0, 1)
    slope = np.where(pos, -slope, slope)
    return reduce_loss(name, per, reduction, per.size, lambda c: c * slope)


def multiclass_sparsemax_vjp(pred: Any, target: Any,
                             reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``multiclass_sparsemax_loss``, classes last: scores x (..., C) against
    integer labels y (...): ``<p, x> - x_y + (1 - <p, p>)/2``, ``p = sparsemax(x)`` (the
    sparsemax Fenchel-Young loss, >= 0, 0 iff p is y's one-hot); ``dx = p - onehot(y)``,
    as optax's custom jvp. The mean is over examples."""
    name = "multiclass_sparsemax"
    x = pred_array(name, pred)
    n_classes = class_count(name, x, "the scores")
    labels = int_labels(name, target, *class_label_words(x.shape, ""))
    _, rows, cols, _, _ = pick_labels(name, "scores", x.shape, labels, None, None, reduction)
    xs = x.reshape(-1, n_classes)
    # the value is shift-invariant: z (the projection's own shift) keeps it small; a
    # label's score past the float range below the top is -inf, its loss inf (as torch's
    # losses give it); only the support enters <p, z>, where 0·(-inf) would be NaN
    with np.errstate(invalid="ignore", over="ignore"):
        p, z = shifted_simplex_projection(xs)
        inner = add_reduce(np.where(p > 0, p * z, 0), axis=-1)
        per = inner - z[rows, cols] + (1 - add_reduce(p * p, axis=-1)) / 2
    per = per.reshape(labels.shape)
    slope = p  # p - onehot, in place: p is this call's own array
    slope[rows, cols] -= 1

    def grad(c: Any) -> Array:
        out: Array = (slope * (c.reshape(-1, 1) if np.ndim(c) else c)).reshape(x.shape)
        return out

    return reduce_loss(name, per, reduction, per.size, grad)
