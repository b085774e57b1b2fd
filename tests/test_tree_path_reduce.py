"""tree.map_with_path and tree.reduce (JAX's tree.map_with_path, tree.reduce): the paths as
leaves_with_path writes them, in flattening order, with several trees and with is_leaf; a
reduction's order, initializer and empty trees; errors naming the function; and, where JAX
is installed, the same leaves and values as jax.tree's."""

from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import pytest

from funcdl import optim, tree


class Pair(NamedTuple):
    mu: Any
    nu: Any


TREE = {"w": [np.ones(2), (np.zeros(3), None)], "b": Pair(np.full(1, 2.0), 3.0), "a": 4}


def test_paths_are_leaves_with_path_in_flattening_order():
    got = tree.map_with_path(lambda path, x: path, TREE)
    assert tree.leaves(got) == [p for p, _ in tree.leaves_with_path(TREE)]
    assert tree.leaves(got) == ["['a']", "['b'].mu", "['b'].nu", "['w'][0]", "['w'][1][0]"]
    assert got["w"][1][1] is None and type(got["b"]) is Pair  # the structure kept


def test_a_root_leaf_has_the_empty_path_and_keys_are_visited_sorted():
    assert tree.map_with_path(lambda p, x: (p, x), 5.0) == ("", 5.0)
    od = OrderedDict([("z", 1), ("a", 2)])
    got = tree.map_with_path(lambda p, x: p, od)
    assert type(got) is OrderedDict and got == {"z": "['z']", "a": "['a']"}


def test_several_trees_give_their_leaves_after_the_path():
    a = {"x": np.array([1.0, 2.0]), "y": 3.0}
    b = {"x": np.array([10.0, 20.0]), "y": 30.0}
    got = tree.map_with_path(lambda p, u, v: (p, float(np.sum(u + v))), a, b)
    assert got == {"x": ("['x']", 33.0), "y": ("['y']", 33.0)}
    with pytest.raises(ValueError, match=r"^tree structure mismatch at \['x'\]"):
        tree.map_with_path(lambda p, u, v: u, a, {"x": [1.0], "y": 2.0})


def test_each_leaf_gets_its_own_path_where_keys_do_not_order():
    # NaN and frozenset keys compare False both ways: the pairing must not hang on an order
    nan, fa, fb = float("nan"), frozenset({1}), frozenset({2})
    for a in ({nan: "at-nan", 1.0: "at-1"}, {fa: "at-{1}", fb: "at-{2}"}):
        b = dict.fromkeys(a, 0)
        got = tree.map_with_path(lambda p, x, y: (p, x), a, b)
        assert all(p == f"[{k!r}]" and x == a[k] for k, (p, x) in got.items()), got


def test_is_leaf_is_called_once_a_node_and_checked_by_name():
    seen = []
    tree.map_with_path(lambda p, x: x, {"a": [1, 2]}, is_leaf=lambda x: seen.append(x) or False)
    assert len(seen) == 4  # the dict, the list, 1, 2: as JAX's
    for fn in (tree.map_with_path, tree.reduce):
        with pytest.raises(TypeError, match=rf"^tree\.{fn.__name__}: is_leaf must be a "
                                            rf"function"):
            fn(lambda *x: x, {"a": 1}, is_leaf=3)


def test_is_leaf_cuts_the_tree_and_the_paths_alike():
    got = tree.map_with_path(lambda p, x: p, TREE, is_leaf=lambda x: isinstance(x, tuple))
    assert got == {"w": ["['w'][0]", "['w'][1]"], "b": "['b']", "a": "['a']"}


def test_a_weight_decay_mask_by_name_for_masked():
    params = {"dense": {"w": np.ones((2, 2)), "b": np.ones(2)}}
    mask = tree.map_with_path(lambda path, p: not path.endswith("['b']"), params)
    assert mask == {"dense": {"w": True, "b": False}}
    opt = optim.masked(optim.add_decayed_weights(0.5), mask)
    updates, _ = opt.update(opt.init(params), tree.zeros_like(params), params)
    np.testing.assert_array_equal(updates["dense"]["w"], 0.5 * params["dense"]["w"])
    np.testing.assert_array_equal(updates["dense"]["b"], 0.0 * params["dense"]["b"])


def test_reduce_folds_the_leaves_in_flattening_order():
    assert tree.reduce(lambda acc, x: [*acc, x], {"b": 2, "a": 1, "c": [3, 4]}, []) == \
        [1, 2, 3, 4]
    assert tree.reduce(operator.sub, [10, 3, 2]) == 5  # (10 - 3) - 2: the first leaf starts
    assert tree.reduce(operator.add, {"a": 1}, 100) == 101
    assert tree.reduce(max, tree.map(lambda g: float(np.abs(g).max()),
                                     {"w": np.array([-3.0, 1.0]), "b": np.array([2.0])}),
                       0.0) == 3.0


def test_reduce_of_an_empty_tree_needs_an_initializer():
    assert tree.reduce(operator.add, {"a": None, "b": ()}, 7) == 7
    with pytest.raises(TypeError, match=r"^tree\.reduce: the tree has no leaves and no "
                                        r"initializer was given; pass one"):
        tree.reduce(operator.add, [None, {}])


def test_reduce_with_is_leaf_takes_subtrees_whole():
    got = tree.reduce(lambda acc, x: [*acc, type(x).__name__], TREE, [],
                      is_leaf=lambda x: isinstance(x, Pair))
    assert got == ["int", "Pair", "ndarray", "ndarray"]


@pytest.mark.parametrize("fn", [tree.map_with_path, tree.reduce])
def test_the_function_first_or_an_error_naming_it(fn):
    name = fn.__name__
    with pytest.raises(TypeError, match=rf"^tree\.{name}: f must be a function of the leaves, "
                                        rf"got dict \(the function comes first"):
        fn({"a": 1}, lambda *x: x)


def test_as_jaxs_tree_functions():
    jax = pytest.importorskip("jax")
    t = {"w": [np.arange(3.0), (np.ones(2), None)], "b": (np.float64(2.0),)}
    ours = tree.leaves(tree.map_with_path(lambda p, x: float(np.sum(x)) + len(p), t))
    theirs = jax.tree.leaves(jax.tree_util.tree_map_with_path(
        lambda p, x: float(np.sum(x)) + len(jax.tree_util.keystr(p)), t))
    assert ours == theirs  # the same leaves in the same order, paths of the same text
    assert tree.reduce(operator.add, tree.map(float, {"a": 1, "b": [2, 3]})) == \
        jax.tree.reduce(operator.add, jax.tree.map(float, {"a": 1, "b": [2, 3]}))
