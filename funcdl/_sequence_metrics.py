"""funcdl.metrics' sequence metrics for a CTC model (re-exported by ``funcdl.metrics``):
``ctc_greedy_decode`` (TensorFlow's ``tf.nn.ctc_greedy_decoder``, best path) and
``edit_distance`` (torchaudio's ``functional.edit_distance``, a batch of pairs at once);
their ratio over a test set, ``Σ edit_distance / Σ target_lengths``, is torchmetrics'
``CharErrorRate`` (``WordErrorRate`` on word ids).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import array_arg, int_arg, lengths_arg

__all__ = ["ctc_greedy_decode", "edit_distance"]


def ctc_greedy_decode(log_probs: Any, input_lengths: Any = None,
                      blank: int = 0) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Best-path CTC decoding of a batch: the most likely class at each step, repeats
    merged, then blanks dropped (``tf.nn.ctc_greedy_decoder(merge_repeated=True)``).

    Shapes: ``log_probs`` (N, T, C) (batch first, as ``losses.ctc``'s pred; any scores
    whose argmax is the class: logits do too), ``input_lengths`` (N,) ints in [0, T] or
    None (T) -> ``labels`` (N, S) int64 with ``S`` the longest decoding, each row padded
    with ``blank`` (never a decoded label), and ``lengths`` (N,) int64: the form
    ``losses.ctc`` and ``edit_distance`` take.
    Math: ``b[n, t] = argmax_c log_probs[n, t, c]`` (the first maximum), kept where ``t <
    T_n``, ``b[n, t] != blank`` and (``t = 0`` or ``b[n, t] != b[n, t - 1]``).
    """
    where = "metrics.ctc_greedy_decode"
    lp = array_arg(log_probs, where, "log_probs")
    if lp.ndim != 3 or lp.dtype.kind not in "iuf":
        raise ValueError(f"{where}: log_probs must be real scores of shape (N, T, C), batch "
                         f"first, got shape {lp.shape} and dtype {lp.dtype}")
    n, t_max, n_cls = lp.shape
    blank = int_arg(blank, where, "blank")
    if blank >= n_cls:
        raise ValueError(f"{where}: blank must be a class index in [0, {n_cls}) for "
                         f"log_probs of shape {lp.shape}, got {blank}")
    lengths = lengths_arg(where, "input_lengths", input_lengths, n, t_max,
                          "log_probs.shape[1]")
    if n_cls == 0:
        raise ValueError(f"{where}: log_probs needs a class axis of at least one class (the "
                         f"blank), got shape {lp.shape}")
    best = lp.argmax(axis=2)
    new = np.ones_like(best, dtype=bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = new & (best != blank) & (np.arange(t_max) < lengths[:, None])
    counts = keep.sum(axis=1, dtype=np.int64)
    labels = np.full((n, int(counts.max(initial=0))), blank, np.int64)
    # each kept step goes to its rank among its row's kept steps
    rows, steps = np.nonzero(keep)
    labels[rows, np.cumsum(keep, axis=1)[rows, steps] - 1] = best[rows, steps]
    return labels, counts


def edit_distance(pred: Any, target: Any, pred_lengths: Any = None,
                  target_lengths: Any = None) -> NDArray[np.int64]:
    """Levenshtein distances of a batch of label sequences: the fewest insertions,
    deletions and substitutions turning row ``n`` of ``pred`` into row ``n`` of ``target``
    (torchaudio's ``functional.edit_distance``, one pair per row).

    Shapes: ``pred`` (N, S1) and ``target`` (N, S2) integer labels, each row padded past
    its length; ``pred_lengths``, ``target_lengths`` (N,) (None: S1, S2) -> (N,) int64.
    Math: ``D[i, j] = min(D[i-1, j] + 1, D[i, j-1] + 1, D[i-1, j-1] + [p_i != t_j])``,
    ``D[i, 0] = i``, ``D[0, j] = j``; the result ``D[L1_n, L2_n]``. The table is filled a
    row at a time for the whole batch (S1·S2 vectorised steps, none per example).
    """
    where = "metrics.edit_distance"
    p = _sequences(where, "pred", pred)
    t = _sequences(where, "target", target)
    if p.shape[0] != t.shape[0]:
        raise ValueError(f"{where}: pred and target must have one row per example each, got "
                         f"shapes {p.shape} and {t.shape}")
    n, s1 = p.shape
    s2 = t.shape[1]
    l1 = lengths_arg(where, "pred_lengths", pred_lengths, n, s1, "pred.shape[1]")
    l2 = lengths_arg(where, "target_lengths", target_lengths, n, s2, "target.shape[1]")
    prev = np.broadcast_to(np.arange(s2 + 1, dtype=np.int64), (n, s2 + 1)).copy()
    out = prev[np.arange(n), l2].copy()                 # the rows of pred_length 0
    for i in range(1, s1 + 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        subst = prev[:, :-1] + (p[:, i - 1:i] != t)
        best = np.minimum(prev[:, 1:] + 1, subst)
        # insertions chain along the row: D[i, j] = min over k <= j of best[k] + (j - k),
        # a running minimum of best[k] - k, with D[i, 0] = i as the k = 0 term
        j = np.arange(1, s2 + 1)
        run = np.minimum.accumulate(np.concatenate([cur[:, :1], best - j], axis=1), axis=1)
        cur[:, 1:] = run[:, 1:] + j
        done = l1 == i
        out[done] = cur[done, l2[done]]
        prev = cur
    return out


def _sequences(where: str, what: str, value: Any) -> NDArray[Any]:
    a = array_arg(value, where, what)
    if a.ndim != 2 or (a.dtype.kind not in "iu" and a.size):
        raise ValueError(f"{where}: {what} must be integer labels of shape (N, S), one padded "
                         f"row per example, got shape {a.shape} and dtype {a.dtype}")
    return a
