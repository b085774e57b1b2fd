"""Grouped convolution (``groups``, PyTorch's; JAX's ``feature_group_count``) in Conv2D and
Conv1D: vjps against finite differences, forward and pullback against a nested-loop NumPy
reference and against ``groups`` ungrouped Conv2Ds on channel slices (float64, both ways a
convolution runs), PyTorch's default init, float32 kept, names, and bad inputs;
the torch cross-check is in test_conv_groups_torch.py, one input channel per group's own
NHWC path in test_conv_depthwise.py."""

from __future__ import annotations

import numpy as np
import pytest
from _conv_util import close, naive_grouped, run, sliced
from _torch_util import same_pads

from funcdl import random, tree
from funcdl.layers import Sequential
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.testing import check_layer, check_vjp

# ---------------------------------------------------------------------------- vjps

TABLE = [  # (constructor, in_shape): groups 2 to depthwise, multipliers, strides, paddings
    (lambda: Conv2D(4, 3, groups=2), (None, 5, 4, 6)),
    (lambda: Conv2D(6, 3, groups=6), (None, 5, 5, 6)),              # depthwise
    (lambda: Conv2D(6, (2, 3), stride=2, groups=3), (None, 7, 6, 3)),  # Cg = 1, Og = 2
    (lambda: Conv2D(3, 3, padding="VALID", dilation=(1, 2), groups=3), (None, 6, 7, 6)),
    (lambda: Conv2D(4, 1, use_bias=False, groups=4), (None, 3, 4, 8)),
    (lambda: Conv2D(4, 3, padding=((1, 0), (2, 1)), stride=(1, 2), groups=2),
     (None, 5, 6, 10)),
    (lambda: Conv1D(4, 3, groups=2), (None, 7, 6)),
    (lambda: Conv1D(6, 2, stride=2, padding="VALID", groups=6), (None, 9, 6)),
    (lambda: Conv1D(4, 3, padding=(2, 1), dilation=2, use_bias=False, groups=4), (None, 6, 4)),
    (lambda: Sequential(Conv2D(6, 3, groups=3), Conv2D(4, 1, groups=2)), (None, 5, 5, 3)),
]
IDS = [f"{i}-{make().name}" for i, (make, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
def test_check_layer(make, in_shape, conv_path):
    check_layer(make(), in_shape, batch=2)


def test_check_vjp_float64_inputs(conv_path):
    layer = Conv2D(6, 3, stride=2, groups=3)
    _, params = layer.init(random.key(1), (None, 5, 6, 9))
    x = random.normal(random.key(2), (2, 5, 6, 9), np.float64)
    check_vjp(layer, tree.astype(params, np.float64), x)


# ---------------------------------------------------------------------------- references

CASES = [  # kernel, stride, padding, dilation, explicit pads for the reference
    ((3, 3), (1, 1), "SAME", (1, 1), None),
    ((3, 2), (2, 1), "VALID", (1, 1), ((0, 0), (0, 0))),
    ((3, 3), (1, 2), 2, (2, 1), ((2, 2), (2, 2))),
    ((2, 2), (2, 2), ((0, 1), (1, 0)), (1, 2), ((0, 1), (1, 0))),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "pads"), CASES)
@pytest.mark.parametrize(("channels", "out", "groups"), [(4, 6, 2), (6, 6, 6), (3, 6, 3),
                                                         (8, 4, 4), (6, 2, 1)])
def test_conv2d_matches_nested_loops(kernel, stride, padding, dilation, pads, channels, out,
                                     groups, conv_path):
    if pads is None:
        pads = tuple(same_pads(n, k, s, d) for n, k, s, d in zip((6, 5), kernel, stride,
                                                                  dilation))
    x = random.normal(random.key(1), (2, 6, 5, channels), np.float64)
    layer = Conv2D(out, kernel, stride=stride, padding=padding, dilation=dilation,
                   groups=groups)
    params, y, dy, (grads, dx) = run(layer, x)
    assert params["w"].shape == (*kernel, channels // groups, out)
    y_ref, pullback_ref = naive_grouped(x, params["w"], params["b"], stride, pads, dilation,
                                        groups)
    close(y, y_ref)
    dw, db, dx_ref = pullback_ref(dy)
    close(grads["w"], dw)
    close(grads["b"], db)
    close(dx, dx_ref)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "pads"), [
    (3, 1, "SAME", 1, (1, 1)), (2, 2, "VALID", 1, (0, 0)), (3, 2, (2, 1), 2, (2, 1))])
