"""Core layers and activations: vjps against finite differences, known forward values,
float32 preservation, and bad inputs."""

from __future__ import annotations

import functools
import itertools
import math
import re

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

# (constructor, in_shape) — every layer of this module, several shapes including batch 1.
TABLE = [
    (lambda: L.Dense(5), (None, 3)),
    (lambda: L.Dense(4), (None, 2, 3)),
    (lambda: L.Dense(2, use_bias=False), (None, 6)),
    (lambda: L.Dense(3, w_init=fd.initializers.he_normal(),
                     b_init=fd.initializers.normal(0.5)), (None, 4)),
    (L.ReLU, (None, 7)),
    (lambda: L.LeakyReLU(0.2), (None, 3, 4)),
    (L.Tanh, (None, 5)),
    (L.Sigmoid, (None, 5)),
    (L.Softplus, (None, 5)),
    (lambda: L.Softplus(beta=2.0, threshold=1.0), (None, 5)),
    (L.GELU, (None, 6)),
    (lambda: L.GELU(approximate=True), (None, 6)),
    (L.ELU, (None, 6)),
    (lambda: L.ELU(0.5), (None, 2, 3)),
    (L.Softmax, (None, 5)),
    (lambda: L.Softmax(axis=1), (None, 4, 3)),
    (L.LogSoftmax, (None, 5)),
    (lambda: L.LogSoftmax(axis=-2), (None, 4, 3)),
    (L.Identity, (None, 3)),
    (L.Flatten, (None, 2, 3, 4)),
    (lambda: L.Reshape((3, -1)), (None, 6, 2)),
    (lambda: L.Dropout(0.5), (None, 10)),
    (lambda: L.Sequential(L.Dense(4), L.Tanh(), L.Dense(2), L.LogSoftmax()), (None, 3)),
    (lambda: L.Sequential(L.Flatten(), L.Dense(3), L.Sequential(L.ReLU(), L.Dense(1))),
     (None, 2, 2)),
    (lambda: L.Sequential(), (None, 3)),
]
IDS = [f"{i}-{c().name}" for i, (c, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
@pytest.mark.parametrize("batch", [1, 4])
def test_check_layer(make, in_shape, batch):
    check_layer(make(), in_shape, batch=batch)


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
def test_vjp_train_mode_float64(make, in_shape, key):
    layer = make()
    _, params = layer.init(key, in_shape)
    x = random.normal(random.key(1), tuple(3 if d is None else d for d in in_shape), np.float64)
    check_vjp(layer, tree.astype(params, np.float64), x, key=random.key(2), train=True)


def test_dense_known_values_and_gradients():
    layer = L.Dense(2)
    params = {"w": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "b": np.array([0.5, -1.0])}
    x = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    y, pullback = layer.vjp(params, x)
    np.testing.assert_allclose(y, [[-3.5, -5.0], [5.5, 7.0]])
    dy = np.array([[1.0, 0.0], [0.0, 2.0]])
    grads, dx = pullback(dy)
    np.testing.assert_allclose(grads["w"], x.T @ dy)
    np.testing.assert_allclose(grads["b"], [1.0, 2.0])
    np.testing.assert_allclose(dx, [[1.0, 3.0, 5.0], [4.0, 8.0, 12.0]])


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


def test_norm_statistics_that_overflow_give_torchs_zeros_without_a_warning(key):
    # σ² of values ~1e29 (1e30 in LayerNorm) overflows float32: NumPy warned "overflow
    # encountered in square" (an error here); PyTorch returns x̂ = 0 silently, so y = bias.
    x = np.array([[1e30, -1e30, 0.0]], np.float32)
    ln = L.LayerNorm()
    _, p_ln = ln.init(key, (None, 3))
    y, pullback = ln.vjp(p_ln, x)
    np.testing.assert_array_equal(ln.apply(p_ln, x), np.zeros((1, 3)))
    np.testing.assert_array_equal(y, np.zeros((1, 3)))
    assert np.all(np.isfinite(pullback(np.ones_like(y))[1]))
    bn = L.BatchNorm()
    _, p_bn, s_bn = bn.init(key, (None, 4))
    x = (random.normal(random.key(1), (3, 4)) * 1e29).astype(np.float32)
    y, state = bn.apply(p_bn, x, state=s_bn, train=True)
    np.testing.assert_array_equal(y, np.zeros((3, 4)))
    assert np.all(state["var"] == np.inf)  # as torch's running_var
    y, pullback, _ = bn.vjp(p_bn, x, state=s_bn, train=True)
    np.testing.assert_array_equal(y, np.zeros((3, 4)))
    assert np.all(np.isfinite(pullback(np.ones_like(y))[1]))


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
    (lambda: L.Softplus(threshold=np.nan), ValueError, "Softplus: threshold must be a finite"),
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


def test_float32_end_to_end(key):
    model = L.Sequential(L.Dense(8), L.GELU(), L.Dense(8), L.Softplus(), L.Dense(3),
                         L.Softmax())
    _, params = model.init(key, (None, 4))
    assert all(p.dtype == np.float32 for p in tree.leaves(params))
    x = random.normal(key, (5, 4))
    y, pullback = model.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in tree.leaves(grads))


def test_integer_input_is_cast_to_params_dtype(key):
    _, params = L.Dense(3).init(key, (None, 2))
    assert L.Dense(3).apply(params, np.array([[1, 2]])).dtype == np.float32


@pytest.mark.parametrize("x64, dy64, b64", [(True, False, False), (False, True, False),
                                             (False, False, True), (False, False, False)])
def test_dense_grads_take_each_params_dtype(key, x64, dy64, b64):
    # Whichever operand is float64 (input, cotangent, or a float64 bias beside a float32
    # kernel), each gradient comes back in its own param's dtype, as JAX gives it.
    _, params = L.Dense(3).init(key, (None, 2))
    if b64:
        params = {"w": params["w"], "b": params["b"].astype(np.float64)}
    x = np.ones((4, 2), np.float64 if x64 else np.float32)
    y, pullback = L.Dense(3).vjp(params, x)
    grads, _ = pullback(np.ones(y.shape, np.float64 if dy64 else y.dtype))
    assert grads["w"].dtype == np.float32
    assert grads["b"].dtype == (np.float64 if b64 else np.float32)
    np.testing.assert_array_equal(grads["b"], [4, 4, 4])


def test_dense_default_init_is_torchs_linear(key):
    # w and b ~ U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear: here ±0.25
    _, params = L.Dense(2000).init(key, (None, 16))
    for p in (params["w"], params["b"]):
        assert p.dtype == np.float32
        assert -0.25 <= p.min() < -0.24 and 0.24 < p.max() < 0.25
        assert abs(p.mean()) < 0.02 and abs(p.var() - 0.25**2 / 3) < 0.002


def test_dense_adds_its_bias_on_outputs_of_many_rows(key, monkeypatch):
    # from base.TILE_FROM output entries in TILE_ROWS rows the bias goes through base.chan's
    # tiled rows
    from funcdl.layers._sums import TILE_FROM, TILE_ROWS
    layer = L.Dense(10)
    _, params = layer.init(key, (None, 6))
    params = tree.astype(params, np.float64)
    x = random.normal(random.key(3), (max(TILE_FROM // 10, TILE_ROWS) + 7, 6), np.float64)
    expected = x @ params["w"] + params["b"]
    assert expected.size >= TILE_FROM
    tiles, real_tile = [], np.tile  # chan calls np.tile only when it tiles
    monkeypatch.setattr(np, "tile", lambda *a: tiles.append(a) or real_tile(*a))
    np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-12, atol=1e-12)
    assert tiles
    y, pullback = layer.vjp(params, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    dy = random.normal(random.key(4), y.shape, np.float64)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(grads["b"], dy.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dx, dy @ params["w"].T, rtol=1e-12, atol=1e-12)
    check_vjp(layer, params, x)


def test_dropout_rate_is_fraction_dropped_and_scaled(key):
    layer = L.Dropout(0.25)
    x = np.ones((200, 500), np.float32)
    y = layer.apply((), x, key=key, train=True)
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.25) < 0.01
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    # same key -> same mask; vjp uses the same mask as apply
    y2, pullback = layer.vjp((), x, key=key, train=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(pullback(np.ones_like(x))[1], y)
    assert np.array_equal(layer.apply((), x, train=False), x)


def test_dropout_of_rate_one_drops_everything_in_training(key):
    x = random.normal(random.key(1), (3, 4), np.float64)
    layer = L.Dropout(1.0)
    y, pullback = layer.vjp((), x, key=key, train=True)
    np.testing.assert_array_equal(y, np.zeros((3, 4)))
    np.testing.assert_array_equal(layer.apply((), x, key=key, train=True), np.zeros((3, 4)))
    np.testing.assert_array_equal(pullback(np.ones((3, 4)))[1], np.zeros((3, 4)))
    assert y.dtype == np.float64


def test_dropout_scales_float64_inputs_in_float64(key):
    # the kept entries are scaled by 1/(1 - rate) in the input's dtype, not float32's
    x = np.ones((50, 40))
    y, pullback = L.Dropout(0.3).vjp((), x, key=key, train=True)
    assert y.dtype == np.float64
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(y[kept], 1 / (1 - 0.3))
    np.testing.assert_array_equal(L.Dropout(0.3).apply((), x, key=key, train=True), y)
    np.testing.assert_array_equal(pullback(np.full_like(x, -2.0))[1], -2.0 * y)


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_dropout_train_without_key_explains(rate):
    # At every rate, so that changing the rate cannot break a script that ran before.
    for call in (L.Dropout(rate).apply, L.Dropout(rate).vjp):
        with pytest.raises(ValueError, match=r"key=funcdl\.random\.key"):
            call((), np.ones((2, 2)), train=True)
    x = np.ones((2, 2))
    assert L.Dropout(rate).apply((), x, train=False) is x


@pytest.mark.parametrize("make", ACTIVATIONS)
def test_integer_inputs_give_float32_not_float64(make):
    x = np.array([[-2, 0, 3]])
    y, pullback = make().vjp((), x)
    assert y.dtype == np.float32 and make().apply((), x).dtype == np.float32
    assert pullback(np.ones(y.shape, np.float32))[1].dtype == np.float32
    np.testing.assert_array_equal(y, make().apply((), x.astype(np.float32)))


def test_integer_inputs_to_dropout_and_residual_give_float32(key):
    x = np.array([[1, 2, 3, 4]])
    assert L.Dropout(0.5).apply((), x, key=key, train=True).dtype == np.float32
    res = L.Residual(L.Dense(4))
    _, params = res.init(key, (None, 4))
    assert res.apply(params, x).dtype == np.float32


def test_sequential_equals_manual_composition(key):
    d1, act, d2 = L.Dense(4), L.Tanh(), L.Dense(2)
    model = L.Sequential(d1, act, d2)
    _, params = model.init(key, (None, 3))
    x = random.normal(random.key(5), (6, 3), np.float64)
    p64 = tree.astype(params, np.float64)
    h1, pb1 = d1.vjp(p64[0], x)
    h2, pb2 = act.vjp((), h1)
    y, pb3 = d2.vjp(p64[2], h2)
    ys, pbs = model.vjp(p64, x)
    np.testing.assert_allclose(ys, y)
    dy = random.normal(random.key(6), y.shape, np.float64)
    g3, dh2 = pb3(dy)
    _, dh1 = pb2(dh2)
    g1, dx = pb1(dh1)
    (gs1, gs2, gs3), dxs = pbs(dy)
    np.testing.assert_allclose(gs1["w"], g1["w"])
    np.testing.assert_allclose(gs3["b"], g3["b"])
    np.testing.assert_allclose(dxs, dx)
    assert gs2 == ()


def test_sequential_init_shapes_and_key_split(key):
    model = L.Sequential(L.Dense(3), L.Dense(3))
    out, (p1, p2) = model.init(key, (None, 3))
    assert out == (None, 3)
    assert not np.array_equal(p1["w"], p2["w"])  # one key per child


# ---------------------------------------------------------------------------- bad inputs

def test_dense_wrong_feature_size_names_layer_and_shapes(key):
    model = L.Sequential(L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(), L.Dense(1))
    _, params = model.init(key, (None, 2))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Dense\(25\).*\(\.\.\., 2\).*\(50, 3\)"):
        model.apply(params, np.ones((50, 3), np.float32))
    bad = (params[0], (), params[0], (), params[4])  # layer 2 gets a (2, 25) kernel
    with pytest.raises(ValueError, match=r"Sequential\[2\] Dense\(25\)"):
        model.apply(bad, np.ones((50, 2), np.float32))


def test_wrong_rank_and_shape_at_init(key):
    with pytest.raises(ValueError, match=r"Dense\(3\).*\(None, None\)"):
        L.Dense(3).init(key, (None, None))
    with pytest.raises(TypeError, match="in_shape must be a tuple"):
        L.Dense(3).init(key, 5)
    with pytest.raises(ValueError, match=r"Reshape\(\(4,\)\).*\(None, 3\)"):
        L.Reshape((4,)).init(key, (None, 3))
    with pytest.raises(ValueError, match=r"Sequential\[1\] Dense\(2\)"):
        L.Sequential(L.Flatten(), L.Dense(2)).init(key, (None, 0))


def test_pullback_refuses_broadcastable_cotangent(key):
    _, params = L.Dense(1).init(key, (None, 2))
    _, pullback = L.Dense(1).vjp(params, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"Dense\(1\).*\(5, 1\).*\(5,\)"):
        pullback(np.ones(5, np.float32))
    _, pullback = L.Sigmoid().vjp((), np.ones((5, 1)))
    with pytest.raises(ValueError, match=r"Sigmoid\(\).*\(5, 1\).*\(5,\)"):
        pullback(np.ones(5))


def test_sequential_params_count_mismatch(key):
    model = L.Sequential(L.Dense(2), L.ReLU())
    with pytest.raises(ValueError, match=r"one entry per layer \(2\).*length 1"):
        model.apply(({"w": np.ones((2, 2))},), np.ones((1, 2)))


def test_uncalled_constructor_is_refused():
    with pytest.raises(TypeError, match=r"ReLU\(\), not ReLU"):
        L.Sequential(L.Dense(2), L.ReLU)  # type: ignore[arg-type]


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="Dense"):
        L.Dense(0)
    with pytest.raises(ValueError, match="Dropout"):
        L.Dropout(1.5)
    with pytest.raises(ValueError, match="Reshape"):
        L.Reshape((-1, -1))


def test_softmax_axis_out_of_range():
    with pytest.raises(ValueError, match=r"Softmax\(axis=2\).*\(3, 2\)"):
        L.Softmax(axis=2).apply((), np.ones((3, 2)))


def test_custom_layer_composes(key):
    """A user's own layer from three functions: y = a * x, with its vjp."""

    def init(k, in_shape):
        return in_shape, {"a": np.float32(2.0) * np.ones(in_shape[-1], np.float32)}

    def apply(params, x, *, key=None, train=False):
        return params["a"] * x

    def vjp(params, x, *, key=None, train=False):
        return params["a"] * x, lambda dy: ({"a": (dy * x).sum(axis=0)}, dy * params["a"])

    scale = L.Layer(init, apply, vjp, name="Scale")
    model = L.Sequential(L.Dense(3), scale, L.Tanh())
    check_layer(model, (None, 2))
    _, params = model.init(key, (None, 2))
    check_vjp(model, params, np.ones((2, 2)))


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


def test_reshape_with_minus_one_of_an_unknown_size_declares_none():
    out, _ = L.Reshape((-1, 2)).init(random.key(0), (None, None, 4))
    assert out == (None, None, 2)
    # the next layer then says what it needs, not that -1 is not a size
    with pytest.raises(ValueError, match=r"Dense\(3\): the last axis of in_shape must be a "
                                         r"known size > 0, got \(None, None\)"):
        L.Sequential(L.Reshape((-1,)), L.Dense(3)).init(random.key(0), (None, None))


def test_a_nan_from_finite_inputs_to_layer_norm_is_not_silenced():
    # the mean itself overflows: x̂ is NaN, and NumPy's warning says so (only overflow of
    # the variance, which gives x̂ = 0 as in PyTorch, is silenced)
    x = np.array([[3e38, 3e38, 3e38, -1.0]], np.float32)
    layer = L.LayerNorm()
    _, params = layer.init(random.key(0), (None, 4))
    with pytest.warns(RuntimeWarning, match="invalid value"):
        layer.apply(params, x)



# ---------------------------------------------------------------------------- pools, by offset
# MaxPool2D and AvgPool2D copy each window offset's slice pixel by pixel into a contiguous
# buffer (funcdl.layers._pooling) and scatter the shares back by classes of disjoint
# offsets: every geometry (padding, stride below, at and above the window) against windows
# looped over by hand, with ties and -inf, in float32 and float64.

POOL_GEOMETRIES = [  # window, stride, padding
    (2, None, "VALID"), (3, 2, "SAME"), (3, 2, "VALID"), (2, 1, "SAME"), ((2, 3), (1, 2), 1),
    ((3, 2), (2, 1), ((2, 0), (0, 1))), (2, 3, "VALID"), (1, 1, "VALID"), (3, 1, 1),
    ((1, 3), (2, 3), ((0, 0), (1, 1))), (2, None, "SAME"),
    # padding 2 with strides (1, 2) and (2, 1): where a window's real cells start depends
    # on each axis's own stride (as test_conv's all -inf windows check by hand)
    (3, (1, 2), 2), (3, (2, 1), 2),
]


def _pads_by_hand(size, k, s, padding, axis):
    """(before, after) along one axis: SAME as TF/JAX (the odd pixel after), VALID none, or
    the explicit int, (rows, cols) pair or pair of pairs."""
    if padding == "SAME":
        total = max((-(-size // s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2
    if padding == "VALID":
        return 0, 0
    p = padding if isinstance(padding, int) else padding[axis]
    return (p, p) if isinstance(p, int) else tuple(p)


def _pool_by_hand(x, window, stride, padding, kind):
    """y and dx for dy = 1, 2, 3, ... by loops over windows, as PyTorch's CPU kernel: from a
    maximum of -inf at the first real cell, a cell wins when it is greater than the maximum
    so far or NaN (the first maximum wins ties, the last NaN any window holding one; a window
    of -inf sends dy to its first real cell, padding never wins). The output size and
    padding are worked out here, not taken from funcdl."""
    kh, kw = (window, window) if isinstance(window, int) else window
    stride = (kh, kw) if stride is None else stride
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    n, h, w, c = x.shape
    (t, bottom), (l, right) = (_pads_by_hand(h, kh, sh, padding, 0),
                               _pads_by_hand(w, kw, sw, padding, 1))
    oh, ow = (h + t + bottom - kh) // sh + 1, (w + l + right - kw) // sw + 1
    y = np.zeros((n, oh, ow, c))
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = np.zeros(x.shape)
    for p, q, b, ch in itertools.product(range(oh), range(ow), range(n), range(c)):
        cells = [(p * sh + i - t, q * sw + j - l) for i in range(kh) for j in range(kw)]
        real = [(r, s) for r, s in cells if 0 <= r < h and 0 <= s < w]
        vals = [x[b, r, s, ch] for r, s in real]
        if kind == "max":
            top, at = -np.inf, real[0]
            for v, cell in zip(vals, real):
                if v > top or np.isnan(v):
                    top, at = v, cell
            y[b, p, q, ch] = top
            dx[b, at[0], at[1], ch] += dy[b, p, q, ch]
            continue
        m = kh * kw if kind == "avg" else len(real)
        y[b, p, q, ch] = sum(vals) / m
        for r, s in real:
            dx[b, r, s, ch] += dy[b, p, q, ch] / m
    return y, dy, dx


@pytest.mark.parametrize(("window", "stride", "padding"), POOL_GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("kind", "data"), [  # -inf, NaN for max only: a mean has no route
    ("max", "-inf"), ("max", "nan"),
    *itertools.product(["max", "avg", "avg-exclude-pad"], ["normal", "ties"])])
def test_pools_by_offset_match_windows_by_hand(window, stride, padding, dtype, data, kind):
    rng = np.random.default_rng(7)
    x = (rng.integers(0, 3, (2, 7, 8, 3)) if data in ("ties", "nan")
         else rng.standard_normal((2, 7, 8, 3))).astype(dtype)
    if data == "nan":  # ties, NaN (the last NaN wins) and windows of -inf only
        x[rng.random(x.shape) < 0.3] = np.nan
        x[rng.random(x.shape) < 0.5] = -np.inf
    if data == "-inf":
        x[rng.random(x.shape) < 0.7] = -np.inf
    layer = (L.MaxPool2D(window, stride, padding) if kind == "max" else
             L.AvgPool2D(window, stride, padding, count_include_pad=kind == "avg"))
    y_ref, dy, dx_ref = _pool_by_hand(x.astype(np.float64), window, stride, padding, kind)
    y, pullback = layer.vjp((), x)
    _, dx = pullback(dy.astype(dtype))
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(layer.apply((), x), y)
    tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-14, "atol": 0}
    if kind == "max":  # exact: values are copied, and each x gets dy sums of whole numbers
        np.testing.assert_array_equal(y, y_ref.astype(dtype))
        np.testing.assert_array_equal(dx, dx_ref.astype(dtype))
    else:
        np.testing.assert_allclose(y, y_ref, **tol)
        np.testing.assert_allclose(dx, dx_ref, **tol)


@pytest.mark.parametrize(("window", "stride", "padding"), POOL_GEOMETRIES)
@pytest.mark.parametrize("make", [L.MaxPool2D, L.AvgPool2D,
                                  lambda *a: L.AvgPool2D(*a, count_include_pad=False)])
def test_pools_by_offset_vjp_float64(window, stride, padding, make):
    # distinct values: each window's maximum is unique, so finite differences see it
    x = np.random.default_rng(8).permutation(2 * 7 * 8 * 3).reshape(2, 7, 8, 3) / 9.0
    check_vjp(make(window, stride, padding), (), x)


def test_maxpool_gradient_goes_to_the_first_maximum_with_its_sign_and_size():
    # a window of four equal maxima and one of a single maximum; dy = -3 and 5
    x = np.array([[7.0, 7.0, 1.0, 2.0], [7.0, 7.0, 9.0, 0.0]]).reshape(1, 2, 4, 1)
    y, pullback = L.MaxPool2D(2).vjp((), x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[7.0, 9.0]])
    _, dx = pullback(np.array([-3.0, 5.0]).reshape(1, 1, 2, 1))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[-3, 0, 0, 0], [0, 0, 5, 0]])


def test_maxpool_non_contiguous_and_integer_inputs():
    x = np.random.default_rng(9).standard_normal((3, 6, 8, 4))
    layer = L.MaxPool2D(3, 2, "SAME")
    y, pullback = layer.vjp((), x[:, :, ::-1].transpose(0, 2, 1, 3))  # a strided view
    y_ref, pullback_ref = layer.vjp((), np.ascontiguousarray(x[:, :, ::-1].transpose(0, 2, 1, 3)))
    np.testing.assert_array_equal(y, y_ref)
    dy = np.ones_like(y)
    np.testing.assert_array_equal(pullback(dy)[1], pullback_ref(dy)[1])
    ints = np.arange(2 * 4 * 4 * 1).reshape(2, 4, 4, 1)
    assert layer.apply((), ints).dtype == np.float32
    assert L.AvgPool2D(2).vjp((), ints)[1](np.ones((2, 2, 2, 1), np.float32))[1].dtype == \
        np.float32


def test_pools_of_empty_batches_and_channels():
    for shape in ((0, 4, 4, 2), (2, 4, 4, 0)):
        for layer in (L.MaxPool2D(3, 2, "SAME"), L.AvgPool2D(2)):
            y, pullback = layer.vjp((), np.zeros(shape, np.float32))
            assert pullback(np.zeros_like(y))[1].shape == shape


def test_dropout_drops_the_same_entries_whatever_the_input_dtype():
    # the draws are float32 whatever x holds (they were in x's dtype: a float64 rerun, or
    # check_vjp's, dropped other entries), and a big-endian input (np.load of a '>f4' file)
    # trains like a native one
    key = random.key(7)
    x32 = np.ones((4, 64), np.float32)
    layer = L.Dropout(0.5)
    want = layer.apply((), x32, key=key, train=True)
    assert 0 < np.count_nonzero(want) < want.size
    for x in (x32.astype(np.float64), x32.astype(">f4"), np.ones((4, 64), np.int64)):
        y = layer.apply((), x, key=key, train=True)
        np.testing.assert_array_equal(y != 0, want != 0)
        assert y.dtype == (np.float64 if x.dtype == np.float64 else np.float32)


@pytest.mark.parametrize(("make", "in_shape", "kw"), [
    (lambda: L.Dense(3), (None, 4), {}),
    (lambda: L.Conv2D(2, 3), (None, 5, 5, 2), {}),
    (lambda: L.Conv1D(2, 3), (None, 6, 2), {}),
    (lambda: L.LayerNorm(), (None, 4), {}),
    (lambda: L.LayerNorm(axis=1), (None, 4, 3), {}),
    (lambda: L.BatchNorm(), (None, 4), {"train": True}),
    (lambda: L.BatchNorm(), (None, 4), {"train": False}),
    (lambda: L.Sequential(L.Dense(4), L.Tanh(), L.Dense(2)), (None, 4), {}),
    (lambda: L.Residual(L.Sequential(L.Dense(4), L.ReLU())), (None, 4), {}),  # dy + dx
])
def test_dx_takes_the_inputs_dtype_under_float64_params(make, in_shape, kw):
    # JAX gives an input's cotangent the input's dtype (and dparams the params'): a float32
    # x under float64 params took a float64 dx, where the dparams were cast back
    layer = make()
    got = layer.init(random.key(0), in_shape)
    params = tree.astype(got[1], np.float64)
    if layer.stateful:
        kw = {**kw, "state": got[2]}
    x64 = random.normal(random.key(1), tuple(3 if d is None else d for d in in_shape),
                        np.float64)
    out = layer.vjp(params, x64.astype(np.float32), **kw)
    y, pullback = out[0], out[1]
    assert y.dtype == np.float64  # the forward promotes, as NumPy and JAX do
    dy = random.normal(random.key(2), y.shape, np.float64)
    dparams, dx = pullback(dy)
    assert dx.dtype == np.float32
    assert {a.dtype for a in tree.leaves(dparams)} == {np.dtype(np.float64)}
    want = layer.vjp(params, x64.astype(np.float32).astype(np.float64), **kw)[1](dy)[1]
    # Residual adds dy to a dx its branch already rounded to float32: within an ulp
    np.testing.assert_allclose(dx, want.astype(np.float32), rtol=2e-7, atol=1e-7)


def test_a_users_layer_need_not_take_key_or_train():
    # combinators pass key= and train= to every child: apply(params, x) raised Python's bare
    # "unexpected keyword argument 'key'"
    def init(key, in_shape):
        return in_shape, {"a": np.float32(3.0) * np.ones(in_shape[-1], np.float32)}

    def apply(params, x):
        return params["a"] * x

    def vjp(params, x, *, train=False):  # takes one of the two: only key is dropped
        assert train is True
        return params["a"] * x, lambda dy: ({"a": (dy * x).sum(axis=0)}, params["a"] * dy)

    scale = L.Layer(init, apply, vjp, name="Scale")
    model = L.Sequential(L.Dense(2), scale, L.Dropout(0.5))
    _, params = model.init(random.key(0), (None, 3))
    x = random.normal(random.key(1), (4, 3), np.float32)
    y = model.apply(params, x, key=random.key(2), train=False)
    np.testing.assert_allclose(y, 3 * L.Dense(2).apply(params[0], x), rtol=1e-6)
    loss, grads = fd.value_and_grad(model, fd.losses.mse)(params, x, np.zeros((4, 2)),
                                                         key=random.key(2))
    assert grads[1]["a"].shape == (2,) and np.isfinite(loss)
    def takes_all(params, x, **kw):
        return x

    assert L.Layer(init, takes_all, vjp).apply is takes_all  # kept as given
    assert scale.apply is not apply and scale.apply.__name__ == "apply"  # wrapped


@pytest.mark.parametrize("alpha", [2.0, -3.0])
def test_leaky_relu_steeper_than_one_is_silent_where_x_is_picked(alpha):
    # a·x of 3e38 overflows although y = x there: no overflow warning (warnings are errors
    # here), and y = a·x = ±inf where that is the answer, as PyTorch gives it
    x = np.array([3e38, -3e38, 1.0, -1.0], np.float32)
    y = L.LeakyReLU(alpha).apply((), x)
    np.testing.assert_array_equal(y, np.array([3e38, -np.inf * np.sign(alpha), 1.0, -alpha],
                                              np.float32))
    assert y.dtype == np.float32


@pytest.mark.parametrize("make", [lambda: L.Dense(2), lambda: L.ReLU(), lambda: L.LayerNorm(),
                                  lambda: L.Sequential(L.Dense(3), L.Tanh(), L.Dense(2))])
def test_python_floats_are_float32_as_jaxs_weak_floats(make):
    # np.asarray of a list is float64: the whole forward and dx of a float32 network were
    # float64, silently; a float64 ndarray still asks for float64 (NumPy's promotion)
    layer = make()
    _, params = layer.init(random.key(0), (None, 3))
    rows = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
    y, pullback = layer.vjp(params, rows)
    assert y.dtype == layer.apply(params, rows).dtype == np.float32
    assert pullback(np.ones_like(y))[1].dtype == np.float32
    np.testing.assert_array_equal(y, layer.apply(params, np.array(rows, np.float32)))
    assert layer.apply(params, np.array(rows)).dtype == np.float64
    if params:  # under float64 params they are float64, exact, as JAX's take the other's
        p64 = tree.astype(params, np.float64)
        y64, pullback64 = layer.vjp(p64, rows)
        np.testing.assert_array_equal(y64, layer.apply(p64, np.array(rows)))
        assert pullback64(np.ones_like(y64))[1].dtype == np.float64
    # float64 arrays in a list ask for float64, as an array of them does
    assert layer.apply(params, [np.array(r) for r in rows]).dtype == np.float64


def test_a_users_partial_or_callable_object_need_not_take_key_or_train():
    def scale_apply(params, x, s):
        return x * s

    class Scale:
        def __call__(self, params, x):
            return 2.0 * x

    init = lambda key, shape: (shape, ())  # noqa: E731
    vjp = lambda params, x, **kw: (2.0 * x, lambda dy: ((), 2.0 * dy))  # noqa: E731
    x = np.ones((2, 3), np.float32)
    for apply in (functools.partial(scale_apply, s=2.0), Scale()):
        model = L.Sequential(L.Layer(init, apply, vjp, name="Scale2"), L.Tanh())
        np.testing.assert_array_equal(model.apply(((), ()), x), np.tanh(2 * x))

    # a flag under another name would be dropped, and the layer run in inference: refused
    def my_dropout(params, x, rng=None, training=False):
        return x

    with pytest.raises(TypeError, match=r"Sequential\[0\] MyDrop: .*unexpected keyword "
                                        r"argument 'key'"):
        L.Sequential(L.Layer(init, my_dropout, vjp, name="MyDrop")).apply(((),), x, train=True)


def test_a_big_endian_input_gets_a_native_float32_dx():
    # np.load of a '>f4' file: dx in the input's dtype, in native byte order
    layer = L.Dense(2)
    _, params = layer.init(random.key(0), (None, 3))
    x = random.normal(random.key(1), (4, 3)).astype(">f4")
    y, pullback = layer.vjp(tree.astype(params, np.float64), x)
    dx = pullback(np.ones_like(y))[1]
    assert dx.dtype == np.dtype("=f4") and dx.dtype.isnative
