"""``FanInSum(broadcast=True)``: entries of one rank and batch size summed with NumPy's
broadcasting over the other axes, the time-embedding injection of a diffusion U-Net
(PyTorch's ``h + temb[:, :, None, None]``). Equality with NumPy's sum, dx summed over the
broadcast axes (by hand, by finite differences in float64, by torch), a GroupNorm-SiLU-Conv
residual block with the time added checked against torch in float64, per-example
gradients, dtypes, and the shapes it refuses, named. The plain FanInSum is unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
SHAPES = [
    ((3, 4, 5, 6), (3, 1, 1, 6)),              # a time embedding into every pixel
    ((3, 1, 1, 6), (3, 4, 5, 6)),              # the small one first
    ((3, 1, 5, 6), (3, 4, 1, 6), (3, 4, 5, 1)),  # three entries, no block of axes
    ((3, 4, 5), (3, 4, 1)),                    # the last axis broadcast
    ((2, 3, 4, 5, 2), (2, 1, 4, 1, 2)),        # two axes with a kept one between
    ((3, 4), (3, 4)),                          # nothing to broadcast
]


def draws(shapes: tuple[tuple[int, ...], ...], dtype: Any = np.float64) -> tuple[Any, ...]:
    keys = random.split(random.key(1), len(shapes))
    return tuple(random.normal(k, s, dtype) for k, s in zip(keys, shapes))


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_forward_and_vjp_by_hand(shapes: tuple[tuple[int, ...], ...]) -> None:
    layer = L.FanInSum(broadcast=True)
    xs = draws(shapes)
    out_shape, params = layer.init(KEY, tuple((None, *s[1:]) for s in shapes))
    y, pullback = layer.vjp(params, xs)
    want = sum(xs[1:], xs[0])
    np.testing.assert_array_equal(layer.apply(params, xs), want)
    np.testing.assert_array_equal(y, want)
    assert out_shape == (None, *want.shape[1:])
    dy = random.normal(random.key(2), y.shape, np.float64)
    _, dxs = pullback(dy)
    for x, dx in zip(xs, dxs):
        axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, y.shape)) if a != b)
        assert dx.shape == x.shape
        np.testing.assert_allclose(dx, dy.sum(axis=axes, keepdims=True), rtol=1e-13)


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_finite_differences_and_check_layer(shapes: tuple[tuple[int, ...], ...]) -> None:
    layer = L.FanInSum(broadcast=True)
    check_vjp(layer, (), draws(shapes))
    check_layer(layer, tuple((None, *s[1:]) for s in shapes))


def test_dtypes_per_entry() -> None:
    layer = L.FanInSum(broadcast=True)
    h, e = draws(((2, 3, 3, 4), (2, 1, 1, 4)), np.float32)
    y, pullback = layer.vjp((), (h, e))
    assert y.dtype == np.float32
    _, (dh, de) = pullback(np.ones_like(y))
    assert dh.dtype == de.dtype == np.float32
    np.testing.assert_array_equal(de, np.full((2, 1, 1, 4), 9, np.float32))
    y, pullback = layer.vjp((), (h, e.astype(np.float64)))  # NumPy's promotion forward
    _, (dh, de) = pullback(np.ones_like(y))
    assert y.dtype == de.dtype == np.float64 and dh.dtype == np.float32  # dx as its input


def test_refusals_named() -> None:
    layer = L.FanInSum(broadcast=True)
    with pytest.raises(ValueError, match=r"FanInSum\(broadcast=True\): inputs must have one "
                                         r"rank, got \(\(None, 4, 4, 8\), \(None, 8\)\).*"
                                         r"Reshape\(\(1, 1, C\)\)"):
        layer.init(KEY, ((None, 4, 4, 8), (None, 8)))
    with pytest.raises(ValueError, match=r"the batch sizes \[1, 3\] do not broadcast"):
        layer.init(KEY, ((3, 4, 4, 8), (1, 1, 1, 8)))  # never across examples
    with pytest.raises(ValueError, match=r"the sizes on axis 2 \[2, 4\] do not broadcast"):
        layer.init(KEY, ((None, 4, 4, 8), (None, 1, 2, 8)))
    with pytest.raises(ValueError, match=r"FanInSum\(broadcast=True\): inputs must have one "
                                         r"rank, got \(\(5, 1\), \(5,\)\)"):
        layer.apply((), (np.zeros((5, 1)), np.zeros(5)))  # never the silent (5, 5)
    with pytest.raises(ValueError, match=r"the sizes on axis 1 \[3, 4\]"):
        layer.apply((), (np.zeros((2, 3)), np.zeros((2, 4))))
    _, pullback = layer.vjp((), (np.zeros((2, 3, 4)), np.zeros((2, 1, 4))))
    with pytest.raises(ValueError, match=r"FanInSum\(broadcast=True\): pullback expected dy "
                                         r"of shape \(2, 3, 4\)"):
        pullback(np.zeros((2, 1, 4)))
    with pytest.raises(TypeError, match="FanInSum: broadcast must be True or False"):
        L.FanInSum(broadcast=1)


def test_plain_fanin_sum_still_refuses_and_points_to_broadcast() -> None:
    assert L.FanInSum().name == L.FanInSum(broadcast=False).name == "FanInSum()"
    with pytest.raises(ValueError, match=r"inputs must share one shape.*"
                                         r"FanInSum\(broadcast=True\)"):
        L.FanInSum().init(KEY, ((None, 4, 4, 8), (None, 1, 1, 8)))
    with pytest.raises(ValueError, match=r"inputs must share one shape.*"
                                         r"FanInSum\(broadcast=True\)"):
        L.FanInSum().apply((), (np.zeros((2, 4, 4, 8)), np.zeros((2, 1, 1, 8))))


def res_block(c: int) -> Any:
    """(h, temb) -> h + Conv(SiLU(GN(Conv(SiLU(GN(h))) + Dense(SiLU(temb))))): diffusers'
    ResnetBlock2D without dropout, the time added to every pixel."""
    path = L.Sequential(
        L.Parallel(L.Sequential(L.GroupNorm(2), L.SiLU(), L.Conv2D(c, 3)),
                   L.Sequential(L.SiLU(), L.Dense(c), L.Reshape((1, 1, c)))),
        L.FanInSum(broadcast=True), L.GroupNorm(2), L.SiLU(), L.Conv2D(c, 3))
    return L.Sequential(L.FanOut(2), L.Parallel(path, L.Select(0)), L.FanInSum())


def block_inputs() -> tuple[Any, Any, Any]:
    block = res_block(4)
    _, params = block.init(KEY, ((None, 5, 5, 4), (None, 6)))
    params = fd.tree.map(lambda a: a.astype(np.float64) + 0.1 * random.normal(
        random.key(a.size), a.shape, np.float64), params)
    h, temb = draws(((3, 5, 5, 4), (3, 6)))
    return block, params, (h, temb)


def test_residual_block_with_time_against_torch() -> None:
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    block, params, (h, temb) = block_inputs()
    (gn1, _, conv1), (_, dense, _) = params[1][0][0]
    gn2, conv2 = params[1][0][2], params[1][0][4]
    t = {k: torch.tensor(v, requires_grad=True) for k, v in {
        "g1": gn1["scale"], "b1": gn1["bias"], "w1": conv1["w"].transpose(3, 2, 0, 1).copy(),
        "c1": conv1["b"], "wd": dense["w"].T.copy(), "bd": dense["b"], "g2": gn2["scale"],
        "b2": gn2["bias"], "w2": conv2["w"].transpose(3, 2, 0, 1).copy(),
        "c2": conv2["b"]}.items()}
    ht = torch.tensor(h.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    et = torch.tensor(temb, requires_grad=True)
    a = fn.conv2d(fn.silu(fn.group_norm(ht, 2, t["g1"], t["b1"])), t["w1"], t["c1"], padding=1)
    a = a + fn.linear(fn.silu(et), t["wd"], t["bd"])[:, :, None, None]
    a = fn.conv2d(fn.silu(fn.group_norm(a, 2, t["g2"], t["b2"])), t["w2"], t["c2"], padding=1)
    out = ht + a
    dy = random.normal(random.key(5), (3, 5, 5, 4), np.float64)
    out.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))
    y, pullback = block.vjp(params, (h, temb))
    np.testing.assert_allclose(y, out.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12,
                               atol=1e-13)
    grads, (dh, dtemb) = pullback(dy)
    np.testing.assert_allclose(dtemb, et.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dh, ht.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-11,
                               atol=1e-13)
    (_, (_, gdense, _)) = grads[1][0][0]
    np.testing.assert_allclose(gdense["w"], t["wd"].grad.numpy().T, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads[1][0][2]["scale"], t["g2"].grad.numpy(), rtol=1e-11,
                               atol=1e-13)


def test_residual_block_finite_differences_and_per_example() -> None:
    block, params, xs = block_inputs()
    check_vjp(block, params, xs)
    model = L.Sequential(block, L.GlobalAvgPool(), L.Dense(1))
    _, head = model.init(KEY, ((None, 5, 5, 4), (None, 6)))
    params = (params, head[1], fd.tree.astype(head[2], np.float64))
    target = np.zeros((3, 1))
    each = fd.per_example_grad(model, fd.losses.mse)(params, xs, target)
    grad = fd.grad(model, fd.losses.mse)
    for n in range(3):
        one = grad(params, (xs[0][n:n + 1], xs[1][n:n + 1]), target[n:n + 1])
        for a, b in zip(fd.tree.leaves(each), fd.tree.leaves(one)):
            np.testing.assert_allclose(a[n], b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("shapes", [((0, 4, 5, 6), (0, 1, 1, 6)),   # an empty batch
                                    ((2, 3, 0), (2, 1, 0)),         # an empty last axis
                                    ((2, 0, 3), (2, 1, 3))], ids=str)  # broadcast to 0
def test_empty_arrays_give_zero_cotangents_of_each_shape(
        shapes: tuple[tuple[int, ...], ...]) -> None:
    # the block row sum reshaped dy to (pre, -1, post), which an empty dy cannot infer
    xs = tuple(np.ones(s) for s in shapes)
    y, pullback = L.FanInSum(broadcast=True).vjp((), xs)
    assert y.shape == np.broadcast_shapes(*shapes)
    _, dxs = pullback(np.ones(y.shape))
    for dx, s in zip(dxs, shapes):
        assert dx.shape == s and dx.dtype == np.float64
        np.testing.assert_array_equal(dx, np.zeros(s))  # a sum over no entries
