"""Losses whose finite inputs reached NaN, a warning or a wrong value through their
reduction or pullback rather than their terms: a sum whose partial sums overflow with both
signs, a loss scale above 1 on a huge slope, class weights summing past float64's range,
CTC on log-probabilities near the dtype's minimum, an eps past the data's dtype. The suite
runs with -W error, so a NumPy warning fails these tests too."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import losses


def test_a_sum_of_huge_terms_of_both_signs_is_their_sum_not_nan():
    # NumPy's pairwise sum took +inf in one partial sum and -inf in another: NaN (silently
    # for hinge_embedding, with a warning for poisson_nll), where the terms' sum fits
    x, y = np.zeros(16), -np.ones(16)
    x[[0, 8]] = -1e308  # y = -1: terms 1 - x = 1e308
    x[[1, 9]] = -1e308
    y[[1, 9]] = 1  # y = +1: terms x = -1e308
    per = losses.hinge_embedding(x, y, reduction="none")
    assert losses.hinge_embedding(x, y, reduction="sum") == math.fsum(per) == 12.0
    assert losses.hinge_embedding(x, y) == pytest.approx(12.0 / 16, rel=1e-15)
    p, t = np.zeros(16), np.zeros(16)
    p[1] = 1000.0  # e^1000: an infinite term, so the sum is +inf
    p[[0, 8]], t[[0, 8]] = 1.0, 1e308  # terms -p t = -1e308
    assert losses.poisson_nll(p, t, reduction="sum") == math.inf
    assert losses.poisson_nll(p, t) == math.inf
    big = np.full(4, 2e38, np.float32)  # a float32 sum past float32's range: a float64 one
    assert losses.l1(big, 0 * big) == pytest.approx(2e38, rel=1e-6)


@pytest.mark.parametrize("loss, pred, target, slope", [
    (losses.poisson_nll, np.float32(80.0), np.float32(0.0), math.exp(80.0)),
    (losses.kl_div, np.float32(-1e-3), np.float32(1e36), -1e36),
])
def test_a_loss_scale_above_one_on_a_huge_slope_is_inf_without_a_warning(loss, pred, target,
                                                                          slope):
    # a finite value, so the pullback ran without an errstate: 65536 (a mixed-precision
    # loss scale) times a slope near float32's maximum warned of overflow
    value, pullback = loss.vjp(np.array([pred]), np.array([target]))
    assert math.isfinite(value)
    assert pullback(1.0)[0] == pytest.approx(slope, rel=1e-5)
    assert pullback(-0.5)[0] == pytest.approx(-0.5 * slope, rel=1e-5)
    assert pullback(65536.0)[0] == math.copysign(math.inf, slope)
    assert pullback(np.float64(-65536.0))[0] == -math.copysign(math.inf, slope)
    assert pullback(2.0)[0] == pytest.approx(2 * slope, rel=1e-5)  # in range: a number


def test_class_weights_summing_past_float64s_range_keep_the_weighted_mean():
    # Σ w of 1e308 and 1.7e308 is inf: the mean, Σ w l / Σ w, was 0 (or NaN), silently
    lp = np.log(np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]))
    y = np.array([0, 1, 1])
    w = np.array([1e308, 1.7e308])
    small = w / 1e300
    for loss in (losses.nll, losses.softmax_cross_entropy):
        value, pullback = loss.vjp(lp, y, weight=w)
        want, want_pullback = loss.vjp(lp, y, weight=small)
        assert value == pytest.approx(want, rel=1e-14)
        np.testing.assert_allclose(pullback(1.0), want_pullback(1.0), rtol=1e-14)
    terms = -lp[np.arange(3), y]
    assert losses.nll(lp, y, weight=w) == pytest.approx(
        (1.0 * terms[0] + 1.7 * terms[1:].sum()) / 4.4, rel=1e-14)
    assert losses.nll(np.full((2, 2), -0.5), np.array([0, 0]),
                      weight=np.array([1e308, 1.0])) == 0.5
    assert losses.nll(lp, y, weight=w, reduction="sum") == math.inf  # the sum is inf


@pytest.mark.parametrize("dtype, low", [(np.float32, -3e38), (np.float64, -1e308)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ctc_on_log_probabilities_near_the_dtypes_minimum_is_inf_without_a_warning(
        dtype, low, reduction):
    # -log p of three steps of -3e38 is 9e38: its cast to float32 warned, and float64's
    # alpha recursion overflowed with a warning
    lp = np.full((1, 3, 2), low, dtype)
    value = losses.ctc(lp, np.array([[1]]), reduction=reduction)
    assert np.all(np.asarray(value) == np.inf)
    fine = np.log(np.full((1, 3, 2), 0.5, dtype))
    both = np.concatenate([lp, fine])
    value, pullback = losses.ctc.vjp(both, np.array([[1], [1]]), zero_infinity=True)
    want, want_pullback = losses.ctc.vjp(fine, np.array([[1]]), zero_infinity=True)
    assert value == pytest.approx(want / 2, rel=1e-6)
    g = pullback(1.0)
    assert np.all(g[0] == 0)
    np.testing.assert_allclose(g[1], want_pullback(1.0)[0] / 2, rtol=1e-6)


def test_triplet_margin_refuses_an_eps_or_margin_past_the_datas_dtype():
    # an eps of 1e300 is inf in float32: |a - p + eps| was inf - inf, a NaN loss
    a, p = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    for option in ("eps", "margin"):
        with pytest.raises(ValueError, match=rf"triplet_margin: {option}=1e\+300 is past the "
                                             rf"range of float32"):
            losses.triplet_margin((a, p, a), None, **{option: 1e300})
    a64, p64 = a.astype(np.float64), p.astype(np.float64)
    assert losses.triplet_margin((a64, p64, a64), None, eps=1e300) == 1.0  # the margin
