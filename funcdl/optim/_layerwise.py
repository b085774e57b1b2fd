"""Steps scaled by norms, mostly per leaf (layer-wise), as optax's: ``scale_by_trust_ratio``
(LAMB's and LARS's ratio of the param norm to the update norm), ``scale_by_novograd``
(NovoGrad: one second moment per leaf), ``scale_by_param_block_norm`` (per leaf) and
``normalize_by_update_norm`` (by the update's global norm, over every leaf); and the aliases
built on them: ``lamb``, ``lars``, ``novograd`` and ``fromage``. ``leaf_norm``, a whole
leaf's 2-norm, serves them and Muon. Notation as in
``_transforms``: ``g`` the incoming grads, ``u`` the outgoing step, ``t`` the updates already
applied. Each ``update`` refuses grads that are not real floating point and returns inf and
NaN steps for inf and NaN gradients silently, as optax does; each alias takes ``lr`` first
(DESIGN.md's name for optax's ``learning_rate``) and names itself in its errors."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import F32, F64, bool_arg, native_float
from funcdl._blas import product
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._alias import Stages, append_weight_decay, check_lr_betas_eps, make_alias
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    empty_init,
    held,
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
    decay_arg,
    moment_dtype_arg,
    needs_params,
    param_leaf,
    real_leaf,
    schedule_value,
    walk,
    zeros_in,
)
from funcdl.optim._global_norm import named_global_norm
from funcdl.optim._masked import make_masked
from funcdl.optim._transforms import (
    add_decayed_weights,
    scale_by_learning_rate,
    trace,
)

__all__ = ["ScaleByNovogradState", "fromage", "lamb", "lars", "normalize_by_update_norm",
           "novograd", "scale_by_novograd", "scale_by_param_block_norm", "scale_by_trust_ratio"]

Tree = Any


class ScaleByNovogradState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree  # the momentum, shaped as the params
    nu: Tree  # one 0-d running mean of ‖g‖² per leaf (layer), in the param's dtype


def leaf_norm(x: Any) -> float:
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
    s = float(product(np.vdot, a, a))
    if s == math.inf and f32:
        a = a.astype(np.float64)
        s = float(product(np.vdot, a, a))
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
        p_norm, g_norm = leaf_norm(p), leaf_norm(g)
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
            sq = leaf_norm(g) ** 2  # a Python float: the state's dtype decides
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


def scale_by_param_block_norm(min_scale: float = 1e-3) -> GradientTransformation:
    """optax's ``scale_by_param_block_norm``, per leaf (block): ``u = g · max(‖p‖,
    min_scale)`` (a NaN norm stays NaN). Needs ``params``. State ``EmptyState``."""
    name = "scale_by_param_block_norm"
    low = check_float(name, "min_scale", min_scale)

    def leaf(g: Any, p: Any) -> Any:
        real_grad(g)
        n = leaf_norm(p)
        return g * (low if n <= low else n)  # a Python float: float32 stays

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        check_state(name, state, EmptyState)
        needs_params(name, params)
        with np.errstate(all="ignore"):
            (u,) = leafwise(f"{name}.update", leaf, (grads, params), ("grads", "params"))
        return u, state

    return transform(name, empty_init(), update)


def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6
                             ) -> GradientTransformation:
    """optax's ``normalize_by_update_norm``: ``u = g / ((‖g‖ + eps) / scale_factor)``, ‖g‖
    the global norm over every leaf (so ``u = -g/‖g‖`` for ``scale_factor=-1``: a
    normalized descent step). State ``EmptyState``."""
    name = "normalize_by_update_norm"
    factor = check_float(name, "scale_factor", scale_factor, low=-np.inf)
    eps = check_float(name, "eps", eps)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        norm = named_global_norm(f"{name}.update", grads, grads=True)
        # optax divides by (‖g‖ + eps) / factor: inf for a factor of 0, so a step of 0
        denom = np.inf if factor == 0.0 else (norm + eps) / factor

        def leaf(g: Any) -> Any:
            real_grad(g)
            return g / np.asarray(denom, np.asarray(g).dtype)

        with np.errstate(all="ignore"):  # 0/0 for zero grads and eps=0: NaN, as optax
            return leafwise(f"{name}.update", leaf, (grads,), ("grads",))[0], state

    return transform(name, empty_init(), update)


def lamb(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         eps_root: float = 0.0, weight_decay: ScalarOrSchedule = 0.0, mask: Any = None
         ) -> GradientTransformation:
    """LAMB, as optax's ``lamb``: ``d = m̂ / (sqrt(v̂ + eps_root) + eps) + wd·p`` (Adam's
    direction, decoupled weight decay), then per leaf ``p ← p - lr · ‖p‖/‖d‖ · d`` (see
    ``scale_by_trust_ratio``; ``d`` itself where either norm is 0). ``mask`` as
    ``adamw``'s.

    Stages: ``adam``, ``weight_decay`` (a ``masked`` one with a mask), ``trust_ratio``,
    ``lr``.
    """
    name = "lamb"
    lr, b1, b2, eps = check_lr_betas_eps(name, lr, b1, b2, eps)
    eps_root = check_float(name, "eps_root", eps_root)
    wd = check_float_or_schedule(name, "weight_decay", weight_decay, "wd")
    stages: Stages = [("adam", scale_by_adam(b1, b2, eps, eps_root))]
    append_weight_decay(stages, wd, mask, name)  # a schedule, as optax
    stages += [("trust_ratio", scale_by_trust_ratio()), ("lr", scale_by_learning_rate(lr))]
    return make_alias(name, stages, eps)


def _all_leaves(mask: Any) -> bool | None:
    """True for optax's default mask ``True`` (and None): every leaf, no ``masked`` wrapper;
    False for a plain ``False``: no leaf, no stage (a ``masked`` one over bare-array params
    would hand its inner transform params=None); None for a tree or a function."""
    if mask is None:
        return True
    return bool(mask) if isinstance(mask, (bool, np.bool_)) else None


def lars(lr: ScalarOrSchedule, weight_decay: ScalarOrSchedule = 0.0,
         weight_decay_mask: Any = True, trust_coefficient: float = 0.001, eps: float = 0.0,
         trust_ratio_mask: Any = True, momentum: float = 0.9, nesterov: bool = False
         ) -> GradientTransformation:
    """LARS (You et al. 2017), as optax's ``lars``: per leaf ``d = g + wd·p`` (where
    ``weight_decay_mask``); ``d ← d · c·‖p‖ / (‖d‖ + eps)``, ``c = trust_coefficient``
    (where ``trust_ratio_mask``; ``d`` itself where a norm is 0, see
    ``scale_by_trust_ratio``); then momentum on the lr-scaled step, ``b = -lr·d +
    momentum·b``, ``p ← p + b`` (``-lr·d + momentum·b`` with ``nesterov``). The masks: True
    (every leaf, optax's default; None too), a tree of bools or a function of the params,
    as ``adamw``'s ``mask``. The paper's (and timm's) local rate is ``c·‖p‖ / (‖g‖ +
    wd·‖p‖)``; ``‖g + wd·p‖`` is at most that denominator, so this trust ratio (optax's) is
    at least the paper's, and equal when g points the way p does, or wd is 0.

    Stages: ``weight_decay``, ``trust_ratio`` (each a ``masked`` one with a tree or function
    mask, left out with a plain False mask), ``lr``, ``momentum`` (a ``trace``; left out at
    momentum 0, as the weight decay at 0).
    """
    name = "lars"
    lr = check_lr(name, lr)
    wd = decay_arg(name, weight_decay)
    coef = check_float(name, "trust_coefficient", trust_coefficient)
    eps = check_float(name, "eps", eps)
    mom = check_float(name, "momentum", momentum)
    nest = bool_arg(nesterov, name, "nesterov")
    decay_all, ratio_all = _all_leaves(weight_decay_mask), _all_leaves(trust_ratio_mask)
    stages: Stages = []
    if decay_all is not False:
        append_weight_decay(stages, wd, None if decay_all else weight_decay_mask, name)
    if ratio_all is not False:
        ratio = scale_by_trust_ratio(trust_coefficient=coef, eps=eps)
        stages.append(("trust_ratio", ratio if ratio_all else
                       make_masked(name, ratio, trust_ratio_mask)))
    stages.append(("lr", scale_by_learning_rate(lr)))
    if mom != 0.0:
        stages.append(("momentum", trace(mom, nest)))
    return make_alias(name, stages)


def novograd(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.25, eps: float = 1e-6,
             eps_root: float = 0.0, weight_decay: float = 0.0) -> GradientTransformation:
    """NovoGrad, as optax's ``novograd``: ``p ← p - lr·m``, ``m = b1·m + g / (sqrt(ν +
    eps_root) + eps) + wd·p`` with ``ν`` the running mean of each leaf's ``‖g‖²`` (see
    ``scale_by_novograd``). ``weight_decay`` a float (optax multiplies it into the params
    inside the moment, where a schedule would not be read).

    Stages: ``novograd``, ``lr``.
    """
    name = "novograd"
    lr = check_lr(name, lr)
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)
    direction = scale_by_novograd(b1, b2, eps, eps_root, wd)
    return make_alias(name, [("novograd", direction), ("lr", scale_by_learning_rate(lr))], eps)


def fromage(lr: ScalarOrSchedule, min_norm: float = 1e-6) -> GradientTransformation:
    """Fromage (Bernstein et al. 2020), as optax's ``fromage``: with ``c = 1 / sqrt(1 +
    lr²)``, per leaf ``p ← c·(p - lr·‖p‖/‖g‖·g)`` (see ``scale_by_trust_ratio``: each norm
    raised to ``min_norm``, and ``g`` itself where one is 0). ``lr`` a float or a schedule
    (then ``c`` follows it).

    Stages: ``trust_ratio``, ``lr`` (``c·lr``), ``weight_decay`` (``c - 1``, a shrinking).
    """
    name = "fromage"
    lr = check_lr(name, lr)
    low = check_float(name, "min_norm", min_norm)
    if callable(lr):
        schedule = lr

        def shrink(count: int) -> float:
            v = schedule_value(f"{name} (lr)", schedule, count, 0.0)
            return float(1 / (1 + v**2) ** 0.5)

        def rate(count: int) -> float:
            return shrink(count) * schedule_value(f"{name} (lr)", schedule, count, 0.0)

        def decay_at(count: int) -> float:
            return shrink(count) - 1

        step: ScalarOrSchedule = rate
        decay: ScalarOrSchedule = decay_at
    else:
        mult = 1 / (1 + lr**2) ** 0.5
        step, decay = lr * mult, mult - 1
    return make_alias(name, [("trust_ratio", scale_by_trust_ratio(low)),
                             ("lr", scale_by_learning_rate(step)),
                             ("weight_decay", add_decayed_weights(decay))])
