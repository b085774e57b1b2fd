"""Calibration metrics of predicted class probabilities: the Brier score and the binned
calibration error (ECE, RMSCE, MCE), re-exported by ``funcdl.metrics``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl._args import choice_arg, int_arg
from funcdl._metric_args import probabilities

_NORMS = ("l1", "l2", "max")
_MAX_BINS = 2**24  # three count vectors of 128 MiB each


def brier_score(y_true: Any, probs: Any, *, scale_by_half: bool | str = "auto") -> float:
    """The mean squared distance of each row of probabilities from its one-hot label:
    ``mean_n Σ_c (p[n, c] - [y_n = c])²``, halved with ``scale_by_half`` (sklearn's
    ``brier_score_loss``).

    ``probs`` (N, C) rows of class probabilities, or (N,) the probability of class 1 (the
    rows ``(1 - p, p)``); ``y_true`` integer labels (N,). ``scale_by_half='auto'`` halves for
    two classes alone, as sklearn's default: (N,) probabilities then give ``mean (p - y)²``,
    in [0, 1]; C > 2 classes keep the [0, 2] range, the Brier score of the uncertainty
    literature (Ovadia et al. 2019). ``True`` or ``False`` halves always or never.
    """
    fn = "brier_score"
    auto = isinstance(scale_by_half, str) and scale_by_half == "auto"
    if not (auto or isinstance(scale_by_half, (bool, np.bool_))):
        raise TypeError(f"metrics.{fn}: scale_by_half must be True, False or 'auto', got "
                        f"{scale_by_half!r}")
    t, p, _ = probabilities(fn, y_true, probs, "the Brier score is undefined")
    d = p.astype(np.float64)  # a copy: the one-hot is subtracted in place
    d[np.arange(len(t)), t] -= 1.0
    value = float(np.mean(np.einsum("nc,nc->n", d, d)))
    half = p.shape[1] == 2 if auto else bool(scale_by_half)
    return value / 2 if half else value


def calibration_error(y_true: Any, probs: Any, *, n_bins: int = 15,
                      norm: str = "l1") -> float:
    """The binned calibration error: how far the accuracy in each bin of confidence lies
    from the mean confidence there (Guo et al. 2017; torchmetrics' ``calibration_error``).

    ``probs`` (N, C) rows of class probabilities: the top label's, the confidence
    ``max_c p[n, c]`` against the accuracy ``[argmax_c p[n, c] = y_n]`` (the first column on
    ties, as ``np.argmax``); or (N,) the probability of class 1 against the 0/1 label
    (torchmetrics' binary one; sklearn's ``calibration_curve``). Bin m of ``n_bins`` equal
    bins holds the confidences in ((m-1)/M, m/M], 0 in the first, as
    ``calibration_curve(strategy='uniform')``; torchmetrics' bins [(m-1)/M, m/M) and its bin
    of 1.0 alone move a confidence on an edge. With ``w_m`` the fraction of examples in bin
    m and ``gap_m = |accuracy_m - confidence_m|`` over the non-empty bins: ``norm='l1'`` is
    the ECE ``Σ w_m gap_m``, ``'l2'`` the RMS error ``sqrt(Σ w_m gap_m²)``, ``'max'`` the
    MCE ``max gap_m``.
    """
    fn = "calibration_error"
    m = int_arg(n_bins, f"metrics.{fn}", "n_bins", 1)
    if m > _MAX_BINS:
        raise ValueError(f"metrics.{fn}: n_bins must be at most {_MAX_BINS}, got {m}; the "
                         f"usual choice is 10 or 15 (torchmetrics' default)")
    choice_arg(norm, f"metrics.{fn}", "norm", _NORMS)
    t, p, binary = probabilities(fn, y_true, probs, "the calibration error is undefined")
    p = p.astype(np.float64, copy=False)
    if binary:
        conf, hit = p[:, 1], t.astype(np.float64)
    else:
        top = np.argmax(p, axis=1)
        conf, hit = p[np.arange(len(t)), top], (top == t).astype(np.float64)
    # right-closed bins: searchsorted on the inner edges, side 'left', puts a confidence on
    # an edge in the bin below it and 0 in the first (calibration_curve's rule)
    bins = np.searchsorted(np.linspace(0.0, 1.0, m + 1)[1:-1], conf, side="left")
    count = np.bincount(bins, minlength=m)
    diff = np.bincount(bins, hit - conf, minlength=m)  # Σ (hit - conf) per bin
    full = count > 0
    gap = np.abs(diff[full]) / count[full]
    if norm == "max":
        return float(gap.max())
    w = count[full] / len(t)
    if norm == "l1":
        return float(np.sum(w * gap))
    return math.sqrt(float(np.sum(w * gap * gap)))
