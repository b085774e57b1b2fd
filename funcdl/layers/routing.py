"""Routing layers without parameters: split one array into a tuple, merge a tuple into one
array, or take a slice. Used with ``Parallel`` and ``Shared`` to build graphs that are not a
straight line (stax's FanOut / FanInSum / FanInConcat)."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl._args import bool_arg, int_arg, python_floats
from funcdl.layers._broadcast_sum import BROADCAST_HINT, broadcast_sum
from funcdl.layers._route_trees import (
    add_trees,
    cotangent_tree,
    holds_array,
    tuple_arrays,
    tuple_entries,
    tuple_shapes,
)
from funcdl.layers._step import LAST_AXIS, POSITIONWISE
from funcdl.layers.base import (
    _F32,
    Array,
    Layer,
    Shape,
    as_array,
    as_floats,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    like,
    no_params,
    none_cotangent,
)

__all__ = ["FanInConcat", "FanInSum", "FanOut", "Select", "Slice"]


def typed_input(name: str, params: Any, x: Any) -> Any:
    """``x``, its Python floats (a list; a padded pair's x) made an array in the float dtype of
    ``params`` (float32 without any), as a layer with params takes them: for a combinator
    starting with FanOut, which has none and would make them float32."""
    if type(x) is np.ndarray or not python_floats(x):
        return x
    weak = np.result_type(_F32, *(d for a in tree.leaves(params)
                                  if (d := getattr(a, "dtype", _F32)).char in "fd"))
    if isinstance(x, (tuple, list)) and len(x) == 2:
        first, depth = x[0], 0  # (N, T, C) lists in a pair (x, lengths); else a row
        while isinstance(first, (tuple, list)) and first:
            first, depth = first[0], depth + 1
        if depth == 3:
            return like(x, [as_array(name, x[0], weak), x[1]])
    return as_array(name, x, weak)


def FanOut(n: int) -> Layer:
    """``x -> (x, ..., x)``, ``n`` references to one array, or to one tuple of arrays (a
    tuple input is copied whole: ``(q, kv) -> ((q, kv), (q, kv))``, as for ``q + f(q, kv)``
    with ``Parallel(Select(0), f)``), whose entries may be tuples of arrays themselves (an
    LSTM's ``(y, (h, c))``); vjp: ``dx = Σ_i dy_i``, entry by entry (leaf by leaf) for a
    tuple."""
    n = int_arg(n, "FanOut", "n", 1)
    name = f"FanOut({n})"

    def init(key: random.Key, in_shape: Shape) -> tuple[Any, Any]:
        del key
        if isinstance(in_shape, (tuple, list)) and in_shape and all(
                isinstance(s, (tuple, list)) for s in in_shape):
            return (tuple(tuple_shapes(name, in_shape, trees=True)),) * n, ()
        shape = check_in_shape(name, in_shape, min_rank=0)
        return (shape,) * n, ()

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        # a tuple holding an array at some depth (never one array: the child checks its
        # entries, a scalar length say), or a list of arrays, tuples and lists, one an
        # array; made a tuple, as Parallel gives, and dx given back in x's container
        if holds_array(x) and (isinstance(x, tuple) or all(
                isinstance(v, (np.ndarray, tuple, list)) for v in x)):
            return (tuple_entries(name, x, trees=True),) * n
        return (as_array(name, x),) * n

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        xs = apply(params, x)
        many = isinstance(xs[0], (tuple, list))
        entries = xs[0] if many else (xs[0],)
        shapes = [tree.map(np.shape, e) for e in entries]

        def pullback(dys: Any) -> tuple[Any, Any]:
            if not (isinstance(dys, (tuple, list)) and len(dys) == n):
                if dys is None:
                    raise none_cotangent(name)
                tuple_entries(name, dys, n)  # raises, saying what was expected
            totals: list[Any] = [None] * len(entries)
            for dy in dys:  # None: that branch, or that entry, passes nothing back
                if dy is None:
                    continue
                if many and not (isinstance(dy, (tuple, list)) and len(dy) == len(entries)):
                    raise ValueError(f"{name}: pullback expected each branch's cotangent "
                                     f"as a tuple of {len(entries)} entries, as its input "
                                     f"(shapes {shapes}), got {type(dy).__name__}")
                for j, d in enumerate(dy if many else (dy,)):
                    if d is not None:
                        totals[j] = add_trees(totals[j], cotangent_tree(name, d, entries[j]))
            return params, (like(x, totals) if many else totals[0])

        return xs, pullback

    return Layer(init, apply, vjp, name=name, step=POSITIONWISE)


_NO_INDEX: Any = object()  # Select() with no index: an error naming Select, not Python's


def Select(index: int = _NO_INDEX, *more: int) -> Layer:
    """``(x_0, ..., x_{k-1}) -> x_index``, one entry of a tuple (JAX's ``xs[index]``); vjp:
    ``dx_index = dy``, nothing (None) for the others. An entry may be a tuple of arrays
    itself, taken whole with its cotangent: ``Sequential(LSTM(h, return_state=True),
    Select(1))`` is the state ``(h_n, c_n)``, its pullback ``(None, (dh_n, dc_n))``, None
    inside it for a leaf that passes nothing back. With ``FanOut`` on a tuple, the
    residual of a cross-attention: ``Sequential(FanOut(2), Parallel(Select(0),
    MultiHeadAttention(h)), FanInSum())`` is ``q + attention(q, kv)`` on ``(q, kv)``.

    ``Select(i, j, ...)``, several indices: the tuple ``(x_i, x_j, ...)`` (repeats allowed);
    vjp: ``dx_i = Σ dy_m`` over the places m holding i, None where nothing comes back."""
    if index is _NO_INDEX:
        raise TypeError("Select: expected at least one index, got none; pass the entry to "
                        "take, e.g. Select(0), or several, e.g. Select(0, 2)")
    indices = tuple(int_arg(i, "Select", "index", None) for i in (index, *more))
    name = "Select(" + ", ".join(map(str, indices)) + ")"
    single = not more

    def entry(k: int) -> list[int]:
        for i in indices:
            if not -k <= i < k:
                raise ValueError(f"{name}: index {i} is out of range for a tuple of {k} "
                                 f"entries; use an index in [{-k}, {k - 1}]")
        return [i % k for i in indices]

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any]:
        del key
        shapes = tuple_shapes(name, in_shapes, trees=True)
        picked = [shapes[i] for i in entry(len(shapes))]
        return (picked[0] if single else tuple(picked)), ()

    def pick(params: Any, xs: Any) -> tuple[Any, list[int]]:
        """The selected entries, and the indices they came from (in [0, len(xs)))."""
        no_params(name, params)
        arrays = tuple_entries(name, xs, trees=True)
        where = entry(len(arrays))
        picked = [arrays[i] for i in where]
        return (picked[0] if single else tuple(picked)), where

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        return pick(params, xs)[0]

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        y, where = pick(params, xs)
        k = len(xs)
        ys = (y,) if single else y
        box = type(xs)  # xs's container, not its arrays, which dx does not read

        def pullback(dy: Any) -> tuple[Any, Any]:
            if single:
                if dy is None:
                    raise none_cotangent(name)
                dys: Any = (cotangent_tree(name, dy, y),)
            else:
                if dy is None:
                    raise none_cotangent(name)
                if not (isinstance(dy, (tuple, list)) and len(dy) == len(where)):
                    got = (f"a {type(dy).__name__} of length {len(dy)}"
                           if isinstance(dy, (tuple, list)) else type(dy).__name__)
                    raise ValueError(f"{name}: pullback expected a tuple of {len(where)} "
                                     f"cotangents, one per selected entry (None for one "
                                     f"that passes nothing back), got {got}")
                dys = [None if d is None else cotangent_tree(name, d, e)
                       for d, e in zip(dy, ys)]
            dx: list[Any] = [None] * k
            for i, d in zip(where, dys):  # a repeated index: its cotangents summed
                dx[i] = add_trees(dx[i], d)
            return params, like(box, dx)

        return y, pullback

    return Layer(init, apply, vjp, name=name, step=POSITIONWISE)


def FanInSum(broadcast: bool = False) -> Layer:
    """``(x_1, ..., x_n) -> Σ_i x_i`` (all of one shape, never broadcast); vjp: ``dx_i = dy``.
    Integer and boolean entries are summed as float32, as the activations take them (uint8
    would wrap, bools would or). ``broadcast=True``: entries of one rank and batch size
    broadcast over the other axes, as NumPy's (a time embedding (N, 1, 1, C) into features
    (N, H, W, C)); vjp: ``dx_i = dy`` summed over the axes x_i broadcast."""
    if bool_arg(broadcast, "FanInSum", "broadcast"):
        return broadcast_sum()
    name = "FanInSum()"

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any]:
        del key
        shapes = tuple_shapes(name, in_shapes)
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(out) or any(a is not None and b is not None and a != b
                                         for a, b in zip(s, out)):
                raise ValueError(f"{name}: inputs must share one shape, got {tuple(shapes)}"
                                 f"{BROADCAST_HINT}")
            out = [a if a is not None else b for a, b in zip(out, s)]
        return tuple(out), ()

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        arrays = tuple_arrays(name, xs)
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"{name}: inputs must share one shape, got "
                             f"{[a.shape for a in arrays]}{BROADCAST_HINT}")
        total = as_floats(name, arrays[0])
        for a in arrays[1:]:
            total = total + as_floats(name, a)
        return total

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        y = apply(params, xs)
        dtypes = [getattr(x, "dtype", None) for x in xs]  # each dx in its input's dtype
        box = type(xs)  # xs's container, not its arrays, which dx does not read

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Any]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            return params, like(box, [in_input_dtype(dy, d) for d in dtypes])

        return y, pullback

    return Layer(init, apply, vjp, name=name, step=POSITIONWISE)


def FanInConcat(axis: int = -1) -> Layer:
    """Concatenate a tuple along ``axis`` (batch axis excluded); vjp: ``dy`` split at the
    same offsets. Integer and boolean entries beside floating ones take the floats' dtype
    (int64 ids beside float32 features give float32, not NumPy's float64)."""
    axis = int_arg(axis, "FanInConcat", "axis", None)
    name = f"FanInConcat(axis={axis})"

    def concat_axis(rank: int, shapes: Any) -> int:
        # apply checks too: np.concatenate would wrap axis=2 of rank-2 inputs onto the batch
        if not -rank <= axis < rank or axis % rank == 0:
            raise ValueError(f"{name}: axis {axis} is not a non-batch axis of inputs of rank "
                             f"{rank}, got {tuple(tuple(s) for s in shapes)}; the batch axis "
                             f"is axis 0")
        return axis % rank

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any]:
        del key
        shapes = tuple_shapes(name, in_shapes)
        rank = len(shapes[0])
        ax = concat_axis(rank, shapes)
        for s in shapes:
            if len(s) != rank or any(i != ax and a is not None and b is not None and a != b
                                     for i, (a, b) in enumerate(zip(s, shapes[0]))):
                raise ValueError(f"{name}: inputs must agree on every axis but {axis}, got "
                                 f"{tuple(shapes)}")
        sizes = [s[ax] for s in shapes]
        total = None if None in sizes else sum(sizes)
        return tuple(total if i == ax else d for i, d in enumerate(shapes[0])), ()

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        arrays = tuple_arrays(name, xs)
        rank = arrays[0].ndim
        ax = concat_axis(rank, [a.shape for a in arrays])
        if any(a.ndim != rank or a.shape[:ax] + a.shape[ax + 1:]
               != arrays[0].shape[:ax] + arrays[0].shape[ax + 1:] for a in arrays):
            raise ValueError(f"{name}: inputs must agree on every axis but {axis}, got "
                             f"{[a.shape for a in arrays]}")
        floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
        if floats and len(floats) < len(arrays):
            dtype = np.result_type(*floats)
            arrays = tuple(cast_ints(a, dtype) for a in arrays)
        return np.concatenate(arrays, axis=ax)

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        y = apply(params, xs)
        ax = axis % y.ndim
        offsets = np.cumsum([np.shape(x)[ax] for x in xs])[:-1]
        dtypes = [getattr(x, "dtype", None) for x in xs]
        box = type(xs)  # xs's container, not its arrays, which dx does not read

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Any]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            return params, like(box, [in_input_dtype(d, t)
                                     for d, t in zip(np.split(dy, offsets, axis=ax), dtypes)])

        return y, pullback

    # along the last axis: position-wise on (N, T, features); another axis may be time
    return Layer(init, apply, vjp, name=name, step=LAST_AXIS if axis == -1 else None)


def Slice(index: Any) -> Layer:
    """Basic indexing of the axes after the batch axis: ``y = x[:, index]`` (``index`` an
    int, a slice or a tuple of them: ``np.s_[0:14]``, the first 14 features; on (N, H, W)
    images ``np.s_[:, 0:14]``, their first 14 columns); vjp: ``dx = 0`` with
    ``dx[:, index] = dy``. init: a slice of an axis of unknown size (None) is None unless
    its length is the same at every size (``np.s_[0:4]`` of (None, None, 8) is (None, None,
    8): 1 long on an input of 1)."""
    idx = index if isinstance(index, tuple) else (index,)
    for i in idx:
        if not (isinstance(i, (slice, int, np.integer)) or i is Ellipsis) \
                or isinstance(i, bool):
            raise TypeError(f"Slice: index entries must be ints, slices or ..., got {i!r} "
                            f"(use np.s_[...] to write slices)")
        if isinstance(i, slice):  # refused here, not by NumPy at the first init or apply
            for part in (i.start, i.stop, i.step):
                if part is not None and (isinstance(part, bool)
                                         or not isinstance(part, (int, np.integer))):
                    raise TypeError(f"Slice: slice bounds and steps must be ints or None, "
                                    f"got {i!r}")
            if i.step == 0:
                raise ValueError(f"Slice: a slice step cannot be zero, got {i!r}; use a "
                                 f"step of 1 (the default) or more, or negative to reverse")
    if sum(i is Ellipsis for i in idx) > 1:
        raise ValueError(f"Slice: an index can hold one ... at most, got {index!r}")
    full = (slice(None), *idx)
    name = f"Slice({index!r})"

    def refused(shape: tuple[Any, ...], e: IndexError) -> ValueError:
        entries = sum(i is not Ellipsis for i in idx)
        if entries >= len(shape):  # NumPy's count includes the batch axis put in front
            return ValueError(
                f"{name}: index has {entries} entries, but an input of shape {shape} has "
                f"{len(shape) - 1} ax{'is' if len(shape) == 2 else 'es'} after the batch "
                f"axis, which Slice indexes (y = x[:, index]); leave the batch axis out of "
                f"index, e.g. np.s_[0:2] for the first 2 features")
        return ValueError(f"{name}: cannot index an input of shape {shape}: {e}")

    def out_size(d: int | None, i: Any) -> list[int | None]:
        """The output axes of an input axis of size ``d`` (None: unknown) under entry ``i``:
        none for an int, one for a slice; unknown unless the same for every size. A slice's
        length is monotone in the size between its bounds' breakpoints, so the sizes next to
        them, and two past where the bounds cross, a step apart, cover every size."""
        if not isinstance(i, slice):
            if d is not None and not -d <= i < d:
                raise IndexError(f"index {i} is out of bounds for an axis of size {d}")
            return []
        if d is not None:
            return [len(range(*i.indices(d)))]
        ends = [abs(int(v)) for v in (i.start, i.stop) if v is not None]
        far = sum(ends) + 2  # past where the bounds cross (x[:, 3:-5] is empty below 8)
        sizes = {0, 1, far, far + abs(int(i.step or 1)),
                 *(b + k for b in ends for k in (-1, 0, 1) if b + k >= 0)}
        lengths = {len(range(*i.indices(n))) for n in sizes}
        return [lengths.pop() if len(lengths) == 1 else None]

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        entries = [i for i in idx if i is not Ellipsis]
        rest = len(shape) - 1 - len(entries)
        if rest < 0:
            raise refused(shape, IndexError("too many indices"))
        at = next((k for k, i in enumerate(idx) if i is Ellipsis), len(entries))
        per_axis = [*entries[:at], *(slice(None),) * rest, *entries[at:]]
        try:
            sizes = [n for d, i in zip(shape[1:], per_axis) for n in out_size(d, i)]
        except IndexError as e:
            raise refused(shape, e) from None
        return (shape[0], *sizes), ()

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        xa = as_array(name, x)
        if xa.ndim == 0:
            raise ValueError(f"{name}: expected an input with a batch axis, got shape ()")
        try:
            y: Array = xa[full]
        except IndexError as e:
            raise refused(xa.shape, e) from None
        return y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y = apply(params, x)
        x_shape = np.shape(x)

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dx = np.zeros(x_shape, dy.dtype)
            dx[full] = dy
            return params, dx

        return y, pullback

    return Layer(init, apply, vjp, name=name)
