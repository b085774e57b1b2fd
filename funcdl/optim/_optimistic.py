"""Optimistic gradient methods (Daskalakis et al. 2017), as optax's: the transform
``scale_by_optimistic_gradient`` (the step extrapolated from the last two gradients) and the
aliases ``optimistic_gradient_descent``, ``optimistic_adam`` and ``optimistic_adam_v2``, as
named chains with optax's update formulas. Each alias takes ``lr`` first (DESIGN.md's name for
optax's ``learning_rate``), then optax's arguments in optax's order; its arguments are checked
here, so that their errors name it."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._alias import make_alias
from funcdl.optim._base import (
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    leafwise,
    like,
    owned,
    real_grad,
    transform,
)
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_params,
    check_lr,
    moment_dtype_arg,
)
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["ScaleByOptimisticGradientState", "optimistic_adam", "optimistic_adam_v2",
           "optimistic_gradient_descent", "scale_by_optimistic_gradient"]

Tree = Any


class ScaleByOptimisticGradientState(NamedTuple):
    is_initial_step: Any  # a NumPy bool: True until the first update
    previous_gradient: Tree  # the last update's incoming g


def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0
                                 ) -> GradientTransformation:
    """optax's ``scale_by_optimistic_gradient`` (Daskalakis et al. 2017):
    ``u = (alpha + beta)·g - beta·g_prev``, ``g_prev`` the previous update's ``g`` (``g``
    itself at the first update, so ``u = alpha·g`` there). State
    ``ScaleByOptimisticGradientState(is_initial_step, previous_gradient)``."""
    name = "scale_by_optimistic_gradient"
    alpha = check_float(name, "alpha", alpha)
    beta = check_float(name, "beta", beta)

    def init(params: Tree) -> ScaleByOptimisticGradientState:
        check_float_params(f"{name}.init", params)
        return ScaleByOptimisticGradientState(np.bool_(True), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByOptimisticGradientState]:
        del params
        check_state(name, state, ScaleByOptimisticGradientState)
        flag = state.is_initial_step
        if not isinstance(flag, (bool, np.bool_, np.ndarray)) or np.shape(flag) != () \
                or np.asarray(flag).dtype.kind != "b":
            raise TypeError(f"{name}.update: the state's is_initial_step must be a bool, "
                            f"got {flag!r:.60} ({type(flag).__name__}); pass the state made "
                            f"by this optimizer's init")
        first = bool(flag)

        def leaf(g: Any, prev: Any) -> tuple[Any, Any]:
            real_grad(g)
            g = owned(g, prev)  # in the state's (the params') dtype
            last = g if first else prev
            return like((alpha + beta) * g - beta * last, prev), g

        with np.errstate(all="ignore"):
            u, prev = leafwise(f"{name}.update", leaf, (grads, state.previous_gradient),
                               ("grads", "state.previous_gradient"), n_out=2,
                               elementwise=True)
        return u, ScaleByOptimisticGradientState(np.bool_(False), prev)

    return transform(name, init, update)


def optimistic_gradient_descent(lr: ScalarOrSchedule, alpha: float = 1.0, beta: float = 1.0
                                ) -> GradientTransformation:
    """Optimistic gradient descent, as optax's: ``p ← p - lr·((alpha + beta)·g -
    beta·g_prev)`` (``g_prev = g`` at the first update; see
    ``scale_by_optimistic_gradient``).

    Stages: ``optimistic``, ``lr``.
    """
    name = "optimistic_gradient_descent"
    lr = check_lr(name, lr)
    a, b = check_float(name, "alpha", alpha), check_float(name, "beta", beta)
    return make_alias(name, [("optimistic", scale_by_optimistic_gradient(a, b)),
                             ("lr", scale_by_learning_rate(lr))])


def _adam_stage(name: str, b1: Any, b2: Any, eps: Any, eps_root: Any, mu_dtype: Any,
                nesterov: Any) -> tuple[GradientTransformation, float]:
    """``scale_by_adam`` with optax's arguments checked under ``name``, and its eps."""
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    root = check_float(name, "eps_root", eps_root)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)
    nest = bool_arg(nesterov, name, "nesterov")
    return scale_by_adam(b1, b2, eps, root, mu_dt, nesterov=nest), eps


def optimistic_adam(lr: float, optimism: float | None = None, b1: float = 0.9,
                    b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                    mu_dtype: Any = None, *, nesterov: bool = True) -> GradientTransformation:
    """Optimistic Adam, as optax's ``optimistic_adam`` (which optax deprecates for
    ``optimistic_adam_v2``): with ``r`` Adam's direction (Nesterov's by default),
    ``p ← p - ((lr + optimism)·r - optimism·r_prev)``, ``optimism = lr`` when None. ``lr``
    a float, as optax's (``optimistic_adam_v2`` takes a schedule).

    Stages: ``adam``, ``optimistic``, ``lr`` (1: the sign flip).
    """
    name = "optimistic_adam"
    if callable(lr):
        raise TypeError(f"{name}: lr must be a float (its optimism step takes no schedule, "
                        f"as optax's); optimistic_adam_v2 takes a schedule")
    rate = check_float(name, "lr", lr)
    opt = rate if optimism is None else check_float(name, "optimism", optimism)
    adam, eps = _adam_stage(name, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return make_alias(name, [("adam", adam),
                             ("optimistic", scale_by_optimistic_gradient(rate, opt)),
                             ("lr", scale_by_learning_rate(1.0))], eps)


def optimistic_adam_v2(lr: ScalarOrSchedule, *, alpha: float = 1.0, beta: float = 1.0,
                       b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                       eps_root: float = 0.0, mu_dtype: Any = None, nesterov: bool = True
                       ) -> GradientTransformation:
    """Optimistic Adam, as optax's ``optimistic_adam_v2``: with ``r`` Adam's direction
    (Nesterov's by default), ``p ← p - lr·((alpha + beta)·r - beta·r_prev)``.

    Stages: ``adam``, ``optimistic``, ``lr``.
    """
    name = "optimistic_adam_v2"
    lr = check_lr(name, lr)
    a, b = check_float(name, "alpha", alpha), check_float(name, "beta", beta)
    adam, eps = _adam_stage(name, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return make_alias(name, [("adam", adam),
                             ("optimistic", scale_by_optimistic_gradient(a, b)),
                             ("lr", scale_by_learning_rate(lr))], eps)
