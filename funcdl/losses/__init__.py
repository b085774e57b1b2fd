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
``gaussian_kl`` takes ``pred=(mu, logvar)`` and the target None, a VAE's KL to N(0, I),
or a prior ``(mu_p, logvar_p)`` broadcast to mu's shape; summed over the latent axes, its
'mean' over examples. ``combine((loss, index[, weight]), ...)``
sums losses each reading entries of a tuple pred (a two-head model's), its target a tuple
with one entry per term, its pullback one cotangent per pred entry (None where unread).
``masked(loss, mask='padding')`` counts a loss only at a padded batch's valid entries, the
mean of its terms there: its target ``(target, key_padding_mask)`` (boolean over the terms'
leading axes, True at padding), ``(target, mask)`` with ``mask='valid'`` (True where a term
counts: PyTorch's ``loss(reduction='none')[mask].mean()``) or ``(target, lengths)`` (N,)
with ``mask='lengths'``.
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

from funcdl.losses._base import LabelDtypeError, Loss, publish_loss
from funcdl.losses._base import bound as bound  # for autodiff and testing
from funcdl.losses._combine import combine
from funcdl.losses._contrastive import cosine_distance_vjp, cosine_similarity_vjp, ntxent_vjp
from funcdl.losses._cross_entropy import nll_vjp, softmax_cross_entropy_vjp
from funcdl.losses._ctc import ctc_vjp
from funcdl.losses._distributions import (
    gaussian_kl_vjp,
    gaussian_nll_vjp,
    kl_div_vjp,
    poisson_nll_vjp,
)
from funcdl.losses._elementwise import (
    bce_vjp,
    bce_with_logits_vjp,
    huber_vjp,
    l1_vjp,
    mse_vjp,
    smooth_l1_vjp,
)
from funcdl.losses._focal import log_cosh_vjp, sigmoid_focal_vjp
from funcdl.losses._margins import (
    hinge_embedding_vjp,
    multi_margin_vjp,
    multilabel_margin_vjp,
    multilabel_soft_margin_vjp,
    soft_margin_vjp,
)
from funcdl.losses._masked import masked
from funcdl.losses._pairs import cosine_embedding_vjp, margin_ranking_vjp, triplet_margin_vjp
from funcdl.losses._poly_hinge import hinge_vjp, poly_loss_cross_entropy_vjp, squared_hinge_vjp
from funcdl.losses._sparsemax import multiclass_sparsemax_vjp, sparsemax_vjp

__all__ = ["LabelDtypeError", "Loss", "bce", "bce_with_logits", "combine", "cosine_distance",
           "cosine_embedding", "cosine_similarity", "ctc", "gaussian_kl", "gaussian_nll", "hinge",
           "hinge_embedding", "huber", "kl_div", "l1", "log_cosh", "margin_ranking", "masked",
           "mse", "multi_margin", "multiclass_sparsemax", "multilabel_margin",
           "multilabel_soft_margin", "nll", "ntxent", "poisson_nll", "poly_loss_cross_entropy",
           "sigmoid_focal", "smooth_l1", "soft_margin", "softmax_cross_entropy", "sparsemax",
           "squared_hinge", "triplet_margin"]

mse = publish_loss("mse", mse_vjp)
bce = publish_loss("bce", bce_vjp)
bce_with_logits = publish_loss("bce_with_logits", bce_with_logits_vjp)
huber = publish_loss("huber", huber_vjp)
softmax_cross_entropy = publish_loss("softmax_cross_entropy", softmax_cross_entropy_vjp)
l1 = publish_loss("l1", l1_vjp)
smooth_l1 = publish_loss("smooth_l1", smooth_l1_vjp)
nll = publish_loss("nll", nll_vjp)
kl_div = publish_loss("kl_div", kl_div_vjp)
gaussian_nll = publish_loss("gaussian_nll", gaussian_nll_vjp)
gaussian_kl = publish_loss("gaussian_kl", gaussian_kl_vjp)
poisson_nll = publish_loss("poisson_nll", poisson_nll_vjp)
margin_ranking = publish_loss("margin_ranking", margin_ranking_vjp)
cosine_embedding = publish_loss("cosine_embedding", cosine_embedding_vjp)
triplet_margin = publish_loss("triplet_margin", triplet_margin_vjp)
ctc = publish_loss("ctc", ctc_vjp)
sigmoid_focal = publish_loss("sigmoid_focal", sigmoid_focal_vjp)
log_cosh = publish_loss("log_cosh", log_cosh_vjp)
hinge_embedding = publish_loss("hinge_embedding", hinge_embedding_vjp)
soft_margin = publish_loss("soft_margin", soft_margin_vjp)
multi_margin = publish_loss("multi_margin", multi_margin_vjp)
multilabel_soft_margin = publish_loss("multilabel_soft_margin", multilabel_soft_margin_vjp)
multilabel_margin = publish_loss("multilabel_margin", multilabel_margin_vjp)
ntxent = publish_loss("ntxent", ntxent_vjp)
cosine_similarity = publish_loss("cosine_similarity", cosine_similarity_vjp)
cosine_distance = publish_loss("cosine_distance", cosine_distance_vjp)
poly_loss_cross_entropy = publish_loss("poly_loss_cross_entropy", poly_loss_cross_entropy_vjp)
hinge = publish_loss("hinge", hinge_vjp)
squared_hinge = publish_loss("squared_hinge", squared_hinge_vjp)
sparsemax = publish_loss("sparsemax", sparsemax_vjp)
multiclass_sparsemax = publish_loss("multiclass_sparsemax", multiclass_sparsemax_vjp)
