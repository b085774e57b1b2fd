"""Micro-benchmark of single layers on one activation-sized batch (not a test).

For each layer: ``apply``, and ``vjp`` then the pullback (params and input), float32, µs,
the best of several repeats after a warm-up; glibc's malloc keeps freed memory (as
``python -m benchmarks`` does), so fresh large arrays cost no page faults. The conv rows
time both ways a convolution runs (``funcdl.layers.conv._COLS_BYTES``): one product of the
im2col buffer, and one kernel offset at a time.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/layer_micro.py
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import layers as L
from funcdl import random
from funcdl.layers import conv
from funcdl.perf import retain_freed_memory

IMAGE = (64, 28, 28, 16)  # an NHWC activation of 800k float32
ROWS = (256, 512)


def best_us(f: Callable[[], Any], number: int = 5, repeat: int = 9) -> float:
    """Best µs per call of ``f`` over ``repeat`` runs of ``number`` calls, after a warm-up
    (the other micro-benchmarks here time with it too)."""
    f()  # warm up
    return min(timeit.repeat(f, number=number, repeat=repeat)) / number * 1e6


def row(layer: Any, shape: tuple[int, ...], label: str = "") -> None:
    init = layer.init(random.key(0), (None, *shape[1:]))
    params, state = init[1], (init[2] if layer.stateful else None)
    kw: dict[str, Any] = {"state": state, "train": True} if layer.stateful else {}
    x = random.normal(random.key(1), shape, np.float32)
    out = layer.vjp(params, x, **kw)
    dy = np.ones_like(out[0])

    def both() -> Any:
        return layer.vjp(params, x, **kw)[1](dy)

    fwd = best_us(lambda: layer.apply(params, x, **kw))
    print(f"  {label or layer.name:<30} {shape!s:<18} apply {fwd:8.0f}   vjp + pullback "
          f"{best_us(both):8.0f}")


def main() -> None:
    retain_freed_memory()
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}; µs, float32")
    for layer in (L.ReLU(), L.LeakyReLU(), L.LeakyReLU(2.0), L.ELU(), L.Softplus(), L.GELU(),
                  L.SiLU(), L.Sigmoid(), L.Tanh(), L.GlobalAvgPool(), L.BatchNorm(),
                  L.LayerNorm()):
        row(layer, IMAGE)
    for layer in (L.Softmax(), L.LogSoftmax(), L.BatchNorm(), L.LayerNorm()):
        row(layer, ROWS)
    default = conv._COLS_BYTES
    for shape, out in ((IMAGE, 16), ((128, 14, 14, 32), 32), ((64, 14, 14, 16), 32),
                       ((64, 7, 7, 32), 64)):
        for how, limit in (("im2col", 1 << 62), ("by offset", 0)):
            conv._COLS_BYTES = limit
            row(L.Conv2D(out, 3), shape, f"Conv2D({out}, 3), {how}")
        conv._COLS_BYTES = default


if __name__ == "__main__":
    main()
