"""Tests written from a mutation run over funcdl.optim (and tree.ravel, random, data,
initializers): each pins a formula detail that a single-point change to the code left
unnoticed by the rest of the suite."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from funcdl import optim, tree
from funcdl.optim import sam


def _grads(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}


# ---------------------------------------------------------------------------- sam

def test_sam_outer_step_reads_the_cached_params_not_the_adversarial_ones() -> None:
    # The outer optimizer's params are the cached outer point c (optax's state.cache), so a
    # weight decay pulls c, not the ascent point p: p2 = c - lr·(g1 + wd·c).
    lr, rho, wd = 0.1, 0.5, 0.3
    opt = sam(optim.sgd(lr, weight_decay=wd), optim.sgd(rho), sync_period=2)
    c = _grads(0)
    state = opt.init(c)
    g0 = {k: x**3 - x for k, x in c.items()}
    u, state = opt.update(state, g0, c)
    p1 = optim.apply_updates(c, u)
    for k in c:  # the ascent step: p1 = c + rho·g0
        np.testing.assert_allclose(p1[k], c[k] + rho * g0[k], rtol=1e-12)
    g1 = {k: x**3 - x for k, x in p1.items()}
    u, state = opt.update(state, g1, p1)
    p2 = optim.apply_updates(p1, u)
    for k in c:
        np.testing.assert_allclose(p2[k], c[k] - lr * (g1[k] + wd * c[k]), rtol=1e-12,
                                   atol=1e-14)


# ---------------------------------------------------------------------------- apply_updates

def test_apply_updates_adds_on_the_mixed_dtype_and_scalar_paths_too() -> None:
    # Only same-dtype ndarrays take the fast path; the others (float32 params with float64
    # updates, NumPy and Python scalars, 0-d arrays, float16) must add as well.
    params = {"f32": np.array([1.0, -2.0], np.float32), "np": np.float64(1.5), "py": 0.25,
              "f16": np.array([0.5], np.float16), "zero_d": np.array(3.0, np.float32)}
    updates = {"f32": np.array([0.5, 0.25]), "np": np.float64(-0.5), "py": 0.5,
               "f16": np.array([0.25], np.float64), "zero_d": np.float64(-1.0)}
    new = optim.apply_updates(params, updates)
    want = {"f32": [1.5, -1.75], "np": 1.0, "py": 0.75, "f16": [0.75], "zero_d": 2.0}
    for k, v in want.items():
        np.testing.assert_array_equal(np.asarray(new[k], np.float64), v)
        assert np.asarray(new[k]).dtype == np.asarray(params[k]).dtype


# ---------------------------------------------------------------------------- tree.ravel

def test_ravel_refuses_an_int64_just_past_2_53_next_to_floats_and_keeps_2_53() -> None:
    # 2**53 + 1 is the first integer float64 cannot hold: the bound is exactly 2**53.
    vec, unravel = tree.ravel({"k": np.array([2**53], np.int64), "w": np.zeros(2)})
    assert int(unravel(vec)["k"][0]) == 2**53
    vec, unravel = tree.ravel({"k": np.array([-(2**53)], np.int64), "w": np.zeros(2)})
    assert int(unravel(vec)["k"][0]) == -(2**53)
    for bad in (2**53 + 1, 2**53 + 2, -(2**53) - 2):
        with pytest.raises(ValueError, match="beyond 2\\*\\*53"):
            tree.ravel({"k": np.array([bad], np.int64), "w": np.zeros(2)})


def test_unravel_refuses_a_float_entry_at_an_int_leafs_max_plus_one() -> None:
    # An int8 leaf takes entries truncated: 127.9 is 127, but 128.0 (max + 1) would wrap to
    # -128, and -128.9 truncates to -128 while -129.0 is out of range.
    _, unravel = tree.ravel({"i": np.zeros(1, np.int8), "w": np.zeros(1)})
    assert unravel(np.array([127.9, 0.5]))["i"][0] == 127
    assert unravel(np.array([-128.9, 0.5]))["i"][0] == -128
    for bad in (128.0, -129.0):
        with pytest.raises(ValueError, match="within int8's range"):
            unravel(np.array([bad, 0.5]))


# ---------------------------------------------------------------------------- scale_by_adam

def test_adam_with_a_float32_mu_dtype_steps_as_the_float64_one_to_float32_rounding() -> None:
    # mu_dtype only changes where m is stored, not the formula m = b1·m + (1-b1)·g.
    params = _grads(1)
    half, full = optim.scale_by_adam(mu_dtype=np.float32), optim.scale_by_adam()
    s_half, s_full = half.init(params), full.init(params)
    assert s_half.mu["w"].dtype == np.float32
    for t in range(4):
        g = _grads(10 + t)
        u_half, s_half = half.update(s_half, g, params)
        u_full, s_full = full.update(s_full, g, params)
        for k in params:
            np.testing.assert_allclose(u_half[k], u_full[k], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(s_half.mu[k], s_full.mu[k], rtol=1e-6, atol=1e-7)

