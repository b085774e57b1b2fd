"""optax's L-BFGS: ``scale_by_lbfgs`` (the two-loop recursion on a ring buffer of the last
``memory_size`` (s, y) pairs) and the ``lbfgs`` alias (it, then a line search). The line
searches are in ``_linesearch`` and ``_zoom``; the pytree checks they share in
``_linesearch``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, int_arg
from funcdl._blas import product
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    next_count,
    read_count,
    transform,
    zero_count,
)
from funcdl.optim._chain import make_named_chain
from funcdl.optim._checks import check_float_or_schedule, check_float_params
from funcdl.optim._linesearch import flat_grads
from funcdl.optim._transforms import scale, scale_by_learning_rate
from funcdl.optim._zoom import scale_by_zoom_linesearch

__all__ = ["ScaleByLBFGSState", "lbfgs", "scale_by_lbfgs"]

Tree = Any


class ScaleByLBFGSState(NamedTuple):
    """optax's fields, in its order. Vectors are the raveled trees (``funcdl.tree.ravel``
    order), in the params' (promoted) float dtype; ``m`` is ``memory_size``, ``n`` the
    number of param entries.

    The memories are tuples of ``m`` rows ``(n,)``, where optax keeps ``(m, n)`` arrays:
    an update replaces one row, and a pure update of an array must first copy all ``m``
    rows of both (~100 ms of a 210-260 ms update at m=10, n=2e6 float32, a one-off timing
    on 2 cores), while a new tuple shares the ``m - 1`` untouched rows with the old state
    and costs nothing. ``np.stack`` of a memory gives optax's array."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    params: Any  # (n,): the params at the last update
    updates: Any  # (n,): the incoming updates (gradients) at the last update
    diff_params_memory: Any  # m rows (n,): s_k = w_{k+1} - w_k, row k % m (a ring buffer)
    diff_updates_memory: Any  # m rows (n,): y_k = g_{k+1} - g_k, same rows
    weights_memory: Any  # (m,): rho_k = 1 / <s_k, y_k> (0 where that is 0)


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True
                   ) -> GradientTransformation:
    """optax's ``scale_by_lbfgs``: ``u = H_k g``, ``H_k`` the L-BFGS inverse-Hessian
    approximation from the last ``memory_size`` pairs (two-loop recursion, Nocedal & Wright
    Alg. 7.4). Shapes: any tree of float arrays; ``u`` has the grads' structure and dtypes.

    At update ``k`` (``count``), first the pair ``s = w_k - w_{k-1}``, ``y = g_k - g_{k-1}``,
    ``rho = 1/<s, y>`` (0 when ``<s, y> = 0``; kept, as optax, when negative) goes into slot
    ``(k-1) % memory_size`` (at ``k = 0``: zeros, ``rho = 0``, so it does nothing), then
    ``H_k = V^T H V + rho s s^T`` over the pairs oldest to newest, ``V = I - rho y s^T``,
    from ``H = gamma I``: ``gamma = <s, y>/<y, y>`` of the newest pair (1 if ``y = 0``), at
    ``k = 0`` ``min(1, 1/||g||)``; 1 throughout with ``scale_init_precond=False``. Needs the
    params. The step is ``+H g`` (a descent needs ``scale(-1)`` or a line search after it,
    as ``lbfgs``). No vjp: an optimizer transform. State ``ScaleByLBFGSState``.
    """
    name = "scale_by_lbfgs"
    m = int_arg(memory_size, name, "memory_size (the number of (s, y) pairs kept)",
                minimum=1)
    scale_init = bool_arg(scale_init_precond, name, "scale_init_precond")

    def init(params: Tree) -> ScaleByLBFGSState:
        check_float_params(f"{name}.init", params)
        w = tree.ravel(params)[0]
        z = np.zeros_like(w)
        # one zero row shared by every slot of both memories: updates replace rows, never
        # write into one
        try:
            zeros = (np.zeros_like(w),) * m
        except (OverflowError, MemoryError):  # m past an index, or m pointers past memory
            raise ValueError(f"{name}.init: memory_size={m} pairs of {w.size} params do not "
                             f"fit in memory; pass a smaller memory_size (optax's default: "
                             f"10)") from None
        return ScaleByLBFGSState(zero_count(), z, z.copy(), zeros, zeros, np.zeros(m, w.dtype))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByLBFGSState]:
        where = f"{name}.update"
        check_state(name, state, ScaleByLBFGSState)
        k = read_count(where, state.count)
        w_prev, g_prev, S, Y, rho = _read_state(where, state, m)
        g, w, unravel = flat_grads(where, grads, params, "grads", w_prev.dtype, w_prev.size)
        with np.errstate(all="ignore"):  # inf / NaN grads give inf / NaN steps, as optax
            rho = rho.copy()  # nothing passed in is mutated
            slot = (k - 1) % m
            if k > 0:
                s, y = w - w_prev, g - g_prev
                sy = product(np.matmul, y, s)
                rho[slot] = 0.0 if sy == 0.0 else 1.0 / sy
            else:  # no pair before the first step: a zero one, with no effect
                s = y = np.zeros_like(w)
                rho[slot] = 0.0
            S = (*S[:slot], s, *S[slot + 1:])  # a new tuple: the other rows shared
            Y = (*Y[:slot], y, *Y[slot + 1:])
            if not scale_init:
                gamma = w.dtype.type(1.0)
            elif k > 0:
                yy = product(np.matmul, y, y)
                gamma = sy / yy if yy > 0.0 else w.dtype.type(1.0)
            else:  # optax's first step: at most a unit step, whatever the gradient's scale
                gamma = np.minimum(w.dtype.type(1.0),
                                   w.dtype.type(1.0) / np.sqrt(product(np.matmul, g, g)))
            order = (k + np.arange(m)) % m  # the slots, oldest pair to newest
            u = two_loop(g, S, Y, rho, gamma, order)
        new = ScaleByLBFGSState(next_count(k), w, g, S, Y, rho)
        return unravel(u), new

    return transform(name, init, update)


