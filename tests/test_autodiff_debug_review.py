"""Review of funcdl.autodiff and funcdl.debug, as a JAX/PyTorch autodiff user would probe
them: gradients, dx and BatchNorm's new state against torch.autograd in float64 (a loss with
options bound by functools.partial), has_aux's structure against jax.value_and_grad /
jax.grad, every return structure of value_and_grad and grad, pullbacks called again or
after other calls, the per-example mode's lifetime (reentrant calls, threads, exceptions),
check_finite's naming of the pass, and bad arguments."""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, tree

KEY = fd.random.key(0)
RNG = np.random.default_rng(11)
_ON = "; funcdl.debug.check_finite is on"


def _identity_layer(name, fwd=lambda x: x, bwd=lambda x, dy: dy):
    """A parameterless user layer y = fwd(x) with dx = bwd(x, dy)."""
    return L.Layer(lambda k, s: (s, ()), lambda p, x, **kw: fwd(x),
                   lambda p, x, **kw: (fwd(x), lambda dy: ((), bwd(x, dy))), name=name)


# ------------------------------------------------------------- against torch.autograd

def _conv_bn_net():
    return L.Sequential(L.Conv2D(3, 3), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2), L.Flatten(),
                        L.Dense(5), L.LayerNorm(), L.GELU(), L.Dense(4))


