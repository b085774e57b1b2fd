"""The statistics behind BatchNorm, LayerNorm and GroupNorm: their moments by two passes,
refined where the mean dwarfs the spread; the computation dtype; the per-channel vectors
of params and state, checked; whether normalised axes are the trailing ones; BatchNorm's
running statistics (fresh, read, moved); the layers' names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl._args import refuse_masked
from funcdl.layers._params import param_arrays, plain
from funcdl.layers.base import Array

__all__ = ["channel_axis", "channel_vectors", "compute_dtype", "example_axes", "fresh_state",
           "moments", "moved", "running_stats", "trailing"]


def moments(x: Array, mean_of: Callable[[Array], Array], minus: Callable[..., Array],
            eps: float, mu: Array | None = None) -> tuple[Array, Array, Array, Array, Array]:
    """``(μ, x - μ, (x - μ)², σ², 1/sqrt(σ² + eps))`` by two passes (``mu``: the first's
    result, ``mean_of(x)``, when the caller has it already). Where |μ| exceeds 64 σ, one
    more pass adds the mean of x - μ to μ (the corrected two-pass algorithm): otherwise a
    float32 μ one ulp off, as a row constant at 1e4 gives, exceeds sqrt(eps) and x̂ comes
    out near ±1 instead of 0 (PyTorch's Welford moments give 0). Where float32 squares
    overflow (|x - μ| beyond ~1e19: σ² = inf, x̂ would be 0, as PyTorch gives it silently),
    μ, σ² and 1/sqrt(σ² + eps) are taken again in float64, σ² then inf in float32 but x̂
    right, as long as x - μ itself fits float32 (|x| under ~1.7e38; past it ±inf, where
    torch's float32 gives x̂: a float64 re-run would have to be agreed by every slice and
    rank sharing these moments); a check of σ² alone otherwise. A mean past the range (a
    sum overflowing) makes x̂ NaN, with NumPy's invalid-value warning, kept on purpose: a
    NaN from finite inputs is not silenced (torch's is). Call under an errstate that
    ignores overflow."""
    mu = mean_of(x) if mu is None else mu
    xc = minus(x, mu)
    sq = np.square(xc)
    var = mean_of(sq)
    inv_std = 1 / np.sqrt(var + eps)
    if np.fmax.reduce(np.abs(mu) * inv_std, axis=None, initial=0) > 64:  # NaN rows skipped
        corr = mean_of(xc)
        mu = mu + corr
        minus(xc, corr, out=xc)
        np.square(xc, out=sq)
        var = mean_of(sq)
        inv_std = 1 / np.sqrt(var + eps)
    if x.dtype == np.float32 and np.isposinf(var).any():  # (inf or NaN inputs give NaN)
        x64 = x.astype(np.float64)
        mu64 = mean_of(x64)
        var64 = mean_of(np.square(minus(x64, mu64)))
        mu, var = mu64.astype(x.dtype), var64.astype(x.dtype)
        inv_std = (1 / np.sqrt(var64 + eps)).astype(x.dtype)
        minus(x, mu, out=xc)
    return mu, xc, sq, var, inv_std


def compute_dtype(x: Array, *vectors: Array) -> np.dtype[Any]:
    """The computation dtype: the input's and the params' floating dtypes, promoted; an
    integer input counts as the params' dtype (never int64 -> float64 promotion)."""
    kinds = [v.dtype for v in vectors] + ([x.dtype] if x.dtype.kind == "f" else [])
    return np.result_type(*kinds)


def channel_vectors(name: str, tree: Any, keys: tuple[str, ...], what: str,
                    shape: tuple[int, ...] | None = None,
                    fits: tuple[int, ...] | None = None) -> list[Array]:
    """``tree[k]`` for each key, each an array of ``shape``, or a ValueError naming the
    layer. Without ``shape``: the first's, unless the arrays disagree and one has the shape
    ``fits`` the input (then the others are the odd ones)."""
    _keyed(name, tree, keys, what)
    # params must be arrays, as every layer's (their grads take the params' dtypes); so
    # must the state: a list would move in NumPy's float64, float16 lose the moving average
    if what == "params":
        out = param_arrays(name, tree, keys)
    else:
        out = []
        for k in keys:
            a = tree[k]
            if not (isinstance(a, np.ndarray) and a.dtype.char in "fd"):
                got = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise TypeError(f"{name}: {what}['{k}'] must be a float32 or float64 array "
                                f"(running statistics, as init returns them), got {got}")
            refuse_masked(a, name, f"{what}[{k!r}]")
            out.append(plain(a))
    if shape is None:
        shapes = [a.shape for a in out]
        shape = fits if fits in shapes and len(set(shapes)) > 1 else shapes[0]
    for k, a in zip(keys, out):
        if a.shape != shape:
            raise ValueError(f"{name}: {what}['{k}'] has shape {a.shape}, expected {shape}")
    return out


def _keyed(name: str, tree: Any, keys: tuple[str, ...], what: str) -> None:
    """A ValueError naming the layer unless ``tree`` is a dict of exactly ``keys``."""
    if not isinstance(tree, dict) or set(tree) != set(keys):
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"{name}: expected {what} as a dict with keys {list(keys)} (from "
                         f"init), got {got}")


def channel_axis(name: str, axis: int, shape: tuple[Any, ...]) -> int:
    """BatchNorm's channel ``axis`` of an input of ``shape``, as an index >= 1."""
    if len(shape) < 2:
        raise ValueError(f"{name}: expected an input of rank >= 2 (batch axis first, a "
                         f"channel axis {axis}), got shape {shape}")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"{name}: channel axis {axis} is out of range for an input of "
                         f"shape {shape}")
    ax = axis % len(shape)
    if ax == 0:
        raise ValueError(f"{name}: the channel axis {axis} is the batch axis of an input "
                         f"of shape {shape}; pick the channel axis (e.g. -1 for NHWC)")
    return ax


