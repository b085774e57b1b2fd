"""The machine description, the issue-5 targets, and the markdown / JSON reports."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMPLS", "TARGETS", "check_targets", "cpu_model", "machine", "markdown", "write"]

IMPLS = ("funcdl", "numpy", "torch", "jax")
TITLES = {"funcdl": "funcdl", "numpy": "NumPy floor", "torch": "PyTorch eager",
          "jax": "JAX jit"}

# Issue 5: (what, key into the results, limit); ratios are funcdl / peer, same run.
TARGETS = (
    ("disk step ≤ 0.5× PyTorch eager", ("ratio", "disk", "torch"), 0.5),
    ("disk step ≤ 1.3× NumPy floor", ("ratio", "disk", "numpy"), 1.3),
    ("mlp step ≤ 1.0× PyTorch eager", ("ratio", "mlp", "torch"), 1.0),
    ("mlp step ≤ 1.15× NumPy floor", ("ratio", "mlp", "numpy"), 1.15),
    ("cnn step ≤ 2× PyTorch eager", ("ratio", "cnn", "torch"), 2.0),
    ("`import funcdl` < 0.1 s", ("import", "funcdl"), 0.1),
    ("first disk step < 0.3 s from process start", ("first_step", "funcdl"), 0.3),
)


def _blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name and, on Linux, its L2 and L3 sizes: a VM's host can change from
    one session to the next under the same model name ("Intel(R) Xeon(R) Processor"), and
    the caches tell two hosts apart."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, size = ((index / f).read_text().strip() for f in ("level", "size"))
        except OSError:
            continue
        if level in ("2", "3"):
            caches.append(f"L{level} {size}")
    return f"{model} ({', '.join(caches)})" if caches else model


def _git() -> str:
    try:
        repo = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "funcdl"], cwd=repo,
                               text=True, capture_output=True, check=True).stdout.strip()
        return head + (" + uncommitted changes in funcdl/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(peers: dict[str, Any]) -> dict[str, Any]:
    """CPU, cores, versions; ``peers`` maps a peer's name to its imported module (or None)."""
    import funcdl

    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "blas": _blas(),
        "funcdl": f"{funcdl.__version__} (git {_git()})",
        "thread_env": {k: v for k, v in os.environ.items()
                       if k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                "XLA_FLAGS", "JAX_PLATFORMS")},
    }
    torch, jax = peers.get("torch"), peers.get("jax")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if jax is not None:
        info["jax"] = jax.__version__
        info["jax_devices"] = [str(d) for d in jax.devices()]
    return info


def stamp() -> dict[str, str]:
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join([sys.executable, "-m", "benchmarks", *sys.argv[1:]]),
            "cwd": os.getcwd()}


def _lookup(res: dict[str, Any], key: tuple[str, ...]) -> float | None:
    kind, *rest = key
    try:
        if kind == "ratio":
            return float(res["workloads"][rest[0]]["ratios"][rest[1]])
        if kind == "import":
            return float(res["startup"]["import"][rest[0]]["seconds"])
        return float(res["startup"]["first_step"][rest[0]]["seconds"])
    except (KeyError, TypeError):
        return None


def _import_share(res: dict[str, Any]) -> tuple[float, float] | None:
    """(funcdl's own import seconds, NumPy's), the first being import funcdl - import numpy."""
    try:
        imp = res["startup"]["import"]
        total, numpy = float(imp["funcdl"]["seconds"]), float(imp["numpy"]["seconds"])
    except (KeyError, TypeError):
        return None
    return total - numpy, numpy


def check_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for what, key, limit in TARGETS:
        v = _lookup(res, key)
        out.append({"target": what, "limit": limit, "measured": v,
                    "met": None if v is None else v <= limit})
    return out


# ---------------------------------------------------------------------------- markdown

