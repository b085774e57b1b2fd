"""Adversarial review of funcdl.sweep.run (default pool, threads, Dask) and funcdl.data
(batches, disk, train_test_split, moments, one_hot) against DESIGN.md's contract."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
import pytest

import funcdl as fd
from funcdl import data, sweep

# ---------------------------------------------------------------- module-level run functions

def _ident(c):
    return c


def _fail_on_bad(c):
    if c == "bad":
        raise ValueError(f"bad config {c!r}")
    return c


def _slow(c):
    time.sleep(c)
    return c


def _seeded(c):
    k = fd.random.key(c["seed"])
    k1, k2 = fd.random.split(k, 2)
    return {"w": fd.random.normal(k1, (3, 2)), "b": (np.float64(c["lr"]), [c["seed"]]),
            "u": fd.random.uniform(k2, (), dtype=np.float64)}


def _returns_lock(c):
    return threading.Lock() if c == "lock" else c


def _nested(c):
    return sweep.run(_ident, [c, c + 1], progress=False)


_RAN: list[object] = []  # the configs _interrupt started


def _interrupt(c):
    _RAN.append(c)
    if c == "kb":
        raise KeyboardInterrupt
    time.sleep(0.2)
    return c


class _Holder:
    """A bound method of this pickles with neither pickle nor cloudpickle (the lock)."""
    def __init__(self):
        self.lock = threading.Lock()

    def run(self, c):
        return c


SEEDED = [{"seed": s, "lr": lr} for s in range(2) for lr in (0.1, 0.01)]


def _same_trees(a, b):
    la, lb = fd.tree.leaves(a), fd.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(la, lb))


# ---------------------------------------------------------------- sweep: default pool, threads

def test_default_pool_config_order_failure_kept_with_config_and_traceback():
    results = sweep.run(_fail_on_bad, [0.3, "bad", 0.1, 0.0], progress=False)
    assert results[0] == 0.3 and results[2:] == [0.1, 0.0]
    f = results[1]
    assert isinstance(f, sweep.Failure) and f.index == 1 and f.config == "bad"
    assert f.error == "ValueError: bad config 'bad'"
    assert "in _fail_on_bad" in f.traceback and "raise ValueError" in f.traceback


@pytest.mark.parametrize("where", ["default", "threads"])
def test_results_in_config_order_when_runs_finish_in_reverse(where):
    configs = [0.4, 0.25, 0.1, 0.0]
    if where == "default":
        assert sweep.run(_slow, configs, progress=False) == configs
    else:
        with ThreadPoolExecutor(4) as pool:
            assert sweep.run(_slow, configs, pool, progress=False) == configs


def test_progress_lines_one_per_run_and_failure_traceback(capsys):
    with ThreadPoolExecutor(2) as pool:
        sweep.run(_fail_on_bad, ["a", "bad", "c"], pool)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("sweep: ")]
    assert len(lines) == 3 and lines[-1].startswith("sweep: 3/3 done, 1 failed")
    bad = next(ln for ln in lines if "run 1 " in ln)
    assert "'bad'" in bad and "FAILED: ValueError: bad config" in bad
    assert "raise ValueError" in err


# DEFECT (fixed): a config whose repr spans lines (an array) broke the progress line
def test_progress_line_of_a_multiline_config_stays_one_line(capsys):
    with ThreadPoolExecutor(1) as pool:
        sweep.run(_ident, [np.eye(3), {"w": np.zeros((2, 2))}], pool)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(ln.startswith("sweep: ") for ln in lines), lines


def test_lambda_or_closure_train_fn_clear_error_on_processes_runs_on_threads():
    k = 3

    def times_k(c):
        return c * k

    with pytest.raises(TypeError, match=r"sweep\.run: train_fn '.*<lambda>' cannot be sent.*"
                                        r"ThreadPoolExecutor"):
        sweep.run(lambda c: c, [1, 2])
    with pytest.raises(TypeError, match=r"train_fn .*times_k.* cannot be sent.*top level"):
        sweep.run(times_k, [1, 2])
    with ThreadPoolExecutor(2) as pool:
        assert sweep.run(lambda c: c + 1, [1, 2], pool, progress=False) == [2, 3]
        assert sweep.run(times_k, [1, 2], pool, progress=False) == [3, 6]


def test_an_unpicklable_config_on_the_default_pool_fails_alone():
    results = sweep.run(_ident, ["a", threading.Lock(), "c"], progress=False)
    assert results[0] == "a" and results[2] == "c"
    f = results[1]
    assert isinstance(f, sweep.Failure) and f.index == 1 and "pickle" in f.error


def test_empty_configs_and_generators():
    assert sweep.run(_ident, []) == []
    assert sweep.run(_ident, iter(())) == []
    assert sweep.run(_ident, (i * i for i in range(5)), progress=False) == [0, 1, 4, 9, 16]
    with ThreadPoolExecutor(2) as pool:
        assert sweep.run(_ident, (c for c in "xyz"), pool, progress=False) == ["x", "y", "z"]


@pytest.mark.parametrize("bad", [ThreadPoolExecutor, 4, "processes", object()],
                         ids=["the-class", "int", "str", "object"])
def test_an_executor_that_is_not_an_executor_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"sweep\.run: executor must be a "
                                        r"concurrent\.futures\.Executor"):
        sweep.run(_ident, [1], bad)


def test_an_executor_without_submit_or_shut_down_is_named():
    with pytest.raises(TypeError, match="does not implement submit"):
        sweep.run(_ident, [1], Executor())
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(ValueError, match=r"executor refused the run.*open"):
        sweep.run(_ident, [1], pool)


def test_keyboard_interrupt_in_a_run_stops_a_thread_pool_sweep():
    _RAN.clear()
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(KeyboardInterrupt):
            sweep.run(_interrupt, ["kb", 1, 2, 3, 4, 5], pool, progress=False)
    assert len(_RAN) <= 2, _RAN  # the queued runs were cancelled, not run


def test_keyboard_interrupt_in_a_run_stops_a_default_pool_sweep():
    with pytest.raises(KeyboardInterrupt):
        sweep.run(_interrupt, [1, "kb", 3], progress=False)


def test_nested_default_pool_sweeps():
    assert sweep.run(_nested, [0, 10], progress=False) == [[0, 1], [10, 11]]


def test_strict_raises_after_every_run_with_failures_sorted():
    with ThreadPoolExecutor(2) as pool, pytest.raises(sweep.SweepError) as info:
        sweep.run(_fail_on_bad, ["bad", "a", "bad", "b"], pool, progress=False, strict=True)
    err = info.value
    assert [f.index for f in err.failures] == [0, 2]
    assert err.results[1] == "a" and err.results[3] == "b"
    assert "2 of 4 runs failed" in str(err)


def test_pytree_results_are_deterministic_across_executors():
    on_default = sweep.run(_seeded, SEEDED, progress=False)
    with ThreadPoolExecutor(2) as pool:
        on_threads = sweep.run(_seeded, SEEDED, pool, progress=False)
    direct = [_seeded(c) for c in SEEDED]
    for a, b, c in zip(on_default, on_threads, direct):
        assert _same_trees(a, c) and _same_trees(b, c)
        assert a["w"].dtype == np.float32 and isinstance(a["b"], tuple)
    assert not np.array_equal(direct[0]["w"], direct[2]["w"])  # another seed, another draw


# ---------------------------------------------------------------- sweep: Dask

@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "120s"}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=50)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_config_order_failure_and_determinism(dask_client, capsys):
    ex = dask_client.get_executor()
    results = sweep.run(_fail_on_bad, ["a", "bad", "c"], ex)
    assert results[0] == "a" and results[2] == "c"
    f = results[1]
    assert isinstance(f, sweep.Failure) and f.config == "bad" and "raise ValueError" in \
        f.traceback
    assert len([ln for ln in capsys.readouterr().err.splitlines()
                if ln.startswith("sweep: ")]) == 3
    got = sweep.run(_seeded, SEEDED, ex, progress=False)
    assert all(_same_trees(a, _seeded(c)) for a, c in zip(got, SEEDED))


def test_dask_runs_lambdas_closures_generators_and_empty(dask_client):
    ex = dask_client.get_executor()
    k = 5
    assert sweep.run(lambda c: c * k, [1, 2, 3], ex, progress=False) == [5, 10, 15]
    assert sweep.run(_ident, (c for c in [3, 1, 3]), ex, progress=False) == [3, 1, 3]
    assert sweep.run(_ident, [], ex) == []


def test_dask_client_itself_is_refused_with_a_hint(dask_client):
    with pytest.raises(TypeError, match=r"client\.get_executor\(\)"):
        sweep.run(_ident, [1], dask_client)


# DEFECT (fixed): on Dask an unpicklable config raises Dask's bare TypeError and loses every result
def test_dask_unpicklable_config_fails_alone(dask_client):
    results = sweep.run(_ident, ["a", threading.Lock(), "c"], dask_client.get_executor(),
                        progress=False)
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], sweep.Failure) and results[1].index == 1


# DEFECT (fixed): on Dask an unsendable train_fn gives "Could not serialize object of type LLGExpr"
def test_dask_unsendable_train_fn_is_a_clear_type_error(dask_client):
    with pytest.raises(TypeError, match=r"sweep\.run: train_fn .*cannot be sent"):
        sweep.run(_Holder().run, [1, 2], dask_client.get_executor(), progress=False)


# DEFECT (fixed): on Dask a run whose result cannot be serialised makes sweep.run hang forever
def test_dask_unpicklable_result_fails_alone_instead_of_hanging(dask_client):
    out: list[object] = []
    ex = dask_client.get_executor()

    def go():
        try:
            out.append(sweep.run(_returns_lock, ["a", "lock", "c"], ex, progress=False))
        except Exception as err:
            out.append(err)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(8.0)
    assert not thread.is_alive(), "sweep.run still waiting 8 s later (a run takes ms)"
    results = out[0]
    assert isinstance(results, list) and results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], sweep.Failure)


# ---------------------------------------------------------------- data.batches

KEY = fd.random.key(7)


@pytest.mark.parametrize("n, bs, drop", [(10, 3, False), (10, 3, True), (10, 5, True),
                                         (7, 100, False), (7, 100, True), (7, 1, False),
                                         (1, 1, True), (10, np.int32(4), False)])
def test_batches_every_example_once_in_the_documented_order(n, bs, drop):
    x = np.arange(n * 2).reshape(n, 2).astype(np.float32)
    y = np.arange(n) * 10
    got = list(data.batches(KEY, x, y, batch_size=bs, drop_last=drop))
    assert all(len(b) == 2 for b in got)
    sizes = [len(b[0]) for b in got]
    stop = n - n % bs if drop else n
    assert sum(sizes) == stop and all(s == bs for s in sizes[:-1])
    order = np.concatenate([b[1] // 10 for b in got]) if got else np.zeros(0, int)
    np.testing.assert_array_equal(order, fd.random.permutation(KEY, n)[:stop])
    for xb, yb in got:  # rows kept together across arrays
        np.testing.assert_array_equal(xb[:, 0] // 2, yb // 10)
        assert xb.dtype == np.float32
    if not drop:
        assert sorted(order.tolist()) == list(range(n))


def test_batches_same_key_same_order_other_key_other_order():
    x = np.arange(50)

    def run(key):
        return np.concatenate(list(b[0] for b in data.batches(key, x, batch_size=8)))

    np.testing.assert_array_equal(run(fd.random.key(1)), run(fd.random.key(1)))
    assert not np.array_equal(run(fd.random.key(1)), run(fd.random.key(2)))


def test_batches_without_shuffle_are_in_order_and_take_key_none():
    got = [b[0].tolist() for b in data.batches(None, np.arange(7), batch_size=3, shuffle=False)]
    assert got == [[0, 1, 2], [3, 4, 5], [6]]
    got = [b[0].tolist() for b in data.batches(KEY, np.arange(7), batch_size=3, shuffle=False,
                                               drop_last=True)]
    assert got == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("bs, exc", [(0, ValueError), (-2, ValueError), (2.0, TypeError),
                                     (True, TypeError), ("4", TypeError), (None, TypeError),
                                     (np.float64(4), TypeError)])
def test_batches_bad_batch_size(bs, exc):
    with pytest.raises(exc, match=r"data\.batches: batch_size must be"):
        data.batches(KEY, np.arange(5), batch_size=bs)  # at the call, not at next()


@pytest.mark.parametrize("key", [0, np.zeros(2), "k", np.zeros(3, np.uint64)])
def test_batches_bad_key_is_a_type_error(key):
    with pytest.raises(TypeError, match=r"data\.batches: expected a key"):
        data.batches(key, np.arange(4), batch_size=2)


def test_batches_lists_and_tuples_of_numbers_are_arrays():
    got = list(data.batches(None, [1, 2, 3], (4.0, 5.0, 6.0), batch_size=2, shuffle=False))
    assert [b[0].tolist() for b in got] == [[1, 2], [3]]
    assert [b[1].tolist() for b in got] == [[4.0, 5.0], [6.0]]


@pytest.mark.parametrize("arg, exc", [((np.arange(3), np.arange(3)), TypeError),
                                      ({"x": np.arange(3)}, TypeError), (None, TypeError),
                                      ({1, 2}, TypeError), (5, ValueError),
                                      ([[1, 2], [3]], ValueError),
                                      (np.ma.array([1, 2]), ValueError)],
                         ids=["tuple-of-arrays", "dict", "None", "set", "scalar", "ragged",
                              "masked"])
def test_batches_non_arrays_are_named(arg, exc):
    with pytest.raises(exc, match=r"data\.batches: argument 1"):
        data.batches(KEY, arg, batch_size=2)


def test_batches_zero_length_arrays_give_no_batches():
    for shuffle in (True, False):
        assert list(data.batches(KEY, np.zeros((0, 3)), np.zeros(0), batch_size=2,
                                 shuffle=shuffle)) == []


def test_batches_misuse_is_named():
    with pytest.raises(ValueError, match=r"first dimension.*\(10, 2\), \(9,\)"):
        data.batches(KEY, np.zeros((10, 2)), np.zeros(9), batch_size=2)
    with pytest.raises(ValueError, match=r"shuffle=True needs a key.*shuffle=False"):
        data.batches(None, np.arange(4), batch_size=2)
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        data.batches(KEY, np.arange(3), batch_size=2, shuffle="no")
    with pytest.raises(TypeError, match="drop_last must be True or False"):
        data.batches(KEY, np.arange(3), batch_size=2, drop_last=1)
    with pytest.raises(ValueError, match="at least one array"):
        data.batches(KEY, batch_size=2)


# ---------------------------------------------------------------- data.disk and the helpers

def test_disk_matches_design():
    x, y = data.disk(KEY, 20000)
    assert x.shape == (20000, 2) and y.shape == (20000, 1)
    assert x.dtype == y.dtype == np.float32
    assert x.min() >= 0.0 and x.max() < 1.0
    assert data.RADIUS == 1 / math.sqrt(2 * math.pi)
    inside = ((x.astype(np.float64) - 0.5) ** 2).sum(1) < 1 / (2 * math.pi)
    np.testing.assert_array_equal(y[:, 0], inside.astype(np.float32))
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    assert abs(y.mean() - 0.5) < 0.02  # area 1/2
    x2, y2 = data.disk(KEY, 20000)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert data.disk(KEY, 5, np.float64)[0].dtype == np.float64
    assert [a.shape for a in data.disk(KEY, 0)] == [(0, 2), (0, 1)]


@pytest.mark.parametrize("call, exc", [(lambda: data.disk(KEY, -1), ValueError),
                                       (lambda: data.disk(KEY, 2.0), TypeError),
                                       (lambda: data.disk(KEY, True), TypeError),
                                       (lambda: data.disk(10, KEY), TypeError),
                                       (lambda: data.disk(KEY, 3, np.float16), TypeError),
                                       (lambda: data.disk(KEY, 3, radius=0), ValueError)])
def test_disk_bad_arguments(call, exc):
    with pytest.raises(exc, match=r"data\.disk"):
        call()


@pytest.mark.parametrize("test_size, n_test", [(0.25, 3), (0.3, 3), (3, 3), (0.01, 1)])
def test_train_test_split_sizes_and_partition(test_size, n_test):
    a = np.arange(10)
    a_tr, a_te, b_tr, b_te = data.train_test_split(KEY, a, a * 10, test_size=test_size)
    if isinstance(test_size, float):  # scikit-learn's ceil(test_size * n)
        assert n_test == math.ceil(test_size * 10)
    assert len(a_te) == n_test and len(a_tr) == 10 - n_test
    assert sorted(np.concatenate([a_tr, a_te]).tolist()) == list(range(10))
    np.testing.assert_array_equal(b_tr, a_tr * 10)
    np.testing.assert_array_equal(b_te, a_te * 10)
    perm = fd.random.permutation(KEY, 10)
    np.testing.assert_array_equal(a_te, perm[:n_test])


@pytest.mark.parametrize("test_size, exc", [(0, ValueError), (10, ValueError),
                                            (1.0, ValueError), (True, TypeError),
                                            ("0.2", TypeError), (float("nan"), ValueError)])
def test_train_test_split_bad_test_size(test_size, exc):
    with pytest.raises(exc, match=r"data\.train_test_split: .*test_size"):
        data.train_test_split(KEY, np.arange(10), test_size=test_size)


def test_train_test_split_stratify_and_bad_inputs():
    y = np.repeat([0, 1, 2], [20, 10, 10])
    _, _, y_tr, y_te = data.train_test_split(KEY, np.arange(40), y, test_size=0.25,
                                             stratify=y)
    assert np.bincount(y_te).tolist() == [5, 3, 2] or np.bincount(y_te).tolist() == [5, 2, 3]
    assert np.bincount(y_tr).tolist() == (np.bincount(y) - np.bincount(y_te)).tolist()
    with pytest.raises(ValueError, match="one label per example"):
        data.train_test_split(KEY, np.arange(40), stratify=y[:5])
    with pytest.raises(ValueError, match="first dimension"):
        data.train_test_split(KEY, np.arange(10), np.arange(9))
    with pytest.raises(ValueError, match="at least 2 examples"):
        data.train_test_split(KEY, np.arange(1))
    with pytest.raises(TypeError, match="pass the key first"):
        data.train_test_split(np.arange(10), np.arange(10))


def test_moments_standardise_and_refuse_bad_input():
    x = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    mean, std = data.moments(x)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (1, 2)
    np.testing.assert_allclose((x - mean) / std, [[-1, 0], [1, 0]])
    with pytest.raises(TypeError, match="float32 or float64"):
        data.moments(np.arange(4))
    with pytest.raises(ValueError, match="at least one entry"):
        data.moments(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        data.moments(np.array([1.0, np.nan]))


def test_one_hot_as_jax():
    got = data.one_hot([0, 2, -1, 3], 3)
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
    assert got.dtype == np.float32
    with pytest.raises(TypeError, match="integer class indices"):
        data.one_hot([0.0, 1.0], 2)
