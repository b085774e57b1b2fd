"""Schedules joined from pieces, as optax's: the one-cycle policy (linear and cosine), linear
warmup then a constant or exponential decay, SGDR's warm restarts, and
``piecewise_interpolate_schedule``. Conventions as in ``_schedules``: ``count`` is the number
of updates already applied, an array of counts gives an array of values, and the arguments
are checked when the schedule is made, errors naming it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from funcdl._args import bool_arg, choice_arg, real_arg
from funcdl.optim._base import Schedule
from funcdl.optim._checks import check_float, schedule_factory
from funcdl.optim._schedules import (
    check_boundaries,
    check_steps,
    check_value,
    exponential_decay,
    join_schedules,
    linear_schedule,
    over_counts,
    warmup_cosine_decay_schedule,
)

__all__ = ["cosine_onecycle_schedule", "linear_onecycle_schedule", "piecewise_interpolate_schedule",
           "sgdr_schedule", "warmup_constant_schedule", "warmup_exponential_decay_schedule"]


def _interpolated(name: str, cosine: bool, init: float,
                  boundaries_and_scales: list[tuple[int, float]],
                  fix: str = "pass a div_factor and final_div_factor that keep them finite"
                  ) -> Schedule:
    """optax's ``piecewise_interpolate_schedule``. Its boundaries are a dict, so of two
    pairs at one boundary only the later one's scale counts (the earlier one's is dropped,
    not multiplied in): with the distinct boundaries sorted, ``0 = b_0 <= b_1 < b_2 < ...``
    and their scales ``s_i``, ``v_0 = init`` and ``v_{i+1} = v_i·s_{i+1}``; from ``b_i`` to
    ``b_{i+1}`` the value goes from ``v_i`` to ``v_{i+1}``, linearly or along a half cosine,
    at ``pct = (t - b_i) / (b_{i+1} - b_i)``; a phase of length 0 (``b_1 = 0``) is never in
    force; from the last boundary on it is the last value, and before count 0 it is 0.
    ``fix`` ends the error for values that are not all finite."""
    scale_at = dict(boundaries_and_scales)  # a later pair at a boundary replaces the earlier
    bounds = [0, *sorted(scale_at)]
    values = [init]
    for b in bounds[1:]:
        values.append(values[-1] * scale_at[b])
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}: the value reached at a boundary is not finite (the values "
                         f"reached: {values}); {fix}")
    phases = list(zip(bounds, bounds[1:], values, values[1:]))

    @over_counts
    def schedule(count: int) -> float:
        for lo, hi, a, b in phases:  # two or three phases
            if lo <= count < hi:
                pct = (count - lo) / (hi - lo)
                if cosine:
                    return float(b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0))
                return float((b - a) * pct + a)
        return values[-1] if count >= bounds[-1] else 0.0  # 0 before count 0, as optax

    return schedule


def _onecycle_args(name: str, transition_steps: int, peak_value: float, pct_start: float,
                   div_factor: float, final_div_factor: float
                   ) -> tuple[int, float, float, float, float]:
    return (check_steps(name, "transition_steps", transition_steps, positive=True),
            check_value(name, "peak_value", peak_value),
            check_float(name, "pct_start", pct_start, high=1.0),
            real_arg(div_factor, name, "div_factor", low=0.0, open_low=True),
            real_arg(final_div_factor, name, "final_div_factor", low=0.0, open_low=True))


@schedule_factory
def linear_onecycle_schedule(transition_steps: int, peak_value: float, pct_start: float = 0.3,
                             pct_final: float = 0.85, div_factor: float = 25.0,
                             final_div_factor: float = 1e4) -> Schedule:
    """optax's: with ``T = transition_steps`` and ``v = peak_value / div_factor``, linear
    from ``v`` to ``peak_value`` over ``[0, ⌊pct_start·T⌋)``, back to ``v`` by
    ``⌊pct_final·T⌋``, then to ``v / final_div_factor`` at ``T``, and constant after.
    ``0 <= pct_start <= pct_final <= 1``; the factors are > 0. Where boundaries coincide,
    optax keeps only the later one's factor (see ``_interpolated``): with ``⌊pct_final·T⌋
    = T`` (``pct_final=1``) it rises to the peak, then falls to ``peak_value /
    final_div_factor`` at ``T``; with ``⌊pct_start·T⌋ = ⌊pct_final·T⌋ = p < T`` it falls
    from ``v`` to ``v / div_factor`` by ``p`` (from ``p = 0`` it starts there), then to
    ``v / (div_factor · final_div_factor)`` at ``T``; with all three at ``T``, from ``v``
    to ``v / final_div_factor``."""
    name = "linear_onecycle_schedule"
    steps, peak, start, div, final = _onecycle_args(name, transition_steps, peak_value,
                                                    pct_start, div_factor, final_div_factor)
    end = check_float(name, "pct_final", pct_final, high=1.0)
    if end < start:
        raise ValueError(f"{name}: pct_final (the end of the fall back to the initial value) "
                         f"must be >= pct_start={start}, got {end}")
    return _interpolated(name, False, peak / div, [(int(start * steps), div),
                                                   (int(end * steps), 1.0 / div),
                                                   (steps, 1.0 / final)])


@schedule_factory
def cosine_onecycle_schedule(transition_steps: int, peak_value: float, pct_start: float = 0.3,
                             div_factor: float = 25.0, final_div_factor: float = 1e4
                             ) -> Schedule:
    """optax's ``cosine_onecycle_schedule``: with ``T = transition_steps`` and ``v =
    peak_value / div_factor``, a half cosine from ``v`` up to ``peak_value`` over ``[0,
    ⌊pct_start·T⌋)``, then down to ``v / final_div_factor`` at ``T``, and constant after.
    ``0 <= pct_start <= 1``; the factors are > 0. With ``pct_start=1`` the two boundaries
    coincide at ``T`` and optax keeps only the final factor: one half cosine from ``v`` down
    to ``v / (div_factor · final_div_factor)`` over ``[0, T)``, never reaching the peak.

    Not PyTorch's ``OneCycleLR(anneal_strategy='cos')``, whose legs end at ``pct_start·T - 1``
    and ``T - 1``: torch peaks one update earlier and reaches ``v / final_div_factor`` at the
    last of its ``T`` updates (``T = 100``: at count 29 this gives 0.99737·peak, torch the
    peak; at 99, 5.07e-4·peak against torch's 4e-6·peak). torch's also cycles the momentum
    by default and has ``three_phase`` and ``anneal_strategy='linear'``:
    ``onecycle_lr_schedule`` and ``onecycle_momentum_schedule`` are torch's, value for
    value."""
    name = "cosine_onecycle_schedule"
    steps, peak, start, div, final = _onecycle_args(name, transition_steps, peak_value,
                                                    pct_start, div_factor, final_div_factor)
    return _interpolated(name, True, peak / div, [(int(start * steps), div),
                                                  (steps, 1.0 / (div * final))])


@schedule_factory
def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int
                             ) -> Schedule:
    """optax's: ``init + (peak - init) · min(max(t, 0), W) / W`` with ``W = warmup_steps``,
    a linear warmup to ``peak_value``, reached at ``W``, and held after. ``W`` is a positive
    int, as optax documents it: optax's schedule with ``W = 0`` stays at ``init_value``
    forever, never reaching the peak, and is refused here (``constant_schedule(peak)`` is
    a constant peak)."""
    name = "warmup_constant_schedule"
    warm = check_steps(name, "warmup_steps", warmup_steps, positive=True)
    init, peak = (check_value(name, "init_value", init_value),
                  check_value(name, "peak_value", peak_value))
    return linear_schedule(init, peak, warm)


@schedule_factory
def warmup_exponential_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                      transition_steps: int, decay_rate: float,
                                      transition_begin: int = 0, staircase: bool = False,
                                      end_value: float | None = None) -> Schedule:
    """optax's: linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``,
    then ``exponential_decay(peak_value, transition_steps, decay_rate, transition_begin,
    staircase, end_value)`` counted from the end of the warmup."""
    name = "warmup_exponential_decay_schedule"
    warm = check_steps(name, "warmup_steps", warmup_steps)
    steps = check_steps(name, "transition_steps", transition_steps)
    begin = check_steps(name, "transition_begin", transition_begin)
    init, peak = (check_value(name, "init_value", init_value),
                  check_value(name, "peak_value", peak_value))
    rate = check_value(name, "decay_rate", decay_rate)
    if not rate > 0.0:
        raise ValueError(f"{name}: decay_rate must be > 0, got {decay_rate!r}")
    stair = bool_arg(staircase, name, "staircase")
    end = None if end_value is None else check_value(name, "end_value", end_value)
    return join_schedules([linear_schedule(init, peak, warm),
                           exponential_decay(peak, steps, rate, begin, stair, end)], [warm])


@schedule_factory
def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    """optax's SGD with warm restarts: one ``warmup_cosine_decay_schedule(**kwargs)`` per
    entry of ``cosine_kwargs``, each lasting its ``decay_steps`` and starting from count 0
    again, e.g. ``[dict(init_value=0.0, peak_value=0.1, warmup_steps=10, decay_steps=100)]
    * 3``. The last one holds its end value after it."""
    name = "sgdr_schedule"
    try:
        cycles = list(cosine_kwargs)
    except TypeError:
        raise TypeError(f"{name}: cosine_kwargs must be a list of dicts of "
                        f"warmup_cosine_decay_schedule's arguments, got "
                        f"{type(cosine_kwargs).__name__}") from None
    if not cycles:
        raise ValueError(f"{name}: cosine_kwargs must hold at least one cycle (a dict of "
                         f"warmup_cosine_decay_schedule's arguments), got none")
    schedules, boundaries, step = [], [], 0
    for i, kw in enumerate(cycles):
        if not isinstance(kw, Mapping):
            raise TypeError(f"{name}: cosine_kwargs[{i}] must be a dict of "
                            f"warmup_cosine_decay_schedule's arguments, got "
                            f"{type(kw).__name__}")
        try:
            schedules.append(warmup_cosine_decay_schedule(**kw))
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: cosine_kwargs[{i}]: {e}") from None
        step += check_steps(name, f"cosine_kwargs[{i}]['decay_steps']", kw["decay_steps"])
        boundaries.append(step)
    return join_schedules(schedules, boundaries[:-1])


@schedule_factory
def piecewise_interpolate_schedule(interpolate_type: str, init_value: float,
                                   boundaries_and_scales: Mapping[int, float] | None = None
                                   ) -> Schedule:
    """optax's: with the boundaries sorted, ``0 = b_0 < b_1 < ...``, and their scales
    ``s_i``, the values ``v_0 = init_value``, ``v_{i+1} = v_i·s_{i+1}``; from ``b_i`` to
    ``b_{i+1}`` the schedule goes from ``v_i`` to ``v_{i+1}``, linearly or along a half
    cosine (``interpolate_type`` 'linear' or 'cosine'), at ``pct = (t - b_i) / (b_{i+1} -
    b_i)``; from the last boundary on it is the last value (``init_value`` with no
    boundaries), and before count 0 it is 0. E.g. ``('linear', 1.0, {4: 0.1, 8: 0.01})``
    gives 1, 0.55, 0.1, 0.0505, 0.001 at counts 0, 2, 4, 6, 8. A boundary at 0 sets the
    value from count 0. Boundaries are ints >= 0, scales finite and >= 0, and the values
    reached must be finite.
    """
    name = "piecewise_interpolate_schedule"
    choice_arg(interpolate_type, name, "interpolate_type", ("linear", "cosine"))
    v0 = check_value(name, "init_value", init_value)
    pairs = check_boundaries(name, boundaries_and_scales)
    return _interpolated(name, interpolate_type == "cosine", v0, pairs,
                         fix="pass smaller scales")
