"""ConvTranspose2D and ConvTranspose1D with ``groups`` against PyTorch's
``nn.ConvTranspose2d`` / ``nn.ConvTranspose1d(groups=...)`` in float64: y, dx, dw and db
over groups (2, depthwise, channel multipliers), strides, paddings, output paddings and
dilations, and torch's default init bound. Skipped where torch is not installed.

funcdl's grouped kernel is (kh, kw, out/groups, C), torch's weight (C, out/groups, kh, kw):
``w = w_torch.transpose(2, 3, 1, 0)``, ``w_torch = w.transpose(3, 2, 0, 1)``; at rank 1
``(k, out/groups, C)`` and ``w.transpose(2, 1, 0)``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from funcdl import random, tree
from funcdl.layers.conv_transpose import ConvTranspose1D, ConvTranspose2D

torch = pytest.importorskip("torch")
TOL = {"rtol": 1e-10, "atol": 1e-12}

GROUPS = [  # C, out, groups
    (4, 6, 2),
    (6, 6, 6),    # depthwise
    (3, 6, 3),    # one input channel per group, 2 outputs each
    (6, 3, 3),    # 2 input channels per group, one output each
]
GEOMETRY = [  # kernel, stride, padding, output_padding, dilation (torch accepts each)
    (3, 1, 0, 0, 1),
    (3, 2, 1, 1, 1),
    ((2, 3), (2, 1), (1, 0), (1, 0), (1, 2)),
    (4, 3, 2, 2, 1),
    (3, (1, 2), (0, 1), (1, 1), 2),
]


def cross_check(layer: Any, module: Any, x: np.ndarray, rank: int) -> None:
    """y, dx, dw, db of ``layer`` against torch's ``module`` given the same float64 params."""
    _, params = layer.init(random.key(0), (None, *x.shape[1:]))
    params = tree.astype(params, np.float64)
    y, pullback = layer.vjp(params, x)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    dparams, dx = pullback(dy)
    perm = (3, 2, 0, 1) if rank == 2 else (2, 1, 0)
    to_ch = (0, 3, 1, 2) if rank == 2 else (0, 2, 1)
    back = (0, 2, 3, 1) if rank == 2 else (0, 2, 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["w"].transpose(perm)))
        module.bias.copy_(torch.tensor(params["b"]))
    xt = torch.tensor(x.transpose(to_ch), requires_grad=True)
    yt = module(xt)
    yt.backward(torch.tensor(dy.transpose(to_ch)))
    wback = (2, 3, 1, 0) if rank == 2 else (2, 1, 0)
    for what, got, want in (("y", y, yt.detach().numpy().transpose(back)),
                            ("dx", dx, xt.grad.numpy().transpose(back)),
                            ("dw", dparams["w"], module.weight.grad.numpy().transpose(wback)),
                            ("db", dparams["b"], module.bias.grad.numpy())):
        assert got.shape == want.shape, (layer.name, what)
        np.testing.assert_allclose(got, want, **TOL, err_msg=f"{layer.name}: {what}")


@pytest.mark.parametrize(("c", "out", "groups"), GROUPS)
def test_2d_matches_torch(c, out, groups):
    """Every geometry for each grouping (a loop: one test each would spend its time in
    pytest); each config named on failure."""
    x = np.random.default_rng(0).standard_normal((2, 4, 5, c))
    for kernel, stride, padding, op, dilation in GEOMETRY:
        layer = ConvTranspose2D(out, kernel, stride=stride, padding=padding,
                                output_padding=op, dilation=dilation, groups=groups)
        module = torch.nn.ConvTranspose2d(c, out, kernel, stride=stride, padding=padding,
                                          output_padding=op, dilation=dilation,
                                          groups=groups, dtype=torch.float64)
        cross_check(layer, module, x, 2)


@pytest.mark.parametrize(("c", "out", "groups"), GROUPS)
def test_1d_matches_torch(c, out, groups):
    x = np.random.default_rng(1).standard_normal((2, 6, c))
    for kernel, stride, padding, op, dilation in itertools.product((1, 3), (1, 2, 3), (0, 1),
                                                                    (0, 1), (1, 2)):
        if op >= stride and op >= dilation:
            continue  # torch refuses it, as funcdl (test_conv_transpose1d.py)
        layer = ConvTranspose1D(out, kernel, stride=stride, padding=padding,
                                output_padding=op, dilation=dilation, groups=groups)
        module = torch.nn.ConvTranspose1d(c, out, kernel, stride=stride, padding=padding,
                                          output_padding=op, dilation=dilation,
                                          groups=groups, dtype=torch.float64)
        cross_check(layer, module, x, 1)


def test_default_init_bound_is_torchs():
    """torch's fan_in on its weight (C, out/groups, kh, kw) is out/groups·kh·kw."""
    c, out, k, groups = 48, 8, 3, 4
    bound = 1 / math.sqrt(out // groups * k * k)
    torch.manual_seed(0)
    m = torch.nn.ConvTranspose2d(c, out, k, groups=groups)
    assert tuple(m.weight.shape) == (c, out // groups, k, k)
    _, params = ConvTranspose2D(out, k, groups=groups).init(random.key(0), (None, 3, 3, c))
    assert params["w"].transpose(3, 2, 0, 1).shape == tuple(m.weight.shape)
    for w in (m.weight.abs().max().item(), np.abs(params["w"]).max()):
        assert 0.99 * bound < w <= bound
    for b in (m.bias.abs().max().item(), np.abs(params["b"]).max()):
        assert b <= bound
