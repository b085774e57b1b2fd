"""The error function ``erf`` and its complement ``erfc``, vectorised on NumPy alone; the
normal CDF behind GELU (``normal_cdf``, with a fast float32 form); and the max-shifted
exponentials behind every softmax (``shifted_exp``).

Both use the rational Chebyshev approximations of W. J. Cody, "Rational Chebyshev
approximations for the error function", Mathematics of Computation 23 (1969), 631-638,
with the coefficients, range split and exp(-x²) splitting of his SPECFUN routine CALERF
(netlib.org/specfun/erf, 1990 revision). For y = |x|:

* y <= 0.46875:     erf(x)  = x P1(x²) / Q1(x²)
* 0.46875 < y <= 4: erfc(y) = exp(-y²) P2(y) / Q2(y)
* y > 4:            erfc(y) = exp(-y²) / y * (1/sqrt(pi) - z P3(z) / Q3(z)),  z = 1/y²

and erf(x) = sign(x) (1 - erfc(y)), erfc(x) = 2 - erfc(y) for x < 0. Each range is evaluated
only on the elements it covers, gathered by index; large arrays go by chunks so that the
temporaries stay in cache. Measured against ``math.erf`` and ``math.erfc`` on dense grids,
the largest relative error is 6.4e-16 for erf (any x) and 1.0e-15 for erfc (x up to 26.5;
beyond, erfc is subnormal, within 3 * 2**-1074, and 0 from 27.23 on).

Everything is computed in float64, so float32 results are correctly rounded (float32
arithmetic would be faster but up to 8 ulp off). The result has the input's floating dtype
(float64 for integers and bools; longdouble keeps its dtype with float64 accuracy). |x| is
clipped where the result has reached its limit, so no input, ±inf and ±1e308 included,
raises an overflow, invalid or divide warning (underflow is silenced); NaN propagates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["erf", "erfc", "normal_cdf"]

Array = NDArray[Any]
_F = np.float64


def _table(*coeffs: float) -> tuple[Array, ...]:
    # 0-d arrays: ufuncs take them faster than Python floats.
    return tuple(np.array(c, _F) for c in coeffs)


# Cody's coefficients, highest power first. Each denominator is monic, its leading 1 left
# out; numerator and denominator have the same degree.
_R1_NUM = _table(1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
                 3.77485237685302021e02, 3.20937758913846947e03)
_R1_DEN = _table(2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
                 2.84423683343917062e03)
_R2_NUM = _table(2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
                 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
                 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_R2_DEN = _table(1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
                 1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
                 3.43936767414372164e03, 1.23033935480374942e03)
_R3_NUM = _table(1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
                 1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_R3_DEN = _table(2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
                 6.05183413124413191e-2, 2.33520497626869185e-3)

(_THRESH, _MID, _ONE, _TWO, _SIXTEEN, _SIXTEENTH, _INV_SQRT_PI) = _table(
    0.46875,  # Cody's split between the erf and the erfc approximations
    4.0,  # between the second and the third range
    1.0, 2.0, 16.0, 0.0625, 5.6418958354775628695e-1)
# Clipping |x| where the result has reached its limit keeps y² and exp(-y²) finite and
# warning-free: erfc(5.93) < 2**-54, so erf = 1 - erfc rounds to ±1 from 5.93 on (and
# erfc(-x) = 2 - erfc(x) to 2 from 5.87 on); erfc rounds to 0 from 27.23 on.
_ERF_CAP, _ERFC_CAP = _table(6.0, 28.0)
# exp(-(k/16)²) for k = 0 .. 16 * 28: (k/16)² is exact, so each entry is exp of an exact
# argument.
_EXP_TABLE = np.exp(-((np.arange(16 * 28 + 1) / 16.0) ** 2))

_CHUNK = 32768


def _poly(t: Array, coeffs: tuple[Any, ...]) -> Array:
    """Σ c_i t^i by Horner's rule, highest power first (a fresh array)."""
    p: Array = np.multiply(t, coeffs[0])
    p += coeffs[1]
    for c in coeffs[2:]:
        p *= t
        p += c
    return p


def _rational(t: Array, num: tuple[Array, ...], den: tuple[Array, ...]) -> Array:
    """P(t) / Q(t) by Horner's rule, Q monic (a fresh array is returned)."""
    p = _poly(t, num)
    p /= _poly(t, (_ONE, *den))  # t·1 is exact: the same digits as starting from t
    return p


def _exp_neg_sq(y: Array, split: bool) -> Array:
    """exp(-y²) for 0 <= y <= 28 (a fresh array). With ``split``, Cody's splitting
    y² = s² + (y - s)(y + s), s = trunc(16 y) / 16: s² is exact and exp(-s²) is read from
    a table, so the rounding error of y² (up to 8e-14 relative at y = 26.5) does not reach
    the result."""
    if not split:
        e = np.multiply(y, y)
        np.negative(e, out=e)
        return np.exp(e, out=e)
    s = np.multiply(y, _SIXTEEN)
    np.trunc(s, out=s)
    e = _EXP_TABLE.take(s.astype(np.intp))
    s *= _SIXTEENTH
    d = np.subtract(y, s)
    s += y
    d *= s
    np.negative(d, out=d)
    np.exp(d, out=d)
    d *= e
    return d


