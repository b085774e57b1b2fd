"""Schedules: callables ``count -> value`` (a Python float), where ``count`` is the number of
updates already applied (0 at the first update). Arguments and semantics follow optax."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from funcdl.optim._base import Schedule

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


def _steps(name: str, what: str, value: int, *, positive: bool = False) -> int:
    if isinstance(value, bool) or int(value) != value or value < (1 if positive else 0):
        kind = "a positive int" if positive else "an int >= 0"
        raise ValueError(f"{name}: {what} must be {kind}, got {value!r}")
    return int(value)


def constant_schedule(value: float) -> Schedule:
    """``value`` at every count."""
    v = float(value)

    def schedule(count: int) -> float:
        del count
        return v

    return schedule


def polynomial_schedule(init_value: float, end_value: float, power: float,
                        transition_steps: int, transition_begin: int = 0) -> Schedule:
    """``(init - end) · (1 - min(max(t - begin, 0), T) / T)^power + end``; constant
    ``init_value`` when ``transition_steps == 0``."""
    name = "polynomial_schedule"
    steps = _steps(name, "transition_steps", transition_steps)
    begin = _steps(name, "transition_begin", transition_begin)
    i, e, pw = float(init_value), float(end_value), float(power)
    if steps == 0:
        return constant_schedule(i)

    def schedule(count: int) -> float:
        c = min(max(count - begin, 0), steps)
        return float((i - e) * (1.0 - c / steps) ** pw + e)

    return schedule


def linear_schedule(init_value: float, end_value: float, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
    """``init + (end - init) · min(max(t - begin, 0), T) / T`` (warmup, or linear decay);
    constant ``init_value`` when ``transition_steps == 0``."""
    return polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin)


def piecewise_constant_schedule(init_value: float,
                                boundaries_and_scales: Mapping[int, float] | None = None
                                ) -> Schedule:
    """``init_value · Π {scale : boundary <= t}`` (step decay)."""
    items = sorted((boundaries_and_scales or {}).items())
    if any(not float(s) >= 0.0 for _, s in items):
        raise ValueError("piecewise_constant_schedule: the scales must be non-negative, "
                         f"got {dict(items)}")
    v0 = float(init_value)
    pairs = [(b, float(s)) for b, s in items]

    def schedule(count: int) -> float:
        v = v0
        for boundary, s in pairs:
            if count >= boundary:
                v *= s
        return v

    return schedule


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0,
                          exponent: float = 1.0) -> Schedule:
    """``init · ((1 - alpha) · (½(1 + cos(π · min(t, T) / T)))^exponent + alpha)``."""
    steps = _steps("cosine_decay_schedule", "decay_steps", decay_steps, positive=True)
    i, a, ex = float(init_value), float(alpha), float(exponent)

    def schedule(count: int) -> float:
        c = min(count, steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * c / steps))
        return float(i * ((1.0 - a) * cosine**ex + a))

    return schedule


def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                 decay_steps: int, end_value: float = 0.0,
                                 exponent: float = 1.0) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then cosine
    decay to ``end_value``, reached at ``decay_steps`` (a total that includes the warmup)."""
    name = "warmup_cosine_decay_schedule"
    warm = _steps(name, "warmup_steps", warmup_steps)
    total = _steps(name, "decay_steps", decay_steps)
    if total <= warm:
        raise ValueError(f"{name}: decay_steps is the total length including the warmup, so "
                         f"it must exceed warmup_steps={warm}; got decay_steps={total}")
    peak = float(peak_value)
    alpha = 0.0 if peak == 0.0 else float(end_value) / peak
    return join_schedules(
        [linear_schedule(init_value, peak, warm),
         cosine_decay_schedule(peak, total - warm, alpha=alpha, exponent=exponent)],
        [warm])


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: float | None = None) -> Schedule:
    """``init · decay_rate^((t - begin) / T)`` for ``t > begin`` (the exponent floored when
    ``staircase``), else ``init``; bounded by ``end_value`` when given (a floor when
    ``decay_rate < 1``, a ceiling otherwise). Constant when ``transition_steps == 0``."""
    name = "exponential_decay"
    steps = _steps(name, "transition_steps", transition_steps)
    begin = _steps(name, "transition_begin", transition_begin)
    rate = float(decay_rate)
    if not rate > 0.0:
        raise ValueError(f"{name}: decay_rate must be > 0, got {decay_rate!r}")
    i = float(init_value)
    if steps == 0:
        return constant_schedule(i)
    end = None if end_value is None else float(end_value)
    stair = bool(staircase)

    def schedule(count: int) -> float:
        elapsed = count - begin
        if elapsed <= 0:
            v = i
        else:
            p = elapsed / steps
            v = i * rate ** (math.floor(p) if stair else p)
        if end is not None:
            v = max(v, end) if rate < 1.0 else min(v, end)
        return float(v)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """``schedules[k](t - boundaries[k-1])`` for the last ``k`` with ``boundaries[k-1] <= t``
    (``schedules[0](t)`` before the first boundary)."""
    scheds = list(schedules)
    bounds = [int(b) for b in boundaries]
    if len(scheds) != len(bounds) + 1:
        raise ValueError(f"join_schedules: need one more schedule than boundaries, got "
                         f"{len(scheds)} schedules and {len(bounds)} boundaries")
    for s in scheds:
        if not callable(s):
            raise TypeError(f"join_schedules: schedules must be callables count -> value, "
                            f"got {type(s).__name__}")
    pairs = list(zip(bounds, scheds[1:], strict=True))

    def schedule(count: int) -> float:
        for boundary, s in reversed(pairs):  # the last boundary passed wins, as in optax
            if count >= boundary:
                return float(s(count - boundary))
        return float(scheds[0](count))

    return schedule
