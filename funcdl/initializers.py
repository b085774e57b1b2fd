"""Weight initializers.

One convention: every name is a factory, called, returning ``init(key, shape, dtype)``::

    w = glorot_uniform()(key, (fan_in, fan_out), np.float32)

Fans follow the kernel layouts of funcdl's layers, ``(..., in, out)``: for a shape
``(*receptive, in, out)``, ``fan_in = in * prod(receptive)`` and
``fan_out = out * prod(receptive)`` (Dense ``(in, out)``, Conv2D ``(kh, kw, in, out)``).
A 1-D shape ``(n,)`` has ``fan_in = fan_out = n``.

Normal variants draw from a plain (untruncated) normal, as PyTorch's ``nn.init`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from funcdl import random

__all__ = [
    "Initializer",
    "fans",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "torch_default",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Initializer = Callable[..., NDArray[Any]]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a kernel shape ``(*receptive, in, out)``."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def zeros() -> Initializer:
    """All zeros."""
    def init(key: random.Key, shape: tuple[int, ...],
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
        del key
        return np.zeros(shape, dtype)
    return init


def ones() -> Initializer:
    """All ones."""
    def init(key: random.Key, shape: tuple[int, ...],
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
        del key
        return np.ones(shape, dtype)
    return init


def normal(std: float = 1e-2, mean: float = 0.0) -> Initializer:
    """N(mean, std²) (JAX's default std 1e-2)."""
    def init(key: random.Key, shape: tuple[int, ...],
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
        z = random.normal(key, shape, dtype)
        out: NDArray[Any] = (z * z.dtype.type(std) + z.dtype.type(mean)).astype(z.dtype)
        return out
    return init


def uniform(scale: float = 1e-2, low: float | None = None) -> Initializer:
    """U[0, scale), as JAX's ``uniform(scale)``; ``low=-scale`` gives U[-scale, scale)."""
    lo = 0.0 if low is None else float(low)

    def init(key: random.Key, shape: tuple[int, ...],
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
        return random.uniform(key, shape, lo, float(scale), dtype)
    return init


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Variance ``scale / n`` with n the fan_in, fan_out or their mean (``mode``), from a
    ``normal`` or ``uniform`` distribution with that variance (as JAX's, untruncated)."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"variance_scaling: mode must be fan_in, fan_out or fan_avg, got {mode!r}")
    if distribution not in ("normal", "uniform"):
        raise ValueError(
            f"variance_scaling: distribution must be normal or uniform, got {distribution!r}")

    def init(key: random.Key, shape: tuple[int, ...],
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
        fan_in, fan_out = fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        var = scale / max(n, 1)
        if distribution == "normal":
            return normal(math.sqrt(var))(key, shape, dtype)
        bound = math.sqrt(3.0 * var)
        return random.uniform(key, shape, -bound, bound, dtype)
    return init


def glorot_uniform() -> Initializer:
    """Xavier uniform: U(±sqrt(6 / (fan_in + fan_out)))."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    """Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    return variance_scaling(1.0, "fan_avg", "normal")


def he_uniform() -> Initializer:
    """Kaiming uniform (ReLU gain): U(±sqrt(6 / fan_in))."""
    return variance_scaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """Kaiming normal (ReLU gain): N(0, 2 / fan_in)."""
    return variance_scaling(2.0, "fan_in", "normal")


def lecun_normal() -> Initializer:
    """LeCun normal: N(0, 1 / fan_in)."""
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: U(±sqrt(3 / fan_in))."""
    return variance_scaling(1.0, "fan_in", "uniform")


def torch_default() -> Initializer:
    """PyTorch's ``nn.Linear``/``nn.Conv*`` weight init, kaiming_uniform(a=sqrt(5)):
    U(±1 / sqrt(fan_in)). (Its bias rule has the same bound with the layer's fan_in; Dense
    and Conv apply it when ``b_init`` is left as None.)"""
    return variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def orthogonal(scale: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix over ``(prod(shape[:-1]), shape[-1])``, from the QR of a
    normal matrix with the signs of R's diagonal folded in (uniform over orthogonal
    matrices), times ``scale``."""
    def init(key: random.Key, shape: tuple[int, ...],
             dtype: DTypeLike = np.float32) -> NDArray[Any]:
        if len(shape) < 2:
            raise ValueError(f"orthogonal: needs a shape of rank >= 2, got {tuple(shape)}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = random.normal(key, (max(rows, cols), min(rows, cols)), np.float64)
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)
    return init


# PyTorch's names for the same schemes.
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
