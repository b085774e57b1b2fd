"""Self-attention over an image's pixels, a diffusion U-Net's attention block: MultiHeadAttention
refuses (N, H, W, C) with a hint to reshape, and ``x + attention(GroupNorm(x))`` through
``Reshape((H·W, C))`` agrees with torch's (NCHW, flattened) in float64."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_vjp


def test_rank_4_input_gets_the_reshape_hint() -> None:
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(2\): expected x of rank 3.*got "
                                         r"shape \(None, 4, 4, 8\).*Reshape\(\(H \* W, C\)\)"):
        L.MultiHeadAttention(2).init(random.key(0), (None, 4, 4, 8))
    layer = L.MultiHeadAttention(2)
    _, params = layer.init(random.key(0), (None, 16, 8))
    with pytest.raises(ValueError, match=r"Reshape\(\(H \* W, C\)\)"):
        layer.apply(params, np.zeros((2, 4, 4, 8)))


def block() -> L.Layer:
    return L.Residual(L.Sequential(L.GroupNorm(2), L.Reshape((9, 4)), L.MultiHeadAttention(2),
                                   L.Reshape((3, 3, 4))))


def test_pixel_attention_block_against_torch() -> None:
    torch = pytest.importorskip("torch")
    b = block()
    _, params = b.init(random.key(0), (None, 3, 3, 4))
    params = fd.tree.map(lambda a: a.astype(np.float64) + 0.2 * random.normal(
        random.key(a.size + a.ndim), a.shape, np.float64), params)
    x = random.normal(random.key(1), (2, 3, 3, 4), np.float64)
    dy = random.normal(random.key(2), x.shape, np.float64)
    gn, _, mha, _ = params
    tgn = torch.nn.GroupNorm(2, 4).double()
    tmha = torch.nn.MultiheadAttention(4, 2, batch_first=True).double()
    with torch.no_grad():
        tgn.weight.copy_(torch.tensor(gn["scale"]))
        tgn.bias.copy_(torch.tensor(gn["bias"]))
        tmha.in_proj_weight.copy_(torch.tensor(np.concatenate(
            [mha["w_q"], mha["w_k"], mha["w_v"]], 1).T.copy()))
        tmha.in_proj_bias.copy_(torch.tensor(np.concatenate([mha["b_q"], mha["b_k"],
                                                             mha["b_v"]])))
        tmha.out_proj.weight.copy_(torch.tensor(mha["w_o"].T.copy()))
        tmha.out_proj.bias.copy_(torch.tensor(mha["b_o"]))
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    s = tgn(xt).flatten(2).transpose(1, 2)
    a, _ = tmha(s, s, s, need_weights=False)
    out = xt + a.transpose(1, 2).reshape(xt.shape)
    out.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))
    y, pullback = b.vjp(params, x)
    np.testing.assert_allclose(y, out.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12,
                               atol=1e-13)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-11,
                               atol=1e-13)
    np.testing.assert_allclose(grads[0]["scale"], tgn.weight.grad.numpy(), rtol=1e-11,
                               atol=1e-13)
    np.testing.assert_allclose(grads[2]["w_o"], tmha.out_proj.weight.grad.numpy().T,
                               rtol=1e-11, atol=1e-13)
    check_vjp(b, params, x)
