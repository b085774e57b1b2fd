"""The losses from detection and regression that optax and torchvision have and torch.nn does
not: sigmoid_focal (torchvision's ``sigmoid_focal_loss``, optax's ``sigmoid_focal_loss``)
and log_cosh (optax's)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._args import real_arg
from funcdl.losses._base import (
    Pullback,
    check_probabilities,
    pred_array,
    target_like,
)
from funcdl.losses._reduction import reduce_loss

_LOG2 = math.log(2)


def _alpha(name: str, alpha: Any) -> float | None:
    """torchvision's alpha: a negative one (or optax's None) means no weighting."""
    if alpha is None:
        return None
    a = real_arg(alpha, name, "alpha", hint="; pass None (or a negative number) for no "
                 "weighting")
    if a > 1:  # torchvision takes it, weighing the negatives' loss by 1 - alpha < 0
        raise ValueError(f"{name}: alpha must be <= 1 (the positives' weight; the negatives' "
                         f"is 1 - alpha, which would be negative), got {a:g}; pass a value "
                         f"in [0, 1], or None (or a negative number) for no weighting")
    return None if a < 0 else a


def sigmoid_focal_vjp(pred: Any, target: Any, alpha: Any = 0.25, gamma: float = 2.0,
                      reduction: str = "mean") -> tuple[Any, Pullback]:
    """torchvision's ``sigmoid_focal_loss`` (whose default reduction is 'none'; funcdl's is
    'mean', over every element), optax's elementwise: logits z against targets t in [0, 1]
    of their shape, ``a_t ce (1 - p_t)^gamma`` with ``ce`` bce_with_logits' term,
    ``p = σ(z)``, ``1 - p_t = t (1 - p) + (1 - t) p`` and ``a_t = alpha t + (1 - alpha)
    (1 - t)`` (1 when alpha is negative or None); ``dz = a_t (1 - p_t)^gamma ((p - t) +
    gamma ce (1 - 2t) p (1 - p) / (1 - p_t))``. ``gamma = 0`` and no alpha is
    ``bce_with_logits``. ``alpha`` at most 1 (torchvision takes more, weighing the
    negatives by ``1 - alpha < 0``), ``gamma >= 0``; where ``1 - p_t`` is 0 (a hard target
    met) at ``gamma < 1`` the gradient is its finite limit, where torch's autograd gives NaN."""
    name = "sigmoid_focal"
    a = _alpha(name, alpha)
    g = real_arg(gamma, name, "gamma", low=0.0)  # < 0: (1 - p_t)^gamma is inf at p_t = 1
    z = pred_array(name, pred)
    t = check_probabilities(name, target_like(name, z, target))
    e = np.exp(-np.abs(z))
    near = 1 / (1 + e)  # σ(|z|) and σ(-|z|), each without 1 - σ's cancellation
    far = e * near
    up = z >= 0
    p, q = np.where(up, near, far), np.where(up, far, near)  # σ(z), σ(-z) = 1 - p
    miss = t * q + (1 - t) * p  # 1 - p_t, a sum of terms >= 0: nothing cancels
    # bce_with_logits' term, as there: one of the two products is 0; z near the dtype's
    # maximum gives inf, an infinite z against a hard target NaN (inf · 0), as torch
    with np.errstate(over="ignore", invalid="ignore"):
        ce = np.maximum(z, 0) * (1 - t)
        ce -= np.minimum(z, 0) * t
        ce += np.log1p(e)
        focus = miss**g  # in [0, 1]; 0**0 is 1
        per = ce * focus
        slope = ((1 - t) * p - t * q) * focus  # p - t, without its cancellation at p ≈ t
        if g:
            # p (1 - p) / (1 - p_t) <= max(p, 1 - p) <= 1, and ce times it is bounded
            # (-p log p for a hard target): no overflow where ce is huge; where 1 - p_t is
            # 0, so is focus, and the term. A ratio of 0 makes the term 0, also beside an
            # infinite ce (z = ±inf against the wrong hard target: torch's autograd NaN)
            ratio = np.divide(p * q, miss, out=np.zeros_like(miss), where=miss > 0)
            cr = np.multiply(ce, ratio, out=np.zeros_like(ce), where=ratio > 0)
            slope += (g * cr) * (1 - 2 * t) * focus
        if a is not None:
            at = a * t + (1 - a) * (1 - t)
            per *= at
            slope *= at
    return reduce_loss(name, per, reduction, per.size, lambda c: c * slope)


def log_cosh_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``log_cosh`` of ``d = p - t`` (optax's is elementwise; here reduced, the mean
    by default): ``|d| + log(1 + e^(-2|d|)) - log 2``, ``log(1 + 2 sinh²(d/2))`` below
    |d| = 1, where the first loses digits to cancellation (the value is ~d²/2);
    ``dp = tanh(d)``."""
    name = "log_cosh"
    p = pred_array(name, pred)
    t = target_like(name, p, target)
    # huge finite values: d is inf, as mse's; inf - inf of infinite ones: NaN, silent
    with np.errstate(over="ignore", invalid="ignore"):
        d = p - t
        a = np.abs(d)
        near = a < 1
        s = np.sinh(np.where(near, a, 0) * 0.5)
        per = np.where(near, np.log1p(2 * s * s), a + np.log1p(np.exp(-2 * a)) - _LOG2)
    slope = np.tanh(d)
    return reduce_loss(name, per, reduction, per.size, lambda c: c * slope)
