"""BatchThreads around BatchNorm: each slice normalises by the whole batch's statistics, so
the wrapped model gives the unwrapped one's output, new running statistics, params' grads
and dx (but for the order of float sums); a failing or diverging slice never leaves the
others waiting."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from _threads_util import finishes, together

import funcdl as fd
from funcdl import layers as L
from funcdl.layers import _slices
from funcdl.testing import check_vjp

KEY = fd.random.key(0)


def _model(track: bool = True, **kw: Any) -> L.Layer:
    return L.Sequential(L.Dense(4), L.BatchNorm(track_running_stats=track, **kw), L.Tanh(),
                        L.Dense(3))


def _cnn() -> L.Layer:
    return L.Sequential(L.Conv2D(4, 3), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2),
                        L.Flatten(), L.Dense(2))


def _init(layer: L.Layer, shape: tuple[Any, ...],
          dtype: Any = np.float32) -> tuple[Any, dict[str, Any]]:
    out = layer.init(KEY, shape)
    params = fd.tree.map(lambda a: a.astype(dtype), out[1])
    st = ({"state": fd.tree.map(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a,
                                out[2])} if layer.stateful else {})
    return params, st


def _run(layer: L.Layer, params: Any, x: Any, st: dict[str, Any], dy: Any,
         train: bool = True) -> tuple[Any, ...]:
    out = layer.vjp(params, x, train=train, **st)
    applied = layer.apply(params, x, train=train, **st)
    grads = out[1](dy)
    return out[0], out[2:], grads, applied


def _close(a: Any, b: Any, rtol: float, atol: float) -> None:
    la, lb = fd.tree.leaves(a), fd.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        assert np.asarray(u).dtype == np.asarray(v).dtype
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("n", [2, 3, 5, 9])
@pytest.mark.parametrize("track", [True, False])
def test_batchnorm_in_slices_gives_the_whole_batchs_numbers(threads: int, n: int,
                                                           track: bool) -> None:
    model = _model(track)
    params, st = _init(model, (None, 3), np.float64)
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3)) * 3 + 1
    dy = rng.normal(size=(n, 3))
    want = _run(model, params, x, st, dy)
    got = _run(L.BatchThreads(model, threads), params, x, st, dy)
    _close(got, want, rtol=1e-12, atol=1e-12)


def test_a_cnn_with_batchnorm_in_float32_and_its_running_statistics() -> None:
    model = _cnn()
    params, st = _init(model, (None, 8, 8, 2))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 8, 8, 2)).astype(np.float32)
    dy = rng.normal(size=(7, 2)).astype(np.float32)
    want = _run(model, params, x, st, dy)
    got = _run(L.BatchThreads(model, 3), params, x, st, dy)
    _close(got, want, rtol=2e-5, atol=2e-6)
    # the statistics are the batch's, not a slice's: a slice's mean differs by far more
    moved = got[1][0][1]["mean"]
    assert np.abs(moved - st["state"][1]["mean"]).max() > 1e-3


def test_momentum_none_counts_one_batch_not_one_per_slice() -> None:
    model = L.BatchNorm(momentum=None)
    params, st = _init(model, (None, 2))
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y, new = L.BatchThreads(model, 3).apply(params, x, train=True, **st)
    y1, new1 = model.apply(params, x, train=True, **st)
    assert int(new["count"]) == int(new1["count"]) == 1
    _close((y, new), (y1, new1), rtol=1e-6, atol=1e-6)


def test_inference_returns_the_state_given_and_needs_no_sums() -> None:
    model = _model()
    params, st = _init(model, (None, 3))
    x = np.ones((5, 3), np.float32)
    y, new = L.BatchThreads(model, 2).apply(params, x, **st)
    assert new is st["state"]
    np.testing.assert_array_equal(y, model.apply(params, x, **st)[0])


@pytest.mark.parametrize("track", [True, False])
def test_check_vjp_in_float64(track: bool) -> None:
    model = L.BatchThreads(_model(track), 3)
    params, st = _init(model, (None, 3), np.float64)
    x = np.random.default_rng(2).normal(size=(7, 3))
    check_vjp(model, params, x, train=True, **st)


def test_nested_batch_threads_sum_over_the_outer_slices_too() -> None:
    inner = L.Sequential(L.Dense(4), L.BatchThreads(L.BatchNorm(), 2))
    plain = L.Sequential(L.Dense(4), L.BatchNorm())
    params, st = _init(plain, (None, 3), np.float64)
    x = np.random.default_rng(3).normal(size=(8, 3))
    dy = np.random.default_rng(4).normal(size=(8, 4))
    want = _run(plain, params, x, st, dy)
    got = _run(L.BatchThreads(inner, 2), params, x, st, dy)
    _close(got, want, rtol=1e-12, atol=1e-12)


def _picky(rows: int, then: L.Layer) -> L.Layer:
    """A user's layer: ``then`` on a slice of ``rows`` rows, an error on any other."""
    def apply(params: Any, x: Any, **kw: Any) -> Any:
        if x.shape[0] != rows:
            raise ValueError(f"picky: {x.shape[0]} rows")
        return then.apply(params, x, **kw)

    def vjp(params: Any, x: Any, **kw: Any) -> Any:
        return then.vjp(params, x, **kw)

    return L.Layer(lambda k, s: then.init(k, s)[:2], apply, vjp, name="picky")


