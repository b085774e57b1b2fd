"""A graph layer over a fixed graph (the batch axis is the nodes, Kipf & Welling's GCN
``Â x W``) cannot pass check_layer's row checks, with or without independent_rows=False:
both failures say so and point to check_vjp, which checks it."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl.layers import Layer
from funcdl.testing import check_layer, check_vjp

A = np.array([[0, 1, 0, 0], [1, 0, 1, 1], [0, 1, 0, 0], [0, 1, 0, 0]], float) + np.eye(4)  # a star
A_HAT = A / np.sqrt(A.sum(1)[:, None] * A.sum(1)[None, :])  # D^-½ (A + I) D^-½


def _gcn(out: int) -> Layer:
    def init(key, in_shape):
        return (*in_shape[:-1], out), {"w": fd.random.normal(key, (in_shape[-1], out))}

    def apply(params, x, *, key=None, train=False):
        return A_HAT.astype(x.dtype) @ x @ params["w"]

    def vjp(params, x, *, key=None, train=False):
        a = A_HAT.astype(x.dtype)
        return apply(params, x), lambda dy: ({"w": (a @ x).T @ dy}, a.T @ dy @ params["w"].T)

    return Layer(init, apply, vjp, name="GCN")


def test_check_layer_points_a_graph_layer_to_check_vjp():
    x = fd.random.normal(fd.random.key(1), (4, 3))
    with pytest.raises(ValueError) as e:  # a part of the batch is no graph of 4 nodes
        check_layer(_gcn(2), (None, 3), x=x)
    assert "graph layer" in str(e.value) and "check_vjp(layer, params, x)" in str(e.value)
    with pytest.raises(AssertionError) as e:  # the rows reversed: another graph
        check_layer(_gcn(2), (None, 3), x=x, independent_rows=False)
    assert "reversing the rows did not reverse" in str(e.value)
    assert "graph layer" in str(e.value) and "check_vjp(layer, params, x)" in str(e.value)
    _, params = _gcn(2).init(fd.random.key(0), (None, 3))
    check_vjp(_gcn(2), fd.tree.astype(params, np.float64), x.astype(np.float64))
