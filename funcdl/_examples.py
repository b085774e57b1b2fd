"""``count``: the number of examples in a batch ``x``, as the layers read it; shared by
``autodiff.per_example_*`` and ``parallel``'s weighting, which each word their own error."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import tree


def count(x: Any) -> int | None:
    """The length of ``x``'s first leaf, axis 0; of ``x`` itself for a list of rows of
    numbers (or ids), which the layers read as a batch; None when there is no such axis."""
    first = tree.leaves(x)[:1]
    if type(x) is list and first and np.ndim(first[0]) == 0:
        return len(x)
    if not first or np.ndim(first[0]) == 0:
        return None
    return int(np.shape(first[0])[0])
