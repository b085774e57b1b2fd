"""What the fusion tests (test_fusion*.py) share: a layer stripped of its fusion fields,
and a ReLU that records the shapes its map or its apply is given."""

from __future__ import annotations

from typing import Any

from funcdl import layers as L
from funcdl.layers.base import Layer, Pointwise


def opaque(layer: Layer) -> Layer:
    """``layer`` without its fusion fields: Sequential then runs it on its own."""
    return Layer(layer.init, layer.apply, layer.vjp, name=layer.name,
                 dx_optional=layer.dx_optional)


def relu_spy(seen: list[Any], on: str = "apply", commutes: bool = True) -> Layer:
    """A ReLU named Spy that appends to ``seen`` the shape its ``apply`` (``on="apply"``)
    or its pointwise map (``on="f"``) is given; ``commutes``: its Pointwise's flag."""
    relu = L.ReLU()
    pw = relu.pointwise
    assert pw is not None

    def f(x: Any) -> Any:
        seen.append(x.shape)
        return pw.f(x)

    def apply(params: Any, x: Any, **kw: Any) -> Any:
        seen.append(x.shape)
        return relu.apply(params, x, **kw)

    return Layer(relu.init, apply if on == "apply" else relu.apply, relu.vjp, name="Spy",
                 pointwise=Pointwise("Spy", f if on == "f" else pw.f, pw.df, commutes))
