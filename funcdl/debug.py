"""Opt-in checks for non-finite values, scoped by a context manager (no global switch).

    with funcdl.debug.check_finite():
        loss, grads = value_and_grad(params, x, y)   # raises at the first NaN or inf

Inside the block, every ``Sequential`` checks each child's output after its forward and
its ``dx``/``dparams`` after its pullback, and ``value_and_grad`` checks the loss and its
gradient; the first non-finite value raises ``FloatingPointError`` naming the layer (its
place, e.g. ``Sequential[3] Dense(25)``) and the pass (forward or backward). Outside the
block the cost is one context-variable read per ``Sequential`` call. The flag lives in a
``contextvars.ContextVar``, so it is local to the thread (and asyncio task) that set it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from funcdl import tree

__all__ = ["check_finite", "enabled", "verify"]

_ON: ContextVar[bool] = ContextVar("funcdl_check_finite", default=False)


@contextmanager
def check_finite(enabled: bool = True) -> Iterator[None]:
    """Within the block, raise ``FloatingPointError`` at the first non-finite value."""
    token = _ON.set(enabled)
    try:
        yield
    finally:
        _ON.reset(token)


def enabled() -> bool:
    """Whether the checks are on in the current context."""
    return _ON.get()


def verify(where: str, what: str, value: Any) -> None:
    """Raise ``FloatingPointError`` if any floating leaf of ``value`` holds a NaN or inf."""
    for path, leaf in tree.leaves_with_path(value):
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = "NaN" if np.isnan(a).any() else "inf"
            raise FloatingPointError(f"{where}: {bad} in the {what}{path} "
                                     f"(shape {a.shape}); funcdl.debug.check_finite is on")
