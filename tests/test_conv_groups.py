"""Grouped convolution (``groups``, PyTorch's; JAX's ``feature_group_count``) in Conv2D and
Conv1D: vjps against finite differences, forward and pullback against a nested-loop NumPy
reference and against ``groups`` ungrouped Conv2Ds on channel slices (float64, both ways a
convolution runs), PyTorch's default init, float32 kept, names, and bad inputs; one input
channel per group (depthwise, any multiplier) proved to run its own NHWC path. The torch
cross-check is in test_conv_groups_torch.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _torch_util import same_pads

from funcdl import random, tree
from funcdl.layers import Sequential, _grouped, conv
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.testing import check_layer, check_vjp

# ---------------------------------------------------------------------------- references


def naive_grouped(x, w, b, stride, pads, dilation, groups):
    """y and its pullback (dw, db, dx) by loops over output pixels, taps and output
    channels, each reading the input channels of its group: ``o // (out // groups)``."""
    (sh, sw), (dh, dw_) = stride, dilation
    kh, kw, cg, out = w.shape
    og = out // groups
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw_ - 1) // sw + 1
    taps = list(itertools.product(range(oh), range(ow), range(kh), range(kw), range(out)))
    y = np.zeros((x.shape[0], oh, ow, out)) + b
    for p, q, i, j, o in taps:
        c0 = (o // og) * cg
        y[:, p, q, o] += xp[:, p * sh + i * dh, q * sw + j * dw_, c0:c0 + cg] @ w[i, j, :, o]

    def pullback(dy):
        dxp, dwt = np.zeros_like(xp), np.zeros_like(w)
        for p, q, i, j, o in taps:
            c0 = (o // og) * cg
            r, s = p * sh + i * dh, q * sw + j * dw_
            dxp[:, r, s, c0:c0 + cg] += dy[:, p, q, o, None] * w[i, j, :, o]
            dwt[i, j, :, o] += dy[:, p, q, o] @ xp[:, r, s, c0:c0 + cg]
        (t, _), (l, _) = pads
        return dwt, dy.sum(axis=(0, 1, 2)), dxp[:, t:t + x.shape[1], l:l + x.shape[2]]

    return y, pullback


def sliced(layer_kw, out, groups, params, x, dy):
    """``groups`` ungrouped Conv2Ds, group g on input channels and outputs of its slice:
    y, dw, db, dx concatenated over the channel axis."""
    cg, og = x.shape[-1] // groups, out // groups
    ys, dws, dbs, dxs = [], [], [], []
    for g in range(groups):
        i, o = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        p = {"w": params["w"][..., o], "b": params["b"][o]}
        y, pullback = Conv2D(og, **layer_kw).vjp(p, np.ascontiguousarray(x[..., i]))
        grads, dx = pullback(np.ascontiguousarray(dy[..., o]))
        ys.append(y), dws.append(grads["w"]), dbs.append(grads["b"]), dxs.append(dx)
    return tuple(np.concatenate(a, axis=-1) for a in (ys, dws, dbs, dxs))


def run(layer, x, seed=3):
    """float64 params of ``layer`` at ``x``, y, a random dy, and (dparams, dx)."""
    _, params = layer.init(random.key(0), (None, *x.shape[1:]))
    params = tree.astype(params, np.float64)
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(seed), y.shape, np.float64)
    return params, y, dy, pullback(dy)


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


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
                                         r"\(kh, kw, C // groups, out\).*\(3, 3, 2, 8\)"):
        layer.apply(ungrouped, np.ones((2, 5, 5, 4), np.float32))
    _, params = layer.init(key, (None, 5, 5, 4))
    with pytest.raises(ValueError, match=r"Conv2D\(8, 3, groups=2\): params\['w'\] must have "
                                         r"shape \(3, 3, 'in // 2', 8\), got \(3, 3, 2, 4\)"):
        layer.apply({"w": params["w"][..., :4], "b": params["b"]}, np.ones((2, 5, 5, 4)))
    with pytest.raises(ValueError, match=r"Conv2D\(8, 3, groups=2\): params\['w'\].*"
                                         r"got \(2, 3, 2, 8\)"):
        layer.apply({"w": params["w"][:2], "b": params["b"]}, np.ones((2, 5, 5, 4)))


# ---------------------------------------------------------------------------- Cg = 1


@pytest.fixture(params=["tiled", "plain", "dispatched"])
def depthwise_path(request, monkeypatch):
    """One input channel per group: 'tiled' and 'plain' run every multiplier on the NHWC
    path, proved taken (the group-major layout refuses), 'plain' without the taps' row
    tiling and with the broadcast repeat; 'dispatched' as the layer picks (Og > 2 group-major
    while the im2col buffer is small)."""
    def refuse(*args):
        raise AssertionError("Cg = 1 went group-major")

    if request.param != "dispatched":
        monkeypatch.setattr(conv, "_NHWC_OG", 1 << 30)
        monkeypatch.setattr(_grouped, "to_groups", refuse)
        monkeypatch.setattr(_grouped, "by_group", refuse)
    if request.param == "plain":
        monkeypatch.setattr(_grouped, "_TILE", 0)
        monkeypatch.setattr(_grouped, "_FEW_REPEATS", 0)


