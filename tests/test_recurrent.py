"""SimpleRNN, LSTM, GRU (funcdl.layers.recurrent): forwards against a naive NumPy loop per
example and step written from PyTorch's equations (a wrong gate order or sign shows),
vjps against finite differences in float64 for every option, check_layer (float32 kept,
apply == vjp, rows independent), reverse as the forward layer on the flipped sequence, the
last step alone, a bidirectional layer from FanOut/Parallel/FanInConcat, params and their
initialisation, bad inputs, and a small Embedding-LSTM-Dense classifier that learns.
PyTorch cross-checks are in test_recurrent_torch.py."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import initializers, losses, optim, random, tree
from funcdl import layers as L
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
N, T, C, H = 3, 4, 3, 5

# (kind, constructor options): each kind with every option, alone or together
CONFIGS = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"reverse": True}),
    ("rnn", {"return_sequences": False, "use_bias": False}),
    ("lstm", {}), ("lstm", {"reverse": True}), ("lstm", {"return_sequences": False}),
    ("lstm", {"use_bias": False, "reverse": True, "return_sequences": False}),
    ("gru", {}), ("gru", {"reverse": True}), ("gru", {"return_sequences": False}),
    ("gru", {"use_bias": False, "reverse": True}),
]
MAKERS = {"rnn": SimpleRNN, "lstm": LSTM, "gru": GRU}
IDS = [f"{k}-{'-'.join(f'{a}={v}' for a, v in o.items()) or 'default'}" for k, o in CONFIGS]


def make(kind, hidden=H, **options):
    return MAKERS[kind](hidden, **options)


def setup(kind, options, seed=0, batch=N, steps=T, dtype=np.float64):
    """The layer, params drawn wider than torch's default (gates away from 0.5), an input."""
    layer = make(kind, **options)
    _, params = layer.init(random.key(seed), (None, steps, C))
    rng = np.random.default_rng(seed)
    params = {k: (rng.uniform(-0.8, 0.8, v.shape)).astype(dtype) for k, v in params.items()}
    x = rng.normal(0, 1.0, (batch, steps, C)).astype(dtype)
    return layer, params, x


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def naive(kind, params, x, nonlinearity="tanh", reverse=False, return_sequences=True,
          **_):
    """Loops over examples and steps, one gate at a time, as torch's docs write them."""
    w_ih, w_hh = params["w_ih"], params["w_hh"]
    hid = w_hh.shape[0]
    zeros = np.zeros(w_ih.shape[1])
    b_ih, b_hh = params.get("b_ih", zeros), params.get("b_hh", zeros)

    def gate(k, xt, h):
        """(W_i{k} x_t + b_i{k}, W_h{k} h + b_h{k}) for the k-th block of columns."""
        cols = slice(k * hid, (k + 1) * hid)
        return xt @ w_ih[:, cols] + b_ih[cols], h @ w_hh[:, cols] + b_hh[cols]

    out = np.zeros((x.shape[0], x.shape[1], hid))
    for i in range(x.shape[0]):
        h, c = np.zeros(hid), np.zeros(hid)
        for t in (range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])):
            xt = x[i, t]
            if kind == "rnn":
                a = sum(gate(0, xt, h))
                h = np.maximum(a, 0) if nonlinearity == "relu" else np.tanh(a)
            elif kind == "lstm":
                in_gate, forget = sigmoid(sum(gate(0, xt, h))), sigmoid(sum(gate(1, xt, h)))
                cand, out_gate = np.tanh(sum(gate(2, xt, h))), sigmoid(sum(gate(3, xt, h)))
                c = forget * c + in_gate * cand
                h = out_gate * np.tanh(c)
            else:
                reset, update = sigmoid(sum(gate(0, xt, h))), sigmoid(sum(gate(1, xt, h)))
                xn, hn = gate(2, xt, h)
                new = np.tanh(xn + reset * hn)
                h = (1 - update) * new + update * h
            out[i, t] = h
    if return_sequences:
        return out
    return out[:, 0] if reverse else out[:, -1]


# ---------------------------------------------------------------------------- forward, vjp