def test_value_grads_dx_and_new_state_equal_torch_autograd_in_float64():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = _conv_bn_net()
    _, p, s = model.init(KEY, (None, 4, 4, 2))
    p, s = list(tree.astype(p, np.float64)), tree.astype(s, np.float64)
    p[1] = {"scale": RNG.normal(size=3), "bias": RNG.normal(size=3)}
    p = tuple(p)
    s = ((), {"mean": RNG.normal(size=3), "var": RNG.uniform(0.5, 2, 3)}, *s[2:])
    x, y, w_cls = RNG.normal(size=(6, 4, 4, 2)), np.arange(6) % 4, np.array([1, 2, .5, 1.5])
    loss = functools.partial(losses.softmax_cross_entropy, label_smoothing=0.1, weight=w_cls)
    (value, new_s), (g, dx) = fd.value_and_grad(model, loss, wrt_input=True)(p, x, y, state=s)

    def t(a):
        return torch.tensor(np.array(a, np.float64), requires_grad=True)

    tp = [t(p[0]["w"].transpose(3, 2, 0, 1)), t(p[0]["b"]), t(p[1]["scale"]), t(p[1]["bias"]),
          t(p[5]["w"].T), t(p[5]["b"]), t(p[6]["scale"]), t(p[6]["bias"]), t(p[8]["w"].T),
          t(p[8]["b"])]
    tx = t(x.transpose(0, 3, 1, 2))
    rm, rv = torch.tensor(s[1]["mean"].copy()), torch.tensor(s[1]["var"].copy())
    h = F.conv2d(tx, tp[0], tp[1], padding="same")
    h = F.max_pool2d(F.relu(F.batch_norm(h, rm, rv, tp[2], tp[3], training=True)), 2)
    h = F.linear(h.permute(0, 2, 3, 1).reshape(6, -1), tp[4], tp[5])
    out = F.linear(F.gelu(F.layer_norm(h, (5,), tp[6], tp[7])), tp[8], tp[9])
    want = F.cross_entropy(out, torch.tensor(y), weight=torch.tensor(w_cls),
                           label_smoothing=0.1)
    want.backward()
    assert abs(value - want.item()) <= 1e-14
    got = [g[0]["w"].transpose(3, 2, 0, 1), g[0]["b"], g[1]["scale"], g[1]["bias"],
           g[5]["w"].T, g[5]["b"], g[6]["scale"], g[6]["bias"], g[8]["w"].T, g[8]["b"]]
    scale = max(float(a.grad.abs().max()) for a in tp)
    for i, (a, b) in enumerate(zip(got, tp, strict=True)):
        np.testing.assert_allclose(a, b.grad.numpy(), rtol=0, atol=1e-12 * scale, err_msg=i)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(new_s[1]["mean"], rm.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(new_s[1]["var"], rv.numpy(), rtol=1e-13)  # unbiased, torch's


def test_float32_in_gives_float32_grads_dx_and_state_close_to_float64():
    model = _conv_bn_net()
    _, p, s = model.init(KEY, (None, 4, 4, 2))
    x, y = RNG.normal(size=(6, 4, 4, 2)).astype(np.float32), np.arange(6) % 4
    f = fd.value_and_grad(model, functools.partial(losses.softmax_cross_entropy,
                                                   label_smoothing=0.1), wrt_input=True)
    (v32, s32), (g32, dx32) = f(p, x, y, state=s)
    (v64, s64), (g64, dx64) = f(tree.astype(p, np.float64), x.astype(np.float64), y,
                                state=tree.astype(s, np.float64))
    assert {a.dtype for a in tree.leaves((g32, dx32, s32))} == {np.dtype(np.float32)}
    assert {a.dtype for a in tree.leaves((g64, dx64, s64))} == {np.dtype(np.float64)}
    assert v32 == pytest.approx(v64, rel=1e-5)
    for a, b in zip(tree.leaves((g32, dx32, s32)), tree.leaves((g64, dx64, s64)), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)


# ------------------------------------------------------------ against jax, structures

def test_has_aux_value_and_grad_and_grad_equal_jaxs_in_structure_and_numbers(jax64):
    jax, jnp = jax64, jax64.numpy
    model = L.Sequential(L.Dense(5), L.Tanh(), L.Dense(3))
    _, p = model.init(KEY, (None, 4))
    p = tree.astype(p, np.float64)
    x, labels = RNG.normal(size=(7, 4)), np.arange(7) % 3

    def vjp(pred, t):  # cross-entropy, and the accuracy as aux
        value, pullback = losses.softmax_cross_entropy.vjp(pred, t)
        return (value, float(np.mean(pred.argmax(-1) == t))), pullback

    loss = losses.Loss("ce_acc", vjp)

    def f(q, xs, t):
        h = jnp.tanh(xs @ q[0]["w"] + q[0]["b"]) @ q[2]["w"] + q[2]["b"]
        ce = -jnp.mean(jax.nn.log_softmax(h)[jnp.arange(len(t)), t])
        return ce, jnp.mean((h.argmax(-1) == t).astype(jnp.float64))

    jp = [{k: jnp.asarray(v) for k, v in q.items()} if q else () for q in p]
    (jv, jaux), jg = jax.value_and_grad(f, has_aux=True)(jp, x, labels)
    (value, aux), grads = fd.value_and_grad(model, loss, has_aux=True)(p, x, labels)
    g_only, aux2 = fd.grad(model, loss, has_aux=True)(p, x, labels)
    jg_only, jaux2 = jax.grad(f, has_aux=True)(jp, x, labels)
    assert value == pytest.approx(float(jv), rel=1e-14)
    assert aux == aux2 == float(jaux) == float(jaux2)
    for a, b, c, d in zip(tree.leaves(grads), jax.tree_util.tree_leaves(jg),
                          tree.leaves(g_only), jax.tree_util.tree_leaves(jg_only),
                          strict=True):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(np.asarray(b), np.asarray(d))


@pytest.mark.parametrize("stateful", [False, True])
@pytest.mark.parametrize("has_aux", [False, True])
@pytest.mark.parametrize("wrt_input", [False, True])
def test_every_return_structure_of_value_and_grad_and_grad(stateful, has_aux, wrt_input):
    model = L.Sequential(L.Dense(3), *([L.BatchNorm()] if stateful else []), L.Dense(2))
    out = model.init(KEY, (None, 4))
    kw = {"state": out[2]} if stateful else {}
    x, t = RNG.normal(size=(5, 4)).astype(np.float32), np.zeros((5, 2), np.float32)
    loss = losses.Loss("aux", lambda p_, t_: ((losses.mse(p_, t_), "acc"),
                                              losses.mse.vjp(p_, t_)[1]))
    use = loss if has_aux else losses.mse
    head, grads = fd.value_and_grad(model, use, has_aux=has_aux, wrt_input=wrt_input)(
        out[1], x, t, **kw)
    got = fd.grad(model, use, has_aux=has_aux, wrt_input=wrt_input)(out[1], x, t, **kw)
    params_like = tree.structure(out[1])
    dparams = grads[0] if wrt_input else grads
    assert tree.structure(dparams) == params_like
    if wrt_input:
        assert type(grads) is tuple and len(grads) == 2 and grads[1].shape == x.shape
    extras = ((("acc",) if has_aux else ()), ((kw["state"],) if stateful else ()))
    n_extra = len(extras[0]) + len(extras[1])
    if n_extra == 0:
        assert np.ndim(head) == 0 and tree.structure(got) == tree.structure(grads)
        return
    assert type(head) is tuple and len(head) == 1 + n_extra and np.ndim(head[0]) == 0
    assert type(got) is tuple and len(got) == 1 + n_extra  # grads first, then what follows
    assert tree.structure(got[0]) == tree.structure(grads)
    if has_aux:
        assert head[1] == got[1] == "acc"
    if stateful:
        assert tree.structure(head[-1]) == tree.structure(got[-1]) == tree.structure(kw["state"])


def test_key_and_train_reach_a_stateful_model_and_inference_keeps_the_state():
    model = L.Sequential(L.Dense(6), L.BatchNorm(), L.Dropout(0.5), L.Dense(1))
    _, p, s = model.init(KEY, (None, 3))
    x, t = RNG.normal(size=(8, 3)).astype(np.float32), np.zeros((8, 1), np.float32)
    f = fd.value_and_grad(model, losses.mse)
    (a, sa), _ = f(p, x, t, state=s, key=fd.random.key(1))
    (b, sb), _ = f(p, x, t, state=s, key=fd.random.key(1))
    (c, _), _ = f(p, x, t, state=s, key=fd.random.key(2))
    assert a == b != c and not np.array_equal(sa[1]["mean"], s[1]["mean"])
    tree.map(np.testing.assert_array_equal, sa, sb)
    with pytest.raises(ValueError, match=r"Dropout.*key"):
        f(p, x, t, state=s)
    (d, sd), _ = f(p, x, t, state=s, train=False)
    assert d == losses.mse(model.apply(p, x, state=s)[0], t)
    assert all(u is v for u, v in zip(tree.leaves(sd), tree.leaves(s), strict=True))


# ------------------------------------------------------------------- pullbacks reused

_REUSED = {
    "mlp softmax": (L.Sequential(L.Dense(5), L.ReLU(), L.Dense(3), L.Softmax()), (None, 4)),
    "conv bn pool": (_conv_bn_net(), (None, 4, 4, 2)),
    "lstm": (L.Sequential(L.LSTM(4), L.Dense(2)), (None, 5, 3)),
    "attention": (L.TransformerEncoderLayer(4, 2, 8, dropout=0.0), (None, 5, 4)),
    "remat": (L.Remat(L.Sequential(L.Dense(4), L.GELU(), L.LayerNorm())), (None, 3)),
    "batch threads": (L.BatchThreads(L.Sequential(L.Dense(4), L.BatchNorm(), L.Tanh()), 2),
                      (None, 3)),
}


@pytest.mark.parametrize("case", sorted(_REUSED))
def test_a_pullback_called_twice_and_after_other_calls_gives_the_same_numbers(case):
    # torch frees the graph after one backward (retain_graph=True keeps it); a funcdl
    # pullback is a function of its residuals: callable again, after other forwards
    model, in_shape = _REUSED[case]
    out = model.init(KEY, in_shape)
    p = tree.astype(out[1], np.float64)
    kw = {"state": tree.astype(out[2], np.float64), "train": True} if model.stateful else {}
    x1, x2 = RNG.normal(size=(4, *in_shape[1:])), RNG.normal(size=(4, *in_shape[1:]))
    made = fd.vjp(model, p, x1, **kw)
    dy = RNG.normal(size=made[0].shape)
    first = tree.map(np.copy, made[1](dy))
    again = made[1](dy)
    other = fd.vjp(model, p, x2, **kw)
    other[1](2 * dy)
    fd.value_and_grad(model, losses.mse)(p, x2, dy, **kw)
    if case in ("mlp softmax", "lstm"):
        fd.per_example_grad(model, losses.mse)(p, x2, dy, **kw)
    late = made[1](dy)
    for a, b, c in zip(tree.leaves(first), tree.leaves(again), tree.leaves(late), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(first[1], other[1](dy)[1])  # x2's pullback is x2's


# ---------------------------------------------------------- the per-example mode's life

def _dropped_branch():
    """A model whose pullback makes zeros per example (per_example.zeros reads SIZE then)."""
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Dense(3), L.Dense(2)), L.Select(1))
    _, p = model.init(KEY, (None, 4))
    return model, tree.astype(p, np.float64)


