"""StackedRNN's refusals: bad states (count, shape, form), mismatched layers, a missing
dropout key, a wrong cotangent or in_shape, decoding; each error names the stack or the
layer at its place (``StackedRNN[1] GRU(...)``), what it expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
from test_stacked_rnn import STATE, C, H, N, T, draw, stack, state_shape

from funcdl import layers as L
from funcdl import random


def test_decoding_refuses_it_by_name():
    model = stack("lstm")
    params = draw(model, (None, T, C))
    with pytest.raises(TypeError, match=r"StackedRNN\(LSTM\(5\), LSTM\(5\)\) cannot be stepped"):
        L.decode_init(model, params, np.ones((N, 1, C)), 4)



# ---------------------------------------------------------------------------- bad input

def _bad_states(kind):
    model = stack(kind, **STATE)
    params = draw(model, ((None, T, C), state_shape(kind, 2, False)))
    return model, params, np.ones((N, T, C))


@pytest.mark.parametrize(("kind", "given", "exc", "parts"), [
    ("gru", (np.ones((N, H)),) * 3, ValueError, ("tuple of 3", "one state per layer (2)")),
    ("gru", np.ones((3, N, H)), ValueError, ("(2, N, 5)", "got shape (3, 3, 5)")),
    ("gru", np.ones((N, H)), ValueError, ("(2, N, 5)", "got shape (3, 5)")),
    ("gru", (np.ones((N, H)), np.ones((N, 4))), ValueError,
     ("StackedRNN[1] GRU(5, initial_state=True, return_state=True)", "(3, 5)", "(3, 4)")),
    ("lstm", ((np.ones((N, H)),) * 2,), ValueError, ("a tuple of 1", "(h0, c0) pair")),
    ("lstm", (np.ones((2, N, H)), np.ones((2, N, 4))), ValueError,
     ("stacked c_0", "(2, N, 5)", "(2, 3, 4)")),
    ("lstm", ((np.ones((N, H)),) * 2, np.ones((N, H))), TypeError,
     ("StackedRNN[1] LSTM(5, initial_state=True, return_state=True)", "(h0, c0)")),
])
def test_bad_states_are_named(kind, given, exc, parts):
    model, params, x = _bad_states(kind)
    with pytest.raises(exc) as e:
        model.apply(params, (x, given))
    assert model.name in str(e.value) or "StackedRNN[" in str(e.value)
    for p in parts:
        assert p in str(e.value), str(e.value)


@pytest.mark.parametrize(("layers", "exc", "parts"), [
    ((L.LSTM(H, lengths=True), L.LSTM(H)), ValueError,
     ("layer 1 LSTM(5)", "lengths=False", "layer 0 LSTM(5, lengths=True)", "lengths=True")),
    ((L.GRU(H, **STATE), L.GRU(H, initial_state=True)), ValueError,
     ("layer 1", "return_state=False", "return_state=True")),
    ((L.LSTM(H, return_sequences=False), L.LSTM(H)), ValueError,
     ("layer 0 LSTM(5, return_sequences=False)", "return_sequences=True")),
    ((L.LSTM(H, **STATE), L.Bidirectional(L.LSTM(H))), ValueError,
     ("layer 1 Bidirectional(LSTM(5))", "initial_state=False", "routes no states")),
    ((L.Bidirectional(L.GRU(H), None), L.GRU(H)), ValueError, ("merge=None", "layer 0")),
    ((L.LSTM(H), L.Dense(H)), TypeError, ("layer 1 is Dense(5)", "recurrent layer")),
    ((L.LSTM(H), L.LSTM), TypeError, ("layer 1", "LSTM()")),
    ((), ValueError, ("at least one",)),
])
def test_mismatched_layers_are_refused(layers, exc, parts):
    with pytest.raises(exc) as e:
        L.StackedRNN(*layers)
    assert "StackedRNN" in str(e.value)
    for p in parts:
        assert p in str(e.value), str(e.value)


def test_other_bad_calls_are_named():
    model = L.StackedRNN(L.GRU(H, **STATE), L.LSTM(3, **STATE), dropout=0.2)
    params = draw(model, ((None, T, C), ((None, H), ((None, 3), (None, 3)))))
    x = np.ones((N, T, C))
    s0 = (np.ones((N, H)), (np.ones((N, 3)), np.ones((N, 3))))
    with pytest.raises(ValueError, match=r"stacked state .* one kind and one hidden size"):
        model.apply(params, (x, np.ones((2, N, H))))
    with pytest.raises(TypeError, match=r"expected the input \(x, states\).*got shape"):
        model.apply(params, x)
    with pytest.raises(ValueError, match="needs a random key"):
        model.apply(params, (x, s0), train=True)
    with pytest.raises(ValueError, match=r"params as a tuple with one entry per layer \(2\)"):
        model.apply(params[:1], (x, s0))
    (y, _), pullback = model.vjp(params, (x, s0))
    with pytest.raises(TypeError, match=r"cotangent \(dy, d_states\)"):
        pullback(y)
    with pytest.raises(ValueError, match=r"one entry per layer \(2\).*a tuple of 3"):
        pullback((y, (None,) * 3))
    with pytest.raises(ValueError, match=r"StackedRNN\[0\] GRU.*in_shape"):
        model.init(random.key(0), ((None, T, C), ((None, 4), ((None, 3), (None, 3)))))


def test_the_container_decides_the_states_form():
    """A tuple is one state per layer; anything else (an array, a list of rows) the stacked
    array, for GRU the same numbers either way; LSTM's pair of lists of arrays reads both
    ways and is refused."""
    model = stack("gru", **STATE)
    params = draw(model, ((None, T, C), state_shape("gru", 2, False)))
    rng = np.random.default_rng(0)
    x, h0, h1 = rng.normal(size=(N, T, C)), rng.normal(size=(N, H)), rng.normal(size=(N, H))
    y, s_n = model.apply(params, (x, (h0, h1)))
    for stacked in ([h0, h1], np.stack([h0, h1]), np.stack([h0, h1]).tolist()):
        y2, s2 = model.apply(params, (x, stacked))
        np.testing.assert_array_equal(y2, y)
        assert isinstance(s2, np.ndarray)
        np.testing.assert_array_equal(s2, np.stack(s_n))
    lstm = stack("lstm", **STATE)
    params = draw(lstm, ((None, T, C), state_shape("lstm", 2, False)))
    with pytest.raises(ValueError, match=r"pair of lists of arrays.*\(\(h0, c0\), \(h0, c0\)\)"):
        lstm.apply(params, (x, ([h0, h1], [h0, h1])))
