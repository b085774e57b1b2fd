"""Connectionist temporal classification (Graves et al. 2006), PyTorch's ``ctc_loss`` with
the batch axis first: log-space forward (alpha) and backward (beta) recursions over the
extended labels, the targets with a blank before, between and after their labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import bool_arg, int_arg, lengths_arg
from funcdl.losses._base import Array, Pullback, int_labels, pred_array
from funcdl.losses._reduction import reduce_loss

_NEG = -np.inf
# alpha, beta and the posterior are computed in float64 whatever pred's dtype: alpha_t and
# beta_t are sums of up to T log-probabilities (hundreds in magnitude) and the gradient is
# exp(alpha + beta - log p), a difference of such sums; float32's rounding of a 500 there is
# 3e-5, times T steps of it, an error of 1e-3 in the gradient; the value and the gradient
# are cast back to pred's dtype.
_WORK = np.float64


def ctc_vjp(pred: Any, target: Any, reduction: str = "mean", *, input_lengths: Any = None,
            target_lengths: Any = None, blank: Any = 0,
            zero_infinity: bool = False) -> tuple[Any, Pullback]:
    """torch's ``ctc_loss``, batch first: log-probabilities ``lp`` (N, T, C) (a
    ``LogSoftmax``'s output) against padded integer labels (N, S); ``input_lengths`` and
    ``target_lengths`` (N,) (None: T and S for every example; labels past a target's length
    are ignored). ``target`` may also be the tuple ``(labels, input_lengths,
    target_lengths)``, torch's positional order, so that lengths that change from batch to
    batch travel with the data through ``value_and_grad``'s ``f(params, x, target)``.

    Forward: ``per_n = -log p(l_n | x_n)``, ``p = Σ_alignments Π_t exp(lp[t, π_t])`` over the
    alignments of the first T_n steps that collapse (repeats merged, then blanks dropped)
    to the first L_n labels; +inf when none does (``zero_infinity``: 0, gradient 0).
    ``'mean'`` averages ``per_n / max(L_n, 1)`` over the batch, as torch.
    vjp: ``dlp[n, t, c] = -Σ_{s: l'_s = c} exp(α_t(s) + β_t(s) - log p)`` for t < T_n (0
    after), the posterior of class c at step t, negated; α_t(s) is the log-probability of
    the prefixes ending in extended label s at step t, β_t(s) that of the suffixes after it.
    This is the derivative of the value. torch's own gradient with respect to its
    ``log_probs`` argument is ``exp(lp) + dlp`` instead (the gradient with respect to the
    logits, assuming ``lp`` is a log_softmax); through ``LogSoftmax`` both give
    ``softmax - posterior``. An infinite loss gets NaN gradients for t < T_n, as torch's."""
    name = "ctc"
    lp = pred_array(name, pred)
    if lp.ndim != 3:
        raise ValueError(f"{name}: pred must be log-probabilities of shape (N, T, C), batch, "
                         f"time, classes (batch first), got shape {lp.shape}; for a single "
                         f"sequence of shape (T, C) pass pred[None] and target[None]")
    n, t_max, n_cls = lp.shape
    if n_cls == 0:
        raise ValueError(f"{name}: pred needs a class axis of at least one class (the "
                         f"blank), got shape {lp.shape}")
    labels, input_lengths, target_lengths = _unpacked(name, target, input_lengths,
                                                      target_lengths)
    blank = int_arg(blank, name, "blank")
    if blank >= n_cls:
        raise ValueError(f"{name}: blank must be a class index in [0, {n_cls}) for pred of "
                         f"shape {lp.shape}, got {blank}")
    zero_infinity = bool_arg(zero_infinity, name, "zero_infinity")
    lab = _labels(name, labels, lp.shape, blank)
    s_max = lab.shape[1]
    il = lengths_arg(name, "input_lengths", input_lengths, n, t_max, "pred.shape[1]")
    tl = lengths_arg(name, "target_lengths", target_lengths, n, s_max, "target.shape[1]")
    ext = _extended(name, lab, tl, n_cls, blank)
    # skip[s]: the move s-2 -> s is allowed (l'_s is a label differing from l'_{s-2});
    # added to alpha as 0 / -inf, so that a forbidden move contributes exp(-inf) = 0
    skip = np.full(ext.shape, _NEG)
    skip[:, 2:][(ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])] = 0.0
    em = np.take_along_axis(lp.astype(_WORK, copy=False),
                            np.broadcast_to(ext[:, None, :], (n, t_max, ext.shape[1])), axis=2)
    # log-probabilities near -max: sums of them -inf, and -log p past float32's range inf
    with np.errstate(over="ignore"):
        alpha = _alpha(em, skip)
        rows = np.arange(n)
        last = np.maximum(il - 1, 0)
        # the two end states, 2 L_n and 2 L_n - 1 (alpha's columns are shifted by its two
        # leading -inf pads: L_n = 0 then reads a pad for the second)
        logp = (np.logaddexp(alpha[rows, last, 2 * tl + 2], alpha[rows, last, 2 * tl + 1])
                if t_max else np.full(n, _NEG))
        logp = np.where(il > 0, logp, np.where(tl == 0, 0.0, _NEG))  # T_n = 0: empty or none
        finite = np.isfinite(logp.astype(lp.dtype))  # in pred's dtype, as torch's
    per = -logp
    if zero_infinity:
        per = np.where(finite, per, 0.0)
    mean = isinstance(reduction, str) and reduction == "mean"
    # torch's mean: each loss over its target length (at least 1), then the batch mean
    scale = 1.0 / np.maximum(tl, 1) if mean else None
    cache: list[Array] = []

    def grad(c: Any) -> Array:
        if not cache:  # beta and the posterior only when a gradient is asked for
            with np.errstate(over="ignore"):  # as alpha's
                cache.append(_posterior(em, alpha, skip, ext, il, tl, logp, finite, n_cls,
                                        zero_infinity))
        cs = np.asarray(c, _WORK) if scale is None else scale * c
        out: Array = (cache[0] * cs.reshape(-1, 1, 1) if np.ndim(cs) else
                      cache[0] * cs).astype(lp.dtype, copy=False)
        return out

    reduced = per if scale is None else per * scale
    with np.errstate(over="ignore"):  # a float64 loss past float32's range: inf
        reduced = reduced.astype(lp.dtype)
    return reduce_loss(name, reduced, reduction, n, grad)


