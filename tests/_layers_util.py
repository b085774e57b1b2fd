"""Layers and their params built once at import for the catalogue of bad inputs
(test_bad_inputs.py and test_bad_inputs_combinators.py), which only read them, and the
pullback of a layer at given params and input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _catalogue import init

from funcdl import layers as L

BN = L.BatchNorm()
P_BN, S_BN = init(BN, (None, 4))
SEQ = L.Sequential(L.Dense(50), L.ReLU(), L.Dense(25), L.Tanh())
P_SEQ = init(SEQ, (None, 3))


def pullback(layer: L.Layer, params: Any, x: Any) -> Callable[..., Any]:
    return layer.vjp(params, x)[1]

