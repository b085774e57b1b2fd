"""optax.tree_utils' ``tree_get`` / ``tree_set``: read or replace a value anywhere in an
optimizer state by its name (a NamedTuple field, a dict key or a NamedTuple's class name),
so that the learning rate of an ``inject_hyperparams`` stage deep in a chain is one call
away, not ``state.states[1].hyperparams['lr']`` archaeology.

Example::

    opt = chain(clip_by_global_norm(1.0), inject_hyperparams(adam)(lr=1e-2))
    state = opt.init(params)
    tree_get(state, 'lr')                    # the 0-d array in hyperparams['lr']
    state = tree_set(state, lr=1e-3)         # a new state; the old one is unchanged

Differences from optax, both deliberate:

* A match that holds no leaves (``EmptyState()``, ``()``, None) is skipped: every alias
  has a stateless stage named ``'lr'``, which would otherwise make ``'lr'`` ambiguous
  beside ``hyperparams['lr']`` (optax's own example needs ``filtering=`` there).
* ``filtering(path, value)`` gets the path as the string ``tree.leaves_with_path`` prints
  (``".inner_state.states['adam'].count"``), not a tuple of JAX key entries.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from funcdl import tree
from funcdl._treenodes import children_of, rebuild

__all__ = ["tree_get", "tree_get_all_with_path", "tree_set"]

Tree = Any
Filtering = Callable[[str, Any], bool]


def _named(t: Tree, name: Any) -> tuple[Any, Any, Any]:
    """``(node, names, own)`` for ``t`` reached by ``name``: ``children_of(t)`` (None for a
    leaf or None), the name each child is reached by (NamedTuple fields, dict keys; None in
    a tuple or list) and the names ``t`` answers to: ``name`` and, for a NamedTuple, its
    class name."""
    node = children_of(t)
    if node is None or node[0] == "none":
        return None, [], (name,)
    kind, meta, kids, _ = node
    if kind == "namedtuple":
        return node, list(meta._fields), (name, meta.__name__)
    if kind == "dict":
        return node, list(meta), (name,)
    return node, [None] * len(kids), (name,)


def _matches(key: Hashable, names: tuple[Any, ...], value: Any, path: str,
             filtering: Filtering | None) -> bool:
    # A name of another type never matches: 0 == False and 1 == 1.0 would otherwise pair an
    # int dict key with a bool or float key.
    if not any(n is not None and type(n) is type(key) and n == key for n in names):
        return False
    if not tree.leaves(value):  # an EmptyState stage named like the key holds no value
        return False
    return filtering is None or bool(filtering(path, value))


def _collect(t: Tree, name: Any, key: Hashable, path: str, filtering: Filtering | None,
             out: list[tuple[str, Any]]) -> None:
    # Module-level recursion, as funcdl.tree's walks: no closure cycle holding the leaves.
    node, names, own = _named(t, name)
    if _matches(key, own, t, path, filtering):
        out.append((path, t))
    if node is not None:  # a match is searched inside too: optax finds nested ones
        for child, n, step in zip(node[2], names, node[3]):
            _collect(child, n, key, path + step, filtering, out)


def _check(where: str, filtering: Any) -> None:
    if filtering is not None and not callable(filtering):
        raise TypeError(f"{where}: filtering must be a function (path, value) -> bool or "
                        f"None, got {type(filtering).__name__}")


def tree_get_all_with_path(tree_: Tree, key: Hashable, filtering: Filtering | None = None
                           ) -> list[tuple[str, Any]]:
    """Every ``(path, value)`` in ``tree_`` named ``key`` (a NamedTuple field or class name,
    a dict key), outer before inner, in the tree's order; matches holding no leaves are
    skipped, and so are those ``filtering(path, value)`` rejects."""
    _check("tree_get_all_with_path", filtering)
    out: list[tuple[str, Any]] = []
    _collect(tree_, None, key, "", filtering, out)
    return out


def tree_get(tree_: Tree, key: Hashable, default: Any = None,
             filtering: Filtering | None = None) -> Any:
    """The one value in ``tree_`` named ``key`` (see ``tree_get_all_with_path``), or
    ``default`` when there is none. Raises KeyError, naming the paths, when there are
    several (``'count'``, which a chain and each of its stages keep)."""
    _check("tree_get", filtering)
    found = tree_get_all_with_path(tree_, key, filtering)
    if not found:
        return default
    if len(found) > 1:
        shown = ", ".join(p or "the root" for p, _ in found[:6])
        more = f" and {len(found) - 6} more" if len(found) > 6 else ""
        raise KeyError(f"tree_get: {len(found)} values are named {key!r}, at {shown}{more}; "
                       f"pass filtering=lambda path, value: ... to keep one, e.g. "
                       f"filtering=lambda path, value: path == {found[-1][0]!r}")
    return found[0][1]


def _as_old(old: Any, new: Any) -> Any:
    """``new``, a Python number replacing a 0-d NumPy leaf, in that leaf's dtype and kind
    (array or scalar), as a JAX weak type takes the other's: a float32 state stays float32,
    and ``funcdl.io.load(..., like=)`` still accepts it; anything else as given."""
    if (type(new) in (int, float) and isinstance(old, (np.ndarray, np.generic))
            and old.shape == () and old.dtype.kind in "iuf"):
        if old.dtype.kind in "iu":  # 2.5 into a count: refused, not cut; 2**64 not wrapped
            info = np.iinfo(old.dtype)
            whole = new.is_integer() if type(new) is float else True  # NaN, inf: False
            if not (whole and info.min <= new <= info.max):
                raise ValueError(f"tree_set: {new!r} replaces an integer value "
                                 f"({old.dtype}); pass an int in [{info.min}, {info.max}]")
            new = int(new)
        with np.errstate(over="ignore"):  # past float32's range: inf, as a cast in JAX
            cast = np.asarray(new, dtype=old.dtype)
        return cast if isinstance(old, np.ndarray) else cast[()]
    return new


def _replaced(t: Tree, name: Any, values: dict[str, Any], path: str,
              filtering: Filtering | None, hits: set[str]) -> Tree:
    """``t`` itself replaced when one of its names is a key of ``values``, else ``t`` with
    its matches inside replaced (a new container only where something changed)."""
    node, names, own = _named(t, name)
    for key, value in values.items():
        if _matches(key, own, t, path, filtering):
            hits.add(key)
            return _as_old(t, value)
    if node is None:
        return t
    kids = [_replaced(c, n, values, path + step, filtering, hits)
            for c, n, step in zip(node[2], names, node[3])]
    if all(k is c for k, c in zip(kids, node[2])):
        return t
    return rebuild(node[0], node[1], kids)


def tree_set(tree_: Tree, filtering: Filtering | None = None, /, **values: Any) -> Tree:
    """A new tree with each value named by a keyword replaced by that keyword's value, the
    outermost where matches nest (``tree_set(state, lr=1e-3)``: the learning rate of every
    ``inject_hyperparams`` stage); ``tree_`` itself is not changed. Names and skipped
    matches as in ``tree_get_all_with_path``. A Python number replacing a 0-d NumPy value
    takes its dtype (``lr=1e-3`` stays float32 in a float32 state). Raises KeyError for a
    keyword naming nothing. A schedule given to ``inject_hyperparams`` sets its value again
    at the next update, as in optax."""
    _check("tree_set", filtering)
    hits: set[str] = set()
    out = _replaced(tree_, None, values, "", filtering, hits)
    missing = [k for k in values if k not in hits]
    inside = [(k, paths[0][0]) for k in missing
              if (paths := tree_get_all_with_path(tree_, k, filtering))]
    if inside:  # named, but within a node another keyword replaced whole
        key, where = inside[0]
        raise KeyError(f"tree_set: {key!r} (at {where or 'the root'}) lies inside a value "
                       f"another keyword of this call replaces whole ("
                       f"{', '.join(repr(k) for k in hits)}); set them in two calls, the "
                       f"outer first")
    if missing:
        hint = (": the learning rate is in the state only under inject_hyperparams, as in "
                "optax (inject_hyperparams(adam)(lr=1e-3))"
                if any(k in ("lr", "learning_rate") for k in missing) else "")
        if "filtering" in missing and callable(values["filtering"]):  # optax's is positional
            hint = ("; filtering comes first, by position, as in optax: "
                    "tree_set(tree, filtering, name=value)")
        raise KeyError(f"tree_set: nothing in the tree is named "
                       f"{', '.join(map(repr, missing))} (a NamedTuple field or class name, "
                       f"or a dict key, holding a value){hint}")
    return out
