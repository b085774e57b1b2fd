"""Fuzz of funcdl.data's toy data sets (moons, circles, spirals, blobs) and utilities
(one_hot, moments, train_test_split): every argument perturbed, each call refused with a
message naming the function, or equal to a valid call (test_fuzz_data_random's verdict)."""

from __future__ import annotations

from typing import Any

import numpy as np
from test_fuzz_data_random import (
    BAD_DTYPES,
    BAD_KEYS,
    INTS_BAD,
    NUMBERS_BAD,
    SAME_DTYPES,
    SAME_INTS,
    SAME_KEYS,
    Case,
    _perturb,
    params,
    verdict,
)

from funcdl import data, random

K = random.key(7)
X = np.arange(14.0, dtype=np.float32).reshape(7, 2)
Y = np.arange(7) % 3


def _sets_cases() -> list[Case]:
    """moons, circles, spirals, blobs: the key, n, dtype and each number perturbed."""
    out: list[Case] = []
    makers: dict[str, Any] = {
        "data.moons": lambda k=K, n=5, d=np.float32, **kw: data.moons(k, n, dtype=d, **kw),
        "data.circles": lambda k=K, n=5, d=np.float32, **kw: data.circles(k, n, dtype=d, **kw),
        "data.spirals": lambda k=K, n=5, d=np.float32, **kw: data.spirals(k, n, dtype=d, **kw),
        "data.blobs": lambda k=K, n=5, d=np.float32, **kw: data.blobs(k, n, dtype=d, **kw)}
    ns = {**INTS_BAD, "zero": 0, "past-int64": 2**63, "too-many": 2**62}
    for where, f in makers.items():
        out += _perturb(where, lambda k, f=f: f(k), K, BAD_KEYS, SAME_KEYS, "key")
        out += _perturb(where, lambda n, f=f: f(n=n), 2, ns, SAME_INTS, "n")
        out += _perturb(where, lambda d, f=f: f(d=d), np.float32, BAD_DTYPES,
                        {i: d for i, (d, w) in SAME_DTYPES.items() if w == np.float32}, "dtype")
        names = (where, where.split(".")[1] + "()")
        out += [(f"{where}-swapped", lambda f=f: f(5, K), names, None),
                (f"{where}-unknown-keyword", lambda f=f: f(seed=1), names, None)]
    numbers = {"data.moons": {"noise": 0.5}, "data.circles": {"noise": 0.5, "factor": 0.5},
               "data.spirals": {"noise": 0.5, "turns": 1.5},
               "data.blobs": {"std": 0.5}}
    for where, kws in numbers.items():
        for name, valid in kws.items():
            bad = dict(NUMBERS_BAD)
            if name != "turns":  # turns may be negative: clockwise
                bad.update({"negative": -0.5, "huge": 1e300})
            if name == "factor":
                bad.update({"zero": 0.0, "one": 1.0})
            if name == "std":  # one per centre: a list of 1 is not 3
                bad["array-2"] = np.array([0.5, 0.5])
            out += _perturb(where, lambda v, f=makers[where], nm=name: f(**{nm: v}), valid, bad,
                            {"numpy-float32": np.float32(valid), "0d-array": np.array(valid)},
                            name)
    out += _perturb("data.spirals", lambda c: data.spirals(K, 5, classes=c), 2,
                    {**INTS_BAD, "zero": 0, "above-n": 6}, SAME_INTS, "classes")
    out += _perturb("data.blobs", lambda c: data.blobs(K, 5, centers=c), 2,
                    {**INTS_BAD, "zero": 0, "ragged": [[0.0], [1.0, 2.0]],
                     "empty": np.zeros((0, 2)), "3d": np.zeros((1, 2, 2)),
                     "strings": [["a", "b"]], "nan": [[np.nan, 0.0]], "bools": [[True, False]]},
                    SAME_INTS, "centers")
    out += _perturb("data.blobs", lambda b: data.blobs(K, 5, box=b), (-1.0, 1.0),
                    {"none": None, "one": (1.0,), "three": (0, 1, 2), "swapped": (1.0, -1.0),
                     "nan": (np.nan, 1.0), "inf": (0.0, np.inf), "str": "ab", "scalar": 1.0},
                    {"list": [-1.0, 1.0], "array": np.array([-1.0, 1.0])}, "box")
    dims = {i: v for i, v in INTS_BAD.items() if i != "none"}  # None: the default, 2
    out += _perturb("data.blobs", lambda d: data.blobs(K, 5, dim=d), 2,
                    {**dims, "zero": 0}, {**SAME_INTS, "none": None}, "dim")
    return out