def test_a_reentrant_per_example_call_in_the_loss_restores_the_outer_size():
    model, p = _dropped_branch()
    f = fd.per_example_grad(model, losses.mse)
    inner = []

    def vjp(pred, target):  # the same f on 2 rows, from inside the outer call's loss
        inner.append(f(p, RNG.normal(size=(2, 4)), np.zeros((2, 2)))[1][1]["w"].shape)
        return losses.mse.vjp(pred, target)

    x, t = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 2))
    got = fd.per_example_grad(model, losses.Loss("reenter", vjp))(p, x, t)
    want = f(p, x, t)
    assert inner == [(2, 4, 2)] and got[1][0]["w"].shape == (5, 4, 3)
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fd.grad(model, losses.mse)(p, x, t)[1][0]["w"].shape == (4, 3)


def test_threads_see_neither_mode_unless_batch_threads_copies_the_context():
    seen = []

    def record(x):
        seen.append((threading.current_thread() is threading.main_thread(),
                     fd.debug.enabled()))
        return x

    model = L.Sequential(L.Dense(2), L.BatchThreads(_identity_layer("Rec", record), 2))
    _, p = model.init(KEY, (None, 3))
    x, t = RNG.normal(size=(4, 3)).astype(np.float32), np.zeros((4, 2), np.float32)
    with fd.debug.check_finite():
        fd.value_and_grad(model, losses.mse)(p, x, t)
    assert sorted(seen) == [(False, True), (True, True)]  # a worker saw the block too
    in_thread = []

    def vjp(pred, target):  # a thread the loss starts: neither flag reaches it
        th = threading.Thread(target=lambda: in_thread.append(
            (fd.debug.enabled(), fd.grad(L.Dense(2), losses.mse)(p[0], x, t)["w"].shape)))
        th.start()
        th.join()
        return losses.mse.vjp(pred, target)

    plain = L.Sequential(L.Dense(2))
    with fd.debug.check_finite():
        fd.per_example_grad(plain, losses.Loss("t", vjp))((p[0],), x, t)
    assert in_thread == [(False, (3, 2))]


