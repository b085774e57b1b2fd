"""funcdl.random's gamma, beta, poisson, ... against jax.random's draws (two-sample
Kolmogorov-Smirnov or chi-square on counts, fixed keys) and scipy.stats' exact CDFs and
moments: equal in distribution, not bit for bit (the generators differ). Run with
/tmp/benchenv's python, which has jax and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
stats = pytest.importorskip("scipy.stats")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
jr = jax.random

from funcdl import random  # noqa: E402

N = 40000
K = random.key(5)
JK = jr.PRNGKey(5)


def _ks2(x, y):
    """Two-sample KS: D below its 0.01% critical value (this file makes ~40 comparisons,
    and jax's own draws for PRNGKey(5) sit at p = 0.009 against the exact CDF in one)."""
    x, y = np.sort(np.ravel(x)), np.sort(np.ravel(np.asarray(y, np.float64)))
    grid = np.concatenate([x, y])
    d = np.abs(np.searchsorted(x, grid, "right") / x.size
               - np.searchsorted(y, grid, "right") / y.size).max()
    assert d < 2.23 * math.sqrt((x.size + y.size) / (x.size * y.size)), d


def _ks1(x, cdf):
    assert stats.kstest(np.ravel(x), cdf).pvalue > 1e-3


def _counts(ours, theirs):
    a, b = np.ravel(ours).astype(np.int64), np.ravel(np.asarray(theirs)).astype(np.int64)
    top = max(a.max(), b.max()) + 1
    ca, cb = np.bincount(a, minlength=top), np.bincount(b, minlength=top)
    both = (ca + cb) > 0
    stat = float((((ca - cb) ** 2)[both] / (ca + cb)[both]).sum())
    df = int(both.sum()) - 1
    assert stat < df + 7 * math.sqrt(2 * max(df, 1)), (stat, df)


F64 = np.float64


@pytest.mark.parametrize("a", [1e-3, 0.5, 1.0, 3.0, 1e4])
def test_gamma_and_loggamma_as_jax_and_scipy(a):
    ours = random.gamma(K, a, (N,), F64)
    # XLA flushes subnormal results to 0, which is ~2% more zeros at a = 1e-3: compare
    # from the smallest normal up
    tiny = np.finfo(F64).tiny
    _ks2(np.maximum(ours, tiny), np.maximum(np.asarray(jr.gamma(JK, a, (N,), F64)), tiny))
    _ks2(random.loggamma(K, a, (N,), F64), jr.loggamma(JK, a, (N,), F64))
    if a >= 0.5:  # at 1e-3 most samples are 0 (underflow), where a CDF test says nothing
        _ks1(ours, stats.gamma(a).cdf)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (2.0, 5.0), (1e-2, 3.0)])
def test_beta_as_jax_and_scipy(a, b):
    ours = random.beta(K, a, b, (N,), F64)
    _ks2(ours, jr.beta(JK, a, b, (N,), F64))
    _ks1(ours, stats.beta(a, b).cdf)


def test_dirichlet_as_jax():
    al = np.array([0.3, 2.0, 5.0])
    ours, theirs = random.dirichlet(K, al, (N,), F64), jr.dirichlet(JK, al, (N,), F64)
    for j in range(3):
        _ks2(ours[:, j], theirs[:, j])
        _ks1(ours[:, j], stats.beta(al[j], al.sum() - al[j]).cdf)


@pytest.mark.parametrize("lam", [0.5, 9.9, 10.0, 50.0, 1e6])
def test_poisson_as_jax_and_scipy(lam):
    ours = random.poisson(K, lam, (N,))
    theirs = jr.poisson(JK, lam, (N,))
    if lam < 1000:
        _counts(ours, theirs)
    else:  # a million classes: compare the standardised counts as continuous
        _ks2((ours - lam) / math.sqrt(lam), (np.asarray(theirs) - lam) / math.sqrt(lam))
    m, v = stats.poisson(lam).stats()
    assert abs(ours.mean() - m) < 6 * math.sqrt(v / N)


