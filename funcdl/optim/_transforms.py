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
from funcdl._args import F32, F64, bool_arg
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    Schedule,
    cast_like,
    check_state,
    empty_init,
    held,
    leafwise,
    like,
    next_count,
    real_grad,
    state_count,
    transform,
    with_in_place,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_schedule,
    needs_params,
    real_param,
    schedule_value,
)
from funcdl.optim._global_norm import global_norm, named_global_norm
from funcdl.optim._masked import make_masked

__all__ = [
    "ScaleByScheduleState",
    "TraceState",
    "add_decayed_weights",
    "clip",
    "clip_by_global_norm",
    "global_norm",
    "identity",
    "scale",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "set_to_zero",
    "trace",
]

Tree = Any


class ScaleByScheduleState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


class TraceState(NamedTuple):
    trace: Tree


def step_multiplier(step: float, in_place: bool = False) -> Callable[..., Any]:
    """``g -> step · g``. A float32 or float64 leaf is multiplied by ``step`` held as a 0-d
    array of its own dtype: the value NumPy's rule for a Python float gives (the float cast
    to the leaf's dtype), at two thirds of the per-call cost; other leaves by the float,
    once ``real_grad`` has let them through (float16, NumPy and Python floats).
    ``in_place``: such a leaf is written over (a fresh one: see ``with_in_place``)."""
    with np.errstate(over="ignore"):  # a step past float32's range is inf there, silently
        s32, s64 = np.array(step, F32), np.array(step, F64)

    def times(g: Any, p: Any = None) -> Any:
        if type(g) is np.ndarray:
            dt = g.dtype
            # `is`, the cheapest test, before == (an equal dtype of another object: unpickled)
            # in place but for a 0-d leaf, whose product is a NumPy scalar (a view kept)
            if dt is F32 or (dt is not F64 and dt == F32):
                return np.multiply(g, s32, g) if in_place and g.ndim else g * s32
            if dt is F64 or dt == F64:
                return np.multiply(g, s64, g) if in_place and g.ndim else g * s64
        real_grad(g)  # only off the fast path: the dtype tests above are the check
        return g * step

    return times


def multiply_grads(name: str, times: Callable[..., Any], grads: Tree, params: Tree,
                   quiet: bool = False) -> Tree:
    """``step · g`` (``times`` from ``step_multiplier``); when params are given, the same single
    pass also checks that grads match them, so even a stateless optimizer (plain sgd)
    rejects mismatched grads. ``quiet``: NumPy's warnings off, for a step that can turn a
    finite or infinite g into inf or NaN (``step_may_warn``)."""
    if quiet:
        with np.errstate(all="ignore"):
            return multiply_grads(name, times, grads, params)
    trees, names = ((grads,), ("grads",)) if params is None else ((grads, params),
                                                                   ("grads", "params"))
    return leafwise(f"{name}.update", times, trees, names)[0]


def step_may_warn(step: float) -> bool:
    """Whether ``step · g`` can warn: a step of 0 makes an infinite g NaN (inf·0, e.g. at
    count 0 of a warmup from 0), one above 1 can overflow. Such NaN and inf are returned as
    optax and PyTorch return them, silently; a step in (0, 1] needs no context manager."""
    return not 0.0 < abs(step) <= 1.0


def _scaled(name: str, step: float) -> GradientTransformation:
    quiet = step_may_warn(step)

    def made(times: Callable[..., Any]) -> Callable[..., Any]:
        def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
            if type(state) is not EmptyState:
                check_state(name, state, EmptyState)
            return multiply_grads(name, times, grads, params, quiet), state
        return update

    return with_in_place(transform(name, empty_init(), made(step_multiplier(step))),
                         made(step_multiplier(step, in_place=True)))


def _scheduled(name: str, schedule: Schedule, what: str,
               step: Callable[[float, Tree, Tree, bool], Tree],
               low: float = -math.inf, where: str = "") -> GradientTransformation:
    """A transform whose ``what`` is ``schedule(count)`` (a finite float ``>= low``, checked
    once per update, its errors naming ``where``, by default ``name.update``):
    ``step(value, grads, params, in_place)`` gives the updates (``in_place``: written into
    the grads, for the twin of ``with_in_place``); the state is
    ``ScaleByScheduleState(count)``."""
    where = where or f"{name}.update"
    schedule = check_schedule(name, what, schedule)

    def init(params: Tree) -> ScaleByScheduleState:
        del params
        return ScaleByScheduleState(zero_count())

    def made(in_place: bool) -> Callable[..., Any]:
        def update(state: Any, grads: Tree, params: Tree = None
                   ) -> tuple[Tree, ScaleByScheduleState]:
            count = state_count(name, state, ScaleByScheduleState)
            # A Python float, so float32 grads and params stay float32 (NEP 50).
            value = schedule_value(where, schedule, count, low)
            return (step(value, grads, params, in_place),
                    ScaleByScheduleState(next_count(count)))
        return update

    return with_in_place(transform(name, init, made(False)), made(True))


