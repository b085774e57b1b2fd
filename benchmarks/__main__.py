"""``python -m benchmarks [--quick] [--only disk,mlp] [--no-peers] [--out STEM]``

Times one full training step (forward, loss, backward, SGD) of each workload for funcdl,
the hand-written NumPy floor, PyTorch eager and JAX jit (the peers when importable), all in
this process and this run; then the startup costs and peak memory in fresh processes.
Progress goes to stderr; the markdown report to stdout and ``STEM.md``, the raw figures to
``STEM.json`` (default ``benchmarks/results/latest``; ``quick`` with ``--quick``, so that a
smoke test does not overwrite the real figures).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import floor, impl_funcdl, peers, report, timing
from .workloads import NAMES, WORKLOADS, Workload, copy_pairs, data, layer_params

RESULTS = Path(__file__).resolve().parent / "results"
RTOL, ATOL = 1e-4, 1e-6  # float32 losses computed in different orders


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description=" ".join(__doc__.split("\n\n")[1].split()))
    ap.add_argument("--quick", action="store_true",
                    help="few repetitions: a smoke test (< 20 s without peers)")
    ap.add_argument("--only", default=",".join(NAMES),
                    help=f"comma-separated workloads (default: {','.join(NAMES)})")
    ap.add_argument("--no-peers", action="store_true", help="skip PyTorch and JAX")
    ap.add_argument("--max-wait", type=float, default=None,
                    help="seconds to wait, before timing each workload, for other processes "
                         "to leave the cores idle (default 60; 0 with --quick)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (by default the run calls "
                         "funcdl.perf.retain_freed_memory() first, for every implementation)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output path without suffix (default benchmarks/results/latest, "
                         "or .../quick with --quick)")
    args = ap.parse_args(argv)
    args.only = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in args.only if n not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {list(NAMES)}")
    if args.max_wait is None:
        args.max_wait = 0.0 if args.quick else 60.0
    if args.out is None:
        args.out = RESULTS / ("quick" if args.quick else "latest")
    return args


# ---------------------------------------------------------------------------- step timing

def _build(w: Workload, mods: dict[str, Any], notes: list[str]
           ) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[Any], float]]]:
    params = impl_funcdl.init(w)  # may raise Unavailable
    pairs = layer_params(params)
    got = tuple(p[0].shape for p in pairs)
    if got != w.shapes:
        raise RuntimeError(f"{w.name}: funcdl's params have shapes {got}, expected {w.shapes}")
    x, y = data(w)
    steps: dict[str, Callable[[], Any]] = {"funcdl": impl_funcdl.make_step(w, params, x, y),
                                           "numpy": floor.make_step(w, copy_pairs(pairs), x, y)}
    to_float: dict[str, Callable[[Any], float]] = {"funcdl": float, "numpy": float}
    for peer, mod in mods.items():
        if mod is None:
            continue
        try:
            steps[peer], to_float[peer] = peers.make_step(peer, w, copy_pairs(pairs), x, y)
        except Exception as e:
            notes.append(f"{w.name}: {peer} skipped, building its step failed: "
                         f"{type(e).__name__}: {e}")
            log(f"  {peer} skipped: {e}")
    return steps, to_float


def run_workload(w: Workload, mods: dict[str, Any], cfg: dict[str, Any],
                 notes: list[str]) -> dict[str, Any]:
    try:
        steps, to_float = _build(w, mods, notes)
    except impl_funcdl.Unavailable as e:
        notes.append(f"{w.name}: workload skipped: {e}")
        log(f"  skipped: {e}")
        return {"label": w.label, "skipped": str(e)}

    # Two steps each from the same weights: the first loss checks the forward pass, the
    # second the gradients and the update.
    losses: dict[str, list[float]] = {}
    first_call: dict[str, float] = {}
    for impl, step in steps.items():
        t = time.perf_counter()
        l1 = to_float[impl](step())
        first_call[impl] = time.perf_counter() - t
        losses[impl] = [l1, to_float[impl](step())]
    ref = losses["funcdl"]
    rel = max(abs(a - b) / max(abs(b), 1e-30) for v in losses.values() for a, b in zip(v, ref))
    for impl, v in losses.items():
        if not all(math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL) for a, b in zip(v, ref)):
            msg = (f"WARNING {w.name}: {impl}'s losses {v} differ from funcdl's {ref} beyond "
                   f"float32 tolerance: the implementations compute different math")
            notes.append(msg)
            log(msg)

    timing.wait_quiet(cfg["max_wait"], log=log)
    before = timing.cpu_snapshot()
    groups = [{i: steps[i] for i in ("funcdl", "numpy")},
              *({p: steps[p]} for p in peers.PEERS if p in steps)]
    slices: dict[str, list[float]] = {}
    times = timing.interleaved(groups, cfg["budget"], cfg["rounds"], cfg["warmup"],
                               cfg["settle"], slices=slices)
    others = timing.others_share(before, timing.cpu_snapshot())
    probe_after = timing.blas_probe()
    if others is not None and others > 0.1:
        msg = (f"WARNING {w.name}: other processes kept {others:.0%} of the cores busy while "
               f"it was timed; its figures are unreliable, rerun on a quiet machine")
        notes.append(msg)
        log(msg)
    impls = {impl: {**timing.summary(t), "first_call_ms": first_call[impl] * 1e3}
             for impl, t in times.items()}
    for impl in ("funcdl", "numpy"):
        impls[impl]["tracemalloc_peak_kib"] = timing.tracemalloc_peak(steps[impl]) / 1024
    for impl, r in impls.items():
        n = max(3, min(50, round(0.1 / (r["median_us"] * 1e-6))))
        r["page_faults_per_step"] = timing.faults_per_step(steps[impl], n)
    f = impls["funcdl"]["median_us"]
    ratios = {impl: f / r["median_us"] for impl, r in impls.items() if impl != "funcdl"}
    # funcdl and the floor alternate slice by slice: compare them slice by slice.
    ratios["numpy"] = timing.paired_ratio(slices["funcdl"], slices["numpy"])
    ratio_of_medians = f / impls["numpy"]["median_us"]
    log("  " + ", ".join(f"{i} {r['median_us']:,.0f} µs" for i, r in impls.items())
        + " | funcdl/" + ", funcdl/".join(f"{i} {v:.2f}" for i, v in ratios.items()))
    return {"label": w.label, "impls": impls, "ratios": ratios,
            "numpy_ratio_of_medians": ratio_of_medians, "slices": len(slices["numpy"]),
            "losses": losses,
            "loss_rel_diff": rel, "others_cpu_share": others,
            "blas_probe_after_gflops": probe_after}


# ---------------------------------------------------------------------------- fresh processes

def _children(impl: str, workload: str, steps: int, repeats: int,
              notes: list[str]) -> list[dict[str, Any]]:
    out = []
    for _ in range(repeats):
        try:
            out.append(timing.child(impl, workload, steps))
        except RuntimeError as e:
            notes.append(f"fresh process {impl}/{workload} failed: {e}")
            log(f"  {impl}/{workload} failed: {e}")
            break
    return out


def startup(impls: list[str], cfg: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    timing.wait_quiet(cfg["max_wait"], log=log)
    before = timing.cpu_snapshot()
    log(f"startup: import times, median of {cfg['import_repeats']} fresh processes")
    imp = timing.import_seconds([i for i in impls if i != "numpy"] + ["numpy"],
                                cfg["import_repeats"])
    for m, r in imp.items():
        if m:
            log(f"  import {m}: " + (f"{r['seconds']:.3f} s" if "seconds" in r else r["error"]))
    log(f"startup: first disk step from process start, median of {cfg['first_repeats']}")
    first: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {i: [] for i in impls}
    for rep in range(cfg["first_repeats"] + 1):  # interleaved, after an untimed round
        for impl in impls:
            got = _children(impl, "disk", 1, 1, notes)
            if rep:
                runs[impl] += got
    for impl, rs in runs.items():
        if rs:
            first[impl] = {"seconds": statistics.median(r["first_step"] for r in rs),
                           "imported": statistics.median(r["imported"] for r in rs),
                           "built": statistics.median(r["built"] for r in rs),
                           "rss_peak_mib": max(r["rss_peak_mib"] for r in rs), "runs": rs}
            log(f"  {impl}: {first[impl]['seconds']:.3f} s "
                f"(imports done at {first[impl]['imported']:.3f} s)")
    # The children are this process's, but not counted in its own CPU time: the share of
    # the cores they and the others used, minus about one core for the child, is the noise.
    busy = timing.others_share(before, timing.cpu_snapshot())
    return {"import": imp, "first_step": first, "repeats": cfg["import_repeats"],
            "first_step_repeats": cfg["first_repeats"], "cores_busy_share": busy}


def memory(names: list[str], impls: list[str], notes: list[str]) -> dict[str, Any]:
    log("memory: peak RSS of a fresh process per workload and implementation (5 steps)")
    out: dict[str, Any] = {}
    for name in names:
        for impl in impls:
            rs = _children(impl, name, 5, 1, notes)
            if rs:
                out.setdefault(name, {})[impl] = {k: rs[0][k] for k in
                                                  ("rss_imported_mib", "rss_peak_mib")}
        log(f"  {name}: " + ", ".join(f"{i} {r['rss_peak_mib']:.0f} MiB"
                                      for i, r in out.get(name, {}).items()))
    return out


# ---------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    t_start, load_start = time.perf_counter(), os.getloadavg()
    cfg = ({"budget": 0.04, "rounds": 1, "warmup": 0.02, "settle": 0.12, "import_repeats": 1,
            "first_repeats": 1} if args.quick else
           {"budget": 0.3, "rounds": 4, "warmup": 0.15, "settle": 0.12, "import_repeats": 11,
            "first_repeats": 3})
    cfg["max_wait"] = args.max_wait
    notes: list[str] = []
    if not args.default_malloc:
        # One process-wide setting, so funcdl, the floor and the peers all run under it.
        import funcdl.perf

        done = funcdl.perf.retain_freed_memory()
        notes.append("malloc: funcdl.perf.retain_freed_memory() " +
                     ("applied to this whole process (all implementations); --default-malloc "
                      "to measure without it" if done else "unavailable (not glibc)"))
    mods: dict[str, Any] = {}
    for peer in peers.PEERS:
        if args.no_peers:
            mods[peer], why = None, "--no-peers"
        else:
            mods[peer], why = peers.available(peer)
        if mods[peer] is None:
            notes.append(f"{peer} skipped: {why}")
            log(f"{peer} skipped: {why}")
    impls = ["funcdl", "numpy", *(p for p, m in mods.items() if m is not None)]

    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        notes.append("this environment sets PYTHONDONTWRITEBYTECODE; the fresh processes "
                     f"run without it, caching bytecode in {timing.PYCACHE}, as a user's "
                     "Python would")
    res: dict[str, Any] = {**report.stamp(), "machine": report.machine(mods),
                           "options": {"quick": args.quick, "only": args.only,
                                       "no_peers": args.no_peers, **cfg},
                           "notes": notes, "loadavg_start": load_start}
    for _ in range(1 if args.quick else 5):  # calibrate: the best the machine gives now
        timing.blas_probe()
        time.sleep(0.2)
    res["startup"] = startup(impls, cfg, notes)
    res["workloads"] = {}
    for name in args.only:
        log(f"{name}: {WORKLOADS[name].label}")
        res["workloads"][name] = run_workload(WORKLOADS[name], mods, cfg, notes)
    ran = [n for n, r in res["workloads"].items() if "skipped" not in r]
    if args.quick:
        res["memory"] = {}
        notes.append("--quick: no per-workload peak RSS (fresh processes) measured")
    else:
        res["memory"] = memory(ran, impls, notes)
    res["loadavg_end"] = os.getloadavg()
    res["blas_probe"] = timing.probes()
    res["process_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["targets"] = report.check_targets(res)
    res["elapsed_s"] = time.perf_counter() - t_start
    md, js = report.write(res, args.out)
    print(report.markdown(res), end="")
    log(f"wrote {md} and {js} in {res['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
