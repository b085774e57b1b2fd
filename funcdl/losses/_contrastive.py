"""optax's cosine losses and its NT-Xent: ``cosine_similarity`` and ``cosine_distance``
(over the last axis) and ``ntxent`` (SimCLR's normalised temperature-scaled cross
entropy over a batch of embeddings, positives by equal labels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import real_arg
from funcdl._blas import product
from funcdl._special import softplus_sigmoid
from funcdl.losses._base import (
    Array,
    Pullback,
    add_reduce,
    in_dtype,
    int_labels,
    pred_array,
    target_like,
)
from funcdl.losses._reduction import reduce_loss


def _unit(a: Array, eps: float) -> tuple[Array, Array, Array]:
    """``(u, norm, free)``: ``u = a / norm`` along the last axis, ``norm = sqrt(max(|a|²,
    eps))`` (optax's clip of the squared norm), ``free`` where the clip is not active (the
    norm then depends on ``a``). Rows are divided by their largest entry first, so norms
    of 1e-200 or past the float range keep their direction (a norm past it is inf in
    ``norm``: the gradient's 1/norm is then 0). A zero row with ``eps = 0`` (optax: 0/0,
    NaN) has ``u = 0``. A row holding NaN or ±inf has NaN in ``u`` and ``norm``, as torch's
    and optax's (inf / inf), so its cosine and gradient are NaN, never a made-up 0."""
    top = np.maximum.reduce(np.abs(a), axis=-1, keepdims=True) if a.shape[-1] else (
        np.zeros((*a.shape[:-1], 1), a.dtype))
    with np.errstate(invalid="ignore"):  # an inf entry: inf / inf, a NaN row, silently
        scaled = a / np.where(top > 0, top, 1)
    root = np.sqrt(add_reduce(np.square(scaled), axis=-1, keepdims=True))
    with np.errstate(over="ignore"):
        raw = top * root
    floor = a.dtype.type(np.sqrt(eps))
    free = ~(raw <= floor)  # a NaN norm counts as free: u = scaled / root keeps the NaN
    norm = np.where(free, raw, floor)
    u = np.divide(scaled, root, out=np.zeros_like(a), where=free)
    if floor > 0 and not free.all():  # a clipped row: a over the floor, not unit length
        with np.errstate(over="ignore"):  # a free row's a / floor may overflow: not kept
            u = np.where(free, u, a / floor)
    return u, norm, free


def _unit_vjp(u: Array, norm: Array, free: Array, du: Array) -> Array:
    """``da = (du - u <u, du> [free]) / norm`` (0 on a zero row at eps = 0, where optax's
    is NaN: no direction is preferred and the derivative is unbounded; NaN on a NaN row)."""
    radial = np.where(free, add_reduce(u * du, axis=-1, keepdims=True), 0)
    # norm != 0, not norm > 0: a NaN row's norm is NaN, and its gradient NaN, as torch's;
    # a subnormal row's 1/norm is past the range: inf, its true value's nearest, silently
    with np.errstate(over="ignore"):
        out: Array = np.divide(du - u * radial, norm, out=np.zeros_like(du), where=norm != 0)
    return out


def _cosine(name: str, pred: Any, target: Any, epsilon: Any, reduction: str,
            sign: int) -> tuple[Any, Pullback]:
    eps = real_arg(epsilon, name, "epsilon", low=0.0,
                   fix="; epsilon is the least squared norm, as optax's")
    a = pred_array(name, pred)
    if a.ndim == 0:
        raise ValueError(f"{name}: pred needs a vector axis, last, got a scalar; pass "
                         f"vectors of shape (..., D)")
    b = target_like(name, a, target)
    # eps bounds a squared norm, so past the dtype's range it bounds nothing the data can hold
    # (and its square root, cast to the dtype, overflowed from about max² on)
    in_dtype(name, "epsilon", eps, a.dtype)
    ua, na, fa = _unit(a, eps)
    ub, _, _ = _unit(b, eps)
    cos = add_reduce(ua * ub, axis=-1)
    per = 1 - cos if sign < 0 else cos

    def grad(c: Any) -> Array:
        cc = sign * (c[..., None] if np.ndim(c) else c)
        return _unit_vjp(ua, na, fa, (cc * ub).astype(a.dtype, copy=False))

    return reduce_loss(name, per, reduction, per.size, grad)


