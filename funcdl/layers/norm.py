"""Normalisation layers: BatchNorm (stateful: running statistics), and LayerNorm from
layernorm.py, re-exported (GroupNorm is in groupnorm.py).

BatchNorm keeps its running mean and variance in an explicit ``state``, separate from the
trainable ``params``, passed in and returned, never mutated (the equinox way)::

    out_shape, params, state = bn.init(key, in_shape)
    y, state = bn.apply(params, x, state=state, train=True)      # batch statistics
    y, _ = bn.apply(params, x, state=state)                      # running statistics

Every computation runs in the input's and the params' floating dtypes promoted, as Dense's
(float32 in with init's float32 params, float32 out; float64 params make it float64):
per-channel vectors are cast to it once, and scalars are Python numbers, which NumPy 2
never lets promote an array.

Where float32 squares overflow (|x - μ| past ~1e19: σ² = inf, x̂ = 0 in PyTorch, silently)
the statistics are taken again in float64 (``_norm_stats.moments``), under a fresh
``np.errstate(over="ignore")`` (1 µs; an instance cannot be entered twice). Where the mean
itself overflows (values near the dtype's maximum) x̂ is NaN and NumPy's "invalid value"
warning stands: a NaN from finite inputs is never silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, call_name, int_arg, real_arg, train_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._affine import fixed_affine
from funcdl.layers._norm_stats import (
    channel_axis,
    channel_vectors,
    compute_dtype,
    fresh_state,
    moments,
    moved,
    running_stats,
)
from funcdl.layers._params import in_param_dtypes, weak_dtype
from funcdl.layers._slices import batch_sum
from funcdl.layers._step import LAST_AXIS
from funcdl.layers._sums import block_sum, chan
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
)
from funcdl.layers.layernorm import LayerNorm as LayerNorm

__all__ = ["BatchNorm", "LayerNorm"]  # LayerNorm from layernorm.py, re-exported

_MISSING: Any = object()


# ---------------------------------------------------------------------------- BatchNorm

def BatchNorm(momentum: float | None = 0.1, eps: float = 1e-5, axis: int = -1,
              affine: bool = True, track_running_stats: bool = True) -> Layer:
    """Batch normalisation over every axis except the channel ``axis`` ((N, C), NHWC, ...).

    params: ``{'scale': ones(C), 'bias': zeros(C)}``; state: ``{'mean': zeros(C),
    'var': ones(C)}`` (float32). Stateful: ``apply(params, x, *, state, train=False) ->
    (y, new_state)`` and ``vjp(...) -> (y, pullback, new_state)``.
    forward: ``y = scale·x̂ + bias``, ``x̂ = (x - μ)/sqrt(σ² + eps)``, with (μ, σ²) the batch's
    (biased σ²) when ``train`` else the running ones; in training the state moves as PyTorch's:
    ``new = (1 - momentum)·old + momentum·batch``, with the unbiased batch variance, in the
    old state's dtype; inference returns the state object it was given.
    vjp (train): ``dx = scale/(m·sqrt(σ² + eps))·(m·dy - Σdy - x̂·Σ(dy·x̂))``,
    ``dscale = Σ dy·x̂``, ``dbias = Σ dy``, sums over the m entries per channel;
    vjp (inference) is the affine map's: ``dx = dy·scale/sqrt(σ² + eps)``.
    A call without ``state=`` raises TypeError; training on one value per channel, ValueError
    (as PyTorch); on an empty batch (N = 0), an empty output, zero grads, and the running
    statistics kept (PyTorch's; its count of batches moves on).
    ``affine=False``, as PyTorch's: no params (``()``), ``y = x̂``.
    ``momentum=None``, as PyTorch's: the running statistics are the plain (cumulative) mean
    of the batches' (``f = 1/n`` for the n-th batch in place of momentum); the state holds
    the batches seen as well: ``{'mean', 'var', 'count'}``, count a 0-d int64 array (0).
    ``track_running_stats=False``, as PyTorch's: batch statistics in training and in
    inference alike, no running statistics: a stateless layer (``stateful`` False, plain
    ``init``/``apply``/``vjp`` signatures, ``train`` ignored).
    """
    if momentum is not None:
        momentum = real_arg(momentum, "BatchNorm", "momentum", low=0.0, high=1.0,
                            hint=", or None (a cumulative average)")
    eps = real_arg(eps, "BatchNorm", "eps", low=0.0, open_low=True)
    axis = int_arg(axis, "BatchNorm", "axis", None)
    affine = bool_arg(affine, "BatchNorm", "affine")
    track = bool_arg(track_running_stats, "BatchNorm", "track_running_stats")
    name = call_name("BatchNorm", (), momentum=(momentum, 0.1), eps=(eps, 1e-5),
                     axis=(axis, -1), affine=(affine, True), track_running_stats=(track, True))
    counted = momentum is None

    def init(key: random.Key, in_shape: Shape) -> tuple[Any, ...]:
        del key
        shape = check_in_shape(name, in_shape)
        c = shape[channel_axis(name, axis, shape)]
        if c is None or c == 0:
            raise ValueError(f"{name}: the channel axis {axis} of in_shape must be a known "
                             f"size > 0, got {shape}")
        params = {"scale": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
        return (shape, params, fresh_state(c, counted)) if track else (shape, params)

    def prepare(params: Any, x: Any) -> Any:
        """The input and per-channel vectors in the computation dtype, the vectors' broadcast
        shape, the per-channel sum ``total(a)``, and the entries per channel m."""
        x = as_array(name, x, weak_dtype(params, "scale", name, ("scale", "bias")))
        ax = channel_axis(name, axis, x.shape)
        scale, bias = channel_vectors(name, params, ("scale", "bias"), "params",
                                      fits=(x.shape[ax],))
        if scale.ndim != 1:
            raise ValueError(f"{name}: params['scale'] must be a vector (one entry per "
                             f"channel), got shape {scale.shape}")
        if x.shape[ax] != scale.shape[0]:
            raise ValueError(f"{name}: expected {scale.shape[0]} channels on axis {axis} as "
                             f"the params were initialised, got an input of shape {x.shape}")
        dt = compute_dtype(x, scale, bias)
        bshape = tuple(x.shape[i] if i == ax else 1 for i in range(x.ndim))

        def total(a: Array) -> Array:
            return block_sum(a, ax, ax + 1).reshape(bshape)

        if x.shape[ax] == 0:  # (only without params, which would not fit)
            raise ValueError(f"{name}: the channel axis {axis} must have size > 0, got an "
                             f"input of shape {x.shape}")
        x = x.astype(dt, copy=False)
        scale, bias = scale.astype(dt).reshape(bshape), bias.astype(dt).reshape(bshape)
        return x, total, bshape, x.size // x.shape[ax], scale, bias

    def given(state: Any) -> None:
        if state is _MISSING or state is None:
            raise TypeError(
                f"{name} is stateful: pass state= (the third value init returns), e.g. "
                f"`_, params, state = layer.init(key, in_shape)`, then "
                f"`y, state = layer.apply(params, x, state=state, train=True)`")

    # apply and vjp share these two forwards, so that apply == vjp(...)[0] bit for bit.
    def train_forward(x: Array, total: Callable[[Array], Array], own_m: int, scale: Array,
                      bias: Array, keep: bool) -> tuple[Array, Array, Array, Any, Array, int]:
        """``y = (x - μ)·k + bias`` with ``k = scale/sqrt(σ² + eps)``; returns
        ``(y, μ, σ², centred x (or None), 1/sqrt(σ² + eps), m)``. ``own_m``: this part's
        entries per channel; m, the whole batch's, under BatchThreads or a synchronised
        data_parallel summed over the parts with Σx, in one exchange; μ and σ² the whole
        batch's."""
        with np.errstate(over="ignore"):  # (huge values: moments' float64 path)
            first, whole_m = batch_sum(total(x), np.array(own_m))
        m = int(whole_m)
        if m == 0:  # an empty batch: an empty output and zero grads, as PyTorch's
            zero = np.zeros_like(scale)
            return np.empty_like(x), zero, zero, (np.empty_like(x) if keep else None), zero, 0
        if m < 2:
            whole = "" if m == own_m else " over the whole split batch"
            raise ValueError(f"{name}: Expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape} ({m} per channel{whole})")
        with np.errstate(over="ignore"):  # two passes: no E[x²] - E[x]² cancelling
            mu, xc, sq, var, inv_std = moments(
                x, lambda a: batch_sum(total(a))[0] / m,
                lambda a, b, out=None: chan(np.subtract, a, b, out=out), eps, mu=first / m)
            k = scale * inv_std
            y = chan(np.multiply, xc, k, out=sq if keep else xc)  # reuse a buffer we own
        if affine:  # else bias is 0: no pass adding it
            chan(np.add, y, bias, out=y)
        return y, mu, var, (xc if keep else None), inv_std, m

    def eval_forward(x: Array, bshape: tuple[int, ...], scale: Array, bias: Array,
                     running: list[Array]) -> tuple[Array, Array, Array]:
        """``y = (x - μ)·k + bias`` with the running μ, σ²; returns
        ``(y, μ, 1/sqrt(σ² + eps))``."""
        mean, var = (r.astype(x.dtype).reshape(bshape) for r in running)
        var_eps = var + eps
        if not np.minimum.reduce(var_eps, axis=None, initial=np.inf) > 0:  # NaN too
            raise ValueError(f"{name}: state['var'] holds a variance that is negative or "
                             f"NaN ({np.minimum.reduce(running[1], axis=None)}); running "
                             f"variances come from training (init gives ones): check the "
                             f"state passed, or a checkpoint it was loaded from")
        inv_std = 1 / np.sqrt(var_eps)
        k = scale * inv_std
        # centred first: x·k + (bias - μ·k) cancels where |μ| >> σ (2e-2 relative in float32
        # at μ = 1e6, σ = 1, against 1e-7), for one more pass
        y = chan(np.subtract, x, mean)
        chan(np.multiply, y, k, out=y)
        if affine:
            chan(np.add, y, bias, out=y)
        return y, mean, inv_std

    def train_vjp(params: Any, x_dtype: Any, x: Array, total: Callable[[Array], Array],
                  own_m: int, scale: Array, bias: Array
                  ) -> tuple[Array, Any, Array, Array, int]:
        """``(y, pullback, μ, σ², m)`` on the batch statistics (m: the whole batch's)."""
        # Residuals: the centred input xc and inv_std (x̂ = xc·inv_std is never stored: the
        # per-channel factors absorb it, one full-size product fewer).
        per_example.refuse(name, "in training its batch statistics mix the examples (at "
                                 "inference, train=False, it has per-example gradients)"
                           if track else "with track_running_stats=False it normalises by "
                           "the batch's statistics at every call, which mix the examples")
        y, mu, var, xc, inv_std, m = train_forward(x, total, own_m, scale, bias, keep=True)
        k = scale * inv_std

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            own_dbias, own_s = total(dy), total(dy * xc)         # Σ dy·x̂ = inv_std·s
            dbias, s = batch_sum(own_dbias, own_s, cotangent=True)  # all parts': dx's
            n = max(m, 1)  # an empty batch: Σ are 0, dx empty
            # inv·s first: s holds xc, so the factor stays in float32's range past σ = 1e19
            dx = np.subtract(dy, chan(np.multiply, xc, inv_std * s / n * inv_std))
            chan(np.subtract, dx, dbias / n, out=dx)
            chan(np.multiply, dx, k, out=dx)
            if not affine:  # fixed_affine drops the params' grads: none made
                return (), in_input_dtype(dx, x_dtype)
            # this part's sums: BatchThreads and data_parallel add the parts' grads
            return (in_param_dtypes({"scale": (own_s * inv_std).reshape(-1),
                                     "bias": own_dbias.reshape(-1)}, params),
                    in_input_dtype(dx, x_dtype))

        return y, pullback, mu, var, m

    def apply(params: Any, x: Any, *, state: Any = _MISSING, key: Any = None,
              train: bool = False) -> tuple[Array, Any]:
        del key
        given(state)
        x, total, bshape, m, scale, bias = prepare(params, x)
        running, count = running_stats(name, state, (scale.size,), counted)
        if train_arg(train, name):
            y, mu, var, _, _, m = train_forward(x, total, m, scale, bias, keep=False)
            return y, moved(running, count, mu, var, m, momentum)
        return eval_forward(x, bshape, scale, bias, running)[0], state

    def vjp(params: Any, x: Any, *, state: Any = _MISSING, key: Any = None,
            train: bool = False) -> tuple[Array, Any, Any]:
        del key
        given(state)
        x_dtype = getattr(x, "dtype", None)
        x, total, bshape, m, scale, bias = prepare(params, x)
        running, count = running_stats(name, state, (scale.size,), counted)
        if train_arg(train, name):
            y, pullback, mu, var, m = train_vjp(params, x_dtype, x, total, m, scale, bias)
            return y, pullback, moved(running, count, mu, var, m, momentum)
        y, mean, inv_std = eval_forward(x, bshape, scale, bias, running)
        k = scale * inv_std
        each = per_example.ON.get()
        ax = channel_axis(name, axis, x.shape)
        kept = tuple(i for i in range(1, x.ndim) if i != ax)  # all but examples, channels

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def eval_pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dx = in_input_dtype(chan(np.multiply, dy, k), x_dtype)
            if not affine:  # no Σ (x - μ)·dy nor Σ dy for grads fixed_affine would drop
                return (), dx
            if each:  # per example (_per_example): Σ over the example's other axes
                t = np.multiply(chan(np.subtract, x, mean), dy)
                return (in_param_dtypes({"scale": t.sum(axis=kept) * inv_std.reshape(-1),
                                         "bias": dy.sum(axis=kept)}, params), dx)
            dscale = total(np.multiply(chan(np.subtract, x, mean), dy)) * inv_std
            return (in_param_dtypes({"scale": dscale.reshape(-1),
                                     "bias": total(dy).reshape(-1)}, params), dx)

        return y, eval_pullback, state

    # track_running_stats=False: the training path at every call, no state.
    def batch_apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x, total, _, m, scale, bias = prepare(params, x)
        y: Array = train_forward(x, total, m, scale, bias, keep=False)[0]
        return y

    def batch_vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x_dtype = getattr(x, "dtype", None)
        x, total, _, m, scale, bias = prepare(params, x)
        return train_vjp(params, x_dtype, x, total, m, scale, bias)[:2]

    # inference on running statistics acts on each position alone (the channels last);
    # without them every call normalises by its own batch, which mixes positions
    layer = (Layer(init, apply, vjp, stateful=True, name=name,
                   step=LAST_AXIS if axis == -1 else None) if track
             else Layer(init, batch_apply, batch_vjp, name=name))
    return layer if affine else fixed_affine(
        layer, lambda shape: (shape[channel_axis(name, axis, shape)],))
