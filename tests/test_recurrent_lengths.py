"""SimpleRNN, LSTM, GRU with ``lengths=True`` (a padded batch ``(x, lengths)``, torch's
packed sequences): the padded batch against each sequence run alone, unpadded, by the
unpadded layer (outputs, every gradient; the unpadded layer is itself checked against a
naive loop and torch), finite differences in float64, zero outputs and gradients past each
end, lengths of 0, lengths all T bit for bit the unpadded layer, float32 kept, a
bidirectional layer from FanOut/Parallel/FanInConcat, and bad lengths. PyTorch's
pack_padded_sequence cross-checks are in test_recurrent_lengths_torch.py."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
N, T, C, H = 4, 6, 3, 5
LENGTHS = np.array([6, 3, 1, 4])
KINDS = {"rnn": (SimpleRNN, {}), "relu": (SimpleRNN, {"nonlinearity": "relu"}),
         "lstm": (LSTM, {}), "gru": (GRU, {})}
ALL = [(k, r, s) for k in KINDS for r in (False, True) for s in (True, False)]
ALL_IDS = [f"{k}-{'reverse' if r else 'forward'}-{'seq' if s else 'last'}" for k, r, s in ALL]


def make(kind, **options):
    ctor, extra = KINDS[kind]
    return ctor(H, **extra, **options)


def setup(kind, seed=0, dtype=np.float64, lengths=LENGTHS, steps=T, **options):
    """The padded layer, params drawn wide (gates away from 0.5), x with garbage (large
    values) past each sequence's end, and the lengths."""
    layer = make(kind, lengths=True, **options)
    _, params = layer.init(random.key(seed), ((None, steps, C), (None,)))
    rng = np.random.default_rng(seed)
    params = {k: rng.uniform(-0.8, 0.8, v.shape).astype(dtype) for k, v in params.items()}
    x = rng.normal(size=(len(lengths), steps, C))
    x[np.arange(steps) >= lengths[:, None]] = 50.0
    return layer, params, x.astype(dtype), np.asarray(lengths)


def cotangent(y, seed):
    return np.random.default_rng(seed).normal(size=y.shape)


# ---------------------------------------------------------------------------- semantics

@pytest.mark.parametrize(("kind", "reverse", "return_sequences"), ALL, ids=ALL_IDS)
def test_padded_batch_is_each_sequence_alone(kind, reverse, return_sequences):
    """The key property: outputs and every gradient of the padded batch are those of each
    sequence run alone, unpadded, by the plain layer (grads summed over the sequences)."""
    opts = {"reverse": reverse, "return_sequences": return_sequences}
    layer, params, x, ln = setup(kind, seed=1, **opts)
    plain = make(kind, **opts)
    y, pullback = layer.vjp(params, (x, ln))
    dy = cotangent(y, 2)
    grads, (dx, dlen) = pullback(dy)
    assert dlen is None
    want = {k: np.zeros_like(v) for k, v in params.items()}
    for n, length in enumerate(ln):
        y_n, pullback_n = plain.vjp(params, x[n:n + 1, :length])
        if return_sequences:
            np.testing.assert_allclose(y[n, :length], y_n[0], rtol=1e-12, atol=1e-14)
            assert not y[n, length:].any()
            grads_n, dx_n = pullback_n(dy[n:n + 1, :length])
        else:
            np.testing.assert_allclose(y[n], y_n[0], rtol=1e-12, atol=1e-14)
            grads_n, dx_n = pullback_n(dy[n:n + 1])
        np.testing.assert_allclose(dx[n, :length], dx_n[0], rtol=1e-11, atol=1e-13)
        assert not dx[n, length:].any()
        for k in want:
            want[k] += grads_n[k]
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-11, atol=1e-13, err_msg=k)


@pytest.mark.parametrize(("kind", "reverse", "return_sequences"), ALL, ids=ALL_IDS)
def test_vjp_finite_differences(kind, reverse, return_sequences):
    layer, params, x, ln = setup(kind, seed=3, reverse=reverse,
                                 return_sequences=return_sequences)
    check_vjp(layer, params, (x, ln))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("reverse", [False, True])
def test_use_bias_false_and_long_sequences(kind, reverse):
    lengths = np.array([12, 7, 1])
    layer, params, x, ln = setup(kind, seed=4, lengths=lengths, steps=12, reverse=reverse,
                                 use_bias=False)
    check_vjp(layer, params, (x, ln))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("reverse", [False, True])
