"""Identity over trees: which inputs and in_shapes are trees (not one array or one shape),
a map over such a tree, and the cotangent checked against the output's structure."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl.layers.base import check_cotangent


def shape_tree(s: Any) -> bool:
    """Whether an in_shape is a tree of shapes (a dict of them, or a tuple holding one),
    not one shape; an empty dict is neither."""
    return (isinstance(s, dict) and bool(s)) or (isinstance(s, (tuple, list)) and any(
        isinstance(d, (tuple, list, dict)) for d in s))


def not_empty(name: str, x: Any) -> Any:
    """``x``, unless it is an empty dict: a TypeError saying it is no input."""
    if isinstance(x, dict) and not x:
        raise TypeError(f"{name}: got an empty dict, which is no input (no array in it); "
                        f"give an array, or a tree (a tuple, a dict) of arrays")
    return x


def array_tree(x: Any) -> bool:
    """Whether an input is a tree of arrays: a dict of them, a NamedTuple (its entries
    converted one by one, whatever they are), or a tuple or list holding an array, a dict,
    a None or such a tree (np.asarray would stack or refuse it), as init reads a list of
    shapes; a list of numbers (or of their lists) is one array's rows, as every layer
    reads it; an empty dict is no input."""
    if isinstance(x, dict):
        return bool(x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return True  # a record: P([1., 2.], [3., 4.]) keeps its fields, as P(a, b) does
    return isinstance(x, (tuple, list)) and any(
        v is None or isinstance(v, (np.ndarray, dict)) or array_tree(v) for v in x)


def rebuilt(t: Any, items: list[Any]) -> Any:
    """``items`` in the container of ``t``: a list, a NamedTuple, else a tuple."""
    return items if type(t) is list else type(t)(*items) if hasattr(t, "_fields") \
        else tuple(items)


def cotangents(name: str, y: Any, dy: Any, path: str) -> Any:
    """``dy`` checked against the tree of arrays ``y``: its structure (a list or a tuple for
    either), each leaf's shape (in its dtype); None where nothing flows back. In y's
    containers, as JAX gives a cotangent its primal's structure."""
    if dy is None or y is None:
        return None
    if isinstance(y, np.ndarray):
        return check_cotangent(f"{name} ({path})", dy, y.shape, y.dtype)
    keys = sorted(y) if isinstance(y, dict) else list(range(len(y)))
    if isinstance(y, dict) and isinstance(dy, dict) and set(dy) != set(y):
        raise ValueError(f"{name}: pullback expected {path} of the output's structure, a "
                         f"dict with keys {shown_keys(y)}, got a dict with keys "
                         f"{shown_keys(dy)}; give the cotangent the output's keys")
    if ((type(dy) is not type(y) and not (isinstance(y, (tuple, list))
                                          and isinstance(dy, (tuple, list))))
            or (not isinstance(dy, dict) and len(dy) != len(keys))):
        got = (f"a {type(dy).__name__} of {len(dy)} entries" if isinstance(
            dy, (tuple, list, dict)) else f"{type(dy).__name__} of shape {np.shape(dy)}")
        raise ValueError(f"{name}: pullback expected {path} of the output's structure, a "
                         f"{type(y).__name__} of {len(y)} entries, got {got}")
    got_ = [cotangents(name, y[k], dy[k], f"{path}[{k!r}]") for k in keys]
    return dict(zip(keys, got_)) if isinstance(y, dict) else rebuilt(y, got_)


def shown_keys(d: Any) -> str:
    """A dict's (or a set's) keys for a message, in a stable order: ``{'a', 'b'}``."""
    return "{" + ", ".join(sorted(map(repr, d))) + "}"
