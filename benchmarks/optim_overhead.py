"""The optimizer's share of a small network's training step (an RL agent's: batch 1 to 32,
an MLP of two 64- or 256-wide tanh layers), funcdl's Adam against optax (eager and under
``jax.jit``) and ``torch.optim.Adam``, all on one thread.

    python -m benchmarks.optim_overhead [--base DIR] [--batch 1 32] [--rounds 15]

Each implementation runs in a worker process of its own (one thread: the BLAS and OpenMP
variables, ``torch.set_num_threads(1)``, XLA's single-thread flags), which the parent asks
for ~20 ms slices of calls in turn, every case of a round back to back, so that the
machine's swings (it is shared with other work) hit all sides alike; each figure is the
median over rounds of a slice's mean, in CPU time of the worker (which a busy machine
inflates far less than wall-clock time: other processes' turns on the core are not
counted) and in wall-clock time. ``--base DIR``: a second funcdl (another checkout's
root, e.g. ``git archive HEAD | tar -x -C DIR``) timed as side A against this one's B, in
alternating slices; the script checks that both give the same bits after 5 steps. Peers
that do not import are skipped. Two timings per case: ``step`` (value_and_grad, the
optimizer's update and apply_updates) and ``opt`` (update and apply_updates on fixed
grads: the optimizer alone).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
XLA_ONE = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
SIZES = {"64": (8, 64, 2), "256": (32, 256, 4)}  # (inputs, hidden width, outputs)
LR = 1e-3


def _data(batch: int, n_in: int, n_out: int) -> tuple[Any, Any]:
    import numpy as np
    rng = np.random.default_rng(batch)
    return (rng.standard_normal((batch, n_in)).astype(np.float32),
            rng.standard_normal((batch, n_out)).astype(np.float32))


def _funcdl_case(size: str, batch: int) -> dict[str, Any]:
    import numpy as np

    import funcdl as fd
    from funcdl import layers as L
    n_in, width, n_out = SIZES[size]
    model = L.Sequential(L.Dense(width), L.Tanh(), L.Dense(width), L.Tanh(), L.Dense(n_out))
    _, params = model.init(fd.random.key(0), (None, n_in))
    x, y = _data(batch, n_in, n_out)
    vg = fd.value_and_grad(model, fd.losses.mse)
    opt = fd.optim.adam(LR)
    box = [params, opt.init(params)]

    def step() -> Any:
        value, grads = vg(box[0], x, y)
        updates, box[1] = opt.update(box[1], grads, box[0])
        box[0] = fd.optim.apply_updates(box[0], updates)
        return value

    _, grads = vg(params, x, y)
    fixed = [params, opt.init(params)]

    def opt_only() -> Any:
        updates, fixed[1] = opt.update(fixed[1], grads, fixed[0])
        return fd.optim.apply_updates(fixed[0], updates)

    def digest() -> str:  # five steps from a fresh start: params and state, as bytes
        p, s = params, opt.init(params)
        for _ in range(5):
            _, g = vg(p, x, y)
            u, s = opt.update(s, g, p)
            p = fd.optim.apply_updates(p, u)
        return hashlib.sha256(b"".join(np.asarray(a).tobytes()
                                       for a in fd.tree.leaves((p, s)))).hexdigest()

    return {"step": step, "opt": opt_only, "digest": digest}


def _torch_case(size: str, batch: int) -> dict[str, Any]:
    import torch
    torch.set_num_threads(1)
    n_in, width, n_out = SIZES[size]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(n_in, width), torch.nn.Tanh(),
                                torch.nn.Linear(width, width), torch.nn.Tanh(),
                                torch.nn.Linear(width, n_out))
    x, y = (torch.from_numpy(a) for a in _data(batch, n_in, n_out))
    opt = torch.optim.Adam(model.parameters(), lr=LR)  # foreach: torch's default on CPU
    loss_fn = torch.nn.MSELoss()

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step()  # grads in place for opt_only

    def opt_only() -> Any:
        opt.step()

    return {"step": step, "opt": opt_only}


def _optax_case(size: str, batch: int, jit: bool) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax
    n_in, width, n_out = SIZES[size]
    dims = [n_in, width, width, n_out]
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = [{"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
              for k, a, b in zip(keys, dims, dims[1:])]
    x, y = (jnp.asarray(a) for a in _data(batch, n_in, n_out))

    def loss(p: Any) -> Any:
        h = x
        for layer in p[:-1]:
            h = jnp.tanh(h @ layer["w"] + layer["b"])
        return jnp.mean((h @ p[-1]["w"] + p[-1]["b"] - y) ** 2)

    opt = optax.adam(LR)

    def update(p: Any, s: Any, g: Any) -> Any:
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    def train(p: Any, s: Any) -> Any:
        value, g = jax.value_and_grad(loss)(p)
        return (*update(p, s, g), value)

    if jit:
        train, update = jax.jit(train), jax.jit(update)
    box = [params, opt.init(params)]
    grads = jax.grad(loss)(params)

    def step() -> Any:
        box[0], box[1], value = train(box[0], box[1])
        return jax.block_until_ready(value)

    fixed = [params, opt.init(params)]

    def opt_only() -> Any:
        p, fixed[1] = update(fixed[0], fixed[1], grads)
        return jax.block_until_ready(p)

    return {"step": step, "opt": opt_only}


def worker(impl: str) -> None:
    """Serve ``size batch kind n`` lines on stdin: run ``n`` calls, print µs per call, wall
    clock and this process's CPU time."""
    cases: dict[tuple[str, int], dict[str, Any]] = {}
    for line in sys.stdin:
        words = line.split()
        if words == ["where"]:
            import funcdl
            print(json.dumps(funcdl.__file__), flush=True)
            continue
        size, batch, kind, n = words[0], int(words[1]), words[2], int(words[3])
        if (size, batch) not in cases:
            cases[size, batch] = (
                _funcdl_case(size, batch) if impl == "funcdl" else
                _torch_case(size, batch) if impl == "torch" else
                _optax_case(size, batch, jit=impl == "optax-jit"))
        f = cases[size, batch][kind]
        if kind == "digest":
            print(json.dumps(f()), flush=True)
            continue
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            f()
        print(json.dumps([(time.perf_counter() - t) / n * 1e6,
                          (time.process_time() - c) / n * 1e6]), flush=True)


