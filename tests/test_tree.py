"""Tests for funcdl.tree: containers, multi-tree map, mismatch paths, flatten, ravel."""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funcdl import tree


class Adam(NamedTuple):
    mu: Any
    nu: Any


class Pair(NamedTuple):
    first: Any
    second: Any


def _assert_trees_equal(a: Any, b: Any) -> None:
    """Same structure, and leaf-wise the same shape, dtype and values."""
    assert tree.structure(a) == tree.structure(b)
    for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------ map

def test_map_dict_visits_keys_sorted_and_keeps_keys():
    seen = []

    def f(x):
        seen.append(x)
        return x * 10

    out = tree.map(f, {"w": 1, "b": 2, "a": 3})
    assert seen == [3, 2, 1]
    assert out == {"a": 30, "b": 20, "w": 10}
    assert type(out) is dict


def test_leaves_dict_sorted_order():
    t = {"w": np.ones(2), "b": np.zeros(3)}
    leaves = tree.leaves(t)
    assert [x.shape for x in leaves] == [(3,), (2,)]


def test_map_list_and_tuple_keep_their_type():
    out_list = tree.map(lambda x: x + 1, [1, [2, 3]])
    assert out_list == [2, [3, 4]]
    assert type(out_list) is list and type(out_list[1]) is list
    out_tuple = tree.map(lambda x: x + 1, (1, (2, 3)))
    assert out_tuple == (2, (3, 4))
    assert type(out_tuple) is tuple and type(out_tuple[1]) is tuple


def test_map_namedtuple_preserves_type_and_fields():
    state = Adam(mu=np.ones(2), nu=(np.full(3, 2.0),))
    out = tree.map(lambda x: x * 3, state)
    assert type(out) is Adam
    np.testing.assert_array_equal(out.mu, np.full(2, 3.0))
    assert type(out.nu) is tuple
    np.testing.assert_array_equal(out.nu[0], np.full(3, 6.0))


def test_map_none_has_no_leaves():
    def boom(x):
        raise AssertionError(f"f called on {x!r}")

    assert tree.map(boom, None) is None
    assert tree.leaves(None) == []
    out = tree.map(boom, {"a": None, "b": [None, ()]})
    assert out == {"a": None, "b": [None, ()]}


def test_nested_empties_are_containers_not_leaves():
    t = ((), [], {}, None, ((), [()]))

    def boom(x):
        raise AssertionError(f"f called on {x!r}")

    out = tree.map(boom, t)
    assert out == t
    assert type(out[0]) is tuple and type(out[1]) is list and type(out[2]) is dict
    assert tree.leaves(t) == []
    assert tree.structure(t).num_leaves == 0
    assert tree.unflatten(tree.structure(t), []) == t


def test_scalars_and_arrays_are_leaves():
    a = np.arange(3)
    (only,) = tree.leaves(a)
    assert only is a
    assert tree.leaves([1, 2.5, np.float32(3)]) == [1, 2.5, np.float32(3)]
    assert tree.map(lambda x: x * 2, 4) == 8


def test_map_multi_tree():
    params = {"w": np.array([1.0, 2.0]), "b": np.array([3.0])}
    grads = {"b": np.array([10.0]), "w": np.array([20.0, 40.0])}  # insertion order differs
    out = tree.map(lambda p, g: p - 0.1 * g, params, grads)
    np.testing.assert_allclose(out["w"], [-1.0, -2.0])
    np.testing.assert_allclose(out["b"], [2.0])


def test_map_three_trees_with_namedtuple():
    a = Adam(mu=[1, 2], nu=3)
    b = Adam(mu=[10, 20], nu=30)
    c = Adam(mu=[100, 200], nu=300)
    out = tree.map(lambda x, y, z: x + y + z, a, b, c)
    assert out == Adam(mu=[111, 222], nu=333)
    assert type(out) is Adam


