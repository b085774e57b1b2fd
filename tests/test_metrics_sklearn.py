"""funcdl.metrics against sklearn.metrics on random cases, to 1e-12."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from funcdl import metrics

sklearn = pytest.importorskip("sklearn")
skm = pytest.importorskip("sklearn.metrics")

SEEDS = range(16)


def _case(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 40)), int(rng.integers(2, 9))
    # skewed class frequencies so that some classes are never true, never predicted, or
    # neither: the zero-division and absent-class paths
    y = rng.choice(c, n, p=rng.dirichlet(np.full(c, 0.4)))
    # coarse scores make ties common; the prediction agrees with y about half the time
    scores = rng.integers(0, 4, (n, c)).astype(np.float64) / 4
    pred = np.where(rng.random(n) < 0.5, y, rng.choice(c, n, p=rng.dirichlet(np.full(c, 0.4))))
    return rng, n, c, y, scores, pred


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_top_k(seed):
    _, _, c, y, scores, pred = _case(seed)
    assert metrics.accuracy(y, pred) == skm.accuracy_score(y, pred)
    # sklearn takes two-class scores only as one column; a third, lowest, column keeps its
    # multiclass rule (which funcdl follows for every C) without changing any rank
    sk_scores = np.hstack([scores, np.full((len(y), 1), -1.0)]) if c == 2 else scores
    for k in range(1, c + 1):
        want = _quiet(skm.top_k_accuracy_score, y, sk_scores, k=k,
                      labels=np.arange(sk_scores.shape[1]))
        assert metrics.top_k_accuracy(y, scores, k=k) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix(seed, normalize):
    _, _, c, y, _, pred = _case(seed)
    got = metrics.confusion_matrix(y, pred, num_classes=c, normalize=normalize)
    want = _quiet(skm.confusion_matrix, y, pred, labels=np.arange(c), normalize=normalize)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
def test_precision_recall_f1(seed, average, zero_division):
    _, _, c, y, _, pred = _case(seed)
    for num_classes, labels in ((None, None), (c, np.arange(c))):
        if average is None and num_classes is None:
            # funcdl's per-class arrays are indexed 0 .. max label, sklearn's by present label
            labels = np.arange(max(y.max(), pred.max()) + 1)
        got = metrics.precision_recall_f1(y, pred, average, zero_division=zero_division,
                                          num_classes=num_classes)
        want = _quiet(skm.precision_recall_fscore_support, y, pred, average=average,
                      labels=labels, zero_division=zero_division)
        for g, w in zip(got, want, strict=False):
            if w is not None:
                np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_precision_recall_f1_binary(seed, zero_division):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    y, pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    for pos in (0, 1):
        got = metrics.precision_recall_f1(y, pred, "binary", zero_division=zero_division,
                                          pos_label=pos)
        want = _quiet(skm.precision_recall_fscore_support, y, pred, average="binary",
                      labels=[0, 1], pos_label=pos, zero_division=zero_division)
        np.testing.assert_allclose(got, want[:3], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    for scores in (rng.integers(0, 5, n) / 5.0, rng.normal(size=n),
                   rng.random(n).astype(np.float32)):
        want = skm.roc_auc_score(y, scores)
        assert metrics.roc_auc(y, scores) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_log_loss(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 40)), int(rng.integers(2, 6))
    y = rng.integers(0, c, n)
    p = rng.dirichlet(np.full(c, 0.3), n)
    p[0, y[0]] = 0.0  # clipped to eps by both
    p[0] /= p[0].sum()
    want = skm.log_loss(y, p, labels=np.arange(c))
    assert metrics.log_loss(y, p) == pytest.approx(want, rel=1e-12)
    yb = rng.integers(0, 2, n)
    pb = rng.random(n)
    want = skm.log_loss(yb, pb, labels=[0, 1])
    assert metrics.log_loss(yb, pb) == pytest.approx(want, rel=1e-12)