def example_axes(name: str, axis: Any, axes: tuple[int, ...],
                 shape: tuple[Any, ...]) -> tuple[int, ...]:
    """LayerNorm's normalised ``axes`` (given as ``axis``) of an input of ``shape``, sorted
    indices >= 1."""
    nd = len(shape)
    if any(not -nd <= a < nd for a in axes):
        raise ValueError(f"{name}: axis {axis} is out of range for an input of shape "
                         f"{shape} (rank {nd})")
    res = tuple(sorted(a % nd for a in axes))
    if len(set(res)) != len(res):
        raise ValueError(f"{name}: axis {axis} names an axis twice for an input of shape "
                         f"{shape}")
    if 0 in res:
        raise ValueError(f"{name}: axis {axis} includes the batch axis of an input of "
                         f"shape {shape}; LayerNorm normalises each example on its own")
    return res


def trailing(x: Array, res: tuple[int, ...]) -> bool:
    """The normalised axes ``res`` are x's last ones: x runs as (rows, S)."""
    return res == tuple(range(x.ndim - len(res), x.ndim))


# ---------------------------------------------------------------------------- running state
# BatchNorm's state: {'mean': (C,), 'var': (C,)} float32; with momentum=None (the cumulative
# average) also 'count', the training batches seen, a 0-d int64 array (PyTorch's
# num_batches_tracked). The default layout stays two vectors: checkpoints hold it.

_COUNT_END = 2**63 - 1  # the next count must be an int64 too


def fresh_state(c: int, counted: bool) -> dict[str, Array]:
    """The running statistics before training: mean 0, variance 1, count 0 when counted."""
    state = {"mean": np.zeros(c, np.float32), "var": np.ones(c, np.float32)}
    if counted:
        state["count"] = np.zeros((), np.int64)
    return state


def running_stats(name: str, state: Any, shape: tuple[int, ...],
                  counted: bool) -> tuple[list[Array], int]:
    """``([mean, var], count)`` of a BatchNorm state, checked (count 0 when not counted);
    errors name the layer."""
    keys = ("mean", "var", "count") if counted else ("mean", "var")
    _keyed(name, state, keys, "state")
    vectors = channel_vectors(name, state if not counted else
                              {"mean": state["mean"], "var": state["var"]},
                              ("mean", "var"), "state", shape)
    return vectors, (_count(name, state["count"]) if counted else 0)


def _count(name: str, count: Any) -> int:
    """``state['count']`` as an int in [0, 2**63 - 1): a 0-d integer array (or NumPy or
    Python integer); a whole float too, as a state mapped through float64 holds it."""
    c = count.item() if isinstance(count, np.generic) or (
        isinstance(count, np.ndarray) and count.shape == ()) else count
    if type(c) is float and c.is_integer():
        c = int(c)
    if type(c) is not int:
        got = (f"an array of shape {count.shape} and dtype {count.dtype}"
               if isinstance(count, np.ndarray) else f"{count!r} ({type(count).__name__})")
        raise TypeError(f"{name}: state['count'] must be the number of training batches "
                        f"seen, an int (a 0-d int64 array, as init gives it), got {got}")
    if not 0 <= c < _COUNT_END:
        raise ValueError(f"{name}: state['count'] (the number of training batches seen) must "
                         f"be in [0, 2**63 - 1), got {c}; pass the state init gave, or one "
                         f"training returned")
    return c


def moved(running: list[Array], count: int, mu: Array, var: Array, m: int,
          momentum: float | None) -> dict[str, Array]:
    """The state after a training batch of ``m`` values per channel with mean ``mu`` and
    biased variance ``var``, as PyTorch moves it: ``new = (1 - f)·old + f·batch`` with
    ``f = momentum``, or ``f = 1/(count + 1)`` without one (then the running statistics are
    the plain mean over the batches seen, and the count moves on); the running variance
    estimates the population's, hence ``m/(m - 1)``. Each in the old state's dtype. An empty
    batch (m = 0) moves only the count."""
    old_mean, old_var = running
    if m == 0:  # an empty batch: PyTorch keeps the statistics, and counts the batch
        kept = {"mean": old_mean, "var": old_var}
        return kept if momentum is not None else {**kept, "count": np.asarray(count + 1,
                                                                               np.int64)}
    f = momentum if momentum is not None else 1 / (count + 1)
    new = {"mean": ((1 - f) * old_mean + f * mu.reshape(-1)).astype(old_mean.dtype, copy=False),
           "var": ((1 - f) * old_var + f * (m / (m - 1)) * var.reshape(-1))
           .astype(old_var.dtype, copy=False)}
    if momentum is None:
        new["count"] = np.asarray(count + 1, np.int64)
    return new
