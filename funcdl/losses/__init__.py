"""Losses, each callable and with its vjp.

``loss(pred, target, reduction='mean') -> float`` and
``loss.vjp(pred, target) -> (value, pullback)`` with ``pullback(g=1.0) -> dpred``
(``dpred`` has pred's shape and dtype; targets are data and get no gradient).

Reductions follow PyTorch: ``'mean'`` averages over every element (for the cross-entropy,
over every example), ``'sum'`` adds, ``'none'`` returns the per-element (per-example)
losses, whose pullback takes a cotangent of that shape. ``pred`` and ``target`` must have
the same shape (a (50, 1) prediction against a (50,) target is refused, never broadcast).
The mean over an empty batch is refused (NumPy and PyTorch give NaN); its sum is 0.
Every loss is stable at any finite input: no overflow warning, no NaN.
"""

from __future__ import annotations

from funcdl.losses._base import Loss, _public
from funcdl.losses._base import bound as bound  # for autodiff and testing
from funcdl.losses._cross_entropy import _nll, _softmax_cross_entropy
from funcdl.losses._elementwise import _bce, _bce_with_logits, _huber, _l1, _mse, _smooth_l1

__all__ = ["Loss", "bce", "bce_with_logits", "huber", "l1", "mse", "nll",
           "smooth_l1", "softmax_cross_entropy"]

mse = _public("mse", _mse)
bce = _public("bce", _bce)
bce_with_logits = _public("bce_with_logits", _bce_with_logits)
huber = _public("huber", _huber)
softmax_cross_entropy = _public("softmax_cross_entropy", _softmax_cross_entropy)
l1 = _public("l1", _l1)
smooth_l1 = _public("smooth_l1", _smooth_l1)
nll = _public("nll", _nll)
