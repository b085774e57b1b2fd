"""funcdl's MADGRAD, ACProp, MoMo and DP-SGD (``_madgrad``, ``_adam_variants`` / ``_adam_aliases``,
``_polyak``, ``_dpsgd``) against optax 0.2.8's optax.contrib twins: float64 updates and state
numbers over 6 steps on a three-leaf tree, agreeing to ~1e-14 relative. DP-SGD's noise comes
from another generator: its clipping and mean are compared with noise_multiplier=0."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
import jax.numpy as jnp  # noqa: E402

from funcdl import optim, random  # noqa: E402
from funcdl.optim._adam_aliases import acprop  # noqa: E402
from funcdl.optim._adam_variants import scale_by_acprop  # noqa: E402
from funcdl.optim._dpsgd import (  # noqa: E402
    differentially_private_aggregate,
    dpsgd,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from funcdl.optim._madgrad import madgrad, scale_by_madgrad  # noqa: E402
from funcdl.optim._polyak import momo, momo_adam  # noqa: E402

STEPS = 6
LR = "learning_rate"  # optax.contrib's name, which these keep
RTOL, ATOL = 1e-13, 1e-15


def _params() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {"b": rng.normal(size=4), "s": np.asarray(0.7), "w": rng.normal(size=(3, 4))}


def _grads(step: int, p: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(100 + step)
    # scales that vary by step, and some dependence on the params, as real runs have
    return {k: rng.normal(size=x.shape) * (0.5 + step) + 0.3 * x for k, x in p.items()}


def _jnp(t: dict[str, Any]) -> dict[str, Any]:
    return {k: jnp.asarray(x) for k, x in t.items()}


def _close(ours: Any, theirs: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=RTOL, atol=ATOL,
                               err_msg=what)


def _tree_close(ours: dict[str, Any], theirs: Any, what: str) -> None:
    assert set(ours) == set(theirs), what
    for k in ours:
        _close(ours[k], theirs[k], f"{what}[{k!r}]")


def _wide_counts(state: Any) -> Any:
    """optax's state with its int32 counts as int64: ``jnp.sqrt`` of an int32 count is
    float32 even under jax_enable_x64 (MADGRAD's ``sqrt(count + 1)``, schedules read at
    the count), a 1e-8 relative rounding of optax's, not of the method."""
    return jax.tree.map(lambda x: x.astype(jnp.int64) if x.dtype == jnp.int32 else x, state)


def _run(ours: Any, theirs: Any, fields: tuple[str, ...] = (), stage: str | None = None,
         their_stage: int | None = None, loss: bool = False) -> None:
    """Both over STEPS updates, each on its own params; updates and the state ``fields``
    (of the named / indexed stage for chains) compared after every step."""
    p = _params()
    q = _jnp(p)
    s, t = ours.init(p), _wide_counts(theirs.init(q))
    for step in range(STEPS):
        g = _grads(step, p)
        kw = {"value": 0.5 * sum(float(np.sum(x * x)) for x in p.values()) + 0.1 * step} \
            if loss else {}
        u, s = ours.update(s, g, p, **kw)
        v, t = theirs.update(_jnp(g), t, q, **kw)
        _tree_close(u, v, f"step {step} updates")
        ss = s if stage is None else s.states[stage]
        tt = t if their_stage is None else t[their_stage]
        for f in fields:
            a, b = getattr(ss, f), getattr(tt, f)
            if isinstance(a, dict):
                _tree_close(a, b, f"step {step} state.{f}")
            else:
                _close(a, b, f"step {step} state.{f}")
        p, q = optim.apply_updates(p, u), optax.apply_updates(q, v)


def _sched(c: Any) -> Any:
    return 0.05 * (1.0 + 0.5 * c)


# ---------------------------------------------------------------------------- MADGRAD

@pytest.mark.parametrize("lr,momentum,wd,eps", [(0.05, 0.9, 0.0, 1e-6), (0.1, 0.5, 0.01, 1e-3),
                                                (_sched, 0.0, 0.0, 1e-6)])
def test_madgrad_matches_optax(lr: Any, momentum: float, wd: float, eps: float) -> None:
    _run(madgrad(lr, momentum, wd, eps),
         optax.contrib.madgrad(lr, momentum=momentum, weight_decay=wd, eps=eps),
         ("count", "grad_sum_sq", "s", "x0"), "madgrad", 1)


def test_scale_by_madgrad_matches_optax() -> None:
    _run(scale_by_madgrad(0.07, momentum=0.8, eps=1e-5),
         optax.contrib.scale_by_madgrad(0.07, momentum=0.8, eps=1e-5),
         ("count", "grad_sum_sq", "s", "x0"))


# ---------------------------------------------------------------------------- ACProp
# b1 = 1: optax 0.2.8 takes the residual g - m from the momentum before the update, funcdl
# after it, as the paper (tests/test_optim_paper_rules.py); with m held at 0 they agree, and
# the twins compare the rest: the second moment, its bias correction, eps, decay and mask.

@pytest.mark.parametrize("kw", [{}, {"b2": 0.9, "eps": 1e-8, "eps_root": 1e-10},
                                {"weight_decay": 0.1}])
def test_acprop_matches_optax(kw: dict[str, Any]) -> None:
    _run(acprop(0.03, b1=1.0, **kw), optax.contrib.acprop(0.03, b1=1.0, **kw),
         ("count", "mu", "nu"), "acprop", 0)


def test_acprop_schedule_and_mask_match_optax() -> None:
    mask = {"b": False, "s": True, "w": True}
    _run(acprop(_sched, b1=1.0, weight_decay=0.2, mask=mask),
         optax.contrib.acprop(_sched, b1=1.0, weight_decay=0.2, mask=mask))


