"""Adam's relatives as transforms, each with its model's update formula: Adamax (optax's and
torch's), Rectified Adam (optax's, with torch's ``eps`` as an option), torch's NAdam (optax's
NAdam is ``scale_by_adam(nesterov=True)``), AdaBelief and Yogi (optax's), and ACProp
(``optax.contrib``'s: AdaBelief's second moment, the step divided by it as it was before
the update). Their aliases are in
``_adam_aliases``; AMSGrad is in ``_amsgrad``, AdEMAMix in ``_ademamix``, Adan in ``_adan``.
Notation as in ``_transforms``; ``t = count + 1`` is the step being taken, 1 at the first
update. As in ``_adaptive``: each ``init`` refuses params that are not real floating point
(and an ``eps`` that rounds to 0 in their dtype), each ``update`` such grads; inf and NaN
gradients give inf and NaN steps silently; the state keeps the params' dtype, and the step is
in the state's dtype."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, number
from funcdl.optim._adaptive import ScaleByAdamState, adam_moments, moments_pass
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    like,
    next_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_betas, check_float, check_float_params, full_in

__all__ = ["ScaleByAdamaxState", "ScaleByBeliefState", "ScaleByNadamState", "scale_by_acprop",
           "scale_by_adamax", "scale_by_belief", "scale_by_nadam", "scale_by_radam",
           "scale_by_yogi"]

Tree = Any


class ScaleByAdamaxState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree  # running mean of g
    nu: Tree  # decaying maximum of |g| + eps (torch: exp_inf)


class ScaleByNadamState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu_product: Any  # Π_{i<=t} μ_i, a float64 NumPy scalar (torch: mu_product)
    mu: Tree
    nu: Tree


class ScaleByBeliefState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree  # running mean of g
    nu: Tree  # running mean of (g - mu)², eps_root added at every step (as optax)


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                    ) -> GradientTransformation:
    """optax's ``scale_by_adamax``, torch Adamax's direction: ``m = b1·m + (1-b1)·g``;
    ``v = max(b2·v, |g| + eps)``; ``u = m / ((1 - b1^t)·v)``. ``v`` needs no bias
    correction (a maximum, not a mean), so ``b2 = 1`` is allowed (a running maximum).
    State ``ScaleByAdamaxState(count, mu, nu)``.
    """
    name = "scale_by_adamax"
    b1, b2 = check_betas(name, b1, b2, b2_high_open=False)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> ScaleByAdamaxState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAdamaxState(zero_count(), tree.zeros_like(params),
                                  tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAdamaxState]:
        del params
        count = state_count(name, state, ScaleByAdamaxState)
        inv_bc1 = 1.0 / (1.0 - b1 ** (count + 1))

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new = like(b1 * m + (1.0 - b1) * g, m)
            # np.maximum passes NaN on, as torch.maximum: a NaN entry stays NaN in v
            v_new = like(np.maximum(b2 * v, np.abs(g) + eps), v)
            return like(m_new * inv_bc1 / v_new, v_new), m_new, v_new

        # inf - inf and 0/0 (eps = 0, g = 0) give NaN steps silently, as in torch
        out, mu, nu = moments_pass(name, leaf, grads, state)
        return out, ScaleByAdamaxState(next_count(count), mu, nu)

    return transform(name, init, update)


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   eps_root: float = 0.0, threshold: float = 5.0, *, nesterov: bool = False,
                   eps_before_correction: bool = False) -> GradientTransformation:
    """optax's ``scale_by_radam`` (Rectified Adam): Adam's moments ``m``, ``v``;
    ``ρ∞ = 2/(1-b2) - 1``, ``ρ = ρ∞ - 2t·b2^t / (1-b2^t)``; when ``ρ >= threshold``,
    ``u = r·m̂ / (sqrt(v̂ + eps_root) + eps)``, ``r = sqrt((ρ-4)(ρ-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρ))``,
    else ``u = m̂`` (momentum alone, while v̂'s variance is intractable); ``m̂ = m/(1-b1^t)``,
    ``v̂ = v/(1-b2^t)``; ``nesterov``: ``m̂`` as in ``scale_by_adam(nesterov=True)``.

    ``eps_before_correction`` (funcdl's, keyword-only) is torch.optim.RAdam's denominator,
    ``(sqrt(v) + eps) / sqrt(1-b2^t)``: ``eps / sqrt(1-b2^t)`` in place of ``eps`` (13x eps
    at the first rectified step, t = 6 for b2 = 0.999, less after; the ``radam`` alias
    takes it). torch also rectifies
    at ``ρ > 5`` where optax (and this) at ``ρ >= threshold``: the same but for ρ exactly 5.
    ``threshold >= 4`` (below, ``r`` is the root of a negative number for ``2 < ρ < 4``).
    State ``ScaleByAdamState(count, mu, nu)``, Adam's own: its moments are the same.
    """
    name = "scale_by_radam"
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    threshold = check_float(name, "threshold", threshold, low=4.0)
    nest = bool_arg(nesterov, name, "nesterov")
    torch_eps = bool_arg(eps_before_correction, name, "eps_before_correction")
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def init(params: Tree) -> ScaleByAdamState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAdamState(zero_count(), tree.zeros_like(params), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        del params
        count = state_count(name, state, ScaleByAdamState)
        t = count + 1
        b2t = b2**t
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2t
        rho = rho_inf - 2.0 * t * b2t / bc2
        rect = rho >= threshold  # then rho_inf > rho >= 4: r is real
        r = math.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf
                      / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)) if rect else 1.0
        eps_t = eps / math.sqrt(bc2) if torch_eps else eps
        # m̂'s coefficients, r folded in: r·m̂ = r·m/bc1, or r·(ahead·m + now·g) (nesterov)
        ahead, now = r * b1 / (1.0 - b1 ** (t + 1)), r * (1.0 - b1) / bc1
        inv_bc2 = 1.0 / bc2
        sqrt_inv_bc2 = math.sqrt(inv_bc2)

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new, v_new = adam_moments(g, m, v, b1, b2)
            step = m_new * ahead + g * now if nest else m_new * (r / bc1)
            if not rect:
                return like(step, v_new), m_new, v_new
            if eps_root:  # optax's sqrt(v̂ + eps_root)
                root = np.sqrt(v_new * inv_bc2 + eps_root)
            else:  # torch's sqrt(v)·sqrt(1/bc2): v/bc2 would pass float32's range first
                root = np.sqrt(v_new)
                root *= sqrt_inv_bc2
            root += eps_t
            return like(step / root, v_new), m_new, v_new

        out, mu, nu = moments_pass(name, leaf, grads, state)
        return out, ScaleByAdamState(next_count(count), mu, nu)

    return transform(name, init, update)


def _read_product(name: str, value: Any) -> float:
    """The state's ``mu_product`` as a float in [0, 1], or an error naming ``name``."""
    v = number(value)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (float, int, np.floating,
                                                             np.integer)):
        raise TypeError(f"{name}: the state's mu_product must be a float in [0, 1], got "
                        f"{value!r} ({type(value).__name__}); pass the state made by this "
                        f"optimizer's init")
    if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name}: the state's mu_product must be a float in [0, 1], got "
                         f"{float(v)!r}; pass the state made by this optimizer's init")
    return float(v)


