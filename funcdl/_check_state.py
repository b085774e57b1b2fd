"""What ``funcdl.testing``'s checks hold a layer's or a loss's calls to beyond their
numbers: the arrays handed in stay as they were (a write into x, the params or the
cotangent corrupts the caller's data, and the checks' own later evaluations with it), a
gradient has its primal's dtype, an input holds something to check, and an option given
reaches what it names."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from funcdl import tree
from funcdl._args import real_arg


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


def _zeros_for(x: Any) -> Any:
    """The zero gradient of ``x``: in its dtype if floating, else float64 (an integer id's
    stand-in, which the finite differences never move)."""
    x = np.asarray(x)
    return np.zeros(x.shape, x.dtype if x.dtype.kind == "f" else np.float64)


def none_as_zeros(x: Any, dx: Any) -> Any:
    """``dx`` with zeros of ``x``'s entries (``_zeros_for``) standing in for None: a whole
    None, or a None entry of a tuple or list (a tuple input's integer part, as
    ``Parallel(Embedding, ...)``'s: nothing flows back to ids). A None for a floating entry
    is read the same way, as a zero gradient, which the finite differences then check."""
    if dx is None:
        return tree.map(_zeros_for, x)
    if isinstance(dx, (tuple, list)) and isinstance(x, (tuple, list)) and len(x) == len(dx):
        parts = [none_as_zeros(xi, di) for xi, di in zip(x, dx)]
        return type(dx)(parts) if type(dx) in (tuple, list) else dx
    return dx


def input_cotangent(where: str, x: Any, dx: Any) -> Any:
    """``dx`` (``none_as_zeros``'s) checked against ``x``'s structure and shapes, with zeros
    standing in where x is not floating (integer ids have no cotangent)."""
    dx = none_as_zeros(x, dx)
    try:
        tree.check_same(x, dx, ("x", "dx"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"{where}: dx does not match x: {e}") from None
    return tree.map(lambda xi, di: di if np.asarray(xi).dtype.kind == "f" else _zeros_for(xi),
                    x, dx)


def settings(where: str, rtol: Any, atol: Any, eps: Any = 1.0) -> tuple[float, float, float]:
    """The tolerances and step as floats, or a TypeError / ValueError naming ``where``: a
    negative or nan tolerance would fail every entry, a zero step divide by zero."""
    return (real_arg(rtol, where, "rtol", low=0.0), real_arg(atol, where, "atol", low=0.0),
            real_arg(eps, where, "eps", low=0.0, open_low=True))


def free_option(f: Any, name: str) -> bool:
    """Whether ``f`` takes a keyword ``name`` that no ``functools.partial`` has bound (a
    ``**kwargs`` may take anything: not counted)."""
    try:
        p = inspect.signature(f).parameters.get(name)
    except (TypeError, ValueError):  # a builtin: no signature to read
        return False
    bound_kw = getattr(f, "keywords", None) or {}
    return p is not None and name not in bound_kw and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