def _utility_cases() -> list[Case]:
    """one_hot, moments, train_test_split: each argument perturbed."""
    split = ("data.train_test_split", "train_test_split()")
    out = _perturb("data.one_hot", lambda lab: data.one_hot(lab, 3), [0, 2],
                   {"floats": [0.0, 2.0], "bools": [True, False], "strings": ["a", "b"],
                    "none": None, "ragged": [[0], [1, 2]], "complex": [1j], "objects":
                    np.array([0, 2], object)},
                   {"list": [0, 2], "uint8": np.array([0, 2], np.uint8),
                    "tuple": (0, 2)}, "labels")
    out += _perturb("data.one_hot", lambda k: data.one_hot([0, 1], k), 2,
                    {**INTS_BAD, "zero": 0, "huge": 2**62}, SAME_INTS, "num_classes")
    out += _perturb("data.one_hot", lambda d: data.one_hot([0, 2], 3, d), np.float32,
                    {i: d for i, d in BAD_DTYPES.items()  # jax.nn.one_hot's int, bool too
                     if i not in ("int32", "int64", "uint8", "bool")},
                    {i: d for i, (d, w) in SAME_DTYPES.items() if w == np.float32},
                    "dtype")
    out += _perturb("data.moments", data.moments, X,
                    {"ints": np.arange(4), "empty": X[:0], "nan": np.array([1.0, np.nan]),
                     "inf": np.array([np.inf, 1.0]), "none": None, "str": "ab",
                     "ragged": [[1.0], [1.0, 2.0]], "0-d": np.float64(1.0),
                     "float16": X.astype(np.float16)},
                    {"readonly": X.copy(), "fortran": np.asfortranarray(X)}, "x")
    out += _perturb("data.moments", lambda a: data.moments(X, a), 0,
                    {"2": 2, "-3": -3, "float": 0.0, "bool": False, "none": None, "str": "0"},
                    {"numpy": np.int8(0), "-2": -2}, "axis")
    out += _perturb("data.train_test_split", lambda k: data.train_test_split(k, X, Y), K,
                    BAD_KEYS, SAME_KEYS, "key")
    out += _perturb("data.train_test_split",
                    lambda t: data.train_test_split(K, X, Y, test_size=t), 2,
                    {**NUMBERS_BAD, "zero": 0, "one": 1.0, "n": 7, "negative": -1, "float-n":
                     7.0, "all-but-none": 0.99, "0.0": 0.0},
                    {"numpy-int": np.int64(2), "0d-array": np.array(2)}, "test_size")
    out += _perturb("data.train_test_split",
                    lambda s: data.train_test_split(K, X, Y, test_size=3, stratify=s), Y,
                    {"short": Y[:-1], "0-d": np.int64(1), "singleton-class": np.arange(7),
                     "mixed": np.array([1, "a", None, 1, "a", None, 1], object),
                     "ragged": [[0], [1, 2]], "too-many-classes":
                     np.array([0, 0, 1, 1, 2, 2, 3, 3])[1:]},
                    {"list": Y.tolist()}, "stratify")
    out += [("data.train_test_split-lengths", lambda: data.train_test_split(K, X, Y[:-1]),
             split, None),
            ("data.train_test_split-no-arrays", lambda: data.train_test_split(K), split, None),
            ("data.train_test_split-one", lambda: data.train_test_split(K, X[:1]), split, None),
            ("data.train_test_split-data-first", lambda: data.train_test_split(X, Y), split,
             None)]
    return out


@params(_sets_cases() + _utility_cases())
def test_sets_and_utilities(call, names, same):
    verdict(call, names, same)