def cosine_similarity_vjp(pred: Any, target: Any, epsilon: float = 0.0,
                          reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``cosine_similarity`` over the last axis: ``<a, b> / (|a|_ε |b|_ε)``,
    ``|a|_ε = sqrt(max(|a|², ε))``, one value per row of (..., D);
    ``da = (b̂ - â <â, b̂>) / |a|_ε`` (``b̂ / |a|_ε`` where the clip is active). A zero row
    at ε = 0 (optax: NaN) gives 0 and a zero gradient; a row with a NaN or ±inf entry (in
    pred or target) gives NaN, and a NaN gradient row, as optax's and torch's. The mean is
    over rows."""
    return _cosine("cosine_similarity", pred, target, epsilon, reduction, 1)


def cosine_distance_vjp(pred: Any, target: Any, epsilon: float = 0.0,
                        reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``cosine_distance``: ``1 - cosine_similarity`` (see it), its gradient
    negated. The mean is over rows."""
    return _cosine("cosine_distance", pred, target, epsilon, reduction, -1)


def _group_labels(name: str, x: Array, target: Any) -> Array:
    y = int_labels(name, target, f"group labels of shape ({x.shape[0]},)",  # bools too
                   "group labels must be integers, equal labels marking positive pairs")
    if y.shape != x.shape[:1]:
        raise ValueError(f"{name}: target must hold one label per embedding, shape "
                         f"({x.shape[0]},) for embeddings of shape {x.shape}, got {y.shape}")
    return y


def ntxent_vjp(pred: Any, target: Any, temperature: float = 0.07,
               reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``ntxent``: embeddings x (N, D), integer labels (N,); ``s_ij = cos(x_i,
    x_j) / T`` (norms clipped at optax's ``sqrt(eps)`` of the dtype). Each ordered pair
    i ≠ j of equal labels is a positive; its term is ``-log(e^{s_ij} / (e^{s_ij} +
    Σ_{k: y_k ≠ y_i} e^{s_ik}))`` (the other positives of i are not in its denominator).
    ``'mean'`` (optax's scalar) averages the terms over the positive pairs, ``'sum'`` adds
    them, ``'none'`` gives per anchor i the sum of its terms, (N,), whose sum is 'sum'.
    With ``D_i = Σ_neg e^{s_ik}`` and ``q_ij = D_i / (D_i + e^{s_ij})``: ``ds_ij = -q_ij``,
    ``ds_ik = (e^{s_ik} / D_i) Σ_j q_ij`` for negatives k; then through the cosines."""
    name = "ntxent"
    tau = real_arg(temperature, name, "temperature", low=0.0, open_low=True)
    x = pred_array(name, pred)
    if x.ndim != 2:
        raise ValueError(f"{name}: pred must be embeddings of shape (N, D), got shape "
                         f"{x.shape}; flatten the features, x.reshape(len(x), -1)")
    y = _group_labels(name, x, target)
    in_dtype(name, "temperature", tau, x.dtype)
    if tau < 1 / float(np.finfo(x.dtype).max):  # 1/T past the range: every s_ij infinite
        raise ValueError(f"{name}: temperature must be at least 1/{np.finfo(x.dtype).max:g} "
                         f"for {x.dtype} embeddings (1/temperature scales the similarities), "
                         f"got {tau:g}; pass a larger temperature")
    n = x.shape[0]
    same = y[:, None] == y[None, :]
    pos = same.copy()
    np.fill_diagonal(pos, False)  # no pair of an embedding with itself
    neg = ~same
    n_pairs = int(np.count_nonzero(pos))
    if n_pairs == 0 and isinstance(reduction, str) and reduction == "mean":  # optax: 0/0, NaN
        raise ValueError(f"{name}: no two embeddings share a label, so there is no positive "
                         f"pair to average over (labels {np.unique(y)[:8]}); give each "
                         f"example's augmented view the same label, or pass reduction='sum'")
    u, norm, free = _unit(x, float(np.finfo(x.dtype).eps))
    s = product(np.matmul, u, u.T) / x.dtype.type(tau)
    # log D_i, each row shifted by its own largest negative: exact however far apart
    masked = np.where(neg, s, -np.inf)
    top = np.maximum.reduce(masked, axis=-1, keepdims=True) if n else (
        np.zeros((0, 1), x.dtype))
    top = np.where(np.isfinite(top), top, 0)  # a row with no negative: D_i = 0
    masked -= top
    e = np.exp(masked, out=masked)  # 0 off the negatives
    d = add_reduce(e, axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_d = np.log(d) + top
    # the softplus on the positive pairs only, a few per row, not on all N² entries
    pi, pj = np.nonzero(pos)
    terms, q = softplus_sigmoid(log_d[pi, 0] - s[pi, pj])  # -log(e^s / (D + e^s))
    per = np.bincount(pi, terms, minlength=n).astype(x.dtype, copy=False)
    q_rows = np.bincount(pi, q, minlength=n).astype(x.dtype, copy=False)[:, None]
    w = np.divide(e, d, out=e, where=d > 0)  # softmax over i's negatives (0 where none)

    def grad(c: Any) -> Array:
        ds = w * q_rows
        ds[pi, pj] -= q
        ds *= (c[:, None] if np.ndim(c) else c) / x.dtype.type(tau)
        du = product(np.matmul, ds + ds.T, u)  # s symmetric in the pair: both embeddings move
        return _unit_vjp(u, norm, free, du.astype(x.dtype, copy=False))

    return reduce_loss(name, per, reduction, n_pairs, grad)
