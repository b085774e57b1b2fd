"""Tests that kill mutants which survived the rest of the suite (a mutation run over
funcdl.random's samplers, the special functions, the simplex projection, funcdl.data's sets
and funcdl.debug): Poisson's PTRS acceptance test decided point by point against Hörmann's
exact criterion (a squeeze, a constant or a quick rejection off by a little biases only the
tails, which no sample-size test sees), the integer range of signed count dtypes, a rank-one
cov whose eigenvalue rounds below 0, blobs' centres over the whole box, data.moments on a
nearly constant and on a subnormal column, and check_finite(inf=False) on complex leaves."""

from __future__ import annotations

import math

import numpy as np
import pytest

import funcdl as fd
from funcdl import data, random
from funcdl._dist_discrete import _ptrs

K = random.key(2026)


# ------------------------------------------------------------- poisson: PTRS, pointwise

class _Draws:
    """A stand-in for the Generator ``_ptrs`` draws from: the given u + 1/2 and v for the
    first round; in every later round u = 1/2 - 2**-53 and v = 0, which PTRS always accepts
    with a count near 1e15, a marker no first-round draw of the grid below reaches. A
    sampler that keeps rejecting it fails after a few rounds rather than looping."""

    def __init__(self, u, v):
        self.rounds, self.later = [u + 0.5, v], 0

    def random(self, size):
        if self.rounds:
            return self.rounds.pop(0)
        self.later += 1
        if self.later > 10:
            raise AssertionError("PTRS rejected the marker proposal u = 1/2, v = 0")
        self.rounds = [np.zeros(size)]  # the v of this later round
        return np.full(size, 1.0 - 2.0 ** -53)


def _hormann(lam, u, v):
    """PTRS's count and exact acceptance (W. Hörmann 1993, step 3 without the squeeze):
    keep k when k >= 0 and v alpha^-1 / (a / us² + b) <= lam^k e^-lam / k!, in logs."""
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    us = 0.5 - np.abs(u)
    k = np.floor((2 * a / us + b) * u + lam + 0.43)
    lhs = np.log(v) + math.log(inv_alpha) - np.log(a / us ** 2 + b)
    rhs = np.array([-lam + kk * math.log(lam) - math.lgamma(kk + 1) if kk >= 0 else -np.inf
                    for kk in k])
    return k, rhs - lhs


@pytest.mark.parametrize("lam", [10.0, 37.5, 1000.0])
def test_poisson_ptrs_keeps_exactly_the_points_hormanns_test_keeps(lam):
    """On a grid of (u, v), every proposal is kept iff the exact test keeps it (points
    within 1e-9 of its boundary left out): the squeeze (us >= 0.07, v <= v_r) only ever
    keeps what the exact test keeps, and the quick rejection (us < 0.013, v > us) only
    rejects what it rejects. A squeeze loosened by 0.05, 1/alpha off by e^0.1 or the quick
    rejection's v > us turned round moved samples of the far tails, which a KS test of
    200k samples cannot see."""
    u = np.concatenate([np.linspace(-0.4995, 0.4995, 301), [-0.495, -0.492, 0.492, 0.495]])
    v = np.concatenate([np.geomspace(1e-6, 1e-2, 13), np.linspace(0.01, 0.99, 99)])
    uu, vv = (g.ravel() for g in np.meshgrid(u, v))
    want_k, margin = _hormann(lam, uu, vv)
    clear = np.abs(margin) > 1e-9
    uu, vv, want_k, margin = uu[clear], vv[clear], want_k[clear], margin[clear]
    got = _ptrs(_Draws(uu, vv), np.array([lam]), uu.size)
    kept = got < 1e12  # kept in the first round; the rest carry the later rounds' marker
    np.testing.assert_array_equal(kept, margin > 0)
    np.testing.assert_array_equal(got[kept], want_k[kept])
    # the grid reaches both sides of the boundary, the squeeze and the quick rejection
    us = 0.5 - np.abs(uu)
    assert kept.sum() > 1000 and (~kept).sum() > 1000
    if lam < 100:  # far-tail points the exact test keeps (at lam = 1000 there are none)
        assert (kept & (us < 0.013) & (vv < us)).any()


# ------------------------------------------------------------- counts in signed dtypes

@pytest.mark.parametrize(("call", "dtype"), [
    (lambda dt: random.poisson(K, 300.0, (1000,), dt), np.int8),
    (lambda dt: random.poisson(K, 40_000.0, (1000,), dt), np.int16),
    (lambda dt: random.geometric(K, 1e-12, (1000,), dt), np.int32)])
