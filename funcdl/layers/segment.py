"""Sums over segments of a batch: the scatter-add of graph message passing and pooling.

``segment_sum(data, segment_ids, num_segments)`` is ``jax.ops.segment_sum`` (torch's
``index_add_`` / ``scatter_add`` on axis 0, PyG's ``global_add_pool``), for a layer of your
own: a message-passing layer sums its messages into their destination nodes with it, and
its pullback sums the cotangent of a gather ``x[src]`` back into the nodes the same way::

    m = x[src] @ w                                   # one message per edge (E, F)
    y = segment_sum(m, dst, n)                       # y[i] = Σ_{e: dst[e] = i} m[e]
    # pullback: dm = dy[dst]; dx = segment_sum(dm @ w.T, src, n); dw = x[src].T @ dm

``SegmentSum(num_segments)`` is the layer on ``(data, segment_ids)``: a graph batch's
readout, the node features summed per graph. Means and maxima: ``segment_reduce``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import array_arg, int_arg, side_array
from funcdl.layers import _per_example as per_example
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    no_params,
    pair_of_shapes,
)

__all__ = ["SegmentSum", "segment_sum"]

# entries of the flat index array built per chunk: bounds its memory (8 MiB) for large E·F
_CHUNK = 1 << 20


def _ids(where: str, segment_ids: Any, n: int, num_segments: int | None) -> tuple[Array, int]:
    """The ids as a 1-D intp array of length ``n``, all in ``[0, num_segments)``, and
    num_segments (the largest id + 1 when None)."""
    ids = side_array(segment_ids, where, "segment_ids")
    if ids is None:
        raise TypeError(f"{where}: segment_ids must be an array of ints, got "
                        f"{type(segment_ids).__name__}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{where}: segment_ids must be integers, got dtype {ids.dtype} "
                        f"(cast with segment_ids.astype(np.int64) if the values are ids)")
    if ids.shape != (n,):
        raise ValueError(f"{where}: segment_ids must have shape ({n},), one id per row of "
                         f"data, got shape {ids.shape}")
    if num_segments is None:
        num_segments = int(ids.max()) + 1 if n else 0
    if n:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_segments:
            # JAX drops such rows silently; torch's index_add_ raises: never a silent sum
            raise ValueError(f"{where}: segment_ids must be in [0, {num_segments}) "
                             f"(num_segments {num_segments}), got ids in [{lo}, {hi}]")
    return ids.astype(np.intp, copy=False), num_segments


def _scatter(data: Array, ids: Array, num_segments: int, op: np.ufunc = np.add,
             start: Any = 0) -> Array:
    """``out[i] = Σ_{j: ids[j] = i} data[j]``, ids valid (``op`` from ``start``: another
    reduction, segment_max's). One flat ``np.add.at`` (NumPy's fast path for a 1-D target),
    adding in data's dtype: 2.5-6.6x faster than ``np.add.at`` over the rows of a 2-D
    target (1e5 edges of 64 float32 features: 153 -> 23 ms alone on the machine, 197 -> 58
    ms shared), and faster than sorting the ids for one ``np.add.reduceat`` where ids
    repeat, as a graph's do (``benchmarks/segment_sum.py``)."""
    width = int(np.prod(data.shape[1:], dtype=np.int64))
    out = np.full((num_segments, width), start, data.dtype)
    if width == 0 or ids.size == 0:
        return out.reshape((num_segments, *data.shape[1:]))
    flat, rows = out.reshape(-1), data.reshape(ids.size, width)
    cols = np.arange(width, dtype=np.intp)
    step = max(1, _CHUNK // width)
    for first in range(0, ids.size, step):  # chunks of rows, never a loop over rows
        part = ids[first:first + step]
        op.at(flat, (part[:, None] * width + cols).reshape(-1),
              rows[first:first + step].reshape(-1))
    return out.reshape((num_segments, *data.shape[1:]))


def segment_sum(data: Any, segment_ids: Any, num_segments: int | None = None) -> Array:
    """Sum the rows of ``data`` by segment: ``(N, ...), (N,) -> (num_segments, ...)``.

    ``out[i] = Σ_{j: segment_ids[j] = i} data[j]``; a segment no id names is 0. As
    ``jax.ops.segment_sum`` (``num_segments=None``: the largest id + 1) and torch's
    ``zeros(num_segments, ...).index_add_(0, segment_ids, data)``, but an id outside
    ``[0, num_segments)`` is a ValueError (JAX drops its row). Its vjp is a gather:
    ``d data = d out[segment_ids]``. The output keeps data's dtype (float32 stays float32;
    integers sum as integers).

    Args:
        data: an array with the rows to sum on axis 0, ints or floats.
        segment_ids: (N,) integers, the segment of each row.
        num_segments: the number of output rows, an int >= 0, or None.
    """
    return _scatter(*function_args("segment_sum", data, segment_ids, num_segments))


def function_args(where: str, data: Any, segment_ids: Any,
                  num_segments: Any) -> tuple[Array, Array, int]:
    """A segment function's ``(data, ids, num_segments)`` checked: data ints or floats with
    rows on axis 0, the ids' ``_ids``, num_segments an int >= 0 or None (the largest id + 1)."""
    x = array_arg(data, where, "data")
    if x.dtype.kind not in "iuf":
        raise TypeError(f"{where}: data must be ints or floats, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{where}: data must have rows on axis 0, got a scalar")
    if num_segments is not None:
        num_segments = int_arg(num_segments, where, "num_segments")
    ids, n = _ids(where, segment_ids, x.shape[0], num_segments)
    return x, ids, n


def SegmentSum(num_segments: int) -> Layer:
    """Sum rows by segment: ``(data, segment_ids) -> (num_segments, ...)``, data (N, ...),
    segment_ids (N,) ints in ``[0, num_segments)``; PyG's ``global_add_pool(x, batch)``.

    forward: ``y[i] = Σ_{j: segment_ids[j] = i} data[j]`` (``segment_sum``);
    vjp: ``d data = dy[segment_ids]``, None for the ids. No params. The output's first axis
    is the segments, not the input's batch: its rows mix the input's rows by design, so
    check it with ``check_vjp`` (``check_layer``'s row checks do not apply); for that
    reason ``per_example_grad`` and ``BatchThreads`` refuse it. Float dtypes kept (integer
    data is taken as float32)."""
    def vjp(x: Array, ids: Array, n: int) -> tuple[Array, Any]:
        return _scatter(x, ids, n), lambda dy: np.take(dy, ids, axis=0)

    return segment_layer("SegmentSum", "sum", num_segments, _scatter, vjp)


def segment_layer(ctor: str, what: str, num_segments: Any,
                  forward: Callable[[Array, Array, int], Array],
                  vjp_rule: Callable[[Array, Array, int], tuple[Array, Any]]) -> Layer:
    """A layer without params on ``(data, segment_ids)`` reducing rows by segment (SegmentSum,
    SegmentMean, SegmentMax): ``forward(x, ids, n) -> y``; ``vjp_rule(x, ids, n) -> (y,
    back)``, ``back(dy) -> d data``; ``what`` names the reduction in errors."""
    num_segments = int_arg(num_segments, ctor, "num_segments")
    name = f"{ctor}({num_segments})"

    def init(key: random.Key, in_shape: Any) -> tuple[Shape, Any]:
        del key
        if not pair_of_shapes(in_shape):
            raise TypeError(f"{name}: expected in_shape as the shapes of (data, segment_ids), "
                            f"e.g. ((None, F), (None,)), got {in_shape!r}")
        xs = check_in_shape(name, in_shape[0])
        ids = check_in_shape(name, in_shape[1], rank=1, layout="(N,)")
        if None not in (xs[0], ids[0]) and xs[0] != ids[0]:
            raise ValueError(f"{name}: data has {xs[0]} rows but segment_ids {ids[0]}; "
                             f"expected one id per row, in_shape ((N, ...), (N,))")
        return (num_segments, *xs[1:]), ()

    def check(xs: Any) -> tuple[Array, Array]:
        if not (isinstance(xs, (tuple, list)) and len(xs) == 2):
            got = (f"a {type(xs).__name__} of {len(xs)} entries"
                   if isinstance(xs, (tuple, list)) else type(xs).__name__)
            raise TypeError(f"{name}: expected the input as a pair (data, segment_ids), "
                            f"got {got}")
        x = as_floats(name, xs[0])
        if x.ndim < 1:
            raise ValueError(f"{name}: data must have rows on axis 0, got a scalar")
        ids, _ = _ids(name, xs[1], x.shape[0], num_segments)
        return x, ids

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        no_params(name, params)
        x, ids = check(xs)
        return forward(x, ids, num_segments)

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        no_params(name, params)
        per_example.refuse(name, f"its output's rows are segments, each the {what} of rows "
                                 f"of several examples, not one row per example")
        x, ids = check(xs)
        y, back = vjp_rule(x, ids, num_segments)
        y_shape, y_dtype, x_dtype = y.shape, y.dtype, getattr(xs[0], "dtype", None)

        def pullback(dy: Any) -> tuple[Any, Any]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dx = in_input_dtype(back(dy), x_dtype)
            return params, (list if type(xs) is list else tuple)((dx, None))  # () or None: as given

        return y, pullback

    return Layer(init, apply, vjp, name=name)
