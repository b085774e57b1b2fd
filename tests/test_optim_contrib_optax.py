"""funcdl's research optimizers against optax.contrib's: float64 trajectories over 30 steps
(gradients of a fixed quadratic-plus-quartic loss taken at the current params, so that the
two runs feed back their own params), agreeing to ~1e-10."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
import jax.numpy as jnp  # noqa: E402

from funcdl import optim, tree  # noqa: E402
from funcdl.optim import apply_updates, sgd  # noqa: E402
from funcdl.optim._ademamix import ademamix, simplified_ademamix  # noqa: E402
from funcdl.optim._adopt import adopt  # noqa: E402
from funcdl.optim._muon import muon, newton_schulz, scale_by_muon  # noqa: E402
from funcdl.optim._sam import sam  # noqa: E402
from funcdl.optim._schedule_free import (  # noqa: E402
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)

STEPS = 30


def _params() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"b": rng.normal(size=5), "w": rng.normal(size=(4, 5)),
            "v": rng.normal(size=(7, 3)), "c": rng.normal(size=(2, 3, 2))}


def _grad(p: dict[str, Any]) -> dict[str, Any]:
    # d/dp of sum(p²/2 + p⁴/4 + 0.3·p): curvature changes along the run
    return {k: np.asarray(x + x**3 + 0.3) for k, x in p.items()}


def _run(ours: Any, theirs: Any, params: dict[str, Any],
         eval_fns: tuple[Callable[..., Any], Callable[..., Any]] | None = None) -> None:
    p, q = params, {k: jnp.asarray(x) for k, x in params.items()}
    s, t = ours.init(p), theirs.init(q)
    their_update = jax.jit(theirs.update)  # unjitted, optax's muon takes seconds a step
    for step in range(STEPS):
        u, s = ours.update(s, _grad(p), p)
        v, t = their_update({k: jnp.asarray(x) for k, x in _grad(p).items()}, t, q)
        p, q = apply_updates(p, u), optax.apply_updates(q, v)
        for k in p:
            np.testing.assert_allclose(p[k], np.asarray(q[k]), rtol=1e-10, atol=1e-10,
                                       err_msg=f"step {step} leaf {k}")
            assert p[k].dtype == np.float64
        if eval_fns is not None:
            e, f = eval_fns[0](s, p), eval_fns[1](t, q)
            for k in p:
                np.testing.assert_allclose(e[k], np.asarray(f[k]), rtol=1e-10, atol=1e-10)


def _warmup(peak: float, steps: int | None) -> Any:
    """optax's own warmup, as its schedule_free_* build it, but read at a float64 count:
    optax's int32 step counts make its schedules float32 even under jax_enable_x64
    (warmup_constant_schedule(0, 0.05, 5)(jnp.int32(1)) is float32 0.01), a 1e-8 relative
    difference that is optax's rounding, not the method's."""
    if steps is None:
        return peak
    sched = optax.warmup_constant_schedule(0.0, peak, steps)
    return lambda c: sched(jnp.asarray(c, jnp.float64))


@pytest.mark.parametrize("warmup", [None, 5])
def test_schedule_free_adamw_matches_optax(warmup: int | None) -> None:
    _run(schedule_free_adamw(0.05, warmup_steps=warmup, weight_decay=0.01),
         optax.contrib.schedule_free_adamw(_warmup(0.05, warmup), weight_decay=0.01),
         _params(), (schedule_free_eval_params, optax.contrib.schedule_free_eval_params))


@pytest.mark.parametrize("warmup", [None, 4])
def test_schedule_free_sgd_matches_optax(warmup: int | None) -> None:
    _run(schedule_free_sgd(0.02, warmup_steps=warmup, b1=0.8, weight_decay=0.1,
                           weight_lr_power=1.5),
         optax.contrib.schedule_free_sgd(_warmup(0.02, warmup), b1=0.8, weight_decay=0.1,
                                         weight_lr_power=1.5),
         _params(), (schedule_free_eval_params, optax.contrib.schedule_free_eval_params))


def test_schedule_free_with_a_schedule_matches_optax() -> None:
    # the schedule is read at step_count = count + 1 by the wrapper, at count by sgd
    def lr(c: Any) -> Any:
        return 0.01 * (1.0 + 0.5 * np.sin(np.asarray(c, np.float64)))

    def lr_jax(c: Any) -> Any:
        return 0.01 * (1.0 + 0.5 * jnp.sin(jnp.asarray(c, jnp.float64)))

    _run(schedule_free(sgd(lr), lr, b1=0.95),
         optax.contrib.schedule_free(optax.sgd(lr_jax), lr_jax, b1=0.95),
         _params(), (schedule_free_eval_params, optax.contrib.schedule_free_eval_params))


@pytest.mark.parametrize("kw", [{}, {"nesterov": False}, {"adaptive": True},
                                {"weight_decay": 0.1, "adam_weight_decay": 0.05,
                                 "adam_learning_rate": 0.003, "beta": 0.9,
                                 "adam_eps_root": 1e-6}])
def test_muon_matches_optax(kw: dict[str, Any]) -> None:
    _run(muon(0.01, **kw), optax.contrib.muon(0.01, **kw), _params())


@pytest.mark.parametrize("kw", [
    {"consistent_rms": 0.2}, {"ns_coeffs": "dion"}, {"ns_coeffs": "standard", "ns_steps": 3},
    {"ns_coeffs": ((3.0, -3.2, 1.2), (3.4445, -4.775, 2.0315)), "ns_steps": 4},
    {"weight_decay": 0.1, "weight_decay_mask": {"b": True, "c": True, "v": False, "w": True}},
    {"weight_decay": 0.1, "weight_decay_mask": lambda p: {k: k != "w" for k in p}}])
def test_muon_options_match_optax(kw: dict[str, Any]) -> None:
    # the mask covers every leaf; only the matrices' (v, w) flags matter, as in optax
    _run(muon(0.01, **kw), optax.contrib.muon(0.01, **kw), _params())


def test_muon_with_a_mu_dtype_matches_optax_to_float32_rounding() -> None:
    # the momenta stored in float32 (optax's Adam part rounds b1·m to float32 first, ours
    # takes it in float64: 1e-8 apart)
    p, q = _params(), {k: jnp.asarray(x) for k, x in _params().items()}
    ours, theirs = muon(0.01, mu_dtype=np.float32), optax.contrib.muon(0.01, mu_dtype=jnp.float32)
    s, t = ours.init(p), theirs.init(q)
    for _ in range(STEPS):
        u, s = ours.update(s, _grad(p), p)
        v, t = jax.jit(theirs.update)({k: jnp.asarray(x) for k, x in _grad(p).items()}, t, q)
        p, q = apply_updates(p, u), optax.apply_updates(q, v)
        for k in p:
            np.testing.assert_allclose(p[k], np.asarray(q[k]), rtol=1e-6, atol=1e-7)
    assert {x.dtype for x in tree.leaves(s.muon.states[0].mu)} == {np.dtype(np.float32)}
    assert {x.dtype for x in tree.leaves(s.adam.states[0].mu)} == {np.dtype(np.float32)}


def test_scale_by_muon_and_newton_schulz_match_optax() -> None:
    rng = np.random.default_rng(1)
    for shape in [(3, 8), (8, 3), (6, 6)]:
        x = rng.normal(size=shape)
        ours = newton_schulz(x, ns_steps=5)
        theirs = optax.contrib._muon.orthogonalize_via_newton_schulz(
            jnp.asarray(x), jnp.asarray((3.4445, -4.775, 2.0315)), 5)
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-10, atol=1e-12)
    params = {"a": rng.normal(size=(4, 6)), "b": rng.normal(size=(5, 2))}
    dims = {k: optax.contrib.MuonDimensionNumbers() for k in params}
    _run(scale_by_muon(ns_steps=3, beta=0.8),
         optax.contrib.scale_by_muon(ns_steps=3, beta=0.8, weight_dimension_numbers=dims),
         params)


@pytest.mark.parametrize("kw", [{}, {"nesterov": True}, {"use_clipping": False},
                                {"b1": 0.8, "b2": 0.99, "eps": 1e-4}])
def test_adopt_matches_optax(kw: dict[str, Any]) -> None:
    _run(adopt(0.01, **kw), optax.contrib.adopt(0.01, **kw), _params())


@pytest.mark.parametrize("nesterov", [False, True])
def test_adopt_with_a_mu_dtype_matches_optax(nesterov: bool) -> None:
    # m stored in float32, each step computed from the float64 m before it is stored
    _run(adopt(0.01, mu_dtype=np.float32, nesterov=nesterov),
         optax.contrib.adopt(0.01, mu_dtype=jnp.float32, nesterov=nesterov), _params())


def test_adopt_custom_clip_matches_optax() -> None:
    _run(adopt(0.01, clip_value_fn=lambda c: 0.5 * (c + 1) ** 0.5),
         optax.contrib.adopt(0.01, clip_value_fn=lambda c: 0.5 * (c + 1) ** 0.5), _params())


def test_float32_gradients_of_1e19_step_as_optax_or_better() -> None:
    # float32 entries of 1e19: g² (1e38) still fits, so adopt, schedule_free_adamw and
    # muon's Adam leaves step as optax's; optax's Newton–Schulz squares the entries for
    # the Frobenius norm (1.2e39: inf) and steps the matrix by 0, funcdl's normalises by
    # max|g| first and steps it as it would a gradient of ones (the method is scale-free)
    g = {"w": np.full((3, 4), 1e19, np.float32), "b": np.full(4, -1e19, np.float32)}
    ones = {"w": np.full((3, 4), 1.0, np.float32), "b": np.full(4, -1.0, np.float32)}
    p = tree.map(np.zeros_like, g)
    for ours, theirs in [(muon(0.01), optax.contrib.muon(0.01)),
                         (adopt(0.01), optax.contrib.adopt(0.01)),
                         (schedule_free_adamw(0.01), optax.contrib.schedule_free_adamw(0.01))]:
        s, t, r = ours.init(p), theirs.init(tree.map(jnp.asarray, p)), ours.init(p)
        their_update = jax.jit(theirs.update)
        for _ in range(3):
            u, s = ours.update(s, g, p)
            v, t = their_update(tree.map(jnp.asarray, g), t, tree.map(jnp.asarray, p))
            w, r = ours.update(r, ones, p)
            for k in g:
                assert u[k].dtype == np.float32 and np.isfinite(u[k]).all()
                if ours.init.__qualname__.startswith("muon") and k == "w":
                    assert not np.asarray(v[k]).any()  # optax's overflowed norm: no step
                    np.testing.assert_allclose(u[k], w[k], rtol=1e-5)
                else:
                    np.testing.assert_allclose(u[k], np.asarray(v[k]), rtol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"b3": 0.99, "alpha": 3.0, "eps_root": 1e-6,
                                     "weight_decay": 0.1},
                                # optax's mask (a probe of the signatures found it missing)
                                {"weight_decay": 0.1, "mask": {"b": False, "c": True,
                                                               "v": True, "w": False}}])
def test_ademamix_matches_optax(kw: dict[str, Any]) -> None:
    _run(ademamix(0.01, **kw), optax.contrib.ademamix(0.01, **kw), _params())


def test_ademamix_schedules_match_optax() -> None:
    b3 = lambda c: 0.9 + 0.09 * (1 - 0.5 ** (np.asarray(c, np.float64) + 1))  # noqa: E731
    al = lambda c: 0.5 * (np.asarray(c, np.float64) + 1) ** 0.5  # noqa: E731
    b3j = lambda c: 0.9 + 0.09 * (1 - 0.5 ** (jnp.asarray(c, jnp.float64) + 1))  # noqa: E731
    alj = lambda c: 0.5 * (jnp.asarray(c, jnp.float64) + 1) ** 0.5  # noqa: E731
    _run(ademamix(0.01, b3=b3, alpha=al), optax.contrib.ademamix(0.01, b3=b3j, alpha=alj),
         _params())


@pytest.mark.parametrize("kw", [{}, {"alpha": 2.0, "b1": 0.9, "eps_root": 1e-6,
                                     "weight_decay": 0.1},
                                {"weight_decay": 0.1, "mask": {"b": False, "c": True,
                                                               "v": True, "w": False}}])
def test_simplified_ademamix_matches_optax(kw: dict[str, Any]) -> None:
    _run(simplified_ademamix(0.001, **kw), optax.contrib.simplified_ademamix(0.001, **kw),
         _params())


@pytest.mark.parametrize(("period", "reset"), [(2, True), (3, False), (3, True)])
def test_sam_matches_optax(period: int, reset: bool) -> None:
    _run(sam(optim.adam(0.05), optim.sgd(0.02, momentum=0.9), period, reset),
         optax.contrib.sam(optax.adam(0.05), optax.sgd(0.02, momentum=0.9), period, reset),
         _params())


def test_sam_opaque_mode_matches_optax() -> None:
    def grad_fn(q: Any, i: int) -> Any:
        return {k: np.asarray(x) ** 3 + i for k, x in q.items()}

    def grad_fn_jax(q: Any, i: int) -> Any:
        return {k: x**3 + i for k, x in q.items()}

    p = _params()
    q = {k: jnp.asarray(x) for k, x in p.items()}
    ours = sam(optim.adam(0.05), optim.sgd(0.02), 3, opaque_mode=True)
    theirs = optax.contrib.sam(optax.adam(0.05), optax.sgd(0.02), 3, opaque_mode=True)
    s, t = ours.init(p), theirs.init(q)
    for _ in range(10):
        u, s = ours.update(s, _grad(p), p, grad_fn=grad_fn)
        v, t = theirs.update({k: jnp.asarray(x) for k, x in _grad(p).items()}, t, q,
                             grad_fn=grad_fn_jax)
        p, q = apply_updates(p, u), optax.apply_updates(q, v)
        for k in p:
            np.testing.assert_allclose(p[k], np.asarray(q[k]), rtol=1e-10, atol=1e-10)
