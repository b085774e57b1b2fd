"""Where funcdl's training step spends its time, against the hand-written NumPy floor.

    python -m benchmarks.profile_step disk mlp [--steps 2000] [--top 25] [--default-malloc]

For each workload:
1. phases, median µs without a profiler: funcdl's ``model.vjp`` (forward), ``loss.vjp`` and
   its pullback, the model's pullback, ``opt.update``, ``apply_updates``, and the floor's
   matching parts (MLP workloads);
2. single costs measured directly: the first layer's input gradient (which nobody needs),
   funcdl's optimizer against one NumPy expression per leaf, page faults per step;
3. (MLP workloads) the floor's step with SGD in place, into new arrays, and optax-style,
   against funcdl's: the price of fresh parameter arrays apart from funcdl's overhead;
4. cProfile of funcdl's step: Python function calls per step, time by module, and the top
   functions by own time (the profiler inflates Python-heavy code: read shares, not µs).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

import funcdl as fd

from . import floor, impl_funcdl, timing
from .workloads import LR, WORKLOADS, Workload, chosen, copy_pairs, data, layer_params


def median_us(*fs: Callable[[], Any], steps: int) -> list[float]:
    """µs per call of each ``f``: the median of 15 batches' means, each batch about 20 ms,
    the functions' batches alternating, after a warm-up of ``steps // 10`` calls each.
    Short alternating batches make a neighbour's burst (or the host's, see
    ``timing.blas_probe``) an outlier hitting both sides, not the median."""
    sizes = []
    for f in fs:
        t = time.perf_counter()
        for _ in range(max(3, steps // 10)):
            f()
        sizes.append(max(1, round(0.02 / ((time.perf_counter() - t) / max(3, steps // 10)))))
    runs: list[list[float]] = [[] for _ in fs]
    for _ in range(15):
        for f, n, out in zip(fs, sizes, runs):
            out.append(timeit.timeit(f, number=n) / n * 1e6)
    return [statistics.median(r) for r in runs]


def phases(w: Workload, steps: int) -> list[tuple[str, float, float | None]]:
    """``(phase, funcdl µs, floor µs or None)``; each phase timed on its own inputs, funcdl's
    and the floor's alternating."""
    layer, loss = impl_funcdl.model(w)
    params = impl_funcdl.init(w)
    x, y = data(w)
    opt = fd.optim.sgd(LR)
    state = opt.init(params)
    yhat, pb = layer.vjp(params, x, train=True)
    _, lpb = loss.vjp(yhat, y)
    dy = lpb(1.0)
    # As value_and_grad calls it: without the input's cotangent when the model allows.
    kw = {"need_dx": False} if getattr(layer, "dx_optional", False) else {}
    grads, _ = pb(dy, **kw)
    updates, _ = opt.update(state, grads, params)
    f: dict[str, Callable[[], Any]] = {
        "forward (model.vjp)": lambda: layer.vjp(params, x, train=True),
        "loss.vjp + loss pullback": lambda: loss.vjp(yhat, y)[1](1.0),
        "backward (model pullback)": lambda: pb(dy, **kw),
        "opt.update (sgd)": lambda: opt.update(state, grads, params),
        "apply_updates": lambda: fd.optim.apply_updates(params, updates),
    }
    g: dict[str, Callable[[], Any]] = {}
    pairs = copy_pairs(layer_params(params))
    if w.name in ("disk", "mlp"):
        head = floor.mse if w.name == "disk" else floor.softmax_ce
        fwd, bwd, upd = floor.mlp_parts(copy_pairs(pairs), x, sigmoid=w.name == "disk")
        acts = fwd()
        _, d = head(acts[-1], y)
        fgrads = bwd(acts, d)
        g = {"forward (model.vjp)": fwd,
             "loss.vjp + loss pullback": lambda: head(acts[-1], y),
             "backward (model pullback)": lambda: bwd(acts, d),
             "opt.update (sgd)": lambda: upd(fgrads)}  # in place: update and apply at once
    rows: list[tuple[str, float, float | None]] = []
    for k, fn in f.items():
        if k in g:
            a, b = median_us(fn, g[k], steps=steps)
            rows.append((k, a, b))
        else:
            rows.append((k, median_us(fn, steps=steps)[0], 0.0 if g else None))
    rows.append(("sum of the phases", sum(r[1] for r in rows),
                 sum(r[2] or 0.0 for r in rows) if g else None))
    a, b = median_us(impl_funcdl.make_step(w, params, x, y), floor.make_step(w, pairs, x, y),
                     steps=steps)
    rows.append(("whole step (as benchmarked)", a, b))
    return rows


