"""``pad_sequences``: a ragged list of sequences as one padded batch and its lengths, the
``(x, lengths)`` that the recurrent layers' ``lengths=True``, ``MaskedMean('lengths')`` and
``losses.masked(loss, 'lengths')`` take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from funcdl._args import int_arg

__all__ = ["pad_sequences"]

_WHERE = "pad_sequences"


def pad_sequences(sequences: Sequence[ArrayLike], *, padding_value: Any = 0,
                  max_len: int | None = None,
                  dtype: DTypeLike | None = None) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """``(x, lengths)``: sequences ``s_n`` of shapes ``(T_n, ...)`` (one trailing shape) as
    ``x (N, T, ...)`` with ``x[n, :T_n] = s_n`` and ``padding_value`` after, and ``lengths
    (N,)`` int64 the ``T_n``.

    PyTorch's ``pad_sequence(sequences, batch_first=True, padding_value=...)``, with the
    lengths its ``pack_padded_sequence`` wants: padding at the end (Keras' ``pad_sequences``
    pads at the front by default). ``T`` is the longest ``T_n``, or ``max_len`` (a sequence
    longer than it is refused, not cut: slice it first). ``dtype``: the sequences' common
    one by default (float32 stays float32, token ids stay integers); ``padding_value`` must
    be exact in it. A length may be 0. The key-padding mask of attention (True at padding)
    is ``np.arange(T) >= lengths[:, None]``.
    """
    if isinstance(sequences, np.ndarray) and sequences.dtype != object:
        arrays = list(sequences)  # a rectangular batch: its rows, all of one length
    elif isinstance(sequences, (list, tuple)):
        arrays = [np.asarray(s) for s in sequences]
    else:
        raise TypeError(f"{_WHERE}: expected a list or tuple of sequences, each (T_n, ...), got "
                        f"{type(sequences).__name__}")
    if not arrays:
        raise ValueError(f"{_WHERE}: got no sequences; the trailing shape and dtype of the batch "
                         f"come from them")
    for n, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"{_WHERE}: sequence {n} is a scalar; each must be (T_n, ...), a "
                             f"step per entry of its first axis")
        if a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"{_WHERE}: every sequence must have the trailing shape of the "
                             f"first, {arrays[0].shape[1:]} (its shape {arrays[0].shape}); "
                             f"sequence {n} has shape {a.shape}")
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise TypeError(f"{_WHERE}: sequence {n} must hold numbers, got dtype {a.dtype}")
    lengths = np.array([len(a) for a in arrays], np.int64)
    longest = int(lengths.max())
    t = longest if max_len is None else int_arg(max_len, _WHERE, "max_len")
    if longest > t:
        n = int(lengths.argmax())
        raise ValueError(f"{_WHERE}: sequence {n} has {longest} steps, more than max_len={t}; "
                         f"slice the sequences to max_len first (s[:max_len]), or raise it")
    # an empty sequence, np.asarray([]), is float64: it has no say in the batch's dtype
    given = [a for a in arrays if a.size] or arrays
    dt = np.result_type(*given) if dtype is None else np.dtype(dtype)
    fill = np.asarray(padding_value)
    ok = fill.ndim == 0 and fill.dtype.kind in "biuf" and dt.kind in "biuf"
    if ok:
        # 1e300 in float32: inf; NaN, inf or 1e300 in an integer: garbage; refused below
        with np.errstate(over="ignore", invalid="ignore"):
            cast = fill.astype(dt)
        # integers exactly; floats rounded as any cast rounds them, but not overflowed
        ok = bool(cast == fill) if dt.kind != "f" else bool(np.isfinite(cast)
                                                             or not np.isfinite(fill))
    if not ok:
        raise ValueError(f"{_WHERE}: padding_value must be a number that the batch's dtype {dt} "
                         f"holds (exactly, for integers), got {padding_value!r}")
    out = np.full((len(arrays), t, *arrays[0].shape[1:]), cast, dt)
    # every step in one assignment: row n's steps go to (n, 0), ..., (n, T_n - 1)
    rows = np.repeat(np.arange(len(arrays)), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = np.concatenate(arrays, axis=0).astype(dt, copy=False)
    return out, lengths
