"""The metrics' argument checks: labels, scores and probabilities, each refused with a
message naming the metric, what it expected and what it got (``funcdl.metrics`` and the
calibration metrics share them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import array_arg, foreign_dtype


def numbers(x: Any, fn: str, arg: str, cast: str = "np.float32") -> NDArray[Any]:
    """``x`` as an array of numbers; ``cast``: the dtype an unsupported one is told to take
    (int for labels)."""
    a = array_arg(x, f"metrics.{fn}", arg)  # a ragged list, or a tuple of arrays: refused
    if foreign_dtype(a.dtype):
        raise TypeError(f"metrics.{fn}: {a.dtype} {arg} is not supported; cast it: "
                        f"{arg}.astype({cast})")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"metrics.{fn}: {arg} must hold numbers, got dtype {a.dtype}; pass "
                        "integer labels or float scores")
    return a


def labels(x: Any, fn: str, arg: str, num_classes: int | None = None,
            widen: str = "") -> NDArray[np.int64]:
    """A 1-D int64 array of class indices in ``0 .. num_classes-1`` (or >= 0), or raise;
    ``widen`` ends the message when a label reaches ``num_classes``: how to allow more."""
    a = numbers(x, fn, arg, "int")
    if a.ndim != 1:
        raise ValueError(f"metrics.{fn}: {arg} must be 1-D labels of shape (N,), got shape "
                         f"{a.shape}; pass one integer label per example"
                         + (f" (for a label map, each pixel an example: {arg}.ravel())"
                            if a.ndim > 1 else ""))
    if a.size == 0:  # before the dtype check: np.asarray([]) is float64
        raise ValueError(f"metrics.{fn}: {arg} is empty (0 examples); the metric is undefined "
                         "(sklearn raises ValueError too): pass at least one example")
    if a.dtype.kind == "f":
        whole = bool(np.isfinite(a).all() and (a == np.round(a)).all())
        fix = (f"cast with {arg}.astype(int)" if whole else
               f"these are not whole numbers: for probabilities pass the predicted labels, "
               f"({arg} > 0.5).astype(int) for one class's, or probs.argmax(axis=1) for a "
               f"row per example")
        raise TypeError(f"metrics.{fn}: {arg} must be integer labels, got dtype {a.dtype}; "
                        f"{fix}")
    # in the labels' own dtype: a uint64 label >= 2**63 would wrap negative as int64
    lo, hi = int(a.min()), int(a.max())
    limit = 2**63 if num_classes is None else num_classes
    if lo < 0 or hi >= limit:
        want = (f"in 0 .. {num_classes - 1}" if num_classes is not None
                else "0 or more" if hi < limit else "below 2**63 (int64)")
        more = widen if num_classes is not None and hi >= num_classes else ""
        raise ValueError(f"metrics.{fn}: {arg} must be class indices {want}, got values from "
                         f"{lo} to {hi}; map the labels to 0 .. K-1 (np.unique(y, "
                         f"return_inverse=True)){more}")
    return a.astype(np.int64)


def same_length(fn: str, a: NDArray[Any], b: NDArray[Any], names: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"metrics.{fn}: {names} must have one entry per example, got "
                         f"{a.shape[0]} and {b.shape[0]}; pass arrays of the same length N")


def scores(x: Any, fn: str, arg: str, ndims: tuple[int, ...],
            undefined: str = "the ranking is undefined (sklearn raises too)"
            ) -> NDArray[np.floating[Any]]:
    """Float scores of ``ndims`` dimensions, or raise; ``undefined``: what a NaN spoils."""
    a = numbers(x, fn, arg)
    if a.ndim not in ndims:
        want = " or ".join({1: "(N,)", 2: "(N, C)"}[d] for d in ndims)
        fix = (f"for predict_proba-style (N, 2) scores pass the positive class's column, "
               f"{arg}[:, 1]" if ndims == (1,) and a.ndim == 2 and a.shape[1] == 2
               else "pass one row of scores per example")
        raise ValueError(f"metrics.{fn}: {arg} must have shape {want}, got shape {a.shape}; "
                         f"{fix}")
    if a.ndim == 2 and a.shape[1] == 0:
        raise ValueError(f"metrics.{fn}: {arg} of shape {a.shape} has no columns; pass {arg} "
                         "(N, C) with a column per class, C >= 1")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if a.shape[0] == 0:
        raise ValueError(f"metrics.{fn}: {arg} is empty (0 examples); the metric is undefined "
                         "(sklearn raises ValueError too): pass at least one example")
    if np.isnan(a).any():
        raise ValueError(f"metrics.{fn}: {arg} contains NaN; {undefined}: drop or fix those "
                         "examples")
    return a


def columns(c: int, arg: str = "scores") -> str:
    """How to allow a label >= ``c`` when the classes are the columns of ``arg``."""
    return f"; or pass {arg} with a column per class (now C = {c} columns)"


def one_column(fn: str, arg: str, a: NDArray[Any], fix: str) -> None:
    """Refuse (N, 1) scores, as sklearn does: a sigmoid head's output read as one class's
    scores makes every prediction class 0 (accuracy 1.0 on a batch of 0s, an error once a
    1 appears); ``fix`` says what to pass for a binary task."""
    if a.ndim == 2 and a.shape[1] == 1:
        raise ValueError(f"metrics.{fn}: {arg} of shape {a.shape} has one column, which "
                         f"would read as the scores of a single class; for a binary task "
                         f"{fix}")


def probabilities(fn: str, y_true: Any, probs: Any,
                  undefined: str) -> tuple[NDArray[np.int64], NDArray[Any], bool]:
    """``(labels, p, binary)``: ``probs`` (N, C) rows of class probabilities in [0, 1]
    summing to 1 within sqrt(eps) of float32 (of float16 for float16 probs), or (N,) class
    1's probability, returned as the rows ``(1 - p, p)`` with ``binary`` True; ``y_true``
    labels in ``0 .. C-1``, one per row. ``undefined``: what a NaN spoils."""
    p = scores(probs, fn, "probs", (1, 2), undefined)
    one_column(fn, "probs", p, "pass probs[:, 0], of shape (N,): probs (N,) is class 1's "
               "probability")
    binary = p.ndim == 1
    if binary:
        p = np.stack([1.0 - p, p], axis=1)
    t = labels(y_true, fn, "y_true", p.shape[1],
               "; probs (N,) is class 1's probability, for 0/1 labels: pass probs (N, C) "
               "with a column per class" if binary else columns(p.shape[1], "probs"))
    same_length(fn, t, p, "y_true and probs")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"metrics.{fn}: probs must lie in [0, 1], got values from "
                         f"{p.min()} to {p.max()}; apply softmax (or sigmoid) to logits first")
    if not binary:  # sklearn warns, and its metrics of such rows mean nothing
        total = p.sum(axis=1)
        # float32's tolerance at least: a float32 softmax over 1000 classes, cast to
        # float64, sums to 1 within 1e-7, which float64's sqrt(eps) would refuse
        tol = math.sqrt(max(np.finfo(p.dtype).eps, np.finfo(np.float32).eps))
        off = np.flatnonzero(~np.isclose(total, 1.0, rtol=tol, atol=0.0))
        if off.size:
            raise ValueError(f"metrics.{fn}: each row of probs must sum to 1, but row "
                             f"{off[0]} sums to {total[off[0]]} ({off.size} rows off); apply "
                             f"softmax to logits, or for one sigmoid per class score each "
                             f"class apart")
    return t, p, binary


def nanaverage(a: NDArray[Any], weights: NDArray[Any] | None) -> float:
    """sklearn's average skipping NaN (zero_division=nan); all-zero weights mean none."""
    keep = ~np.isnan(a)
    if not keep.any():
        return math.nan
    if weights is None or not weights[keep].any():
        return float(np.mean(a[keep]))
    return float(np.average(a[keep], weights=weights[keep]))
