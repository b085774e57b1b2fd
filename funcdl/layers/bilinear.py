"""Bilinear: PyTorch's ``nn.Bilinear``, on a pair input ``(x1, x2)``.

The pair comes as FanOut's or Parallel's output does, a tuple (a list reads as one), and
``init`` takes a tuple of the two shapes; dx comes back as a pair in the input's form.

Two forms, the same BLAS products (``2·M·out·D1·D2`` flops each: forward, dW, dx), picked
per call by the memory the rest costs. With ``M`` rows:

- by rows of ``t = x1 W``, ``(M, out, D2)`` (``W`` read as ``(D1, out·D2)``): ``y`` and
  ``dx2`` are batched matrix-vector products with ``x2`` and ``dy``; ``dW = (dy ⊗ x1)ᵀ x2``,
  ``dx1 = dy·(x2 Wᵀ)``. Keeps ``t``, and the pullback builds an ``(M, out, D1)`` array
  twice, one at a time (``dy ⊗ x1`` for dW, then ``x2 Wᵀ``);
- by the outer product ``z = x1 ⊗ x2``, ``(M, D1·D2)``: ``y = z Wᵀ``, ``dW = dyᵀ z``,
  ``dz = dy W`` gives ``dx1``, ``dx2``. Keeps ``z``, and the pullback builds ``dz``.

The first is taken when ``out·(D1 + D2) <= 2·D1·D2`` (its arrays, ``M·out·(D1 + D2)``
entries, against ``z`` and ``dz``'s ``2·M·D1·D2``; the elementwise work outside the
products scales the same way), i.e. while ``out`` is at most ``2·D1·D2 / (D1 + D2)``, the
harmonic mean of D1 and D2 (between min(D1, D2) and twice it). No loop over rows or
outputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, call_name, int_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._params import drawn, in_param_dtypes, initializer_arg, param_arrays
from funcdl.layers._sums import product, rows_sum
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    like,
    pair_of_shapes,
)

__all__ = ["Bilinear"]


def Bilinear(out: int, use_bias: bool = True, w_init: initializers.Initializer | None = None,
             b_init: initializers.Initializer | None = None) -> Layer:
    """``(x1, x2)`` of shapes ``(..., D1)``, ``(..., D2)`` (the same leading axes) ->
    ``(..., out)``; params ``{'w': (out, D1, D2), 'b': (out,)}``, torch's layout.

    forward: ``y[..., o] = Σ_{i,j} x1[..., i] w[o, i, j] x2[..., j] + b[o]``;
    vjp: ``dw[o,i,j] = Σ dy[..., o] x1[..., i] x2[..., j]``, ``db = Σ dy``,
    ``dx1[..., i] = Σ_{o,j} dy[..., o] w[o,i,j] x2[..., j]``,
    ``dx2[..., j] = Σ_{o,i} dy[..., o] w[o,i,j] x1[..., i]``.
    Default init torch's: ``U(±1/sqrt(D1))`` for w and b. ``w_init`` gets torch's layout
    ``(out, D1, D2)``, which funcdl's fan-based initializers read as ``(..., in, out)``
    (fans ``out·D1``, ``out·D2``): to scale by D1 pass e.g. ``initializers.uniform(1/sqrt(D1))``.
    """
    name = call_name("Bilinear", (out,), use_bias=(use_bias, True))
    out = int_arg(out, name, "out", minimum=1)
    use_bias = bool_arg(use_bias, name, "use_bias")
    w_init = initializer_arg(name, "w_init", w_init)
    b_init = initializer_arg(name, "b_init", b_init)

    def pair_shapes(in_shape: Any) -> tuple[Shape, Shape]:
        if not pair_of_shapes(in_shape):
            raise TypeError(f"{name}: in_shape must be a pair of shapes ((..., D1), (..., "
                            f"D2)), one per input, got {in_shape!r}; the layer takes a pair "
                            f"(x1, x2), e.g. from FanOut(2) or Parallel")
        s1, s2 = (check_in_shape(name, s, min_rank=1) for s in in_shape)
        if len(s1) != len(s2) or any(a is not None and b is not None and a != b
                                     for a, b in zip(s1[:-1], s2[:-1])):
            raise ValueError(f"{name}: x1 and x2 must have the same leading axes, got shapes "
                             f"{s1} and {s2}; only the last axes (D1, D2) may differ")
        for s in (s1, s2):
            if s[-1] is None or s[-1] == 0:
                raise ValueError(f"{name}: the last axis of each input must be a known size "
                                 f"> 0, got shapes {s1} and {s2}")
        return s1, s2

    def init(key: random.Key, in_shape: Any) -> tuple[Shape, Any]:
        s1, s2 = pair_shapes(in_shape)
        d1, d2 = s1[-1], s2[-1]
        assert d1 is not None and d2 is not None
        bound = 1 / math.sqrt(d1)  # torch's: U(±1/sqrt(in1_features)) for both
        k_w, k_b = random.split_for(key, 2, name)
        params = {"w": drawn(name, "w_init", w_init or initializers.uniform(bound, -bound),
                             k_w, (out, d1, d2))}
        if use_bias:
            params["b"] = drawn(name, "b_init", b_init or initializers.uniform(bound, -bound),
                                k_b, (out,))
        lead = tuple(a if a is not None else b for a, b in zip(s1[:-1], s2[:-1]))
        return (*lead, out), params

    def check(params: Any, xs: Any) -> tuple[Array, Array, Array, Array | None]:
        w, *b = param_arrays(name, params, ("w", "b") if use_bias else ("w",))
        if w.ndim != 3 or w.shape[0] != out:
            raise ValueError(f"{name}: params['w'] must have shape ({out}, D1, D2), got "
                             f"{w.shape}")
        if b and b[0].shape != (out,):
            raise ValueError(f"{name}: params['b'] must have shape ({out},), got {b[0].shape}")
        if not isinstance(xs, (tuple, list)) or len(xs) != 2 or (
                isinstance(xs, list) and not all(isinstance(v, np.ndarray) for v in xs)):
            got = (f"a {type(xs).__name__} of length {len(xs)}" if isinstance(xs, (tuple, list))
                   else f"one array of shape {np.shape(xs)}")
            raise TypeError(f"{name}: expected a pair (x1, x2) of arrays (..., {w.shape[1]}) "
                            f"and (..., {w.shape[2]}), got {got}; pass a tuple, e.g. from "
                            f"FanOut(2) for x1 = x2")
        x1, x2 = (cast_ints(as_array(name, v, w.dtype), w.dtype) for v in xs)
        if (x1.ndim < 1 or x2.ndim != x1.ndim or x1.shape[:-1] != x2.shape[:-1]
                or x1.shape[-1] != w.shape[1] or x2.shape[-1] != w.shape[2]):
            raise ValueError(f"{name}: expected x1 (..., {w.shape[1]}) and x2 (..., "
                             f"{w.shape[2]}) with the same leading axes, as the params were "
                             f"initialised, got shapes {x1.shape} and {x2.shape}")
        return x1, x2, w, (b[0] if b else None)

    def by_rows(d1: int, d2: int) -> bool:
        """True for the ``t`` form (module docstring): the smaller arrays beside the
        products."""
        return out * (d1 + d2) <= 2 * d1 * d2

    def forward(a1: Array, a2: Array, w: Array, bias: Array | None) -> tuple[Array, Array]:
        """``(y, r)`` for rows ``a1`` (M, D1), ``a2`` (M, D2): y (M, out), and the form's
        residual, ``t`` (M, out, D2) or ``z`` (M, D1·D2)."""
        d1, d2 = w.shape[1], w.shape[2]
        r: Array
        if by_rows(d1, d2):
            r = product(np.matmul, a1, w.transpose(1, 0, 2).reshape(d1, out * d2)).reshape(
                -1, out, d2)
            y = product(np.matmul, r, a2[:, :, None])[:, :, 0]
        else:
            r = (a1[:, :, None] * a2[:, None, :]).reshape(len(a1), d1 * d2)
            y = product(np.matmul, r, w.reshape(out, d1 * d2).T)
        if bias is not None:
            y += bias
        return y, r

    def rows(x1: Array, x2: Array) -> tuple[Array, Array]:
        return x1.reshape(-1, x1.shape[-1]), x2.reshape(-1, x2.shape[-1])

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x1, x2, w, bias = check(params, xs)
        return forward(*rows(x1, x2), w, bias)[0].reshape(*x1.shape[:-1], out)

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x1, x2, w, bias = check(params, xs)
        a1, a2 = rows(x1, x2)
        y2, r = forward(a1, a2, w, bias)
        y = y2.reshape(*x1.shape[:-1], out)
        d1, d2 = w.shape[1], w.shape[2]
        t_form = by_rows(d1, d2)
        dtypes = [getattr(v, "dtype", None) for v in xs]
        w_shape = w.shape
        each = per_example.ON.get()
        if each and x1.ndim < 2:
            raise ValueError(f"{name}: per-example gradients need a batch axis, got inputs "
                             f"of shape {x1.shape}")

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            dy2 = check_cotangent(name, dy, y_shape, y_dtype).reshape(-1, out)
            if each:  # per example (_per_example): the same products over its own rows
                n, p = y_shape[0], math.prod(y_shape[1:-1])  # examples, positions each
                dy3 = dy2.reshape(n, p, out)
                if t_form:
                    dyx = (dy2[:, :, None] * a1[:, None, :]).reshape(n, p, out * d1)
                    dw = per_example.outer(dyx, a2.reshape(n, p, d2))
                else:
                    dw = per_example.outer(dy3, r.reshape(n, p, d1 * d2))
                grads = {"w": dw.reshape(n, *w_shape)}
                if use_bias:
                    grads["b"] = per_example.sums(dy3)
            elif t_form:
                dyx1 = (dy2[:, :, None] * a1[:, None, :]).reshape(-1, out * d1)
                grads = {"w": product(np.matmul, dyx1.T, a2).reshape(w_shape)}
                del dyx1  # before dx1's (M, out, D1) of its size: one alive at a time
            else:
                grads = {"w": product(np.matmul, dy2.T, r).reshape(w_shape)}
            if use_bias and not each:
                grads["b"] = rows_sum(dy2)
            in_param_dtypes(grads, params)
            if not need_dx:
                return grads, None
            if t_form:
                dyr = dy2[:, None, :]
                dx2 = product(np.matmul, dyr, r)[:, 0]  # a row on the left: gemv too
                s = product(np.matmul, a2, w.transpose(2, 0, 1).reshape(d2, out * d1)).reshape(
                    -1, out, d1)
                dx1 = product(np.matmul, dyr, s)[:, 0]
            else:
                dz = product(np.matmul, dy2, w.reshape(out, d1 * d2)).reshape(-1, d1, d2)
                dx1 = product(np.matmul, dz, a2[:, :, None])[:, :, 0]
                dx2 = product(np.matmul, a1[:, None, :], dz)[:, 0, :]
            return grads, like(xs, (in_input_dtype(dx1.reshape(x1.shape), dtypes[0]),
                                    in_input_dtype(dx2.reshape(x2.shape), dtypes[1])))

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True, weight_out_axis=0)
