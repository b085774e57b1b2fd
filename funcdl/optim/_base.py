"""The optimizer record, ``apply_updates``, and the helpers every transform shares (state
type check, one-pass leaf-wise maps, step counts). ``chain`` / ``named_chain``:
``_chain``; argument checks: ``_checks``; the errors naming a refused leaf:
``_leaf_errors``."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Protocol

from funcdl import _treeflat, tree
from funcdl._args import F32, F64, is_int, native_float, number, shown
from funcdl.optim._fused import by_leaf, fused_flat, fused_walked
from funcdl.optim._leaf_errors import odd_kind, refused_leaf

__all__ = [
    "Count",
    "EmptyState",
    "GradientTransformation",
    "ScalarOrSchedule",
    "Schedule",
    "TransformInit",
    "TransformUpdate",
    "apply_updates",
]

Tree = Any
# A step count: an int64 NumPy scalar, or the 0-d int64 array funcdl.io may give back.
# A state's step count: funcdl's states hold an np.int64; a Python int (a state built or
# resumed by hand) is read alike.
Count = int | np.integer[Any] | NDArray[np.integer[Any]]
# A schedule is called with a Python int by funcdl, and accepts a state's count: typed Any
# in, so that a user's ``def schedule(count: int) -> float`` is one.
Schedule = Callable[[Any], float]
ScalarOrSchedule = float | np.floating[Any] | Schedule


class TransformInit(Protocol):
    """``state = init(params)``."""

    def __call__(self, params: Tree, /) -> Any: ...


class TransformUpdate(Protocol):
    """``updates, state = update(state, grads, params=None, **extra)``: ``params`` by
    position or keyword, and the keyword-only arguments some transforms take (``value=``,
    ``grad=``, ...), which chains forward. Typed as any arguments (mypy reads ``*Any,
    **Any`` as ``...``), so that a user's update of either form is one, as optax's
    ``GradientTransformationExtraArgs``."""

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Tree, Any]: ...


class GradientTransformation(NamedTuple):
    """A pure optimizer, or one stage of one: ``state = init(params)``;
    ``updates, state = update(state, grads, params)``."""

    init: TransformInit
    update: TransformUpdate


class EmptyState(NamedTuple):
    """The state of a transform that keeps none (``scale``, ``clip_by_global_norm``...)."""


# ---------------------------------------------------------------------------- helpers

def zero_count() -> np.int64:
    """The count before the first update. An int64 NumPy scalar, so that save / load keeps it."""
    return np.int64(0)


def next_count(count: int) -> np.int64:
    """The count after ``count`` (one ``read_count`` gave), as the states hold it."""
    return np.int64(count + 1)


def read_count(name: str, count: Any) -> int:
    """The state's ``count`` as an int >= 0, or an error naming ``name``: a state built or
    edited by hand may hold anything there (None, '3', 2.5, -1: Adam's bias correction
    would divide by zero). A whole float is a count (PyTorch keeps its ``step`` as a float
    tensor, and a state mapped through ``np.asarray(a, np.float64)`` holds one)."""
    if type(count) is np.int64:  # the common case: what zero_count and next_count make
        c: Any = int(count)
    else:  # a Python int, another NumPy integer, funcdl.io's 0-d array, a whole float
        c = number(count)
        if isinstance(c, (float, np.floating)) and math.isfinite(c) and float(c).is_integer():
            c = int(c)
        if not is_int(c):
            raise TypeError(f"{name}: the state's count (the number of updates applied) must "
                            f"be an int >= 0, got {count!r} ({type(count).__name__}); pass "
                            f"the state made by this optimizer's init")
    if not 0 <= c < COUNT_END:  # the next count is an int64 too
        raise ValueError(f"{name}: the state's count (the number of updates applied) must be "
                         f"in [0, 2**63 - 1), got {shown(c)}; pass the state made by this "
                         f"optimizer's init")
    return int(c)


COUNT_END = 2**63 - 1  # counts stay below it, so that the next one is an int64 too


def empty_init() -> Callable[[Tree], EmptyState]:
    """A fresh ``init`` for a transform that keeps no state (one each, for ``transform``)."""
    def init(params: Tree) -> EmptyState:
        del params
        return EmptyState()
    return init


def transform(name: str, init: Any, update: Any) -> GradientTransformation:
    """``GradientTransformation(init, update)``, its functions renamed ``name.init`` and
    ``name.update`` (functions made for this transform alone), so that Python's own errors
    name the optimizer: ``adam.update() missing 1 required positional argument: 'grads'``."""
    init.__qualname__, update.__qualname__ = f"{name}.init", f"{name}.update"
    return GradientTransformation(init, update)


# A stage whose updates are new arrays nothing else holds (not the grads, params or state:
# scale_by_adam's), and a stage's variant that may write into such updates: a chain runs the
# variant after such a stage, and makes one param-sized tree fewer per step (adam's update
# of one (1000, 1000) leaf peaks at 11.4 MiB, not 15.3: benchmarks/pullback_micro.py).
# Keyed weakly by the update functions, which are made per transform.
_FRESH: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
_IN_PLACE: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
    weakref.WeakKeyDictionary())


def fresh(t: GradientTransformation) -> GradientTransformation:
    """``t``, marked as returning updates that are new arrays nothing else holds."""
    _FRESH.add(t.update)
    return t


def with_in_place(t: GradientTransformation, update: Callable[..., Any]
                  ) -> GradientTransformation:
    """``t``, with ``update``: ``t.update``'s twin (the same updates, bit for bit, and state)
    that may write into the grads it is given, which must be fresh."""
    update.__qualname__ = getattr(t.update, "__qualname__", update.__qualname__)
    _IN_PLACE[t.update] = update
    return t


def stage_updates(updates: Sequence[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The update functions a chain of stages runs: a stage's in-place twin where the stage
    before it returns fresh updates (and then its own are fresh)."""
    out: list[Callable[..., Any]] = []
    for f in updates:
        fresh_before = out and _registered(_FRESH, out[-1])
        twin = _IN_PLACE.get(f) if fresh_before and _registered(_IN_PLACE, f) else None
        out.append(twin or f)
        if twin is not None:
            _FRESH.add(twin)
    return out


