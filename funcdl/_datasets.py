"""The synthetic classification sets of ``funcdl.data``: scikit-learn's ``make_moons``,
``make_circles`` and ``make_blobs``, and CS231n-style spirals, keyed and float32 by default.

Every set is computed in float64 and rounded once to ``dtype``, so a float32 set is its
float64 twin rounded. The points are shuffled by a permutation drawn from the key, and the
noise, when there is any, comes from another key split from it: the same key gives the
same order with and without noise (the noisy set is the noiseless one plus the noise).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from funcdl import random
from funcdl._args import (
    FLOAT_MAX,
    INTP_MAX,
    array_arg,
    float_dtype_arg,
    int_arg,
    is_int,
    number,
    real_arg,
)
from funcdl._keys import _axis
from funcdl.random import Key

Points = tuple[NDArray[Any], NDArray[np.int64]]
P = ParamSpec("P")
R = TypeVar("R")


def maker(where: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A data set maker ``fn(key, n, ...)`` whose call that does not fit its parameters
    (``moons(400)``, the key left out; an unknown keyword) is a TypeError naming ``where``,
    the parameters and what came, not Python's ``moons() missing 1 required positional
    argument: 'n'``."""
    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                sig.bind(*args, **kwargs)
            except TypeError as err:
                raise TypeError(_misfit(where, sig, args, kwargs, err)) from None
            return fn(*args, **kwargs)
        return call
    return wrap


def _misfit(where: str, sig: inspect.Signature, args: tuple[Any, ...],
            kwargs: dict[str, Any], err: TypeError) -> str:
    def show(v: Any) -> str:
        if isinstance(v, np.ndarray):
            return f"<{v.dtype} array of shape {v.shape}>"
        return v.__name__ if isinstance(v, type) else f"{v!r:.40}"

    want: list[str] = []
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in want:
            want.append("*")
        want.append(p.name if p.default is p.empty else f"{p.name}={show(p.default)}")
    got = ", ".join([*map(show, args), *(f"{k}={show(v)}" for k, v in kwargs.items())])
    n = kwargs.get("n", next((a for a in args if is_int(number(a))), 400))
    first = ("; the key comes first" if args and not isinstance(args[0], np.ndarray)
             else "")
    return (f"{where}: expected {where}({', '.join(want)}), key from "
            f"funcdl.random.key(seed) and n the number of points; got {where}({got}): {err}"
            f"{first}: pass e.g. {where}(funcdl.random.key(0), {n})")


def _size(n: Any, where: str) -> int:
    """``n`` as a positive int that an array of points can hold."""
    size = int_arg(n, where, "n (the number of points)", 1)
    if size > INTP_MAX // 16:  # two float64 coordinates a point
        raise ValueError(f"{where}: n={size} is more than an array can hold "
                         f"({INTP_MAX // 16:.3g} at most); pass a smaller n")
    return size


def _spread(value: Any, where: str, what: str, dt: np.dtype[Any]) -> float:
    """A standard deviation ``>= 0``, small enough that no draw leaves ``dt``'s range (a
    thousand standard deviations fit)."""
    return real_arg(value, where, what, fix=f"; pass a float such as {what.split('[')[0]}=0.1",
                low=0.0, high=FLOAT_MAX[dt] / 1e3)


def _start(where: str, key: Any, n: Any, noise: Any,
           dtype: DTypeLike) -> tuple[Key, int, float, np.dtype[Any]]:
    key = random.check_key(key, where)  # first: moons(n, key) is named as a bad key
    size = _size(n, where)
    dt = float_dtype_arg(dtype, where)
    return key, size, _spread(noise, where, "noise", dt), dt


def _finish(key: Key, x: NDArray[np.float64], y: NDArray[Any], scale: Any,
            dt: np.dtype[Any]) -> Points:
    """The points shuffled by the key, ``scale`` times standard normal noise added (a
    number, or one per point as a column), rounded to ``dt``; labels int64."""
    k_order, k_noise = random.split(key, 2)
    order = random.permutation(k_order, len(x))
    x, y = x[order], y[order]
    scale = np.asarray(scale, np.float64)
    if scale.ndim:
        scale = scale[order]
    if np.any(scale):
        x = x + scale * random.normal(k_noise, x.shape, np.float64)
    return x.astype(dt), y.astype(np.int64, copy=False)


def _two(outer: NDArray[np.float64], inner: NDArray[np.float64]) -> Any:
    """Points of class 0 then class 1, and their labels."""
    return np.concatenate([outer, inner]), np.repeat([0, 1], [len(outer), len(inner)])


