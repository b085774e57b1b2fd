"""Data-parallel step time: 1 rank against 2 MPI ranks, BLAS pinned per rank (issue 8).

    .venv/bin/python benchmarks/data_parallel.py [--steps 40] [--rounds 3] [--models mlp,cnn]

Times one SGD step (forward, softmax cross-entropy, backward, the gradient allreduce,
update; float32) at a fixed global batch in five set-ups, each a fresh process (or two):

* 1 rank x 1 BLAS thread, and 2 ranks x 1 BLAS thread each: the fair comparison, the
  speed-up of data parallelism alone (target >= 1.7x for the mlp on this 2-core machine);
* 2 ranks x 1 BLAS thread with ``parallel.sharded(sgd)`` (ZeRO stage 1) in place of
  ``data_parallel`` and a whole update: each rank sums and updates half the entries;
* 1 rank x 2 BLAS threads: what a user of the machine would otherwise run;
* 2 ranks x 1 BLAS thread that exchange nothing: each computes its share and updates with
  its own gradients, a barrier per step: the ceiling of any data-parallel step on this
  machine (what two busy cores and half-size GEMMs leave), so the figures above can be
  read against it.

The peer, when this Python has PyTorch (``benchmarks/_ddp.py``): PyTorch's
``DistributedDataParallel`` over gloo on 2 processes x 1 thread, against PyTorch on 1
process x 1 thread and x 2 threads, in the same rounds (``--no-peers`` skips it).

The BLAS thread count is set in the environment (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS,
MKL_NUM_THREADS) of each child before it imports NumPy; threadpoolctl, when installed,
reports what the child actually got. The set-ups take turns ``--rounds`` times, so a slow
drift of the machine hits each alike, and each round reports the median step. "allreduce"
is the time inside the data-parallel call beyond the local forward and backward (the layout
check, packing and the sum over ranks, through shared memory on one machine, including any
wait for the slower rank); "bare pmean" is pmean alone after a barrier, on the same gradient
tree, warm in cache (inside a step the same work takes about twice as long); "handoff" is
the time a rank takes to overwrite as many float32 of shared memory as the model has
parameters after the other rank has read them, the floor of any sum over cores (each rank
hands over that much per step: half its packed gradients, half the result), 0.07 ms when
the cores share a cache well and over 1 ms when they do not. The share of
the cores that other processes used during the measurement is printed: on a shared
machine, rerun when it is not near 0%. On a virtual machine the host may also slow one
vCPU unseen; the 1 rank x 2 threads row is the control: when it is not clearly faster than
1 x 1, the second core was not really there, and neither is a fair 2-rank figure.

Models: mlp 784-512-512-10 ReLU at global batch 256 (669,706 params, 2.68 MB of float32
gradients); cnn 28x28x1 conv16-pool-conv32-pool-dense10 at global batch 64 (20,490 params).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _ddp
from _mpi import blas_env, mpiexec
from report import cpu_model

HERE = Path(__file__).resolve()

# (name, ranks, BLAS threads, mode: "mean" through data_parallel, "sharded", or "none")
SETUPS = [("1 rank x 1 thread", 1, 1, "mean"), ("2 ranks x 1 thread", 2, 1, "mean"),
          ("2 ranks x 1 thread, sharded", 2, 1, "sharded"), ("1 rank x 2 threads", 1, 2, "mean"),
          ("2 ranks x 1 thread, no exchange", 2, 1, "none")]
BATCH = {"mlp": 256, "cnn": 64}


# ---------------------------------------------------------------------------- child

def worker(model_name: str, steps: int, warmup: int, batch: int, retain: bool,
           mode: str = "mean") -> None:
    import numpy as np

    import funcdl as fd
    from funcdl import layers as L
    from funcdl import parallel

    if retain:  # as benchmarks/__main__ does for every implementation (see funcdl.perf)
        from funcdl.perf import retain_freed_memory
        retain_freed_memory()

    rank, size = parallel.rank_and_size()
    if model_name == "mlp":
        model = L.Sequential(L.Dense(512), L.ReLU(), L.Dense(512), L.ReLU(), L.Dense(10))
        x_shape: tuple[int, ...] = (784,)
    else:
        model = L.Sequential(L.Conv2D(16, 3, padding="SAME"), L.ReLU(), L.MaxPool2D(2),
                             L.Conv2D(32, 3, padding="SAME"), L.ReLU(), L.MaxPool2D(2),
                             L.Flatten(), L.Dense(10))
        x_shape = (28, 28, 1)
    _, params = model.init(fd.random.key(0), (None, *x_shape))
    x = fd.random.normal(fd.random.key(1), (batch, *x_shape))
    y = np.asarray(fd.random.permutation(fd.random.key(2), batch) % 10)
    xb, yb = next(parallel.batches(None, x, y, batch_size=batch, rank=rank, size=size,
                                   shuffle=False))
    local = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    compute = [0.0]

    def timed(*args: Any) -> Any:
        t0 = time.perf_counter()
        out = local(*args)
        compute[0] = time.perf_counter() - t0
        return out

    rows: list[tuple[float, float, float, float]] = []
    if mode == "sharded":  # sum, update and gather fused: all of it counts as "allreduce"
        zero = parallel.sharded(fd.optim.sgd(0.01))
        zstate = zero.init(params)
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            _, grads = local(params, xb, yb)
            t1 = time.perf_counter()
            params, zstate = zero.step(zstate, grads, params)
            t2 = time.perf_counter()
            if i >= warmup:
                rows.append((t2 - t0, t1 - t0, t2 - t1, 0.0))
    def lockstep(*args: Any) -> Any:  # no exchange: a barrier, counted as "allreduce"
        out = timed(*args)
        if size > 1:
            from mpi4py import MPI
            MPI.COMM_WORLD.Barrier()
        return out

    step = lockstep if mode == "none" else parallel.data_parallel(timed)
    opt = fd.optim.sgd(0.01)
    state = opt.init(params)
    for i in range(0 if mode == "sharded" else warmup + steps):
        t0 = time.perf_counter()
        _, grads = step(params, xb, yb)
        t1 = time.perf_counter()
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
        t2 = time.perf_counter()
        if i >= warmup:
            rows.append((t2 - t0, compute[0], t1 - t0 - compute[0], t2 - t1))
    bare = []
    if size > 1 and mode != "none":
        from mpi4py import MPI
        for _ in range(max(steps // 2, 5)):
            MPI.COMM_WORLD.Barrier()
            t0 = time.perf_counter()
            parallel.pmean(grads)
            bare.append(time.perf_counter() - t0)
    handoff = handoff_time(int(sum(np.size(g) for g in fd.tree.leaves(grads)))) \
        if size > 1 and mode != "none" else 0.0
    mine = {"step": statistics.median(r[0] for r in rows),
            "compute": statistics.median(r[1] for r in rows),
            "allreduce": statistics.median(r[2] for r in rows),
            "update": statistics.median(r[3] for r in rows),
            "bare": statistics.median(bare) if bare else 0.0, "handoff": handoff}
    every = [mine]
    if size > 1:
        from mpi4py import MPI
        every = MPI.COMM_WORLD.gather(mine, root=0)
    if rank == 0:
        blas = None
        try:
            from threadpoolctl import threadpool_info
            blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        except ImportError:
            pass
        n_params = sum(int(np.size(p)) for p in fd.tree.leaves(params))
        print(json.dumps({"ranks": every, "blas_threads": blas, "params": n_params}))


def handoff_time(n: int, repeats: int = 60) -> float:
    """Median seconds for this rank to overwrite n float32 of shared memory that the other
    ranks have just read: the cache-coherence cost that any sum over cores pays for each
    byte it hands to another core (a mean of n entries over 2 ranks hands over n per rank:
    half the packed gradients, half the result)."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    win = MPI.Win.Allocate_shared(4 * n, 4, comm=comm)
    slots = [np.frombuffer(win.Shared_query(r)[0], np.float32, count=n) for r in range(size)]
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.multiply(src, 0.5, out=slots[rank])
        times.append(time.perf_counter() - t0)
        win.Fence()
        np.copyto(dst, slots[(rank + 1) % size])
        win.Fence()
    win.Free()
    return statistics.median(times[repeats // 4:])


# ---------------------------------------------------------------------------- parent

def launch(ranks: int, threads: int, model: str, steps: int, warmup: int,
           batch: int, retain: bool, mode: str = "mean") -> dict[str, Any]:
    env = blas_env(threads)
    cmd = [sys.executable, str(HERE), "--worker", model, "--steps", str(steps),
           "--warmup", str(warmup), "--batch", str(batch),
           *([] if retain else ["--default-malloc"]), "--mode", mode]
    if ranks > 1:
        launcher = mpiexec()
        if launcher is None:
            raise SystemExit("mpiexec not found: pip install 'funcdl[mpi]'")
        cmd = [launcher, "-n", str(ranks), *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _busy() -> tuple[float, float, float] | None:
    """(wall s, busy CPU s of the machine, CPU s of this process and its finished children)
    from /proc/stat; None where there is none."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    t = os.times()
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def others_share(a: tuple[float, float, float] | None,
                 b: tuple[float, float, float] | None) -> str:
    """The share of all cores that other processes kept busy between two snapshots."""
    if a is None or b is None:
        return "unknown"
    other = max((b[1] - a[1]) - (b[2] - a[2]), 0.0)
    return f"{other / ((b[0] - a[0]) * (os.cpu_count() or 1)):.0%}"


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median over rounds of each per-round median (ms); the slowest rank sets the pace of
    a synchronous step, so each round counts its slowest rank."""
    return {key: 1e3 * statistics.median(max(r[key] for r in run["ranks"]) for run in runs)
            for key in ("step", "compute", "allreduce", "update", "bare", "handoff")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batch", type=int, default=None,
                        help="global batch for every model (default: mlp 256, cnn 64)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (default: every process calls "
                             "funcdl.perf.retain_freed_memory(), as python -m benchmarks)")
    parser.add_argument("--no-peers", action="store_true", help="skip PyTorch's DDP")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="mean", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.warmup, args.batch, not args.default_malloc,
               args.mode)
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# data-parallel step, funcdl, float32 SGD; {os.cpu_count()} cores of "
          f"{cpu_model()}, load average {load:.2f} at the start")
    print(f"# command: {Path(sys.executable).name} {' '.join(sys.argv)}")
    torch = None if args.no_peers else _ddp.available()
    print(f"# peer: PyTorch {torch} DDP (gloo)" if torch else
          "# peer: none (--no-peers)" if args.no_peers else
          "# peer: PyTorch DDP skipped, torch is not installed in this Python")
    peers = _ddp.SETUPS if torch else []
    for model in args.models.split(","):
        before = _busy()
        batch = args.batch or BATCH[model]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in SETUPS}
        peer_runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in peers}
        for _ in range(args.rounds):
            for name, ranks, threads, mode in SETUPS:
                runs[name].append(launch(ranks, threads, model, args.steps, args.warmup,
                                         batch, not args.default_malloc, mode))
            for name, ranks, threads in peers:
                peer_runs[name].append(_ddp.launch(ranks, threads, model, args.steps,
                                                   args.warmup, batch))
        first = runs[SETUPS[0][0]][0]
        print(f"\n## {model}: global batch {batch}, {first['params']:,} params "
              f"({4 * first['params'] / 1e6:.2f} MB of gradients); median ms per step, "
              f"median over {args.rounds} rounds of {args.steps} steps; other processes "
              f"kept {others_share(before, _busy())} of the cores busy meanwhile")
        print("| set-up | BLAS threads seen | step | local fwd+bwd | allreduce (with wait) | "
              "update + apply | bare pmean | handoff | speed-up vs 1x1 | speed-up vs 1x2 |")
        print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
        names = [name for name, *_ in SETUPS]
        stats = {name: summarise(runs[name]) for name in names}
        one1, two, two_sharded, one2, ceiling = (stats[n]["step"] for n in names)
        for name in names:
            st = stats[name]
            print(f"| {name} | {runs[name][0]['blas_threads']} | {st['step']:.2f} | "
                  f"{st['compute']:.2f} | {st['allreduce']:.2f} | {st['update']:.2f} | "
                  f"{st['bare']:.2f} | {st['handoff']:.2f} | "
                  f"{one1 / st['step']:.2f}x | {one2 / st['step']:.2f}x |")
        print(f"(sharded: parallel.sharded(sgd), its sum, update and gather in one call, all "
              f"under \"allreduce\"; no exchange: a barrier there)\n\n{model}: 2 ranks x 1 "
              f"thread are {one1 / two:.2f}x (data_parallel) and {one1 / two_sharded:.2f}x "
              f"(sharded) as fast as 1 rank x 1 thread (target 1.7x; {one1 / ceiling:.2f}x "
              f"exchanging nothing), and {one2 / two:.2f}x / {one2 / two_sharded:.2f}x as "
              f"fast as 1 rank x 2 threads; per-round step ms: " + "; ".join(
                  f"{n}: " + ", ".join(f"{1e3 * max(r['step'] for r in run['ranks']):.2f}"
                                       for run in runs[n]) for n in names))
        # Each round against the same round's 1 x 1, with the handoff the 2-rank runs met:
        # the VM's state can change between rounds, and it decides the 2-rank figures.
        def slowest(run: dict[str, Any], key: str) -> float:
            return max(r[key] for r in run["ranks"])

        print(f"{model}, each round against its own 1 rank x 1 thread: " + "; ".join(
            f"round {i + 1}: data_parallel {slowest(base, 'step') / slowest(dp, 'step'):.2f}x "
            f"(handoff {1e3 * slowest(dp, 'handoff'):.2f} ms), sharded "
            f"{slowest(base, 'step') / slowest(zr, 'step'):.2f}x (handoff "
            f"{1e3 * slowest(zr, 'handoff'):.2f} ms), no exchange "
            f"{slowest(base, 'step') / slowest(none, 'step'):.2f}x" for i, (base, dp, zr, none)
            in enumerate(zip(*(runs[n] for n in (names[0], names[1], names[2], names[4]))))))
        # A synchronous step goes at its slowest rank's pace; unequal cores show here.
        for name in names[1:3]:
            per_rank = runs[name]

            def ms(i: int, key: str, per_rank: list[dict[str, Any]] = per_rank) -> str:
                return f"{1e3 * statistics.median(r['ranks'][i][key] for r in per_rank):.2f}"

            print(f"{model}, {name}, each rank's medians over the rounds (ms): " + "; ".join(
                f"rank {i}: fwd+bwd {ms(i, 'compute')}, allreduce {ms(i, 'allreduce')}, "
                f"update {ms(i, 'update')}" for i in range(len(per_rank[0]["ranks"]))))
        if peers:
            report_peer(model, peer_runs, one1, two_sharded)


