"""MADGRAD (Defazio & Jelassi 2021), as ``optax.contrib``'s: ``scale_by_madgrad`` (a dual-averaged
step with a cube-root denominator and momentum) and the ``madgrad`` alias, with optax's
arguments in optax's order."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._alias import Stages, append_weight_decay, make_alias
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    leafwise,
    like,
    next_count,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_lr,
    decay_arg,
    needs_params,
    real_param,
    value_at,
)

__all__ = ["MadgradState", "madgrad", "scale_by_madgrad"]

Tree = Any


class MadgradState(NamedTuple):
    """optax's fields: the updates applied, the weighted sums of ``g²`` and of ``g``, and
    the params at ``init``."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    grad_sum_sq: Tree
    s: Tree
    x0: Tree


def scale_by_madgrad(learning_rate: ScalarOrSchedule, momentum: float = 0.9,
                     eps: float = 1e-6) -> GradientTransformation:
    """optax.contrib's ``scale_by_madgrad``, a dual-averaged step that already holds the
    learning rate. With ``t`` the updates already applied and ``λ = (lr + eps)·sqrt(t+1)``:
    ``G = G + λ·g²``; ``s = s + λ·g``; ``z = x0 - s / (cbrt(G) + eps)``; ``u = (1-m)·z +
    m·p - p`` (``m = momentum``, ``x0`` the params at ``init``). Needs params. State
    ``MadgradState(count, grad_sum_sq, s, x0)``."""
    name = "scale_by_madgrad"
    rate = check_lr(name, learning_rate)
    mom = check_float(name, "momentum", momentum, high=1.0)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> MadgradState:
        check_float_params(f"{name}.init", params, eps or None)
        zeros = tree.zeros_like
        # a copy: x0 must outlive params the caller may later change in place
        return MadgradState(zero_count(), zeros(params), zeros(params),
                            tree.map(np.array, params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MadgradState]:
        check_state(name, state, MadgradState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        lam = (value_at(name, "lr", rate, count) + eps) * math.sqrt(count + 1)

        def leaf(g: Any, p: Any, x0: Any, gsq: Any, s: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            p = real_param(p)
            gsq_new = like(gsq + lam * (g * g), gsq)
            s_new = like(s + lam * g, s)
            z = x0 - s_new / (np.cbrt(gsq_new) + eps)
            return like(((1.0 - mom) * z + mom * p) - p, s), gsq_new, s_new

        with np.errstate(all="ignore"):  # inf and NaN grads: inf and NaN steps, silently
            out, gsq, s = leafwise(
                f"{name}.update", leaf, (grads, params, state.x0, state.grad_sum_sq, state.s),
                ("grads", "params", "state.x0", "state.grad_sum_sq", "state.s"), n_out=3,
                elementwise=True)
        return out, MadgradState(next_count(count), gsq, s, state.x0)

    return transform(name, init, update)


def madgrad(learning_rate: ScalarOrSchedule, momentum: float = 0.9,
            weight_decay: ScalarOrSchedule = 0.0, eps: float = 1e-6) -> GradientTransformation:
    """MADGRAD, as optax.contrib's ``madgrad``: ``g ← g + wd·p`` (L2, before the step),
    then ``scale_by_madgrad``'s step, which holds ``lr`` (no lr stage follows).

    Stages: ``weight_decay`` (left out at 0), ``madgrad``.
    """
    name = "madgrad"
    rate = check_lr(name, learning_rate)
    mom = check_float(name, "momentum", momentum, high=1.0)
    eps = check_float(name, "eps", eps)
    stages: Stages = []
    append_weight_decay(stages, decay_arg(name, weight_decay))
    stages.append(("madgrad", scale_by_madgrad(rate, mom, eps)))
    return make_alias(name, stages)
