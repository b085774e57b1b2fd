"""A diffusion model's timestep embedding: one scalar t per example to fixed sinusoids,
``(N,) -> (N, dim)``, the features a noise-prediction network adds into its hidden
activations (Ho et al. 2020's DDPM, and every U-Net after it). SinusoidalPositionalEncoding
adds a table to a sequence's T positions; this maps a batch of scalars, integer steps or
continuous times."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, int_arg, real_arg
from funcdl._blas import product
from funcdl.layers.base import (
    _F32,
    Array,
    Layer,
    Shape,
    as_array,
    check_cotangent,
    check_in_shape,
    no_params,
)

__all__ = ["SinusoidalTimeEmbedding"]


def SinusoidalTimeEmbedding(dim: int, *, flip_sin_to_cos: bool = False,
                            downscale_freq_shift: float = 1.0, scale: float = 1.0,
                            max_period: float = 10000.0) -> Layer:
    """Timesteps ``t (N,) -> (N, dim)``: diffusers' ``get_timestep_embedding`` with its
    arguments and defaults (Ho et al.'s DDPM: ``downscale_freq_shift=1``, sines first;
    diffusers' ``UNet2DModel`` passes ``flip_sin_to_cos=True, downscale_freq_shift=0``).
    No params.

    forward, ``H = dim // 2``: ``a_k = scale · t · f_k``, ``f_k = max_period^(-k/(H - shift))``
    (k < H), ``y = [sin a | cos a]`` (``[cos a | sin a]`` flipped), a zero column last when
    dim is odd; vjp (float t): ``dt = Σ_k scale·f_k (cos a_k · dy_sin,k - sin a_k ·
    dy_cos,k)``. Integer or boolean t are read as float32 numbers, as the activations read
    them (their dt too). The angles are computed in float64 (float32's ``t·f`` is off by an
    ulp of t, 6e-5 rad at t = 1000) and y cast to t's float dtype, float32 for integers: a
    float64 model passes float64 t.
    """
    where = "SinusoidalTimeEmbedding"
    dim = int_arg(dim, where, "dim", minimum=2)
    flip = bool_arg(flip_sin_to_cos, where, "flip_sin_to_cos")
    shift = real_arg(downscale_freq_shift, where, "downscale_freq_shift")
    scale = real_arg(scale, where, "scale")
    max_period = real_arg(max_period, where, "max_period", low=0.0, open_low=True)
    half = dim // 2
    if half - shift == 0:
        raise ValueError(f"{where}: dim={dim} with downscale_freq_shift={shift:g} divides "
                         f"by dim // 2 - shift = 0; pass dim >= 4 or downscale_freq_shift=0")
    opts = [f"flip_sin_to_cos={flip}" if flip else "",
            f"downscale_freq_shift={shift:g}" if shift != 1.0 else "",
            f"scale={scale:g}" if scale != 1.0 else "",
            f"max_period={max_period:g}" if max_period != 10000.0 else ""]
    name = f"{where}({', '.join([str(dim)] + [o for o in opts if o])})"
    # the angular rates scale·f_k, float64: shared by every call
    rates = scale * np.exp(-math.log(max_period) * np.arange(half) / (half - shift))
    first, second = (slice(half, 2 * half), slice(0, half)) if flip else (
        slice(0, half), slice(half, 2 * half))  # where sin, cos go

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        if len(shape) != 1:
            raise ValueError(f"{name}: expected an in_shape (N,), one timestep per example, "
                             f"got {shape}{_hint(shape)}")
        return (shape[0], dim), ()

    def forward(params: Any, t: Any) -> tuple[Array, Array, Array, np.dtype[Any]]:
        """``(y, sin a, cos a (N, H) float64, the float dtype of y and dt)``."""
        no_params(name, params)
        ta = as_array(name, t)
        if ta.ndim != 1:
            raise ValueError(f"{name}: expected t of shape (N,), one timestep per example, "
                             f"got shape {ta.shape}{_hint(ta.shape)}")
        if ta.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected integer or float timesteps, got dtype "
                            f"{ta.dtype}")
        t_dtype = ta.dtype if ta.dtype.kind == "f" else _F32
        angles = ta.astype(np.float64)[:, None] * rates  # integers exact, not through float32
        sin, cos = np.sin(angles), np.cos(angles)  # float64, the pullback's too
        y = np.zeros((len(ta), dim), t_dtype)
        y[:, first] = sin  # cast on assignment, after the float64 sine
        y[:, second] = cos
        return y, sin, cos, t_dtype

    def apply(params: Any, t: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(params, t)[0]

    def vjp(params: Any, t: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        y, sin, cos, t_dtype = forward(params, t)
        y_shape, y_dtype = y.shape, y.dtype

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            d = product(np.dot, dy[:, first] * cos - dy[:, second] * sin, rates)
            return params, d.astype(t_dtype, copy=False)

        return y, pullback

    return Layer(init, apply, vjp, name=name)


def _hint(shape: tuple[Any, ...]) -> str:
    if len(shape) == 2 and shape[1] == 1:
        return "; pass t[:, 0] for an (N, 1) column"
    if len(shape) == 0:
        return "; a single t for the whole batch is np.full(N, t)"
    return ""
