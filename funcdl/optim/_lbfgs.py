"""optax's L-BFGS: ``scale_by_lbfgs`` (the two-loop recursion on a ring buffer of the last
``memory_size`` (s, y) pairs) and the ``lbfgs`` alias (it, then a line search). The line
searches are in ``_linesearch`` and ``_zoom``; the pytree checks they share in
``_linesearch``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl._args import bool_arg, int_arg
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    make_named_chain,
    next_count,
    read_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_float_or_schedule, check_float_params
from funcdl.optim._linesearch import flat_grads
from funcdl.optim._transforms import scale, scale_by_learning_rate
from funcdl.optim._zoom import scale_by_zoom_linesearch

__all__ = ["ScaleByLBFGSState", "lbfgs", "scale_by_lbfgs"]

Tree = Any


class ScaleByLBFGSState(NamedTuple):
    """optax's fields, in its order. Vectors are the raveled trees (``funcdl.tree.ravel``
    order), in the params' (promoted) float dtype; ``m`` is ``memory_size``, ``n`` the
    number of param entries."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    params: Any  # (n,): the params at the last update
    updates: Any  # (n,): the incoming updates (gradients) at the last update
    diff_params_memory: Any  # (m, n): s_k = w_{k+1} - w_k, slot k % m (a ring buffer)
    diff_updates_memory: Any  # (m, n): y_k = g_{k+1} - g_k, same slots
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
        w = flat_grads(f"{name}.init", params, params, "params")[0]
        z = np.zeros_like(w)
        try:
            S, Y = np.zeros((2, m, w.size), w.dtype)
        except (ValueError, MemoryError):  # NumPy's "maximum dimension" or out of memory
            raise ValueError(f"{name}.init: memory_size={m} pairs of {w.size} params do not "
                             f"fit in memory; pass a smaller memory_size (optax's default: "
                             f"10)") from None
        return ScaleByLBFGSState(zero_count(), z, z.copy(), S, Y, np.zeros(m, w.dtype))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByLBFGSState]:
        where = f"{name}.update"
        check_state(name, state, ScaleByLBFGSState)
        k = read_count(where, state.count)
        w_prev, g_prev, S, Y, rho = _read_state(where, state, m)
        g, w, unravel = flat_grads(where, grads, params, "grads", w_prev.dtype, w_prev.size)
        with np.errstate(all="ignore"):  # inf / NaN grads give inf / NaN steps, as optax
            S, Y, rho = S.copy(), Y.copy(), rho.copy()  # nothing passed in is mutated
            slot = (k - 1) % m
            if k > 0:
                s, y = w - w_prev, g - g_prev
                sy = y @ s
                S[slot], Y[slot], rho[slot] = s, y, (0.0 if sy == 0.0 else 1.0 / sy)
            else:  # no pair before the first step: a zero one, with no effect
                S[slot], Y[slot], rho[slot] = 0.0, 0.0, 0.0
            if not scale_init:
                gamma = w.dtype.type(1.0)
            elif k > 0:
                yy = Y[slot] @ Y[slot]
                gamma = (Y[slot] @ S[slot]) / yy if yy > 0.0 else w.dtype.type(1.0)
            else:  # optax's first step: at most a unit step, whatever the gradient's scale
                gamma = np.minimum(w.dtype.type(1.0), w.dtype.type(1.0) / np.sqrt(g @ g))
            order = (k + np.arange(m)) % m  # the slots, oldest pair to newest
            u = two_loop(g, S, Y, rho, gamma, order)
        new = ScaleByLBFGSState(next_count(k), w, g, S, Y, rho)
        return unravel(u), new

    return transform(name, init, update)


def two_loop(g: Any, S: Any, Y: Any, rho: Any, gamma: Any, order: Any) -> Any:
    """``H g`` by the two-loop recursion (Nocedal & Wright Alg. 7.4), ``S``, ``Y`` (m, n)
    the pairs, ``order`` the slots oldest to newest. A loop over the memory: each alpha_i
    (newest first) reads the vector the previous one updated, and each beta_i (oldest
    first) likewise, so the recursion is sequential in i; each step is two O(n) BLAS-1
    calls, 4mn flops in all (a Gram-matrix form, S Y^T, would cost m^2 n and round
    differently from optax's, which this order matches)."""
    q = g
    alphas = np.zeros_like(rho)
    for i in order[::-1]:
        alphas[i] = rho[i] * (S[i] @ q)
        q = q - alphas[i] * Y[i]
    r = gamma * q
    for i in order:
        beta = rho[i] * (Y[i] @ r)
        r = r + (alphas[i] - beta) * S[i]
    return r


def _read_state(where: str, state: ScaleByLBFGSState, m: int) -> tuple[Any, ...]:
    """The state's arrays, or a ValueError naming ``where`` if their shapes do not agree
    with ``memory_size`` and each other (a state made for other params or settings)."""
    arrays = [np.asarray(getattr(state, f)) for f in ScaleByLBFGSState._fields[1:]]
    w = arrays[0]
    n = w.size if w.ndim == 1 else -1
    want = [(n,), (n,), (m, n), (m, n), (m,)]
    for f, x, shape in zip(ScaleByLBFGSState._fields[1:], arrays, want, strict=True):
        if x.shape != shape or x.dtype.kind != "f" or x.dtype != w.dtype:
            raise ValueError(f"{where}: the state's {f} has shape {x.shape} and dtype "
                             f"{x.dtype}, expected {shape} in {w.dtype} (memory_size={m}); "
                             f"pass the state made by this optimizer's init for these params")
    return tuple(arrays)


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
                                    value_and_grad_fn=lambda p: vg(p, x, y)[...])

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