@pytest.mark.parametrize(("name", "ours", "theirs", "dist"), [
    ("laplace", lambda: random.laplace(K, (N,), F64), lambda: jr.laplace(JK, (N,), F64),
     stats.laplace()),
    ("logistic", lambda: random.logistic(K, (N,), F64), lambda: jr.logistic(JK, (N,), F64),
     stats.logistic()),
    ("cauchy", lambda: random.cauchy(K, (N,), F64), lambda: jr.cauchy(JK, (N,), F64),
     stats.cauchy()),
    ("t", lambda: random.t(K, 3.5, (N,), F64), lambda: jr.t(JK, 3.5, (N,), F64), stats.t(3.5)),
    ("chisquare", lambda: random.chisquare(K, 4.5, (N,), F64),
     lambda: jr.chisquare(JK, 4.5, (N,), F64), stats.chi2(4.5)),
    ("rayleigh", lambda: random.rayleigh(K, 1.7, (N,), F64),
     lambda: jr.rayleigh(JK, 1.7, (N,), F64), stats.rayleigh(scale=1.7)),
    ("weibull_min", lambda: random.weibull_min(K, 1.7, 0.8, (N,), F64),
     lambda: jr.weibull_min(JK, 1.7, 0.8, (N,), F64), stats.weibull_min(0.8, scale=1.7)),
    ("pareto", lambda: random.pareto(K, 2.5, (N,), F64), lambda: jr.pareto(JK, 2.5, (N,), F64),
     stats.pareto(2.5)),
    ("lognormal", lambda: random.lognormal(K, 0.7, (N,), F64),
     lambda: jr.lognormal(JK, 0.7, (N,), F64), stats.lognorm(0.7))])
def test_continuous_as_jax_and_scipy(name, ours, theirs, dist):
    x = ours()
    _ks2(x, theirs())
    _ks1(x, dist.cdf)


def test_discrete_as_jax():
    _counts(random.geometric(K, 0.2, (N,)), jr.geometric(JK, 0.2, (N,)))
    _counts(random.rademacher(K, (N,)) + 1, jr.rademacher(JK, (N,)) + 1)
    _counts(random.binomial(K, 20, 0.3, (N,), F64), jr.binomial(JK, 20.0, 0.3, (N,)))


@pytest.mark.parametrize("method", ["cholesky", "eigh", "svd"])
def test_multivariate_normal_as_jax(method):
    mean, cov = np.array([1.0, -1.0]), np.array([[2.0, 0.8], [0.8, 1.0]])
    ours = random.multivariate_normal(K, mean, cov, (N,), F64, method)
    theirs = np.asarray(jr.multivariate_normal(JK, mean, cov, (N,), F64, method))
    for proj in (np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, -2.0])):
        _ks2(ours @ proj, theirs @ proj)


def test_shapes_as_jax():
    a = np.ones((2, 1))
    for ours, theirs in [
            (random.gamma(K, a, (3, 2, 4)), jr.gamma(JK, a, (3, 2, 4))),
            (random.beta(K, np.ones(3), a), jr.beta(JK, np.ones(3), a)),
            (random.dirichlet(K, np.ones((2, 4)), (3, 2)), jr.dirichlet(JK, np.ones((2, 4)),
                                                                        (3, 2))),
            (random.poisson(K, a), jr.poisson(JK, a)),
            (random.multivariate_normal(K, np.zeros((3, 1, 2)), np.stack([np.eye(2)] * 2)),
             jr.multivariate_normal(JK, np.zeros((3, 1, 2)), np.stack([np.eye(2)] * 2))),
            (random.weibull_min(K, 1.0, 2.0), jr.weibull_min(JK, 1.0, 2.0)),
            (random.weibull_min(K, np.ones(3), 2.0), jr.weibull_min(JK, np.ones(3), 2.0)),
            (random.weibull_min(K, 1.0, a), jr.weibull_min(JK, 1.0, a)),
            (random.lognormal(K), jr.lognormal(JK))]:
        assert ours.shape == theirs.shape
    with pytest.raises(ValueError):
        jr.gamma(JK, a, (3,))
    with pytest.raises(ValueError, match=r"random\.gamma: shape"):
        random.gamma(K, a, (3,))
