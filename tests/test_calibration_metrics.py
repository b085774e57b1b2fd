"""metrics.brier_score and metrics.calibration_error: the formulas on hand-made cases, an
independent per-bin loop, scikit-learn's brier_score_loss and calibration_curve, torch's
bucketize, and bad input named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import metrics


def _dirichlet(seed: int, n: int, c: int, dtype: type = np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(c) * 0.7, n).astype(dtype)


def _ece_loop(y: np.ndarray, p: np.ndarray, n_bins: int, norm: str) -> float:
    """Guo et al.'s definition, one bin at a time: bin m holds conf in ((m-1)/M, m/M]."""
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    gaps, weights = [], []
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if m else (conf <= hi)
        if inside.any():
            gaps.append(abs(np.mean(pred[inside] == y[inside]) - np.mean(conf[inside])))
            weights.append(inside.mean())
    g, w = np.array(gaps), np.array(weights)
    return {"l1": float(np.sum(w * g)), "l2": math.sqrt(np.sum(w * g * g)),
            "max": float(g.max())}[norm]


# ---------------------------------------------------------------------------- brier_score

def test_brier_by_hand() -> None:
    y = np.array([0, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    want = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.3**2 + 0.4**2)) / 2
    assert metrics.brier_score(y, p) == pytest.approx(want, rel=1e-14)   # C = 3: not halved
    assert metrics.brier_score(y, p, scale_by_half=True) == pytest.approx(want / 2, rel=1e-14)
    # binary (N,): class 1's probability, mean (p - y)² under 'auto'
    assert metrics.brier_score([0, 1, 1], [0.2, 0.9, 0.4]) == pytest.approx(
        (0.04 + 0.01 + 0.36) / 3, rel=1e-14)
    assert metrics.brier_score([0, 1, 1], [0.2, 0.9, 0.4], scale_by_half=False) == pytest.approx(
        2 * (0.04 + 0.01 + 0.36) / 3, rel=1e-14)
    assert metrics.brier_score([1, 0], [[0.0, 1.0], [1.0, 0.0]]) == 0.0


def test_brier_keeps_input_and_dtype() -> None:
    p = _dirichlet(0, 50, 4)
    y = np.arange(50) % 4
    before = p.copy()
    v64 = metrics.brier_score(y, p)
    np.testing.assert_array_equal(p, before)                 # the one-hot not taken off p
    v32 = metrics.brier_score(y, p.astype(np.float32))
    assert type(v64) is float and type(v32) is float
    assert v32 == pytest.approx(v64, rel=1e-6)


@pytest.mark.parametrize("c", [2, 3, 5])
def test_brier_matches_sklearn(c: int) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    p = _dirichlet(c, 200, c)
    y = np.random.default_rng(c).integers(0, c, 200)
    y[:c] = np.arange(c)                                      # every class present, for sklearn
    for half in ("auto", True, False):
        want = sk.brier_score_loss(y, p, scale_by_half=half, labels=np.arange(c))
        assert metrics.brier_score(y, p, scale_by_half=half) == pytest.approx(want, rel=1e-12)
    if c == 2:
        want = sk.brier_score_loss(y, p[:, 1])
        assert metrics.brier_score(y, p[:, 1]) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------- calibration_error

def test_ece_by_hand() -> None:
    # 4 examples, 5 bins: confidences 0.6 (on the edge: bin (0.4, 0.6]), 0.5, 0.9, 1.0
    p = np.array([[0.6, 0.4], [0.5, 0.5], [0.1, 0.9], [0.0, 1.0]])
    y = np.array([1, 0, 1, 1])
    # bin (0.4, 0.6]: conf 0.6, 0.5, hits 0, 1 -> |0.5 - 0.55| = 0.05, weight 1/2
    # bin (0.8, 1.0]: conf 0.9, 1.0, hits 1, 1 -> |1 - 0.95| = 0.05, weight 1/2
    assert metrics.calibration_error(y, p, n_bins=5) == pytest.approx(0.05, rel=1e-12)
    assert metrics.calibration_error(y, p, n_bins=5, norm="max") == pytest.approx(0.05, rel=1e-12)
    assert metrics.calibration_error(y, p, n_bins=5, norm="l2") == pytest.approx(0.05, rel=1e-12)
    # one bin: |accuracy - mean confidence| = |0.75 - 0.75|
    assert metrics.calibration_error(y, p, n_bins=1) == pytest.approx(0.0, abs=1e-15)
    # confidences on exact edges (0.5, 0.75 of 4 bins) go to the bin below: (0.25, 0.5] holds
    # 0.5 (gap 0.5), (0.5, 0.75] holds 0.75 and 0.7 (hits 1, 0: gap 0.225), (0.75, 1] 0.9
    # (gap 0.1); left-closed bins, [0.5, 0.75) and [0.75, 1), would give 0.1375
    p = np.array([[0.75, 0.25], [0.7, 0.3], [0.9, 0.1], [0.5, 0.5]])
    y = np.array([0, 1, 0, 0])                               # the last: argmax's first column
    want = 0.25 * 0.5 + 0.5 * 0.225 + 0.25 * 0.1
    assert metrics.calibration_error(y, p, n_bins=4) == pytest.approx(want, rel=1e-12)
    # over-confident: all 0.9, half right
    p = np.tile([0.9, 0.1], (4, 1))
    assert metrics.calibration_error([0, 1, 0, 1], p) == pytest.approx(0.4, rel=1e-12)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_a_loop(norm: str, n_bins: int) -> None:
    p = _dirichlet(n_bins, 300, 4)
    y = np.random.default_rng(1).integers(0, 4, 300)
    got = metrics.calibration_error(y, p, n_bins=n_bins, norm=norm)
    assert got == pytest.approx(_ece_loop(y, p, n_bins, norm), rel=1e-12, abs=1e-15)
    got32 = metrics.calibration_error(y, p.astype(np.float32), n_bins=n_bins, norm=norm)
    assert type(got32) is float


