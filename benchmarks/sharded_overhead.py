"""The fixed cost of one ``parallel.sharded`` step: its checks, agreement, fences and views,
with next to nothing to move (a toy tree of 6 leaves, 146 entries).

    .venv/bin/python benchmarks/sharded_overhead.py [--steps 300] [--ranks 2]

Each step first runs the mlp's forward and backward (784-512-512-10, 128 examples per rank,
one BLAS thread), as a training loop does, then a barrier, then the sharded step: "cold" is
that step, with the caches full of the GEMMs' data; "warm" is the same step again at once.
The cold figure is what a training step pays beyond moving and updating its entries; it is
why ``data_parallel`` is as fast as ``sharded`` on a small model (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _mpi import blas_env, mpiexec


def worker(steps: int) -> None:
    import numpy as np
    from mpi4py import MPI

    import funcdl as fd
    from funcdl import layers as L
    from funcdl import parallel
    from funcdl.perf import retain_freed_memory

    retain_freed_memory()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mlp = L.Sequential(L.Dense(512), L.ReLU(), L.Dense(512), L.ReLU(), L.Dense(10))
    _, params = mlp.init(fd.random.key(0), (None, 784))
    x = fd.random.normal(fd.random.key(1), (128 * size, 784))[128 * rank:128 * (rank + 1)]
    y = np.arange(128) % 10
    local = fd.value_and_grad(mlp, fd.losses.softmax_cross_entropy)
    toy = L.Sequential(L.Dense(8), L.ReLU(), L.Dense(8), L.ReLU(), L.Dense(2))
    _, tp = toy.init(fd.random.key(2), (None, 4))
    tg = fd.tree.map(lambda a: 0.1 * a, tp)
    opt = parallel.sharded(fd.optim.sgd(0.01))
    state = opt.init(tp)
    cold, warm = [], []
    for _ in range(steps):
        local(params, x, y)
        comm.Barrier()
        t0 = time.perf_counter()
        tp, state = opt.step(state, tg, tp)
        t1 = time.perf_counter()
        opt.step(state, tg, tp)
        t2 = time.perf_counter()
        cold.append(t1 - t0)
        warm.append(t2 - t1)
    skip = steps // 10
    mine = (statistics.median(cold[skip:]), statistics.median(warm[skip:]))
    every = comm.gather(mine, root=0)
    if rank == 0:
        for r, (c, w) in enumerate(every):
            print(f"rank {r}: sharded step on a 6-leaf toy tree, median of {steps - skip}: "
                  f"{1e3 * c:.3f} ms right after the mlp's GEMMs, {1e3 * w:.3f} ms warm")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.steps)
        return
    launcher = mpiexec()
    if launcher is None:
        raise SystemExit("mpiexec not found: pip install 'funcdl[mpi]'")
    print(f"# command: {Path(sys.executable).name} {' '.join(sys.argv)}", flush=True)
    subprocess.run([launcher, "-n", str(args.ranks), sys.executable, str(Path(__file__)),
                    "--worker", "--steps", str(args.steps)], env=blas_env(1), check=True)


if __name__ == "__main__":
    main()
