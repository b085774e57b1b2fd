"""InstanceNorm (funcdl.layers.instancenorm): vjps against finite differences, forward and
vjp against a naive loop over examples and channels, the same numbers as GroupNorm(C),
float32, PyTorch's refusals (no spatial axis, one spatial element) and bad arguments.
PyTorch cross-checks: test_adaptive_pool_torch.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _norm_util import EPS, _normal

from funcdl import random
from funcdl.layers.groupnorm import GroupNorm
from funcdl.layers.instancenorm import InstanceNorm
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
SHAPES = [(None, 5, 3), (None, 3, 4, 2), (None, 2, 3, 2, 3), (None, 2, 1, 4)]


def naive_instance_norm(x, scale, bias, dy):
    """y, dx, dscale, dbias by loops over examples and channels, each one's spatial values
    as one vector: the textbook forward and ``dx = (g - mean g - x̂ mean(g x̂))/σ``."""
    y, dx = np.empty_like(x), np.empty_like(x)
    dscale, dbias = np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
    for i in range(x.shape[0]):
        for c in range(x.shape[-1]):
            v, d = x[i, ..., c], dy[i, ..., c]
            mu = v.sum() / v.size
            sigma = np.sqrt(((v - mu) ** 2).sum() / v.size + EPS)
            xh = (v - mu) / sigma
            y[i, ..., c] = xh * scale[c] + bias[c]
            g = d * scale[c]
            dx[i, ..., c] = (g - g.mean() - xh * (g * xh).mean()) / sigma
            dscale[c] += (d * xh).sum()
            dbias[c] += d.sum()
    return y, dx, dscale, dbias


def _setup(in_shape, seed=0):
    c = in_shape[-1]
    params = {"scale": _normal(seed + 1, (c,), 0.5, 1.0), "bias": _normal(seed + 2, (c,))}
    x = _normal(seed + 3, (3, *in_shape[1:]), 2.0, 0.5)
    dy = _normal(seed + 4, x.shape)
    return params, x, dy


@pytest.mark.parametrize("in_shape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_check_layer_and_vjp(in_shape, affine):
    layer = InstanceNorm(affine=affine)
    check_layer(layer, in_shape)
    params, x, _ = _setup(in_shape)
    check_vjp(layer, params if affine else (), x)


@pytest.mark.parametrize("in_shape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_matches_naive(in_shape, affine):
    params, x, dy = _setup(in_shape)
    if not affine:
        params = {"scale": np.ones(x.shape[-1]), "bias": np.zeros(x.shape[-1])}
    want_y, want_dx, want_ds, want_db = naive_instance_norm(x, params["scale"],
                                                            params["bias"], dy)
    layer = InstanceNorm(affine=affine)
    y, pullback = layer.vjp(params if affine else (), x)
    dparams, dx = pullback(dy)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-12)
    if affine:
        np.testing.assert_allclose(dparams["scale"], want_ds, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dparams["bias"], want_db, rtol=1e-12, atol=1e-12)
    else:
        assert dparams == ()


@pytest.mark.parametrize("in_shape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_is_group_norm_with_a_group_per_channel(in_shape, affine):
    params, x, dy = _setup(in_shape)
    p = params if affine else ()
    inst, group = InstanceNorm(affine=affine), GroupNorm(in_shape[-1], affine=affine)
    (s1, p1), (s2, p2) = inst.init(KEY, in_shape), group.init(KEY, in_shape)
    assert s1 == s2
    if affine:
        for k in ("scale", "bias"):
            np.testing.assert_array_equal(p1[k], p2[k])
    y1, pb1 = inst.vjp(p, x)
    y2, pb2 = group.vjp(p, x)
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-13)
    (d1, dx1), (d2, dx2) = pb1(dy), pb2(dy)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-12, atol=1e-13)
    if affine:
        for k in ("scale", "bias"):
            np.testing.assert_allclose(d1[k], d2[k], rtol=1e-12, atol=1e-13)


def test_params_are_torchs_init_float32_and_float32_kept():
    _, params = InstanceNorm(affine=True).init(KEY, (None, 4, 3))
    np.testing.assert_array_equal(params["scale"], np.ones(3))
    np.testing.assert_array_equal(params["bias"], np.zeros(3))
    assert params["scale"].dtype == params["bias"].dtype == np.float32
    assert InstanceNorm().init(KEY, (None, 4, 3)) == ((None, 4, 3), ())
    x = _normal(1, (2, 5, 3)).astype(np.float32)
    y, pb = InstanceNorm(affine=True).vjp(params, x)
    dparams, dx = pb(np.ones_like(y))
    assert y.dtype == dx.dtype == dparams["scale"].dtype == dparams["bias"].dtype == np.float32
    assert InstanceNorm().apply((), x).dtype == np.float32


def test_empty_spatial_is_empty():
    assert InstanceNorm().apply((), np.zeros((2, 0, 3))).shape == (2, 0, 3)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape,words", [((4, 3), "with a spatial axis"),
                                         ((4, 1, 3), "more than 1 spatial element"),
                                         ((2, 1, 1, 3), "more than 1 spatial element")])
def test_refuses_what_torch_refuses(affine, shape, words):
    layer = InstanceNorm(affine=affine)
    name = re.escape(layer.name)
    with pytest.raises(ValueError, match=name + ": expected .*" + words):
        layer.init(KEY, (None, *shape[1:]))
    params = {"scale": np.ones(3), "bias": np.zeros(3)} if affine else ()
    with pytest.raises(ValueError, match=name + ": expected .*" + words):
        layer.apply(params, np.zeros(shape))
    with pytest.raises(ValueError, match=name + ": expected .*" + words):
        layer.vjp(params, np.zeros(shape))


def test_unknown_spatial_sizes_pass_init():
    assert InstanceNorm().init(KEY, (None, None, 3))[0] == (None, None, 3)


@pytest.mark.parametrize("kw,err,what", [({"eps": 0.0}, ValueError, "eps"),
                                         ({"eps": -1.0}, ValueError, "eps"),
                                         ({"eps": "1"}, TypeError, "eps"),
                                         ({"affine": "yes"}, TypeError, "affine"),
                                         ({"affine": 1}, TypeError, "affine")])
def test_bad_arguments(kw, err, what):
    with pytest.raises(err, match=f"InstanceNorm: {what}"):
        InstanceNorm(**kw)


def test_name_and_params_mismatch():
    assert InstanceNorm().name == "InstanceNorm()"
    assert InstanceNorm(1e-3, affine=True).name == "InstanceNorm(eps=0.001, affine=True)"
    layer = InstanceNorm(affine=True)
    with pytest.raises(ValueError, match=r"InstanceNorm\(affine=True\): expected 4 channels"):
        layer.apply({"scale": np.ones(4), "bias": np.zeros(4)}, np.zeros((2, 3, 3)))
