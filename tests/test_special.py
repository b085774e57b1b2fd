"""funcdl._special: erf and erfc against the standard library's math.erf / math.erfc."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from funcdl import _special
from funcdl._special import erf, erfc

Array = NDArray[Any]

ERF_RTOL = 1e-14  # the contract; measured: 6.4e-16
ERFC_RTOL = 1e-13  # the contract; measured: 1.0e-15
TINY = np.finfo(np.float64).tiny
SUBNORMAL = 2.0**-1074

def ref_erf(x: Array) -> Array:
    return np.array([math.erf(v) for v in x.tolist()])


def ref_erfc(x: Array) -> Array:
    return np.array([math.erfc(v) for v in x.tolist()])


def _around(*points: float) -> Array:
    """Each point and its float64 neighbours, to catch a seam between two ranges."""
    p = np.array(points)
    return np.concatenate([np.nextafter(p, -np.inf), p, np.nextafter(p, np.inf)])


def max_rel_err(got: Array, ref: Array) -> float:
    """Largest relative error; where the reference is 0 the result must be exactly 0."""
    assert got.shape == ref.shape and got.dtype == np.float64
    zero = ref == 0
    assert np.all(got[zero] == 0)
    return float(np.max(np.abs(got[~zero] - ref[~zero]) / np.abs(ref[~zero])))


@pytest.fixture(scope="module")
def erf_grid() -> tuple[Array, Array]:
    rng = np.random.default_rng(1969)
    tiny = np.geomspace(1e-300, 0.5, 4001)
    x = np.concatenate([
        np.linspace(-10, 10, 200_001),
        rng.uniform(-6, 6, 100_000),
        tiny, -tiny,
        _around(0.46875, -0.46875, 4.0, -4.0, 6.0, -6.0, 0.5, 1.0, 2.0),
    ])
    return x, ref_erf(x)


@pytest.fixture(scope="module")
def erfc_grid() -> tuple[Array, Array]:
    rng = np.random.default_rng(1990)
    x = np.concatenate([
        np.linspace(0, 26, 200_001),
        rng.uniform(0, 26, 100_000),
        np.linspace(-6, 0, 20_001),
        np.geomspace(1e-300, 0.5, 2001),
        _around(0.46875, -0.46875, 4.0, 26.0),
    ])
    return x, ref_erfc(x)


# --- accuracy in float64 ---------------------------------------------------------------


def test_erf_float64_accuracy(erf_grid: tuple[Array, Array]) -> None:
    x, ref = erf_grid
    err = max_rel_err(erf(x), ref)
    assert err < ERF_RTOL, err


def test_erfc_float64_accuracy(erfc_grid: tuple[Array, Array]) -> None:
    x, ref = erfc_grid
    err = max_rel_err(erfc(x), ref)
    assert err < ERFC_RTOL, err


def test_erfc_subnormal_tail_and_zero() -> None:
    x = np.linspace(26.0, 30.0, 40_001)
    got, ref = erfc(x), ref_erfc(x)
    normal = ref >= TINY
    assert max_rel_err(got[normal], ref[normal]) < ERFC_RTOL
    # erfc is subnormal from 26.55 and rounds to 0 from 27.23: absolute error in 2**-1074.
    assert np.max(np.abs(got - ref)[~normal]) <= 4 * SUBNORMAL
    assert np.all(got[x >= 27.23] == 0)


@pytest.mark.parametrize(
    ("table", "index"),
    [(name, i) for name in ("_R1_NUM", "_R1_DEN", "_R2_NUM", "_R2_DEN", "_R3_NUM", "_R3_DEN")
     for i in range(len(getattr(_special, name)))])
def test_a_wrong_coefficient_breaks_the_accuracy_bounds(
        monkeypatch: pytest.MonkeyPatch, erf_grid: tuple[Array, Array],
        erfc_grid: tuple[Array, Array], table: str, index: int) -> None:
    """The accuracy tests see any coefficient off in its fifth significant digit."""
    coeffs = list(getattr(_special, table))
    coeffs[index] = np.array(float(coeffs[index]) * (1 + 1e-4))
    monkeypatch.setattr(_special, table, tuple(coeffs))
    x, ref = erf_grid
    xc, refc = erfc_grid
    erf_err = max_rel_err(erf(x), ref)
    erfc_err = max_rel_err(erfc(xc), refc)
    assert erf_err > ERF_RTOL or erfc_err > ERFC_RTOL, (erf_err, erfc_err)


# --- special values, limits, warnings ----------------------------------------------------


def test_special_values() -> None:
    with np.errstate(all="raise"):
        x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e308, -1e308,
                      np.finfo(np.float64).max, -np.finfo(np.float64).max])
        e = erf(x)
        np.testing.assert_array_equal(
            e, [0.0, -0.0, 1.0, -1.0, np.nan, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
        assert not np.signbit(e[0]) and np.signbit(e[1])
        np.testing.assert_array_equal(
            erfc(x), [1.0, 1.0, 0.0, 2.0, np.nan, 0.0, 2.0, 0.0, 2.0, 0.0, 2.0])


def test_exact_limits() -> None:
    far = np.array([5.93, 6.0, 6.5, 10.0, 26.0, 27.3, 1e3, 1e30, 1e308, np.inf])
    np.testing.assert_array_equal(erf(far), 1.0)
    np.testing.assert_array_equal(erf(-far), -1.0)
    np.testing.assert_array_equal(erfc(-far[far >= 5.87]), 2.0)
    np.testing.assert_array_equal(erfc(far[far >= 27.23]), 0.0)
    # and just before, erf is not yet 1 (as math.erf)
    assert erf(np.array(5.9)) < 1.0 and math.erf(5.9) < 1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_no_floating_point_errors_for_any_input(dtype: type[np.floating[Any]]) -> None:
    info = np.finfo(dtype)
    big = float(info.max)
    mag = np.append(np.geomspace(float(info.smallest_subnormal), big / 4, 4001), big)
    mag = mag.astype(dtype)
    x = np.concatenate([mag, -mag, np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)])
    with np.errstate(all="raise"):  # over, under, invalid and divide all raise
        e, c = erf(x), erfc(x)
    assert e.dtype == dtype and c.dtype == dtype
    assert np.isnan(e[-1]) and np.isnan(c[-1])
    assert np.all((np.abs(e[:-1]) <= 1) & (c[:-1] >= 0) & (c[:-1] <= 2))


def test_odd_symmetry(erf_grid: tuple[Array, Array]) -> None:
    x = erf_grid[0]
    np.testing.assert_array_equal(erf(-x), -erf(x))  # bit for bit
    np.testing.assert_allclose(erfc(x) + erfc(-x), 2.0, rtol=0, atol=4.5e-16)


def test_erf_plus_erfc_is_one(erf_grid: tuple[Array, Array]) -> None:
    x = erf_grid[0]
    np.testing.assert_allclose(erf(x) + erfc(x), 1.0, rtol=0, atol=3.4e-16)


def test_monotone_on_a_dense_grid() -> None:
    x = np.linspace(-7, 30, 3_700_001)  # step 1e-5, far above an ulp
    assert np.all(np.diff(erf(x)) >= 0)
    assert np.all(np.diff(erfc(x)) <= 0)


# --- dtypes, shapes -----------------------------------------------------------------------


def test_float32_keeps_dtype_and_float64_accuracy() -> None:
    x = np.concatenate([np.linspace(-10, 10, 200_001), np.geomspace(1e-37, 1, 1001)])
    x32 = x.astype(np.float32)
    x64 = x32.astype(np.float64)
    for f, lo, hi in ((erf, -10, 10), (erfc, -6, 9)):  # erfc(9) is still a normal float32
        got = f(x32[(x32 >= lo) & (x32 <= hi)])
        want = f(x64[(x64 >= lo) & (x64 <= hi)])
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        # computed in float64, then correctly rounded once
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_zero_d_inputs() -> None:
    for v, dtype in ((np.array(0.5), np.float64), (np.float32(0.5), np.float32),
                     (0.5, np.float64), (np.float64(-2.0), np.float64)):
        for f, ref in ((erf, math.erf), (erfc, math.erfc)):
            r = f(v)
            assert isinstance(r, np.ndarray) and r.shape == () and r.dtype == dtype
            assert r == pytest.approx(ref(float(v)), rel=1e-6 if dtype == np.float32 else 1e-15)
    assert np.isnan(erf(np.array(np.nan))) and erf(np.array(np.nan)).shape == ()


def test_other_dtypes() -> None:
    x = np.array([-3, -1, 0, 1, 3])
    np.testing.assert_array_equal(erf(x), erf(x.astype(np.float64)))
    assert erf(x).dtype == np.float64 and erfc(x).dtype == np.float64
    assert erf(np.array([True, False])).dtype == np.float64
    h = erf(np.array([0.25, 1.0], np.float16))
    assert h.dtype == np.float16
    np.testing.assert_allclose(h, [math.erf(0.25), math.erf(1.0)], rtol=1e-3)
    np.testing.assert_allclose(erf([0.5, 1.0]), [math.erf(0.5), math.erf(1.0)], rtol=1e-15)
    for bad in (np.array([1 + 1j]), np.array(["a"]), np.array([None])):
        with pytest.raises(TypeError, match="erf: expected a real array"):
            erf(bad)
        with pytest.raises(TypeError, match="erfc: expected a real array"):
            erfc(bad)


def test_shapes_layouts_and_no_mutation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (4, 5, 6))
    x[0, 0, 0] = np.nan
    keep = x.copy()
    for f in (erf, erfc):
        flat = f(x.ravel())
        r = f(x)
        assert r.shape == x.shape
        np.testing.assert_array_equal(r.ravel(), flat)
        t = f(x.T)  # non-contiguous
        np.testing.assert_array_equal(t, r.T)
        np.testing.assert_array_equal(x, keep)
        assert f(np.empty((2, 0))).shape == (2, 0)


def test_chunking_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-30, 30, 500), rng.normal(0, 1, 500)])
    x[[0, 6, 7, 13, 500, 999]] = [np.nan, np.inf, -np.inf, 0.3, np.nan, 5.0]
    whole = erf(x), erfc(x)
    monkeypatch.setattr(_special, "_CHUNK", 7)
    np.testing.assert_array_equal(erf(x), whole[0])
    np.testing.assert_array_equal(erfc(x), whole[1])


def test_large_array_spanning_chunks() -> None:
    rng = np.random.default_rng(2)
    n = 2 * _special._CHUNK + 123
    x = rng.uniform(-8, 8, n)
    assert max_rel_err(erf(x), ref_erf(x)) < ERF_RTOL
    x = rng.uniform(-5, 26, n)
    assert max_rel_err(erfc(x), ref_erfc(x)) < ERFC_RTOL


# --- normal_cdf: Φ(x) = (1 + erf(x/√2)) / 2, GELU's ----------------------------------------

CDF32_ATOL = 3e-7  # the contract for float32; measured: 2.3e-7 (4 units of 2**-24)


@pytest.fixture(scope="module")
def cdf32_grid() -> tuple[Array, Array]:
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(-7, 7, 300_001), rng.standard_normal(100_000),
                        _around(3.9 * math.sqrt(2), -3.9 * math.sqrt(2))]).astype(np.float32)
    return x, 0.5 * erfc(-x.astype(np.float64) * math.sqrt(0.5))


def test_normal_cdf_float32_accuracy(cdf32_grid: tuple[Array, Array]) -> None:
    x, ref = cdf32_grid
    got = _special.normal_cdf(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    err = float(np.max(np.abs(got - ref)))
    assert err < CDF32_ATOL, err
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize(("table", "index"),
                         [(t, i) for t in ("_CDF_NUM", "_CDF_DEN") for i in range(6)])
def test_a_wrong_cdf_coefficient_breaks_the_bound(
        monkeypatch: pytest.MonkeyPatch, cdf32_grid: tuple[Array, Array], table: str,
        index: int) -> None:
    coeffs = list(getattr(_special, table))
    coeffs[index] = np.float32(float(coeffs[index]) * (1 + 1e-3))
    monkeypatch.setattr(_special, table, tuple(coeffs))
    x, ref = cdf32_grid
    assert np.max(np.abs(_special.normal_cdf(x) - ref)) > CDF32_ATOL


def test_normal_cdf_limits_and_specials() -> None:
    with np.errstate(all="raise"):
        x = np.array([-np.inf, -1e30, -5.52, 0.0, -0.0, 5.52, 1e30, np.inf, np.nan],
                     np.float32)
        got = _special.normal_cdf(x)
        np.testing.assert_array_equal(got, [0, 0, 0, 0.5, 0.5, 1, 1, 1, np.nan])
        far = _special.normal_cdf(np.array([-5.5, 5.5], np.float32))
        assert 0 < far[0] < 1e-7 and 1 - 1e-7 < far[1] <= 1  # not yet the limits


@pytest.mark.parametrize("dtype", [np.float64, np.longdouble])
def test_normal_cdf_other_dtypes_go_through_erf(dtype: Any) -> None:
    x = np.linspace(-9, 9, 1001).astype(dtype)
    got = _special.normal_cdf(x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, 0.5 + 0.5 * erf(x * np.float64(math.sqrt(0.5))))


def test_normal_cdf_chunks_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(3).normal(0, 3, (5, 41)).astype(np.float32)
    whole = _special.normal_cdf(x)
    monkeypatch.setattr(_special, "_CHUNK", 7)
    np.testing.assert_array_equal(_special.normal_cdf(x), whole)
