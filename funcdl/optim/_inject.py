"""optax's ``inject_hyperparams``: a transform's numeric hyperparameters moved into its
state, where a run can read and change them (the learning rate mid-run, by hand or from a
schedule), and where ``funcdl.io`` saves them with the rest."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import shown
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    check_state,
    check_transforms,
    next_count,
    read_count,
    transform,
    zero_count,
)
from funcdl.optim._chain import NamedChainState
from funcdl.optim._checks import (
    check_float_params,
    check_schedule,
    float_dtypes,
    moment_dtype_arg,
    schedule_value,
)
from funcdl.optim._keywords import check_extra, extra_keywords, forwarded, show_keywords

__all__ = ["InjectHyperparamsState", "inject_hyperparams"]

Tree = Any


class InjectHyperparamsState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    hyperparams: dict[str, Any]  # name -> a 0-d array: the values of the last update
    inner_state: Any


def _is_numeric(value: Any) -> bool:
    """An int, float or 0-d real array (not a bool): a hyperparameter kept in the state."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"


def _python(name: str, key: str, value: Any) -> Any:
    """A stored hyperparameter as the Python int or float handed to the factory."""
    if not _is_numeric(value):
        raise TypeError(f"{name}: state.hyperparams[{key!r}] must be a real number (a 0-d "
                        f"array as init made it, or a Python float), got "
                        f"{shown(value)} ({type(value).__name__})")
    v = np.asarray(value)
    return int(v) if v.dtype.kind in "iu" else float(v)


def _stored(value: Any, dtype: np.dtype[Any], key: str = "") -> Any:
    """A hyperparameter's value as the state keeps it: a 0-d int64 array for an int, else
    a 0-d array of ``dtype``; a constant ``key`` given at init must not round to 0 there
    (a schedule's value may: a decayed rate)."""
    if isinstance(value, (int, np.integer)):
        return np.asarray(value, np.int64)
    with np.errstate(over="ignore"):  # past float32's range: inf, as a float32 param's
        stored = np.asarray(value, dtype)
    if key and stored == 0 and value != 0:  # adam's eps=1e-8 in float16: 0/0 steps
        raise ValueError(f"inject_hyperparams: the hyperparameter {key}={value!r} is 0 in "
                         f"{np.dtype(dtype)}, the params' dtype it is kept in; pass "
                         f"hyperparam_dtype=np.float32")
    return stored


def _init_dtype(inner_state: Any, hyper: dict[str, Any], grads: Any) -> np.dtype[Any]:
    """The params' widest float dtype, which init kept the hyperparameters in, for an update
    without params: the inner state's float leaves' (adam's moments are made in it), else
    the one most hyperparameters still hold as NumPy floats (a user may have replaced one),
    else the grads' (optax's rule). The grads' first would move a float32 state to float64
    on float64 grads, and io.load(like=init) would refuse the checkpoint."""
    floats = [d for d in (np.asarray(x).dtype for x in tree.leaves(inner_state))
              if d.kind == "f"]
    if floats:
        return max(floats, key=lambda d: d.itemsize)
    held = Counter(v.dtype for v in hyper.values()
                   if isinstance(v, (np.ndarray, np.floating)) and v.dtype.kind == "f")
    if held:
        top = max(held.values())
        return max((d for d, c in held.items() if c == top), key=lambda d: d.itemsize)
    return float_dtypes(grads)[1]


