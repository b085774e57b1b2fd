"""The activations of activations_extra.py, PReLU and RMSNorm against PyTorch in float64:
forward and input gradient on a grid through every kink and out to ±1e300, ±inf and NaN;
PReLU's weight gradient; RMSNorm's forward and gradients of x and weight."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from funcdl import random  # noqa: E402
from funcdl.layers.activations_extra import (  # noqa: E402
    CELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LogSigmoid,
    Mish,
    PReLU,
    ReLU6,
    Softsign,
)
from funcdl.layers.rmsnorm import RMSNorm  # noqa: E402

KINKS = [-6.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 6.0]
GRID = np.unique(np.concatenate([
    np.linspace(-40, 40, 401), KINKS, np.nextafter(KINKS, np.inf), np.nextafter(KINKS, -np.inf),
    [-800.0, -1e30, -1e300, 800.0, 1e30, 1e300, -np.inf, np.inf]]))
GRID = np.append(GRID, np.nan)

CASES = [  # (ours, torch's, gradient rtol)
    (ReLU6, F.relu6, 1e-10), (Hardtanh, F.hardtanh, 1e-10),
    (lambda: Hardtanh(-2.0, 0.5), lambda x: F.hardtanh(x, -2.0, 0.5), 1e-10),
    (lambda: Hardtanh(0.5, 0.5), lambda x: F.hardtanh(x, 0.5, 0.5), 1e-10),
    (lambda: Hardtanh(0.0, np.inf), lambda x: F.hardtanh(x, 0.0, np.inf), 1e-10),
    # PyTorch's float64 slope is float32's 1/6 (0.1666666716...), 3e-8 from the exact 1/6
    (Hardsigmoid, F.hardsigmoid, 1e-7), (Hardswish, F.hardswish, 1e-10), (Mish, F.mish, 1e-10),
    (SELU, F.selu, 1e-10), (CELU, F.celu, 1e-10),
    # PyTorch's float64 slope e^(x/alpha) carries a float32 rounding of its constants: 3e-8
    # relative at x = -1, 5e-6 at x = -40 (test_activations_extra.py checks ours by hand)
    (lambda: CELU(0.3), lambda x: F.celu(x, 0.3), 1e-5),
    (lambda: CELU(-2.0), lambda x: F.celu(x, -2.0), 1e-10), (Softsign, F.softsign, 1e-10),
    (LogSigmoid, F.logsigmoid, 1e-10),
]
IDS = ["ReLU6", "Hardtanh", "Hardtanh(-2,.5)", "Hardtanh(.5,.5)", "Hardtanh(0,inf)",
       "Hardsigmoid", "Hardswish", "Mish", "SELU", "CELU", "CELU(.3)", "CELU(-2)", "Softsign",
       "LogSigmoid"]


def _torch(fn, x, dy):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(xt)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize(("make", "fn", "rtol"), CASES, ids=IDS)
def test_elementwise_against_torch(make, fn, rtol):
    dy = np.cos(np.arange(GRID.size)) + 1.5  # positive: no inf·(-0) sign games at ±inf
    y, pullback = make().vjp((), GRID)
    dx = pullback(dy)[1]
    ty, tdx = _torch(fn, GRID, dy)
    np.testing.assert_allclose(y, ty, rtol=1e-13, atol=1e-300)
    if make is Softsign:  # at ±inf ours is 0, the limit; PyTorch's autograd gives inf/inf
        assert (dx[np.isinf(GRID)] == 0).all() and np.isnan(tdx[np.isinf(GRID)]).all()
        dx, tdx = dx[~np.isinf(GRID)], tdx[~np.isinf(GRID)]
    # Softsign: PyTorch's slope 1/(1+|x|) - |x|/(1+|x|)² cancels to 0 or noise (1.8e-46
    # at x = -1e30) where ours, 1/(1+|x|)², is 1e-60
    np.testing.assert_allclose(dx, tdx, rtol=rtol, atol=1e-45 if make is Softsign else 1e-300)


@pytest.mark.parametrize(("c", "shape"), [(1, (3, 5)), (1, (2, 3, 4)), (4, (2, 3, 5, 4)),
                                          (3, (6, 3))])
def test_prelu_against_torch(c, shape):
    x = random.normal(random.key(0), shape, np.float64) * 3
    x.reshape(-1)[:4] = [0.0, -np.inf, np.inf, -1e300]
    a = np.linspace(-0.7, 1.8, c)
    dy = random.normal(random.key(1), shape, np.float64)
    y, pullback = PReLU(c).vjp({"a": a}, x)
    grads, dx = pullback(dy)
    # PyTorch's channel axis is 1: ours (last) moved there
    xt = torch.tensor(np.moveaxis(x, -1, 1) if c > 1 else x, requires_grad=True)
    w = torch.tensor(a, requires_grad=True)
    yt = F.prelu(xt, w)
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1) if c > 1 else dy))
    back = (lambda t: np.moveaxis(t.detach().numpy(), 1, -1)) if c > 1 else (
        lambda t: t.detach().numpy())
    np.testing.assert_allclose(y, back(yt), rtol=1e-14)
    np.testing.assert_allclose(dx, back(xt.grad), rtol=1e-14)
    np.testing.assert_allclose(grads["a"], w.grad.numpy(), rtol=1e-10)  # ±inf where -inf


@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(("shape", "loc"), [((4, 6), 0.0), ((2, 3, 5), 5.0), ((3, 1), -2.0),
                                            ((2, 8), 1e-9)])
def test_rmsnorm_against_torch(eps, affine, shape, loc):
    c = shape[-1]
    x = random.normal(random.key(0), shape, np.float64) + loc
    scale = random.normal(random.key(1), (c,), np.float64)
    dy = random.normal(random.key(2), shape, np.float64)
    layer = RMSNorm(eps=eps, elementwise_affine=affine)
    params = {"scale": scale} if affine else ()
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    m = torch.nn.RMSNorm(c, eps=eps, elementwise_affine=affine, dtype=torch.float64)
    if affine:
        with torch.no_grad():
            m.weight.copy_(torch.tensor(scale))
    xt = torch.tensor(x, requires_grad=True)
    yt = m(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    if affine:
        np.testing.assert_allclose(grads["scale"], m.weight.grad.numpy(), rtol=1e-10,
                                   atol=1e-13)
