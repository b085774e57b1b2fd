"""Every layer of the catalogue, wrapped in BatchThreads(layer, 2), gives the plain layer's
output, new state, params' grads and dx in float64 (but for the order of float sums): no
funcdl layer mixes the examples of its batch except through ``layers.batch_sum`` (SegmentSum,
whose output rows are segments, is refused by name), and none
keeps a cache that two slices at once would corrupt. Cases that draw from a key are left
out (the slices draw with split keys); an input entry shared by the batch (axis 0 of size
1, a (1, T, S) attention mask) is repeated along the batch first, as BatchThreads asks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _layer_cases import CASES, KEY, Case

import funcdl as fd
from funcdl import layers as L


def _f64(t: Any) -> Any:
    return fd.tree.map(lambda a: a.astype(np.float64)
                       if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a, t)


def _batched(x: Any) -> Any:
    """A tuple input's size-1 entries broadcast to the batch of its first entry."""
    if not isinstance(x, tuple):
        return x
    n = np.shape(x[0])[0]
    return type(x)(np.broadcast_to(a, (n, *np.shape(a)[1:]))
                   if isinstance(a, np.ndarray) and a.ndim and a.shape[0] == 1 else a
                   for a in x)


def _run(layer: Any, params: Any, x: Any, st: dict[str, Any], kw: dict[str, Any]) -> Any:
    out = layer.vjp(params, x, **st, **kw)
    dy = fd.tree.map(lambda v: None if v is None or v.dtype.kind != "f" else
                     np.cos(np.arange(v.size)).reshape(v.shape), out[0],
                     is_leaf=lambda v: v is None)
    return out[0], out[2:], out[1](dy), layer.apply(params, x, **st, **kw)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_batch_threads_give_the_layers_numbers(c: Case) -> None:
    shape = tuple(a.shape for a in c.x) if isinstance(c.x, tuple) else c.x.shape
    made = c.layer.init(KEY, shape)
    params = _f64(made[1])
    st = {"state": _f64(made[2])} if c.layer.stateful else {}
    kw = {k: v for k, v in c.kw.items() if k != "key"}  # BatchNorm in training needs none
    x = _batched(_f64(c.x))
    try:
        want = _run(c.layer, params, x, st, kw)
    except ValueError as e:
        if "key" not in str(e):
            raise
        pytest.skip("draws from a key: the slices draw with split keys")
    # rows of segments out, not of examples: refused
    if c.id.startswith(("SegmentSum", "SegmentMean", "SegmentMax")):
        with pytest.raises(ValueError, match="one row per example on axis 0"):
            _run(L.BatchThreads(c.layer, 2), params, x, st, kw)
        return
    got = _run(L.BatchThreads(c.layer, 2), params, x, st, kw)
    lw, lg = (fd.tree.leaves(t, is_leaf=lambda v: v is None) for t in (want, got))
    assert len(lw) == len(lg)
    for a, b in zip(lw, lg):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
