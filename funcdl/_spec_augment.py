"""funcdl.data's keyed SpecAugment masks on whole batches of spectrogram-like sequences:
``time_mask`` and ``freq_mask`` (Park et al. 2019; torchaudio's ``TimeMasking`` and
``FrequencyMasking`` with ``iid_masks=True``), re-exported by ``funcdl.data``.

One band per example, drawn from one key as torchaudio's iid masks draw it: a width
``u0 · W`` and a start ``u1 · (size - width)``, both floored, so the same key masks the
same bands of another array of the same length. The result is always a new array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from funcdl import random
from funcdl._args import array_arg, int_arg, real_arg
from funcdl._augment import _fill, _images, _key
from funcdl.random import Key

__all__ = ["freq_mask", "time_mask"]


def time_mask(key: Key, x: ArrayLike, max_width: int, *, lengths: Any = None,
              p: float = 1.0, value: float = 0, axis: int = 1) -> NDArray[Any]:
    """A band of up to ``max_width`` consecutive steps of each example set to ``value``:
    torchaudio's ``TimeMasking(max_width, iid_masks=True, p=p)`` on a channels-last batch.

    Shapes: ``x`` (N, T, ...) (time at ``axis``, 1 by default: (N, T, F) features) -> the
    same shape and dtype; ``lengths`` (N,) ints in [0, T] or None (T for every example).
    Math: with ``(u0, u1) = random.uniform(key, (2, N), dtype=float64)``, ``L_n`` the
    length, ``W_n = min(max_width, L_n)`` (``min(max_width, floor(p·L_n), L_n)`` for
    ``p < 1``), ``w = u0·W_n``, ``lo = u1·(L_n - w)``: steps ``floor(lo) <= t <
    floor(lo + w)`` are masked, so a band never reaches past an example's own length (a
    padded batch's padding is left as it is; torchaudio masks within the whole axis).

    Args:
        key: a key from ``funcdl.random.key(seed)``.
        x: an array (N, T, ...) of floats or integers.
        max_width: torchaudio's ``time_mask_param``, the widest band, an int >= 0.
        lengths: each example's valid length (``data.pad_sequences``' second output).
        p: torchaudio's ``p``, the largest fraction of a length one band may cover.
        value: torchaudio's ``mask_value``, a number ``x``'s dtype holds.
        axis: the time axis, any but the batch axis 0.

    Returns:
        A new array; ``x`` is not written to.
    """
    return _mask("data.time_mask", key, x, max_width, axis, lengths, p, value)


def freq_mask(key: Key, x: ArrayLike, max_width: int, *, value: float = 0,
              axis: int = -1) -> NDArray[Any]:
    """A band of up to ``max_width`` consecutive features (frequency bins) of each example
    set to ``value``, the same band at every step: torchaudio's
    ``FrequencyMasking(max_width, iid_masks=True)`` on a channels-last batch.

    Shapes: ``x`` (N, ..., F) (frequency at ``axis``, the last by default) -> the same
    shape and dtype.
    Math: as ``time_mask`` with ``L_n = F``: ``w = u0·min(max_width, F)``, ``lo = u1·(F -
    w)``, bins ``floor(lo) <= f < floor(lo + w)`` masked, ``(u0, u1)`` from
    ``random.uniform(key, (2, N), dtype=float64)``.

    Args:
        key: a key from ``funcdl.random.key(seed)``.
        x: an array (N, ..., F) of floats or integers.
        max_width: torchaudio's ``freq_mask_param``, the widest band, an int >= 0.
        value: torchaudio's ``mask_value``, a number ``x``'s dtype holds.
        axis: the frequency axis, any but the batch axis 0.

    Returns:
        A new array; ``x`` is not written to.
    """
    return _mask("data.freq_mask", key, x, max_width, axis, None, 1.0, value)


def _mask(where: str, key: Any, x: Any, max_width: Any, axis: Any, lengths: Any,
          p: Any, value: Any) -> NDArray[Any]:
    key = _key(key, where)
    a = _images(x, where, 2, "(N, ...) with an axis to mask")
    ax = int_arg(axis, where, "axis", minimum=None)
    if not -a.ndim <= ax < a.ndim or ax % a.ndim == 0:
        raise ValueError(f"{where}: axis must be a non-batch axis of x, in [1, {a.ndim}) or "
                         f"[-{a.ndim - 1}, -1] for x of shape {a.shape}, got {ax}")
    ax %= a.ndim
    width = int_arg(max_width, where, "max_width")
    frac = real_arg(p, where, "p", low=0.0, high=1.0)
    try:
        fill = _fill(value, a.dtype, "constant", where)
    except (TypeError, ValueError) as err:  # random_crop's check, its argument named ours
        raise type(err)(str(err).replace("fill", "value")) from None
    n, size = a.shape[0], a.shape[ax]
    sizes = _lengths(where, lengths, n, size, a.shape, ax)
    cap = np.minimum(width, sizes).astype(np.float64)
    if frac < 1.0:  # torchaudio's _get_mask_param: min(mask_param, int(length * p))
        cap = np.minimum(cap, np.floor(sizes * frac))
    u = random.uniform(key, (2, n), dtype=np.float64)
    w = u[0] * cap
    lo = u[1] * (sizes - w)
    start, stop = np.floor(lo), np.floor(lo + w)
    steps = np.arange(size)
    band = (steps >= start[:, None]) & (steps < stop[:, None])          # (N, size)
    shape = [1] * a.ndim
    shape[0], shape[ax] = n, size
    out = a.copy()
    out[np.broadcast_to(band.reshape(shape), a.shape)] = fill
    return out


def _lengths(where: str, lengths: Any, n: int, size: int, shape: tuple[int, ...],
             ax: int) -> NDArray[np.float64]:
    """Each example's length along the masked axis as floats: ``size`` for None."""
    if lengths is None:
        return np.full(n, float(size))
    ln = array_arg(lengths, where, "lengths")
    if ln.dtype.kind not in "iu" or ln.shape != (n,):
        raise ValueError(f"{where}: lengths must be integers of shape (N,) = ({n},) for x "
                         f"of shape {shape}, got dtype {ln.dtype} and shape {ln.shape}")
    if n and (ln.min() < 0 or ln.max() > size):
        raise ValueError(f"{where}: lengths must be in [0, {size}] (x.shape[{ax}] of x of "
                         f"shape {shape}), got values in [{ln.min()}, {ln.max()}]")
    return ln.astype(np.float64)
