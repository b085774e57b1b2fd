"""Edge cases found by probes: Bidirectional's reversed half checks dy before its time flip;
a recurrent layer's hint for a tuple of lengths; positional layers need a time axis in
in_shape and x; Dropout checks broadcast_dims at init; cotangents and ml_dtypes' floats are
named as such in dtype errors."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L

X = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
LENGTHS = np.array([3, 1])


def _bidir_pullback(key, padded):
    """A Bidirectional(GRU(5), merge=None)'s outputs and pullback, padded or not."""
    b = L.Bidirectional(L.GRU(5, lengths=padded), merge=None)
    _, p = b.init(key, ((2, 3, 4), (2,)) if padded else (2, 3, 4))
    return b.vjp(p, (X, LENGTHS) if padded else X)


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("bad", [(1, 3, 5), (2, 2, 5), (2, 3, 4), (3, 5)])
def test_bidirectional_reversed_half_refuses_a_dy_of_another_shape(key, padded, bad):
    # padded, the time gather ran before the child's check: a (1, T, H) dy was broadcast over
    # the batch (the gradients of the broadcast cotangent), a short T gave NumPy's IndexError
    (yf, _), pullback = _bidir_pullback(key, padded)
    rev = r"reversed GRU\(5(, lengths=True)?\)"
    shown = str(bad).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rev + r": pullback expected dy of shape \(2, 3, 5\) "
                                             r"\(the output's\), got " + shown):
        pullback((np.zeros_like(yf), np.ones(bad, np.float32)))


@pytest.mark.parametrize("padded", [True, False])
def test_bidirectional_reversed_half_takes_dy_in_other_forms_as_before(key, padded):
    # a float64 or list dy is taken in the output's dtype, as every layer's check_cotangent
    (yf, yb), pullback = _bidir_pullback(key, padded)
    dyb = np.random.default_rng(1).normal(size=yb.shape).astype(np.float32)
    grads, dx = pullback((np.zeros_like(yf), dyb))
    for other in (dyb.astype(np.float64), dyb.tolist()):
        g2, dx2 = pullback((np.zeros_like(yf), other))
        np.testing.assert_array_equal(g2["backward"]["w_ih"], grads["backward"]["w_ih"])
        x_grad, x_grad2 = (dx[0], dx2[0]) if padded else (dx, dx2)
        np.testing.assert_array_equal(x_grad2, x_grad)
        assert x_grad2.dtype == np.float32
    with pytest.raises(TypeError, match=r"reversed GRU.*float16 cotangent dy is not supported"):
        pullback((np.zeros_like(yf), dyb.astype(np.float16)))


@pytest.mark.parametrize("make", [L.GRU, L.SimpleRNN, L.LSTM])
@pytest.mark.parametrize("lengths", [(3, 1), (np.int64(3), np.int64(1))])
def test_recurrent_tuple_of_lengths_gets_the_lengths_hint(key, make, lengths):
    # a tuple of ints is never a state; it was said to 'look like an initial state'
    layer = make(5)
    _, p = layer.init(key, (2, 3, 4))
    kind = layer.name.split("(")[0]
    with pytest.raises(ValueError, match=rf"^{kind}\(5\): .*a padded batch \(x, lengths\) "
                                         rf"needs {kind}\(\.\.\., lengths=True\)$"):
        layer.apply(p, (X, lengths))


@pytest.mark.parametrize("make", [L.GRU, L.SimpleRNN])
@pytest.mark.parametrize("padded", [False, True])
def test_gru_and_rnn_given_lstms_state_say_their_state_is_one_array(key, make, padded):
    layer = make(5, lengths=padded)
    _, p = layer.init(key, ((2, 3, 4), (2,)) if padded else (2, 3, 4))
    h = np.zeros((2, 5), np.float32)
    kind = layer.name.split("(")[0]
    form = r"\(x, lengths, h0\)" if padded else r"\(x, h0\)"
    pre = (X, LENGTHS) if padded else (X,)
    with pytest.raises(TypeError, match=rf"looks like LSTM's state \(h0, c0\); {kind}'s "
                                        rf"initial state is one array h0 \(N, H\), taken as "
                                        rf"{form} by {kind}\(\.\.\., initial_state=True\)"):
        layer.apply(p, (*pre, (h, h)))
    # one array h0 keeps its hint
    with pytest.raises(TypeError, match=rf"looks like an initial state; that needs "
                                        rf"{kind}\(\.\.\., initial_state=True\)"):
        layer.apply(p, (*pre, h))


