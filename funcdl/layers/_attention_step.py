"""MultiHeadAttention's incremental form for ``layers.decode`` (a ``Stepper``): causal
self-attention with a key/value cache, and cross-attention to a fixed memory whose keys and
values are projected once.

Self-attention (one input x, ``causal=True``): the cache holds the keys and values of the
positions so far, ``k``, ``v`` of shape (N, H, t, D); a step projects its one position,
``q_t = x_t w_q/sqrt(D)``, ``k_t = x_t w_k``, ``v_t = x_t w_v`` (and biases), appends
``k_t``, ``v_t`` into new arrays (N, H, t+1, D), and attends to all of them: ``y_t =
[softmax(q_t Kᵀ) V]_heads w_o + b_o``, row t of the full causal output (position t sees
keys j <= t, which are exactly those in the cache). The new arrays are the functional cost:
a copy of N·H·(t+1)·D per step for each of k and v, the same order as the step's own
reading of them in ``q Kᵀ`` and ``P V``; the old cache stays valid, so a decode can branch.

Cross-attention (``(q, kv)`` or ``(q, k, v)``, ``causal=False``): the memory's keys and
values do not depend on the step, so ``start`` projects them once; every step must pass the
same memory (checked: equal to the one ``start`` saw, else a ValueError, as a memory that
changed would make the cached projections silently stale).

``masked=True`` (key padding masks only; an attention mask (N, Tq, Tk) has a row per query
and is refused by name): cross-attention's ``(q, kv, mask)`` takes the memory's whole
padding mask (N, S) at every step and hides those keys there, ``S_j = -inf``; causal
self-attention's ``(x_t, mask_t)`` takes the new position's padding flag (N, 1), the full
mask's column t (``mask[:, t:t+1]``), and the cache keeps the columns so far, ``pad`` (N, t),
beside the keys, so that step t hides the padded positions among keys 0..t as the full
apply does. A query whose keys are all hidden follows ``hidden_rows`` as the forward.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._treenodes import describe
from funcdl.layers._attention import checked_params, fitting, inputs, mask_arg, split_mask
from funcdl.layers._params import weak_dtype
from funcdl.layers._stepper import Stepper
from funcdl.layers._sums import chan, dot, product
from funcdl.layers.base import Array

__all__ = ["attention_stepper"]


def attention_stepper(name: str, heads: int, causal: bool, use_bias: bool, masked: bool,
                      weights: str | None, normalise: Any, keys: tuple[str, ...],
                      kdim: int | None, vdim: int | None, zero_rows: bool = False) -> Stepper:
    """The stepper of a MultiHeadAttention built with these options; ``normalise`` its
    row normaliser (softmax or sparsemax, in place); ``zero_rows``: hidden_rows='zero'."""

    def refuse(why: str) -> None:
        raise TypeError(f"{name} cannot be stepped: {why}")

    def project(x: Array, p: dict[str, Array], w: str, dt: Any, scale: float = 1.0) -> Array:
        """``(x w + b) scale`` as heads, (N, H, T, D)."""
        n, t, _ = x.shape
        wa = p[w].astype(dt, copy=False)
        h = product(dot, x.astype(dt, copy=False).reshape(n * t, -1), wa)
        if use_bias:
            chan(np.add, h, p["b" + w[1:]].astype(dt, copy=False), out=h)
        if scale != 1.0:  # on the (N·T, E) rows, not the (E, E) weights (forward's fold):
            h *= scale    # a step's N·T is the batch alone, often smaller than E
        e = wa.shape[1]
        out: Array = h.reshape(n, t, heads, e // heads).transpose(0, 2, 1, 3)
        return out

    def prepared(params: Any, xs: Any) -> tuple[dict[str, Array], list[Array], Any, Any]:
        mask = None
        if masked:
            xs, mask = split_mask(name, xs)
        if weights is not None:
            refuse(f"it returns its attention weights (return_weights={weights!r}), whose "
                   f"rows grow with every step; decoding takes the output alone")
        p = checked_params(name, params, keys, heads, kdim, vdim)
        given = inputs(name, xs, weak_dtype(p, "w_q", name))
        if len(given) == 1 and not causal:
            refuse("non-causal self-attention lets every position see the later ones, "
                   "which a step has not seen yet; build it with causal=True")
        if len(given) > 1 and causal:
            refuse("causal attention between separate queries and keys has no fixed "
                   "memory to step against; decoding takes causal self-attention (one "
                   "input) or cross-attention to a fixed memory (causal=False)")
        e = p["w_q"].shape[0]
        fitting(name, given, e, heads, causal, kdim, vdim, masked)  # apply's checks
        if given[0].shape[1] != 1:
            raise ValueError(f"{name}: a step takes one position, queries (N, 1, {e}), got "
                             f"{given[0].shape}")
        dt = np.result_type(*(x.dtype for x in given), *(a.dtype for a in p.values()))
        if masked:
            mask = step_mask(mask, given)
        return p, given, dt, mask

    def step_mask(mask: Any, given: list[Array]) -> Array:
        """The step's key padding mask, (N, 1) (the new position's, self-attention) or
        (N, S) (the memory's), checked as apply checks it; an attention mask refused."""
        if np.ndim(mask) == 3:
            refuse(f"its mask of shape {np.shape(mask)} is an attention mask (N, Tq, Tk), a "
                   f"row per query over the whole sequence; decoding takes key padding "
                   f"masks: (N, 1), the new position's flag, for causal self-attention, or "
                   f"(N, S), the memory's, for cross-attention")
        n, _, e = given[0].shape
        tk = 1 if len(given) == 1 else given[1].shape[1]
        hidden: Array = mask_arg(name, mask, (n, 1, e), tk)[:, 0, 0]
        return hidden

    def attend(p: dict[str, Array], q: Array, k: Array, v: Array, dt: Any,
               pad: Array | None = None) -> Array:
        """``[normalise(q kᵀ) v]_heads w_o + b_o`` for one query, (N, 1, E); the keys where
        ``pad`` (N, t) is True hidden, ``S_j = -inf``, as the forward's mask."""
        scores = product(np.matmul, q, k.swapaxes(-1, -2))          # (N, H, 1, t)
        if pad is not None:
            hidden = pad[:, None, None, :]
            np.copyto(scores, -np.inf, where=hidden)
        scores = normalise(scores)
        if pad is not None and zero_rows:  # the forward's hidden_rows='zero'
            empty = np.logical_and.reduce(hidden, axis=-1, keepdims=True)
            if empty.any():
                np.copyto(scores, 0, where=empty)
        context = product(np.matmul, scores, v)                      # (N, H, 1, D)
        n, _, _, d = context.shape
        c2 = context.transpose(0, 2, 1, 3).reshape(n, heads * d)
        y = product(dot, c2, p["w_o"].astype(dt, copy=False))
        if use_bias:
            chan(np.add, y, p["b_o"].astype(dt, copy=False), out=y)
        out: Array = y.reshape(n, 1, heads * d)
        return out

    def held(cache: Any, n: int, cross: bool) -> None:
        """A TypeError unless ``cache`` is this layer's (another model's or layer's reached
        NumPy's indexing), a ValueError unless it holds ``n`` sequences (else NumPy's
        concatenate said only that sizes differ)."""
        need = ("k", "v", "memory") if cross else ("k", "v", "pad") if masked else ("k", "v")
        if not (isinstance(cache, dict) and all(isinstance(cache.get(r), (np.ndarray, tuple))
                                                for r in need)):
            raise TypeError(f"{name}: expected its own cache, a dict with keys {list(need)} "
                            f"as decode_init made it, got {describe(cache)}; pass the cache "
                            f"decode_init or decode_step returned for this model")
        if cache["k"].shape[0] != n:
            raise ValueError(f"{name}: the cache holds {cache['k'].shape[0]} sequences "
                             f"(decode_init's batch), but the input at this step has batch "
                             f"size {n}; start a new decode_init for another batch size")

    def start(layer: Any, params: Any, xs: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        del max_len, state
        p, given, dt, mask = prepared(params, xs)
        scale = 1.0 / math.sqrt(p["w_q"].shape[1] // heads)
        if len(given) == 1:
            n, _, e = given[0].shape
            empty = np.empty((n, heads, 0, e // heads), dt)
            cache: dict[str, Any] = {"k": empty, "v": empty}
            if masked:
                cache["pad"] = np.zeros((n, 0), bool)
        else:  # the fixed memory, kept as given (a copy) and projected once
            kv = given[1:] if len(given) == 3 else given[1:] * 2
            cache = {"k": project(kv[0], p, "w_k", dt), "v": project(kv[1], p, "w_v", dt),
                     "memory": tuple(m.copy() for m in given[1:])}
        q = project(given[0], p, "w_q", dt, scale)
        if len(given) == 1:
            return attend(p, q, project(given[0], p, "w_k", dt),
                          project(given[0], p, "w_v", dt), dt, mask), cache
        return attend(p, q, cache["k"], cache["v"], dt, mask), cache

    def step(layer: Any, params: Any, cache: Any, xs: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        del t, state
        p, given, dt, mask = prepared(params, xs)
        held(cache, given[0].shape[0], len(given) > 1)
        scale = 1.0 / math.sqrt(p["w_q"].shape[1] // heads)
        q = project(given[0], p, "w_q", dt, scale)
        if len(given) == 1:
            x = given[0]
            k = np.concatenate([cache["k"], project(x, p, "w_k", dt)], axis=2)
            v = np.concatenate([cache["v"], project(x, p, "w_v", dt)], axis=2)
            if not masked:
                return attend(p, q, k, v, dt), {"k": k, "v": v}
            pad = np.concatenate([cache["pad"], mask], axis=1)  # the columns so far
            return attend(p, q, k, v, dt, pad), {"k": k, "v": v, "pad": pad}
        for role, m, kept in zip(("k", "v") if len(given) == 3 else ("kv",), given[1:],
                                 cache["memory"]):
            if not (m is kept or (m.shape == kept.shape and np.array_equal(m, kept))):
                raise ValueError(f"{name}: the memory {role} (shape {m.shape}) is not the "
                                 f"one decode_init saw (shape {kept.shape}; values or shape "
                                 f"differ), whose keys and values the cache holds; pass the "
                                 f"same memory at every step, or start a new decode for "
                                 f"another")
        return attend(p, q, cache["k"], cache["v"], dt, mask), cache

    return Stepper(start, step)
