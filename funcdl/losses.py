"""Losses, each callable and with its vjp.

``loss(pred, target, reduction='mean') -> float`` and
``loss.vjp(pred, target) -> (value, pullback)`` with ``pullback(g=1.0) -> dpred``
(``dpred`` has pred's shape and dtype; targets are data and get no gradient).

Reductions follow PyTorch: ``'mean'`` averages over every element (for the cross-entropy,
over every example), ``'sum'`` adds, ``'none'`` returns the per-element (per-example)
losses, whose pullback takes a cotangent of that shape. ``pred`` and ``target`` must have
the same shape (a (50, 1) prediction against a (50,) target is refused, never broadcast).
The mean over an empty batch is refused (NumPy and PyTorch give NaN); its sum is 0.
Every loss is stable at any finite input: no overflow warning, no NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import F32, F64, FLOAT_MAX, array_arg, real_arg
from funcdl._special import shifted_exp

__all__ = ["Loss", "bce", "bce_with_logits", "huber", "mse", "softmax_cross_entropy"]

Array = NDArray[Any]
Pullback = Callable[..., Array]
_sum = np.add.reduce  # ndarray.sum without its Python-level wrapper: the same reduction
# (np.maximum.reduce and np.minimum.reduce stand for .max() and .min() the same way)


@dataclass(frozen=True, slots=True)
class Loss:
    """A loss: ``vjp(pred, target, **kw) -> (value, pullback)``; calling it gives the value.
    A loss with aux (for ``value_and_grad(..., has_aux=True)``): vjp returns ``((value,
    aux), pullback)`` or ``(value, pullback, aux)``; calling it gives ``(value, aux)``."""

    name: str
    vjp: Callable[..., Any]

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and callable(self.vjp)):
            raise TypeError(f"Loss({self.name!r}, ...): expected a name (a str) and a vjp, a "
                            f"function (pred, target) -> (value, pullback); got "
                            f"{type(self.name).__name__} and {type(self.vjp).__name__}")

    def __call__(self, pred: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        got = self.vjp(pred, target, *args, **kwargs)
        if not (isinstance(got, (tuple, list)) and len(got) in (2, 3) and callable(got[1])):
            shown = (f"a {type(got).__name__} of length {len(got)}"
                     if isinstance(got, (tuple, list)) else type(got).__name__)
            raise TypeError(f"{self.name}: its vjp must return (value, pullback), or with aux "
                            f"((value, aux), pullback) or (value, pullback, aux), pullback a "
                            f"function; got {shown}")
        return (got[0], got[2]) if len(got) == 3 else got[0]

    def __repr__(self) -> str:
        return f"funcdl.losses.{self.name}"


def bound(loss: Any) -> Any:
    """``functools.partial(fd.losses.huber, delta=0.5)``, a loss with its options bound as a
    JAX user binds them, as a ``Loss`` whose vjp binds the same; any other value as it
    came (``value_and_grad`` and ``check_loss`` need the vjp, which a partial hides)."""
    if not (isinstance(loss, functools.partial) and callable(getattr(loss.func, "vjp", None))):
        return loss
    func: Any = loss.func
    shown = ", ".join([*map(repr, loss.args), *(f"{k}={v!r}" for k, v in loss.keywords.items())])
    return Loss(f"{getattr(func, 'name', func)}({shown})",
                functools.partial(func.vjp, *loss.args, **loss.keywords))


# ---------------------------------------------------------------------------- helpers

def _pred(name: str, pred: Any) -> Array:
    p = array_arg(pred, name, "pred")
    if p.dtype.kind != "f":
        raise TypeError(f"{name}: pred must be a float array, got dtype {p.dtype}")
    if p.dtype.char not in "fd":
        raise TypeError(f"{name}: {p.dtype} pred is not supported; cast it to float32")
    return p


def _same_shape(name: str, pred: Array, target: Any) -> Array:
    t = array_arg(target, name, "target")
    if t.dtype.kind not in "biuf":  # before the shape: None or a str has shape ()
        raise TypeError(f"{name}: target must be a numeric array, got "
                        f"{type(target).__name__} (dtype {t.dtype})")
    if t.shape != pred.shape:
        hint = (f"; reshape the target, e.g. target.reshape{pred.shape}"
                if t.size == pred.size else "")
        raise ValueError(f"{name}: pred has shape {pred.shape} but target has shape "
                         f"{t.shape}{hint}")
    if t.dtype is pred.dtype:
        return t
    with np.errstate(over="ignore"):  # float64 1e300 in float32 is inf, as PyTorch casts it
        return t.astype(pred.dtype, copy=False)


def _probabilities(name: str, t: Array) -> Array:
    """Probability targets of the cross-entropies must lie in [0, 1] (PyTorch does not
    check; a target of 2, or -1, would give a finite, meaningless loss)."""
    if t.size and not (t.min() >= 0 and t.max() <= 1):
        raise ValueError(f"{name}: target must hold probabilities in [0, 1], got values in "
                         f"[{t.min()}, {t.max()}]")
    return t


def _one_hot(name: str, t: Array, shape: tuple[int, ...]) -> Array:
    """``t`` (an integer or boolean target of the logits' shape, cast to their dtype) if it is
    one-hot: (N,) logits with (N,) labels in {0, 1}, a binary task, would otherwise be one
    example of N classes with several right answers, and train without a word. Entries
    >= 0 whose rows sum to 1 are 0s and one 1, so no [0, 1] check is needed after this.
    1-D logits, or one class, are refused whatever the data (as torch refuses every integer
    target of the logits' shape): a batch of binary labels holding a single 1, or all 1s,
    would pass that check."""
    if len(shape) == 1:
        raise ValueError(f"{name}: an integer target of the logits' shape {shape} is refused "
                         f"with 1-D logits, where binary labels could pass for a one-hot: "
                         f"for one example of {shape[-1]} classes pass its label as an int, "
                         f"or float probabilities; for binary labels, one logit per example, "
                         f"use bce_with_logits")
    if shape[-1] == 1:
        raise ValueError(f"{name}: an integer target of the logits' shape {shape} is refused "
                         f"with one class, where the loss is 0 whatever the logits: for "
                         f"binary labels, one logit per example, use bce_with_logits")
    if t.size and not (np.minimum.reduce(t, axis=None) >= 0 and (
            t.reshape(-1, shape[-1]) @ np.ones(shape[-1], t.dtype) == 1).all()):
        raise ValueError(f"{name}: an integer target of the logits' shape {shape} is read as "
                         f"one-hot, but not every row along the last axis holds a single 1 "
                         f"and zeros; pass integer labels of shape {shape[:-1]}, or float "
                         f"probabilities")
    return t


def _reduced(name: str, per: Array, reduction: str, count: int,
             grad: Callable[[Any], Array]) -> tuple[Any, Pullback]:
    """Reduce per-element losses; ``grad(c)`` maps a per-element cotangent ``c`` (scalar or
    array) to dpred. The mean's pullback scales by 1/count. The pullback is named for the
    loss, so that Python's own errors (``pullback(g, 2.0)``) name it too."""
    if not isinstance(reduction, str):  # `in` below would compare an array elementwise
        raise TypeError(f"{name}: reduction must be 'mean', 'sum' or 'none', got "
                        f"{type(reduction).__name__} {reduction!r}")
    if reduction in ("mean", "sum"):
        if reduction == "mean" and count == 0:  # NumPy and PyTorch: NaN and a warning
            raise ValueError(f"{name}: reduction='mean' over an empty batch (losses of "
                             f"shape {per.shape}) is undefined; skip empty batches, or pass "
                             f"reduction='sum'")
        n = count if reduction == "mean" else 1

        def pullback(g: Any = 1.0) -> Array:
            return grad((g if type(g) is float else _scalar(name, reduction, g)) / n)

        pullback.__qualname__ = f"losses.{name}: pullback"

        # every loss's sum, and only its sum, under this errstate: a float32 Σ of huge
        # finite terms, 3e38 + 3e38
        with np.errstate(over="ignore"):
            value = float(_sum(per, axis=None)) / n
            if not math.isfinite(value) and n > 1:  # ... whose mean fits: in float64
                value = float(_sum(np.divide(per, n, dtype=np.float64), axis=None))
        # a finite value means finite terms: each loss's dpred is then in range
        return value, (pullback if math.isfinite(value) else _quiet(pullback))
    if reduction == "none":
        def pullback(g: Any = None) -> Array:
            c = np.ones_like(per) if g is None else array_arg(g, name, "the cotangent")
            if c.shape != per.shape:
                raise ValueError(f"{name}: pullback expected a cotangent of shape "
                                 f"{per.shape} (reduction='none'), got {c.shape}")
            if c.dtype is not per.dtype:
                if c.dtype.kind not in "iuf":  # complex would lose its imaginary part
                    raise TypeError(f"{name}: pullback expected a real cotangent of shape "
                                    f"{per.shape} (reduction='none'), got dtype {c.dtype}")
                c = c.astype(per.dtype)
            return grad(c)

        pullback.__qualname__ = f"losses.{name}: pullback"
        return per, _quiet(pullback)
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _scalar(name: str, reduction: str, g: Any) -> float:
    """The cotangent of a reduced loss: one real number (None stands for 1, as for 'none')."""
    if g is None:
        return 1.0
    c = array_arg(g, name, "the cotangent")
    if c.ndim or c.dtype.kind not in "iuf":
        raise TypeError(f"{name}: pullback expected a scalar cotangent (reduction="
                        f"{reduction!r} gives one number), got {type(g).__name__} of shape "
                        f"{c.shape} and dtype {c.dtype}; pass reduction='none' for "
                        f"per-element cotangents")
    return float(c)


def _quiet(pullback: Pullback) -> Pullback:
    """``pullback`` under ``np.errstate(over="ignore")``: its dpred of huge values is inf."""
    def quiet(*args: Any, **kwargs: Any) -> Array:
        with np.errstate(over="ignore"):
            return pullback(*args, **kwargs)
    return quiet


# ---------------------------------------------------------------------------- losses

def _mse(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """``mean((p - t)²)``; ``dp = 2 (p - t) / n``."""
    p = _pred("mse", pred)
    t = _same_shape("mse", p, target)
    # huge finite values: d or d² is inf; inf - inf of infinite ones: NaN; both silent, as
    # in PyTorch
    with np.errstate(over="ignore", invalid="ignore"):
        d = p - t
        per = d * d
    return _reduced("mse", per, reduction, d.size, lambda c: (2 * c) * d)


# PyTorch's clamp is the float 1e-12 (ATen's `constexpr float EPSILON`) in every dtype, so
# float64 gradients at p = 0 or 1 agree with its to the last digit only with this value.
_BCE_EPS = float(np.float32(1e-12))


def _bce(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """On probabilities, as PyTorch: ``-(t·max(log p, -100) + (1-t)·max(log(1-p), -100))``;
    ``dp = (p - t) / max(p (1 - p), 1e-12)``."""
    p = _pred("bce", pred)
    t = _probabilities("bce", _same_shape("bce", p, target))
    if p.size and not (p.min() >= 0 and p.max() <= 1):
        raise ValueError("bce: pred must be probabilities in [0, 1] (use bce_with_logits on "
                         f"logits), got values in [{p.min()}, {p.max()}]")
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 below
        log_p = np.maximum(np.log(p), -100)
        log_q = np.maximum(np.log1p(-p), -100)
    per = -(t * log_p + (1 - t) * log_q)

    def grad(c: Any) -> Array:
        out: Array = c * (p - t) / np.maximum(p * (1 - p), _BCE_EPS)
        return out

    return _reduced("bce", per, reduction, p.size, grad)


def _bce_with_logits(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """On logits z: ``max(z, 0) - z t + log(1 + e^-|z|)``, computed as
    ``max(z, 0)(1 - t) - min(z, 0) t + log(1 + e^-|z|)``; ``dz = σ(z) - t``."""
    z = _pred("bce_with_logits", pred)
    t = _probabilities("bce_with_logits", _same_shape("bce_with_logits", z, target))
    e = np.exp(-np.abs(z))
    sig = np.maximum(e, z >= 0) / (1 + e)  # σ(z): 1 or e^z over 1 + e^-|z| (e <= 1)
    # one of the two products is 0, so nothing cancels: max(z, 0) - z t lost the digits
    # of z (1 - t) for t near 1 (float32, z = 20, t = 0.999: 3.6e-5 off), and gave
    # inf - inf at z = inf. z near the dtype's maximum: the loss is inf; an infinite z
    # against t of exactly 1 (or 0 at -inf): inf · 0, NaN, as PyTorch, without the warning
    with np.errstate(over="ignore", invalid="ignore"):
        per = np.maximum(z, 0) * (1 - t)
        per -= np.minimum(z, 0) * t
        per += np.log1p(e)
    return _reduced("bce_with_logits", per, reduction, z.size, lambda c: c * (sig - t))


def _huber(pred: Any, target: Any, delta: float = 1.0,
           reduction: str = "mean") -> tuple[Any, Pullback]:
    """``½ d²`` where ``|d| <= delta``, else ``delta (|d| - ½ delta)``, with ``d = p - t``;
    ``dp = clip(d, -delta, delta)``."""
    delta = real_arg(delta, "huber", "delta", low=0.0, open_low=True, finite=False)
    p = _pred("huber", pred)
    t = _same_shape("huber", p, target)
    if not delta <= FLOAT_MAX[F32 if p.dtype.char == "f" else F64]:  # clips nothing, as inf
        delta = math.inf
    # huge finite values: d is inf, as in PyTorch; inf - inf of infinite ones: NaN, silent
    with np.errstate(over="ignore", invalid="ignore"):
        d = p - t
        a = np.abs(d)
        dc = np.clip(d, -delta, delta)  # equals d on the quadratic branch; never squares 1e30
        # ½ dc² + delta (|d| - |dc|): ½ d² there, delta (|d| - ½ delta) beyond (no np.where,
        # ~10 elementwise passes on an unpredictable mask)
        per = 0.5 * dc * dc
        if math.isfinite(delta):  # inf: the quadratic branch everywhere, and inf · 0 = NaN
            per += delta * (a - np.abs(dc))
    return _reduced("huber", per, reduction, d.size, lambda c: c * dc)


def _softmax_cross_entropy(pred: Any, target: Any, reduction: str = "mean",
                           label_smoothing: float = 0.0) -> tuple[Any, Pullback]:
    """Logits ``z`` of shape (..., C) against integer labels (...) or probabilities / one-hot
    (..., C), floats or ints (an int one-hot needs batched logits of C >= 2: see
    ``_one_hot``): ``-Σ_c t_c log softmax(z)_c``, averaged over examples;
    ``dz = softmax(z) Σ_c t_c - t``. ``label_smoothing`` ε, as torch's: the target is
    ``(1 - ε) t + ε / C`` (t one-hot for labels)."""
    name = "softmax_cross_entropy"
    smooth = real_arg(label_smoothing, name, "label_smoothing", low=0.0, high=1.0)
    z = _pred(name, pred)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"{name}: logits need a class axis of at least one class, got "
                         f"shape {z.shape}")
    labels = array_arg(target, name, "target")
    logp, e, total = shifted_exp(z, -1)
    logp -= np.log(total)
    n_classes = z.shape[-1]
    if labels.dtype.kind in "iu" and labels.shape != z.shape:  # (an int one-hot: below)
        if labels.shape != z.shape[:-1]:
            raise ValueError(f"{name}: integer labels must have shape {z.shape[:-1]} for "
                             f"logits of shape {z.shape}, got {labels.shape}")
        lo, hi = ((np.minimum.reduce(labels, axis=None), np.maximum.reduce(labels, axis=None))
                  if labels.size else (0, -1))
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{name}: labels must be in [0, {n_classes}), got values in "
                             f"[{lo}, {hi}]")
        # One fancy index over the flattened examples: row r, column labels[r].
        rows = np.arange(labels.size)
        cols = labels.reshape(-1)
        per = -logp.reshape(-1, n_classes)[rows, cols].reshape(labels.shape)
        if smooth:  # (1 - ε)·(-log p_label) + ε·(-mean_c log p_c)
            # scaled before the sum: the sum of log p over the classes overflows float32
            # where the logits are ~1e38 apart, the mean does not
            uniform = _sum(logp * (-smooth / n_classes), axis=-1)
            # ε = 1: no label term (an infinite -log p_label times 0 would be NaN)
            per = per * (1 - smooth) + uniform if smooth < 1 else uniform

        def grad(c: Any) -> Array:
            # softmax, a fresh C-ordered array: of permuted logits' layout the reshape below
            # would be a copy, and the subtraction lost
            g = np.divide(e, total, order="C")
            g.reshape(-1, n_classes)[rows, cols] -= 1 - smooth
            if smooth:
                g -= smooth / n_classes
            if np.ndim(c):
                g *= c[..., None]
            else:
                g *= c
            return g
    elif labels.dtype.kind in "fbiu":  # probabilities, or one-hot (torch's one_hot: int64)
        if labels.shape == z.shape[:-1]:  # one value per example: meant as class labels
            raise ValueError(f"{name}: a target of shape {labels.shape} holds class labels, "
                             f"which must be integers, got dtype {labels.dtype}; pass "
                             f"target.astype(int), or probabilities of shape {z.shape}")
        t = _same_shape(name, z, labels)
        t = _one_hot(name, t, z.shape) if labels.dtype.kind != "f" else _probabilities(name, t)
        if smooth:
            t = (1 - smooth) * t + smooth / n_classes
        with np.errstate(invalid="ignore"):  # 0 · -inf, dropped by the where below
            tlogp = t * logp
        per = -np.where(t != 0, tlogp, 0).sum(axis=-1)  # 0 · log 0 = 0, as in the limit

        def grad(c: Any) -> Array:
            g = (e / total) * t.sum(axis=-1, keepdims=True) - t
            out: Array = g * (c[..., None] if np.ndim(c) else c)
            return out
    else:
        raise TypeError(f"{name}: target must be integer labels or float probabilities, "
                        f"got dtype {labels.dtype}")
    return _reduced(name, per, reduction, per.size, grad)


def _public(name: str, fn: Callable[..., Any]) -> Loss:
    """The loss ``name``, its function named ``losses.name`` (Python's own errors, as for an
    unknown keyword, name the function: ``losses.mse() got an unexpected keyword ...``)."""
    fn.__name__, fn.__qualname__ = name, f"losses.{name}"
    return Loss(name, fn)


mse = _public("mse", _mse)
bce = _public("bce", _bce)
bce_with_logits = _public("bce_with_logits", _bce_with_logits)
huber = _public("huber", _huber)
softmax_cross_entropy = _public("softmax_cross_entropy", _softmax_cross_entropy)