class Side:
    def __init__(self, label: str, impl: str, root: Path) -> None:
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(root),
               "JAX_PLATFORMS": "cpu", "XLA_FLAGS": XLA_ONE}
        self.label = label
        # Run as a script from ``root``: sys.path starts with this directory, then
        # PYTHONPATH's root, so each side imports its own funcdl (with -m, the working
        # directory would come first).
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", impl],
            cwd=root, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, size: str, batch: int, kind: str, n: int) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("where\n" if size == "where" else f"{size} {batch} {kind} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}'s worker died")
        return json.loads(line)


def _importable(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.optim_overhead")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--base", type=Path, help="another funcdl checkout's root, timed as A")
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 32])
    ap.add_argument("--size", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--slice", type=float, default=0.02, help="seconds per slice")
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return
    here = Path(__file__).resolve().parent.parent
    sides = [Side("funcdl" if args.base is None else "funcdl B (this)", "funcdl", here)]
    if args.base is not None:
        sides.insert(0, Side("funcdl A (base)", "funcdl", args.base.resolve()))
    for impl, module in (("optax", "optax"), ("optax-jit", "optax"), ("torch", "torch")):
        if _importable(module):
            sides.append(Side(impl, impl, here))
        else:
            print(f"({impl}: `import {module}` failed, skipped)")
    cases = [(s, b, k) for s in args.size for b in args.batch for k in ("step", "opt")]
    if args.base is not None:
        where = [side.ask("where", 0, "", 0) for side in sides[:2]]
        assert where[0] != where[1], f"A and B import the same funcdl: {where[0]}"
        print(f"A: {where[0]}\nB: {where[1]}")
        for s, b, _ in cases[::2]:
            a, b_ = (side.ask(s, b, "digest", 0) for side in sides[:2])
            assert a == b_, f"A and B differ after 5 steps (width {s}, batch {b})"
        print("A and B: the same bits after 5 Adam steps, every case")
    per_call: dict[tuple[str, tuple[str, int, str]], float] = {}
    for side in sides:  # warm-up (JIT compilation, caches), and each slice's size
        for case in cases:
            side.ask(*case, 3)
            per_call[side.label, case] = max(side.ask(*case, 5)[0] * 1e-6, 1e-6)
    times: dict[tuple[str, tuple[str, int, str]], list[list[float]]] = {
        k: [] for k in per_call}
    for _ in range(args.rounds):
        for case in cases:
            for side in sides:  # A, B and the peers back to back
                n = max(1, round(args.slice / per_call[side.label, case]))
                times[side.label, case].append(side.ask(*case, n))
    for side in sides:
        assert side.proc.stdin is not None
        side.proc.stdin.close()
        side.proc.wait()
    for clock, what in ((1, "CPU time of the worker process (time.process_time)"),
                        (0, "wall-clock time (time.perf_counter)")):
        _table(args, [s.label for s in sides], cases, times, clock, what)


def _table(args: argparse.Namespace, labels: list[str], cases: list[tuple[str, int, str]],
           times: dict[tuple[str, tuple[str, int, str]], list[list[float]]], clock: int,
           what: str) -> None:
    print(f"\n{what}: median µs per call over {args.rounds} rounds of "
          f"~{args.slice * 1e3:.0f} ms slices, one thread; the machine is shared with "
          f"other work (compare within a row)\n")
    ab = args.base is not None
    print("| width | batch | timed | " + " | ".join(labels) + " |" + (" B / A |" if ab else ""))
    print("|---|--:|---|" + "--:|" * (len(labels) + ab))
    for case in cases:
        med = [statistics.median(t[clock] for t in times[label, case]) for label in labels]
        row = f"| {case[0]} | {case[1]} | {case[2]} | " + " | ".join(f"{m:,.1f}" for m in med)
        if ab:  # the median of the rounds' ratios: A's and B's slices ran back to back
            ratios = [b[clock] / a[clock]
                      for a, b in zip(times[labels[0], case], times[labels[1], case])]
            row += f" | {statistics.median(ratios):.3f}"
        print(row + " |")

if __name__ == "__main__":
    main()
