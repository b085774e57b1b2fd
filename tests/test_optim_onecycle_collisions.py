"""The one-cycle schedules where two of their boundaries fall on one step (``pct_final=1``,
``pct_start=1``, ``⌊pct_start·T⌋ = ⌊pct_final·T⌋``, short cycles): optax keeps the boundaries
in a dict, so only the later boundary's factor counts, and funcdl's must do the same. Also
``warmup_constant_schedule``. Hand-computed values first, then optax's (where installed)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from funcdl import optim
from funcdl.optim import _joined_schedules

V, V2, V3 = 0.04, 0.04 / 25.0, 0.04 / 25.0 / 1e4  # peak 1 over div_factor 25, final 1e4


# ---------------------------------------------------------------------------- by hand

@pytest.mark.parametrize(("args", "want"), [
    # ⌊0.3·10⌋ = 3, ⌊1.0·10⌋ = 10 = T: up to 1 at 3, then down to 1/final_div = 1e-4 at 10
    ((10, 1.0, 0.3, 1.0), {0: V, 3: 1.0, 9: 1.0 + (1e-4 - 1.0) * 6 / 7, 10: 1e-4, 15: 1e-4}),
    # ⌊0.5·10⌋ twice: the fall to v/div replaces the rise to the peak
    ((10, 1.0, 0.5, 0.5), {0: V, 4: V + (V2 - V) * 0.8, 5: V2, 7: V2 + (V3 - V2) * 0.4,
                           10: V3, 11: V3}),
    # all three boundaries at T: from v straight to v/final_div
    ((10, 1.0, 1.0, 1.0), {0: V, 5: V + (V / 1e4 - V) * 0.5, 10: V / 1e4}),
    # both at 0: the schedule starts at v/div
    ((10, 1.0, 0.0, 0.0), {0: V2, 5: V2 + (V3 - V2) * 0.5, 10: V3}),
    # T = 1 with the defaults: ⌊0.3⌋ = ⌊0.85⌋ = 0
    ((1, 1.0), {-1: 0.0, 0: V2, 1: V3, 2: V3, 50: V3}),
    # T = 3, ⌊0.3·3⌋ = 0 < ⌊0.85·3⌋ = 2: no collision apart from the empty first phase
    ((3, 1.0), {0: 1.0, 1: 1.0 + (V - 1.0) / 2, 2: V, 3: V3 * 25, 4: V3 * 25}),
], ids=["pct_final-1", "start-eq-final", "all-at-T", "all-at-0", "T1-defaults", "T3"])
def test_linear_onecycle_collisions_by_hand(args: tuple[Any, ...],
                                            want: dict[int, float]) -> None:
    schedule = optim.linear_onecycle_schedule(*args)
    for count, value in want.items():
        assert schedule(count) == pytest.approx(value, rel=1e-13, abs=1e-300), count
        assert type(schedule(count)) is float


@pytest.mark.parametrize(("args", "want"), [
    # ⌊1.0·10⌋ = T twice: one half cosine from v down to v/(div·final), the peak never met
    ((10, 1.0, 1.0), {0: V, 5: (V + V3) / 2, 10: V3, 20: V3,
                      9: V3 + (V - V3) / 2 * (1 + math.cos(0.9 * math.pi))}),
    ((1, 1.0, 1.0), {0: V, 1: V3}),
    # ⌊0.3·2⌋ = 0: the rise is empty, the fall starts at the peak (as before)
    ((2, 1.0, 0.3), {0: 1.0, 1: (1.0 + V / 1e4) / 2, 2: V / 1e4}),
], ids=["pct_start-1", "T1-pct_start-1", "T2"])
def test_cosine_onecycle_collisions_by_hand(args: tuple[Any, ...],
                                            want: dict[int, float]) -> None:
    schedule = optim.cosine_onecycle_schedule(*args)
    for count, value in want.items():
        assert schedule(count) == pytest.approx(value, rel=1e-13, abs=1e-300), count


@pytest.mark.parametrize("make", [lambda: optim.linear_onecycle_schedule(7, 2.0, 0.5, 1.0),
                                  lambda: optim.linear_onecycle_schedule(6, 1.0, 0.5, 0.5),
                                  lambda: optim.cosine_onecycle_schedule(5, 0.3, 1.0)],
                         ids=["linear-final-at-T", "linear-start-eq-final", "cosine-start-at-T"])
def test_collision_schedules_same_for_every_kind_of_count(make: Any) -> None:
    schedule = make()
    counts = np.arange(-2, 12)
    values = schedule(counts.reshape(2, 7))
    assert values.dtype == np.float64 and values.shape == (2, 7)
    ints = [schedule(int(c)) for c in counts]
    assert values.ravel().tolist() == ints
    assert [schedule(np.int64(c)) for c in counts] == ints
    assert [schedule(np.int32(c)) for c in counts] == ints


# ---------------------------------------------------------------------------- warmup_constant

def test_warmup_constant_schedule_values() -> None:
    schedule = optim.warmup_constant_schedule(0.1, 0.5, 4)
    want = {-3: 0.1, 0: 0.1, 1: 0.2, 3: 0.1 + 0.4 * 3 / 4, 4: 0.5, 5: 0.5, 10**6: 0.5}
    for count, value in want.items():
        assert schedule(count) == pytest.approx(value, rel=1e-15), count
        assert type(schedule(count)) is float
        assert schedule(np.int64(count)) == schedule(count)
    np.testing.assert_array_equal(schedule(np.array([[0, 3], [4, 9]])),
                                  [[schedule(0), schedule(3)], [0.5, 0.5]])
    # one step of warmup: init at 0, the peak from 1 on
    one = optim.warmup_constant_schedule(0.0, 2.0, 1)
    assert [one(c) for c in range(3)] == [0.0, 2.0, 2.0]
    assert "warmup_constant_schedule" in _joined_schedules.__all__
    assert "warmup_constant_schedule" in optim.__all__


@pytest.mark.parametrize(("args", "error", "match"), [
    ((0.0, 1.0, -1), ValueError, r"warmup_constant_schedule: warmup_steps must be a positive"),
    ((0.0, 1.0, 0), ValueError, r"warmup_constant_schedule: warmup_steps must be a positive"),
    ((0.0, 1.0, 2.5), ValueError, r"warmup_constant_schedule: warmup_steps must be a positive"),
    ((0.0, 1.0, "5"), TypeError, r"warmup_constant_schedule: warmup_steps must be a positive"),
    ((0.0, 1.0, None), TypeError, r"warmup_constant_schedule: warmup_steps"),
    ((math.nan, 1.0, 5), ValueError, r"warmup_constant_schedule: init_value must be a finite"),
    ((0.0, math.nan, 5), ValueError, r"warmup_constant_schedule: peak_value must be a finite"),
    ((0.0, math.inf, 5), ValueError, r"warmup_constant_schedule: peak_value must be a finite"),
    (("0.1", 1.0, 5), TypeError, r"warmup_constant_schedule: init_value must be a real"),
    ((0.0, [1.0], 5), TypeError, r"warmup_constant_schedule: peak_value must be a real"),
])
def test_warmup_constant_schedule_bad_arguments(args: tuple[Any, ...], error: type,
                                                match: str) -> None:
    with pytest.raises(error, match=match):
        optim.warmup_constant_schedule(*args)


def test_warmup_constant_schedule_uncalled_is_refused() -> None:
    with pytest.raises(TypeError, match=r"schedule constructor warmup_constant_schedule"):
        optim.sgd(lr=optim.warmup_constant_schedule)


# ---------------------------------------------------------------------------- optax's

@pytest.fixture
def optax(jax64: Any) -> Any:
    """optax, with jax in float64 for the test (conftest's jax64)."""
    return pytest.importorskip("optax")


PCTS = (0.0, 0.1, 0.25, 0.3, 0.5, 0.85, 1.0)  # the probe's grid: 0, 1 and equal floors


def _counts(steps: int, bounds: list[int]) -> list[int]:
    """Where values can go wrong: before and at 0, each boundary and its neighbours, each
    phase's middle, and past the end (optax's scalar calls take ~1 ms each; all counts from
    -2 to T+5 were compared once, bit for bit, when this was written)."""
    edges = sorted({0, *bounds, steps})
    near = {b + d for b in edges for d in (-1, 0, 1)}
    middles = {(a + b) // 2 for a, b in itertools.pairwise(edges)}
    return sorted(c for c in near | middles | {-1, steps + 5} if c >= -1)


def _check(ours: Any, theirs: Any, counts: list[int], what: str) -> None:
    want = [float(theirs(c)) for c in counts]
    assert [ours(c) for c in counts] == want, what  # bit for bit: same float64 arithmetic
    assert [ours(np.int64(c)) for c in counts] == want, what
    assert [ours(np.int32(c)) for c in counts] == want, what
    assert ours(np.array(counts)).tolist() == want, what


@pytest.mark.parametrize("steps", range(1, 31))
def test_onecycles_as_optax_over_the_grid(optax: Any, steps: int) -> None:
    for start in PCTS:
        p = int(start * steps)
        _check(optim.cosine_onecycle_schedule(steps, 1.0, start),
               optax.cosine_onecycle_schedule(steps, 1.0, start),
               _counts(steps, [p]), f"cosine T={steps} pct_start={start}")
        for final in (f for f in PCTS if f >= start):
            _check(optim.linear_onecycle_schedule(steps, 1.0, start, final),
                   optax.linear_onecycle_schedule(steps, 1.0, start, final),
                   _counts(steps, [p, int(final * steps)]),
                   f"linear T={steps} pct_start={start} pct_final={final}")


@pytest.mark.parametrize(("steps", "start", "final"), [(10, 0.3, 1.0), (10, 0.5, 0.5),
                                                       (7, 1.0, 1.0), (4, 0.0, 0.0),
                                                       (13, 0.2, 0.7)])
def test_onecycles_as_optax_with_other_factors(optax: Any, steps: int, start: float,
                                               final: float) -> None:
    counts = list(range(-1, steps + 6))
    for peak, div, fin in [(0.37, 7.0, 300.0), (2.0, 1.5, 0.5)]:
        _check(optim.linear_onecycle_schedule(steps, peak, start, final, div, fin),
               optax.linear_onecycle_schedule(steps, peak, start, final, div, fin),
               counts, f"linear {peak} {div} {fin}")
        _check(optim.cosine_onecycle_schedule(steps, peak, start, div, fin),
               optax.cosine_onecycle_schedule(steps, peak, start, div, fin),
               counts, f"cosine {peak} {div} {fin}")


@pytest.mark.parametrize(("init", "peak", "warmup"), [(0.0, 1.0, 1), (0.2, 0.05, 3),
                                                      (1e-3, 3e-2, 10), (-1.0, 2.0, 7)])
def test_warmup_constant_schedule_as_optax(optax: Any, init: float, peak: float,
                                           warmup: int) -> None:
    _check(optim.warmup_constant_schedule(init, peak, warmup),
           optax.warmup_constant_schedule(init, peak, warmup),
           [*range(-2, warmup + 4), 10**6], f"{init} {peak} {warmup}")


def test_joined_schedules_at_coinciding_boundaries_as_optax(optax: Any) -> None:
    # The other schedules built from boundaries (join_schedules) at their edge cases: no
    # warmup, the decay beginning at the end of the warmup, cycles of one step.
    for args in [(0.2, 1.0, 0, 3, 0.5), (0.0, 1.0, 3, 2, 0.5, 3, True, 0.25),
                 (0.0, 1.0, 1, 1, 1.5, 1, False, 4.0), (0.5, 1.0, 2, 0, 0.5)]:
        _check(optim.warmup_exponential_decay_schedule(*args),
               optax.warmup_exponential_decay_schedule(*args), list(range(-1, 12)), str(args))
    cycles = [{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 0, "decay_steps": 1},
              {"init_value": 0.3, "peak_value": 0.5, "warmup_steps": 1, "decay_steps": 2},
              {"init_value": 0.1, "peak_value": 0.2, "warmup_steps": 0, "decay_steps": 1,
               "end_value": 0.05}]
    _check(optim.sgdr_schedule(cycles), optax.sgdr_schedule(cycles), list(range(-1, 8)),
           "sgdr")
