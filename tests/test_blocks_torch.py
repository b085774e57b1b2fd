"""TransformerEncoderLayer, TransformerDecoderLayer and Bidirectional against torch.nn's
(batch_first=True) in float64, eval mode / dropout 0 (skipped without torch): the output,
every param's gradient and the input's. torch's weights come over by ``from_torch`` (a test
helper, the mapping of blocks.py's docstring), its gradients by the same map."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random, tree
from funcdl.layers.blocks import Bidirectional, TransformerDecoderLayer, TransformerEncoderLayer

torch = pytest.importorskip("torch")

TOL = {"rtol": 1e-10, "atol": 1e-11}
N, T, S, E, HEADS, FF = 3, 5, 4, 8, 2, 12


def from_torch(module: Any, grads: bool = False) -> dict[str, Any]:
    """funcdl's params (or, ``grads=True``, gradients) of a torch Transformer*Layer or
    bidirectional RNN, from its weights (or their ``.grad``)."""
    sd = {k: (v.grad if grads else v).detach().numpy().copy()
          for k, v in module.named_parameters()}
    if any(k.startswith("weight_ih_l0") for k in sd):  # nn.LSTM / nn.GRU / nn.RNN
        return {direction: {"w_ih": sd[f"weight_ih_l0{sfx}"].T, "w_hh": sd[f"weight_hh_l0{sfx}"].T,
                            "b_ih": sd[f"bias_ih_l0{sfx}"], "b_hh": sd[f"bias_hh_l0{sfx}"]}
                for direction, sfx in (("forward", ""), ("backward", "_reverse"))}
    out: dict[str, Any] = {}
    for att in ("self_attn", "multihead_attn"):
        if f"{att}.in_proj_weight" in sd:
            w, b = sd[f"{att}.in_proj_weight"], sd[f"{att}.in_proj_bias"]
            out[att] = {"w_q": w[:E].T, "w_k": w[E:2 * E].T, "w_v": w[2 * E:].T,
                        "b_q": b[:E], "b_k": b[E:2 * E], "b_v": b[2 * E:],
                        "w_o": sd[f"{att}.out_proj.weight"].T, "b_o": sd[f"{att}.out_proj.bias"]}
    for lin in ("linear1", "linear2"):
        out[lin] = {"w": sd[f"{lin}.weight"].T, "b": sd[f"{lin}.bias"]}
    for norm in ("norm1", "norm2", "norm3"):
        if f"{norm}.weight" in sd:
            out[norm] = {"scale": sd[f"{norm}.weight"], "bias": sd[f"{norm}.bias"]}
    if "activation.weight" in sd:  # an nn.PReLU activation
        out["activation"] = {"a": sd["activation.weight"]}
    return out


def jiggled(module: Any, seed: int) -> Any:
    """The module in float64, eval mode, every param moved off its init (LayerNorm's 1 and
    0, the zero attention biases) so that a swapped or missing one shows."""
    torch.manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def t(a: Any) -> Any:
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def close(ours: Any, theirs: Any) -> None:
    assert tree.structure(ours) == tree.structure(theirs)
    for a, b in zip(tree.leaves(ours), tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, **TOL)


def compare(layer: Any, module: Any, xs: tuple[Any, ...], run: Any) -> None:
    """Output, param and input gradients of ``layer`` on ``xs`` (one array or a pair)
    against ``run(module, *tensors)``, on one random cotangent."""
    params = from_torch(module)
    x = xs[0] if len(xs) == 1 else xs
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(9), y.shape, np.float64)
    tensors = [t(a) for a in xs]
    out = run(module, *tensors)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    dparams, dx = pullback(dy)
    close(dparams, from_torch(module, grads=True))
    close(dx if len(xs) > 1 else (dx,), tuple(a.grad.numpy() for a in tensors))


def mask(n: int) -> Any:
    return torch.nn.Transformer.generate_square_subsequent_mask(n, dtype=torch.float64)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_layer_as_torch(norm_first: bool, activation: str, causal: bool) -> None:
    module = jiggled(torch.nn.TransformerEncoderLayer(
        E, HEADS, FF, dropout=0.1, activation=activation, norm_first=norm_first,
        batch_first=True), 1)
    layer = TransformerEncoderLayer(E, HEADS, FF, dropout=0.1, activation=activation,
                                    norm_first=norm_first, causal=causal)
    x = random.normal(random.key(2), (N, T, E), np.float64)

    def run(m: Any, xt: Any) -> Any:
        return m(xt, src_mask=mask(T), is_causal=True) if causal else m(xt)

    compare(layer, module, (x,), run)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_an_activation_with_params_trains_as_torchs(kind: str) -> None:
    # the blocks dropped a given activation's params from their dict: a PReLU's init
    # returned none, and apply refused the params init had returned
    cls = {"encoder": (torch.nn.TransformerEncoderLayer, TransformerEncoderLayer),
           "decoder": (torch.nn.TransformerDecoderLayer, TransformerDecoderLayer)}[kind]
    module = jiggled(cls[0](E, HEADS, FF, dropout=0.0, activation=torch.nn.PReLU(),
                            batch_first=True), 3)
    layer = cls[1](E, HEADS, FF, dropout=0.0, activation=L.PReLU(),
                   **({"causal": False} if kind == "decoder" else {}))
    xs = tuple(random.normal(random.key(i), shape, np.float64)
               for i, shape in enumerate([(N, T, E), (N, S, E)][:1 + (kind == "decoder")]))
    assert sorted(layer.init(random.key(0), xs[0].shape if kind == "encoder" else
                             tuple(x.shape for x in xs))[1])[0] == "activation"
    compare(layer, module, xs, lambda m, *ts: m(*ts))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_layer_as_torch(norm_first: bool, activation: str) -> None:
    module = jiggled(torch.nn.TransformerDecoderLayer(
        E, HEADS, FF, dropout=0.0, activation=activation, norm_first=norm_first,
        batch_first=True), 3)
    layer = TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, activation=activation,
                                    norm_first=norm_first)
    tgt = random.normal(random.key(4), (N, T, E), np.float64)
    memory = random.normal(random.key(5), (N, S, E), np.float64)
    compare(layer, module, (tgt, memory),
            lambda m, a, b: m(a, b, tgt_mask=mask(T), tgt_is_causal=True))


def test_decoder_layer_without_mask_as_torch() -> None:
    module = jiggled(torch.nn.TransformerDecoderLayer(E, HEADS, FF, batch_first=True), 6)
    layer = TransformerDecoderLayer(E, HEADS, FF, causal=False)
    tgt = random.normal(random.key(4), (N, T, E), np.float64)
    memory = random.normal(random.key(5), (N, S, E), np.float64)
    compare(layer, module, (tgt, memory), lambda m, a, b: m(a, b))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("twin", ["flipped", "given"])
def test_bidirectional_as_torch(kind: str, return_sequences: bool, twin: str) -> None:
    ctor, cls = {"lstm": (L.LSTM, torch.nn.LSTM), "gru": (L.GRU, torch.nn.GRU)}[kind]
    module = jiggled(cls(3, 4, batch_first=True, bidirectional=True), 7)
    back = ctor(4, return_sequences=return_sequences, reverse=True) if twin == "given" else None
    layer = Bidirectional(ctor(4, return_sequences=return_sequences), backward_layer=back)
    x = random.normal(random.key(8), (N, 6, 3), np.float64)

    def run(m: Any, xt: Any) -> Any:
        out, h = m(xt)
        h_n = h[0] if kind == "lstm" else h
        return out if return_sequences else torch.cat([h_n[0], h_n[1]], dim=-1)

    compare(layer, module, (x,), run)


def test_bidirectional_sum_as_torch() -> None:
    module = jiggled(torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True), 10)
    layer = Bidirectional(L.LSTM(4), "sum")
    x = random.normal(random.key(11), (N, 6, 3), np.float64)

    def run(m: Any, xt: Any) -> Any:
        out = m(xt)[0]
        return out[..., :4] + out[..., 4:]

    compare(layer, module, (x,), run)
