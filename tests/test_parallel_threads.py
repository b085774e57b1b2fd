"""Threads of a rank running parallel.pmean at once, each on a communicator of its own,
and one rank moving its calls to another thread: every result exact, no hang (one
Reducer per communicator: one for all let a thread free another's window mid-use, a
probe's segfaults and hangs in 5 of 6 runs; one per thread hung a rank that changed
threads alone, a review)."""

from __future__ import annotations

import threading

from _parallel_util import (
    PATHS,
    SCRIPTS,
    OneRank,
    every_rank_ok,
    needs_mpi,
    ok,
    path_env,
    run,
)

from funcdl import parallel


def test_one_reducer_per_communicator_from_any_thread():
    a, b = OneRank(), OneRank()
    seen = []
    t = threading.Thread(target=lambda: seen.append(parallel._reducer(a)))
    t.start()
    t.join()
    assert seen[0] is parallel._reducer(a) is not parallel._reducer(b)


@needs_mpi
@PATHS
def test_two_threads_per_rank_mean_at_once(path):
    out = ok(run([str(SCRIPTS / "threads_pmean.py"), "400"], timeout=120,
                 env=path_env(path)))
    every_rank_ok(out, "threads", path)
