"""The slices of a batch as a layer inside sees them: a layer whose output mixes the
examples of its batch (BatchNorm's batch statistics) sums its per-slice sums with
``batch_sum``, so that each slice normalises by the statistics of the whole batch, as the
layer run on the whole batch does; outside any split, ``batch_sum`` gives its arrays back
untouched. Two kinds of split set the context ``batch_sum`` reads:

- BatchThreads' slices, each in its own thread as a ``member`` of the call's ``Group``: a
  sum is a rendezvous where every member deposits its arrays for that round, the first
  member adds them up in slice order (the same bits for every slice: the slices' outputs
  stay consistent), and each gets the read-only totals. A BatchThreads inside another's
  slice runs as one slice (``inside``), so its layers' sums go to the outer group. A member
  that fails releases the others (they raise ``SliceAbandoned``, and the failure's own
  error is the one reported); members that ask for different numbers of sums get a
  ValueError instead of a hang.
- a ``Replicas`` object (``replicas``), for a batch split over processes: funcdl.parallel's
  ``sync_batch_stats`` and ``data_parallel(..., sync_batch_stats=True)`` (one helper,
  ``_rank_sums.step_sums``) sum over the MPI ranks. A thread group's
  first member passes its total on to it.

``cotangent=True`` marks sums of cotangents. BatchThreads' slices receive slices of one
cotangent, but each rank of data_parallel differentiates its own mean loss, so its
cotangents are the global loss's divided by its share ``w = n_rank / N``: a replica sums
``w·a`` over the ranks and gives the total divided by this rank's ``w``, in the scale of
the cotangents that rank holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import reduce
from typing import Any

import numpy as np
from typing_extensions import Protocol

from funcdl import tree
from funcdl.layers.base import Array

__all__ = ["Group", "Replicas", "SliceAbandoned", "batch_sum", "inside", "member", "replicas"]


class SliceAbandoned(RuntimeError):
    """Raised in the slices waiting for a sum when another slice failed: that slice's
    error is the one BatchThreads reports."""


class Replicas(Protocol):
    """Sums over the parts of a batch split over processes (funcdl.parallel's ranks)."""

    def sum(self, arrays: tuple[Array, ...], cotangent: bool) -> tuple[Array, ...]: ...


class _Member:
    """One slice's place in its group, and how many sums it has asked for."""

    def __init__(self, group: Group, index: int) -> None:
        self.group, self.index, self.sums = group, index, 0

    def sum(self, arrays: tuple[Array, ...], cotangent: bool) -> tuple[Array, ...]:
        return self.group.sum(self, arrays, cotangent)


_CURRENT: ContextVar[_Member | Replicas | None] = ContextVar("funcdl_batch_split",
                                                            default=None)


class _Round:
    def __init__(self, n: int) -> None:
        self.parts: list[tuple[Array, ...] | None] = [None] * n
        self.total: tuple[Array, ...] | None = None
        self.unread = n


class Group:
    """The ``n`` slices of one call."""

    def __init__(self, n: int) -> None:
        self.n, self.parent = n, _CURRENT.get()  # (made in the caller's thread)
        self.lock = threading.Condition()
        self.rounds: dict[int, _Round] = {}
        self.ended: list[int | None] = [None] * n  # each member's count of sums at its end
        self.failed = False

    def sum(self, me: _Member, arrays: tuple[Array, ...],
            cotangent: bool) -> tuple[Array, ...]:
        with self.lock:
            k, me.sums = me.sums, me.sums + 1
            r = self.rounds.setdefault(k, _Round(self.n))
            r.parts[me.index] = arrays
            self.lock.notify_all()
            if me.index == 0:
                self._wait(k, lambda: None not in r.parts)
            else:
                self._wait(k, lambda: r.total is not None)
        if me.index == 0:  # the lock is free meanwhile: only member 0 writes the total
            _check_alike(r.parts, k)  # (member 0 failing then releases the others)
            total = tuple(np.asarray(reduce(np.add, parts))
                          for parts in zip(*r.parts, strict=True))
            if self.parent is not None:  # the split over processes, around this call
                total = self.parent.sum(total, cotangent)
            for t in total:
                t.flags.writeable = False  # one array for every slice: none may edit it
            with self.lock:
                r.total = total
                self.lock.notify_all()
        with self.lock:
            r.unread -= 1
            if not r.unread:
                del self.rounds[k]
        assert r.total is not None
        return r.total

    def _wait(self, k: int, done: Any) -> None:
        """Until ``done()``; SliceAbandoned if a member failed, a ValueError if one ended
        after fewer sums than this round's (its part will never come)."""
        def short() -> bool:
            return any(e is not None and e <= k for e in self.ended)

        self.lock.wait_for(lambda: done() or self.failed or short())
        if done():
            return
        if self.failed:
            raise SliceAbandoned("another slice of the batch failed")
        raise ValueError(f"BatchThreads: the slices asked for different numbers of batch "
                         f"sums (one ended after {min(e for e in self.ended if e is not None)}, "
                         f"this one asks for sum number {k + 1}): a layer inside took "
                         f"another path in some slice; BatchThreads needs the same layers to "
                         f"run in every slice")

    def end(self, me: _Member, failed: bool) -> None:
        with self.lock:
            self.ended[me.index] = me.sums
            self.failed = self.failed or failed
            self.lock.notify_all()


def _check_alike(parts: list[Any], k: int) -> None:
    """A ValueError unless every slice passed arrays of the first's shapes (NumPy would
    broadcast a (1,) against a (3,), or zip drop an array), named by ``tree.check_same``."""
    shapes = [np.shape(a) for a in parts[0]]
    for i, p in enumerate(parts[1:], 1):
        if len(p) != len(shapes) or [np.shape(a) for a in p] != shapes:  # walk, to name it
            try:
                tree.check_same(parts[0], p, ("the first slice", f"slice {i}"), shapes=True)
            except ValueError as e:
                raise ValueError(f"BatchThreads: the slices passed different arrays to batch "
                                 f"sum number {k + 1}: {e}; every slice must sum the same "
                                 f"per-batch statistics (a layer took another path in some "
                                 f"slice)") from None


@contextmanager
def member(group: Group | None, index: int) -> Iterator[None]:
    """Run the body as slice ``index`` of ``group`` (None: a call of one slice)."""
    if group is None:
        yield
        return
    me = _Member(group, index)
    token = _CURRENT.set(me)
    try:
        yield
    except BaseException:
        group.end(me, failed=True)
        raise
    else:
        group.end(me, failed=False)
    finally:
        _CURRENT.reset(token)


@contextmanager
def replicas(r: Replicas) -> Iterator[None]:
    """Run the body with its batch sums taken by ``r`` (over processes)."""
    token = _CURRENT.set(r)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def inside() -> bool:
    """Whether this thread runs a slice of a BatchThreads call."""
    return isinstance(_CURRENT.get(), _Member)


def batch_sum(*arrays: Array, cotangent: bool = False) -> tuple[Array, ...]:
    """Each array summed over the parts of a split batch (``jax.lax.psum`` over a named
    axis): over BatchThreads' slices, and over the ranks of ``parallel.sync_batch_stats``
    and ``data_parallel(..., sync_batch_stats=True)``; the arrays themselves outside any
    split. The totals are read only and the same in every part. A layer that mixes the
    examples of its batch calls it on its per-batch sums (BatchNorm: its entry count with
    Σx, then Σ(x - μ)²; in the pullback Σdy, Σdy·x̂ with ``cotangent=True``, which scales them for
    the ranks, each differentiating its own mean loss) and keeps its params' grads its
    part's own: the parts' grads are summed after. Every part must ask for the same sums,
    in the same order, with arrays of the same shapes (a ValueError otherwise, in
    threads)."""
    me = _CURRENT.get()
    return arrays if me is None else me.sum(arrays, cotangent)
