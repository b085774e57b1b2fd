"""The sharded optimizer step behind ``funcdl.parallel.sharded`` (ZeRO stage 1, as in
DeepSpeed: the flat parameter vector is cut into one contiguous part per rank).

The entries are numbered as ``funcdl.tree.ravel`` lays them out; rank r of k owns entries
[r·m, (r+1)·m), m = ⌈n/k⌉, which may cut leaves in pieces. A step sums the gradients over
the ranks only on each rank's own entries (a reduce-scatter), runs the wrapped optimizer
on those entries alone, with the state of those entries alone, writes the new params there,
and every rank then reads all the new params (an allgather).

On one machine the ranks share an MPI-3 window: each rank writes its scaled gradients for
the other ranks' entries into its own slot, and after a fence sums its entries and writes
its new params into a params buffer of the window that every rank reads in place after a
second fence. Each rank hands the others n(k-1)/k entries twice per step (gradients, then
params), where ``data_parallel`` followed by a whole update hands over the packed gradients
and the mean, and every rank updates every entry. Across machines: ``Reduce_scatter`` then
``Allgatherv``, the two halves of a ring allreduce (2(k-1)/k · n entries per rank).
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from funcdl import tree as pytree
from funcdl._agree import INT_BOUND, NOT_AN_INT, digest, mpi, signature
from funcdl._args import int_arg, shown
from funcdl._flat_buffer import Layout, as_tree, ravel, scaled
from funcdl._reduce import Reducer, memo, span
from funcdl.optim import ApplyIfFiniteState, GradientTransformation, MultiStepsState
from funcdl.optim._base import Count, check_state, next_count, read_count, zero_count
from funcdl.optim._keywords import extra_keywords

Tree = Any
Comm = Any


class ShardedState(NamedTuple):
    """The state of ``parallel.sharded(opt)`` on one rank: ``inner``, ``opt``'s state for
    this rank's entries only (a tuple of 1-d pieces of the leaves, in ``tree.ravel``
    order); ``span``, ``(start, stop, total)`` of those entries in the ravelled params;
    ``count``, the number of steps taken."""

    inner: Any
    span: NDArray[np.int64]
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


def pieces(bounds: list[int], lo: int, hi: int) -> list[tuple[int, int, int, int]]:
    """``(leaf, start, stop, at)`` for each leaf overlapping entries ``[lo, hi)``; start and
    stop count from the leaf's first entry, ``at`` is start's entry in the ravelled tree."""
    return [(i, max(lo, a) - a, min(hi, b) - a, max(lo, a))
            for i, (a, b) in enumerate(itertools.pairwise(bounds)) if max(lo, a) < min(hi, b)]


class Cut(NamedTuple):
    """One rank's view of the cut of ``n`` entries over ``size`` ranks."""

    lo: int  # this rank owns entries [lo, hi)
    hi: int
    mine: list[tuple[int, int, int, int]]  # pieces(bounds, lo, hi)
    theirs: list[tuple[int, int, int, int]]  # the pieces of every other rank's entries
    counts: list[int]  # every rank's entry count, and its first entry
    displs: list[int]


def cut(bounds: list[int], size: int, rank: int) -> Cut:
    n = bounds[-1]
    spans = [span(n, size, r) for r in range(size)]
    lo, hi = spans[rank]
    theirs = [p for r, s in enumerate(spans) if r != rank for p in pieces(bounds, *s)]
    return Cut(lo, hi, pieces(bounds, lo, hi), theirs, [b - a for a, b in spans],
               [a for a, _ in spans])


