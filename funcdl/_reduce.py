"""Means over MPI ranks, for ``funcdl.parallel``: the buffers a mean packs into, kept from
call to call (each collective opens with ``funcdl._agree``'s check).

When every rank runs on one machine (the usual ``mpiexec -n k``), a mean goes through memory
the ranks share, an MPI-3 shared window: each rank writes its scaled leaves into its own
slot, then sums its 1/k of all slots into a result that every rank reads in place. Each
byte is written once and read k times; MPICH's ``Allreduce`` on one machine copies it
through its shared-memory queues several times. Alone and warm the two cost about the
same; inside the sharded step, after the forward and backward, the window took 0.58-1.03
ms against 1.94 by messages for the mlp's 2.68 MB (benchmarks/results/data_parallel.md,
docs/scale-out.md). A window keeps up to 8 sets of slots and 8 results and takes them in
turn (see ``generations``: the mlp's window is 64 MB of /dev/shm), or one set and two
results when that is all that fits; a communicator keeps up to 8 windows, which all its
reducers share (``_SHARED``). Across machines, or when
even that window would be large against the free shared memory, or with
FUNCDL_MPI_SHARED_MEMORY=0 in the environment, one ``Allreduce`` of a private buffer.
"""

from __future__ import annotations

import functools
import operator
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from funcdl import tree as pytree
from funcdl._agree import NOT_AN_INT, agree, describe, digest, mpi, signature
from funcdl._flat_buffer import Layout, as_tree, ravel
from funcdl._locks import ForkSafeLock

Tree = Any
Comm = Any

SWITCH = "FUNCDL_MPI_SHARED_MEMORY"  # "0": always Allreduce (read once per communicator)
# Shared results and slot sets per window, taken in turn. A core that writes memory another
# core still caches waits until that copy is invalidated: when the two cores share no cache
# (this VM's two vCPUs at times, or two dies of an AMD EPYC), 0.35-0.5 ms per 1.34 MB
# against 0.06-0.1 when they do. With ~64 MB of buffers in turn the other core's caches have
# dropped a buffer before it comes back: 0.09-0.15 ms in either state (benchmarks/handoff.py).
_ROTATE = 64 << 20  # bytes of results (or of slot sets) a window takes in turn
_MOST = 8  # generations at most; at least 2: the last grads may stay bound through a step
_SMALL = 1 << 16  # entries: below, packing copies all leaves first and scales once
_BUFFER_SIZES = 16  # buffer sizes kept per reducer, as memo keeps layouts
# id(comm): (comm, its node communicator or None), for every reducer of the process
_NODES: dict[int, tuple[Any, Any]] = {}
# id(comm): (its shared windows, the turns taken with each), as _NODES, for every reducer
# over comm. A window is freed only where the ranks agree that none holds a result of it
# (``open``), never with its reducer: a data_parallel or sharded made per run (a sweep's)
# left its windows mapped for the life of the process (11 MB of /dev/shm a run, 2 MB model).
_SHARED: dict[int, tuple[dict[Any, Window], dict[Any, int]]] = {}
# Guards _NODES and _SHARED: threads of a rank make their first means on communicators of
# their own at once (pmean's docstring), each dropping the freed ones. Never held across a
# collective (the split), which would make ranks wait on each other's threads.
_NODES_LOCK = ForkSafeLock()
_WINDOWS = 8  # windows kept per communicator (one per tree layout); the oldest is freed for
# a new one only when no rank holds any of its results (else the new layout goes by Allreduce)


# ---------------------------------------------------------------------------- buffers

def refcount(items: list[Any], i: int) -> int:
    return sys.getrefcount(items[i])


# The count of an array held by one list and nothing else, measured through the same path.
UNUSED = refcount([np.empty(0)], 0)


def unused(window: Any) -> list[bool]:
    """For each result of a window: whether no array from it is alive on this rank."""
    return [refcount(window.results, g) <= UNUSED for g in range(len(window.results))]


def shared_memory_free() -> int:
    """Bytes free where MPICH maps shared windows on Linux; a modest guess elsewhere."""
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return 1 << 30
    return st.f_bavail * st.f_frsize


def _freed(comm: Any) -> bool:
    """Whether a caller freed ``comm`` (mpi4py makes the object MPI.COMM_NULL)."""
    try:
        return bool(comm == mpi().COMM_NULL)
    except Exception:  # a stub communicator in a test: never freed
        return False


