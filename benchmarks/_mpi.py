"""What the MPI benchmark scripts share: the ``mpiexec`` to launch their ranks with, and the
environment that pins BLAS to a number of threads per rank. The scripts run as files
(``python benchmarks/data_parallel.py``), so they import this as ``_mpi``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def mpiexec() -> str | None:
    """The ``mpiexec`` beside this Python (the ``mpi`` extra's), else the first on PATH."""
    return (shutil.which("mpiexec", path=str(Path(sys.executable).parent))
            or shutil.which("mpiexec"))


def blas_env(threads: int) -> dict[str, str]:
    """This environment with BLAS set to ``threads`` threads, for children started before
    they import NumPy."""
    return {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
