"""What Sequential's fused steps are worth: each workload's training step (as the benchmark
times it) with the model as built, against the same model with every child stripped of
its fusion fields (``pointwise``, ``vjp_then``, ``selects_max``), so that each layer runs on
its own. The two steps alternate in ~20 ms batches in one process (``profile_step``'s
``median_us``), so the machine's swings hit both.

    python -m benchmarks.fusion_ab [disk mlp cnn resmlp] [--steps N] [--rounds 3]

(resmlp's blocks are Residuals: their inner Sequentials stay as built.)
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from funcdl import layers as L
from funcdl.layers.base import Layer
from funcdl.perf import retain_freed_memory

from . import impl_funcdl
from .profile_step import median_us
from .workloads import WORKLOADS, chosen, data


def _opaque(layer: Any) -> Any:
    """``layer`` as a plain ``Layer(init, apply, vjp)``: Sequential runs it on its own."""
    if not isinstance(layer, Layer):
        return layer
    return dataclasses.replace(layer, pointwise=None, vjp_then=None, selects_max=False)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion_ab")
    ap.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                    help=f"of {', '.join(WORKLOADS)} (default: disk mlp cnn)")
    ap.add_argument("--steps", type=int, default=0, help="warm-up scale (default: by size)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    retain_freed_memory()  # as python -m benchmarks
    print("| workload | round | fused µs | layer by layer µs | fused / layer by layer |")
    print("|---|--:|--:|--:|--:|")
    for name in chosen(ap, args.workloads, ["disk", "mlp", "cnn"]):
        w = WORKLOADS[name]
        children, loss = impl_funcdl.parts(w)
        model, plain = L.Sequential(*children), L.Sequential(*map(_opaque, children))
        params, (x, y) = impl_funcdl.init(w), data(w)
        a, b = (impl_funcdl.step_of(m, loss, params, x, y) for m in (model, plain))
        assert a() == b(), "the fused and layer-by-layer steps must give the same loss"
        steps = args.steps or (3000 if name == "disk" else 300)
        for r in range(args.rounds):
            fused, alone = median_us(a, b, steps=steps)
            print(f"| {name} | {r + 1} | {fused:,.1f} | {alone:,.1f} | {fused / alone:.3f} |")


if __name__ == "__main__":
    main()
