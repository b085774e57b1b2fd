"""torch SGD's dampened momentum, for ``sgd(..., dampening=)``: the first update takes the
gradient as it is, later ones weight it by ``1 - dampening``; a count tells them apart."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    leafwise,
    like,
    next_count,
    owned,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_float_params

__all__ = ["DampenedTraceState", "dampened_trace"]

Tree = Any


class DampenedTraceState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    trace: Tree


def dampened_trace(decay: float, dampening: float, name: str = "trace") -> GradientTransformation:
    """torch's SGD momentum buffer: ``m = g`` at the first update, then
    ``m = decay·m + (1 - dampening)·g``; ``u = m``. ``decay`` and ``dampening`` checked by
    the caller (``sgd``). State ``DampenedTraceState(count, trace)``."""
    keep = 1.0 - dampening

    def init(params: Tree) -> DampenedTraceState:
        check_float_params(f"{name}.init", params)
        return DampenedTraceState(zero_count(), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, DampenedTraceState]:
        del params
        count = state_count(name, state, DampenedTraceState)
        weight = keep if count else 1.0

        def leaf(g: Any, m: Any) -> tuple[Any, Any]:
            real_grad(g)
            m_new = like(decay * m + weight * g, m) if count else owned(g, m)
            return m_new, m_new

        with np.errstate(all="ignore"):  # inf and NaN steps, silently, as torch's
            out, new = leafwise(f"{name}.update", leaf, (grads, state.trace),
                                ("grads", "state.trace"), n_out=2, elementwise=True)
        return out, DampenedTraceState(next_count(count), new)

    return transform(name, init, update)
