"""Run by tests/test_parallel.py as ``mpiexec -n 2 python -m mpi4py check_parallel.py CASE``.

Each rank checks its own results; rank 0 then prints every rank's report lines (``rank R ok
CASE``, and for the mismatch case the error each rank raised), gathered so that the ranks'
output cannot interleave. A failed assertion aborts every rank (``-m mpi4py``).
"""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np

import funcdl as fd
from funcdl import layers as L
from funcdl import parallel

rank, size = parallel.rank_and_size()


def world_reducer():
    """The reducer of bare pmean calls on COMM_WORLD (comm=None resolves to it)."""
    from mpi4py import MPI
    return parallel._reducer(MPI.COMM_WORLD)


def f64(v: float) -> np.ndarray:
    """A 0-d float64 array: a view of the mean's buffer in the result, so the checks below
    can tell which buffer a result came from (a NumPy scalar leaf comes back a copy)."""
    return np.array(v, np.float64)


def model_and_data(dtype: type, n: int) -> tuple:
    model = L.Sequential(L.Dense(16), L.Tanh(), L.Dense(3))
    _, params = model.init(fd.random.key(0), (None, 5))
    params = fd.tree.astype(params, dtype)
    x = fd.random.normal(fd.random.key(1), (n, 5), dtype=dtype)
    y = np.asarray(fd.random.permutation(fd.random.key(2), n) % 3)
    return model, params, x, y


def train(step, opt, params, batches):
    state = opt.init(params)
    losses = []
    for xb, yb in batches:
        loss, grads = step(params, xb, yb)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
        losses.append(loss)
    return params, losses


def global_batches(key, x, y, batch):
    """Every rank's share of each global batch, concatenated in rank order."""
    shares = [list(parallel.batches(key, x, y, batch_size=batch, rank=r, size=size))
              for r in range(size)]
    for parts in zip(*shares):
        yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def equivalence(dtype: type, n: int, batch: int, tol: float) -> None:
    """Two epochs of K data-parallel steps with global batch ``batch`` against K steps of
    one process on the same global batches (every rank computes the reference itself)."""
    model, params, x, y = model_and_data(dtype, n)
    local = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    opt = fd.optim.adam(1e-2)
    keys = [fd.random.fold_in(fd.random.key(3), e) for e in range(2)]

    def mine(k):
        return parallel.batches(k, x, y, batch_size=batch, rank=rank, size=size)

    dp_params, dp_losses = train(parallel.data_parallel(local), opt, params,
                                 (b for k in keys for b in mine(k)))
    ref_params, ref_losses = train(local, opt, params, (b for k in keys for b in
                                                        global_batches(k, x, y, batch)))
    if n % batch == 0 or n % batch >= size:  # no merged remainder: data.batches's batches
        plain, _ = train(local, opt, params, (b for k in keys for b in
                                              fd.data.batches(k, x, y, batch_size=batch)))
        for a, b in zip(fd.tree.leaves(plain), fd.tree.leaves(ref_params)):
            np.testing.assert_array_equal(a, b)
    assert len(dp_losses) == len(ref_losses) > 0
    np.testing.assert_allclose(dp_losses, ref_losses, rtol=tol, atol=tol)
    for a, b in zip(fd.tree.leaves(dp_params), fd.tree.leaves(ref_params)):
        assert a.dtype == dtype, a.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def batch_form() -> None:
    """A function of ``(params, batch)``, as JAX scripts write steps, is made data-parallel
    alike: the examples are counted on the batch's first leaf (uneven shares: 13 and 12)."""
    model, params, x, y = model_and_data(np.float64, 50)
    local = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    three, two = parallel.data_parallel(local), parallel.data_parallel(
        lambda p, batch: local(p, *batch))
    for xb, yb in parallel.batches(fd.random.key(4), x, y, batch_size=25, rank=rank,
                                   size=size):
        (loss3, grads3), (loss2, grads2) = three(params, xb, yb), two(params, (xb, yb))
        assert loss3 == loss2, (loss3, loss2)
        for a, b in zip(fd.tree.leaves(grads3), fd.tree.leaves(grads2), strict=True):
            np.testing.assert_array_equal(a, b)


