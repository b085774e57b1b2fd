"""Clocks: per-step times in this process, tracemalloc peaks, and fresh-subprocess
measurements (import time, time from process start to the end of the first step, peak RSS).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "REPO",
    "blas_probe",
    "child",
    "cpu_snapshot",
    "faults_per_step",
    "import_seconds",
    "interleaved",
    "others_share",
    "probes",
    "summary",
    "tracemalloc_peak",
    "wait_quiet",
]

REPO = Path(__file__).resolve().parent.parent
# Fresh processes run as a user's would: with bytecode caching on, even when this shell
# sets PYTHONDONTWRITEBYTECODE (the cache goes to a temporary directory, not the repo), and
# JAX told that there is only a CPU (no probing for accelerators).
PYCACHE = Path(tempfile.gettempdir()) / "funcdl-bench-pycache"
CHILD_ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
             "PYTHONPYCACHEPREFIX": str(PYCACHE),
             "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall s, busy CPU s of the whole machine, CPU s of this process), from /proc/stat;
    None where there is no /proc."""
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    busy = (sum(vals) - vals[3] - vals[4]) / tick  # all but idle and iowait
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system


def others_share(a: tuple[float, float, float] | None,
                 b: tuple[float, float, float] | None) -> float | None:
    """The fraction of all cores that other processes kept busy between two snapshots:
    a contention check (a benchmark on a shared machine is only as good as its quiet)."""
    if a is None or b is None or b[0] <= a[0]:
        return None
    other = (b[1] - a[1]) - (b[2] - a[2])
    return max(other, 0.0) / ((b[0] - a[0]) * (os.cpu_count() or 1))


_PROBE: dict[str, Any] = {"best": 0.0, "seen": []}


def blas_probe() -> float:
    """GFLOP/s of a 512³ float32 matrix product with NumPy's default threads, best of 3
    (about 10 ms). On a shared virtual machine this swings by 10x from second to second
    when the host is busy, even though the guest's /proc/stat shows no steal; every probe is
    kept and reported, and ``wait_quiet`` waits for a good one."""
    import numpy as np

    a = np.full((512, 512), 0.5, np.float32)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    gflops = 2 * 512**3 / best / 1e9
    _PROBE["best"] = max(_PROBE["best"], gflops)
    _PROBE["seen"].append(round(gflops, 1))
    return gflops


def probes() -> dict[str, Any]:
    seen = _PROBE["seen"]
    return {"gflops": seen, "min": min(seen, default=None), "max": max(seen, default=None),
            "median": statistics.median(seen) if seen else None}


def wait_quiet(max_wait: float, threshold: float = 0.1,
               log: Callable[[str], None] = print) -> tuple[float | None, float]:
    """Wait, up to ``max_wait`` seconds, until other processes use at most ``threshold`` of
    the cores (over 0.3 s) and the BLAS probe reaches 60% of the best seen in this run.
    Returns the last (others' share, probe GFLOP/s)."""
    deadline = time.perf_counter() + max_wait
    warned = False
    while True:
        a = cpu_snapshot()
        time.sleep(0.3)
        share = others_share(a, cpu_snapshot())
        gflops = blas_probe()
        busy = share is not None and share > threshold
        slow = gflops < 0.6 * _PROBE["best"]
        if not (busy or slow) or time.perf_counter() >= deadline:
            return share, gflops
        if not warned:
            why = (f"other processes use {share:.0%} of the cores" if busy else
                   f"the BLAS probe gives {gflops:.0f} GFLOP/s (best {_PROBE['best']:.0f})")
            log(f"  {why}; waiting up to {max_wait:.0f} s for a quiet machine")
            warned = True
        time.sleep(0.5)


