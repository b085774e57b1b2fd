"""losses.sigmoid_focal, hinge_embedding, soft_margin, multi_margin, multilabel_soft_margin,
multilabel_margin and log_cosh: against naive per-row NumPy references (value and
gradient), by finite differences for every option and reduction, torch's subgradient at
the kinks, float32 kept, extreme inputs without warnings or NaN, bad inputs named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import losses, testing

FOCAL = losses.sigmoid_focal
LOGCOSH = losses.log_cosh
HINGE = losses.hinge_embedding
SOFT = losses.soft_margin
MULTI = losses.multi_margin
MLSOFT = losses.multilabel_soft_margin
MLM = losses.multilabel_margin

RNG = np.random.default_rng(3)
X = RNG.normal(size=(6, 4)) * 1.5
T = RNG.normal(size=(6, 4))
PROB = RNG.random((6, 4))
HARD = (RNG.random((6, 4)) > 0.5).astype(float)
SIGNS = 2 * HARD - 1
LABELS = RNG.integers(0, 4, 6)
W = np.array([0.5, 2.0, 0.0, 3.0])
LISTS = np.array([[3, 0, -1, 1], [0, 0, -1, -1], [-1, 2, 2, 2], [1, 2, 3, 0], [2, -1, 1, -1],
                  [1, 3, -1, -1]])
REDUCTIONS = ("mean", "sum", "none")


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# ---------------------------------------------------------------------------- naive references
# Each returns (per-example losses, d(Σ per)/dpred), written from the definitions, loops and all.

def naive_focal(z, t, alpha, gamma):
    p = _sigmoid(z)
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    m = 1 - (p * t + (1 - p) * (1 - t))
    at = 1.0 if alpha is None or alpha < 0 else alpha * t + (1 - alpha) * (1 - t)
    dm = (1 - 2 * t) * p * (1 - p)
    grad = at * ((p - t) * m**gamma + (ce * gamma * m ** (gamma - 1) * dm if gamma else 0))
    return at * ce * m**gamma, grad


def naive_hinge(x, y, margin):
    per, grad = np.zeros_like(x), np.zeros_like(x)
    for i in np.ndindex(x.shape):
        if y[i] == 1:
            per[i], grad[i] = x[i], 1.0
        elif margin - x[i] >= 0:
            per[i], grad[i] = margin - x[i], -1.0
    return per, grad


def naive_soft_margin(x, y):
    per = np.log(1 + np.exp(-y * x))
    return per, -y * np.exp(-y * x) / (1 + np.exp(-y * x))


def naive_multi_margin(x, y, p, margin, w):
    n, c = x.shape
    per, grad = np.zeros(n), np.zeros_like(x)
    for r in range(n):
        wy = 1.0 if w is None else w[y[r]]
        for i in range(c):
            z = margin - x[r, y[r]] + x[r, i]
            if i != y[r] and z > 0:
                per[r] += wy * z**p / c
                d = wy * (1 if p == 1 else 2 * z) / c
                grad[r, i] += d
                grad[r, y[r]] -= d
    return per, grad


def naive_multilabel_soft_margin(x, t, w):
    p = _sigmoid(x)
    w = np.ones(x.shape[-1]) if w is None else w
    per = -(w * (t * np.log(p) + (1 - t) * np.log(1 - p))).sum(-1) / x.shape[-1]
    return per, w * (p - t) / x.shape[-1]


def naive_multilabel_margin(x, y):
    n, c = x.shape
    per, grad = np.zeros(n), np.zeros_like(x)
    for r in range(n):
        listed = []
        for j in y[r]:
            if j < 0:
                break
            listed.append(j)
        for j in listed:
            for i in range(c):
                z = 1 - x[r, j] + x[r, i]
                if i not in listed and z > 0:
                    per[r] += z / c
                    grad[r, i] += 1 / c
                    grad[r, j] -= 1 / c
    return per, grad


def naive_log_cosh(d):
    return np.array([math.log(math.cosh(v)) for v in d.ravel()]).reshape(d.shape), np.tanh(d)


CASES = [  # id, loss, pred, target, kwargs, naive per-example reference
    ("focal", FOCAL, X, PROB, {}, lambda: naive_focal(X, PROB, 0.25, 2.0)),
    ("focal-hard-no-alpha", FOCAL, X, HARD, {"alpha": -1.0, "gamma": 0.5},
     lambda: naive_focal(X, HARD, None, 0.5)),
    ("focal-none-gamma3", FOCAL, X, PROB, {"alpha": None, "gamma": 3.0},
     lambda: naive_focal(X, PROB, None, 3.0)),
    ("focal-alpha0.9-gamma0", FOCAL, X, HARD, {"alpha": 0.9, "gamma": 0.0},
     lambda: naive_focal(X, HARD, 0.9, 0.0)),
    ("hinge", HINGE, X, SIGNS, {}, lambda: naive_hinge(X, SIGNS, 1.0)),
    ("hinge-margin", HINGE, X, SIGNS, {"margin": 2.5}, lambda: naive_hinge(X, SIGNS, 2.5)),
    ("hinge-negative-margin", HINGE, X, SIGNS, {"margin": -0.7},
     lambda: naive_hinge(X, SIGNS, -0.7)),
    ("soft_margin", SOFT, X, SIGNS, {}, lambda: naive_soft_margin(X, SIGNS)),
    ("multi_margin", MULTI, X, LABELS, {}, lambda: naive_multi_margin(X, LABELS, 1, 1.0, None)),
    ("multi_margin-p2-w", MULTI, X, LABELS, {"p": 2, "margin": 0.6, "weight": W},
     lambda: naive_multi_margin(X, LABELS, 2, 0.6, W)),
    ("multi_margin-p1-w", MULTI, X, LABELS, {"margin": 2.0, "weight": W},
     lambda: naive_multi_margin(X, LABELS, 1, 2.0, W)),
    ("multilabel_soft_margin", MLSOFT, X, PROB, {},
     lambda: naive_multilabel_soft_margin(X, PROB, None)),
    ("multilabel_soft_margin-w", MLSOFT, X, HARD, {"weight": W},
     lambda: naive_multilabel_soft_margin(X, HARD, W)),
    ("multilabel_margin", MLM, X * 0.4, LISTS, {}, lambda: naive_multilabel_margin(X * 0.4,
                                                                                  LISTS)),
    ("log_cosh", LOGCOSH, X, T, {}, lambda: naive_log_cosh(X - T)),
]
ROWWISE = ("multi_margin", "multilabel")  # one loss per example, not per element


@pytest.mark.parametrize(("loss", "pred", "target", "kw", "naive"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_against_naive_reference_every_reduction(loss, pred, target, kw, naive):
    per, grad = naive()
    n = per.size  # the mean divides by the examples (rows) or the elements
    np.testing.assert_allclose(loss(pred, target, reduction="none", **kw), per, rtol=1e-12,
                               atol=1e-15)
    assert loss(pred, target, **kw) == pytest.approx(per.sum() / n, rel=1e-12)
    assert loss(pred, target, reduction="sum", **kw) == pytest.approx(per.sum(), rel=1e-12)
    # the gradient's sign and every factor: 1/n for the mean, the cotangent's, per row
    np.testing.assert_allclose(loss.vjp(pred, target, **kw)[1](), grad / n, rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(loss.vjp(pred, target, reduction="sum", **kw)[1](3.0),
                               3 * grad, rtol=1e-12, atol=1e-15)
    c = RNG.normal(size=per.shape)
    got = loss.vjp(pred, target, reduction="none", **kw)[1](c)
    np.testing.assert_allclose(got, grad * (c[..., None] if per.ndim < grad.ndim else c),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("loss", "pred", "target", "kw"),
                         [pytest.param(*c[1:5], id=c[0]) for c in CASES])
def test_finite_differences(loss, pred, target, kw, reduction):
    testing.check_loss(loss, pred, target, reduction=reduction, **kw)


def test_finite_differences_rank3_and_single_example():
    x3 = RNG.normal(size=(2, 3, 4))
    testing.check_loss(MULTI, x3, RNG.integers(0, 4, (2, 3)), reduction="none", p=2)
    testing.check_loss(MLSOFT, x3, RNG.random((2, 3, 4)), weight=W)
    testing.check_loss(MLM, x3, LISTS[:6].reshape(2, 3, 4), reduction="none")
    # one example: scores (C,) against a label () or a list (C,), as torch's 1-D form
    assert MULTI(X[0], LABELS[0]) == pytest.approx(naive_multi_margin(X[:1], LABELS[:1], 1, 1.0,
                                                                      None)[0][0], rel=1e-14)
    assert MLM(X[0], LISTS[0]) == pytest.approx(naive_multilabel_margin(X[:1], LISTS[:1])[0][0],
                                                rel=1e-14)


# ---------------------------------------------------------------------------- identities

def test_focal_with_gamma_0_is_bce_with_logits():
    for t in (PROB, HARD):
        for alpha in (-1.0, None, -0.25):
            np.testing.assert_allclose(FOCAL(X, t, reduction="none", alpha=alpha, gamma=0.0),
                                       losses.bce_with_logits(X, t, reduction="none"),
                                       rtol=1e-15)
            # σ(z) formed another way: to rounding
            np.testing.assert_allclose(FOCAL.vjp(X, t, alpha=alpha, gamma=0)[1](),
                                       losses.bce_with_logits.vjp(X, t)[1](), rtol=1e-14,
                                       atol=1e-18)
        # alpha weighs the positives' term by alpha, the negatives' by 1 - alpha
        at = 0.3 * t + 0.7 * (1 - t)
        np.testing.assert_allclose(FOCAL(X, t, reduction="none", alpha=0.3, gamma=0.0),
                                   at * losses.bce_with_logits(X, t, reduction="none"), rtol=1e-14)
    # the default alpha is torchvision's 0.25, the default reduction funcdl's mean
    assert FOCAL(X, HARD) == pytest.approx(naive_focal(X, HARD, 0.25, 2.0)[0].mean(), rel=1e-13)


def test_focal_precise_for_confident_predictions():
    # 1 - p_t = σ(-|z|) for the right hard target, formed without 1 - σ(|z|) (0 from z ~ 37)
    z = np.array([20.0, 40.0, 100.0, 300.0])
    for sign, t in ((1, np.ones(4)), (-1, np.zeros(4))):
        miss = np.exp(-z) / (1 + np.exp(-z))
        want = 0.25 * (1 if sign == 1 else 3) * np.log1p(np.exp(-z)) * np.sqrt(miss)
        np.testing.assert_allclose(FOCAL(sign * z, t, reduction="none", gamma=0.5), want,
                                   rtol=1e-13)
        assert (want > 0).all()


def test_focal_gradient_precise_for_confident_predictions():
    # the slope p - t formed as (1 - t) p - t q: σ(z) - 1 is 0 from z ~ 37, and 1e-3 off at 30
    z = np.array([10.0, 30.0, 40.0, 100.0])
    q = np.exp(-z) / (1 + np.exp(-z))  # 1 - σ(z)
    ce = np.log1p(np.exp(-z))
    for g in (0.0, 0.5, 2.0):
        want = -q * q**g - (g * ce * q**g * (1 - q) if g else 0.0)  # d/dz of ce q^g, t = 1
        for sign, t in ((1, np.ones(4)), (-1, np.zeros(4))):
            _, pullback = FOCAL.vjp(sign * z, t, reduction="sum", gamma=g, alpha=-1)
            np.testing.assert_allclose(pullback(), sign * want, rtol=1e-13)


def test_focal_down_weighs_easy_examples():
    easy, hard = FOCAL(np.array([4.0]), np.array([1.0])), FOCAL(np.array([-4.0]),
                                                                np.array([1.0]))
    ratio_bce = (losses.bce_with_logits(np.array([-4.0]), np.array([1.0]))
                 / losses.bce_with_logits(np.array([4.0]), np.array([1.0])))
    assert hard / easy > 1000 * ratio_bce


def test_multilabel_soft_margin_is_a_row_mean_of_bce():
    per = losses.bce_with_logits(X, PROB, reduction="none", weight=W).sum(-1) / 4
    np.testing.assert_allclose(MLSOFT(X, PROB, reduction="none", weight=W), per, rtol=1e-14)
    assert MLSOFT(X, PROB) == pytest.approx(losses.bce_with_logits(X, PROB), rel=1e-14)


def test_multilabel_margin_ignores_what_follows_the_first_minus_one():
    a = np.array([[2, -1, 0, 1]])
    b = np.array([[2, -1, 3, 3]])
    x = X[:1] * 0.3
    assert MLM(x, a) == MLM(x, b) == MLM(x, np.array([[2, -1, -1, -1]]))
    np.testing.assert_array_equal(MLM.vjp(x, a)[1](), MLM.vjp(x, b)[1]())
    # every class listed: no pair, loss 0; nothing listed: 0 too
    assert MLM(x, np.array([[0, 1, 2, 3]])) == 0 == MLM(x, np.full((1, 4), -1))


def test_log_cosh_precise_near_zero_and_linear_far_out():
    d = np.array([1e-9, -3e-5, 0.01, 0.7, -0.999, 1.0, 5.0])
    # the series where log(cosh d) itself loses digits (cosh d rounds near 1)
    want = np.where(np.abs(d) < 0.02, d * d / 2 - d**4 / 12 + d**6 / 45 - 17 * d**8 / 2520,
                    np.log(np.cosh(d)))
    np.testing.assert_allclose(LOGCOSH(d, np.zeros(7), reduction="none"), want, rtol=1e-14)
    far = np.array([30.0, -1e5, 1e30])
    np.testing.assert_allclose(LOGCOSH(far, np.zeros(3), reduction="none"),
                               np.abs(far) - math.log(2), rtol=1e-15)


# ---------------------------------------------------------------------------- kinks: torch's

def test_subgradients_at_the_kinks_are_torchs():
    # hinge: margin - x = 0 where y = -1: torch's clamp passes the gradient, -1
    x = np.array([1.0, 0.5, 2.0, 0.5])
    y = np.array([-1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(HINGE.vjp(x, y, 1.0, "sum")[1](), [-1, -1, 1, -1])
    np.testing.assert_array_equal(HINGE.vjp(x, y, 0.5, "sum")[1](), [0, -1, 1, -1])
    # multi_margin: z = margin - x_y + x_i = 0 is outside torch's z > 0: no gradient
    s = np.array([[1.0, 0.0, -0.5], [1.0, 0.5, 0.0]])
    for p in (1, 2):
        np.testing.assert_array_equal(MULTI.vjp(s, np.array([0, 0]), reduction="sum", p=p)[1](),
                                      [[0, 0, 0], [-1 / 3 * p * (0.5 if p == 2 else 1), 1 / 3
                                                   * p * (0.5 if p == 2 else 1), 0]])
    # multilabel_margin: the same strict z > 0
    x = np.array([[1.0, 0.0, 0.3]])
    np.testing.assert_allclose(MLM.vjp(x, np.array([[0, -1, -1]]), reduction="sum")[1](),
                               [[-1 / 3, 0, 1 / 3]], rtol=1e-15)


# ---------------------------------------------------------------------------- dtypes, extremes

ALL = [(FOCAL, PROB, {}), (HINGE, SIGNS, {}), (SOFT, SIGNS, {}),
       (MULTI, LABELS, {"p": 2, "weight": W}), (MLSOFT, PROB, {"weight": W}), (MLM, LISTS, {}),
       (LOGCOSH, T, {})]


@pytest.mark.parametrize(("loss", "target", "kw"), ALL, ids=[a[0].name for a in ALL])
def test_float32_kept(loss, target, kw):
    x = X.astype(np.float32)
    for red in REDUCTIONS:
        value, pullback = loss.vjp(x, target, reduction=red, **kw)
        assert red != "none" or value.dtype == np.float32
        assert pullback().dtype == np.float32
    # as exactly as float32 can: the float64 value to float32's rounding
    np.testing.assert_allclose(loss(x, target, **kw), loss(x.astype(float), target, **kw),
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("loss", "target", "kw"), ALL, ids=[a[0].name for a in ALL])
def test_extreme_finite_inputs_no_warning_no_nan(loss, target, kw, dtype):
    big = float(np.finfo(dtype).max)
    x = np.array([[-big, -1e30, 0.0, 1e30], [big, 50.0, -800.0, 1e-30], [800.0, -50, 1e30,
                                                                         -1e30],
                  [big, -big, big, -big], [1e30, 1e30, 1e30, 1e30], [0.0, 0, 0, 0]], dtype)
    t = np.asarray(target)
    if loss is LOGCOSH:
        t = x[::-1].copy()
    for red in ("sum", "none"):
        value, pullback = loss.vjp(x, t, reduction=red, **kw)
        assert not np.isnan(value).any(), (red, value)
        g = pullback()
        assert g.dtype == dtype and not np.isnan(g).any(), g


def test_values_at_plus_minus_1e30():
    x = np.array([1e30, -1e30])
    one = np.ones(2)
    np.testing.assert_allclose(SOFT(x, one, reduction="none"), [0, 1e30], rtol=1e-15)
    np.testing.assert_array_equal(SOFT.vjp(x, one, reduction="sum")[1](), [-0.0, -1])
    np.testing.assert_array_equal(HINGE(x, -one, reduction="none"), [0, 1e30 + 1])
    np.testing.assert_allclose(FOCAL(x, np.zeros(2), reduction="none", alpha=0.25), [0.75e30, 0])
    np.testing.assert_allclose(FOCAL.vjp(x, np.zeros(2), reduction="sum")[1](), [0.75, 0])
    np.testing.assert_allclose(FOCAL(x, np.ones(2), reduction="none"), [0, 0.25e30])
    np.testing.assert_allclose(FOCAL.vjp(x, np.ones(2), reduction="sum")[1](), [0, -0.25])
    np.testing.assert_allclose(LOGCOSH.vjp(x, np.zeros(2), reduction="sum")[1](), [1, -1])
    np.testing.assert_allclose(MULTI(np.array([[1e30, 0, -1e30]]), np.array([1]), 2,
                                     reduction="none"), [1e60 / 3])
    np.testing.assert_allclose(MLM(np.array([[-1e30, 0, 1e30]]), np.array([[1, -1, -1]]),
                                   "none"), [(1 + 1e30) / 3])


def test_infinite_inputs_where_the_loss_has_a_limit():
    inf = np.array([np.inf, -np.inf])
    one = np.ones(2)
    np.testing.assert_array_equal(HINGE(inf, one, reduction="none"), inf)  # torch: x itself
    np.testing.assert_array_equal(HINGE(inf, -one, reduction="none"), [0, np.inf])
    np.testing.assert_array_equal(HINGE.vjp(inf, -one, reduction="sum")[1](), [0, -1])
    np.testing.assert_array_equal(SOFT(inf, one, reduction="none"), [0, np.inf])
    # torch: log1p(exp(v)), inf from v ~ 710 on, its gradient NaN
    np.testing.assert_array_equal(SOFT.vjp(inf, one, reduction="sum")[1](), [-0.0, -1])
    np.testing.assert_array_equal(LOGCOSH(inf, np.zeros(2), reduction="none"), [np.inf, np.inf])
    np.testing.assert_array_equal(LOGCOSH.vjp(inf, np.zeros(2), reduction="sum")[1](), [1, -1])
    # the wrong hard target: an infinite loss, the gradient its limit a_t (torch: NaN)
    wrong = np.array([0.0, 1.0])
    np.testing.assert_array_equal(FOCAL(inf, wrong, reduction="none"), [np.inf, np.inf])
    np.testing.assert_allclose(FOCAL.vjp(inf, wrong, reduction="sum")[1](), [0.75, -0.25])
    # a label's score of inf beats every other: 0; another's inf: inf
    s = np.array([[np.inf, 0, 1]])
    np.testing.assert_array_equal(MULTI(s, np.array([0]), reduction="none"), [0])
    np.testing.assert_array_equal(MULTI(s, np.array([1]), reduction="none"), [np.inf])


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize(("call", "kind", "words"), [
    (lambda: FOCAL(X, PROB[:, :3]), ValueError, "target has shape"),
    (lambda: FOCAL(X, PROB + 1), ValueError, "[0, 1]"),
    (lambda: FOCAL(X, PROB, alpha=1.5), ValueError, "alpha must be"),
    (lambda: FOCAL(X, PROB, alpha="0.25"), TypeError, "pass None"),
    (lambda: FOCAL(X, PROB, gamma=-1.0), ValueError, "gamma must be"),
    (lambda: FOCAL(X, PROB, gamma=np.nan), ValueError, "gamma"),
    (lambda: FOCAL(X.astype(int), PROB), TypeError, "float array"),
    (lambda: FOCAL(X, PROB, reduction="avg"), ValueError, "reduction"),
    (lambda: HINGE(X, HARD), ValueError, "2 * target - 1"),
    (lambda: HINGE(X, SIGNS * 0.5), ValueError, "1 or -1"),
    (lambda: HINGE(X, SIGNS[:, 0]), ValueError, "target has shape"),
    (lambda: HINGE(X, SIGNS, margin=np.inf), ValueError, "margin"),
    (lambda: HINGE(X, SIGNS, margin="1"), TypeError, "margin"),
    (lambda: SOFT(X, HARD), ValueError, "2 * target - 1"),
    (lambda: SOFT(X, None), TypeError, "target must be a numeric array"),
    (lambda: MULTI(X, LABELS, p=3), ValueError, "p must be 1"),
    (lambda: MULTI(X, LABELS, p=1.5), TypeError, "p must be the int 1 or 2"),
    (lambda: MULTI(X, LABELS, p=True), TypeError, "p must be"),
    (lambda: MULTI(X, LABELS + 4), ValueError, "labels must be in [0, 4)"),
    (lambda: MULTI(X, LABELS - 6), ValueError, "labels must be in [0, 4)"),
    (lambda: MULTI(X, LABELS.astype(float)), TypeError, "target.astype(int)"),
    (lambda: MULTI(X, LABELS[:5]), ValueError, "integer labels must have shape (6,)"),
    (lambda: MULTI(X, LABELS, weight=W[:3]), ValueError, "weight must have shape"),
    (lambda: MULTI(X, LABELS, weight=-W), ValueError, ">= 0"),
    (lambda: MULTI(X, LABELS, margin=None), TypeError, "margin"),
    (lambda: MULTI(X[:, :0], LABELS), ValueError, "class axis"),
    (lambda: MULTI(X[0, 0], 0), ValueError, "class axis"),
    (lambda: MLSOFT(X, PROB * 2), ValueError, "[0, 1]"),
    (lambda: MLSOFT(X, PROB, weight=np.ones(3)), ValueError, "weight must broadcast"),
    (lambda: MLSOFT(X[0, 0], 0.5), ValueError, "class axis"),
    (lambda: MLM(X, LISTS.astype(float)), TypeError, "integer class indices"),
    (lambda: MLM(X, LISTS[:, :3]), ValueError, "pred's shape (6, 4)"),
    (lambda: MLM(X, LISTS - 1), ValueError, "or the padding -1"),
    (lambda: MLM(X, np.where(LISTS == 3, 4, LISTS)), ValueError, "[0, 4)"),
    (lambda: LOGCOSH(X, None), TypeError, "target must be a numeric array"),
    (lambda: LOGCOSH(X, T[:, :1]), ValueError, "target has shape"),
])
def test_bad_inputs_are_named(call, kind, words):
    with pytest.raises(kind) as e:
        call()
    msg = str(e.value)
    assert msg.split(":")[0] in ("sigmoid_focal", "hinge_embedding", "soft_margin",
                                 "multi_margin", "multilabel_soft_margin",
                                 "multilabel_margin", "log_cosh"), msg
    assert words in msg, msg