def _registered(where: Any, f: Callable[..., Any]) -> bool:
    """Whether ``f`` is in ``where``; a user's callable that cannot be hashed or weakly
    referenced (a dataclass's instance) is in none."""
    try:
        return f in where
    except TypeError:
        return False


def check_state(name: str, state: Any, cls: type, method: str = "update") -> None:
    """Fail loudly on a swapped call such as ``update(grads, state)``."""
    if not isinstance(state, cls):
        if type(state).__name__ == cls.__name__:  # a stand-in from io.load without like=
            article = "an" if cls.__name__[:1] in "AEIOU" else "a"
            raise TypeError(
                f"{name}.{method}: got {article} {cls.__name__} that is not funcdl's own (io.load "
                f"without like= rebuilds NamedTuples as stand-ins): load the state with "
                f"funcdl.io.load(path, like=opt.init(params))")
        if type(state).__module__.startswith("funcdl.optim"):  # not swapped: another's
            raise TypeError(
                f"{name}.{method}: got the state of another optimizer or transform "
                f"({type(state).__name__}) where {name}'s {cls.__name__} belongs; pass the "
                f"state made by this optimizer's init")
        raise TypeError(
            f"{name}.{method}: the first argument must be the optimizer state returned by "
            f"init (call {method}(state, grads, params)); got {type(state).__name__}")


def state_count(name: str, state: Any, cls: type) -> int:
    """The preamble of most updates: ``state`` checked to be ``name``'s ``cls``
    (``check_state``), then its step count as ``read_count`` reads it."""
    check_state(name, state, cls)
    return read_count(f"{name}.update", state.count)


