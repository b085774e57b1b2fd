"""Adversarial review of funcdl.testing (does the gradient checker catch wrong vjps, and
does it stay quiet on right ones?) and funcdl.initializers (distributions against the
formulas of JAX's jax.nn.initializers and PyTorch's nn.init, checked statistically)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import initializers as I
from funcdl import layers as L
from funcdl import random
from funcdl.layers import Layer
from funcdl.losses import Loss
from funcdl.testing import check_layer, check_loss, check_vjp

RNG = np.random.default_rng(20240611)
K = random.key(0)


def _fails(fn, *fragments):
    """fn() raises AssertionError whose message holds every fragment; returns it."""
    with pytest.raises(AssertionError) as info:
        fn()
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in: {msg}"
    return msg


# ------------------------------------------------------------------ user layers


def _affine(n_in, n_out, change=None):
    """y = x @ w + b, its pullback's (dparams, dx) passed through change(g, dx, x)."""

    def init(k, s):
        k1, k2 = random.split(k)
        return (s[0], n_out), {"w": random.normal(k1, (n_in, n_out)),
                               "b": random.normal(k2, (n_out,))}

    def apply(p, x, **kw):
        return x @ p["w"] + p["b"]

    def vjp(p, x, **kw):
        def pullback(dy):
            g, dx = {"w": x.T @ dy, "b": dy.sum(0)}, dy @ p["w"].T
            return change(g, dx, x) if change else (g, dx)
        return apply(p, x), pullback

    return Layer(init, apply, vjp, name="Affine")


def _at(a, index, value):
    a = a.copy()
    a[index] = value
    return a


_WRONG = {  # name: (change of (dparams, dx), fragment the message must name)
    "sign of dw": (lambda g, dx, x: ({**g, "w": -g["w"]}, dx), "params['w'][0, 0]"),
    "dx twice": (lambda g, dx, x: (g, 2 * dx), "x[0, 0]"),
    "dw transposed": (lambda g, dx, x: ({**g, "w": g["w"].T.copy()}, dx), "params['w']["),
    "no bias grad": (lambda g, dx, x: ({**g, "b": 0 * g["b"]}, dx), "params['b'][0]"),
    "one entry of dw": (lambda g, dx, x: ({**g, "w": _at(g["w"], (2, 1), g["w"][2, 1] + 0.5)},
                                          dx), "params['w'][2, 1]"),
    "dx of row 2 only": (lambda g, dx, x: (g, _at(dx, 2, 1.01 * dx[2])), "x[2, "),
}


@pytest.mark.parametrize("name", sorted(_WRONG))
def test_wrong_vjps_are_caught_naming_leaf_index_expected_and_got(name):
    change, where = _WRONG[name]
    layer = _affine(4, 4, change)  # square w: a transposed dw has the right shape
    _, p = layer.init(K, (None, 4))
    x = random.normal(random.key(1), (3, 4), np.float64)
    _fails(lambda: check_vjp(layer, p, x), where, "expected", "(finite difference)", "got",
           "(vjp)")
    _fails(lambda: check_layer(layer, (None, 4)), where)


def _scale(n, wrong=None, factor=1.0, rel=0.0):
    """y = tanh(x) * w over n features; dw[wrong] times factor, all of dw times (1 + rel)."""

    def vjp(p, x, **kw):
        t = np.tanh(x)

        def pullback(dy):
            dw = (dy * t).sum(0) * (1 + rel)
            if wrong is not None:
                dw[wrong] *= factor
            return {"w": dw.astype(x.dtype)}, dy * p["w"] * (1 - t * t)
        return t * p["w"], pullback

    return Layer(lambda k, s: (s, {"w": random.normal(k, (n,))}),
                 lambda p, x, **kw: np.tanh(x) * p["w"], vjp, name="Scale")


def test_one_entry_10_percent_off_in_a_20000_entry_leaf_is_named():
    _fails(lambda: check_layer(_scale(20000, 12345, 1.1), (None, 20000)),
           "params['w'][12345]: expected")


def test_rounding_level_errors_pass_real_ones_fail():
    check_layer(_scale(6, rel=1e-9), (None, 6))  # far below rtol: no false alarm
    _fails(lambda: check_layer(_scale(6, rel=1e-3), (None, 6)), "params['w'][")


