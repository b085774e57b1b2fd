"""``python -m benchmarks.instructions [WORKLOAD ...] [--against REV ...] [--steps N]``

Instructions per training step, counted by valgrind's callgrind: funcdl's step (the one
``python -m benchmarks`` times) and the hand-written NumPy floor's, with their ratio. Unlike
a time, the count does not move with the VM's neighbours, its clock or the other core: it
is the same from run to run on one machine, so that a change of a few percent in funcdl's
per-step overhead (the disk step's Python and NumPy calls) shows where timings on a shared
VM cannot tell it from noise. It is not a time: a cache miss or a page fault costs no
instruction, and the kernel's work is not counted; the timed benchmarks stay the measure
of speed.

``--against REV`` counts funcdl as of a git revision too (its ``funcdl/`` exported by
``git archive``; the workloads and the floor stay this tree's), alongside the working
tree. A step's count is ``(I(w + n) - I(w)) / n`` for two processes that run ``w`` warm-up
steps and ``w + n``: the imports, the building and the warm-up cancel. One BLAS thread.
Skipped, saying so, when valgrind is not installed. The disk step takes a minute or two
per tree; resmlp and cnn take minutes per count (valgrind runs their BLAS ~50x slower).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .workloads import NAMES, chosen

ROOT = Path(__file__).resolve().parent.parent
WARM = 5
STEPS = {"disk": 300, "resmlp": 20, "mlp": 10, "cnn": 4}  # a few seconds under valgrind each
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(impl: str, workload: str, steps: int) -> None:
    """Build ``workload``'s step for ``impl`` ('funcdl' or 'numpy') and run it ``steps``
    times (the process valgrind counts)."""
    from . import workloads

    w = workloads.WORKLOADS[workload]
    x, y = workloads.data(w)
    if impl == "funcdl":
        import funcdl

        from . import impl_funcdl

        funcdl.perf.retain_freed_memory()  # as python -m benchmarks runs every side
        step = impl_funcdl.make_step(w, impl_funcdl.init(w), x, y)
    else:
        from . import floor

        step = floor.make_step(w, workloads.random_params(w), x, y)
    for _ in range(steps):
        step()


def count(impl: str, workload: str, steps: int, funcdl_dir: Path) -> int:
    """Instructions of a process running ``steps`` steps, funcdl imported from
    ``funcdl_dir`` (a directory holding a ``funcdl`` package)."""
    code = (f"import sys; sys.path[:0] = [{str(funcdl_dir)!r}, {str(ROOT)!r}]; "
            f"from benchmarks.instructions import child; "
            f"child({impl!r}, {workload!r}, {steps})")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONHASHSEED="0")  # a str's hash moves dicts' and sets' probing otherwise
    # without address randomisation too, two runs of one count agree to the instruction
    norandom = ["setarch", "-R"] if shutil.which("setarch") else []
    env.pop("PYTHONPATH", None)
    out = subprocess.run([*norandom, "valgrind", "--tool=callgrind",
                          "--callgrind-out-file=/dev/null", sys.executable, "-c", code],
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
                         check=False)
    found = _COLLECTED.search(out.stderr)
    if out.returncode or not found:
        raise SystemExit(f"valgrind failed for {impl} {workload}:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_step(impl: str, workload: str, funcdl_dir: Path, n: int) -> float:
    """``(I(WARM + n) - I(WARM)) / n``, the two processes run side by side (a count does not
    depend on what else runs)."""
    with ThreadPoolExecutor(2) as pool:
        long, short = pool.map(lambda k: count(impl, workload, k, funcdl_dir), (WARM + n, WARM))
    return (long - short) / n


def export(rev: str, into: Path) -> Path:
    """``rev``'s ``funcdl/`` under ``into``; returns the directory holding it."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                         capture_output=True, text=True, check=True).stdout.strip()
    dest = into / sha
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "funcdl"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workloads", nargs="*", help=f"of {list(NAMES)} (default: disk)")
    ap.add_argument("--against", action="append", default=[], metavar="REV",
                    help="also count funcdl as of this git revision (repeatable)")
    ap.add_argument("--steps", type=int, default=0,
                    help="counted steps per workload (default: by workload, 4 to 200)")
    args = ap.parse_args(argv)
    names = chosen(ap, args.workloads, ["disk"])
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt install valgrind)")
        return
    head = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        trees = [(f"funcdl {head or 'working tree'}", ROOT)]
        trees += [(f"funcdl {rev}", export(rev, Path(tmp))) for rev in args.against]
        print("# instructions per training step (valgrind callgrind; 1 BLAS thread)")
        print(f"# command: python -m benchmarks.instructions {' '.join(sys.argv[1:])}")
        print("| workload | counted steps | NumPy floor | "
              + " | ".join(f"{t} | /floor" for t, _ in trees) + " |")
        print("|---|--:|--:|" + "--:|--:|" * len(trees))
        for name in names:
            n = args.steps or STEPS[name]
            floor = per_step("numpy", name, ROOT, n)
            cells = []
            for _, where in trees:
                own = per_step("funcdl", name, where, n)
                cells += [f"{own:,.0f}", f"{own / floor:.3f}x"]
            print(f"| {name} | {n} | {floor:,.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
