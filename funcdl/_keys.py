"""funcdl.random's key type and the helpers its samplers share (in ``funcdl.random``
itself, ``_sampling`` and ``_truncnorm``, which import them from here, not from
``funcdl.random``, so that any of them may be imported first)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import int_arg

Key = NDArray[np.uint64]


def check_key(k: Any, where: str) -> Key:
    """``k`` if it is a key, else a TypeError naming ``where`` (a layer or function)."""
    if not (isinstance(k, np.ndarray) and k.dtype == np.uint64 and k.shape == (2,)):
        got = (f"an array of shape {k.shape} and dtype {k.dtype}" if isinstance(k, np.ndarray)
               else type(k).__name__)
        raise TypeError(
            f"{where}: expected a key made by funcdl.random.key(seed) (uint64, shape (2,)), "
            f"got {got}")
    return k


def _gen(k: Key) -> np.random.Generator:
    """The Philox generator of key ``k``: a fresh one per call, so nothing is advanced."""
    return np.random.Generator(np.random.Philox(key=k))


def _reals(value: Any) -> NDArray[np.float64] | None:
    """``value``, a real number or an array-like of them, as float64; None for what is not
    (None, bools, strings, complex, ragged lists), which ``np.asarray(value, np.float64)``
    would turn into NaN, 1.0 or a number."""
    if isinstance(value, float):  # the common call
        return np.asarray(value, np.float64)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return np.asarray(float(value), np.float64)
        except OverflowError:  # beyond float64: infinite, which the finiteness check refuses
            return np.asarray(math.inf if value > 0 else -math.inf, np.float64)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "iuf":
        return None
    if arr.dtype.itemsize > 8:  # a longdouble beyond float64 becomes inf, refused later
        with np.errstate(over="ignore"):
            return arr.astype(np.float64)
    return arr.astype(np.float64, copy=False)


def _broadcasts(dims: tuple[int, ...], *shapes: tuple[int, ...]) -> bool:
    """Whether arrays of ``shapes`` broadcast to ``dims`` (and not beyond it)."""
    try:
        return np.broadcast_shapes(dims, *shapes) == dims
    except ValueError:
        return False


def _axis(axis: Any, ndim: int, where: str) -> int:
    """``axis`` of an array of rank ``ndim`` as a non-negative int, a negative one counting
    from the end; a TypeError or ValueError naming ``where``."""
    ax = int_arg(axis, where, "axis", minimum=None)
    if not -ndim <= ax < ndim:
        raise ValueError(f"{where}: axis {ax} is out of bounds for an array of rank {ndim}")
    return ax % ndim