@pytest.mark.parametrize(("kind", "options"), CONFIGS, ids=IDS)
def test_forward_matches_naive_loop(kind, options):
    layer, params, x = setup(kind, options, seed=1)
    np.testing.assert_allclose(layer.apply(params, x), naive(kind, params, x, **options),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("kind", "options"), CONFIGS, ids=IDS)
def test_vjp_finite_differences(kind, options):
    layer, params, x = setup(kind, options, seed=2)
    check_vjp(layer, params, x)  # also pullback(dy, need_dx=False): the same dparams


@pytest.mark.parametrize(("kind", "options"), CONFIGS, ids=IDS)
def test_check_layer(kind, options):
    check_layer(make(kind, **options), (None, T, C))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_long_sequence_vjp(kind):
    """Twelve steps, tiny batch: the carries through many steps (dc_{t+1} f, dh z)."""
    layer, params, x = setup(kind, {}, seed=3, batch=2, steps=12)
    check_vjp(layer, params, x)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_reverse_is_the_forward_layer_on_the_flipped_sequence(kind):
    back, params, x = setup(kind, {"reverse": True}, seed=4)
    ahead = make(kind)
    y, pullback = back.vjp(params, x)
    y_ref, pullback_ref = ahead.vjp(params, x[:, ::-1])
    np.testing.assert_array_equal(y, y_ref[:, ::-1])
    dy = np.random.default_rng(5).normal(size=y.shape)
    (grads, dx), (grads_ref, dx_ref) = pullback(dy), pullback_ref(dy[:, ::-1])
    np.testing.assert_array_equal(dx, dx_ref[:, ::-1])
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_last_step_is_the_sequence_at_its_end(kind, reverse):
    """return_sequences=False: the sequence's last processed step, and its gradients are the
    sequence's with dy zero at every other step."""
    last, params, x = setup(kind, {"return_sequences": False, "reverse": reverse}, seed=6)
    full = make(kind, reverse=reverse)
    end = 0 if reverse else -1
    y, pullback = last.vjp(params, x)
    y_full, pullback_full = full.vjp(params, x)
    np.testing.assert_array_equal(y, y_full[:, end])
    dy = np.random.default_rng(7).normal(size=y.shape)
    dy_full = np.zeros(y_full.shape)
    dy_full[:, end] = dy
    (grads, dx), (grads_full, dx_full) = pullback(dy), pullback_full(dy_full)
    np.testing.assert_allclose(dx, dx_full, rtol=1e-13, atol=1e-15)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_full[k], rtol=1e-13, atol=1e-15)


