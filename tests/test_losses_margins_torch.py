"""hinge_embedding, soft_margin, multi_margin, multilabel_soft_margin and multilabel_margin
against torch's F.*_loss; sigmoid_focal against a torch-autograd transcription of
torchvision's documented ``sigmoid_focal_loss`` (torchvision itself is rarely installed) and
against optax's ``sigmoid_focal_loss``, log_cosh against optax's ``log_cosh`` when optax
imports: float64 values and gradients, every option and reduction, the kinks included."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional


FOCAL = losses.sigmoid_focal
LOGCOSH = losses.log_cosh
HINGE = losses.hinge_embedding
SOFT = losses.soft_margin
MULTI = losses.multi_margin
MLSOFT = losses.multilabel_soft_margin
MLM = losses.multilabel_margin

RNG = np.random.default_rng(5)
# scores on a grid of quarters: many exact ties, so the kinks (z = 0) are met exactly
X = RNG.integers(-8, 9, (7, 5)) / 4
XR = RNG.normal(size=(7, 5)) * 3  # and off the grid
SIGNS = np.where(RNG.random((7, 5)) > 0.5, 1.0, -1.0)
PROB = RNG.random((7, 5))
HARD = (RNG.random((7, 5)) > 0.5).astype(float)
LABELS = RNG.integers(0, 5, 7)
LISTS = np.array([[3, 0, -1, 1, 1], [0, 0, -1, -1, 4], [-1, 2, 2, 2, 0], [1, 2, 3, 0, 4],
                  [2, 4, 1, -1, -1], [1, 3, -1, -1, -1], [4, -1, 0, 0, 0]])
W = np.array([0.5, 2.0, 0.0, 3.0, 1.5])
TOL = {"rtol": 1e-12, "atol": 1e-14}
REDUCTIONS = ["mean", "sum", "none"]


def _compare(ours, theirs, x, reduction):
    """``ours(x, reduction) -> (value, pullback)`` against ``theirs(tensor, reduction)``,
    value and gradient (at a random cotangent for 'none')."""
    xt = torch.tensor(x, requires_grad=True)
    want = theirs(xt, reduction)
    value, pullback = ours(x, reduction)
    np.testing.assert_allclose(value, want.detach().numpy(), **TOL)
    if reduction == "none":
        c = RNG.normal(size=want.shape)
        want.backward(torch.tensor(c))
    else:
        c = 1.0
        want.backward()
    np.testing.assert_allclose(pullback(c), xt.grad.numpy(), **TOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0, -0.75, 2.25])
@pytest.mark.parametrize("x", [X, XR], ids=["grid", "normal"])
def test_hinge_embedding(x, margin, reduction):
    _compare(lambda a, r: HINGE.vjp(a, SIGNS, margin, r),
             lambda a, r: F.hinge_embedding_loss(a, torch.tensor(SIGNS), margin=margin,
                                                 reduction=r), x, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("x", [X, XR, XR * 50], ids=["grid", "normal", "large"])
def test_soft_margin(x, reduction):
    _compare(lambda a, r: SOFT.vjp(a, SIGNS, r),
             lambda a, r: F.soft_margin_loss(a, torch.tensor(SIGNS), reduction=r), x,
             reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0, -0.25])
@pytest.mark.parametrize("weight", [None, W], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("x", [X, XR], ids=["grid", "normal"])
def test_multi_margin(x, weight, margin, p, reduction):
    w = None if weight is None else torch.tensor(weight)
    _compare(lambda a, r: MULTI.vjp(a, LABELS, p, margin, weight, r),
             lambda a, r: F.multi_margin_loss(a, torch.tensor(LABELS), p=p, margin=margin,
                                              weight=w, reduction=r), x, reduction)


def test_multi_margin_one_example():
    for label in range(5):
        _compare(lambda a, r, lb=label: MULTI.vjp(a, lb, 2, 0.5, W, r),
                 lambda a, r, lb=label: F.multi_margin_loss(a, torch.tensor(lb), p=2,
                                                            margin=0.5, weight=torch.tensor(W),
                                                            reduction=r), X[0], "sum")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, W, W[None, :]], ids=["none", "per-class", "row"])
@pytest.mark.parametrize("target", [PROB, HARD], ids=["soft", "hard"])
@pytest.mark.parametrize("x", [X, XR * 10], ids=["grid", "large"])
def test_multilabel_soft_margin(x, target, weight, reduction):
    w = None if weight is None else torch.tensor(weight)
    _compare(lambda a, r: MLSOFT.vjp(a, target, weight, r),
             lambda a, r: F.multilabel_soft_margin_loss(a, torch.tensor(target), weight=w,
                                                        reduction=r), x, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("x", [X, X * 0.5, XR * 0.3], ids=["grid", "half-grid", "normal"])
def test_multilabel_margin(x, reduction):
    _compare(lambda a, r: MLM.vjp(a, LISTS, r),
             lambda a, r: F.multilabel_margin_loss(a, torch.tensor(LISTS), reduction=r), x,
             reduction)
    # one example, torch's 1-D form
    _compare(lambda a, r: MLM.vjp(a, LISTS[0], r),
             lambda a, r: F.multilabel_margin_loss(a, torch.tensor(LISTS[0]), reduction=r),
             x[0], reduction)


# ---------------------------------------------------------------------------- focal

def torchvision_sigmoid_focal(inputs, targets, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss as its documentation writes it, in torch."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [2.0, 0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0, 0.0, 1.0, 0.8])
@pytest.mark.parametrize("target", [PROB, HARD], ids=["soft", "hard"])
def test_sigmoid_focal_against_torchvisions_formula(target, alpha, gamma, reduction):
    _compare(lambda a, r: FOCAL.vjp(a, target, alpha, gamma, r),
             lambda a, r: torchvision_sigmoid_focal(a, torch.tensor(target), alpha, gamma, r),
             XR, reduction)


# ---------------------------------------------------------------------------- optax

def _optax():
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    return optax, jax


@pytest.mark.parametrize("gamma", [2.0, 0.0, 0.5, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.0, 1.0, 0.6])
@pytest.mark.parametrize("target", [PROB, HARD], ids=["soft", "hard"])
def test_sigmoid_focal_against_optax(target, alpha, gamma):
    optax, jax = _optax()
    with jax.enable_x64(True):
        def f(z):
            return optax.sigmoid_focal_loss(z, target, alpha=alpha, gamma=gamma)

        want, vjp = jax.vjp(f, jax.numpy.asarray(XR))
        c = RNG.normal(size=XR.shape)
        (dz,) = vjp(jax.numpy.asarray(c))
        value, pullback = FOCAL.vjp(XR, target, alpha, gamma, "none")
        assert np.asarray(want).dtype == np.float64
        np.testing.assert_allclose(value, np.asarray(want), **TOL)
        np.testing.assert_allclose(pullback(c), np.asarray(dz), **TOL)


def test_log_cosh_against_optax():
    optax, jax = _optax()
    t = RNG.normal(size=XR.shape)
    p = np.concatenate([XR, t + RNG.normal(size=XR.shape) * 1e-3, t + 40])
    tt = np.concatenate([t, t, t])
    with jax.enable_x64(True):
        want, vjp = jax.vjp(lambda a: optax.log_cosh(a, tt), jax.numpy.asarray(p))
        c = RNG.normal(size=p.shape)
        (dp,) = vjp(jax.numpy.asarray(c))
    value, pullback = LOGCOSH.vjp(p, tt, "none")
    # optax's logaddexp(d, -d) - log 2 cancels near d = 0 (absolute error ~1e-16 there)
    np.testing.assert_allclose(value, np.asarray(want), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(pullback(c), np.asarray(dp), **TOL)
    assert LOGCOSH(p, tt) == pytest.approx(float(np.mean(np.asarray(want))), rel=1e-12)
