"""Minibatches, a train/test split and small synthetic data sets, deterministic in an
explicit key: the disk, and scikit-learn's moons, circles and blobs and CS231n's spirals
(in ``funcdl._datasets``); ``one_hot`` and ``moments`` for the labels and features;
keyed image augmentation of whole batches, ``random_flip`` and ``random_crop`` (in
``funcdl._augment``); SpecAugment's ``time_mask`` and ``freq_mask`` on sequence batches (in
``funcdl._spec_augment``); ``pad_sequences``, a ragged list of sequences as a padded batch and
its lengths (in ``funcdl._padding``).

Nothing here keeps state between calls: a new epoch order comes from a new key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from funcdl import random
from funcdl._args import (
    array_arg,
    bool_arg,
    count_arg,
    float_dtype_arg,
    int_arg,
    is_int,
    number,
    real_arg,
    several_arrays,
    shown,
)
from funcdl._augment import random_crop, random_flip
from funcdl._datasets import (
    blobs,
    circles,
    moments,
    moons,
    one_hot,
    spirals,
)
from funcdl._datasets import maker as _maker
from funcdl._keys import seed_hint
from funcdl._padding import pad_sequences
from funcdl._spec_augment import freq_mask, time_mask
from funcdl.random import Key

__all__ = ["RADIUS", "batches", "blobs", "circles", "disk", "freq_mask", "moments", "moons",
           "one_hot", "pad_sequences", "random_crop", "random_flip", "spirals", "time_mask",
           "train_test_split"]

RADIUS = 1.0 / math.sqrt(2.0 * math.pi)
"""The disk's radius: its area pi * RADIUS**2 is 1/2, so the classes balance in expectation."""


def batches(key: Key | None, *arrays: ArrayLike, batch_size: int | np.integer[Any],
            shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[NDArray[Any], ...]]:
    """Minibatches of ``arrays`` along axis 0, as tuples with one entry per array.

    Guarantees: each epoch visits every example exactly once (the last, smaller batch is
    yielded unless ``drop_last``); the order is ``funcdl.random.permutation(key, n)`` when
    ``shuffle`` (so the same key gives the same batches) and ``0, 1, ..., n-1`` otherwise
    (``key`` is then ignored and may be None). Each array is gathered once per call, and the
    batches are slices of that copy; with ``shuffle=False`` they are views of the inputs.
    Argument errors are raised at the call, not at the first ``next``. The iterator serves
    one epoch: call ``batches`` again (with a new key) for the next. Lists are read by
    ``np.asarray``, so a list of Python floats gives float64 batches (which a float32 model
    then runs in float64): pass ``np.asarray(xs, np.float32)`` for float32.

    A new epoch order needs a new key, e.g. one folded from the epoch number::

        for epoch in range(epochs):
            for xb, yb in batches(random.fold_in(key, epoch), x, y, batch_size=50):
                params, opt_state = step(params, opt_state, xb, yb)

    Args:
        key: a key from ``funcdl.random.key(seed)``; None only with ``shuffle=False``.
        *arrays: one or more arrays sharing their first dimension ``n``.
        batch_size: a positive int.
        shuffle: visit the examples in a random order given by ``key``.
        drop_last: skip the last batch when it is smaller than ``batch_size``.
    """
    size = int_arg(batch_size, "data.batches", "batch_size", 1)
    drop_last = bool_arg(drop_last, "data.batches", "drop_last")
    xs = examples("data.batches", key, arrays, "batches(key, x, y, batch_size=32)")
    order = shuffled("data.batches", key, len(xs[0]), shuffle,
                     " (a new one each epoch, e.g. random.fold_in(key, epoch))")
    n = len(xs[0])
    stop = n - n % size if drop_last else n
    return _generate(xs, order, size, stop)


