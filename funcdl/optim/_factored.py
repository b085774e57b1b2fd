"""Second moments in less memory than the params, as optax's: Adafactor's pieces,
``scale_by_factored_rms`` (second moments kept as row and column statistics of each large
matrix), ``clip_by_block_rms`` and ``scale_by_param_block_rms`` (per-leaf RMS), and the
``adafactor`` alias chaining them; SM3's ``scale_by_sm3`` (one accumulator vector per axis)
and the ``sm3`` alias. Unlike the elementwise transforms, these read each leaf's shape: a
"block" is one leaf. Notation as in ``_transforms``; ``t = count + 1`` is the step being
taken."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, int_arg
from funcdl.optim._alias import Stages, append_weight_decay, make_alias
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
    check_schedule,
    moment_dtype_arg,
    needs_params,
    real_leaf,
    real_param,
    same_trees,
    schedule_float,
    walk,
)
from funcdl.optim._transforms import scale, scale_by_learning_rate
from funcdl.optim._wrappers import ema

__all__ = ["FactoredState", "ScaleBySM3State", "adafactor", "clip_by_block_rms",
           "scale_by_factored_rms", "scale_by_param_block_rms", "scale_by_sm3", "sm3"]

Tree = Any


class FactoredState(NamedTuple):
    """``scale_by_factored_rms``'s state. Each of ``v_row``, ``v_col``, ``v`` has the params'
    structure; a factored leaf keeps ``v_row`` (its shape without its largest axis) and
    ``v_col`` (without the second largest) and a placeholder ``zeros((1,))`` in ``v``; any
    other leaf the full ``v`` and placeholders in ``v_row``, ``v_col`` (optax's layout)."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    v_row: Tree
    v_col: Tree
    v: Tree


def decay_rate_pow(step: int, exponent: float = 0.8) -> float:
    """Adafactor's second-moment decay at ``step`` (0 at the first update):
    ``1 - (step + 1)^(-exponent)`` (optax's ``_decay_rate_pow``, here in float64: optax's
    is float32). A ``step + 1 <= 0`` (a ``step_offset`` past the count) gives -inf or NaN,
    and so NaN steps, as optax's."""
    with np.errstate(all="ignore"):
        return 1.0 - float(np.float64(step + 1) ** (-exponent))


def factored_dims(shape: tuple[int, ...], factored: bool, min_dim: int
                  ) -> tuple[int, int] | None:
    """``(d1, d0)``, the axes of the second largest and the largest size (ties: the later
    axis counts as larger, as a stable argsort), when ``factored``, the rank is >= 2 and
    the second largest size is >= ``min_dim``; else None (optax's rule)."""
    if not factored or len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: shape[i])  # stable: ties keep axis order
    if shape[order[-2]] < min_dim:
        return None
    return order[-2], order[-1]


def _drop(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1:]


