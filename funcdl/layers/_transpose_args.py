"""The arguments of ConvTranspose2D and ConvTranspose1D (``conv_transpose``), checked:
kernel, stride and dilation sizes, the crop ``padding`` and ``output_padding`` as pairs
(``(0, p)`` at rank 1, whose height axis is never cropped), and the layer's name."""

from __future__ import annotations

from typing import Any

from funcdl._args import call_name, is_int
from funcdl.layers._windows import Window, int_tuple

_AXES = ("height", "width")


def _ints(name: str, what: str, value: Any, rank: int) -> tuple[int, int]:
    """An int >= 0 (or at rank 2 a pair of them) as a pair, ``(0, p)`` at rank 1 (the added
    height axis is never cropped): a TypeError for what is not, a ValueError for a negative
    one."""
    vals = (value,) * rank if is_int(value) else value if rank == 2 else None
    forms = "an int >= 0 or a pair (h, w) of them" if rank == 2 else "an int >= 0"
    if not (isinstance(vals, (tuple, list)) and len(vals) == rank and all(map(is_int, vals))):
        seq = isinstance(value, (tuple, list))
        if rank == 2:
            nested = seq and any(isinstance(v, (tuple, list)) for v in value)
            hint = ("; a transposed convolution crops the same on both sides of an axis, as "
                    "torch's: no ((top, bottom), (left, right)) form (JAX's explicit "
                    "conv_transpose padding pads the stride-dilated input, another meaning)"
                    if nested and what == "padding" else "")
        else:
            hint = ("" if not seq else
                    "; a 1-D layer crops the same at both ends, as torch's: one int, not a "
                    "pair" if what == "padding" else "; a 1-D layer takes one number, not a pair")
        raise TypeError(f"{name}: {what} must be {forms}, got {value!r}{hint}")
    if any(v < 0 for v in vals):
        raise ValueError(f"{name}: {what} must be {forms}, got {value!r}")
    return (int(vals[0]), int(vals[1])) if rank == 2 else (0, int(vals[0]))


def sizes_arg(name: str, what: str, value: Any, rank: int) -> tuple[int, ...]:
    """``int_tuple``'s ``rank`` positive ints, led by a 1 at rank 1 (the height axis)."""
    try:
        return (1,) * (2 - rank) + int_tuple(name, what, value, rank)
    except TypeError:
        if rank == 2 or not isinstance(value, (tuple, list)):
            raise
        raise TypeError(f"{name}: {what} must be an int >= 1, got {value!r}; a 1-D layer "
                        f"takes one number, not a pair") from None


def padding_arg(name: str, padding: Any, rank: int) -> str | tuple[int, int]:
    if isinstance(padding, str):
        if padding.upper() in ("SAME", "VALID"):
            return padding.upper()
        forms = ", an int >= 0 or a pair (ph, pw) of them" if rank == 2 else " or an int >= 0"
        raise ValueError(f"{name}: padding must be 'SAME', 'VALID'{forms}, got {padding!r}")
    return _ints(name, "padding", padding, rank)


def output_padding_arg(name: str, value: Any, padding: str | tuple[int, int], win: Window,
                    rank: int) -> tuple[int, int]:
    op = _ints(name, "output_padding", value, rank)
    if isinstance(padding, str) and op != (0, 0):
        raise ValueError(f"{name}: output_padding needs an int padding (torch's), got "
                         f"output_padding={value!r} with padding {padding!r}, which sets the "
                         f"output size itself; drop output_padding or pass an int padding")
    for a, (o, s, d) in enumerate(zip(op, win.stride, win.dilation)):
        if o >= s and o >= d:  # torch refuses it: those rows would repeat others' taps
            where = f" on the {_AXES[a]} axis" if rank == 2 else ""
            raise ValueError(f"{name}: output_padding must be smaller than the stride or the "
                             f"dilation{' on each axis' if rank == 2 else ''} (PyTorch's "
                             f"rule), got {o}{where} with stride {s} and dilation {d}")
    return op


def transpose_name(ctor: str, out: Any, kernel: Any, stride: Any, padding: Any, output_padding: Any,
           dilation: Any, use_bias: Any, groups: Any) -> str:
    """The constructor call as the layer's name, options shown when not at their default."""
    return call_name(ctor, (out, kernel), stride=(stride, 1), padding=(padding, 0),
                     output_padding=(output_padding, 0), dilation=(dilation, 1),
                     use_bias=(use_bias, True), groups=(groups, 1))