def _erfc_mid(y: Array, split: bool) -> Array:
    """erfc(y) for 0.46875 < y <= 4."""
    r = _rational(y, _R2_NUM, _R2_DEN)
    r *= _exp_neg_sq(y, split)
    return r


def _erfc_far(y: Array, split: bool) -> Array:
    """erfc(y) for 4 < y <= 28."""
    z = np.multiply(y, y)
    np.divide(_ONE, z, out=z)
    r = _rational(z, _R3_NUM, _R3_DEN)
    r *= z
    np.subtract(_INV_SQRT_PI, r, out=r)
    r /= y
    r *= _exp_neg_sq(y, split)
    return r


def _erfc_tail(y: Array, split: bool) -> Array:
    """erfc(y) for 0.46875 < y <= 28 (a fresh array)."""
    far = y > _MID
    i_far = far.nonzero()[0]
    if i_far.size == 0:
        return _erfc_mid(y, split)
    if i_far.size == y.size:
        return _erfc_far(y, split)
    out = np.empty_like(y)
    i_mid = (~far).nonzero()[0]
    out[i_mid] = _erfc_mid(y[i_mid], split)
    out[i_far] = _erfc_far(y[i_far], split)
    return out


def _head(x: Array, complement: bool) -> Array:
    """erf(x), or erfc(x) with ``complement``, for |x| <= 0.46875 or NaN."""
    r = _rational(np.multiply(x, x), _R1_NUM, _R1_DEN)
    r *= x
    if complement:
        np.subtract(_ONE, r, out=r)
    return r


def _tail(x: Array, y: Array, complement: bool) -> Array:
    """erf(x), or erfc(x) with ``complement``, for |x| = y > 0.46875 (±inf included)."""
    y = np.minimum(y, _ERFC_CAP if complement else _ERF_CAP)
    # erf needs no splitting of y²: there erf = 1 - erfc with erfc(y) <= 0.51, and the
    # relative error of a plain exp(-y²) (at most 36 * 2**-53 for y <= 6, far less where
    # erfc is not tiny) stays below 2e-17 absolute in erf.
    e = _erfc_tail(y, split=complement)
    if complement:
        np.subtract(_TWO, e, out=e, where=x < 0)
    else:
        np.subtract(_ONE, e, out=e)
        np.copysign(e, x, out=e)
    return e


def _evaluate_flat(x: Array, complement: bool, out: Array) -> None:
    """Write erf or erfc of the 1-d float64 array ``x`` into ``out`` (any float dtype)."""
    y = np.abs(x)
    tail = y > _THRESH  # NaN is not in the tail: the first range propagates it
    i_tail = tail.nonzero()[0]
    if i_tail.size == 0:
        out[...] = _head(x, complement)
    elif i_tail.size == x.size:
        out[...] = _tail(x, y, complement)
    else:
        i_head = (~tail).nonzero()[0]
        out[i_head] = _head(x[i_head], complement)
        out[i_tail] = _tail(x[i_tail], y[i_tail], complement)


def _evaluate(x: ArrayLike, complement: bool) -> Array:
    a = np.asarray(x)
    dt = a.dtype
    if dt.kind in "biu":
        dt = np.dtype(_F)
    elif dt.kind != "f":
        name = "erfc" if complement else "erf"
        raise TypeError(f"{name}: expected a real array, got dtype {a.dtype}")
    flat = a.reshape(-1)
    out = np.empty(flat.shape, dt)
    with np.errstate(under="ignore"):  # exp(-y²) and x² may underflow, harmlessly
        for start in range(0, flat.size, _CHUNK):
            sl = slice(start, start + _CHUNK)
            _evaluate_flat(flat[sl].astype(_F, copy=False), complement, out[sl])
    return out.reshape(a.shape)


def erf(x: ArrayLike) -> Array:
    """The error function, elementwise.

    The result has the input's floating dtype (float64 for integers and bools); a 0-d input
    gives a 0-d array. Odd, exactly ±1 from |x| = 5.93 on and at ±inf; NaN propagates.
    """
    return _evaluate(x, complement=False)


def erfc(x: ArrayLike) -> Array:
    """The complementary error function 1 - erf(x), elementwise, accurate in the tail.

    Relative error about 1e-15 wherever the float64 result is a normal number (x up to
    26.5); exactly 0 from x = 27.23 on and 2 from x = -5.87 down. Dtypes as for ``erf``.
    """
    return _evaluate(x, complement=True)


# Φ in float32 arithmetic: erf(u) ≈ u P(u²) / Q(u²) on |u| <= 4, degrees 6 and 5. Fitted
# for this module by Lawson-weighted linearised least squares (Loeb's iteration) on 8000
# points against ``erf`` above: the largest relative error in float64 is 2.0e-9, far below
# float32's 6e-8, so what remains is the rounding of the float32 evaluation. erf(u) is 1
# within float32's last bit from u = 3.9 on. P is halved here: Φ = 1/2 + u P(u²) / Q(u²).
_CDF_NUM = tuple(np.float32(c / 2) for c in (
    -1.3202302677899011e-08, 4.684793535058714e-06, 0.00037960926898711144,
    0.0038496052522303936, 0.05431689923895098, 0.1852030256933125, 1.1283791693784626))
