"""``Stepper``: a layer's incremental form for decoding (``layers.decode``), held in the
Layer's optional ``step`` field; the steppers themselves are in ``_step``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Stepper(NamedTuple):
    """A layer's incremental form: ``start(layer, params, x, max_len, state) -> (y,
    cache)`` from an example of one position, and ``step(layer, params, cache, x, t,
    state) -> (y, cache)`` at position ``t``, a new cache returned (``_step``)."""

    start: Callable[..., tuple[Any, Any]]
    step: Callable[..., tuple[Any, Any]]
