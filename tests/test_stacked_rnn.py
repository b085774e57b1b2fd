"""StackedRNN: torch's ``nn.RNN/LSTM/GRU(num_layers=L, batch_first=True)`` as a combinator of
recurrent layers. torch twins in float64 (outputs, h_n/c_n, every gradient; states in and
out, per layer and stacked; padded batches; bidirectional; dropout at inference); check_vjp
with lengths, states and dropout masks; truncated BPTT over 3 chunks equal to one run,
forward and backward; the routing of each layer's state and its cotangent; float32 kept;
per-example gradients. Bad inputs: test_stacked_rnn_checks.py."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.testing import check_layer, check_vjp

TOL = {"rtol": 1e-10, "atol": 1e-12}
N, T, C, H = 3, 6, 4, 5
KINDS = {"rnn": L.SimpleRNN, "lstm": L.LSTM, "gru": L.GRU}
NAMES = (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
         ("b_hh", "bias_hh"))
STATE = {"initial_state": True, "return_state": True}


def stack(kind, layers=2, dropout=0.0, **flags):
    return L.StackedRNN(*(KINDS[kind](H, **flags) for _ in range(layers)), dropout=dropout)


def draw(model, in_shape, seed=0, dtype=np.float64):
    """Params drawn wide (gates away from 0.5) in ``dtype``."""
    _, params = model.init(random.key(seed), in_shape)
    rng = np.random.default_rng(seed)
    return tree.map(lambda p: rng.uniform(-0.8, 0.8, p.shape).astype(dtype), params)


def states(kind, layers, seed=1, stacked=False, n=N, dtype=np.float64):
    """Initial states, per layer or torch's stacked form, and the stacked arrays."""
    rng = np.random.default_rng(seed)
    h, c = (rng.normal(size=(layers, n, H)).astype(dtype) for _ in range(2))
    if stacked:
        return ((h, c) if kind == "lstm" else h), h, c
    return tuple((h[k], c[k]) if kind == "lstm" else h[k] for k in range(layers)), h, c


def state_shape(kind, layers, stacked):
    if stacked:
        return ((layers, None, H),) * 2 if kind == "lstm" else (layers, None, H)
    one = ((None, H), (None, H)) if kind == "lstm" else (None, H)
    return (one,) * layers


# ---------------------------------------------------------------------------- torch twins

def twin(kind, params, layers, dropout=0.0, bidirectional=False):
    torch = pytest.importorskip("torch")
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    module = cls(C, H, num_layers=layers, dropout=dropout, batch_first=True,
                 bidirectional=bidirectional).double().eval()
    with torch.no_grad():
        for k, p in enumerate(params):
            ways = ((p["forward"], ""), (p["backward"], "_reverse")) if bidirectional else (
                (p, ""),)
            for own, suffix in ways:
                for mine, theirs in NAMES:
                    getattr(module, f"{theirs}_l{k}{suffix}").copy_(
                        torch.from_numpy(own[mine].T.copy()))
    return torch, module


def torch_grads(module, layers, bidirectional=False):
    def g(name):
        return getattr(module, name).grad.numpy().T
    ways = ("", "_reverse") if bidirectional else ("",)
    out = []
    for k in range(layers):
        each = [{mine: g(f"{theirs}_l{k}{s}") for mine, theirs in NAMES} for s in ways]
        out.append({"forward": each[0], "backward": each[1]} if bidirectional else each[0])
    return tuple(out)