def _boom(x):
    raise ZeroDivisionError("boom")


@pytest.mark.parametrize("where", ["forward", "pullback"])
def test_an_error_mid_call_leaves_no_mode_depth_or_errstate_behind(where):
    boom = (_identity_layer("Boom", fwd=_boom) if where == "forward" else
            _identity_layer("Boom", bwd=lambda x, dy: _boom(x)))
    model = L.Sequential(L.Dense(3), L.Sequential(L.Dense(3), boom))
    _, p = model.init(KEY, (None, 3))
    x, t = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    before = np.geterr()
    with fd.debug.check_finite():
        for run in (fd.per_example_grad, fd.grad):
            with pytest.raises(ZeroDivisionError, match=r"Sequential\[1\] > Sequential\[1\] "
                                                        r"Boom: boom"):
                run(model, losses.mse)(p, x, t)
            _, pullback = fd.vjp(L.Dense(3), p[0], x)  # a layer called directly reads the mode
            assert pullback(t)[0]["w"].shape == (3, 3)
        bad = np.full((2, 3), np.nan, np.float32)  # an outermost Sequential: the data's
        with pytest.raises(FloatingPointError, match="before any layer ran: the data holds"):
            L.Sequential(L.Dense(3)).apply((p[0],), bad)
    assert np.geterr() == before and not fd.debug.enabled()


# -------------------------------------------------------------- check_finite's naming

def _dense(huge=False):
    layer = L.Dense(2)
    _, p = layer.init(KEY, (None, 3))
    return layer, ({"w": np.full((3, 2), 2e38, np.float32), "b": p["b"]} if huge else p)


@pytest.mark.parametrize("bad, says", [
    ("inf forward", r"^Dense\(2\): inf in the forward output \(shape \(2, 2\)\)"),
    ("inf dx", r"^Sequential\[1\] Inf: inf in the backward pass: dx \(shape \(2, 2\)\)"),
    ("loss value", r"^nanloss: NaN in the loss value \(shape \(\)\)"),
    ("dpred", r"^infgrad: inf in the backward pass: dpred \(shape \(2, 2\)\)"),
    ("dparams", r"^Dense\(2\): NaN in the backward pass: dparams\['w'\] \(shape \(3, 2\)\)"),
])
def test_check_finite_names_inf_and_nan_in_each_pass_of_value_and_grad(bad, says):
    x, t = np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32)
    model, p = _dense(huge=bad == "inf forward")  # 3 * 2e38 overflows float32
    loss = losses.mse
    if bad == "inf dx":
        model = L.Sequential(model, _identity_layer("Inf", bwd=lambda x, dy: dy * np.inf))
        p = (p, ())
    elif bad == "loss value":
        loss = losses.Loss("nanloss", lambda q, t_: (float("nan"), losses.mse.vjp(q, t_)[1]))
    elif bad == "dpred":
        loss = losses.Loss("infgrad", lambda q, t_: (0.0, lambda g: np.full_like(q, np.inf)))
    elif bad == "dparams":  # a user's Dense whose pullback spoils dw alone
        dense = model
        model = L.Layer(dense.init, dense.apply, lambda q, x_, **kw: (
            dense.apply(q, x_), lambda dy: ({"w": x_.T @ dy * np.nan, "b": dy.sum(0)},
                                            dy @ q["w"].T)), name="Dense(2)")
    f = fd.value_and_grad(model, loss)
    with np.errstate(all="ignore"):
        f(p, x, t)  # off: no error (the value or the grads carry it)
    with fd.debug.check_finite(), pytest.raises(FloatingPointError, match=says) as e:
        f(p, x, t)
    assert str(e.value).endswith(_ON)


