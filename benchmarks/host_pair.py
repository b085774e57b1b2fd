"""What this host gives two processes: the mlp's GEMMs alone, 1 process against 2 (issue 8).

    python benchmarks/host_pair.py [--rounds 5] [--steps 40]

The data-parallel target (2 ranks >= 1.7x as fast as 1 on the mlp at global batch 256) is
bounded by what the machine gives two busy cores before any funcdl code runs. This measures
that bound with NumPy and BLAS only: the seven GEMMs of one step of the 784-512-512-10 mlp
(three forward, four backward: dW3, dh2, dW2, dh1, dW1, no dx) on float32, BLAS pinned to
one thread per process, no funcdl, no exchange, no update. One process runs them at batch
256; then two processes each at batch 128, started together and timed over the same
seconds; the set-ups take turns ``--rounds`` times. A pair's round counts its slower
process, as a data-parallel step waits for its slower rank. If the pair's speed-up is well
under 2x here, the host (a shared L3, memory bandwidth, another tenant on the sibling
hyperthread, a clock that drops when both cores are busy) takes the difference, and no
data-parallel code can win it back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _mpi import blas_env
from report import cpu_model

_CHILD = r"""
import json, sys, time
import numpy as np
batch, steps, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = np.random.default_rng(0)
f = lambda *s: rng.standard_normal(s).astype(np.float32)
x, w1, w2, w3, d = f(batch, 784), f(784, 512), f(512, 512), f(512, 10), f(batch, 10)
def step():
    h1 = x @ w1; h2 = h1 @ w2; h2 @ w3
    h2.T @ d; dh2 = d @ w3.T; h1.T @ dh2; dh1 = dh2 @ w2.T; x.T @ dh1
for _ in range(10):
    step()
while time.time() < start:
    time.sleep(0.001)
t = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps((time.perf_counter() - t) / steps * 1e3))
"""


def _run(batch: int, procs: int, steps: int) -> float:
    """The slower process's ms per step over ``steps`` steps, ``procs`` processes at once."""
    start = time.time() + 1.0  # every child warm and waiting before any starts timing
    argv = [sys.executable, "-c", _CHILD, str(batch), str(steps), str(start)]
    kids = [subprocess.Popen(argv, env=blas_env(1), stdout=subprocess.PIPE, text=True)
            for _ in range(procs)]
    outs = [json.loads(k.communicate()[0]) for k in kids]
    return max(outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()
    solo, pair = [], []
    for _ in range(a.rounds):
        solo.append(_run(256, 1, a.steps))
        pair.append(_run(128, 2, a.steps))
    ratio = [s / p for s, p in zip(solo, pair)]
    print(f"# the mlp's GEMMs alone (NumPy, 1 BLAS thread per process); {cpu_model()}")
    print(f"# command: python benchmarks/{Path(__file__).name} --rounds {a.rounds} "
          f"--steps {a.steps}")
    print("| set-up | median ms per step | per round |")
    print("|---|--:|---|")
    print(f"| 1 process, batch 256 | {statistics.median(solo):.2f} | "
          f"{', '.join(f'{v:.2f}' for v in solo)} |")
    print(f"| 2 processes, batch 128 each (the slower) | {statistics.median(pair):.2f} | "
          f"{', '.join(f'{v:.2f}' for v in pair)} |")
    print(f"\nspeed-up of 2 processes, each round against its own single process: "
          f"{', '.join(f'{r:.2f}x' for r in ratio)}; median {statistics.median(ratio):.2f}x "
          f"(the ceiling of a 2-rank data-parallel mlp step on this host)")


if __name__ == "__main__":
    main()
