"""More of optax's transforms: ``scale_by_sign`` (signSGD's direction), ``centralize``
(gradient centralization), ``scale_by_novograd`` (NovoGrad: one second moment per leaf)
and ``scale_by_adan`` (Adan: Nesterov momentum estimated from gradient differences).
Notation as in ``_transforms``: ``g`` the incoming grads, ``u`` the outgoing step, ``t``
the updates already applied. Each ``update`` refuses grads that are not real floating point
and returns inf and NaN steps for inf and NaN gradients silently, as optax does."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    check_state,
    empty_init,
    held,
    leafwise,
    like,
    next_count,
    owned,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    moment_dtype_arg,
    needs_params,
    param_leaf,
    real_leaf,
    walk,
    zeros_in,
)
from funcdl.optim._more_transforms import _norm

__all__ = [
    "ScaleByAdanState",
    "ScaleByNovogradState",
    "centralize",
    "scale_by_adan",
    "scale_by_novograd",
    "scale_by_sign",
]

Tree = Any


class ScaleByNovogradState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree  # the momentum, shaped as the params
    nu: Tree  # one 0-d running mean of ‖g‖² per leaf (layer), in the param's dtype


class ScaleByAdanState(NamedTuple):
    """optax's fields ``m, v, n, g``; its step counter ``t`` is funcdl's ``count``."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    m: Tree  # running mean of g
    v: Tree  # running mean of the gradient differences g - g_prev
    n: Tree  # running mean of (g + (1-b2)·(g - g_prev))²
    g: Tree  # the previous update's gradient


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


def centralize() -> GradientTransformation:
    """optax's ``centralize`` (gradient centralization, Yong et al. 2020): for a leaf of 2
    dims or more, ``u = g - mean(g)``, the mean taken over every axis but the first (one
    mean per index of axis 0, whatever the layer's layout: funcdl's dense kernel is
    ``(in, out)``, so that is one mean per input row); a leaf of 0 or 1 dims (a bias) passes
    unchanged. In ``g``'s dtype. State ``EmptyState``."""
    name = "centralize"

    def leaf(g: Any) -> Any:
        real_grad(g)
        a = np.asarray(g)
        if a.ndim < 2 or a.size == 0:  # an empty leaf has no mean (and nothing to move)
            return g
        return a - a.mean(axis=tuple(range(1, a.ndim)), keepdims=True)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        with np.errstate(all="ignore"):  # inf - inf: NaN, silently
            return leafwise(f"{name}.update", leaf, (grads,), ("grads",))[0], state

    return transform(name, empty_init(), update)


def scale_by_novograd(b1: float = 0.9, b2: float = 0.25, eps: float = 1e-8,
                      eps_root: float = 0.0, weight_decay: float = 0.0, mu_dtype: Any = None
                      ) -> GradientTransformation:
    """optax's ``scale_by_novograd`` (Ginsburg et al. 2019), per leaf (layer) ``l``:
    ``ν = ‖g‖²`` at the first update, then ``ν = b2·ν + (1-b2)·‖g‖²`` (one number per
    leaf, the whole leaf's squared norm); ``d = g / (sqrt(ν + eps_root) + eps) + wd·p``;
    ``m = d`` at the first update, then ``m = b1·m + d`` (no ``1-b1`` factor, no bias
    correction); ``u = m``.

    ``mu_dtype`` stores ``m`` (and so the step) in that float dtype (None: the params').
    Needs ``params`` when ``weight_decay != 0``. State ``ScaleByNovogradState(count, mu,
    nu)``, ``nu`` a 0-d array per leaf.
    """
    name = "scale_by_novograd"
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)

    def init(params: Tree) -> ScaleByNovogradState:
        check_float_params(f"{name}.init", params, eps)
        nu = tree.map(lambda p: np.zeros((), np.asarray(p).dtype), params)
        return ScaleByNovogradState(zero_count(), zeros_in(params, mu_dt), nu)

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByNovogradState]:
        where = f"{name}.update"
        check_state(name, state, ScaleByNovogradState)
        count = read_count(where, state.count)
        if wd != 0.0:
            needs_params(name, params)
        first = count == 0

        def leaf(path: str, g: Any, m: Any, *rest: Any) -> tuple[Any, Any]:
            g = real_leaf(where, "grads", path, g)
            n = rest[-1]
            if np.ndim(n) != 0:
                raise ValueError(f"{where}: state.nu{path} must be 0-d (one second moment "
                                 f"per leaf), got shape {np.shape(n)}; pass the state made "
                                 f"by this optimizer's init")
            sq = _norm(g) ** 2  # a Python float: the state's dtype decides
            n_new = like(sq if first else b2 * n + (1.0 - b2) * sq, n)
            d = g / (np.sqrt(n_new + eps_root) + eps)
            if wd != 0.0:
                d = d + wd * param_leaf(where, path, rest[0])
            return held(like(d if first else b1 * m + d, m)), n_new

        trees = (grads, state.mu, *(() if params is None else (params,)), state.nu)
        names = ("grads", "state.mu", *(() if params is None else ("params",)), "state.nu")
        # ‖g‖ of an inf gradient is inf, and inf/inf NaN, silently, as optax
        with np.errstate(all="ignore"):
            mu, nu = walk(where, leaf, trees, names, 2, shapes=len(trees) - 2)
        return mu, ScaleByNovogradState(next_count(count), mu, nu)

    return transform(name, init, update)


