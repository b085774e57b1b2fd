"""Distance-over-gradients step sizes and coin betting from ``optax.contrib``, with its
semantics: DoG (Ivgi et al. 2023) and DoWG (Khaled et al. 2023) scale the gradient by one
scalar, the distance travelled from the initial params over the gradients' accumulated
norms (summed in float64 whatever the params' dtype: optax sums in it, and float32
gradients of 1e19 overflow there); COCOB (Orabona & Tommasi 2017) bets per entry."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
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
from funcdl.optim._chain import make_chain
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_lr,
    float_dtypes,
    fsum,
    full_in,
    needs_params,
    real_param,
)
from funcdl.optim._lr_free import check_positive, flat_dot, read_scalars
from funcdl.optim._transforms import decay_stage, identity, scale_by_learning_rate

__all__ = ["COCOBState", "DoGState", "DoWGState", "cocob", "dog", "dowg", "scale_by_cocob",
           "scale_by_dog", "scale_by_dowg"]

Tree = Any
_KINDS = ("distance", "learning_rate", "heuristic")


class DoGState(NamedTuple):
    """``scale_by_dog``'s state: optax's, ``count`` in place of its ``is_init_step`` (the
    first update is ``count == 0``); ``max_dist`` and ``sum_sq_norm_grads`` are 0-d, in the
    params' narrowest float dtype."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    init_params: Tree
    max_dist: Any
    sum_sq_norm_grads: Any


class DoWGState(NamedTuple):
    """``scale_by_dowg``'s state: optax's, with a ``count``; the scalars as in DoGState."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    init_params: Tree
    weighted_sq_norm_grads: Any
    estim_sq_dist: Any


class COCOBState(NamedTuple):
    """``scale_by_cocob``'s state: optax's fields (each shaped as the params), with a
    ``count``."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    init_particles: Tree
    cumulative_gradients: Tree
    scale: Tree
    subgradients: Tree
    reward: Tree


def sq(x: Any) -> float:
    """``sum(x²)`` in float64 (``flat_dot``'s einsum, for its speed)."""
    v = np.ravel(x)
    if v.dtype != np.float64:
        v = v.astype(np.float64)
    return flat_dot(v, v)


def _distances(name: str, grads: Tree, params: Tree, p0: Tree) -> tuple[float, float]:
    """``(|p0 - p|², |g|²)``, each summed over the tree in float64."""
    dist: list[float] = []
    norm: list[float] = []

    def leaf(g: Any, p: Any, q: Any) -> None:
        real_grad(g)
        dist.append(sq(q - real_param(p)))
        norm.append(sq(g))

    with np.errstate(all="ignore"):
        leafwise(f"{name}.update", leaf, (grads, params, p0),
                 ("grads", "params", "state.init_params"))
    return fsum(dist), fsum(norm)


def _scaled(name: str, lr: float, grads: Tree, p0: Tree) -> Tree:
    """``lr·g``, each leaf in its param's dtype."""
    with np.errstate(all="ignore"):
        (out,) = leafwise(f"{name}.update", lambda g, q: like(like(g, q) * lr, q), (grads, p0),
                          ("grads", "state.init_params"))
    return out


def _init_step(name: str, init_step: Any) -> tuple[str, float]:
    fix = "; pass e.g. init_step=('heuristic', 1e-6)"
    if type(init_step) not in (tuple, list) or len(init_step) != 2 \
            or init_step[0] not in _KINDS:
        raise TypeError(f"{name}: init_step must be a pair (kind, value), kind one of "
                        f"{', '.join(map(repr, _KINDS))}, got {init_step!r:.80}{fix}")
    return init_step[0], check_positive(name, "init_step[1]", init_step[1], "1e-6")


