"""What a pytree node is: the containers funcdl.tree walks, how to take one apart and put it
back, and how to describe one in an error message. ``TreeDef`` is re-exported by
``funcdl.tree``; everything else here is internal to it."""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Tree = Any


@dataclass(frozen=True)
class TreeDef:
    """The shape of a pytree without its leaves; equal structures compare equal.

    ``kind`` is one of ``leaf``, ``none``, ``tuple``, ``list``, ``dict``, ``namedtuple``;
    ``meta`` holds the sorted dict keys (``DictKeys`` for an OrderedDict or a defaultdict,
    which unflatten rebuilds as such) or the NamedTuple class.
    """

    kind: str
    meta: Any = None
    children: tuple[TreeDef, ...] = ()

    @functools.cached_property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = [repr(c) for c in self.children]
        if self.kind == "dict":
            body = "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.meta, inner)) + "}"
            return body if type(self.meta) is tuple else f"{self.meta.cls.__name__}({body})"
        if self.kind == "list":
            return "[" + ", ".join(inner) + "]"
        if self.kind == "namedtuple":
            fields = self.meta._fields
            return f"{self.meta.__name__}(" + ", ".join(
                f"{f}={c}" for f, c in zip(fields, inner)) + ")"
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"


LEAF = TreeDef("leaf")
NONE = TreeDef("none")


def is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def sorted_keys(d: Any) -> list[Any]:
    """A dict's keys in the order trees visit them (sorted, as JAX does), or a TypeError
    naming the keys that cannot be ordered (``{1: .., 'a': ..}``)."""
    try:
        return sorted(d)
    except TypeError:
        kinds = ", ".join(sorted({type(k).__name__ for k in d}))
        raise TypeError(f"funcdl.tree: a dict's keys must be sortable against each other (a "
                        f"tree visits them in sorted order, as JAX does), got keys of types "
                        f"{kinds}: {list(d)!r}; use keys of one type, e.g. all str") from None


class DictKeys(tuple[Any, ...]):
    """The sorted keys of an OrderedDict or a defaultdict, with its type (and default
    factory), so that ``map`` and ``unflatten`` give one back, as JAX's do. Equal to the
    plain tuple of the keys: a dict and an OrderedDict with one set of keys are trees of
    one structure (the first tree's type is the result's)."""

    cls: type[dict[Any, Any]]
    factory: Any

    def make(self, children: Sequence[Any]) -> dict[Any, Any]:
        pairs = zip(self, children)
        if self.cls is defaultdict:
            return defaultdict(self.factory, pairs)
        return OrderedDict(pairs)


def _dict_keys(d: dict[Any, Any], keys: list[Any]) -> tuple[Any, ...]:
    """``meta`` for dict ``d``: its keys, as DictKeys for the two dict types JAX rebuilds
    (other dict subclasses come back as plain dicts)."""
    tp = type(d)
    if tp is not OrderedDict and tp is not defaultdict:
        return tuple(keys)
    meta = DictKeys(keys)
    meta.cls, meta.factory = tp, getattr(d, "default_factory", None)
    return meta


Node = tuple[str, Any, list[Any], list[str]]  # (kind, meta, children, path steps)


def children_of(t: Tree) -> Node | None:
    """(kind, meta, children, path steps) of a container node, or None for a leaf."""
    tp = type(t)
    if tp is tuple:
        return "tuple", None, list(t), [f"[{i}]" for i in range(len(t))]
    if tp is list:
        return "list", None, list(t), [f"[{i}]" for i in range(len(t))]
    if isinstance(t, dict):
        keys = sorted_keys(t)
        return "dict", _dict_keys(t, keys), [t[k] for k in keys], [f"[{k!r}]" for k in keys]
    if t is None:
        return "none", None, [], []
    if is_namedtuple(t):
        return "namedtuple", tp, list(t), [f".{f}" for f in tp._fields]
    return None


def same_node(x: Node | None, y: Node | None) -> bool:
    """Whether two ``children_of`` results are nodes of one kind, meta (dict keys,
    NamedTuple class) and number of children."""
    return (x is not None and y is not None and x[:2] == y[:2]
            and len(x[2]) == len(y[2]))


def rebuild(kind: str, meta: Any, children: Sequence[Any]) -> Tree:
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return list(children)
    if kind == "dict":
        return dict(zip(meta, children)) if type(meta) is tuple else meta.make(children)
    if kind == "namedtuple":
        return meta(*children)
    return None


def describe(t: Tree) -> str:
    node = children_of(t)
    if node is None:
        if isinstance(t, np.ndarray):
            return f"an array of shape {t.shape} and dtype {t.dtype}"
        return f"a leaf of type {type(t).__name__}"
    kind, meta, kids, _ = node
    if kind == "dict":
        return f"a dict with keys {list(meta)}"
    if kind == "namedtuple":
        return f"a {meta.__name__}"
    if kind == "none":
        return "None"
    return f"a {kind} of length {len(kids)}"


def mismatch_error(path: str, a: Tree, b: Tree, names: tuple[str, str]) -> ValueError:
    where = path or "the root"
    da, db = describe(a), describe(b)
    if da == db and type(a) is not type(b):  # two NamedTuple classes of one name
        da, db = (f"{d} (class {type(t).__module__}.{type(t).__qualname__})"
                  for d, t in ((da, a), (db, b)))
        db += ("; a tree loaded by funcdl.io without like= has io's own NamedTuple classes: "
               "pass like= to get the caller's")
    return ValueError(f"tree structure mismatch at {where}: {names[0]} has {da}, "
                      f"{names[1]} has {db}")


def collect(t: Tree, out: list[Any]) -> None:
    """tree.leaves' walk, appending each leaf of ``t`` to ``out`` in flattening order."""
    tp = type(t)
    if tp is tuple or tp is list:
        for c in t:
            collect(c, out)
        return
    if tp is dict:
        for k in sorted_keys(t):
            collect(t[k], out)
        return
    if t is None:
        return
    node = children_of(t)
    if node is None:
        out.append(t)
    else:
        for c in node[2]:
            collect(c, out)


def paths(t: Tree, path: str, out: list[tuple[str, Any]]) -> None:
    """tree.leaves_with_path's walk: a module function, as a closure recurring on itself
    would be a reference cycle holding ``out`` and its leaves until the cycle collector."""
    node = children_of(t)
    if node is None:
        out.append((path, t))
        return
    for c, step in zip(node[2], node[3]):
        paths(c, path + step, out)


def same_walk(x: Tree, y: Tree, path: str, leaf: Callable[[Any, Any, str], None],
              names: tuple[str, str]) -> None:
    """tree.check_same's walk: ``leaf(x, y, path)`` at each pair of leaves, a mismatch
    error at the first pair of nodes that differ (a module function, as ``paths``)."""
    nx, ny = children_of(x), children_of(y)
    if nx is None and ny is None:
        leaf(x, y, path)
        return
    if not same_node(nx, ny):
        raise mismatch_error(path, x, y, names)
    assert nx is not None and ny is not None  # same_node: both are nodes
    for cx, cy, step in zip(nx[2], ny[2], nx[3]):
        same_walk(cx, cy, path + step, leaf, names)