_CDF_DEN = tuple(np.float32(c) for c in (
    6.311072719049739e-05, 0.0013075691155562173, 0.015462078713739743,
    0.11395834739194571, 0.4974653219076454, 1.0))
_CDF_EDGE = np.float32(3.9)
_CDF_HALF, _CDF_ONE, _CDF_ZERO = np.float32(0.5), np.float32(1.0), np.float32(0.0)
_SQRT_HALF_32 = np.float32(0.70710678118654752)
_SQRT_HALF_64 = np.float64(0.70710678118654752)


def _normal_cdf32(x: Array, out: Array) -> None:
    """Write Φ of the 1-d float32 ``x`` into ``out``."""
    u = np.multiply(x, _SQRT_HALF_32)
    np.clip(u, -_CDF_EDGE, _CDF_EDGE, out=u)  # NaN stays NaN; ±inf land on the edge
    z = np.multiply(u, u)
    p = _poly(z, _CDF_NUM)
    p /= _poly(z, _CDF_DEN)
    p *= u
    p += _CDF_HALF
    # At the edge erf rounds to ±1 in float32, but the evaluation may stop one ulp short.
    np.clip(p, _CDF_ZERO, _CDF_ONE, out=out)
    np.copyto(out, _CDF_ZERO, where=u <= -_CDF_EDGE)
    np.copyto(out, _CDF_ONE, where=u >= _CDF_EDGE)


def normal_cdf(x: Array) -> Array:
    """The standard normal CDF Φ(x) = (1 + erf(x/√2)) / 2, elementwise, in x's dtype.

    float32 has its own rational approximation in float32 arithmetic, within 3e-7 of Φ
    (GELU apply on (64, 28, 28, 16): 2.7 ms, where through ``erf`` it took 9.8 ms;
    ``benchmarks/layer_micro.py`` at commit ef57d8a and its parent, output not kept, the
    figures in ef57d8a's message); other floating dtypes
    go through ``erf``, within 1e-16. Φ is exactly 0 for float32 x <= -5.52 and exactly 1
    for x >= 5.52. As PyTorch's float32 GELU, Φ is 1/2 + erf/2, so in the far negative
    tail it has absolute, not relative, accuracy (to 3e-7; x·Φ(x) at x = -5.42 is -4.9e-7
    against -1.6e-7; JAX's float32 GELU, through erfc, keeps its relative accuracy there).
    """
    if x.dtype != np.float32:
        cdf: Array = erf(x * _SQRT_HALF_64).astype(x.dtype, copy=False)
        cdf *= 0.5
        cdf += 0.5
        return cdf
    flat = x.reshape(-1)
    out = np.empty(flat.shape, np.float32)
    for start in range(0, flat.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        _normal_cdf32(flat[sl], out[sl])
    return out.reshape(x.shape)


def shifted_exp(z: Array, axis: int, keep_s: bool = True) -> tuple[Array, Array, Array]:
    """``(s, e, total)``: ``s = z - max(z)`` along ``axis``, ``e = exp(s)``, ``total = Σ e``
    (keepdims), so softmax is ``e / total`` and log-softmax ``s - log(total)`` with no
    overflow; a backward pass reuses ``e / total`` instead of a second exp. ``keep_s=False``
    (softmax, which needs no s): e is taken in s's buffer, one array fewer."""
    # finite z over the float range apart: -inf, e = 0; an infinite z (a row masked with
    # -inf everywhere): inf - inf, NaN, as PyTorch gives it, without NumPy's warning
    with np.errstate(over="ignore", invalid="ignore"):
        s = z - np.maximum.reduce(z, axis=axis, keepdims=True)
    e = np.exp(s) if keep_s or type(s) is not np.ndarray else np.exp(s, out=s)
    return s, e, np.add.reduce(e, axis=axis, keepdims=True)


def _softplus_of(v: Array, e: Array) -> Array:
    s: Array = np.maximum(v, 0)
    s += np.log1p(e)  # log(1 + e^-|v|) <= log 2
    return s


def softplus(v: Array) -> Array:
    """``log(1 + e^v)`` as ``max(v, 0) + log(1 + e^-|v|)``: no overflow at any ``v``."""
    return _softplus_of(v, np.exp(-np.abs(v)))


def softplus_sigmoid(v: Array) -> tuple[Array, Array]:
    """``(softplus(v), σ(v))`` from one ``e = e^-|v|``: ``σ(v) = [1 or e] / (1 + e)`` (1 for
    ``v >= 0``), the derivative of the first; no overflow, ``v = -inf`` gives ``(0, 0)``,
    NaN gives NaN in both."""
    e = np.exp(-np.abs(v))
    return _softplus_of(v, e), np.maximum(e, v >= 0) / (1 + e)
