"""An empty batch through BatchNorm in training (PyTorch's: an empty output, zero grads, the
running statistics kept, its batch count moved on); an empty (0, n) leaf through muon; inf
params meeting weight decay (a NaN step, silently, as every other transform's)."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim, random
from funcdl.layers import BatchNorm


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(0, 3), (0, 4, 4, 3), (2, 0, 4, 3)])
def test_batchnorm_trains_on_an_empty_batch_as_torch(momentum, shape):
    layer = BatchNorm(momentum=momentum)
    _, params, state = layer.init(random.key(0), (None, *shape[1:]))
    state = {**state, "mean": np.full(3, 0.5, np.float32), "var": np.full(3, 2.0, np.float32)}
    x = np.zeros(shape, np.float32)
    y, new = layer.apply(params, x, state=state, train=True)
    y2, pullback, new2 = layer.vjp(params, x, state=state, train=True)
    assert y.shape == y2.shape == shape and y.dtype == np.float32
    for s in (new, new2):
        np.testing.assert_array_equal(s["mean"], 0.5)
        np.testing.assert_array_equal(s["var"], 2.0)
        if momentum is None:
            assert s["count"] == 1  # torch's num_batches_tracked counts it
    grads, dx = pullback(np.zeros(shape, np.float32))
    assert dx.shape == shape and dx.dtype == np.float32
    for k in ("scale", "bias"):
        np.testing.assert_array_equal(grads[k], 0.0)
        assert grads[k].dtype == np.float32
    # one value per channel is still refused, as torch's
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        layer.apply(params, np.zeros((1, 3), np.float32), state=state, train=True)


def test_batchnorm_empty_batch_against_torch():
    torch = pytest.importorskip("torch")
    bn = torch.nn.BatchNorm2d(3, momentum=None).double()
    bn.running_mean.fill_(0.5)
    xt = torch.zeros(0, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    bn.train()
    bn(xt).sum().backward()
    layer = BatchNorm(momentum=None)
    _, params, state = layer.init(random.key(0), (None, 4, 4, 3))
    state = {**state, "mean": np.full(3, 0.5)}
    _, pullback, new = layer.vjp(params, np.zeros((0, 4, 4, 3)), state=state, train=True)
    grads, _ = pullback(np.zeros((0, 4, 4, 3)))
    np.testing.assert_array_equal(new["mean"], bn.running_mean.numpy())
    np.testing.assert_array_equal(new["var"], bn.running_var.numpy())
    assert int(new["count"]) == int(bn.num_batches_tracked)
    np.testing.assert_array_equal(grads["scale"], bn.weight.grad.numpy())
    np.testing.assert_array_equal(grads["bias"], bn.bias.grad.numpy())


def test_batchnorm_without_running_stats_on_an_empty_batch():
    layer = BatchNorm(track_running_stats=False)
    _, params = layer.init(random.key(0), (None, 3))
    y, pullback = layer.vjp(params, np.zeros((0, 3), np.float32))
    grads, dx = pullback(np.zeros((0, 3), np.float32))
    assert y.shape == dx.shape == (0, 3)
    np.testing.assert_array_equal(grads["bias"], 0.0)


def test_muon_steps_with_an_empty_matrix_leaf():
    params = {"e": np.zeros((0, 4), np.float32), "w": np.ones((3, 4), np.float32)}
    opt = optim.muon(0.1)
    state = opt.init(params)
    updates, _ = opt.update(state, {"e": np.zeros((0, 4), np.float32),
                                    "w": np.full((3, 4), 0.5, np.float32)}, params)
    assert updates["e"].shape == (0, 4) and updates["e"].dtype == np.float32
    assert np.isfinite(updates["w"]).all() and np.abs(updates["w"]).max() > 0


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1, weight_decay=0.01),
                                  lambda: optim.sgd(0.1, momentum=0.9, weight_decay=0.01),
                                  lambda: optim.add_decayed_weights(0.01)],
                         ids=["sgd", "sgd-momentum", "add_decayed_weights"])
def test_weight_decay_on_inf_params_steps_nan_without_a_warning(make):
    opt = make()
    params = {"w": np.array([1.0, 2.0])}
    state = opt.init(params)
    grads = {"w": np.array([np.inf, 1.0])}
    for _ in range(2):  # the second step meets the -inf param the first made
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
    assert np.isnan(params["w"][0]) or np.isinf(params["w"][0])
    assert np.isfinite(params["w"][1])
