"""funcdl.optim schedules: each against its formula at and around its boundaries, Python
floats out, and read at every update; bad arguments (and schedule constructors passed
uncalled) refused when the schedule or optimizer is made, naming it."""

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




# ---------------------------------------------------------------------------- bad arguments

BAD_SCHEDULE_ARGUMENTS: list[tuple[str, Any, type]] = [
    # bare errors from int() / float() / .items() / sorting, or ZeroDivisionError later
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, None), TypeError),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, math.inf), ValueError),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, math.nan), ValueError),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, "10"), TypeError),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, 10, exponent=-1.0),
     ValueError),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, 10, exponent=0.0),
     ValueError),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, 10, alpha="x"), TypeError),
    ("polynomial_schedule", lambda: optim.polynomial_schedule(1.0, 0.0, -1.0, 10), ValueError),
    ("linear_schedule", lambda: optim.linear_schedule("a", 1.0, 10), TypeError),
    ("linear_schedule", lambda: optim.linear_schedule(0.0, math.inf, 10), ValueError),
    ("constant_schedule", lambda: optim.constant_schedule("x"), TypeError),
    ("constant_schedule", lambda: optim.constant_schedule(None), TypeError),
    ("constant_schedule", lambda: optim.constant_schedule(np.array([1.0, 2.0])), TypeError),
    ("constant_schedule", lambda: optim.constant_schedule(math.nan), ValueError),
    ("piecewise_constant_schedule", lambda: optim.piecewise_constant_schedule(1.0, [(5, 0.1)]),
     TypeError),
    ("piecewise_constant_schedule", lambda: optim.piecewise_constant_schedule(1.0, {"5": 0.1}),
     TypeError),
    ("piecewise_constant_schedule",
     lambda: optim.piecewise_constant_schedule(1.0, {"5": 0.1, 3: 0.5}), TypeError),
    ("piecewise_constant_schedule", lambda: optim.piecewise_constant_schedule(1.0, {-5: 0.1}),
     ValueError),
    ("piecewise_constant_schedule", lambda: optim.piecewise_constant_schedule(1.0, {5: "x"}),
     TypeError),
    ("piecewise_constant_schedule", lambda: optim.piecewise_constant_schedule(1.0, {5: math.inf}),
     ValueError),
    ("join_schedules", lambda: optim.join_schedules(
        [optim.constant_schedule(1.0), optim.constant_schedule(2.0)], ["a"]), TypeError),
    ("join_schedules", lambda: optim.join_schedules(
        [optim.constant_schedule(1.0), optim.constant_schedule(2.0)], [-3]), ValueError),
    ("join_schedules", lambda: optim.join_schedules(
        [optim.constant_schedule(1.0), optim.constant_schedule(2.0)], [2.7]), ValueError),
    ("join_schedules", lambda: optim.join_schedules([optim.constant_schedule(1.0)] * 3, [10, 5]),
     ValueError),
    ("join_schedules", lambda: optim.join_schedules([optim.constant_schedule(1.0)] * 3, [5, 5]),
     ValueError),
    ("join_schedules", lambda: optim.join_schedules(optim.constant_schedule(1.0), [5]), TypeError),
    ("warmup_cosine_decay_schedule",
     lambda: optim.warmup_cosine_decay_schedule(0.0, 1.0, 5, 15, exponent=-2.0), ValueError),
    ("warmup_cosine_decay_schedule",
     lambda: optim.warmup_cosine_decay_schedule(0.0, None, 5, 15), TypeError),
    ("exponential_decay", lambda: optim.exponential_decay(1.0, 10, 0.5, staircase="yes"),
     TypeError),
    ("exponential_decay", lambda: optim.exponential_decay(1.0, 10, math.nan), ValueError),
    ("exponential_decay", lambda: optim.exponential_decay(1.0, 10, 0.5, end_value="0"),
     TypeError),
]


@pytest.mark.parametrize(("name", "make", "error"), BAD_SCHEDULE_ARGUMENTS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_SCHEDULE_ARGUMENTS)])
def test_bad_schedule_arguments_are_refused_at_construction_naming_the_schedule(
        name: str, make: Any, error: type) -> None:
    with pytest.raises(error, match=rf"^{name}: "):
        make()


