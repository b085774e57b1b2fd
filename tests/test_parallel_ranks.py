"""funcdl.parallel over ranks: two (and three) ranks under mpiexec, and the summing
machinery they run on (reused buffers, shared-memory windows, packing, tree signatures).

The multi-rank checks live in tests/mpi_scripts/check_parallel.py; each test launches
``mpiexec -n 2`` on it with a timeout, and kills the whole process group if it expires, so
a rank that hangs fails the test instead of the run. One process: test_parallel.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from _parallel_util import PATHS, SCRIPTS, every_rank_ok, needs_mpi, ok, path_env, run
from conftest import EXAMPLES

import funcdl as fd
from funcdl._agree import signature
from funcdl._reduce import Reducer, as_tree, generations

# ---------------------------------------------------------------------------- two ranks

# What each case of tests/mpi_scripts/check_parallel.py checks, on every rank, both ways of
# summing: K data-parallel steps equal K single-process steps (float32 and float64, uneven
# shares); broadcast equalises params and pmean averages; three ranks sum every slot of
# uneven parts; wrt_input leaves each rank its rows of dx; results kept alive outlive more
# layouts than there are windows; a rank without examples whose empty mean is NaN adds
# nothing; each leaf of a mean comes back as the kind of value it was (a NumPy scalar, a
# 0-d array, a Python float), as on one process; sync_batch_stats gives BatchNorm the
# global batch's statistics (one process's params and state, on every rank alike).
CASES = [("equivalence", 2), ("collectives", 2), ("three", 3), ("wrt_input", 2), ("windows", 2),
         ("empty", 2), ("leaf_types", 2), ("sync_bn", 2)]


@needs_mpi
@PATHS
@pytest.mark.parametrize(("case", "ranks"), CASES, ids=[c for c, _ in CASES])
def test_every_rank_passes_the_case(case, ranks, path):
    out = ok(run([str(SCRIPTS / "check_parallel.py"), case], env=path_env(path), ranks=ranks))
    every_rank_ok(out, case, path, ranks=ranks)


@needs_mpi
def test_one_rank_short_of_shared_memory_makes_every_rank_take_fewer_buffers():
    out = ok(run([str(SCRIPTS / "check_parallel.py"), "tight"]))
    every_rank_ok(out, "tight", "shared")


@pytest.mark.parametrize(("nbytes", "rotate", "want"), [
    (12, True, (8, 8)), (8 << 20, True, (8, 8)), (16 << 20, True, (4, 4)),
    ((16 << 20) + 1, True, (4, 4)), (22 << 20, True, (3, 3)), (32 << 20, True, (2, 1)),
    (1 << 30, True, (2, 1)), (12, False, (2, 1)), (16 << 20, False, (2, 1))])
def test_windows_take_about_64_mb_of_results_in_turn_at_most_8(nbytes, rotate, want):
    # (results, slot sets): two results and one slot set when nothing is taken in turn
    assert generations(nbytes, rotate) == want


# what each call of check_parallel.py's mismatch case must raise, on every rank
MISMATCHES = [
    r"broadcast-shape ValueError: .* at \['w'\]: rank 0 has a leaf of shape \(3, 2\).*rank 1 "
    r"has a leaf of shape \(4, 2\)",
    r"pmean-structure ValueError: .*keys \['a', 'z'\]",
    r"pmean-dtype ValueError: .* at \[0\]: .*float64",
    r"broadcast-root ValueError: .*different roots",
    r"pmean-vs-broadcast ValueError: .*rank 0 called parallel.pmean where rank 1 called "
    r"parallel.broadcast",
    r"data_parallel-vs-pmean ValueError: .*rank 0 called parallel.data_parallel where rank 1 "
    r"called parallel.pmean",
    r"pmean-masked-one ValueError: .* at \['m'\]: rank 0 has a leaf of shape \(3,\).*rank 1 "
    r"has a masked array",
    r"pmean-int TypeError: .* at \['n'\] has dtype int64",
    r"pmean-masked TypeError: .* at \['m'\] is a masked array, whose mask the sum would drop",
    r"broadcast-float-root TypeError: parallel.broadcast: root must be an int.*rank\(s\) "
    r"\[1\] passed something else",
]


@needs_mpi
def test_a_mismatched_tree_raises_on_every_rank_without_hanging():
    out = ok(run([str(SCRIPTS / "check_parallel.py"), "mismatch"], timeout=30))
    for r in (0, 1):
        for pattern in MISMATCHES:
            assert re.search(rf"rank {r} {pattern}", out), (r, pattern)
        assert f"rank {r} ok mismatch" in out


@needs_mpi
def test_other_collectives_as_the_first_calls_raise_on_every_rank():
    out = ok(run([str(SCRIPTS / "check_parallel.py"), "cold_swap"], timeout=30))
    for r in (0, 1):
        assert re.search(rf"rank {r} cold-pmean-vs-broadcast ValueError: .*rank 0 called "
                         r"parallel.pmean where rank 1 called parallel.broadcast", out)


@needs_mpi
def test_disk_example_on_two_ranks_prints_from_rank_zero_only():
    out = ok(run([str(EXAMPLES / "disk_data_parallel.py"), "--epochs", "3"]))
    assert out.count("final: train error") == 1 and "on 2 ranks" in out
    assert out.count("epoch    1") == 1
    assert re.search(r"rank 0: [\d.]+ ms per step, \d+% of it in the allreduce", out)
    assert re.search(r"rank 1: [\d.]+ ms per step, \d+% of it in the allreduce", out)


@needs_mpi
def test_disk_example_bad_option_under_mpiexec_prints_one_usage_message():
    got = run([str(EXAMPLES / "disk_data_parallel.py"), "--epochs", "0"])
    assert got.returncode != 0 and got.stdout == ""
    assert got.stderr.count("usage:") == 1, got.stderr
    assert got.stderr.count("error: argument --epochs: expected a positive integer") == 1


# ---------------------------------------------------------------------------- buffers

def test_a_buffer_is_reused_only_when_no_earlier_result_views_it():
    reducer = Reducer()
    a = reducer.take(5, np.dtype(np.float32))
    view = a[1:3]
    del a
    b = reducer.take(5, np.dtype(np.float32))
    assert not np.shares_memory(b, view)             # a view of the first is alive
    del view
    c = reducer.take(5, np.dtype(np.float32))
    assert c.__array_interface__["data"] == reducer.buffers[(5, "<f4")][0].__array_interface__[
        "data"]                                      # the first again, now unused
    del b, c
    held = [reducer.take(5, np.dtype(np.float32)) for _ in range(5)]  # all alive at once
    assert len({h.__array_interface__["data"][0] for h in held}) == 5
    assert len(reducer.buffers[(5, "<f4")]) == reducer.keep


def test_result_leaves_are_read_only_views_that_keep_their_buffer_taken():
    reducer = Reducer()
    t = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float64)}
    leaves, lay = reducer.layout(t)  # mixed: a float64 buffer
    buf = reducer.take(lay.bounds[-1], lay.dtype)
    buf[:] = np.arange(lay.bounds[-1])
    out = as_tree(buf, lay, t)
    assert out["b"].dtype == np.float64 and np.shares_memory(out["b"], buf)
    assert out["w"].dtype == np.float32 and not np.shares_memory(out["w"], buf)  # a copy
    np.testing.assert_array_equal(out["b"], [0, 1, 2])
    np.testing.assert_array_equal(out["w"], [[3, 4, 5], [6, 7, 8]])
    for leaf in out.values():
        assert not leaf.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            leaf[...] = 1.0
    assert buf.flags.writeable  # the buffer itself stays writable for the next mean
    kept, address = out["b"], buf.__array_interface__["data"][0]
    del out, leaves, buf
    assert not np.shares_memory(reducer.take(lay.bounds[-1], lay.dtype), kept)  # still held
    del kept
    again = reducer.take(lay.bounds[-1], lay.dtype)  # free now: the first buffer again
    assert again.__array_interface__["data"][0] == address


@pytest.mark.parametrize("sizes", [(3, 1, 6), (70_000, 5)])  # below and above _SMALL
@pytest.mark.parametrize("dtypes", [(np.float32,), (np.float32, np.float64)])
def test_pack_scales_every_leaf_into_its_place(sizes, dtypes):
    rng = np.random.default_rng(0)
    t = {f"x{i}": rng.standard_normal(n).astype(dtypes[i % len(dtypes)]).reshape(n, 1)[::1]
         for i, n in enumerate(sizes)}
    t["s"] = np.float64(2.5) if len(dtypes) > 1 else np.float32(2.5)  # a scalar leaf
    leaves, lay = Reducer().layout(t)
    before = [np.array(x) for x in leaves]  # the caller's grads: pack must leave them alone
    buf = np.full(lay.bounds[-1] + 2, np.nan, lay.dtype)
    Reducer.pack(leaves, lay, (4.0, -1.0), 0.25, buf)
    want = np.concatenate([np.ravel(x).astype(lay.dtype) for x in before] + [[4.0, -1.0]])
    np.testing.assert_allclose(buf, 0.25 * want, rtol=1e-7 if lay.dtype == np.float32 else 0)
    for x, b in zip(leaves, before, strict=True):
        np.testing.assert_array_equal(x, b)
    assert buf.dtype == (np.float64 if len(dtypes) > 1 else np.float32)


class _Pair(tuple):  # a tuple subclass that is not a NamedTuple: a leaf, as tree.leaves says
    pass


def test_signature_keys_equal_exactly_when_structure_shapes_and_dtypes_are():
    import copy
    from collections import OrderedDict, namedtuple

    NT = namedtuple("NT", "a b")
    z = np.zeros
    trees = [
        ((z(2), z(3)),), (z(2), (z(3),)), ((z(2),), z(3)), [z(2), z(3)], (z(2), z(3)),
        {"a": z(2), "b": z(3)}, {"a": z(2), "c": z(3)}, OrderedDict(a=z(2), b=z(3)),
        NT(z(2), z(3)), (z(2), z(3), None), (z(3), z(2)), (z(2), z((3, 1))),
        (z(2), z(3, dtype=np.float32)), (z(2), 1.0), (z(2), np.float32(1.0)), (z(2), 1),
        (z(2), _Pair((z(3),))), None, (), [], {}, z(5),
    ]
    keys = [signature(t)[1] for t in trees]
    assert len(set(keys)) == len(trees)  # all differ, nested ones included
    for t in trees:
        leaves, key = signature(t)
        assert [id(x) for x in leaves] == [id(x) for x in fd.tree.leaves(t)]
        assert signature(copy.deepcopy(t))[1] == key  # new leaves, same everything else
        hash(key)
