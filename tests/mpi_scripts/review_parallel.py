"""Run by tests/test_parallel_review.py as ``mpiexec -n 2 python -m mpi4py review_parallel.py
CASE``: the checks of a review of funcdl.parallel against Horovod's, DDP's and JAX's
semantics. Each rank checks its own results; rank 0 prints every rank's report lines
(``rank R ok CASE``, ``rank R path P``, and the errors raised), gathered so that they cannot
interleave. A failed assertion aborts every rank (``-m mpi4py``).
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np
from check_parallel import model_and_data, raised
from mpi4py import MPI

import funcdl as fd
from funcdl import _agree, _reduce, parallel
from funcdl import layers as L

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()


def path(comm: object = world) -> str:
    """How means over ``comm`` go: through a shared window, or by Allreduce."""
    return "shared" if _reduce.shared_node(comm) is not None else "allreduce"


def share(n: int, r: int = rank) -> slice:
    """Rank r's rows of n, as parallel.batches cuts them (the first ranks take the extra)."""
    base, extra = divmod(n, size)
    lo = r * base + min(r, extra)
    return slice(lo, lo + base + (r < extra))


def close(got: object, want: object, tol: float) -> None:
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(want), strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype, (a, b)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------- defects

def case_windows() -> list[str]:
    """A sweep makes its data_parallel and sharded per run: each run's wrappers opened
    windows of their own that nothing freed (11 MB of /dev/shm a run for a 2 MB model).
    The windows are the communicator's: the same layout takes the same window run after
    run, and runs of ever new layouts keep at most _WINDOWS alive, none freed under a
    result still held."""
    comm = world.Dup()  # a registry of its own
    opened: list[_reduce.Window] = []
    real = _reduce.Reducer.open

    def counted(self: _reduce.Reducer, *args: object, **kwargs: object) -> _reduce.Window:
        opened.append(real(self, *args, **kwargs))
        return opened[-1]

    _reduce.Reducer.open = counted
    model, params, x, y = model_and_data(np.float64, 9)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    want_loss, want = vg(params, x, y)
    xb, yb = x[share(9)], y[share(9)]
    held = copy = None
    for _ in range(5):  # runs: each its own wrappers, dropped at its end
        step, zero = parallel.data_parallel(vg, comm), parallel.sharded(fd.optim.sgd(1.0), comm)
        state = zero.init(params)
        for _ in range(3):
            loss, grads = step(params, xb, yb)
            new, state = zero.step(state, vg(params, xb, yb)[1], params, examples=len(xb))
            assert abs(loss - want_loss) < 1e-12
            close(grads, want, 1e-12)
            close(new, fd.tree.map(lambda p, g: p - g, params, want), 1e-12)
        if held is None:  # kept through every later run
            held, copy = grads, fd.tree.map(np.copy, grads)
        del step, zero, state, grads, new
    if path(comm) == "shared":  # one window for data_parallel's layout, one for sharded's
        assert len(opened) == 2, f"{len(opened)} windows opened for 2 layouts"
    for k in range(3 * _reduce._WINDOWS):  # runs of ever new layouts
        step = parallel.data_parallel(lambda p, xs, k=k: (1.0, {"w": np.full(k + 2, 1.0 * rank)}),
                                      comm)
        for _ in range(2):
            assert np.all(step(None, np.ones((rank + 1, 1)))[1]["w"] == 2 / 3)
        del step
        live = sum(w.win != MPI.WIN_NULL for w in opened)
        assert live <= _reduce._WINDOWS, f"{live} windows left mapped"
        if k == _reduce._WINDOWS:  # the held result's window was kept; now let it go
            close(held, copy, 0.0)
            del held
    if path(comm) == "shared":  # then freed, by another run's reducer, for a new layout
        assert opened[0].win == MPI.WIN_NULL and len(opened) > _reduce._WINDOWS
    _reduce.Reducer.open = real
    return [f"rank {rank} path {path(comm)}"]


