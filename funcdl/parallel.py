"""Data-parallel training over MPI (mpi4py): every rank runs the same script on its share of
each global batch, and the gradients are averaged with one ``Allreduce`` before the update,
so the params stay equal on every rank.

    mpiexec -n 4 python -m mpi4py train.py      # -m mpi4py: one rank's error stops them all

* ``comm=None`` means ``MPI.COMM_WORLD`` when mpi4py is installed, and a single process
  otherwise. With one process every function here returns its input (``batches`` gives the
  whole batch) and touches no MPI; ``import funcdl`` and ``from funcdl import parallel``
  never import mpi4py.
* ``broadcast``, ``pmean`` and ``data_parallel``'s function are collectives: every rank calls
  them, in the same order. Each first compares an 8-byte digest of the tree's structure,
  shapes and dtypes across ranks, so a rank whose tree differs makes every rank raise the
  same ValueError, naming the first differing path, instead of hanging or averaging
  misaligned numbers.
* ``pmean`` is the plain mean over ranks; ``data_parallel`` weights each rank by its number
  of examples, so uneven shards (a global batch not divisible by the rank count) still give
  the gradient of the global batch's mean loss. See ``examples/disk_data_parallel.py``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from funcdl import random
from funcdl import tree as pytree
from funcdl.random import Key

__all__ = ["batches", "broadcast", "data_parallel", "pmean", "rank_and_size"]

Tree = Any
Comm = Any
"""An mpi4py communicator (``mpi4py.MPI.Comm``); typed loosely so mpi4py stays optional."""

F = TypeVar("F", bound=Callable[..., Any])

# Set by MPI launchers (MPICH/Intel MPI/Slurm PMI, Open MPI, MVAPICH) in every rank.
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


# ---------------------------------------------------------------------------- communicators

def _mpi() -> Any:
    return importlib.import_module("mpi4py.MPI")


@functools.cache
def _world() -> Comm | None:
    """MPI.COMM_WORLD, or None when mpi4py cannot be imported and no launcher started us."""
    try:
        return _mpi().COMM_WORLD
    except (ImportError, RuntimeError) as err:  # no mpi4py, or no MPI library for it
        sizes = [os.environ.get(v, "").strip() for v in _LAUNCHER_SIZES]
        launched = max([int(s) for s in sizes if s.isdigit()], default=1)
        if launched > 1:
            raise ValueError(
                f"this process is one of {launched} MPI ranks, but mpi4py cannot be imported "
                f"({err}), so the ranks cannot communicate: pip install 'funcdl[mpi]' (mpi4py "
                f"and an MPI runtime), or run a single process without mpiexec") from err
        return None


def _resolve(comm: Comm | None, fn: str) -> Comm | None:
    """The communicator to talk over, or None when this process is the only rank."""
    if comm is None:
        try:
            comm = _world()
        except ValueError as err:
            raise ValueError(f"parallel.{fn}: {err}") from err.__cause__
        if comm is None:
            return None
    elif not all(hasattr(comm, m) for m in ("Get_size", "Get_rank", "Allreduce", "Allgather")):
        raise TypeError(f"parallel.{fn}: comm must be an mpi4py communicator such as "
                        f"MPI.COMM_WORLD (or None for it), got {type(comm).__name__}")
    return comm if comm.Get_size() > 1 else None


def rank_and_size(comm: Comm | None = None) -> tuple[int, int]:
    """``(rank, size)`` of this process in ``comm``; ``(0, 1)`` for a single process."""
    c = _resolve(comm, "rank_and_size")
    return (0, 1) if c is None else (int(c.Get_rank()), int(c.Get_size()))


# ---------------------------------------------------------------------------- agreement

def _describe(t: Tree) -> list[tuple[str, str]]:
    """``(path, description)`` of every node in preorder. Two trees first differ at their
    first differing entry, and up to it their paths agree, so that path names the place."""
    leaves = iter(pytree.leaves(t))
    out: list[tuple[str, str]] = []

    def go(td: pytree.TreeDef, path: str) -> None:
        n, steps = len(td.children), [f"[{i}]" for i in range(len(td.children))]
        if td.kind == "leaf":
            a = np.asarray(next(leaves))
            what = f"a leaf of shape {a.shape} and dtype {a.dtype}"
        elif td.kind == "dict":
            what, steps = f"a dict with keys {list(td.meta)}", [f"[{k!r}]" for k in td.meta]
        elif td.kind == "namedtuple":
            what, steps = f"a {td.meta.__name__}", [f".{f}" for f in td.meta._fields]
        else:
            what = "None" if td.kind == "none" else f"a {td.kind} of length {n}"
        out.append((path, what))
        for child, step in zip(td.children, steps):
            go(child, path + step)

    go(pytree.structure(t), "")
    return out


def _digest(entries: list[tuple[str, str]]) -> int:
    h = hashlib.blake2b(repr(entries).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little", signed=True)


def _agree(comm: Comm, digest: int, t: Tree, fn: str, root: int = 0,
           weight: int = 0) -> NDArray[np.int64]:
    """Collective: compare ``(digest, root)`` over ranks, and return every rank's
    ``weight``. On any difference every rank raises the same ValueError (the descriptions
    are gathered only then)."""
    size = comm.Get_size()
    every = np.empty((size, 3), np.int64)
    comm.Allgather(np.array([digest, root, weight], np.int64), every)
    roots = every[:, 1]
    if (roots != root).any():
        raise ValueError(f"parallel.{fn}: the ranks passed different roots {roots.tolist()}; "
                         f"pass the same root on every rank")
    if not 0 <= root < size:
        raise ValueError(f"parallel.{fn}: root {root} is not a rank of this {size}-rank "
                         f"communicator")
    if (every[:, 0] == every[root, 0]).all():
        return every[:, 2]
    other = int(np.flatnonzero(every[:, 0] != every[root, 0])[0])
    descriptions = comm.allgather(_describe(t))
    ref, odd = descriptions[root], descriptions[other]
    i = next((i for i, (a, b) in enumerate(zip(ref, odd)) if a != b), min(len(ref), len(odd)))
    path = (ref[i] if i < len(ref) else odd[i])[0] or "the root"
    mine = ref[i][1] if i < len(ref) else "nothing"
    theirs = odd[i][1] if i < len(odd) else "nothing"
    raise ValueError(
        f"parallel.{fn}: the trees differ across ranks at {path}: rank {root} has {mine}, "
        f"rank {other} has {theirs}. Every rank must pass a tree of the same structure, "
        f"shapes and dtypes (build it with the same code on every rank)")


# ---------------------------------------------------------------------------- broadcast

def broadcast(tree: Tree, comm: Comm | None = None, root: int = 0) -> Tree:
    """Every rank gets ``root``'s tree (params, optimizer state); root gets its own back.

    The leaves travel as raw bytes in one ``Bcast``, so any numeric dtype arrives exact
    (uint64 keys, int64 step counts). Every rank must pass a tree of the same structure,
    shapes and dtypes (the values may differ); otherwise every rank raises ValueError naming
    the first differing path. One process: returns ``tree``.
    """
    c = _resolve(comm, "broadcast")
    if c is None:
        if root != 0:
            raise ValueError(f"parallel.broadcast: root {root} is not a rank of a "
                             f"single process (only rank 0 exists)")
        return tree
    leaves = pytree.leaves(tree)
    _agree(c, _digest(_describe(tree)), tree, "broadcast", root)
    arrays = [np.asarray(x) for x in leaves]
    for (path, x), a in zip(pytree.leaves_with_path(tree), arrays):  # same dtypes everywhere
        if a.dtype.kind == "O":
            raise TypeError(f"parallel.broadcast: the leaf at {path or 'the root'} is a "
                            f"{type(x).__name__}; only arrays and numbers can be broadcast")
    bounds = np.cumsum([0] + [a.nbytes for a in arrays]).tolist()
    buf = np.empty(bounds[-1], np.uint8)
    if c.Get_rank() == root:
        for a, lo, hi in zip(arrays, bounds, bounds[1:]):
            buf[lo:hi] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    if buf.size:
        c.Bcast(buf, root=root)
    if c.Get_rank() == root:
        return tree
    out = [buf[lo:hi].view(a.dtype).reshape(a.shape).copy()
           for a, lo, hi in zip(arrays, bounds, bounds[1:])]
    # each leaf as it was: an array, a NumPy scalar or a Python number
    out = [v if isinstance(x, np.ndarray) else v[()] if isinstance(x, np.generic) else v.item()
           for x, v in zip(leaves, out)]
    return pytree.unflatten(pytree.structure(tree), out)


# ---------------------------------------------------------------------------- means

def _refcount(items: list[Any], i: int) -> int:
    return sys.getrefcount(items[i])


# The count of an array held by one list and nothing else, measured through the same path.
_UNUSED = _refcount([np.empty(0)], 0)


class _Layout(NamedTuple):
    digest: int
    dtype: np.dtype[Any]  # of the buffer: the leaves' promoted dtype, as funcdl.tree.ravel
    bounds: list[int]
    leaves: list[tuple[tuple[int, ...], np.dtype[Any]]]  # shapes and dtypes
    not_float: str | None  # the path and dtype of a leaf that is not floating-point


class _Reducer:
    """Buffers and layouts for means over ranks, kept from call to call.

    A mean packs the leaves into one flat buffer, ``Allreduce``s it in place and returns
    views of it, so a buffer is handed out again only when no array from an earlier result
    is alive; NumPy views hold a reference to the array they view, so the buffer's reference
    count tells. In the usual loop (the last grads still bound during the next step) two
    buffers alternate: no allocation after the second step, and no result ever changes.
    """

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self.layouts: dict[Any, _Layout] = {}
        self.buffers: dict[tuple[int, str], list[NDArray[Any]]] = {}

    def layout(self, t: Tree, leaves: list[Any]) -> _Layout:
        arrays = [np.asarray(x) for x in leaves]
        key = (pytree.structure(t), tuple((a.shape, a.dtype.str) for a in arrays))
        found = self.layouts.get(key)
        if found is None:
            bounds = np.cumsum([0] + [a.size for a in arrays]).tolist()
            not_float = next((f"{p or 'the root'} has dtype {a.dtype}" for (p, _), a in
                              zip(pytree.leaves_with_path(t), arrays)
                              if a.dtype.kind not in "fc"), None)
            dtype = pytree.ravel(t)[0].dtype  # once per layout
            found = _Layout(_digest(_describe(t)), dtype, bounds,
                            [(a.shape, a.dtype) for a in arrays], not_float)
            if len(self.layouts) >= 16:  # a sweep over many model shapes: start afresh
                self.layouts.clear()
            self.layouts[key] = found
        return found

    def take(self, n: int, dtype: np.dtype[Any]) -> NDArray[Any]:
        pool = self.buffers.setdefault((n, dtype.str), [])
        for i in range(len(pool)):
            if _refcount(pool, i) <= _UNUSED:
                return pool[i]
        buf = np.empty(n, dtype)
        if len(pool) < self.keep:
            pool.append(buf)
        return buf

    def mean(self, comm: Comm, t: Tree, fn: str, weight: int,
             scalars: tuple[float, ...] = ()) -> tuple[Tree, list[float]]:
        """Collective: ``Σ_r w_r t_r / Σ_r w_r`` over ranks, and the same for each of
        ``scalars``. The weights travel with the layout check, so each rank scales its
        leaves by ``w_r / Σ w`` while packing them, and one Allreduce (a sum) finishes."""
        leaves = pytree.leaves(t)
        lay = self.layout(t, leaves)
        total = int(_agree(comm, lay.digest, t, fn, weight=weight).sum())
        # Checked after _agree, so that every rank raises alike.
        if lay.not_float is not None:
            raise TypeError(f"parallel.{fn}: the leaf at {lay.not_float}; means are taken "
                            f"over floating-point trees (gradients) only")
        if total <= 0:
            raise ValueError(f"parallel.{fn}: no rank had any examples; give every step "
                             f"at least one example")
        scale = weight / total
        n = lay.bounds[-1]
        buf = self.take(n + len(scalars), lay.dtype)
        for x, lo, hi in zip(leaves, lay.bounds, lay.bounds[1:]):
            np.multiply(np.reshape(x, -1), scale, out=buf[lo:hi])
        buf[n:] = [scale * s for s in scalars]
        mpi = _mpi()
        comm.Allreduce(mpi.IN_PLACE, buf, op=mpi.SUM)
        # Views of buf in t's structure. Not through tree.unflatten: its recursive closure
        # is a reference cycle that would keep the views, and so buf, alive until the next
        # garbage collection, defeating the reuse.
        parts = iter([buf[lo:hi].reshape(shape).astype(dtype, copy=False) for (shape, dtype),
                      lo, hi in zip(lay.leaves, lay.bounds, lay.bounds[1:])])
        return pytree.map(lambda _: next(parts), t), buf[n:].tolist()


_SHARED = _Reducer()  # bare pmean calls; data_parallel owns its own


def pmean(tree: Tree, comm: Comm | None = None) -> Tree:
    """The mean of a floating-point tree (gradients) over the ranks, on every rank.

    One ``Allreduce`` of one contiguous buffer laid out by ``funcdl.tree.ravel`` (float32
    stays float32; mixed float32/float64 leaves travel as float64 and come back in their own
    dtype). The buffer is reused from call to call while no earlier result holds it. One
    process: returns ``tree`` itself.
    """
    c = _resolve(comm, "pmean")
    if c is None:
        return tree
    out, _ = _SHARED.mean(c, tree, "pmean", 1)
    return out


def data_parallel(value_and_grad_fn: F, comm: Comm | None = None) -> F:
    """Make ``value_and_grad_fn(params, x, target, ...) -> (value, grads)`` data-parallel.

    The returned function has the same signature. Each rank calls it with its share of the
    global batch; it returns the global batch's loss and grads on every rank: the mean over
    ranks weighted by each rank's example count (``x``'s axis 0), so uneven shards are
    exact, in one ``Allreduce``. This assumes the loss is a mean over examples (funcdl's
    default reduction). With ``has_aux`` or a stateful model, ``value`` is a tuple: its
    first element (the loss) is averaged and the rest (aux, BatchNorm state) is this rank's;
    average it with ``pmean`` when needed. One process: ``value_and_grad_fn`` itself.

    Example::

        import funcdl as fd
        from funcdl import layers as L, parallel

        model = L.Sequential(L.Dense(8), L.ReLU(), L.Dense(1))
        _, params = model.init(fd.random.key(0), (None, 2))
        params = parallel.broadcast(params)              # same start on every rank
        step = parallel.data_parallel(fd.value_and_grad(model, fd.losses.mse))
        x, y = fd.data.disk(fd.random.key(1), 64)
        rank, size = parallel.rank_and_size()
        for xb, yb in parallel.batches(fd.random.key(2), x, y, batch_size=16,
                                       rank=rank, size=size):
            loss, grads = step(params, xb, yb)           # equal on every rank
            params = fd.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    """
    reducer = _Reducer()

    def f(params: Any, x: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        c = _resolve(comm, "data_parallel")
        value, grads = value_and_grad_fn(params, x, target, *args, **kwargs)
        if c is None:
            return value, grads
        loss = value[0] if isinstance(value, tuple) else value
        first = pytree.leaves(x)[:1]
        if not first or np.ndim(first[0]) == 0:
            raise TypeError("parallel.data_parallel: cannot count the examples of x: pass "
                            "the batch with examples on axis 0 of its (first) array")
        grads, (mean_loss,) = reducer.mean(c, grads, "data_parallel",
                                           int(np.shape(first[0])[0]), (float(loss),))
        if isinstance(value, tuple):
            return (mean_loss, *value[1:]), grads
        return mean_loss, grads

    return cast(F, functools.update_wrapper(f, value_and_grad_fn))


# ---------------------------------------------------------------------------- data

def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"parallel.batches: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"parallel.batches: {name} must be >= {minimum}, got {value}")
    return int(value)


def batches(key: Key | None, *arrays: ArrayLike, batch_size: int, rank: int, size: int,
            shuffle: bool = True,
            drop_last: bool = False) -> Iterator[tuple[NDArray[Any], ...]]:
    """This rank's share of each global batch of ``funcdl.data.batches``.

    The global batches (``batch_size`` examples, ``>= size``) are those of
    ``data.batches(key, *arrays, batch_size=batch_size)``, same key (the same on every rank,
    a new one per epoch), same order, same ``shuffle`` and ``drop_last``. Each is split into
    ``size`` contiguous shares, rank ``r`` taking the ``r``-th, so every example lands on
    exactly one rank per epoch and K data-parallel steps see the data of K single-process
    steps. When ``size`` does not divide a global batch, the shares differ by at most one
    example (the first ranks take the extra ones); ``data_parallel`` weights the ranks by
    their counts, so the gradient is unchanged. A last global batch with fewer examples than
    ranks joins the one before it: no rank ever gets an empty batch.
    """
    size = _int(size, "size", 1)
    rank = _int(rank, "rank", 0)
    if rank >= size:
        raise ValueError(f"parallel.batches: rank {rank} is not in [0, {size})")
    global_batch = _int(batch_size, "batch_size", 1)
    if global_batch < size:
        raise ValueError(f"parallel.batches: the global batch_size {global_batch} is smaller "
                         f"than the {size} ranks, and every rank needs at least one example "
                         f"per step: use batch_size >= {size}, or fewer ranks")
    if not arrays:
        raise ValueError("parallel.batches: pass at least one array, e.g. "
                         "batches(key, x, y, batch_size=256, rank=rank, size=size)")
    xs = [np.asarray(a) for a in arrays]
    if any(a.ndim == 0 for a in xs) or len({a.shape[0] for a in xs}) != 1:
        raise ValueError(f"parallel.batches: all arrays must share their first dimension, "
                         f"got shapes {', '.join(str(a.shape) for a in xs)}")
    n = xs[0].shape[0]
    if n < size:
        raise ValueError(f"parallel.batches: {n} examples cannot be shared by {size} ranks "
                         f"(each needs at least one): use more data or fewer ranks")
    order: NDArray[np.int64] | None = None
    if shuffle:
        if key is None:
            raise ValueError("parallel.batches: shuffle=True needs a key (the same on every "
                             "rank): funcdl.random.key(seed), or set shuffle=False")
        order = random.permutation(key, n)
    stop = n - n % global_batch if drop_last else n
    starts = [*range(0, stop, global_batch), stop]
    if len(starts) > 2 and starts[-1] - starts[-2] < size:
        del starts[-2]  # the small remainder joins the previous global batch
    return _shares(xs, order, starts, rank, size)


def _shares(xs: list[NDArray[Any]], order: NDArray[np.int64] | None, starts: list[int],
            rank: int, size: int) -> Iterator[tuple[NDArray[Any], ...]]:
    for start, stop in itertools.pairwise(starts):
        base, extra = divmod(stop - start, size)
        lo = start + rank * base + min(rank, extra)
        hi = lo + base + (rank < extra)
        if order is None:
            yield tuple(a[lo:hi] for a in xs)
        else:
            rows = order[lo:hi]
            yield tuple(a[rows] for a in xs)
