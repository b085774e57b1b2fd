"""Data-parallel training over MPI (mpi4py): every rank runs the same script on its share of
each global batch, and the gradients are averaged in one sum over ranks before the update,
so the params stay equal on every rank.

    mpiexec -n 4 python -m mpi4py train.py      # -m mpi4py: one rank's error stops them all

* ``comm=None`` means ``MPI.COMM_WORLD`` when MPI is asked (below), and a single process
  otherwise. With one process every function here returns its input (``batches`` gives the
  whole batch) and communicates nothing. A process that no launcher or batch system
  started (none of the ``PMI_*``, ``PMIX_*``, ``OMPI_*``, ``MV2_*``, ``HYDRA_*``,
  ``I_MPI_*``, ``MPI_LOCAL*``, ``SLURM_*``, ``ALPS_*``, ``PALS_*``, ``FLUX_*``, ``JSM_*``,
  ``LSB_*``, ``PBS_*`` variables) and whose script has not imported ``mpi4py.MPI`` is one process
  without asking MPI: a plain ``python train.py`` never starts MPI. Otherwise the world's
  size is all it asks of MPI. Under a launcher that sets none of these, set
  ``FUNCDL_MPI=1`` or import ``mpi4py.MPI`` before the first call. Without mpi4py a
  process is one only when nothing says otherwise: with ``FUNCDL_MPI=1``, a launcher's
  size above 1 or a rank above 0 (``SLURM_PROCID``) the first call raises ValueError
  rather than have each rank train alone as rank 0. ``import funcdl`` and
  ``from funcdl import parallel`` never import mpi4py.
* ``broadcast``, ``pmean``, ``sharded``'s step and the functions of ``data_parallel`` and
  ``sync_batch_stats`` are collectives: every rank calls them, in the same order. Each
  first compares an 8-byte digest of the tree's structure, shapes and dtypes, and of the
  collective called, across ranks, so a rank whose tree differs, or which calls another
  collective on it, makes every rank raise the same ValueError, naming the first
  differing path or the two collectives, instead of hanging or averaging misaligned
  numbers.
* ``pmean`` is the plain mean over ranks; ``data_parallel`` weights each rank by its number
  of examples, so uneven shards (a global batch not divisible by the rank count) still give
  the gradient of the global batch's mean loss. See ``examples/disk_data_parallel.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from funcdl import tree as pytree
from funcdl._agree import NOT_AN_INT, agree, describe, digest, root_arg
from funcdl._agree import resolve as _resolve
from funcdl._args import bool_arg
from funcdl._flat_buffer import like
from funcdl._partition import batches, shard
from funcdl._rank_sums import examples as _examples
from funcdl._rank_sums import step_sums, sync_batch_stats
from funcdl._reduce import Reducer, _freed, refusal, shared_node
from funcdl._shard import ShardedState, Sharder, check_elementwise
from funcdl._treenodes import describe as describe_value
from funcdl.layers._slices import replicas
from funcdl.optim import GradientTransformation

__all__ = ["Sharded", "ShardedState", "batches", "broadcast", "data_parallel", "pmean",
           "rank_and_size", "shard", "sharded", "sync_batch_stats"]

Tree = Any
Comm = Any
"""An mpi4py communicator (``mpi4py.MPI.Comm``); typed loosely so mpi4py stays optional."""

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------- communicators

def rank_and_size(comm: Comm | None = None) -> tuple[int, int]:
    """``(rank, size)`` of this process in ``comm``; ``(0, 1)`` for a single process."""
    c = _resolve(comm, "rank_and_size")
    return (0, 1) if c is None else (int(c.Get_rank()), int(c.Get_size()))


# ---------------------------------------------------------------------------- broadcast

def broadcast(tree: Tree, comm: Comm | None = None, root: int = 0) -> Tree:
    """Every rank gets ``root``'s tree (params, optimizer state); root gets its own back.

    The leaves travel as raw bytes in one ``Bcast``, so any numeric dtype arrives exact
    (uint64 keys, int64 step counts). Every rank must pass a tree of the same structure,
    shapes and dtypes (the values may differ); otherwise every rank raises ValueError naming
    the first differing path. One process: returns ``tree``.
    """
    c = _resolve(comm, "broadcast")
    r = root_arg(root)  # one that is not an int fails the agreement on every rank
    if c is None:
        if r == NOT_AN_INT:
            raise TypeError(f"parallel.broadcast: root must be an int, the rank that holds "
                            f"the tree, got {root!r}")
        if r != 0:
            raise ValueError(f"parallel.broadcast: root {root} is not a rank of a "
                             f"single process (only rank 0 exists)")
        _numeric_leaves(tree, pytree.leaves(tree))  # as over ranks: fails alike on 1 and N
        return tree
    root = r
    leaves, td = pytree.flatten(tree)
    # the node's split, collective on a communicator's first call of any collective here:
    # a rank whose first call is a pmean meets this one in the agreement, which then raises
    shared_node(c)
    agree(c, digest(describe(tree)), tree, "broadcast", root)
    arrays = _numeric_leaves(tree, leaves)  # same dtypes everywhere: fails on every rank
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
    out = [like(x, v) for x, v in zip(leaves, out)]  # an array, a NumPy scalar, a number
    return pytree.unflatten(td, out)


def _numeric_leaves(tree: Tree, leaves: list[Any]) -> list[NDArray[Any]]:
    """``tree``'s ``leaves`` as arrays; a TypeError naming the first that is an object, or
    a masked array (its data alone would reach the other ranks, root keeping its mask)."""
    masked = pytree.masked_leaf(tree)
    if masked is not None:
        raise TypeError(f"parallel.broadcast: the leaf at {masked or 'the root'} is a masked "
                        f"array, whose mask would not reach the other ranks: broadcast "
                        f"(a.data, np.ma.getmaskarray(a)) and rebuild it with np.ma.array")
    arrays = [np.asarray(x) for x in leaves]
    if any(a.dtype.kind == "O" for a in arrays):  # the one walk with paths, on failure only
        path, x = next((p, x) for (p, x), a in zip(pytree.leaves_with_path(tree), arrays)
                       if a.dtype.kind == "O")
        raise TypeError(f"parallel.broadcast: the leaf at {path or 'the root'} is of type "
                        f"{type(x).__name__}; only arrays and numbers can be broadcast")
    return arrays


# ---------------------------------------------------------------------------- means

# Bare pmean calls' buffers and windows, one Reducer per communicator (data_parallel owns
# its own). One for all let threads of a rank meaning at once, each on a communicator of
# its own (as MPI requires of concurrent collectives), take one buffer twice or free each
# other's windows mid-use (a probe: segfaults and hangs in 5 of 6 runs); one per thread
# let a rank whose next call came from another thread (a pool's free worker) open a window
# the other ranks did not, and hang (a review), and leaked a window per thread.
_BY_COMM: dict[int, tuple[Comm, Reducer]] = {}
_LOCAL = Reducer()  # one process: the check of the leaves only


def _reducer(comm: Comm) -> Reducer:
    found = _BY_COMM.get(id(comm))
    if found is None or found[0] is not comm:
        for key, (held, _) in list(_BY_COMM.items()):
            if _freed(held):  # a caller's freed communicator: its reducer goes with it
                _BY_COMM.pop(key, None)
        found = _BY_COMM[id(comm)] = (comm, Reducer())
    return found[1]


def pmean(tree: Tree, comm: Comm | None = None) -> Tree:
    """The mean of a floating-point tree (gradients) over the ranks, on every rank.

    The leaves are packed into one contiguous buffer laid out by ``funcdl.tree.ravel``
    (float32 stays float32; mixed float32/float64 leaves travel as float64 and come back in
    their own dtype) and summed in one pass: through memory the ranks share when they all
    run on one machine, else by one ``Allreduce``. The result's array leaves are read-only
    views of that buffer (it may be shared by the ranks), reused from call to call while no
    earlier result holds it; a NumPy scalar or Python float leaf comes back as one, as on
    one process. One process: returns ``tree`` itself, after the check of its
    leaves that the ranks make (floating-point only), so a script fails alike on 1 and N.
    Each communicator has its own buffers: threads of a rank may run means at once, each on
    a communicator of its own (``comm.Dup()``), as MPI requires of concurrent collectives,
    and one communicator's calls may come from any thread, one at a time.
    """
    c = _resolve(comm, "pmean")
    if c is None:
        lay = _LOCAL.layout(tree)[1]
        if lay.refused is not None:
            raise refusal("pmean", lay)
        return tree
    return _reducer(c).mean(c, tree, "pmean", 1)[0]


def data_parallel(value_and_grad_fn: F, comm: Comm | None = None, *,
                  wrt_input: bool | None = None, sync_batch_stats: bool = False) -> F:
    """Make ``value_and_grad_fn(params, x, ...) -> (value, grads)`` data-parallel.

    The returned function has the same signature (``(params, x, target, *, key, train)``
    for funcdl's value_and_grad; ``x`` may be a pytree, e.g. a batch ``(x, y)``, whose
    first leaf counts the examples, or a list of rows of numbers, as value_and_grad reads
    it). Each rank calls it with its share of the
    global batch; it returns the global batch's loss and grads on every rank: the mean over
    ranks weighted by each rank's example count (``x``'s axis 0), so uneven shards are
    exact, in one sum (see ``pmean``). This assumes the loss is a mean over examples (funcdl's
    default reduction). With ``has_aux`` or a stateful model, ``value`` is a tuple: its
    first element (the loss) is averaged and the rest (aux, BatchNorm state) is this rank's;
    average it with ``pmean`` when needed. From ``value_and_grad(..., wrt_input=True)`` the
    grads are ``(dparams, dx)``: dparams averaged, dx this rank's own rows, times its share
    ``n_r / N`` (the global loss's gradient at them). ``wrt_input`` says which: by default
    it is read from ``value_and_grad_fn`` (funcdl's value_and_grad records it), and a
    function that hides it (a wrapper, a lambda) whose grads end in an entry shaped like
    ``x`` is refused until ``wrt_input=`` says. One process: ``value_and_grad_fn``'s own
    values, after the same checks as over ranks ((value, grads) with a real loss at every
    call; floating-point grads at the first).

    ``sync_batch_stats=True``: BatchNorm in training normalises by the statistics of the
    global batch, summed over the ranks (PyTorch's ``SyncBatchNorm``; Flax's BatchNorm with
    ``axis_name``), so K steps over the ranks give the params and running statistics of K
    steps of one process on the global batches, and the new state is the same on every rank.
    A step starts with one agreement on the params (differing models raise on every rank),
    and each BatchNorm adds three exchanges of a few numbers (its entry count with the
    mean's sum, then the variance's, forward, two more where the mean dwarfs the spread or
    float32 squares overflow; its two cotangent sums backward); a rank that raises inside
    the model leaves the others waiting in one, as in torch. By default each rank's
    BatchNorm uses its own examples' statistics (torch's DistributedDataParallel without
    SyncBatchNorm). ``sync_batch_stats(fn)`` does the same without averaging the grads, for
    ``sharded``.

    The function keeps its buffers and windows: call it from one thread at a time (threads
    of a rank training at once: one ``data_parallel`` each, on a ``comm.Dup()`` each).

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
    if not callable(value_and_grad_fn):
        raise TypeError(f"parallel.data_parallel: value_and_grad_fn must be callable, such as "
                        f"fd.value_and_grad(model, loss), got {type(value_and_grad_fn).__name__}")
    if comm is not None:  # now, not at the first step
        _resolve(comm, "data_parallel")
    sync = bool_arg(sync_batch_stats, "parallel.data_parallel", "sync_batch_stats")
    reducer = Reducer()
    split_dx = (getattr(value_and_grad_fn, "wrt_input", None) if wrt_input is None
                else bool_arg(wrt_input, "parallel.data_parallel", "wrt_input"))

    unasked = split_dx is None  # whether the grads' form is still to be looked at, once
    looked = False  # whether one process has looked at the grads' leaves

    def f(params: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal unasked, looked
        c = _resolve(comm, "data_parallel")
        n = _examples(x, "data_parallel")  # on one process too: a script fails alike
        if sync and c is not None:  # BatchNorm's sums over the ranks; named apart from the
            # grads' mean, whose tree has the params' layout: a rank without sync meeting
            # this agreement in its own passed it, and the ranks then waited in different sums
            with replicas(step_sums(c, reducer, params, n,
                                    "data_parallel(sync_batch_stats=True)")):
                res = value_and_grad_fn(params, x, *args, **kwargs)
        else:
            res = value_and_grad_fn(params, x, *args, **kwargs)
        value, loss, grads = _result(res, split_dx)
        if unasked:  # the first call's grads tell, on one process too
            unasked = _ends_like(grads, x)  # refused then, and at every call after it
            if unasked:
                raise ValueError(
                    "parallel.data_parallel: the grads are a pair whose second entry is "
                    "shaped like x, as value_and_grad(..., wrt_input=True) gives (dparams, "
                    "dx), but value_and_grad_fn does not say whether it is (a wrapper or "
                    "lambda hides funcdl's wrt_input attribute; functools.wraps keeps it): "
                    "pass data_parallel(fn, wrt_input=True), so that dx stays this rank's "
                    "own, or wrt_input=False to average the pair as params' grads")
        if c is None:
            if not looked:  # the ranks' mean checks the leaves at every step; here, at the
                # first (each step would cost a fifth of a small model's step, ~5 us)
                lay = reducer.layout(grads[0] if split_dx else grads)[1]
                if lay.refused is not None:
                    raise refusal("data_parallel", lay)
                looked = True
            return value, grads
        if split_dx:  # (dparams, dx): dx holds this rank's examples, not a sum over ranks
            dparams, (mean_loss,), share = reducer.mean(c, grads[0], "data_parallel", n,
                                                        (float(loss),))
            grads = (dparams, pytree.map(lambda d: d * share, grads[1]))
        else:
            grads, (mean_loss,), _ = reducer.mean(c, grads, "data_parallel", n,
                                                  (float(loss),))
        if isinstance(value, tuple):  # a NamedTuple stays one, as on one process
            rest, make = (mean_loss, *value[1:]), getattr(type(value), "_make", None)
            return (rest if make is None else make(rest)), grads
        return mean_loss, grads

    return cast(F, functools.update_wrapper(f, value_and_grad_fn))


def _result(res: Any, split_dx: bool | None) -> tuple[Any, Any, Any]:
    """``(value, loss, grads)`` from what value_and_grad_fn returned, the loss being the
    value or its first entry; or the error that says what came instead."""
    if not (isinstance(res, (tuple, list)) and len(res) == 2):
        raise TypeError(f"parallel.data_parallel: value_and_grad_fn must return (value, "
                        f"grads), as fd.value_and_grad's function does; got "
                        f"{describe_value(res)}")
    value, grads = res
    loss = value[0] if isinstance(value, tuple) and value else value
    if not (isinstance(loss, float) or _real_scalar(loss)):  # over ranks: float(loss)
        raise TypeError(f"parallel.data_parallel: the value from value_and_grad_fn must be "
                        f"the loss, a real number (with has_aux or state: the first entry of "
                        f"a tuple); got {describe_value(loss)}")
    if split_dx and not (isinstance(grads, tuple) and len(grads) == 2):
        raise ValueError(f"parallel.data_parallel: wrt_input=True, but the grads are "
                         f"{describe_value(grads)}, not the pair (dparams, dx)")
    return value, loss, grads


def _real_scalar(v: Any) -> bool:
    return (isinstance(v, (int, np.generic, np.ndarray)) and np.ndim(v) == 0
            and np.asarray(v).dtype.kind in "iuf")


def _ends_like(grads: Any, x: Any) -> bool:
    """Whether ``grads`` is a pair whose second entry has ``x``'s structure and shapes."""
    if not (isinstance(grads, tuple) and len(grads) == 2):
        return False
    try:
        pytree.check_same(grads[1], x, ("dx", "x"), shapes=True)
    except (ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------------------- sharded

class Sharded(NamedTuple):
    """A sharded optimizer: ``state = init(params)``;
    ``params, state = step(state, grads, params, examples=None)``."""

    init: Callable[[Tree], ShardedState]
    step: Callable[..., tuple[Tree, ShardedState]]


def sharded(optimizer: GradientTransformation, comm: Comm | None = None) -> Sharded:
    """``optimizer`` split over the ranks (ZeRO stage 1): each rank keeps the optimizer
    state of, and updates, only its 1/k of the params' entries, then every rank reads all
    the new params. Same params as ``data_parallel`` and a whole ``optimizer`` on every
    rank, with 1/k of the state's memory and of the update's work per rank, and on one
    machine fewer bytes written (across machines, the same volume as ``data_parallel``'s):
    the faster data-parallel step when the update and the gradients weigh (the
    benchmark's mlp, 669,706 params; on its cnn, 20,490 params and all compute,
    ``data_parallel`` is as fast; see docs/scale-out.md).

    * ``init(params)``: this rank's ``ShardedState``, ``optimizer``'s state for its entries.
    * ``step(state, grads, params, examples=None)``, a collective: ``grads`` are this rank's
      own (``fd.value_and_grad`` on its share of the global batch, not ``data_parallel``'s);
      returns the params after one ``optimizer`` update with the mean gradient over ranks,
      equal on every rank, and this rank's new state. ``examples``, this rank's example
      count, weights the mean for uneven shards (None: equal weights), as ``data_parallel``
      does. BatchNorm over the global batch: ``grads`` from ``sync_batch_stats(fn)``. The
      new params are read-only views of buffers the ranks may share, kept as long as any
      array from them is alive.

    ``optimizer`` must treat each entry on its own, whatever the leaves' shapes (sgd, adam,
    adamw without a mask, rmsprop, adagrad, schedules, weight decay); one that mixes
    entries, such as ``clip_by_global_norm``, or reads the params' structure, such as a
    ``mask``, is refused with a TypeError. One process: the same step, no MPI.

    Example::

        opt = parallel.sharded(fd.optim.adam(1e-3))
        state = opt.init(params)                           # after parallel.broadcast
        loss_and_grad = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
        for xb, yb in parallel.batches(key, x, y, batch_size=256, rank=rank, size=size):
            loss, grads = loss_and_grad(params, xb, yb)    # this rank's loss and grads
            params, state = opt.step(state, grads, params, examples=len(xb))
    """
    if not isinstance(optimizer, GradientTransformation):
        raise TypeError(f"parallel.sharded: optimizer must be a funcdl.optim "
                        f"GradientTransformation such as fd.optim.adam(1e-3), got "
                        f"{type(optimizer).__name__}")
    check_elementwise("parallel.sharded", optimizer)
    if comm is not None:  # now, not at init, as data_parallel
        _resolve(comm, "sharded")
    sharder = Sharder("parallel.sharded", optimizer)

    def init(params: Tree) -> ShardedState:
        return sharder.init(_resolve(comm, "sharded"), params)

    def step(state: ShardedState, grads: Tree, params: Tree,
             examples: int | None = None) -> tuple[Tree, ShardedState]:
        return sharder.step(_resolve(comm, "sharded"), state, grads, params, examples)

    return Sharded(init, step)