def close(got, want):
    got_leaves, want_leaves = tree.leaves_with_path(got), tree.leaves(want)
    # zip alone would pass a result missing leaves (a layer's grads or a state dropped)
    assert len(got_leaves) == len(want_leaves), (len(got_leaves), len(want_leaves))
    for (path, a), b in zip(got_leaves, want_leaves):
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"{path}")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("stacked", [False, True])
def test_torch_states_in_and_out(kind, layers, stacked):
    model = stack(kind, layers, dropout=0.3, **STATE)  # dropout: inference draws nothing
    params = draw(model, ((None, T, C), state_shape(kind, layers, stacked)))
    s0, h0, c0 = states(kind, layers, stacked=stacked)
    rng = np.random.default_rng(2)
    x, dy = rng.normal(size=(N, T, C)), rng.normal(size=(N, T, H))
    dh, dc = rng.normal(size=(2, layers, N, H))
    (y, s_n), pullback = model.vjp(params, (x, s0))
    ds_n = (((dh, dc) if kind == "lstm" else dh) if stacked else
            tuple((dh[k], dc[k]) if kind == "lstm" else dh[k] for k in range(layers)))
    grads, (dx, ds0) = pullback((dy, ds_n))

    torch, module = twin(kind, params, layers, dropout=0.3)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    ty, ts = module(tx, (th, tc) if kind == "lstm" else th)
    loss = (ty * torch.from_numpy(dy)).sum()
    if kind == "lstm":
        loss = loss + (ts[0] * torch.from_numpy(dh)).sum() + (ts[1] * torch.from_numpy(dc)).sum()
        want_s = (ts[0].detach().numpy(), ts[1].detach().numpy())
    else:
        loss = loss + (ts * torch.from_numpy(dh)).sum()
        want_s = ts.detach().numpy()
    loss.backward()
    want_d = (th.grad.numpy(), tc.grad.numpy()) if kind == "lstm" else (th.grad.numpy(),)
    close(y, ty.detach().numpy())
    close(grads, torch_grads(module, layers))
    close(dx, tx.grad.numpy())
    if stacked:  # the form the states came in, both ways
        close(s_n, want_s)
        close(ds0, want_d if kind == "lstm" else want_d[0])
    else:
        per = [tuple(a[k] for a in (want_s if kind == "lstm" else (want_s,)))
               for k in range(layers)]
        dper = [tuple(a[k] for a in want_d) for k in range(layers)]
        assert isinstance(s_n, tuple) and len(s_n) == layers
        close([s if kind == "lstm" else (s,) for s in s_n], per)
        close([d if kind == "lstm" else (d,) for d in ds0], dper)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_torch_padded_batch(kind):
    """(x, lengths, states) against torch on the packed batch: y 0 past each end, h_n at it."""
    torch = pytest.importorskip("torch")
    model = stack(kind, 3, lengths=True, **STATE)
    params = draw(model, ((None, T, C), (None,), state_shape(kind, 3, True)))
    s0, h0, c0 = states(kind, 3, stacked=True)
    ln = np.array([4, 6, 1])
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(N, T, C)), rng.normal(size=(N, T, H))
    dy[np.arange(T) >= ln[:, None]] = 0
    (y, s_n), pullback = model.vjp(params, (x, ln, s0))
    grads, (dx, none, ds0) = pullback((dy, None))
    assert none is None
    _, module = twin(kind, params, 3)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(ln),
                                                     batch_first=True, enforce_sorted=False)
    out, ts = module(packed, (th, tc) if kind == "lstm" else th)
    ty = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)[0]
    (ty * torch.from_numpy(dy)).sum().backward()
    close(y, ty.detach().numpy())
    close(s_n, tuple(s.detach().numpy() for s in ts) if kind == "lstm"
          else ts.detach().numpy())
    close(grads, torch_grads(module, 3))
    close(dx, tx.grad.numpy())
    close(ds0, (th.grad.numpy(), tc.grad.numpy()) if kind == "lstm" else th.grad.numpy())


def test_torch_bidirectional():
    torch = pytest.importorskip("torch")
    model = L.StackedRNN(L.Bidirectional(L.GRU(H)), L.Bidirectional(L.GRU(H)), dropout=0.5)
    params = draw(model, (None, T, C))
    rng = np.random.default_rng(4)
    x, dy = rng.normal(size=(N, T, C)), rng.normal(size=(N, T, 2 * H))
    y, pullback = model.vjp(params, x, train=False)
    grads, dx = pullback(dy)
    _, module = twin("gru", params, 2, dropout=0.5, bidirectional=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)[0]
    (ty * torch.from_numpy(dy)).sum().backward()
    close(y, ty.detach().numpy())
    close(grads, torch_grads(module, 2, bidirectional=True))
    close(dx, tx.grad.numpy())


# ---------------------------------------------------------------------------- gradients

