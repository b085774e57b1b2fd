"""``masked(loss)``: a loss counted only at the valid entries of a padded batch, the mask
(or the sequences' lengths) travelling with the target, as ``ctc``'s lengths do."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._args import array_arg
from funcdl.losses._base import Array, Loss, Pullback, bound
from funcdl.losses._reduction import reduce_loss

_KINDS = ("padding", "valid", "lengths")
_FORMS = {"padding": "(target, key_padding_mask), the mask boolean over the leading axes of "
                     "the loss's terms, True at padding",
          "valid": "(target, mask), the mask boolean over the leading axes of the loss's "
                   "terms, True where a term counts",
          "lengths": "(target, lengths), lengths (N,) integers: the first lengths[n] steps "
                     "of axis 1 count"}


def _keep(name: str, kind: str, given: Any, shape: tuple[int, ...]) -> Array:
    """The boolean mask of the terms that count, over the leading axes of ``shape`` (the
    inner loss's terms under ``reduction='none'``): a mask as given ('valid'), its
    complement ('padding'), or lengths ``(N,)`` as ``arange(T) < lengths[:, None]``."""
    v = array_arg(given, name, "the mask" if kind != "lengths" else "lengths")
    if kind != "lengths":
        if v.dtype != np.bool_:
            raise TypeError(f"{name}: the target must be {_FORMS[kind]}; got a mask of dtype "
                            f"{v.dtype}" + ("; integer lengths need masked(..., mask="
                                            "'lengths')" if v.dtype.kind in "iu" else ""))
        if v.ndim == 0 or v.shape != shape[:v.ndim]:
            raise ValueError(f"{name}: the mask must have the leading axes of the loss's "
                             f"terms {shape} ((N, T) for (N, T, ...), as torch's "
                             f"loss[mask]), got shape {v.shape}")
        return v if kind == "valid" else ~v
    if v.dtype.kind not in "iu":
        raise TypeError(f"{name}: the target must be {_FORMS[kind]}; got lengths of dtype "
                        f"{v.dtype}" + ("; a boolean mask needs masked(..., mask='padding') "
                                        "or mask='valid'" if v.dtype == np.bool_ else ""))
    if len(shape) < 2 or v.shape != shape[:1]:
        raise ValueError(f"{name}: lengths must have shape ({shape[0] if shape else 'N'},), "
                         f"one per sequence of terms (N, T, ...), got lengths of shape "
                         f"{v.shape} against the loss's terms {shape}")
    if v.size and (v.min() < 0 or v.max() > shape[1]):
        raise ValueError(f"{name}: lengths must lie in [0, T] = [0, {shape[1]}], got "
                         f"{v.min()} to {v.max()}")
    keep: Array = np.arange(shape[1]) < v[:, None]
    return keep


def _zeroed(d: Any, keep: Array) -> Any:
    """dpred (an array, or a tuple of them) with the entries over the mask's False places
    set to 0: a NaN or inf held there by the target's padding times a zero cotangent is NaN,
    and stays out. An entry whose leading axes are not the mask's is left as it came."""
    if isinstance(d, tuple):
        return tuple(_zeroed(e, keep) for e in d)
    if not isinstance(d, np.ndarray) or d.shape[:keep.ndim] != keep.shape:
        return d
    out: Array = np.where(keep.reshape(keep.shape + (1,) * (d.ndim - keep.ndim)), d,
                          d.dtype.type(0))
    return out


def _masked_vjp(inner: Any, kind: str, name: str, pred: Any, target: Any,
                reduction: str = "mean") -> tuple[Any, Pullback]:
    """``Σ_valid ℓ_i / #valid`` ('mean'), ``Σ_valid ℓ_i`` ('sum') or ``ℓ_i`` with 0 outside
    ('none'), ℓ the inner loss's terms (``reduction='none'``); the pullback gives the inner
    loss's at the cotangent ``g / #valid`` on the valid terms and 0 elsewhere, its dpred 0
    over the padding."""
    if not (isinstance(target, (tuple, list)) and len(target) == 2):
        got = (f"a {type(target).__name__} of {len(target)}" if isinstance(target, (tuple, list))
               else f"{type(target).__name__}")
        raise TypeError(f"{name}: the target must be the pair {_FORMS[kind]}; got {got}")
    got = inner.vjp(pred, target[0], reduction="none")
    if not (isinstance(got, tuple) and len(got) == 2 and callable(got[1])):
        raise TypeError(f"{name}: the inner loss's vjp must return (terms, pullback) under "
                        f"reduction='none'; a loss with aux cannot be masked")
    terms, inner_pullback = got
    per = array_arg(terms, name, "the inner loss's terms")
    keep = _keep(name, kind, target[1], per.shape)
    wide = np.broadcast_to(keep.reshape(keep.shape + (1,) * (per.ndim - keep.ndim)), per.shape)
    count = int(keep.sum()) * math.prod(per.shape[keep.ndim:])
    if reduction == "mean" and count == 0:
        raise ValueError(f"{name}: reduction='mean' divides by the number of valid terms, "
                         f"which is 0 here (the mask holds no True); skip such batches, or "
                         f"pass reduction='sum'")
    shown = np.where(wide, per, per.dtype.type(0))  # a NaN term at the padding: 0, not 0·NaN

    def grad(c: Any) -> Any:
        spread = np.where(wide, c, 0).astype(per.dtype, copy=False)
        with np.errstate(invalid="ignore", over="ignore"):  # 0 · inf at the padding
            return _zeroed(inner_pullback(spread), keep)

    return reduce_loss(name, shown, reduction, count, grad)


def masked(loss: Any, mask: str = "padding") -> Loss:
    """``loss`` counted only at a padded batch's valid entries: the mean of the inner loss's
    terms (its ``reduction='none'``) over them; the target is ``(target, key_padding_mask)``
    (``mask='padding'``), ``(target, mask)`` (``'valid'``) or ``(target, lengths)``
    (``'lengths'``).

    The masks are boolean over the terms' leading axes ((N, T) for (N, T, F) terms, each
    valid step's F entries counted): ``'padding'``, True at padding, is funcdl's mask
    everywhere (``MaskedMean``, attention's ``key_padding_mask``); ``'valid'``, True where
    a term counts, is PyTorch's ``mse_loss(p, y, reduction='none')[mask].mean()`` and JAX's
    ``jnp.mean(l, where=mask)``. ``'lengths'``: integers (N,), the first ``lengths[n]``
    steps of axis 1 valid, as ``LSTM(lengths=True)`` takes them:
    ``value_and_grad(model, masked(mse, 'lengths'))(params, (x, lengths), (y, lengths))``.
    The target's padding may hold any number, NaN or inf for a regression (it reaches
    neither value nor gradient; ``debug.check_finite`` still flags a NaN in the data: pad
    with 0 there); class labels must be valid for the inner loss. ``reduction``: ``'mean'``
    over the valid terms (none valid: an error), ``'sum'``, ``'none'`` (0 outside). Options
    of the inner loss are bound first, ``masked(functools.partial(huber, delta=0.5))``; it
    must take ``reduction='none'``. A class-weighted inner loss (``weight=``) is averaged
    over the count of valid terms, as ``loss(reduction='none')[mask].mean()``, not over
    ``Σ w_y`` as its own weighted 'mean' (torch's ``weight=`` with ``ignore_index``): for
    that mean, pass its ``ignore_index`` instead.
    forward: ``L = Σ_i m_i ℓ_i / Σ_i m_i``, m 1 at the valid terms, 0 elsewhere; vjp:
    ``dpred = ℓ.vjp(m · g / Σ m)``, 0 where ``m = 0``.
    """
    inner = bound(loss)
    if isinstance(inner, type) or not callable(getattr(inner, "vjp", None)):
        raise TypeError(f"masked: expected a loss with a .vjp, as fd.losses.mse (options "
                        f"bound by functools.partial), got {inner!r}")
    if not isinstance(mask, str) or mask not in _KINDS:
        raise ValueError(f"masked: mask must be 'padding' (a key_padding_mask, True at "
                         f"padding), 'valid' (True where a term counts) or 'lengths' (N,), "
                         f"got {mask!r}")
    if not isinstance(inner, Loss):
        inner = Loss(getattr(inner, "name", getattr(inner, "__name__", "loss")), inner.vjp)
    name = f"masked({inner.name})" if mask == "padding" else f"masked({inner.name}, {mask!r})"
    return Loss(name, _MaskedVjp(inner, mask, name))


class _MaskedVjp:
    """``Σ_i m_i ℓ_i / Σ_i m_i`` of the inner loss's terms ℓ, m 1 at the valid terms (from
    the target's mask or lengths) and 0 elsewhere; ``reduction='sum'``: ``Σ_i m_i ℓ_i``,
    ``'none'``: ``m_i ℓ_i``; dpred the inner loss's at ``m · g / Σ m``, 0 where ``m = 0``.
    (A class, not a closure: the loss pickles, for a sweep's config, when its inner one
    does.)"""

    def __init__(self, inner: Loss, kind: str, name: str) -> None:
        self.inner, self.kind, self.name = inner, kind, name

    def __call__(self, pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Pullback]:
        return _masked_vjp(self.inner, self.kind, self.name, pred, target, reduction)

    def __repr__(self) -> str:
        return f"{self.name}.vjp"