def test_map_multi_tree_with_none_and_empties():
    a = {"x": None, "y": (), "z": 1}
    b = {"x": None, "y": (), "z": 2}
    assert tree.map(lambda u, v: u + v, a, b) == {"x": None, "y": (), "z": 3}


# ------------------------------------------------------------------------- mismatches

@pytest.mark.parametrize(
    ("a", "b", "path"),
    [
        # different dict keys
        ([0, {"w": 1}], [0, {"v": 1}], "[1]"),
        # leaf vs container, deep
        ([0, {"w": 1}], [0, {"w": (1,)}], "[1]['w']"),
        # container vs leaf, deep
        ([0, {"w": (1,)}], [0, {"w": 1}], "[1]['w']"),
        # list vs tuple
        ({"a": [1, 2]}, {"a": (1, 2)}, "['a']"),
        # different lengths
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, "['a']"),
        # NamedTuple vs tuple
        ([Adam(1, 2)], [(1, 2)], "[0]"),
        # a field of a NamedTuple differs in type
        (Adam(mu=(1, 2), nu=3), Adam(mu=[1, 2], nu=3), ".mu"),
        # two different NamedTuple classes with equal arity
        ({"s": Adam(1, 2)}, {"s": Pair(1, 2)}, "['s']"),
        # None vs leaf, both ways
        ({"b": None, "w": 1}, {"b": 1, "w": 1}, "['b']"),
        ({"b": 1, "w": 1}, {"b": None, "w": 1}, "['b']"),
        # empty tuple vs None
        ([(), 1], [None, 1], "[0]"),
        # deeper path through a NamedTuple
        (Adam(mu=[1, {"k": 2}], nu=3), Adam(mu=[1, {"k": [2]}], nu=3), ".mu[1]['k']"),
    ],
)
def test_map_mismatch_names_first_differing_path(a, b, path):
    with pytest.raises(ValueError, match="mismatch") as info:
        tree.map(lambda x, y: x, a, b)
    msg = str(info.value)
    assert f"at {path}:" in msg, msg


def test_map_mismatch_at_root_says_root():
    with pytest.raises(ValueError, match="root"):
        tree.map(lambda x, y: x, [1, 2], [1, 2, 3])


def test_map_mismatch_reports_the_first_path_in_flatten_order():
    # both ['a'] and ['z'] differ; ['a'] comes first in sorted order
    a = {"z": [1], "a": [1]}
    b = {"z": (1,), "a": (1,)}
    with pytest.raises(ValueError, match=r"at \['a'\]:"):
        tree.map(lambda x, y: x, a, b)


def test_map_mismatch_in_third_tree():
    with pytest.raises(ValueError, match=r"at \[1\]:"):
        tree.map(lambda x, y, z: x, [1, 2], [1, 2], [1, [2]])


_A = np.zeros((2, 3))


@pytest.mark.parametrize(
    "a, b, path",
    [
        # the array fast paths: a model's params are dicts of arrays inside a tuple
        (({"w": _A}, ()), ({"w": {"x": _A}}, ()), "[0]['w']"),
        (({"w": _A}, ()), ({"w": None}, ()), "[0]['w']"),
        (({"w": _A}, ()), ({"v": _A}, ()), "[0]"),
        (({"w": _A}, ()), ({"w": _A}, (_A,)), "[1]"),
        (({"w": _A}, ()), ({"w": _A}, None), "[1]"),
        ([_A, _A], [_A, [_A]], "[1]"),
        (_A, [_A], "the root"),
        ({"w": _A}, {"w": _A, "b": _A}, "the root"),
        ((_A,), ((),), "[0]"),
        (((),), (_A,), "[0]"),
        ([_A, _A], [_A, None], "[1]"),
        (({"w": {"x": _A}},), ({"w": {"x": _A, "y": _A}},), "[0]['w']"),
        (({"w": _A},), ({"w": _A, "b": _A},), "[0]"),
    ],
)
def test_map_mismatch_with_array_leaves(a, b, path):
    with pytest.raises(ValueError, match="mismatch") as info:
        tree.map(lambda x, y: x, a, b)
    assert f"at {path}" in str(info.value)