# ---------------------------------------------------------------------------- recursions

def _alpha(em: Array, skip: Array) -> Array:
    """``α`` (N, T, S' + 2) with two leading -inf columns (the s-1 and s-2 of s = 0, 1):
    ``α_0(s) = em_0(s)`` for s < 2, ``α_t(s) = em_t(s) + logsumexp(α_{t-1}(s),
    α_{t-1}(s-1), α_{t-1}(s-2) + skip(s))``. Past T_n it runs on, unread."""
    n, t_max, width = em.shape
    alpha = np.full((n, t_max, width + 2), _NEG)
    if t_max == 0:
        return alpha
    alpha[:, 0, 2:4] = em[:, 0, :2]
    tmp = np.empty((n, width))
    # one vectorised step per time step: step t needs step t-1, nothing else is looped
    for t in range(1, t_max):
        prev = alpha[:, t - 1]
        cur = alpha[:, t, 2:]
        np.logaddexp(prev[:, 2:], prev[:, 1:-1], out=cur)
        np.add(prev[:, :-2], skip, out=tmp)
        np.logaddexp(cur, tmp, out=cur)
        cur += em[:, t]
    return alpha


def _beta(em: Array, skip: Array, il: Array, tl: Array) -> Array:
    """``β`` (N, T, S'): ``β_{T_n-1}(s) = 0`` at the end states 2 L_n and 2 L_n - 1, else
    -inf; ``β_t(s) = logsumexp_{s' in s, s+1, s+2} (em_{t+1}(s') + β_{t+1}(s'))``, s+2 where
    skip(s+2); -inf for t >= T_n. (It leaves out step t's emission, which α holds.)"""
    n, t_max, width = em.shape
    beta = np.full((n, t_max, width), _NEG)
    end = np.full((n, width), _NEG)
    rows = np.arange(n)
    end[rows, 2 * tl] = 0.0
    end[rows[tl > 0], 2 * tl[tl > 0] - 1] = 0.0
    nxt = np.full((n, width + 2), _NEG)  # em_{t+1} + β_{t+1}, two trailing -inf pads
    skip_next = np.full((n, width), _NEG)
    skip_next[:, :-2] = skip[:, 2:]
    tmp = np.empty((n, width))
    ends_here = il - 1
    # one vectorised step per time step, backwards: step t needs step t+1
    for t in range(t_max - 1, -1, -1):
        cur = beta[:, t]
        if t < t_max - 1:
            np.add(em[:, t + 1], beta[:, t + 1], out=nxt[:, :width])
            np.logaddexp(nxt[:, :width], nxt[:, 1:-1], out=cur)
            np.add(nxt[:, 2:], skip_next, out=tmp)
            np.logaddexp(cur, tmp, out=cur)
        at = ends_here == t  # the examples whose last step is t start here
        if at.any():
            cur[at] = end[at]
    return beta