@maker("data.moons")
def moons(key: Key, n: int, noise: float = 0.0, dtype: DTypeLike = np.float32) -> Points:
    """Two interleaving half circles, scikit-learn's ``make_moons``, shuffled by ``key``.

    Returns ``(x, y)``: ``x`` of shape ``(n, 2)`` and ``dtype``, ``y`` of shape ``(n,)``,
    int64. Class 0 has ``n // 2`` points ``(cos t, sin t)``, the upper half of the unit circle
    about (0, 0); class 1 the other ``n - n // 2``, ``(1 - cos t, 0.5 - sin t)``, the lower
    half of the unit circle about (1, 0.5); ``t`` runs evenly over ``[0, pi]``, both ends
    included (``np.linspace(0, pi, m)``). ``noise`` is the standard deviation of the
    Gaussian noise added to every coordinate (``random.normal``).
    """
    key, size, sd, dt = _start("data.moons", key, n, noise, dtype)
    t_out, t_in = np.linspace(0, np.pi, size // 2), np.linspace(0, np.pi, size - size // 2)
    # 1 - sin t - 0.5 as make_moons rounds it: the same points, bit for bit
    x, y = _two(np.stack([np.cos(t_out), np.sin(t_out)], 1),
                np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], 1))
    return _finish(key, x, y, sd, dt)