def test_a_float32_only_wrong_factor_is_caught_and_rounding_is_not():
    def make(rel):
        def vjp(p, x, **kw):
            f = 1 + rel if x.dtype == np.float32 else 1.0
            return np.sin(x), lambda dy: ((), (dy * np.cos(x) * f).astype(x.dtype))
        return Layer(lambda k, s: (s, ()), lambda p, x, **kw: np.sin(x), vjp, name="Sin")

    check_layer(make(1e-7), (None, 5))
    _fails(lambda: check_layer(make(1e-3), (None, 5)), "float32")


def test_a_vjp_forward_other_than_apply_fails():
    layer = Layer(lambda k, s: (s, ()), lambda p, x, **kw: np.tanh(x) * (1 + 1e-4),
                  lambda p, x, **kw: (np.tanh(x), lambda dy: ((), dy * (1 - np.tanh(x) ** 2))))
    _fails(lambda: check_layer(layer, (None, 3)), "apply", "vjp")


def test_a_layer_upcasting_to_float64_fails():
    layer = Layer(lambda k, s: (s, ()), lambda p, x, **kw: x.astype(np.float64) * 2,
                  lambda p, x, **kw: (x.astype(np.float64) * 2, lambda dy: ((), 2 * dy)))
    _fails(lambda: check_layer(layer, (None, 3)), "float64")


def test_a_layer_writing_into_its_input_fails():
    def apply(p, x, **kw):
        np.multiply(x, 2, out=x)
        return x

    layer = Layer(lambda k, s: (s, ()), apply,
                  lambda p, x, **kw: (apply(p, x), lambda dy: ((), 2 * dy)))
    _fails(lambda: check_vjp(layer, (), RNG.normal(size=(2, 3))), "wrote into x")


def test_a_layer_subtracting_the_batch_mean_at_inference_fails():
    layer = Layer(lambda k, s: (s, ()), lambda p, x, **kw: x - x.mean(0),
                  lambda p, x, **kw: (x - x.mean(0), lambda dy: ((), dy - dy.mean(0))))
    _fails(lambda: check_layer(layer, (None, 4)), "depends on the other rows")


def _batch_max():
    """y = x / max|x| over the whole batch (a per-tensor quantisation scale): row-mixing."""

    def vjp(p, x, **kw):
        i = np.unravel_index(np.argmax(np.abs(x)), x.shape)
        m = np.abs(x[i])

        def pullback(dy):
            dx = dy / m
            dx[i] -= (dy * x).sum() / m ** 2 * np.sign(x[i])
            return (), dx
        return x / m, pullback

    return Layer(lambda k, s: (s, ()), lambda p, x, **kw: x / np.abs(x).max(), vjp,
                 name="BatchMax")


# DEFECT (fixed): check_layer ran only row 0 alone (and a reversal): mixing decided by row 0 passed
def test_a_layer_scaled_by_the_batch_max_is_caught_whichever_row_holds_it():
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    x[0, 1] = 5.0  # the batch's max in row 0: row 0 alone gives its row, rows 1, 2 do not
    _fails(lambda: check_layer(_batch_max(), (None, 4), x=x), "rows")


def _lookup64():
    """An ids layer whose output is float64 from float32 params."""

    def apply(p, x, **kw):
        return p["t"].astype(np.float64)[x]

    def vjp(p, x, **kw):
        def pullback(dy):
            g = np.zeros(p["t"].shape, p["t"].dtype)
            np.add.at(g, x, dy)
            return {"t": g}, None
        return apply(p, x), pullback

    return Layer(lambda k, s: ((*s, 3), {"t": random.normal(k, (10, 3))}), apply, vjp,
                 name="Lookup64", ids=10)


# DEFECT (fixed): check_layer skips the output dtype check when the input is integer ids
def test_an_ids_layer_giving_float64_from_float32_params_fails():
    _fails(lambda: check_layer(_lookup64(), (None, 5)), "float64")


def _running_mean(moves_at_inference):
    def init(k, s):
        return s, (), {"m": np.zeros(s[1:], np.float32)}

    def apply(p, x, *, state, key=None, train=False):
        if train:
            bm = x.mean(0)
            return x - bm, {"m": (0.9 * state["m"] + 0.1 * bm).astype(np.float32)}
        new = {"m": state["m"] + np.float32(1)} if moves_at_inference else state
        return x - state["m"], new

    def vjp(p, x, *, state, key=None, train=False):
        y, new = apply(p, x, state=state, train=train)
        return y, lambda dy: ((), dy - dy.mean(0) if train else dy), new

    return Layer(init, apply, vjp, stateful=True, name="RunningMean")


def test_a_right_stateful_layer_passes_in_training_and_inference():
    check_layer(_running_mean(False), (None, 3))
    check_layer(_running_mean(False), (None, 3), train=True, independent_rows=False)


