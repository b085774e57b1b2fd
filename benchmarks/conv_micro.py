"""Micro-benchmark of funcdl's conv/pool layers (not a test).

The CNN conv16(3x3, SAME) - maxpool2 - conv32(3x3, SAME) - maxpool2 on a batch of 64
28x28x1 float32 images: forward (``apply``) and forward + backward (``vjp`` then the
pullback, parameters and input), in µs, best of several repeats; then the same per layer.
torch's equivalent is timed when it is importable (skipped otherwise).

    python benchmarks/conv_micro.py            # BLAS threads as the environment sets them
    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_micro.py
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

try:  # run as a script: this folder is on the path
    from layer_micro import best_us as _best_us
except ModuleNotFoundError:  # python -m benchmarks.conv_micro
    from benchmarks.layer_micro import best_us as _best_us

from funcdl import random
from funcdl.layers import Sequential
from funcdl.layers.conv import Conv2D
from funcdl.layers.pool import MaxPool2D

BATCH, SHAPE = 64, (28, 28, 1)


best_us = functools.partial(_best_us, number=10, repeat=7)


def forward_backward(layer: Any, params: Any, x: np.ndarray) -> Callable[[], Any]:
    def run() -> Any:
        y, pullback = layer.vjp(params, x)
        return pullback(np.ones_like(y))
    return run


def bench_funcdl() -> None:
    layers = [Conv2D(16, 3), MaxPool2D(2), Conv2D(32, 3), MaxPool2D(2)]
    model = Sequential(*layers)
    _, params = model.init(random.key(0), (None, *SHAPE))
    x = random.normal(random.key(1), (BATCH, *SHAPE), np.float32)
    y, pullback = model.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32 and y.shape == (BATCH, 7, 7, 32)
    assert all(g.dtype == np.float32 for p in grads if p for g in p.values())
    print(f"funcdl  {model.name}, batch {BATCH}x{SHAPE} float32")
    print(f"  forward           {best_us(lambda: model.apply(params, x)):9.0f} µs")
    print(f"  forward+backward  {best_us(forward_backward(model, params, x)):9.0f} µs")
    h = x
    for layer, p in zip(layers, params):
        fwd = best_us(lambda layer=layer, p=p, h=h: layer.apply(p, h))
        both = best_us(forward_backward(layer, p, h))
        print(f"    {layer.name:<14} {h.shape!s:<18} fwd {fwd:7.0f} µs   fwd+bwd {both:7.0f} µs")
        h = layer.apply(p, h)


def bench_torch() -> None:
    try:
        import torch
    except ImportError:
        print("torch: not importable, skipped")
        return
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.MaxPool2d(2))
    x = torch.randn(BATCH, SHAPE[2], SHAPE[0], SHAPE[1])  # NCHW

    def forward() -> Any:
        with torch.no_grad():
            return net(x)

    def both() -> Any:
        xg = x.clone().requires_grad_(True)  # dx too, as funcdl's pullback gives it
        net.zero_grad(set_to_none=True)
        net(xg).sum().backward()
        return xg.grad

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), same CNN, NCHW")
    print(f"  forward           {best_us(forward):9.0f} µs")
    print(f"  forward+backward  {best_us(both):9.0f} µs")


if __name__ == "__main__":
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, {os.cpu_count()} CPUs")
    bench_funcdl()
    bench_torch()
