"""``bias=False``, PyTorch's (2.1) option of ``nn.LayerNorm``, ``nn.TransformerEncoderLayer``
and ``nn.TransformerDecoderLayer``: a LayerNorm of params ``{'scale'}`` alone, and blocks
with no bias anywhere (attention, the two Dense, the norms). Finite differences in float64,
equality with the biased layers at a zero bias, bad inputs, and torch in float64 (skipped
without torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
N, T, S, E, HEADS, FF = 3, 5, 4, 8, 2, 12


def jiggled(params: Any, seed: int) -> Any:
    """The params in float64, each moved off its init (LayerNorm's scale of ones)."""
    leaves, treedef = tree.flatten(params)
    keys = random.split(random.key(seed), len(leaves))
    return tree.unflatten(treedef, [a.astype(np.float64) + 0.3 * random.normal(
        k, a.shape, np.float64) for a, k in zip(leaves, keys)])


# ---------------------------------------------------------------------------- LayerNorm

@pytest.mark.parametrize(("axis", "shape"), [(-1, (4, 6)), ((1, 2), (3, 4, 5)), (1, (3, 4, 2))])
def test_layernorm_without_bias_is_the_biased_one_at_zero_bias(axis: Any, shape: Any) -> None:
    # the (rows, S) path (trailing axes) and the general one (axis=1 of three)
    free, full = L.LayerNorm(axis=axis, bias=False), L.LayerNorm(axis=axis)
    _, p = free.init(KEY, (None, *shape[1:]))
    assert sorted(p) == ["scale"]
    p = jiggled(p, 1)
    x = random.normal(random.key(2), shape, np.float64)
    dy = random.normal(random.key(3), shape, np.float64)
    with_zero = {"scale": p["scale"], "bias": np.zeros_like(p["scale"])}
    y, pullback = free.vjp(p, x)
    y_full, pullback_full = full.vjp(with_zero, x)
    np.testing.assert_array_equal(y, y_full)
    np.testing.assert_array_equal(free.apply(p, x), y)
    (dp, dx), (dp_full, dx_full) = pullback(dy), pullback_full(dy)
    assert sorted(dp) == ["scale"]
    np.testing.assert_allclose(dp["scale"], dp_full["scale"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, dx_full, rtol=1e-13, atol=1e-13)
    check_vjp(free, p, x)


def test_layernorm_without_bias_closed_form() -> None:
    # y = scale·x̂ with no shift; dscale = Σ dy·x̂: a sign or factor slip shows here
    free = L.LayerNorm(bias=False)
    x = random.normal(random.key(4), (5, 6), np.float64)
    p = {"scale": np.linspace(0.5, 2.0, 6)}
    xhat = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    y, pullback = free.vjp(p, x)
    np.testing.assert_allclose(y, xhat * p["scale"], rtol=1e-12)
    dy = random.normal(random.key(5), (5, 6), np.float64)
    np.testing.assert_allclose(pullback(dy)[0]["scale"], (dy * xhat).sum(0), rtol=1e-12)


def test_layernorm_without_bias_keeps_float32_and_per_example_grads() -> None:
    check_layer(L.LayerNorm(bias=False), (None, 6))
    model = L.Sequential(L.Dense(6), L.LayerNorm(bias=False), L.Dense(1))
    _, params = model.init(KEY, (None, 3))
    x = random.normal(random.key(6), (4, 3))
    y = random.normal(random.key(7), (4, 1))
    each = fd.per_example_grad(model, fd.losses.mse)(params, x, y)
    assert sorted(each[1]) == ["scale"] and each[1]["scale"].dtype == np.float32
    for i in range(4):
        one = fd.grad(model, fd.losses.mse)(params, x[i:i + 1], y[i:i + 1])
        np.testing.assert_allclose(each[1]["scale"][i], one[1]["scale"], rtol=1e-4, atol=1e-6)


def test_layernorm_without_bias_bad_inputs() -> None:
    with pytest.raises(TypeError, match=r"LayerNorm.*bias"):
        L.LayerNorm(bias="no")  # type: ignore[arg-type]
    free, full = L.LayerNorm(bias=False), L.LayerNorm()
    _, p = full.init(KEY, (None, 4))
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"LayerNorm\(bias=False\).*keys \['scale'\].*got "
                                         r"\['bias', 'scale'\]"):
        free.apply(p, x)  # a biased LayerNorm's params
    with pytest.raises(ValueError, match=r"LayerNorm\(\):.*\['scale', 'bias'\].*got \['scale'\]"):
        full.apply({"scale": p["scale"]}, x)


# ---------------------------------------------------------------------------- the blocks

def _blocks(bias: bool, norm_first: bool, masked: bool) -> tuple[Any, Any]:
    common = {"dropout": 0.0, "norm_first": norm_first, "bias": bias, "masked": masked}
    return (L.TransformerEncoderLayer(E, HEADS, FF, **common),
            L.TransformerDecoderLayer(E, HEADS, FF, **common))


def _inputs(masked: bool) -> tuple[Any, Any]:
    x = random.normal(random.key(8), (N, T, E), np.float64)
    memory = random.normal(random.key(9), (N, S, E), np.float64)
    pad_x = np.arange(T) >= np.array([T, 2, 4])[:, None]
    pad_m = np.arange(S) >= np.array([1, S, 3])[:, None]
    tgt = random.normal(random.key(10), (N, T, E), np.float64)
    if masked:
        return (x, pad_x), (tgt, memory, pad_m)
    return x, (tgt, memory)


def _shapes(xs: Any) -> Any:
    return tuple((None, *a.shape[1:]) for a in xs) if isinstance(xs, tuple) else (
        None, *xs.shape[1:])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_blocks_without_bias_have_no_bias_and_right_gradients(norm_first: bool,
                                                              masked: bool) -> None:
    for layer, xs in zip(_blocks(False, norm_first, masked), _inputs(masked)):
        assert "bias=False" in layer.name
        _, p = layer.init(KEY, _shapes(xs))
        kinds = {k for sub in p.values() for k in sub}
        assert kinds == {"w_q", "w_k", "w_v", "w_o", "w", "scale"}, kinds
        check_vjp(layer, jiggled(p, 11), xs)


def test_blocks_bias_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"TransformerEncoderLayer\(8, 2\).*bias"):
        L.TransformerEncoderLayer(8, 2, bias="no")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- torch

