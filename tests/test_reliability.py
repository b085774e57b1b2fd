"""Reliability: the debug switch, dtype policy, optimizer numerics at extreme gradients,
and bit-identical runs across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random

ROOT = Path(__file__).resolve().parent.parent


def _model(key):
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(3), L.Tanh(), L.Dense(1))
    _, params = model.init(key, (None, 2))
    return model, params


def test_check_finite_names_layer_and_forward_pass(key):
    model, params = _model(key)
    bad = (params[0], (), {"w": params[2]["w"], "b": params[2]["b"] * np.nan}, (), params[4])
    x, y = np.ones((5, 2), np.float32), np.ones((5, 1), np.float32)
    f = fd.value_and_grad(model, losses.mse)
    value, _ = f(bad, x, y)  # off: NaN flows through silently, as in NumPy
    assert np.isnan(value)
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"Sequential\[2\] Dense\(3\): NaN in the forward output"):
        f(bad, x, y)


def test_check_finite_names_backward_pass(key):
    # a layer whose forward is fine but whose vjp returns NaN
    tanh = L.Tanh()
    broken = L.Layer(tanh.init, tanh.apply,
                     lambda p, x, **kw: (np.tanh(x), lambda dy: ((), dy * np.nan)),
                     name="Broken")
    model = L.Sequential(L.Dense(3), broken, L.Dense(1))
    _, params = model.init(key, (None, 2))
    x, y = np.ones((5, 2), np.float32), np.ones((5, 1), np.float32)
    f = fd.value_and_grad(model, losses.mse)
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"Sequential\[1\] Broken: NaN in the backward pass: dx"):
        f(params, x, y)
    assert not fd.debug.enabled()
    healthy = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(1))
    with fd.debug.check_finite():
        f2 = fd.value_and_grad(healthy, losses.mse)
        f2(healthy.init(key, (None, 2))[1], x, y)


def test_check_finite_is_scoped(key):
    with fd.debug.check_finite():
        assert fd.debug.enabled()
        with fd.debug.check_finite(False):
            assert not fd.debug.enabled()
        assert fd.debug.enabled()
    assert not fd.debug.enabled()


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
