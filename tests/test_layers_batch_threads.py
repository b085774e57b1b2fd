"""layers.BatchThreads: a layer on slices of the batch, a thread each. Its numbers are the
child's (the params' gradients summed over the slices, dx and y put back in order), keys are
split per slice, and its errors name it."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, testing, tree

RNG = np.random.default_rng(0)
KEY = random.key(0)


def _mlp() -> L.Layer:
    return L.Sequential(L.Dense(5), L.Tanh(), L.Dense(3))


def _cnn() -> L.Layer:
    return L.Sequential(L.Conv2D(4, 3, padding="SAME"), L.ReLU(), L.MaxPool2D(2), L.Flatten(),
                        L.Dense(3))


CHILDREN = {"mlp": (_mlp, (6,)), "cnn": (_cnn, (6, 6, 2))}


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
@pytest.mark.parametrize("child", sorted(CHILDREN))
def test_outputs_dx_and_summed_grads_are_the_childs(child: str, n: int, threads: int) -> None:
    make, shape = CHILDREN[child]
    layer = make()
    _, params = layer.init(KEY, (None, *shape))
    params = tree.map(lambda p: p.astype(np.float64), params)
    x = RNG.normal(size=(n, *shape))
    y, pb = layer.vjp(params, x)
    dy = RNG.normal(size=y.shape)
    want_p, want_x = pb(dy)
    bt = L.BatchThreads(layer, threads)
    assert bt.init(KEY, (None, *shape))[0] == layer.init(KEY, (None, *shape))[0]
    got_y, got_pb = bt.vjp(params, x)
    np.testing.assert_allclose(bt.apply(params, x), y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_y, y, rtol=1e-12, atol=1e-14)
    got_p, got_x = got_pb(dy)
    # a sum over the slices: a mean (or one slice's) would be off by the slice count
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13),
             got_p, want_p)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-12, atol=1e-14)
    assert got_y.dtype == got_x.dtype == np.float64


def test_the_slices_run_at_once_each_in_its_own_thread_on_its_own_rows() -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    together = threading.Barrier(3, timeout=30)  # broken unless all three slices run at once

    def vjp(params: Any, x: Any) -> Any:
        together.wait()
        with lock:
            seen.append((threading.get_ident(), len(x)))
        return 2.0 * x, lambda dy: ((), 2.0 * dy)

    user = L.Layer(lambda key, s: (s, ()), lambda p, x: vjp(p, x)[0], vjp, name="Double")
    bt = L.BatchThreads(user, 3)
    x = np.arange(8.0)[:, None]
    np.testing.assert_array_equal(bt.apply((), x), 2.0 * x)
    assert sorted(n for _, n in seen) == [2, 3, 3]  # rows 8·i // 3 to 8·(i+1) // 3
    assert len({t for t, _ in seen}) == 3
    assert threading.get_ident() in {t for t, _ in seen}  # the caller runs a slice too
    _, pb = bt.vjp((), x)
    np.testing.assert_array_equal(pb(np.ones_like(x))[1], np.full_like(x, 2.0))


def test_threads_1_is_the_child_itself_key_and_all() -> None:
    drop = L.Sequential(L.Dense(4), L.Dropout(0.5))
    _, params = drop.init(KEY, (None, 3))
    x = RNG.normal(size=(6, 3)).astype(np.float32)
    for bt in (L.BatchThreads(drop, 1), L.BatchThreads(drop, 4)):
        got = bt.apply(params, x[:1], key=KEY, train=True)  # one slice: the key unchanged
        np.testing.assert_array_equal(got, drop.apply(params, x[:1], key=KEY, train=True))
    np.testing.assert_array_equal(L.BatchThreads(drop, 1).apply(params, x, key=KEY, train=True),
                                  drop.apply(params, x, key=KEY, train=True))


def test_slices_draw_with_split_keys_and_the_pullback_uses_the_same_masks() -> None:
    drop = L.Dropout(0.5)
    x = np.ones((5, 40))
    bt = L.BatchThreads(drop, 2)
    k0, k1 = random.split(KEY, 2)
    want = np.concatenate([drop.apply((), x[:2], key=k0, train=True),
                           drop.apply((), x[2:], key=k1, train=True)])
    y, pb = bt.vjp((), x, key=KEY, train=True)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(bt.apply((), x, key=KEY, train=True), want)
    assert 0 < (want == 0).mean() < 1
    np.testing.assert_array_equal(pb(np.ones_like(x))[1], want)  # dx = dy·m/(1-rate)
    assert not np.array_equal(want[:2], want[2:4])  # the slices' masks differ
    with pytest.raises(ValueError, match=r"^BatchThreads\[rows 0:2\] Dropout\(0\.5\): .*key"):
        bt.apply((), x, train=True)


@pytest.mark.parametrize("threads", [2, 3])
def test_check_vjp_and_check_layer(threads: int) -> None:
    layer = L.BatchThreads(_cnn(), threads)
    _, params = layer.init(KEY, (None, 4, 4, 2))
    params = tree.map(lambda p: p.astype(np.float64), params)
    testing.check_vjp(layer, params, RNG.normal(size=(5, 4, 4, 2)))
    testing.check_layer(L.BatchThreads(_mlp(), threads), (4, 6))


def test_value_and_grad_through_it_is_the_models_and_skips_dx() -> None:
    model = _cnn()
    _, params = model.init(KEY, (None, 6, 6, 2))
    x = RNG.normal(size=(9, 6, 6, 2)).astype(np.float32)
    t = RNG.integers(0, 3, 9)
    want_v, want_g = fd.value_and_grad(model, losses.softmax_cross_entropy)(params, x, t)
    bt = L.BatchThreads(model, 2)
    assert bt.dx_optional
    got_v, got_g = fd.value_and_grad(bt, losses.softmax_cross_entropy)(params, x, t)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-6)
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got_g, want_g)
    assert all(g.dtype == np.float32 for g in tree.leaves(got_g))
    _, pb = bt.vjp(params, x)
    dparams, dx = pb(np.ones((9, 3), np.float32), need_dx=False)
    assert dx is None
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), dparams,
             model.vjp(params, x)[1](np.ones((9, 3), np.float32))[0])


def test_tuple_inputs_and_outputs_are_cut_and_joined_entry_by_entry() -> None:
    lstm = L.LSTM(3, lengths=True, return_state=True)
    _, params = lstm.init(KEY, ((None, 4, 2), (None,)))
    x = RNG.normal(size=(5, 4, 2)).astype(np.float32)
    lengths = np.array([4, 1, 3, 2, 4])
    y, pb = lstm.vjp(params, (x, lengths))
    bt = L.BatchThreads(lstm, 2)
    got, got_pb = bt.vjp(params, (x, lengths))
    assert isinstance(got, tuple) and len(got) == len(y)
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, y)
    dy = tree.map(lambda v: RNG.normal(size=v.shape).astype(np.float32), y)
    (want_p, (want_x, want_l)), (got_p, (got_x, got_l)) = pb(dy), got_pb(dy)
    assert want_l is None and got_l is None  # integer lengths have no cotangent
    np.testing.assert_allclose(got_x, want_x, rtol=1e-4, atol=1e-6)
    tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got_p, want_p)


def test_ids_pass_through_and_nothing_passed_is_written() -> None:
    emb = L.BatchThreads(L.Sequential(L.Embedding(7, 3), L.Flatten(), L.Dense(2)), 2)
    assert emb.ids == 7
    _, params = emb.init(KEY, (None, 4))
    x = RNG.integers(0, 7, (5, 4))
    x0, p0 = x.copy(), tree.map(np.copy, params)
    y, pb = emb.vjp(params, x)
    dy = np.ones_like(y)
    _, dx = pb(dy)
    assert dx is None
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, np.ones_like(y))
    tree.map(np.testing.assert_array_equal, params, p0)


def _double_in_a_child(layer: Any, q: Any) -> None:
    q.put(layer.apply((), np.arange(4.0)[:, None]).ravel().tolist())


# Python 3.12's warning on fork in a threaded process, and JAX's, when an earlier test has
# started it in this process (the fork itself is the point here)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
def test_a_forked_child_makes_its_own_pool() -> None:
    bt = L.BatchThreads(L.Identity(), 2)
    bt.apply((), np.ones((4, 1)))  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_double_in_a_child, args=(bt, q))
    p.start()
    p.join(30)
    if p.is_alive():  # a pool copied from the parent has no threads: its work would wait
        p.kill()
    assert p.exitcode == 0
    assert q.get(timeout=5) == [0.0, 1.0, 2.0, 3.0]


def test_bad_arguments_and_inputs_name_batch_threads() -> None:
    for threads, kind in [(0, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)]:
        with pytest.raises(kind, match=r"^BatchThreads: threads"):
            L.BatchThreads(_mlp(), threads)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^BatchThreads: .*expected a layer"):
        L.BatchThreads(L.Dense, 2)  # type: ignore[arg-type]
    bt = L.BatchThreads(_mlp(), 2)
    _, params = bt.init(KEY, (None, 6))
    with pytest.raises(ValueError, match=r"^BatchThreads\(.*\): every input array needs the "
                                         r"batch on axis 0.*shape \(\)"):
        bt.apply(params, np.float32(1.0))
    with pytest.raises(ValueError, match=r"^BatchThreads\[rows 0:2\] > Sequential\[0\] "
                                         r"Dense\(5\): .*got shape \(2, 7\)"):
        bt.apply(params, np.ones((4, 7), np.float32))  # the child's error, placed
    _, pb = bt.vjp(params, np.ones((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"^BatchThreads\(.*\): pullback expected dy of "
                                         r"shape \(4, 3\) \(the output.s\), got \(2, 3\)"):
        pb(np.ones((2, 3), np.float32))
    lstm = L.BatchThreads(L.LSTM(3, lengths=True), 2)
    _, lp = lstm.init(KEY, ((None, 4, 2), (None,)))
    with pytest.raises(ValueError, match=r"must share their batch size .*\(5, 4, 2\), \(4,\)"):
        lstm.apply(lp, (np.ones((5, 4, 2), np.float32), np.array([4, 4, 4, 4])))


def test_a_layer_whose_output_mixes_the_batch_is_refused() -> None:
    def apply(params: Any, x: Any) -> Any:
        return x.sum(axis=0)

    total = L.Layer(lambda key, s: (s[1:], ()), apply,
                    lambda p, x: (apply(p, x), lambda dy: ((), np.broadcast_to(dy, x.shape))),
                    name="BatchSum")
    with pytest.raises(ValueError, match=r"^BatchThreads\(BatchSum, threads=2\): the layer's "
                                         r"output has shape \(3,\) for a slice of 2 examples"):
        L.BatchThreads(total, 2).apply((), np.ones((4, 3)))


def test_the_workers_see_the_callers_errstate_and_check_finite() -> None:
    # both live in contextvars, which a pool's threads would start without
    seq = L.BatchThreads(L.Sequential(L.Dense(3), L.Tanh()), 2)
    _, params = seq.init(KEY, (None, 2))
    x = np.ones((4, 2), np.float32)
    x[3, 0] = np.nan  # in the second slice, which a worker runs
    seq.apply(params, x)  # outside the block: NaN out, no error
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^BatchThreads\[rows 2:4\] Sequential\(.*\): Sequential: "
                                      r"NaN in the input x"):
        seq.apply(params, x)

    def inverse(params: Any, x: Any) -> Any:
        return 1.0 / x

    inv = L.BatchThreads(L.Layer(lambda key, s: (s, ()), inverse,
                                 lambda p, x: (inverse(p, x), lambda dy: ((), -dy / x**2)),
                                 name="Inverse"), 2)
    z = np.ones((4, 1))
    z[3] = 0.0
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError,
                                                    match=r"^BatchThreads\[rows 2:4\] Inverse"):
        inv.apply((), z)
    with np.errstate(divide="ignore"):
        assert np.isinf(inv.apply((), z)[3, 0])
