"""AdEMAMix (Pagliardini et al. 2024) and its simplified form (Morwani et al. 2025), as
``optax.contrib``'s: Adam with a second, slow momentum added to the fast one."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._adaptive import corrected_root
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    leafwise,
    like,
    next_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._chain import make_chain
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_or_schedule,
    check_float_params,
    check_lr,
    moment_dtype_arg,
    value_at,
    zeros_in,
)
from funcdl.optim._transforms import decay_stage, scale_by_learning_rate

__all__ = [
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdemamixState",
    "ademamix",
    "scale_by_ademamix",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]

Tree = Any


class ScaleByAdemamixState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    # the slow momentum's count, which b3 and alpha schedules read: optax's field, always
    # equal to count (both start at 0 and step together), so update reads count alone
    count_m2: Count
    m1: Tree
    m2: Tree
    nu: Tree


class ScaleBySimplifiedAdemamixState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    m: Tree
    n: Tree


def scale_by_ademamix(b1: float = 0.9, b2: float = 0.999, b3: ScalarOrSchedule = 0.9999,
                      alpha: ScalarOrSchedule = 6.0, eps: float = 1e-8, eps_root: float = 0.0,
                      mu_dtype: Any = None) -> GradientTransformation:
    """optax.contrib's ``scale_by_ademamix``: ``m1 = b1·m1 + (1-b1)·g``, ``m2 = b3·m2 +
    (1-b3)·g``, ``v = b2·v + (1-b2)·g²``; ``u = (m1 / (1-b1^t) + alpha·m2) /
    (sqrt(v / (1-b2^t) + eps_root) + eps)``, ``t`` this update's step (1 at the first);
    ``b3`` and ``alpha`` may be schedules of the count. ``mu_dtype`` stores ``m1`` and
    ``m2`` in that float dtype (None: the params'), the update computed before they are
    stored, as ``scale_by_adam``'s (optax's init makes ``nu`` in it too, and its update
    then returns the three in the grads' dtype). State ``ScaleByAdemamixState``."""
    name = "scale_by_ademamix"
    b1, b2 = check_betas(name, b1, b2)
    b3 = check_float_or_schedule(name, "b3", b3, "b3")
    alpha = check_float_or_schedule(name, "alpha", alpha, "alpha")
    if not callable(b3) and b3 > 1.0:
        raise ValueError(f"{name}: b3 must be in [0, 1], got {b3}; pass e.g. 0.9999")
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)

    def init(params: Tree) -> ScaleByAdemamixState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAdemamixState(zero_count(), zero_count(), zeros_in(params, mu_dt),
                                    zeros_in(params, mu_dt), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAdemamixState]:
        del params
        count = state_count(name, state, ScaleByAdemamixState)
        c3, ca = value_at(name, "b3", b3, count), value_at(name, "alpha", alpha, count)
        t = count + 1
        bc1, inv_sqrt_bc2 = 1.0 - b1**t, 1.0 / math.sqrt(1.0 - b2**t)

        def leaf(g: Any, m1: Any, m2: Any, v: Any) -> tuple[Any, Any, Any, Any]:
            real_grad(g)
            # the moments in the step's dtype (v's), then stored (mu_dtype); torch's order
            m1_step = like(b1 * m1 + (1.0 - b1) * g, v)
            m2_step = like(c3 * m2 + (1.0 - c3) * g, v)
            v_new = like(b2 * v + (1.0 - b2) * g * g, v)
            root = np.sqrt(v_new * (1.0 / (1.0 - b2**t)) + eps_root) if eps_root else \
                corrected_root(v_new, inv_sqrt_bc2)
            return like((m1_step / bc1 + ca * m2_step) / (root + eps), v), \
                like(m1_step, m1), like(m2_step, m2), v_new

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            out, m1, m2, nu = leafwise(f"{name}.update", leaf,
                                       (grads, state.m1, state.m2, state.nu),
                                       ("grads", "state.m1", "state.m2", "state.nu"),
                                       n_out=4, elementwise=mu_dt is None)
        step = next_count(count)
        return out, ScaleByAdemamixState(step, step, m1, m2, nu)

    return transform(name, init, update)


