"""Schedule-free training (Defazio et al. 2024, "The Road Less Scheduled"), with
``optax.contrib.schedule_free``'s exact semantics.

Three sequences: ``z`` (the base optimizer's own iterates, kept in the state), ``x`` (their
weighted average: evaluate here) and ``y = (1-b1)·z + b1·x`` (take gradients here). During
training the params ARE ``y``; ``schedule_free_eval_params(state, params)`` recovers ``x``::

    opt = schedule_free_adamw(1e-3, warmup_steps=100)
    state = opt.init(params)
    loss, grads = loss_and_grad(params, x, y)          # gradients at y, the params
    updates, state = opt.update(state, grads, params)
    params = apply_updates(params, updates)
    eval_params = schedule_free_eval_params(state, params)   # x: evaluate these
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._adaptive import scale_by_rms
from funcdl.optim._alias import sgd
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    check_transforms,
    leafwise,
    next_count,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._chain import make_chain, staged
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_lr,
    float_dtypes,
    moment_dtype_arg,
    needs_params,
    real_param,
    value_at,
)
from funcdl.optim._keywords import check_extra, extra_keywords, show_keywords
from funcdl.optim._schedules import check_steps, constant_schedule, join_schedules, linear_schedule
from funcdl.optim._transforms import add_decayed_weights, scale_by_learning_rate

__all__ = [
    "ScheduleFreeState",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
]

Tree = Any


class ScheduleFreeState(NamedTuple):
    """``count``: updates applied (optax's ``step_count`` is ``count + 1``); ``b1``, and the
    running ``weight_sum`` and ``max_lr``, 0-d arrays in the params' narrowest float dtype;
    the base optimizer's state; ``z``, the base optimizer's iterates."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    b1: Any
    weight_sum: Any
    max_lr: Any
    base_optimizer_state: Any
    z: Tree


def schedule_free_eval_params(state: Any, params: Tree) -> Tree:
    """The params to evaluate at, ``x = (y - (1-b1)·z) / b1`` leaf-wise, from the training
    params ``y`` and a ``schedule_free`` state (its ``b1`` and ``z``)."""
    name = "schedule_free_eval_params"
    found = _schedule_free_states(state, "state")
    if len(found) != 1:
        where = (f"it holds {len(found)}, at {', '.join(p for p, _ in found)}: pass the one "
                 f"whose params these are" if found else "pass the state that "
                 "optimizer's init / update returned (or a chain's state holding it)")
        raise TypeError(f"{name}: state must be the ScheduleFreeState of a schedule_free "
                        f"optimizer (schedule_free, schedule_free_sgd, schedule_free_adamw), "
                        f"got {type(state).__name__}; {where}")
    state = found[0][1]  # inside a chain, inject_hyperparams or multi_steps: found there
    b1 = float(state.b1)

    def leaf(y: Any, z: Any) -> Any:
        y = real_param(y)
        return np.asarray((y - (1.0 - b1) * z) / b1, dtype=y.dtype)

    with np.errstate(all="ignore"):
        return leafwise(name, leaf, (params, state.z), ("params", "state.z"))[0]


def _schedule_free_states(state: Any, path: str) -> list[tuple[str, ScheduleFreeState]]:
    """Every ScheduleFreeState in ``state`` with its path: the state itself, or inside the
    tuples, named tuples and dicts of the wrappers' states (``states[1]``, ``inner_state``)."""
    if isinstance(state, ScheduleFreeState):
        return [(path, state)]
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        items: Any = ((f"{path}.{f}", v) for f, v in zip(state._fields, state))
    elif isinstance(state, (tuple, list)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(state))
    elif isinstance(state, dict):
        items = ((f"{path}[{k!r}]", v) for k, v in state.items())
    else:
        return []
    return [found for p, v in items for found in _schedule_free_states(v, p)]


def _check_wrapper(name: str, b1: Any, weight_lr_power: Any, state_dtype: Any
                   ) -> tuple[float, float, np.dtype[Any] | None]:
    """``schedule_free``'s own settings, checked under the name of the function called."""
    b1 = check_float(name, "b1", b1, high=1.0)
    if b1 == 0.0:
        raise ValueError(f"{name}: b1 must be in (0, 1] (x = (y - (1-b1)·z) / b1 divides by "
                         f"it), got 0.0; pass b1=0.9, the default")
    return (b1, check_float(name, "weight_lr_power", weight_lr_power),
            moment_dtype_arg(name, "state_dtype", state_dtype))


def schedule_free(base_optimizer: GradientTransformation, learning_rate: ScalarOrSchedule,
                  b1: float = 0.9, weight_lr_power: float = 2.0, state_dtype: Any = None
                  ) -> GradientTransformation:
    """optax.contrib's ``schedule_free``: ``base_optimizer`` (without momentum) steps ``z``;
    the params are ``y``.

    With ``t`` the updates already applied, ``lr = learning_rate(t + 1)`` (optax reads the
    schedule at its ``step_count``, one ahead of the base optimizer's own count),
    ``max_lr = max(max_lr, lr)``, ``w = max_lr^weight_lr_power``, ``weight_sum += w``,
    ``c = w / weight_sum`` (0 when that is 0/0). Then, leaf-wise, with ``u`` the base
    optimizer's update at the grads (taken at ``y``, which it gets as its params):
    ``z' = z + u``; ``x = (y - (1-b1)·z) / b1``; ``x' = (1-c)·x + c·z'``;
    ``y' = b1·x' + (1-b1)·z'``; the update is ``y' - y``. ``b1`` in (0, 1].

    ``state_dtype``: the float dtype of ``z`` (None: the params'). Keywords ``update`` gets
    (``value=``) go to the base optimizer. State ``ScheduleFreeState``.
    """
    name = "schedule_free"
    check_transforms(name, [base_optimizer], ["base_optimizer"])
    lr = check_lr(name, learning_rate)
    b1, power, z_dtype = _check_wrapper(name, b1, weight_lr_power, state_dtype)
    takes = (extra_keywords(base_optimizer.update),)

    def init(params: Tree) -> ScheduleFreeState:
        check_float_params(f"{name}.init", params)
        low = float_dtypes(params)[0]
        z = tree.map(lambda p: np.array(p, dtype=z_dtype or np.asarray(p).dtype), params)
        return ScheduleFreeState(zero_count(), np.asarray(b1, low), np.zeros((), low),
                                 np.zeros((), low), base_optimizer.init(params), z)

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, ScheduleFreeState]:
        where = f"{name}.update"
        check_state(name, state, ScheduleFreeState)
        needs_params(name, params)
        if extra:
            check_extra(name, extra, takes)
        count = read_count(where, state.count)
        low = np.asarray(state.max_lr).dtype
        rate = value_at(name, "learning_rate", lr, count + 1)
        with np.errstate(all="ignore"):  # as optax: inf and NaN weights, silently
            max_lr = np.maximum(state.max_lr, np.asarray(rate, low))
            weight = np.asarray(max_lr ** np.asarray(power, low), low)
            total = np.asarray(state.weight_sum + weight, low)
            if math.isnan(weight) or math.isnan(total):
                c = np.asarray(np.nan, low)
            else:  # 0/0 before any positive rate: no averaging yet
                c = np.nan_to_num(np.asarray(weight / total, low), nan=0.0, posinf=np.inf)
        u, base_state = staged(where, "base_optimizer", base_optimizer,
                               state.base_optimizer_state, grads, params, **extra)

        def leaf(y: Any, z: Any, d: Any) -> tuple[Any, Any]:
            real_grad(d)
            y = real_param(y)
            z_new = np.asarray(z + d, dtype=np.asarray(z).dtype)
            x = (y - (1.0 - b1) * z) / b1
            x = (1.0 - c) * x + c * z_new
            return np.asarray(b1 * x + (1.0 - b1) * z_new - y, dtype=y.dtype), z_new

        with np.errstate(all="ignore"):
            updates, z = leafwise(where, leaf, (params, state.z, u),
                                  ("params", "state.z", "updates"), n_out=2)
        return updates, ScheduleFreeState(next_count(count), state.b1, total, max_lr,
                                           base_state, z)

    return transform(name, init, show_keywords(update, takes))


