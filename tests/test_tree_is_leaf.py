"""``is_leaf=`` in funcdl.tree's map, leaves, leaves_with_path, flatten and structure, as
JAX's: a predicate called on every node top-down, the root and None included; where it is
true the node is a leaf, whole. Checked against jax.tree_util where JAX is installed, and
against hand-written values everywhere."""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np
import pytest

import funcdl.tree as tree_module
from funcdl import tree


class Point(NamedTuple):
    x: Any
    y: Any


A = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.ones(3, np.float32)
C = np.zeros((), np.float64)

TREES = {
    "layer": {"w": A, "b": B},
    "model": [{"w": A, "b": B}, (), {"w": B, "b": C}],
    "nested-tuples": (1, (2, 3), [4, (5,)]),
    "nones": {"a": None, "b": [None, 1.0], "c": (None,)},
    "namedtuple": Point(A, (B, None)),
    "mixed": [Point(1, 2), {"w": {"w": A, "b": 3}, "z": 4}],
    "none": None,
    "array": A,
    "scalar": 3.5,
    "state": {"layers": [{"w": A, "b": B}, {"w": C}], "opt": (np.int32(3), {"mu": (A, B)})},
    "empties": ((), [], {}, None),
    "deep": {"x": [(1, 2), (3, (4,))], "y": Point((5,), None)},
}


def _tuples(x: Any) -> bool:
    return isinstance(x, tuple)


def _none(x: Any) -> bool:
    return x is None


def _wdict(x: Any) -> bool:
    return isinstance(x, dict) and "w" in x


def _never(x: Any) -> bool:
    return False


