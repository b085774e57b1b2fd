"""Mechanic (Cutkosky, Defazio & Mehta 2023) as ``optax.contrib``'s ``mechanize``: a base
optimizer's steps rescaled by a learned scalar, found by online coin betting over
``num_betas`` decay rates at once."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import int_arg
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    check_state,
    check_transforms,
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
    float_dtypes,
    fsum,
    needs_params,
    real_param,
)
from funcdl.optim._lr_free import check_positive, flat_dot
from funcdl.optim._lr_free_dog import sq

__all__ = ["MechanicState", "mechanize"]

Tree = Any


class MechanicState(NamedTuple):
    """``mechanize``'s state, optax's fields: the base optimizer's state, the updates
    applied, and per decay rate (vectors of ``num_betas`` in the params' narrowest float
    dtype) the rewards ``r``, the running max ``m`` and sum of squares ``v`` of the
    scale's gradient, the scales ``s``; ``x0``, the params at the first update."""

    base_optimizer_state: Any
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    r: Any
    m: Any
    v: Any
    s: Any
    x0: Tree


def _vector(name: str, what: str, value: Any, n: int) -> np.ndarray:
    a = np.asarray(value) if isinstance(value, np.ndarray) else None
    if a is None or a.shape != (n,) or a.dtype.kind != "f":
        raise TypeError(f"{name}.update: the state's {what} must be a float vector of "
                        f"shape ({n},), got {type(value).__name__}; pass the state made by "
                        f"this optimizer's init")
    return a


def mechanize(base_optimizer: GradientTransformation, weight_decay: float = 1e-2,
              eps: float = 1e-8, s_init: float = 1e-6, num_betas: int = 6
              ) -> GradientTransformation:
    """optax.contrib's ``mechanize``: with ``b`` the base's update, ``x0`` the params at
    the first update, ``S = sum(s)``: ``Δ = (x0 - p) / (S + eps)``;
    ``h = <g + wd·S·|g|/(|p| + eps)·p, Δ>``; per ``beta_i = 1 - 0.1^i``:
    ``m = max(beta·m, |h| + eps)``, ``v = beta²·v + h²``, ``r = beta·r + clip(h, ±m_old)·s``,
    ``s = (s_init/num_betas·m + max(r, 0)) / (sqrt(v) + eps)``; then
    ``u = x0 - sum(s)·(Δ - b) - p``. Needs params. State ``MechanicState``. The clip of h
    is optax's, added by the authors after the paper; their PyTorch ``mechanic`` has none."""
    name = "mechanize"
    check_transforms(name, [base_optimizer], ["base_optimizer"])
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)
    eps = check_positive(name, "eps", eps, "1e-8")
    s_init = check_positive(name, "s_init", s_init, "1e-6")
    n = int_arg(num_betas, name, "num_betas", minimum=1)
    if n > 16:  # 1 - 0.1^i rounds to 1.0 from i = 17 on: copies of a decay that never forgets
        raise ValueError(f"{name}: num_betas must be in [1, 16] (beta_i = 1 - 0.1^i is 1.0 "
                         f"in float64 beyond), got {n}; pass e.g. num_betas=6")
    betas = 1.0 - 0.1 ** np.arange(1, n + 1, dtype=np.float64)
    base_init, base_update = base_optimizer

    def init(params: Tree) -> MechanicState:
        check_float_params(f"{name}.init", params)
        low = float_dtypes(params)[0]
        zeros = np.zeros(n, low)
        return MechanicState(base_init(params), zero_count(), zeros, zeros.copy(),
                             zeros.copy(), np.full(n, s_init, low),
                             params)  # x0: replaced by a copy at the first update, never read

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MechanicState]:
        check_state(name, state, MechanicState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        r, m, v, s = (_vector(name, w, x, n) for w, x in
                      (("r", state.r), ("m", state.m), ("v", state.v), ("s", state.s)))
        base_out, base_state = base_update(state.base_optimizer_state, grads, params)
        x0 = tree.map(np.array, params) if count == 0 else state.x0
        sums: list[tuple[float, float, float, float]] = []

        def norms(g: Any, p: Any, q: Any) -> None:
            real_grad(g)
            p = real_param(p)
            diff = q - p
            sums.append((sq(g), sq(p), flat_dot(g, diff), flat_dot(p, diff)))  # |g|² in float64

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            leafwise(f"{name}.update", norms, (grads, params, x0),
                     ("grads", "params", "state.x0"))
            gg, pp, gd, pd = (fsum(col) for col in zip(*sums, strict=True)) \
                if sums else (0.0, 0.0, 0.0, 0.0)
            s_sum = float(np.sum(s, dtype=np.float64))
            decay = wd * s_sum * math.sqrt(gg) / (math.sqrt(pp) + eps)
            h = (gd + decay * pd) / (s_sum + eps)
            m64 = m.astype(np.float64)
            m_new = np.maximum(betas * m64, abs(h) + eps)
            v_new = betas**2 * v + h * h
            r_new = betas * r + np.clip(h, -m64, m64) * s
            s_new = (s_init / n * m_new + np.maximum(r_new, 0.0)) / (np.sqrt(v_new) + eps)
            total = float(np.sum(s_new, dtype=np.float64))

            def step(q: Any, p: Any, b: Any) -> Any:
                return like(q - total * ((q - p) / (s_sum + eps) - b) - p, q)

            (out,) = leafwise(f"{name}.update", step, (x0, params, base_out),
                              ("state.x0", "params", "base updates"))
            dt = s.dtype
            return out, MechanicState(base_state, next_count(count), r_new.astype(dt),
                                      m_new.astype(dt), v_new.astype(dt), s_new.astype(dt),
                                      x0)

    return transform(name, init, update)
