"""Directions from running sums of squared gradients beyond Adam's, RMSprop's and Adagrad's
(``_adaptive``): ``scale_by_adadelta`` (Adadelta, optax's and torch's) with its alias
``adadelta`` (``torch.optim.Adadelta`` step for step), ``scale_by_rss`` (optax's Adagrad
direction: the root of the sum of squares) and ``scale_by_stddev`` (a centered RMS). Notation
as in ``_transforms``; ``t = count + 1`` is the step being taken. As in ``_adaptive``: each
``init`` refuses params that are not real floating point, each ``update`` such grads; inf and
NaN gradients give inf and NaN steps silently; the state keeps the params' dtype."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._adaptive import moments_pass
from funcdl.optim._alias import Stages, append_weight_decay, make_alias
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
from funcdl.optim._checks import check_float, check_float_params, check_lr, full_in
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["ScaleByAdaDeltaState", "ScaleByRStdDevState", "ScaleByRStdDevWithCountState",
           "ScaleByRssState", "adadelta", "scale_by_adadelta", "scale_by_rss", "scale_by_stddev"]

Tree = Any


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Tree  # running mean of g² (torch: square_avg)
    e_x: Tree  # running mean of u² (torch: acc_delta)


class ScaleByRssState(NamedTuple):
    sum_of_squares: Tree  # Σ g², from initial_accumulator_value


class ScaleByRStdDevState(NamedTuple):
    mu: Tree  # running mean of g
    nu: Tree  # running mean of g²


class ScaleByRStdDevWithCountState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree
    nu: Tree


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


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7
                 ) -> GradientTransformation:
    """optax's ``scale_by_rss`` (its Adagrad): ``s = s + g²`` from ``s =
    initial_accumulator_value``; ``u = g / sqrt(s + eps)`` where ``s > 0``, else 0 (eps
    inside the root; ``scale_by_adagrad`` is torch's, eps outside). State
    ``ScaleByRssState(sum_of_squares)``."""
    name = "scale_by_rss"
    start = check_float(name, "initial_accumulator_value", initial_accumulator_value)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> ScaleByRssState:
        check_float_params(f"{name}.init", params, eps or None)
        return ScaleByRssState(full_in(params, start))

    def leaf(g: Any, s: Any) -> tuple[Any, Any]:
        real_grad(g)
        g = like(g, s)  # in the state's (the params') dtype: float16 grads add no rounding
        s_new = like(g * g + s, s)
        # optax's rsqrt, then one product: the same roundings
        inv = np.where(s_new > 0, 1.0 / np.sqrt(s_new + eps), 0.0)
        return like(g * inv, s), s_new

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByRssState]:
        del params
        check_state(name, state, ScaleByRssState)
        with np.errstate(all="ignore"):
            u, s = leafwise(f"{name}.update", leaf, (grads, state.sum_of_squares),
                            ("grads", "state.sum_of_squares"), n_out=2, elementwise=True)
        return u, ScaleByRssState(s)

    return transform(name, init, update)


def scale_by_stddev(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                    eps_in_sqrt: bool = True, bias_correction: bool = False
                    ) -> GradientTransformation:
    """optax's ``scale_by_stddev`` (centered RMSprop): ``m = (1-d)·g + d·m``, ``v = (1-d)·g²
    + d·v`` (``v`` from ``initial_scale``, ``m`` from 0); ``u = g / sqrt(v - m² + eps)``, or
    ``g / (sqrt(v - m²) + eps)`` with ``eps_in_sqrt=False``; ``bias_correction`` divides
    ``m`` and ``v`` by ``1 - d^t`` at step t = 1, 2, ... first. ``v - m²`` is held at >= 0
    (it is in exact arithmetic). State ``ScaleByRStdDevState(mu, nu)``, or
    ``ScaleByRStdDevWithCountState(count, mu, nu)`` with ``bias_correction``."""
    name = "scale_by_stddev"
    d = check_float(name, "decay", decay, high=1.0)
    eps = check_float(name, "eps", eps)
    start = check_float(name, "initial_scale", initial_scale)
    inside = bool_arg(eps_in_sqrt, name, "eps_in_sqrt")
    corrected = bool_arg(bias_correction, name, "bias_correction")
    if corrected and d == 1.0:
        raise ValueError(f"{name}: bias_correction divides by 1 - decay^t, 0 for decay=1; "
                         f"pass decay < 1, or bias_correction=False")
    kind: Any = ScaleByRStdDevWithCountState if corrected else ScaleByRStdDevState

    def init(params: Tree) -> Any:
        check_float_params(f"{name}.init", params, eps or None)
        mu = tree.zeros_like(params)
        nu = full_in(params, start)
        return ScaleByRStdDevWithCountState(zero_count(), mu, nu) if corrected else \
            ScaleByRStdDevState(mu, nu)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, Any]:
        del params
        check_state(name, state, kind)
        count = read_count(f"{name}.update", state.count) if corrected else 0
        bc = 1.0 - d ** (count + 1) if corrected else 1.0

        def leaf(g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            real_grad(g)
            g = like(g, m)  # in the state's dtype: v - m² cancels, so no float16 rounding
            m_new = like((1.0 - d) * g + d * m, m)
            v_new = like((1.0 - d) * (g * g) + d * v, v)
            m_hat, v_hat = (m_new, v_new) if bc == 1.0 else (m_new / bc, v_new / bc)
            # rounding can take v - m² a hair below 0, where sqrt would make NaN
            var = np.maximum(v_hat - m_hat * m_hat, 0.0)
            scaling = 1.0 / np.sqrt(var + eps) if inside else 1.0 / (np.sqrt(var) + eps)
            return like(scaling * g, m), m_new, v_new

        u, mu, nu = moments_pass(name, leaf, grads, state)
        if corrected:
            return u, ScaleByRStdDevWithCountState(next_count(count), mu, nu)
        return u, ScaleByRStdDevState(mu, nu)

    return transform(name, init, update)


def adadelta(lr: ScalarOrSchedule = 1.0, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0) -> GradientTransformation:
    """Adadelta, as ``torch.optim.Adadelta``: ``g ← g + wd·p``; ``a ← rho·a + (1-rho)·g²``;
    ``u = sqrt(d + eps) / sqrt(a + eps) · g``; ``d ← rho·d + (1-rho)·u²``; ``p ← p - lr·u``
    (see ``scale_by_adadelta``).

    optax's ``adadelta(learning_rate=1.0)`` is the same chain, bit for bit, and takes a
    ``weight_decay_mask``; its default ``learning_rate=None`` is no scaling at all, not
    even the sign: its steps then climb the loss, these descend it (lr = 1, torch's
    default).

    Stages: ``weight_decay``, ``adadelta``, ``lr``.
    """
    name = "adadelta"
    lr = check_lr(name, lr)
    rho = check_float(name, "rho", rho, high=1.0)
    eps = check_float(name, "eps", eps)
    wd = check_float(name, "weight_decay", weight_decay)
    stages: Stages = []
    append_weight_decay(stages, wd)
    stages += [("adadelta", scale_by_adadelta(rho, eps)), ("lr", scale_by_learning_rate(lr))]
    return make_alias(name, stages, eps)
