"""BatchNorm and LayerNorm numerics: float32 kept through outputs, grads and state (and
float32 params' grads under float64 input), float32 accuracy on shifted, constant and offset
data, and the short-rows fast paths (per-channel products on tiled rows, LayerNorm as
(rows, S)) against float64 formulas, the general path and NumPy's broadcast."""

from __future__ import annotations

import numpy as np
import pytest
from _norm_util import EPS, _bn_setup, _normal

from funcdl import random, tree
from funcdl.layers.norm import BatchNorm, LayerNorm
from funcdl.testing import check_vjp

# ---------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("train", [True, False])
def test_float32_stays_float32(train):
    layer = BatchNorm()
    _, params, state = layer.init(random.key(0), (None, 2, 2, 3))
    x = random.normal(random.key(1), (4, 2, 2, 3), np.float32) * 100 + 1e4
    y, pullback, new_state = layer.vjp(params, x, state=state, train=train)
    grads, dx = pullback(np.ones_like(y))
    for a in (y, dx, *tree.leaves(grads), *tree.leaves(new_state)):
        assert a.dtype == np.float32
    # two-pass statistics: a large offset costs no accuracy
    x64 = x.astype(np.float64)
    y64, _ = layer.apply(params, x64, state=state, train=train)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer", [BatchNorm(), LayerNorm()], ids=["BatchNorm", "LayerNorm"])
@pytest.mark.parametrize("train", [True, False])
def test_norm_grads_keep_float32_params_dtype_under_float64_input(layer, train):
    # As JAX: each grad has its param's dtype; a float64 input must not make them float64.
    made = layer.init(random.key(0), (None, 3))
    params, kw = made[1], ({"state": made[2]} if layer.stateful else {})
    x = _normal(1, (5, 3), 2.0, 1.0)  # float64
    y, pullback, *_ = layer.vjp(params, x, train=train, **kw)
    dparams, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float64
    assert {k: g.dtype for k, g in dparams.items()} == {"scale": np.float32, "bias": np.float32}
    lists = {k: v.tolist() for k, v in params.items()}  # as every layer: arrays, not lists
    with pytest.raises(TypeError, match=r"params\['scale'\] must be a NumPy array.*list"):
        layer.vjp(lists, x, train=train, **kw)


# ---------------------------------------------------------------------------- accuracy

@pytest.mark.parametrize("shape", [(256, 32), (64, 28, 28, 16)])
def test_float32_batch_statistics_of_shifted_data_keep_float32_accuracy(shape):
    # NumPy's float32 sum over leading axes adds slice by slice: on (64, 28, 28, 16) values
    # near 1e4 the mean came out 0.01 off and y by 2.5 of its standard deviations; BLAS's
    # blocked sums leave only the rounding of x itself (1e4 to float32: ~0.01 of y's scale)
    x = (_normal(0, shape, 0.1, 1e4)).astype(np.float32)
    layer = BatchNorm()
    _, params, state = layer.init(random.key(1), (None, *shape[1:]))
    y32, s32 = layer.apply(params, x, state=state, train=True)
    y64, s64 = layer.apply(tree.astype(params, np.float64), x.astype(np.float64),
                           state=state, train=True)
    assert y32.dtype == s32["mean"].dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=0.03)
    np.testing.assert_allclose(s32["mean"], s64["mean"], atol=3e-4)


@pytest.mark.parametrize("value", [1.7, 5.3, 12.9, 123.456, 12345.678, 65881.3, -9.87e6])
@pytest.mark.parametrize("width", [3, 7, 100])
def test_constant_rows_and_channels_normalise_to_zero(value, width):
    # x̂ is 0 for constant data, as PyTorch's Welford moments give; the two-pass float32 mean
    # is an ulp off there, which is more than sqrt(eps) from ~1e3 on: x̂ was ±0.3-1
    x = np.full((5, width), value, np.float32)
    ln, bn = LayerNorm(), BatchNorm()
    _, p = ln.init(random.key(0), (None, width))
    bias = _normal(4, (width,)).astype(np.float32)
    y_rows = ln.apply({"scale": p["scale"], "bias": bias}, x)  # the (rows, S) path
    y_axes = LayerNorm(axis=(1, 2)).apply({"scale": np.ones((5, width), np.float32),
                                           "bias": np.zeros((5, width), np.float32)},
                                          x[None, :, :, None])  # the general path
    _, bp, bs = bn.init(random.key(0), (None, 5))
    y_bn, state = bn.apply(bp, np.ascontiguousarray(x.T), state=bs, train=True)
    np.testing.assert_array_equal(y_rows, np.broadcast_to(bias, x.shape))
    np.testing.assert_array_equal(y_axes, 0)
    np.testing.assert_array_equal(y_bn, 0)
    np.testing.assert_array_equal(state["mean"], np.float32(0.1) * np.float32(value))
    assert y_rows.dtype == y_axes.dtype == y_bn.dtype == np.float32