def scale_by_nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   momentum_decay: float = 4e-3) -> GradientTransformation:
    """torch.optim.NAdam's direction (Dozat's NAdam with a momentum schedule; optax's NAdam
    is ``scale_by_adam(nesterov=True)``, which has none): ``μ_t = b1·(1 - ½·0.96^(t·ψ))``,
    ``ψ = momentum_decay``, ``Π_t = μ_1···μ_t``; Adam's ``m``, ``v``;
    ``u = ((1-μ_t)/(1-Π_t)·g + μ_{t+1}/(1-Π_t·μ_{t+1})·m) / (sqrt(v/(1-b2^t)) + eps)``.
    State ``ScaleByNadamState(count, mu_product, mu, nu)``, ``mu_product = Π_t`` (a float64
    scalar whatever the params' dtype: a float32 product drifts by ~1e-7 a step).
    """
    name = "scale_by_nadam"
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    psi = check_float(name, "momentum_decay", momentum_decay)

    def init(params: Tree) -> ScaleByNadamState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByNadamState(zero_count(), np.float64(1.0), tree.zeros_like(params),
                                 tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByNadamState]:
        del params
        count = state_count(name, state, ScaleByNadamState)
        product = _read_product(f"{name}.update", state.mu_product)
        t = count + 1
        mu_t = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        product *= mu_t
        c_g = (1.0 - mu_t) / (1.0 - product)
        c_m = mu_next / (1.0 - product * mu_next)
        inv_bc2 = 1.0 / (1.0 - b2**t)

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new, v_new = adam_moments(g, m, v, b1, b2)
            denom = np.sqrt(v_new * inv_bc2) + eps
            return like((c_g * g + c_m * m_new) / denom, v_new), m_new, v_new

        out, mu, nu = moments_pass(name, leaf, grads, state)
        return out, ScaleByNadamState(next_count(count), np.float64(product), mu, nu)

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
        count = state_count(name, state, ScaleByBeliefState)
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

        out, mu, nu = moments_pass(name, leaf, grads, state)
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
        return ScaleByAdamState(zero_count(), full_in(params, start), full_in(params, start))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        del params
        count = state_count(name, state, ScaleByAdamState)
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

        out, mu, nu = moments_pass(name, leaf, grads, state)
        return out, ScaleByAdamState(next_count(count), mu, nu)

    return transform(name, init, update)


def scale_by_acprop(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
                    eps_root: float = 1e-16) -> GradientTransformation:
    """ACProp (Zhuang et al. 2021) with optax.contrib's ``scale_by_acprop`` arguments and
    state: the step divides by the second moment BEFORE this update. With ``t`` the updates
    already applied: ``u = g / (sqrt(s / (1-b2^t)) + eps)`` (``g / (1 + eps)`` at
    ``t = 0``); then ``m = b1·m + (1-b1)·g`` and ``s = b2·s + (1-b2)·(g - m)² + eps_root``,
    the residual from the new ``m``, as the paper's and its authors' code. optax 0.2.8 takes
    it from the old one, ``g - m_old = (g - m)/b1``: its ``s`` is ``1/b1²`` this one and
    its steps ``b1`` times these. State ``ScaleByBeliefState(count, mu, nu)``."""
    name = "scale_by_acprop"
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)  # 1 divides by 1 - b2^t = 0
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)

    init = belief_init(name, eps, eps_root)

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByBeliefState]:
        del params
        count = state_count(name, state, ScaleByBeliefState)
        bc = 1.0 - b2**count if count else 1.0

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            m_new = like((1.0 - b1) * g + b1 * m, m)
            e = g - m_new
            v_new = like((1.0 - b2) * (e * e) + b2 * v + eps_root, v)
            # at t = 0 optax's corrected moment is 1, not the 0 stored
            u = g / (1.0 + eps) if count == 0 else g / (np.sqrt(v / bc) + eps)
            return like(u, m), m_new, v_new

        out, mu, nu = moments_pass(name, leaf, grads, state)
        return out, ScaleByBeliefState(next_count(count), mu, nu)

    return transform(name, init, update)
