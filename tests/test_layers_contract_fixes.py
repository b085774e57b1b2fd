"""Fixes from the reviews of the layers' contract (tests/test_layers_contract_review.py,
tests/test_contract_combinators_review.py): their remarks, each with a test that fails on
the code before."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random

K = random.key(0)


@pytest.mark.parametrize("shape, index, want", [
    ((None, None, 8), np.s_[..., 0:4], (None, None, 4)),
    ((None, None, 3), np.s_[0], (None, 3)),
    ((None, None, 3), np.s_[1:], (None, None, 3)),
    ((None, 5, None), np.s_[:, -2:], (None, 5, None)),  # 1 long on an axis of 1
    ((None, 5, 7), np.s_[:, -2:], (None, 5, 2)),
    ((None, 6, None), np.s_[::2, 3], (None, 3)),
    ((None, 4, 8), np.s_[1:3], (None, 2, 8)),
])
def test_slice_init_keeps_unknown_sizes_it_does_not_depend_on(shape, index, want):
    out, params = L.Slice(index).init(K, shape)
    assert out == want and params == ()
    x = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)[:, :shape[1] or 10,
                                                                  :shape[2] or 10]
    y = L.Slice(index).apply((), x)
    assert all(w is None or w == g for w, g in zip(want, y.shape)) and len(want) == y.ndim


def test_slice_after_an_embedding_of_unknown_length():
    model = L.Sequential(L.Embedding(10, 8), L.Slice(np.s_[..., 0:4]))
    out, params = model.init(K, (None, None))
    assert out == (None, None, 4)
    assert model.apply(params, np.array([[1, 2, 3]])).shape == (1, 3, 4)


def test_slice_out_of_range_on_a_known_axis_is_still_refused_at_init():
    with pytest.raises(ValueError, match=r"Slice\(5\): cannot index an input of shape "
                                         r"\(None, 3\)"):
        L.Slice(np.s_[5]).init(K, (None, 3))


@pytest.mark.parametrize("layer, in_shape, keys", [
    (L.LayerNorm(), (None, 3), "scale"),
    (L.BatchNorm(), (None, 3), "scale"),
    (L.GroupNorm(1), (None, 2, 3), "scale"),
    (L.RMSNorm(), (None, 3), "scale"),
    (L.PReLU(), (None, 3), "a"),
    (L.PositionalEmbedding(5), (None, 4, 3), "pos"),
])
def test_a_swapped_call_is_blamed_on_the_params(layer, in_shape, keys):
    out = layer.init(K, in_shape)
    params = out[1]
    x = np.ones((2, *in_shape[1:]), np.float32)
    kw = {"state": out[2]} if layer.stateful else {}
    with pytest.raises(TypeError, match=rf"params must be a dict with keys \[.*'{keys}'.*\] "
                                        r"\(as init returns them\), got ndarray"):
        layer.apply(x, params, **kw)
    layer.apply(params, x, **kw)  # the right order still runs


def test_params_passed_for_the_layer_are_shown_by_their_keys():
    dense = L.Dense(3)
    _, params = dense.init(K, (None, 4))
    with pytest.raises(TypeError, match=r"^vjp: expected a layer .*got a dict with keys "
                                        r"\['b', 'w'\]$"):
        fd.vjp(params, dense, np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"got 3$"):  # a short repr is still shown whole
        fd.vjp(3, params, np.ones((2, 4), np.float32))


def test_conv_weight_shape_error_writes_the_shape_plainly():
    conv = L.Conv2D(4, 3, groups=2)
    _, params = conv.init(K, (None, 5, 5, 2))
    params = {**params, "w": np.ones((3, 3, 2, 5), np.float32)}
    with pytest.raises(ValueError, match=r"params\['w'\] must have shape \(3, 3, in // 2, 4\), "
                                         r"got \(3, 3, 2, 5\)"):
        conv.apply(params, np.ones((1, 5, 5, 2), np.float32))


@pytest.mark.parametrize("make, in_shape", [
    (lambda: L.Conv2D(3, 2), (1, 4, 4, 2)),
    (lambda: L.Conv2D(4, 3, groups=2), (2, 5, 5, 2)),
    (lambda: L.Conv2D(4, 3, groups=4), (2, 5, 5, 4)),
    (lambda: L.Conv1D(3, 2), (2, 6, 2)),
])
def test_conv_float64_bias_promotes_and_its_pullback_keeps_the_dtypes(make, in_shape):
    conv = make()
    _, params = conv.init(K, (None, *in_shape[1:]))
    params = {**params, "b": params["b"].astype(np.float64) + 1e-12}
    x = random.normal(random.key(1), in_shape, np.float32)
    y, pullback = conv.vjp(params, x)
    assert y.dtype == np.float64 and np.array_equal(conv.apply(params, x), y)
    no_bias = {**params, "b": np.zeros_like(params["b"])}
    want = conv.apply(no_bias, x).astype(np.float64) + params["b"]
    np.testing.assert_array_equal(y, want)  # the bias added in float64, not rounded
    grads, dx = pullback(np.ones_like(y))
    assert grads["w"].dtype == np.float32 and grads["b"].dtype == np.float64
    assert dx.dtype == np.float32


def test_leaky_relu_zero_slope_is_nan_at_minus_inf_and_zero_below():
    x = np.array([-np.inf, -2.0, -0.0, 0.0, 3.0, np.inf, np.nan], np.float32)
    y = L.LeakyReLU(0.0).apply((), x)
    np.testing.assert_array_equal(y, [np.nan, 0, 0, 0, 3, np.inf, np.nan])
    assert y.dtype == np.float32
    assert np.isneginf(x[0])  # the NaN went into the output, not into the input


def test_local_response_norm_without_k_has_a_right_vjp_off_the_zero_windows():
    # k = 0 runs its pullback under an errstate (a window of zeros: d = 0); elsewhere the
    # same gradient as before, checked against finite differences
    from funcdl.testing import check_vjp

    x = random.normal(random.key(2), (2, 3, 4), np.float64) + 3.0  # no window of zeros
    check_vjp(L.LocalResponseNorm(2, 1.0, 0.75, 0.0), (), x)
