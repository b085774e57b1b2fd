"""Reliability: dtype policy, optimizer numerics at extreme gradients, and bit-identical
runs across processes (funcdl.debug has its own module, test_debug.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree

ROOT = Path(__file__).resolve().parent.parent


def test_float16_is_refused_with_advice(key):
    _, params = L.Dense(2).init(key, (None, 3))
    with pytest.raises(TypeError, match=r"Dense\(2\): float16 input is not supported.*float32"):
        L.Dense(2).apply(params, np.ones((1, 3), np.float16))
    with pytest.raises(TypeError, match=r"ReLU\(\): float16"):
        L.ReLU().apply((), np.ones(3, np.float16))


def test_bool_and_int_inputs_are_cast_to_params_dtype(key):
    _, params = L.Dense(2).init(key, (None, 3))
    for x in (np.ones((2, 3), bool), np.ones((2, 3), np.int64)):
        y, pullback = L.Dense(2).vjp(params, x)
        assert y.dtype == np.float32
        assert pullback(np.ones_like(y))[1].dtype == np.float32


# every layer kind and its input shape (a tuple of shapes: a tuple of inputs); Embedding
# reads ids
COTANGENT_DTYPE = [
    (lambda: L.Dense(3), (2, 4)), (L.ReLU, (2, 4)), (L.GELU, (2, 4)), (L.SiLU, (2, 4)),
    (L.Softmax, (2, 4)),
    (L.Tanh, (2, 4)), (lambda: L.Conv2D(3, 3), (2, 5, 5, 2)), (lambda: L.Conv1D(3, 2), (2, 5, 2)),
    (lambda: L.MaxPool2D(2), (2, 4, 4, 3)), (lambda: L.AvgPool2D(2), (2, 4, 4, 3)),
    (L.GlobalAvgPool, (2, 4, 4, 3)), (L.LayerNorm, (2, 4)), (L.BatchNorm, (3, 4)),
    (lambda: L.Embedding(5, 3), (2, 3)), (L.Flatten, (2, 2, 3)), (L.Identity, (2, 4)),
    (lambda: L.Reshape((4, 1)), (2, 4)), (lambda: L.Dropout(0.5), (2, 4)),
    (lambda: L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2)), (2, 4)),
    (lambda: L.Sequential(L.FanOut(2), L.FanInSum()), (2, 4)),
    (lambda: L.Residual(L.Dense(4)), (2, 4)),
    (L.Sigmoid, (2, 4)), (L.Softplus, (2, 4)), (L.ELU, (2, 4)), (lambda: L.LeakyReLU(0.2), (2, 4)),
    (L.LogSoftmax, (2, 4)), (lambda: L.Slice(np.s_[1:3]), (2, 4)),
    (lambda: L.Repeat(L.Dense(4), 2), (2, 4)),
    (L.FanInConcat, ((2, 4), (2, 3))), (L.FanInSum, ((2, 4), (2, 4))),
    (lambda: L.Sequential(L.Parallel(L.Dense(3), L.Tanh()), L.FanInConcat()), ((2, 4), (2, 4))),
    (lambda: L.Sequential(L.Shared(L.Dense(3)), L.FanInSum()), ((2, 4), (2, 4))),
]


@pytest.mark.parametrize(("make", "shape"), COTANGENT_DTYPE,
                         ids=[m().name for m, _ in COTANGENT_DTYPE])
def test_a_float64_cotangent_gives_a_float32_layer_float32_gradients(make, shape, key):
    # np.ones(y.shape) is float64: taken in the output's dtype, as PyTorch's engine does,
    # the same numbers as a float32 dy, never a float64 dx
    layer = make()
    many = isinstance(shape[0], tuple)
    out = layer.init(key, tuple((None, *s[1:]) for s in shape) if many else (None, *shape[1:]))
    kw = {"train": True, "key": random.key(1)}
    if layer.stateful:
        kw["state"] = out[2]
    x = (np.arange(6).reshape(shape) % layer.ids if layer.ids is not None
         else tuple(random.normal(random.key(i), s) for i, s in enumerate(shape)) if many
         else random.normal(random.key(2), shape))
    y, pullback = layer.vjp(out[1], x, **kw)[:2]
    dy = random.normal(random.key(3), y.shape, np.float64)
    got, want = pullback(dy), pullback(dy.astype(np.float32))
    def same(a, b):
        assert a.dtype == np.float32, (a.dtype, layer.name)
        np.testing.assert_array_equal(a, b)

    tree.map(same, got, want, shapes=True)


@pytest.mark.parametrize("g", [1e4, -1e4, 1e30, -1e30, 0.0])
def test_adam_at_extreme_gradients(g):
    opt = fd.optim.adam(1e-3)
    params = {"w": np.zeros(3, np.float64)}
    state = opt.init(params)
    for _ in range(3):
        updates, state = opt.update(state, {"w": np.full(3, g)}, params)
        params = fd.optim.apply_updates(params, updates)
    # Adam's step is scale-free: a constant gradient moves each step by lr·sign(g)
    np.testing.assert_allclose(params["w"], -3e-3 * np.sign(g), rtol=1e-6, atol=1e-12)


def test_adam_float32_saturates_quietly():
    opt = fd.optim.adam(1e-3)
    params = {"w": np.zeros(2, np.float32)}
    updates, _state = opt.update(opt.init(params), {"w": np.array([1e30, 1e18], np.float32)},
                                params)
    assert updates["w"].dtype == np.float32 and np.all(np.isfinite(updates["w"]))
    np.testing.assert_allclose(updates["w"][1], -1e-3, rtol=1e-5)


_RUN = """
import numpy as np, funcdl as fd, funcdl.layers as L
k = fd.random.key(7)
x, y = fd.data.disk(k, 200)
model = L.Sequential(L.Dense(16), L.ReLU(), L.Dropout(0.1), L.Dense(1))
_, params = model.init(k, (None, 2))
opt = fd.optim.adam(1e-2); state = opt.init(params)
f = fd.value_and_grad(model, fd.losses.bce_with_logits)
for epoch in range(3):
    for i, (xb, yb) in enumerate(fd.data.batches(fd.random.fold_in(k, epoch), x, y, batch_size=32)):
        loss, g = f(params, xb, yb, key=fd.random.fold_in(k, 1000 * epoch + i))
        u, state = opt.update(state, g, params); params = fd.optim.apply_updates(params, u)
print(fd.tree.ravel(params)[0].tobytes().hex())
"""


def test_same_key_bit_identical_across_processes():
    runs = [subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True,
                           check=True, cwd=ROOT).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 100


def test_split_streams_are_independent():
    a, b = random.split(random.key(0))
    xa, xb = random.normal(a, 100_000), random.normal(b, 100_000)
    assert abs(np.corrcoef(xa, xb)[0, 1]) < 0.02
