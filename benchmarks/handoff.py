"""What it costs a rank to overwrite shared memory the other rank has read, by how many
buffers the writes take in turn (the rule behind ``funcdl._reduce.generations``).

    .venv/bin/python benchmarks/handoff.py [--blocks 4] [--compute 8] [--entries 335000]

Two ranks (one BLAS thread each) share G buffers of ``--entries`` float32 (335,000: half
the mlp's gradients, what a sharded step hands over each time). Each step both ranks first
compute (``--compute`` products of 128x784 by 784x512 float32, as a forward and backward
would in between), then rank 0 writes buffer ``step % G``, a fence, and rank 1 reads it.
Printed: rank 0's median write time per block of 40 steps, for G = 1, 2, 4, 8, 16, the
blocks taking turns so that a change of the machine's state hits every G alike. On a
machine whose two cores do not share a cache (this VM at times, or two dies of one AMD
EPYC), a write to lines the other core still holds waits for each to be invalidated; with
enough buffers in turn, the other core's caches have dropped a buffer before it comes back.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _mpi import blas_env, mpiexec

TURNS = (1, 2, 4, 8, 16)


def worker(blocks: int, compute: int, n: int) -> None:
    import time

    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    most = max(TURNS)
    win = MPI.Win.Allocate_shared(4 * n * most if rank == 0 else 0, 4, comm=comm)
    whole = np.frombuffer(win.Shared_query(0)[0], np.float32, count=n * most)
    buffers = [whole[g * n:(g + 1) * n] for g in range(most)]
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    rng = np.random.default_rng(rank)
    x = rng.random((128, 784), dtype=np.float32)
    w = rng.random((784, 512), dtype=np.float32)
    medians: dict[int, list[float]] = {g: [] for g in TURNS}
    for _ in range(blocks):
        for turns in TURNS:
            times = []
            for step in range(40):
                for _ in range(compute):
                    x @ w
                buf = buffers[step % turns]
                comm.Barrier()
                t0 = time.perf_counter()
                if rank == 0:
                    np.multiply(src, 0.5, out=buf)
                times.append(time.perf_counter() - t0)
                win.Fence()
                if rank == 1:
                    np.add(src, buf, out=dst)
                win.Fence()
            medians[turns].append(1e3 * float(np.median(times[10:])))
    if rank == 0:
        print(f"# rank 0 overwriting {n:,} float32 ({4 * n / 1e6:.2f} MB) that rank 1 read, "
              f"{compute} GEMMs between steps; median ms per block of 40 steps")
        print("| buffers in turn | " + " | ".join(f"block {b + 1}" for b in range(blocks)) +
              " |")
        print("|--:|" + "--:|" * blocks)
        for turns, ms in medians.items():
            print(f"| {turns} | " + " | ".join(f"{m:.3f}" for m in ms) + " |")
    win.Free()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--compute", type=int, default=8)
    parser.add_argument("--entries", type=int, default=335_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.blocks, args.compute, args.entries)
        return
    launcher = mpiexec()
    if launcher is None:
        print("skipped: no mpiexec (pip install 'funcdl[mpi]')")
        return
    subprocess.run([launcher, "-n", "2", sys.executable, __file__, "--worker",
                    "--blocks", str(args.blocks), "--compute", str(args.compute),
                    "--entries", str(args.entries)], env=blas_env(1), check=True)


if __name__ == "__main__":
    main()
