"""Losses: finite-difference checks, known values against hand computation, PyTorch's
conventions (clamping, reductions), stability at extreme inputs, and bad inputs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from funcdl import losses, random
from funcdl.testing import check_loss

rng = np.random.default_rng(0)
CASES = [
    (losses.mse, rng.normal(size=(5, 1)), rng.normal(size=(5, 1))),
    (losses.mse, rng.normal(size=(1, 3)), rng.normal(size=(1, 3))),
    (losses.bce, rng.uniform(0.05, 0.95, (6, 2)), rng.uniform(size=(6, 2)) > 0.5),
    (losses.bce, rng.uniform(0.05, 0.95, (1, 1)), np.ones((1, 1))),
    (losses.bce_with_logits, 3 * rng.normal(size=(5, 2)), rng.uniform(size=(5, 2))),
    (losses.huber, 2 * rng.normal(size=(8,)), rng.normal(size=(8,))),
    (losses.softmax_cross_entropy, rng.normal(size=(5, 3)), np.array([0, 2, 1, 1, 0])),
    (losses.softmax_cross_entropy, rng.normal(size=(1, 4)), np.array([3])),
    (losses.softmax_cross_entropy, rng.normal(size=(4, 3)), np.eye(3)[[0, 2, 1, 1]]),
    (losses.softmax_cross_entropy, rng.normal(size=(2, 3, 4)), rng.integers(0, 4, (2, 3))),
]


@pytest.mark.parametrize(("loss", "pred", "target"), CASES,
                         ids=[f"{c[0].name}-{c[1].shape}" for c in CASES])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_check_loss(loss, pred, target, reduction):
    check_loss(loss, pred, target, reduction=reduction)
    check_loss(loss, pred.astype(np.float32), target, reduction=reduction, rtol=1e-3)


def test_huber_delta():
    check_loss(losses.huber, np.array([0.1, -3.0, 2.5]), np.zeros(3), delta=2.0)
    with pytest.raises(TypeError, match="huber: delta must be a real number, got '1'"):
        losses.huber(np.ones(2), np.zeros(2), delta="1")  # float('1') took it
    with pytest.raises(ValueError, match="huber: delta must be a number > 0, got 0"):
        losses.huber(np.ones(2), np.zeros(2), delta=0)
    d = np.array([0.5, -3.0, 40.0])
    assert losses.huber(d, np.zeros(3), delta=np.inf) == losses.mse(d, np.zeros(3)) / 2
    np.testing.assert_array_equal(losses.huber(d, np.zeros(3), delta=2.0, reduction="none"),
                                  [0.125, 4.0, 78.0])  # ½ d², then 2 (|d| - 1), exactly


def test_known_values_and_gradients():
    p, t = np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]])
    value, pullback = losses.mse.vjp(p, t)
    assert value == pytest.approx((1 + 4) / 2)
    np.testing.assert_allclose(pullback(1.0), [[1.0], [2.0]])  # 2 (p - t) / n
    np.testing.assert_allclose(pullback(3.0), [[3.0], [6.0]])
    assert losses.mse(p, t, reduction="sum") == pytest.approx(5.0)

    p = np.array([0.8, 0.4])
    t = np.array([1.0, 0.0])
    assert losses.bce(p, t) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    np.testing.assert_allclose(losses.bce.vjp(p, t)[1](), [-1 / 0.8 / 2, 1 / 0.6 / 2])

    z = np.array([2.0, -1.0])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert losses.bce_with_logits(z, t) == pytest.approx(expected)
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(losses.bce_with_logits.vjp(z, t)[1](), (sig - t) / 2)

    d = np.array([0.5, -3.0])
    assert losses.huber(d, np.zeros(2)) == pytest.approx((0.125 + 2.5) / 2)
    np.testing.assert_allclose(losses.huber.vjp(d, np.zeros(2))[1](), [0.25, -0.5])

    logits = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])
    assert losses.softmax_cross_entropy(logits, np.array([1, 0])) == pytest.approx(
        -(math.log(0.75) + math.log(0.5)) / 2)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy.vjp(logits, np.array([1, 0]))[1](),
        [[0.125, -0.125], [-0.25, 0.25]])


def test_integer_and_onehot_labels_agree():
    logits = random.normal(random.key(0), (6, 4), np.float64)
    labels = np.array([0, 3, 2, 1, 1, 0])
    a, pa = losses.softmax_cross_entropy.vjp(logits, labels)
    b, pb = losses.softmax_cross_entropy.vjp(logits, np.eye(4)[labels])
    assert a == pytest.approx(b)
    np.testing.assert_allclose(pa(), pb())
    # an integer one-hot, as torch.nn.functional.one_hot gives (int64): one-hot, not labels
    c, pc = losses.softmax_cross_entropy.vjp(logits, np.eye(4, dtype=np.int64)[labels])
    assert c == pytest.approx(a, rel=1e-15)
    np.testing.assert_allclose(pc(), pa(), rtol=1e-15)
    assert pc().dtype == np.float64
    f32 = logits.astype(np.float32)
    assert losses.softmax_cross_entropy.vjp(f32, np.eye(4, dtype=np.uint8)[labels])[1]().dtype \
        == np.float32


def test_bce_clamps_like_pytorch():
    # PyTorch clamps each log term at -100, so a certain wrong answer costs 100, not inf.
    assert losses.bce(np.array([0.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(100.0)
    assert losses.bce(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(0.0)
    g = losses.bce.vjp(np.array([0.0]), np.array([1.0]))[1]()
    assert np.isfinite(g).all() and g[0] == pytest.approx(-1e12)
    # to the last digit: PyTorch divides by its float32 epsilon, 1e-12 rounded to float32
    assert g[0] == -1 / float(np.float32(1e-12)) and g.dtype == np.float64


@pytest.mark.parametrize("v", [1e4, -1e4, 1e30, -1e30, 0.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_extreme_logits(v, dtype):
    z = np.array([[v, -v, 0.0]], dtype)
    for loss, target in [(losses.bce_with_logits, np.array([[1.0, 0.0, 1.0]])),
                         (losses.softmax_cross_entropy, np.array([1])),
                         (losses.mse, np.zeros((1, 3))), (losses.huber, np.zeros((1, 3)))]:
        if loss is losses.mse and abs(v) > 1e18:
            continue  # the square of 1e30 is out of float32 range: that is the value
        value, pullback = loss.vjp(z, target)
        g = pullback()
        assert np.isfinite(value) and np.all(np.isfinite(g)) and g.dtype == dtype
    big = losses.bce_with_logits(np.array([1e30, -1e30]), np.array([0.0, 1.0]))
    assert big == pytest.approx(1e30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", [losses.mse, losses.huber, losses.bce_with_logits])
def test_huge_finite_inputs_give_inf_without_a_warning(loss, dtype):
    # a difference, square or sum beyond the dtype's range is inf, as in PyTorch; warnings
    # are errors here, and DESIGN.md promises none at any input
    big = np.finfo(dtype).max
    pred = np.array([-big, big, big / 2], dtype)
    target = np.array([1.0, 0.0, 1.0], dtype) if loss is losses.bce_with_logits else -pred
    value, pullback = loss.vjp(pred, target)
    if loss is losses.bce_with_logits:  # terms max, max, 0: their mean is in range
        assert value == pytest.approx(float(big) / 3 * 2, rel=1e-6)
    else:  # d = p - t is inf
        assert value == np.inf
    assert not np.isnan(pullback()).any() and not np.isnan(pullback(g=0.5)).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_logits_the_whole_float_range_apart(dtype):
    big = np.finfo(dtype).max
    z = np.array([[big, -big, 0.0]], dtype)  # z - max overflows to -inf: no warning, no NaN
    for target in (np.array([0]), np.eye(3, dtype=dtype)[:1]):  # the likely class: loss 0
        value, pullback = losses.softmax_cross_entropy.vjp(z, target)
        assert value == 0.0 and np.array_equal(pullback(), np.zeros((1, 3), dtype))
    for target in (np.array([1]), np.eye(3, dtype=dtype)[1:2]):  # 2·max away: inf, not NaN
        value, pullback = losses.softmax_cross_entropy.vjp(z, target)
        assert value == np.inf
        np.testing.assert_array_equal(pullback(), [[1.0, -1.0, 0.0]])
    soft = np.array([[0.5, 0.0, 0.5]], dtype)  # a zero weight on the -inf class counts 0
    assert losses.softmax_cross_entropy(z, soft) == pytest.approx(0.5 * big)


def test_float32_stays_float32():
    p = np.ones((4, 1), np.float32) * 0.3
    t = np.ones((4, 1), np.float64)  # a float64 target must not promote the gradient
    for loss in (losses.mse, losses.bce, losses.bce_with_logits, losses.huber):
        value, pullback = loss.vjp(p, t)
        assert isinstance(value, float)
        assert pullback().dtype == np.float32


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("loss", [losses.mse, losses.bce, losses.bce_with_logits, losses.huber])
def test_shape_mismatch_is_refused_not_broadcast(loss):
    with pytest.raises(ValueError, match=rf"{loss.name}: pred has shape \(50, 1\) but target "
                                         r"has shape \(50,\).*reshape"):
        loss(np.full((50, 1), 0.5), np.zeros(50))


def test_label_out_of_range():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be in \[0, 3\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*-1"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"integer labels must have shape \(2,\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([[0], [1]]))


def test_bad_values_and_options():
    with pytest.raises(ValueError, match="bce: pred must be probabilities"):
        losses.bce(np.array([1.5]), np.array([1.0]))
    with pytest.raises(ValueError, match="reduction"):
        losses.mse(np.ones(2), np.ones(2), reduction="avg")
    with pytest.raises(TypeError, match="pred must be a float array"):
        losses.mse(np.ones(2, int), np.ones(2))
    with pytest.raises(ValueError, match="delta"):
        losses.huber(np.ones(2), np.ones(2), delta=0)
    _, pullback = losses.mse.vjp(np.ones(3), np.zeros(3), reduction="none")
    with pytest.raises(ValueError, match=r"cotangent of shape \(3,\)"):
        pullback(np.ones(2))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("loss", "pred", "target"), CASES,
                         ids=[f"{c[0].name}-{c[1].shape}" for c in CASES])
def test_the_pullback_of_a_reduced_loss_takes_one_number(loss, pred, target, reduction):
    _, pullback = loss.vjp(pred, target, reduction=reduction)
    np.testing.assert_array_equal(pullback(None), pullback())  # None: 1, as for 'none'
    np.testing.assert_allclose(pullback(np.float32(-2.0)), -2 * pullback(), rtol=1e-15)
    for bad, what in [(np.ones(3), r"shape \(3,\)"), (np.ones(1), r"shape \(1,\)"),
                      (True, "dtype bool"), ("1", "str")]:
        with pytest.raises(TypeError, match=rf"{loss.name}: pullback expected a scalar "
                                            rf"cotangent \(reduction='{reduction}'.*{what}"):
            pullback(bad)


@pytest.mark.parametrize("loss", [losses.mse, losses.bce, losses.bce_with_logits, losses.huber,
                                  losses.softmax_cross_entropy])
def test_the_mean_over_an_empty_batch_is_refused(loss):
    # NumPy and PyTorch give NaN (and a warning); 0 would hide an empty batch
    pred, target = np.zeros((0, 3)), np.zeros((0, 3))
    with pytest.raises(ValueError, match=rf"{loss.name}: reduction='mean' over an empty batch"):
        loss(pred, target)
    assert loss(pred, target, reduction="sum") == 0.0
    _, pullback = loss.vjp(pred, target, reduction="sum")
    assert pullback().shape == (0, 3)


@pytest.mark.parametrize("target", [-np.eye(3)[[0, 1, 2]], np.full((3, 3), 1.5)])
def test_cross_entropy_refuses_targets_that_are_not_probabilities(target):
    # a negative target gives a negative loss, silently (PyTorch does not check)
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: target must hold "
                                         r"probabilities in \[0, 1\]"):
        losses.softmax_cross_entropy(np.zeros((3, 3)), target)


# ---------------------------------------------------------------------------- pullbacks

@pytest.mark.parametrize(("loss", "want"), [(losses.mse, [np.inf, 1.0]),
                                            (losses.huber, [0.5, 0.5])])
def test_a_mean_that_overflowed_still_scales_each_gradient_by_one_over_n(loss, want):
    # the value is inf (the first d is), and the pullback takes another path then: each
    # gradient must still be divided by n = 2 (mse: 2 d / 2; huber: clip(d, -1, 1) / 2)
    big = np.finfo(np.float64).max
    value, pullback = loss.vjp(np.array([big, 1.0]), np.array([-big, 0.0]))
    assert value == np.inf
    np.testing.assert_array_equal(pullback(), want)
    np.testing.assert_array_equal(pullback(3.0), 3 * np.array(want))


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_a_gradient_past_the_float_range_is_inf_without_a_warning(reduction):
    # 2 d overflows float32 where d does not: inf, silently, as the value (warnings are
    # errors here)
    pred = np.array([0.75 * np.finfo(np.float32).max, 1.0], np.float32)
    value, pullback = losses.mse.vjp(pred, np.zeros(2, np.float32), reduction=reduction)
    assert np.max(value) == np.inf
    g = pullback() if reduction == "sum" else pullback(np.ones(2, np.float32))
    np.testing.assert_array_equal(g, [np.inf, 2.0])
    assert g.dtype == np.float32


def test_the_pullback_of_reduction_none_defaults_to_a_cotangent_of_ones():
    p, t = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    for loss in (losses.mse, losses.bce_with_logits, losses.huber):
        _, pullback = loss.vjp(p, t, reduction="none")
        np.testing.assert_array_equal(pullback(), pullback(np.ones((2, 2))))
        assert np.all(pullback() != 0)
    for target in (np.array([1, 0]), np.eye(2)[[1, 0]]):
        _, pullback = losses.softmax_cross_entropy.vjp(p, target, reduction="none")
        np.testing.assert_array_equal(pullback(), pullback(np.ones(2)))
        assert np.all(pullback() != 0)


def test_cross_entropy_of_targets_that_do_not_sum_to_one():
    # dz = softmax(z) Σ_c t_c - t: one-hot and label-smoothed targets sum to 1, which hides
    # the factor Σ_c t_c. softmax([0, log 3]) = [1/4, 3/4]; t = [1, 1] sums to 2.
    z, t = np.array([[0.0, math.log(3.0)]]), np.array([[1.0, 1.0]])
    value, pullback = losses.softmax_cross_entropy.vjp(z, t)
    assert value == pytest.approx(-(math.log(0.25) + math.log(0.75)))
    np.testing.assert_allclose(pullback(), [[2 * 0.25 - 1, 2 * 0.75 - 1]], rtol=1e-15)
    soft = random.uniform(random.key(1), (4, 3), 0.0, 1.0, np.float64)  # rows sum to ~1.5
    for reduction in ("mean", "sum", "none"):
        check_loss(losses.softmax_cross_entropy, random.normal(random.key(2), (4, 3), np.float64),
                   soft, reduction=reduction)


# ---------------------------------------------------------------------------- review, s15

@pytest.mark.parametrize(("logits_shape", "target", "says"), [
    ((4,), np.array([0, 1, 1, 0]), "bce_with_logits"),  # binary labels against one logit each
    ((2, 3), np.array([[1, 1, 1], [0, 0, 0]]), "integer labels of shape (2,)"),
    ((2, 3), np.array([[0, 2, 0], [1, 0, 0]]), "a single 1"),
    ((2, 2), np.array([[True, True], [False, True]]), "one-hot"),
    ((2, 3), np.array([[-1, 1, 1], [0, 1, 0]]), "a single 1"),  # sums to 1, not one-hot
    # binary labels with a single 1, or all 1s against one class, pass a one-hot check: it
    # read them as one example of 4 classes, and as a loss of 0 with zero grads
    ((4,), np.array([0, 0, 1, 0]), "bce_with_logits"),
    ((4, 1), np.ones((4, 1), int), "is refused with one class"),
    ((3, 1), np.array([[0], [1], [0]]), "is refused with one class"),
    ((3,), np.array([0, 0, 1]), "for one example of 3 classes pass its label as an int"),
    ((3,), np.array([4, 0, 7]), "is refused with 1-D logits"),
])
def test_an_integer_target_of_the_logits_shape_must_be_one_hot(logits_shape, target, says):
    # it was read as a multi-hot target: (4,) logits, one example of 4 classes, trained on
    # without a word
    with pytest.raises(ValueError, match=re.escape(says)):
        losses.softmax_cross_entropy(np.zeros(logits_shape, np.float32), target)
    z = np.array([1.0, 2.0, 3.0])  # one example, unbatched: its label, or its probabilities
    for t in (2, np.array(2), np.array([0.0, 0.0, 1.0])):
        assert losses.softmax_cross_entropy(z, t) == pytest.approx(
            np.log(np.exp(z).sum()) - 3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["sce-labels", "sce-one-hot", "huber", "bce_with_logits",
                                  "mse"])
def test_a_mean_within_range_is_finite_when_the_sum_is_not(case, dtype):
    # two terms of ~max each: their sum overflows the dtype, their mean does not (and no
    # "overflow in reduce" warning: warnings are errors here)
    big = np.finfo(dtype).max * 0.9
    if case.startswith("sce"):
        z = np.array([[0.0, -big], [-big, 0.0]], dtype)
        t = np.array([1, 0]) if case == "sce-labels" else np.eye(2, dtype=dtype)[[1, 0]]
        value, pullback = losses.softmax_cross_entropy.vjp(z, t)
    elif case == "huber":
        value, pullback = losses.huber.vjp(np.array([0.0, big], dtype), np.array([big, 0.0], dtype))
    elif case == "mse":  # terms of 0.9 max: (sqrt(0.9 max))²; its sum under mse's errstate
        root = np.sqrt(np.array(big, dtype))
        value, pullback = losses.mse.vjp(np.array([root, -root], dtype), np.zeros(2, dtype))
    else:
        value, pullback = losses.bce_with_logits.vjp(np.array([-big, big], dtype),
                                                     np.array([1.0, 0.0], dtype))
    assert value == pytest.approx(float(big), rel=1e-6)
    assert np.isfinite(pullback()).all()
    total = losses.huber(np.array([0.0, big], dtype), np.array([big, 0.0], dtype),
                         reduction="sum")
    assert total == np.inf  # a sum past the range stays inf, as PyTorch's


@pytest.mark.parametrize("target", [None, "abc", {"a": 1}])
@pytest.mark.parametrize("loss", [losses.mse, losses.bce, losses.bce_with_logits, losses.huber])
def test_a_target_that_is_not_numeric_is_named_as_such(loss, target):
    with pytest.raises(TypeError, match=rf"{loss.name}: target must be a numeric array, got "
                                        rf"{type(target).__name__}"):
        loss(np.full((2, 1), 0.5, np.float32), target)


@pytest.mark.parametrize("loss", [losses.mse, losses.bce, losses.bce_with_logits, losses.huber,
                                  losses.softmax_cross_entropy])
def test_an_unknown_keyword_names_the_loss(loss):
    # Python's message named the private function: "_mse() got an unexpected keyword"
    with pytest.raises(TypeError, match=rf"^losses\.{loss.name}\(\) got an unexpected "
                                        rf"keyword argument 'reduce'"):
        loss(np.full((2, 2), 0.5), np.zeros((2, 2)), reduce="sum")


# ---------------------------------------------------------------------------- edges, s33

def test_bce_with_logits_keeps_its_digits_for_targets_near_one():
    # max(z, 0) - z t cancelled for z > 0: float32, z = 20, t = 0.999 was 3.6e-5 off, and
    # t = 0.99999 at z = 1e4 gave 0.1006 for 0.1001
    z = np.array([20.0, 1e4, -20.0, 3.0], np.float32)
    for t in (0.999, 0.99999, 1e-6):
        tt = np.full(4, t, np.float32)
        z64, t64 = z.astype(np.float64), tt.astype(np.float64)
        exact = np.maximum(z64, 0) - z64 * t64 + np.log1p(np.exp(-np.abs(z64)))
        got = losses.bce_with_logits(z, tt, reduction="none")
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, exact, rtol=2e-6)


def test_huber_delta_beyond_float32_is_the_quadratic_everywhere():
    # 1e39 passed the finite check but is inf in float32: inf · 0 made the loss NaN
    p, t = np.array([0.5, 2.0], np.float32), np.zeros(2, np.float32)
    for delta in (1e39, 1e300, np.inf):
        assert losses.huber(p, t, delta=delta) == pytest.approx(0.5 * (0.25 + 4.0) / 2)
    assert losses.huber(p.astype(np.float64), t.astype(np.float64),
                        delta=1e39) == pytest.approx(0.5 * (0.25 + 4.0) / 2)


def test_label_smoothing_over_logits_far_apart_stays_finite():
    # Σ_c log p_c overflowed float32 before it was scaled by ε/C (labels; the one-hot
    # target's path scaled first)
    z = np.array([[1e38, -1e38, -1e38, -1e38]], np.float32)
    by_label = losses.softmax_cross_entropy(z, np.array([0]), label_smoothing=0.1)
    by_prob = losses.softmax_cross_entropy(z, np.eye(4, dtype=np.float32)[[0]],
                                           label_smoothing=0.1)
    assert np.isfinite(by_label) and by_label == pytest.approx(by_prob, rel=1e-6)
    assert by_label == pytest.approx(0.1 * 3 / 4 * 2e38, rel=1e-6)


@pytest.mark.parametrize("loss", [losses.softmax_cross_entropy, losses.poly_loss_cross_entropy])
@pytest.mark.parametrize("target", [np.array([[0.0], [1.0], [1.0]], np.float32),
                                    np.array([0, 0, 0]),  # labels: all of the one class
                                    np.array([[1.0], [1.0], [1.0]]),
                                    np.array([[0.3], [0.9], [1.0]])])
def test_float_targets_against_one_class_are_refused_as_integer_ones_are(loss, target):
    # the disk data's (N, 1) float labels into a cross-entropy: a loss of 0 and zero grads
    # whatever the logits, trained on without a word (torch too); the ints were refused
    with pytest.raises(ValueError, match=r"logits of shape \(3, 1\) hold one class, where the "
                                         r"loss is 0 whatever .*use bce_with_logits"):
        loss(np.array([[0.5], [-2.0], [3.0]], np.float32), target)


def test_a_public_losss_vjp_and_a_loss_made_from_it_pickle():
    # its qualified name, losses.huber, named no attribute of its module: PicklingError for
    # huber.vjp, a partial of it, and a Loss of one (a sweep's config goes to workers pickled)
    import functools
    import pickle

    made = losses.Loss("h05", functools.partial(losses.huber.vjp, delta=0.5))
    for obj in (losses.huber.vjp, made, losses.bound(functools.partial(losses.huber,
                                                                       delta=0.5))):
        back = pickle.loads(pickle.dumps(obj))
        pred, target = np.array([0.0, 2.0]), np.zeros(2)
        want = obj(pred, target)[0] if obj is losses.huber.vjp else obj(pred, target)
        got = back(pred, target)[0] if obj is losses.huber.vjp else back(pred, target)
        assert got == want


def test_a_users_loss_shows_its_constructor_not_a_public_name():
    # it showed as funcdl.losses.my_mse, a name funcdl.losses does not have (a probe)
    def vjp(pred, target):
        return losses.mse.vjp(pred, target)

    assert repr(losses.mse) == "funcdl.losses.mse"
    assert repr(losses.Loss("my_mse", vjp)).startswith("Loss('my_mse', ")
