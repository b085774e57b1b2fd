"""More of ``optax.contrib``'s optimizers, with its update formulas: MADGRAD (Defazio &
Jelassi 2021), ACProp (Zhuang et al. 2021) and MoMo (Schaipp et al. 2023), whose update
takes the loss as ``value=`` (as ``reduce_on_plateau``'s; ``chain`` forwards it). The
aliases take optax's arguments in optax's order, ``learning_rate`` first, as the other
optax.contrib ones here (``adopt``, ``prodigy``...). DP-SGD is in ``_contrib3``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._alias import _alias, _Stages, _weight_decay
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    leafwise,
    like,
    next_count,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_lr,
    float_dtypes,
    needs_params,
    plain_sum,
    real_param,
    state_float,
    value_at,
)
from funcdl.optim._lr_free import dot
from funcdl.optim._more_adaptive2 import ScaleByBeliefState, belief_init
from funcdl.optim._optax_extra2 import _decay
from funcdl.optim._plateau import _loss
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["MadgradState", "MomoAdamState", "MomoState", "acprop", "madgrad", "momo",
           "momo_adam", "scale_by_acprop", "scale_by_madgrad"]

Tree = Any
# optax's guard on MoMo's step, jnp.finfo(float).eps: float64's whatever the params' dtype
_TINY = float(np.finfo(np.float64).eps)


class MadgradState(NamedTuple):
    """optax's fields: the updates applied, the weighted sums of ``g²`` and of ``g``, and
    the params at ``init``."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    grad_sum_sq: Tree
    s: Tree
    x0: Tree


class MomoState(NamedTuple):
    """optax's fields: the running mean of ``g``; those of the loss and of ``<g, p>`` and
    the loss's lower bound (0-d, in the params' narrowest float dtype); the count."""

    exp_avg: Tree
    barf: Any
    gamma: Any
    lb: Any
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


class MomoAdamState(NamedTuple):
    """``MomoState`` with Adam's running mean of ``g²``, ``exp_avg_sq``."""

    exp_avg: Tree
    exp_avg_sq: Tree
    barf: Any
    gamma: Any
    lb: Any
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


# ---------------------------------------------------------------------------- MADGRAD

