"""Muon (Jordan et al. 2024), as ``optax.contrib.muon``: the Nesterov momentum of each
matrix leaf, orthogonalised by a quintic Newton–Schulz iteration; every other leaf through
AdamW.

Layout: optax treats a 2-D leaf as ``x @ W = y``, axis 0 the reduction axis (fan_in) and
axis 1 the output axis (fan_out). funcdl's ``Dense`` kernel is ``(in, out)`` and applied as
``x @ W``: the same layout, so ``muon`` gives a Dense kernel the same update as optax gives
a flax ``Dense`` kernel, with the same ``sqrt(max(1, fan_out / fan_in))`` factor. A 2-D
leaf that is not a kernel (an ``Embedding`` table, ``(vocab, dim)``) is a matrix too, as in
optax's default; a Conv2D kernel (4-D) goes to AdamW, as in optax's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._adaptive import scale_by_adam
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
from funcdl.optim._chain import ChainState, make_chain
from funcdl.optim._checks import check_betas, check_float, check_float_params, check_lr
from funcdl.optim._more_transforms import _norm
from funcdl.optim._schedules import _steps
from funcdl.optim._transforms import add_decayed_weights, scale_by_learning_rate

__all__ = ["MuonPartsState", "MuonState", "muon", "newton_schulz", "scale_by_muon"]

Tree = Any
DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)


class MuonState(NamedTuple):
    """``scale_by_muon``'s state: ``count``, the updates applied; ``mu``, the momentum."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree


class MuonPartsState(NamedTuple):
    """``muon``'s state: ``muon`` the ``ChainState`` of the matrix leaves' chain (a list of
    them, in ``funcdl.tree.leaves`` order), ``adam`` that of the other leaves' AdamW."""

    muon: ChainState
    adam: ChainState


