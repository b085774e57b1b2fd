"""Conv and pool layers refusing bad inputs: wrong rank or channels at init and apply,
windows larger than the input, bad constructor arguments (ValueError) or argument types
(TypeError), and a cotangent of the wrong shape, each message naming the layer."""

from __future__ import annotations

import re

import numpy as np
import pytest

from funcdl.layers import Sequential
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.layers.pool import AvgPool2D, GlobalAvgPool, MaxPool2D

# ---------------------------------------------------------------------------- bad inputs

def test_conv_wrong_rank_at_init_and_apply(key):
    with pytest.raises(ValueError, match=r"Conv2D\(16, 3\).*\(N, H, W, C\).*\(None, 5\)"):
        Conv2D(16, 3).init(key, (None, 5))
    _, params = Conv2D(16, 3).init(key, (None, 5, 5, 3))
    with pytest.raises(ValueError, match=r"Conv2D\(16, 3\).*\(N, H, W, 3\).*\(4, 3\)"):
        Conv2D(16, 3).apply(params, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv1D\(4, 3\).*\(N, L, C\).*\(None, 5, 5, 2\)"):
        Conv1D(4, 3).init(key, (None, 5, 5, 2))
    with pytest.raises(ValueError, match=r"Conv2D\(16, 3\).*channel.*\(None, 5, 5, None\)"):
        Conv2D(16, 3).init(key, (None, 5, 5, None))


def test_conv_channel_mismatch_at_apply_names_both_shapes(key):
    model = Sequential(Conv2D(8, 3), Conv2D(16, 3))
    _, params = model.init(key, (None, 6, 6, 3))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Conv2D\(8, 3\).*\(N, H, W, 3\).*"
                                         r"\(2, 6, 6, 4\)"):
        model.apply(params, np.ones((2, 6, 6, 4), np.float32))
    _, p1 = Conv1D(4, 3).init(key, (None, 6, 2))
    with pytest.raises(ValueError, match=r"Conv1D\(4, 3\).*\(N, L, 2\).*\(2, 6, 3\)"):
        Conv1D(4, 3).apply(p1, np.ones((2, 6, 3)))
    with pytest.raises(ValueError, match=r"Conv2D\(8, 5\).*params\['w'\].*\(3, 3, 3, 8\)"):
        Conv2D(8, 5).apply(params[0], np.ones((2, 6, 6, 3)))


def test_window_larger_than_input(key):
    with pytest.raises(ValueError, match=r"Conv2D\(4, 5, padding='VALID'\).*"
                                         r"\(N, >=5, >=5, C\).*\(None, 3, 7, 1\)"):
        Conv2D(4, 5, padding="VALID").init(key, (None, 3, 7, 1))
    layer = Conv2D(4, 3, padding="VALID", dilation=2)
    _, params = layer.init(key, (None, 8, 8, 1))
    with pytest.raises(ValueError, match=r"Conv2D.*\(N, >=5, >=5, C\).*\(1, 4, 8, 1\)"):
        layer.apply(params, np.ones((1, 4, 8, 1)))
    with pytest.raises(ValueError,
                       match=r"Conv1D\(2, 4, padding=1\).*\(N, >=2, C\).*\(None, 1, 3\)"):
        Conv1D(2, 4, padding=1).init(key, (None, 1, 3))
    with pytest.raises(ValueError, match=r"MaxPool2D\(4\).*\(N, >=4, >=4, C\).*\(None, 3, 3, 1\)"):
        MaxPool2D(4).init(key, (None, 3, 3, 1))
    with pytest.raises(ValueError, match=r"AvgPool2D\(\(2, 4\)\).*\(2, 3, 3, 1\)"):
        AvgPool2D((2, 4)).apply((), np.ones((2, 3, 3, 1)))


def test_pool_and_global_pool_wrong_rank(key):
    with pytest.raises(ValueError, match=r"MaxPool2D\(2\).*\(N, H, W, C\).*\(None, 4, 4\)"):
        MaxPool2D(2).init(key, (None, 4, 4))
    with pytest.raises(ValueError, match=r"AvgPool2D\(2\).*\(N, H, W, C\).*\(4, 4\)"):
        AvgPool2D(2).apply((), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"GlobalAvgPool\(\).*\(N, \.\.\., C\).*\(3, 4\)"):
        GlobalAvgPool().apply((), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"GlobalAvgPool\(\).*\(None, 4\)"):
        GlobalAvgPool().init(key, (None, 4))


@pytest.mark.parametrize(("make", "match"), [
    (lambda: Conv2D(4, 3, padding="FULL"), r"Conv2D\(4, 3, padding='FULL'\).*'SAME', 'VALID'"),
    (lambda: Conv2D(4, 3, padding=-1), "padding"),
    (lambda: Conv1D(4, 3, padding=((1, 1), (1, 1))), r"Conv1D.*padding"),
    (lambda: MaxPool2D(2, padding="same-ish"), r"MaxPool2D.*padding"),
    (lambda: MaxPool2D(2, padding=2), r"MaxPool2D.*smaller than the window"),
    (lambda: AvgPool2D(3, padding=((0, 3), (0, 0))), r"AvgPool2D.*smaller than the window"),
    (lambda: Conv2D(4, 0), r"Conv2D\(4, 0\): kernel must be a positive int"),
    (lambda: Conv2D(4, (3, -1)), "kernel"),
    (lambda: Conv2D(4, 3, stride=0), r"Conv2D.*stride"),
    (lambda: Conv2D(4, 3, dilation=(1, 0)), "dilation"),
    (lambda: Conv2D(0, 3), "out"),
    (lambda: Conv1D(4, 0), r"Conv1D.*kernel"),
    (lambda: MaxPool2D(0), r"MaxPool2D\(0\).*window"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(("make", "match"), [
    (lambda: Conv2D(4, 2.5), r"Conv2D\(4, 2.5\): kernel must be a positive int or 2 positive"),
    (lambda: Conv2D(4, "3"), "kernel"),
    (lambda: Conv2D(2.0, 3), r"Conv2D\(2.0, 3\): out must be an int, got 2.0"),
    (lambda: Conv1D(4, 3, stride=(1, 1)), r"Conv1D.*stride must be a positive int, got \(1, 1\)"),
    (lambda: MaxPool2D((2, 2.0)), "window"),
])
def test_constructor_arguments_of_the_wrong_type(make, match):  # as torch: TypeError
    with pytest.raises(TypeError, match=match):
        make()


def test_pullback_refuses_wrong_cotangent_shape(key):
    _, params = Conv2D(2, 3).init(key, (None, 4, 4, 1))
    for layer, p in ((Conv2D(2, 3), params), (MaxPool2D(2), ()), (AvgPool2D(2), ()),
                     (GlobalAvgPool(), ())):
        y, pullback = layer.vjp(p, np.ones((2, 4, 4, 1), np.float32))
        with pytest.raises(ValueError, match=re.escape(layer.name) + rf".*{re.escape(str(y.shape))}"
                                             r".*\(2, 7\)"):
            pullback(np.ones((2, 7), np.float32))
