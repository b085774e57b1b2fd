"""The new torch.nn layers, continued (test_layers_torch_extra.py): Bilinear's two forms
(the outer product's residual only where it is the smaller one), the axis-range message,
Softmin as Softmax of -x bitwise, Softshrink/Hardshrink's slope from the output, and
AlphaDropout's affine computed once with Dropout's mask drawing shared.
"""

from __future__ import annotations

import re
import tracemalloc
from typing import Any

import numpy as np
import pytest

from funcdl import random
from funcdl.layers.alpha_dropout import AlphaDropout
from funcdl.layers.bilinear import Bilinear
from funcdl.layers.lrn import LocalResponseNorm
from funcdl.layers.shrink import GLU, Hardshrink, Softmin, Softshrink
from funcdl.testing import check_vjp

KEY = random.key(0)
RNG = np.random.default_rng(7)
TOL = {"rtol": 1e-12, "atol": 1e-12}



def naive_bilinear(x1: np.ndarray, x2: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Any:
    """y (no bias), dx1, dx2, dw by loops over rows and outputs."""
    y, dx1, dx2, dw = (np.zeros(dy.shape), np.zeros(x1.shape), np.zeros(x2.shape),
                       np.zeros(w.shape))
    for m in range(len(x1)):
        for o in range(w.shape[0]):
            y[m, o] = x1[m] @ w[o] @ x2[m]
            dx1[m] += dy[m, o] * (w[o] @ x2[m])
            dx2[m] += dy[m, o] * (x1[m] @ w[o])
            dw[o] += dy[m, o] * np.outer(x1[m], x2[m])
    return y, dx1, dx2, dw


@pytest.mark.parametrize("out,d1,d2", [(2, 3, 4), (1, 5, 2), (8, 2, 3), (7, 3, 3)],
                         ids=["rows-form", "rows-form-1", "outer-form", "outer-form-square"])
def test_bilinear_both_forms_naive_and_finite_differences(out: int, d1: int, d2: int) -> None:
    """Both of the layer's forms (rows of x1 W when out·(D1 + D2) <= 2·D1·D2, else the
    outer product) against loops, and against finite differences."""
    layer = Bilinear(out, use_bias=False)
    _, params = layer.init(KEY, ((None, d1), (None, d2)))
    params = {"w": params["w"].astype(np.float64)}
    x1, x2 = RNG.normal(size=(5, d1)), RNG.normal(size=(5, d2))
    y, pb = layer.vjp(params, (x1, x2))
    dy = RNG.normal(size=y.shape)
    g, (dx1, dx2) = pb(dy)
    ref = naive_bilinear(x1, x2, params["w"], dy)
    for got, want in zip((y, dx1, dx2, g["w"]), ref):
        np.testing.assert_allclose(got, want, **TOL)
    check_vjp(layer, params, (x1, x2))


def held_and_peak(layer: Any, params: Any, xs: Any) -> tuple[int, int]:
    """Bytes the vjp's closure holds after the forward (the output left out), and the
    peak traced during the pullback above what was held before it."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y, pullback = layer.vjp(params, xs)
        held = tracemalloc.get_traced_memory()[0] - base - y.nbytes
        dy = np.ones_like(y)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        pullback(dy)
        return held, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_bilinear_residual_is_not_the_outer_product() -> None:
    """M = 512 rows of D1 = D2 = 64 into out = 4: the outer products would be M·D1·D2
    float32, 8 MiB, kept and again as dz; the rows' form keeps t, M·out·D2 (512 KiB), and
    builds M·out·D1 arrays in the pullback."""
    m, d, out = 512, 64, 4
    layer = Bilinear(out)
    _, params = layer.init(KEY, ((None, d), (None, d)))
    xs = (RNG.normal(size=(m, d)).astype(np.float32),
          RNG.normal(size=(m, d)).astype(np.float32))
    held, peak = held_and_peak(layer, params, xs)
    t_bytes = m * out * d * 4
    assert held <= t_bytes + 64 * 1024, held
    assert peak <= 4 * t_bytes + 64 * 1024, peak  # z alone, M·D·D·4, is 16 t's


@pytest.mark.parametrize("layer", [Softmin(axis=2), GLU(axis=-3)], ids=lambda a: a.name)
def test_axis_out_of_range_names_the_range(layer: Any) -> None:
    """One check of the axis for every layer along one (base.axis_in_range): the valid
    range in the message, and a scalar said to have no axis."""
    with pytest.raises(ValueError, match=rf"{re.escape(layer.name)}: axis -?\d is out of "
                                         r"range for an input of shape \(2, 4\); use an axis "
                                         r"in \[-2, 1\]"):
        layer.apply((), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"axis -?\d is out of range for a scalar input"):
        Softmin(axis=0).apply((), np.float64(1.0))


def test_softmin_is_softmax_of_minus_x_bitwise() -> None:
    """Softmin shares Softmax's code with a sign: y = softmax(-x), dx = -dx_softmax(-x)."""
    from funcdl.layers.activations import Softmax
    x, dy = RNG.normal(size=(4, 5, 3)), RNG.normal(size=(4, 5, 3))
    y, pb = Softmin(axis=1).vjp((), x)
    ys, pbs = Softmax(axis=1).vjp((), -x)
    np.testing.assert_array_equal(y, ys)
    np.testing.assert_array_equal(pb(dy)[1], -pbs(dy)[1])


@pytest.mark.parametrize("ctor", [Softshrink, Hardshrink])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shrink_slope_is_the_band_test(ctor: Any, dtype: Any) -> None:
    """dx = dy·[y != 0] is dy·[not -λ <= x <= λ]: NaN, ±inf, ±0, ±λ and their neighbours,
    subnormals, over several λ (a slope from y > 0, or from |x| >= λ, differs here)."""
    fi = np.finfo(dtype)
    for lam in (0.0, 1e-30, float(fi.tiny), 0.5, 3.0):
        lt = dtype(lam)
        x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, lt, -lt, fi.smallest_subnormal,
                      -fi.smallest_subnormal, fi.max, -fi.max, np.nextafter(lt, dtype(1)),
                      np.nextafter(-lt, dtype(-1)), np.nextafter(lt, dtype(0)),
                      np.nextafter(-lt, dtype(0)), -2.0, 2.0], dtype)
        dy = np.arange(1, len(x) + 1, dtype=dtype)
        _, pb = ctor(lam).vjp((), x)
        band = (x >= -lt) & (x <= lt)
        np.testing.assert_array_equal(pb(dy)[1], np.where(band, 0, dy))


