"""Argument checks shared by the transforms, aliases and schedules: each raises TypeError or
ValueError naming the function, what it expected and what came. Most run at construction or
at ``init``; ``schedule_value``, ``check_grads``, ``walk``, the leaf readers and the loss
readers at every update. Also ``zeros_in`` / ``full_in``, the state leaves' constructors."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from funcdl import tree
from funcdl._args import dtype_arg, number, real_arg
from funcdl.optim._base import (
    ScalarOrSchedule,
    Schedule,
    real_grad,
)
from funcdl.optim._leaf_errors import dtype_error, odd_kind, param_dtype_error, subclass_error

Tree = Any


def check_float(name: str, what: str, value: Any, *, low: float = 0.0,
                high: float = math.inf, open_high: bool = False, finite: bool = True) -> float:
    """``_args.real_arg`` with an optimizer setting's lower bound, 0 unless said (rates,
    decays, eps); ``finite=False`` admits inf (``max_norm=inf``: no clipping)."""
    return real_arg(value, name, what, low=low, high=high, open_high=open_high, finite=finite)



# The schedule constructors (constant_schedule...), registered by _schedules: passed where a
# schedule belongs without being called, they are callables too, and would fail only at the
# first update, inside float().
SCHEDULE_FACTORIES: set[Callable[..., Any]] = set()
_F = TypeVar("_F", bound=Callable[..., Any])


def schedule_factory(fn: _F) -> _F:
    SCHEDULE_FACTORIES.add(fn)
    return fn


def fsum(xs: Any) -> float:
    """``math.fsum`` of the floats ``xs`` (exact), but NaN for an inf and a -inf among them
    and inf past float64's range, as optax's plain sums give them, where ``math.fsum``
    raises ValueError or OverflowError: one bad batch must not stop a run unnamed."""
    xs = list(xs)
    try:
        return math.fsum(xs)
    except (OverflowError, ValueError):
        return plain_sum(xs)


def plain_sum(xs: Any) -> float:
    """A left-to-right float sum, as optax adds its per-leaf dots: inf + -inf is NaN, a sum
    past float64's range inf (``math.fsum`` raises at both)."""
    out = 0.0
    for x in xs:
        out += x
    return out


def check_schedule(name: str, what: str, fn: Any) -> Schedule:
    """``fn`` if it can be called as ``fn(count)``; a schedule constructor passed uncalled,
    a non-callable, or a callable taking no argument raise TypeError naming ``name``."""
    if not callable(fn):
        raise TypeError(f"{name}: {what} must be a callable count -> value, "
                        f"got {type(fn).__name__}")
    if any(fn is f for f in SCHEDULE_FACTORIES):  # `in` would hash fn: a dataclass cannot
        raise TypeError(f"{name}: {what} is the schedule constructor {fn.__name__} itself; "
                        f"call it to make the schedule, e.g. {fn.__name__}(...)")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: trust them
        return fn  # type: ignore[no-any-return]
    try:
        signature.bind(0)
    except TypeError:
        raise TypeError(f"{name}: {what} must take one argument, the count of updates "
                        f"already applied; {getattr(fn, '__name__', fn)!r} has the "
                        f"signature {signature}") from None
    return fn  # type: ignore[no-any-return]


def check_float_or_schedule(name: str, what: str, value: Any,
                            short: str) -> ScalarOrSchedule:
    """A float >= 0, or a schedule (any callable ``count -> short``): a rate, a decay."""
    if callable(value):
        return check_schedule(name, what, value)
    return check_float(name, f"{what} (a float or a schedule count -> {short})", value)


def decay_arg(name: str, weight_decay: Any) -> Any:
    """A decoupled weight decay of an optax alias: a float >= 0, or a schedule."""
    return check_float_or_schedule(name, "weight_decay", weight_decay, "wd")


def check_lr(name: str, lr: Any) -> ScalarOrSchedule:
    """A learning rate: a float >= 0, or a schedule (any callable ``count -> lr``)."""
    return check_float_or_schedule(name, "lr", lr, "lr")


