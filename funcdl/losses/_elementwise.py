"""The elementwise losses: mse, bce (on probabilities), bce_with_logits and huber."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._args import F32, F64, FLOAT_MAX, real_arg
from funcdl.losses._base import (
    Array,
    Pullback,
    check_probabilities,
    check_weights,
    pred_array,
    target_like,
    value_span,
    weighed,
)
from funcdl.losses._reduction import reduce_loss

# ---------------------------------------------------------------------------- losses

def mse_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """``mean((p - t)²)``; ``dp = 2 (p - t) / n``."""
    p = pred_array("mse", pred)
    t = target_like("mse", p, target)
    # huge finite values: d or d² is inf; inf - inf of infinite ones: NaN; both silent, as
    # in PyTorch (and the sum's overflow: one errstate, the loss's costliest call)
    with np.errstate(over="ignore", invalid="ignore"):
        d = p - t
        per = d * d
        return reduce_loss("mse", per, reduction, d.size, lambda c: (2 * c) * d, quiet=True)


# PyTorch's clamp is the float 1e-12 (ATen's `constexpr float EPSILON`) in every dtype, so
# float64 gradients at p = 0 or 1 agree with its to the last digit only with this value.
_BCE_EPS = float(np.float32(1e-12))


def bce_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """On probabilities, as PyTorch: ``-(t·max(log p, -100) + (1-t)·max(log(1-p), -100))``;
    ``dp = (p - t) / max(p (1 - p), 1e-12)``."""
    p = pred_array("bce", pred)
    t = check_probabilities("bce", target_like("bce", p, target))
    if p.size and not (p.min() >= 0 and p.max() <= 1):
        raise ValueError("bce: pred must be probabilities in [0, 1] (use bce_with_logits on "
                         f"logits), got {value_span(p)}")
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 below
        log_p = np.maximum(np.log(p), -100)
        log_q = np.maximum(np.log1p(-p), -100)
    per = -(t * log_p + (1 - t) * log_q)

    def grad(c: Any) -> Array:
        out: Array = c * (p - t) / np.maximum(p * (1 - p), _BCE_EPS)
        return out

    return reduce_loss("bce", per, reduction, p.size, grad)


def bce_with_logits_vjp(pred: Any, target: Any, reduction: str = "mean", *, weight: Any = None,
                        pos_weight: Any = None) -> tuple[Any, Pullback]:
    """On logits z: ``max(z, 0) - z t + log(1 + e^-|z|)``, computed as
    ``max(z, 0)(1 - t) - min(z, 0) t + log(1 + e^-|z|)``; ``dz = σ(z) - t``.

    As torch's ``BCEWithLogitsLoss``: ``pos_weight`` a (broadcast) weight of the positive
    term, ``-(a t log σ(z) + (1 - t) log(1 - σ(z)))`` (``dz = σ(z)(a t + 1 - t) - a t``);
    ``weight`` a (broadcast) weight of each element's loss; the mean is over elements."""
    name = "bce_with_logits"
    z = pred_array(name, pred)
    t = check_probabilities(name, target_like(name, z, target))
    a = check_weights(name, "pos_weight", pos_weight, z.shape, z.dtype)
    w = check_weights(name, "weight", weight, z.shape, z.dtype)
    e = np.exp(-np.abs(z))
    sig = np.maximum(e, z >= 0) / (1 + e)  # σ(z): 1 or e^z over 1 + e^-|z| (e <= 1)
    # one of the two products is 0, so nothing cancels: max(z, 0) - z t lost the digits
    # of z (1 - t) for t near 1 (float32, z = 20, t = 0.999: 3.6e-5 off), and gave
    # inf - inf at z = inf. z near the dtype's maximum: the loss is inf; an infinite z
    # against t of exactly 1 (or 0 at -inf): inf · 0, NaN, as PyTorch, without the warning
    at = t if a is None else a * t
    with np.errstate(over="ignore", invalid="ignore"):
        per = np.maximum(z, 0) * (1 - t)
        per -= np.minimum(z, 0) * at
        per += np.log1p(e) if a is None else np.log1p(e) * (at + (1 - t))
        if w is not None:  # a huge z times pos_weight can be inf: where w is 0, still 0
            per = weighed(per, w)
        slope = sig - t if a is None else sig * (at + (1 - t)) - at
        if w is not None:
            slope = slope * w
    return reduce_loss(name, per, reduction, z.size, lambda c: c * slope)


