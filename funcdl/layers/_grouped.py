"""Grouped convolution (``groups = G > 1``) for conv.py: the argument, its errors, and the
products. Input channels ``C`` and outputs ``out`` split into ``G`` groups, output channel
``o`` reading only the ``Cg = C / G`` inputs of its group ``g = o // Og`` (``Og = out / G``);
the kernel is ``(kh, kw, Cg, out)``, JAX's HWIO with ``feature_group_count``.

A grouped convolution is ``G`` ungrouped ones side by side, each with its own kernel. So the
input is laid out group-major once, ``(G·N, H, W, Cg)`` (``to_groups``): each group's
channels an NHWC batch of its own, which conv.py's ``pad``, ``im2col`` and ``fold`` take as
they are, with every copy and every sum moving whole rows of ``W·Cg`` values. The products
are then one batched matmul over a leading group axis, on contiguous operands:

- im2col: ``cols (G, M, K)``, ``K = kh·kw·Cg``, in the kernel's (kh, kw, Cg) order;
  ``y_g = cols_g w_g`` with the kernel ``(G, K, Og)``; ``dw_g = cols_gᵀ dy_g``.
- by offset (big buffers, conv.py's ``_COLS_BYTES``): per kernel offset ``k``, its slice of
  the padded input ``(G, M, Cg)`` times ``w_{k,g} (G, Cg, Og)``, summed.
- dx: per kernel offset, ``dy_g w_{k,g}ᵀ`` into one ``(G, M, Cg)`` buffer, which conv.py's
  ``fold`` adds back into the padded group-major input.

Outputs and cotangents cross between NHWC and group-major by one transposing copy each
(``y``, ``dy``, ``dx``: the size of an input or output, a ninth of ``cols`` for a 3 x 3
kernel). Strided BLAS views of NHWC arrays instead measured slower, up to 4x at Cg = Og = 1:
BLAS then reads and writes rows of ``Og`` values ``out`` apart.

With one input channel per group (``Cg = 1``: depthwise, ``Og`` the channel multiplier)
those products have ``K = kh·kw`` and ``Og`` columns, and most of the time went into the
group-major im2col (rows of kh·kw values, 36 bytes for 3 x 3; a probe's profile put 75% of
the forward there). Up to ``Og = 2`` (conv.py's ``_NHWC_OG``) or when the im2col buffer is
past its limit, conv.py runs that case in NHWC instead, on the padded input ``xr`` with each
channel repeated Og times (``repeat_into``: output channel ``o`` reads input ``o // Og``):

- forward ``y = Σ_k xr[sl_k] · w_k``, ``w_k = w[k, 0, :]`` (out,): per kernel offset one
  broadcast product into a buffer, added in place (``depthwise``);
- ``dw[k, 0, o] = Σ_{n,p,q} xr[sl_k][..., o] · dy[..., o]``: per offset one product, its
  rows summed by one matrix-vector product with ones (``depthwise_dw``);
- ``dx``: ``dy · w_k`` added into the padded NHWC buffer at ``out`` channels at offset k's
  pixels (``depthwise_fold``, as conv.py's fold), each group's Og channels summed
  (``merge``), cropped.

Each of the three goes over the output in cache-sized pieces (``_blocks``, ``_BLOCK``): all
kh·kw offsets on one piece, then the next.

One-off timings, one thread (OPENBLAS_NUM_THREADS=1; torch.set_num_threads(1)), float32,
min of 5 x 3 calls, a 2-core Xeon otherwise near idle (load average 0.5-0.8), group-major
before -> NHWC after (torch 2.13 CPU), over 3-4 runs: Conv2D(32, 3, padding=1, groups=32)
on (32, 28, 28, 32) apply 20-22 -> 6.6-8.2 ms (0.9-2.7), vjp + pullback 39-44 -> 24-28
(4.6-7.0); Conv2D(64, 3, groups=32), Og = 2: 25-30 -> 14-18 (11-13), 52-58 -> 44-53
(25-32); Conv1D(64, 7, groups=64) on (32, 256, 64): 7.6-8.5 -> 2.7-3.3 (0.6-0.7), 15-17 ->
7.9-9.1 (5.0-5.9). Cg > 1 and groups=1 unchanged within the noise (groups=8 on the first
input 12-16 / 34-37 ms before, 9-16 / 30-37 after; groups=1 6.5-6.7 / 26-31, 6.1-6.8 /
26-30). The rest of the gap to torch is NumPy's one pass over the output per operation: two
per kernel offset, in each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import int_arg
from funcdl.layers._sums import dot, ones, product, rows_sum

Array = NDArray[Any]
Slices = tuple[slice, slice, slice]
# repeat_into: up to this many channel repeats, one strided copy each; then one broadcast.
_FEW_REPEATS = 4
# _taps: a tap is tiled along a row up to this many values (256 KiB in float32) per offset.
# One-off, one thread, apply / vjp + pullback untiled against tiled: the depthwise 3 x 3 of
# the module docstring 10.9 / 37.2 against 7.8 / 33.0 ms, the Conv1D 4.1 / 10.8 against
# 2.7 / 8.5.
_TILE = 1 << 16
# The depthwise steps go over the output in pieces of about this many bytes (_blocks), so
# that the kh·kw products and sums of a piece find their operands in the L2 cache instead
# of streaming whole arrays from L3 once per offset. benchmarks/depthwise_ab.py, one
# thread, whole arrays against pieces (benchmarks/results/depthwise_ab.md, two runs): apply
# 1.12-1.88x, vjp + pullback 1.24-1.74x as fast over six cases (Conv2D 3 x 3 multipliers
# 1, 2 at 28 x 28, at 56 x 56, stride 2 at 112 x 112 (row pieces), Conv1D k = 7,
# ConvTranspose2D); with --block, pieces of 128 KiB gave 1.17-1.78x (worse on Conv1D and
# the stride-2 case), of 1 MiB 1.00-1.39x (the L2 holds 2 MiB).
_BLOCK = 1 << 18


# ---------------------------------------------------------------------------- arguments

def groups_arg(name: str, groups: Any, out: int) -> int:
    """``groups``, an int >= 1 dividing ``out`` (the input channels are checked at init)."""
    g = int_arg(groups, name, "groups", minimum=1)
    if out % g:
        raise ValueError(f"{name}: out ({out}) must be divisible by groups ({g}), each group "
                         f"giving out // groups output channels: make out a multiple of {g} "
                         f"or change groups")
    return g


def in_channels(name: str, shape: tuple[Any, ...], groups: int) -> int:
    """The channels (the last axis) of an init's in_shape: a known size > 0 that ``groups``
    divides, else a ValueError naming the layer."""
    c = shape[-1]
    if c is None or c == 0:
        raise ValueError(f"{name}: the channel axis of in_shape must be a known size > 0, "
                         f"got {shape}")
    if c % groups:
        raise ValueError(f"{name}: the input's {c} channels must be divisible by groups="
                         f"{groups} (each group reads C // groups of them), got in_shape "
                         f"{shape}: give it a multiple of {groups} channels or change groups")
    return int(c)


def layout_hint(x_shape: tuple[int, ...], ndim: int, c: int) -> str:
    """What an input of the wrong shape most likely is, for a layer expecting rank ``ndim``
    with ``c`` channels last: torch's channels-first layout, or one example without its
    batch axis; else ``''``."""
    if len(x_shape) == ndim and x_shape[1] == c and x_shape[-1] != c:
        return ("; it looks channels-first (N, C, ...), torch's layout: funcdl's is "
                "channels-last, so pass np.moveaxis(x, 1, -1)")
    if len(x_shape) == ndim - 1 and x_shape and x_shape[-1] == c:
        return "; it looks like one example without its batch axis: pass x[None]"
    return ""


def channels_error(name: str, layout: str, w_shape: tuple[int, ...],
                   x_shape: tuple[int, ...], groups: int, rank_hint: str = "") -> ValueError:
    """An input of the wrong rank, or whose channels are not the kernel's in-channels times
    ``groups``; ``rank_hint``, the layer's own word on an input of another rank, replaces
    ``layout_hint``'s (Conv3D's on a rank-4 input, which says the same and more)."""
    c = w_shape[-2] * groups
    hint = rank_hint or layout_hint(x_shape, len(w_shape), c)
    if groups == 1:
        return ValueError(f"{name}: expected input {layout}{c}) as the params were "
                          f"initialised, got shape {x_shape}{hint}")
    got = x_shape[-1] if len(x_shape) == len(w_shape) and not hint else None  # channels
    if got is not None and got % groups:
        hint = f"; its {got} channels are not divisible by groups={groups}"
    elif got is not None and got == w_shape[-2]:  # the group's share: input, or kernel?
        hint = (f"; give it {c} channels, or, if params['w'] is your own ungrouped kernel "
                f"for {got}, a grouped kernel has C // groups in-channels: "
                f"{(*w_shape[:-2], got // groups, w_shape[-1])} for this input, as init "
                f"gives it")
    return ValueError(f"{name}: expected input {layout}{c}) as the params were initialised "
                      f"(groups={groups} times the {w_shape[-2]} in-channels of params['w'] "
                      f"{w_shape}), got shape {x_shape}{hint}")


# ---------------------------------------------------------------------------- products

def to_groups(x: Array, groups: int) -> Array:
    """``(N, H, W, C)`` as ``(G·N, H, W, Cg)``: group ``g``'s channels, batch ``g·N + n``
    (a copy)."""
    n, h, w, c = x.shape
    xg = np.empty((groups, n, h, w, c // groups), x.dtype)
    np.copyto(xg, x.reshape(n, h, w, groups, c // groups).transpose(3, 0, 1, 2, 4))
    return xg.reshape(groups * n, h, w, c // groups)


def from_groups(a: Array, groups: int) -> Array:
    """The inverse of ``to_groups``, for any ``(G·N, ..., Cg)``: ``(N, ..., G·Cg)``."""
    gn, *rest, cg = a.shape
    n = gn // groups
    out = np.empty((n, *rest, groups, cg), a.dtype)
    np.copyto(out, np.moveaxis(a.reshape(groups, n, *rest, cg), 0, -2))
    return out.reshape(n, *rest, groups * cg)


def kernel(w: Array, groups: int) -> Array:
    """The kernel ``(kh, kw, Cg, out)`` as ``(G, kh·kw·Cg, Og)`` (a view)."""
    view: Array = w.reshape(-1, groups, w.shape[-1] // groups).transpose(1, 0, 2)
    return view


def _per_offset(w: Array, groups: int) -> Array:
    """The kernel ``(kh, kw, Cg, out)`` as ``(kh·kw, G, Cg, Og)`` (a view)."""
    cg, out = w.shape[-2], w.shape[-1]
    view: Array = w.reshape(-1, cg, groups, out // groups).transpose(0, 2, 1, 3)
    return view


def to_nhwc(yg: Array) -> Array:
    """``(G, M, Og)``, per group, as ``(M, G·Og)`` (a copy)."""
    g, m, og = yg.shape
    out: Array = from_groups(yg.reshape(g * m, og), g)
    return out


def by_group(a2: Array, groups: int) -> Array:
    """``(M, G·n)`` as ``(G, M, n)`` (a copy, contiguous for BLAS)."""
    m, c = a2.shape
    out: Array = to_groups(a2.reshape(m, 1, 1, c), groups)
    return out.reshape(groups, m, c // groups)


def forward_cols(cols: Array, w: Array, groups: int) -> Array:
    """``y (M, out)`` from _im2col.im2col of the group-major input, ``(G·M, K)``:
    ``y_g = cols_g w_g``, one batched product."""
    cols = cols.reshape(groups, -1, cols.shape[1])
    yg: Array = product(np.matmul, cols, kernel(w, groups))
    return to_nhwc(yg)


def _slice(xg: Array, sl: Slices, groups: int) -> Array:
    """One kernel offset's slice of the padded group-major input as ``(G, M, Cg)`` (a
    copy: the slice is strided over pixels, which no BLAS operand can be)."""
    return np.ascontiguousarray(xg[sl]).reshape(groups, -1, xg.shape[3])


def forward_offsets(xg: Array, slices: Sequence[Slices], w: Array, groups: int) -> Array:
    """``y (M, out)`` one kernel offset at a time, ``y_g = Σ_k xs_{k,g} w_{k,g}`` with
    ``xs_k`` the offset's slice of the padded input: no buffer of kh·kw slices."""
    wk = _per_offset(w, groups)
    yg: Array | None = None
    for k, sl in enumerate(slices):
        part = product(np.matmul, _slice(xg, sl, groups), wk[k])
        yg = part if yg is None else np.add(yg, part, out=yg)
    assert yg is not None
    return to_nhwc(yg)


