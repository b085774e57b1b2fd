"""losses.nll, PyTorch's nll_loss with the classes last: by hand, as LogSoftmax then nll
against softmax_cross_entropy, by finite differences, against torch where it is installed,
and its bad inputs."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import funcdl as fd
from funcdl import losses, testing

NLL = losses.nll
RNG = np.random.default_rng(1)
Z = RNG.normal(size=(5, 4)) * 2
LP = Z - Z.max(-1, keepdims=True)
LP = LP - np.log(np.exp(LP).sum(-1, keepdims=True))
Y = np.array([0, 3, 1, 3, 2])
W = np.array([0.5, 2.0, 1.5, 0.25])


def test_by_hand_mean_sum_none_and_the_gradient_sits_at_the_label():
    picked = LP[np.arange(5), Y]
    assert NLL(LP, Y) == pytest.approx(-picked.mean(), rel=1e-14)
    assert NLL(LP, Y, reduction="sum") == pytest.approx(-picked.sum(), rel=1e-14)
    np.testing.assert_allclose(NLL(LP, Y, reduction="none"), -picked, rtol=1e-14)
    # d(mean)/dlp = -e_y / N: the sign and the 1/N both show
    np.testing.assert_array_equal(NLL.vjp(LP, Y)[1](), -np.eye(4)[Y] / 5)
    np.testing.assert_array_equal(NLL.vjp(LP, Y, reduction="sum")[1](2.0), -2 * np.eye(4)[Y])
    c = RNG.normal(size=5)
    np.testing.assert_array_equal(NLL.vjp(LP, Y, reduction="none")[1](c),
                                  -c[:, None] * np.eye(4)[Y])


def test_weights_and_ignore_index_as_torch_defines_them():
    picked = LP[np.arange(5), Y]
    assert NLL(LP, Y, weight=W) == pytest.approx((-W[Y] * picked).sum() / W[Y].sum(),
                                                 rel=1e-14)
    np.testing.assert_allclose(NLL.vjp(LP, Y, weight=W)[1](),
                               -(W[Y] / W[Y].sum())[:, None] * np.eye(4)[Y], rtol=1e-14)
    y = np.array([0, -100, 1, 3, -100])
    kept = [0, 2, 3]
    value, pullback = NLL.vjp(LP, y, weight=W, ignore_index=-100)
    terms = -W[y[kept]] * LP[kept, y[kept]]
    assert value == pytest.approx(terms.sum() / W[y[kept]].sum(), rel=1e-14)
    g = pullback()
    assert not g[[1, 4]].any()
    assert g[0, 0] == pytest.approx(-W[0] / W[y[kept]].sum(), rel=1e-14)


@pytest.mark.parametrize("kw", [{}, {"weight": W}, {"ignore_index": 3}])
def test_log_softmax_then_nll_is_the_cross_entropy_value_and_gradient(kw):
    model = fd.layers.LogSoftmax()
    params = model.init(fd.random.key(0), (None, 4))[1]
    (v1, (_, g1)), (v2, (_, g2)) = (
        fd.value_and_grad(model, functools.partial(loss, **kw), wrt_input=True)(params, Z, Y)
        for loss in (losses.softmax_cross_entropy, losses.nll))
    assert v2 == pytest.approx(v1, rel=1e-13)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"weight": W}, {"weight": W, "ignore_index": 1}])
def test_finite_differences(reduction, kw):
    testing.check_loss(NLL, LP, Y, reduction=reduction, **kw)
    # labels over more axes: (N, T, C) scores, (N, T) labels
    testing.check_loss(NLL, RNG.normal(size=(2, 3, 4)), RNG.integers(0, 4, (2, 3)),
                       reduction=reduction, **kw)


def test_float32_stays_float32():
    lp32 = LP.astype(np.float32)
    value, pullback = NLL.vjp(lp32, Y, weight=W.astype(np.float32))
    assert isinstance(value, float)
    assert pullback().dtype == np.float32
    assert NLL(lp32, Y, reduction="none").dtype == np.float32


@pytest.mark.parametrize("pred, target, kw, error, match", [
    (LP, Y.astype(float), {}, TypeError, r"nll: target must be integer class labels of "
                                         r"shape \(5,\), got dtype float64"),
    (LP, Y[:4], {}, ValueError, r"nll: integer labels must have shape \(5,\) for "
                                r"log-probabilities of shape \(5, 4\), got \(4,\)"),
    (LP, Y + 1, {}, ValueError, r"nll: labels must be in \[0, 4\), got values in \[1, 4\]"),
    (np.float64(1.0), 0, {}, ValueError, r"nll: log-probabilities need a class axis"),
    (LP, Y, {"weight": W[:3]}, ValueError, r"nll: weight must have shape \(4,\)"),
    (LP, np.full(5, 7), {"ignore_index": 7}, ValueError, r"nll: reduction='mean' divides by "
                                                         r"the weight of the examples not "
                                                         r"ignored, which is 0"),
    (LP.astype(int), Y, {}, TypeError, r"nll: pred must be a float array"),
])
def test_bad_inputs_are_named(pred, target, kw, error, match):
    with pytest.raises(error, match=match):
        NLL(pred, target, **kw)


def test_all_ignored_sums_to_zero():
    assert NLL(LP, np.full(5, 7), ignore_index=7, reduction="sum") == 0.0


@pytest.mark.parametrize("kw", [{}, {"weight": W}, {"ignore_index": 3},
                                {"weight": W, "ignore_index": 0}])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_against_torch(kw, reduction):
    torch = pytest.importorskip("torch")
    lp = torch.tensor(LP, requires_grad=True)
    tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
    out = torch.nn.functional.nll_loss(lp, torch.tensor(Y), reduction=reduction, **tkw)
    c = RNG.normal(size=5) if reduction == "none" else 1.0
    out.backward(torch.tensor(c) if reduction == "none" else None)
    value, pullback = NLL.vjp(LP, Y, reduction=reduction, **kw)
    np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(pullback(c), lp.grad.numpy(), rtol=1e-13, atol=1e-16)
