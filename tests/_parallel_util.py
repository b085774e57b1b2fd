"""Helpers shared by the funcdl.parallel tests (one process, two ranks, sharded): run a
script in a subprocess, under ``mpiexec`` or not, with a timeout that kills the whole process
group on a hang; what every rank of an MPI script reports; a one-rank communicator."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from funcdl import _agree

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which(
    "mpiexec")
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="the mpi extra is not installed (mpi4py and mpiexec): pip install 'funcdl[mpi]'")
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def run(args: list[str], timeout: float = 60, env: dict[str, str] | None = None,
        mpi: bool = True, ranks: int = 2) -> subprocess.CompletedProcess[str]:
    """Run ``python args`` (under ``mpiexec -n ranks`` when ``mpi``); fail on a hang."""
    # -m mpi4py: one rank's uncaught error aborts every rank instead of leaving them waiting
    cmd = ([MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py"] if mpi
           else [sys.executable])
    cmd = [*cmd, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or ENV, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and every rank it started
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung for {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


SCRIPTS = Path(__file__).resolve().parent / "mpi_scripts"


# Both ways of summing: through the ranks' shared memory (the default on one machine) and
# one Allreduce (across machines; forced here by the switch).
PATHS = pytest.mark.parametrize("path", ["shared", "allreduce"])


def asks_mpi(name: str) -> bool:
    """Whether the environment variable ``name`` makes funcdl ask MPI (a launcher's, or
    FUNCDL_MPI*): what a test of the one-process path removes."""
    return name.startswith((*_agree._LAUNCHER_PREFIXES, "FUNCDL_MPI"))


def path_env(path: str) -> dict[str, str]:
    return {**ENV, "FUNCDL_MPI_SHARED_MEMORY": "1" if path == "shared" else "0"}


def every_rank_ok(out: str, case: str, path: str, ranks: int = 2) -> None:
    """Every rank of an MPI script printed that ``case`` passed, and which way it summed."""
    for r in range(ranks):
        assert f"rank {r} ok {case}" in out and f"rank {r} path {path}" in out


class OneRank:
    """A communicator of one rank that fails if any communication is attempted."""

    def Get_size(self):
        return 1

    def Get_rank(self):
        return 0

    def Allreduce(self, *args):
        raise AssertionError("size 1 must not communicate")

    Allgather = Bcast = Allreduce
