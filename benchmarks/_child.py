"""A fresh process for one implementation: ``python -m benchmarks._child IMPL WORKLOAD STEPS``.

Imports only what ``IMPL`` needs, builds the workload, runs ``STEPS`` training steps and
prints one JSON line: wall-clock stamps (``time.time()``, made relative to the spawn by the
parent) after the imports, after building, after the first step and at the end, and the
peak RSS (VmHWM) after the imports and at the end. Used for "time from process
start to the end of the first training step" and for per-implementation peak memory.
"""

import json
import resource
import sys
import time


def _rss_mib() -> float:
    """Peak RSS so far, MiB: VmHWM of /proc/self/status. Not ru_maxrss: Linux carries the
    parent's high-water mark into a forked child across exec, so a child of a big process
    would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(impl: str, workload: str, steps: int) -> None:
    if impl == "funcdl":
        from . import impl_funcdl as lib
    elif impl == "numpy":
        from . import floor as lib
    elif impl in ("torch", "jax"):
        from . import peers
        peers.available(impl)
    else:
        raise SystemExit(f"unknown implementation {impl!r}")
    from . import workloads

    imported, rss_imported = time.time(), _rss_mib()
    w = workloads.WORKLOADS[workload]
    x, y = workloads.data(w)
    if impl == "funcdl":
        step = lib.make_step(w, lib.init(w), x, y)
    elif impl == "numpy":
        step = lib.make_step(w, workloads.random_params(w), x, y)
    else:
        step, _ = peers.make_step(impl, w, workloads.random_params(w), x, y)
    built = time.time()
    step()
    first = time.time()
    for _ in range(steps - 1):
        step()
    print(json.dumps({"impl": impl, "workload": workload, "steps": steps,
                      "imported": imported, "built": built, "first_step": first,
                      "done": time.time(), "rss_imported_mib": rss_imported,
                      "rss_peak_mib": _rss_mib()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