CHECKS = {
    "lstm states per layer": (stack("lstm", **STATE), False, False),
    "lstm stacked states, lengths": (stack("lstm", 3, lengths=True, **STATE), True, True),
    "gru stacked states": (stack("gru", **STATE), False, True),
    "gru lengths, last step, dropout": (
        L.StackedRNN(L.GRU(H, lengths=True), L.GRU(3, lengths=True, return_sequences=False),
                     dropout=0.4), True, None),
    "mixed kinds and sizes, states per layer": (
        L.StackedRNN(L.LSTM(H, **STATE), L.GRU(3, **STATE), L.SimpleRNN(2, **STATE)),
        False, False),
}


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_check_vjp(case):
    model, padded, stacked = CHECKS[case]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, T, C))
    parts, shapes = [x], [(None, T, C)]
    if padded:
        parts.append(np.array([2, 6, 0]))
        shapes.append((None,))
    if stacked is not None:
        kind = "lstm" if "lstm" in case else "gru"
        if case.startswith("mixed"):
            st = ((rng.normal(size=(N, H)), rng.normal(size=(N, H))),
                  rng.normal(size=(N, 3)), rng.normal(size=(N, 2)))
            sh = (((None, H), (None, H)), (None, 3), (None, 2))
        else:
            layers = 3 if "lengths" in case else 2
            st, sh = states(kind, layers, stacked=stacked)[0], state_shape(kind, layers,
                                                                             stacked)
        parts.append(st)
        shapes.append(sh)
    inp, in_shape = ((parts[0], shapes[0]) if len(parts) == 1
                     else (tuple(parts), tuple(shapes)))
    params = draw(model, in_shape)
    kw = {"key": random.key(7), "train": True} if "dropout" in case else {}
    check_vjp(model, params, inp, rtol=1e-6, atol=1e-9, **kw)


def test_check_layer_float32_and_float64():
    model = L.StackedRNN(L.LSTM(H), L.LSTM(3, return_sequences=False))
    check_layer(model, (N, T, C))


def test_float32_stays_float32():
    model = stack("lstm", 2, dropout=0.5, **STATE)
    params = draw(model, ((None, T, C), state_shape("lstm", 2, True)), dtype=np.float32)
    s0 = states("lstm", 2, stacked=True, dtype=np.float32)[0]
    x = np.ones((N, T, C), np.float32)
    (y, s_n), pullback = model.vjp(params, (x, s0), key=random.key(0), train=True)
    grads, (dx, ds0) = pullback((y, s_n))
    for a in (y, *s_n, dx, *ds0, *tree.leaves(grads)):
        assert a.dtype == np.float32


def test_dropout_is_torchs_between_layers_only():
    """Training: gap k's mask is Dropout(p)'s with split(key, L-1)[k]; the last output and
    inference untouched."""
    model = L.StackedRNN(L.GRU(H), L.GRU(H), L.GRU(H), dropout=0.5)
    params = draw(model, (None, T, C))
    x = np.random.default_rng(6).normal(size=(N, T, C))
    key = random.key(3)
    k0, k1 = random.split(key, 2)
    drop = L.Dropout(0.5)
    h = L.GRU(H).apply(params[0], x)
    h = L.GRU(H).apply(params[1], drop.apply((), h, key=k0, train=True))
    want = L.GRU(H).apply(params[2], drop.apply((), h, key=k1, train=True))
    np.testing.assert_array_equal(model.apply(params, x, key=key, train=True), want)
    y, pullback = model.vjp(params, x, key=key, train=True)
    np.testing.assert_array_equal(y, want)
    dy = np.random.default_rng(7).normal(size=want.shape)
    grads, dx = pullback(dy)
    want_grads, want_dx = _by_hand(params, x, dy, (k0, k1))
    close(grads, want_grads)
    close(dx, want_dx)
    plain = L.Sequential(L.GRU(H), L.GRU(H), L.GRU(H)).apply(params, x)
    np.testing.assert_array_equal(model.apply(params, x), plain)
    assert not np.array_equal(want, plain)


def _by_hand(params, x, dy, keys):
    """Three GRUs with Dropout(0.5) between, keyed by ``keys``, their pullbacks chained."""
    gru, drop = L.GRU(H), L.Dropout(0.5)
    h, pbs = x, []
    for k in range(3):
        h, pb = gru.vjp(params[k], h)
        pbs.append(pb)
        if k < 2:
            h, pb = drop.vjp((), h, key=keys[k], train=True)
            pbs.append(pb)
    d, grads = dy, []
    for pb in reversed(pbs):
        g, d = pb(d)
        if g != ():
            grads.insert(0, g)
    return tuple(grads), d


# ---------------------------------------------------------------------------- state routing

