"""Window arguments and geometry of the volumetric layers (``conv3d``, ``pool3d``) on
``(N, D, H, W, C)``: a 3-D window split into its depth axis and a 2-D plane, so that those
layers run the 2-D code (Conv2D, the 2-D and 1-D pools) on depth slices or views and keep
only the depth axis here. Each axis follows ``_windows``' rules ('SAME' as TF/JAX, explicit
pads, PyTorch's ``ceil_mode``), checked here, on the 5-D shape, so that the 2-D layers run
underneath never see a window that does not fit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from funcdl._args import axis_pads
from funcdl.layers._windows import Pads, _axis, int_tuple

__all__ = ["LAYOUT", "Volume", "depth_taps", "fit3", "geometry3", "rank_hint", "volume_arg"]

LAYOUT = "(N, D, H, W, C)"
Pair = tuple[int, int]


class Volume(NamedTuple):
    """A 3-D window: size, stride, dilation ``(d, h, w)``; padding 'SAME', 'VALID' or
    ``((front, back), (top, bottom), (left, right))``; ``ceil``: the pools' ``ceil_mode``."""

    size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | tuple[Pair, Pair, Pair]
    ceil: bool = False

    def depth_padding(self) -> str | Pair:
        """The depth axis's padding as a 1-D layer takes it: 'SAME', 'VALID' or a pair."""
        return self.padding if isinstance(self.padding, str) else self.padding[0]

    def plane(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """The (H, W) plane's size, stride and dilation, as pairs for a 2-D layer."""
        (_, kh, kw), (_, sh, sw), (_, dh, dw) = self.size, self.stride, self.dilation
        return (kh, kw), (sh, sw), (dh, dw)

    def plane_padding(self) -> str | Pads:
        """The (H, W) plane's padding as a 2-D layer takes it."""
        return self.padding if isinstance(self.padding, str) else self.padding[1:]

    def extent(self) -> tuple[int, ...]:
        """``(k - 1)·dilation + 1`` per axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.size, self.dilation))


def _padding(name: str, padding: Any) -> str | tuple[Pair, Pair, Pair]:
    if isinstance(padding, str) and padding.upper() in ("SAME", "VALID"):
        return padding.upper()
    pads = axis_pads(padding, 3)
    if pads is None:
        raise ValueError(f"{name}: padding must be 'SAME', 'VALID', an int >= 0, a triple "
                         f"(pd, ph, pw) or ((front, back), (top, bottom), (left, right)); "
                         f"got {padding!r}")
    return pads[0], pads[1], pads[2]


def volume_arg(name: str, what: str, size: Any, stride: Any, dilation: Any, padding: Any,
               ceil: bool = False) -> Volume:
    """A 3-D layer's window arguments, each an int or 3 ints ``(d, h, w)``, as a ``Volume``;
    TypeError / ValueError naming ``name`` for bad ones."""
    kernel, steps, spread = (int_tuple(name, w, v, 3) for w, v in
                             ((what, size), ("stride", stride), ("dilation", dilation)))
    return Volume(kernel, steps, spread, _padding(name, padding), ceil)


def fit3(name: str, vol: Volume, shape: tuple[int | None, ...], what: str
         ) -> tuple[tuple[int | None, ...], tuple[Pair, Pair, Pair]]:
    """Output sizes ``(OD, OH, OW)`` (None for unknown) and resolved pads of ``vol`` over an
    input ``shape`` ``(N, D, H, W, C)``; a ValueError naming both shapes when it does not
    fit."""
    axes = [_axis(n, k, s, d, vol.padding if isinstance(vol.padding, str) else vol.padding[a],
                  vol.ceil)
            for a, (n, k, s, d) in enumerate(zip(shape[1:4], vol.size, vol.stride,
                                                 vol.dilation))]
    if any(n is not None and n < ax[3] for n, ax in zip(shape[1:4], axes)):
        expected = "(N, " + ", ".join(f">={ax[3]}" for ax in axes) + ", C)"
        mode = ", ceil_mode=True" if vol.ceil else ""
        raise ValueError(f"{name}: the {what} (extent {vol.extent()}) does not fit the input "
                         f"with padding {vol.padding!r}{mode}: expected an input of shape "
                         f"{expected}, got shape {tuple(shape)}")
    (od, f, b, _), (oh, t, bo, _), (ow, le, r, _) = axes
    return (od, oh, ow), ((f, b), (t, bo), (le, r))


def geometry3(name: str, vol: Volume, shape: tuple[int, ...], what: str
              ) -> tuple[tuple[int, int, int], tuple[Pair, Pair, Pair]]:
    """``fit3`` for a concrete input shape: sizes are ints."""
    (od, oh, ow), pads = fit3(name, vol, shape, what)
    if od is None or oh is None or ow is None:  # pragma: no cover - fit3 raises first
        raise ValueError(f"{name}: cannot fit the {what} to shape {shape}")
    return (od, oh, ow), pads


def rank_hint(x_shape: tuple[Any, ...], flat: str) -> str:
    """For an input of rank 4 given to a 3-D layer: what it may be, and the 2-D layer
    ``flat`` that takes images."""
    if len(x_shape) != 4:
        return ""
    return (f"; a rank-4 input is an image batch (N, H, W, C), for {flat}, or one volume "
            f"without its batch axis (pass x[None])")


def depth_taps(vol: Volume, od: int, front: int, depth: int) -> list[tuple[int, int, int, slice]]:
    """For each depth offset ``a`` of the kernel that reads some real input: ``(a, o0, o1,
    sl)``, the outputs ``o0 <= o < o1`` whose input depth ``o·sd + a·dd - front`` is in
    ``[0, depth)`` and the input's depth slice ``sl`` they read, one input depth each (the
    padding is zeros: the other outputs get nothing from offset ``a``)."""
    k, s, d = vol.size[0], vol.stride[0], vol.dilation[0]
    taps = []
    for a in range(k):
        off = a * d - front
        o0 = min(od, max(0, -(off // s)))  # ceil(-off / s)
        o1 = max(o0, min(od, (depth - 1 - off) // s + 1))
        if o1 > o0:
            start = o0 * s + off
            taps.append((a, o0, o1, slice(start, start + (o1 - o0 - 1) * s + 1, s)))
    return taps
