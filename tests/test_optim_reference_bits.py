"""Several steps of adam, adamw, sgd (momentum, nesterov, weight decay) and
chain(clip_by_global_norm, adam) against plain per-leaf references written here, bit for bit,
in float32 and float64, on a small tree (the fused path: every leaf in one buffer), a large
one (leaf by leaf), one with a NamedTuple, a list and a 0-d leaf, and one with an
OrderedDict too (the general walk).

Each reference follows the documented formula in funcdl's order of operations, so equality
is exact; a wrong factor (a bias correction off by a step, a sign, a decay in the wrong
place) changes bits and fails.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import pytest

from funcdl import optim, tree

STEPS = 4
LR, B1, B2, EPS, WD = 1e-2, 0.9, 0.999, 1e-8, 0.1


class Pair(NamedTuple):
    w: Any
    b: Any


def _small(rng: np.random.Generator) -> Any:
    # an MLP's params: per-layer {'w', 'b'}, () for a parameterless layer
    return ({"w": rng.normal(size=(4, 8)), "b": rng.normal(size=8)}, (),
            {"w": rng.normal(size=(8, 3)), "b": rng.normal(size=3)})


def _large(rng: np.random.Generator) -> Any:
    # > 2**15 entries: leaf by leaf
    return [{"w": rng.normal(size=(200, 200)), "b": rng.normal(size=200)},
            Pair(rng.normal(size=(2, 2)), None)]


def _mixed(rng: np.random.Generator) -> Any:
    return {"pair": Pair(rng.normal(size=(3, 2)), rng.normal(size=2)),
            "rest": [rng.normal(size=5), np.asarray(rng.normal())]}


def _general(rng: np.random.Generator) -> Any:
    # an OrderedDict node: walked by tree.map_multi, as any tree the fast walk leaves
    return {"mixed": _mixed(rng), "od": OrderedDict(b=rng.normal(size=3), a=rng.normal(size=1))}


TREES = {"small": _small, "large": _large, "mixed": _mixed, "general": _general}


def _problem(kind: str, dtype: Any) -> tuple[Any, list[Any]]:
    rng = np.random.default_rng(7)
    cast = lambda t: tree.map(lambda x: np.asarray(x, dtype), t)  # noqa: E731
    params = cast(TREES[kind](rng))
    grads = [cast(tree.map(lambda x: rng.normal(size=np.shape(x)) * 3.0, params))
             for _ in range(STEPS)]
    return params, grads


# ---------------------------------------------------------------------------- references

def _adam_dir(g: Any, m: Any, v: Any, t: int) -> tuple[Any, Any, Any]:
    """m = b1·m + (1-b1)·g; v = b2·v + (1-b2)·g·g; u = m / (sqrt(v)/sqrt(1-b2^t) + eps)
    / (1-b1^t), each division by a correction as a product with its reciprocal."""
    m = B1 * m + (1.0 - B1) * g
    v = B2 * v + (1.0 - B2) * g * g
    u = m / (np.sqrt(v) * (1.0 / math.sqrt(1.0 - B2**t)) + EPS) * (1.0 / (1.0 - B1**t))
    return u, m, v


def _clipped(gs: list[Any], max_norm: float) -> list[Any]:
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in gs))
    return gs if norm <= max_norm else [g * (max_norm / norm) for g in gs]


def _reference(rule: str, params: Any, grads_seq: list[Any], max_norm: float = 0.0
               ) -> tuple[list[Any], list[list[Any]]]:
    """The params' leaves after the last step, and the state's leaves per moment."""
    ps = tree.leaves(params)
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    for t, grads in enumerate(grads_seq, start=1):
        gs = tree.leaves(grads)
        if rule == "clip_adam":
            gs = _clipped(gs, max_norm)
        if rule == "adam_l2" or rule.startswith("sgd_wd"):
            gs = [g + WD * p for g, p in zip(gs, ps)]
        if rule.startswith("sgd"):
            m = [g + 0.9 * b for g, b in zip(gs, m)]
            us = [b * 0.9 + g for g, b in zip(gs, m)] if "nesterov" in rule else m
        else:
            us, m, v = (list(c) for c in zip(*[_adam_dir(g, a, b, t)
                                                for g, a, b in zip(gs, m, v)]))
        if rule == "adamw":
            us = [u + WD * p for u, p in zip(us, ps)]
        ps = [p + u * -LR for p, u in zip(ps, us)]
    return ps, [m] if rule.startswith("sgd") else [m, v]


def _optimizer(rule: str, max_norm: float) -> optim.GradientTransformation:
    return {
        "adam": lambda: optim.adam(LR, B1, B2, EPS),
        "adam_l2": lambda: optim.adam(LR, B1, B2, EPS, weight_decay=WD),
        "adamw": lambda: optim.adamw(LR, B1, B2, EPS, weight_decay=WD),
        "sgd_momentum": lambda: optim.sgd(LR, momentum=0.9),
        "sgd_nesterov": lambda: optim.sgd(LR, momentum=0.9, nesterov=True),
        "sgd_wd_nesterov": lambda: optim.sgd(LR, momentum=0.9, nesterov=True, weight_decay=WD),
        "clip_adam": lambda: optim.chain(optim.clip_by_global_norm(max_norm),
                                         optim.adam(LR, B1, B2, EPS)),
    }[rule]()


def _moments(rule: str, state: Any) -> list[Any]:
    if rule == "clip_adam":
        state = state.states[1]
    if rule.startswith("sgd"):
        return [state.states["momentum"].trace]
    adam = state.states["adam"]
    return [adam.mu, adam.nu]


@pytest.mark.parametrize("kind", list(TREES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", ["adam", "adam_l2", "adamw", "sgd_momentum", "sgd_nesterov",
                                  "sgd_wd_nesterov", "clip_adam"])
def test_steps_match_the_plain_reference_bit_for_bit(rule: str, dtype: Any, kind: str) -> None:
    params, grads_seq = _problem(kind, dtype)
    # clip on every step: the first grads' norm is some 3·sqrt(size)
    max_norm = 0.5 * math.sqrt(sum(float(np.vdot(g, g)) for g in tree.leaves(grads_seq[0])))
    opt = _optimizer(rule, max_norm)
    state, p = opt.init(params), params
    for grads in grads_seq:
        updates, state = opt.update(state, grads, p)
        p = optim.apply_updates(p, updates)
    want_params, want_moments = _reference(rule, params, grads_seq, max_norm)
    assert tree.structure(p) == tree.structure(params)
    assert int(state.count) == STEPS
    for got, want in zip(tree.leaves(p), want_params, strict=True):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    for moment, want in zip(_moments(rule, state), want_moments, strict=True):
        assert tree.structure(moment) == tree.structure(params)
        for got, w in zip(tree.leaves(moment), want, strict=True):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, w)


def test_the_first_update_of_one_tree_does_not_give_its_keys_to_another() -> None:
    """Dict keys that compare equal across types (1, 1.0, True) give each tree its own
    back: a cache of tree layouts keyed by structure must not hand one tree's keys to
    another's updates."""
    opt = optim.adam(1e-3)
    for keys in ((1, 2), (1.0, 2.0), (True, 2)):
        params = {k: np.ones(3, np.float32) for k in keys}
        updates, state = opt.update(opt.init(params), params, params)
        for got in (updates, state.states["adam"].mu, optim.apply_updates(params, updates)):
            assert [type(k) for k in got] == [type(k) for k in keys]


def test_the_steps_leave_the_callers_trees_alone() -> None:
    params, grads_seq = _problem("small", np.float32)
    copies = [tree.map(np.copy, t) for t in (params, grads_seq[0])]
    opt = optim.adam(LR)
    state = opt.init(params)
    before = tree.map(np.copy, state)
    updates, new_state = opt.update(state, grads_seq[0], params)
    optim.apply_updates(params, updates)
    opt.update(new_state, grads_seq[1], params)  # the new state read, not written
    for got, want in zip(tree.leaves((params, grads_seq[0], state)),
                         tree.leaves((*copies, before)), strict=True):
        np.testing.assert_array_equal(got, want)
