"""Tests for funcdl.random: explicit keys, split / fold_in, samplers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from funcdl import random

# ------------------------------------------------------------------------------- keys


def test_key_is_a_deterministic_uint64_pair_of_a_128_bit_seed():
    k = random.key(0)
    assert type(k) is np.ndarray and k.dtype == np.uint64 and k.shape == (2,)
    np.testing.assert_array_equal(k, random.key(0))
    assert not np.array_equal(random.key(0), random.key(1))
    assert random.key(2**64 + 5).tolist() == [5, 1]


def test_a_negative_seed_is_its_64_bit_twos_complement_as_in_jax():
    # jax (x64) reads PRNGKey(-1) as the bits of 2**64 - 1; -1 raised a ValueError here
    assert random.key(-1).tolist() == [2**64 - 1, 0]
    for s in (-1, -2, -2**31, -2**63):
        np.testing.assert_array_equal(random.key(s), random.key(s + 2**64))
        np.testing.assert_array_equal(random.key(np.int64(s)), random.key(np.uint64(s + 2**64)))
        np.testing.assert_array_equal(random.key(np.array(s)), random.key(s))
    assert len({random.key(s).tobytes() for s in range(-100, 100)}) == 200
    for seed in (-2**63 - 1, 2**128):  # beyond int64 and 128 bits
        with pytest.raises(ValueError, match=r"random\.key: seed must be in \[-2\*\*63, 2\*\*"):
            random.key(seed)


def _digest(arrays):
    """A short sha256 of arrays' little-endian bytes: pins many outputs in one line."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()[:16]


def test_keys_splits_folds_and_permutations_are_pinned():
    # recorded before negative seeds, 0-d arrays and permuted arrays were accepted: they
    # must not move (NumPy's Philox stream, as test_pinned_values, for all but the keys)
    seeds = [*range(300), 2**31, 2**32 - 1, 2**63, 2**64 - 1, 2**64, 2**127, 2**128 - 1]
    assert _digest(random.key(s) for s in seeds) == "5b109c76d40d90eb"
    assert _digest(random.key(t(s)) for t in (np.int64, np.uint64, np.int8)
                   for s in range(100)) == "daad857522811ea0"
    k = random.key(0)
    assert _digest([*random.split(k, 5), *random.split(random.key(2**64 - 1), 3)]) == (
        "49480b9e238d484e")
    assert _digest(random.fold_in(k, d) for d in [*range(50), 2**63, 2**64 - 1]) == (
        "9ff0ee7ee2e13d9e")
    assert _digest(random.permutation(random.key(s), n) for s in range(20)
                   for n in range(40)) == "1c836f468cebdfb2"


@pytest.mark.parametrize("five", [np.array(5), np.array(5, np.uint8), np.int32(5), np.uint64(5)],
                         ids=repr)
def test_numpy_ints_and_0d_integer_arrays_are_ints_everywhere(five):
    # key and fold_in refused np.array(5), which split, shapes and permutation took
    k = random.key(0)
    np.testing.assert_array_equal(random.key(five), random.key(5))
    np.testing.assert_array_equal(random.fold_in(k, five), random.fold_in(k, 5))
    assert len(random.split(k, five)) == 5 and random.normal(k, five).shape == (5,)
    np.testing.assert_array_equal(random.permutation(k, five), random.permutation(k, 5))


@pytest.mark.parametrize("bad", [1.0, np.array(5.0), np.float32(5), True, np.bool_(True),
                                 np.array(True), np.array([5]), "0", None], ids=repr)
def test_what_is_not_an_int_is_a_type_error_naming_the_function(bad):
    k = random.key(0)
    calls = {"key": lambda: random.key(bad), "fold_in": lambda: random.fold_in(k, bad),
             "split": lambda: random.split(k, bad)}
    if not (isinstance(bad, np.ndarray) and bad.ndim):  # an array of rank 1 is shuffled
        calls["permutation"] = lambda: random.permutation(k, bad)
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"random\.{name}: \w+ must be an int"):
            call()


