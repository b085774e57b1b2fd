"""Threads of a rank running parallel.pmean at once, each on a communicator of its own:
every result exact, no hang (one Reducer per thread; a shared one let a thread free
another's window mid-use: segfaults and hangs in 5 of 6 runs of a probe)."""

from __future__ import annotations

import threading

from _parallel_util import PATHS, SCRIPTS, every_rank_ok, needs_mpi, ok, path_env, run

from funcdl import parallel


def test_each_thread_has_its_own_reducer():
    seen = []
    t = threading.Thread(target=lambda: seen.append(parallel._reducer()))
    t.start()
    t.join()
    assert parallel._reducer() is parallel._reducer()
    assert seen[0] is not parallel._reducer()


@needs_mpi
@PATHS
def test_two_threads_per_rank_mean_at_once(path):
    out = ok(run([str(SCRIPTS / "threads_pmean.py"), "400"], timeout=120,
                 env=path_env(path)))
    every_rank_ok(out, "threads", path)
