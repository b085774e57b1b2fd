"""What ``layers.BatchThreads`` is worth against BLAS's own threads: the training step
(``value_and_grad`` + SGD update, as ``benchmarks.impl_funcdl`` writes it; float32) of the
cnn workload at batch 64 and 256 and of the mlp (784-512-512-10) at batch 256, in six
configurations, each a fresh process with its BLAS thread count set in its environment
(OPENBLAS/OMP/MKL_NUM_THREADS) before NumPy is imported:

1. funcdl, 1 BLAS thread;
2. funcdl, 2 BLAS threads (this 2-core machine's default);
3. funcdl with the model wrapped in ``BatchThreads(model, 2)``, 1 BLAS thread;
4. the same with 2 BLAS threads (BLAS's threads and the slices' on the same two cores);
5. PyTorch eager, ``torch.set_num_threads(1)`` and (2), when torch imports (the peer).

    python -m benchmarks.batch_threads [--rounds 3] [--cases cnn:64,cnn:256,mlp:256]
                                       [--no-peers] [--default-malloc]

The configurations take turns ``--rounds`` times (each case's rounds one after the other),
so a drift of the machine hits each alike; a child times its step with
``profile_step.median_us`` (the median of 15 batches of ~20 ms). Reported per row: the BLAS
threads the child saw (threadpoolctl when installed, else the environment), its CPU
seconds per wall second while timing (idle OpenBLAS threads spin, and count), the median
step over the rounds with its lowest and highest, and the median over rounds of row 1's
step / this row's in the same round. Before timing, BatchThreads' loss and gradients are
checked against the plain model's on each case's batch, and every child's first two losses
(before and after one update, from the same initial params) against row 1's; a mismatch
stops the run. Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from importlib.util import find_spec
from typing import Any

from . import report, timing
from ._mpi import THREAD_VARS
from .workloads import WORKLOADS, Workload, data, layer_params

# (row label, kind, BLAS threads)
CONFIGS = [("funcdl, 1 BLAS thread", "funcdl", 1),
           ("funcdl, 2 BLAS threads (default here)", "funcdl", 2),
           ("funcdl BatchThreads(model, 2), 1 BLAS thread", "batch_threads", 1),
           ("funcdl BatchThreads(model, 2), 2 BLAS threads", "batch_threads", 2)]
PEERS = [("PyTorch eager, set_num_threads(1)", "torch", 1),
         ("PyTorch eager, set_num_threads(2)", "torch", 2)]
RTOL, ATOL = 1e-4, 1e-6  # float32, sums in another order


def _workload(name: str, batch: int) -> Workload:
    return dataclasses.replace(WORKLOADS[name], batch=batch)


def _blas_seen() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"{os.environ.get('OPENBLAS_NUM_THREADS', '?')} (env; no threadpoolctl)"
    seen = sorted({f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()})
    return ", ".join(seen) or "none loaded"


def worker(kind: str, name: str, batch: int, steps: int, retain: bool) -> None:
    """One configuration's step, timed in this process; prints one JSON line."""
    import funcdl as fd

    from . import impl_funcdl
    from .profile_step import median_us

    if retain:  # as python -m benchmarks does, for every implementation
        fd.perf.retain_freed_memory()
    w = _workload(name, batch)
    x, y = data(w)
    params = impl_funcdl.init(w)
    extra = ""
    if kind == "torch":
        import torch

        from . import peers
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        step, to_float = peers.make_step("torch", w, layer_params(params), x, y)
        extra = f"torch {torch.get_num_threads()}, "
    else:
        layer, loss = impl_funcdl.model(w)
        if kind == "batch_threads":
            layer = fd.layers.BatchThreads(layer, 2)
        step, to_float = impl_funcdl.step_of(layer, loss, params, x, y), float
    losses = [to_float(step()), to_float(step())]
    t0, c0 = time.perf_counter(), os.times()
    us = median_us(step, steps=steps)[0]
    c1 = os.times()
    cpu = (c1.user + c1.system - c0.user - c0.system) / (time.perf_counter() - t0)
    print(json.dumps({"ms": us / 1e3, "cpu": cpu, "losses": losses,
                      "seen": extra + _blas_seen()}))


