"""Tests that kill mutants which survived the rest of the suite (a mutation run over the
losses, autodiff, metrics and the combinators): class weights on probability targets, the
poly loss of a target whose mass is not 1, triplet_margin at its kink and at the swap's
tie, log_loss's upper clip, the weighted average when every kept weight is 0, and
MaskedMean over a single valid step. By hand (closed forms), by finite differences, and
against torch / scikit-learn where they are installed."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import losses, metrics, testing
from funcdl.testing import check_vjp

RNG = np.random.default_rng(7)


def _logsoftmax(z):
    s = z - z.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


# ------------------------------------------------- softmax_cross_entropy: weights, probs

Z = RNG.normal(size=(4, 3)) * 2
PROBS = RNG.dirichlet(np.ones(3), 4)
W = np.array([0.5, 2.0, 1.5])


def test_class_weights_weigh_probability_targets_by_hand():
    """-Σ_c w_c t_c log p_c per example, the mean over examples (not over the weights, as
    for labels); dz = p Σ_c w_c t_c - w t. A weight dropped on this path went unseen."""
    logp = _logsoftmax(Z)
    wt = W * PROBS
    per = -(wt * logp).sum(-1)
    ce = losses.softmax_cross_entropy
    np.testing.assert_allclose(ce(Z, PROBS, reduction="none", weight=W), per, rtol=1e-13)
    assert ce(Z, PROBS, weight=W) == pytest.approx(per.mean(), rel=1e-13)
    assert ce(Z, PROBS, weight=W) != pytest.approx(ce(Z, PROBS), rel=1e-3)
    dz = np.exp(logp) * wt.sum(-1, keepdims=True) - wt
    np.testing.assert_allclose(ce.vjp(Z, PROBS, weight=W)[1](), dz / len(Z), rtol=1e-12)
    testing.check_loss(ce, Z, PROBS, weight=W)
    testing.check_loss(ce, Z, PROBS, weight=W, label_smoothing=0.2)


def test_class_weights_on_probability_targets_match_torch():
    torch = pytest.importorskip("torch")
    zt = torch.tensor(Z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(zt, torch.tensor(PROBS), weight=torch.tensor(W),
                                             label_smoothing=0.1)
    want.backward()
    value, pullback = losses.softmax_cross_entropy.vjp(Z, PROBS, weight=W,
                                                       label_smoothing=0.1)
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(pullback(), zt.grad.numpy(), rtol=1e-10, atol=1e-14)


# ------------------------------------------------- poly_loss_cross_entropy: mass != 1

def test_poly_loss_of_a_target_whose_rows_do_not_sum_to_one():
    """``-Σ t log p + ε Σ t (1 - p)``, ``dz = p Σt - t - ε p (t - <t, p>)``: with rows of
    mass 0.5 and 1.6 the Σt factor shows (a gradient of p - t passed every other test)."""
    t = np.array([[0.2, 0.3, 0.0], [0.9, 0.0, 0.7], [0.0, 0.0, 1.0], [0.1, 0.1, 0.1]])
    eps = 2.0
    logp = _logsoftmax(Z)
    p = np.exp(logp)
    mass, tp = t.sum(-1, keepdims=True), (t * p).sum(-1, keepdims=True)
    per = -(t * logp).sum(-1) + eps * (mass - tp)[:, 0]
    dz = p * mass - t - eps * p * (t - tp)
    loss = losses.poly_loss_cross_entropy
    np.testing.assert_allclose(loss(Z, t, epsilon=eps, reduction="none"), per, rtol=1e-13)
    np.testing.assert_allclose(loss.vjp(Z, t, epsilon=eps, reduction="sum")[1](), dz,
                               rtol=1e-12, atol=1e-15)
    testing.check_loss(loss, Z, t, epsilon=eps)


# ------------------------------------------------- triplet_margin: kink and swap tie

A = np.array([[0.0, 0.0], [0.5, -1.0]])
POS = np.array([[1.0, 0.0], [0.5, 1.0]])  # d(a, pos) = 1 and 2
NEG = np.array([[2.0, 0.0], [0.5, 2.0]])  # d(a, neg) = 2 and 3: z = 1 - 2 + 1 = 0, as 2 - 3 + 1


def test_triplet_hinge_at_zero_passes_the_gradient_as_torchs_clamp():
    """At ``d(a, pos) - d(a, neg) + margin = 0`` exactly, torch's clamp_min passes the
    gradient (its mask is >= 0); a strict > would give zeros there."""
    value, pullback = losses.triplet_margin.vjp((A, POS, NEG), None, "sum", margin=1.0,
                                                eps=0.0)
    assert value == 0.0
    da, dpos, dneg = pullback(1.0)
    gp = np.array([[-1.0, 0.0], [0.0, -1.0]])  # (a - pos) / |a - pos|
    gn = np.array([[-1.0, 0.0], [0.0, -1.0]])  # (a - neg) / |a - neg|
    np.testing.assert_allclose(da, gp - gn, atol=1e-15)
    np.testing.assert_allclose(dpos, -gp, atol=1e-15)
    np.testing.assert_allclose(dneg, gn, atol=1e-15)


def test_triplet_swap_at_a_tie_splits_the_gradient_half_and_half():
    """swap=True: ``min(d(a, neg), d(pos, neg))``; with pos = a the two tie and, as
    torch.minimum's, each gets half the gradient."""
    a = RNG.normal(size=(3, 4))
    neg = RNG.normal(size=(3, 4))
    pos = a.copy()
    eps, margin = 1e-6, 5.0  # the hinge is active: d(a, pos) = |eps| is tiny
    value, pullback = losses.triplet_margin.vjp((a, pos, neg), None, "sum", margin=margin,
                                                eps=eps, swap=True)
    v_p, v_n = a - pos + eps, a - neg + eps
    dp, dn = np.linalg.norm(v_p, axis=-1), np.linalg.norm(v_n, axis=-1)
    assert value == pytest.approx((dp - dn + margin).sum(), rel=1e-13)
    gp, gn = v_p / dp[:, None], v_n / dn[:, None]  # d(pos, neg)'s gradient is gn too
    da, dpos, dneg = pullback(1.0)
    np.testing.assert_allclose(da, gp - 0.5 * gn, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dpos, -gp - 0.5 * gn, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dneg, gn, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", ["kink", "swap-tie"])
def test_triplet_kink_and_tie_match_torch(case):
    torch = pytest.importorskip("torch")
    if case == "kink":
        xs, kw = (A, POS, NEG), {"margin": 1.0, "eps": 0.0}
    else:
        a = RNG.normal(size=(3, 4))
        xs, kw = (a, a.copy(), RNG.normal(size=(3, 4))), {"margin": 5.0, "swap": True}
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    want = torch.nn.functional.triplet_margin_loss(*ts, reduction="sum", **kw)
    want.backward()
    value, pullback = losses.triplet_margin.vjp(xs, None, "sum", **kw)
    assert value == pytest.approx(want.item(), rel=1e-12, abs=1e-15)
    for got, t in zip(pullback(1.0), ts):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-14)


