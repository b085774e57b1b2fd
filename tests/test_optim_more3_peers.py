"""funcdl.optim's Adafactor, scale_by_factored_rms, lookahead, adaptive_grad_clip, zero_nans,
keep_params_nonnegative and add_noise against optax's, and sgd's dampening against
torch.optim.SGD, over 20-25 float64 steps. Hand-written references: test_optim_more3.py."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import optim
from funcdl.optim import (
    LookaheadParams,
    adafactor,
    adaptive_grad_clip,
    add_noise,
    keep_params_nonnegative,
    lookahead,
    scale_by_factored_rms,
    zero_nans,
)

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
jnp = jax.numpy

_RNG = np.random.default_rng(5)
# factored at min_dim_size_to_factor=3: w (rank 3), m, t (a tie: 4 = 4); not: b, c, s.
# c, (1, 3), is a vector to adaptive_grad_clip once squeezed
P = {"w": _RNG.normal(size=(5, 3, 4)), "m": _RNG.normal(size=(6, 4)),
     "t": _RNG.normal(size=(4, 4)), "b": _RNG.normal(size=4), "c": _RNG.normal(size=(1, 3)),
     "s": np.asarray(0.3)}
GS = [{k: _RNG.normal(size=np.shape(v)) for k, v in P.items()} for _ in range(22)]
# ATOL: weight decay and momentum sum terms of opposite signs; a few entries cancel to 1e-4
# of their terms, and lose that much of the relative precision
RTOL, ATOL = 1e-12, 1e-15


def _j(t: dict[str, Any]) -> dict[str, Any]:
    return {k: jnp.asarray(v) for k, v in t.items()}


def _f64_decay(step: Any, exponent: Any = 0.8) -> Any:
    # optax's default decay is computed in float32 (from its int32 count): in float64, as ours
    return 1.0 - jnp.asarray(step + 1, jnp.float64) ** (-exponent)


@pytest.fixture
def f64_adafactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """optax.adafactor building its scale_by_factored_rms with the float64 decay."""
    from optax._src import factorized
    monkeypatch.setattr(factorized, "scale_by_factored_rms", functools.partial(
        factorized.scale_by_factored_rms, decay_rate_fn=_f64_decay))


def _ours(opt: optim.GradientTransformation, gs: list[Any] = GS, ps: Any = P) -> list[Any]:
    params, state, out = ps, opt.init(ps), []
    for g in gs:
        updates, state = opt.update(state, g, params)
        params = optim.apply_updates(params, updates)
        out.append(updates)
    return out


def _optax(opt: Any, gs: list[Any] = GS, ps: Any = P) -> list[Any]:
    params = _j(ps)
    state, out = opt.init(params), []
    for g in gs:
        updates, state = opt.update(_j(g), state, params)
        params = optax.apply_updates(params, updates)
        out.append({k: np.asarray(v) for k, v in updates.items()})
    return out


def _same(ours: list[Any], theirs: list[Any], rtol: float = RTOL, atol: float = ATOL) -> None:
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol,
                                       err_msg=f"step {step} leaf {k}")


ADAFACTOR = [
    {"min_dim_size_to_factor": 3},
    {"factored": False},
    {"min_dim_size_to_factor": 4, "learning_rate": 0.05, "decay_rate": 0.7,
     "decay_offset": -3},
    {"min_dim_size_to_factor": 3, "momentum": 0.9, "dtype_momentum": np.float64,
     "weight_decay_rate": 1e-2, "clipping_threshold": 0.5},
    {"min_dim_size_to_factor": 3, "multiply_by_parameter_scale": False,
     "clipping_threshold": None, "eps": 1e-3},
    {"min_dim_size_to_factor": 3, "weight_decay_rate": 1e-2,
     "weight_decay_mask": {"w": True, "m": False, "t": True, "b": False, "c": True,
                           "s": False}},
]


@pytest.mark.usefixtures("f64_adafactor")
@pytest.mark.parametrize("kw", ADAFACTOR)
def test_adafactor_matches_optax(kw: dict[str, Any]) -> None:
    theirs = {k: jnp.float64 if v is np.float64 else v for k, v in kw.items()}
    _same(_ours(adafactor(**kw)), _optax(optax.adafactor(**theirs)))


def test_adafactor_matches_optaxs_own_float32_decay_to_float32_rounding() -> None:
    _same(_ours(adafactor(min_dim_size_to_factor=3)),
          _optax(optax.adafactor(min_dim_size_to_factor=3)), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kw", [
    {"min_dim_size_to_factor": 3},
    {"factored": False, "decay_rate": 0.5, "epsilon": 1e-4},
    {"min_dim_size_to_factor": 4, "step_offset": -2, "decay_rate_fn":
     lambda step, rate: min(0.95, 1.0 - (step + 1.0) ** -rate)},
])
def test_scale_by_factored_rms_matches_optax(kw: dict[str, Any]) -> None:
    theirs = {**kw, "decay_rate_fn": kw.get("decay_rate_fn", _f64_decay)}
    if "decay_rate_fn" in kw:  # jnp's minimum, traced by optax's jit-free update
        theirs["decay_rate_fn"] = lambda step, rate: jnp.minimum(
            0.95, 1.0 - (jnp.asarray(step, jnp.float64) + 1.0) ** -rate)
    ours = scale_by_factored_rms(**kw)
    _same(_ours(ours), _optax(optax.scale_by_factored_rms(**theirs)))
    state, t_state = ours.init(P), optax.scale_by_factored_rms(**theirs).init(_j(P))
    for field in ("v_row", "v_col", "v"):  # the same layout, placeholders included
        for k in P:
            assert np.shape(getattr(state, field)[k]) == getattr(t_state, field)[k].shape


@pytest.mark.parametrize(("period", "alpha", "reset"), [(3, 0.4, False), (2, 0.7, True),
                                                        (1, 0.5, False)])
def test_lookahead_matches_optax(period: int, alpha: float, reset: bool) -> None:
    ours = lookahead(optim.adam(0.05), period, alpha, reset)
    theirs = optax.lookahead(optax.adam(0.05), period, alpha, reset)
    params, state = LookaheadParams.init_synced(P), None
    t_params = optax.LookaheadParams.init_synced(_j(P))
    state, t_state = ours.init(params), theirs.init(t_params)
    for i, g in enumerate(GS):
        u, state = ours.update(state, g, params)
        t_u, t_state = theirs.update(_j(g), t_state, t_params)
        for half in ("fast", "slow"):
            for k in P:
                np.testing.assert_allclose(getattr(u, half)[k],
                                           np.asarray(getattr(t_u, half)[k]), rtol=RTOL,
                                           atol=ATOL, err_msg=f"step {i} {half} {k}")
        params, t_params = optim.apply_updates(params, u), optax.apply_updates(t_params, t_u)
        assert int(state.steps_since_sync) == int(t_state.steps_since_sync)


def _big_grads() -> list[Any]:
    """Grads scaled up and down so that some units clip and some do not."""
    return [{k: v * (10.0 if i % 2 else 0.05) for k, v in g.items()} for i, g in enumerate(GS)]


@pytest.mark.parametrize(("ours", "theirs"), [
    (lambda: adaptive_grad_clip(0.1), lambda: optax.adaptive_grad_clip(0.1)),
    (lambda: adaptive_grad_clip(0.5, eps=0.3), lambda: optax.adaptive_grad_clip(0.5, 0.3)),
    (lambda: adaptive_grad_clip(0.2, axis=0), lambda: optax.adaptive_grad_clip(0.2, axis=0)),
], ids=["default", "eps", "axis"])
def test_adaptive_grad_clip_matches_optax(ours: Callable[[], Any],
                                          theirs: Callable[[], Any]) -> None:
    ps = {k: v for k, v in P.items() if k != "s"}  # axis=0 does not fit the 0-d leaf
    gs = [{k: g[k] for k in ps} for g in _big_grads()]
    _same(_ours(ours(), gs, ps), _optax(theirs(), gs, ps))


def _with_nans() -> list[Any]:
    out = []
    for i, g in enumerate(GS):
        g = {k: np.array(v) for k, v in g.items()}
        if i % 3 == 0:
            g["m"][i % 6, 1] = np.nan
            g["b"][0] = np.inf
        out.append(g)
    return out


def test_zero_nans_matches_optax_with_its_flags() -> None:
    ours, theirs = zero_nans(), optax.zero_nans()
    state, t_state = ours.init(P), theirs.init(_j(P))
    for g in _with_nans():
        u, state = ours.update(state, g, P)
        t_u, t_state = theirs.update(_j(g), t_state, _j(P))
        for k in P:
            np.testing.assert_array_equal(u[k], np.asarray(t_u[k]))
            assert bool(state.found_nan[k]) == bool(t_state.found_nan[k])


def test_keep_params_nonnegative_matches_optax_in_a_chain() -> None:
    ours = optim.chain(optim.sgd(0.3), keep_params_nonnegative())
    theirs = optax.chain(optax.sgd(0.3), optax.keep_params_nonnegative())
    got, want = _ours(ours), _optax(theirs)
    _same(got, want)
    params = P
    for u in got:
        params = optim.apply_updates(params, u)
    assert min(float(np.min(v)) for v in params.values()) >= 0.0


def test_add_noise_matches_optaxs_statistics() -> None:
    # bits differ (funcdl.random against jax.random): compare the noise's mean and variance
    g = {"a": np.zeros(20000)}
    ours = add_noise(0.5, 0.55, fd.random.key(1))
    theirs = optax.add_noise(0.5, 0.55, jax.random.key(1))
    state, t_state = ours.init(g), theirs.init(_j(g))
    for _ in range(5):
        u, state = ours.update(state, g)
        t_u, t_state = theirs.update(_j(g), t_state)
        a, b = u["a"], np.asarray(t_u["a"])
        assert abs(a.mean() - b.mean()) < 5 * np.sqrt(2 * b.var() / a.size)
        assert abs(a.var() / b.var() - 1) < 0.06
        assert int(state.count) == int(t_state.count)


# ---------------------------------------------------------------------------- torch

@pytest.fixture
def torch() -> Iterator[Any]:
    yield pytest.importorskip("torch")


@pytest.mark.parametrize("kw", [{"momentum": 0.9, "dampening": 0.3},
                                {"momentum": 0.5, "dampening": 0.9, "weight_decay": 1e-2},
                                {"momentum": 0.9, "dampening": 0.0, "nesterov": True}])
def test_sgd_dampening_matches_torch(kw: dict[str, Any], torch: Any) -> None:
    ps = {k: torch.tensor(np.array(v, ndmin=1), requires_grad=True) for k, v in P.items()}
    t_opt = torch.optim.SGD(list(ps.values()), lr=0.1, **kw)
    opt = optim.sgd(0.1, **kw)
    params = {k: np.array(v, ndmin=1) for k, v in P.items()}
    state = opt.init(params)
    for step, g in enumerate(GS):
        g = {k: np.array(v, ndmin=1) for k, v in g.items()}
        for k, p in ps.items():
            p.grad = torch.tensor(g[k])
        t_opt.step()
        u, state = opt.update(state, g, params)
        params = optim.apply_updates(params, u)
        for k in P:
            np.testing.assert_allclose(params[k], ps[k].detach().numpy(), rtol=1e-12,
                                       atol=1e-15, err_msg=f"step {step} leaf {k}")
