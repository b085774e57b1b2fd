"""A routing layer's tuple input read entry by entry (``tuple_entries``, ``tuple_arrays``,
``tuple_shapes``), and entries that are trees of arrays, for the routing layers that move
entries whole (Select, FanOut): an ``LSTM(return_state=True)``'s ``(y, (h_n, c_n))`` has
the state ``(h, c)`` as one entry. Their shapes, values and cotangents, checked entry by
entry; None in a cotangent stands for zeros (nothing flows back from that part)."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import tree
from funcdl._args import python_floats
from funcdl.layers.base import _F32, Array, as_array, check_cotangent, check_in_shape


def checked_shapes(name: str, s: Any) -> Any:
    """One entry's in_shape: a shape, or a non-empty tuple of shape trees (an
    ``LSTM(return_state=True)``'s state ``((N, H), (N, H))``)."""
    if isinstance(s, (tuple, list)) and s and all(isinstance(e, (tuple, list)) for e in s):
        return tuple(checked_shapes(name, e) for e in s)
    return check_in_shape(name, s, min_rank=0)


def holds_array(x: Any) -> bool:
    """Whether ``x`` is a tuple or list with an array at some depth: a node of a tree of
    arrays, not one array written as nested lists of numbers."""
    return isinstance(x, (tuple, list)) and any(
        isinstance(v, np.ndarray) or holds_array(v) for v in x)


def value_tree(name: str, x: Any) -> Any:
    """One entry: an array, or a tuple holding arrays (a state ``(h, c)``) entry by entry.
    A list stays one array (rows), as ``as_array`` reads it."""
    if isinstance(x, tuple) and holds_array(x):
        return tuple(value_tree(name, v) for v in x)
    return as_array(name, x)


def cotangent_tree(name: str, d: Any, y: Any) -> Any:
    """``d`` checked against the entry ``y``: an array by ``check_cotangent``; a tree entry
    by entry, where None (nothing flows back from that leaf or subtree) is kept."""
    if not isinstance(y, tuple):
        return check_cotangent(name, d, y.shape, y.dtype)
    if not (isinstance(d, (tuple, list)) and len(d) == len(y)):
        got = (f"a {type(d).__name__} of length {len(d)}" if isinstance(d, (tuple, list))
               else f"an array of shape {d.shape}" if isinstance(d, np.ndarray)
               else type(d).__name__)
        raise ValueError(f"{name}: pullback expected the cotangent of an entry of shapes "
                         f"{tree.map(np.shape, y)} as a tuple of {len(y)}, its structure, "
                         f"got {got}")
    return tuple(None if di is None else cotangent_tree(name, di, yi) for di, yi in zip(d, y))


def add_trees(a: Any, b: Any) -> Any:
    """``a + b`` leaf by leaf over one tree's structure, None standing for zeros."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tuple):
        return tuple(map(add_trees, a, b))
    return a + b


def tuple_entries(name: str, xs: Any, n: int | None = None,
                  trees: bool = False) -> tuple[Any, ...]:
    """The entries of ``xs`` as arrays; with ``trees``, a tuple entry holding arrays (an
    LSTM's state ``(h, c)``) stays a tuple of them (``value_tree``)."""
    if not isinstance(xs, (tuple, list)) or (n is not None and len(xs) != n) or not xs:
        what = f"a tuple of {n} arrays" if n else "a non-empty tuple of arrays"
        got = (f"a {type(xs).__name__} of length {len(xs)}" if isinstance(xs, (tuple, list))
               else type(xs).__name__)
        raise ValueError(f"{name}: expected {what} (e.g. from FanOut or Parallel), got {got}")
    return tuple(value_tree(name, x) if trees else as_array(name, x) for x in xs)


def tuple_arrays(name: str, xs: Any) -> tuple[Array, ...]:
    """``tuple_entries``, with Python floats (a list) in the result type of the float arrays
    beside them, float32 without any, as JAX's weakly typed floats: ``x64 + list`` is
    float64."""
    if not isinstance(xs, (tuple, list)) or not any(map(python_floats, xs)):
        return tuple_entries(name, xs)
    given = [x for x in xs if not python_floats(x)]
    got = tuple_entries(name, given) if given else ()
    floats = [a.dtype for a in got if a.dtype.kind == "f"]
    weak = np.result_type(*floats) if floats else _F32
    strong = iter(got)
    return tuple(as_array(name, x, weak) if python_floats(x) else next(strong) for x in xs)


def tuple_shapes(name: str, in_shapes: Any, trees: bool = False) -> list[Any]:
    """The entries' shapes; with ``trees`` (a layer routing entries whole: Select, FanOut)
    an entry may be a tuple of shapes itself (``checked_shapes``)."""
    if not isinstance(in_shapes, (tuple, list)) or not in_shapes or not all(
            isinstance(s, (tuple, list)) for s in in_shapes):
        raise TypeError(f"{name}: in_shape must be a tuple of input shapes (one per branch), "
                        f"got {in_shapes!r}")
    return [checked_shapes(name, s) if trees else check_in_shape(name, s, min_rank=0,
                                                                 tree_hint="")
            for s in in_shapes]
