"""funcdl.optim: hand-computed steps of every transform and alias. Cross-checks against
torch.optim and numerical edge cases: test_optim_numerics.py; schedules: test_schedules.py;
convergence, purity, dtypes, state invariants and loud errors: test_optim_invariants.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _optim_util import close, run, scalar_run
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from funcdl import optim, tree

# ---------------------------------------------------------------------------- hand-computed

def test_sgd_plain() -> None:
    hist, _ = run(optim.sgd(0.1), {"p": np.array([1.0, 2.0])},
                  [{"p": np.array([0.5, -1.0])}, {"p": np.array([2.0, 0.0])}])
    np.testing.assert_allclose(hist[0]["p"], [0.95, 2.1], rtol=1e-14)
    np.testing.assert_allclose(hist[1]["p"], [0.75, 2.1], rtol=1e-14)


def test_sgd_momentum() -> None:
    # b1 = g1 = 0.5 -> p = 1 - 0.1*0.5 = 0.95; b2 = 0.9*0.5 - 1 = -0.55 -> p = 0.95 + 0.055
    # b3 = 0.9*(-0.55) + 2 = 1.505 -> p = 1.005 - 0.1505
    close(scalar_run(optim.sgd(0.1, momentum=0.9), 1.0, [0.5, -1.0, 2.0]),
          [0.95, 1.005, 0.8545])


def test_sgd_nesterov() -> None:
    # b1 = 0.5, step 0.5 + 0.9*0.5 = 0.95 -> p = 1 - 0.095 = 0.905
    # b2 = 0.45 - 1 = -0.55, step -1 + 0.9*(-0.55) = -1.495 -> p = 0.905 + 0.1495 = 1.0545
    close(scalar_run(optim.sgd(0.1, momentum=0.9, nesterov=True), 1.0, [0.5, -1.0]),
          [0.905, 1.0545])


def test_sgd_weight_decay() -> None:
    # g' = g + 0.1 p: 0.5 + 0.1 = 0.6 -> p = 0.94; g' = -1 + 0.094 = -0.906 -> p = 0.94 + 0.0906
    close(scalar_run(optim.sgd(0.1, weight_decay=0.1), 1.0, [0.5, -1.0]), [0.94, 1.0306])
    # With momentum: the decayed gradient goes into the buffer (torch order).
    # b1 = 0.6 -> p = 0.94; g' = -0.906, b2 = 0.54 - 0.906 = -0.366 -> p = 0.94 + 0.0366
    close(scalar_run(optim.sgd(0.1, momentum=0.9, weight_decay=0.1), 1.0, [0.5, -1.0]),
          [0.94, 0.9766])


def test_adam_three_steps() -> None:
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    # Step 1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25 -> p = 1 - 0.1*0.5/(0.5 + eps).
    p1 = 1.0 - lr * 0.5 / (0.5 + eps)
    # Step 2, g = -1: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975.
    m2, v2 = -0.055, 0.00124975
    p2 = p1 - lr * (m2 / (1 - b1**2)) / (math.sqrt(v2 / (1 - b2**2)) + eps)
    # Step 3, g = 2: m = -0.0495 + 0.2 = 0.1505, v = 0.00124850025 + 0.004 = 0.00524850025.
    m3, v3 = 0.1505, 0.00524850025
    p3 = p2 - lr * (m3 / (1 - b1**3)) / (math.sqrt(v3 / (1 - b2**3)) + eps)
    close(scalar_run(optim.adam(lr), 1.0, [0.5, -1.0, 2.0]), [p1, p2, p3])
    assert p1 == pytest.approx(0.9, abs=1e-8) and p2 == pytest.approx(0.93661, abs=1e-5)


def test_adam_eps_outside_sqrt_and_bias_corrected() -> None:
    # A large eps tells sqrt(v̂) + eps from sqrt(v̂ + eps); the first step is g / (|g| + eps)
    # only with both bias corrections.
    close(scalar_run(optim.adam(0.1, eps=0.1), 1.0, [0.5]), [1.0 - 0.1 * 0.5 / 0.6])


def test_adam_l2_weight_decay() -> None:
    # torch Adam adds wd·p to the gradient: g' = 0.5 + 0.1 = 0.6, first step 0.1·0.6/0.6.
    close(scalar_run(optim.adam(0.1, weight_decay=0.1), 1.0, [0.5]),
          [1.0 - 0.1 * 0.6 / (0.6 + 1e-8)])


def test_adamw_decoupled() -> None:
    lr, wd, eps = 0.1, 0.1, 1e-8
    p1 = 1.0 * (1 - lr * wd) - lr * 0.5 / (0.5 + eps)  # 0.99 - 0.1 = 0.89
    m2, v2 = -0.055, 0.00124975
    p2 = p1 * (1 - lr * wd) - lr * (m2 / (1 - 0.9**2)) / (math.sqrt(v2 / (1 - 0.999**2)) + eps)
    close(scalar_run(optim.adamw(lr, weight_decay=wd), 1.0, [0.5, -1.0]), [p1, p2])
    assert p1 == pytest.approx(0.89, abs=1e-8)


def test_rmsprop_plain() -> None:
    # v = 0.01·0.25 = 0.0025, sqrt = 0.05 -> p = 1 - 0.01·0.5/0.05 = 0.9
    # v = 0.99·0.0025 + 0.01 = 0.012475 -> p = 0.9 + 0.01/sqrt(0.012475)
    p1 = 1.0 - 0.01 * 0.5 / (0.05 + 1e-8)
    p2 = p1 + 0.01 * 1.0 / (math.sqrt(0.012475) + 1e-8)
    close(scalar_run(optim.rmsprop(0.01), 1.0, [0.5, -1.0]), [p1, p2])


def test_rmsprop_centered() -> None:
    # v = 0.0025, m = 0.005 -> var = 0.0025 - 0.000025 = 0.002475
    # v = 0.012475, m = 0.99·0.005 - 0.01 = -0.00505 -> var = 0.012475 - 0.0000255025
    p1 = 1.0 - 0.01 * 0.5 / (math.sqrt(0.002475) + 1e-8)
    p2 = p1 + 0.01 * 1.0 / (math.sqrt(0.012475 - 0.00505**2) + 1e-8)
    close(scalar_run(optim.rmsprop(0.01, centered=True), 1.0, [0.5, -1.0]), [p1, p2])


def test_rmsprop_momentum_and_weight_decay() -> None:
    d1 = 0.5 / (0.05 + 1e-8)                                # 10
    d2 = -1.0 / (math.sqrt(0.012475) + 1e-8)
    b2 = 0.9 * d1 + d2
    close(scalar_run(optim.rmsprop(0.01, momentum=0.9), 1.0, [0.5, -1.0]),
          [1.0 - 0.01 * d1, 1.0 - 0.01 * d1 - 0.01 * b2])
    # g' = 0.5 + 0.5·1 = 1: v = 0.01, sqrt = 0.1 -> p = 1 - 0.01·1/0.1 = 0.9
    close(scalar_run(optim.rmsprop(0.01, weight_decay=0.5), 1.0, [0.5]),
          [1.0 - 0.01 / (0.1 + 1e-8)])


def test_adagrad() -> None:
    # s = 0.25 -> p = 1 - 0.1·0.5/0.5 = 0.9; s = 1.25 -> p = 0.9 + 0.1/sqrt(1.25)
    p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-10)
    close(scalar_run(optim.adagrad(0.1), 1.0, [0.5, -1.0]),
          [p1, p1 + 0.1 / (math.sqrt(1.25) + 1e-10)])
    # lr_decay: clr = lr / (1 + t·lr_decay), t = 0, 1, 2.
    got = scalar_run(optim.adagrad(0.1, lr_decay=0.5), 1.0, [0.5, -1.0, 1.0])
    p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-10)
    p2 = p1 + (0.1 / 1.5) * 1.0 / (math.sqrt(1.25) + 1e-10)
    p3 = p2 - (0.1 / 2.0) * 1.0 / (math.sqrt(2.25) + 1e-10)
    close(got, [p1, p2, p3])
    # initial accumulator 1 and weight decay 0.5: g' = 1, s = 1 + 1 = 2.
    close(scalar_run(optim.adagrad(0.1, weight_decay=0.5, initial_accumulator_value=1.0),
                     1.0, [0.5]), [1.0 - 0.1 / (math.sqrt(2.0) + 1e-10)])


def test_clip_by_global_norm() -> None:
    clip = optim.clip_by_global_norm(1.0)
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}  # global norm 5
    out, _ = clip.update(clip.init(grads), grads)
    np.testing.assert_allclose(out["a"], [0.6], rtol=1e-15)
    np.testing.assert_allclose(out["b"], [[0.8]], rtol=1e-15)
    assert optim.global_norm(out) == pytest.approx(1.0, rel=1e-15)
    two = optim.clip_by_global_norm(2.0)
    out, _ = two.update(two.init(grads), grads)
    np.testing.assert_allclose(out["a"], [1.2], rtol=1e-15)
    np.testing.assert_allclose(out["b"], [[1.6]], rtol=1e-15)
    near = optim.clip_by_global_norm(4.5)  # just below the norm: still clipped
    out, _ = near.update(near.init(grads), grads)
    np.testing.assert_allclose(out["a"], [2.7], rtol=1e-15)
    np.testing.assert_allclose(out["b"], [[3.6]], rtol=1e-15)
    for limit in (5.0, 10.0):  # at or above the norm: untouched
        loose = optim.clip_by_global_norm(limit)
        out, _ = loose.update(loose.init(grads), grads)
        assert np.array_equal(out["a"], [3.0]) and np.array_equal(out["b"], [[4.0]])
    zeros = tree.zeros_like(grads)
    out, _ = clip.update(clip.init(zeros), zeros)  # no 0/0 (warnings are errors)
    assert all(np.array_equal(x, np.zeros_like(x)) for x in tree.leaves(out))


_finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=4), elements=_finite),
       hnp.arrays(np.float64, st.integers(1, 5), elements=_finite),
       st.floats(1e-3, 1e3))
def test_clip_by_global_norm_property(a: Any, b: Any, max_norm: float) -> None:
    grads = {"a": a, "b": b}
    clip = optim.clip_by_global_norm(max_norm)
    out, _ = clip.update(clip.init(grads), grads)
    norm = math.sqrt(float(np.sum(a * a) + np.sum(b * b)))
    if norm > max_norm:
        assert optim.global_norm(out) == pytest.approx(max_norm, rel=1e-12)
    factor = 1.0 if norm <= max_norm else max_norm / norm  # same direction, scaled
    np.testing.assert_allclose(out["a"], a * factor, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(out["b"], b * factor, rtol=1e-12, atol=1e-300)


def test_small_transforms() -> None:
    grads = {"w": np.array([1.0, -2.0], np.float32)}
    for opt, want in [(optim.identity(), [1.0, -2.0]), (optim.scale(3.0), [3.0, -6.0]),
                      (optim.scale_by_learning_rate(0.5), [-0.5, 1.0]),
                      (optim.scale_by_learning_rate(0.5, flip_sign=False), [0.5, -1.0]),
                      (optim.scale_by_schedule(lambda c: 2.0), [2.0, -4.0])]:
        out, _ = opt.update(opt.init(grads), grads)
        np.testing.assert_array_equal(out["w"], want)
        assert out["w"].dtype == np.float32
    wd = optim.add_decayed_weights(0.5)
    out, _ = wd.update(wd.init(grads), grads, {"w": np.array([2.0, 4.0], np.float32)})
    np.testing.assert_array_equal(out["w"], [2.0, 0.0])


def test_chain_equals_composition_by_hand() -> None:
    params = {"w": np.array([1.0, -2.0])}
    grads = {"w": np.array([3.0, 4.0])}
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.scale(-0.5))
    updates, state = opt.update(opt.init(params), grads, params)
    np.testing.assert_allclose(updates["w"], [-0.3, -0.4], rtol=1e-15)
    assert isinstance(state, optim.ChainState) and len(state.states) == 2


def test_named_chain_exposes_states_by_name() -> None:
    opt = optim.named_chain(("adam", optim.scale_by_adam()),
                            ("lr", optim.scale_by_learning_rate(1e-3)))
    params = {"w": np.ones(2)}
    state = opt.init(params)
    _, state = opt.update(state, {"w": np.ones(2)}, params)
    assert isinstance(state, optim.NamedChainState)
    assert int(state.states["adam"].count) == 1
    assert int(optim.adam().init(params).states["adam"].count) == 0


@pytest.mark.parametrize("make, first_step", [
    # torch.optim's defaults: Adam/AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, AdamW's
    # weight_decay 1e-2; RMSprop lr 1e-2, alpha 0.99, eps 1e-8; Adagrad lr 1e-2, eps 1e-10.
    # From p = 2, g = 0.5: each first step by hand.
    (optim.adam, 2.0 - 1e-3 * 0.5 / (0.5 + 1e-8)),
    (optim.adamw, 2.0 * (1 - 1e-3 * 1e-2) - 1e-3 * 0.5 / (0.5 + 1e-8)),
    (optim.rmsprop, 2.0 - 1e-2 * 0.5 / (math.sqrt(0.01 * 0.25) + 1e-8)),
    (optim.adagrad, 2.0 - 1e-2 * 0.5 / (0.5 + 1e-10)),
])
def test_the_aliases_defaults_are_torchs(make, first_step) -> None:
    # every test passed its hyperparameters: adamw's default weight_decay could change
    close(scalar_run(make(), 2.0, [0.5]), [first_step])


def test_clip_is_torchs_clip_grad_value_entry_by_entry() -> None:
    g = {"w": np.array([[-3.0, 0.5], [2.0, -0.25]], np.float32), "b": np.array([1.5, -1.5])}
    opt = optim.clip(1.0)
    u, _ = opt.update(opt.init(g), g)
    np.testing.assert_array_equal(u["w"], [[-1.0, 0.5], [1.0, -0.25]])
    np.testing.assert_array_equal(u["b"], [1.0, -1.0])
    assert u["w"].dtype == np.float32
    u, _ = optim.clip(np.inf).update(optim.clip(np.inf).init(g), g)
    np.testing.assert_array_equal(u["w"], g["w"])
    with pytest.raises(ValueError, match=r"clip: max_delta must be a number >= 0"):
        optim.clip(-1.0)


def test_set_to_zero_under_a_mask_freezes_params_weight_decay_and_momentum_included() -> None:
    # masked(adamw) leaves the frozen ones its raw gradient (optax's masked), and zeroed
    # grads still decay: only a zero update after the optimizer keeps them where they were
    p = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}
    g = {"w": np.array([0.3, 0.1]), "b": np.array([-0.2])}
    opt = optim.chain(optim.adamw(0.1, weight_decay=0.1),
                      optim.masked(optim.set_to_zero(), {"w": True, "b": False}))
    hist, _ = run(opt, p, [g] * 5)
    np.testing.assert_array_equal(hist[-1]["w"], p["w"])
    plain, _ = run(optim.adamw(0.1, weight_decay=0.1), p, [g] * 5)
    np.testing.assert_array_equal(hist[-1]["b"], plain[-1]["b"])


def test_settings_past_float32s_range_are_inf_there_without_a_warning() -> None:
    g = {"w": np.array([3.0, -3.0], np.float32)}
    u, _ = optim.clip(1e39).update(optim.clip(1e39).init(g), g)
    np.testing.assert_array_equal(u["w"], g["w"])  # clips nothing, as inf
    state = optim.scale_by_rms(initial_scale=1e39).init(g)
    assert np.isinf(state.nu["w"]).all() and state.nu["w"].dtype == np.float32