def check_betas(name: str, b1: Any, b2: Any, b2_high_open: bool = True) -> tuple[float, float]:
    """Adam's decays: b1 in [0, 1) (1 would divide by 1 - b1^t = 0 in the bias correction),
    b2 in [0, 1), or [0, 1] where nothing divides by 1 - b2^t (Adamax's running max)."""
    return (check_float(name, "b1", b1, high=1.0, open_high=True),
            check_float(name, "b2", b2, high=1.0, open_high=b2_high_open))


def moment_dtype_arg(name: str, what: str, value: Any) -> np.dtype[Any] | None:
    """A running moment's storage dtype (optax's ``mu_dtype``, ``accumulator_dtype``): None,
    the params' own, or a NumPy float dtype."""
    return None if value is None else dtype_arg(
        value, name, what, "f", "None or a NumPy float dtype (np.float16, np.float32, "
        "np.float64)")


def zeros_in(params: Tree, dtype: Any) -> Tree:
    """Zeros shaped as ``params``, in ``dtype`` (None: each leaf's own)."""
    if dtype is None:
        return tree.zeros_like(params)
    return tree.map(lambda p: np.zeros(np.shape(p), dtype), params)


def full_in(params: Tree, value: float) -> Tree:
    """``value`` shaped and typed as each param (a float past float32's range is inf)."""
    with np.errstate(over="ignore"):
        return tree.map(lambda p: np.full_like(p, value), params)


def float_dtypes(params: Tree) -> tuple[np.dtype[Any], np.dtype[Any]]:
    """The narrowest and widest float dtypes among the params' leaves (float64 for none),
    as optax picks them: a scale that must not promote a float32 update, a loss or
    hyperparameter kept finely."""
    kinds = sorted({d for d in (np.asarray(x).dtype for x in tree.leaves(params))
                    if d.kind == "f"}, key=lambda d: d.itemsize)
    if not kinds:
        return np.dtype(np.float64), np.dtype(np.float64)
    return kinds[0], kinds[-1]


def check_float_params(name: str, params: Tree, eps: float | None = None) -> None:
    """At ``init``: every param leaf must be a real floating-point array or number. An
    integer or bool param would come back from ``apply_updates`` silently truncated (an
    update of -0.1 turns 1 into 0); a complex one would need complex grads, which the
    updates refuse. With ``eps``: ``eps > 0`` must not round to 0 in a param's dtype (1e-8
    does in float16), or a zero gradient entry divides 0 by 0."""
    odd = tree.odd_leaf(params, "f")
    if odd is not None and _init_output(params):
        raise TypeError(f"{name}: params is a tuple that starts with the shape "
                        f"{params[0]!r}, as a layer's init returns (out_shape, params) or "
                        f"(out_shape, params, state); pass the params alone: "
                        f"_, params = model.init(key, in_shape)")
    if odd is not None and odd[1].kind == "c":
        raise TypeError(f"{name}: params{odd[0]} has dtype {odd[1]}; optimizers work on "
                        f"real floating-point arrays (float16, float32 or float64), and "
                        f"their updates refuse complex grads; keep the real and imaginary "
                        f"parts as two real params")
    if odd is not None:
        raise TypeError(f"{name}: params{odd[0]} has dtype {odd[1]}; optimizers work on "
                        f"floating-point arrays (apply_updates keeps each param's dtype, so "
                        f"an integer one would be truncated at every update); cast it with "
                        f".astype(np.float32)")
    for path, x in tree.leaves_with_path(params) if eps else ():
        kind = np.asarray(x).dtype
        if kind.kind == "f" and np.asarray(eps, kind) == 0.0:
            # a nonzero Python float is never 0 in float64: float16 or float32 here
            wider = (" (1e-4 is usual for float16) or keep float32 params" if kind.char == "e"
                     else " or use float64 params")
            raise ValueError(f"{name}: eps={eps} is 0 in {kind} (params{path}), so a zero "
                             f"gradient entry would give 0/0 = NaN; pass a larger eps{wider}")


def _init_output(params: Tree) -> bool:
    """Whether ``params`` looks like what init returns: ``(out_shape, params)`` (or with a
    state after them), out_shape a tuple of None and ints."""
    return (type(params) is tuple and len(params) in (2, 3) and type(params[0]) is tuple
            and all(d is None or type(d) is int for d in params[0]))


