"""Tests that kill mutants of the layer base and the tree and argument helpers which the
other tests let through: a user's layer taking one of key/train or a state (its keywords
dropped, its new state threaded through Sequential), the checks around a user's layer and
Pointwise, inputs' dtypes (an int-led Python list, float64 params, float128), an int past
float64 as a bound, an axis of -rank, and tree.map's fast paths (shapes in a tuple, three
trees, map_multi's counts and empty containers). Each test names the mutant it kills."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random, tree
from funcdl.layers.base import Pointwise
from funcdl.testing import check_vjp

# ---------------------------------------------------------------------------- a user's layer


def _scale_init(key, in_shape):
    return in_shape, {"a": np.full(in_shape[-1], 3.0, np.float32)}


def test_a_users_layer_taking_key_but_not_train_gets_train_dropped():
    # _lenient.lenient: `{"key", "train"} <= set(...)` -> `{"key"} <= ...` left a function
    # taking key alone as it is, and Sequential's train= raised "unexpected keyword"
    def apply(params, x, *, key=None):
        return params["a"] * x

    def vjp(params, x, *, key=None):
        return params["a"] * x, lambda dy: ({"a": (dy * x).sum(axis=0)}, params["a"] * dy)

    model = L.Sequential(L.Dense(2), L.Layer(_scale_init, apply, vjp, name="Scale"))
    _, params = model.init(random.key(0), (None, 3))
    x = random.normal(random.key(1), (4, 3), np.float64)
    y = model.apply(params, x, key=random.key(2), train=True)
    np.testing.assert_allclose(y, 3 * L.Dense(2).apply(params[0], x), rtol=1e-6)
    check_vjp(model, tree.astype(params, np.float64), x)


def _running_sum(takes_key_and_train: bool) -> L.Layer:
    """A user's stateful layer ``y = a * x``, its state the sum of the inputs seen."""
    def init(key, in_shape):
        return in_shape, {"a": np.full(in_shape[-1], 2.0)}, np.zeros(())

    def vjp(params, x, *, state, **kw):
        return (params["a"] * x,
                lambda dy: ({"a": (dy * x).sum(axis=0)}, params["a"] * dy), state + x.sum())

    def apply(params, x, *, state, **kw):
        return params["a"] * x, state + x.sum()

    if takes_key_and_train:
        return L.Layer(init, apply, vjp, stateful=True, name="RunningSum")

    def apply_s(params, x, *, state):
        return apply(params, x, state=state)

    def vjp_s(params, x, *, state):
        return vjp(params, x, state=state)

    return L.Layer(init, apply_s, vjp_s, stateful=True, name="RunningSum")


@pytest.mark.parametrize("takes_key_and_train", [True, False])
def test_a_users_stateful_layer_threads_its_state_through_sequential(takes_key_and_train):
    # _guard._checked_vjp: `(out[0], pullback, *out[2:])` -> `(out[0], pullback)` dropped a
    # user's stateful layer's new state in Sequential's vjp; _lenient.lenient: `"state"` left
    # out of the names it allows kept apply(params, x, *, state) unwrapped, and
    # Sequential's key=, train= failed it
    model = L.Sequential(L.Dense(3), _running_sum(takes_key_and_train))
    _, params, state = model.init(random.key(0), (None, 2))
    params = tree.astype(params, np.float64)
    x = random.normal(random.key(1), (4, 2), np.float64)
    h = L.Dense(3).apply(params[0], x)
    y, new = model.apply(params, x, state=state, train=True)
    np.testing.assert_allclose(y, 2 * h)
    np.testing.assert_allclose(new[1], h.sum())
    y, pullback, new = model.vjp(params, x, state=state, train=True)
    np.testing.assert_allclose(new[1], h.sum())
    dparams, dx = pullback(np.ones_like(y))
    np.testing.assert_allclose(dparams[1]["a"], h.sum(axis=0))
    np.testing.assert_allclose(dx, 2 * np.ones((4, 3)) @ params[0]["w"].T)
    check_vjp(model, params, x, state=state)


def test_a_stateful_sequential_called_without_state_says_where_it_comes_from():
    # base.need_state: `if state is None` -> `if False`: another error, far from the cause
    model = L.Sequential(L.Dense(3), L.BatchNorm())
    _, params, _ = model.init(random.key(0), (None, 2))
    with pytest.raises(TypeError, match=r"is stateful .*pass state=.*the third value of init"):
        model.apply(params, np.ones((4, 2), np.float32))


def _scale_layer(vjp, init=_scale_init):
    return L.Layer(init, lambda p, x, **kw: p["a"] * x, vjp, name="Mine")


def _pb(p, x):
    return lambda dy: ({"a": (dy * x).sum(0)}, dy * p["a"])


