"""funcdl.optim's Adadelta, Rprop, AdaBelief, Yogi, inject_hyperparams and reduce_on_plateau
against optax's (and torch.optim's Adadelta, Rprop and ReduceLROnPlateau), 25 float64 steps on
a small tree. Hand-written references: test_optim_more2.py, test_optim_inject.py,
test_optim_plateau.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim
from funcdl.optim import (
    adabelief,
    adadelta,
    inject_hyperparams,
    reduce_on_plateau,
    rprop,
    scale_by_adadelta,
    scale_by_belief,
    scale_by_rprop,
    scale_by_yogi,
    yogi,
)

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
jnp = jax.numpy

_RNG = np.random.default_rng(1)
P = {"w": _RNG.normal(size=(3, 4)), "b": _RNG.normal(size=4)}
GS = [{k: _RNG.normal(size=v.shape) for k, v in P.items()} for _ in range(25)]
RTOL = 1e-12


def _j(t: dict[str, Any]) -> dict[str, Any]:
    return {k: jnp.asarray(v) for k, v in t.items()}


def _ours(opt: optim.GradientTransformation, extra: Callable[[int], dict[str, Any]] | None = None
          ) -> list[Any]:
    """The updates of each step (params moved by them)."""
    params, state, out = P, opt.init(P), []
    for i, g in enumerate(GS):
        updates, state = opt.update(state, g, params, **(extra(i) if extra else {}))
        params = optim.apply_updates(params, updates)
        out.append(updates)
    return out


def _optax(opt: Any, extra: Callable[[int], dict[str, Any]] | None = None) -> list[Any]:
    params = _j(P)
    state, out = opt.init(params), []
    for i, g in enumerate(GS):
        updates, state = opt.update(_j(g), state, params, **(extra(i) if extra else {}))
        params = optax.apply_updates(params, updates)
        out.append({k: np.asarray(v) for k, v in updates.items()})
    return out


def _same(ours: list[Any], theirs: list[Any], rtol: float = RTOL) -> None:
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-300,
                                       err_msg=f"step {step} leaf {k}")


# ---------------------------------------------------------------------------- optax

PAIRS: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
    ("scale_by_adadelta", lambda: scale_by_adadelta(0.8, 1e-3),
     lambda: optax.scale_by_adadelta(0.8, 1e-3)),
    ("adadelta", lambda: adadelta(0.5, 0.9, 1e-6, 1e-2),
     lambda: optax.adadelta(0.5, 0.9, 1e-6, weight_decay=1e-2)),
    ("scale_by_belief", lambda: scale_by_belief(0.8, 0.9, 1e-8, 1e-6),
     lambda: optax.scale_by_belief(0.8, 0.9, 1e-8, 1e-6)),
    ("scale_by_belief-nesterov", lambda: scale_by_belief(nesterov=True),
     lambda: optax.scale_by_belief(nesterov=True)),
    ("adabelief", lambda: adabelief(1e-2), lambda: optax.adabelief(1e-2)),
    ("scale_by_yogi", lambda: scale_by_yogi(0.8, 0.9, 1e-2, 1e-4, 0.3),
     lambda: optax.scale_by_yogi(0.8, 0.9, 1e-2, 1e-4, 0.3)),
    ("yogi", lambda: yogi(1e-2), lambda: optax.yogi(1e-2)),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), PAIRS, ids=[p[0] for p in PAIRS])
def test_matches_optax(name: str, ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
    _same(_ours(ours()), _optax(theirs()))


def test_rprop_is_optaxs_but_for_its_one_step_stale_update() -> None:
    # optax 0.2.8's scale_by_rprop returns the previous step's step·sign(g) (0 at the first
    # update, 0 after a sign change), not this step's (google-deepmind/optax PR #1725); its
    # step sizes are the same as ours (and torch's)
    ours, theirs = scale_by_rprop(0.01, 0.4, 1.3, 1e-3, 0.05), \
        optax.scale_by_rprop(0.01, 0.4, 1.3, 1e-3, 0.05)
    state, t_state = ours.init(P), theirs.init(_j(P))
    for g in GS:
        prev = state.prev_updates
        _, state = ours.update(state, g)
        t_u, t_state = theirs.update(_j(g), t_state)
        for k in P:
            stale = np.where(np.sign(g[k]) * np.sign(prev[k]) < 0, 0.0, prev[k])
            np.testing.assert_array_equal(np.asarray(t_u[k]), stale)
            np.testing.assert_allclose(state.step_sizes[k], np.asarray(t_state.step_sizes[k]),
                                       rtol=RTOL)


# ---------------------------------------------------------------------------- torch

def _torch(make: Callable[[list[Any]], Any]) -> list[Any]:
    """The params after each step of the torch optimizer ``make`` makes."""
    ps = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in P.items()}
    opt, out = make(list(ps.values())), []
    for g in GS:
        for k, p in ps.items():
            p.grad = torch.tensor(g[k])
        opt.step()
        out.append({k: p.detach().numpy().copy() for k, p in ps.items()})
    return out


def _params(opt: optim.GradientTransformation) -> list[Any]:
    params, state, out = P, opt.init(P), []
    for g in GS:
        updates, state = opt.update(state, g, params)
        params = optim.apply_updates(params, updates)
        out.append(params)
    return out


@pytest.mark.parametrize(("ours", "theirs"), [
    (lambda: adadelta(), lambda ps: torch.optim.Adadelta(ps)),
    (lambda: adadelta(0.3, 0.7, 1e-3, 0.05),
     lambda ps: torch.optim.Adadelta(ps, lr=0.3, rho=0.7, eps=1e-3, weight_decay=0.05)),
    (lambda: rprop(), lambda ps: torch.optim.Rprop(ps)),
    (lambda: rprop(0.2, (0.3, 1.6), (1e-2, 0.5)),
     lambda ps: torch.optim.Rprop(ps, lr=0.2, etas=(0.3, 1.6), step_sizes=(1e-2, 0.5))),
    (lambda: rprop(3.0, (0.3, 1.6), (1e-2, 0.5)),  # lr above the bound: clipped at once
     lambda ps: torch.optim.Rprop(ps, lr=3.0, etas=(0.3, 1.6), step_sizes=(1e-2, 0.5))),
], ids=["adadelta", "adadelta-settings", "rprop", "rprop-settings", "rprop-lr-clipped"])
def test_matches_torch(ours: Callable[[], Any], theirs: Callable[[list[Any]], Any]) -> None:
    got, want = _params(ours()), _torch(theirs)
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, err_msg=f"step {step} leaf {k}")


# ---------------------------------------------------------------------------- inject

def test_inject_hyperparams_matches_optax_with_a_mid_run_change() -> None:
    ours = inject_hyperparams(optim.adam)(lr=0.05, b1=0.8)
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=0.05, b1=0.8)
    state, t_state = ours.init(P), theirs.init(_j(P))
    params, t_params = P, _j(P)
    for i, g in enumerate(GS):
        if i == 10:  # a learning rate and a b2 changed by hand, in both states
            state = state._replace(hyperparams={**state.hyperparams, "lr": np.asarray(0.005),
                                                "b2": np.asarray(0.9)})
            t_state.hyperparams["learning_rate"] = jnp.asarray(0.005)
            t_state.hyperparams["b2"] = jnp.asarray(0.9)
        u, state = ours.update(state, g, params)
        t_u, t_state = theirs.update(_j(g), t_state, t_params)
        params, t_params = optim.apply_updates(params, u), optax.apply_updates(t_params, t_u)
        for k in P:
            np.testing.assert_allclose(u[k], np.asarray(t_u[k]), rtol=RTOL, err_msg=f"{i} {k}")
        assert float(state.hyperparams["lr"]) == float(t_state.hyperparams["learning_rate"])


def _schedule(count: Any) -> float:
    # float(count): optax's own schedules compute in float32 from its int32 count
    return 0.1 / (1.0 + 0.3 * float(count))


def test_inject_hyperparams_schedules_match_optax() -> None:
    ours = inject_hyperparams(optim.sgd)(lr=_schedule, momentum=0.9)
    theirs = optax.inject_hyperparams(optax.sgd)(learning_rate=_schedule, momentum=0.9)
    _same(_ours(ours), _optax(theirs))


# ---------------------------------------------------------------------------- plateau

LOSSES = [5.0, 4.0, 4.0, 3.9999, 4.1, 3.0, 3.0, 3.5, 3.2, 3.1, 3.05, 3.0, 2.0, 2.0, 2.5,
          2.5, 2.5, 2.5, 1.0, 1.0, 1.5, 1.2, 1.1, 1.0, 0.99]


@pytest.mark.parametrize("kw", [
    {"factor": 0.5, "patience": 2},
    {"factor": 0.5, "patience": 2, "rtol": 0.05, "cooldown": 2, "min_scale": 0.1},
    {"factor": 0.3, "patience": 1, "rtol": 0.0, "atol": 0.05, "accumulation_size": 3},
    {"factor": 0.7, "patience": 3, "rtol": 1e-3, "atol": 0.01, "cooldown": 1,
     "accumulation_size": 2, "min_scale": 0.2},
])
def test_reduce_on_plateau_matches_optax_contrib(kw: dict[str, Any]) -> None:
    ours = optim.chain(optim.sgd(0.1), reduce_on_plateau(**kw))
    theirs = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau(**kw))
    value = lambda i: {"value": LOSSES[i]}  # noqa: E731
    _same(_ours(ours, value), _optax(theirs, value))
    state, t_state = ours.init(P), theirs.init(_j(P))
    for i, g in enumerate(GS):
        _, state = ours.update(state, g, P, value=LOSSES[i])
        _, t_state = theirs.update(_j(g), t_state, _j(P), value=LOSSES[i])
        mine, their = state.states[1], t_state[1]
        for field in mine._fields:
            assert float(getattr(mine, field)) == float(getattr(their, field)), (i, field)


@pytest.mark.parametrize(("patience", "cooldown", "min_scale"), [(2, 0, 0.0), (3, 2, 0.05),
                                                                  (1, 1, 0.2)])
def test_reduce_on_plateau_matches_torchs_reduce_lr_on_plateau(
        patience: int, cooldown: int, min_scale: float) -> None:
    # torch reduces after more than `patience` bad epochs, optax (and this) after `patience`;
    # torch's new lr applies from the next step, the scale from this one
    lr0, factor, rtol = 0.1, 0.5, 1e-3
    opt = reduce_on_plateau(factor, patience, rtol, cooldown=cooldown, min_scale=min_scale)
    p = torch.zeros(1, requires_grad=True)
    sgd = torch.optim.SGD([p], lr=lr0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        sgd, mode="min", factor=factor, patience=patience - 1, threshold=rtol,
        threshold_mode="rel", cooldown=cooldown, min_lr=lr0 * min_scale)
    state = opt.init(P)
    for loss in LOSSES:
        _, state = opt.update(state, GS[0], P, value=loss)
        sched.step(loss)
        assert lr0 * float(state.scale) == pytest.approx(sgd.param_groups[0]["lr"], rel=1e-12)
