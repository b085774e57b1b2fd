"""Per-example gradients (``autodiff.per_example_value_and_grad``; ``jax.vmap(jax.grad)``,
Opacus' ``grad_sample``): while ``ON`` is set, a layer with params returns from its
pullback each example's share of its params' gradient, an axis of N in front,
instead of their sum over the batch. A layer reads the flag when its vjp runs. Combinators that only
route or add their children's gradients (Sequential, Parallel, Residual, Shared, Repeat,
Tied, Remat) need nothing; those that map them linearly (WeightNorm, SpectralNorm) map
each example's; one that sums slices of the batch (BatchThreads) refuses (``refuse``), as
BatchNorm in training does. A
layer without a rule returns the sum, which the caller finds by its shape (no leading N)
and names.

Each rule is the batch rule without its sum over examples: for ``y = x w`` on
``(N, ..., I)``, ``dw_n = x_nᵀ dy_n`` over the example's positions, one batched BLAS
product for the batch (``outer``); a bias's or a scale's, the sum over those positions
alone (``sums``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import _per_example_mode as per_example_mode
from funcdl import tree
from funcdl._blas import product
from funcdl.layers.base import Array

__all__ = ["ON", "outer", "refuse", "sums", "zeros"]

ON = per_example_mode.ON  # read by the layers when their vjp runs

LAYERS = ("Dense, Conv1D, Conv2D, Conv3D, Embedding, EmbeddingBag, Unembed, PositionalEmbedding, "
          "LayerNorm, RMSNorm, GroupNorm, InstanceNorm, BatchNorm at inference, PReLU, Bilinear, "
          "ConvTranspose1D, ConvTranspose2D, MultiHeadAttention (and the Transformer blocks), "
          "SimpleRNN, LSTM, GRU (and Bidirectional), Param, WeightNorm and SpectralNorm of those")


def refuse(name: str, why: str) -> None:
    """A ValueError when per-example gradients are asked of a layer that cannot give them."""
    if ON.get():
        raise ValueError(f"{name}: no per-example gradients: {why}; per-example rules exist "
                         f"for {LAYERS} (and the combinators that route their gradients); "
                         f"for another model loop over the rows, grad(params, x[i:i + 1], "
                         f"target[i:i + 1])")


def outer(x: Array, dy: Array) -> Array:
    """``dw_n = Σ_p x[n, p]ᵀ dy[n, p]``: (N, ..., I) and (N, ..., O) -> (N, I, O)."""
    n, p = x.shape[0], math.prod(x.shape[1:-1])  # (not -1: no positions, an empty x)
    x3 = x.reshape(n, p, x.shape[-1])
    d3 = dy.reshape(n, p, dy.shape[-1])
    if x3.shape[1] == 1:  # one position (an MLP): outer products, 2x a stack of rank-1
        # gemms on (64, 784) x (64, 512) float32 (benchmarks/per_example.py's mlp)
        each: Array = np.multiply(x3[:, 0, :, None], d3[:, 0, None, :])
        return each
    out: Array = product(np.matmul, x3.transpose(0, 2, 1), d3)
    return out


def sums(a: Array) -> Array:
    """``Σ_p a[n, p]`` over each example's positions: (N, ..., C) -> (N, C)."""
    out: Array = a.reshape(a.shape[0], math.prod(a.shape[1:-1]), a.shape[-1]).sum(axis=1)
    return out


def zeros(params: Any) -> Any:
    """The gradient of params no cotangent reached (a branch whose output is dropped):
    zeros, per example while the flag is set."""
    if not ON.get():
        return tree.zeros_like(params)
    n = per_example_mode.SIZE.get()
    return tree.map(lambda p: np.zeros((n, *np.shape(p)), np.asarray(p).dtype), params)