def test_exponential_decay_overflow_gives_inf() -> None:
    # rate ** p past the float range raised OverflowError; optax gives inf.
    assert optim.exponential_decay(1.0, 1, 10.0)(10**6) == math.inf
    assert optim.exponential_decay(-2.0, 1, 10.0)(10**6) == -math.inf
    assert optim.exponential_decay(0.0, 1, 10.0)(10**6) == 0.0
    assert optim.exponential_decay(1.0, 1, 10.0, end_value=5.0)(10**6) == 5.0  # the ceiling
    assert optim.exponential_decay(1.0, 1, 0.1)(10**6) == 0.0  # underflow was already fine
    # As a learning rate, inf is refused at that update, naming the count.
    opt = optim.sgd(optim.exponential_decay(1.0, 1, 10.0))
    params = {"w": np.ones(2)}
    state = opt.init(params)
    state = state._replace(states={"lr": state.states["lr"]._replace(count=np.int64(10**6))})
    with pytest.raises(ValueError, match=r"^sgd\.update, stage 'lr': scale_by_learning_rate "
                                        r"\(learning_rate\): the schedule returned inf at "
                                        r"count 1000000"):
        opt.update(state, params, params)


def test_decays_with_positive_exponents_reach_their_end_values() -> None:
    assert optim.cosine_decay_schedule(1.0, 10, exponent=0.5)(10) == 0.0
    assert optim.cosine_decay_schedule(1.0, 10, alpha=0.2, exponent=3.0)(15) == pytest.approx(0.2)
    assert optim.polynomial_schedule(1.0, 0.25, 0.5, 10)(12) == 0.25


def test_warmup_cosine_from_a_zero_peak_stays_at_zero_as_optax() -> None:
    # optax takes alpha = end/peak, 0 for peak 0: the schedule stays at 0 for good
    s = optim.warmup_cosine_decay_schedule(0.0, 0.0, 5, 15, end_value=0.1)
    assert [s(0), s(5), s(10), s(15), s(100)] == [0.0, 0.0, 0.0, 0.0, 0.0]


def test_a_joined_exponential_decay_may_grow_to_inf_as_optax() -> None:
    s = optim.join_schedules([optim.constant_schedule(1.0),
                              optim.exponential_decay(1.0, 1, 10.0)], [2])
    assert s(1) == 1.0 and s(10**6) == float("inf")


def test_boundaries_are_ints_and_numpy_ints_and_integral_floats() -> None:
    s = optim.piecewise_constant_schedule(1.0, {np.int64(2): 0.5, 4.0: 0.5})
    assert [s(1), s(2), s(4)] == [1.0, 0.5, 0.25]
    j = optim.join_schedules([optim.constant_schedule(1.0), optim.constant_schedule(2.0)],
                             np.array([3]))
    assert [j(2), j(3)] == [1.0, 2.0]
    assert optim.cosine_decay_schedule(1.0, np.int64(10), exponent=np.float32(2.0))(0) == 1.0


# ---------------------------------------------------------------------------- as arguments

