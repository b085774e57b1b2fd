"""funcdl.optim's research optimizers (optax.contrib's): schedule-free, Muon, ADOPT. Hand-
written float64 references, the Newton–Schulz band, float32 kept, pytrees with matrices and
vectors, a small MLP trained by each, bad inputs. Against optax: test_optim_contrib_optax.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _optim_util import mlp_losses

import funcdl as fd
from funcdl import optim, tree
from funcdl.optim._adaptive import ScaleByAdamState, scale_by_adam
from funcdl.optim._ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdemamixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from funcdl.optim._adopt import adopt, scale_by_adopt
from funcdl.optim._muon import MuonPartsState, MuonState, muon, newton_schulz, scale_by_muon
from funcdl.optim._sam import SAMState, sam
from funcdl.optim._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)

RNG = np.random.default_rng(7)
NS = (3.4445, -4.775, 2.0315)


def _grads(seed: int, dtype: Any = np.float64) -> dict[str, Any]:
    r = np.random.default_rng(seed)
    return {"w": r.normal(size=(3, 5)).astype(dtype), "b": r.normal(size=5).astype(dtype)}


# ---------------------------------------------------------------------------- Newton–Schulz

def _scalar_ns(s: np.ndarray, steps: int = 5) -> np.ndarray:
    """The quintic on singular values alone: NS maps U·S·Vᵀ to U·p(S)·Vᵀ."""
    s = s / (np.sqrt(np.sum(s**2)) + 1e-8)
    for _ in range(steps):
        s = NS[0] * s + NS[1] * s**3 + NS[2] * s**5
    return s


@pytest.mark.parametrize("shape", [(6, 6), (3, 9), (9, 3), (1, 4), (16, 40), (40, 16)])
def test_newton_schulz_singular_values_land_in_the_quintics_band(shape: tuple[int, int]) -> None:
    k = min(shape)
    u = np.linalg.qr(RNG.normal(size=(shape[0], k)))[0]
    v = np.linalg.qr(RNG.normal(size=(shape[1], k)))[0]
    s = np.linspace(1.0, 0.05, k)  # a condition number the 5 steps can lift to the band
    g = (u * s) @ v.T
    out = newton_schulz(g)
    assert out.shape == shape
    got = np.linalg.svd(out, compute_uv=False)
    assert got.min() > 0.67 and got.max() < 1.2, got  # the default quintic's band
    # the same singular vectors, each value through the scalar iteration
    np.testing.assert_allclose(u.T @ out @ v, np.diag(_scalar_ns(s)), atol=1e-10)


def test_newton_schulz_of_gaussian_matrices_is_near_orthogonal() -> None:
    for shape in [(8, 20), (20, 8), (12, 12)]:
        g = RNG.normal(size=shape)
        sv = np.linalg.svd(newton_schulz(g), compute_uv=False)
        assert 0.6 < sv.min() and sv.max() < 1.25, (shape, sv)


def test_newton_schulz_keeps_float32_and_survives_huge_entries() -> None:
    g = (RNG.normal(size=(4, 6)) * 1e19).astype(np.float32)
    out = newton_schulz(g)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, newton_schulz(g.astype(np.float64) / 1e19), rtol=1e-3,
                               atol=1e-4)


# ---------------------------------------------------------------------------- muon

def test_scale_by_muon_is_the_orthogonalised_nesterov_momentum() -> None:
    gs = [_grads(i)["w"] for i in range(4)]
    opt = scale_by_muon(beta=0.9)
    state = opt.init({"w": np.zeros((3, 5))})
    m = np.zeros((3, 5))
    for t, g in enumerate(gs, start=1):
        m = 0.9 * m + 0.1 * g
        m_hat = 0.9 * m / (1 - 0.9 ** (t + 1)) + 0.1 * g / (1 - 0.9**t)
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], newton_schulz(m_hat), rtol=1e-12, atol=1e-13)
    assert isinstance(state, MuonState) and int(state.count) == 4


def test_muon_sends_matrices_through_muon_and_vectors_through_nadamw() -> None:
    params = {"w": RNG.normal(size=(3, 5)), "b": RNG.normal(size=5),
              "e": RNG.normal(size=(6, 2))}
    opt = muon(0.1, weight_decay=0.2, adam_weight_decay=0.3)
    nadam = scale_by_adam(nesterov=True)
    sm, sa = scale_by_muon().init({"e": params["e"], "w": params["w"]}), nadam.init(params["b"])
    state = opt.init(params)
    assert isinstance(state, MuonPartsState)
    for step in range(3):
        g = {**_grads(step), "e": RNG.normal(size=(6, 2))}
        u, state = opt.update(state, g, params)
        o, sm = scale_by_muon().update(sm, {"e": g["e"], "w": g["w"]})
        a, sa = nadam.update(sa, g["b"])
        # (in, out) = (3, 5): wide, scaled by sqrt(5/3); (6, 2): tall, by 1
        np.testing.assert_allclose(u["w"], -0.1 * (o["w"] * np.sqrt(5 / 3)
                                                   + 0.2 * params["w"]), rtol=1e-12)
        np.testing.assert_allclose(u["e"], -0.1 * (o["e"] + 0.2 * params["e"]), rtol=1e-12)
        np.testing.assert_allclose(u["b"], -0.1 * (a + 0.3 * params["b"]), rtol=1e-12)
        params = optim.apply_updates(params, u)


def test_muon_weight_decay_mask_consistent_rms_and_mu_dtype_by_hand() -> None:
    params = {"w": RNG.normal(size=(3, 5)), "b": RNG.normal(size=5),
              "e": RNG.normal(size=(6, 2))}
    opt = muon(0.1, "standard", 5, 0.95, 1e-8, 0.2, lambda p: {k: k != "e" for k in p},
               np.float32, consistent_rms=0.2)  # optax's positional order
    ref = scale_by_muon()
    state, sm = opt.init(params), ref.init({"e": params["e"], "w": params["w"]})
    assert [m.dtype for m in state.muon.states[0].mu] == [np.float32] * 2  # e, w
    for step in range(3):
        g = {**_grads(step), "e": RNG.normal(size=(6, 2))}
        u, state = opt.update(state, g, params)
        o, sm = ref.update(sm, {"e": g["e"], "w": g["w"]})
        # sqrt(max(fan_in, fan_out))·0.2; "e" masked out of the decay (b goes to adam)
        np.testing.assert_allclose(u["w"], -0.1 * (o["w"] * np.sqrt(5) * 0.2
                                                   + 0.2 * params["w"]), rtol=1e-6)
        np.testing.assert_allclose(u["e"], -0.1 * o["e"] * np.sqrt(6) * 0.2, rtol=1e-6)
        params = optim.apply_updates(params, u)


def test_newton_schulz_takes_a_preset_or_one_triple_per_step() -> None:
    x = RNG.normal(size=(4, 6))
    np.testing.assert_array_equal(newton_schulz(x, "standard"), newton_schulz(x))
    rows = ((3.0, -3.2, 1.2), (3.4445, -4.775, 2.0315))
    want = x / (np.linalg.norm(x) + 1e-8)
    for a, b, c in rows:  # step i with row i
        gram = want @ want.T
        want = a * want + (b * gram + c * gram @ gram) @ want
    np.testing.assert_allclose(newton_schulz(x, rows, 2), want, rtol=1e-12)
    np.testing.assert_allclose(newton_schulz(x, rows, 5), want, rtol=1e-12)  # n steps
    assert not np.allclose(newton_schulz(x, "dion"), newton_schulz(x), atol=1e-3)
    with pytest.raises(ValueError, match=r"newton_schulz: ns_coeffs 'muon' is no preset.*"
                                         r"\['dion', 'standard'\]"):
        newton_schulz(x, "muon")
    with pytest.raises(ValueError, match=r"muon: 5 steps' coefficients but ns_steps=3"):
        muon(0.1, "dion", 3)
    with pytest.raises(TypeError, match=r"muon: mu_dtype must be None or a NumPy float"):
        muon(0.1, mu_dtype=np.int8)
    with pytest.raises(ValueError, match=r"muon.init: tree structure mismatch at the root: "
                                         r"params has a dict with keys \['b', 'w'\], the "
                                         r"mask has a dict with keys \['w'\]"):
        muon(0.1, weight_decay=0.1, weight_decay_mask={"w": True}).init(_grads(0))


def test_muon_on_a_dense_kernel_uses_in_out_as_fan_in_fan_out() -> None:
    model = fd.layers.Dense(8)
    _, params = model.init(fd.random.key(0), (None, 2))
    assert params["w"].shape == (2, 8)  # funcdl's (in, out), optax's (fan_in, fan_out)
    g = tree.map(lambda p: np.ones_like(p) + RNG.normal(size=p.shape).astype(p.dtype),
                 params)
    u, _ = muon(1.0).update(muon(1.0).init(params), g, params)
    o, _ = scale_by_muon().update(scale_by_muon().init({"w": params["w"]}), {"w": g["w"]})
    np.testing.assert_allclose(u["w"], -2.0 * o["w"], rtol=1e-5)  # sqrt(8 / 2)


# ---------------------------------------------------------------------------- schedule-free

def test_schedule_free_sgd_matches_a_hand_written_reference() -> None:
    lr, b1, power, wd = 0.1, 0.8, 2.0, 0.05
    warm = 3
    y = {"w": RNG.normal(size=(3, 5)), "b": RNG.normal(size=5)}
    opt = schedule_free_sgd(lr, warmup_steps=warm, b1=b1, weight_decay=wd)
    state = opt.init(y)
    z, x = tree.map(np.copy, y), tree.map(np.copy, y)
    weight_sum, max_lr = 0.0, 0.0
    for t in range(6):
        g = _grads(t)
        rate = lr * min(t + 1, warm) / warm  # the wrapper reads step t + 1 ...
        step = lr * min(t, warm) / warm      # ... the base sgd its own count t
        max_lr = max(max_lr, rate)
        weight_sum += max_lr**power
        c = max_lr**power / weight_sum
        for k in y:
            z_new = z[k] - step * (g[k] + wd * y[k])
            x[k] = (1 - c) * x[k] + c * z_new
            z[k] = z_new
        want = {k: b1 * x[k] + (1 - b1) * z[k] for k in y}
        u, state = opt.update(state, g, y)
        y = optim.apply_updates(y, u)
        for k in y:
            np.testing.assert_allclose(y[k], want[k], rtol=1e-12, atol=1e-14)
        ev = schedule_free_eval_params(state, y)
        for k in y:
            np.testing.assert_allclose(ev[k], x[k], rtol=1e-10, atol=1e-12)
    assert isinstance(state, ScheduleFreeState) and int(state.count) == 6


def test_schedule_free_adamw_moves_z_by_unmomentumed_adamw() -> None:
    y = _grads(99)
    opt = schedule_free_adamw(0.01, b1=0.9, b2=0.99, weight_decay=0.1)
    state = opt.init(y)
    g = _grads(1)
    u, state = opt.update(state, g, y)
    for k in y:  # t = 1: v̂ = g², so z moves by -lr·(g/(|g| + eps) + wd·y); c = 1: x = z
        dz = -0.01 * (g[k] / (np.abs(g[k]) + 1e-8) + 0.1 * y[k])
        np.testing.assert_allclose(state.z[k], y[k] + dz, rtol=1e-12)
        np.testing.assert_allclose(u[k], dz, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------- adopt

@pytest.mark.parametrize("nesterov", [False, True])
def test_adopt_matches_a_hand_written_reference(nesterov: bool) -> None:
    b1, b2, eps = 0.8, 0.95, 1e-6
    opt = scale_by_adopt(b1, b2, eps, nesterov=nesterov)
    state = opt.init({"w": np.zeros(4)})
    m, v = np.zeros(4), np.zeros(4)
    for t in range(5):
        g = RNG.normal(size=4) * 3
        if t == 0:  # v from nothing, no step: the clip bound is 0
            want, v = np.zeros(4), g * g
        else:  # normalised by the v before this gradient, then clipped to t^0.25
            n = np.clip(g / np.maximum(np.sqrt(v), eps), -(t**0.25), t**0.25)
            m = b1 * m + (1 - b1) * n
            v = b2 * v + (1 - b2) * g * g
            want = b1 * m + (1 - b1) * n if nesterov else m
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], want, rtol=1e-12, atol=1e-15)
    assert isinstance(state, ScaleByAdamState)


@pytest.mark.parametrize("nesterov", [False, True])
def test_adopt_with_a_mu_dtype_stores_m_rounded_and_steps_with_it_unrounded(
        nesterov: bool) -> None:
    b1, b2, eps = 0.8, 0.95, 1e-6
    opt = adopt(0.5, b1, b2, eps, np.float32, nesterov=nesterov)  # optax's positional order
    state = opt.init({"w": np.zeros(4)})
    assert state.states[0].mu["w"].dtype == np.float32
    m, v = np.zeros(4, np.float32), np.zeros(4)
    for t in range(5):
        g = RNG.normal(size=4) * 3
        if t == 0:
            want, v = np.zeros(4), g * g
        else:
            n = np.clip(g / np.maximum(np.sqrt(v), eps), -(t**0.25), t**0.25)
            m_step = b1 * m + (1 - b1) * n  # b1·m in float32, as JAX's weakly typed b1
            v = b2 * v + (1 - b2) * g * g
            want = b1 * m_step + (1 - b1) * n if nesterov else m_step
            m = m_step.astype(np.float32)
        u, state = opt.update(state, {"w": g})
        assert u["w"].dtype == np.float64 and state.states[0].mu["w"].dtype == np.float32
        np.testing.assert_allclose(u["w"], -0.5 * want, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(state.states[0].mu["w"], m)


def test_adaptive_muon_scales_by_the_momentums_inner_product_with_its_orthogonalisation(
        ) -> None:
    g = _grads(3)["w"]
    u, _ = scale_by_muon(nesterov=False, adaptive=True).update(
        scale_by_muon().init({"w": g}), {"w": g})
    o = newton_schulz(g)  # t = 1: the corrected momentum is g itself
    np.testing.assert_allclose(u["w"], np.sum(g * o) * o, rtol=1e-12)


# ---------------------------------------------------------------------------- all of them

OPTIMIZERS = {
    "schedule_free_sgd": lambda: schedule_free_sgd(0.5, warmup_steps=5),
    "schedule_free_adamw": lambda: schedule_free_adamw(0.05, warmup_steps=5),
    "schedule_free_adam": lambda: schedule_free(optim.adam(0.05, b1=0.0), 0.05),
    "muon": lambda: muon(0.02),
    "muon_adaptive": lambda: muon(0.5, adaptive=True, nesterov=False),
    "adopt": lambda: adopt(0.05),
    "ademamix": lambda: ademamix(0.02),
    "simplified_ademamix": lambda: simplified_ademamix(0.002, alpha=1.0),
    "sam": lambda: sam(optim.adam(0.05), optim.sgd(0.01)),  # 60 updates: 30 outer steps
}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_float32_params_give_float32_updates_and_state(make: Any) -> None:
    params = _grads(0, np.float32)
    opt = make()
    state = opt.init(params)
    for step in range(3):
        u, state = opt.update(state, _grads(step + 1, np.float32), params)
        params = optim.apply_updates(params, u)
    for leaf in tree.leaves(u) + tree.leaves(params):
        assert leaf.dtype == np.float32
    for leaf in tree.leaves(state):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":
            assert leaf.dtype == np.float32


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_each_trains_a_small_mlp(make: Any) -> None:
    first, last = mlp_losses(make(), 60, lambda state, params: (
        schedule_free_eval_params(state, params) if isinstance(state, ScheduleFreeState)
        else params))
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_gradients_of_1e19_stay_finite_and_step_as_gradients_of_1(name: str) -> None:
    # g² = 1e38 fits float32, ‖g‖² does not: a sum of squares would step Muon by 0. The
    # scale-free methods must step as for gradients of 1 (SGD, SAM's ascent and adaptive
    # Muon's <m̂, O> factor are not).
    params = tree.map(np.zeros_like, _grads(0, np.float32))
    opt = OPTIMIZERS[name]()
    state, ref = opt.init(params), opt.init(params)
    for step in range(3):
        g = tree.map(lambda p, v=1.0 - 0.1 * step: np.full_like(p, v), params)
        u, state = opt.update(state, tree.map(lambda x: x * np.float32(1e19), g), params)
        w, ref = opt.update(ref, g, params)
        for a, b in zip(tree.leaves(u), tree.leaves(w), strict=True):
            assert np.isfinite(a).all()
            if name not in ("schedule_free_sgd", "sam", "muon_adaptive"):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("call", "kind", "words"), [
    (lambda: schedule_free(optim.sgd(0.1), -0.1), ValueError, ("schedule_free", "lr")),
    (lambda: schedule_free(optim.sgd(0.1), 0.1, b1=0.0), ValueError,
     ("schedule_free", "b1", "(0, 1]")),
    (lambda: schedule_free(optim.sgd, 0.1), TypeError,
     ("schedule_free", "base_optimizer", "forget to call")),
    (lambda: schedule_free_adamw(-1.0), ValueError, ("schedule_free_adamw", "learning_rate")),
    (lambda: schedule_free_sgd(0.1, warmup_steps=0), ValueError,
     ("schedule_free_sgd", "warmup_steps")),
    (lambda: schedule_free_adamw(b2=1.5), ValueError, ("schedule_free_adamw", "b2")),
    (lambda: muon(-0.1), ValueError, ("muon", "lr")),
    (lambda: muon(0.1, ns_steps=0), ValueError, ("muon", "ns_steps")),
    (lambda: muon(0.1, beta=1.0), ValueError, ("muon", "beta")),
    (lambda: muon(0.1, ns_coeffs=(1.0, 2.0)), ValueError, ("muon", "ns_coeffs", "default")),
    (lambda: scale_by_muon().init({"b": np.zeros(3)}), ValueError,
     ("scale_by_muon.init", "(3,)", "muon(")),
    (lambda: adopt(0.0 - 1.0), ValueError, ("adopt", "lr")),
    (lambda: adopt(0.1, b1=1.0), ValueError, ("adopt", "b1")),
    (lambda: adopt(0.1, eps=-1.0), ValueError, ("adopt", "eps")),
    (lambda: schedule_free_eval_params(optim.sgd(0.1).init({"w": np.zeros(2)}),
                                       {"w": np.zeros(2)}), TypeError,
     ("schedule_free_eval_params", "ScheduleFreeState", "NamedChainState", "pass")),
    (lambda: newton_schulz(np.zeros(3)), ValueError, ("newton_schulz", "(3,)", "2-D")),
    (lambda: sam(optim.sgd(0.1), optim.sgd(0.1), sync_period=0), ValueError,
     ("sam", "sync_period")),
    (lambda: sam(optim.sgd, optim.sgd(0.1)), TypeError, ("sam", "optimizer", "forget")),
    (lambda: sam(optim.sgd(0.1), optim.sgd(0.1), opaque_mode=True).update(
        sam(optim.sgd(0.1), optim.sgd(0.1), opaque_mode=True).init({"w": np.zeros(2)}),
        {"w": np.zeros(2)}, {"w": np.zeros(2)}), TypeError, ("sam.update", "grad_fn=", "None")),
    (lambda: sam(optim.sgd(0.1), optim.sgd(0.1)).update(
        sam(optim.sgd(0.1), optim.sgd(0.1)).init({"w": np.zeros(2)}), {"w": np.zeros(2)}),
     ValueError, ("sam.update", "needs the params")),
])
def test_bad_input_names_the_transform_what_came_and_the_fix(call: Any, kind: type,
                                                             words: tuple[str, ...]) -> None:
    with pytest.raises(kind) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_update_without_params_or_with_a_swapped_state_is_refused() -> None:
    params = _grads(0)
    opt = schedule_free_adamw()
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"schedule_free\.update: needs the params"):
        opt.update(state, params)
    with pytest.raises(TypeError, match=r"schedule_free\.update: the first argument"):
        opt.update(params, state, params)
    m = muon(0.1)
    with pytest.raises(TypeError, match=r"muon\.update"):
        m.update(state, params, params)
    with pytest.raises(ValueError, match=r"muon\.update: .*params has .*'x'"):
        m.update(m.init(params), params, {**params, "x": np.zeros(2)})


# ---------------------------------------------------------------------------- ademamix

@pytest.mark.parametrize("eps_root", [0.0, 0.3])
def test_ademamix_matches_a_hand_written_reference(eps_root: float) -> None:
    b1, b2, b3, alpha, eps = 0.8, 0.9, 0.99, 4.0, 1e-8
    opt = scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root)
    state = opt.init({"w": np.zeros(4)})
    m1, m2, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t in range(1, 6):
        g = RNG.normal(size=4)
        m1, m2, v = b1 * m1 + (1 - b1) * g, b3 * m2 + (1 - b3) * g, b2 * v + (1 - b2) * g * g
        want = (m1 / (1 - b1**t) + alpha * m2) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], want, rtol=1e-12)
    assert isinstance(state, ScaleByAdemamixState) and int(state.count_m2) == 5


def test_ademamix_with_a_mu_dtype_stores_m1_m2_rounded_and_steps_with_them_unrounded(
        ) -> None:
    b1, b2, b3, alpha, eps, wd = 0.8, 0.9, 0.99, 4.0, 1e-8, 0.1
    opt = ademamix(0.5, b1, b2, b3, alpha, eps, 0.0, np.float32, wd)  # optax's order
    p = RNG.normal(size=4)
    state = opt.init({"w": p})
    m1, m2, v = np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(4)
    for t in range(1, 6):
        g = RNG.normal(size=4)
        s1 = b1 * m1 + (1 - b1) * g  # b1·m1 in float32, then float64: as JAX's, weakly
        s2 = b3 * m2 + (1 - b3) * g  # typed b1
        v = b2 * v + (1 - b2) * g * g
        want = (s1 / (1 - b1**t) + alpha * s2) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * p
        m1, m2 = s1.astype(np.float32), s2.astype(np.float32)
        u, state = opt.update(state, {"w": g}, {"w": p})
        inner = state.states[0]
        assert u["w"].dtype == np.float64 and inner.nu["w"].dtype == np.float64
        np.testing.assert_allclose(u["w"], -0.5 * want, rtol=1e-12)
        np.testing.assert_array_equal(inner.m1["w"], m1)
        np.testing.assert_array_equal(inner.m2["w"], m2)
    with pytest.raises(TypeError, match=r"^ademamix: mu_dtype must be None or a NumPy float"):
        ademamix(0.5, mu_dtype=np.int32)
    with pytest.raises(TypeError, match=r"^adopt: mu_dtype must be None or a NumPy float"):
        adopt(0.5, mu_dtype="int8")


@pytest.mark.parametrize("eps_root", [0.0, 0.3])
def test_simplified_ademamix_matches_a_hand_written_reference(eps_root: float) -> None:
    b1, b2, alpha, eps = 0.9, 0.8, 2.0, 1e-8
    opt = scale_by_simplified_ademamix(b1, b2, lambda c: alpha * (c + 1), eps, eps_root)
    state = opt.init({"w": np.zeros(4)})
    m, n = np.zeros(4), np.zeros(4)
    for t in range(1, 6):
        g = RNG.normal(size=4)
        m, n = b1 * m + g, b2 * n + (1 - b2) * g * g  # m: an undamped sum
        want = (m + alpha * t * g) / (np.sqrt(n / (1 - b2**t) + eps_root) + eps)
        u, state = opt.update(state, {"w": g})
        np.testing.assert_allclose(u["w"], want, rtol=1e-12)
    assert isinstance(state, ScaleBySimplifiedAdemamixState)


@pytest.mark.parametrize("make", [ademamix, simplified_ademamix, optim.cocob, optim.dog])
def test_the_weight_decay_stage_is_checked_and_masked_under_the_aliass_name(make: Any) -> None:
    # The decay stage (_transforms.decay_stage): a schedule reads as its value (as optax,
    # whose add_decayed_weights takes one), a mask decays only where True, and a bad value
    # or mask is refused naming the alias, not add_decayed_weights or masked.
    name, wd = make.__name__, 0.5
    p, g = {"a": np.full(3, -4.0), "b": np.full(2, -4.0)}, {"a": np.ones(3), "b": np.ones(2)}
    mask = {"a": False, "b": True}

    def first(opt: Any, grads: Any = g) -> Any:
        return opt.update(opt.init(p), grads, p)[0]

    def by_hand(on: Any) -> Any:  # the first step with the decay where ``on`` is True
        if make in (ademamix, simplified_ademamix):  # decoupled: -lr·(u + wd·p)
            return tree.map(lambda u, x, m: u - 0.1 * wd * x * m, first(make(0.1)), p, on)
        return first(make(0.1), tree.map(lambda d, x, m: d + wd * x * m, g, p, on))  # coupled

    everywhere = {"a": True, "b": True}
    for got, want in [(first(make(0.1, weight_decay=wd)), by_hand(everywhere)),
                      (first(make(0.1, weight_decay=lambda c: wd)), by_hand(everywhere)),
                      (first(make(0.1, weight_decay=wd, mask=mask)), by_hand(mask))]:
        tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), got, want)
    assert not np.allclose(by_hand(everywhere)["a"], by_hand(mask)["a"])  # the mask matters
    with pytest.raises(ValueError, match=rf"^{name}\.init: tree structure mismatch"):
        first(make(0.1, weight_decay=wd, mask={"a": False}))
    with pytest.raises(TypeError, match=rf"^{name}: weight_decay must be"):
        make(0.1, weight_decay="0.5")
    if make in (ademamix, simplified_ademamix):  # optax's float >= 0; dog, cocob any
        with pytest.raises(ValueError, match=rf"^{name}: weight_decay must be"):
            make(0.1, weight_decay=-0.5)
    else:
        assert np.isfinite(first(make(0.1, weight_decay=-0.5))["a"]).all()


# ---------------------------------------------------------------------------- sam

@pytest.mark.parametrize("reset", [True, False])
def test_sam_matches_a_hand_written_reference(reset: bool) -> None:
    # period 3: two ascent steps of momentum sgd away from c, then back to c and an outer
    # sgd step with the gradient at the second ascent point
    lr, rho, mom = 0.1, 0.05, 0.5
    opt = sam(optim.sgd(lr), optim.sgd(rho, momentum=mom), sync_period=3, reset_state=reset)
    p = _grads(0)
    state = opt.init(p)
    c, buf = p, {k: np.zeros_like(x) for k, x in p.items()}
    for t in range(9):
        g = {k: x**3 - x + 0.1 * t for k, x in p.items()}  # the grads at the params
        k = t % 3
        if k == 0:
            c = p
        if k < 2:
            # torch-style momentum: the first step of a fresh buffer is g itself
            first = (t < 3 or reset) and k == 0
            buf = {n: (g[n] if first else mom * buf[n] + g[n]) for n in p}
            want = {n: p[n] + rho * buf[n] for n in p}
        else:
            want = {n: c[n] - lr * g[n] for n in p}
        u, state = opt.update(state, g, p)
        p = optim.apply_updates(p, u)
        for n in p:
            np.testing.assert_allclose(p[n], want[n], rtol=1e-12, atol=1e-14)
        assert int(state.steps_since_sync) == (t + 1) % 3


def test_sam_opaque_mode_returns_the_outer_step_at_the_adversarial_gradient() -> None:
    def grad_fn(q: Any, i: int) -> Any:
        return {k: np.sin(x) + i for k, x in q.items()}

    opt = sam(optim.sgd(0.1), optim.sgd(0.05), sync_period=3, opaque_mode=True)
    p = _grads(1)
    state = opt.init(p)
    g = grad_fn(p, -1)
    u, state = opt.update(state, g, p, grad_fn=grad_fn)
    a1 = {k: p[k] + 0.05 * g[k] for k in p}
    g1 = grad_fn(a1, 0)
    a2 = {k: a1[k] + 0.05 * g1[k] for k in p}
    g2 = grad_fn(a2, 1)
    for k in p:
        np.testing.assert_allclose(u[k], -0.1 * g2[k], rtol=1e-12)
    assert isinstance(state, SAMState) and state.cache is None
