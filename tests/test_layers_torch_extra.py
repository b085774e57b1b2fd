"""The torch.nn modules added in funcdl/layers/{conv_transpose1d, bilinear, alpha_dropout,
shrink, lrn}.py: end to end (check_layer: shapes, float32 kept, finite differences in
float64), against hand-written naive NumPy references (loops, so a wrong sign or factor
in the vectorised forms shows), the alpha dropout's moments, and the bad inputs each must
refuse with its own name. tests/test_layers_torch_extra_torch.py compares with PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from funcdl import random
from funcdl.layers.alpha_dropout import AlphaDropout, FeatureAlphaDropout, alpha_affine
from funcdl.layers.bilinear import Bilinear
from funcdl.layers.conv_transpose1d import ConvTranspose1D
from funcdl.layers.lrn import LocalResponseNorm
from funcdl.layers.shrink import GLU, Hardshrink, Softmin, Softshrink, Tanhshrink, Threshold
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
RNG = np.random.default_rng(7)
TOL = {"rtol": 1e-12, "atol": 1e-12}

LAYERS = [
    (Softshrink(), (None, 5)), (Hardshrink(0.3), (None, 2, 5)), (Tanhshrink(), (None, 4)),
    (Threshold(0.1, -2.0), (None, 4)), (Softmin(), (None, 4)), (Softmin(axis=1), (None, 3, 4)),
    (GLU(), (None, 6)), (GLU(axis=1), (None, 4, 3)),
    (LocalResponseNorm(3), (None, 2, 5)),
    (LocalResponseNorm(4, alpha=0.5, beta=0.6, k=2.0), (None, 2, 2, 7)),
    (Bilinear(3), ((None, 4), (None, 5))),
    (Bilinear(2, use_bias=False), ((None, 2, 4), (None, 2, 3))),
    (ConvTranspose1D(3, 3), (None, 5, 2)),
    (ConvTranspose1D(2, 3, stride=2, padding=1, output_padding=1, dilation=2), (None, 4, 3)),
    (ConvTranspose1D(2, 4, stride=2, padding="SAME", use_bias=False), (None, 4, 3)),
    (ConvTranspose1D(2, 2, stride=3, padding="VALID"), (None, 3, 1)),
]


@pytest.mark.parametrize("layer,shape", LAYERS, ids=[c[0].name for c in LAYERS])
def test_check_layer(layer: Any, shape: Any) -> None:
    """Declared shapes, float32 in -> float32 out and gradients, and the vjp against
    finite differences in float64."""
    check_layer(layer, shape)


@pytest.mark.parametrize("layer", [AlphaDropout(0.3), FeatureAlphaDropout(0.4)],
                         ids=lambda a: a.name)
@pytest.mark.parametrize("train", [True, False])
def test_check_layer_dropouts(layer: Any, train: bool) -> None:
    check_layer(layer, (None, 3, 4), train=train)
    x = RNG.normal(size=(3, 2, 4))
    check_vjp(layer, (), x, key=KEY, train=train)


# ---------------------------------------------------------------------------- Bilinear

def test_bilinear_naive() -> None:
    d1, d2, out = 3, 4, 2
    layer = Bilinear(out)
    _, params = layer.init(KEY, ((None, 2, d1), (None, 2, d2)))
    params = {n: v.astype(np.float64) for n, v in params.items()}
    w, b = params["w"], params["b"]
    x1, x2 = RNG.normal(size=(3, 2, d1)), RNG.normal(size=(3, 2, d2))
    y, pb = layer.vjp(params, [x1, x2])
    dy = RNG.normal(size=y.shape)
    dparams, dxs = pb(dy)
    assert isinstance(dxs, list)  # the input's form
    ref, dx1, dx2, dw = np.zeros(y.shape), np.zeros(x1.shape), np.zeros(x2.shape), np.zeros(
        w.shape)
    for m in np.ndindex(*y.shape[:-1]):
        for o in range(out):
            ref[m][o] = x1[m] @ w[o] @ x2[m] + b[o]
            dx1[m] += dy[m][o] * (w[o] @ x2[m])
            dx2[m] += dy[m][o] * (x1[m] @ w[o])
            dw[o] += dy[m][o] * np.outer(x1[m], x2[m])
    np.testing.assert_allclose(y, ref, **TOL)
    np.testing.assert_allclose(dxs[0], dx1, **TOL)
    np.testing.assert_allclose(dxs[1], dx2, **TOL)
    np.testing.assert_allclose(dparams["w"], dw, **TOL)
    np.testing.assert_allclose(dparams["b"], dy.sum((0, 1)), **TOL)


def test_bilinear_float32_and_init() -> None:
    layer = Bilinear(5)
    out, params = layer.init(KEY, ((None, 16), (4, 3)))
    assert out == (4, 5) and params["w"].shape == (5, 16, 3)
    assert all(v.dtype == np.float32 and np.abs(v).max() <= 1 / math.sqrt(16) for v in
               params.values())
    x = (RNG.normal(size=(4, 16)).astype(np.float32), RNG.normal(size=(4, 3)).astype(np.float32))
    y, pb = layer.vjp(params, x)
    g, (dx1, dx2) = pb(np.ones_like(y))
    assert {y.dtype, dx1.dtype, dx2.dtype, g["w"].dtype, g["b"].dtype} == {np.dtype(np.float32)}


# ---------------------------------------------------------------------------- alpha dropout

@pytest.mark.parametrize("rate", [0.1, 0.5])
@pytest.mark.parametrize("ctor", [AlphaDropout, FeatureAlphaDropout])
def test_alpha_dropout_keeps_moments(ctor: Any, rate: float) -> None:
    """On a zero-mean, unit-variance input the output keeps both (the point of the layer),
    with about ``rate`` of the entries (or channels) at the dropped value."""
    layer = ctor(rate)
    x = RNG.normal(size=(400, 4, 4, 64))
    y = layer.apply((), x, key=KEY, train=True)
    assert abs(y.mean()) < 0.02 and abs(y.var() - 1) < 0.03
    a, b, dropped = alpha_affine(rate)
    gone = y == dropped
    assert abs(gone.mean() - rate) < 0.02
    np.testing.assert_allclose(y[~gone], a * x[~gone] + b, **TOL)
    if ctor is FeatureAlphaDropout:  # one draw per (n, c)
        assert (gone == gone[:, :1, :1, :]).all()
    _, pb = layer.vjp((), x, key=KEY, train=True)
    dy = RNG.normal(size=x.shape)
    np.testing.assert_allclose(pb(dy)[1], np.where(gone, 0, a * dy), **TOL)


def test_alpha_affine_closed_form() -> None:
    """a, b from the rate: mean 0 and variance 1 of ``a·(x·m + α'(m - 1)) + b``-style
    mixtures, computed from the mixture's moments, not from the code's formula."""
    alpha = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
    for q in (0.05, 0.3, 0.8):
        a, b, dropped = alpha_affine(q)
        keep = 1 - q  # kept: a·x + b (x ~ N(0, 1)); dropped: the constant
        mean = keep * b + q * dropped
        second = keep * (a * a + b * b) + q * dropped * dropped
        assert abs(mean) < 1e-12 and abs(second - mean * mean - 1) < 1e-12
        assert abs(dropped - (b - a * alpha)) < 1e-12 and dropped < 0


@pytest.mark.parametrize("ctor", [AlphaDropout, FeatureAlphaDropout])
def test_alpha_dropout_keys_and_inference(ctor: Any) -> None:
    layer = ctor(0.2)
    x = RNG.normal(size=(3, 4, 5)).astype(np.float32)
    assert layer.apply((), x) is x and layer.apply((), x, train=False, key=KEY) is x
    y = layer.apply((), x, key=KEY, train=True)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, layer.apply((), x, key=KEY, train=True))
    assert not np.array_equal(y, layer.apply((), x, key=random.key(1), train=True))
    with pytest.raises(ValueError, match=rf"{ctor.__name__}\(0.2\): train=True needs a random key"):
        layer.apply((), x, train=True)
    with pytest.raises(ValueError, match=rf"{ctor.__name__}\(0.2\): train=True needs"):
        layer.vjp((), x, train=True)


# ---------------------------------------------------------------------------- activations

def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


NAIVE = [  # (layer, y(v), dy/dx(v)) per entry, written from the definitions
    (Softshrink(0.5), lambda v: v - 0.5 if v > 0.5 else v + 0.5 if v < -0.5 else 0.0,
     lambda v: float(abs(v) > 0.5)),
    (Hardshrink(0.7), lambda v: v if abs(v) > 0.7 else 0.0, lambda v: float(abs(v) > 0.7)),
    (Tanhshrink(), lambda v: v - math.tanh(v), lambda v: math.tanh(v) ** 2),
    (Threshold(0.2, -3.0), lambda v: v if v > 0.2 else -3.0, lambda v: float(v > 0.2)),
]


@pytest.mark.parametrize("layer,f,df", NAIVE, ids=[c[0].name for c in NAIVE])
def test_elementwise_naive(layer: Any, f: Any, df: Any) -> None:
    x = np.concatenate([RNG.normal(size=20) * 2, [0.5, -0.5, 0.7, -0.7, 0.2, 0.0, 30.0]])
    y, pb = layer.vjp((), x)
    dy = RNG.normal(size=x.shape)
    np.testing.assert_allclose(y, [f(v) for v in x], **TOL)
    np.testing.assert_allclose(pb(dy)[1], [g * df(v) for v, g in zip(x, dy)], **TOL)


def test_softmin_naive() -> None:
    x, dy = RNG.normal(size=(3, 4, 5)), RNG.normal(size=(3, 4, 5))
    y, pb = Softmin(axis=1).vjp((), x)
    e = np.exp(-x)
    ref = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(y, ref, **TOL)
    # the Jacobian of softmin along the axis: dy_i/dx_j = -y_i (δ_ij - y_j)
    dx = np.zeros_like(x)
    for n in range(3):
        for c in range(5):
            r = ref[n, :, c]
            jac = -(np.diag(r) - np.outer(r, r))
            dx[n, :, c] = jac.T @ dy[n, :, c]
    np.testing.assert_allclose(pb(dy)[1], dx, **TOL)
    np.testing.assert_allclose(Softmin().apply((), np.array([1e4, 0.0])), [0.0, 1.0])


def test_glu_naive() -> None:
    x, dy = RNG.normal(size=(2, 6, 3)), RNG.normal(size=(2, 3, 3))
    y, pb = GLU(axis=1).vjp((), x)
    ref, dx = np.zeros((2, 3, 3)), np.zeros_like(x)
    for n, i, c in np.ndindex(2, 3, 3):
        a, b = x[n, i, c], x[n, i + 3, c]
        ref[n, i, c] = a * sig(b)
        dx[n, i, c] = dy[n, i, c] * sig(b)
        dx[n, i + 3, c] = dy[n, i, c] * a * sig(b) * (1 - sig(b))
    np.testing.assert_allclose(y, ref, **TOL)
    np.testing.assert_allclose(pb(dy)[1], dx, **TOL)
    assert GLU().init(KEY, (None, 3, 8))[0] == (None, 3, 4)


def test_activations_float32() -> None:
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    for layer in (Softshrink(), Hardshrink(), Tanhshrink(), Threshold(0.0, 1.0), Softmin(),
                  GLU(), LocalResponseNorm(2)):
        xx = x[:, None] if layer.name.startswith("Local") else x
        y, pb = layer.vjp((), xx)
        assert y.dtype == np.float32 and pb(np.ones_like(y))[1].dtype == np.float32, layer
        assert layer.apply((), xx.astype(int)).dtype == np.float32, layer  # ints as float32


# ---------------------------------------------------------------------------- LRN

def naive_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    c = x.shape[-1]
    y = np.zeros_like(x)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c, i + (size - 1) // 2 + 1)
        d = k + alpha / size * (x[..., lo:hi] ** 2).sum(-1)
        y[..., i] = x[..., i] / d ** beta
    return y


@pytest.mark.parametrize("size,alpha,beta,k", [(1, 0.3, 0.75, 1.0), (2, 0.5, 0.5, 2.0),
                                               (5, 1.0, 1.3, 0.7), (4, 0.2, 0.75, 1.0),
                                               (12, 0.9, 0.75, 1.5)])
def test_lrn_naive(size: int, alpha: float, beta: float, k: float) -> None:
    x = RNG.normal(size=(2, 3, 7)) * 2
    layer = LocalResponseNorm(size, alpha, beta, k)
    y, pb = layer.vjp((), x)
    np.testing.assert_allclose(y, naive_lrn(x, size, alpha, beta, k), **TOL)
    # dx by central differences of the naive reference, entry by entry
    dy = RNG.normal(size=x.shape)
    dx, eps = np.zeros_like(x), 1e-6
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        dx[idx] = np.vdot(dy, naive_lrn(x + e, size, alpha, beta, k)
                          - naive_lrn(x - e, size, alpha, beta, k)) / (2 * eps)
    np.testing.assert_allclose(pb(dy)[1], dx, rtol=1e-7, atol=1e-8)


# ---------------------------------------------------------------------------- bad inputs

X3 = np.ones((2, 4, 3), np.float32)
BAD = [
    (lambda: Softshrink(-0.1), ValueError, r"Softshrink: lambd .*>= 0.*got -0.1"),
    (lambda: Hardshrink(-1), ValueError, r"Hardshrink: lambd .*>= 0"),
    (lambda: Threshold("a", 1.0), TypeError, r"Threshold: threshold must be a real"),
    (lambda: AlphaDropout(1.0), ValueError, r"AlphaDropout: rate .*in \[0, 1\), got 1.0"),
    (lambda: FeatureAlphaDropout(-0.1), ValueError, r"FeatureAlphaDropout: rate"),
    (lambda: LocalResponseNorm(0), ValueError, r"LocalResponseNorm: size .*>= 1.*got 0"),
    (lambda: GLU().apply((), np.ones((2, 5))), ValueError,
     r"GLU\(axis=-1\): .*even size, got size 5 \(input shape \(2, 5\)\)"),
    (lambda: GLU(axis=1).init(KEY, (None, 3, 2)), ValueError, r"GLU\(axis=1\): .*size 3"),
    (lambda: GLU(axis=2).apply((), np.ones((2, 4))), ValueError, r"GLU\(axis=2\): axis 2 is out"),
    (lambda: Softmin(axis=3).init(KEY, (None, 4)), ValueError, r"Softmin\(axis=3\): axis 3"),
    (lambda: Softshrink().apply((), (X3, X3)), TypeError, r"Softshrink\(\): the input must be "
     r"one array, got a tuple of 2"),
    (lambda: LocalResponseNorm(3).apply((), np.ones((2, 4))), ValueError,
     r"LocalResponseNorm\(3\): expected an input \(N, \.\.\., C\) of rank >= 3.*got "
     r"shape \(2, 4\)"),
    (lambda: AlphaDropout(0.5).apply((), (X3, X3), key=KEY, train=True), TypeError,
     r"AlphaDropout\(0.5\): the input must be one array"),
    (lambda: FeatureAlphaDropout(0.5).apply((), np.ones(3), key=KEY, train=True), ValueError,
     r"FeatureAlphaDropout\(0.5\): expected an input \(N, \.\.\., C\) of rank >= 2"),
    (lambda: Bilinear(2).init(KEY, (None, 3)), TypeError,
     r"Bilinear\(2\): in_shape must be a pair of shapes"),
    (lambda: Bilinear(2).init(KEY, ((None, 3), (None, 2, 4))), ValueError,
     r"Bilinear\(2\): x1 and x2 must have the same leading axes, got shapes"),
    (lambda: Bilinear(2).init(KEY, ((5, 3), (4, 4))), ValueError, r"same leading axes"),
    (lambda: Bilinear(0), ValueError, r"Bilinear\(0\): out must be >= 1"),
    (lambda: ConvTranspose1D(2, (1, 3)), TypeError,
     r"ConvTranspose1D\(2, \(1, 3\)\): kernel must be an int.*not a pair"),
    (lambda: ConvTranspose1D(2, 3, padding=(1, 1)), TypeError,
     r"ConvTranspose1D\(2, 3, padding=\(1, 1\)\): padding must be an int"),
    (lambda: ConvTranspose1D(2, 3, padding="same", output_padding=1, stride=2), ValueError,
     r"ConvTranspose1D\(.*\): output_padding needs an int padding"),
    (lambda: ConvTranspose1D(2, 3).init(KEY, (None, 4, 4, 3)), ValueError,
     r"ConvTranspose1D\(2, 3\): expected an input shape \(N, W, C\) of rank 3, got "
     r"\(None, 4, 4, 3\)"),
    (lambda: ConvTranspose1D(2, 1, padding=2).init(KEY, (None, 3, 3)), ValueError,
     r"ConvTranspose1D\(2, 1, padding=2\): expected an input of shape \(N, >=5, C\).*got "
     r"shape \(None, 3, 3\)"),
]


@pytest.mark.parametrize("call,kind,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs(call: Any, kind: type, msg: str) -> None:
    with pytest.raises(kind, match=msg):
        call()


def test_bad_inputs_at_call() -> None:
    bl = Bilinear(2)
    _, bp = bl.init(KEY, ((None, 3), (None, 4)))
    x1, x2 = np.ones((5, 3), np.float32), np.ones((5, 4), np.float32)
    with pytest.raises(TypeError, match=r"Bilinear\(2\): expected a pair \(x1, x2\) of arrays "
                                        r"\(\.\.\., 3\) and \(\.\.\., 4\), got one array of "
                                        r"shape \(5, 3\)"):
        bl.apply(bp, x1)
    with pytest.raises(ValueError, match=r"Bilinear\(2\): expected x1 \(\.\.\., 3\) and x2 .*"
                                         r"got shapes \(5, 3\) and \(4, 4\)"):
        bl.apply(bp, (x1, x2[:4]))
    with pytest.raises(ValueError, match=r"got shapes \(5, 3\) and \(5, 3\)"):
        bl.apply(bp, (x1, x1))
    ct = ConvTranspose1D(2, 3, stride=2)
    _, cp = ct.init(KEY, (None, 4, 3))
    with pytest.raises(ValueError, match=r"ConvTranspose1D\(2, 3, stride=2\): expected input "
                                         r"\(N, W, 3\) as the params were initialised, got "
                                         r"shape \(2, 1, 4, 3\)"):
        ct.apply(cp, X3[:, None])
    with pytest.raises(TypeError, match=r"ConvTranspose1D\(2, 3, stride=2\): the input must "
                                        r"be one array"):
        ct.apply(cp, (X3, X3))
    _, pb = ct.vjp(cp, X3)
    narrow = ConvTranspose1D(2, 1, padding=2)
    _, npar = narrow.init(KEY, (None, 5, 3))
    with pytest.raises(ValueError, match=r"ConvTranspose1D\(2, 1, padding=2\): expected an "
                                         r"input of shape \(N, >=5, C\).*got shape \(2, 4, 3\)"):
        narrow.apply(npar, X3)
    with pytest.raises(ValueError, match=r"ConvTranspose1D\(2, 3, stride=2\): pullback "
                                         r"expected dy of shape \(2, 9, 2\)"):
        pb(np.ones((2, 1, 9, 2)))
    with pytest.raises(ValueError, match=r"ConvTranspose1D\(2, 3, stride=2\): params\['w'\] "
                                         r"must have shape \(3, 2, in\)"):
        ct.apply({**cp, "w": cp["w"][None]}, X3)