@pytest.mark.parametrize("make", [LayerNorm, BatchNorm])
def test_offset_data_refines_the_mean_and_keeps_the_vjp(make):
    # |μ| > 64 σ takes the refining pass; its vjp is the same function's
    layer = make()
    x = 1e4 + _normal(5, (6, 4), 1.0)
    if layer.stateful:
        _, params, state = layer.init(random.key(0), (None, 4))
        check_vjp(layer, tree.astype(params, np.float64), x, state=state, train=True)
    else:
        _, params = layer.init(random.key(0), (None, 4))
        check_vjp(layer, tree.astype(params, np.float64), x)
    y32 = (layer.apply(params, x.astype(np.float32), state=state, train=True)[0]
           if layer.stateful else layer.apply(params, x.astype(np.float32)))
    y64 = (layer.apply(params, x, state=state, train=True)[0]
           if layer.stateful else layer.apply(params, x))
    np.testing.assert_allclose(y32, y64, atol=0.02)  # x's own rounding: 1e4 ± 5e-4


# ---------------------------------------------------------------------------- short rows
# LayerNorm over trailing axes runs as (rows, S) with BLAS row sums and expanded per-row
# factors; BatchNorm's per-channel products run on rows tiled to 1024 values
# (funcdl.layers._sums.chan, per_row). Checked against float64 formulas, finite differences,
# the general path (LayerNorm over a non-trailing axis) and NumPy's broadcast, bit for bit.

def test_chan_is_numpy_broadcast_bit_for_bit(monkeypatch):
    from funcdl.layers._sums import chan
    rng = np.random.default_rng(0)
    tiles, real_tile = [], np.tile  # chan calls np.tile only when it tiles

    def tile(*args):
        tiles.append(args)
        return real_tile(*args)

    monkeypatch.setattr(np, "tile", tile)
    # tiled whole (64, 7, 5, 16) or with leftover rows (6001, 3), (2100, 25); below
    # _sums.TILE_FROM elements or TILE_ROWS rows, or one channel: NumPy's broadcast as it is
    tiled = [(64, 7, 5, 16), (6001, 3), (2100, 25)]
    for shape in [*tiled, (3, 5), (1000, 3), (1100, 25), (7, 1), (2, 0, 4), (20000, 1)]:
        tiles.clear()
        a = rng.standard_normal(shape).astype(np.float32)
        v = rng.standard_normal(shape[-1:]).astype(np.float32).reshape(
            (1,) * (len(shape) - 1) + shape[-1:])
        for ufunc in (np.add, np.subtract, np.multiply):
            got = chan(ufunc, a, v)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ufunc(a, v))
            out = np.empty_like(a)
            assert chan(ufunc, a, v, out=out) is out
            np.testing.assert_array_equal(out, ufunc(a, v))
        np.testing.assert_array_equal(chan(np.multiply, a, v.astype(np.float64)), a * v.astype(
            np.float64))
        assert bool(tiles) == (shape in tiled), shape


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (9, 7), (2, 3, 2, 130)])
def test_layernorm_rows_path_by_hand_and_against_general_path(shape):
    layer = LayerNorm()
    s = shape[-1:]
    params = {"scale": _normal(1, s, 0.5, 1.0), "bias": _normal(2, s)}
    x, dy = _normal(3, shape, 2.0, 0.5), _normal(4, shape)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    inv = 1 / np.sqrt(var + EPS)
    xhat = (x - mu) * inv
    np.testing.assert_allclose(y, xhat * params["scale"] + params["bias"], rtol=1e-13, atol=1e-14)
    g = dy * params["scale"]
    expected = inv * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-13)
    red = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(grads["scale"], (dy * xhat).sum(red), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["bias"], dy.sum(red), rtol=1e-12, atol=1e-13)
    # the same normalisation over axis 1 of the transposed input takes the general path
    t = (0, len(shape) - 1, *range(1, len(shape) - 1))
    other = LayerNorm(axis=1)
    y1, pullback1 = other.vjp(params, x.transpose(t))
    np.testing.assert_allclose(y1, y.transpose(t), rtol=1e-13, atol=1e-14)
    g1, dx1 = pullback1(dy.transpose(t))
    np.testing.assert_allclose(dx1, dx.transpose(t), rtol=1e-12, atol=1e-13)
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13), g1, grads)
    check_vjp(layer, params, x)


