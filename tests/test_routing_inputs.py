"""Inputs through the routing layers and combinators: Python floats (a list) take the dtype
of the params they meet, as JAX's weakly typed floats (README, Conventions: Dtypes); a
tuple holding an array is routed as a tuple, so the child's own check speaks; Identity
passes any pytree of arrays, as stax's."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_layer, check_vjp

R = np.random.default_rng(0)
X3 = R.normal(size=(2, 5, 3))  # (N, T, C)
X2 = R.normal(size=(2, 3))
LENGTHS = np.array([5, 3])


def _lists(x: Any) -> Any:
    """Every float array of ``x`` (an array or a tuple of them) as nested Python lists."""
    if isinstance(x, tuple):
        return tuple(_lists(v) for v in x)
    return x.tolist() if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x


def _f64(t: Any) -> Any:
    return fd.tree.map(lambda a: a.astype(np.float64), t)


def _run(layer: Any, params: Any, state: Any, x: Any) -> tuple[Any, Any, Any]:
    """y, dparams and dx at a fixed cotangent of ones."""
    kw = {} if state is None else {"state": state}
    y, pullback, *_ = layer.vjp(params, x, **kw)
    apply_y = layer.apply(params, x, **kw)
    fd.tree.map(np.testing.assert_array_equal, apply_y[0] if state is not None else apply_y, y)
    dparams, dx = pullback(fd.tree.map(np.ones_like, y))
    return y, dparams, dx


def _same(a: Any, b: Any) -> None:
    """Equal trees, bit for bit and dtype for dtype (None where None)."""
    la, lb = fd.tree.leaves(a), fd.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        assert u.dtype == v.dtype, (u.dtype, v.dtype)
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------ Python floats: the params' dtype

_WEAK = [
    ("Bidirectional(LSTM)", lambda: L.Bidirectional(L.LSTM(4)), (None, 5, 3), X3),
    ("Bidirectional(SimpleRNN, merge=None)",
     lambda: L.Bidirectional(L.SimpleRNN(3), merge=None), (None, 5, 3), X3),
    ("Bidirectional(GRU, sum, backward_layer)",
     lambda: L.Bidirectional(L.GRU(3), "sum", backward_layer=L.GRU(3, reverse=True)),
     (None, 5, 3), X3),
    ("Bidirectional(GRU lengths)", lambda: L.Bidirectional(L.GRU(4, lengths=True)),
     ((None, 5, 3), (None,)), (X3, LENGTHS)),
    ("Residual(Dense)", lambda: L.Residual(L.Dense(3)), (None, 3), X2),
    ("Residual(Sequential(Dense, Tanh, Dense))",
     lambda: L.Residual(L.Sequential(L.Dense(4), L.Tanh(), L.Dense(3))), (None, 3), X2),
    ("TransformerEncoderLayer", lambda: L.TransformerEncoderLayer(3, 1, 8, dropout=0.0),
     (None, 5, 3), X3),
    ("Parallel(Dense, LSTM)", lambda: L.Parallel(L.Dense(2), L.LSTM(2)),
     ((None, 3), (None, 5, 3)), (X2, X3)),
    ("Shared(Dense)", lambda: L.Shared(L.Dense(2)), ((None, 3), (None, 3)), (X2, 2 * X2)),
    ("Repeat(Dense)", lambda: L.Repeat(L.Dense(3), 2), (None, 3), X2),
    ("Remat(Dense)", lambda: L.Remat(L.Dense(3)), (None, 3), X2),
    ("Tied(Sequential(Dense, Tanh, Dense))",
     lambda: L.Tied(L.Sequential(L.Dense(3), L.Tanh(), L.Dense(3)), [0, 2]), (None, 3), X2),
    ("Sequential(LSTM)", lambda: L.Sequential(L.LSTM(4)), (None, 5, 3), X3),
]


@pytest.mark.parametrize("make, in_shape, x", [c[1:] for c in _WEAK], ids=[c[0] for c in _WEAK])
def test_a_list_of_floats_gives_what_its_float64_array_gives_under_float64_params(
        make, in_shape, x):
    layer = make()
    _, params, *state = layer.init(fd.random.key(0), in_shape)
    params, st = _f64(params), (state[0] if state else None)
    want = _run(layer, params, st, x)
    got = _run(layer, params, st, _lists(x))
    _same(got[0], want[0])  # y
    _same(got[1], want[1])  # dparams
    _same(got[2], want[2])  # dx: float64, as the float64 array's (the pair's lengths: None)
    assert fd.tree.leaves(got[2])[0].dtype == np.float64


@pytest.mark.parametrize("make, in_shape, x", [c[1:] for c in _WEAK[:5]],
                         ids=[c[0] for c in _WEAK[:5]])
def test_a_list_of_floats_stays_float32_under_float32_params(make, in_shape, x):
    layer = make()
    _, params, *state = layer.init(fd.random.key(0), in_shape)
    st = state[0] if state else None
    x32 = fd.tree.map(lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a, x)
    want = _run(layer, params, st, x32)
    got = _run(layer, params, st, _lists(x32))
    _same(got[0], want[0])
    _same(got[2], want[2])
    assert fd.tree.leaves(got[0])[0].dtype == np.float32


def test_bidirectional_list_input_matches_its_array_exactly_as_the_probe_found():
    m = L.Bidirectional(L.LSTM(4))
    _, p = m.init(fd.random.key(0), (None, 5, 3))
    p = _f64(p)
    assert np.abs(m.apply(p, X3) - m.apply(p, X3.tolist())).max() == 0.0
    # two sequences given as a list are a batch of two, not a pair (x, lengths)
    two = X3[:2]
    np.testing.assert_array_equal(m.apply(p, two.tolist()), m.apply(p, two))
    # a list of rank 2 is no pair either: the recurrent layer says what it needs
    with pytest.raises(ValueError, match=r"LSTM\(4\): expected input \(N, T, 3\) of rank 3"):
        m.apply(p, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


@pytest.mark.parametrize("merge", [L.FanInSum, L.FanInConcat])
def test_fan_in_takes_python_floats_in_the_dtype_of_the_arrays_beside_them(merge):
    layer = merge()
    a = R.normal(size=(2, 3))
    y = layer.apply((), (a, a.tolist()))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, layer.apply((), (a, a)))  # not rounded to float32
    a32 = a.astype(np.float32)
    assert layer.apply((), (a32, a.tolist())).dtype == np.float32
    y32 = layer.apply((), (a.tolist(), a.tolist()))  # no array beside them: float32
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, layer.apply((), (a32, a32)))
    _, pullback = layer.vjp((), (a, a.tolist()))
    dy = R.normal(size=y.shape)
    _, dx = pullback(dy)
    assert dx[0].dtype == dx[1].dtype == np.float64
    check_vjp(layer, (), (a, 2 * a))


# ------------------------------------------------------------ a tuple routed as a tuple

def test_bidirectional_given_a_scalar_length_says_what_the_recurrent_layer_needs():
    x = X3.astype(np.float32)
    plain, bi = L.GRU(4, lengths=True), L.Bidirectional(L.GRU(4, lengths=True))
    for layer in (plain, bi):
        _, params = layer.init(fd.random.key(0), ((None, 5, 3), (None,)))
        for call in (layer.apply, layer.vjp):
            with pytest.raises((TypeError, ValueError), match=r"GRU\(4, lengths=True\): "
                               r"lengths must") as err:
                call(params, (x, 5))
            assert "must be one array" not in str(err.value)
            assert "np.stack" not in str(err.value)


def test_fan_out_copies_a_tuple_holding_an_array_and_any_other_entry():
    x = X3.astype(np.float32)
    ys = L.FanOut(2).apply((), (x, 5))
    assert len(ys) == 2 and ys[0][0] is x and ys[0][1] == 5
    _, pullback = L.FanOut(2).vjp((), (x, 5))
    dy = np.ones_like(x)
    _, dx = pullback(((dy, None), (2 * dy, None)))
    assert isinstance(dx, tuple) and dx[1] is None
    np.testing.assert_array_equal(dx[0], 3 * dy)  # the copies' cotangents summed


# ------------------------------------------------------------ Identity on a pytree

PAIR = ((None, 2), (None, 4))


def test_identity_passes_a_pair_and_its_cotangent_unchanged():
    layer = L.Identity()
    out, params = layer.init(fd.random.key(0), PAIR)
    assert out == PAIR and params == ()
    a, b = R.normal(size=(3, 2)), R.normal(size=(3, 4))
    y = layer.apply((), (a, b))
    assert isinstance(y, tuple) and y[0] is a and y[1] is b
    y, pullback = layer.vjp((), (a, b))
    da, db = R.normal(size=a.shape), R.normal(size=b.shape)
    _, dx = pullback([da, db])  # a list for a tuple: dx in x's container
    assert isinstance(dx, tuple)
    np.testing.assert_array_equal(dx[0], da)  # dx = dy: no sign, no factor
    np.testing.assert_array_equal(dx[1], db)
    check_layer(layer, PAIR)
    check_vjp(layer, (), (a, b))


def test_identity_passes_nested_trees_and_none_where_nothing_flows_back():
    layer = L.Identity()
    shapes = {"x": (None, 2), "pair": ((None, 3), (None,))}
    out, _ = layer.init(fd.random.key(0), shapes)
    assert out == shapes
    x, m = R.normal(size=(2, 2)), np.array([True, False])
    tree = {"x": x, "pair": (R.normal(size=(2, 3)), m)}
    y, pullback = layer.vjp((), tree)
    assert y["x"] is x and y["pair"][1] is m
    dy = {"x": np.ones((2, 2)), "pair": (np.full((2, 3), 2.0), None)}
    _, dx = pullback(dy)
    np.testing.assert_array_equal(dx["x"], dy["x"])
    np.testing.assert_array_equal(dx["pair"][0], dy["pair"][0])
    assert dx["pair"][1] is None
    with pytest.raises(ValueError, match=r"Identity\(\): pullback expected dy\['pair'\] of "
                                         r"the output's structure, a tuple of 2"):
        pullback({"x": np.ones((2, 2)), "pair": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"Identity\(\) \(dy\['x'\]\): pullback expected dy "
                                         r"of shape \(2, 2\)"):
        pullback({"x": np.ones((2, 3)), "pair": (None, None)})
    with pytest.raises(TypeError, match=r"Identity\(\): pullback expected dy"):
        pullback(None)


def test_identity_in_parallel_on_a_pair_of_pairs():
    layer = L.Parallel(L.Dense(2), L.Identity())
    in_shape = ((None, 3), PAIR)
    out, params = layer.init(fd.random.key(0), in_shape)
    assert out == ((None, 2), PAIR)
    check_layer(layer, in_shape)
    x = (R.normal(size=(3, 3)), (R.normal(size=(3, 2)), R.normal(size=(3, 4))))
    check_vjp(layer, _f64(params), x)
    y, pullback = layer.vjp(params, x)
    assert y[1][0] is x[1][0] and y[1][1] is x[1][1]
    dy = (np.ones((3, 2)), (np.full((3, 2), -2.0), np.full((3, 4), 3.0)))
    _, dx = pullback(dy)
    np.testing.assert_array_equal(dx[1][0], dy[1][0])
    np.testing.assert_array_equal(dx[1][1], dy[1][1])


def test_identity_on_one_array_is_as_before():
    layer = L.Identity()
    assert layer.init(None, (None, 3)) == ((None, 3), ())
    y = layer.apply((), [[1.0, 2.0]])  # a list: one array, float32 (no params)
    assert y.dtype == np.float32 and y.shape == (1, 2)
    # a list of arrays is a tree, as init reads a list of shapes (DESIGN: lists are tree
    # containers); a next layer reads it as rows
    pair = layer.apply((), [np.ones(2), np.zeros(2)])
    assert isinstance(pair, list) and [a.shape for a in pair] == [(2,), (2,)]
    with pytest.raises(ValueError, match=r"Identity\(\): in_shape entries must be ints >= 0 "
                                         r"or None, got \(None, -1\)"):
        layer.init(None, (None, -1))
    with pytest.raises(TypeError, match=r"Identity\(\): in_shape must be a tuple"):
        layer.init(None, {})
    with pytest.raises(TypeError, match=r"Identity\(\): got an empty dict, which is no input"):
        layer.apply((), {})
    check_layer(layer, (None, 3))


class _Rec(NamedTuple):
    a: Any
    b: Any


def test_identity_dy_with_other_keys_names_the_expected_and_the_given_ones():
    layer = L.Identity()
    x = {"a": np.ones(2), "b": np.zeros(2)}
    _, pullback = layer.vjp((), x)
    with pytest.raises(ValueError, match=r"Identity\(\): pullback expected dy of the output's "
                                         r"structure, a dict with keys \{'a', 'b'\}, got a "
                                         r"dict with keys \{'a', 'c'\}; give the cotangent"):
        pullback({"a": np.ones(2), "c": np.ones(2)})
    _, pullback = layer.vjp((), {"outer": x})  # nested: the path and both key sets
    with pytest.raises(ValueError, match=r"expected dy\['outer'\] of the output's structure, "
                                         r"a dict with keys \{'a', 'b'\}, got a dict with "
                                         r"keys \{'a'\}"):
        pullback({"outer": {"a": np.ones(2)}})


def test_identity_keeps_a_namedtuple_of_lists_a_namedtuple_entry_by_entry():
    """P([1., 2.], [3., 4.]) is a record of two arrays, as P(x, x) is, never stacked into
    one (2, 2) array; its cotangent comes back in the same record."""
    layer = L.Identity()
    y = layer.apply((), _Rec([1.0, 2.0], [3.0, 4.0]))
    assert type(y) is _Rec and y.a.shape == (2,) and y.a.dtype == np.float32
    np.testing.assert_array_equal(y.a, [1.0, 2.0])
    np.testing.assert_array_equal(y.b, [3.0, 4.0])
    x = np.arange(2.0)
    assert type(layer.apply((), _Rec(x, x))) is _Rec  # as before: arrays keep it too
    y, pullback = layer.vjp((), {"r": _Rec([[1.0]], 2.0)})  # nested, a scalar entry too
    assert type(y["r"]) is _Rec and y["r"].a.shape == (1, 1) and y["r"].b.shape == ()
    _, dx = pullback({"r": (np.full((1, 1), -3.0, np.float32), np.float32(5.0))})
    assert type(dx["r"]) is _Rec and dx["r"].a[0, 0] == -3.0 and dx["r"].b == 5.0


def test_identity_given_an_empty_dict_says_it_is_no_input():
    layer = L.Identity()
    msg = r"Identity\(\): got an empty dict, which is no input .*give an array, or a tree"
    with pytest.raises(TypeError, match=msg):
        layer.apply((), {})
    with pytest.raises(TypeError, match=msg):
        layer.vjp((), {})
    with pytest.raises(TypeError, match=msg):  # inside a tree too
        layer.apply((), {"x": np.ones(2), "empty": {}})


def test_identity_reads_a_list_of_arrays_as_init_reads_a_list_of_shapes():
    """init takes [(None, 2), (None, 2)] as a tree of two shapes: apply returns a list of
    two arrays, not one stacked array; a list of numbers is still one array's rows."""
    layer = L.Identity()
    out_shape, _ = layer.init(fd.random.key(0), [(None, 2), (None, 1)])
    assert out_shape == [(None, 2), (None, 1)]
    y = layer.apply((), [np.ones((3, 2)), np.zeros((3, 1))])
    assert isinstance(y, list) and [a.shape for a in y] == [(3, 2), (3, 1)]
    assert layer.apply((), [[1.0, 2.0], [3.0, 4.0]]).shape == (2, 2)


def test_check_layer_takes_a_dict_or_list_of_shapes():
    """check_layer drew inputs for a tuple of shapes only, and recursed on a dict's keys."""
    check_layer(L.Identity(), {"a": (None, 3), "b": [(None, 2), (None, 1)]})
    check_layer(L.Identity(), [(None, 3), (None, 2)])
    check_layer(L.Identity(), {"a": [None, 3]})  # a list shape inside a dict, as at the top

    class Pair(NamedTuple):
        a: Any
        b: Any

    check_layer(L.Identity(), Pair((None, 3), (None, 2)))
