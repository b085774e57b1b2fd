"""Reproduce the five reference reports (../shared/seeds/) with funcdl, side by side with
their published numbers, in one command.

  000  Table 1: six 2-25-25-25-1 networks (ReLU / Tanh / Sigmoid x normal / uniform init),
       Sigmoid output, MSE, SGD lr 0.01, batch 50, 250 epochs, 15 runs.
  001  ReLU network with Tanh output, Xavier init, SGD lr 0.1: accuracy after 10, 50 and 200
       epochs over 10 runs, time per epoch, decision regions after 100 epochs; the same
       network in PyTorch on the same data when torch is installed.
  002  Table I: Net_1 (Tanh, ReLU, ReLU, Sigmoid) with MSE / BCE x SGD / Adam and the
       weight-sharing variants, 250 epochs; output map and training curves.
  003  Tanh against ReLU: loss against epoch averaged over 30 models; prediction plots.
  004  2-10-10-1 ReLU, Kaiming init, zero biases: first-pair gradients checked against
       finite differences; the loss before any update and after each.

Every run is a pure function of its config (explicit keys from the report's seed and the
run index), so the runs go to a process pool over the cores, one BLAS thread each. Writes
``REPORT.md`` and PNG figures (with matplotlib) to ``--out``.

    python examples/reproduce.py [--quick] [--workers N] [--reports 000 ...] [--out DIR]
        [--scheduler ADDRESS]
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _pinned_process() -> bool:
    """True when this process runs the training: the script itself, or a pool worker. Each
    worker trains one small network at a time, so one BLAS thread per process is fastest and
    leaves the cores to the other workers. The variables must be set before NumPy is imported
    (OpenBLAS reads them when it loads), so this runs first; a pool initializer would be too
    late. When merely imported (tests, notebooks), the caller's environment is left alone."""
    return (__name__ in ("__main__", "__mp_main__")
            or multiprocessing.current_process().name != "MainProcess")


if _pinned_process():
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[_var] = "1"

import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helper modules next to this script
    sys.path.insert(0, str(HERE))

import _cli  # noqa: E402
import _repro_plots  # noqa: E402
import _repro_published  # noqa: E402
import _repro_report  # noqa: E402
import _repro_runs  # noqa: E402
import _train  # noqa: E402
from _cli import positive_int  # noqa: E402

from funcdl import sweep  # noqa: E402

# (runs, epochs) per report; the full settings are the reports' where they give them.
FULL = {"000": (15, 250), "001": (10, 200), "002": (10, 250), "003": (30, 100),
        "004": (1, 1000)}
QUICK = {"000": (2, 3), "001": (2, 4), "002": (2, 3), "003": (3, 3), "004": (1, 20)}
DATA = {"n_train": 1000, "n_test": 1000, "batch": 50}

NETS_000 = [(act, init) for act in ("relu", "tanh", "sigmoid") for init in ("normal", "uniform")]
NETS_002 = [  # name, loss, optimizer, lr, weight decay, weight sharing
    ("MSE_SGD", "mse", "sgd", 0.5, 1e-4, False),
    ("BCE_SGD", "bce", "sgd", 0.3, 1e-4, False),
    ("MSE_Adam", "mse", "adam", 1e-3, 0.0, False),
    ("BCE_Adam", "bce", "adam", 1e-3, 0.0, False),
    ("WS_MSE_SGD", "mse", "sgd", 0.5, 1e-4, True),
    ("WS_MSE_Adam", "mse", "adam", 1e-3, 0.0, True),
]
NETS_003 = [("Tanh", "tanh", "xavier_normal"), ("ReLU", "relu", "he_normal")]
NETS_001 = [("funcdl (Xavier)", "xavier_uniform"), ("funcdl (PyTorch's init)", "uniform")]


