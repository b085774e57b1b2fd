"""Forward and backward against PyTorch in float64: convolutions, pools, Dense, softmaxes and
every loss with every reduction (activations, norms, Embedding and the optimizers have their
own cross-checks beside their tests). Skipped where torch is not installed.

funcdl is NHWC with HWIO kernels; torch is NCHW with OIHW kernels. Padding is given to
torch explicitly (``F.pad``), so "SAME" is checked against the TensorFlow/JAX rule it
follows: ``total = max((out - 1)·s + (k - 1)·d + 1 - n, 0)``, the odd pixel after.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _torch_util import same_pads, t64

import funcdl as fd
from funcdl import layers as L
from funcdl import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}


def ours(layer: L.Layer, x: np.ndarray, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Params, output, and (dparams, dx) for a fixed random cotangent."""
    _, params = layer.init(fd.random.key(seed), (None, *x.shape[1:]))
    params = fd.tree.astype(params, np.float64)
    y, pullback = fd.vjp(layer, params, x)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    dparams, dx = pullback(dy)
    return params, y, dy, (dparams, dx)


# ---------------------------------------------------------------------------- convolutions

CONV2D = [  # kernel, stride, padding (ours), dilation, (h, w, c), out
    ((3, 3), (1, 1), "SAME", (1, 1), (7, 6, 3), 4),
    ((3, 3), (2, 2), "SAME", (1, 1), (8, 7, 2), 3),
    ((4, 2), (2, 1), "SAME", (1, 1), (9, 6, 2), 2),     # even kernel: the odd pixel after
    ((3, 3), (1, 2), "VALID", (2, 1), (9, 8, 2), 3),
    ((2, 3), (1, 1), ((1, 0), (2, 1)), (1, 2), (6, 7, 3), 2),
    ((1, 1), (2, 2), 1, (1, 1), (5, 5, 4), 3),
    ((3, 3), (2, 1), "SAME", (1, 2), (7, 9, 6), 5),     # more channels than the few
]


@pytest.mark.parametrize("kernel, stride, padding, dilation, hwc, out", CONV2D)
def test_conv2d_matches_torch(kernel, stride, padding, dilation, hwc, out, conv_path):
    layer = L.Conv2D(out, kernel, stride=stride, padding=padding, dilation=dilation)
    x = np.random.default_rng(0).standard_normal((2, *hwc))
    params, y, dy, (dp, dx) = ours(layer, x)
    if padding == "SAME":
        pads = [same_pads(n, k, s, d) for n, k, s, d in zip(hwc, kernel, stride, dilation)]
    elif padding == "VALID":
        pads = [(0, 0), (0, 0)]
    elif isinstance(padding, int):
        pads = [(padding, padding)] * 2
    else:
        pads = list(padding)
    xt = t64(x.transpose(0, 3, 1, 2), grad=True)
    wt = t64(params["w"].transpose(3, 2, 0, 1), grad=True)
    bt = t64(params["b"], grad=True)
    xp = F.pad(xt, (*pads[1], *pads[0]))
    yt = F.conv2d(xp, wt, bt, stride=stride, dilation=dilation)
    yt.backward(t64(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dp["w"], wt.grad.numpy().transpose(2, 3, 1, 0), **TOL)
    np.testing.assert_allclose(dp["b"], bt.grad.numpy(), **TOL)


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (3, 1, "SAME", 1), (4, 2, "SAME", 1), (3, 2, "VALID", 2), (2, 1, (2, 1), 1)])
def test_conv1d_matches_torch(kernel, stride, padding, dilation, conv_path):
    layer = L.Conv1D(3, kernel, stride=stride, padding=padding, dilation=dilation)
    x = np.random.default_rng(1).standard_normal((2, 9, 2))
    params, y, dy, (dp, dx) = ours(layer, x)
    pads = (same_pads(9, kernel, stride, dilation) if padding == "SAME" else
            (0, 0) if padding == "VALID" else padding)
    xt = t64(x.transpose(0, 2, 1), grad=True)
    wt = t64(params["w"].transpose(2, 1, 0), grad=True)
    bt = t64(params["b"], grad=True)
    yt = F.conv1d(F.pad(xt, pads), wt, bt, stride=stride, dilation=dilation)
    yt.backward(t64(dy.transpose(0, 2, 1)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 1), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 1), **TOL)
    np.testing.assert_allclose(dp["w"], wt.grad.numpy().transpose(2, 1, 0), **TOL)
    np.testing.assert_allclose(dp["b"], bt.grad.numpy(), **TOL)


# ---------------------------------------------------------------------------- pools

POOLS = [  # window, stride, padding (symmetric, as torch's), (h, w)
    (2, None, 0, (6, 8)), (3, 2, 1, (7, 6)), ((3, 2), (1, 2), (1, 0), (5, 7)), (2, 1, 1, (4, 5))]


