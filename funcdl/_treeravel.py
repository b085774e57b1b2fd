"""tree.ravel's checks of the entries it casts: integer leaves a float vector cannot hold,
an unravelled vector's entries an integer leaf cannot take, and complex vectors' real
parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["check_ints", "exact_ints", "from_complex"]


def check_ints(v: NDArray[Any], offsets: list[int], dtypes: list[np.dtype[Any]],
               path_of: Callable[[int], str]) -> None:
    """A ValueError unless the entries of ``v`` bound for integer leaves fit them once
    truncated (as the cast truncates, as JAX's): NaN, inf or 1e300 would cast to garbage."""
    for i, d in enumerate(dtypes):
        if d.kind not in "iu" or (v.dtype.kind in "iu" and np.can_cast(v.dtype, d)):
            continue
        info = np.iinfo(d)
        if v.dtype.kind in "iu":  # exact: NumPy compares an int array with Python ints so
            part = v[offsets[i]:offsets[i + 1]]
            fits = (part >= info.min) & (part <= info.max)
        else:
            part = np.trunc(v[offsets[i]:offsets[i + 1]].real.astype(np.float64))  # float16
            # truncated first (-0.3 fits uint8 as 0); the bounds as floats are exact powers
            # of two: [min, max + 1)
            fits = (part >= float(info.min)) & (part < float(info.max) + 1.0)
        if not fits.all():
            path = path_of(i)
            bad = part[~fits][0]
            raise ValueError(f"unravel: the {d} leaf at {path or 'the root'} takes entries "
                             f"{offsets[i]}..{offsets[i + 1] - 1} of the vector, which must "
                             f"be finite and within {d}'s range; got {bad}")


def exact_ints(paths: list[str], arrays: list[NDArray[Any]], dtype: np.dtype[Any]) -> None:
    """A ValueError naming the first integer leaf whose values the float vector of ``dtype``
    would not hold exactly (beyond 2**53 in float64: a uint64 key next to an int64 count,
    which NumPy promotes to float64, came back as another key, silently)."""
    bound = 2 ** (np.finfo(dtype).nmant + 1)  # every integer up to it is a float
    for path, a in zip(paths, arrays):
        if a.dtype.kind in "iu" and a.size and np.iinfo(a.dtype).bits > np.finfo(dtype).nmant \
                and not ((a >= -bound) & (a <= bound)).all():
            raise ValueError(f"tree.ravel: the {a.dtype} leaf at {path or 'the root'} holds "
                             f"values beyond 2**{np.finfo(dtype).nmant + 1}, which the "
                             f"{dtype} vector its leaves promote to cannot hold exactly; "
                             f"ravel the integer leaves apart from the float ones")


def from_complex(part: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """A complex part of an unravelled vector in ``dtype``: a real leaf takes the real part,
    and a non-zero imaginary part there is an error, not silently dropped."""
    if dtype.kind == "c":
        return part.astype(dtype, copy=False)
    if np.any(part.imag):
        raise ValueError(f"unravel: entries of a {dtype} leaf have non-zero imaginary parts; "
                         f"a real leaf takes a real value")
    return part.real.astype(dtype, copy=False)
