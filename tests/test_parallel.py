"""funcdl.parallel in one process (no MPI touched): the identity without mpi4py or with a
communicator of one rank, refusing what the ranks refuse, data_parallel's wrapping, the
disk_data_parallel example, and batches (each rank's share of data.batches).

The two- and three-rank checks under mpiexec and the summing machinery (buffers, windows,
packing, tree signatures): test_parallel_ranks.py.
"""

from __future__ import annotations

import functools
import os
import re
import textwrap

import numpy as np
import pytest
from _parallel_util import ENV, OneRank, asks_mpi, needs_mpi, ok, run
from conftest import load_example, refused

import funcdl as fd
from funcdl import _agree, data, parallel
from funcdl import layers as L

# ---------------------------------------------------------------------------- one process

def test_disk_example_in_one_process_trains_exactly_as_disk_py():
    ours = load_example("disk_data_parallel").train(epochs=2, verbose=False)
    theirs = load_example("disk").train(epochs=2, verbose=False)
    assert ours["size"] == 1 and ours["curve"] == pytest.approx(theirs["curve"], rel=1e-12)
    for a, b in zip(fd.tree.leaves(ours["params"]), fd.tree.leaves(theirs["params"])):
        np.testing.assert_array_equal(a, b)


def test_import_funcdl_never_imports_mpi4py_or_dask():
    code = """
        import sys
        import funcdl
        from funcdl import parallel, sweep
        assert "mpi4py" not in sys.modules and "dask" not in sys.modules, "imported"
        print("clean")
    """
    assert ok(run(["-c", textwrap.dedent(code)], mpi=False)).strip() == "clean"


def test_one_process_without_mpi4py_is_the_identity_and_a_launcher_without_it_is_an_error():
    code = """
        import os, sys
        sys.modules["mpi4py"] = None  # as if the mpi extra were not installed
        import numpy as np
        from funcdl import _agree, parallel
        t = {"w": np.ones(3, np.float32)}
        assert parallel.pmean(t) is t and parallel.broadcast(t) is t
        assert parallel.rank_and_size() == (0, 1)
        vg = lambda p, x, y: (1.5, p)
        assert parallel.data_parallel(vg)(t, np.ones((4, 1)), None) == (1.5, t)
        os.environ["SLURM_PROCID"] = "0"  # srun's first task, or a batch script: one
        os.environ["SLURM_NTASKS"] = "4"  # process, whatever the allocation holds
        _agree.world.cache_clear()
        assert parallel.pmean(t) is t and parallel.rank_and_size() == (0, 1)
        # each would else train alone as rank 0: MPI asked for, a rank above 0, 2 ranks
        for name, value in (("FUNCDL_MPI", "1"), ("SLURM_PROCID", "1"), ("PMI_SIZE", "2")):
            for f in (parallel.pmean, parallel.broadcast):
                os.environ[name] = value
                _agree.world.cache_clear()
                try:
                    f(t)
                except ValueError as err:
                    print(err)
                os.environ.pop(name)
    """
    out = ok(run(["-c", textwrap.dedent(code)], mpi=False))
    lines = out.strip().splitlines()
    assert len(lines) == 6
    starts = ["FUNCDL_MPI=1 in the environment asks for MPI, but mpi4py cannot be imported",
              "this process is one of several ranks (SLURM_PROCID=1), but mpi4py cannot",
              "this process is one of 2 MPI ranks, but mpi4py cannot be imported"]
    for i, line in enumerate(lines):
        assert line.startswith(f"parallel.{('pmean', 'broadcast')[i % 2]}: {starts[i // 2]}")
        assert "pip install 'funcdl[mpi]'" in line


@needs_mpi
def test_one_process_is_the_identity_and_starts_mpi_only_when_asked():
    # DESIGN: size 1 never touches MPI; with mpi4py installed, and without importing it.
    # Then with MPI asked (as under a launcher), its world of one is the identity too.
    code = """
        import os, sys
        import numpy as np
        from funcdl import _agree, parallel
        t = {"w": np.ones(3, np.float32)}
        for asked in (False, True):
            assert parallel.pmean(t) is t and parallel.broadcast(t) is t
            assert parallel.rank_and_size() == (0, 1)
            print("mpi4py" in sys.modules, "mpi4py.MPI" in sys.modules)
            _agree.world.cache_clear()
            os.environ["FUNCDL_MPI"] = "1"  # asks MPI, as under an unknown launcher
    """
    env = {k: v for k, v in ENV.items() if not asks_mpi(k)}
    out = ok(run(["-c", textwrap.dedent(code)], mpi=False, env=env)).split()
    assert out == ["False", "False", "True", "True"]


