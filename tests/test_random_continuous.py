"""Tests for funcdl.random's truncated_normal, gumbel and exponential: statistics against
closed forms (fixed keys, bounds a few sigma wide, so a wrong formula fails and a right one
does not), far tails, determinism, dtypes, bad inputs. The integer samplers:
test_random_more.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import random

K = random.key(2024)

# --------------------------------------------------------------------- truncated_normal

def _phi(x):
    return 0.0 if math.isinf(x) else math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _mass(a, b):
    """P(a <= Z <= b), from the tail on the side of the interval (no cancellation)."""
    if a >= 0:
        return (math.erfc(a / math.sqrt(2)) - math.erfc(b / math.sqrt(2))) / 2
    if b <= 0:
        return _mass(-b, -a)
    return 1 - (math.erfc(-a / math.sqrt(2)) + math.erfc(b / math.sqrt(2))) / 2


def _moments(a, b):
    z = _mass(a, b)
    fa = 0.0 if math.isinf(a) else a * _phi(a)
    fb = 0.0 if math.isinf(b) else b * _phi(b)
    mean = (_phi(a) - _phi(b)) / z
    return mean, 1 + (fa - fb) / z - mean**2


INTERVALS = [(-2.0, 2.0), (-0.5, 1.0), (1.0, 1.5), (0.0, np.inf), (2.0, 5.0), (8.0, np.inf),
             (-np.inf, -8.0), (-5.0, -2.0), (30.0, 31.0), (-1.0, np.inf), (-0.1, 0.2),
             (3.0, 3.1), (-np.inf, np.inf)]


@pytest.mark.parametrize(("a", "b"), INTERVALS)
def test_truncated_normal_moments_match_the_closed_form(a, b):
    x = random.truncated_normal(K, a, b, (40000,), np.float64)
    assert x.dtype == np.float64 and not np.isnan(x).any()
    assert x.min() >= a and x.max() <= b
    mean, var = _moments(a, b)
    sd = math.sqrt(var)
    assert abs(x.mean() - mean) < 5 * sd / math.sqrt(x.size), (x.mean(), mean)
    assert abs(x.var() / var - 1) < 0.05, (x.var(), var)


def test_truncated_normal_per_entry_bounds_mixing_every_method():
    # one call, each column its own interval (and its own proposal): each column's moments
    lows, highs = np.array([a for a, _ in INTERVALS]), np.array([b for _, b in INTERVALS])
    x = random.truncated_normal(K, lows, highs, (20000, len(INTERVALS)), np.float64)
    assert (x >= lows).all() and (x <= highs).all()
    for j, (a, b) in enumerate(INTERVALS):
        mean, var = _moments(a, b)
        assert abs(x[:, j].mean() - mean) < 5 * math.sqrt(var / 20000), (a, b)
        assert abs(x[:, j].var() / var - 1) < 0.06, (a, b)


@pytest.mark.parametrize(("a", "b"), [(-2.0, 2.0), (0.3, 2.5), (8.0, np.inf), (-3.0, -2.9)])
def test_truncated_normal_cdf_matches(a, b):
    # a Kolmogorov-Smirnov distance, catching a wrong acceptance shape the moments may miss
    x = np.sort(random.truncated_normal(random.key(9), a, b, (20000,), np.float64))
    grid = x[::200]

    def cdf(t):
        return _mass(a, t) / _mass(a, b)
    emp = np.searchsorted(x, grid, side="right") / x.size
    d = max(abs(e - cdf(float(t))) for e, t in zip(emp, grid))
    assert d < 1.95 / math.sqrt(x.size) * 1.5, d


def test_truncated_normal_float32_far_tail_and_bounds():
    x = random.truncated_normal(K, 8.0, 9.0, (20000,))
    assert x.dtype == np.float32 and not np.isnan(x).any()
    assert x.min() >= 8.0 and x.max() <= 9.0
    assert abs(x.mean() - _moments(8.0, 9.0)[0]) < 0.01
    y = random.truncated_normal(K, -np.inf, -40.0, (1000,))
    assert y.max() <= -40.0 and y.min() > -41.0
    assert (random.truncated_normal(K, 1e10, np.inf, (10,), np.float64) >= 1e10).all()


def test_truncated_normal_broadcasts_bounds_and_equal_bounds():
    lo, hi = np.array([-1.0, 2.0, 5.0]), np.array([[1.0], [3.0]])  # (3,) and (2, 1)
    x = random.truncated_normal(K, lo, hi + 5.0)
    assert x.shape == (2, 3) and (x >= lo).all() and (x <= hi + 5.0).all()
    assert random.truncated_normal(K, -1.0, 1.0).shape == ()
    np.testing.assert_array_equal(random.truncated_normal(K, 1.5, 1.5, (4,)), np.full(4, 1.5))
    assert random.truncated_normal(K, [-1.0, 0.0], 1.0, (3, 2)).shape == (3, 2)


def test_truncated_normal_deterministic():
    a = random.truncated_normal(random.key(3), -1.0, 2.0, (30,))
    np.testing.assert_array_equal(a, random.truncated_normal(random.key(3), -1.0, 2.0, (30,)))
    assert not np.array_equal(a, random.truncated_normal(random.key(4), -1.0, 2.0, (30,)))


@pytest.mark.parametrize(("args", "error", "match"), [
    ((1.0, 0.0), ValueError, "needs lower <= upper"),
    ((np.nan, 1.0), ValueError, "must not be NaN"),
    ((np.inf, np.inf), ValueError, "lower < inf"),
    ((-np.inf, -np.inf), ValueError, "upper > -inf"),
    (("a", 1.0), TypeError, "lower and upper must be numbers"),
    ((None, 1.0), TypeError, "lower and upper must be numbers"),
    ((np.zeros(2), np.ones(3)), ValueError, "do not broadcast"),
    ((np.zeros(2), 1.0, (3,)), ValueError, r"shape \(3,\) must hold"),
    ((0.0, 1e39, (2,)), ValueError, "float32's range.*float64"),
    ((0.0, 1.0, (2,), np.float16), TypeError, "dtype must be float32 or float64"),
])
def test_truncated_normal_refusals_are_named(args, error, match):
    with pytest.raises(error, match=r"random\.truncated_normal: .*" + match):
        random.truncated_normal(K, *args)


# ---------------------------------------------------------------- gumbel, exponential

EULER_GAMMA = 0.5772156649015329


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gumbel_moments_and_cdf(dtype):
    g = random.gumbel(K, (200000,), dtype)
    assert g.dtype == dtype and np.isfinite(g).all()
    sd = math.pi / math.sqrt(6)
    assert abs(g.mean() - EULER_GAMMA) < 5 * sd / math.sqrt(g.size)
    assert abs(g.var() / sd**2 - 1) < 0.02
    assert abs(np.mean(g <= 0) - math.exp(-1)) < 0.005  # F(x) = exp(-exp(-x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exponential_moments_and_tail(dtype):
    e = random.exponential(K, (200000,), dtype)
    assert e.dtype == dtype and (e >= 0).all()
    assert abs(e.mean() - 1) < 5 / math.sqrt(e.size)
    assert abs(e.var() - 1) < 0.03
    assert abs(np.mean(e > 2) - math.exp(-2)) < 0.004


@pytest.mark.parametrize("name", ["gumbel", "exponential"])
def test_gumbel_exponential_defaults_determinism_and_refusals(name):
    f = getattr(random, name)
    z = f(K)
    assert type(z) is np.ndarray and z.shape == () and z.dtype == np.float32
    np.testing.assert_array_equal(f(K, (5,)), f(random.key(2024), 5))
    assert not np.array_equal(f(K, (5,)), f(random.key(1), (5,)))
    with pytest.raises(TypeError, match=rf"random\.{name}: dtype must be float32 or float64"):
        f(K, (2,), np.int32)
    with pytest.raises(ValueError, match=rf"random\.{name}: .*shape"):
        f(K, (-2,))
    with pytest.raises(TypeError, match=rf"random\.{name}: expected a key"):
        f((2,), K)
