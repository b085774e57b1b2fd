"""funcdl.optim's Adamax, RAdam, torch's NAdam, Lion, the trust ratio (LAMB), apply_every,
multi_steps, ema and the one-cycle / SGDR schedules: hand-written float64 references over a
few steps, float32 kept, io round trips of every state, bad inputs. Against optax and torch:
test_optim_more_peers.py."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _optim_util import close, directions, problem, resume, scalar_run

import funcdl as fd
from funcdl import layers, losses, optim, tree

GT = optim.GradientTransformation
G = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]




# ---------------------------------------------------------------------------- hand formulas

def test_adamax_is_m_hat_over_the_decaying_max() -> None:
    m = v = 0.0
    want = []
    for t, g in enumerate(G, start=1):
        m, v = 0.8 * m + 0.2 * g, max(0.9 * v, abs(g) + 1e-3)
        want.append(m / (1 - 0.8**t) / v)
    close(directions(optim.scale_by_adamax(0.8, 0.9, 1e-3), G), want, rtol=1e-14)


def _radam_ref(gs: list[float], b1: float, b2: float, eps: float, threshold: float,
               nesterov: bool = False, torch_eps: bool = False) -> list[float]:
    m = v = 0.0
    rho_inf, out = 2 / (1 - b2) - 1, []
    for t, g in enumerate(gs, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat = (b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t) if nesterov
                 else m / (1 - b1**t))
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho < threshold:
            out.append(m_hat)
            continue
        r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        denom = ((math.sqrt(v) + eps) / math.sqrt(1 - b2**t) if torch_eps
                 else math.sqrt(v / (1 - b2**t)) + eps)
        out.append(r * m_hat / denom)
    return out


@pytest.mark.parametrize("kw", [{}, {"nesterov": True}, {"torch_eps": True}])
def test_radam_is_momentum_until_rho_reaches_the_threshold_then_rectified_adam(
        kw: dict[str, Any]) -> None:
    # b2 = 0.8: ρ = 1, 1.9, 2.7, 3.4, 4.1, 4.7 at t = 1..6, so threshold 4 rectifies the last
    # two steps only
    want = _radam_ref(G, 0.7, 0.8, 1e-2, 4.0, **kw)
    opt = optim.scale_by_radam(0.7, 0.8, 1e-2, threshold=4.0, nesterov=kw.get("nesterov", False),
                               eps_before_correction=kw.get("torch_eps", False))
    close(directions(opt, G), want, rtol=1e-14)
    momentum = _radam_ref(G, 0.7, 0.8, 1e-2, 1e9, **kw)  # never rectified
    assert want[:4] == momentum[:4] and all(w != u for w, u in zip(want[4:], momentum[4:]))


def test_nadam_is_torchs_with_its_momentum_schedule() -> None:
    b1, b2, eps, psi = 0.9, 0.99, 1e-3, 0.2  # a large ψ: μ_t moves visibly over 6 steps
    m = v = 0.0
    product, want = 1.0, []
    for t, g in enumerate(G, start=1):
        mu, mu_next = (b1 * (1 - 0.5 * 0.96 ** (s * psi)) for s in (t, t + 1))
        product *= mu
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        denom = math.sqrt(v / (1 - b2**t)) + eps
        want.append((1 - mu) / (1 - product) * g / denom
                    + mu_next / (1 - product * mu_next) * m / denom)
    opt = optim.scale_by_nadam(b1, b2, eps, psi)
    close(directions(opt, G), want, rtol=1e-14)
    state = opt.init({"p": np.zeros(1)})
    for g in G:
        _, state = opt.update(state, {"p": np.array([g])})
    assert state.mu_product == pytest.approx(product, rel=1e-15)


def test_lion_steps_by_the_sign_of_the_interpolation_then_updates_its_momentum() -> None:
    # x = 0.4g + 0.6m, then m = 0.5g + 0.5m: at step 2 x = 0.12 > 0 where g < 0 (and where
    # 0.5g + 0.5m, or x from the new m, is < 0); the momentum after 4 steps pins both rates
    gs, opt = [2.0, -1.2, -0.5, 1.0], optim.scale_by_lion(0.6, 0.5)
    assert directions(opt, gs) == [1.0, 1.0, -1.0, 1.0]
    state = opt.init({"p": np.zeros(1)})
    for g in gs:
        _, state = opt.update(state, {"p": np.array([g])})
    assert float(state.mu["p"][0]) == pytest.approx(0.35, rel=1e-15)


@pytest.mark.parametrize(("kw", "factor"), [
    ({}, 5.0), ({"trust_coefficient": 0.5, "eps": 1.0}, 0.5 * 5 / 2),
    ({"min_norm": 2.0}, 5 / 2), ({"min_norm": 10.0}, 1.0)])
def test_trust_ratio_scales_each_leaf_by_its_param_norm_over_its_update_norm(
        kw: dict[str, Any], factor: float) -> None:
    # ‖p‖ = 5, ‖g‖ = 1 for "a"; a zero param ("z") or a zero update ("o") passes unchanged
    params = {"a": np.array([3.0, 4.0]), "z": np.zeros(2), "o": np.ones(3)}
    grads = {"a": np.array([0.6, -0.8]), "z": np.array([1.0, 2.0]), "o": np.zeros(3)}
    opt = optim.scale_by_trust_ratio(**kw)
    u, _ = opt.update(opt.init(params), grads, params)
    np.testing.assert_allclose(u["a"], factor * grads["a"], rtol=1e-15)
    low = kw.get("min_norm", 0.0)  # both norms are raised to it
    z_factor = low / (max(math.sqrt(5), low) + kw.get("eps", 0.0)) or 1.0
    np.testing.assert_allclose(u["z"], z_factor * grads["z"], rtol=1e-15)
    np.testing.assert_array_equal(u["o"], 0.0)


def test_apply_every_sums_k_updates_and_emits_every_kth() -> None:
    gs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert directions(optim.apply_every(3), gs) == [0, 0, 6, 0, 0, 15, 0]
    assert directions(optim.apply_every(1), gs) == gs


@pytest.mark.parametrize(("make", "want"), [(lambda: optim.apply_every(2), 2.0),
                                            (lambda: optim.multi_steps(optim.sgd(1.0), 2), -1.0)])
def test_accumulators_keep_a_copy_of_the_gradient(make: Callable[[], GT], want: float) -> None:
    # a training loop may refill one gradient buffer in place between updates
    opt, buffer = make(), {"w": np.ones(2)}
    _, state = opt.update(opt.init(buffer), buffer, buffer)
    buffer["w"][:] = 5.0
    u, _ = opt.update(state, {"w": np.ones(2)}, buffer)
    np.testing.assert_array_equal(u["w"], [want, want])


@pytest.mark.parametrize(("k", "mean", "want"), [
    (2, True, [0, 2, 0, 5, 0, 5.5]),  # means 2, 4, 3 through m = g + 0.5·m
    (2, False, [0, 4, 0, 10, 0, 11]),  # sums 4, 8, 6
    (lambda step: step + 1, True, [1, 0, 3, 0, 0, 5.5])])  # k = 1, 2, 3: means 1, 2.5, 4
def test_multi_steps_runs_the_inner_optimizer_on_the_mean_every_kth_update(
        k: Any, mean: bool, want: list[float]) -> None:
    opt = optim.multi_steps(optim.trace(0.5), k, use_grad_mean=mean)
    assert directions(opt, [1.0, 3.0, 2.0, 6.0, 5.0, 1.0]) == want


def test_multi_steps_token_mean_by_summed_losses_over_the_batch_count() -> None:
    # micro-batches with 3 and 1 counted tokens (-1 is padding): the default averages their
    # means alike, the docstring's recipe gives the whole batch's token mean
    model = layers.Dense(3)
    _, params = model.init(fd.random.key(0), (None, 2))
    x = np.random.default_rng(0).standard_normal((8, 2))
    y = np.array([0, 1, 2, -1, 1, -1, -1, -1])
    params = tree.astype(params, np.float64)

    def grads(reduction: str, xs: np.ndarray, ys: np.ndarray) -> object:
        loss = functools.partial(losses.softmax_cross_entropy, ignore_index=-1,
                                 reduction=reduction)
        return fd.value_and_grad(model, loss)(params, xs, ys)[1]

    whole = grads("mean", x, y)
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]

    def accumulated(opt: optim.GradientTransformation, reduction: str, scale: float) -> object:
        state = opt.init(params)
        for xs, ys in halves:
            g = tree.map(lambda a: a * scale, grads(reduction, xs, ys))
            updates, state = opt.update(state, g, params)
        return tree.map(lambda u: -u, updates)  # sgd(1): the update is -grads

    tokens = int((y != -1).sum())
    by_token = accumulated(optim.multi_steps(optim.sgd(1.0), 2, use_grad_mean=False), "sum",
                           1 / tokens)
    by_batch = accumulated(optim.multi_steps(optim.sgd(1.0), 2), "mean", 1.0)
    for a, b, c in zip(tree.leaves(by_token), tree.leaves(whole),
                       tree.leaves(by_batch)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        assert not np.allclose(c, b)


@pytest.mark.parametrize(("debias", "want"), [(True, [1.0, 1.75 / 0.75, 1.875 / 0.875]),
                                              (False, [0.5, 1.75, 1.875])])
def test_ema_weighs_the_update_by_one_minus_decay(debias: bool, want: list[float]) -> None:
    close(directions(optim.ema(0.5, debias), [1.0, 3.0, 2.0]), want, rtol=1e-15)


# ---------------------------------------------------------------------------- aliases

def test_adamax_alias_adds_l2_decay_to_the_gradient_and_steps_by_lr() -> None:
    p, m, v, want = 1.0, 0.0, 0.0, []
    for t, g0 in enumerate(G, start=1):
        g = g0 + 0.1 * p
        m, v = 0.9 * m + 0.1 * g, max(0.999 * v, abs(g) + 1e-8)
        p -= 0.05 / (1 - 0.9**t) * m / v
        want.append(p)
    close(scalar_run(optim.adamax(0.05, weight_decay=0.1), 1.0, G), want, rtol=1e-14)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("alias", ["nadam", "radam"])
def test_nadam_and_radam_aliases_decay_as_torch(alias: str, decoupled: bool) -> None:
    # L2: the direction of g + wd·p; decoupled: p - lr·wd·p beside the direction of g
    lr, wd = 0.05, 0.3
    opt = getattr(optim, alias)(lr, weight_decay=wd, decoupled_weight_decay=decoupled)
    direction = (optim.scale_by_nadam() if alias == "nadam"
                 else optim.scale_by_radam(eps_before_correction=True))
    p, state, want = 1.0, direction.init({"p": np.zeros(1)}), []
    for g in G:
        u, state = direction.update(state, {"p": np.array([g if decoupled else g + wd * p])})
        p -= lr * (float(u["p"][0]) + (wd * p if decoupled else 0.0))
        want.append(p)
    close(scalar_run(opt, 1.0, G), want, rtol=1e-14)


def test_lion_alias_decays_weights_beside_the_sign() -> None:
    p, m, want = 1.0, 0.0, []
    for g in [2.0, -0.5, -0.5, 1.0]:
        p -= 0.1 * (math.copysign(1.0, 0.1 * g + 0.9 * m) + 0.2 * p)
        m = 0.01 * g + 0.99 * m
        want.append(p)
    close(scalar_run(optim.lion(0.1, weight_decay=0.2), 1.0, [2.0, -0.5, -0.5, 1.0]), want,
          rtol=1e-15)


def test_lamb_scales_adams_decayed_direction_by_the_trust_ratio() -> None:
    p = np.array([3.0, -4.0])
    gs = [np.array([0.5, 2.0]), np.array([-1.0, 0.25]), np.array([2.0, -0.5])]
    m, v, want = np.zeros(2), np.zeros(2), []
    for t, g in enumerate(gs, start=1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        d = m / (1 - 0.9**t) / (np.sqrt(v / (1 - 0.999**t)) + 1e-6) + 0.01 * p
        p = p - 0.1 * np.linalg.norm(p) / np.linalg.norm(d) * d
        want.append(p)
    opt = optim.lamb(0.1, weight_decay=0.01)
    params, state = {"w": np.array([3.0, -4.0])}, opt.init({"w": np.zeros(2)})
    for g, w in zip(gs, want, strict=True):
        u, state = opt.update(state, {"w": g}, params)
        params = optim.apply_updates(params, u)
        np.testing.assert_allclose(params["w"], w, rtol=1e-14)


# ---------------------------------------------------------------------------- schedules

@pytest.mark.parametrize(("make", "want"), [
    (lambda: optim.linear_onecycle_schedule(10, 1.0, 0.3, 0.8, 10.0, 100.0),
     {0: 0.1, 1: 0.4, 3: 1.0, 5: 0.64, 8: 0.1, 9: 0.0505, 10: 0.001, 50: 0.001}),
    (lambda: optim.cosine_onecycle_schedule(10, 1.0, 0.4, 10.0, 100.0),
     {0: 0.1, 2: 0.55, 4: 1.0, 7: 0.5005, 10: 0.001, 50: 0.001}),
    (lambda: optim.warmup_exponential_decay_schedule(0.0, 1.0, 4, 2, 0.5, 1, False, 0.2),
     {0: 0.0, 2: 0.5, 4: 1.0, 5: 1.0, 7: 0.5, 9: 0.25, 11: 0.2}),
    (lambda: optim.warmup_exponential_decay_schedule(0.0, 1.0, 4, 2, 0.5, 0, True),
     {5: 1.0, 6: 0.5, 7: 0.5, 8: 0.25}),
    (lambda: optim.sgdr_schedule([
        {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 2, "decay_steps": 6},
        {"init_value": 0.5, "peak_value": 0.5, "warmup_steps": 0, "decay_steps": 4}]),
     {0: 0.0, 1: 0.5, 2: 1.0, 5: 0.5 * (1 + math.cos(3 * math.pi / 4)), 6: 0.5, 8: 0.25,
      10: 0.0, 20: 0.0}),
    # T = 1: ⌊0.3⌋ = ⌊0.85⌋ = 0, one boundary (optax's dict) whose later factor 1/div counts
    (lambda: optim.linear_onecycle_schedule(1, 1.0), {0: 0.0016, 1: 1.6e-7, 2: 1.6e-7})],
    ids=["linear_onecycle", "cosine_onecycle", "warmup_exponential",
         "warmup_exponential-staircase", "sgdr", "linear_onecycle-of-1"])
def test_schedules_take_their_closed_form_values(make: Callable[[], Any],
                                                 want: dict[int, float]) -> None:
    schedule = make()
    for count, value in want.items():
        assert schedule(count) == pytest.approx(value, rel=1e-13, abs=1e-16), count
        assert type(schedule(count)) is float
    counts = np.arange(24).reshape(4, 6)
    values = schedule(counts)
    assert values.shape == (4, 6) and values.dtype == np.float64
    np.testing.assert_array_equal(values, [[schedule(int(c)) for c in row] for row in counts])


# ---------------------------------------------------------------------------- catalogue

MAKERS: list[tuple[str, Callable[[], GT]]] = [  # (the name its update errors carry, make)
    ("scale_by_adamax", optim.scale_by_adamax),
    ("scale_by_radam", lambda: optim.scale_by_radam(eps_root=1e-9, nesterov=True)),
    ("scale_by_nadam", optim.scale_by_nadam),
    ("scale_by_lion", optim.scale_by_lion),
    ("scale_by_trust_ratio", lambda: optim.scale_by_trust_ratio(0.1, 0.5, 1e-3)),
    ("apply_every", lambda: optim.apply_every(2)),
    ("multi_steps", lambda: optim.multi_steps(optim.adam(0.1), 2)),
    ("ema", lambda: optim.ema(0.9)),
    ("adamax", lambda: optim.adamax(weight_decay=0.1)),
    ("nadam", lambda: optim.nadam(weight_decay=0.1, decoupled_weight_decay=True)),
    ("radam", lambda: optim.radam(weight_decay=0.1)),
    ("lion", lambda: optim.lion(1e-3, mask=lambda p: tree.map(lambda x: x.ndim > 1, p))),
    ("lamb", lambda: optim.lamb(1e-2, weight_decay=0.01)),
]
_IDS = [m[0] for m in MAKERS]
STATELESS = ("scale_by_trust_ratio",)  # steps in the grads' dtype
# The stage of an alias that reads the grads first, and names them in its errors
FIRST = {"adamax": "add_decayed_weights", "nadam": "scale_by_nadam",
         "radam": "add_decayed_weights", "lion": "scale_by_lion", "lamb": "scale_by_adam"}


@pytest.mark.parametrize(("name", "make"), MAKERS, ids=_IDS)
def test_float32_stays_float32_and_nothing_is_mutated(name: str, make: Callable[[], GT]) -> None:
    params, grads_seq = problem(np.float32)
    opt = make()
    state = opt.init(params)
    for grads in grads_seq:
        before = [x.copy() for x in tree.leaves((params, grads, state))]
        wide = tree.map(lambda g: g.astype(np.float64), grads)
        u64, _ = opt.update(state, wide, params)  # float64 grads on float32 params
        updates, state_next = opt.update(state, grads, params)
        for x, y in zip(tree.leaves((params, grads, state)), before, strict=True):
            np.testing.assert_array_equal(x, y)
        assert all(u.dtype == np.float32 for u in tree.leaves(updates)), name
        want = np.float64 if name in STATELESS else np.float32
        assert all(np.asarray(u).dtype == want for u in tree.leaves(u64)), name
        kinds = {np.asarray(x).dtype for x in tree.leaves(state_next)}
        # counts are int64; NAdam's μ product a float64 scalar, whatever the params
        assert kinds <= {np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.float64)}
        assert all(np.asarray(x).dtype != np.float64 or np.ndim(x) == 0
                   for x in tree.leaves(state_next)), name
        state, params = state_next, optim.apply_updates(params, updates)
        assert all(p.dtype == np.float32 for p in tree.leaves(params))


@pytest.mark.parametrize(("name", "make"), MAKERS, ids=_IDS)
def test_state_saved_and_loaded_mid_run_continues_the_same(name: str, make: Callable[[], GT],
                                                           tmp_path: Any) -> None:
    params, grads_seq = problem(np.float32, steps=5)
    want, _ = resume(make(), params, grads_seq)
    mid, state = resume(make(), params, grads_seq[:3])
    fd.io.save(tmp_path / "state.npz", state)
    loaded = fd.io.load(tmp_path / "state.npz", like=make().init(params))
    assert tree.structure(loaded) == tree.structure(state)
    got, _ = resume(make(), mid, grads_seq[3:], state=loaded)
    for x, y in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("name", "make"), MAKERS, ids=_IDS)
def test_inf_and_nan_gradients_give_inf_or_nan_steps_without_warnings(
        name: str, make: Callable[[], GT]) -> None:
    params, grads_seq = problem(np.float32)
    opt = make()
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for bad in (np.inf, -np.inf, np.nan, 3e38, 0.0):
            grads = {**grads_seq[0], "w": grads_seq[0]["w"].copy()}
            grads["w"][0, 0] = bad
            for _ in range(2):  # apply_every and multi_steps emit every 2nd update
                updates, state = opt.update(state, grads, params)
            assert updates["w"].dtype == np.float32
            # Lion's step is the sign: ±1 for ±inf (as optax's), NaN for NaN
            if np.isnan(bad) or (np.isinf(bad) and "lion" not in name):
                assert not np.isfinite(updates["w"]).all(), (name, bad)


@pytest.mark.parametrize(("name", "make"), MAKERS, ids=_IDS)
def test_a_0d_param_and_its_state_keep_their_shape(name: str, make: Callable[[], GT]) -> None:
    params = {"s": np.asarray(0.5)}
    opt = make()
    state, shapes = opt.init(params), None
    for g in (0.25, -1.0, 2.0):
        updates, state = opt.update(state, {"s": np.asarray(g)}, params)
        assert np.shape(updates["s"]) == () and np.isfinite(updates["s"])
        shapes = shapes or tree.map(np.shape, state)
        assert tree.map(np.shape, state) == shapes


def test_radam_takes_adams_state_whose_moments_are_its_own() -> None:
    params, grads_seq = problem(np.float64)
    adam, radam = optim.scale_by_adam(), optim.scale_by_radam()
    _, from_adam = adam.update(adam.init(params), grads_seq[0])
    _, own = radam.update(radam.init(params), grads_seq[0])
    for x, y in zip(tree.leaves(radam.update(from_adam, grads_seq[1])),
                    tree.leaves(radam.update(own, grads_seq[1])), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-15)  # Adam rounds its moments its own way


@pytest.mark.parametrize(("name", "make"), MAKERS, ids=_IDS)
def test_wrong_states_and_grads_are_refused_naming_the_optimizer(
        name: str, make: Callable[[], GT]) -> None:
    params, grads_seq = problem(np.float64)
    opt = make()
    state = opt.init(params)
    with pytest.raises(TypeError, match=rf"^{name}\.update: the first argument must be the "
                                        r"optimizer state .*got dict"):
        opt.update(grads_seq[0], state, params)
    other = optim.trace(0.9).init(params)
    with pytest.raises(TypeError, match=rf"^{name}\.update: got the state of another "
                                        r"optimizer or transform \(TraceState\)"):
        opt.update(other, grads_seq[0], params)
    first = FIRST.get(name, name)
    # the optimizer built, then the stage that found it (a chain's), then the transform
    placed = rf"{name}\.update, stage '\w+': " if first != name else ""
    with pytest.raises(ValueError, match=rf"^{placed}{first}\.update: shape mismatch at \['w'\]"):
        opt.update(state, {**grads_seq[0], "w": np.ones((2, 3))}, params)
    with pytest.raises(TypeError, match=r"\.update: grads\['b'\] has dtype complex128"):
        for _ in range(2):
            _, state = opt.update(state, {**grads_seq[0], "b": grads_seq[0]["b"] + 0j}, params)
    if name not in STATELESS:
        with pytest.raises(TypeError, match=rf"^{name}\.init: params\['b'\] has dtype int64"):
            opt.init({**params, "b": np.array([1, 2])})