def test_map_shapes_true_rejects_differing_leaf_shapes_and_names_the_path():
    a = ({"b": np.zeros(3), "w": np.zeros((2, 3))}, ())
    b = ({"b": np.zeros(3), "w": np.zeros((3, 2))}, ())
    assert tree.map(lambda x, y: x.shape, a, b)[0]["w"] == (2, 3)  # shapes not compared
    with pytest.raises(ValueError, match=r"at \[0\]\['w'\].*\(2, 3\).*\(3, 2\)"):
        tree.map(lambda x, y: x, a, b, shapes=True)
    with pytest.raises(ValueError, match=r"at \[0\]\['w'\]"):
        tree.map_multi(lambda x, y: (x, y), 2, a, b, shapes=True)
    with pytest.raises(ValueError, match=r"at \[0\]\['w'\]"):
        tree.map(lambda x, y, z: x, a, a, b, shapes=True)
    # scalar leaves against arrays of shape () are fine; against (1,) they are not
    assert tree.map(lambda x, y: x + y, [np.zeros(())], [1.0], shapes=True) == [1.0]
    with pytest.raises(ValueError, match=r"at \[0\]"):
        tree.map(lambda x, y: x, [np.zeros(1)], [1.0], shapes=True)


def test_map_keeps_containers_and_calls_f_once_per_leaf_pair():
    a = ({"w": np.ones(2), "b": np.ones(1)}, (), [np.ones(3)], None, {})
    calls = []

    def f(x, y):
        calls.append((x.shape, y.shape))
        return x - y

    out = tree.map(f, a, a)
    assert type(out) is tuple and out[1] == () and type(out[2]) is list and out[3] is None
    assert out[4] == {} and sorted(out[0]) == ["b", "w"]
    assert sorted(calls) == [((1,), (1,)), ((2,), (2,)), ((3,), (3,))]


# ------------------------------------------------------------------- flatten / unflatten

def test_flatten_unflatten_round_trip():
    t = {"layers": [Adam(mu=np.ones(2), nu=None), ((), np.zeros((2, 3)))], "step": 3}
    leaves, treedef = tree.flatten(t)
    assert len(leaves) == 3
    assert leaves[0] is t["layers"][0].mu
    assert leaves[1] is t["layers"][1][1]
    assert leaves[2] == 3
    assert treedef.num_leaves == 3
    back = tree.unflatten(treedef, leaves)
    _assert_trees_equal(back, t)
    assert type(back["layers"][0]) is Adam
    assert back["layers"][0].nu is None


def test_unflatten_accepts_new_leaves_in_flatten_order():
    _, treedef = tree.flatten({"w": 0, "b": 0, "c": [0, 0]})
    assert tree.unflatten(treedef, iter([1, 2, 3, 4])) == {"b": 1, "c": [2, 3], "w": 4}


@pytest.mark.parametrize("n", [2, 4, 0])
def test_unflatten_wrong_leaf_count(n):
    _, treedef = tree.flatten([1, (2, 3)])
    with pytest.raises(ValueError, match="3 leaves"):
        tree.unflatten(treedef, list(range(n)))


def test_structure_equality():
    assert tree.structure({"a": 1, "b": [2, 3]}) == tree.structure({"b": [4.0, 5.0], "a": 6})
    assert tree.structure(Adam(1, None)) == tree.structure(Adam(np.ones(3), None))
    assert tree.structure(np.zeros(3)) == tree.structure(7)
    assert hash(tree.structure({"a": (1,)})) == hash(tree.structure({"a": (2,)}))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 2], (1, 2)),
        ([1, 2], [1, 2, 3]),
        ({"a": 1}, {"b": 1}),
        (Adam(1, 2), (1, 2)),
        (Adam(1, 2), Pair(1, 2)),
        (None, 1),
        (None, ()),
        ((), []),
        ([1], [[1]]),
    ],
)
def test_structure_inequality(a, b):
    assert tree.structure(a) != tree.structure(b)