def test_bidirectional_from_fanout_parallel_concat():
    """A bidirectional LSTM: both directions on one input, their states side by side."""
    model = L.Sequential(L.FanOut(2), L.Parallel(LSTM(H), LSTM(H, reverse=True)),
                         L.FanInConcat())
    out_shape, params = model.init(KEY, (None, T, C))
    assert out_shape == (None, T, 2 * H)
    x = np.random.default_rng(8).normal(size=(N, T, C))
    params = fd.tree.map(lambda p: p.astype(np.float64), params)
    y = model.apply(params, x)
    ahead, back = params[1]
    np.testing.assert_allclose(y[..., :H], naive("lstm", ahead, x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y[..., H:], naive("lstm", back, x, reverse=True), rtol=1e-12,
                               atol=1e-14)
    check_vjp(model, params, x)


# ---------------------------------------------------------------------------- dtypes, params

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_float32_kept_and_inputs_converted(kind):
    layer = make(kind)
    _, params = layer.init(KEY, (None, T, C))
    x = np.random.default_rng(9).normal(size=(N, T, C)).astype(np.float32)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    # a float64 input computes in float64; the gradients stay in the params' dtype
    y64, pullback64 = layer.vjp(params, x.astype(np.float64))
    grads64, dx64 = pullback64(np.ones_like(y64))
    assert y64.dtype == dx64.dtype == np.float64
    assert all(g.dtype == np.float32 for g in grads64.values())
    np.testing.assert_allclose(y64, y, rtol=1e-5, atol=1e-6)
    # integers take the params' dtype, as a list of Python floats does
    ints = np.arange(N * T * C).reshape(N, T, C) % 3
    np.testing.assert_array_equal(layer.apply(params, ints),
                                  layer.apply(params, ints.astype(np.float32)))
    assert layer.apply(params, ints.astype(float).tolist()).dtype == np.float32


@pytest.mark.parametrize(("kind", "gates"), [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_params_torch_layout_and_default_init(kind, gates):
    out_shape, params = make(kind, 16).init(KEY, (None, 7, C))
    assert out_shape == (None, 7, 16)
    assert {k: v.shape for k, v in params.items()} == {
        "w_ih": (C, gates * 16), "w_hh": (16, gates * 16), "b_ih": (gates * 16,),
        "b_hh": (gates * 16,)}
    for v in params.values():  # torch's U(±1/sqrt(H)), each array its own draw
        assert v.dtype == np.float32 and np.abs(v).max() <= 0.25 and np.abs(v).max() > 0.2
    assert not np.array_equal(params["b_ih"], params["b_hh"])
    out_shape, params = make(kind, 4, use_bias=False, return_sequences=False).init(
        KEY, (None, None, C))
    assert out_shape == (None, 4) and set(params) == {"w_ih", "w_hh"}


def test_w_init_and_b_init_are_used():
    layer = LSTM(3, w_init=initializers.zeros(), b_init=initializers.ones())
    _, params = layer.init(KEY, (None, 2, 2))
    assert not params["w_ih"].any() and not params["w_hh"].any()
    assert (params["b_ih"] == 1).all() and (params["b_hh"] == 1).all()
    # every gate σ(2) or tanh(2), whatever the input: c_1 = σ(2) tanh(2), h_1 = σ(2) tanh(c_1)
    y = layer.apply(params, np.ones((1, 2, 2), np.float32))
    s, g = sigmoid(2.0), np.tanh(2.0)
    np.testing.assert_allclose(y[0, 0], s * np.tanh(s * g), rtol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_empty_batch_and_one_step(kind):
    layer, params, _ = setup(kind, {})
    y, pullback = layer.vjp(params, np.zeros((0, 2, C)))
    grads, dx = pullback(np.zeros(y.shape))
    assert y.shape == (0, 2, H) and dx.shape == (0, 2, C)
    assert all(not g.any() for g in grads.values())
    layer, params, x = setup(kind, {}, steps=1)
    check_vjp(layer, params, x)


def test_pullback_reads_nothing_the_caller_can_change():
    """The output is the layer's own copy, and a pullback can run twice."""
    layer, params, x = setup("lstm", {"return_sequences": False})
    y, pullback = layer.vjp(params, x)
    dy = np.ones_like(y)
    first = pullback(dy)
    y[...] = 7.0
    again = pullback(dy)
    for a, b in zip(fd.tree.leaves(first), fd.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- bad inputs

def _lstm_params(c=C):
    return LSTM(4).init(KEY, (None, 2, c))[1]


BAD = [
    ("rank2", lambda: LSTM(4).apply(_lstm_params(), np.ones((5, C))), ValueError,
     ["LSTM(4)", "(N, T, 3)", "rank 3", "(5, 3)", "x[None]"]),
    ("rank4", lambda: GRU(4).apply(GRU(4).init(KEY, (None, 2, C))[1], np.ones((2, 2, 2, C))),
     ValueError, ["GRU(4)", "(N, T, 3)", "(2, 2, 2, 3)", "rank 4"]),
    ("channels", lambda: LSTM(4).apply(_lstm_params(), np.ones((2, 6, 5))), ValueError,
     ["LSTM(4)", "(N, T, 3)", "(2, 6, 5)", "params['w_ih'] (3, 16)", "transpose"]),
    ("no steps", lambda: LSTM(4).apply(_lstm_params(), np.ones((2, 0, C))), ValueError,
     ["LSTM(4)", "at least one time step", "(2, 0, 3)", "T = 0"]),
    ("hidden 0", lambda: LSTM(0), ValueError, ["LSTM", "hidden", ">= 1", "got 0"]),
    ("hidden float", lambda: GRU(2.5), TypeError, ["GRU", "hidden", "int", "2.5"]),
    ("nonlinearity", lambda: SimpleRNN(4, "sigmoid"), ValueError,
     ["SimpleRNN(4)", "'tanh' or 'relu'", "'sigmoid'"]),
    ("nonlinearity type", lambda: SimpleRNN(4, None), TypeError,
     ["SimpleRNN(4)", "'tanh' or 'relu'", "None"]),
    ("flag", lambda: GRU(4, return_sequences="no"), TypeError,
     ["GRU(4)", "return_sequences", "True or False", "'no'"]),
    ("in_shape rank", lambda: LSTM(4).init(KEY, (None, C)), ValueError,
     ["LSTM(4)", "(N, T, C)", "(None, 3)", "rank 2"]),
    ("in_shape T=0", lambda: LSTM(4).init(KEY, (None, 0, C)), ValueError,
     ["LSTM(4)", "(None, 0, 3)", "T = 0"]),
    ("in_shape C", lambda: SimpleRNN(4).init(KEY, (None, 2, None)), ValueError,
     ["SimpleRNN(4)", "channel axis", "(None, 2, None)"]),
    ("params w_hh", lambda: LSTM(4).apply({**_lstm_params(), "w_hh": np.ones((3, 16))},
                                          np.ones((2, 2, C))), ValueError,
     ["LSTM(4)", "params['w_hh']", "(4, 16)", "(3, 16)"]),
    ("params keys", lambda: LSTM(4, use_bias=False).apply(_lstm_params(), np.ones((2, 2, C))),
     ValueError, ["LSTM(4, use_bias=False)", "unexpected keys", "b_hh"]),
    ("dy shape", lambda: LSTM(4).vjp(_lstm_params(), np.ones((2, 2, C)))[1](np.ones((2, 4))),
     ValueError, ["LSTM(4)", "dy of shape (2, 2, 4)", "(2, 4)"]),
]


@pytest.mark.parametrize(("call", "exc", "parts"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_inputs_named(call, exc, parts):
    with pytest.raises(exc) as info:
        call()
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


# ---------------------------------------------------------------------------- training

def test_embedding_lstm_dense_learns_to_remember_the_first_token():
    """The label is the first token's parity, carried through all eight steps to the end."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(64, 8))
    labels = x[:, 0] % 2
    model = L.Sequential(L.Embedding(5, 8), LSTM(16, return_sequences=False), L.Dense(2))
    _, params = model.init(KEY, (None, 8))
    step = fd.value_and_grad(model, losses.softmax_cross_entropy)
    opt = optim.adam(0.05)
    state = opt.init(params)
    values = []
    for _ in range(30):
        value, grads = step(params, x, labels)
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        values.append(float(value))
    assert values[0] > 0.6 and values[-1] < 0.05, values
    assert all(p.dtype == np.float32 for p in fd.tree.leaves(params))
    assert (model.apply(params, x).argmax(-1) == labels).mean() == 1.0


def test_token_ids_without_an_embedding_are_named():
    # a probe fed (N, T) ids straight to an LSTM: the message said only the rank
    lstm = L.LSTM(4)
    _, params = lstm.init(fd.random.key(0), (None, 5, 8))
    with pytest.raises(ValueError, match=r"^LSTM\(4\): expected input \(N, T, 8\) of rank 3 "
                                         r".*integer token ids \(N, T\) need an Embedding"):
        lstm.apply(params, np.arange(15).reshape(3, 5))


@pytest.mark.parametrize("make", [lambda: L.SimpleRNN(4), lambda: L.GRU(4), lambda: L.LSTM(4),
                                  lambda: L.SimpleRNN(4, reverse=True)])
@pytest.mark.parametrize("n, t", [(1, 5), (3, 1)])
def test_editing_the_returned_sequence_leaves_the_gradients_alone(make, n, t):
    # with N or T of 1 the swapped states were contiguous and y was a view of what the
    # pullback reads: `y *= 10` between vjp and pullback changed dW by up to 2.7e6
    layer = make()
    _, params = layer.init(random.key(0), (None, t, 3))
    x = random.normal(random.key(1), (n, t, 3), np.float64)
    params = tree.astype(params, np.float64)
    dy = np.ones((n, t, 4))
    _, pullback = layer.vjp(params, x)
    want = pullback(dy)
    y2, pullback2 = layer.vjp(params, x)
    y2 *= 10.0
    got = pullback2(dy)
    for a, b in zip(tree.leaves(got), tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
