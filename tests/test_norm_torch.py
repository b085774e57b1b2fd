"""BatchNorm and LayerNorm against PyTorch in float64 (skipped without torch): outputs,
gradients and running statistics over several training steps, and a shared BatchNorm as a torch
module called twice."""

from __future__ import annotations

import numpy as np
import pytest
from _norm_util import EPS, _bn_setup, _normal

from funcdl import layers as L
from funcdl.layers.norm import BatchNorm, LayerNorm


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize(("axis", "shape", "kind"), [
    (-1, (6, 3), "1d"), (1, (4, 3, 5), "1d"), (-1, (2, 3, 4, 5), "2d"), (1, (2, 5, 3, 4), "2d"),
])
def test_batchnorm_matches_torch(torch, axis, shape, kind):
    layer = BatchNorm(momentum=0.2, axis=axis)
    params, state, _ = _bn_setup(layer, (None, *shape[1:]), shape[0])
    c = params["scale"].size
    bn = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(
        c, momentum=0.2, eps=EPS).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["scale"]))
        bn.bias.copy_(torch.from_numpy(params["bias"]))
        bn.running_mean.copy_(torch.from_numpy(state["mean"]))
        bn.running_var.copy_(torch.from_numpy(state["var"]))
    # torch wants channels on axis 1: NHWC -> NCHW
    to_torch = (0, 3, 1, 2) if axis == -1 and len(shape) == 4 else tuple(range(len(shape)))
    back = tuple(np.argsort(to_torch))
    for step in range(3):
        x = _normal(20 + step, shape, 1.5 + step, step)
        dy = _normal(30 + step, shape)
        bn.zero_grad()
        xt = torch.from_numpy(x.transpose(to_torch).copy()).requires_grad_(True)
        out = bn.train()(xt)
        out.backward(torch.from_numpy(dy.transpose(to_torch).copy()))
        y, pullback, state = layer.vjp(params, x, state=state, train=True)
        grads, dx = pullback(dy)
        np.testing.assert_allclose(y, out.detach().numpy().transpose(back), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy().transpose(back), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["scale"], bn.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(grads["bias"], bn.bias.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(state["mean"], bn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["var"], bn.running_var.numpy(), rtol=1e-12)
    x = _normal(40, shape)
    with torch.no_grad():
        ref = bn.eval()(torch.from_numpy(x.transpose(to_torch).copy())).numpy()
    np.testing.assert_allclose(layer.apply(params, x, state=state)[0], ref.transpose(back),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("shape", "normalized"), [((4, 6), (6,)), ((2, 3, 5), (3, 5))])
def test_layernorm_matches_torch(torch, shape, normalized):
    axis = tuple(range(-len(normalized), 0))
    layer = LayerNorm(axis=axis)
    params = {"scale": _normal(1, normalized), "bias": _normal(2, normalized)}
    x, dy = _normal(3, shape, 2.0, 1.0), _normal(4, shape)
    ln = torch.nn.LayerNorm(normalized, eps=EPS).double()
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(params["scale"]))
        ln.bias.copy_(torch.from_numpy(params["bias"]))
    xt = torch.from_numpy(x).requires_grad_(True)
    out = ln(xt)
    out.backward(torch.from_numpy(dy))
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["scale"], ln.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grads["bias"], ln.bias.grad.numpy(), rtol=1e-10)


# ---------------------------------------------------------------------------- shared

def test_shared_batchnorm_matches_torch_module_called_twice(torch):
    layer = L.Shared(BatchNorm(momentum=0.2))
    params, state, _ = _bn_setup(BatchNorm(momentum=0.2), (None, 3), 6)
    bn = torch.nn.BatchNorm1d(3, momentum=0.2, eps=EPS).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["scale"]))
        bn.bias.copy_(torch.from_numpy(params["bias"]))
        bn.running_mean.copy_(torch.from_numpy(state["mean"]))
        bn.running_var.copy_(torch.from_numpy(state["var"]))
    x0, x1 = _normal(1, (6, 3), 2.0, 1.0), _normal(2, (4, 3), 0.5, -1.0)
    dy0, dy1 = _normal(3, (6, 3)), _normal(4, (4, 3))
    t0, t1 = (torch.from_numpy(x).requires_grad_(True) for x in (x0, x1))
    o0, o1 = bn.train()(t0), bn(t1)
    ((o0 * torch.from_numpy(dy0)).sum() + (o1 * torch.from_numpy(dy1)).sum()).backward()
    (y0, y1), pullback, (new,) = layer.vjp(params, (x0, x1), state=(state,), train=True)
    grads, (dx0, dx1) = pullback((dy0, dy1))
    for ours, theirs in [(y0, o0), (y1, o1), (dx0, t0.grad), (dx1, t1.grad),
                         (grads["scale"], bn.weight.grad), (grads["bias"], bn.bias.grad),
                         (new["mean"], bn.running_mean), (new["var"], bn.running_var)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
