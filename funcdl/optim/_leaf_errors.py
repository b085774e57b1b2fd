"""Why a leaf is refused: the errors ``leafwise`` and the argument checks raise for a grad,
update or param leaf that is not a real floating-point NumPy array or number (complex,
integer, a masked array, a np.matrix, another library's array), each naming the function,
the leaf's path and the cast that fixes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from funcdl import tree
from funcdl._args import is_masked, masked_error

Tree = Any


def odd_kind(x: Any) -> bool:
    """Whether a leaf is an np.matrix (whose * is a matrix product), a masked array (whose
    mask would be dropped) or another library's array (``foreign``): what ``subclass_error``
    names."""
    return isinstance(x, np.matrix) or is_masked(x) or foreign(x)


def foreign(x: Any) -> bool:
    """Whether a leaf is neither a NumPy array or scalar nor a Python number: another
    library's array (JAX's, torch's), which NumPy's operations hand back as its own type or
    refuse to write into."""
    return not isinstance(x, (np.ndarray, np.generic, float, int, complex))


def subclass_error(name: str, what: str, x: Any) -> Exception | None:
    """The error for a leaf ``what`` that ``real_grad`` refuses as an ndarray subclass (a
    masked array, a np.matrix) or another library's array, or None."""
    if is_masked(x):
        return masked_error(name, what)
    if isinstance(x, np.matrix):
        return TypeError(f"{name}: {what} is a np.matrix, whose * is a matrix product, not the "
                         f"entrywise one an optimizer takes; pass np.asarray({what})")
    if foreign(x):
        kind = f"{type(x).__module__}.{type(x).__qualname__}"
        return TypeError(f"{name}: {what} is a {kind}, not a NumPy array; optimizers take "
                         f"NumPy arrays and numbers: pass np.asarray({what})")
    return None


def param_dtype_error(where: str, path: str, dtype: Any, what: str = "params") -> TypeError:
    """The error for ``what{path}`` (params, or a tree read like them) of ``dtype``, not
    real floating point."""
    return TypeError(f"{where}: {what}{path} has dtype {dtype}; optimizers work on real "
                     f"floating-point arrays (cast with .astype(np.float32))")


def dtype_error(name: str, what: str, path: str, dtype: np.dtype[Any],
                ref: np.dtype[Any] | None = None) -> TypeError:
    """The error for ``what`` (``grads`` or ``updates``) at ``path`` of ``dtype``, not real
    floating point; ``ref`` is the dtype to cast to (the params'), when known."""
    real = ".real" if dtype.kind == "c" else ""
    target = "" if ref is None else f", {ref}"
    return TypeError(
        f"{name}: {what}{path} has dtype {dtype}; optimizers take real floating-point "
        f"{what} (float16, float32 or float64), as the params are: cast the {what} to the "
        f"params' dtype{target} ({what}{path}{real}.astype(np.{ref or 'float32'}))")


def _dtype_at(trees: Sequence[Tree], path: str) -> np.dtype[Any] | None:
    """The dtype of the first real floating-point leaf at ``path`` in ``trees`` (the params'
    or the state's, which init made like them), for ``dtype_error``'s advice."""
    for t in trees:
        x = dict(tree.leaves_with_path(t)).get(path)
        dtype: np.dtype[Any] | None = None if x is None else np.asarray(x).dtype
        if dtype is not None and dtype.kind == "f":
            return dtype
    return None


def refused_leaf(name: str, trees: Sequence[Tree], names: Sequence[str]) -> Exception | None:
    """The error naming the first leaf of ``trees`` (called ``names``) that an optimizer
    refuses: an ndarray subclass or another library's array first, then a leaf that is not
    real floating point (for grads and updates with the params' dtype to cast to); None if
    every leaf is real floating point (the TypeError came from elsewhere)."""
    for t, tree_name in zip(trees, names, strict=True):
        for path, x in tree.leaves_with_path(t):
            odd_array = subclass_error(name, f"{tree_name}{path}", x)
            if odd_array is not None:
                return odd_array
    for t, tree_name in zip(trees, names, strict=True):
        odd = tree.odd_leaf(t, "f")
        if odd is None:
            continue
        if tree_name in ("grads", "updates"):
            return dtype_error(name, tree_name, *odd, _dtype_at(trees, odd[0]))
        return param_dtype_error(name, odd[0], odd[1], tree_name)
    return None