def test_a_failing_slice_releases_the_others_and_its_error_is_reported() -> None:
    # rows 0:2 reach the norm's sums and wait; rows 2:5 fail first
    model = L.Sequential(_picky(2, L.Identity()), L.BatchNorm(track_running_stats=False))
    _, params = model.init(KEY, (None, 3))
    bt = L.BatchThreads(model, 2)
    x = np.ones((5, 3), np.float32)
    err, _ = finishes(lambda: bt.apply(params, x, train=True))
    assert isinstance(err, ValueError)
    assert "BatchThreads[rows 2:5]" in str(err) and "picky: 3 rows" in str(err)


def _only_some(rows: int) -> L.Layer:
    """A user's layer that asks for a batch sum on slices of ``rows`` rows only."""
    def apply(params: Any, x: Any, **kw: Any) -> Any:
        if x.shape[0] == rows:
            _slices.batch_sum(np.ones(1))
        return x

    return L.Layer(lambda k, s: (s, ()), apply,
                   lambda p, x, **kw: (apply(p, x), lambda dy: ((), dy)), name="only_some")


def test_slices_asking_for_different_numbers_of_sums_raise_instead_of_hanging() -> None:
    bt = L.BatchThreads(_only_some(2), 2)
    err, _ = finishes(lambda: bt.apply((), np.ones((5, 3), np.float32)))
    assert isinstance(err, ValueError)
    assert "different numbers of batch sums" in str(err)


def test_the_totals_are_the_same_read_only_arrays_in_every_slice() -> None:
    seen: list[np.ndarray] = []
    lock = threading.Lock()

    def apply(params: Any, x: Any, **kw: Any) -> Any:
        (total,) = _slices.batch_sum(x.sum(0))
        with lock:
            seen.append(total)
        return x * 0 + total

    layer = L.Layer(lambda k, s: (s, ()), apply,
                    lambda p, x, **kw: (apply(p, x), lambda dy: ((), dy)), name="total")
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = L.BatchThreads(layer, 3).apply((), x)
    np.testing.assert_array_equal(y, np.broadcast_to(x.sum(0), x.shape))
    assert len(seen) == 3 and all(s is seen[0] for s in seen)
    assert not seen[0].flags.writeable
    assert _slices.batch_sum(x)[0] is x  # outside BatchThreads: the array itself


