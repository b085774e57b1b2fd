"""optax's small wrappers (split from ``_partition``): ``apply_if_finite`` (skip updates
holding inf or NaN), ``conditionally_transform`` / ``conditionally_mask`` (run a transform at
chosen steps only), ``stateless`` / ``stateless_with_tree_map`` (a transform from a
function), and the target-network updates ``incremental_update`` (Polyak averaging) and
``periodic_update``. optax's ``scale_gradient`` is left out: it is a JAX stop-gradient
trick, with no meaning without JAX's autodiff."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._base import (
    COUNT_END,
    Count,
    EmptyState,
    GradientTransformation,
    _check_transforms,
    check_state,
    empty_init,
    leafwise,
    like,
    next_count,
    param_dtype_error,
    read_count,
    real_grad,
    transform,
    zero_count,
)
from funcdl.optim._checks import check_float, real_leaf, real_param, same_trees
from funcdl.optim._keywords import (
    Keywords,
    check_extra,
    extra_keywords,
    forwarded,
    show_keywords,
)
from funcdl.optim._schedules import _steps

__all__ = ["ApplyIfFiniteState", "ConditionallyMaskState", "ConditionallyTransformState",
           "apply_if_finite", "conditionally_mask", "conditionally_transform",
           "incremental_update", "periodic_update", "stateless", "stateless_with_tree_map"]

Tree = Any


class ApplyIfFiniteState(NamedTuple):
    notfinite_count: Count  # consecutive updates with an inf or a NaN; 0 after a finite one
    last_finite: np.bool_  # whether the last update's grads were all finite
    total_notfinite: Count  # updates with an inf or a NaN since init, never reset
    inner_state: Any


class ConditionallyTransformState(NamedTuple):
    inner_state: Any
    step: Count  # updates already applied, the inner transform run or not


class ConditionallyMaskState(NamedTuple):
    step: Count  # updates already applied, the inner transform run or not
    inner_state: Any


def _real_grads(where: str, grads: Tree) -> list[Any]:
    """The leaves of ``grads`` as arrays; a TypeError naming ``where`` and the leaf for one
    that is not real floating point."""
    return [real_leaf(where, "grads", path, g) for path, g in tree.leaves_with_path(grads)]


def _real_and_finite(where: str, grads: Tree) -> bool:
    """Whether every entry of ``grads`` is finite, their dtypes checked first."""
    return all(np.isfinite(a).all() for a in _real_grads(where, grads))


def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int
                    ) -> GradientTransformation:
    """optax's ``apply_if_finite``: ``inner`` on grads that are all finite; grads holding an
    inf or a NaN give ``u = 0`` and leave ``inner``'s state as it was, until more than
    ``max_consecutive_errors`` such updates in a row: from then on (until finite grads come
    again) they go through ``inner`` anyway, as optax's do.

    State ``ApplyIfFiniteState(notfinite_count, last_finite, total_notfinite,
    inner_state)``: the run of non-finite updates (0 after a finite one), whether the last
    was finite, their total since init. Keyword arguments (``value=``) go to ``inner``.
    """
    name = "apply_if_finite"
    _check_transforms(name, [inner], ["inner"])
    limit = _steps(name, "max_consecutive_errors", max_consecutive_errors)

    def init(params: Tree) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(zero_count(), np.bool_(True), zero_count(),
                                  inner.init(params))

    takes = (extra_keywords(inner.update),)

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, ApplyIfFiniteState]:
        check_state(name, state, ApplyIfFiniteState)
        if extra:
            check_extra(name, extra, takes)
        run = read_count(f"{name}.update", state.notfinite_count)
        total = read_count(f"{name}.update", state.total_notfinite)
        finite = _real_and_finite(f"{name}.update", grads)
        if not finite:  # counts stay below COUNT_END, as optax's safe_increment
            run, total = min(run + 1, COUNT_END), min(total + 1, COUNT_END)
        else:
            run = 0
        if finite or run > limit:
            updates, inner_state = inner.update(state.inner_state, grads, params, **extra)
        else:
            updates, inner_state = tree.zeros_like(grads), state.inner_state
        return updates, ApplyIfFiniteState(np.int64(run), np.bool_(finite), np.int64(total),
                                           inner_state)

    return transform(name, init, show_keywords(update, takes))


def conditionally_transform(inner: GradientTransformation,
                            should_transform_fn: Callable[..., Any],
                            forward_extra_args: bool = False) -> GradientTransformation:
    """optax's ``conditionally_transform``: ``inner`` at the updates where
    ``should_transform_fn(step)`` is True (``step``: the updates already applied, an int64),
    ``u = g`` and ``inner``'s state unchanged at the others. With ``forward_extra_args``,
    the update's keyword arguments go to ``should_transform_fn`` too (those it takes).
    State ``ConditionallyTransformState(inner_state, step)``."""
    return _conditional("conditionally_transform", inner, should_transform_fn,
                        forward_extra_args, ConditionallyTransformState)


def conditionally_mask(inner: GradientTransformation, should_transform_fn: Callable[..., Any],
                       forward_extra_args: bool = False) -> GradientTransformation:
    """optax's ``conditionally_mask``: ``inner`` at the updates where
    ``should_transform_fn(step)`` is True, ``u = 0`` and ``inner``'s state unchanged at the
    others (e.g. ``lambda step: step % 4 == 3``). ``forward_extra_args`` as in
    ``conditionally_transform``. State ``ConditionallyMaskState(step, inner_state)``."""
    return _conditional("conditionally_mask", inner, should_transform_fn, forward_extra_args,
                        ConditionallyMaskState)


def _conditional(name: str, inner: GradientTransformation, fn: Any, forward: Any,
                 cls: type[ConditionallyTransformState] | type[ConditionallyMaskState]
                 ) -> GradientTransformation:
    _check_transforms(name, [inner], ["inner"])
    if not callable(fn):
        raise TypeError(f"{name}: should_transform_fn must be a function step -> bool (e.g. "
                        f"lambda step: step % 2 == 0), got {type(fn).__name__}")
    forward = bool_arg(forward, name, "forward_extra_args")
    inner_keys = extra_keywords(inner.update)
    fn_keys = _condition_keywords(fn) if forward else frozenset()
    takes = (inner_keys, fn_keys)
    zero = cls is ConditionallyMaskState

    def init(params: Tree) -> Any:
        return cls(inner_state=inner.init(params), step=zero_count())

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any) -> tuple[Tree, Any]:
        check_state(name, state, cls)
        step = read_count(f"{name}.update", state.step)
        if extra:
            check_extra(name, extra, takes)
        verdict = fn(np.int64(step), **forwarded(extra, fn_keys)) if forward else \
            fn(np.int64(step))
        if not isinstance(verdict, (bool, np.bool_)) and not (
                isinstance(verdict, np.ndarray) and verdict.shape == ()
                and verdict.dtype == bool):
            raise TypeError(f"{name}.update: should_transform_fn({step}) must return a bool "
                            f"(a Python or NumPy bool, or a 0-d bool array), got "
                            f"{type(verdict).__name__}")
        if verdict:
            updates, inner_state = inner.update(state.inner_state, grads, params,
                                                **forwarded(extra, inner_keys))
        else:
            _real_grads(f"{name}.update", grads)
            updates = tree.zeros_like(grads) if zero else grads
            inner_state = state.inner_state
        return updates, cls(inner_state=inner_state, step=next_count(step))

    return transform(name, init, show_keywords(update, takes))


def _condition_keywords(fn: Any) -> Keywords:
    """The keywords ``should_transform_fn`` takes beside the step: its parameters after the
    first (None: any, for ``**kwargs``)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):  # a builtin without a signature: none
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def stateless(f: Callable[[Tree, Tree], Tree]) -> GradientTransformation:
    """optax's ``stateless``: ``u = f(g, params)`` on whole trees (``params`` may be None).
    The grads and params must be real floating point, and ``f`` must return a tree of the
    grads' structure and leaf shapes. State ``EmptyState()``. Example: ``stateless(lambda
    g, p: tree.map(np.sign, g))``."""
    name = "stateless"
    if not callable(f):
        raise TypeError(f"{name}: f must be a function (updates, params) -> updates, got "
                        f"{type(f).__name__}")

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        where = f"{name}.update"
        check_state(name, state, EmptyState)
        _real_grads(where, grads)
        if params is not None:
            same_trees(where, grads, params, ("grads", "params"), shapes=True)
            odd = tree.odd_leaf(params, "f")
            if odd is not None:
                raise param_dtype_error(where, *odd)
        out = f(grads, params)
        same_trees(where, grads, out, ("grads", "f(grads, params)"), shapes=True)
        return out, state

    return transform(name, empty_init(), update)


