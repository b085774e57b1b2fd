"""Yet more of optax's transforms: ``flatten`` (an inner transform run on one raveled
vector), ``scale_by_rss`` (optax's Adagrad direction), ``scale_by_stddev`` (centered RMS),
``scale_by_param_block_norm``, ``normalize_by_update_norm``, ``scale_by_sm3`` (SM3-II's
per-axis accumulators); ``_optax_extra4`` has the optimistic-gradient and Polyak transforms
and their aliases. Notation as in ``_transforms``: ``g`` the incoming grads, ``u`` the
outgoing step, ``t`` the updates already applied. Each ``update`` refuses grads that are
not real floating point and returns inf and NaN steps for inf and NaN gradients silently,
as optax does."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    _check_transforms,
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
    check_float_params,
    check_grads,
    needs_params,
    real_leaf,
    same_trees,
)
from funcdl.optim._keywords import check_extra, extra_keywords, forwarded, show_keywords
from funcdl.optim._more_transforms import _norm
from funcdl.optim._transforms import _global_norm

__all__ = [
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRssState",
    "ScaleBySM3State",
    "flatten",
    "normalize_by_update_norm",
    "scale_by_param_block_norm",
    "scale_by_rss",
    "scale_by_sm3",
    "scale_by_stddev",
]

Tree = Any


class ScaleByRssState(NamedTuple):
    sum_of_squares: Tree  # Σ g², from initial_accumulator_value


class ScaleByRStdDevState(NamedTuple):
    mu: Tree  # running mean of g
    nu: Tree  # running mean of g²


class ScaleByRStdDevWithCountState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree
    nu: Tree


class ScaleBySM3State(NamedTuple):
    """optax's names: ``mu`` the accumulators, one list per leaf (one vector per axis of a
    leaf of 2 dims or more, else one array shaped as the leaf); ``nu`` the momentum."""

    mu: Tree
    nu: Tree


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """optax's ``flatten``: ``inner`` runs on one vector ``v = ravel(tree)`` (the leaves laid
    end to end in ``funcdl.tree.ravel``'s order and promoted dtype); its step is cut back
    into the grads' leaves, shapes and dtypes. The state is ``inner``'s, over the vector;
    keyword arguments of the update (``value=``...) go to ``inner``."""
    name = "flatten"
    _check_transforms(name, [inner], ("inner",))
    takes = (extra_keywords(inner.update),)

    def init(params: Tree) -> Any:
        check_float_params(f"{name}.init", params)
        return inner.init(tree.ravel(params)[0])

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any) -> tuple[Tree, Any]:
        where = f"{name}.update"
        if extra:
            check_extra(name, extra, takes)
        if params is None:
            for path, leaf in tree.leaves_with_path(grads):
                real_leaf(where, "grads", path, leaf)
            flat_p = None
        else:
            check_grads(where, grads, params)
            flat_p = tree.ravel(params)[0]
        flat_g, unravel = tree.ravel(grads)
        flat_u, state = inner.update(state, flat_g, flat_p, **forwarded(extra, takes[0]))
        if np.shape(flat_u) != flat_g.shape:
            raise ValueError(f"{where}: inner must return a step shaped as the vector it was "
                             f"given, {flat_g.shape}, got {np.shape(flat_u)}")
        return unravel(flat_u), state

    return transform(name, init, show_keywords(update, takes))


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
        return ScaleByRssState(tree.map(lambda p: np.full_like(p, start), params))

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
        nu = tree.map(lambda p: np.full_like(p, start), params)
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

        with np.errstate(all="ignore"):
            u, mu, nu = leafwise(f"{name}.update", leaf, (grads, state.mu, state.nu),
                                 ("grads", "state.mu", "state.nu"), n_out=3, elementwise=True)
        if corrected:
            return u, ScaleByRStdDevWithCountState(next_count(count), mu, nu)
        return u, ScaleByRStdDevState(mu, nu)

    return transform(name, init, update)


def scale_by_param_block_norm(min_scale: float = 1e-3) -> GradientTransformation:
    """optax's ``scale_by_param_block_norm``, per leaf (block): ``u = g · max(‖p‖,
    min_scale)`` (a NaN norm stays NaN). Needs ``params``. State ``EmptyState``."""
    name = "scale_by_param_block_norm"
    low = check_float(name, "min_scale", min_scale)

    def leaf(g: Any, p: Any) -> Any:
        real_grad(g)
        n = _norm(p)
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
        norm = _global_norm(f"{name}.update", grads, grads=True)
        # optax divides by (‖g‖ + eps) / factor: inf for a factor of 0, so a step of 0
        denom = np.inf if factor == 0.0 else (norm + eps) / factor

        def leaf(g: Any) -> Any:
            real_grad(g)
            return g / np.asarray(denom, np.asarray(g).dtype)

        with np.errstate(all="ignore"):  # 0/0 for zero grads and eps=0: NaN, as optax
            return leafwise(f"{name}.update", leaf, (grads,), ("grads",))[0], state

    return transform(name, empty_init(), update)


def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> GradientTransformation:
    """optax's ``scale_by_sm3`` (SM3-II, Anil et al. 2019). For a leaf of 2 dims or more,
    one accumulator vector ``μ_i`` per axis ``i``, and ``ν = min_i μ_i`` (each broadcast
    along its axis); for a leaf of 0 or 1 dims, ``ν = μ`` itself (optax 0.2.8 fails on a
    0-d leaf; here it keeps one accumulator, as a 1-d leaf). Then ``a = c·g² + b2·ν``
    (``c = 1 - b2``, or 1 at ``b2 = 1``); ``μ_i = max of a over the axes but i`` (``μ = a``);
    ``r = g / sqrt(a + eps)`` where ``a > 0``, else 0; ``m = (1-b1)·r + b1·m``; ``u = m``.
    State ``ScaleBySM3State(mu, nu)``, ``nu`` the momentum ``m``."""
    name = "scale_by_sm3"
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    eps = check_float(name, "eps", eps)
    c = 1.0 if b2 == 1.0 else 1.0 - b2

    def accumulators(p: Any) -> list[Any]:
        a = np.asarray(p)
        if a.ndim < 2:
            return [np.zeros(a.shape, a.dtype)]
        return [np.zeros(n, a.dtype) for n in a.shape]

    def init(params: Tree) -> ScaleBySM3State:
        check_float_params(f"{name}.init", params, eps or None)
        return ScaleBySM3State(tree.map(accumulators, params), tree.zeros_like(params))

    def leaf(g: Any, mus: list[Any], m: Any) -> tuple[Any, list[Any], Any]:
        if g.ndim < 2:
            nu = mus[0]
        else:  # each axis's vector broadcast along the others; their entrywise minimum
            nu = mus[0].reshape((-1,) + (1,) * (g.ndim - 1))
            for i in range(1, g.ndim):
                nu = np.minimum(nu, mus[i].reshape((1,) * i + (-1,) + (1,) * (g.ndim - i - 1)))
        acc = c * g**2 + b2 * nu
        inv = np.where(acc > 0, 1.0 / np.sqrt(acc + eps), 0.0)
        m_new = held(like((1.0 - b1) * (g * inv) + b1 * m, m))
        if g.ndim < 2:
            return m_new, [like(acc, mus[0])], m_new
        axes = range(g.ndim)
        # initial=0 (a lower bound of every accumulator): an empty leaf has maxima too
        return m_new, [like(acc.max(axis=tuple(j for j in axes if j != i), initial=0.0),
                            mus[i]) for i in axes], m_new

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ScaleBySM3State]:
        del params
        where = f"{name}.update"
        check_state(name, state, ScaleBySM3State)
        same_trees(where, grads, state.nu, ("grads", "state.nu"), shapes=True)
        paths = tree.leaves_with_path(grads)
        # in the state's (the params') dtype, as the elementwise transforms compute
        gs = [like(real_leaf(where, "grads", path, g), m)
              for (path, g), m in zip(paths, tree.leaves(state.nu), strict=True)]
        want = tree.map(accumulators, grads)
        same_trees(where, want, state.mu, ("the accumulators of grads", "state.mu"),
                   shapes=True)
        flat_mu, flat_m = iter(tree.leaves(state.mu)), tree.leaves(state.nu)
        outs = []
        with np.errstate(all="ignore"):
            for g, m in zip(gs, flat_m, strict=True):
                mus = [np.asarray(next(flat_mu)) for _ in range(g.ndim if g.ndim >= 2 else 1)]
                outs.append(leaf(g, mus, np.asarray(m)))
        treedef = tree.structure(grads)
        u = tree.unflatten(treedef, [o[0] for o in outs])
        mu = tree.unflatten(treedef, [o[1] for o in outs])
        nu = tree.unflatten(treedef, [o[2] for o in outs])
        return u, ScaleBySM3State(mu, nu)

    return transform(name, init, update)