# DEFECT (fixed): a stateful layer whose train=False call moves its state passes check_layer
def test_a_stateful_layer_moving_its_state_at_inference_fails():
    _fails(lambda: check_layer(_running_mean(True), (None, 3)), "state")


# DEFECT (fixed): one tier-1 projection over all leaves: a leaf < rtol of the rest is never checked
def test_a_missing_bias_gradient_is_caught_for_inputs_of_scale_1e5():
    layer = _affine(8, 8, lambda g, dx, x: ({**g, "b": 0 * g["b"]}, dx))
    _, p = layer.init(K, (None, 8))
    x = 1e5 * random.normal(random.key(1), (5, 8), np.float64)  # incomes, prices, counts
    _fails(lambda: check_vjp(layer, p, x), "params['b'][")


def _mul(wrong):
    """(a, b) -> (a * b, a + b): tuple in, tuple out; db wrong at [1, 2] if asked."""

    def apply(p, x, **kw):
        a, b = x
        return a * b, a + b

    def vjp(p, x, **kw):
        a, b = x

        def pullback(dy):
            d1, d2 = dy
            db = d1 * a + d2
            return (), (d1 * b + d2, _at(db, (1, 2), db[1, 2] + 0.5) if wrong else db)
        return apply(p, x), pullback

    return Layer(lambda k, s: (s, ()), apply, vjp, name="Mul")


def test_tuple_inputs_and_outputs_pass_and_a_wrong_part_is_named():
    check_layer(_mul(False), ((None, 4), (None, 4)))
    _fails(lambda: check_layer(_mul(True), ((None, 4), (None, 4))), "x[1][1, 2]: expected")


def _dense64(scale):
    d = L.Dense(40)
    _, p = d.init(K, (None, 30))
    return d, {k: v.astype(np.float64) * scale for k, v in p.items()}


_RIGHT = {
    "Dense, tiny scale": lambda: check_vjp(*_dense64(1e-6), 1e-6 * RNG.normal(size=(6, 30))),
    "Dense, large scale": lambda: check_vjp(*_dense64(1e4), 1e4 * RNG.normal(size=(6, 30))),
    "Dense, float32 params": lambda: check_vjp(
        L.Dense(5), L.Dense(5).init(K, (None, 3))[1], random.normal(random.key(2), (4, 3))),
    "tanh times w": lambda: check_layer(_scale(6), (None, 6)),
    "Embedding ids": lambda: check_layer(L.Embedding(20, 4), (None, 5)),
    "Embedding then Dense": lambda: check_layer(
        L.Sequential(L.Embedding(20, 4), L.Dense(3)), (None, 5)),
    "Dropout, a key": lambda: check_layer(L.Dropout(0.3), (None, 7), train=True,
                                          key=random.key(3)),
    "Dropout check_vjp": lambda: check_vjp(L.Dropout(0.5), (), RNG.normal(size=(4, 6)),
                                           key=random.key(2), train=True),
    "Parallel, tuple in": lambda: check_layer(L.Parallel(L.Dense(3), L.Tanh()),
                                              ((None, 4), (None, 2))),
    "FanOut, tuple out": lambda: check_layer(L.Sequential(L.Dense(4), L.FanOut(2)), (None, 4)),
    "Conv2D": lambda: check_layer(L.Conv2D(3, 3), (None, 5, 5, 2)),
    "BatchNorm train": lambda: check_layer(L.BatchNorm(), (None, 4), train=True,
                                           independent_rows=False),
    "exp of large inputs": lambda: check_vjp(
        Layer(lambda k, s: (s, ()), lambda p, x, **kw: np.exp(x),
              lambda p, x, **kw: (np.exp(x), lambda dy: ((), dy * np.exp(x)))),
        (), 20 + RNG.normal(size=(3, 4))),
}


@pytest.mark.parametrize("name", sorted(_RIGHT))
def test_right_layers_raise_no_false_alarm(name):
    _RIGHT[name]()


def _mse(change=None):
    def vjp(pred, target):
        d = pred - target

        def pullback(g):
            dp = (2 * g / d.size * d).astype(pred.dtype)
            return change(dp, g) if change else dp
        return np.mean(d * d), pullback

    return Loss("my_mse", vjp)


