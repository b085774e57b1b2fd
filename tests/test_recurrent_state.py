"""SimpleRNN, LSTM, GRU with ``initial_state=True`` (the input ends in h0, LSTM's (h0, c0))
and ``return_state=True`` (the output ``(y, h_n)``, LSTM's ``(y, (h_n, c_n))``): torch twins
in float64 (nn.RNN/LSTM/GRU with h0/c0 passed and h_n/c_n returned, packed and not, length
0 included, reverse=True as torch on each sequence reversed within its length) for outputs,
states and every gradient; a seq2seq encoder-decoder trained 5 SGD steps against torch;
check_vjp and check_layer on every flag combination; bad inputs and cotangents."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN
from funcdl.testing import check_layer, check_vjp

TOL = {"rtol": 1e-10, "atol": 1e-12}
N, T, C, H = 4, 5, 3, 4
LENGTHS = np.array([3, 5, 0, 1])  # unsorted, with an empty sequence
KINDS = {"rnn": (SimpleRNN, {}), "relu": (SimpleRNN, {"nonlinearity": "relu"}),
         "lstm": (LSTM, {}), "gru": (GRU, {})}
FLAGS = [(True, True), (True, False), (False, True)]
NAMES = (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
         ("b_hh", "bias_hh"))


def make(kind, **options):
    ctor, extra = KINDS[kind]
    return ctor(H, **extra, **options)


def in_shape(kind, padded, initial_state):
    """The layer's in_shape: x's, the lengths' with padded, then the state's."""
    shapes = [(None, T, C)] + ([(None,)] if padded else [])
    if initial_state:
        shapes.append(((None, H), (None, H)) if kind == "lstm" else (None, H))
    return shapes[0] if len(shapes) == 1 else tuple(shapes)


def draw(kind, seed, n=N, dtype=np.float64):
    """Params drawn wide (gates away from 0.5), x, and a state (h0, c0)."""
    layer = make(kind)
    _, params = layer.init(random.key(seed), (None, T, C))
    rng = np.random.default_rng(seed)
    params = {k: rng.uniform(-0.8, 0.8, v.shape).astype(dtype) for k, v in params.items()}
    x = rng.normal(size=(n, T, C)).astype(dtype)
    state = tuple(rng.normal(size=(n, H)).astype(dtype) for _ in range(2))
    return params, x, state


def layer_input(kind, x, ln, state, initial_state):
    parts = [x] + ([ln] if ln is not None else [])
    if initial_state:
        parts.append(state if kind == "lstm" else state[0])
    return parts[0] if len(parts) == 1 else tuple(parts)


# ---------------------------------------------------------------------------- torch twins

def torch_run(kind, params, x, ln, state, dy, dstate, reverse, return_sequences):
    """torch on the rows with a length (pack_padded_sequence refuses 0) or on all rows
    unpadded; reverse=True runs torch on each sequence reversed within its length. Returns
    (y, h_n, c_n, param grads, dx, dh0, dc0) for all rows: an empty sequence's y is 0, its
    h_n, c_n the state given, whose cotangents pass straight back."""
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence
    cls = {"rnn": torch.nn.RNN, "relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
           "gru": torch.nn.GRU}[kind]
    extra = {"nonlinearity": "relu"} if kind == "relu" else {}
    module = cls(C, H, batch_first=True, **extra).double()
    with torch.no_grad():
        for mine, theirs in NAMES:
            getattr(module, f"{theirs}_l0").copy_(torch.from_numpy(params[mine].T.copy()))
    lengths = np.full(len(x), T) if ln is None else ln
    steps = np.arange(T)
    idx = (np.where(steps >= lengths[:, None], steps, lengths[:, None] - 1 - steps)
           if reverse else np.tile(steps, (len(x), 1)))
    rows = np.flatnonzero(lengths > 0)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h0 = torch.from_numpy(state[0].copy()).requires_grad_(True)
    c0 = torch.from_numpy(state[1].copy()).requires_grad_(True)
    t_idx, t_rows = torch.from_numpy(idx), torch.from_numpy(rows)
    xr = torch.gather(xt, 1, t_idx[:, :, None].expand(-1, -1, C))[t_rows]
    hs = (h0[t_rows][None], c0[t_rows][None]) if kind == "lstm" else h0[t_rows][None]
    if ln is None:
        out, st = module(xr, hs)
    else:
        packed = pack(xr, torch.from_numpy(lengths[rows]), batch_first=True,
                      enforce_sorted=False)
        out, st = module(packed, hs)
        out, _ = unpack(out, batch_first=True, total_length=T)
    h_sub, c_sub = (st[0][0], st[1][0]) if kind == "lstm" else (st[0], None)
    out_all = torch.zeros((len(x), T, H), dtype=torch.float64).index_copy(0, t_rows, out)
    out_all = torch.gather(out_all, 1, t_idx[:, :, None].expand(-1, -1, H))  # back in time
    h_n = h0.index_copy(0, t_rows, h_sub)  # an empty sequence keeps h0 (and c0)
    c_n = c0.index_copy(0, t_rows, c_sub) if kind == "lstm" else None
    y = out_all if return_sequences else h_n
    loss = (y * torch.from_numpy(dy)).sum() + (h_n * torch.from_numpy(dstate[0])).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.from_numpy(dstate[1])).sum()
    loss.backward()
    grads = {mine: getattr(module, f"{theirs}_l0").grad.numpy().T for mine, theirs in NAMES}
    d_c0 = c0.grad.numpy() if kind == "lstm" else None
    return (y.detach().numpy(), h_n.detach().numpy(),
            None if c_n is None else c_n.detach().numpy(), grads, xt.grad.numpy(),
            h0.grad.numpy(), d_c0)


TWINS = [(k, p, r, s, f) for k in KINDS for p in (False, True) for r in (False, True)
         for s in (True, False) for f in FLAGS]


@pytest.mark.parametrize(("kind", "padded", "reverse", "return_sequences", "flags"), TWINS,
                         ids=[f"{k}-{'packed' if p else 'full'}-{'rev' if r else 'fwd'}-"
                              f"{'seq' if s else 'last'}-{'init' if f[0] else ''}"
                              f"{'ret' if f[1] else ''}" for k, p, r, s, f in TWINS])
def test_torch_twin(kind, padded, reverse, return_sequences, flags):
    initial_state, return_state = flags
    lstm = kind == "lstm"
    params, x, state = draw(kind, seed=3)
    ln = LENGTHS if padded else None
    if padded:
        x[np.arange(T) >= ln[:, None]] = 40.0  # padding: never read
    if not initial_state:
        state = (np.zeros((N, H)), np.zeros((N, H)))
    layer = make(kind, lengths=padded, reverse=reverse, return_sequences=return_sequences,
                 initial_state=initial_state, return_state=return_state)
    out, pullback = layer.vjp(params, layer_input(kind, x, ln, state, initial_state))
    rng = np.random.default_rng(4)
    y = out[0] if return_state else out
    dy = rng.normal(size=y.shape)
    dstate = tuple(rng.normal(size=(N, H)) if return_state else np.zeros((N, H))
                   for _ in range(2))
    grads, dx = pullback((dy, dstate if lstm else dstate[0]) if return_state else dy)
    want = torch_run(kind, params, x, ln, state, dy, dstate, reverse, return_sequences)
    np.testing.assert_allclose(y, want[0], **TOL)
    if return_state:
        h_n, c_n = out[1] if lstm else (out[1], None)
        np.testing.assert_allclose(h_n, want[1], **TOL)
        if lstm:
            np.testing.assert_allclose(c_n, want[2], **TOL)
    for k in grads:
        np.testing.assert_allclose(grads[k], want[3][k], err_msg=k, **TOL)
    dxs = list(dx) if isinstance(dx, tuple) else [dx]
    np.testing.assert_allclose(dxs[0], want[4], **TOL)
    if padded:
        assert dxs[1] is None
    if initial_state:
        d_state = dxs[-1]
        np.testing.assert_allclose(d_state[0] if lstm else d_state, want[5], **TOL)
        if lstm:
            np.testing.assert_allclose(d_state[1], want[6], **TOL)


def test_seq2seq_trains_as_torch():
    """An encoder LSTM(return_sequences=False, return_state=True) whose (h_n, c_n) start a
    decoder LSTM(initial_state=True), then a Dense, chained by hand (the encoder's y unread:
    its cotangent None): 5 SGD steps on a squared error equal torch's (the losses and every
    param after)."""
    torch = pytest.importorskip("torch")
    ts, tt, out, lr = 6, 4, 2, 0.3
    enc = LSTM(H, return_sequences=False, return_state=True)
    dec = LSTM(H, initial_state=True)
    head = L.Dense(out)
    assert enc.init(random.key(0), (None, ts, C))[0] == ((None, H), ((None, H), (None, H)))
    shape, _ = dec.init(random.key(0), ((None, tt, C), ((None, H), (None, H))))
    assert shape == (None, tt, H)
    rng = np.random.default_rng(6)
    params = [draw("lstm", seed=s)[0] for s in (14, 15)]
    params.append({k: v.astype(np.float64) for k, v in
                   head.init(random.key(16), (None, tt, H))[1].items()})
    x_src, x_tgt = rng.normal(size=(N, ts, C)), rng.normal(size=(N, tt, C))
    target = rng.normal(size=(N, tt, out))

    t_enc, t_dec = (torch.nn.LSTM(C, H, batch_first=True).double() for _ in range(2))
    t_head = torch.nn.Linear(H, out).double()
    with torch.no_grad():
        for m, p in zip((t_enc, t_dec), params):
            for mine, theirs in NAMES:
                getattr(m, f"{theirs}_l0").copy_(torch.from_numpy(p[mine].T.copy()))
        t_head.weight.copy_(torch.from_numpy(params[2]["w"].T.copy()))
        t_head.bias.copy_(torch.from_numpy(params[2]["b"].copy()))
    opt = torch.optim.SGD([*t_enc.parameters(), *t_dec.parameters(), *t_head.parameters()],
                          lr=lr)
    for _ in range(5):
        (_, state), pb_enc = enc.vjp(params[0], x_src)
        h, pb_dec = dec.vjp(params[1], (x_tgt, state))
        y, pb_head = head.vjp(params[2], h)
        loss = np.mean((y - target) ** 2)
        g_head, dh = pb_head(2 * (y - target) / y.size)
        g_dec, (_, d_state) = pb_dec(dh)
        g_enc, _ = pb_enc((None, d_state))
        params = [{k: p[k] - lr * g[k] for k in p}
                  for p, g in zip(params, (g_enc, g_dec, g_head))]

        opt.zero_grad()
        _, st = t_enc(torch.from_numpy(x_src))
        yt = t_head(t_dec(torch.from_numpy(x_tgt), st)[0])
        loss_t = ((yt - torch.from_numpy(target)) ** 2).mean()
        loss_t.backward()
        opt.step()
        np.testing.assert_allclose(loss, loss_t.item(), **TOL)
    for p, m in zip(params, (t_enc, t_dec)):
        for mine, theirs in NAMES:
            np.testing.assert_allclose(p[mine], getattr(m, f"{theirs}_l0").detach().numpy().T,
                                       err_msg=mine, **TOL)
    np.testing.assert_allclose(params[2]["w"], t_head.weight.detach().numpy().T, **TOL)


# ---------------------------------------------------------------------------- checks

COMBOS = [(k, p, r, f) for k in KINDS for p in (False, True) for r in (False, True)
          for f in FLAGS]


@pytest.mark.parametrize(("kind", "padded", "reverse", "flags"), COMBOS)
def test_check_vjp_and_check_layer(kind, padded, reverse, flags):
    initial_state, return_state = flags
    layer = make(kind, lengths=padded, reverse=reverse, initial_state=initial_state,
                 return_state=return_state)
    shape = in_shape(kind, padded, initial_state)
    out_shape, params = layer.init(random.key(7), shape)
    y_shape = (None, T, H)
    state_shape = ((None, H), (None, H)) if kind == "lstm" else (None, H)
    assert out_shape == ((y_shape, state_shape) if return_state else y_shape)
    _, x, state = draw(kind, seed=8, n=3, dtype=np.float32)
    ln = np.array([T, 2, 0]) if padded else None
    given = layer_input(kind, x, ln, state, initial_state)
    check_layer(layer, shape, x=given)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    check_vjp(layer, p64, layer_input(kind, x.astype(np.float64), ln,
                                      tuple(s.astype(np.float64) for s in state),
                                      initial_state))


def test_float32_kept_and_state_dtype():
    """float32 in, float32 out and gradients; dh0 in h0's dtype."""
    params, x, state = draw("lstm", seed=9, dtype=np.float32)
    layer = LSTM(H, initial_state=True, return_state=True)
    (y, (h_n, c_n)), pullback = layer.vjp(params, (x, state))
    assert y.dtype == h_n.dtype == c_n.dtype == np.float32
    grads, (dx, (dh0, dc0)) = pullback((np.ones_like(y), (np.ones_like(h_n), None)))
    assert dx.dtype == dh0.dtype == dc0.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_flags_off_unchanged_and_zero_state_equal():
    """A zero initial state gives the flags-off layer's output and gradients; h_n is the
    last output."""
    params, x, _ = draw("gru", seed=10)
    zero = np.zeros((N, H))
    y_ref, pb_ref = GRU(H).vjp(params, x)
    (y, h_n), pb = GRU(H, initial_state=True, return_state=True).vjp(params, (x, zero))
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(h_n, y[:, -1])
    dy = np.random.default_rng(11).normal(size=y.shape)
    (g, (dx, _)), (g_ref, dx_ref) = pb((dy, np.zeros((N, H)))), pb_ref(dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-14)
    for k in g:
        np.testing.assert_allclose(g[k], g_ref[k], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- bad inputs

def test_bad_inputs():
    params, x, (h0, c0) = draw("lstm", seed=12)
    lstm = LSTM(H, initial_state=True)
    with pytest.raises(TypeError, match=r"^LSTM\(4, initial_state=True\): expected the input "
                                        r"\(x, \(h0, c0\)\).*got an array of shape \(4, 5, 3\)"):
        lstm.apply(params, x)
    with pytest.raises(TypeError, match=r"^LSTM\(4, initial_state=True\): the initial state "
                                        r"must be the pair \(h0, c0\).*got an array"):
        lstm.apply(params, (x, h0))
    with pytest.raises(ValueError, match=r"^LSTM\(4, initial_state=True\): the initial state c0 "
                                         r"must have shape \(4, 4\).*got shape \(4, 3\)"):
        lstm.apply(params, (x, (h0, c0[:, :3])))
    with pytest.raises(TypeError, match=r"h0 must be floating.*got dtype int64"):
        lstm.apply(params, (x, (h0.astype(np.int64), c0)))
    rnn_p, _, _ = draw("rnn", seed=12)
    gru = SimpleRNN(H, initial_state=True, lengths=True)
    with pytest.raises(TypeError, match=r"^SimpleRNN\(4, lengths=True, initial_state=True\): "
                                        r"expected the input \(x, lengths, h0\)"):
        gru.apply(rnn_p, (x, LENGTHS))
    with pytest.raises(ValueError, match=r"h0 must have shape \(4, 4\).*got shape \(4, 5\)"):
        gru.apply(rnn_p, (x, LENGTHS, np.zeros((N, 5))))
    with pytest.raises(TypeError, match=r"only LSTM takes \(h0, c0\)"):
        SimpleRNN(H, initial_state=True).apply(rnn_p, (x, (h0, c0)))
    with pytest.raises(TypeError, match=r"^SimpleRNN\(4\): .*initial_state=True"):
        SimpleRNN(H).apply(rnn_p, (x, h0))


def test_bad_cotangents_and_in_shapes():
    params, x, state = draw("lstm", seed=13)
    layer = LSTM(H, return_state=True, initial_state=True)
    (y, (h_n, _)), pullback = layer.vjp(params, (x, state))
    name = r"^LSTM\(4, initial_state=True, return_state=True\): "
    with pytest.raises(ValueError, match=name + r"the pullback expected dc_n of shape "
                                                r"\(4, 4\) \(h_n's\), got \(4, 3\)"):
        pullback((y, (h_n, np.zeros((N, 3)))))
    with pytest.raises(TypeError, match=name + r"the pullback expected the cotangent "
                                               r"\(dy, \(dh_n, dc_n\)\).*got \(dy, an array"):
        pullback((y, h_n))
    with pytest.raises(TypeError, match=name + r".*got an array of shape \(4, 5, 4\)"):
        pullback(y)
    with pytest.raises(ValueError, match=name + r"the initial state's in_shape must be "
                                                r"\(N, 4\), got \(None, 3\)"):
        layer.init(random.key(0), ((None, T, C), ((None, 3), (None, H))))
    with pytest.raises(ValueError, match=name + r"expected the in_shape of the input "
                                                r"\(x, \(h0, c0\)\)"):
        layer.init(random.key(0), (None, T, C))


@pytest.mark.parametrize("make", [lambda: L.LSTM(4, initial_state=True),
                                  lambda: L.GRU(4, return_state=True),
                                  lambda: L.SimpleRNN(4, initial_state=True)],
                         ids=["lstm-initial", "gru-return", "rnn-initial"])
def test_bidirectional_refuses_a_layer_passing_states(make):
    # its backward direction would get (x, h0) unflipped and run forward, silently
    with pytest.raises(ValueError, match=r"Bidirectional\(.*passes or returns a state, which "
                                         r"Bidirectional does not route"):
        L.Bidirectional(make())
    with pytest.raises(ValueError, match=r"backward_layer .* passes or returns a state"):
        L.Bidirectional(L.GRU(4), backward_layer=make())
