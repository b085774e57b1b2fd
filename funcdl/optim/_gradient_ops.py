"""Transforms that edit the gradient before an optimizer sees it, as optax's: adaptive gradient
clipping (``adaptive_grad_clip``, unit-wise norms), ``centralize`` (gradient centralization),
``zero_nans``, ``keep_params_nonnegative`` and ``add_noise`` (annealed Gaussian gradient noise,
from an explicit ``funcdl.random`` key), with the ``noisy_sgd`` alias. Notation as in
``_transforms``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import random, tree
from funcdl.optim._alias import make_alias
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    empty_init,
    leafwise,
    next_count,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_lr,
    needs_params,
    param_leaf,
    real_leaf,
    real_param,
    walk,
)
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["AddNoiseState", "ZeroNansState", "adaptive_grad_clip", "add_noise", "centralize",
           "keep_params_nonnegative", "noisy_sgd", "zero_nans"]

Tree = Any


class ZeroNansState(NamedTuple):
    """``found_nan``: the params' structure, a bool per leaf, True where the last update's
    grads held a NaN (optax's)."""

    found_nan: Tree


class AddNoiseState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    rng_key: Any  # the funcdl.random key the next update splits


# ---------------------------------------------------------------------------- AGC

_AXES = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}


def _unit_axes(name: str, path: str, shape: tuple[int, ...], axis: Any) -> Any:
    """The axes a leaf's units are summed over: ``axis`` if given, else optax's by rank."""
    if axis is not None:
        return axis
    if sum(d != 1 for d in shape) <= 1:  # a scalar or a vector, once squeezed: the whole
        return None
    if len(shape) not in _AXES:
        raise ValueError(f"{name}: grads{path} has shape {shape}; the unit-wise norm knows "
                         f"ranks 1 to 5 (Dense IO, multi-head, conv HWIO and DHWIO kernels); "
                         f"pass axis= (the axes each unit spans) for other shapes")
    return _AXES[len(shape)]


def adaptive_grad_clip(clipping: float, eps: float = 1e-3,
                       axis: int | tuple[int, ...] | None = None) -> GradientTransformation:
    """optax's ``adaptive_grad_clip`` (AGC, Brock et al. 2021): per unit,
    ``m = clipping · max(‖p‖, eps)``; ``u = g`` where ``‖g‖ < m``, else
    ``u = g · m / max(‖g‖, 1e-6)``. A unit (optax's ``unitwise_norm``) is the whole of a
    scalar or a vector (once squeezed), else a slice along ``axis``, by default axis 0 for
    rank 2 and 3 (Dense's IO kernels, multi-head ones), axes (0, 1, 2) for rank 4 (HWIO),
    (0, 1, 2, 3) for rank 5 (DHWIO). Needs ``params``; keeps no state."""
    name = "adaptive_grad_clip"
    clip = check_float(name, "clipping", clipping)
    floor = check_float(name, "eps", eps)
    axes: Any = (axis,) if type(axis) is int else axis
    if axis is not None and not (isinstance(axes, tuple) and all(type(a) is int for a in axes)):
        raise TypeError(f"{name}: axis must be None, an int or a tuple of ints, got "
                        f"{axis!r}")
    if axis is not None and not all(-64 <= a < 64 for a in axes):
        raise ValueError(f"{name}: axis must name axes of the leaves (NumPy's at most 64), "
                         f"got {axis!r}")

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        where = f"{name}.update"
        check_state(name, state, EmptyState)
        needs_params(name, params)

        def leaf(path: str, g: Any, p: Any) -> Any:
            g, p = real_leaf(where, "grads", path, g), param_leaf(where, path, p)
            axes = _unit_axes(where, path, g.shape, axis)
            try:
                g_norm = np.sqrt(np.sum(g * g, axis=axes, keepdims=True))
                p_norm = np.sqrt(np.sum(p * p, axis=axes, keepdims=True))
            except (ValueError, IndexError):  # numpy's AxisError is both
                raise ValueError(f"{where}: axis={axis} does not fit grads{path} of shape "
                                 f"{g.shape}") from None
            limit = clip * np.maximum(p_norm, floor)
            clipped = g * (limit / np.maximum(g_norm, 1e-6))
            return (np.where(g_norm < limit, g, clipped).astype(g.dtype, copy=False),)

        with np.errstate(all="ignore"):  # inf and NaN, silently, as optax's
            return walk(where, leaf, (grads, params), ("grads", "params"), 1,
                        shapes=1)[0], state

    return transform(name, empty_init(), update)


# ---------------------------------------------------------------------------- NaN, sign

