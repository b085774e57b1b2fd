"""Fuzz of the error contract for apply_updates, global_norm and pytrees (tree's flatten,
unflatten, ravel, unravel): the rule, the verdict and its ``ANY`` are test_fuzz_api.py's;
the grads perturbed are test_fuzz_api_optim.py's."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_fuzz_api import ANY, params, verdict
from test_fuzz_api_optim import GRAD_PERTURBATIONS, G, P, _f16

from funcdl import optim, tree

# ---------------------------------------------------------------------------- apply_updates

AU = ("apply_updates",)


def _apply(ps: Any = P, updates: Any = G) -> Callable[[], Any]:
    return lambda: optim.apply_updates(ps, updates)


APPLY_CASES = [
    *[(f"updates-{gid}", _apply(updates=g), AU,
       {"tree": None, "dtype": None, "float16": _apply(updates=_f16(G)), "float64": _apply(),
        "any": ANY}[kind]) for gid, g, kind in GRAD_PERTURBATIONS],
    *[(f"params-{d}", _apply(ps={**P, "w": P["w"].astype(d)}), AU, None)
      for d in ("int64", "bool", "complex64", "str", "object")],
    ("params-python-float", _apply(ps={"w": 1.0}, updates={"w": 0.5}), AU,
     lambda: {"w": np.float64(1.5)}),
    ("swapped", _apply(G, P), AU, _apply()),  # p + u = u + p: nothing to tell them apart
    ("updates-a-state", _apply(updates=optim.adam().init(P)), AU, None),
    ("updates-with-state", _apply(updates=optim.adam().update(optim.adam().init(P), G, P)),
     AU, None),
]


GN = ("global_norm",)
NORM_CASES = [
    *[(f"leaf-{d}", lambda d=d: optim.global_norm({"a": np.ones(2, d)}), GN, None)
      for d in ("bool", "object", "str", "datetime64[s]")],
    ("leaf-int", lambda: optim.global_norm({"a": np.ones(2, int)}), GN, lambda: 2**0.5),
    ("leaf-huge-int", lambda: optim.global_norm({"a": 10**400}), GN, None),
    ("list", lambda: optim.global_norm([1.0, 2.0]), GN, lambda: 5**0.5),
    ("none", lambda: optim.global_norm(None), GN, lambda: 0.0),
    ("complex", lambda: optim.global_norm({"a": np.ones(2, complex)}), GN, lambda: 2**0.5),
]


@params(APPLY_CASES + NORM_CASES)
def test_apply_updates_and_global_norm(call, names, same):
    verdict(call, names, same, close=True)


# ---------------------------------------------------------------------------- tree

T = {"a": np.ones(3, np.float32), "b": [np.zeros((2, 2)), np.int64(3)], "c": None}
V, UNRAVEL = tree.ravel({"a": np.ones(3, np.float32), "n": np.int64(3)})  # float64 vector
TR = ("tree", "unflatten", "unravel")


def _vec(last: Any, dtype: Any = None) -> np.ndarray:
    return np.array([1.0, 2.0, 3.0, last], dtype)


TREE_CASES = [
    *[(f"map-f-{i}", lambda f=f: tree.map(f, T), TR, None) for i, f in [("none", None),
                                                                         ("int", 3)]],
    ("map-f-last", lambda: tree.map(T, np.negative), TR, None),
    ("map_multi-f-none", lambda: tree.map_multi(None, 2, T), TR, None),
    ("map_multi-f-wrong-count", lambda: tree.map_multi(lambda x: (x,), 2, T), (*TR, "map"),
     None),
    *[(f"map-{i}", lambda o=o: tree.map(lambda *x: x[0], T, o), TR, None)
      for i, o in [("missing-key", {"a": 1, "b": [1, 2]}), ("list-length", {**T, "b": [1]}),
                   ("tuple-for-list", {**T, "b": (1, 2)}), ("leaf-for-none", {**T, "c": 1}),
                   ("none-for-leaf", {**T, "a": None}), ("list-for-leaf", {**T, "a": [1, 2, 3]})]],
    ("map-shapes", lambda: tree.map(np.add, T, tree.map(np.zeros_like, {**T, "a": np.ones(4)}),
                                    shapes=True), TR, None),
    ("map-unsortable-keys", lambda: tree.map(np.negative, {1: 1.0, "a": 2.0}), TR, None),
    *[(f"unflatten-leaves-{i}", lambda x=x: tree.unflatten(tree.structure([1, 2]), x), TR, None)
      for i, x in [("0d-array", np.array(1)), ("dict", {"x": 1, "y": 2}), ("str", "ab"),
                   ("none", None), ("int", 5), ("too-few", [1]), ("too-many", [1, 2, 3])]],
    ("unflatten-leaves-generator", lambda: tree.unflatten(tree.structure([1, 2]), iter([1, 2])),
     TR, lambda: [1, 2]),
    ("unflatten-leaves-array", lambda: tree.unflatten(tree.structure([1, 2]), np.arange(2)), TR,
     lambda: list(np.arange(2))),
    ("unflatten-treedef-str", lambda: tree.unflatten("*", [1]), TR, None),
    *[(f"ravel-leaf-{i}", lambda x=x: tree.ravel({"a": x}), TR, None)
      for i, x in [("str", "x"), ("object", np.array([1.0], object)),
                   ("datetime", np.zeros(2, "M8[s]")), ("huge-int", 10**400)]],
    *[(f"unravel-{i}", lambda v=v: UNRAVEL(v), TR, same) for i, v, same in [
        ("str", V.astype(str), None), ("object-none", np.full(4, None), None),
        ("datetime", np.zeros(4, "M8[s]"), None), ("bytes", V.astype(bytes), None),
        ("scalar", 3.0, None), ("rank-2", V[None], None), ("size-1", V[:-1], None),
        ("list", V.tolist(), lambda: UNRAVEL(V)), ("int", V.astype(int), lambda: UNRAVEL(V)),
        ("float16", V.astype(np.float16), lambda: UNRAVEL(V)),
        ("float32", V.astype(np.float32), lambda: UNRAVEL(V)),
        ("bool", V > 0, lambda: UNRAVEL(np.ones(4))),
        ("nan-into-int", _vec(np.nan), None), ("inf-into-int", _vec(-np.inf), None),
        ("huge-into-int", _vec(1e300), None),
        ("fraction-into-int", _vec(3.75), lambda: UNRAVEL(_vec(3))),  # truncated, as JAX casts
        ("imaginary-part", _vec(3j), None),
        ("complex-real", _vec(3, complex), lambda: UNRAVEL(_vec(3)))]],
    *[(f"zeros_like-leaf-{i}", lambda x=x: tree.zeros_like({"a": x}), TR, None)
      for i, x in [("str", "abc"), ("object", np.array([None])), ("any-object", object()),
                   ("bytes", b"x")]],
    ("zeros_like-python-float", lambda: tree.zeros_like({"a": 1.5}), TR,
     lambda: {"a": np.zeros(())}),
    ("astype-not-a-dtype", lambda: tree.astype(T, "float99"), TR, None),
    ("check_same-dtypes", lambda: tree.check_same(T, tree.astype(T, np.float16), dtypes=True),
     TR, None),
]


@params(TREE_CASES)
def test_tree(call, names, same):
    verdict(call, names, same)


def test_accepted_self_containing_lists_recurse_as_in_jax():
    # Accepted: a list that contains itself is no pytree; walking it ends in Python's
    # RecursionError, as jax.tree_util's walk does (a visited set would cost every walk).
    loop: list[Any] = [1.0]
    loop.append(loop)
    with pytest.raises(RecursionError):
        tree.leaves(loop)


def test_accepted_warnings_past_the_float_range():
    # Accepted: a param already at inf stepped by -inf is NaN with NumPy's invalid-value
    # warning. Float64 past float32's range is inf silently, as JAX's cast: when unravelled
    # (an errstate only where the vector is wider than a float leaf, so the usual
    # same-dtype unravel pays nothing), and as a step of float64 updates on float32 params
    # (off the fast path, cast there).
    with pytest.warns(RuntimeWarning, match="invalid value"):
        optim.apply_updates({"w": np.full(2, np.inf)}, {"w": np.full(2, -np.inf)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = optim.apply_updates({"w": np.ones(2, np.float32)}, {"w": np.full(2, 1e300)})
    assert out["w"].dtype == np.float32 and np.all(out["w"] == np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert UNRAVEL(np.array([1e300, 2, 3, 3]))["a"][0] == np.inf