@pytest.mark.parametrize("window, stride, padding, hw", POOLS)
@pytest.mark.parametrize("kind", ["max", "avg", "avg-exclude-pad"])
def test_pools_match_torch(window, stride, padding, hw, kind):
    if kind == "max":
        layer = L.MaxPool2D(window, stride, padding=padding)
    else:
        layer = L.AvgPool2D(window, stride, padding=padding,
                            count_include_pad=kind == "avg")
    # distinct values: the maximum of every window is unique, so its gradient is defined
    x = np.random.default_rng(2).permutation(2 * math.prod(hw) * 3).reshape(2, *hw, 3) / 7.0
    _, y, dy, (_, dx) = ours(layer, x)
    xt = t64(x.transpose(0, 3, 1, 2), grad=True)
    if kind == "max":
        yt = F.max_pool2d(xt, window, stride or window, padding)
    else:
        yt = F.avg_pool2d(xt, window, stride or window, padding,
                          count_include_pad=kind == "avg")
    yt.backward(t64(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **TOL)


@pytest.mark.parametrize(("seed", "nan", "inf"), [(3, 0.0, 0.7), (4, 0.3, 0.2)],
                         ids=["-inf", "nan"])
@pytest.mark.parametrize("window, stride, padding, hw", POOLS)
def test_max_pool_over_minus_inf_and_nan_matches_torch(window, stride, padding, hw, seed, nan,
                                                       inf):
    # windows of -inf only send dy to their first real cell, never to padding; a NaN is its
    # window's maximum, the last one where several: dy goes to it
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *hw, 3))
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    x[rng.random(x.shape) < inf] = -np.inf
    y, pullback = L.MaxPool2D(window, stride, padding=padding).vjp((), x)
    dy = rng.standard_normal(y.shape)
    xt = t64(x.transpose(0, 3, 1, 2), grad=True)
    yt = F.max_pool2d(xt, window, stride or window, padding)
    yt.backward(t64(dy.transpose(0, 3, 1, 2)))
    assert not nan or np.isnan(y).any()
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    # overlapping windows sum their shares in another order than torch: the last bit
    np.testing.assert_allclose(pullback(dy)[1], xt.grad.numpy().transpose(0, 2, 3, 1), **TOL)


