"""ADOPT (Taniguchi et al. 2024), as ``optax.contrib``'s: ``scale_by_adopt`` and the ``adopt``
alias, with optax's semantics."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._adaptive import ScaleByAdamState, moments_pass
from funcdl.optim._base import (
    GradientTransformation,
    ScalarOrSchedule,
    held,
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
    check_float_params,
    check_lr,
    check_schedule,
    moment_dtype_arg,
    schedule_float,
    zeros_in,
)
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["adopt", "scale_by_adopt"]

Tree = Any


def _quarter_power(count: int) -> float:
    """ADOPT's default clip bound, ``count ** 0.25`` (0 at the first update)."""
    return math.pow(count, 0.25)


def scale_by_adopt(b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6,
                   mu_dtype: Any = None, *, nesterov: bool = False, use_clipping: bool = True,
                   clip_value_fn: Callable[[int], float] = _quarter_power
                   ) -> GradientTransformation:
    """optax.contrib's ``scale_by_adopt``. With ``t`` the updates already applied and ``v``
    the second moment BEFORE this update: ``n = g / max(sqrt(v), eps)``, clipped to
    ``±clip_value_fn(t)`` (``use_clipping``); ``m = b1·m + (1-b1)·n`` (``m`` unchanged at
    ``t = 0``); ``v = b2·v + (1-b2)·g²`` (``v = g²`` at ``t = 0``); ``u = m``, or
    ``b1·m + (1-b1)·n`` with ``nesterov``. The first update is 0 (``v`` is 0 and the clip
    bound 0^0.25 = 0). ``mu_dtype`` stores ``m`` in that float dtype (None: the params'),
    the update computed before it is stored, as optax's. State ``ScaleByAdamState(count,
    mu, nu)``, as optax's."""
    name = "scale_by_adopt"
    b1, b2 = check_betas(name, b1, b2, b2_high_open=False)
    eps = check_float(name, "eps", eps)
    nest = bool_arg(nesterov, name, "nesterov")
    clipping = bool_arg(use_clipping, name, "use_clipping")
    clip_fn = check_schedule(name, "clip_value_fn", clip_value_fn)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)

    def init(params: Tree) -> ScaleByAdamState:
        check_float_params(f"{name}.init", params)
        return ScaleByAdamState(zero_count(), zeros_in(params, mu_dt),
                                tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAdamState]:
        del params
        count = state_count(name, state, ScaleByAdamState)
        d1, d2 = (b1, b2) if count > 0 else (1.0, 0.0)
        bound = math.inf
        if clipping:
            bound = schedule_float(f"{name} (clip_value_fn)", clip_fn(count), count)
            if math.isnan(bound) or bound < 0:
                raise ValueError(f"{name}: clip_value_fn returned {bound} at count {count}; "
                                 f"a clip bound must be >= 0 (the default is count ** 0.25)")

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            n = g / np.maximum(np.sqrt(v), v.dtype.type(eps))
            if clipping:
                n = np.clip(n, -bound, bound)
            m_step = like(d1 * m + (1.0 - d1) * n, v)  # in the step's dtype, then stored
            m_new = like(m_step, m)
            # ((1-b2)·g)·g: float32 g·g overflows from |g| ~ 1.8e19, this only where v does
            v_new = like(d2 * v + (1.0 - d2) * g * g, v)
            u = (like(d1 * m_step + (1.0 - d1) * n, v) if nest else
                 held(m_new) if m_new is m_step else m_step)
            return u, m_new, v_new

        out, mu, nu = moments_pass(name, leaf, grads, state, elementwise=False)
        return out, ScaleByAdamState(next_count(count), mu, nu)

    return transform(name, init, update)


def adopt(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.9999,
          eps: float = 1e-6, mu_dtype: Any = None, *, nesterov: bool = False,
          use_clipping: bool = True,
          clip_value_fn: Callable[[int], float] = _quarter_power) -> GradientTransformation:
    """ADOPT, as optax.contrib's ``adopt``: ``p ← p - lr·u``, ``u`` ``scale_by_adopt``'s.
    State ``ChainState((ScaleByAdamState, ScaleByScheduleState or EmptyState), count)``."""
    name = "adopt"
    check_lr(name, learning_rate)  # here, so that the errors name adopt
    check_betas(name, b1, b2, b2_high_open=False)
    check_float(name, "eps", eps)
    moment_dtype_arg(name, "mu_dtype", mu_dtype)
    return make_chain(name, [scale_by_adopt(b1, b2, eps, mu_dtype, nesterov=nesterov,
                                            use_clipping=use_clipping,
                                            clip_value_fn=clip_value_fn),
                             scale_by_learning_rate(learning_rate)])