def _layout(shape: tuple[int, ...], dims: tuple[int, int] | None
            ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The shapes of a leaf's ``v_row``, ``v_col`` and ``v``."""
    if dims is None:
        return (1,), (1,), shape
    d1, d0 = dims
    return _drop(shape, d0), _drop(shape, d1), (1,)


def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8,
                          step_offset: int = 0, min_dim_size_to_factor: int = 128,
                          epsilon: float = 1e-30,
                          decay_rate_fn: Callable[[int, float], float] = decay_rate_pow
                          ) -> GradientTransformation:
    """optax's ``scale_by_factored_rms`` (Adafactor's direction). ``β = decay_rate_fn(t - 1 -
    step_offset, decay_rate)`` (by default ``1 - (t - step_offset)^(-decay_rate)``),
    ``s = g² + epsilon``. A leaf with two axes of size >= ``min_dim_size_to_factor``
    (``d0`` the largest, ``d1`` the next; see ``factored_dims``):
    ``r = β·r + (1-β)·mean_d0(s)``; ``c = β·c + (1-β)·mean_d1(s)``;
    ``u = g / sqrt((r / mean_d1(r)) · c)`` (``r`` broadcast along ``d0``, ``c`` along ``d1``):
    the paper's ``V ≈ R·C / mean(R)``.
    Any other leaf: ``v = β·v + (1-β)·s``; ``u = g / sqrt(v)``. Memory: O(rows + cols) for a
    factored matrix. State ``FactoredState(count, v_row, v_col, v)``, in the params' dtype.
    """
    name = "scale_by_factored_rms"
    fac = bool_arg(factored, name, "factored")
    decay = check_float(name, "decay_rate", decay_rate)
    offset = int_arg(step_offset, name, "step_offset", minimum=None)
    if not -(2**62) <= offset <= 2**62:  # count - offset stays an int64, and a float
        raise ValueError(f"{name}: step_offset must be in [-2**62, 2**62], got {offset}")
    min_dim = int_arg(min_dim_size_to_factor, name, "min_dim_size_to_factor", minimum=0)
    eps = check_float(name, "epsilon", epsilon)
    if not callable(decay_rate_fn):
        raise TypeError(f"{name}: decay_rate_fn must be a callable (step, decay_rate) -> "
                        f"decay, got {type(decay_rate_fn).__name__}")

    def init(params: Tree) -> FactoredState:
        check_float_params(f"{name}.init", params)

        def leaf(p: Any) -> tuple[Any, Any, Any]:
            shape, dtype = np.shape(p), np.asarray(p).dtype
            return tuple(np.zeros(s, dtype) for s in  # type: ignore[return-value]
                         _layout(shape, factored_dims(shape, fac, min_dim)))

        return FactoredState(zero_count(), *tree.map_multi(leaf, 3, params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, FactoredState]:
        where = f"{name}.update"
        check_state(name, state, FactoredState)
        count = read_count(where, state.count)
        beta = schedule_float(where, decay_rate_fn(count - offset, decay), count)

        def leaf(path: str, g: Any, r: Any, c: Any, v: Any) -> tuple[Any, Any, Any, Any]:
            g = real_leaf(where, "grads", path, g)
            dims = factored_dims(g.shape, fac, min_dim)
            for got, want, field in zip((r, c, v), _layout(g.shape, dims),
                                        ("v_row", "v_col", "v"), strict=True):
                if np.shape(got) != want:
                    raise ValueError(
                        f"{where}: state.{field}{path} has shape {np.shape(got)}, expected "
                        f"{want} for grads{path} of shape {g.shape}; pass the state made by "
                        f"this optimizer's init for these params")
            s = g * g + eps
            if dims is None:
                v_new = np.asarray(beta * v + (1.0 - beta) * s, np.result_type(v))
                return np.asarray(g / np.sqrt(v_new), v_new.dtype), r, c, v_new
            d1, d0 = dims
            r_new = np.asarray(beta * r + (1.0 - beta) * s.mean(axis=d0), np.result_type(r))
            c_new = np.asarray(beta * c + (1.0 - beta) * s.mean(axis=d1), np.result_type(c))
            r_axis = d1 - 1 if d1 > d0 else d1  # d1's place in r, which lacks d0
            row = r_new / r_new.mean(axis=r_axis, keepdims=True)
            u = g / np.sqrt(np.expand_dims(row, d0) * np.expand_dims(c_new, d1))
            return np.asarray(u, r_new.dtype), r_new, c_new, v

        trees: tuple[Tree, ...] = (grads, state.v_row, state.v_col, state.v)
        names: tuple[str, ...] = ("grads", "state.v_row", "state.v_col", "state.v")
        step: Callable[..., Any] = leaf
        if params is not None:  # checked in the same walk, though only grads' shapes are read
            trees, names = (grads, params, *trees[1:]), ("grads", "params", *names[1:])
            step = lambda path, g, p, r, c, v: leaf(path, g, r, c, v)  # noqa: E731
        with np.errstate(all="ignore"):  # inf and NaN steps, silently, as optax's
            out, v_row, v_col, v = walk(where, step, trees, names, 4,
                                        shapes=int(params is not None))
        return out, FactoredState(next_count(count), v_row, v_col, v)

    return transform(name, init, update)


def _rms(x: Any) -> Any:
    return np.sqrt(np.mean(x * x)) if np.size(x) else np.zeros((), np.asarray(x).dtype)


def clip_by_block_rms(threshold: float) -> GradientTransformation:
    """optax's ``clip_by_block_rms``: each leaf ``u = g / max(1, rms(g) / threshold)``,
    ``rms(g) = sqrt(mean(g²))`` over the leaf."""
    name = "clip_by_block_rms"
    limit = check_float(name, "threshold", threshold, finite=False)
    if not limit > 0.0:
        raise ValueError(f"{name}: threshold must be > 0 (the largest RMS a leaf keeps), got "
                         f"{limit}; optax's adafactor uses 1.0")

    def leaf(g: Any) -> Any:
        real_grad(g)
        d = float(_rms(g)) / limit  # a Python float: float32 stays float32
        return g if d <= 1.0 else g / d  # a NaN rms: a NaN leaf, as optax's maximum

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        check_state(name, state, EmptyState)
        with np.errstate(all="ignore"):
            return leafwise(f"{name}.update", leaf, (grads,), ("grads",))[0], state

    return transform(name, empty_init(), update)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradientTransformation:
    """optax's ``scale_by_param_block_rms``: each leaf ``u = g · max(rms(p), min_scale)``
    (``min_scale`` when ``rms(p) <= min_scale``). Needs ``params``."""
    name = "scale_by_param_block_rms"
    low = check_float(name, "min_scale", min_scale)

    def leaf(g: Any, p: Any) -> Any:
        real_grad(g)
        rms = float(_rms(real_param(p)))
        return g * (low if rms <= low else rms)  # a NaN rms stays NaN, as optax's where

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        check_state(name, state, EmptyState)
        needs_params(name, params)
        with np.errstate(all="ignore"):
            return leafwise(f"{name}.update", leaf, (grads, params),
                            ("grads", "params"))[0], state

    return transform(name, empty_init(), update)


def adafactor(learning_rate: ScalarOrSchedule | None = None, min_dim_size_to_factor: int = 128,
              decay_rate: float = 0.8, decay_offset: int = 0,
              multiply_by_parameter_scale: bool = True, clipping_threshold: float | None = 1.0,
              momentum: float | None = None, dtype_momentum: Any = None,
              weight_decay_rate: ScalarOrSchedule | None = None, eps: float = 1e-30,
              factored: bool = True, weight_decay_mask: Any = None) -> GradientTransformation:
    """Adafactor, as optax's ``adafactor`` (its arguments, its chain):
    ``u = scale_by_factored_rms(g)``; ``u = u / max(1, rms(u) / clipping_threshold)``;
    ``u = learning_rate · u``; ``u = u · max(rms(p), 1e-3)`` (multiply_by_parameter_scale);
    ``m = momentum·m + (1-momentum)·u`` (an ``ema`` without debiasing, stored in
    ``dtype_momentum``); ``u = u + weight_decay_rate · p``; ``p ← p - u``. Each step is left
    out when its argument is None (or False). ``dtype_momentum=None`` (the default) stores
    ``m`` in each param's dtype: optax's float32 default would round a float64 run's
    momentum to float32 without a word.

    ``learning_rate=None`` applies no scaling (lr 1), as optax's: the *relative* step size
    comes from multiplying by the parameter scale. The paper's decaying relative step,
    ``min(1e-2, 1/sqrt(t))``, is a schedule away:
    ``adafactor(lambda c: min(1e-2, (c + 1) ** -0.5))``.

    Stages: ``factored_rms``, ``clip``, ``lr``, ``param_scale``, ``momentum``,
    ``weight_decay``, ``flip``.
    """
    name = "adafactor"
    lr = None if learning_rate is None else \
        check_float_or_schedule(name, "learning_rate", learning_rate, "lr")
    clip_at = None if clipping_threshold is None else \
        check_float(name, "clipping_threshold", clipping_threshold, finite=False)
    mom = None if momentum is None else check_float(name, "momentum", momentum, high=1.0)
    mom_dt = moment_dtype_arg(name, "dtype_momentum", dtype_momentum)
    wd = weight_decay_rate
    if wd is not None:
        wd = check_schedule(name, "weight_decay_rate", wd) if callable(wd) else \
            check_float(name, "weight_decay_rate", wd, low=-np.inf)
    param_scale = bool_arg(multiply_by_parameter_scale, name, "multiply_by_parameter_scale")
    try:
        stages: Stages = [("factored_rms", scale_by_factored_rms(
            factored, decay_rate, decay_offset, min_dim_size_to_factor, eps))]
    except (TypeError, ValueError) as e:  # name the alias and its own argument names
        msg = str(e).replace("scale_by_factored_rms", name).replace(
            "step_offset", "decay_offset").replace("epsilon", "eps")
        raise type(e)(msg) from None
    if clip_at is not None:
        stages.append(("clip", clip_by_block_rms(clip_at)))
    if lr is not None:
        stages.append(("lr", scale_by_learning_rate(lr, flip_sign=False)))
    if param_scale:
        stages.append(("param_scale", scale_by_param_block_rms()))
    if mom is not None:
        stages.append(("momentum", ema(mom, debias=False, accumulator_dtype=mom_dt)))
    append_weight_decay(stages, wd, weight_decay_mask, name, keep_zero=True)
    stages.append(("flip", scale(-1.0)))
    return make_alias(name, stages)


# ---------------------------------------------------------------------------- SM3

class ScaleBySM3State(NamedTuple):
    """optax's names: ``mu`` the accumulators, one list per leaf (one vector per axis of a
    leaf of 2 dims or more, else one array shaped as the leaf); ``nu`` the momentum."""

    mu: Tree
    nu: Tree


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


def sm3(lr: ScalarOrSchedule, momentum: float = 0.9) -> GradientTransformation:
    """SM3 (Anil et al. 2019), as optax's ``sm3``: ``p ← p - lr·m``, ``m`` the momentum of
    ``g / sqrt(a + eps)``, ``a`` SM3-II's per-axis accumulated g² (see ``scale_by_sm3``
    with ``b1 = momentum``). ``lr`` a float (optax's) or a schedule.

    Stages: ``sm3``, ``lr``.
    """
    name = "sm3"
    lr = check_lr(name, lr)
    b1 = check_float(name, "momentum", momentum, high=1.0)
    return make_alias(name, [("sm3", scale_by_sm3(b1)), ("lr", scale_by_learning_rate(lr))])
