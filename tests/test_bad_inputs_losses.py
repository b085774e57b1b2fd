"""The catalogue of bad inputs, continued (see test_bad_inputs.py): losses, and
value_and_grad, grad and vjp called with the wrong model, loss, flags, state or data."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _catalogue import case, init, ones

import funcdl as fd
from funcdl import layers as L
from funcdl import losses

# ---------------------------------------------------------------------------- losses

Z43 = np.zeros((4, 3))

LOSS_CASES = [
    case("mse-shape-mismatch", lambda: losses.mse(np.zeros((50, 1)), np.zeros(50)), ValueError,
         "mse", "(50, 1)", "(50,)"),
    case("mse-trailing-size-mismatch", lambda: losses.mse(np.zeros((50, 3)), np.zeros((50, 2))),
         ValueError, "mse", "(50, 3)", "(50, 2)"),
    case("mse-integer-pred", lambda: losses.mse(np.zeros(5, np.int64), np.zeros(5)), TypeError,
         "mse", "int64"),
    case("mse-string-target", lambda: losses.mse(np.zeros(5), np.array(["a"] * 5)), TypeError,
         "mse", "<U1"),
    case("mse-bad-reduction", lambda: losses.mse(np.zeros(5), np.zeros(5), reduction="avg"),
         ValueError, "mse", "'avg'"),
    case("mse-none-reduction-cotangent-shape",
         lambda: losses.mse.vjp(np.zeros(5), np.zeros(5), reduction="none")[1](np.ones(4)),
         ValueError, "mse", "(5,)", "(4,)"),
    case("mse-float16-pred",
         lambda: losses.mse(np.zeros(5, np.float16), np.zeros(5, np.float16)), TypeError,
         "mse", "float16"),
    case("huber-delta-0", lambda: losses.huber(np.zeros(5), np.zeros(5), delta=0), ValueError,
         "huber", "delta"),
    case("huber-delta-nan",
         lambda: losses.huber(np.zeros(5), np.zeros(5), delta=float("nan")), ValueError,
         "huber", "delta", "nan"),
    case("bce-probability-above-1", lambda: losses.bce(np.array([0.5, 1.5]), np.array([0., 1.])),
         ValueError, "bce", "[0, 1]", "1.5"),
    case("bce-probability-below-0", lambda: losses.bce(np.array([-0.1, 0.5]), np.array([0., 1.])),
         ValueError, "bce", "[0, 1]", "-0.1"),
    case("bce-probability-nan", lambda: losses.bce(np.array([np.nan, 0.5]), np.array([0., 1.])),
         ValueError, "bce", "nan"),
    case("bce-target-outside-0-1", lambda: losses.bce(np.array([0.5, 0.5]), np.array([0., 2.])),
         ValueError, "bce", "target", "2.0"),
    case("bce-with-logits-target-outside-0-1",
         lambda: losses.bce_with_logits(np.array([0.5, 0.5]), np.array([0., 2.])), ValueError,
         "bce_with_logits", "target", "2.0"),
    case("bce-with-logits-shape-mismatch",
         lambda: losses.bce_with_logits(np.zeros((4, 1)), np.zeros(4)), ValueError,
         "bce_with_logits", "(4, 1)", "(4,)"),
    case("cross-entropy-label-equal-to-classes",
         lambda: losses.softmax_cross_entropy(Z43, np.array([0, 1, 2, 3])), ValueError,
         "softmax_cross_entropy", "[0, 3)", "3]"),
    case("cross-entropy-negative-label",
         lambda: losses.softmax_cross_entropy(Z43, np.array([0, 1, 2, -1])), ValueError,
         "softmax_cross_entropy", "[0, 3)", "[-1, 2]"),
    case("cross-entropy-label-shape",
         lambda: losses.softmax_cross_entropy(Z43, np.array([[0], [1], [2], [1]])), ValueError,
         "softmax_cross_entropy", "(4,)", "(4, 1)"),
    case("cross-entropy-float-labels-as-ids",
         lambda: losses.softmax_cross_entropy(Z43, np.array([0.0, 1.0, 2.0, 1.0])), ValueError,
         "softmax_cross_entropy", "(4,)", "must be integers", "float64", "astype(int)",
         "probabilities of shape (4, 3)"),
    case("cross-entropy-bool-labels-as-ids",
         lambda: losses.softmax_cross_entropy(Z43, np.array([True, False, True, False])),
         ValueError, "softmax_cross_entropy", "must be integers", "bool"),
    case("cross-entropy-string-labels",
         lambda: losses.softmax_cross_entropy(Z43, np.array(["a"] * 4)), TypeError,
         "softmax_cross_entropy", "<U1"),
    case("cross-entropy-one-hot-class-count",
         lambda: losses.softmax_cross_entropy(Z43, np.zeros((4, 2))), ValueError,
         "softmax_cross_entropy", "(4, 3)", "(4, 2)"),
    case("cross-entropy-logits-rank-0",
         lambda: losses.softmax_cross_entropy(np.float64(1.0), np.array(0)), ValueError,
         "softmax_cross_entropy", "class axis", "()"),
    *[case(f"{f.name}-ragged-{what}", lambda f=f, a=a: f(*a), ValueError, f.name,
           f"{what} is not a rectangular array")
      for f in (losses.mse, losses.bce, losses.bce_with_logits, losses.huber,
                losses.softmax_cross_entropy)
      for what, a in (("pred", ([[0.5], [0.5, 0.5]], np.ones((2, 2)))),
                      ("target", (np.full((2, 2), 0.5), [[1.0], [0.0, 1.0]])))],
    case("mse-ragged-cotangent",
         lambda: losses.mse.vjp(Z43, Z43, reduction="none")[1]([[1.0], [1.0, 2.0]]),
         ValueError, "mse", "the cotangent is not a rectangular array"),
    case("mse-ragged-scalar-cotangent", lambda: losses.mse.vjp(Z43, Z43)[1]([[1.0], [1, 2]]),
         ValueError, "mse", "the cotangent is not a rectangular array"),
]


@pytest.mark.parametrize(("call", "exc", "match"), LOSS_CASES)
def test_losses(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- value_and_grad

MLP = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(1))
P_MLP = init(MLP, (None, 3))
BN_MODEL = L.Sequential(L.Dense(4), L.BatchNorm(), L.Dense(1))
P_BN_MODEL, S_BN_MODEL = init(BN_MODEL, (None, 3))
X53, Y51 = ones(5, 3), ones(5, 1)

GRAD_CASES = [
    case("has-aux-string", lambda: fd.value_and_grad(MLP, losses.mse, has_aux="no"), TypeError,
         "value_and_grad", "has_aux must be True or False", "'no'"),
    # through fd.grad the errors name grad (they said value_and_grad: a probe)
    case("wrt-input-int", lambda: fd.grad(MLP, losses.mse, wrt_input=1), TypeError,
         "grad: wrt_input must be True or False"),
    case("uncalled-layer-as-model", lambda: fd.value_and_grad(L.ReLU, losses.mse), TypeError,
         "value_and_grad", "call the constructor: ReLU()"),
    case("loss-not-reduced",
         lambda: fd.value_and_grad(MLP, losses.Loss(
             "per_example", lambda p, t: losses.mse.vjp(p, t, reduction="none")))(
                 P_MLP, X53, Y51),
         TypeError, "value_and_grad", "scalar", "(5, 1)", "reduction='none'"),
    case("stateful-model-without-state",
         lambda: fd.value_and_grad(BN_MODEL, losses.mse)(P_BN_MODEL, X53, Y51), TypeError,
         "value_and_grad", "stateful", "state="),
    case("stateful-model-state-none",
         lambda: fd.value_and_grad(BN_MODEL, losses.mse)(P_BN_MODEL, X53, Y51, state=None),
         TypeError, "Sequential(Dense(4), BatchNorm(), Dense(1))", "state="),
    case("loss-without-vjp", lambda: fd.value_and_grad(MLP, lambda p, t: 0.0), TypeError,
         "value_and_grad", ".vjp"),
    case("model-without-vjp",
         lambda: fd.value_and_grad(lambda p, x: x, losses.mse)(P_MLP, X53, Y51), TypeError,
         "value_and_grad", "vjp"),
    case("state-for-a-stateless-model",
         lambda: fd.value_and_grad(MLP, losses.mse)(P_MLP, X53, Y51, state=()), TypeError,
         "value_and_grad", "['state']"),
    case("target-shape", lambda: fd.value_and_grad(MLP, losses.mse)(P_MLP, X53, np.ones(5)),
         ValueError, "mse", "(5, 1)", "(5,)"),
    case("input-feature-count",
         lambda: fd.value_and_grad(MLP, losses.mse)(P_MLP, ones(5, 4), Y51), ValueError,
         "Sequential[0] Dense(4)", "(..., 3)", "(5, 4)"),
    case("vjp-of-none", lambda: fd.vjp(None, (), ones(2, 3)), TypeError,
         "vjp: expected a layer", "None"),
    case("vjp-of-uncalled-constructor", lambda: fd.vjp(L.ReLU, (), ones(2, 3)), TypeError,
         "vjp: expected a layer", "call the constructor: ReLU()"),
    case("dropout-key-in-value-and-grad",
         lambda: fd.value_and_grad(L.Sequential(L.Dense(1), L.Dropout(0.5)), losses.mse)(
             init(L.Sequential(L.Dense(1), L.Dropout(0.5)), (None, 3)), X53, Y51),
         ValueError, "Sequential[1] Dropout(0.5)", "needs a random key",
         "f(params, x, target, key=...)"),
    case("has-aux-loss-returns-scalar",
         lambda: fd.value_and_grad(MLP, losses.mse, has_aux=True)(P_MLP, X53, Y51), TypeError,
         "has_aux", "(value, aux)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), GRAD_CASES)
def test_value_and_grad(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_the_constructor_hint_is_given_only_for_a_constructor():
    def block():  # a plain function: calling it would not help
        return L.Dense(3)

    def Block():  # named as a constructor: the hint applies
        return L.Dense(3)

    for fn in (lambda p, x: x, block):
        with pytest.raises(TypeError, match="value_and_grad: the model must be a layer") as e:
            fd.value_and_grad(fn, losses.mse)
        assert "call the constructor" not in str(e.value)
    with pytest.raises(TypeError, match=r"call the constructor: Block\(\), not Block"):
        fd.value_and_grad(Block, losses.mse)



@pytest.mark.parametrize("loss", [losses.mse, losses.huber, losses.bce, losses.bce_with_logits,
                                  losses.softmax_cross_entropy])
@pytest.mark.parametrize("where", ["pred", "target"])
def test_a_tuple_of_arrays_is_refused_not_stacked(loss, where):
    # a two-output model's (y1, y2) against a stacked target gave a value, silently
    x = np.full((3, 2), 0.5, np.float32)
    pred, target = ((x, x), np.stack([x, x])) if where == "pred" else (np.stack([x, x]), (x, x))
    with pytest.raises(TypeError, match=rf"{loss.name}: {where} must be one array, got a "
                                        rf"tuple of 2 \(shapes \[\(3, 2\), \(3, 2\)\]\)"):
        loss(pred, target)
    with pytest.raises(TypeError, match="must be one array"):
        loss.vjp(pred, target)


@pytest.mark.parametrize("vjp, got", [(lambda p, t: 3.0, "got float"),
                                      (lambda p, t: np.array([1.0, 2.0, 3.0]), "got ndarray"),
                                      (lambda p, t: (1.0, 2.0), "got a tuple of length 2")])
def test_calling_a_users_loss_whose_vjp_returns_no_pullback_names_it(vjp, got):
    # a 3-entry array read as (value, pullback, aux) gave (1.0, 3.0), silently; a float
    # gave "object of type 'float' has no len()"
    x = np.ones((2, 2))
    with pytest.raises(TypeError, match=rf"mine: its vjp must return \(value, pullback\).*{got}"):
        losses.Loss("mine", vjp)(x, x)
    assert losses.Loss("ok", lambda p, t: [2.0, lambda g: g])(x, x) == 2.0


@pytest.mark.parametrize("call, says", [
    (lambda p: losses.bce(p, np.full(4, 0.5)), "bce: pred must be probabilities"),
    (lambda p: losses.bce(np.full(4, 0.5), p), "bce: target must hold probabilities"),
    (lambda p: losses.bce_with_logits(np.zeros(4), p), "target must hold probabilities"),
    (lambda p: losses.kl_div(np.full(4, -1.0), p), "kl_div: target must be >= 0"),
    (lambda p: losses.kl_div(-p, np.full(4, 0.5)), "kl_div: pred must be <= 0"),
    (lambda p: losses.poisson_nll(np.zeros(4), p), "poisson_nll: target must be >= 0"),
])
def test_a_nan_out_of_a_losss_domain_is_called_nan_not_a_range_of_nans(call, says):
    # one NaN among ordinary values read "got values in [nan, nan]", as if all were NaN
    p = np.array([0.2, np.nan, 0.4, 0.6])
    with pytest.raises(ValueError, match=re.escape(says) + r".*got nan at 1 of its 4 entries"):
        call(p)


@pytest.mark.parametrize("loss", [losses.softmax_cross_entropy, losses.nll])
def test_torchs_class_second_layout_is_told_to_move_the_class_axis_last(loss):
    with pytest.raises(ValueError, match=r"got \(2, 4, 5\); classes go last here: for torch's "
                                         r"\(N, C, d1, \.\.\.\) layout pass "
                                         r"np\.moveaxis\(pred, 1, -1\)$"):
        loss(np.zeros((2, 3, 4, 5)), np.zeros((2, 4, 5), int))
    with pytest.raises(ValueError, match=r"got \(2, 4\)$"):  # no hint where it cannot be that
        loss(np.zeros((2, 3, 5)), np.zeros((2, 4), int))
