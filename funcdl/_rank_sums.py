"""BatchNorm's batch statistics summed over MPI ranks: ``sync_batch_stats`` (public as
``parallel.sync_batch_stats``, and under ``parallel.data_parallel(...,
sync_batch_stats=True)``), on the ``Replicas`` of ``funcdl.layers._slices`` over a
communicator (PyTorch's SyncBatchNorm, Flax's BatchNorm with ``axis_name``).

Each sum is one ``Allgather`` of the arrays packed as float64, added up in rank order on
every rank, so every rank gets the same bits (an ``Allreduce`` need not: MPI may add in
another order on each rank) and the ranks' running statistics stay equal. Sums of
cotangents are weighted by this rank's ``share`` of the examples (see ``_slices``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from funcdl._agree import agree
from funcdl._agree import resolve as _resolve
from funcdl._examples import count
from funcdl._reduce import Reducer, shared_node
from funcdl.layers._slices import replicas

__all__ = ["RankSums", "examples", "step_sums", "sync_batch_stats"]

F = TypeVar("F", bound=Callable[..., Any])


def step_sums(comm: Any, reducer: Reducer, params: Any, n: int, fn: str) -> RankSums:
    """The ``RankSums`` of one step of ``parallel.<fn>`` on ``n`` examples of this rank: the
    ranks first agree on the params (differing BatchNorms would exchange misaligned
    statistics, or fail inside MPI; the layout is one walk and a hash once seen) and learn
    each other's counts, hence this rank's share."""
    # the node's split first, as every collective here makes it: a communicator's first
    # call, meeting another rank's first pmean (which splits), met it in the split and
    # MPI aborted, instead of both meeting in the agreement, which raises
    shared_node(comm)
    every = agree(comm, reducer.layout(params)[1].digest, params, fn, weight=n)
    total = sum(row[2] for row in every)
    return RankSums(comm, n / total if total else 1.0)


class RankSums:
    """Sums over the ranks of ``comm`` for one call of a data-parallel step, this rank
    holding ``share`` of the global batch's examples."""

    def __init__(self, comm: Any, share: float) -> None:
        self.comm, self.share = comm, share

    def sum(self, arrays: tuple[NDArray[Any], ...],
            cotangent: bool) -> tuple[NDArray[Any], ...]:
        # packed by hand, not by tree.ravel: its checks of every leaf (masked, foreign,
        # dtype kind) would cost more than the packing, at three sums per BatchNorm and
        # step, for arrays BatchNorm made itself
        flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
        # (a rank without examples has no cotangent to scale)
        w = self.share if cotangent and self.share else 1.0
        if w != 1.0:
            flat *= w
        every = np.empty((self.comm.Get_size(), flat.size), np.float64)
        self.comm.Allgather(flat, every)
        total = np.add.reduce(every, axis=0)  # in rank order: the same on every rank
        if w != 1.0:
            total /= w
        out, i = [], 0
        for a in arrays:
            t = total[i:i + a.size].reshape(a.shape).astype(a.dtype)
            t.flags.writeable = False
            out.append(t)
            i += a.size
        return tuple(out)


def sync_batch_stats(value_and_grad_fn: F, comm: Any = None) -> F:
    """``value_and_grad_fn`` with BatchNorm's batch statistics summed over the ranks
    (PyTorch's ``SyncBatchNorm``), its value and grads left this rank's own: the step for
    ``sharded``, which averages the grads itself (pass it ``examples=`` for uneven shares),
    or for a script that averages them by hand. ``data_parallel(fn, sync_batch_stats=True)``
    gives what ``data_parallel`` around it gives, with one agreement a step instead of two
    (both through ``step_sums``); see there for the exchanges and the agreement on the
    params at each call, a collective. One process: ``value_and_grad_fn`` itself, after the
    same check that ``x`` has examples to count.

    Example::

        opt = parallel.sharded(fd.optim.adam(1e-3))
        step = parallel.sync_batch_stats(fd.value_and_grad(model, loss))
        (loss, state), grads = step(params, xb, yb, state=state)   # state equal on all ranks
        params, ostate = opt.step(ostate, grads, params, examples=len(xb))
    """
    if not callable(value_and_grad_fn):
        raise TypeError(f"parallel.sync_batch_stats: value_and_grad_fn must be callable, such "
                        f"as fd.value_and_grad(model, loss), got "
                        f"{type(value_and_grad_fn).__name__}")
    if comm is not None:  # now, not at the first step
        _resolve(comm, "sync_batch_stats")
    reducer = Reducer()

    def f(params: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        c = _resolve(comm, "sync_batch_stats")
        n = examples(x, "sync_batch_stats")
        if c is None:
            return value_and_grad_fn(params, x, *args, **kwargs)
        with replicas(step_sums(c, reducer, params, n, "sync_batch_stats")):
            return value_and_grad_fn(params, x, *args, **kwargs)

    return cast(F, functools.update_wrapper(f, value_and_grad_fn))


def examples(x: Any, fn: str) -> int:
    """The number of examples in ``x``, the length of its first leaf; or of ``x`` itself
    when it is a list of rows of numbers, which value_and_grad reads as a batch (it was
    refused, the wrapped function taking it)."""
    n = count(x)
    if n is None:
        raise TypeError(f"parallel.{fn}: cannot count the examples of x: pass the batch with "
                        f"examples on axis 0 of its (first) array")
    return n