def stateless_with_tree_map(f: Callable[[Any, Any], Any]) -> GradientTransformation:
    """optax's ``stateless_with_tree_map``: ``u_i = f(g_i, p_i)`` leaf by leaf (``p_i =
    None`` when the update gets no params; grads and params real floating point). State
    ``EmptyState()``. Example: ``stateless_with_tree_map(lambda g, p: g + 1e-4 * p)``."""
    name = "stateless_with_tree_map"
    if not callable(f):
        raise TypeError(f"{name}: f must be a function (update leaf, param leaf) -> update "
                        f"leaf, got {type(f).__name__}")

    def leaf(g: Any, p: Any = None) -> Any:
        real_grad(g)
        if p is not None:
            real_param(p)
        return f(g, p)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        check_state(name, state, EmptyState)
        where = f"{name}.update"
        if params is None:
            (out,) = leafwise(where, leaf, (grads,), ("grads",))
        else:
            (out,) = leafwise(where, leaf, (grads, params), ("grads", "params"))
        # as stateless: f's leaves must be updates, each its grad's shape (a (1,) for a
        # (4,) would be broadcast, or named by the next stage, far from f)
        same_trees(where, grads, out, ("grads", "f(g, p) per leaf"), shapes=True)
        _real_grads(where, out)
        return out, state

    return transform(name, empty_init(), update)


