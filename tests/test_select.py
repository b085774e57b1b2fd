"""Select and FanOut on a tuple: the residual of a cross-attention, q + attention(q, kv),
which no combinator could write before (Residual needs its branch's output shape equal to
its input's, and FanOut took one array)."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_layer, check_vjp

R = np.random.default_rng(0)
Q, KV = R.normal(size=(2, 3, 4)), R.normal(size=(2, 5, 4))
SHAPES = ((None, 3, 4), (None, 5, 4))


def test_select_takes_one_entry_and_sends_its_cotangent_back_alone():
    for i, want in ((0, Q), (1, KV), (-1, KV)):
        y, pullback = L.Select(i).vjp((), (Q, KV))
        assert y is want
        dy = R.normal(size=want.shape)
        _, dx = pullback(dy)
        assert isinstance(dx, tuple) and len(dx) == 2
        assert dx[i % 2] is dy and dx[1 - i % 2] is None
    assert L.Select(1).init(None, SHAPES) == (SHAPES[1], ())
    _, dx = L.Select(0).vjp((), [Q, KV])[1](Q)  # a list in, a list back
    assert isinstance(dx, list)


def test_fanout_copies_a_tuple_whole_and_sums_its_cotangents_entry_by_entry():
    out, _ = L.FanOut(2).init(None, SHAPES)
    assert out == (SHAPES, SHAPES)
    ys, pullback = L.FanOut(2).vjp((), (Q, KV))
    assert len(ys) == 2 and all(a is b for y in ys for a, b in zip(y, (Q, KV), strict=True))
    dq1, dq2, dkv = R.normal(size=Q.shape), R.normal(size=Q.shape), R.normal(size=KV.shape)
    _, (dq, dk) = pullback(((dq1, None), (dq2, dkv)))
    np.testing.assert_array_equal(dq, dq1 + dq2)
    np.testing.assert_array_equal(dk, dkv)
    _, (dq, dk) = pullback((None, (dq2, None)))  # nothing back for kv at all: None
    assert dk is None and dq is dq2


def _cross_residual():
    return L.Sequential(L.FanOut(2), L.Parallel(L.Select(0), L.MultiHeadAttention(2)),
                        L.FanInSum())


def test_cross_attention_residual_is_q_plus_attention_by_value_and_gradient():
    model = _cross_residual()
    out, params = model.init(fd.random.key(0), SHAPES)
    assert out == (None, 3, 4)
    mha = L.MultiHeadAttention(2)
    p_mha = params[1][1]
    y = model.apply(params, (Q, KV))
    np.testing.assert_allclose(y, Q + mha.apply(p_mha, (Q, KV)), rtol=1e-13)
    # dq = dy + attention's dq (the residual's identity path adds dy exactly once), dkv its own
    dy = R.normal(size=Q.shape)
    (_, (dq, dkv)) = model.vjp(params, (Q, KV))[1](dy)
    _, (aq, akv) = mha.vjp(p_mha, (Q, KV))[1](dy)
    np.testing.assert_allclose(dq, dy + aq, rtol=1e-13)
    np.testing.assert_allclose(dkv, akv, rtol=1e-13)
    check_vjp(model, params, (Q, KV))
    check_layer(model, SHAPES)


@pytest.mark.parametrize("call, error, match", [
    (lambda: L.Select(2).init(None, SHAPES), ValueError,
     r"^Select\(2\): index 2 is out of range for a tuple of 2 entries"),
    (lambda: L.Select(0).apply((), Q), ValueError, r"^Select\(0\): expected a non-empty tuple"),
    (lambda: L.Select(1.5), TypeError, r"Select: index must be an int"),
    (lambda: L.Residual(L.MultiHeadAttention(2)).init(fd.random.key(0), SHAPES), ValueError,
     r"a residual needs its output shape equal to its input shape; for x \+ f\(x, \.\.\.\) on "
     r"a tuple, Sequential\(FanOut\(2\), Parallel\(Select\(0\), f\), FanInSum\(\)\)"),
    (lambda: L.Dense(3).apply(L.Dense(3).init(fd.random.key(0), (None, 4))[1], (Q, KV)),
     TypeError, r"or one taken by Select\(i\)"),
    (lambda: L.FanOut(2).vjp((), (Q, KV))[1]((Q, Q)), ValueError,
     r"^FanOut\(2\): pullback expected each branch's cotangent as a tuple of 2 entries"),
])
def test_bad_uses_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