def test_padding_is_never_read_and_padded_outputs_pass_no_gradient(kind, reverse):
    """NaN in the padding, and any cotangent on the zeroed outputs: the same numbers."""
    layer, params, x, ln = setup(kind, seed=5, reverse=reverse)
    y, pullback = layer.vjp(params, (x, ln))
    dy = cotangent(y, 6)
    past = np.arange(T) >= ln[:, None]
    x_nan, dy_zero = x.copy(), dy.copy()
    x_nan[past], dy_zero[past] = np.nan, 0.0
    y2, pullback2 = layer.vjp(params, (x_nan, ln))
    np.testing.assert_array_equal(y2, y)
    for a, b in zip(fd.tree.leaves(pullback2(dy_zero)), fd.tree.leaves(pullback(dy))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("reverse", [False, True])
def test_length_zero_is_the_zero_state(kind, reverse):
    lengths = np.array([0, 4, 0])
    for return_sequences in (True, False):
        layer, params, x, ln = setup(kind, seed=7, lengths=lengths, reverse=reverse,
                                     return_sequences=return_sequences)
        y, pullback = layer.vjp(params, (x, ln))
        assert not y[0].any() and not y[2].any() and y[1].any()
        grads, (dx, _) = pullback(cotangent(y, 8))
        assert not dx[0].any() and not dx[2].any()
        alone = layer.vjp(params, (x[1:2], ln[1:2]))[1](cotangent(y, 8)[1:2])[0]
        for k in grads:
            np.testing.assert_allclose(grads[k], alone[k], rtol=1e-12, atol=1e-14)
        check_vjp(layer, params, (x, ln))


@pytest.mark.parametrize(("kind", "reverse", "return_sequences"), ALL, ids=ALL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_lengths_are_the_plain_layer_bit_for_bit(kind, reverse, return_sequences, dtype):
    opts = {"reverse": reverse, "return_sequences": return_sequences}
    layer, params, x, _ = setup(kind, seed=9, dtype=dtype, **opts)
    ln = np.full(N, T)
    y, pullback = layer.vjp(params, (x, ln))
    y_ref, pullback_ref = make(kind, **opts).vjp(params, x)
    np.testing.assert_array_equal(y, y_ref)
    assert y.dtype == y_ref.dtype == dtype
    dy = cotangent(y, 10).astype(dtype)
    (grads, (dx, _)), (grads_ref, dx_ref) = pullback(dy), pullback_ref(dy)
    np.testing.assert_array_equal(dx, dx_ref)
    assert dx.dtype == dtype
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_ref[k])
        assert grads[k].dtype == dtype
    np.testing.assert_array_equal(layer.apply(params, (x, ln)), y)


@pytest.mark.parametrize("kind", list(KINDS))
def test_check_layer_float32(kind):
    x = np.random.default_rng(11).normal(size=(3, T, C)).astype(np.float32)
    for reverse in (False, True):
        check_layer(make(kind, lengths=True, reverse=reverse), ((None, T, C), (None,)),
                    x=(x, np.array([T, 2, 0])))


def test_bidirectional_from_fanout_parallel_concat():
    """FanOut(2) copies the pair, each direction reads it: torch's bidirectional layer on a
    packed batch; each row equals its sequence alone through the plain composite."""
    model = L.Sequential(L.FanOut(2), L.Parallel(LSTM(H, lengths=True),
                                                 LSTM(H, lengths=True, reverse=True)),
                         L.FanInConcat())
    out_shape, params = model.init(KEY, ((None, T, C), (None,)))
    assert out_shape == (None, T, 2 * H)
    plain = L.Sequential(L.FanOut(2), L.Parallel(LSTM(H), LSTM(H, reverse=True)),
                         L.FanInConcat())
    params = fd.tree.astype(params, np.float64)
    _, _, x, ln = setup("lstm", seed=12)
    y = model.apply(params, (x, ln))
    for n, length in enumerate(ln):
        np.testing.assert_allclose(y[n, :length], plain.apply(params, x[n:n + 1, :length])[0],
                                   rtol=1e-12, atol=1e-14)
    assert not y[np.arange(T) >= ln[:, None]].any()
    check_vjp(model, params, (x, ln))


def test_options_and_names():
    assert LSTM(4, lengths=True).name == "LSTM(4, lengths=True)"
    assert GRU(4, reverse=True, lengths=True).name == "GRU(4, reverse=True, lengths=True)"
    assert LSTM(4, lengths=False).name == "LSTM(4)"
    shape, _ = GRU(4, return_sequences=False, lengths=True).init(KEY, ((2, 5, 3), (2,)))
    assert shape == (2, 4)
    ln = [3, 1]  # a list of ints is read as lengths
    layer, params, x, _ = setup("gru", lengths=np.array(ln))
    np.testing.assert_array_equal(layer.apply(params, (x, ln)),
                                  layer.apply(params, (x, np.array(ln, np.int32))))
    with pytest.raises(TypeError, match=r"LSTM\(4\): lengths must be True or False"):
        LSTM(4, lengths="yes")


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("lengths", "error", "words"), [
    (np.array([6.0, 3.0, 1.0, 4.0]), TypeError,
     r"lengths must be integers.*got dtype float64; pass lengths\.astype\(np\.int64\)"),
    (np.array([True, True, True, True]), TypeError, r"lengths must be integers.*got dtype bool"),
    (None, TypeError, r"lengths must be integers.*got NoneType; pass np\.asarray"),
    (np.array([6, 3, 1]), ValueError,
     r"lengths must have shape \(4,\), one per sequence of x \(4, 6, 3\), got shape \(3,\)"),
    (np.array([[6, 3, 1, 4]]), ValueError, r"lengths must have shape \(4,\).*got shape \(1, 4\)"),
    (np.array([6, 7, 1, 4]), ValueError,
     r"lengths must lie in \[0, T\] = \[0, 6\].*got lengths\[1\] = 7; pad x to the longest"),
    (np.array([6, 3, -1, 4]), ValueError, r"lengths must lie in \[0, T\].*got lengths\[2\] = -1"),
])
def test_bad_lengths(lengths, error, words):
    layer, params, x, _ = setup("lstm")
    for call in (layer.apply, layer.vjp):
        with pytest.raises(error, match=r"^LSTM\(5, lengths=True\): " + words):
            call(params, (x, lengths))


