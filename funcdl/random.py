"""Explicit random keys: no global seed, the same numbers on every machine.

A key is a ``uint64`` array of shape ``(2,)``, the 128-bit key of a Philox counter-based
generator (NumPy's ``Philox`` bit generator, whose output is fixed by the key alone and
does not depend on the platform). Every sampler takes a key first and never advances
anything: calling it twice with one key gives the same numbers. Use ``split`` to get
independent keys, ``fold_in`` to derive a key from data (an epoch, a rank).

NumPy documents that a ``Generator``'s output for one seed may change between NumPy
versions; within one NumPy version the stream is identical across machines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl._args import int_arg

__all__ = ["Key", "bernoulli", "check_key", "fold_in", "key", "normal", "permutation", "split",
           "uniform"]

Key = NDArray[np.uint64]
_MASK64 = (1 << 64) - 1


def key(seed: int) -> Key:
    """A key from a non-negative integer seed (up to 128 bits)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"random.key: seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 1 << 128:
        raise ValueError(f"random.key: seed must be in [0, 2**128), got {seed}")
    return np.array([seed & _MASK64, seed >> 64], dtype=np.uint64)


def check_key(k: Any, where: str) -> Key:
    """``k`` if it is a key, else a TypeError naming ``where`` (a layer or function)."""
    if not (isinstance(k, np.ndarray) and k.dtype == np.uint64 and k.shape == (2,)):
        got = (f"an array of shape {k.shape} and dtype {k.dtype}" if isinstance(k, np.ndarray)
               else type(k).__name__)
        raise TypeError(
            f"{where}: expected a key made by funcdl.random.key(seed) (uint64, shape (2,)), "
            f"got {got}")
    return k


def _check(k: Any, fn: str) -> Key:
    return check_key(k, f"random.{fn}")


def _gen(k: Key) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=k))


def split(key: Key, num: int = 2) -> tuple[Key, ...]:
    """``num`` new independent keys derived from ``key``."""
    num = int_arg(num, "random.split", "num")
    bits = _gen(_check(key, "split")).integers(0, _MASK64, size=(num, 2), dtype=np.uint64,
                                               endpoint=True)
    return tuple(bits)


def fold_in(key: Key, data: int) -> Key:
    """A new key that depends on ``key`` and the integer ``data`` (e.g. an epoch number)."""
    if isinstance(data, bool) or not isinstance(data, (int, np.integer)):
        raise TypeError(f"random.fold_in: data must be an int, got {data!r}")
    d = int(data)
    if not 0 <= d <= _MASK64:  # not wrapped: 2**64 would be 0's stream, -1 2**64 - 1's
        raise ValueError(f"random.fold_in: data must be in [0, 2**64), got {d}")
    # Philox's counter is its other 256-bit input: placing data there gives a stream per value.
    bg = np.random.Philox(key=_check(key, "fold_in"), counter=np.array([d, 1, 0, 0], np.uint64))
    return np.random.Generator(bg).integers(0, _MASK64, size=2, dtype=np.uint64, endpoint=True)


def _shape(shape: Any, fn: str = "sample") -> tuple[int, ...]:
    dims = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    return tuple(int_arg(d, f"random.{fn}", "every size in shape") for d in dims)


def _float(dtype: DTypeLike, fn: str) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"random.{fn}: dtype must be float32 or float64, got {dt}")
    return dt


def normal(key: Key, shape: Any = (), dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Standard normal samples of the given shape and dtype."""
    dt = _float(dtype, "normal")
    return _gen(_check(key, "normal")).standard_normal(_shape(shape, "normal"), dtype=dt)


def uniform(key: Key, shape: Any = (), low: Any = 0.0, high: Any = 1.0,
            dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Uniform samples in ``[low, high)``; ``low`` and ``high`` are numbers or arrays that
    broadcast to ``shape`` (as ``jax.random.uniform``'s ``minval``, ``maxval``)."""
    dt = _float(dtype, "uniform")
    dims = _shape(shape, "uniform")
    try:
        lo64, hi64 = np.asarray(low, np.float64), np.asarray(high, np.float64)
    except (TypeError, ValueError):  # as bernoulli's p
        raise TypeError(f"random.uniform: low and high must be numbers or arrays, got "
                        f"{low!r} and {high!r}") from None
    if not _broadcasts(dims, lo64.shape, hi64.shape):
        raise ValueError(f"random.uniform: low and high must broadcast to shape {dims}, got "
                         f"{low!r} and {high!r}")
    if np.isnan(lo64 + hi64).any():
        raise ValueError(f"random.uniform: low and high must not be NaN, got {low!r} and "
                         f"{high!r}")
    if not np.all(lo64 <= hi64):
        raise ValueError(f"random.uniform: needs low <= high, got low={low}, high={high}")
    u = _gen(_check(key, "uniform")).random(dims, dtype=dt)
    if not (lo64.ndim or hi64.ndim) and low == 0.0 and high == 1.0:
        return u
    lo, hi = lo64.astype(dt), hi64.astype(dt)
    out = np.asarray(u * (hi64 - lo64).astype(dt) + lo)  # the span rounded once; 0-d too
    # low + u (high - low) can round up to high itself; keep the interval half-open.
    np.minimum(out, np.nextafter(hi, lo), out=out)
    return out


def _broadcasts(dims: tuple[int, ...], *shapes: tuple[int, ...]) -> bool:
    """Whether arrays of ``shapes`` broadcast to ``dims`` (and not beyond it)."""
    try:
        return np.broadcast_shapes(dims, *shapes) == dims
    except ValueError:
        return False


def bernoulli(key: Key, p: Any = 0.5, shape: Any = None) -> NDArray[np.bool_]:
    """Booleans, each True with probability ``p`` (a number, or an array broadcasting to
    ``shape``); ``shape`` defaults to ``p``'s, as in ``jax.random.bernoulli``."""
    try:
        prob = np.asarray(p, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"random.bernoulli: p must be a number or an array, got {p!r}") \
            from None
    if not np.all((prob >= 0.0) & (prob <= 1.0)):
        raise ValueError(f"random.bernoulli: p must be in [0, 1], got {p}")
    dims = prob.shape if shape is None else _shape(shape, "bernoulli")
    if not _broadcasts(dims, prob.shape):
        raise ValueError(f"random.bernoulli: p of shape {prob.shape} does not broadcast to "
                         f"shape {dims}")
    out: NDArray[np.bool_] = uniform(check_key(key, "random.bernoulli"), dims,
                                     dtype=np.float64) < prob
    return out


def permutation(key: Key, n: int) -> NDArray[np.int64]:
    """A random permutation of ``range(n)``."""
    n = int_arg(n, "random.permutation", "n")
    return _gen(_check(key, "permutation")).permutation(n).astype(np.int64, copy=False)
