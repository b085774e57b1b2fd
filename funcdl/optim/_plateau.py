"""optax.contrib's ``reduce_on_plateau``: a transform scaling the updates by a factor that
drops when the loss stops improving (torch's ``ReduceLROnPlateau``, as a transform). Its
update takes the loss as ``value=``; ``chain`` and ``named_chain`` forward it (see
``_keywords``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl._args import bool_arg
from funcdl.optim._base import GradientTransformation, check_state, read_count, transform
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    float_dtypes,
    needed_loss,
    state_float,
)
from funcdl.optim._schedules import check_steps
from funcdl.optim._transforms import multiply_grads, step_may_warn, step_multiplier

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]

Tree = Any


class ReduceLROnPlateauState(NamedTuple):
    """optax's fields, in its order; every one a NumPy scalar."""

    scale: Any  # the factor on the updates, in the params' lowest float dtype
    best_value: Any  # the best mean loss so far (inf at first), in their highest
    plateau_count: Any  # int64: accumulations since the best one, at most patience
    cooldown_count: Any  # int64: accumulations still to skip after a reduction
    count: Any  # int64: losses in the accumulation under way (< accumulation_size)
    avg_value: Any  # their mean, in the params' highest float dtype


def reduce_on_plateau(factor: float = 0.1, patience: int = 10, rtol: float = 1e-4,
                      atol: float = 0.0, cooldown: int = 0, accumulation_size: int = 1,
                      min_scale: float = 0.0, apply_next: bool = False
                      ) -> GradientTransformation:
    """optax.contrib's ``reduce_on_plateau``: ``u = scale·g``, ``scale`` starting at 1.

    ``update(state, grads, params, value=loss)``. Losses are averaged over
    ``accumulation_size`` updates; at the end of each accumulation, with ``a`` its mean and
    ``b`` the best one so far: an improvement is ``a < (1 - rtol)·b - atol`` (then ``b = a``
    and the plateau count resets, else it grows by 1); during a cooldown the plateau count
    stays 0 and the cooldown shrinks by 1; otherwise, when the plateau count reaches
    ``patience``, ``scale = max(scale·factor, min_scale)``, the count resets and a cooldown
    of ``cooldown`` accumulations starts. By default (optax's timing) the new scale applies
    to this update already, the one that completes the accumulation; ``apply_next=True``
    applies it from the next update on (torch's timing), this one keeping the old scale.

    torch's ``ReduceLROnPlateau(mode='min', threshold_mode='rel', threshold=rtol)``, stepped
    once per epoch on the epoch's mean loss, differs in three ways: its ``patience`` is one
    less (it reduces after more than ``patience`` bad epochs, this after ``patience``); its
    ``scheduler.step(loss)`` comes after the epoch's last ``optimizer.step()``, so its new
    lr applies from the first update of the next epoch, one update later than optax's
    timing; and its ``eps=1e-8`` skips a reduction that would change the lr by no more than
    that (an lr at most ``1e-8 / (1 - factor)``, 1.1e-8 at factor 0.1, or one within 1e-8
    of its ``min_lr``). Its ``min_lr`` is ``lr0·min_scale``. An epoch of
    ``n`` updates, each with its batch loss, ports exactly (to float rounding of the mean)
    as ``chain(sgd(lr0), reduce_on_plateau(factor, patience + 1, rtol=threshold,
    cooldown=cooldown, accumulation_size=n, apply_next=True))``; for epochs of varying
    length or another epoch loss, keep it out of the chain: update its own state once per
    epoch, ``plateau.update(pstate, grads, value=epoch_loss)`` (the updates discarded), and
    set ``inject_hyperparams(sgd)(lr=lr0)``'s ``state.hyperparams['lr']`` to
    ``lr0·pstate.scale`` before the next epoch. State ``ReduceLROnPlateauState(scale,
    best_value, plateau_count, cooldown_count, count, avg_value)``.

    Example: ``chain(adam(1e-3), reduce_on_plateau(patience=5))``, updated with
    ``opt.update(state, grads, params, value=loss)``.
    """
    name = "reduce_on_plateau"
    factor = check_float(name, "factor (the scale's multiplier at a plateau)", factor,
                         low=0.0, high=1.0, open_high=True)
    if factor == 0.0:
        raise ValueError(f"{name}: factor must be in (0, 1), got 0.0; 0.1 divides the "
                         f"scale by 10 at each plateau")
    patience = check_steps(name, "patience", patience, positive=True)
    rtol = check_float(name, "rtol", rtol, high=1.0)
    atol = check_float(name, "atol", atol)
    if rtol == 0.0 and atol == 0.0:
        raise ValueError(f"{name}: rtol and atol are both 0, so that any decrease, however "
                         f"small, counts as an improvement; pass rtol=1e-4 (torch's "
                         f"threshold) or an atol > 0")
    cooldown = check_steps(name, "cooldown", cooldown)
    accumulation_size = check_steps(name, "accumulation_size", accumulation_size, positive=True)
    min_scale = check_float(name, "min_scale", min_scale, high=1.0)
    apply_next = bool_arg(apply_next, name, "apply_next")
    keep = 1.0 - rtol

    def init(params: Tree) -> ReduceLROnPlateauState:
        check_float_params(f"{name}.init", params)
        low, high = float_dtypes(params)
        zero = np.int64(0)
        return ReduceLROnPlateauState(low.type(1.0), high.type(np.inf), zero, zero, zero,
                                      high.type(0.0))

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None
               ) -> tuple[Tree, ReduceLROnPlateauState]:
        where = f"{name}.update"
        check_state(name, state, ReduceLROnPlateauState)
        loss = needed_loss(where, value)
        s, best, avg = (state_float(where, f, getattr(state, f))
                        for f in ("scale", "best_value", "avg_value"))
        used = s  # the scale of this update with apply_next: a reduction waits for the next
        plateau = read_count(where, state.plateau_count)
        cool = read_count(where, state.cooldown_count)
        n = read_count(where, state.count) + 1
        with np.errstate(all="ignore"):  # inf and NaN losses: never an improvement
            # the running mean in the state's dtype, as optax's: (n-1)·a + loss, over n
            avg = (avg * (n - 1) + avg.dtype.type(loss)) / n
            improved = bool(avg < keep * best - atol)  # 0·inf = NaN for rtol=1, as optax
        if n >= accumulation_size:
            if improved:
                best = avg.astype(best.dtype)
            bad = 0 if improved else plateau + 1
            if cool > 0:  # a cooldown: bad accumulations are not counted
                plateau, cool = 0, cool - 1
            elif bad >= patience:
                plateau, cool = 0, cooldown
                s = np.maximum(s * factor, min_scale).astype(s.dtype)
            else:
                plateau, cool = bad, 0
            n, avg = 0, avg.dtype.type(0.0)
        new = ReduceLROnPlateauState(s, best, np.int64(plateau), np.int64(cool),
                                     np.int64(n), avg)
        step = float(used if apply_next else s)
        return multiply_grads(name, step_multiplier(step), grads, params, step_may_warn(step)), new

    return transform(name, init, update)
