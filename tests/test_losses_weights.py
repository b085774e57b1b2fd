"""softmax_cross_entropy's class weights and ignore_index, as torch's CrossEntropyLoss, and
bce_with_logits's weight and pos_weight, as its BCEWithLogitsLoss: by hand, by finite
differences, against torch where it is installed, and their bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from funcdl import losses, testing

CE = losses.softmax_cross_entropy
RNG = np.random.default_rng(0)
Z = RNG.normal(size=(4, 3)) * 2
Y = np.array([0, 2, 1, 2])
W = np.array([0.5, 2.0, 1.5])


def _logp(z):
    s = z - z.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def test_weights_by_hand_mean_divides_by_the_labels_weights():
    logp = _logp(Z)
    terms = -W[Y] * logp[np.arange(4), Y]
    assert CE(Z, Y, weight=W) == pytest.approx(terms.sum() / W[Y].sum(), rel=1e-13)
    assert CE(Z, Y, weight=W, reduction="sum") == pytest.approx(terms.sum(), rel=1e-13)
    np.testing.assert_allclose(CE(Z, Y, weight=W, reduction="none"), terms, rtol=1e-13)
    # dz = w_y (p - e_y) / Σ w_y
    p = np.exp(logp)
    want = W[Y][:, None] * (p - np.eye(3)[Y]) / W[Y].sum()
    np.testing.assert_allclose(CE.vjp(Z, Y, weight=W)[1](), want, rtol=1e-12)


def test_ignored_examples_count_for_nothing():
    y = np.array([0, -100, 1, -100])
    logp = _logp(Z)
    value, pullback = CE.vjp(Z, y, ignore_index=-100)
    assert value == pytest.approx(-(logp[0, 0] + logp[2, 1]) / 2, rel=1e-13)
    g = pullback()
    assert not g[[1, 3]].any()
    np.testing.assert_allclose(g[[0, 2]], (np.exp(logp)[[0, 2]] - np.eye(3)[[0, 1]]) / 2,
                               rtol=1e-12)
    # a label equal to ignore_index is not checked against the classes; others are
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\) \(or the ignore_index, "
                                         r"-100\), got values in \[-1, 1\]"):
        CE(Z, np.array([0, -100, 1, -1]), ignore_index=-100)


def test_smoothing_weights_each_class_term_as_torch():
    eps, logp = 0.2, _logp(Z)
    per = (1 - eps) * -W[Y] * logp[np.arange(4), Y] + eps / 3 * -(W * logp).sum(-1)
    assert CE(Z, Y, weight=W, label_smoothing=eps) == pytest.approx(per.sum() / W[Y].sum(),
                                                                     rel=1e-13)


@pytest.mark.parametrize("kw", [{"weight": W}, {"ignore_index": 2},
                                {"weight": W, "ignore_index": 1, "label_smoothing": 0.1}])
def test_weighted_and_ignoring_losses_pass_check_loss(kw):
    testing.check_loss(losses.Loss("ce", lambda p, t: CE.vjp(p, t, **kw)), Z, Y)
    probs = RNG.dirichlet(np.ones(3), 4)
    if "ignore_index" not in kw:
        testing.check_loss(losses.Loss("ce", lambda p, t: CE.vjp(p, t, **kw)), Z, probs)


def test_float32_stays_float32_with_weights():
    z = Z.astype(np.float32)
    value, pullback = CE.vjp(z, Y, weight=W, ignore_index=1)
    assert pullback().dtype == np.float32 and isinstance(value, float)


@pytest.mark.parametrize("kw, error, match", [
    ({"weight": np.ones(2)}, ValueError, r"weight must have shape \(3,\), one per class "
                                         r"\(as torch's\), got shape \(2,\)"),
    # a 0-d weight broadcast to (3,) and then failed as a bare IndexError (a probe)
    ({"weight": np.float32(2)}, ValueError, r"weight must have shape \(3,\), one per class "
                                            r"\(as torch's\), got shape \(\)"),
    ({"weight": np.array([1.0, -1.0, 1.0])}, ValueError, r"weight must be finite, >= 0"),
    ({"weight": np.array([1.0, np.nan, 1.0])}, ValueError, r"weight must be finite"),
    ({"weight": np.array(["a", "b", "c"])}, TypeError, r"weight must hold real numbers, got "
                                                       r"dtype <U1"),
    ({"ignore_index": 1.5}, TypeError, r"ignore_index must be an int"),
])
def test_bad_weights_and_ignore_index_are_named(kw, error, match):
    with pytest.raises(error, match=rf"softmax_cross_entropy: {match}"):
        CE(Z, Y, **kw)


def test_weights_beside_a_pred_in_the_other_byte_order():
    """A big-endian pred with weights raised KeyError: dtype('>f4') (a probe); the same
    value as the native pred now."""
    z = Z.astype(np.float32)
    want = CE(z, Y, weight=W)
    assert CE(z.astype(">f4"), Y, weight=W) == want
    bce = losses.bce_with_logits
    assert bce(z.astype(">f4"), Z > 0, pos_weight=W) == bce(z, Z > 0, pos_weight=W)


def test_ignore_index_with_probabilities_and_everything_ignored_are_refused():
    with pytest.raises(ValueError, match=r"ignore_index=0 applies to integer labels of "
                                         r"shape \(4,\); a target of probabilities or "
                                         r"one-hot rows"):
        CE(Z, RNG.dirichlet(np.ones(3), 4), ignore_index=0)
    with pytest.raises(ValueError, match=r"divides by the weight of the examples not "
                                         r"ignored, which is 0"):
        CE(Z, np.full(4, 5), ignore_index=5)
    assert CE(Z, np.full(4, 5), ignore_index=5, reduction="sum") == 0.0


def test_against_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(2, 3, 5)) * 3  # (N, d, C); torch takes (N, C, d)
    y = RNG.integers(0, 5, (2, 3))
    y[0, 1] = 7
    w = RNG.uniform(0.2, 2.0, 5)
    for use_w, smooth, reduction in itertools.product([False, True], [0.0, 0.2],
                                                      ["mean", "sum", "none"]):
        kw = {"ignore_index": 7, "label_smoothing": smooth, "reduction": reduction}
        value, pullback = CE.vjp(z, y, weight=w if use_w else None, **kw)
        zt = torch.tensor(np.moveaxis(z, -1, 1), requires_grad=True)
        lt = torch.nn.functional.cross_entropy(
            zt, torch.tensor(y), weight=torch.tensor(w) if use_w else None, **kw)
        cot = RNG.normal(size=tuple(lt.shape))
        lt.backward(torch.tensor(cot) if reduction == "none" else None)
        g = pullback(cot) if reduction == "none" else pullback()
        np.testing.assert_allclose(value, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, np.moveaxis(zt.grad.numpy(), 1, -1), rtol=1e-11,
                                   atol=1e-15)


# ---------------------------------------------------------------- bce_with_logits's weights

BCE = losses.bce_with_logits
ZB = RNG.normal(size=(5, 3)) * 3
TB = RNG.uniform(size=(5, 3))
PW = np.array([0.5, 2.0, 4.0])


def test_pos_weight_weighs_the_positive_term_by_hand():
    log_sig, log_one_minus = -np.logaddexp(0, -ZB), -np.logaddexp(0, ZB)
    per = -(PW * TB * log_sig + (1 - TB) * log_one_minus)
    np.testing.assert_allclose(BCE(ZB, TB, pos_weight=PW, reduction="none"), per, rtol=1e-12)
    sig = 1 / (1 + np.exp(-ZB))
    np.testing.assert_allclose(BCE.vjp(ZB, TB, pos_weight=PW)[1](),
                               (sig * (PW * TB + 1 - TB) - PW * TB) / ZB.size, rtol=1e-12)
    w = RNG.uniform(0.1, 2.0, (5, 3))
    assert BCE(ZB, TB, weight=w) == pytest.approx(
        (w * BCE(ZB, TB, reduction="none")).mean(), rel=1e-13)
    testing.check_loss(losses.Loss("bce", lambda p, t: BCE.vjp(p, t, pos_weight=PW,
                                                               weight=w)), ZB, TB)


@pytest.mark.parametrize("kw, match", [
    ({"pos_weight": np.ones(4)}, r"pos_weight must broadcast to shape \(5, 3\) \(one per "
                                 r"class, shape \(3,\), say\), got shape \(4,\)"),
    ({"weight": np.ones((2, 5, 3))}, r"weight must broadcast"),
    ({"pos_weight": -PW}, r"pos_weight must be finite, >= 0"),
])
def test_bad_bce_weights_are_named(kw, match):
    with pytest.raises(ValueError, match=rf"bce_with_logits: {match}"):
        BCE(ZB, TB, **kw)


def test_bce_weights_against_torch():
    torch = pytest.importorskip("torch")
    w = RNG.uniform(0.1, 2.0, 3)
    for pw, wt, reduction in itertools.product([None, PW], [None, w], ["mean", "sum", "none"]):
        value, pullback = BCE.vjp(ZB, TB, reduction=reduction, pos_weight=pw, weight=wt)
        zt = torch.tensor(ZB, requires_grad=True)
        lt = torch.nn.functional.binary_cross_entropy_with_logits(
            zt, torch.tensor(TB), reduction=reduction,
            pos_weight=None if pw is None else torch.tensor(pw),
            weight=None if wt is None else torch.tensor(wt))
        cot = RNG.normal(size=tuple(lt.shape))
        lt.backward(torch.tensor(cot) if reduction == "none" else None)
        g = pullback(cot) if reduction == "none" else pullback()
        np.testing.assert_allclose(value, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-11, atol=1e-15)


# ---------------------------------------------------------------- l1 and smooth_l1 (torch's)

P1, T1 = RNG.normal(size=(4, 5)) * 2, RNG.normal(size=(4, 5))


def test_l1_and_smooth_l1_by_hand():
    d = P1 - T1
    assert losses.l1(P1, T1) == pytest.approx(np.abs(d).mean(), rel=1e-13)
    np.testing.assert_array_equal(losses.l1.vjp(P1, T1, reduction="sum")[1](), np.sign(d))
    for beta in (0.5, 2.0):
        per = np.where(np.abs(d) < beta, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta)
        assert losses.smooth_l1(P1, T1, beta=beta) == pytest.approx(per.mean(), rel=1e-13)
        np.testing.assert_allclose(losses.smooth_l1.vjp(P1, T1, reduction="sum", beta=beta)[1](),
                                   np.clip(d / beta, -1, 1), rtol=1e-13)
        # huber with delta = beta, divided by beta: not huber itself, as a port might think
        assert losses.smooth_l1(P1, T1, beta=beta) == pytest.approx(
            losses.huber(P1, T1, delta=beta) / beta, rel=1e-13)
    assert losses.smooth_l1(P1, T1, beta=0.0) == losses.l1(P1, T1)
    testing.check_loss(losses.smooth_l1, P1, T1 + 0.3)
    testing.check_loss(losses.l1, P1, T1 + 0.3)
    with pytest.raises(ValueError, match=r"smooth_l1: beta must be a finite number >= 0"):
        losses.smooth_l1(P1, T1, beta=-1.0)
    # a beta that is 0 in float32 (below ~7e-46) is l1 there, as torch's 0: it was 0/0,
    # a NaN loss and gradient, silently
    p32, t32 = P1.astype(np.float32), T1.astype(np.float32)
    value, pullback = losses.smooth_l1.vjp(p32, t32, beta=1e-46)
    assert value == losses.l1(p32, t32)
    np.testing.assert_array_equal(pullback(), losses.l1.vjp(p32, t32)[1]())


def test_l1_and_smooth_l1_against_torch():
    torch = pytest.importorskip("torch")
    cases = [(losses.l1, {}, torch.nn.functional.l1_loss)] + [
        (losses.smooth_l1, {"beta": b}, torch.nn.functional.smooth_l1_loss)
        for b in (0.0, 0.5, 3.0)]
    for (loss, kw, ref), reduction in itertools.product(cases, ["mean", "sum", "none"]):
        value, pullback = loss.vjp(P1, T1, reduction=reduction, **kw)
        pt = torch.tensor(P1, requires_grad=True)
        lt = ref(pt, torch.tensor(T1), reduction=reduction, **kw)
        cot = RNG.normal(size=tuple(lt.shape))
        lt.backward(torch.tensor(cot) if reduction == "none" else None)
        g = pullback(cot) if reduction == "none" else pullback()
        np.testing.assert_allclose(value, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, pt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_weights_at_the_edges_of_float32_stay_quiet_and_right():
    # float32 weights of 1e37 summed past float32's range: the loss was 0 and dz 0, with an
    # overflow warning; weights beyond float32 were cast to inf with one
    f32 = np.float32
    z = RNG.normal(size=(100, 3)).astype(f32)
    y = np.arange(100) % 3
    big = f32([1e37] * 3)  # uniform weights cancel in the mean
    assert CE(z, y, weight=big) == pytest.approx(CE(z, y), rel=1e-6)
    np.testing.assert_allclose(CE.vjp(z, y, weight=big)[1](), CE.vjp(z, y)[1](), atol=1e-7)
    with pytest.raises(ValueError, match=r"within float32's range"):
        CE(z, y, weight=[1e300, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"pos_weight must be finite, >= 0 and within "
                                         r"float32's range"):
        BCE(np.zeros(2, f32), np.ones(2, f32), pos_weight=1e300)
    # an infinite loss from finite, huge inputs: no warning (pytest turns them into errors)
    value, pullback = BCE.vjp(f32([-1e38]), f32([1]), pos_weight=f32(3e38), weight=f32(3e38))
    assert value == np.inf and pullback(1.0).dtype == f32
    value, pullback = CE.vjp(f32([[3e38, -3e38, 0]]), [1], label_smoothing=0.5,
                             weight=f32([3e38] * 3))
    assert value == np.inf and pullback().dtype == f32


def test_float32_weights_with_float64_predictions_give_no_warning():
    # the range check compared float64's maximum with a float32 max, cast to float32 (NEP
    # 50): an overflow warning, an error under pytest, and check_loss re-runs in float64
    w32 = W.astype(np.float32)
    assert CE(Z, Y, weight=w32) == pytest.approx(CE(Z, Y, weight=W), rel=1e-7)
    lp = Z - np.log(np.exp(Z).sum(-1, keepdims=True))
    assert losses.nll(lp, Y, weight=w32) == pytest.approx(losses.nll(lp, Y, weight=W),
                                                          rel=1e-7)
    t = (RNG.random((4, 3)) > 0.5).astype(np.float32)
    for kw in ({"weight": w32}, {"pos_weight": w32}):
        losses.bce_with_logits(Z, t.astype(np.float64), **kw)
        testing.check_loss(losses.bce_with_logits, Z.astype(np.float32), t, **kw)


def test_a_class_of_weight_zero_counts_for_nothing_even_at_an_infinite_log_p():
    # logits 6e38 apart overflow float32's -log p to inf; 0 · inf was NaN, with a warning
    z = np.array([[3e38, -3e38], [1.0, 2.0]], np.float32)
    w = np.array([1.0, 0.0], np.float32)
    y = np.array([1, 0])
    per = CE(z, y, weight=w, reduction="none")
    assert per[0] == 0 and np.isfinite(per).all()
    lp = np.array([[-np.inf, 0.0], [-1.0, -0.5]], np.float32)
    assert losses.nll(lp, np.array([0, 1]), weight=w[::-1].copy(), reduction="sum") == 0.5
    smoothed = CE(z, y, weight=w, label_smoothing=0.1, reduction="none")
    assert smoothed[0] == 0 and np.isfinite(smoothed).all()


@pytest.mark.parametrize("dtype, z0", [(np.float64, -1e308), (np.float32, -3e38)])
def test_an_element_of_weight_zero_counts_for_nothing_even_where_pos_weight_overflows(
        dtype, z0):
    # pos_weight times a huge negative logit overflows that element's term to inf, and
    # weight 0 times inf was NaN: a NaN loss from finite inputs
    z = np.array([z0, 1.0], dtype)
    t = np.array([1.0, 0.0], dtype)
    w = np.array([0.0, 1.0], dtype)
    a = np.array([10.0, 10.0], dtype)
    per = losses.bce_with_logits(z, t, weight=w, pos_weight=a, reduction="none")
    assert per.dtype == dtype and per[0] == 0
    assert per[1] == pytest.approx(np.log1p(np.exp(1.0)), rel=1e-6)
    assert losses.bce_with_logits(z, t, weight=w, pos_weight=a) == pytest.approx(per[1] / 2)
    value, pullback = losses.bce_with_logits.vjp(z, t, weight=w, pos_weight=a)
    assert value == pytest.approx(per[1] / 2)
    dz = pullback(1.0)
    assert np.isfinite(dz).all() and dz[0] == 0
