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
from funcdl import losses, random, tree

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


# ---------------------------------------------------------------- check_finite, one fix each
_ON = "; funcdl.debug.check_finite is on"


def _nan_x(shape=(2, 3)):
    x = np.ones(shape, np.float32)
    x[0, 0] = np.nan
    return x


def test_check_finite_checks_apply_stateless_and_stateful(key):
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(2))
    _, params = model.init(key, (None, 3))
    assert np.isnan(model.apply(params, _nan_x())).any()  # off: NaN flows through
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        model.apply(params, _nan_x())
    assert str(e.value) == f"Sequential[0] Dense(4): NaN in the forward output (shape (2, 4)){_ON}"
    bn = L.Sequential(L.Dense(3), L.BatchNorm())
    _, params, state = bn.init(key, (None, 3))
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^Sequential\[0\] Dense\(3\): NaN in the forward output"):
        bn.apply(params, _nan_x(), state=state)
    # train=True: the output uses the batch's statistics, only the new running var is NaN
    bad = (state[0], {**state[1], "var": np.array([np.nan, 1, 1], np.float32)})
    y, _ = bn.apply(params, np.ones((2, 3), np.float32), state=bad, train=True)
    assert np.isfinite(y).all()
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^Sequential\[1\] BatchNorm\(\): NaN in the new state"):
        bn.apply(params, np.ones((2, 3), np.float32), state=bad, train=True)


def _broken(name="Broken"):
    """Identity whose pullback returns a NaN dx."""
    return L.Layer(lambda k, s: (s, ()), lambda p, x, **kw: x,
                   lambda p, x, **kw: (x, lambda dy: ((), dy * np.nan)), name=name)


def test_check_finite_names_each_place_once(key):
    nested = L.Sequential(L.Dense(4), L.Sequential(L.Dense(3), L.Dense(2)))
    _, params = nested.init(key, (None, 3))
    params[1][1]["w"][0, 0] = np.nan
    x, y = np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.value_and_grad(nested, losses.mse)(params, x, y)
    assert str(e.value) == ("Sequential[1] Sequential(Dense(3), Dense(2)): Sequential[1] "
                            f"Dense(2): NaN in the forward output (shape (2, 2)){_ON}")
    # the same places as any other error of that layer (checks off): a wrong weight shape
    params[1][1]["w"] = np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"^Sequential\[1\] Sequential\(Dense\(3\), Dense\(2\)"
                                         r"\): Sequential\[1\] Dense\(2\): expected input"):
        nested.apply(params, x)
    model = L.Sequential(L.Dense(3), L.Residual(L.Sequential(L.Dense(3), _broken())))
    _, params = model.init(key, (None, 3))
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.value_and_grad(model, losses.mse)(params, x, np.ones((2, 3), np.float32))
    assert str(e.value) == ("Sequential[1] Residual(Sequential(Dense(3), Broken)): Residual "
                            "Sequential(Dense(3), Broken): Sequential[1] Broken: NaN in the "
                            f"backward pass: dx (shape (2, 3)){_ON}")


def test_check_finite_error_is_not_preempted_by_numpy_warnings(key):
    # pytest turns warnings into errors: "invalid value encountered in dot" would win
    x, y = np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(2))
    _, params = model.init(key, (None, 3))
    params[2]["w"][0, 0], params[2]["w"][1, 0] = np.inf, -np.inf
    dense = L.Dense(2)
    _, dparams = dense.init(key, (None, 3))
    dparams["w"][0, 0], dparams["w"][1, 0] = np.inf, -np.inf
    cases = [lambda: fd.value_and_grad(model, losses.mse)(params, x, y),
             lambda: model.apply(params, x),
             lambda: fd.value_and_grad(dense, losses.mse)(dparams, x, y)]
    for run in cases:
        with fd.debug.check_finite(), pytest.raises(FloatingPointError, match="NaN in the "
                                                                             "forward output"):
            run()
    # the backward: an inf cotangent meets weights of both signs in dy @ w.T
    healthy = L.Sequential(L.Dense(2))
    _, hp = healthy.init(key, (None, 3))
    with fd.debug.check_finite():
        out, pullback = healthy.vjp(hp, x)
        with pytest.raises(FloatingPointError, match=r"Sequential\[0\] Dense\(2\): NaN in the "
                                                     r"backward pass: dx"):
            pullback(np.full_like(out, np.inf))


def test_value_and_grad_checks_dx_and_new_state(key):
    x, y = np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)
    f = fd.value_and_grad(_broken(), losses.mse, wrt_input=True)
    assert np.isnan(f((), x, y)[1][1]).all()  # off: returned silently
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^Broken: NaN in the backward pass: dx \(shape"):
        f((), x, y)
    bn = L.BatchNorm()
    _, params, state = bn.init(key, (None, 3))
    bad = {**state, "var": np.array([np.nan, 1, 1], np.float32)}
    g = fd.value_and_grad(bn, losses.mse)
    (value, new_state), _ = g(params, x + np.arange(3, dtype=np.float32), y, state=bad)
    assert np.isfinite(value) and np.isnan(new_state["var"][0])
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^BatchNorm\(\): NaN in the new state\['var'\]"):
        g(params, x, y, state=bad)


@pytest.mark.parametrize("flag", ["no", 0, 1, None, "False"])
def test_check_finite_wants_a_bool(flag):
    with pytest.raises(TypeError, match=r"funcdl.debug.check_finite: enabled must be True or "
                                        r"False, got"):
        fd.debug.check_finite(flag)
    assert not fd.debug.enabled()
    with fd.debug.check_finite(np.bool_(True)):
        assert fd.debug.enabled() is True


def test_verify_says_whether_check_finite_is_on():
    with pytest.raises(FloatingPointError) as e:
        fd.debug.verify("mine", "value", [1.0, np.inf])
    assert str(e.value) == "mine: inf in the value[1] (shape ()) (funcdl.debug.verify)"
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.debug.verify("mine", "value", np.array([np.nan]))
    assert str(e.value) == f"mine: NaN in the value (shape (1,)){_ON}"


def test_check_finite_context_behaviour_is_documented():
    import threading

    doc = " ".join((fd.debug.__doc__ or "").split())
    assert "new thread" in doc and "generator" in doc and "closed" in doc
    seen = []
    with fd.debug.check_finite():
        t = threading.Thread(target=lambda: seen.append(fd.debug.enabled()))
        t.start()
        t.join()

    def gen():
        with fd.debug.check_finite():
            yield

    g = gen()
    next(g)
    assert seen == [False] and fd.debug.enabled()  # on for the caller while suspended
    g.close()
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
