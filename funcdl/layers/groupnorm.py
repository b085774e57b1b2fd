"""GroupNorm: PyTorch's ``nn.GroupNorm`` on channels-last input (N, ..., C).

The C channels split into ``num_groups`` contiguous groups of C/G; each example's group is
normalised over its channels and every spatial axis, then scaled and shifted per channel.
No running statistics, so no state: training and inference compute alike. G = 1 is
LayerNorm over (..., C) with per-channel params; G = C is instance normalisation
(InstanceNorm, in instancenorm.py, builds it with C read at ``init``: ``group_norm``).

The input runs as (N, S, C), S the spatial sizes' product. A statistic sums over s by
``_sums.rows_sum``: one BLAS product per example up to ``CASCADE`` positions (``ones(S) @
x[n]``: 2-9x NumPy's sum over a middle axis on (32..1024, 16..784, 16..256) float32), in
blocks past it (one product adds the S values in turn: over 1024 x 1024 pixels of 1e4 +
0.01·N(0, 1) its float32 mean was off by σ, x̂ by 0.7), then over each group's channels on
the small (N, C); the per-group
values are expanded back to (N, 1, C), so each full-size step is one broadcast along the
contiguous channels. Float32 in, float32 out; the statistics, their overflow and their
refinement are BatchNorm's and LayerNorm's (``_norm_stats.moments``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, call_name, eps_arg, int_arg, nearest_divisors
from funcdl.layers import _per_example as per_example
from funcdl.layers._affine import fixed_affine
from funcdl.layers._norm_stats import channel_vectors, compute_dtype, moments
from funcdl.layers._params import in_param_dtypes, weak_dtype
from funcdl.layers._sums import block_sum, chan, dot, ones, product, rows_sum
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
)

__all__ = ["GroupNorm", "group_norm"]


def GroupNorm(num_groups: int, eps: float = 1e-5, affine: bool = True) -> Layer:
    """Group normalisation of channels-last input (N, ..., C), PyTorch's ``nn.GroupNorm``
    (which takes (N, C, ...)): the channels in ``num_groups`` contiguous groups of C/G.

    params: ``{'scale': ones(C), 'bias': zeros(C)}`` (C from ``in_shape``); no state.
    forward: ``y = scale·x̂ + bias``, ``x̂ = (x - μ)/sqrt(σ² + eps)``, μ and (biased) σ² of
    each example's group, over its C/G channels and all spatial axes;
    vjp: ``dx = (g - mean(g) - x̂·mean(g·x̂))/sqrt(σ² + eps)`` with ``g = dy·scale``, means
    over the group; ``dscale = Σ dy·x̂``, ``dbias = Σ dy``, sums over all axes but C.
    ``affine=False``, as PyTorch's: no params (``()``), ``y = x̂``. A C that is not a
    multiple of ``num_groups`` is a ValueError, at ``init`` and at ``apply``.
    """
    groups = int_arg(num_groups, "GroupNorm", "num_groups", 1)
    eps = eps_arg(eps, "GroupNorm", "num_channels",
                  f"so torch's GroupNorm({groups}, C) is GroupNorm({groups}) here, with "
                  f"eps 1e-5")
    affine = bool_arg(affine, "GroupNorm", "affine")
    name = call_name("GroupNorm", (groups,), eps=(eps, 1e-5), affine=(affine, True))
    return group_norm(name, groups, eps, affine)


def group_norm(name: str, groups: int | None, eps: float, affine: bool) -> Layer:
    """GroupNorm's layer, its arguments checked; ``groups`` None is one group per channel
    (InstanceNorm: C groups, C known at ``init``), which also needs a spatial axis."""

    def channels(shape: tuple[Any, ...]) -> int:
        """C of an input (or ``in_shape``) of ``shape``: known, > 0, G groups' worth."""
        if groups is None:
            _instance_spatial(name, shape)
        if len(shape) < 2:
            raise ValueError(f"{name}: expected an input of rank >= 2, batch first and "
                             f"channels last ((N, C) or (N, ..., C)), got shape {shape}")
        c = shape[-1]
        if c is None or c == 0:
            raise ValueError(f"{name}: the channel axis (the last) must be a known size > 0, "
                             f"got shape {shape}")
        if groups is not None and c % groups:
            raise ValueError(f"{name}: C = {c} channels (the last axis of shape {shape}) do "
                             f"not split into num_groups = {groups} groups of equal size; "
                             f"num_groups must divide C (num_groups="
                             f"{nearest_divisors(c, groups)} would)")
        return int(c)

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        c = channels(shape)
        return shape, {"scale": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}

    def prepare(params: Any, x: Any) -> tuple[Array, Array, Array, Array, int]:
        """The input and as (N, S, C), scale and bias, in the computation dtype, and m,
        the values per group (at least 1: an empty S has nothing to divide)."""
        x = as_array(name, x, weak_dtype(params, "scale", name, ("scale", "bias")))
        if x.ndim < (2 if groups is not None else 3):  # the rank's error before the C check
            channels(x.shape)
        scale, bias = channel_vectors(name, params, ("scale", "bias"), "params",
                                      fits=x.shape[-1:])
        if scale.ndim != 1:
            raise ValueError(f"{name}: params['scale'] must be a vector (one entry per "
                             f"channel), got shape {scale.shape}")
        if x.shape[-1] != scale.shape[0]:
            raise ValueError(f"{name}: expected {scale.shape[0]} channels on the last axis as "
                             f"the params were initialised, got an input of shape {x.shape}")
        c = channels(x.shape)
        dt = compute_dtype(x, scale, bias)
        x = x.astype(dt, copy=False)
        s = math.prod(x.shape[1:-1])
        return (x, x.reshape(x.shape[0], s, c), scale.astype(dt), bias.astype(dt),
                max(s * (1 if groups is None else c // groups), 1))

    def group_mean(p: Array, m: int) -> Array:
        """Per-channel sums (N, C) to their group's mean over m values, as (N, 1, C). The
        group sums by BLAS: NumPy's sum over rows of C/G = 16 values took 7x as long, and
        where S is 1 the (N, C) sums are as large as the input."""
        n, c = p.shape
        if groups is None or groups == c:  # a group per channel: its sums are the group sums
            return (p / m).reshape(n, 1, c)
        cg = c // groups
        g = product(dot, p.reshape(n * groups, cg), ones(cg, p.dtype)).reshape(n, groups) / m
        out: Array = np.repeat(g, cg, axis=1).reshape(n, 1, c)
        return out

    # apply and vjp share it, so that apply == vjp(...)[0] bit for bit.
    def forward(x3: Array, scale: Array, bias: Array, m: int,
                keep: bool) -> tuple[Array, Array | None, Array, Array]:
        """``y = (x - μ)·k + bias`` with ``k = scale/sqrt(σ² + eps)`` on (N, S, C); returns
        ``(y, centred x (or None), 1/sqrt(σ² + eps), k)``, the last two as (N, 1, C)."""
        with np.errstate(over="ignore"):  # huge values: σ² = inf and x̂ = 0, as PyTorch's
            _, xc, sq, _, inv = moments(x3, lambda a: group_mean(rows_sum(a), m), np.subtract,
                                        eps)
            k = inv * scale if affine else inv
            y = np.multiply(xc, k, out=sq if keep else xc)  # buffers we own
        if affine:
            chan(np.add, y, bias, out=y)
        return y, (xc if keep else None), inv, k

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x, x3, scale, bias, m = prepare(params, x)
        return forward(x3, scale, bias, m, keep=False)[0].reshape(x.shape)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x_dtype = getattr(x, "dtype", None)
        x, x3, scale, bias, m = prepare(params, x)
        y3, xc, inv, k = forward(x3, scale, bias, m, keep=True)
        assert xc is not None
        y = y3.reshape(x.shape)

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free
        each = per_example.ON.get()

        def pullback(dy: Array) -> tuple[Any, Array]:
            """``dx = k·dy - xc·inv³·mean(g·xc) - inv·mean(g)``, k = inv·scale, the means
            over each group from per-channel sums Σ_s dy and Σ_s dy·xc (x̂ = xc·inv)."""
            dy = check_cotangent(name, dy, y_shape, y_dtype).reshape(xc.shape)
            t = dy * xc
            s_dy, s_t = rows_sum(dy), rows_sum(t)
            a = group_mean(s_dy * scale if affine else s_dy, m)
            a *= inv                                                   # inv·mean(g)
            b = group_mean(s_t * scale if affine else s_t, m)
            b *= inv                                                   # mean(g·x̂)
            dx = np.multiply(dy, k)
            if inv.dtype == np.float32 and np.fmin.reduce(inv, axis=None, initial=1.0) < 1e-12:
                # σ > 1e12 (moments' float64 statistics past 1e19): inv³ underflows in
                # float32, so xc·inv³·mean(g·xc) goes through x̂ = xc·inv, a pass more
                t = np.multiply(xc, inv, out=t)
                t *= b
                t *= inv
            else:
                b *= inv * inv                                         # inv³·mean(g·xc)
                t = np.multiply(xc, b, out=t)
            t += a
            dx -= t
            dx = in_input_dtype(dx.reshape(y_shape), x_dtype)  # x itself not kept
            if not affine:  # fixed_affine drops the params' grads: none made
                return (), dx
            if each:  # per example (_per_example): the (N, C) sums, not their sum over N
                return in_param_dtypes({"scale": s_t * inv[:, 0], "bias": s_dy}, params), dx
            return in_param_dtypes({"scale": block_sum(s_t * inv[:, 0], 1, 2),
                                    "bias": block_sum(s_dy, 1, 2)}, params), dx

        return y, pullback

    layer = Layer(init, apply, vjp, name=name)
    return layer if affine else fixed_affine(layer, lambda shape: (channels(shape),))


def _instance_spatial(name: str, shape: tuple[Any, ...]) -> None:
    """InstanceNorm's input (or ``in_shape``) must have a spatial axis, and more than one
    spatial element where the sizes are known (PyTorch's rule: over one, every output is
    the bias, whatever the input)."""
    if len(shape) < 3:
        raise ValueError(f"{name}: expected an input (N, ..., C) with a spatial axis between "
                         f"the batch and the channels (rank >= 3), got shape {shape}; "
                         f"PyTorch's F.instance_norm refuses one too (its InstanceNorm1d "
                         f"reads a 2-D input as one unbatched (C, L) example): pass one "
                         f"example of L positions as x[None], of shape (1, L, C), or "
                         f"normalise (N, C) features with LayerNorm")
    sizes = shape[1:-1]
    if None not in sizes and math.prod(sizes) == 1:
        raise ValueError(f"{name}: expected more than 1 spatial element per channel, got "
                         f"shape {shape} (PyTorch refuses it too: each channel's one value "
                         f"normalises to 0, whatever it is)")
