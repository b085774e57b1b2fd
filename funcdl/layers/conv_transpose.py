"""ConvTranspose2D and ConvTranspose1D: PyTorch's ``nn.ConvTranspose2d`` and
``nn.ConvTranspose1d`` (a "deconvolution", the upsampling layer of decoders, U-Nets and GAN
generators), channels last with the batch first: NHWC, and ``(N, W, C)``.

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

ConvTranspose1D is the same builder at rank 1, as Conv1D is Conv2D's (conv.py): a height-1
image ``(N, 1, W, C)`` (a reshape, no copy) under a ``1 x k`` window, padding and
output_padding ``(0, p)``, its kernel ``(k, out, C)`` read as ``(1, k, out, C)``;
torch's weight ``(C, out, k)`` is ``w.transpose(2, 1, 0)``.

``groups = G`` (torch's): ``C`` and ``out`` split into ``G`` groups, input channel ``c``
feeding only the ``out / G`` outputs of its group ``c // (C / G)``; the kernel is ``(kh, kw,
out / G, C)`` (``(k, out / G, C)`` at rank 1), the grouped Conv2D kernel ``(kh, kw, in / G,
out)`` of the adjoint Conv2D, and torch's weight ``(C, out / G, kh, kw)`` maps by the same
transposes as above. ``groups = C = out`` is the depthwise transposed convolution. Its
products (the forward's, the pullback's dw and dx) run in _transpose_groups.py, group-major
(depthwise in NHWC), one batched product or broadcast per step; only they branch on
``groups``: the bias, the crop's copy, the casts and the reshapes are shared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, int_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers import _transpose_groups
from funcdl.layers._grouped import groups_arg, in_channels, layout_hint
from funcdl.layers._im2col import crop, fold, im2col, pad
from funcdl.layers._params import drawn, in_param_dtypes, initializer_arg, param_arrays
from funcdl.layers._sums import chan, product, rows_sum
from funcdl.layers._transpose_args import output_padding_arg, padding_arg, sizes_arg, transpose_name
from funcdl.layers._windows import NO_PADS, Pads, Window
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

__all__ = ["ConvTranspose1D", "ConvTranspose2D"]

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


def _fit(name: str, rank: int, win: Window, padding: str | tuple[int, int],
         op: tuple[int, int], shape: tuple[int | None, ...]
         ) -> tuple[int | None, int | None, Pads]:
    """Output height and width (None where the input's is unknown; the height 1 at rank 1,
    whose input is ``(N, W, C)``) and the crop ``pads`` of the full result, ``((top,
    bottom), (left, right))``; a ValueError naming the layer for an empty input axis or an
    output of no rows."""
    sizes = (shape[1], shape[2]) if rank == 2 else (1, shape[1])
    res: list[tuple[int | None, int, int]] = []
    need: list[int] = []
    for a, n in enumerate(sizes):
        k, s, d = win.size[a], win.stride[a], win.dilation[a]
        p = padding if isinstance(padding, str) else padding[a]
        span = (k - 1) * d + 1
        # the least input size that leaves an output row: (n - 1)·s + span - 2p + op >= 1
        need.append(1 if isinstance(p, str) else max(1, 1 + -(-(2 * p - op[a] - span + 1)
                                                               // s)))
        res.append((None, 0, 0) if n is None else _axis(n, k, s, d, p, op[a]))
    if any(n is not None and n < m for n, m in zip(sizes, need)):
        least = ", ".join(f">={m}" for m in need[2 - rank:])
        one, axis, fix = (("pixel", "H", "") if rank == 2 else
                          ("column", "W", "; use a longer input or less padding"))
        raise ValueError(f"{name}: expected an input of shape (N, {least}, C) (an output of "
                         f"at least one {one}: ({axis} - 1)·stride - 2·padding + "
                         f"dilation·(kernel - 1) + output_padding + 1 >= 1), got shape "
                         f"{tuple(shape)}{fix}")
    (oh, t, b), (ow, l, r) = res
    return oh, ow, ((t, b), (l, r))


# ---------------------------------------------------------------------------- the layers

def _conv_transpose(name: str, rank: int, out: int, kernel: Any, stride: Any, padding: Any,
                    output_padding: Any, dilation: Any, use_bias: Any,
                    w_init: initializers.Initializer | None,
                    b_init: initializers.Initializer | None, groups: int) -> Layer:
    """ConvTranspose2D (rank 2) and ConvTranspose1D (rank 1, run on ``(N, 1, W, C)`` with
    the kernel ``(k, out / G, C)`` read as ``(1, k, out / G, C)``); the arguments checked
    here, but for ``out`` and ``groups`` (checked by the constructors)."""
    size, steps, spread = (sizes_arg(name, w, v, rank) for w, v in
                           (("kernel", kernel), ("stride", stride), ("dilation", dilation)))
    win = Window(size, steps, spread, NO_PADS)  # fold and im2col read size, stride, dilation
    pads_arg = padding_arg(name, padding, rank)
    op = output_padding_arg(name, output_padding, pads_arg, win, rank)
    use_bias = bool_arg(use_bias, name, "use_bias")
    w_init = initializer_arg(name, "w_init", w_init) or initializers.torch_default()
    b_init = initializer_arg(name, "b_init", b_init)
    kh, kw = size
    kshape = size[2 - rank:]  # the kernel's spatial shape: (kh, kw) or (k,)
    og = out // groups  # outputs per group: the kernel's third-last axis
    layout = "(N, H, W, " if rank == 2 else "(N, W, "

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = check_in_shape(name, in_shape, rank=rank + 2, layout=f"{layout}C)")
        c = in_channels(name, shape, groups)
        oh, ow, _ = _fit(name, rank, win, pads_arg, op, shape)
        k_w, k_b = random.split_for(key, 2, name)
        params = {"w": drawn(name, "w_init", w_init, k_w, (*kshape, og, c))}
        if use_bias:  # torch's bias rule: U(±1/sqrt(fan_in)), fan_in = out/groups·kh·kw
            bound = 1 / math.sqrt(kh * kw * og)
            params["b"] = drawn(name, "b_init", b_init or initializers.uniform(bound, -bound),
                                k_b, (out,))
        return (shape[0], *((oh, ow) if rank == 2 else (ow,)), out), params

    def check(params: Any, x: Any) -> tuple[Array, Array, Array | None]:
        """``(x, w, b or None)``, checked; the params as plain arrays (``plain``)."""
        w, *b = param_arrays(name, params, ("w", "b") if use_bias else ("w",))
        if b and b[0].shape != (out,):
            raise ValueError(f"{name}: params['b'] must have shape ({out},), got {b[0].shape}")
        if w.ndim != rank + 2 or w.shape[:rank + 1] != (*kshape, og) or w.shape[-1] % groups:
            want = ", ".join(map(str, (*kshape, og)))
            what = "" if groups == 1 else (f" (out // groups = {out} // {groups}; in a "
                                           f"multiple of groups)")
            raise ValueError(f"{name}: params['w'] must have shape ({want}, in){what}, got "
                             f"{w.shape}")
        x = as_array(name, x, w.dtype)
        if x.ndim != rank + 2 or x.shape[-1] != w.shape[-1]:
            raise ValueError(f"{name}: expected input {layout}{w.shape[-1]}) as the params "
                             f"were initialised, got shape {x.shape}"
                             f"{layout_hint(x.shape, rank + 2, w.shape[-1])}")
        return cast_ints(x, w.dtype), w, (b[0] if b else None)

    def forward(x: Array, w: Array, bias: Array | None) -> tuple[Array, Array, Pads]:
        """``(y, x2, pads)``: the output, the input as the pullback reads it (``(N·H·W, C)``;
        grouped, _transpose_groups.forward's) and the crop."""
        n, c = x.shape[0], x.shape[-1]
        h, wd = (x.shape[1], x.shape[2]) if rank == 2 else (1, x.shape[1])
        oh, ow, pads = _fit(name, rank, win, pads_arg, op, x.shape)
        assert oh is not None and ow is not None
        if groups > 1:  # x2 the group-major input (G, M, C/G), NHWC when depthwise
            y, x2 = _transpose_groups.forward(x.reshape(n, h, wd, c), w, groups, win, pads,
                                              oh, ow)
        else:
            (t, b), (l, r) = pads
            x2 = x.reshape(-1, c)
            cols = product(np.matmul, x2, w.reshape(-1, c).T).reshape(n, h, wd, kh * kw, out)
            full = np.zeros((n, t + oh + b, l + ow + r, out), cols.dtype)
            y = crop(fold(full, win, h, wd, lambda k, i, j: cols[:, :, :, k]), pads, oh, ow)
        # y: the crop of the full result without bias, a strided view or contiguous
        if bias is None:
            y = np.ascontiguousarray(y)
        elif y.flags.c_contiguous:  # the buffer itself (or one block of it): add in place
            chan(np.add, y, bias, out=y)
        else:  # a strided crop: a contiguous copy, the bias added on the way
            y = chan(np.add, y, bias)
        return (y if rank == 2 else y.reshape(n, ow, out)), x2, pads

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(*check(params, x))[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x, w, bias = check(params, x)
        y, x2, pads = forward(x, w, bias)
        h, wd = (x.shape[1], x.shape[2]) if rank == 2 else (1, x.shape[1])
        x_shape, y_shape, x_dtype, y_dtype = x.shape, y.shape, x.dtype, y.dtype
        x_each = x if per_example.ON.get() else None  # kept only for per-example grads

        def pullback(dy: Array, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            if x_each is not None:
                return each(dy, need_dx)
            return batch(dy, need_dx)

        def batch(dy: Array, need_dx: bool) -> tuple[Any, Array | None]:
            dy4 = dy if rank == 2 else dy[:, None]  # (N, 1, OW, out): a view
            dx: Array | None
            if groups > 1:
                dw, dx = _transpose_groups.pullback(dy4, x2, w, groups, win, pads, h, wd,
                                                    need_dx)
            else:
                dcols = im2col(pad(dy4, pads), win, h, wd)  # (N·H·W, kh·kw·out)
                dw = product(np.matmul, dcols.T, x2).reshape(w.shape)  # dcols.T read in place
                dx = (product(np.matmul, dcols, w.reshape(-1, x2.shape[-1])) if need_dx
                      else None)
            grads = {"w": dw}
            if use_bias:
                dy2 = dy.reshape(-1, out)
                grads["b"] = rows_sum(dy2)
            in_param_dtypes(grads, params)
            return grads, None if dx is None else in_input_dtype(dx, x_dtype).reshape(x_shape)

        def each(dy: Array, need_dx: bool) -> tuple[Any, Array | None]:
            """Per example (_per_example): ``dw_n = dcols_nᵀ x_n`` per group, dcols the
            windows of the padded dy; one batched product over (example, group). dx: the
            batch's (its summed dw not read)."""
            assert x_each is not None
            dy4 = dy if rank == 2 else dy[:, None]
            n, c = x_shape[0], x_shape[-1]
            kk, og, cg = win.size[0] * win.size[1], w.shape[-2], c // groups
            dcols = im2col(pad(dy4, pads), win, h, wd).reshape(n, h * wd, kk, groups, og)
            a = dcols.transpose(0, 3, 2, 4, 1).reshape(n, groups, kk * og, h * wd)
            b = x_each.reshape(n, h * wd, groups, cg).transpose(0, 2, 1, 3)
            dw = product(np.matmul, a, b).reshape(n, groups, kk, og, cg)
            grads = {"w": dw.transpose(0, 2, 3, 1, 4).reshape(n, *w.shape)}
            if use_bias:
                grads["b"] = per_example.sums(dy4)
            dx = batch(dy, True)[1] if need_dx else None
            return in_param_dtypes(grads, params), dx

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True, weight_out_axis=-2)


def ConvTranspose2D(out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                    padding: Any = 0, output_padding: int | tuple[int, int] = 0,
                    dilation: int | tuple[int, int] = 1, use_bias: bool = True,
                    w_init: initializers.Initializer | None = None,
                    b_init: initializers.Initializer | None = None, groups: int = 1
                    ) -> Layer:
    """Transposed 2-D convolution, PyTorch's ``nn.ConvTranspose2d``, NHWC:
    ``(N, H, W, C) -> (N, OH, OW, out)``, ``OH = (H - 1)·sh - 2·ph + dh·(kh - 1) + oph + 1``
    (int padding); params ``{'w': (kh, kw, out/G, C), 'b': (out,)}``, ``G = groups``.

    forward: ``y[n,p,q,o] = b[o] + Σ_{h,w,i,j,c: h·sh + i·dh = p + top, w·sw + j·dw = q +
    left} x[n,h,w,c] w[i,j,o,c]`` (``top``, ``left``: the crop; see the module docstring;
    grouped: ``c`` over output ``o``'s group only, the kernel read at ``w[i,j,o mod Og,c]``);
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
        ``(kh, kw, out, C)``; with groups, ``fan_in = out/groups·kh·kw`` (torch's too).
      groups: PyTorch's ``groups``: C and out split into that many groups, input channel
        ``c`` feeding only the outputs of its group; the kernel is then ``(kh, kw,
        out // groups, C)``, torch's ``(C, out // groups, kh, kw)`` transposed ``(2, 3, 1,
        0)`` as for groups=1; ``groups = C = out`` is depthwise.
    """
    name = transpose_name("ConvTranspose2D", out, kernel, stride, padding, output_padding,
                          dilation, use_bias, groups)
    out = int_arg(out, name, "out", minimum=1)
    groups = groups_arg(name, groups, out)
    return _conv_transpose(name, 2, out, kernel, stride, padding, output_padding, dilation,
                           use_bias, w_init, b_init, groups)


def ConvTranspose1D(out: int, kernel: int, stride: int = 1, padding: Any = 0,
                    output_padding: int = 0, dilation: int = 1, use_bias: bool = True,
                    w_init: initializers.Initializer | None = None,
                    b_init: initializers.Initializer | None = None, groups: int = 1
                    ) -> Layer:
    """Transposed 1-D convolution, PyTorch's ``nn.ConvTranspose1d``, channels last:
    ``(N, W, C) -> (N, OW, out)``, ``OW = (W - 1)·s - 2·p + d·(k - 1) + output_padding + 1``
    (int padding); params ``{'w': (k, out/G, C), 'b': (out,)}`` (torch's weight ``(C,
    out/G, k)`` as ``w_torch.transpose(2, 1, 0)``). Runs as ConvTranspose2D's rank-1 case.

    forward: ``y[n,q,o] = b[o] + Σ_{w,j,c: w·s + j·d = q + p} x[n,w,c] w[j,o,c]``;
    vjp: ``dx = dcols w``, ``dw = dcolsᵀ x``, ``db = Σ_{n,q} dy``, with ``dcols`` the
    im2col of ``dy`` (padded back to the full result), as ConvTranspose2D's.

    Args: as ConvTranspose2D's, each one int: ``padding`` an int >= 0 (torch's: cropped
    from both ends), ``'SAME'`` (output ``W·stride``) or ``'VALID'``; ``output_padding``
    (int padding only) smaller than the stride or the dilation; ``w_init`` called with the
    shape ``(k, out // groups, C)``; the default init torch's, ``U(±1/sqrt(out·k))`` for w and b;
    ``groups`` as ConvTranspose2D's: the kernel ``(k, out // groups, C)``, bound
    ``1/sqrt(out/groups·k)``.
    """
    name = transpose_name("ConvTranspose1D", out, kernel, stride, padding, output_padding,
                          dilation, use_bias, groups)
    out = int_arg(out, name, "out", minimum=1)
    groups = groups_arg(name, groups, out)
    return _conv_transpose(name, 1, out, kernel, stride, padding, output_padding, dilation,
                           use_bias, w_init, b_init, groups)
