"""Schedules: callables ``count -> value`` (a Python float), where ``count`` is the number of
updates already applied (0 at the first update); an array of counts gives an array of
values. Arguments and semantics follow optax; the arguments are checked when the schedule
is made (optax checks few), so that a bad one is named there rather than at some later
update: values must be finite numbers, step counts ints >= 0, boundaries increasing, and
exponents positive (a negative one divides by zero at the end of the decay)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from funcdl._args import bool_arg, number, shown
from funcdl.optim._base import COUNT_END, Schedule
from funcdl.optim._checks import (
    check_float,
    check_schedule,
    schedule_factory,
    schedule_float,
)

__all__ = [
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_schedule",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "warmup_cosine_decay_schedule",
]


def over_counts(f: Any) -> Schedule:
    """``f``, also over an array of counts, as optax's: ``schedule(np.arange(n))`` (to plot
    it) gives one float64 value per count; a single count goes straight to ``f``."""
    def schedule(count: Any) -> Any:
        if type(count) is int or np.ndim(count) == 0:  # an optimizer's: an int, at once
            return f(count)
        counts = np.asarray(count)  # a list, a NumPy or JAX array of counts
        values = [f(c) for c in counts.ravel().tolist()]
        return np.array(values, np.float64).reshape(counts.shape)

    # for Python's own errors (a call without a count) and reprs: `schedule() missing ...`,
    # not `over_counts.<locals>.schedule() missing ...`
    schedule.__qualname__ = "schedule"
    return schedule


def check_steps(name: str, what: str, value: Any, *, positive: bool = False) -> int:
    """A count of steps: an int (or an integral float) >= 0, or > 0 when ``positive``."""
    kind = "a positive int" if positive else "an int >= 0"
    value = number(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: {what} must be {kind}, got {value!r}")
    if not isinstance(value, (int, np.integer)) and (
            not math.isfinite(value) or int(value) != value):
        raise ValueError(f"{name}: {what} must be {kind}, got {shown(value)}")
    if value < (1 if positive else 0):
        raise ValueError(f"{name}: {what} must be {kind}, got {shown(value)}")
    if value > COUNT_END:  # beyond any count (an int64), and past float arithmetic
        raise ValueError(f"{name}: {what} must be {kind} below 2**63 (a step count is an "
                         f"int64), got {shown(value)}")
    return int(value)



def check_value(name: str, what: str, value: Any, low: float = -math.inf) -> float:
    """A finite Python float >= ``low``."""
    return check_float(name, what, value, low=low)


def _exponent(name: str, what: str, value: Any) -> float:
    """An exponent of ``frac^what`` with ``frac`` falling to 0 at the end: must be > 0 (a
    negative one divides by zero there, and 0 leaves the schedule at its initial value)."""
    v = check_value(name, what, value)
    if not v > 0.0:
        raise ValueError(f"{name}: {what} must be > 0 (the decay raises a fraction that "
                         f"reaches 0 at its end to this power), got {value!r}")
    return v


@schedule_factory
def constant_schedule(value: float) -> Schedule:
    """``value`` at every count."""
    v = check_value("constant_schedule", "value", value)

    @over_counts
    def schedule(count: int) -> float:
        del count
        return v

    return schedule


@schedule_factory
def polynomial_schedule(init_value: float, end_value: float, power: float,
                        transition_steps: int, transition_begin: int = 0) -> Schedule:
    """``(init - end) · (1 - min(max(t - begin, 0), T) / T)^power + end``; constant
    ``init_value`` when ``transition_steps == 0``. ``power > 0``."""
    return _polynomial("polynomial_schedule", init_value, end_value, power, transition_steps,
                       transition_begin)


def _polynomial(name: str, init_value: float, end_value: float, power: float,
                transition_steps: int, transition_begin: int) -> Schedule:
    steps = check_steps(name, "transition_steps", transition_steps)
    begin = check_steps(name, "transition_begin", transition_begin)
    i, e = check_value(name, "init_value", init_value), check_value(name, "end_value", end_value)
    pw = _exponent(name, "power", power)
    if steps == 0:
        return constant_schedule(i)

    @over_counts
    def schedule(count: int) -> float:
        c = min(max(count - begin, 0), steps)
        return float((i - e) * (1.0 - c / steps) ** pw + e)

    return schedule


@schedule_factory
def linear_schedule(init_value: float, end_value: float, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
    """``init + (end - init) · min(max(t - begin, 0), T) / T`` (warmup, or linear decay);
    constant ``init_value`` when ``transition_steps == 0``."""
    return _polynomial("linear_schedule", init_value, end_value, 1.0, transition_steps,
                       transition_begin)


def check_boundaries(name: str, boundaries_and_scales: Any) -> list[tuple[int, float]]:
    """A ``{boundary: scale}`` dict (None: none) as sorted pairs, boundaries ints >= 0 and
    scales finite and >= 0, or an error naming ``name``."""
    given = {} if boundaries_and_scales is None else boundaries_and_scales
    if not isinstance(given, Mapping):
        raise TypeError(f"{name}: boundaries_and_scales must be a dict {{boundary: scale}} "
                        f"such as {{1000: 0.1}}, got {type(given).__name__} (for a list of "
                        f"(boundary, scale) pairs pass dict(pairs))")
    return sorted((check_steps(name, "a boundary (a key of boundaries_and_scales)", b),
                   check_value(name, f"the scale at boundary {shown(b)}", s, low=0.0))
                  for b, s in given.items())


@schedule_factory
def piecewise_constant_schedule(init_value: float,
                                boundaries_and_scales: Mapping[int, float] | None = None
                                ) -> Schedule:
    """``init_value · Π {scale : boundary <= t}`` (step decay), e.g. ``{1000: 0.1}``; the
    dict's order does not matter. Boundaries are ints >= 0, scales finite and >= 0."""
    name = "piecewise_constant_schedule"
    v0 = check_value(name, "init_value", init_value)
    pairs = check_boundaries(name, boundaries_and_scales)

    @over_counts
    def schedule(count: int) -> float:
        v = v0
        for boundary, s in pairs:
            if count >= boundary:
                v *= s
        return v

    return schedule