def test_lstm_given_a_state_keeps_the_initial_state_hint(key):
    layer = L.LSTM(5)
    _, p = layer.init(key, (2, 3, 4))
    h = np.zeros((2, 5), np.float32)
    for state in ((h, h), [h, h]):
        with pytest.raises(TypeError, match=r"LSTM\(5\): .*initial state \(h0, c0\); that "
                                            r"needs LSTM\(\.\.\., initial_state=True\)"):
            layer.apply(p, (X, state))


@pytest.mark.parametrize("make", [lambda: L.PositionalEmbedding(8),
                                  lambda: L.SinusoidalPositionalEncoding()])
def test_positional_layers_refuse_an_in_shape_without_a_time_axis(key, make):
    # (None, E) was taken as (T, E): each batch row got another position
    layer = make()
    name = layer.name.replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^{name}: expected an in_shape \(N, T, E\).*rank "
                                         rf">= 3.*got \(None, 4\) \(rank 2\).*\(1, T, 4\)"):
        layer.init(key, (None, 4))
    with pytest.raises(ValueError, match=rf"^{name}: expected an in_shape \(N, T, E\).*\(4,\)"):
        layer.init(key, (4,))
    out, params = layer.init(key, (None, 3, 4))
    assert out == (None, 3, 4)
    assert layer.init(key, (None, 2, 3, 4))[0] == (None, 2, 3, 4)
    # apply refuses a rank-2 x as init does: (N, E) read as (T, E) gave row n position n
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype(np.float32)
    for call in (layer.apply, layer.vjp):
        with pytest.raises(ValueError, match=rf"^{name}: expected a batch of sequences "
                                             rf"\(\.\.\., T, E\) of rank >= 3.*got shape "
                                             rf"\(3, 4\); one sequence \(T, E\) is x\[None\]"):
            call(params, x[1])
    np.testing.assert_array_equal(layer.apply(params, x[1:2])[0], layer.apply(params, x)[1])


@pytest.mark.parametrize("dims, in_shape", [((3,), (None, 4)), ((-3,), (None, 4)),
                                            ((1, 2), (None, 4)), ((0,), ())])
def test_dropout_broadcast_dims_are_checked_at_init(key, dims, in_shape):
    layer = L.Dropout(0.5, broadcast_dims=dims)
    shown = str(tuple(dims)).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^Dropout\(0\.5, broadcast_dims={shown}\): "
                                         rf"broadcast_dims {shown} are out of range"):
        layer.init(key, in_shape)


def test_dropout_valid_broadcast_dims_init_as_before(key):
    for dims in ((1,), (-1,), (1, 2), ()):
        assert L.Dropout(0.5, broadcast_dims=dims).init(key, (None, 3, 3, 4)) == (
            (None, 3, 3, 4), ())


def _mlp_pullback(key):
    m = L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2))
    _, p = m.init(key, (None, 4))
    return m.vjp(p, np.ones((2, 4), np.float32))


def test_a_float16_cotangent_is_named_as_the_cotangent(key):
    # x is float32: the float16 array is dy, which the message blamed on 'input'
    _, pullback = _mlp_pullback(key)
    with pytest.raises(TypeError) as err:
        pullback(np.ones((2, 2), np.float16))
    msg = str(err.value)
    assert msg.startswith("Sequential[2] Dense(2): float16 cotangent dy is not supported; "
                          "cast it to float32 (dy.astype(np.float32)) or float64"), msg
    assert "input" not in msg
    _, pb = L.Tanh().vjp((), np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"^Tanh\(\): float16 cotangent dy is not supported"):
        pb(np.ones(3, np.float16))
    # the input's own message is as it was
    with pytest.raises(TypeError, match=r"^Tanh\(\): float16 input is not supported; cast "
                                        r"it to float32 \(x\.astype\(np\.float32\)\)"):
        L.Tanh().apply((), np.ones(3, np.float16))


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float8_e4m3fn"])
def test_ml_dtypes_floats_are_refused_as_unsupported_floats(key, dtype_name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = getattr(ml_dtypes, dtype_name)
    _, params = L.Dense(3).init(key, (None, 4))
    with pytest.raises(TypeError, match=rf"^Dense\(3\): {dtype_name} input is not supported; "
                                        rf"cast it to float32 \(x\.astype\(np\.float32\)\) "
                                        rf"or float64$"):
        L.Dense(3).apply(params, np.ones((2, 4), np.float32).astype(dt))
    _, pullback = _mlp_pullback(key)
    with pytest.raises(TypeError, match=rf"^Sequential\[2\] Dense\(2\): {dtype_name} "
                                        rf"cotangent dy is not supported; cast it to float32 "
                                        rf"\(dy\.astype\(np\.float32\)\) or float64$"):
        pullback(np.ones((2, 2), np.float32).astype(dt))
