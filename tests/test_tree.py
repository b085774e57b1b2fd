"""Tests for funcdl.tree traversal: which values are containers and which are leaves, map
over one and several trees, and the path a structure mismatch names (array fast paths
included). Flatten, structure, ravel, zeros_like, astype and check_same:
test_tree_flatten_ravel.py."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from _tree_util import Adam, Pair

from funcdl import tree

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


@pytest.mark.parametrize("n", [2, 3])
def test_map_of_several_trees_visits_keys_sorted_as_one_tree_does(n):
    # A transform that pairs a one-tree map's order with a many-tree map's (optim.masked)
    # needs both sorted: a layer's params come as {'w', 'b'}, unsorted.
    seen = []

    def f(x, *rest):
        seen.append(x)
        return x

    t = [{"w": 1, "b": 2}, {"z": 3, "a": {"y": 4, "c": 5}}]
    out = tree.map(f, t, *[t] * (n - 1))
    assert seen == tree.leaves(t) == [2, 1, 5, 4, 3]
    assert [list(d) for d in out] == [["b", "w"], ["a", "z"]]
    assert list(out[1]["a"]) == ["c", "y"]


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


def test_a_defaultdict_of_other_keys_is_a_mismatch_and_is_left_as_it_came():
    # the two-tree walk read b[k]: a defaultdict made up the missing key, added it to the
    # caller's dict, and the map went on with it
    import collections

    a = {"w": np.ones(2), "b": np.ones(2)}
    b = collections.defaultdict(lambda: np.zeros(2), {"w": np.ones(2), "c": np.ones(2)})
    with pytest.raises(ValueError, match=r"mismatch at the root"):
        tree.map(np.add, a, b)
    assert sorted(b) == ["c", "w"]
    ok = collections.defaultdict(list, {"w": np.ones(2), "b": np.zeros(2)})
    assert tree.map(np.add, a, ok)["b"].tolist() == [1.0, 1.0]
