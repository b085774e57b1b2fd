"""GroupNorm and BatchNorm's momentum=None and track_running_stats=False against PyTorch in
float64 (skipped without torch): outputs, input and weight/bias gradients on channels-last
input against torch's channels-first (NHWC <-> NCHW), running statistics and their count
over several batches, inference after them."""

from __future__ import annotations

import numpy as np
import pytest
from _norm_util import EPS, _bn_setup, _normal

from funcdl.layers.groupnorm import GroupNorm
from funcdl.layers.norm import BatchNorm

torch = pytest.importorskip("torch")

TOL = {"rtol": 1e-10, "atol": 1e-12}


def to_torch(a):
    """Channels-last (N, ..., C) to PyTorch's (N, C, ...), as a float64 tensor."""
    return torch.from_numpy(np.moveaxis(a, -1, 1).copy())


def from_torch(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def set_affine(module, params):
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(params["scale"]))
        module.bias.copy_(torch.from_numpy(params["bias"]))


@pytest.mark.parametrize(("groups", "shape"), [
    (2, (5, 6)), (6, (3, 6)), (1, (4, 7, 3)), (3, (2, 4, 5, 6)), (4, (3, 3, 4, 8)),
    (2, (2, 2, 3, 2, 4)),
])
@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_matches_torch(groups, shape, affine):
    c = shape[-1]
    layer = GroupNorm(groups, affine=affine)
    params = {"scale": _normal(1, (c,), 0.5, 1.0), "bias": _normal(2, (c,))} if affine else ()
    ref = torch.nn.GroupNorm(groups, c, eps=EPS, affine=affine).double()
    if affine:
        set_affine(ref, params)
    x, dy = _normal(3, shape, 2.0, 0.5), _normal(4, shape)
    xt = to_torch(x).requires_grad_(True)
    out = ref(xt)
    out.backward(to_torch(dy))
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(dy)
    # (G = C: one value per group when there is no spatial axis, x̂ = 0 from rounding noise)
    np.testing.assert_allclose(y, from_torch(out), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, from_torch(xt.grad), rtol=1e-9, atol=1e-10)
    if affine:
        np.testing.assert_allclose(grads["scale"], ref.weight.grad.numpy(), **TOL)
        np.testing.assert_allclose(grads["bias"], ref.bias.grad.numpy(), **TOL)
    else:
        assert grads == ()
    np.testing.assert_array_equal(layer.apply(params, x), y)


@pytest.mark.parametrize(("shape", "kind"), [((6, 3), "1d"), ((4, 3, 3, 2), "2d")])
def test_batchnorm_momentum_none_matches_torch(shape, kind):
    layer = BatchNorm(momentum=None)
    params, state, _ = _bn_setup(BatchNorm(), (None, *shape[1:]), shape[0])
    c = shape[-1]
    state = {**state, "count": np.zeros((), np.int64)}
    bn = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(
        c, momentum=None, eps=EPS).double()
    set_affine(bn, params)
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(state["mean"]))
        bn.running_var.copy_(torch.from_numpy(state["var"]))
    for step in range(4):
        x, dy = _normal(20 + step, shape, 1.5 + step, step - 1.0), _normal(30 + step, shape)
        bn.zero_grad()
        xt = to_torch(x).requires_grad_(True)
        out = bn.train()(xt)
        out.backward(to_torch(dy))
        y, pullback, state = layer.vjp(params, x, state=state, train=True)
        grads, dx = pullback(dy)
        np.testing.assert_allclose(y, from_torch(out), **TOL)
        np.testing.assert_allclose(dx, from_torch(xt.grad), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["scale"], bn.weight.grad.numpy(), **TOL)
        np.testing.assert_allclose(grads["bias"], bn.bias.grad.numpy(), **TOL)
        np.testing.assert_allclose(state["mean"], bn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["var"], bn.running_var.numpy(), rtol=1e-12)
        assert int(state["count"]) == int(bn.num_batches_tracked) == step + 1
    x = _normal(40, shape)
    with torch.no_grad():
        want = from_torch(bn.eval()(to_torch(x)))
    y, same = layer.apply(params, x, state=state)
    assert same is state
    np.testing.assert_allclose(y, want, **TOL)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_without_running_stats_matches_torch_in_both_modes(affine):
    shape = (4, 3, 2, 5)
    layer = BatchNorm(track_running_stats=False, affine=affine)
    params, _, _ = _bn_setup(BatchNorm(), (None, *shape[1:]), shape[0])
    bn = torch.nn.BatchNorm2d(5, eps=EPS, affine=affine, track_running_stats=False).double()
    if affine:
        set_affine(bn, params)
    else:
        params = ()
    assert bn.running_mean is None
    for mode, train in (("train", True), ("eval", False)):
        x, dy = _normal(5, shape, 2.0, 1.0), _normal(6, shape)
        if affine:
            bn.zero_grad()
        xt = to_torch(x).requires_grad_(True)
        out = getattr(bn, mode)()(xt)
        out.backward(to_torch(dy))
        y, pullback = layer.vjp(params, x, train=train)
        grads, dx = pullback(dy)
        np.testing.assert_allclose(y, from_torch(out), **TOL)
        np.testing.assert_allclose(dx, from_torch(xt.grad), rtol=1e-9, atol=1e-12)
        if affine:
            for k, t in (("scale", bn.weight), ("bias", bn.bias)):
                np.testing.assert_allclose(grads[k], t.grad.numpy(), **TOL)
        np.testing.assert_array_equal(layer.apply(params, x, train=train), y)
