"""The torch.nn modules of funcdl/layers/{conv_transpose1d, bilinear, alpha_dropout, shrink,
lrn}.py against PyTorch in float64: forward, dx and dparams (autograd on a random
cotangent), torch's default init bounds, and the alpha dropout's affine map read off
torch's own output. Skipped where torch is not installed.

Layouts: funcdl is channels last (N, W, C) / (N, H, W, C), torch channels first; the
ConvTranspose1D kernel (k, out, C) is torch's (C, out, k) transposed (2, 1, 0).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from _torch_util import t64

from funcdl import random
from funcdl.layers.alpha_dropout import alpha_affine, apply_mask
from funcdl.layers.bilinear import Bilinear
from funcdl.layers.conv_transpose1d import ConvTranspose1D
from funcdl.layers.lrn import LocalResponseNorm
from funcdl.layers.shrink import GLU, Hardshrink, Softmin, Softshrink, Tanhshrink, Threshold

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}
RNG = np.random.default_rng(0)


def to64(tree: Any) -> Any:
    return {k: v.astype(np.float64) for k, v in tree.items()}


def grads_of(out: Any, dy: np.ndarray, *leaves: Any) -> list[np.ndarray]:
    out.backward(t64(dy))
    return [leaf.grad.numpy() for leaf in leaves]


# ---------------------------------------------------------------------------- ConvTranspose1D

GRID = list(itertools.product((1, 2, 3), (1, 2, 3), (0, 1, 2), (0, 1), (1, 2)))


@pytest.mark.parametrize("k,s,p,op,d", GRID)
def test_conv_transpose1d_matches_torch(k: int, s: int, p: int, op: int, d: int) -> None:
    if op >= s and op >= d:  # torch refuses it too (checked below)
        return
    n, w, c, out = 2, 5, 3, 4
    if (w - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1:
        return
    layer = ConvTranspose1D(out, k, stride=s, padding=p, output_padding=op, dilation=d)
    _, params = layer.init(random.key(1), (None, w, c))
    params = to64(params)
    x = RNG.normal(size=(n, w, c))
    y, pb = layer.vjp(params, x)
    dy = RNG.normal(size=y.shape)
    dparams, dx = pb(dy)
    xt, wt, bt = t64(x.transpose(0, 2, 1), True), t64(params["w"].transpose(2, 1, 0), True), \
        t64(params["b"], True)
    yt = F.conv_transpose1d(xt, wt, bt, stride=s, padding=p, output_padding=op, dilation=d)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 1), **TOL)
    gx, gw, gb = grads_of(yt, dy.transpose(0, 2, 1), xt, wt, bt)
    np.testing.assert_allclose(dx, gx.transpose(0, 2, 1), **TOL)
    np.testing.assert_allclose(dparams["w"], gw.transpose(2, 1, 0), **TOL)
    np.testing.assert_allclose(dparams["b"], gb, **TOL)


def test_conv_transpose1d_refuses_what_torch_refuses() -> None:
    with pytest.raises(RuntimeError):
        F.conv_transpose1d(t64(np.ones((1, 2, 4))), t64(np.ones((2, 3, 3))), stride=2,
                           output_padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose1D\(3, 3, stride=2, output_padding=2\)"):
        ConvTranspose1D(3, 3, stride=2, output_padding=2)


def test_conv_transpose1d_init_bound_is_torchs() -> None:
    out, k, c = 3, 4, 5
    _, params = ConvTranspose1D(out, k).init(random.key(0), (None, 6, c))
    bound = 1 / math.sqrt(out * k)  # torch: fan_in of its (C, out, k) weight is out·k
    tm = torch.nn.ConvTranspose1d(c, out, k)
    assert float(tm.weight.detach().abs().max()) <= bound
    assert float(tm.bias.detach().abs().max()) <= bound
    for v in params.values():
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.7 * bound


# ---------------------------------------------------------------------------- Bilinear

@pytest.mark.parametrize("lead,use_bias", [((4,), True), ((2, 3), False), ((0,), True)])
def test_bilinear_matches_torch(lead: tuple[int, ...], use_bias: bool) -> None:
    d1, d2, out = 3, 5, 4
    layer = Bilinear(out, use_bias=use_bias)
    _, params = layer.init(random.key(2), ((None, *lead[1:], d1), (None, *lead[1:], d2)))
    params = to64(params)
    x1, x2 = RNG.normal(size=(*lead, d1)), RNG.normal(size=(*lead, d2))
    y, pb = layer.vjp(params, (x1, x2))
    dy = RNG.normal(size=y.shape)
    dparams, (dx1, dx2) = pb(dy)
    t1, t2, wt = t64(x1, True), t64(x2, True), t64(params["w"], True)
    bt = t64(params["b"], True) if use_bias else None
    yt = F.bilinear(t1, t2, wt, bt)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    if not y.size:
        return
    got = grads_of(yt, dy, t1, t2, wt, *([bt] if use_bias else []))
    np.testing.assert_allclose(dx1, got[0], **TOL)
    np.testing.assert_allclose(dx2, got[1], **TOL)
    np.testing.assert_allclose(dparams["w"], got[2], **TOL)
    if use_bias:
        np.testing.assert_allclose(dparams["b"], got[3], **TOL)


def test_bilinear_init_bound_is_torchs() -> None:
    d1, d2, out = 9, 4, 6
    _, params = Bilinear(out).init(random.key(0), ((None, d1), (None, d2)))
    tm = torch.nn.Bilinear(d1, d2, out)
    assert tuple(tm.weight.shape) == params["w"].shape  # torch's (out, D1, D2) layout
    bound = 1 / math.sqrt(d1)
    assert float(tm.weight.detach().abs().max()) <= bound
    for v in params.values():
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.7 * bound


# ---------------------------------------------------------------------------- alpha dropout

@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("feature", [False, True])
def test_alpha_dropout_map_matches_torch(rate: float, feature: bool) -> None:
    """Torch's output at x = 0 and x = 1 under one seed gives its mask, its kept map
    ``a·x + b`` and its dropped value; funcdl's map at that mask must give torch's output
    on a random x (and the same constants)."""
    fn = F.feature_alpha_dropout if feature else F.alpha_dropout
    shape = (6, 5, 4, 7)  # NCHW for torch
    x = RNG.normal(size=shape)

    def run(v: np.ndarray) -> np.ndarray:
        torch.manual_seed(3)
        out: np.ndarray = fn(t64(v), p=rate, training=True).numpy()
        return out

    at0, at1, yt = run(np.zeros(shape)), run(np.ones(shape)), run(x)
    keep = at1 != at0
    assert keep.any() and (~keep).any()
    a, b, dropped = alpha_affine(rate)
    np.testing.assert_allclose(at1[keep] - at0[keep], a, **TOL)
    np.testing.assert_allclose(at0[keep], b, **TOL)
    np.testing.assert_allclose(at0[~keep], dropped, **TOL)
    nhwc = keep.transpose(0, 2, 3, 1)
    if feature:  # torch's mask is one draw per (n, c): funcdl's (N, 1, 1, C)
        assert (nhwc == nhwc[:, :1, :1, :]).all()
        nhwc = nhwc[:, :1, :1, :]
    y, scale = apply_mask(x.transpose(0, 2, 3, 1), nhwc, rate)
    np.testing.assert_allclose(y, yt.transpose(0, 2, 3, 1), **TOL)
    # torch's gradient is its mask times a, as the pullback's factor
    xt = t64(x, True)
    torch.manual_seed(3)
    fn(xt, p=rate, training=True).sum().backward()
    np.testing.assert_allclose(np.broadcast_to(scale, y.shape), xt.grad.numpy().transpose(
        0, 2, 3, 1), **TOL)


# ---------------------------------------------------------------------------- activations

CASES = [
    (Softshrink(), lambda t: F.softshrink(t, 0.5)),
    (Softshrink(1.25), lambda t: F.softshrink(t, 1.25)),
    (Softshrink(0.0), lambda t: F.softshrink(t, 0.0)),
    (Hardshrink(), lambda t: F.hardshrink(t, 0.5)),
    (Hardshrink(0.9), lambda t: F.hardshrink(t, 0.9)),
    (Tanhshrink(), F.tanhshrink),
    (Threshold(0.3, -1.5), lambda t: F.threshold(t, 0.3, -1.5)),
    (Threshold(-0.2, 4.0), lambda t: F.threshold(t, -0.2, 4.0)),
    (Softmin(), lambda t: F.softmin(t, dim=-1)),
    (Softmin(axis=1), lambda t: F.softmin(t, dim=1)),
    (GLU(), lambda t: F.glu(t, dim=-1)),
    (GLU(axis=1), lambda t: F.glu(t, dim=1)),
]


@pytest.mark.parametrize("layer,fn", CASES, ids=[c[0].name for c in CASES])
def test_activation_matches_torch(layer: Any, fn: Any) -> None:
    x = RNG.normal(size=(3, 4, 6)) * 2
    x[0, 0, :4] = [0.5, -0.5, 0.3, -0.2]  # the kinks of the defaults and thresholds
    y, pb = layer.vjp((), x)
    dy = RNG.normal(size=y.shape)
    _, dx = pb(dy)
    xt = t64(x, True)
    yt = fn(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, grads_of(yt, dy, xt)[0], **TOL)


@pytest.mark.parametrize("layer,fn", CASES[:8], ids=[c[0].name for c in CASES[:8]])
def test_elementwise_nan_and_inf_as_torch(layer: Any, fn: Any) -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e300])
    y, pb = layer.vjp((), x)
    _, dx = pb(np.ones_like(x))
    xt = t64(x, True)
    yt = fn(xt)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    gt = grads_of(yt, np.ones_like(x), xt)[0]
    np.testing.assert_array_equal(dx, gt)


# ---------------------------------------------------------------------------- LRN

@pytest.mark.parametrize("size,alpha,beta,k", [(1, 1e-4, 0.75, 1.0), (2, 0.3, 0.75, 1.0),
                                               (3, 0.5, 0.5, 2.0), (5, 1.0, 1.3, 0.7),
                                               (8, 0.2, 0.0, 1.0), (20, 0.9, 0.75, 1.5)])
def test_local_response_norm_matches_torch(size: int, alpha: float, beta: float,
                                           k: float) -> None:
    layer = LocalResponseNorm(size, alpha, beta, k)
    for shape in ((2, 3, 7), (2, 3, 2, 6)):
        x = RNG.normal(size=shape) * 2
        y, pb = layer.vjp((), x)
        dy = RNG.normal(size=y.shape)
        _, dx = pb(dy)
        order = (0, x.ndim - 1, *range(1, x.ndim - 1))
        back = tuple(np.argsort(order))
        xt = t64(x.transpose(order), True)
        yt = F.local_response_norm(xt, size, alpha, beta, k)
        np.testing.assert_allclose(y, yt.detach().numpy().transpose(back), **TOL)
        np.testing.assert_allclose(dx, grads_of(yt, dy.transpose(order), xt)[0].transpose(back),
                                   **TOL)
