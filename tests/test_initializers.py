"""Tests for funcdl.initializers: factories, fans, distributions, orthogonal."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from funcdl import initializers as init
from funcdl import random

_FACTORIES = {
    "zeros": init.zeros,
    "ones": init.ones,
    "normal": init.normal,
    "uniform": init.uniform,
    "glorot_uniform": init.glorot_uniform,
    "glorot_normal": init.glorot_normal,
    "xavier_uniform": init.xavier_uniform,
    "xavier_normal": init.xavier_normal,
    "he_uniform": init.he_uniform,
    "he_normal": init.he_normal,
    "lecun_normal": init.lecun_normal,
    "lecun_uniform": init.lecun_uniform,
    "orthogonal": init.orthogonal,
    "torch_default": init.torch_default,
    "variance_scaling": lambda: init.variance_scaling(2.0, "fan_out", "normal"),
    "truncated_normal": init.truncated_normal,
    "constant": lambda: init.constant(0.5),
}
_RANDOM = sorted(set(_FACTORIES) - {"zeros", "ones", "constant"})

DENSE = (400, 300)
CONV = (3, 3, 64, 128)


@pytest.mark.parametrize("shape", [(5, 7), (7, 5), (3, 3, 4, 8), (2, 6, 3)])
@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_factory_honors_shape_and_dtype(name, shape):
    f = _FACTORIES[name]()
    k = random.key(0)
    w32 = f(k, shape)
    assert isinstance(w32, np.ndarray)
    assert w32.shape == shape and w32.dtype == np.float32
    w64 = f(k, shape, np.float64)
    assert w64.shape == shape and w64.dtype == np.float64
    assert np.all(np.isfinite(w32)) and np.all(np.isfinite(w64))


@pytest.mark.parametrize("name", _RANDOM)
def test_random_factories_deterministic_per_key(name):
    f = _FACTORIES[name]()
    a = f(random.key(1), (6, 4))
    np.testing.assert_array_equal(a, f(random.key(1), (6, 4)))
    assert not np.array_equal(a, f(random.key(2), (6, 4)))


@pytest.mark.parametrize("name", sorted(set(_RANDOM) - {"orthogonal", "torch_default"}))
def test_1d_shape_for_non_orthogonal(name):
    w = _FACTORIES[name]()(random.key(0), (10,))
    assert w.shape == (10,) and w.dtype == np.float32


def test_torch_default_refuses_a_bias_shape_whose_bound_it_cannot_know():
    # torch's bias bound is 1/sqrt(the layer's fan_in); a (40,) shape would give 1/sqrt(40)
    for shape in ((40,), 40, ()):
        with pytest.raises(ValueError, match=r"torch_default: needs a weight shape of rank "
                                             r">= 2 .*leave b_init=None"):
            init.torch_default()(random.key(0), shape)


def test_zeros_and_ones_values():
    k = random.key(0)
    np.testing.assert_array_equal(init.zeros()(k, (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(init.ones()(k, (2, 3), np.float64), np.ones((2, 3)))


def test_xavier_aliases_match_glorot():
    k = random.key(5)
    np.testing.assert_array_equal(init.xavier_uniform()(k, DENSE), init.glorot_uniform()(k, DENSE))
    np.testing.assert_array_equal(init.xavier_normal()(k, DENSE), init.glorot_normal()(k, DENSE))


# ------------------------------------------------------------------------------- fans

@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((10,), (10, 10)),
        ((400, 300), (400, 300)),
        ((5, 16, 32), (80, 160)),
        ((3, 3, 64, 128), (576, 1152)),
        ((2, 5, 3, 7), (30, 70)),
    ],
)
def test_fans(shape, expected):
    assert init.fans(shape) == expected


# ---------------------------------------------------------------------- distributions

def _sample(factory, shape, seed=0):
    return factory(random.key(seed), shape, np.float64)


def _uniform_bounds():
    # (factory, bound as a function of (fan_in, fan_out))
    return {
        "glorot_uniform": (init.glorot_uniform, lambda fi, fo: math.sqrt(6 / (fi + fo))),
        "he_uniform": (init.he_uniform, lambda fi, fo: math.sqrt(6 / fi)),
        "lecun_uniform": (init.lecun_uniform, lambda fi, fo: math.sqrt(3 / fi)),
        "torch_default": (init.torch_default, lambda fi, fo: 1 / math.sqrt(fi)),
    }


def _normal_stds():
    return {
        "glorot_normal": (init.glorot_normal, lambda fi, fo: math.sqrt(2 / (fi + fo))),
        "he_normal": (init.he_normal, lambda fi, fo: math.sqrt(2 / fi)),
        "lecun_normal": (init.lecun_normal, lambda fi, fo: math.sqrt(1 / fi)),
    }


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("name", sorted(_uniform_bounds()))
def test_uniform_schemes_bound(name, shape):
    factory, bound_of = _uniform_bounds()[name]
    bound = bound_of(*init.fans(shape))
    for dtype in (np.float32, np.float64):
        w = factory()(random.key(0), shape, dtype)
        m = float(np.abs(w).max())
        assert m <= bound * (1 + 1e-6), (m, bound)
        assert m >= bound * 0.999, (m, bound)
    w = _sample(factory(), shape)
    assert abs(w.mean()) < bound * 0.01
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01
    assert w.min() < 0 < w.max()


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("name", sorted(_normal_stds()))
def test_normal_schemes_std(name, shape):
    factory, std_of = _normal_stds()[name]
    std = std_of(*init.fans(shape))
    for dtype in (np.float32, np.float64):
        w = factory()(random.key(0), shape, dtype).astype(np.float64)
        assert abs(w.std() / std - 1) < 0.03, (w.std(), std)
        assert abs(w.mean()) < std * 0.02
    # untruncated: some samples beyond 2 std
    assert np.abs(w).max() > 3 * std


def test_torch_default_conv_uses_receptive_field():
    # PyTorch: fan_in of a Conv2d weight is in_channels * kh * kw
    w = init.torch_default()(random.key(1), CONV)
    assert np.abs(w).max() <= 1 / math.sqrt(3 * 3 * 64) * (1 + 1e-6)
    assert np.abs(w).max() > 1 / math.sqrt(3 * 3 * 64) * 0.999


def test_normal_std_and_mean():
    w = init.normal(0.5, mean=1.0)(random.key(0), (200, 500), np.float64)
    assert abs(w.mean() - 1.0) < 0.01
    assert abs(w.std() - 0.5) < 0.01
    d = init.normal()(random.key(0), (200, 500), np.float64)
    assert abs(d.std() - 1e-2) < 3e-4


def test_uniform_scale_and_low():
    w = init.uniform(0.3)(random.key(0), (200, 500), np.float64)
    assert w.min() >= 0.0 and w.max() < 0.3
    assert w.max() > 0.299 and w.min() < 0.001
    s = init.uniform(0.3, low=-0.3)(random.key(0), (200, 500), np.float64)
    assert s.min() >= -0.3 and s.max() < 0.3
    assert s.min() < -0.299 and s.max() > 0.299
    d = init.uniform()(random.key(0), (1000,))
    assert d.min() >= 0.0 and d.max() < 1e-2


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_variance_scaling_variance(mode, distribution):
    fi, fo = init.fans(CONV)
    n = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode]
    w = _sample(init.variance_scaling(3.0, mode, distribution), CONV)
    assert abs(w.var() / (3.0 / n) - 1) < 0.03
    if distribution == "uniform":
        assert np.abs(w).max() <= math.sqrt(9.0 / n)


@pytest.mark.parametrize(
    ("mode", "distribution"),
    [("fan_sum", "normal"), ("FAN_IN", "normal"), ("fan_in", "untruncated_normal"),
     ("fan_in", "gaussian")],
)
def test_variance_scaling_rejects_bad_arguments(mode, distribution):
    with pytest.raises(ValueError, match="variance_scaling"):
        init.variance_scaling(1.0, mode, distribution)


# -------------------------------------------------------------------------- orthogonal

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal_tall(dtype):
    w = init.orthogonal()(random.key(0), (50, 20), dtype)
    assert w.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w.T.astype(np.float64) @ w, np.eye(20), atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal_wide(dtype):
    w = init.orthogonal()(random.key(0), (20, 50), dtype)
    assert w.shape == (20, 50)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w.astype(np.float64) @ w.T, np.eye(20), atol=tol)


def test_orthogonal_square_and_scale():
    w = init.orthogonal(scale=2.0)(random.key(3), (16, 16), np.float64)
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(16), atol=1e-12)
    np.testing.assert_allclose(w @ w.T, 4 * np.eye(16), atol=1e-12)


def test_orthogonal_conv_kernel():
    w = init.orthogonal()(random.key(0), (3, 3, 4, 16), np.float64)
    m = w.reshape(-1, 16)  # (36, 16), tall
    np.testing.assert_allclose(m.T @ m, np.eye(16), atol=1e-12)


def test_orthogonal_deterministic_per_key():
    f = init.orthogonal()
    a = f(random.key(0), (8, 5))
    np.testing.assert_array_equal(a, f(random.key(0), (8, 5)))
    assert not np.allclose(a, f(random.key(1), (8, 5)))


@pytest.mark.parametrize("shape", [(4, 3), (3, 4)])
def test_orthogonal_signs_are_symmetric(shape):
    # Uniform over orthogonal matrices: each entry is symmetric about 0. (A plain QR
    # without R's diagonal signs folded in makes w[0, 0] always <= 0.)
    f = init.orthogonal()
    keys = random.split(random.key(0), 200)
    first = np.array([f(k, shape, np.float64)[0, 0] for k in keys])
    assert 0.35 < np.mean(first > 0) < 0.65


@pytest.mark.parametrize("shape", [(5,), ()])
def test_orthogonal_rejects_rank_below_2(shape):
    with pytest.raises(ValueError, match="orthogonal"):
        init.orthogonal()(random.key(0), shape)


# ------------------------------------------------------------------ checked arguments

def _name(name):
    """The prefix of an initializer's errors."""
    return rf"initializers\.{name}:"


