"""The statistics behind BatchNorm and LayerNorm: their moments by two passes, refined
where the mean dwarfs the spread; the computation dtype; the per-channel vectors of
params and state, checked; whether normalised axes are the trailing ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl.layers._params import param_arrays, plain
from funcdl.layers.base import Array

__all__ = ["channel_vectors", "compute_dtype", "moments", "trailing"]


def moments(x: Array, mean_of: Callable[[Array], Array], minus: Callable[..., Array],
            eps: float) -> tuple[Array, Array, Array, Array, Array]:
    """``(μ, x - μ, (x - μ)², σ², 1/sqrt(σ² + eps))`` by two passes. Where |μ| exceeds 64 σ, one
    more pass adds the mean of x - μ to μ (the corrected two-pass algorithm): otherwise a
    float32 μ one ulp off, as a row constant at 1e4 gives, exceeds sqrt(eps) and x̂ comes
    out near ±1 instead of 0 (PyTorch's Welford moments give 0). Call under an errstate
    that ignores overflow."""
    mu = mean_of(x)
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
    if not isinstance(tree, dict) or set(tree) != set(keys):
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"{name}: expected {what} as a dict with keys {list(keys)} (from "
                         f"init), got {got}")
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
            out.append(plain(a))
    if shape is None:
        shapes = [a.shape for a in out]
        shape = fits if fits in shapes and len(set(shapes)) > 1 else shapes[0]
    for k, a in zip(keys, out):
        if a.shape != shape:
            raise ValueError(f"{name}: {what}['{k}'] has shape {a.shape}, expected {shape}")
    return out


def trailing(x: Array, res: tuple[int, ...]) -> bool:
    """The normalised axes ``res`` are x's last ones: x runs as (rows, S)."""
    return res == tuple(range(x.ndim - len(res), x.ndim))
