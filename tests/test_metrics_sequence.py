"""metrics.ctc_greedy_decode (tf.nn.ctc_greedy_decoder) and metrics.edit_distance
(torchaudio.functional.edit_distance, batched) against plain-Python references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import funcdl as fd
from funcdl import metrics


def _levenshtein(a: list[int], b: list[int]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def _codes(word: str) -> list[int]:
    return [ord(c) for c in word]


@pytest.mark.parametrize("a, b, want", [("kitten", "sitting", 3), ("", "abc", 3),
                                        ("abc", "", 3), ("flaw", "lawn", 2),
                                        ("ab", "ba", 2), ("a", "aaaa", 3), ("same", "same", 0)])
def test_edit_distance_known_pairs(a: str, b: str, want: int) -> None:
    p, t = fd.data.pad_sequences([np.array(_codes(a), np.int64)])[0], \
        fd.data.pad_sequences([np.array(_codes(b), np.int64)])[0]
    got = metrics.edit_distance(p.reshape(1, -1), t.reshape(1, -1), [len(a)], [len(b)])
    assert got.tolist() == [want] and got.dtype == np.int64


def test_edit_distance_matches_the_reference_on_a_padded_batch() -> None:
    rng = np.random.default_rng(0)
    p, t = rng.integers(0, 4, (400, 9)), rng.integers(0, 4, (400, 7))
    l1, l2 = rng.integers(0, 10, 400), rng.integers(0, 8, 400)
    want = [_levenshtein(p[n, :l1[n]].tolist(), t[n, :l2[n]].tolist()) for n in range(400)]
    np.testing.assert_array_equal(metrics.edit_distance(p, t, l1, l2), want)
    # without lengths: the whole rows
    want = [_levenshtein(p[n].tolist(), t[n].tolist()) for n in range(400)]
    np.testing.assert_array_equal(metrics.edit_distance(p, t), want)


def _greedy(lp: np.ndarray, lengths: np.ndarray, blank: int) -> list[list[int]]:
    return [[k for k, _ in itertools.groupby(lp[n, :lengths[n]].argmax(-1).tolist())
             if k != blank] for n in range(lp.shape[0])]


@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_greedy_decode_merges_repeats_then_drops_blanks(blank: int) -> None:
    rng = np.random.default_rng(1)
    lp = rng.normal(size=(50, 12, 4))
    il = rng.integers(0, 13, 50)
    labels, lengths = metrics.ctc_greedy_decode(lp, il, blank=blank)
    want = _greedy(lp, il, blank)
    assert lengths.tolist() == [len(w) for w in want]
    assert [labels[n, :lengths[n]].tolist() for n in range(50)] == want
    assert labels.shape == (50, max(map(len, want))) and labels.dtype == np.int64
    assert np.all(labels[np.arange(labels.shape[1]) >= lengths[:, None]] == blank)


def test_a_blank_between_repeats_keeps_both() -> None:
    one = np.eye(3)[[1, 1, 0, 1, 2, 2, 0, 0]][None]          # a a _ a b b _ _
    labels, lengths = metrics.ctc_greedy_decode(np.log(one + 1e-3), [8])
    assert labels.tolist() == [[1, 1, 2]] and lengths.tolist() == [3]
    labels, lengths = metrics.ctc_greedy_decode(np.log(one + 1e-3), [3])
    assert labels.tolist() == [[1]] and lengths.tolist() == [1]


def test_decode_then_error_rate_feeds_ctc_and_edit_distance() -> None:
    lp = np.log(np.full((2, 6, 5), 0.2))
    lp[0, :, 2] = 0.0
    labels, lengths = metrics.ctc_greedy_decode(lp)
    assert labels.tolist() == [[2], [0]] and lengths.tolist() == [1, 0]
    truth, tl = np.array([[2, 3], [1, 0]]), np.array([2, 1])
    assert metrics.edit_distance(labels, truth, lengths, tl).sum() / tl.sum() == 2 / 3
    assert np.isfinite(fd.losses.ctc(lp, (labels, np.array([6, 6]), lengths)))


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.ctc_greedy_decode(np.zeros((2, 3))), r"\(N, T, C\).*\(2, 3\)"),
    (lambda: metrics.ctc_greedy_decode(np.zeros((2, 3, 4)), [3]), r"\(2,\).*\(1,\)"),
    (lambda: metrics.ctc_greedy_decode(np.zeros((2, 3, 4)), [3, 4]), r"\[0, 3\]"),
    (lambda: metrics.ctc_greedy_decode(np.zeros((2, 3, 4)), blank=4), r"\[0, 4\)"),
    (lambda: metrics.edit_distance(np.zeros((2, 3), int), np.zeros((3, 3), int)),
     r"\(2, 3\) and \(3, 3\)"),
    (lambda: metrics.edit_distance(np.zeros((2, 3)), np.zeros((2, 3), int)),
     "pred must be integer labels.*float64"),
    (lambda: metrics.edit_distance(np.zeros((2, 3), int), np.zeros((2, 3), int), [1, 4]),
     r"pred_lengths must be in \[0, 3\]"),
])
def test_bad_input_names_the_function_and_the_shapes(call, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()
