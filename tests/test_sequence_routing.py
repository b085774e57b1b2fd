"""Padded batches end to end: Select of several entries, Carry (the mask or lengths carried
past a layer) and MaskedMean (the mean of the valid steps), checked against naive loops,
finite differences, and a classifier whose padded ids must not matter."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_layer, check_vjp

R = np.random.default_rng(0)
N, T, C = 3, 5, 4
X = R.normal(size=(N, T, C))
PAD = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)  # row 2: empty
LENS = np.array([3, 5, 0])  # the same valid steps as PAD


def naive_mean(x, valid):
    out = np.zeros((x.shape[0], x.shape[2]), x.dtype)
    for n in range(x.shape[0]):
        if valid[n].any():
            out[n] = x[n][valid[n]].mean(axis=0)
    return out


# ---------------------------------------------------------------------------- Select

def test_select_single_index_behaves_as_before():
    a, b = R.normal(size=(2, 3)), R.normal(size=(2, 2))
    for i, want in ((0, a), (1, b), (-1, b)):
        layer = L.Select(i)
        assert layer.name == f"Select({i})"
        y, pullback = layer.vjp((), (a, b))
        assert y is want and layer.apply((), (a, b)) is want
        dy = R.normal(size=want.shape)
        _, dx = pullback(dy)
        assert type(dx) is tuple and dx[i % 2] is dy and dx[1 - i % 2] is None
    assert L.Select(index=1).init(None, ((None, 3), (None, 2))) == ((None, 2), ())


def test_select_several_indices_gives_their_tuple_and_places_cotangents_back():
    xs = (R.normal(size=(2, 3)), R.normal(size=(2, 2)), R.normal(size=(2, 1)))
    layer = L.Select(2, 0)
    assert layer.name == "Select(2, 0)"
    assert layer.init(None, ((None, 3), (None, 2), (None, 1))) == (((None, 1), (None, 3)), ())
    y, pullback = layer.vjp((), xs)
    assert type(y) is tuple and y[0] is xs[2] and y[1] is xs[0]
    d2, d0 = R.normal(size=(2, 1)), R.normal(size=(2, 3))
    _, dx = pullback((d2, d0))
    assert dx[0] is d0 and dx[1] is None and dx[2] is d2
    _, dx = pullback((None, d0))  # nothing back for entry 2
    assert dx[2] is None and dx[0] is d0
    # a repeated index: its cotangents summed
    _, dx = L.Select(0, 0).vjp((), xs)[1]((d0, 2 * d0))
    np.testing.assert_array_equal(dx[0], 3 * d0)
    _, dx = L.Select(0, 1).vjp((), list(xs))[1]((d0, xs[1]))
    assert type(dx) is list
    check_vjp(L.Select(1, 0, 1), (), xs)


# ---------------------------------------------------------------------------- MaskedMean

@pytest.mark.parametrize("kind, side", [("padding", PAD), ("lengths", LENS)])
def test_masked_mean_equals_the_naive_loop_and_its_vjp_divides_by_the_count(kind, side):
    layer = L.MaskedMean(kind)
    valid = ~PAD
    y = layer.apply((), (X, side))
    np.testing.assert_allclose(y, naive_mean(X, valid), rtol=1e-13, atol=1e-15)
    assert np.all(y[2] == 0)  # no valid step: 0, not NaN
    dy = R.normal(size=(N, C))
    y2, pullback = layer.vjp((), (X, side))
    np.testing.assert_array_equal(y2, y)
    _, (dx, dm) = pullback(dy)
    assert dm is None
    count = np.maximum(valid.sum(1), 1)
    want = np.zeros_like(X)
    for n in range(N):
        for t in range(T):
            if valid[n, t]:
                want[n, t] = dy[n] / count[n]
    np.testing.assert_allclose(dx, want, rtol=1e-13, atol=1e-15)
    x32 = X.astype(np.float32)
    y32, pb32 = layer.vjp((), (x32, side))
    assert y32.dtype == np.float32 and pb32(dy.astype(np.float32))[1][0].dtype == np.float32
    check_vjp(layer, (), (X, side))


def test_masked_mean_check_layer_both_kinds():
    nonempty_pad, nonempty_lens = PAD[:2], LENS[:2]
    x = X[:2].astype(np.float32)
    check_layer(L.MaskedMean(), ((None, T, C), (None, T)), x=(x, nonempty_pad))
    check_layer(L.MaskedMean("lengths"), ((None, T, C), (None,)), x=(x, nonempty_lens))
    assert L.MaskedMean().init(None, ((None, T, C), (None, T))) == ((None, C), ())
    assert L.MaskedMean("lengths").name == "MaskedMean('lengths')"


# ---------------------------------------------------------------------------- Carry

def test_carry_returns_the_layer_output_and_the_mask_with_the_layers_gradients():
    enc = L.TransformerEncoderLayer(C, 2, 8, dropout=0.0, masked=True)
    layer = L.Carry(enc)
    assert layer.name == f"Carry({enc.name})"
    pad = PAD.copy()
    pad[2, 0] = False  # attention needs one visible key per row
    out, params = layer.init(fd.random.key(0), ((None, T, C), (None, T)))
    assert out == ((None, T, C), (None, T))
    p_enc = params[1][0]
    (y, m), pullback = layer.vjp(params, (X, pad))
    assert m is pad
    np.testing.assert_allclose(y, enc.apply(p_enc, (X, pad)), rtol=1e-13)
    dy = R.normal(size=y.shape)
    (_, (dp, ())), (dx, dm) = pullback((dy, None))
    assert dm is None  # nothing flows back to a boolean mask
    dp_enc, (dx_enc, _) = enc.vjp(p_enc, (X, pad))[1](dy)
    np.testing.assert_allclose(dx, dx_enc, rtol=1e-13)
    assert len(fd.tree.leaves(dp)) == len(fd.tree.leaves(dp_enc)) > 0
    for a, b in zip(fd.tree.leaves(dp), fd.tree.leaves(dp_enc)):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    check_vjp(layer, params, (X, pad))
    # check_layer wants every output float as its input; a carried bool mask is not (see
    # test_carry_keep_tuple... for check_layer on a float carry)


def test_carry_keep_tuple_is_flat_and_float_carried_entries_get_their_cotangent():
    # Carry(Select(0) then Dense) keeping x itself and the mask: (f(x), x, mask)
    layer = L.Carry(L.Sequential(L.Select(0), L.Dense(2)), keep=(0, 1))
    assert layer.name.endswith("keep=(0, 1))")
    _, params = layer.init(fd.random.key(1), ((None, C), (None, 2)))
    x, z = R.normal(size=(N, C)), R.normal(size=(N, 2))
    ys, pullback = layer.vjp(params, (x, z))
    assert len(ys) == 3 and ys[1] is x and ys[2] is z
    dy = [R.normal(size=y.shape) for y in ys]
    _, (dx, dz) = pullback(tuple(dy))
    w = params[1][0][1]["w"]
    np.testing.assert_allclose(dx, dy[0] @ w.T + dy[1], rtol=1e-13)
    np.testing.assert_array_equal(dz, dy[2])
    check_vjp(layer, params, (x, z))
    check_layer(layer, ((None, C), (None, 2)), x=(x.astype(np.float32), z.astype(np.float32)))


def test_carry_of_a_stateful_layer_threads_its_state():
    layer = L.Carry(L.Sequential(L.Select(0), L.BatchNorm()))
    assert layer.stateful
    out, params, state = layer.init(fd.random.key(2), ((None, C), (None,)))
    x, ln = R.normal(size=(N, C)) + 3.0, np.array([1, 2, 3])
    (y, keep), new_state = layer.apply(params, (x, ln), state=state, train=True)
    assert keep is ln and out == ((None, C), (None,))
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-6)  # batch statistics in training
    moved = [a for a, b in zip(fd.tree.leaves(new_state), fd.tree.leaves(state))
             if not np.array_equal(a, b)]
    assert moved  # the running statistics moved in training


# ---------------------------------------------------------------------------- end to end

V, E, K = 13, 8, 3


def _data(seed):
    r = np.random.default_rng(seed)
    ids = r.integers(1, V, size=(6, 7))
    lens = np.array([7, 3, 5, 1, 6, 2])
    pad = np.arange(7) >= lens[:, None]
    labels = ids[np.arange(6), 0] % K  # a function of the first token
    return ids, pad, lens, labels


def _models():
    h = 5
    return [
        (L.Sequential(L.Parallel(L.Embedding(V, E), L.Identity()),
                      L.Carry(L.TransformerEncoderLayer(E, 2, 2 * E, dropout=0.0, masked=True)),
                      L.MaskedMean(), L.Dense(K)), "padding", ((None, 7), (None, 7))),
        (L.Sequential(L.Parallel(L.Embedding(V, E), L.Identity()),
                      L.Carry(L.Bidirectional(L.LSTM(h, lengths=True))),
                      L.MaskedMean("lengths"), L.Dense(K)), "lengths", ((None, 7), (None,))),
    ]


@pytest.mark.parametrize("model, kind, shape", _models())
def test_padded_classifier_ignores_padded_ids_and_trains(model, kind, shape):
    ids, pad, lens, labels = _data(0)
    side = pad if kind == "padding" else lens
    _, params = model.init(fd.random.key(3), shape)
    params = fd.tree.map(lambda a: a.astype(np.float64), params)
    f = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    loss, grads = f(params, (ids, side), labels)
    other = np.where(pad, (ids * 7 + 3) % V, ids)
    assert not np.array_equal(other, ids)
    loss2, grads2 = f(params, (other, side), labels)
    np.testing.assert_allclose(loss2, loss, rtol=1e-12)
    for a, b in zip(fd.tree.leaves(grads2), fd.tree.leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # and the padded ids do matter without the mask's effect on the pooling
    valid_all = np.zeros_like(pad) if kind == "padding" else np.full_like(lens, 7)
    assert not np.isclose(f(params, (other, valid_all), labels)[0],
                          f(params, (ids, valid_all), labels)[0])
    _, params = model.init(fd.random.key(4), shape)
    opt = fd.optim.adam(3e-2)
    ostate = opt.init(params)
    first = None
    for _ in range(30):
        loss, grads = f(params, (ids, side), labels)
        first = loss if first is None else first
        updates, ostate = opt.update(ostate, grads, params)
        params = fd.optim.apply_updates(params, updates)
    assert loss < 0.5 * first
    assert all(a.dtype == np.float32 for a in fd.tree.leaves(params))


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("call, error, match", [
    (lambda: L.MaskedMean().apply((), X), TypeError,
     r"^MaskedMean\(\): expected the input as a pair \(x, key_padding_mask\).*got an array "
     r"of shape \(3, 5, 4\); route the mask"),
    (lambda: L.MaskedMean().apply((), (X, PAD[:, :4])), ValueError,
     r"^MaskedMean\(\): expected a key_padding_mask of shape \(3, 5\).*got shape \(3, 4\); "
     r"pass"),
    (lambda: L.MaskedMean().apply((), (X, PAD.astype(int))), TypeError,
     r"^MaskedMean\(\): expected a key_padding_mask \(N, T\) bool.*got dtype int64; pass "
     r"mask.astype\(bool\)"),
    (lambda: L.MaskedMean("lengths").apply((), (X, PAD)), TypeError,
     r"^MaskedMean\('lengths'\): lengths must be integers.*got dtype bool; pass"),
    (lambda: L.MaskedMean("lengths").apply((), (X, np.array([1, 9, 0]))), ValueError,
     r"^MaskedMean\('lengths'\): lengths must lie in \[0, T\]"),
    (lambda: L.MaskedMean().apply((), (X[0], PAD)), ValueError,
     r"^MaskedMean\(\): expected x of shape \(N, T, C\), got shape \(5, 4\)"),
    (lambda: L.MaskedMean("mask"), ValueError, r"^MaskedMean: mask must be 'padding'.*got 'mask'"),
    (lambda: L.MaskedMean().init(None, ((None, T, C), (None, T + 1))), ValueError,
     r"^MaskedMean\(\): expected key_padding_mask \(N, T\) bool fitting x"),
    (lambda: L.Carry(3), TypeError, r"^Carry.*expected a layer"),
    (lambda: L.Carry(L.Identity(), keep=1.5), TypeError, r"^Carry: keep 1.5: Select: index "
     r"must be an int"),
    (lambda: L.Carry(L.Identity(), keep=()), ValueError, r"^Carry: keep must be an int"),
    (lambda: L.Carry(L.MultiHeadAttention(2, masked=True)).apply((), X), ValueError,
     r"^Carry\(MultiHeadAttention.*\): expected the input as a tuple such as \(x, "
     r"key_padding_mask\).*got an array of shape \(3, 5, 4\); route the mask"),
    (lambda: L.Carry(L.Select(0), keep=3).init(fd.random.key(0), ((None, 2), (None,))), ValueError,
     r"^Carry\(Select\(0\), keep=3\): .*Select\(3\): index 3 is out of range for a tuple of "
     r"2 entries; use an index in \[-2, 1\]"),
    (lambda: L.Select(), TypeError, r"^Select: expected at least one index, got none; pass"),
    (lambda: L.Select(0, "1"), TypeError, r"^Select: index must be an int"),
    (lambda: L.Select(0, 5).apply((), (X, PAD)), ValueError,
     r"^Select\(0, 5\): index 5 is out of range for a tuple of 2 entries; use"),
    (lambda: L.Select(0, 1).vjp((), (X, PAD))[1](X), ValueError,
     r"^Select\(0, 1\): pullback expected a tuple of 2 cotangents.*got ndarray"),
])
def test_bad_inputs_name_the_layer_what_was_expected_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()
