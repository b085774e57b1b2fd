"""AlphaDropout and FeatureAlphaDropout: PyTorch's dropout for self-normalising (SELU)
networks, which keeps a zero-mean, unit-variance input's mean and variance.

A dropped entry is set to SELU's negative saturation ``-α' = -λ_selu·α_selu`` (not 0),
then every entry goes through the affine map that restores the moments: with ``p`` the
rate, ``a = 1 / sqrt((α'² p + 1)(1 - p))`` and ``b = a·α'·p``,
``y = a·(x·m - α'(1 - m)) + b``: ``a·x + b`` where kept (``m = 1``), ``b - a·α'`` where
dropped. vjp: ``dx = a·m·dy``. Inference (``train=False``) is the identity (integer
inputs as float32, as the activations give them), and ``train=True`` needs ``key=``, as
``Dropout``'s. The mask is drawn in float32 whatever the input's dtype, as Dropout's, so
a float64 rerun drops the same entries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import real_arg
from funcdl.layers._step import POSITIONWISE
from funcdl.layers.activations_extra import _SELU_ALPHA, _SELU_SCALE
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    no_params,
)
from funcdl.layers.core import keep_mask

__all__ = ["AlphaDropout", "FeatureAlphaDropout"]

_ALPHA_P = _SELU_SCALE * _SELU_ALPHA  # λ_selu·α_selu, SELU's limit at -inf


def alpha_affine(rate: float) -> tuple[float, float, float]:
    """``(a, b, dropped)``: kept entries become ``a·x + b``, dropped ones ``dropped``."""
    a = 1.0 / math.sqrt((_ALPHA_P * _ALPHA_P * rate + 1.0) * (1.0 - rate))
    b = a * _ALPHA_P * rate
    return a, b, b - a * _ALPHA_P


def apply_mask(x: Array, keep: Array, rate: float,
               affine: tuple[float, float, float] | None = None) -> tuple[Array, Array]:
    """``(y, a·m)`` for a float ``x`` and a boolean ``keep`` mask broadcasting against it:
    the forward at a given mask, and the factor its vjp multiplies ``dy`` by. ``affine``:
    ``alpha_affine(rate)``, if the caller has it."""
    a, b, dropped = alpha_affine(rate) if affine is None else affine
    dtype = x.dtype
    scale = keep * dtype.type(a)  # a·m, in x's float dtype
    shift = np.where(keep, dtype.type(b), dtype.type(dropped))  # mask's small shape only
    with np.errstate(invalid="ignore", over="ignore"):  # as Dropout: inf·0 NaN, as torch
        y = x * scale
        y += shift
    return y, scale


def _alpha(ctor: str, rate: float, feature: bool) -> Layer:
    rate = real_arg(rate, ctor, "rate (the fraction dropped)", low=0.0, high=1.0,
                    open_high=True, hint="; pass a rate in [0, 1), e.g. 0.1")
    name = f"{ctor}({rate})"
    affine = alpha_affine(rate)  # once per layer, not per call

    def mask_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], *(1,) * (len(shape) - 2), shape[-1]) if feature else shape

    def draw(x: Array, key: Any, train: Any) -> Array | None:
        """The boolean mask (None when nothing is dropped), ``(N, 1, ..., 1, C)`` for the
        feature variant: one draw per example and channel."""
        if feature and x.ndim < 2:
            raise ValueError(f"{name}: expected an input (N, ..., C) of rank >= 2 (one draw "
                             f"per example and channel, the last axis), got shape "
                             f"{x.shape}; for whole entries use AlphaDropout")
        return keep_mask(name, x.shape, key, train, rate, mask_shape)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        xa = as_floats(name, x)
        mask = draw(xa, key, train)
        return xa if mask is None else apply_mask(xa, mask, rate, affine)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        xa = as_floats(name, x)
        mask = draw(xa, key, train)
        if mask is None:
            return xa, lambda dy: (params, check_cotangent(name, dy, xa.shape, xa.dtype))
        y, scale = apply_mask(xa, mask, rate, affine)
        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free
        return y, lambda dy: (params, check_cotangent(name, dy, y_shape, y_dtype) * scale)

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        return check_in_shape(name, in_shape, min_rank=2 if feature else 0), ()

    return Layer(init, apply, vjp, name=name, step=POSITIONWISE)  # inference: y = x


def AlphaDropout(rate: float) -> Layer:
    """PyTorch's ``nn.AlphaDropout(p=rate)``, any shape: each entry dropped independently.
    forward (train): ``y = a·x + b`` kept, ``b - a·α'`` dropped (module docstring);
    vjp: ``dx = a·m·dy``; identity at inference. ``rate`` in [0, 1)."""
    return _alpha("AlphaDropout", rate, feature=False)


def FeatureAlphaDropout(rate: float) -> Layer:
    """PyTorch's ``nn.FeatureAlphaDropout(p=rate)``, channels last: ``(N, ..., C)``, whole
    channels dropped, one draw per ``(n, c)`` shared over the other axes (torch's
    ``(N, C, 1, 1)`` noise in NCHW). Forward and vjp as AlphaDropout's."""
    return _alpha("FeatureAlphaDropout", rate, feature=True)