def _f(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown(res: dict[str, Any]) -> str:
    m, wl = res["machine"], res["workloads"]
    peers = ", ".join(f"{TITLES[p]} {m[p]}" for p in ("torch", "jax") if p in m)
    threads = f"; torch threads: {m['torch_threads']}" if "torch_threads" in m else ""
    lines = [
        "# funcdl benchmarks", "",
        f"- command: `{res['command']}` (in `{res['cwd']}`)",
        f"- date: {res['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); "
        f"Python {m['python']}; NumPy {m['numpy']} ({m['blas']}); {peers or 'no peers'}"
        f"{threads}; thread env: {m['thread_env'] or 'none set'}; load average "
        f"{res['loadavg_start'][0]:.2f} at the start, {res['loadavg_end'][0]:.2f} at the end",
        f"- funcdl {m['funcdl']}; options: {res['options']}",
        f"- machine state: a 512³ float32 matrix product with NumPy's default threads gave "
        f"{_f(res['blas_probe']['min'])} to {_f(res['blas_probe']['max'])} GFLOP/s (median "
        f"{_f(res['blas_probe']['median'])}) over {len(res['blas_probe']['gflops'])} probes "
        "during this run; each workload waited for a probe within 60% of the best", "",
        "## Training step: median µs per step (forward, loss, backward, SGD lr 0.01), float32",
        "",
        "| workload | funcdl | NumPy floor | PyTorch eager | JAX jit "
        "| funcdl/NumPy | funcdl/torch | funcdl/JAX |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, r in wl.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} ||||||| ")
            continue
        med = [r["impls"].get(i, {}).get("median_us") for i in IMPLS]
        rat = [r["ratios"].get(i) for i in IMPLS[1:]]
        lines.append(f"| {name}: {r['label']} | " + " | ".join(_f(v) for v in med) + " | "
                     + " | ".join(_f(v, "{:.2f}×") for v in rat) + " |")
    lines += ["", "A ratio below 1 means funcdl is faster. funcdl and the floor alternate in "
              "~10 ms slices (same BLAS pool), and funcdl/NumPy is the median over the slice "
              "pairs of funcdl's time over the floor's, so that the machine's swings cancel "
              "(the ratio of the two medians is in the JSON file); each peer runs in its own "
              "turns, and its ratio is of medians. Quartiles, step counts, first-call times "
              "(JAX: compilation) and contention checks: the JSON file written with this "
              "one.", ""]

    st = res["startup"]
    lines += ["## Startup, in fresh processes", "",
              "| implementation | import (s) | first disk step done, from spawn (s) "
              "| of which import (s) | peak RSS (MiB) |", "|---|--:|--:|--:|--:|"]
    for impl in IMPLS:
        imp = st["import"].get(impl, {})
        fs = st["first_step"].get(impl, {})
        if not imp and not fs:
            continue
        lines.append(f"| {TITLES[impl]} | {_f(imp.get('seconds'), '{:.3f}')} | "
                     f"{_f(fs.get('seconds'), '{:.3f}')} | {_f(fs.get('imported'), '{:.3f}')} "
                     f"| {_f(fs.get('rss_peak_mib'), '{:.0f}')} |")
    own = ""
    if "seconds" in st["import"].get("funcdl", {}) and "seconds" in st["import"]["numpy"]:
        own = (f" funcdl's own share (import funcdl minus import numpy): "
               f"{st['import']['funcdl']['seconds'] - st['import']['numpy']['seconds']:.3f} s.")
    lines += ["", f"Import: `python -c \"import M\"` minus `python -c \"pass\"` "
              f"({st['import']['']['seconds']:.3f} s), median of {st['repeats']} runs.{own} "
              "First step: wall time from spawning `python -m benchmarks._child IMPL disk 1` "
              f"to the end of its first step, median of {st['first_step_repeats']}; "
              "the NumPy floor's row imports numpy only.", ""]

    lines += ["## Memory", "",
              "| workload | funcdl step, tracemalloc peak (KiB) | NumPy floor step (KiB) | "
              + " | ".join(f"{TITLES[i]}: peak RSS (MiB), page faults/step" for i in IMPLS)
              + " |", "|---|--:|--:|--:|--:|--:|--:|"]
    for name, r in wl.items():
        if "skipped" in r:
            continue
        tm = [r["impls"].get(i, {}).get("tracemalloc_peak_kib") for i in ("funcdl", "numpy")]
        cells = []
        for i in IMPLS:
            x = res["memory"].get(name, {}).get(i, {})
            rss = (f"{x['rss_peak_mib']:.0f} (+{x['rss_peak_mib'] - x['rss_imported_mib']:.0f})"
                   if x else "–")
            cells.append(f"{rss}, {_f(r['impls'].get(i, {}).get('page_faults_per_step'))}")
        lines.append(f"| {name} | {_f(tm[0])} | {_f(tm[1])} | " + " | ".join(cells) + " |")
    lines += ["", "tracemalloc: peak bytes allocated during one warm step above those live "
              "before it (NumPy buffers included; torch's and XLA's allocators are invisible "
              "to it, hence no figure). Peak RSS: VmHWM of a fresh process that imports the "
              "implementation and runs 5 steps (in brackets: the rise after the imports). "
              "Page faults: minor faults per warm step in this process (`ru_minflt`), pages "
              "the kernel maps and zeroes because glibc returned freed blocks to the OS; "
              "each costs about a microsecond. "
              f"This whole process: ru_maxrss {res['process_maxrss_mib']:.0f} MiB.", ""]

    lines += ["## Targets of issue 5", "", "| target | measured | met |", "|---|--:|:-:|"]
    for t in res["targets"]:
        unit = "×" if "×" in t["target"] else " s"
        fmt = "{:.2f}" + unit if unit == "×" else "{:.3f}" + unit
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        note = ""
        own = _import_share(res) if t["target"].startswith("`import funcdl`") else None
        if own is not None:
            note = f" (NumPy alone {own[1]:.3f} s, funcdl's own {own[0]:.3f} s)"
        lines.append(f"| {t['target']} | {_f(t['measured'], fmt)}{note} | {met} |")

    lines += ["", "## Agreement: loss of step 1 and step 2 from the same initial weights", "",
              "| workload | " + " | ".join(TITLES[i] for i in IMPLS) + " | max rel. diff |",
              "|---|--:|--:|--:|--:|--:|"]
    for name, r in wl.items():
        if "skipped" in r:
            continue
        cells = [" / ".join(f"{v:.6g}" for v in r["losses"][i]) if i in r["losses"] else "–"
                 for i in IMPLS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['loss_rel_diff']:.1e} |")
    if res["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in res["notes"])]
    return "\n".join(lines) + "\n"


def write(res: dict[str, Any], stem: Path) -> tuple[Path, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    # (not with_suffix: a stem holding a dot, run-2026.12.05, would lose its last part)
    md, js = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".json")
    md.write_text(markdown(res))
    js.write_text(json.dumps(res, indent=1, default=float) + "\n")
    return md, js
