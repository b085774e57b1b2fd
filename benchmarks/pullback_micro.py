"""The figures quoted in funcdl's comments for the pullbacks, sums and optimizer chains
reworked on 2026-12-06, measured with funcdl's public API only, so that the same command
run against an export of an earlier commit gives the "before" column (not a test):

    /tmp/benchenv/bin/python benchmarks/pullback_micro.py              # this tree
    mkdir /tmp/old && git archive 6153998 | tar -x -C /tmp/old && \\
        PYTHONPATH=/tmp/old /tmp/benchenv/bin/python benchmarks/pullback_micro.py

One BLAS thread; times are the minimum over ``--repeats`` calls, in ms; memory by
tracemalloc (deterministic); accuracy as the largest error relative to the largest entry
of a float64 reference computed from the same float32 numbers.
"""

from __future__ import annotations

import os

os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import layers as L
from funcdl import optim

KEY = fd.random.key(0)


def best_ms(f: Callable[[], Any], repeats: int) -> float:
    f()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def held_and_peak(f: Callable[[], Any]) -> tuple[float, float]:
    """MiB still allocated once ``f()`` returned (its result kept) and at its peak."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        kept = f()
        now, peak = tracemalloc.get_traced_memory()
        del kept
        return (now - base) / 2**20, (peak - base) / 2**20
    finally:
        tracemalloc.stop()


def rel(a: Any, ref: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


def times(repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((64, 28, 28, 32)).astype(np.float32)
    out = []
    pool = L.AdaptiveMaxPool2D(7)
    dy7 = rng.standard_normal((64, 7, 7, 32)).astype(np.float32)
    out.append(("AdaptiveMaxPool2D(7) on (64, 28, 28, 32): vjp + pullback",
                best_ms(lambda: pool.vjp((), img)[1](dy7), repeats)))
    gelu = L.GELU()
    pull = gelu.vjp((), img)[1]
    out.append(("GELU() on (64, 28, 28, 32): pullback", best_ms(lambda: pull(img), repeats)))
    emb = L.Embedding(50000, 256)
    _, p = emb.init(KEY, (None, 128))
    ids = rng.integers(0, 50000, (64, 128))
    pull = emb.vjp(p, ids)[1]
    dy = rng.standard_normal((64, 128, 256)).astype(np.float32)
    out.append(("Embedding(50000, 256), ids (64, 128): pullback",
                best_ms(lambda: pull(dy), repeats)))
    sm = L.Softmax()
    att = rng.standard_normal((16, 8, 128, 128)).astype(np.float32)
    out.append(("Softmax() on (16, 8, 128, 128): apply", best_ms(lambda: sm.apply((), att),
                                                                repeats)))
    return out


def memory() -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(1)
    out = []
    mlp = L.Sequential(*[m for _ in range(4) for m in (L.Dense(512), L.ReLU())])
    _, p = mlp.init(KEY, (None, 512))
    x = rng.standard_normal((256, 512)).astype(np.float32)
    out.append(("4 x (Dense(512) + ReLU), x (256, 512): vjp", *held_and_peak(
        lambda: mlp.vjp(p, x))))
    cnn = L.Sequential(L.Conv2D(64, 3, padding="SAME"), L.ReLU(),
                       L.Conv2D(64, 3, padding="SAME"), L.ReLU())
    _, p2 = cnn.init(KEY, (None, 32, 32, 64))
    x2 = rng.standard_normal((32, 32, 32, 64)).astype(np.float32)
    out.append(("2 x (Conv2D(64, 3, SAME) + ReLU), x (32, 32, 32, 64): vjp",
                *held_and_peak(lambda: cnn.vjp(p2, x2))))
    params = [np.ones((1000, 1000), np.float32)]
    grads = [np.full((1000, 1000), 0.5, np.float32)]
    opt = optim.adam(1e-3)
    st = opt.init(params)
    out.append(("adam(1e-3) on one (1000, 1000) float32 leaf: update",
                *held_and_peak(lambda: opt.update(st, grads, params))))
    return out


def accuracy() -> list[tuple[str, float]]:
    rng = np.random.default_rng(2)
    dense = L.Dense(16)
    _, p = dense.init(KEY, (None, 8))
    x = rng.standard_normal((65536, 8)).astype(np.float32)
    dy = (0.5 + rng.standard_normal((65536, 16))).astype(np.float32)
    db = dense.vjp(p, x)[1](dy)[0]["b"]
    img = (np.maximum(rng.standard_normal((2, 256, 256, 16)), 0) + 0.1).astype(np.float32)
    y = L.GlobalAvgPool().apply((), img)
    return [("Dense(16) bias gradient over 65,536 rows", rel(db, dy.astype(np.float64)
                                                            .sum(axis=0))),
            ("GlobalAvgPool over 256 x 256 pixels", rel(y, img.astype(np.float64)
                                                        .mean(axis=(1, 2))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per case")
    args = ap.parse_args()
    print(f"# funcdl at {os.path.dirname(fd.__file__)}\n")
    print("| time (one thread, min of calls) | ms |\n|---|--:|")
    for name, ms in times(args.repeats):
        print(f"| {name} | {ms:.2f} |")
    print("\n| memory (tracemalloc) | held MiB | peak MiB |\n|---|--:|--:|")
    for name, held, peak in memory():
        print(f"| {name} | {held:.1f} | {peak:.1f} |")
    print("\n| float32 accuracy | relative error |\n|---|--:|")
    for name, err in accuracy():
        print(f"| {name} | {err:.1e} |")


if __name__ == "__main__":
    main()
