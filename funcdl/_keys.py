"""funcdl.random's key type and the helpers its samplers share (in ``funcdl.random``
itself, ``_sampling``, ``_truncnorm``, ``_distributions``, ``_dist_gamma`` and
``_dist_discrete``, which import them from here, not from ``funcdl.random``, so that any of
them may be imported first): key checks, parameter and shape checks, the final rounding."""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import dtype_arg, int_arg, shape_arg

Key = NDArray[np.uint64]
Float64s = NDArray[np.float64]


def check_key(k: Any, where: str) -> Key:
    """``k`` if it is a key, else a TypeError naming ``where`` (a layer or function)."""
    if not (isinstance(k, np.ndarray) and k.dtype == np.uint64 and k.shape == (2,)):
        got = (f"an array of shape {k.shape} and dtype {k.dtype}" if isinstance(k, np.ndarray)
               else type(k).__name__)
        raise TypeError(
            f"{where}: expected a key made by funcdl.random.key(seed) (uint64, shape (2,)), "
            f"got {got}")
    return k


def seed_hint(k: Any) -> str | None:
    """What to do when a seed came in a key's place (``batches(7, x)``): None for another
    value (the data itself, say), whose fix the caller knows."""
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        return f"a seed is not a key; pass funcdl.random.key({k}) in its place"
    return None


_THREAD = threading.local()  # each thread's one Generator, reset at every _gen call
_ZERO_COUNTER = np.zeros(4, np.uint64)
_EMPTY_BUFFER = np.zeros(4, np.uint64)
_refcount = getattr(sys, "getrefcount", None)  # CPython's; elsewhere a new one per call


def _probe() -> int:
    """The references ``_gen`` sees on its thread's generator when nothing else holds it:
    the cache, ``_gen``'s own name for it, ``getrefcount``'s argument."""
    _THREAD.gen = np.random.Generator(np.random.Philox(key=np.zeros(2, np.uint64)))
    g = _THREAD.gen
    return _refcount(g) if _refcount is not None else 0


_FREE = _probe()


def _gen(k: Key, counter: NDArray[np.uint64] = _ZERO_COUNTER) -> np.random.Generator:
    """The Philox generator of key ``k`` at ``counter``, in the state a new
    ``Generator(Philox(key=k, counter=counter))`` starts in, so nothing is advanced.

    It is the calling thread's one Generator, its state set anew (the setter copies ``k``
    and ``counter``): a new Philox draws OS entropy for a seed the key then replaces, which
    at an RL agent's batch of 1 was most of ``split``'s and ``categorical``'s time. Each
    thread has its own; while a sampler still holds it (a draw nested in another's,
    through a user's ``__array__`` or a ``__del__``), a call gets a new Generator instead,
    so a key's numbers never change."""
    g: np.random.Generator | None = getattr(_THREAD, "gen", None)
    # held elsewhere: a sampler of this thread still draws from it, which a draw it set off
    # (a user's __array__, a __del__, a signal handler) must not reset
    if g is None or _refcount is None or _refcount(g) > _FREE:
        g = np.random.Generator(np.random.Philox(key=k, counter=counter))
        if getattr(_THREAD, "gen", None) is None:  # a thread's first call: its cache
            _THREAD.gen = g
        return g
    g.bit_generator.state = {"bit_generator": "Philox",
                             "state": {"counter": counter, "key": k},
                             "buffer": _EMPTY_BUFFER, "buffer_pos": 4, "has_uint32": 0,
                             "uinteger": 0}
    return g


def _reals(value: Any) -> NDArray[np.float64] | None:
    """``value``, a real number or an array-like of them, as float64; None for what is not
    (None, bools, strings, complex, ragged lists), which ``np.asarray(value, np.float64)``
    would turn into NaN, 1.0 or a number."""
    if isinstance(value, float):  # the common call
        return np.asarray(value, np.float64)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return np.asarray(float(value), np.float64)
        except OverflowError:  # beyond float64: infinite, which the finiteness check refuses
            return np.asarray(math.inf if value > 0 else -math.inf, np.float64)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "iuf":
        return None
    if arr.dtype.itemsize > 8:  # a longdouble beyond float64 becomes inf, refused later
        with np.errstate(over="ignore"):
            return arr.astype(np.float64)
    return arr.astype(np.float64, copy=False)


