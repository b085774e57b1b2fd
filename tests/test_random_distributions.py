"""funcdl.random's gamma, beta, dirichlet, poisson, ... samplers: moments against closed
forms, one-sample Kolmogorov-Smirnov against exact CDFs, supports, shapes, dtypes, keys and
refusals. Deterministic: fixed keys; tolerances of 6 standard errors of the sample size (the
KS bound at 0.1%), so a wrong scale or factor (a Laplace with b=2, a gamma of scale 2) fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import random
from funcdl._special import erf

N = 200_000
K = random.key(2026)


def _digamma(x: float) -> float:
    acc = 0.0
    while x < 20.0:  # recurrence up, then the asymptotic series
        acc -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - r * (1 / 12 - r * (1 / 120 - r / 252))


def _trigamma(x: float) -> float:
    acc = 0.0
    while x < 20.0:
        acc += 1.0 / (x * x)
        x += 1.0
    r = 1.0 / (x * x)
    return acc + 1.0 / x + 0.5 * r + r / x * (1 / 6 - r * (1 / 30 - r / 42))


def _assert_moments(x, mean, var):
    x = np.asarray(x, np.float64).ravel()
    m, s2 = x.mean(), x.var()
    m4 = np.mean((x - m) ** 4)
    se_mean, se_var = math.sqrt(var / x.size), math.sqrt(max(m4 - s2 * s2, 0.0) / x.size)
    assert abs(m - mean) <= 6 * se_mean + 1e-12 * abs(mean), (m, mean, se_mean)
    assert abs(s2 - var) <= 6 * se_var + 1e-12 * var, (s2, var, se_var)


def _assert_ks(x, cdf):
    x = np.sort(np.asarray(x, np.float64).ravel())
    f = cdf(x)
    i = np.arange(1, x.size + 1)
    d = max((i / x.size - f).max(), (f - (i - 1) / x.size).max())
    assert d < 1.95 / math.sqrt(x.size), d  # 0.1% critical value


def _assert_pmf(k, pmf_of, top):
    """Empirical CDF of integer samples against the exact one at 0..top (discrete KS)."""
    emp = np.cumsum(np.bincount(np.ravel(k), minlength=top + 1)[:top + 1]) / np.size(k)
    exact = np.cumsum([pmf_of(j) for j in range(top + 1)])
    assert np.abs(emp - exact).max() < 1.95 / math.sqrt(np.size(k))


GAMMA_A = [1e-3, 0.5, 1.0, 3.0, 1e4]


@pytest.mark.parametrize("a", GAMMA_A)
def test_gamma_and_loggamma_moments(a):
    _assert_moments(random.gamma(K, a, (N,), np.float64), a, a)
    _assert_moments(random.loggamma(K, a, (N,), np.float64), _digamma(a), _trigamma(a))


def test_gamma_per_entry_parameters_broadcast():
    a = np.array(GAMMA_A)
    x = random.gamma(K, a, (N // 4, 5), np.float64)
    lx = random.loggamma(K, a, (N // 4, 5), np.float64)
    for j, aj in enumerate(GAMMA_A):
        _assert_moments(x[:, j], aj, aj)
        _assert_moments(lx[:, j], _digamma(aj), _trigamma(aj))


@pytest.mark.parametrize(("a", "cdf"), [
    (0.5, lambda x: erf(np.sqrt(x))),
    (1.0, lambda x: -np.expm1(-x)),
    (3.0, lambda x: 1 - np.exp(-x) * (1 + x + x * x / 2))])
def test_gamma_ks(a, cdf):
    _assert_ks(random.gamma(K, a, (N,), np.float64), cdf)


def test_loggamma_tiny_a_is_finite_where_gamma_underflows():
    lx = random.loggamma(K, 1e-3, (N,), np.float64)
    assert np.isfinite(lx).all() and (lx < -745).mean() > 0.4  # exp of them underflows
    # log Gamma(a) for tiny a is log(U)/a + O(1): P(log X < -y/a) ~ exp(-y)
    _assert_ks(-lx * 1e-3, lambda y: -np.expm1(-y))  # nearly exact at a = 1e-3


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (2.0, 5.0), (1e-2, 3.0), (100.0, 50.0)])
def test_beta_moments_and_support(a, b):
    x = random.beta(K, a, b, (N,), np.float64)
    assert ((x >= 0) & (x <= 1)).all()
    _assert_moments(x, a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1)))


@pytest.mark.parametrize(("a", "b", "cdf"), [
    (3.0, 1.0, lambda x: x ** 3), (1.0, 0.4, lambda x: 1 - (1 - x) ** 0.4),
    (2.0, 2.0, lambda x: 3 * x ** 2 - 2 * x ** 3)])
def test_beta_ks(a, b, cdf):
    _assert_ks(random.beta(K, a, b, (N,), np.float64), cdf)


def test_beta_tiny_parameters_are_zero_or_one_not_nan():
    x = random.beta(K, 1e-4, 1e-4, (10_000,), np.float64)
    assert not np.isnan(x).any() and abs(np.mean(x > 0.5) - 0.5) < 0.03
    assert np.mean((x < 1e-10) | (x > 1 - 1e-10)) > 0.99


@pytest.mark.parametrize("alpha", [[1.0, 2.0, 3.0], [0.1, 0.1], [50.0, 1.0, 1e-3, 7.0]])
def test_dirichlet_rows_sum_to_one_and_marginals_are_beta(alpha):
    al = np.array(alpha)
    x = random.dirichlet(K, al, (N // 2,), np.float64)
    assert x.shape == (N // 2, al.size) and (x >= 0).all()
    np.testing.assert_allclose(x.sum(axis=-1), 1.0, rtol=1e-14)
    s = al.sum()
    for j, aj in enumerate(al):  # marginal Beta(a_j, s - a_j)
        _assert_moments(x[:, j], aj / s, aj * (s - aj) / (s * s * (s + 1)))
    x32 = random.dirichlet(K, al, (1000,))
    assert x32.dtype == np.float32
    np.testing.assert_allclose(x32.sum(-1), 1.0, rtol=1e-6)


def test_dirichlet_batched_alpha_and_tiny_alpha():
    al = np.array([[1.0, 1.0], [1e-3, 1e-3]])
    x = random.dirichlet(K, al, (4, 2), np.float64)
    assert x.shape == (4, 2, 2) and not np.isnan(x).any()
    np.testing.assert_allclose(x.sum(-1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("df", [0.5, 3.0, 50.0])
def test_chisquare_moments(df):
    _assert_moments(random.chisquare(K, df, (N,), np.float64), df, 2 * df)


def test_chisquare_ks():  # chi2(2) is exponential of mean 2
    _assert_ks(random.chisquare(K, 2.0, (N,), np.float64), lambda x: -np.expm1(-x / 2))


@pytest.mark.parametrize(("df", "cdf"), [
    (1.0, lambda x: 0.5 + np.arctan(x) / np.pi),
    (2.0, lambda x: 0.5 + x / (2 * np.sqrt(2 + x * x))),
    (3.0, lambda x: 0.5 + (x / (math.sqrt(3) * (1 + x * x / 3)) + np.arctan(x / math.sqrt(3)))
     / np.pi)])
def test_t_ks(df, cdf):
    _assert_ks(random.t(K, df, (N,), np.float64), cdf)


@pytest.mark.parametrize("df", [12.0, 40.0])
def test_t_moments(df):
    _assert_moments(random.t(K, df, (N,), np.float64), 0.0, df / (df - 2))


@pytest.mark.parametrize("lam", [0.0, 0.5, 9.9, 10.0, 37.5, 1e6, 2.0 ** 47])
def test_poisson_moments(lam):
    k = random.poisson(K, lam, (N,))
    assert k.dtype == np.int64 and (k >= 0).all()
    if lam == 0:
        assert (k == 0).all()
    else:
        _assert_moments(k, lam, lam)


@pytest.mark.parametrize("lam", [0.5, 9.9, 10.0, 30.0])
def test_poisson_pmf(lam):
    _assert_pmf(random.poisson(K, lam, (N,)),
                lambda j: math.exp(-lam + j * math.log(lam) - math.lgamma(j + 1)), int(lam * 3))


def test_poisson_mixed_lams_take_both_methods():
    lam = np.array([0.0, 0.5, 9.9, 10.0, 1e6])
    k = random.poisson(K, lam, (N // 5, 5), np.int32)
    assert k.dtype == np.int32
    for j, lj in enumerate(lam[1:], 1):
        _assert_moments(k[:, j], lj, lj)
    assert (k[:, 0] == 0).all()


@pytest.mark.parametrize("p", [1.0, 0.5, 0.01])
def test_geometric(p):
    k = random.geometric(K, p, (N,))
    assert k.dtype == np.int64 and (k >= 1).all()
    if p == 1.0:
        assert (k == 1).all()
        return
    _assert_moments(k, 1 / p, (1 - p) / p ** 2)
    _assert_pmf(k, lambda j: 0.0 if j == 0 else (1 - p) ** (j - 1) * p, 20)


@pytest.mark.parametrize(("n", "p"), [(10, 0.3), (1000, 0.5), (5, 1.0)])
def test_binomial(n, p):
    k = random.binomial(K, n, p, (N,), np.float64)
    assert k.dtype == np.float64 and ((k >= 0) & (k <= n)).all() and (k == np.floor(k)).all()
    if p == 1.0:
        assert (k == n).all()
    else:
        _assert_moments(k, n * p, n * p * (1 - p))


SIMPLE = [  # name, sampler of float64 samples, mean, variance, CDF
    ("laplace", lambda k: random.laplace(k, (N,), np.float64), 0.0, 2.0,
     lambda x: np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0)), 1 - 0.5 * np.exp(-np.abs(x)))),
    ("logistic", lambda k: random.logistic(k, (N,), np.float64), 0.0, np.pi ** 2 / 3,
     lambda x: 1 / (1 + np.exp(-x))),
    ("rayleigh", lambda k: random.rayleigh(k, 2.0, (N,), np.float64), 2 * math.sqrt(np.pi / 2),
     (4 - np.pi) / 2 * 4, lambda x: -np.expm1(-x * x / 8)),
    ("weibull_min", lambda k: random.weibull_min(k, 2.0, 1.5, (N,), np.float64),
     2 * math.gamma(1 + 1 / 1.5), 4 * (math.gamma(1 + 2 / 1.5) - math.gamma(1 + 1 / 1.5) ** 2),
     lambda x: -np.expm1(-(x / 2) ** 1.5)),
    ("pareto", lambda k: random.pareto(k, 5.0, (N,), np.float64), 5 / 4, 5 / (16 * 3),
     lambda x: 1 - x ** -5.0),
    ("lognormal", lambda k: random.lognormal(k, 0.5, (N,), np.float64), math.exp(0.125),
     (math.exp(0.25) - 1) * math.exp(0.25),
     lambda x: 0.5 * (1 + erf(np.log(x) / (0.5 * math.sqrt(2))))),
    ("rademacher", lambda k: random.rademacher(k, (N,)), 0.0, 1.0, None)]


@pytest.mark.parametrize(("name", "draw", "mean", "var", "cdf"), SIMPLE,
                         ids=[s[0] for s in SIMPLE])
def test_simple_distributions(name, draw, mean, var, cdf):
    x = draw(K)
    _assert_moments(x, mean, var)
    if cdf is not None:
        _assert_ks(x, cdf)
    else:
        assert set(np.unique(x)) == {-1, 1} and x.dtype == np.int64


def test_cauchy_ks_and_quartiles():
    x = random.cauchy(K, (N,), np.float64)
    _assert_ks(x, lambda v: 0.5 + np.arctan(v) / np.pi)
    np.testing.assert_allclose(np.quantile(x, [0.25, 0.75]), [-1, 1], atol=0.02)


@pytest.mark.parametrize("method", ["cholesky", "eigh", "svd"])
def test_multivariate_normal_mean_and_covariance(method):
    cov = np.array([[4.0, 1.2, -0.6], [1.2, 2.0, 0.3], [-0.6, 0.3, 1.0]])
    mean = np.array([1.0, -2.0, 0.5])
    x = random.multivariate_normal(K, mean, cov, (N,), np.float64, method)
    assert x.shape == (N, 3)
    c = np.cov(x.T)
    se = np.sqrt((cov * cov + np.outer(np.diag(cov), np.diag(cov))) / N)  # of a Wishart
    assert (np.abs(c - cov) < 6 * se).all(), (c, cov)
    assert (np.abs(x.mean(0) - mean) < 6 * np.sqrt(np.diag(cov) / N)).all()


def test_multivariate_normal_singular_cov_and_batches():
    cov = np.array([[1.0, 1.0], [1.0, 1.0]])  # rank 1: x0 == x1
    for method in ("eigh", "svd"):
        x = random.multivariate_normal(K, np.zeros(2), cov, (1000,), np.float64, method)
        np.testing.assert_allclose(x[:, 0], x[:, 1], atol=1e-12)
    with pytest.raises(ValueError, match=r"random\.multivariate_normal: cov is not positive "
                                         r"definite.*method='eigh' or 'svd'"):
        random.multivariate_normal(K, np.zeros(2), cov, method="cholesky")
    covs = np.stack([np.array([[2.0, 1.2], [1.2, 1.0]]), np.array([[4.0, -1.0], [-1.0, 3.0]])])
    x = random.multivariate_normal(K, np.zeros((3, 1, 2)), covs, dtype=np.float64)
    assert x.shape == (3, 2, 2)
    x = random.multivariate_normal(K, np.zeros(2), covs, (N // 2, 2), np.float64)
    for j, cov in enumerate(covs):  # one cov per batch entry, each its own factor
        se = np.sqrt((cov * cov + np.outer(np.diag(cov), np.diag(cov))) / (N // 2))
        assert (np.abs(np.cov(x[:, j].T) - cov) < 6 * se).all()


FLOAT_SAMPLERS = {
    "gamma": lambda k, s, d: random.gamma(k, 2.0, s, d),
    "loggamma": lambda k, s, d: random.loggamma(k, 2.0, s, d),
    "beta": lambda k, s, d: random.beta(k, 2.0, 3.0, s, d),
    "chisquare": lambda k, s, d: random.chisquare(k, 3.0, s, d),
    "t": lambda k, s, d: random.t(k, 3.0, s, d),
    "laplace": lambda k, s, d: random.laplace(k, s, d),
    "logistic": lambda k, s, d: random.logistic(k, s, d),
    "cauchy": lambda k, s, d: random.cauchy(k, s, d),
    "rayleigh": lambda k, s, d: random.rayleigh(k, 1.0, s, d),
    "weibull_min": lambda k, s, d: random.weibull_min(k, 1.0, 2.0, s, d),
    "pareto": lambda k, s, d: random.pareto(k, 3.0, s, d),
    "lognormal": lambda k, s, d: random.lognormal(k, 1.0, s, d),
    "binomial": lambda k, s, d: random.binomial(k, 10, 0.5, s, d),
    "dirichlet": lambda k, s, d: random.dirichlet(k, np.ones(3), s, d)[..., 0],
    "mvn": lambda k, s, d: random.multivariate_normal(k, np.zeros(2), np.eye(2), s, d)[..., 0]}
INT_SAMPLERS = {
    "poisson": lambda k, s, d: random.poisson(k, 3.0, s, d),
    "geometric": lambda k, s, d: random.geometric(k, 0.3, s, d),
    "rademacher": lambda k, s, d: random.rademacher(k, s, d)}


@pytest.mark.parametrize("name", [*FLOAT_SAMPLERS, *INT_SAMPLERS])
def test_shape_dtype_and_keys(name):
    f = FLOAT_SAMPLERS.get(name) or INT_SAMPLERS[name]
    dts = (np.float32, np.float64) if name in FLOAT_SAMPLERS else (np.int32, np.int64)
    for dt in dts:
        x = f(K, (3, 4), dt)
        assert x.shape == (3, 4) and x.dtype == dt
        np.testing.assert_array_equal(x, f(K, (3, 4), dt))  # same key, same draw
        assert f(K, (0, 2), dt).shape == (0, 2)
    big = f(K, (50,), dts[1])
    assert not np.array_equal(big, f(random.key(2027), (50,), dts[1]))
    assert not np.array_equal(big, f(random.fold_in(K, 1), (50,), dts[1]))
    with pytest.raises(TypeError, match=r"random\.\w+: expected a key"):
        f(np.zeros(2), (3,), dts[0])
    with pytest.raises(TypeError, match=r"random\.\w+: dtype must be"):
        f(K, (3,), np.complex64)


def test_parameter_broadcasting_as_jax():
    a = np.array([[0.5], [2.0]])
    assert random.gamma(K, a).shape == (2, 1)  # shape None: the parameter's
    assert random.gamma(K, a, (3, 2, 4)).shape == (3, 2, 4)
    assert random.beta(K, np.ones(3), np.ones((2, 1))).shape == (2, 3)
    assert random.weibull_min(K, 1.0, 2.0).shape == ()  # JAX's default shape ()
    assert random.weibull_min(K, np.array([1.0, 2.0, 3.0]), 2.0).shape == (3,)
    assert random.poisson(K, np.array([1.0, 20.0]), (5, 2)).shape == (5, 2)
    assert random.dirichlet(K, np.ones((2, 4)), (3, 2)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match=r"random\.gamma: shape \(3,\) must hold the "
                                         r"parameters' shapes.*a of shape \(2, 1\)"):
        random.gamma(K, a, (3,))
    with pytest.raises(ValueError, match=r"random\.gamma: shape \(2,\) must hold"):
        random.gamma(K, np.ones((2, 2)), (2,))  # broadcastable but not to shape, as JAX
    with pytest.raises(ValueError, match=r"random\.beta: a of shape \(2,\) and b of shape "
                                         r"\(3,\) do not broadcast"):
        random.beta(K, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"random\.dirichlet: shape \(3,\) must hold"):
        random.dirichlet(K, np.ones((2, 4)), (3,))
    with pytest.raises(ValueError, match=r"random\.multivariate_normal: shape \(4,\) must "
                                         r"hold"):
        random.multivariate_normal(K, np.zeros((3, 2)), np.eye(2), (4,))


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: random.gamma(K, 0.0), ValueError, r"random\.gamma: a must be finite, > 0"),
    (lambda: random.gamma(K, np.array([1.0, -2.0])), ValueError, r"a = -2\.0 \(one entry\)"),
    (lambda: random.gamma(K, np.inf), ValueError, r"random\.gamma: a must be finite"),
    (lambda: random.loggamma(K, None), TypeError, r"random\.loggamma: a must be a number"),
    (lambda: random.beta(K, 1.0, -1.0), ValueError, r"random\.beta: b must be finite, > 0"),
    (lambda: random.dirichlet(K, np.array([1.0, 0.0])), ValueError,
     r"random\.dirichlet: alpha must be finite, > 0"),
    (lambda: random.dirichlet(K, 1.0), ValueError, r"random\.dirichlet: alpha must have shape"),
    (lambda: random.poisson(K, -0.5), ValueError, r"random\.poisson: lam must be finite, >= 0"),
    (lambda: random.poisson(K, np.nan), ValueError, r"random\.poisson: lam must be finite"),
    (lambda: random.poisson(K, 1e6, (10,), np.int8), ValueError,
     r"random\.poisson: a sample is beyond int8's largest value 127; pass a wider dtype"),
    (lambda: random.poisson(K, 1.0, dtype=np.float32), TypeError,
     r"random\.poisson: dtype must be an integer dtype"),
    (lambda: random.geometric(K, 0.0), ValueError, r"random\.geometric: p must be finite, > 0 "
                                                   r"and <= 1"),
    (lambda: random.binomial(K, 2.5, 0.5), ValueError, r"random\.binomial: n must be whole"),
    (lambda: random.binomial(K, 3, 1.5), ValueError, r"random\.binomial: p must be finite"),
    (lambda: random.rademacher(K, (2,), np.uint8), TypeError, r"random\.rademacher: dtype "
                                                               r"must be a signed integer"),
    (lambda: random.t(K, -1.0), ValueError, r"random\.t: df must be finite, > 0"),
    (lambda: random.chisquare(K, "3"), TypeError, r"random\.chisquare: df must be a number"),
    (lambda: random.rayleigh(K, 0.0), ValueError, r"random\.rayleigh: scale must be"),
    (lambda: random.weibull_min(K, 1.0, -1.0), ValueError,
     r"random\.weibull_min: concentration must be"),
    (lambda: random.pareto(K, 0.0), ValueError, r"random\.pareto: b must be"),
    (lambda: random.lognormal(K, -1.0), ValueError, r"random\.lognormal: sigma must be "
                                                    r"finite, >= 0"),
    (lambda: random.multivariate_normal(K, np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]),
                                        method="eigh"), ValueError,
     r"random\.multivariate_normal: cov is not positive semi-definite"),
    (lambda: random.multivariate_normal(K, np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])),
     ValueError, r"random\.multivariate_normal: cov must be symmetric"),
    (lambda: random.multivariate_normal(K, np.zeros(3), np.eye(2)), ValueError,
     r"random\.multivariate_normal: needs mean of shape \(\.\.\., n\)"),
    (lambda: random.multivariate_normal(K, np.zeros(2), np.eye(2), method="qr"), ValueError,
     r"random\.multivariate_normal: method must be one of"),
    (lambda: random.gamma(K, 1.0, (2, -1)), ValueError, r"random\.gamma: .*shape"),
    (lambda: random.gamma((3,), 1.0), TypeError, r"random\.gamma: expected a key")])
def test_refusals_name_the_function(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_float32_rounds_the_float64_draws():
    for f in FLOAT_SAMPLERS.values():
        np.testing.assert_allclose(f(K, (100,), np.float32), f(K, (100,), np.float64),
                                   rtol=1e-6, atol=1e-30)


def test_poisson_table_of_one_lam_and_walk_of_many_draw_alike():
    # one lam is inverted by a CDF table, per-entry lams by a walk: the same u, the same k
    np.testing.assert_array_equal(random.poisson(K, 3.3, (5000,)),
                                  random.poisson(K, np.full(5000, 3.3)))