def _coeffs(name: str, ns_coeffs: Any) -> tuple[float, float, float]:
    try:
        a = np.asarray(ns_coeffs, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # a str, a dict, an int past float64
        a = np.zeros(0)
    if a.shape != (3,) or not np.isfinite(a).all():
        raise ValueError(f"{name}: ns_coeffs must be three finite floats (a, b, c) of the "
                         f"quintic a·X + b·(XXᵀ)X + c·(XXᵀ)²X, got {ns_coeffs!r}; pass e.g. "
                         f"the default {DEFAULT_NS_COEFFS}")
    return float(a[0]), float(a[1]), float(a[2])


def newton_schulz(x: Any, ns_coeffs: Sequence[float] = DEFAULT_NS_COEFFS, ns_steps: int = 5,
                  eps: float = 1e-8) -> Any:
    """Approximately orthogonalise a matrix ``(m, n)``: ``X = G / (‖G‖_F + eps)`` (the wide
    way round: ``Gᵀ`` when ``m > n``), then ``ns_steps`` times ``A = X·Xᵀ``,
    ``X = a·X + (b·A + c·A·A)·X``. The default quintic drives singular values not far
    below ``‖G‖_F/√rank`` towards 1 without reaching it (by design: faster, and as good
    for training); smaller ones stay below after 5 steps (a 128x128 Gaussian,
    ``np.random.default_rng(0).standard_normal((128, 128))``: singular values 0.085 to
    1.18 after; a 64x64 matrix of condition number 1e6: 2.9e-4 to 1.20; one-off). Same
    shape and dtype as ``x``. Not differentiated (an optimizer step)."""
    name = "newton_schulz"
    a, b, c = _coeffs(name, ns_coeffs)
    steps = _steps(name, "ns_steps", ns_steps)
    g = np.asarray(x)
    if g.ndim != 2 or g.dtype.kind != "f":
        raise ValueError(f"{name}: x must be a real floating-point matrix (m, n), got "
                         f"{g.dtype} of shape {g.shape}; pass a 2-D array")
    return _orthogonalise(g, a, b, c, steps, eps)


def _orthogonalise(g: Any, a: float, b: float, c: float, steps: int, eps: float) -> Any:
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    # ‖x‖_F in float64 should float32's sum of squares overflow (entries beyond ~1e19),
    # where optax would divide by inf and step 0
    norm = _norm(x)
    # C order for the products below: a transposed (F-order) operand was slower in BLAS
    # (the review's one-off timing, 2048x512 float32, one thread: 197 vs 105 ms)
    x = np.ascontiguousarray(x / (norm + eps), dtype=g.dtype)
    for _ in range(steps):  # ns_steps BLAS products each; a few (5) iterations
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return np.asarray(x.T if tall else x, dtype=g.dtype)


def scale_by_muon(ns_coeffs: Sequence[float] = DEFAULT_NS_COEFFS, ns_steps: int = 5,
                  beta: float = 0.95, eps: float = 1e-8, *, nesterov: bool = True,
                  adaptive: bool = False) -> GradientTransformation:
    """optax.contrib's ``scale_by_muon`` (Frobenius preconditioning), for a tree of 2-D
    leaves: ``m = beta·m + (1-beta)·g``; with ``t`` this update's step (1 at the first),
    ``m̂ = beta·m / (1-beta^(t+1)) + (1-beta)·g / (1-beta^t)`` (``nesterov``) or
    ``m / (1-beta^t)``; ``u = newton_schulz(m̂)``; ``adaptive``: ``u ← <m̂, u>_F · u``.
    State ``MuonState(count, mu)``."""
    name = "scale_by_muon"
    a, b, c = _coeffs(name, ns_coeffs)
    steps = _steps(name, "ns_steps", ns_steps, positive=True)
    beta = check_float(name, "beta", beta, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    nest = bool_arg(nesterov, name, "nesterov")
    adapt = bool_arg(adaptive, name, "adaptive")

    def init(params: Tree) -> MuonState:
        check_float_params(f"{name}.init", params)
        for path, p in tree.leaves_with_path(params):
            if np.ndim(p) != 2:
                raise ValueError(f"{name}.init: every leaf must be a matrix (2-D), got "
                                 f"shape {np.shape(p)} at params{path}; use muon(...), "
                                 f"which sends the other leaves through AdamW")
        return MuonState(zero_count(), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MuonState]:
        del params
        check_state(name, state, MuonState)
        count = read_count(f"{name}.update", state.count)
        t = count + 1
        ahead, now = beta / (1.0 - beta ** (t + 1)), (1.0 - beta) / (1.0 - beta**t)

        def leaf(g: Any, m: Any) -> tuple[Any, Any]:
            real_grad(g)
            m_new = like(beta * m + (1.0 - beta) * g, m)
            m_hat = ahead * m_new + now * g if nest else m_new / (1.0 - beta**t)
            m_hat = like(m_hat, m)
            if m_hat.ndim != 2:
                raise ValueError("not a matrix")  # init refuses them; a hand-made state
            u = _orthogonalise(m_hat, a, b, c, steps, eps)
            if adapt:
                u = like(np.sum(m_hat * u) * u, m)
            return u, m_new

        with np.errstate(all="ignore"):  # inf and NaN momenta: NaN steps, silently
            out, mu = leafwise(f"{name}.update", leaf, (grads, state.mu),
                               ("grads", "state.mu"), n_out=2)
        return out, MuonState(next_count(count), mu)

    return transform(name, init, update)


def _scale_by_shape() -> GradientTransformation:
    """optax.contrib's ``scale_by_shape`` (width transfer): ``u·sqrt(max(1, n / m))`` for a
    matrix ``(m, n) = (fan_in, fan_out)``. State ``EmptyState``."""
    name = "muon_shape_scale"

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        if type(state) is not EmptyState:
            check_state(name, state, EmptyState)
        # an empty (0, n) leaf has nothing to scale (optax's divides by its 0 rows)
        out = tree.map(lambda u: like(u * np.sqrt(max(1.0, u.shape[1] / u.shape[0])), u)
                       if u.shape[0] else u, grads)
        return out, state

    return transform(name, empty_init(), update)


def muon(learning_rate: ScalarOrSchedule, ns_coeffs: Sequence[float] = DEFAULT_NS_COEFFS,
         ns_steps: int = 5, beta: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.0,
         *, nesterov: bool = True, adaptive: bool = False, adam_b1: float = 0.9,
         adam_b2: float = 0.999, adam_eps_root: float = 0.0, adam_weight_decay: float = 0.0,
         adam_learning_rate: ScalarOrSchedule | None = None) -> GradientTransformation:
    """optax.contrib's ``muon``: each 2-D leaf ``(fan_in, fan_out)`` steps
    ``-lr·(scale_by_muon(...)·sqrt(max(1, fan_out/fan_in)) + weight_decay·p)``; every other
    leaf (biases, norm scales, conv kernels) AdamW's ``-adam_lr·(m̂ / (sqrt(v̂ + eps_root) +
    eps) + adam_weight_decay·p)`` with ``adam_b1``, ``adam_b2``, the same ``eps`` and
    ``nesterov`` (NAdam's look-ahead by default, as optax's). ``adam_learning_rate`` None:
    ``learning_rate``. State ``MuonPartsState(muon, adam)``."""
    name = "muon"
    lr = check_lr(name, learning_rate)
    adam_lr = lr if adam_learning_rate is None else check_lr(name, adam_learning_rate)
    nest = bool_arg(nesterov, name, "nesterov")
    _coeffs(name, ns_coeffs)  # here, so that the errors name muon
    _steps(name, "ns_steps", ns_steps, positive=True)
    check_float(name, "beta", beta, high=1.0, open_high=True)
    check_betas(name, adam_b1, adam_b2)
    check_float(name, "eps", eps)
    check_float(name, "adam_eps_root", adam_eps_root)
    matrices = make_chain(name, [scale_by_muon(ns_coeffs, ns_steps, beta, eps, nesterov=nest,
                                               adaptive=adaptive),
                                 _scale_by_shape(),
                                 add_decayed_weights(check_float(name, "weight_decay",
                                                                 weight_decay)),
                                 scale_by_learning_rate(lr)])
    others = make_chain(name, [scale_by_adam(adam_b1, adam_b2, eps, adam_eps_root,
                                             nesterov=nest),
                               add_decayed_weights(check_float(name, "adam_weight_decay",
                                                               adam_weight_decay)),
                               scale_by_learning_rate(adam_lr)])

    def split(leaves: list[Any]) -> tuple[list[Any], list[Any], list[bool]]:
        is_matrix = [np.ndim(x) == 2 for x in leaves]
        return ([x for x, m in zip(leaves, is_matrix, strict=True) if m],
                [x for x, m in zip(leaves, is_matrix, strict=True) if not m], is_matrix)

    def init(params: Tree) -> MuonPartsState:
        check_float_params(f"{name}.init", params)
        mats, rest, _ = split(tree.leaves(params))
        return MuonPartsState(matrices.init(mats), others.init(rest))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MuonPartsState]:
        check_state(name, state, MuonPartsState)
        leaves, treedef = tree.flatten(grads)  # the grads' structure decides
        g_mats, g_rest, is_matrix = split(leaves)
        p_mats = p_rest = None
        if params is not None:  # the params' structure must agree
            try:  # check_same, not same_trees: its map would be a second walk of the grads
                tree.check_same(grads, params, ("grads", "params"), shapes=True)
            except ValueError as detail:
                raise ValueError(f"{name}.update: {detail}") from None
            p_mats, p_rest = split(tree.leaves(params))[:2]
        u_mats, muon_state = matrices.update(state.muon, g_mats, p_mats)
        u_rest, adam_state = others.update(state.adam, g_rest, p_rest)
        it_mats, it_rest = iter(u_mats), iter(u_rest)
        merged = [next(it_mats) if m else next(it_rest) for m in is_matrix]
        return tree.unflatten(treedef, merged), MuonPartsState(muon_state, adam_state)

    return transform(name, init, update)
