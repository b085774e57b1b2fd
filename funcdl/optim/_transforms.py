"""Small gradient transforms, each a ``GradientTransformation`` with a named state.

In the formulas ``g`` is the incoming update (the gradient, for the first stage), ``p`` the
param, ``t`` the number of updates already applied (``count``), and ``u`` the outgoing update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    Schedule,
    check_float,
    check_state,
    leafwise,
    like,
    next_count,
    schedule_value,
    zero_count,
)

__all__ = [
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByScheduleState",
    "TraceState",
    "add_decayed_weights",
    "clip_by_global_norm",
    "global_norm",
    "identity",
    "scale",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_schedule",
    "trace",
]

Tree = Any


class ScaleByScheduleState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


class TraceState(NamedTuple):
    trace: Tree


class ScaleByAdamState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree
    nu: Tree


class ScaleByRmsState(NamedTuple):
    nu: Tree  # running mean of g² (torch: square_avg)
    mu: Tree  # running mean of g when centered (torch: grad_avg), else None


class ScaleByAdagradState(NamedTuple):
    sum_of_squares: Tree


def _init_empty(params: Tree) -> EmptyState:
    del params
    return EmptyState()


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _multiplier(step: float) -> Callable[..., Any]:
    """``g -> step · g``. A float32 or float64 leaf is multiplied by ``step`` held as a 0-d
    array of its own dtype: the value NumPy's rule for a Python float gives (the float cast
    to the leaf's dtype), at two thirds of the per-call cost; other leaves by the float."""
    s32, s64 = np.array(step, _F32), np.array(step, _F64)

    def times(g: Any, p: Any = None) -> Any:
        if type(g) is np.ndarray:
            if g.dtype is _F32:
                return g * s32
            if g.dtype is _F64:
                return g * s64
        return g * step

    return times


def _times(name: str, times: Callable[..., Any], grads: Tree, params: Tree) -> Tree:
    """``step · g`` (``times`` from ``_multiplier``); when params are given, the same single
    pass also checks that grads match them, so even a stateless optimizer (plain sgd)
    rejects mismatched grads."""
    if params is None:
        return tree.map(times, grads)
    return leafwise(f"{name}.update", times, (grads, params), ("grads", "params"))[0]


def _scaled(name: str, step: float) -> GradientTransformation:
    times = _multiplier(step)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        if type(state) is not EmptyState:
            check_state(name, state, EmptyState)
        return _times(name, times, grads, params), state

    return GradientTransformation(_init_empty, update)


def _scaled_by_schedule(name: str, schedule: Schedule) -> GradientTransformation:
    if not callable(schedule):
        raise TypeError(f"{name}: the schedule must be a callable count -> value, "
                        f"got {type(schedule).__name__}")

    def init(params: Tree) -> ScaleByScheduleState:
        del params
        return ScaleByScheduleState(zero_count())

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByScheduleState]:
        check_state(name, state, ScaleByScheduleState)
        # A Python float, so float32 grads stay float32 (NEP 50).
        step = schedule_value(f"{name}.update", schedule, int(state.count))
        return (_times(name, _multiplier(step), grads, params),
                ScaleByScheduleState(next_count(state.count)))

    return GradientTransformation(init, update)


# ---------------------------------------------------------------------------- stateless

def identity() -> GradientTransformation:
    """``u = g``."""
    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state("identity", state, EmptyState)
        return grads, state

    return GradientTransformation(_init_empty, update)


def scale(step: float) -> GradientTransformation:
    """``u = step · g``."""
    return _scaled("scale", check_float("scale", "step", step, low=-math.inf))


def scale_by_schedule(schedule: Schedule) -> GradientTransformation:
    """``u = schedule(t) · g``; state ``ScaleByScheduleState(count)``."""
    return _scaled_by_schedule("scale_by_schedule", schedule)


