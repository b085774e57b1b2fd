"""data.time_mask and data.freq_mask: SpecAugment's bands (torchaudio's TimeMasking and
FrequencyMasking with iid_masks=True), recomputed from their documented draws."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import random


def _bands(key: random.Key, n: int, sizes: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """torchaudio's mask_along_axis_iid arithmetic on the documented uniforms: (N, 2)."""
    u = random.uniform(key, (2, n), dtype=np.float64)
    w = u[0] * cap
    lo = u[1] * (sizes - w)
    return np.stack([np.floor(lo), np.floor(lo + w)], 1).astype(int)


def _masked_steps(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """(N, size) True where y differs from x anywhere along the other axes."""
    other = tuple(a for a in range(1, x.ndim) if a != axis % x.ndim)
    return np.any(x != y, axis=other)


def test_time_mask_bands_are_torchaudio_draws_within_lengths() -> None:
    key = random.key(3)
    x = random.normal(random.key(0), (6, 20, 5)) + 10.0
    lengths = np.array([20, 15, 7, 1, 0, 12])
    y = fd.data.time_mask(key, x, 8, lengths=lengths)
    band = _bands(key, 6, lengths.astype(float), np.minimum(8, lengths).astype(float))
    steps = np.arange(20)
    want = (steps >= band[:, :1]) & (steps < band[:, 1:])
    np.testing.assert_array_equal(_masked_steps(x, y, 1), want)
    assert not np.any(want & (steps >= lengths[:, None]))      # the padding is left alone
    assert np.all(y[np.broadcast_to(want[:, :, None], x.shape)] == 0)
    assert y.dtype == np.float32 and np.all(x > 0)              # x not written to
    assert want.sum() > 0


def test_time_mask_p_caps_the_width_by_the_length() -> None:
    key = random.key(5)
    x = np.ones((40, 30, 2))
    y = fd.data.time_mask(key, x, 25, p=0.2)
    band = _bands(key, 40, np.full(40, 30.0), np.full(40, 6.0))   # floor(0.2 * 30)
    widths = _masked_steps(x, y, 1).sum(1)
    np.testing.assert_array_equal(widths, band[:, 1] - band[:, 0])
    assert widths.max() <= 6


def test_freq_mask_is_one_band_of_bins_at_every_step() -> None:
    key = random.key(7)
    x = np.arange(5 * 9 * 12, dtype=np.float32).reshape(5, 9, 12) + 1
    y = fd.data.freq_mask(key, x, 5, value=-1.0)
    band = _bands(key, 5, np.full(5, 12.0), np.full(5, 5.0))
    bins = np.arange(12)
    want = (bins >= band[:, :1]) & (bins < band[:, 1:])
    np.testing.assert_array_equal(y == -1, np.broadcast_to(want[:, None, :], x.shape))
    np.testing.assert_array_equal(y[y != -1], x[y != -1])
    assert y.dtype == np.float32


def test_mean_width_is_half_the_widest_band() -> None:
    # w = u0 * W: a factor or a swapped draw moves the mean away from W / 2
    x = np.ones((4000, 50, 1), np.float32)
    widths = _masked_steps(x, fd.data.time_mask(random.key(1), x, 20), 1).sum(1)
    assert abs(widths.mean() - 10.0) < 0.4
    assert widths.max() <= 20


def test_same_key_same_bands_and_zero_width_is_identity() -> None:
    x = random.normal(random.key(2), (8, 16, 4)) + 5.0
    m = np.arange(8 * 16 * 4).reshape(8, 16, 4) + 1
    a = _masked_steps(x, fd.data.time_mask(random.key(4), x, 6), 1)
    b = _masked_steps(m, fd.data.time_mask(random.key(4), m, 6), 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fd.data.time_mask(random.key(4), x, 0), x)
    assert fd.data.freq_mask(random.key(4), m, 3).dtype == m.dtype


def test_axis_chooses_the_masked_axis() -> None:
    x = np.ones((3, 4, 10, 2))                                   # (N, F, T, C): time at 2
    y = fd.data.time_mask(random.key(0), x, 10, axis=2)
    assert np.all((y == 0).all(axis=(1, 3)) == (y == 0).any(axis=(1, 3)))


@pytest.mark.parametrize("call, match", [
    (lambda x: fd.data.time_mask(random.key(0), x, 3, axis=0), "non-batch axis.*got 0"),
    (lambda x: fd.data.time_mask(random.key(0), x, 3, lengths=[5, 5]), r"\(N,\) = \(3,\)"),
    (lambda x: fd.data.time_mask(random.key(0), x, 3, lengths=[5, 11, 2]), r"\[0, 10\]"),
    (lambda x: fd.data.time_mask(random.key(0), x, -1), "max_width must be >= 0"),
    (lambda x: fd.data.time_mask(random.key(0), x, 3, p=1.5), "p"),
    (lambda x: fd.data.freq_mask(random.key(0), x[:, 0, 0], 3), r"rank >= 2.*\(3,\)"),
    (lambda x: fd.data.freq_mask(random.key(0), x.astype(np.int32), 3, value=0.5),
     "data.freq_mask: value must be an int"),
])
def test_bad_input_names_the_function_and_the_shapes(call, match) -> None:  # type: ignore[no-untyped-def]
    x = np.ones((3, 10, 4), np.float32)
    with pytest.raises((ValueError, TypeError), match=match):
        call(x)


def test_a_seed_in_place_of_the_key_is_refused() -> None:
    with pytest.raises(TypeError, match=r"data\.time_mask"):
        fd.data.time_mask(0, np.ones((2, 5, 3)), 2)  # type: ignore[arg-type]