def test_scale_by_acprop_matches_optax() -> None:
    _run(scale_by_acprop(1.0, 0.95), optax.contrib.scale_by_acprop(1.0, 0.95),
         ("count", "mu", "nu"))


# ---------------------------------------------------------------------------- MoMo

MOMO_FIELDS = ("exp_avg", "barf", "gamma", "lb", "count")


# weight decay off: optax 0.2.8 leaves the Polyak step undivided by 1 + lr·wd, funcdl divides
# it as the paper and its authors' code (tests/test_optim_paper_rules.py)
@pytest.mark.parametrize("kw", [{}, {LR: 0.05}, {LR: 0.3, "beta": 0.5, "lower_bound": 0.2},
                                {LR: 2.0, "adapt_lower_bound": True},
                                {LR: _sched, "adapt_lower_bound": True, "lower_bound": -1.0}])
def test_momo_matches_optax(kw: dict[str, Any]) -> None:
    theirs = dict(kw)
    _run(momo(**kw), optax.contrib.momo(**theirs), MOMO_FIELDS, loss=True)


@pytest.mark.parametrize("kw", [{}, {LR: 0.5}, {LR: 0.3, "b1": 0.5, "b2": 0.9, "eps": 1e-6,
                                                  "lower_bound": 0.2},
                                {LR: 2.0, "adapt_lower_bound": True},
                                {LR: _sched, "adapt_lower_bound": True}])
def test_momo_adam_matches_optax(kw: dict[str, Any]) -> None:
    theirs = dict(kw)
    _run(momo_adam(**kw), optax.contrib.momo_adam(**theirs), ("exp_avg_sq", *MOMO_FIELDS),
         loss=True)


def test_momo_in_a_chain_matches_optax() -> None:
    # value= flows through funcdl's chain as through optax's
    _run(optim.chain(optim.clip_by_global_norm(3.0), momo(0.5)),
         optax.chain(optax.clip_by_global_norm(3.0), optax.contrib.momo(0.5)), loss=True)


# ---------------------------------------------------------------------------- DP-SGD

def _per_example(scale: float = 1.0, n: int = 5) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    g = {"b": rng.normal(size=(n, 4)), "s": rng.normal(size=n), "w": rng.normal(size=(n, 3, 4))}
    g["b"][1] = 0.0  # a zero-norm example needs no clipping
    g["s"][1] = 0.0
    g["w"][1] = 0.0
    return {k: x * scale for k, x in g.items()}


@pytest.mark.parametrize("clip", [0.0, 0.5, 2.0, 4.0, np.inf])
def test_per_example_global_norm_clip_matches_optax(clip: float) -> None:
    g = _per_example()
    ours, k = per_example_global_norm_clip(g, clip)
    theirs, j = optax.per_example_global_norm_clip(_jnp(g), clip)
    _tree_close(ours, theirs, "sum")
    assert k == int(j)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("clip", [0.0, 1.0, 3.0, np.inf])
def test_per_example_layer_norm_clip_matches_optax(clip: float, uniform: bool) -> None:
    g = _per_example()
    ours, k = per_example_layer_norm_clip(g, clip, uniform)
    theirs, j = optax.per_example_layer_norm_clip(_jnp(g), clip, uniform)
    _tree_close(ours, theirs, "sum")
    assert {n: int(x) for n, x in k.items()} == {n: int(x) for n, x in j.items()}


def _dp_run(ours: Any, theirs: Any) -> None:
    p = {k: x[0] * 0.0 + 0.5 for k, x in _per_example().items()}
    q = _jnp(p)
    s, t = ours.init(p), _wide_counts(theirs.init(q))
    for step in range(STEPS):
        g = _per_example(scale=0.5 + step)
        u, s = ours.update(s, g, p)
        v, t = theirs.update(_jnp(g), t, q)
        _tree_close(u, v, f"step {step} updates")
        p, q = optim.apply_updates(p, u), optax.apply_updates(q, v)


@pytest.mark.parametrize("clip", [0.3, 1.5, 100.0])
def test_differentially_private_aggregate_without_noise_matches_optax(clip: float) -> None:
    _dp_run(differentially_private_aggregate(clip, 0.0, random.key(0)),
            optax.contrib.differentially_private_aggregate(clip, 0.0, jax.random.key(0)))


@pytest.mark.parametrize("momentum,nesterov", [(None, False), (0.9, False), (0.7, True)])
def test_dpsgd_without_noise_matches_optax(momentum: float | None, nesterov: bool) -> None:
    with warnings.catch_warnings():  # optax's dpsgd passes the deprecated seed= itself
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = optax.contrib.dpsgd(0.1, 1.5, 0.0, 0, momentum, nesterov)
    _dp_run(dpsgd(0.1, 1.5, 0.0, random.key(0), momentum, nesterov), theirs)


def test_aggregate_noise_std_matches_optax_law() -> None:
    # both: per entry, the clipped sum plus N(0, (C·mult)²), over the batch size
    n, size, clip, mult = 4, 40_000, 1.0, 0.8
    g = {"w": np.zeros((n, size))}
    ours, _ = differentially_private_aggregate(clip, mult, random.key(3)).update(
        differentially_private_aggregate(clip, mult, random.key(3)).init({"w": np.zeros(size)}),
        g)
    agg = optax.contrib.differentially_private_aggregate(clip, mult, jax.random.key(3))
    theirs, _ = agg.update(_jnp(g), agg.init(None))
    want = clip * mult / n
    for x in (ours["w"], np.asarray(theirs["w"])):
        assert abs(np.std(x) / want - 1.0) < 0.03
        assert abs(np.mean(x)) < 5 * want / np.sqrt(size)