def examples(where: str, key: Any, arrays: tuple[ArrayLike, ...], call: str,
             none_ok: bool = True) -> list[NDArray[Any]]:
    """The arrays of a batches call as ndarrays sharing their first dimension (the
    examples), or an error naming ``where`` and showing ``call``; the key may be None
    (no shuffle) where ``none_ok``."""
    try:  # a key even with shuffle=False: batches(x, y, ...) would batch y alone, silently
        if key is not None or not none_ok:
            random.check_key(key, where)
    except TypeError as err:  # the usual slips: the data, or a seed, in the key's place
        hint = seed_hint(key)
        if hint is not None:
            raise TypeError(f"{err}: {hint}") from None
        alt = " (or None, with shuffle=False)" if none_ok else ""
        raise TypeError(f"{err}{'' if arrays else ', and no arrays'}: pass the key{alt} "
                        f"first, then the arrays: {call}") from None
    if not arrays:
        raise ValueError(f"{where}: pass at least one array, e.g. {call}")
    for i, a in enumerate(arrays):  # a model's tuple input, (x, mask): its parts each
        several_arrays(a, where, f"argument {i + 1}",
                       ": pass its arrays as arguments of their own, e.g. batches(key, x, "
                       "mask, y, batch_size=32), and rebuild the tuple from each batch")
    try:
        xs = [array_arg(a, where, f"argument {i + 1}") for i, a in enumerate(arrays)]
    except ValueError as err:  # a ragged nested list
        raise ValueError(f"{err} (pass arrays, e.g. {call})") from None
    odd = next((i for i, a in enumerate(xs) if a.ndim == 0 and a.dtype == object), None)
    if odd is not None:
        raise TypeError(f"{where}: argument {odd + 1} is a {type(arrays[odd]).__name__}, "
                        f"not an array; pass the arrays themselves: {call}")
    scalar = next((i for i, a in enumerate(xs) if a.ndim == 0), None)
    if scalar is not None:  # no axis of examples to batch along
        raise ValueError(f"{where}: argument {scalar + 1} is 0-d (one value, {xs[scalar]!r:.40}); "
                         f"every array needs its examples on axis 0, e.g. shape (n,) or "
                         f"(n, features)")
    if len({a.shape[0] for a in xs}) != 1:
        raise ValueError(f"{where}: all arrays must share their first dimension, got "
                         f"shapes {', '.join(str(a.shape) for a in xs)}")
    return xs


def shuffled(where: str, key: Key | None, n: int, shuffle: bool,
             which: str) -> NDArray[np.int64] | None:
    """The order of an epoch's ``n`` examples: ``random.permutation(key, n)``, or None (in
    order) without ``shuffle``; ``which`` says which key a shuffle needs."""
    if not bool_arg(shuffle, where, "shuffle"):
        return None
    if key is None:
        raise ValueError(f"{where}: shuffle=True needs a key{which}: pass "
                         f"funcdl.random.key(seed), or set shuffle=False")
    # checks the key now, not at the first next()
    return random.permutation(random.check_key(key, where), n)


def _generate(xs: list[NDArray[Any]], order: NDArray[np.int64] | None, size: int,
              stop: int) -> Iterator[tuple[NDArray[Any], ...]]:
    # One gather per array per call (not per batch), done when iteration starts.
    if order is not None:
        xs = [a[order] for a in xs]
    for start in range(0, stop, size):
        yield tuple(a[start:start + size] for a in xs)


@_maker("data.disk")
def disk(key: Key, n: int, dtype: DTypeLike = np.float32, *, center: Any = (0.5, 0.5),
         radius: float = RADIUS) -> tuple[NDArray[Any], NDArray[Any]]:
    """``n`` points uniform in the unit square, labelled 1 inside the disk of ``center``
    (0.5, 0.5) and ``radius`` ``RADIUS = 1/sqrt(2*pi)`` (area 1/2), 0 outside; another
    ``center`` or ``radius`` gives another set.

    Returns ``(x, y)``: ``x`` of shape ``(n, 2)`` in ``[0, 1)``, ``y`` of shape ``(n, 1)``
    holding 0.0 or 1.0, both of ``dtype`` (float32 or float64). The same key gives the same
    points. A point is inside when ``(x0 - c0)**2 + (x1 - c1)**2 < radius**2``, evaluated
    in float64 on the returned (possibly float32) coordinates.
    """
    key = random.check_key(key, "data.disk")  # first: disk(n, key) is named as a bad key
    size = count_arg(n, "data.disk", "n", 16)  # 16 bytes a point (two float64s)
    dt = float_dtype_arg(dtype, "data.disk")  # None: the default, as in JAX
    r = real_arg(radius, "data.disk", "radius", low=0.0, open_low=True)
    c = np.asarray(center, dtype=object) if not isinstance(center, np.ndarray) else center
    if c.shape != (2,):
        raise ValueError(f"data.disk: center must be 2 coordinates (x0, x1), got "
                         f"{center!r} of shape {c.shape}")
    c0, c1 = (real_arg(v, "data.disk", f"center[{i}]") for i, v in enumerate(c))
    x = random.uniform(key, (size, 2), dtype=dt)
    with np.errstate(over="ignore"):  # a centre ~1e300 away: inf, every point outside
        d2 = np.square(x.astype(np.float64) - np.array([c0, c1])).sum(axis=1, keepdims=True)
    y = (d2 < r * r).astype(dt)
    return x, y


