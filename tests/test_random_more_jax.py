"""funcdl.random's and funcdl.initializers' new samplers against jax.random's and
jax.nn.initializers': equal in distribution (two-sample tests, fixed keys), not bit for bit
(the generators differ). Run with /tmp/benchenv's python, which has jax."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jr = jax.random
jinit = jax.nn.initializers

from funcdl import initializers as init  # noqa: E402
from funcdl import random  # noqa: E402

N = 40000
K = random.key(11)
JK = jr.PRNGKey(11)


def _ks(x, y):
    """Two-sample Kolmogorov-Smirnov: D and its 0.1% critical value."""
    x, y = np.sort(np.ravel(x)), np.sort(np.ravel(y))
    grid = np.concatenate([x, y])
    d = np.abs(np.searchsorted(x, grid, "right") / x.size
               - np.searchsorted(y, grid, "right") / y.size).max()
    return d, 1.95 * math.sqrt((x.size + y.size) / (x.size * y.size))


def _assert_same_continuous(ours, theirs):
    d, crit = _ks(ours, np.asarray(theirs, np.float64))
    assert d < crit, (d, crit)


def _assert_same_counts(ours, theirs, k):
    a = np.bincount(np.ravel(ours), minlength=k).astype(float)
    b = np.bincount(np.ravel(np.asarray(theirs)), minlength=k).astype(float)
    assert len(a) == len(b) == k
    both = (a + b) > 0
    stat = float((((a - b) ** 2)[both] / (a + b)[both]).sum())  # equal sizes: df = k - 1
    df = int(both.sum()) - 1
    assert stat < df + 7 * math.sqrt(2 * df), (stat, df, a, b)


@pytest.mark.parametrize(("lo", "hi"), [(-2.0, 2.0), (-1.0, 3.0), (0.5, 1.0), (2.0, 4.0),
                                        (-np.inf, -1.0)])
def test_truncated_normal_as_jax(lo, hi):
    ours = random.truncated_normal(K, lo, hi, (N,))
    theirs = jr.truncated_normal(JK, lo, hi, (N,))
    _assert_same_continuous(ours, theirs)


def test_gumbel_and_exponential_as_jax():
    _assert_same_continuous(random.gumbel(K, (N,)), jr.gumbel(JK, (N,)))
    _assert_same_continuous(random.exponential(K, (N,)), jr.exponential(JK, (N,)))


def test_randint_as_jax():
    _assert_same_counts(random.randint(K, (N,), -3, 9) + 3,
                        np.asarray(jr.randint(JK, (N,), -3, 9)) + 3, 12)


def test_choice_as_jax():
    p = np.array([0.1, 0.0, 0.5, 0.15, 0.25], np.float32)
    _assert_same_counts(random.choice(K, 5, (N,), p=p), jr.choice(JK, 5, (N,), p=p), 5)
    # without replacement: the pair (first, second) of each draw
    keys, jkeys = random.split(K, 3000), jr.split(JK, 3000)
    ours = np.array([random.choice(k, 5, (2,), replace=False, p=p) for k in keys])
    theirs = np.asarray(jax.vmap(lambda k: jr.choice(k, 5, (2,), replace=False, p=p))(jkeys))
    _assert_same_counts(ours[:, 0] * 5 + ours[:, 1], theirs[:, 0] * 5 + theirs[:, 1], 25)


def test_categorical_as_jax():
    logits = np.array([0.3, -1.0, 2.0, -np.inf, 1.1], np.float32)
    _assert_same_counts(random.categorical(K, logits, shape=(N,)),
                        jr.categorical(JK, logits, shape=(N,)), 5)


def test_categorical_without_replacement_as_jax():
    logits = np.array([0.3, -1.0, 2.0, -np.inf, 1.1], np.float32)
    rows = np.tile(logits, (N // 4, 1))
    ours = random.categorical(K, rows, shape=(2, N // 4), replace=False)
    theirs = np.asarray(jr.categorical(JK, rows, shape=(2, N // 4), replace=False))
    _assert_same_counts(ours[0] * 5 + ours[1], theirs[0] * 5 + theirs[1], 25)


def test_truncated_normal_initializer_as_jax():
    ours = init.truncated_normal(0.3, -1.5, 2.5)(K, (200, 200))
    theirs = jinit.truncated_normal(0.3, lower=-1.5, upper=2.5)(JK, (200, 200))
    _assert_same_continuous(ours, theirs)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_truncated_as_jax(mode):
    shape = (3, 3, 32, 48)
    ours = init.variance_scaling(2.0, mode, "truncated_normal")(K, shape)
    theirs = jinit.variance_scaling(2.0, mode, "truncated_normal")(JK, shape)
    _assert_same_continuous(ours, theirs)


def test_delta_orthogonal_as_jax():
    shape = (4, 3, 6, 9)  # even k: the centre tap is (k - 1) // 2, as JAX's
    ours = init.delta_orthogonal(1.5)(K, shape)
    theirs = np.asarray(jinit.delta_orthogonal(1.5)(JK, shape))
    np.testing.assert_array_equal(ours != 0, theirs != 0)
    m, t = ours[1, 1].astype(np.float64), theirs[1, 1].astype(np.float64)
    np.testing.assert_allclose(m @ m.T, t @ t.T, atol=1e-5)
    with pytest.raises(ValueError):
        jinit.delta_orthogonal()(JK, (3, 3, 9, 6))
    with pytest.raises(ValueError, match="in <= out"):
        init.delta_orthogonal()(K, (3, 3, 9, 6))