def test_bad_pair_and_in_shape():
    layer, params, x, ln = setup("gru", reverse=True)
    name = r"^GRU\(5, reverse=True, lengths=True\): "
    with pytest.raises(TypeError, match=name + r"expected the input as a pair \(x, lengths\)"
                       r".*got shape \(4, 6, 3\); a batch of full sequences needs the layer "
                       r"built without lengths=True"):
        layer.apply(params, x)
    with pytest.raises(TypeError, match=name + r".*got a tuple of 3"):
        layer.apply(params, (x, ln, ln))
    with pytest.raises(ValueError, match=name + r"expected in_shape \(\(N, T, C\), \(N,\)\)"
                       r".*got \(None, 6, 3\); without lengths build the layer"):
        layer.init(KEY, (None, 6, 3))
    with pytest.raises(ValueError, match=name + r"lengths must have shape \(N,\)"):
        layer.init(KEY, ((4, 6, 3), (5,)))
    with pytest.raises(ValueError, match=name + r"expected input \(N, T, 3\) of rank 3"):
        layer.apply(params, (x[0], ln))


@pytest.mark.parametrize("kind", [L.LSTM, L.GRU, L.SimpleRNN], ids=["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("seqs", [True, False], ids=["sequences", "last"])
def test_bidirectional_reverses_each_sequence_within_its_length(kind, seqs):
    # Bidirectional's default twin: each padded sequence reversed within its own length,
    # the same numbers as the composite with a reverse=True twin, and as backward_layer=
    h, t = 4, 6
    x = np.random.default_rng(0).normal(size=(4, t, 3))
    ln = np.array([6, 3, 0, 4])
    bi = L.Bidirectional(kind(h, lengths=True, return_sequences=seqs))
    ref = L.Sequential(L.FanOut(2), L.Parallel(
        kind(h, lengths=True, return_sequences=seqs),
        kind(h, lengths=True, reverse=True, return_sequences=seqs)), L.FanInConcat())
    _, p = bi.init(random.key(1), ((None, t, 3), (None,)))
    p = fd.tree.astype(p, np.float64)
    y, pb = bi.vjp(p, (x, ln))
    y_ref, pb_ref = ref.vjp([(), [p["forward"], p["backward"]], ()], (x, ln))
    dy = np.random.default_rng(1).normal(size=y.shape)
    (g, dx), (g_ref, dx_ref) = pb(dy), pb_ref(dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx[0], dx_ref[0], rtol=1e-12, atol=1e-14)
    assert dx[1] is None
    for k in g["forward"]:
        np.testing.assert_allclose(g["forward"][k], g_ref[1][0][k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g["backward"][k], g_ref[1][1][k], rtol=1e-12, atol=1e-14)
    check_vjp(bi, p, (x, ln))
    twin = kind(h, lengths=True, reverse=True, return_sequences=seqs)
    np.testing.assert_allclose(L.Bidirectional(kind(h, lengths=True, return_sequences=seqs),
                                               backward_layer=twin).apply(p, (x, ln)), y,
                               rtol=1e-12, atol=1e-14)


def test_a_padded_pair_without_lengths_true_says_to_pass_it():
    lstm = LSTM(5)
    with pytest.raises(ValueError, match=r"^LSTM\(5\): .*got the pair .*needs "
                                         r"LSTM\(\.\.\., lengths=True\)"):
        lstm.init(random.key(0), ((None, 4, 8), (None,)))
    _, p = lstm.init(random.key(0), (None, 4, 8))
    with pytest.raises(ValueError, match=r"^LSTM\(5\): .*got a pair of shapes \(\(3, 4, 8\), "
                                         r"\(3,\)\); a padded batch .*lengths=True"):
        lstm.apply(p, (np.zeros((3, 4, 8)), np.array([4, 2, 1])))
