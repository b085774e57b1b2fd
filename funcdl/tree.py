"""Pytrees: nested dict / list / tuple / NamedTuple / None containers of array leaves.

Every module of funcdl walks parameters, gradients and optimizer states through these
functions; nothing else flattens a tree by hand.

* dict keys are visited in sorted order (as JAX does), so ``{'w': .., 'b': ..}`` flattens
  as ``[b, w]``;
* ``None`` is an empty container (no leaves), so are ``()``, ``[]`` and ``{}``;
* anything else (arrays, NumPy and Python scalars, keys) is a leaf.

A structure mismatch between trees that must agree raises ``ValueError`` naming the first
differing path, written as it would be indexed: ``[1]['w']``, ``.mu[0]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._treenodes import (
    LEAF,
    NONE,
    TreeDef,
    children_of,
    mismatch_error,
    rebuild,
)

__all__ = [
    "TreeDef",
    "astype",
    "check_same",
    "flatten",
    "leaves",
    "leaves_with_path",
    "map",
    "map_multi",
    "ravel",
    "structure",
    "unflatten",
    "zeros_like",
]

Tree = Any


# ---------------------------------------------------------------------------- traversal

def map(f: Callable[..., Any], tree: Tree, *rest: Tree, shapes: bool = False) -> Tree:
    """Apply ``f`` leaf-wise: ``f(leaf, *leaves_of_rest)``; all trees must share a structure
    (and, with ``shapes=True``, array leaves their shapes: an optimizer's grads and params).

    Example: ``tree.map(lambda p, g: p - 0.1 * g, params, grads)``.
    """
    if not rest:
        return _map1(f, tree)
    try:
        if len(rest) == 1:
            return _map2(f, tree, rest[0], shapes)
        return _mapn(_same_shapes(f) if shapes else f, tree, rest)
    except _Mismatch:
        # Only on failure: walk again, slowly, to name the first differing path.
        for i, r in enumerate(rest):
            check_same(tree, r, ("the first tree", f"tree {i + 1}"), shapes=shapes)
        raise ValueError("tree structure mismatch") from None


class _Mismatch(Exception):
    pass


_ND = np.ndarray


def _map1(f: Callable[[Any], Any], t: Tree) -> Tree:
    # Array children are handled in the loop, not by a call each: a layer's params are a
    # dict of arrays, a model's a tuple of those.
    tp = type(t)
    if tp is tuple or tp is list:
        out = [f(c) if type(c) is _ND else _map1(f, c) for c in t]
        return tuple(out) if tp is tuple else out
    if tp is dict:
        return {k: f(t[k]) if type(t[k]) is _ND else _map1(f, t[k]) for k in sorted(t)}
    if t is None:
        return None
    if tp is _ND:
        return f(t)
    node = children_of(t)
    if node is None:
        return f(t)
    kind, meta, kids, _ = node
    return rebuild(kind, meta, [_map1(f, c) for c in kids])


_CONTAINERS = (tuple, list, dict)


def _map2(f: Callable[..., Any], a: Tree, b: Tree, shapes: bool) -> Tree:
    # Two trees (params and grads, grads and a moment): the commonest case, kept lean.
    ta = type(a)
    if ta is dict:
        return _dict2(f, a, b, shapes)
    if ta is tuple or ta is list:
        if type(b) is not ta or len(a) != len(b):
            raise _Mismatch
        if not a:  # a parameterless layer's ()
            return () if ta is tuple else []
        # A model's params: per-layer dicts of arrays, and () for a parameterless layer;
        # each child's kind is told here, saving a call per child.
        res = [_dict2(f, x, y, shapes) if type(x) is dict
               else f(x, y) if type(x) is _ND and type(y) is _ND
               and not (shapes and x.shape != y.shape)
               else () if type(x) is tuple and type(y) is tuple and not x and not y
               else _map2(f, x, y, shapes) for x, y in zip(a, b)]
        return tuple(res) if ta is tuple else res
    if ta is _ND:
        if type(b) is _ND:
            if shapes and a.shape != b.shape:
                raise _Mismatch
            return f(a, b)
        if b is None or isinstance(b, _CONTAINERS):
            raise _Mismatch
    return _mapn(_same_shapes(f) if shapes else f, a, (b,))


def _dict2(f: Callable[..., Any], a: dict[Any, Any], b: Tree, shapes: bool) -> Tree:
    if type(b) is not dict or len(a) != len(b):
        raise _Mismatch
    out = {}
    for k, x in a.items():
        try:
            y = b[k]
        except KeyError:
            raise _Mismatch from None
        if type(x) is _ND and type(y) is _ND and not (shapes and x.shape != y.shape):
            out[k] = f(x, y)
        else:
            out[k] = _map2(f, x, y, shapes)
    return out


def _same_shapes(f: Callable[..., Any]) -> Callable[..., Any]:
    def leaf(*xs: Any) -> Any:
        shape = np.shape(xs[0])
        if any(np.shape(x) != shape for x in xs[1:]):
            raise _Mismatch
        return f(*xs)
    return leaf


def map_multi(f: Callable[..., tuple[Any, ...]], n_out: int, tree: Tree,
              *rest: Tree, shapes: bool = False) -> tuple[Tree, ...]:
    """As ``map``, for an ``f`` returning ``n_out`` values per leaf: returns ``n_out`` trees
    of ``tree``'s structure, in one traversal (an optimizer's new moments and update)."""
    try:
        return _multi(f, n_out, tree, rest, shapes)
    except _Mismatch:
        map(lambda *xs: None, tree, *rest, shapes=shapes)  # raises, naming the path
        raise


def _multi(f: Callable[..., Any], n: int, t: Tree, rest: Sequence[Tree],
           shapes: bool) -> tuple[Tree, ...]:
    # n trees at once: each node returns its n versions, and zip(*...) regroups a node's
    # children by output, so nothing is walked twice. Array children are handled in the
    # node's loop, without a call each.
    tp = type(t)
    if tp is _ND:
        for r in rest:
            if type(r) is _ND:
                if shapes and r.shape != t.shape:
                    raise _Mismatch
            elif r is None or isinstance(r, _CONTAINERS) or (shapes and np.shape(r) != t.shape):
                raise _Mismatch
        return _outputs(f(t, *rest), n)
    if tp is tuple or tp is list or tp is dict:
        if tp is dict:
            for r in rest:
                if type(r) is not dict or r.keys() != t.keys():
                    raise _Mismatch
            keys = sorted(t)
            kids: Sequence[Any] = [t[k] for k in keys]
            others: Sequence[Sequence[Any]] = [[r[k] for k in keys] for r in rest]
        else:
            for r in rest:
                if type(r) is not tp or len(r) != len(t):
                    raise _Mismatch
            kids, others = t, rest
        if not kids:
            return ((),) * n if tp is tuple else tuple(tp() for _ in range(n))
        outs = []
        for c, cs in zip(kids, zip(*others) if others else repeat((), len(kids))):
            if type(c) is _ND:
                for x in cs:
                    if type(x) is not _ND or (shapes and x.shape != c.shape):
                        break
                else:
                    v = f(c, *cs)
                    outs.append(v if type(v) is tuple and len(v) == n else _outputs(v, n))
                    continue
            outs.append(_multi(f, n, c, cs, shapes))
        cols = zip(*outs)
        if tp is dict:
            return tuple(dict(zip(keys, c)) for c in cols)
        return tuple(cols) if tp is tuple else tuple(list(c) for c in cols)
    node = children_of(t)
    if node is None:  # a scalar leaf
        for r in rest:
            if r is None or children_of(r) is not None or (shapes and np.shape(r) != np.shape(t)):
                raise _Mismatch
        return _outputs(f(t, *rest), n)
    kind, meta, kids, _ = node  # None, a NamedTuple, a dict subclass
    others = _same_node(kind, meta, len(kids), rest)
    if not kids:
        return tuple(rebuild(kind, meta, []) for _ in range(n))
    cols = zip(*[_multi(f, n, c, [o[j] for o in others], shapes) for j, c in enumerate(kids)])
    return tuple(rebuild(kind, meta, list(c)) for c in cols)


def _outputs(values: Any, n: int) -> tuple[Any, ...]:
    if not isinstance(values, (tuple, list)) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, (tuple, list)) else \
            type(values).__name__
        raise ValueError(f"map_multi: f must return a tuple of {n} values per leaf, got {got}")
    return tuple(values)


def _mapn(f: Callable[..., Any], t: Tree, rest: tuple[Tree, ...] | list[Tree]) -> Tree:
    # The hot path of every optimizer step: exact-type checks, no path strings.
    tp = type(t)
    if tp is tuple or tp is list:
        n = len(t)
        for r in rest:
            if type(r) is not tp or len(r) != n:
                raise _Mismatch
        out = [_mapn(f, t[i], [r[i] for r in rest]) for i in range(n)]
        return tuple(out) if tp is tuple else out
    if tp is dict:
        for r in rest:
            if type(r) is not dict or r.keys() != t.keys():
                raise _Mismatch
        return {k: _mapn(f, t[k], [r[k] for r in rest]) for k in sorted(t)}
    if tp is np.ndarray:
        for r in rest:
            if type(r) is not np.ndarray and (isinstance(r, _CONTAINERS) or r is None):
                raise _Mismatch
        return f(t, *rest)
    node = children_of(t)
    if node is None:
        for r in rest:
            if children_of(r) is not None:
                raise _Mismatch
        return f(t, *rest)
    kind, meta, kids, _ = node
    others = _same_node(kind, meta, len(kids), rest)
    return rebuild(kind, meta, [_mapn(f, c, [o[j] for o in others]) for j, c in enumerate(kids)])


def _same_node(kind: str, meta: Any, n: int, rest: Sequence[Tree]) -> list[list[Any]]:
    """The children of each tree in ``rest``, which must be nodes like the one given."""
    others = []
    for r in rest:
        rnode = children_of(r)
        if rnode is None or rnode[0] != kind or rnode[1] != meta or len(rnode[2]) != n:
            raise _Mismatch
        others.append(rnode[2])
    return others


def leaves(tree: Tree) -> list[Any]:
    """The leaves in flattening order (dict keys sorted)."""
    out: list[Any] = []
    _collect(tree, out)
    return out


def _collect(t: Tree, out: list[Any]) -> None:
    tp = type(t)
    if tp is tuple or tp is list:
        for c in t:
            _collect(c, out)
        return
    if tp is dict:
        for k in sorted(t):
            _collect(t[k], out)
        return
    if t is None:
        return
    node = children_of(t)
    if node is None:
        out.append(t)
    else:
        for c in node[2]:
            _collect(c, out)


def leaves_with_path(tree: Tree) -> list[tuple[str, Any]]:
    """``(path, leaf)`` pairs in flattening order; the root leaf has path ``''``."""
    out: list[tuple[str, Any]] = []

    def go(t: Tree, path: str) -> None:
        node = children_of(t)
        if node is None:
            out.append((path, t))
            return
        for c, step in zip(node[2], node[3]):
            go(c, path + step)

    go(tree, "")
    return out


def structure(tree: Tree) -> TreeDef:
    """The TreeDef of ``tree``."""
    node = children_of(tree)
    if node is None:
        return LEAF
    kind, meta, kids, _ = node
    if kind == "none":
        return NONE
    return TreeDef(kind, meta, tuple(structure(c) for c in kids))


def flatten(tree: Tree) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)``; ``unflatten(treedef, leaves)`` rebuilds the tree."""
    return leaves(tree), structure(tree)


def unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Tree:
    """Rebuild a tree of structure ``treedef`` from its leaves, in flattening order."""
    if not isinstance(treedef, TreeDef):
        raise TypeError(f"unflatten: expected a TreeDef (from tree.flatten or tree.structure), "
                        f"got {type(treedef).__name__}")
    items = list(leaves)
    if len(items) != treedef.num_leaves:
        raise ValueError(
            f"unflatten: the treedef {treedef!r} holds {treedef.num_leaves} leaves, "
            f"got {len(items)}")
    return _build(treedef, iter(items))


def _build(td: TreeDef, it: Any) -> Tree:
    # A module-level function, not a closure over itself: a self-referencing inner function
    # forms a reference cycle that keeps the leaves alive until the next garbage collection.
    if td.kind == "leaf":
        return next(it)
    return rebuild(td.kind, td.meta, [_build(c, it) for c in td.children])


def check_same(a: Tree, b: Tree, names: tuple[str, str] = ("the first tree", "the second"),
               *, shapes: bool = False, dtypes: bool = False) -> None:
    """Raise ``ValueError`` at the first path where ``a`` and ``b`` differ in structure
    (and, when asked, in leaf shape or dtype)."""

    def leaf(x: Any, y: Any, path: str) -> None:
        xs, ys = np.shape(x), np.shape(y)
        if shapes and xs != ys:
            raise ValueError(
                f"shape mismatch at {path or 'the root'}: {names[0]} has {xs}, "
                f"{names[1]} has {ys}")
        if dtypes:
            xd, yd = np.asarray(x).dtype, np.asarray(y).dtype
            if xd != yd:
                raise ValueError(
                    f"dtype mismatch at {path or 'the root'}: {names[0]} has {xd}, "
                    f"{names[1]} has {yd}")

    def go(x: Tree, y: Tree, path: str) -> None:
        nx, ny = children_of(x), children_of(y)
        if nx is None and ny is None:
            leaf(x, y, path)
            return
        if nx is None or ny is None or nx[0] != ny[0] or nx[1] != ny[1] \
                or len(nx[2]) != len(ny[2]):
            raise mismatch_error(path, x, y, names)
        for cx, cy, step in zip(nx[2], ny[2], nx[3]):
            go(cx, cy, path + step)

    go(a, b, "")


