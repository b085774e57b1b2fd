"""A tree's leaves in one flat buffer and back, for the means over ranks (``_reduce``) and
the sharded step (``_shard``): the ``Layout`` of a tree in the buffer, a leaf as a 1-d
array, scaled into its part of the buffer, and read-only views of the buffer in the tree's
structure, each leaf the kind of value it was."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from funcdl import tree as pytree

Tree = Any


class Layout(NamedTuple):
    digest: int
    dtype: np.dtype[Any]  # of the buffer: the leaves' promoted dtype, as funcdl.tree.ravel
    bounds: list[int]
    leaves: list[tuple[tuple[int, ...], np.dtype[Any]]]  # shapes and dtypes
    refused: str | None  # why a leaf cannot be summed: its path and (not float) dtype, or mask


def scaled(x: NDArray[Any], scale: float, out: NDArray[Any]) -> None:
    """``out = scale · x``; 0 where ``scale`` is 0, whatever ``x`` holds: a rank without
    examples (weight 0) adds nothing to a mean, not the NaN of its empty batch's mean."""
    if scale == 0:
        out[...] = 0
    else:
        np.multiply(x, scale, out=out)


def ravel(x: Any) -> NDArray[Any]:
    """A leaf as a 1-d array (a view when it can be): an ndarray's own method, as
    ``np.ravel``'s Python wrapper costs about as much as the call itself."""
    return x.ravel() if type(x) is np.ndarray else np.ravel(x)


def as_tree(buf: NDArray[Any], lay: Layout, t: Tree) -> Tree:
    """Read-only leaves viewing ``buf`` (it may be shared with other ranks), laid out by
    ``lay``, in ``t``'s structure; a leaf that is a NumPy scalar or a Python number comes
    back as one (a copy, see ``like``). They are views of one read-only view of ``buf``, and
    NumPy gives a view of a view the base of the first, so each holds ``buf`` itself: its
    reference count tells whether any is alive. Built by tree.map over ``t``, with no
    treedef (the mlp's 6 leaves: 3 µs, where tree.structure then unflatten take 15)."""
    ro = buf.view()
    ro.flags.writeable = False
    parts = []
    for (shape, dtype), lo, hi in zip(lay.leaves, lay.bounds, lay.bounds[1:]):
        v = ro[lo:hi].reshape(shape)
        if dtype is not ro.dtype and dtype != ro.dtype:  # a float32 leaf of a float64 buffer
            # (a real leaf of a complex buffer: its real part, the imaginary one being 0)
            v = (v.real if dtype.kind != "c" and ro.dtype.kind == "c" else v).astype(dtype)
            v.flags.writeable = False
        parts.append(v)
    it = iter(parts)
    return pytree.map(lambda x: next(it) if type(x) is np.ndarray else like(x, next(it)), t)


def like(leaf: Any, v: NDArray[Any]) -> Any:
    """``v`` as the kind of value ``leaf`` is, as one process returns it: a NumPy scalar
    stays one of its dtype, a Python number (broadcast's ints too) or string (broadcast's)
    stays one; an array, a view."""
    if isinstance(leaf, np.generic):  # before float: np.float64 is a float too
        return v[()]
    if isinstance(leaf, (int, float, complex, str, bytes)):
        return v.item()
    return v
