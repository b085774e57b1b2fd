"""Tests written from a mutation run over funcdl.optim's combinators (chain, masked,
partition, inject_hyperparams, the wrappers, lookahead, reduce_on_plateau) and its schedules:
each pins a detail that a single-point change to the code left unnoticed by the suite
without its optax and torch peers (closed forms and twins here, no peer needed)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import optim, tree


def _grads(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}


# ---------------------------------------------------------------------------- masked

def test_a_prefix_mask_flag_over_an_empty_subtree_stands_for_no_leaf() -> None:
    # A flag at a subtree with no leaves marks none: the flags after it stay in line with
    # their leaves (one flag too many would shift 'b''s onto 'c').
    rng = np.random.default_rng(0)
    params = {"a": {}, "b": rng.normal(size=2), "c": rng.normal(size=3)}
    grads = {"a": {}, "b": rng.normal(size=2), "c": rng.normal(size=3)}
    opt = optim.masked(optim.set_to_zero(), {"a": False, "b": True, "c": False})
    u, _ = opt.update(opt.init(params), grads, params)
    np.testing.assert_array_equal(u["b"], np.zeros(2))
    np.testing.assert_array_equal(u["c"], grads["c"])


# ---------------------------------------------------------------------------- partition

def test_partition_threads_each_groups_state_across_updates() -> None:
    # The momentum group's second step is that of sgd(momentum) run on its leaf alone.
    labels = {"w": "m", "b": "p"}
    opt = optim.partition({"m": optim.sgd(0.1, momentum=0.9), "p": optim.sgd(0.1)}, labels)
    alone = optim.sgd(0.1, momentum=0.9)
    params = _grads(1)
    state, s_alone = opt.init(params), alone.init({"w": params["w"]})
    for seed in (2, 3, 4):
        g = _grads(seed)
        u, state = opt.update(state, g, params)
        want, s_alone = alone.update(s_alone, {"w": g["w"]}, {"w": params["w"]})
        np.testing.assert_allclose(u["w"], want["w"], rtol=1e-12)
        np.testing.assert_allclose(u["b"], -0.1 * g["b"], rtol=1e-12)


# ---------------------------------------------------------------------------- conditionally

def test_conditionally_transform_leaves_the_inner_state_alone_at_skipped_steps() -> None:
    # inner runs at steps 0, 2, 4: its momentum sees those grads only, as the plain
    # optimizer fed them alone.
    inner = optim.sgd(0.1, momentum=0.9)
    opt = optim.conditionally_transform(inner, lambda step: step % 2 == 0)
    params = _grads(0)
    state, s_alone = opt.init(params), inner.init(params)
    for step, seed in enumerate(range(5, 10)):
        g = _grads(seed)
        u, state = opt.update(state, g, params)
        if step % 2 == 0:
            want, s_alone = inner.update(s_alone, g, params)
        else:
            want = g
        for k in g:
            np.testing.assert_allclose(u[k], want[k], rtol=1e-12)
        assert int(state.step) == step + 1


# ---------------------------------------------------------------------------- inject_hyperparams

def test_an_injected_int_hyperparameter_stays_an_int64_after_updates() -> None:
    opt = optim.inject_hyperparams(optim.apply_every)(k=2)
    params = _grads(0)
    state = opt.init(params)
    for seed in (1, 2, 3):
        _, state = opt.update(state, _grads(seed), params)
        assert state.hyperparams["k"].dtype == np.int64
        assert int(state.hyperparams["k"]) == 2


# ---------------------------------------------------------------------------- apply_every

def test_apply_every_keeps_its_count_mod_k_in_the_state() -> None:
    # As optax's: the count wraps to 0 at the emitting update.
    opt = optim.apply_every(3)
    params = _grads(0)
    state = opt.init(params)
    seen = []
    for seed in range(1, 8):
        _, state = opt.update(state, _grads(seed), params)
        seen.append(int(state.count))
    assert seen == [1, 2, 0, 1, 2, 0, 1]


# ---------------------------------------------------------------------------- multi_steps skip

def test_skip_not_finite_skips_a_gradient_with_a_single_nan_entry() -> None:
    g = {"w": np.ones((3, 2)), "b": np.array([1.0, np.nan])}
    skip, info = optim.skip_not_finite(g, np.int64(0), None)
    assert bool(skip) and bool(info["should_skip"])
    assert int(info["num_not_finite"]) == 1
    skip, info = optim.skip_not_finite({"w": np.ones(2)}, np.int64(0), None)
    assert not bool(skip) and int(info["num_not_finite"]) == 0
    # and multi_steps takes it as never given
    opt = optim.multi_steps(optim.sgd(1.0), 2, should_skip_update_fn=optim.skip_not_finite)
    params = {"w": np.zeros(2)}
    state = opt.init(params)
    u, state = opt.update(state, {"w": np.array([np.inf, 1.0])}, params)
    np.testing.assert_array_equal(u["w"], np.zeros(2))
    assert int(state.mini_step) == 0


# ---------------------------------------------------------------------------- reduce_on_plateau

def test_reduce_on_plateau_counts_no_plateau_during_a_cooldown() -> None:
    # patience 2, cooldown 2, a constant loss: reductions at updates 3 and 7 (the two
    # cooldown updates 4 and 5 are not counted as bad), plateau_count 0 through the cooldown.
    opt = optim.reduce_on_plateau(factor=0.5, patience=2, cooldown=2)
    params = {"w": np.zeros(2)}
    state = opt.init(params)
    g = {"w": np.array([1.0, -2.0])}
    scales, plateaus, cools = [], [], []
    for _ in range(7):
        u, state = opt.update(state, g, params, value=1.0)
        scales.append(float(u["w"][0]))
        plateaus.append(int(state.plateau_count))
        cools.append(int(state.cooldown_count))
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert plateaus == [0, 1, 0, 0, 0, 1, 0]
    assert cools == [0, 0, 2, 1, 0, 0, 2]


# ---------------------------------------------------------------------------- torch's one-cycle

def test_onecycle_with_pct_start_one_peaks_at_the_last_count() -> None:
    # pct_start=1: the rise ends at T - 1 = 9, where torch's lr is max_lr (its step 9 lies
    # in the rise, t <= 9, at pct 1), and the fall has length 0 and is never entered.
    lr = optim.onecycle_lr_schedule(10, 1.0, pct_start=1.0)
    assert lr(9) == 1.0
    assert lr(12) == 1.0
    m = optim.onecycle_momentum_schedule(10, pct_start=1.0)
    assert m(9) == 0.85


def test_onecycle_three_phase_third_leg_runs_from_the_initial_lr_to_the_minimum() -> None:
    T, peak, div, final = 100, 1.0, 25.0, 1e4
    lr = optim.onecycle_lr_schedule(T, peak, anneal_strategy="linear", div_factor=div,
                                    final_div_factor=final, three_phase=True)
    initial, low = peak / div, peak / div / final
    e2 = float(2 * 0.3 * T) - 2  # torch's end of the second leg
    for t in (59, 70, 85, 98, 99):
        pct = (t - e2) / (T - 1 - e2)
        assert math.isclose(lr(t), (low - initial) * pct + initial, rel_tol=1e-12)


# ---------------------------------------------------------------------------- lookahead

def test_lookahead_reset_restarts_the_fast_state_from_the_fast_params() -> None:
    # As optax's: fast_optimizer.init(params.fast), the fast params the update was given,
    # which an init that copies the params (schedule-free's z) shows.
    fast = optim.schedule_free_sgd(0.1)
    opt = optim.lookahead(fast, sync_period=1, slow_step_size=0.5, reset_state=True)
    rng = np.random.default_rng(0)
    pair = optim.LookaheadParams(fast={"w": rng.normal(size=3)}, slow={"w": rng.normal(size=3)})
    state = opt.init(pair)
    _, state = opt.update(state, {"w": rng.normal(size=3)}, pair)
    want = fast.init(pair.fast)
    for got, w in zip(tree.leaves(state.fast_state), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(got, w)
