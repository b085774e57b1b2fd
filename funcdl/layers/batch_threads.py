"""BatchThreads: one layer run on slices of the batch, a thread each, so that the work NumPy
runs on one core (copies, elementwise math, reductions: everything but the BLAS products)
uses several. NumPy releases the GIL inside those loops, so slices of a few thousand
entries or more run side by side; what stays serial is the Python around them.

The slices are contiguous runs of examples along axis 0 whose sizes differ by one at most
(slice i holds rows ``N·i // k`` to ``N·(i+1) // k``); the calling thread runs the first and
pool threads (``threads - 1`` for one caller), made at the first call and kept by the
layer value, the others. Every funcdl layer but BatchNorm treats each example on its own;
BatchNorm inside sums its per-channel sums over the slices (``_slices.batch_sum``), so
that it normalises by the whole batch's statistics and moves its running statistics by
them, as it would on the whole batch. A user's own layer that mixes the examples of its
batch would see its slice alone (it can call ``_slices.batch_sum`` as BatchNorm does).

Set BLAS to one thread a core when the threads share the cores
(``OPENBLAS_NUM_THREADS=1``, or ``threadpoolctl.threadpool_limits(1)``): each slice's
products would otherwise start BLAS threads of their own on the cores the slices use.
``python -m benchmarks.batch_threads`` measures it against BLAS's own threads.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl._args import int_arg
from funcdl._locks import ForkSafeLock
from funcdl.layers import _per_example as per_example
from funcdl.layers import _slices
from funcdl.layers._children import (
    build,
    child_apply,
    child_init,
    child_vjp,
    is_stateful,
    name_of,
    summed,
)
from funcdl.layers._guard import guarded
from funcdl.layers._wrap import child_call, like_child, pulled
from funcdl.layers.base import Layer, LayerLike, check_cotangent, layer_arg

__all__ = ["BatchThreads"]

# Guards every pool's executor creation (user threads making first calls at once would each
# make one)
_MAKE_LOCK = ForkSafeLock()

_MOST = 1024  # threads a pool may start: slices running at once, over all callers


def BatchThreads(layer: LayerLike, threads: int) -> Layer:
    """``f`` on ``threads`` slices of the batch at once: ``(N, ...) -> f's output``.

    forward: ``y[r_i] = f(params, x[r_i])`` for the slices ``r_i`` of axis 0 (all inputs'
    arrays of a tuple input cut alike), concatenated; vjp: ``dparams = Σ_i f_pᵀ dy[r_i]``,
    ``dx[r_i] = f_xᵀ dy[r_i]``, each slice's pullback in its own thread. Params, output
    shape and ``ids`` are ``f``'s own; the numbers are ``f``'s but for the order of float
    sums (the batch's products cut into slices, the params' gradients summed over them).

    ``key``: a single slice (``threads=1``, or a batch of one) gets it unchanged; ``n``
    slices get ``random.split(key, n)``, one each, so Dropout masks depend on the thread
    count as they would on the ranks of a data-parallel run. A batch of fewer than
    ``threads`` examples runs in as many slices as examples.

    A stateful child (BatchNorm) runs as on the whole batch: each slice is given the state,
    BatchNorm's statistics are the whole batch's, and the new state is the one every slice
    returns (a ValueError if the slices' new states differ, as a user's layer whose state
    moves with its slice's examples would give). The state is the child's own, not a
    one-entry tuple.

    Example: ``BatchThreads(Sequential(Conv2D(16, 3), ReLU(), MaxPool2D(2), Flatten(),
    Dense(10)), threads=2)`` trains a CNN on both cores of a two-core machine.
    """
    layer_arg("BatchThreads", layer, "expected a layer to run on slices of the batch, as "
              "BatchThreads(Sequential(Conv2D(16, 3), ReLU()), threads=2)")
    n_threads = int_arg(threads, "BatchThreads", "threads (how many slices run at once)",
                        minimum=1)
    layer = guarded(layer)
    child = name_of(layer)
    name = f"BatchThreads({child}, threads={n_threads})"
    dx_optional = bool(getattr(layer, "dx_optional", False))
    pool = _Pool(name)

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        out: tuple[Any, Any, Any] = child_call("BatchThreads", child, child_init, layer, key,
                                               in_shape)
        return out

    def run(fn: Any, args: list[Any], cuts: list[slice]) -> list[Any]:
        """``fn`` on each slice's arguments, each slice a member of one group (its batch
        sums), a child's error placed with the slice's rows (its shapes are the slice's,
        not the batch's)."""
        group = _slices.Group(len(args)) if len(args) > 1 else None

        def one(i: int) -> Any:
            where = f"BatchThreads[rows {cuts[i].start}:{cuts[i].stop}]"
            with _slices.member(group, i):
                return child_call(where, child, fn, args[i])

        return pool.map(one, list(range(len(args))))

    def sliced(x: Any, key: Any) -> tuple[list[slice], list[tuple[Any, Any]]]:
        """The slices of axis 0, and each one's input and key; one slice inside another
        BatchThreads' slice (its threads are busy already; its sums go to that group)."""
        cuts = _cuts(name, x, 1 if _slices.inside() else n_threads)
        keys = ([key] * len(cuts) if key is None or len(cuts) == 1 else
                random.split_for(key, len(cuts), name))
        return cuts, [(_take(x, r), k) for r, k in zip(cuts, keys, strict=True)]

    def apply(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        cuts, parts = sliced(x, key)
        outs = run(lambda a: child_apply(layer, params, a[0], state, a[1], train), parts, cuts)
        return (_joined(name, "output", [o[0] for o in outs], cuts),
                _one_state(name, [o[1] for o in outs], cuts))

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        per_example.refuse(name, "it sums its slices' gradients; per-example gradients "
                                 "of the layer inside need no threads")
        cuts, parts = sliced(x, key)
        outs = run(lambda a: child_vjp(layer, params, a[0], state, a[1], train), parts, cuts)
        y = _joined(name, "output", [o[0] for o in outs], cuts)
        pullbacks, out = [o[1] for o in outs], _spec(y)  # y's shapes: not y itself
        new_state = _one_state(name, [o[2] for o in outs], cuts)

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            dy = _cotangent(name, dy, out)
            pairs = run(lambda a: pulled(a[0], a[1], need_dx, dx_optional),
                        [(pb, _take(dy, r)) for pb, r in zip(pullbacks, cuts, strict=True)],
                        cuts)
            dparams = summed([p for p, _ in pairs])
            dx = _joined(name, "dx", [d for _, d in pairs], cuts) if need_dx else None
            return dparams, dx

        return y, pullback, new_state

    # the child's ids and weight axis; dx_optional whatever the child's: pulled drops dx
    made = build(name, is_stateful(layer), init, apply, vjp)
    return dataclasses.replace(like_child(made, layer), dx_optional=True)


class _Pool:
    """Threads beside the calling one, made at the first call that needs them and again in
    a forked child (whose copy of the parent's pool has no threads). The executor starts a
    thread whenever none is idle (up to ``_MOST``) and keeps it: a call's slices must all
    run at once, since their batch sums meet, so a call made while another holds the
    threads (two threads training one model value) gets threads of its own instead of
    queueing behind slices that wait for it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.executor: ThreadPoolExecutor | None = None
        self.pid = 0

    def _executor(self) -> ThreadPoolExecutor:
        """The pool's executor, made once per process."""
        with _MAKE_LOCK:
            if self.executor is None or self.pid != os.getpid():
                self.executor = ThreadPoolExecutor(_MOST, "funcdl-" + self.name)
                self.pid = os.getpid()
            return self.executor

    def map(self, fn: Any, args: list[Any]) -> list[Any]:
        """``[fn(a) for a in args]``, the first in this thread, the others in the pool's;
        every call is waited for before an error is raised (the first slice's first)."""
        if len(args) == 1:
            return [fn(args[0])]
        executor = self._executor()
        # each in a copy of the caller's context: np.errstate and debug.check_finite live
        # in contextvars, which a pool's threads would not see otherwise
        futures: list[Future[Any]] = [executor.submit(contextvars.copy_context().run,
                                                      fn, a) for a in args[1:]]
        try:
            first: tuple[Any, BaseException | None] = (fn(args[0]), None)
        except BaseException as e:  # raised below, once every slice has finished
            first = (None, e)
        done = [first, *(_outcome(f) for f in futures)]
        errors = [err for _, err in done if err is not None]
        if errors:  # a slice's own error before the others' SliceAbandoned
            raise next((e for e in errors if not isinstance(e, _slices.SliceAbandoned)),
                       errors[0])
        return [value for value, _ in done]


def _one_state(name: str, states: list[Any], cuts: list[slice]) -> Any:
    """The new state every slice returned (the first's object), or a ValueError naming
    the first slice whose state differs from it."""
    first = states[0]
    for st, r in zip(states[1:], cuts[1:]):
        if st is first:
            continue
        try:
            tree.check_same(first, st, ("first", "other"), shapes=True)
            same = all(np.array_equal(a, b, equal_nan=np.asarray(a).dtype.kind in "fc")
                       for a, b in zip(tree.leaves(first), tree.leaves(st), strict=True))
        except ValueError:
            same = False
        if not same:
            raise ValueError(f"{name}: the slices returned different new states (rows 0:"
                             f"{cuts[0].stop} and {r.start}:{r.stop}); BatchThreads runs a "
                             f"stateful layer whose new state is the same in every slice "
                             f"(BatchNorm's, from the whole batch's statistics), not one "
                             f"that moves its state by its slice's examples alone")
    return first


def _outcome(f: Future[Any]) -> tuple[Any, BaseException | None]:
    err = f.exception()
    return (None, err) if err is not None else (f.result(), None)


def _leaves(x: Any) -> list[Any]:
    """An input's arrays: a tuple's entries (nested tuples too; None entries, which have no
    rows, left out), else ``x`` itself (a list is one array-like input, as layers read it)."""
    if isinstance(x, tuple):
        return [leaf for item in x for leaf in _leaves(item)]
    return [] if x is None else [x]


def _take(x: Any, r: slice) -> Any:
    """The rows ``r`` of every array of ``x`` (views of ndarrays, the same tuple types)."""
    if isinstance(x, tuple):
        items = [_take(item, r) for item in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    return None if x is None else x[r]


def _cuts(name: str, x: Any, threads: int) -> list[slice]:
    """The slices of axis 0: ``k = min(threads, N)`` runs (one, for N = 0), rows ``N·i // k``
    to ``N·(i+1) // k``; every array of the input checked to have the same N."""
    sizes = []
    for leaf in _leaves(x) or [x]:
        array = isinstance(leaf, (list, np.ndarray, np.generic, int, float, complex))
        n = (len(leaf) if isinstance(leaf, list) else np.shape(leaf)[0]
             if array and np.ndim(leaf) else None)
        if n is None:
            got = f"an array of shape {np.shape(leaf)}" if array else f"a {type(leaf).__name__}"
            raise ValueError(f"{name}: every input array needs the batch on axis 0 (slices "
                             f"of it run in threads), got {got}; pass an array, or a tuple "
                             f"of arrays with the same batch")
        sizes.append(n)
    if len(set(sizes)) > 1:
        # (1, T, S): an attention mask shared by the batch, which slices cannot cut
        hint = ("; an array shared by every example (axis 0 of size 1) is sliced like "
                "the others once repeated along the batch, np.broadcast_to(a, (N, ...)) "
                "(a view, no copy)" if 1 in sizes and max(sizes) > 1 else "")
        raise ValueError(f"{name}: the input's arrays must share their batch size (axis 0), "
                         f"got {', '.join(str(np.shape(v)) for v in _leaves(x))}{hint}")
    n = sizes[0]
    k = max(1, min(threads, n))
    return [slice(a, b) for a, b in itertools.pairwise(n * i // k for i in range(k + 1))]


def _joined(name: str, what: str, parts: list[Any], cuts: list[slice]) -> Any:
    """The slices' outputs (or dx) put back along axis 0, each leaf checked to hold its
    slice's examples there; a tuple's structure kept, its None entries too."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, tuple):
        items = [_joined(name, f"{what}[{i}]", [p[i] for p in parts], cuts)
                 for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else tuple(items)
    if first is None:
        return None
    for p, r in zip(parts, cuts, strict=True):
        if np.ndim(p) == 0 or np.shape(p)[0] != r.stop - r.start:
            raise ValueError(f"{name}: the layer's {what} has shape {np.shape(p)} for a slice "
                             f"of {r.stop - r.start} examples; BatchThreads needs a layer "
                             f"whose {what} keeps one row per example on axis 0")
    return np.concatenate(parts, axis=0)


@dataclasses.dataclass(frozen=True)
class _Out:
    """One array of the output: its shape and dtype (a tuple of these, and None, for tuple
    outputs)."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def _spec(y: Any) -> Any:
    """The output's structure with each array's shape and dtype, for the pullback's checks."""
    if isinstance(y, tuple):
        return tuple(_spec(v) for v in y)
    return None if y is None else _Out(np.shape(y), np.asarray(y).dtype)


def _cotangent(name: str, dy: Any, out: Any) -> Any:
    """dy checked against the output before it is cut (a slice's own check would name the
    slice's shape, not the batch's): each array by ``check_cotangent``, a list read as a
    tuple where the output is one; a None entry goes to the child as it is (LSTM's unread
    ``h_n``)."""
    if dy is None or out is None:
        return dy
    if isinstance(out, tuple):
        if not (isinstance(dy, (tuple, list)) and len(dy) == len(out)):
            raise ValueError(f"{name}: dy must be shaped as the layer's output, "
                             f"{_shape_of(out)}, got {_shape_of(dy)}")
        items = [_cotangent(name, d, o) for d, o in zip(dy, out, strict=True)]
        return type(dy)(*items) if hasattr(dy, "_fields") else tuple(items)
    return check_cotangent(name, dy, out.shape, out.dtype)


def _shape_of(v: Any) -> str:
    if isinstance(v, _Out):
        return str(v.shape)
    if isinstance(v, tuple) or (isinstance(v, list) and any(
            x is None or isinstance(x, (tuple, list, np.ndarray)) for x in v)):
        return "(" + ", ".join(_shape_of(i) for i in v) + ")"
    try:
        return "None" if v is None else str(np.shape(v))
    except ValueError:  # a ragged list
        return f"a ragged {type(v).__name__}"
