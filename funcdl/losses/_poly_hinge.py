"""optax's PolyLoss (``poly_loss_cross_entropy``, Leng et al. 2022) and its binary hinge
(``hinge_loss``), with Keras's ``squared_hinge``, on ±1 targets."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import array_arg, real_arg
from funcdl._special import shifted_exp
from funcdl.losses._base import (
    Array,
    Pullback,
    add_reduce,
    in_dtype,
    label_error,
    pred_array,
)
from funcdl.losses._cross_entropy import class_label_words, dense_target, one_class, pick_labels
from funcdl.losses._margins import class_count, sign_target
from funcdl.losses._reduction import reduce_loss


def _poly_target(name: str, z: Array, target: Any) -> Array:
    """Probabilities of the logits' shape (floats, or an int one-hot), or integer labels of
    shape (...), as a float array of the logits' shape. The target is read once."""
    t = array_arg(target, name, "target")
    if t.shape == z.shape[:-1] and t.dtype.kind not in "iu":  # read from a text file, names
        raise label_error(name, t, *class_label_words(z.shape))
    if t.dtype.kind in "iu" and t.shape == z.shape[:-1]:
        _, rows, cols, _, _ = pick_labels(name, "logits", z.shape, t, None, None, "sum")
        hot = np.zeros((t.size, z.shape[-1]), z.dtype)
        hot[rows, cols] = 1
        return hot.reshape(z.shape)
    # a non-numeric target goes as given: target_like's TypeError names its type
    return dense_target(name, z, t if t.dtype.kind in "biuf" else target)


def poly_loss_cross_entropy_vjp(pred: Any, target: Any, epsilon: float = 2.0,
                                reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``poly_loss_cross_entropy`` (Poly-1), classes last: logits z (..., C)
    against probabilities t (..., C) (or integer labels (...)): ``-Σ t log p + ε Σ t (1 -
    p)``, ``p = softmax(z)``; ``dz = p Σt - t - ε p (t - <t, p>)``. ``ε >= -1`` (the
    paper's range: below it the loss falls as p_t nears 1, and optax's -1 for detection is
    allowed). The mean is over examples."""
    name = "poly_loss_cross_entropy"
    eps = real_arg(epsilon, name, "epsilon", low=-1.0,
                   fix="; the paper uses 2 (classification) or -1 (detection)")
    z = pred_array(name, pred)
    in_dtype(name, "epsilon", eps, z.dtype)
    class_count(name, z, "the logits")
    one_class(name, z)
    t = _poly_target(name, z, target)
    logp, e, total = shifted_exp(z, -1)
    logp -= np.log(total)
    p = np.divide(e, total, out=e)
    mass = add_reduce(t, axis=-1, keepdims=True)
    tp = add_reduce(t * p, axis=-1, keepdims=True)
    # t log p only where t > 0: an entry of logp past float32's range is -inf, 0·inf NaN
    with np.errstate(invalid="ignore"):
        ce = -add_reduce(np.where(t > 0, t * logp, 0), axis=-1)
    per = (ce + eps * (mass - tp)[..., 0]).astype(z.dtype, copy=False)
    slope = p * mass - t - eps * p * (t - tp)

    def grad(c: Any) -> Array:
        out: Array = slope * (c[..., None] if np.ndim(c) else c)
        return out

    return reduce_loss(name, per, reduction, per.size, grad)


def _hinges(name: str, pred: Any, target: Any, squared: bool,
            reduction: str) -> tuple[Any, Pullback]:
    x = pred_array(name, pred)
    y = sign_target(name, x, target, "Keras maps 0/1 labels to ±1 itself; here they would train "
                    "silently wrong" if squared else "optax's hinge_loss; 0/1 labels would train "
                    "silently wrong")
    # huge |x|: the square (from sqrt of the dtype's maximum on) and its slope 2 (1 - xy)
    # (from half the maximum on) are past the range, inf, as torch's and optax's are
    with np.errstate(over="ignore"):
        h = 1 - x * y
        act = np.maximum(h, 0)
        if squared:
            per = act * act
            slope = -2 * y * act
    if not squared:  # at the kink, 1 - xy = 0, JAX's maximum splits the derivative: -y/2
        per = act
        slope = np.where(h > 0, -y, np.where(h == 0, -y / 2, 0)).astype(x.dtype, copy=False)

    def grad(c: Any) -> Array:
        # an inf slope under a cotangent of 0: 0 · inf, NaN, as torch's, without the warning
        with np.errstate(over="ignore", invalid="ignore"):
            out: Array = c * slope
        return out

    return reduce_loss(name, per, reduction, per.size, grad)


def hinge_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """optax's ``hinge_loss``: scores x against y = ±1 of their shape, ``max(0, 1 - x y)``;
    ``dx = -y`` where ``x y < 1``, ``-y/2`` at ``x y = 1`` (JAX's tie rule), else 0."""
    return _hinges("hinge", pred, target, False, reduction)


def squared_hinge_vjp(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
    """Keras's ``squared_hinge`` term (optax has none): ``max(0, 1 - x y)²`` for y = ±1
    (Keras also maps 0/1 labels to ±1; here they are refused, as hinge refuses them), its
    mean over every element (Keras's mean over the last axis, then over the batch);
    ``dx = -2 y max(0, 1 - x y)``."""
    return _hinges("squared_hinge", pred, target, True, reduction)