def case_equivalence() -> list[str]:
    batch_form()
    equivalence(np.float32, 96, 24, 1e-5)     # 2 epochs x 4 steps, 12 examples per rank
    equivalence(np.float64, 96, 24, 1e-12)
    equivalence(np.float64, 90, 25, 1e-12)    # 13/12 per rank, and a last batch of 15
    equivalence(np.float64, 51, 25, 1e-12)    # a last batch of 1 joins the one before
    parallel.pmean({"w": np.ones(3)})
    return [f"rank {rank} path {'shared' if world_reducer().windows else 'allreduce'}"]


def sync_bn(model, dtype: type, n: int, batch: int, tol: float) -> None:
    """data_parallel(sync_batch_stats=True) on a model with BatchNorm: K steps over the
    ranks give one process's params, losses and running statistics on the global batches
    (uneven shares too), the state equal on every rank; without it, they differ. The same
    for sharded(sgd) on the grads of sync_batch_stats(fn)."""
    out = model.init(fd.random.key(0), (None, 5))
    params = fd.tree.astype(out[1], dtype)
    x = fd.random.normal(fd.random.key(1), (n, 5), dtype=dtype) * 2 + 1
    y = np.asarray(fd.random.permutation(fd.random.key(2), n) % 3)
    local = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)

    def run(step, batches):
        p, state, opt = params, out[2], fd.optim.sgd(0.1)
        ostate, losses = opt.init(p), []
        for xb, yb in batches:
            (loss, state), grads = step(p, xb, yb, state=state)
            updates, ostate = opt.update(ostate, grads, p)
            p = fd.optim.apply_updates(p, updates)
            losses.append(loss)
        return p, state, losses

    key = fd.random.key(3)
    synced = run(parallel.data_parallel(local, sync_batch_stats=True),
                 parallel.batches(key, x, y, batch_size=batch, rank=rank, size=size))
    ref = run(local, global_batches(key, x, y, batch))
    np.testing.assert_allclose(synced[2], ref[2], rtol=tol, atol=tol)
    for a, b in zip(fd.tree.leaves(synced[:2]), fd.tree.leaves(ref[:2]), strict=True):
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    from mpi4py import MPI
    states = MPI.COMM_WORLD.allgather(fd.tree.leaves(synced[1]))
    for other in states[1:]:  # the same bits on every rank
        for a, b in zip(states[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    alone = run(parallel.data_parallel(local),
                parallel.batches(key, x, y, batch_size=batch, rank=rank, size=size))
    assert not np.allclose(alone[2], ref[2], rtol=tol, atol=tol)

    def run_sharded(step):  # sync_batch_stats for sharded: this rank's grads, then its step
        p, state, opt = params, out[2], parallel.sharded(fd.optim.sgd(0.1))
        ostate = opt.init(p)
        for xb, yb in parallel.batches(key, x, y, batch_size=batch, rank=rank, size=size):
            (_, state), grads = step(p, xb, yb, state=state)
            p, ostate = opt.step(ostate, grads, p, examples=len(xb))
        return p, state

    got = run_sharded(parallel.sync_batch_stats(local))
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(ref[:2]), strict=True):
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    unsynced = run_sharded(local)
    assert not all(np.allclose(a, b, rtol=tol, atol=tol) for a, b in
                   zip(fd.tree.leaves(unsynced), fd.tree.leaves(ref[:2])))


def case_sync_bn() -> list[str]:
    def bn_model():
        return L.Sequential(L.Dense(8), L.BatchNorm(), L.Tanh(), L.Dense(3))

    sync_bn(bn_model(), np.float64, 90, 25, 1e-12)   # 13/12 per rank, a last batch of 15
    sync_bn(bn_model(), np.float32, 96, 24, 2e-5)
    sync_bn(L.BatchThreads(bn_model(), 2), np.float64, 90, 25, 1e-12)  # threads in ranks
    try:
        parallel.data_parallel(lambda p, x: (0.0, p), sync_batch_stats="yes")
    except TypeError as e:
        assert "sync_batch_stats" in str(e), e
    else:
        raise AssertionError("sync_batch_stats='yes' was accepted")
    parallel.pmean({"w": np.ones(3)})
    return [f"rank {rank} path {'shared' if world_reducer().windows else 'allreduce'}"]


def case_collectives() -> list[str]:
    model, _, _, _ = model_and_data(np.float32, 4)
    _, params = model.init(fd.random.key(10 + rank), (None, 5))   # differs across ranks
    tree = {"params": params, "opt": fd.optim.adam(1e-3).init(params),
            "count": np.int64(7 + rank), "key": fd.random.key(2**70 + rank),
            "lr": 0.1 * (rank + 1), "flag": rank == 0, "name": f"run{rank}",
            "tag": f"t{rank}".encode()}  # strings came back arrays off the root
    got = parallel.broadcast(tree)
    everyone = fd.tree.leaves(parallel.broadcast(tree, root=1))
    want = fd.tree.leaves(tree) if rank == 0 else None
    from mpi4py import MPI
    want = MPI.COMM_WORLD.bcast(want, root=0)
    for a, b in zip(fd.tree.leaves(got), want):
        assert type(a) is type(b) and np.array_equal(a, b), (a, b)
    assert got["key"].dtype == np.uint64 and got["count"].dtype == np.int64
    one = MPI.COMM_WORLD.bcast(fd.tree.leaves(tree) if rank == 1 else None, root=1)
    for a, b in zip(everyone, one):
        assert np.array_equal(a, b)
    # pmean: the mean, dtypes kept, no result changed by a later call
    t = {"a": np.full(3, rank, np.float32), "b": [f64(rank * 2.0)]}
    first = parallel.pmean(t)
    assert first["a"].dtype == np.float32 and np.array_equal(first["a"], [0.5] * 3)
    assert first["b"][0].dtype == np.float64 and first["b"][0] == 1.0
    later = [parallel.pmean({"a": np.full(3, 10.0 + i, np.float32), "b": [f64(i)]})
             for i in range(4)]
    assert np.array_equal(first["a"], [0.5] * 3), "an earlier result was overwritten"
    assert [float(r["a"][0]) for r in later] == [10.0, 11.0, 12.0, 13.0]
    for i in range(6):  # results dropped at once: the buffer is reused, not reallocated
        parallel.pmean({"a": np.full(3, 1.0, np.float32), "b": [f64(i)]})
    assert all(len(p) <= 3 for p in world_reducer().buffers.values())
    try:
        first["a"][0] = 2.0
    except ValueError:
        pass
    else:
        raise AssertionError("a result of pmean is writable (it may be shared by the ranks)")
    report = which_buffers(first, later)
    del first, later
    return report + held_on_one_rank()


def case_leaf_types() -> list[str]:
    """Each leaf of a mean comes back as the kind of value it was, as on one process: a
    NumPy scalar stays a NumPy scalar of its dtype, a 0-d array a 0-d array, a Python float
    a float; an array leaf is a view of the mean's buffer, not a copy."""
    from mpi4py import MPI
    t = {"s": np.float32(rank), "z": np.array(rank, np.float32), "a": np.full(3, rank, np.float32)}
    mixed = {"w": np.full(2, rank, np.float64), "s32": np.float32(rank), "s64": np.float64(rank),
             "f": 1.0 * rank, "z": np.array(rank, np.float64)}  # a float64 buffer
    for tree in (t, mixed):
        alone = parallel.pmean(tree, comm=MPI.COMM_SELF)  # one process: the tree itself
        got = parallel.pmean(tree)
        assert alone is tree
        for k in tree:
            assert type(got[k]) is type(tree[k]), (k, type(got[k]), type(tree[k]))
            assert np.asarray(got[k]).dtype == np.asarray(tree[k]).dtype, k
            assert np.all(got[k] == 0.5), (k, got[k])
    got = parallel.pmean(t)
    assert got["z"].shape == () and not got["z"].flags.owndata
    assert got["a"].base is not None and got["a"].base is got["z"].base  # views of one buffer
    grads = parallel.data_parallel(lambda p, x: (float(x.sum()), {"b": np.float32(rank)}))(
        None, np.ones((1 + rank, 1)))[1]  # weighted 1:2
    assert type(grads["b"]) is np.float32 and abs(grads["b"] - 2 / 3) < 1e-6, grads
    # every data_parallel made splits COMM_WORLD once per process, not once per instance
    # (one made per run ran MPI out of communicators after about a thousand)
    from funcdl import _reduce
    for _ in range(3):
        parallel.data_parallel(lambda p, x: (float(x.sum()), {"b": np.float32(rank)}))(
            None, np.ones((1, 1)))
    assert sum(parent is MPI.COMM_WORLD for parent, _ in _reduce._NODES.values()) == 1
    with warnings.catch_warnings():  # a real leaf of a complex buffer: no ComplexWarning
        warnings.simplefilter("error")
        got = parallel.pmean({"c": np.array([1 + 1j * (rank + 1)]), "f": np.full(2, rank, float)})
    assert got["f"].dtype == np.float64 and (got["f"] == 0.5).all() and got["c"][0] == 1 + 1.5j
    return [f"rank {rank} path {'shared' if world_reducer().windows else 'allreduce'}"]


def which_buffers(first, later) -> list[str]:
    """Which buffers the results above came from."""
    windows = list(world_reducer().windows.values())
    if not windows:  # FUNCDL_MPI_SHARED_MEMORY=0: every mean through a private buffer
        from funcdl import _reduce
        assert all(v[1] is None for v in _reduce._NODES.values())
        return [f"rank {rank} path allreduce"]
    (window,) = windows
    results = window.results
    assert len(results) == 8, "a tiny window takes 8 results in turn"

    def where(r: dict) -> int | None:
        return next((g for g, res in enumerate(results) if np.shares_memory(r["b"][0], res)),
                    None)

    assert not np.shares_memory(first["a"], results[0])  # a float32 leaf of a float64 buffer
    assert [where(r) for r in [first, *later]] == [0, 1, 2, 3, 4], "results not in turn"
    more = [parallel.pmean({"a": np.full(3, 1.0, np.float32), "b": [f64(i)]})
            for i in range(5)]  # every result held from the fourth on: private buffers
    assert [where(r) for r in more] == [5, 6, 7, None, None]
    assert [float(r["b"][0]) for r in more] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert float(first["b"][0]) == 1.0 and float(later[3]["b"][0]) == 3.0
    del more
    again = parallel.pmean({"a": np.full(3, 1.0, np.float32), "b": [f64(0.0)]})
    assert where(again) == 5, "after the last result, the turn goes on from the first free"
    return [f"rank {rank} path shared"]


def held_on_one_rank() -> list[str]:
    """Rank 0 keeps a result and rank 1 drops its own: the next mean must not reuse it."""
    if not world_reducer().windows:
        return []
    (window,) = world_reducer().windows.values()
    results = window.results
    kept = parallel.pmean({"a": np.full(3, 5.0, np.float32), "b": [f64(rank)]})
    via = [i for i, res in enumerate(results) if np.shares_memory(kept["b"][0], res)]
    if rank:
        del kept
    again = parallel.pmean({"a": np.full(3, 7.0, np.float32), "b": [f64(9.0)]})
    assert float(again["b"][0]) == 9.0
    if rank == 0:
        assert float(kept["b"][0]) == 0.5, "a result held on rank 0 only was overwritten"
        assert not np.shares_memory(again["b"][0], results[via[0]])
    assert via, "the mean did not go through the shared window"
    return [f"rank {rank} kept {via}"]


def case_tight() -> list[str]:
    """Shared memory too tight on rank 1 for buffers taken in turn: both ranks open the
    two-result window; too tight for any window: every mean goes by Allreduce."""
    from funcdl import _reduce

    roomy = _reduce.shared_memory_free
    # 1000 float32 on 2 ranks: in turn, 8 results and 8 slot sets need 96 kB; else 16 kB
    _reduce.shared_memory_free = (lambda: 4 * 50_000) if rank else roomy
    kept = [parallel.pmean({"a": np.full(1000, i + rank, np.float32)}) for i in range(3)]
    assert [float(r["a"][0]) for r in kept] == [0.5, 1.5, 2.5]
    (window,) = world_reducer().windows.values()
    assert len(window.sets) == 1 and len(window.results) == 2, "rank 1's room not agreed on"
    assert [any(np.shares_memory(r["a"], res) for res in window.results) for r in kept] == \
        [True, True, False]
    _reduce.shared_memory_free = (lambda: 4 * 10_000) if rank else roomy  # no room at all
    got = parallel.pmean({"b": np.full(1001, rank, np.float32)})
    assert float(got["b"][0]) == 0.5 and len(world_reducer().windows) == 1
    _reduce.shared_memory_free = roomy
    return [f"rank {rank} path shared"]


def case_three() -> list[str]:
    """Three ranks: sums over more than two slots, parts of uneven length (n % 3 != 0)."""
    for n in (1, 7, 70_001):  # fewer entries than ranks; small; large (per-leaf packing)
        t = {"a": np.full(n, float(rank + 1), np.float32), "b": [np.float64(3.0 * rank)]}
        got = parallel.pmean(t)
        assert got["a"].dtype == np.float32 and np.array_equal(got["a"], np.full(n, 2.0))
        assert got["b"][0] == 3.0
    equivalence(np.float64, 50, 10, 1e-12)   # 4/3/3 examples per rank
    path = "shared" if world_reducer().windows else "allreduce"
    return [f"rank {rank} path {path}"]


def case_empty() -> list[str]:
    """Rank 1 holds no examples and, as an empty batch's mean does (np.mean([]), torch's
    .mean()), returns NaN loss and grads: weight 0, it adds nothing, to data_parallel's
    mean or to a sharded step; every rank gets rank 0's own loss, grads and update."""
    model, params, x, y = model_and_data(np.float64, 8)
    local = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    want_loss, want = local(params, x, y)  # rank 0's shard is the whole batch

    def nan_if_empty(p, xb, yb):
        if len(xb) == 0:
            return float("nan"), fd.tree.map(lambda a: np.full_like(a, np.nan), p)
        return local(p, xb, yb)

    mine = slice(None) if rank == 0 else slice(0, 0)
    step = parallel.data_parallel(nan_if_empty)
    opt, whole = parallel.sharded(fd.optim.adam(0.1)), fd.optim.adam(0.1)
    updates, _ = whole.update(whole.init(params), want, params)
    expect = fd.optim.apply_updates(params, updates)
    for _ in range(3):  # the first calls of a layout sum by messages, later ones in windows
        loss, grads = step(params, x[mine], y[mine])
        assert loss == want_loss, (loss, want_loss)
        assert all(np.array_equal(a, b)
                   for a, b in zip(fd.tree.leaves(grads), fd.tree.leaves(want)))
        _, mine_grads = nan_if_empty(params, x[mine], y[mine])
        new, _ = opt.step(opt.init(params), mine_grads, params, examples=len(x[mine]))
        assert all(np.allclose(a, b, rtol=1e-12, atol=0) and np.isfinite(a).all()
                   for a, b in zip(fd.tree.leaves(new), fd.tree.leaves(expect)))
    parallel.pmean({"w": np.ones(3)})  # the shared reducer's way, as the environment chose
    return [f"rank {rank} path {'shared' if world_reducer().windows else 'allreduce'}"]


def case_wrt_input() -> list[str]:
    """value_and_grad(..., wrt_input=True) made data-parallel: dparams averaged, dx this
    rank's own rows of the global batch's dx (it was averaged over ranks, rows of different
    examples; on uneven shards every rank raised a mismatch)."""
    for dtype, tol, n in ((np.float64, 1e-12, 8), (np.float64, 1e-12, 7), (np.float32, 1e-6, 9)):
        model, params, x, y = model_and_data(dtype, n)
        vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy, wrt_input=True)
        loss, (dparams, dx) = vg(params, x, y)
        xb, yb = next(parallel.batches(None, x, y, batch_size=n, rank=rank, size=size,
                                       shuffle=False))
        lo = sum(len(next(parallel.batches(None, x, batch_size=n, rank=r, size=size,
                                           shuffle=False))[0]) for r in range(rank))
        # a wrapper hides vg's wrt_input attribute: it was averaged as params' grads then
        wrapped = functools.partial(lambda f, *a, **k: f(*a, **k), vg)
        for step in (parallel.data_parallel(vg),
                     parallel.data_parallel(wrapped, wrt_input=True)):
            dp_loss, (dp_dparams, dp_dx) = step(params, xb, yb)
            np.testing.assert_allclose(dp_loss, loss, rtol=tol)
            for a, b in zip(fd.tree.leaves(dp_dparams), fd.tree.leaves(dparams)):
                np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
            assert dp_dx.dtype == dtype and dp_dx.shape == xb.shape
            np.testing.assert_allclose(dp_dx, dx[lo:lo + len(xb)], rtol=tol, atol=tol)
        try:
            parallel.data_parallel(wrapped)(params, xb, yb)
        except ValueError as e:
            assert "wrt_input=True" in str(e), e
        else:
            raise AssertionError("a wrapped wrt_input function was averaged as params' grads")
    parallel.pmean({"w": np.ones(3)})  # the path a bare pmean takes under this environment
    return [f"rank {rank} path {'shared' if world_reducer().windows else 'allreduce'}"]


