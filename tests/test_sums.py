"""The BLAS helpers of layers/_sums.py: matrix-vector products that never warn for a flag
OpenBLAS's gemv leaves raised, products that a call failed by that flag takes again
(``product``, from funcdl/_blas.py, for the layers and the losses), and block sums. (A fresh
clone's suite failed once on an AMD host with "invalid value encountered in matmul" from
Bilinear's stacked product of finite float32 rows, and once in 450 runs of
tests/test_properties.py's dense stacks on the Intel Xeon host with "invalid value
encountered in dot" from Dense(1)'s (2, 5) @ (5, 1); the flag is not reproducible on demand,
so these tests pin the guards and that the layers go through them.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.layers import _attention, _sums, bilinear

F32 = np.float32


def test_product_of_matmul_is_matmul_for_vectors_columns_and_stacks() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3, 5)).astype(F32)
    v = rng.standard_normal(5).astype(F32)
    col = rng.standard_normal((4, 5, 1)).astype(F32)
    np.testing.assert_array_equal(_sums.product(np.matmul, a, v), np.matmul(a, v))
    np.testing.assert_array_equal(_sums.product(np.matmul, a, col), np.matmul(a, col))
    assert _sums.product(np.matmul, a, v).dtype == F32


def test_gemv_and_sums_fail_a_real_invalid_product_as_the_bare_product_does() -> None:
    # inf * 0 raises the invalid flag for real: as np.matmul, the guarded gemv and sums
    # fail where warnings are errors (as here), and show the NaN where they are not
    a = np.array([[np.inf, 1.0], [2.0, 3.0]], F32)
    v = np.array([0.0, 1.0], F32)
    s_in = np.array([[[np.inf], [1.0]], [[-np.inf], [2.0]]], F32)
    stacked = np.array([[[np.inf, 1.0]], [[np.inf, 1.0]]], F32)  # rows_sum: inf - inf
    calls = [lambda: np.matmul(a, v), lambda: _sums.product(np.matmul, a, v),
             lambda: _sums.rows_sum(np.concatenate([stacked, -stacked], 1))]
    if np.lib.NumpyVersion(np.__version__) >= "2.3.0":  # before, np.dot ignored the flags
        calls.append(lambda: _sums.block_sum(s_in, 1, 2))
    for call in calls:
        with pytest.raises(RuntimeWarning, match="invalid value"):
            call()
    with np.errstate(invalid="ignore"):
        got = _sums.product(np.matmul, a, v)
        s = _sums.block_sum(s_in, 1, 2)
    assert np.isnan(got[0]) and got[1] == 3.0
    assert np.isnan(s[0]) and s[1] == 3.0


def test_gemv_and_stacked_sums_take_a_call_failed_by_a_stray_flag_again(monkeypatch
                                                                       ) -> None:
    calls: list[str] = []
    monkeypatch.setattr(np, "matmul", _flagging(calls))
    a = np.arange(12, dtype=F32).reshape(2, 3, 2)
    assert np.array_equal(_sums.product(np.matmul, a, np.ones(2, F32)), a.sum(-1))
    assert calls == ["call", "call"]
    assert np.array_equal(_sums.rows_sum(a), a.sum(1))  # a stack: np.matmul
    big = np.ones((1, 2 * _sums.CASCADE + 3, 2), F32)  # the blocked path: two products
    assert np.array_equal(_sums.rows_sum(big), big.sum(1))


def test_block_sum_is_the_sum_over_the_other_axes() -> None:
    a = np.random.default_rng(1).standard_normal((3, 4, 5, 2))
    np.testing.assert_allclose(_sums.block_sum(a, 1, 3), a.sum(axis=(0, 3)), rtol=1e-12)
    np.testing.assert_allclose(_sums.block_sum(a, 0, 1), a.sum(axis=(1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize(("module", "layer", "shape"), [
    (bilinear, L.Bilinear(3), ((None, 4), (None, 5))),          # the t form: D1+D2 small
    (bilinear, L.Bilinear(40), ((None, 2), (None, 3))),         # the z form
    (_attention, L.MultiHeadAttention(2), (None, 3, 4)),       # its normalisers
])
def test_layers_take_their_matrix_vector_products_through_product(monkeypatch, module, layer,
                                                                  shape) -> None:
    calls: list[int] = []
    real = _sums.product

    def counted(f: Any, a: np.ndarray, b: np.ndarray, out: Any = None) -> np.ndarray:
        if f is np.matmul and (b.ndim == 1 or b.shape[-1] == 1 or a.shape[-2] == 1):
            calls.append(1)  # a gemv: a vector or a column on the right, a row on the left
        return real(f, a, b, out)

    monkeypatch.setattr(module, "product", counted)
    _, params = layer.init(fd.random.key(0), shape)
    shapes = shape if isinstance(shape[0], tuple) else (shape,)
    xs = [np.asarray(fd.random.normal(fd.random.key(i + 1), (2, *s[1:]))) for i, s in
          enumerate(shapes)]
    x = tuple(xs) if len(xs) > 1 else xs[0]
    y, pullback = layer.vjp(params, x)[:2]
    pullback(np.ones_like(y))
    assert calls, f"{layer.name} took no matrix-vector product through _sums.product"


def _flagging(calls: list[str]) -> Any:
    """A stand-in for a BLAS product that raises the invalid flag on finite operands, as
    OpenBLAS's gemv can: NumPy checks the flag after the call (here a scalar inf * 0 does
    it), so where warnings are errors the call fails; the product itself is right."""
    def f(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        calls.append("call")
        np.float32(np.inf) * np.float32(0)
        return np.dot(a, b)
    return f


def test_product_takes_a_call_failed_by_a_stray_flag_again_quietly() -> None:
    a, b = np.ones((2, 5), F32), np.arange(5, dtype=F32)[:, None]
    calls: list[str] = []
    with pytest.raises(RuntimeWarning, match="invalid value"):  # (warnings are errors here)
        _flagging([])(a, b)
    got = _sums.product(_flagging(calls), a, b)
    assert got.dtype == F32 and np.array_equal(got, np.full((2, 1), 10.0, F32))
    assert calls == ["call", "call"]  # failed once, taken again
    with np.errstate(invalid="raise"):  # np.seterr's FloatingPointError alike
        assert np.array_equal(_sums.product(_flagging(calls), a, b), got)
    calls.clear()
    assert np.array_equal(_sums.product(np.dot, a, b), got) and not calls


def test_product_lets_other_errors_through() -> None:
    def overflowing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        np.float32(3e38) * np.float32(10)
        return np.dot(a, b)

    with pytest.raises(RuntimeWarning, match="overflow"):
        _sums.product(overflowing, np.ones((2, 2), F32), np.ones((2, 2), F32))
    with pytest.raises(ValueError, match="not aligned"):
        _sums.product(np.dot, np.ones((2, 3), F32), np.ones((2, 3), F32))


def test_dense_and_bias_sums_take_their_products_through_product(monkeypatch) -> None:
    """Dense(1)'s forward (the product that failed: (2, 5) @ (5, 1), a gemv) and every
    product of its pullback, and rows_sum's (a bias's gradient), survive a stray flag."""
    from funcdl.layers import _dense
    calls: list[str] = []
    monkeypatch.setattr(_dense, "dot", _flagging(calls))
    monkeypatch.setattr(_dense, "matmul", _flagging(calls))
    monkeypatch.setattr(_sums, "dot", _flagging(calls))
    layer = L.Dense(1)
    _, params = layer.init(fd.random.key(0), (None, 5))
    x = np.asarray(fd.random.normal(fd.random.key(1), (2, 5)))
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert calls.count("call") == 8  # forward, dw, db, dx: each failed once, taken again
    np.testing.assert_allclose(y, x @ params["w"] + params["b"], rtol=1e-6)
    np.testing.assert_allclose(grads["w"], x.sum(0)[:, None], rtol=1e-6)
    np.testing.assert_allclose(grads["b"], [2.0])
    np.testing.assert_allclose(dx, np.repeat(params["w"].T, 2, axis=0), rtol=1e-6)
    assert np.array_equal(layer.apply(params, x), y)


def test_conv_products_survive_a_stray_flag(monkeypatch, conv_path) -> None:
    """Conv2D with one output channel (its products are gemvs): the forward and the
    weights' gradient, on both of its paths (im2col, one offset at a time)."""
    layer = L.Conv2D(1, 3, padding="SAME")
    _, params = layer.init(fd.random.key(0), (None, 5, 5, 2))
    x = np.asarray(fd.random.normal(fd.random.key(1), (2, 5, 5, 2)))
    want_y, want_pullback = layer.vjp(params, x)
    want = want_pullback(np.ones_like(want_y))
    calls: list[str] = []
    real = np.matmul

    def flagging(a: np.ndarray, b: np.ndarray, **kw: Any) -> np.ndarray:
        calls.append("call")
        np.float32(np.inf) * np.float32(0)
        return real(a, b, **kw)

    monkeypatch.setattr(np, "matmul", flagging)
    y, pullback = layer.vjp(params, x)
    got = pullback(np.ones_like(y))
    assert calls  # the products met the flag, and were taken again
    np.testing.assert_array_equal(y, want_y)
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