def single_costs(w: Workload, steps: int) -> list[tuple[str, float]]:
    params = impl_funcdl.init(w)
    x, _ = data(w)
    (w1, _), *_ = layer_params(params)
    out: list[tuple[str, float]] = []
    if w1.ndim == 2:
        dy = np.ones((len(x), w1.shape[1]), np.float32)
        skips = getattr(impl_funcdl.model(w)[0], "dx_optional", False)
        out.append((f"first layer's unneeded dx = dy @ w.T, {dy.shape} @ {w1.T.shape} "
                    f"({'skipped' if skips else 'computed'} by this funcdl's value_and_grad)",
                    median_us(lambda: dy @ w1.T, steps=steps)[0]))
    opt = fd.optim.sgd(LR)
    state = opt.init(params)
    grads = fd.tree.map(np.ones_like, params)
    leaves = fd.tree.leaves(params)
    gl = fd.tree.leaves(grads)
    fns = {
        "funcdl: opt.update + apply_updates":
            lambda: fd.optim.apply_updates(params, opt.update(state, grads, params)[0]),
        "NumPy: [p - lr * g for each leaf] (new arrays, as funcdl)":
            lambda: [p - LR * g for p, g in zip(leaves, gl)],
        "funcdl: fd.tree.map(lambda p, g: p - lr * g, params, grads)":
            lambda: fd.tree.map(lambda p, g: p - LR * g, params, grads),
        f"fd.tree.leaves(params) ({len(leaves)} leaves)": lambda: fd.tree.leaves(params),
    }
    out += list(zip(fns, median_us(*fns.values(), steps=steps)))
    x, y = data(w)
    n = max(3, steps // 20)
    out.append(("minor page faults per step, funcdl (a count, not µs)",
                timing.faults_per_step(impl_funcdl.make_step(w, params, x, y), n)))
    out.append(("minor page faults per step, NumPy floor (count)",
                timing.faults_per_step(floor.make_step(w, copy_pairs(layer_params(params)),
                                                       x, y), n)))
    return out


def update_styles(w: Workload, steps: int) -> list[tuple[str, float]]:
    """The floor's MLP step with three SGD styles, against funcdl's step: what a pure API's
    fresh parameter arrays cost by themselves, apart from funcdl's own overhead."""
    params = impl_funcdl.init(w)
    x, y = data(w)
    head = floor.mse if w.name == "disk" else floor.softmax_ce
    variants: dict[str, Callable[[], Any]] = {}
    for style in ("in place: w -= lr * dw (the floor)",
                  "new arrays: w = w - lr * dw (the least a pure API allocates)",
                  "optax-style: u = -lr * dw, then w = w + u"):
        ps = copy_pairs(layer_params(params))
        fwd, bwd, upd = floor.mlp_parts(ps, x, sigmoid=w.name == "disk")

        def step(ps: Any = ps, fwd: Any = fwd, bwd: Any = bwd, upd: Any = upd,
                 style: str = style) -> float:
            acts = fwd()
            loss, d = head(acts[-1], y)
            grads = bwd(acts, d)
            if style.startswith("in place"):
                upd(grads)
            elif style.startswith("new"):  # the closures read the list: swap its contents
                ps[:] = [(a - LR * da, b - LR * db) for (a, b), (da, db) in zip(ps, grads)]
            else:
                us = [(da * -LR, db * -LR) for da, db in grads]
                ps[:] = [(a + ua, b + ub) for (a, b), (ua, ub) in zip(ps, us)]
            return loss

        variants[f"NumPy floor step, SGD {style}"] = step
    variants["funcdl step"] = impl_funcdl.make_step(w, params, x, y)
    return list(zip(variants, median_us(*variants.values(), steps=steps)))


def profile(w: Workload, steps: int, top: int) -> None:
    params = impl_funcdl.init(w)
    x, y = data(w)
    step = impl_funcdl.make_step(w, params, x, y)
    for _ in range(10):
        step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    st: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    calls = sum(v[1] for v in st.values()) / steps
    total = sum(v[2] for v in st.values())
    print(f"\ncProfile of funcdl's step, {steps} steps: {calls:.0f} function calls per step "
          f"(Python functions and C builtins), {total / steps * 1e6:.0f} µs per step under "
          "the profiler")
    by_module: dict[str, float] = {}
    for (file, _, fn), v in st.items():
        key = ("numpy C functions and methods" if file == "~" else
               file.split("/funcdl/")[-1] if "/funcdl/" in file else
               file.split("/benchmarks/")[-1] if "/benchmarks/" in file else file)
        if file == "~" and "numpy" not in fn:
            key = "other builtins"
        by_module[key] = by_module.get(key, 0.0) + v[2]
    print("\n| own time by module | share |\n|---|--:|")
    for k, v in sorted(by_module.items(), key=lambda kv: -kv[1])[:12]:
        print(f"| {k} | {v / total:.0%} |")
    print("\n| function (file:line) | calls/step | own µs/step | share |\n|---|--:|--:|--:|")
    for (file, line, fn), v in sorted(st.items(), key=lambda kv: -kv[1][2])[:top]:
        where = file.split("/funcdl/")[-1] if "/funcdl/" in file else file.split("/")[-1]
        name = fn if file == "~" else f"{fn} ({where}:{line})"
        print(f"| {name} | {v[1] / steps:.0f} | {v[2] / steps * 1e6:.1f} | {v[2] / total:.1%} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_step")
    ap.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                    help=f"of {', '.join(WORKLOADS)} (default: disk mlp)")
    ap.add_argument("--steps", type=int, default=0, help="steps per timing (default: by size)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (by default, as `python -m benchmarks` "
                         "does, funcdl.perf.retain_freed_memory() is called first)")
    args = ap.parse_args(argv)
    if not args.default_malloc:  # else the figures are not the benchmark's: the cnn step
        # pays ~3,200 page faults (mapping freed activations anew); this script's whole cnn
        # step took 22.9 ms without it, 10.5 with it (2026-12-05, one-off runs, not kept)
        print("malloc: funcdl.perf.retain_freed_memory() " +
              ("applied, as in `python -m benchmarks`" if fd.perf.retain_freed_memory()
               else "unavailable (not glibc)"))
    for _ in range(5):
        timing.blas_probe()
        time.sleep(0.2)
    before = timing.cpu_snapshot()
    for name in chosen(ap, args.workloads, ["disk", "mlp"]):
        timing.wait_quiet(120.0, log=print)
        w = WORKLOADS[name]
        steps = args.steps or (3000 if name == "disk" else 300)
        print(f"\n## {name}: {w.label}\n\n| phase | funcdl µs | floor µs | funcdl - floor |"
              "\n|---|--:|--:|--:|")
        for ph, a, b in phases(w, steps):
            print(f"| {ph} | {a:,.1f} | " + ("–" if b is None else f"{b:,.1f}") + " | "
                  + ("–" if b is None else f"{a - b:+,.1f}") + " |")
        print("\n| single cost | µs (faults: a count) |\n|---|--:|")
        for what, us in single_costs(w, steps):
            print(f"| {what} | {us:,.1f} |")
        if w.name in ("disk", "mlp"):
            print("\n| step, by SGD style (alternating batches) | µs |\n|---|--:|")
            for what, us in update_styles(w, steps):
                print(f"| {what} | {us:,.1f} |")
        profile(w, steps, args.top)
    others = timing.others_share(before, timing.cpu_snapshot())
    p = timing.probes()
    print(f"\nBLAS probe (512³ sgemm) during the run: {p['min']:.0f} to {p['max']:.0f} "
          f"GFLOP/s, median {p['median']:.0f}")
    if others is not None and others > 0.05:
        print(f"WARNING: other processes kept {others:.0%} of the cores busy meanwhile; "
              "rerun on a quiet machine")


if __name__ == "__main__":
    main()