def dw_cols(cols: Array, dy_g: Array, w_shape: tuple[int, ...]) -> Array:
    """``dw (kh, kw, Cg, out)``, ``dw_g = cols_gᵀ dy_g``: one batched product."""
    groups = len(dy_g)
    dw_g = product(np.matmul, cols.reshape(groups, -1, cols.shape[1]).transpose(0, 2, 1), dy_g)
    return np.ascontiguousarray(dw_g.transpose(1, 0, 2)).reshape(w_shape)


def dw_offsets(xg: Array, slices: Sequence[Slices], dy_g: Array,
               w_shape: tuple[int, ...]) -> Array:
    """``dw`` one kernel offset at a time: ``dw_{k,g} = xs_{k,g}ᵀ dy_g``."""
    groups = len(dy_g)
    dw = np.empty((len(slices), groups, w_shape[-2], dy_g.shape[2]),
                  np.result_type(xg, dy_g))
    for k, sl in enumerate(slices):
        product(np.matmul, _slice(xg, sl, groups).transpose(0, 2, 1), dy_g, out=dw[k])
    return np.ascontiguousarray(dw.transpose(0, 2, 1, 3)).reshape(w_shape)


def dx_parts(dy_g: Array, w: Array, shape: tuple[int, int, int, int]
             ) -> Callable[[int, int, int], Array]:
    """For _im2col.fold: kernel offset ``k``'s share of the group-major ``dx``,
    ``dy_g w_{k,g}ᵀ``, as a ``(G·N, OH, OW, Cg)`` array; one buffer serves every offset, as
    fold adds each part before asking for the next."""
    groups = len(dy_g)
    wkt = _per_offset(w, groups).transpose(0, 1, 3, 2)  # (kh·kw, G, Og, Cg)
    part = np.empty((groups, dy_g.shape[1], w.shape[-2]), np.result_type(dy_g, w))

    def at(k: int, i: int, j: int) -> Array:
        del i, j
        if wkt.shape[2] == 1:  # Og = 1 (depthwise): a broadcast product, 4x a matmul's speed
            np.multiply(dy_g, wkt[k], out=part)
        else:
            product(np.matmul, dy_g, wkt[k], out=part)
        return part.reshape(shape)

    return at


