"""Means and maxima over segments of a batch: GraphSAGE's mean aggregation, a graph's max
readout (``torch_scatter``'s ``scatter_mean`` / ``scatter_max``, torch's ``scatter_reduce``
with ``'mean'`` / ``'amax'`` and ``include_self=False``, ``jax.ops.segment_max``).

``segment_mean(data, segment_ids, num_segments)`` and ``segment_max(...)`` are the functions
(as ``segment_sum``), for a layer of your own; ``SegmentMean(num_segments)`` and
``SegmentMax(num_segments)`` the layers on ``(data, segment_ids)``, as ``SegmentSum``. A
segment no id names is 0 for both: torch's and PyG's value (``jax.ops.segment_max`` gives
-inf there; ``np.where(segment_sum(np.ones(n), ids, k) > 0, y, -np.inf)`` restores it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl.layers.base import Array, Layer
from funcdl.layers.segment import _scatter, function_args, segment_layer

__all__ = ["SegmentMax", "SegmentMean", "segment_max", "segment_mean"]


def _per_row(counts: Array, x: Array) -> Array:
    """``counts`` (K,) shaped to broadcast over rows like x's (K, ...), 0 read as 1 (an empty
    segment's sum is 0 already), in x's dtype (float32 stays float32)."""
    return np.maximum(counts, 1).astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


def _mean_vjp(x: Array, ids: Array, n: int) -> tuple[Array, Any]:
    """``y[i] = Σ_{ids[j] = i} x[j] / c_i`` (c_i the count of i, 0 where c_i = 0);
    ``dx[j] = dy[ids[j]] / c_{ids[j]}``."""
    c = _per_row(np.bincount(ids, minlength=n), x)
    y = _scatter(x, ids, n) / c
    return y, lambda dy: np.take(dy / c, ids, axis=0)


def _mean(x: Array, ids: Array, n: int) -> Array:
    return _mean_vjp(x, ids, n)[0]


def _max(x: Array, ids: Array, n: int) -> Array:
    """``y[i] = max_{ids[j] = i} x[j]`` entrywise, 0 for an empty segment: one flat
    ``np.maximum.at`` in chunks, as segment_sum's (1e5 rows of 64 float32 into 5,000
    segments: 23 ms, where sorting the rows for ``np.maximum.reduceat`` took 72 ms, on the
    shared machine). NaN propagates, as ``np.maximum`` and torch's ``'amax'``."""
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    with np.errstate(invalid="ignore"):  # a NaN is the max, not a warning
        y = _scatter(x, ids, n, np.maximum, low)
    y[np.bincount(ids, minlength=n) == 0] = 0
    return y


def _max_vjp(x: Array, ids: Array, n: int) -> tuple[Array, Any]:
    """``dx[j] = dy[ids[j]] · [x[j] = y[ids[j]]] / t``, t the number of rows of that segment
    equal to its max at that entry: ties share the cotangent evenly, as torch's
    ``scatter_reduce(..., 'amax')`` backward (a NaN max gives no row a gradient, as there).
    Torch 2.13 also counts its excluded initial value as a tie where the max equals it (a
    max of 0 on a zeros base), its rows then getting a share less; here they share all."""
    y = _max(x, ids, n)
    hit = x == np.take(y, ids, axis=0)
    ties = np.maximum(_scatter(hit.astype(x.dtype), ids, n), 1)  # counts, exact in floats

    def back(dy: Array) -> Array:
        share: Array = np.take(dy / ties, ids, axis=0)
        return np.where(hit, share, 0).astype(share.dtype, copy=False)

    return y, back


def segment_mean(data: Any, segment_ids: Any, num_segments: int | None = None) -> Array:
    """Average the rows of ``data`` by segment: ``(N, ...), (N,) -> (num_segments, ...)``.

    ``out[i] = Σ_{j: segment_ids[j] = i} data[j] / c_i``, c_i the number of such rows; a
    segment no id names is 0 (torch's ``scatter_reduce(..., 'mean', include_self=False)``
    on zeros, ``torch_scatter.scatter_mean``; JAX has no segment_mean). Its vjp:
    ``d data[j] = d out[segment_ids[j]] / c_{segment_ids[j]}``. Float data keeps its dtype;
    integer data averages as float64, as ``np.mean`` (torch's integer mean rounds down).
    ``num_segments=None``: the largest id + 1; an id outside ``[0, num_segments)`` is a
    ValueError.
    """
    x, ids, n = function_args("segment_mean", data, segment_ids, num_segments)
    return _mean(x if x.dtype.kind == "f" else x.astype(np.float64), ids, n)


def segment_max(data: Any, segment_ids: Any, num_segments: int | None = None) -> Array:
    """The entrywise maximum of the rows of ``data`` by segment: ``(N, ...), (N,) ->
    (num_segments, ...)``.

    ``out[i] = max_{j: segment_ids[j] = i} data[j]``, as ``jax.ops.segment_max`` except that
    a segment no id names is 0, not -inf (torch's ``scatter_reduce(..., 'amax',
    include_self=False)`` on zeros, ``torch_scatter.scatter_max``, PyG's
    ``global_max_pool``). Its vjp (``SegmentMax``) routes ``d out[i]`` to the rows equal to
    the max, split evenly among ties, as torch's. The output keeps data's dtype (integers
    too); NaN propagates. ``num_segments=None``: the largest id + 1; an id outside
    ``[0, num_segments)`` is a ValueError (JAX drops its row).
    """
    x, ids, n = function_args("segment_max", data, segment_ids, num_segments)
    return _max(x, ids, n)


def SegmentMean(num_segments: int) -> Layer:
    """Average rows by segment: ``(data, segment_ids) -> (num_segments, ...)``, data (N, ...),
    segment_ids (N,) ints in ``[0, num_segments)``; PyG's ``global_mean_pool(x, batch)``,
    GraphSAGE's mean aggregation.

    forward: ``y[i] = Σ_{segment_ids[j] = i} data[j] / c_i`` (0 for an empty segment);
    vjp: ``d data[j] = dy[segment_ids[j]] / c_{segment_ids[j]}``, None for the ids. No
    params; its rows are segments, so ``check_vjp`` checks it and ``per_example_grad`` and
    ``BatchThreads`` refuse it, as ``SegmentSum``. Float dtypes kept (integer data as
    float32)."""
    return segment_layer("SegmentMean", "mean", num_segments, _mean, _mean_vjp)


def SegmentMax(num_segments: int) -> Layer:
    """Entrywise maximum of rows by segment: ``(data, segment_ids) -> (num_segments, ...)``,
    data (N, ...), segment_ids (N,) ints in ``[0, num_segments)``; PyG's
    ``global_max_pool(x, batch)``, a max readout.

    forward: ``y[i] = max_{segment_ids[j] = i} data[j]`` entrywise (0 for an empty segment,
    torch's, not JAX's -inf); vjp: ``d data[j] = dy[segment_ids[j]]`` where ``data[j]``
    equals that max, divided by the number of such tied rows (torch's ``scatter_reduce``
    ``'amax'`` rule), 0 elsewhere; None for the ids. No params; its rows are segments, as
    ``SegmentSum``'s. Float dtypes kept (integer data as float32)."""
    return segment_layer("SegmentMax", "max", num_segments, _max, _max_vjp)
