"""ntxent, cosine_similarity / cosine_distance, poly_loss_cross_entropy, hinge,
squared_hinge, sparsemax, multiclass_sparsemax and the Sparsemax layer: finite
differences in float64, naive loop references (a wrong sign or factor fails them),
closed forms, float32 kept, large inputs, and bad inputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from funcdl import losses
from funcdl.layers.sparsemax import Sparsemax
from funcdl.testing import check_layer, check_loss, check_vjp

R = np.random.default_rng(3)


# ---------------------------------------------------------------------------- naive references

def naive_unit(a: np.ndarray, eps: float) -> np.ndarray:
    return a / math.sqrt(max(float(a @ a), eps))


def naive_ntxent(x: np.ndarray, y: np.ndarray, tau: float) -> float:
    n, eps = len(x), float(np.finfo(x.dtype).eps)
    u = [naive_unit(r, eps) for r in x]
    total, count = 0.0, 0
    for i in range(n):
        for j in range(n):
            if i == j or y[i] != y[j]:
                continue
            negs = sum(math.exp(u[i] @ u[k] / tau) for k in range(n) if y[k] != y[i])
            pos = math.exp(u[i] @ u[j] / tau)
            total -= math.log(pos / (pos + negs))
            count += 1
    return total / count


def naive_projection(v: np.ndarray) -> np.ndarray:
    """By bisection on τ (not the sort): Σ max(v - τ, 0) = 1."""
    lo, hi = v.max() - 1, v.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > 1 else (lo, mid)
    return np.maximum(v - (lo + hi) / 2, 0)


def numeric_grad(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _sum_value_grad(loss: Any, x: np.ndarray, t: Any, **kw: Any) -> tuple[float, np.ndarray]:
    value, pullback = loss.vjp(x, t, reduction="sum", **kw)
    return value, pullback(1.0)


# ---------------------------------------------------------------------------- ntxent

LABELS6 = np.array([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ntxent_finite_differences(reduction: str) -> None:
    check_loss(losses.ntxent, R.normal(size=(6, 4)), LABELS6, reduction=reduction)
    check_loss(losses.ntxent, R.normal(size=(5, 3)), np.array([1, 1, 1, 4, 4]),
               temperature=0.5, reduction=reduction)


def test_ntxent_against_naive_loops() -> None:
    x = R.normal(size=(7, 3))
    y = np.array([0, 1, 0, 2, 1, 0, 3])  # three in group 0, a singleton: all pair kinds
    for tau in (0.07, 0.5, 3.0):
        value, pullback = losses.ntxent.vjp(x, y, temperature=tau)
        assert value == pytest.approx(naive_ntxent(x, y, tau), rel=1e-12)
        np.testing.assert_allclose(pullback(1.0), numeric_grad(
            lambda z, t=tau: naive_ntxent(z, y, t), x), rtol=1e-5, atol=1e-7)


def test_ntxent_closed_form_and_reductions() -> None:
    x = np.array([[1.0, 0.0], [2.0, 0.0], [-3.0, 0.0]])
    y = np.array([0, 0, 1])  # two positives (0,1), (1,0), each against the one negative
    tau = 0.5
    one = math.log1p(math.exp(-2 / tau))
    assert losses.ntxent(x, y, temperature=tau) == pytest.approx(one, rel=1e-14)
    assert losses.ntxent(x, y, temperature=tau, reduction="sum") == pytest.approx(2 * one)
    np.testing.assert_allclose(losses.ntxent(x, y, temperature=tau, reduction="none"),
                               [one, one, 0.0], rtol=1e-14)
    # no negative anywhere: every positive's softmax is 1
    assert losses.ntxent(R.normal(size=(3, 2)), np.zeros(3, int)) == 0.0


def test_ntxent_stable_float32_and_zero_rows() -> None:
    x = (R.normal(size=(6, 4)) * 80).astype(np.float32)
    x[2] = 0.0  # optax's norm clip: u = 0, similarity 0 with every row, finite gradient
    value, pullback = losses.ntxent.vjp(x, LABELS6, temperature=0.01)  # s up to 100
    g = pullback(1.0)
    assert g.dtype == np.float32 and math.isfinite(value) and np.isfinite(g).all()
    v64 = losses.ntxent(x.astype(np.float64), LABELS6, temperature=0.01)
    assert value == pytest.approx(v64, rel=1e-4)
    # similarities 1e4 apart (temperature 1e-4): a naive exp overflows, here finite
    value, pullback = losses.ntxent.vjp(R.normal(size=(6, 4)), LABELS6, temperature=1e-4)
    assert math.isfinite(value) and np.isfinite(pullback(1.0)).all()


# ---------------------------------------------------------------------------- cosine

@pytest.mark.parametrize("which", ["cosine_similarity", "cosine_distance"])
@pytest.mark.parametrize("epsilon", [0.0, 2.0])
def test_cosine_finite_differences(which: str, epsilon: float) -> None:
    x = R.normal(size=(4, 2, 3))
    x[1, 0] *= 0.1  # under the clip of 2: its branch too
    check_loss(getattr(losses, which), x, R.normal(size=(4, 2, 3)), epsilon=epsilon)


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_cosine_against_naive(epsilon: float) -> None:
    x, t = R.normal(size=(5, 3)), R.normal(size=(5, 3))
    x[0] *= 0.2

    def sim(z: np.ndarray) -> float:
        return sum(float(naive_unit(a, epsilon) @ naive_unit(b, epsilon)) for a, b in zip(z, t))

    value, g = _sum_value_grad(losses.cosine_similarity, x, t, epsilon=epsilon)
    assert value == pytest.approx(sim(x), rel=1e-12)
    np.testing.assert_allclose(g, numeric_grad(sim, x), rtol=1e-6, atol=1e-8)
    value, g2 = _sum_value_grad(losses.cosine_distance, x, t, epsilon=epsilon)
    assert value == pytest.approx(5 - sim(x), rel=1e-12)
    np.testing.assert_allclose(g2, -g, rtol=1e-14)


def test_cosine_closed_forms_zero_rows_and_extremes() -> None:
    x = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0], [1e-200, 1e-200], [1e200, -1e200]])
    t = np.array([[0.0, 2.0], [1.0, 1.0], [6.0, 8.0], [1.0, 1.0], [1.0, -1.0]])
    value, pullback = losses.cosine_similarity.vjp(x, t, reduction="none")
    np.testing.assert_allclose(value, [0.0, 0.0, 1.0, 1.0, 1.0], atol=1e-15)
    g = pullback()
    assert np.isfinite(g).all() and (g[1] == 0).all()  # a zero row: 0 and no gradient
    np.testing.assert_allclose(g[0], [0.0, 1.0])  # (b̂ - â cos) / |a|
    assert losses.cosine_distance(np.ones((2, 3), np.float32), np.ones((2, 3))) == (
        pytest.approx(0.0, abs=1e-6))
    x32 = (R.normal(size=(3, 4)) * 80).astype(np.float32)
    _, pullback = losses.cosine_distance.vjp(x32, R.normal(size=(3, 4)))
    assert pullback(1.0).dtype == np.float32


# ---------------------------------------------------------------------------- poly

def naive_poly(z: np.ndarray, t: np.ndarray, eps: float) -> float:
    total = 0.0
    for zr, tr in zip(z, t):
        p = np.exp(zr - zr.max()) / np.exp(zr - zr.max()).sum()
        total += float(-(tr * np.log(p)).sum() + eps * (tr * (1 - p)).sum())
    return total


@pytest.mark.parametrize("epsilon", [2.0, -1.0, 0.5])
def test_poly_against_naive_and_finite_differences(epsilon: float) -> None:
    z = R.normal(size=(4, 5)) * 2
    t = R.random((4, 5))
    t /= t.sum(-1, keepdims=True)
    check_loss(losses.poly_loss_cross_entropy, z, t, epsilon=epsilon)
    value, g = _sum_value_grad(losses.poly_loss_cross_entropy, z, t, epsilon=epsilon)
    assert value == pytest.approx(naive_poly(z, t, epsilon), rel=1e-12)
    np.testing.assert_allclose(g, numeric_grad(lambda w: naive_poly(w, t, epsilon), z),
                               rtol=1e-6, atol=1e-8)


def test_poly_labels_one_hot_closed_form_and_extremes() -> None:
    z = R.normal(size=(3, 4))
    y = np.array([0, 3, 1])
    hot = np.eye(4)[y]
    a = losses.poly_loss_cross_entropy(z, y)
    assert a == losses.poly_loss_cross_entropy(z, hot)
    assert a == losses.poly_loss_cross_entropy(z, hot.astype(int))
    # equal logits: -log(1/C) + ε (1 - 1/C)
    assert losses.poly_loss_cross_entropy(np.zeros((1, 4)), [2], epsilon=2.0) == (
        pytest.approx(math.log(4) + 2 * 0.75, rel=1e-15))
    for scale, dtype in ((1e4, np.float64), (80.0, np.float32)):
        x = (R.normal(size=(3, 4)) * scale).astype(dtype)
        value, pullback = losses.poly_loss_cross_entropy.vjp(x, y)
        g = pullback(1.0)
        assert math.isfinite(value) and np.isfinite(g).all() and g.dtype == dtype


# ---------------------------------------------------------------------------- hinges

def test_hinges_finite_differences_closed_forms_and_kink() -> None:
    x = R.normal(size=(4, 3)) * 2
    t = np.sign(R.normal(size=(4, 3)))
    check_loss(losses.hinge, x, t)
    check_loss(losses.squared_hinge, x, t)
    x = np.array([0.5, -2.0, 1.0, 3.0])
    t = np.array([1.0, 1.0, 1.0, -1.0])
    value, pullback = losses.hinge.vjp(x, t, reduction="none")
    np.testing.assert_array_equal(value, [0.5, 3.0, 0.0, 4.0])
    np.testing.assert_array_equal(pullback(), [-1.0, -1.0, -0.5, 1.0])  # kink: JAX's half
    value, pullback = losses.squared_hinge.vjp(x, t, reduction="none")
    np.testing.assert_array_equal(value, [0.25, 9.0, 0.0, 16.0])
    np.testing.assert_array_equal(pullback(), [-1.0, -6.0, 0.0, 8.0])
    _, pullback = losses.squared_hinge.vjp(x.astype(np.float32), t)
    assert pullback(1.0).dtype == np.float32


# ---------------------------------------------------------------------------- sparsemax

def test_binary_sparsemax_closed_form_and_finite_differences() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0, 0.5])
    y = np.array([0, 0, 0, 0, 0, 1])
    value, pullback = losses.sparsemax.vjp(x, y, reduction="none")
    np.testing.assert_allclose(value, [0.0, 0.0625, 0.25, 0.5625, 2.0, 0.0625], rtol=1e-15)
    np.testing.assert_allclose(pullback(), [0.0, 0.25, 0.5, 0.75, 1.0, -0.25], rtol=1e-15)
    check_loss(losses.sparsemax, R.normal(size=(4, 3)) * 1.5, R.integers(0, 2, (4, 3)))
    check_loss(losses.sparsemax, R.normal(size=(4, 3)), R.integers(0, 2, (4, 3)) == 1)


def naive_multiclass(z: np.ndarray, y: np.ndarray) -> float:
    total = 0.0
    for zr, yr in zip(z, y):
        p = naive_projection(zr)
        total += float(p @ zr - zr[yr] + 0.5 * (1 - p @ p))
    return total


def test_multiclass_sparsemax_against_naive_and_finite_differences() -> None:
    z = R.normal(size=(5, 4)) * 2
    y = R.integers(0, 4, 5)
    check_loss(losses.multiclass_sparsemax, z, y)
    check_loss(losses.multiclass_sparsemax, z.reshape(5, 1, 4), y.reshape(5, 1),
               reduction="none")
    value, g = _sum_value_grad(losses.multiclass_sparsemax, z, y)
    assert value == pytest.approx(naive_multiclass(z, y), rel=1e-10)
    np.testing.assert_allclose(g, numeric_grad(lambda w: naive_multiclass(w, y), z),
                               rtol=1e-5, atol=1e-7)
    # a confident right answer costs 0; far-apart logits stay finite in both dtypes
    assert losses.multiclass_sparsemax(np.array([[5.0, 0.0, 0.0]]), [0]) == 0.0
    for scale, dtype in ((1e4, np.float64), (80.0, np.float32)):
        value, pullback = losses.multiclass_sparsemax.vjp(
            (R.normal(size=(5, 4)) * scale).astype(dtype), y)
        g = pullback(1.0)
        assert math.isfinite(value) and np.isfinite(g).all() and g.dtype == dtype


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_sparsemax_layer_checks(axis: int) -> None:
    check_layer(Sparsemax(axis=axis), (None, 4, 5) if axis != 0 else (None, 5),
                independent_rows=axis != 0)
    check_vjp(Sparsemax(axis=axis), (), R.normal(size=(3, 4, 5)) * 2)


def test_sparsemax_layer_against_naive_and_extremes() -> None:
    x = R.normal(size=(4, 6)) * 2
    dy = R.normal(size=(4, 6))
    y, pullback = Sparsemax().vjp((), x)
    want = np.stack([naive_projection(r) for r in x])
    np.testing.assert_allclose(y, want, atol=1e-12)
    jac = [np.diag(r > 0) - np.outer(r > 0, r > 0) / (r > 0).sum() for r in want]
    np.testing.assert_allclose(pullback(dy)[1], np.stack([j @ d for j, d in zip(jac, dy)]),
                               atol=1e-12)
    assert (Sparsemax().apply((), np.array([[1.0, 0.0, -1.0]])) == [[1.0, 0.0, 0.0]]).all()
    np.testing.assert_allclose(Sparsemax().apply((), np.array([[0.2, 0.1, -1.0]])),
                               [[0.55, 0.45, 0.0]], rtol=1e-14)
    big = np.array([[1e4, 1e4 - 0.5, -1e4]])
    np.testing.assert_allclose(Sparsemax().apply((), big), [[0.75, 0.25, 0.0]])
    x32 = (R.normal(size=(3, 5)) * 80).astype(np.float32)
    y32, pullback = Sparsemax().vjp((), x32)
    assert y32.dtype == np.float32 and pullback(np.ones_like(y32))[1].dtype == np.float32
    np.testing.assert_allclose(y32.sum(-1), 1, rtol=1e-6)
    # a tie at the top: both on the support, the gradient finite
    y, pullback = Sparsemax().vjp((), np.array([[2.0, 2.0, 0.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]])
    assert np.isfinite(pullback(np.ones((1, 3)))[1]).all()


@pytest.mark.parametrize(("dtype", "big"), [(np.float32, 3e38), (np.float64, 1e300)])
def test_extreme_inputs_finite_and_quiet(dtype: Any, big: float) -> None:
    """Entries near the float maximum: no warning (warnings are errors here), finite
    gradients, the value inf only where the true loss is past the range."""
    x = np.array([[big, -big, 1.0], [-big, 0.5, big], [1e-30, 0, 0], [0, 0, 0]], dtype)
    labels = np.array([0, 1, 2, 0])
    calls = [(losses.ntxent, np.array([0, 0, 1, 1]), {}),
             (losses.ntxent, np.array([0, 0, 1, 1]), {"temperature": 1e-30}),
             (losses.cosine_similarity, x[::-1].copy(), {}),
             (losses.cosine_distance, x[::-1].copy(), {"epsilon": 1e-3}),
             (losses.poly_loss_cross_entropy, labels, {}),
             (losses.hinge, np.where(x > 0, 1, -1), {}),
             (losses.squared_hinge, np.where(x > 0, 1, -1), {}),
             (losses.sparsemax, (x > 0).astype(int), {}),
             (losses.multiclass_sparsemax, labels, {})]
    for loss, t, kw in calls:
        value, pullback = loss.vjp(x, t, **kw)
        g = pullback(1.0)
        assert not math.isnan(value) and np.isfinite(g).all() and g.dtype == dtype, loss
    # a norm past the range keeps its direction
    assert losses.cosine_similarity(x[:1, :2], np.array([[1.0, -1.0]])) == pytest.approx(1.0)
    y = Sparsemax().apply((), x)
    np.testing.assert_allclose(y[:2], [[1, 0, 0], [0, 0, 1]])


# ---------------------------------------------------------------------------- bad input

X = R.normal(size=(4, 3))
BAD = [
    (lambda: losses.ntxent(X, np.array([0, 0, 1])), ValueError, r"ntxent: .*shape \(4,\)"),
    (lambda: losses.ntxent(X, np.array([0.0, 0, 1, 1])), TypeError, r"ntxent: .*integer"),
    (lambda: losses.ntxent(X, [0, 0, 1, 1], temperature=0), ValueError,
     r"ntxent: temperature .*> 0"),
    (lambda: losses.ntxent(X, [0, 0, 1, 1], temperature=-1.0), ValueError, r"ntxent"),
    (lambda: losses.ntxent(X.astype(np.float32), [0, 0, 1, 1], temperature=1e-39), ValueError,
     r"ntxent: temperature must be at least .* float32"),
    (lambda: losses.ntxent(X, [0, 1, 2, 3]), ValueError, r"ntxent: no two .*reduction='sum'"),
    (lambda: losses.ntxent(X[:, :, None], [0, 0, 1, 1]), ValueError, r"ntxent: .*\(N, D\)"),
    (lambda: losses.cosine_similarity(X, X[:, :2]), ValueError,
     r"cosine_similarity: pred has shape \(4, 3\) but target has shape \(4, 2\)"),
    (lambda: losses.cosine_distance(X, X, epsilon=-0.1), ValueError,
     r"cosine_distance: epsilon .*>= 0"),
    (lambda: losses.cosine_distance(np.float64(1.0), 1.0), ValueError, r"cosine_distance"),
    (lambda: losses.poly_loss_cross_entropy(X, X[:, :2]), ValueError,
     r"poly_loss_cross_entropy: .*shape"),
    (lambda: losses.poly_loss_cross_entropy(X, [0, 1, 3, 0]), ValueError,
     r"poly_loss_cross_entropy: labels must be in \[0, 3\)"),
    (lambda: losses.poly_loss_cross_entropy(X, np.full((4, 3), 2.0)), ValueError,
     r"poly_loss_cross_entropy: target must hold probabilities"),
    (lambda: losses.poly_loss_cross_entropy(X, np.eye(3)[[0, 1, 2, 0]], epsilon=-2),
     ValueError, r"poly_loss_cross_entropy: epsilon .*>= -1"),
    (lambda: losses.hinge(X, (X > 0).astype(float)), ValueError, r"hinge: .*2 \* target - 1"),
    (lambda: losses.squared_hinge(X, np.ones(4)), ValueError, r"squared_hinge: pred has shape"),
    (lambda: losses.sparsemax(X, np.sign(X)), ValueError, r"sparsemax: .*\(target \+ 1\) // 2"),
    (lambda: losses.multiclass_sparsemax(X, [0, 1, 2, 3]), ValueError,
     r"multiclass_sparsemax: labels must be in \[0, 3\)"),
    (lambda: losses.multiclass_sparsemax(X, [0.0, 1, 2, 0]), TypeError,
     r"multiclass_sparsemax: target must be integer"),
    (lambda: losses.multiclass_sparsemax(X, [0, 1]), ValueError,
     r"multiclass_sparsemax: integer labels must have shape \(4,\)"),
    (lambda: Sparsemax(axis=2).apply((), X), ValueError, r"Sparsemax\(axis=2\): axis 2"),
    (lambda: Sparsemax(axis=1.5), TypeError, r"Sparsemax"),
    (lambda: Sparsemax().apply((), np.float64(1.0)), ValueError, r"Sparsemax\(axis=-1\)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD)
def test_bad_inputs_name_the_loss(call: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype, tiny", [(np.float64, 5e-324), (np.float32, 1e-45)])
def test_cosine_of_a_subnormal_row_gives_an_infinite_gradient_without_a_warning(dtype, tiny):
    # 1/norm is past the range: NumPy's "overflow encountered in divide" escaped (an error
    # under -W error); the gradient along the row's own direction is 0, across it inf
    a = np.array([[tiny, 0.0, 0.0]], dtype)
    b = np.array([[0.0, 1.0, 0.0]], dtype)
    for loss in (losses.cosine_similarity, losses.cosine_distance):
        value, pullback = loss.vjp(a, b)
        g = pullback(1.0)
        assert np.isfinite(value) and g.dtype == dtype
        assert g[0, 0] == 0 and np.isinf(g[0, 1]) and g[0, 2] == 0
