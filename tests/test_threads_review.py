"""Thread-safety review: many threads at once on the module-level caches (``_sums.ones``,
the positional, bilinear, causal-mask and adaptive-pool tables), the context state
(``debug.check_finite``, per-example mode, ``layers.summary``'s trace, NumPy 2's errstate),
``io.save``/``load`` on one path, ``sweep.run`` on threads, ``parallel`` on one process,
BatchThreads called by several user threads, and ``random``. Each thread's result must equal
the same computation done serially, bit for bit. Short: a Barrier starts the threads
together and a tiny switch interval makes interleavings likely."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import optim, parallel, sweep
from funcdl.layers import batch_threads as bt_module

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


@contextmanager
def fast_switching() -> Iterator[None]:
    old, _ = sys.getswitchinterval(), sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def together(work: list[Callable[[], Any]], timeout: float = 60.0) -> list[Any]:
    """Each callable in a thread of its own, all started at once; their results in order
    (an exception a thread raised is re-raised here)."""
    out: list[Any] = [None] * len(work)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def run(i: int) -> None:
        try:
            barrier.wait()
            out[i] = work[i]()
        except BaseException as e:  # handed to the test
            errors.append(e)

    with fast_switching():
        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(len(work))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    if errors:
        raise errors[0]
    return out


def same(a: Any, b: Any) -> bool:
    """Bit for bit: the same structure, dtypes, shapes and bytes."""
    la, lb = fd.tree.leaves(a), fd.tree.leaves(b)
    return (fd.tree.structure(a) == fd.tree.structure(b) and len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.shape(x) == np.shape(y)
        and np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb)))


def _case(kind: str, size: int, dtype: np.dtype[Any]) -> tuple[Any, Any, Any, Any]:
    """(model, in_shape, x, target) of a small model of each family; sizes differ by
    ``size`` so that the threads ask the caches for different keys."""
    k, n, c = fd.random.key(size), 4 + size, 2 + size % 3
    labels = np.arange(n) % 3
    if kind == "mlp":
        m = L.Sequential(L.Dense(5 + size), L.Tanh(), L.Dense(3))
        return m, (None, 6), fd.random.normal(k, (n, 6), dtype), labels
    if kind == "cnn":  # BatchNorm's state, AvgPool, MaxPool, bilinear Upsample, adaptive pools
        m = L.Sequential(L.Upsample(2, mode="bilinear"), L.Conv2D(4, 3), L.BatchNorm(),
                         L.ReLU(), L.MaxPool2D(2), L.AdaptiveAvgPool2D(3 + size % 2),
                         L.AdaptiveMaxPool2D(2), L.Flatten(), L.Dense(3))
        shape = (4 + size, 5 + size, c)
        return m, (None, *shape), fd.random.normal(k, (n, *shape), dtype), labels
    if kind == "lstm":
        m = L.Sequential(L.Embedding(11, 6), L.LSTM(5 + size, return_sequences=False),
                         L.Dense(3))
        return m, (None, 5 + size), np.arange(n * (5 + size)).reshape(n, -1) % 11, labels
    # attention: causal mask cache, sinusoid table cache, learned positions
    t = 5 + size
    m = L.Sequential(L.Embedding(13, 8), L.SinusoidalPositionalEncoding(),
                     L.PositionalEmbedding(t + 3), L.LayerNorm(),
                     L.MultiHeadAttention(2, causal=True), L.Dense(13))
    ids = np.arange(n * (t + 1)).reshape(n, t + 1) * 7 % 13
    return m, (None, t), ids[:, :-1], ids[:, 1:]


def _train(kind: str, size: int, dtype: np.dtype[Any], steps: int = 3) -> Any:
    model, in_shape, x, y = _case(kind, size, dtype)
    made = fd.tree.astype(model.init(fd.random.key(100 + size), in_shape)[1:], dtype)
    params, state = made[0], (made[1] if model.stateful else None)
    f = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    opt = optim.adam(1e-2) if size % 2 else optim.sgd(0.05, momentum=0.9)
    opt_state, losses = opt.init(params), []
    for _ in range(steps):
        if state is None:
            loss, grads = f(params, x, y)
        else:
            (loss, state), grads = f(params, x, y, state=state)
        updates, opt_state = opt.update(opt_state, grads, params)
        params = optim.apply_updates(params, updates)
        losses.append(loss)
    return params, opt_state, state, losses


TRAININGS = [(kind, size, dtype) for kind in ("mlp", "cnn", "lstm", "attention")
             for size, dtype in ((0, F32), (1, F64), (2, F32))]


def test_threads_training_different_models_and_dtypes_give_the_serial_numbers() -> None:
    serial = [_train(*c) for c in TRAININGS]
    for _ in range(2):
        got = together([lambda c=c: _train(*c) for c in TRAININGS])
        for c, s, g in zip(TRAININGS, serial, got, strict=True):
            assert same(s, g), c


def test_cached_tables_stay_read_only_and_right_under_many_threads() -> None:
    from funcdl.layers import _adaptive, _attention, _sums, positional, upsample

    def hammer(i: int) -> None:
        for j in range(40):
            n, dt = 1 + (i * 37 + j * 101) % 700, (F32, F64)[(i + j) % 2]
            v = _sums.ones(n, dt)
            assert v.shape == (n,) and v.dtype == dt and (v == 1).all()
            t = positional._sinusoids(1 + (i + j) % 90, 4 + 2 * (i % 3), 10000.0, dt)
            m = upsample._matrix(2 + j % 5, 1 + i % 3, bool(j % 2), dt.name)
            w = _attention.later(2 + (i + j) % 11)
            b = _adaptive._members(5 + j % 7, 1 + i % 4, dt)
            for a in (v, t, m, w, b):
                assert not a.flags.writeable
                with pytest.raises(ValueError):
                    a.setflags(write=True)

    together([lambda i=i: hammer(i) for i in range(16)])


def test_check_finite_and_numpy_errstate_stay_in_their_own_thread() -> None:
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(1))
    _, params = model.init(fd.random.key(0), (None, 3))
    bad = fd.tree.map(lambda p: np.full_like(p, np.nan), params)
    f, x, y = fd.value_and_grad(model, fd.losses.mse), np.ones((5, 3), np.float32), np.zeros((5, 1))
    good = f(params, x, y)

    def checked_nan() -> int:  # check_finite on here: every call raises
        raised = 0
        for _ in range(30):
            with fd.debug.check_finite(), pytest.raises(FloatingPointError, match="NaN"):
                f(bad, x, y)
            raised += 1
        return raised

    def unchecked_nan() -> bool:  # off here: the NaN comes back
        for _ in range(30):
            assert not fd.debug.enabled()
            with np.errstate(all="ignore"):
                assert np.isnan(f(bad, x, y)[0])
        return True

    def errstate_untouched() -> bool:  # the others' errstate (debug.quiet's) stays theirs
        return all(np.geterr()["invalid"] == "warn" for _ in range(3000))

    def clean() -> Any:
        with fd.debug.check_finite():
            return [f(params, x, y) for _ in range(30)][-1]

    out = together([checked_nan, unchecked_nan, errstate_untouched, clean] * 3)
    assert out[0::4] == [30] * 3 and all(out[1::4]) and all(out[2::4])
    assert all(same(good, g) for g in out[3::4])


def test_summary_per_example_and_plain_grads_beside_other_threads() -> None:
    model = L.Sequential(L.Dense(6), L.Tanh(), L.Dense(2))
    cnn = L.Sequential(L.Conv2D(3, 3), L.BatchNorm(), L.ReLU(), L.Flatten(), L.Dense(2))
    _, params = model.init(fd.random.key(1), (None, 4))
    x, y = fd.random.normal(fd.random.key(2), (8, 4)), np.arange(8) % 2
    plain = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    each = fd.per_example_value_and_grad(model, fd.losses.softmax_cross_entropy)
    table, cnn_table = L.summary(model, (None, 4)), L.summary(cnn, (None, 5, 5, 1))
    want_plain, want_each = plain(params, x, y), each(params, x, y)

    def init_many() -> None:  # inits that a summary elsewhere must not record
        for _ in range(20):
            model.init(fd.random.key(3), (None, 4))
            cnn.init(fd.random.key(3), (None, 5, 5, 1))

    work = [lambda: [L.summary(model, (None, 4)) for _ in range(20)],
            lambda: [L.summary(cnn, (None, 5, 5, 1)) for _ in range(20)],
            lambda: [plain(params, x, y) for _ in range(20)],
            lambda: [each(params, x, y) for _ in range(20)], init_many] * 2
    out = together(work)
    assert all(t == table for r in out[0::5] for t in r)
    assert all(t == cnn_table for r in out[1::5] for t in r)
    assert all(same(want_plain, g) for r in out[2::5] for g in r)
    assert all(same(want_each, g) for r in out[3::5] for g in r)


def test_io_save_from_threads_to_many_files_and_one_path_loads_whole_trees(tmp_path) -> None:
    trees = [{"w": np.full((50, 40), i, [np.float32, np.float64][i % 2]), "i": i,
              "t": (np.arange(i + 1), None)} for i in range(8)]
    one = tmp_path / "one.npz"
    fd.io.save(one, trees[0])

    def writer(i: int) -> None:
        for _ in range(8):
            fd.io.save(tmp_path / f"own{i}.npz", trees[i])
            fd.io.save(one, trees[i])

    def reader() -> list[int]:
        seen = []
        for _ in range(30):
            t = fd.io.load(one)
            match = [i for i, w in enumerate(trees) if same(t, w)]
            assert len(match) == 1, "a load gave no written tree"
            seen.append(match[0])
        return seen

    together([lambda i=i: writer(i) for i in range(8)] + [reader] * 4)
    assert all(same(fd.io.load(tmp_path / f"own{i}.npz", like=t), t) for i, t in enumerate(trees))
    assert sum(same(fd.io.load(one), t) for t in trees) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(["one.npz", *(f"own{i}.npz" for i in range(8))])


def _sweep_run(config: dict[str, Any]) -> Any:
    return _train(config["kind"], config["size"], config["dtype"], steps=2)


def test_sweep_on_a_thread_pool_gives_the_serial_loop() -> None:
    configs = [{"kind": k, "size": s, "dtype": d} for k, s, d in TRAININGS]
    serial = [_sweep_run(c) for c in configs]
    with fast_switching(), ThreadPoolExecutor(8) as pool:
        got = sweep.run(_sweep_run, configs, pool, progress=False, strict=True)
    assert all(same(s, g) for s, g in zip(serial, got, strict=True))


def test_parallel_on_one_process_from_threads() -> None:
    if parallel.rank_and_size() != (0, 1):
        pytest.skip("runs on one process only")
    # data_parallel keeps its buffers: its docstring says one thread at a time
    assert "call it from one thread at a time" in " ".join(parallel.data_parallel.__doc__.split())
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(1))
    _, params = model.init(fd.random.key(0), (None, 3))
    x, y = fd.random.normal(fd.random.key(1), (6, 3)), np.zeros((6, 1), np.float32)
    vg = fd.value_and_grad(model, fd.losses.mse)
    want = vg(params, x, y)

    def means(i: int) -> None:  # 40 layouts: the layout memo clears itself meanwhile
        for j in range(40):
            t = {"a": np.ones(1 + (i + j) % 40, (F32, F64)[j % 2]), "b": (np.float32(j),)}
            assert parallel.pmean(t) is t
        with pytest.raises(TypeError, match="floating-point"):
            parallel.pmean({"a": np.arange(3 + i)})

    def own_step() -> Any:  # a data_parallel of its own per thread, as documented
        step = parallel.data_parallel(vg)
        return [step(params, x, y) for _ in range(10)]

    out = together([lambda i=i: means(i) for i in range(8)] + [own_step] * 8)
    assert all(same(want, g) for r in out[8:] for g in r)


# _reduce.shared_node once dropped a freed communicator's entry by `del` after a snapshot:
# two threads making first means on new communicators both found it (KeyError, or two Frees)
def test_first_means_on_new_communicators_from_threads_drop_a_freed_one_once(
        monkeypatch) -> None:
    from funcdl import _reduce

    class Comm:  # a communicator of one machine without shared memory (no Split_type)
        freed = False

    class Node:  # its node communicator
        def Free(self) -> None:
            frees.append(1)

    frees: list[int] = []

    def freed(c: Any) -> bool:  # as _freed: mpi4py imported, then a comparison
        import importlib
        importlib.import_module("json")
        return c.freed

    monkeypatch.setattr(_reduce, "_NODES", {})
    monkeypatch.setattr(_reduce, "_SHARED", {})
    monkeypatch.setattr(_reduce, "_freed", freed)
    for _ in range(10):
        old = Comm()
        _reduce.shared_node(old)
        _reduce._NODES[id(old)] = (old, Node())  # as a split on one machine leaves it
        old.freed, frees[:] = True, []  # the caller's comm.Free()
        comms = [Comm() for _ in range(12)]
        together([lambda c=c: _reduce.shared_node(c) for c in comms])
        assert frees == [1] and id(old) not in _reduce._NODES
        for c in comms:
            c.freed = True


def test_io_load_from_threads_while_the_collector_runs(tmp_path) -> None:
    # NumPy parses a .npy header with ast.literal_eval; CPython 3.11's AST constructor
    # counts its depth per interpreter, so a thread switch inside it (here forced by a
    # collector callback, as any finaliser can) gave "SystemError: AST constructor
    # recursion depth mismatch" in 3 of 4 threads; funcdl.io parses headers under a lock
    import gc
    import time

    path = tmp_path / "t.npz"
    want = {"a": np.ones(3), "b": [np.zeros((2, 2), np.float32), np.arange(4)]}
    fd.io.save(path, want)
    threshold = gc.get_threshold()
    gc.set_threshold(5)
    gc.callbacks.append(switch := lambda phase, info: time.sleep(0))
    try:
        got = together([lambda: [fd.io.load(path) for _ in range(100)]] * 4)
    finally:
        gc.callbacks.remove(switch)
        gc.set_threshold(*threshold)
    assert all(same(t, want) for r in got for t in r)


def _bt_model() -> Any:
    return L.BatchThreads(L.Sequential(L.Conv2D(4, 3), L.BatchNorm(), L.ReLU(),
                                       L.MaxPool2D(2), L.Flatten(), L.Dense(3)), threads=3)


def test_batch_threads_called_from_many_user_threads_gives_the_serial_numbers() -> None:
    model = _bt_model()
    _, params, state = model.init(fd.random.key(0), (None, 6, 6, 2))
    f = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    calls = []
    for i in range(12):
        dt = (F32, F64)[i % 2]
        x = fd.random.normal(fd.random.key(i), (3 + i, 6, 6, 2), dt)
        calls.append((fd.tree.astype(params, dt), x, np.arange(3 + i) % 3,
                      fd.tree.astype(state, dt)))
    serial = [f(p, x, y, state=s) for p, x, y, s in calls]
    got = together([lambda c=c: [f(c[0], c[1], c[2], state=c[3]) for _ in range(3)]
                    for c in calls])
    assert all(same(s, g) for s, r in zip(serial, got, strict=True) for g in r)


# BatchThreads' pool once made its executor by check-then-set without a lock: 2-4
# executors for 8 first callers
def test_first_calls_from_many_threads_make_one_pool(monkeypatch) -> None:
    made = []

    class Counted(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(bt_module, "ThreadPoolExecutor", Counted)
    _, params, state = _bt_model().init(fd.random.key(0), (None, 6, 6, 2))
    x, counts = fd.random.normal(fd.random.key(1), (9, 6, 6, 2)), []
    for _ in range(3):
        model, made[:] = _bt_model(), []
        together([lambda m=model: m.apply(params, x, state=state)] * 8)
        counts.append(len(made))
        for pool in made:
            pool.shutdown(wait=False)
    assert counts == [1, 1, 1], f"executors made for one BatchThreads value: {counts}"


def test_random_from_many_threads_same_key_same_numbers() -> None:
    def draws(seed: int) -> list[Any]:
        k = fd.random.key(seed)
        a, b = fd.random.split(k)
        return [fd.random.split(k, 5), fd.random.normal(a, (7, 3)),
                fd.random.normal(b, (4,), np.float64), fd.random.uniform(fd.random.fold_in(k, 3),
                                                                         (6,)),
                fd.random.randint(a, (5,), 0, 100), fd.random.gamma(b, 2.0, (3,)),
                fd.random.permutation(a, 10)]

    want = [draws(s % 4) for s in range(16)]
    got = together([lambda s=s: [draws(s % 4) for _ in range(10)] for s in range(16)])
    assert all(same(w, g) for w, r in zip(want, got, strict=True) for g in r)


_IMPORTS = """
import sys, threading; sys.setswitchinterval(1e-6)
names, errors = sys.argv[1].split(","), []; barrier = threading.Barrier(len(names))
def go(name):
    barrier.wait()
    try: __import__(name)
    except BaseException as e: errors.append(repr(e))
threads = [threading.Thread(target=go, args=(n,)) for n in names]
[t.start() for t in threads] and [t.join() for t in threads]
print(errors)
"""


# funcdl/__init__.py once imported autodiff (-> debug -> tree): a thread importing
# funcdl.tree, which holds that module's lock before the package's, met it (_DeadlockError)
def test_first_imports_in_threads_at_once() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", _IMPORTS, "funcdl.debug,funcdl.tree"],
                             stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outs = [r.communicate(timeout=60)[0].strip() for r in runs]
    assert outs == ["[]"] * 4, outs
