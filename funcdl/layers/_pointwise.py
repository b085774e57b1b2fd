"""``Pointwise``: an elementwise activation's map and vjp rule, which ``Sequential`` fuses
into the layer before it (see ``funcdl.layers.Layer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from numpy.typing import NDArray

Array = NDArray[Any]


class Pointwise(NamedTuple):
    """An elementwise map and its vjp rule: ``y = f(x)``, ``dx = df(x, y, dy)``.

    ``commutes_with_max``: ``f`` is non-decreasing and ``f' = 0`` wherever ``f`` maps two
    inputs to one value (ReLU; not LeakyReLU, whose ``a·x`` can round two inputs to one
    value where the slope is ``a``). Then ``max_i f(x_i) = f(max_i x_i)``, and routing
    ``dy`` through ``df`` at the maximum gives the same ``dx`` as routing it to the first
    maximum of ``f(x)``: either the same entry, or ``f' = 0`` there and ``dx`` is 0 (its
    sign may differ where windows overlap). NaN inputs too, when ``f`` keeps NaN where it
    was (ReLU's ``np.maximum`` does): MaxPool2D takes a window's last NaN as its maximum
    either way, and ``df`` passes ``dy`` there (torch's ReLU does).

    ``reads``: which of ``x`` and ``y`` ``df`` reads; it gets None for the other."""

    name: str
    f: Callable[[Array], Array]
    df: Callable[[Array, Array, Array], Array]
    commutes_with_max: bool = False
    reads: str = "xy"

    def residuals(self, x: Array, y: Array) -> tuple[Any, Any]:
        """What a pullback keeps for ``df``: ``x`` and ``y`` as ``reads`` says (``'x'``,
        ``'y'`` or ``'xy'``), None for the other, which ``df`` then gets: after a Dense, a
        ReLU's pullback keeping its input too would hold one more batch of activations."""
        return (x if "x" in self.reads else None), (y if "y" in self.reads else None)
