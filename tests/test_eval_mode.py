"""Eval: a part of a model in inference mode while the call trains. BatchNorm inside keeps
its running statistics (used, not moved) and Dropout inside drops nothing under
``train=True``; the output, state and gradients equal the child's own at ``train=False``;
finite differences in float64; float32 kept; per-example grads through it; a fine-tuning run
(frozen-statistics backbone, head trained, param groups at two rates) equal to PyTorch's
``backbone.eval()`` in float64; bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest
from _torch_util import numpy_of, one_thread, t64

import funcdl as fd
from funcdl import optim, random
from funcdl.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Eval,
    GlobalAvgPool,
    ReLU,
    Sequential,
    Tanh,
)
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)


def rand(*shape, dtype=np.float64, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def backbone():
    return Sequential(Conv2D(4, 3, padding=1, use_bias=False), BatchNorm(), ReLU(),
                      GlobalAvgPool())


def trained_state(dtype=np.float64):
    """Running statistics away from init's (0, 1), so that using them shows."""
    bn = {"mean": np.linspace(-0.3, 0.2, 4).astype(dtype),
          "var": np.linspace(0.5, 1.7, 4).astype(dtype)}
    return ((), bn, (), ())


def setup(dtype=np.float64):
    _, params, _ = backbone().init(KEY, (None, 6, 6, 2))
    return fd.tree.astype(params, dtype), trained_state(dtype), rand(5, 6, 6, 2, dtype=dtype)


def moved_affine(params):
    """BatchNorm's scale and bias away from init's (1, 0)."""
    return fd.tree.map_with_path(lambda path, a: a + 0.2 * rand(*a.shape, seed=7)
                                 if "scale" in path or "bias" in path else a, params)


def leaves_equal(a, b):
    la, lb = fd.tree.leaves(a), fd.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(la, lb))


def test_train_call_is_the_childs_inference():
    params, state, x = setup()
    dy = rand(5, 4, seed=2)
    y0, pb0, _ = backbone().vjp(params, x, state=state, train=False)
    for train in (True, False):
        y1, pb1, s1 = Eval(backbone()).vjp(params, x, state=state, train=train, key=KEY)
        assert np.array_equal(y0, y1)
        assert s1 is state and leaves_equal(s1, state)  # not moved
        assert leaves_equal(pb0(dy), pb1(dy))
        y2, s2 = Eval(backbone()).apply(params, x, state=state, train=train)
        assert np.array_equal(y0, y2) and s2 is state
    # and not the batch statistics a train call of the bare child uses
    y_train, _ = backbone().apply(params, x, state=state, train=True)
    assert not np.allclose(y_train, y0)


def test_dropout_inside_drops_nothing():
    x = rand(4, 8, dtype=np.float32)
    y = Eval(Dropout(0.5)).apply((), x, train=True)  # no key needed: inference
    assert np.array_equal(y, x)
    model = Sequential(Dense(3), Dropout(0.9))
    _, params = model.init(KEY, (None, 8))
    y2, _ = Eval(model).vjp(params, x, train=True, key=KEY)
    assert np.array_equal(y2, model.apply(params, x))  # the inference output, all kept


def test_same_params_state_and_shapes_as_the_child():
    a, b = backbone().init(KEY, (None, 6, 6, 2)), Eval(backbone()).init(KEY, (None, 6, 6, 2))
    assert a[0] == b[0] and leaves_equal(a[1:], b[1:])
    assert fd.tree.structure(a[2]) == fd.tree.structure(b[2])  # the child's own, no wrapping
    assert Eval(backbone()).stateful and not Eval(Dense(3)).stateful
    out, params = Eval(Dense(3)).init(KEY, (None, 5))  # stateless: the plain signatures
    assert out == (None, 3) and Eval(Dense(3)).apply(params, rand(2, 5)).shape == (2, 3)


@pytest.mark.parametrize("train", [True, False])
def test_vjp_finite_differences(train):
    params, state, x = setup()
    check_vjp(Eval(backbone()), moved_affine(params), x, state=state, train=train)
    check_layer(Eval(Sequential(Dense(5), Tanh(), BatchNorm())), (None, 3))


def test_gradient_sign_and_factor():
    """BatchNorm at inference: dx = dy·scale/sqrt(var + eps), dscale = Σ dy·x̂, through Eval
    at train=True (a wrong sign, factor or the batch statistics' rule would show)."""
    params = {"scale": np.array([2.0, -1.0, 0.5]), "bias": np.zeros(3)}
    state = {"mean": np.array([0.5, -1.0, 0.0]), "var": np.array([4.0, 1.0, 0.25])}
    x, dy = rand(4, 3), rand(4, 3, seed=5)
    _, pullback, _ = Eval(BatchNorm()).vjp(params, x, state=state, train=True)
    dparams, dx = pullback(dy)
    std = np.sqrt(state["var"] + 1e-5)
    assert np.allclose(dx, dy * params["scale"] / std, rtol=1e-14)
    xhat = (x - state["mean"]) / std
    assert np.allclose(dparams["scale"], (dy * xhat).sum(0), rtol=1e-14)
    assert np.allclose(dparams["bias"], dy.sum(0), rtol=1e-14)


