"""check_layer's rows-independence check on an ill-conditioned layer of one's own: a
Fourier-feature embedding sin(2π·x·B) with |B| ~ 10 (Tancik et al.'s scale) failed it
with "a row of the output depends on the other rows", because BLAS rounds x @ B for one row
otherwise than for three and 2π·|x·B| ~ 400 lifts that rounding past float32's tolerance.
A float32 disagreement is now judged again in float64; a layer that truly mixes its rows
still fails."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import random
from funcdl.layers import Layer
from funcdl.testing import check_layer


def fourier(scale):
    """y = [sin(2π x B), cos(2π x B)]; dB = xᵀ dz, dx = dz Bᵀ, dz = 2π (c·dy_s - s·dy_c)."""
    m = 16

    def init(key, in_shape):
        b = (scale * random.normal(key, (in_shape[-1], m))).astype(np.float32)
        return (*in_shape[:-1], 2 * m), {"B": b}

    def vjp(params, x, *, key=None, train=False):
        z = 2 * np.pi * (x @ params["B"])
        s, c = np.sin(z), np.cos(z)

        def pullback(dy):
            dz = 2 * np.pi * (c * dy[..., :m] - s * dy[..., m:])
            return {"B": x.T @ dz}, dz @ params["B"].T

        return np.concatenate([s, c], axis=-1), pullback

    return Layer(init, lambda p, x, **kw: vjp(p, x)[0], vjp, name=f"Fourier({scale})")


@pytest.mark.parametrize("scale", [1.0, 10.0, 30.0])
def test_an_ill_conditioned_row_wise_layer_passes(scale):
    check_layer(fourier(scale), (None, 3))


def test_a_float32_disagreement_alone_passes_where_float64_agrees():
    # with check_layer's params and this x, the first row alone came 6.8e-6 off the batch's
    # first row in float32 on OpenBLAS 0.3.31 (one entry past the tolerance: the old
    # check_layer failed here), 0 in float64
    layer = fourier(10.0)
    _, params = layer.init(random.key(0), (None, 3))
    x = random.normal(random.key(1), (64, 3))
    p64 = {"B": params["B"].astype(np.float64)}
    x64 = x.astype(np.float64)
    assert np.abs(layer.apply(p64, x64)[:1] - layer.apply(p64, x64[:1])).max() < 1e-9
    check_layer(layer, (None, 3), x=x)


def _mixing(eps):
    """y = x + eps·mean over the batch: reads the other rows (dx spreads the mean back)."""
    def vjp(params, x, *, key=None, train=False):
        n = x.shape[0]
        return x + eps * x.mean(axis=0), lambda dy: ((), dy + eps * dy.sum(axis=0) / n)

    return Layer(lambda key, s: (s, ()), lambda p, x, **kw: vjp(p, x)[0], vjp,
                 name=f"Mixing({eps})")


@pytest.mark.parametrize("eps", [1.0, 1e-3])
def test_a_layer_reading_other_rows_still_fails(eps):
    with pytest.raises(AssertionError, match=r"check_layer\(Mixing\(.*\)\): at inference, a row "
                                             r"of the output depends on the other rows"):
        check_layer(_mixing(eps), (None, 4))


def test_a_layer_whose_float64_run_fails_keeps_the_float32_verdict():
    # no float64 path (refuses it): the float32 rows' disagreement is reported as before
    def vjp(params, x, *, key=None, train=False):
        if x.dtype != np.float32:
            raise TypeError("Mixing32: float32 only")
        return x + x.mean(axis=0), lambda dy: ((), dy + dy.mean(axis=0))

    layer = Layer(lambda key, s: (s, ()), lambda p, x, **kw: vjp(p, x)[0], vjp,
                  name="Mixing32")
    with pytest.raises(AssertionError, match=r"check_layer\(Mixing32\): at inference, a row"):
        check_layer(layer, (None, 4))
