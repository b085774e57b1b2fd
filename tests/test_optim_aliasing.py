"""Updates that are also arrays of the new state (a momentum that is the step, as optax's
``trace`` returns it) come back read-only: writing into the updates, which a NumPy user may
do to a returned value, raises instead of changing the optimizer's state (found by a probe:
lars's step halved in place halved its momentum, 56% off by the third step)."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim, tree

F32 = np.float32


def _grads(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((3, 2)).astype(F32), "b": rng.standard_normal(2).astype(F32)}


@pytest.mark.parametrize("make", [
    lambda: optim.trace(0.9),
    lambda: optim.lars(0.1, momentum=0.9),
    lambda: optim.flatten(optim.trace(0.9)),
    lambda: optim.scale_by_sm3(),
    lambda: optim.scale_by_novograd(),
    lambda: optim.scale_by_adopt(),
    lambda: optim.scale_by_rprop(0.1),
    lambda: optim.apply_every(1),
    lambda: optim.ema(0.9, debias=False),          # (a review of the first version)
    lambda: optim.sgd(0.1, momentum=0.9),          # fresh updates: writable, and apart
    lambda: optim.adam(1e-3),
], ids=["trace", "lars", "flatten(trace)", "sm3", "novograd", "adopt", "rprop",
        "apply_every", "ema(debias=False)", "sgd", "adam"])
def test_writing_into_the_updates_leaves_the_state_as_it_was(make) -> None:
    opt = make()
    params = _grads(0)
    state = opt.init(params)
    for seed in (1, 2):
        updates, state = opt.update(state, _grads(seed), params)
    before = [np.array(a, copy=True) for a in tree.leaves(state)]
    for leaf in tree.leaves(updates):
        try:
            leaf *= 0.5
        except ValueError as e:  # read-only: the state's own array
            assert "read-only" in str(e)
    after = tree.leaves(state)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # the state's arrays are read, not written, by the next update
    again = opt.update(state, _grads(3), params)[0]
    assert all(np.isfinite(a).all() for a in tree.leaves(again))


def test_trace_then_a_scale_gives_writable_updates() -> None:
    """In a chain the held momentum goes to the next stage, whose step is fresh."""
    opt = optim.sgd(0.1, momentum=0.9)
    params = _grads(0)
    updates, _ = opt.update(opt.init(params), _grads(1), params)
    assert all(a.flags.writeable for a in tree.leaves(updates))