def check_elementwise(name: str, opt: GradientTransformation) -> None:
    """Raise TypeError unless ``opt`` gives the same updates to a vector as to its parts
    updated apart (two steps, entries a hundred orders of magnitude apart), and to a matrix
    as to the same entries flat: a sharded optimizer sees only its rank's entries, as flat
    pieces of the leaves, so a rule that mixes entries (a global-norm clip, a per-leaf trust
    ratio) or reads the params' shapes or structure (a weight-decay mask) would be silently
    wrong, or fail on the pieces."""
    takes = extra_keywords(opt.update)
    if takes:
        loss = (" (reduce_on_plateau's value=, the loss), which a sharded step does not "
                "pass: every rank would have to scale by the same loss; take data_parallel's "
                "mean gradients and a plain optimizer instead, with the loss averaged by "
                "parallel.pmean" if "value" in takes else
                ", which a sharded step does not pass: take data_parallel's mean gradients "
                "and a plain optimizer instead")
        raise TypeError(f"{name}: the optimizer's update takes "
                        f"{', '.join(f'{k}=' for k in sorted(takes))}{loss}")
    try:  # (an init that fails on flat pieces is named by the probe below)
        skipping = [st for st in pytree.leaves(opt.init((np.zeros(4),)), is_leaf=_decides)
                    if _decides(st)]
    except (TypeError, ValueError):
        skipping = []
    if skipping:
        raise TypeError(
            f"{name}: the optimizer decides from all the gradient's entries at once whether "
            f"to step ({type(skipping[0]).__name__}: apply_if_finite, or multi_steps with a "
            f"should_skip_update_fn); a sharded optimizer sees only its rank's entries, so the "
            f"ranks would decide apart, silently wrong: take data_parallel's mean gradients "
            f"and a plain optimizer instead")
    p = np.array([0.5, -1.5, 2.0, 3.0])
    g = np.array([3e30, -4e30, 1.0, 1e-3])

    def two_steps(ps: NDArray[np.float64], gs: NDArray[np.float64]) -> NDArray[np.float64]:
        state = opt.init((ps,))
        for _ in range(2):
            updates, state = opt.update(state, (gs,), (ps,))
        return np.asarray(updates[0], np.float64).reshape(-1)

    with np.errstate(all="ignore"):
        try:
            whole = two_steps(p, g)
            parts = np.concatenate([two_steps(p[:1], g[:1]), two_steps(p[1:], g[1:])])
            matrix = two_steps(p.reshape(2, 2), g.reshape(2, 2))
            # a NaN in one part: a rule that skips a step for it must skip for every entry
            g_nan = np.array([np.nan, 1.0, 2.0, 3.0])
            nan_whole = two_steps(p, g_nan)
            nan_parts = np.concatenate([two_steps(p[:1], g_nan[:1]),
                                        two_steps(p[1:], g_nan[1:])])
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{name}: the optimizer cannot run on the flat pieces of the params that a "
                f"sharded optimizer gives it ({type(e).__name__}: {e}); one that reads the "
                f"params' structure (a mask) needs the whole tree: take data_parallel's "
                f"mean gradients and a plain optimizer instead") from None
    for one, other, how in ((whole, parts, "its updates of the vector's parts"),
                            (whole, matrix, "its update of the same entries as a 2 x 2 matrix"),
                            (nan_whole, nan_parts, "its updates of the vector's parts, one "
                             "holding a NaN")):
        if not np.allclose(one, other, rtol=1e-9, atol=0.0, equal_nan=True):
            raise TypeError(
                f"{name}: the optimizer does not treat entries independently of each other "
                f"and of the leaves' shapes (its update of a vector, {one}, differs from "
                f"{how}, {other}); a sharded optimizer sees only its rank's entries, as flat "
                f"pieces, so it must be elementwise (sgd, adam, adamw without a mask, "
                f"rmsprop, adagrad, schedules, weight decay). Clip by global norm, or mask, "
                f"outside: take data_parallel's mean gradients and a plain optimizer instead")


def _decides(node: Any) -> bool:
    """A state of a transform that skips or steps by all the entries at once: a NaN in one
    rank's entries, or the norm of them all, would decide for that rank alone."""
    return isinstance(node, ApplyIfFiniteState) or (
        isinstance(node, MultiStepsState)
        and (type(node.skip_state) is not tuple or len(node.skip_state) > 0))


