"""SAM, sharpness-aware minimisation (Foret et al. 2021), as ``optax.contrib.sam``.

In the default (transparent) mode the params trajectory itself holds the adversarial
steps: of every ``sync_period`` updates, the first ``sync_period - 1`` are the adversarial
optimizer's ascent steps away from the params saved at the start of the period, and the
last one jumps back to those params and applies the outer optimizer's update of the
gradient taken at the adversarial point. Take gradients at the params and apply every
update, as with any optimizer; evaluate at the params after a last (outer) step, i.e. when
``state.steps_since_sync == 0``::

    opt = sam(sgd(0.1), chain(normalize(), sgd(0.05)), sync_period=2)
    state = opt.init(params)
    for batch in batches:
        grads = grad_fn(params, batch)
        updates, state = opt.update(state, grads, params)
        params = apply_updates(params, updates)

``opaque_mode=True`` hides the adversarial steps: every update takes ``grad_fn=``, a
function ``(params, i) -> grads``, called ``sync_period - 1`` times inside, and returns the
outer update alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    apply_updates,
    check_state,
    check_transforms,
    empty_init,
    leafwise,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._chain import staged
from funcdl.optim._checks import check_float_params, check_grads, needs_params, real_param
from funcdl.optim._global_norm import named_global_norm
from funcdl.optim._schedules import check_steps

__all__ = ["SAMState", "normalize", "sam"]

Tree = Any


class SAMState(NamedTuple):
    """``steps_since_sync``: adversarial steps since the last outer one; the outer and the
    adversarial optimizers' states; ``cache``, the params at the start of the period (the
    outer params; None in opaque mode)."""

    steps_since_sync: Count
    opt_state: Any
    adv_state: Any
    cache: Tree


def _negated(where: str, u: Tree) -> Tree:
    def neg(x: Any) -> Any:
        real_grad(x)
        return -x

    return leafwise(where, neg, (u,), ("updates",))[0]


def sam(optimizer: GradientTransformation, adv_optimizer: GradientTransformation,
        sync_period: int = 2, reset_state: bool = True, opaque_mode: bool = False
        ) -> GradientTransformation:
    """optax.contrib's ``sam``. Transparent mode, at the ``k``-th update of a period
    (``k = steps_since_sync``), ``c`` the cached outer params, ``p`` the params and ``g``
    the grads at ``p``: ``k = 0`` caches ``c = p``; for ``k < sync_period - 1`` the update is
    ``-adv_optimizer(g)`` (an ascent step; it returns descent updates); at ``k =
    sync_period - 1`` it is ``c - p + optimizer(g, params=c)``, and the adversarial state
    restarts from ``adv_optimizer.init(p)`` (``reset_state``) or stays as it was before this
    update. Opaque mode: one call runs the whole period, ``grad_fn(p_adv, i)`` giving the
    grads at the ``i``-th adversarial point, and returns ``optimizer``'s update at ``p``.

    ``sync_period >= 2``: SAM needs at least one adversarial step (optax takes 1, where its
    updates revert every other step: funcdl refuses it).
    ``adv_optimizer`` is usually ``chain(normalize(), sgd(rho))``: SAM's ``rho·g/‖g‖``.
    State ``SAMState(steps_since_sync, opt_state, adv_state, cache)``.
    """
    name = "sam"
    check_transforms(name, [optimizer, adv_optimizer], ["optimizer", "adv_optimizer"])
    period = check_steps(name, "sync_period", sync_period, positive=True)
    if period < 2:  # optax's sync_period=1 reverts every other step; neither is SAM
        raise ValueError(f"{name}: sync_period must be >= 2 (sync_period - 1 adversarial "
                         f"steps, then the outer one), got {period}; sync_period=1 would be "
                         f"plain optimizer; pass >= 2 (2: SAM's one ascent step)")
    reset = bool_arg(reset_state, name, "reset_state")
    opaque = bool_arg(opaque_mode, name, "opaque_mode")

    def init(params: Tree) -> SAMState:
        check_float_params(f"{name}.init", params)
        # a copy: the period's first params must outlive a caller's in-place step
        return SAMState(zero_count(), optimizer.init(params), adv_optimizer.init(params),
                        None if opaque else tree.map(np.array, params))

    def transparent(state: Any, grads: Tree, params: Tree, where: str
                    ) -> tuple[Tree, SAMState]:
        k = read_count(where, state.steps_since_sync) % period
        cache = tree.map(np.array, params) if k == 0 else state.cache  # a copy, as init's
        if cache is None:
            raise ValueError(f"{where}: the state's cache is None (an opaque_mode=True "
                             f"state); pass the state made by this optimizer's init")
        if k < period - 1:
            u, adv_state = staged(where, "adv_optimizer", adv_optimizer, state.adv_state,
                                  grads, params)
            return _negated(where, u), SAMState(np.int64(k + 1), state.opt_state, adv_state,
                                                cache)
        u, opt_state = staged(where, "optimizer", optimizer, state.opt_state, grads, cache)

        def back(c: Any, p: Any, x: Any) -> Any:
            real_grad(x)
            c, p = real_param(c), real_param(p)
            return np.asarray(c - p + x, dtype=p.dtype)

        with np.errstate(all="ignore"):
            out = leafwise(where, back, (cache, params, u), ("state.cache", "params",
                                                               "updates"))[0]
        adv_state = adv_optimizer.init(params) if reset else state.adv_state
        return out, SAMState(np.int64(0), opt_state, adv_state, cache)

    def update(state: Any, grads: Tree, params: Tree = None, *,
               grad_fn: Callable[[Tree, int], Tree] | None = None) -> tuple[Tree, SAMState]:
        where = f"{name}.update"
        check_state(name, state, SAMState)
        needs_params(name, params)
        if not opaque:
            return transparent(state, grads, params, where)
        if not callable(grad_fn):
            raise TypeError(f"{where}: opaque_mode=True needs grad_fn=, a function "
                            f"(params, i) -> grads at those params, got "
                            f"{type(grad_fn).__name__}; pass update(state, grads, params, "
                            f"grad_fn=...) or build sam(..., opaque_mode=False)")
        adv_params, adv_grads, adv_state = params, grads, state.adv_state
        for i in range(period - 1):  # the adversarial steps, sync_period - 1 (usually 1)
            u, adv_state = staged(where, "adv_optimizer", adv_optimizer, adv_state, adv_grads,
                                  adv_params)
            adv_params = apply_updates(adv_params, _negated(where, u))
            adv_grads = grad_fn(adv_params, i)
            check_grads(where, adv_grads, params, "grad_fn's grads")  # shapes, dtypes too
        if reset:
            adv_state = adv_optimizer.init(params)
        out, opt_state = staged(where, "optimizer", optimizer, state.opt_state, adv_grads,
                                params)
        return out, SAMState(zero_count(), opt_state, adv_state, None)

    return transform(name, init, update)


def normalize() -> GradientTransformation:
    """optax.contrib's ``normalize``: ``u = g / ‖g‖``, ``‖g‖`` the global norm over every
    leaf; SAM's ascent direction, ``chain(normalize(), sgd(rho))`` being ``rho·g/‖g‖``. A
    zero gradient gives a zero update (optax's is 0/0, NaN); float32 stays float32. State
    ``EmptyState``."""
    name = "normalize"

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        norm = named_global_norm(f"{name}.update", grads, grads=True)
        if norm == 0.0:  # no direction to ascend in
            return grads, state
        inv = 1.0 / norm  # a NaN or inf norm: NaN or 0 entries, as optax's
        with np.errstate(invalid="ignore"):
            return tree.map(lambda g: g * inv, grads), state

    return transform(name, empty_init(), update)
