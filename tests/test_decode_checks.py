"""decode_init checks what its steps would silently misread: a cross-attention's memory as
the layer's apply checks it (batch size and feature sizes, by name), and a last-axis layer's
tuple entries for a time axis that is their last (FanInConcat of (N, T) sequences)."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L


def test_a_memory_of_another_batch_is_refused_at_decode_init_as_apply_refuses_it() -> None:
    # before: decode_init broadcast the queries' batch 2 against the memory's 1, and the
    # first step blamed the cache ("the cache holds 1 sequences")
    mha = L.MultiHeadAttention(4)
    _, p = mha.init(fd.random.key(0), ((None, 3, 8), (None, 5, 8)))
    xs = (np.zeros((2, 1, 8)), np.ones((1, 5, 8)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(4\): the inputs must share "
                                         r"one batch size"):
        mha.apply(p, xs)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(4\): the inputs must share "
                                         r"one batch size"):
        L.decode_init(mha, p, xs, 3)


@pytest.mark.parametrize("kdim", [None, 6])
def test_a_memory_of_other_features_is_named_at_decode_init(kdim: int | None) -> None:
    # before: NumPy's 'shapes (10,7) and (6,8) not aligned'
    mha = L.MultiHeadAttention(4, kdim=kdim, vdim=kdim)
    _, p = mha.init(fd.random.key(0), ((None, 3, 8), (None, 5, kdim or 8)))
    xs = (np.zeros((2, 1, 8)), np.ones((2, 5, 7)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(4.*\): expected .*\(N, T, "
                                         + str(kdim or 8)):
        L.decode_init(mha, p, xs, 3)


def test_a_last_axis_layer_on_a_tuple_of_sequences_without_features_is_refused() -> None:
    # before: FanInConcat joined two (N, 1) steps along time, (N, 2), silently
    model = L.Sequential(L.FanOut(2), L.FanInConcat())
    _, p = model.init(fd.random.key(0), (None, 3))
    with pytest.raises(TypeError, match=r"Sequential\[1\] FanInConcat.*cannot be stepped on "
                                        r"an input of shape \(2, 1\)"):
        L.decode_init(model, p, np.zeros((2, 1)), 3)
    wide = L.Sequential(L.FanOut(2), L.FanInConcat())  # on (N, T, E): position-wise
    _, p = wide.init(fd.random.key(0), (None, 3, 4))
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    cache = L.decode_init(wide, p, x[:, :1], 3)
    for t in range(3):
        y, cache = L.decode_step(wide, p, cache, x[:, t:t + 1])
        np.testing.assert_array_equal(y, wide.apply(p, x)[:, t:t + 1])
