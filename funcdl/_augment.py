"""funcdl.data's keyed image augmentation on whole batches: ``random_flip`` and
``random_crop`` (re-exported by ``funcdl.data``; errors name ``data.<name>``).

Each example gets its own draw from one key, as a JAX user's hand-written augmentation
does (torchvision's transforms, given a batched tensor, draw once for the whole batch).
The draws are documented calls of ``funcdl.random`` on the key itself, so that the same
key flips or crops the same examples of another array of the same length (a
segmentation mask), and a test can recompute them. The result is always a new array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from funcdl import random
from funcdl._args import array_arg, explicit_pads, int_arg, is_int, number, real_arg, shown
from funcdl._keys import seed_hint
from funcdl.random import Key

__all__ = ["random_crop", "random_flip"]

# torchvision's names (and torch's 'replicate') of np.pad's modes, which np.pad computes
_NP_MODE = {"constant": "constant", "edge": "edge", "replicate": "edge", "reflect": "reflect",
            "symmetric": "symmetric"}
_PAD_FORM = ("an int (every side), a pair (ph, pw) of ints (ph rows at top and bottom, pw "
             "columns left and right) or ((top, bottom), (left, right))")


def random_flip(key: Key, x: ArrayLike, axis: int = -2, p: float = 0.5) -> NDArray[Any]:
    """Each example of ``x`` reversed along ``axis`` with probability ``p``, independently.

    Shapes: ``x`` (N, ...) -> the same shape and dtype (any float or integer dtype).
    Math: ``out[n] = flip(x[n], axis) if b[n] else x[n]``, ``b = random.bernoulli(key, p,
    (N,))``: one draw per example. The default ``axis=-2`` is W of NHWC, torchvision's
    ``RandomHorizontalFlip(p)`` applied to each image on its own (``axis=-3``, H, is
    ``RandomVerticalFlip``); on a batched tensor torchvision flips all or none.

    Args:
        key: a key from ``funcdl.random.key(seed)``.
        x: an array (N, ...) of rank >= 2.
        axis: the axis to reverse, any but the batch axis 0 (negative counts from the end).
        p: the probability of flipping an example, in [0, 1].

    Returns:
        A new array; ``x`` is not written to.
    """
    where = "data.random_flip"
    key = _key(key, where)
    a = _images(x, where, 2, "(N, ...) with an axis to flip")
    ax = int_arg(axis, where, "axis", minimum=None)
    if not -a.ndim <= ax < a.ndim or ax % a.ndim == 0:
        raise ValueError(f"{where}: axis must be a non-batch axis of x, in [1, {a.ndim}) or "
                         f"[-{a.ndim - 1}, -1] for x of shape {a.shape}, got {ax}"
                         + ("; axis 0 is the batch axis" if ax % a.ndim == 0
                            and -a.ndim <= ax < a.ndim else ""))
    prob = real_arg(p, where, "p", low=0.0, high=1.0)
    flags = random.bernoulli(key, prob, (a.shape[0],))
    out = a.copy()
    picked = np.flatnonzero(flags)
    # the flipped examples gathered and written back: 3x faster than np.where over all
    out[picked] = np.flip(a[picked], ax)
    return out


def random_crop(key: Key, x: ArrayLike, size: int | tuple[int, int], padding: Any = 0,
                padding_mode: str = "constant", fill: float = 0) -> NDArray[Any]:
    """A ``size`` crop of each example of ``x`` at its own uniformly drawn place, after
    padding H and W: torchvision's ``RandomCrop(size, padding, fill=fill,
    padding_mode=padding_mode)`` applied to each NHWC image on its own (on a batched
    tensor torchvision crops every image at one place).

    Shapes: ``x`` (N, H, W, ...) -> (N, h, w, ...), same dtype (any float or integer).
    Math: ``out[n] = pad(x)[n, i_n : i_n + h, j_n : j_n + w]``, with ``(i_n, j_n)`` row
    ``n`` of ``random.randint(key, (N, 2), 0, [H + top + bottom - h + 1, W + left + right
    - w + 1])``; every example's rows gathered in one indexing.

    Args:
        key: a key from ``funcdl.random.key(seed)``.
        x: an array (N, H, W, ...): NHWC images, or (N, H, W) single-channel ones.
        size: the crop, an int ``s`` (``s x s``) or ``(h, w)``; at most the padded size.
        padding: an int (every side), ``(ph, pw)`` (``ph`` rows at top and bottom, ``pw``
            columns left and right; torchvision's pair is (left/right, top/bottom), the
            other way round) or ``((top, bottom), (left, right))``; non-negative.
        padding_mode: np.pad's and torchvision's ``'constant'`` (``fill``), ``'edge'``
            (torch's ``'replicate'``, also accepted), ``'reflect'`` (the mirror without the
            edge; padding < the side, as torch), ``'symmetric'`` (with it; padding <= the
            side).
        fill: the value of ``'constant'`` padding, a number ``x``'s dtype holds (an int
            for integer images).

    Returns:
        A new array; ``x`` is not written to.
    """
    where = "data.random_crop"
    key = _key(key, where)
    a = _images(x, where, 3, "(N, H, W, ...) (NHWC images)")
    h, w = _size(size, where)
    pads = _pads(padding, where)
    mode = _mode(padding_mode, where)
    value = _fill(fill, a.dtype, mode, where)
    n, rows, cols = a.shape[:3]
    for label, side, (lo, hi) in (("H", rows, pads[0]), ("W", cols, pads[1])):
        _check_side(where, padding_mode, mode, label, side, max(lo, hi), a.shape)
    hp, wp = rows + sum(pads[0]), cols + sum(pads[1])
    if h > hp or w > wp:
        raise ValueError(f"{where}: size {(h, w)} is larger than the padded image "
                         f"{(hp, wp)} (x of shape {a.shape}, padding {pads}); expected "
                         f"h <= {hp} and w <= {wp}")
    if any(pads[0] + pads[1]):
        rest = ((0, 0),) * (a.ndim - 3)
        extra = {"constant_values": value} if mode == "constant" else {}
        a = np.pad(a, ((0, 0), *pads, *rest), mode=mode, **extra)  # type: ignore[call-overload]
    off = random.randint(key, (n, 2), 0, np.array([hp - h + 1, wp - w + 1]))
    c = math.prod(a.shape[3:])
    if c == 0:  # nothing to gather (and no window of 0 entries to step through)
        return np.empty((n, h, w, *a.shape[3:]), a.dtype)
    # Each crop row is w·c contiguous entries of a padded row: gather whole rows, n·h of
    # them, from the windows of w·c entries starting at each column (views, no copy).
    win = sliding_window_view(a.reshape(n, hp, wp * c), w * c, axis=2)[:, :, ::c]
    out = win[np.arange(n)[:, None], off[:, :1] + np.arange(h), off[:, 1:]]
    return np.asarray(out).reshape((n, h, w, *a.shape[3:]))


def _check_side(where: str, given: str, mode: str, label: str, side: int, most: int,
                shape: tuple[int, ...]) -> None:
    """A ValueError where ``most`` rows or columns of padding cannot be read from a
    side of ``side``: torch's rules, which np.pad would instead extend by reflecting
    repeatedly."""
    if (mode == "reflect" and most >= side) or (mode == "symmetric" and most > side):
        rule = "<" if mode == "reflect" else "<="
        raise ValueError(f"{where}: padding_mode {given!r} expected padding {rule} {label} = "
                         f"{side} (torch's rule), got {most} for x of shape {shape}; pad "
                         f"less, or use 'edge' or 'constant'")
    if mode == "edge" and most > 0 and side == 0:
        raise ValueError(f"{where}: padding_mode {given!r} expected {label} >= 1 (there is "
                         f"nothing to copy from), got x of shape {shape}")


def _key(key: Any, where: str) -> Key:
    """``random.check_key``, a seed in the key's place named as such."""
    try:
        return random.check_key(key, where)
    except TypeError as err:
        raise TypeError(f"{err}: {seed_hint(key) or 'pass the key first, then the images'}"
                        ) from None