def ademamix(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
             b3: ScalarOrSchedule = 0.9999, alpha: ScalarOrSchedule = 5.0, eps: float = 1e-8,
             eps_root: float = 0.0, mu_dtype: Any = None, weight_decay: ScalarOrSchedule = 0.0, *,
             mask: Any = None) -> GradientTransformation:
    """AdEMAMix, as optax.contrib's: ``p ← p - lr·(u + weight_decay·p)``, ``u``
    ``scale_by_ademamix``'s; ``mask`` (a tree of bools, or a function of the params) decays
    only where True, as ``adamw``'s; ``mu_dtype`` as ``scale_by_ademamix``'s; the arguments
    in optax's order. State ``ChainState`` of its three stages."""
    name = "ademamix"
    check_lr(name, learning_rate)  # here, so that the errors name ademamix
    moment_dtype_arg(name, "mu_dtype", mu_dtype)
    return make_chain(name, [scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
                             decay_stage(name, weight_decay, mask),
                             scale_by_learning_rate(learning_rate)])


def scale_by_simplified_ademamix(b1: float = 0.99, b2: float = 0.95,
                                 alpha: ScalarOrSchedule = 0.0, eps: float = 1e-8,
                                 eps_root: float = 0.0) -> GradientTransformation:
    """optax.contrib's ``scale_by_simplified_ademamix``: ``m = b1·m + g`` (an undamped
    sum), ``n = b2·n + (1-b2)·g²``; ``u = (m + alpha·g) / (sqrt(n / (1-b2^t) + eps_root) +
    eps)``; ``alpha`` may be a schedule of the count. State
    ``ScaleBySimplifiedAdemamixState(count, m, n)``."""
    name = "scale_by_simplified_ademamix"
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    alpha = check_float_or_schedule(name, "alpha", alpha, "alpha")
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)

    def init(params: Tree) -> ScaleBySimplifiedAdemamixState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleBySimplifiedAdemamixState(zero_count(), tree.zeros_like(params),
                                              tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleBySimplifiedAdemamixState]:
        del params
        count = state_count(name, state, ScaleBySimplifiedAdemamixState)
        ca = value_at(name, "alpha", alpha, count)
        inv_bc2 = 1.0 / (1.0 - b2 ** (count + 1))

        def leaf(g: Any, m: Any, n: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new = like(b1 * m + g, m)
            n_new = like(b2 * n + (1.0 - b2) * g * g, n)
            root = np.sqrt(n_new * inv_bc2 + eps_root) if eps_root else \
                corrected_root(n_new, math.sqrt(inv_bc2))
            return like((m_new + ca * g) / (root + eps), n), m_new, n_new

        with np.errstate(all="ignore"):
            out, m, n = leafwise(f"{name}.update", leaf, (grads, state.m, state.n),
                                 ("grads", "state.m", "state.n"), n_out=3, elementwise=True)
        return out, ScaleBySimplifiedAdemamixState(next_count(count), m, n)

    return transform(name, init, update)


def simplified_ademamix(learning_rate: ScalarOrSchedule, b1: float = 0.99, b2: float = 0.95,
                        alpha: ScalarOrSchedule = 0.0, eps: float = 1e-8,
                        eps_root: float = 0.0, weight_decay: ScalarOrSchedule = 0.0, *,
                        mask: Any = None) -> GradientTransformation:
    """Simplified AdEMAMix, as optax.contrib's: ``p ← p - lr·(u + weight_decay·p)``, ``u``
    ``scale_by_simplified_ademamix``'s; ``mask`` as ``ademamix``'s. State ``ChainState``
    of its three stages."""
    name = "simplified_ademamix"
    check_lr(name, learning_rate)
    return make_chain(name, [scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
                             decay_stage(name, weight_decay, mask),
                             scale_by_learning_rate(learning_rate)])