def _warmup(name: str, learning_rate: Any, warmup_steps: Any) -> ScalarOrSchedule:
    """optax's ``warmup_constant_schedule(0, learning_rate, warmup_steps)``, or the rate."""
    lr = check_float(name, "learning_rate", learning_rate)
    if warmup_steps is None:
        return lr
    steps = check_steps(name, "warmup_steps", warmup_steps, positive=True)
    return join_schedules([linear_schedule(0.0, lr, steps), constant_schedule(lr)], [steps])


def schedule_free_sgd(learning_rate: float = 1.0, warmup_steps: int | None = None,
                      b1: float = 0.9, weight_decay: float | None = None,
                      weight_lr_power: float = 2.0, state_dtype: Any = None
                      ) -> GradientTransformation:
    """``schedule_free`` around plain SGD (``u = -lr·(g + wd·y)``), ``lr`` rising linearly
    from 0 over ``warmup_steps`` then constant (both the SGD step and the averaging weights
    read it), as optax.contrib's: with warmup the first update is 0, its rate 0."""
    name = "schedule_free_sgd"
    lr = _warmup(name, learning_rate, warmup_steps)
    _check_wrapper(name, b1, weight_lr_power, state_dtype)
    wd = 0.0 if weight_decay is None else check_float(name, "weight_decay", weight_decay)
    return schedule_free(sgd(lr, weight_decay=wd), lr, b1, weight_lr_power, state_dtype)


def schedule_free_adamw(learning_rate: float = 0.0025, warmup_steps: int | None = None,
                        b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                        weight_decay: float = 0.0, weight_lr_power: float = 2.0,
                        state_dtype: Any = None) -> GradientTransformation:
    """``schedule_free`` around AdamW without momentum, as optax.contrib's:
    ``v = b2·v + (1-b2)·g²``; ``u = -lr·(g / (sqrt(v / (1-b2^t)) + eps) + wd·y)``.
    Base state: ``ChainState`` of ``scale_by_rms``, ``add_decayed_weights``,
    ``scale_by_learning_rate``.

    Not the authors' ``AdamWScheduleFree`` to the digit in its first ~1/(1-b2) steps: they
    fold ``sqrt(1-b2^t)`` into the rate, ``γ_t = lr·sqrt(1-b2^t)``, which also weighs the
    average (``c_t ∝ γ_t²``: 0.18 at t = 10 where this, optax's, takes 0.10) and the weight
    decay, and add eps to ``sqrt(v)`` before that correction. The steps without weight
    decay are the same but for eps; the averaging weights meet as ``b2^t`` vanishes."""
    name = "schedule_free_adamw"
    lr = _warmup(name, learning_rate, warmup_steps)
    _check_wrapper(name, b1, weight_lr_power, state_dtype)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    wd = check_float(name, "weight_decay", weight_decay)
    base = make_chain(name, [scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
                             add_decayed_weights(wd), scale_by_learning_rate(lr)])
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)