def scale_by_learning_rate(lr: ScalarOrSchedule, *, flip_sign: bool = True
                           ) -> GradientTransformation:
    """``u = -lr · g`` (``+lr · g`` when ``flip_sign=False``); ``lr`` a float or a schedule,
    read at every update (then the state is ``ScaleByScheduleState(count)``)."""
    name = "scale_by_learning_rate"
    sign = -1.0 if flip_sign else 1.0
    if callable(lr):
        schedule = lr
        return _scaled_by_schedule(
            name, lambda count: sign * schedule_value(f"{name} (lr)", schedule, count, 0.0))
    return _scaled(name, sign * check_float(name, "lr", lr))


def add_decayed_weights(weight_decay: float = 0.0) -> GradientTransformation:
    """``u = g + weight_decay · p``; needs ``params``."""
    name = "add_decayed_weights"
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        check_state(name, state, EmptyState)
        if params is None:
            raise ValueError(f"{name}.update: needs the params; call "
                             f"update(state, grads, params), got params=None")
        (out,) = leafwise(f"{name}.update", lambda g, p: g + wd * p, (grads, params),
                          ("grads", "params"))
        return out, state

    return GradientTransformation(_init_empty, update)


def global_norm(tree_: Tree) -> float:
    """``sqrt(Σ_leaves Σ x²)``, as a Python float."""
    return math.sqrt(sum(float(np.vdot(x, x).real) for x in tree.leaves(tree_)))


def clip_by_global_norm(max_norm: float, eps: float = 0.0) -> GradientTransformation:
    """``u = g · max_norm / (‖g‖ + eps)`` when that factor is below 1, else ``u = g``.

    ``eps=0`` is optax's ``clip_by_global_norm``; ``eps=1e-6`` is exactly PyTorch's
    ``torch.nn.utils.clip_grad_norm_`` (whose factor is ``max_norm / (‖g‖ + 1e-6)``, so it
    differs from optax's by up to ``1e-6 / ‖g‖`` relative).
    """
    name = "clip_by_global_norm"
    limit = check_float(name, "max_norm", max_norm)
    pad = check_float(name, "eps", eps)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        norm = global_norm(grads) + pad
        if not norm > limit:  # also a zero norm: nothing to scale, no 0/0
            return grads, state
        factor = limit / norm
        return tree.map(lambda g: g * factor, grads), state

    return GradientTransformation(_init_empty, update)


# ---------------------------------------------------------------------------- stateful