def two_loop(g: Any, S: Any, Y: Any, rho: Any, gamma: Any, order: Any) -> Any:
    """``H g`` by the two-loop recursion (Nocedal & Wright Alg. 7.4), ``S``, ``Y`` the
    pairs (m rows (n,): a tuple, or an (m, n) array), ``order`` the slots oldest to newest.
    A loop over the memory: each alpha_i (newest first) reads the vector the previous one
    updated, and each beta_i (oldest first) likewise, so the recursion is sequential in i;
    each step is two O(n) BLAS-1 calls, 4mn flops in all (a Gram-matrix form, S Y^T, would
    cost m^2 n and round differently from optax's, which this order matches)."""
    q = g
    alphas = np.zeros_like(rho)
    for i in order[::-1]:
        alphas[i] = rho[i] * product(np.matmul, S[i], q)
        q = q - alphas[i] * Y[i]
    r = gamma * q
    for i in order:
        beta = rho[i] * product(np.matmul, Y[i], r)
        r = r + (alphas[i] - beta) * S[i]
    return r


def _read_state(where: str, state: ScaleByLBFGSState, m: int) -> tuple[Any, ...]:
    """``(w, g, S, Y, rho)``, ``S`` and ``Y`` tuples of ``m`` rows, or a ValueError naming
    ``where`` if a field's shape or dtype does not agree with ``memory_size`` and the
    others (a state made for other params or settings)."""
    w, g, rho = (np.asarray(x) for x in (state.params, state.updates, state.weights_memory))
    n = w.size if w.ndim == 1 else -1

    def check(field: str, x: Any, want: tuple[int, ...]) -> None:
        if x.shape != want or x.dtype.kind != "f" or x.dtype != w.dtype:
            raise ValueError(f"{where}: the state's {field} has shape {x.shape} and dtype "
                             f"{x.dtype}, expected {want} in {w.dtype} (memory_size={m}); "
                             f"pass the state made by this optimizer's init for these params")

    check("params", w, (n,))  # in the fields' order, so that the first wrong one is named
    check("updates", g, (n,))
    S = _memory(where, state, "diff_params_memory", m, n, w.dtype)
    Y = _memory(where, state, "diff_updates_memory", m, n, w.dtype)
    check("weights_memory", rho, (m,))
    return w, g, S, Y, rho


def _memory(where: str, state: ScaleByLBFGSState, field: str, m: int, n: int, dtype: Any
            ) -> tuple[Any, ...]:
    """The state's ``field``, a tuple of ``m`` rows ``(n,)`` in ``dtype`` (an ndarray row
    is passed on as it is, so that the rows stay shared), or a ValueError naming it."""
    memory = getattr(state, field)
    if isinstance(memory, tuple):
        rows = tuple(np.asarray(r) for r in memory)
        if len(rows) == m and all(r.shape == (n,) and r.dtype == dtype for r in rows):
            return rows
        shapes, dtypes = {r.shape for r in rows}, {str(r.dtype) for r in rows}
        got = (f"shape {(len(rows), *shapes.pop())} and dtype {dtypes.pop()}"
               if len(shapes) == 1 and len(dtypes) == 1 else
               f"{len(rows)} rows of shapes {sorted(shapes)} and dtypes {sorted(dtypes)}")
    else:
        got = f"a {type(memory).__name__} of shape {np.shape(memory)}"
    raise ValueError(f"{where}: the state's {field} has {got}, expected a tuple of "
                     f"memory_size={m} rows ({n},) in {dtype}, i.e. shape ({m}, {n}); pass "
                     f"the state made by this optimizer's init for these params")


ZOOM = scale_by_zoom_linesearch(20, initial_guess_strategy="one")


def lbfgs(learning_rate: ScalarOrSchedule | None = None, memory_size: int = 10,
          scale_init_precond: bool = True,
          linesearch: GradientTransformation | None = ZOOM) -> GradientTransformation:
    """optax's ``lbfgs``: ``named_chain(('lbfgs', scale_by_lbfgs(memory_size,
    scale_init_precond)), ('scale', scale(-1) or scale_by_learning_rate(learning_rate)),
    ('linesearch', linesearch))``: ``u = -eta · lr · H g``, ``eta`` from the line search.

    ``linesearch``: by default ``scale_by_zoom_linesearch(max_linesearch_steps=20,
    initial_guess_strategy='one')`` (optax's; a transform is pure, so one serves all); any
    transform (``scale_by_backtracking_linesearch(...)``), or None for none (then pass
    ``learning_rate``, and no keywords to update). With a line search, call::

        updates, state = opt.update(state, grads, params, value=loss, grad=grads,
                                    value_and_grad_fn=lambda p: vg(p, x, y))

    ``value_and_grad_fn(params) -> (loss, grads)`` (the zoom search needs gradients at trial
    points; the backtracking one takes ``value_fn=`` instead). ``state.states['linesearch']``
    holds ``value`` and ``grad`` at the new params: reuse them as the next call's.
    """
    name = "lbfgs"
    first = scale_by_lbfgs(memory_size, scale_init_precond)
    base = (scale(-1.0) if learning_rate is None else
            scale_by_learning_rate(check_float_or_schedule(name, "learning_rate", learning_rate,
                                                        "learning_rate")))
    stages = [("lbfgs", first), ("scale", base)]
    if linesearch is not None:
        stages.append(("linesearch", linesearch))
    return make_named_chain(name, stages)