_FLAG_CASES = {
    "dense-1": (lambda: L.Dense(1), (2, 5)),
    "conv-1": (lambda: L.Conv2D(1, 3, padding="SAME"), (2, 5, 5, 2)),
    "conv-1x1-1ch": (lambda: L.Conv2D(3, 1), (1, 1, 1, 1)),
    "conv-grouped": (lambda: L.Conv2D(4, 3, groups=2), (2, 5, 5, 2)),
    "conv-depthwise": (lambda: L.Conv2D(2, 3, groups=2, padding="SAME"), (2, 5, 5, 2)),
    "conv1d-1": (lambda: L.Conv1D(1, 3), (2, 6, 2)),
    "convT-1": (lambda: L.ConvTranspose2D(1, 3, stride=2), (2, 3, 3, 1)),
    "convT-grouped": (lambda: L.ConvTranspose2D(2, 3, groups=2), (2, 3, 3, 4)),
    "convT-depthwise": (lambda: L.ConvTranspose2D(2, 3, groups=2), (2, 3, 3, 2)),
    "groupnorm": (lambda: L.GroupNorm(2), (2, 3, 3, 4)),
    "rnn-1": (lambda: L.SimpleRNN(1), (2, 4, 3)),
    "lstm": (lambda: L.LSTM(2), (1, 4, 3)),
    "gru": (lambda: L.GRU(1), (2, 3, 2)),
    "attention-one-query": (lambda: L.MultiHeadAttention(2), (1, 1, 2)),
    "bilinear-t": (lambda: L.Bilinear(1), ((None, 3), (None, 2))),
    "bilinear-z": (lambda: L.Bilinear(40), ((None, 2), (None, 1))),
    "upsample-bilinear": (lambda: L.Upsample(2, "bilinear"), (1, 2, 1, 1)),
    "adaptive-avg": (lambda: L.AdaptiveAvgPool2D((2, 1)), (1, 5, 3, 1)),
    "masked-mean": (lambda: L.MaskedMean("lengths"), None),
}


