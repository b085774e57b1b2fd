"""The adaptive directions: Adam, RMSprop and Adagrad, each scaling the update entrywise by
running statistics of past gradients, ``eps`` outside the square root as in torch. Notation
as in ``_transforms``. Each ``init`` refuses params that are not real floating point (and an
``eps`` that rounds to 0 in the params' dtype), each ``update`` such grads; each ``update``
returns inf and NaN steps for inf and NaN gradients silently, as torch does, with NumPy's
warnings off for the whole update."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    cast_like,
    check_state,
    fresh,
    leafwise,
    like,
    next_count,
    read_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_params,
    full_in,
    moment_dtype_arg,
    zeros_in,
)

__all__ = [
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_rms",
]

Tree = Any


class ScaleByAdamState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree
    nu: Tree


class ScaleByRmsState(NamedTuple):
    nu: Tree  # running mean of g² (torch: square_avg)
    mu: Tree  # running mean of g when centered (torch: grad_avg), else None


class ScaleByRmsWithCountState(NamedTuple):  # scale_by_rms(bias_correction=True)'s
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    nu: Tree
    mu: Tree


class ScaleByAdagradState(NamedTuple):
    sum_of_squares: Tree


def adam_moments(g: Any, m: Any, v: Any, b1: float, b2: float) -> tuple[Any, Any]:
    """Adam's moments in torch's order, ``b1·m + (1-b1)·g`` and ``b2·v + ((1-b2)·g)·g``
    (addcmul's: float32 ``g·g`` would overflow from |g| ~ 1.8e19, ``(1-b2)·g·g`` only
    where its result does), each in its state's dtype. scale_by_adam's own update is the
    same arithmetic written into one scratch array."""
    return like(b1 * m + (1.0 - b1) * g, m), like(b2 * v + (1.0 - b2) * g * g, v)


def moments_pass(name: str, leaf: Callable[..., Any], grads: Tree, state: Any,
                 elementwise: bool = True) -> tuple[Tree, ...]:
    """``(steps, mu, nu)``: ``leaf(g, mu, nu) -> (step, new mu, new nu)`` over the grads and
    a state's two moments in one leaf-wise pass (``leafwise``; ``elementwise`` as there),
    inf and NaN steps silently, as scale_by_adam's and torch's."""
    with np.errstate(all="ignore"):
        return leafwise(f"{name}.update", leaf, (grads, state.mu, state.nu),
                        ("grads", "state.mu", "state.nu"), n_out=3, elementwise=elementwise)


def corrected_root(v: Any, inv_sqrt_bc: float) -> Any:
    """``sqrt(v)·inv_sqrt_bc`` (``inv_sqrt_bc = 1/sqrt(1 - b^t)``) in ``v``'s dtype, a new
    array: the bias-corrected root as ``sqrt(v)·sqrt(1/bc)``, not ``sqrt(v/bc)``, since
    float32 ``v/bc`` passes the range first (``v ~ 1e38`` from ``|g| ~ 1.8e19`` at the first
    steps, a step of 0) where the root does not. scale_by_adam writes the same product
    into its scratch array."""
    root = np.sqrt(v)
    if inv_sqrt_bc != 1.0:
        root *= inv_sqrt_bc  # in place: root's dtype, the state's
    return root


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_root: float = 0.0, mu_dtype: Any = None, *, nesterov: bool = False
                  ) -> GradientTransformation:
    """Adam's direction, bias-corrected, ``eps`` outside the square root (as torch and optax):
    ``m = b1·m + (1-b1)·g``; ``v = b2·v + (1-b2)·g²``; ``t`` the updates already applied;
    ``u = m̂ / (sqrt(v̂ + eps_root) + eps)``, ``m̂ = m / (1-b1^(t+1))``, ``v̂ = v / (1-b2^(t+1))``.

    As optax: ``nesterov=True`` is NAdam's look-ahead, ``m̂ = b1·m / (1-b1^(t+2)) +
    (1-b1)·g / (1-b1^(t+1))``; ``mu_dtype`` stores ``m`` in that float dtype (e.g.
    ``np.float16`` to halve its memory; None: the params'), the update keeping ``v``'s.
    State ``ScaleByAdamState(count, mu, nu)``.
    """
    name = "scale_by_adam"
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    nesterov = bool_arg(nesterov, name, "nesterov")
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)

    def init(params: Tree) -> ScaleByAdamState:
        check_float_params(f"{name}.init", params, eps)
        mu = zeros_in(params, mu_dt)
        return ScaleByAdamState(zero_count(), mu, tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdamState]:
        del params
        count = state_count(name, state, ScaleByAdamState)
        t = count + 1  # this update's step, 1 at the first
        inv_bc1 = 1.0 / (1.0 - b1**t)
        inv_bc2 = 1.0 / (1.0 - b2**t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - b2**t)
        # NAdam's look-ahead: m̂ = b1·m / (1-b1^(t+1)) + (1-b1)·g / (1-b1^t)
        ahead, now = b1 / (1.0 - b1 ** (t + 1)), (1.0 - b1) * inv_bc1

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            v_new = like(v * b2, v)
            # One scratch array of v's dtype (the step's), made here and written in place:
            # (1-b1)·g, then (1-b2)·g², then the denominator, then the step. Three new
            # arrays per leaf where there were six: under glibc's default malloc each one
            # of a large leaf is fresh pages (on the mlp's params, 6.5-7.0 -> 4.7-4.8 ms a
            # call, a one-off timing at 2026-12-05; the same with retain_freed_memory()).
            s = np.multiply(g, 1.0 - b1, out=np.empty(np.shape(v_new), v_new.dtype))
            if mu_dt is None:
                m_new = m_step = like(m * b1, m)
                m_new += s
            else:  # as optax, the step reads the new m before it is stored as mu_dtype
                m_step = np.multiply(m, b1, dtype=v_new.dtype)
                m_step += s
                m_new = like(m_step, m)
            np.multiply(g, 1.0 - b2, out=s)  # then ·g: torch's addcmul order
            s *= g
            v_new += s
            if nesterov:  # ahead·m + now·g, with now·g in s before s holds the denominator
                # (not now·(m·ahead/now + g): m·ahead/now overflows for b1 near 1)
                u = m_step * ahead
                np.multiply(g, now, out=s)
                u += s
            if eps_root == 0.0:
                np.sqrt(v_new, out=s)
                s *= inv_sqrt_bc2
            else:
                np.multiply(v_new, inv_bc2, out=s)
                s += eps_root
                np.sqrt(s, out=s)
            s += eps
            if nesterov:
                np.divide(u, s, out=s)
            else:
                np.divide(m_step, s, out=s)
                s *= inv_bc1
            return (s if s.ndim else s[()]), m_new, v_new

        # (1-b2)·g² of a float32 gradient beyond ~6e20 (b2 = 0.999) overflows, as in torch:
        # v saturates at inf and the step of that entry is 0 (documented), rather than a
        # warning; an inf gradient gives a NaN step (inf/inf), and eps=0 a NaN one for g=0
        # (0/0), silently, as in torch.
        # Elementwise: a small model's leaves go through these 12 NumPy calls once, end to
        # end (see leafwise); not with mu_dtype, whose mu's dtype differs from the others'
        # and which the fused path would walk the trees only to turn down.
        out, mu, nu = moments_pass(name, leaf, grads, state, elementwise=mu_dt is None)
        return out, ScaleByAdamState(next_count(count), mu, nu)

    return fresh(transform(name, init, update))  # each leaf's step is its new array s


def _divide(g: Any, root: Any, eps: float) -> Any:
    """``g / (root + eps)`` in ``root``'s dtype, the state's, whatever ``g``'s (float64
    grads on float32 params give float32 steps, as Adam's do): in place in ``root``, a new
    array made by the caller (one allocation where there were three)."""
    root += eps
    try:
        return np.divide(g, root, root)  # out given positionally: the keyword costs 50 ns
    except TypeError:  # root a NumPy scalar (a 0-d state)
        return cast_like(g / root, root)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                 eps_in_sqrt: bool = True, bias_correction: bool = False, *,
                 centered: bool = False) -> GradientTransformation:
    """optax's ``scale_by_rms``: ``v = decay·v + (1-decay)·g²`` from ``v = initial_scale``;
    ``u = g / sqrt(v + eps)``, or ``g / (sqrt(v) + eps)`` with ``eps_in_sqrt=False`` (torch
    RMSprop's direction: ``rmsprop`` takes that, with torch's ``alpha`` as ``decay``).
    ``bias_correction``: ``v / (1 - decay^t)`` in place of ``v`` at step t = 1, 2, ...
    (with ``eps_in_sqrt=False``, Adam's denominator: ``scale_by_adam(b1=0)``'s direction).
    ``centered`` (funcdl's, keyword-only; optax's ``scale_by_stddev``, torch's
    ``centered``): with ``m = decay·m + (1-decay)·g``, ``v - m²`` in place of ``v`` (each
    corrected by ``1 - decay^t`` under ``bias_correction``).

    State ``ScaleByRmsState(nu, mu)``, or ``ScaleByRmsWithCountState(count, nu, mu)`` with
    ``bias_correction``; ``mu`` is None unless ``centered``.
    """
    name = "scale_by_rms"
    a = check_float(name, "decay", decay, high=1.0)
    eps = check_float(name, "eps", eps)
    start = check_float(name, "initial_scale", initial_scale)
    inside = bool_arg(eps_in_sqrt, name, "eps_in_sqrt")
    corrected = bool_arg(bias_correction, name, "bias_correction")
    ctr = bool_arg(centered, name, "centered")
    if corrected and a == 1.0:
        raise ValueError(f"{name}: bias_correction divides by 1 - decay^t, 0 for decay=1; "
                         f"pass decay < 1, or bias_correction=False")
    add_in, add_out = (eps, 0.0) if inside else (0.0, eps)
    kind: Any = ScaleByRmsWithCountState if corrected else ScaleByRmsState

    def init(params: Tree) -> Any:
        check_float_params(f"{name}.init", params, eps)
        with np.errstate(over="ignore"):  # past float32's range: inf, in float32 params
            nu = full_in(params, start) if start else \
                tree.zeros_like(params)
        mu = tree.zeros_like(params) if ctr else None
        return ScaleByRmsWithCountState(zero_count(), nu, mu) if corrected else \
            ScaleByRmsState(nu, mu)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, Any]:
        del params
        check_state(name, state, kind)
        count = read_count(f"{name}.update", state.count) if corrected else 0
        # 1 - decay^t, divided by as optax does: v̂ - m̂² cancels, and the last bit matters
        bc = 1.0 - a ** (count + 1) if corrected else 1.0

        if not ctr:
            def leaf(g: Any, v: Any) -> tuple[Any, Any]:
                real_grad(g)
                v_new = like(a * v + (1.0 - a) * g * g, v)
                if add_in:
                    v_hat = v_new if bc == 1.0 else v_new / bc
                    return _divide(g, np.sqrt(v_hat + add_in), add_out), v_new
                root = corrected_root(v_new, 1.0 if bc == 1.0 else 1.0 / math.sqrt(bc))
                return _divide(g, root, add_out), v_new

            with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
                out, nu = leafwise(f"{name}.update", leaf, (grads, state.nu),
                                   ("grads", "state.nu"), n_out=2)
            mu = None
        else:
            def leaf_centered(g: Any, v: Any, m: Any) -> tuple[Any, Any, Any]:
                real_grad(g)
                # bias-corrected: optax's rounding, (1-a)·(g·g), so that v̂ - m̂² cancels at
                # the first step; else torch's, ((1-a)·g)·g, which overflows only where its
                # result does (float32 g·g does from |g| ~ 1.8e19)
                sq = (1.0 - a) * (g * g) if corrected else (1.0 - a) * g * g
                v_new = like(a * v + sq, v)
                m_new = like(a * m + (1.0 - a) * g, m)
                v_hat, m_hat = (v_new, m_new) if bc == 1.0 else (v_new / bc, m_new / bc)
                # v̂ - m̂² >= 0 in exact arithmetic; clamp the rounding so sqrt never sees
                # -0.0001ulp
                var = np.maximum(v_hat - m_hat * m_hat, 0.0)
                if not np.isfinite(var).all():  # inf - inf past the range: inf, as torch's
                    var = np.where(np.isnan(var) & np.isinf(v_hat), v_hat, var)  # fused v - m·m
                return _divide(g, np.sqrt(var + add_in if add_in else var), add_out), \
                    v_new, m_new

            with np.errstate(all="ignore"):
                out, nu, mu = leafwise(f"{name}.update", leaf_centered,
                                       (grads, state.nu, state.mu),
                                       ("grads", "state.nu", "state.mu"), n_out=3)
        if corrected:
            return out, ScaleByRmsWithCountState(next_count(count), nu, mu)
        return out, ScaleByRmsState(nu, mu)

    return transform(name, init, update)


def scale_by_adagrad(initial_accumulator_value: float = 0.0, eps: float = 1e-10
                     ) -> GradientTransformation:
    """torch Adagrad's direction: ``s = s + g²``; ``u = g / (sqrt(s) + eps)``, ``s`` starting
    at ``initial_accumulator_value``. State ``ScaleByAdagradState(sum_of_squares)``.

    optax's nearest is ``scale_by_rss``, with these keywords but ``eps`` inside the square
    root and defaults 0.1 and 1e-7 (these are torch's)."""
    name = "scale_by_adagrad"
    init_acc = check_float(name, "initial_accumulator_value", initial_accumulator_value)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> ScaleByAdagradState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAdagradState(full_in(params, init_acc))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAdagradState]:
        del params
        check_state(name, state, ScaleByAdagradState)

        def leaf(g: Any, s: Any) -> tuple[Any, Any]:
            real_grad(g)
            s_new = like(s + g * g, s)
            return _divide(g, np.sqrt(s_new), eps), s_new

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            out, sums = leafwise(f"{name}.update", leaf, (grads, state.sum_of_squares),
                                 ("grads", "state.sum_of_squares"), n_out=2)
        return out, ScaleByAdagradState(sums)

    return transform(name, init, update)
