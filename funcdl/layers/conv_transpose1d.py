"""ConvTranspose1D: PyTorch's ``nn.ConvTranspose1d``, channels last ``(N, W, C)``, run as a
height-1 ConvTranspose2D (kernel ``(1, k)``) on ``(N, 1, W, C)``: the same fold and
im2col, no second implementation. The kernel ``(k, out, C)`` is viewed as ``(1, k, out,
C)`` (a reshape, no copy), and the input and output by a reshape each.
"""

from __future__ import annotations

from typing import Any

from funcdl import initializers, random
from funcdl._args import bool_arg, call_name, int_arg, is_int
from funcdl.layers._params import param_arrays
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    check_cotangent,
    check_in_shape,
)
from funcdl.layers.conv_transpose import ConvTranspose2D

__all__ = ["ConvTranspose1D"]

_ERRORS = (ValueError, TypeError)


def _int(name: str, what: str, value: Any, minimum: int) -> int:
    if not is_int(value):
        raise TypeError(f"{name}: {what} must be an int >= {minimum}, got {value!r} "
                        f"({type(value).__name__}); a 1-D layer takes one number, not a pair")
    return int_arg(value, name, what, minimum=minimum)


def ConvTranspose1D(out: int, kernel: int, stride: int = 1, padding: Any = 0,
                    output_padding: int = 0, dilation: int = 1, use_bias: bool = True,
                    w_init: initializers.Initializer | None = None,
                    b_init: initializers.Initializer | None = None) -> Layer:
    """Transposed 1-D convolution, PyTorch's ``nn.ConvTranspose1d``, channels last:
    ``(N, W, C) -> (N, OW, out)``, ``OW = (W - 1)·s - 2·p + d·(k - 1) + output_padding + 1``
    (int padding); params ``{'w': (k, out, C), 'b': (out,)}`` (torch's weight ``(C, out,
    k)`` as ``w_torch.transpose(2, 1, 0)``).

    forward: ``y[n,q,o] = b[o] + Σ_{w,j,c: w·s + j·d = q + p} x[n,w,c] w[j,o,c]``;
    vjp: ``dx = dcols w``, ``dw = dcolsᵀ x``, ``db = Σ_{n,q} dy``, with ``dcols`` the
    im2col of ``dy`` (padded back to the full result), as ConvTranspose2D's.

    Args: as ConvTranspose2D's, each one int: ``padding`` an int >= 0 (torch's: cropped
    from both ends), ``'SAME'`` (output ``W·stride``) or ``'VALID'``; ``output_padding``
    (int padding only) smaller than the stride or the dilation; the default init torch's,
    ``U(±1/sqrt(out·k))`` for w and b.
    """
    name = call_name("ConvTranspose1D", (out, kernel), stride=(stride, 1),
                     padding=(padding, 0), output_padding=(output_padding, 0),
                     dilation=(dilation, 1), use_bias=(use_bias, True))
    out = int_arg(out, name, "out", minimum=1)
    k = _int(name, "kernel", kernel, 1)
    s = _int(name, "stride", stride, 1)
    d = _int(name, "dilation", dilation, 1)
    op = _int(name, "output_padding", output_padding, 0)
    if isinstance(padding, str):
        pad2: Any = padding
    elif is_int(padding):
        pad2 = (0, _int(name, "padding", padding, 0))
    else:
        raise TypeError(f"{name}: padding must be an int >= 0, 'SAME' or 'VALID', got "
                        f"{padding!r}; a 1-D layer crops the same at both ends, as torch's")
    use_bias = bool_arg(use_bias, name, "use_bias")
    try:
        inner = ConvTranspose2D(out, (1, k), (1, s), pad2, (0, op), (1, d), use_bias,
                                w_init, b_init)
    except _ERRORS as e:
        raise _relabelled(e, name) from None

    span = d * (k - 1) + 1
    # the least input width giving an output of one column: (W - 1)·s - 2p + span + op >= 1
    least = 1 if isinstance(pad2, str) else max(1, 1 + -(-(2 * pad2[1] - op - span + 1) // s))

    def relabel(e: Exception) -> Exception:
        return _relabelled(e, name, inner.name)

    def wide_enough(shape: tuple[Any, ...]) -> None:
        if shape[1] is not None and shape[1] < least:
            raise ValueError(f"{name}: expected an input of shape (N, >={least}, C) (an "
                             f"output of at least one column: (W - 1)·stride - 2·padding + "
                             f"dilation·(kernel - 1) + output_padding + 1 >= 1), got shape "
                             f"{tuple(shape)}; use a longer input or less padding")

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = check_in_shape(name, in_shape, rank=3, layout="(N, W, C)")
        wide_enough(shape)
        try:
            (n, _, ow, o), params = inner.init(key, (shape[0], 1, *shape[1:]))
        except _ERRORS as e:
            raise relabel(e) from None
        params["w"] = params["w"].reshape(k, out, -1)
        return (n, ow, o), params

    def to2d(params: Any, x: Any) -> tuple[dict[str, Array], Array]:
        arrays = param_arrays(name, params, ("w", "b") if use_bias else ("w",))
        w = arrays[0]
        if w.ndim != 3 or w.shape[:2] != (k, out):
            raise ValueError(f"{name}: params['w'] must have shape ({k}, {out}, in), got "
                             f"{w.shape}")
        xa = as_array(name, x, w.dtype)
        if xa.ndim != 3 or xa.shape[-1] != w.shape[2]:
            raise ValueError(f"{name}: expected input (N, W, {w.shape[2]}) as the params "
                             f"were initialised, got shape {xa.shape}")
        wide_enough(xa.shape)
        p2 = {"w": w.reshape(1, k, out, w.shape[2])}
        if use_bias:
            p2["b"] = arrays[1]
        return p2, xa.reshape(xa.shape[0], 1, *xa.shape[1:])

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        p2, x4 = to2d(params, x)
        try:
            y: Array = inner.apply(p2, x4)
        except _ERRORS as e:
            raise relabel(e) from None
        return y.reshape(y.shape[0], *y.shape[2:])

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        p2, x4 = to2d(params, x)
        try:
            y4, pb = inner.vjp(p2, x4)
        except _ERRORS as e:
            raise relabel(e) from None
        y = y4.reshape(y4.shape[0], *y4.shape[2:])
        x_shape, y4_shape, w_shape = x4.shape, y4.shape, params["w"].shape

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy4 = check_cotangent(name, dy, y.shape, y.dtype).reshape(y4_shape)
            try:
                grads, dx = pb(dy4, need_dx)
            except _ERRORS as e:
                raise relabel(e) from None
            grads["w"] = grads["w"].reshape(w_shape)
            return grads, (None if dx is None else dx.reshape(x_shape[0], *x_shape[2:]))

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True)


def _relabelled(e: Exception, name: str, inner: str = "ConvTranspose2D") -> Exception:
    """The inner ConvTranspose2D's error in this layer's words: its name, and the width
    axis its only one (the height is the added axis of size 1)."""
    msg = str(e)
    if inner in msg:
        msg = msg.replace(inner, name)
    elif not msg.startswith(name):
        msg = f"{name}: {msg}"
    msg = msg.replace(" on the width axis", "").replace("(N, H, W, C)", "(N, W, C)")
    return type(e)(msg)