def leafwise(name: str, fn: Callable[..., Any], trees: Sequence[Tree], names: Sequence[str],
             n_out: int = 1, elementwise: bool = False) -> tuple[Tree, ...]:
    """One traversal applying ``fn(*leaves)`` (which returns an ``n_out``-tuple, or a single
    value when ``n_out == 1``) over trees that must agree in structure and leaf shapes.

    Returns ``n_out`` trees. A mismatch raises ValueError prefixed with ``name`` and naming
    the first differing path, e.g. ``adam.update: ... at ['w']: grads has ..., state.mu has``.
    ``elementwise=True`` promises that ``fn`` treats every entry alike (Adam, momentum...):
    then small trees go through ``fn`` once, on their leaves laid end to end (``_fused``).
    Trees of plain containers and arrays are walked one by one (``_treeflat.columns``),
    others together (``tree.map_multi``).
    """
    try:
        if n_out == 1:
            return (tree.map(fn, *trees, shapes=True),)
        found = _treeflat.columns(trees)
        if found is None:  # a scalar leaf, an OrderedDict, a mismatch...: the general walk
            fused = fused_walked(fn, n_out, trees, _FUSE_BELOW) if elementwise else None
            return fused or tree.map_multi(fn, n_out, *trees, shapes=True)
        fused = fused_flat(fn, *found, _FUSE_BELOW) if elementwise else None
        return fused or by_leaf(fn, n_out, *found)
    except ValueError:
        # Only on failure: walk again to report the first differing path with good names.
        for other, other_name in zip(trees[1:], names[1:], strict=True):
            try:
                tree.check_same(trees[0], other, (names[0], other_name), shapes=True)
            except ValueError as detail:
                raise ValueError(f"{name}: {detail}") from None
        raise
    except TypeError:
        # A leaf that is not real floating point: refused by real_grad (complex, integer,
        # bool, np.matrix, masked) or by NumPy (object, str). Only now walk again, to name it.
        refused = refused_leaf(name, trees, names)
        if refused is not None:
            raise refused from None
        raise


def real_grad(g: Any) -> None:
    """Refuse (with a bare TypeError, which ``leafwise`` turns into one naming the leaf) a
    grad or update leaf that is not a real floating-point array or number: NumPy would make
    complex steps (then drop their imaginary part in ``apply_updates``) and float64 steps
    from integer grads. A float32 or float64 array passes on two identity tests (or, of
    an equal dtype of another object, as unpickled, on two equality tests)."""
    if type(g) is np.ndarray and (g.dtype is F32 or g.dtype is F64 or native_float(g.dtype)):
        return
    if odd_kind(g):
        raise TypeError("a grad of an ndarray subclass or another library")
    dtype = g.dtype if isinstance(g, (np.ndarray, np.generic)) else np.asarray(g).dtype
    if dtype.kind != "f":
        raise TypeError("a grad that is not real floating point")


# Below this many entries in all, one NumPy call per step of the math over every leaf at
# once (after copying the leaves end to end) beats one call per leaf; above it the copies
# cost more than the calls they save.
_FUSE_BELOW = 1 << 15


def _fused(fn: Callable[..., Any], n_out: int, trees: Sequence[Tree]) -> tuple[Tree, ...] | None:
    """``fn`` applied once to each tree's leaves laid end to end, each result cut back into
    views shaped as ``trees[0]``'s leaves (the same numbers: ``fn`` is elementwise). None,
    to go leaf by leaf, unless every leaf is a float32 or float64 array of one dtype and
    there are fewer than ``_FUSE_BELOW`` entries. ``leafwise``'s fused step on its own
    (``leafwise`` keeps the walk's leaves for the leaf-by-leaf way)."""
    found = _treeflat.columns(trees)
    if found is None:
        return fused_walked(fn, n_out, trees, _FUSE_BELOW)
    return fused_flat(fn, *found, _FUSE_BELOW)


def like(x: Any, ref: Any) -> Any:
    """``x`` as an array of ``ref``'s dtype: state leaves keep their dtype across updates
    (a float64 ``x`` past float32's range is inf in a float32 ``ref``'s, as a cast is in JAX
    and PyTorch)."""
    if type(x) is np.ndarray and type(ref) is np.ndarray and (x.dtype is ref.dtype
                                                              or x.dtype == ref.dtype):
        return x  # the common case, without two asarray calls
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.asarray(ref).dtype)


