"""The peer of ``benchmarks/data_parallel.py``: PyTorch's own data parallelism,
``DistributedDataParallel`` over the gloo backend (its CPU backend), on the same models,
global batches and SGD step, in the same rounds as funcdl's set-ups.

Each process of a set-up is started here with ``RANK``/``WORLD_SIZE`` and a free loopback
port, the BLAS and OpenMP thread count pinned in its environment before torch is imported,
and ``torch.set_num_threads`` to match. One process trains the plain model on the whole
batch (no DDP wrapper: what a single-process script runs); two processes wrap it in DDP,
which sums the gradients bucket by bucket while the backward pass still runs, each on half
the batch. A step is ``zero_grad``, forward, cross-entropy, backward (with DDP's allreduce)
and ``SGD.step``, float32; the figure is the slowest rank's median step.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from _mpi import blas_env

HERE = Path(__file__).resolve()
SETUPS = [("PyTorch, 1 process x 1 thread", 1, 1), ("PyTorch DDP, 2 processes x 1 thread", 2, 1),
          ("PyTorch, 1 process x 2 threads", 1, 2)]


def available() -> str | None:
    """torch's version when this Python can import torch with its distributed package."""
    if find_spec("torch") is None:
        return None
    import torch
    import torch.distributed as dist
    return torch.__version__ if dist.is_available() and dist.is_gloo_available() else None


def worker(model_name: str, steps: int, warmup: int, batch: int, threads: int) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    sys.path.insert(0, str(HERE.parents[1]))  # the benchmarks package: python -m benchmarks's
    from benchmarks.peers import _torch_module
    from benchmarks.workloads import WORKLOADS

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    model: nn.Module = _torch_module(WORKLOADS[model_name])  # the same module as that peer's
    shape = WORKLOADS[model_name].x_shape  # one example, NHWC for images: torch takes NCHW
    x = torch.randn(batch, *(shape if len(shape) == 1 else (shape[-1], *shape[:-1])))
    y = torch.randperm(batch) % 10
    share = batch // size
    xb, yb = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
    if size > 1:
        dist.init_process_group("gloo", rank=rank, world_size=size)
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    mine = statistics.median(times)
    if size > 1:
        every = [None] * size
        dist.all_gather_object(every, mine)
        dist.barrier()
    else:
        every = [mine]
    if rank == 0:
        print(json.dumps({"step": max(every), "threads": torch.get_num_threads()}), flush=True)
    if size > 1:
        # gloo's teardown at exit (with destroy_process_group or without) aborts now and then,
        # "terminate called without an active exception", in a third of the runs here: the
        # figures are out, so leave without running the C++ destructors
        os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(ranks: int, threads: int, model: str, steps: int, warmup: int,
           batch: int, timeout: float = 600.0) -> dict[str, Any]:
    """One set-up in fresh processes; ``{"step": s, "threads": n}`` from rank 0. When one
    process fails (or the time runs out) the others are killed: a rank left waiting in
    gloo's rendezvous for one that died would hang until the timeout."""
    env = {**blas_env(threads), "WORLD_SIZE": str(ranks), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    cmd = [sys.executable, str(HERE), model, str(steps), str(warmup), str(batch), str(threads)]
    with tempfile.TemporaryDirectory() as tmp:  # files, not pipes: nobody reads while polling
        logs = [(Path(tmp, f"{r}.out"), Path(tmp, f"{r}.err")) for r in range(ranks)]
        procs = []
        for r, (out, err) in enumerate(logs):
            with out.open("w") as o, err.open("w") as e:
                procs.append(subprocess.Popen(cmd, env={**env, "RANK": str(r)}, stdout=o,
                                              stderr=e, text=True))
        deadline = time.monotonic() + timeout
        try:
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline \
                    and not any(p.returncode for p in procs):
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (_, err) in zip(procs, logs):
            if p.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}, after "
                                 f"{timeout:.0f} s at most):\n{err.read_text()}")
        result: dict[str, Any] = json.loads(logs[0][0].read_text().strip().splitlines()[-1])
    return result

if __name__ == "__main__":
    name, n_steps, n_warmup, n_batch, n_threads = sys.argv[1:6]
    worker(name, int(n_steps), int(n_warmup), int(n_batch), int(n_threads))
