"""Which key each combinator's children get, as their docstrings say: the ones with several
children (or several uses of one) split the key, child i taking ``random.split(key, n)[i]``;
the wrappers of one child pass it on unsplit. A twin in another framework that reproduces
the dropout masks relies on it."""

from __future__ import annotations

import numpy as np

import funcdl as fd
from funcdl import layers as L

KEY = fd.random.key(7)
X = np.arange(1.0, 17.0).reshape(2, 8)


def _drop(key: fd.random.Key, x: np.ndarray = X) -> np.ndarray:
    return L.Dropout(0.5).apply((), x, key=key, train=True)


def _run(model: L.Layer, x: object, in_shape: object) -> object:
    _, params = model.init(fd.random.key(0), in_shape)
    y = model.apply(params, x, key=KEY, train=True)
    y_vjp = model.vjp(params, x, key=KEY, train=True)[0]
    fd.tree.check_same(y, y_vjp)
    for a, b in zip(fd.tree.leaves(y), fd.tree.leaves(y_vjp)):
        np.testing.assert_array_equal(a, b)
    return y


def test_parallel_and_shared_split_the_key_per_branch() -> None:
    k0, k1 = fd.random.split(KEY, 2)
    for model in (L.Parallel(L.Dropout(0.5), L.Dropout(0.5)), L.Shared(L.Dropout(0.5))):
        y0, y1 = _run(model, (X, X), ((None, 8), (None, 8)))
        np.testing.assert_array_equal(y0, _drop(k0))
        np.testing.assert_array_equal(y1, _drop(k1))
        assert not np.array_equal(y0, y1)  # two masks, not one


def test_repeat_splits_the_key_per_application() -> None:
    k0, k1, k2 = fd.random.split(KEY, 3)
    y = _run(L.Repeat(L.Dropout(0.5), 3), X, (None, 8))
    np.testing.assert_array_equal(y, _drop(k2, _drop(k1, _drop(k0))))


def test_sequential_splits_the_key_per_child() -> None:
    ks = fd.random.split(KEY, 2)
    y = _run(L.Sequential(L.Dropout(0.5), L.Dropout(0.5)), X, (None, 8))
    np.testing.assert_array_equal(y, _drop(ks[1], _drop(ks[0])))


def test_residual_tied_and_remat_pass_the_key_unsplit() -> None:
    np.testing.assert_array_equal(_run(L.Residual(L.Dropout(0.5)), X, (None, 8)),
                                  X + _drop(KEY))
    np.testing.assert_array_equal(_run(L.Remat(L.Dropout(0.5)), X, (None, 8)), _drop(KEY))
    tied = L.Tied(L.Sequential(L.Dense(8), L.Dropout(0.5), L.Dense(8)), [0, 2])
    plain = L.Sequential(L.Dense(8), L.Dropout(0.5), L.Dense(8))
    _, p = plain.init(fd.random.key(0), (None, 8))
    p = (p[0], (), p[0])
    want = plain.apply(p, X, key=KEY, train=True)
    _, tp = tied.init(fd.random.key(0), (None, 8))
    np.testing.assert_array_equal(tied.apply((p[0], (), None), X, key=KEY, train=True), want)
    assert tp[2] is None
