"""Conv and pool layers, the core: vjps against finite differences over a table of layers,
known values (including max pooling over windows of -inf only), float32 preservation, and the
memory layout of dx. Naive-loop references are in test_conv_naive.py, bad inputs in
test_conv_bad_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import random, tree
from funcdl.layers import Dense, Flatten, Sequential
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.layers.pool import AvgPool2D, GlobalAvgPool, MaxPool2D
from funcdl.testing import check_layer

# (constructor, in_shape): strides 1/2, every padding form, kernels 1/3/non-square,
# dilation, odd sizes, 1 to 6 channels (both sides of col2im's channel-major switch).
TABLE = [
    (lambda: Conv2D(4, 3), (None, 7, 5, 2)),
    (lambda: Conv2D(3, 1), (None, 4, 5, 6)),
    (lambda: Conv2D(2, 3, stride=2), (None, 7, 5, 1)),
    (lambda: Conv2D(2, 3, stride=2), (None, 6, 8, 5)),
    (lambda: Conv2D(3, (3, 2), stride=(2, 1), padding="VALID"), (None, 7, 5, 3)),
    (lambda: Conv2D(2, (1, 3), padding=1, use_bias=False), (None, 5, 5, 6)),
    (lambda: Conv2D(2, 3, padding=(2, 0), dilation=2), (None, 7, 6, 2)),
    (lambda: Conv2D(3, 3, padding=((1, 0), (2, 1)), stride=2), (None, 7, 5, 5)),
    (lambda: Conv2D(2, 2, dilation=(2, 1), stride=(1, 2)), (None, 5, 7, 1)),
    (lambda: Conv1D(3, 3), (None, 7, 2)),
    (lambda: Conv1D(2, 2, stride=2, padding="VALID"), (None, 9, 6)),
    (lambda: Conv1D(2, 3, padding=(2, 1), dilation=2), (None, 6, 1)),
    (lambda: Conv1D(4, 1, use_bias=False), (None, 5, 3)),
    (lambda: MaxPool2D(2), (None, 6, 4, 3)),
    (lambda: MaxPool2D(2), (None, 7, 5, 2)),
    (lambda: MaxPool2D(3, stride=2), (None, 7, 5, 2)),
    (lambda: MaxPool2D((2, 3), stride=1, padding="SAME"), (None, 5, 5, 1)),
    (lambda: MaxPool2D(3, stride=2, padding=1), (None, 6, 7, 2)),
    (lambda: AvgPool2D(2), (None, 7, 5, 2)),
    (lambda: AvgPool2D(3, stride=2, padding="SAME"), (None, 7, 5, 2)),
    (lambda: AvgPool2D(3, stride=2, padding="SAME", count_include_pad=False), (None, 7, 5, 2)),
    (lambda: AvgPool2D((3, 2), stride=1, padding=(1, 1), count_include_pad=False),
     (None, 5, 4, 3)),
    (lambda: GlobalAvgPool(), (None, 7, 5, 3)),
    (lambda: GlobalAvgPool(), (None, 6, 2)),
    (lambda: GlobalAvgPool(), (None, 2, 3, 4, 2)),
    (lambda: Sequential(Conv2D(3, 3), MaxPool2D(2), Conv2D(4, 3, stride=2), GlobalAvgPool(),
                        Dense(2)), (None, 9, 7, 2)),
    (lambda: Sequential(Conv2D(3, 3, padding="VALID"), AvgPool2D(2), Flatten()), (None, 7, 6, 1)),
]
IDS = [f"{i}-{make().name}" for i, (make, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_check_layer(make, in_shape, batch, conv_path):
    check_layer(make(), in_shape, batch=batch)


# ---------------------------------------------------------------------------- known values

def test_1x1_conv_is_dense_on_channels(key):
    conv, dense = Conv2D(5, 1), Dense(5)
    _, params = conv.init(key, (None, 4, 3, 2))
    dense_params = {"w": params["w"].reshape(2, 5), "b": params["b"]}
    x = random.normal(random.key(1), (3, 4, 3, 2))
    y, pullback = conv.vjp(params, x)
    y_d, pullback_d = dense.vjp(dense_params, x)
    np.testing.assert_allclose(y, y_d, rtol=1e-6)
    dy = random.normal(random.key(2), y.shape)
    (g, dx), (g_d, dx_d) = pullback(dy), pullback_d(dy)
    np.testing.assert_allclose(g["w"].reshape(2, 5), g_d["w"], rtol=1e-5)
    np.testing.assert_allclose(g["b"], g_d["b"], rtol=1e-5)
    np.testing.assert_allclose(dx, dx_d, rtol=1e-5)


def test_ones_kernel_on_ones_image_counts_the_window():
    layer = Conv2D(1, 3, use_bias=False)
    y, pullback = layer.vjp({"w": np.ones((3, 3, 1, 1))}, np.ones((1, 4, 5, 1)))
    expected = [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]]
    np.testing.assert_array_equal(y[0, :, :, 0], expected)
    grads, dx = pullback(np.ones_like(y))  # dx: how many windows read each pixel
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)
    np.testing.assert_array_equal(grads["w"][:, :, 0, 0], [[12, 15, 12], [16, 20, 16],
                                                          [12, 15, 12]])


def test_same_padding_puts_the_odd_pixel_after():
    # H = 6, k = 3, stride 2: out 3, total pad 1 -> (0 before, 1 after), as TF and JAX.
    w = np.zeros((3, 3, 1, 1))
    w[0, 0] = 1.0  # picks the window's top-left pixel, xp[2p, 2q]
    x = np.arange(36.0).reshape(1, 6, 6, 1)
    y = Conv2D(1, 3, stride=2, use_bias=False).apply({"w": w}, x)
    np.testing.assert_array_equal(y[0, :, :, 0], x[0, ::2, ::2, 0])


def test_maxpool_ties_give_one_element_per_window_the_first():
    x = np.ones((1, 5, 5, 1))  # every window is one big tie
    layer = MaxPool2D(3, stride=2)  # overlapping windows at rows/cols 0 and 2
    y, pullback = layer.vjp((), x)
    _, dx = pullback(np.array([[[[1.0], [10.0]], [[100.0], [1000.0]]]]))
    expected = np.zeros((5, 5))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 10, 100, 1000
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)
    x = np.array([[1.0, 5.0], [5.0, 2.0]]).reshape(1, 2, 2, 1)  # tie at (0, 1) and (1, 0)
    # stride 1, SAME (a -inf row and column after): the four windows take (0, 1), (0, 1),
    # (1, 0) and (1, 1)
    for layer, expected in ((MaxPool2D(2), [[0, 1], [0, 0]]),
                            (MaxPool2D(2, stride=1, padding="SAME"), [[0, 2], [1, 1]])):
        y, pullback = layer.vjp((), x)
        np.testing.assert_array_equal(pullback(np.ones_like(y))[1][0, :, :, 0], expected)


def test_maxpool_same_padding_is_never_selected():
    x = -10.0 - random.normal(random.key(0), (2, 5, 5, 3), np.float64) ** 2
    layer = MaxPool2D(2, stride=2, padding="SAME")
    y, pullback = layer.vjp((), x)
    assert y.shape == (2, 3, 3, 3) and np.all(y < -9.9)
    dy = random.normal(random.key(1), y.shape, np.float64)
    np.testing.assert_allclose(pullback(dy)[1].sum(axis=(1, 2)), dy.sum(axis=(1, 2)))


def test_avgpool_count_include_pad():
    x = np.ones((1, 3, 3, 1))
    with_pad = AvgPool2D(3, stride=1, padding=1).apply((), x)[0, :, :, 0]
    np.testing.assert_allclose(with_pad, [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9],
                                          [4 / 9, 6 / 9, 4 / 9]])
    without = AvgPool2D(3, stride=1, padding=1, count_include_pad=False)
    y, pullback = without.vjp((), x)
    np.testing.assert_allclose(y, np.ones_like(y))
    np.testing.assert_allclose(pullback(np.ones_like(y))[1][0, 0, 0, 0], 1 / 4 + 2 / 6 + 1 / 9)


def test_avgpool_same_counts_real_pixels_by_default_as_tf_and_stax():
    x = np.ones((1, 3, 3, 1))  # SAME, window 2, stride 2: pads one row and column below
    np.testing.assert_allclose(AvgPool2D(2, 2, "SAME").apply((), x), np.ones((1, 2, 2, 1)))
    np.testing.assert_allclose(AvgPool2D(2, 2, "same", count_include_pad=True).apply((), x),
                               [[[[1], [0.5]], [[0.5], [0.25]]]])
    assert "count_include_pad" not in AvgPool2D(2, 2, "SAME").name


def test_avgpool_same_against_jax_stax():
    pytest.importorskip("jax")
    from jax.example_libraries import stax

    x = random.normal(random.key(2), (2, 7, 5, 3), np.float64)
    for window, strides in (((2, 2), (2, 2)), ((3, 2), (2, 1))):
        _, apply_fn = stax.AvgPool(window, strides, "SAME")
        want = np.asarray(apply_fn((), x.astype(np.float32)))
        got = AvgPool2D(window, strides, "SAME").apply((), x.astype(np.float32))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_global_avg_pool_known_values():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    y, pullback = GlobalAvgPool().vjp((), x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)))
    np.testing.assert_allclose(pullback(np.array([[6.0, 12.0], [0.0, 6.0]]))[1][0, 2, 1],
                               [1.0, 2.0])


def test_init_shapes_unknown_sizes_and_pytorch_bounds(key):
    assert Conv2D(8, 3).init(key, (None, None, 5, 2))[0] == (None, None, 5, 8)
    assert Conv2D(8, 3, padding="VALID").init(key, (4, 6, None, 2))[0] == (4, 4, None, 8)
    assert Conv1D(8, 3, stride=2).init(key, (None, None, 2))[0] == (None, None, 8)
    assert MaxPool2D(2).init(key, (None, None, None, 3))[0] == (None, None, None, 3)
    assert GlobalAvgPool().init(key, (None, None, None, 3))[0] == (None, 3)
    out_shape, params = Conv2D(8, (3, 2)).init(key, (None, 10, 10, 4))
    assert out_shape == (None, 10, 10, 8)
    assert params["w"].shape == (3, 2, 4, 8) and params["b"].shape == (8,)
    bound = 1 / np.sqrt(3 * 2 * 4)
    for p in params.values():
        assert p.dtype == np.float32 and np.abs(p).max() <= bound and np.abs(p).max() > bound / 2
    assert "b" not in Conv1D(2, 3, use_bias=False).init(key, (None, 5, 1))[1]


def test_max_pool_sends_dy_of_an_all_minus_inf_window_to_its_first_real_cell():
    # padding is -inf too; PyTorch starts each window at its first real cell, so dy of a
    # window of -inf only still reaches the input (it went to padding, and was lost)
    x = np.full((1, 2, 2, 1), -np.inf)
    y, pullback = MaxPool2D(3, stride=1, padding=1).vjp((), x)
    assert np.all(y == -np.inf)
    dx = pullback(np.ones_like(y))[1]
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4.0, 0.0], [0.0, 0.0]])
    x[0, 1, 1, 0] = 2.0  # a real maximum still takes its windows' dy
    dx = MaxPool2D(3, stride=1, padding=1).vjp((), x)[1](np.ones((1, 2, 2, 1)))[1]
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 0.0], [0.0, 4.0]])


def test_max_pool_all_minus_inf_windows_step_each_axis_by_its_own_stride():
    # stride (1, 2), padding 2: window (p, q) spans rows p - 2..p and columns 2q - 2..2q, so
    # its first real cell is (max(0, p - 2), max(0, 2q - 2)), each axis by its own stride;
    # dy[p, q] = 4p + q + 1, summed over the windows whose first real cell is each pixel
    x = np.full((1, 3, 5, 1), -np.inf)
    dy = np.arange(1.0, 21.0).reshape(1, 5, 4, 1)
    expected = np.array([[33, 0, 21, 0, 24], [27, 0, 15, 0, 16], [35, 0, 19, 0, 20]])
    y, pullback = MaxPool2D(3, stride=(1, 2), padding=2).vjp((), x)
    assert y.shape == dy.shape and np.all(y == -np.inf)
    np.testing.assert_array_equal(pullback(dy)[1][0, :, :, 0], expected)
    # the same geometry transposed: rows by stride 2, columns by stride 1
    y, pullback = MaxPool2D(3, stride=(2, 1), padding=2).vjp((), x.transpose(0, 2, 1, 3))
    dx = pullback(dy.transpose(0, 2, 1, 3))[1]
    np.testing.assert_array_equal(dx[0, :, :, 0], expected.T)


# ---------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("make", [
    lambda: Conv2D(4, 3, stride=2), lambda: Conv2D(4, 3), lambda: Conv1D(3, 2, padding=1),
    lambda: MaxPool2D(3, stride=2, padding="SAME"), lambda: MaxPool2D(2), lambda: AvgPool2D(2),
    lambda: AvgPool2D(3, 2, "SAME", count_include_pad=False), GlobalAvgPool])
@pytest.mark.parametrize("channels", [1, 6])
def test_float32_in_float32_out(make, channels, key, conv_path):
    layer = make()
    in_shape = (None, 9, channels) if "Conv1D" in layer.name else (None, 9, 7, channels)
    _, params = layer.init(key, in_shape)
    x = random.normal(key, (2, *in_shape[1:]), np.float32)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in tree.leaves(grads))
    assert layer.apply(params, x.astype(np.int64)).dtype == np.float32


# ---------------------------------------------------------------------------- dx in memory

@pytest.mark.parametrize("channels", [1, 3, 6])
def test_conv_dx_comes_back_channels_last(channels, conv_path):
    # with few channels col2im runs channel-major, (C, N, H, W) in memory; dx must be back
    # in NHWC order (channels innermost), as x and every other layer's dx. Only the im2col
    # path with 1 or 3 channels goes channel-major; the other cases check the same layout
    # on the paths that never leave NHWC
    layer = Conv2D(2, 3)
    _, params = layer.init(random.key(0), (None, 5, 4, channels))
    x = random.normal(random.key(1), (2, 5, 4, channels))
    y, pullback = layer.vjp(params, x)
    dx = pullback(np.ones_like(y))[1]
    assert dx.shape == x.shape and dx.strides[-1] == dx.itemsize
    assert list(dx.strides) == sorted(dx.strides, reverse=True)


@pytest.mark.parametrize("make", [GlobalAvgPool, lambda: AvgPool2D(2), lambda: MaxPool2D(2)])
def test_pool_dx_is_an_array_of_its_own(make):
    # a caller may add into dx in place: no read-only broadcast view, no memory shared
    x = random.normal(random.key(0), (2, 4, 4, 3), np.float64)
    y, pullback = make().vjp((), x)
    dy = random.normal(random.key(1), y.shape, np.float64)
    dx = pullback(dy)[1]
    assert dx.flags.writeable and dx.flags.c_contiguous and not np.shares_memory(dx, dy)
    assert not np.shares_memory(dx, x)
    before = dx.copy()
    dx += 1.0  # a second pullback must not hand out (or have been handed) the same buffer
    again = pullback(dy)[1]
    assert not np.shares_memory(dx, again)
    np.testing.assert_array_equal(again, before)


@pytest.mark.parametrize("make", [MaxPool2D, AvgPool2D])
def test_pools_default_to_a_2x2_window_of_stride_2(make):
    # DESIGN.md lists the pools without arguments; Keras' pool_size is (2, 2) by default
    x = random.normal(random.key(3), (2, 6, 5, 3), np.float64)
    layer, explicit = make(), make((2, 2), (2, 2), "VALID")
    assert layer.name == f"{make.__name__}(2)"
    assert layer.init(random.key(0), (None, 6, 5, 3))[0] == (None, 3, 2, 3)
    np.testing.assert_array_equal(layer.apply((), x), explicit.apply((), x))
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(pullback(np.ones_like(y))[1],
                                  explicit.vjp((), x)[1](np.ones_like(y))[1])
