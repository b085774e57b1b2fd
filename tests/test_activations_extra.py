"""ReLU6, Hardtanh, Hardsigmoid, Hardswish, Mish, SELU, CELU, Softsign, LogSigmoid, PReLU and
RMSNorm: finite differences, values and slopes by hand (the kinks at PyTorch's choice), a
naive NumPy reference for PReLU's and RMSNorm's gradients, float32 kept, no warning at
±3e38 and ±inf, the fused Dense + activation step, and bad arguments named."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _fused import opaque

from funcdl import layers as L
from funcdl import random
from funcdl.layers.activations_extra import (
    CELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LogSigmoid,
    Mish,
    PReLU,
    ReLU6,
    Softsign,
)
from funcdl.layers.rmsnorm import RMSNorm
from funcdl.testing import check_layer, check_vjp

SA, SS = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946  # SELU's
ELEMENTWISE = [ReLU6, Hardtanh, lambda: Hardtanh(-2.0, 0.5), Hardsigmoid, Hardswish, Mish,
               SELU, CELU, lambda: CELU(0.5), lambda: CELU(-2.0), Softsign, LogSigmoid]
IDS = ["ReLU6", "Hardtanh", "Hardtanh(-2,.5)", "Hardsigmoid", "Hardswish", "Mish", "SELU",
       "CELU", "CELU(.5)", "CELU(-2)", "Softsign", "LogSigmoid"]
PARAMETRIC = [(lambda: PReLU(), (None, 3)), (lambda: PReLU(4, init=-0.3), (None, 2, 4)),
              (lambda: RMSNorm(), (None, 5)), (lambda: RMSNorm(eps=1e-3), (None, 2, 3)),
              (lambda: RMSNorm(elementwise_affine=False), (None, 4))]
KEY = random.key(0)


def _sp(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _mish_slope(x: float) -> float:
    t = math.tanh(_sp(x))
    return t + x * _sig(x) * (1 - t * t)


# ---------------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("make", ELEMENTWISE, ids=IDS)
def test_elementwise_check_layer(make):
    check_layer(make(), (None, 3, 4))


@pytest.mark.parametrize("make", ELEMENTWISE, ids=IDS)
def test_elementwise_vjp_float64(make):
    # points on every branch, none within 1e-3 of a kink (finite differences straddle it)
    x = np.array([[-7.3, -3.4, -2.6, -1.1, -0.2], [0.3, 0.9, 2.4, 3.7, 6.8]])
    check_vjp(make(), (), x, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(("make", "in_shape"), PARAMETRIC,
                         ids=["PReLU", "PReLU(4)", "RMSNorm", "RMSNorm(eps)", "RMSNorm(no aff)"])
def test_parametric_check_layer_and_vjp(make, in_shape):
    layer = make()
    check_layer(layer, in_shape)
    _, params = layer.init(KEY, in_shape)
    params = {k: random.normal(random.key(7), v.shape, np.float64) for k, v in params.items()} \
        if params else ()
    x = random.normal(random.key(3), (3, *in_shape[1:]), np.float64)
    check_vjp(layer, params, x, rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------------------- by hand

KINKS = [  # (layer, x, y, dx at dy = 1): PyTorch's values, its subgradient at each kink
    (ReLU6, [-1.0, 0.0, 2.5, 6.0, 7.0], [0.0, 0.0, 2.5, 6.0, 6.0], [0, 0, 1, 0, 0]),
    (Hardtanh, [-2.0, -1.0, 0.5, 1.0, 3.0], [-1.0, -1.0, 0.5, 1.0, 1.0], [0, 0, 1, 0, 0]),
    (lambda: Hardtanh(-2.0, 0.5), [-2.0, 0.0, 0.5], [-2.0, 0.0, 0.5], [0, 1, 0]),
    (Hardsigmoid, [-4.0, -3.0, -1.5, 0.0, 3.0], [0.0, 0.0, 0.25, 0.5, 1.0],
     [0, 0, 1 / 6, 1 / 6, 0]),
    (Hardswish, [-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0], [0.0, 0.0, -0.375, 0.0, 1.125, 3.0, 5.0],
     [0, 0, 0.0, 0.5, 1.0, 1, 1]),
    (Mish, [0.0, 1.0, -2.0], [0.0, math.tanh(_sp(1.0)), -2 * math.tanh(_sp(-2.0))],
     [0.6, _mish_slope(1.0), _mish_slope(-2.0)]),
    (SELU, [-1.0, 0.0, 2.0], [SS * SA * math.expm1(-1), 0.0, 2 * SS],
     [SS * SA * math.exp(-1), SS * SA, SS]),
    (CELU, [-1.0, 0.0, 2.0], [math.expm1(-1), 0.0, 2.0], [math.exp(-1), 1.0, 1.0]),
    (lambda: CELU(0.5), [-1.0, 2.0], [0.5 * math.expm1(-2), 2.0], [math.exp(-2), 1.0]),
    (lambda: CELU(-2.0), [-1.0, 2.0], [-2 * math.expm1(0.5), 2.0], [math.exp(0.5), 1.0]),
    (Softsign, [-3.0, 0.0, 1.0], [-0.75, 0.0, 0.5], [1 / 16, 1.0, 0.25]),
    (LogSigmoid, [-2.0, 0.0, 3.0, 40.0, -800.0],
     [-_sp(2.0), -math.log(2), -_sp(-3.0), -math.exp(-40), -800.0],
     [_sig(2.0), 0.5, _sig(-3.0), math.exp(-40), 1.0]),
]


@pytest.mark.parametrize(("make", "x", "y", "dx"), KINKS)
def test_values_and_slopes_by_hand(make, x, y, dx):
    # a wrong sign, factor or kink choice in a vjp changes these
    got, pullback = make().vjp((), np.array(x))
    np.testing.assert_allclose(got, y, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(pullback(np.full(len(x), 2.0))[1], 2 * np.array(dx, float),
                               rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("make", ELEMENTWISE, ids=IDS)
def test_vjp_scales_with_the_cotangent(make):
    x = np.array([-5.0, -1.7, 0.4, 2.2, 4.5])
    _, pullback = make().vjp((), x)
    dy = np.array([1.0, -2.0, 3.0, -0.5, 7.0])
    np.testing.assert_allclose(pullback(dy)[1], dy * pullback(np.ones(5))[1], rtol=1e-15)


def test_hardtanh_with_an_infinite_bound_is_relu():
    x = np.array([-np.inf, -2.0, 0.0, 3.0, 3e38, np.inf])
    y, pullback = Hardtanh(0.0, np.inf).vjp((), x)
    np.testing.assert_array_equal(y, [0, 0, 0, 3, 3e38, np.inf])
    np.testing.assert_array_equal(pullback(np.ones(6))[1], [0, 0, 0, 1, 1, 0])  # as torch


def test_at_nan_the_slope_is_pytorchs():
    x = np.array([np.nan])
    want = {"ReLU6()": 1.0, "Hardtanh()": 1.0, "Hardsigmoid()": 0.0, "Hardswish()": 1.0,
            "SELU()": SS, "CELU()": 1.0}
    for make in (ReLU6, Hardtanh, Hardsigmoid, Hardswish, SELU, CELU):
        layer = make()
        y, pullback = layer.vjp((), x)
        assert np.isnan(y[0]) and pullback(np.ones(1))[1][0] == want[layer.name], layer.name


def test_prelu_against_a_naive_reference():
    x = random.normal(KEY, (3, 2, 4), np.float64)
    x[0, 0, 0] = 0.0  # the kink: slope a, as PyTorch
    a = np.array([0.2, -0.5, 1.5, 3.0])
    dy = random.normal(random.key(1), x.shape, np.float64)
    y, pullback = PReLU(4).vjp({"a": a}, x)
    grads, dx = pullback(dy)
    neg = x <= 0
    np.testing.assert_allclose(y, np.where(neg, a * x, x), rtol=1e-15)
    np.testing.assert_allclose(dx, np.where(neg, a * dy, dy), rtol=1e-15)
    np.testing.assert_allclose(grads["a"], (np.where(neg, x, 0) * dy).sum(axis=(0, 1)),
                               rtol=1e-13)
    assert dx[0, 0, 0] == 0.2 * dy[0, 0, 0]
    _, pb1 = PReLU().vjp({"a": np.array([0.1])}, x)  # one slope: da summed over all
    np.testing.assert_allclose(pb1(dy)[0]["a"], [(np.where(neg, x, 0) * dy).sum()], rtol=1e-13)


def _rms_reference(x, scale, dy, eps):
    """RMSNorm and its gradients by the chain rule written out per entry, in float64."""
    c = x.shape[-1]
    ms = (x ** 2).sum(-1, keepdims=True) / c + eps
    r = ms ** -0.5
    y = x * r * scale
    g = dy * scale
    # dy_i/dx_j = scale_i (r δ_ij - x_i x_j r³ / c)
    dx = g * r - x * r ** 3 * (g * x).sum(-1, keepdims=True) / c
    dscale = (dy * x * r).reshape(-1, c).sum(0)
    return y, dx, dscale


@pytest.mark.parametrize("eps", [None, 0.3])
def test_rmsnorm_against_a_naive_reference(eps):
    x = random.normal(KEY, (2, 3, 5), np.float64) * 3 + 1
    scale = random.normal(random.key(1), (5,), np.float64)
    dy = random.normal(random.key(2), x.shape, np.float64)
    y, pullback = RMSNorm(eps=eps).vjp({"scale": scale}, x)
    grads, dx = pullback(dy)
    want = _rms_reference(x, scale, dy, np.finfo(np.float64).eps if eps is None else eps)
    for got, w in zip((y, dx, grads["scale"]), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)
    y0, pb0 = RMSNorm(eps=eps, elementwise_affine=False).vjp((), x)
    w0 = _rms_reference(x, np.ones(5), dy, np.finfo(np.float64).eps if eps is None else eps)
    np.testing.assert_allclose(y0, w0[0], rtol=1e-12)
    g0, dx0 = pb0(dy)
    assert g0 == ()
    np.testing.assert_allclose(dx0, w0[1], rtol=1e-12, atol=1e-14)


def test_rmsnorm_default_eps_is_the_dtypes():
    # a zero row: y = 0; a row of 1e-4 has mean square 1e-8, of the order of float32's eps
    x = np.full((1, 4), 1e-4)
    for dt in (np.float32, np.float64):
        y = RMSNorm().apply({"scale": np.ones(4, np.float32)}, x.astype(dt))
        want = 1e-4 / math.sqrt(1e-8 + float(np.finfo(dt).eps))
        np.testing.assert_allclose(y, np.full((1, 4), want), rtol=1e-6)


# ---------------------------------------------------------------------------- dtypes, extremes

ALL = [*ELEMENTWISE, PReLU, lambda: PReLU(3, 2.0), RMSNorm, lambda: RMSNorm(eps=0.1)]
ALL_IDS = [*IDS, "PReLU", "PReLU(3, 2)", "RMSNorm", "RMSNorm(eps)"]


def _built(make, dtype=np.float32):
    layer = make()
    _, params = layer.init(KEY, (None, 3))
    if params:
        params = {k: (v * 0.7).astype(dtype) for k, v in params.items()}
    return layer, params


@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
def test_float32_kept(make):
    layer, params = _built(make)
    x = random.normal(KEY, (4, 3), np.float32)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.apply(params, x).dtype == np.float32
    assert all(g.dtype == np.float32 for g in (grads.values() if grads else ()))
    # float64 input, float32 params: float64 out, the params' grads float32
    y64, pb64 = layer.vjp(params, x.astype(np.float64))
    g64, dx64 = pb64(np.ones_like(y64))
    assert y64.dtype == dx64.dtype == np.float64
    assert all(g.dtype == np.float32 for g in (g64.values() if g64 else ()))
    yi = layer.apply(params, np.array([[1, -2, 3]]))  # ints take float32
    assert yi.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
def test_no_warning_at_huge_and_infinite_inputs(make, dtype):
    # pytest runs with warnings as errors: any NumPy RuntimeWarning fails here
    layer, params = _built(make, dtype)
    big = float(np.finfo(dtype).max) * 0.9
    rows = [[-big, big, 1.0], [big, big, -big]]
    if not layer.name.startswith("RMSNorm"):  # inf·0 in a norm warns, as LayerNorm's
        rows += [[-np.inf, np.inf, np.nan]]
    x = np.array(rows, dtype)
    y, pullback = layer.vjp(params, x)
    _, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == dtype
    finite = np.isfinite(x).all(axis=1)
    if layer.name.startswith("RMSNorm") and dtype == np.float64:  # mean(x²) = inf: y = 0
        assert (y == 0).all() and (dx == 0).all()
    elif layer.name.startswith("RMSNorm"):  # float32 squares overflow: taken in float64
        x64 = x.astype(np.float64)
        want = x64 / np.sqrt((x64 * x64).mean(axis=1, keepdims=True))
        np.testing.assert_allclose(y, want * params["scale"], rtol=1e-6)
        assert np.isfinite(dx).all()
    elif not layer.name.startswith(("Mish", "Softsign", "Hardswish")):
        assert not np.isnan(y[finite]).any()


def test_values_at_infinity_as_pytorch():
    x = np.array([-np.inf, np.inf])
    table = {ReLU6: ([0, 6], [0, 0]), Hardtanh: ([-1, 1], [0, 0]), Hardsigmoid: ([0, 1], [0, 0]),
             Hardswish: ([np.nan, np.inf], [0, 1]), Mish: ([np.nan, np.inf], [np.nan, np.nan]),
             SELU: ([-SS * SA, np.inf], [0, SS]), CELU: ([-1, np.inf], [0, 1]),
             Softsign: ([np.nan, np.nan], [0, 0]), LogSigmoid: ([-np.inf, 0], [1, 0])}
    for make, (y, dx) in table.items():
        got, pullback = make().vjp((), x)
        np.testing.assert_array_equal(got, y, err_msg=make.__name__)
        np.testing.assert_array_equal(pullback(np.ones(2))[1], dx, err_msg=make.__name__)
    y, pb = PReLU().vjp({"a": np.array([0.25])}, x)
    np.testing.assert_array_equal(y, [-np.inf, np.inf])
    np.testing.assert_array_equal(pb(np.ones(2))[1], [0.25, 1.0])


@pytest.mark.parametrize("make", ELEMENTWISE, ids=IDS)
@pytest.mark.parametrize("x", [np.float32(-0.7), np.array(1.3), 2.0], ids=["f32", "0-d", "py"])
def test_scalar_inputs(make, x):
    layer = make()
    y, pullback = layer.vjp((), x)
    y1, pb1 = layer.vjp((), np.reshape(np.asarray(x), (1,)))
    assert np.shape(y) == () and np.shape(pullback(np.ones_like(y) * 3)[1]) == ()
    np.testing.assert_allclose(np.reshape(y, 1), y1, rtol=1e-6)
    np.testing.assert_allclose(np.reshape(pullback(np.ones_like(y) * 3)[1], 1),
                               pb1(np.full(1, 3.0, y1.dtype))[1], rtol=1e-6)


@pytest.mark.parametrize("make", ELEMENTWISE, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_after_dense_equals_layer_by_layer(make, dtype):
    assert make().pointwise is not None
    fused = L.Sequential(L.Dense(4), make(), L.Dense(2), make())
    plain = L.Sequential(*[opaque(lay) for lay in (L.Dense(4), make(), L.Dense(2), make())])
    _, params = fused.init(KEY, (None, 3))
    params = [p if not p else {k: (v * 2).astype(dtype) for k, v in p.items()} for p in params]
    x = random.normal(random.key(1), (6, 3), dtype) * 2
    (y1, pb1), (y2, pb2) = fused.vjp(params, x), plain.vjp(params, x)
    np.testing.assert_array_equal(y1, y2)
    dy = random.normal(random.key(2), y1.shape, dtype)
    (g1, dx1), (g2, dx2) = pb1(dy), pb2(dy)
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, g2, strict=True):
        for k in (a or {}):
            np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize(("call", "err", "words"), [
    (lambda: Hardtanh(1.0, -1.0), ValueError, "Hardtanh: min_val must be <= max_val"),
    (lambda: Hardtanh("1"), TypeError, "Hardtanh: min_val must be a real number"),
    (lambda: Hardtanh(max_val=np.nan), ValueError, "Hardtanh: max_val must be a number, not NaN"),
    (lambda: CELU(0), ValueError, "CELU: alpha must be non-zero"),
    (lambda: CELU(None), TypeError, "CELU: alpha must be a real number"),
    (lambda: PReLU(0), ValueError, "PReLU: num_parameters must be >= 1"),
    (lambda: PReLU(2.0), TypeError, "PReLU: num_parameters must be an int"),
    (lambda: PReLU(init="x"), TypeError, "PReLU: init must be a real number"),
    (lambda: RMSNorm(eps=0), ValueError, "RMSNorm: eps must be a finite number > 0"),
    (lambda: RMSNorm(eps="1e-5"), TypeError, "RMSNorm: eps must be a real number"),
    (lambda: RMSNorm(elementwise_affine="no"), TypeError,
     "RMSNorm: elementwise_affine must be True or False"),
    (lambda: PReLU(3).init(KEY, (None, 4)), ValueError, "PReLU(num_parameters=3): "
     "expected an input whose last (channel) axis has 3"),
    (lambda: PReLU(3).apply({"a": np.ones(3, np.float32)}, np.ones((2, 4))), ValueError,
     "last (channel) axis has 3 entries"),
    (lambda: PReLU(3).apply({"a": np.ones(4, np.float32)}, np.ones((2, 3))), ValueError,
     "params['a'] has shape (4,), expected (3,)"),
    (lambda: PReLU().apply((), np.ones(3)), TypeError, "PReLU(): params must be a dict"),
    (lambda: RMSNorm().init(KEY, (None, 0)), ValueError, "RMSNorm(): the last axis"),
    (lambda: RMSNorm().apply({"scale": np.ones(3, np.float32)}, np.ones((2, 4))), ValueError,
     "RMSNorm(): expected the input's last axis"),
    (lambda: RMSNorm().apply({"scale": np.ones(3, np.float32)}, np.float32(1)), ValueError,
     "RMSNorm(): expected an input with a last axis"),
    (lambda: RMSNorm(elementwise_affine=False).apply({"scale": np.ones(3)}, np.ones((1, 3))),
     ValueError, "RMSNorm(elementwise_affine=False)"),
    (lambda: Mish().apply((), [[1.0], [1.0, 2.0]]), ValueError, "Mish()"),
])
def test_bad_arguments_are_named(call, err, words):
    with pytest.raises(err) as info:
        call()
    assert words in str(info.value)


def test_names():
    assert [m().name for m in (ReLU6, Hardtanh, Hardsigmoid, Hardswish, Mish, SELU, CELU,
                               Softsign, LogSigmoid, PReLU, RMSNorm)] == [
        "ReLU6()", "Hardtanh()", "Hardsigmoid()", "Hardswish()", "Mish()", "SELU()", "CELU()",
        "Softsign()", "LogSigmoid()", "PReLU()", "RMSNorm()"]
    assert Hardtanh(-2, 2).name == "Hardtanh(min_val=-2.0, max_val=2.0)"
    assert CELU(0.5).name == "CELU(0.5)"
    assert RMSNorm(eps=1e-6).name == "RMSNorm(eps=1e-06)"


def test_review_layers_two_edges():
    # LocalResponseNorm returned a writeable y its pullback reads (y -= 1 moved dx by 0.6),
    # and warned on squares past the range; Hardswish, SELU and CELU gave a 0-d float32
    # input a float64 dx; ELU's dx at NaN was NaN (torch: dy)
    import warnings

    from funcdl.layers import ELU, LocalResponseNorm

    lrn = LocalResponseNorm(3)
    x = np.array([[[1.0, 2.0, 3.0]]], np.float32)
    y, _ = lrn.vjp((), x)
    assert not y.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = np.array([[[0.0, 3e19, 2.0]]], np.float32)
        yb, pb = lrn.vjp((), big)
        assert np.isfinite(yb).all() and np.isfinite(pb(np.ones_like(yb))[1]).all()
    for make in (Hardswish, SELU, CELU):
        layer = make()
        _, pullback = layer.vjp((), np.array(1.5, np.float32))
        assert np.asarray(pullback(np.array(1.0, np.float32))[1]).dtype == np.float32
    for elu in (ELU(), ELU(2.0), ELU(0.5), CELU(0.5)):  # ELU(a < 1) gave a (a probe)
        _, pullback = elu.vjp((), np.array([np.nan, -1.0], np.float32))
        dx = pullback(np.ones(2, np.float32))[1]
        assert dx[0] == 1.0 and np.isfinite(dx[1])


def test_pad_past_the_range_is_refused_and_prelu_near_it_is_silent():
    # Pad's fill value past float32 warned "overflow in cast" (torch refuses it); PReLU's
    # da summed past the range with a warning, its products silent
    import warnings

    from funcdl.layers import Pad2D

    with pytest.raises(ValueError, match=r"value=1e\+39 is beyond float32's range"):
        Pad2D(1, value=1e39).apply((), np.ones((1, 2, 2, 1), np.float32))
    assert Pad2D(1, value=float("-inf")).apply((), np.ones((1, 2, 2, 1), np.float32)).min() \
        == -np.inf
    layer = PReLU()
    _, params = layer.init(random.key(0), (None, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, pullback = layer.vjp(params, np.full((2, 1), -3e38, np.float32))
        grads, _ = pullback(np.ones((2, 1), np.float32))
    assert np.isneginf(grads["a"]).all()


@pytest.mark.parametrize("a", [math.nan, math.inf, -math.inf])
def test_prelu_passes_positive_inputs_through_whatever_its_slope(a):
    # y was min(x, 0)·a + max(x, 0): 0·inf or 0·NaN made y and dx NaN at x > 0, where
    # PyTorch's x > 0 ? x : a·x gives x and dy
    x = np.array([[-1.0, 0.0, 2.0, 3.0]])
    y, pullback = PReLU().vjp({"a": np.array([a])}, x)
    dx = pullback(np.full((1, 4), 0.5))[1]
    np.testing.assert_array_equal(y[0, 2:], [2.0, 3.0])
    np.testing.assert_array_equal(dx[0, 2:], [0.5, 0.5])
    with np.errstate(invalid="ignore"):  # x <= 0: a·x, as PyTorch's (NaN at 0·inf)
        np.testing.assert_array_equal(y[0, :2], a * x[0, :2])
    np.testing.assert_array_equal(dx[0, :2], [0.5 * a, 0.5 * a])


def test_prelu_refuses_an_init_past_float32s_range():
    # np.full(c, 1e39, float32) overflowed to inf with a bare NumPy warning
    with pytest.raises(ValueError, match=r"PReLU\(init=1e\+39\): init must be within "
                                         r"float32's range"):
        PReLU(init=1e39)


def test_celu_refuses_an_alpha_whose_reciprocal_or_itself_overflows_the_inputs_dtype():
    # 1/alpha = inf made k·min(x, 0) = inf·0, NaN at every x >= 0, silently
    with pytest.raises(ValueError, match=r"CELU\(1e-310\): \|alpha\| must be at least 5.563e-309"):
        L.CELU(1e-310)
    x32 = np.array([[-1.0, 0.0, 1.0, 50.0]], np.float32)
    for alpha in (1e-39, 1e39):
        layer = L.CELU(alpha)
        for run in (layer.apply, layer.vjp):
            with pytest.raises(ValueError, match=r"CELU\(1e[-+]39\): alpha=1e[-+]39 is past "
                                                 r"float32's range for a float32 input"):
                run((), x32)
        y = layer.apply((), x32.astype(np.float64))  # float64: in range, as PyTorch's
        np.testing.assert_array_equal(y[0, 1:], [0.0, 1.0, 50.0])
    y, pullback = L.CELU(1e-300).vjp((), np.array([[-1.0, 0.0, 1.0, 3.0]]))
    np.testing.assert_array_equal(y, [[-1e-300, 0.0, 1.0, 3.0]])
    np.testing.assert_allclose(pullback(np.ones((1, 4)))[1], [[0.0, 1.0, 1.0, 1.0]], rtol=1e-15)
