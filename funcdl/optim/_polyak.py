"""Polyak step sizes, which read the loss: optax's ``scale_by_polyak`` and ``polyak_sgd``, and
``optax.contrib``'s MoMo (Schaipp et al. 2023: ``momo``, ``momo_adam``, momentum and a
Polyak step capped at the learning rate). Their updates take the loss as ``value=``
(as ``reduce_on_plateau``'s; ``chain`` forwards it). The aliases take optax's arguments in
optax's order."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, choice_arg
from funcdl.optim._alias import make_alias
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    empty_init,
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
    check_float_or_schedule,
    check_float_params,
    check_lr,
    float_dtypes,
    needed_loss,
    needs_params,
    plain_sum,
    real_param,
    state_float,
    value_at,
)
from funcdl.optim._global_norm import named_global_norm
from funcdl.optim._lr_free import flat_dot
from funcdl.optim._transforms import (
    multiply_grads,
    scale_by_learning_rate,
    step_may_warn,
    step_multiplier,
)

__all__ = ["MomoAdamState", "MomoState", "momo", "momo_adam", "polyak_sgd", "scale_by_polyak"]

Tree = Any
_TINY = float(np.finfo(np.float64).eps)


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


def polyak_args(name: str, f_min: Any, max_learning_rate: Any, eps: Any, variant: Any
                ) -> tuple[float, float, float, bool]:
    """``scale_by_polyak``'s arguments checked, their errors naming ``name``: ``(f_min,
    max_learning_rate, eps, plus)``, ``plus`` for the 'sps+' variant."""
    f_min = check_float(name, "f_min", f_min, low=-np.inf)
    top = check_float(name, "max_learning_rate", max_learning_rate)
    eps = check_float(name, "eps", eps)
    plus = choice_arg(variant, name, "variant", ("sps", "sps+")) == "sps+"
    return f_min, top, eps, plus


def scale_by_polyak(f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0,
                    variant: str = "sps") -> GradientTransformation:
    """optax's ``scale_by_polyak`` (Loizou et al. 2021): ``u = s·g`` with the Polyak step
    ``s = min((f - f_min) / (‖g‖² + eps), max_learning_rate)``, ``f`` the loss, ‖g‖ the
    global norm; ``s = 0`` where ``‖g‖² + eps`` is at most float64's epsilon. 'sps+' takes
    ``max(f - f_min, 0)``. ``update(state, grads, params, value=loss)`` (``chain`` forwards
    ``value=``). State ``EmptyState``."""
    name = "scale_by_polyak"
    f_min, top, eps, plus = polyak_args(name, f_min, max_learning_rate, eps, variant)

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None
               ) -> tuple[Tree, EmptyState]:
        where = f"{name}.update"
        check_state(name, state, EmptyState)
        loss = needed_loss(where, value)
        norm = named_global_norm(where, grads, grads=True)
        sq = norm * norm  # not norm**2: a Python float power raises past float64's range
        gap = loss - f_min
        if plus and gap < 0.0:
            gap = 0.0
        den = sq + eps
        with np.errstate(all="ignore"):  # inf and NaN losses or grads: a NaN step, silently
            step = 0.0 if den <= _TINY else float(np.minimum(np.float64(gap) / den, top))
        return (multiply_grads(name, step_multiplier(step), grads, params, step_may_warn(step)),
                state)

    return transform(name, empty_init(), update)


def polyak_sgd(max_learning_rate: float = 1.0, scaling: ScalarOrSchedule = 1.0,
               f_min: float = 0.0, eps: float = 0.0, variant: str = "sps"
               ) -> GradientTransformation:
    """SGD with the Polyak step size (Loizou et al. 2021), as optax's ``polyak_sgd``: with
    ``d = -scaling·g``, ``p ← p + min((f - f_min) / (‖d‖² + eps), max_learning_rate)·d``
    (see ``scale_by_polyak``; ``scaling`` a float or a schedule). The cap bounds the
    multiplier of ``d``, so the largest step is ``max_learning_rate·scaling·g``, where
    SPS_max (Loizou et al. 2021) caps the step at ``max_learning_rate·g``; they agree at
    ``scaling=1``, optax's default.
    ``update(state, grads, params, value=loss)``.

    Stages: ``lr`` (``scaling``), ``polyak``.
    """
    name = "polyak_sgd"
    scale = check_float_or_schedule(name, "scaling", scaling, "scaling")
    f_min, top, eps, plus = polyak_args(name, f_min, max_learning_rate, eps, variant)
    polyak = scale_by_polyak(f_min, top, eps, "sps+" if plus else "sps")
    return make_alias(name, [("lr", scale_by_learning_rate(scale)), ("polyak", polyak)])


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
    """MoMo (Schaipp et al. 2023) with optax.contrib's ``momo`` arguments and state: SGD
    with momentum and a Polyak step.

    ``update(state, grads, params, value=loss)``. ``b = 0`` at the first update, else
    ``beta``; ``f̄ = b·f̄ + (1-b)·loss``, ``m = b·m + (1-b)·g``, ``γ = b·γ + (1-b)·<g, p>``;
    ``k = 1 + lr·wd``; ``τ = min(lr, max(k·(f̄ - lb - γ) + <m, p>, 0) / ‖m‖²)``;
    ``p + u = (p - τ·m) / k``, the paper's proximal step and its authors' code; optax 0.2.8
    leaves ``τ·m`` undivided, ``u = -(lr·wd / k)·p - τ·m`` (the same without weight decay).
    ``adapt_lower_bound`` re-estimates ``lb`` (see optax). Needs params. State
    ``MomoState(exp_avg, barf, gamma, lb, count)``.
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
        loss = needed_loss(where, value)
        count = read_count(where, state.count)
        barf, gamma, lb, dt = _momo_scalars(name, state)
        bt = b if count else 0.0  # optax's first update takes the grads and loss as they are
        dots: list[float] = []

        def moment(g: Any, p: Any, m: Any) -> Any:
            real_grad(g)
            p = real_param(p)
            m_new = like(bt * m + (1.0 - bt) * g, m)
            dots.append(flat_dot(g, p))
            return m_new

        with np.errstate(all="ignore"):  # inf and NaN grads or loss: inf and NaN steps
            barf = bt * barf + (1.0 - bt) * float(dt.type(loss))
            (mu,) = leafwise(where, moment, (grads, params, state.exp_avg),
                             ("grads", "params", "state.exp_avg"))
            gamma = bt * gamma + (1.0 - bt) * plain_sum(dots)
            norm = plain_sum(flat_dot(m, m) for m in tree.leaves(mu))
            iprod = plain_sum(flat_dot(m, p) for m, p in zip(tree.leaves(mu), tree.leaves(params)))
            alpha = value_at(name, "lr", rate, count)
            k = 1.0 + alpha * wd
            if adapt:
                cap = k * (barf - gamma) + iprod
                lb_now = max(cap / (2.0 * k), lower) if cap < k * lb else lb
            else:
                lb_now = lb
            tau = float(np.minimum(alpha, _polyak(k, barf, lb_now, gamma, iprod, norm)))
            shrink = -(alpha * wd) / k
            step_k = tau / k  # (p - τ·m)/k: the proximal step divides the gradient step too
            (out,) = leafwise(where, lambda m, p: like(shrink * p - step_k * m, m),
                              (mu, params), ("state.exp_avg", "params"))
            if adapt:
                lb = float(np.maximum((barf + iprod - gamma) - 0.5 * tau * norm, lower))
        return out, MomoState(mu, dt.type(barf), dt.type(gamma), dt.type(lb),
                              next_count(count))

    return transform(name, init, update)