def schedule_float(name: str, value: Any, count: int) -> float:
    """A schedule's ``value`` at ``count`` as a Python float (inf and NaN included, and an
    int beyond the float range as inf), or a TypeError naming ``name``."""
    try:
        if isinstance(value, (str, bytes, bool, np.bool_)) or value is None or \
                np.ndim(value) != 0 or np.asarray(value).dtype.kind == "b":
            raise TypeError
        return float(value)
    except OverflowError:  # an int past float64's range
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        got = f"an array of shape {np.shape(value)}" if np.ndim(value) else repr(value)
        hint = " (a schedule returns the value itself, not a function)" if callable(value) else ""
        raise TypeError(f"{name}: the schedule must return a number at count {count}, "
                        f"got {got}{hint}") from None


def value_at(name: str, what: str, value: Any, count: int, low: float = 0.0) -> float:
    """A hyperparameter at ``count``: a schedule's value there (``schedule_value``), or the
    float it is."""
    if callable(value):
        return schedule_value(f"{name} ({what})", value, count, low)
    return float(value)


def schedule_value(name: str, schedule: Callable[[int], Any], count: int,
                   low: float = -math.inf) -> float:
    """``schedule(count)`` as a finite Python float ``>= low``, or an error naming the
    optimizer."""
    value = schedule(count)
    v = schedule_float(name, value, count)
    if not np.isfinite(v):  # an int past float64's range reads as inf: say which it was
        got = "an int beyond float64's range" if isinstance(value, int) else v
        raise ValueError(f"{name}: the schedule returned {got} at count {count}")
    if v < low:
        raise ValueError(f"{name}: the schedule returned {v} at count {count}, below "
                         f"{low}; a learning rate must be >= {low}")
    return v


def needs_params(name: str, params: Tree) -> None:
    """A transform that reads the params refuses ``update(state, grads)`` without them."""
    if params is None:
        raise ValueError(f"{name}.update: needs the params; call "
                         f"update(state, grads, params), got params=None")


def same_trees(name: str, a: Tree, b: Tree, names: tuple[str, str],
               shapes: bool = False) -> None:
    """``tree.check_same`` prefixed with ``name``: a ValueError at the first path where
    ``a`` and ``b`` differ in structure (or, with ``shapes``, in a leaf's shape)."""
    try:  # a map building no path strings accepts matching trees in a fraction of the time
        tree.map(_nothing, a, b, shapes=shapes)
        return
    except ValueError:
        pass
    try:  # check_same decides, and names the path
        tree.check_same(a, b, names, shapes=shapes)
    except ValueError as detail:
        raise ValueError(f"{name}: {detail}") from None


def _nothing(*leaves: Any) -> None:
    return None


def walk(name: str, fn: Callable[..., Any], trees: Sequence[Tree], names: Sequence[str],
         n_out: int, shapes: int = 0) -> tuple[Tree, ...]:
    """``fn(path, *leaves)`` over trees of one structure, returning ``n_out`` trees; leaf
    shapes are free (a state leaf may be a leaf's statistics) but in ``trees[1:1 + shapes]``,
    which must have ``trees[0]``'s (params beside grads). A mismatch is a ValueError naming
    ``name`` and the first differing path, raised before ``fn`` sees any leaf."""
    for i, (other, other_name) in enumerate(zip(trees[1:], names[1:], strict=True)):
        same_trees(name, trees[0], other, (names[0], other_name), shapes=i < shapes)
    columns = [tree.leaves(t) for t in trees[1:]]
    outs = [fn(path, x, *xs) for (path, x), *xs
            in zip(tree.leaves_with_path(trees[0]), *columns, strict=True)]
    treedef = tree.structure(trees[0])
    return tuple(tree.unflatten(treedef, [o[i] for o in outs]) for i in range(n_out))


def real_param(p: Any) -> Any:
    """``p`` as an array if it is real floating point, else a bare TypeError, which
    ``leafwise`` turns into one naming the leaf (a complex or integer param read by a step,
    an ndarray subclass, another library's array)."""
    if type(p) is not np.ndarray and odd_kind(p):
        raise TypeError("a param of an ndarray subclass or another library")
    a = np.asarray(p)
    if a.dtype.kind != "f":
        raise TypeError("a param that is not real floating point")
    return a