_WRONG_LOSS = {
    "sign": (lambda dp, g: -dp, "pred[0, 0]"),
    "sum, not mean": (lambda dp, g: dp * 20, "pred[0, 0]"),
    "ignores g": (lambda dp, g: dp / g, "pred[0, 0]"),
    "one entry": (lambda dp, g: _at(dp, (2, 4), 0.0), "pred[2, 4]"),
    "row 3": (lambda dp, g: _at(dp, 3, 1.01 * dp[3]), "pred[3, "),
}


@pytest.mark.parametrize("name", sorted(_WRONG_LOSS))
def test_wrong_loss_vjps_are_caught_naming_the_entry(name):
    change, where = _WRONG_LOSS[name]
    pred, target = random.normal(K, (4, 5)), random.normal(random.key(1), (4, 5))
    check_loss(_mse(), pred, target)
    _fails(lambda: check_loss(_mse(change), pred, target), where, "expected", "got")


def test_a_loss_wrong_in_one_entry_of_20000_is_named():
    pred, target = random.normal(K, (500, 40)), random.normal(random.key(1), (500, 40))
    _fails(lambda: check_loss(_mse(lambda dp, g: _at(dp, (321, 7), 1.2 * dp[321, 7])),
                              pred, target), "pred[321, 7]")


# ------------------------------------------------------------------ initializers

# N draws of a distribution of variance s2 and kurtosis k: the mean of w^2 has standard
# error s2 * sqrt((k - 1) / N); 6 of them (two-sided p < 2e-9) cannot fail by chance.
DENSE, CONV = (1000, 500), (5, 5, 64, 128)  # conv: fan_in 1600, fan_out 3200
_FANS = {DENSE: (1000, 500), CONV: (1600, 3200)}
_VAR = {  # name: (variance from (fan_in, fan_out), kind) per JAX's and torch's formulas
    "glorot_uniform": (lambda i, o: 2 / (i + o), "uniform"),
    "glorot_normal": (lambda i, o: 2 / (i + o), "normal"),
    "he_uniform": (lambda i, o: 2 / i, "uniform"),
    "he_normal": (lambda i, o: 2 / i, "normal"),
    "lecun_normal": (lambda i, o: 1 / i, "normal"),
    "torch_default": (lambda i, o: 1 / (3 * i), "uniform"),  # U(+-1/sqrt(fan_in))
}


def _second_moment_close(w, var, kurtosis):
    n = w.size
    got = float(np.mean(np.asarray(w, np.float64) ** 2))
    assert abs(got - var) <= 6 * var * math.sqrt((kurtosis - 1) / n), (got, var)
    assert abs(float(np.mean(w))) <= 6 * math.sqrt(var / n)


@pytest.mark.parametrize("shape", [DENSE, CONV])
@pytest.mark.parametrize("name", sorted(_VAR))
def test_variance_and_support_follow_the_fan_formulas(name, shape):
    rule, kind = _VAR[name]
    var = rule(*_FANS[shape])
    w = getattr(I, name)()(K, shape)
    assert w.shape == shape and w.dtype == np.float32
    if kind == "uniform":
        bound = math.sqrt(3 * var)
        _second_moment_close(w, var, 1.8)
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() >= bound * (1 - 30 / w.size)  # P(miss) = exp(-30)
    else:
        _second_moment_close(w, var, 3.0)


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal", "lecun_normal"])
def test_normal_variants_are_untruncated_as_their_docstrings_say(name):
    # JAX's truncate at 2 std (rescaled); funcdl follows torch and says so
    assert "untruncated" in getattr(I, name).__doc__
    w = getattr(I, name)()(K, DENSE).astype(np.float64)
    p, n = math.erfc(math.sqrt(2)), w.size  # P(|z| > 2) = 0.0455 for a plain normal
    beyond = float(np.mean(np.abs(w) > 2 * math.sqrt(float(np.mean(w * w)))))
    assert abs(beyond - p) <= 6 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_normal_and_uniform_settings():
    w = I.normal(0.5)(K, (1000, 1000))
    _second_moment_close(w, 0.25, 3.0)
    u = I.uniform(0.5)(K, (1000, 1000))  # JAX's uniform(scale): U[0, scale)
    assert u.min() >= 0 and u.max() < 0.5 and u.max() > 0.5 * (1 - 30 / u.size)
    _second_moment_close(u - 0.25, 0.5 ** 2 / 12, 1.8)


