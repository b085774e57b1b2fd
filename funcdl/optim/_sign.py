"""Sign-based methods, as optax's: the transforms ``scale_by_sign`` (signSGD's direction),
``scale_by_lion`` (the sign of an interpolated momentum) and ``scale_by_rprop`` (Rprop's
per-entry step sizes, grown or shrunk as the gradient's sign holds or flips; torch's
formulas), and the aliases ``sign_sgd``, ``signum``, ``lion`` and ``rprop`` (torch's
``Rprop`` step for step). Notation as in ``_transforms``: ``g`` the incoming grads, ``u`` the
outgoing step, ``t`` the updates already applied. Each ``update`` refuses grads that are not
real floating point and returns inf and NaN steps for inf and NaN gradients silently, as
optax does; each alias takes ``lr`` first (DESIGN.md's name) and names itself in its errors."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._alias import Stages, append_weight_decay, make_alias
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    empty_init,
    held,
    leafwise,
    like,
    next_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_or_schedule,
    check_float_params,
    check_lr,
    full_in,
    moment_dtype_arg,
    zeros_in,
)
from funcdl.optim._transforms import scale, scale_by_learning_rate
from funcdl.optim._wrappers import ema

__all__ = ["ScaleByLionState", "ScaleByRpropState", "lion", "rprop", "scale_by_lion",
           "scale_by_rprop", "scale_by_sign", "sign_sgd", "signum"]

Tree = Any


class ScaleByLionState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree


class ScaleByRpropState(NamedTuple):
    step_sizes: Tree  # each entry's step size (torch: step_size)
    prev_updates: Tree  # last step's step·sign(g), 0 after a sign change (torch: prev)


def scale_by_sign() -> GradientTransformation:
    """optax's ``scale_by_sign``: ``u = sign(g)`` entrywise (-1, 0 or +1; NaN stays NaN),
    in ``g``'s dtype. State ``EmptyState``."""
    name = "scale_by_sign"

    def leaf(g: Any) -> Any:
        real_grad(g)
        return np.sign(g)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        with np.errstate(all="ignore"):
            return leafwise(f"{name}.update", leaf, (grads,), ("grads",))[0], state

    return transform(name, empty_init(), update)


def scale_by_lion(b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None
                  ) -> GradientTransformation:
    """optax's ``scale_by_lion``: ``u = sign((1-b1)·g + b1·m)``, then ``m = (1-b2)·g + b2·m``.

    ``mu_dtype`` stores ``m`` in that float dtype (None: the params'); the step is then in
    the dtype ``g`` and ``m`` promote to (as optax), else in ``m``'s. State
    ``ScaleByLionState(count, mu)``. (optax 0.2.8's keyword-only ``mode`` variants, tanh
    and clipped in place of sign, are not here.)
    """
    name = "scale_by_lion"
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)

    def init(params: Tree) -> ScaleByLionState:
        check_float_params(f"{name}.init", params)
        mu = zeros_in(params, mu_dt)
        return ScaleByLionState(zero_count(), mu)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByLionState]:
        del params
        count = state_count(name, state, ScaleByLionState)

        def leaf(g: Any, m: Any) -> tuple[Any, Any]:
            real_grad(g)
            stored = m
            if mu_dt is not None:  # as optax: the arithmetic in g's and m's promoted dtype
                m = np.asarray(m, np.result_type(g, m))
            u = np.sign((1.0 - b1) * g + b1 * m)
            m_new = like((1.0 - b2) * g + b2 * m, stored)
            return (u if mu_dt is not None else like(u, stored)), m_new

        # sign(NaN) is NaN; inf - inf in the momentum gives NaN, silently, as optax
        with np.errstate(all="ignore"):
            out, mu = leafwise(f"{name}.update", leaf, (grads, state.mu), ("grads", "state.mu"),
                               n_out=2, elementwise=mu_dt is None)
        return out, ScaleByLionState(next_count(count), mu)

    return transform(name, init, update)