def owned(x: Any, ref: Any) -> Any:
    """``x`` as a new array of ``ref``'s dtype, for a state that keeps a gradient: the
    caller may refill its grads buffer in place, and ``like`` hands ``x`` itself back when
    the dtypes agree (on the leaf-by-leaf path, ``x`` is the caller's array)."""
    with np.errstate(over="ignore"):
        return np.array(x, dtype=np.asarray(ref).dtype)


def held(a: Any) -> Any:
    """``a`` made read-only: an array that a transform's new state keeps and its update
    returns too (a momentum, as optax's ``trace`` returns it), so that writing into the
    updates raises instead of changing the state (JAX's arrays cannot be written to)."""
    if type(a) is np.ndarray:
        a.flags.writeable = False
    return a


def cast_like(x: Any, ref: Any) -> Any:
    """``x`` in ``ref``'s dtype where an in-place step into ``ref`` would have cast it (same
    kind), else ``x`` as it is: the fallback of the steps that write into an array of the
    state's dtype, taken when ``ref`` is a NumPy scalar (a 0-d state). A 0-d result stays a
    NumPy scalar."""
    kind = np.result_type(ref)
    if np.can_cast(np.result_type(x), kind, "same_kind"):
        return np.asarray(x, dtype=kind)[()]
    return x


# ---------------------------------------------------------------------------- combining

def check_transforms(name: str, transforms: Sequence[Any],
                     what: Sequence[str] = ()) -> None:
    """Each of ``transforms`` a funcdl GradientTransformation, else a TypeError naming it
    (``what[i]``, or its position) and, for another library's, the two argument orders."""
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            lib = (type(t).__module__ or "").split(".")[0]
            got = (f"{lib}'s {type(t).__name__} (funcdl.optim has its own: optax's update "
                   f"takes (grads, state), funcdl's (state, grads))"
                   if hasattr(t, "init") and hasattr(t, "update") else
                   f"{type(t).__name__} (did you forget to call it, e.g. scale_by_adam()?)")
            raise TypeError(f"{name}: {what[i] if what else f'argument {i}'} must be a funcdl "
                            f"GradientTransformation, got {got}")


# ---------------------------------------------------------------------------- applying

def apply_updates(params: Tree, updates: Tree) -> Tree:
    """``p + u`` leaf-wise; each result keeps its param's dtype and kind (a 0-d array stays
    one, a NumPy scalar one, whatever the updates are; a Python float comes back a 0-d
    float64 array, as JAX's). Nothing is mutated.
    Params and updates must be real floating point: an integer or bool param is refused (a
    cast back would truncate: optax's silent 1 + 0.6 = 1), and so are complex, integer and
    bool updates (a complex one would lose its imaginary part). A float64 ``p + u`` past
    a float32 param's range is inf, as a cast is in JAX and PyTorch."""
    def add(p: Any, u: Any) -> Any:
        # `is` first, the cheapest test; == for an equal dtype of another object (unpickled)
        if (type(p) is np.ndarray and type(u) is np.ndarray
                and (u.dtype is p.dtype or u.dtype == p.dtype)
                and (p.dtype is F32 or p.dtype is F64 or native_float(p.dtype))):
            out = p + u  # the common case: updates in the params' own dtype
            return out if p.ndim else np.asarray(out)  # 0-d: + gives a scalar; keep an array
        dtype = np.asarray(p).dtype
        if dtype.kind != "f":
            raise TypeError("a param that is not real floating point")  # leafwise names it
        real_grad(u)
        with np.errstate(over="ignore"):
            new = np.asarray(p + u, dtype=dtype)
        return new[()] if isinstance(p, np.generic) else new  # a NumPy scalar stays one

    return leafwise("apply_updates", add, (params, updates), ("params", "updates"))[0]
