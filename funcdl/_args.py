"""The argument checks shared across funcdl: ints, real numbers, flags, shapes and float
dtypes."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any, TypeGuard, cast

import numpy as np
from numpy.typing import DTypeLike, NDArray


def number(value: Any) -> Any:
    """A 0-d NumPy array of numbers as its Python number (``np.array(3)`` -> ``3``), as a
    user computing a setting with NumPy may pass it; anything else unchanged."""
    if type(value) is np.ndarray and value.ndim == 0 and value.dtype.kind in "iuf":
        return value.item()
    return value


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, but an int of over 30 digits as its length:
    Python refuses to print one of more than 4,300 digits (in a tuple too, which is then
    named by its type)."""
    if isinstance(value, int) and abs(value).bit_length() > 100:
        return f"an int of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits"
    try:
        return repr(value)
    except ValueError:  # a container holding such an int
        return f"a {type(value).__name__} holding an int too long to print"


def is_int(value: Any) -> TypeGuard[int | np.integer[Any]]:
    """Whether ``value`` is a Python or NumPy integer, bools (and np.bool_) not counted."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def axis_pads(p: Any, n: int, nonneg: bool = True) -> tuple[tuple[int, int], ...] | None:
    """Explicit padding of ``n`` axes as ``n`` pairs ``(before, after)``: an int (every
    side), ``n`` ints (one per axis, both sides) or ``n`` pairs; None for any other form,
    or a negative entry when ``nonneg`` (the convolutions', pools' and data.random_crop's
    padding)."""
    def ok(v: Any) -> bool:
        return is_int(v) and (not nonneg or bool(v >= 0))

    if ok(p):
        return ((int(p), int(p)),) * n
    if not isinstance(p, (tuple, list)) or len(p) != n:
        return None
    if all(map(ok, p)):
        return tuple((int(v), int(v)) for v in p)
    if all(isinstance(q, (tuple, list)) and len(q) == 2 and ok(q[0]) and ok(q[1]) for q in p):
        return tuple((int(q[0]), int(q[1])) for q in p)
    return None


def explicit_pads(p: Any, rank: int, nonneg: bool = True
                  ) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``axis_pads`` of the two axes H, W as ``((top, bottom), (left, right))``; at rank 1
    (a 1 x L window) an int or a pair ``(left, right)`` pads W alone."""
    if rank == 1:
        w = p if is_int(p) else (p,) if isinstance(p, (tuple, list)) and len(p) == 2 else None
        got = axis_pads(w, 1, nonneg) if w is not None else None
        return None if got is None else ((0, 0), got[0])
    two = axis_pads(p, 2, nonneg)
    return None if two is None else (two[0], two[1])


def frozen(a: NDArray[Any]) -> NDArray[Any]:
    """A read-only view of ``a`` (a fresh array, or a view of one), its data's owner made
    read-only too: a cached array handed out, which ``setflags(write=True)`` on it cannot
    make writable again (its owner, through ``.base``, still could; these are private)."""
    owner = a
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    owner.flags.writeable = a.flags.writeable = False
    return a.view()


def native_float(dtype: np.dtype[Any]) -> bool:
    """float32 or float64 in this machine's byte order, NumPy's own dtype object or not (an
    array that came through pickle, as from a process pool, holds an equal copy: tested
    after ``dtype is F32 or dtype is F64``, the cheapest test, its numbers must not differ)."""
    return dtype.char in "fd" and dtype.isnative


def python_floats(x: Any) -> bool:
    """Whether ``x`` is a Python float or int, or (nested) lists or tuples starting with
    one: weakly typed, as JAX reads them, so they take the other operand's float dtype
    (float32 alone), not NumPy's float64; NumPy's float64 (a float subclass) and a list of
    float64 arrays ask for float64."""
    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    return type(x) is float or type(x) is int


def foreign_dtype(dtype: np.dtype[Any]) -> bool:
    """Whether ``dtype`` is one NumPy does not compute in: ml_dtypes' bfloat16, float8s and
    int4s (what a JAX array converts to), which NumPy files as opaque records (kind 'V')
    of a type other than np.void; funcdl refuses them as it refuses float16."""
    return dtype.kind == "V" and dtype.type is not np.void


def is_masked(x: Any) -> bool:
    """Whether ``x`` is a NumPy masked array (none exists unless numpy.ma was imported: then
    this costs a dict lookup)."""
    ma = sys.modules.get("numpy.ma")
    return ma is not None and isinstance(x, ma.MaskedArray)