DEPTHWISE = [  # layer (Cg = 1, Og = out / C), x's shape; the reference's stride, pads, dilation
    (lambda: Conv2D(4, 3, groups=4), (2, 7, 6, 4), 1, ((1, 1), (1, 1)), 1),  # SAME, Og 1
    (lambda: Conv2D(6, 3, stride=2, padding=1, groups=3), (2, 7, 6, 3), 2,   # Og 2, int pad
     ((1, 1), (1, 1)), 1),
    (lambda: Conv2D(6, (3, 2), padding="VALID", dilation=2, groups=2), (2, 7, 6, 2), 1,
     ((0, 0), (0, 0)), 2),                                                    # Og 3
    (lambda: Conv2D(9, 2, stride=(2, 1), dilation=2, groups=3), (2, 7, 6, 3), (2, 1),
     ((1, 1), (1, 1)), 2),                                                    # SAME, Og 3
    (lambda: Conv2D(10, (2, 3), stride=(1, 2), padding=((1, 0), (0, 2)), dilation=(2, 1),
                    groups=5), (2, 7, 6, 5), (1, 2), ((1, 0), (0, 2)), (2, 1)),
    (lambda: Conv2D(12, 3, padding=2, use_bias=False, groups=2), (2, 7, 6, 2), 1,
     ((2, 2), (2, 2)), 1),                                                    # Og 6
    (lambda: Conv1D(4, 3, groups=4), (3, 9, 4), 1, (1, 1), 1),
    (lambda: Conv1D(9, 3, stride=2, padding=2, groups=3), (3, 9, 3), 2, (2, 2), 1),
    (lambda: Conv1D(4, 2, padding="VALID", dilation=2, groups=2), (3, 9, 2), 1, (0, 0), 2),
]


@pytest.mark.parametrize(("make", "shape", "stride", "pads", "dilation"), DEPTHWISE)
def test_depthwise_matches_nested_loops(make, shape, stride, pads, dilation, depthwise_path):
    layer = make()
    x = random.normal(random.key(5), shape, np.float64)
    params, y, dy, (grads, dx) = run(layer, x)
    if len(shape) == 3:  # Conv1D: the reference's 1 x k Conv2D on (N, 1, L, C)
        x4, w4, dy4, pads = x[:, None], params["w"][None], dy[:, None], ((0, 0), pads)
        stride, dilation = (1, stride), (1, dilation)
    else:
        x4, w4, dy4 = x, params["w"], dy
        stride, dilation = (v if isinstance(v, tuple) else (v, v) for v in (stride, dilation))
    y_ref, pullback_ref = naive_grouped(x4, w4, params.get("b", 0.0), stride, pads,
                                        dilation, shape[-1])
    close(y, y_ref.reshape(y.shape))
    dw, db, dx_ref = pullback_ref(dy4)
    close(grads["w"], dw.reshape(params["w"].shape))
    close(dx, dx_ref.reshape(x.shape))
    assert sorted(grads) == sorted(params)
    if "b" in grads:
        close(grads["b"], db)
    grads_only, none = layer.vjp(params, x)[1](dy, need_dx=False)
    assert none is None and all(np.array_equal(grads_only[k], grads[k]) for k in grads)


@pytest.mark.parametrize(("make", "shape"), [case[:2] for case in DEPTHWISE])
def test_depthwise_check_layer(make, shape, depthwise_path):
    check_layer(make(), (None, *shape[1:]), batch=2)


def test_multiplier_maps_output_o_to_input_o_over_og(depthwise_path):
    # Og = 2, a kernel of ones: outputs 2c and 2c + 1 are the window sums of input c (not
    # c and c + C, the tiled order); dx of c gathers dy's channels 2c and 2c + 1
    x = np.ones((1, 4, 5, 3)) * np.array([1.0, 10.0, 100.0])
    y, pb = Conv2D(6, 3, use_bias=False, groups=3).vjp({"w": np.ones((3, 3, 1, 6))}, x)
    count = np.array([[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]])
    np.testing.assert_array_equal(y[0], count[..., None] * np.repeat([1.0, 10.0, 100.0], 2))
    _, dx = pb(np.ones_like(y) * np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]))
    np.testing.assert_array_equal(dx[0], count[..., None] * [3.0, 12.0, 48.0])


@pytest.mark.parametrize(("og", "big", "path"), [(1, False, "depthwise"), (2, False, "depthwise"),
                                                 (3, False, "to_groups"), (3, True, "depthwise")])
def test_cg_1_runs_nhwc_up_to_og_2_or_past_the_buffer(og, big, path, key, monkeypatch):
    seen = set()
    for fn in ("depthwise", "to_groups"):
        f = getattr(_grouped, fn)
        monkeypatch.setattr(_grouped, fn, lambda *a, f=f, fn=fn: seen.add(fn) or f(*a))
    if big:  # an im2col buffer past the limit: group-major would go one offset at a time
        monkeypatch.setattr(conv, "_COLS_BYTES", 0)
    layer = Conv2D(6 * og, 3, groups=6)
    _, params = layer.init(key, (None, 5, 5, 6))
    layer.vjp(params, np.ones((2, 5, 5, 6), np.float32))[1](np.ones((2, 5, 5, 6 * og)))
    assert seen == {path}
