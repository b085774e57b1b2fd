"""Run by tests/test_parallel_sharded.py as
``mpiexec -n K python -m mpi4py check_sharded.py CASE``: parallel.sharded over K ranks.

Each rank checks its own results; rank 0 prints every rank's report lines (``rank R ok
CASE``), gathered so that the output cannot interleave. A failed assertion aborts every
rank (``-m mpi4py``).
"""

from __future__ import annotations

import sys

import numpy as np
from check_parallel import global_batches, model_and_data, raised

import funcdl as fd
from funcdl import parallel

rank, size = parallel.rank_and_size()
OPTIMIZERS = {
    "sgd": lambda: fd.optim.sgd(0.1),
    "momentum": lambda: fd.optim.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: fd.optim.adam(1e-2),
    "adamw": lambda: fd.optim.adamw(fd.optim.linear_schedule(1e-2, 1e-3, 5),
                                    weight_decay=0.1),
}


def equivalence(dtype: type, n: int, batch: int, tol: float) -> None:
    """Two epochs of sharded steps against a whole optimizer in one process on the same
    global batches, for every optimizer; the reference runs on every rank."""
    model, params, x, y = model_and_data(dtype, n)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    keys = [fd.random.fold_in(fd.random.key(3), e) for e in range(2)]
    for name, make in OPTIMIZERS.items():
        opt, zero = make(), parallel.sharded(make())
        ref, ref_state = params, opt.init(params)
        for k in keys:
            for xb, yb in global_batches(k, x, y, batch):
                _, g = vg(ref, xb, yb)
                u, ref_state = opt.update(ref_state, g, ref)
                ref = fd.optim.apply_updates(ref, u)
        got, state = params, zero.init(params)
        held = None
        for k in keys:
            for xb, yb in parallel.batches(k, x, y, batch_size=batch, rank=rank, size=size):
                _, g = vg(got, xb, yb)
                got, state = zero.step(state, g, got, examples=len(xb))
                if held is None:  # the params after step 1, kept: no later step may touch them
                    held, copy = got, fd.tree.map(np.copy, got)
        assert int(state.count) == int(ref_state.count) > 0
        for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(ref)):
            assert a.dtype == dtype and not a.flags.writeable, (a.dtype, a.flags)
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
        for a, b in zip(fd.tree.leaves(held), fd.tree.leaves(copy)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: held params were overwritten")


def case_equivalence() -> list[str]:
    equivalence(np.float32, 96, 24, 1e-5)     # 12 examples per rank
    equivalence(np.float64, 96, 24, 1e-12)
    equivalence(np.float64, 90, 25, 1e-12)    # uneven shares, weighted by examples=
    return [f"rank {rank} path {path_taken()}"]


def path_taken() -> str:
    """Which way the last sharded step of a fresh optimizer went."""
    zero = parallel.sharded(fd.optim.sgd(0.1))
    p = {"w": np.full(7, 1.0 + rank)}
    state = zero.init(p)
    got, _ = zero.step(state, {"w": np.full(7, float(rank))}, {"w": np.ones(7)})
    assert np.allclose(got["w"], 1.0 - 0.1 * (size - 1) / 2), got
    # shared: views of the window every rank reads, not of a buffer of this process's own
    return "messages" if got["w"].base.flags.owndata else "shared"


def case_mismatch() -> list[str]:
    """Each call below must raise on every rank; none may hang."""
    from mpi4py import MPI
    zero = parallel.sharded(fd.optim.sgd(0.1))
    p = {"w": np.ones((4, 2)), "b": np.zeros(2)}
    state = zero.init(p)
    odd = {"w": np.ones((4 + rank, 2)), "b": np.zeros(2)}
    adam = parallel.sharded(fd.optim.adam(0.1))
    adam_alone = parallel.sharded(fd.optim.adam(0.1), comm=MPI.COMM_SELF)
    calls = {
        "shape": lambda: zero.step(zero.init(odd), odd, odd),
        "state": lambda: zero.step(state if rank else fd.tree.map(np.copy, state)._replace(
            span=np.array([0, 10, 10])), p, p),
        "grads-params": lambda: zero.step(state, {"w": np.ones((2, 4)), "b": np.zeros(2)}, p),
        # another entry count: the state (made for p) fits neither, but the grads are at fault
        "grads-params-size": lambda: zero.step(state, {"w": np.ones((3, 1)), "b": np.zeros(2)},
                                               p),
        "int-on-one": lambda: zero.step(state, {"w": np.ones((4, 2), (float, int)[rank]),
                                                "b": np.zeros(2)}, p),
        # weights 1 : 4 if None counted as one example
        "count-on-one": lambda: zero.step(state, p, p, examples=(None, 4)[rank]),
        # a one-process state of a stateful optimizer: the cut's error, not adam's shapes
        "state-adam": lambda: adam.step(adam_alone.init(p), p, p),
    }
    report = raised(calls, ValueError)
    ints = {"w": np.ones((4, 2), int), "b": np.zeros(2)}
    report += raised({"int-on-all": lambda: zero.step(state, ints, p)}, TypeError)
    # a count that is no count, on one rank: that rank's own error, the agreement's elsewhere
    calls = {name: lambda bad=bad: zero.step(state, p, p, examples=(4, bad)[rank])
             for name, bad in (("negative-count", -1), ("float-count", 2.0),
                               ("huge-count", 2**62))}
    # the whole optimizer's state on one rank: that rank's TypeError, the agreement's elsewhere
    whole = fd.optim.sgd(0.1).init(p)
    calls["whole-state-on-one"] = lambda: zero.step((state, whole)[rank], p, p)
    # a ShardedState whose inner part is another optimizer's, or made for other params: the
    # inner update raised on that rank between the sum and the gather, the other waited
    mom = parallel.sharded(fd.optim.sgd(0.1, momentum=0.9))
    m_state = mom.init(p)
    other_inner = m_state._replace(inner=zero.init(p).inner)
    small_inner = m_state._replace(inner=mom.init({"w": np.ones(3)}).inner)
    calls["other-inner-on-one"] = lambda: mom.step((m_state, other_inner)[rank], p, p)
    calls["small-inner-on-one"] = lambda: mom.step((m_state, small_inner)[rank], p, p)
    # rank 0's own bad state, rank 1's bad count: each rank names its own fault first
    calls["state-and-count"] = lambda: zero.step((whole, state)[rank], p, p,
                                                 examples=(4, 2.5)[rank])
    for name, call in calls.items():
        try:
            call()
        except (TypeError, ValueError) as err:
            report.append(f"rank {rank} {name} {type(err).__name__}: {err}")
        else:
            raise AssertionError(f"{name} did not raise")
    got, _ = zero.step(state, p, p)  # still usable after the errors
    assert np.allclose(got["w"], 0.9)
    return report


if __name__ == "__main__":
    from mpi4py import MPI

    lines = globals()[f"case_{sys.argv[1]}"]() or []
    every = MPI.COMM_WORLD.gather([*lines, f"rank {rank} ok {sys.argv[1]}"], root=0)
    if rank == 0:
        print("\n".join(line for report in every for line in report), flush=True)
