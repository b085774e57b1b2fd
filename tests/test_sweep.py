"""funcdl.sweep: the same results in config order on every executor; failures kept in place."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import sweep
from funcdl.layers import Dense, ReLU, Sequential


def train(config):
    """A small, complete training run: its result depends on the config alone. At module
    level so that worker processes (and Dask workers) can import it."""
    if config["lr"] < 0:
        raise ValueError(f"lr must be positive, got {config['lr']}")
    k_data, k_init, k_epochs = fd.random.split(fd.random.key(config["seed"]), 3)
    x, y = fd.data.disk(k_data, 200)
    model = Sequential(Dense(8), ReLU(), Dense(1))
    _, params = model.init(k_init, (None, 2))
    opt = fd.optim.sgd(config["lr"])
    state = opt.init(params)
    vg = fd.value_and_grad(model, fd.losses.bce_with_logits)
    for epoch in range(3):
        for xb, yb in fd.data.batches(fd.random.fold_in(k_epochs, epoch), x, y, batch_size=50):
            loss, grads = vg(params, xb, yb)
            updates, state = opt.update(state, grads, params)
            params = fd.optim.apply_updates(params, updates)
    return {"seed": config["seed"], "loss": loss,
            "checksum": float(sum(np.sum(p, dtype=np.float64) for p in fd.tree.leaves(params)))}


def die(config):
    if config == "die":
        os._exit(3)  # the worker process vanishes mid-run
    if config == "exit":
        sys.exit(f"no run for {config}")  # a script's own way out: fails this run only
    if config == "cancel":  # a BaseException other than SystemExit and KeyboardInterrupt
        import asyncio

        # raised directly: asyncio.run on Python 3.10 re-raises it without its message
        raise asyncio.CancelledError("cancelled inside the run")
    return config


def returns_a_function(config):
    """A run whose result cannot come back from a worker process (a local function)."""
    if config == "bad":
        return lambda: config
    return config


def plus_one(config):
    return config + 1


def nested(config):
    """A run that runs a sweep of its own, on threads."""
    with ThreadPoolExecutor(2) as pool:
        return sweep.run(plus_one, list(range(config, config + 4)), pool, progress=False)


def _refuse():
    raise RuntimeError("this config does not unpickle in a worker")


class Unpicklable:
    """A config that pickles in the main process and fails to unpickle in a worker."""

    def __reduce__(self):
        return (_refuse, ())


CONFIGS = [{"seed": s, "lr": lr} for lr in (0.5, 0.05) for s in range(3)]
BAD = {"seed": 9, "lr": -1.0}
WITH_BAD = [*CONFIGS[:2], BAD, *CONFIGS[2:]]


@pytest.fixture(scope="module")
def expected():
    return [train(c) for c in CONFIGS]


def check(results, expected, bad_at=2):
    assert len(results) == len(expected) + 1
    failure = results[bad_at]
    assert isinstance(failure, sweep.Failure)
    assert failure.index == bad_at and failure.config == BAD
    assert failure.error == "ValueError: lr must be positive, got -1.0"
    assert "in train" in failure.traceback and "raise ValueError" in failure.traceback
    assert results[:bad_at] + results[bad_at + 1:] == expected


def test_default_executor_is_a_process_pool_with_results_in_order(expected, capsys):
    results = sweep.run(train, WITH_BAD)
    check(results, expected)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("sweep: ")]
    assert len(lines) == len(WITH_BAD)
    assert lines[-1].startswith(f"sweep: {len(WITH_BAD)}/{len(WITH_BAD)} done, 1 failed")
    assert re.search(r"run 2 \{'seed': 9, 'lr': -1.0\} [\d.]+ s FAILED: ValueError", err)
    assert "raise ValueError" in err  # the traceback, printed with the failure


def test_thread_pool_gives_the_same_results(expected, capsys):
    with ThreadPoolExecutor(2) as pool:
        check(sweep.run(train, WITH_BAD, pool, progress=False), expected)
    assert capsys.readouterr().err == ""


def test_strict_raises_after_all_runs_with_every_result_attached(expected):
    with ThreadPoolExecutor(2) as pool, pytest.raises(sweep.SweepError) as info:
        sweep.run(train, WITH_BAD, pool, progress=False, strict=True)
    assert "1 of 7 runs failed" in str(info.value) and "lr must be positive" in str(info.value)
    check(info.value.results, expected)
    assert info.value.failures == [info.value.results[2]]


def test_a_dead_worker_fails_its_runs_and_keeps_the_finished_ones():
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = sweep.run(die, ["a", "die", "b"], pool, progress=False)
    assert results[0] == "a"
    assert isinstance(results[1], sweep.Failure) and "BrokenProcessPool" in results[1].error
    assert all(isinstance(r, sweep.Failure) or r == "b" for r in results[2:])


def test_a_broken_pool_tells_each_run_one_short_traceback():
    # every future re-raised the pool's one exception, adding frames each time: the 100th
    # run's traceback was 44 KB
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = sweep.run(die, ["die", *"abcdefghijklmnopqrstuvwxyz"], pool, progress=False)
    tracebacks = {r.traceback for r in results if isinstance(r, sweep.Failure)}
    assert len(tracebacks) == 1 and len(tracebacks.pop()) < 3000


@pytest.mark.parametrize("pool", [lambda: ThreadPoolExecutor(2), lambda: ProcessPoolExecutor(
    1, mp_context=multiprocessing.get_context("spawn"))], ids=["threads", "processes"])
@pytest.mark.parametrize("how, error", [("exit", "SystemExit: no run for exit"),
                                        ("cancel", "CancelledError: cancelled inside the run")])
def test_a_run_calling_sys_exit_or_raising_a_base_exception_fails_alone(pool, how, error):
    # SystemExit escaped and cancelled the whole sweep; so did asyncio's CancelledError
    with pool() as executor:
        results = sweep.run(die, ["a", how, "b"], executor, progress=False)
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], sweep.Failure)
    assert results[1].error == error


def test_a_dead_worker_of_the_default_pool_fails_its_own_run_alone():
    # the pool's death failed every run not yet finished, each with the same error and no
    # word of which run it was; now the others run again, those that had started alone
    configs = ["a", "b", "die", "c", "d", "e", "f"]
    results = sweep.run(die, configs, progress=False)
    assert [r for r in results if not isinstance(r, sweep.Failure)] == \
        ["a", "b", "c", "d", "e", "f"]
    failure = results[2]
    assert isinstance(failure, sweep.Failure) and "BrokenProcessPool" in failure.error
    assert "the worker died while running this run alone" in failure.traceback


def test_a_sweep_inside_a_run_of_the_default_pool_is_left_alone():
    # the outer pool's start flags leaked into the inner sweep's runs: IndexError failures
    assert sweep.run(nested, [0, 10], progress=False) == [[1, 2, 3, 4], [11, 12, 13, 14]]


def test_a_config_that_does_not_unpickle_in_the_worker_fails_alone():
    # its worker died before any run started, and every pending run was failed with a
    # hint about train_fn
    configs = ["a", "b", Unpicklable(), "c", "d", "e"]
    results = sweep.run(die, configs, progress=False)
    assert [r for r in results if not isinstance(r, sweep.Failure)] == ["a", "b", "c", "d", "e"]
    assert isinstance(results[2], sweep.Failure)
    assert "the worker died before this run started" in results[2].traceback


def test_an_interrupt_stops_the_default_pools_workers_at_once(tmp_path):
    # a worker caught the interrupt and took the next queued run, which the shutdown waited
    # for (10 s here); a second Ctrl-C left the interpreter hanging at exit
    (tmp_path / "slow_runs.py").write_text(textwrap.dedent("""
        import time
        def slow(c):
            time.sleep(60)
            return c
        """))
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import slow_runs
        from funcdl import sweep
        if __name__ == "__main__":
            try:
                sweep.run(slow_runs.slow, list(range(6)), progress=False)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        time.sleep(3)  # the workers are in their first runs
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process
        out, err = proc.communicate(timeout=30)  # not 60 s of queued runs
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert out.strip() == "interrupted", err


def test_a_forked_pool_of_the_users_runs_a_function_of_python_c():
    # refused as if spawned ("a spawned worker cannot import"), though a fork has it
    got = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from funcdl import sweep
        def train(c): return 2 * c
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            print(sweep.run(train, [1, 2, 3], pool, progress=False))
        """)], capture_output=True, text=True, timeout=120)
    assert got.stdout.strip() == "[2, 4, 6]", got