# ---------------------------------------------------------------------------- Cg = 1

def repeat_into(dst: Array, x: Array, og: int) -> None:
    """``dst (..., C·Og) = np.repeat(x, og, -1)`` for ``x (..., C)``: output channel ``o``
    reads input channel ``o // Og``, as grouping with ``Cg = 1`` does. Up to 4 copies, one
    per ``r < Og`` into every Og-th channel (no loop over pixels); more repeats by one
    broadcast. One-off, (32, 28, 28, 32) float32: Og = 2 0.9 ms against np.repeat's 2.6
    (np.repeat moves one value at a time); (32, 28, 28, 8) Og = 16: 1.3 ms, loop 9.4."""
    if og <= _FEW_REPEATS:
        for r in range(og):
            dst[..., r::og] = x
    else:
        np.copyto(dst.reshape(*x.shape, og), x[..., None])


def _taps(w: Array, width: int) -> Array:
    """The kernel ``(kh, kw, 1, out)`` as one operand per offset, broadcast against
    ``(N, OH, width, out)``: ``(width, out)``, each tap tiled along the row, when that is
    small (``_TILE``), else ``(out,)``. NumPy then merges the row and channel axes of every
    operand (a slice at stride 1, dy, the buffers) into one inner loop of ``width·out``
    values instead of ``out``."""
    wk = w.reshape(-1, w.shape[-1])
    if width == 1 or width * wk.shape[1] > _TILE:
        return wk
    tiled: Array = np.repeat(wk[:, None, :], width, axis=1)
    return tiled