def masked_error(where: str, what: str) -> ValueError:
    """The error for a NumPy masked array: ``np.asarray`` drops the mask, so its hidden
    entries would be used silently; JAX refuses one too."""
    return ValueError(f"{where}: {what} is a masked array, whose mask would be ignored and "
                      f"its hidden entries used; pass a.filled(value) to put a value at the "
                      f"masked entries, or np.asarray(a) for the data beneath")


def refuse_masked(x: Any, where: str, what: str) -> None:
    """``masked_error`` raised if ``x`` is a masked array."""
    if is_masked(x):
        raise masked_error(where, what)


def side_array(x: Any, where: str, what: str) -> NDArray[Any] | None:
    """A side input of ints or bools (lengths, a padding mask) as a plain ndarray: from a
    list or tuple, an ndarray (a subclass as its base: np.matrix), or another library's
    array (``__array__``: JAX's, torch's), read by ``array_arg`` (which refuses a masked
    one, whose mask would be dropped, and a ragged list); None for anything else."""
    if isinstance(x, (np.ndarray, list, tuple)) or hasattr(x, "__array__"):
        return array_arg(x, where, what)
    return None


def several_arrays(x: Any, where: str, what: str, hint: str = "") -> None:
    """A TypeError for a tuple holding arrays (a FanOut's or Parallel's output, a pytree
    node), which ``np.asarray`` would stack into one array with a new leading axis, silently.
    A list of arrays stays a list of rows, as NumPy reads it."""
    if isinstance(x, tuple) and any(isinstance(v, np.ndarray) for v in x):
        shapes = [np.shape(v) for v in x]
        raise TypeError(f"{where}: {what} must be one array, got a tuple of {len(x)} "
                        f"(shapes {shapes}){hint}; np.stack or np.concatenate them into one "
                        f"if that is what is meant")


def array_arg(x: Any, where: str, what: str) -> NDArray[Any]:
    """``np.asarray(x)``, or a ValueError naming ``where`` and ``what`` for a ragged list,
    which NumPy refuses in words that name neither, and a TypeError for several arrays."""
    if type(x) is np.ndarray:
        return x
    several_arrays(x, where, what)
    refuse_masked(x, where, what)
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {what} is not a rectangular array: {e}") from None


def int_arg(value: Any, where: str, what: str, minimum: int | None = 0) -> int:
    """``value`` as an int ``>= minimum`` (any int when None: an axis): a TypeError for what
    is not an int (bools included), a ValueError below ``minimum``; both name ``where``
    (``random.split``)."""
    value = number(value)
    if not is_int(value):
        raise TypeError(f"{where}: {what} must be an int, got {shown(value)} "
                        f"({type(value).__name__})")
    if minimum is not None and value < minimum:
        word = {0: " (non-negative)", 1: " (positive)"}.get(minimum, "")
        raise ValueError(f"{where}: {what} must be >= {minimum}{word}, got "
                         f"{shown(int(value))}")
    return int(value)


def eps_arg(value: Any, where: str, torch_size: str, fix: str, hint: str = "") -> float:
    """A normalisation's ``eps``, a positive number; an integer of 1 or more is refused,
    being torch's ``torch_size`` argument in eps's place (``GroupNorm(3, 6)``, which would
    normalise with eps = 6), whose size funcdl reads from in_shape: ``fix`` says the call."""
    if (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and value >= 1):
        raise ValueError(f"{where}: eps={value} is a count, as torch's {torch_size} in its "
                         f"place is, not a small positive number: funcdl reads that size "
                         f"from in_shape, {fix}; pass eps= as a float for another eps")
    return real_arg(value, where, "eps", low=0.0, open_low=True, hint=hint)


