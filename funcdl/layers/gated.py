"""Gated activations, ``y = x · g(x)`` with a smooth gate ``g``: GELU (``g = Φ``, the normal
CDF, exact or by tanh) and SiLU (``g = σ``, the logistic). Their vjp ``dx = dy (g + x g')``
keeps the gate from the forward. At an infinite input ``x · g(x)`` is inf · 0: NaN, as
PyTorch and JAX give, without NumPy's warning."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl._args import bool_arg
from funcdl._special import normal_cdf
from funcdl.layers._step import POSITIONWISE
from funcdl.layers.activations import _shapeless_init, sigmoid
from funcdl.layers.base import Array, Layer, as_floats, check_cotangent, kept, no_params

__all__ = ["GELU", "SiLU"]

_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_TANH_C = math.sqrt(2 / math.pi)


def _inf_times_zero() -> Any:
    """x · g(x) at an infinite input multiplies inf by 0 (GELU at -inf, its slope at +inf):
    NaN, as PyTorch gives, and without NumPy's warning, as the other activations' NaNs come."""
    return np.errstate(invalid="ignore")


def _gated(name: str, gate: Callable[[Array], tuple[Array, Any]],
           slope: Callable[[Array, Any, Array, Any], Array], reads_y: bool = False) -> Layer:
    """The layer ``y = x · g`` with ``g, res = gate(x)`` (``g`` a new array, ``res`` what the
    slope needs besides); vjp: ``dx = dy · slope(x, y, g, res)``, the slope being
    ``g + x g'(x)``, a new array; ``y`` is None unless ``reads_y`` (the pullback keeps y
    only for a slope that reads it: the caller may free it)."""

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        x = as_floats(name, x)
        y = gate(x)[0]
        with _inf_times_zero():
            y *= x
        return y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        x = as_floats(name, x)
        g, res = gate(x)
        with _inf_times_zero():
            y = kept(x * g)
        y_shape, y_dtype, yr = y.shape, y.dtype, (y if reads_y else None)

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            with _inf_times_zero():
                d = slope(x, yr, g, res)
                d *= dy
            return params, d

        return y, pullback

    return Layer(_shapeless_init(name), apply, vjp, name=name, step=POSITIONWISE)


def GELU(approximate: bool = False) -> Layer:
    """Gaussian error linear unit, ``y = x Φ(x)`` (PyTorch's default, exact erf);
    ``dx = dy (Φ(x) + x φ(x))``. Φ is ``funcdl._special.normal_cdf``: within 3e-7 in
    float32, 1e-16 in float64. ``approximate=True`` uses the tanh form
    ``Φ(x) ≈ (1 + tanh(√(2/π)(x + 0.044715 x³))) / 2`` (JAX's default, PyTorch's 'tanh');
    PyTorch's spellings ``approximate='tanh'`` and ``'none'`` are read as True and False."""
    if isinstance(approximate, str):
        if approximate not in ("tanh", "none"):
            raise TypeError(f"GELU: approximate must be True, False, 'tanh' or 'none' "
                            f"(PyTorch's spellings), got {approximate!r}")
        approximate = approximate == "tanh"
    if bool_arg(approximate, "GELU", "approximate"):
        return _gated("GELU(approximate=True)", _tanh_gate, _tanh_slope)
    return _gated("GELU()", lambda x: (normal_cdf(x), None), _exact_slope)


def _exact_slope(x: Array, y: None, cdf: Array, res: None) -> Array:
    o = np.clip(x, -40, 40)  # φ(40) underflows to 0; squaring 1e30 would overflow
    if type(o) is not np.ndarray:  # a 0-d input: NumPy scalars, no buffer to write into
        out: Array = cdf + x * (_INV_SQRT_2PI * np.exp(-0.5 * o * o))
        return out
    # Φ + x·φ(x) in one buffer, the same operations in the same order (·-0.5 is exact):
    # six full-size temporaries were up to a sixth of the pullback (3.96 -> 3.2-3.7 ms on
    # (64, 28, 28, 32) float32, two runs: benchmarks/results/pullback_micro.md)
    np.multiply(o, o, out=o)
    o *= -0.5
    np.exp(o, out=o)
    o *= _INV_SQRT_2PI
    o *= x
    o += cdf
    return o


def _tanh_gate(x: Array) -> tuple[Array, tuple[Array, Array]]:
    """``(1 + t) / 2``, t = tanh(√(2/π)(x + 0.044715 x³)), and ``(t, x clipped)``."""
    xc = np.clip(x, -10, 10)  # tanh is ±1 to the last bit beyond; x³ would overflow
    t = np.tanh(_TANH_C * (xc + 0.044715 * xc * xc * xc))
    return 0.5 * (1 + t), (t, xc)


def _tanh_slope(x: Array, y: None, g: Array, res: tuple[Array, Array]) -> Array:
    t, xc = res
    du = _TANH_C * (1 + 3 * 0.044715 * xc * xc)
    out: Array = g + 0.5 * x * (1 - t * t) * du
    return out


def SiLU() -> Layer:
    """Sigmoid linear unit (swish), as ``torch.nn.SiLU`` and ``jax.nn.silu``: ``y = x σ(x)``;
    ``dx = dy · (σ + y (1 - σ))``, which is ``dy · σ (1 + x (1 - σ))``, σ kept from the
    forward."""

    def slope(x: Array, y: Array, sig: Array, res: None) -> Array:
        d = 1 - sig
        d *= y
        d += sig
        return d

    return _gated("SiLU()", lambda x: (sigmoid(x), None), slope, reads_y=True)
