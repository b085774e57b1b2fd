"""Micro-benchmark of the broadcasts behind the norms and the bias adds (not a test).

``funcdl.layers._sums.chan`` applies a per-channel vector along the short last axis of an
array by tiling it into rows of ~1024 values, and ``per_row`` expands a per-row statistic
to whole rows; below ``_sums.TILE_FROM`` elements or ``_sums.TILE_ROWS`` rows (or for one
channel) chan is NumPy's broadcast as it is. For float32 arrays of ``rows x C``, µs, best of
several repeats: NumPy's broadcast ``a + v`` (in place), ``chan`` and, as the floor,
``a + a`` (no broadcast, into a buffer); then a
per-row statistic against ``(rows, C)``: ``a - m[:, None]`` against ``a - per_row(m, C)``.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/broadcast_micro.py
"""

from __future__ import annotations

import numpy as np

try:  # run as a script: this folder is on the path
    from layer_micro import best_us
except ModuleNotFoundError:  # python -m benchmarks.broadcast_micro
    from benchmarks.layer_micro import best_us

from funcdl.layers._sums import TILE_FROM, TILE_ROWS, chan, per_row
from funcdl.perf import retain_freed_memory

CHANNELS = (1, 4, 10, 16, 25, 32, 64)
ROWS = (50, 1000, 1500, 2000, 2500, 3000, 4000, 16000, 50176)  # 50176 = 64·28·28: NHWC pixels


def line(rng: np.random.Generator, c: int, rows: int) -> str:
    a = rng.standard_normal((rows, c)).astype(np.float32)
    v = rng.standard_normal(c).astype(np.float32)
    m = rng.standard_normal(rows).astype(np.float32)
    n = max(5, 200_000 // a.size)
    plain = best_us(lambda: np.add(a, v, out=a), number=n)
    tiled = best_us(lambda: chan(np.add, a, v, out=a), number=n)
    twice = np.empty_like(a)
    floor = best_us(lambda: np.add(a, a, out=twice), number=n)
    rowwise = best_us(lambda: a - m[:, None], number=n)
    expanded = best_us(lambda: a - per_row(m, c), number=n)
    return (f"  {c:>3} {rows:>6} {a.size:>9} {plain:>9.2f} {tiled:>9.2f} {floor:>9.2f} "
            f"{rowwise:>15.2f} {expanded:>12.2f}")


def main() -> None:
    retain_freed_memory()
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}; µs, float32; chan tiles from {TILE_FROM} elements in "
          f"{TILE_ROWS} rows")
    print(f"  {'C':>3} {'rows':>6} {'elements':>9} {'a + v':>9} {'chan':>9} {'a + a':>9} "
          f"{'a - m[:, None]':>15} {'a - per_row':>12}")
    for c in CHANNELS:
        for rows in ROWS:
            print(line(rng, c, rows))


if __name__ == "__main__":
    main()