def inject_hyperparams(inner_factory: Callable[..., GradientTransformation],
                       static_args: str | Iterable[str] = (),
                       hyperparam_dtype: Any = None) -> Callable[..., GradientTransformation]:
    """optax's ``inject_hyperparams``: ``inject_hyperparams(adam)(lr=1e-3)`` is ``adam``
    whose numeric arguments live in ``state.hyperparams`` (a dict of 0-d arrays).

    Each argument of the call is, by kind: a number (an int, float or 0-d array) kept in
    ``state.hyperparams`` and read back at every update, so replacing it in the state
    (``state._replace(hyperparams={**state.hyperparams, 'lr': np.asarray(1e-4)})``)
    changes it from the next update on; a callable (a schedule ``count -> value``),
    evaluated at every update from the count (the value used by the last update shows in
    ``state.hyperparams``; changing it there has no effect); anything else (bools, None,
    tuples, strings, dtypes) and the names in ``static_args`` (a callable that is no
    schedule, such as a mask function) passed as they are. ``inner_factory(**values)`` is
    rebuilt from the current values when they change, its state carried on.

    Floats are kept in ``hyperparam_dtype`` (None: the params' widest float dtype, as
    optax), ints as int64; a value replaced in the state is stored back so by the next
    update, whatever its own dtype, as optax casts it (without params, init's dtype is read
    from the inner state or the other hyperparameters). A ``weight_decay`` may move from or to
    0 mid-run (a warmup): the aliases leave its stage, which keeps no state, out at 0, and
    the state is refitted to it; an argument whose stage keeps state (``sgd``'s
    ``momentum``) must not change from 0 mid-run: the inner state has no such stage.
    State ``InjectHyperparamsState(count, hyperparams, inner_state)``.
    Keyword arguments of the update (``value=``) go to the inner transform.
    """
    if isinstance(inner_factory, GradientTransformation):
        raise TypeError("inject_hyperparams: inner_factory must be the function that makes "
                        "the transform (optim.adam), not a transform (optim.adam())")
    if not callable(inner_factory):
        raise TypeError(f"inject_hyperparams: inner_factory must be a function returning a "
                        f"GradientTransformation (e.g. optim.adam), got "
                        f"{type(inner_factory).__name__}")
    label = getattr(inner_factory, "__name__", type(inner_factory).__name__)
    name = f"inject_hyperparams({label})"
    statics = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    if not statics <= signature.parameters.keys():
        raise ValueError(f"inject_hyperparams: static_args must name parameters of "
                         f"{label}, got {sorted(statics - signature.parameters.keys())}; "
                         f"its parameters are {list(signature.parameters)}")
    dtype = moment_dtype_arg("inject_hyperparams", "hyperparam_dtype", hyperparam_dtype)

    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        passed = set(bound.arguments)
        bound.apply_defaults()
        schedules, numbers, fixed = {}, {}, {}
        for key, value in bound.arguments.items():
            # a default callable is the factory's own function (adopt's clip_value_fn), not
            # a schedule the caller gave
            if (key in statics or isinstance(value, type) or (not callable(value)
                    and not _is_numeric(value)) or (callable(value) and key not in passed)):
                fixed[key] = value
            elif callable(value):
                schedules[key] = check_schedule(name, key, value)
            else:
                numbers[key] = value
        order = tuple(bound.arguments)
        # The last values built from and their transform, as one tuple (threads share it)
        memo: list[tuple[Any, GradientTransformation]] = []

        def build(values: dict[str, Any]) -> tuple[GradientTransformation, bool]:
            """``inner_factory`` with ``values``, made again only when they change; and
            whether it was made now."""
            key = tuple(values.items())
            last = memo[0] if memo else None  # one read: another thread may replace it
            if last is not None and last[0] == key:
                return last[1], False
            call = inspect.BoundArguments(
                signature, {k: fixed[k] if k in fixed else values[k] for k in order})
            made = inner_factory(*call.args, **call.kwargs)
            check_transforms(name, [made], [f"{label}(...)"])
            memo[:] = [(key, made)]
            return made, True

        def at(count: int, current: dict[str, Any]) -> dict[str, Any]:
            """The Python values of this update: the state's numbers, the schedules'."""
            values = {k: _python(f"{name}.update", k, current[k]) for k in numbers}
            for k, f in schedules.items():
                values[k] = schedule_value(f"{name} ({k})", f, count)
            return values

        def first_value(k: str, f: Any) -> float:
            try:
                return schedule_value(f"{name} ({k})", f, 0)
            except Exception as e:  # a mask read as a schedule: mask(0) fails its own way
                raise TypeError(
                    f"{name}: {k} is a callable, read as a schedule count -> value, and at "
                    f"count 0 it failed ({type(e).__name__}: {e}); a callable hyperparameter "
                    f"that is no schedule (a mask, a function of the params) goes in "
                    f"static_args=({k!r},)") from e

        first, _ = build({**{k: _python(name, k, v) for k, v in numbers.items()},
                       **{k: first_value(k, f) for k, f in schedules.items()}})
        takes = (extra_keywords(first.update),)
        keys = frozenset(numbers) | frozenset(schedules)

        def init(params: Tree) -> InjectHyperparamsState:
            check_float_params(f"{name}.init", params)
            kind = dtype or float_dtypes(params)[1]
            hyper = {k: _stored(v, kind, k) for k, v in numbers.items()}
            hyper.update({k: _stored(schedule_value(f"{name} ({k})", f, 0), kind)
                          for k, f in schedules.items()})
            inner, _ = build(at(0, hyper))
            return InjectHyperparamsState(zero_count(), hyper, inner.init(params))

        def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
                   ) -> tuple[Tree, InjectHyperparamsState]:
            where = f"{name}.update"
            check_state(name, state, InjectHyperparamsState)
            count = read_count(where, state.count)
            hyper = state.hyperparams
            if not isinstance(hyper, dict) or hyper.keys() != keys:
                got = sorted(hyper) if isinstance(hyper, dict) else type(hyper).__name__
                raise ValueError(f"{where}: state.hyperparams must be a dict with the keys "
                                 f"{sorted(keys)}, got {got}; replace values, not keys")
            if extra:
                check_extra(name, extra, takes)
            values = at(count, hyper)
            try:
                inner, fresh = build(values)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{where}: the hyperparams at count {count}: {e}") from None
            try:
                updates, inner_state = inner.update(state.inner_state, grads, params,
                                                    **forwarded(extra, takes[0]))
            except (TypeError, ValueError) as e:
                regrafted = _regrafted(inner, state.inner_state, params) if fresh else None
                if regrafted is None:
                    if not fresh or not _restaged(inner, state.inner_state, params):
                        raise  # the grads' or params' fault, not the hyperparams'
                    what = ("adds or removes a stage that keeps state, as a momentum changed "
                            "from 0," if isinstance(e, ValueError) else "changes a stage's "
                            "state, as adagrad's lr_decay changed from 0,")
                    raise type(e)(f"{e} (built from the hyperparams {values}: a value that "
                                  f"{what} needs a new init)") from None
                updates, inner_state = inner.update(regrafted, grads, params,
                                                    **forwarded(extra, takes[0]))
            # As optax: floats back in init's dtype, whatever a hand-made value came in (a
            # float64 np.asarray(1e-4) in a float32 run would not load into init's state);
            # without params, each in the dtype it has in the state (the grads' may differ)
            kind = dtype or (float_dtypes(params)[1] if params is not None
                             else _init_dtype(state.inner_state, hyper, grads))
            new = {k: _stored(values[k], kind) for k in hyper}
            return updates, InjectHyperparamsState(next_count(count), new, inner_state)

        return transform(name, init, show_keywords(update, takes))

    wrapped.__name__ = wrapped.__qualname__ = name
    wrapped.__doc__ = inner_factory.__doc__
    return wrapped


def _restaged(inner: GradientTransformation, old: Any, params: Tree) -> bool:
    """Whether ``inner`` keeps a state of another structure than ``old`` (its stages or
    their state records changed), on the way out of a failed update only."""
    try:
        return tree.structure(inner.init(params)) != tree.structure(old)
    except (TypeError, ValueError):
        return False


def _regrafted(inner: GradientTransformation, old: Any, params: Tree) -> Any:
    """``old``, an alias's (a named chain's) state, refitted to ``inner``'s stages when they
    differ by stages that keep no state only: a weight decay that a schedule moves from 0 (the
    aliases leave its stage out at 0; optax's keep it); else None."""
    if type(old) is not NamedChainState:
        return None
    try:
        made = inner.init(params)
    except (TypeError, ValueError):
        return None
    if type(made) is not NamedChainState:
        return None
    changed = [(made.states[k] if k in made.states else old.states[k])
               for k in made.states.keys() ^ old.states.keys()]
    if not changed or any(type(st) is not EmptyState for st in changed):
        return None
    return old._replace(states={k: old.states.get(k, made.states[k]) for k in made.states})