def param_leaf(where: str, path: str, p: Any) -> Any:
    """``p`` as an array if it is real floating point, else a TypeError naming ``where``
    and ``params{path}``."""
    if type(p) is not np.ndarray:
        odd = subclass_error(where, f"params{path}", p)
        if odd is not None:
            raise odd
    a = np.asarray(p)
    if a.dtype.kind != "f":
        raise param_dtype_error(where, path, a.dtype)
    return a


def real_leaf(name: str, what: str, path: str, g: Any) -> Any:
    """``g`` as an array, or ``dtype_error`` naming ``name``, ``what`` and ``path``."""
    try:
        real_grad(g)
    except TypeError:
        raise (subclass_error(name, f"{what}{path}", g)
               or dtype_error(name, what, path, np.asarray(g).dtype)) from None
    return np.asarray(g)


def real_grads(where: str, grads: Tree) -> list[Any]:
    """The leaves of ``grads`` as arrays; a TypeError naming ``where`` and the leaf for one
    that is not real floating point."""
    return [real_leaf(where, "grads", path, g) for path, g in tree.leaves_with_path(grads)]


def check_grads(where: str, grads: Tree, params: Tree, what: str = "grads") -> None:
    """Errors naming ``where`` (``"<name>.update"``) for no params, ``grads`` of another
    structure or leaf shapes than the params', a grads leaf or a param that is not real
    floating point. A walk over the leaves, no copy: the line searches check every trial's
    grads with it (raveling them, as ``_linesearch.flat_grads`` does, copies every entry)."""
    if params is None:
        needs_params(where.removesuffix(".update"), params)
    same_trees(where, params, grads, ("params", what), shapes=True)
    for path, leaf in tree.leaves_with_path(grads):
        real_leaf(where, what, path, leaf)
    odd = tree.odd_leaf(params, "f")
    if odd is not None:
        raise param_dtype_error(where, *odd)


def state_float(where: str, field: str, value: Any) -> np.floating[Any]:
    """A scalar float field of a state (a step or distance estimate, a scale, a best loss)
    as a NumPy float scalar of its own dtype (a Python float as float64), or a TypeError
    naming ``where`` and ``field``: a state built or edited by hand may hold anything."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0 and value.dtype.kind == "f":
            return value[()]  # type: ignore[return-value]  # 0-d, kind "f": a NumPy float
    elif isinstance(value, np.floating):
        return value
    elif isinstance(value, float):
        return np.float64(value)
    kind = type(value).__name__
    if isinstance(value, np.ndarray):
        kind = f"{kind} of shape {value.shape} and dtype {value.dtype}"
    shown = kind if isinstance(value, np.ndarray) and value.size > 8 else f"{value!r} ({kind})"
    raise TypeError(f"{where}: the state's {field} must be a 0-d float (a NumPy float or a "
                    f"0-d float array), got {shown}; pass the state made by this "
                    f"optimizer's init")


def read_loss(where: str, need: str, value: Any, fix: str) -> float:
    """``loss_float(value)``, else a TypeError naming ``where``, saying what was ``need``ed
    (``value (the loss) must be a real number``) and what came, and ending with ``fix``."""
    v = loss_float(value)
    if v is None:
        got = number(value)
        shown_ = (f"an array of shape {got.shape}" if isinstance(got, np.ndarray)
                  else f"{value!r:.60} ({type(value).__name__})")
        raise TypeError(f"{where}: {need}, got {shown_}; {fix}")
    return v


def needed_loss(name: str, value: Any) -> float:
    """The loss as a Python float (NaN and inf allowed: they never count as improvements,
    as in optax), or an error naming ``name``."""
    if value is None:
        raise TypeError(f"{name}: needs the loss: call update(state, grads, params, "
                        f"value=loss) (chain(...).update forwards value= to it)")
    return read_loss(name, "value (the loss) must be a real number", value,
                     "pass the scalar loss, e.g. value=float(loss)")


def loss_float(value: Any) -> float | None:
    """A loss given to an update (``value=``) or returned by a line search's function, as
    a Python float: a number, or a 0-d or one-entry real array; an int past float64's
    range is ±inf. None for anything else (a bool, a string, an array of several entries):
    the caller says what it needed."""
    v = number(value)
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "iuf":
        v = v.reshape(())[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                             np.floating)):
        return None
    try:
        return float(v)
    except OverflowError:  # an int past float64's range
        return math.inf if v > 0 else -math.inf