def test_counts_past_a_signed_dtype_are_refused_not_wrapped(call, dtype):
    """A signed dtype holds up to 2**(bits - 1) - 1: counts past it are a ValueError (a
    bound of 2**bits, the unsigned one, let 200 become -56 in int8)."""
    with pytest.raises(ValueError, match=r"beyond .*'s largest value"):
        call(dtype)
    k = call(np.int64)
    assert (k > np.iinfo(dtype).max).any() and (k > 0).all()


# ------------------------------------------------------- multivariate normal, rank one

@pytest.mark.parametrize("method", ["eigh", "svd"])
def test_multivariate_normal_rank_one_cov_with_a_rounded_negative_eigenvalue(method):
    """cov = v v^T, v = (1, 2, 3): eigh gives its zero eigenvalues as -5e-16 and 3e-16.
    Within rounding of 0 they count as 0: the samples are finite, on the line t v, with
    t standard normal (a sqrt of the rounded -5e-16 made them NaN)."""
    v = np.array([1.0, 2.0, 3.0])
    cov = np.outer(v, v)
    assert np.linalg.eigh(cov)[0].min() < 0  # the case under test
    x = random.multivariate_normal(K, np.zeros(3), cov, (20_000,), np.float64, method)
    assert np.isfinite(x).all()
    t = x @ v / (v @ v)
    np.testing.assert_allclose(x, t[:, None] * v, atol=1e-12)
    assert abs(t.mean()) < 6 / math.sqrt(t.size) and abs(t.var() - 1) < 6 * math.sqrt(2 / t.size)


# --------------------------------------------------------------------- funcdl.data

def test_blobs_centres_spread_over_the_whole_box():
    """Centres drawn uniform in box = (low, high) per coordinate: with 3000 of them, the
    least and the largest are near the bounds and the mean is the box's middle (6 standard
    errors); centres in (low, high / 2) kept inside the box yet missed its upper part."""
    x, y = data.blobs(K, 3000, centers=3000, std=0.0, dim=1, box=(-2.0, 5.0),
                      dtype=np.float64)
    c = x[np.argsort(y), 0]
    assert c.min() >= -2.0 and c.max() < 5.0
    assert c.min() < -1.98 and c.max() > 4.98
    assert abs(c.mean() - 1.5) < 6 * 7 / math.sqrt(12 * c.size)


def test_moments_of_a_nearly_constant_column_keep_its_std():
    """[1 - 1e-9, 1 + 1e-9] varies far beyond rounding: its std is 1e-9, not the constant
    column's 1. The constant test's rounding term is (n mean eps)², not n |mean| eps, which
    counted every relative spread below ~1e-8 sqrt(n) as constant."""
    x = np.array([[1 - 1e-9, 5.0], [1 + 1e-9, 5.0]])
    mean, std = data.moments(x)
    np.testing.assert_allclose(mean, [[1.0, 5.0]], rtol=1e-15)
    np.testing.assert_allclose(std, [[1e-9, 1.0]], rtol=1e-6)


def test_moments_std_below_float32_subnormals_is_one_not_zero():
    """float32 [0, 1e-45]: the float64 std 7e-46 rounds to 0 in float32; it is returned as
    1 (standardising to finite values), never a 0 to divide by."""
    x = np.array([[0.0], [1e-45]], np.float32)
    assert x[1, 0] > 0  # the least subnormal, not flushed
    mean, std = data.moments(x)
    assert std.dtype == np.float32 and std[0, 0] == 1.0
    assert np.isfinite((x - mean) / std).all()


# ------------------------------------------------------------------ funcdl.debug

def test_nan_only_check_finds_a_nan_in_a_complex_leaf():
    """check_finite(inf=False) and verify look for NaN in complex leaves as in float ones
    (a complex NaN went unseen in NaN-only mode); a complex inf passes in that mode."""
    bad = {"w": np.ones(2), "z": np.array([1 + 1j, complex(0.0, np.nan)])}
    inf = {"z": np.array([complex(np.inf, 0.0)])}
    with fd.debug.check_finite(inf=False):
        with pytest.raises(FloatingPointError, match=r"NaN in the value"):
            fd.debug.verify("user", "value", bad)
        fd.debug.verify("user", "value", inf)
    with pytest.raises(FloatingPointError, match=r"NaN in the value"):
        fd.debug.verify("user", "value", bad)