# ------------------------------------------------- metrics

def test_log_loss_clips_a_certain_right_prediction_at_one_minus_eps():
    """probs clipped to [eps, 1 - eps]: a probability of 1 for the true class costs
    -log(1 - eps), not 0 (sklearn's clip)."""
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1])
    assert metrics.log_loss(y, probs, eps=0.1) == pytest.approx(-np.log(0.9), rel=1e-14)
    assert metrics.log_loss(y, np.array([0.0, 1.0]), eps=0.25) == pytest.approx(
        -np.log(0.75), rel=1e-14)
    assert metrics.log_loss(y, probs) == pytest.approx(-np.log1p(-np.finfo(float).eps),
                                                       rel=1e-6)


def test_weighted_average_whose_kept_weights_are_all_zero_is_the_plain_mean():
    """zero_division=nan drops the classes with an undefined ratio; when every class left
    has support 0, sklearn's average ignores the weights (no ZeroDivisionError)."""
    y_true, y_pred = np.array([0, 0, 2]), np.array([1, 1, 1])
    got = metrics.precision_recall_f1(y_true, y_pred, "weighted", zero_division=np.nan)
    assert got == (0.0, 0.0, 0.0)
    try:
        from sklearn.metrics import precision_recall_fscore_support
    except ImportError:
        return
    want = precision_recall_fscore_support(y_true, y_pred, average="weighted",
                                           zero_division=np.nan)[:3]
    np.testing.assert_allclose(got, want)


# ------------------------------------------------- MaskedMean over one valid step

@pytest.mark.parametrize("kind", ["padding", "lengths"])
def test_masked_mean_of_a_single_valid_step_is_that_step(kind):
    """count = 1 is the boundary of max(1, count): the mean of one step is the step, and
    its gradient the cotangent itself (a divisor of 2 there passed every other test)."""
    x = RNG.normal(size=(3, 4, 2))
    lengths = np.array([1, 4, 0])
    pad = np.arange(4) >= lengths[:, None]
    side = pad if kind == "padding" else lengths
    layer = L.MaskedMean(kind)
    y, pullback = layer.vjp((), (x, side))
    np.testing.assert_allclose(y[0], x[0, 0], rtol=1e-15)
    np.testing.assert_allclose(y[1], x[1].mean(0), rtol=1e-14)
    np.testing.assert_allclose(y[2], 0.0)
    dy = RNG.normal(size=(3, 2))
    _, (dx, dside) = pullback(dy)
    assert dside is None
    np.testing.assert_allclose(dx[0, 0], dy[0], rtol=1e-15)
    np.testing.assert_allclose(dx[0, 1:], 0.0)
    np.testing.assert_allclose(dx[1], np.broadcast_to(dy[1] / 4, (4, 2)), rtol=1e-14)
    np.testing.assert_allclose(dx[2], 0.0)
    check_vjp(layer, (), (x, side))