def test_a_state_that_moves_by_its_slice_is_refused() -> None:
    def init(key: Any, shape: Any) -> Any:
        return shape, (), np.zeros(shape[-1])

    def apply(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        return x, state + x.sum(0)

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        return x, (lambda dy: ((), dy)), state + x.sum(0)

    layer = L.Layer(init, apply, vjp, stateful=True, name="counter")
    bt = L.BatchThreads(layer, 2)
    _, params, state = bt.init(KEY, (None, 2))
    with pytest.raises(ValueError, match=r"^BatchThreads\(counter, threads=2\): the slices "
                                         r"returned different new states \(rows 0:2 and 2:4\)"):
        bt.apply(params, np.arange(8.0).reshape(4, 2), state=state)
    _, new = bt.apply(params, np.zeros((4, 2)), state=state)  # the same in every slice
    np.testing.assert_array_equal(new, np.zeros(2))


def test_a_stateful_batch_threads_asks_for_its_state() -> None:
    bt = L.BatchThreads(_model(), 2)
    assert bt.stateful
    params, _ = _init(bt, (None, 3))
    with pytest.raises(TypeError, match=r"is stateful.*pass state="):
        bt.apply(params, np.ones((4, 3), np.float32), train=True)


def test_two_threads_training_one_model_value_at_once_never_wait_for_each_other() -> None:
    # each call's slices must run at once (their sums meet): a call made while another
    # holds the pool's threads gets threads of its own, instead of queueing behind slices
    # that wait for it
    model = _model()
    bt = L.BatchThreads(model, 3)
    params, st = _init(model, (None, 3), np.float64)
    xs = [np.random.default_rng(i).normal(size=(7, 3)) for i in range(4)]
    want = [model.apply(params, x, train=True, **st) for x in xs]
    got: dict[int, Any] = {}

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = bt.apply(params, xs[i], train=True, **st)

    assert finishes(together(work, 4), 60.0)[0] is None
    for i in range(4):
        _close(got[i], want[i], rtol=1e-12, atol=1e-12)


def test_a_call_made_while_another_holds_the_threads_gets_threads_of_its_own() -> None:
    # call A's second slice holds the pool's one thread until call B's second slice runs:
    # with a fixed pool, B's slice would queue behind A's, which waits for it
    a_running, b_running = threading.Event(), threading.Event()

    def apply(params: Any, x: Any, **kw: Any) -> Any:
        if x[0, 0] == 11:  # call A, rows 1:2
            a_running.set()
            assert b_running.wait(20), "call B's slice never ran"
        if x[0, 0] == 21:  # call B, rows 1:2
            b_running.set()
        return x

    layer = L.Layer(lambda k, s: (s, ()), apply,
                    lambda p, x, **kw: (apply(p, x), lambda dy: ((), dy)), name="meet")
    bt = L.BatchThreads(layer, 2)
    results: dict[str, Any] = {}

    def call(tag: str, x: np.ndarray) -> None:
        results[tag] = bt.apply((), x)

    def both() -> None:
        a = threading.Thread(target=call, args=("a", np.array([[10.0], [11.0]])))
        a.start()
        assert a_running.wait(20)
        call("b", np.array([[20.0], [21.0]]))
        a.join()

    assert finishes(both, 60.0)[0] is None
    np.testing.assert_array_equal(results["a"], [[10.0], [11.0]])
    np.testing.assert_array_equal(results["b"], [[20.0], [21.0]])


def _centre() -> L.Layer:
    """A user's own layer mixing the examples of its batch, written with the public
    ``layers.batch_sum``: ``y = x - mean_batch(x)``, ``dx = dy - mean_batch(dy)``."""
    def vjp(params: Any, x: Any, **kw: Any) -> Any:
        total, n = L.batch_sum(x.sum(0), np.array(len(x)))
        y = x - total / n

        def pullback(dy: Any) -> Any:
            (dtotal,) = L.batch_sum(dy.sum(0), cotangent=True)
            return (), dy - dtotal / n

        return y, pullback

    return L.Layer(lambda k, s: (s, ()), lambda p, x, **kw: vjp(p, x)[0], vjp, name="centre")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_users_layer_mixing_the_batch_with_batch_sum(threads: int) -> None:
    model = L.Sequential(L.Dense(3), _centre(), L.Tanh())
    params, _ = _init(model, (None, 2), np.float64)
    rng = np.random.default_rng(5)
    x, dy = rng.normal(size=(7, 2)), rng.normal(size=(7, 3))
    want = _run(model, params, x, {}, dy)
    bt = L.BatchThreads(model, threads)
    _close(_run(bt, params, x, {}, dy), want, rtol=1e-12, atol=1e-12)
    check_vjp(bt, params, x)
    # the slices' own means would differ: the batch is mixed, not each slice alone
    y_alone = np.concatenate([model.apply(params, x[:4]), model.apply(params, x[4:])])
    assert not np.allclose(y_alone, want[0])
