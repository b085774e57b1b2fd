"""optax's ``scale_by_lion`` (the sign of a momentum) and ``scale_by_trust_ratio`` (LAMB's
and LARS's layer-wise scaling). Notation as in ``_transforms``. Each ``update`` refuses
grads that are not real floating point and returns inf and NaN steps silently."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl._args import F32, F64, native_float
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
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
from funcdl.optim._checks import check_float, check_float_params, moment_dtype_arg, zeros_in

__all__ = ["ScaleByLionState", "scale_by_lion", "scale_by_trust_ratio"]

Tree = Any


class ScaleByLionState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree


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
        check_state(name, state, ScaleByLionState)
        count = read_count(f"{name}.update", state.count)

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


def _norm(x: Any) -> float:
    """``‖x‖₂`` of a whole leaf as a Python float: float32 and float64 by BLAS, in float64
    should a float32 sum of squares overflow; float16 in float64. A leaf that is not real
    floating point raises a bare TypeError, which ``leafwise`` turns into one naming it."""
    a = x if type(x) is np.ndarray else np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError("a leaf that is not real floating point")
    # `is` first (the cheapest test); native_float for an equal dtype of another object
    f32 = a.dtype is F32 or (native_float(a.dtype) and a.dtype.char == "f")
    if not f32 and a.dtype is not F64 and not native_float(a.dtype):
        a = a.astype(np.float64)
    s = float(np.vdot(a, a))
    if s == math.inf and f32:
        a = a.astype(np.float64)
        s = float(np.vdot(a, a))
    return math.sqrt(s)


def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0,
                         eps: float = 0.0) -> GradientTransformation:
    """optax's ``scale_by_trust_ratio``, per leaf (layer): ``u = g · c·‖p‖ / (‖g‖ + eps)``,
    ``c = trust_coefficient``, each norm (of the whole leaf) raised to ``min_norm`` if
    below; ``u = g`` where either norm is 0 (a zero param would never move). Needs
    ``params``. State ``EmptyState``. The step is in ``g``'s dtype (it keeps no state).
    """
    name = "scale_by_trust_ratio"
    low = check_float(name, "min_norm", min_norm)
    coef = check_float(name, "trust_coefficient", trust_coefficient)
    eps = check_float(name, "eps", eps)

    def leaf(g: Any, p: Any) -> Any:
        real_grad(g)
        # as optax's safe_norm: a norm <= min_norm is min_norm, and a NaN one stays NaN
        p_norm, g_norm = _norm(p), _norm(g)
        p_norm = low if p_norm <= low else p_norm
        g_norm = low if g_norm <= low else g_norm
        if p_norm == 0.0 or g_norm == 0.0:
            return g
        return g * (coef * p_norm / (g_norm + eps))  # a Python float: float32 stays

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        if type(state) is not EmptyState:
            check_state(name, state, EmptyState)
        if params is None:
            raise ValueError(f"{name}.update: needs the params (the trust ratio is "
                             f"‖p‖ / ‖g‖ per leaf); call update(state, grads, params), got "
                             f"params=None")
        # an inf ‖g‖ makes the ratio 0, and inf·0 NaN, silently, as optax
        with np.errstate(all="ignore"):
            (out,) = leafwise(f"{name}.update", leaf, (grads, params), ("grads", "params"))
        return out, state

    return transform(name, empty_init(), update)
