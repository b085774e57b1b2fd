"""funcdl.optim's newer transforms, aliases, wrappers and schedules against optax's (and
torch.optim's Adamax, NAdam and RAdam, which funcdl's aliases follow), 25 float64 steps on a
small tree. Hand-written references: test_optim_more.py."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from funcdl import optim

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
jnp = jax.numpy

_RNG = np.random.default_rng(0)
P = {"w": _RNG.normal(size=(3, 4)), "b": _RNG.normal(size=4)}
GS = [{k: _RNG.normal(size=v.shape) for k, v in P.items()} for _ in range(25)]
RTOL, ATOL = 1e-12, 1e-13  # ATOL: RAdam's ρ loses 3 digits to cancellation (ρ∞ ≈ 2000)


def _ours(opt: optim.GradientTransformation) -> list[Any]:
    """The params after each step."""
    params, state, out = P, opt.init(P), []
    for g in GS:
        updates, state = opt.update(state, g, params)
        params = optim.apply_updates(params, updates)
        out.append(params)
    return out


def _optax(opt: Any) -> list[Any]:
    params = {k: jnp.asarray(v) for k, v in P.items()}
    state, out = opt.init(params), []
    for g in GS:
        updates, state = opt.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
        out.append({k: np.asarray(v) for k, v in params.items()})
    return out


def _same(ours: list[Any], theirs: list[Any]) -> None:
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=ATOL, err_msg=f"{step} {k}")


def _lr(direction: Any, lib: Any) -> Any:
    """``direction`` then a step of -0.05, in ``lib`` (funcdl.optim or optax)."""
    return lib.chain(direction, lib.scale(-0.05))


def _decay(count: Any) -> float:
    return 0.01 * 0.9 ** float(count)


def _ndim_mask(p: Any) -> Any:
    return {k: np.ndim(v) > 1 for k, v in p.items()}


# (id, funcdl's, optax's): each pair must step alike
PAIRS: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
    ("scale_by_adamax", lambda: _lr(optim.scale_by_adamax(), optim),
     lambda: _lr(optax.scale_by_adamax(), optax)),
    ("scale_by_adamax-args", lambda: _lr(optim.scale_by_adamax(0.5, 0.8, 1e-2), optim),
     lambda: _lr(optax.scale_by_adamax(0.5, 0.8, 1e-2), optax)),
    ("scale_by_lion", lambda: _lr(optim.scale_by_lion(), optim),
     lambda: _lr(optax.scale_by_lion(), optax)),
    ("scale_by_lion-args", lambda: _lr(optim.scale_by_lion(0.5, 0.8), optim),
     lambda: _lr(optax.scale_by_lion(0.5, 0.8), optax)),
    ("scale_by_radam", lambda: _lr(optim.scale_by_radam(), optim),
     lambda: _lr(optax.scale_by_radam(), optax)),
    ("scale_by_radam-args", lambda: _lr(optim.scale_by_radam(0.8, 0.99, 1e-3, 1e-6, 6.0,
                                                             nesterov=True), optim),
     lambda: _lr(optax.scale_by_radam(0.8, 0.99, 1e-3, 1e-6, 6.0, nesterov=True), optax)),
    ("scale_by_trust_ratio", lambda: _lr(optim.scale_by_trust_ratio(), optim),
     lambda: _lr(optax.scale_by_trust_ratio(), optax)),
    ("scale_by_trust_ratio-args", lambda: _lr(optim.scale_by_trust_ratio(1.5, 0.3, 1e-2), optim),
     lambda: _lr(optax.scale_by_trust_ratio(1.5, 0.3, 1e-2), optax)),
    ("apply_every", lambda: _lr(optim.apply_every(3), optim),
     lambda: _lr(optax.apply_every(3), optax)),
    ("ema", lambda: _lr(optim.ema(0.8), optim), lambda: _lr(optax.ema(0.8), optax)),
    ("ema-no-debias", lambda: _lr(optim.ema(0.8, False), optim),
     lambda: _lr(optax.ema(0.8, False), optax)),
    ("multi_steps", lambda: optim.multi_steps(optim.adam(0.05), 3),
     lambda: optax.MultiSteps(optax.adam(0.05), 3, accumulator_dtype=jnp.float64)),
    ("multi_steps-schedule-sum", lambda: optim.multi_steps(optim.lamb(0.05), lambda s: 1 + s % 3,
                                                           use_grad_mean=False),
     lambda: optax.MultiSteps(optax.lamb(0.05), lambda s: 1 + s % 3, use_grad_mean=False,
                              accumulator_dtype=jnp.float64)),
    ("adamax", lambda: optim.adamax(0.05), lambda: optax.adamax(0.05)),
    ("lion", lambda: optim.lion(0.01, 0.8, 0.95, weight_decay=0.5, mask=_ndim_mask),
     lambda: optax.lion(0.01, 0.8, 0.95, weight_decay=0.5, mask=_ndim_mask)),
    # a schedule of floats: optax's own compute in float32 from its int32 count
    ("lion-schedule", lambda: optim.lion(_decay), lambda: optax.lion(_decay)),
    ("lamb", lambda: optim.lamb(0.05, 0.8, 0.99, 1e-4, 1e-8, 0.1, mask=_ndim_mask),
     lambda: optax.lamb(0.05, 0.8, 0.99, 1e-4, 1e-8, 0.1, mask=_ndim_mask)),
    # optax's nadam and radam, built from funcdl's transforms (the aliases are torch's)
    ("optax-nadam", lambda: optim.chain(optim.scale_by_adam(nesterov=True),
                                        optim.scale_by_learning_rate(0.05)),
     lambda: optax.nadam(0.05)),
    ("optax-radam", lambda: optim.chain(optim.scale_by_radam(),
                                        optim.scale_by_learning_rate(0.05)),
     lambda: optax.radam(0.05)),
]


@pytest.mark.parametrize(("ours", "theirs"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_steps_as_optax(ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
    _same(_ours(ours()), _optax(theirs()))


@pytest.mark.parametrize("alias", ["nadam", "radam"])
def test_the_torch_aliases_are_not_optaxs(alias: str) -> None:
    # funcdl's nadam and radam are torch's: NAdam's momentum schedule changes the step by
    # ~40%, RAdam's eps (1e-8/sqrt(1-b2^t) for 1e-8) by ~1e-9 relative here
    ours, theirs = _ours(getattr(optim, alias)(0.05)), _optax(getattr(optax, alias)(0.05))
    gap = max(np.max(np.abs(a[k] - b[k]) / np.abs(b[k]))
              for a, b in zip(ours, theirs, strict=True) for k in a)
    assert gap > (0.05 if alias == "nadam" else 1e-10), gap


# ---------------------------------------------------------------------------- torch

@pytest.fixture
def torch() -> Iterator[Any]:
    torch = pytest.importorskip("torch")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # NAdam keeps its μ product in the default dtype
    yield torch
    torch.set_default_dtype(default)


TORCH = [  # (id, funcdl's, torch.optim's class name and arguments)
    ("adamax", lambda: optim.adamax(0.05), ("Adamax", {"lr": 0.05})),
    ("adamax-args", lambda: optim.adamax(0.05, 0.8, 0.95, 1e-3, 0.1),
     ("Adamax", {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1})),
    ("nadam", lambda: optim.nadam(0.05), ("NAdam", {"lr": 0.05})),
    ("nadam-args", lambda: optim.nadam(0.05, 0.8, 0.95, 1e-3, 0.1, 0.05),
     ("NAdam", {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1,
                "momentum_decay": 0.05})),
    ("nadam-decoupled", lambda: optim.nadam(0.05, weight_decay=0.1, decoupled_weight_decay=True),
     ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True})),
    ("radam", lambda: optim.radam(0.05), ("RAdam", {"lr": 0.05})),
    ("radam-args", lambda: optim.radam(0.05, 0.8, 0.95, 1e-3, 0.1),
     ("RAdam", {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1})),
    ("radam-decoupled", lambda: optim.radam(0.05, weight_decay=0.1, decoupled_weight_decay=True),
     ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True})),
]


@pytest.mark.parametrize(("ours", "theirs"), [t[1:] for t in TORCH], ids=[t[0] for t in TORCH])
def test_steps_as_torch(ours: Callable[[], Any], theirs: tuple[str, dict[str, Any]],
                        torch: Any) -> None:
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in P.items()}
    cls, kwargs = theirs
    opt, steps = getattr(torch.optim, cls)(list(tensors.values()), **kwargs), []
    for g in GS:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        steps.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    _same(_ours(ours()), steps)


# ---------------------------------------------------------------------------- schedules

SGDR = [{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 5, "decay_steps": 40},
        {"init_value": 0.1, "peak_value": 0.5, "warmup_steps": 0, "decay_steps": 30,
         "end_value": 0.01, "exponent": 2.0}]
SCHEDULES = [
    ("linear_onecycle_schedule", (100, 0.5)),
    ("linear_onecycle_schedule", (37, 2.0, 0.2, 0.7, 10.0, 100.0)),
    ("cosine_onecycle_schedule", (100, 0.5)),
    ("cosine_onecycle_schedule", (37, 2.0, 0.45, 10.0, 100.0)),
    ("warmup_exponential_decay_schedule", (0.01, 1.0, 10, 7, 0.5)),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 10, 7, 0.5, 5, True, 0.1)),
    ("warmup_exponential_decay_schedule", (0.2, 1.0, 0, 3, 1.5, 0, False, 4.0)),
    ("sgdr_schedule", (SGDR,)),
]


@pytest.mark.parametrize(("name", "args"), SCHEDULES,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(SCHEDULES)])
def test_schedules_as_optax(name: str, args: tuple[Any, ...]) -> None:
    counts = np.arange(130)
    ours, theirs = getattr(optim, name)(*args), getattr(optax, name)(*args)
    want = [float(theirs(int(c))) for c in counts]  # optax's one-cycles take one count
    np.testing.assert_allclose(ours(counts), want, rtol=1e-13, atol=1e-300)
    assert [ours(int(c)) for c in counts] == list(ours(counts))


# ---------------------------------------------------------------------------- names

# funcdl's own parameters, after optax's (torch's options on the torch aliases)
OWN = {"scale_by_radam": ["eps_before_correction"], "adamax": ["weight_decay"],
       "radam": ["weight_decay", "decoupled_weight_decay"],
       "nadam": ["weight_decay", "momentum_decay", "decoupled_weight_decay"]}
NAMES = ["scale_by_adamax", "scale_by_lion", "scale_by_radam", "scale_by_trust_ratio",
         "apply_every", "ema", "multi_steps", "adamax", "nadam", "radam", "lion", "lamb",
         "linear_onecycle_schedule", "cosine_onecycle_schedule",
         "warmup_exponential_decay_schedule", "sgdr_schedule"]


@pytest.mark.parametrize("name", NAMES)
def test_optaxs_parameter_names_in_optaxs_order(name: str) -> None:
    # The aliases' lr is optax's learning_rate (DESIGN.md's name); funcdl may leave out
    # optax's later parameters (lion's mode, nadam's eps_root...) but not reorder them.
    theirs = (inspect.signature(optax.MultiSteps.__init__) if name == "multi_steps"
              else inspect.signature(getattr(optax, name)))
    want = ["lr" if p == "learning_rate" else p for p in theirs.parameters if p != "self"]
    own = OWN.get(name, [])
    got = list(inspect.signature(getattr(optim, name)).parameters)
    shared = [p for p in got if p not in own]
    assert shared == want[:len(shared)] or shared == [p for p in want if p in shared], got
    assert all(p in want for p in shared) and got == shared + own, (got, want)