def _posterior(em: Array, alpha: Array, skip: Array, ext: Array, il: Array, tl: Array,
               logp: Array, finite: Array, n_cls: int, zero_infinity: bool) -> Array:
    """``dlp`` (N, T, C) for a cotangent of 1 on each example's loss: ``-Σ_{s: l'_s = c}
    exp(α_t(s) + β_t(s) - log p)``, one bincount over the flat (n, t, l'_s) indices (a
    product with the one-hot of l' costs N·T·S'·C: 58 ms against 1 ms at C = 1000, a
    one-off timing)."""
    beta = _beta(em, skip, il, tl)
    shift = np.where(finite, logp, 0.0)  # an infinite loss's rows are replaced below
    gamma = alpha[:, :, 2:] + beta
    gamma -= shift[:, None, None]
    np.exp(gamma, out=gamma)
    n, t_max = gamma.shape[:2]
    rows = (np.arange(n)[:, None, None] * t_max + np.arange(t_max)[None, :, None]) * n_cls
    out: Array = np.bincount((rows + ext[:, None, :]).ravel(), gamma.ravel(),
                             minlength=n * t_max * n_cls).reshape(n, t_max, n_cls)
    np.negative(out, out=out)
    if not finite.all():
        bad = ~finite[:, None] & (np.arange(em.shape[1]) < il[:, None])  # (N, T)
        out[bad] = 0.0 if zero_infinity else np.nan
    return out


# ---------------------------------------------------------------------------- arguments

def _unpacked(name: str, target: Any, input_lengths: Any,
              target_lengths: Any) -> tuple[Any, Any, Any]:
    if type(target) is not tuple:  # a list is array-like: rows of labels
        return target, input_lengths, target_lengths
    if len(target) != 3:
        raise TypeError(f"{name}: a tuple target must be (labels, input_lengths, "
                        f"target_lengths), torch's order (a length may be None), got a tuple "
                        f"of length {len(target)}")
    if input_lengths is not None or target_lengths is not None:
        raise TypeError(f"{name}: the lengths came twice, in the tuple target and as "
                        f"input_lengths= / target_lengths=; pass them one way")
    return target


# torch also takes the targets concatenated in one 1-D tensor; funcdl's form is padded rows
_CONCATENATED = ("; torch's 1-D concatenated targets are data.pad_sequences(np.split(targets, "
                 "np.cumsum(target_lengths)[:-1]))[0]")


def _labels(name: str, target: Any, shape: tuple[int, ...], blank: int) -> Array:
    lab = int_labels(name, target, "labels of shape (N, S), padded",
                     f"labels must be integer class ids in [0, {shape[-1]}) other than the "
                     f"blank, {blank}")
    if lab.ndim != 2 or lab.shape[0] != shape[0]:
        first = lab.ndim == 2 and lab.shape[0] == shape[1]  # torch's (T, N, C) log-probs
        raise ValueError(f"{name}: target must be integer labels of shape (N, S) = "
                         f"({shape[0]}, S) for pred of shape {shape}, one padded row per "
                         f"example, got shape {lab.shape}" + (
                             "; pred is batch-first (N, T, C): for torch's time-first "
                             "(T, N, C) log-probs pass pred.transpose(1, 0, 2)" if first
                             else _CONCATENATED if lab.ndim == 1 else ""))
    return lab



def _extended(name: str, lab: Array, tl: Array, n_cls: int, blank: int) -> Array:
    """l' (N, 2S + 1): blank, l_1, blank, ..., l_S, blank; the padding past L_n as blanks
    (never reached: they lie past the end states)."""
    valid = np.arange(lab.shape[1]) < tl[:, None]
    bad = valid & ((lab < 0) | (lab >= n_cls) | (lab == blank))
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: labels within target_lengths must be classes in [0, "
                         f"{n_cls}) other than the blank, {blank}; got {lab[at]} at target"
                         f"{list(at)} (pad past target_lengths with any value)")
    ext = np.full((lab.shape[0], 2 * lab.shape[1] + 1), blank, np.int64)
    ext[:, 1::2] = np.where(valid, lab, blank)
    return ext
