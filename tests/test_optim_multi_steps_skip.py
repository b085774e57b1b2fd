"""multi_steps' should_skip_update_fn, with skip_not_finite and skip_large_updates, as
optax's MultiSteps: a skipped gradient leaves the state as it was but for skip_state."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from funcdl import optim

P = {"w": np.zeros(3)}
GOOD = [{"w": np.array([1.0, 2.0, 3.0])}, {"w": np.array([3.0, 2.0, 1.0])}]
BAD = {"w": np.array([1.0, np.nan, np.inf])}


def _steps(opt: optim.GradientTransformation, grads: list) -> tuple[list, object]:
    state, out = opt.init(P), []
    for g in grads:
        u, state = opt.update(state, g, P)
        out.append(u)
    return out, state


def test_a_non_finite_gradient_is_skipped_as_if_never_taken():
    opt = optim.multi_steps(optim.sgd(1.0), 2, should_skip_update_fn=optim.skip_not_finite)
    with_bad, state = _steps(opt, [GOOD[0], BAD, GOOD[1]])
    without, _ = _steps(optim.multi_steps(optim.sgd(1.0), 2), GOOD)
    np.testing.assert_array_equal(with_bad[1]["w"], 0.0)  # the skipped one: zeros
    np.testing.assert_array_equal(with_bad[2]["w"], without[1]["w"])  # the mean of the two
    np.testing.assert_array_equal(with_bad[2]["w"], [-2.0, -2.0, -2.0])
    assert state.gradient_step == 1 and state.mini_step == 0
    assert state.skip_state["num_not_finite"] == 0 and not state.skip_state["should_skip"]
    _, after_bad = _steps(opt, [GOOD[0], BAD])
    assert after_bad.skip_state["num_not_finite"] == 2 and after_bad.skip_state["should_skip"]
    assert after_bad.mini_step == 1  # BAD not counted


def test_large_updates_are_skipped_and_nan_norms_too():
    skip = functools.partial(optim.skip_large_updates, max_squared_norm=10.0)
    verdict, info = skip({"w": np.array([1.0, 2.0])}, 0, None)
    assert not verdict and info["norm_squared"] == 5.0
    verdict, info = skip({"w": np.array([3.0, 1.0])}, 0, None)
    assert verdict and info["norm_squared"] == 10.0  # not < 10
    assert skip({"w": np.array([np.nan])}, 0, None)[0]
    assert skip({"w": np.array([1e200], np.float64)}, 0, None)[0]  # inf norm, no warning
    opt = optim.multi_steps(optim.sgd(1.0), 1, should_skip_update_fn=skip)
    out, state = _steps(opt, [{"w": np.array([1.0, 1.0, 1.0])}, {"w": np.full(3, 5.0)}])
    np.testing.assert_array_equal(out[0]["w"], -1.0)
    np.testing.assert_array_equal(out[1]["w"], 0.0)
    assert state.gradient_step == 1


def test_without_a_function_the_state_holds_an_empty_skip_state():
    state = optim.multi_steps(optim.sgd(0.1), 2).init(P)
    assert state.skip_state == () and state._fields[-1] == "skip_state"


@pytest.mark.parametrize("fn, kind, words", [
    ("not a function", TypeError, "must be a function"),
    (lambda g, s, p: True, TypeError, r"must return \(skip, skip_state\)"),
    (lambda g, s, p: (1, ()), TypeError, "must return a bool"),
    (lambda g, s, p: (np.array([True]), ()), TypeError, "must return a bool"),
])
def test_a_bad_function_is_named(fn, kind, words):
    with pytest.raises(kind, match=f"multi_steps: should_skip_update_fn {words}"):
        opt = optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=fn)
        opt.update(opt.init(P), GOOD[0], P)


def test_a_skipped_gradient_of_another_tree_is_still_an_error():
    opt = optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=lambda g, s, p: (True, ()))
    with pytest.raises(ValueError, match=r"multi_steps.update: .*\['w'\]"):
        opt.update(opt.init(P), {"w": np.zeros(4)}, P)


@pytest.mark.usefixtures("jax64")
def test_against_optax():
    optax = pytest.importorskip("optax")
    grads = [GOOD[0], BAD, GOOD[1], {"w": np.array([0.5, -1.0, 2.0])}, BAD,
             {"w": np.array([1.0, 1.0, -1.0])}]
    ours, state = _steps(optim.multi_steps(optim.adam(0.1), 2,
                                           should_skip_update_fn=optim.skip_not_finite), grads)
    tx = optax.MultiSteps(optax.adam(0.1), 2, should_skip_update_fn=optax.skip_not_finite,
                          accumulator_dtype=np.float64)
    s = tx.init(P)
    for g, mine in zip(grads, ours, strict=True):
        theirs, s = tx.update(g, s, P)
        np.testing.assert_allclose(mine["w"], np.asarray(theirs["w"]), rtol=1e-12, atol=0)
    assert int(state.gradient_step) == int(s.gradient_step)
    assert int(state.skip_state["num_not_finite"]) == int(s.skip_state["num_not_finite"])


def test_skip_large_updates_unbound_or_with_a_bad_bound_is_named():
    with pytest.raises(TypeError, match=r"multi_steps: should_skip_update_fn=skip_large_updates "
                                        r"needs its max_squared_norm bound"):
        optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=optim.skip_large_updates)
    for bad, kind in [("10", TypeError), (np.array([1.0, 2.0]), TypeError),
                      (float("nan"), ValueError)]:
        fn = functools.partial(optim.skip_large_updates, max_squared_norm=bad)
        opt = optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=fn)
        with pytest.raises(kind, match=r"multi_steps: should_skip_update_fn\(grads, "
                                       r"gradient_step, params\) raised .*skip_large_updates: "
                                       r"max_squared_norm"):
            opt.init(P)


def test_skip_not_finite_on_object_grads_is_named_by_multi_steps():
    opt = optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=optim.skip_not_finite)
    state = opt.init(P)
    with pytest.raises(TypeError, match=r"multi_steps: should_skip_update_fn"):
        opt.update(state, {"w": np.array([1.0, None, 2.0], dtype=object)}, P)


def test_a_skipped_gradient_must_still_be_real_floats():
    opt = optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=lambda g, s, p: (True, ()))
    with pytest.raises(TypeError, match=r"multi_steps.update: grads\['w'\] has dtype int64"):
        opt.update(opt.init(P), {"w": np.ones(3, np.int64)}, P)


def test_has_updated_says_when_the_inner_optimizer_stepped():
    opt = optim.multi_steps(optim.sgd(0.1), 3, should_skip_update_fn=optim.skip_not_finite)
    state = opt.init(P)
    assert optim.has_updated(state) is False  # nothing applied yet
    seen = []
    for g in [GOOD[0], GOOD[1], GOOD[0], BAD, GOOD[1], GOOD[0], GOOD[1]]:
        _, state = opt.update(state, g, P)
        seen.append(optim.has_updated(state))
    # the 3rd and 6th good gradients step; a skipped one leaves the answer as it was (optax's)
    assert seen == [False, False, True, True, False, False, True]
    with pytest.raises(TypeError, match=r"has_updated.*MultiStepsState"):
        optim.has_updated(optim.sgd(0.1).init(P))


@pytest.mark.usefixtures("jax64")
def test_has_updated_against_optax():
    optax = pytest.importorskip("optax")
    grads = [GOOD[0], GOOD[1], BAD, GOOD[0], GOOD[1]]
    opt = optim.multi_steps(optim.adam(0.1), 2, should_skip_update_fn=optim.skip_not_finite)
    tx = optax.MultiSteps(optax.adam(0.1), 2, should_skip_update_fn=optax.skip_not_finite)
    state, s = opt.init(P), tx.init(P)
    for g in grads:
        _, state = opt.update(state, g, P)
        _, s = tx.update(g, s, P)
        assert optim.has_updated(state) == bool(tx.has_updated(s))
