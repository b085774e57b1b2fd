"""Layers: immutable ``Layer(init, apply, vjp)`` values, and combinators built from them.

Modules by family: ``base`` (the Layer value and shared helpers), ``core`` (Dense, shape
layers, Dropout), ``activations``, ``combinators``.
"""

from funcdl.layers.activations import (
    ELU,
    GELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from funcdl.layers.base import Layer, LayerLike, Pullback, Shape
from funcdl.layers.combinators import Sequential
from funcdl.layers.core import Dense, Dropout, Flatten, Identity, Reshape

__all__ = [
    "ELU",
    "GELU",
    "Dense",
    "Dropout",
    "Flatten",
    "Identity",
    "Layer",
    "LayerLike",
    "LeakyReLU",
    "LogSoftmax",
    "Pullback",
    "ReLU",
    "Reshape",
    "Sequential",
    "Shape",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]