def zero_nans() -> GradientTransformation:
    """optax's ``zero_nans``: ``u = 0`` where ``g`` is NaN, else ``g`` (infs stay). State
    ``ZeroNansState(found_nan)``, a bool per leaf: whether this update's grads held one."""
    name = "zero_nans"

    def init(params: Tree) -> ZeroNansState:
        check_float_params(f"{name}.init", params)
        return ZeroNansState(tree.map(lambda p: np.False_, params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ZeroNansState]:
        where = f"{name}.update"
        check_state(name, state, ZeroNansState)

        def leaf(path: str, g: Any, *unread: Any) -> tuple[Any, Any]:
            g = real_leaf(where, "grads", path, g)
            nan = np.isnan(g)
            if not nan.any():
                return g, np.False_
            return np.where(nan, np.zeros((), g.dtype), g), np.True_

        # params are not read, but checked (structure, leaf shapes): a mismatch is a wrong call
        trees, names = (((grads, state.found_nan), ("grads", "state.found_nan"))
                        if params is None else ((grads, params, state.found_nan),
                                                ("grads", "params", "state.found_nan")))
        out, found = walk(where, leaf, trees, names, 2, shapes=int(params is not None))
        return out, ZeroNansState(found)

    return transform(name, init, update)


def keep_params_nonnegative() -> GradientTransformation:
    """optax's ``keep_params_nonnegative``: ``u = -p`` where ``p + u < 0``, else ``u``, so
    that ``p + u >= 0`` (a negative param goes to 0). Last in a chain; needs ``params``."""
    name = "keep_params_nonnegative"

    def leaf(u: Any, p: Any) -> Any:
        real_grad(u)
        p = real_param(p)
        return np.where(p + u < 0.0, -p, u).astype(np.result_type(u), copy=False)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        check_state(name, state, EmptyState)
        needs_params(name, params)
        with np.errstate(all="ignore"):
            return leafwise(f"{name}.update", leaf, (grads, params),
                            ("grads", "params"))[0], state

    return transform(name, empty_init(), update)


# ---------------------------------------------------------------------------- noise

def add_noise(eta: float, gamma: float, key: Any) -> GradientTransformation:
    """optax's ``add_noise`` (Neelakantan et al. 2015): ``u = g + σ·n``, ``n`` standard
    normal, ``σ² = eta / (t + 1)^gamma`` at the update of count ``t`` (``eta`` the variance
    at the first).

    Differs from optax in the randomness alone: ``key`` is a ``funcdl.random.key(seed)``
    (optax takes a JAX key or an int seed); each update splits the state's key into the next
    one and one that draws, per leaf in flattening order, from its own ``random.split``
    key, in float64 whatever the leaf's dtype (the step then in the leaf's). So the noise has
    optax's law, not its bits. State ``AddNoiseState(count, rng_key)``.
    """
    name = "add_noise"
    var = check_float(name, "eta (the noise variance at the first update)", eta)
    decay = check_float(name, "gamma (the variance's decay exponent)", gamma)
    start = random.check_key(key, name).copy()

    def init(params: Tree) -> AddNoiseState:
        check_float_params(f"{name}.init", params)
        return AddNoiseState(zero_count(), start.copy())

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, AddNoiseState]:
        where = f"{name}.update"
        check_state(name, state, AddNoiseState)
        count = read_count(where, state.count)
        k = random.check_key(state.rng_key, f"{where} (state.rng_key)")
        std = math.sqrt(var / float(count + 1) ** decay)
        next_key, draw = random.split(k)
        # walk visits the leaves in flattening order, so the i-th leaf draws from keys[i]
        keys = iter(random.split(draw, max(len(tree.leaves(grads)), 1)))

        def noisy(path: str, g: Any, *unread: Any) -> tuple[Any]:
            g = real_leaf(where, "grads", path, g)
            # drawn in float64 whatever the dtype: one key, one noise, float32 or float64
            n = random.normal(next(keys), g.shape, np.float64)
            return (np.asarray(g + std * n, g.dtype),)

        # params are not read, but checked (structure, leaf shapes): a mismatch is a wrong call
        trees, names = ((grads,), ("grads",)) if params is None else (
            (grads, params), ("grads", "params"))
        with np.errstate(all="ignore"):  # inf and NaN grads: inf and NaN steps, silently
            out = walk(where, noisy, trees, names, 1, shapes=int(params is not None))[0]
        return out, AddNoiseState(next_count(count), next_key)

    return transform(name, init, update)


def noisy_sgd(lr: ScalarOrSchedule, eta: float = 0.01, gamma: float = 0.55, key: Any = None
              ) -> GradientTransformation:
    """Noisy SGD (Neelakantan et al. 2015), as optax's ``noisy_sgd``: ``p ← p - lr·(g +
    σ·n)``, ``n`` standard normal, ``σ² = eta / (t + 1)^gamma`` (see ``add_noise``).

    ``key`` is required: a ``funcdl.random.key(seed)`` (optax 0.2.8 falls back to seed 0,
    with a warning, when none is given); the noise has optax's law, not JAX's bits.
    Stages: ``noise``, ``lr``.
    """
    name = "noisy_sgd"
    lr = check_lr(name, lr)
    var = check_float(name, "eta (the noise variance at the first update)", eta)
    decay = check_float(name, "gamma (the variance's decay exponent)", gamma)
    if key is None:
        raise TypeError(f"{name}: needs key=, the noise's funcdl.random.key(seed) (funcdl "
                        f"keeps no global seed), got None")
    k = random.check_key(key, name)
    return make_alias(name, [("noise", add_noise(var, decay, k)),
                             ("lr", scale_by_learning_rate(lr))])


# ---------------------------------------------------------------------------- centring

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
