"""Tests for funcdl.data.random_flip and random_crop: exact results against a per-example
loop on the documented draws, hand-computed padding, uniform offsets and independent
flags (with proof that the checks catch a crop range one short and one draw for the
whole batch), dtypes kept, inputs untouched, and every bad argument named."""

from __future__ import annotations

import types
from collections import Counter

import numpy as np
import pytest

from funcdl import _augment, data, random

# ---------------------------------------------------------------------------- helpers


def loop_crop(key, x, size, pads, mode="constant", fill=0):
    """The crop as a reader would write it: np.pad, the documented offsets, a loop."""
    h, w = size
    np_mode = {"replicate": "edge"}.get(mode, mode)
    extra = {"constant_values": fill} if np_mode == "constant" else {}
    xp = np.pad(x, ((0, 0), *pads) + ((0, 0),) * (x.ndim - 3), mode=np_mode, **extra)
    off = random.randint(key, (len(x), 2), 0, np.array([xp.shape[1] - h + 1,
                                                        xp.shape[2] - w + 1]))
    return np.stack([xp[n, i:i + h, j:j + w] for n, (i, j) in enumerate(off)]) if len(x) \
        else np.empty((0, h, w, *x.shape[3:]), x.dtype)


def images(shape, dtype, seed=0):
    """Distinct-ish values of ``dtype`` (small enough for uint8)."""
    k = random.key(seed)
    return (random.uniform(k, shape, 0.0, 100.0, np.float64)).astype(dtype)


def offset_counts(key, n=8100, side=8, pad=4):
    """How often each top-left offset is drawn: one image whose crops are all distinct,
    ``n`` times; every output must be one of the (2 pad + 1)² crops of the padded image."""
    img = (np.arange(side * side, dtype=np.int16) + 1).reshape(1, side, side, 1)
    out = data.random_crop(key, np.repeat(img, n, axis=0), side, padding=pad, fill=-1)
    xp = np.pad(img[0], ((pad, pad), (pad, pad), (0, 0)), constant_values=-1)
    crops = {xp[i:i + side, j:j + side].tobytes(): (i, j)
             for i in range(2 * pad + 1) for j in range(2 * pad + 1)}
    assert len(crops) == (2 * pad + 1) ** 2
    found = [crops.get(o.tobytes()) for o in out]
    assert None not in found, "an output is no crop of the padded image"
    return Counter(found), (2 * pad + 1) ** 2, n


def check_uniform(counts, cells, n):
    """Every offset drawn, with counts a chi-square test cannot tell from uniform: df =
    cells - 1 = 80 has mean 80 and sd 12.6; 200 is 9 sd out (a fixed key: never flakes)."""
    assert len(counts) == cells, f"offsets never drawn: {cells - len(counts)} of {cells}"
    expected = n / cells
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 200, f"offset counts not uniform: chi-square {chi2:.0f} on {cells - 1} df"


def check_flags(key, n=4000, p=0.3):
    """The flipped examples of a flip: a fraction near p, and not all alike."""
    x = np.repeat(np.array([[[[1], [2]]]], np.int8), n, axis=0)  # (n, 1, 2, 1)
    flipped = data.random_flip(key, x, p=p)[:, 0, 0, 0] == 2
    sd = np.sqrt(n * p * (1 - p))
    assert abs(flipped.sum() - n * p) < 6 * sd, f"{flipped.sum()} of {n} flipped at p={p}"
    return flipped


def buggy_random(**fns):
    """funcdl.random with some functions replaced: a plausible bug in the augmentation."""
    return types.SimpleNamespace(**{**{k: getattr(random, k) for k in
                                       ("check_key", "bernoulli", "randint")}, **fns})


# ------------------------------------------------------------------------ random_crop


@pytest.mark.parametrize("shape, size, padding, pads", [
    ((5, 4, 4, 3), 3, 1, ((1, 1), (1, 1))),
    ((5, 4, 6, 2), (4, 5), (2, 0), ((2, 2), (0, 0))),
    ((7, 5, 4), (2, 3), ((0, 2), (3, 1)), ((0, 2), (3, 1))),     # (N, H, W): no channels
    ((3, 6, 5, 2, 2), 5, 0, ((0, 0), (0, 0))),                    # trailing dims (2, 2)
    ((0, 4, 4, 3), 2, 1, ((1, 1), (1, 1))),                       # an empty batch
])
@pytest.mark.parametrize("mode", ["constant", "edge", "replicate", "reflect", "symmetric"])
def test_crop_equals_a_loop_over_the_documented_offsets(shape, size, padding, pads, mode):
    x = images(shape, np.float32)
    key = random.key(3)
    out = data.random_crop(key, x, size, padding=padding, padding_mode=mode)
    hw = (size, size) if isinstance(size, int) else size
    np.testing.assert_array_equal(out, loop_crop(key, x, hw, pads, mode))
    assert out.shape == (shape[0], *hw, *shape[3:]) and out.dtype == np.float32