@schedule_factory
def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0,
                          exponent: float = 1.0) -> Schedule:
    """``init · ((1 - alpha) · (½(1 + cos(π · min(t, T) / T)))^exponent + alpha)``;
    ``exponent > 0``."""
    name = "cosine_decay_schedule"
    steps = check_steps(name, "decay_steps", decay_steps, positive=True)
    i, a = check_value(name, "init_value", init_value), check_value(name, "alpha", alpha)
    return _cosine(i, a, steps, _exponent(name, "exponent", exponent))


def _cosine(init: float, alpha: float, steps: int, exponent: float) -> Schedule:
    """optax's ``init · ((1 - alpha) · c^exponent + alpha)``, ``c = ½(1 + cos(π·min(t, T)/T))``
    (from ``init = 0`` it stays 0, as optax's: the warmup schedule's ``alpha = end / peak``
    is then 0)."""
    @over_counts
    def schedule(count: int) -> float:
        c = min(count, steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * c / steps))
        return float(init * ((1.0 - alpha) * cosine**exponent + alpha))

    return schedule


@schedule_factory
def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                 decay_steps: int, end_value: float = 0.0,
                                 exponent: float = 1.0) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then cosine
    decay to ``end_value``, reached at ``decay_steps`` (a total that includes the warmup)."""
    name = "warmup_cosine_decay_schedule"
    warm = check_steps(name, "warmup_steps", warmup_steps)
    total = check_steps(name, "decay_steps", decay_steps)
    if total <= warm:
        raise ValueError(f"{name}: decay_steps is the total length including the warmup, so "
                         f"it must exceed warmup_steps={warm}; got decay_steps={total}")
    init, peak = (check_value(name, "init_value", init_value),
                  check_value(name, "peak_value", peak_value))
    end = check_value(name, "end_value", end_value)
    alpha = 0.0 if peak == 0.0 else end / peak
    decay = _cosine(peak, alpha, total - warm, _exponent(name, "exponent", exponent))
    return join_schedules([linear_schedule(init, peak, warm), decay], [warm])


@schedule_factory
def exponential_decay(init_value: float, transition_steps: int, decay_rate: float,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: float | None = None) -> Schedule:
    """``init · decay_rate^((t - begin) / T)`` for ``t > begin`` (the exponent floored when
    ``staircase``), else ``init``; bounded by ``end_value`` when given (a floor when
    ``decay_rate < 1``, a ceiling otherwise). Constant when ``transition_steps == 0``."""
    name = "exponential_decay"
    steps = check_steps(name, "transition_steps", transition_steps)
    begin = check_steps(name, "transition_begin", transition_begin)
    rate = check_value(name, "decay_rate", decay_rate)
    if not rate > 0.0:
        raise ValueError(f"{name}: decay_rate must be > 0, got {decay_rate!r}")
    i = check_value(name, "init_value", init_value)
    if steps == 0:
        return constant_schedule(i)
    end = None if end_value is None else check_value(name, "end_value", end_value)
    stair = bool_arg(staircase, name, "staircase")

    @over_counts
    def schedule(count: int) -> float:
        elapsed = count - begin
        if elapsed <= 0:
            v = i
        else:
            p = elapsed / steps
            try:
                v = i * rate ** (math.floor(p) if stair else p)
            except OverflowError:  # a rate > 1 long after the start: inf, as optax gives
                v = math.copysign(math.inf, i) if i else 0.0
        if end is not None:
            v = max(v, end) if rate < 1.0 else min(v, end)
        return float(v)

    return schedule


@schedule_factory
def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """``schedules[k](t - boundaries[k-1])`` for the last ``k`` with ``boundaries[k-1] <= t``
    (``schedules[0](t)`` before the first boundary). The boundaries are ints >= 0 in
    increasing order (optax accepts any order; then a later schedule would be cut short or
    never reached, silently)."""
    name = "join_schedules"
    try:
        scheds, given = list(schedules), list(boundaries)
    except TypeError:
        raise TypeError(f"{name}: schedules and boundaries must be lists, got "
                        f"{type(schedules).__name__} and {type(boundaries).__name__}") from None
    if len(scheds) != len(given) + 1:
        raise ValueError(f"{name}: need one more schedule than boundaries, got "
                         f"{len(scheds)} schedules and {len(given)} boundaries")
    bounds = [check_steps(name, f"boundaries[{k}]", b) for k, b in enumerate(given)]
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"{name}: the boundaries must be increasing, got {bounds}")
    scheds = [check_schedule(name, f"schedules[{k}]", s) for k, s in enumerate(scheds)]
    pairs = list(zip(bounds, scheds[1:], strict=True))

    @over_counts
    def schedule(count: int) -> float:
        for boundary, s in reversed(pairs):  # the last boundary passed wins, as in optax
            if count >= boundary:  # its value read as a number here, to name the schedule
                return schedule_float(name, s(count - boundary), count - boundary)
        return schedule_float(name, scheds[0](count), count)

    return schedule
