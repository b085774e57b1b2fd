"""DP-SGD (Abadi et al. 2016) as optax's: per-example clipping (``per_example_global_norm_clip``,
``per_example_layer_norm_clip``), the clipped, noised mean (``differentially_private_aggregate``)
and the ``dpsgd`` alias. The grads these take are per-example: each leaf has a leading axis
of one entry per example. The noise comes from a ``funcdl.random`` key, so it has optax's
law, not JAX's bits."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import random, tree
from funcdl._args import bool_arg
from funcdl._blas import product
from funcdl.optim._alias import Stages, make_alias
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    next_count,
    read_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_float, check_float_params, check_lr, real_leaf, same_trees
from funcdl.optim._transforms import scale_by_learning_rate, trace

__all__ = ["DifferentiallyPrivateAggregateState", "differentially_private_aggregate", "dpsgd",
           "per_example_global_norm_clip", "per_example_layer_norm_clip"]

Tree = Any


class DifferentiallyPrivateAggregateState(NamedTuple):
    """optax's ``rng_key`` (here the ``funcdl.random`` key given, kept as it is) and the
    updates applied, folded into it for each update's noise."""

    rng_key: Any
    count: Count  # type: ignore[assignment]  # shadows tuple.count


def _per_example(name: str, grads: Tree) -> tuple[list[Any], int]:
    """The grads' leaves as arrays (real floating point, at least 1-d, one leading size:
    the examples) and that size, or an error naming ``name``."""
    pairs = tree.leaves_with_path(grads)
    if not pairs:
        raise ValueError(f"{name}: grads has no leaves; pass per-example grads, each leaf "
                         f"with a leading axis of one entry per example")
    leaves = [real_leaf(name, "grads", path, g) for path, g in pairs]
    for (path, _), g in zip(pairs, leaves, strict=True):
        if g.ndim == 0 or g.shape[0] != leaves[0].shape[0]:
            raise ValueError(
                f"{name}: expects per-example grads, each leaf with the same leading size "
                f"(the examples), got grads{path} of shape {g.shape} and grads{pairs[0][0]} "
                f"of shape {leaves[0].shape}")
    return leaves, leaves[0].shape[0]


def _clipped_sum(leaves: list[Any], clip: float) -> tuple[list[Any], np.int64]:
    """``Σ_i c_i·g_i`` per leaf, ``c_i = min(clip / ‖g_i‖, 1)`` with ``‖g_i‖`` example
    ``i``'s norm over all the leaves (``c_i = 1`` where that is NaN: 0/0, inf/inf), and how
    many ``c_i < 1``."""
    n = leaves[0].shape[0]
    sq = np.zeros(n)
    for g in leaves:
        rows = g.reshape(n, math.prod(g.shape[1:]))
        # in float64: a float32 sum of squares overflows from norms of ~1.8e19
        sq += np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    with np.errstate(all="ignore"):
        c = np.minimum(clip / np.sqrt(sq), 1.0)
    c[np.isnan(c)] = 1.0
    return ([product(_contract, c.astype(g.dtype), g) for g in leaves],
            np.int64(np.count_nonzero(c < 1.0)))


def per_example_global_norm_clip(grads: Tree, l2_norm_clip: float) -> tuple[Tree, np.int64]:
    """optax's: ``(Σ_i g_i·min(C / ‖g_i‖, 1), k)``, ``g_i`` example ``i``'s grads (the
    leaves' entry ``i`` along their leading axis), ``‖g_i‖`` their norm over all the
    leaves, ``C = l2_norm_clip`` (inf: no clipping), ``k`` how many were clipped. The sum
    has the grads' structure, each leaf without its leading axis and in its dtype."""
    name = "per_example_global_norm_clip"
    clip = check_float(name, "l2_norm_clip", l2_norm_clip, finite=False)
    leaves, _ = _per_example(name, grads)
    with np.errstate(all="ignore"):  # inf and NaN grads pass through, as optax's
        sums, clipped = _clipped_sum(leaves, clip)
    return tree.unflatten(tree.structure(grads), sums), clipped


def per_example_layer_norm_clip(grads: Tree, global_l2_norm_clip: float, uniform: bool = True
                                ) -> tuple[Tree, Tree]:
    """optax's: each leaf clipped per example on its own norm, as
    ``per_example_global_norm_clip`` of that leaf alone, to ``C/sqrt(K)`` (``uniform``;
    ``K`` leaves) or ``C·sqrt(D_l / D)`` (``D_l`` entries per example in leaf ``l``, ``D``
    in all), ``C = global_l2_norm_clip``. Returns the trees of the clipped sums and of
    the counts clipped (an int64 per leaf)."""
    name = "per_example_layer_norm_clip"
    clip = check_float(name, "global_l2_norm_clip", global_l2_norm_clip, finite=False)
    even = bool_arg(uniform, name, "uniform")
    leaves, _ = _per_example(name, grads)
    sizes = [math.prod(g.shape[1:]) for g in leaves]
    total = sum(sizes)
    sums, counts = [], []
    with np.errstate(all="ignore"):
        for g, size in zip(leaves, sizes, strict=True):
            share = 1.0 / len(leaves) if even else (size / total if total else 1.0)
            (s,), k = _clipped_sum([g], clip * share**0.5)
            sums.append(s)
            counts.append(k)
    treedef = tree.structure(grads)
    return tree.unflatten(treedef, sums), tree.unflatten(treedef, counts)


