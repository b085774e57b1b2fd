"""What the depthwise convolution's cache-sized pieces are worth: each case's ``apply`` and
``vjp`` + pullback with ``_grouped._BLOCK`` as shipped (the output in pieces of about that
many bytes, every kernel offset's product and sum done on a piece before the next piece)
against one piece holding the whole batch (each step streams whole arrays, as before the
pieces). The two alternate in ~20 ms batches in one process (``profile_step.median_us``),
so the machine's swings hit both. Not a test.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.depthwise_ab [--rounds 3] [--block BYTES]

``--block`` times pieces of another size against the whole batch (the shipped size when
not given).
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import layers as L
from funcdl import random
from funcdl.layers import _grouped

from .profile_step import median_us

CASES: list[tuple[str, Callable[[], Any], tuple[int, ...]]] = [
    ("Conv2D(32, 3, p=1, groups=32)", lambda: L.Conv2D(32, 3, padding=1, groups=32),
     (32, 28, 28, 32)),
    ("Conv2D(64, 3, p=1, groups=32)", lambda: L.Conv2D(64, 3, padding=1, groups=32),
     (32, 28, 28, 32)),
    ("Conv2D(16, 3, p=1, groups=16)", lambda: L.Conv2D(16, 3, padding=1, groups=16),
     (128, 56, 56, 16)),
    ("Conv2D(32, 3, 2, p=1, groups=32)", lambda: L.Conv2D(32, 3, stride=2, padding=1,
                                                          groups=32), (8, 112, 112, 32)),
    ("Conv1D(64, 7, groups=64)", lambda: L.Conv1D(64, 7, groups=64), (32, 256, 64)),
    ("ConvTranspose2D(32, 3, 2, p=1, groups=32)",
     lambda: L.ConvTranspose2D(32, 3, stride=2, padding=1, groups=32), (16, 28, 28, 32)),
]


_WHOLE = 1 << 62  # one piece: the whole batch


def _with_block(block: int, f: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        saved, _grouped._BLOCK = _grouped._BLOCK, block
        try:
            return f()
        finally:
            _grouped._BLOCK = saved
    return run


def _steps(make: Callable[[], Any], shape: tuple[int, ...], block: int
           ) -> dict[str, Callable[[], Any]]:
    """The two timed steps of a case, checked to agree between pieces and whole arrays."""
    layer = make()
    _, params = layer.init(random.key(0), shape)
    x = random.normal(random.key(1), shape, np.float32)
    dy = random.normal(random.key(2), layer.apply(params, x).shape, np.float32)

    def both() -> Any:
        return layer.vjp(params, x)[1](dy)

    a, b = _with_block(block, both)(), _with_block(_WHOLE, both)()
    # the same numbers but for the order of additions (row pieces, the dw sums)
    assert np.allclose(a[1], b[1], rtol=1e-4, atol=1e-5), "pieces and whole: dx differs"
    return {"apply": lambda: layer.apply(params, x), "vjp + pullback": both}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.depthwise_ab")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--block", type=int, default=None,
                    help=f"bytes per piece (default {_grouped._BLOCK}, as shipped)")
    args = ap.parse_args(argv)
    block = _grouped._BLOCK if args.block is None else args.block
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"# float32, OPENBLAS_NUM_THREADS={threads}; pieces of {block} bytes "
          f"against the whole batch; µs per call, median of 15 alternating batches, "
          f"per round; ratio: whole / pieces, the median over the rounds")
    print("| layer | input | step | pieces µs | whole µs | whole / pieces |")
    print("|---|---|---|--:|--:|--:|")
    for name, make, shape in CASES:
        for step, f in _steps(make, shape, block).items():
            rounds = [median_us(_with_block(block, f), _with_block(_WHOLE, f),
                                steps=30) for _ in range(args.rounds)]
            pieces = statistics.median(r[0] for r in rounds)
            flat = statistics.median(r[1] for r in rounds)
            ratio = statistics.median(r[1] / r[0] for r in rounds)
            print(f"| {name} | {shape} | {step} | {pieces:,.0f} | {flat:,.0f} | "
                  f"{ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
