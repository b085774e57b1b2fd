"""SimpleRNN, LSTM and GRU against torch.nn.RNN, LSTM and GRU (batch_first=True) in float64
(skipped without torch): the output sequence, the last state h_n, and the gradients of
every param and of the input; reverse against the reverse half of a bidirectional torch
layer, and a FanOut/Parallel/FanInConcat bidirectional layer against the whole of one.
funcdl's params are torch's transposed: ``w_ih = weight_ih_l0.T``, the biases as they are."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN

torch = pytest.importorskip("torch")

TOL = {"rtol": 1e-10, "atol": 1e-12}
N, T, C, H = 4, 7, 3, 5
KINDS = {"rnn": (SimpleRNN, torch.nn.RNN, {}), "relu": (SimpleRNN, torch.nn.RNN,
                                                         {"nonlinearity": "relu"}),
         "lstm": (LSTM, torch.nn.LSTM, {}), "gru": (GRU, torch.nn.GRU, {})}
NAMES = (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
         ("b_hh", "bias_hh"))


def torch_module(kind, use_bias=True, bidirectional=False):
    _, cls, options = KINDS[kind]
    return cls(C, H, batch_first=True, bias=use_bias, bidirectional=bidirectional,
               **options).double()


def ours(kind, **options):
    ctor, _, extra = KINDS[kind]
    return ctor(H, **extra, **options)


def draw_params(layer, seed):
    """The layer's params from its own init, in float64, scaled up a little (gates far
    from 0.5, cell states that grow)."""
    _, params = layer.init(random.key(seed), (None, T, C))
    return {k: 2.0 * v.astype(np.float64) for k, v in params.items()}


def load(module, params, suffix=""):
    """Copy funcdl's params into torch's, transposed: ``weight_ih_l0 = w_ih.T``."""
    with torch.no_grad():
        for ours_name, theirs in NAMES:
            if ours_name in params:
                getattr(module, f"{theirs}_l0{suffix}").copy_(
                    torch.from_numpy(np.ascontiguousarray(params[ours_name].T)))


def torch_grads(module, suffix=""):
    return {ours_name: getattr(module, f"{theirs}_l0{suffix}").grad.numpy().T
            for ours_name, theirs in NAMES if getattr(module, f"{theirs}_l0{suffix}", None)
            is not None}


def compare_grads(grads, expected):
    assert set(grads) == set(expected)
    for k in grads:
        np.testing.assert_allclose(grads[k], expected[k], err_msg=k, **TOL)


def inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, T, C)), rng.normal(size=(N, T, H)), rng.normal(size=(N, H))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("use_bias", [True, False])
def test_sequence_and_h_n_match_torch(kind, use_bias):
    layer = ours(kind, use_bias=use_bias)
    params = draw_params(layer, seed=1)
    module = torch_module(kind, use_bias)
    load(module, params)
    x, dy, _ = inputs(2)
    xt = torch.from_numpy(x).requires_grad_(True)
    out, state = module(xt)
    h_n = state[0] if kind == "lstm" else state
    out.backward(torch.from_numpy(dy))
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    np.testing.assert_allclose(y[:, -1], h_n.detach().numpy()[0], **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    compare_grads(grads, torch_grads(module))


@pytest.mark.parametrize("kind", list(KINDS))
def test_last_step_matches_torch_h_n(kind):
    """return_sequences=False is torch's h_n; its gradient flows from h_n alone."""
    layer = ours(kind, return_sequences=False)
    params = draw_params(layer, seed=3)
    module = torch_module(kind)
    load(module, params)
    x, _, dh = inputs(4)
    xt = torch.from_numpy(x).requires_grad_(True)
    _, state = module(xt)
    h_n = (state[0] if kind == "lstm" else state)[0]
    (h_n * torch.from_numpy(dh)).sum().backward()
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dh)
    np.testing.assert_allclose(y, h_n.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    compare_grads(grads, torch_grads(module))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("return_sequences", [True, False])
def test_reverse_matches_torch_reverse_direction(kind, return_sequences):
    """reverse=True is the reverse half of torch's bidirectional layer: its output
    ``out[..., H:]`` in the input's time order, and its ``h_n[1]`` (the state after x_0)."""
    layer = ours(kind, reverse=True, return_sequences=return_sequences)
    params = draw_params(layer, seed=5)
    module = torch_module(kind, bidirectional=True)
    load(module, params, "_reverse")
    x, dy, dh = inputs(6)
    xt = torch.from_numpy(x).requires_grad_(True)
    out, state = module(xt)
    h_n = (state[0] if kind == "lstm" else state)[1]
    if return_sequences:
        (out[..., H:] * torch.from_numpy(dy)).sum().backward()
        want, cotangent = out[..., H:], dy
    else:
        (h_n * torch.from_numpy(dh)).sum().backward()
        want, cotangent = h_n, dh
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(cotangent)
    np.testing.assert_allclose(y, want.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    compare_grads(grads, torch_grads(module, "_reverse"))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_composite_matches_torch(kind):
    model = L.Sequential(L.FanOut(2), L.Parallel(ours(kind), ours(kind, reverse=True)),
                         L.FanInConcat())
    _, params = model.init(random.key(7), (None, T, C))
    ahead, back = ({k: v.astype(np.float64) for k, v in p.items()} for p in params[1])
    params = [(), [ahead, back], ()]
    module = torch_module(kind, bidirectional=True)
    load(module, ahead)
    load(module, back, "_reverse")
    x = np.random.default_rng(8).normal(size=(N, T, C))
    dy = np.random.default_rng(9).normal(size=(N, T, 2 * H))
    xt = torch.from_numpy(x).requires_grad_(True)
    out, _ = module(xt)
    out.backward(torch.from_numpy(dy))
    y, pullback = model.vjp(params, x)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    compare_grads(grads[1][0], torch_grads(module))
    compare_grads(grads[1][1], torch_grads(module, "_reverse"))