@pytest.mark.parametrize(("label", "vjp", "error", "says"), [
    # _guard: `len(out) == 2 + stateful` -> `>=` let a third value through
    ("three-values", lambda p, x, **kw: (p["a"] * x, _pb(p, x), 0), TypeError,
     r"Mine: vjp must return \(y, pullback\).*a tuple of length 3"),
    # _guard: `and callable(out[1])` dropped: (y, dparams) passed for (y, pullback)
    ("no-pullback", lambda p, x, **kw: (p["a"] * x, {"a": x.sum(0)}), TypeError,
     r"Mine: vjp must return \(y, pullback\)"),
    # _guard: `len(back) == 2` -> `>=`: (dparams, dx, extra) unpacked in NumPy's words
    ("pullback-three", lambda p, x, **kw: (p["a"] * x, lambda dy: (*_pb(p, x)(dy), 0)),
     TypeError, r"Mine: the pullback must return \(dparams, dx\)"),
])
def test_a_user_layers_odd_returns_are_named(label, vjp, error, says):
    model = L.Sequential(L.Dense(3), _scale_layer(vjp))
    _, params = model.init(random.key(0), (None, 3))
    x = np.ones((2, 3), np.float32)
    with pytest.raises(error, match=rf"Sequential\[1\] {says}"):
        _, pullback = model.vjp(params, x)
        pullback(np.ones((2, 3), np.float32))


def test_a_user_layer_with_funcdls_init_is_checked_too():
    # _guard.foreign: `not all(ours(...))` -> `not any(...)`: a layer with funcdl's init
    # and a user's vjp went unchecked, its dx of the wrong shape blamed on the Dense
    dense = L.Dense(3)
    mine = L.Layer(dense.init, dense.apply,
                   lambda p, x, **kw: (dense.apply(p, x),
                                       lambda dy: (tree.map(np.zeros_like, p), dy[:, :2])),
                   name="Mine")
    model = L.Sequential(L.Dense(3), mine)
    _, params = model.init(random.key(0), (None, 3))
    with pytest.raises(ValueError, match=r"Sequential\[1\] Mine: the pullback returned dx of "
                                         r"shape \(2, 2\)"):
        _, pullback = model.vjp(params, np.ones((2, 3), np.float32))
        pullback(np.ones((2, 3), np.float32))


def test_a_users_pointwise_with_funcdls_f_has_its_df_checked():
    # _guard.checked_pointwise: `ours(act.f) and ours(act.df)` -> `or`: a user's df of the
    # wrong shape beside funcdl's f went into Dense's pullback unchecked
    sigmoid = L.Sigmoid().pointwise.f
    assert sigmoid.__module__.startswith("funcdl.")
    act = Pointwise("Mine", sigmoid, lambda x, y, dy: dy[:, :1], reads="y")
    layer = L.Layer(lambda k, s: (s, ()), lambda p, x: sigmoid(x),
                    lambda p, x: (sigmoid(x), lambda dy: ((), dy)), name="Mine", pointwise=act)
    model = L.Sequential(L.Dense(3), layer)
    _, params = model.init(random.key(0), (None, 4))
    with pytest.raises(ValueError, match=r"Mine: its Pointwise df returned dx of shape \(3, 1\)"):
        _, pullback = model.vjp(params, np.ones((3, 4), np.float32))
        pullback(np.ones((3, 3), np.float32))


# ---------------------------------------------------------------------------- inputs


def test_a_python_list_starting_with_an_int_is_weakly_typed():
    # _args.python_floats: `type(x) is float or type(x) is int` -> `type(x) is float`:
    # [[1, 2.5]] became a float64 input, turning a float32 Dense's output into float64
    dense = L.Dense(2)
    _, params = dense.init(random.key(0), (None, 2))
    y = dense.apply(params, [[1, 2.5], [0.5, 3]])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, dense.apply(params, np.array([[1, 2.5], [0.5, 3]],
                                                                np.float32)))


def test_python_floats_take_float64_params_dtype_without_rounding():
    # _params.weak_dtype: `dtype.char in "fd"` -> `"f"`: Python floats under a LayerNorm's
    # float64 params were rounded to float32 first (y off by 1e-8) and dx came back float32
    norm = L.LayerNorm()
    _, params = norm.init(random.key(0), (None, 3))
    params = tree.astype(params, np.float64)
    x = [[0.1, 0.2, 0.7], [0.3, -0.7, 1.1]]
    y, pullback = norm.vjp(params, x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, norm.apply(params, np.array(x)))
    assert pullback(np.ones((2, 3)))[1].dtype == np.float64


def test_an_int_beyond_float64_is_an_infinite_bound_of_its_sign():
    # _args.real_arg: an int past float64 as `inf if value > 0 else -inf`, signs swapped:
    # Hardtanh(-10**400, 10**400), no clipping, was refused or clipped everything
    x = np.array([[-3e3, 0.5, 7.0]], np.float32)
    np.testing.assert_array_equal(L.Hardtanh(-10**400, 10**400).apply((), x), x)
    np.testing.assert_array_equal(L.Hardtanh(0, 10**400).apply((), x), np.maximum(x, 0))


