"""Side inputs and arrays of other kinds (from a probe feeding every layer unusual but
legitimate arrays): lengths and padding masks from another library (``__array__``, as JAX's
and torch's arrays have) are read as arrays, not refused as "not integers"; masked ones are
refused, as masked inputs are (their mask would be dropped); an np.matrix mask is read as
its array; an input whose dtype is not NumPy's (a torch tensor's) gives its pullback a dx
instead of an AttributeError."""

from __future__ import annotations

import re

import numpy as np
import pytest

from funcdl import optim, random
from funcdl.layers import (
    GRU,
    LSTM,
    Dense,
    LayerNorm,
    MaskedMean,
    MultiHeadAttention,
    RMSNorm,
    SimpleRNN,
)

KEY = random.key(0)
F32 = np.float32
RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 3)).astype(F32)
LENGTHS = np.array([4, 2])
PADDING = np.arange(4) >= LENGTHS[:, None]


class Foreign:
    """An array of another library, seen through ``__array__`` and a dtype NumPy does not
    know (torch's ``torch.float32`` is such an object)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.shape = a.shape
        self.dtype = object()

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


@pytest.mark.parametrize("make", [LSTM, GRU, SimpleRNN])
def test_lengths_of_another_library_are_read(make) -> None:
    layer = make(5, lengths=True)
    _, params = layer.init(KEY, ((None, 4, 3), (None,)))
    want = layer.apply(params, (X, LENGTHS))
    np.testing.assert_array_equal(layer.apply(params, (X, Foreign(LENGTHS))), want)


def test_masked_mean_reads_foreign_lengths_and_masks() -> None:
    by_lengths, by_mask = MaskedMean("lengths"), MaskedMean()
    want = by_lengths.apply((), (X, LENGTHS))
    np.testing.assert_array_equal(by_lengths.apply((), (X, Foreign(LENGTHS))), want)
    np.testing.assert_array_equal(by_mask.apply((), (X, Foreign(PADDING))), want)


@pytest.mark.parametrize("call", [
    lambda: LSTM(5, lengths=True).apply(
        LSTM(5, lengths=True).init(KEY, ((None, 4, 3), (None,)))[1],
        (X, np.ma.masked_array(LENGTHS, [False, True]))),
    lambda: MaskedMean("lengths").apply((), (X, np.ma.masked_array(LENGTHS, [False, True]))),
    lambda: MaskedMean().apply((), (X, np.ma.masked_array(PADDING))),
    lambda: MultiHeadAttention(1, masked=True).apply(
        MultiHeadAttention(1, masked=True).init(KEY, ((None, 4, 3), (None, 4)))[1],
        (X, np.ma.masked_array(PADDING))),
], ids=["LSTM", "MaskedMean('lengths')", "MaskedMean()", "MultiHeadAttention"])
def test_masked_side_inputs_are_refused(call) -> None:
    with pytest.raises(ValueError, match="is a masked array, whose mask would be ignored"):
        call()


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_a_matrix_mask_is_read_as_its_array(normalizer) -> None:
    """np.matrix: a causal layer indexed it into "shape too large to be a matrix"."""
    mha = MultiHeadAttention(1, causal=True, masked=True, normalizer=normalizer)
    _, params = mha.init(KEY, ((None, 4, 3), (None, 4)))
    want = mha.apply(params, (X, PADDING))
    with pytest.warns(PendingDeprecationWarning):  # NumPy's, on making a matrix
        matrix = np.asmatrix(PADDING)
    np.testing.assert_array_equal(mha.apply(params, (X, matrix)), want)


@pytest.mark.parametrize("layer", [LayerNorm(), RMSNorm(), Dense(2)], ids=lambda l: l.name)
def test_an_input_of_another_library_gets_its_dx(layer) -> None:
    x = X[:, 0]
    _, params = layer.init(KEY, (None, 3))
    y, pullback = layer.vjp(params, x)
    want = pullback(np.ones_like(y))[1]
    y2, pullback2 = layer.vjp(params, Foreign(x))
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(pullback2(np.ones_like(y))[1], want)


@pytest.mark.parametrize("layer", [LayerNorm(), RMSNorm()], ids=lambda l: l.name)
def test_params_of_another_library_are_refused_by_name(layer) -> None:
    _, params = layer.init(KEY, (None, 3))
    name = re.escape(layer.name)
    with pytest.raises(TypeError, match=rf"{name}: params\['scale'\] must be a NumPy array"):
        layer.apply({**params, "scale": Foreign(params["scale"])}, X[:, 0])


@pytest.mark.parametrize("make", [lambda: optim.adam(1e-3), lambda: optim.sgd(0.1, 0.9),
                                  lambda: optim.rmsprop(1e-3), lambda: optim.adagrad(0.1),
                                  lambda: optim.adamw(1e-3), lambda: optim.lion(1e-4)],
                         ids=["adam", "sgd", "rmsprop", "adagrad", "adamw", "lion"])
def test_optimizers_refuse_grads_of_another_library_by_path(make) -> None:
    """JAX's and torch's arrays as grads: bare errors inside a step (adam's sqrt into an out
    buffer), DeprecationWarnings, or updates of their type; a TypeError naming the leaf."""
    opt = make()
    params = {"w": np.ones((2, 3), F32)}
    with pytest.raises(TypeError, match=r"grads\['w'\] is a .*Foreign, not a NumPy array; "
                                        r"optimizers take NumPy arrays"):
        opt.update(opt.init(params), {"w": Foreign(np.ones((2, 3), F32))}, params)


def test_decayed_weights_refuse_matrix_params() -> None:
    """np.matrix params made matrix updates in float64 (adamw then blamed the grads)."""
    with pytest.warns(PendingDeprecationWarning):  # NumPy's, on making a matrix
        w = np.asmatrix(np.ones((2, 2), F32))
    opt = optim.adamw(1e-3)
    with pytest.raises(TypeError, match=r"add_decayed_weights.update: params\['w'\] is a "
                                        r"np.matrix"):
        opt.update(opt.init({"w": np.ones((2, 2), F32)}), {"w": np.ones((2, 2), F32)},
                   {"w": w})


def test_a_python_complex_grad_gets_the_complex_message() -> None:
    """Counted as another library's array, it was told to pass np.asarray (a review)."""
    opt = optim.sgd(0.1)
    params = {"a": np.ones((), F32)}
    with pytest.raises(TypeError, match=r"grads\['a'\] has dtype complex128; .*\.real"):
        opt.update(opt.init(params), {"a": 1j}, params)
