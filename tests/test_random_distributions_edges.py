"""funcdl.random's distributions at their edges: poisson's log-pmf at huge lam, gamma at
huge a, samples past the dtype's range (inf, no warning), subnormal parameters, the key
checked first, multivariate_normal's 'svd' check. Split from test_random_distributions.py."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from funcdl import random

K = random.key(2026)


def test_poisson_log_pmf_has_no_cancellation_at_huge_lam():
    from funcdl._dist_discrete import _log_pmf

    lam, k = np.array([2.0 ** 47, 30.0, 300.0]), np.array([2.0 ** 47, 255.0, 400.0])
    want = [-0.5 * math.log(2 * math.pi * lam[0]) - 1 / (12 * lam[0])]  # Stirling at k = lam
    want += [-v + j * math.log(v) - math.lgamma(j + 1) for v, j in zip(lam[1:], k[1:])]
    np.testing.assert_allclose(_log_pmf(k, lam, np.log(lam)), want, rtol=1e-13)
    # either side of the switch from the table of log k! (k < 256) to the series
    k = np.array([0.0, 10.0, 255.0, 256.0, 257.0, 1e3])
    lam = np.array([0.5, 12.0, 260.0, 260.0, 260.0, 990.0])
    want = [-v + j * math.log(v) - math.lgamma(j + 1) for v, j in zip(lam, k)]
    np.testing.assert_allclose(_log_pmf(k, lam, np.log(lam)), want, rtol=1e-12)


def test_gamma_of_huge_a_is_unbiased():  # the acceptance test cancelled d eps = 1 at 1e16
    x = random.gamma(K, 1e16, (400_000,), np.float64)
    assert abs(x.mean() - 1e16) < 5 * math.sqrt(1e16 / x.size)


@pytest.mark.parametrize("call", [
    lambda: random.weibull_min(K, 1.0, 0.01, (1000,)),
    lambda: random.weibull_min(K, 1.0, 1e-3, (1000,)),  # overflows float64 too
    lambda: random.gamma(K, 1e39, (3,)), lambda: random.loggamma(K, 1e-40, (3,)),
    lambda: random.rayleigh(K, 1e38, (1000,)),
    lambda: random.multivariate_normal(K, np.zeros(1), [[1e78]], (1000,))])
def test_samples_beyond_the_dtype_are_inf_without_a_warning(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(call()).any()


def test_gamma_family_refuses_subnormal_parameters_and_is_finite_above():
    for call in (lambda: random.loggamma(K, 5e-324), lambda: random.beta(K, 1.0, 1e-310),
                 lambda: random.dirichlet(K, np.array([1.0, 5e-324]))):
        with pytest.raises(ValueError, match=r"\w+: \w+ must be finite, > 0 \(at least 1e-300"):
            call()
    assert np.isfinite(random.loggamma(K, 1e-300, (1000,), np.float64)).all()
    assert not np.isnan(random.beta(K, 1e-300, 1e-300, (1000,), np.float64)).any()
    assert not np.isnan(random.dirichlet(K, np.full(2, 1e-300), (1000,), np.float64)).any()


@pytest.mark.parametrize("f", [random.gamma, random.loggamma, random.chisquare, random.t,
                               random.dirichlet, random.rayleigh, random.pareto])
def test_the_key_is_checked_first(f):
    with pytest.raises(TypeError, match=r"random\.\w+: expected a key"):
        f(np.zeros(2), np.ones(2), dtype=np.complex64)


def test_multivariate_normal_svd_needs_no_eigh_and_flags_mixed_eigenvectors(monkeypatch):
    rng = np.random.default_rng(0)
    for _ in range(50):  # eigenvalues 1, 1, -1: SVD may mix their eigenvectors in U
        q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
        c = (q * [1.0, 1.0, -1.0]) @ q.T
        with pytest.raises(ValueError, match=r"not positive semi-definite \(an eigenvalue "
                                             r"of about -1\)"):
            random.multivariate_normal(K, np.zeros(3), (c + c.T) / 2, method="svd")
    monkeypatch.setattr(np.linalg, "eigh", None)
    x = random.multivariate_normal(K, np.zeros(2), np.ones((2, 2)), (10,), method="svd")
    assert x.shape == (10, 2)