def test_a_longdouble_input_is_refused():
    # base.as_array: `a.dtype.char not in "fd"` -> `"fdg"` computed in float128 silently
    if np.dtype(np.longdouble).char == "d":
        pytest.skip("longdouble is float64 here")
    _, params = L.Dense(2).init(random.key(0), (None, 3))
    with pytest.raises(TypeError, match=r"float128 input is not supported"):
        L.Dense(2).apply(params, np.ones((2, 3), np.longdouble))


def test_an_axis_of_minus_rank_is_the_first():
    # _shapes.axis_in_range: `-rank <= axis` -> `-rank < axis` refused axis=-rank
    x = random.normal(random.key(0), (3, 4), np.float64)
    np.testing.assert_allclose(L.Softmax(axis=-2).apply((), x), L.Softmax(axis=0).apply((), x))
    check_vjp(L.Softmax(axis=-2), (), x)


# ---------------------------------------------------------------------------- trees


def test_map_shapes_checks_arrays_held_directly_in_a_tuple():
    # _treemaps._map2: the shape check of an array child of a tuple dropped: (1,) and (3,)
    # broadcast silently under shapes=True
    a, b = (np.zeros(1), np.ones(2)), (np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match=r"shape mismatch at \[0\]"):
        tree.map(lambda x, y: x + y, a, b, shapes=True)
    with pytest.raises(ValueError, match=r"shape mismatch at \[0\]"):
        tree.map(lambda x, y: x + y, list(a), list(b), shapes=True)


def test_map_of_three_trees_checks_tuple_lengths():
    # _treemaps._mapn: `len(r) != n` dropped: a longer third tree was cut silently
    a = (np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match=r"the third tree has a tuple of length 3"):
        tree.map(lambda x, y, z: x + y + z, a, a, (*a, np.ones(2)))


def test_map_multi_checks_dict_keys_not_only_their_count():
    # _treemaps._multi: `r.keys() != t.keys()` -> `len(r) != len(t)`: a KeyError, no path
    a = {"p": {"a": np.ones(2), "b": np.ones(2)}}
    b = {"p": {"a": np.ones(2), "c": np.ones(2)}}
    with pytest.raises(ValueError, match=r"mismatch at \['p'\]"):
        tree.map_multi(lambda x, y: (x, y), 2, a, b)


def test_map_multi_refuses_a_wrong_count_from_a_containers_array():
    # _treemaps._multi: `type(v) is tuple and len(v) == n` -> `type(v) is tuple`: three
    # values per leaf, or one, went by (zip cut them to what came)
    t = {"a": np.ones(2), "b": [np.ones(3)]}
    for f in (lambda x: (x, x, x), lambda x: (x,)):
        with pytest.raises(ValueError, match=r"f must return a tuple of 2 values per leaf"):
            tree.map_multi(f, 2, t)


def test_map_multi_keeps_empty_lists_and_dicts():
    # _treemaps._multi: an empty container's n copies: `((),) * n` for every kind
    assert tree.map_multi(lambda x: (x, x), 2, []) == ([], [])
    assert tree.map_multi(lambda x: (x, x), 2, {}) == ({}, {})
    out = tree.map_multi(lambda x: (x, 2 * x), 2, ({"w": np.ones(1)}, [], {}))
    assert out[1][1] == [] and out[1][2] == {} and type(out[0][1]) is list


def test_three_shapes_are_no_pair():
    # _shapes.pair_of_shapes: `len(in_shape) == 2` -> `>= 2`: MaskedMean took a third shape
    # silently at init
    with pytest.raises(TypeError, match=r"MaskedMean\(\): expected in_shape as the shapes of"):
        L.MaskedMean().init(random.key(0), ((None, 4, 3), (None, 4), (None, 4)))
    assert L.MaskedMean().init(random.key(0), ((None, 4, 3), (None, 4)))[0] == (None, 3)


class _Tagged(np.ndarray):
    """An ndarray subclass whose operators keep the subclass (as np.matrix's and masked
    arrays' do, in their own arithmetic)."""


@pytest.mark.parametrize(("layer", "in_shape"), [(L.Dense(2), (None, 3)),
                                                  (L.Conv2D(2, 3), (None, 5, 5, 1))])
def test_params_of_an_ndarray_subclass_are_read_as_plain_arrays(layer, in_shape):
    # _params.plain: `type(a) is np.ndarray` -> `isinstance(a, np.ndarray)`: the subclass
    # leaked into y and dx (a masked kernel's in NumPy's words)
    _, params = layer.init(random.key(0), in_shape)
    tagged = {k: v.view(_Tagged) for k, v in params.items()}
    x = random.normal(random.key(1), (2, *in_shape[1:]), np.float32)
    y, pullback = layer.vjp(tagged, x)
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, layer.apply(params, x))
    dparams, dx = pullback(np.ones(y.shape, np.float32))
    assert type(dx) is np.ndarray and all(type(g) is np.ndarray for g in dparams.values())