def scale_by_madgrad(learning_rate: ScalarOrSchedule, momentum: float = 0.9,
                     eps: float = 1e-6) -> GradientTransformation:
    """optax.contrib's ``scale_by_madgrad``, a dual-averaged step that already holds the
    learning rate. With ``t`` the updates already applied and ``λ = (lr + eps)·sqrt(t+1)``:
    ``G = G + λ·g²``; ``s = s + λ·g``; ``z = x0 - s / (cbrt(G) + eps)``; ``u = (1-m)·z +
    m·p - p`` (``m = momentum``, ``x0`` the params at ``init``). Needs params. State
    ``MadgradState(count, grad_sum_sq, s, x0)``."""
    name = "scale_by_madgrad"
    rate = check_lr(name, learning_rate)
    mom = check_float(name, "momentum", momentum, high=1.0)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> MadgradState:
        check_float_params(f"{name}.init", params, eps or None)
        zeros = tree.zeros_like
        # a copy: x0 must outlive params the caller may later change in place
        return MadgradState(zero_count(), zeros(params), zeros(params),
                            tree.map(np.array, params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MadgradState]:
        check_state(name, state, MadgradState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        lam = (value_at(name, "lr", rate, count) + eps) * math.sqrt(count + 1)

        def leaf(g: Any, p: Any, x0: Any, gsq: Any, s: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            p = real_param(p)
            gsq_new = like(gsq + lam * (g * g), gsq)
            s_new = like(s + lam * g, s)
            z = x0 - s_new / (np.cbrt(gsq_new) + eps)
            return like(((1.0 - mom) * z + mom * p) - p, s), gsq_new, s_new

        with np.errstate(all="ignore"):  # inf and NaN grads: inf and NaN steps, silently
            out, gsq, s = leafwise(
                f"{name}.update", leaf, (grads, params, state.x0, state.grad_sum_sq, state.s),
                ("grads", "params", "state.x0", "state.grad_sum_sq", "state.s"), n_out=3,
                elementwise=True)
        return out, MadgradState(next_count(count), gsq, s, state.x0)

    return transform(name, init, update)


def madgrad(learning_rate: ScalarOrSchedule, momentum: float = 0.9,
            weight_decay: ScalarOrSchedule = 0.0, eps: float = 1e-6) -> GradientTransformation:
    """MADGRAD, as optax.contrib's ``madgrad``: ``g ← g + wd·p`` (L2, before the step),
    then ``scale_by_madgrad``'s step, which holds ``lr`` (no lr stage follows).

    Stages: ``weight_decay`` (left out at 0), ``madgrad``.
    """
    name = "madgrad"
    rate = check_lr(name, learning_rate)
    mom = check_float(name, "momentum", momentum, high=1.0)
    eps = check_float(name, "eps", eps)
    stages: _Stages = []
    _weight_decay(stages, _decay(name, weight_decay))
    stages.append(("madgrad", scale_by_madgrad(rate, mom, eps)))
    return _alias(name, stages)


# ---------------------------------------------------------------------------- ACProp

def scale_by_acprop(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
                    eps_root: float = 1e-16) -> GradientTransformation:
    """optax.contrib's ``scale_by_acprop``: the step divides by the second moment BEFORE
    this update. With ``t`` the updates already applied: ``u = g / (sqrt(s / (1-b2^t)) +
    eps)`` (``g / (1 + eps)`` at ``t = 0``); then ``m = b1·m + (1-b1)·g`` and ``s = b2·s +
    (1-b2)·(g - m_old)² + eps_root``. State ``ScaleByBeliefState(count, mu, nu)``."""
    name = "scale_by_acprop"
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)  # 1 divides by 1 - b2^t = 0
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)

    init = belief_init(name, eps, eps_root)

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByBeliefState]:
        del params
        check_state(name, state, ScaleByBeliefState)
        count = read_count(f"{name}.update", state.count)
        bc = 1.0 - b2**count if count else 1.0

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            e = g - m
            m_new = like((1.0 - b1) * g + b1 * m, m)
            v_new = like((1.0 - b2) * (e * e) + b2 * v + eps_root, v)
            # at t = 0 optax's corrected moment is 1, not the 0 stored
            u = g / (1.0 + eps) if count == 0 else g / (np.sqrt(v / bc) + eps)
            return like(u, m), m_new, v_new

        with np.errstate(all="ignore"):  # inf and NaN, silently, as scale_by_adam
            out, mu, nu = leafwise(f"{name}.update", leaf, (grads, state.mu, state.nu),
                                   ("grads", "state.mu", "state.nu"), n_out=3,
                                   elementwise=True)
        return out, ScaleByBeliefState(next_count(count), mu, nu)

    return transform(name, init, update)


