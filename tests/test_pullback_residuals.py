"""A pullback keeps only the residuals its vjp reads (DESIGN.md): arrays it does not read
are freed when the caller drops them (benchmarks/layer_contract.py measures what each
layer's pullback holds). Each case failed before its layer was changed."""

from __future__ import annotations

import functools
import gc
import types
import weakref
from typing import Any

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_vjp

KEY = random.key(0)


def x_of(*shape: int, seed: int = 1) -> np.ndarray:
    return random.normal(random.key(seed), shape, np.float32)


def freed(*refs: weakref.ref[Any]) -> bool:
    """Whether every array is gone; the collector runs only when refcounts left one (it
    takes ~0.5 s in a process holding a whole suite's objects)."""
    if any(r() is not None for r in refs):
        gc.collect()
    return all(r() is None for r in refs)


def held(pullback: Any) -> list[np.ndarray]:
    """The arrays reachable from a pullback's closure (cells, partials, containers)."""
    seen, out, stack = set(), [], [pullback]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (str, bytes, int, float, type, L.Layer)):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            out.append(o)
        elif isinstance(o, (tuple, list)):
            stack += o
        elif isinstance(o, dict):
            stack += o.values()
        elif isinstance(o, functools.partial):
            stack += [o.func, *o.args, *o.keywords.values()]
        elif isinstance(o, types.FunctionType):
            stack += [c.cell_contents for c in o.__closure__ or () if c.cell_contents
                      is not None]
    return out


@pytest.mark.parametrize("make, xs", [
    (lambda: L.FanInSum(), lambda: (x_of(4, 3), x_of(4, 3, seed=2))),
    (lambda: L.FanInConcat(), lambda: [x_of(4, 3), x_of(4, 2, seed=2)]),
    (lambda: L.Parallel(L.Tanh(), L.Sigmoid()), lambda: (x_of(4, 3), x_of(4, 2, seed=2))),
    (lambda: L.Shared(L.Tanh(), 2), lambda: (x_of(4, 3), x_of(4, 3, seed=2))),
], ids=["FanInSum", "FanInConcat", "Parallel", "Shared"])
def test_combinators_keep_their_inputs_container_not_its_arrays(make, xs) -> None:
    layer, inputs = make(), xs()
    _, params = layer.init(KEY, tuple(a.shape for a in inputs))
    y, pullback = layer.vjp(params, inputs)
    refs = [weakref.ref(a) for a in inputs]
    box = type(inputs)
    del inputs
    assert freed(*refs), "the pullback keeps an input it does not read"
    dy = tuple(np.ones_like(e) for e in y) if isinstance(y, tuple) else np.ones_like(y)
    dx = pullback(dy)[1]
    assert type(dx) is box  # a list's cotangent is a list, a tuple's a tuple


def test_select_keeps_only_the_entry_it_returns() -> None:
    inputs = (x_of(4, 3), x_of(4, 2, seed=2))
    y, pullback = L.Select(1).vjp((), inputs)
    ref = weakref.ref(inputs[0])
    del inputs
    assert freed(ref), "Select's pullback keeps an entry it did not pick"
    dx = pullback(np.ones_like(y))[1]
    assert type(dx) is tuple and np.array_equal(dx[1], np.ones_like(y))


@pytest.mark.parametrize("layer", [L.GELU(), L.GELU(approximate=True)],
                         ids=["GELU", "GELU-tanh"])
def test_gelu_pullback_does_not_keep_its_output(layer) -> None:
    x = x_of(8, 5)
    y, pullback = layer.vjp((), x)
    ref = weakref.ref(y)
    want = x * 0 + 1  # a fresh dy of ones
    del y
    assert freed(ref), "GELU's slope reads x, not y: y is the caller's to drop"
    assert pullback(want)[1].shape == x.shape


def test_silu_pullback_still_reads_its_output() -> None:
    x = x_of(8, 5)
    _, pullback = L.SiLU().vjp((), x)
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(pullback(np.ones_like(x))[1], sig * (1 + x * (1 - sig)),
                               rtol=1e-5)


@pytest.mark.parametrize("dim", [-1, None])
def test_weight_norm_pullback_keeps_no_extra_weight_sized_array(dim) -> None:
    layer = L.WeightNorm(L.Dense(64), dim=dim)
    _, params = layer.init(KEY, (None, 48))
    x = x_of(16, 48)
    _, pullback = layer.vjp(params, x)
    def root(a: np.ndarray) -> np.ndarray:
        return a if a.base is None else root(a.base)

    v = root(params["v"])  # the caller's own, and views of it, cost nothing
    weight_sized = {id(root(a)) for a in held(pullback) if a.shape == v.shape
                    and root(a) is not v}
    # the child's w = g·v/||v|| only (Dense's dx reads it); v/||v|| is not kept beside it
    assert len(weight_sized) == 1
    check_vjp(layer, {k: a.astype(np.float64) for k, a in params.items()},
              x.astype(np.float64))


@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
def test_upsample_nearest_pullback_sums_each_block(scale) -> None:
    layer = L.Upsample(scale)
    x = x_of(2, 3, 4, 5)
    y, pullback = layer.vjp((), x)
    dy = x_of(*y.shape, seed=3).astype(np.float64)
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    want = dy.reshape(2, 3, sh, 4, sw, 5).sum(axis=(2, 4))
    np.testing.assert_allclose(pullback(dy.astype(np.float32))[1], want, rtol=1e-5,
                               atol=1e-6)
    check_vjp(layer, (), x.astype(np.float64))