def case_windows() -> list[str]:
    """Results kept while means of more layouts than the reducer keeps windows for go by:
    the oldest window was freed under them (its results turned to zeros, or a crash). A
    result held on rank 0 only must keep it too: every rank frees a window, or none."""
    from funcdl import _reduce

    kept = parallel.pmean({"curve": np.full(5, 1.0 + rank)})
    held = parallel.pmean({"curve": np.full(7, 2.0 + rank)})
    if rank:
        del held
    for n in range(2, 2 + 2 * _reduce._WINDOWS):  # more layouts than windows
        assert float(parallel.pmean({"m": np.full(n + 10, float(rank))})["m"][0]) == 0.5
    assert np.array_equal(kept["curve"], np.full(5, 1.5)), "a kept result changed"
    if rank == 0:
        assert np.array_equal(held["curve"], np.full(7, 2.5)), "a result kept on rank 0 changed"
    assert len(world_reducer().windows) <= _reduce._WINDOWS
    del kept
    return [f"rank {rank} path {'shared' if world_reducer().windows else 'allreduce'}"]


def case_mismatch() -> list[str]:
    """Each call below must raise the same ValueError on every rank; none may hang."""
    w = np.zeros((3 + rank, 2), np.float32)
    calls = {
        "broadcast-shape": lambda: parallel.broadcast({"b": np.zeros(2), "w": w}),
        "pmean-structure": lambda: parallel.pmean({"a": np.zeros(2), **({"z": np.zeros(1)}
                                                                         if rank else {})}),
        "pmean-dtype": lambda: parallel.pmean([np.zeros(2, (np.float32, np.float64)[rank])]),
        "broadcast-root": lambda: parallel.broadcast(np.zeros(2), root=rank),
        # one tree, another collective on each rank (after a pmean on both: a first one
        # opens the node's communicator): rank 1 waited in its Bcast for ever, rank 0 raised
        # a TypeError about a leaf check
        "pmean-vs-broadcast": lambda: (parallel.pmean, parallel.broadcast)[rank](
            {"w": np.ones(4, np.float32)}),
        "data_parallel-vs-pmean": lambda: data_parallel_or_pmean(),
        # a masked leaf on one rank: its mask was dropped from the sum without a word
        "pmean-masked-one": lambda: parallel.pmean({"m": np.ma.masked_array(
            np.ones(3, np.float32), [0, rank, 0])} if rank else {"m": np.ones(3, np.float32)}),
    }
    return [*raised(calls, ValueError),
            *raised({"pmean-int": lambda: parallel.pmean({"n": np.arange(3)}),
                     "pmean-masked": lambda: parallel.pmean(
                         {"m": np.ma.masked_array(np.ones(3, np.float32), [0, 1, 0])}),
                     # a float root on one rank: every rank raises, none waits in the Bcast
                     "broadcast-float-root": lambda: parallel.broadcast(
                         np.zeros(2), root=(0, 0.0)[rank])}, TypeError)]


