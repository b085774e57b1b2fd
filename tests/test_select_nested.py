"""Select and FanOut on tuples whose entries are tuples of arrays themselves, an
``LSTM(return_state=True)``'s ``(y, (h_n, c_n))``: shapes at init, values and cotangents
routed whole (None inside a tree passes nothing back, unselected entries get None), repeated
indices summed leaf by leaf, check_vjp / check_layer, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

N, T, C, H = 3, 5, 4, 8
STATE = ((None, H), (None, H))


def lstm_and_input(dtype=np.float32):
    lstm = L.LSTM(H, return_state=True)
    _, params = lstm.init(random.key(1), (None, T, C))
    params = {k: v.astype(dtype) for k, v in params.items()}
    x = np.random.default_rng(2).normal(size=(N, T, C)).astype(dtype)
    return lstm, params, x


def test_lstm_then_select_is_the_state():
    model = L.Sequential(L.LSTM(H, return_state=True), L.Select(1))
    out_shape, params = model.init(random.key(0), (None, T, C))
    assert out_shape == STATE
    lstm, _, x = lstm_and_input()
    (h, c), pullback = model.vjp(params, x)
    (_, (h_ref, c_ref)), pb_ref = lstm.vjp(params[0], x)
    assert h.dtype == c.dtype == np.float32
    np.testing.assert_array_equal(h, h_ref)
    np.testing.assert_array_equal(c, c_ref)
    applied = model.apply(params, x)
    assert isinstance(applied, tuple) and len(applied) == 2
    np.testing.assert_array_equal(applied[1], c)
    rng = np.random.default_rng(3)
    dh, dc = (rng.normal(size=(N, H)).astype(np.float32) for _ in range(2))
    # Select's pullback hands the LSTM (None, (dh, dc)): y unread
    for d_state in ((dh, dc), (dh, None), [dh, dc]):
        grads, dx = pullback(d_state)
        g_ref, dx_ref = pb_ref((None, tuple(d_state)))
        assert dx.dtype == np.float32
        np.testing.assert_array_equal(dx, dx_ref)
        for a, b in zip(tree.leaves(grads[0]), tree.leaves(g_ref)):
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)


def test_select_routes_a_tree_entry_whole():
    rng = np.random.default_rng(4)
    y, h, c = (rng.normal(size=s).astype(np.float32) for s in ((N, T, H), (N, H), (N, H)))
    xs = (y, (h, c))
    layer = L.Select(1)
    assert layer.init(random.key(0), ((None, T, H), STATE))[0] == STATE
    out, pullback = layer.vjp((), xs)
    assert out[0] is h and out[1] is c
    dh = np.ones((N, H), np.float64)  # float64 taken in the entry's float32
    _, dx = pullback((dh, None))
    assert dx[0] is None and dx[1][1] is None and dx[1][0].dtype == np.float32
    np.testing.assert_array_equal(dx[1][0], dh)
    # several indices, one repeated: the tree cotangents summed leaf by leaf, None as zeros
    pair = L.Select(1, 0, -1)
    assert pair.init(random.key(0), ((None, T, H), STATE))[0] == (STATE, (None, T, H), STATE)
    out, pullback = pair.vjp((), xs)
    assert out[1] is y and out[0][0] is h and out[2][1] is c
    _, dx = pullback(((dh, None), None, (2 * dh, np.ones((N, H)))))
    assert dx[0] is None
    np.testing.assert_array_equal(dx[1][0], 3 * dh)
    np.testing.assert_array_equal(dx[1][1], np.ones((N, H)))
    assert type(pullback([None, None, None])[1]) is tuple and pullback([None] * 3)[1] == (
        None, None)


def test_a_list_entry_stays_one_array():
    """Lists of numbers are rows of one array, as before: only a tuple holding arrays is a
    tree entry."""
    out = L.Select(1).apply((), (np.zeros((2, 3)), [[1.0, 2.0], [3.0, 4.0]]))
    assert isinstance(out, np.ndarray) and out.shape == (2, 2)


@pytest.mark.parametrize("tail", ["select", "fanout"])
def test_check_vjp_and_check_layer(tail):
    head = L.LSTM(H, return_state=True)
    ends = {"select": [L.Select(1)],
            "fanout": [L.FanOut(2), L.Parallel(L.Select(1), L.Select(0, 1))]}
    model = L.Sequential(head, *ends[tail])
    shape, params = model.init(random.key(5), (None, T, C))
    assert shape == (STATE if tail == "select" else (STATE, ((None, T, H), STATE)))
    check_layer(model, (None, T, C))
    _, _, x = lstm_and_input(np.float64)
    check_vjp(model, tree.map(lambda a: a.astype(np.float64), params), x)


def test_fanout_sums_tree_cotangents():
    rng = np.random.default_rng(6)
    y, h, c = (rng.normal(size=s).astype(np.float32) for s in ((N, T, H), (N, H), (N, H)))
    fan = L.FanOut(3)
    shape = ((None, T, H), STATE)
    assert fan.init(random.key(0), shape)[0] == (shape,) * 3
    out, pullback = fan.vjp((), (y, (h, c)))
    assert out[2][1][0] is h
    ones = np.ones((N, H), np.float32)
    _, dx = pullback(((None, (ones, None)), None, (y, (2 * ones, ones))))
    np.testing.assert_array_equal(dx[0], y)
    np.testing.assert_array_equal(dx[1][0], 3 * ones)
    np.testing.assert_array_equal(dx[1][1], ones)


def test_one_model_routing_the_state_equals_chaining_by_hand():
    """An encoder ending in Select(1) (its (h_n, c_n)) and a decoder LSTM(initial_state=True):
    one model, Parallel(encoder, Identity) then Select(1, 0) putting the state after the
    decoder's x, has the loss and gradients of the two chained by hand, the decoder's dstate
    fed to the encoder's pullback."""
    encoder = L.Sequential(L.LSTM(H, return_sequences=False, return_state=True), L.Select(1))
    decoder = L.Sequential(L.LSTM(H, initial_state=True), L.Dense(2))
    whole = L.Sequential(L.Parallel(encoder, L.Identity()), L.Select(1, 0), decoder)
    shape, params = whole.init(random.key(8), ((None, T, C), (None, 2, C)))
    assert shape == (None, 2, 2)
    params = tree.map(lambda a: a.astype(np.float64), params)
    rng = np.random.default_rng(9)
    src, tgt, dy = rng.normal(size=(N, T, C)), rng.normal(size=(N, 2, C)), rng.normal(
        size=(N, 2, 2))
    y, pullback = whole.vjp(params, (src, tgt))
    grads, (d_src, d_tgt) = pullback(dy)
    state, pb_enc = encoder.vjp(params[0][0], src)
    y_ref, pb_dec = decoder.vjp(params[2], (tgt, state))
    g_dec, (d_tgt_ref, d_state) = pb_dec(dy)
    g_enc, d_src_ref = pb_enc(d_state)
    np.testing.assert_array_equal(y, y_ref)
    for a, b in zip(tree.leaves((g_enc, g_dec, d_src, d_tgt)),
                    tree.leaves((grads[0][0], grads[2], d_src_ref, d_tgt_ref))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    check_vjp(whole, params, (src, tgt))


# ---------------------------------------------------------------------------- errors

def test_index_out_of_range_names_the_entries():
    with pytest.raises(ValueError, match=r"^Select\(2\): index 2 is out of range for a tuple "
                                         r"of 2 entries; use an index in \[-2, 1\]"):
        L.Select(2).init(random.key(0), ((None, T, H), STATE))
    with pytest.raises(ValueError, match=r"Select\(1, -3\): index -3 is out of range for a "
                                         r"tuple of 2 entries"):
        L.Select(1, -3).apply((), (np.zeros((N, T, H)), (np.zeros((N, H)),) * 2))
    with pytest.raises(ValueError, match=r"Sequential\[1\] Select\(2\): index 2 is out of "
                                         r"range for a tuple of 2 entries"):
        L.Sequential(L.LSTM(H, return_state=True), L.Select(2)).init(random.key(0),
                                                                     (None, T, C))


def test_bad_cotangents_and_shapes():
    h = np.zeros((N, H), np.float32)
    _, pullback = L.Select(1).vjp((), (np.zeros((N, T, H), np.float32), (h, h)))
    with pytest.raises(ValueError, match=r"^Select\(1\): pullback expected the cotangent of "
                                         r"an entry of shapes \(\(3, 8\), \(3, 8\)\) as a "
                                         r"tuple of 2, its structure, got an array of shape "
                                         r"\(3, 8\)"):
        pullback(h)
    with pytest.raises(ValueError, match=r"got a tuple of length 3"):
        pullback((h, h, h))
    with pytest.raises(ValueError, match=r"^Select\(1\): pullback expected dy of shape "
                                         r"\(3, 8\) \(the output's\), got \(3, 5\)"):
        pullback((h, h[:, :5]))
    with pytest.raises(TypeError, match=r"^Select\(1\): pullback expected dy.*got None"):
        pullback(None)
    _, pullback = L.FanOut(2).vjp((), (np.zeros((N, T, H), np.float32), (h, h)))
    with pytest.raises(ValueError, match=r"^FanOut\(2\): pullback expected the cotangent of "
                                         r"an entry of shapes \(\(3, 8\), \(3, 8\)\)"):
        pullback(((None, h), None))
    with pytest.raises(ValueError, match=r"^Select\(0\): in_shape entries must be ints >= 0 "
                                         r"or None, got \(\(None, 8\), 3\)"):
        L.Select(0).init(random.key(0), ((None, T, H), ((None, H), 3)))


@pytest.mark.parametrize("layer", [L.FanInSum(), L.FanInConcat()], ids=["sum", "concat"])
def test_fan_in_still_refuses_a_tree_entry(layer):
    with pytest.raises(ValueError, match=r"in_shape entries must be ints >= 0 or None, got "
                                         r"\(\(None, 8\), \(None, 8\)\)"):
        layer.init(random.key(0), ((None, H), STATE))
