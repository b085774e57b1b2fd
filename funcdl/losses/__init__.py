"""Losses, each callable and with its vjp.

``loss(pred, target, ..., reduction='mean') -> float`` (``reduction=`` by keyword: some
losses take an option third, huber its ``delta``) and
``loss.vjp(pred, target) -> (value, pullback)`` with ``pullback(g=1.0) -> dpred``
(``dpred`` has pred's shape and dtype; targets are data and get no gradient).

Reductions follow PyTorch: ``'mean'`` averages over every element (for the cross-entropy,
over every example), ``'sum'`` adds, ``'none'`` returns the per-element (per-example)
losses, whose pullback takes a cotangent of that shape. ``pred`` and ``target`` must have
the same shape (a (50, 1) prediction against a (50,) target is refused, never broadcast).
The mean over an empty batch is refused (NumPy and PyTorch give NaN); its sum is 0.
``kl_div`` also takes ``reduction='batchmean'`` (the sum over the batch size, as torch's).
``gaussian_nll`` takes ``pred=(mean, var)``, a two-output model's, its pullback then
returning ``(dmean, dvar)``; or the mean, with ``var`` (no gradient) the third argument.
``margin_ranking`` and ``cosine_embedding`` take ``pred=(x1, x2)``, ``triplet_margin``
``pred=(anchor, positive, negative)`` and no target (None); their pullbacks return one
gradient per input, a tuple.
``ctc`` takes (N, T, C) log-probabilities against padded (N, S) integer labels, with
``input_lengths=`` / ``target_lengths=`` (N,), or ``target=(labels, input_lengths,
target_lengths)``; its pullback returns dpred of pred's shape.
``hinge_embedding`` and ``soft_margin`` take targets ±1; ``multi_margin`` and
``multilabel_margin`` integer targets (labels; class lists padded with -1), averaged over
examples; ``sigmoid_focal`` is torchvision's ``sigmoid_focal_loss`` with funcdl's 'mean'.
From optax: ``ntxent`` (embeddings (N, D) against integer group labels (N,), mean over the
positive pairs; 'none' gives per anchor the sum of its pairs' terms), ``cosine_similarity``
/ ``cosine_distance`` (last axis, ``epsilon`` the least squared norm), ``poly_loss_cross_entropy``
(``epsilon`` >= -1), ``hinge`` (targets ±1; Keras's ``squared_hinge`` beside it),
``sparsemax`` (binary, 0/1 labels) and ``multiclass_sparsemax`` (integer labels).
Every loss is stable at any finite input: no overflow warning, no NaN.
Integer labels of another dtype (floats, bools) raise ``LabelDtypeError``, both a TypeError
and a ValueError.
"""

from __future__ import annotations

from funcdl.losses._base import LabelDtypeError, Loss, _public
from funcdl.losses._base import bound as bound  # for autodiff and testing
from funcdl.losses._contrastive import _cosine_distance, _cosine_similarity, _ntxent
from funcdl.losses._cross_entropy import _nll, _softmax_cross_entropy
from funcdl.losses._ctc import _ctc
from funcdl.losses._distributions import _gaussian_nll, _kl_div, _poisson_nll
from funcdl.losses._elementwise import _bce, _bce_with_logits, _huber, _l1, _mse, _smooth_l1
from funcdl.losses._focal import _log_cosh, _sigmoid_focal
from funcdl.losses._margins import (
    _hinge_embedding,
    _multi_margin,
    _multilabel_margin,
    _multilabel_soft_margin,
    _soft_margin,
)
from funcdl.losses._pairs import _cosine_embedding, _margin_ranking, _triplet_margin
from funcdl.losses._poly_hinge import _hinge, _poly_loss_cross_entropy, _squared_hinge
from funcdl.losses._sparsemax import _multiclass_sparsemax, _sparsemax

__all__ = ["LabelDtypeError", "Loss", "bce", "bce_with_logits", "cosine_distance",
           "cosine_embedding", "cosine_similarity", "ctc", "gaussian_nll", "hinge",
           "hinge_embedding", "huber", "kl_div", "l1", "log_cosh", "margin_ranking", "mse",
           "multi_margin", "multiclass_sparsemax", "multilabel_margin", "multilabel_soft_margin",
           "nll", "ntxent", "poisson_nll", "poly_loss_cross_entropy", "sigmoid_focal", "smooth_l1",
           "soft_margin", "softmax_cross_entropy", "sparsemax", "squared_hinge", "triplet_margin"]

mse = _public("mse", _mse)
bce = _public("bce", _bce)
bce_with_logits = _public("bce_with_logits", _bce_with_logits)
huber = _public("huber", _huber)
softmax_cross_entropy = _public("softmax_cross_entropy", _softmax_cross_entropy)
l1 = _public("l1", _l1)
smooth_l1 = _public("smooth_l1", _smooth_l1)
nll = _public("nll", _nll)
kl_div = _public("kl_div", _kl_div)
gaussian_nll = _public("gaussian_nll", _gaussian_nll)
poisson_nll = _public("poisson_nll", _poisson_nll)
margin_ranking = _public("margin_ranking", _margin_ranking)
cosine_embedding = _public("cosine_embedding", _cosine_embedding)
triplet_margin = _public("triplet_margin", _triplet_margin)
ctc = _public("ctc", _ctc)
sigmoid_focal = _public("sigmoid_focal", _sigmoid_focal)
log_cosh = _public("log_cosh", _log_cosh)
hinge_embedding = _public("hinge_embedding", _hinge_embedding)
soft_margin = _public("soft_margin", _soft_margin)
multi_margin = _public("multi_margin", _multi_margin)
multilabel_soft_margin = _public("multilabel_soft_margin", _multilabel_soft_margin)
multilabel_margin = _public("multilabel_margin", _multilabel_margin)
ntxent = _public("ntxent", _ntxent)
cosine_similarity = _public("cosine_similarity", _cosine_similarity)
cosine_distance = _public("cosine_distance", _cosine_distance)
poly_loss_cross_entropy = _public("poly_loss_cross_entropy", _poly_loss_cross_entropy)
hinge = _public("hinge", _hinge)
squared_hinge = _public("squared_hinge", _squared_hinge)
sparsemax = _public("sparsemax", _sparsemax)
multiclass_sparsemax = _public("multiclass_sparsemax", _multiclass_sparsemax)
