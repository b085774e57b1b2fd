"""ConvTranspose2D: PyTorch's ``nn.ConvTranspose2d`` (a "deconvolution", the upsampling layer
of decoders, U-Nets and GAN generators), NHWC with the batch first.

Kernel ``w (kh, kw, out, C)``: the kernel of the ``Conv2D(C, kernel, stride, dilation=...)``
from ``out`` channels to ``C`` whose input-gradient this layer is. That is Keras'
``Conv2DTranspose`` layout, what JAX's ``lax.conv_transpose(x, w, ..., ('NHWC', 'HWIO',
'NHWC'), transpose_kernel=True)`` takes, and torch's weight ``(C, out, kh, kw)`` transposed:
``w = w_torch.transpose(2, 3, 1, 0)``, ``w_torch = w.transpose(3, 2, 0, 1)``.

The two layers are adjoint: with the same kernel, stride and dilation, ConvTranspose2D's
forward is Conv2D's input-gradient (its pullback's dx at ``dy = x``, on a Conv2D input of
the size this layer outputs) and its input-gradient is Conv2D's forward (both without
bias); tests/test_conv_transpose.py checks both. For the explicit (torch) padding ``p`` the
matching Conv2D has ``padding=p`` and this requires ``output_padding < stride`` (else that
Conv2D would give more than ``H`` rows); ``'SAME'`` and ``'VALID'`` match Conv2D's
``'SAME'`` and ``'VALID'``.

Output size per axis (``span = dilation·(k - 1) + 1``, the kernel's extent):
- an int ``p`` (torch): ``(H - 1)·stride - 2·p + span + output_padding``: the full
  result, ``(H - 1)·stride + span`` rows, cropped by ``p`` on each side, then
  ``output_padding`` rows more at the bottom (which hold values only where the crop left
  some, as torch's do; else the bias alone);
- ``'SAME'`` (JAX's conv_transpose): ``H·stride``, cropping ``max(span - stride, 0) // 2``
  at the top;
- ``'VALID'`` (JAX's): ``H·stride + max(span - stride, 0)``, no crop: the full result,
  and ``stride - span`` rows of bias alone after it when the stride is the larger.

Forward, per the "scatter" reading of a transposed convolution: one product
``cols = x2 wᵀ`` (``x2 (N·H·W, C)``, ``w`` as ``(kh·kw·out, C)``, read in place by BLAS)
gives every pixel's contribution under each kernel offset, then conv.py's ``fold`` adds
each offset's ``(N, H, W, out)`` block into the full output at rows ``h·stride +
i·dilation`` (kh·kw vectorised steps: the loop is over kernel offsets, never pixels) and
the result is cropped. The pullback reads the cotangent's windows with conv.py's
``im2col`` (the same strides: the adjoint of the fold) into ``dcols (N·H·W, kh·kw·out)``;
``dx = dcols w`` and ``dw = dcolsᵀ x2`` are one product each.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, call_name, int_arg, is_int
from funcdl.layers._params import drawn, in_param_dtypes, initializer_arg, param_arrays
from funcdl.layers._sums import chan, dot, ones
from funcdl.layers._windows import NO_PADS, Pads, Window, int_tuple
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
)
from funcdl.layers.conv import crop, fold, im2col, pad

__all__ = ["ConvTranspose2D"]

_AXES = ("height", "width")


# ---------------------------------------------------------------------------- arguments

def _pair(name: str, what: str, value: Any) -> tuple[int, int]:
    """An int >= 0 or a pair of them, as a pair: a TypeError for what is not, a ValueError
    for a negative one."""
    vals = (value, value) if is_int(value) else value
    if not (isinstance(vals, (tuple, list)) and len(vals) == 2 and all(map(is_int, vals))):
        nested = isinstance(vals, (tuple, list)) and any(isinstance(v, (tuple, list))
                                                         for v in vals)
        hint = ("; a transposed convolution crops the same on both sides of an axis, as "
                "torch's: no ((top, bottom), (left, right)) form (JAX's explicit "
                "conv_transpose padding pads the stride-dilated input, another meaning)"
                if nested and what == "padding" else "")
        raise TypeError(f"{name}: {what} must be an int >= 0 or a pair (h, w) of them, got "
                        f"{value!r}{hint}")
    if any(v < 0 for v in vals):
        raise ValueError(f"{name}: {what} must be an int >= 0 or a pair (h, w) of them, got "
                         f"{value!r}")
    return int(vals[0]), int(vals[1])


def _padding(name: str, padding: Any) -> str | tuple[int, int]:
    if isinstance(padding, str):
        if padding.upper() in ("SAME", "VALID"):
            return padding.upper()
        raise ValueError(f"{name}: padding must be 'SAME', 'VALID', an int >= 0 or a pair "
                         f"(ph, pw) of them, got {padding!r}")
    return _pair(name, "padding", padding)


def _output_padding(name: str, value: Any, padding: str | tuple[int, int], win: Window
                    ) -> tuple[int, int]:
    op = _pair(name, "output_padding", value)
    if isinstance(padding, str) and op != (0, 0):
        raise ValueError(f"{name}: output_padding needs an int padding (torch's), got "
                         f"output_padding={value!r} with padding {padding!r}, which sets the "
                         f"output size itself; drop output_padding or pass an int padding")
    for a, (o, s, d) in enumerate(zip(op, win.stride, win.dilation)):
        if o >= s and o >= d:  # torch refuses it: those rows would repeat others' taps
            raise ValueError(f"{name}: output_padding must be smaller than the stride or the "
                             f"dilation on each axis (PyTorch's rule), got {o} on the "
                             f"{_AXES[a]} axis with stride {s} and dilation {d}")
    return op


# ---------------------------------------------------------------------------- geometry

def _axis(size: int, k: int, s: int, d: int, pad_: str | int, op: int
          ) -> tuple[int, int, int]:
    """``(out, lo, hi)`` along one axis of ``size`` input pixels: the output size, and the
    rows of the full result ``(size - 1)·s + span`` before and after the output's (``hi``
    counts zero rows appended when the output runs past the full result)."""
    span = (k - 1) * d + 1
    full = (size - 1) * s + span
    if pad_ == "SAME":
        out, lo = size * s, max(span - s, 0) // 2
    elif pad_ == "VALID":
        out, lo = size * s + max(span - s, 0), 0
    else:
        assert isinstance(pad_, int)
        out, lo = full - 2 * pad_ + op, pad_
    return out, lo, max(full, lo + out) - lo - out


def _fit(name: str, win: Window, padding: str | tuple[int, int], op: tuple[int, int],
         shape: tuple[int | None, ...]) -> tuple[int | None, int | None, Pads]:
    """Output height and width (None where the input's is unknown) and the crop ``pads``
    of the full result, ``((top, bottom), (left, right))``; a ValueError naming the layer
    for an empty input axis or an output of no rows."""
    res: list[tuple[int | None, int, int]] = []
    need: list[int] = []
    for a in range(2):
        k, s, d = win.size[a], win.stride[a], win.dilation[a]
        p = padding if isinstance(padding, str) else padding[a]
        span = (k - 1) * d + 1
        # the least input size that leaves an output row: (n - 1)·s + span - 2p + op >= 1
        need.append(1 if isinstance(p, str) else max(1, 1 + -(-(2 * p - op[a] - span + 1)
                                                               // s)))
        n = shape[1 + a]
        res.append((None, 0, 0) if n is None else _axis(n, k, s, d, p, op[a]))
    if any(n is not None and n < m for n, m in zip(shape[1:3], need)):
        raise ValueError(f"{name}: expected an input of shape (N, >={need[0]}, >={need[1]}, C) "
                         f"(an output of at least one pixel: (H - 1)·stride - 2·padding + "
                         f"dilation·(kernel - 1) + output_padding + 1 >= 1), got shape "
                         f"{tuple(shape)}")
    (oh, t, b), (ow, l, r) = res
    return oh, ow, ((t, b), (l, r))


# ---------------------------------------------------------------------------- the layer

def ConvTranspose2D(out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                    padding: Any = 0, output_padding: int | tuple[int, int] = 0,
                    dilation: int | tuple[int, int] = 1, use_bias: bool = True,
                    w_init: initializers.Initializer | None = None,
                    b_init: initializers.Initializer | None = None) -> Layer:
    """Transposed 2-D convolution, PyTorch's ``nn.ConvTranspose2d``, NHWC:
    ``(N, H, W, C) -> (N, OH, OW, out)``, ``OH = (H - 1)·sh - 2·ph + dh·(kh - 1) + oph + 1``
    (int padding); params ``{'w': (kh, kw, out, C), 'b': (out,)}``.

    forward: ``y[n,p,q,o] = b[o] + Σ_{h,w,i,j,c: h·sh + i·dh = p + top, w·sw + j·dw = q +
    left} x[n,h,w,c] w[i,j,o,c]`` (``top``, ``left``: the crop; see the module docstring);
    vjp: ``dx = dcols w``, ``dw = dcolsᵀ x2``, ``db = Σ_{n,p,q} dy``, with ``dcols`` the
    im2col of ``dy`` (zero-padded back to the full result) at stride ``s``, dilation ``d``.

    Args:
      out: output channels. kernel, stride, dilation: an int or a pair (h, w).
      padding: an int >= 0 or a pair (torch's: rows cropped from each side of the full
        result), or ``'SAME'`` (output ``H·stride``) or ``'VALID'`` (output ``H·stride +
        max(span - stride, 0)``), JAX's conv_transpose's meanings (the module docstring).
      output_padding: an int >= 0 or a pair (torch's), rows and columns added at the
        bottom and right; smaller than the stride or the dilation on each axis, and only
        with an int padding.
      use_bias, w_init, b_init: as Conv2D; the default init is torch's ConvTranspose2d:
        U(±1/sqrt(fan_in)) for w and b with ``fan_in = out·kh·kw``, which torch computes
        on its weight ``(C, out, kh, kw)`` and ``initializers.torch_default()`` on
        ``(kh, kw, out, C)``.
    """
    name = call_name("ConvTranspose2D", (out, kernel), stride=(stride, 1),
                     padding=(padding, 0), output_padding=(output_padding, 0),
                     dilation=(dilation, 1), use_bias=(use_bias, True))
    out = int_arg(out, name, "out", minimum=1)
    size, steps, spread = (int_tuple(name, w, v, 2) for w, v in
                           (("kernel", kernel), ("stride", stride), ("dilation", dilation)))
    win = Window(size, steps, spread, NO_PADS)  # fold and im2col read size, stride, dilation
    pads_arg = _padding(name, padding)
    op = _output_padding(name, output_padding, pads_arg, win)
    use_bias = bool_arg(use_bias, name, "use_bias")
    w_init = initializer_arg(name, "w_init", w_init) or initializers.torch_default()
    b_init = initializer_arg(name, "b_init", b_init)
    kh, kw = size

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = check_in_shape(name, in_shape, rank=4, layout="(N, H, W, C)")
        c = shape[-1]
        if c is None or c == 0:
            raise ValueError(f"{name}: the channel axis of in_shape must be a known size > 0, "
                             f"got {shape}")
        oh, ow, _ = _fit(name, win, pads_arg, op, shape)
        k_w, k_b = random.split_for(key, 2, name)
        params = {"w": drawn(name, "w_init", w_init, k_w, (kh, kw, out, c))}
        if use_bias:  # torch's bias rule: U(±1/sqrt(fan_in)), fan_in = out·kh·kw
            bound = 1 / math.sqrt(kh * kw * out)
            params["b"] = drawn(name, "b_init", b_init or initializers.uniform(bound, -bound),
                                k_b, (out,))
        return (shape[0], oh, ow, out), params

    def check(params: Any, x: Any) -> tuple[Array, Array, Array | None]:
        """``(x, w, b or None)``, checked; the params as plain arrays (``plain``)."""
        w, *b = param_arrays(name, params, ("w", "b") if use_bias else ("w",))
        if b and b[0].shape != (out,):
            raise ValueError(f"{name}: params['b'] must have shape ({out},), got {b[0].shape}")
        if w.ndim != 4 or w.shape[:3] != (kh, kw, out):
            raise ValueError(f"{name}: params['w'] must have shape ({kh}, {kw}, {out}, in), "
                             f"got {w.shape}")
        x = as_array(name, x, w.dtype)
        if x.ndim != 4 or x.shape[-1] != w.shape[3]:
            raise ValueError(f"{name}: expected input (N, H, W, {w.shape[3]}) as the params "
                             f"were initialised, got shape {x.shape}")
        return cast_ints(x, w.dtype), w, (b[0] if b else None)

    def forward(x: Array, w: Array, bias: Array | None) -> tuple[Array, Array, Pads]:
        """``(y, x2, pads)``: the output, the input as ``(N·H·W, C)`` and the crop."""
        n, h, wd, c = x.shape
        oh, ow, pads = _fit(name, win, pads_arg, op, x.shape)
        assert oh is not None and ow is not None
        (t, b), (l, r) = pads
        x2 = x.reshape(-1, c)
        cols = (x2 @ w.reshape(-1, c).T).reshape(n, h, wd, kh * kw, out)
        full = np.zeros((n, t + oh + b, l + ow + r, out), cols.dtype)
        y = crop(fold(full, win, h, wd, lambda k, i, j: cols[:, :, :, k]), pads, oh, ow)
        if pads == NO_PADS:  # y is the buffer itself
            if bias is not None:
                chan(np.add, y, bias, out=y)
        else:  # a contiguous copy of the crop, the bias added on the way
            y = np.ascontiguousarray(y) if bias is None else chan(np.add, y, bias)
        return y, x2, pads

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(*check(params, x))[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x, w, bias = check(params, x)
        y, x2, pads = forward(x, w, bias)
        _, h, wd, c = x.shape
        w2 = w.reshape(-1, c)  # (kh·kw·out, C), the rows in dcols' column order
        x_shape, y_shape, w_shape, x_dtype, y_dtype = x.shape, y.shape, w.shape, x.dtype, y.dtype

        def pullback(dy: Array, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dcols = im2col(pad(dy, pads), win, h, wd)  # (N·H·W, kh·kw·out)
            grads = {"w": (dcols.T @ x2).reshape(w_shape)}  # BLAS reads dcols.T in place
            if use_bias:
                dy2 = dy.reshape(-1, out)
                grads["b"] = dot(ones(len(dy2), dy2.dtype), dy2)
            in_param_dtypes(grads, params)
            if not need_dx:
                return grads, None
            return grads, in_input_dtype(dcols @ w2, x_dtype).reshape(x_shape)

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True)
