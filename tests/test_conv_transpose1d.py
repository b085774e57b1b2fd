"""ConvTranspose1D (PyTorch's nn.ConvTranspose1d on (N, W, C), the rank-1 case of
ConvTranspose2D's builder): a naive loop reference, the height-1 ConvTranspose2D it equals,
w_init's (k, out, C), and its messages in 1-D words. Split from test_layers_torch_extra.py
(check_layer and the bad-input catalogue stay there); torch: test_layers_torch_extra_torch.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from funcdl import random
from funcdl.layers.conv_transpose import ConvTranspose2D
from funcdl.layers.conv_transpose1d import ConvTranspose1D
from funcdl.testing import check_vjp

KEY = random.key(0)
RNG = np.random.default_rng(7)
TOL = {"rtol": 1e-12, "atol": 1e-12}



def naive_conv_transpose1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, s: int, p: int,
                           op: int, d: int) -> np.ndarray:
    """The scatter, pixel by pixel: x[n, i] adds x·w[j] at full position i·s + j·d."""
    n, length, _ = x.shape
    k, out, _ = w.shape
    full = (length - 1) * s + d * (k - 1) + 1
    y = np.zeros((n, full + op, out))
    for nn in range(n):
        for i in range(length):
            for j in range(k):
                y[nn, i * s + j * d] += w[j] @ x[nn, i]
    return y[:, p:full + op - p] + b


@pytest.mark.parametrize("k,s,p,op,d", [(3, 1, 0, 0, 1), (3, 2, 1, 1, 1), (2, 3, 0, 2, 1),
                                        (3, 2, 2, 1, 2), (1, 2, 0, 1, 1)])
def test_conv_transpose1d_naive(k: int, s: int, p: int, op: int, d: int) -> None:
    layer = ConvTranspose1D(3, k, stride=s, padding=p, output_padding=op, dilation=d)
    _, params = layer.init(KEY, (None, 4, 2))
    params = {n: v.astype(np.float64) + RNG.normal(size=v.shape) for n, v in params.items()}
    x = RNG.normal(size=(2, 4, 2))
    y, pb = layer.vjp(params, x)
    ref = naive_conv_transpose1d(x, params["w"], params["b"], s, p, op, d)
    np.testing.assert_allclose(y, ref, **TOL)
    # the vjp as the forward's adjoint, by linearity: <dy, y(x) - b> = <dx, x>
    dy = RNG.normal(size=y.shape)
    (dparams, dx) = pb(dy)
    np.testing.assert_allclose(np.vdot(dy, y - params["b"]), np.vdot(dx, x), **TOL)
    np.testing.assert_allclose(dparams["b"], dy.sum((0, 1)), **TOL)
    np.testing.assert_allclose(np.vdot(dparams["w"], params["w"]), np.vdot(dy, y - params["b"]),
                               **TOL)


def test_conv_transpose1d_is_height_one_conv_transpose2d() -> None:
    one, two = ConvTranspose1D(3, 3, stride=2, padding=1), ConvTranspose2D(3, (1, 3), (1, 2),
                                                                           (0, 1))
    out1, p1 = one.init(KEY, (None, 5, 2))
    out2, p2 = two.init(KEY, (None, 1, 5, 2))
    assert out1 == (None, *out2[2:]) and p1["w"].shape == (3, 3, 2)
    np.testing.assert_array_equal(p1["w"], p2["w"][0])
    x = RNG.normal(size=(2, 5, 2)).astype(np.float32)
    y1, y2 = one.apply(p1, x), two.apply(p2, x[:, None])
    assert y1.dtype == np.float32
    np.testing.assert_array_equal(y1, y2[:, 0])
    g, dx = one.vjp(p1, x)[1](np.ones_like(y1))
    assert g["w"].shape == (3, 3, 2) and dx.shape == x.shape
    assert one.vjp(p1, x)[1](np.ones_like(y1), need_dx=False)[1] is None


def test_conv_transpose1d_w_init_gets_k_out_c() -> None:
    """w_init is called with the documented (k, out, C), as Conv1D's with (k, C, out): an
    init returning that array is the kernel (the old height-1 wrapper asked (1, k, out, C)
    and refused it), and the layer computes with it (the naive scatter)."""
    k, out, c = 3, 4, 2
    kernel = RNG.normal(size=(k, out, c)).astype(np.float32).astype(np.float64)
    seen = []

    def w_init(key: Any, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        seen.append(tuple(shape))
        return kernel.astype(dtype)

    layer = ConvTranspose1D(out, k, stride=2, padding=1, w_init=w_init)
    out_shape, params = layer.init(KEY, (None, 5, c))
    assert seen == [(k, out, c)] and out_shape == (None, 9, out)
    assert params["w"].dtype == np.float32 and params["w"].shape == (k, out, c)
    params = {n: v.astype(np.float64) for n, v in params.items()}
    np.testing.assert_array_equal(params["w"], kernel)
    x = RNG.normal(size=(2, 5, c))
    ref = naive_conv_transpose1d(x, kernel, params["b"], 2, 1, 0, 1)
    np.testing.assert_allclose(layer.apply(params, x), ref, **TOL)
    check_vjp(layer, params, x)


def test_conv_transpose1d_messages_read_as_1d() -> None:
    """The 1-D layer's own words: its name once (not the 2-D call behind it), no height
    axis, no pairs, the shape as given."""
    with pytest.raises(ValueError) as e:
        ConvTranspose1D(4, 3, stride=2, output_padding=2)
    assert str(e.value) == (
        "ConvTranspose1D(4, 3, stride=2, output_padding=2): output_padding must be smaller "
        "than the stride or the dilation (PyTorch's rule), got 2 with stride 2 and "
        "dilation 1")
    with pytest.raises(ValueError) as e:
        ConvTranspose1D(2, 3, padding="foo")
    assert str(e.value) == ("ConvTranspose1D(2, 3, padding='foo'): padding must be 'SAME', "
                            "'VALID' or an int >= 0, got 'foo'")
    with pytest.raises(TypeError, match=r"^ConvTranspose1D\(2, 3, padding=\(1, 2\)\): padding "
                                        r"must be an int >= 0, got \(1, 2\); a 1-D layer crops "
                                        r"the same at both ends"):
        ConvTranspose1D(2, 3, padding=(1, 2))
    with pytest.raises(ValueError, match=r"^ConvTranspose1D\(2, 3, stride=2, padding='same', "
                                         r"output_padding=1\): output_padding needs an int "
                                         r"padding \(torch's\), got output_padding=1 with"):
        ConvTranspose1D(2, 3, stride=2, padding="same", output_padding=1)
    with pytest.raises(ValueError) as e:
        ConvTranspose1D(2, 3).init(KEY, (None, 5, 0))
    assert str(e.value) == ("ConvTranspose1D(2, 3): the channel axis of in_shape must be a "
                            "known size > 0, got (None, 5, 0)")
    # (W - 1)·3 - 2·4 + 2·(3 - 1) + 1 >= 1 from W = 3 on
    narrow = ConvTranspose1D(2, 3, stride=3, padding=4, dilation=2)
    for call in (lambda: narrow.init(KEY, (None, 2, 3)),
                 lambda: narrow.apply(narrow.init(KEY, (None, 3, 3))[1], np.ones((1, 2, 3)))):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert msg.count("ConvTranspose1D") == 1 and "(N, >=3, C)" in msg and "(W - 1)" in msg
    assert narrow.init(KEY, (None, 3, 3))[0] == (None, 3, 2)
