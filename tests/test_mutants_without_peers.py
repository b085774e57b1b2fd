"""Tests that kill mutants which only the peer cross-checks (torch, optax, scikit-learn)
caught, so that they die in CI too, where those peers are not installed: each checks a
closed form, a hand-computed value or a plain NumPy reference written here.

Mutants: AdaptiveMaxPool2D's pullback when only W is pooled by bins (the column arg-max
read from the wrong row), sigmoid_focal's alpha = 0 (a weight of 0 on the positives, not
"no weighting"), precision_recall_f1's macro average over the classes predicted but absent
from y_true; sgd's nesterov=True with dampening=0 (the look-ahead kept), lamb's eps_root
(passed on to its Adam), scale_by_sm3's b2 < 1 (the old accumulator decayed),
reduce_on_plateau's plateau count held at 0 through a cooldown (torch's and optax's rule),
and Bilinear's default init bound U(±1/sqrt(D1)) reached, not only respected."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _optim_util import close, scalar_run

from funcdl import losses, metrics, optim, random
from funcdl.layers.adaptive_pool import AdaptiveMaxPool2D
from funcdl.layers.bilinear import Bilinear
from funcdl.testing import check_vjp

RNG = np.random.default_rng(11)


# ---------------------------------------------------------------------------- adaptive max pool

def _max_pool_w_only(x, ow, dy):
    """y and dx of a max pool along W alone, bins ``[floor(q·W/OW), ceil((q+1)·W/OW))``, the
    first maximum of a window taking all of its dy."""
    n, h, w, c = x.shape
    y, dx = np.zeros((n, h, ow, c)), np.zeros_like(x)
    for q in range(ow):
        c0, c1 = math.floor(q * w / ow), math.ceil((q + 1) * w / ow)
        at = c0 + np.argmax(x[:, :, c0:c1], axis=2)  # (n, h, c): the first maximum
        y[:, :, q] = np.take_along_axis(x, at[:, :, None], axis=2)[:, :, 0]
        b, i, ch = np.indices(at.shape)
        np.add.at(dx, (b, i, at, ch), dy[:, :, q])
    return y, dx


@pytest.mark.parametrize("size", [(None, 3), (4, 3), (None, 2)])
def test_adaptive_max_pool_over_w_alone_routes_each_row_to_its_own_arg_max(size):
    # H kept, W pooled by bins that do not tile it (7 into 3 or 2: not the MaxPool2D path):
    # each row's dy goes to that row's arg-max column, not another row's
    x = RNG.standard_normal((2, 4, 7, 3))
    layer = AdaptiveMaxPool2D(size)
    ow = size[1]
    dy = RNG.standard_normal((2, 4, ow, 3))
    want_y, want_dx = _max_pool_w_only(x, ow, dy)
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_allclose(pullback(dy)[1], want_dx, rtol=1e-15, atol=1e-15)
    check_vjp(layer, (), x)


# ---------------------------------------------------------------------------- sigmoid focal

def _focal(z, t, alpha, gamma):
    """torchvision's sigmoid_focal_loss per element and its derivative in z, closed form."""
    p = 1 / (1 + np.exp(-z))
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    m = 1 - (p * t + (1 - p) * (1 - t))
    at = 1.0 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    dm = (1 - 2 * t) * p * (1 - p)
    grad = at * ((p - t) * m**gamma + ce * gamma * m ** (gamma - 1) * dm)
    return at * ce * m**gamma, grad


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_sigmoid_focal_alpha_at_0_and_1_weighs_one_side_only(alpha):
    # alpha = 0 is a weight of 0 on the positives' term and 1 on the negatives' (as
    # torchvision: only alpha < 0 means no weighting); alpha = 1 the other way round
    z = RNG.normal(size=(5, 4)) * 1.5
    for t in ((RNG.random((5, 4)) > 0.5).astype(float), RNG.random((5, 4))):
        per, grad = _focal(z, t, alpha, 2.0)
        np.testing.assert_allclose(losses.sigmoid_focal(z, t, alpha, 2.0, "none"), per,
                                   rtol=1e-12, atol=1e-15)
        _, pullback = losses.sigmoid_focal.vjp(z, t, alpha, 2.0, "sum")
        np.testing.assert_allclose(pullback(), grad, rtol=1e-12, atol=1e-15)
    # on hard targets the side weighed 0 contributes exactly nothing, value and gradient
    t = np.array([[1.0, 0.0, 1.0, 0.0]])
    z = np.array([[-2.0, 3.0, 0.5, -0.5]])
    zero = t == (0.0 if alpha == 1.0 else 1.0)
    per = losses.sigmoid_focal(z, t, alpha, 2.0, "none")
    assert (per[zero] == 0).all() and (per[~zero] > 0).all()
    g = losses.sigmoid_focal.vjp(z, t, alpha, 2.0, "sum")[1]()
    assert (g[zero] == 0).all()
    unweighted = losses.sigmoid_focal(z, t, None, 2.0, "none")
    np.testing.assert_allclose(per[~zero], unweighted[~zero], rtol=1e-15)


# ---------------------------------------------------------------------------- metrics