def _blocks(out_shape: tuple[int, ...], itemsize: int) -> list[tuple[slice, int, int]]:
    """``(batch span, first row, end row)`` of an output ``(N, OH, OW, out)`` in pieces of
    about ``_BLOCK`` bytes: whole examples while one fits, else runs of one example's rows
    (a row past ``_BLOCK`` is a piece of its own).
    Each piece is still one vectorised step per kernel offset; the pieces only keep the
    step's operands in the cache between the offsets."""
    n, oh, row = out_shape[0], out_shape[1], math.prod(out_shape[2:]) * itemsize
    if oh * row <= _BLOCK:
        b = max(1, _BLOCK // max(oh * row, 1))
        return [(slice(s, s + b), 0, oh) for s in range(0, n, b)]
    r = max(1, _BLOCK // max(row, 1))
    return [(slice(e, e + 1), r0, min(r0 + r, oh)) for e in range(n) for r0 in range(0, oh, r)]


def _pieces(a: Array, dtype: Any) -> Iterator[tuple[slice, int, int, Array]]:
    """``_blocks``' pieces of ``a`` (an output or its cotangent, ``(N, OH, OW, out)``):
    ``(batch span, first row, end row, scratch)``, the scratch a buffer of ``dtype`` in the
    shape of ``a[span, r0:r1]``, the same memory for every piece."""
    pieces = _blocks(a.shape, np.dtype(dtype).itemsize)
    scratch = np.empty(a[pieces[0][0], pieces[0][1]:pieces[0][2]].size if pieces else 0,
                       dtype)
    for span, r0, r1 in pieces:
        shape = a[span, r0:r1].shape
        yield span, r0, r1, scratch[:math.prod(shape)].reshape(shape)


def _piece(sl: Slices, span: slice, r0: int, r1: int) -> Slices:
    """Offset slice ``sl`` (its rows ``a, a + s, ...``, one per output row) narrowed to the
    examples ``span`` and the output rows ``r0 <= p < r1``."""
    rows = sl[1]
    a, s = rows.start or 0, rows.step or 1
    return span, slice(a + r0 * s, a + (r1 - 1) * s + 1, s), sl[2]


def depthwise(xr: Array, slices: Sequence[Slices], w: Array) -> Array:
    """``y (N, OH, OW, out) = Σ_k xr[sl_k] · w[k, 0, :]`` for ``Cg = 1``, with ``xr`` the
    padded NHWC input, channels repeated (``repeat_into``): per offset one broadcast product
    into a buffer, added in place, a cache-sized piece (``_pieces``) at a time."""
    shape = xr[slices[0]].shape
    wk = _taps(w, shape[2])
    y = np.empty(shape, np.result_type(xr, w))
    for span, r0, r1, part in _pieces(y, y.dtype):
        ys = y[span, r0:r1]
        for k, sl in enumerate(slices):
            np.multiply(xr[_piece(sl, span, r0, r1)], wk[k], out=part if k else ys)
            if k:
                np.add(ys, part, out=ys)
    return y


def depthwise_dw(xr: Array, slices: Sequence[Slices], dy: Array,
                 w_shape: tuple[int, ...]) -> Array:
    """``dw[k, 0, o] = Σ_{n,p,q} xr[sl_k][n,p,q,o] · dy[n,p,q,o]`` (``dy (N, OH, OW, out)``):
    per offset and piece (``_pieces``) one product, its rows summed by one matrix-vector
    product with ones (BLAS: NumPy's sum over leading axes adds one row at a time, see
    _sums.block_sum); the pieces' sums then added by ``_sums.rows_sum``."""
    out, dt = dy.shape[-1], np.result_type(xr, dy)
    sums = []
    for span, r0, r1, prod in _pieces(dy, dt):
        d, rows = dy[span, r0:r1], prod.reshape(-1, out)
        one, piece = ones(len(rows), dt), np.empty((len(slices), out), dt)
        for k, sl in enumerate(slices):
            np.multiply(xr[_piece(sl, span, r0, r1)], d, out=prod)
            product(dot, one, rows, out=piece[k])  # (a gemv: see _sums.product)
        sums.append(piece)
    if not sums:  # an empty batch
        return np.zeros(w_shape, dt)
    dw: Array = sums[0] if len(sums) == 1 else rows_sum(np.stack(sums).reshape(len(sums), -1))
    return dw.reshape(w_shape)


def depthwise_fold(buf: Array, slices: Sequence[Slices], dy: Array, w: Array) -> Array:
    """The adjoint of ``depthwise`` reading ``buf``: ``buf[sl_k] += dy · w[k, 0, :]`` for every
    offset ``k`` (overlapping windows sum; ``dy (N, OH, OW, out)``, ``buf`` the padded
    input's shape at ``out`` channels), a cache-sized piece (``_pieces``) at a time, as
    conv.py's ``fold``. Returns ``buf``."""
    wk = _taps(w, dy.shape[2])
    for span, r0, r1, part in _pieces(dy, buf.dtype):
        d = dy[span, r0:r1]
        for k, sl in enumerate(slices):
            np.multiply(d, wk[k], out=part)
            view = buf[_piece(sl, span, r0, r1)]
            np.add(view, part, out=view)
    return buf


def merge(a: Array, og: int) -> Array:
    """Contiguous ``(..., C·Og)`` summed over each run of ``Og`` channels, ``(..., C)``: the
    adjoint of ``repeat_into``, one matrix-vector product (``a.reshape(..., C, Og).sum(-1)``
    took 12 ms against 0.7 at (32, 30, 30, 64), Og = 2, one-off: a reduction loop per value)."""
    if og == 1:
        return a
    out: Array = product(dot, a.reshape(-1, og), ones(og, a.dtype)).reshape(
        *a.shape[:-1], a.shape[-1] // og)
    return out
