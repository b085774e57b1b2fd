"""inject_hyperparams with a weight decay that a schedule moves from 0 (a warmup) or back to
0: the aliases leave the stageless weight-decay stage out at 0, so the inner state is refitted
when it comes and goes, and the run equals the alias given the schedule itself (optax keeps
the stage at 0); a momentum moved from 0 still needs a new init, its stage keeping state."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim

P = {"w": np.ones((3, 4)), "b": np.float64(0.5)}
RNG = np.random.default_rng(0)
GRADS = [{"w": RNG.standard_normal((3, 4)), "b": np.float64(RNG.standard_normal())}
         for _ in range(8)]


def _run(opt: optim.GradientTransformation) -> dict:
    params, state = P, opt.init(P)
    for g in GRADS:
        updates, state = opt.update(state, g, params)
        params = optim.apply_updates(params, updates)
    return params


def _by_hand(alias: str, lr: float, wd: object) -> optim.GradientTransformation:
    """The alias's stages with the weight decay a schedule (the aliases take a number)."""
    direction = {"adamw": optim.scale_by_adam(), "nadamw": optim.scale_by_adam(nesterov=True),
                 "lamb": optim.scale_by_adam(eps=1e-6)}[alias]
    stages = [direction, optim.add_decayed_weights(wd)]
    if alias == "lamb":
        stages.append(optim.scale_by_trust_ratio())
    return optim.chain(*stages, optim.scale_by_learning_rate(lr))


def _back_to_decay(count: int) -> float:
    return 0.1 if count < 3 or count >= 6 else 0.0


@pytest.mark.parametrize("alias", ["adamw", "nadamw", "lamb"])
@pytest.mark.parametrize("schedule", [lambda: optim.linear_schedule(0.0, 0.1, 4),
                                      lambda: _back_to_decay],
                         ids=["warmup-from-0", "to-0-and-back"])
def test_a_weight_decay_schedule_through_zero_runs_as_the_alias_with_it(alias, schedule):
    make = getattr(optim, alias)
    injected = _run(optim.inject_hyperparams(make)(lr=1e-2, weight_decay=schedule()))
    plain = _run(_by_hand(alias, 1e-2, schedule()))
    for k in P:
        np.testing.assert_allclose(injected[k], plain[k], rtol=1e-14, atol=1e-15)
    without = _run(make(1e-2, weight_decay=0.0))
    assert not np.allclose(injected["w"], without["w"])  # the decay did act


def test_a_momentum_from_zero_still_asks_for_a_new_init():
    opt = optim.inject_hyperparams(optim.sgd)(lr=0.1, momentum=optim.linear_schedule(0.0, 0.9, 2))
    state = opt.init(P)
    opt.update(state, GRADS[0], P)
    _, state = opt.update(state, GRADS[0], P)
    with pytest.raises(ValueError, match="a stage that keeps state, as a momentum changed "
                                         "from 0, needs a new init"):
        opt.update(state, GRADS[1], P)
