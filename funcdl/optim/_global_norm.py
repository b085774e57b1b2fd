"""The global norm of a tree of updates, ``sqrt(Σ_leaves Σ |x|²)``, as ``clip_by_global_norm``
and the transforms that scale by it (SAM, normalize_by_update_norm, polyak's) read it:
summed by BLAS in each leaf's dtype, again in float64 where float32 overflows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import tree
from funcdl._args import F32, F64, native_float, refuse_masked
from funcdl._blas import product
from funcdl.optim._leaf_errors import dtype_error

Tree = Any


def global_norm(updates: Tree) -> float:
    """``sqrt(Σ_leaves Σ |x|²)``, as a Python float. A float32 leaf is summed in float32
    (BLAS), and again in float64 should that overflow; integer, float16 and complex leaves
    in float64 (complex128). A non-numeric leaf (bool, str, object) raises TypeError naming
    it."""
    return named_global_norm("global_norm", updates)


def named_global_norm(name: str, updates: Tree, grads: bool = False) -> float:
    """``global_norm``; with ``grads``, of the grads of ``name``'s update, which must be
    real floating point, as every transform's (``real_grad``)."""
    kinds = "f" if grads else "iufc"  # not bool: it would sum as a logical or
    total = 0.0
    for x in tree.leaves(updates):
        if type(x) is not np.ndarray:  # a masked array's hidden entries would count
            refuse_masked(x, name, "grads" if grads else "updates")
        # `is` first, the cheapest test; native_float for an equal dtype (unpickled)
        if type(x) is np.ndarray and (x.dtype is F32 or x.dtype is F64
                                      or native_float(x.dtype)):
            s = float(product(np.vdot, x, x))  # BLAS, in the leaf's dtype: the common case
            if s == math.inf and x.dtype == F32:
                # A float32 sum of squares overflows past ~1.8e19 (then clipping
                # [3e19, 4e19] scaled it by max_norm/inf = 0): sum again in float64.
                s = _sum_of_squares(x)
        elif np.asarray(x).dtype.kind in kinds:
            s = _sum_of_squares(x)
        else:
            path, dtype = tree.odd_leaf(updates, kinds)  # type: ignore[misc]
            if grads:
                raise dtype_error(name, "grads", path, dtype)
            raise TypeError(f"{name}: updates{path} has dtype {dtype}; the global norm "
                            f"needs numeric arrays (floating-point, as gradients are)")
        total += s
    return math.sqrt(total)


def _sum_of_squares(x: Any) -> float:
    """``Σ |x|²`` in float64 (complex128), where neither overflow nor integer wrap-around
    happens."""
    a = np.asarray(x)
    a = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    return float(product(np.vdot, a, a).real)