def _scaled_by_schedule(name: str, schedule: Schedule, what: str, sign: float = 1.0,
                        low: float = -math.inf, where: str = "") -> GradientTransformation:
    return _scheduled(name, schedule, what, lambda v, grads, params, in_place: multiply_grads(
        name, step_multiplier(sign * v, in_place), grads, params, step_may_warn(sign * v)),
        low, where)


# ---------------------------------------------------------------------------- stateless

def identity() -> GradientTransformation:
    """``u = g``."""
    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state("identity", state, EmptyState)
        return grads, state

    return transform("identity", empty_init(), update)


def _elementwise(name: str, fn: Callable[[Any], Any]) -> GradientTransformation:
    """A transform without state: ``u = fn(g)``, leaf by leaf, on real grads."""
    def leaf(g: Any) -> Any:
        real_grad(g)
        return fn(g)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        (out,) = leafwise(f"{name}.update", leaf, (grads,), ("grads",))
        return out, state

    return transform(name, empty_init(), update)


def set_to_zero() -> GradientTransformation:
    """``u = 0`` (optax's ``set_to_zero``). Under ``masked``, params that never move
    (PyTorch's ``requires_grad=False``), weight decay and momentum included:
    ``chain(adamw(1e-3), masked(set_to_zero(), frozen))``."""
    return _elementwise("set_to_zero", np.zeros_like)


def clip(max_delta: float) -> GradientTransformation:
    """``u = clip(g, -max_delta, max_delta)``, entry by entry (optax's ``clip``; PyTorch's
    ``clip_grad_value_``); ``max_delta=inf`` clips nothing."""
    limit = check_float("clip", "max_delta", max_delta, finite=False)

    def clipped(g: Any) -> Any:
        with np.errstate(over="ignore"):  # a bound past float32's range is inf there
            return np.clip(g, -limit, limit)  # a Python float: float32 stays float32

    return _elementwise("clip", clipped)


def scale(step_size: float) -> GradientTransformation:
    """``u = step_size · g`` (optax's ``scale``)."""
    return _scaled("scale", check_float("scale", "step_size", step_size, low=-math.inf))


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """``u = step_size_fn(t) · g``; state ``ScaleByScheduleState(count)``."""
    return _scaled_by_schedule("scale_by_schedule", step_size_fn, "step_size_fn")


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
                           ) -> GradientTransformation:
    """``u = -learning_rate · g`` (``+learning_rate · g`` when ``flip_sign=False``);
    ``learning_rate`` a float >= 0 or a schedule, read at every update (then the state is
    ``ScaleByScheduleState(count)``)."""
    name, what = "scale_by_learning_rate", "learning_rate"
    sign = -1.0 if bool_arg(flip_sign, name, "flip_sign") else 1.0
    if callable(learning_rate):  # the schedule gives the rate, >= 0; the sign is ours
        return _scaled_by_schedule(name, learning_rate, what, sign, 0.0, f"{name} ({what})")
    return _scaled(name, sign * check_float(name, what, learning_rate))


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0, mask: Any = None
                        ) -> GradientTransformation:
    """``u = g + wd · p``, ``wd`` being ``weight_decay``, or ``weight_decay(t)`` for a schedule
    (read at every update, as optax; then the state is ``ScaleByScheduleState(count)``, else
    ``EmptyState``). Needs ``params``. ``mask`` (a tree of bools, or a function of the
    params returning one): decay only where True, as optax; then the state is
    ``MaskedState`` around the one above (see ``masked``)."""
    name = "add_decayed_weights"
    if mask is not None:
        return make_masked(name, add_decayed_weights(weight_decay), mask)
    if not callable(weight_decay):
        wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)

        def made(in_place: bool) -> Callable[..., Any]:
            def update(state: Any, grads: Tree, params: Tree = None
                       ) -> tuple[Tree, EmptyState]:
                check_state(name, state, EmptyState)
                return _decayed(name, wd, grads, params, in_place), state
            return update

        return with_in_place(transform(name, empty_init(), made(False)), made(True))

    return _scheduled(name, weight_decay, "weight_decay",
                      lambda wd, grads, params, in_place: _decayed(name, wd, grads, params,
                                                                   in_place))