def real_arg(value: Any, where: str, what: str, *, low: float = -math.inf,
             high: float = math.inf, open_low: bool = False, open_high: bool = False,
             finite: bool = True, hint: str = "", fix: str = "") -> float:
    """``value`` as a Python float in ``[low, high]`` (ends left out when open), finite
    unless ``finite=False`` (``max_norm=inf``: no clipping), never NaN: a TypeError naming
    ``where`` for what is not a real number (bools, None, strings, arrays of several
    entries; ``hint`` appended), a ValueError for what is out of range; ``fix`` (``'; pass
    ...'``) ends both."""
    value = number(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        got = (f"an array of shape {value.shape} and dtype {value.dtype}"
               if isinstance(value, np.ndarray) else f"{value!r} ({type(value).__name__})")
        raise TypeError(f"{where}: {what} must be a real number, got {got}{hint}{fix}")
    try:
        x = float(value)
    except OverflowError:  # an int beyond float64
        x = math.inf if cast(int, value) > 0 else -math.inf
    if ((low < x if open_low else low <= x) and (x < high if open_high else x <= high)
            and (not finite or math.isfinite(x))):  # NaN fails every comparison
        return x
    if low > -math.inf and high < math.inf:
        bound = f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    elif low > -math.inf or high < math.inf:
        bound = (f" {'>' if open_low else '>='} {low:g}" if low > -math.inf
                 else f" {'<' if open_high else '<='} {high:g}")
    else:
        bound = "" if finite else ", not NaN"
    raise ValueError(f"{where}: {what} must be a {'finite ' if finite else ''}number{bound}, "
                     f"got {shown(value)}{fix}")


def bool_arg(value: Any, where: str, what: str) -> bool:
    """``value`` as a bool, or a TypeError naming ``where``: a flag such as ``shuffle='no'``
    would otherwise count as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {what} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
    return bool(value)


def choice_arg(value: Any, where: str, what: str, choices: tuple[str, ...]) -> str:
    """``value``, one of the strings ``choices``: a TypeError for a non-string, a ValueError
    for another string, each listing the choices."""
    if type(value) is str and value in choices:  # every loss call's reduction: no message
        return value
    names = [repr(c) for c in choices]
    listed = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
    if not isinstance(value, str):
        raise TypeError(f"{where}: {what} must be {listed}, got {value!r} "
                        f"({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{where}: {what} must be {listed}, got {value!r}")
    return value


def train_arg(train: Any, where: str) -> bool:
    """``train`` as a bool (``train='no'`` would count as true); True and False pass as they
    are, the commonest call paying one identity test."""
    return train if train is True or train is False else bool_arg(train, where, "train")


def nearest_divisors(n: int, k: int) -> str:
    """The divisors of ``n`` nearest ``k``, below and above (``'3 or 6'``), for the error of
    a count that must divide ``n`` (heads of an embedding, groups of channels)."""
    # scanned outward from k, at most 2**16 steps a side (n may be 2**40): past them 1 and n,
    # divisors too, stand in for the nearest
    span = 1 << 16
    below = next((d for d in range(k - 1, max(k - 1 - span, 0), -1) if n % d == 0), 1)
    above = next((d for d in range(k + 1, min(n, k + span) + 1) if n % d == 0), n)
    return " or ".join(str(d) for d, exists in ((below, k > 1), (above, n > k)) if exists)


def call_name(ctor: str, args: tuple[Any, ...], **options: tuple[Any, Any]) -> str:
    """The constructor call as a name, options shown only when not at their default:
    ``call_name('Conv2D', (16, 3), stride=(2, 1))`` is ``Conv2D(16, 3, stride=2)``."""
    parts = [repr(a) for a in args]
    # the default's type too: True == 1 would hide dilation=True, and an array compares
    # entrywise (a bare NumPy error for stride=np.array([1, 2]), named by its constructor)
    parts += [f"{k}={v!r}" for k, (v, default) in options.items()
              if not (type(v) is type(default) and v == default)]
    return f"{ctor}({', '.join(parts)})"


F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
# The largest finite value of each sample dtype: bounds beyond it cannot be cast to it.
FLOAT_MAX = {np.dtype(t): float(np.finfo(t).max) for t in (np.float32, np.float64)}


# NumPy's bound on every dimension and on an array's size in bytes: "array is too big"
INTP_MAX = int(np.iinfo(np.intp).max)


def shape_arg(shape: Any, where: str, itemsize: int = 8) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints (an int ``n`` is ``(n,)``, as in NumPy); a
    TypeError or ValueError naming ``where`` for anything else (floats, bools, -1, a dict or
    a set), and a ValueError for a shape no array of ``itemsize``-byte entries can have,
    which NumPy refuses in words that name nobody."""
    if type(shape) is tuple and all(type(d) is int and 0 <= d <= INTP_MAX for d in shape):
        dims: tuple[int, ...] = shape  # the common call: nothing to convert
    else:
        dims = _shape(shape, where)
    if math.prod(dims) > INTP_MAX // itemsize:
        raise ValueError(f"{where}: shape {dims} has more entries than an array can hold "
                         f"({INTP_MAX // itemsize:.3g} at most)")
    if len(dims) > 32:  # NumPy's largest rank: 32 before NumPy 2, 64 since; ask it (size 0)
        try:
            np.empty((0,) * len(dims))
        except ValueError:
            raise ValueError(f"{where}: shape of rank {len(dims)} is beyond the largest rank "
                             f"NumPy {np.__version__} supports") from None
    return dims


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    """``shape_arg`` for what is not a tuple of in-range Python ints."""
    if isinstance(shape, np.ndarray) and shape.dtype == np.uint64 and shape.shape == (2,):
        # a funcdl.random key where the shape belongs: (shape, key) swapped, whose words
        # would read as a shape of some 1e19 entries
        raise TypeError(f"{where}: expected a key first and a shape second, got a key "
                        f"(uint64, shape (2,)) where the shape belongs; pass (key, shape)")
    shape = number(shape)  # np.array(3): a 0-d array of one size
    if isinstance(shape, (int, np.integer)):  # a bool too: int_arg refuses it below
        raw: tuple[Any, ...] = (shape,)
    else:
        try:  # a dict or a set has no order of sizes; NumPy refuses them, and iterators
            if not isinstance(shape, (Sequence, np.ndarray)):
                raise TypeError
            raw = tuple(shape)
        except TypeError:  # not a sequence, or a 0-d array that number() left alone
            raise TypeError(f"{where}: shape must be an int or a tuple of ints, got {shape!r} "
                            f"({type(shape).__name__})") from None
    what = f"every size in shape {shown(shape)}"  # once, not per size
    dims = tuple(int_arg(d, where, what) for d in raw)
    big = next((d for d in dims if d > INTP_MAX), None)
    if big is not None:
        raise ValueError(f"{where}: shape {shown(dims)} has a size of {shown(big)}, beyond "
                         f"{INTP_MAX}, the largest an array can have")
    return dims


def count_arg(value: Any, where: str, what: str, itemsize: int) -> int:
    """``int_arg(value, where, what)`` for the length of an array of ``itemsize``-byte
    entries (split's keys, permutation's indices): a ValueError past what one can hold."""
    n = int_arg(value, where, what)
    if n > INTP_MAX // itemsize:
        raise ValueError(f"{where}: {what}={shown(n)} is more than an array can hold "
                         f"({INTP_MAX // itemsize:.3g} at most)")
    return n


def dtype_arg(dtype: Any, where: str, what: str, kinds: str, wanted: str) -> np.dtype[Any]:
    """``np.dtype(dtype)`` when its kind is one of ``kinds``, else a TypeError naming
    ``where`` and ``what`` and saying ``wanted`` (the caller reads None first: NumPy would
    take it as float64)."""
    try:
        dt: np.dtype[Any] | None = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.kind not in kinds:
        raise TypeError(f"{where}: {what} must be {wanted}, got {dtype!r}")
    return dt


def float_dtype_arg(dtype: DTypeLike, where: str) -> np.dtype[Any]:
    """``dtype`` as float32 or float64 (None is float32, funcdl's default, as in JAX: NumPy
    would read it as float64); a TypeError naming ``where`` for anything else."""
    if dtype is None:
        return F32
    dt = dtype_arg(dtype, where, "dtype", "f", "float32 or float64")
    if dt not in FLOAT_MAX:  # float16, longdouble
        raise TypeError(f"{where}: dtype must be float32 or float64, got {dt}")
    return dt


def reworded(err: Exception, message: str) -> Exception:
    """``err``'s class with ``message`` (a place or a name put before its own words), for a
    parent to re-raise a child's error; a class with a constructor of its own (NumPy's
    UFuncTypeError) gives way to the first builtin it derives from that takes a message."""
    try:
        return type(err)(message)
    except Exception:
        cls = next((t for t in (TypeError, ValueError, ArithmeticError) if isinstance(err, t)),
                   ValueError)
        return cls(message)


def lengths_arg(name: str, what: str, value: Any, n: int, top: int,
                of: str) -> NDArray[np.int64]:
    """``value`` as (N,) int64 lengths in [0, top]; None: ``top`` for every example."""
    if value is None:
        return np.full(n, top, np.int64)
    v = array_arg(value, name, what)
    if v.dtype.kind not in "iu":
        raise TypeError(f"{name}: {what} must be integers, one per example, got dtype "
                        f"{v.dtype}")
    if v.shape != (n,):
        raise ValueError(f"{name}: {what} must have shape ({n},), one per example, got "
                         f"shape {v.shape}")
    if n and not (np.minimum.reduce(v) >= 0 and np.maximum.reduce(v) <= top):
        raise ValueError(f"{name}: {what} must be in [0, {top}] ({of}), got values in "
                         f"[{np.minimum.reduce(v)}, {np.maximum.reduce(v)}]")
    return v.astype(np.int64)
