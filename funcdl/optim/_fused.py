"""``leafwise``'s ways over trees of two or more outputs per leaf (``optim._base``): a small
tree's leaves laid end to end and taken by ``fn`` once (``fused_flat`` after
``_treeflat.columns``' one walk per tree; ``fused_walked`` for trees that walk does not
take), or ``fn`` leaf by leaf with the trees rebuilt by their layout (``by_leaf``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcdl import _treeflat, tree
from funcdl._treemaps import _outputs

Tree = Any


def fused_flat(fn: Callable[..., Any], cols: list[list[Any]], lay: _treeflat.Layout,
               below: int) -> tuple[Tree, ...] | None:
    """``fn`` applied once to each tree's leaves (``cols``, laid out by ``lay``) end to end,
    each result cut back into views shaped as the leaves (the same numbers: ``fn`` is
    elementwise). None, to go leaf by leaf, unless every leaf is a float32 or float64 array
    of one dtype and there are fewer than ``below`` entries."""
    if not cols[0] or lay.total >= below:
        return None
    dtype = cols[0][0].dtype
    if dtype.char not in "fd":
        return None
    for leaves in cols:
        for x in leaves:
            # `is`, the cheapest test, before == (an equal dtype of another object: unpickled)
            if x.dtype is not dtype and x.dtype != dtype:
                return None
    # axis=None: each leaf read as 1-d by concatenate itself, not by a reshape call each
    outs = fn(*[np.concatenate(leaves, axis=None) for leaves in cols])
    return tuple(lay.cut(out) for out in outs)


def fused_walked(fn: Callable[..., Any], n_out: int, trees: Sequence[Tree], below: int
                 ) -> tuple[Tree, ...] | None:
    """``fused_flat`` for trees ``_treeflat.columns`` does not take (or that differ: then
    map_multi raises, naming the path)."""
    rows: list[tuple[Any, ...]] = []

    def collect(*xs: Any) -> tuple[None]:
        rows.append(xs)
        return (None,)

    # The leaves in map_multi's order (its checks included), so that the map_multi below
    # puts each piece back where its leaves came from.
    tree.map_multi(collect, 1, *trees, shapes=True)
    if not rows:
        return None
    dtype = rows[0][0].dtype if type(rows[0][0]) is np.ndarray else None
    if dtype is None or dtype.char not in "fd":
        return None
    size = 0
    for row in rows:
        for x in row:
            # `is`, the cheapest test, before == (an equal dtype of another object: unpickled)
            if type(x) is not np.ndarray or (x.dtype is not dtype and x.dtype != dtype):
                return None
        size += row[0].size
    if size >= below:
        return None
    flats = [np.concatenate([row[j].reshape(-1) for row in rows]) for j in range(len(trees))]
    outs = fn(*flats)
    bounds = np.cumsum([0] + [row[0].size for row in rows]).tolist()
    per_leaf = iter(zip(*[[out[lo:hi].reshape(row[0].shape) for lo, hi, row in
                           zip(bounds, bounds[1:], rows)] for out in outs]))
    return tree.map_multi(lambda _: next(per_leaf), n_out, trees[0])


def by_leaf(fn: Callable[..., Any], n_out: int, cols: list[list[Any]], lay: _treeflat.Layout
            ) -> tuple[Tree, ...]:
    """``fn`` leaf by leaf over ``cols``, its ``n_out`` results per leaf put together as
    ``n_out`` trees by ``lay``: what map_multi gives, without its joint walk and its
    regrouping of every node's outputs."""
    rows = [r if type(r) is tuple and len(r) == n_out else _outputs(r, n_out)
            for r in [fn(*xs) for xs in zip(*cols)]]
    if not rows:
        return tuple(lay.build(()) for _ in range(n_out))
    return tuple(lay.build(out) for out in zip(*rows))