def _from_torch(module: Any, grads: bool = False) -> dict[str, Any]:
    """funcdl's params (or gradients) of a bias-free torch Transformer*Layer."""
    def arr(t: Any) -> Any:
        return (t.grad if grads else t).detach().numpy().copy()

    out: dict[str, Any] = {}
    for att in ("self_attn", "multihead_attn"):
        m = getattr(module, att, None)
        if m is not None:
            assert m.in_proj_bias is None and m.out_proj.bias is None
            w = arr(m.in_proj_weight)
            out[att] = {f"w_{r}": w[i * E:(i + 1) * E].T for i, r in enumerate("qkv")}
            out[att]["w_o"] = arr(m.out_proj.weight).T
    for lin in ("linear1", "linear2"):
        assert getattr(module, lin).bias is None
        out[lin] = {"w": arr(getattr(module, lin).weight).T}
    for norm in ("norm1", "norm2", "norm3"):
        if hasattr(module, norm):
            assert getattr(module, norm).bias is None
            out[norm] = {"scale": arr(getattr(module, norm).weight)}
    return out


def test_layernorm_without_bias_as_torch() -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.LayerNorm(6, bias=False, dtype=torch.float64)
    with torch.no_grad():
        module.weight.add_(torch.linspace(-0.5, 0.5, 6, dtype=torch.float64))
    x = random.normal(random.key(12), (4, 3, 6), np.float64)
    dy = random.normal(random.key(13), (4, 3, 6), np.float64)
    xt = torch.tensor(x, requires_grad=True)
    out = module(xt)
    out.backward(torch.tensor(dy))
    y, pullback = L.LayerNorm(bias=False).vjp({"scale": module.weight.detach().numpy()}, x)
    dp, dx = pullback(dy)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dp["scale"], module.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_blocks_without_bias_as_torch(norm_first: bool, kind: str) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cls = (torch.nn.TransformerEncoderLayer if kind == "encoder"
           else torch.nn.TransformerDecoderLayer)
    module = cls(E, HEADS, FF, dropout=0.0, norm_first=norm_first, batch_first=True,
                 bias=False, dtype=torch.float64)
    with torch.no_grad():
        for q in module.parameters():
            q.add_(0.3 * torch.randn_like(q))  # the norms' scale off 1
    enc, dec = _blocks(False, norm_first, True)
    layer = enc if kind == "encoder" else dec
    xs = _inputs(True)[kind == "decoder"]
    y, pullback = layer.vjp(_from_torch(module), xs)
    dy = random.normal(random.key(14), y.shape, np.float64)
    arrays = [torch.tensor(a, requires_grad=True) for a in xs[:-1]]
    pad = torch.tensor(xs[-1])
    if kind == "encoder":
        out = module(arrays[0], src_key_padding_mask=pad)
    else:
        causal = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
        out = module(arrays[0], arrays[1], tgt_mask=causal, tgt_is_causal=True,
                     memory_key_padding_mask=pad)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-11)
    dparams, dx = pullback(dy)
    theirs = _from_torch(module, grads=True)
    assert tree.structure(dparams) == tree.structure(theirs)
    for a, b in zip(tree.leaves(dparams), tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)
    for a, b in zip(dx[:-1], arrays):
        np.testing.assert_allclose(a, b.grad.numpy(), rtol=1e-10, atol=1e-11)
