"""layers.BatchThreads, review tests: what tests/test_layers_batch_threads.py leaves open.
need_dx reaching (or not) the child, errors from several slices at once, a BaseException in a
worker, NamedTuple / nested-tuple inputs and outputs, nested cotangent checks, the context
read at pullback time, the pullbacks running at once, composition with other combinators
(the numbers against the same model without BatchThreads), the pool's threads released with
the layer, and None entries of inputs and cotangents (two defects this review found)."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.layers._pointwise import Pointwise

KEY = random.key(0)


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _close(a: Any, b: Any, tol: float = 1e-10) -> None:
    """Two trees equal within tol, with the same structure, tuple types and None entries."""
    if isinstance(a, tuple):
        assert type(a) is type(b) and len(a) == len(b), (type(a), type(b))
        for u, v in zip(a, b):
            _close(u, v, tol)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif a is None:
        assert b is None, f"expected None, got {type(b).__name__}"
    else:
        assert np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _f64(params: Any) -> Any:
    return tree.map(lambda p: p.astype(np.float64), params)


def _user(name: str, f: Any, df: Any = None, **fields: Any) -> L.Layer:
    """A parameterless user layer ``y = f(x)`` with ``dx = df(x, dy)`` (dy by default)."""
    df = df or (lambda x, dy: dy)
    return L.Layer(lambda key, s: (s, ()), lambda p, x: f(x),
                   lambda p, x: (f(x), lambda dy: ((), df(x, dy))), name=name, **fields)


# ------------------------------------------------------------------------------ need_dx

def test_need_dx_false_reaches_a_dx_optional_child_in_every_slice() -> None:
    asked: list[bool] = []
    lock = threading.Lock()

    def vjp(params: Any, x: Any) -> Any:
        def pullback(dy: Any, need_dx: bool = True) -> Any:
            with lock:
                asked.append(need_dx)
            return {"w": (dy * x).sum(0)}, (dy * params["w"] if need_dx else None)
        return x * params["w"], pullback

    scale = L.Layer(lambda key, s: (s, {"w": np.ones(s[1:])}), lambda p, x: vjp(p, x)[0], vjp,
                    name="Scale", dx_optional=True)
    bt = L.BatchThreads(scale, 3)
    params = {"w": np.array([2.0, 3.0])}
    x = np.arange(12.0).reshape(6, 2)
    _, pb = bt.vjp(params, x)
    dy = np.ones((6, 2))
    dparams, dx = pb(dy, need_dx=False)
    assert dx is None and asked == [False] * 3  # each slice's child skips its dx
    np.testing.assert_array_equal(dparams["w"], x.sum(0))
    asked.clear()
    dparams, dx = pb(dy)
    assert asked == [True] * 3
    np.testing.assert_array_equal(dx, np.tile([2.0, 3.0], (6, 1)))
    np.testing.assert_array_equal(dparams["w"], x.sum(0))


def test_need_dx_false_with_a_child_that_cannot_skip_its_dx() -> None:
    # the child's pullback takes dy alone; BatchThreads still offers need_dx (dx_optional)
    def vjp(params: Any, x: Any) -> Any:
        return x * params["w"], lambda dy: ({"w": (dy * x).sum(0)}, dy * params["w"])

    scale = L.Layer(lambda key, s: (s, {"w": np.ones(s[1:])}), lambda p, x: vjp(p, x)[0], vjp,
                    name="Scale")
    assert not scale.dx_optional
    bt = L.BatchThreads(scale, 2)
    assert bt.dx_optional  # "dx_optional whatever the child's: pulled drops dx"
    params = {"w": np.array([2.0, 3.0])}
    x = np.arange(10.0).reshape(5, 2)
    _, pb = bt.vjp(params, x)
    dparams, dx = pb(np.ones((5, 2)), need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(dparams["w"], x.sum(0))
    v, g = fd.value_and_grad(bt, losses.mse)(params, x, np.zeros((5, 2)))
    v0, g0 = fd.value_and_grad(scale, losses.mse)(params, x, np.zeros((5, 2)))
    _close((v, g), (v0, g0), 1e-12)


# ------------------------------------------------------------------------------ errors

def _failing(fail: set[int], slow: set[int], finished: list[int],
             exc: Any = ValueError) -> L.Layer:
    """Rows are 0..N-1 in x[:, 0]; a slice starting at a row in ``slow`` sleeps first, one
    starting at a row in ``fail`` raises ``exc``; each records its first row when done."""
    def f(x: Any) -> Any:
        first = int(x[0, 0])
        if first in slow:
            time.sleep(0.3)
        finished.append(first)
        if first in fail:
            raise exc(f"slice at row {first}")
        return x
    return _user("Failing", f)


def test_the_first_failing_slice_in_row_order_is_raised_after_all_finished() -> None:
    x = np.arange(6.0)[:, None]  # threads=3: rows 0:2, 2:4, 4:6
    finished: list[int] = []
    # slice 2:4 fails late, 4:6 early: the error raised is still the earlier rows'
    with pytest.raises(ValueError, match=r"^BatchThreads\[rows 2:4\] Failing: slice at row 2"):
        L.BatchThreads(_failing({2, 4}, {2}, finished), 3).apply((), x)
    assert sorted(finished) == [0, 2, 4]
    finished.clear()
    # the caller's own slice fails at once; the workers' slow slices are waited for
    with pytest.raises(ValueError, match=r"^BatchThreads\[rows 0:2\] Failing: slice at row 0"):
        L.BatchThreads(_failing({0, 2, 4}, {2, 4}, finished), 3).apply((), x)
    assert sorted(finished) == [0, 2, 4]  # nothing left running when the error comes out


class _Stop(BaseException):
    """Neither an Exception nor a KeyboardInterrupt (which pytest would take as its own)."""


def test_a_base_exception_in_a_worker_propagates_after_the_others_finished() -> None:
    x = np.arange(6.0)[:, None]
    finished: list[int] = []
    bt = L.BatchThreads(_failing({2}, {4}, finished, exc=_Stop), 3)
    with pytest.raises(_Stop, match="slice at row 2"):
        bt.apply((), x)
    assert sorted(finished) == [0, 2, 4]
    finished.clear()
    np.testing.assert_array_equal(L.BatchThreads(_failing(set(), set(), finished), 3)
                                  .apply((), x), x)  # the pool still works after


def test_errors_in_the_pullback_name_their_slice_and_the_batchs_dy_shape() -> None:
    lstm = L.LSTM(3, return_state=True)
    _, params = lstm.init(KEY, (None, 4, 2))
    x = _rng().normal(size=(5, 4, 2))
    _, pb = L.BatchThreads(lstm, 2).vjp(params, x)
    good = np.ones((5, 4, 3))
    # a wrong entry deep in a tuple cotangent is named with the batch's shapes
    with pytest.raises(ValueError, match=r"^BatchThreads\(LSTM.*\): pullback expected dy of "
                                         r"shape \(5, 3\) \(the output.s\), got \(2, 3\)"):
        pb((good, (np.ones((5, 3)), np.ones((2, 3)))))
    with pytest.raises(ValueError, match=r"^BatchThreads\(LSTM.*\): dy must be shaped as"):
        pb(good)


# ---------------------------------------------------------------- context, concurrency

def test_check_finite_is_read_when_the_pullback_runs_in_every_worker() -> None:
    seq = L.BatchThreads(L.Sequential(L.Dense(3), L.Tanh()), 2)
    _, params = seq.init(KEY, (None, 2))
    x = np.ones((4, 2))
    dy = np.ones((4, 3))
    dy[3, 0] = np.nan  # in the worker's slice
    _, pb = seq.vjp(params, x)  # outside the block
    with fd.debug.check_finite(), pytest.raises(FloatingPointError,
                                                match=r"^BatchThreads\[rows 2:4\] .*backward"):
        pb(dy)
    with fd.debug.check_finite():
        _, pb2 = seq.vjp(params, x)
    assert np.isnan(pb2(dy)[1][3]).all()  # made inside, called outside: not checked


def test_the_pullbacks_of_the_slices_run_at_once() -> None:
    together = threading.Barrier(3, timeout=30)  # broken unless all three run at once
    ids: set[int] = set()

    def df(x: Any, dy: Any) -> Any:
        together.wait()
        ids.add(threading.get_ident())
        return 2.0 * dy

    bt = L.BatchThreads(_user("Double", lambda x: 2.0 * x, df), 3)
    x = np.arange(7.0)[:, None]
    _, pb = bt.vjp((), x)
    np.testing.assert_array_equal(pb(np.ones((7, 1)))[1], np.full((7, 1), 2.0))
    assert len(ids) == 3


def test_one_value_called_from_several_threads_at_once_gives_the_sequential_numbers() -> None:
    model = L.Sequential(L.Dense(8), L.Tanh(), L.Dense(3))
    _, params = model.init(KEY, (None, 5))
    params = _f64(params)
    bt = L.BatchThreads(model, 3)
    rng = _rng()
    xs = [rng.normal(size=(n, 5)) for n in (1, 2, 3, 5, 8, 13)]
    want = [(model.apply(params, x), model.vjp(params, x)[1](np.cos(x[:, :3]))) for x in xs]
    start = threading.Barrier(4, timeout=30)
    bad: list[str] = []

    def caller(t: int) -> None:
        start.wait()
        for r in range(6):
            i = (t + r) % len(xs)
            try:
                y, pb = bt.vjp(params, xs[i])
                _close(bt.apply(params, xs[i]), want[i][0], 1e-12)
                _close(y, want[i][0], 1e-12)
                _close(pb(np.cos(xs[i][:, :3])), want[i][1], 1e-11)
            except Exception as e:  # collected, asserted below
                bad.append(f"thread {t} case {i}: {e!r}")

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert bad == []


def test_a_pullback_again_and_after_other_calls_gives_the_same() -> None:
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(3))
    _, params = model.init(KEY, (None, 5))
    params = _f64(params)
    bt = L.BatchThreads(model, 3)
    rng = _rng()
    x = rng.normal(size=(7, 5))
    dy = rng.normal(size=(7, 3))
    y, pb = bt.vjp(params, x)
    first = pb(dy)
    want = tree.map(np.copy, first)
    for a in (y, first[1], *tree.leaves(first[0])):  # the caller writes over what it got
        a *= 3.0
    bt.vjp(params, rng.normal(size=(9, 5)))[1](rng.normal(size=(9, 3)))  # other calls
    bt.apply(params, rng.normal(size=(2, 5)))
    _close(pb(dy), want, 0.0)
    _close(want, model.vjp(params, x)[1](dy), 1e-12)


def test_the_pools_threads_end_with_the_layer() -> None:
    bt = L.BatchThreads(_user("GcProbe", lambda x: x + 1.0), 3)
    _, pb = bt.vjp((), np.ones((6, 1)))
    pool = [t for t in threading.enumerate()
            if t.name.startswith("funcdl-BatchThreads(GcProbe, threads=3)")]
    # (an idle worker takes the next slice, so the pool may not have made its second yet)
    assert 1 <= len(pool) <= 2 and all(t.is_alive() for t in pool)
    np.testing.assert_array_equal(pb(np.ones((6, 1)))[1], np.ones((6, 1)))
    del bt, pb
    gc.collect()
    for t in pool:
        t.join(10)
    assert not any(t.is_alive() for t in pool)


def test_nested_batch_threads_neither_hang_nor_change_the_numbers() -> None:
    inner = L.Sequential(L.Dense(6), L.Tanh())
    model = L.Sequential(inner, L.Dense(3))
    nested = L.BatchThreads(L.Sequential(L.BatchThreads(inner, 2), L.Dense(3)), 2)
    _, params = model.init(KEY, (None, 4))
    params = _f64(params)
    x = _rng().normal(size=(9, 4))
    dy = _rng().normal(size=(9, 3))
    out: list[Any] = []

    def go() -> None:
        y, pb = nested.vjp(params, x)
        out.append((y, pb(dy)))

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive() and len(out) == 1
    y, pb = model.vjp(params, x)
    _close(out[0], (y, pb(dy)), 1e-12)


# ------------------------------------------------------------------------------ keys

def test_fewer_examples_than_threads_split_the_key_by_the_slice_count() -> None:
    drop = L.Dropout(0.5)
    x = np.ones((3, 64))
    keys = random.split(KEY, 3)  # three slices of one, not four
    want = np.concatenate([drop.apply((), x[i:i + 1], key=keys[i], train=True)
                           for i in range(3)])
    bt = L.BatchThreads(drop, 4)
    np.testing.assert_array_equal(bt.apply((), x, key=KEY, train=True), want)
    y, pb = bt.vjp((), x, key=KEY, train=True)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(pb(np.ones_like(x))[1], want)


def test_remat_of_batch_threads_recomputes_the_same_masks() -> None:
    model = L.Sequential(L.Dense(6), L.Dropout(0.5), L.Dense(3))
    _, params = model.init(KEY, (None, 4))
    params = _f64(params)
    x = _rng().normal(size=(7, 4))
    t = np.arange(7) % 3
    bt = L.BatchThreads(model, 3)
    want = fd.value_and_grad(bt, losses.softmax_cross_entropy)(params, x, t, key=KEY)
    for m in (L.Remat(bt), L.BatchThreads(L.Remat(model), 3)):
        _close(fd.value_and_grad(m, losses.softmax_cross_entropy)(params, x, t, key=KEY),
               want, 1e-12)


# ------------------------------------------------------------------------- composition

def _block(width: int = 5) -> L.Layer:
    return L.Sequential(L.Dense(width), L.Tanh())


COMPOSED = {
    # name: (plain model, the same with BatchThreads somewhere)
    "second in Sequential": (lambda: L.Sequential(L.Dense(5), _block(), L.Dense(3)),
                             lambda: L.Sequential(L.Dense(5), L.BatchThreads(_block(), 2),
                                                  L.Dense(3))),
    "paramless first": (lambda: L.Sequential(L.Tanh(), _block(), L.Dense(3)),
                        lambda: L.Sequential(L.BatchThreads(L.Tanh(), 3), _block(), L.Dense(3))),
    "in Residual": (lambda: L.Sequential(L.Residual(_block(4)), L.Dense(3)),
                    lambda: L.Sequential(L.Residual(L.BatchThreads(_block(4), 3)), L.Dense(3))),
    "around Residual": (lambda: L.Sequential(L.Residual(_block(4)), L.Dense(3)),
                        lambda: L.BatchThreads(L.Sequential(L.Residual(_block(4)), L.Dense(3)),
                                               2)),
    "around Shared": (lambda: L.Sequential(L.Dense(5), L.FanOut(2), L.Shared(_block(), 2),
                                           L.FanInSum(), L.Dense(3)),
                      lambda: L.Sequential(L.Dense(5), L.FanOut(2),
                                           L.BatchThreads(L.Shared(_block(), 2), 3),
                                           L.FanInSum(), L.Dense(3))),
    "in Shared": (lambda: L.Sequential(L.Dense(5), L.FanOut(2), L.Shared(_block(), 2),
                                       L.FanInSum(), L.Dense(3)),
                  lambda: L.Sequential(L.Dense(5), L.FanOut(2),
                                       L.Shared(L.BatchThreads(_block(), 2), 2),
                                       L.FanInSum(), L.Dense(3))),
    "in Parallel": (lambda: L.Sequential(L.FanOut(2), L.Parallel(_block(), _block()),
                                         L.FanInConcat(), L.Dense(3)),
                    lambda: L.Sequential(L.FanOut(2),
                                         L.Parallel(L.BatchThreads(_block(), 2), _block()),
                                         L.FanInConcat(), L.Dense(3))),
    "Remat around": (lambda: L.Sequential(_block(), L.Dense(3)),
                     lambda: L.Sequential(L.Remat(L.BatchThreads(_block(), 2)), L.Dense(3))),
    "nested": (lambda: L.Sequential(_block(), L.Dense(3)),
               lambda: L.BatchThreads(L.Sequential(L.BatchThreads(_block(), 3), L.Dense(3)), 2)),
}


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("case", sorted(COMPOSED))
def test_composed_models_give_the_plain_models_numbers(case: str, n: int) -> None:
    plain, threaded = (make() for make in COMPOSED[case])
    _, params = plain.init(KEY, (None, 4))
    params = _f64(params)
    assert threaded.init(KEY, (None, 4))[0] == plain.init(KEY, (None, 4))[0]
    rng = _rng()
    x = rng.normal(size=(n, 4))
    t = rng.integers(0, 3, n)
    for kw in ({}, {"wrt_input": True}):
        got = fd.value_and_grad(threaded, losses.softmax_cross_entropy, **kw)(params, x, t)
        _close(got, fd.value_and_grad(plain, losses.softmax_cross_entropy, **kw)(params, x, t),
               1e-11)
    y, pb = plain.vjp(params, x)
    y2, pb2 = threaded.vjp(params, x)
    dy = rng.normal(size=y.shape)
    _close((y2, pb2(dy)), (y, pb(dy)), 1e-11)


def test_has_aux_and_a_batchnorm_outside_with_its_state() -> None:
    plain = L.Sequential(L.Dense(5), L.BatchNorm(), _block(), L.Dense(3))
    threaded = L.Sequential(L.Dense(5), L.BatchNorm(), L.BatchThreads(_block(), 3), L.Dense(3))
    _, params, state = plain.init(KEY, (None, 4))
    params = _f64(params)
    x = _rng().normal(size=(8, 4))
    t = np.arange(8) % 3

    def with_acc(pred: Any, target: Any) -> Any:
        value, pullback = losses.softmax_cross_entropy.vjp(pred, target)
        return (value, float(np.mean(pred.argmax(-1) == target))), pullback

    loss = losses.Loss("ce_acc", with_acc)
    got = fd.value_and_grad(threaded, loss, has_aux=True, wrt_input=True)(params, x, t,
                                                                           state=state)
    want = fd.value_and_grad(plain, loss, has_aux=True, wrt_input=True)(params, x, t,
                                                                         state=state)
    _close(got, want, 1e-11)
    (_, _, new_state), _ = got
    assert any(not np.array_equal(a, b)  # the statistics moved
               for a, b in zip(tree.leaves(new_state), tree.leaves(state)))


# ------------------------------------------------------------------------------ inputs

class Pair(NamedTuple):
    a: Any
    b: Any


def test_a_namedtuple_input_and_output_keep_their_type_in_every_slice() -> None:
    seen: list[type] = []

    def f(x: Any) -> Any:
        seen.append(type(x))
        return Pair(x.a * 2.0, x.b + x.a[:, :1])  # read by field name

    def df(x: Any, dy: Any) -> Any:
        assert isinstance(dy, Pair)
        return Pair(2.0 * dy.a + np.pad(dy.b.sum(1, keepdims=True), ((0, 0), (0, 1))), dy.b)

    user = _user("Fields", f, df)
    rng = _rng()
    x = Pair(rng.normal(size=(5, 2)), rng.normal(size=(5, 3)))
    want_y = f(x)
    dy = Pair(rng.normal(size=(5, 2)), rng.normal(size=(5, 3)))
    for threads in (1, 2, 3):
        bt = L.BatchThreads(user, threads)
        seen.clear()
        _close(bt.apply((), x), want_y, 1e-14)
        assert seen and all(t is Pair for t in seen)
        y, pb = bt.vjp((), x)
        _close(y, want_y, 1e-14)
        _close(pb(dy), ((), df(x, dy)), 1e-14)


def test_nested_tuple_inputs_lstm_initial_state() -> None:
    lstm = L.LSTM(3, initial_state=True)
    _, params = lstm.init(KEY, ((None, 4, 2), ((None, 3), (None, 3))))
    params = _f64(params)
    rng = _rng()
    x = (rng.normal(size=(5, 4, 2)), (rng.normal(size=(5, 3)), rng.normal(size=(5, 3))))
    y, pb = lstm.vjp(params, x)
    dy = rng.normal(size=y.shape)
    for threads in (2, 3):
        bt = L.BatchThreads(lstm, threads)
        y2, pb2 = bt.vjp(params, x)
        _close(y2, y, 1e-12)
        _close(pb2(dy), pb(dy), 1e-11)


def test_list_views_float32_empty_and_single_example_inputs() -> None:
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(3))
    _, params = model.init(KEY, (None, 3))  # float32 params
    rng = _rng()
    big = rng.normal(size=(12, 7)).astype(np.float32)
    inputs = {"list": big[:5, :3].tolist(), "strided view": big[::2, 1::2],
              "transposed view": big.T[:5, :3], "empty": big[:0, :3],
              "one": big[:1, :3]}
    for what, x in inputs.items():
        xa = np.asarray(x, np.float32)
        y, pb = model.vjp(params, xa)
        dy = rng.normal(size=y.shape).astype(np.float32)
        want = pb(dy)
        for threads in (2, 4):
            bt = L.BatchThreads(model, threads)
            got_y, got_pb = bt.vjp(params, x)
            got = got_pb(dy)
            assert got_y.dtype == np.float32 and got[1].dtype == np.float32, what
            assert all(g.dtype == np.float32 for g in tree.leaves(got[0])), what
            _close(got_y, y, 1e-6)
            _close(got, want, 1e-5)
            _close(bt.apply(params, x), y, 1e-6)


def test_attention_with_q_kv_a_padding_mask_and_returned_weights() -> None:
    rng = _rng()
    q = rng.normal(size=(5, 3, 4))
    kv = rng.normal(size=(5, 6, 4))
    mask = rng.random((5, 6)) < 0.3
    mask[:, 0] = False
    cases = [(L.MultiHeadAttention(2), (q, kv), None),
             (L.MultiHeadAttention(2, masked=True), (q, kv, mask), None),
             (L.MultiHeadAttention(2, return_weights="heads"), (q, kv), "weights unread")]
    for layer, x, how in cases:
        _, params = layer.init(KEY, tuple((None, *a.shape[1:]) for a in x))
        params = _f64(params)
        y, pb = layer.vjp(params, x)
        dy = ((rng.normal(size=y[0].shape), None) if how else rng.normal(size=y.shape))
        bt = L.BatchThreads(layer, 2)
        y2, pb2 = bt.vjp(params, x)
        _close(y2, y, 1e-12)
        _close(pb2(dy), pb(dy), 1e-11)


def test_a_mask_without_the_batch_axis_is_refused_by_name_not_misread() -> None:
    # MultiHeadAttention takes a (1, T, S) attn_mask; BatchThreads cuts every array of a
    # tuple input on axis 0, so it refuses the mask rather than broadcasting it
    mha = L.MultiHeadAttention(2, masked=True)
    rng = _rng()
    q, kv = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 6, 4))
    mask = np.zeros((1, 3, 6), bool)
    _, params = mha.init(KEY, ((None, 3, 4), (None, 6, 4), (1, 3, 6)))
    assert mha.apply(params, (q, kv, mask)).shape == (5, 3, 4)
    with pytest.raises(ValueError, match=r"must share their batch size .*\(1, 3, 6\); an "
                                         r"array shared by every example .*broadcast_to"):
        L.BatchThreads(mha, 2).apply(params, (q, kv, mask))
    full = np.broadcast_to(mask, (5, 3, 6))  # as the hint says: then it runs
    np.testing.assert_allclose(L.BatchThreads(mha, 2).apply(params, (q, kv, full)),
                               mha.apply(params, (q, kv, mask)), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------- fields, aliasing

def test_the_fusion_fields_are_not_taken_from_the_child() -> None:
    # a Sequential fuses a pointwise child into the layer before it, which would then run
    # unthreaded; BatchThreads must not offer pointwise / vjp_then / selects_max
    assert L.BatchThreads(L.ReLU(), 2).pointwise is None
    assert L.BatchThreads(L.Dense(3), 2).vjp_then is None
    assert not L.BatchThreads(L.MaxPool2D(2), 2).selects_max
    assert L.BatchThreads(L.ConvTranspose2D(3, 2), 2).weight_out_axis == -2  # this one kept
    where: set[int] = set()
    lock = threading.Lock()

    def f(x: Any) -> Any:
        with lock:
            where.add(threading.get_ident())
        return np.tanh(x)

    act = _user("MyTanh", f, lambda x, dy: dy * (1 - np.tanh(x) ** 2),
                pointwise=Pointwise("MyTanh", f, lambda x, y, dy: dy * (1 - y * y)))
    model = L.Sequential(L.Dense(3), L.BatchThreads(act, 2))
    _, params = model.init(KEY, (None, 2))
    model.apply(params, np.ones((4, 2), np.float32))
    assert len(where) == 2  # one slice in each thread: not fused into the Dense


def test_nothing_passed_is_written_and_several_slices_hand_out_their_own_arrays() -> None:
    model = L.Sequential(L.Conv2D(2, 3, padding="SAME"), L.ReLU(), L.MaxPool2D(2),
                         L.Flatten(), L.Dense(3), L.ReLU())
    _, params = model.init(KEY, (None, 4, 4, 1))
    rng = _rng()
    x = rng.normal(size=(5, 4, 4, 1)).astype(np.float32)
    dy = rng.normal(size=(5, 3)).astype(np.float32)
    before = tree.map(np.copy, (params, x, dy))
    bt = L.BatchThreads(model, 3)
    y, pb = bt.vjp(params, x)
    dparams, dx = pb(dy)
    bt.apply(params, x)
    _close((params, x, dy), before, 0.0)
    _close((y, (dparams, dx)), (model.apply(params, x), model.vjp(params, x)[1](dy)), 1e-5)
    assert not np.shares_memory(dx, dy) and not np.shares_memory(dx, x)
    ident = L.BatchThreads(L.Identity(), 3)
    y, pb = ident.vjp((), x)
    dy = x.copy()
    _, dx = pb(dy)
    assert not np.shares_memory(dx, dy)
    assert not np.shares_memory(y, x) and not np.shares_memory(ident.apply((), x), x)
    np.testing.assert_array_equal(y, x)
    y[...] = 0.0
    _close(x, before[1], 0.0)


# ----------------------------------------------- None entries (found by this review, fixed)

def test_a_none_cotangent_for_a_nested_output_entry_is_passed_to_the_child() -> None:
    lstm = L.LSTM(3, return_state=True)
    _, params = lstm.init(KEY, (None, 4, 2))
    params = _f64(params)
    x = _rng().normal(size=(5, 4, 2))
    y, pb = lstm.vjp(params, x)
    dy = (np.ones(y[0].shape), None)  # the state not read
    want = pb(dy)
    _, pb2 = L.BatchThreads(lstm, 2).vjp(params, x)
    _close(pb2(dy), want, 1e-11)


def test_a_none_entry_of_a_tuple_input_is_passed_through() -> None:
    x = (np.arange(8.0).reshape(4, 2), None)
    want = L.Identity().apply((), x)
    assert want[1] is None
    _close(L.BatchThreads(L.Identity(), 2).apply((), x), want, 0.0)


def test_a_list_cotangent_reads_as_the_tuple_and_a_dict_input_is_named() -> None:
    lstm = L.LSTM(3, return_state=True)
    _, params = lstm.init(KEY, (None, 4, 2))
    params = _f64(params)
    x = _rng().normal(size=(5, 4, 2))
    y, pb = lstm.vjp(params, x)
    dy = [np.ones(y[0].shape), None]  # a list, as the child takes it
    _, pb2 = L.BatchThreads(lstm, 2).vjp(params, x)
    _close(pb2(dy), pb(tuple(dy)), 1e-11)
    with pytest.raises(ValueError, match=r"dy must be shaped as the layer's output, "
                                         r"\(\(5, 4, 3\), \(\(5, 3\), \(5, 3\)\)\), got "
                                         r"\(\(5, 4, 3\)\)"):
        pb2([np.ones(y[0].shape)])
    with pytest.raises(ValueError, match=r"^BatchThreads\(Identity\(\), threads=2\): every "
                                         r"input array needs the batch on axis 0 .*got a dict"):
        L.BatchThreads(L.Identity(), 2).apply((), {"a": np.ones((4, 2))})
