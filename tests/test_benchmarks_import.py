"""Every script under benchmarks/ imports (nothing runs): a private name a benchmark reads
that the library renamed fails here, not at the next benchmark run (benchmarks/
checks_overhead.py read two loss helpers renamed months before). The peers (torch, jax)
are imported lazily by the scripts, so this needs neither."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__main__")


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # scripts run by path: _mpi
    before, env = set(sys.modules), dict(os.environ)
    try:
        importlib.import_module(f"benchmarks.{name}")
    finally:  # a script pins BLAS threads in os.environ as it loads: not for later tests'
        os.environ.clear()  # subprocesses
        os.environ.update(env)
    assert not {"torch", "jax", "mpi4py"} & (set(sys.modules) - before), \
        f"benchmarks.{name} imports a peer or MPI at import time"