def test_ordinary_values_are_pinned():
    k = random.key(0)
    assert init.glorot_uniform()(k, (2, 2)).tolist() == [
        [-1.1396450996398926, -1.1964613199234009], [0.27422094345092773, -0.6330726146697998]]
    assert init.he_normal()(k, (2, 2), np.float64).tolist() == [
        [0.15929546600623282, -1.7741885208017214], [1.3265118818830892, 1.2048090979493156]]
    assert init.uniform(0.5, -0.5)(k, (3,)).tolist() == [
        -0.4652581214904785, -0.4884532690048218, 0.11195021867752075]


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.float16])
def test_orthogonal_refuses_what_the_other_random_initializers_refuse(dtype):
    # int32 gave zeros, bool True
    for f in (init.orthogonal(), init.glorot_uniform()):
        with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
            f(random.key(0), (3, 3), dtype)


@pytest.mark.parametrize("name", _RANDOM)
def test_errors_name_the_initializer_that_was_called(name):
    f, k = _FACTORIES[name](), random.key(0)  # xavier_* too, not glorot_*
    with pytest.raises(TypeError, match=_name(name) + " dtype must be float32 or float64"):
        f(k, (3, 4), np.float16)
    with pytest.raises(TypeError, match=_name(name) + " expected a key"):
        f(0, (3, 4))
    # key and shape swapped: the key's two words were read as a huge shape (a probe; the
    # words of key(0) are a shape of zeros, which passed)
    with pytest.raises(TypeError, match=_name(name) + " expected a key"):
        f((3, 4), random.split(random.key(1))[0])


