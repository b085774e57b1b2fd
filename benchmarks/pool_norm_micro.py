"""Micro-benchmark of the pooling and normalisation layers (not a test).

For each layer on an (64, 28, 28, 16) NHWC activation (norms on (256, 512) too), float32,
µs, the best of several repeats after a warm-up: ``apply``; ``vjp(...)[0]`` alone (the
forward the vjp runs, which must cost about what apply costs); the pullback alone, given
one vjp; and vjp then pullback. glibc's malloc keeps freed memory (``funcdl.perf``), as in
``layer_micro.py``. When torch is importable the same ops are timed with one thread, on
torch's own layout (NCHW for pools and BatchNorm; LayerNorm on the same trailing axis):
forward under ``no_grad``, and forward + backward (input and parameter gradients).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/pool_norm_micro.py
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/pool_norm_micro.py  # torch 2.13.0
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

try:  # run as a script: this folder is on the path
    from layer_micro import IMAGE, ROWS, best_us
except ModuleNotFoundError:  # python -m benchmarks.pool_norm_micro
    from benchmarks.layer_micro import IMAGE, ROWS, best_us

from funcdl import layers as L
from funcdl import random
from funcdl.perf import retain_freed_memory

# (label, layer, input shape, train) for funcdl; the torch twin is built from the label.
CASES: list[tuple[str, Any, tuple[int, ...], bool]] = [
    ("MaxPool2D(2)", L.MaxPool2D(2), IMAGE, False),
    ("MaxPool2D(3, 2, SAME)", L.MaxPool2D(3, 2, "SAME"), IMAGE, False),
    ("AvgPool2D(2)", L.AvgPool2D(2), IMAGE, False),
    ("LayerNorm()", L.LayerNorm(), IMAGE, False),
    ("BatchNorm() train", L.BatchNorm(), IMAGE, True),
    ("BatchNorm() eval", L.BatchNorm(), IMAGE, False),
    ("LayerNorm()", L.LayerNorm(), ROWS, False),
    ("BatchNorm() train", L.BatchNorm(), ROWS, True),
    ("BatchNorm() eval", L.BatchNorm(), ROWS, False),
]


def bench_funcdl(label: str, layer: Any, shape: tuple[int, ...], train: bool) -> None:
    init = layer.init(random.key(0), (None, *shape[1:]))
    params = init[1]
    kw: dict[str, Any] = {"state": init[2], "train": train} if layer.stateful else {}
    x = random.normal(random.key(1), shape, np.float32)
    out = layer.vjp(params, x, **kw)
    pullback = out[1]
    dy = random.normal(random.key(2), out[0].shape, np.float32)

    apply = best_us(lambda: layer.apply(params, x, **kw))
    fwd = best_us(lambda: layer.vjp(params, x, **kw))
    back = best_us(lambda: pullback(dy))
    both = best_us(lambda: layer.vjp(params, x, **kw)[1](dy))
    print(f"  {label:<22} {shape!s:<18} apply {apply:7.0f}  vjp[0] {fwd:7.0f}  "
          f"pullback {back:7.0f}  vjp+pullback {both:7.0f}")


def bench_torch(torch: Any, label: str, shape: tuple[int, ...]) -> None:
    F = torch.nn.functional
    c = shape[-1]
    nchw = (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape
    weight, bias = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    mean, var = torch.zeros(c), torch.ones(c)
    ops: dict[str, tuple[tuple[int, ...], Callable[[Any], Any]]] = {
        "MaxPool2D(2)": (nchw, lambda x: F.max_pool2d(x, 2)),
        "MaxPool2D(3, 2, SAME)": (nchw, lambda x: F.max_pool2d(x, 3, 2, 1)),  # 28: pads 1 (0/1)
        "AvgPool2D(2)": (nchw, lambda x: F.avg_pool2d(x, 2)),
        "LayerNorm()": (shape, lambda x: F.layer_norm(x, (c,), weight, bias)),
        "BatchNorm() train": (nchw, lambda x: F.batch_norm(x, mean.clone(), var.clone(), weight,
                                                            bias, training=True)),
        "BatchNorm() eval": (nchw, lambda x: F.batch_norm(x, mean, var, weight, bias,
                                                           training=False)),
    }
    tshape, op = ops[label]
    x = torch.randn(*tshape)
    dy = torch.randn(*op(x).shape)

    def forward() -> Any:
        with torch.no_grad():
            return op(x)

    def both() -> Any:
        xg = x.detach().requires_grad_(True)
        weight.grad = bias.grad = None
        op(xg).backward(dy)
        return xg.grad

    print(f"  {'torch ' + label:<22} {tshape!s:<18} fwd   {best_us(forward):7.0f}  "
          f"{'':<33}fwd+bwd      {best_us(both):7.0f}")


def main() -> None:
    retain_freed_memory()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}; µs, float32"
          + (f"; torch {torch.__version__}, 1 thread" if torch else "; torch not importable"))
    for label, layer, shape, train in CASES:
        bench_funcdl(label, layer, shape, train)
        if torch is not None:
            bench_torch(torch, label, shape)


if __name__ == "__main__":
    main()
