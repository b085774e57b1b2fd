"""Four more directions, as optax's transforms: Adadelta (torch's too), Rprop (torch's
formulas), AdaBelief and Yogi. Notation as in ``_transforms``; ``t = count + 1`` is the step
being taken, 1 at the first update. As in ``_adaptive``: each ``init`` refuses params that
are not real floating point, each ``update`` such grads; inf and NaN gradients give inf and
NaN steps silently; the state keeps the params' dtype and the step is in the state's."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._adaptive import ScaleByAdamState
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    check_state,
    held,
    leafwise,
    like,
    next_count,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_betas, check_float, check_float_params

__all__ = [
    "ScaleByAdaDeltaState",
    "ScaleByBeliefState",
    "ScaleByRpropState",
    "scale_by_adadelta",
    "scale_by_belief",
    "scale_by_rprop",
    "scale_by_yogi",
]

Tree = Any


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Tree  # running mean of g² (torch: square_avg)
    e_x: Tree  # running mean of u² (torch: acc_delta)


class ScaleByRpropState(NamedTuple):
    step_sizes: Tree  # each entry's step size (torch: step_size)
    prev_updates: Tree  # last step's step·sign(g), 0 after a sign change (torch: prev)


class ScaleByBeliefState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree  # running mean of g
    nu: Tree  # running mean of (g - mu)², eps_root added at every step (as optax)


def _full(params: Tree, value: float) -> Tree:
    """``value`` shaped and typed as each param (a float past float32's range is inf)."""
    with np.errstate(over="ignore"):
        return tree.map(lambda p: np.full_like(p, value), params)


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    """optax's ``scale_by_adadelta``, torch Adadelta's direction:
    ``a = rho·a + (1-rho)·g²``; ``u = sqrt(d + eps) / sqrt(a + eps) · g``;
    ``d = rho·d + (1-rho)·u²`` (``d`` read before its own update). State
    ``ScaleByAdaDeltaState(e_g=a, e_x=d)``."""
    name = "scale_by_adadelta"
    rho = check_float(name, "rho", rho, high=1.0)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> ScaleByAdaDeltaState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAdaDeltaState(tree.zeros_like(params), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAdaDeltaState]:
        del params
        check_state(name, state, ScaleByAdaDeltaState)

        def leaf(g: Any, a: Any, d: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            a_new = like(rho * a + (1.0 - rho) * (g * g), a)
            u = like(np.sqrt(d + eps) / np.sqrt(a_new + eps) * g, a)
            return u, a_new, like(rho * d + (1.0 - rho) * (u * u), d)

        with np.errstate(all="ignore"):  # inf and NaN steps, silently, as torch's
            out, e_g, e_x = leafwise(f"{name}.update", leaf, (grads, state.e_g, state.e_x),
                                     ("grads", "state.e_g", "state.e_x"), n_out=3,
                                     elementwise=True)
        return out, ScaleByAdaDeltaState(e_g, e_x)

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
        return ScaleByRpropState(_full(params, lr), tree.zeros_like(params))

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


def belief_init(name: str, eps: float, eps_root: float) -> Callable[[Tree], Any]:
    """The init of AdaBelief's state, ``ScaleByBeliefState(count, mu, nu)`` of zeros (ACProp's
    too): params refused when eps and eps_root both round to 0 there (float16: 0/0 steps)."""

    def init(params: Tree) -> ScaleByBeliefState:
        check_float_params(f"{name}.init", params, max(eps, eps_root) or None)
        return ScaleByBeliefState(zero_count(), tree.zeros_like(params),
                                  tree.zeros_like(params))

    return init


def scale_by_belief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
                    eps_root: float = 1e-16, *, nesterov: bool = False
                    ) -> GradientTransformation:
    """optax's ``scale_by_belief`` (AdaBelief): ``m = b1·m + (1-b1)·g``;
    ``s = b2·s + (1-b2)·(g - m)² + eps_root`` (``eps_root`` stays in ``s``, as optax);
    ``u = m̂ / (sqrt(ŝ) + eps)``, ``m̂ = m/(1-b1^t)``, ``ŝ = s/(1-b2^t)``; ``nesterov``:
    ``m̂ = b1·m/(1-b1^(t+1)) + (1-b1)·g/(1-b1^t)``. State ``ScaleByBeliefState(count, mu,
    nu)``."""
    name = "scale_by_belief"
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    nest = bool_arg(nesterov, name, "nesterov")

    init = belief_init(name, eps, eps_root)

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByBeliefState]:
        del params
        check_state(name, state, ScaleByBeliefState)
        count = read_count(f"{name}.update", state.count)
        t = count + 1
        bc1, inv_sqrt_bc2 = 1.0 - b1**t, 1.0 / math.sqrt(1.0 - b2**t)
        ahead, now = b1 / (1.0 - b1 ** (t + 1)), (1.0 - b1) / bc1

        def leaf(g: Any, m: Any, s: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new = like(b1 * m + (1.0 - b1) * g, m)
            r = g - m_new
            s_new = like(b2 * s + (1.0 - b2) * (r * r) + eps_root, s)
            m_hat = m_new * ahead + g * now if nest else m_new / bc1
            return like(m_hat / (np.sqrt(s_new) * inv_sqrt_bc2 + eps), s_new), m_new, s_new

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            out, mu, nu = leafwise(f"{name}.update", leaf, (grads, state.mu, state.nu),
                                   ("grads", "state.mu", "state.nu"), n_out=3,
                                   elementwise=True)
        return out, ScaleByBeliefState(next_count(count), mu, nu)

    return transform(name, init, update)


def scale_by_yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3,
                  eps_root: float = 0.0, initial_accumulator_value: float = 1e-6
                  ) -> GradientTransformation:
    """optax's ``scale_by_yogi``: ``m = b1·m + (1-b1)·g``;
    ``v = v - (1-b2)·sign(v - g²)·g²`` (v moves towards g² by at most (1-b2)·g², additively,
    where Adam's moves multiplicatively); ``u = m̂ / (sqrt(v̂ + eps_root) + eps)``, ``m̂``,
    ``v̂`` bias-corrected as Adam's. ``m`` and ``v`` both start at
    ``initial_accumulator_value`` (as optax). State ``ScaleByAdamState(count, mu, nu)``."""
    name = "scale_by_yogi"
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    start = check_float(name, "initial_accumulator_value", initial_accumulator_value)

    def init(params: Tree) -> ScaleByAdamState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAdamState(zero_count(), _full(params, start), _full(params, start))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        del params
        check_state(name, state, ScaleByAdamState)
        count = read_count(f"{name}.update", state.count)
        t = count + 1
        bc1, inv_bc2 = 1.0 - b1**t, 1.0 / (1.0 - b2**t)

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new = like(b1 * m + (1.0 - b1) * g, m)
            g2 = g * g
            v_new = like(v - (1.0 - b2) * np.sign(v - g2) * g2, v)
            root = np.sqrt(v_new * inv_bc2 + eps_root) if eps_root else \
                np.sqrt(v_new * inv_bc2)
            return like(m_new / bc1 / (root + eps), v_new), m_new, v_new

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            out, mu, nu = leafwise(f"{name}.update", leaf, (grads, state.mu, state.nu),
                                   ("grads", "state.mu", "state.nu"), n_out=3,
                                   elementwise=True)
        return out, ScaleByAdamState(next_count(count), mu, nu)

    return transform(name, init, update)
