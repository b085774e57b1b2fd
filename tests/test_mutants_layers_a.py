"""Tests that kill mutants the rest of the suite let through (funcdl/layers: _dense.py,
activations.py, lrn.py): Dense's and Unembed's pullbacks on their large-product paths
(np.matmul past _dense._SMALL entries, checked nowhere else), Dropout's negative
broadcast_dims (the same axes as the positive ones), ELU's slope at NaN for an alpha
outside (0, 1] (PyTorch's: dy), and LocalResponseNorm's vjp at beta = 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers import _dense
from funcdl.layers.lrn import LocalResponseNorm
from funcdl.testing import check_vjp

# ---------------------------------------------------------------------------- Dense, large

@pytest.mark.parametrize(("out", "x_shape"), [(128, (4, 128)), (3, (130, 128)),
                                              (3, (2, 65, 128))],
                         ids=["dw-by-matmul", "dx-by-matmul", "dx-by-matmul-3d"])
def test_dense_pullback_past_the_small_product_size_by_hand(out, x_shape):
    # dw = xᵀ dy takes np.matmul once w has _SMALL entries, dx = dy wᵀ once x has: each
    # case reaches one of them (asserted, so that a new threshold cannot make it vacuous)
    layer = L.Dense(out)
    _, params = layer.init(random.key(0), (None, x_shape[-1]))
    params = {k: v.astype(np.float64) for k, v in params.items()}
    x = random.normal(random.key(1), x_shape, np.float64)
    w = params["w"]
    assert max(w.size, x.size) >= _dense._SMALL
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(2), y.shape, np.float64)
    grads, dx = pullback(dy)
    x2, dy2 = x.reshape(-1, x_shape[-1]), dy.reshape(-1, out)
    np.testing.assert_allclose(y, x @ w + params["b"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["w"], x2.T @ dy2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["b"], dy2.sum(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", [L.Dense(128), L.Unembed(128, use_bias=True)],
                         ids=["Dense", "Unembed"])
def test_dense_large_product_paths_pass_check_vjp(layer):
    _, params = layer.init(random.key(3), (None, 128))
    params = {k: v.astype(np.float64) for k, v in params.items()}
    assert max(v.size for v in params.values()) >= _dense._SMALL
    check_vjp(layer, params, random.normal(random.key(4), (3, 128), np.float64),
              rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------------------- Dropout

def test_dropout_negative_broadcast_dims_are_the_same_axes_as_positive_ones():
    # Flax's broadcast_dims index the input's shape, -1 the last axis: (-3, -2) on NHWC is
    # (1, 2), PyTorch's Dropout2d, the same draws from the same key
    x = random.normal(random.key(5), (8, 3, 3, 4), np.float64)
    key = random.key(6)
    neg, pos = L.Dropout(0.5, broadcast_dims=(-3, -2)), L.Dropout(0.5, broadcast_dims=(1, 2))
    y, pullback = neg.vjp((), x, key=key, train=True)
    np.testing.assert_array_equal(y, pos.apply((), x, key=key, train=True))
    mask = pullback(np.ones_like(x))[1]
    per_pixel = mask.reshape(8, 9, 4)
    assert (per_pixel == per_pixel[:, :1, :]).all()  # a channel all kept or all dropped
    assert set(np.unique(mask)) == {0.0, 2.0}
    np.testing.assert_array_equal(y, x * mask)


# ---------------------------------------------------------------------------- ELU at NaN

@pytest.mark.parametrize("alpha", [0.7, 1.0, 1.8, -0.5])
def test_elu_slope_by_hand_at_nan_and_each_branch_for_any_alpha(alpha):
    # dx = dy for x > 0 and at NaN (torch's elu_backward: NaN <= 0 is false), dy·α·e^x for
    # x <= 0 (α at 0); alpha outside (0, 1] takes the other forward and slope code
    x = np.array([np.nan, -1.0, 0.0, 2.0])
    y, pullback = L.ELU(alpha).vjp((), x)
    np.testing.assert_allclose(y, [np.nan, alpha * math.expm1(-1.0), 0.0, 2.0],
                               rtol=1e-15, atol=0)
    dx = pullback(np.full(4, 3.0))[1]
    np.testing.assert_allclose(dx, [3.0, 3 * alpha * math.exp(-1.0), 3 * alpha, 3.0],
                               rtol=1e-15, atol=0)


# ---------------------------------------------------------------------------- LRN, beta = 1

@pytest.mark.parametrize("size", [3, 4])
def test_lrn_vjp_at_beta_one(size):
    # y = x / d: the vjp's second term (through d) at the exponent 1 too
    layer = LocalResponseNorm(size, alpha=0.5, beta=1.0, k=2.0)
    x = random.normal(random.key(7), (2, 3, 6), np.float64) * 2
    check_vjp(layer, (), x, rtol=1e-7, atol=1e-10)
    y, pullback = layer.vjp((), x)
    dy = random.normal(random.key(8), x.shape, np.float64)
    # by hand for channel 0 of one position: d_c = k + α/n Σ_{W(c)} x², y_c = x_c / d_c
    lo, hi = size // 2, (size - 1) // 2
    xs, g = x[0, 0], dy[0, 0]
    d = np.array([2.0 + 0.5 / size * np.sum(xs[max(0, c - lo):c + hi + 1] ** 2)
                  for c in range(6)])
    np.testing.assert_allclose(y[0, 0], xs / d, rtol=1e-13)
    dx0 = g[0] / d[0] - sum(g[c] * xs[c] / d[c] ** 2 * 0.5 / size * 2 * xs[0]
                            for c in range(6) if c - lo <= 0 <= c + hi)
    np.testing.assert_allclose(pullback(dy)[1][0, 0, 0], dx0, rtol=1e-12)