def test_alpha_dropout_affine_once_and_masks_shared(monkeypatch: Any) -> None:
    """The affine constants are computed when the layer is built, not per call; and the
    keep mask is Dropout's (core.keep_mask): the same key drops the same entries."""
    from funcdl.layers import alpha_dropout
    from funcdl.layers.activations_extra import _SELU_ALPHA, _SELU_SCALE
    from funcdl.layers.core import Dropout
    assert alpha_dropout._ALPHA_P == _SELU_SCALE * _SELU_ALPHA
    layer = AlphaDropout(0.3)
    calls = []
    real = alpha_dropout.alpha_affine
    monkeypatch.setattr(alpha_dropout, "alpha_affine", lambda r: calls.append(r) or real(r))
    x = RNG.normal(size=(6, 7))
    y, pb = layer.vjp((), x, key=KEY, train=True)
    layer.apply((), x, key=KEY, train=True)
    assert calls == []
    a, b, dropped = real(0.3)
    kept = Dropout(0.3).apply((), np.ones_like(x), key=KEY, train=True) != 0
    assert 0 < kept.sum() < x.size
    np.testing.assert_allclose(y, np.where(kept, a * x + b, dropped), **TOL)
    np.testing.assert_allclose(pb(np.ones_like(x))[1], a * kept, **TOL)


def test_lrn_init_gives_apply_s_hint_for_a_rank_2_shape() -> None:
    with pytest.raises(ValueError, match=r"LocalResponseNorm\(3\): expected an input shape "
                                         r"\(N, \.\.\., C\) of rank >= 3, channels last .*"
                                         r"x\[:, None, :\]"):
        LocalResponseNorm(3).init(KEY, (None, 8))
