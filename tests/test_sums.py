"""The BLAS helpers of layers/_sums.py: matrix-vector products that never warn for a flag
OpenBLAS's gemv leaves raised, and block sums. (A fresh clone's suite failed once on an
AMD host with "invalid value encountered in matmul" from Bilinear's stacked product of
finite float32 rows; the flag is not reproducible on demand, so these tests pin the guard
and that the layers go through it.)"""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.layers import _attention, _sums, bilinear

F32 = np.float32


def test_mat_vec_is_matmul_for_vectors_columns_and_stacks() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3, 5)).astype(F32)
    v = rng.standard_normal(5).astype(F32)
    col = rng.standard_normal((4, 5, 1)).astype(F32)
    np.testing.assert_array_equal(_sums.mat_vec(a, v), np.matmul(a, v))
    np.testing.assert_array_equal(_sums.mat_vec(a, col), np.matmul(a, col))
    assert _sums.mat_vec(a, v).dtype == F32


def test_mat_vec_and_block_sum_show_non_finite_products_without_warning() -> None:
    # inf * 0 raises the invalid flag for real: the guard must not turn it into an error,
    # and the NaN must still show (pytest runs with warnings as errors)
    a = np.array([[np.inf, 1.0], [2.0, 3.0]], F32)
    got = _sums.mat_vec(a, np.array([0.0, 1.0], F32))
    assert np.isnan(got[0]) and got[1] == 3.0
    s = _sums.block_sum(np.array([[[np.inf], [1.0]], [[-np.inf], [2.0]]], F32), 1, 2)
    assert np.isnan(s[0]) and s[1] == 3.0


def test_block_sum_is_the_sum_over_the_other_axes() -> None:
    a = np.random.default_rng(1).standard_normal((3, 4, 5, 2))
    np.testing.assert_allclose(_sums.block_sum(a, 1, 3), a.sum(axis=(0, 3)), rtol=1e-12)
    np.testing.assert_allclose(_sums.block_sum(a, 0, 1), a.sum(axis=(1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize(("module", "layer", "shape"), [
    (bilinear, L.Bilinear(3), ((None, 4), (None, 5))),          # the t form: D1+D2 small
    (bilinear, L.Bilinear(40), ((None, 2), (None, 3))),         # the z form
    (_attention, L.MultiHeadAttention(2), (None, 3, 4)),       # its normalisers
])
def test_layers_take_their_matrix_vector_products_through_mat_vec(monkeypatch, module, layer,
                                                                  shape) -> None:
    calls: list[int] = []
    real = _sums.mat_vec
    monkeypatch.setattr(module, "mat_vec", lambda *a: calls.append(1) or real(*a))
    _, params = layer.init(fd.random.key(0), shape)
    shapes = shape if isinstance(shape[0], tuple) else (shape,)
    xs = [np.asarray(fd.random.normal(fd.random.key(i + 1), (2, *s[1:]))) for i, s in
          enumerate(shapes)]
    x = tuple(xs) if len(xs) > 1 else xs[0]
    y, pullback = layer.vjp(params, x)[:2]
    pullback(np.ones_like(y))
    assert calls, f"{layer.name} took no product through _sums.mat_vec"
