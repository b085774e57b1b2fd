"""One walk giving a tree's array leaves and a signature of its structure and leaf shapes,
and, per signature, a cached ``Layout`` that cuts a flat buffer back into views shaped as
those leaves in that structure. The fused path of a small optimizer step (``optim._base``)
pays one such walk per tree, where ``tree.map_multi`` would walk them together twice and
regroup every node's outputs.

The walk takes exact tuples, lists and dicts with str keys, NamedTuples, None and ndarray
leaves; any other node or leaf (a scalar, an OrderedDict, an int key) gives None, and
the caller goes the general way, whose checks and errors are the library's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray

Tree = Any
_ND = np.ndarray


class _Other(Exception):
    """A node or leaf the fast walk leaves to the general one."""


def signature(t: Tree) -> tuple[list[NDArray[Any]], Any] | None:
    """``(leaves, sig)``: the leaves in flattening order (dict keys sorted), and a hashable
    value equal for two trees exactly when they have one structure (node types, dict keys,
    lengths) and one shape per leaf; None for a tree the walk does not take."""
    out: list[NDArray[Any]] = []
    try:
        return out, _walk(t, out)
    except (_Other, TypeError):  # TypeError: dict keys that cannot be sorted
        return None


_EMPTY = (tuple, ())  # the signature of (), a parameterless layer's params


def _walk(t: Tree, out: list[NDArray[Any]]) -> Any:
    # A leaf's part of the signature is its shape (a tuple of ints), a node's a tuple that
    # starts with its type, None's None: no two kinds compare equal. Array children (and
    # empty tuples) are taken in their parent's loop, not by a call each.
    tp = type(t)
    if tp is dict:
        if len(t) == 2:  # a layer's {'w', 'b'}: one comparison, not a sort
            k0, k1 = t
            keys: Any = (k1, k0) if k1 < k0 else (k0, k1)
        else:
            keys = tuple(sorted(t))
        sig: list[Any] = []
        for k in keys:
            # str keys alone: the layouts are cached by signature, and 1 == 1.0 == True
            # would give one tree's keys to another's result
            if type(k) is not str:
                raise _Other
            c = t[k]
            if type(c) is _ND:
                out.append(c)
                sig.append(c.shape)
            else:
                sig.append(_walk(c, out))
        return dict, keys, tuple(sig)
    if tp is tuple or tp is list or (isinstance(t, tuple) and hasattr(tp, "_fields")):
        sig = []
        for c in t:
            if type(c) is _ND:
                out.append(c)
                sig.append(c.shape)
            elif type(c) is tuple and not c:
                sig.append(_EMPTY)
            else:
                sig.append(_walk(c, out))
        return tp, tuple(sig)
    if tp is _ND:
        out.append(t)
        return t.shape
    if t is None:
        return None
    raise _Other


class Layout:
    """Where each leaf of a signature's trees lies in their leaves laid end to end
    (``total`` entries), and how to put a tree of that structure together: ``build(leaves)``
    from leaves in flattening order, ``cut(flat)`` from views of a flat buffer
    (``flat[lo:hi].reshape(shape)``)."""

    __slots__ = ("_spans", "build", "total")

    def __init__(self, sig: Any) -> None:
        spans: list[tuple[int, int, tuple[int, ...]]] = []
        self.build: Callable[[Sequence[Any]], Tree] = _compile(sig, spans)
        self.total = spans[-1][1] if spans else 0
        # a 1-d leaf's slice has its shape already: no reshape call (None)
        self._spans = [(lo, hi, None if len(shape) == 1 else shape) for lo, hi, shape in spans]

    def cut(self, flat: NDArray[Any]) -> Tree:
        return self.build([flat[lo:hi] if shape is None else flat[lo:hi].reshape(shape)
                           for lo, hi, shape in self._spans])


def _compile(sig: Any, spans: list[tuple[int, int, tuple[int, ...]]]
             ) -> Callable[[Sequence[Any]], Tree]:
    """A function of the leaves (in flattening order) giving the tree of ``sig``, each
    leaf's span appended to ``spans``. A node whose children are all leaves (a layer's
    {'w', 'b'}) takes them by one ``itemgetter``, a C call, not by a function each."""
    if sig is None:
        return lambda leaves: None
    if _is_leaf(sig):
        lo = spans[-1][1] if spans else 0
        spans.append((lo, lo + math.prod(sig), sig))
        return itemgetter(len(spans) - 1)
    tp, kid_sigs = sig[0], sig[-1]
    if tp is tuple and not kid_sigs:
        return lambda leaves: ()
    if kid_sigs and all(_is_leaf(k) for k in kid_sigs):
        first = len(spans)
        for k in kid_sigs:
            _compile(k, spans)
        take: Callable[[Sequence[Any]], Any] = itemgetter(*range(first, len(spans)))
        if len(kid_sigs) == 1:  # itemgetter of one index gives the item, not a 1-tuple
            one = take
            take = lambda leaves: (one(leaves),)  # noqa: E731
        return _node(tp, sig[1] if tp is dict else None, take)
    kids = [_compile(k, spans) for k in kid_sigs]
    return _node(tp, sig[1] if tp is dict else None,
                 lambda leaves: [f(leaves) for f in kids])


def _node(tp: type, keys: Any, children: Callable[[Sequence[Any]], Any]
          ) -> Callable[[Sequence[Any]], Tree]:
    """A node of type ``tp`` (``keys``: a dict's) around ``children(leaves)``."""
    if tp is dict:
        return lambda leaves: dict(zip(keys, children(leaves)))
    if tp is tuple:
        return lambda leaves: tuple(children(leaves))
    if tp is list:
        return lambda leaves: list(children(leaves))
    return lambda leaves: tp(*children(leaves))  # a NamedTuple


def _is_leaf(sig: Any) -> bool:
    return sig is not None and (not sig or type(sig[0]) is int)  # a leaf's shape


_LAYOUTS: dict[Any, Layout] = {}
_KEEP = 256  # layouts kept; past that the cache starts again (a sweep over many shapes)


def layout(sig: Any) -> Layout:
    """The ``Layout`` of ``sig`` (from ``signature``), made once and cached."""
    lay = _LAYOUTS.get(sig)
    if lay is None:
        if len(_LAYOUTS) >= _KEEP:
            _LAYOUTS.clear()
        lay = _LAYOUTS[sig] = Layout(sig)
    return lay


def columns(trees: Sequence[Tree]) -> tuple[list[list[NDArray[Any]]], Layout] | None:
    """Each tree's leaves (``signature``'s) and their one ``Layout``; None unless every tree
    is one the walk takes and all share one signature (then a general walk decides, and
    names any mismatch)."""
    first = signature(trees[0])
    if first is None:
        return None
    cols = [first[0]]
    for t in trees[1:]:
        other = signature(t)
        if other is None or other[1] != first[1]:
            return None
        cols.append(other[0])
    return cols, layout(first[1])
