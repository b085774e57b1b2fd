"""The integer- and flag-argument checks that random, data and parallel share."""

from __future__ import annotations

from typing import Any

import numpy as np


def number(value: Any) -> Any:
    """A 0-d NumPy array of numbers as its Python number (``np.array(3)`` -> ``3``), as a
    user computing a setting with NumPy may pass it; anything else unchanged."""
    if type(value) is np.ndarray and value.ndim == 0 and value.dtype.kind in "iuf":
        return value.item()
    return value


def int_arg(value: Any, where: str, what: str, minimum: int | None = 0) -> int:
    """``value`` as an int ``>= minimum`` (any int when None: an axis): a TypeError for what
    is not an int (bools included), a ValueError below ``minimum``; both name ``where``
    (``random.split``)."""
    value = number(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {what} must be an int, got {value!r} "
                        f"({type(value).__name__})")
    if minimum is not None and value < minimum:
        word = {0: " (non-negative)", 1: " (positive)"}.get(minimum, "")
        raise ValueError(f"{where}: {what} must be >= {minimum}{word}, got {value}")
    return int(value)


def bool_arg(value: Any, where: str, what: str) -> bool:
    """``value`` as a bool, or a TypeError naming ``where``: a flag such as ``shuffle='no'``
    would otherwise count as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {what} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
    return bool(value)