def test_crop_fill_and_a_crop_of_the_whole_padded_image_by_hand(key):
    x = np.array([[1, 2, 3]], np.uint8).reshape(1, 1, 3, 1)
    whole = {mode: data.random_crop(key, x, (1, 7), padding=(0, 2), padding_mode=mode,
                                    **({"fill": 9} if mode == "constant" else {}))
             for mode in ("constant", "edge", "reflect", "symmetric")}
    assert whole["constant"].ravel().tolist() == [9, 9, 1, 2, 3, 9, 9]
    assert whole["edge"].ravel().tolist() == [1, 1, 1, 2, 3, 3, 3]
    assert whole["reflect"].ravel().tolist() == [3, 2, 1, 2, 3, 2, 1]
    assert whole["symmetric"].ravel().tolist() == [2, 1, 1, 2, 3, 3, 2]


def test_crop_small_input_against_every_offset_by_hand():
    # x = [[1, 2], [3, 4]] padded by 1 with 0: a 2x2 crop at (i, j) of a 4x4 image
    x = np.tile(np.array([[1, 2], [3, 4]], np.float64).reshape(1, 2, 2, 1), (40, 1, 1, 1))
    out = data.random_crop(random.key(5), x, 2, padding=1)[..., 0]
    padded = np.array([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]], np.float64)
    crops = [padded[i:i + 2, j:j + 2] for i in range(3) for j in range(3)]
    assert all(any(np.array_equal(o, c) for c in crops) for o in out)
    assert len({o.tobytes() for o in out}) > 1  # not one place for all 40


def test_each_output_is_a_crop_of_its_own_input(key):
    x = images((30, 5, 5, 2), np.float64)
    out = data.random_crop(key, x, 4, padding=2, padding_mode="reflect")
    for n in range(30):  # the test's loop, not the function's
        xp = np.pad(x[n], ((2, 2), (2, 2), (0, 0)), mode="reflect")
        assert any(np.array_equal(out[n], xp[i:i + 4, j:j + 4])
                   for i in range(6) for j in range(6)), n


def test_offsets_are_uniform_and_every_one_is_drawn():
    check_uniform(*offset_counts(random.key(7)))


@pytest.mark.parametrize("bug", ["last offset never drawn", "one offset for the batch"])
def test_the_uniform_check_catches_plausible_bugs(monkeypatch, bug):
    real = random.randint
    if bug == "last offset never drawn":
        def randint(key, shape, lo, hi):
            return real(key, shape, lo, np.asarray(hi) - 1)
    else:
        def randint(key, shape, lo, hi):
            return np.broadcast_to(real(key, (1, 2), lo, hi), shape)
    monkeypatch.setattr(_augment, "random", buggy_random(randint=randint))
    with pytest.raises(AssertionError):
        check_uniform(*offset_counts(random.key(7)))


def test_crop_is_deterministic_in_the_key_and_differs_between_keys():
    x = images((20, 6, 6, 1), np.float32)
    a = data.random_crop(random.key(1), x, 4, padding=2)
    np.testing.assert_array_equal(a, data.random_crop(random.key(1), x, 4, padding=2))
    assert not np.array_equal(a, data.random_crop(random.key(2), x, 4, padding=2))


# ------------------------------------------------------------------------ random_flip


@pytest.mark.parametrize("axis", [-2, 2, 1, -3, -1, 3])
def test_flip_equals_a_loop_over_the_documented_flags(axis):
    x = images((16, 3, 4, 2), np.float64)
    key = random.key(4)
    flags = random.bernoulli(key, 0.5, (16,))
    want = np.stack([np.flip(x[n], axis - 1 if axis > 0 else axis) if f else x[n]
                     for n, f in enumerate(flags)])
    np.testing.assert_array_equal(data.random_flip(key, x, axis=axis), want)
    assert 0 < flags.sum() < 16


def test_flip_default_is_the_width_of_nhwc(key):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 3, 2)      # W = 3, C = 2
    out = data.random_flip(key, x, p=1.0)
    assert out[0, 0].tolist() == [[4, 5], [2, 3], [0, 1]]


def test_flip_p0_identity_p1_all_and_twice_identity(key):
    x = images((32, 3, 4, 2), np.float32)
    np.testing.assert_array_equal(data.random_flip(key, x, p=0.0), x)
    np.testing.assert_array_equal(data.random_flip(key, x, p=1.0), x[:, :, ::-1])
    once = data.random_flip(key, x)
    assert not np.array_equal(once, x) and not np.array_equal(once, x[:, :, ::-1])
    np.testing.assert_array_equal(data.random_flip(key, once), x)


def test_flips_are_independent_with_probability_p():
    flipped = check_flags(random.key(8))
    assert 0 < flipped.sum() < len(flipped)


@pytest.mark.parametrize("bug", ["one draw for the batch", "kept with probability p"])
def test_the_flag_check_catches_plausible_bugs(monkeypatch, bug):
    real = random.bernoulli
    if bug == "one draw for the batch":
        def bernoulli(key, p, shape):
            return np.broadcast_to(real(key, p, ()), shape)
    else:
        def bernoulli(key, p, shape):
            return ~real(key, p, shape)
    monkeypatch.setattr(_augment, "random", buggy_random(bernoulli=bernoulli))
    with pytest.raises(AssertionError):
        check_flags(random.key(8))


