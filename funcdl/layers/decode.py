"""Incremental (cached) decoding of autoregressive models, Flax's ``decode=True`` cache in
funcdl's functional form: the cache is an explicit value, taken and returned, never changed.

    cache = decode_init(model, params, x0, max_len)          # x0: an example position
    y_t, cache = decode_step(model, params, cache, x_t)      # x_t: the input at position t

``x_t`` is the input at one new position, the time axis (axis 1) of length 1: ids (N, 1) for
a model starting with an Embedding, (N, 1, E) for one on vectors, or a tuple of such inputs
(a decoder's ``(tgt_t, memory)``, memory whole at every step); ``y_t`` is the model's output
at that position: ``decode_step`` at position t equals ``model.apply(params, x[:, :t+1])[:,
t]`` (inference, ``train=False``), where a full apply re-runs the whole prefix at every step.

Which models step (``Layer.step``, ``_step``): those built of position-wise layers (Dense,
Unembed, Embedding, LayerNorm and RMSNorm on the last axis, the activations, Dropout and
BatchNorm at inference, Identity, FanOut, Select, FanInSum), layers with a cache of their
own (MultiHeadAttention with ``causal=True`` on one input: its keys and values; a
cross-attention with ``causal=False`` to a fixed memory: its projections, made once;
PositionalEmbedding and SinusoidalPositionalEncoding on (N, T, E): the position), and the
combinators of such (Sequential, Residual, Parallel, Repeat, Shared, Tied, Eval, Remat,
TransformerEncoderLayer and TransformerDecoderLayer, causal). Key padding masks step too
(``masked=True``): a cross-attention's memory mask (N, S) whole at every step, a causal
self-attention's as the new position's column ``mask[:, t:t+1]`` (N, 1), the cache keeping
the columns so far (a decoder's ``tgt_key_padding_mask``, left padding of prompts); an
attention mask (N, Tq, Tk) is refused. Anything else (LSTM, Conv1D, non-causal
self-attention, a layer normalising over time) raises a TypeError naming it.

The cache: ``DecodeCache(position, max_len, layers)``, position the number of steps taken
(a 0-d int64 array), ``layers`` the tree of each layer's cache (``()`` for a position-wise
one); an attention's keys and values grow by one position per step, into new arrays (a copy
of what the step reads anyway, see ``_attention_step``), so an old cache stays valid and a
decode can branch from it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl._args import int_arg
from funcdl._treenodes import describe
from funcdl.layers._children import is_stateful, name_of
from funcdl.layers._step import stepper_of
from funcdl.layers.base import Array, LayerLike, layer_arg, need_state

__all__ = ["DecodeCache", "decode_init", "decode_step"]


class DecodeCache(NamedTuple):
    """An incremental decode's cache: ``position`` (0-d int64) steps taken, ``max_len``
    (0-d int64) the most it may take, ``layers`` the model's layers' caches."""

    position: Array
    max_len: Array
    layers: Any


def _count(value: int) -> Array:
    a = np.asarray(value, np.int64)
    a.flags.writeable = False
    return a


def _one_position(where: str, x: Any) -> None:
    """A ValueError unless ``x`` (its first array, for a tuple) has one position on axis 1."""
    first = x
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    shape = np.shape(first)
    if len(shape) < 2 or shape[1] != 1:
        raise ValueError(f"{where}: expected the input at one position, the time axis (axis "
                         f"1) of length 1, e.g. ids (N, 1) or vectors (N, 1, E) (a tuple's "
                         f"first entry so), got shape {shape}; pass x[:, t:t+1]")


def _state(model: Any, state: Any, where: str) -> Any:
    if is_stateful(model):
        return need_state(where, state)
    if state is not None:
        raise ValueError(f"{where}: {name_of(model)} is stateless; pass no state=")
    return ()


def decode_init(model: LayerLike, params: Any, x0: Any, max_len: int, *,
                state: Any = None) -> DecodeCache:
    """A fresh cache for decoding up to ``max_len`` positions with ``model``.

    Args:
      model: a layer whose every part steps (module docstring); else a TypeError naming the
        part that does not, and why.
      params: the model's params, as its init returned them.
      x0: an example input at one position, (N, 1) ids or (N, 1, E), or a tuple of such
        (the memory whole): only its shapes and dtypes are read (the batch size, the caches'
        dtype); the cache starts at position 0, and the first ``decode_step`` reads
        position 0. A shape alone is not taken: the dtype decides ids against vectors.
      max_len: the most positions the decode may take (a positional table must be as long).
      state: a stateful model's state (BatchNorm's running statistics), used at inference.

    Returns: ``DecodeCache(position=0, max_len, layers)``.
    """
    where = "decode_init"
    layer_arg(where, model)
    length = int_arg(max_len, where, "max_len", 1)
    _one_position(where, x0)
    _, caches = stepper_of(model).start(model, params, x0, length, _state(model, state, where))
    return DecodeCache(_count(0), _count(length), caches)


def decode_step(model: LayerLike, params: Any, cache: DecodeCache, x_t: Any, *,
                state: Any = None) -> tuple[Any, DecodeCache]:
    """The model's output at the next position, and the cache one position on.

    ``y_t`` equals ``model.apply(params, x[:, :t+1])[:, t]`` (kept on its time axis, (N, 1,
    ...)) for t = ``cache.position`` and the inputs ``x_0 .. x_t`` given so far; float32
    stays float32. The cache passed is not changed: stepping an old one again branches.
    A ValueError once ``max_len`` positions are taken; ``x_t`` of other than one position.
    """
    where = "decode_step"
    layer_arg(where, model)
    if not isinstance(cache, DecodeCache):
        raise TypeError(f"{where}: expected the cache decode_init or decode_step returned "
                        f"(a DecodeCache), got {describe(cache)}")
    t, limit = int(cache.position), int(cache.max_len)
    if t >= limit:
        raise ValueError(f"{where}: the cache holds max_len={limit} positions and all are "
                         f"taken; decode_init(..., max_len=...) with a larger max_len for "
                         f"longer sequences")
    _one_position(where, x_t)
    y, caches = stepper_of(model).step(model, params, cache.layers, x_t, t,
                                       _state(model, state, where))
    return y, DecodeCache(_count(t + 1), cache.max_len, caches)