def momo_adam(learning_rate: ScalarOrSchedule = 1e-2, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-8, lower_bound: float = 0.0, weight_decay: float = 0.0,
              adapt_lower_bound: bool = False) -> GradientTransformation:
    """MoMo-Adam (Schaipp et al. 2023) with optax.contrib's ``momo_adam`` arguments and
    state: Adam(W) with a Polyak step.

    ``update(state, grads, params, value=loss)``. With ``t`` this update's step (1 at the
    first): ``f̄ = b1·f̄ + (1-b1)·loss``, ``m = b1·m + (1-b1)·g``, ``v = b2·v + (1-b2)·g²``,
    ``γ = b1·γ + (1-b1)·<g, p>``; ``D = eps + sqrt(v / (1-b2^t))``; ``c = 1-b1^t``,
    ``k = 1 + lr·wd``; ``τ = min(lr/c, max(k·(f̄ - c·lb - γ) + <m, p>, 0) / <m, m/D>)``;
    ``p + u = (p - τ·m/D) / k``, the paper's proximal step and its authors' code (their
    ``divide=True``); optax 0.2.8 leaves ``τ·m/D`` undivided. Needs params. State
    ``MomoAdamState(exp_avg, exp_avg_sq, barf, gamma, lb, count)``.
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
        loss = needed_loss(where, value)
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
            dots.append(flat_dot(g, p))
            norms.append(flat_dot(m_new, m_new / precond))
            iprods.append(flat_dot(m_new, p))
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
            step_k = tau / k  # (p - τ·m/D)/k, as momo's
            (out,) = leafwise(where, lambda m, d, p: like(shrink * p - step_k * m / d, m),
                              (mu, pre, params), ("state.exp_avg", "precond", "params"))
            if adapt:
                lb = float(np.maximum(((barf + iprod - gamma) - 0.5 * tau * norm) / bc1,
                                      lower))
        return out, MomoAdamState(mu, nu, dt.type(barf), dt.type(gamma), dt.type(lb),
                                  next_count(count))

    return transform(name, init, update)