def test_ece_binary_matches_sklearn_calibration_curve() -> None:
    cal = pytest.importorskip("sklearn.calibration")
    rng = np.random.default_rng(3)
    p = rng.random(500)
    p[:3] = [0.0, 0.3, 1.0]                                  # 0 and an edge and 1
    y = (rng.random(500) < p**1.5).astype(np.int64)
    prob_true, prob_pred = cal.calibration_curve(y, p, n_bins=10)
    bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p)
    count = np.bincount(bins, minlength=10)
    w = count[count > 0] / len(p)
    want = float(np.sum(w * np.abs(prob_true - prob_pred)))
    assert metrics.calibration_error(y, p, n_bins=10) == pytest.approx(want, rel=1e-12)
    assert metrics.calibration_error(y, p, n_bins=10, norm="max") == pytest.approx(
        float(np.max(np.abs(prob_true - prob_pred))), rel=1e-12)


def test_ece_against_torch_bucketize() -> None:
    torch = pytest.importorskip("torch")
    p = _dirichlet(7, 400, 3)
    p[0] = [0.6, 0.2, 0.2]                                    # confidences on bin edges
    p[1] = [0.2, 0.8, 0.0]
    y = np.random.default_rng(7).integers(0, 3, 400)
    pt = torch.tensor(p, dtype=torch.float64)
    conf, pred = pt.max(dim=1)
    hit = (pred == torch.tensor(y)).double()
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)[1:-1]
    idx = torch.bucketize(conf, edges, right=False)           # edges[i-1] < conf <= edges[i]
    count = torch.zeros(10, dtype=torch.float64).scatter_add_(0, idx, torch.ones_like(conf))
    diff = torch.zeros(10, dtype=torch.float64).scatter_add_(0, idx, hit - conf)
    want = float((diff.abs() / len(y)).sum())
    assert count.sum() == len(y)
    assert metrics.calibration_error(y, p, n_bins=10) == pytest.approx(want, rel=1e-12)
    onehot = torch.nn.functional.one_hot(torch.tensor(y), 3).double()
    brier = float(((pt - onehot) ** 2).sum(dim=1).mean())
    assert metrics.brier_score(y, p) == pytest.approx(brier, rel=1e-12)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("fn", [metrics.brier_score, metrics.calibration_error])
@pytest.mark.parametrize(("y", "p", "exc", "words"), [
    ([0, 1], [[0.5, 0.6], [0.5, 0.5]], ValueError, "row 0 sums to 1.1"),
    ([0, 1], [[1.5, -0.5], [0.5, 0.5]], ValueError, "must lie in [0, 1]"),
    ([0, 2], [[0.5, 0.5], [0.5, 0.5]], ValueError, "class indices in 0 .. 1"),
    ([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]], ValueError, "one entry per example, got 3 and 2"),
    ([0.0, 1.0], [[0.5, 0.5], [0.5, 0.5]], TypeError, "must be integer labels"),
    ([0, 1], [[0.5], [0.5]], ValueError, "has one column"),
    ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], ValueError, "contains NaN"),
    ([], np.zeros((0, 2)), ValueError, "empty"),
])
def test_bad_probabilities_named(fn: object, y: object, p: object, exc: type,
                                 words: str) -> None:
    name = fn.__name__  # type: ignore[attr-defined]
    with pytest.raises(exc, match=f"metrics.{name}") as info:
        fn(y, p)  # type: ignore[operator]
    assert words in str(info.value)


def test_bad_options_named() -> None:
    y, p = [0, 1], [[0.5, 0.5], [0.2, 0.8]]
    with pytest.raises(ValueError, match=r"metrics.calibration_error: n_bins must be >= 1"):
        metrics.calibration_error(y, p, n_bins=0)
    with pytest.raises(TypeError, match=r"metrics.calibration_error: n_bins must be an int"):
        metrics.calibration_error(y, p, n_bins=2.5)
    with pytest.raises(ValueError, match=r"n_bins must be at most"):
        metrics.calibration_error(y, p, n_bins=2**40)
    with pytest.raises(ValueError, match=r"norm must be 'l1', 'l2' or 'max', got 'L1'"):
        metrics.calibration_error(y, p, norm="L1")
    with pytest.raises(TypeError, match=r"scale_by_half must be True, False or 'auto', got 'yes'"):
        metrics.brier_score(y, p, scale_by_half="yes")
