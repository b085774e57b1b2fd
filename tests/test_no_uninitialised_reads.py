"""No layer, loss or optimizer reads memory it did not write: with ``np.empty`` and
``np.empty_like`` filled with NaN (ints 7, bools True), or with 3e4 (3, False), every
output, gradient and update is the same, bit for bit, as with NumPy's own uninitialised
buffers. Fifty-odd places in funcdl allocate with ``np.empty`` and fill only part of the
buffer by design (a pool's input gradient where no window reads, a recurrent state held
over padded steps, a conv's unpadded margin), so a missed fill there would be a wrong
answer only when the allocator hands back dirty memory. (Without the pool's zeroing of
rows no window reads, five cases here fail.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from _layer_cases import CASES, KEY, Case, case, f
from test_fuzz_api_optim import OPTS, G, P

import funcdl as fd
from funcdl import layers as L
from funcdl import losses

_EMPTY, _EMPTY_LIKE = np.empty, np.empty_like


@contextmanager
def _poisoned(value: float, integer: int, flag: bool) -> Iterator[None]:
    def fill(a: np.ndarray) -> np.ndarray:
        kind = a.dtype.kind
        if kind in "fc":
            a.fill(value)
        elif kind in "iu":
            a.fill(integer)
        elif kind == "b":
            a.fill(flag)
        return a

    np.empty = lambda *args, **kw: fill(_EMPTY(*args, **kw))  # type: ignore[assignment]
    np.empty_like = lambda *args, **kw: fill(_EMPTY_LIKE(*args, **kw))  # type: ignore[assignment]
    try:
        yield
    finally:
        np.empty, np.empty_like = _EMPTY, _EMPTY_LIKE  # type: ignore[assignment]


def _arrays(out: Any) -> list[np.ndarray]:
    return [np.array(a, copy=True) for a in fd.tree.leaves(out, is_leaf=lambda v: v is None)
            if isinstance(a, np.ndarray)]


def assert_no_uninitialised_read(run: Callable[[], Any]) -> None:
    clean = _arrays(run())
    assert clean, "nothing to compare"
    for value, integer, flag in ((np.nan, 7, True), (3e4, 3, False)):
        with _poisoned(value, integer, flag):
            got = _arrays(run())
        assert len(got) == len(clean)
        for i, (a, b) in enumerate(zip(clean, got)):
            assert a.shape == b.shape and a.dtype == b.dtype, i
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), (
                f"array {i} of {len(clean)} changes when np.empty is filled with {value}")


def _layer_run(c: Case) -> Callable[[], Any]:
    shape = (tuple(a.shape for a in c.x) if isinstance(c.x, tuple) else c.x.shape)
    made = c.layer.init(KEY, shape)
    params, st = made[1], ({"state": made[2]} if c.layer.stateful else {})

    def run() -> Any:
        out = c.layer.vjp(params, c.x, **st, **c.kw)
        dy = fd.tree.map(lambda v: None if v is None else np.cos(np.arange(v.size)).reshape(
            v.shape).astype(v.dtype if v.dtype.kind == "f" else np.float32), out[0],
            is_leaf=lambda v: v is None)
        return out[0], out[2:], out[1](dy), c.layer.apply(params, c.x, **st, **c.kw)

    return run


# inputs whose margins no window reads, and strides past the window (gaps between
# windows): the input gradient there is 0, written, not left as the buffer came
MORE = [case(L.MaxPool2D(2), f(2, 5, 5, 3)), case(L.MaxPool2D(2, 3), f(2, 7, 7, 2)),
        case(L.AvgPool2D(2), f(2, 5, 5, 3)), case(L.AvgPool2D(1, 2), f(2, 5, 5, 2)),
        case(L.Conv2D(2, 3, 2, padding="VALID"), f(2, 6, 6, 2)),
        case(L.Conv2D(3, 3, 2, padding="VALID", groups=3), f(2, 6, 6, 3)),
        case(L.Conv1D(2, 2, 3, padding="VALID"), f(2, 8, 2))]
LAYERS = CASES + MORE


@pytest.mark.parametrize("c", LAYERS, ids=[f"{i}-{c.id}" for i, c in enumerate(LAYERS)])
def test_a_layer_reads_only_what_it_wrote(c: Case) -> None:
    assert_no_uninitialised_read(_layer_run(c))


@pytest.mark.parametrize("name", sorted(OPTS))
def test_an_optimizer_reads_only_what_it_wrote(name: str) -> None:
    make = OPTS[name][0]

    def run() -> Any:
        opt = make()
        state, out = opt.init(P), []
        for _ in range(3):  # (lookahead's params are its own pair: P stays the params)
            updates, state = opt.update(state, G, P)
            out.append(updates)
        return out, state

    assert_no_uninitialised_read(run)


_RNG = np.random.default_rng(0)
_Z = _RNG.normal(size=(6, 4)).astype(np.float32)
_LOSSES = [(losses.mse, _Z, _Z[::-1]), (losses.huber, _Z, _Z[::-1]),
           (losses.bce, 1 / (1 + np.exp(-_Z)), (_Z > 0).astype(np.float32)),
           (losses.bce_with_logits, _Z, (_Z > 0).astype(np.float32)),
           (losses.softmax_cross_entropy, _Z, np.arange(6) % 4)]


@pytest.mark.parametrize("loss, pred, target", _LOSSES, ids=lambda v: getattr(v, "__name__", ""))
def test_a_loss_reads_only_what_it_wrote(loss: Any, pred: Any, target: Any) -> None:
    def run() -> Any:
        value, pullback = loss.vjp(pred, target)
        return value, pullback(np.float32(1.5)), loss(pred, target)

    assert_no_uninitialised_read(run)
