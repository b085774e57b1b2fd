"""parallel.sharded refuses a transform that decides from all the gradient's entries at once
whether to step (apply_if_finite; multi_steps with a should_skip_update_fn; a rule skipping
on a NaN anywhere): each rank sees only its entries, so ranks would decide apart. Without
MPI: the refusal is made before any communicator is touched."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from funcdl import optim, parallel
from funcdl.optim import EmptyState, GradientTransformation


def _skip_on_nan() -> GradientTransformation:
    """A user's own transform: zero updates when any entry is NaN (no state to recognise)."""
    def update(state, grads, params=None):
        leaves = [np.asarray(g) for g in grads]
        bad = any(np.isnan(g).any() for g in leaves)
        return tuple(np.zeros_like(g) if bad else -0.1 * g for g in leaves), state

    return GradientTransformation(lambda params: EmptyState(), update)


@pytest.mark.parametrize("make", [
    lambda: optim.apply_if_finite(optim.sgd(0.1), 2),
    lambda: optim.chain(optim.clip(1.0), optim.apply_if_finite(optim.adam(), 1)),
    lambda: optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=optim.skip_not_finite),
    lambda: optim.multi_steps(optim.sgd(0.1), 2, should_skip_update_fn=functools.partial(
        optim.skip_large_updates, max_squared_norm=10.0)),
], ids=["apply_if_finite", "in-a-chain", "skip_not_finite", "skip_large_updates"])
def test_skipping_transforms_are_refused(make):
    with pytest.raises(TypeError, match=r"parallel.sharded: the optimizer decides from all the "
                                        r"gradient's entries at once whether to step"):
        parallel.sharded(make())


def test_a_users_skip_on_nan_is_refused_by_the_probe():
    with pytest.raises(TypeError, match=r"differs from its updates of the vector's parts, one "
                                        r"holding a NaN"):
        parallel.sharded(_skip_on_nan())


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1), optim.adam,
                                  lambda: optim.multi_steps(optim.adam(), 2)],
                         ids=["sgd", "adam", "multi_steps-without-skipping"])
def test_elementwise_ones_are_still_accepted(make):
    parallel.sharded(make())
