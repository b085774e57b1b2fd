"""``layers.segment_sum`` (one flat ``np.add.at``) against a user's first try, ``np.add.at``
over the rows of a 2-D target, and torch's ``index_add_`` when torch is installed; float32
messages summed into their destination nodes (not a test)::

    /tmp/benchenv/bin/python benchmarks/segment_sum.py

One BLAS and torch thread; the three alternate call by call, ``--repeats`` rounds, each
time the minimum, in ms (the machine may be shared: alternating lets its noise fall on all
three alike).
"""

from __future__ import annotations

import os

os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl.layers import segment_sum

# (nodes, edges, features): Cora's size, then two larger random graphs
SHAPES = ((2_708, 10_556, 16), (10_000, 100_000, 64), (100_000, 1_000_000, 16))


def _contenders(n: int, dst: np.ndarray, msgs: np.ndarray) -> dict[str, Callable[[], Any]]:
    def rows() -> np.ndarray:
        out = np.zeros((n, msgs.shape[1]), msgs.dtype)
        np.add.at(out, dst, msgs)
        return out

    fns: dict[str, Callable[[], Any]] = {"np.add.at rows": rows,
                                         "segment_sum": lambda: segment_sum(msgs, dst, n)}
    try:
        import torch
    except ImportError:
        return fns
    torch.set_num_threads(1)
    d, m = torch.from_numpy(dst), torch.from_numpy(msgs)
    fns["torch index_add_"] = lambda: torch.zeros(n, msgs.shape[1]).index_add_(0, d, m)
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n, e, f in SHAPES:
        dst = rng.integers(0, n, e)
        msgs = rng.normal(size=(e, f)).astype(np.float32)
        fns = _contenders(n, dst, msgs)
        ref = fns["np.add.at rows"]()
        for name, fn in fns.items():
            np.testing.assert_allclose(np.asarray(fn()), ref, rtol=1e-4, atol=1e-4,
                                       err_msg=name)
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(args.repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
        print(f"nodes {n}, edges {e}, features {f}: "
              + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in best.items()))


if __name__ == "__main__":
    main()