def test_a_train_fn_that_spawned_workers_cannot_import_is_explained(tmp_path):
    # python -c: no file for a spawned worker to import train from; each run failed with
    # BrokenProcessPool, the cause only in the workers' stderr
    got = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from funcdl import sweep
        def train(c): return c
        try:
            sweep.run(train, [1, 2], progress=False)
        except TypeError as err:
            print(err)
        """)], capture_output=True, text=True, timeout=120)
    assert "sweep.run: train_fn 'train' cannot be sent to worker processes (it is defined in " \
           "an interactive session or `python -c`" in got.stdout, got
    # defined under the main guard: the file runs in the worker without it
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent("""
        from funcdl import sweep
        if __name__ == "__main__":
            def train(c): return c
            print(sweep.run(train, [1, 2], progress=False)[0].traceback)
        """))
    got = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert "BrokenProcessPool" in got.stdout and "the workers could not import train_fn" \
           in got.stdout and "if __name__ == '__main__':" in got.stdout, got
    # sweep.run at the top level, no main guard: each worker importing the script runs it
    # again, and multiprocessing refuses; the worker says so, and each run's failure too
    script.write_text(textwrap.dedent("""
        from funcdl import sweep
        def train(c): return c
        out = sweep.run(train, [1, 2], progress=False)
        print(out[0].error)
        """))
    got = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert "RuntimeError: sweep.run was called while a worker process imported the script: " \
           "put the script's sweep.run under `if __name__ == '__main__':`" in got.stderr, got
    assert "Or the script calls sweep.run at its top level" in got.stdout, got


def test_empty_configs_give_an_empty_list():
    assert sweep.run(train, []) == []


def test_bad_input():
    with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor"):
        sweep.run(train, CONFIGS, executor="local")

    class Client:  # what a Dask Client looks like to run
        def get_executor(self):
            return None

    with pytest.raises(TypeError, match=r"pass client\.get_executor\(\)"):
        sweep.run(train, CONFIGS, executor=Client())
    with pytest.raises(TypeError, match="train_fn must be callable"):
        sweep.run("train", CONFIGS)
    with ProcessPoolExecutor(1) as pool, pytest.raises(TypeError, match="top level"):
        sweep.run(lambda c: c, CONFIGS, pool)
    # one config where a list of them belongs: a dict would be swept over its keys
    with pytest.raises(TypeError, match=r"configs must be a list.*a dict.*\[config\]"):
        sweep.run(train, CONFIGS[0], executor=ThreadPoolExecutor(1))
    with pytest.raises(TypeError, match=r"configs must be a list.*got str"):
        sweep.run(train, "lr=0.1", executor=ThreadPoolExecutor(1))
    with pytest.raises(TypeError, match=r"sweep\.run: configs must be a list.*got NoneType"):
        sweep.run(train, None)


def test_run_docstring_example_runs():
    code = sweep.run.__doc__.split("Example::\n")[1]
    exec(textwrap.dedent(code), {})


def _local_cluster(distributed: Any) -> Any:
    """Two worker processes. The scheduler's HTTP server (its /health and /metrics routes)
    binds port 8787 even with ``dashboard_address=None``, which only leaves out the
    dashboard's pages: with another cluster up (a second suite running beside this one),
    Dask warns that the port is in use, and under -W error the cluster fails to start.
    ``":0"`` takes a free port. On a loaded machine a worker has been seen not to come up in
    Dask's default 30 s: the connect timeout is raised, and one failed start is tried
    again."""
    import dask

    def start() -> Any:
        with dask.config.set({"distributed.comm.timeouts.connect": "120s"}):
            return distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                            processes=True, dashboard_address=":0")

    try:
        return start()
    except (RuntimeError, TimeoutError, OSError):
        return start()


def test_dask_local_cluster_gives_the_same_results(expected):
    distributed = pytest.importorskip("distributed")
    with _local_cluster(distributed) as cluster, distributed.Client(cluster) as client:
        results = sweep.run(train, WITH_BAD, client.get_executor(), progress=False)
    check(results, expected)


@pytest.mark.parametrize("flag", ["strict", "progress"])
def test_flags_are_true_or_false(flag):
    # strict="no" raised SweepError on the first failure, progress="no" printed progress
    with pytest.raises(TypeError, match=rf"sweep.run: {flag} must be True or False, got 'no'"):
        sweep.run(str, [1], **{flag: "no"})


def test_a_result_that_cannot_come_back_from_a_worker_says_so():
    # the error was Python's "Can't pickle local object ...", with no word of the result
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = sweep.run(returns_a_function, ["a", "bad", "b"], pool, progress=False)
    assert results[0] == "a" and results[2] == "b"
    failure = results[1]
    assert isinstance(failure, sweep.Failure) and "pickle" in failure.error
    for text in (failure.error, failure.traceback):
        assert "the result a run returned, could not be pickled" in text
        assert "executor=ThreadPoolExecutor(...)" in text


def test_a_config_holding_an_optimizer_says_to_build_it_in_train_fn():
    # funcdl's optimizers are closures: the hint spoke of results and plain values only
    from funcdl import optim

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = sweep.run(str, [{"opt": optim.sgd(0.1)}], pool, progress=False)
    assert isinstance(results[0], sweep.Failure)
    assert "optimizers, schedules and initializers are closures" in results[0].error
    assert "build them inside train_fn" in results[0].error


def test_a_sweep_error_pickles_with_its_results_and_failures():
    # a strict sweep inside a worker process raises it there; unpickling it in the parent
    # called SweepError(message) and broke the pool
    import pickle

    err = sweep.SweepError(["a", sweep.Failure(1, {"lr": -1}, "ValueError: no", "tb")],
                           [sweep.Failure(1, {"lr": -1}, "ValueError: no", "tb")])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is sweep.SweepError and str(back) == str(err)
    assert back.results[0] == "a" and back.failures[0].config == {"lr": -1}