def test_verify_follows_the_block_and_names_paths_through_named_tuples():
    bad = fd.optim.adam(1e-3).init({"w": np.zeros(2)})
    bad.states["adam"].mu["w"][1] = np.inf
    with pytest.raises(FloatingPointError) as e:
        fd.debug.verify("opt", "state", bad)
    assert str(e.value) == ("opt: inf in the state.states['adam'].mu['w'] (shape (2,)) "
                            "(funcdl.debug.verify)")
    with fd.debug.check_finite(inf=False):
        fd.debug.verify("opt", "state", bad)  # the block's own check: NaN only
        with fd.debug.check_finite(False), pytest.raises(FloatingPointError, match=r"\(funcdl"):
            fd.debug.verify("opt", "state", bad)  # off here: NaN and inf, as outside
    fd.debug.verify("ints", "ids", np.array([2**62]))  # integers hold no NaN
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.debug.verify("m", "grads", ({"b": np.zeros(1)}, [np.array([1.0, np.nan, np.inf])]))
    assert str(e.value) == f"m: NaN in the grads[1][0] (shape (3,)){_ON}"


# ----------------------------------------------------------------------- bad arguments

_MODEL = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(2))
_P = _MODEL.init(KEY, (None, 4))[1]
_X, _T = np.ones((5, 4), np.float32), np.zeros((5, 2), np.float32)


@pytest.mark.parametrize("call, error, says", [
    (lambda: fd.value_and_grad(_P, losses.mse), TypeError,
     r"^value_and_grad: the model must be a layer .*got a tuple of length 3"),
    (lambda: fd.grad(losses.mse, _MODEL), TypeError,
     r"^grad: the model must be a layer .*got funcdl\.losses\.mse"),
    (lambda: fd.per_example_grad(L.Dense, losses.mse), TypeError,
     r"call the constructor: Dense\(\), not Dense"),
    (lambda: fd.value_and_grad(_MODEL, None), TypeError, r"needs a \.vjp\(pred, target\).*None"),
    (lambda: fd.value_and_grad(_MODEL, "mse"), TypeError, r"needs a \.vjp.*got 'mse'"),
    (lambda: fd.value_and_grad(_MODEL, losses.mse)(_P[:2], _X, _T), ValueError,
     r"expected params as a tuple with one entry per layer \(3\), got a tuple of length 2"),
    (lambda: fd.value_and_grad(_MODEL, losses.mse)(_X, _P, _T), ValueError,
     r"expected params as a tuple .* got ndarray"),
    (lambda: fd.grad(_MODEL, losses.mse)(({"w": _P[0]["w"]}, (), _P[2]), _X, _T), ValueError,
     r"^Sequential\[0\] Dense\(3\): params lack \['b'\]"),
    (lambda: fd.grad(_MODEL, losses.mse)(({"w": _P[0]["w"].T, "b": _P[0]["b"]}, (), _P[2]),
                                         _X, _T), ValueError,
     r"^Sequential\[0\] Dense\(3\): params\['w'\] must have shape \(in, 3\).*got params\['w'\] "
     r"\(3, 4\)"),
    (lambda: fd.grad(_MODEL, losses.mse)(_P, _X, _T[:, :1]), ValueError,
     r"^mse: pred has shape \(5, 2\) but target has shape \(5, 1\)"),
    (lambda: fd.grad(_MODEL, losses.softmax_cross_entropy)(_P, _X, np.zeros((5, 1), int)),
     ValueError, r"integer labels must have shape \(5,\) for logits of shape \(5, 2\), got "
                 r"\(5, 1\)"),
    (lambda: fd.per_example_grad(_MODEL, functools.partial(losses.huber, delta=0.5))(
        _P, _X, _T[:3]), ValueError, r"^huber: pred has shape \(5, 2\) but target has shape "
                                     r"\(3, 2\)"),
    (lambda: fd.value_and_grad(_MODEL, losses.mse)(_P, _X[:, :3], _T), ValueError,
     r"^Sequential\[0\] Dense\(3\): expected input \(\.\.\., 4\) .*got shape \(5, 3\)"),
    (lambda: fd.vjp(_MODEL, _P, "abc"), TypeError, r"^Sequential\[0\] Dense\(3\): expected a "
                                                    r"numeric array"),
])
def test_bad_arguments_name_what_was_expected_and_what_came(call, error, says):
    with pytest.raises(error, match=says):
        call()
