"""Adan (Xie et al. 2022) with optax's arguments and state: ``scale_by_adan`` (Nesterov
momentum estimated from gradient differences) and the ``adan`` alias. The gradient
differences weigh ``b2`` (0.92) in ``n`` and in the step, as in the paper's Algorithm 1 and
its authors' code; optax 0.2.8 weighs them ``1 - b2`` (0.08), which an open optax pull
request (#1715) would correct. Notation as in ``_transforms``: ``g`` the incoming grads,
``u`` the outgoing step, ``t`` the updates already applied. ``update`` refuses grads that
are not real floating point and returns inf and NaN steps for inf and NaN gradients
silently, as optax does."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._alias import Stages, append_weight_decay, make_alias
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    leafwise,
    like,
    next_count,
    owned,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_float, check_float_params, check_lr, decay_arg
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["ScaleByAdanState", "adan", "scale_by_adan"]

Tree = Any


class ScaleByAdanState(NamedTuple):
    """optax's fields ``m, v, n, g``; its step counter ``t`` is funcdl's ``count``."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    m: Tree  # running mean of g
    v: Tree  # running mean of the gradient differences g - g_prev
    n: Tree  # running mean of (g + b2·(g - g_prev))²
    g: Tree  # the previous update's gradient


def scale_by_adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
                  eps_root: float = 0.0) -> GradientTransformation:
    """Xie et al. 2022, Algorithm 1, with optax's arguments: with ``Δ = g - g_prev`` (0 at
    the first update), ``m = b1·m + (1-b1)·g``; ``v = b2·v + (1-b2)·Δ``;
    ``n = b3·n + (1-b3)·(g + b2·Δ)²``; ``u = (m̂ + b2·v̂) / (sqrt(n̂ + eps_root) + eps)``,
    each hat the bias-corrected ``x / (1 - b^(t+1))``. The paper's β is ``1 - b`` here
    (it weighs the new value by β), so its ``(1 - β2)·Δ`` is ``b2·Δ``, as in its authors'
    code; optax 0.2.8 takes ``(1 - b2)·Δ`` in both places, and equals this at b2 = 0.5.
    ``b1, b2, b3`` in [0, 1). State ``ScaleByAdanState(count, m, v, n, g)``, optax's.
    """
    name = "scale_by_adan"
    b1 = check_float(name, "b1", b1, high=1.0, open_high=True)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    b3 = check_float(name, "b3", b3, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)

    def init(params: Tree) -> ScaleByAdanState:
        check_float_params(f"{name}.init", params, eps)
        z = tree.zeros_like
        return ScaleByAdanState(zero_count(), z(params), z(params), z(params), z(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdanState]:
        del params
        count = state_count(name, state, ScaleByAdanState)
        t = count + 1
        bc1, bc2, bc3 = 1.0 - b1**t, 1.0 - b2**t, 1.0 - b3**t

        def leaf(g: Any, m: Any, v: Any, n: Any, prev: Any) -> tuple[Any, ...]:
            real_grad(g)
            delta = g - prev if count else 0.0  # not (g - prev)·0: inf·0 is NaN
            m_new = like(b1 * m + (1.0 - b1) * g, m)
            v_new = like(b2 * v + (1.0 - b2) * delta, v)
            s = g + b2 * delta
            n_new = like(b3 * n + (1.0 - b3) * (s * s), n)
            u = (m_new / bc1 + b2 / bc2 * v_new) / (np.sqrt(n_new / bc3 + eps_root) + eps)
            return like(u, m), m_new, v_new, n_new, owned(g, prev)

        with np.errstate(all="ignore"):  # inf - inf and inf/inf: NaN, silently
            u, m, v, n, g = leafwise(
                f"{name}.update", leaf, (grads, state.m, state.v, state.n, state.g),
                ("grads", "state.m", "state.v", "state.n", "state.g"), n_out=5,
                elementwise=True)
        return u, ScaleByAdanState(next_count(count), m, v, n, g)

    return transform(name, init, update)


def adan(lr: ScalarOrSchedule, b1: float = 0.98, b2: float = 0.92, b3: float = 0.99,
         eps: float = 1e-8, eps_root: float = 1e-8, weight_decay: ScalarOrSchedule = 0.0,
         mask: Any = None) -> GradientTransformation:
    """Adan (Xie et al. 2022) with optax's ``adan`` arguments: ``p ← p - lr · ((m̂ + b2·v̂) /
    (sqrt(n̂ + eps_root) + eps) + wd·p)`` (see ``scale_by_adan`` for b2's weight, the
    paper's where optax's differs; note the alias's ``eps_root`` default, 1e-8, as
    optax's, where ``scale_by_adan``'s is 0). Decoupled weight decay as optax's (the
    authors' code divides by ``1 + lr·wd`` instead by default: the same to first order in
    ``lr·wd``), ``mask`` as ``adamw``'s.

    Stages: ``adan``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "adan"
    lr = check_lr(name, lr)
    b1, b2, b3 = (check_float(name, b, v, high=1.0, open_high=True)
                  for b, v in (("b1", b1), ("b2", b2), ("b3", b3)))
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    stages: Stages = [("adan", scale_by_adan(b1, b2, b3, eps, eps_root))]
    append_weight_decay(stages, decay_arg(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages, eps)