@pytest.mark.parametrize("alias", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_an_uncalled_schedule_constructor_is_refused_at_construction(alias: str) -> None:
    # constant_schedule is callable too: it was accepted, and the first update failed
    # inside float() ("float() argument must be ... not 'function'").
    make = getattr(optim, alias)
    for factory in (optim.constant_schedule, optim.cosine_decay_schedule,
                    optim.warmup_cosine_decay_schedule, optim.join_schedules):
        with pytest.raises(TypeError, match=rf"^{alias}: lr is the schedule constructor "
                                            rf"{factory.__name__} itself; call it"):
            make(lr=factory)
    with pytest.raises(TypeError, match=rf"^{alias}: lr must take one argument, the count"):
        make(lr=lambda: 0.1)
    make(lr=optim.constant_schedule(0.1))  # called: fine
    make(lr=lambda count, *rest: 0.1)


def test_schedules_elsewhere_are_checked_the_same_way() -> None:
    with pytest.raises(TypeError, match=r"^scale_by_schedule: step_size_fn is the schedule "
                                        r"constructor linear_schedule itself"):
        optim.scale_by_schedule(optim.linear_schedule)
    with pytest.raises(TypeError, match=r"^scale_by_learning_rate: learning_rate is the "
                                        r"schedule"):
        optim.scale_by_learning_rate(optim.constant_schedule)
    with pytest.raises(TypeError, match=r"^add_decayed_weights: weight_decay is the schedule "
                                        r"constructor cosine_decay_schedule"):
        optim.add_decayed_weights(optim.cosine_decay_schedule)
    with pytest.raises(TypeError, match=r"^join_schedules: schedules\[1\] is the schedule "
                                        r"constructor constant_schedule"):
        optim.join_schedules([optim.constant_schedule(1.0), optim.constant_schedule], [3])
    # A schedule whose value is itself a function: named, not float()'s bare TypeError.
    opt = optim.sgd(lambda count: optim.constant_schedule(0.1))
    params = {"w": np.ones(2)}
    with pytest.raises(TypeError, match=r"the schedule must return a number at count 0, got "
                                        r"<function.*not a function"):
        opt.update(opt.init(params), params, params)
    lagged = optim.adagrad(lambda count: "0.1", lr_decay=0.5)
    with pytest.raises(TypeError, match=r"^adagrad \(lr\): the schedule must return a number"):
        lagged.update(lagged.init(params), params, params)


def test_exponential_decay_end_value_is_a_ceiling_from_a_rate_of_one_as_optax() -> None:
    # optax clips with maximum when decay_rate < 1, else with minimum: at a rate of exactly
    # 1 end_value is a ceiling, from count 0 on
    flat = optim.exponential_decay(1.0, 10, 1.0, end_value=0.5)
    assert [flat(0), flat(5), flat(50)] == [0.5, 0.5, 0.5]
    assert optim.exponential_decay(1.0, 10, 1.0, end_value=2.0)(50) == 1.0


def test_schedules_without_transition_steps_stay_at_their_initial_value_as_optax() -> None:
    for s in (optim.exponential_decay(0.3, 0, 0.5), optim.exponential_decay(0.3, 0, 2.0, 1),
              optim.polynomial_schedule(0.3, 1.0, 2.0, 0, 3)):
        assert [s(0), s(1), s(10**6)] == [0.3, 0.3, 0.3]


def test_a_schedule_returning_an_int_past_float_range_is_named_as_such():
    params = {"w": np.ones(2)}
    opt = optim.sgd(lambda count: 10**400)
    with pytest.raises(ValueError, match=r"the schedule returned an int beyond float64's "
                                         r"range at count 0"):
        opt.update(opt.init(params), params, params)


@pytest.mark.parametrize("make", [
    lambda: optim.constant_schedule(0.1), lambda: optim.cosine_decay_schedule(1.0, 4, 0.1),
    lambda: optim.linear_schedule(0.0, 1.0, 3, 1),
    lambda: optim.piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.1}),
    lambda: optim.warmup_cosine_decay_schedule(0.0, 1.0, 2, 6),
    lambda: optim.exponential_decay(1.0, 2, 0.5, staircase=True),
    lambda: optim.polynomial_schedule(1.0, 0.0, 2.0, 4),
    lambda: optim.join_schedules([optim.constant_schedule(1.0),
                                  optim.linear_schedule(1.0, 0.0, 2)], [3])])
def test_a_schedule_over_an_array_of_counts_gives_each_counts_value(make):
    # schedule(np.arange(n)), to plot it, as optax's: it failed on "truth value ambiguous"
    schedule = make()
    counts = np.arange(8).reshape(2, 4)
    values = schedule(counts)
    assert values.shape == (2, 4) and values.dtype == np.float64
    np.testing.assert_array_equal(values, [[schedule(int(c)) for c in row] for row in counts])
    assert type(schedule(3)) is float and type(schedule(np.array(3))) is float


def test_a_schedule_over_a_list_or_another_librarys_array_of_counts() -> None:
    schedule = optim.linear_schedule(0.0, 1.0, 10)
    np.testing.assert_array_equal(schedule([0, 5, 20]), [0.0, 0.5, 1.0])
    jnp = pytest.importorskip("jax.numpy")
    np.testing.assert_allclose(schedule(jnp.arange(3)), [0.0, 0.1, 0.2], rtol=1e-15)


def test_a_schedule_called_without_a_count_names_a_schedule():
    # Python's own error said `_over_counts.<locals>.schedule() missing ...` (a probe)
    with pytest.raises(TypeError, match=r"^schedule\(\) missing 1 required positional"):
        optim.linear_schedule(1.0, 0.0, 10)()