def launch(kind: str, threads: int, name: str, batch: int, steps: int,
           retain: bool) -> dict[str, Any]:
    env = {**timing.CHILD_ENV, **{v: str(threads) for v in THREAD_VARS}}
    cmd = [sys.executable, "-m", "benchmarks.batch_threads", "--worker", kind, name,
           str(batch), "--steps", str(steps), *([] if retain else ["--default-malloc"])]
    out = subprocess.run(cmd, cwd=timing.REPO, env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def check_grads(name: str, batch: int) -> str:
    """BatchThreads(model, 2)'s loss and grads against the plain model's, same params and
    batch: raises SystemExit when they differ beyond float32 reordering."""
    import numpy as np

    import funcdl as fd

    from . import impl_funcdl

    w = _workload(name, batch)
    layer, loss = impl_funcdl.model(w)
    params = impl_funcdl.init(w)
    x, y = data(w)
    v0, g0 = fd.value_and_grad(layer, loss)(params, x, y)
    v1, g1 = fd.value_and_grad(fd.layers.BatchThreads(layer, 2), loss)(params, x, y)
    a, b = fd.tree.leaves(g0), fd.tree.leaves(g1)
    where = f"{name}, batch {batch}: BatchThreads(model, 2) against the plain model"
    if fd.tree.structure(g0) != fd.tree.structure(g1) or len(a) != len(b):
        raise SystemExit(f"{where}: the gradient trees differ")
    if not np.isclose(float(v0), float(v1), rtol=1e-5, atol=ATOL):
        raise SystemExit(f"{where}: loss {float(v1)!r} != {float(v0)!r}")
    worst = 0.0
    for i, (p, q) in enumerate(zip(a, b, strict=True)):
        scale = float(np.abs(p).max()) if p.size else 0.0
        if p.shape != q.shape or not np.allclose(q, p, rtol=RTOL, atol=RTOL * scale + ATOL):
            raise SystemExit(f"{where}: gradient leaf {i} {p.shape} differs, max |diff| "
                             f"{float(np.abs(q - p).max()):.3g} (max |g| {scale:.3g})")
        worst = max(worst, float(np.abs(q - p).max()) / max(scale, 1e-30))
    return (f"check: BatchThreads(model, 2)'s loss and {len(a)} gradient leaves match the "
            f"plain model's (|loss diff| {abs(float(v1) - float(v0)):.2g}, max |grad diff| "
            f"/ max |grad| {worst:.2g})")


def _snapshot() -> tuple[float, float, float] | None:
    """timing.cpu_snapshot, with this process's finished children counted as its own."""
    snap, t = timing.cpu_snapshot(), os.times()
    return None if snap is None else (snap[0], snap[1],
                                      snap[2] + t.children_user + t.children_system)


def header(argv: list[str], torch: str | None, no_peers: bool) -> None:
    import numpy as np

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print("# BatchThreads against BLAS threads: training step (value_and_grad + SGD, "
          "float32), each configuration a fresh process")
    print(f"# command: {shlex.join([sys.executable, '-m', 'benchmarks.batch_threads', *argv])}")
    print(f"# date: {date}; git: {report._git()}")
    print(f"# machine: {os.cpu_count()} cores of {report.cpu_model()}; Python "
          f"{platform.python_version()}, NumPy {np.__version__} ({report._blas()}); "
          f"load average {load:.2f} at the start")
    print(f"# peer: PyTorch {torch} eager" if torch else "# peer: none (--no-peers)"
          if no_peers else "# peer: PyTorch skipped: torch is not installed in this Python")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batch_threads",
                                 description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="cnn:64,cnn:256,mlp:256",
                    help="comma-separated WORKLOAD:BATCH (default: cnn:64,cnn:256,mlp:256)")
    ap.add_argument("--steps", type=int, default=100,
                    help="median_us's steps: warm-up of steps // 10 calls (default 100)")
    ap.add_argument("--no-peers", action="store_true", help="skip PyTorch")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (default: every child calls "
                         "funcdl.perf.retain_freed_memory(), as python -m benchmarks)")
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "WORKLOAD", "BATCH"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, name, batch = args.worker
        worker(kind, name, int(batch), args.steps, not args.default_malloc)
        return
    cases = [(n, int(b)) for n, b in (c.strip().split(":") for c in args.cases.split(","))]
    if any(n not in WORKLOADS for n, _ in cases):
        ap.error(f"unknown workload in {args.cases!r}; choose from {list(WORKLOADS)}")
    torch = None if args.no_peers or find_spec("torch") is None else version("torch")
    header(sys.argv[1:] if argv is None else argv, torch, args.no_peers)
    configs = CONFIGS + (PEERS if torch else [])
    for name, batch in cases:
        checked = check_grads(name, batch)
        before = _snapshot()
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in configs}
        for _ in range(args.rounds):
            for label, kind, threads in configs:
                runs[label].append(launch(kind, threads, name, batch, args.steps,
                                          not args.default_malloc))
        share = timing.others_share(before, _snapshot())
        base = runs[configs[0][0]]
        for label, rs in runs.items():  # every child started from the same params
            for r, b in zip(rs, base, strict=True):
                for got, ref in zip(r["losses"], b["losses"], strict=True):
                    if abs(got - ref) > RTOL * abs(ref) + ATOL:
                        raise SystemExit(f"{name}, batch {batch}, {label}: losses "
                                         f"{r['losses']} != row 1's {b['losses']}")
        print(f"\n## {name} at batch {batch}: median ms per step over {args.rounds} "
              f"round(s); other processes kept "
              f"{'?' if share is None else f'{share:.0%}'} of the cores busy meanwhile")
        print("\n| configuration | threads seen | CPU s / wall s | step ms | lowest-highest | "
              "speed-up vs row 1 |")
        print("|---|---|--:|--:|--:|--:|")
        for label, rs in runs.items():
            ms = [r["ms"] for r in rs]
            up = statistics.median(b["ms"] / r["ms"] for r, b in zip(rs, base, strict=True))
            seen = "; ".join(sorted({r["seen"] for r in rs}))
            print(f"| {label} | {seen} | {statistics.median(r['cpu'] for r in rs):.2f} | "
                  f"{statistics.median(ms):.2f} | {min(ms):.2f}-{max(ms):.2f} | {up:.2f}x |")
        print(f"\n{checked}; first two losses of every child agree with row 1's "
              f"({base[0]['losses'][0]:.6f}, {base[0]['losses'][1]:.6f}). Per-round ms: "
              + "; ".join(f"{label}: " + ", ".join(f"{r['ms']:.2f}" for r in rs)
                          for label, rs in runs.items()), flush=True)


if __name__ == "__main__":
    main()