def make_configs(quick: bool = False, torch: bool = False,
                 reports: list[str] | None = None) -> list[dict[str, Any]]:
    """Every run (of ``reports``, default all) as a config dict, the slowest first, so that
    the pool ends evenly."""
    plan = QUICK if quick else FULL
    out: list[dict[str, Any]] = []

    def add(report: str, order: int, name: str, **kw: Any) -> None:
        runs, epochs = plan[report]
        for run in range(runs):
            out.append({"report": report, "order": order, "name": name, "run": run,
                        "seed": int(report), "epochs": epochs, **DATA, **kw})

    for i, (name, loss, opt, lr, wd, shared) in reversed(list(enumerate(NETS_002))):
        add("002", i, name, loss=loss, opt=opt, lr=lr, wd=wd, shared=shared)
    for i, (act, init) in enumerate(NETS_000):
        add("000", i, f"{_repro_published.ACT_NAMES[act]} ({init})", act=act, init=init,
            lr=0.01, reduction="sum")
    epochs_001 = plan["001"][1]
    checkpoints = (10, 50, 200) if not quick else (1, 2, epochs_001)
    for i, (name, init) in enumerate(NETS_001):
        add("001", i, name, init=init, lr=0.1, checkpoints=checkpoints,
            snapshot_epoch=min(100, epochs_001 // 2 or 1), torch=torch and i == 0)
    for i, (name, act, init) in enumerate(NETS_003):
        add("003", i, name, act=act, init=init, lr=0.05)
    add("004", 0, "2-10-10-1", lr=0.1)
    return [c for c in out if reports is None or c["report"] in reports]


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """One training run: a pure function of its config (top level, so a pool can pickle it).
    Adds the run's CPU time, which other processes on the machine do not inflate."""
    start = time.process_time()
    result = _repro_runs.RUNS[config["report"]](config)
    return {**result, "cpu_seconds": time.process_time() - start}


def run_all(configs: list[dict[str, Any]], workers: int,
            scheduler: str | None = None) -> list[dict[str, Any]]:
    """``run_one`` over ``configs`` on ``workers`` processes; results in config order.

    Workers are spawned, not forked: each starts a fresh interpreter that imports this module
    (as ``__mp_main__`` when run as a script, or by name from the test, the module's folder
    being on ``sys.path``), so the thread pinning at the top runs before NumPy loads there,
    whatever state the parent's NumPy is in; fork would copy a parent whose OpenBLAS may
    already run several threads (under pytest), which Python 3.12+ warns about."""
    if scheduler:  # an existing Dask cluster: its workers run the same pure function
        import cloudpickle  # type: ignore[import-untyped]  # Dask's pickler
        from distributed import Client

        # The cluster's processes need not have this folder on their path: ship the code of
        # run_one, the runs module and its training loop with each task (a script's __main__
        # goes so already).
        for module in {_repro_runs, _train, sys.modules[run_one.__module__]}:
            if module.__name__ != "__main__":
                cloudpickle.register_pickle_by_value(module)

        try:
            client = Client(scheduler, timeout=10)
        except OSError as err:  # an address nobody answers at: say so, not a traceback
            raise SystemExit(f"reproduce.py: no Dask scheduler answers at {scheduler} ({err}); "
                             f"start one with `dask scheduler` and workers with `dask worker "
                             f"{scheduler}`, or leave out --scheduler to run here") from None
        with client:
            return sweep.run(run_one, configs, client.get_executor(),  # type: ignore[return-value]
                             strict=True)
    if workers <= 1:
        return [run_one(c) for c in configs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return sweep.run(run_one, configs, pool, progress=False,  # type: ignore[return-value]
                         strict=True)


def group(configs: list[dict[str, Any]], results: list[dict[str, Any]]
          ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{report: {name: [result of run 0, run 1, ...]}}``, each result with its config; the
    networks of a report in the order the report lists them."""
    pairs = sorted(zip(configs, results, strict=True),
                   key=lambda p: (p[0]["report"], p[0]["order"], p[0]["run"]))
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for config, result in pairs:
        runs = out.setdefault(config["report"], {}).setdefault(config["name"], [])
        runs.append({**result, "config": config})
    return out


def torch_version() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return None
    return importlib.metadata.version("torch")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a few epochs and runs: a smoke test of every table and figure")
    parser.add_argument("--workers", type=positive_int, default=len(os.sched_getaffinity(0))
                        if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                        help="processes that train the runs, 1 to train in this one; "
                             "unused with --scheduler (default: %(default)s, the cores this "
                             "process may use)")
    _cli.add_out(parser, HERE / "output", "REPORT.md and the figures")
    parser.add_argument("--reports", nargs="+", choices=sorted(FULL), default=None,
                        help="reproduce only these reports (default: all five)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on an existing Dask scheduler (e.g. tcp://host:8786) "
                             "instead of local processes")
    args = _cli.parse(parser, argv)
    torch = torch_version()
    configs = make_configs(args.quick, torch is not None, args.reports)
    where = (f"the Dask scheduler at {args.scheduler}" if args.scheduler
             else f"{args.workers} worker process(es)")
    print(f"{len(configs)} runs on {where}"
          f"{' (quick)' if args.quick else ''}; PyTorch: {torch or 'not installed'}")
    start = time.perf_counter()
    results = group(configs, run_all(configs, args.workers, args.scheduler))
    wall = time.perf_counter() - start
    print(f"trained in {wall:.1f} s")
    figures = _repro_plots.draw_all(results, args.out)
    if not figures:
        print("matplotlib is not installed: no figures (pip install funcdl[examples])")
    cpu_by_report = {k: sum(r["cpu_seconds"] for runs in res.values() for r in runs)
                     for k, res in results.items()}
    cpu = sum(cpu_by_report.values())
    # --workers is not used with --scheduler: the cluster's own workers ran the runs
    workers = None if args.scheduler else args.workers
    per = f" ({cpu / workers:.1f} s per worker)" if workers else " (on the Dask cluster)"
    print(f"CPU time of the runs: {cpu:.1f} s{per}; by "
          f"report: {', '.join(f'{k} {v:.1f} s' for k, v in cpu_by_report.items())}")
    meta = {"quick": args.quick, "wall": wall, "cpu": cpu, "cpu_by_report": cpu_by_report,
            "workers": workers, "torch": torch, "runs": len(configs), "figures": figures}
    text = _repro_report.render(results, meta)
    path = args.out / "REPORT.md"
    path.write_text(text, encoding="utf-8")
    print(_repro_report.summary(results))
    print(f"wrote {path} and {len(figures)} figures; total {time.perf_counter() - start:.1f} s")
    return {"results": results, "report": path, "figures": figures, "wall": wall,
            "configs": configs}


if __name__ == "__main__":
    main()
