"""A training loop as a user's script runs it, the garbage collector on at its defaults: the
median step (``benchmarks.impl_funcdl``'s value_and_grad + SGD step) and the process's peak
RSS, each workload in a fresh process with one BLAS thread. ``python -m benchmarks`` times
steps in batches and reads memory apart; this one shows what a plain ``for`` loop meets
(pullbacks that wait for the collector hold their activations across steps).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.train_loop [--steps 150] [--only cnn,mlp]
        [--tree DIR ...]

``--tree`` (repeatable) runs the loops with the funcdl of each export (``git archive REV |
tar -x -C DIR``; this checkout's benchmarks), the trees alternating per round, for a
before/after in one run. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from . import timing

ROUNDS = 3


def worker(name: str, steps: int, tree: str) -> None:
    sys.path.insert(0, tree)  # before funcdl's first import: the export under test
    import resource

    import numpy as np

    import funcdl as fd

    from . import impl_funcdl
    from .workloads import WORKLOADS, data

    fd.perf.retain_freed_memory()  # as python -m benchmarks does
    w = WORKLOADS[name]
    layer, loss = impl_funcdl.model(w)
    step = impl_funcdl.step_of(layer, loss, impl_funcdl.init(w), *data(w))
    for _ in range(10):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"ms": float(np.median(times)) * 1e3, "rss": rss,
                      "funcdl": os.path.dirname(fd.__file__)}))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_loop")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--only", default="cnn,mlp")
    ap.add_argument("--tree", action="append", default=[],
                    help="an export of funcdl to time (default: this checkout)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.steps, args.worker[1])
        return
    trees = args.tree or [str(timing.REPO)]
    print(f"# {' '.join(sys.argv)}; one BLAS thread; {args.steps} steps after 10 of warm-up; "
          f"median ms per step (lowest-highest over {ROUNDS} rounds), peak RSS in MiB")
    print("\n| workload | funcdl tree | step ms | peak RSS MiB |\n|---|---|--:|--:|")
    for name in args.only.split(","):
        runs: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
        for _ in range(ROUNDS):
            for tree in trees:
                env = {**os.environ, **{v: "1" for v in ("OPENBLAS_NUM_THREADS",
                                                         "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
                out = subprocess.run([sys.executable, "-m", "benchmarks.train_loop", "--worker",
                                      name, tree, "--steps", str(args.steps)], env=env,
                                     check=True, capture_output=True, text=True,
                                     cwd=timing.REPO)
                run = json.loads(out.stdout.strip().splitlines()[-1])
                if os.path.realpath(os.path.dirname(run["funcdl"])) != os.path.realpath(tree):
                    raise SystemExit(f"{tree}: the worker imported funcdl from {run['funcdl']}")
                runs[tree].append(run)
        for tree, rs in runs.items():
            ms = [r["ms"] for r in rs]
            print(f"| {name} | {tree} | {statistics.median(ms):.2f} ({min(ms):.2f}-"
                  f"{max(ms):.2f}) | {max(r['rss'] for r in rs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
