"""No layer's vjp, pullback or apply, no value_and_grad and no optimizer update leaves a
reference cycle behind: what a pullback holds (every activation of a model) must go with the
last reference to it, not wait for the garbage collector. (Sequential's pullback once named
itself in its own closure: a training step's activations then stayed until a collection,
and the benchmark CNN's peak memory was three times its need.)"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from _layer_cases import CASES, KEY, Case
from test_fuzz_api_optim import OPTS, G, P

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, tree


@contextmanager
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cyclic_garbage(run: Callable[[], Any]) -> int:
    """How many objects ``run()`` left that only the cycle collector frees (its result
    dropped first). Only the youngest generation is searched, before and after: with the
    collector off, everything ``run`` made is there, and a full collection would walk the
    whole test session's heap at every call."""
    with collector_off():
        gc.collect(0)
        result = run()
        del result
        return gc.collect(0)


def _init(c: Case) -> tuple[Any, dict[str, Any]]:
    shape = (tuple((None, *np.shape(a)[1:]) for a in c.x) if isinstance(c.x, tuple)
             else (None, *np.shape(c.x)[1:]))
    out = c.layer.init(KEY, shape)
    return out[1], ({"state": out[2]} if c.layer.stateful else {})


def _cotangent(y: Any) -> Any:
    return tree.map(lambda v: np.ones_like(v) if np.asarray(v).dtype.kind == "f" else None,
                    y, is_leaf=lambda v: v is None)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_a_layers_vjp_pullback_and_apply_leave_no_cycle(c: Case) -> None:
    params, st = _init(c)

    def both() -> Any:
        out = c.layer.vjp(params, c.x, **st, **c.kw)
        return out, out[1](_cotangent(out[0]))

    both()  # first calls may fill caches (sinusoidal tables, a thread pool)
    assert cyclic_garbage(both) == 0
    assert cyclic_garbage(lambda: c.layer.vjp(params, c.x, **st, **c.kw)) == 0
    assert cyclic_garbage(lambda: c.layer.apply(params, c.x, **st, **c.kw)) == 0


def test_a_training_steps_activations_go_with_its_pullback() -> None:
    model = L.Sequential(L.Conv2D(4, 3, padding="SAME"), L.ReLU(), L.MaxPool2D(2),
                         L.Flatten(), L.Dense(3))
    _, params = model.init(KEY, (None, 6, 6, 1))
    x = np.ones((5, 6, 6, 1), np.float32)
    t = np.arange(5) % 3
    for f in (fd.value_and_grad(model, losses.softmax_cross_entropy),
              fd.value_and_grad(model, losses.softmax_cross_entropy, wrt_input=True),
              lambda p, x, t: fd.vjp(model, p, x)[1](np.ones((5, 3), np.float32))):
        assert cyclic_garbage(lambda f=f: f(params, x, t)) == 0


@pytest.mark.parametrize("oid", sorted(OPTS))
def test_an_optimizer_update_leaves_no_cycle(oid: str) -> None:
    opt = OPTS[oid][0]()
    _, state = opt.update(opt.init(P), G, P)
    assert cyclic_garbage(lambda: opt.update(state, G, P)) == 0


def test_the_tree_walks_leave_no_cycle() -> None:
    # each once walked its tree with a nested function calling itself (a cycle a call)
    from funcdl import _agree, _finite_diff

    t = {"a": [np.ones(2), (np.zeros(3), None)], "b": np.float32(1.0)}
    u = {"a": [np.ones(2), (np.zeros(3), None)], "b": np.float32(2.0)}
    assert cyclic_garbage(lambda: _agree.describe(t)) == 0
    assert cyclic_garbage(lambda: tree.check_same(t, u, shapes=True, dtypes=True)) == 0
    x = (np.ones((4, 2)), [3, 1, 2, 4])
    assert cyclic_garbage(lambda: _finite_diff.rows(x, slice(1, 3))) == 0
    np.testing.assert_array_equal(_finite_diff.rows(x, slice(1, 3))[1], [1, 2])