def test_split_gives_distinct_valid_keys_with_distinct_streams():
    k = random.key(42)
    keys = random.split(k, 3)
    assert len(keys) == 3 and len(random.split(k)) == 2 and len(random.split(k, 1)) == 1
    for child in keys:
        assert child.dtype == np.uint64 and child.shape == (2,)
    streams = [random.normal(x, (8,)).tobytes() for x in (k, *keys)]
    assert len({tuple(x.tolist()) for x in (k, *keys)}) == len(set(streams)) == 4
    # children of different parents differ
    assert not np.array_equal(random.split(random.key(43), 3)[0], keys[0])


def test_fold_in_differs_per_data_and_is_deterministic():
    k = random.key(0)
    folded = [random.fold_in(k, d) for d in range(5)]
    for f in folded:
        assert f.dtype == np.uint64 and f.shape == (2,)
        assert not np.array_equal(f, k)
    assert len({tuple(f.tolist()) for f in folded}) == 5
    np.testing.assert_array_equal(random.fold_in(random.key(0), 3), folded[3])
    # depends on the key too
    assert not np.array_equal(random.fold_in(random.key(1), 3), folded[3])
    # and differs from split's children
    split_keys = {tuple(x.tolist()) for x in random.split(k, 4)}
    assert not split_keys & {tuple(f.tolist()) for f in folded}


def test_pinned_values():
    # Same key, same numbers, on every machine: these values were recorded once (NumPy
    # 2.4, Philox) and must not change. NumPy documents that a Generator stream may change
    # across NumPy versions; if a NumPy upgrade breaks this test, that is what happened.
    k = random.key(0)
    assert random.normal(k, (3,), np.float64).tolist() == [
        0.15929546600623282, -1.7741885208017214, 1.3265118818830892]
    assert random.normal(k, (3,)).tolist() == [
        0.059911035001277924, 0.015559634193778038, -1.1644384860992432]
    assert random.uniform(k, (3,), dtype=np.float64).tolist() == [
        0.011546754286331562, 0.24154919656271812, 0.11142585551493822]
    assert random.uniform(k, (3,), 2.0, 3.0).tolist() == [  # bounded: low + u (high - low)
        2.0347418785095215, 2.0115466117858887, 2.611950159072876]
    assert random.uniform(k, (3,), -2.0, 3.0).tolist() == [
        -1.8262906074523926, -1.9422663450241089, 1.059751033782959]
    assert random.uniform(k, (3,), -2.0, 3.0, np.float64).tolist() == [
        -1.942266228568342, -0.7922540171864094, -1.442870722425309]
    assert random.permutation(k, 8).tolist() == [5, 0, 6, 1, 7, 2, 4, 3]
    assert random.bernoulli(k, 0.5, (8,)).tolist() == [
        True, True, True, False, False, True, False, False]
    assert [x.tolist() for x in random.split(k)] == [
        [213000021201967259, 4455796210202625458],
        [2055444239878205049, 10411612076246414556]]
    assert random.fold_in(k, 1).tolist() == [14475935840538893038, 8321154236932002834]


# --------------------------------------------------------------------------- samplers

def test_normal_shape_and_dtype():
    k = random.key(1)
    x = random.normal(k, (2, 3))
    assert x.shape == (2, 3) and x.dtype == np.float32
    y = random.normal(k, (4,), np.float64)
    assert y.shape == (4,) and y.dtype == np.float64
    assert random.normal(k, 5).shape == (5,)
    assert random.normal(k).shape == ()


def test_uniform_shape_dtype_and_range():
    k = random.key(2)
    x = random.uniform(k, (1000,))
    assert x.shape == (1000,) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() < 1.0
    y = random.uniform(k, (10_000,), -2.0, 3.0, np.float64)
    assert y.dtype == np.float64
    assert y.min() >= -2.0 and y.max() < 3.0
    assert y.min() < -1.99 and y.max() > 2.99  # fills the interval
    z = random.uniform(k, (10_000,), -2.0, 3.0)
    assert z.dtype == np.float32
    assert z.min() >= -2.0 and z.max() < 3.0
    # float32 never reaches high
    assert random.uniform(random.key(0), (200_000,), 1000.0, 1001.0).max() < 1001.0


