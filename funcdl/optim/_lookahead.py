"""Lookahead, as optax's: a fast optimizer steps ``sync_period`` times, then the slow params
move ``slow_step_size`` of the way towards the fast ones and the fast ones jump there.

The params are a pair, ``LookaheadParams(fast, slow)``, a NamedTuple (so ``funcdl.tree``
maps it and ``funcdl.io`` saves and loads it like any other tree), and so are the updates::

    opt = lookahead(adam(1e-3), sync_period=5, slow_step_size=0.5)
    params = LookaheadParams.init_synced(params)     # fast = slow = the params
    state = opt.init(params)
    grads = grad_fn(params.fast, x, y)               # gradients at the fast params
    updates, state = opt.update(state, grads, params)
    params = apply_updates(params, updates)          # both halves move
    # evaluate with params.slow

Apply the updates unchanged: they keep the two halves in step (optax's warning too)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl._args import bool_arg
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    check_state,
    check_transforms,
    leafwise,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    real_param,
)
from funcdl.optim._keywords import check_extra, extra_keywords, show_keywords
from funcdl.optim._schedules import check_steps

__all__ = ["LookaheadParams", "LookaheadState", "lookahead"]

Tree = Any


class LookaheadParams(NamedTuple):
    """Lookahead's params: ``fast`` (take gradients here) and ``slow`` (evaluate these)."""

    fast: Tree
    slow: Tree

    @classmethod
    def init_synced(cls, params: Tree) -> LookaheadParams:
        """``LookaheadParams(fast=params, slow=params)``: the pair before the first step."""
        return cls(fast=params, slow=params)


class LookaheadState(NamedTuple):
    fast_state: Any  # the fast optimizer's state
    steps_since_sync: Count  # fast steps since the last synchronisation, mod sync_period


def _pair(name: str, params: Any) -> LookaheadParams:
    if isinstance(params, LookaheadParams):
        return params
    got = "None" if params is None else f"{type(params).__name__}"
    raise TypeError(f"{name}: params must be a LookaheadParams(fast, slow), got {got}; wrap "
                    f"the params once with LookaheadParams.init_synced(params), apply the "
                    f"updates to that pair, and take gradients at params.fast")


def lookahead(fast_optimizer: GradientTransformation, sync_period: int,
              slow_step_size: float, reset_state: bool = False) -> GradientTransformation:
    """optax's ``lookahead``. ``fast_optimizer`` turns the grads (taken at ``params.fast``)
    into ``u``; ``d = fast + u - slow``; at every ``sync_period``-th update
    (``steps_since_sync = sync_period - 1``) the updates are ``slow: α·d``, ``fast: u -
    (1-α)·d`` (both land on ``slow + α·d``, α = ``slow_step_size``), and with
    ``reset_state`` the fast state restarts from ``fast_optimizer.init(params.fast)``;
    otherwise ``slow: 0``, ``fast: u``. Returns updates as ``LookaheadParams(fast, slow)``.

    ``init`` and ``update`` take ``LookaheadParams`` (see the module's example); optax's
    ``init`` also takes bare params, with a logged warning, which funcdl refuses. Keywords
    ``update`` gets (``value=``) go to the fast optimizer. State
    ``LookaheadState(fast_state, steps_since_sync)``.
    """
    name = "lookahead"
    check_transforms(name, [fast_optimizer], ["fast_optimizer"])
    period = check_steps(name, "sync_period", sync_period, positive=True)
    alpha = check_float(name, "slow_step_size", slow_step_size, high=1.0)
    reset = bool_arg(reset_state, name, "reset_state")
    takes = (extra_keywords(fast_optimizer.update),)

    def init(params: Tree) -> LookaheadState:
        pair = _pair(f"{name}.init", params)
        check_float_params(f"{name}.init", pair)  # here, so that errors name lookahead
        return LookaheadState(fast_optimizer.init(pair.fast), zero_count())

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[LookaheadParams, LookaheadState]:
        where = f"{name}.update"
        check_state(name, state, LookaheadState)
        pair = _pair(where, params)
        if extra:
            check_extra(name, extra, takes)
        steps = read_count(where, state.steps_since_sync) % period
        u, fast_state = fast_optimizer.update(state.fast_state, grads, pair.fast, **extra)
        if steps != period - 1:
            slow = leafwise(where, lambda x, s: np.zeros_like(x, real_param(s).dtype),
                            (u, pair.slow), ("updates", "params.slow"))[0]
            return LookaheadParams(u, slow), LookaheadState(fast_state,
                                                            np.int64(steps + 1))

        def leaf(f: Any, x: Any, s: Any) -> tuple[Any, Any]:
            real_grad(x)
            d = real_param(f) + x - real_param(s)
            return x - (1.0 - alpha) * d, alpha * d

        with np.errstate(all="ignore"):  # inf - inf: NaN, silently
            fast_u, slow_u = leafwise(where, leaf, (pair.fast, u, pair.slow),
                                      ("params.fast", "updates", "params.slow"), n_out=2)
        if reset:
            fast_state = fast_optimizer.init(pair.fast)
        return LookaheadParams(fast_u, slow_u), LookaheadState(fast_state, np.int64(0))

    return transform(name, init, show_keywords(update, takes))
