"""Small checks every layer family shares, apart from ``base.py`` (which re-exports them):
an axis against a shape, a pair input's shapes, and a child's error placed in its parent."""

from __future__ import annotations

from typing import Any

from funcdl._args import reworded


def axis_in_range(name: str, axis: int, shape: tuple[Any, ...]) -> int:
    """``axis`` as an index in ``[0, len(shape))``, or the ValueError naming the layer
    ``name``, the shape and the valid range (a scalar has none: say so)."""
    rank = len(shape)
    if not -rank <= axis < rank:
        if not rank:
            raise ValueError(f"{name}: axis {axis} is out of range for a scalar input (shape "
                             f"()), which has no axis; pass an array of at least one axis")
        raise ValueError(f"{name}: axis {axis} is out of range for an input of shape "
                         f"{tuple(shape)}; use an axis in [{-rank}, {rank - 1}]")
    return axis % rank


def pair_of_shapes(in_shape: Any) -> bool:
    """True for two shapes, ``((...), (...))``: a pair input's ``in_shape``."""
    return (isinstance(in_shape, (tuple, list)) and len(in_shape) == 2
            and all(isinstance(s, (tuple, list)) for s in in_shape))


def located(where: str, child: str, err: Exception) -> Exception:
    """Re-raise a child's error prefixed with its place in the parent: ``Sequential[3] ...``.
    A child combinator's error, already placed by it (``Parallel[0] Dense(3): ...``, marked
    so by ``_PLACED``), is joined by `` > `` without the child's repr, which would repeat
    its whole subtree at every level: ``Sequential[0] > Parallel[0] Dense(3): ...``."""
    msg = str(err)
    if getattr(err, _PLACED, False) and not msg.startswith(child):
        joined = f"{where} > {msg}"
    else:
        joined = f"{where} {msg if msg.startswith(child) else f'{child}: {msg}'}"
    placed = reworded(err, joined)
    setattr(placed, _PLACED, True)
    return placed


# the attribute marking an error ``located`` made: its message starts with a place, not
# with the layer's own name (a user's layer may well start its message with a word)
_PLACED = "_funcdl_placed"
