"""value_and_grad / grad / vjp: chaining, has_aux, wrt_input, agreement with finite
differences of the whole loss."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree


def _model_and_data(key):
    model = L.Sequential(L.Dense(6), L.Tanh(), L.Dense(1), L.Sigmoid())
    _, params = model.init(key, (None, 2))
    x, y = fd.data.disk(random.key(1), 8)
    return model, tree.astype(params, np.float64), x.astype(np.float64), y.astype(np.float64)


def test_value_and_grad_matches_finite_differences(key):
    model, params, x, y = _model_and_data(key)
    value, grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    assert value == pytest.approx(losses.mse(model.apply(params, x), y))
    flat, unravel = tree.ravel(params)
    eps = 1e-6
    for i in range(0, flat.size, 3):
        e = np.zeros_like(flat)
        e[i] = eps
        up = losses.mse(model.apply(unravel(flat + e), x), y)
        down = losses.mse(model.apply(unravel(flat - e), x), y)
        assert tree.ravel(grads)[0][i] == pytest.approx((up - down) / (2 * eps), rel=1e-5,
                                                        abs=1e-10)


def test_wrt_input_and_grad(key):
    model, params, x, y = _model_and_data(key)
    _value, (dparams, dx) = fd.value_and_grad(model, losses.bce, wrt_input=True)(params, x, y)
    g = fd.grad(model, losses.bce)(params, x, y)
    np.testing.assert_allclose(tree.ravel(g)[0], tree.ravel(dparams)[0])
    eps = 1e-6
    e = np.zeros_like(x)
    e[3, 1] = eps
    fd_x = (losses.bce(model.apply(params, x + e), y)
            - losses.bce(model.apply(params, x - e), y)) / (2 * eps)
    assert dx[3, 1] == pytest.approx(fd_x, rel=1e-5)


def test_has_aux(key):
    model, params, x, y = _model_and_data(key)

    def mse_with_accuracy(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return (value, float(np.mean((pred > 0.5) == (target > 0.5)))), pullback

    loss = losses.Loss("mse_acc", mse_with_accuracy)
    (value, acc), grads = fd.value_and_grad(model, loss, has_aux=True)(params, x, y)
    plain_value, plain_grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    assert value == plain_value and 0.0 <= acc <= 1.0
    np.testing.assert_array_equal(tree.ravel(grads)[0], tree.ravel(plain_grads)[0])
    _g, aux = fd.grad(model, loss, has_aux=True)(params, x, y)
    assert aux == acc


def _accuracy(pred, target):
    return float(np.mean((pred > 0.5) == (target > 0.5)))


class _CallGivesAux:
    """A user's own loss read literally from the contract: calling it gives (value, aux),
    its vjp (value, pullback) as every loss's does."""

    def __call__(self, pred, target):
        return losses.mse(pred, target), _accuracy(pred, target)

    def vjp(self, pred, target):
        return losses.mse.vjp(pred, target)


def _jax_order(pred, target):  # as jax.vjp(f, x, has_aux=True): (value, pullback, aux)
    value, pullback = losses.mse.vjp(pred, target)
    return value, pullback, _accuracy(pred, target)


@pytest.mark.parametrize("loss", [_CallGivesAux(), losses.Loss("jax_order", _jax_order)],
                         ids=["aux-from-the-call", "vjp-value-pullback-aux"])
def test_has_aux_takes_every_way_a_loss_can_give_its_aux(key, loss):
    model, params, x, y = _model_and_data(key)
    (value, acc), grads = fd.value_and_grad(model, loss, has_aux=True)(params, x, y)
    plain_value, plain_grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    assert value == plain_value and acc == _accuracy(model.apply(params, x), y)
    np.testing.assert_array_equal(tree.ravel(grads)[0], tree.ravel(plain_grads)[0])
    assert loss(model.apply(params, x), y) == (value, acc)  # the call gives (value, aux)
    stateful = L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(1), L.Sigmoid())
    _, p, st = stateful.init(key, (None, 2))
    (value_s, acc_s, new_st), _ = fd.value_and_grad(stateful, loss, has_aux=True)(
        p, x.astype(np.float32), y.astype(np.float32), state=st)
    assert np.ndim(value_s) == 0 and 0 <= acc_s <= 1 and fd.tree.structure(new_st) == \
        fd.tree.structure(st)


