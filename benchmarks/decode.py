"""Incremental decoding (``layers.decode_step``, keys and values cached) against re-running
the whole prefix through ``model.apply`` at every step, greedy, for a tiny_lm-sized causal
transformer (Embedding, a learned position table, 2 pre-norm TransformerEncoderLayer(causal)
blocks, LayerNorm, Dense; float32). The two decodes alternate, one of each per round, so a
neighbour's burst on this shared machine hits both; the table gives each round and the
medians. Not a test:

    python -m benchmarks.decode [--lengths 32 128] [--d 32] [--batch 64] [--rounds 5]

One BLAS thread (set before NumPy loads).
"""

from __future__ import annotations

import os

os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import layers as L

from .report import _blas, _git, cpu_model

VOCAB = 5  # tiny_lm's ";([)]"


def model_of(d: int, heads: int, blocks: int, max_len: int) -> Any:
    return L.Sequential(
        L.Embedding(VOCAB, d), L.PositionalEmbedding(max_len),
        *[L.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, causal=True,
                                    norm_first=True) for _ in range(blocks)],
        L.LayerNorm(), L.Dense(VOCAB))


def cached(model: Any, params: Any, start: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` greedy tokens after ``start`` (N, 1), one position per call, cached."""
    seq = [start]
    cache = L.decode_init(model, params, start, steps)
    for _ in range(steps):
        logits, cache = L.decode_step(model, params, cache, seq[-1])
        seq.append(logits.argmax(-1))
    return np.concatenate(seq, axis=1)


def rerun(model: Any, params: Any, start: np.ndarray, steps: int) -> np.ndarray:
    """The same tokens by re-running the prefix ``x[:, :t+1]`` at every step."""
    seq = start
    for _ in range(steps):
        logits = model.apply(params, seq)[:, -1:]
        seq = np.concatenate([seq, logits.argmax(-1)], axis=1)
    return seq


def seconds(f: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.decode")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--d", type=int, default=32, help="d_model (tiny_lm's 32)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"# {cpu_model()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} "
          f"at the start), Python "
          f"{platform.python_version()}, NumPy {np.__version__} ({_blas()}), one BLAS "
          f"thread, funcdl git {_git()}")
    print(f"# d_model {args.d}, {args.heads} heads, {args.blocks} blocks, vocab {VOCAB}, "
          f"batch {args.batch}, float32, greedy; seconds per whole decode")
    print("| tokens | round | cached s | re-run s | re-run / cached |")
    print("|--:|--:|--:|--:|--:|")
    for steps in args.lengths:
        model = model_of(args.d, args.heads, args.blocks, steps + 1)
        _, params = model.init(fd.random.key(0), (None, steps + 1))
        start = (np.arange(args.batch) % VOCAB)[:, None]
        a, b = cached(model, params, start, steps), rerun(model, params, start, steps)
        same = float(np.mean(a == b))  # float32 rounding may flip a near-tie's argmax
        ta, tb = [], []
        for r in range(args.rounds):
            ta.append(seconds(cached, model, params, start, steps))
            tb.append(seconds(rerun, model, params, start, steps))
            print(f"| {steps} | {r + 1} | {ta[-1]:.4f} | {tb[-1]:.4f} | "
                  f"{tb[-1] / ta[-1]:.2f}x |")
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"| {steps} | median | {ma:.4f} | {mb:.4f} | {mb / ma:.2f}x |")
        print(f"|  | tokens equal |  |  | {same:.1%} |")


if __name__ == "__main__":
    main()
