"""funcdl.testing's blind spots, each closed by a check that a deliberately wrong user layer
or loss now fails (and its honest twin passes): a scalar loss's pullback ignoring its
cotangent, a call writing into its arguments, a vjp updating the state otherwise than apply,
float32 gradients for float64 params and input, and an empty batch checking nothing."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random, testing
from funcdl.layers import Layer
from funcdl.losses import Loss
from funcdl.testing import check_layer, check_loss, check_vjp

X = random.normal(random.key(2), (3, 4))
PRED = random.normal(random.key(0), (5, 3))
TARGET = random.normal(random.key(1), (5, 3))


def _matmul(mut: str | None = None) -> Layer:
    """``x @ w``, its apply, vjp or pullback wrong in the way ``mut`` names."""
    def init(key, s):
        return (*s[:-1], 4), {"w": random.normal(key, (s[-1], 4)) * np.float32(0.5)}

    def apply(p, x, **kw):
        if mut == "apply_writes_x":
            x *= 1.0 + np.finfo(x.dtype).eps  # an in-place rescale of the caller's x
        return x @ p["w"]

    def vjp(p, x, **kw):
        w = p["w"]
        if mut == "vjp_writes_params":
            w += 0.0 * w + 1e-3
        y = x @ w

        def pullback(dy):
            dw, dx = x.T @ dy, dy @ w.T
            if mut == "pullback_writes_dy":
                np.multiply(dy, 0.0, out=dy)  # after use: the gradients are right
            if mut == "pullback_zeroes_x":
                np.multiply(x, 0.0, out=x)
            if mut == "grads_f32":
                dw = dw.astype(np.float32)
            if mut == "dx_f32":
                dx = dx.astype(np.float32)
            return {"w": dw}, dx

        return y, pullback

    return Layer(init, apply, vjp, name=f"Matmul<{mut}>")


def _params(layer: Layer) -> dict:
    return layer.init(random.key(0), (None, 4))[1]


# ------------------------------------------------------------------ 1. a loss's cotangent

def _mean_square(mut: str | None = None) -> Loss:
    """mean((pred - target)^2), its pullback wrong in the way ``mut`` names."""
    def vjp(pred, target):
        d = pred - target

        def pullback(g=1.0):
            if mut == "ignores_g":
                g = 1.0
            if mut == "g_squared":
                g = g * g
            if mut == "abs_g":
                g = abs(g)
            return (np.asarray(g, pred.dtype) * (2.0 / d.size) * d).astype(pred.dtype)

        return np.mean(d * d), pullback

    return Loss(f"ms<{mut}>", vjp)


@pytest.mark.parametrize("mut", ["ignores_g", "g_squared", "abs_g"])
def test_a_scalar_losss_pullback_must_scale_with_its_cotangent(mut):
    # at g = 1.0, the only cotangent checked before, all three pullbacks are right
    with pytest.raises(AssertionError, match=rf"^check_loss\(ms<{mut}>\): the vjp disagrees "
                                             r"with finite differences"):
        check_loss(_mean_square(mut), PRED, TARGET)
    check_loss(_mean_square(), PRED, TARGET)


# ------------------------------------------------------------------ 2. writes into arguments

@pytest.mark.parametrize(("mut", "says"), [
    ("pullback_writes_dy", r"the pullback wrote into dy \(at \[0, 0\]: was "),
    ("pullback_zeroes_x", r"the pullback wrote into x \(at \[0, 0\]: was .*, now -?0\.0\)"),
    ("apply_writes_x", r"apply wrote into x \(at \[\d, \d\]"),
    ("vjp_writes_params", r"vjp wrote into params\['w'\] \(at \[0, 0\]"),
])
def test_check_vjp_fails_a_layer_writing_into_its_arguments(mut, says):
    # each computes right gradients from what it saw, so the finite differences agree
    with pytest.raises(AssertionError, match=rf"^check_vjp\(Matmul<{mut}>\): {says}"):
        check_vjp(_matmul(mut), _params(_matmul()), X.astype(np.float64))
    check_vjp(_matmul(), _params(_matmul()), X.astype(np.float64))


@pytest.mark.parametrize(("mut", "says"), [
    # before: passed check_layer entirely (every later call saw the zeroed x)
    ("pullback_zeroes_x", r"the pullback wrote into x "),
    # before: reported as a memory layout problem
    ("pullback_writes_dy", r"the pullback wrote into dy "),
    ("apply_writes_x", r"apply wrote into x "),
    ("vjp_writes_params", r"vjp wrote into params\['w'\] "),
])
def test_check_layer_fails_a_layer_writing_into_its_arguments(mut, says):
    with pytest.raises(AssertionError, match=rf"^check_layer\(Matmul<{mut}>\): {says}"):
        check_layer(_matmul(mut), (None, 4))
    check_layer(_matmul(), (None, 4))


def test_check_layer_leaves_the_callers_x_as_it_was():
    x = X.copy()
    check_layer(_matmul(), (None, 4), x=x)
    assert np.array_equal(x, X)


def _writing_loss(into: str) -> Loss:
    """Mean square error whose pullback, or vjp, writes into ``into`` after use."""
    def vjp(pred, target, reduction="mean"):
        d = pred - target
        value = d * d if reduction == "none" else np.mean(d * d)

        def pullback(g=1.0):
            scale = 2.0 if reduction == "none" else 2.0 / d.size
            grad = (np.asarray(g) * scale * d).astype(pred.dtype)
            if into == "pred":
                np.subtract(pred, target, out=pred)
            if into == "g":
                g *= 0.0
            return grad

        return value, pullback

    return Loss(f"writes_{into}", vjp)


@pytest.mark.parametrize(("into", "reduction", "says"), [
    ("pred", "mean", r"the pullback wrote into pred \(at \[0, 0\]"),
    ("g", "none", r"the pullback wrote into g \(at \[0, 0\]"),
])
def test_check_loss_fails_a_pullback_writing_into_pred_or_its_cotangent(into, reduction, says):
    with pytest.raises(AssertionError, match=rf"^check_loss\(writes_{into}\): {says}"):
        check_loss(_writing_loss(into), PRED.copy(), TARGET, reduction=reduction)
    check_loss(_writing_loss("nothing"), PRED.copy(), TARGET, reduction=reduction)


# ------------------------------------------------------------------ 3. a stateful vjp's state

def _running_mean(vjp_momentum: float = 0.1) -> Layer:
    """``x - mean`` (the batch's in training, the running one at inference) keeping a
    running mean with momentum 0.1 in apply and ``vjp_momentum`` in the vjp."""
    def init(key, s):
        return s, (), {"mean": np.zeros(s[-1], np.float32)}

    def forward(x, state, train, m):
        if not train:
            return x - state["mean"].astype(x.dtype), state
        mu = x.mean(0)
        return x - mu, {"mean": ((1 - m) * state["mean"] + m * mu).astype(state["mean"].dtype)}

    def apply(p, x, *, state, train=False, key=None):
        return forward(x, state, train, 0.1)

    def vjp(p, x, *, state, train=False, key=None):
        y, new = forward(x, state, train, vjp_momentum)
        if train:
            return y, lambda dy: ((), dy - dy.mean(0)), new
        return y, lambda dy: ((), dy), new

    return Layer(init, apply, vjp, stateful=True, name=f"RunningMean<{vjp_momentum}>")


def test_a_vjp_updating_the_state_otherwise_than_apply_fails():
    bad = _running_mean(0.2)
    says = r"apply's new state and vjp's new state disagree .* first at state\['mean'\]\[0\]"
    with pytest.raises(AssertionError, match=rf"^check_layer\(RunningMean<0.2>\): {says}"):
        check_layer(bad, (None, 4), train=True)
    state = bad.init(random.key(0), (None, 4))[2]
    with pytest.raises(AssertionError, match=rf"^check_vjp\(RunningMean<0.2>\): {says}"):
        check_vjp(bad, (), X.astype(np.float64), state=state, train=True)
    for train in (False, True):
        check_layer(_running_mean(), (None, 4), train=train)
        check_vjp(_running_mean(), (), X.astype(np.float64), state=state, train=train)


def test_a_vjp_returning_a_differently_shaped_state_fails():
    layer = _running_mean()
    vjp = layer.vjp

    def short(p, x, **kw):
        y, pb, new = vjp(p, x, **kw)
        return y, pb, {"mean": new["mean"][:2]}

    bad = Layer(layer.init, layer.apply, short, stateful=True, name="Short")
    with pytest.raises(AssertionError, match=r"^check_layer\(Short\): apply's new state and "
                                             r"vjp's new state disagree: .*\['mean'\]"):
        check_layer(bad, (None, 4))


# ------------------------------------------------------------------ 4. gradient dtypes

@pytest.mark.parametrize(("mut", "says"), [
    ("grads_f32", r"dparams\['w'\] has dtype float32 for float64 params\['w'\]"),
    ("dx_f32", r"dx has dtype float32 for float64 x"),
])
def test_float32_gradients_for_float64_params_and_input_fail(mut, says):
    params = {"w": _params(_matmul())["w"].astype(np.float64)}
    with pytest.raises(AssertionError, match=rf"^check_vjp\(Matmul<{mut}>\): {says}"):
        check_vjp(_matmul(mut), params, X.astype(np.float64))
    check_vjp(_matmul(), params, X.astype(np.float64))


def test_check_layer_names_the_inputs_dtype_when_a_gradient_is_upcast():
    # float32 params, float64 x: NumPy promotes x.T @ dy to float64; the message said
    # "for float32 params and input"
    def init(k, s):
        return (*s[:-1], 4), {"w": random.normal(k, (s[-1], 4))}

    plain = Layer(init, lambda p, x, **kw: x @ p["w"],
                  lambda p, x, **kw: (x @ p["w"], lambda dy: ({"w": x.T @ dy}, dy @ p["w"].T)),
                  name="PlainMatmul")
    with pytest.raises(AssertionError, match=r"^check_layer\(PlainMatmul\): dparams\['w'\] has "
                                             r"dtype float64 for float32 params\['w'\] and "
                                             r"float64 input"):
        check_layer(plain, (None, 4), x=X.astype(np.float64))
    check_layer(L.Dense(4), (None, 4), x=X.astype(np.float64))


# ------------------------------------------------------------------ 5. nothing to check

def test_an_empty_batch_is_refused_not_passed():
    wrong = _matmul("grads_f32")
    with pytest.raises(ValueError, match=r"^check_vjp\(Matmul<grads_f32>\): x is empty \(shape "
                                         r"\(0, 4\)\): there is nothing to check; pass a "
                                         r"non-empty batch"):
        check_vjp(wrong, _params(wrong), X[:0])
    with pytest.raises(ValueError, match=r"^check_layer\(Matmul<grads_f32>\): x is empty "
                                         r"\(shape \(0, 4\), from batch=0\): there is nothing"):
        check_layer(wrong, (None, 4), batch=0)
    with pytest.raises(ValueError, match=r"^check_layer\(Matmul<grads_f32>\): x is empty "
                                         r"\(shape \(0, 4\)\)"):
        check_layer(wrong, (None, 4), x=X[:0])
    check_layer(_matmul(), (None, 4), batch=1)


def test_an_input_of_no_entries_is_refused_whatever_its_batch():
    scale = Layer(lambda k, s: (s, {"a": np.ones((), np.float32)}),
                  lambda p, x, **kw: p["a"] * x,
                  lambda p, x, **kw: (p["a"] * x, lambda dy: ({"a": 3.0 * np.sum(dy * x)},
                                                              p["a"] * dy)), name="Scale")
    with pytest.raises(ValueError, match=r"^check_vjp\(Scale\): x is empty \(shape \(3, 0\)\)"):
        check_vjp(scale, {"a": np.ones(())}, np.zeros((3, 0)))


def test_a_tuple_input_whose_first_array_has_an_empty_batch_is_refused():
    # a user's layer that reads only the second array accepts the mixed batch; its first
    # array's batch of 0 would be a check of nothing, so check_vjp refuses it too
    second = Layer(lambda k, s: (s[1], {"a": np.ones((), np.float32)}),
                   lambda p, x, **kw: p["a"] * x[1],
                   lambda p, x, **kw: (p["a"] * x[1], lambda dy: (
                       {"a": np.sum(dy * x[1])}, (np.zeros_like(x[0]), p["a"] * dy))),
                   name="Second")
    with pytest.raises(ValueError, match=r"^check_vjp\(Second\): x is empty \(shape "
                                         r"\[\(0, 3\), \(2, 3\)\]\)"):
        check_vjp(second, {"a": np.ones(())}, (np.zeros((0, 3)), np.ones((2, 3))))
    check_vjp(second, {"a": np.ones(())}, (np.zeros((2, 3)), np.ones((2, 3))))


# ------------------------------------------------------------------ 6. what is documented

def test_the_docstrings_say_where_float32_and_training_are_checked():
    for doc in (testing.__doc__, check_vjp.__doc__):
        assert "float64 only" in doc and "check_layer" in doc
    for doc in (testing.__doc__, check_layer.__doc__):
        assert "train=False" in doc and "train=True" in doc
