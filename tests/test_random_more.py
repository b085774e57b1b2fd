"""Tests for funcdl.random's randint, choice and categorical: frequencies against the
distributions (fixed keys, chi-square bounds, so a wrong formula fails and a right one does
not), edge cases, determinism, dtypes, bad inputs. The continuous samplers:
test_random_continuous.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import random

K = random.key(2024)
I64 = np.iinfo(np.int64)


def _chi2(counts, probs):
    """Pearson's statistic, and a bound it exceeds with probability ~1e-6 when the
    frequencies follow ``probs`` (df + 7 sqrt(2 df), a generous normal approximation)."""
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    expected = counts.sum() * probs
    keep = expected > 0
    assert counts[~keep].sum() == 0, "a class of probability 0 was drawn"
    stat = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    df = int(keep.sum()) - 1
    return stat, df + 7 * math.sqrt(2 * df)


def _assert_frequencies(samples, probs):
    counts = np.bincount(np.ravel(samples), minlength=len(probs))
    assert len(counts) == len(probs), "a sample out of range"
    stat, bound = _chi2(counts, probs)
    assert stat < bound, (stat, bound, counts)


# ------------------------------------------------------------------------------ randint

def test_randint_is_uniform_on_the_half_open_range():
    x = random.randint(K, (60000,), -3, 7)
    assert x.dtype == np.int64 and x.min() == -3 and x.max() == 6
    _assert_frequencies(x + 3, np.full(10, 0.1))


def test_randint_bounds_broadcast_per_column_as_jax():
    lo, hi = np.array([0, 10, -5]), np.array([[2], [20], [0]]).T  # (3,) and (1, 3)
    x = random.randint(K, (20000, 3), lo, hi)
    assert x.shape == (20000, 3)
    for j, (a, b) in enumerate([(0, 2), (10, 20), (-5, 0)]):
        assert x[:, j].min() == a and x[:, j].max() == b - 1
        _assert_frequencies(x[:, j] - a, np.full(b - a, 1 / (b - a)))


def test_randint_is_exact_at_the_int64_limits():
    top = random.randint(K, (5000,), I64.max - 4, 2**63)  # maxval past int64: max included
    _assert_frequencies(top - (I64.max - 4), np.full(5, 0.2))
    bottom = random.randint(K, (3000,), -(2**63), I64.min + 3)
    _assert_frequencies(bottom - I64.min, np.full(3, 1 / 3))
    u = random.randint(K, (3000,), 2**64 - 3, 2**64, np.uint64)
    assert u.dtype == np.uint64
    _assert_frequencies((u - np.uint64(2**64 - 3)).astype(np.int64), np.full(3, 1 / 3))


def test_randint_whole_int64_range_has_uniform_low_bits_and_sign():
    # a float formula (lo + floor(u (hi - lo))) leaves the low bits of 64-bit spans at zero
    x = random.randint(K, (40000,), -(2**63), 2**63)
    _assert_frequencies((x & 255).astype(np.int64), np.full(256, 1 / 256))
    assert abs(np.mean(x < 0) - 0.5) < 0.01


def test_randint_has_no_modulo_bias_on_a_huge_span():
    # span 3 * 2**61: bits % span would put 3/4 of the draws below 2**62, not 2/3
    x = random.randint(K, (60000,), 0, 3 * 2**61)
    assert abs(np.mean(x < 2**62) - 2 / 3) < 0.008


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.uint64])
def test_randint_dtypes_and_clipping_to_the_dtype_as_jax(dtype):
    info = np.iinfo(dtype)
    x = random.randint(K, (4000,), int(info.min) - 10, int(info.max) + 10, dtype)
    assert x.dtype == dtype
    assert x.min() >= info.min and x.max() <= info.max
    if info.bits == 8:  # clipped: both ends of the dtype are drawn
        assert x.min() == info.min and x.max() == info.max


def test_randint_deterministic_per_key_and_0d():
    a = random.randint(K, (50,), 0, 1000)
    np.testing.assert_array_equal(a, random.randint(random.key(2024), (50,), 0, 1000))
    assert not np.array_equal(a, random.randint(random.key(1), (50,), 0, 1000))
    z = random.randint(K, (), 0, 5)
    assert type(z) is np.ndarray and z.shape == () and 0 <= z < 5
    assert random.randint(K, 4, np.int8(2), np.array(3, np.uint64)).tolist() == [2] * 4


@pytest.mark.parametrize(("args", "error", "match"), [
    (((3,), 0.0, 5), TypeError, "minval must be an int.*pass int"),
    (((3,), 0, 5.5), TypeError, "maxval must be an int"),
    (((3,), True, 5), TypeError, "minval must be an int"),
    (((3,), 0, np.array([1.0, 2.0, 3.0])), TypeError, "maxval must be an int"),
    (((3,), 0, "5"), TypeError, "maxval must be an int"),
    (((3,), 5, 5), ValueError, "needs minval < maxval"),
    (((3,), np.array([0, 4, 1]), 4), ValueError, "needs minval < maxval"),
    (((3,), 0, np.array([1, 2])), ValueError, "must broadcast to shape"),
    (((3,), 300, 400, np.uint8), ValueError, r"holds no uint8 value.*\[0, 255\]"),
    (((3,), -5, 0, np.uint8), ValueError, "holds no uint8 value"),
    (((3,), 0, 5, np.float32), TypeError, "dtype must be an integer dtype"),
    (((3,), 0, 5, bool), TypeError, "dtype must be an integer dtype"),
    (((-1,), 0, 5), ValueError, "shape"),
])
def test_randint_refusals_are_named(args, error, match):
    with pytest.raises(error, match=r"random\.randint: .*" + match):
        random.randint(K, *args)
    with pytest.raises(TypeError, match=r"random\.randint: expected a key"):
        random.randint(0, (3,), 0, 5)


# ------------------------------------------------------------------------------- choice

def test_choice_uniform_with_replacement():
    x = random.choice(K, 7, (70000,))
    assert x.dtype == np.int64
    _assert_frequencies(x, np.full(7, 1 / 7))
    z = random.choice(K, 7)
    assert type(z) is np.ndarray and z.shape == ()


def test_choice_with_p_follows_p_and_never_draws_a_zero():
    p = np.array([0.1, 0.0, 0.45, 0.05, 0.0, 0.4])
    _assert_frequencies(random.choice(K, 6, (80000,), p=p), p)
    # the last class of probability 0: u * total rounding up must not reach it
    q = np.array([0.5, 0.5, 0.0])
    assert random.choice(K, 3, (50000,), p=q).max() <= 1


def test_choice_without_replacement_gives_distinct_picks():
    x = random.choice(K, 50, (10, 3), replace=False)
    assert x.shape == (10, 3) and len(np.unique(x)) == 30
    assert sorted(random.choice(K, 9, (9,), replace=False).tolist()) == list(range(9))
    y = random.choice(K, 6, (4,), replace=False, p=[0.2, 0.0, 0.3, 0.1, 0.0, 0.4])
    assert len(set(y.tolist())) == 4 and not {1, 4} & set(y.tolist())


def test_choice_without_replacement_draws_successively_proportional_to_p():
    # P(first i, then j) = p_i p_j / (1 - p_i): the Gumbel top-k law (log p, not p)
    p = np.array([0.5, 0.3, 0.2])
    pairs = np.array([random.choice(k, 3, (2,), replace=False, p=p)
                      for k in random.split(K, 6000)])
    code = pairs[:, 0] * 3 + pairs[:, 1]
    probs = np.zeros(9)
    for i in range(3):
        for j in range(3):
            if i != j:
                probs[i * 3 + j] = p[i] * p[j] / (1 - p[i])
    _assert_frequencies(code, probs)


def test_choice_from_an_array_along_an_axis_as_jax():
    a = np.arange(24.0).reshape(2, 3, 4)
    out = random.choice(K, a, (5, 2), axis=2)
    assert out.shape == (2, 3, 5, 2) and out.dtype == a.dtype
    # every picked slice is a column of a along axis 2
    cols = {tuple(a[:, :, j].ravel()) for j in range(4)}
    for i in range(5):
        for j in range(2):
            assert tuple(out[:, :, i, j].ravel()) in cols
    rows = random.choice(K, np.arange(12.0).reshape(4, 3), (3,), replace=False)
    assert rows.shape == (3, 3) and len({r[0] for r in rows.tolist()}) == 3
    assert (rows % 3 == [0, 1, 2]).all()  # whole rows of a


def test_choice_deterministic_and_empty():
    a = random.choice(K, 100, (20,), p=np.full(100, 0.01))
    np.testing.assert_array_equal(a, random.choice(random.key(2024), 100, (20,),
                                                   p=np.full(100, 0.01)))
    assert not np.array_equal(a, random.choice(random.key(3), 100, (20,), p=np.full(100, 0.01)))
    assert random.choice(K, 0, (0,)).shape == (0,)
    assert random.choice(K, 5, (0,), replace=False, p=np.full(5, 0.2)).shape == (0,)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"a": 5, "shape": (6,), "replace": False}, ValueError, r"prod\(shape\) <= 5"),
    ({"a": 3, "p": [0.5, 0.6, -0.1]}, ValueError, "finite and >= 0"),
    ({"a": 3, "p": [0.5, 0.4, 0.0]}, ValueError, "sum to 1.*p / p.sum"),
    ({"a": 3, "p": [0.5, 0.5]}, ValueError, r"shape \(3,\)"),
    ({"a": 3, "p": [0.5, np.nan, 0.5]}, ValueError, "finite"),
    ({"a": 3, "p": "abc"}, TypeError, "p must be an array of numbers"),
    ({"a": 4, "shape": (3,), "replace": False, "p": [0.5, 0.5, 0, 0]}, ValueError,
     "candidates of p > 0"),
    ({"a": 3.0}, TypeError, "a must be an int"),
    ({"a": [1, 2, 3]}, TypeError, "np.asarray"),
    ({"a": -1}, ValueError, "a must be >= 0"),
    ({"a": 0, "shape": (2,)}, ValueError, "empty"),
    ({"a": np.ones((2, 3)), "axis": 2}, ValueError, "axis 2 is out of bounds"),
    ({"a": 3, "replace": "no"}, TypeError, "replace must be True or False"),
])
def test_choice_refusals_are_named(kwargs, error, match):
    with pytest.raises(error, match=r"random\.choice: .*" + match):
        random.choice(K, **kwargs)


def test_choice_accepts_float32_probabilities_within_their_rounding():
    p = np.full(1000, 1e-3, np.float32)
    p[0] += 2e-5 / 2  # a float32 softmax's sum is off by ~1e-5: accepted (tol sqrt(eps))
    assert random.choice(K, 1000, (5,), p=p).shape == (5,)


# -------------------------------------------------------------------------- categorical

def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_categorical_follows_softmax():
    logits = np.array([1.0, -0.5, 2.0, 0.0, -np.inf, 0.7])
    x = random.categorical(K, logits, shape=(60000,))
    assert x.dtype == np.int64
    _assert_frequencies(x, np.nan_to_num(_softmax(logits)))


def test_categorical_rows_and_axis():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    x = random.categorical(K, logits, shape=(20000, 2))
    for r in range(2):
        _assert_frequencies(x[:, r], np.exp(logits[r]))
    y = random.categorical(K, logits.T, axis=0, shape=(20000, 2))
    for r in range(2):
        _assert_frequencies(y[:, r], np.exp(logits[r]))
    assert random.categorical(K, logits).shape == (2,)
    assert random.categorical(K, np.zeros((4, 3, 5)), axis=1).shape == (4, 5)


def test_categorical_never_picks_minus_inf_and_keeps_huge_gaps():
    logits = np.full((500, 50), -np.inf, np.float32)
    logits[:, 7] = 0.0
    logits[:, 11] = -3.0
    x = random.categorical(K, logits)  # no warning: warnings are errors here
    assert set(np.unique(x).tolist()) <= {7, 11} and 7 in x
    assert (random.categorical(K, [0.0, 1000.0], shape=(1000,)) == 1).all()


def test_categorical_without_replacement_draws_distinct_classes_in_plackett_luce_order():
    # the first draw follows softmax; the second, given the first i, p_j / (1 - p_i)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    logits = np.tile(np.log(p), (30000, 1))
    x = random.categorical(K, logits, shape=(2, 30000), replace=False)
    assert x.shape == (2, 30000) and x.dtype == np.int64 and (x[0] != x[1]).all()
    pairs = (p[:, None] * p[None, :] / (1 - p[:, None]))[~np.eye(4, dtype=bool)]
    counts = np.bincount(x[0] * 4 + x[1], minlength=16).reshape(4, 4)[~np.eye(4, dtype=bool)]
    expected = pairs * 30000
    assert (np.abs(counts - expected) < 5 * np.sqrt(expected) + 1).all(), (counts, expected)
    # all of a row's classes: a permutation; -inf classes never drawn, nor too many draws
    full = random.categorical(K, np.zeros((50, 6)), shape=(6, 50), replace=False)
    assert (np.sort(full, axis=0) == np.arange(6)[:, None]).all()
    with pytest.raises(ValueError, match=r"3 draws without replacement .* -inf"):
        random.categorical(K, [0.0, -np.inf, 1.0], shape=(3,), replace=False)
    assert set(random.categorical(K, [0.0, -np.inf, 1.0], shape=(2,), replace=False)) == {0, 2}
    with pytest.raises(ValueError, match=r"replace=False, shape \(2, 3\) must end with the "
                                         r"batch shape \(1,\) itself"):  # not broadcast
        random.categorical(K, np.zeros((1, 4)), shape=(2, 3), replace=False)
    with pytest.raises(TypeError, match=r"random.categorical: replace"):
        random.categorical(K, np.zeros(4), replace="no")


def test_categorical_deterministic():
    z = random.normal(K, (8, 10))
    a = random.categorical(random.key(5), z)
    np.testing.assert_array_equal(a, random.categorical(random.key(5), z))
    assert not np.array_equal(a, random.categorical(random.key(6), z))


@pytest.mark.parametrize(("logits", "kwargs", "error", "match"), [
    ([0.0, np.nan], {}, ValueError, "NaN or \\+inf"),
    ([0.0, np.inf], {}, ValueError, "NaN or \\+inf"),
    ([[0.0, 1.0], [-np.inf, -np.inf]], {}, ValueError, "every class"),
    (np.zeros((3, 0)), {}, ValueError, "no classes"),
    (1.0, {}, TypeError, "rank >= 1"),
    (["a", "b"], {}, TypeError, "logits must be an array of numbers"),
    (np.zeros((3, 4)), {"shape": (2, 4)}, ValueError, "batch shape"),
    (np.zeros((3, 4)), {"axis": 2}, ValueError, "axis 2 is out of bounds"),
])
def test_categorical_refusals_are_named(logits, kwargs, error, match):
    with pytest.raises(error, match=r"random\.categorical: .*" + match):
        random.categorical(K, logits, **kwargs)


def test_new_names_are_exported():
    for name in ("randint", "choice", "categorical", "truncated_normal", "gumbel",
                 "exponential"):
        assert name in random.__all__ and callable(getattr(random, name))


def test_randint_in_torchs_argument_order_says_jaxs():
    with pytest.raises(ValueError, match=r"needs minval < maxval.*the order is randint\(key, "
                                         r"shape, minval, maxval\).*randint\(key, \(3,\), 0, "
                                         r"10\)"):
        random.randint(random.key(0), 0, 10, (3,))
