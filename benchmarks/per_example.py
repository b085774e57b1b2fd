"""Per-example gradients, one thread each (not a test): funcdl's
``per_example_grad`` (one pass over the batch) against funcdl's loop over the rows (a
``grad`` call per example, what README showed before), funcdl's batch ``grad`` (what the
batch costs without per-example gradients), PyTorch's ``torch.func.vmap(grad)`` (its
functorch per-sample gradients) and JAX's ``jit(vmap(grad))`` (compiled before timing).

Workloads, float32, softmax cross-entropy on integer labels: the mlp 784-512-512-10 at
batch 64 and 256, and a small CNN on (N, 28, 28, 1): Conv2D(16, 3) ReLU MaxPool2D(2)
Conv2D(32, 3) ReLU GlobalAvgPool Dense(10), at batch 64. ms per call: the median over
``--rounds`` rounds of the steps in turn (``timing.interleaved``), and each peer's
largest difference from funcdl's per-example gradients (float32, relative to the largest
entry). glibc's malloc keeps freed memory (``funcdl.perf.retain_freed_memory``) for every
side, as ``python -m benchmarks`` does: the mlp's per-example gradients are 171 MB a call,
which would otherwise come back as fresh pages each time.

    /tmp/benchenv/bin/python benchmarks/per_example.py            # with the peers installed
    .venv/bin/python benchmarks/per_example.py --quick --no-peers  # a smoke run, seconds
"""

from __future__ import annotations

import os

os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report
import timing

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.perf import retain_freed_memory


def _mlp() -> Any:
    return L.Sequential(L.Dense(512), L.ReLU(), L.Dense(512), L.ReLU(), L.Dense(10))


def _cnn() -> Any:
    return L.Sequential(L.Conv2D(16, 3), L.ReLU(), L.MaxPool2D(2), L.Conv2D(32, 3), L.ReLU(),
                        L.GlobalAvgPool(), L.Dense(10))


WORKLOADS = {"mlp, batch 64": (_mlp, (784,), 64), "mlp, batch 256": (_mlp, (784,), 256),
             "cnn, batch 64": (_cnn, (28, 28, 1), 64)}


def _torch_step(torch: Any, kind: str, params: Any, x: np.ndarray, t: np.ndarray
                ) -> tuple[Callable[[], Any], Callable[[], list[np.ndarray]]]:
    """torch.func per-sample grads with funcdl's params, in funcdl's order of leaves."""
    F = torch.nn.functional
    tp = [torch.tensor(np.asarray(a)) for a in tree.leaves(params)]
    tx, tt = torch.tensor(x), torch.tensor(t)

    if kind == "mlp":
        def f(ps: list[Any], xi: Any, ti: Any) -> Any:  # leaves: b, w per Dense (sorted keys)
            h = xi[None]
            for j in range(0, 6, 2):
                h = h @ ps[j + 1] + ps[j]
                h = F.relu(h) if j < 4 else h
            return F.cross_entropy(h, ti[None])
    else:
        def f(ps: list[Any], xi: Any, ti: Any) -> Any:  # kernels HWIO -> OIHW, NHWC -> NCHW
            h = xi[None].permute(0, 3, 1, 2)
            h = F.relu(F.conv2d(h, ps[1].permute(3, 2, 0, 1), ps[0], padding="same"))
            h = F.max_pool2d(h, 2)
            h = F.relu(F.conv2d(h, ps[3].permute(3, 2, 0, 1), ps[2], padding="same"))
            return F.cross_entropy(h.mean(dim=(2, 3)) @ ps[5] + ps[4], ti[None])

    per_sample = torch.func.vmap(torch.func.grad(f), in_dims=(None, 0, 0))

    def step() -> Any:
        return per_sample(tp, tx, tt)

    return step, lambda: [g.numpy() for g in step()]


