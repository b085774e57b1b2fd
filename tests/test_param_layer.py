"""layers.Param: a learned array independent of the input (torch's nn.Parameter log_std,
flax's self.param), one copy per example. Finite differences in float64, the gradient as
the sum over the batch (per example, each row's own), dx zero, a Gaussian policy's
log-std head against torch, float32 kept, bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest
from _torch_util import numpy_of, t64

import funcdl as fd
from funcdl import initializers as I
from funcdl import layers as L
from funcdl.testing import check_layer, check_vjp


def test_apply_repeats_the_value_per_example() -> None:
    layer = L.Param((2, 3), init=I.normal(1.0))
    out_shape, params = layer.init(fd.random.key(0), (None, 5))
    assert out_shape == (None, 2, 3) and params["value"].shape == (2, 3)
    assert params["value"].dtype == np.float32
    y = layer.apply(params, np.ones((4, 5), np.float32))
    assert y.shape == (4, 2, 3) and y.dtype == np.float32
    assert all(np.array_equal(row, params["value"]) for row in y)
    y[0] = 7.0  # the caller's copy: the params are untouched
    assert not (params["value"] == 7.0).any()
    assert not L.Param(3).init(fd.random.key(0), (None, 5))[1]["value"].any()  # zeros


def test_vjp_sums_over_the_batch_and_gives_zero_dx() -> None:
    layer = L.Param((3,))
    _, params = layer.init(fd.random.key(0), (7, 2))
    params = fd.tree.astype(params, np.float64)
    x = fd.random.normal(fd.random.key(1), (4, 2), np.float64)
    check_vjp(layer, params, x)
    check_layer(layer, (None, 2))
    _, pullback = layer.vjp(params, x)
    dy = fd.random.normal(fd.random.key(2), (4, 3), np.float64)
    dparams, dx = pullback(dy)
    np.testing.assert_allclose(dparams["value"], dy.sum(0), rtol=1e-15)  # not dy.mean(0)
    assert dx.shape == x.shape and dx.dtype == x.dtype and not dx.any()
    assert pullback(dy, need_dx=False)[1] is None


def test_per_example_gradients_are_each_rows_cotangent() -> None:
    # a heteroscedastic head: the variance softplus(Param), shared by every example
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Dense(3), L.Sequential(
        L.Param((3,), init=I.constant(0.5)), L.Softplus())))
    _, params = model.init(fd.random.key(0), (None, 2))
    x = fd.random.normal(fd.random.key(1), (5, 2))
    t = fd.random.normal(fd.random.key(2), (5, 3))
    loss = fd.losses.combine((fd.losses.gaussian_nll, (0, 1)))
    _, each = fd.per_example_value_and_grad(model, loss)(params, x, (t,))
    _, total = fd.value_and_grad(model, loss)(params, x, (t,))
    got = each[1][1][0]["value"]
    assert got.shape == (5, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got.mean(0), total[1][1][0]["value"], rtol=1e-5, atol=1e-7)
    for i in range(5):  # each row's gradient, as a call on that row alone
        _, one = fd.value_and_grad(model, loss)(params, x[i:i + 1], (t[i:i + 1],))
        np.testing.assert_allclose(got[i], one[1][1][0]["value"], rtol=1e-5, atol=1e-7)


def test_gaussian_policy_log_std_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    # a state-independent log-std (CleanRL's continuous PPO): -log N(a; mu, e^log_std)
    policy = L.Sequential(L.FanOut(2), L.Parallel(L.Dense(2), L.Param((2,),
                                                                      init=I.constant(-0.3))))
    _, params = policy.init(fd.random.key(0), (None, 3))
    params = fd.tree.astype(params, np.float64)
    obs = fd.random.normal(fd.random.key(1), (6, 3), np.float64)
    act = fd.random.normal(fd.random.key(2), (6, 2), np.float64)

    def nll_vjp(pred, a):
        mu, log_std = pred
        z = (a - mu) * np.exp(-log_std)
        n = len(a)
        value = float((0.5 * z ** 2 + log_std + 0.5 * np.log(2 * np.pi)).sum(-1).mean())
        return value, lambda g=1.0: (-g * z * np.exp(-log_std) / n, g * (1 - z ** 2) / n)

    value, grads = fd.value_and_grad(policy, fd.losses.Loss("nll", nll_vjp))(params, obs, act)
    w, b, log_std = (t64(params[1][0]["w"], True), t64(params[1][0]["b"], True),
                     t64(params[1][1]["value"], True))
    dist = torch.distributions.Normal(t64(obs) @ w + b, log_std.exp().expand(6, 2))
    want = -dist.log_prob(t64(act)).sum(-1).mean()
    want.backward()
    assert value == pytest.approx(float(want.detach()), rel=1e-13)
    np.testing.assert_allclose(grads[1][1]["value"], numpy_of(log_std.grad), rtol=1e-12)
    np.testing.assert_allclose(grads[1][0]["w"], numpy_of(w.grad), rtol=1e-12)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="Param: shape must be an int or a tuple"):
        L.Param("3")
    with pytest.raises(ValueError, match="Param: each entry of shape must be >= 0"):
        L.Param((2, -1))
    with pytest.raises(TypeError, match=r"Param\(\(3,\)\): init=initializers.normal is the"):
        L.Param(3, init=I.normal)
    layer = L.Param((3,))
    _, params = layer.init(fd.random.key(0), (None, 2))
    with pytest.raises(ValueError, match=r"Param\(\(3,\)\): params\['value'\] must have shape"):
        layer.apply({"value": np.zeros(4, np.float32)}, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"Param\(\(3,\)\): expected an input \(N, \.\.\.\)"):
        layer.apply(params, np.float32(1.0))
    with pytest.raises(ValueError, match=r"Param\(\(3,\)\): pullback expected dy of shape"):
        layer.vjp(params, np.ones((2, 2), np.float32))[1](np.ones((2, 4)))