@pytest.mark.parametrize("window, stride, pad", [(2, 2, 0), (3, 2, 1)])
def test_cnn_with_relu_run_after_the_pool_matches_torch(window, stride, pad):
    # Sequential runs each ReLU before a MaxPool2D after it (layers/_fusion.py)
    model = L.Sequential(L.Conv2D(3, 3), L.ReLU(), L.MaxPool2D(window, stride, pad),
                         L.Conv2D(2, 2, padding="VALID"), L.ReLU(), L.MaxPool2D(2))
    x = np.random.default_rng(5).standard_normal((2, 9, 8, 2))
    params, y, dy, (grads, dx) = ours(model, x)
    w1, b1 = t64(params[0]["w"].transpose(3, 2, 0, 1), True), t64(params[0]["b"], True)
    w2, b2 = t64(params[3]["w"].transpose(3, 2, 0, 1), True), t64(params[3]["b"], True)
    xt = t64(x.transpose(0, 3, 1, 2), grad=True)
    h = F.max_pool2d(F.relu(F.conv2d(xt, w1, b1, padding=1)), window, stride, pad)
    yt = F.max_pool2d(F.relu(F.conv2d(h, w2, b2)), 2)
    yt.backward(t64(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **TOL)
    for g, (w, b) in ((grads[0], (w1, b1)), (grads[3], (w2, b2))):
        np.testing.assert_allclose(g["w"], w.grad.numpy().transpose(2, 3, 1, 0), **TOL)
        np.testing.assert_allclose(g["b"], b.grad.numpy(), **TOL)


def test_global_avg_pool_matches_torch():
    x = np.random.default_rng(3).standard_normal((2, 5, 4, 3))
    _, y, dy, (_, dx) = ours(L.GlobalAvgPool(), x)
    xt = t64(x, grad=True)
    yt = xt.mean(dim=(1, 2))
    yt.backward(t64(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)


# ---------------------------------------------------------------------------- dense, softmax

def test_dense_matches_torch_linear_on_a_3d_input():
    x = np.random.default_rng(4).standard_normal((2, 3, 5))
    params, y, dy, (dp, dx) = ours(L.Dense(4), x)
    xt, wt, bt = t64(x, True), t64(params["w"].T, True), t64(params["b"], True)
    yt = F.linear(xt, wt, bt)
    yt.backward(t64(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dp["w"], wt.grad.numpy().T, **TOL)
    np.testing.assert_allclose(dp["b"], bt.grad.numpy(), **TOL)


def test_repeat_matches_one_torch_module_called_three_times():
    x = np.random.default_rng(5).standard_normal((4, 5))
    params, y, dy, (dp, dx) = ours(L.Repeat(L.Sequential(L.Dense(5), L.Tanh()), 3), x)
    dense = params[0]
    xt, wt, bt = t64(x, True), t64(dense["w"].T, True), t64(dense["b"], True)
    yt = xt
    for _ in range(3):  # one module, called three times: its grads accumulate
        yt = torch.tanh(F.linear(yt, wt, bt))
    yt.backward(t64(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dp[0]["w"], wt.grad.numpy().T, **TOL)
    np.testing.assert_allclose(dp[0]["b"], bt.grad.numpy(), **TOL)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmaxes_match_torch(log, axis):
    x = 5 * np.random.default_rng(5).standard_normal((3, 4, 5))
    layer = L.LogSoftmax(axis) if log else L.Softmax(axis)
    _, y, dy, (_, dx) = ours(layer, x)
    xt = t64(x, True)
    yt = (F.log_softmax if log else F.softmax)(xt, dim=axis)
    yt.backward(t64(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)


ACTIVATIONS = [  # funcdl layer, torch.nn.functional call
    ("softplus", L.Softplus(), lambda x: F.softplus(x)),
    ("softplus-beta", L.Softplus(beta=2.0, threshold=5.0),
     lambda x: F.softplus(x, beta=2.0, threshold=5.0)),
    ("elu", L.ELU(), lambda x: F.elu(x)), ("gelu", L.GELU(), lambda x: F.gelu(x)),
    ("gelu-tanh", L.GELU(approximate=True), lambda x: F.gelu(x, approximate="tanh")),
    ("silu", L.SiLU(), lambda x: F.silu(x)),
    ("leaky_relu", L.LeakyReLU(), lambda x: F.leaky_relu(x)),
    ("sigmoid", L.Sigmoid(), torch.sigmoid), ("tanh", L.Tanh(), torch.tanh),
]


@pytest.mark.parametrize("name, layer, reference", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activations_match_torch_over_a_wide_range(name, layer, reference):
    # -40..40 crosses Softplus's linear part (x > 20; 2x > 5 for beta 2) and the tails.
    x = np.concatenate([np.linspace(-40.0, 40.0, 161), [2.5, 2.5 + 1e-9, 20.0, 20.0 + 1e-9]])
    x = x.reshape(1, -1)
    _, y, dy, (_, dx) = ours(layer, x)
    xt = t64(x, True)
    yt = reference(xt)
    yt.backward(t64(dy))
    # atol: in the flat tails (tanh, ELU) dx is 1 - y² or y + alpha, ~1e-17 from torch's.
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-11, atol=1e-15)


# ---------------------------------------------------------------------------- losses

def _probs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    p = rng.uniform(0.02, 0.98, shape)
    p.flat[:2] = [0.0, 1.0]  # torch clamps the logs at -100; so must we
    return p


LOSSES: list[tuple[str, Any, Any]] = [
    ("mse", losses.mse, lambda p, t, r: F.mse_loss(p, t, reduction=r)),
    ("bce", losses.bce, lambda p, t, r: F.binary_cross_entropy(p, t, reduction=r)),
    ("bce_with_logits", losses.bce_with_logits,
     lambda p, t, r: F.binary_cross_entropy_with_logits(p, t, reduction=r)),
    ("huber", losses.huber, lambda p, t, r: F.huber_loss(p, t, reduction=r, delta=1.0)),
    ("softmax_cross_entropy/int", losses.softmax_cross_entropy,
     lambda p, t, r: F.cross_entropy(p, t, reduction=r)),
    ("softmax_cross_entropy/probs", losses.softmax_cross_entropy,
     lambda p, t, r: F.cross_entropy(p, t, reduction=r)),
]


@pytest.mark.parametrize("name, loss, reference", LOSSES, ids=[n for n, _, _ in LOSSES])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch(name, loss, reference, reduction):
    rng = np.random.default_rng(6)
    shape = (6, 4)
    if name == "bce":
        pred, target = _probs(rng, shape), rng.uniform(0, 1, shape)
        target.flat[:2] = [1.0, 0.0]  # the clamped terms count
    elif name == "bce_with_logits":
        pred, target = 30 * rng.standard_normal(shape), rng.uniform(0, 1, shape)
    elif name.endswith("/int"):
        pred, target = 4 * rng.standard_normal(shape), rng.integers(0, 4, 6)
    elif name.endswith("/probs"):
        pred, target = 4 * rng.standard_normal(shape), rng.dirichlet(np.ones(4), 6)
    else:  # huber: residuals on both sides of delta = 1
        pred, target = 2 * rng.standard_normal(shape), rng.standard_normal(shape)
    value, pullback = loss.vjp(pred, target, reduction=reduction)
    g = rng.standard_normal(np.shape(value)) if reduction == "none" else 1.7
    dpred = pullback(g)
    pt = t64(pred, True)
    tt = torch.tensor(target) if target.dtype.kind == "i" else t64(target)
    vt = reference(pt, tt, reduction)
    vt.backward(t64(g) if reduction == "none" else torch.tensor(1.7, dtype=torch.float64))
    np.testing.assert_allclose(value, vt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dpred, pt.grad.numpy(), **TOL)
