"""Combinators and routing layers: vjps against finite differences, equivalence with the
children composed by hand, weight sharing summing gradients, and bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

TABLE = [
    (lambda: L.Parallel(L.Dense(3), L.Tanh()), ((None, 2), (None, 4))),
    (lambda: L.Sequential(L.FanOut(3), L.Parallel(L.Dense(2), L.Dense(2), L.Identity()),
                          L.FanInConcat()), (None, 2)),
    (lambda: L.Sequential(L.FanOut(2), L.Parallel(L.Dense(4), L.Sigmoid()), L.FanInSum()),
     (None, 4)),
    (lambda: L.Residual(L.Sequential(L.Dense(5), L.ReLU(), L.Dense(5))), (None, 5)),
    (lambda: L.Residual(L.Tanh()), (None, 2, 3)),
    (lambda: L.Sequential(L.FanOut(2), L.Shared(L.Sequential(L.Dense(3), L.Tanh())),
                          L.FanInSum()), (None, 4)),
    (lambda: L.Sequential(L.FanOut(2), L.Parallel(L.Slice(np.s_[0:2]), L.Slice(np.s_[2:])),
                          L.Shared(L.Dense(3)), L.FanInConcat(), L.Dense(1)), (None, 4)),
    (lambda: L.Slice(np.s_[:, 1]), (None, 3, 4)),
    (lambda: L.Slice(1), (None, 3)),
    (lambda: L.Slice(np.s_[::2, 1:]), (None, 5, 4)),
    (lambda: L.FanInConcat(axis=1), ((None, 2, 3), (None, 4, 3))),
    (L.FanInSum, ((None, 3), (None, 3), (None, 3))),
    (lambda: L.Shared(L.Dense(2), 3), ((None, 4), (None, 4), (None, 4))),
]
IDS = [f"{i}-{c().name}" for i, (c, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_check_layer(make, in_shape, batch):
    check_layer(make(), in_shape, batch=batch)


def test_dropout_inside_branches_gets_distinct_keys(key):
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Dropout(0.5), L.Dropout(0.5)))
    _, params = model.init(key, (None, 100))
    a, b = model.apply(params, np.ones((4, 100), np.float32), key=random.key(3), train=True)
    assert not np.array_equal(a, b)
    check_vjp(model, params, np.ones((2, 10)), key=random.key(3), train=True)


def test_fanout_pullback_sums_cotangents():
    _, pullback = L.FanOut(3).vjp((), np.zeros((2, 2)))
    _, dx = pullback((np.ones((2, 2)), 2 * np.ones((2, 2)), 3 * np.ones((2, 2))))
    np.testing.assert_array_equal(dx, 6 * np.ones((2, 2)))


def test_residual_equals_manual(key):
    f = L.Sequential(L.Dense(3), L.Tanh())
    res = L.Residual(f)
    _, params = res.init(key, (None, 3))
    x = random.normal(random.key(1), (4, 3), np.float64)
    p64 = tree.astype(params, np.float64)
    y, pullback = res.vjp(p64, x)
    fy, fpb = f.vjp(p64, x)
    np.testing.assert_allclose(y, x + fy)
    dy = random.normal(random.key(2), (4, 3), np.float64)
    (dp, dx), (fdp, fdx) = pullback(dy), fpb(dy)
    np.testing.assert_allclose(dx, dy + fdx)
    tree.map(np.testing.assert_allclose, dp, fdp, shapes=True)


def test_shared_gradient_is_sum_of_per_use_gradients(key):
    enc = L.Sequential(L.Dense(4), L.Tanh())
    shared = L.Shared(enc)
    out, params = shared.init(key, ((None, 3), (None, 3)))
    assert out == ((None, 4), (None, 4))
    assert tree.structure(params) == tree.structure(enc.init(key, (None, 3))[1])
    p64 = tree.astype(params, np.float64)
    x1 = random.normal(random.key(1), (5, 3), np.float64)
    x2 = random.normal(random.key(2), (5, 3), np.float64)
    dy1 = random.normal(random.key(3), (5, 4), np.float64)
    dy2 = random.normal(random.key(4), (5, 4), np.float64)
    (y1, _), pullback = shared.vjp(p64, (x1, x2))
    dparams, (dx1, dx2) = pullback((dy1, dy2))
    g1, e1 = enc.vjp(p64, x1)[1](dy1)
    g2, e2 = enc.vjp(p64, x2)[1](dy2)
    tree.map(lambda d, a, b: np.testing.assert_allclose(d, a + b), dparams, g1, g2,
             shapes=True)
    np.testing.assert_allclose(dx1, e1)
    np.testing.assert_allclose(dx2, e2)
    np.testing.assert_allclose(y1, enc.apply(p64, x1))


def test_shared_model_trains_with_value_and_grad(key):
    # two points -> same side of the disk boundary? one encoder applied to both points
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Slice(np.s_[0:2]), L.Slice(np.s_[2:4])),
                         L.Shared(L.Sequential(L.Dense(8), L.ReLU(), L.Dense(1))),
                         L.FanInConcat(), L.Dense(1))
    _, params = model.init(key, (None, 4))
    x = random.uniform(random.key(1), (16, 4), dtype=np.float64)
    y = np.ones((16, 1))
    p64 = tree.astype(params, np.float64)
    value, grads = fd.value_and_grad(model, fd.losses.bce_with_logits)(p64, x, y)
    assert np.isfinite(value)
    tree.check_same(p64, grads, shapes=True)


def test_parallel_params_and_state_per_child(key):
    model = L.Parallel(L.Dense(2), L.ReLU(), L.Dense(3))
    out, params = model.init(key, ((None, 1), (None, 2), (None, 2)))
    assert out == ((None, 2), (None, 2), (None, 3))
    assert params[1] == () and set(params[0]) == {"b", "w"}


def test_a_residual_state_holds_one_entry_for_its_one_child(key):
    # DESIGN: a combinator's state holds one entry per child; its params are the child's
    model = L.Residual(L.BatchNorm())
    _, params, state = model.init(key, (None, 3))
    _, bn_params, bn_state = L.BatchNorm().init(key, (None, 3))
    assert set(params) == set(bn_params)
    assert type(state) is tuple and len(state) == 1 and set(state[0]) == {"mean", "var"}
    x = np.arange(12.0).reshape(4, 3)
    y, new_state = model.apply(params, x, state=state, train=True)
    y_bn, bn_new = L.BatchNorm().apply(bn_params, x, state=bn_state, train=True)
    np.testing.assert_allclose(y, x + y_bn)
    assert len(new_state) == 1
    np.testing.assert_allclose(new_state[0]["var"], bn_new["var"])
    _, _, vjp_state = model.vjp(params, x, state=state, train=True)
    np.testing.assert_allclose(vjp_state[0]["mean"], bn_new["mean"])
    with pytest.raises(ValueError, match=r"Residual\(BatchNorm\(\)\): expected state as a "
                                         r"tuple with one entry"):
        model.apply(params, x, state=bn_state)  # the child's state unwrapped
    # the vjp through the wrapped state, in training (batch statistics) and inference
    for train in (True, False):
        check_vjp(model, params, x + np.sin(x), state=state, train=train)


def test_slice_known_values_and_vjp():
    x = np.arange(12.0).reshape(2, 6)
    y, pullback = L.Slice(np.s_[1:3]).vjp((), x)
    np.testing.assert_array_equal(y, [[1, 2], [7, 8]])
    _, dx = pullback(np.ones((2, 2)))
    np.testing.assert_array_equal(dx, [[0, 1, 1, 0, 0, 0]] * 2)


def test_fan_in_concat_splits_cotangent():
    xs = (np.ones((2, 1)), np.zeros((2, 3)))
    y, pullback = L.FanInConcat().vjp((), xs)
    assert y.shape == (2, 4)
    _, (d1, d2) = pullback(np.arange(8.0).reshape(2, 4))
    np.testing.assert_array_equal(d1, [[0], [4]])
    np.testing.assert_array_equal(d2, [[1, 2, 3], [5, 6, 7]])


def test_a_stateful_sequential_under_check_finite_returns_the_new_state(key):
    # the checked forward (child by child) must hand back the children's new states
    model = L.Sequential(L.Dense(3), L.BatchNorm())
    _, params, state = model.init(key, (None, 2))
    x = random.normal(random.key(1), (5, 2), np.float64)
    _, expected = model.apply(params, x, state=state, train=True)
    assert not np.allclose(expected[1]["mean"], state[1]["mean"])
    with fd.debug.check_finite():
        _, new_state = model.apply(params, x, state=state, train=True)
        _, _, vjp_state = model.vjp(params, x, state=state, train=True)
    for got in (new_state, vjp_state):
        assert got[0] == ()
        tree.map(np.testing.assert_array_equal, got, expected, shapes=True)


def test_a_layer_below_an_embedding_gets_no_cotangent_and_the_grads_keep_their_structure(key):
    # nothing flows back from the ids: the Slice below the Embedding (no params) gets (),
    # and the pullback does not stumble on the None dx
    model = L.Sequential(L.Slice(np.s_[1:]), L.Embedding(5, 2), L.Flatten(), L.Dense(1))
    _, params = model.init(key, (None, 3))
    y, pullback = model.vjp(params, np.array([[0, 1, 4], [3, 2, 2]]))
    grads, dx = pullback(np.ones_like(y))
    assert dx is None and grads[0] == ()
    tree.check_same(params, grads, shapes=True)


def test_a_branch_whose_cotangent_is_none_gets_zero_grads(key):
    # a None entry (that branch's output came from ids, see FanOut): zero grads of that
    # branch's own params and a None dx; the other branch's grads as its layer's own
    xs = (random.normal(random.key(1), (2, 4), np.float64),
          random.normal(random.key(2), (2, 1), np.float64))
    model = L.Parallel(L.Dense(2), L.Dense(3))
    _, params = model.init(key, ((None, 4), (None, 1)))
    params = tree.astype(params, np.float64)
    dy = random.normal(random.key(3), (2, 2), np.float64)
    grads, (dx0, dx1) = model.vjp(params, xs)[1]((dy, None))
    tree.check_same(params, grads, shapes=True)
    assert dx1 is None and not any(g.any() for g in tree.leaves(grads[1]))
    g0, e0 = L.Dense(2).vjp(params[0], xs[0])[1](dy)
    tree.map(np.testing.assert_array_equal, grads[0], g0, shapes=True)
    np.testing.assert_array_equal(dx0, e0)
    shared = L.Shared(L.Dense(2))  # the sum over branches takes nothing from the None one
    grads, (dx0, dx1) = shared.vjp(params[0], (xs[0], 2 * xs[0]))[1]((dy, None))
    assert dx1 is None
    tree.map(np.testing.assert_array_equal, grads, g0, shapes=True)
    np.testing.assert_array_equal(dx0, e0)


def test_parallel_grads_come_in_the_params_container(key):
    model = L.Parallel(L.Dense(2), L.Tanh())
    _, params = model.init(key, ((None, 3), (None, 2)))
    xs = (np.ones((2, 3), np.float32), np.ones((2, 2), np.float32))
    for given in (params, list(params)):
        ys, pullback = model.vjp(given, xs)
        grads, _ = pullback(tuple(np.ones_like(y) for y in ys))
        assert type(grads) is type(given) and grads[1] == ()


def test_a_stateful_parallel_returns_each_branch_new_state(key):
    model = L.Parallel(L.BatchNorm(), L.Dense(2))
    _, params, state = model.init(key, ((None, 3), (None, 3)))
    x = np.arange(12.0).reshape(4, 3) ** 2
    _, bn_new = L.BatchNorm().apply(params[0], x, state=state[0], train=True)
    assert not np.allclose(bn_new["mean"], state[0]["mean"])
    _, new_state = model.apply(params, (x, x), state=state, train=True)
    _, _, vjp_state = model.vjp(params, (x, x), state=state, train=True)
    for got in (new_state, vjp_state):
        assert len(got) == 2 and got[1] == ()
        tree.map(np.testing.assert_array_equal, got[0], bn_new, shapes=True)


def test_shared_dropout_draws_one_mask_per_branch(key):
    # as a PyTorch module called twice: each branch its own key, in apply and vjp alike
    shared = L.Shared(L.Dropout(0.5))
    x = np.ones((4, 50))
    a, b = shared.apply((), (x, x), key=random.key(3), train=True)
    assert not np.array_equal(a, b)
    (ya, yb), _ = shared.vjp((), (x, x), key=random.key(3), train=True)
    np.testing.assert_array_equal(ya, a)
    np.testing.assert_array_equal(yb, b)
    check_vjp(shared, (), (x[:2, :10], 2 * x[:2, :10]), key=random.key(3), train=True)


# ---------------------------------------------------------------------------- bad inputs

def test_bad_inputs(key):
    with pytest.raises(ValueError, match=r"Residual\(Dense\(3\)\).*\(None, 4\) to \(None, 3\)"):
        L.Residual(L.Dense(3)).init(key, (None, 4))
    with pytest.raises(ValueError, match=r"FanInSum\(\): inputs must share one shape"):
        L.FanInSum().init(key, ((None, 3), (None, 4)))
    with pytest.raises(ValueError, match=r"FanInSum\(\).*\[\(2, 3\), \(2, 4\)\]"):
        L.FanInSum().apply((), (np.ones((2, 3)), np.ones((2, 4))))
    with pytest.raises(ValueError, match=r"FanInConcat\(axis=-1\): inputs must agree"):
        L.FanInConcat().apply((), (np.ones((2, 3)), np.ones((3, 3))))
    with pytest.raises(ValueError, match=r"Parallel\(Dense\(2\), ReLU\(\)\).*inputs.*length 1"):
        model = L.Parallel(L.Dense(2), L.ReLU())
        _, params = model.init(key, ((None, 2), (None, 2)))
        model.apply(params, (np.ones((1, 2)),))
    with pytest.raises(ValueError, match=r"Parallel\[0\] Dense\(2\): expected input"):
        model.apply(params, (np.ones((1, 3)), np.ones((1, 2))))
    with pytest.raises(ValueError, match=r"Slice\(2\).*\(None, 2\)"):
        L.Slice(2).init(key, (None, 2))
    with pytest.raises(TypeError, match="Slice: index entries"):
        L.Slice([0, 1])
    with pytest.raises(ValueError, match=r"FanOut\(2\): pullback expected dy of shape"):
        L.FanOut(2).vjp((), np.ones((2, 2)))[1]((np.ones((2, 2)), np.ones(2)))
    with pytest.raises(ValueError, match=r"FanInSum\(\): expected a non-empty tuple"):
        L.FanInSum().apply((), np.ones(3))
    with pytest.raises(TypeError, match=r"Shared.*not a layer"):
        L.Shared(L.Dense)  # type: ignore[arg-type]


def _pullback_of(model, key, in_shape, x):
    out = model.init(key, in_shape)
    if model.stateful:
        return model.vjp(out[1], x, state=out[2], train=True)[1]
    return model.vjp(out[1], x)[1]


X23 = np.ones((2, 3), np.float32)


@pytest.mark.parametrize(("make", "in_shape", "x"), [
    (lambda: L.Sequential(L.Dense(2)), (None, 3), X23),
    (lambda: L.Sequential(L.Dense(2), L.BatchNorm()), (None, 3), X23),
    (lambda: L.Sequential(L.Embedding(5, 2), L.Dense(2)), (None,), np.array([1, 2])),
    (lambda: L.Residual(L.Dense(3)), (None, 3), X23),
    (lambda: L.Parallel(L.Dense(2), L.Tanh()), ((None, 3), (None, 3)), (X23, X23)),
    (lambda: L.Shared(L.Dense(2)), ((None, 3), (None, 3)), (X23, X23)),
    (lambda: L.FanOut(2), (None, 3), X23),
    (lambda: L.Dense(2), (None, 3), X23),
], ids=["sequential", "stateful", "embedding", "residual", "parallel", "shared", "fanout",
        "dense"])
def test_a_none_cotangent_from_outside_is_refused(make, in_shape, x, key):
    # Only a child's dx inside a combinator may be None (nothing flows back from ids); a
    # top-level pullback(None) gave all-zero grads where a layer's own raised.
    model = make()
    pullback = _pullback_of(model, key, in_shape, x)
    with pytest.raises(TypeError, match=rf"^{re.escape(model.name)}: pullback expected dy.*"
                                        r"got None"):
        pullback(None)


def test_constructor_arguments_are_refused_at_construction(key):
    with pytest.raises(ValueError, match=r"Slice: a slice step cannot be zero, got "
                                         r"slice\(None, None, 0\)"):
        L.Slice(slice(None, None, 0))
    with pytest.raises(ValueError, match="step cannot be zero"):
        L.Slice((0, np.s_[::0]))
    with pytest.raises(TypeError, match=r"Slice: slice bounds.*'a'"):
        L.Slice(slice("a", None))
    with pytest.raises(TypeError, match=r"FanInConcat: axis must be an int.*'a'"):
        L.FanInConcat(axis="a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"FanInConcat: axis must be an int.*1.5"):
        L.FanInConcat(axis=1.5)  # type: ignore[arg-type]  # int() truncated it to 1
    with pytest.raises(TypeError, match=r"Shared: n must be an int"):
        L.Shared(L.Dense(2), n=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"FanOut: n must be >= 1"):
        L.FanOut(0)


def test_numpy_integer_arguments_are_accepted(key):
    # as Dense, Conv2D and Embedding take them
    shared = L.Shared(L.Dense(2), n=np.int64(3))
    out, _ = shared.init(key, ((None, 3),) * 3)
    assert shared.name == "Shared(Dense(2), 3)" and out == ((None, 2),) * 3
    assert L.FanOut(np.int32(2)).init(key, (None, 3))[0] == ((None, 3), (None, 3))
    assert L.FanInConcat(axis=np.int64(-1)).init(key, ((None, 2), (None, 3)))[0] == (None, 5)


@pytest.mark.parametrize("make", [lambda: L.Parallel(L.Dense(2), L.Dense(2)),
                                  lambda: L.Shared(L.Dense(2))], ids=["parallel", "shared"])
def test_one_shape_for_a_tuple_of_branches_names_the_combinator(make, key):
    # (None, 3) is a tuple of two entries: the first branch reported "in_shape ... None"
    model = make()
    with pytest.raises(TypeError, match=rf"^{re.escape(model.name)}: in_shape must be a "
                                        r"tuple of shapes, one per branch.*got \(None, 3\)"):
        model.init(key, (None, 3))


# ---------------------------------------------------------------------------- a user's layer
# NumPy unpacks a batch of 2 like a pair: a user's vjp returning only y, or a pullback
# returning only dx, would be taken apart row by row without these checks.

def _scale_init(key, in_shape):
    return in_shape, {"a": np.ones(in_shape[-1], np.float32)}


def _scale_apply(p, x, **kw):
    return x * p["a"]


def _user(pullback):
    return L.Layer(_scale_init, _scale_apply, lambda p, x, **kw: (x * p["a"], pullback(p, x)))


USER_FAULTS = [
    ("vjp-returns-y", L.Layer(_scale_init, _scale_apply, lambda p, x, **kw: x * p["a"]),
     TypeError, r"Sequential\[1\] Layer: vjp must return \(y, pullback\).*an array of shape "
                r"\(2, 3\)"),
    ("pullback-returns-dx", _user(lambda p, x: lambda dy: dy * p["a"]), TypeError,
     r"Sequential\[1\] Layer: the pullback must return \(dparams, dx\).*array of shape \(2, 3\)"),
    ("dparams-empty", _user(lambda p, x: lambda dy: ((), dy * p["a"])), ValueError,
     r"Sequential\[1\] Layer: the pullback's dparams must have the structure and shapes of "
     r"the params.*dict with keys \['a'\]"),
    ("dparams-shape", _user(lambda p, x: lambda dy: ({"a": dy * x}, dy * p["a"])), ValueError,
     r"Sequential\[1\] Layer: the pullback's dparams.*\(3,\).*\(2, 3\)"),
    ("dx-shape", _user(lambda p, x: lambda dy: ({"a": (dy * x).sum(0)}, dy[:, :2])), ValueError,
     r"Sequential\[1\] Layer: the pullback returned dx of shape \(2, 2\); it must have the "
     r"input's, \(2, 3\)"),
]


@pytest.mark.parametrize(("layer", "error", "says"), [c[1:] for c in USER_FAULTS],
                         ids=[c[0] for c in USER_FAULTS])
def test_a_user_layers_malformed_returns_fail_in_its_name(layer, error, says, key):
    model = L.Sequential(L.Dense(3), layer)
    _, params = model.init(key, (None, 3))
    x = np.ones((2, 3), np.float32)
    with pytest.raises(error, match=says):
        _, pullback = model.vjp(params, x)
        pullback(np.ones((2, 3), np.float32))
    with pytest.raises(error, match=says.replace(r"Sequential\[1\] ", "")):
        _, pullback = fd.vjp(layer, params[1], x)
        pullback(np.ones((2, 3), np.float32))
    with pytest.raises(error, match=says):
        fd.value_and_grad(model, fd.losses.mse)(params, x, x)


def test_a_user_layer_made_by_exec_composes(key):
    # exec'd functions have __module__ None; the check for a user's layer must take it
    scope: dict[str, object] = {}
    exec("def init(key, s):\n    return s, ()\n"
         "def vjp(p, x, **kw):\n    return 2 * x, lambda dy: ((), 2 * dy)", scope)
    double = L.Layer(scope["init"], lambda p, x, **kw: 2 * x, scope["vjp"])
    model = L.Sequential(L.Dense(3), double)
    _, params = model.init(key, (None, 2))
    x = np.ones((4, 2))
    np.testing.assert_array_equal(model.apply(params, x), 2 * L.Dense(3).apply(params[0], x))
    check_layer(model, (None, 2))


def test_a_user_init_returning_only_a_shape_is_refused(key):
    layer = L.Layer(lambda k, s: (None, 3), _scale_apply, lambda p, x, **kw: (x, None))
    with pytest.raises(TypeError, match=r"Sequential\[0\] Layer: init must return "
                                        r"\(out_shape, params\), out_shape a tuple, got a "
                                        r"tuple of length 2 whose first entry is None"):
        L.Sequential(layer).init(key, (None, 3))


def test_a_well_formed_user_layer_composes_unchanged(key):
    def vjp(p, x, **kw):
        return x * p["a"], lambda dy: ({"a": (dy * x).sum(0)}, dy * p["a"])

    calls = []

    def vjp_skipping(p, x, **kw):  # dx_optional: value_and_grad's need_dx reaches it
        y, pb = vjp(p, x)

        def pullback(dy, need_dx=True):
            calls.append(need_dx)
            g, dx = pb(dy)
            return g, (dx if need_dx else None)
        return y, pullback

    user = L.Layer(_scale_init, _scale_apply, vjp, name="Scale")
    check_layer(L.Sequential(L.Dense(3), user, L.Tanh()), (None, 2))
    skipping = L.Layer(_scale_init, _scale_apply, vjp_skipping, name="Scale", dx_optional=True)
    model = L.Sequential(skipping, L.Dense(1))
    _, params = model.init(key, (None, 2))
    x = random.normal(random.key(1), (4, 2))
    _, grads = fd.value_and_grad(model, fd.losses.mse)(params, x, np.zeros((4, 1), "f"))
    assert calls == [False] and np.all(grads[0]["a"] != 0)


@pytest.mark.parametrize("model", [
    L.Residual(L.Identity()),
    L.Sequential(L.FanOut(2), L.FanInSum()),
    L.Sequential(L.FanOut(2), L.Parallel(L.Identity(), L.ReLU()), L.FanInSum()),
])
@pytest.mark.parametrize(("x", "doubled"), [(np.uint8([[200, 1]]), [[400, 2]]),
                                            (np.array([[True, False]]), [[2, 0]])])
def test_combinators_that_add_take_integer_and_bool_inputs_as_float32(model, x, doubled):
    # as the activations do: uint8 must not wrap (200 + 200 = 144), bools must not or
    _, params = model.init(random.key(0), (None, 2))
    y = model.apply(params, x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, doubled)


@pytest.mark.parametrize("ids", [np.int64, np.uint8, np.bool_])
def test_fan_in_concat_takes_ids_beside_floats_in_the_floats_dtype(ids):
    # as Residual and FanInSum: int64 ids beside float32 features must not give float64
    layer = L.FanInConcat()
    xs = (np.array([[1, 0]], ids), np.array([[0.5]], np.float32))
    y = layer.apply((), xs)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[1, 0, 0.5]])
    y, pullback = layer.vjp((), xs)
    assert [d.dtype for d in pullback(np.ones_like(y))[1]] == [np.float32, np.float32]
    only_ids = layer.apply((), (xs[0], xs[0]))  # nothing to take a dtype from: kept as is
    assert only_ids.dtype == np.dtype(ids)


def test_residual_takes_a_list_as_every_layer_does():
    # merged() read x.shape of the list: AttributeError
    layer = L.Residual(L.Dense(2))
    _, params = layer.init(random.key(0), (None, 2))
    rows = [[1.0, 2.0], [3.0, -1.0]]
    want = layer.apply(params, np.array(rows, np.float32))  # Python floats: float32
    np.testing.assert_array_equal(layer.apply(params, rows), want)
    y, pullback = layer.vjp(params, rows)
    np.testing.assert_array_equal(y, want)
    assert pullback(np.ones((2, 2)))[1].shape == (2, 2)


@pytest.mark.parametrize("layer", [L.FanInSum(), L.FanInConcat()])
def test_merges_give_each_input_its_own_dtype_back(layer):
    # dx_i was dy, in the promoted output's dtype, for a float32 input beside a float64 one
    xs = (np.ones((2, 3), np.float32), np.full((2, 3), 2.0))
    y, pullback = layer.vjp((), xs)
    assert y.dtype == np.float64
    dy = np.arange(y.size, dtype=np.float64).reshape(y.shape) / 7
    _, (d32, d64) = pullback(dy)
    assert (d32.dtype, d64.dtype) == (np.float32, np.float64)
    want = (dy, dy) if y.shape == (2, 3) else (dy[:, :3], dy[:, 3:])
    np.testing.assert_array_equal(d32, want[0].astype(np.float32))
    np.testing.assert_array_equal(d64, want[1])


def test_a_stray_keyword_names_the_layer_it_reached():
    # Python's own message named funcdl's closure: "Sequential.<locals>.apply() got ..."
    model = L.Sequential(L.Dense(2), L.ReLU())
    _, params = model.init(random.key(0), (None, 3))
    with pytest.raises(TypeError, match=r"^Sequential\(Dense\(2\), ReLU\(\)\)\.apply\(\) got an "
                                        r"unexpected keyword argument 'state'"):
        model.apply(params, np.ones((2, 3)), state=())
    with pytest.raises(TypeError, match=r"^Dense\(2\)\.vjp\(\) got an unexpected keyword"):
        L.Dense(2).vjp(params[0], np.ones((2, 3)), state=())
