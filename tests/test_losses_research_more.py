"""The research losses, continued (test_losses_research.py): the shared softplus/sigmoid,
poly's target read once (and float class labels refused with the fix), hinge's and
squared_hinge's ±1 refusal in their own peers' words, multiclass_sparsemax's empty batch."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from funcdl import losses
from funcdl.layers.sparsemax import Sparsemax

R = np.random.default_rng(3)



def test_softplus_sigmoid_closed_form_and_extremes() -> None:
    """funcdl._special.softplus_sigmoid, shared by soft_margin, ntxent and Mish: log(1 +
    e^v) and σ(v) against the closed forms in float64, and their limits."""
    from funcdl._special import softplus, softplus_sigmoid
    v = np.concatenate([R.normal(size=200) * 8, [-700.0, -30.0, -1e-9, 0.0, 1e-9, 30.0]])
    value, sig = softplus_sigmoid(v)
    np.testing.assert_allclose(value, [math.log1p(math.exp(t)) for t in v], rtol=1e-14,
                               atol=0)
    np.testing.assert_allclose(sig, [1 / (1 + math.exp(-t)) for t in v], rtol=1e-14, atol=0)
    np.testing.assert_array_equal(softplus(v), value)
    big = np.array([-np.inf, -1e308, 1e308, np.inf, np.nan])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # none on the way
        value, sig = softplus_sigmoid(big[:4])
    np.testing.assert_array_equal(value, [0, 0, 1e308, np.inf])
    np.testing.assert_array_equal(sig, [0, 0, 1, 1])
    assert np.isnan(softplus_sigmoid(big[4:])).all()
    value32, sig32 = softplus_sigmoid(np.float32([-100, 0, 100]))
    assert value32.dtype == sig32.dtype == np.float32


def test_soft_margin_is_the_shared_softplus() -> None:
    """soft_margin's value and slope are softplus_sigmoid's of v = -y x, bit for bit (one
    implementation; the sign of the slope, -y σ(v), checked against the closed form)."""
    from funcdl._special import softplus_sigmoid
    x = R.normal(size=(5, 3)) * 20
    y = np.where(R.random((5, 3)) < 0.5, -1.0, 1.0)
    value, pullback = losses.soft_margin.vjp(x, y, reduction="none")
    sp, sig = softplus_sigmoid(-y * x)
    np.testing.assert_array_equal(value, sp)
    np.testing.assert_array_equal(pullback(np.ones_like(value)), -y * sig)
    np.testing.assert_allclose(pullback(np.ones_like(value)), -y / (1 + np.exp(y * x)),
                               rtol=1e-13)


class _Counted:
    """A target read through ``__array__``, counting the reads."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.reads = a, 0

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self.reads += 1
        return self.a if dtype is None else self.a.astype(dtype)


@pytest.mark.parametrize("target", [np.array([0, 2, 1]), np.eye(3)[[0, 2, 1]],
                                    np.eye(3, dtype=int)[[0, 2, 1]]],
                         ids=["labels", "probabilities", "one-hot"])
def test_poly_reads_the_target_once(target: np.ndarray) -> None:
    z = R.normal(size=(3, 3))
    counted = _Counted(target)
    value = losses.poly_loss_cross_entropy(z, counted)
    assert counted.reads == 1
    assert value == losses.poly_loss_cross_entropy(z, np.array([0, 2, 1]))


def test_multiclass_sparsemax_empty_batch_and_one_shift() -> None:
    """No example: a 0 sum and an empty gradient, through the projection itself (no branch
    of its own); the projection's z is its input shifted by the row maximum."""
    from funcdl._simplex import shifted_simplex_projection, simplex_projection
    for shape in ((0, 3), (2, 0, 3)):
        value, pullback = losses.multiclass_sparsemax.vjp(np.zeros(shape),
                                                          np.zeros(shape[:-1], int),
                                                          reduction="sum")
        assert value == 0 and pullback(1.0).shape == shape
    x = R.normal(size=(4, 5)) * 3
    p, z = shifted_simplex_projection(x)
    np.testing.assert_array_equal(z, x - x.max(-1, keepdims=True))
    np.testing.assert_array_equal(p, simplex_projection(x))


@pytest.mark.parametrize(("loss", "words"), [
    (losses.hinge, "optax's hinge_loss"), (losses.squared_hinge, "Keras maps 0/1 labels"),
    (losses.soft_margin, "torch's convention")])
def test_pm_one_refusals_say_whose_convention(loss: Any, words: str) -> None:
    with pytest.raises(ValueError, match=r"target must hold 1 or -1 \(" + re.escape(words)
                       + r".*pass 2 \* target - 1"):
        loss(np.zeros((4, 3)), np.zeros((4, 3)))


def test_poly_float_class_labels_are_refused_with_the_fix() -> None:
    # the message of every integer-label loss (losses._base.label_error) since poly's own went
    with pytest.raises(TypeError, match=r"^poly_loss_cross_entropy: target must be integer "
                                        r"class labels of shape \(4,\), got dtype float64 "
                                        r".*must be integers.*: pass target\.astype\(int\)"):
        losses.poly_loss_cross_entropy(np.zeros((4, 3)), np.array([0.0, 1.0, 2.0, 1.0]))
    value = losses.poly_loss_cross_entropy(np.zeros((4, 3)), np.array([0, 1, 2, 1]))
    assert value == pytest.approx(math.log(3) + 2.0 * (1 - 1 / 3))


def test_sparsemax_layer_gradient_of_a_nan_row_is_nan_not_zero() -> None:
    """The one simplex vjp (_simplex, shared with sparse attention): a NaN row's gradient is
    NaN, as the softmax's, where `p > 0` had made it a silent 0; other rows unchanged."""
    layer = Sparsemax()
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 3.0], [0.0, 0.1, 0.2]])
    _, pullback = layer.vjp((), x)
    _, dx = pullback(np.array([[1.0, 2.0, 3.0]] * 3))
    assert np.isnan(dx[0]).all()
    np.testing.assert_array_equal(dx[1], 0.0)  # one entry in the support: a constant
    np.testing.assert_allclose(dx[2], [-1.0, 0.0, 1.0])  # all three in: dy - its mean
