"""funcdl.optim schedules: each against its formula at and around its boundaries, Python
floats out, and read at every update."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from funcdl import optim

# ---------------------------------------------------------------------------- schedules

def test_constant_and_piecewise_schedules() -> None:
    assert optim.constant_schedule(0.3)(0) == optim.constant_schedule(0.3)(10**6) == 0.3
    s = optim.piecewise_constant_schedule(1.0, {4: 0.1, 2: 0.5})
    assert [s(c) for c in (0, 1, 2, 3, 4, 100)] == pytest.approx([1, 1, 0.5, 0.5, 0.05, 0.05])


def test_cosine_decay_schedule() -> None:
    s = optim.cosine_decay_schedule(2.0, 10)
    assert [s(0), s(5), s(10), s(20)] == pytest.approx([2.0, 1.0, 0.0, 0.0], abs=1e-15)
    assert s(2) == pytest.approx(1.0 + math.cos(math.pi * 0.2))
    a = optim.cosine_decay_schedule(1.0, 10, alpha=0.1)
    assert [a(0), a(5), a(10)] == pytest.approx([1.0, 0.55, 0.1])
    e = optim.cosine_decay_schedule(1.0, 10, exponent=2.0)
    assert e(5) == pytest.approx(0.25)


def test_linear_and_polynomial_schedules() -> None:
    s = optim.linear_schedule(0.0, 1.0, 10)
    assert [s(0), s(5), s(10), s(15)] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    b = optim.linear_schedule(1.0, 0.0, 10, transition_begin=5)
    assert [b(0), b(5), b(10), b(15), b(30)] == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])
    assert optim.linear_schedule(0.3, 1.0, 0)(5) == 0.3  # no transition: constant init
    q = optim.polynomial_schedule(1.0, 0.0, 2.0, 10)
    assert q(5) == pytest.approx(0.25)


def test_warmup_cosine_decay_schedule() -> None:
    s = optim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110,
                                           end_value=0.1)
    got = [s(0), s(5), s(10), s(60), s(110), s(500)]
    assert got == pytest.approx([0.0, 0.5, 1.0, 0.55, 0.1, 0.1])
    peak2 = optim.warmup_cosine_decay_schedule(0.5, 2.0, 4, 14, end_value=0.5)
    assert [peak2(0), peak2(2), peak2(4), peak2(9), peak2(14)] == pytest.approx(
        [0.5, 1.25, 2.0, 1.25, 0.5])
    no_warmup = optim.warmup_cosine_decay_schedule(0.0, 1.0, 0, 10)
    assert [no_warmup(0), no_warmup(5)] == pytest.approx([1.0, 0.5])


def test_exponential_decay() -> None:
    s = optim.exponential_decay(1.0, 10, 0.5)
    assert [s(0), s(5), s(10), s(20)] == pytest.approx([1.0, 0.5**0.5, 0.5, 0.25])
    st = optim.exponential_decay(1.0, 10, 0.5, staircase=True)
    assert [st(9), st(10), st(19), st(20)] == pytest.approx([1.0, 0.5, 0.5, 0.25])
    begin = optim.exponential_decay(1.0, 10, 0.5, transition_begin=5)
    assert [begin(0), begin(5), begin(15)] == pytest.approx([1.0, 1.0, 0.5])
    floor = optim.exponential_decay(1.0, 10, 0.5, end_value=0.3)
    assert [floor(10), floor(40)] == pytest.approx([0.5, 0.3])
    ceiling = optim.exponential_decay(1.0, 10, 2.0, end_value=3.0)
    assert [ceiling(10), ceiling(40)] == pytest.approx([2.0, 3.0])


def test_join_schedules() -> None:
    s = optim.join_schedules(
        [optim.constant_schedule(1.0), optim.constant_schedule(2.0),
         optim.linear_schedule(0.0, 1.0, 10)], [3, 5])
    assert [s(0), s(2), s(3), s(4), s(5), s(10)] == pytest.approx([1, 1, 2, 2, 0.0, 0.5])


def test_schedules_return_python_floats() -> None:
    schedules = [optim.constant_schedule(1), optim.piecewise_constant_schedule(1, {1: 2}),
                 optim.cosine_decay_schedule(1, 5), optim.linear_schedule(0, 1, 5),
                 optim.warmup_cosine_decay_schedule(0, 1, 2, 5), optim.exponential_decay(1, 2, 0.5),
                 optim.join_schedules([optim.constant_schedule(1)] * 2, [2])]
    for s in schedules:
        assert all(type(s(c)) is float for c in (0, 3, 7))


def constant_gradient_steps(opt: optim.GradientTransformation,
                            n: int) -> tuple[list[float], Any]:
    """The first entry of each of ``n`` updates on a gradient of ones, and the last state."""
    params = {"w": np.zeros(2)}
    state = opt.init(params)
    steps = []
    for _ in range(n):
        updates, state = opt.update(state, {"w": np.ones(2)}, params)
        steps.append(float(updates["w"][0]))
    return steps, state


def test_schedule_is_read_at_every_update() -> None:
    seen: list[int] = []

    def lr(count: int) -> float:
        seen.append(count)
        return 0.1 * (count + 1)

    steps, state = constant_gradient_steps(optim.sgd(lr), 3)
    assert seen == [0, 1, 2]
    assert steps == pytest.approx([-0.1, -0.2, -0.3])
    assert int(state.states["lr"].count) == 3

    # Adam on a constant gradient steps by lr(t) exactly (m̂ = g, v̂ = g²).
    sched = optim.piecewise_constant_schedule(0.1, {2: 0.5})
    steps, _ = constant_gradient_steps(optim.adam(sched), 4)
    assert steps == pytest.approx([-0.1, -0.1, -0.05, -0.05], rel=1e-7)