def _images(x: Any, where: str, rank: int, form: str) -> NDArray[Any]:
    a = array_arg(x, where, "x")
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{where}: x must hold floats or integers, got dtype {a.dtype}")
    if a.ndim < rank:
        raise ValueError(f"{where}: x must be {form}, of rank >= {rank}, got shape {a.shape}")
    return a


def _size(size: Any, where: str) -> tuple[int, int]:
    size = number(size)
    if is_int(size):
        size = (size, size)
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(is_int(s) and s >= 1 for s in size)):
        return int(size[0]), int(size[1])
    raise (ValueError if isinstance(size, (tuple, list)) and all(map(is_int, size))
           else TypeError)(f"{where}: size must be a positive int or a pair (h, w) of "
                           f"positive ints, got {shown(size)}")


def _pads(padding: Any, where: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``padding`` as ``((top, bottom), (left, right))``, each non-negative."""
    padding = number(padding)
    pads = explicit_pads(padding, 2, nonneg=False)
    if pads is None:
        four = ""
        if isinstance(padding, (tuple, list)) and len(padding) == 4:
            l, t, r, b = padding
            four = (f"; for torchvision's (left, top, right, bottom) pass (({t}, {b}), "
                    f"({l}, {r}))")
        raise TypeError(f"{where}: padding must be {_PAD_FORM}, got {shown(padding)}{four}")
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"{where}: padding must be non-negative, got {shown(padding)}")
    return pads


def _mode(mode: Any, where: str) -> str:
    if not isinstance(mode, str) or mode not in _NP_MODE:
        raise (ValueError if isinstance(mode, str) else TypeError)(
            f"{where}: padding_mode must be one of "
            f"{', '.join(map(repr, _NP_MODE))}, got {mode!r}")
    return _NP_MODE[mode]


def _fill(fill: Any, dtype: np.dtype[Any], mode: str, where: str) -> Any:
    """``fill`` checked against ``dtype``: an int in range for integers, a real number
    in range (or an infinity) for floats; nonzero only in 'constant' mode."""
    fill = number(fill)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not is_int(fill):
            raise TypeError(f"{where}: fill must be an int for x of dtype {dtype}, got "
                            f"{shown(fill)} ({type(fill).__name__})")
        if not info.min <= fill <= info.max:
            raise ValueError(f"{where}: fill must be in [{info.min}, {info.max}] for x of "
                             f"dtype {dtype}, got {shown(fill)}")
        value: Any = int(fill)
    else:
        value = real_arg(fill, where, "fill", finite=False)
        if np.isfinite(value) and abs(value) > float(np.finfo(dtype).max):
            raise ValueError(f"{where}: fill must be within {dtype}'s range, got "
                             f"{shown(fill)}")
    if mode != "constant" and value != 0:  # torch refuses it too (torchvision ignores it)
        raise ValueError(f"{where}: fill is for padding_mode='constant' only, got "
                         f"fill={shown(fill)} with another mode; drop fill")
    return value