def test_truncated_bptt_three_chunks_equal_one_run():
    """Chunks chained by their states_n give the whole run's y and states; their pullbacks
    chained back through the state cotangents, the whole run's gradients."""
    model = L.StackedRNN(L.LSTM(H, **STATE), L.LSTM(3, **STATE))
    params = draw(model, ((None, 9, C), (((None, H), (None, H)), ((None, 3), (None, 3)))))
    rng = np.random.default_rng(8)
    x, dy = rng.normal(size=(N, 9, C)), rng.normal(size=(N, 9, 3))
    s0 = tuple((rng.normal(size=(N, h)), rng.normal(size=(N, h))) for h in (H, 3))
    (y, s_n), pullback = model.vjp(params, (x, s0))
    grads, (dx, ds0) = pullback((dy, None))
    s, ys, pbs = s0, [], []
    for a in range(0, 9, 3):
        (y_a, s), pb = model.vjp(params, (x[:, a:a + 3], s))
        ys.append(y_a)
        pbs.append(pb)
    close(np.concatenate(ys, axis=1), y)
    close(s, s_n)
    d_s, total, dxs = None, None, []
    for a, pb in zip((6, 3, 0), reversed(pbs)):
        g, (dx_a, d_s) = pb((dy[:, a:a + 3], d_s))
        total = g if total is None else tree.map(np.add, total, g)
        dxs.insert(0, dx_a)
    close(total, grads)
    close(np.concatenate(dxs, axis=1), dx)
    close(d_s, ds0)


def test_each_layers_state_and_cotangent_reach_that_layer():
    """A wrong layer order, a state given to another layer or a dropped cotangent of one
    fails here: layer k's h0 moves only layers >= k; dh_n of layer 0 reaches no param of
    layer 1; every d_state0 is each layer's own, as that layer alone gives it."""
    model = L.StackedRNN(L.GRU(H, **STATE), L.GRU(H, **STATE))
    params = draw(model, ((None, T, C), ((None, H), (None, H))))
    rng = np.random.default_rng(9)
    x = rng.normal(size=(N, T, C))
    s0 = (rng.normal(size=(N, H)), rng.normal(size=(N, H)))
    (y, (h0n, h1n)), pullback = model.vjp(params, (x, s0))
    one = L.GRU(H, **STATE)
    (y0, want_h0n), pb0 = one.vjp(params[0], (x, s0[0]))
    (y1, want_h1n), pb1 = one.vjp(params[1], (y0, s0[1]))
    np.testing.assert_array_equal(h0n, want_h0n)
    np.testing.assert_array_equal(h1n, want_h1n)
    d0 = rng.normal(size=(N, H))
    grads, (dx, (ds_a, ds_b)) = pullback((np.zeros_like(y), (d0, None)))
    assert all(not g.any() for g in grads[1].values())  # dh_n of layer 0: not layer 1's
    g0, (dx0, want_ds_a) = pb0((np.zeros_like(y0), d0))
    close((grads[0], dx, ds_a), (g0, dx0, want_ds_a))
    assert not ds_b.any() and np.abs(ds_a).max() > 1e-3
    d1 = rng.normal(size=(N, H))
    grads, (dx, (ds_a, ds_b)) = pullback((None, (None, d1)))
    g1, (dy0, want_ds_b) = pb1((np.zeros_like(y1), d1))
    g0, (want_dx, want_ds_a) = pb0((dy0, None))
    close(grads, (g0, g1))
    close((dx, ds_a, ds_b), (want_dx, want_ds_a, want_ds_b))


# ---------------------------------------------------------------------------- around it

def test_per_example_gradients_pass_through():
    model = L.Sequential(L.StackedRNN(L.LSTM(3, lengths=True), L.GRU(2, lengths=True,
                                                                     return_sequences=False)),
                         L.Dense(2))
    params = draw(model, ((None, T, C), (None,)))
    rng = np.random.default_rng(10)
    x, ln, t = rng.normal(size=(N, T, C)), np.array([6, 0, 3]), rng.normal(size=(N, 2))
    _, grads = fd.per_example_value_and_grad(model, losses.mse)(params, (x, ln), t)
    g = fd.grad(model, losses.mse)
    for i in range(N):
        row = g(params, (x[i:i + 1], ln[i:i + 1]), t[i:i + 1])
        for (path, got), want in zip(tree.leaves_with_path(grads), tree.leaves(row),
                                     strict=True):
            np.testing.assert_allclose(got[i], want, **TOL, err_msg=f"{i} {path}")