def check_etas(name: str, eta_minus: Any, eta_plus: Any) -> tuple[float, float]:
    """Rprop's factors: ``0 < eta_minus < 1 < eta_plus`` (torch's check)."""
    minus = check_float(name, "eta_minus (the factor after a sign change)", eta_minus,
                        high=1.0, open_high=True)
    plus = check_float(name, "eta_plus (the factor while the sign holds)", eta_plus)
    if not (minus > 0.0 and plus > 1.0):
        raise ValueError(f"{name}: the factors must satisfy 0 < eta_minus < 1 < eta_plus "
                         f"(shrink after a sign change, grow while it holds), got "
                         f"eta_minus={minus}, eta_plus={plus}; torch's are (0.5, 1.2)")
    return minus, plus


def check_step_sizes(name: str, low: Any, high: Any) -> tuple[float, float]:
    """Rprop's bounds on the step size: ``0 <= min_step_size <= max_step_size`` (inf
    allowed above)."""
    lo = check_float(name, "min_step_size", low)
    hi = check_float(name, "max_step_size", high, finite=False)
    if lo > hi:
        raise ValueError(f"{name}: min_step_size must be <= max_step_size, got {lo} > {hi}; "
                         f"torch's are (1e-6, 50)")
    return lo, hi


def scale_by_rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2,
                   min_step_size: float = 1e-6, max_step_size: float = 50.0
                   ) -> GradientTransformation:
    """Rprop's direction, as torch's ``Rprop`` (optax's ``scale_by_rprop``'s arguments and
    sign: ``u = +s·sign(g)``; the ``rprop`` alias flips it). Per entry, ``q`` the sign of
    ``g`` times the previous step's: ``s = clip(s·eta_plus, lo, hi)`` if ``q > 0``,
    ``clip(s·eta_minus, lo, hi)`` if ``q < 0``, ``clip(s, lo, hi)`` if ``q = 0``;
    ``u = 0`` where ``q < 0`` (torch zeroes that gradient; the next step then has ``q = 0``),
    else ``s·sign(g)``; ``s`` starts at ``learning_rate``.

    ``q`` is ``sign(g)·sign(prev)``, not the sign of the product, which underflows to 0 for
    tiny entries. optax clips ``s`` only where ``q != 0``, which differs only while
    ``learning_rate`` lies outside ``[min_step_size, max_step_size]``; and optax 0.2.8's
    update returns the previous step's ``u`` (0 at the first step, then one step behind
    torch's and this one's: an open optax bug, PR #1725), so their trajectories differ. State
    ``ScaleByRpropState(step_sizes, prev_updates)``, ``prev_updates`` the last ``u``.
    """
    name = "scale_by_rprop"
    lr = check_float(name, "learning_rate (the initial step size)", learning_rate)
    minus, plus = check_etas(name, eta_minus, eta_plus)
    lo, hi = check_step_sizes(name, min_step_size, max_step_size)

    def init(params: Tree) -> ScaleByRpropState:
        check_float_params(f"{name}.init", params)
        return ScaleByRpropState(full_in(params, lr), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByRpropState]:
        del params
        check_state(name, state, ScaleByRpropState)

        def leaf(g: Any, s: Any, prev: Any) -> tuple[Any, Any]:
            real_grad(g)
            sg = np.sign(g)
            q = sg * np.sign(prev)
            factor = np.where(q > 0, plus, np.where(q < 0, minus, 1.0))
            s_new = like(np.clip(s * factor, lo, hi), s)
            u = held(like(np.where(q < 0, 0.0, s_new * sg), prev))  # the next prev too
            return u, s_new

        with np.errstate(all="ignore"):  # NaN grads: NaN steps, silently, as torch's
            out, steps = leafwise(f"{name}.update", leaf,
                                  (grads, state.step_sizes, state.prev_updates),
                                  ("grads", "state.step_sizes", "state.prev_updates"),
                                  n_out=2, elementwise=True)
        return out, ScaleByRpropState(steps, out)

    return transform(name, init, update)