@pytest.mark.parametrize("name, launched", [
    ("PMI_RANK", True), ("OMPI_COMM_WORLD_SIZE", True), ("PMIX_RANK", True),
    ("SLURM_PROCID", True),  # srun with Slurm's own PMI-1 library sets no PMI_ variable
    ("PALS_RANKID", True), ("ALPS_APP_PE", True), ("FLUX_JOB_ID", True),
    ("HOME_MPI", False), ("FUNCDL_MPI_SHARED_MEMORY", False)])
def test_which_variables_mean_a_launcher_may_have_started_us(monkeypatch, name, launched):
    for k in list(os.environ):
        if asks_mpi(k):
            monkeypatch.delenv(k)
    assert not _agree.launched()
    monkeypatch.setenv(name, "1")
    assert _agree.launched() is launched
    monkeypatch.delenv(name)
    monkeypatch.setenv("FUNCDL_MPI", "1")
    assert _agree.launched()


def test_size_one_communicator_returns_inputs_untouched():
    t = {"w": np.ones(3, np.float32), "n": [np.int64(3)]}
    assert parallel.pmean(t["w"], OneRank()) is t["w"]
    assert parallel.broadcast(t, OneRank()) is t
    assert parallel.rank_and_size(OneRank()) == (0, 1)
    model = fd.layers.Sequential(fd.layers.Dense(2))
    _, params = model.init(fd.random.key(0), (None, 3))
    vg = fd.value_and_grad(model, fd.losses.mse)
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    loss, grads = parallel.data_parallel(vg, OneRank())(params, x, y)
    want_loss, want = vg(params, x, y)
    assert loss == want_loss
    for a, b in zip(fd.tree.leaves(grads), fd.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="root 1 is not a rank"):
        parallel.broadcast(t, OneRank(), root=1)


def test_one_process_refuses_what_the_ranks_refuse():
    # a script that runs in one process must not fail only under mpiexec
    with pytest.raises(TypeError, match=r"parallel.pmean: the leaf at \['n'\]\[0\] has dtype "
                                        r"int64; means are taken over floating-point trees"):
        parallel.pmean({"w": np.ones(3, np.float32), "n": [np.int64(3)]}, OneRank())
    vg = parallel.data_parallel(lambda p, x, y: (0.0, p), OneRank())
    with pytest.raises(TypeError, match="data_parallel: cannot count the examples of x"):
        vg({"w": np.ones(2)}, np.float32(1.0), 0.0)
    for root in (0.0, None, "0", True):
        with pytest.raises(TypeError, match=r"parallel.broadcast: root must be an int.*got "
                                            + re.escape(repr(root))):
            parallel.broadcast({"w": np.ones(2)}, OneRank(), root=root)
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        parallel.data_parallel(lambda p, x, y: (0.0, p), comm="x")  # when wrapping


def test_a_communicator_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="mpi4py communicator such as MPI"):
        parallel.pmean({"w": np.ones(2)}, comm=2)


def test_data_parallel_refuses_what_it_cannot_call_when_wrapping():
    with pytest.raises(TypeError, match=r"data_parallel: value_and_grad_fn must be callable.*"
                                        r"got Layer"):
        parallel.data_parallel(fd.layers.Sequential(fd.layers.Dense(1)))


def test_data_parallel_docstring_example_runs_in_one_process():
    code = parallel.data_parallel.__doc__.split("Example::\n")[1]
    exec(textwrap.dedent(code), {})


# ---------------------------------------------------------------------------- batches

def shares(n, batch, size, key=None, **kw):
    x = np.arange(n)
    key = fd.random.key(5) if key is None else key
    return [[b[0] for b in parallel.batches(key, x, batch_size=batch, rank=r, size=size, **kw)]
            for r in range(size)]


