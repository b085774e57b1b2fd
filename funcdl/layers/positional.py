"""Positions for sequence models, added to ``(..., T, E)`` (T at axis -2, any leading axes):
a learned table (PositionalEmbedding) and Vaswani et al.'s fixed sinusoids
(SinusoidalPositionalEncoding). Attention alone is blind to order: a permutation of the
tokens permutes its output the same way. The input, and init's in_shape, has the batch
axis first, ``(N, ..., T, E)``, rank >= 3: a rank-2 array is ``(N, E)``, every layer's
``(batch, features)``, with no time axis (one sequence ``(T, E)`` is ``x[None]``)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import int_arg, real_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._params import drawn, initializer_arg, param_arrays, weak_dtype
from funcdl.layers._stepper import Stepper
from funcdl.layers._sums import block_sum
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    as_floats,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    no_params,
)

__all__ = ["PositionalEmbedding", "SinusoidalPositionalEncoding"]


def _fits(name: str, max_len: int | None, shape: Shape, fix: str) -> None:
    """A ValueError unless ``shape`` (rank >= 3, T at axis -2) has T <= ``max_len``."""
    t = shape[-2]
    if max_len is not None and t is not None and t > max_len:
        raise ValueError(f"{name}: the input has T={t} positions (axis -2 of shape {shape}), "
                         f"more than max_len={max_len}; {fix.format(t=t)}, or crop the "
                         f"sequences to {max_len}")


def _sequence_in_shape(name: str, in_shape: Any) -> Shape:
    """``in_shape`` checked as ``(N, ..., T, E)``: the batch axis first (DESIGN's rule for
    every in_shape), so rank >= 3. A rank-2 ``(N, E)`` has no time axis: read as ``(T, E)``
    its batch rows would each get another position."""
    shape = check_in_shape(name, in_shape)
    if len(shape) < 3:
        hint = (f"; {shape} is (N, E), a batch without a time axis: one sequence of T "
                f"steps is (1, T, {shape[-1]})" if len(shape) == 2 else "")
        if len(shape) == 1 or shape[-1] == 1:  # one number per example: a timestep?
            hint += ("; a diffusion model's timesteps t (N,) to sinusoids (N, dim) is "
                     "SinusoidalTimeEmbedding(dim)")
        raise ValueError(f"{name}: expected an in_shape (N, T, E), the batch axis first, "
                         f"then T positions of E features (rank >= 3), got {shape} "
                         f"(rank {len(shape)}){hint}")
    return shape


def _sequence(name: str, x: Array) -> Array:
    """``x`` of rank >= 3, or a ValueError saying the layout taken: a rank-2 x is (N, E),
    a batch without a time axis, which read as (T, E) gave each row another position."""
    if x.ndim < 3:
        raise ValueError(f"{name}: expected a batch of sequences (..., T, E) of rank >= 3, "
                         f"the batch axis first, (N, T, E), with T positions of E features, "
                         f"got shape {x.shape}; one sequence (T, E) is x[None]")
    return x


def _stepped_rank(name: str, x: Any) -> None:
    """A TypeError unless ``x`` is (N, 1, E): these layers' time axis is -2, a decode's is
    1 (``layers.decode``), and on (N, T, ..., E) a step would add position t's row to what
    the full apply gives the positions along axis -2."""
    ndim = np.ndim(x)
    if ndim != 3:
        raise TypeError(f"{name} cannot be stepped on an input of rank {ndim}: it adds its "
                        f"positions along axis -2, and decoding steps along axis 1, which "
                        f"are one axis only for (N, T, E)")


def PositionalEmbedding(max_len: int, *,
                        w_init: initializers.Initializer | None = None) -> Layer:
    """Add a learned position table: ``(N, ..., T, E) -> (N, ..., T, E)``, ``T <= max_len``,
    rank >= 3, the batch first (a rank-2 x is (N, E): no time axis).

    params: ``{'pos': (max_len, E)}``, E from in_shape's last axis.
    forward: ``y[..., t, :] = x[..., t, :] + pos[t]``;
    vjp: ``dx = dy``, ``dpos[t] = Σ_{leading axes} dy[..., t, :]`` for t < T, 0 beyond.
    ``w_init``: the table's initializer (the keyword Dense and Embedding use). Default:
    N(0, 0.02²), the ``posemb_init`` Flax's AddPositionEmbs is given in its ViT/transformer
    code (BERT's 0.02): the positions start as a small perturbation of the token vectors
    they are added to, not N(0, 1) (Embedding's), which would swamp them.
    Integer inputs take the table's dtype, as Dense's do.
    """
    max_len = int_arg(max_len, "PositionalEmbedding", "max_len", minimum=1)
    name = f"PositionalEmbedding({max_len})"
    pos_init = initializer_arg(name, "w_init", w_init) or initializers.normal(0.02)
    fix = "build PositionalEmbedding({t}) (or longer) for sequences this long"

    def layer_init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = _sequence_in_shape(name, in_shape)
        e = shape[-1]
        if e is None or e == 0:
            raise ValueError(f"{name}: the last axis of in_shape (E, the features) must be a "
                             f"known size > 0, got {shape}")
        _fits(name, max_len, shape, fix)
        key = random.check_key(key, name)  # else named after the initializer that reads it
        return shape, {"pos": drawn(name, "w_init", pos_init, key, (max_len, e))}

    def check(params: Any, x: Any) -> tuple[Array, Array]:
        """``(pos, x)``: the table checked, the input converted (integers cast to its
        dtype, Python floats taking it) and checked against it."""
        xa = as_array(name, x, weak_dtype(params, "pos", name))
        (pos,) = param_arrays(name, params, ("pos",))
        if pos.ndim != 2 or pos.shape[0] != max_len or pos.shape[1] == 0:
            raise ValueError(f"{name}: params['pos'] must have shape ({max_len}, E) as init "
                             f"returns it, got {pos.shape}")
        xa = _sequence(name, cast_ints(xa, pos.dtype))
        if xa.shape[-1] != pos.shape[1]:
            raise ValueError(f"{name}: expected an input (..., T, {pos.shape[1]}) as the "
                             f"params were initialised (E={pos.shape[1]}), got shape "
                             f"{xa.shape}")
        _fits(name, max_len, xa.shape, fix)
        return pos, xa

    def forward(params: Any, x: Any) -> tuple[Array, Array, Array]:
        """``(y, pos, x)``: the output, the table and the input, checked."""
        pos, xa = check(params, x)
        return xa + pos[:xa.shape[-2]], pos, xa

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(params, x)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        y, pos, xa = forward(params, x)
        y_shape, y_dtype, x_dtype = y.shape, y.dtype, xa.dtype
        each = per_example.ON.get()

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            if each:  # per example (_per_example): the sum over the example's other axes
                n, t, e = y_shape[0], y_shape[-2], y_shape[-1]
                dpos = np.zeros((n, *pos.shape), pos.dtype)
                dpos[:, :t] = dy.reshape(n, math.prod(y_shape[1:-2]), t, e).sum(axis=1)
                return {"pos": dpos}, (in_input_dtype(dy, x_dtype) if need_dx else None)
            dpos = np.zeros(pos.shape, pos.dtype)  # in the table's dtype, as JAX gives it
            # Σ over the leading axes as BLAS's blocked sum (block_sum): one or two
            # matrix-vector products, not NumPy's slice-by-slice reduction
            dpos[:y_shape[-2]] = block_sum(dy, dy.ndim - 2, dy.ndim)
            return {"pos": dpos}, (in_input_dtype(dy, x_dtype) if need_dx else None)

        return y, pullback

    def start(layer: Any, params: Any, x: Any, length: int, state: Any) -> tuple[Any, Any]:
        del layer, state
        _stepped_rank(name, x)
        if length > max_len:
            raise ValueError(f"{name}: decoding up to max_len={length} positions needs a "
                             f"table of as many, this one has {max_len}; {fix.format(t=length)}")
        return forward(params, x)[0], ()

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        del layer, state
        _stepped_rank(name, x)
        pos, xa = check(params, x)  # one position: y = x + pos[t]
        return xa + pos[t:t + 1], cache

    return Layer(layer_init, apply, vjp, name=name, dx_optional=True,
                 step=Stepper(start, step))


@functools.lru_cache(maxsize=16)
def _table(length: int, e: int, base: float, dtype: np.dtype[Any]) -> Array:
    """The read-only (length, e) table ``PE[p, 2i] = sin(p / base^(2i/e))``, ``PE[p, 2i+1] =
    cos(p / base^(2i/e))``, computed in float64 and then cast to ``dtype``: float32's own
    ``p / base^(2i/e)`` is off by up to an ulp of p (1e-4 rad at p = 2000), an error the
    sine carries over whole. Row p depends on p alone, never on ``length``."""
    angle = np.arange(length, dtype=np.float64)[:, None] / np.power(
        base, np.arange(0, e, 2, dtype=np.float64) / e)
    pe = np.empty((length, e), np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, :e // 2])  # E odd: the last column's cos has no place
    out = pe.astype(dtype, copy=False)
    out.flags.writeable = False  # shared by every call: nobody may write to it
    return out


def _sinusoids(t: int, e: int, base: float, dtype: np.dtype[Any],
               max_len: int | None = None) -> Array:
    """The first t rows of ``_table``, a read-only view. The table's length is rounded up
    to a power of two (>= 64, capped at ``max_len``) so that batches of varying T share
    a few cached tables instead of caching, and computing, one per T."""
    length = max(64, 1 << (t - 1).bit_length())
    if max_len is not None:
        length = min(length, max_len)  # t <= max_len: _fits has refused longer inputs
    return _table(length, e, base, np.dtype(dtype))[:t]


def SinusoidalPositionalEncoding(max_len: int | None = None, *,
                                 base: float = 10000.0) -> Layer:
    """Add Vaswani et al.'s fixed sinusoids: ``(N, ..., T, E) -> (N, ..., T, E)``; no params;
    rank >= 3, the batch first (a rank-2 x is (N, E): no time axis).

    forward: ``y = x + PE[:T]``, ``PE[t, 2i] = sin(t / base^(2i/E))``,
    ``PE[t, 2i+1] = cos(t / base^(2i/E))``; vjp: ``dx = dy``.
    E odd: the last column is the sine of the formula (``2i = E - 1``), its cosine dropped.
    ``max_len`` (None: any T) refuses longer sequences, as a learned table would. PE is
    computed in float64 and cast to x's dtype (integers: float32), and cached.
    """
    where = "SinusoidalPositionalEncoding"
    if max_len is not None:
        max_len = int_arg(max_len, where, "max_len", minimum=1)
    base = real_arg(base, where, "base", low=1.0, open_low=True,
                    fix="; the wavelengths run from 2π to 2π·base, e.g. base=10000.0")
    args = [] if max_len is None else [str(max_len)]
    if base != 10000.0:
        args.append(f"base={base:g}")
    name = f"{where}({', '.join(args)})"
    fix = f"build {where}(max_len={{t}}) (or None: any length)"

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = _sequence_in_shape(name, in_shape)
        _fits(name, max_len, shape, fix)
        return shape, ()

    def check(params: Any, x: Any) -> Array:
        no_params(name, params)
        xa = _sequence(name, as_floats(name, x))
        _fits(name, max_len, xa.shape, fix)
        return xa

    def forward(params: Any, x: Any) -> Array:
        xa = check(params, x)
        y: Array = xa + _sinusoids(xa.shape[-2], xa.shape[-1], base, xa.dtype, max_len)
        return y

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(params, x)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        y = forward(params, x)
        y_shape, y_dtype = y.shape, y.dtype

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            return params, (dy if need_dx else None)

        return y, pullback

    def start(layer: Any, params: Any, x: Any, length: int, state: Any) -> tuple[Any, Any]:
        del layer, state
        _stepped_rank(name, x)
        if max_len is not None and length > max_len:
            raise ValueError(f"{name}: decoding up to max_len={length} positions, more than "
                             f"its max_len={max_len}; {fix.format(t=length)}")
        return forward(params, x), ()

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        del layer, state
        _stepped_rank(name, x)
        xa = check(params, x)  # one position: y = x + PE[t], the row of the full table
        y: Array = xa + _sinusoids(t + 1, xa.shape[-1], base, xa.dtype, max_len)[t:]
        return y, cache

    return Layer(init, apply, vjp, name=name, dx_optional=True, step=Stepper(start, step))
