"""What WeightNorm and SpectralNorm (``parametrize``) share: the checks of the wrapped
layer's weight and of their own params and state, the output axis ``dim``, the norms, the
power iteration, and the child calls with errors placed in the wrapper."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import int_arg
from funcdl.layers._params import float_param
from funcdl.layers._sums import product
from funcdl.layers.base import Array

_LAYOUTS = ("the output axis: -1 for Dense's (in, out) w and Conv2D's (kh, kw, in, out) "
            "kernel, torch's dim=0")


def name_arg(where: str, name: Any) -> str:
    """The wrapped param's key: a str (a key of the child's params dict)."""
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a str, the key of the wrapped layer's param "
                        f"(e.g. 'w'), got {name!r} ({type(name).__name__})")
    return name


def dim_arg(where: str, dim: Any, allow_none: bool) -> int | None:
    """The output axis: an int (checked against the weight's rank at init), or None."""
    if dim is None and allow_none:
        return None
    return int_arg(dim, where, "dim" + (" (or None)" if allow_none else ""), None)


def options(name: str, dim: int | None, default_dim: int | None = -1,
            **more: tuple[Any, Any]) -> str:
    """``', name=..., dim=...'`` for the options not at their defaults, for the call name."""
    shown = [f"{k}={v!r}" for k, (v, d) in {"name": (name, "w"), **more,
                                            "dim": (dim, default_dim)}.items()
             if not (type(v) is type(d) and v == d)]
    return "".join(f", {s}" for s in shown)


def weight_of(me: str, params: Any, pname: str, child: str) -> Array:
    """The child's initial ``params[pname]``: a float array in a dict (at init)."""
    if not isinstance(params, dict) or pname not in params:
        got = (f"params with keys {sorted(params)}" if isinstance(params, dict)
               else f"params {type(params).__name__} {params!r}"[:120])
        raise ValueError(f"{me}: expected the layer {child} to have a param {pname!r} in a "
                         f"dict of params (as Dense's and Conv2D's 'w'), got {got}; pass "
                         f"name= one of its params' keys, or wrap a layer with weights")
    w = params[pname]
    if not isinstance(w, np.ndarray) or w.dtype.char not in "fd":
        raise TypeError(f"{me}: expected params[{pname!r}] of {child} to be a float32 or "
                        f"float64 array, got {type(w).__name__}"
                        + (f" of dtype {w.dtype}" if isinstance(w, np.ndarray) else ""))
    return native(w)


def native(a: Array) -> Array:
    """``a`` C-contiguous in this machine's byte order: the power iteration's and norms'
    sums then run in one order whatever the layout given (a Fortran-ordered copy of a
    weight gives the same numbers, bit for bit)."""
    return np.ascontiguousarray(a, a.dtype.newbyteorder("="))


def axis_of(me: str, dim: int | None, shape: tuple[int, ...], pname: str) -> int | None:
    """``dim`` as an axis in ``[0, ndim)`` of the weight (None stays None)."""
    if dim is None:
        return None
    n = len(shape)
    if not -n <= dim < n:
        raise ValueError(f"{me}: dim={dim} is not an axis of params[{pname!r}] of shape "
                         f"{shape}; expected an int in [{-n}, {n}), {_LAYOUTS}")
    return dim % n


def reduced(axis: int | None, ndim: int) -> tuple[int, ...]:
    """The axes a norm is taken over: every axis but the output axis (all for None)."""
    return tuple(i for i in range(ndim) if i != axis)


def g_shape(axis: int | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    """WeightNorm's ``g``: the weight's shape with every reduced axis 1 (``()`` for None)."""
    if axis is None:
        return ()
    return tuple(d if i == axis else 1 for i, d in enumerate(shape))


def slice_norms(v: Array, axis: int | None) -> Array:
    """``||v||`` over every axis but ``axis``, kept as size-1 axes (a 0-d array for None)."""
    axes = reduced(axis, v.ndim)
    squares = np.sum(v * v, axis=axes, keepdims=True)
    # a 0-d array, not a NumPy scalar, for None: params are arrays
    n: Array = np.asarray(np.sqrt(squares if axis is not None else squares.reshape(())))
    return n


def own_array(me: str, tree: dict[str, Any], key: str, what: str, shape: tuple[int, ...] | None,
              fix: str) -> Array:
    """``tree[key]``, a float32/float64 array of ``shape`` (None: any shape), or an error
    naming the layer, what was expected and what came."""
    if key not in tree:
        raise ValueError(f"{me}: {what} lack {key!r}, got keys {sorted(tree)}{fix}")
    a = tree[key]
    if isinstance(a, np.floating):  # a 0-d param (dim=None's g) as tree.ravel gives it back
        a = np.asarray(a)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{me}: {what}[{key!r}] must be a NumPy array{fix}, got "
                        f"{type(a).__name__}")
    float_param(me, key, a, what)
    if shape is not None and a.shape != shape:
        raise ValueError(f"{me}: {what}[{key!r}] must have shape {shape}{fix}, got {a.shape}")
    return native(a)


def rest_of(me: str, params: Any, own: tuple[str, ...]) -> dict[str, Any]:
    """The params without the wrapper's own keys: the child's others, passed through."""
    if not isinstance(params, dict):
        raise TypeError(f"{me}: params must be a dict holding {list(own)} and the wrapped "
                        f"layer's other params (as init returns them), got "
                        f"{type(params).__name__}")
    return {k: v for k, v in params.items() if k not in own}


def normalized(a: Array, eps: float) -> Array:
    """``a / max(||a||, eps)``: torch's ``F.normalize`` of a vector."""
    out: Array = a / max(float(np.sqrt(product(np.dot, a, a))), eps)
    return out


def power_iteration(mat: Array, u: Array, v: Array, n: int,
                    eps: float) -> tuple[Array, Array]:
    """``n`` steps of ``u = normalize(W v)``, ``v = normalize(Wᵀ u)`` (torch's order)."""
    for _ in range(n):  # n matrix-vector products each way: no batch or pixel loop
        u = normalized(product(np.matmul, mat, v), eps)
        v = normalized(product(np.matmul, mat.T, u), eps)
    return u, v


def as_matrix(w: Array, axis: int) -> Array:
    """The weight with the output axis first, flattened to ``(out, rest)``: torch's
    ``weight_mat`` (its columns in funcdl's order of the other axes)."""
    cols = int(np.prod([d for i, d in enumerate(w.shape) if i != axis]))  # not -1: out = 0
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], cols)


def rank_outer(u: Array, v: Array, shape: tuple[int, ...], axis: int) -> Array:
    """``u vᵀ`` in the weight's layout (the inverse of ``as_matrix``)."""
    moved = (shape[axis], *(d for i, d in enumerate(shape) if i != axis))
    return np.moveaxis(np.outer(u, v).reshape(moved), 0, axis)


def check_uv(me: str, state: Any, h: int, cols: int) -> tuple[Array, Array]:
    """SpectralNorm's state ``{'u': (out,), 'v': (rest,)}``, checked."""
    fix = " (pass the state init returned, or the new state of the last call)"
    if not isinstance(state, dict):
        raise TypeError(f"{me}: state must be a dict {{'u': ({h},), 'v': ({cols},)}}{fix}, "
                        f"got {type(state).__name__}")
    extra = sorted(k for k in state if k not in ("u", "v"))
    if extra:
        raise ValueError(f"{me}: state has unexpected keys {extra}; expected keys "
                         f"['u', 'v']{fix}")
    return (own_array(me, state, "u", "state", (h,), fix),
            own_array(me, state, "v", "state", (cols,), fix))