@pytest.mark.parametrize("n,batch,size", [(96, 24, 2), (90, 25, 2), (100, 10, 3), (7, 7, 7)])
def test_batches_split_each_global_batch_of_data_batches(n, batch, size):
    key = fd.random.key(5)
    per_rank = shares(n, batch, size, key)
    globals_ = [b[0] for b in data.batches(key, np.arange(n), batch_size=batch)]
    steps = list(zip(*per_rank))
    assert len(steps) == len(globals_) and all(len(p) == len(steps) for p in per_rank)
    for parts, whole in zip(steps, globals_):
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        counts = [len(p) for p in parts]
        assert max(counts) - min(counts) <= 1 and min(counts) >= 1


def test_batches_visit_every_example_once_and_reshuffle_per_key():
    epoch0 = np.concatenate([b for rank in shares(51, 25, 2) for b in rank])
    assert sorted(epoch0.tolist()) == list(range(51))
    epoch1 = np.concatenate([b for rank in shares(51, 25, 2, fd.random.key(6)) for b in rank])
    assert not np.array_equal(epoch0, epoch1)


def test_a_last_batch_smaller_than_the_ranks_joins_the_one_before():
    per_rank = shares(51, 25, 2)            # 25, 25, 1: the 1 joins the second batch
    assert [len(b) for b in per_rank[0]] == [13, 13] and [len(b) for b in per_rank[1]] == [12, 13]
    dropped = shares(51, 25, 2, drop_last=True)
    assert [len(b) for b in dropped[0]] == [13, 13] and [len(b) for b in dropped[1]] == [12, 12]


def test_batches_without_shuffle_are_views_in_order():
    x = np.arange(10)
    first = next(parallel.batches(None, x, batch_size=4, rank=1, size=2, shuffle=False))
    np.testing.assert_array_equal(first[0], [2, 3])
    assert np.shares_memory(first[0], x)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"n": 2, "size": 3}, ValueError, "2 examples cannot be shared by 3 ranks"),
    ({"batch_size": 2, "size": 3}, ValueError, "use batch_size >= 3"),
    ({"rank": 2, "size": 2}, ValueError, r"rank 2 is not in \[0, 2\)"),
    ({"rank": 0.0}, TypeError, "rank must be an int"),
    ({"size": 0}, ValueError, "size must be >= 1"),
    ({"key": None}, ValueError, r"needs a key \(the same on every rank\)"),
    ({"key": "seed"}, TypeError, "parallel.batches"),  # the key checked at the call
    ({"shuffle": "no"}, TypeError, "parallel.batches: shuffle must be True or False"),
    ({"drop_last": "yes"}, TypeError, "parallel.batches: drop_last must be True or False"),
])
def test_batches_bad_input(kwargs, error, match):
    args = {"n": 10, "batch_size": 4, "rank": 0, "size": 2, "key": fd.random.key(0), **kwargs}
    x = np.zeros((args.pop("n"), 2))
    with pytest.raises(error, match=match):
        parallel.batches(args.pop("key"), x, x[:, 0], **args)


def test_batches_arrays_must_share_their_first_dimension():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="share their first dimension"):
        parallel.batches(fd.random.key(0), x, x[:3], batch_size=4, rank=0, size=2)
    with pytest.raises(ValueError, match="at least one array"):
        parallel.batches(fd.random.key(0), batch_size=4, rank=0, size=2)
    with pytest.raises(TypeError, match="argument 2 is a dict, not an array"):
        parallel.batches(fd.random.key(0), x, {"y": x}, batch_size=4, rank=0, size=2)


@pytest.mark.parametrize("n,size", [(10, 2), (11, 3), (6, 6)])
def test_shard_gives_each_example_to_one_rank_in_data_batches_order(n, size):
    x, y = np.arange(n), np.arange(n) * 10
    key = fd.random.key(7)
    parts = [parallel.shard(key, x, y, rank=r, size=size) for r in range(size)]
    (whole,) = data.batches(key, x, batch_size=n)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    for px, py in parts:
        np.testing.assert_array_equal(py, px * 10)  # the arrays stay aligned
    counts = [len(p[0]) for p in parts]
    assert max(counts) - min(counts) <= 1 and min(counts) >= 1
    other = np.concatenate([parallel.shard(fd.random.key(8), x, rank=r, size=size)[0]
                            for r in range(size)])
    assert sorted(other.tolist()) == list(range(n)) and not np.array_equal(other, whole[0])