def test_bernoulli_shape_dtype_extremes():
    k = random.key(3)
    b = random.bernoulli(k, 0.5, (4, 5))
    assert b.shape == (4, 5) and b.dtype == np.bool_
    assert random.bernoulli(k, 0.0, (1000,)).sum() == 0
    assert random.bernoulli(k, 1.0, (1000,)).all()


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bernoulli_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p"):
        random.bernoulli(random.key(0), p, (3,))


def test_permutation_of_n_is_an_int64_shuffle_of_range_n():
    p = random.permutation(random.key(4), 50)  # same key, same order: _SAMPLERS below
    assert p.dtype == np.int64 and p.shape == (50,) and p.tolist() != list(range(50))
    np.testing.assert_array_equal(np.sort(p), np.arange(50))
    assert random.permutation(random.key(4), 0).shape == (0,)


def test_permutation_of_an_array_shuffles_a_copy_along_an_axis_as_jax():
    k = random.key(0)  # the pinned order [5, 0, 6, 1, 7, 2, 4, 3]: one rule for ints and arrays
    assert random.permutation(k, np.arange(10, 18)).tolist() == [15, 10, 16, 11, 17, 12, 14, 13]
    x = np.arange(24.0).reshape(6, 4)
    y = random.permutation(k, x)  # this raised a TypeError
    np.testing.assert_array_equal(y, x[random.permutation(k, len(x))])
    assert y.dtype == x.dtype and not np.shares_memory(y, x)
    np.testing.assert_array_equal(x, np.arange(24.0).reshape(6, 4))  # x itself is untouched
    for axis in (1, -1, np.int64(1), np.array(1)):
        np.testing.assert_array_equal(random.permutation(k, x, axis),
                                      x[:, random.permutation(k, 4)])
    np.testing.assert_array_equal(random.permutation(k, 5, axis=-1), random.permutation(k, 5))
    assert random.permutation(k, np.zeros((0, 3), np.int8)).shape == (0, 3)
    assert random.permutation(k, np.array(["a", "b", "c"])).dtype == np.dtype("<U1")


@pytest.mark.parametrize(("n", "axis", "error", "match"), [
    ([10, 20], 0, TypeError, r"got \[10, 20\] \(list\); pass np\.asarray"),
    ((3,), 0, TypeError, r"\(tuple\); pass np\.asarray"),
    (np.array(2.0), 0, TypeError, r"n must be an int or an array of rank >= 1"),
    (np.array(True), 0, TypeError, r"got a 0-d array of dtype bool"),
    (np.zeros((2, 3)), 2, ValueError, r"axis 2 is out of bounds for an array of rank 2"),
    (np.zeros((2, 3)), -3, ValueError, r"axis -3 is out of bounds for an array of rank 2"),
    (5, 1, ValueError, r"axis 1 is out of bounds for an array of rank 1"),
    (np.zeros(3), 0.0, TypeError, r"axis must be an int"),
    (np.zeros(3), True, TypeError, r"axis must be an int")])
def test_permutation_refusals_are_named(n, axis, error, match):
    with pytest.raises(error, match=r"random\.permutation: .*" + match):
        random.permutation(random.key(0), n, axis)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.bool_])
def test_float_samplers_refuse_other_dtypes(dtype):
    k = random.key(0)
    with pytest.raises(TypeError, match="float32 or float64"):
        random.normal(k, (3,), dtype)
    with pytest.raises(TypeError, match="float32 or float64"):
        random.uniform(k, (3,), 0.0, 1.0, dtype)


