"""optax's optimistic-gradient and Polyak transforms (``scale_by_optimistic_gradient``,
``scale_by_polyak``) and the aliases built on them and on ``_optax_extra3``'s transforms, as
named chains with optax's update formulas: ``fromage``, ``sm3``,
``optimistic_gradient_descent``, ``optimistic_adam``, ``optimistic_adam_v2`` and
``polyak_sgd``. Each alias takes ``lr`` first (DESIGN.md's name for optax's
``learning_rate``; ``polyak_sgd`` has none), then optax's arguments in optax's order; its
arguments are checked here, so that their errors name it."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, choice_arg
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._alias import _alias
from funcdl.optim._base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    empty_init,
    leafwise,
    like,
    owned,
    real_grad,
    transform,
)
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_or_schedule,
    check_float_params,
    check_lr,
    moment_dtype_arg,
    read_loss,
    schedule_value,
)
from funcdl.optim._more_transforms import scale_by_trust_ratio
from funcdl.optim._optax_extra3 import scale_by_sm3
from funcdl.optim._transforms import (
    _global_norm,
    _may_warn,
    _multiplier,
    _times,
    add_decayed_weights,
    scale_by_learning_rate,
)

__all__ = [
    "ScaleByOptimisticGradientState",
    "fromage",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "scale_by_optimistic_gradient",
    "scale_by_polyak",
    "sm3",
]

Tree = Any
# optax's bound on ‖g‖² + eps at or below which the Polyak step is 0: float64's epsilon
_TINY = float(np.finfo(np.float64).eps)


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


def polyak_args(name: str, f_min: Any, max_learning_rate: Any, eps: Any, variant: Any
                ) -> tuple[float, float, float, bool]:
    """``scale_by_polyak``'s arguments checked, their errors naming ``name``: ``(f_min,
    max_learning_rate, eps, plus)``, ``plus`` for the 'sps+' variant."""
    f_min = check_float(name, "f_min", f_min, low=-np.inf)
    top = check_float(name, "max_learning_rate", max_learning_rate)
    eps = check_float(name, "eps", eps)
    plus = choice_arg(variant, name, "variant", ("sps", "sps+")) == "sps+"
    return f_min, top, eps, plus


def scale_by_polyak(f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0,
                    variant: str = "sps") -> GradientTransformation:
    """optax's ``scale_by_polyak`` (Loizou et al. 2021): ``u = s·g`` with the Polyak step
    ``s = min((f - f_min) / (‖g‖² + eps), max_learning_rate)``, ``f`` the loss, ‖g‖ the
    global norm; ``s = 0`` where ``‖g‖² + eps`` is at most float64's epsilon. 'sps+' takes
    ``max(f - f_min, 0)``. ``update(state, grads, params, value=loss)`` (``chain`` forwards
    ``value=``). State ``EmptyState``."""
    name = "scale_by_polyak"
    f_min, top, eps, plus = polyak_args(name, f_min, max_learning_rate, eps, variant)

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None
               ) -> tuple[Tree, EmptyState]:
        where = f"{name}.update"
        check_state(name, state, EmptyState)
        if value is None:
            raise TypeError(f"{where}: needs the loss: call update(state, grads, params, "
                            f"value=loss) (chain(...).update forwards value= to it)")
        loss = read_loss(where, "value (the loss) must be a real number", value,
                         "pass the scalar loss, e.g. value=float(loss)")
        norm = _global_norm(where, grads, grads=True)
        sq = norm * norm  # not norm**2: a Python float power raises past float64's range
        gap = loss - f_min
        if plus and gap < 0.0:
            gap = 0.0
        den = sq + eps
        with np.errstate(all="ignore"):  # inf and NaN losses or grads: a NaN step, silently
            step = 0.0 if den <= _TINY else float(np.minimum(np.float64(gap) / den, top))
        return _times(name, _multiplier(step), grads, params, _may_warn(step)), state

    return transform(name, empty_init(), update)


# ---------------------------------------------------------------------------- aliases

def fromage(lr: ScalarOrSchedule, min_norm: float = 1e-6) -> GradientTransformation:
    """Fromage (Bernstein et al. 2020), as optax's ``fromage``: with ``c = 1 / sqrt(1 +
    lr²)``, per leaf ``p ← c·(p - lr·‖p‖/‖g‖·g)`` (see ``scale_by_trust_ratio``: each norm
    raised to ``min_norm``, and ``g`` itself where one is 0). ``lr`` a float or a schedule
    (then ``c`` follows it).

    Stages: ``trust_ratio``, ``lr`` (``c·lr``), ``weight_decay`` (``c - 1``, a shrinking).
    """
    name = "fromage"
    lr = check_lr(name, lr)
    low = check_float(name, "min_norm", min_norm)
    if callable(lr):
        schedule = lr

        def shrink(count: int) -> float:
            v = schedule_value(f"{name} (lr)", schedule, count, 0.0)
            return float(1 / (1 + v**2) ** 0.5)

        def rate(count: int) -> float:
            return shrink(count) * schedule_value(f"{name} (lr)", schedule, count, 0.0)

        def decay_at(count: int) -> float:
            return shrink(count) - 1

        step: ScalarOrSchedule = rate
        decay: ScalarOrSchedule = decay_at
    else:
        mult = 1 / (1 + lr**2) ** 0.5
        step, decay = lr * mult, mult - 1
    return _alias(name, [("trust_ratio", scale_by_trust_ratio(low)),
                         ("lr", scale_by_learning_rate(step)),
                         ("weight_decay", add_decayed_weights(decay))])


def sm3(lr: ScalarOrSchedule, momentum: float = 0.9) -> GradientTransformation:
    """SM3 (Anil et al. 2019), as optax's ``sm3``: ``p ← p - lr·m``, ``m`` the momentum of
    ``g / sqrt(a + eps)``, ``a`` SM3-II's per-axis accumulated g² (see ``scale_by_sm3``
    with ``b1 = momentum``). ``lr`` a float (optax's) or a schedule.

    Stages: ``sm3``, ``lr``.
    """
    name = "sm3"
    lr = check_lr(name, lr)
    b1 = check_float(name, "momentum", momentum, high=1.0)
    return _alias(name, [("sm3", scale_by_sm3(b1)), ("lr", scale_by_learning_rate(lr))])


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
    return _alias(name, [("optimistic", scale_by_optimistic_gradient(a, b)),
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
    return _alias(name, [("adam", adam),
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
    return _alias(name, [("adam", adam),
                         ("optimistic", scale_by_optimistic_gradient(a, b)),
                         ("lr", scale_by_learning_rate(lr))], eps)


def polyak_sgd(max_learning_rate: float = 1.0, scaling: ScalarOrSchedule = 1.0,
               f_min: float = 0.0, eps: float = 0.0, variant: str = "sps"
               ) -> GradientTransformation:
    """SGD with the Polyak step size (Loizou et al. 2021), as optax's ``polyak_sgd``: with
    ``d = -scaling·g``, ``p ← p + min((f - f_min) / (‖d‖² + eps), max_learning_rate)·d``
    (see ``scale_by_polyak``; ``scaling`` a float or a schedule).
    ``update(state, grads, params, value=loss)``.

    Stages: ``lr`` (``scaling``), ``polyak``.
    """
    name = "polyak_sgd"
    scale = check_float_or_schedule(name, "scaling", scaling, "scaling")
    f_min, top, eps, plus = polyak_args(name, f_min, max_learning_rate, eps, variant)
    polyak = scale_by_polyak(f_min, top, eps, "sps+" if plus else "sps")
    return _alias(name, [("lr", scale_by_learning_rate(scale)), ("polyak", polyak)])
