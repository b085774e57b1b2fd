"""Weight parametrizations, PyTorch's ``torch.nn.utils.parametrizations``: a wrapper that
computes one param of the layer it wraps from params (and state) of its own, then runs the
layer on it. ``WeightNorm`` (``weight_norm``) and ``SpectralNorm`` (``spectral_norm``).

The output axis ``dim``: torch's ``dim=0`` is the output axis of its layouts, Linear's
``(out, in)`` and Conv2d's ``(out, in, kh, kw)``; funcdl's Dense ``w (in, out)`` and Conv2D
kernel ``(kh, kw, in, out)`` have it last, so ``dim=-1`` (the default) is torch's default
for both. ConvTranspose2D's kernel ``(kh, kw, out, C)`` is torch's ``(C, out, kh, kw)``
transposed: torch's weight_norm ``dim=0`` is ``dim=-1`` here, and spectral_norm's default
for it (``dim=1``) is ``dim=-2``, which SpectralNorm's default ``dim=None`` picks.

Each wrapper passes the child's other params through unchanged, keeps its output shape, its
``dx_optional`` and ``ids``, and drops the fusion fields (the child's ``vjp_then`` would
take the raw params). The child gets the wrapper's key as it is, so at init its weight is
the one the bare layer draws from that key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import int_arg, real_arg, train_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._children import build, child_apply, child_init, child_vjp, is_stateful, name_of
from funcdl.layers._guard import guarded
from funcdl.layers._parametrize import (
    as_matrix,
    axis_of,
    check_uv,
    dim_arg,
    g_shape,
    name_arg,
    normalized,
    options,
    own_array,
    power_iteration,
    rank_outer,
    reduced,
    rest_of,
    slice_norms,
    weight_of,
)
from funcdl.layers._params import in_param_dtypes
from funcdl.layers._sums import product
from funcdl.layers._wrap import child_call, like_child, pulled
from funcdl.layers.base import Layer, LayerLike, layer_arg, need_state

__all__ = ["SpectralNorm", "WeightNorm"]

_INIT_ITERATIONS = 15  # torch's power iterations at registration, from the random u, v


# ---------------------------------------------------------------------------- WeightNorm

def WeightNorm(layer: LayerLike, name: str = "w", dim: int | None = -1) -> Layer:
    """Weight normalisation (torch's ``weight_norm``): ``layer``'s param ``name`` becomes
    ``w = g·v/||v||``, the norm over every axis but the output axis ``dim`` (over all for
    ``dim=None``, one scalar ``g``).

    params: the child's, with ``name`` replaced by ``'g'`` (the weight's shape with the
    reduced axes 1: Dense ``(1, out)``, torch's ``(out, 1)`` transposed; ``()`` for None)
    and ``'v'`` (the weight's shape); init: ``v`` = the child's initial weight,
    ``g = ||v||``, so the initial output is the bare layer's.
    forward: ``y = layer(params with name: g·v̂)``, ``v̂ = v/||v||`` per output slice;
    vjp: ``dg = Σ dw·v̂``, ``dv = (g/||v||)·(dw - v̂·Σ dw·v̂)`` (sums over the slice), from
    the child's ``dw``. A stateful child's state is this layer's, as it is.
    """
    layer_arg("WeightNorm", layer, "expected a layer with a weight, as WeightNorm(Dense(64))")
    pname = name_arg("WeightNorm", name)
    dim = dim_arg("WeightNorm", dim, allow_none=True)
    layer = guarded(layer)
    child = name_of(layer)
    me = f"WeightNorm({child}{options(pname, dim)})"
    dx_optional = bool(getattr(layer, "dx_optional", False))
    own = ("g", "v")

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        out_shape, params, state = child_call("WeightNorm", child, child_init, layer, key,
                                              in_shape)
        w = weight_of(me, params, pname, child)
        clash = [k for k in own if k in params and k != pname]
        if clash:
            raise ValueError(f"{me}: the layer {child} has params {clash} already; its "
                             f"params' keys must not clash with WeightNorm's 'g' and 'v'")
        ax = axis_of(me, dim, w.shape, pname)
        g = slice_norms(w, ax)
        if w.size and not np.all(g > 0):
            raise ValueError(f"{me}: the initial params[{pname!r}] of {child} has an output "
                             f"slice of norm 0, for which g·v/||v|| is undefined; expected "
                             f"a non-zero weight in every slice: use another w_init")
        rest = {k: p for k, p in params.items() if k != pname}
        return out_shape, {**rest, "g": g.astype(w.dtype), "v": w}, state

    def weight(params: Any) -> tuple[dict[str, Any], Any, Any, Any, Any, int | None]:
        """``(other params, w, v, ||v||, g, axis)``, the params checked: ``v`` the caller's
        own array, so that a pullback reading ``v̂ = v/||v||`` keeps no weight-sized array
        beside the child's ``w``."""
        rest = rest_of(me, params, own)
        if pname in rest:
            raise ValueError(f"{me}: params hold {pname!r}, which WeightNorm computes from "
                             f"'g' and 'v'; expected the params WeightNorm's init returns "
                             f"(the child's without {pname!r}, with 'g' and 'v')")
        fix = " (as init returns it)"
        v = own_array(me, params, "v", "params", None, fix)
        ax = axis_of(me, dim, v.shape, "v")
        g = own_array(me, params, "g", "params", g_shape(ax, v.shape), fix)
        norm = slice_norms(v, ax)
        if v.size and np.any(norm == 0):
            raise ValueError(f"{me}: params['v'] has an output slice of norm 0, for which "
                             f"g·v/||v|| is undefined; expected a non-zero v in every slice")
        return rest, g * (v / norm), v, norm, g, ax

    def apply(params: Any, x: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        rest, w, *_ = weight(params)
        out: tuple[Any, Any] = child_call("WeightNorm", child, child_apply, layer,
                                          {**rest, pname: w}, x, state, key, train)
        return out

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        rest, w, v, norm, g, ax = weight(params)
        each = per_example.ON.get()  # dw per example: an axis of N in front of each
        y, child_pb, new_state = child_call("WeightNorm", child, child_vjp, layer,
                                            {**rest, pname: w}, x, state, key, train)
        axes = reduced(ax, w.ndim)

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            dparams, dx = child_call("WeightNorm", child, pulled, child_pb, dy, need_dx,
                                     dx_optional)
            grads = {k: d for k, d in dparams.items() if k != pname}
            dw = dparams[pname]
            if each:  # the same map on each example's dw (linear in it), its axes shifted
                s = np.sum(dw * v, axis=tuple(a + 1 for a in axes), keepdims=True) / norm
                grads["g"] = s.reshape(len(dw), *np.shape(params["g"]))
            else:
                s = np.sum(dw * v, axis=axes, keepdims=True) / norm  # Σ dw·v̂ = Σ dw·v/||v||
                grads["g"] = s.reshape(np.shape(params["g"]))  # a 0-d array for ax None
            grads["v"] = (g / norm) * (dw - v * (s / norm))
            return in_param_dtypes(grads, params), dx

        return y, pullback, new_state

    return like_child(build(me, is_stateful(layer), init, apply, vjp), layer)


# ---------------------------------------------------------------------------- SpectralNorm

def SpectralNorm(layer: LayerLike, name: str = "w", n_power_iterations: int = 1,
                 eps: float = 1e-12, dim: int | None = None) -> Layer:
    """Spectral normalisation (torch's ``spectral_norm``): ``layer``'s param ``name`` ``W``
    is used as ``W/σ``, ``σ = uᵀ W v`` the largest singular value of ``W`` as a matrix
    ``(out, rest)`` (the output axis ``dim`` first), estimated by power iteration.

    Stateful (as BatchNorm): state ``{'u': (out,), 'v': (rest,)}``, drawn normal from the
    key, normalised, then 15 power iterations on the initial ``W`` (as torch at
    registration); ``train=True`` runs ``n_power_iterations`` more,
    ``u = normalize(W v)``, ``v = normalize(Wᵀ u)`` (``x/max(||x||, eps)``) and returns
    them as the new state (in the old state's dtype); ``train=False`` uses the state's
    u, v and returns it unchanged. ``v``'s entries follow funcdl's layout of the other axes
    (Conv2D: ``(kh, kw, in)``, torch's ``(in, kh, kw)`` reordered).
    forward: ``y = layer(params with name: W/σ)``;
    vjp (u, v constants, as torch): ``dW = dW_sn/σ - (⟨dW_sn, W⟩/σ²)·u vᵀ``.
    The child must be stateless; its other params pass through unchanged. ``dim=None``
    (the default) is the child's output axis, torch's default: -1 (Dense, Conv2D), or -2
    for a ConvTranspose2D (inside Remat too), whose kernel is ``(kh, kw, out, C)`` (torch's
    ``dim=1`` there).
    """
    layer_arg("SpectralNorm", layer, "expected a layer with a weight, as "
              "SpectralNorm(Dense(64))")
    pname = name_arg("SpectralNorm", name)
    n_iter = int_arg(n_power_iterations, "SpectralNorm", "n_power_iterations", None)
    if n_iter < 1:
        raise ValueError(f"SpectralNorm: n_power_iterations must be >= 1 (as torch's), got "
                         f"{n_iter}; use 1, the default (each training call refines u, v)")
    eps = real_arg(eps, "SpectralNorm", "eps", low=0.0, open_low=True)
    layer = guarded(layer)
    child = name_of(layer)
    out_axis = int(getattr(layer, "weight_out_axis", -1))  # Remat passes it on
    dim_ = out_axis if dim is None else dim_arg("SpectralNorm", dim, allow_none=False)
    shown = options(pname, dim_, out_axis, n_power_iterations=(n_iter, 1), eps=(eps, 1e-12))
    me = f"SpectralNorm({child}{shown})"
    if is_stateful(layer):
        raise TypeError(f"{me}: expected a stateless layer, got the stateful {child}; "
                        f"SpectralNorm keeps u, v as its own state: wrap the layer with the "
                        f"weight alone (e.g. Sequential(SpectralNorm(Dense(8)), BatchNorm()))")
    dx_optional = bool(getattr(layer, "dx_optional", False))

    def matrix(me_w: Any) -> tuple[Any, int]:
        if me_w.ndim < 2:
            raise ValueError(f"{me}: expected params[{pname!r}] of rank >= 2 (a matrix or "
                             f"a kernel), got shape {me_w.shape}")
        ax = axis_of(me, dim_, me_w.shape, pname)
        assert ax is not None
        return as_matrix(me_w, ax), ax

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        out_shape, params, _ = child_call("SpectralNorm", child, child_init, layer, key,
                                          in_shape)
        w = weight_of(me, params, pname, child)
        mat, _ = matrix(w)
        # fold_in: a stream apart from the child's own draws from this key
        ku, kv = random.split_for(random.fold_in(key, 1), 2, me)
        u = normalized(random.normal(ku, (mat.shape[0],), w.dtype), eps)
        v = normalized(random.normal(kv, (mat.shape[1],), w.dtype), eps)
        u, v = power_iteration(mat, u, v, _INIT_ITERATIONS, eps)
        return out_shape, params, {"u": u, "v": v}

    def forward(params: Any, state: Any, train: Any) -> tuple[Any, ...]:
        """``(params with name: W/σ, new state, W, σ, u, v, axis)``, all checked."""
        train = train_arg(train, me)
        state = need_state(me, state)
        w = weight_of(me, params, pname, child)
        mat, ax = matrix(w)
        u0, v0 = check_uv(me, state, *mat.shape)
        u, v = u0.astype(w.dtype), v0.astype(w.dtype)
        if train:
            u, v = power_iteration(mat, u, v, n_iter, eps)
            # copies: the pullback reads u and v, which a caller may write to in the state
            state = {"u": u.astype(u0.dtype), "v": v.astype(v0.dtype)}
        sigma = product(np.dot, u, product(np.matmul, mat, v))
        if sigma == 0:
            raise ValueError(f"{me}: the spectral norm estimate uᵀWv is 0 (a zero weight, "
                             f"or u, v orthogonal to it); expected a non-zero weight and the "
                             f"state u, v init or a training call returned")
        return {**params, pname: w / sigma}, state, w, sigma, u, v, ax

    def apply(params: Any, x: Any, *, state: Any = None, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        normed, new_state, *_ = forward(params, state, train)
        y = child_call("SpectralNorm", child, layer.apply, normed, x, key=key, train=train)
        return y, new_state

    def vjp(params: Any, x: Any, *, state: Any = None, key: Any = None,
            train: bool = False) -> Any:
        normed, new_state, w, sigma, u, v, ax = forward(params, state, train)
        each = per_example.ON.get()  # d_sn per example: an axis of N in front
        y, child_pb = child_call("SpectralNorm", child, layer.vjp, normed, x, key=key,
                                 train=train)

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            dparams, dx = child_call("SpectralNorm", child, pulled, child_pb, dy, need_dx,
                                     dx_optional)
            grads = dict(dparams)
            d_sn = grads[pname]
            if each:  # ⟨dW_sn, W⟩/σ² per example, (N, 1, ..., 1)
                c = (product(np.matmul, d_sn.reshape(len(d_sn), -1), w.reshape(-1))
                     / (sigma * sigma)).reshape(len(d_sn), *(1,) * w.ndim)
            else:
                c = product(np.vdot, d_sn, w) / (sigma * sigma)   # ⟨dW_sn, W⟩/σ²
            grads[pname] = d_sn / sigma - c * rank_outer(u, v, w.shape, ax)
            return in_param_dtypes(grads, params), dx

        return y, pullback, new_state

    return like_child(Layer(init, apply, vjp, stateful=True, name=me), layer)