def report_peer(model: str, peer_runs: dict[str, list[dict[str, Any]]], one1: float,
                sharded: float) -> None:
    """PyTorch's rows, and its DDP speed-up beside funcdl's (step ms are medians over the
    rounds of each round's slowest rank, as funcdl's)."""
    step = {name: 1e3 * statistics.median(r["step"] for r in runs)
            for name, runs in peer_runs.items()}
    base, ddp, two_threads = (step[name] for name, *_ in _ddp.SETUPS)
    print("\n| peer set-up | torch threads seen | step | speed-up vs its 1x1 | funcdl 2 ranks, "
          "sharded, vs it |")
    print("|---|---|--:|--:|--:|")
    for name, ms in step.items():
        print(f"| {name} | {peer_runs[name][0]['threads']} | {ms:.2f} | {base / ms:.2f}x | "
              f"{ms / sharded:.2f}x |")
    print(f"{model}: PyTorch's DDP on 2 processes x 1 thread is {base / ddp:.2f}x as fast as "
          f"PyTorch on 1 x 1 (funcdl's sharded step: {one1 / sharded:.2f}x its own 1 x 1); "
          f"funcdl's sharded step is {ddp / sharded:.2f}x as fast as DDP's and "
          f"{two_threads / sharded:.2f}x as fast as PyTorch on 1 process x 2 threads; "
          f"per-round PyTorch step ms: " + "; ".join(
              f"{name}: " + ", ".join(f"{1e3 * r['step']:.2f}" for r in runs)
              for name, runs in peer_runs.items()))


if __name__ == "__main__":
    main()
