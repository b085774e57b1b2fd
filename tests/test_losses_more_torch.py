"""kl_div, gaussian_nll, poisson_nll, margin_ranking, cosine_embedding and triplet_margin
against torch's F.kl_div, F.gaussian_nll_loss, F.poisson_nll_loss, F.margin_ranking_loss,
F.cosine_embedding_loss and F.triplet_margin_loss: float64 values and gradients (of every
input of a tuple pred), every option."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from funcdl import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(11)
Z = RNG.normal(size=(5, 4)) * 2
LOGP = Z - np.log(np.exp(Z).sum(-1, keepdims=True))
PROB = RNG.random((5, 4))
PROB[1, 2] = 0.0
PROB /= PROB.sum(-1, keepdims=True)
T = RNG.normal(size=(5, 4))
COUNTS = RNG.integers(0, 7, (5, 4)).astype(float)
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _cot(reduction, shape):
    return 1.0 if reduction != "none" else RNG.normal(size=shape)


def _torch_grad(out, cot, *leaves):
    out.backward(None if isinstance(cot, float) else torch.as_tensor(cot, dtype=torch.float64))
    return [leaf.grad.numpy() for leaf in leaves]


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    t = np.log(PROB + 0.01) if log_target else PROB
    p = torch.tensor(LOGP, requires_grad=True)
    with warnings.catch_warnings():  # torch's 'mean' warns that it is not 'batchmean'
        warnings.simplefilter("ignore")
        want = F.kl_div(p, torch.tensor(t), reduction=reduction, log_target=log_target)
    value, pullback = losses.kl_div.vjp(LOGP, t, reduction, log_target=log_target)
    np.testing.assert_allclose(value, want.detach().numpy(), **TOL)
    c = _cot(reduction, LOGP.shape)
    (dp,) = _torch_grad(want, c, p)
    np.testing.assert_allclose(pullback(c), dp, **TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("eps", [1e-8, 0.5])
def test_poisson_nll(reduction, log_input, full, eps):
    x = Z if log_input else np.exp(Z) * (RNG.random(Z.shape) > 0.2)  # some rates of 0
    p = torch.tensor(x, requires_grad=True)
    want = F.poisson_nll_loss(p, torch.tensor(COUNTS), log_input=log_input, full=full,
                              eps=eps, reduction=reduction)
    value, pullback = losses.poisson_nll.vjp(x, COUNTS, reduction, log_input=log_input,
                                             full=full, eps=eps)
    np.testing.assert_allclose(value, want.detach().numpy(), **TOL)
    c = _cot(reduction, x.shape)
    (dp,) = _torch_grad(want, c, p)
    np.testing.assert_allclose(pullback(c), dp, **TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("var_shape", ["full", "row", "row-1", "axis0", "clamped"])
@pytest.mark.parametrize("eps", [1e-6, 0.3])
def test_gaussian_nll_mean_and_var_gradients(reduction, full, var_shape, eps):
    v = RNG.random((5, 4)) + 0.05
    var = {"full": v, "row": v[:, 0], "row-1": v[:, :1], "axis0": v[:1],
           "clamped": np.where(v < 0.5, 1e-9, v)}[var_shape]
    m = torch.tensor(Z, requires_grad=True)
    tv = torch.tensor(var, requires_grad=True)
    want = F.gaussian_nll_loss(m, torch.tensor(T), tv, full=full, eps=eps, reduction=reduction)
    value, pullback = losses.gaussian_nll.vjp((Z, var), T, reduction=reduction, full=full,
                                              eps=eps)
    np.testing.assert_allclose(value, want.detach().numpy(), **TOL)
    c = _cot(reduction, Z.shape)
    dm_t, dv_t = _torch_grad(want, c, m, tv)
    dm, dv = pullback(c)
    np.testing.assert_allclose(dm, dm_t, **TOL)
    np.testing.assert_allclose(dv, dv_t, **TOL)
    # var as data: the same value and dmean
    value2, pullback2 = losses.gaussian_nll.vjp(Z, T, var, reduction, full=full, eps=eps)
    np.testing.assert_allclose(value2, value, rtol=0, atol=0)
    np.testing.assert_allclose(pullback2(c), dm, rtol=0, atol=0)


def test_gaussian_nll_scalar_var_as_data():
    want = F.gaussian_nll_loss(torch.tensor(Z), torch.tensor(T), 0.7)
    assert losses.gaussian_nll(Z, T, 0.7) == pytest.approx(want.item(), rel=1e-12)


X1, X2, X3 = RNG.normal(size=(3, 6, 4))
X2[0, 0] = X1[0, 0]  # a margin_ranking hinge at exactly 0: torch's gradient passes there
SIGNS = np.where(RNG.random((6, 4)) > 0.5, 1.0, -1.0)


def _check_tuple(loss, xs, target, want_fn, reduction, **kw):
    leaves = [torch.tensor(x, requires_grad=True) for x in xs]
    want = want_fn(*leaves, reduction=reduction)
    value, pullback = loss.vjp(xs, target, reduction=reduction, **kw)
    np.testing.assert_allclose(value, want.detach().numpy(), **TOL)
    c = _cot(reduction, np.shape(value))
    for got, w in zip(pullback(c), _torch_grad(want, c, *leaves), strict=True):
        np.testing.assert_allclose(got, w, **TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [0.0, 0.4])
def test_margin_ranking_and_cosine_embedding(reduction, margin):
    y, yc = SIGNS, SIGNS[:, 0]
    _check_tuple(losses.margin_ranking, (X1, X2), y,
                 lambda a, b, reduction: F.margin_ranking_loss(
                     a, b, torch.tensor(y), margin=margin, reduction=reduction),
                 reduction, margin=margin)
    _check_tuple(losses.cosine_embedding, (X1, X2), yc,
                 lambda a, b, reduction: F.cosine_embedding_loss(
                     a, b, torch.tensor(yc), margin=margin, reduction=reduction),
                 reduction, margin=margin)
    # one pair, 1-D inputs and a 0-d target, as torch takes them
    _check_tuple(losses.cosine_embedding, (X1[1], X2[1]), -1.0,
                 lambda a, b, reduction: F.cosine_embedding_loss(
                     a, b, torch.tensor(-1.0), margin=-0.5, reduction=reduction),
                 reduction, margin=-0.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize(("margin", "eps"), [(1.0, 1e-6), (2.5, 0.1)])
def test_triplet_margin(reduction, p, swap, margin, eps):
    _check_tuple(losses.triplet_margin, (X1, X2, X3), None,
                 lambda a, b, n, reduction: F.triplet_margin_loss(
                     a, b, n, margin=margin, p=p, eps=eps, swap=swap, reduction=reduction),
                 reduction, margin=margin, p=p, eps=eps, swap=swap)
