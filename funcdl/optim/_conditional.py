"""optax's conditional wrappers: ``apply_if_finite`` (skip updates holding inf or NaN, counting
the skips), ``conditionally_transform`` / ``conditionally_mask`` (run a transform at chosen
steps only, its updates passed through or zeroed at the others)."""

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
    GradientTransformation,
    check_state,
    check_transforms,
    next_count,
    read_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import real_grads
from funcdl.optim._keywords import Keywords, check_extra, extra_keywords, forwarded, show_keywords
from funcdl.optim._schedules import check_steps

__all__ = ["ApplyIfFiniteState", "ConditionallyMaskState", "ConditionallyTransformState",
           "apply_if_finite", "conditionally_mask", "conditionally_transform"]

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


def _real_and_finite(where: str, grads: Tree) -> bool:
    """Whether every entry of ``grads`` is finite, their dtypes checked first."""
    return all(np.isfinite(a).all() for a in real_grads(where, grads))


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
    check_transforms(name, [inner], ["inner"])
    limit = check_steps(name, "max_consecutive_errors", max_consecutive_errors)

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
    check_transforms(name, [inner], ["inner"])
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
            real_grads(f"{name}.update", grads)
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
