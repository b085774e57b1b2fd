"""Losses at the edges of the float range: NaN and ±inf rows of the cosine losses (NaN in
that row's value and gradient, as torch's and optax's, other rows unchanged) and the hinge
and margin losses at ±(dtype maximum) and ±inf (no NumPy warning: the suite runs with -W
error; an overflowing value or gradient is inf, as torch's in that dtype). The plain tests
need no peer; the cross-checks against torch (and optax for ntxent) skip without them."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import losses

COSINES = [losses.cosine_similarity, losses.cosine_distance]
DTYPES = [np.float32, np.float64]
F32MAX = float(np.finfo(np.float32).max)
RNG = np.random.default_rng(11)
A = RNG.normal(size=(4, 3))
B = RNG.normal(size=(4, 3))
SIGNS = np.where(np.arange(12).reshape(4, 3) % 2, 1.0, -1.0)
LABELS = np.array([0, 1, 2, 0])
LISTS = np.array([[0, -1, -1], [1, 2, -1], [2, -1, -1], [0, 1, 2]])


def _spoiled(base: np.ndarray, bad: float) -> list[np.ndarray]:
    """Copies of ``base`` with ``bad`` at one entry of row 0; the second also spoils row 2."""
    one = base.copy()
    one[0, 1] = bad
    two = one.copy()
    two[2, 0] = bad
    return [one, two]


# ---------------------------------------------------------------------------- cosine losses

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("loss", COSINES, ids=["similarity", "distance"])
def test_cosine_nonfinite_row_is_nan_others_unchanged(loss, bad, epsilon, dtype):
    """A NaN (was: a silent 0 similarity, 1 distance, zero gradient) or an inf (was: an
    'invalid value' warning) in a row of pred or of target: that row's value and its whole
    gradient row are NaN; the finite rows keep the values and gradients of the clean input."""
    a, b = A.astype(dtype), B.astype(dtype)
    clean, clean_pb = loss.vjp(a, b, epsilon=epsilon, reduction="none")
    clean_g = clean_pb()
    for sa, sb in zip(_spoiled(a, bad), _spoiled(b, bad), strict=True):
        nan_rows = ~np.isfinite(sa).all(-1)
        for pred, target in ((sa, b), (a, sb)):  # the bad entry in pred, then in target
            value, pullback = loss.vjp(pred, target, epsilon=epsilon, reduction="none")
            g = pullback()
            assert value.dtype == dtype and g.dtype == dtype
            np.testing.assert_array_equal(np.isnan(value), nan_rows)
            assert np.isnan(g[nan_rows]).all()
            np.testing.assert_array_equal(value[~nan_rows], clean[~nan_rows])
            np.testing.assert_array_equal(g[~nan_rows], clean_g[~nan_rows])
            mean, mean_pb = loss.vjp(pred, target, epsilon=epsilon)
            assert np.isnan(mean) and np.isnan(mean_pb()[nan_rows]).all()


@pytest.mark.parametrize("loss", COSINES, ids=["similarity", "distance"])
def test_cosine_zero_row_at_epsilon_0_still_gives_0(loss):
    """What the NaN rule must not change: a zero row at epsilon 0 (optax: 0/0) gives the
    cosine 0 and a zero gradient, documented."""
    a = A.copy()
    a[1] = 0
    value, pullback = loss.vjp(a, B, reduction="none")
    assert value[1] == (0.0 if loss is losses.cosine_similarity else 1.0)
    np.testing.assert_array_equal(pullback()[1], 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_ntxent_nonfinite_embedding_is_nan_quietly(bad):
    """ntxent shares the cosine's normalisation: an inf embedding gave an 'invalid value'
    warning; now, as a NaN one, it makes every anchor's term NaN (each meets it as a
    positive or a negative), with no warning."""
    x = RNG.normal(size=(4, 3))
    x[1, 0] = bad
    value, pullback = losses.ntxent.vjp(x, np.array([0, 0, 1, 1]), reduction="none")
    assert np.isnan(value).all() and np.isnan(pullback(np.ones(4))).all()


# ---------------------------------------------------------------------------- hinges at max

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_squared_hinge_at_the_dtype_maximum_is_inf_quietly(sign, dtype):
    """x = ±max against ±1: where x y = -max the square and its slope 2 (1 - x y) are past
    the range: value and gradient inf (slope sign -y), as torch's; was an overflow warning.
    Elsewhere the hinge is inactive: 0, gradient 0."""
    big = float(np.finfo(dtype).max)
    x = np.full((4, 3), sign * big, dtype)
    active = sign * SIGNS < 0
    for red in ("mean", "sum", "none"):
        value, pullback = losses.squared_hinge.vjp(x, SIGNS, reduction=red)
        g = pullback()
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, np.where(active, -SIGNS * np.inf, 0))
        if red == "none":
            np.testing.assert_array_equal(value, np.where(active, np.inf, 0))
        else:
            assert value == np.inf
    # a zero cotangent on an inf slope: 0 · inf, NaN as in torch, without a warning
    _, pullback = losses.squared_hinge.vjp(x, SIGNS, reduction="none")
    assert np.isnan(pullback(np.zeros((4, 3)))[active]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill", [1.0, -1.0, np.inf, -np.inf])
def test_poly_hinge_module_quiet_at_plus_minus_max_and_inf(fill, dtype):
    """Every loss of _poly_hinge at ±max (finite: no NaN either) and ±inf: no warning."""
    big = float(np.finfo(dtype).max)
    x = np.full((4, 3), fill * big if np.isfinite(fill) else fill, dtype)
    calls = [(losses.hinge, SIGNS), (losses.squared_hinge, SIGNS),
             (losses.poly_loss_cross_entropy, LABELS)]
    for loss, target in calls:
        for red in ("mean", "sum", "none"):
            value, pullback = loss.vjp(x, target, reduction=red)
            g = pullback()
            if np.isfinite(fill):
                assert not np.isnan(value).any() and not np.isnan(g).any(), loss


# ---------------------------------------------------------------------------- margins

def _margin_calls() -> list[tuple]:
    hard = (SIGNS > 0).astype(float)
    w = np.array([0.5, 1.0, 2.0])
    return [(losses.hinge_embedding, SIGNS, {}), (losses.soft_margin, SIGNS, {}),
            (losses.multi_margin, LABELS, {}),
            (losses.multi_margin, LABELS, {"p": 2, "weight": w}),
            (losses.multilabel_soft_margin, hard, {}),
            (losses.multilabel_soft_margin, 1 - hard, {"weight": w}),
            (losses.multilabel_soft_margin, np.full((4, 3), 0.5), {}),
            (losses.multilabel_margin, LISTS, {})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill", [1.0, -1.0, np.inf, -np.inf, "mixed"])
def test_margin_losses_quiet_at_plus_minus_max_and_inf(fill, dtype):
    """Every loss of _margins at ±max, at ±inf and at a mix of ±max: no warning (was: an
    overflow in multilabel_soft_margin's sum over classes and in multi_margin's 2 h, an
    invalid value in hinge_embedding's sum of -inf and inf); finite input gives no NaN."""
    big = float(np.finfo(dtype).max)
    if fill == "mixed":
        x = np.array([[big, -big, 0], [big, big, big], [-big, -big, -big], [1, big, -big]],
                     dtype)
    else:
        x = np.full((4, 3), fill * big if np.isfinite(fill) else fill, dtype)
    for loss, target, kw in _margin_calls():
        for red in ("mean", "sum", "none"):
            value, pullback = loss.vjp(x, target, reduction=red, **kw)
            g = pullback()
            assert g.dtype == dtype
            if np.isfinite(x).all():
                assert not np.isnan(value).any() and not np.isnan(g).any(), (loss, kw, red)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_soft_margin_at_minus_max_is_inf_gradient_finite(dtype):
    """The reported case: -max logits against 0/1 targets. Each t = 1 term is max, a row's
    sum past the range: inf, as torch's; the gradient (σ(x) - t) / C is -1/C or 0."""
    big = float(np.finfo(dtype).max)
    t = np.array([[1.0, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 1]])
    value, pullback = losses.multilabel_soft_margin.vjp(np.full((4, 3), -big, dtype), t,
                                                        reduction="none")
    np.testing.assert_array_equal(value, [np.inf, np.inf, 0, np.inf])
    np.testing.assert_allclose(pullback(), -t / 3, rtol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_margin_p2_gradient_of_a_huge_margin_stays_finite(dtype):
    """z = 1 - x_y + x_i = max: the value z²/C is inf, but the gradient 2 z / C = 2 max/3
    fits, as torch's 2 g z (was 2 z, inf, with an overflow warning)."""
    big = float(np.finfo(dtype).max)
    x = np.array([[big, 0, 0]], dtype)
    value, pullback = losses.multi_margin.vjp(x, np.array([1]), p=2)
    assert value == np.inf
    dx = pullback()
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx, [[big * (2 / 3), -big * (2 / 3), 2 / 3]], rtol=1e-6)


def test_hinge_embedding_minus_inf_sums_to_nan_quietly():
    """x = -inf: the y = 1 term is -inf, the y = -1 term inf; their sum NaN, as torch's
    (was an 'invalid value' warning); the gradient stays 1, -1."""
    x = np.array([-np.inf, -np.inf])
    for red in ("mean", "sum"):
        value, pullback = losses.hinge_embedding.vjp(x, np.array([1.0, -1.0]), reduction=red)
        assert np.isnan(value)
        np.testing.assert_array_equal(pullback(), np.array([1, -1]) / (2 if red == "mean" else 1))


# ---------------------------------------------------------------------------- peers

def _torch_value_grad(fn, x, dtype, *args):
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    value = fn(tx, *args)
    value.backward()
    return value.detach().numpy(), tx.grad.numpy()


def _same(ours, theirs, rtol=1e-6):
    """Equal NaN and inf patterns (signs included), close finite parts."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    fin = np.isfinite(theirs)
    np.testing.assert_array_equal(ours[~fin & ~np.isnan(ours)],
                                  theirs[~fin & ~np.isnan(theirs)])
    np.testing.assert_allclose(ours[fin], theirs[fin], rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("loss", COSINES, ids=["similarity", "distance"])
def test_cosine_nonfinite_rows_as_torch(loss, bad, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    sign = 1 if loss is losses.cosine_similarity else -1
    for sa, sb in zip(_spoiled(A, bad), _spoiled(B, bad), strict=True):
        for pred, target in ((sa, B), (A, sb)):
            p, t = pred.astype(dtype), target.astype(dtype)
            tt = torch.tensor(t)
            ref, ref_g = _torch_value_grad(
                lambda v, w: (sign * F.cosine_similarity(v, w, dim=-1)).sum(), p, dtype, tt)
            value, pullback = loss.vjp(p, t, reduction="sum")
            _same(value - (0 if sign > 0 else len(p)), ref)
            _same(pullback(), ref_g)
            rows = losses.cosine_similarity(p, t, reduction="none")
            _same(rows, F.cosine_similarity(torch.tensor(p), tt, dim=-1).numpy())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_ntxent_nonfinite_embedding_as_optax(bad):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    x[1, 0] = bad
    labels = np.array([0, 0, 1, 1])
    ref, ref_g = jax.value_and_grad(lambda e: optax.losses.ntxent(e, labels))(x)
    value, pullback = losses.ntxent.vjp(x, labels)
    _same(value, np.asarray(ref))
    _same(pullback(), np.asarray(ref_g))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill", [F32MAX, -F32MAX, "max", "-max"])
def test_squared_hinge_extremes_as_torch(fill, dtype):
    torch = pytest.importorskip("torch")
    big = float(np.finfo(dtype).max)
    v = {"max": big, "-max": -big}.get(fill, fill)
    x = np.full((4, 3), v, dtype)
    y = torch.tensor(SIGNS.astype(dtype))
    for red, reduce in (("mean", torch.mean), ("sum", torch.sum)):
        ref, ref_g = _torch_value_grad(
            lambda t, r: r(torch.clamp(1 - t * y, min=0) ** 2), x, dtype, reduce)
        value, pullback = losses.squared_hinge.vjp(x, SIGNS, reduction=red)
        _same(value, ref)
        _same(pullback(), ref_g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill", [F32MAX, -F32MAX, "max", "-max"])
def test_multilabel_soft_margin_extremes_as_torch(fill, dtype):
    torch = pytest.importorskip("torch")
    big = float(np.finfo(dtype).max)
    v = {"max": big, "-max": -big}.get(fill, fill)
    x = np.full((4, 3), v, dtype)
    t = (SIGNS > 0).astype(dtype)
    ref, ref_g = _torch_value_grad(
        lambda z: torch.nn.functional.multilabel_soft_margin_loss(z, torch.tensor(t)), x, dtype)
    value, pullback = losses.multilabel_soft_margin.vjp(x, t)
    _same(value, ref)
    _same(pullback(), ref_g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", [None, [0.5, 2.0, 1.0]])
def test_multi_margin_huge_margin_as_torch(weight, dtype):
    """torch's 2 g z: finite 2 max/3 unweighted, inf once the weight 2 doubles it."""
    torch = pytest.importorskip("torch")
    big = float(np.finfo(dtype).max)
    x = np.array([[big, 0, 0]], dtype)
    tw = None if weight is None else torch.tensor(np.array(weight, dtype))
    ref, ref_g = _torch_value_grad(
        lambda z: torch.nn.functional.multi_margin_loss(z, torch.tensor([1]), p=2, weight=tw),
        x, dtype)
    value, pullback = losses.multi_margin.vjp(x, np.array([1]), p=2, weight=weight)
    _same(value, ref)
    _same(pullback(), ref_g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_embedding_minus_inf_as_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.array([-np.inf, -np.inf, 2.0], dtype)
    y = np.array([1.0, -1.0, -1.0])
    ref, ref_g = _torch_value_grad(
        lambda z: torch.nn.functional.hinge_embedding_loss(
            z, torch.tensor(y.astype(dtype)), reduction="sum"), x, dtype)
    value, pullback = losses.hinge_embedding.vjp(x, y, reduction="sum")
    _same(value, ref)
    _same(pullback(), ref_g)