def test_float32_kept():
    params, state, x = setup(np.float32)
    model = Sequential(Eval(backbone()), Dense(3))
    _, p, _ = model.init(KEY, (None, 6, 6, 2))
    p = (params, p[1])
    (_, new_state), grads = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)(
        p, x, np.arange(5) % 3, state=(state, ()))
    assert {a.dtype for a in fd.tree.leaves((grads, new_state))} == {np.dtype(np.float32)}
    assert new_state[0] is state


def test_per_example_grads_through_it():
    """BatchNorm in training refuses per-example grads; held at inference by Eval, it has
    them: entry n is N times example n's share, their mean the batch's gradient."""
    params, state, x = setup()
    model = Sequential(Eval(backbone()), Dense(3))
    p = (params, fd.tree.astype(model.init(KEY, (None, 6, 6, 2))[1][1], np.float64))
    labels, s = np.arange(5) % 3, (state, ())
    each, s1 = fd.per_example_grad(model, fd.losses.softmax_cross_entropy)(
        p, x, labels, state=s)
    whole, s2 = fd.grad(model, fd.losses.softmax_cross_entropy)(p, x, labels, state=s)
    assert s1[0] is state and s2[0] is state
    for e, w in zip(fd.tree.leaves(each), fd.tree.leaves(whole)):
        assert e.shape == (5, *w.shape)
        assert np.allclose(e.mean(0), w, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="BatchNorm"):
        fd.per_example_grad(Sequential(backbone(), Dense(3)), fd.losses.softmax_cross_entropy)(
            p, x, labels, state=s)


def test_bad_arguments_named():
    with pytest.raises(TypeError, match=r"Eval: expected a layer.*got"):
        Eval(ReLU)  # the constructor, not a layer
    with pytest.raises(TypeError, match="Eval"):
        Eval(backbone()).apply(setup()[0], rand(2, 6, 6, 2))  # no state=
    params, state, _ = setup()
    with pytest.raises(ValueError, match=r"Eval.*Conv2D.*\(N, H, W, 2\).*\(2, 6, 6, 3\)"):
        Eval(backbone()).apply(params, rand(2, 6, 6, 3), state=state)
    with pytest.raises((TypeError, ValueError), match=r"Eval.*train"):
        Eval(backbone()).apply(params, rand(2, 6, 6, 2), state=state, train="no")


def test_fine_tuning_matches_torch_backbone_eval():
    """Three SGD-momentum steps with weight decay, the backbone's BatchNorm in eval mode and
    trained at a tenth of the head's rate (torch's param groups), in float64."""
    torch = pytest.importorskip("torch")
    params, state, _ = setup()
    model = Sequential(Eval(backbone()), Dense(3))
    head0 = fd.tree.astype(model.init(KEY, (None, 6, 6, 2))[1][1], np.float64)
    p, s = (moved_affine(params), head0), (state, ())
    xs, ys = [rand(8, 6, 6, 2, seed=10 + i) for i in range(3)], [np.arange(8) % 3] * 3
    opt = optim.partition({"bb": optim.sgd(0.01, momentum=0.9, weight_decay=1e-2),
                           "head": optim.sgd(0.1, momentum=0.9, weight_decay=1e-2)}, ("bb", "head"))
    ost, losses = opt.init(p), []
    for x, y in zip(xs, ys):
        (loss, s), g = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)(p, x, y, state=s)
        u, ost = opt.update(ost, g, p)
        p = optim.apply_updates(p, u)
        losses.append(loss)
    assert s[0] is state

    with one_thread():
        conv, bn = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4)
        fc = torch.nn.Linear(4, 3)
        conv.double(), bn.double(), fc.double()
        with torch.no_grad():
            bb0 = moved_affine(params)
            conv.weight.copy_(t64(bb0[0]["w"].transpose(3, 2, 0, 1)))
            bn.weight.copy_(t64(bb0[1]["scale"])), bn.bias.copy_(t64(bb0[1]["bias"]))
            bn.running_mean.copy_(t64(state[1]["mean"]))
            bn.running_var.copy_(t64(state[1]["var"]))
            fc.weight.copy_(t64(head0["w"].T)), fc.bias.copy_(t64(head0["b"]))
        topt = torch.optim.SGD([{"params": [conv.weight, bn.weight, bn.bias], "lr": 0.01},
                                {"params": [fc.weight, fc.bias], "lr": 0.1}],
                               momentum=0.9, weight_decay=1e-2)
        bn.eval()
        for x, y, loss in zip(xs, ys, losses):
            topt.zero_grad()
            h = torch.relu(bn(conv(t64(x.transpose(0, 3, 1, 2))))).mean((2, 3))
            t_loss = torch.nn.functional.cross_entropy(fc(h), torch.tensor(y))
            t_loss.backward()
            topt.step()
            assert abs(t_loss.item() - loss) < 1e-13
    assert np.allclose(p[0][0]["w"].transpose(3, 2, 0, 1), numpy_of(conv.weight), atol=1e-13)
    assert np.allclose(p[0][1]["scale"], numpy_of(bn.weight), atol=1e-13)
    assert np.allclose(p[1]["w"].T, numpy_of(fc.weight), atol=1e-13)
    assert np.array_equal(numpy_of(bn.running_mean), state[1]["mean"])  # torch's not moved
