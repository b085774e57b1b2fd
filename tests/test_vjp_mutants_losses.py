"""Every public loss's pullback under reduction='sum' and 'none', in float64, without peers.

A mutation sweep (each loss's pullback negated or doubled only for one reduction) found
these paths checked by the torch and optax cross-checks alone, which CI, without peers,
skips: cosine_distance's 'none' (its sign, ``-c`` per row, checked nowhere, peers or not),
l1's, smooth_l1's and poly_loss_cross_entropy's 'none', hinge's and squared_hinge's 'sum'.
Here every loss is checked at both against finite differences (``check_loss``: a random
cotangent, so a wrong sign or factor fails) and against its 'mean' pullback: ``d sum = n
d mean``, and ``d none`` at a cotangent of ones is ``d sum``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from funcdl import losses
from funcdl.testing import check_loss

RNG = np.random.default_rng(20250611)


def _cases() -> list[tuple[str, Any, Any, Any, dict[str, Any]]]:
    z, y = RNG.normal(size=(4, 5)) * 3, RNG.integers(0, 5, 4)
    pr, t01 = RNG.uniform(0.05, 0.95, (4, 5)), (RNG.uniform(size=(4, 5)) < 0.5) * 1.0
    pm = 2 * t01 - 1
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    w5 = RNG.uniform(0.5, 2.0, 5)
    z[np.abs(np.abs(z) - 1) < 0.05] += 0.2  # away from the hinges' kinks at |z| = 1
    return [
        ("mse", losses.mse, z, pr, {}),
        ("l1", losses.l1, z, pr, {}),
        ("smooth_l1", losses.smooth_l1, z, pr, {"beta": 0.3}),
        ("huber", losses.huber, z, pr, {"delta": 0.3}),
        ("log_cosh", losses.log_cosh, z, pr, {}),
        ("bce", losses.bce, pr, t01, {}),
        ("bce_with_logits", losses.bce_with_logits, z, pr, {"pos_weight": w5}),
        ("softmax_cross_entropy", losses.softmax_cross_entropy, z, y,
         {"weight": w5, "label_smoothing": 0.1}),
        ("nll", losses.nll, lp, y, {"weight": w5}),
        ("kl_div", losses.kl_div, lp, pr, {}),
        ("poisson_nll", losses.poisson_nll, z / 3, t01, {"full": True}),
        ("gaussian_nll", losses.gaussian_nll, (z, pr), t01, {}),
        ("gaussian_kl", losses.gaussian_kl, (z, pr - 0.5), None, {}),
        ("sigmoid_focal", losses.sigmoid_focal, z, t01, {}),
        ("poly_loss_cross_entropy", losses.poly_loss_cross_entropy, z, y, {"epsilon": 2.0}),
        ("multi_margin", losses.multi_margin, z, y, {"p": 2, "weight": w5}),
        ("multilabel_soft_margin", losses.multilabel_soft_margin, z, t01, {}),
        ("multilabel_margin", losses.multilabel_margin, z,
         np.array([[1, 0, -1, 2, 2], [4, -1, 0, 0, 0], [0, 1, 2, 3, 4], [-1, 1, 1, 1, 1]]), {}),
        ("soft_margin", losses.soft_margin, z, pm, {}),
        ("hinge_embedding", losses.hinge_embedding, z, pm, {"margin": 0.5}),
        ("hinge", losses.hinge, z, pm, {}),
        ("squared_hinge", losses.squared_hinge, z, pm, {}),
        ("sparsemax", losses.sparsemax, z, t01, {}),
        ("multiclass_sparsemax", losses.multiclass_sparsemax, z, y, {}),
        ("cosine_similarity", losses.cosine_similarity, z, pr, {"epsilon": 0.1}),
        ("cosine_distance", losses.cosine_distance, z, pr, {"epsilon": 0.1}),
        ("cosine_embedding", losses.cosine_embedding, (z, pr), np.array([1, -1, 1, -1]), {}),
        ("margin_ranking", losses.margin_ranking, (z[:, 0], pr[:, 0]),
         np.array([1, -1, 1, -1]), {"margin": 0.2}),
        ("triplet_margin", losses.triplet_margin, (z, pr, t01), None, {"swap": True}),
        ("ntxent", losses.ntxent, z, np.array([0, 1, 0, 1]), {}),
        ("ctc", losses.ctc, np.stack([lp, lp[::-1]], 1),
         np.array([[1, 2], [3, 3], [4, 0], [2, 2]]),
         {"target_lengths": np.array([2, 1, 1, 0]), "zero_infinity": True}),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def test_every_public_loss_is_here() -> None:
    # a loss added later gets its reductions checked too, or this fails
    public = {n for n in losses.__all__ if isinstance(getattr(losses, n), losses.Loss)}
    assert public == set(IDS)


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize(("name", "loss", "pred", "target", "kw"), CASES, ids=IDS)
def test_reduction_pullback_matches_finite_differences(name: str, loss: Any, pred: Any,
                                                       target: Any, kw: dict[str, Any],
                                                       reduction: str) -> None:
    check_loss(loss, pred, target, reduction=reduction, rtol=1e-6, **kw)


def _grad(loss: Any, pred: Any, target: Any, kw: dict[str, Any], reduction: str,
          g: Any) -> list[np.ndarray]:
    value, pullback = loss.vjp(pred, target, reduction=reduction, **kw)
    d = pullback(np.ones(np.shape(value)) if g is None else g)
    return [np.asarray(a) for a in (d if isinstance(d, tuple) else (d,))]


@pytest.mark.parametrize(("name", "loss", "pred", "target", "kw"), CASES, ids=IDS)
def test_sum_and_none_pullbacks_are_the_means_scaled(name: str, loss: Any, pred: Any,
                                                     target: Any, kw: dict[str, Any]) -> None:
    mean_value = loss(pred, target, reduction="mean", **kw)
    sum_value = loss(pred, target, reduction="sum", **kw)
    # the mean's divisor, read off the values (elements, examples, positive pairs or
    # weights, by the loss): no table of conventions to keep in step with the code
    n = float(sum_value) / float(mean_value)
    d_mean = _grad(loss, pred, target, kw, "mean", 1.0)
    d_sum = _grad(loss, pred, target, kw, "sum", 1.0)
    d_none = _grad(loss, pred, target, kw, "none", None)
    for m, s, e in zip(d_mean, d_sum, d_none, strict=True):
        assert np.abs(s).max() > 0
        if name != "ctc":  # torch's ctc mean divides each example by its target length first
            np.testing.assert_allclose(s, n * m, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(e, s, rtol=1e-10, atol=1e-12)
