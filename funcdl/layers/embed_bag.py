"""EmbeddingBag: the sum, mean or max of the table rows of a bag of ids, one bag per example
(PyTorch's ``nn.EmbeddingBag``): multi-hot categorical features (wide & deep, DLRM)."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, choice_arg, int_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._params import drawn, initializer_arg, param_arrays
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    pair_of_shapes,
)
from funcdl.layers.embed import _scatter_add_rows, vocab_ids
from funcdl.layers.segment import _scatter

__all__ = ["EmbeddingBag"]

_MODES = ("sum", "mean", "max")


def EmbeddingBag(vocab: int, dim: int, mode: str = "mean", padding_idx: int | None = None,
                 per_sample_weights: bool = False,
                 w_init: initializers.Initializer | None = None) -> Layer:
    """Reduce each row's bag of ids to one vector: ids ``(N, L) -> (N, dim)``.

    params: ``{'table': (vocab, dim)}``, N(0, 1) as PyTorch's ``nn.EmbeddingBag`` and
    ``Embedding``, the ``padding_idx`` row 0. Entries equal to ``padding_idx`` are left out
    of the bag (neither summed nor counted: torch's padded bags); an empty bag gives 0.
    With B_n the bag of row n and c_n = |B_n|:
    forward: ``'sum'``: ``y[n] = Σ_{l ∈ B_n} w[n, l] table[ids[n, l]]`` (w = 1, or the
    input's ``per_sample_weights``); ``'mean'``: the sum over c_n; ``'max'``:
    ``y[n, d] = max_{l ∈ B_n} table[ids[n, l], d]``;
    vjp: ``dtable[i] = Σ_{n, l ∈ B_n: ids[n, l] = i} w[n, l] dy[n]`` (``/ c_n`` for
    ``'mean'``); ``'max'``: ``dy[n, d]`` to the row of the first l reaching the max, as
    torch's (ties go to the first entry of the bag); ``dw[n, l] = dy[n] · table[ids[n, l]]``
    (0 at padding), None for the ids.
    ``per_sample_weights=True`` (``'sum'`` only, as torch's) takes ``(ids, weights)``, weights
    (N, L) floats. Torch's 1-D ``input`` with ``offsets`` is the padded form here: pad each
    bag to L with ``padding_idx``. Per-example gradients as ``Embedding``'s: a (N, vocab,
    dim) table gradient, one per bag.
    """
    where = "EmbeddingBag"
    vocab, dim = (int_arg(v, where, what, minimum=1) for what, v in (("vocab", vocab),
                                                                     ("dim", dim)))
    mode = choice_arg(mode, where, "mode", _MODES)
    weighted = bool_arg(per_sample_weights, where, "per_sample_weights")
    if weighted and mode != "sum":
        raise ValueError(f"{where}: per_sample_weights=True needs mode='sum' (as torch's), "
                         f"got mode={mode!r}")
    pad = None
    if padding_idx is not None:
        pad = int_arg(padding_idx, where, "padding_idx", minimum=None)
        if not -vocab <= pad < vocab:
            raise ValueError(f"{where}: padding_idx must be an id in [-{vocab}, {vocab}) "
                             f"(vocabulary size {vocab}), got {pad}")
        pad %= vocab
    name = (f"{where}({vocab}, {dim}, mode={mode!r}"
            + ("" if pad is None else f", padding_idx={pad}")
            + (", per_sample_weights=True" if weighted else "") + ")")
    w_init = initializer_arg(name, "w_init", w_init) or initializers.normal(1.0)
    layout = "(N, L)"

    def init(key: random.Key, in_shape: Any) -> tuple[Shape, Any]:
        if weighted:
            if not pair_of_shapes(in_shape):
                raise TypeError(f"{name}: expected in_shape as the shapes of (ids, "
                                f"per_sample_weights), e.g. ((None, L), (None, L)), got "
                                f"{in_shape!r}")
            shape = check_in_shape(name, in_shape[0], rank=2, layout=layout)
            wshape = check_in_shape(name, in_shape[1], rank=2, layout=layout)
            if any(None not in (a, b) and a != b for a, b in zip(shape, wshape)):
                raise ValueError(f"{name}: ids have shape {shape} but per_sample_weights "
                                 f"{wshape}; expected one weight per id")
        else:
            shape = check_in_shape(name, in_shape, rank=2, layout=layout)
        key = random.check_key(key, name)
        table = drawn(name, "w_init", w_init, key, (vocab, dim))
        if pad is not None:
            table = table.copy()  # the initializer's own array may be shared
            table[pad] = 0
        return (shape[0], dim), {"table": table}

    def check(params: Any, x: Any) -> tuple[Array, Array, Array | None]:
        (table,) = param_arrays(name, params, ("table",))
        if table.shape != (vocab, dim):
            raise ValueError(f"{name}: params['table'] has shape {table.shape}, expected "
                             f"{(vocab, dim)}")
        w = None
        if weighted:
            if not (isinstance(x, (tuple, list)) and len(x) == 2):
                got = (f"a {type(x).__name__} of {len(x)} entries"
                       if isinstance(x, (tuple, list)) else type(x).__name__)
                raise TypeError(f"{name}: expected the input as a pair (ids, "
                                f"per_sample_weights), got {got}")
            x, w = x
            if w is None:
                raise TypeError(f"{name}: per_sample_weights must be an array of floats of "
                                f"the ids' shape (N, L), got None")
        elif isinstance(x, tuple) and len(x) == 2 and any(isinstance(v, np.ndarray) for v in x):
            raise TypeError(f"{name}: expected ids (N, L), got a pair; for (ids, "
                            f"per_sample_weights) build EmbeddingBag(..., mode='sum', "
                            f"per_sample_weights=True)")
        ids = vocab_ids(name, x, vocab, "the ids", 2, "(N, L), a padded bag per row")
        if w is not None:
            w = cast_ints(as_array(name, w, table.dtype), table.dtype)
            if w.shape != ids.shape:
                raise ValueError(f"{name}: per_sample_weights must have the ids' shape "
                                 f"{ids.shape}, got {w.shape}")
            w = w.astype(table.dtype, copy=False)  # the table's dtype: float32 stays float32
        return table, ids.astype(np.intp, copy=False), w

    def forward(table: Array, ids: Array, w: Array | None) -> tuple[Array, Any]:
        """``(y, residual)``: ``'max'``'s (N, dim) positions of the max; ``'sum'``'s with
        weights, the gathered rows (for dw); else None."""
        n, length = ids.shape
        valid = None if pad is None else ids != pad
        empty = None if valid is None else ~valid.any(axis=1)
        rows = np.take(table, ids, axis=0)  # (N, L, dim), a new array
        if valid is not None:
            rows[~valid] = -np.inf if mode == "max" else 0  # out of the bag, whatever the row
        if mode == "max":
            if length == 0:
                return np.zeros((n, dim), table.dtype), None
            at = rows.argmax(axis=1)  # the first of ties, as torch's strict '>' scan
            y = np.take_along_axis(rows, at[:, None, :], axis=1)[:, 0]
            if empty is not None:
                y[empty] = 0
            return y, at
        if w is None:
            y = rows.sum(axis=1)
            if mode == "mean":
                y /= count(ids, valid).astype(table.dtype)[:, None]
            return y, None
        if valid is not None:
            w = np.where(valid, w, 0).astype(w.dtype, copy=False)  # 0 · inf weights at pads
        # a product then a sum, as the unweighted sum: the same bits for any layout of w
        return (rows * w[:, :, None]).sum(axis=1), rows

    def count(ids: Array, valid: Array | None) -> Array:
        c = np.full(ids.shape[0], ids.shape[1]) if valid is None else valid.sum(axis=1)
        counts: Array = np.maximum(c, 1)  # an empty bag: a sum of 0, divided by 1
        return counts

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(*check(params, x))[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        table, ids, w = check(params, x)
        y, res = forward(table, ids, w)
        each = per_example.ON.get()  # a table per example: N·vocab·dim entries
        n, length = ids.shape
        w_dtype = getattr(x[1], "dtype", None) if weighted else None
        y_shape, y_dtype, t_dtype = y.shape, y.dtype, table.dtype  # not the table itself

        def table_grad(dy: Array) -> Array:
            # example n's rows at n·vocab + id when per example
            base = (np.arange(n)[:, None] * vocab) if each else 0
            size = n * vocab if each else vocab
            if mode == "max":
                if length == 0:
                    return np.zeros((size, dim), t_dtype)
                at = np.take_along_axis(ids, res, axis=1) + base  # (N, dim): the max's row
                flat = at * dim + np.arange(dim)
                hit = dy if pad is None else np.where((ids != pad).any(axis=1)[:, None], dy, 0)
                return _scatter(hit.reshape(-1), flat.reshape(-1), size * dim).reshape(size, dim)
            valid = None if pad is None else ids != pad
            if mode == "sum" and w is None:  # each entry's share: dy of its bag
                rows = np.broadcast_to(dy[:, None, :], (n, length, dim))
            else:
                coef = w if w is not None else np.broadcast_to(
                    1 / count(ids, valid).astype(t_dtype)[:, None], ids.shape)
                rows = coef[:, :, None] * dy[:, None, :]  # (N, L, dim): entry (n, l)'s share
            at = (ids + base).reshape(-1)
            rows = rows.reshape(-1, dim)
            if valid is not None:
                keep = valid.reshape(-1)
                at, rows = at[keep], rows[keep]
            return _scatter_add_rows(at, rows, size, t_dtype)

        def pullback(dy: Any) -> tuple[Any, Any]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dtable = table_grad(dy)
            grads = {"table": dtable.reshape(n, vocab, dim) if each else dtable}
            if not weighted:
                return grads, None
            dw = (res * dy[:, None, :]).sum(axis=2)  # rows at pads are 0: dw 0 there
            return grads, (list if type(x) is list else tuple)((None, in_input_dtype(dw, w_dtype)))

        return y, pullback

    # its table is torch's weight as it is: SpectralNorm's u, v as torch's (dim=0)
    return Layer(init, apply, vjp, name=name, ids=None if weighted else vocab,
                 weight_out_axis=0)
