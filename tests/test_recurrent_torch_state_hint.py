"""A torch-shaped initial state, h_0 of (num_layers·num_directions, N, H), given to a
one-layer recurrent layer: the error says which slice to pass."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L

N, T, C, H = 3, 4, 2, 5


@pytest.mark.parametrize("kind", ["SimpleRNN", "GRU", "LSTM"])
@pytest.mark.parametrize("layers", [1, 2])
def test_torch_shaped_state_gets_the_slice_to_pass(kind: str, layers: int) -> None:
    lstm = kind == "LSTM"
    layer = getattr(L, kind)(H, initial_state=True)
    state_shape = ((None, H), (None, H)) if lstm else (None, H)
    _, params = layer.init(fd.random.key(0), ((None, T, C), state_shape))
    x = np.zeros((N, T, C), np.float32)
    h0 = np.zeros((layers, N, H), np.float32)
    state = (h0, h0[0]) if lstm else h0
    with pytest.raises(ValueError, match=rf"{kind}\(5, initial_state=True\): the initial state "
                                         rf"h0 must have shape \(3, 5\)") as info:
        layer.apply(params, (x, state))
    assert "pass h0[0] here, h0[k] to the k-th layer of a stack" in str(info.value)
    assert f"got shape ({layers}, 3, 5)" in str(info.value)


def test_a_state_of_other_shape_gets_no_torch_hint() -> None:
    layer = L.GRU(H, initial_state=True)
    _, params = layer.init(fd.random.key(0), ((None, T, C), (None, H)))
    with pytest.raises(ValueError, match=r"must have shape \(3, 5\)") as info:
        layer.apply(params, (np.zeros((N, T, C)), np.zeros((2, 4, 5))))
    assert "torch" not in str(info.value)
