"""per_example_grad's two gaps found by a DP-SGD user: a funcdl loss bound with
reduction='sum' under the default loss_reduction='mean' (or the reverse) gave every entry
N times (1/N of) its example's gradient, silently; and a layer of one's own with params had
no way to give per-example gradients (``per_example_active``). Oracles: the loop over the
rows, and torch.func's vmap(grad) in float64."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.layers import Layer
from funcdl.testing import check_layer, check_vjp

N = 6


def _mlp(f64=True):
    model = L.Sequential(L.Dense(5), L.Tanh(), L.Dense(3))
    _, params = model.init(random.key(0), (None, 4))
    x = random.normal(random.key(1), (N, 4), np.float64 if f64 else np.float32)
    return model, tree.astype(params, np.float64) if f64 else params, x


# ---------------------------------------------------------------- reduction mismatch

SUMMED = [functools.partial(losses.mse, reduction="sum"),
          functools.partial(losses.huber, delta=0.5, reduction="sum"),
          functools.partial(losses.softmax_cross_entropy, reduction="sum")]


@pytest.mark.parametrize("loss", SUMMED, ids=lambda f: f.func.name)
def test_a_summed_loss_under_the_default_mean_is_refused(loss):
    model, _, _ = _mlp()
    with pytest.raises(ValueError, match=r"per_example_value_and_grad: the loss "
                       rf"{loss.func.name}\(.*reduction='sum'\) reduces over the batch by "
                       r"'sum', but loss_reduction='mean': each entry would be N times its "
                       r"example's gradient; pass loss_reduction='sum'"):
        fd.per_example_grad(model, loss)


@pytest.mark.parametrize("loss", [losses.mse, functools.partial(losses.mse, reduction="mean"),
                                  functools.partial(losses.kl_div, reduction="batchmean")],
                         ids=["bare", "bound mean", "batchmean"])
def test_a_mean_loss_under_loss_reduction_sum_is_refused(loss):
    model, _, _ = _mlp()
    with pytest.raises(ValueError, match=r"reduces over the batch by '(batch)?mean', but "
                       r"loss_reduction='sum': each entry would be 1/N of its example's "
                       r"gradient; pass loss_reduction='mean'"):
        fd.per_example_value_and_grad(model, loss, loss_reduction="sum")


def test_agreeing_reductions_give_each_example_its_own_gradient():
    model, params, x = _mlp()
    labels = np.arange(N) % 3
    g = fd.grad(model, losses.softmax_cross_entropy)
    mean = fd.per_example_grad(model, losses.softmax_cross_entropy)(params, x, labels)
    summed = fd.per_example_grad(
        model, functools.partial(losses.softmax_cross_entropy, reduction="sum"),
        loss_reduction="sum")(params, x, labels)
    for i in range(N):
        for a, b, want in zip(tree.leaves(mean), tree.leaves(summed),
                              tree.leaves(g(params, x[i:i + 1], labels[i:i + 1]))):
            np.testing.assert_allclose(a[i], want, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(b[i], want, rtol=1e-12, atol=1e-15)

# a combine's terms each reduce their own way: the check reads every term's reduction
SUM_MSE = functools.partial(losses.mse, reduction="sum")


def _two_heads():
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Dense(2), L.Dense(1)))
    _, params = model.init(random.key(0), (None, 4))
    x = random.normal(random.key(1), (N, 4), np.float64)
    t = (random.normal(random.key(2), (N, 2), np.float64),
         random.normal(random.key(3), (N, 1), np.float64))
    return model, tree.astype(params, np.float64), x, t


def test_a_combine_of_summed_terms_under_the_default_mean_is_refused():
    # before: each entry N times its example's gradient, silently
    model, params, x, t = _two_heads()
    loss = losses.combine((SUM_MSE, 0), (SUM_MSE, 1, 0.5))
    with pytest.raises(ValueError, match=r"the loss combine\(mse\(reduction='sum'\)@0, "
                                         r".*by 'sum', but loss_reduction='mean'.*"
                                         r"loss_reduction='sum'"):
        fd.per_example_grad(model, loss)(params, x, t)


def test_a_combine_of_mixed_reductions_is_refused_whatever_loss_reduction():
    model, params, x, t = _two_heads()
    loss = losses.combine((SUM_MSE, 0), (losses.mse, 1))
    for reduction in ("mean", "sum"):
        with pytest.raises(ValueError, match=r"terms reducing over the batch by 'mean' "
                                             r"and by 'sum'"):
            fd.per_example_grad(model, loss, loss_reduction=reduction)(params, x, t)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_combine_of_agreeing_terms_gives_each_example_its_own_gradient(reduction):
    model, params, x, t = _two_heads()
    term = functools.partial(losses.mse, reduction=reduction)
    loss = losses.combine((term, 0), (term, 1, 0.5))
    got = fd.per_example_grad(model, loss, loss_reduction=reduction)(params, x, t)
    for i in range(N):  # the loop's gradient of example i alone
        own = fd.grad(model, loss)(params, x[i:i + 1], (t[0][i:i + 1], t[1][i:i + 1]))
        for g, o in zip(tree.leaves(got), tree.leaves(own)):
            np.testing.assert_allclose(g[i], o, rtol=1e-12, atol=1e-14)


def test_a_loss_of_ones_own_is_taken_at_its_word():
    # its reduction cannot be read: loss_reduction says it, as Opacus' does
    model, params, x = _mlp()
    t = np.zeros((N, 3))

    def vjp(pred, target):
        d = pred - target
        return float((d * d).sum()), lambda g=1.0: 2 * g * d

    summed = losses.Loss("summed_squares", vjp)
    got = fd.per_example_grad(model, summed, loss_reduction="sum")(params, x, t)
    one = fd.grad(model, summed)(params, x[2:3], t[2:3])
    for a, want in zip(tree.leaves(got), tree.leaves(one)):
        np.testing.assert_allclose(a[2], want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- a layer of one's own

def Fourier(m):
    """y = [sin(x B), cos(x B)], (N, D) -> (N, 2m); dB = xᵀ (c·dy_s - s·dy_c), per example
    the outer product of each row."""
    def init(key, in_shape):
        return (*in_shape[:-1], 2 * m), {"B": random.normal(key, (in_shape[-1], m))}

    def apply(params, x, *, key=None, train=False):
        z = x @ params["B"]
        return np.concatenate([np.sin(z), np.cos(z)], axis=-1)

    def vjp(params, x, *, key=None, train=False):
        z = x @ params["B"]
        s, c = np.sin(z), np.cos(z)

        def pullback(dy):
            dz = c * dy[..., :m] - s * dy[..., m:]
            each = fd.per_example_active()
            db = np.einsum("ni,nj->nij", x, dz) if each else x.T @ dz
            return {"B": db}, dz @ params["B"].T

        return np.concatenate([s, c], axis=-1), pullback

    return Layer(init, apply, vjp, name=f"Fourier({m})")


def _fourier_model():
    model = L.Sequential(Fourier(4), L.Dense(6), L.Tanh(), L.Dense(2))
    _, params = model.init(random.key(3), (None, 3))
    x = random.normal(random.key(4), (N, 3), np.float64)
    t = random.normal(random.key(5), (N, 2), np.float64)
    return model, tree.astype(params, np.float64), x, t


def test_the_flag_is_off_outside_and_in_a_plain_grad():
    assert fd.per_example_active() is False
    assert fd.autodiff.per_example_active is fd.per_example_active
    seen = []

    def init(key, in_shape):
        return in_shape, ()

    def vjp(params, x, *, key=None, train=False):
        seen.append(fd.per_example_active())
        return x, lambda dy: ((), dy)

    spy = Layer(init, lambda p, x, **kw: x, vjp, name="Spy")
    model = L.Sequential(L.Dense(2), spy)
    _, params = model.init(random.key(0), (None, 3))
    x, t = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    fd.grad(model, losses.mse)(params, x, t)
    fd.per_example_grad(model, losses.mse)(params, x, t)
    assert seen == [False, True]


def test_a_layer_of_ones_own_gives_per_example_grads_equal_to_the_loop():
    model, params, x, t = _fourier_model()
    check_vjp(model, params, x)
    check_layer(Fourier(4), (None, 3))
    got = fd.per_example_grad(model, losses.mse)(params, x, t)
    g = fd.grad(model, losses.mse)
    assert got[0]["B"].shape == (N, 3, 4)
    for i in range(N):
        for a, want in zip(tree.leaves(got), tree.leaves(g(params, x[i:i + 1], t[i:i + 1]))):
            np.testing.assert_allclose(a[i], want, rtol=1e-12, atol=1e-15)


def test_a_layer_of_ones_own_keeps_float32():
    model, params, _, _ = _fourier_model()
    p32 = tree.astype(params, np.float32)
    x = random.normal(random.key(6), (N, 3))
    got = fd.per_example_grad(model, losses.mse)(p32, x, np.zeros((N, 2), np.float32))
    assert {leaf.dtype for leaf in tree.leaves(got)} == {np.dtype(np.float32)}


def test_a_layer_without_the_branch_is_named_with_the_way_out():
    model = L.Sequential(L.Dense(3), Layer(
        lambda key, s: (s, {"a": np.ones(s[-1], np.float32)}),
        lambda p, x, **kw: x * p["a"],
        lambda p, x, **kw: (x * p["a"], lambda dy: ({"a": (dy * x).sum(0)}, dy * p["a"])),
        name="Scale"))
    _, params = model.init(random.key(0), (None, 2))
    with pytest.raises(ValueError, match=r"params\[1\]\['a'\] came back with gradient shape "
                       r"\(3,\), not \(4, \*\(3,\)\) .*fd\.autodiff\.per_example_active\(\)"):
        fd.per_example_grad(model, losses.mse)(params, np.ones((4, 2), np.float32),
                                               np.zeros((4, 3), np.float32))


def test_a_layer_of_ones_own_against_torch_func():
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, grad, vmap

    model, params, x, t = _fourier_model()
    got = fd.per_example_grad(model, losses.mse)(params, x, t)

    B = torch.tensor(params[0]["B"])
    head = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(),
                               torch.nn.Linear(6, 2)).double()
    ps = {"B": B, "0.weight": torch.tensor(params[1]["w"].T), "0.bias":
          torch.tensor(params[1]["b"]), "2.weight": torch.tensor(params[3]["w"].T),
          "2.bias": torch.tensor(params[3]["b"])}

    def loss(ps, xi, ti):
        z = xi[None] @ ps["B"]
        h = torch.cat([torch.sin(z), torch.cos(z)], -1)
        out = functional_call(head, {k: v for k, v in ps.items() if k != "B"}, (h,))
        return ((out - ti[None]) ** 2).mean()

    want = vmap(grad(loss), in_dims=(None, 0, 0))(ps, torch.tensor(x), torch.tensor(t))
    np.testing.assert_allclose(got[0]["B"], want["B"].numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[1]["w"], want["0.weight"].numpy().transpose(0, 2, 1),
                               rtol=1e-12, atol=1e-15)