def test_a_loss_vjp_of_the_wrong_form_is_named(key):
    model, params, x, y = _model_and_data(key)
    with pytest.raises(TypeError, match=r"vjp of the loss jax_order must return \(value, "
                                        r"pullback\), got a tuple of length 3.*has_aux=True"):
        fd.value_and_grad(model, losses.Loss("jax_order", _jax_order))(params, x, y)
    bare = losses.Loss("bare", lambda pred, target: 0.5)
    with pytest.raises(TypeError, match=r"vjp of the loss bare must return \(value, "
                                        r"pullback\), got a float"):
        fd.value_and_grad(model, bare)(params, x, y)
    with pytest.raises(TypeError, match=r"has_aux=True\): the loss mse must "
                                        r"return \(value, aux\), got a float"):
        fd.value_and_grad(model, losses.mse, has_aux=True)(params, x, y)


def test_a_plain_function_as_loss_is_told_how_to_become_one(key):
    model = _model_and_data(key)[0]

    def mse_with_accuracy(pred, target):  # no vjp: nothing to differentiate
        return losses.mse(pred, target), 1.0

    with pytest.raises(TypeError, match=r"needs a \.vjp\(pred, target\) method.*"
                                        r"losses\.Loss\(name, vjp\).*has_aux=True"):
        fd.value_and_grad(model, mse_with_accuracy, has_aux=True)


def test_key_reaches_dropout(key):
    model = L.Sequential(L.Dense(50), L.Dropout(0.5), L.Dense(1))
    _, params = model.init(key, (None, 2))
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    f = fd.value_and_grad(model, losses.mse)
    a, _ = f(params, x, y, key=random.key(1))
    b, _ = f(params, x, y, key=random.key(1))
    c, _ = f(params, x, y, key=random.key(2))
    d, _ = f(params, x, y, train=False)
    assert a == b and a != c and d == losses.mse(model.apply(params, x), y)
    with pytest.raises(ValueError, match=r"Dropout.*key"):
        f(params, x, y)


def test_vjp_reexport(key):
    model, params, x, _ = _model_and_data(key)
    y, _pullback = fd.vjp(model, params, x)
    np.testing.assert_array_equal(y, model.apply(params, x))