def decay_stage(name: str, weight_decay: ScalarOrSchedule, mask: Any = None,
                low: float = 0.0) -> GradientTransformation:
    """An alias's weight-decay stage: ``add_decayed_weights(weight_decay)``, masked by
    ``mask`` when given, the value (``>= low``) and the mask checked under the alias's
    ``name``."""
    if not callable(weight_decay):
        weight_decay = check_float(name, "weight_decay", weight_decay, low=low)
    decay = add_decayed_weights(weight_decay)
    return decay if mask is None else make_masked(name, decay, mask)


def _decayed(name: str, wd: float, grads: Tree, params: Tree, in_place: bool = False) -> Tree:
    """``g + wd·p``; ``in_place``: into ``g`` (fresh) where that keeps its dtype."""
    needs_params(name, params)

    def leaf(g: Any, p: Any) -> Any:
        real_grad(g)
        if type(p) is not np.ndarray:
            real_param(p)  # a np.matrix would make matrix steps, in float64
        if (in_place and type(g) is np.ndarray and g.ndim and type(p) is np.ndarray
                and g.dtype == p.dtype):
            g += wd * p  # the sum g + wd·p would make, in g's dtype, p's
            return g
        return g + wd * p

    # inf + -inf: a NaN step, silently, as every other transform's (inf params after an inf
    # gradient meet the next one here)
    with np.errstate(all="ignore"):
        return leafwise(f"{name}.update", leaf, (grads, params), ("grads", "params"))[0]


def clip_by_global_norm(max_norm: float, eps: float = 0.0) -> GradientTransformation:
    """``u = g · max_norm / (‖g‖ + eps)`` when that factor is below 1, else ``u = g``.

    ``eps=0`` is optax's ``clip_by_global_norm``; ``eps=1e-6`` is exactly PyTorch's
    ``torch.nn.utils.clip_grad_norm_`` (whose factor is ``max_norm / (‖g‖ + 1e-6)``, so it
    differs from optax's by up to ``1e-6 / ‖g‖`` relative).
    """
    name = "clip_by_global_norm"
    limit = check_float(name, "max_norm", max_norm, finite=False)
    pad = check_float(name, "eps", eps)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        norm = named_global_norm(f"{name}.update", grads, grads=True) + pad
        if norm <= limit:  # also a zero norm: nothing to scale, no 0/0
            return grads, state
        factor = limit / norm  # a NaN norm: every entry NaN, as optax's and torch's
        if norm == math.inf:  # factor 0: inf entries become NaN, silently, as in optax/torch
            with np.errstate(invalid="ignore"):
                return tree.map(lambda g: g * factor, grads), state
        return tree.map(lambda g: g * factor, grads), state

    return transform(name, empty_init(), update)


# ---------------------------------------------------------------------------- stateful

def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``m = g + decay · m``; ``u = g + decay · m`` if ``nesterov`` else ``u = m``.

    State ``TraceState(trace)``. With ``scale_by_learning_rate`` this is torch's SGD momentum
    with zero dampening.
    """
    name = "trace"
    d = check_float(name, "decay", decay)
    nest = bool_arg(nesterov, name, "nesterov")

    def init(params: Tree) -> TraceState:
        check_float_params(f"{name}.init", params)
        return TraceState(tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, TraceState]:
        del params
        check_state(name, state, TraceState)

        def leaf(g: Any, m: Any) -> tuple[Any, Any]:
            real_grad(g)
            m_new = like(g + d * m, m)
            if not nest:
                return held(m_new), m_new
            # g + d·m_new, summed into d·m_new so that it keeps the state's dtype (float64
            # grads on float32 params give float32 steps, as without nesterov).
            u = m_new * d
            try:
                return np.add(u, g, u), m_new
            except TypeError:  # u a NumPy scalar (a 0-d state)
                return cast_like(u + g, u), m_new

        # inf and NaN gradients give inf and NaN steps, as in torch, without warnings
        # (inf - inf in the trace): one context manager per update, not per leaf.
        with np.errstate(all="ignore"):
            out, new_trace = leafwise(f"{name}.update", leaf, (grads, state.trace),
                                      ("grads", "state.trace"), n_out=2)
        return out, TraceState(new_trace)

    return transform(name, init, update)
