"""The softmax cross-entropy, on integer labels or on probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import array_arg, real_arg
from funcdl._special import shifted_exp
from funcdl.losses._base import (
    Array,
    Pullback,
    _one_hot,
    _pred,
    _probabilities,
    _reduced,
    _same_shape,
    _sum,
)


def _softmax_cross_entropy(pred: Any, target: Any, reduction: str = "mean",
                           label_smoothing: float = 0.0) -> tuple[Any, Pullback]:
    """Logits ``z`` of shape (..., C) against integer labels (...) or probabilities / one-hot
    (..., C), floats or ints (an int one-hot needs batched logits of C >= 2: see
    ``_one_hot``): ``-Σ_c t_c log softmax(z)_c``, averaged over examples;
    ``dz = softmax(z) Σ_c t_c - t``. ``label_smoothing`` ε, as torch's: the target is
    ``(1 - ε) t + ε / C`` (t one-hot for labels)."""
    name = "softmax_cross_entropy"
    smooth = real_arg(label_smoothing, name, "label_smoothing", low=0.0, high=1.0)
    z = _pred(name, pred)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"{name}: logits need a class axis of at least one class, got "
                         f"shape {z.shape}")
    labels = array_arg(target, name, "target")
    logp, e, total = shifted_exp(z, -1)
    logp -= np.log(total)
    n_classes = z.shape[-1]
    if labels.dtype.kind in "iu" and labels.shape != z.shape:  # (an int one-hot: below)
        if labels.shape != z.shape[:-1]:
            raise ValueError(f"{name}: integer labels must have shape {z.shape[:-1]} for "
                             f"logits of shape {z.shape}, got {labels.shape}")
        lo, hi = ((np.minimum.reduce(labels, axis=None), np.maximum.reduce(labels, axis=None))
                  if labels.size else (0, -1))
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{name}: labels must be in [0, {n_classes}), got values in "
                             f"[{lo}, {hi}]")
        # One fancy index over the flattened examples: row r, column labels[r].
        rows = np.arange(labels.size)
        cols = labels.reshape(-1)
        per = -logp.reshape(-1, n_classes)[rows, cols].reshape(labels.shape)
        if smooth:  # (1 - ε)·(-log p_label) + ε·(-mean_c log p_c)
            # scaled before the sum: the sum of log p over the classes overflows float32
            # where the logits are ~1e38 apart, the mean does not
            uniform = _sum(logp * (-smooth / n_classes), axis=-1)
            # ε = 1: no label term (an infinite -log p_label times 0 would be NaN)
            per = per * (1 - smooth) + uniform if smooth < 1 else uniform

        def grad(c: Any) -> Array:
            # softmax, a fresh C-ordered array: of permuted logits' layout the reshape below
            # would be a copy, and the subtraction lost
            g = np.divide(e, total, order="C")
            g.reshape(-1, n_classes)[rows, cols] -= 1 - smooth
            if smooth:
                g -= smooth / n_classes
            if np.ndim(c):
                g *= c[..., None]
            else:
                g *= c
            return g
    elif labels.dtype.kind in "fbiu":  # probabilities, or one-hot (torch's one_hot: int64)
        if labels.shape == z.shape[:-1]:  # one value per example: meant as class labels
            raise ValueError(f"{name}: a target of shape {labels.shape} holds class labels, "
                             f"which must be integers, got dtype {labels.dtype}; pass "
                             f"target.astype(int), or probabilities of shape {z.shape}")
        t = _same_shape(name, z, labels)
        t = _one_hot(name, t, z.shape) if labels.dtype.kind != "f" else _probabilities(name, t)
        if smooth:
            t = (1 - smooth) * t + smooth / n_classes
        with np.errstate(invalid="ignore"):  # 0 · -inf, dropped by the where below
            tlogp = t * logp
        per = -np.where(t != 0, tlogp, 0).sum(axis=-1)  # 0 · log 0 = 0, as in the limit

        def grad(c: Any) -> Array:
            g = (e / total) * t.sum(axis=-1, keepdims=True) - t
            out: Array = g * (c[..., None] if np.ndim(c) else c)
            return out
    else:
        raise TypeError(f"{name}: target must be integer labels or float probabilities, "
                        f"got dtype {labels.dtype}")
    return _reduced(name, per, reduction, per.size, grad)
