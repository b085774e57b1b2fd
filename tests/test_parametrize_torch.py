"""WeightNorm and SpectralNorm against torch.nn.utils.parametrizations' weight_norm and
spectral_norm, in float64: outputs and gradients (g, v, the weight, bias, input) of
Linear and Conv2d; spectral_norm's u, v after each of 3 training calls from the same
initial u, v, then in eval mode."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from funcdl import random  # noqa: E402
from funcdl.layers import Conv2D, ConvTranspose2D, Dense  # noqa: E402
from funcdl.layers.parametrize import SpectralNorm, WeightNorm  # noqa: E402

KEY = random.key(0)
P = torch.nn.utils.parametrizations
TOL = {"rtol": 1e-10, "atol": 1e-12}
NHWC = (0, 2, 3, 1)      # torch NCHW -> funcdl NHWC
KERNEL = (2, 3, 1, 0)    # torch (out, in, kh, kw) -> funcdl (kh, kw, in, out)


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def t(a):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64)


def n(a):
    return a.detach().numpy()


def torch_linear(params, conv=False):
    """A float64 torch Linear(4, 3), or Conv2d(3, 2, 3, padding=1), with funcdl's params."""
    m = (torch.nn.Conv2d(3, 2, 3, padding=1) if conv else torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        m.bias.copy_(t(params["b"]))
    return m


def weight_to_torch(a, conv):
    return a.transpose(3, 2, 0, 1) if conv else a.T   # the inverse of KERNEL, or .T


def weight_from_torch(a, conv):
    return a.transpose(*KERNEL) if conv else a.T


@pytest.mark.parametrize("conv", [False, True], ids=["Linear", "Conv2d"])
def test_weight_norm_vs_torch(conv):
    layer = WeightNorm(Conv2D(2, 3) if conv else Dense(3))
    in_shape = (None, 5, 5, 3) if conv else (None, 4)
    _, p = layer.init(KEY, in_shape)
    p = {k: a.astype(np.float64) * (1.3 if k == "g" else 1.0) for k, a in p.items()}
    m = P.weight_norm(torch_linear(p, conv))       # dim=0, torch's default
    par = m.parametrizations.weight
    with torch.no_grad():
        par.original0.copy_(t(weight_to_torch(p["g"], conv)))
        par.original1.copy_(t(weight_to_torch(p["v"], conv)))
    x = rand(2, 5, 5, 3) if conv else rand(6, 4)
    xt = t(x.transpose(0, 3, 1, 2) if conv else x).requires_grad_()
    y_t = m(xt)
    y, pullback = layer.vjp(p, x)
    np.testing.assert_allclose(y, n(y_t).transpose(*NHWC) if conv else n(y_t), **TOL)
    dy = rand(*y.shape, seed=2)
    y_t.backward(t(dy.transpose(0, 3, 1, 2) if conv else dy))
    grads, dx = pullback(dy)
    np.testing.assert_allclose(grads["g"], weight_from_torch(n(par.original0.grad), conv), **TOL)
    np.testing.assert_allclose(grads["v"], weight_from_torch(n(par.original1.grad), conv), **TOL)
    np.testing.assert_allclose(grads["b"], n(m.bias.grad), **TOL)
    np.testing.assert_allclose(dx, n(xt.grad).transpose(*NHWC) if conv else n(xt.grad), **TOL)


def test_weight_norm_initial_g_is_torch_norm():
    """funcdl's init sets g = ||v|| per output slice, as torch's registration does."""
    _, p = WeightNorm(Conv2D(2, 3)).init(KEY, (None, 5, 5, 3))
    m = torch.nn.Conv2d(3, 2, 3, padding=1).double()
    with torch.no_grad():
        m.weight.copy_(t(weight_to_torch(p["v"].astype(np.float64), True)))
    P.weight_norm(m)
    g_t = n(m.parametrizations.weight.original0)
    np.testing.assert_allclose(p["g"], weight_from_torch(g_t, True), rtol=1e-6)


def v_to_torch(v, conv):
    """funcdl's v over (kh, kw, in) -> torch's over (in, kh, kw)."""
    return v.reshape(3, 3, 3).transpose(2, 0, 1).ravel() if conv else v


@pytest.mark.parametrize("conv", [False, True], ids=["Linear", "Conv2d"])
def test_spectral_norm_vs_torch(conv):
    layer = SpectralNorm(Conv2D(2, 3) if conv else Dense(3), n_power_iterations=2)
    _, p, s = layer.init(KEY, (None, 5, 5, 3) if conv else (None, 4))
    p = {k: a.astype(np.float64) for k, a in p.items()}
    s = {k: a.astype(np.float64) for k, a in s.items()}
    m = torch_linear(p, conv)
    with torch.no_grad():
        m.weight.copy_(t(weight_to_torch(p["w"], conv)))
    P.spectral_norm(m, n_power_iterations=2)
    par = m.parametrizations.weight
    with torch.no_grad():
        par[0]._u.copy_(t(s["u"]))
        par[0]._v.copy_(t(v_to_torch(s["v"], conv)))
    for step, train in enumerate([True, True, True, False]):
        m.train(train)
        x = rand(2, 5, 5, 3, seed=step) if conv else rand(6, 4, seed=step)
        xt = t(x.transpose(0, 3, 1, 2) if conv else x).requires_grad_()
        y_t = m(xt)
        y, pullback, s = layer.vjp(p, x, state=s, train=train)
        np.testing.assert_allclose(y, n(y_t).transpose(*NHWC) if conv else n(y_t), **TOL)
        np.testing.assert_allclose(s["u"], n(par[0]._u), **TOL)
        np.testing.assert_allclose(v_to_torch(s["v"], conv), n(par[0]._v), **TOL)
        dy = rand(*y.shape, seed=10 + step)
        par.original.grad = m.bias.grad = None
        y_t.backward(t(dy.transpose(0, 3, 1, 2) if conv else dy))
        grads, dx = pullback(dy)
        np.testing.assert_allclose(grads["w"], weight_from_torch(n(par.original.grad), conv),
                                   **TOL)
        np.testing.assert_allclose(grads["b"], n(m.bias.grad), **TOL)
        np.testing.assert_allclose(dx, n(xt.grad).transpose(*NHWC) if conv else n(xt.grad),
                                   **TOL)


def test_spectral_norm_of_a_transposed_conv_defaults_to_torchs_dim_1():
    # torch: dim=1 (the out channels of ConvTranspose2d's (C, out, kh, kw)); funcdl's kernel
    # is (kh, kw, out, C), and SpectralNorm's default picks its axis -2

    layer = SpectralNorm(ConvTranspose2D(5, 3, stride=2))
    _, p, s = layer.init(KEY, (None, 4, 4, 2))
    p = {k: a.astype(np.float64) for k, a in p.items()}
    s = {k: a.astype(np.float64) for k, a in s.items()}
    m = torch.nn.ConvTranspose2d(2, 5, 3, stride=2).double()
    with torch.no_grad():
        m.weight.copy_(t(p["w"].transpose(3, 2, 0, 1)))  # (kh, kw, out, C) -> (C, out, kh, kw)
        m.bias.copy_(t(p["b"]))
    P.spectral_norm(m)
    par = m.parametrizations.weight
    with torch.no_grad():
        par[0]._u.copy_(t(s["u"]))
        par[0]._v.copy_(t(s["v"].reshape(3, 3, 2).transpose(2, 0, 1).ravel()))
    for step in range(3):
        x = rand(2, 4, 4, 2, seed=step)
        y, s = layer.apply(p, x, state=s, train=True)
        y_t = m(t(x.transpose(0, 3, 1, 2)))
        np.testing.assert_allclose(y, n(y_t).transpose(*NHWC), **TOL)
        np.testing.assert_allclose(s["u"], n(par[0]._u), **TOL)