_SAMPLERS = {
    "normal": lambda k: random.normal(k, (16,)),
    "normal64": lambda k: random.normal(k, (16,), np.float64),
    "uniform": lambda k: random.uniform(k, (16,)),
    "uniform_range": lambda k: random.uniform(k, (16,), -3.0, 5.0, np.float64),
    "bernoulli": lambda k: random.bernoulli(k, 0.5, (64,)),
    "permutation": lambda k: random.permutation(k, 16),
    "permuted": lambda k: random.permutation(k, np.arange(32).reshape(16, 2), axis=0),
    "split": lambda k: random.split(k, 3),
    "fold_in": lambda k: random.fold_in(k, 1),
}


@pytest.mark.parametrize("name", sorted(_SAMPLERS))
def test_same_key_same_numbers_and_the_key_is_neither_mutated_nor_advanced(name):
    sample, k = _SAMPLERS[name], random.key(10)
    a = sample(k)
    np.testing.assert_array_equal(k, random.key(10))
    np.testing.assert_array_equal(a, sample(k))
    np.testing.assert_array_equal(a, sample(random.key(10)))
    assert not np.array_equal(a, sample(random.key(11)))


_BAD_KEYS = {"int": 0, "shape3": np.zeros(3, np.uint64), "shape2x2": np.zeros((2, 2), np.uint64),
             "int64": np.zeros(2, np.int64), "list": [0, 0]}


@pytest.mark.parametrize("bad", sorted(_BAD_KEYS))
@pytest.mark.parametrize("fn", sorted(_SAMPLERS))
def test_bad_key_raises_type_error_pointing_to_key(fn, bad):
    with pytest.raises(TypeError, match=r"funcdl\.random\.key"):
        _SAMPLERS[fn](_BAD_KEYS[bad])


# ------------------------------------------------------------------------ statistics

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_statistics(dtype):
    x = random.normal(random.key(123), (100_000,), dtype).astype(np.float64)
    assert abs(x.mean()) < 0.01
    assert abs(x.std() - 1.0) < 0.01


def test_uniform_statistics():
    x = random.uniform(random.key(5), (100_000,), -1.0, 3.0, np.float64)
    assert abs(x.mean() - 1.0) < 0.02
    assert abs(x.std() - 4.0 / np.sqrt(12.0)) < 0.01


@pytest.mark.parametrize("p", [0.1, 0.3, 0.8])
def test_bernoulli_frequency(p):
    b = random.bernoulli(random.key(9), p, (100_000,))
    assert abs(b.mean() - p) < 0.01


def test_split_keys_give_uncorrelated_streams():
    a, b = random.split(random.key(11))
    xa = random.normal(a, (50_000,), np.float64)
    xb = random.normal(b, (50_000,), np.float64)
    assert abs(np.corrcoef(xa, xb)[0, 1]) < 0.02


def test_array_bounds_and_probabilities_broadcast_as_jax():
    k = random.key(3)
    lo, hi = np.array([0.0, 10.0]), np.array([1.0, 10.5])
    u = random.uniform(k, (1000, 2), lo, hi)
    assert u.dtype == np.float32
    assert np.all((u >= lo) & (u < hi))
    np.testing.assert_allclose(u.mean(axis=0), [0.5, 10.25], atol=0.03)
    b = random.bernoulli(k, np.array([0.0, 1.0, 0.5]))  # shape defaults to p's
    assert b.shape == (3,) and not b[0] and b[1]
    many = random.bernoulli(k, np.array([0.1, 0.9]), (5000, 2))
    np.testing.assert_allclose(many.mean(axis=0), [0.1, 0.9], atol=0.02)
    assert random.bernoulli(k, 0.5).shape == ()
    one = random.uniform(k, (), 0.1, 0.2)  # a single draw with bounds (this raised before)
    assert np.shape(one) == () and 0.1 <= one < 0.2