def huber_vjp(pred: Any, target: Any, delta: float = 1.0,
              reduction: str = "mean") -> tuple[Any, Pullback]:
    """``½ d²`` where ``|d| <= delta``, else ``delta (|d| - ½ delta)``, with ``d = p - t``;
    ``dp = clip(d, -delta, delta)``."""
    delta = real_arg(delta, "huber", "delta", low=0.0, open_low=True, finite=False)
    p = pred_array("huber", pred)
    t = target_like("huber", p, target)
    if not delta <= FLOAT_MAX[F32 if p.dtype.char == "f" else F64]:  # clips nothing, as inf
        delta = math.inf
    # huge finite values: d is inf, as in PyTorch; inf - inf of infinite ones: NaN, silent
    with np.errstate(over="ignore", invalid="ignore"):
        d = p - t
        a = np.abs(d)
        dc = np.clip(d, -delta, delta)  # equals d on the quadratic branch; never squares 1e30
        # ½ dc² + delta (|d| - |dc|): ½ d² there, delta (|d| - ½ delta) beyond (no np.where,
        # ~10 elementwise passes on an unpredictable mask)
        per = 0.5 * dc * dc
        if math.isfinite(delta):  # inf: the quadratic branch everywhere, and inf · 0 = NaN
            per += delta * (a - np.abs(dc))
    return reduce_loss("huber", per, reduction, d.size, lambda c: c * dc)


def l1_vjp(pred: Any, target: Any, reduction: str = "mean",
           name: str = "l1") -> tuple[Any, Pullback]:
    """PyTorch's ``L1Loss``: ``|p - t|``; ``dp = sign(p - t)`` (0 where ``p = t``); ``name``
    the loss whose errors these are (smooth_l1 at beta 0)."""
    p = pred_array(name, pred)
    t = target_like(name, p, target)
    with np.errstate(over="ignore", invalid="ignore"):  # as mse's: inf, or NaN of inf - inf
        d = p - t
        per = np.abs(d)
    sign = np.sign(d)
    return reduce_loss(name, per, reduction, d.size, lambda c: c * sign)


def smooth_l1_vjp(pred: Any, target: Any, reduction: str = "mean",
                  beta: float = 1.0) -> tuple[Any, Pullback]:
    """PyTorch's ``SmoothL1Loss``: ``½ d² / beta`` where ``|d| < beta``, else
    ``|d| - ½ beta``, with ``d = p - t`` (huber with ``delta = beta``, divided by beta);
    ``dp = clip(d / beta, -1, 1)``; ``beta = 0`` (or a beta that is 0 in pred's dtype) is
    ``l1``."""
    beta = real_arg(beta, "smooth_l1", "beta", low=0.0)
    p = pred_array("smooth_l1", pred)
    with np.errstate(over="ignore"):  # a beta past the dtype's range: inf there
        b = p.dtype.type(beta)
    if b == 0:  # 0, or so small that it is 0 in pred's dtype: 0/0 below
        return l1_vjp(pred, target, reduction, "smooth_l1")
    t = target_like("smooth_l1", p, target)
    with np.errstate(over="ignore", invalid="ignore"):
        d = p - t
        dc = np.clip(d, -beta, beta)
        finite = math.isfinite(float(b))
        if finite:
            # ½ dc² / beta + |d| - |dc|, never squaring a large d; dc/beta is in [-1, 1],
            # where beta·(|d| - |dc|) / beta lost |d| to underflow at a subnormal beta
            per = 0.5 * dc * (dc / beta) + (np.abs(d) - np.abs(dc))
        else:  # beta past the dtype's range: the quadratic branch everywhere, in float64
            per = (0.5 / beta * dc.astype(np.float64) * dc).astype(p.dtype)
        # by beta as the data's dtype holds it, which clip put in dc: exactly ±1 past it (a
        # float32 subnormal beta is off its float64 value by up to 1e-5 relative)
        slope = (dc / np.float64(b if finite else beta)).astype(p.dtype, copy=False)
    return reduce_loss("smooth_l1", per, reduction, d.size, lambda c: c * slope)