def test_leaves_with_path():
    t = [np.ones(1), {"w": Adam(mu=[5, 6], nu=7), "b": None}]
    paths = [p for p, _ in tree.leaves_with_path(t)]
    assert paths == ["[0]", "[1]['w'].mu[0]", "[1]['w'].mu[1]", "[1]['w'].nu"]
    assert [x for _, x in tree.leaves_with_path(t)][1:] == [5, 6, 7]
    assert tree.leaves_with_path(3) == [("", 3)]
    assert tree.leaves_with_path(None) == []


# ------------------------------------------------------------------------------ ravel

def test_ravel_unravel_restores_shapes_and_dtypes():
    t = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "b": np.array([0.1, 0.2], dtype=np.float64),
        "s": Adam(mu=np.float32(1.5) * np.ones((1, 1, 2), np.float32), nu=None),
    }
    vec, unravel = tree.ravel(t)
    assert vec.shape == (6 + 2 + 2,)
    assert vec.dtype == np.float64
    # flatten order: b, s.mu, w
    np.testing.assert_array_equal(vec[:2], t["b"])
    np.testing.assert_array_equal(vec[2:4], [1.5, 1.5])
    np.testing.assert_array_equal(vec[4:], t["w"].ravel())
    back = unravel(vec)
    _assert_trees_equal(back, t)
    assert back["w"].dtype == np.float32
    assert back["s"].mu.dtype == np.float32
    assert back["b"].dtype == np.float64


def test_ravel_all_float32_gives_float32_vector():
    vec, unravel = tree.ravel([np.ones(2, np.float32), np.zeros((2, 2), np.float32)])
    assert vec.dtype == np.float32
    out = unravel(np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(out[1], [[2.0, 3.0], [4.0, 5.0]])


@pytest.mark.parametrize("t", [
    {"w": np.ones(2, np.float32), "count": np.int64(2**24 + 1)},  # an optimizer state
    {"w": np.ones(2, np.float32), "lr": 0.1, "n": 3, "flag": True},
    {"i": np.arange(2, dtype=np.int32), "j": np.array([2**62 + 1])},
])
def test_ravel_round_trips_every_leaf_exactly(t):
    # NumPy's promotion (float64 here), where JAX's ravel_pytree would keep float32 and
    # round 2**24 + 1 and 0.1.
    vec, unravel = tree.ravel(t)
    assert vec.dtype == np.result_type(*[np.asarray(x) for x in tree.leaves(t)])
    for (path, a), b in zip(tree.leaves_with_path(t), tree.leaves(unravel(vec)), strict=True):
        assert np.asarray(b).dtype == np.asarray(a).dtype and np.array_equal(b, a), path


def test_ravel_does_not_alias_the_tree():
    t = {"a": np.ones(3)}
    vec, _ = tree.ravel(t)
    vec[:] = 5.0
    np.testing.assert_array_equal(t["a"], np.ones(3))


@pytest.mark.parametrize("empty", [(), None, {"a": [], "b": None}])
def test_ravel_empty_tree(empty):
    vec, unravel = tree.ravel(empty)
    assert vec.shape == (0,)
    assert unravel(vec) == empty
    with pytest.raises(ValueError, match="unravel"):
        unravel(np.zeros(1))


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros(6), np.zeros((1, 5)), np.zeros(())])
def test_unravel_wrong_size_vector(bad):
    _, unravel = tree.ravel({"a": np.ones(2), "b": np.ones((1, 3))})
    with pytest.raises(ValueError, match=r"\(5,\)"):
        unravel(bad)


# ---------------------------------------------------------------- zeros_like / astype

