"""PyTorch's distribution losses: kl_div (on log-probabilities), gaussian_nll (a mean and a
variance, the variance an input or a second model output) and poisson_nll."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._args import array_arg, bool_arg, choice_arg, real_arg
from funcdl.losses._base import (
    Array,
    Pullback,
    add_reduce,
    in_dtype,
    pred_array,
    target_like,
    value_span,
)
from funcdl.losses._reduction import reduce_loss

_LOG_2PI = math.log(2 * math.pi)


def _nonnegative(name: str, what: str, a: Array, hint: str) -> Array:
    """``a`` if none of its entries is negative (a log of one would be NaN, as in torch)."""
    if a.size and not np.minimum.reduce(a, axis=None) >= 0:
        raise ValueError(f"{name}: {what} must be >= 0, got {value_span(a)}{hint}")
    return a


def _nonpositive(name: str, what: str, a: Array, hint: str) -> None:
    if a.size and not np.maximum.reduce(a, axis=None) <= 0:
        raise ValueError(f"{name}: {what} must be <= 0{hint}, got {value_span(a)}")


def _eps(name: str, eps: Any, dtype: Any) -> float:
    """``eps`` > 0, and not 0 in ``dtype`` (it keeps a log and a division off 0)."""
    e = in_dtype(name, "eps", real_arg(eps, name, "eps", low=0.0, open_low=True), dtype)
    if np.dtype(dtype).type(e) == 0:
        raise ValueError(f"{name}: eps={e:g} is 0 in {np.dtype(dtype)}; pass a larger eps")
    return e


# ---------------------------------------------------------------------------- kl_div

def kl_div_vjp(pred: Any, target: Any, reduction: str = "mean",
               log_target: bool = False) -> tuple[Any, Pullback]:
    """torch's ``kl_div``: log-probabilities ``p <= 0`` against probabilities ``t >= 0``,
    ``t (log t - p)`` (0 where ``t = 0``, as torch's xlogy, and the limit there at ``p = -inf``
    too, where torch's ``0·inf`` gives NaN); ``log_target=True``: ``t <= 0``
    are log-probabilities, ``e^t (t - p)``. ``dp = -t`` (``-e^t``). ``reduction='batchmean'``
    (this loss only) divides the sum by the batch size, ``pred.shape[0]``, the true KL
    divergence per example; ``'mean'``, as torch's, divides by every element."""
    name = "kl_div"
    log_target = bool_arg(log_target, name, "log_target")
    p = pred_array(name, pred)
    t = target_like(name, p, target)
    choice_arg(reduction, name, "reduction", ("mean", "batchmean", "sum", "none"))
    # log-probabilities > 0 (torch takes them) make terms of either sign, whose inf + -inf
    # sum is NaN; <= 0, no term is -inf
    _nonpositive(name, "pred", p, " (log-probabilities, a LogSoftmax's output)")
    if log_target:
        _nonpositive(name, "target", t, " (log-probabilities, as log_target=True says)")
    # huge finite values: inf, as torch; the where drops 0 · inf and log 0 of t = 0 terms
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if log_target:
            e = np.exp(t)
            d = t - p
            per = np.where((e == 0) | (d == 0), 0, e * d)
            slope = -e
        else:
            t = _nonnegative(name, "target", t, " (probabilities; for log-probabilities "
                             "pass log_target=True)")
            per = np.where(t > 0, t * (np.log(t) - p), 0)
            slope = -t
    per = per.astype(p.dtype, copy=False)
    count: float = per.size
    if reduction == "batchmean":
        count = p.shape[0] if p.ndim else 1
        if count == 0:
            raise ValueError(f"{name}: reduction='batchmean' over an empty batch (shape "
                             f"{p.shape}) is undefined; skip empty batches, or pass "
                             f"reduction='sum'")
        reduction = "mean"
    return reduce_loss(name, per, reduction, count, lambda c: c * slope)


# ---------------------------------------------------------------------------- poisson_nll

def poisson_nll_vjp(pred: Any, target: Any, reduction: str = "mean", log_input: bool = True,
                    full: bool = False, eps: float = 1e-8) -> tuple[Any, Pullback]:
    """torch's ``poisson_nll_loss`` of counts ``t >= 0``: ``log_input=True``, log-rates
    ``p``: ``e^p - t p``, ``dp = e^p - t``; ``log_input=False``, rates ``p >= 0``:
    ``p - t log(p + eps)`` (0 · log: 0), ``dp = 1 - t / (p + eps)``. ``full`` adds
    Stirling's ``t log t - t + ½ log(2π t)`` where ``t > 1`` (no gradient)."""
    name = "poisson_nll"
    log_input = bool_arg(log_input, name, "log_input")
    full = bool_arg(full, name, "full")
    p = pred_array(name, pred)
    e_ = _eps(name, eps, p.dtype)
    t = _nonnegative(name, "target", target_like(name, p, target), " (counts)")
    if not log_input:
        p = _nonnegative(name, "pred", p, " (rates; for log-rates pass log_input=True)")
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf, as torch
        if log_input:
            e = np.exp(p)
            slope = e - t
            log_rate = p
        else:
            q = p + p.dtype.type(e_)
            slope = 1 - t / q
            log_rate = np.log(q)
        # -t log_rate, 0 where t = 0 (0 · log 0); with full, where t > 1, t (log t -
        # log_rate) - t + ½ log(2π t): one product, so no -inf meets Stirling's +inf
        if full:
            big = t > 1
            ts = np.where(big, t, 1)
            log_t = np.log(ts)
            part = np.where(big, ts * (log_t - log_rate) - ts + 0.5 * (_LOG_2PI + log_t),
                            np.where(t > 0, -t * log_rate, 0))
        else:
            part = np.where(t > 0, -t * log_rate, 0)
        per = (e if log_input else p) + part
        if log_input and not np.isfinite(per).all():  # e^p = inf beside -inf: inf, not NaN
            per = np.where(np.isinf(e), e, per)
    per = per.astype(p.dtype, copy=False)
    return reduce_loss(name, per, reduction, per.size, lambda c: c * slope)


# ---------------------------------------------------------------------------- gaussian_nll

def _var_arg(name: str, var: Any, shape: tuple[int, ...], dtype: Any,
             learned: bool) -> tuple[Array, Array, tuple[int, ...]]:
    """``var`` (as given, in ``dtype``), its view broadcasting against pred of ``shape``
    and the axes summed for its gradient. torch's shapes: pred's; pred's without the last
    axis (one variance per example); pred's with one axis of size 1; or (data only) a
    scalar."""
    if learned:
        v = pred_array(name, var)
        if v.dtype != dtype:
            raise TypeError(f"{name}: the mean and the variance of pred = (mean, var) must "
                            f"have one dtype, got {np.dtype(dtype)} and {v.dtype}")
    else:
        v = array_arg(var, name, "var")
        if v.dtype.kind not in "biuf":
            raise TypeError(f"{name}: var must be a real array, got {type(var).__name__} "
                            f"(dtype {v.dtype})")
        with np.errstate(over="ignore"):  # float64 1e300 in float32: inf, as the target
            v = v.astype(dtype, copy=False)
    b = v
    if v.shape != shape:
        if len(shape) and v.shape == shape[:-1]:
            b = v[..., None]
        elif not (v.ndim == len(shape) and sum(a != s for a, s in zip(v.shape, shape)) == 1
                  and all(a == s or a == 1 for a, s in zip(v.shape, shape))) and not (
                      v.ndim == 0 and not learned):
            raise ValueError(f"{name}: var must have the mean's shape {shape}, or that "
                             f"without its last axis {shape[:-1]}, or one axis of size 1; "
                             f"got {v.shape}")
    axes = tuple(i for i, (a, s) in enumerate(zip(b.shape, shape)) if a != s) if b.ndim \
        else tuple(range(len(shape)))
    return v, _nonnegative(name, "var", b, ""), axes


def gaussian_nll_vjp(pred: Any, target: Any, var: Any = None, reduction: str = "mean",
                     full: bool = False, eps: float = 1e-6) -> tuple[Any, Pullback]:
    """torch's ``gaussian_nll_loss``: ``½ (log v + (m - t)² / v)`` (``+ ½ log 2π`` when
    ``full``), ``v = max(var, eps)``; ``dm = (m - t) / v``, ``dvar = ½ (1/v - (m - t)² / v²)``
    (through the clamp as if it were not there, as torch's ``no_grad`` clamp).

    ``pred`` is a tuple ``(mean, var)``, a two-output model's (``Parallel``'s) output, and the
    pullback returns ``(dmean, dvar)``; or ``pred`` is the mean and ``var`` a third
    argument, data with no gradient (also a scalar), the pullback returning ``dmean``."""
    name = "gaussian_nll"
    learned = isinstance(pred, tuple)  # a list is array-like: rows, as np.asarray reads it
    if learned:
        if var is not None or len(pred) != 2:
            hint = ("; the third argument is var: pass reduction= by keyword"
                    if isinstance(var, str) else "")
            raise TypeError(f"{name}: pred must be the mean (with var as the third "
                            f"argument) or a pair (mean, var) without one; got a "
                            f"{type(pred).__name__} of length {len(pred)}"
                            f"{' and var' if var is not None else ''}{hint}")
        pred, var = pred
    elif var is None:
        raise TypeError(f"{name}: the variance is missing: pass pred=(mean, var), a "
                        f"two-output model's, or the mean and var as the third argument")
    full = bool_arg(full, name, "full")
    m = pred_array(name, pred)
    t = target_like(name, m, target)
    e_ = _eps(name, eps, m.dtype)
    v_in, v, axes = _var_arg(name, var, m.shape, m.dtype, learned)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf, as torch
        vc = np.maximum(v, m.dtype.type(e_))
        d = m - t
        r = d / vc
        per = 0.5 * (np.log(vc) + d * r)
        if full:
            per += 0.5 * _LOG_2PI
    if not learned:
        return reduce_loss(name, per, reduction, per.size, lambda c: c * r)

    def grad(c: Any) -> tuple[Array, Array]:
        with np.errstate(over="ignore", invalid="ignore"):
            dm = c * r
            dv = (c * 0.5) * (1 / vc - r * r)
        if axes:
            dv = add_reduce(dv, axis=axes, keepdims=True)
        return dm, dv.reshape(v_in.shape).astype(m.dtype, copy=False)

    return reduce_loss(name, per, reduction, per.size, grad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- gaussian_kl

def gaussian_kl_vjp(pred: Any, target: Any = None,
                    reduction: str = "mean") -> tuple[Any, Pullback]:
    """A VAE's ``KL(N(mu, e^lv) || N(mu_p, e^lv_p))`` of ``pred = (mu, lv)``, both (N, ...),
    the prior ``target = (mu_p, lv_p)`` (each broadcastable to mu's shape: a Bayes-by-backprop
    prior N(0, s²) is ``(0.0, 2 log s)``; torch's ``kl_divergence(Normal, Normal)``) or None
    for N(0, I): per example ``½ Σ (e^d - 1 - d + (mu - mu_p)² e^-lv_p)``, ``d = lv - lv_p``,
    over the non-batch axes, then the batch's mean ('mean'), sum, or the (N,) values
    ('none'); ``(dmu, dlv) = g · ((mu - mu_p) e^-lv_p, ½ (e^d - 1))``, over N for the mean.
    The prior is data: no cotangent for it."""
    name = "gaussian_kl"
    if not (isinstance(pred, tuple) and len(pred) == 2):
        raise TypeError(f"{name}: pred must be the pair (mu, logvar), an encoder's two "
                        f"heads; got {type(pred).__name__}"
                        f"{f' of length {len(pred)}' if isinstance(pred, tuple) else ''}")
    mu = pred_array(name, pred[0])
    lv = pred_array(name, pred[1], mu)
    if lv.dtype != mu.dtype or lv.shape != mu.shape or mu.ndim == 0:
        raise ValueError(f"{name}: mu and logvar must be arrays (N, ...) of one shape and "
                         f"dtype, got {mu.shape} {mu.dtype} and {lv.shape} {lv.dtype}")
    # expm1(d) - d keeps the digits of e^d - 1 - d near d = 0; a huge lv or mu makes the
    # term inf (past the dtype's range), quietly, as the other losses' overflow
    with np.errstate(over="ignore", invalid="ignore"):
        if target is None:
            d, gap, dmu = lv, mu, mu
        else:
            mu_p, lv_p = _prior(name, target, mu)
            d, gap = lv - lv_p, mu - mu_p
            dmu = gap * np.exp(-lv_p)
        half_em1 = 0.5 * np.expm1(d)
        near_top = np.isposinf(half_em1) & np.isfinite(d)
        if near_top.any():  # e^d overflowed where ½ e^d = (½ e^(d/2)) e^(d/2) still fits;
            # e^(d - log 2) would round d - log 2 to d's spacing: ~d·eps relative error
            root = np.exp(0.5 * d)
            half_em1 = np.where(near_top, (0.5 * root) * root - 0.5, half_em1)
        each = half_em1 - 0.5 * d + (0.5 * dmu) * gap
        per = add_reduce(each.reshape(len(mu), math.prod(mu.shape[1:])), axis=1)

    def grad(c: Any) -> tuple[Array, Array]:
        if isinstance(c, np.ndarray):  # 'none': a cotangent per example
            c = c.reshape(c.shape + (1,) * (mu.ndim - 1))
        with np.errstate(over="ignore", invalid="ignore"):
            return c * dmu, c * half_em1

    return reduce_loss(name, per, reduction, len(per), grad)  # type: ignore[arg-type]


def _prior(name: str, target: Any, mu: Array) -> tuple[Array, Array]:
    """gaussian_kl's prior ``(mu_p, logvar_p)``, each in mu's dtype and broadcastable to
    mu's shape without changing it, or a TypeError / ValueError saying what came."""
    if not (isinstance(target, tuple) and len(target) == 2):
        raise TypeError(f"{name}: target must be None (the prior N(0, I)) or the prior's pair "
                        f"(mu_p, logvar_p), got {type(target).__name__}"
                        f"{f' of length {len(target)}' if isinstance(target, tuple) else ''}")
    out = []
    for what, t in zip(("mu_p", "logvar_p"), target):
        a = array_arg(t, name, f"target's {what}")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}: target's {what} must hold real numbers, got dtype "
                            f"{a.dtype}")
        try:
            fits = np.broadcast_shapes(a.shape, mu.shape) == mu.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{name}: target's {what} must broadcast to mu's shape "
                             f"{mu.shape} (a scalar, the latent shape {mu.shape[1:]}, (1, ...) or "
                             f"mu's own; a prior per example is (N, 1, ...)), got {a.shape}")
        out.append(a.astype(mu.dtype, copy=False))
    return out[0], out[1]