def case_cold_swap() -> list[str]:
    """Another collective on each rank as the process's first: pmean's first call splits
    the node's communicator, which broadcast's did not, and MPICH aborted the job."""
    return raised({"cold-pmean-vs-broadcast": lambda: (parallel.pmean, parallel.broadcast)[
        rank]({"w": np.ones(4, np.float32)})}, ValueError)


def data_parallel_or_pmean() -> None:
    """Rank 0 takes a data-parallel step, rank 1 the mean of the same grads: both hung."""
    model = fd.layers.Dense(1)
    _, params = model.init(fd.random.key(0), (None, 3))
    grad_fn = fd.value_and_grad(model, fd.losses.mse)
    x, y = np.ones((4, 3), np.float32), np.ones((4, 1), np.float32)
    if rank == 0:
        parallel.data_parallel(grad_fn)(params, x, y)
    else:
        parallel.pmean(grad_fn(params, x, y)[1])


def raised(calls: dict, error: type[Exception]) -> list[str]:
    """``rank R NAME ERROR: message`` for each call, every one of which must raise."""
    report = []
    for name, call in calls.items():
        try:
            call()
        except error as err:
            report.append(f"rank {rank} {name} {error.__name__}: {err}")
        else:
            raise AssertionError(f"{name} did not raise")
    return report


if __name__ == "__main__":
    from mpi4py import MPI

    case = sys.argv[1]
    want = 3 if case == "three" else 2
    assert size == want, f"run case {case} under mpiexec -n {want}, got {size} rank(s)"
    lines = globals()[f"case_{case}"]() or []
    every = MPI.COMM_WORLD.gather([*lines, f"rank {rank} ok {case}"], root=0)
    if rank == 0:
        print("\n".join(line for report in every for line in report), flush=True)
