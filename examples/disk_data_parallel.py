"""Train the disk classifier data-parallel: each global batch of 50 split over the MPI ranks.

    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py examples/disk_data_parallel.py
        [--epochs 200] [--seed 0] [--sharded]

(``-m mpi4py``: one rank's error aborts them all, rather than leaving the others waiting.)

The network, data, optimizer and keys are examples/disk.py's. ``parallel.batches`` gives
each rank its share of every global batch and ``parallel.data_parallel`` averages the
gradients over the ranks, so the run follows the single-process one up to float32
rounding. With ``--sharded``, ``parallel.sharded(adam)`` (ZeRO stage 1) replaces
``data_parallel`` and the whole update: each rank sums the gradients, keeps Adam's state
and updates the params for its half of the entries only; the params are the same up to
rounding, and the loss printed is rank 0's share's. Rank 0 prints the progress and the
final errors, and at the end every rank's time per step with the share of it spent in the
allreduce (or the sharded step). Without mpiexec it runs as one
process. The disk network is tiny (about 1,400 params, microseconds of compute per step),
so the allreduce's latency dominates here: see benchmarks/data_parallel.py for a model
large enough to gain from a second rank.
"""

from __future__ import annotations

import contextlib
import io
import os

# One BLAS thread per rank when a launcher started several ranks (the ranks fill the cores);
# OpenBLAS reads these when NumPy loads, so before the first import of NumPy.
if any(int(os.environ.get(v, "1") or 1) > 1 for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import functools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli
from disk import error, make_model


def train(epochs: int = 200, seed: int = 0, lr: float = 1e-2, batch_size: int = 50,
          log_every: int = 25, verbose: bool = True, sharded: bool = False) -> dict[str, Any]:
    """disk.py's training with the global batch shared by the ranks; returns params,
    errors, the loss curve and this rank's timings."""
    rank, size = parallel.rank_and_size()
    k_train, k_test, k_init, k_epochs = fd.random.split(fd.random.key(seed), 4)
    x_train, y_train = fd.data.disk(k_train, 1000)
    x_test, y_test = fd.data.disk(k_test, 1000)
    model = make_model()
    _, params = model.init(k_init, (None, 2))
    params = parallel.broadcast(params)  # equal already (same key); cheap insurance
    steps = epochs * math.ceil(len(x_train) / batch_size)
    opt = fd.optim.adam(lr=fd.optim.cosine_decay_schedule(lr, steps, alpha=0.01))
    zero = parallel.sharded(opt) if sharded else None
    opt_state = opt.init(params) if zero is None else zero.init(params)

    local = fd.value_and_grad(model, fd.losses.bce_with_logits)
    compute = 0.0  # seconds in the local forward and backward, to split off the allreduce

    @functools.wraps(local)  # keeps its wrt_input attribute, which data_parallel reads
    def timed(*args: Any, **kwargs: Any) -> Any:
        nonlocal compute
        t0 = time.perf_counter()
        out = local(*args, **kwargs)
        compute += time.perf_counter() - t0
        return out

    value_and_grad = parallel.data_parallel(timed)  # the one line that makes it parallel
    curve: list[float] = []
    in_grad = in_step = 0.0
    n_steps = 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = []
        for xb, yb in parallel.batches(fd.random.fold_in(k_epochs, epoch), x_train, y_train,
                                       batch_size=batch_size, rank=rank, size=size):
            t0 = time.perf_counter()
            if zero is not None:  # this rank's loss and grads; the sum over ranks is in zero.step
                loss, grads = timed(params, xb, yb)
                params, opt_state = zero.step(opt_state, grads, params, examples=len(xb))
                t1 = time.perf_counter()
            else:
                loss, grads = value_and_grad(params, xb, yb)  # the global batch's
                t1 = time.perf_counter()
                updates, opt_state = opt.update(opt_state, grads, params)
                params = fd.optim.apply_updates(params, updates)
            in_grad += t1 - t0
            in_step += time.perf_counter() - t0
            losses.append(loss)
        n_steps += len(losses)
        curve.append(float(np.mean(losses)))
        if verbose and rank == 0 and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:4d}  loss {curve[-1]:.4f}  "
                f"train error {error(model, params, x_train, y_train):6.2%}  "
                f"test error {error(model, params, x_test, y_test):6.2%}  "
                f"{time.perf_counter() - start:5.2f} s")
    steps = max(n_steps, 1)
    return {
        "model": model, "params": params, "curve": curve, "rank": rank, "size": size,
        "seconds": time.perf_counter() - start, "steps": n_steps,
        "step_ms": 1e3 * in_step / steps,
        # the data-parallel call minus the local forward and backward: the allreduce and its
        # packing, or with sharded=True the sharded step (with one process: nothing)
        "allreduce_ms": 1e3 * (in_grad - compute) / steps if size > 1 else 0.0,
        "train_error": error(model, params, x_train, y_train),
        "test_error": error(model, params, x_test, y_test),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 200, "the 1000 training points", "the data, the "
                             "initial params and the batches, the same on every rank")
    parser.add_argument("--sharded", action="store_true",
                        help="parallel.sharded(adam) instead of data_parallel")
    # Options are read before MPI starts, so that a bad one ends every rank before MPI_Init
    # (after it, MPICH left its shared-memory segment in /dev/shm); the launcher's rank in
    # the environment only chooses who prints the usage message: one rank, not every one.
    launcher_rank = next((os.environ[v] for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK",
                                                  "PMIX_RANK") if v in os.environ), "0")
    if launcher_rank.strip() in ("", "0"):
        args = parser.parse_args(argv)
    else:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv)
    result = train(args.epochs, args.seed, sharded=args.sharded)
    rank, size = result["rank"], result["size"]
    # Every rank's timings on every rank: a mean over ranks of rows only one rank filled in.
    table = np.zeros((size, 2))
    table[rank] = result["step_ms"], result["allreduce_ms"]
    table = parallel.pmean(table) * size
    if rank == 0:
        print(f"final: train error {result['train_error']:.2%}, test error "
              f"{result['test_error']:.2%}, {result['seconds']:.2f} s of training on "
              f"{size} rank{'s' * (size > 1)}, {result['steps']} steps of a global batch of 50")
        for r, (step_ms, allreduce_ms) in enumerate(table):
            where = "the sharded step" if args.sharded else "the allreduce"
            print(f"rank {r}: {step_ms:.3f} ms per step, {allreduce_ms / step_ms:.0%} of it "
                  f"in {where} ({allreduce_ms:.3f} ms)")
    return result


if __name__ == "__main__":
    main()
