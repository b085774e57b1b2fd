"""Property tests (hypothesis) of gradients: random layer and conv stacks pass
``check_vjp`` and keep float32; losses stay finite and warning-free at extreme inputs. Tree
round trips and optimizers: test_properties_trees.py.

Examples are few and small (the whole module runs in seconds); ``deadline=None`` because a
first call may import or warm up BLAS.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _properties_util import SMALL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.testing import check_vjp

KEY = random.key(0)
# check_vjp's finite differences run in float64; a wrong vjp is off by O(1), so these
# tolerances only absorb the differencing error of deep, badly conditioned stacks.
RTOL, ATOL = 1e-4, 1e-7


# ---------------------------------------------------------------------------- helpers

def assert_float32_throughout(model: Any, params: Any, x: np.ndarray, **kw: Any) -> None:
    """float32 params and input give float32 outputs, dparams and dx (no silent float64)."""
    y = model.apply(params, x, **kw)
    y = y[0] if model.stateful else y  # (y, new_state)
    y_vjp, pullback = model.vjp(params, x, **kw)[:2]
    assert y.dtype == np.float32, y.dtype
    assert y_vjp.dtype == np.float32, y_vjp.dtype
    np.testing.assert_array_equal(y, y_vjp)  # apply == vjp(...)[0], bit for bit
    dparams, dx = pullback(np.ones_like(y_vjp))
    for path, g in tree.leaves_with_path(dparams):
        assert np.asarray(g).dtype == np.float32, (path, np.asarray(g).dtype)
    assert dx.dtype == np.float32 and dx.shape == x.shape


# ---------------------------------------------------------------------------- (a) dense stacks

ACTIVATIONS: dict[str, Callable[[], L.Layer]] = {
    "tanh": L.Tanh, "sigmoid": L.Sigmoid, "softplus": L.Softplus, "gelu": L.GELU,
    "gelu-tanh": lambda: L.GELU(approximate=True), "silu": L.SiLU, "elu": L.ELU,
    "identity": L.Identity,
}
# Kinks (ReLU at 0) are only drawn right after a Dense, whose outputs are never exactly 0;
# after a normalisation or a softmax of width 1 the input to a kink can be exactly 0, where
# the function has no derivative and a finite difference rightly disagrees with any vjp.
KINKS: dict[str, Callable[[], L.Layer]] = {"relu": L.ReLU, "leaky-relu": lambda: L.LeakyReLU(0.1)}


@st.composite
def dense_stacks(draw: Any) -> tuple[L.Layer, int, int]:
    """``(model, input width, batch)``: a Sequential of 1-4 layers from the menu."""
    width = draw(st.integers(1, 5))
    batch = draw(st.integers(1, 5))  # an empty batch has nothing to check (refused)
    layers: list[L.Layer] = []
    w, prev = width, "input"
    for _ in range(draw(st.integers(1, 4))):
        menu = ["dense", "activation", "residual", "dropout", "softmax", "logsoftmax"]
        if prev == "dense":
            menu.append("kink")
        # LayerNorm over 2 features maps each row to about (-1, 1): its derivative grows
        # like 1/|a - b|^3 as the two features meet, and a finite difference there (seen:
        # BatchNorm then two LayerNorms of width 2) misses by 0.1% with no vjp at fault.
        if w >= 3:
            menu.append("layernorm")
        if batch >= 2:
            menu.append("batchnorm")
        kind = draw(st.sampled_from(menu))
        if kind == "dense":
            w = draw(st.integers(1, 5))
            layers.append(L.Dense(w))
        elif kind == "activation":
            layers.append(ACTIVATIONS[draw(st.sampled_from(sorted(ACTIVATIONS)))]())
        elif kind == "kink":
            layers.append(KINKS[draw(st.sampled_from(sorted(KINKS)))]())
        elif kind == "residual":
            act = draw(st.sampled_from(sorted({**ACTIVATIONS, **KINKS})))
            block = L.Sequential(L.Dense(draw(st.integers(1, 5))),
                                 {**ACTIVATIONS, **KINKS}[act](), L.Dense(w))
            layers.append(L.Residual(block))
        elif kind == "dropout":
            layers.append(L.Dropout(draw(st.sampled_from([0.0, 0.25, 0.5, 0.9]))))
        elif kind == "softmax":
            layers.append(L.Softmax())
        elif kind == "logsoftmax":
            layers.append(L.LogSoftmax())
        elif kind == "layernorm":
            layers.append(L.LayerNorm())
        else:
            layers.append(L.BatchNorm())
        prev = kind
    return L.Sequential(*layers), width, batch


@SMALL
@given(stack=dense_stacks(), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_random_dense_stacks_pass_check_vjp_and_keep_float32(stack, seed, scale):
    model, width, batch = stack
    k_init, k_x, k_call = random.split(random.key(seed), 3)
    out = model.init(k_init, (None, width))
    params, state = out[1], (out[2] if model.stateful else None)
    x = random.normal(k_x, (batch, width)) * np.float32(scale)
    kw = {"key": k_call, "train": True, **({"state": state} if model.stateful else {})}

    params64 = tree.astype(params, np.float64)
    state64 = None if state is None else tree.astype(state, np.float64)
    check_vjp(model, params64, x.astype(np.float64), key=k_call, train=True, state=state64,
              rtol=RTOL, atol=ATOL)
    assert_float32_throughout(model, params, x, **kw)


# ---------------------------------------------------------------------------- (b) conv stacks

@st.composite
def conv_stacks(draw: Any) -> tuple[L.Layer, tuple[int, ...], int]:
    """``(model, input shape without batch, batch)``: Conv2D (or Conv1D) layers with random
    kernel, stride and padding, activations and pools, only where the window fits."""
    one_d = draw(st.booleans())
    c = draw(st.integers(1, 3))
    size = (draw(st.integers(4, 7)),) if one_d else (draw(st.integers(4, 7)),
                                                      draw(st.integers(4, 7)))
    batch = draw(st.integers(1, 3))
    shape: Any = (None, *size, c)
    layers: list[L.Layer] = []
    prev = "input"
    for _ in range(draw(st.integers(1, 3))):
        menu = ["conv", "conv", "tanh"] + ([] if one_d else ["maxpool", "avgpool"])
        if prev == "conv":
            menu.append("relu")
        kind = draw(st.sampled_from(menu))
        if kind == "conv":
            conv = L.Conv1D if one_d else L.Conv2D
            layer = conv(draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                         stride=draw(st.integers(1, 2)),
                         padding=draw(st.sampled_from(["SAME", "VALID"])))
        elif kind == "tanh":
            layer = L.Tanh()
        elif kind == "relu":
            layer = L.ReLU()
        elif kind == "maxpool":
            layer = L.MaxPool2D(2, stride=draw(st.integers(1, 2)))
        else:
            layer = L.AvgPool2D(2, stride=draw(st.integers(1, 2)),
                                padding=draw(st.sampled_from(["VALID", "SAME"])))
        try:
            shape = layer.init(KEY, shape)[0]
        except ValueError:  # the window does not fit what is left of the image
            continue
        layers.append(layer)
        prev = kind
    if not layers:
        layers.append(L.Identity())
    if draw(st.booleans()):
        layers.append(L.GlobalAvgPool())
    return L.Sequential(*layers), (*size, c), batch


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stack=conv_stacks(), seed=st.integers(0, 2**32 - 1))
def test_random_conv_stacks_pass_check_vjp_and_keep_float32(stack, seed):
    model, in_shape, batch = stack
    k_init, k_x = random.split(random.key(seed))
    _, params = model.init(k_init, (None, *in_shape))
    x = random.normal(k_x, (batch, *in_shape))
    check_vjp(model, tree.astype(params, np.float64), x.astype(np.float64),
              rtol=RTOL, atol=ATOL)
    assert_float32_throughout(model, params, x)


# ---------------------------------------------------------------------------- (e) losses

def _specials(dtype: Any, extremes: list[float]) -> list[float]:
    return [float(np.dtype(dtype).type(v)) for v in [0.0, -0.0, 1.0, -1.0, *extremes]]


def _values(dtype: Any, low: float, high: float, specials: list[float]) -> Any:
    width = 32 if dtype == np.float32 else 64
    low, high = (float(np.dtype(dtype).type(v)) for v in (low, high))
    return st.one_of(st.sampled_from(specials),
                     st.floats(low, high, width=width, allow_nan=False, allow_subnormal=False))


def _assert_finite_value_and_gradient(loss: Any, pred: np.ndarray, target: Any,
                                      reduction: str, **kw: Any) -> None:
    if reduction == "mean" and np.size(target) == 0:  # no examples: no mean (NumPy: NaN)
        with pytest.raises(ValueError, match="reduction='mean' over an empty batch"):
            loss.vjp(pred, target, reduction=reduction, **kw)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow / invalid-value warning fails
        value, pullback = loss.vjp(pred, target, reduction=reduction, **kw)
        called = loss(pred, target, reduction=reduction, **kw)
        cot = 1.0 if reduction != "none" else np.ones(np.shape(value), pred.dtype)
        grad = pullback(cot)
    assert np.all(np.isfinite(value)), value
    np.testing.assert_array_equal(called, value)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype, (grad.shape, grad.dtype)
    assert np.all(np.isfinite(grad)), grad


_REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
_FLOATS = st.sampled_from([np.float32, np.float64])
_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


@SMALL
@given(data=st.data(), dtype=_FLOATS, shape=_SHAPES, reduction=_REDUCTIONS,
       delta=st.sampled_from([0.1, 1.0, 10.0]))
def test_regression_losses_finite_at_extremes(data, dtype, shape, reduction, delta):
    vals = _values(dtype, -1e4, 1e4, _specials(dtype, [1e4, -1e4, 1e-3]))
    pred = data.draw(hnp.arrays(dtype, shape, elements=vals), label="pred")
    target = data.draw(hnp.arrays(dtype, shape, elements=vals), label="target")
    _assert_finite_value_and_gradient(losses.mse, pred, target, reduction)
    _assert_finite_value_and_gradient(losses.huber, pred, target, reduction, delta=delta)
    wide = _values(dtype, -1e30, 1e30, _specials(dtype, [1e4, -1e4, 1e30, -1e30]))
    pred = data.draw(hnp.arrays(dtype, shape, elements=wide), label="huber pred")
    _assert_finite_value_and_gradient(losses.huber, pred, target, reduction, delta=delta)


@SMALL
@given(data=st.data(), dtype=_FLOATS, shape=_SHAPES, reduction=_REDUCTIONS)
def test_binary_losses_finite_at_extremes(data, dtype, shape, reduction):
    unit = _values(dtype, 0.0, 1.0, [float(np.dtype(dtype).type(v))
                                     for v in (0.0, -0.0, 1.0, 0.5, 1e-7, 1 - 1e-7)])
    logits = _values(dtype, -1e30, 1e30, _specials(dtype, [1e4, -1e4, 1e30, -1e30]))
    z = data.draw(hnp.arrays(dtype, shape, elements=logits), label="logits")
    p = data.draw(hnp.arrays(dtype, shape, elements=unit), label="probabilities")
    t = data.draw(hnp.arrays(dtype, shape, elements=unit), label="targets")
    _assert_finite_value_and_gradient(losses.bce_with_logits, z, t, reduction)
    _assert_finite_value_and_gradient(losses.bce, p, t, reduction)


@SMALL
@given(data=st.data(), dtype=_FLOATS, batch=hnp.array_shapes(min_dims=1, max_dims=2,
                                                             min_side=0, max_side=4),
       classes=st.integers(1, 5), reduction=_REDUCTIONS, one_hot=st.booleans())
def test_softmax_cross_entropy_finite_at_extremes(data, dtype, batch, classes, reduction,
                                                  one_hot):
    logits = _values(dtype, -1e30, 1e30, _specials(dtype, [1e4, -1e4, 1e30, -1e30]))
    z = data.draw(hnp.arrays(dtype, (*batch, classes), elements=logits), label="logits")
    labels = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1)),
                       label="labels")
    target = np.eye(classes, dtype=dtype)[labels] if one_hot else labels
    if classes == 1:  # one class: a loss of 0 whatever z and target, refused (test_losses)
        with pytest.raises(ValueError, match="hold one class"):
            losses.softmax_cross_entropy(z, target, reduction)
        return
    _assert_finite_value_and_gradient(losses.softmax_cross_entropy, z, target, reduction)