@pytest.mark.parametrize(("call", "match"), [
    (lambda k: random.uniform(k, (2,), np.zeros(3), 1.0), r"broadcast to shape \(2,\)"),
    (lambda k: random.uniform(k, (2,), np.ones(2), np.zeros(2)), "low <= high"),
    (lambda k: random.bernoulli(k, np.array([0.5, 1.5])), r"\[0, 1\]"),
    (lambda k: random.bernoulli(k, np.full(3, 0.5), (2,)), r"shape \(3,\) does not broadcast"),
])
def test_bad_array_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call(random.key(0))


def test_uniform_bounds_that_are_not_numbers_are_a_type_error_and_nan_a_value_error():
    # as bernoulli's p: what is not a number is a TypeError; NaN bounds a ValueError
    with pytest.raises(TypeError, match=r"random\.uniform: low and high must be numbers"):
        random.uniform(random.key(0), (2,), "a")
    with pytest.raises(ValueError, match=r"random\.uniform: low and high must not be NaN"):
        random.uniform(random.key(0), (2,), 0.0, np.array([1.0, np.nan]))
    # JAX's order, the dtype third: the error says where it goes (a probe of the docs)
    with pytest.raises(TypeError, match=r"the dtype comes after them, uniform\(key, shape, "
                                        r"low, high, dtype\)"):
        random.uniform(random.key(0), (2,), np.float64)


@pytest.mark.parametrize("data", [-1, 2**64])
def test_fold_in_refuses_data_it_would_wrap(data):
    with pytest.raises(ValueError, match=r"fold_in: data must be in \[0, 2\*\*64\)"):
        random.fold_in(random.key(0), data)
    assert not np.array_equal(random.fold_in(random.key(0), 2**64 - 1),
                              random.fold_in(random.key(0), 0))


# ------------------------------------------------------------- bounds, shapes, dtypes

_F32MAX, _F64MAX = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)


@pytest.mark.parametrize(("low", "high", "dtype"), [
    (-3e38, 3e38, np.float32), (-_F32MAX, _F32MAX, np.float32), (-1e308, 1e308, np.float64),
    (-_F64MAX, _F64MAX, np.float64), (1e308, _F64MAX, np.float64)])
def test_uniform_wide_finite_bounds_give_spread_samples_in_range(low, high, dtype):
    # high - low overflows the dtype: this warned and returned copies of one number
    x = random.uniform(random.key(0), (1000,), low, high, dtype)
    assert x.dtype == dtype and np.all(np.isfinite(x))
    assert np.all(x >= dtype(low)) and np.all(x < dtype(high))
    quarter = low + (high / 4 - low / 4)  # a quarter of the way up, without overflow
    assert x.min() < quarter and x.max() > high - (high / 4 - low / 4)


def test_uniform_refuses_bounds_beyond_the_sample_dtype():
    with pytest.raises(ValueError, match=r"random\.uniform: .*float32's range.*float64"):
        random.uniform(random.key(0), (3,), -1e39, 0.0)
    assert random.uniform(random.key(0), (3,), -1e39, 0.0, np.float64).min() >= -1e39


@pytest.mark.parametrize(("low", "high"), [
    (0.0, np.inf), (-np.inf, 0.0), (np.inf, np.inf), (-np.inf, np.inf), (0, 10**400),
    (0.0, np.array([1.0, np.inf]))])
def test_uniform_refuses_infinite_bounds(low, high):
    with pytest.raises(ValueError, match=r"random\.uniform: low and high must be finite, got"):
        random.uniform(random.key(0), (2,), low, high, np.float64)


@pytest.mark.parametrize(("low", "high"), [(None, 1.0), (True, 2.0), (0.0, "1"),
                                           (0.0, [1.0, None])])
def test_uniform_refuses_bounds_that_are_not_numbers(low, high):
    with pytest.raises(TypeError, match=r"random\.uniform: low and high must be numbers"):
        random.uniform(random.key(0), (2,), low, high)


def test_bernoulli_0d_is_an_array_like_the_other_samplers():
    b = random.bernoulli(random.key(0), 0.5)
    assert type(b) is np.ndarray and b.shape == () and b.dtype == np.bool_
    assert type(random.normal(random.key(0))) is np.ndarray


