"""losses.gaussian_kl: KL(N(mu, e^logvar) || N(0, I)) of pred = (mu, logvar), or to a prior
target (mu_p, logvar_p), summed over the latent axes and reduced over the batch. Finite
differences in float64 at each reduction, the closed form and torch's kl_divergence with
autograd, the pullback's sign and factor by hand, quiet and finite at large |logvar|,
float32 kept, bad inputs named."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _torch_util import numpy_of, t64

from funcdl import losses
from funcdl.testing import check_loss

RNG = np.random.default_rng(20261207)
MU, LV = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))


def closed_form(mu, lv):
    return -0.5 * (1 + lv - mu ** 2 - np.exp(lv)).reshape(len(mu), -1).sum(1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3), (7,)])
def test_matches_finite_differences_in_float64(reduction: str, shape) -> None:
    mu, lv = RNG.normal(size=shape), RNG.normal(size=shape)
    check_loss(losses.gaussian_kl, (mu, lv), None, reduction=reduction)
    per = closed_form(mu, lv)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(losses.gaussian_kl((mu, lv), None, reduction=reduction),
                               want, rtol=1e-13)


def test_pullback_sign_and_factor() -> None:
    # dmu = g mu / N pulls mu to 0; dlogvar = g (e^lv - 1) / 2N pulls logvar to 0
    _, pullback = losses.gaussian_kl.vjp((MU, LV), None)
    dmu, dlv = pullback(3.0)
    np.testing.assert_allclose(dmu, 3.0 * MU / 5, rtol=1e-15)
    np.testing.assert_allclose(dlv, 3.0 * (np.exp(LV) - 1) / 10, rtol=1e-14)
    _, each = losses.gaussian_kl.vjp((MU, LV), None, reduction="none")
    g = np.arange(1.0, 6.0)
    np.testing.assert_allclose(each(g)[0], g[:, None] * MU, rtol=1e-15)
    zero = losses.gaussian_kl.vjp((np.zeros((2, 3)), np.zeros((2, 3))), None)
    assert zero[0] == 0.0 and not any(d.any() for d in zero[1]())


PRIORS = {"scalars": (0.3, 2 * math.log(0.5)), "per unit": (RNG.normal(size=3),
                                                             RNG.normal(size=(1, 3))),
          "per entry": (RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3)))}


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_prior_matches_finite_differences_and_the_closed_form(prior: str, reduction) -> None:
    mu_p, lv_p = PRIORS[prior]
    check_loss(losses.gaussian_kl, (MU, LV), (mu_p, lv_p), reduction=reduction)
    per = 0.5 * (lv_p - LV + (np.exp(LV) + (MU - mu_p) ** 2) / np.exp(lv_p) - 1).sum(1)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(losses.gaussian_kl((MU, LV), (mu_p, lv_p), reduction=reduction),
                               want, rtol=1e-13)
    # the standard normal given as a prior is the default's, bit for bit
    assert losses.gaussian_kl((MU, LV), (0, 0.0)) == losses.gaussian_kl((MU, LV), None)


def test_prior_pullback_sign_and_factor() -> None:
    # dmu = g (mu - mu_p) e^-lv_p / N pulls mu to mu_p; dlv = g (e^(lv - lv_p) - 1) / 2N
    # pulls lv to lv_p
    mu_p, lv_p = 0.3, math.log(4.0)
    _, pullback = losses.gaussian_kl.vjp((MU, LV), (mu_p, lv_p))
    dmu, dlv = pullback(3.0)
    np.testing.assert_allclose(dmu, 3.0 * (MU - 0.3) / 4 / 5, rtol=1e-14)
    np.testing.assert_allclose(dlv, 3.0 * (np.exp(LV) / 4 - 1) / 10, rtol=1e-13)
    at = losses.gaussian_kl.vjp((np.full((2, 3), 0.3), np.full((2, 3), lv_p)), (mu_p, lv_p))
    assert at[0] == 0.0 and not any(d.any() for d in at[1](1.0))


def test_prior_float32_stays_float32() -> None:
    mu, lv = MU.astype(np.float32), LV.astype(np.float32)
    value, pullback = losses.gaussian_kl.vjp((mu, lv), (np.zeros(3), np.log(np.full(3, 2.0))),
                                             reduction="none")
    assert value.dtype == np.float32
    assert all(d.dtype == np.float32 for d in pullback(np.ones(5, np.float32)))


def test_prior_matches_torch_kl_divergence() -> None:
    torch = pytest.importorskip("torch")
    D = torch.distributions
    mu_p, lv_p = PRIORS["per unit"]
    mu, lv = t64(MU, grad=True), t64(LV, grad=True)
    prior = D.Normal(t64(mu_p), torch.exp(0.5 * t64(lv_p)))
    w = D.kl_divergence(D.Normal(mu, torch.exp(0.5 * lv)), prior).sum(-1).mean()
    (0.7 * w).backward()
    value, pullback = losses.gaussian_kl.vjp((MU, LV), (mu_p, lv_p))
    assert value == pytest.approx(float(w.detach()), rel=1e-13)
    dmu, dlv = pullback(0.7)
    np.testing.assert_allclose(dmu, numpy_of(mu.grad), rtol=1e-13)
    np.testing.assert_allclose(dlv, numpy_of(lv.grad), rtol=1e-12, atol=1e-15)


def test_matches_torch_kl_divergence() -> None:
    torch = pytest.importorskip("torch")
    D = torch.distributions
    mu, lv = t64(MU, grad=True), t64(LV, grad=True)
    want = D.kl_divergence(D.Normal(mu, torch.exp(0.5 * lv)), D.Normal(0.0, 1.0)).sum(-1)
    for reduction, w in (("mean", want.mean()), ("sum", want.sum())):
        mu.grad = lv.grad = None
        (0.7 * w).backward(retain_graph=True)
        value, pullback = losses.gaussian_kl.vjp((MU, LV), None, reduction=reduction)
        assert value == pytest.approx(float(w.detach()), rel=1e-13)
        dmu, dlv = pullback(0.7)
        np.testing.assert_allclose(dmu, numpy_of(mu.grad), rtol=1e-13)
        np.testing.assert_allclose(dlv, numpy_of(lv.grad), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logvar_is_quiet_and_finite_where_the_value_is(dtype) -> None:
    # -W error: an overflow warning fails; e^lv past the dtype's range: inf, as mse's d²
    top = 80.0 if dtype == np.float32 else 700.0
    mu = np.zeros((3, 2), dtype)
    lv = np.array([[top, -top], [-3e30, 0.0], [1e-4, -1e-4]], dtype)
    value, pullback = losses.gaussian_kl.vjp((mu, lv), None, reduction="none")
    assert value.dtype == dtype and np.isfinite(value).all()
    _, dlv = pullback(np.ones(3, dtype))
    assert dlv.dtype == dtype and np.isfinite(dlv).all()
    # near lv = 0, e^lv - 1 - lv ≈ lv²/2 = 5e-9: computed with expm1, not lost to rounding
    assert value[2] == pytest.approx(0.5 * 1e-8, rel=1e-2)
    huge = losses.gaussian_kl((mu, np.full((3, 2), 2 * top, dtype)), None)
    big_mu = losses.gaussian_kl((np.full((3, 2), 1e200 if dtype == np.float64 else 1e30,
                                         dtype), mu), None)
    assert huge == np.inf and big_mu == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logvar_where_e_to_it_overflows_but_half_of_it_fits(dtype) -> None:
    # e^lv is past the dtype's largest value, ½ (e^lv - 1 - lv) is not: finite, and right
    lv = np.array([[math.log(float(np.finfo(dtype).max)) + 0.5, 1.0]], dtype)
    value, pullback = losses.gaussian_kl.vjp((np.zeros_like(lv), lv), None, reduction="none")
    _, dlv = pullback(np.ones(1, dtype))
    exact = [math.exp(float(lv[0, 0]) - math.log(2)) - 0.5, 0.5 * math.expm1(1.0)]
    assert value.dtype == dtype and dlv.dtype == dtype
    np.testing.assert_allclose(dlv[0], exact, rtol=1e-5)
    assert float(value[0]) == pytest.approx(exact[0] - 0.5 * float(lv[0, 0]) + exact[1] - 0.5,
                                            rel=1e-5)


def test_float32_stays_float32() -> None:
    pred = (MU.astype(np.float32), LV.astype(np.float32))
    check_loss(losses.gaussian_kl, pred, None, rtol=1e-3, atol=1e-5)
    _, pullback = losses.gaussian_kl.vjp(pred, None)
    assert [d.dtype for d in pullback(np.float64(2.0))] == [np.float32, np.float32]


def test_bad_inputs_are_named() -> None:
    kl = losses.gaussian_kl
    with pytest.raises(TypeError, match=r"gaussian_kl: pred must be the pair \(mu, logvar\)"):
        kl(MU, None)
    with pytest.raises(TypeError, match=r"gaussian_kl: pred must be .* of length 3"):
        kl((MU, LV, LV), None)
    with pytest.raises(TypeError, match=r"gaussian_kl: target must be None .* got ndarray"):
        kl((MU, LV), MU)
    with pytest.raises(TypeError, match=r"gaussian_kl: target must .* tuple of length 3"):
        kl((MU, LV), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"gaussian_kl: target's logvar_p must broadcast to "
                                         r"mu's shape \(5, 3\) .* got \(5, 1, 3\)"):
        kl((MU, LV), (0.0, LV[:, None]))
    with pytest.raises(ValueError, match=r"target's mu_p must broadcast .* got \(2,\)"):
        kl((MU, LV), (np.zeros(2), 0.0))
    with pytest.raises(TypeError, match=r"target's mu_p must hold real numbers, got dtype"):
        kl((MU, LV), (np.array(["a"]), 0.0))
    with pytest.raises(ValueError, match=r"gaussian_kl: mu and logvar .* \(5, 3\) float64 "
                                         r"and \(5, 2\) float64"):
        kl((MU, LV[:, :2]), None)
    with pytest.raises(ValueError, match=r"gaussian_kl: .*float64 and .* float32"):
        kl((MU, LV.astype(np.float32)), None)
    with pytest.raises(ValueError, match=r"gaussian_kl: mu and logvar must be arrays \(N, "):
        kl((np.float64(1.0), np.float64(0.0)), None)
    with pytest.raises(ValueError, match=r"gaussian_kl: .*'avg'"):
        kl((MU, LV), None, reduction="avg")
    with pytest.raises(ValueError, match="gaussian_kl: reduction='mean' over an empty batch"):
        kl((MU[:0], LV[:0]), None)
    assert kl((MU[:0], LV[:0]), None, reduction="sum") == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logvar_near_overflow_keeps_the_dtypes_digits(dtype) -> None:
    # ½ (e^lv - 1) within a few ulps on both sides of where e^lv overflows: e^(lv - log 2)
    # rounds lv - log 2 to lv's spacing (2^-17 near 88 in float32, 2^-43 near 709 in
    # float64), an error of lv·eps (~25 float32, ~500 float64 ulps)
    top = math.log(float(np.finfo(dtype).max))
    lv = np.linspace(top - 1.0, top + 0.69, 401).astype(dtype)[:, None]
    _, pullback = losses.gaussian_kl.vjp((np.zeros_like(lv), lv), None, reduction="sum")
    dlv = pullback(dtype(1.0))[1][:, 0]
    wide = np.longdouble if np.finfo(np.longdouble).eps < 1e-18 else np.float64
    if dtype == np.float64 and wide is np.float64:
        pytest.skip("no extended precision to check float64 against")
    exact = 0.5 * np.expm1(lv[:, 0].astype(wide))
    assert np.isfinite(dlv).all() and dlv.dtype == dtype
    ulps = np.abs(dlv.astype(wide) - exact) / np.spacing(exact.astype(dtype)).astype(wide)
    assert float(ulps.max()) <= 8.0, f"{float(ulps.max()):.1f} ulps off"
