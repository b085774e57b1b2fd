"""Norm layers on float32 rows whose squares overflow (|x - μ| beyond ~1e19): σ² or mean(x²)
is inf in float32, and x̂ came out 0 without a word (PyTorch's float32 too); the statistics
are taken again in float64, so outputs and gradients are float64's, rounded to float32."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random, tree

# each normalised set (a row, a group of 4, a column) huge or ordinary, none degenerate
ROWS = np.array([[2e19, -2e19, 0.0, 1.0, 1.0, 2.0, -3.0, 0.5],
                 [1e30, -3e29, 5e29, -1e30, 7e29, 1e29, -2e29, 4e29],
                 [1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 2.5, 9.0]], np.float32)


def _by_group(a: Array, g: int) -> Array:
    """max |a| over each group of g consecutive entries of the last axis, broadcast back."""
    m = np.abs(a).reshape(*a.shape[:-1], -1, g).max(axis=-1, keepdims=True)
    return np.broadcast_to(m, (*a.shape[:-1], a.shape[-1] // g, g)).reshape(a.shape)


Array = Any
CASES: list[tuple[Callable[[], Any], Array, Callable[[Array], Array]]] = [
    (L.LayerNorm, ROWS, lambda a: _by_group(a, 8)),
    (L.RMSNorm, ROWS, lambda a: _by_group(a, 8)),
    (lambda: L.GroupNorm(2), ROWS, lambda a: _by_group(a, 4)),
    (lambda: L.GroupNorm(1, affine=False), ROWS, lambda a: _by_group(a, 8)),
    # (1, L=8, C=3): each channel over its 8 steps; (N=8, C=3): each column a channel
    (L.InstanceNorm, ROWS.T[None].copy(), lambda a: np.abs(a).max(axis=1, keepdims=True)),
    (L.BatchNorm, ROWS.T.copy(), lambda a: np.abs(a).max(axis=0, keepdims=True)),
]


@pytest.mark.parametrize("make, x, scale_of", CASES)
def test_float32_statistics_past_the_squares_overflow_are_float64s(make, x, scale_of):
    layer = make()
    out = layer.init(random.key(0), (None, *x.shape[1:]))
    params = tree.map(lambda p: p + np.float32(0.25), out[1])  # not the identity affine
    kw = {"state": out[2], "train": True} if layer.stateful else {}
    kw64 = {"state": tree.astype(out[2], np.float64), "train": True} if layer.stateful else {}
    y, pullback, *_ = layer.vjp(params, x, **kw)
    y64, pullback64, *_ = layer.vjp(tree.astype(params, np.float64), x.astype(np.float64),
                                    **kw64)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    np.testing.assert_allclose(y, y64, rtol=2e-6, atol=2e-6)
    dy = random.normal(random.key(1), y.shape)
    (dp, dx), (dp64, dx64) = pullback(dy), pullback64(dy.astype(np.float64))
    scale = scale_of(dx64)  # dx is ~1/σ: each set's own size, 1e-30 on the huge ones
    assert (scale > 0).all() and dx.dtype == np.float32
    np.testing.assert_allclose(dx / scale, dx64 / scale, rtol=0, atol=1e-4)
    for g, g64 in zip(tree.leaves(dp), tree.leaves(dp64)):
        np.testing.assert_allclose(g, g64, rtol=1e-5, atol=1e-5)