@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_every_initializer_takes_shapes_and_dtypes_alike(name):
    f, k = _FACTORIES[name](), random.key(0)
    if name in ("orthogonal", "torch_default"):
        with pytest.raises(ValueError, match=_name(name) + " needs a .*shape of rank >= 2"):
            f(k, 3)
    else:  # an int is a 1-tuple, as in funcdl.random
        np.testing.assert_array_equal(f(k, 3), f(k, (3,)))
        assert type(f(k, ())) is np.ndarray and f(k, ()).shape == ()
    assert f(k, (3, 4), None).dtype == np.float32  # None is funcdl's default, not float64
    for shape, error in [((-1, 3), ValueError), ((3.0, 4), TypeError), ((True, 2), TypeError),
                         (3.0, TypeError), ("ab", TypeError)]:
        with pytest.raises(error, match=_name(name) + " .*shape"):
            f(k, shape)
    with pytest.raises(TypeError, match=_name(name) + " dtype must be"):
        f(k, (3, 4), "floaty")


def test_fans_take_an_int_and_keep_the_documented_low_rank_rule():
    assert init.fans(3) == init.fans((3,)) == (3, 3)
    assert init.fans(()) == (1, 1)
    with pytest.raises(ValueError, match=_name("fans")):
        init.fans((-1, 3))


def test_zeros_and_ones_keep_integer_dtypes_and_refuse_non_numbers():
    assert init.zeros()(random.key(0), (2,), np.int32).dtype == np.int32
    with pytest.raises(TypeError, match=_name("ones") + " dtype must be a NumPy number"):
        init.ones()(random.key(0), (2,), "U5")