def train_test_split(key: Key, *arrays: ArrayLike, test_size: float | int = 0.25,
                     stratify: ArrayLike | None = None) -> tuple[NDArray[Any], ...]:
    """``arrays`` split along axis 0 into a train and a test part, as scikit-learn's
    ``train_test_split``: returns ``(a_train, a_test, b_train, b_test, ...)``.

    Every array is indexed by the same two index arrays, drawn from ``key``. Sizes: a
    fraction ``test_size`` in (0, 1) gives ``n_test = ceil(test_size * n)``, an int
    ``test_size`` in [1, n) that many; the train part gets the other ``n - n_test``
    (scikit-learn's rule). Without ``stratify`` the test part is the first ``n_test`` of
    ``random.permutation(key, n)``, the train part the rest, in that order.

    ``stratify`` (labels of shape ``(n,)``, or rows ``(n, ...)``: a class per distinct row)
    keeps the class proportions: class ``c`` of ``n_c`` members gives
    ``floor(n_test n_c / n)`` to the test part, and the test places left go one each to the
    classes of the largest remainders ``n_test n_c mod n`` (ties to the class that sorts
    first; scikit-learn breaks them at random). The members chosen within a class are the
    first in the permutation's order, and both parts keep that order. As in scikit-learn,
    every class needs 2 members and each part at least one place per class.
    """
    where = "data.train_test_split"
    call = "train_test_split(key, x, y, test_size=0.25)"
    xs = examples(where, key, arrays, call, none_ok=False)
    n = len(xs[0])
    n_test = _test_count(test_size, n, where)
    order = random.permutation(key, n)
    if stratify is None:
        test, train = order[:n_test], order[n_test:]
    else:
        test_mask = _stratified(stratify, n, n_test, order, where)[order]
        test, train = order[test_mask], order[~test_mask]
    return tuple(part for a in xs for part in (a[train], a[test]))


def _test_count(test_size: Any, n: int, where: str) -> int:
    """The test part's size: ``ceil(test_size n)`` for a fraction, the int itself."""
    size = number(test_size)
    if n < 2:
        raise ValueError(f"{where}: needs at least 2 examples (one to train on, one to test), "
                         f"got {n}")
    if is_int(size):
        if not 1 <= size < n:
            raise ValueError(f"{where}: an int test_size is a number of test examples in "
                             f"[1, {n}) for {n} examples, got {shown(size)}; pass a fraction such "
                             f"as test_size=0.25 or an int in range")
        return int(size)
    frac = real_arg(size, where, "test_size", fix="; pass a fraction such as test_size=0.25, or an "
                "int number of test examples", low=0.0, high=1.0, open_low=True, open_high=True)
    n_test = math.ceil(frac * n)
    if n_test >= n:
        raise ValueError(f"{where}: test_size={frac} of {n} examples leaves none to train on "
                         f"(ceil({frac} * {n}) = {n_test}); pass a smaller test_size")
    return n_test


def _stratified(stratify: Any, n: int, n_test: int, order: NDArray[np.int64],
                where: str) -> NDArray[np.bool_]:
    """Which examples are in the test part (a mask over the examples), the classes'
    shares by largest remainders and the members of each the first in ``order``."""
    s = array_arg(stratify, where, "stratify")
    if s.ndim == 0 or len(s) != n:
        raise ValueError(f"{where}: stratify must hold one label per example, shape ({n},), "
                         f"got shape {s.shape}; pass stratify=y")
    try:
        _, cls, counts = np.unique(s.reshape(n, -1) if s.ndim > 1 else s,
                                   axis=0 if s.ndim > 1 else None, return_inverse=True,
                                   return_counts=True)
    except TypeError:  # labels that do not sort (mixed types, objects)
        raise TypeError(f"{where}: stratify's labels must be sortable (ints or strings), "
                        f"got dtype {s.dtype}; pass stratify=y with integer labels") from None
    cls = cls.reshape(n)
    k = len(counts)
    if counts.min() < 2:
        raise ValueError(f"{where}: stratify has a class of only {counts.min()} member, which "
                         f"cannot be in both parts; every class needs 2 or more: merge or "
                         f"drop the rare classes, or pass stratify=None")
    if min(n_test, n - n_test) < k:
        raise ValueError(f"{where}: the test part ({n_test}) and the train part "
                         f"({n - n_test}) must each have at least one place per class "
                         f"({k} classes); pass a test_size between {k} and {n - k} examples")
    take = stratified_test_counts(counts, n_test)
    # rank of each example within its class in permutation order
    by_class = order[np.argsort(cls[order], kind="stable")]
    first = np.cumsum(counts) - counts
    rank = np.empty(n, np.int64)
    rank[by_class] = np.arange(n) - np.repeat(first, counts)
    return np.asarray(rank < take[cls])


def stratified_test_counts(counts: NDArray[np.int64], n_test: int) -> NDArray[np.int64]:
    """Each class's share of ``n_test`` by largest remainders: ``floor(n_test n_c / n)``,
    then one more for the classes of the largest remainders ``n_test n_c mod n``, ties
    to the lower class index. Exact integer arithmetic."""
    n = int(counts.sum())
    share = counts.astype(object) * n_test  # Python ints: n_test n_c may pass int64
    take = (share // n).astype(np.int64)
    left = n_test - int(take.sum())
    rank = np.argsort(-(share % n), kind="stable")
    take[rank[:left]] += 1
    return take
