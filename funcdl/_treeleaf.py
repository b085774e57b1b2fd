"""The walk behind ``is_leaf=`` in ``funcdl.tree`` (JAX's keyword of that name): a predicate
called on every node, top-down from the root and before the node is taken apart; where it
returns True the node (a container, None or a leaf) is kept whole as a leaf. Generic and
slower than ``_treemaps``: only a non-None ``is_leaf`` comes here, so the default path of
``tree.map`` (every optimizer step) never pays for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from funcdl._treenodes import LEAF, NONE, TreeDef, children_of, mismatch_error, rebuild

Tree = Any
Pred = Callable[[Any], Any]


def check_pred(where: str, is_leaf: Any) -> None:
    if not callable(is_leaf):
        raise TypeError(f"{where}: is_leaf must be a function of a node returning True where "
                        f"the node is to be kept whole as a leaf (or None), got "
                        f"{type(is_leaf).__name__}")


def walk(t: Tree, is_leaf: Pred, path: str, leaves: list[Any], paths: list[str] | None,
         cut: list[bool] | None) -> TreeDef:
    """The TreeDef of ``t`` with ``is_leaf``'s cuts as leaves; appends the leaves (and, when
    asked, their paths and whether ``is_leaf`` cut there) in flattening order, dict keys
    sorted (module-level, as ``build``)."""
    if is_leaf(t):
        kept = True
    else:
        node = children_of(t)
        if node is not None:
            kind, meta, kids, steps = node
            if kind == "none":
                return NONE
            return TreeDef(kind, meta, tuple([
                walk(c, is_leaf, path + s, leaves, paths, cut) for c, s in zip(kids, steps)]))
        kept = False
    leaves.append(t)
    if paths is not None:
        paths.append(path)
    if cut is not None:
        cut.append(kept)
    return LEAF


def cut_flatten(where: str, tree: Tree, is_leaf: Any) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)`` of ``tree`` cut where ``is_leaf`` is true; ``where`` names the
    public function in the error for an ``is_leaf`` that is not a function."""
    check_pred(where, is_leaf)
    leaves: list[Any] = []
    return leaves, walk(tree, is_leaf, "", leaves, None, None)


def cut_paths(where: str, tree: Tree, is_leaf: Any) -> list[tuple[str, Any]]:
    """``(path, leaf)`` pairs of ``tree`` cut where ``is_leaf`` is true."""
    check_pred(where, is_leaf)
    leaves: list[Any] = []
    paths: list[str] = []
    walk(tree, is_leaf, "", leaves, paths, None)
    return list(zip(paths, leaves))


def build(td: TreeDef, it: Iterator[Any]) -> Tree:
    """The tree of structure ``td`` with the leaves of ``it``; an OrderedDict or defaultdict
    comes back as one (``rebuild``)."""
    # Module-level, not a closure over itself: a self-referencing inner function forms a
    # reference cycle that keeps the leaves alive until the next garbage collection.
    if td.kind == "leaf":
        return next(it)
    return rebuild(td.kind, td.meta, [build(c, it) for c in td.children])


def up_to(t: Tree, td: TreeDef, r: Tree, path: str, cut: Iterator[bool], out: list[Any],
          names: tuple[str, str], shapes: bool) -> None:
    """Append to ``out`` the subtrees of ``r`` at the leaves of ``td``, the structure of the
    first tree ``t`` with ``is_leaf``'s cuts: above them ``r`` must have ``t``'s structure.
    Where ``is_leaf`` cut, ``r``'s subtree is taken whole (JAX's prefix rule); at ``t``'s
    other leaves ``r`` must hold a leaf too, as ``tree.map`` requires without ``is_leaf``.
    A ``ValueError`` names the first differing path, in ``check_same``'s words."""
    if td.kind == "leaf":
        if not next(cut) and children_of(r) is not None:
            raise mismatch_error(path, t, r, names)
        if shapes and children_of(t) is None and children_of(r) is None:
            ts, rs = np.shape(t), np.shape(r)
            if ts != rs:
                raise ValueError(f"shape mismatch at {path or 'the root'}: {names[0]} has "
                                 f"{ts}, {names[1]} has {rs}")
        out.append(r)
        return
    nt, nr = children_of(t), children_of(r)
    assert nt is not None  # td is a node: t was one
    if nr is None or nt[:2] != nr[:2] or len(nt[2]) != len(nr[2]):
        raise mismatch_error(path, t, r, names)
    for ct, cd, cr, step in zip(nt[2], td.children, nr[2], nt[3]):
        up_to(ct, cd, cr, path + step, cut, out, names, shapes)


def map_is_leaf(f: Callable[..., Any], tree: Tree, rest: Sequence[Tree], is_leaf: Pred,
                names: Sequence[tuple[str, str]], shapes: bool) -> Tree:
    """``tree.map`` with ``is_leaf``: ``tree``'s structure with ``is_leaf``'s cuts decides;
    ``names[i]`` names the first tree and ``rest[i]`` in a mismatch error."""
    leaves: list[Any] = []
    cut: list[bool] | None = [] if rest else None
    td = walk(tree, is_leaf, "", leaves, None, cut)
    columns = [leaves]
    for r, pair in zip(rest, names):
        assert cut is not None
        col: list[Any] = []
        up_to(tree, td, r, "", iter(cut), col, pair, shapes)
        columns.append(col)
    return build(td, iter([f(*xs) for xs in zip(*columns)]))
