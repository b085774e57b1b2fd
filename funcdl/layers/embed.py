"""Embedding, a lookup table from integer ids to vectors, and Unembed, the scores of a
vector against every row of such a table (a language model's output head, tied or not)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import array_arg, bool_arg, int_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._dense import affine_layer
from funcdl.layers._params import drawn, initializer_arg, param_arrays
from funcdl.layers._step import POSITIONWISE
from funcdl.layers.base import Array, Layer, Shape, check_cotangent, check_in_shape

__all__ = ["Embedding", "Unembed"]


def _scatter_add_rows(ids: Array, rows: Array, vocab: int, dtype: np.dtype[Any]) -> Array:
    """``out[i] = Σ_{j: ids[j] = i} rows[j]`` for a (vocab, dim) ``out``; ids are 1-D.

    Sort the ids, then one ``np.add.reduceat`` over each run of equal ids: within 1.5x of the
    fastest of np.add.at / a flat np.bincount / this on every shape we measured (np.add.at is
    2-4x slower for thousands of ids; bincount builds a float64 (vocab·dim) array, 5x slower
    for a large vocabulary and few ids), and it adds in the rows' own dtype. The rows of ids
    seen once are copied, not reduced: ids (64, 128) of a 50,000 x 256 table, 38 -> 10-11 ms
    (``benchmarks/pullback_micro.py``), reduceat over all 8,192 sorted rows being most of it.
    """
    out = np.zeros((vocab, rows.shape[1]), dtype)
    if ids.size == 0:
        return out
    order = np.argsort(ids, kind="stable")  # stable: each id's rows are added in input order
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    if starts.size == ids.size:  # no repeated id: a plain scatter
        out[ids] = rows
        return out
    counts = np.diff(np.append(starts, ids.size))
    once = counts == 1
    out[sorted_ids[starts[once]]] = rows[order[starts[once]]]
    again = np.repeat(~once, counts)  # the sorted rows of repeated ids, in input order each
    ids_again = sorted_ids[again]
    runs = np.flatnonzero(np.concatenate(([True], ids_again[1:] != ids_again[:-1])))
    out[ids_again[runs]] = np.add.reduceat(rows[order[again]], runs, axis=0)
    return out


def vocab_ids(name: str, x: Any, vocab: int, what: str, rank: int | None = None,
              layout: str = "") -> Array:
    """``x`` as integer ids in ``[0, vocab)``, of ``rank`` dimensions when given (``layout``
    naming them), or a TypeError / ValueError naming the layer, what came and the fix."""
    ids = array_arg(x, name, what)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids, got dtype {ids.dtype} "
                        f"(cast with x.astype(np.int64) if the values are ids)")
    if rank is not None and ids.ndim != rank:
        raise ValueError(f"{name}: expected ids of shape {layout}, got shape {ids.shape}")
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            bad = int(np.count_nonzero((ids < 0) | (ids >= vocab)))
            raise ValueError(f"{name}: ids must be in [0, {vocab}) (vocabulary size "
                             f"{vocab}), got ids in [{lo}, {hi}] ({bad} out of range)")
    return ids


def Embedding(vocab: int, dim: int, w_init: initializers.Initializer | None = None,
              padding_idx: int | None = None) -> Layer:
    """Look up integer ids in a table: ``(...) -> (..., dim)``.

    params: ``{'table': (vocab, dim)}``, by default N(0, 1) as PyTorch's ``nn.Embedding``
    (a fan-based ``w_init`` reads (vocab, dim) as (in, out): fan_in is vocab).
    forward: ``y[..., :] = table[x[...], :]``;
    vjp: ``dtable[i] = Σ_{x[...] = i} dy[..., :]`` (repeated ids summed); ``dx`` is ``None``,
    as integer ids have no cotangent (a Sequential's pullback passes it on as its ``dx``).
    Ids must be integers in ``[0, vocab)``: floats raise TypeError, others ValueError (never
    NumPy's wrap-around of negative indices). ``padding_idx``, as PyTorch's: that row starts
    at zero and gets no gradient (``dtable[padding_idx] = 0``, a stop-gradient, so a finite
    difference check reports that row where the padding id occurs: ``check_layer`` draws
    no padding id, the layer's ``frozen_id``); negative counts from the end.
    """
    vocab, dim = (int_arg(v, "Embedding", what, minimum=1)
                  for what, v in (("vocab", vocab), ("dim", dim)))
    pad = None
    if padding_idx is not None:
        pad = int_arg(padding_idx, "Embedding", "padding_idx", minimum=None)
        if not -vocab <= pad < vocab:
            raise ValueError(f"Embedding: padding_idx must be an id in [-{vocab}, {vocab}) "
                             f"(vocabulary size {vocab}), got {pad}")
        pad %= vocab
    name = f"Embedding({vocab}, {dim}" + ("" if pad is None else f", padding_idx={pad}") + ")"
    w_init = initializer_arg(name, "w_init", w_init) or initializers.normal(1.0)

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = check_in_shape(name, in_shape, min_rank=0)
        key = random.check_key(key, name)  # else named after the initializer that reads it
        table = drawn(name, "w_init", w_init, key, (vocab, dim))
        if pad is not None:
            table = table.copy()  # the initializer's own array may be shared
            table[pad] = 0
        return (*shape, dim), {"table": table}

    def check(params: Any, x: Any) -> tuple[Array, Array]:
        if not isinstance(params, dict) or set(params) != {"table"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{name}: expected params as a dict with key 'table' (from "
                             f"init), got {got}")
        (table,) = param_arrays(name, params, ("table",))
        if table.shape != (vocab, dim):
            raise ValueError(f"{name}: params['table'] has shape {table.shape}, expected "
                             f"{(vocab, dim)}")
        return table, vocab_ids(name, x, vocab, "the input")

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        table, ids = check(params, x)
        return np.take(table, ids, axis=0)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        table, ids = check(params, x)
        y = np.take(table, ids, axis=0)
        each = per_example.ON.get()  # a table per example: N·vocab·dim entries
        if each and ids.ndim < 1:
            raise ValueError(f"{name}: per-example gradients need a batch axis, got ids of "
                             f"shape {ids.shape}")

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Array) -> tuple[Any, None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            # in the table's dtype, as JAX gives gradients, whatever dy's
            if each:  # example n's rows at n·vocab + id of one (N·vocab, dim) table
                n = ids.shape[0]  # (intp: uint64 ids plus the offsets would be floats)
                rows = (ids.reshape(n, math.prod(ids.shape[1:])).astype(np.intp)
                        + np.arange(n)[:, None] * vocab).reshape(-1)
                dtable = _scatter_add_rows(rows, dy.reshape(-1, dim), n * vocab,
                                           table.dtype).reshape(n, vocab, dim)
                if pad is not None:
                    dtable[:, pad] = 0
                return {"table": dtable}, None
            dtable = _scatter_add_rows(ids.reshape(-1), dy.reshape(-1, dim), vocab, table.dtype)
            if pad is not None:
                dtable[pad] = 0
            return {"table": dtable}, None

        return y, pullback

    # its table is torch's weight as it is: SpectralNorm's u, v as torch's (dim=0)
    return Layer(init, apply, vjp, name=name, ids=vocab, weight_out_axis=0, frozen_id=pad,
                 step=POSITIONWISE)


def Unembed(vocab: int, use_bias: bool = False, w_init: initializers.Initializer | None = None,
            b_init: initializers.Initializer | None = None) -> Layer:
    """Scores against every row of a ``(vocab, dim)`` table: ``(..., dim) -> (..., vocab)``,
    the output head of a language model (GPT-2's ``h @ Eᵀ``, Flax's ``Embed.attend``).

    params: ``{'table': (vocab, dim)}`` (and ``'b': (vocab,)`` with ``use_bias``): Embedding's
    table's layout, and PyTorch's ``nn.Linear(dim, vocab).weight``'s; dim is in_shape's last.
    forward: ``y = x @ tableᵀ + b``;
    vjp: ``dtable = Σ dyᵀ x`` (summed over every leading axis), ``db = Σ dy``,
    ``dx = dy @ table``.
    Default init, that of an untied head, PyTorch's ``nn.Linear(dim, vocab)``: table and b ~
    U(±1/sqrt(dim)), for one key ``Dense(vocab)``'s w transposed (a fan-based ``w_init``
    reads (vocab, dim) as (in, out), as Embedding's). Weight tying, PyTorch's ``head.weight
    = emb.weight``: ``Tied(Sequential(Embedding(V, D), ..., Unembed(V)), [(0, 'table'), (k,
    'table')])``, the Embedding's table kept (Tied keeps the first path's) and its gradient
    the sum of both uses' (the paths name the tables: places must be alike, and a head with
    a bias has a second param).
    """
    vocab = int_arg(vocab, "Unembed", "vocab", minimum=1)
    name = f"Unembed({vocab})"
    use_bias = bool_arg(use_bias, name, "use_bias")
    # Dense's map with its weight stored transposed, (vocab, dim): x @ tableᵀ + b
    return affine_layer(name, vocab, use_bias, initializer_arg(name, "w_init", w_init),
                        initializer_arg(name, "b_init", b_init), wkey="table", out_in=True)