def scale_by_dog(init_step: tuple[str, float], eps: float = 1e-8) -> GradientTransformation:
    """optax.contrib's ``scale_by_dog``: ``r = max(r, |p - p0|)``, ``G = G + |g|²``;
    ``u = r / sqrt(G + eps) · g`` (norms over the whole tree). ``init_step``: ``("distance",
    a)`` starts ``r`` at ``a``; ``("heuristic", a)`` at ``a·(1 + |p0|)``; ``("learning_rate",
    a)`` starts ``r`` at 0 and makes the first step ``a·g``. Needs params. State
    ``DoGState``."""
    name = "scale_by_dog"
    kind, value = _init_step(name, init_step)
    eps = check_float(name, "eps", eps)

    def init(params: Tree) -> DoGState:
        check_float_params(f"{name}.init", params)
        low = float_dtypes(params)[0]
        r = {"distance": value, "learning_rate": 0.0}.get(kind)
        if r is None:
            r = value * (1.0 + math.sqrt(fsum(sq(p) for p in tree.leaves(params))))
        return DoGState(zero_count(), tree.map(np.array, params), low.type(r), low.type(0.0))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, DoGState]:
        check_state(name, state, DoGState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        (r, big_g), dt = read_scalars(name, state, "max_dist", "sum_sq_norm_grads")
        sq_dist, sq_norm = _distances(name, grads, params, state.init_params)
        r = max(r, math.sqrt(sq_dist)) if not math.isnan(r) else r
        big_g += sq_norm
        with np.errstate(all="ignore"):
            lr = value if kind == "learning_rate" and count == 0 else \
                float(np.float64(r) / np.sqrt(big_g + eps))
        out = _scaled(name, lr, grads, state.init_params)
        with np.errstate(over="ignore"):  # float32 G passes 3.4e38 from |g| ~ 1e19: inf,
            # then steps of 0, as optax's (which overflow at the sum itself)
            return out, DoGState(next_count(count), state.init_params, dt.type(r),
                                 dt.type(big_g))

    return transform(name, init, update)


def scale_by_dowg(init_estim_sq_dist: float | None = None, eps: float = 1e-4
                  ) -> GradientTransformation:
    """optax.contrib's ``scale_by_dowg``: ``r² = max(r², |p - p0|²)``, ``G = G + r²·|g|²``;
    ``u = r² / (sqrt(G) + eps) · g``; ``r²`` starts at ``init_estim_sq_dist`` (None:
    ``eps``). Needs params. State ``DoWGState``."""
    name = "scale_by_dowg"
    eps = check_positive(name, "eps", eps, "1e-4")
    r0 = eps if init_estim_sq_dist is None else check_positive(
        name, "init_estim_sq_dist", init_estim_sq_dist, "1e-4")

    def init(params: Tree) -> DoWGState:
        check_float_params(f"{name}.init", params)
        low = float_dtypes(params)[0]
        return DoWGState(zero_count(), tree.map(np.array, params), low.type(0.0),
                         low.type(r0))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, DoWGState]:
        check_state(name, state, DoWGState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)
        (big_g, r2), dt = read_scalars(name, state, "weighted_sq_norm_grads",
                                       "estim_sq_dist")
        sq_dist, sq_norm = _distances(name, grads, params, state.init_params)
        r2 = max(r2, sq_dist) if not math.isnan(r2) else r2
        with np.errstate(all="ignore"):
            big_g = float(np.float64(r2) * sq_norm + big_g)
            lr = float(r2 / (np.sqrt(np.float64(big_g)) + eps))
        out = _scaled(name, lr, grads, state.init_params)
        with np.errstate(over="ignore"):
            return out, DoWGState(next_count(count), state.init_params, dt.type(big_g),
                                  dt.type(r2))

    return transform(name, init, update)


def _decay(name: str, weight_decay: Any, mask: Any) -> GradientTransformation:
    if weight_decay is None:
        if mask is not None:  # optax ignores it: say so rather than decay nothing quietly
            raise ValueError(f"{name}: mask selects the leaves weight_decay decays, but "
                             f"weight_decay is None (no decay); pass weight_decay=..., or "
                             f"no mask")
        return identity()
    return decay_stage(name, weight_decay, mask, low=-math.inf)


def dog(learning_rate: ScalarOrSchedule = 1.0,
        init_step: tuple[str, float] = ("heuristic", 1e-6), eps: float = 1e-8,
        weight_decay: ScalarOrSchedule | None = None, mask: Any = None) -> GradientTransformation:
    """DoG, as optax.contrib's ``dog``: ``p ← p - lr·u``, ``u`` ``scale_by_dog``'s of
    ``g + weight_decay·p`` (no decay stage for None; ``mask`` as ``add_decayed_weights``).
    State ``ChainState`` of its three stages."""
    name = "dog"
    check_lr(name, learning_rate)  # here, so that the errors name dog
    _init_step(name, init_step)
    check_float(name, "eps", eps)
    return make_chain(name, [_decay(name, weight_decay, mask), scale_by_dog(init_step, eps),
                             scale_by_learning_rate(learning_rate)])


