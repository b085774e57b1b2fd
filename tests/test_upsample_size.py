"""Upsample(size=(oh, ow)): torch's ``F.interpolate(size=...)`` (DeepLab's logits resized to
the image), up and down, both modes and both align_corners: values and dx against torch in
float64 (nearest's source rows in float32 too, torch's default dtype, where its rounding
picks them; its float64 kernel rounds a few boundary rows otherwise, none of these),
finite differences, shapes, dtypes and the refusals naming the layer."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers._resize import nearest_index
from funcdl.testing import check_layer, check_vjp

PAIRS = (((5, 7), (17, 13)), ((65, 9), (513, 33)), ((8, 8), (3, 5)), ((7, 3), (7, 3)),
         ((1, 4), (6, 1)), ((4, 6), (8, 12)), ((3, 7), (10, 22)), ((6, 6), (9, 9)))
MODES = (("nearest", False), ("bilinear", False), ("bilinear", True))


def _torch_resize(x, dy, size, mode, align):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    kw = {} if mode == "nearest" else {"align_corners": align}
    yt = torch.nn.functional.interpolate(xt, size=size, mode=mode, **kw)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))
    return yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("mode, align", MODES)
def test_matches_torch_in_float64(mode, align):
    rng = np.random.default_rng(0)
    for (h, w), size in PAIRS:
        layer = L.Upsample(size=size, mode=mode, align_corners=align)
        x = rng.standard_normal((2, h, w, 3))
        y, pullback = layer.vjp((), x)
        dy = rng.standard_normal(y.shape)
        _, dx = pullback(dy)
        yt, dxt = _torch_resize(x, dy, size, mode, align)
        where = f"{layer.name} from {(h, w)}"
        np.testing.assert_allclose(y, yt, rtol=1e-10, atol=1e-12, err_msg=where)
        np.testing.assert_allclose(dx, dxt, rtol=1e-10, atol=1e-12, err_msg=where)


def test_nearest_source_rows_match_torch_float32():
    torch = pytest.importorskip("torch")
    for size in range(1, 40):
        x = torch.arange(size, dtype=torch.float32).reshape(1, 1, size, 1)
        for n_out in range(1, 200):
            want = torch.nn.functional.interpolate(x, size=(n_out, 1), mode="nearest")
            np.testing.assert_array_equal(nearest_index(size, n_out),
                                          want.reshape(-1).numpy().astype(np.intp),
                                          err_msg=f"{size} -> {n_out}")


@pytest.mark.parametrize("mode, align", MODES)
def test_vjp_by_finite_differences(mode, align):
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 3))
    for size in ((7, 9), (3, 2), (4, 5)):
        check_vjp(L.Upsample(size=size, mode=mode, align_corners=align), (), x)


def test_the_pullback_is_the_transpose_of_the_forward():
    """<A x, dy> = <x, Aᵀ dy>: a wrong transpose or a lost row of weights breaks it."""
    rng = np.random.default_rng(2)
    for mode, align in MODES:
        layer = L.Upsample(size=(11, 4), mode=mode, align_corners=align)
        x = rng.standard_normal((3, 5, 7, 2))
        y, pullback = layer.vjp((), x)
        dy = rng.standard_normal(y.shape)
        assert np.vdot(y, dy) == pytest.approx(np.vdot(x, pullback(dy)[1]), rel=1e-12)


@pytest.mark.parametrize("mode, align", MODES)
def test_check_layer_float32_and_shapes(mode, align):
    layer = L.Upsample(size=(9, 6), mode=mode, align_corners=align)
    check_layer(layer, (None, 4, 3, 2))
    out_shape, params = layer.init(random.key(0), (None, None, None, 2))
    assert out_shape == (None, 9, 6, 2) and params == ()
    y, pullback = layer.vjp((), np.ones((2, 5, 5, 2), np.float32))
    assert y.shape == (2, 9, 6, 2) and y.dtype == np.float32
    assert pullback(np.ones_like(y))[1].dtype == np.float32


def test_an_int_size_is_square_and_bilinear_is_linear_in_x():
    layer = L.Upsample(size=6, mode="bilinear")
    x = np.arange(2 * 3 * 4 * 1, dtype=np.float64).reshape(2, 3, 4, 1)
    y = layer.apply((), x)
    assert y.shape == (2, 6, 6, 1)
    np.testing.assert_allclose(layer.apply((), 2 * x + 1), 2 * y + 1, rtol=1e-14)


def test_scale_factor_paths_unchanged():
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 2))
    for mode, align in MODES:
        a = L.Upsample(2, mode, align).apply((), x)
        b = L.Upsample(size=(6, 8), mode=mode, align_corners=align).apply((), x)
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({}, TypeError, "either scale_factor or size"),
    ({"scale_factor": 2, "size": (4, 4)}, TypeError, "either scale_factor or size"),
    ({"size": (0, 4)}, TypeError, r"size must be a positive int or a pair"),
    ({"size": 2.5}, TypeError, r"size must be"),
    ({"size": (2, 3, 4)}, TypeError, r"size must be"),
    ({"size": 4, "align_corners": True}, ValueError, "needs mode='bilinear'"),
])
def test_bad_arguments_name_the_layer(kwargs, exc, match):
    with pytest.raises(exc, match=match) as e:
        L.Upsample(**kwargs)
    assert "Upsample(" in str(e.value)


def test_bad_input_names_the_layer_and_shapes():
    layer = L.Upsample(size=(4, 4), mode="bilinear")
    with pytest.raises(ValueError, match=r"Upsample\(size=\(4, 4\), mode='bilinear'\).*\(N, H, "
                       r"W, C\).*\(2, 3\)"):
        layer.apply((), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"H, W >= 1"):
        layer.apply((), np.zeros((2, 0, 3, 1)))