def _aggregate_args(name: str, l2_norm_clip: Any, noise_multiplier: Any, key: Any
                    ) -> tuple[float, float, Any]:
    clip = check_float(name, "l2_norm_clip", l2_norm_clip)
    mult = check_float(name, "noise_multiplier (the noise std over l2_norm_clip)",
                       noise_multiplier)
    if key is None:
        raise TypeError(f"{name}: needs key=, the noise's funcdl.random.key(seed) (funcdl "
                        f"keeps no global seed), got None")
    return clip, mult, random.check_key(key, name).copy()


def differentially_private_aggregate(l2_norm_clip: float, noise_multiplier: float, key: Any
                                     ) -> GradientTransformation:
    """optax's ``differentially_private_aggregate``: from per-example grads ``g_i`` (a
    leading axis of ``B`` examples on every leaf), ``u = (Σ_i g_i·min(C / ‖g_i‖, 1) +
    σ·n) / B``, ``n`` standard normal per entry, ``σ = C·noise_multiplier``, ``C =
    l2_norm_clip`` (see ``per_example_global_norm_clip``). First in a chain; ``u`` has the
    params' shapes.

    ``key`` a ``funcdl.random.key(seed)``: the update of count ``t`` draws from
    ``random.fold_in(key, t)``, split into one key per leaf (flattening order), in float64
    (the step then in the leaf's dtype): the same key and count give the same noise. State
    ``DifferentiallyPrivateAggregateState(rng_key, count)``.
    """
    name = "differentially_private_aggregate"
    clip, mult, start = _aggregate_args(name, l2_norm_clip, noise_multiplier, key)
    std = clip * mult

    def init(params: Tree) -> DifferentiallyPrivateAggregateState:
        check_float_params(f"{name}.init", params)
        return DifferentiallyPrivateAggregateState(start.copy(), zero_count())

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, DifferentiallyPrivateAggregateState]:
        where = f"{name}.update"
        check_state(name, state, DifferentiallyPrivateAggregateState)
        count = read_count(where, state.count)
        k = random.check_key(state.rng_key, f"{where} (state.rng_key)")
        leaves, n = _per_example(where, grads)
        if n == 0:
            raise ValueError(f"{where}: the per-example grads hold 0 examples (leading axis "
                             f"of size 0), whose mean is undefined")
        if params is not None:  # not read; a per-example leaf must be its param's shape
            same_trees(where, params, grads, ("params", "grads"))
            for (path, p), g in zip(tree.leaves_with_path(params), leaves, strict=True):
                if g.shape[1:] != np.shape(p):
                    raise ValueError(
                        f"{where}: grads{path} has shape {g.shape}; per-example grads are "
                        f"(examples, *param shape), and params{path} has {np.shape(p)}")
        with np.errstate(all="ignore"):  # inf and NaN grads: inf and NaN steps, silently
            sums, _ = _clipped_sum(leaves, clip)
            if std:
                keys = random.split(random.fold_in(k, count), len(sums))
                sums = [np.asarray((s + std * random.normal(kk, s.shape, np.float64)) / n,
                                   s.dtype) for s, kk in zip(sums, keys, strict=True)]
            else:  # no draw: the mean of the clipped grads, exactly
                sums = [s / s.dtype.type(n) for s in sums]
        out = tree.unflatten(tree.structure(grads), sums)
        return out, DifferentiallyPrivateAggregateState(state.rng_key, next_count(count))

    return transform(name, init, update)


def dpsgd(learning_rate: ScalarOrSchedule, l2_norm_clip: float, noise_multiplier: float,
          key: Any, momentum: float | None = None,
          nesterov: bool = False) -> GradientTransformation:
    """DP-SGD, as optax.contrib's ``dpsgd``: ``p ← p - lr·b``, ``b`` the
    ``differentially_private_aggregate`` of the per-example grads, with momentum ``b ←
    d + momentum·b`` (``d + momentum·b`` again with ``nesterov``) unless ``momentum`` is
    None. ``key`` (optax: ``seed``) a ``funcdl.random.key(seed)``.

    Stages: ``dp_aggregate``, ``momentum`` (a ``trace``; left out at None), ``lr``.
    """
    name = "dpsgd"
    rate = check_lr(name, learning_rate)
    clip, mult, k = _aggregate_args(name, l2_norm_clip, noise_multiplier, key)
    nest = bool_arg(nesterov, name, "nesterov")
    stages: Stages = [("dp_aggregate", differentially_private_aggregate(clip, mult, k))]
    if momentum is not None:
        stages.append(("momentum", trace(check_float(name, "momentum", momentum), nest)))
    elif nest:
        raise ValueError(f"{name}: nesterov=True needs a momentum, got momentum=None")
    stages.append(("lr", scale_by_learning_rate(rate)))
    return make_alias(name, stages)


def _contract(c: Any, g: Any) -> Any:
    """``Σ_i c_i g_i``: the per-example grads ``g`` (leading axis) weighted by ``c``."""
    return np.tensordot(c, g, axes=1)  # (product's f)
