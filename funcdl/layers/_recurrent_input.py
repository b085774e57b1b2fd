"""The padded input ``(x, lengths)`` of ``funcdl.layers.recurrent``'s layers built with
``lengths=True`` (and of ``MaskedMean``'s lengths): its in_shape, its split, and the lengths'
checks, each error naming the layer and the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import side_array
from funcdl.layers.base import Array, Shape, check_in_shape, pair_of_shapes


def padded_in_shape(name: str, in_shape: Any) -> Shape:
    """The x shape of a padded layer's ``in_shape ((N, T, C), (N,))``, checked."""
    if not pair_of_shapes(in_shape):
        raise ValueError(f"{name}: expected in_shape ((N, T, C), (N,)), the shapes of the "
                         f"input (x, lengths), got {in_shape!r}; without lengths build the "
                         f"layer with lengths=False")
    shape = check_in_shape(name, in_shape[0], rank=3, layout="(N, T, C)")
    ln = check_in_shape(name, in_shape[1])
    if len(ln) != 1 or (None not in (ln[0], shape[0]) and ln[0] != shape[0]):
        raise ValueError(f"{name}: lengths must have shape (N,), one per sequence of x, got "
                         f"in_shape {in_shape!r}; pass ((N, T, C), (N,))")
    return shape


def pair(name: str, x: Any) -> tuple[Any, Any]:
    """``(x, lengths)`` from a padded layer's input, or a TypeError saying so."""
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        got = (f"a {type(x).__name__} of {len(x)}" if isinstance(x, (tuple, list)) else
               f"shape {np.shape(x)}" if isinstance(x, np.ndarray) else type(x).__name__)
        raise TypeError(f"{name}: expected the input as a pair (x, lengths), x (N, T, C) "
                        f"padded and lengths (N,) integers, got {got}; a batch of full "
                        f"sequences needs the layer built without lengths=True")
    return x[0], x[1]


def lengths_arg(name: str, given: Any, shape: tuple[int, ...]) -> Array:
    """``lengths`` as an int64 ``(N,)`` array in ``[0, T]``, or an error saying the fix."""
    n, t = shape[0], shape[1]
    ln = side_array(given, name, "lengths")
    if ln is None or ln.dtype.kind not in "iu":
        got = f"dtype {ln.dtype}" if ln is not None else type(given).__name__
        fix = ("lengths.astype(np.int64)" if ln is not None and ln.dtype.kind in "fb" else
               "np.asarray(lengths, dtype=np.int64)")
        raise TypeError(f"{name}: lengths must be integers, each sequence's number of valid "
                        f"steps, got {got}; pass {fix}")
    if ln.shape != (n,):
        raise ValueError(f"{name}: lengths must have shape ({n},), one per sequence of x "
                         f"{shape}, got shape {ln.shape}")
    if n and (ln.min() < 0 or ln.max() > t):
        bad = int(np.argmax((ln < 0) | (ln > t)))
        raise ValueError(f"{name}: lengths must lie in [0, T] = [0, {t}] (x {shape} has T = "
                         f"{t} steps), got lengths[{bad}] = {int(ln[bad])}; pad x to the "
                         f"longest sequence, or correct the lengths")
    return ln.astype(np.int64, copy=False)
