"""SimpleRNN, LSTM and GRU with ``lengths=True`` against torch.nn.RNN, LSTM and GRU
(batch_first=True) on ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` in float64
(skipped without torch): the padded output (``pad_packed_sequence``, zeros past each end),
``h_n``, and the gradients of every param and of x; one direction and bidirectional, the
latter built in funcdl as FanOut(2), Parallel(forward, reverse=True), FanInConcat over the
pair ``(x, lengths)``. funcdl's params are torch's transposed: ``w_ih = weight_ih_l0.T``."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN

torch = pytest.importorskip("torch")
pack = torch.nn.utils.rnn.pack_padded_sequence
unpack = torch.nn.utils.rnn.pad_packed_sequence

TOL = {"rtol": 1e-10, "atol": 1e-12}
N, T, C, H = 5, 7, 3, 4
LENGTHS = np.array([3, 7, 1, 5, 7])  # unsorted, as enforce_sorted=False takes them
KINDS = {"rnn": (SimpleRNN, torch.nn.RNN, {}), "relu": (SimpleRNN, torch.nn.RNN,
                                                         {"nonlinearity": "relu"}),
         "lstm": (LSTM, torch.nn.LSTM, {}), "gru": (GRU, torch.nn.GRU, {})}
NAMES = (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
         ("b_hh", "bias_hh"))


def ours(kind, **options):
    ctor, _, extra = KINDS[kind]
    return ctor(H, **extra, lengths=True, **options)


def draw_params(seed, kind):
    """A direction's params from the layer's own init, float64, scaled up a little."""
    _, params = ours(kind).init(random.key(seed), ((None, T, C), (None,)))
    return {k: 2.0 * v.astype(np.float64) for k, v in params.items()}


def load(module, params, suffix=""):
    with torch.no_grad():
        for mine, theirs in NAMES:
            getattr(module, f"{theirs}_l0{suffix}").copy_(
                torch.from_numpy(np.ascontiguousarray(params[mine].T)))


def torch_grads(module, suffix=""):
    return {mine: getattr(module, f"{theirs}_l0{suffix}").grad.numpy().T
            for mine, theirs in NAMES}


def compare_grads(grads, expected):
    assert set(grads) == set(expected)
    for k in grads:
        np.testing.assert_allclose(grads[k], expected[k], err_msg=k, **TOL)


def run_torch(kind, params, x, dy, dh):
    """torch on the packed batch, with funcdl's ``params`` (one per direction): the padded
    output, h_n, and the gradients of ``Σ out·dy + Σ h_n·dh``; the module for its params'
    gradients."""
    _, cls, extra = KINDS[kind]
    module = cls(C, H, batch_first=True, bidirectional=len(params) == 2, **extra).double()
    for p, suffix in zip(params, ("", "_reverse")):
        load(module, p, suffix)
    xt = torch.from_numpy(x).requires_grad_(True)
    packed = pack(xt, torch.from_numpy(LENGTHS), batch_first=True, enforce_sorted=False)
    out, state = module(packed)
    out, _ = unpack(out, batch_first=True, total_length=T)
    h_n = state[0] if kind == "lstm" else state
    ((out * torch.from_numpy(dy)).sum() + (h_n * torch.from_numpy(dh)).sum()).backward()
    return module, out.detach().numpy(), h_n.detach().numpy(), xt


def inputs(seed, directions):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, T, C))
    x[np.arange(T) >= LENGTHS[:, None]] = rng.normal(size=()) * 30  # padding: never read
    return (x, rng.normal(size=(N, T, directions * H)),
            rng.normal(size=(directions, N, H)))


def direction(kind, params, x, dy, dh, reverse):
    """One funcdl direction: its sequence and last-state layers on the same params, their
    gradients summed (torch's out and h_n come from one run)."""
    seq_y, seq_pb = ours(kind, reverse=reverse).vjp(params, (x, LENGTHS))
    last_y, last_pb = ours(kind, reverse=reverse, return_sequences=False).vjp(
        params, (x, LENGTHS))
    (g1, (dx1, none1)), (g2, (dx2, none2)) = seq_pb(dy), last_pb(dh)
    assert none1 is None and none2 is None
    return seq_y, last_y, {k: g1[k] + g2[k] for k in g1}, dx1 + dx2


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_direction_matches_torch_packed(kind):
    params = draw_params(1, kind)
    x, dy, dh = inputs(2, 1)
    module, out, h_n, xt = run_torch(kind, [params], x, dy, dh)
    y, last, grads, dx = direction(kind, params, x, dy, dh[0], reverse=False)
    np.testing.assert_allclose(y, out, **TOL)
    np.testing.assert_allclose(last, h_n[0], **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    compare_grads(grads, torch_grads(module))


@pytest.mark.parametrize("kind", list(KINDS))
def test_bidirectional_matches_torch_packed(kind):
    """Each direction on its own against torch's halves: out[..., :H], out[..., H:], h_n[0],
    h_n[1]; dx their sum."""
    ahead, back = draw_params(3, kind), draw_params(4, kind)
    x, dy, dh = inputs(5, 2)
    module, out, h_n, xt = run_torch(kind, [ahead, back], x, dy, dh)
    y_f, last_f, grads_f, dx_f = direction(kind, ahead, x, dy[..., :H], dh[0], False)
    y_b, last_b, grads_b, dx_b = direction(kind, back, x, dy[..., H:], dh[1], True)
    np.testing.assert_allclose(np.concatenate([y_f, y_b], -1), out, **TOL)
    np.testing.assert_allclose(np.stack([last_f, last_b]), h_n, **TOL)
    np.testing.assert_allclose(dx_f + dx_b, xt.grad.numpy(), **TOL)
    compare_grads(grads_f, torch_grads(module))
    compare_grads(grads_b, torch_grads(module, "_reverse"))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_composite_matches_torch_packed(kind, return_sequences):
    """FanOut(2) copies (x, lengths) to both directions: torch's padded bidirectional output
    (or, without sequences, h_n of both directions side by side), dx and every gradient."""
    model = L.Sequential(L.FanOut(2), L.Parallel(
        ours(kind, return_sequences=return_sequences),
        ours(kind, reverse=True, return_sequences=return_sequences)), L.FanInConcat())
    _, params = model.init(random.key(7), ((None, T, C), (None,)))
    ahead, back = ({k: 2.0 * v.astype(np.float64) for k, v in p.items()} for p in params[1])
    params = [(), [ahead, back], ()]
    x, dy, dh = inputs(8, 2)
    _, cls, extra = KINDS[kind]
    module = cls(C, H, batch_first=True, bidirectional=True, **extra).double()
    load(module, ahead)
    load(module, back, "_reverse")
    xt = torch.from_numpy(x).requires_grad_(True)
    out, state = module(pack(xt, torch.from_numpy(LENGTHS), batch_first=True,
                             enforce_sorted=False))
    h_n = state[0] if kind == "lstm" else state
    if return_sequences:
        want = unpack(out, batch_first=True, total_length=T)[0]
        cotangent = dy
    else:
        want = torch.cat([h_n[0], h_n[1]], -1)
        cotangent = np.concatenate([dh[0], dh[1]], -1)
    (want * torch.from_numpy(cotangent)).sum().backward()
    y, pullback = model.vjp(params, (x, LENGTHS))
    grads, (dx, dlen) = pullback(cotangent)
    assert dlen is None
    np.testing.assert_allclose(y, want.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    compare_grads(grads[1][0], torch_grads(module))
    compare_grads(grads[1][1], torch_grads(module, "_reverse"))
