"""The checks combinators make: bad inputs and constructor arguments named after the layer,
a None cotangent from outside refused, a user's own layer whose vjp or pullback returns
the wrong thing failing in its name (a well-formed one composing unchanged), and a stray
keyword naming the layer it reached. The combinators' behaviour: test_combinators.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_layer

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

def test_a_stray_keyword_names_the_layer_it_reached():
    # Python's own message named funcdl's closure: "Sequential.<locals>.apply() got ..."
    model = L.Sequential(L.Dense(2), L.ReLU())
    _, params = model.init(random.key(0), (None, 3))
    with pytest.raises(TypeError, match=r"^Sequential\(Dense\(2\), ReLU\(\)\)\.apply\(\) got an "
                                        r"unexpected keyword argument 'state'"):
        model.apply(params, np.ones((2, 3)), state=())
    with pytest.raises(TypeError, match=r"^Dense\(2\)\.vjp\(\) got an unexpected keyword"):
        L.Dense(2).vjp(params[0], np.ones((2, 3)), state=())


@pytest.mark.parametrize("body, error, says", [
    (lambda p, x: p["scale"] * x, KeyError, "'scale'"),
    (lambda p, x: p["a"] * x[:, [0, 1, 7]], IndexError, "index 7 is out of bounds"),
    (lambda p, x: p.a * x, AttributeError, "'dict' object has no attribute 'a'"),
    (lambda p, x: p["a"] * x * (1 // (len(x) - 4)), ZeroDivisionError, "by zero"),
])
def test_a_user_layers_own_lookup_errors_are_placed_keeping_their_class(body, error, says,
                                                                        key):
    # A wrong key or index inside a user's layer came out bare, with no place in the model.
    def vjp(p, x):
        return body(p, x), None

    user = L.Layer(lambda k, s: (s, {"a": np.ones(s[-1], np.float32)}), body, vjp, name="U")
    model = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(3), user, L.Dense(2))
    _, params = model.init(key, (None, 3))
    for call in (model.apply, model.vjp):
        with pytest.raises(error, match=r"Sequential\[3\] U: .*" + re.escape(says)):
            call(params, np.ones((4, 3), np.float32))


@pytest.mark.parametrize("make", [lambda: L.Dense(2), lambda: L.Conv2D(2, 3), lambda: L.ReLU()])
def test_init_on_branches_not_joined_says_how_to_join_them(make, key):
    # init said only "in_shape entries must be ints >= 0 or None", which apply explains
    with pytest.raises(ValueError, match=r"^Sequential\[1\] .*: in_shape entries must be ints "
                       r">= 0 or None, got \(\(None, 4, 4, 3\), \(None, 4, 4, 3\)\); a layer "
                       r"after FanOut or "
                       r"Parallel needs their branches joined first, by FanInSum\(\) or "
                       r"FanInConcat\(\), or one taken by Select\(i\)$"):
        L.Sequential(L.FanOut(2), make()).init(key, (None, 4, 4, 3))


def test_a_residual_on_a_scalar_shape_whose_branch_changes_it_is_named(key):
    # building the hint read in_shape[0] of (): a bare IndexError
    grow = L.Layer(lambda k, s: ((None, 2), ()), lambda p, x: x, lambda p, x: (x, None))
    with pytest.raises(ValueError, match=r"Residual\(Layer\): the branch maps \(\) to "
                                         r"\(None, 2\); a residual needs its output shape"):
        L.Residual(grow).init(key, ())


# ---------------------------------------------------------------------------- Slice's init

_BOUNDS = (None, -5, -2, -1, 0, 1, 2, 3, 5)


@pytest.mark.parametrize("step", [None, 1, 2, 3, -1, -2])
def test_slice_init_gives_numpys_sizes_and_none_where_an_unknown_size_decides(key, step):
    # x[:, 1:3] of an axis of unknown size was said to be 2 long (probed at 2**20 only),
    # 1 long on an input of 2, and the layers built after it had the wrong params
    for s in (slice(a, b, step) for a in _BOUNDS for b in _BOUNDS):
        layer = L.Slice(s)
        for d in range(9):
            assert layer.init(key, (None, d))[0] == (None, len(range(*s.indices(d)))), (s, d)
        got = layer.init(key, (None, None))[0]
        lengths = {np.empty((1, n))[:, s].shape[1] for n in range(40)}
        assert got == (None, lengths.pop() if len(lengths) == 1 else None), s


def test_slice_init_of_many_unknown_axes_and_of_ints_and_ellipsis(key):
    # five unknown axes after the batch axis overflowed a (1, 2**20, ...) probe: a bare
    # "iterator is too large" from NumPy
    assert L.Slice(np.s_[..., 1]).init(key, (None,) * 6)[0] == (None,) * 5
    assert L.Slice(np.s_[..., 1:]).init(key, (7, 3, 4))[0] == (7, 3, 3)
    assert L.Slice(np.s_[1, ...]).init(key, (7, 3, 4))[0] == (7, 4)
    assert L.Slice(np.s_[-1]).init(key, (None, None, 16))[0] == (None, 16)
    model = L.Sequential(L.Slice(np.s_[1:3]), L.Flatten())
    assert model.init(key, (None, None, 4))[0] == (None, None)
    with pytest.raises(ValueError, match=r"Slice: an index can hold one \.\.\. at most"):
        L.Slice(np.s_[..., ...])
    with pytest.raises(ValueError, match=r"Slice\(-4\).*\(None, 3\).*out of bounds"):
        L.Slice(-4).init(key, (None, 3))
