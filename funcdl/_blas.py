"""``product``: a BLAS product that a floating-point flag BLAS left raised does not fail,
for the layers (through ``layers._sums``) and the losses."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["product"]

Array = NDArray[Any]


def product(f: Any, a: Array, b: Array, out: Array | None = None) -> Array:
    """``f(a, b)``, a BLAS product (``np.dot`` or ``np.matmul``) that a flag BLAS left raised
    does not fail: OpenBLAS's float32 gemv can raise the invalid flag on finite operands
    (Bilinear's stacked matrix-vector product once, on the AMD host; a
    Dense(1)'s forward once in 450 runs of one test, on the Intel Xeon one).
    Where warnings are errors, or under ``np.seterr(invalid='raise')``, NumPy's check of the
    flag fails the call, which is then taken again with the flag ignored; elsewhere the
    warning shows, once, and does nothing else. Free on the way that does not fail (a
    ``try``), where ``np.errstate`` would cost each call about as much as a small product.
    A real invalid operation (inf - inf, inf·0: a NaN in the result from operands without
    one) still fails as the bare product does, its error raised again after the second
    call; a stray flag leaves no such NaN. ``out``: f's, written again by the second call."""
    try:
        res: Array = f(a, b) if out is None else f(a, b, out=out)
    except (RuntimeWarning, FloatingPointError):
        with np.errstate(invalid="ignore"):
            res = f(a, b) if out is None else f(a, b, out=out)
        if _has_nan(res) and not (_has_nan(a) or _has_nan(b)):
            raise  # the flag was the product's own
    return res


def _has_nan(a: Any) -> bool:
    a = np.asarray(a)
    return a.dtype.kind in "fc" and bool(np.isnan(a).any())
