"""Entries that are trees of arrays, for the routing layers that move entries whole (Select,
FanOut): an ``LSTM(return_state=True)``'s ``(y, (h_n, c_n))`` has the state ``(h, c)`` as
one entry. Their shapes, values and cotangents, checked entry by entry; None in a
cotangent stands for zeros (nothing flows back from that part)."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import tree
from funcdl.layers.base import as_array, check_cotangent, check_in_shape


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
