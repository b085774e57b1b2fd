"""funcdl.optim's Adafactor (scale_by_factored_rms, clip_by_block_rms,
scale_by_param_block_rms), lookahead, adaptive_grad_clip, zero_nans, keep_params_nonnegative,
add_noise (optax's) and sgd's dampening (torch's): hand-written float64 references over a few
steps, state types, float32 kept, io round trips, bad inputs. Against optax and torch:
test_optim_more3_peers.py."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _optim_util import close, problem, resume

import funcdl as fd
from funcdl import optim, tree
from funcdl.optim import (
    AddNoiseState,
    FactoredState,
    LookaheadParams,
    LookaheadState,
    ZeroNansState,
    adafactor,
    adaptive_grad_clip,
    add_noise,
    clip_by_block_rms,
    keep_params_nonnegative,
    lookahead,
    scale_by_factored_rms,
    scale_by_param_block_rms,
    zero_nans,
)
from funcdl.optim._dampening import DampenedTraceState

GT = optim.GradientTransformation
RNG = np.random.default_rng(3)


def _beta(t: int, rate: float = 0.8, offset: int = 0) -> float:
    return 1.0 - (t - offset) ** -rate  # t: the step being taken, 1 at the first


# ---------------------------------------------------------------------------- factored rms

def test_factored_rms_of_a_matrix_is_the_outer_product_of_row_and_column_means() -> None:
    # (4, 3): the rows (length 3) and columns (length 4) of the paper; V ≈ R Cᵀ / mean(R)
    gs = [RNG.normal(size=(4, 3)) for _ in range(4)]
    opt = scale_by_factored_rms(min_dim_size_to_factor=3, epsilon=1e-3, decay_rate=0.7)
    state = opt.init({"w": np.zeros((4, 3))})
    r, c = np.zeros(4), np.zeros(3)
    for t, g in enumerate(gs, start=1):
        b = _beta(t, 0.7)
        s = g**2 + 1e-3
        r = b * r + (1 - b) * s.mean(axis=1)  # one per row
        c = b * c + (1 - b) * s.mean(axis=0)  # one per column
        want = g / np.sqrt(np.outer(r, c) / r.mean())
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], want, rtol=1e-13)
    # optax's layout: v_row lacks the largest axis (0), v_col the next
    assert state.v_row["w"].shape == (3,) and state.v_col["w"].shape == (4,)
    assert state.v["w"].shape == (1,) and int(state.count) == 4


def test_factored_rms_of_a_rank_3_leaf_factors_its_two_largest_axes_per_slice() -> None:
    gs = [RNG.normal(size=(2, 5, 4)) for _ in range(3)]
    opt = scale_by_factored_rms(min_dim_size_to_factor=4, step_offset=-2)
    state = opt.init({"w": np.zeros((2, 5, 4))})
    r, c = np.zeros((2, 5)), np.zeros((2, 4))
    for t, g in enumerate(gs, start=1):
        b = _beta(t, 0.8, -2)
        s = g**2 + 1e-30
        r, c = b * r + (1 - b) * s.mean(axis=2), b * c + (1 - b) * s.mean(axis=1)
        want = np.stack([g[i] / np.sqrt(np.outer(r[i], c[i]) / r[i].mean()) for i in range(2)])
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], want, rtol=1e-13)


@pytest.mark.parametrize("factored", [True, False])
def test_small_or_unfactored_leaves_keep_a_full_second_moment(factored: bool) -> None:
    # (5, 2): its second largest axis (2) is below 3, so not factored even when asked
    gs = [RNG.normal(size=(5, 2)) for _ in range(4)]
    opt = scale_by_factored_rms(factored, 0.6, min_dim_size_to_factor=2 if not factored else 3,
                                epsilon=1e-2)
    state, v = opt.init({"w": np.zeros((5, 2))}), np.zeros((5, 2))
    for t, g in enumerate(gs, start=1):
        b = _beta(t, 0.6)
        v = b * v + (1 - b) * (g**2 + 1e-2)
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], g / np.sqrt(v), rtol=1e-13)
    assert state.v_row["w"].shape == (1,) and state.v["w"].shape == (5, 2)


def test_block_rms_clips_and_scales_each_leaf_by_its_own_rms() -> None:
    g = {"a": np.array([3.0, 4.0]), "b": np.array([0.1, -0.1])}  # rms 3.536 and 0.1
    u, _ = clip_by_block_rms(1.0).update(clip_by_block_rms(1.0).init(g), g)
    close(u["a"].tolist(), (g["a"] / math.sqrt(12.5)).tolist(), 1e-15)
    np.testing.assert_array_equal(u["b"], g["b"])
    p = {"a": np.array([1.0, -3.0]), "b": np.array([1e-4, 0.0])}  # rms sqrt(5), below 1e-3
    s = scale_by_param_block_rms()
    u, _ = s.update(s.init(p), g, p)
    close(u["a"].tolist(), (g["a"] * math.sqrt(5.0)).tolist(), 1e-15)
    close(u["b"].tolist(), (g["b"] * 1e-3).tolist(), 1e-15)


def _adafactor_ref(gs: list[float], p0: float, lr: float, mom: float, wd: float,
                   clip_at: float) -> list[float]:
    """adafactor on one 1-entry leaf: v, clip, lr, param scale, ema, decay, descent."""
    p, v, m, out = p0, 0.0, 0.0, []
    for t, g in enumerate(gs, start=1):
        b = _beta(t)
        v = b * v + (1 - b) * (g * g + 1e-30)
        u = g / math.sqrt(v)
        u = u / max(1.0, abs(u) / clip_at)
        u = lr * u * max(abs(p), 1e-3)
        m = mom * m + (1 - mom) * u
        u = m + wd * p
        p -= u
        out.append(p)
    return out


def test_adafactor_chains_its_stages_in_optaxs_order() -> None:
    gs = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]
    opt = adafactor(0.1, momentum=0.6, dtype_momentum=np.float64, weight_decay_rate=0.05,
                    clipping_threshold=0.9)
    params, got = {"p": np.array([0.7])}, []
    state = opt.init(params)
    for g in gs:
        u, state = opt.update(state, {"p": np.array([g])}, params)
        params = optim.apply_updates(params, u)
        got.append(float(params["p"][0]))
    close(got, _adafactor_ref(gs, 0.7, 0.1, 0.6, 0.05, 0.9), 1e-13)
    assert list(state.states) == ["factored_rms", "clip", "lr", "param_scale", "momentum",
                                  "weight_decay", "flip"]
    bare = adafactor(multiply_by_parameter_scale=False, clipping_threshold=None)
    assert list(bare.init(params).states) == ["factored_rms", "flip"]


# ---------------------------------------------------------------------------- lookahead

def test_lookahead_syncs_every_k_steps_slow_moving_alpha_towards_fast() -> None:
    gs = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 1.0]
    opt = lookahead(optim.sgd(0.1), sync_period=3, slow_step_size=0.25)
    params = LookaheadParams.init_synced({"p": np.array([1.0])})
    state = opt.init(params)
    fast = slow = 1.0
    for i, g in enumerate(gs):
        fast -= 0.1 * g
        if i % 3 == 2:
            slow += 0.25 * (fast - slow)
            fast = slow
        u, state = opt.update(state, {"p": np.array([g])}, params)
        params = optim.apply_updates(params, u)
        assert type(params) is LookaheadParams and type(u) is LookaheadParams
        close([float(params.fast["p"][0]), float(params.slow["p"][0])], [fast, slow], 1e-14)
        assert int(state.steps_since_sync) == (i + 1) % 3


def test_lookahead_reset_state_restarts_the_fast_optimizer_at_each_sync() -> None:
    params = LookaheadParams.init_synced({"p": np.array([1.0, -2.0])})
    for reset in (False, True):
        opt = lookahead(optim.sgd(0.1, momentum=0.9), 2, 0.5, reset_state=reset)
        state = opt.init(params)
        for g in (1.0, 2.0):
            _, state = opt.update(state, {"p": np.array([g, g])}, params)
        buf = state.fast_state.states["momentum"].trace["p"]
        np.testing.assert_array_equal(buf, 0.0 if reset else [2.9, 2.9])


# ---------------------------------------------------------------------------- clipping

def test_adaptive_grad_clip_clips_each_unit_to_clipping_times_its_param_norm() -> None:
    p = {"w": np.array([[3.0, 0.0], [4.0, 0.0]]), "v": np.array([1.0, 0.0]),
         "k": np.ones((1, 1, 2, 2)), "c": np.array([[0.6, 0.8]])}
    g = {"w": np.array([[1.0, 0.3], [1.0, -0.4]]), "v": np.array([0.3, 0.4]),
         "k": np.array([[[[0.1, 3.0], [0.1, 4.0]]]]), "c": np.array([[4.0, 3.0]])}
    opt = adaptive_grad_clip(0.2, eps=0.5)
    u, _ = opt.update(opt.init(p), g, p)
    # w: columns are the units; column 0 (norm sqrt 2 > 0.2·5) scaled to norm 1; column 1's
    # param is 0, floored at eps: limit 0.1, its norm 0.5 scaled to 0.1
    np.testing.assert_allclose(u["w"], [[1 / math.sqrt(2), 0.06], [1 / math.sqrt(2), -0.08]],
                               rtol=1e-14)
    np.testing.assert_allclose(u["v"], g["v"] * 0.4, rtol=1e-15)  # a vector: one unit
    # HWIO: a unit per output channel, ‖p‖ = sqrt 2; channel 0 (norm 0.14) is kept
    np.testing.assert_array_equal(u["k"][..., 0], g["k"][..., 0])
    np.testing.assert_allclose(u["k"][..., 1], g["k"][..., 1] * 0.2 * math.sqrt(2) / 5,
                               rtol=1e-14)
    # (1, 2) is a vector once squeezed: one unit (by axis 0, each entry would be one)
    np.testing.assert_allclose(u["c"], g["c"] * 0.2 / 5, rtol=1e-14)


def test_adaptive_grad_clip_names_a_rank_it_cannot_split() -> None:
    p = {"x": np.ones((1, 2, 1, 2, 1, 2))}
    opt = adaptive_grad_clip(0.1)
    with pytest.raises(ValueError, match=r"^adaptive_grad_clip\.update: grads\['x'\] has "
                                         r"shape \(1, 2, 1, 2, 1, 2\).*pass axis="):
        opt.update(opt.init(p), p, p)
    u, _ = adaptive_grad_clip(0.1, axis=(0, 1, 2, 3, 4)).update(opt.init(p), p, p)
    np.testing.assert_allclose(u["x"], 0.1, rtol=1e-15)


def test_zero_nans_zeroes_nans_keeps_infs_and_flags_each_leaf() -> None:
    opt = zero_nans()
    g = {"a": np.array([1.0, np.nan, np.inf]), "b": np.array([2.0])}
    state = opt.init(g)
    assert type(state) is ZeroNansState and not any(tree.leaves(state))
    u, state = opt.update(state, g)
    np.testing.assert_array_equal(u["a"], [1.0, 0.0, np.inf])
    assert bool(state.found_nan["a"]) and not bool(state.found_nan["b"])
    _, state = opt.update(state, {"a": np.ones(3), "b": np.array([np.nan])})
    assert not bool(state.found_nan["a"]) and bool(state.found_nan["b"])


def test_keep_params_nonnegative_stops_at_zero() -> None:
    opt = keep_params_nonnegative()
    p = {"a": np.array([1.0, 0.5, 2.0, -1.0])}
    u, _ = opt.update(opt.init(p), {"a": np.array([-2.0, -0.5, 1.0, 0.5])}, p)
    np.testing.assert_array_equal(u["a"], [-1.0, -0.5, 1.0, 1.0])  # -1 + 0.5 < 0: to 0


# ---------------------------------------------------------------------------- noise

def test_add_noise_has_mean_g_and_annealed_variance_eta_over_t_plus_1_to_gamma() -> None:
    opt = add_noise(2.0, 0.5, fd.random.key(7))
    g = {"a": np.full(40000, 0.3), "b": np.full(10000, -1.0, np.float32)}
    state, draws = opt.init(g), []
    for t in range(4):
        u, state = opt.update(state, g)
        var = 2.0 / (t + 1) ** 0.5
        draws.append((u["a"] - g["a"]) / math.sqrt(var))
        for k in g:
            n = (u[k] - g[k]).astype(np.float64)
            assert abs(n.mean()) < 4 * math.sqrt(var / n.size), (t, k)
            assert abs(n.var() / var - 1) < 0.06, (t, k, n.var(), var)
        assert u["b"].dtype == np.float32 and int(state.count) == t + 1
    for a, b in itertools.pairwise(draws):  # a fresh draw at every update: uncorrelated
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    again = add_noise(2.0, 0.5, fd.random.key(7))
    np.testing.assert_array_equal(again.update(again.init(g), g)[0]["a"],
                                  opt.update(opt.init(g), g)[0]["a"])
    assert not np.array_equal(opt.update(state, g)[0]["a"], opt.update(opt.init(g), g)[0]["a"])


# ---------------------------------------------------------------------------- sgd dampening

def test_sgd_dampening_takes_the_first_gradient_whole_then_weights_it() -> None:
    gs, p, b, want = [0.5, -1.0, 2.0, 0.25], 1.0, 0.0, []
    for t, g in enumerate(gs):
        g += 0.1 * p
        b = g if t == 0 else 0.9 * b + (1 - 0.3) * g
        p -= 0.05 * b
        want.append(p)
    opt = optim.sgd(0.05, momentum=0.9, weight_decay=0.1, dampening=0.3)
    params, got = {"p": np.array([1.0])}, []
    state = opt.init(params)
    for g in gs:
        u, state = opt.update(state, {"p": np.array([g])}, params)
        params = optim.apply_updates(params, u)
        got.append(float(params["p"][0]))
    close(got, want, 1e-14)
    assert type(state.states["momentum"]) is DampenedTraceState
    plain = optim.sgd(0.05, momentum=0.9).init(params).states["momentum"]
    assert type(plain) is optim.TraceState  # dampening=None: as before


# ---------------------------------------------------------------------------- catalogue

def _lookahead_adam() -> GT:
    return lookahead(optim.adam(1e-2), 2, 0.5, reset_state=True)


MAKERS: list[tuple[str, Callable[[], GT], type, bool]] = [  # (name, make, state, wraps params)
    ("scale_by_factored_rms", lambda: scale_by_factored_rms(min_dim_size_to_factor=2),
     FactoredState, False),
    ("adafactor", lambda: adafactor(1e-2, 2, momentum=0.9, weight_decay_rate=1e-3),
     FactoredState, False),
    ("adafactor", lambda: adafactor(factored=False), FactoredState, False),
    ("lookahead", _lookahead_adam, LookaheadState, True),
    ("adaptive_grad_clip", lambda: adaptive_grad_clip(0.1), optim.EmptyState, False),
    ("zero_nans", zero_nans, ZeroNansState, False),
    ("keep_params_nonnegative", keep_params_nonnegative, optim.EmptyState, False),
    ("add_noise", lambda: add_noise(0.1, 0.55, fd.random.key(0)), AddNoiseState, False),
    ("sgd", lambda: optim.sgd(0.1, 0.9, dampening=0.5), DampenedTraceState, False),
]
_IDS = [f"{m[0]}-{i}" for i, m in enumerate(MAKERS)]


def _stage(state: Any, kind: type) -> Any:
    if isinstance(state, optim.NamedChainState):
        (inner,) = [s for s in state.states.values() if type(s) is kind] or [None]
        return inner
    return state


def _wrap(params: Any, wraps: bool) -> Any:
    return LookaheadParams.init_synced(params) if wraps else params


@pytest.mark.parametrize(("name", "make", "kind", "wraps"), MAKERS, ids=_IDS)
def test_state_types_and_float32_kept(name: str, make: Callable[[], GT], kind: type,
                                      wraps: bool) -> None:
    params, grads_seq = problem(np.float32, positive=True)
    params = _wrap(params, wraps)
    opt = make()
    state = opt.init(params)
    assert type(_stage(state, kind)) is kind, name
    for grads in grads_seq:
        before = [x.copy() for x in tree.leaves((params, grads, state))]
        updates, state_next = opt.update(state, grads, params)
        for x, y in zip(tree.leaves((params, grads, state)), before, strict=True):
            np.testing.assert_array_equal(x, y)
        assert all(u.dtype == np.float32 for u in tree.leaves(updates)), name
        kinds = {np.asarray(x).dtype.kind + str(np.asarray(x).itemsize)
                 for x in tree.leaves(state_next)}
        assert kinds <= {"f4", "i8", "b1", "u8"}, (name, kinds)
        state, params = state_next, optim.apply_updates(params, updates)


@pytest.mark.parametrize(("name", "make", "kind", "wraps"), MAKERS, ids=_IDS)
def test_state_saved_and_loaded_mid_run_continues_the_same(
        name: str, make: Callable[[], GT], kind: type, wraps: bool, tmp_path: Any) -> None:
    params, grads_seq = problem(np.float32, steps=5, positive=True)
    params = _wrap(params, wraps)
    want, _ = resume(make(), params, grads_seq)
    mid, state = resume(make(), params, grads_seq[:3])
    fd.io.save(tmp_path / "state.npz", (mid, state))
    mid, loaded = fd.io.load(tmp_path / "state.npz", like=(params, make().init(params)))
    assert type(_stage(loaded, kind)) is kind and type(mid) is type(params)
    got, _ = resume(make(), mid, grads_seq[3:], state=loaded)
    for x, y in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("name", "make", "kind", "wraps"), MAKERS, ids=_IDS)
def test_wrong_states_and_grads_are_refused_naming_the_optimizer(
        name: str, make: Callable[[], GT], kind: type, wraps: bool) -> None:
    params, grads_seq = problem(np.float64, positive=True)
    params = _wrap(params, wraps)
    opt = make()
    state = opt.init(params)
    with pytest.raises(TypeError, match=rf"^{name}\.update: the first argument must be the "
                                        r"optimizer state .*got dict"):
        opt.update(grads_seq[0], state, params)
    with pytest.raises(TypeError, match=r"\.update: .*grads\['b'\] has dtype complex128"):
        opt.update(state, {**grads_seq[0], "b": grads_seq[0]["b"] + 0j}, params)
    with pytest.raises(ValueError, match=r"\.update: .*\['w'\]"):
        opt.update(state, {**grads_seq[0], "w": np.ones((2, 3))}, params)


def test_lookahead_refuses_bare_params_saying_how_to_wrap_them() -> None:
    opt = _lookahead_adam()
    params, grads_seq = problem(np.float64, positive=True)
    for call in (lambda: opt.init(params),
                 lambda: opt.update(opt.init(_wrap(params, True)), grads_seq[0], params)):
        with pytest.raises(TypeError, match=r"^lookahead\.(init|update): params must be a "
                                            r"LookaheadParams\(fast, slow\), got dict; wrap .*"
                                            r"LookaheadParams\.init_synced\(params\)"):
            call()


@pytest.mark.parametrize(("call", "kind", "match"), [
    (lambda: adafactor(-1.0), ValueError, r"^adafactor: learning_rate"),
    (lambda: adafactor(min_dim_size_to_factor=-1), ValueError,
     r"^adafactor: min_dim_size_to_factor"),
    (lambda: adafactor(decay_offset=1.5), TypeError, r"^adafactor: decay_offset"),
    (lambda: adafactor(eps=-1.0), ValueError, r"^adafactor: eps must"),
    (lambda: adafactor(momentum=1.5), ValueError, r"^adafactor: momentum"),
    (lambda: adafactor(dtype_momentum=np.int32), TypeError, r"^adafactor: dtype_momentum"),
    (lambda: adafactor(clipping_threshold=0.0), ValueError,
     r"^clip_by_block_rms: threshold must be > 0"),
    (lambda: adafactor(factored="yes"), TypeError, r"^adafactor: factored"),
    (lambda: scale_by_factored_rms(decay_rate_fn=3), TypeError,
     r"^scale_by_factored_rms: decay_rate_fn must be a callable"),
    (lambda: lookahead(optim.sgd, 2, 0.5), TypeError,
     r"^lookahead: fast_optimizer must be a funcdl GradientTransformation"),
    (lambda: lookahead(optim.sgd(0.1), 0, 0.5), ValueError,
     r"^lookahead: sync_period must be a positive int, got 0"),
    (lambda: lookahead(optim.sgd(0.1), 2, 1.5), ValueError, r"^lookahead: slow_step_size"),
    (lambda: adaptive_grad_clip(-0.1), ValueError, r"^adaptive_grad_clip: clipping"),
    (lambda: adaptive_grad_clip(0.1, axis="0"), TypeError, r"^adaptive_grad_clip: axis"),
    (lambda: add_noise(-1.0, 0.5, fd.random.key(0)), ValueError, r"^add_noise: eta"),
    (lambda: add_noise(1.0, 0.5, 0), TypeError,
     r"^add_noise: expected a key made by funcdl\.random\.key\(seed\)"),
    (lambda: optim.sgd(0.1, 0.9, dampening=1.5), ValueError, r"^sgd: dampening"),
    (lambda: optim.sgd(0.1, 0.9, nesterov=True, dampening=0.1), ValueError,
     r"^sgd: nesterov=True requires dampening=0"),
])
def test_bad_settings_are_refused_naming_the_optimizer(call: Callable[[], Any], kind: type,
                                                       match: str) -> None:
    with pytest.raises(kind, match=match):
        call()


def test_transforms_that_read_params_ask_for_them() -> None:
    g = {"a": np.ones(2)}
    for opt, nm in [(adaptive_grad_clip(0.1), "adaptive_grad_clip"),
                    (keep_params_nonnegative(), "keep_params_nonnegative"),
                    (scale_by_param_block_rms(), "scale_by_param_block_rms")]:
        with pytest.raises(ValueError, match=rf"^{nm}\.update: needs the params"):
            opt.update(opt.init(g), g)