@pytest.mark.parametrize("make", [LayerNorm, BatchNorm])
@pytest.mark.parametrize("train", [True, False])
def test_short_rows_float32_against_float64(make, train):
    layer = make()
    shape = (64, 7, 7, 16)  # 3136 rows of 16: the tiled rows and a remainder
    x = _normal(5, shape, 3.0, 100.0).astype(np.float32)
    dy = _normal(6, shape).astype(np.float32)
    init = layer.init(random.key(0), (None, *shape[1:]))
    params = {"scale": _normal(7, (16,), 0.5, 1.0).astype(np.float32),
              "bias": _normal(8, (16,)).astype(np.float32)}
    kw = {"state": {"mean": _normal(9, (16,), 1.0, 100.0).astype(np.float32),
                    "var": np.full(16, 9.0, np.float32)}, "train": train} if len(init) == 3 else {}
    out32 = layer.vjp(params, x, **kw)
    out64 = layer.vjp(tree.astype(params, np.float64), x.astype(np.float64),
                      **({**kw, "state": tree.astype(kw["state"], np.float64)} if kw else {}))
    (g32, dx32), (g64, dx64) = out32[1](dy), out64[1](dy.astype(np.float64))
    assert out32[0].dtype == dx32.dtype == g32["scale"].dtype == np.float32
    np.testing.assert_allclose(out32[0], out64[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-2)
    if len(init) == 3:
        np.testing.assert_array_equal(layer.apply(params, x, **kw)[0], out32[0])
    else:
        np.testing.assert_array_equal(layer.apply(params, x), out32[0])


def test_batchnorm_non_contiguous_input_matches_contiguous():
    layer = BatchNorm()
    params, state, x = _bn_setup(layer, (None, 4, 6, 5), 3)
    view = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    for train in (True, False):
        y, pullback, _ = layer.vjp(params, x, state=state, train=train)
        y2, pullback2, _ = layer.vjp(params, view, state=state, train=train)
        np.testing.assert_array_equal(y, y2)
        dy = _normal(11, y.shape)
        tree.map(np.testing.assert_array_equal, pullback(dy), pullback2(dy))


def test_a_nan_row_leaves_the_other_rows_refined():
    # np.maximum.reduce over the rows' |mu|/sigma was NaN with one NaN row, and the whole
    # batch skipped the refinement: rows constant at 12345.678 gave x-hat 0.3, not 0
    x = np.full((3, 7), 12345.678, np.float32)
    x[2, 0] = np.nan
    _, p = LayerNorm().init(random.key(0), (None, 7))
    with np.errstate(invalid="ignore"):
        y = LayerNorm().apply(p, x)
    np.testing.assert_array_equal(y[:2], 0)
    assert np.isnan(y[2]).all()


def test_rows_near_1e4_refine_to_float64s_accuracy():
    # distinct values around 1e4 with sigma 0.05: mu is not representable, and x-hat stays
    # within float32 rounding of the float64 result (x's own rounding: 1e4 +- 5e-4)
    x64 = 1e4 + np.random.default_rng(0).standard_normal((64, 16)) * 0.05
    x = x64.astype(np.float32)
    _, p = LayerNorm().init(random.key(0), (None, 16))
    np.testing.assert_allclose(LayerNorm().apply(p, x), LayerNorm().apply(p, x.astype(np.float64)),
                               atol=2e-5)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_inference_keeps_its_digits_far_from_zero_mean(affine):
    # x·k + (bias - μ·k) cancelled: 2e-2 relative error in float32 at μ = 1e6, σ = 1 (a
    # numerics probe; PyTorch's CPU kernel 8e-3); (x - μ)·k + bias keeps ~1e-7
    rng = np.random.default_rng(0)
    x = (1e6 + rng.standard_normal((64, 8))).astype(np.float32)
    bn = BatchNorm(affine=affine)
    _, params, _ = bn.init(None, (None, 8))
    run = {"mean": x.mean(0, dtype=np.float64).astype(np.float32),
           "var": x.var(0, dtype=np.float64).astype(np.float32)}
    want = (x.astype(np.float64) - run["mean"]) / np.sqrt(run["var"].astype(np.float64) + 1e-5)
    for y in (bn.apply(params, x, state=run)[0], bn.vjp(params, x, state=run)[0]):
        assert y.dtype == np.float32
        assert np.abs(y - want).max() / np.abs(want).max() < 1e-6