def _jax_step(jax: Any, model: Any, params: Any, x: np.ndarray, t: np.ndarray
              ) -> tuple[Callable[[], Any], Callable[[], list[np.ndarray]]]:
    """jax's jit(vmap(grad)) of funcdl's model written in jax.numpy (mlp only)."""
    jnp = jax.numpy

    def f(ps: Any, xi: Any, ti: Any) -> Any:
        h = xi[None]
        for j, layer in enumerate(ps):
            if layer:
                h = h @ layer["w"] + layer["b"]
                h = jax.nn.relu(h) if j < len(ps) - 1 else h
        return -jax.nn.log_softmax(h)[0, ti]

    per_sample = jax.jit(jax.vmap(jax.grad(f), in_axes=(None, 0, 0)))
    jp = jax.tree.map(jnp.asarray, params)
    jx, jt = jnp.asarray(x), jnp.asarray(t)

    def step() -> Any:
        return jax.block_until_ready(per_sample(jp, jx, jt))

    return step, lambda: [np.asarray(g) for g in jax.tree.leaves(step())]


def row(label: str, model: Any, shape: tuple[int, ...], n: int, peers: dict[str, Any],
        rounds: int, budget: float) -> str:
    """One workload's table row: funcdl's three steps and the installed peers, timed in
    turn, and the peers' largest difference from funcdl's per-example gradients."""
    loss = losses.softmax_cross_entropy
    _, params = model.init(random.key(0), (None, *shape))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    t = rng.integers(0, 10, n)
    each, batch = fd.per_example_grad(model, loss), fd.grad(model, loss)
    steps = {"per_example": lambda: each(params, x, t),
             "loop": lambda: [batch(params, x[i:i + 1], t[i:i + 1]) for i in range(n)],
             "batch": lambda: batch(params, x, t)}
    ours = [np.asarray(g) for g in tree.leaves(each(params, x, t))]
    groups: list[dict[str, Callable[[], Any]]] = [steps]
    diffs = []
    kind = "mlp" if "mlp" in label else "cnn"
    for name in ("torch", "jax"):
        if peers[name] is None or (name == "jax" and kind == "cnn"):
            continue
        step, values = (_torch_step(peers[name], kind, params, x, t) if name == "torch"
                        else _jax_step(peers[name], model, params, x, t))
        groups.append({name: step})
        err = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
                  for a, b in zip(ours, values(), strict=True))
        diffs.append(f"{name} {err:.1e}")
    times = timing.interleaved(groups, budget, rounds, warmup=0.3, settle=0.2)
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    cells = " | ".join(f"{ms[k]:.2f}" if k in ms else "–"
                       for k in ("per_example", "loop", "batch", "torch", "jax"))
    return (f"| {label} | {cells} | {ms['loop'] / ms['per_example']:.1f}x | "
            f"{', '.join(diffs) or '–'} |")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.5, help="s of timed calls per step")
    ap.add_argument("--quick", action="store_true", help="one short round, the mlp at 64")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args(argv)
    retain_freed_memory()
    rounds, budget = (1, 0.2) if args.quick else (args.rounds, args.budget)
    peers: dict[str, Any] = {"torch": None, "jax": None}
    if not args.no_peers:
        for name in peers:
            try:
                peers[name] = __import__(name)
            except ImportError:
                pass
    if peers["torch"] is not None:
        peers["torch"].set_num_threads(1)
    info = report.machine(peers)
    print(f"# per-example gradients, float32, one thread; {info['cpu']}; NumPy "
          f"{info['numpy']}; torch {info.get('torch', 'absent')}; jax "
          f"{info.get('jax', 'absent')}; funcdl {info['funcdl']}")
    print(f"# command: python benchmarks/per_example.py {' '.join(argv)}")
    print("| workload | funcdl per_example_grad | funcdl loop over rows | funcdl batch grad "
          "| torch.func vmap(grad) | jax jit(vmap(grad)) | loop / per_example | largest "
          "difference from funcdl (torch, jax) |")
    print("|---|--:|--:|--:|--:|--:|--:|---|")
    for label, (make, shape, n) in WORKLOADS.items():
        if not args.quick or label == "mlp, batch 64":
            print(row(label, make(), shape, n, peers, rounds, budget))


if __name__ == "__main__":
    main(sys.argv[1:])