def test_zeros_like():
    t = Adam(mu={"w": np.ones((2, 3), np.float32)}, nu=[np.full(2, 7, np.int64), None])
    z = tree.zeros_like(t)
    assert type(z) is Adam
    assert z.mu["w"].shape == (2, 3) and z.mu["w"].dtype == np.float32
    assert z.nu[0].dtype == np.int64
    assert z.nu[1] is None
    assert all(np.all(x == 0) for x in tree.leaves(z))
    np.testing.assert_array_equal(t.mu["w"], np.ones((2, 3)))  # input untouched


def test_astype_casts_float_leaves_only():
    ints = np.array([1, 2], np.int32)
    flags = np.array([True, False])
    t = {"w": np.ones(2, np.float32), "n": ints, "m": flags, "h": np.ones(1, np.float16)}
    out = tree.astype(t, np.float64)
    assert out["w"].dtype == np.float64
    assert out["h"].dtype == np.float64
    assert out["n"].dtype == np.int32
    assert out["m"].dtype == np.bool_
    np.testing.assert_array_equal(out["n"], ints)
    assert t["w"].dtype == np.float32  # input untouched
    back = tree.astype(out, np.float32)
    assert back["w"].dtype == np.float32 and back["n"].dtype == np.int32


# ------------------------------------------------------------------------ check_same

def test_check_same_passes_on_equal_structure():
    a = {"w": np.ones((2, 3), np.float32), "s": Adam(1, None)}
    b = {"w": np.zeros((2, 3), np.float32), "s": Adam(2, None)}
    tree.check_same(a, b, shapes=True, dtypes=True)


def test_check_same_structure_mismatch_path_and_names():
    with pytest.raises(ValueError, match=r"at \['s'\]\.mu") as info:
        tree.check_same({"s": Adam([1], 2)}, {"s": Adam((1,), 2)}, ("params", "grads"))
    assert "params" in str(info.value) and "grads" in str(info.value)


def test_check_same_shapes_only_when_asked():
    a = [np.ones(2), {"w": np.ones((2, 3))}]
    b = [np.ones(2), {"w": np.ones((3, 2))}]
    tree.check_same(a, b)  # structure only
    with pytest.raises(ValueError, match=r"shape mismatch at \[1\]\['w'\]") as info:
        tree.check_same(a, b, shapes=True)
    assert "(2, 3)" in str(info.value) and "(3, 2)" in str(info.value)


def test_check_same_dtypes_only_when_asked():
    a = Adam(mu=np.ones(2, np.float32), nu=np.ones(2, np.float32))
    b = Adam(mu=np.ones(2, np.float32), nu=np.ones(2, np.float64))
    tree.check_same(a, b, shapes=True)
    with pytest.raises(ValueError, match=r"dtype mismatch at \.nu") as info:
        tree.check_same(a, b, dtypes=True)
    assert "float32" in str(info.value) and "float64" in str(info.value)


# -------------------------------------------------------------------------- property