def case_sync_mismatch() -> list[str]:
    """One rank syncs BatchNorm's statistics, the other not: once the communicator had
    been used, the params' agreement met the grads' (one layout) and passed, then the
    ranks waited in different sums for ever; as its first call, the params' agreement met
    the other rank's split of the node, and MPI aborted (a message truncated). Also
    sync_batch_stats(fn) as a communicator's first call against a pmean."""
    model = L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(1))
    _, params, state = model.init(fd.random.key(0), (None, 2))
    vg = fd.value_and_grad(model, fd.losses.mse)
    x, y = fd.random.normal(fd.random.key(1 + rank), (4, 2)), np.ones((4, 1))
    cold, other = world.Dup(), world.Dup()
    parallel.pmean({"w": np.ones(2)})  # world warm

    def steps(comm: object) -> object:
        return parallel.data_parallel(vg, comm, sync_batch_stats=rank == 0)(
            params, x, y, state=state)

    def synced_or_mean() -> object:  # each rank's first call on ``other``
        if rank == 0:
            return parallel.sync_batch_stats(vg, other)(params, x, y, state=state)
        return parallel.pmean(vg(params, x, y, state=state)[1], other)

    report = raised({"sync-on-one": lambda: steps(world), "sync-on-one-cold": lambda: steps(cold),
                     "sync-vs-pmean-cold": synced_or_mean}, ValueError)
    return [*report, f"rank {rank} path {path()}"]


class Out(NamedTuple):
    loss: float
    hits: int


def case_types() -> list[str]:
    """What one process returns and takes, over ranks too: a NamedTuple value stays one
    (it came back a plain tuple); a batch as a list of rows of numbers, which
    value_and_grad reads, is counted by its rows (refused); a masked leaf is refused by
    broadcast on every rank (rank 1 got its data without the mask)."""
    step = parallel.data_parallel(lambda p, xs: (Out(float(xs.sum()), rank), {"g": xs.sum(0)}))
    value, grads = step(None, np.full((rank + 1, 2), 1.0))  # losses 2 and 4, weights 1 : 2
    assert type(value) is Out and value.hits == rank and abs(value.loss - 10 / 3) < 1e-12
    assert np.allclose(grads["g"], 5 / 3, rtol=1e-15)
    model, params, x, y = model_and_data(np.float64, 7)  # shares of 4 and 3 rows
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    want_loss, want = vg(params, x, y)
    for fn in (parallel.data_parallel(vg), parallel.data_parallel(vg, sync_batch_stats=True)):
        loss, grads = fn(params, x[share(7)].tolist(), y[share(7)])
        assert abs(loss - want_loss) < 1e-12
        close(grads, want, 1e-12)
    masked = {"m": np.ma.masked_array(np.full(3, 1.0 * rank), [0, 1, 0])}
    report = raised({"masked-broadcast": lambda: parallel.broadcast(masked)}, TypeError)
    return [*report, f"rank {rank} path {path()}"]


# ---------------------------------------------------------------------------- checks

def case_kept() -> list[str]:
    """A caller keeps every step's grads, then only the last (a training loop): the reused
    buffers never change a result handed out, past the window's 8 results and the 3
    private buffers kept."""
    model, params, x, y = model_and_data(np.float64, 40)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    step = parallel.data_parallel(vg)
    kept = []
    for k in range(12):
        xb, yb = x[4 * k % 40:][:3 + rank], y[4 * k % 40:][:3 + rank]
        grads = step(params, xb, yb)[1]
        kept.append((grads, fd.tree.map(np.copy, grads)))
    for grads, copy in kept:
        close(grads, copy, 0.0)
    last = None
    for k in range(12):
        grads = step(params, x[k:k + 2 + rank], y[k:k + 2 + rank])[1]
        if last is not None:
            close(last[0], last[1], 0.0)
        last = grads, fd.tree.map(np.copy, grads)
    return [f"rank {rank} path {path()}"]


