"""Pad2D and Pad1D: PyTorch's ``F.pad`` (``nn.ZeroPad2d``, ``ConstantPad2d``,
``ReflectionPad2d``, ``ReplicationPad2d``, ``CircularPad2d`` and their 1-D forms) on NHWC
(H and W padded) and NLC (L padded) inputs.

Along one padded axis of size ``n``, with ``lo`` entries before and ``hi`` after, output
index ``o`` (``0 <= o < lo + n + hi``) reads source ``s = o - lo`` when ``0 <= s < n``,
else, by mode: ``'constant'`` the value; ``'reflect'`` the mirror image without the edge,
``-s`` before and ``2(n - 1) - s`` after (torch's rule ``lo, hi < n``); ``'replicate'``
the edge, ``clip(s, 0, n - 1)``; ``'circular'`` ``s mod n`` (``lo, hi <= n``, wrapping
around once at most, as torch). Negative padding crops, in ``'constant'`` mode only
(torch's other modes take it with rules that differ between its 1-D and 2-D kernels).

The forward is ``np.pad`` (whose 'constant', 'reflect', 'edge' and 'wrap' are these modes
at the paddings allowed here), or a fill and one copy when cropping; the vjp is the
adjoint, one axis at a time: the centre of ``dy``, plus each padded strip added back onto
the positions it was read from, a handful of slice additions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import call_name, is_int, real_arg
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_in_shape,
    linear_map,
    no_params,
)

__all__ = ["Pad1D", "Pad2D"]

_MODES = ("constant", "reflect", "replicate", "circular")
# NumPy's names of torch's modes: the same sources at the paddings torch allows (np.pad's
# 'wrap' would wrap around repeatedly beyond, where torch, and we, refuse)
_NP_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
            "circular": "wrap"}
Pads = tuple[tuple[int, int], ...]


def _pair(name: str, v: Any, form: str) -> tuple[int, int]:
    if is_int(v):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(map(is_int, v)):
        return int(v[0]), int(v[1])
    raise TypeError(f"{name}: padding must be {form}, got {v!r}")


def _pads(name: str, padding: Any, rank: int) -> Pads:
    """``padding`` as ``((before, after),)`` per padded axis."""
    if rank == 1:
        return (_pair(name, padding, "an int or a pair (left, right) of ints"),)
    form = ("an int, a pair (ph, pw) (ph rows at top and bottom, pw columns left and "
            "right) or ((top, bottom), (left, right))")
    if is_int(padding):
        return ((int(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 4 and all(map(is_int, padding)):
        l, r, t, b = padding
        raise TypeError(f"{name}: padding must be {form}, got {tuple(padding)!r}; for "
                        f"torch's (left, right, top, bottom) pass (({t}, {b}), ({l}, {r}))")
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        return _pair(name, padding[0], form), _pair(name, padding[1], form)
    raise TypeError(f"{name}: padding must be {form}, got {padding!r}")


def _adjoint(mode: str, dy: Array, ax: int, n: int, lo: int, hi: int) -> Array:
    """The vjp along axis ``ax`` of a non-constant pad: ``dy``'s centre plus each strip
    added onto the sources it read (no entry is read twice within one strip)."""
    def at(a: int | None, b: int | None, step: int = 1) -> tuple[slice, ...]:
        return (slice(None),) * ax + (slice(a, b, step),)

    dx = dy[at(lo, lo + n)].copy()
    if lo:
        left = dy[at(0, lo)]
        if mode == "reflect":  # output k < lo read source lo - k: sources lo..1, reversed
            dx[at(1, lo + 1)] += left[at(None, None, -1)]
        elif mode == "replicate":
            dx[at(0, 1)] += left.sum(axis=ax, keepdims=True)
        else:  # output k < lo read source n - lo + k
            dx[at(n - lo, n)] += left
    if hi:
        right = dy[at(lo + n, lo + n + hi)]
        if mode == "reflect":  # output lo + n + m read source n - 2 - m
            dx[at(n - 1 - hi, n - 1)] += right[at(None, None, -1)]
        elif mode == "replicate":
            dx[at(n - 1, n)] += right.sum(axis=ax, keepdims=True)
        else:  # output lo + n + m read source m
            dx[at(0, hi)] += right
    return dx


def _layer(name: str, kind: str, pads: Pads, mode: Any, value: Any) -> Layer:
    """The shared body of Pad1D (``kind`` 'NLC') and Pad2D ('NHWC')."""
    if not isinstance(mode, str) or mode not in _MODES:
        raise (TypeError if not isinstance(mode, str) else ValueError)(
            f"{name}: mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    fill = real_arg(value, name, "value", finite=False)
    if mode != "constant" and fill != 0.0:  # torch refuses it too
        raise ValueError(f"{name}: mode {mode!r} takes no value (only 'constant' fills); "
                         f"got value={value!r}; drop it or pass mode='constant'")
    if mode != "constant" and any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"{name}: negative padding (cropping) is supported in mode "
                         f"'constant' only, got padding {pads} with mode {mode!r}; crop "
                         f"with Slice first, then pad")
    rank = len(kind)
    axes = tuple(range(1, rank - 1))  # the padded axes, between batch and channels

    def check_sizes(shape: tuple[Any, ...]) -> None:
        for ax, (lo, hi) in zip(axes, pads):
            n = shape[ax]
            if n is None:
                continue
            label = kind[ax]
            if mode == "constant" and n + min(lo, 0) + min(hi, 0) < 0:
                raise ValueError(f"{name}: padding {(lo, hi)} crops more than {label} = {n} "
                                 f"holds (shape {shape}); expected at most {n} cropped in "
                                 f"all along {label}")
            if mode in ("reflect", "replicate") and n == 0:
                raise ValueError(f"{name}: mode {mode!r} expected {label} >= 1 (there is "
                                 f"nothing to copy from), got shape {shape}")
            if mode == "reflect" and max(lo, hi) >= n:
                raise ValueError(f"{name}: mode 'reflect' expected padding < {label} = {n} "
                                 f"(torch's rule: the mirror image excludes the edge), got "
                                 f"{(lo, hi)} for shape {shape}; pad less, or use "
                                 f"'replicate' or 'constant'")
            if mode == "circular" and max(lo, hi) > n:
                raise ValueError(f"{name}: mode 'circular' expected padding <= {label} = {n} "
                                 f"(torch's rule: wrap around once at most), got {(lo, hi)} "
                                 f"for shape {shape}")

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, rank=rank, layout=f"({', '.join(kind)})")
        check_sizes(shape)
        out = list(shape)
        for ax, (lo, hi) in zip(axes, pads):
            if out[ax] is not None:
                out[ax] = out[ax] + lo + hi  # type: ignore[operator]
        return tuple(out), ()

    def check(params: Any, x: Any) -> Array:
        no_params(name, params)
        a = as_floats(name, x)
        if a.ndim != rank:
            raise ValueError(f"{name}: expected an input ({', '.join(kind)}) of rank {rank}, "
                             f"got shape {a.shape}")
        check_sizes(a.shape)
        return a

    widths = ((0, 0), *pads, (0, 0))
    crops = any(p < 0 for pair in pads for p in pair)

    def kept(x_shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """Constant mode: the part of x that stays (``src``) and where it lands in y
        (``dst``), cropping where padding is negative."""
        src: list[slice] = [slice(None)] * rank
        dst: list[slice] = [slice(None)] * rank
        for ax, (lo, hi) in zip(axes, pads):
            src[ax] = slice(max(-lo, 0), x_shape[ax] - max(-hi, 0))
            dst[ax] = slice(max(lo, 0), max(lo, 0) + src[ax].stop - src[ax].start)
        return tuple(src), tuple(dst)

    def forward(x: Array) -> Array:
        if mode == "constant" and x.dtype.kind == "f" and abs(fill) < float("inf") and \
                abs(fill) > float(np.finfo(x.dtype).max):  # (torch refuses it too)
            raise ValueError(f"{name}: value={fill!r} is beyond {x.dtype}'s range, the "
                             f"input's; pass a value within it, or float('inf')")
        if not crops:  # np.pad returns a new array, even at zero widths
            kw: dict[str, Any] = {"constant_values": fill} if mode == "constant" else {}
            y: Array = np.pad(x, widths, _NP_MODE[mode], **kw)  # type: ignore[call-overload]
            return y
        out_shape = list(x.shape)
        for ax, (lo, hi) in zip(axes, pads):
            out_shape[ax] = x.shape[ax] + lo + hi
        src, dst = kept(x.shape)
        y = np.full(out_shape, fill, x.dtype)
        y[dst] = x[src]
        return y

    def backward(dy: Array, x_shape: tuple[int, ...]) -> Array:
        if mode == "constant":
            src, dst = kept(x_shape)
            dx = np.zeros(x_shape, dy.dtype)
            dx[src] = dy[dst]
            return dx
        dx = dy
        for ax, (lo, hi) in reversed(tuple(zip(axes, pads))):
            if lo or hi:
                dx = _adjoint(mode, dx, ax, x_shape[ax], lo, hi)
        return dy.copy() if dx is dy else dx

    return linear_map(name, init, check, forward, backward)


def Pad2D(padding: Any, mode: str = "constant", value: float = 0.0) -> Layer:
    """Padding of H and W, torch's ``F.pad(x, (left, right, top, bottom), mode, value)``
    in NHWC: ``(N, H, W, C) -> (N, top + H + bottom, left + W + right, C)``; no params.

    forward: ``y[n, p, q, c] = x[n, src_H(p), src_W(q), c]`` (the value where constant mode
    has no source; sources by mode in the module docstring); vjp: ``dx[n, h, w, c] =
    Σ_{p, q: src(p, q) = (h, w)} dy[n, p, q, c]``, each padded strip added back onto its
    sources.

    Args:
      padding: an int (all four sides), a pair ``(ph, pw)`` (``ph`` rows at top and bottom,
        ``pw`` columns left and right), or ``((top, bottom), (left, right))``; torch's
        4-tuple ``(left, right, top, bottom)`` is ``((top, bottom), (left, right))`` here.
        Negative entries crop (``'constant'`` mode only).
      mode: ``'constant'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
      value: the fill of ``'constant'`` mode (torch refuses a non-zero value in the others).
    Integer inputs are padded as float32.
    """
    name = call_name("Pad2D", (padding,), mode=(mode, "constant"), value=(value, 0.0))
    return _layer(name, "NHWC", _pads(name, padding, 2), mode, value)


def Pad1D(padding: Any, mode: str = "constant", value: float = 0.0) -> Layer:
    """Padding of L, torch's ``F.pad(x, (left, right), mode, value)`` in NLC:
    ``(N, L, C) -> (N, left + L + right, C)``; no params.

    forward: ``y[n, p, c] = x[n, src(p), c]`` (the value where constant mode has no
    source); vjp: ``dx[n, l, c] = Σ_{p: src(p) = l} dy[n, p, c]``.

    Args:
      padding: an int (both ends) or a pair ``(left, right)``, torch's order; negative
        entries crop (``'constant'`` mode only).
      mode: ``'constant'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
      value: the fill of ``'constant'`` mode.
    Integer inputs are padded as float32.
    """
    name = call_name("Pad1D", (padding,), mode=(mode, "constant"), value=(value, 0.0))
    return _layer(name, "NLC", _pads(name, padding, 1), mode, value)