_leaf = hnp.arrays(
    dtype=st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
    elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
)
_key = st.text(alphabet="abcxyz", min_size=1, max_size=3)
_trees = st.recursive(
    st.one_of(_leaf, st.none()),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(_key, kids, max_size=3),
        st.builds(Pair, kids, kids),
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_property_round_trips(t):
    leaves, treedef = tree.flatten(t)
    assert treedef == tree.structure(t)
    back = tree.unflatten(treedef, leaves)
    _assert_trees_equal(back, t)

    vec, unravel = tree.ravel(t)
    assert vec.ndim == 1
    assert vec.size == sum(np.size(x) for x in leaves)
    _assert_trees_equal(unravel(vec), t)
    # unravel is a function of the vector, not a replay of the tree
    _assert_trees_equal(unravel(vec * 0), tree.zeros_like(t))


def test_a_dict_and_an_ordered_dict_map_together_either_way():
    # The slow path already treats an OrderedDict as a dict; the fast paths must agree.
    plain, ordered = {"a": 1, "b": 2}, collections.OrderedDict(b=20, a=10)
    assert tree.map(lambda x, y: x + y, plain, ordered) == {"a": 11, "b": 22}
    assert tree.map(lambda x, y: x + y, ordered, plain) == {"a": 11, "b": 22}
    assert tree.map(lambda x, y, z: x + y + z, plain, ordered, plain) == {"a": 12, "b": 24}
    assert tree.map_multi(lambda x, y: (x, y), 2, plain, ordered)[1] == {"a": 10, "b": 20}


def test_map_mismatch_names_the_trees_by_position():
    with pytest.raises(ValueError, match=r"the first tree has a list of length 2, the second "
                                         r"tree has a list of length 1"):
        tree.map(lambda a, b: a, [1, 2], [1])
    with pytest.raises(ValueError, match=r"the first tree has .* the third tree has"):
        tree.map(lambda a, b, c: a, {"a": 1}, {"a": 1}, {"b": 1})


@pytest.mark.parametrize("call", [tree.leaves, tree.structure, tree.flatten, tree.ravel,
                                  lambda t: tree.map(lambda x: x, t),
                                  lambda t: tree.map(lambda *x: x[0], t, t, t)])
def test_dict_keys_that_cannot_be_ordered_are_named(call):
    with pytest.raises(TypeError, match=r"keys must be sortable.*int, str: \[1, 'a'\]"):
        call({"x": {1: 1.0, "a": 2.0}})


@pytest.mark.parametrize("t, path", [(["abc", np.ones(2)], r"\[0\]"),
                                     ({"x": [np.ones(1), np.array([object()])]}, r"\['x'\]\[1\]")])
def test_ravel_refuses_leaves_that_are_not_numbers(t, path):
    with pytest.raises(TypeError, match=rf"tree\.ravel: the leaf at {path} has dtype"):
        tree.ravel(t)


def test_unravel_of_a_complex_vector_gives_real_leaves_their_real_part():
    t = {"a": np.array([1 + 2j, 3j], np.complex64), "b": np.array([1.5, -2.0], np.float32)}
    v, unravel = tree.ravel(t)
    assert v.dtype == np.complex64
    back = unravel(v)  # no ComplexWarning (an error under the test settings)
    assert back["b"].dtype == np.float32
    np.testing.assert_array_equal(back["b"], t["b"])
    np.testing.assert_array_equal(back["a"], t["a"])
    with pytest.raises(ValueError, match="float32 leaf have non-zero imaginary parts"):
        unravel(v * 1j)


def test_bad_arguments_of_map_multi_unflatten_and_astype_are_named():
    with pytest.raises(TypeError, match=r"tree\.map_multi: n_out must be an int, got 2\.0"):
        tree.map_multi(lambda x: (x, x), 2.0, [1.0])
    with pytest.raises(ValueError, match=r"tree\.map_multi: n_out must be >= 1"):
        tree.map_multi(lambda x: (x, x), 0, [1.0])
    with pytest.raises(TypeError, match=r"unflatten: leaves must be a list.*got NoneType"):
        tree.unflatten(tree.structure([1.0]), None)
    with pytest.raises(TypeError, match=r"tree\.astype: 'floaty' is not a NumPy dtype"):
        tree.astype([1.0], "floaty")


def test_unravel_refuses_an_imaginary_part_in_a_single_entry_of_a_real_leaf():
    t = {"a": np.array([1 + 2j]), "b": np.array([1.5, -2.0, 0.5])}
    v, unravel = tree.ravel(t)
    v = v.copy()
    v[3] += 1e-3j  # the last entry of b only
    with pytest.raises(ValueError, match="float64 leaf have non-zero imaginary parts"):
        unravel(v)


def test_astype_keeps_complex_leaves():
    # only floating-point leaves are cast: a complex one would lose its imaginary part
    t = {"c": np.array([1 + 2j]), "w": np.ones(1, np.float32)}
    out = tree.astype(t, np.float64)
    assert out["c"].dtype == np.complex128 and out["c"][0] == 1 + 2j
    assert out["w"].dtype == np.float64