# ------------------------------------------------------------------ both: dtypes, inputs

CALLS = {"flip": lambda k, x: data.random_flip(k, x, p=0.5),
         "flip p=0": lambda k, x: data.random_flip(k, x, p=0.0),
         "crop": lambda k, x: data.random_crop(k, x, 3, padding=1),
         "crop padding=0 full": lambda k, x: data.random_crop(k, x, 4)}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_dtype_kept_input_untouched_and_output_new(key, call, dtype):
    x = images((8, 4, 4, 3), dtype)
    before = x.copy()
    x.flags.writeable = False  # a write into x would raise
    out = CALLS[call](key, x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out, x)
    out[...] = 0
    np.testing.assert_array_equal(x, before)


def test_noncontiguous_input(key):
    x = images((6, 8, 10, 3), np.float32)[:, ::2, 1::2]
    out = data.random_crop(key, x, (3, 4), padding=1, padding_mode="edge")
    np.testing.assert_array_equal(out, loop_crop(key, np.ascontiguousarray(x), (3, 4),
                                                 ((1, 1), (1, 1)), "edge"))


# ---------------------------------------------------------------------------- errors

X = np.zeros((2, 4, 4, 3), np.float32)
K = random.key(0)
BAD = [
    (data.random_flip, (K, X), {"p": 1.5}, ValueError, "p must be a finite number in [0, 1]"),
    (data.random_flip, (K, X), {"p": -0.1}, ValueError, "got -0.1"),
    (data.random_flip, (K, X), {"p": "0.5"}, TypeError, "p must be a real number"),
    (data.random_flip, (K, X), {"axis": 0}, ValueError, "axis 0 is the batch axis"),
    (data.random_flip, (K, X), {"axis": -4}, ValueError, "batch axis"),
    (data.random_flip, (K, X), {"axis": 4}, ValueError, "in [1, 4)"),
    (data.random_flip, (K, X), {"axis": 1.0}, TypeError, "axis must be an int"),
    (data.random_flip, (K, np.zeros(3)), {}, ValueError, "rank >= 2, got shape (3,)"),
    (data.random_flip, (0, X), {}, TypeError, "a seed is not a key"),
    (data.random_flip, (X, K), {}, TypeError, "expected a key"),
    (data.random_flip, (K, X.astype(complex)), {}, TypeError, "floats or integers"),
    (data.random_crop, (K, X, 5), {}, ValueError, "larger than the padded image (4, 4)"),
    (data.random_crop, (K, X, (4, 7)), {"padding": 1}, ValueError, "expected h <= 6 and w <= 6"),
    (data.random_crop, (K, X, 0), {}, ValueError, "size must be a positive int"),
    (data.random_crop, (K, X, (2, 2, 2)), {}, ValueError, "pair (h, w)"),
    (data.random_crop, (K, X, 2.0), {}, TypeError, "size must be a positive int"),
    (data.random_crop, (K, np.zeros((2, 4, 4)[:2]), 2), {}, ValueError, "rank >= 3"),
    (data.random_crop, (K, X, 2), {"padding": -1}, ValueError, "non-negative"),
    (data.random_crop, (K, X, 2), {"padding": (1, 2, 3, 4)}, TypeError, "pass ((2, 4), (1, 3))"),
    (data.random_crop, (K, X, 2), {"padding": 1.5}, TypeError, "padding must be an int"),
    (data.random_crop, (K, X, 2), {"padding": ((1, 2), 3, 4)}, TypeError, "padding must be"),
    (data.random_crop, (K, X, 2), {"padding_mode": "wrap"}, ValueError, "'symmetric', got 'wrap'"),
    (data.random_crop, (K, X, 2), {"padding_mode": None}, TypeError, "padding_mode must be"),
    (data.random_crop, (K, X, 2), {"padding": 4, "padding_mode": "reflect"}, ValueError,
     "expected padding < H = 4"),
    (data.random_crop, (K, X, 2), {"padding": 5, "padding_mode": "symmetric"}, ValueError,
     "expected padding <= H = 4"),
    (data.random_crop, (K, X, 2), {"padding": 1, "padding_mode": "edge", "fill": 3},
     ValueError, "fill is for padding_mode='constant' only"),
    (data.random_crop, (K, X.astype(np.uint8), 2), {"padding": 1, "fill": 256}, ValueError,
     "fill must be in [0, 255]"),
    (data.random_crop, (K, X.astype(np.uint8), 2), {"padding": 1, "fill": 0.5}, TypeError,
     "fill must be an int for x of dtype uint8"),
    (data.random_crop, (K, X, 2), {"fill": 1e300}, ValueError, "float32's range"),
    (data.random_crop, (K, X, 2), {"fill": float("nan")}, ValueError, "fill must be"),
    (data.random_crop, (7, X, 2), {}, TypeError, "funcdl.random.key(7)"),
]


@pytest.mark.parametrize("fn, args, kwargs, exc, words", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_named(fn, args, kwargs, exc, words):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"data.{fn.__name__}: "), msg
    assert words in msg, msg