def test_macro_average_includes_classes_only_predicted():
    # sklearn's labels are those in y_true OR y_pred: class 2, predicted once and never
    # true, counts with precision 0/1 = 0 and recall 0/0 = zero_division
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    # class 0: P 1/1, R 1/2, F1 2/3; class 1: 1, 1, 1; class 2: 0, zd, 0
    got = metrics.precision_recall_f1(y_true, y_pred, "macro")
    np.testing.assert_allclose(got, (2 / 3, 1 / 2, 5 / 9), rtol=1e-15)
    got = metrics.precision_recall_f1(y_true, y_pred, "macro", zero_division=1.0)
    np.testing.assert_allclose(got, (2 / 3, 5 / 6, 5 / 9), rtol=1e-15)
    # zero_division=nan drops class 2's recall alone
    got = metrics.precision_recall_f1(y_true, y_pred, "macro", zero_division=np.nan)
    np.testing.assert_allclose(got, (2 / 3, 3 / 4, 5 / 9), rtol=1e-15)
    # a class in neither is not averaged over (unless num_classes names it)
    y_true, y_pred = np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])
    got = metrics.precision_recall_f1(y_true, y_pred, "macro")
    np.testing.assert_allclose(got, (5 / 6, 3 / 4, 11 / 15), rtol=1e-15)
    got = metrics.precision_recall_f1(y_true, y_pred, "macro", num_classes=3)
    np.testing.assert_allclose(got, (5 / 9, 1 / 2, 22 / 45), rtol=1e-15)


# ---------------------------------------------------------------------------- optimizers

def test_sgd_nesterov_with_an_explicit_dampening_of_0_keeps_the_look_ahead():
    # torch's rule allows nesterov=True with dampening=0 only, which must be plain nesterov:
    # b = 0.9·b + g (b = g at first); step g + 0.9·b. b: 1, 2.9, 1.61; steps 1.9, 4.61, 0.449
    want = [1.0 - 0.19, 1.0 - 0.19 - 0.461, 1.0 - 0.19 - 0.461 - 0.0449]
    for opt in (optim.sgd(0.1, momentum=0.9, nesterov=True, dampening=0.0),
                optim.sgd(0.1, momentum=0.9, nesterov=True)):
        close(scalar_run(opt, 1.0, [1.0, 2.0, -1.0]), want)


def test_lamb_passes_eps_root_to_its_adam_direction():
    # d = m̂ / (sqrt(v̂ + eps_root) + eps) + wd·p, then scaled to |p| / |d| (per leaf)
    lr, b1, b2, eps, eps_root, wd = 0.1, 0.9, 0.99, 1e-3, 0.5, 0.01
    p = np.array([3.0, 4.0, -1.0])
    grads = [np.array([1.0, 3.0, -0.2]), np.array([-2.0, 0.5, 0.1]), np.array([0.3, 1.0, 4.0])]
    opt = optim.lamb(lr, b1, b2, eps, eps_root, weight_decay=wd)
    state = opt.init({"p": p})
    m, v = np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        d = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps) + wd * p
        want = -lr * np.linalg.norm(p) / np.linalg.norm(d) * d
        u, state = opt.update(state, {"p": g}, {"p": p})
        np.testing.assert_allclose(u["p"], want, rtol=1e-12)


def test_scale_by_sm3_with_b2_below_1_decays_the_accumulator():
    # 1-d leaf: a = (1-b2)·g² + b2·a_prev; r = g / sqrt(a + eps); m = (1-b1)·r + b1·m
    b1, b2, eps = 0.5, 0.75, 1e-4
    opt = optim.scale_by_sm3(b1, b2, eps)
    p = np.zeros(2)
    state, a, m = opt.init(p), np.zeros(2), np.zeros(2)
    for g in (np.array([2.0, -1.0]), np.array([1.0, 3.0]), np.array([-0.5, 0.0])):
        a = (1 - b2) * g * g + b2 * a
        m = (1 - b1) * g / np.sqrt(a + eps) + b1 * m
        u, state = opt.update(state, g, p)
        np.testing.assert_allclose(u, m, rtol=1e-13)


def test_reduce_on_plateau_holds_the_plateau_count_at_0_through_a_cooldown():
    # patience 2, cooldown 2, a loss that never improves after the first: reduce at update 3,
    # cool down over updates 4-5 (bad ones not counted), count 1, 2 at updates 6-7 and
    # reduce again at 7 (counting during the cooldown would reduce at 6)
    opt = optim.reduce_on_plateau(0.5, patience=2, rtol=0.1, cooldown=2)
    p, g = {"w": np.zeros(2)}, {"w": np.ones(2)}
    state, got = opt.init(p), []
    for _ in range(9):
        u, state = opt.update(state, g, p, value=10.0)
        got.append(float(u["w"][0]))
    assert got == [1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert state.plateau_count == 0 and state.cooldown_count == 0  # 2 at 7, 1 at 8


# ---------------------------------------------------------------------------- Bilinear init

def test_bilinear_default_init_reaches_its_bound_1_over_sqrt_d1():
    # torch's nn.Bilinear: U(±1/sqrt(in1_features)) for w and b, not a fan of D1 and D2
    d1, d2, out = 9, 4, 64
    _, params = Bilinear(out).init(random.key(0), ((None, d1), (None, d2)))
    bound = 1 / math.sqrt(d1)
    w, b = np.abs(params["w"]), np.abs(params["b"])
    assert w.max() <= bound and w.max() > 0.99 * bound  # 2304 draws
    assert b.max() <= bound and b.max() > 0.9 * bound  # 64 draws
    assert abs(w.mean() / bound - 0.5) < 0.03  # uniform: E|w| = bound / 2