def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``m = g + decay · m``; ``u = g + decay · m`` if ``nesterov`` else ``u = m``.

    State ``TraceState(trace)``. With ``scale_by_learning_rate`` this is torch's SGD momentum
    with zero dampening.
    """
    name = "trace"
    d = check_float(name, "decay", decay)
    nest = bool(nesterov)

    def init(params: Tree) -> TraceState:
        return TraceState(tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, TraceState]:
        del params
        check_state(name, state, TraceState)

        def leaf(g: Any, m: Any) -> tuple[Any, Any]:
            m_new = like(g + d * m, m)
            return (g + d * m_new if nest else m_new), m_new

        out, new_trace = leafwise(f"{name}.update", leaf, (grads, state.trace),
                                  ("grads", "state.trace"), n_out=2)
        return out, TraceState(new_trace)

    return GradientTransformation(init, update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                  ) -> GradientTransformation:
    """Adam's direction, bias-corrected, ``eps`` outside the square root (as torch):
    ``m = b1·m + (1-b1)·g``; ``v = b2·v + (1-b2)·g²``;
    ``u = (m / (1-b1^(t+1))) / (sqrt(v / (1-b2^(t+1))) + eps)``.

    State ``ScaleByAdamState(count, mu, nu)``.
    """
    name = "scale_by_adam"
    b1 = check_float(name, "b1", b1, high=1.0, high_open=True)
    b2 = check_float(name, "b2", b2, high=1.0, high_open=True)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> ScaleByAdamState:
        return ScaleByAdamState(zero_count(), tree.zeros_like(params), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        del params
        check_state(name, state, ScaleByAdamState)
        t = int(state.count) + 1
        inv_bc1 = 1.0 / (1.0 - b1**t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - b2**t)

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            # In place on arrays made here only: 10 NumPy calls per leaf instead of 14.
            m_new = like(m * b1, m)
            m_new += (1.0 - b1) * g
            g2 = np.square(g)
            g2 *= 1.0 - b2
            v_new = like(v * b2, v)
            v_new += g2
            denom = np.sqrt(v_new)
            denom *= inv_sqrt_bc2
            denom += eps
            u = m_new * inv_bc1
            u /= denom
            return u, m_new, v_new

        # g² of a float32 gradient beyond ~1e19 overflows: v saturates at inf and the step
        # of that entry is 0 (documented), rather than a warning. Elementwise: a small
        # model's leaves go through these 12 NumPy calls once, end to end (see leafwise).
        with np.errstate(over="ignore"):
            out, mu, nu = leafwise(f"{name}.update", leaf, (grads, state.mu, state.nu),
                                   ("grads", "state.mu", "state.nu"), n_out=3, elementwise=True)
        return out, ScaleByAdamState(next_count(state.count), mu, nu)

    return GradientTransformation(init, update)


def scale_by_rms(alpha: float = 0.99, eps: float = 1e-8, centered: bool = False
                 ) -> GradientTransformation:
    """torch RMSprop's direction, ``eps`` outside the square root:
    ``v = α·v + (1-α)·g²``; ``u = g / (sqrt(v) + eps)``, or when ``centered``
    (``m = α·m + (1-α)·g``) ``u = g / (sqrt(v - m²) + eps)``.

    State ``ScaleByRmsState(nu, mu)``; ``mu`` is None unless ``centered``.
    """
    name = "scale_by_rms"
    a = check_float(name, "alpha", alpha)
    eps = check_float(name, "eps", eps)
    ctr = bool(centered)

    def init(params: Tree) -> ScaleByRmsState:
        return ScaleByRmsState(tree.zeros_like(params), tree.zeros_like(params) if ctr else None)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByRmsState]:
        del params
        check_state(name, state, ScaleByRmsState)

        if not ctr:
            def leaf(g: Any, v: Any) -> tuple[Any, Any]:
                v_new = like(a * v + (1.0 - a) * (g * g), v)
                return g / (np.sqrt(v_new) + eps), v_new

            out, nu = leafwise(f"{name}.update", leaf, (grads, state.nu),
                               ("grads", "state.nu"), n_out=2)
            return out, ScaleByRmsState(nu, None)

        def leaf_centered(g: Any, v: Any, m: Any) -> tuple[Any, Any, Any]:
            v_new = like(a * v + (1.0 - a) * (g * g), v)
            m_new = like(a * m + (1.0 - a) * g, m)
            # v - m² >= 0 in exact arithmetic; clamp the rounding so sqrt never sees -0.0001ulp.
            var = np.maximum(v_new - m_new * m_new, 0.0)
            return g / (np.sqrt(var) + eps), v_new, m_new

        out, nu, mu = leafwise(f"{name}.update", leaf_centered, (grads, state.nu, state.mu),
                               ("grads", "state.nu", "state.mu"), n_out=3)
        return out, ScaleByRmsState(nu, mu)

    return GradientTransformation(init, update)


def scale_by_adagrad(initial_accumulator_value: float = 0.0, eps: float = 1e-10
                     ) -> GradientTransformation:
    """torch Adagrad's direction: ``s = s + g²``; ``u = g / (sqrt(s) + eps)``, ``s`` starting
    at ``initial_accumulator_value``. State ``ScaleByAdagradState(sum_of_squares)``."""
    name = "scale_by_adagrad"
    init_acc = check_float(name, "initial_accumulator_value", initial_accumulator_value)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> ScaleByAdagradState:
        return ScaleByAdagradState(tree.map(lambda p: np.full_like(p, init_acc), params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAdagradState]:
        del params
        check_state(name, state, ScaleByAdagradState)

        def leaf(g: Any, s: Any) -> tuple[Any, Any]:
            s_new = like(s + g * g, s)
            return g / (np.sqrt(s_new) + eps), s_new

        out, sums = leafwise(f"{name}.update", leaf, (grads, state.sum_of_squares),
                             ("grads", "state.sum_of_squares"), n_out=2)
        return out, ScaleByAdagradState(sums)

    return GradientTransformation(init, update)