def test_bad_loss_and_kwargs(key):
    model, params, x, y = _model_and_data(key)
    with pytest.raises(TypeError, match=r"\.vjp"):
        fd.value_and_grad(model, lambda p, t: 0.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fd.value_and_grad(model, losses.mse)(params, x, y, state=())
    with pytest.raises(ValueError, match=r"mse: pred has shape \(8, 1\) but target"):
        fd.value_and_grad(model, losses.mse)(params, x, y[:, 0])


def _spy(calls: list, inner: L.Layer) -> L.Layer:
    """``inner`` with a pullback that records whether it was asked for dx."""
    def vjp(params, x, **kw):
        y, pb = inner.vjp(params, x, **kw)

        def pullback(dy, need_dx=True):
            calls.append(need_dx)
            g, dx = pb(dy)
            return g, (dx if need_dx else None)
        return y, pullback
    return L.Layer(inner.init, inner.apply, vjp, name="Spy", dx_optional=True)


@pytest.mark.parametrize("front", [
    [],                                        # the first layer has params
    [L.Flatten(), L.ReLU()],                   # parameterless layers in front
    [L.Sequential(L.Identity(), L.Tanh())],    # a nested parameterless Sequential
])
def test_value_and_grad_skips_only_the_unneeded_first_dx(key, front):
    calls: list = []
    model = L.Sequential(*front, _spy(calls, L.Dense(3)), L.Tanh(), _spy(calls, L.Dense(1)))
    _, params = model.init(key, (None, 2))
    params = tree.astype(params, np.float64)
    x = random.normal(random.key(2), (5, 2), np.float64)
    y = random.normal(random.key(3), (5, 1), np.float64)
    _, grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    assert calls == [True, False]  # the last Dense passes dx on; the first one skips it
    calls.clear()
    _, (dparams, dx) = fd.value_and_grad(model, losses.mse, wrt_input=True)(params, x, y)
    assert calls == [True, True] and dx.shape == x.shape
    for g, h in zip(tree.leaves(grads), tree.leaves(dparams), strict=True):
        np.testing.assert_array_equal(g, h)
    assert grads[:len(front)] == params[:len(front)]  # parameterless entries, as given


def test_value_and_grad_skip_with_nested_params_first(key):
    # The first entry is a nested Sequential's tuple of dicts: found by its leaves.
    model = L.Sequential(L.Sequential(L.Dense(3), L.Tanh()), L.Dense(1))
    _, params = model.init(key, (None, 2))
    params = tree.astype(params, np.float64)
    x = random.normal(random.key(2), (4, 2), np.float64)
    y = random.normal(random.key(3), (4, 1), np.float64)
    _, grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    _, (ref, _) = fd.value_and_grad(model, losses.mse, wrt_input=True)(params, x, y)
    assert tree.structure(grads) == tree.structure(params)
    for g, h in zip(tree.leaves(grads), tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(g, h)
    assert np.abs(grads[0][0]["w"]).sum() > 0


def test_grads_take_the_params_containers_and_dtypes(key):
    # As JAX: list params give list grads; each grad has its param's dtype even when x is
    # float64 (the output is float64: the caller asked for it).
    model = L.Sequential(L.Conv2D(2, 3), L.LayerNorm(), L.Flatten(), L.Dense(4), L.ReLU(),
                         L.Dense(2))
    _, params = model.init(key, (None, 4, 4, 1))
    x = random.normal(random.key(1), (3, 4, 4, 1), np.float64)
    target = np.zeros((3, 2))
    f = fd.value_and_grad(model, losses.mse)
    _, grads = f(list(params), x, target)
    assert type(grads) is list and len(grads) == len(params)
    for p, g in zip(tree.leaves(params), tree.leaves(grads), strict=True):
        assert g.dtype == p.dtype == np.float32 and g.shape == p.shape
    # the same numbers, to float32 rounding, as float32 x gives
    _, grads32 = f(params, x.astype(np.float32), target)
    for a, b in zip(tree.leaves(grads), tree.leaves(grads32), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    emb = L.Embedding(5, 2)
    _, table = emb.init(key, (None, 3))
    _, pullback = emb.vjp(table, np.array([[1, 2, 2]]))
    assert pullback(np.ones((1, 3, 2)))[0]["table"].dtype == np.float32


# ---------------------------------------------------------------------------- bad losses

def _dense_and_data(key):
    model = L.Sequential(L.Dense(2))
    _, params = model.init(key, (None, 3))
    return model, params, np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)


def test_a_loss_pullback_returning_none_is_refused_not_zero_grads(key):
    # A forgotten `return` in a user's loss: Sequential reads a None cotangent between its
    # children as "nothing flows back" (below an Embedding), which gave all-zero grads.
    def forgetful(pred, target):
        value, pullback = losses.mse.vjp(pred, target)

        def pull(g):
            pullback(g)  # no return

        return value, pull

    model, params, x, y = _dense_and_data(key)
    with pytest.raises(TypeError, match=r"^grad: the pullback of the loss mine "
                                        r"returned None.*missing return"):
        fd.grad(model, losses.Loss("mine", forgetful))(params, x, y)
    # an Embedding's None dx inside the chain is still fine
    emb = L.Sequential(L.Embedding(5, 2), L.Dense(2))
    _, p_emb = emb.init(key, (None,))
    grads = fd.grad(emb, losses.mse)(p_emb, np.array([1, 2, 3, 4]), y)
    assert np.abs(grads[0]["table"]).sum() > 0


@pytest.mark.parametrize("aux", [np.arange(3.0), np.ones((2, 2)), 0.5, {"acc": 1.0}])
def test_a_loss_returning_value_and_aux_needs_has_aux(key, aux):
    # As JAX: say has_aux=True, not NumPy's "inhomogeneous shape" (array aux) or
    # "an array of shape (2,) (reduction='none'?)" (scalar aux).
    def with_aux(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return (value, aux), pullback

    model, params, x, y = _dense_and_data(key)
    with pytest.raises(TypeError, match=r"value_and_grad: the loss aux returned a tuple of "
                                        r"length 2.*pass has_aux=True"):
        fd.value_and_grad(model, losses.Loss("aux", with_aux))(params, x, y)
    (_, got), _ = fd.value_and_grad(model, losses.Loss("aux", with_aux), has_aux=True)(
        params, x, y)
    assert got is aux


def test_grad_of_a_stateful_model_returns_what_value_and_grad_does_but_the_value(key):
    # (grads, new_state), and (grads, aux, new_state) with has_aux
    model = L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(1), L.Sigmoid())
    _, params, state = model.init(key, (None, 2))
    x, y = fd.data.disk(random.key(1), 8)
    loss = losses.Loss("jax_order", _jax_order)
    for has_aux, extra in ((False, 1), (True, 2)):
        out, grads = fd.value_and_grad(model, loss if has_aux else losses.mse,
                                       has_aux=has_aux)(params, x, y, state=state)
        got = fd.grad(model, loss if has_aux else losses.mse, has_aux=has_aux)(
            params, x, y, state=state)
        assert isinstance(got, tuple) and len(got) == 1 + extra
        tree.map(np.testing.assert_array_equal, got[0], grads, shapes=True)
        assert tree.structure(got[-1]) == tree.structure(state)  # the new state, last
        tree.map(np.testing.assert_array_equal, got[-1], out[-1], shapes=True)
        if has_aux:
            assert 0.0 <= got[1] == out[1] <= 1.0  # the aux, between


def test_has_aux_takes_the_pair_as_a_list_as_jax_does(key):
    # jax.value_and_grad(f, has_aux=True) takes f returning [value, aux]; it was refused
    model, params, x, y = _model_and_data(key)

    def listed(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return [value, _accuracy(pred, target)], pullback

    class CallGivesList:  # the pair from the call, the vjp giving (value, pullback)
        def __call__(self, pred, target):
            return [losses.mse(pred, target), _accuracy(pred, target)]

        def vjp(self, pred, target):
            return losses.mse.vjp(pred, target)

    plain_value, plain_grads = fd.value_and_grad(model, losses.mse)(params, x, y)
    for loss in (losses.Loss("listed", listed), CallGivesList()):
        (value, acc), grads = fd.value_and_grad(model, loss, has_aux=True)(params, x, y)
        assert value == plain_value and acc == _accuracy(model.apply(params, x), y)
        np.testing.assert_array_equal(tree.ravel(grads)[0], tree.ravel(plain_grads)[0])


# ------------------------------------------------------- a loss's options, bound by partial

@pytest.mark.parametrize("loss, kw", [
    (losses.huber, {"delta": 0.25}),
    (losses.huber, {"delta": 0.25, "reduction": "sum"}),
    (losses.mse, {"reduction": "sum"}),
])
def test_a_partial_of_a_loss_trains_with_its_options(loss, kw):
    import functools

    model, params, x, y = _model_and_data(random.key(3))
    y = y * 5.0  # residuals beyond delta: huber's options change the value and the grads
    bound = functools.partial(loss, **kw)
    value, grads = fd.value_and_grad(model, bound)(params, x, y)
    by_hand = losses.Loss("by hand", lambda p, t: loss.vjp(p, t, **kw))
    want_value, want = fd.value_and_grad(model, by_hand)(params, x, y)
    default_value, _ = fd.value_and_grad(model, loss)(params, x, y)
    assert value == want_value == loss(model.apply(params, x), y, **kw)
    assert value != default_value  # the options reached the loss
    for a, b in zip(tree.leaves(grads), tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fd.grad(model, bound)(params, x, y)[0]["w"], want[0]["w"])
    fd.testing.check_loss(bound, np.linspace(-2, 2, 6).reshape(3, 2), np.zeros((3, 2)))


def test_loss_options_passed_to_f_say_to_bind_them_and_a_partial_of_no_loss_is_refused():
    import functools

    model, params, x, y = _model_and_data(random.key(3))
    with pytest.raises(TypeError, match=r"\['delta'\].*functools.partial\(fd.losses.huber"):
        fd.value_and_grad(model, losses.huber)(params, x, y, delta=0.5)
    with pytest.raises(TypeError, match=r"needs a .vjp.*functools.partial"):
        fd.value_and_grad(model, functools.partial(np.subtract, 1.0))
    assert "huber(delta=0.5)" in repr(losses.bound(functools.partial(losses.huber, delta=0.5)))
    # a long array option is named by its shape and dtype, a short one in full
    weighted = functools.partial(losses.softmax_cross_entropy, weight=np.ones(500))
    assert losses.bound(weighted).name == (
        "softmax_cross_entropy(weight=array(shape=(500,), dtype=float64))")
    short = losses.bound(functools.partial(losses.softmax_cross_entropy, weight=np.ones(2)))
    assert short.name == "softmax_cross_entropy(weight=array([1., 1.]))"


def test_a_layer_passed_as_the_loss_and_a_loss_pullback_returning_a_pair_are_named():
    model, params, x, y = _model_and_data(random.key(3))
    # a Layer has a vjp too: it failed on the target as its params ("params must be a dict")
    with pytest.raises(TypeError, match=r"the loss is a layer, Dense\(2\); pass the model"):
        fd.value_and_grad(model, L.Dense(2))
    # (dpred, dtarget) was blamed on the model's first layer as its "input"
    pair = losses.Loss("pair", lambda p, t: (0.0, lambda g: (p - t, None)))
    with pytest.raises(TypeError, match=r"loss pair returned a tuple of 2; it must return "
                                        r"dpred alone, an array of pred's shape \(8, 1\)"):
        fd.value_and_grad(model, pair)(params, x, y)


def _scale_layer() -> L.Layer:
    """A user's layer that passes a cotangent on unchecked: y = a ⊙ x."""
    def init(key, s):
        return s, {"a": np.full(s[-1], 2.0, np.float32)}

    def vjp(p, x):
        return p["a"] * x, lambda dy: ({"a": (dy * x).sum(0)}, dy * p["a"])

    return L.Layer(init, lambda p, x: p["a"] * x, vjp, name="Scale")


def test_a_loss_dpred_of_the_wrong_shape_names_the_loss_not_a_layer(key):
    # A user's loss forgetting the batch axis: the model's last child was blamed, or (a
    # user layer that does not check dy) broadcast it into wrong gradients.
    def batchless(pred, target):
        d = pred - target
        return float((d ** 2).mean()), lambda g: 2 * g * d.mean(0) / d.size

    x, t = np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)
    for model in (L.Sequential(L.Dense(3), L.Dense(3)), L.Sequential(L.Dense(3), _scale_layer())):
        _, params = model.init(key, (None, 3))
        with pytest.raises(ValueError, match=r"^grad: the pullback of the loss "
                           r"batchless returned dpred of shape \(3,\); it must have pred's "
                           r"shape \(4, 3\)$"):
            fd.grad(model, losses.Loss("batchless", batchless))(params, x, t)


def test_a_loss_dpred_in_float64_reaches_float32_params_as_float32(key):
    # torch's engine casts a gradient to its input's dtype; a user layer passing dy on
    # unchecked made the grads of float32 params float64.
    def wide(pred, target):
        d = (pred - target).astype(np.float64)
        return float((d ** 2).mean()), lambda g: 2 * g * d / d.size

    model = L.Sequential(L.Dense(3), _scale_layer())
    _, params = model.init(key, (None, 3))
    x, t = random.normal(key, (4, 3)), np.zeros((4, 3), np.float32)
    grads = fd.grad(model, losses.Loss("wide", wide))(params, x, t)
    assert [g.dtype for g in tree.leaves(grads)] == [np.float32] * 3
    expected = fd.grad(model, losses.mse)(params, x, t)
    for g, e in zip(tree.leaves(grads), tree.leaves(expected)):
        np.testing.assert_allclose(g, e, rtol=1e-6)
    with pytest.raises(TypeError, match=r"the loss ints returned dpred of dtype int64; it "
                                        r"must be of pred's kind \(float32\)"):
        fd.grad(model, losses.Loss("ints", lambda p, t: (0.0, lambda g: np.ones(p.shape,
                                                                                np.int64))))(
            params, x, t)


def test_a_loss_dpred_that_is_no_array_or_a_tuple_entry_is_named_as_the_losss(key):
    model = L.Sequential(L.Dense(3), L.ReLU())
    _, params = model.init(key, (None, 3))
    x, t = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    import numpy.ma as ma

    for dpred, error, says in (([[1.0, 2.0, 3.0], [1.0]], ValueError, "is not a rectangular"),
                               (ma.masked_array(np.ones((2, 3)), [[1, 0, 0]] * 2), ValueError,
                                "masked")):
        bad = losses.Loss("mine", lambda p, t, d=dpred: (0.0, lambda g: d))
        with pytest.raises(error, match=rf"^grad: the dpred of the loss mine .*{says}"):
            fd.grad(model, bad)(params, x, t)
    # a model of two outputs: each entry of the loss's tuple is checked and cast alike
    two = L.Sequential(L.Dense(2), L.FanOut(2))
    _, p2 = two.init(key, (None, 3))

    def pair(ds):
        return losses.Loss("pair", lambda p, t: (0.0, lambda g: ds))

    with pytest.raises(ValueError, match=r"loss pair returned dpred\[1\] of shape \(2,\); it "
                                         r"must have pred\[1\]'s shape \(2, 2\)"):
        fd.grad(two, pair((np.ones((2, 2), np.float32), np.ones(2, np.float32))))(p2, x, None)
    grads = fd.grad(two, pair((np.ones((2, 2), np.float16), np.ones((2, 2)))))(p2, x, None)
    assert all(g.dtype == np.float32 for g in tree.leaves(grads))
    # a list of dpreds is checked as the tuple (it reached the model unchecked: a wrong
    # shape was blamed on a Dense, int entries went through; a probe)
    with pytest.raises(ValueError, match=r"loss pair returned dpred\[1\] of shape \(2,\)"):
        fd.grad(two, pair([np.ones((2, 2), np.float32), np.ones(2, np.float32)]))(p2, x, None)
    with pytest.raises(TypeError, match=r"loss pair returned dpred\[0\] of dtype int64"):
        fd.grad(two, pair([np.ones((2, 2), np.int64), np.ones((2, 2))]))(p2, x, None)


def test_errors_name_grad_and_positional_keywords_say_so(key):
    """fd.grad's errors said value_and_grad; a positional key got Python's bare count of
    arguments (a probe of the autodiff API)."""
    model, params, x, y = _dense_and_data(key)
    with pytest.raises(TypeError, match=r"^grad: wrt_input must be True or False"):
        fd.grad(model, losses.mse, wrt_input=1)
    with pytest.raises(TypeError, match=r"^grad: unexpected keyword arguments \['rng'\]"):
        fd.grad(model, losses.mse)(params, x, y, rng=1)
    for call, where in ((fd.value_and_grad(model, losses.mse), "value_and_grad"),
                        (fd.grad(model, losses.mse), "grad")):
        with pytest.raises(TypeError, match=rf"^{where}: .*1 positional argument\(s\) too "
                                            rf"many; key=, train= and state= are "
                                            rf"keyword-only"):
            call(params, x, y, fd.random.key(0))
    with pytest.raises(TypeError, match=r"^vjp: vjp\(layer, params, x\) takes 1 positional "
                                        r"argument\(s\) too many"):
        fd.vjp(model, params, x, fd.random.key(0))


def test_a_loss_called_as_a_factory_says_how_to_bind_options():
    with pytest.raises(TypeError, match=r"mse: a loss is called on \(pred, target\), not "
                                        r"built by a call; .*functools.partial"):
        losses.mse(reduction="sum")
    with pytest.raises(TypeError, match=r"mse: missing the target; call it as "
                                        r"mse\(pred, target\)"):
        losses.mse(np.ones(3))
