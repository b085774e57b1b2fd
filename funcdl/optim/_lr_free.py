"""Learning-rate-free Adam variants from ``optax.contrib``, with its semantics: ``prodigy``
(Mishchenko & Defazio 2023) and ``dadapt_adamw`` (Defazio & Mishchenko 2023). Each
estimates the step size ``d`` (optax's ``estim_lr``) from the run itself; ``learning_rate``
is only a multiplier on it (1.0, or a schedule treating 1.0 as its peak). The distance-based
rules (DoG, DoWG) are in ``_lr_free_dog``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, real_arg
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
    fsum,
    needs_params,
    real_param,
    state_float,
    value_at,
)

__all__ = ["DAdaptAdamWState", "ProdigyState", "dadapt_adamw", "prodigy"]

Tree = Any


class ProdigyState(NamedTuple):
    """``prodigy``'s state, optax's fields: Adam's moments of ``d·g``, the weighted sum of
    past steps' gradients, the params at ``init``, the estimate ``d`` and the numerator of
    its next estimate (0-d, in the params' narrowest float dtype), the updates applied."""

    exp_avg: Tree
    exp_avg_sq: Tree
    grad_sum: Tree
    params0: Tree
    estim_lr: Any
    numerator_weighted: Any
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


class DAdaptAdamWState(NamedTuple):
    """``dadapt_adamw``'s state, optax's fields (as ``ProdigyState``, without ``params0``)."""

    exp_avg: Tree
    exp_avg_sq: Tree
    grad_sum: Tree
    estim_lr: Any
    numerator_weighted: Any
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


# ---------------------------------------------------------------------------- shared checks

def check_positive(name: str, what: str, value: Any, example: str) -> float:
    """A finite float > 0 (a distance or step estimate the rule divides by, or multiplies
    from), or an error naming ``name`` and a value to pass instead."""
    x = real_arg(value, name, what, hint=f"; pass e.g. {what}={example}")
    if not x > 0.0:
        raise ValueError(f"{name}: {what} must be > 0 (the rule divides by it or grows it "
                         f"from it by ratios), got {x}; pass e.g. {what}={example}")
    return x


def _betas(name: str, betas: Any) -> tuple[float, float]:
    """optax's ``betas=(b1, b2)``, each in [0, 1): b1 = 1 divides by 1 - b1^t = 0, b2 = 1
    makes every step 0 (prodigy) or divides by 1 - sqrt(b2) = 0 (dadapt_adamw)."""
    fix = "; pass e.g. betas=(0.9, 0.999)"
    if type(betas) not in (tuple, list) or len(betas) != 2:
        got = f"{type(betas).__name__} of length {len(betas)}" \
            if type(betas) in (tuple, list) else type(betas).__name__
        raise TypeError(f"{name}: betas must be a pair (b1, b2) of floats in [0, 1), got "
                        f"{got}{fix}")
    b1, b2 = (real_arg(b, name, f"betas[{i}]", low=0.0, high=1.0, open_high=True, fix=fix)
              for i, b in enumerate(betas))
    return b1, b2


def read_scalars(name: str, state: Any, *fields: str) -> tuple[list[float], np.dtype[Any]]:
    """The state's 0-d float ``fields`` (step or distance estimates) as Python floats, and
    the first one's dtype (the one the new values are stored in); ``state_float``'s errors."""
    values = [state_float(f"{name}.update", f, getattr(state, f)) for f in fields]
    return [float(v) for v in values], values[0].dtype


def flat_dot(a: Any, b: Any) -> float:
    """``sum(a·b)`` over two equally shaped leaves, in one pass (einsum, which needs no
    contiguous copy of a strided leaf)."""
    return float(np.einsum("i,i->", np.ravel(a), np.ravel(b)))


def l1(a: Any) -> float:
    return float(np.abs(a).sum(dtype=np.float64))


def _estimate(d: float, numerator: float, denominator: float) -> float:
    """``max(d, numerator / denominator)``, NaN propagating as optax's ``jnp.maximum``; a
    denominator of 0 (all-zero gradients so far) keeps ``d`` where optax's 0/0 gives NaN."""
    if denominator == 0.0:
        return d
    est = numerator / denominator
    return est if math.isnan(est) or est > d else d


def _check_scalars(name: str, state: Any) -> tuple[float, float, np.dtype[Any]]:
    (d, nw), dt = read_scalars(name, state, "estim_lr", "numerator_weighted")
    return d, nw, dt


# ---------------------------------------------------------------------------- prodigy

def prodigy(learning_rate: ScalarOrSchedule = 1.0, betas: Sequence[float] = (0.9, 0.999),
            beta3: float | None = None, eps: float = 1e-8, estim_lr0: float = 1e-6,
            estim_lr_coef: float = 1.0, weight_decay: float = 0.0,
            safeguard_warmup: bool = False) -> GradientTransformation:
    """Prodigy, as optax.contrib's ``prodigy``: AdamW on ``d·g`` with ``d`` estimated.

    ``t`` this update's step (1 at the first), ``s`` the ``learning_rate`` (or its schedule
    at the count), ``dlr = d·s·sqrt(1-b2^t)/(1-b1^t)``, ``p0`` the params at init:
    ``m = b1·m + (1-b1)·d·g``; ``v = b2·v + (1-b2)·(d·g)²``; ``r = b3·r + (dlr/d0)·d·g``
    (``d/d0·d·g`` with ``safeguard_warmup``); ``n = b3·n + (d/d0)·dlr·<g, p0 - p>``;
    ``d ← max(d, coef·n / |r|₁)``; ``u = -wd·dlr·p - dlr·m / (sqrt(v) + d·eps)`` (the new
    ``d``). ``b3`` defaults to ``sqrt(b2)``, ``d`` starts at ``estim_lr0``. Needs params.
    The bias correction in ``dlr`` is always on, as optax's; the authors' ``Prodigy``
    defaults to ``use_bias_correction=False``. State ``ProdigyState``; its scalars are kept
    in the params' narrowest float dtype.
    """
    name = "prodigy"
    lr = check_lr(name, learning_rate)
    b1, b2 = _betas(name, betas)
    b3 = math.sqrt(b2) if beta3 is None else real_arg(
        beta3, name, "beta3", low=0.0, high=1.0, hint="; pass None for sqrt(b2)")
    eps = check_float(name, "eps", eps)
    d0 = check_positive(name, "estim_lr0", estim_lr0, "1e-6")
    coef = check_positive(name, "estim_lr_coef", estim_lr_coef, "1.0")
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)
    safeguard = bool_arg(safeguard_warmup, name, "safeguard_warmup")

    def init(params: Tree) -> ProdigyState:
        # the step's floor is d·eps, 1e-14 at first: 0 in float16, and a 0/0 step
        check_float_params(f"{name}.init", params, d0 * eps or None)
        low = float_dtypes(params)[0]
        zeros = tree.zeros_like
        return ProdigyState(zeros(params), zeros(params), zeros(params),
                            tree.map(np.array, params),  # a copy: p0 must outlive the params
                            low.type(d0), low.type(0.0), zero_count())

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ProdigyState]:
        check_state(name, state, ProdigyState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        d, nw, dt = _check_scalars(name, state)
        t = count + 1
        rate = value_at(name, "learning_rate", lr, count)
        dlr = d * rate * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        r_scale = d if safeguard else dlr
        acc: list[float] = []
        sums: list[float] = []

        def moments(g: Any, p: Any, p0: Any, m: Any, v: Any, r: Any
                    ) -> tuple[Any, Any, Any]:
            real_grad(g)
            g = like(g, m)  # a float16 grad would otherwise step in float16
            acc.append(flat_dot(g, p0 - real_param(p)))
            dg = d * g
            # ((1-b2)·dg)·dg: dg·dg first would overflow float32 sooner
            v_new = like(b2 * v + (1.0 - b2) * dg * dg, v)
            r_new = like(b3 * r + r_scale * dg / d0, r)  # optax's order
            sums.append(l1(r_new))
            return like(b1 * m + (1.0 - b1) * dg, m), v_new, r_new

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            mu, nu, rs = leafwise(
                f"{name}.update", moments,
                (grads, params, state.params0, state.exp_avg, state.exp_avg_sq,
                 state.grad_sum),
                ("grads", "params", "state.params0", "state.exp_avg", "state.exp_avg_sq",
                 "state.grad_sum"), n_out=3)
            nw = b3 * nw + (d / d0) * dlr * fsum(acc)
            d_new = _estimate(d, coef * nw, fsum(sums))
            floor = d_new * eps

            def step(m: Any, v: Any, p: Any) -> Any:
                u = -(dlr * m) / (np.sqrt(v) + floor)
                return like(u - (wd * dlr) * p if wd else u, m)

            (out,) = leafwise(f"{name}.update", step, (mu, nu, params),
                              ("state.exp_avg", "state.exp_avg_sq", "params"))
            return out, ProdigyState(mu, nu, rs, state.params0, dt.type(d_new), dt.type(nw),
                                     next_count(count))

    return transform(name, init, update)


# ---------------------------------------------------------------------------- D-Adaptation

def dadapt_adamw(learning_rate: ScalarOrSchedule = 1.0,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 estim_lr0: float = 1e-6, weight_decay: float = 0.0) -> GradientTransformation:
    """D-Adapted AdamW, as optax.contrib's ``dadapt_adamw``.

    ``t``, ``s`` as in ``prodigy``, ``dlr = d·s·sqrt(1-b2^t)/(1-b1^t)``, ``q = sqrt(b2)``,
    with the old ``r`` and ``v``: ``n = q·n + (1-q)·dlr·<g, r / (sqrt(v) + eps)>``; then
    ``m = b1·m + (1-b1)·dlr·g``; ``v = b2·v + (1-b2)·g²``; ``r = q·r + (1-q)·dlr·g``;
    ``d ← max(d, n / ((1-q)·|r|₁))``; ``u = -wd·dlr·p - m / (sqrt(v) + eps)``. ``d``
    starts at ``estim_lr0``. Needs params. The bias correction in ``dlr`` is always on, as
    optax's; the authors' ``DAdaptAdam`` defaults to ``use_bias_correction=False``. State
    ``DAdaptAdamWState``; its scalars are kept in the params' narrowest float dtype.
    """
    name = "dadapt_adamw"
    lr = check_lr(name, learning_rate)
    b1, b2 = _betas(name, betas)
    # > 0: the first update divides r = 0 by sqrt(v) + eps with v = 0 (0/0 = NaN in optax)
    eps = check_positive(name, "eps", eps, "1e-8")
    d0 = check_positive(name, "estim_lr0", estim_lr0, "1e-6")
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)
    q = math.sqrt(b2)

    def init(params: Tree) -> DAdaptAdamWState:
        check_float_params(f"{name}.init", params, eps)
        low = float_dtypes(params)[0]
        zeros = tree.zeros_like
        return DAdaptAdamWState(zeros(params), zeros(params), zeros(params), low.type(d0),
                                low.type(0.0), zero_count())

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, DAdaptAdamWState]:
        check_state(name, state, DAdaptAdamWState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        d, nw, dt = _check_scalars(name, state)
        t = count + 1
        rate = value_at(name, "learning_rate", lr, count)
        dlr = d * rate * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        acc: list[float] = []
        sums: list[float] = []

        def leaf(g: Any, p: Any, m: Any, v: Any, r: Any) -> tuple[Any, Any, Any, Any]:
            real_grad(g)
            g, p = like(g, m), real_param(p)  # a float16 grad would otherwise step in float16
            acc.append(flat_dot(g, r / (np.sqrt(v) + eps)))
            m_new = like(b1 * m + ((1.0 - b1) * dlr) * g, m)
            v_new = like(b2 * v + (1.0 - b2) * g * g, v)  # overflows only where v does
            r_new = like(q * r + ((1.0 - q) * dlr) * g, r)
            sums.append(l1(r_new))
            u = -m_new / (np.sqrt(v_new) + eps)
            return like(u - (wd * dlr) * p if wd else u, m), m_new, v_new, r_new

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            out, mu, nu, rs = leafwise(
                f"{name}.update", leaf,
                (grads, params, state.exp_avg, state.exp_avg_sq, state.grad_sum),
                ("grads", "params", "state.exp_avg", "state.exp_avg_sq", "state.grad_sum"),
                n_out=4)
            nw = q * nw + (1.0 - q) * dlr * fsum(acc)
            d_new = _estimate(d, nw, (1.0 - q) * fsum(sums))
            return out, DAdaptAdamWState(mu, nu, rs, dt.type(d_new), dt.type(nw),
                                         next_count(count))

    return transform(name, init, update)

