"""``chain`` and ``named_chain``: transforms applied in turn, their states one entry per
transform, and the keyword arguments of an update (``value=``) forwarded to the stages that
take them (``_keywords``). Split from ``_base``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from funcdl._args import reworded
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    check_state,
    check_transforms,
    next_count,
    read_count,
    stage_updates,
    transform,
    zero_count,
)
from funcdl.optim._keywords import check_extra, extra_keywords, forwarded, show_keywords

__all__ = ["ChainState", "NamedChainState", "chain", "named_chain"]

Tree = Any


class ChainState(NamedTuple):
    """The state of ``chain(t1, t2, ...)``: one entry per transform, in order, and
    ``count``, the number of updates applied."""

    states: tuple[Any, ...]
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


class NamedChainState(NamedTuple):
    """The state of ``named_chain(("a", t1), ...)`` (and of every alias: ``sgd``, ``adam``...):
    ``states["a"]`` is ``t1``'s state; ``count``, the number of updates applied."""

    states: dict[str, Any]
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transforms in sequence, each to the previous one's updates.

    State: ``ChainState(states, count)``, one entry per transform. Example::

        opt = chain(clip_by_global_norm(1.0), scale_by_adam(), scale_by_learning_rate(1e-3))
        state = opt.init(params)
        updates, state = opt.update(state, grads, params)
    """
    return make_chain("chain", transforms, restate=False)


def make_chain(name: str, transforms: Sequence[GradientTransformation], *,
               restate: bool = True) -> GradientTransformation:
    """``chain`` under ``name``; ``restate``: a stage's error names ``name`` and the stage
    first (an alias built of stages, as adopt), not for a user's own chain, whose stages are
    the ones the user wrote and say so."""
    check_transforms(name, transforms)
    inits = tuple(t.init for t in transforms)
    takes = tuple(extra_keywords(t.update) for t in transforms)
    updates = stage_updates([t.update for t in transforms])

    def init(params: Tree) -> ChainState:
        return ChainState(tuple(f(params) for f in inits), zero_count())

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, ChainState]:
        check_state(name, state, ChainState)
        if type(state.states) is not tuple or len(state.states) != len(updates):
            got = (f"{len(state.states)} transform states" if type(state.states) is tuple
                   else f"{type(state.states).__name__} for its transform states")
            raise ValueError(
                f"{name}.update: the state holds {got} but the chain has {len(updates)} "
                f"transforms; pass the state made by this optimizer's init")
        count = read_count(f"{name}.update", state.count)
        if extra:
            check_extra(name, extra, takes)
        new_states: list[Any] = []
        try:  # as make_named_chain's: a stage's error names the optimizer the user built
            for f, s, keys in zip(updates, state.states, takes, strict=True):
                grads, s = f(s, grads, params, **forwarded(extra, keys)) if extra else \
                    f(s, grads, params)
                new_states.append(s)
        except (ValueError, TypeError) as err:
            if not restate:
                raise
            raise in_stage(f"{name}.update", len(new_states), err) from err
        return grads, ChainState(tuple(new_states), next_count(count))

    return transform(name, init, show_keywords(update, takes))


def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    """``chain`` whose state is ``NamedChainState(states, count)``, ``states`` a dict keyed by
    the given names, so a stage's state reads as ``state.states['adam']``.

    Example: ``named_chain(('clip', clip_by_global_norm(1.0)), ('adam', scale_by_adam()),
    ('lr', scale_by_learning_rate(1e-3)))``.
    """
    return make_named_chain("named_chain", transforms)


def make_named_chain(name: str, pairs: Sequence[tuple[str, GradientTransformation]]
                     ) -> GradientTransformation:
    for p in pairs:
        if not (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)):
            raise TypeError(f"{name}: each argument must be a (name, transform) pair, got {p!r}")
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: the names must be distinct, got {names}")
    check_transforms(name, [t for _, t in pairs])
    stages = list(zip(names, [t.init for _, t in pairs],
                      stage_updates([t.update for _, t in pairs]), strict=True))
    takes = tuple(extra_keywords(t.update) for _, t in pairs)
    name_set = frozenset(names)

    def init(params: Tree) -> NamedChainState:
        return NamedChainState({n: f(params) for n, f, _ in stages}, zero_count())

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, NamedChainState]:
        if type(state) is not NamedChainState:
            check_state(name, state, NamedChainState)
        if not isinstance(state.states, dict) or state.states.keys() != name_set:
            got = list(state.states) if isinstance(state.states, dict) else state.states
            raise ValueError(
                f"{name}.update: the state's stages are {got}, expected {names}; pass the "
                f"state made by this optimizer's init")
        count = read_count(f"{name}.update", state.count)
        new_states, states = {}, state.states
        if extra:
            check_extra(name, extra, takes)
        n = ""
        try:  # free until a stage raises; then the optimizer the user built is named first
            if extra:
                for (n, _, f), keys in zip(stages, takes, strict=True):
                    grads, new_states[n] = f(states[n], grads, params, **forwarded(extra, keys))
            else:
                for n, _, f in stages:
                    grads, new_states[n] = f(states[n], grads, params)
        except (ValueError, TypeError) as err:
            raise in_stage(f"{name}.update", n, err) from err
        return grads, NamedChainState(new_states, next_count(count))

    return transform(name, init, show_keywords(update, takes))


def staged(where: str, stage: str, opt: GradientTransformation, /, *args: Any,
           **extra: Any) -> Any:
    """``opt.update(*args, **extra)``, an error in it re-raised as ``in_stage`` words it: a
    wrapper's inner optimizer (sam's, schedule_free's) named after the wrapper."""
    try:
        return opt.update(*args, **extra)
    except (ValueError, TypeError) as err:
        raise in_stage(where, stage, err) from err


def in_stage(where: str, stage: str | int, err: Exception) -> Exception:
    """``err``, raised by a chain's stage, with the chain's name and the stage's first: a
    shape error in ``sgd``'s learning-rate stage reads ``sgd.update, stage 'lr':
    scale_by_learning_rate.update: ...``, naming the optimizer the user built."""
    msg = str(err)
    if msg.startswith(where.split(".")[0]):  # the chain's own words, or placed already
        return err
    return reworded(err, f"{where}, stage {stage!r}: {msg}")
