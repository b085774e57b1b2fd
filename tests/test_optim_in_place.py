"""A chain runs a stage's in-place twin after a stage whose updates are fresh arrays
(scale_by_adam's): adam's lr stage multiplies adam's steps where they are, one param-sized
tree fewer per update (tracemalloc, deterministic), with the same bits; nothing the caller
passed is ever written."""

from __future__ import annotations

import copy
import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest

from funcdl import optim, tree

RNG = np.random.default_rng(0)


def tree_of(dtype):
    return {"w": RNG.normal(size=(7, 5)).astype(dtype), "b": RNG.normal(size=(5,)).astype(dtype),
            "s": np.asarray(RNG.normal(), dtype), "t": dtype(RNG.normal())}


OPTS = {
    "adam": lambda: optim.adam(1e-2),
    "adam-wd": lambda: optim.adam(1e-2, weight_decay=0.1),
    "adam-schedule": lambda: optim.adam(optim.cosine_decay_schedule(1e-2, 10)),
    "adamw": lambda: optim.adamw(1e-2, weight_decay=0.1),
    "adamw-schedule-wd": lambda: optim.chain(
        optim.scale_by_adam(), optim.add_decayed_weights(optim.linear_schedule(0.1, 0.0, 5)),
        optim.scale_by_learning_rate(1e-2)),
    "nesterov": lambda: optim.chain(optim.scale_by_adam(nesterov=True), optim.scale(-0.5)),
    "named": lambda: optim.named_chain(("adam", optim.scale_by_adam()),
                                       ("lr", optim.scale_by_learning_rate(1e-2))),
}


def same_bits(a, b):
    """Whether two trees hold equal leaves, type, dtype and bytes alike."""
    la, lb = tree.leaves(a), tree.leaves(b)
    return len(la) == len(lb) and all(
        type(x) is type(y) and np.asarray(x).dtype == np.asarray(y).dtype
        and np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


def unfused(opt_name):
    """The same optimizer with an identity stage after every stage: no stage then follows a
    fresh one, so each runs as it always did."""
    if opt_name in ("adam", "adam-schedule", "named"):
        lr = optim.cosine_decay_schedule(1e-2, 10) if opt_name == "adam-schedule" else 1e-2
        return optim.chain(optim.scale_by_adam(), optim.identity(),
                           optim.scale_by_learning_rate(lr))
    if opt_name == "adam-wd":
        return optim.chain(optim.add_decayed_weights(0.1), optim.scale_by_adam(),
                           optim.identity(), optim.scale_by_learning_rate(1e-2))
    if opt_name == "adamw":
        return optim.chain(optim.scale_by_adam(), optim.identity(),
                           optim.add_decayed_weights(0.1), optim.identity(),
                           optim.scale_by_learning_rate(1e-2))
    if opt_name == "adamw-schedule-wd":
        return optim.chain(
            optim.scale_by_adam(), optim.identity(),
            optim.add_decayed_weights(optim.linear_schedule(0.1, 0.0, 5)), optim.identity(),
            optim.scale_by_learning_rate(1e-2))
    return optim.chain(optim.scale_by_adam(nesterov=True), optim.identity(), optim.scale(-0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTS))
def test_twins_give_the_same_bits_and_write_nothing_passed(name, dtype):
    opt, ref = OPTS[name](), unfused(name)
    params = tree_of(dtype)
    st, st_ref = opt.init(params), ref.init(params)
    for _ in range(4):
        grads = tree_of(dtype)
        seen = copy.deepcopy((grads, params, st))
        old_state = st
        u, st = opt.update(st, grads, params)
        u_ref, st_ref = ref.update(st_ref, grads, params)
        assert same_bits((grads, params, old_state), seen)
        for k in u:
            assert type(u[k]) is type(u_ref[k]), k  # a 0-d leaf's step: a NumPy scalar
            assert u[k].dtype == u_ref[k].dtype and u[k].tobytes() == u_ref[k].tobytes(), k
        params = optim.apply_updates(params, u)


def test_the_callers_grads_are_never_written():
    """A twin runs only after a fresh stage: the first stage, or one after clipping (which
    returns the grads themselves when it does not clip), gets the caller's grads."""
    for opt in (optim.sgd(0.1), optim.chain(optim.scale_by_learning_rate(0.1)),
                optim.chain(optim.clip_by_global_norm(1e9), optim.scale(-0.1)),
                optim.chain(optim.add_decayed_weights(0.1), optim.scale(-0.1))):
        params, grads = tree_of(np.float32), tree_of(np.float32)
        before = copy.deepcopy(grads)
        opt.update(opt.init(params), grads, params)
        assert same_bits(grads, before)


def test_adam_holds_three_leaves_at_its_peak():
    """adam on one (1000, 1000) float32 leaf: new mu, nu and the step, whose lr scaling is
    in place (4 leaves before: the lr stage made a fifth array beside them)."""
    params = [np.ones((1000, 1000), np.float32)]
    grads = [np.full((1000, 1000), 0.5, np.float32)]
    for opt in (optim.adam(1e-3), optim.adam(optim.cosine_decay_schedule(1e-3, 100))):
        st = opt.init(params)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            opt.update(st, grads, params)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak < 3.25 * params[0].nbytes, peak / params[0].nbytes


@dataclass
class _Scale:
    """A user's stage update as a dataclass instance: unhashable (eq without frozen)."""

    s: float

    def __call__(self, state, grads, params=None):
        return [g * self.s for g in grads], state


class _Slotted:
    """A user's stage update that cannot be weakly referenced."""

    __slots__ = ()

    def __call__(self, state, grads, params=None):
        return [g * 0.5 for g in grads], state


@pytest.mark.parametrize("update", [_Scale(0.5), _Slotted()], ids=["unhashable", "slots"])
def test_a_users_stage_of_any_callable_chains(update):
    """The registry lookups take any callable: one that cannot be hashed or weakly
    referenced is simply not registered (a bare TypeError at chain() before)."""
    user = optim.GradientTransformation(lambda p: optim.EmptyState(), update)
    p = [np.ones(3, np.float32)]
    for opt, want in ((optim.chain(user, optim.scale(-1.0)), -0.5),
                      (optim.chain(optim.scale(-1.0), user), -0.5),
                      (optim.named_chain(("a", optim.scale_by_adam()), ("u", user)), 0.5)):
        u, _ = opt.update(opt.init(p), p, p)
        np.testing.assert_allclose(u[0], want, rtol=1e-6)