def case_mixed() -> list[str]:
    """Uneven shares of a tree of float32 and float64 leaves, a NumPy scalar, a Python
    float, None and an empty node: the mean weighted by examples, each leaf its own kind
    and dtype; an empty tree of grads gives {} and the weighted loss; an int leaf is refused
    on every rank."""
    n = rank + 1  # weights 1 : 2
    tree = {"w32": np.full(3, n, np.float32), "w64": np.full((2, 2), -n, np.float64),
            "s": np.float32(2 * n), "f": 0.5 * n, "none": None, "empty": ()}
    loss, got = parallel.data_parallel(lambda p, xs: (4.0 * n, tree))(None, np.ones((n, 1)))
    mean = 5 / 3  # (1·1 + 2·2) / 3
    want = {"w32": np.full(3, mean, np.float32), "w64": np.full((2, 2), -mean),
            "s": np.float32(2 * mean), "f": 0.5 * mean, "none": None, "empty": ()}
    assert fd.tree.structure(got) == fd.tree.structure(want) and abs(loss - 4 * mean) < 1e-14
    for k in ("w32", "w64", "s", "f"):
        assert type(got[k]) is type(want[k]), k
        tol = 1e-7 if np.asarray(want[k]).dtype == np.float32 else 1e-15
        close(got[k], want[k], tol)
    loss, empty = parallel.data_parallel(lambda p, xs: (3.0 * n, {}))(None, np.ones((n, 1)))
    assert empty == {} and abs(loss - 3 * mean) < 1e-6
    report = raised({"int-leaf": lambda: parallel.pmean({"a": np.ones(2), "n": np.arange(2)})},
                    TypeError)
    return [*report, f"rank {rank} path {path()}"]


def case_comms() -> list[str]:
    """Communicators other than COMM_WORLD: one whose ranks run in reverse (its rank 0 is
    world rank 1), where every collective follows the communicator's own ranks; one of a
    single rank each, where every function is the one-process identity; and comm=None
    meaning the explicit COMM_WORLD, one reducer for both."""
    rev = world.Split(0, -rank)
    r = rev.Get_rank()
    assert r == size - 1 - rank and parallel.rank_and_size(rev) == (r, size)
    got = parallel.pmean({"a": np.arange(4.0) * (r + 1)}, rev)
    close(got, {"a": np.arange(4.0) * 1.5}, 0.0)
    close(parallel.broadcast({"a": np.full(2, 1.0 * r)}, rev, root=1), {"a": np.ones(2)}, 0.0)
    model, params, x, y = model_and_data(np.float64, 9)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    want_loss, want = vg(params, x, y)
    loss, grads = parallel.data_parallel(vg, rev)(params, x[share(9, r)], y[share(9, r)])
    assert abs(loss - want_loss) < 1e-12
    close(grads, want, 1e-12)
    zero, whole = parallel.sharded(fd.optim.adam(0.1), rev), fd.optim.adam(0.1)
    p, q, st, ws = params, params, zero.init(params), whole.init(params)
    for _ in range(3):
        xb, yb = x[share(9, r)], y[share(9, r)]
        p, st = zero.step(st, vg(p, xb, yb)[1], p, examples=len(xb))
        u, ws = whole.update(ws, vg(q, x, y)[1], q)
        q = fd.optim.apply_updates(q, u)
    close(p, q, 1e-12)
    report = raised({"rev-mismatch": lambda: parallel.pmean({"a": np.ones(3 + r)}, rev)},
                    ValueError)
    alone = world.Split(rank, 0)  # one rank each
    t = {"a": np.full(3, 1.0 * rank)}
    assert parallel.pmean(t, alone) is t and parallel.broadcast(t, alone) is t
    assert parallel.rank_and_size(alone) == (0, 1)
    assert parallel.data_parallel(lambda p, xs: (1.0, t), alone)(None, np.ones((2, 1)))[1] is t
    solo = parallel.sharded(fd.optim.sgd(1.0), alone)
    close(solo.step(solo.init(t), t, t)[0], {"a": np.zeros(3)}, 0.0)
    close(parallel.pmean(t), parallel.pmean(t, world), 0.0)
    assert _agree.resolve(None, "pmean") is world  # comm=None: the same reducer, windows
    return [*report, f"rank {rank} path {path()}"]


if __name__ == "__main__":
    case = sys.argv[1]
    assert size == 2, f"run case {case} under mpiexec -n 2, got {size} rank(s)"
    lines = globals()[f"case_{case}"]() or []
    every = world.gather([*lines, f"rank {rank} ok {case}"], root=0)
    if rank == 0:
        print("\n".join(line for report in every for line in report), flush=True)
