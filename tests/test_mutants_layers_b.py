"""Tests that kill mutants which survived the suite in the convolution, pooling, resampling,
attention and recurrent layers (a mutation-testing pass over funcdl/layers): outputs and
pullbacks that must be arrays of their own, not views of the caller's cotangent or of what
the pullback reads later (a caller may add into dx in place, or edit y in place); and
attention over no keys at all."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import random
from funcdl.layers.adaptive_pool import (
    AdaptiveAvgPool1D,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool1D,
    AdaptiveMaxPool2D,
)
from funcdl.layers.attention import MultiHeadAttention
from funcdl.layers.pad import Pad1D, Pad2D
from funcdl.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN
from funcdl.layers.upsample import Upsample

KEY = random.key(0)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------- identities

@pytest.mark.parametrize("make, shape", [
    # adaptive pools whose output size is the input's
    (lambda: AdaptiveAvgPool2D((4, 5)), (2, 4, 5, 3)),
    (lambda: AdaptiveAvgPool2D((None, None)), (2, 4, 5, 3)),
    (lambda: AdaptiveMaxPool2D((4, 5)), (2, 4, 5, 3)),
    (lambda: AdaptiveAvgPool1D(5), (2, 5, 3)),
    (lambda: AdaptiveMaxPool1D(5), (2, 5, 3)),
    # scale 1, r = 1, zero padding
    (lambda: Upsample(1, "bilinear"), (2, 3, 4, 2)),
    (lambda: Upsample(1, "nearest"), (2, 3, 4, 2)),
    (lambda: PixelShuffle(1), (2, 3, 4, 2)),
    (lambda: PixelUnshuffle(1), (2, 3, 4, 2)),
    (lambda: Pad2D(0, mode="reflect"), (2, 3, 4, 2)),
    (lambda: Pad2D(0, mode="circular"), (2, 3, 4, 2)),
    (lambda: Pad1D(0, mode="replicate"), (2, 3, 2)),
    (lambda: Pad2D(0), (2, 3, 4, 2)),
], ids=["avg2d", "avg2d-none", "max2d", "avg1d", "max1d", "upsample-bilinear",
        "upsample-nearest", "shuffle", "unshuffle", "pad-reflect", "pad-circular",
        "pad1d-replicate", "pad-constant"])
def test_identity_layers_hand_out_arrays_of_their_own(make, shape):
    # the layer (and its vjp) is the identity, but neither y nor dx may share memory with
    # x or dy (a caller may add into dx in place)
    x = rand(*shape)
    y, pullback = make().vjp((), x)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    dy = rand(*y.shape, seed=1)
    dy_before = dy.copy()
    dx = pullback(dy)[1]
    np.testing.assert_array_equal(dx, dy)
    assert dx.flags.writeable and not np.shares_memory(dx, dy)
    dx += 1.0
    np.testing.assert_array_equal(dy, dy_before)


# ---------------------------------------------------------------------------- recurrent

@pytest.mark.parametrize("make", [SimpleRNN, LSTM, GRU], ids=["rnn", "lstm", "gru"])
@pytest.mark.parametrize("return_state", [False, True])
def test_recurrent_last_step_output_is_not_what_the_pullback_reads(make, return_state):
    # return_sequences=False: y is h_T, which the pullback reads (dW_hh and, for a tanh or
    # ReLU, f'); editing y (or h_n) in place after the vjp must not change the gradients
    layer = make(4, return_sequences=False, return_state=return_state)
    _, params = layer.init(KEY, (2, 3, 3))
    x = rand(2, 3, 3)
    out, pullback = layer.vjp(params, x)
    y = out[0] if return_state else out
    dy = rand(*y.shape, seed=1)
    cot = (dy, None) if return_state else dy
    grads, dx = pullback(cot)
    grads, dx = {k: v.copy() for k, v in grads.items()}, dx.copy()
    y[...] = 7.0
    if return_state:
        for s in (out[1] if make is LSTM else (out[1],)):
            s[...] = -3.0
    grads2, dx2 = pullback(cot)
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k], err_msg=k)
    np.testing.assert_array_equal(dx2, dx)


# ---------------------------------------------------------------------------- attention

@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_attention_over_no_keys_gives_the_output_bias(normalizer):
    # Tk = 0: no scores to normalise, the context is 0, so y = b_o, and only b_o has a
    # gradient (Σ dy); dq is 0 and dkv is empty
    layer = MultiHeadAttention(2, normalizer=normalizer)
    _, params = layer.init(KEY, ((2, 3, 4), (2, 0, 4)))
    params = {k: rand(*v.shape, seed=i) for i, (k, v) in enumerate(params.items())}
    q, kv = rand(2, 3, 4), np.zeros((2, 0, 4))
    y, pullback = layer.vjp(params, (q, kv))
    np.testing.assert_array_equal(y, np.broadcast_to(params["b_o"], (2, 3, 4)))
    np.testing.assert_array_equal(layer.apply(params, (q, kv)), y)
    dy = rand(*y.shape, seed=9)
    grads, (dq, dkv) = pullback(dy)
    np.testing.assert_allclose(grads["b_o"], dy.sum(axis=(0, 1)), rtol=1e-12)
    for k in ("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v"):
        assert grads[k].shape == params[k].shape and not grads[k].any(), k
    assert dq.shape == q.shape and not dq.any() and dkv.shape == (2, 0, 4)
