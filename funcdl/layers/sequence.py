"""Padded batches of sequences: ``Carry`` takes the key_padding_mask or the lengths past a
layer, so masked layers stack, and ``MaskedMean`` pools the valid steps into one vector.

A padded batch travels as a tuple ``(x, key_padding_mask)`` (N, T) bool, True at padding,
as ``MultiHeadAttention(masked=True)`` and ``TransformerEncoderLayer(masked=True)`` take it,
or ``(x, lengths)`` (N,) ints, as ``LSTM(lengths=True)`` and the other recurrent layers do.
Those layers return ``y`` alone; ``Carry(layer)`` returns ``(y, mask)``::

    Sequential(Parallel(Embedding(V, E), Identity()),          # (ids, mask) -> (x, mask)
               Carry(TransformerEncoderLayer(E, 2, 2 * E, masked=True)),
               MaskedMean(), Dense(classes))                   # -> (N, classes)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import side_array
from funcdl.layers._children import ERRORS, name_of
from funcdl.layers._recurrent_input import lengths_arg
from funcdl.layers._sums import product
from funcdl.layers._wrap import relabelled
from funcdl.layers.base import (
    Array,
    Layer,
    LayerLike,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    layer_arg,
    no_params,
    pair_of_shapes,
)
from funcdl.layers.branching import Parallel
from funcdl.layers.combinators import Sequential
from funcdl.layers.routing import FanOut, Select

__all__ = ["Carry", "MaskedMean"]

_KINDS = {"padding": "(x, key_padding_mask)", "lengths": "(x, lengths)"}


def _got(x: Any) -> str:
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} entries"
    return f"an array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def Carry(layer: LayerLike, keep: int | tuple[int, ...] = -1) -> Layer:
    """``(x_0, ..., x_{k-1}) -> (layer((x_0, ...)), x_keep)``: a layer of a padded batch with
    its mask or lengths carried past it, so the next masked layer gets them too. ``keep`` a
    tuple ``(i, j)`` gives the flat ``(layer(x), x_i, x_j)``. It is
    ``Sequential(FanOut(1 + len(keep)), Parallel(layer, Select(i), Select(j), ...))``; vjp:
    that composition's, ``dx = layer_xᵀ dy_0`` plus ``dy_m`` at the carried entries (None
    for a boolean mask or int lengths). Params and state are the composition's:
    ``((), (layer's,) + ((),) * len(keep))``."""
    layer_arg("Carry", layer, "expected a layer to run on the tuple, e.g. "
              "Carry(TransformerEncoderLayer(E, h, F, masked=True)); got a non-layer")
    keeps = keep if isinstance(keep, tuple) else (keep,)
    if not keeps:
        raise ValueError("Carry: keep must be an int or a non-empty tuple of ints, got (); "
                         "pass the index of the mask or lengths, e.g. keep=-1")
    try:
        selects = [Select(k) for k in keeps]
    except ERRORS as e:
        raise type(e)(f"Carry: keep {keep!r}: {e}") from e
    child = name_of(layer)
    name = f"Carry({child})" if keep == -1 else f"Carry({child}, keep={keep!r})"
    inner = Sequential(FanOut(1 + len(keeps)), Parallel(layer, *selects))

    def tuple_in(x: Any, what: str) -> None:
        if not (isinstance(x, (tuple, list)) and x):
            raise ValueError(f"{name}: expected {what} as a tuple such as (x, "
                             f"key_padding_mask) or (x, lengths), got {_got(x)}; route the "
                             f"mask beside x, e.g. Parallel(Embedding(V, E), Identity()) on "
                             f"(ids, mask)")

    def call(fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except ERRORS as e:
            raise relabelled(name, e) from e

    def init(key: random.Key, in_shape: Any) -> Any:
        if not (isinstance(in_shape, (tuple, list)) and in_shape
                and all(isinstance(s, (tuple, list)) for s in in_shape)):
            raise TypeError(f"{name}: in_shape must be a tuple of shapes, e.g. ((None, T, E), "
                            f"(None, T)) for (x, key_padding_mask), got {in_shape!r}")
        return call(inner.init, key, in_shape)

    def apply(params: Any, x: Any, **kw: Any) -> Any:
        tuple_in(x, "the input")
        return call(inner.apply, params, x, **kw)

    def vjp(params: Any, x: Any, **kw: Any) -> Any:
        tuple_in(x, "the input")
        out = call(inner.vjp, params, x, **kw)

        def pullback(dy: Any, **how: Any) -> Any:  # its errors named as Carry's; need_dx=
            return call(out[1], dy, **how)

        return (out[0], pullback, *out[2:])

    return dataclasses.replace(inner, init=init, apply=apply, vjp=vjp, name=name)


def MaskedMean(mask: str = "padding") -> Layer:
    """Mean over the time axis of the valid steps: ``(x, key_padding_mask) -> (N, C)``, x
    (N, T, C), the mask (N, T) bool, True at padding (``mask='padding'``), or
    ``(x, lengths) -> (N, C)``, lengths (N,) ints in [0, T] (``mask='lengths'``).

    ``y[n] = Σ_t v[n, t] x[n, t] / max(1, Σ_t v[n, t])``, v = 1 at valid steps and 0 at
    padded ones, whatever they hold (inf or NaN too); a sequence with no valid step gives 0
    (no NaN, no warning). vjp:
    ``dx[n, t] = v[n, t] dy[n] / max(1, count[n])``, None for the mask or lengths. Float
    dtypes kept (integer x is taken as float32)."""
    if not isinstance(mask, str) or mask not in _KINDS:
        raise ValueError(f"MaskedMean: mask must be 'padding' (a key_padding_mask (N, T) "
                         f"bool, True at padding) or 'lengths' (lengths (N,) ints), got "
                         f"{mask!r}")
    name = "MaskedMean()" if mask == "padding" else f"MaskedMean({mask!r})"
    pair = _KINDS[mask]
    side = "key_padding_mask (N, T) bool" if mask == "padding" else "lengths (N,) ints"

    def init(key: random.Key, in_shape: Any) -> tuple[Shape, Any]:
        del key
        if not pair_of_shapes(in_shape):
            raise TypeError(f"{name}: expected in_shape as the shapes of {pair}, e.g. "
                            f"((None, T, C), {'(None, T)' if mask == 'padding' else '(None,)'}"
                            f"), got {in_shape!r}")
        xs = check_in_shape(name, in_shape[0], rank=3, layout="(N, T, C)")
        ms = check_in_shape(name, in_shape[1], min_rank=0)
        want = xs[:2] if mask == "padding" else xs[:1]
        if len(ms) != len(want) or any(a is not None and b is not None and a != b
                                       for a, b in zip(ms, want)):
            raise ValueError(f"{name}: expected {side} fitting x {xs}, got in_shape "
                             f"{tuple(in_shape)}; pass {pair} of shapes ((N, T, C), "
                             f"{'(N, T)' if mask == 'padding' else '(N,)'})")
        return (xs[0], xs[2]), ()

    def weights(xs: Any) -> tuple[Array, Array]:
        """x as floats and v / max(1, count), (N, T) in x's dtype."""
        if not (isinstance(xs, (tuple, list)) and len(xs) == 2):
            raise TypeError(f"{name}: expected the input as a pair {pair}, x (N, T, C) and "
                            f"{side}, got {_got(xs)}; route the mask beside x with "
                            f"Parallel(Embedding(V, E), Identity()) and Carry(layer)")
        x = as_floats(name, xs[0])
        if x.ndim != 3:
            raise ValueError(f"{name}: expected x of shape (N, T, C), got shape {x.shape}; "
                             f"add a channel axis with Reshape, or pool (N, T) x as (N, T, 1)")
        n, t = x.shape[:2]
        if mask == "lengths":
            given = side_array(xs[1], name, "lengths")
            if given is not None and given.dtype == np.bool_:
                # a cast to ints would read True/False as lengths 1/0: say what was meant
                raise TypeError(f"{name}: lengths must be integers, each sequence's number "
                                f"of valid steps, got dtype bool; pass a boolean (N, T) "
                                f"padding mask, True at padding, to MaskedMean() instead: "
                                f"it is that layer's input (key padding), not lengths "
                                f"(as ints it would not count the valid steps)")
            ln = lengths_arg(name, xs[1], x.shape)
            valid = np.arange(t) < ln[:, None]
        else:
            m = side_array(xs[1], name, "the key_padding_mask")
            if m is None or m.dtype != np.bool_:
                got = f"dtype {m.dtype}" if m is not None else type(xs[1]).__name__
                raise TypeError(f"{name}: expected a key_padding_mask (N, T) bool, True at "
                                f"padding, got {got}; pass mask.astype(bool), or "
                                f"MaskedMean('lengths') for (x, lengths)")
            if m.shape != (n, t):
                raise ValueError(f"{name}: expected a key_padding_mask of shape ({n}, {t}), "
                                 f"one entry per step of x {x.shape}, got shape {m.shape}; "
                                 f"pass the (N, T) mask of x's batch")
            valid = ~m
        count = valid.sum(axis=1, keepdims=True)
        padded = ~valid
        if padded.any() and not np.isfinite(x[padded]).all():
            # a weight of 0 times inf or NaN is NaN: what padding holds must not count (an
            # empty sequence's NaN context from attention, as its hidden_rows='nan' gives)
            x = np.where(padded[:, :, None], x.dtype.type(0), x)
        # max(1, 0) = 1: an empty sequence's sum is 0, so its mean is 0, without a 0 / 0
        return x, valid.astype(x.dtype) / np.maximum(count, 1).astype(x.dtype)

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        x, w = weights(xs)
        # one batched BLAS call, (N, 1, T) @ (N, T, C): gemvs (see _sums.product)
        y: Array = product(np.matmul, w[:, None, :], x)[:, 0]
        return y

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        x, w = weights(xs)
        y = product(np.matmul, w[:, None, :], x)[:, 0]
        x_dtype = getattr(xs[0], "dtype", None)

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Any]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dx = in_input_dtype(w[:, :, None] * dy[:, None, :], x_dtype)
            return params, (list if type(xs) is list else tuple)((dx, None))

        return y, pullback

    return Layer(init, apply, vjp, name=name)
