"""funcdl.debug: check_finite names the layer and the pass where a NaN or inf first
appears, is scoped (threads, generators), and verify says whether it is on."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses


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
        model.apply(params, _nan_x())  # the data is named, not the first layer it reaches
    assert str(e.value).startswith("Sequential: NaN in the input x (shape (2, 3)), before any "
                                   "layer ran: the data holds it") and str(e.value).endswith(_ON)
    bad_w = (params[0], (), {**params[2], "w": params[2]["w"] * np.nan})
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        model.apply(bad_w, np.ones((2, 3), np.float32))
    assert str(e.value) == f"Sequential[2] Dense(2): NaN in the forward output (shape (2, 2)){_ON}"
    bn = L.Sequential(L.Dense(3), L.BatchNorm())
    _, params, state = bn.init(key, (None, 3))
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^Sequential: NaN in the input x \(shape \(2, 3\)\)"):
        bn.apply(params, _nan_x(), state=state)
    bad_w = ({**params[0], "b": params[0]["b"] * np.nan}, params[1])
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^Sequential\[0\] Dense\(3\): NaN in the forward output"):
        bn.apply(bad_w, np.ones((2, 3), np.float32), state=state)
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
    assert str(e.value) == ("Sequential[1] > Sequential[1] "
                            f"Dense(2): NaN in the forward output (shape (2, 2)){_ON}")
    # the same places as any other error of that layer (checks off): a wrong weight shape
    params[1][1]["w"] = np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"^Sequential\[1\] > Sequential\[1\] Dense\(2\): "
                                         r"expected input"):
        nested.apply(params, x)
    model = L.Sequential(L.Dense(3), L.Residual(L.Sequential(L.Dense(3), _broken())))
    _, params = model.init(key, (None, 3))
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.value_and_grad(model, losses.mse)(params, x, np.ones((2, 3), np.float32))
    assert str(e.value) == ("Sequential[1] > Residual > Sequential[1] Broken: NaN in the "
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


def test_a_nested_sequentials_input_is_not_blamed_on_the_data(key):
    # a Residual's x + f(x) overflowed in Repeat[1]; the next block's Sequential said "the
    # data holds it; drop or impute those examples" of finite data
    model = L.Sequential(L.Repeat(L.Residual(L.Sequential(L.Identity())), 3), L.Dense(2))
    _, params = model.init(key, (None, 4))
    x = np.full((2, 4), 1e38, np.float32)
    for call in (lambda: model.apply(params, x),
                 lambda: fd.value_and_grad(model, losses.mse)(params, x, np.zeros((2, 2)))):
        with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
            call()
        assert "Repeat[2]" in str(e.value) and "made by the model before it" in str(e.value)
        assert "the data holds it" not in str(e.value)
    with fd.debug.check_finite(), pytest.raises(FloatingPointError, match="the data holds it"):
        model.apply(params, np.full((2, 4), np.inf, np.float32))  # the outermost: the data


def test_a_pullback_checks_by_the_flag_when_it_is_called(key):
    # the flag was read by vjp: a pullback made outside the block went unchecked inside it,
    # and one made inside still checked under check_finite(False)
    model = L.Sequential(L.Dense(3), _broken())
    _, params = model.init(key, (None, 3))
    x = np.ones((2, 3), np.float32)
    _, outside = model.vjp(params, x)
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^Sequential\[1\] Broken: NaN in the backward pass: dx"):
        outside(np.ones((2, 3), np.float32))
    with fd.debug.check_finite():
        _, made_inside = model.vjp(params, x)
        with fd.debug.check_finite(False):
            _, dx = made_inside(np.ones((2, 3), np.float32))
    assert np.isnan(dx).all()


def test_one_check_finite_may_be_entered_again_and_refuses_generator_functions(key):
    cm = fd.debug.check_finite()
    for _ in range(2):  # contextlib's one-shot manager failed the second time
        with cm:
            with cm:
                assert fd.debug.enabled()
            assert fd.debug.enabled()
        assert not fd.debug.enabled()

    @fd.debug.check_finite()
    def plain():
        return fd.debug.enabled()

    assert plain() and not fd.debug.enabled()

    def gen():
        yield fd.debug.enabled()

    with pytest.raises(TypeError, match="generator or coroutine function, whose body runs "
                                        "after the call returns"):
        fd.debug.check_finite()(gen)


def test_check_finite_without_inf_lets_a_meant_minus_inf_through(key):
    # an additive -inf mask before a Softmax: finite end to end, but every inf was an error
    def mask_last(p, x, **kw):
        y = x.copy()
        y[:, -1] = -np.inf
        return y

    masker = L.Layer(lambda k, s: (s, ()), mask_last,
                     lambda p, x, **kw: (mask_last(p, x), lambda dy: ((), dy)), name="Mask")
    model = L.Sequential(L.Dense(3), masker, L.Softmax())
    _, params = model.init(key, (None, 2))
    x = np.ones((2, 2), np.float32)
    with fd.debug.check_finite(), pytest.raises(FloatingPointError, match=r"Mask: inf"):
        model.apply(params, x)
    with fd.debug.check_finite(inf=False):
        y = model.apply(params, x)
        np.testing.assert_array_equal(y[:, -1], 0)
        with pytest.raises(FloatingPointError, match=r"Dense\(3\): NaN in the forward"):
            model.apply(params, np.full((2, 2), np.inf, np.float32) * [1, -1])


def test_a_bad_key_is_named_alike_inside_and_outside_the_block(key):
    model = L.Sequential(L.Dense(4), L.Dropout(0.5))
    _, params = model.init(key, (None, 3))
    said = []
    for on in (False, True):
        with fd.debug.check_finite(on), pytest.raises(TypeError) as e:
            model.apply(params, np.ones((2, 3), np.float32), key=3, train=True)
        said.append(str(e.value))
    assert said[0] == said[1] and said[0].startswith("Sequential(Dense(4), Dropout(0.5)): ")


def test_one_decorating_check_finite_serves_two_threads_at_once(key):
    # one token list for every thread: A's exit popped B's token, and both raised
    # "was created in a different Context"
    import threading

    a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()
    seen, errors = [], []

    @fd.debug.check_finite()
    def step(me, other, wait):
        me.set()
        other.wait(2)
        if wait is not None:
            wait.wait(2)
        return fd.debug.enabled()

    def run(*args, done=None):
        try:
            seen.append(step(*args))
        except Exception as e:  # the failure under test
            errors.append(e)
        if done is not None:
            done.set()

    ta = threading.Thread(target=run, args=(a_in, b_in, None), kwargs={"done": a_done})
    tb = threading.Thread(target=run, args=(b_in, a_in, a_done))
    ta.start(), tb.start()
    ta.join(), tb.join()
    assert not errors and seen == [True, True]


def test_one_checker_shared_by_overlapping_asyncio_tasks():
    """Task A enters, B enters, A leaves, B leaves, one check_finite object: each leaves its
    own block, checks off after it (a thread-wide token stack let A reset B's token: a
    ValueError from contextvars in both, and the checks left on)."""
    import asyncio

    check = fd.debug.check_finite()
    log = []

    async def request(name, enter, leave):
        await asyncio.sleep(enter)
        with check:
            log.append((name, "in", fd.debug.enabled()))
            await asyncio.sleep(leave - enter)
        log.append((name, "out", fd.debug.enabled()))

    async def main():
        await asyncio.gather(request("A", 0.0, 0.02), request("B", 0.01, 0.03))

    asyncio.run(main())
    assert sorted(log) == [("A", "in", True), ("A", "out", False), ("B", "in", True),
                           ("B", "out", False)]
    assert not fd.debug.enabled()
