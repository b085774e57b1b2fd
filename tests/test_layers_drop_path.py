"""DropPath (stochastic depth, torchvision's StochasticDepth): whole examples dropped and the
rest scaled by 1/(1 - rate), one draw per example ('row') or per batch ('batch'), its vjp
by finite differences and by hand, inference the identity, the key it needs, and its
arguments' errors."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_layer, check_vjp

KEY = random.key(3)


def test_row_mode_drops_whole_examples_and_scales_the_rest():
    x = random.normal(random.key(1), (64, 3, 4, 2), np.float32)
    y = L.DropPath(0.25).apply((), x, key=KEY, train=True)
    scale = np.float32(1 / 0.75)  # the layer multiplies by 1/(1 - rate), as Dropout
    kept = np.array([np.array_equal(y[n], x[n] * scale) for n in range(64)])
    dropped = np.array([not y[n].any() for n in range(64)])
    assert (kept ^ dropped).all()  # each example all kept (scaled) or all 0
    assert 0 < dropped.sum() < 64 and y.dtype == np.float32


def test_row_mode_is_dropout_sharing_its_draw_over_all_but_the_batch_axis():
    # the same uniform draw in the same (N, 1, 1) shape: the same examples drop
    x = random.normal(random.key(2), (16, 5, 3), np.float64)
    want = L.Dropout(0.4, broadcast_dims=(1, 2)).apply((), x, key=KEY, train=True)
    np.testing.assert_array_equal(L.DropPath(0.4).apply((), x, key=KEY, train=True), want)


def test_batch_mode_drops_the_whole_batch_or_none_of_it():
    x = random.normal(random.key(4), (8, 3), np.float32)
    fates = set()
    for i in range(40):
        y = L.DropPath(0.5, mode="batch").apply((), x, key=random.key(i), train=True)
        assert not y.any() or np.array_equal(y, x * np.float32(2.0))
        fates.add(bool(y.any()))
    assert fates == {True, False}


def test_the_fraction_of_examples_dropped_is_the_rate():
    x = np.ones((20000, 2), np.float32)
    y = L.DropPath(0.3).apply((), x, key=KEY, train=True)
    frac = float((y[:, 0] == 0).mean())
    assert abs(frac - 0.3) < 0.02  # 6 standard deviations of a Bernoulli mean over 20000
    assert abs(float(y.mean()) - 1.0) < 0.03  # unbiased: E[m / (1 - rate)] = 1


def test_pullback_is_dy_times_the_scaled_mask():
    x = random.normal(random.key(5), (32, 4), np.float64)
    dy = random.normal(random.key(6), (32, 4), np.float64)
    layer = L.DropPath(0.5)
    y, pullback = layer.vjp((), x, key=KEY, train=True)
    grads, dx = pullback(dy)
    m = (y[:, :1] != 0).astype(np.float64)  # the examples kept (x has no zero entries)
    assert grads == () and 0 < m.sum() < 32
    np.testing.assert_array_equal(dx, dy * m * 2.0)  # not -dy·m·2, not dy·m
    np.testing.assert_array_equal(y, x * m * 2.0)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_vjp_matches_finite_differences_in_training(mode):
    x = random.normal(random.key(7), (6, 3, 2), np.float64)
    check_vjp(L.DropPath(0.3, mode=mode), (), x, key=KEY, train=True)
    check_layer(L.DropPath(0.3, mode=mode), (None, 3, 2))


def test_on_a_residual_branch_a_dropped_example_skips_the_block():
    block = L.Residual(L.Sequential(L.Dense(4), L.DropPath(0.5)))
    _, params = block.init(random.key(8), (None, 4))
    x = random.normal(random.key(9), (32, 4), np.float64)
    y = block.apply(params, x, key=KEY, train=True)
    skipped = np.all(y == x, axis=1)
    assert 0 < skipped.sum() < 32
    check_vjp(block, params, x, key=KEY, train=True)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_inference_is_the_identity_even_given_a_key(mode):
    x = random.normal(random.key(11), (5, 3), np.float32)
    assert L.DropPath(0.9, mode=mode).apply((), x, key=KEY, train=False) is x
    assert L.DropPath(0.9, mode=mode).apply((), x) is x


def test_inference_and_rate_zero_are_the_identity_and_rate_one_zeros():
    x = random.normal(random.key(10), (5, 3), np.float32)
    np.testing.assert_array_equal(L.DropPath(0.0).apply((), x, key=KEY, train=True), x)
    y = L.DropPath(1.0).apply((), x, key=KEY, train=True)
    assert y.dtype == np.float32 and not y.any()  # torchvision's p=1: zeros


def test_training_without_a_key_says_how_to_pass_one():
    with pytest.raises(ValueError, match=r"^DropPath\(0\.2\): train=True needs a random key: "
                                         r"pass key="):
        L.DropPath(0.2).apply((), np.ones((2, 3)), train=True)


@pytest.mark.parametrize(("args", "error", "match"), [
    ((0.1, "rows"), ValueError, r"^DropPath: mode must be 'row' \(one draw per example\) or "
                                r"'batch'.*got 'rows'"),
    ((1.5,), ValueError, r"^DropPath: rate"),
    ((-0.1,), ValueError, r"^DropPath: rate"),
    (("0.1",), TypeError, r"^DropPath: rate"),
    ((0.1, np.array(["row"])), ValueError, r"^DropPath: mode must be 'row'"),
])
def test_bad_arguments_are_named(args, error, match):
    with pytest.raises(error, match=match):
        L.DropPath(*args)


def test_an_input_without_a_batch_axis_is_refused():
    with pytest.raises(ValueError, match=r"^DropPath\(0\.1\): expected an input with a batch "
                                         r"axis \(N, \.\.\.\), got shape \(\)"):
        L.DropPath(0.1).apply((), np.float32(1.0), key=KEY, train=True)
    with pytest.raises(ValueError, match=r"DropPath\(0\.1\)"):
        L.DropPath(0.1).init(KEY, ())