_BAD_SETTINGS = [
    (lambda: init.normal(None), TypeError, "normal", "std must be a real number"),
    (lambda: init.normal(random.key(0), (2,)), TypeError, "normal", "factories"),
    (lambda: init.normal(True), TypeError, "normal", "std"),
    (lambda: init.normal("0.1"), TypeError, "normal", "std"),
    (lambda: init.normal(-1.0), ValueError, "normal", "std must be a finite number >= 0"),
    (lambda: init.normal(np.nan), ValueError, "normal",
     "std must be a finite number >= 0, got nan"),
    (lambda: init.normal(0.1, mean=np.inf), ValueError, "normal",
     "mean must be a finite number, got inf"),
    (lambda: init.normal(0.1, mean=None), TypeError, "normal", "mean"),
    (lambda: init.uniform(np.inf), ValueError, "uniform", "scale must be a finite number"),
    (lambda: init.uniform("a"), TypeError, "uniform", "scale must be a real number"),
    (lambda: init.uniform(False), TypeError, "uniform", "scale"),
    (lambda: init.uniform(-1.0), ValueError, "uniform", "low <= scale"),
    (lambda: init.uniform(0.1, low=0.2), ValueError, "uniform", "low <= scale"),
    (lambda: init.uniform(0.1, low=-np.inf), ValueError, "uniform",
     "low must be a finite number, got -inf"),
    (lambda: init.orthogonal("a"), TypeError, "orthogonal", "scale"),
    (lambda: init.orthogonal(np.nan), ValueError, "orthogonal", "scale must be a finite number"),
    (lambda: init.variance_scaling(-1.0, "fan_in", "normal"), ValueError, "variance_scaling",
     "scale must be a finite number > 0"),
    (lambda: init.variance_scaling(0, "fan_in", "normal"), ValueError, "variance_scaling",
     "scale must be a finite number > 0"),
    (lambda: init.variance_scaling("2", "fan_in", "normal"), TypeError, "variance_scaling",
     "scale must be a real number"),
    (lambda: init.variance_scaling(True, "fan_in", "normal"), TypeError, "variance_scaling",
     "scale"),
    (lambda: init.variance_scaling(np.inf, "fan_in", "normal"), ValueError,
     "variance_scaling", "scale must be a finite number"),
    (lambda: init.variance_scaling(1.0, None, "normal"), TypeError, "variance_scaling",
     "mode must be a str"),
    (lambda: init.variance_scaling(1.0, np.array(["fan_in", "x"]), "normal"), TypeError,
     "variance_scaling", "mode"),
    (lambda: init.variance_scaling(1.0, "fan_in", 3), TypeError, "variance_scaling",
     "distribution"),
]


@pytest.mark.parametrize("case", range(len(_BAD_SETTINGS)))
def test_settings_are_checked_when_the_factory_is_called(case):
    make, error, name, match = _BAD_SETTINGS[case]
    with pytest.raises(error, match=_name(name) + ".*" + re.escape(match)):
        make()  # the factory alone: its init is never reached


def test_settings_that_overflow_the_sample_dtype_are_refused_not_warned():
    k = random.key(0)
    cases = [(init.normal(1e39), "normal"), (init.normal(0.0, mean=-1e39), "normal"),
             (init.uniform(1e39), "uniform"), (init.orthogonal(1e39), "orthogonal"),
             (init.variance_scaling(1e300, "fan_in", "normal"), "variance_scaling"),
             (init.variance_scaling(1e300, "fan_in", "uniform"), "variance_scaling")]
    for f, name in cases:
        with pytest.raises(ValueError, match=_name(name) + ".*float32's range"):
            f(k, (2, 2))
        assert np.all(np.isfinite(f(k, (2, 2), np.float64)))  # float64 holds them
    assert np.all(np.isfinite(init.normal(1e37)(k, (1000,))))  # 16 std fit: no overflow


def test_delta_orthogonal_of_no_taps_and_constant_past_complex64():
    from funcdl import initializers as I

    assert I.delta_orthogonal()(random.key(0), (0, 3, 2, 2)).shape == (0, 3, 2, 2)
    with pytest.raises(ValueError, match=r"beyond complex64's range; pass "
                                         r"dtype=np.complex128"):
        I.constant(1e300)(None, (2,), np.complex64)