def span(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s part ``[lo, hi)`` of ``n`` entries: ⌈n/size⌉ each, the last ones
    shorter or empty."""
    m = -(-n // size)
    return min(rank * m, n), min((rank + 1) * m, n)


def refusal(fn: str, lay: Layout) -> TypeError:
    """The error for a mean of a tree with a leaf that is not floating-point, or masked."""
    return TypeError(f"parallel.{fn}: the leaf at {lay.refused}; means are taken over "
                     f"floating-point trees (gradients) only")


def generations(nbytes: int, rotate: bool) -> tuple[int, int]:
    """``(results, slot sets)`` of a window of ``nbytes`` per buffer: taken in turn when
    ``rotate``, else two results (the last grads may stay bound through a step), one set."""
    gens = max(2, min(_MOST, -(-_ROTATE // max(nbytes, 1)))) if rotate else 2
    return gens, 1 if gens == 2 else gens


class Window(NamedTuple):
    """A shared window: slot sets (one slot per rank in each) and results in rank 0's part,
    as many as ``generations`` says, taken in turn (a result only when free).
    Every array is made by its own ``frombuffer``, so views of a result keep a reference
    to that result array itself, and its reference count tells whether any is alive.
    Slots are indexed by rank in the communicator: its shared-memory split keeps the order
    (all keys equal)."""
    win: Any
    slots: list[NDArray[Any]]  # this turn's set: one of sets
    sets: list[list[NDArray[Any]]]
    results: list[NDArray[Any]]
    lo: int  # this rank sums results[g][lo:hi]
    hi: int


T = TypeVar("T")


def memo(table: dict[Any, T], key: Any, make: Callable[[], T]) -> T:
    """``table[key]``, made by ``make()`` when missing; a table of 16 entries starts afresh
    (a sweep over many model shapes would otherwise grow it without end)."""
    found = table.get(key)
    if found is None:
        if len(table) >= 16:
            table.clear()
        found = table[key] = make()
    return found


def shared_node(comm: Comm) -> Comm | None:
    """Collective on first use: the communicator of comm's ranks sharing memory, when
    that is all of them; else None. One per communicator for the whole process, every
    reducer's (a data_parallel made per run split COMM_WORLD anew each time, and MPI ran
    out of communicators after about a thousand), as its windows in _SHARED are; one a
    caller has freed is dropped, and its node communicator freed, at the next split
    (collective as the split is; its windows stay mapped, as freeing them is too)."""
    found = _NODES.get(id(comm))
    if found is None or found[0] is not comm:
        with _NODES_LOCK:  # each freed entry dropped, and its node freed, by one thread
            gone = [(key, stale) for key, (parent, stale) in list(_NODES.items())
                    if _freed(parent)]
            for key, _ in gone:
                del _NODES[key]
                _SHARED.pop(key, None)
        for _, stale in gone:
            if stale is not None:
                stale.Free()
        node = None
        if hasattr(comm, "Split_type") and os.environ.get(SWITCH, "1") != "0":
            node = comm.Split_type(mpi().COMM_TYPE_SHARED)
            if node.Get_size() != comm.Get_size():
                node.Free()
                node = None
        with _NODES_LOCK:
            found = _NODES[id(comm)] = (comm, node)
            _SHARED[id(comm)] = ({}, {})
    return found[1]


class Reducer:
    """Layouts and private buffers for means over ranks, and the shared windows of the
    communicator (in _SHARED: every reducer over it takes the same ones).

    A result is read-only views of a buffer. A buffer (or a shared result) is handed out
    again only when no array from an earlier result is alive on any rank; NumPy views hold
    a reference to the array they view, so its reference count tells. In the usual loop
    (the last grads still bound during the next step) private buffers alternate and a
    shared window's results are taken in turn: no allocation after the first steps, and
    no result ever changes.
    """

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self.layouts: dict[Any, Layout] = {}
        self.buffers: dict[tuple[int, str], list[NDArray[Any]]] = {}
        # the communicator's windows and turns (_SHARED), bound by each negotiate
        self.windows: dict[tuple[int, int, str], Window] = {}
        self.turns: dict[tuple[int, int, str], int] = {}

    def layout(self, t: Tree) -> tuple[list[Any], Layout]:
        """``t``'s leaves and its layout, found by one walk and one hash when seen before."""
        leaves, key = signature(t)
        return leaves, memo(self.layouts, key, lambda: self.new_layout(t, leaves))

    @staticmethod
    def new_layout(t: Tree, leaves: list[Any]) -> Layout:
        """``t``'s layout from its ``leaves``: the entries' bounds, the dtype ravel gives,
        the digest the ranks compare and the first leaf that cannot be summed."""
        arrays = [np.asarray(x) for x in leaves]
        bounds = np.cumsum([0] + [a.size for a in arrays]).tolist()
        odd, masked = pytree.odd_leaf(t, "fc"), pytree.masked_leaf(t)
        refused = (f"{masked or 'the root'} is a masked array, whose mask the sum would "
                   f"drop (pass a.filled(0))" if masked is not None else
                   None if odd is None else f"{odd[0] or 'the root'} has dtype {odd[1]}")
        # tree.ravel's dtype (refusing strings would skip the agreement on this rank)
        dtype = (np.result_type(*[a.dtype for a in arrays]) if arrays and all(
            a.dtype.kind in "biufc" for a in arrays) else np.dtype(np.float32))
        return Layout(digest(describe(t)), dtype, bounds,
                      [(a.shape, a.dtype) for a in arrays], refused)

    def take(self, n: int, dtype: np.dtype[Any]) -> NDArray[Any]:
        if (n, dtype.str) not in self.buffers and len(self.buffers) >= _BUFFER_SIZES:
            self.buffers.clear()  # many tree sizes (a sweep of shapes): a kept result holds
            # its own buffer still, and a dropped one is never handed out again
        pool = self.buffers.setdefault((n, dtype.str), [])
        for i in range(len(pool)):
            if refcount(pool, i) <= UNUSED:
                return pool[i]
        buf = np.empty(n, dtype)
        if len(pool) < self.keep:
            pool.append(buf)
        return buf

    def oldest_unused(self) -> bool:
        """Whether no array from the oldest window's results is alive on this rank: only
        then may ``open`` free it (a kept result would change, or its memory vanish). The
        ranks agree on it in ``negotiate``, as every rank must free it or none."""
        return all(unused(next(iter(self.windows.values()))))

    def open(self, comm: Comm, node: Comm, n: int, dtype: np.dtype[Any],
             rotate: bool) -> Window:
        """Collective over ``node``: a shared window for means of ``n`` entries."""
        if len(self.windows) >= _WINDOWS:
            old = next(iter(self.windows))
            self.windows.pop(old).win.Free()
            self.turns.pop(old, None)
        size, rank, item = node.Get_size(), node.Get_rank(), dtype.itemsize
        gens, sets = generations(n * item, rotate)
        mine = n * (sets + (gens if rank == 0 else 0))
        win = mpi().Win.Allocate_shared(mine * item, item, comm=node)
        parts = [win.Shared_query(r)[0] for r in range(size)]
        results = [np.frombuffer(parts[0], dtype, count=n, offset=(sets + g) * n * item)
                   for g in range(gens)]
        slot_sets = [[np.frombuffer(p, dtype, count=n, offset=k * n * item) for p in parts]
                     for k in range(sets)]
        window = Window(win, slot_sets[0], slot_sets, results, *span(n, size, rank))
        self.windows[(id(comm), n, dtype.str)] = window
        return window

    def negotiate(self, comm: Comm, n: int, dtype: np.dtype[Any], tree_digest: int, t: Tree,
                  fn: str, weight: int, ok: bool = True
                  ) -> tuple[float, Window | None, NDArray[Any] | None, list[int]]:
        """Collective, opening every mean and sharded step over ``n`` entries: check that
        the trees agree (else every rank raises alike, in ``agree``), sum the weights, and
        pick the way. Returns ``(weight / Σ weights, window, result, ranks not ok)``: the
        shared window and one of its results unused on every rank, or ``(None, None)`` to
        go by messages. ``weight`` -1 stands for no count (equal weights), on every
        rank or on none; NOT_AN_INT for a bad count, which every rank raises. ``ok=False``
        on any rank (its caller's check failed) opens no window; the caller raises, on
        every rank alike."""
        node = shared_node(comm)
        self.windows, self.turns = _SHARED[id(comm)]
        key = (id(comm), n, dtype.str)
        window = self.windows.get(key) if node else None
        # flags: bit 0, ok; bit 1, a shared window exists or fits; bit 2, one with buffers
        # taken in turn fits; bit 3 + g, result g unused
        if window is not None:
            flags = 2 + sum(8 << g for g, free in enumerate(unused(window)) if free)
        elif node is not None and (len(self.windows) < _WINDOWS or self.oldest_unused()):
            free, size, item = shared_memory_free() // 4, comm.Get_size(), dtype.itemsize
            flags = sum(bit for bit, (gens, k) in ((2, generations(n * item, False)),
                                                   (4, generations(n * item, True)))
                        if 0 < n * item * (size * k + gens) <= free)
        else:
            flags = 0
        every = agree(comm, tree_digest, t, fn, weight=weight, flags=flags | int(ok))
        weights = [row[2] for row in every]
        if NOT_AN_INT in weights:  # that rank's caller raises its own, more precise error
            raise ValueError(
                f"parallel.{fn}: rank(s) {[r for r, w in enumerate(weights) if w == NOT_AN_INT]}"
                f" gave an examples= that is no example count; give each rank's number of "
                f"examples, len(x), as an int")
        bad = [r for r, row in enumerate(every) if not row[3] & 1]
        if bad:
            return 0.0, None, None, bad
        if min(weights) < 0 <= max(weights):  # -1: no count given; a mix would weigh 1:n
            raise ValueError(
                f"parallel.{fn}: the ranks {[r for r, w in enumerate(weights) if w < 0]} "
                f"gave no example count, the others did "
                f"({[w if w >= 0 else None for w in weights]}); give examples= on "
                f"every rank or on none")
        if weight < 0:  # on every rank: equal weights
            weight, weights = 1, [1] * len(weights)
        total = sum(weights)
        if total <= 0:
            raise ValueError(f"parallel.{fn}: no rank had any examples; give every step "
                             f"at least one example")
        common = functools.reduce(operator.and_, [row[3] for row in every])
        if common & 2 and window is None and node is not None:
            window = self.open(comm, node, n, dtype, rotate=bool(common & 4))
            common = (8 << len(window.results)) - 1
        free = common >> 3 if common & 2 else 0
        if window is None or not free:
            return weight / total, None, None, []
        # the first result free from this turn on, and the next slot set: the same choice
        # on every rank, as every rank saw the same flags and took the same turns
        turn, gens = self.turns.get(key, 0), len(window.results)
        ahead = (free >> turn | free << (gens - turn)) & ((1 << gens) - 1)
        g = (turn + (ahead & -ahead).bit_length() - 1) % gens
        self.turns[key] = (g + 1) % gens
        if len(window.sets) > 1:
            window = window._replace(slots=window.sets[g])
        return weight / total, window, window.results[g], []

    def mean(self, comm: Comm, t: Tree, fn: str, weight: int,
             scalars: tuple[float, ...] = ()) -> tuple[Tree, list[float], float]:
        """Collective: ``Σ_r w_r t_r / Σ_r w_r`` over ranks, the same for each of
        ``scalars``, and this rank's share ``w_r / Σ w``. The weights travel with the layout
        check, so each rank scales its leaves by its share while packing them, and one sum
        finishes."""
        leaves, lay = self.layout(t)
        n = lay.bounds[-1] + len(scalars)
        scale, window, buf, bad = self.negotiate(comm, n, lay.dtype, lay.digest, t, fn,
                                                 weight, ok=lay.refused is None)
        if bad:  # the same dtypes everywhere (agree compared them), so every rank is here
            raise refusal(fn, lay)
        if window is not None and buf is not None:
            self.pack(leaves, lay, scalars, scale, window.slots[comm.Get_rank()])
            window.win.Fence()  # every slot written
            lo, hi = window.lo, window.hi
            np.add(window.slots[0][lo:hi], window.slots[1][lo:hi], out=buf[lo:hi])
            for other in window.slots[2:]:
                np.add(buf[lo:hi], other[lo:hi], out=buf[lo:hi])
            window.win.Fence()  # every part of the result summed; the slots free again
        else:
            buf = self.take(n, lay.dtype)
            self.pack(leaves, lay, scalars, scale, buf)
            comm.Allreduce(mpi().IN_PLACE, buf, op=mpi().SUM)
        return as_tree(buf, lay, t), buf[lay.bounds[-1]:].tolist(), scale

    @staticmethod
    def pack(leaves: list[Any], lay: Layout, scalars: tuple[float, ...], scale: float,
             buf: NDArray[Any]) -> None:
        """``buf = scale · (leaves, flattened end to end; then scalars)``."""
        n = lay.bounds[-1]
        if scale == 0:  # a rank without examples adds nothing: not 0·NaN, an empty mean's
            buf[:n + len(scalars)] = 0
            return
        flat = [ravel(x) for x in leaves]
        if n < _SMALL and flat:  # two C calls in all (a small model's 6 leaves: 14 -> 3 µs)
            head = buf[:n]
            np.concatenate(flat, out=head)
            np.multiply(head, scale, out=head)
        else:  # one pass over memory
            for x, lo, hi in zip(flat, lay.bounds, lay.bounds[1:]):
                np.multiply(x, scale, out=buf[lo:hi])
        buf[n:] = [scale * s for s in scalars]
