"""Tests for funcdl.initializers' truncated_normal, constant, variance_scaling's
'truncated_normal' distribution and delta_orthogonal; the catalogue tests of
test_initializers.py are run on them too (its _FACTORIES, patched for the run)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import test_initializers as base

from funcdl import initializers as init
from funcdl import layers as L
from funcdl import random

K = random.key(0)
CONV = (3, 3, 64, 128)
# std of a standard normal truncated to [-2, 2], from the closed form
_PHI2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNC_STD = math.sqrt(1 - 4 * _PHI2 / math.erf(math.sqrt(2)))

NEW = {  # name: factory, as test_initializers._FACTORIES holds them
    "truncated_normal": init.truncated_normal,
    "constant": lambda: init.constant(0.5),
    "variance_scaling_truncated": lambda: init.variance_scaling(2.0, "fan_in",
                                                                "truncated_normal"),
}
NEW_RANDOM = ["truncated_normal", "variance_scaling_truncated"]


@pytest.fixture
def catalogue(monkeypatch):
    for name, factory in NEW.items():
        monkeypatch.setitem(base._FACTORIES, name, factory)


@pytest.mark.parametrize("shape", [(5, 7), (7, 5), (3, 3, 4, 8), (2, 6, 3)])
@pytest.mark.parametrize("name", sorted(NEW))
def test_catalogue_shape_and_dtype(catalogue, name, shape):
    base.test_factory_honors_shape_and_dtype(name, shape)


def _as_named(monkeypatch, name):
    """The catalogue name whose errors ``name``'s factory gives (its own, but the
    truncated variance_scaling's, which stands in for variance_scaling's entry)."""
    if name == "variance_scaling_truncated":
        monkeypatch.setitem(base._FACTORIES, "variance_scaling", NEW[name])
        return "variance_scaling"
    return name


@pytest.mark.parametrize("name", sorted(NEW))
def test_catalogue_shapes_and_dtypes_alike(catalogue, monkeypatch, name):
    base.test_every_initializer_takes_shapes_and_dtypes_alike(_as_named(monkeypatch, name))


@pytest.mark.parametrize("name", NEW_RANDOM)
def test_catalogue_random_ones(catalogue, monkeypatch, name):
    base.test_random_factories_deterministic_per_key(name)
    base.test_1d_shape_for_non_orthogonal(name)
    base.test_errors_name_the_initializer_that_was_called(_as_named(monkeypatch, name))


def test_jax_truncated_std_constant_is_the_closed_form():
    assert abs(init._TRUNCATED_STD - TRUNC_STD) < 1e-15


# ------------------------------------------------------------------- truncated_normal

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_truncated_normal_defaults_as_jax(dtype):
    w = init.truncated_normal()(K, (400, 300), dtype)
    assert w.dtype == dtype
    assert np.abs(w).max() <= 2e-2 and np.abs(w).max() > 1.99e-2
    assert abs(w.astype(np.float64).std() / (1e-2 * TRUNC_STD) - 1) < 0.01
    assert abs(w.mean()) < 1e-4


def test_truncated_normal_bounds_count_in_stddev_units():
    # JAX: stddev * truncated_normal(lower, upper); torch's a, b = stddev * lower, upper
    w = init.truncated_normal(0.5, -1.0, 3.0)(K, (200, 500), np.float64)
    assert w.min() >= -0.5 and w.max() <= 1.5
    assert w.min() < -0.499 and w.max() > 1.2
    a, b = -1.0, 3.0
    pa, pb = math.exp(-a * a / 2), math.exp(-b * b / 2)
    z = (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2))) / 2
    mean = (pa - pb) / math.sqrt(2 * math.pi) / z
    var = 1 + (a * pa - b * pb) / math.sqrt(2 * math.pi) / z - mean**2
    assert abs(w.mean() - 0.5 * mean) < 0.005
    assert abs(w.var() / (0.25 * var) - 1) < 0.02


def test_truncated_normal_far_tail_and_zero_stddev():
    w = init.truncated_normal(1.0, 8.0, 9.0)(K, (1000,))
    assert w.dtype == np.float32 and w.min() >= 8.0 and w.max() <= 9.0
    np.testing.assert_array_equal(init.truncated_normal(0.0)(K, (3,)), np.zeros(3))


# ------------------------------------------------------------------- variance_scaling

@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_truncated_has_the_variance_and_jax_bound(mode):
    fi, fo = init.fans(CONV)
    n = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode]
    w = init.variance_scaling(3.0, mode, "truncated_normal")(K, CONV, np.float64)
    assert abs(w.var() / (3.0 / n) - 1) < 0.02  # not 0.774 (no rescale) nor 1.29 (twice)
    bound = 2 * math.sqrt(3.0 / n) / TRUNC_STD
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


def test_variance_scaling_truncated_refuses_float32_overflow():
    with pytest.raises(ValueError, match=r"initializers\.variance_scaling: .*float32's range"):
        init.variance_scaling(1e300, "fan_in", "truncated_normal")(K, (2, 2))
    assert np.isfinite(init.variance_scaling(1e300, "fan_in", "truncated_normal")(
        K, (2, 2), np.float64)).all()


# --------------------------------------------------------------------------- constant

def test_constant_values_and_dtypes():
    np.testing.assert_array_equal(init.constant(0.25)(K, (2, 3)), np.full((2, 3), 0.25))
    assert init.constant(0.25)(None, (2,)).dtype == np.float32  # key unread, as JAX's
    assert init.constant(-3)(K, (4,), np.int8).tolist() == [-3] * 4
    assert init.constant(1.0)(K, (2,), bool).tolist() == [True, True]
    big = 2**62 + 1  # past float64's 53 bits: kept exact
    assert init.constant(big)(K, (1,), np.int64)[0] == big
    assert init.constant(np.int64(7))(K, (), np.float64).item() == 7.0


@pytest.mark.parametrize(("value", "dtype", "match"), [
    (2.5, np.int32, "not a int32 value"), (300, np.uint8, "not a uint8 value"),
    (-1, np.uint8, "not a uint8 value"), (2, bool, "not a bool value"),
    (1e39, np.float32, "beyond float32's range"),
])
def test_constant_refuses_values_the_dtype_cannot_hold(value, dtype, match):
    with pytest.raises(ValueError, match=r"initializers\.constant: .*" + re.escape(match)):
        init.constant(value)(K, (2,), dtype)


@pytest.mark.parametrize(("value", "error"), [
    (np.nan, ValueError), (np.inf, ValueError), (None, TypeError), ("1", TypeError),
    (True, TypeError), (np.ones(2), TypeError)])
def test_constant_setting_is_checked_at_the_factory(value, error):
    with pytest.raises(error, match=r"initializers\.constant: value"):
        init.constant(value)


# ------------------------------------------------------------------ delta_orthogonal

@pytest.mark.parametrize("shape", [(3, 4, 8), (3, 3, 4, 8), (5, 4, 4, 6), (3, 3, 3, 2, 5),
                                   (2, 2, 3, 3), (1, 1, 6, 6)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_delta_orthogonal_is_orthogonal_at_the_centre_and_zero_elsewhere(shape, dtype):
    w = init.delta_orthogonal(2.0)(K, shape, dtype)
    assert w.shape == shape and w.dtype == dtype
    centre = tuple((k - 1) // 2 for k in shape[:-2])  # JAX's index: 0 for an even k = 2
    m = w[centre].astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(m @ m.T, 4 * np.eye(shape[-2]), atol=tol * 4)
    rest = w.copy()
    rest[centre] = 0
    assert not rest.any()


def test_delta_orthogonal_is_an_isometry_of_a_conv():
    # the whole kernel, applied to any input patch, preserves the norm of the centre pixel
    w = init.delta_orthogonal()(K, (3, 3, 5, 7), np.float64)
    flat = w.reshape(-1, 7)
    x = random.normal(random.key(1), (9 * 5,), np.float64)
    np.testing.assert_allclose(np.linalg.norm(x @ flat), np.linalg.norm(x[4 * 5:5 * 5]))


def test_delta_orthogonal_deterministic_and_named_refusals():
    a = init.delta_orthogonal()(K, (3, 3, 2, 4))
    np.testing.assert_array_equal(a, init.delta_orthogonal()(random.key(0), (3, 3, 2, 4)))
    assert not np.array_equal(a, init.delta_orthogonal()(random.key(1), (3, 3, 2, 4)))
    where = r"initializers\.delta_orthogonal: "
    for shape in [(4, 4), (4,), (1, 1, 1, 1, 1, 2, 2)]:
        with pytest.raises(ValueError, match=where + "needs a conv kernel shape"):
            init.delta_orthogonal()(K, shape)
    with pytest.raises(ValueError, match=where + r"needs in <= out.*in=5, out=3"):
        init.delta_orthogonal()(K, (3, 3, 5, 3))
    with pytest.raises(TypeError, match=where + "dtype must be float32 or float64"):
        init.delta_orthogonal()(K, (3, 3, 2, 4), np.int32)
    with pytest.raises(TypeError, match=where + "expected a key"):
        init.delta_orthogonal()(0, (3, 3, 2, 4))
    with pytest.raises(ValueError, match=where + "scale must be a finite number"):
        init.delta_orthogonal(np.nan)
    with pytest.raises(ValueError, match=where + ".*float32's range"):
        init.delta_orthogonal(1e39)(K, (3, 3, 2, 4))


# ------------------------------------------------------------------ checked settings

@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: init.truncated_normal(-1.0), ValueError, "stddev must be a finite number >= 0"),
    (lambda: init.truncated_normal("a"), TypeError, "stddev must be a real number"),
    (lambda: init.truncated_normal(K, (3,)), TypeError, "factories"),
    (lambda: init.truncated_normal(1.0, 2.0, 2.0), ValueError, "needs lower < upper"),
    (lambda: init.truncated_normal(1.0, -np.inf), ValueError, "lower must be a finite"),
    (lambda: init.truncated_normal(1.0, upper=None), TypeError, "upper must be a real"),
    (lambda: init.variance_scaling(1.0, "fan_in", "truncated"), ValueError,
     "normal, truncated_normal or uniform"),
])
def test_settings_are_checked_when_the_factory_is_called(make, error, match):
    with pytest.raises(error, match=r"initializers\.\w+: .*" + re.escape(match)):
        make()


def test_truncated_normal_refuses_float32_overflow():
    with pytest.raises(ValueError, match=r"initializers\.truncated_normal: .*float32's range"):
        init.truncated_normal(1e38, -5.0, 5.0)(K, (2,))
    assert np.isfinite(init.truncated_normal(1e38, -5.0, 5.0)(K, (2,), np.float64)).all()


def test_new_names_are_exported():
    for name in ("truncated_normal", "constant", "delta_orthogonal"):
        assert name in init.__all__


def test_a_layer_names_funcdls_own_initializers_refusal_without_the_signature_hint():
    # delta_orthogonal was called rightly (key, shape, dtype): its refusal is the whole story

    with pytest.raises(ValueError, match=r"^Conv2D\(4, 3\): w_init: initializers\."
                                         r"delta_orthogonal: needs in <= out") as e:
        L.Conv2D(4, 3, w_init=init.delta_orthogonal()).init(random.key(0), (None, 5, 5, 8))
    assert "it must take a funcdl.random key" not in str(e.value)