def _broadcasts(dims: tuple[int, ...], *shapes: tuple[int, ...]) -> bool:
    """Whether arrays of ``shapes`` broadcast to ``dims`` (and not beyond it)."""
    try:
        return np.broadcast_shapes(dims, *shapes) == dims
    except ValueError:
        return False


def _axis(axis: Any, ndim: int, where: str) -> int:
    """``axis`` of an array of rank ``ndim`` as a non-negative int, a negative one counting
    from the end; a TypeError or ValueError naming ``where``."""
    ax = int_arg(axis, where, "axis", minimum=None)
    if not -ndim <= ax < ndim:
        raise ValueError(f"{where}: axis {ax} is out of bounds for an array of rank {ndim}")
    return ax % ndim


def param(value: Any, name: str, where: str, *, low: float = 0.0, strict: bool = True,
          high: float = np.inf, high_ok: bool = False, least: float = 0.0) -> Float64s:
    """``value`` (a number or an array of them) as float64, every entry finite and in
    ``(low, high)`` (``[low, ...`` when not ``strict``, ``..., high]`` when ``high_ok``)
    and ``>= least``; a TypeError or ValueError naming ``where`` and ``name``."""
    x = _reals(value)
    if x is None:
        raise TypeError(f"{where}: {name} must be a number or an array of numbers, got "
                        f"{value!r}")
    with np.errstate(invalid="ignore"):
        ok = (x > low if strict else x >= low) & (x <= high if high_ok else x < high)
        if least > low:
            ok &= x >= least
    if not (ok & np.isfinite(x)).all():
        lo = f"{'>' if strict else '>='} {low:g}" + (f" (at least {least:g})" if least > low
                                                     else "")
        hi = "" if high == np.inf else f" and {'<=' if high_ok else '<'} {high:g}"
        bad = float(x[~(ok & np.isfinite(x))].ravel()[0])
        raise ValueError(f"{where}: {name} must be finite, {lo}{hi}, got {name} = {bad!r}"
                         f"{'' if x.ndim == 0 else ' (one entry)'}")
    return x


def dims_for(shape: Any, where: str, **params: tuple[int, ...]) -> tuple[int, ...]:
    """The sample shape: ``shape``, which must hold the parameters' shapes, or their
    broadcast shape when None; a ValueError naming ``where`` otherwise."""
    shapes = tuple(params.values())
    names = " and ".join(f"{n} of shape {s}" for n, s in params.items())
    if shape is None:
        try:
            return np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(f"{where}: {names} do not broadcast together") from None
    dims = shape_arg(shape, where)
    if not _broadcasts(dims, *shapes):
        raise ValueError(f"{where}: shape {dims} must hold the parameters' shapes "
                         f"(np.broadcast_shapes(shape, ...) == shape, as in JAX), got "
                         f"{names}; pass shape=None for their broadcast shape")
    return dims


def int_dtype(dtype: Any, where: str, kinds: str = "iu",
              examples: str = "np.int64") -> np.dtype[Any]:
    """An integer sample dtype: None is int64 (JAX's int with 64-bit ints on); a TypeError
    naming ``where`` and suggesting ``examples`` otherwise."""
    if dtype is None:
        return np.dtype(np.int64)
    kind = "a signed integer" if kinds == "i" else "an integer"
    return dtype_arg(dtype, where, "dtype", kinds, f"{kind} dtype such as {examples}")


def to_ints(k: Float64s, dt: np.dtype[Any], where: str, hint: str) -> NDArray[Any]:
    """Whole-number float64 samples ``k`` as ``dt``; a ValueError if one does not fit."""
    bound = 2.0 ** (8 * dt.itemsize - (dt.kind == "i"))  # exact in float64, unlike max
    if not (k < bound).all():
        raise ValueError(f"{where}: a sample is beyond {dt}'s largest value "
                         f"{np.iinfo(dt).max}; {hint}")
    return np.asarray(k.astype(dt))


def rounded(x: NDArray[Any], dt: np.dtype[Any]) -> NDArray[Any]:
    """float64 samples ``x`` rounded once to ``dt``: beyond its range they are ±inf (and
    below its subnormals 0), as in JAX, without NumPy's overflow warning."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(x.astype(dt, copy=False))
