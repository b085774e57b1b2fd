"""ConvTranspose2D against PyTorch's ``conv_transpose2d`` in float64: forward, dx, dw and db over
a grid of kernels, strides, paddings, output paddings and dilations; the same refusals
(output_padding, outputs of no pixel); torch's default init bound; and 'SAME'/'VALID'
against JAX's ``lax.conv_transpose(..., transpose_kernel=True)``. Skipped where torch is
not installed.

funcdl is NHWC with the kernel (kh, kw, out, C); torch is NCHW with (C, out, kh, kw): the
kernel converts by the transpose (3, 2, 0, 1).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from _torch_util import t64

from funcdl import random, tree
from funcdl.layers.conv_transpose import ConvTranspose2D

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}


def nchw(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2)


def nhwc(t: Any) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def pairs(v: Any) -> tuple[int, int]:
    return v if isinstance(v, tuple) else (v, v)


def accepted(stride: Any, op: Any, dilation: Any) -> bool:
    """torch's rule: output_padding below the stride or the dilation on each axis."""
    return all(o < s or o < d for o, s, d in zip(pairs(op), pairs(stride), pairs(dilation)))


KERNELS, STRIDES = (1, 2, 3, (2, 3)), (1, 2, 3, (2, 1))
PADDINGS, OUTPUT_PADDINGS, DILATIONS = (0, 1, (2, 0)), (0, 1, (1, 0)), (1, (2, 1))


@pytest.mark.parametrize("kernel, stride", list(itertools.product(KERNELS, STRIDES)))
def test_matches_torch(kernel, stride):
    """Every padding, output_padding and dilation of the grid that torch accepts (a loop
    here: one test each would spend its time in pytest), each config named on failure."""
    for padding, op, dilation in itertools.product(PADDINGS, OUTPUT_PADDINGS, DILATIONS):
        if accepted(stride, op, dilation):
            one_config(kernel, stride, padding, op, dilation)


def one_config(kernel: Any, stride: Any, padding: Any, op: Any, dilation: Any) -> None:
    layer = ConvTranspose2D(3, kernel, stride=stride, padding=padding, output_padding=op,
                            dilation=dilation)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 2))
    span = [(k - 1) * d + 1 for k, d in zip(pairs(kernel), pairs(dilation))]
    if any((n - 1) * s + sp - 2 * p + o < 1 for n, s, sp, p, o in
           zip((4, 5), pairs(stride), span, pairs(padding), pairs(op))):
        with pytest.raises(ValueError, match=r"ConvTranspose2D\(.*an output of at least one"):
            layer.init(random.key(0), x.shape)
        with pytest.raises(RuntimeError):  # torch refuses the same sizes
            F.conv_transpose2d(t64(nchw(x)), t64(np.ones((2, 3, *pairs(kernel)))),
                               stride=stride, padding=padding, output_padding=op,
                               dilation=dilation)
        return
    _, params = layer.init(random.key(0), x.shape)
    params = tree.map(lambda a: a.astype(np.float64), params)
    y, pullback = layer.vjp(params, x)
    dy = rng.standard_normal(y.shape)
    dparams, dx = pullback(dy)
    xt = t64(nchw(x), grad=True)
    wt = t64(params["w"].transpose(3, 2, 0, 1), grad=True)  # (kh, kw, out, C) -> (C, out, kh, kw)
    bt = t64(params["b"], grad=True)
    yt = F.conv_transpose2d(xt, wt, bt, stride=stride, padding=padding, output_padding=op,
                            dilation=dilation)
    yt.backward(t64(nchw(dy)))
    assert y.shape == nhwc(yt).shape, layer.name
    for got, want in ((y, nhwc(yt)), (dx, nhwc(xt.grad)),
                      (dparams["w"], wt.grad.numpy().transpose(2, 3, 1, 0)),
                      (dparams["b"], bt.grad.numpy())):
        np.testing.assert_allclose(got, want, **TOL, err_msg=layer.name)


@pytest.mark.parametrize("stride, op, dilation", [(2, 2, 1), (1, 1, 1), (2, (0, 2), 2), (1, 1, 2),
                                                  (3, 1, 2)])
def test_output_padding_refused_where_torch_refuses(stride, op, dilation):
    x = t64(np.ones((1, 1, 3, 3)))
    try:
        F.conv_transpose2d(x, t64(np.ones((1, 1, 3, 3))), stride=stride, output_padding=op,
                           dilation=dilation)
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    if torch_ok:
        ConvTranspose2D(1, 3, stride=stride, output_padding=op, dilation=dilation)
    else:
        with pytest.raises(ValueError, match=r"output_padding must be smaller than the stride"):
            ConvTranspose2D(1, 3, stride=stride, output_padding=op, dilation=dilation)


def test_default_init_bound_is_torchs():
    """torch's ConvTranspose2d draws w and b from U(±1/sqrt(fan_in)), fan_in from its
    weight (C, out, kh, kw): out·kh·kw. funcdl's draws reach the same bound, and no further."""
    c, out, k = 48, 5, 3
    torch.manual_seed(0)
    m = torch.nn.ConvTranspose2d(c, out, k)
    bound = 1 / math.sqrt(out * k * k)
    assert m.weight.abs().max().item() <= bound
    assert m.weight.abs().max().item() > 0.99 * bound
    assert m.bias.abs().max().item() <= bound
    _, params = ConvTranspose2D(out, k).init(random.key(0), (None, 3, 3, c))
    for a in (params["w"], params["b"]):
        assert np.abs(a).max() <= bound
    assert np.abs(params["w"]).max() > 0.99 * bound
    # the bias, on enough draws to reach its bound: out = 400 channels from C = 2
    b_torch = torch.nn.ConvTranspose2d(2, 400, 1).bias.abs().max().item()
    b_ours = np.abs(ConvTranspose2D(400, 1).init(random.key(0), (None, 1, 1, 2))[1]["b"]).max()
    for b in (b_torch, b_ours):
        assert 0.97 / math.sqrt(400) < b <= 1 / math.sqrt(400)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_same_and_valid_match_jax_conv_transpose(padding, jax64):
    """JAX's conv_transpose with transpose_kernel=True takes funcdl's kernel as it is."""
    jax = jax64
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 2))
    for kernel, stride, dilation in itertools.product((1, 2, 3, 4, (5, 2)), (1, 2, 3),
                                                      (1, (2, 1))):
        layer = ConvTranspose2D(3, kernel, stride=stride, padding=padding, dilation=dilation,
                                use_bias=False)
        _, params = layer.init(random.key(0), x.shape)
        w = params["w"].astype(np.float64)
        want = np.asarray(jax.lax.conv_transpose(
            x, w, pairs(stride), padding, rhs_dilation=pairs(dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True))
        got = layer.apply({"w": w}, x)
        assert got.shape == want.shape, layer.name
        np.testing.assert_allclose(got, want, **TOL, err_msg=layer.name)