def scale_by_adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
                  eps_root: float = 0.0) -> GradientTransformation:
    """optax's ``scale_by_adan`` (Xie et al. 2022, Algorithm 1): with ``Δ = g - g_prev``
    (0 at the first update), ``m = b1·m + (1-b1)·g``; ``v = b2·v + (1-b2)·Δ``;
    ``n = b3·n + (1-b3)·(g + (1-b2)·Δ)²``; ``u = (m̂ + (1-b2)·v̂) / (sqrt(n̂ + eps_root) +
    eps)``, each hat the bias-corrected ``x / (1 - b^(t+1))``. (optax's docstring writes
    ``b`` and ``1-b`` the other way round; its code, and this, weigh the old value by
    ``b``.) ``b1, b2, b3`` in [0, 1). State ``ScaleByAdanState(count, m, v, n, g)``.
    """
    name = "scale_by_adan"
    b1 = check_float(name, "b1", b1, high=1.0, open_high=True)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    b3 = check_float(name, "b3", b3, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)

    def init(params: Tree) -> ScaleByAdanState:
        check_float_params(f"{name}.init", params, eps)
        z = tree.zeros_like
        return ScaleByAdanState(zero_count(), z(params), z(params), z(params), z(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleByAdanState]:
        del params
        check_state(name, state, ScaleByAdanState)
        count = read_count(f"{name}.update", state.count)
        t = count + 1
        bc1, bc2, bc3 = 1.0 - b1**t, 1.0 - b2**t, 1.0 - b3**t

        def leaf(g: Any, m: Any, v: Any, n: Any, prev: Any) -> tuple[Any, ...]:
            real_grad(g)
            delta = g - prev if count else 0.0  # not (g - prev)·0: inf·0 is NaN
            m_new = like(b1 * m + (1.0 - b1) * g, m)
            v_new = like(b2 * v + (1.0 - b2) * delta, v)
            s = g + (1.0 - b2) * delta
            n_new = like(b3 * n + (1.0 - b3) * (s * s), n)
            u = (m_new / bc1 + (1.0 - b2) / bc2 * v_new) / (np.sqrt(n_new / bc3 + eps_root)
                                                              + eps)
            return like(u, m), m_new, v_new, n_new, owned(g, prev)

        with np.errstate(all="ignore"):  # inf - inf and inf/inf: NaN, silently
            u, m, v, n, g = leafwise(
                f"{name}.update", leaf, (grads, state.m, state.v, state.n, state.g),
                ("grads", "state.m", "state.v", "state.n", "state.g"), n_out=5,
                elementwise=True)
        return u, ScaleByAdanState(next_count(count), m, v, n, g)

    return transform(name, init, update)
