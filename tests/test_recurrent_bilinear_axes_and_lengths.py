"""Three layer edges a helper's audit against torch found: SpectralNorm's default axis of a
Bilinear weight (torch's dim=0, the out axis), Bidirectional of a padded layer given
uint64 lengths, and a recurrent layer's init given an initial state of another batch size
than its input's."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L

KEY = fd.random.key(0)


def test_spectral_norm_of_a_bilinear_normalises_over_its_out_axis_as_torchs():
    # w is (out, D1, D2) in torch's layout; the default took D2 (-1) as the out axis: u of
    # shape (4,) and sigma of the (D2, out·D1) matrix, where torch's u is (3,)
    layer = L.SpectralNorm(L.Bilinear(3), n_power_iterations=200)
    _, params, state = layer.init(KEY, ((None, 2), (None, 4)))
    assert state["u"].shape == (3,) and state["v"].shape == (8,)
    assert L.Bilinear(3).weight_out_axis == 0
    w = params["w"].astype(np.float64)
    x = (np.ones((1, 2)), np.ones((1, 4)))
    y, _ = layer.apply(fd.tree.map(lambda a: a.astype(np.float64), params), x,
                       state=state, train=True)
    sigma = np.linalg.svd(w.reshape(3, -1), compute_uv=False)[0]  # the out axis first
    want = np.einsum("ni,oij,nj->no", x[0], w / sigma, x[1]) + params["b"]
    np.testing.assert_allclose(y, want, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint64, np.uint32, np.int64, np.int8])
def test_bidirectional_of_a_padded_layer_takes_any_integer_lengths(dtype):
    # uint64 lengths minus the int64 steps gave float64 indices: NumPy's IndexError
    layer = L.Bidirectional(L.GRU(5, lengths=True))
    _, params = layer.init(KEY, ((2, 4, 3), (2,)))
    x = fd.random.normal(fd.random.key(1), (2, 4, 3))
    want = layer.apply(params, (x, np.array([4, 2])))
    np.testing.assert_array_equal(layer.apply(params, (x, np.array([4, 2], dtype))), want)


@pytest.mark.parametrize("layer, in_shape, got", [
    (L.GRU(3, initial_state=True, return_state=True), ((2, 4, 2), (5, 3)), "(5, 3)"),
    (L.LSTM(3, lengths=True, initial_state=True), ((2, 4, 2), (2,), ((2, 3), (7, 3))),
     "(7, 3)"),
    (L.SimpleRNN(3, initial_state=True), ((3, 4, 2), (6, 3)), "(6, 3)"),
])
def test_recurrent_init_refuses_a_state_of_another_batch_size(layer, in_shape, got):
    # init reported output shapes for an in_shape no input can match; apply refused later
    with pytest.raises(ValueError, match=r"the initial state's in_shape must be \(\w+, 3\), "
                                         r"one row per sequence.*got " + got.replace(
                                             "(", r"\(").replace(")", r"\)")):
        layer.init(KEY, in_shape)
    assert L.GRU(3, initial_state=True).init(KEY, ((None, 4, 2), (2, 3)))[0] == (None, 4, 3)