@pytest.mark.parametrize("p", [None, True, np.array([True, False]), "0.5", [0.5, None]])
def test_bernoulli_p_that_is_not_a_number_is_a_type_error(p):
    with pytest.raises(TypeError, match=r"random\.bernoulli: p must be a number"):
        random.bernoulli(random.key(0), p, (2,))


def test_dtype_none_is_float32_as_in_jax():
    k = random.key(0)
    assert random.normal(k, (2,), None).dtype == np.float32
    assert random.uniform(k, (2,), -1.0, 1.0, None).dtype == np.float32


@pytest.mark.parametrize(("shape", "error"), [
    (3.0, TypeError), ((3.0, 4), TypeError), (True, TypeError), ((2, True), TypeError),
    ("ab", TypeError), ([1, [2]], TypeError), ((-1, 3), ValueError)])
@pytest.mark.parametrize("fn", ["normal", "uniform", "bernoulli"])
def test_bad_shapes_are_named(fn, shape, error):
    call = {"normal": lambda s: random.normal(random.key(0), s),
            "uniform": lambda s: random.uniform(random.key(0), s),
            "bernoulli": lambda s: random.bernoulli(random.key(0), 0.5, s)}[fn]
    with pytest.raises(error, match=rf"random\.{fn}: .*shape"):
        call(shape)


@pytest.mark.parametrize("dtype", ["floaty", 3.5, "U5"])
def test_bad_dtypes_are_named(dtype):
    for fn in (random.normal, lambda k, s, d: random.uniform(k, s, 0.0, 1.0, d)):
        with pytest.raises(TypeError, match=r"random\.(normal|uniform): dtype must be float32"):
            fn(random.key(0), (2,), dtype)


def test_multivariate_normal_checks_each_covariance_of_a_batch_by_its_own_scale():
    # the tolerance came from the largest entry of the whole stack: beside 1e12·I, a cov
    # with eigenvalues ±1e-3 passed (its samples all 0), and an asymmetric one passed too
    big = 1e12 * np.eye(2)
    for bad, says in (([[0.0, 1e-3], [1e-3, 0.0]], "not positive (semi-)?definite"),
                      ([[1.0, 2e-3], [0.0, 1.0]], "must be symmetric")):
        cov = np.stack([big, np.array(bad)])
        for method in ("eigh", "svd", "cholesky"):
            with pytest.raises(ValueError, match=says):
                random.multivariate_normal(random.key(0), np.zeros((2, 2)), cov, (3, 2),
                                           method=method)
    x = random.multivariate_normal(random.key(0), np.zeros(0), np.zeros((0, 0)), (5,),
                                   method="svd")
    assert x.shape == (5, 0)


def test_samplers_at_the_edge_of_the_float_range_warn_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(random.gamma(random.key(0), 2.1e307, (2,), np.float64)).all()
        r = random.rayleigh(random.key(0), 1e308, (50,), np.float64)
        assert (r > 0).all() and np.isinf(r).any()  # past the range: inf, silently
        with pytest.raises(ValueError, match=r"beyond int64's largest value .*pass a larger p$"):
            random.geometric(random.key(0), 1e-310, (4,))


@pytest.mark.parametrize("sample", [
    lambda k: random.uniform((3, 3), k), lambda k: random.bernoulli((3, 3), 0.5, k),
    lambda k: random.poisson((3, 3), 2.0, k), lambda k: random.truncated_normal((3, 3), -1, 1, k),
], ids=["uniform", "bernoulli", "poisson", "truncated_normal"])
def test_a_key_where_the_shape_belongs_is_named_as_swapped(sample):
    # its two words read as a shape of ~1e19 entries: "beyond what an array can hold" (a
    # probe found it through the initializers, which share shape_arg)
    with pytest.raises(TypeError, match=r"expected a key first and a shape second"):
        sample(random.split(random.key(1))[0])