def incremental_update(new_tensors: Tree, old_tensors: Tree, step_size: float) -> Tree:
    """optax's ``incremental_update`` (Polyak averaging, a target network's soft update):
    ``step_size · new + (1 - step_size) · old`` leaf by leaf, ``step_size`` in [0, 1]. Each
    result keeps its ``old_tensors`` leaf's dtype (float32 stays float32). Nothing is
    mutated."""
    name = "incremental_update"
    s = check_float(name, "step_size", step_size, high=1.0)

    def leaf(new: Any, old: Any) -> Any:
        n, o = real_param(new), real_param(old)
        return like(s * n + (1.0 - s) * o, o)

    with np.errstate(all="ignore"):  # inf and NaN: carried silently, as optax's
        return leafwise(name, leaf, (new_tensors, old_tensors),
                        ("new_tensors", "old_tensors"))[0]


def periodic_update(new_tensors: Tree, old_tensors: Tree, steps: int, update_period: int
                    ) -> Tree:
    """optax's ``periodic_update`` (a target network's hard update): ``new_tensors`` when
    ``steps % update_period == 0``, else ``old_tensors``, returned as they are (not
    copied). The two trees must agree in structure and leaf shapes."""
    name = "periodic_update"
    step = _steps(name, "steps", steps)
    period = _steps(name, "update_period", update_period, positive=True)
    same_trees(name, new_tensors, old_tensors, ("new_tensors", "old_tensors"), shapes=True)
    return new_tensors if step % period == 0 else old_tensors