@pytest.mark.parametrize("shape", [(300, 100), (100, 300), (3, 3, 16, 32), (1, 1, 8, 32),
                                   (64, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal_is_orthonormal_over_prod_of_leading_axes(shape, dtype):
    w = I.orthogonal(2.0)(K, shape, dtype)
    assert w.shape == shape and w.dtype == dtype
    m = w.reshape(-1, shape[-1]).astype(np.float64) / 2.0
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(gram - np.eye(len(gram))).max() < tol


def test_orthogonal_is_haar_distributed_not_sign_biased():
    # without R's signs folded in, QR's q[0, 0] is -|a00| / |a0| (mean -0.5 for 3x3)
    o = I.orthogonal()
    q = np.array([o(random.key(i), (3, 3), np.float64)[0, 0] for i in range(2000)])
    assert abs(q.mean()) <= 6 * math.sqrt(1 / 3 / q.size)
    assert abs(np.mean(q * q) - 1 / 3) <= 6 * math.sqrt(4 / 45 / q.size)  # q00^2 ~ Beta(1/2, 1)


_ALL = ["zeros", "ones", "normal", "uniform", "glorot_uniform", "glorot_normal", "he_uniform",
        "he_normal", "lecun_normal", "orthogonal", "torch_default"]


@pytest.mark.parametrize("name", _ALL)
def test_dtype_and_determinism(name):
    init = getattr(I, name)()
    a, b = init(K, (6, 5)), init(K, (6, 5))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert init(K, (6, 5), np.float64).dtype == np.float64
    if name not in ("zeros", "ones"):
        assert not np.array_equal(a, init(random.key(1), (6, 5)))


@pytest.mark.parametrize("call, error, named", [
    (lambda: I.normal(-1.0), ValueError, "initializers.normal"),
    (lambda: I.normal("0.1"), TypeError, "initializers.normal"),
    (lambda: I.uniform("0.1"), TypeError, "initializers.uniform"),
    (lambda: I.orthogonal("1"), TypeError, "initializers.orthogonal"),
    (lambda: I.orthogonal()(K, (5,)), ValueError, "initializers.orthogonal"),
    (lambda: I.orthogonal()(K, ()), ValueError, "initializers.orthogonal"),
    (lambda: I.torch_default()(K, (5,)), ValueError, "initializers.torch_default"),
    (lambda: I.he_normal()(K, (-1, 3)), ValueError, "initializers.he_normal"),
    (lambda: I.glorot_uniform()(K, (2.5, 3)), TypeError, "initializers.glorot_uniform"),
    (lambda: I.lecun_normal()(K, (3, 3), np.int32), TypeError, "initializers.lecun_normal"),
    (lambda: I.he_uniform()((3, 3), K), TypeError, "initializers.he_uniform"),
])
def test_bad_settings_and_shapes_name_the_initializer(call, error, named):
    with pytest.raises(error, match=named):
        call()


def test_zero_sizes_give_empty_arrays_and_rank_1_uses_its_documented_fans():
    for name in _ALL:
        assert getattr(I, name)()(K, (0, 5)).shape == (0, 5)
    assert I.fans((7,)) == (7, 7)  # documented; torch and JAX refuse a rank-1 shape
    _second_moment_close(I.he_normal()(K, (400_000,)), 2 / 400_000, 3.0)


def test_stds_and_bounds_agree_with_jax():
    jax = pytest.importorskip("jax")
    from jax.nn import initializers as J

    for name in ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                 "lecun_normal"]:
        for shape in (CONV,):  # the receptive field; one shape: each JAX draw compiles
            ours = getattr(I, name)()(K, shape).astype(np.float64)
            theirs = np.asarray(getattr(J, name)()(jax.random.PRNGKey(0), shape), np.float64)
            v1, v2 = np.mean(ours ** 2), np.mean(theirs ** 2)
            assert abs(v1 - v2) <= 6 * v2 * math.sqrt(2 * 2 / ours.size), (name, shape)
            if "uniform" in name:
                assert abs(np.abs(ours).max() - np.abs(theirs).max()) <= 1e-3 * v2 ** 0.5


def test_torch_default_matches_nn_linear_and_conv2d():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for layer, shape in [(torch.nn.Linear(1000, 500), DENSE),
                         (torch.nn.Conv2d(64, 128, 5), CONV)]:
        theirs = layer.weight.detach().numpy().astype(np.float64)
        ours = I.torch_default()(K, shape).astype(np.float64)
        bound = 1 / math.sqrt(_FANS[shape][0])
        assert abs(np.abs(theirs).max() - bound) < 1e-3 * bound
        assert abs(np.abs(ours).max() - bound) < 1e-3 * bound
        v1, v2 = np.mean(ours ** 2), np.mean(theirs ** 2)
        assert abs(v1 - v2) <= 6 * v2 * math.sqrt(2 * 0.8 / ours.size)