@pytest.mark.parametrize("case", list(_FLAG_CASES))
def test_layers_products_survive_a_stray_flag(monkeypatch, conv_path, case) -> None:
    """Every np.matmul and every np.dot (the modules' ``dot``) these layers call raises the
    invalid flag once (gemvs all: one output channel, hidden size 1, one example, grouped
    and depthwise kernels, GroupNorm's sums): forward and pullback come out the same, bit
    for bit, on both conv paths."""
    import importlib
    make, shape = _FLAG_CASES[case]
    layer = make()
    if shape is None:  # MaskedMean: (x, lengths)
        params: Any = ()
        x: Any = (np.asarray(fd.random.normal(fd.random.key(1), (2, 3, 2))), np.array([1, 3]))
    elif isinstance(shape[0], tuple):  # Bilinear: a pair
        _, params = layer.init(fd.random.key(0), shape)
        x = tuple(np.asarray(fd.random.normal(fd.random.key(i + 1), (2, *s[1:])))
                  for i, s in enumerate(shape))
    else:
        _, params = layer.init(fd.random.key(0), (None, *shape[1:]))
        x = np.asarray(fd.random.normal(fd.random.key(1), shape))
    want_y, want_pullback = layer.vjp(params, x)
    want = want_pullback(np.ones_like(want_y))
    calls: list[str] = []
    real_matmul = np.matmul

    def flagging(f: Any) -> Any:
        def g(a: np.ndarray, b: np.ndarray, **kw: Any) -> np.ndarray:
            calls.append("call")
            np.float32(np.inf) * np.float32(0)
            return f(a, b, **kw)
        return g

    monkeypatch.setattr(np, "matmul", flagging(real_matmul))
    for name in ("_sums", *_GUARDED):
        module = importlib.import_module(f"funcdl.layers.{name}")
        for attr, f in (("dot", np.dot), ("matmul", real_matmul)):
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, flagging(f))
    y, pullback = layer.vjp(params, x)
    got = pullback(np.ones_like(y))
    assert calls
    np.testing.assert_array_equal(y, want_y)
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


_GUARDED = ("_dense", "conv", "conv_transpose", "_grouped", "_transpose_groups", "groupnorm",
            "recurrent", "_recurrent", "attention", "bilinear", "upsample", "sequence",
            "_adaptive")
_PACKAGE = Path(_sums.__file__).parents[1]
_MODULES = sorted(f"{p.parent.name}.{p.stem}" for d in ("layers", "losses", "optim")
                  for p in (_PACKAGE / d).glob("*.py") if p.stem not in ("__init__", "_sums"))


@pytest.mark.parametrize("module", _MODULES)
def test_layer_loss_and_optimizer_modules_call_no_bare_product(module) -> None:
    """In every layer, loss and optimizer module every BLAS product goes through
    ``product``: no ``@``, and no call of ``np.matmul``, ``np.dot``,
    ``np.vdot``, ``np.inner``, ``np.tensordot``, ``dot`` or ``matmul`` but as product's
    argument (a function that makes one, such as _dpsgd's ``_contract``, is passed to it:
    its line says ``# (product's f)``). (Monkeypatching np.matmul cannot see an ``@``.) A
    new layer fails it until it does."""
    import ast
    import importlib
    path = importlib.import_module(f"funcdl.{module}").__file__
    assert path is not None
    with open(path, encoding="utf-8") as f:
        source = f.read()
    tree, lines = ast.parse(source), source.splitlines()
    bare = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            bare.append(f"line {node.lineno}: @")
        elif isinstance(node, ast.Call):
            fn = node.func
            name = (fn.id if isinstance(fn, ast.Name) else f"{ast.unparse(fn.value)}.{fn.attr}"
                    if isinstance(fn, ast.Attribute) else "")
            if name in ("dot", "matmul", "np.dot", "np.matmul", "np.vdot", "np.inner",
                        "np.tensordot") and "# (product's f)" not in lines[node.lineno - 1]:
                bare.append(f"line {node.lineno}: {name}(...)")
    assert not bare, f"funcdl/{module.replace('.', '/')}.py: {bare}"
