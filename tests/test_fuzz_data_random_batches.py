"""Fuzz of the error contract for funcdl.data (batches, disk): the rule, its verdict and
the perturbation tables are test_fuzz_data_random.py's.

A batches call that succeeds is compared, batch by batch, with the valid call it stands
for; its errors must come at the call, not at the first ``next``, so every case here
consumes the iterator inside the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from test_fuzz_data_random import (
    BAD_DTYPES,
    BAD_KEYS,
    INTS_BAD,
    SAME_DTYPES,
    SAME_INTS,
    SAME_KEYS,
    Case,
    _perturb,
    _readonly,
    params,
    verdict,
)

from funcdl import data, random

K = random.key(7)
X = np.arange(14.0, dtype=np.float32).reshape(7, 2)
Y = np.arange(7) % 3
BATCHES = ("data.batches", "batches()")


def run(key: Any = K, *arrays: Any, **kw: Any) -> list[Any]:
    """``list(batches(...))``, with this file's valid call where arguments are left out."""
    kw.setdefault("batch_size", 3)
    return list(data.batches(key, *(arrays or (X, Y)), **kw))


def _batches_cases() -> list[Case]:
    out = _perturb("data.batches", run, K, BAD_KEYS, SAME_KEYS, "key")
    # batch_size: a positive int; larger than n gives one batch, as torch's DataLoader
    sizes = {**INTS_BAD, "zero": 0, "huge-negative": -(2**70)}
    del sizes["huge"]
    out += _perturb("data.batches", lambda b: run(batch_size=b), 2, sizes, SAME_INTS,
                    "batch_size")
    out += [(f"data.batches-batch_size-{b}", lambda b=b: run(batch_size=b), BATCHES,
             lambda: run(batch_size=7)) for b in (7, 8, 2**70)]
    out += [("data.batches-batch_size-above-n-drop-last",
             lambda: run(batch_size=8, drop_last=True), BATCHES, lambda: [])]
    flags = {"int-1": 1, "int-0": 0, "str": "no", "none": None, "float": 1.0,
             "array": np.array(True), "list": [True]}
    for flag in ("shuffle", "drop_last"):
        out += _perturb("data.batches", lambda v, flag=flag: run(**{flag: v}), True, flags,
                        {"numpy-bool": np.True_}, flag)
    # the arrays: what np.asarray reads as the same array is the same; the rest is refused
    arrays_bad: dict[str, tuple[Any, ...]] = {
        "lengths-differ": (X, Y[:-1]), "lengths-differ-first": (X[:-1], Y),
        "one-empty": (X[:0], Y), "0-d": (X, np.float32(1)), "0-d-array": (np.array(1.0),),
        "scalar": (X, 3), "none": (X, None), "none-only": (None,), "str": ("abcdefg",),
        "dict": ({"x": X},), "set": ({1, 2},), "ragged": ([[1.0], [1.0, 2.0]],),
        "generator": ((i for i in range(7)),), "lengths-differ-list": (X.tolist(), [0] * 6),
        "key-as-array": (X, K), "object-0d": (np.array(None, object),)}
    out += [(f"data.batches-arrays-{i}", lambda a=a: run(K, *a), BATCHES, None)
            for i, a in arrays_bad.items()]
    arrays_same: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {  # bad, its valid twin
        "lists": ((X.tolist(), Y.tolist()), (X.astype(np.float64), Y)),
        "tuple-rows": ((tuple(map(tuple, X.tolist())), Y), (X.astype(np.float64), Y)),
        "readonly": ((_readonly(X), Y), (X, Y)), "strided": ((np.repeat(X, 2, 0)[::2], Y), (X, Y)),
        "big-endian": ((X.astype(">f4"), Y), (X.astype(">f4"), Y)),
        "fortran": ((np.asfortranarray(X), Y), (X, Y)), "one-array": ((X,), (X,)),
        "objects": ((np.array(list("abcdefg"), object),), (np.array(list("abcdefg"), object),)),
        "three-arrays": ((X, Y, X[:, ::-1]), (X, Y, X[:, ::-1].copy())),
        "empty": ((X[:0], Y[:0]), (X[:0], Y[:0])),  # no batches, as torch's DataLoader
        # accepted: a tuple of same-shape arrays is one array to np.asarray (and to NumPy)
        "tuple-of-arrays": (((X, X),), (np.stack([X, X]),))}
    out += [(f"data.batches-arrays-{i}-same", lambda a=a: run(K, *a), BATCHES,
             lambda w=w: run(K, *w)) for i, (a, w) in arrays_same.items()]
    out += [  # keys: None only without shuffle, where the key is ignored (as documented)
        ("data.batches-no-key-shuffle", lambda: run(None), BATCHES, None),
        ("data.batches-no-key-no-shuffle", lambda: run(None, shuffle=False), BATCHES,
         lambda: [(X[i:i + 3], Y[i:i + 3]) for i in (0, 3, 6)]),
        ("data.batches-bad-key-no-shuffle", lambda: run(5, shuffle=False), BATCHES,
         lambda: run(None, shuffle=False)),
        ("data.batches-data-first", lambda: list(data.batches(X, Y, batch_size=3)), BATCHES, None),
        ("data.batches-data-only", lambda: list(data.batches(X, batch_size=3)), BATCHES, None),
        ("data.batches-no-arrays", lambda: list(data.batches(K, batch_size=3)), BATCHES, None),
        ("data.batches-batch-size-positional", lambda: list(data.batches(K, X, 3)), BATCHES,
         None),
        ("data.batches-unknown-keyword", lambda: run(seed=1), BATCHES, None),
        ("data.batches-no-batch-size", lambda: list(data.batches(K, X)), BATCHES, None)]
    return out


def _disk_cases() -> list[Case]:
    names = ("data.disk", "disk()")
    out = _perturb("data.disk", lambda k: data.disk(k, 5), K, BAD_KEYS, SAME_KEYS, "key")
    ns = {**INTS_BAD, "past-int64": 2**63, "too-many": 2**62}
    out += _perturb("data.disk", lambda n: data.disk(K, n), 2, ns, SAME_INTS, "n")
    out += _perturb("data.disk", lambda d: data.disk(K, 5, d), np.float32, BAD_DTYPES,
                    {i: d for i, (d, w) in SAME_DTYPES.items() if w == np.float32}, "dtype")
    out += _perturb("data.disk", lambda d: data.disk(K, 5, d), np.float64, {},
                    {i: d for i, (d, w) in SAME_DTYPES.items() if w == np.float64}, "dtype64")
    out += [("data.disk-zero", lambda: data.disk(K, 0), names,
             lambda: (np.zeros((0, 2), np.float32), np.zeros((0, 1), np.float32))),
            ("data.disk-swapped", lambda: data.disk(5, K), names, None),
            ("data.disk-no-key", lambda: data.disk(5), names, None),
            ("data.disk-unknown-keyword", lambda: data.disk(K, 5, seed=1), names, None)]
    return out


@params(_batches_cases() + _disk_cases())
def test_data(call, names, same):
    verdict(call, names, same)


def test_batches_raise_at_the_call_not_at_the_first_next():
    for bad in [dict(batch_size=0), dict(shuffle="no"), dict(drop_last=None)]:
        try:
            data.batches(K, X, Y, **{"batch_size": 3, **bad})
        except (TypeError, ValueError) as e:
            assert "data.batches" in str(e)
        else:
            raise AssertionError(f"{bad} accepted at the call")
