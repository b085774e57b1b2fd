"""check_layer's float32-against-float64 gradient check names the likely cause: a layer
drawing its noise in its input's dtype (funcdl.random's float64 draws are other numbers)
is told so and how to draw; a float32-only wrong factor in the vjp keeps its own hint."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from funcdl import random
from funcdl.layers import Layer
from funcdl.testing import check_layer


def _noisy(draw_in_float32: bool) -> Layer:
    """y = x + s·eps, eps ~ N(0, 1) of one row's shape from the key, shared by the rows (a
    weight sample, as Bayes by backprop's); ds = Σ dy·eps, dx = dy."""

    def init(key: Any, in_shape: Any) -> tuple[Any, Any]:
        del key
        return in_shape, {"s": np.ones((), np.float32)}

    def eps(x: Any, key: Any) -> Any:
        if draw_in_float32:
            return random.normal(key, x.shape[-1:]).astype(x.dtype)
        return random.normal(key, x.shape[-1:], x.dtype)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return x + params["s"] * eps(x, key)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        e = eps(x, key)
        return x + params["s"] * e, lambda dy: ({"s": np.sum(dy * e).astype(x.dtype)}, dy)

    return Layer(init, apply, vjp, name="Noisy")


def _scaled_wrong_in_float32() -> Layer:
    """y = a·x; the vjp's da is right in float64 and doubled in float32 alone."""

    def init(key: Any, in_shape: Any) -> tuple[Any, Any]:
        del key
        return in_shape, {"a": np.full(in_shape[-1], 1.5, np.float32)}

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return params["a"] * x

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        k = 2 if x.dtype == np.float32 else 1
        return params["a"] * x, lambda dy: ({"a": k * (dy * x).sum(axis=0)}, dy * params["a"])

    return Layer(init, apply, vjp, name="Scale")


def test_noise_drawn_in_the_dtype_is_named() -> None:
    with pytest.raises(AssertionError, match="float32 gradient") as info:
        check_layer(_noisy(draw_in_float32=False), (None, 4), key=random.key(0))
    text = str(info.value)
    assert "the forward differs too" in text
    assert "draw in float32 and cast" in text
    assert "wrong factor" not in text


def test_noise_drawn_in_float32_passes() -> None:
    check_layer(_noisy(draw_in_float32=True), (None, 4), key=random.key(0))


def test_a_float32_wrong_factor_keeps_its_hint() -> None:
    with pytest.raises(AssertionError, match="a float32-only code path with a wrong factor") \
            as info:
        check_layer(_scaled_wrong_in_float32(), (None, 3))
    assert "forward differs" not in str(info.value)