@pytest.mark.parametrize(("channels", "out", "groups"), [(4, 6, 2), (6, 6, 6), (2, 4, 2)])
def test_conv1d_matches_nested_loops(kernel, stride, padding, dilation, pads, channels, out,
                                     groups, conv_path):
    x = random.normal(random.key(1), (3, 8, channels), np.float64)
    layer = Conv1D(out, kernel, stride=stride, padding=padding, dilation=dilation,
                   groups=groups)
    params, y, dy, (grads, dx) = run(layer, x)
    assert params["w"].shape == (kernel, channels // groups, out)
    y_ref, pullback_ref = naive_grouped(x[:, None], params["w"][None], params["b"],
                                        (1, stride), ((0, 0), pads), (1, dilation), groups)
    close(y, y_ref[:, 0])
    dw, db, dx_ref = pullback_ref(dy[:, None])
    close(grads["w"], dw[0])
    close(grads["b"], db)
    close(dx, dx_ref[:, 0])


@pytest.mark.parametrize(("channels", "out", "groups", "kw"), [
    (8, 12, 4, {"kernel": 3}),
    (6, 6, 6, {"kernel": 3, "stride": 2}),
    (6, 12, 3, {"kernel": (2, 3), "padding": "VALID", "dilation": (2, 1)}),
    (16, 8, 2, {"kernel": 3, "stride": (2, 1), "padding": ((1, 0), (0, 2))}),
])
def test_conv2d_is_ungrouped_convs_on_channel_slices(channels, out, groups, kw, conv_path):
    x = random.normal(random.key(4), (3, 9, 8, channels), np.float64)
    params, y, dy, (grads, dx) = run(Conv2D(out, groups=groups, **kw), x)
    y_ref, dw, db, dx_ref = sliced(kw, out, groups, params, x, dy)
    close(y, y_ref)
    close(grads["w"], dw)
    close(grads["b"], db)
    close(dx, dx_ref)


def test_depthwise_ones_kernel_sums_each_channel_alone():
    # groups = C = out, a kernel of ones: each output channel is the 3 x 3 window sum of
    # its own input channel only; dx counts the windows reading each pixel, per channel
    x = np.ones((1, 4, 5, 3)) * np.array([1.0, 10.0, 100.0])
    layer = Conv2D(3, 3, use_bias=False, groups=3)
    y, pullback = layer.vjp({"w": np.ones((3, 3, 1, 3))}, x)
    count = np.array([[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]])
    np.testing.assert_array_equal(y[0], count[..., None] * [1.0, 10.0, 100.0])
    grads, dx = pullback(np.ones_like(y) * np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(dx[0], count[..., None] * [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(grads["w"][:, :, 0, 1],
                                  10 * np.array([[12, 15, 12], [16, 20, 16], [12, 15, 12]]) * 2)


def test_groups_one_is_the_default_bitwise(key):
    x = random.normal(key, (2, 6, 5, 4), np.float32)
    a, b = Conv2D(6, 3, stride=2), Conv2D(6, 3, stride=2, groups=1)
    assert a.name == b.name == "Conv2D(6, 3, stride=2)"
    _, params = a.init(key, (None, 6, 5, 4))
    (ya, pa), (yb, pb) = a.vjp(params, x), b.vjp(params, x)
    np.testing.assert_array_equal(ya, yb)
    dy = np.ones_like(ya)
    (ga, dxa), (gb, dxb) = pa(dy), pb(dy)
    np.testing.assert_array_equal(dxa, dxb)
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])


def test_need_dx_false_gives_the_same_grads(key, conv_path):
    layer = Conv2D(4, 3, groups=2)
    _, params = layer.init(key, (None, 5, 5, 6))
    y, pullback = layer.vjp(params, random.normal(key, (2, 5, 5, 6), np.float32))
    dy = random.normal(random.key(1), y.shape, np.float32)
    grads, dx = pullback(dy, need_dx=False)
    assert dx is None
    full = pullback(dy)[0]
    for k in full:
        np.testing.assert_array_equal(grads[k], full[k])


@pytest.mark.parametrize(("groups", "out"), [(2, 4), (4, 8)])  # Cg = 2; Cg = 1, Og = 2
def test_empty_batch(groups, out, key, conv_path):
    # as groups=1: empty y and dx, zero gradients (was NumPy's reshape error on a size 0)
    layer = Conv2D(out, 3, groups=groups)
    _, params = layer.init(key, (None, 5, 5, 4))
    y, pullback = layer.vjp(params, np.zeros((0, 5, 5, 4), np.float32))
    grads, dx = pullback(y)
    assert y.shape == (0, 5, 5, out) and dx.shape == (0, 5, 5, 4)
    assert not any(g.any() for g in grads.values())


# ---------------------------------------------------------------------------- init, dtypes


def test_init_shapes_and_pytorch_bounds(key):
    out_shape, params = Conv2D(8, (3, 2), groups=4).init(key, (None, 10, 10, 12))
    assert out_shape == (None, 10, 10, 8)
    assert params["w"].shape == (3, 2, 3, 8) and params["b"].shape == (8,)
    bound = 1 / np.sqrt(3 * 2 * 3)  # fan_in = kh·kw·C/groups, for w and b (torch's rule)
    for p in params.values():
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    out_shape, params = Conv1D(6, 5, groups=6).init(key, (None, None, 6))
    assert out_shape == (None, None, 6) and params["w"].shape == (5, 1, 6)
    assert 0.8 / np.sqrt(5) < np.abs(params["w"]).max() <= 1 / np.sqrt(5)


@pytest.mark.parametrize("make", [lambda: Conv2D(6, 3, groups=3),
                                  lambda: Conv2D(6, 3, stride=2, groups=6),
                                  lambda: Conv1D(4, 2, padding=1, groups=2)])
def test_float32_in_float32_out(make, key, conv_path):
    layer = make()
    in_shape = (None, 9, 6) if "Conv1D" in layer.name else (None, 9, 7, 6)
    _, params = layer.init(key, in_shape)
    x = random.normal(key, (2, *in_shape[1:]), np.float32)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32 and dx.shape == x.shape
    assert all(g.dtype == np.float32 for g in tree.leaves(grads))
    assert layer.apply(params, x.astype(np.int64)).dtype == np.float32
    # float64 input with float32 params: float64 output and dx, float32 gradients
    y64, pullback64 = layer.vjp(params, x.astype(np.float64))
    grads64, dx64 = pullback64(np.ones_like(y64))
    assert y64.dtype == dx64.dtype == np.float64
    assert all(g.dtype == np.float32 for g in tree.leaves(grads64))
    np.testing.assert_allclose(y64, y, rtol=1e-5, atol=1e-6)


def test_names_show_groups_when_not_one():
    assert Conv2D(8, 3, groups=2).name == "Conv2D(8, 3, groups=2)"
    assert Conv2D(8, 3, stride=2, groups=8).name == "Conv2D(8, 3, stride=2, groups=8)"
    assert Conv1D(4, 3, groups=4).name == "Conv1D(4, 3, groups=4)"
    assert Conv1D(4, 3, groups=1).name == "Conv1D(4, 3)"


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(("make", "exc", "match"), [
    (lambda: Conv2D(4, 3, groups=0), ValueError, r"Conv2D\(4, 3, groups=0\): groups must be "
                                                 r">= 1"),
    (lambda: Conv1D(4, 3, groups=-2), ValueError, r"Conv1D\(4, 3, groups=-2\): groups"),
    (lambda: Conv2D(4, 3, groups=2.0), TypeError, r"Conv2D\(4, 3, groups=2.0\): groups must "
                                                  r"be an int"),
    (lambda: Conv2D(4, 3, groups=True), TypeError, r"Conv2D.*groups must be an int"),
    (lambda: Conv2D(4, 3, groups="2"), TypeError, r"Conv2D.*groups must be an int"),
    (lambda: Conv2D(4, 3, groups=None), TypeError, r"Conv2D.*groups must be an int"),
    (lambda: Conv2D(4, 3, groups=np.array([1, 2])), TypeError,
     r"Conv2D\(4, 3, groups=array\(\[1, 2\]\)\): groups must be an int"),
    (lambda: Conv2D(6, 3, groups=4), ValueError,
     r"Conv2D\(6, 3, groups=4\): out \(6\) must be divisible by groups \(4\)"),
    (lambda: Conv1D(3, 3, groups=2), ValueError, r"Conv1D\(3, 3, groups=2\): out \(3\)"),
])
def test_bad_groups_at_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_groups_from_numpy_ints_and_0d_arrays(key):
    for g in (np.int64(2), np.array(2)):
        layer = Conv2D(4, 3, groups=g)
        assert layer.init(key, (None, 5, 5, 4))[1]["w"].shape == (3, 3, 2, 4)


def test_channels_not_divisible_by_groups_at_init(key):
    with pytest.raises(ValueError, match=r"Conv2D\(4, 3, groups=2\): the input's 3 channels "
                                         r"must be divisible by groups=2.*\(None, 5, 5, 3\)"):
        Conv2D(4, 3, groups=2).init(key, (None, 5, 5, 3))
    with pytest.raises(ValueError, match=r"Conv1D\(6, 3, groups=3\): the input's 4 channels"):
        Conv1D(6, 3, groups=3).init(key, (None, 7, 4))


def test_channels_not_divisible_by_groups_at_apply(key):
    layer = Conv2D(4, 3, groups=2)
    _, params = layer.init(key, (None, 5, 5, 4))
    with pytest.raises(ValueError, match=r"Conv2D\(4, 3, groups=2\): expected input "
                                         r"\(N, H, W, 4\).*groups=2.*\(2, 5, 5, 3\).*3 "
                                         r"channels are not divisible by groups=2"):
        layer.apply(params, np.ones((2, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D\(4, 3, groups=2\): expected input "
                                         r"\(N, H, W, 4\).*\(2, 5, 5, 6\)"):
        layer.vjp(params, np.ones((2, 5, 5, 6), np.float32))
    model = Sequential(Conv2D(6, 3, groups=3))
    _, p = model.init(key, (None, 5, 5, 3))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Conv2D\(6, 3, groups=3\).*"
                                         r"\(N, H, W, 3\).*\(1, 5, 5, 4\).*4 channels"):
        model.apply(p, np.ones((1, 5, 5, 4)))
    layer1 = Conv1D(4, 3, groups=4)
    _, p1 = layer1.init(key, (None, 6, 4))
    with pytest.raises(ValueError, match=r"Conv1D\(4, 3, groups=4\).*\(N, L, 4\).*\(2, 6, 2\)"):
        layer1.apply(p1, np.ones((2, 6, 2)))


def test_kernel_of_the_wrong_shape_for_groups(key):
    layer = Conv2D(8, 3, groups=2)
    _, ungrouped = Conv2D(8, 3).init(key, (None, 5, 5, 4))  # w (3, 3, 4, 8)
    with pytest.raises(ValueError, match=r"Conv2D\(8, 3, groups=2\): expected input "
                                         r"\(N, H, W, 8\).*\(3, 3, 4, 8\).*\(2, 5, 5, 4\).*"
                                         r"a grouped kernel has C // groups in-channels: "
                                         r"\(3, 3, 2, 8\)"):
        layer.apply(ungrouped, np.ones((2, 5, 5, 4), np.float32))
    _, params = layer.init(key, (None, 5, 5, 4))
    with pytest.raises(ValueError, match=r"Conv2D\(8, 3, groups=2\): params\['w'\] must have "
                                         r"shape \(3, 3, in // 2, 8\), got \(3, 3, 2, 4\)"):
        layer.apply({"w": params["w"][..., :4], "b": params["b"]}, np.ones((2, 5, 5, 4)))
    with pytest.raises(ValueError, match=r"Conv2D\(8, 3, groups=2\): params\['w'\].*"
                                         r"got \(2, 3, 2, 8\)"):
        layer.apply({"w": params["w"][:2], "b": params["b"]}, np.ones((2, 5, 5, 4)))
