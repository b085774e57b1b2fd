"""What the wrappers of one child layer share (Remat, WeightNorm, SpectralNorm, the reversed
twin of Bidirectional): calling the child with its errors placed, its pullback with or
without dx, and the fields a wrapper takes over from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from funcdl.layers._children import ERRORS
from funcdl.layers.base import Layer, located

__all__ = ["child_call", "like_child", "pulled", "relabelled"]


def child_call(where: str, child: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``, a child's error re-raised prefixed with the wrapper's place."""
    try:
        return fn(*args, **kw)
    except ERRORS as e:
        raise located(where, child, e) from e


def pulled(child_pb: Any, dy: Any, need_dx: bool, dx_optional: bool) -> tuple[Any, Any]:
    """The child's ``(dparams, dx)``, asking it to skip dx when nobody reads it (dx None
    then, whether or not the child can skip it)."""
    if not need_dx and dx_optional:
        out: tuple[Any, Any] = child_pb(dy, need_dx=False)
        return out
    dparams, dx = child_pb(dy)
    return dparams, (dx if need_dx else None)


def like_child(made: Layer, layer: Any) -> Layer:
    """``made`` with the child's ``dx_optional``, ``ids``, ``frozen_id`` and
    ``weight_out_axis`` (what value_and_grad, check_layer and SpectralNorm read), none of
    its fusion fields."""
    return dataclasses.replace(made, dx_optional=bool(getattr(layer, "dx_optional", False)),
                               ids=getattr(layer, "ids", None),
                               frozen_id=getattr(layer, "frozen_id", None),
                               weight_out_axis=getattr(layer, "weight_out_axis", -1))


def relabelled(name: str, e: Exception) -> Exception:
    """An inner error with a composite layer's name first (``TransformerEncoderLayer(8, 2):
    Sequential[2] ...``, ``Carry(...): ...``), the inner place kept: it says which child
    failed. ``located`` rebuilds it, so NumPy's errors that take no message survive."""
    return e if str(e).startswith(name) else located(f"{name}:", "", e)
