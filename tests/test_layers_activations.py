"""Activations (ReLU, LeakyReLU, Tanh, Sigmoid, Softplus, GELU, ELU, Softmax, LogSoftmax):
known values and derivatives, scalar and integer inputs, their settings, piecewise
branches, and inputs across the whole float range (overflow, infinities, empty axes)
without a warning."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_vjp


@pytest.mark.parametrize(("make", "x", "expected"), [
    (L.ReLU, [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0]),
    (lambda: L.LeakyReLU(0.1), [-2.0, 3.0], [-0.2, 3.0]),
    (L.Sigmoid, [0.0, 2.0, -2.0], [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))]),
    (L.Tanh, [0.5], [math.tanh(0.5)]),
    (L.Softplus, [0.0, 1.0, -30.0], [math.log(2), math.log1p(math.e), math.exp(-30)]),
    (L.ELU, [-1.0, 2.0], [math.expm1(-1), 2.0]),
    # GELU(x) = x Φ(x): Φ(1) = 0.841344746..., Φ(-0.5) = 0.308537538...
    (L.GELU, [1.0, -0.5, 0.0], [0.8413447460685429, -0.5 * 0.3085375387259869, 0.0]),
    (lambda: L.GELU(approximate=True), [1.0],
     [0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (1 + 0.044715)))]),
    # SiLU(x) = x σ(x): σ(1) = 0.7310585786..., σ(-2) = 0.1192029220...
    (L.SiLU, [1.0, -2.0, 0.0], [0.7310585786300049, -2 * 0.11920292202211755, 0.0]),
    (L.Softmax, [[0.0, math.log(3.0)]], [[0.25, 0.75]]),
    (L.LogSoftmax, [[0.0, math.log(3.0)]], [[math.log(0.25), math.log(0.75)]]),
])
def test_known_values(make, x, expected):
    y = make().apply((), np.array(x, np.float64))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("make", "x", "dx"), [
    # derivative at chosen points: a wrong sign or factor in a vjp changes these
    (L.ReLU, [-1.0, 2.0], [0.0, 1.0]),
    (L.ReLU, [0.0, -0.0], [0.0, 0.0]),  # 0 at the kink, as PyTorch (not dy)
    (lambda: L.LeakyReLU(0.1), [-1.0, 2.0], [0.1, 1.0]),
    (L.Sigmoid, [0.0], [0.25]),
    (L.Tanh, [0.0, 1.0], [1.0, 1 - math.tanh(1.0) ** 2]),
    (L.Softplus, [0.0], [0.5]),
    (L.ELU, [-1.0, 1.0], [math.exp(-1), 1.0]),
    (L.GELU, [0.0, 1.0], [0.5, 0.8413447460685429 + math.exp(-0.5) / math.sqrt(2 * math.pi)]),
    # SiLU' = σ (1 + x (1 - σ)): 0.5 at 0; at 1, 0.7310585786 (1 + 0.2689414214)
    (L.SiLU, [0.0, 1.0], [0.5, 0.7310585786300049 * (1 + 0.2689414213699951)]),
])
def test_known_derivatives(make, x, dx):
    _, pullback = make().vjp((), np.array(x))
    np.testing.assert_allclose(pullback(np.ones(len(x)))[1], dx, rtol=1e-12)


ACTIVATIONS = [L.ReLU, L.LeakyReLU, L.Tanh, L.Sigmoid, L.Softplus, L.GELU, L.ELU, L.Softmax,
               L.LogSoftmax, lambda: L.GELU(approximate=True)]


ELEMENTWISE = [m for m in ACTIVATIONS if m not in (L.Softmax, L.LogSoftmax)]


@pytest.mark.parametrize("x", [np.float32(-0.7), np.array(-0.7, np.float32), np.array(1.3), 1.3],
                         ids=["np.float32", "0-d float32", "0-d float64", "python float"])
@pytest.mark.parametrize("make", ELEMENTWISE)
def test_elementwise_activations_take_a_scalar(make, x):
    # Sigmoid wrote its result into NumPy's scalar from exp, which a 0-d input gives.
    layer = make()
    one = np.reshape(np.asarray(x), (1,))
    y, pullback = layer.vjp((), x)
    _, dx = pullback(np.ones_like(y) * 3)
    y1, pullback1 = layer.vjp((), one)
    np.testing.assert_allclose(np.reshape(y, (1,)), y1, rtol=1e-6)
    np.testing.assert_allclose(np.reshape(dx, (1,)), pullback1(np.full(1, 3.0))[1], rtol=1e-6)
    np.testing.assert_allclose(layer.apply((), x), y)
    assert np.shape(y) == () and np.shape(dx) == ()


@pytest.mark.parametrize("v", [1e4, -1e4, 1e30, -1e30, 0.0, 88.0, -88.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", ACTIVATIONS)
def test_extreme_inputs_are_finite(make, v, dtype):
    layer = make()
    x = np.array([[v, -v, 0.0]], dtype)
    y, pullback = layer.vjp((), x)
    _, dx = pullback(np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(dx))
    if layer.name not in ("LogSoftmax(axis=-1)",) and abs(v) < 1e30:
        assert np.all(np.isfinite(y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_logits_the_whole_float_range_apart(dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, -big, 0.0], [-big, 1.0, big]], dtype)  # x - max overflows to -inf
    y, pullback = L.Softmax().vjp((), x)  # warnings are errors: none may be raised
    np.testing.assert_array_equal(y, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.all(np.isfinite(pullback(np.ones_like(y))[1]))
    logp, pullback = L.LogSoftmax().vjp((), x)
    assert logp[0, 0] == 0.0 and logp[0, 1] == -np.inf and logp[0, 2] == -big
    np.testing.assert_array_equal(pullback(np.ones_like(logp))[1], [[-2.0, 1.0, 1.0],
                                                                   [1.0, 1.0, -2.0]])


def test_softplus_is_linear_past_its_threshold_as_torch():
    x = np.array([19.0, 20.0, 20.5, 30.0])
    y, pullback = L.Softplus().vjp((), x)
    np.testing.assert_array_equal(y[2:], x[2:])  # past 20: exactly x, and dx exactly dy
    np.testing.assert_array_equal(pullback(np.full(4, 3.0))[1][2:], [3.0, 3.0])
    assert y[1] == np.logaddexp(20.0, 0.0) > 20.0  # at the threshold: still the log
    y2, pullback2 = L.Softplus(beta=2.0, threshold=5.0).vjp((), np.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(y2, [math.log(2) / 2, math.log1p(math.exp(2)) / 2, 3.0],
                               rtol=1e-15)
    np.testing.assert_allclose(pullback2(np.ones(3))[1], [0.5, 1 / (1 + math.exp(-2)), 1.0],
                               rtol=1e-15)
    assert L.Softplus(beta=2.0).name == "Softplus(beta=2.0, threshold=20.0)"
    with pytest.raises(ValueError, match="Softplus: beta must be a finite number > 0"):
        L.Softplus(beta=0.0)


@pytest.mark.parametrize(("make", "error", "says"), [
    (lambda: L.LeakyReLU("0.1"), TypeError, "LeakyReLU: alpha must be a real number, got '0.1'"),
    (lambda: L.LeakyReLU(np.nan), ValueError, "LeakyReLU: alpha must be a finite number"),
    (lambda: L.ELU(None), TypeError, "ELU: alpha must be a real number, got None"),
    (lambda: L.Softplus(threshold=np.nan), ValueError, "Softplus: threshold must be a number, "
                                                       "not NaN"),
])
def test_activation_settings_are_real_numbers(make, error, says):
    # float() took '0.1' as 0.1, NaN as a slope that turned every negative input into NaN,
    # and None with a bare "float() argument must be" naming no layer
    with pytest.raises(error, match=f"^{re.escape(says)}"):
        make()
    assert L.LeakyReLU(np.float32(0.5)).name == "LeakyReLU(0.5)"


@pytest.mark.parametrize(("layer", "f", "df"), [
    (L.LeakyReLU(0.01), lambda x: np.where(x > 0, x, 0.01 * x),
     lambda x: np.where(x > 0, 1.0, 0.01)),
    (L.LeakyReLU(2.5), lambda x: np.where(x > 0, x, 2.5 * x), lambda x: np.where(x > 0, 1.0, 2.5)),
    (L.LeakyReLU(-0.5), lambda x: np.where(x > 0, x, -0.5 * x),
     lambda x: np.where(x > 0, 1.0, -0.5)),
    (L.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
     lambda x: np.where(x > 0, 1.0, 0.7 * np.exp(x))),
    (L.ELU(1.8), lambda x: np.where(x > 0, x, 1.8 * np.expm1(x)),
     lambda x: np.where(x > 0, 1.0, 1.8 * np.exp(x))),
    (L.ELU(-0.5), lambda x: np.where(x > 0, x, -0.5 * np.expm1(x)),
     lambda x: np.where(x > 0, 1.0, -0.5 * np.exp(x))),
    (L.Softplus(beta=2.0, threshold=3.0),
     lambda x: np.where(2 * x > 3, x, np.logaddexp(2 * x, 0) / 2),
     lambda x: np.where(2 * x > 3, 1.0, 1 / (1 + np.exp(-2 * x)))),
    (L.Softplus(threshold=-1.0), lambda x: np.where(x > -1, x, np.logaddexp(x, 0)),
     lambda x: np.where(x > -1, 1.0, 1 / (1 + np.exp(-x)))),
    (L.Softplus(beta=2.0, threshold=-1.0),
     lambda x: np.where(2 * x > -1, x, np.logaddexp(2 * x, 0) / 2),
     lambda x: np.where(2 * x > -1, 1.0, 1 / (1 + np.exp(-2 * x)))),
], ids=["leaky-0.01", "leaky-2.5", "leaky-neg", "elu-0.7", "elu-1.8", "elu-neg", "softplus-b2-t3",
        "softplus-t-neg", "softplus-b2-t-neg"])
def test_branch_picking_activations_match_their_piecewise_definition(layer, f, df):
    # max/min on the usual settings, sums of masked terms on the rest: every branch
    x = np.concatenate([np.linspace(-4, 4, 81), [-0.0, 0.0, 1e-30, -1e-30, 40.0, -40.0]])
    y, pullback = layer.vjp((), x)
    np.testing.assert_allclose(y, f(x), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(pullback(np.full_like(x, 3.0))[1], 3 * df(x), rtol=1e-14)
    check_vjp(layer, (), np.linspace(-3.05, 3.05, 12).reshape(3, 4))  # off the kinks
    assert layer.apply((), x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elu_gradient_keeps_its_digits_far_below_zero(dtype):
    # dy·(y + alpha) cancelled: 3% off at x = -13.7 in float32, exactly 0 below -17
    x = np.array([-5.0, -13.7, -20.0, -30.0], dtype)
    for alpha in (1.0, 0.5):
        _, pullback = L.ELU(alpha).vjp((), x)
        dx = pullback(np.ones_like(x))[1]
        assert dx.dtype == dtype
        np.testing.assert_allclose(dx, alpha * np.exp(x.astype(np.float64)),
                                   rtol=4 * float(np.finfo(dtype).eps))


def test_limits_at_large_inputs():
    x = np.array([-1e30, 1e30])
    np.testing.assert_array_equal(L.Sigmoid().apply((), x), [0.0, 1.0])
    np.testing.assert_array_equal(L.Softplus().apply((), x), [0.0, 1e30])
    np.testing.assert_array_equal(L.GELU().apply((), x), [0.0, 1e30])
    np.testing.assert_array_equal(L.ELU().apply((), x), [-1.0, 1e30])
    np.testing.assert_allclose(L.Softmax().apply((), np.array([[1e4, 0.0]])), [[1.0, 0.0]])


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_at_infinite_inputs_is_quiet(approximate):
    # inf·0 inside (x Φ(x) at -inf, x φ(x) at +inf): NaN as PyTorch's, with no warning
    # (warnings are errors here), where the values have limits they are exact
    x = np.array([-np.inf, np.inf, -3e38, 3e38], np.float32)
    y, pullback = L.GELU(approximate=approximate).vjp((), x)
    np.testing.assert_array_equal(y, np.array([np.nan, np.inf, 0.0, 3e38], np.float32))
    np.testing.assert_array_equal(L.GELU(approximate=approximate).apply((), x), y)
    np.testing.assert_array_equal(pullback(np.ones(4, np.float32))[1], [np.nan, np.nan, 0, 1])


def test_gelu_float32_within_its_bound_of_float64():
    # float32 has its own Φ (funcdl._special.normal_cdf): within 3e-7 of the float64 one
    x = np.linspace(-8, 8, 4001)
    y64, pb64 = L.GELU().vjp((), x)
    y32, pb32 = L.GELU().vjp((), x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(L.GELU().apply((), x.astype(np.float32)), y32)
    np.testing.assert_allclose(y32, y64, rtol=0, atol=3e-7 * 8)
    dx32, dx64 = pb32(np.ones(4001, np.float32))[1], pb64(np.ones(4001))[1]
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, dx64, rtol=0, atol=1e-6)


def test_gelu_gradient_in_its_tails_is_the_formula_unclipped():
    # x is clipped to ±40 only so that x² cannot overflow, where φ(x) is 0 already: at
    # every |x| below that, dx = dy (Φ(x) + x φ(x)) to the last digits, however small;
    # Φ from math.erf, not funcdl's own
    x = np.array([-36.0, -30.0, -21.0, -12.0, -6.5, -4.5, 4.5, 6.5, 12.0, 21.0, 36.0])
    _, pullback = L.GELU().vjp((), x)
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(pullback(np.full_like(x, -2.0))[1],
                               -2.0 * (cdf + x * phi), rtol=1e-13, atol=0)


@pytest.mark.parametrize(("beta", "threshold"), [(1.0, 20.0), (1.0, 18.0), (2.0, 20.0),
                                               (1.0, 5.0)])
def test_softplus_float32_across_its_threshold(beta, threshold):
    # float32 skips the threshold's masks at beta 1, threshold >= 17.5, where they change no
    # bit: y = x and dx = dy past it, and the float64 values rounded elsewhere
    x = np.linspace(-30, 30, 6001).astype(np.float32).astype(np.float64)  # exact in both
    layer = L.Softplus(beta=beta, threshold=threshold)
    y64, pb64 = layer.vjp((), x)
    y32, pb32 = layer.vjp((), x.astype(np.float32))
    dx32 = pb32(np.full(x.shape, 3.0, np.float32))[1]
    np.testing.assert_allclose(y32, y64, rtol=1e-6, atol=1e-30)  # a few float32 ulp
    np.testing.assert_allclose(dx32, pb64(np.full(x.shape, 3.0))[1], rtol=1e-6, atol=1e-30)
    past = beta * x > threshold
    np.testing.assert_array_equal(y32[past], x.astype(np.float32)[past])
    np.testing.assert_array_equal(dx32[past], 3.0)


@pytest.mark.parametrize("make", ACTIVATIONS)
def test_integer_inputs_give_float32_not_float64(make):
    x = np.array([[-2, 0, 3]])
    y, pullback = make().vjp((), x)
    assert y.dtype == np.float32 and make().apply((), x).dtype == np.float32
    assert pullback(np.ones(y.shape, np.float32))[1].dtype == np.float32
    np.testing.assert_array_equal(y, make().apply((), x.astype(np.float32)))


@pytest.mark.parametrize("make", [L.Softmax, L.LogSoftmax])
def test_softmaxes_over_an_empty_axis_give_an_empty_result(make):
    # a max over no entries has no identity: NumPy raised from inside, PyTorch returns empty
    x = np.zeros((2, 0), np.float32)
    y, pullback = make().vjp((), x)
    assert y.shape == (2, 0) and y.dtype == np.float32
    assert make().apply((), x).shape == (2, 0)
    assert pullback(np.zeros((2, 0), np.float32))[1].shape == (2, 0)


def test_softplus_with_beta_takes_the_whole_float_range_without_a_warning():
    x = np.array([[3e38, -3e38, 1.0]], np.float32)  # beta * x overflows: the linear part
    y, pullback = L.Softplus(beta=2.0).vjp((), x)
    np.testing.assert_allclose(y, [[3e38, 0.0, np.log1p(np.exp(2.0)) / 2]], rtol=1e-6)
    np.testing.assert_allclose(pullback(np.ones_like(y))[1], [[1.0, 0.0, 1 / (1 + np.exp(-2))]],
                               rtol=1e-6)


@pytest.mark.parametrize("alpha", [2.0, -3.0])
def test_leaky_relu_steeper_than_one_is_silent_where_x_is_picked(alpha):
    # a·x of 3e38 overflows although y = x there: no overflow warning (warnings are errors
    # here), and y = a·x = ±inf where that is the answer, as PyTorch gives it
    x = np.array([3e38, -3e38, 1.0, -1.0], np.float32)
    y = L.LeakyReLU(alpha).apply((), x)
    np.testing.assert_array_equal(y, np.array([3e38, -np.inf * np.sign(alpha), 1.0, -alpha],
                                              np.float32))
    assert y.dtype == np.float32



def test_gelu_takes_pytorchs_spellings_of_approximate():
    x = np.linspace(-4, 4, 9, dtype=np.float32)
    np.testing.assert_array_equal(L.GELU("tanh").apply((), x), L.GELU(True).apply((), x))
    np.testing.assert_array_equal(L.GELU("none").apply((), x), L.GELU().apply((), x))
    with pytest.raises(TypeError, match=r"GELU: approximate must be True, False, 'tanh' or "
                                        r"'none' \(PyTorch's spellings\), got 'no'"):
        L.GELU("no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"GELU: approximate must be True or False, got 1"):
        L.GELU(1)  # type: ignore[arg-type]


def test_leaky_relus_default_slope_is_001_as_torch_and_jax():
    # only a torch cross-check (skipped without torch) read the default
    x = np.array([-2.0, 3.0])
    y, pullback = L.LeakyReLU().vjp((), x)
    np.testing.assert_array_equal(y, [-0.02, 3.0])
    np.testing.assert_array_equal(pullback(np.ones(2))[1], [0.01, 1.0])


def test_softplus_without_a_threshold_is_jaxs():
    # threshold=inf was refused; PyTorch's threshold 20 makes y = x exactly past it
    x = np.array([30.0, -3.0])
    y, pullback = L.Softplus(threshold=np.inf).vjp((), x)
    np.testing.assert_allclose(y, [30.0 + math.exp(-30.0), math.log1p(math.exp(-3.0))],
                               rtol=1e-15)
    assert y[0] != 30.0 and L.Softplus().apply((), x)[0] == 30.0
    np.testing.assert_allclose(pullback(np.ones(2))[1], 1 / (1 + np.exp(-x)), rtol=1e-14)
    check_vjp(L.Softplus(threshold=np.inf), (), np.linspace(-30.0, 30.0, 13))


def test_relu_passes_dy_at_a_nan_input_as_torch():
    # torch's threshold_backward reads the output: NaN <= 0 is false, so dy passes and the
    # NaN stays visible upstream; the mask x > 0 dropped it to 0 (jax's choice)
    relu = L.ReLU()
    x = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, np.inf, -np.inf], np.float32)
    _, pullback = relu.vjp((), x)
    _, dx = pullback(np.full(7, 3.0, np.float32))
    np.testing.assert_array_equal(dx, [3, 0, 0, 0, 3, 3, 0])
    # a Dense fused with its ReLU in a Sequential does the same
    dense = L.Dense(3)
    _, p = dense.init(random.key(0), (None, 2))
    x2 = np.array([[np.nan, 1.0], [1.0, -1.0]], np.float32)
    (dp_fused, _) = L.Sequential(dense, L.ReLU()).vjp([p, ()], x2)[1](np.ones((2, 3),
                                                                          np.float32))
    z, pb_dense = dense.vjp(p, x2)
    dz = relu.vjp((), z)[1](np.ones((2, 3), np.float32))[1]
    np.testing.assert_array_equal(dp_fused[0]["b"], pb_dense(dz)[0]["b"])
    assert dp_fused[0]["b"].min() >= 1  # the NaN row's dy reached the bias