def sign_sgd(lr: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al. 2018), as optax's ``sign_sgd``: ``p ← p - lr·sign(g)``.

    Stages: ``sign``, ``lr``.
    """
    lr = check_lr("sign_sgd", lr)
    return make_alias("sign_sgd", [("sign", scale_by_sign()), ("lr", scale_by_learning_rate(lr))])


def signum(lr: ScalarOrSchedule, beta: float = 0.9, accumulator_dtype: Any = None
           ) -> GradientTransformation:
    """Signum, as optax's ``signum``: ``m = beta·m + (1-beta)·g`` (from 0, not debiased: its
    sign is all that is read); ``p ← p - lr·sign(m)``. ``accumulator_dtype`` stores ``m``
    in that float dtype (None: the params'), as ``ema``'s.

    Stages: ``ema``, ``sign``, ``lr``.
    """
    name = "signum"
    lr = check_lr(name, lr)
    b = check_float(name, "beta", beta, high=1.0)
    acc = moment_dtype_arg(name, "accumulator_dtype", accumulator_dtype)
    return make_alias(name, [("ema", ema(b, debias=False, accumulator_dtype=acc)),
                             ("sign", scale_by_sign()), ("lr", scale_by_learning_rate(lr))])


def lion(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None,
         weight_decay: ScalarOrSchedule = 1e-3, mask: Any = None) -> GradientTransformation:
    """Lion, as optax's ``lion``: ``p ← p - lr · (sign((1-b1)·g + b1·m) + wd·p)``, then
    ``m ← (1-b2)·g + b2·m`` (see ``scale_by_lion``); decoupled weight decay, ``mask`` as
    ``adamw``'s. Its steps are ±lr per entry: take lr 3-10x smaller than AdamW's.

    Stages: ``lion``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "lion"
    lr = check_lr(name, lr)
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    wd = check_float_or_schedule(name, "weight_decay", weight_decay, "wd")
    stages: Stages = [("lion", scale_by_lion(b1, b2, mu_dtype))]
    append_weight_decay(stages, wd, mask, name)  # a schedule, as optax
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages)


def _pair(name: str, what: str, value: Any, example: str) -> tuple[Any, Any]:
    """A 2-tuple setting (torch's ``etas``, ``step_sizes``), or a TypeError naming it."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}: {what} must be a pair of numbers, e.g. {what}={example}, "
                        f"got {value!r}")
    return value[0], value[1]


def rprop(lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
          step_sizes: tuple[float, float] = (1e-6, 50.0)) -> GradientTransformation:
    """Rprop, as ``torch.optim.Rprop``: each entry moves by ``-s·sign(g)``, its step size
    ``s`` (from ``lr``) times ``etas[1]`` while the gradient's sign holds, times
    ``etas[0]`` after it flips (and that step is skipped, its gradient taken as 0), clipped
    to ``step_sizes`` (see ``scale_by_rprop``).

    optax's ``rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)``
    (0.2.8) returns each step one update late, its first 0 (see ``scale_by_rprop``), and
    does not clip an ``lr`` outside ``step_sizes`` until a gradient's sign is compared,
    which torch (and this) does at the first step. ``lr`` is the initial step size, a
    float: not a schedule.

    Stages: ``rprop``, ``flip`` (``scale(-1)``).
    """
    name = "rprop"
    lr = check_float(name, "lr (the initial step size)", lr)
    minus, plus = check_etas(name, *_pair(name, "etas", etas, "(0.5, 1.2)"))
    lo, hi = check_step_sizes(name, *_pair(name, "step_sizes", step_sizes, "(1e-6, 50)"))
    stages: Stages = [("rprop", scale_by_rprop(lr, minus, plus, lo, hi)),
                      ("flip", scale(-1.0))]
    return make_alias(name, stages)
