"""PyTorch's ``OneCycleLR`` as two funcdl schedules, the learning rate and the momentum (SGD's
``momentum``, Adam's ``b1``), so that a torch script ports exactly. ``count`` is the number
of updates already applied: the value at ``count`` is the one torch's optimizer uses at its
``(count+1)``-th step, after ``count`` calls of ``scheduler.step()``. optax's one-cycle
(``cosine_onecycle_schedule``) places its boundaries one update later; see there."""

from __future__ import annotations

import math
from typing import Any

from funcdl._args import bool_arg, choice_arg, real_arg
from funcdl.optim._base import Schedule
from funcdl.optim._checks import check_float, schedule_factory
from funcdl.optim._schedules import check_steps, over_counts

__all__ = ["onecycle_lr_schedule", "onecycle_momentum_schedule"]


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


def _anneal(name: str, strategy: Any) -> Any:
    cos = choice_arg(strategy, name, "anneal_strategy", ("cos", "linear")) == "cos"
    return _cos if cos else _linear


def _onecycle(name: str, total_steps: Any, pct_start: Any, anneal_strategy: Any,
              three_phase: Any, values: Any) -> Schedule:
    """torch's phases: they end at the (fractional) counts ``e_1 = pct_start·T - 1`` and
    ``T - 1``, or with ``three_phase`` at ``e_1``, ``e_2 = 2·pct_start·T - 2`` and ``T - 1``;
    count ``t`` lies in the first phase with ``t <= e_i`` (the last one if none), which
    starts at ``e_{i-1}`` (``e_0 = 0``) and goes from ``a_i`` to ``b_i`` (``values(three)``
    gives the pairs) at ``pct = (t - e_{i-1}) / (e_i - e_{i-1})``."""
    steps = check_steps(name, "total_steps", total_steps, positive=True)
    pct = check_float(name, "pct_start", pct_start, high=1.0)
    anneal = _anneal(name, anneal_strategy)
    three = bool_arg(three_phase, name, "three_phase")
    # torch's float arithmetic, so that a boundary such as 0.3·100 - 1 = 29.000000000000004
    # falls where torch's does
    rise = float(pct * steps) - 1
    if rise == 0.0:  # the rise would span [0, 0]: torch divides 0 by 0 at its first step
        raise ValueError(f"{name}: pct_start·total_steps must not be 1 (torch's OneCycleLR "
                         f"then divides 0 by 0 at its first step), got pct_start={pct} and "
                         f"total_steps={steps}; pass another pct_start")
    ends = [rise, float(2 * pct * steps) - 2, steps - 1] if three else [rise, steps - 1]
    phases = list(zip(ends, values(three), strict=True))
    last = steps - 1

    @over_counts
    def schedule(count: Any) -> float:
        # torch stops at T - 1: its lr at count T overshoots past the cycle's end (the
        # cosine's or line's continuation) and its next scheduler.step() raises; held here
        t = min(max(int(count), 0), last)
        start = 0.0
        for i, (end, (a, b)) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                return float(anneal(a, b, (t - start) / (end - start)))
            start = end
        raise AssertionError("unreachable: the last phase takes every count")

    return schedule


@schedule_factory
def onecycle_lr_schedule(total_steps: int, max_lr: float, pct_start: float = 0.3,
                         anneal_strategy: str = "cos", div_factor: float = 25.0,
                         final_div_factor: float = 1e4, three_phase: bool = False
                         ) -> Schedule:
    """PyTorch's ``OneCycleLR`` learning rate, value for value (to float64 rounding).

    With ``T = total_steps``, ``lr_0 = max_lr / div_factor`` and ``lr_min = lr_0 /
    final_div_factor``: from ``lr_0`` up to ``max_lr`` over ``[0, pct_start·T - 1]``, then
    down to ``lr_min`` at ``T - 1``; with ``three_phase``, down to ``lr_0`` at ``2·pct_start·T
    - 2`` first (symmetric about the peak), then to ``lr_min`` at ``T - 1``. Each leg
    anneals from ``a`` to ``b`` at ``pct`` in [0, 1] (see ``_onecycle``), by ``'cos'``: ``b +
    (a - b)/2 · (cos(π·pct) + 1)``, or ``'linear'``: ``a + (b - a)·pct``.

    ``count`` is the number of updates applied: its value is the lr of torch's optimizer at
    its ``(count+1)``-th step. Past the cycle, counts ``>= T - 1`` hold the value at ``T - 1``
    (torch's scheduler computes an overshoot at ``T``, which a ``T + 1``-th step would use,
    and raises on the next call) and counts below 0 the value at 0. ``T`` is a positive int,
    ``0 <= pct_start <= 1`` with ``pct_start·T != 1`` (torch divides 0 by 0 there), ``max_lr
    >= 0`` and the factors > 0, all finite. optax's ``cosine_onecycle_schedule`` differs: it
    peaks at ``⌊pct_start·T⌋`` and ends at ``T``, one update later.

    Porting ``OneCycleLR(opt, max_lr, total_steps=T, ...)``, whose ``cycle_momentum=True``
    also cycles the momentum, needs both schedules, e.g. for AdamW::

        inject_hyperparams(adamw)(lr=onecycle_lr_schedule(T, max_lr),
                                  b1=onecycle_momentum_schedule(T), b2=0.999)

    (``sgd``'s ``momentum=`` in place of ``b1=``; the same ``pct_start``,
    ``anneal_strategy`` and ``three_phase`` in both). With ``cycle_momentum=False``, ``adamw(
    onecycle_lr_schedule(T, max_lr))`` alone.
    """
    name = "onecycle_lr_schedule"
    peak = check_float(name, "max_lr", max_lr)
    div = real_arg(div_factor, name, "div_factor", low=0.0, open_low=True)
    final = real_arg(final_div_factor, name, "final_div_factor", low=0.0, open_low=True)
    initial = peak / div
    low = initial / final

    def values(three: bool) -> list[tuple[float, float]]:
        if three:
            return [(initial, peak), (peak, initial), (initial, low)]
        return [(initial, peak), (peak, low)]

    return _onecycle(name, total_steps, pct_start, anneal_strategy, three_phase, values)


@schedule_factory
def onecycle_momentum_schedule(total_steps: int, pct_start: float = 0.3,
                               anneal_strategy: str = "cos", base_momentum: float = 0.85,
                               max_momentum: float = 0.95, three_phase: bool = False
                               ) -> Schedule:
    """PyTorch's ``OneCycleLR`` momentum (``cycle_momentum=True``): SGD's ``momentum`` or
    Adam's ``b1``, cycled inversely to ``onecycle_lr_schedule``'s lr over the same phases.

    From ``max_momentum`` down to ``base_momentum`` while the lr rises, back up to
    ``max_momentum`` while it falls; with ``three_phase``, held at ``max_momentum`` over the
    third phase. Counts, the anneal and the arguments as in ``onecycle_lr_schedule``; the
    momenta are in [0, 1]. Use it through ``inject_hyperparams``, as its ``b1=`` or
    ``momentum=`` (see ``onecycle_lr_schedule``)."""
    name = "onecycle_momentum_schedule"
    base = check_float(name, "base_momentum", base_momentum, high=1.0)
    top = check_float(name, "max_momentum", max_momentum, high=1.0)

    def values(three: bool) -> list[tuple[float, float]]:
        if three:
            return [(top, base), (base, top), (top, top)]
        return [(top, base), (base, top)]

    return _onecycle(name, total_steps, pct_start, anneal_strategy, three_phase, values)
