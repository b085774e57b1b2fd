"""Whether gradients are being taken per example (``autodiff.per_example_value_and_grad``)
and for how many examples. Here, below both autodiff and the layers, so that every
``value_and_grad`` sets them for its own call (a plain ``grad`` nested inside a per-example
one, as in a gradient penalty, sums as always) without ``import funcdl`` loading the
layers."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import numpy as np

from funcdl import tree

ON: ContextVar[bool] = ContextVar("funcdl_per_example", default=False)
SIZE: ContextVar[int] = ContextVar("funcdl_per_example_size", default=0)  # N while ON


def first_summed(params: Any, grads: Any, n: int) -> tuple[str, tuple[int, ...],
                                                           tuple[int, ...]] | None:
    """The first leaf of ``grads`` not shaped ``(n, *param.shape)`` as per-example
    gradients are: ``(its path, its shape, the param's shape)``; None when every one is."""
    for (path, g), p in zip(tree.leaves_with_path(grads), tree.leaves(params), strict=True):
        if np.shape(g) != (n, *np.shape(p)):
            return path, np.shape(g), np.shape(p)
    return None
