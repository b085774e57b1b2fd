"""losses.kl_div, gaussian_nll, poisson_nll, margin_ranking, cosine_embedding and
triplet_margin (torch's semantics): by hand, by finite differences for every reduction,
float32 kept, extreme inputs without warnings or NaN, bad inputs named, and the tuple preds
((mean, var), (x1, x2), (anchor, pos, neg)) end to end through FanOut and Parallel."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, testing, tree

KL, GNLL, PNLL = losses.kl_div, losses.gaussian_nll, losses.poisson_nll
MR, COS, TRI = losses.margin_ranking, losses.cosine_embedding, losses.triplet_margin
RNG = np.random.default_rng(7)
Z = RNG.normal(size=(4, 3))
LOGP = Z - np.log(np.exp(Z).sum(-1, keepdims=True))
PROB = np.exp(RNG.normal(size=(4, 3)))
PROB /= PROB.sum(-1, keepdims=True)
PROB[0, 1] = 0.0  # a zero probability: its term is 0
T = RNG.normal(size=(4, 3))
VAR = RNG.random((4, 3)) + 0.2
COUNTS = RNG.integers(0, 6, (4, 3)).astype(float)
SIGNS = np.where(RNG.random((8, 3)) > 0.5, 1.0, -1.0)
X1, X2, X3 = RNG.normal(size=(3, 4, 3))
REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------- by hand

def test_kl_div_by_hand_every_reduction_and_its_gradient():
    per = np.where(PROB > 0, PROB * (np.log(np.where(PROB > 0, PROB, 1)) - LOGP), 0)
    np.testing.assert_allclose(KL(LOGP, PROB, reduction="none"), per, rtol=1e-14)
    assert KL(LOGP, PROB) == pytest.approx(per.sum() / 12, rel=1e-14)
    assert KL(LOGP, PROB, reduction="batchmean") == pytest.approx(per.sum() / 4, rel=1e-14)
    assert KL(LOGP, PROB, reduction="sum") == pytest.approx(per.sum(), rel=1e-14)
    # dp = -t, scaled by 1/n, 1/batch, 1: the sign and each factor show
    np.testing.assert_allclose(KL.vjp(LOGP, PROB)[1](), -PROB / 12, rtol=1e-14)
    np.testing.assert_allclose(KL.vjp(LOGP, PROB, "batchmean")[1](2.0), -PROB / 2, rtol=1e-14)
    c = RNG.normal(size=(4, 3))
    np.testing.assert_allclose(KL.vjp(LOGP, PROB, "none")[1](c), -c * PROB, rtol=1e-14)
    # log_target: the same divergence with the target's logarithm, dp = -e^t
    lt = np.log(PROB + 0.1)
    np.testing.assert_allclose(KL(LOGP, lt, "none", log_target=True),
                               np.exp(lt) * (lt - LOGP), rtol=1e-14)
    np.testing.assert_allclose(KL.vjp(LOGP, lt, "sum", log_target=True)[1](),
                               -np.exp(lt), rtol=1e-14)
    # the KL divergence of a distribution from itself is 0, from another > 0
    assert KL(np.log(PROB[1:]), PROB[1:], reduction="sum") == pytest.approx(0, abs=1e-15)
    assert KL(LOGP, PROB, reduction="batchmean") > 0


def test_gaussian_nll_by_hand_and_both_gradients():
    d = Z - T
    per = 0.5 * (np.log(VAR) + d * d / VAR)
    np.testing.assert_allclose(GNLL(Z, T, VAR, "none"), per, rtol=1e-14)
    assert GNLL(Z, T, VAR) == pytest.approx(per.mean(), rel=1e-14)
    assert GNLL(Z, T, VAR, full=True) == pytest.approx(per.mean() + 0.5 * math.log(2 * math.pi),
                                                        rel=1e-14)
    assert GNLL((Z, VAR), T, reduction="sum") == pytest.approx(per.sum(), rel=1e-14)
    dm, dv = GNLL.vjp((Z, VAR), T, reduction="sum")[1](3.0)
    np.testing.assert_allclose(dm, 3 * d / VAR, rtol=1e-14)
    np.testing.assert_allclose(dv, 1.5 * (1 / VAR - d * d / VAR**2), rtol=1e-14)
    # the array form: var is data, dpred alone
    np.testing.assert_allclose(GNLL.vjp(Z, T, VAR)[1](), d / VAR / 12, rtol=1e-14)
    # one variance per example, shape (4,) or (4, 1): dvar sums over the row
    v = VAR[:, 0]
    for shaped in (v, v[:, None]):
        per1 = 0.5 * (np.log(v[:, None]) + d * d / v[:, None])
        assert GNLL((Z, shaped), T) == pytest.approx(per1.mean(), rel=1e-14)
        dm, dv = GNLL.vjp((Z, shaped), T)[1]()
        assert dv.shape == shaped.shape
        np.testing.assert_allclose(dv.reshape(4), (0.5 * (1 / v[:, None] - d * d / v[:, None]**2)
                                                   ).sum(1) / 12, rtol=1e-13)
    # var below eps: clamped to eps in the value, the gradient as torch's (through the clamp)
    small = np.full((4, 3), 1e-9)
    np.testing.assert_allclose(GNLL(Z, T, small, "none"), 0.5 * (np.log(1e-6) + d * d / 1e-6),
                               rtol=1e-14)
    np.testing.assert_allclose(GNLL.vjp((Z, small), T, reduction="sum")[1]()[1],
                               0.5 * (1 / 1e-6 - d * d / 1e-12), rtol=1e-14)
    # a scalar var (data): as a full array of it
    assert GNLL(Z, T, 0.5) == GNLL(Z, T, np.full((4, 3), 0.5))


def test_poisson_nll_by_hand_both_inputs_and_full():
    per = np.exp(Z) - COUNTS * Z
    np.testing.assert_allclose(PNLL(Z, COUNTS, "none"), per, rtol=1e-14)
    assert PNLL(Z, COUNTS) == pytest.approx(per.mean(), rel=1e-14)
    np.testing.assert_allclose(PNLL.vjp(Z, COUNTS, "sum")[1](2.0), 2 * (np.exp(Z) - COUNTS),
                               rtol=1e-14)
    rate = np.exp(Z)
    per = rate - COUNTS * np.log(rate + 1e-8)
    np.testing.assert_allclose(PNLL(rate, COUNTS, "none", log_input=False), per, rtol=1e-14)
    np.testing.assert_allclose(PNLL.vjp(rate, COUNTS, log_input=False)[1](),
                               (1 - COUNTS / (rate + 1e-8)) / 12, rtol=1e-14)
    c = COUNTS
    stirling = np.where(c > 1, c * np.log(np.maximum(c, 1)) - c
                        + 0.5 * np.log(2 * np.pi * np.maximum(c, 1)), 0)
    np.testing.assert_allclose(PNLL(Z, COUNTS, "none", full=True),
                               np.exp(Z) - COUNTS * Z + stirling, rtol=1e-14)
    # full adds a constant: the same gradient
    np.testing.assert_array_equal(PNLL.vjp(Z, COUNTS, full=True)[1](),
                                  PNLL.vjp(Z, COUNTS)[1]())
    # a rate of 0 against a count of 0: 0, not 0 · log 0
    assert PNLL(np.zeros(3), np.zeros(3), log_input=False) == 0.0


def test_pair_losses_by_hand():
    y = SIGNS[:4]
    z = -y * (X1 - X2) + 0.2
    np.testing.assert_allclose(MR((X1, X2), y, "none", margin=0.2), np.maximum(z, 0), rtol=1e-15)
    d1, d2 = MR.vjp((X1, X2), y, margin=0.2)[1]()
    np.testing.assert_array_equal(d1, np.where(z >= 0, -y, 0) / 12)
    np.testing.assert_array_equal(d2, -d1)
    # equal scores at margin 0: the hinge at exactly 0 passes the gradient, as torch's clamp
    np.testing.assert_array_equal(MR.vjp((X1, X1), y, "sum")[1]()[0], -y)
    # cosine: parallel vectors alike cost 0, opposite ones 2; unlike ones cost cos - margin
    a = np.array([[1.0, 2.0, 2.0], [1.0, 0.0, 0.0]])
    assert COS((a, 3 * a), np.ones(2), "sum") == pytest.approx(0, abs=1e-12)
    assert COS((a, -a), np.ones(2), "sum") == pytest.approx(4, abs=1e-11)  # torch's 1e-12
    b = np.array([[2.0, 1.0, 2.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(COS((a, b), -np.ones(2), "none", margin=0.5), [8 / 9 - 0.5, 0],
                               atol=1e-12)
    # d cos / d x1 = x2 / (|x1||x2|) - cos x1 / |x1|², negated for y = 1
    d1, d2 = COS.vjp((a, b), np.array([1.0, -1.0]), "sum")[1]()
    want = b[0] / 9 - (8 / 9) * a[0] / 9
    np.testing.assert_allclose(d1[0], -want, rtol=1e-10)
    np.testing.assert_allclose(d1[1], b[1], rtol=1e-10)  # cos = 0 >= margin 0: active
    # triplet: |a - p + eps| - |a - n + eps| + margin, hinge at 0
    dp = np.linalg.norm(X1 - X2 + 1e-6, axis=-1)
    dn = np.linalg.norm(X1 - X3 + 1e-6, axis=-1)
    np.testing.assert_allclose(TRI((X1, X2, X3), None, "none", margin=2.0),
                               np.maximum(dp - dn + 2.0, 0), rtol=1e-13)
    da, dpos, dneg = TRI.vjp((X1, X2, X3), None, "sum", margin=9.0)[1]()
    gp = (X1 - X2 + 1e-6) / dp[:, None]
    gn = (X1 - X3 + 1e-6) / dn[:, None]
    np.testing.assert_allclose(dpos, -gp, rtol=1e-13)
    np.testing.assert_allclose(dneg, gn, rtol=1e-13)
    np.testing.assert_allclose(da, gp - gn, rtol=1e-12)
    # swap: the negative's distance to the positive, where nearer
    ds = np.linalg.norm(X2 - X3 + 1e-6, axis=-1)
    np.testing.assert_allclose(TRI((X1, X2, X3), None, "none", margin=2.0, swap=True),
                               np.maximum(dp - np.minimum(dn, ds) + 2.0, 0), rtol=1e-13)


# ---------------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("reduction", [*REDUCTIONS, "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_finite_differences(reduction, log_target):
    t = np.log(PROB + 0.05) if log_target else PROB
    testing.check_loss(KL, LOGP, t, reduction=reduction, log_target=log_target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("log_input", "full"), [(True, False), (True, True), (False, False),
                                                 (False, True)])
def test_poisson_nll_finite_differences(reduction, log_input, full):
    pred = Z if log_input else np.exp(Z)
    testing.check_loss(PNLL, pred, COUNTS, reduction=reduction, log_input=log_input,
                       full=full)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_finite_differences_var_as_data(reduction, full):
    testing.check_loss(functools.partial(GNLL, var=VAR), Z, T, reduction=reduction, full=full)
    testing.check_loss(functools.partial(GNLL, var=VAR[:, 0]), Z, T, reduction=reduction)


def _fd_tuple(loss, xs, target, reduction, **kw):
    """check_loss on the tuple pred ``xs``: a tuple of gradients, one per input, against
    central differences along random directions of every input (and float32 against
    float64, and either memory layout)."""
    value, pullback = loss.vjp(xs, target, reduction=reduction, **kw)
    c = 1.0 if reduction != "none" else RNG.normal(size=np.shape(value))
    grads = pullback(c)
    assert isinstance(grads, tuple) and [g.shape for g in grads] == [x.shape for x in xs]
    testing.check_loss(loss, xs, target, reduction=reduction, **kw)
    testing.check_loss(loss, tuple(x.astype(np.float32) for x in xs), target,
                       reduction=reduction, **kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("var_shape", ["full", "row", "row-1", "axis0"])
def test_gaussian_nll_finite_differences_mean_and_var(reduction, var_shape):
    var = {"full": VAR, "row": VAR[:, 0], "row-1": VAR[:, :1], "axis0": VAR[:1]}[var_shape]
    _fd_tuple(GNLL, (Z, var), T, reduction)
    _fd_tuple(GNLL, (Z, var), T, reduction, full=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "kw"), [
    ("margin_ranking", {"margin": 0.3}), ("cosine_embedding", {}),
    ("cosine_embedding", {"margin": -0.2}), ("triplet_margin", {}),
    ("triplet_margin", {"margin": 2.0, "p": 1.0}), ("triplet_margin", {"margin": 2.0, "p": 3.0}),
    ("triplet_margin", {"margin": 2.0, "swap": True})])
def test_pair_losses_finite_differences(reduction, name, kw):
    loss = getattr(losses, name)
    if name == "triplet_margin":
        _fd_tuple(loss, (X1, X2, X3), None, reduction, **kw)
        # a negative nearer the positive than the anchor: swap takes d(pos, neg)
        near = X2 + 0.1 * X3
        assert np.all(np.linalg.norm(X2 - near, axis=-1) < np.linalg.norm(X1 - near, axis=-1))
        _fd_tuple(loss, (X1, X2, near), None, reduction, **kw)
    else:
        _fd_tuple(loss, (X1, X2), SIGNS[:4] if name == "margin_ranking" else SIGNS[:4, 0],
                  reduction, **kw)


def _end_to_end(model, in_shape, x, y, loss):
    """value_and_grad's grads, the loss's tuple dpred passed back through the model, match
    finite differences over every parameter; a few SGD steps lower the loss."""
    _, params = model.init(random.key(0), in_shape)
    params = tree.astype(params, np.float64)
    f = fd.value_and_grad(model, loss)
    value, grads = f(params, x, y)
    assert value == pytest.approx(loss(model.apply(params, x), y), rel=1e-14)
    flat, unravel = tree.ravel(params)
    g, _ = tree.ravel(grads)
    for _ in range(3):
        u = RNG.normal(size=flat.shape)
        plus, minus = (loss(model.apply(unravel(flat + s * u), x), y) for s in (1e-6, -1e-6))
        assert (plus - minus) / 2e-6 == pytest.approx(float(g @ u), rel=1e-6)
    for _ in range(30):
        value2, grads = f(params, x, y)
        params = tree.map(lambda p, d: p - 0.1 * d, params, grads)
    assert value2 < value


def test_gaussian_nll_end_to_end_through_fanout_and_parallel():
    """A model predicting a mean and a (softplus) variance, its output (mean, var)."""
    model = L.Sequential(L.Dense(5), L.Tanh(), L.FanOut(2),
                         L.Parallel(L.Dense(3), L.Sequential(L.Dense(3), L.Softplus())))
    _end_to_end(model, (None, 2), RNG.normal(size=(6, 2)), RNG.normal(size=(6, 3)), GNLL)


@pytest.mark.parametrize("name", ["cosine_embedding", "margin_ranking", "triplet_margin"])
def test_pair_losses_end_to_end_through_parallel(name):
    """A two- or three-tower model on a tuple input, (x1, x2) or (anchor, pos, neg)."""
    n = 3 if name == "triplet_margin" else 2
    model = L.Parallel(*[L.Sequential(L.Dense(4), L.Tanh(), L.Dense(3)) for _ in range(n)])
    x = tuple(RNG.normal(size=(6, 2)) for _ in range(n))
    y = {"cosine_embedding": SIGNS[:6, 0], "margin_ranking": SIGNS[:6, :3] * 1.0,
         "triplet_margin": None}[name]
    loss = getattr(losses, name)
    if name == "margin_ranking":
        loss = functools.partial(loss, margin=0.5)  # every pair active at first
    _end_to_end(model, ((None, 2),) * n, x, y, loss)


# ---------------------------------------------------------------------------- dtypes, extremes

def test_float32_kept():
    z, t, v = Z.astype(np.float32), T.astype(np.float32), VAR.astype(np.float32)
    cases = [(KL, LOGP.astype(np.float32), PROB.astype(np.float32), {}),
             (KL, LOGP.astype(np.float32), PROB, {"reduction": "batchmean"}),
             (PNLL, z, COUNTS, {}), (PNLL, np.exp(z), COUNTS.astype(np.float32),
                                     {"log_input": False, "full": True}),
             (GNLL, z, t, {"var": VAR})]
    for loss, p, tg, kw in cases:
        assert loss(p, tg, **{**kw, "reduction": "none"}).dtype == np.float32
        assert type(loss(p, tg, **{"reduction": "mean", **kw})) is float
        assert loss.vjp(p, tg, **kw)[1]().dtype == np.float32
    dm, dv = GNLL.vjp((z, v), t)[1]()
    assert dm.dtype == dv.dtype == np.float32
    assert GNLL((z, v), t, reduction="none").dtype == np.float32
    assert GNLL.vjp((z, v[:, 0]), t)[1]()[1].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_no_warning_no_nan(dtype):
    big = float(np.finfo(dtype).max)
    p = np.array([-big, -1e30, 0.0, 1e30, big, 50.0, 800.0], dtype)
    t0 = np.array([0.0, 1.0, 0.0, 0.5, 1.0, big, 1e30], dtype)
    grads = []
    for loss, pred, tg, kw in [
            (KL, -np.abs(p), np.abs(t0), {}), (KL, -np.abs(p), -np.abs(t0), {"log_target": True}),
            (KL, -np.abs(p), -np.abs(p), {"log_target": True}),
            (KL, -np.abs(p), -np.abs(p)[::-1], {"log_target": True}),
            (PNLL, p, np.abs(t0), {"full": True}), (PNLL, np.abs(p), np.abs(t0),
                                                    {"log_input": False, "full": True}),
            (GNLL, p, t0, {"var": np.abs(t0)}), (GNLL, p, t0, {"var": np.zeros_like(p)})]:
        for red in ("sum", "none"):
            val, pb = loss.vjp(pred, tg, reduction=red, **kw)
            assert not np.isnan(val).any(), (loss, kw, red, val)
            grads.append(pb())
        dm, dv = GNLL.vjp((p, np.abs(t0)), t0, reduction="sum")[1]()
        grads += [dm, dv]
    assert not any(np.isnan(g).any() for g in grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_losses_float32_kept_and_extremes_without_warning_or_nan(dtype):
    big = float(np.finfo(dtype).max)
    a = np.array([[big, -big, 1.0], [1e-30, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, -1e30, 2.0]],
                 dtype)
    b, n = -a[::-1], np.roll(a, 1)
    y = np.array([1.0, -1.0, 1.0, -1.0])
    for loss, xs, t, kw in [(MR, (a, b), np.ones_like(a), {}), (MR, (a, b), -np.ones_like(a), {}),
                            (COS, (a, b), y, {}), (COS, (a, a), y, {}), (COS, (b, a), y, {}),
                            (TRI, (a, b, n), None, {}), (TRI, (a, n, b), None, {"swap": True}),
                            (TRI, (a, b, n), None, {"p": 1.0}), (TRI, (a, a, a), None, {})]:
        for red in ("sum", "none"):
            value, pullback = loss.vjp(xs, t, red, **kw)
            assert not np.isnan(value).any(), (loss, kw, value)
            assert red == "sum" or value.dtype == dtype
            for g in pullback():
                assert g.dtype == dtype and not np.isnan(g).any(), (loss, kw, g)


def test_target_zero_terms_are_zero():
    assert KL(np.array([-np.inf, 0.0]), np.array([0.0, 1.0]), reduction="sum") == 0.0
    assert KL(np.array([-1e300, 0.0]), np.array([0.0, 1.0]), reduction="sum") == 0.0
    assert KL(np.array([0.0, -3.0]), np.array([-np.inf, 0.0]), "sum", log_target=True) == 3.0


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize(("call", "kind", "words"), [
    (lambda: KL(LOGP, -PROB), ValueError, "target must be >= 0"),
    (lambda: KL(-LOGP, PROB), ValueError, "pred must be <= 0"),
    (lambda: KL(LOGP, PROB, log_target=True), ValueError, "target must be <= 0"),
    (lambda: KL(LOGP, PROB, reduction="avg"), ValueError, "'batchmean'"),
    (lambda: KL(LOGP, PROB, reduction=None), TypeError, "reduction"),
    (lambda: KL(LOGP[:0], PROB[:0], reduction="batchmean"), ValueError, "empty batch"),
    (lambda: KL(LOGP, PROB, log_target="yes"), TypeError, "log_target"),
    (lambda: KL(LOGP, PROB[:, :2]), ValueError, "target has shape"),
    (lambda: PNLL(Z, COUNTS, reduction="batchmean"), ValueError, "'mean', 'sum' or 'none'"),
    (lambda: PNLL(Z, -COUNTS), ValueError, "target must be >= 0"),
    (lambda: PNLL(-np.exp(Z), COUNTS, log_input=False), ValueError, "log_input=True"),
    (lambda: PNLL(Z, COUNTS, eps=0.0), ValueError, "eps"),
    (lambda: PNLL(Z.astype(np.float32), COUNTS, eps=1e-50), ValueError, "0 in float32"),
    (lambda: PNLL(Z, COUNTS, full=1), TypeError, "full"),
    (lambda: GNLL(Z, T), TypeError, "the variance is missing"),
    (lambda: GNLL((Z, VAR), T, VAR), TypeError, "(mean, var)"),
    (lambda: GNLL((Z, VAR, VAR), T), TypeError, "length 3"),
    (lambda: GNLL(Z, T, -VAR), ValueError, "var must be >= 0"),
    (lambda: GNLL(Z, T, VAR[:, :2]), ValueError, "var must have the mean's shape"),
    (lambda: GNLL(Z, T, VAR[:1, :1]), ValueError, "var must have the mean's shape"),
    (lambda: GNLL((Z, np.array(0.5)), T), ValueError, "var must have the mean's shape"),
    (lambda: GNLL((Z, VAR.astype(np.float32)), T), TypeError, "one dtype"),
    (lambda: GNLL((Z, VAR.astype(int)), T), TypeError, "float array"),
    (lambda: GNLL(Z, T, "var"), TypeError, "var must be a real array"),
    (lambda: GNLL(Z, T, VAR, eps=-1.0), ValueError, "eps"),
    (lambda: GNLL(Z, T, VAR, reduction="batchmean"), ValueError, "reduction"),
    (lambda: GNLL((Z, VAR), T, "sum"), TypeError, "pass reduction= by keyword"),
    (lambda: MR(X1, SIGNS[:4]), TypeError, "tuple (x1, x2) of 2 arrays"),
    (lambda: MR([X1, X2], SIGNS[:4]), TypeError, "got list"),
    (lambda: MR((X1, X2[:, :2]), SIGNS[:4]), ValueError, "one shape and dtype"),
    (lambda: MR((X1, X2.astype(np.float32)), SIGNS[:4]), ValueError, "one shape and dtype"),
    (lambda: MR((X1, X2), SIGNS[:4, 0]), ValueError, "target must have shape (4, 3)"),
    (lambda: MR((X1, X2), SIGNS[:4] * 0), ValueError, "1 (alike, or x1 first) or -1"),
    (lambda: MR((X1, X2), (SIGNS[:4] > 0) * 1), ValueError, "pass 2 * target - 1"),
    (lambda: MR((X1, X2), None), TypeError, "target must be 1s and -1s"),
    (lambda: COS((X1, X2), SIGNS[:4]), ValueError, "target must have shape (4,)"),
    (lambda: COS((X1[0, 0], X2[0, 0]), 1.0), ValueError, "feature axis"),
    (lambda: COS((X1, X2), SIGNS[:4, 0], margin="0"), TypeError, "margin"),
    (lambda: TRI((X1, X2, X3), SIGNS[:4, 0]), TypeError, "takes no target"),
    (lambda: TRI((X1, X2), None), TypeError, "(anchor, positive, negative) of 3 arrays"),
    (lambda: TRI((X1, X2, X3), None, margin=0.0), ValueError, "margin"),
    (lambda: TRI((X1, X2, X3), None, p=0.5), ValueError, "p must be"),
    (lambda: TRI((X1, X2, X3), None, swap=None), TypeError, "swap"),
    (lambda: TRI((X1, X2, X3), None, reduction="batchmean"), ValueError, "reduction"),
])
def test_bad_inputs_are_named(call, kind, words):
    with pytest.raises(kind) as e:
        call()
    msg = str(e.value)
    assert msg.split(":")[0] in ("kl_div", "poisson_nll", "gaussian_nll", "margin_ranking",
                                 "cosine_embedding", "triplet_margin"), msg
    assert words in msg, msg


def test_cosine_embedding_adds_torchs_float_epsilon_to_each_squared_norm():
    # torch's EPSILON is the float 1e-12 (9.99999996e-13) in every dtype: with squared
    # norms near 1e-13 the double 1e-12 moved the value by 2e-10
    a, b = np.array([[3e-7, 1e-7]]), np.array([[1e-7, 2e-7]])
    eps = float(np.float32(1e-12))
    cos = (a * b).sum() / np.sqrt(((a * a).sum() + eps) * ((b * b).sum() + eps))
    assert COS((a, b), np.ones(1)) == pytest.approx(1 - cos, rel=1e-15, abs=0)


def test_smooth_l1_at_a_beta_past_float32s_range_is_its_quadratic_branch():
    # beta inf in float32 made beta·(|d| - |dc|) inf·0: NaN for every element, and a
    # warning from the cast
    p = np.array([3e38, 1.0], np.float32)
    value, pullback = losses.smooth_l1.vjp(p, np.zeros(2, np.float32), "none", beta=1e39)
    np.testing.assert_allclose(value, [0.5 * 3e38 / 1e39 * 3e38, 0.5e-39], rtol=1e-6)
    np.testing.assert_allclose(pullback(np.ones(2, np.float32)), [0.3, 1e-39], rtol=1e-6)
    assert value.dtype == np.float32


def test_smooth_l1_at_beta_0_names_itself_in_its_errors():
    with pytest.raises(ValueError, match=r"^smooth_l1: "):
        losses.smooth_l1(np.zeros((3, 1)), np.zeros(3), beta=0.0)


def test_weights_summing_past_float64_leave_an_unsmoothed_gradient_finite():
    # Σ_c w_c overflowed to inf, and (smoothing 0) · inf made every dz NaN; torch's are finite
    w = np.array([1e308, 1e308])
    _, pullback = losses.softmax_cross_entropy.vjp(np.zeros((1, 2)), np.array([0]),
                                                   "sum", weight=w)
    np.testing.assert_allclose(pullback(1.0), [[-5e307, 5e307]], rtol=1e-12)