def acprop(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-16, eps_root: float = 1e-16, weight_decay: ScalarOrSchedule = 0.0,
           mask: Any = None) -> GradientTransformation:
    """ACProp, as optax.contrib's ``acprop``: ``p ← p - lr·(u + wd·p)``, ``u``
    ``scale_by_acprop``'s (decoupled weight decay, ``mask`` as ``adamw``'s).

    Stages: ``acprop``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "acprop"
    rate = check_lr(name, learning_rate)
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    stages: _Stages = [("acprop", scale_by_acprop(b1, b2, eps, eps_root))]
    _weight_decay(stages, _decay(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(rate)))
    return _alias(name, stages)


# ---------------------------------------------------------------------------- MoMo

def _momo_args(name: str, lr: Any, lower_bound: Any, weight_decay: Any,
               adapt_lower_bound: Any) -> tuple[ScalarOrSchedule, float, float, bool]:
    return (check_lr(name, lr), check_float(name, "lower_bound", lower_bound, low=-math.inf),
            check_float(name, "weight_decay", weight_decay),
            bool_arg(adapt_lower_bound, name, "adapt_lower_bound"))


def _momo_scalars(name: str, state: Any) -> tuple[float, float, float, np.dtype[Any]]:
    """The state's barf, gamma and lb as floats, and barf's dtype (the one they keep)."""
    values = [state_float(f"{name}.update", f, getattr(state, f))
              for f in ("barf", "gamma", "lb")]
    return float(values[0]), float(values[1]), float(values[2]), values[0].dtype


def _polyak(k: float, barf: float, lb: float, gamma: float, iprod: float, norm: float
            ) -> float:
    """MoMo's adaptive step, ``max(k·(barf - lb - gamma) + iprod, 0) / norm`` (0 where
    ``norm <= eps``), in NumPy floats: NaN propagates and 0/0 does not raise, as in optax."""
    if norm <= _TINY:
        return 0.0
    with np.errstate(all="ignore"):
        return float(np.maximum(np.float64(k) * (barf - lb - gamma) + iprod, 0.0) / norm)


def _init_momo(name: str, params: Tree, lower_bound: float, adam: bool,
               eps: float = 0.0) -> Any:
    check_float_params(f"{name}.init", params, eps or None)
    low = float_dtypes(params)[0]
    zero = low.type(0.0)
    lb = low.type(lower_bound)
    if adam:
        return MomoAdamState(tree.zeros_like(params), tree.zeros_like(params), zero, zero, lb,
                             zero_count())
    return MomoState(tree.zeros_like(params), zero, zero, lb, zero_count())


def momo(learning_rate: ScalarOrSchedule = 1.0, beta: float = 0.9, lower_bound: float = 0.0,
         weight_decay: float = 0.0, adapt_lower_bound: bool = False) -> GradientTransformation:
    """MoMo, as optax.contrib's ``momo``: SGD with momentum and a Polyak step.

    ``update(state, grads, params, value=loss)``. ``b = 0`` at the first update, else
    ``beta``; ``f̄ = b·f̄ + (1-b)·loss``, ``m = b·m + (1-b)·g``, ``γ = b·γ + (1-b)·<g, p>``;
    ``k = 1 + lr·wd``; ``τ = min(lr, max(k·(f̄ - lb - γ) + <m, p>, 0) / ‖m‖²)``;
    ``u = -(lr·wd / k)·p - τ·m``. ``adapt_lower_bound`` re-estimates ``lb`` (see
    optax). Needs params. State ``MomoState(exp_avg, barf, gamma, lb, count)``.
    """
    name = "momo"
    rate, lower, wd, adapt = _momo_args(name, learning_rate, lower_bound, weight_decay,
                                        adapt_lower_bound)
    b = check_float(name, "beta", beta, high=1.0)

    def init(params: Tree) -> MomoState:
        return _init_momo(name, params, lower, adam=False)  # type: ignore[no-any-return]

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None
               ) -> tuple[Tree, MomoState]:
        where = f"{name}.update"
        check_state(name, state, MomoState)
        needs_params(name, params)
        loss = _loss(where, value)
        count = read_count(where, state.count)
        barf, gamma, lb, dt = _momo_scalars(name, state)
        bt = b if count else 0.0  # optax's first update takes the grads and loss as they are
        dots: list[float] = []

        def moment(g: Any, p: Any, m: Any) -> Any:
            real_grad(g)
            p = real_param(p)
            m_new = like(bt * m + (1.0 - bt) * g, m)
            dots.append(dot(g, p))
            return m_new

        with np.errstate(all="ignore"):  # inf and NaN grads or loss: inf and NaN steps
            barf = bt * barf + (1.0 - bt) * float(dt.type(loss))
            (mu,) = leafwise(where, moment, (grads, params, state.exp_avg),
                             ("grads", "params", "state.exp_avg"))
            gamma = bt * gamma + (1.0 - bt) * plain_sum(dots)
            norm = plain_sum(dot(m, m) for m in tree.leaves(mu))
            iprod = plain_sum(dot(m, p) for m, p in zip(tree.leaves(mu), tree.leaves(params)))
            alpha = value_at(name, "lr", rate, count)
            k = 1.0 + alpha * wd
            if adapt:
                cap = k * (barf - gamma) + iprod
                lb_now = max(cap / (2.0 * k), lower) if cap < k * lb else lb
            else:
                lb_now = lb
            tau = float(np.minimum(alpha, _polyak(k, barf, lb_now, gamma, iprod, norm)))
            shrink = -(alpha * wd) / k
            (out,) = leafwise(where, lambda m, p: like(shrink * p - tau * m, m),
                              (mu, params), ("state.exp_avg", "params"))
            if adapt:
                lb = float(np.maximum((barf + iprod - gamma) - 0.5 * tau * norm, lower))
        return out, MomoState(mu, dt.type(barf), dt.type(gamma), dt.type(lb),
                              next_count(count))

    return transform(name, init, update)


def momo_adam(learning_rate: ScalarOrSchedule = 1e-2, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-8, lower_bound: float = 0.0, weight_decay: float = 0.0,
              adapt_lower_bound: bool = False) -> GradientTransformation:
    """MoMo-Adam, as optax.contrib's ``momo_adam``: Adam(W) with a Polyak step.

    ``update(state, grads, params, value=loss)``. With ``t`` this update's step (1 at the
    first): ``f̄ = b1·f̄ + (1-b1)·loss``, ``m = b1·m + (1-b1)·g``, ``v = b2·v + (1-b2)·g²``,
    ``γ = b1·γ + (1-b1)·<g, p>``; ``D = eps + sqrt(v / (1-b2^t))``; ``c = 1-b1^t``,
    ``k = 1 + lr·wd``; ``τ = min(lr/c, max(k·(f̄ - c·lb - γ) + <m, p>, 0) / <m, m/D>)``;
    ``u = -(lr·wd / k)·p - τ·m/D``. Needs params. State ``MomoAdamState(exp_avg,
    exp_avg_sq, barf, gamma, lb, count)``.
    """
    name = "momo_adam"
    rate, lower, wd, adapt = _momo_args(name, learning_rate, lower_bound, weight_decay,
                                        adapt_lower_bound)
    b1 = check_float(name, "b1", b1, high=1.0, open_high=True)  # 1: divides by 1 - b1^t = 0
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> MomoAdamState:
        return _init_momo(name, params, lower, adam=True,  # type: ignore[no-any-return]
                          eps=eps)

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None
               ) -> tuple[Tree, MomoAdamState]:
        where = f"{name}.update"
        check_state(name, state, MomoAdamState)
        needs_params(name, params)
        loss = _loss(where, value)
        count = read_count(where, state.count)
        barf, gamma, lb, dt = _momo_scalars(name, state)
        bc1, bc2 = 1.0 - b1 ** (count + 1), 1.0 - b2 ** (count + 1)
        dots: list[float] = []
        norms: list[float] = []
        iprods: list[float] = []

        def moments(g: Any, p: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            p = real_param(p)
            m_new = like(b1 * m + (1.0 - b1) * g, m)
            v_new = like(b2 * v + (1.0 - b2) * g * g, v)
            precond = like(eps + np.sqrt(v_new / bc2), v)
            dots.append(dot(g, p))
            norms.append(dot(m_new, m_new / precond))
            iprods.append(dot(m_new, p))
            return m_new, v_new, precond

        with np.errstate(all="ignore"):  # inf and NaN grads or loss: inf and NaN steps
            barf = b1 * barf + (1.0 - b1) * float(dt.type(loss))
            mu, nu, pre = leafwise(where, moments, (grads, params, state.exp_avg,
                                                    state.exp_avg_sq),
                                   ("grads", "params", "state.exp_avg", "state.exp_avg_sq"),
                                   n_out=3)
            gamma = b1 * gamma + (1.0 - b1) * plain_sum(dots)
            norm, iprod = plain_sum(norms), plain_sum(iprods)
            alpha = value_at(name, "lr", rate, count)
            k = 1.0 + alpha * wd
            if adapt:
                cap = k * (barf - gamma) + iprod
                lb_now = max(cap / (2.0 * bc1 * k), lower) if cap < k * bc1 * lb else lb
            else:
                lb_now = lb
            step = _polyak(k, barf, bc1 * lb_now, gamma, iprod, norm)
            tau = float(np.minimum(alpha / bc1, step))
            shrink = -(alpha * wd) / k
            (out,) = leafwise(where, lambda m, d, p: like(shrink * p - tau * m / d, m),
                              (mu, pre, params), ("state.exp_avg", "precond", "params"))
            if adapt:
                lb = float(np.maximum(((barf + iprod - gamma) - 0.5 * tau * norm) / bc1,
                                      lower))
        return out, MomoAdamState(mu, nu, dt.type(barf), dt.type(gamma), dt.type(lb),
                                  next_count(count))

    return transform(name, init, update)
