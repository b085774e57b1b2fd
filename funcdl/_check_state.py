"""What ``funcdl.testing``'s checks hold a layer's or a loss's calls to beyond their
numbers: the arrays handed in stay as they were (a write into x, the params or the
cotangent corrupts the caller's data, and the checks' own later evaluations with it), a
gradient has its primal's dtype, and an input holds something to check."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import tree


class Untouched:
    """Copies of the arrays of named trees handed to a layer or loss, taken once;
    ``check(call)`` compares the trees with them after ``call`` ran (an O(size) comparison
    per call, no extra call of the layer)."""

    def __init__(self, where: str, **trees: Any) -> None:
        self.where = where
        self.saved: list[tuple[str, Any, list[tuple[str, Any]]]] = []
        self.add(**trees)

    def add(self, **trees: Any) -> None:
        """Watch these trees too (a cotangent, once the check has drawn it)."""
        for name, t in trees.items():
            copies = [(path, leaf.copy() if isinstance(leaf, np.ndarray) else leaf)
                      for path, leaf in tree.leaves_with_path(t)]
            self.saved.append((name, t, copies))

    def check(self, call: str) -> None:
        """AssertionError naming the first array ``call`` wrote into, its path and entry."""
        for name, t, copies in self.saved:
            now = tree.leaves_with_path(t)
            if [p for p, _ in now] != [p for p, _ in copies]:
                raise AssertionError(f"{self.where}: {call} changed the structure of {name} "
                                     f"(added or removed entries of the caller's {name})")
            for (path, leaf), (_, was) in zip(now, copies):
                change = _change(leaf, was)
                if change:
                    raise AssertionError(
                        f"{self.where}: {call} wrote into {name}{path} ({change}); a layer's "
                        f"or loss's functions must not modify their arguments (the caller's "
                        f"data): write into a copy")


def _change(now: Any, was: Any) -> str:
    """How ``now`` differs from the copy ``was`` in shape, dtype or an entry; '' if not (NaN
    equal to NaN). A leaf that is not an array cannot be written into, only replaced."""
    if not isinstance(was, np.ndarray):
        return "" if now is was else f"replaced {was!r:.40} by {now!r:.40}"
    if not isinstance(now, np.ndarray):
        return f"replaced the array by a {type(now).__name__}"
    if now.shape != was.shape or now.dtype != was.dtype:
        return f"shape {was.shape} and dtype {was.dtype} became {now.shape} and {now.dtype}"
    nan = now.dtype.kind in "fc"
    if np.array_equal(now, was, equal_nan=nan):
        return ""
    off = now != was
    if nan:
        off &= ~(np.isnan(now) & np.isnan(was))
    i = tuple(int(v) for v in np.argwhere(off)[0])
    return f"{'at ' + str(list(i)) + ': ' if i else ''}was {was[i].item()!r}, now " \
        f"{now[i].item()!r}"


def same_dtypes(where: str, names: tuple[str, str], primal: Any, grad: Any,
                note: str = "") -> None:
    """AssertionError at the first floating leaf of ``primal`` whose gradient in ``grad``
    (the same structure) has another dtype: funcdl computes a gradient in its primal's
    dtype, float64 when the caller asks, with no silent downcast or upcast."""
    for (path, p), g in zip(tree.leaves_with_path(primal), tree.leaves(grad)):
        pd, gd = np.asarray(p).dtype, np.asarray(g).dtype
        if pd.kind == "f" and gd != pd:
            raise AssertionError(f"{where}: {names[1]}{path} has dtype {gd} for {pd} "
                                 f"{names[0]}{path}{note}; a gradient keeps its primal's "
                                 f"dtype (float64 when the caller asks: no silent downcast "
                                 f"or upcast)")


def nonempty(where: str, x: Any, hint: str = "") -> None:
    """ValueError if ``x`` holds no entry, or its (first) array has an empty batch axis: a
    check on it would compare nothing and pass."""
    shapes = [np.shape(a) for a in tree.leaves(x)]
    if not shapes:  # x=None, (): not an input at all, which the layer itself names
        return
    if sum(int(np.prod(s)) for s in shapes) == 0 or (shapes[0] and shapes[0][0] == 0):
        shown = shapes[0] if len(shapes) == 1 else shapes
        raise ValueError(f"{where}: x is empty (shape {shown}{hint}): there is nothing to check; "
                         f"pass a non-empty batch")
