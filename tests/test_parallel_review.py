"""A review of funcdl.parallel against Horovod's, torch DDP's and JAX's psum semantics: a
test per defect found (each failed before its fix), then the strongest checks added that
passed already. The two-rank cases are in tests/mpi_scripts/review_parallel.py; each test
launches ``mpiexec -n 2`` on one with a timeout that kills every rank on a hang, and skips,
saying why, without the mpi extra.

Defects:
* each ``data_parallel`` or ``sharded`` made and dropped (a sweep's run) left its shared
  windows mapped for the life of the process: 11 MB of /dev/shm per run of a 2 MB model,
  without bound (the windows are now the communicator's, shared by its reducers);
* one rank with ``sync_batch_stats=True`` and one without hung, each in its own sum (the
  params' agreement met the grads' agreement, of the same layout, and passed);
* a NamedTuple value came back a plain tuple over ranks, itself on one process;
* ``broadcast`` gave the other ranks a masked leaf's data without its mask (root kept it);
* a batch given as a list of rows of numbers, which value_and_grad reads, was refused by
  ``data_parallel`` and ``sync_batch_stats`` ("cannot count the examples").
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import pytest
from _parallel_util import PATHS, SCRIPTS, every_rank_ok, needs_mpi, ok, path_env, run

import funcdl as fd
from funcdl import layers as L
from funcdl import parallel

SCRIPT = str(SCRIPTS / "review_parallel.py")


def two_ranks(case: str, path: str = "shared", timeout: float = 60) -> str:
    """The report of ``case`` on 2 ranks, every rank having passed it."""
    out = ok(run([SCRIPT, case], env=path_env(path), timeout=timeout))
    every_rank_ok(out, case, path)
    return out


# ---------------------------------------------------------------------------- defects

@needs_mpi
@PATHS
def test_a_sweeps_wrappers_share_the_communicators_windows(path):
    # five runs, each with its own data_parallel and sharded: two windows in all (they
    # opened ten); 24 runs of new layouts: at most _WINDOWS mapped (34 were), none freed
    # under a result still held, the oldest freed by another run once it is not
    two_ranks("windows", path)


@needs_mpi
def test_ranks_disagreeing_on_sync_batch_stats_raise_instead_of_hanging():
    # on a communicator in use, and as its first call (then MPI aborted); and
    # sync_batch_stats(fn) as a communicator's first call against another rank's pmean
    out = two_ranks("sync_mismatch", timeout=30)
    for r in (0, 1):
        for case in ("sync-on-one", "sync-on-one-cold"):
            assert re.search(rf"rank {r} {case} ValueError: .*rank 0 called parallel."
                             r"data_parallel\(sync_batch_stats=True\) where rank 1 called "
                             r"parallel.data_parallel; every rank must call the same", out)
        assert re.search(rf"rank {r} sync-vs-pmean-cold ValueError: .*rank 0 called parallel."
                         r"sync_batch_stats where rank 1 called parallel.pmean", out)


@needs_mpi
def test_over_ranks_a_value_a_list_batch_and_a_masked_leaf_behave_as_on_one_process():
    # a NamedTuple value stays one; a list of rows is weighted by its rows (4 : 3) and
    # gives the global batch's grads; a masked leaf is refused by broadcast on every rank
    out = two_ranks("types")
    for r in (0, 1):
        assert re.search(rf"rank {r} masked-broadcast TypeError: parallel.broadcast: the leaf "
                         r"at \['m'\] is a masked array, whose mask would not reach", out)


class Out(NamedTuple):
    loss: float
    hits: int


def test_one_process_returns_the_value_as_given_the_reference_for_the_ranks():
    value = Out(2.0, 3)
    got = parallel.data_parallel(lambda p, x: (value, {"g": np.ones(2)}))(None, np.ones((2, 1)))
    assert got[0] is value


def test_broadcast_refuses_a_masked_leaf_on_one_process_too():
    masked = np.ma.masked_array(np.ones(3), [0, 1, 0])
    for tree, where in (({"w": np.ones(2), "m": masked}, r"\['m'\]"), (masked, "the root")):
        with pytest.raises(TypeError, match=rf"parallel.broadcast: the leaf at {where} is a "
                                            r"masked array.*np.ma.getmaskarray\(a\)"):
            parallel.broadcast(tree)
    plain = {"w": masked.filled(0.0)}
    assert parallel.broadcast(plain) is plain


def test_data_parallel_counts_a_list_of_rows_as_value_and_grad_reads_it():
    model = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(1))
    _, params = model.init(fd.random.key(0), (None, 2))
    vg = fd.value_and_grad(model, fd.losses.mse)
    rows, y = [[0.5, -1.0], [2.0, 0.25], [1.0, 1.0]], np.ones((3, 1), np.float32)
    want_loss, want = vg(params, rows, y)
    for fn in (parallel.data_parallel(vg), parallel.sync_batch_stats(vg),
               parallel.data_parallel(vg, sync_batch_stats=True)):
        loss, grads = fn(params, rows, y)
        assert loss == want_loss
        fd.tree.map(np.testing.assert_array_equal, grads, want)
    from funcdl._rank_sums import examples
    assert examples(rows, "f") == 3 and examples([1.0, 2.0], "f") == 2
    assert examples([np.ones((5, 2)), np.ones(5)], "f") == 5  # a list batch [x, y]
    with pytest.raises(TypeError, match="cannot count the examples of x"):
        examples([], "f")


# ---------------------------------------------------------------------------- checks

@needs_mpi
@PATHS
def test_grads_a_caller_keeps_never_change(path):
    # 12 steps keeping every step's grads (past the window's 8 results and the 3 private
    # buffers kept), then keeping only the last, as a training loop does
    two_ranks("kept", path)


@needs_mpi
@PATHS
def test_mixed_dtypes_none_and_empty_trees_are_weighted_by_examples(path):
    out = two_ranks("mixed", path)
    for r in (0, 1):
        assert re.search(rf"rank {r} int-leaf TypeError: parallel.pmean: the leaf at \['n'\] "
                         r"has dtype int64", out)


@needs_mpi
@PATHS
def test_other_communicators_follow_their_own_ranks(path):
    # a split communicator in reverse rank order (pmean, broadcast from its root,
    # data_parallel and sharded exact against one process, a mismatch naming its ranks),
    # one of a single rank each (the identity), and comm=None as COMM_WORLD
    out = two_ranks("comms", path)
    for r in (0, 1):
        assert re.search(rf"rank {r} rev-mismatch ValueError: parallel.pmean: the trees differ "
                         r"across ranks at \['a'\]: rank 0 has a leaf of shape \(3,\)", out)