def interleaved(groups: list[dict[str, Callable[[], Any]]], budget: float, rounds: int,
                warmup: float, settle: float, slice_s: float = 0.01,
                slices: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Per-call times (s) of each step; ``budget`` seconds of timed calls per step.
    ``slices``, when given, receives each step's median per slice, in order: within a
    group, slice k of one step and slice k of another ran back to back (see
    ``paired_ratio``).

    The groups take turns, ``rounds`` times. Within a group's turn its steps alternate in
    slices of about ``slice_s`` seconds, so that the machine's swings (see ``blas_probe``)
    hit them alike: put the steps that share a thread pool (funcdl and the NumPy floor both
    run on NumPy's BLAS) in one group. Before each turn: ``settle`` seconds of sleep, then
    untimed calls (``warmup`` seconds and at least 3 calls the first time: JIT compilation,
    caches, allocator pools; 2 calls later). The sleep matters when libraries with their own
    thread pools share a process: OpenBLAS's idle workers spin for about 0.1 s after a
    matrix product, and PyTorch's OpenMP workers then wait for a core (measured here:
    PyTorch's first step after NumPy's took 115 ms instead of 5 ms).
    """
    clock = time.perf_counter
    times: dict[str, list[float]] = {name: [] for g in groups for name in g}
    for r in range(rounds):
        for group in groups:
            time.sleep(settle)
            per_call: dict[str, float] = {}
            for name, step in group.items():
                least, span = (3, warmup) if r == 0 else (2, 0.0)
                calls, t0, last = 0, clock(), 0.0
                while calls < least or clock() - t0 < span:
                    t = clock()
                    step()
                    last = clock() - t
                    calls += 1
                per_call[name] = max(min(last, (clock() - t0) / calls), 1e-7)
            left = {n: max(1, round(budget / rounds / per_call[n])) for n in group}
            size = {n: max(1, round(slice_s / per_call[n])) for n in group}
            while all(left.values()):  # slices stay paired: a step that is done stops all
                for name, step in group.items():
                    out = times[name]
                    start = len(out)
                    for _ in range(min(size[name], left[name])):
                        t = clock()
                        step()
                        out.append(clock() - t)
                        left[name] -= 1
                    if slices is not None:
                        slices.setdefault(name, []).append(statistics.median(out[start:]))
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """The median over slices of ``a[k] / b[k]``: two steps timed in alternating slices
    (``interleaved``), compared slice by slice, so that a swing of the machine lasting
    longer than two slices (tens of ms) cancels out instead of landing on one of them."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def summary(times: list[float]) -> dict[str, float]:
    """Median and quartiles in µs, and the number of timed steps."""
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_us": statistics.median(times) * 1e6, "p25_us": q[0] * 1e6,
            "p75_us": q[2] * 1e6, "min_us": min(times) * 1e6, "steps": len(times)}


def tracemalloc_peak(step: Callable[[], Any]) -> float:
    """Peak bytes traced by tracemalloc during one (warm) step, above what was live before
    it. NumPy reports its array buffers to tracemalloc; torch's and XLA's allocators do
    not, so this is only meaningful for funcdl and the NumPy floor."""
    tracemalloc.start()
    try:
        step()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        step()
        return float(tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()


def faults_per_step(step: Callable[[], Any], n: int) -> float:
    """Minor page faults per step over ``n`` warm steps (``ru_minflt``, the whole process).
    Each is a page the kernel had to map and zero: glibc hands large freed blocks back to
    the OS (heap trimming, mmap), so a step that allocates big temporaries afresh each
    time faults on every page of them."""
    import resource

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def _run(args: list[str], python: str) -> tuple[float, str]:
    """Wall time (s) of ``python *args`` from spawn to exit, and its stdout."""
    t0 = time.perf_counter()
    done = subprocess.run([python, *args], cwd=REPO, env=CHILD_ENV, capture_output=True,
                          text=True, check=False)
    dt = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-800:]}")
    return dt, done.stdout


def import_seconds(modules: list[str], repeats: int,
                   python: str = sys.executable) -> dict[str, dict[str, Any]]:
    """``python -c "import M"`` minus ``python -c "pass"``, median of ``repeats`` fresh
    processes each, the runs of all modules interleaved, after one untimed run each (which
    fills the bytecode cache and the OS file cache)."""
    runs: dict[str, list[float]] = {m: [] for m in ["", *modules]}
    errors: dict[str, str] = {}
    for rep in range(repeats + 1):
        for m in runs:
            if m in errors:
                continue
            try:
                dt = _run(["-c", f"import {m}" if m else "pass"], python)[0]
            except RuntimeError as e:
                errors[m] = str(e)
                continue
            if rep:
                runs[m].append(dt)
    base = statistics.median(runs[""])
    out: dict[str, dict[str, Any]] = {"": {"seconds": base, "runs": runs[""]}}
    for m in modules:
        if m in errors:
            out[m] = {"error": errors[m]}
        else:
            out[m] = {"seconds": statistics.median(runs[m]) - base, "runs": runs[m]}
    return out


def child(impl: str, workload: str, steps: int, python: str = sys.executable
          ) -> dict[str, Any]:
    """Run ``python -m benchmarks._child impl workload steps`` in a fresh process; return
    its report with the times made relative to the moment of spawning (``time.time()``
    on both sides of the process boundary)."""
    spawned = time.time()
    _, out = _run(["-m", "benchmarks._child", impl, workload, str(steps)], python)
    rep: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    for k in ("imported", "built", "first_step", "done"):
        rep[k] -= spawned
    return rep