def dowg(learning_rate: ScalarOrSchedule = 1.0, init_estim_sq_dist: float | None = None,
         eps: float = 1e-4, weight_decay: ScalarOrSchedule | None = None, mask: Any = None
         ) -> GradientTransformation:
    """DoWG, as optax.contrib's ``dowg``: ``p ← p - lr·u``, ``u`` ``scale_by_dowg``'s of
    ``g + weight_decay·p`` (as ``dog``). State ``ChainState`` of its three stages."""
    name = "dowg"
    check_lr(name, learning_rate)
    check_positive(name, "eps", eps, "1e-4")
    if init_estim_sq_dist is not None:
        check_positive(name, "init_estim_sq_dist", init_estim_sq_dist, "1e-4")
    return make_chain(name, [_decay(name, weight_decay, mask),
                             scale_by_dowg(init_estim_sq_dist, eps),
                             scale_by_learning_rate(learning_rate)])


def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> GradientTransformation:
    """optax.contrib's ``scale_by_cocob``, entrywise: ``L = max(L, |g|)`` (from ``eps``),
    ``G = G + |g|``, ``R = max(R - g·(p - p0), 0)``, ``C = C - g``; the new param is
    ``p0 + C / (L·max(G + L, alpha·L))·(L + R)``, so ``u = that - p``. Needs params.
    State ``COCOBState``."""
    name = "scale_by_cocob"
    alpha = check_positive(name, "alpha", alpha, "100.0")
    eps = check_positive(name, "eps", eps, "1e-8")

    def init(params: Tree) -> COCOBState:
        check_float_params(f"{name}.init", params, eps)
        zeros = tree.zeros_like
        return COCOBState(zero_count(), tree.map(np.array, params), zeros(params),
                          full_in(params, eps), zeros(params),
                          zeros(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, COCOBState]:
        check_state(name, state, COCOBState)
        needs_params(name, params)
        count = read_count(f"{name}.update", state.count)

        def leaf(g: Any, p: Any, p0: Any, c: Any, big_l: Any, big_g: Any, r: Any
                 ) -> tuple[Any, ...]:
            real_grad(g)
            g, p = like(g, c), real_param(p)
            a = np.abs(g)
            big_l, big_g = like(np.maximum(big_l, a), c), like(big_g + a, c)
            r = like(np.maximum(r - g * (p - p0), 0.0), c)
            c = like(c - g, c)
            # (C/L)/max(...), not C/(L·max(...)): L·alpha·L passes float32's range from
            # |g| ~ 1e18 (optax's step is then 0), C/L is at most the step count
            bet = c / big_l / np.maximum(big_g + big_l, alpha * big_l)
            return like(-p + (p0 + bet * (big_l + r)), c), c, big_l, big_g, r

        with np.errstate(all="ignore"):  # as scale_by_adam: inf and NaN, silently
            out, c, big_l, big_g, r = leafwise(
                f"{name}.update", leaf,
                (grads, params, state.init_particles, state.cumulative_gradients,
                 state.scale, state.subgradients, state.reward),
                ("grads", "params", "state.init_particles", "state.cumulative_gradients",
                 "state.scale", "state.subgradients", "state.reward"), n_out=5)
        return out, COCOBState(next_count(count), state.init_particles, c, big_l, big_g, r)

    return transform(name, init, update)


def cocob(learning_rate: ScalarOrSchedule = 1.0, alpha: float = 100.0, eps: float = 1e-8,
          weight_decay: ScalarOrSchedule = 0.0, mask: Any = None) -> GradientTransformation:
    """COCOB, as optax.contrib's ``cocob``: ``scale_by_cocob`` of
    ``learning_rate·(g + weight_decay·p)`` (``mask`` as ``add_decayed_weights``). State
    ``ChainState`` of its three stages."""
    name = "cocob"
    check_lr(name, learning_rate)
    check_positive(name, "alpha", alpha, "100.0")
    check_positive(name, "eps", eps, "1e-8")
    return make_chain(name, [decay_stage(name, weight_decay, mask, low=-math.inf),
                             scale_by_learning_rate(learning_rate, flip_sign=False),
                             scale_by_cocob(alpha, eps)])
