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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import int_arg

Array = NDArray[Any]
Slices = tuple[slice, slice, slice]


# ---------------------------------------------------------------------------- arguments

def groups_arg(name: str, groups: Any, out: int) -> int:
    """``groups``, an int >= 1 dividing ``out`` (the input channels are checked at init)."""
    g = int_arg(groups, name, "groups", minimum=1)
    if out % g:
        raise ValueError(f"{name}: out ({out}) must be divisible by groups ({g}), each group "
                         f"giving out // groups output channels: make out a multiple of {g} "
                         f"or change groups")
    return g


def channels_error(name: str, layout: str, w_shape: tuple[int, ...],
                   x_shape: tuple[int, ...], groups: int) -> ValueError:
    """An input of the wrong rank, or whose channels are not the kernel's in-channels times
    ``groups``."""
    c = w_shape[-2] * groups
    if groups == 1:
        return ValueError(f"{name}: expected input {layout}{c}) as the params were "
                          f"initialised, got shape {x_shape}")
    got = x_shape[-1] if len(x_shape) == len(w_shape) else None  # the channels, if any
    hint = ""
    if got is not None and got % groups:
        hint = f"; its {got} channels are not divisible by groups={groups}"
    elif got == w_shape[-2]:  # an ungrouped layer's kernel
        hint = (f"; a grouped kernel is (kh, kw, C // groups, out), for this input "
                f"{(*w_shape[:-2], got // groups, w_shape[-1])}, as init gives it")
    return ValueError(f"{name}: expected input {layout}{c}) as the params were initialised "
                      f"(groups={groups} times the {w_shape[-2]} in-channels of params['w'] "
                      f"{w_shape}), got shape {x_shape}{hint}")


# ---------------------------------------------------------------------------- products

def to_groups(x: Array, groups: int) -> Array:
    """``(N, H, W, C)`` as ``(G·N, H, W, Cg)``: group ``g``'s channels, batch ``g·N + n``
    (a copy)."""
    n, h, w, c = x.shape
    xg = np.empty((groups, n, h, w, c // groups), x.dtype)
    np.copyto(xg, x.reshape(n, h, w, groups, -1).transpose(3, 0, 1, 2, 4))
    return xg.reshape(groups * n, h, w, -1)


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
    out: Array = to_groups(a2.reshape(len(a2), 1, 1, -1), groups)
    return out.reshape(groups, len(a2), -1)


def forward_cols(cols: Array, w: Array, groups: int) -> Array:
    """``y (M, out)`` from conv.im2col of the group-major input, ``(G·M, K)``:
    ``y_g = cols_g w_g``, one batched product."""
    cols = cols.reshape(groups, -1, cols.shape[1])
    yg: Array = np.matmul(cols, kernel(w, groups))
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
        part = np.matmul(_slice(xg, sl, groups), wk[k])
        yg = part if yg is None else np.add(yg, part, out=yg)
    assert yg is not None
    return to_nhwc(yg)


def dw_cols(cols: Array, dy_g: Array, w_shape: tuple[int, ...]) -> Array:
    """``dw (kh, kw, Cg, out)``, ``dw_g = cols_gᵀ dy_g``: one batched product."""
    groups = len(dy_g)
    dw_g = np.matmul(cols.reshape(groups, -1, cols.shape[1]).transpose(0, 2, 1), dy_g)
    return np.ascontiguousarray(dw_g.transpose(1, 0, 2)).reshape(w_shape)


def dw_offsets(xg: Array, slices: Sequence[Slices], dy_g: Array,
               w_shape: tuple[int, ...]) -> Array:
    """``dw`` one kernel offset at a time: ``dw_{k,g} = xs_{k,g}ᵀ dy_g``."""
    groups = len(dy_g)
    dw = np.empty((len(slices), groups, w_shape[-2], dy_g.shape[2]),
                  np.result_type(xg, dy_g))
    for k, sl in enumerate(slices):
        np.matmul(_slice(xg, sl, groups).transpose(0, 2, 1), dy_g, out=dw[k])
    return np.ascontiguousarray(dw.transpose(0, 2, 1, 3)).reshape(w_shape)


def dx_parts(dy_g: Array, w: Array, shape: tuple[int, int, int, int]
             ) -> Callable[[int, int, int], Array]:
    """For conv.fold: kernel offset ``k``'s share of the group-major ``dx``,
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
            np.matmul(dy_g, wkt[k], out=part)
        return part.reshape(shape)

    return at