# ---------------------------------------------------------------------------- helpers

def zeros_like(tree: Tree) -> Tree:
    """A tree of zero arrays with the shapes and dtypes of ``tree``'s leaves."""
    return _map1(np.zeros_like, tree)


def astype(tree: Tree, dtype: DTypeLike) -> Tree:
    """Cast every floating-point leaf to ``dtype`` (integer and boolean leaves are kept),
    as PyTorch's ``module.double()``: ``params64 = tree.astype(params, np.float64)``."""
    dt = np.dtype(dtype)

    def cast(x: Any) -> Any:
        a = np.asarray(x)
        return a.astype(dt) if np.issubdtype(a.dtype, np.floating) else x

    return _map1(cast, tree)


def ravel(tree: Tree) -> tuple[NDArray[Any], Callable[[NDArray[Any]], Tree]]:
    """Concatenate all leaves into one 1-D vector; ``unravel(vector)`` inverts it, restoring
    each leaf's shape and dtype. The vector has the leaves' common (promoted) dtype."""
    flat, treedef = flatten(tree)
    arrays = [np.asarray(x) for x in flat]
    shapes = [a.shape for a in arrays]
    dtypes = [a.dtype for a in arrays]
    sizes = [a.size for a in arrays]
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float32)
    vector = (np.concatenate([a.ravel() for a in arrays]).astype(dtype, copy=False)
              if arrays else np.zeros(0, dtype))
    offsets = np.cumsum([0, *sizes]).tolist()
    total = offsets[-1]

    def unravel(v: NDArray[Any]) -> Tree:
        v = np.asarray(v)
        if v.shape != (total,):
            raise ValueError(f"unravel: expected a vector of shape ({total},), got {v.shape}")
        parts = [v[offsets[i]:offsets[i + 1]].reshape(shapes[i]).astype(dtypes[i], copy=False)
                 for i in range(len(shapes))]
        return unflatten(treedef, parts)

    return vector, unravel