class Sharder:
    """Layouts, cuts, buffers and shared windows of one ``parallel.sharded`` optimizer."""

    def __init__(self, name: str, inner: GradientTransformation) -> None:
        self.name, self.inner = name, inner
        self.reducer = Reducer()
        self.cuts: dict[tuple[int, int, int], Cut] = {}  # (layout digest, size, rank)
        self.pairs: dict[tuple[int, int], int] = {}  # grads' and params' layout digests
        self.inners: dict[tuple[int, int, int], set[Any]] = {}  # cut: inner states' keys
        self.made: tuple[tuple[int, int, int], Any] | None = None  # (cut, inner) last returned

    def cut(self, lay: Layout, size: int, rank: int) -> Cut:
        return memo(self.cuts, (lay.digest, size, rank), lambda: cut(lay.bounds, size, rank))

    def pair_digest(self, grads: Layout, params: Layout) -> int:
        """One digest of both layouts, for the agreement across ranks."""
        return memo(self.pairs, (grads.digest, params.digest),
                    lambda: digest([(str(grads.digest), str(params.digest))]))

    def check_inner(self, inner: Any, lay: Layout, size: int, rank: int,
                    pieces: tuple[NDArray[Any], ...]) -> None:
        """Raise what the wrapped optimizer's update would for an inner state unlike the one
        its init makes for this rank's ``pieces``: that update runs between the sum and the
        gather, where one rank's error would leave the others waiting. One built otherwise
        that the update takes (tried on zero gradients) passes, and is remembered."""
        where = (lay.digest, size, rank)
        if self.made is not None and self.made[1] is inner and self.made[0] == where:
            return  # what the last step returned, for this cut: the training loop's case
        known = memo(self.inners, where, set)
        key = signature(inner)[1]
        if key in known:
            return
        if key != signature(self.inner.init(pieces))[1]:
            self.inner.update(inner, tuple(np.zeros_like(p) for p in pieces), pieces)
        known.add(key)

    def check_shapes(self, leaves: list[Any]) -> None:
        """Raise TypeError if the optimizer keeps another state for a leaf than for its
        entries laid flat (Adafactor factors a matrix from 128 rows and columns): it reads
        the leaves' shapes, which the flat pieces a sharded optimizer sees do not carry.
        One zero leaf of each matrix shape at a time, at init only."""
        seen: set[tuple[Any, ...]] = set()
        for x in leaves:
            key = (np.shape(x), np.asarray(x).dtype)
            if len(key[0]) < 2 or key in seen:
                continue
            seen.add(key)
            a = np.zeros(*key)
            shaped, flat = (sum(np.size(s) for s in pytree.leaves(self.inner.init((v,))))
                            for v in (a, a.reshape(-1)))
            if shaped != flat:
                raise TypeError(
                    f"{self.name}: the optimizer keeps a state of {shaped} entries for a "
                    f"{key[0]} leaf but of {flat} for its entries laid flat: it reads the "
                    f"leaves' shapes (a factored second moment, as adafactor's), which the "
                    f"flat pieces of a sharded optimizer do not carry; take data_parallel's "
                    f"mean gradients and a plain optimizer instead")

    def weight(self, examples: Any) -> int:
        """``examples`` as the weight the agreement carries: -1 for None, else an int in
        [0, INT_BOUND)."""
        if examples is None:
            return -1
        weight = int_arg(examples, self.name, "examples")
        if weight >= INT_BOUND:  # it travels as an int64 with the agreement over ranks
            raise ValueError(f"{self.name}: examples={shown(weight)} is no example count of "
                             f"a batch; give this rank's number of examples, len(x)")
        return weight

    def refusal(self, what: str, lay: Layout) -> TypeError:
        return TypeError(f"{self.name}: the {what} leaf at {lay.refused}; the sharded "
                         f"optimizer works on floating-point params and grads only")

    def init(self, comm: Comm | None, params: Tree) -> ShardedState:
        leaves, lay = self.reducer.layout(params)
        if lay.refused is not None:
            raise self.refusal("params", lay)
        self.check_shapes(leaves)
        rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
        c = self.cut(lay, size, rank)
        flat = [ravel(x) for x in leaves]
        mine = tuple(flat[i][a:b] for i, a, b, _ in c.mine)
        return ShardedState(self.inner.init(mine),
                            np.array([c.lo, c.hi, lay.bounds[-1]], np.int64), zero_count())

    def step(self, comm: Comm | None, state: Any, grads: Tree, params: Tree,
             examples: Any) -> tuple[Tree, ShardedState]:
        g_leaves, lay = self.reducer.layout(grads)
        p_leaves, p_lay = self.reducer.layout(params)
        rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
        n = lay.bounds[-1]
        c = self.cut(lay, size, rank)
        lo, hi = c.lo, c.hi
        same = p_lay.digest == lay.digest  # (else: raised below, on every rank)
        p_mine = tuple(ravel(p_leaves[i])[a:b] for i, a, b, _ in c.mine) if same else ()
        spanned = False
        try:  # a bad state fails on every rank alike, through the agreement's ok below
            check_state(self.name, state, ShardedState, "step")
            count, state_error = read_count(self.name, state.count), None
            spanned = ravel(state.span).tolist() == [lo, hi, n]
            if comm is not None and same and spanned:
                # (another cut's state: the clearer error below, naming the cut)
                self.check_inner(state.inner, lay, size, rank, p_mine)
        except (TypeError, ValueError) as err:
            count, state_error = 0, err
        try:  # a bad count goes into the agreement as NOT_AN_INT: every rank raises
            examples = self.weight(examples)
        except (TypeError, ValueError) as err:
            examples, state_error = NOT_AN_INT, err
        if state_error is not None and comm is None:
            raise state_error
        state_ok = state_error is None and spanned
        floats = lay.refused is None and p_lay.refused is None
        scale, window, out, bad = 1.0, None, None, [] if state_ok else [0]
        if comm is not None:  # every check below then fails alike on every rank
            try:
                scale, window, out, bad = self.reducer.negotiate(
                    comm, n, lay.dtype, self.pair_digest(lay, p_lay),
                    {"grads": grads, "params": params}, self.name.removeprefix("parallel."),
                    examples, ok=state_ok and floats)
            except (TypeError, ValueError):  # another rank's fault: this rank's own first
                if state_error is not None:
                    raise state_error from None
                raise
        if not floats:  # agree compared the dtypes: the same on every rank
            raise self.refusal("grads" if lay.refused else "params",
                                 lay if lay.refused else p_lay)
        if comm is None and examples == 0:  # as negotiate finds over ranks (-1: no count)
            raise ValueError(f"{self.name}: no rank had any examples; give every step at "
                             f"least one example")
        # before the state: grads that do not fit the params make any state look wrong, and
        # the pair's digest went into the agreement, so this fails on every rank alike
        if p_lay.digest != lay.digest:
            try:
                pytree.check_same(grads, params, ("grads", "params"), shapes=True)
            except ValueError as err:
                raise ValueError(f"{self.name}: {err}") from None
            raise ValueError(f"{self.name}: grads and params differ in their dtypes; give "
                             f"the grads of these params (funcdl.value_and_grad does)")
        if bad and comm is None:
            raise ValueError(f"{self.name}: the state covers entries "
                             f"{np.ravel(state.span).tolist()} (start, stop, total), but "
                             f"this single process owns all {n}: call init(params) with "
                             f"the same communicator")
        if state_error is not None:  # this rank's own, more precise; the others' below
            raise state_error
        if bad:
            raise ValueError(
                f"{self.name}: the state of rank(s) {bad} was not made for this "
                f"communicator's cut of the params ({size} ranks, {n} entries) by this "
                f"optimizer's init, or holds no valid count: call init(params) on every "
                f"rank of the communicator you step with")
        if out is None:
            out = self.reducer.take(n, lay.dtype)
        flat_g = [ravel(x) for x in g_leaves]
        total_g = self.reducer.take(hi - lo, lay.dtype)
        if window is not None:  # the others' entries of my gradients into my slot
            slot = window.slots[rank]
            for i, a, b, at in c.theirs:
                scaled(flat_g[i][a:b], scale, slot[at:at + b - a])
            window.win.Fence()
        if comm is None or window is not None:
            for i, a, b, at in c.mine:
                scaled(flat_g[i][a:b], scale, total_g[at - lo:at - lo + b - a])
            if window is not None:
                for other in range(size):
                    if other != rank:
                        np.add(total_g, window.slots[other][lo:hi], out=total_g)
        else:
            buf = self.reducer.take(n, lay.dtype)
            Reducer.pack(g_leaves, lay, (), scale, buf)
            comm.Reduce_scatter(buf, total_g, recvcounts=c.counts, op=mpi().SUM)
            del buf
        # the optimizer on my entries, and my entries of the new params into out
        g_mine = tuple(total_g[at - lo:at - lo + b - a] for _, a, b, at in c.mine)
        updates, inner = self.inner.update(state.inner, g_mine, p_mine)
        for (_, a, b, at), p, u in zip(c.mine, p_mine, updates):
            np.add(p, u, out=out[at:at + b - a])
        if window is not None:
            window.win.Fence()  # every rank's entries written
        elif comm is not None:
            comm.Allgatherv(mpi().IN_PLACE, [out, (c.counts, c.displs)])
        self.made = ((lay.digest, size, rank), inner)
        return as_tree(out, p_lay, params), ShardedState(inner, state.span,
                                                         next_count(count))