@maker("data.circles")
def circles(key: Key, n: int, noise: float = 0.0, factor: float = 0.8,
            dtype: DTypeLike = np.float32) -> Points:
    """Two concentric circles, scikit-learn's ``make_circles``, shuffled by ``key``.

    Returns ``(x, y)`` as ``moons``. Class 0 has ``n // 2`` points ``(cos t, sin t)`` on the
    unit circle, class 1 the other ``n - n // 2``, ``factor (cos t, sin t)``; ``t`` runs
    evenly over ``[0, 2 pi)`` (``np.linspace(0, 2 pi, m, endpoint=False)``). ``factor`` is in
    (0, 1) (make_circles also takes 0, every inner point at the origin). ``noise`` is
    the standard deviation of the Gaussian noise added to every coordinate.
    """
    key, size, sd, dt = _start("data.circles", key, n, noise, dtype)
    f = real_arg(factor, "data.circles", "factor", fix="; pass the inner circle's radius, e.g. "
             "factor=0.5", low=0.0, high=1.0, open_low=True, open_high=True)
    t_out = np.linspace(0, 2 * np.pi, size // 2, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, size - size // 2, endpoint=False)
    x, y = _two(np.stack([np.cos(t_out), np.sin(t_out)], 1),
                np.stack([np.cos(t_in) * f, np.sin(t_in) * f], 1))
    return _finish(key, x, y, sd, dt)


def _split_evenly(n: int, k: int) -> NDArray[np.int64]:
    """``n`` points over ``k`` classes as make_blobs splits them: ``n // k`` each, one
    more for each of the first ``n % k``."""
    return np.full(k, n // k, np.int64) + (np.arange(k) < n % k)


@maker("data.spirals")
def spirals(key: Key, n: int, classes: int = 2, noise: float = 0.0, turns: float = 1.0,
            dtype: DTypeLike = np.float32) -> Points:
    """``classes`` interleaved spiral arms, CS231n's spiral data, shuffled by ``key``.

    Returns ``(x, y)`` as ``moons``. Class ``j`` has ``m_j`` points (``n // classes``, one
    more for the first ``n % classes`` classes), point ``i = 0 .. m_j - 1`` at radius
    ``r = (i + 1) / m_j`` and angle ``theta = 2 pi (turns r + j / classes)``:
    ``x = r (cos theta, sin theta)``. The radii grow from near 0 to 1 along each arm, the
    arm turning ``turns`` times about the origin (a negative ``turns`` turns clockwise),
    and the arms are rotated copies, ``2 pi / classes`` apart. ``noise`` is the standard
    deviation of the Gaussian noise added to every coordinate. (CS231n's arms start at
    ``r = 0``, span 4 radians, start 4 radians apart and get noise 0.2 on the angle.)
    """
    where = "data.spirals"
    key, size, sd, dt = _start(where, key, n, noise, dtype)
    k = int_arg(classes, where, "classes", 1)
    if k > size:  # a class without points: its label would never appear
        raise ValueError(f"{where}: classes={k} needs n >= {k} (a point per class), got "
                         f"n={size}; pass a larger n or fewer classes")
    tau = real_arg(turns, where, "turns", fix="; pass the turns of each arm, e.g. turns=1.0")
    counts = _split_evenly(size, k)
    y = np.repeat(np.arange(k), counts)
    first = np.cumsum(counts) - counts  # index of each class's first point
    r = (np.arange(size) - first[y] + 1) / counts[y]
    theta = 2 * np.pi * (tau * r + y / k)
    return _finish(key, r[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1), y, sd, dt)


def _pair(box: Any, where: str, dt: np.dtype[Any]) -> tuple[float, float]:
    """``box`` as two finite bounds ``low <= high`` within a thousandth of ``dt``'s range."""
    b = box if isinstance(box, np.ndarray) else np.asarray(box, dtype=object)
    if b.shape != (2,):
        raise ValueError(f"{where}: box must be two bounds (low, high) for the centres' "
                         f"coordinates, got {box!r:.80}; pass e.g. box=(-10, 10)")
    top = FLOAT_MAX[dt] / 1e3
    low, high = (real_arg(v, where, f"box[{i}]", low=-top, high=top) for i, v in enumerate(b))
    if low > high:
        raise ValueError(f"{where}: box must be (low, high) with low <= high, got {box!r}; "
                         f"pass box=({high:g}, {low:g})")
    return low, high


def _centres(centers: Any, dim: Any, key: Key, where: str, box: Any,
             dt: np.dtype[Any]) -> NDArray[np.float64]:
    """The centres, (k, dim) float64: given, or ``k`` drawn uniform in ``box``."""
    d = None if dim is None else int_arg(dim, where, "dim", 1)
    if is_int(number(centers)) and not isinstance(centers, bool):
        k = int_arg(centers, where, "centers (a number of centres)", 1)
        low, high = _pair(box, where, dt)
        if k * (d or 2) > INTP_MAX // 8:
            raise ValueError(f"{where}: centers={k} of dim={d or 2} is more than an array "
                             f"can hold; pass fewer centres")
        return random.uniform(key, (k, d or 2), low, high, np.float64)
    try:
        c = np.asarray(centers) if not isinstance(centers, np.ndarray) else centers
    except ValueError:  # ragged
        c = np.asarray(None)
    if c.ndim == 0:
        raise TypeError(f"{where}: centers must be an int (a number of centres) or an array "
                        f"of shape (k, dim), got {centers!r:.80}; pass e.g. centers=3")
    if c.dtype.kind not in "iuf" or c.ndim != 2 or 0 in c.shape:
        got = (f"shape {c.shape} and dtype {c.dtype}" if c.dtype.kind in "iufb"
               else f"{centers!r:.80}")
        raise (ValueError if c.dtype.kind in "iuf" else TypeError)(
            f"{where}: centers must be a number of centres or an array of them of shape "
            f"(k, dim), got {got}; pass e.g. centers=3 or centers=[[0, 0], [3, 3]]")
    c = c.astype(np.float64)
    top = FLOAT_MAX[dt] / 1e3
    if not (np.abs(c) <= top).all():  # NaN fails too
        raise ValueError(f"{where}: centers must be finite and within +-{top:.3g} for "
                         f"{dt} points, got {centers!r:.80}")
    if d is not None and d != c.shape[1]:
        raise ValueError(f"{where}: dim={d} but the centres have {c.shape[1]} coordinates; "
                         f"leave dim out (it is the centres' width)")
    return c


@maker("data.blobs")
def blobs(key: Key, n: int, centers: int | ArrayLike = 3, std: float | ArrayLike = 1.0,
          dim: int | None = None, box: tuple[float, float] = (-10.0, 10.0),
          dtype: DTypeLike = np.float32) -> Points:
    """Isotropic Gaussian blobs, scikit-learn's ``make_blobs``, shuffled by ``key``.

    Returns ``(x, y)``: ``x`` of shape ``(n, dim)`` and ``dtype``, ``y`` of shape ``(n,)``,
    int64, the centre's index. ``centers``: a number ``k`` of centres, drawn uniform in
    ``box`` (per coordinate, ``dim`` coordinates, 2 by default), or the centres themselves
    as a ``(k, dim)`` array (``dim`` is then their width). Centre ``j`` gets ``n // k``
    points, one more for the first ``n % k`` centres (as make_blobs), each
    ``centre_j + std_j z`` with ``z`` standard normal; ``std`` is one number or one per
    centre.
    """
    where = "data.blobs"
    key = random.check_key(key, where)
    size = _size(n, where)
    dt = float_dtype_arg(dtype, where)
    k_centres, k_points = random.split(key, 2)
    c = _centres(centers, dim, k_centres, where, box, dt)
    k = len(c)
    if size * c.shape[1] > INTP_MAX // 8:
        raise ValueError(f"{where}: n={size} points of dim={c.shape[1]} is more than an "
                         f"array can hold; pass a smaller n")
    s = _stds(std, k, where, dt)
    y = np.repeat(np.arange(k), _split_evenly(size, k))
    return _finish(k_points, c[y], y, s[y][:, None], dt)


def _stds(std: Any, k: int, where: str, dt: np.dtype[Any]) -> NDArray[np.float64]:
    """``std`` as k standard deviations: one number for all, or one per centre."""
    if isinstance(std, (list, tuple, np.ndarray)) and np.ndim(std) == 1:
        if len(std) != k:
            raise ValueError(f"{where}: std must be one number or one per centre ({k}), got "
                             f"{len(std)} values; pass e.g. std=1.0")
        return np.array([_spread(v, where, f"std[{i}]", dt) for i, v in enumerate(std)])
    return np.full(k, _spread(std, where, "std", dt))


def one_hot(labels: ArrayLike, num_classes: int, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Integer ``labels`` of any shape ``S`` as one-hot rows, shape ``S + (num_classes,)``:
    ``out[..., c] = (labels == c)``, as ``jax.nn.one_hot``: a label outside
    ``[0, num_classes)``, negative ones included, gives a row of zeros. ``dtype`` float32
    (the default) or float64, or, as jax's, an integer or bool dtype (1 and 0, True and
    False). Labels must be integers (a float or bool label is refused).
    """
    where = "data.one_hot"
    lab = array_arg(labels, where, "labels")
    if lab.dtype.kind not in "iu" and not (lab.size == 0 and lab.dtype.kind == "f"):
        raise TypeError(f"{where}: labels must be integer class indices, got dtype "
                        f"{lab.dtype}; pass labels.astype(np.int64) if they hold whole "
                        f"numbers")
    k = int_arg(num_classes, where, "num_classes", 1)
    dt = _one_hot_dtype(dtype, where)
    if lab.size * k > INTP_MAX // dt.itemsize:
        raise ValueError(f"{where}: {lab.size} labels of {k} classes are more entries than an "
                         f"array can hold; pass fewer labels or classes")
    return np.asarray(lab[..., None] == np.arange(k)).astype(dt)


def _one_hot_dtype(dtype: Any, where: str) -> np.dtype[Any]:
    """float32 (for None too, as JAX), float64, or a native integer or bool dtype; float16
    and longdouble are refused as everywhere in funcdl, and so is another byte order (an
    array in it would leave NumPy's fast paths)."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt: np.dtype[Any] | None = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is not None and (dt in FLOAT_MAX or (dt.kind in "biu" and dt.isnative)):
        return dt
    raise TypeError(f"{where}: dtype must be float32, float64, an integer or bool dtype, got "
                    f"{dtype!r}; pass e.g. np.float32")


def moments(x: ArrayLike, axis: int = 0) -> tuple[NDArray[Any], NDArray[Any]]:
    """The mean and standard deviation of ``x`` along ``axis`` (keeping it, length 1), for
    ``(x - mean) / std``; the std of a constant feature is returned as 1, so it standardises
    to 0. Constant as scikit-learn's StandardScaler: variance ``var <= n eps var +
    (n mean eps)^2`` (n entries, eps of float64; within the rounding error of the two-pass
    variance), so a column equal but for rounding, as [.1, .1, .1 + 2.8e-17], counts too.
    Population std (``ddof=0``), computed in float64 and returned in ``x``'s dtype::

        mean, std = data.moments(x_train)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    """
    where = "data.moments"
    v = array_arg(x, where, "x")
    if v.dtype not in FLOAT_MAX:
        raise TypeError(f"{where}: x must be float32 or float64, got dtype {v.dtype}; pass "
                        f"x.astype(np.float32)")
    ax = _axis(axis, v.ndim, where)  # its type and bounds, checked once, made >= 0
    if v.shape[ax] == 0:
        raise ValueError(f"{where}: axis {ax} of x must have at least one entry, got x of "
                         f"shape {v.shape}; pass axis=0 for examples along rows")
    if not np.isfinite(v).all():
        raise ValueError(f"{where}: x holds NaN or inf; drop or impute them first")
    # in units of a power of two near the largest magnitude, so that no square or sum
    # overflows; exact (ldexp), so the constant test below reads the values as given
    _, e = np.frexp(np.abs(v).max(axis=ax, keepdims=True).astype(np.float64))
    u = np.ldexp(v.astype(np.float64), -e)
    mean = u.mean(axis=ax, keepdims=True)
    var = np.square(u - mean).mean(axis=ax, keepdims=True)
    n, eps = v.shape[ax], np.finfo(np.float64).eps  # homogeneous: holds in any unit
    constant = var <= n * eps * var + np.square(n * mean * eps)
    std = np.ldexp(np.sqrt(var), e)
    std[constant] = 1.0  # a constant standardises to 0
    std = std.astype(v.dtype)
    std[std == 0] = 1  # below float32's least subnormal: as constant, not a division by 0
    return np.ldexp(mean, e).astype(v.dtype), std
