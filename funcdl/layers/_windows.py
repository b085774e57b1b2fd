"""Sliding-window arguments and geometry, shared by the convolutions and the pools: the
``stride``/``padding``/window arguments, the resolved ``Window``, and the output size and
pads of a window over an input shape (``fit``, ``geometry``).

Padding ``'SAME'`` follows TF/JAX: output ``ceil(in / stride)``, total padding
``max((out - 1)·stride + (k - 1)·dilation + 1 - in, 0)``, the odd pixel after.
Explicit pads ``(lo, hi)`` (``'VALID'`` is ``(0, 0)``) give ``floor((in + lo + hi - span) /
stride) + 1`` outputs (``span = (k - 1)·dilation + 1``), or with ``Window.ceil`` (the
pools' ``ceil_mode``) PyTorch's ``ceil(...) + 1``, less one when the last window would
start at or past ``in + lo`` (in the bottom/right padding): windows may then run past the
padded edge.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from funcdl._args import explicit_pads, is_int

Pads = tuple[tuple[int, int], tuple[int, int]]
NO_PADS: Pads = ((0, 0), (0, 0))


# ---------------------------------------------------------------------------- arguments

def int_tuple(name: str, what: str, value: Any, n: int) -> tuple[int, ...]:
    """``value`` (an int, or ``n`` ints) as ``n`` positive ints: a TypeError for what is not
    that many ints (2.5, '3', a pair for a 1-D window), a ValueError for ints below 1."""
    vals = (value,) * n if is_int(value) else value
    many = "a positive int" + (f" or {n} positive ints" if n > 1 else "")
    if not (isinstance(vals, (tuple, list)) and len(vals) == n and all(map(is_int, vals))):
        raise TypeError(f"{name}: {what} must be {many}, got {value!r}")
    if not all(v > 0 for v in vals):
        raise ValueError(f"{name}: {what} must be {many}, got {value!r}")
    return tuple(int(v) for v in vals)


def padding_arg(name: str, padding: Any, rank: int) -> str | Pads:
    """``'SAME'``, ``'VALID'`` (any case) or explicit pads ``((top, bottom), (left, right))``
    from an int, a pair or (rank 2) a pair of pairs; for rank 1 a pair is ``(left, right)``."""
    if isinstance(padding, str):
        if padding.upper() in ("SAME", "VALID"):
            return padding.upper()
    else:
        pads = explicit_pads(padding, rank)
        if pads is not None:
            return pads
    forms = ("an int >= 0, a pair (ph, pw) or ((top, bottom), (left, right))" if rank == 2
             else "an int >= 0 or a pair (left, right)")
    raise ValueError(f"{name}: padding must be 'SAME', 'VALID', {forms}; got {padding!r}")


# ---------------------------------------------------------------------------- geometry

class Window(NamedTuple):
    """A 2-D sliding window: size (kh, kw), stride, dilation, padding ('SAME', 'VALID', pads),
    and ``ceil``: PyTorch's ``ceil_mode`` output size ('VALID' or pads; see above)."""

    size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | Pads
    ceil: bool = False


def window_arg(name: str, what: str, size: Any, stride: Any, dilation: Any, padding: Any,
               rank: int, ceil: bool = False) -> Window:
    """A layer's window arguments, each an int or ``rank`` ints, as a ``Window``; rank 1 is
    a 1 x k window (Conv1D, the 1-D pools). TypeError / ValueError naming ``name`` for bad
    ones. ``ceil``: ``Window.ceil``, which the caller checks against the padding."""
    lead = (1,) * (2 - rank)
    kernel, steps, spread = (lead + int_tuple(name, w, v, rank) for w, v in
                             ((what, size), ("stride", stride), ("dilation", dilation)))
    return Window(kernel, steps, spread, padding_arg(name, padding, rank), ceil)


def _axis(size: int | None, k: int, s: int, d: int, pad: str | tuple[int, int],
          ceil: bool = False) -> tuple[int | None, int, int, int]:
    """``(out, lo, hi, need)`` along one axis: output size (None if ``size`` is), padding
    before and after, and the least input size that gives one output."""
    span = (k - 1) * d + 1
    if pad == "SAME":
        if size is None:
            return None, 0, 0, 1
        out = -(-size // s)
        total = max((out - 1) * s + span - size, 0)
        return out, total // 2, total - total // 2, 1
    lo, hi = (0, 0) if isinstance(pad, str) else pad  # 'VALID'
    # ceil: ceil((size + lo + hi - span) / s) >= 0 from size = span - lo - hi - s + 1 on,
    # and one window starts in the image from size 1 on
    need = max(span - lo - hi - (s - 1 if ceil else 0), 1)
    if size is None or size < need:
        return None, lo, hi, need
    if not ceil:
        return (size + lo + hi - span) // s + 1, lo, hi, need
    out = -(-(size + lo + hi - span) // s) + 1
    if (out - 1) * s >= size + lo:  # PyTorch's rule: the last window starts in the image
        out -= 1
    return out, lo, hi, need


def fit(name: str, win: Window, shape: tuple[int | None, ...], rank: int,
        what: str) -> tuple[int | None, int | None, Pads]:
    """Output size ``(oh, ow)`` and resolved pads of ``win`` over an input ``shape`` (batch
    first, channels last, ``rank`` spatial axes; rank 1 is a 1 x L image). A ValueError
    naming both shapes when the window does not fit; None for unknown sizes."""
    sizes = (1, shape[1]) if rank == 1 else (shape[1], shape[2])
    axes = [_axis(n, k, s, d, win.padding if isinstance(win.padding, str) else win.padding[a],
                  win.ceil)
            for a, (n, k, s, d) in enumerate(zip(sizes, win.size, win.stride, win.dilation))]
    if any(n is not None and n < ax[3] for n, ax in zip(sizes, axes)):
        need = tuple(ax[3] for ax in axes)[2 - rank:]
        span = tuple((k - 1) * d + 1 for k, d in zip(win.size, win.dilation))[2 - rank:]
        pad = win.padding if isinstance(win.padding, str) or rank == 2 else win.padding[1]
        expected = "(N, " + ", ".join(f">={n}" for n in need) + ", C)"
        mode = ", ceil_mode=True" if win.ceil else ""
        raise ValueError(f"{name}: the {what} (extent {span}) does not fit the input with "
                         f"padding {pad!r}{mode}: expected an input of shape {expected}, got "
                         f"shape {tuple(shape)}")
    (oh, t, b, _), (ow, l, r, _) = axes
    return oh, ow, ((t, b), (l, r))


def geometry(name: str, win: Window, shape: tuple[int, ...], rank: int,
             what: str) -> tuple[int, int, Pads]:
    """``fit`` for a concrete input shape: sizes are ints."""
    oh, ow, pads = fit(name, win, shape, rank, what)
    if oh is None or ow is None:  # pragma: no cover - fit raises first
        raise ValueError(f"{name}: cannot fit the {what} to shape {shape}")
    return oh, ow, pads