def _arrays(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _predicate(name: str, t: Any) -> Any:
    if name == "root":
        return lambda x: x is t
    return {"tuples": _tuples, "none": _none, "wdict": _wdict, "never": _never,
            "arrays": _arrays}[name]


PREDICATES = ["tuples", "none", "wdict", "root", "never", "arrays"]


def _same(a: Any, b: Any) -> bool:
    """Equal as trees: one type at every node, the very same arrays at the leaves."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a is b
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


# ---------------------------------------------------------------------------- against JAX

@pytest.mark.parametrize("pred", PREDICATES)
@pytest.mark.parametrize("name", TREES)
def test_leaves_paths_and_structure_match_jax(name, pred):
    tu = pytest.importorskip("jax").tree_util
    t = TREES[name]
    p = _predicate(pred, t)
    want = tu.tree_leaves(t, is_leaf=p)
    got = tree.leaves(t, is_leaf=p)
    assert len(got) == len(want) and all(_same(x, y) for x, y in zip(got, want))
    paths = [(tu.keystr(k), v) for k, v in tu.tree_leaves_with_path(t, is_leaf=p)]
    got_paths = tree.leaves_with_path(t, is_leaf=p)
    assert [k for k, _ in got_paths] == [k for k, _ in paths]
    assert all(_same(x, y) for (_, x), (_, y) in zip(got_paths, paths))
    # the structure: leaf positions as JAX's, and a round trip through unflatten
    leaves, td = tree.flatten(t, is_leaf=p)
    jtd = tu.tree_structure(t, is_leaf=p)
    assert td == tree.structure(t, is_leaf=p)
    assert td.num_leaves == jtd.num_leaves == len(leaves)
    marks = [f"leaf{i}" for i in range(td.num_leaves)]
    assert _same(tree.unflatten(td, marks), tu.tree_unflatten(jtd, marks))
    assert _same(tree.unflatten(td, leaves), t)


@pytest.mark.parametrize("n_trees", [1, 2, 3])
@pytest.mark.parametrize("pred", PREDICATES)
@pytest.mark.parametrize("name", TREES)
def test_map_matches_jax_with_whole_subtrees_at_the_cut(name, pred, n_trees):
    tu = pytest.importorskip("jax").tree_util
    t = TREES[name]
    p = _predicate(pred, t)

    def other(k: int) -> Any:
        # where is_leaf cut, a subtree (passed whole); at the other leaves, a leaf
        return tu.tree_map(lambda x: {"k": [k], "v": x} if p(x) else f"leaf{k}", t,
                           is_leaf=p)

    rest = [other(k) for k in range(1, n_trees)]
    want = tu.tree_map(lambda *xs: xs, t, *rest, is_leaf=p)
    got = tree.map(lambda *xs: xs, t, *rest, is_leaf=p)
    assert _same(got, want)


# ---------------------------------------------------------------------------- by hand

def test_leaves_by_hand():
    assert tree.leaves([None, (1, 2), {"w": 3, "b": 4}], is_leaf=_none) == [None, 1, 2, 4, 3]
    assert tree.leaves([None], is_leaf=_none) == [None]
    assert tree.leaves(None, is_leaf=_none) == [None]
    assert tree.leaves([(1, 2), {"a": (3,)}], is_leaf=_tuples) == [(1, 2), (3,)]
    enc, head = {"w": A, "b": B}, {"b": C}
    got = tree.leaves({"enc": enc, "head": head}, is_leaf=_wdict)
    assert got[0] is enc and got[1] is C and len(got) == 2
    t = [1, (2,)]
    got = tree.leaves(t, is_leaf=lambda x: x is t)
    assert len(got) == 1 and got[0] is t


def test_leaves_with_path_by_hand():
    t = [Point(1, (2, 3)), {"a": None, "b": (4,)}]
    assert tree.leaves_with_path(t, is_leaf=_tuples) == [("[0]", Point(1, (2, 3))),
                                                          ("[1]['b']", (4,))]
    assert tree.leaves_with_path(t, is_leaf=_none) == [
        ("[0].x", 1), ("[0].y[0]", 2), ("[0].y[1]", 3), ("[1]['a']", None), ("[1]['b'][0]", 4)]
    assert tree.leaves_with_path(t, is_leaf=lambda x: x is t) == [("", t)]


def test_structure_and_flatten_by_hand():
    t = [None, (1, 2), {"w": {"w": 5}, "b": 6}]
    assert repr(tree.structure(t, is_leaf=_tuples)) == "[None, *, {'b': *, 'w': {'w': *}}]"
    assert repr(tree.structure(t, is_leaf=_none)) == "[*, (*, *), {'b': *, 'w': {'w': *}}]"
    assert repr(tree.structure(t, is_leaf=_wdict)) == "[None, (*, *), *]"
    leaves, td = tree.flatten(t, is_leaf=_wdict)
    assert leaves == [1, 2, t[2]] and leaves[2] is t[2]
    assert tree.unflatten(td, ["a", "b", "c"]) == [None, ("a", "b"), "c"]


def test_map_by_hand():
    assert tree.map(lambda x: x is None, [None, 1, (None,)], is_leaf=_none) == [True, False,
                                                                                 (True,)]
    assert tree.map(len, [(1, 2), {"a": (3,)}], is_leaf=_tuples) == [2, {"a": 1}]
    # the second tree's subtrees at the first's cuts go to f whole
    got = tree.map(lambda a, b: (a, b), [(1, 2), 3], [{"x": 1}, 4], is_leaf=_tuples)
    assert got == [((1, 2), {"x": 1}), (3, 4)]
    got = tree.map(lambda a, b, c: [a, b, c], {"p": None, "q": 1}, {"p": (7, 8), "q": 2},
                   {"p": [9], "q": 3}, is_leaf=_none)
    assert got == {"p": [None, (7, 8), [9]], "q": [1, 2, 3]}


def test_dict_types_come_back_through_map_and_unflatten():
    od = collections.OrderedDict([("w", (1, 2)), ("b", 3)])
    dd = collections.defaultdict(list, {"w": (1, 2), "b": 3})
    for d in (od, dd):
        out = tree.map(lambda x: x, [d], is_leaf=_tuples)[0]
        assert type(out) is type(d) and list(out) == ["b", "w"] and out["w"] == (1, 2)
        leaves, td = tree.flatten([d], is_leaf=_tuples)
        assert leaves == [3, (1, 2)]
        back = tree.unflatten(td, leaves)[0]
        assert type(back) is type(d) and dict(back) == {"b": 3, "w": (1, 2)}
    assert tree.unflatten(tree.structure([dd], is_leaf=_tuples), [0, 1])[0].default_factory \
        is list


def test_is_leaf_is_called_top_down_on_every_node_and_stops_the_descent():
    inner = [1]
    t = {"b": inner, "a": None}
    seen: list[Any] = []

    def record(x: Any) -> bool:
        seen.append(x)
        return False

    tree.leaves(t, is_leaf=record)
    assert len(seen) == 4 and seen[0] is t and seen[1] is None and seen[2] is inner \
        and seen[3] == 1
    seen.clear()

    def stop(x: Any) -> bool:
        seen.append(x)
        return x is inner

    assert tree.leaves(t, is_leaf=stop) == [[1]]
    assert len(seen) == 3 and seen[2] is inner  # 1 inside the cut list is never visited


@pytest.mark.parametrize("name", TREES)
def test_is_leaf_none_or_never_true_changes_nothing(name):
    t = TREES[name]
    for kw in ({"is_leaf": None}, {"is_leaf": _never}):
        assert _same(tree.leaves(t, **kw), tree.leaves(t))
        assert tree.structure(t, **kw) == tree.structure(t)
        leaves, td = tree.flatten(t, **kw)
        assert td == tree.flatten(t)[1] and _same(leaves, tree.flatten(t)[0])
        assert tree.leaves_with_path(t, **kw) == tree.leaves_with_path(t)
        for rest in ((), (t,), (t, t)):
            assert _same(tree.map(lambda *xs: xs, t, *rest, **kw),
                         tree.map(lambda *xs: xs, t, *rest))


def test_is_leaf_none_takes_the_old_path(monkeypatch):
    def boom(*args: Any) -> Any:
        raise AssertionError("the is_leaf walk ran for is_leaf=None")

    for name in ("map_is_leaf", "cut_flatten", "cut_paths"):
        monkeypatch.setattr(tree_module, name, boom)
    t = TREES["state"]
    tree.map(np.add, t, t, is_leaf=None)
    tree.map(np.negative, t, is_leaf=None)
    tree.leaves(t, is_leaf=None)
    tree.structure(t, is_leaf=None)
    tree.flatten(t, is_leaf=None)
    tree.leaves_with_path(t, is_leaf=None)


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("fn", ["map", "leaves", "leaves_with_path", "flatten", "structure"])
def test_a_non_callable_is_leaf_is_a_type_error_naming_the_function(fn):
    args = (lambda x: x, [1]) if fn == "map" else ([1],)
    with pytest.raises(TypeError, match=rf"^tree\.{fn}: is_leaf must be a function of a node"
                                         r".*got str"):
        getattr(tree, fn)(*args, is_leaf="tuple")


def test_a_non_callable_f_is_named_with_is_leaf_too():
    with pytest.raises(TypeError, match=r"tree\.map: f must be a function"):
        tree.map(3, [(1, 2)], is_leaf=_tuples)


@pytest.mark.parametrize("error", [KeyError("mine"), TypeError("mine"), ValueError("mine")])
@pytest.mark.parametrize("fn", ["map", "leaves", "leaves_with_path", "flatten", "structure"])
def test_an_error_inside_is_leaf_propagates_unchanged(fn, error):
    def bad(x: Any) -> bool:
        raise error

    args = (lambda x: x, [1]) if fn == "map" else ([1],)
    with pytest.raises(type(error)) as info:
        getattr(tree, fn)(*args, is_leaf=bad)
    assert info.value is error


@pytest.mark.parametrize("first, second, message", [
    # above the cut: keys differ
    ([(1, 2), {"a": 1}], [0, {"b": 1}],
     r"at \[1\]: the first tree has a dict with keys \['a'\], the second tree has a dict with "
     r"keys \['b'\]"),
    # above the cut: a list for a tuple
    ({"x": [(1,), 2]}, {"x": ((0,), 2)},
     r"at \['x'\]: the first tree has a list of length 2, the second tree has a tuple"),
    # None not cut: the other tree must hold None there
    ([None, (1,)], [0, 5], r"at \[0\]: the first tree has None, the second tree has a leaf"),
    # a leaf is_leaf did not cut takes a leaf, as tree.map without is_leaf
    ([(1, 2), 3], [0, {"y": 2}],
     r"at \[1\]: the first tree has a leaf of type int, the second tree has a dict"),
])
def test_a_mismatch_above_the_cut_names_the_path(first, second, message):
    with pytest.raises(ValueError, match="tree structure mismatch " + message):
        tree.map(lambda *xs: xs, first, second, is_leaf=_tuples)


def test_a_mismatch_in_the_third_tree_names_it_and_the_path():
    t = {"a": (1, 2), "b": [3]}
    with pytest.raises(ValueError, match=r"mismatch at \['b'\]: the first tree has a list of "
                                         r"length 1, the third tree has a list of length 2"):
        tree.map(lambda *xs: xs, t, {"a": 0, "b": [3]}, {"a": 0, "b": [3, 4]}, is_leaf=_tuples)


def test_shapes_are_checked_at_leaves_with_is_leaf():
    t = {"w": np.ones(2), "s": (1, 2)}
    ok = tree.map(lambda a, b: a, t, {"w": np.ones(2), "s": None}, shapes=True, is_leaf=_tuples)
    assert ok["s"] == (1, 2)
    with pytest.raises(ValueError, match=r"shape mismatch at \['w'\]: the first tree has "
                                         r"\(2,\), the second tree has \(3,\)"):
        tree.map(lambda a, b: a, t, {"w": np.ones(3), "s": None}, shapes=True, is_leaf=_tuples)
