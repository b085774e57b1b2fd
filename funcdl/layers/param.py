"""``Param``: a learned array that does not depend on the input (PyTorch's ``nn.Parameter``
read in ``forward``, as a Gaussian policy's state-independent ``log_std``; Flax's
``self.param``), repeated for each example of the batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import int_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._params import drawn, initializer_arg, param_arrays
from funcdl.layers.base import Array, Layer, Shape, as_array, check_cotangent, check_in_shape


def Param(shape: Any, init: initializers.Initializer | None = None) -> Layer:
    """A learned array of ``shape``, one copy per example: ``(N, ...) -> (N, *shape)``.

    params: ``{'value': shape}``, drawn by ``init`` (default ``initializers.zeros()``).
    forward: ``y[n] = value`` for each of x's N rows (x is read for its batch size alone);
    vjp: ``dvalue = Σ_n dy[n]`` (per example, ``dy[n]`` itself), ``dx = 0`` (x's shape and
    dtype; None when the caller needs no dx). Example: ``Parallel(Dense(act_dim),
    Param((act_dim,)))`` on a ``FanOut(2)`` gives a policy's mean and its log-std."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    if not isinstance(dims, (tuple, list)):
        raise TypeError(f"Param: shape must be an int or a tuple of ints, got {shape!r}")
    size = tuple(int_arg(d, "Param", "each entry of shape", minimum=0) for d in dims)
    name = f"Param({size})"
    value_init = initializer_arg(name, "init", init) or initializers.zeros()

    def layer_init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        batch = check_in_shape(name, in_shape)[0]
        key = random.check_key(key, name)
        return (batch, *size), {"value": drawn(name, "init", value_init, key, size)}

    def forward(params: Any, x: Any) -> tuple[Array, Array]:
        """``(y, x)``: the value repeated per row (a copy: y is the caller's to keep), x."""
        (value,) = param_arrays(name, params, ("value",))
        if value.shape != size:
            raise ValueError(f"{name}: params['value'] must have shape {size} as init "
                             f"returns it, got {value.shape}")
        xa = as_array(name, x, value.dtype if value.dtype.char in "fd" else np.dtype(np.float32))
        if xa.ndim == 0:
            raise ValueError(f"{name}: expected an input (N, ...) with a batch axis, got a "
                             f"0-d array")
        # the dtype of value · x, as a Dense's (float64 x and float32 params: float64)
        dtype = np.result_type(value, xa) if xa.dtype.kind == "f" else value.dtype
        return np.repeat(value[None].astype(dtype, copy=False), xa.shape[0], axis=0), xa

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(params, x)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        y, xa = forward(params, x)
        y_shape, y_dtype, x_shape, x_dtype = y.shape, y.dtype, xa.shape, xa.dtype
        v_dtype = params["value"].dtype  # the gradient's, as JAX gives a param's
        each = per_example.ON.get()

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            # per example: each row's own cotangent (a copy: dy is the caller's)
            dvalue = (dy.astype(v_dtype) if each
                      else np.add.reduce(dy, axis=0).astype(v_dtype, copy=False))
            dx = np.zeros(x_shape, x_dtype if x_dtype.kind == "f" else y_dtype)
            return {"value": dvalue}, (dx if need_dx else None)

        return y, pullback

    return Layer(layer_init, apply, vjp, name=name, dx_optional=True)
