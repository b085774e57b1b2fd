"""PyTorch's losses of several inputs: margin_ranking and cosine_embedding of a pair
``pred = (x1, x2)``, triplet_margin of ``pred = (anchor, positive, negative)``; their
pullbacks return one gradient per input, a tuple, as ``Parallel``'s pullback takes it."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import array_arg, bool_arg, real_arg
from funcdl.losses._base import Array, Pullback, add_reduce, in_dtype, pred_array
from funcdl.losses._reduction import reduce_loss

_COS_EPS = float(np.float32(1e-12))  # torch's float EPSILON in cosine_embedding_loss,
# added to each squared norm (9.99999996e-13 in every dtype, as _BCE_EPS)


def _inputs(name: str, pred: Any, what: str, n: int) -> tuple[Array, ...]:
    """``pred``, a tuple of ``n`` float arrays of one shape and dtype."""
    if not (isinstance(pred, tuple) and len(pred) == n):
        got = (f"a tuple of length {len(pred)}" if isinstance(pred, tuple)
               else type(pred).__name__)
        raise TypeError(f"{name}: pred must be a tuple {what} of {n} arrays of one shape "
                        f"(a {n}-branch model's output, from Parallel), got {got}")
    like = next((x for x in pred if isinstance(x, np.ndarray)), None)  # a list's dtype
    xs = tuple(pred_array(name, x, like) for x in pred)
    if any(x.shape != xs[0].shape or x.dtype != xs[0].dtype for x in xs):
        raise ValueError(f"{name}: the arrays of pred = {what} must have one shape and "
                         f"dtype, got {[x.shape for x in xs]} and "
                         f"{[str(x.dtype) for x in xs]}")
    return xs


def _signs(name: str, target: Any, shape: tuple[int, ...], dtype: Any) -> Array:
    """The target: 1 or -1 per entry, of ``shape`` (torch gives other values a meaningless
    loss, or none)."""
    y = array_arg(target, name, "target")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name}: target must be 1s and -1s, got {type(target).__name__} "
                        f"(dtype {y.dtype})")
    if y.shape != shape:
        raise ValueError(f"{name}: target must have shape {shape}, one 1 or -1 per pair, "
                         f"got {y.shape}")
    if y.size and not (np.abs(y) == 1).all():
        raise ValueError(f"{name}: target must hold 1 (alike, or x1 first) or -1, got "
                         f"values {np.unique(y)[:5]}; for 0/1 labels pass 2 * target - 1")
    return y.astype(dtype)


def margin_ranking_vjp(pred: Any, target: Any, reduction: str = "mean",
                       margin: float = 0.0) -> tuple[Any, Pullback]:
    """torch's ``margin_ranking_loss``, ``pred = (x1, x2)``, y = ±1 of their shape:
    ``max(0, -y (x1 - x2) + margin)``; ``dx1 = -y``, ``dx2 = y`` where that is >= 0
    (torch's clamp passes the gradient at 0)."""
    name = "margin_ranking"
    m = real_arg(margin, name, "margin")
    x1, x2 = _inputs(name, pred, "(x1, x2)", 2)
    y = _signs(name, target, x1.shape, x1.dtype)
    with np.errstate(over="ignore"):  # huge finite values: inf, as torch
        z = y * (x2 - x1) + m
    per = np.maximum(z, 0)
    slope = np.where(z >= 0, -y, 0)

    def grad(c: Any) -> tuple[Array, Array]:
        d1 = c * slope
        return d1, -d1

    return reduce_loss(name, per, reduction, per.size, grad)  # type: ignore[arg-type]


def cosine_embedding_vjp(pred: Any, target: Any, reduction: str = "mean",
                         margin: float = 0.0) -> tuple[Any, Pullback]:
    """torch's ``cosine_embedding_loss``, ``pred = (x1, x2)`` of shape (..., D), y = ±1 of
    shape (...): ``1 - cos`` where y = 1, ``max(0, cos - margin)`` where y = -1, with
    ``cos = <x1, x2> / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12))``; ``dx1 = ∓(x2 / D - cos x1 /
    (|x1|² + 1e-12))``, D the denominator (the hinge's where ``cos - margin >= 0``)."""
    name = "cosine_embedding"
    m = real_arg(margin, name, "margin")
    x1, x2 = _inputs(name, pred, "(x1, x2)", 2)
    in_dtype(name, "margin", m, x1.dtype)
    if x1.ndim == 0 or x1.shape[-1] == 0:
        raise ValueError(f"{name}: x1 and x2 need a feature axis, last, of at least one "
                         f"entry, got shape {x1.shape}")
    y = _signs(name, target, x1.shape[:-1], x1.dtype)
    # each vector divided by its largest entry when that is > 1, so no square overflows;
    # the cosine and its gradient (times 1/r) are the same, and torch's below 1
    r1 = np.maximum(np.maximum.reduce(np.abs(x1), axis=-1, keepdims=True), 1)
    r2 = np.maximum(np.maximum.reduce(np.abs(x2), axis=-1, keepdims=True), 1)
    u1, u2 = x1 / r1, x2 / r2
    m1 = add_reduce(u1 * u1, axis=-1, keepdims=True) + _COS_EPS / r1 / r1
    m2 = add_reduce(u2 * u2, axis=-1, keepdims=True) + _COS_EPS / r2 / r2
    w = np.sqrt(m1 * m2)
    cos = add_reduce(u1 * u2, axis=-1, keepdims=True) / w
    cs = cos[..., 0]
    per = np.where(y == 1, 1 - cs, np.maximum(cs - m, 0))
    # the loss's slope in cos: -1 where y = 1, 1 on the hinge's active side, else 0
    k = np.where(y == 1, -1, (cs - m >= 0).astype(x1.dtype))[..., None]

    def grad(c: Any) -> tuple[Array, Array]:  # here, not in the forward: loss() needs none
        kc = k * (c[..., None] if np.ndim(c) else c)
        return (kc * (u2 / w - cos * u1 / m1) / r1, kc * (u1 / w - cos * u2 / m2) / r2)

    return reduce_loss(name, per, reduction, per.size, grad)  # type: ignore[arg-type]


def _distance(x: Array, y: Array, e: float, p: float) -> tuple[Array, Array, Array]:
    """``|x - y + e|_p`` along the last axis as ``(h, s)``, the norm ``2 h s`` with h half
    the largest entry (no power overflows, nor the difference: halved where it would), and
    its gradient (0 at x - y + e = 0, as torch's)."""
    v = x - y + x.dtype.type(e)
    whole = bool(np.isfinite(v).all())
    if not whole:  # x/2 - y/2 is (x - y)/2 exactly, and finite
        v = x * 0.5 - y * 0.5 + x.dtype.type(e * 0.5)
    # initial=0: an empty feature axis (D = 0) has norm 0, as torch's
    r = np.maximum.reduce(np.abs(v), axis=-1, keepdims=True, initial=0)
    r = np.where(r == 0, 1, r)
    u = v / r  # entries in [-1, 1]
    h = r * 0.5 if whole else r
    if p == 2:
        s = np.sqrt(add_reduce(u * u, axis=-1, keepdims=True))
        g = u / np.where(s == 0, 1, s)
    else:
        au = np.abs(u)
        s = add_reduce(au**p, axis=-1, keepdims=True) ** (1 / p)
        g = np.sign(u) * au ** (p - 1) / np.where(s == 0, 1, s) ** (p - 1)
    return h[..., 0], s[..., 0], g


def triplet_margin_vjp(pred: Any, target: Any = None, reduction: str = "mean",
                       margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                       swap: bool = False) -> tuple[Any, Pullback]:
    """torch's ``triplet_margin_loss``, ``pred = (a, pos, neg)`` of shape (..., D), no target
    (None): ``max(0, d(a, pos) - d(a, neg) + margin)``, ``d(x, y) = |x - y + eps|_p``
    (``swap``: ``d(a, neg)`` replaced by ``min(d(a, neg), d(pos, neg))``); the gradient of
    each distance is the norm's, ``sign(v)|v|^(p-1) / d^(p-1)``, where the hinge is >= 0."""
    name = "triplet_margin"
    if target is not None:
        raise TypeError(f"{name}: takes no target (the triplet is pred = (anchor, positive, "
                        f"negative)), got {type(target).__name__}; pass None")
    m = real_arg(margin, name, "margin", low=0.0, open_low=True)
    pw = real_arg(p, name, "p", low=1.0)
    e = real_arg(eps, name, "eps", low=0.0)
    swap = bool_arg(swap, name, "swap")
    a, pos, neg = _inputs(name, pred, "(anchor, positive, negative)", 3)
    if a.ndim == 0:
        raise ValueError(f"{name}: the inputs need a feature axis, last, got shape ()")
    in_dtype(name, "margin", m, a.dtype)
    in_dtype(name, "eps", e, a.dtype)  # past the dtype's range: inf - inf, NaN
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf, as torch
        hp, sp, gp = _distance(a, pos, e, pw)
        hn, sn, gn = _distance(a, neg, e, pw)
        dp, dn = (hp * sp) * 2, (hn * sn) * 2
        if swap:
            hs, ss, gs = _distance(pos, neg, e, pw)
            ds = (hs * ss) * 2
            # torch.minimum's gradient: to the smaller, halved at a tie
            wa = ((dn < ds) + 0.5 * (dn == ds)).astype(a.dtype)
            nearer = ds < dn
            hn, sn, dn = np.where(nearer, hs, hn), np.where(nearer, ss, sn), np.minimum(dn, ds)
        z = dp - dn
        if not np.isfinite(z).all():  # both distances overflow: their difference may not
            big = np.maximum(hp, hn)
            z = np.where(np.isfinite(z), z, (big * ((hp / big) * sp - (hn / big) * sn)) * 2)
        z += m
    per = np.maximum(z, 0).astype(a.dtype, copy=False)
    act = (z >= 0).astype(a.dtype)[..., None]

    def grad(c: Any) -> tuple[Array, Array, Array]:
        k = act * (c[..., None] if np.ndim(c) else c)
        if not swap:
            return k * (gp - gn), -k * gp, k * gn
        kw = k * wa[..., None]
        ks = k - kw
        return k * gp - kw * gn, -k * gp - ks * gs, kw * gn + ks * gs

    return reduce_loss(name, per, reduction, per.size, grad)  # type: ignore[arg-type]