def test_shard_without_shuffle_keeps_the_order():
    (part,) = parallel.shard(None, np.arange(7), rank=1, size=2, shuffle=False)
    np.testing.assert_array_equal(part, [4, 5, 6])


@pytest.mark.parametrize("kwargs,error,match", [
    ({"n": 2, "size": 3}, ValueError, "parallel.shard: 2 examples cannot be shared by 3"),
    ({"rank": 2, "size": 2}, ValueError, r"parallel.shard: rank 2 is not in \[0, 2\)"),
    ({"size": 0}, ValueError, "size must be >= 1"),
    ({"key": None}, ValueError, r"parallel.shard.*needs a key \(the same on every rank\)"),
])
def test_shard_bad_input(kwargs, error, match):
    args = {"n": 10, "rank": 0, "size": 2, "key": fd.random.key(0), **kwargs}
    x = np.zeros((args.pop("n"), 2))
    with pytest.raises(error, match=match):
        parallel.shard(args.pop("key"), x, **args)


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "argument --epochs: expected a positive integer (1 or more), got 0"),
    (["--epochs", "-1"], "argument --epochs: expected a positive integer (1 or more), got -1"),
    (["--seed", "-5"], "argument --seed: expected a seed: an integer in [0, 2**128), got -5"),
])
def test_disk_example_refuses_bad_arguments_while_parsing(capsys, argv, message):
    err = refused(load_example("disk_data_parallel").main, argv, capsys)
    assert err.startswith("usage: ") and f"error: {message}" in err


def test_disk_example_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        load_example("disk_data_parallel").main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 200)" in text and "(default: 0)" in text


def test_data_parallel_asks_a_wrapper_whether_its_grads_hold_dx():
    # a wrapper hides value_and_grad's wrt_input attribute, and over ranks dx was then
    # averaged as if it were params' grads: rows of different examples, silently
    model = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(1))
    _, params = model.init(fd.random.key(0), (None, 2))
    x, y = fd.data.disk(fd.random.key(1), 6)
    vg = fd.value_and_grad(model, fd.losses.mse, wrt_input=True)
    with pytest.raises(ValueError, match=r"data_parallel.*wrt_input=True"):
        parallel.data_parallel(lambda *a, **k: vg(*a, **k))(params, x, y)
    want = vg(params, x, y)
    for fn in (parallel.data_parallel(lambda *a, **k: vg(*a, **k), wrt_input=True),
               parallel.data_parallel(functools.wraps(vg)(lambda *a, **k: vg(*a, **k)))):
        got = fn(params, x, y)
        fd.tree.map(np.testing.assert_array_equal, got[1], want[1])
    plain = fd.value_and_grad(model, fd.losses.mse)  # (dparams) alone: nothing to ask
    parallel.data_parallel(lambda *a, **k: plain(*a, **k))(params, x, y)
    with pytest.raises(TypeError, match="wrt_input must be True or False"):
        parallel.data_parallel(vg, wrt_input="yes")


def test_broadcast_refuses_a_leaf_that_is_not_a_number_on_one_process_too():
    # over ranks it raised and on one process it returned the tree: a script must fail
    # alike on 1 and N
    with pytest.raises(TypeError, match=r"broadcast: the leaf at \['a'\] is of type object"):
        parallel.broadcast({"a": object(), "b": np.ones(2)})
    tree = {"a": np.ones(2), "s": "text", "n": 3}
    assert parallel.broadcast(tree) is tree


def test_a_one_rank_communicator_is_asked_its_size_only():
    # "size 1 never touches MPI": a stub with nothing but Get_size (and calls that raise) is
    # enough; it was refused for lacking Allgather
    class SizeOnly:
        def Get_size(self):
            return 1

        def Allreduce(self, *args, **kwargs):
            raise AssertionError("MPI touched at size 1")

    tree = {"w": np.ones(3, np.float32)}
    assert parallel.pmean(tree, SizeOnly()) is tree
    assert parallel.broadcast(tree, SizeOnly()) is tree
    assert parallel.rank_and_size(SizeOnly()) == (0, 1)
    vg = parallel.data_parallel(lambda p, x, y: (0.5, p), SizeOnly())
    assert vg(tree, np.ones((2, 3)), None) == (0.5, tree)
