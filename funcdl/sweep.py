"""Sweeps: one pure training function mapped over a list of configs, on any executor.

A sweep (seeds, learning rates, architectures) is a list of independent runs, so it needs no
engine of its own: ``run`` hands the runs to a ``concurrent.futures.Executor``, a local
process pool by default, or a Dask cluster through ``distributed.Client.get_executor()``,
and gathers the results in config order. A run that raises becomes a ``Failure`` record in
its place, with its config and traceback; the other runs go on. Nothing here imports Dask.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from funcdl._args import bool_arg
from funcdl._sendable import check_sendable, unsendable
from funcdl._sweep_worker import attempt, hello

__all__ = ["Failure", "SweepError", "run"]

C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True)
class Failure:
    """A run that raised: its place in ``configs``, its config, the error as
    ``'ZeroDivisionError: division by zero'`` and the formatted traceback (from the worker
    that ran it)."""

    index: int
    config: Any
    error: str
    traceback: str

    def __str__(self) -> str:
        return f"run {self.index} {_short(self.config)} failed: {self.error}"


class SweepError(RuntimeError):
    """Raised by ``run(..., strict=True)`` once every run has finished, if any failed.
    ``results`` holds all the results (``Failure`` records included), ``failures`` the
    failed ones."""

    def __init__(self, results: list[Any], failures: list[Failure]) -> None:
        self.results = results
        self.failures = failures
        lines = "\n".join(f"  {f}" for f in failures)
        super().__init__(f"{len(failures)} of {len(results)} runs failed:\n{lines}\n"
                         f"(each Failure in .failures has its traceback)")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by its arguments, not its message (a strict sweep inside a worker process
        # raises it there: its pool sends it back pickled)
        return (SweepError, (self.results, self.failures))


def _short(config: Any, width: int = 70) -> str:
    try:
        text = " ".join(repr(config).split())  # one line: an array's repr spans several
    except Exception:  # a config's own broken __repr__ must not lose the sweep's results
        text = f"<{type(config).__name__} object>"
    return text if len(text) <= width else text[:width - 3] + "..."


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_executor(executor: Any) -> None:
    if isinstance(executor, Executor):
        return
    hint = (" (a Dask Client: pass client.get_executor())"
            if hasattr(executor, "get_executor") else "")
    raise TypeError(f"sweep.run: executor must be a concurrent.futures.Executor, such as "
                    f"ProcessPoolExecutor(4), ThreadPoolExecutor(4) or "
                    f"distributed.Client(address).get_executor(); got "
                    f"{type(executor).__name__}{hint}")


@overload
def run(train_fn: Callable[[C], R], configs: Iterable[C], executor: Executor | None = None,
        *, progress: bool = True, strict: Literal[False] = False) -> list[R | Failure]: ...


@overload
def run(train_fn: Callable[[C], R], configs: Iterable[C], executor: Executor | None = None,
        *, progress: bool = True, strict: Literal[True]) -> list[R]: ...


@overload
def run(train_fn: Callable[[C], R], configs: Iterable[C], executor: Executor | None = None,
        *, progress: bool = True, strict: bool = False) -> list[R | Failure]: ...


def run(train_fn: Callable[[C], R], configs: Iterable[C], executor: Executor | None = None,
        *, progress: bool = True, strict: bool = False) -> list[R | Failure] | list[R]:
    """``[train_fn(c) for c in configs]``, the runs spread over ``executor``.

    Args:
        train_fn: a function of one config, pure in the sense that its result depends on
            the config alone (seed the keys from it). For a process pool (the default) or
            a cluster it must be picklable: a function defined at the top level of a
            module, not a lambda or a nested function.
        configs: anything picklable, one per run (dicts are the usual choice).
        executor: any ``concurrent.futures.Executor``; the caller keeps it open and
            shuts it down. Default: a ``ProcessPoolExecutor`` of spawned workers, one per
            core (at most one per config), shut down at the end. Spawned, not forked:
            forking a process whose BLAS (or Dask, or MPI) already runs threads can
            deadlock, and Python 3.12+ warns about it. Runs whose matrix products are
            large enough for several BLAS threads are best given one thread per worker
            (``OPENBLAS_NUM_THREADS=1`` in the environment before the sweep starts).
        progress: print a line to stderr as each run finishes, and a failed run's
            traceback.
        strict: after all runs have finished, raise ``SweepError`` if any failed.

    Returns:
        One entry per config, in config order: the run's result, or a ``Failure``
        (``index``, ``config``, ``error``, ``traceback``) for a run that raised or whose
        worker died; the other runs' results are kept. On the default pool a worker's
        death fails its own run alone: the runs its pool took down with it run again (see
        ``_own_pools``); a pool you pass is broken for good by it, and the runs it had not
        finished fail with ``BrokenProcessPool``. KeyboardInterrupt stops the sweep (the
        default pool's workers at once). On a Dask executor Dask's own rules apply: a
        worker's death can fail the other runs it held (``KilledWorker``), and a
        KeyboardInterrupt raised inside a run kills its worker instead of the sweep.

    Example::

        from concurrent.futures import ThreadPoolExecutor
        from funcdl import sweep

        def train(config):                      # at module level for a process pool
            return config["lr"] * config["seed"]

        configs = [{"lr": lr, "seed": s} for lr in (0.1, 0.01) for s in range(3)]
        with ThreadPoolExecutor(2) as pool:
            results = sweep.run(train, configs, pool, progress=False)
        assert results == [train(c) for c in configs]
        # on a Dask cluster: sweep.run(train, configs, Client(address).get_executor())
    """
    if not callable(train_fn):
        raise TypeError(f"sweep.run: train_fn must be callable, got {type(train_fn).__name__}")
    zero_d = getattr(configs, "ndim", None) == 0  # a 0-d array: iterable, but over nothing
    if zero_d or isinstance(configs, (Mapping, str, bytes, bytearray, memoryview)) \
            or not isinstance(configs, Iterable):
        # a dict would sweep over its keys, a string over its characters (bytes: their ints)
        what = ("a dict (one config?)" if isinstance(configs, Mapping) else
                f"a 0-d {type(configs).__name__}" if zero_d else type(configs).__name__)
        raise TypeError(f"sweep.run: configs must be a list (or other iterable) of configs, "
                        f"one per run, got {what}; pass [config] for one run")
    progress = bool_arg(progress, "sweep.run", "progress")  # "no" would count as True
    strict = bool_arg(strict, "sweep.run", "strict")
    configs = list(configs)
    if executor is not None:
        _check_executor(executor)
    if not configs:
        return []
    if isinstance(executor, ProcessPoolExecutor) or executor is None:
        check_sendable(train_fn, executor)
    tally = _Tally(configs, progress)
    if executor is not None:
        _gather([(executor, i) for i in range(len(configs))], train_fn, tally)
    else:
        _own_pools(train_fn, tally)
    if strict and tally.failures:
        raise SweepError(tally.results, sorted(tally.failures, key=lambda f: f.index))
    return tally.results


def _own_pools(train_fn: Callable[[Any], Any], tally: _Tally) -> None:
    """The runs on pools of spawned workers made here. A worker that dies (os._exit, a
    crash in native code, the out-of-memory killer) breaks its pool, and the pool fails
    every run it has not finished. Those that had started (the dead one and its neighbours;
    each run sets a flag as it starts) then run each alone on a pool of its own, and the
    others again on a new pool, so that only a run whose worker dies alone fails. A worker
    that dies before any run starts (a config that does not unpickle there, or train_fn
    itself) puts the first such run alone; two in a row, and the rest fail with it."""
    context = multiprocessing.get_context("spawn")
    tally.flags = flags = context.RawArray("b", len(tally.configs))

    def pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=context, initializer=hello,
                                   initargs=(flags,))

    pending, unstarted = list(range(len(tally.configs))), 0
    while pending:
        shared = pool(min(_cpus(), len(pending)))
        pools = [shared]
        try:
            broken = _gather([(shared, i) for i in pending], train_fn, tally, retry=True)
            started = [i for i in broken if flags[i]]
            alone = started or broken[:1]
            pools += [pool(1) for _ in alone]
            _gather(list(zip(pools[1:], alone)), train_fn, tally, alone=True)
            pending = [i for i in broken if i not in alone]
            unstarted = 0 if started else unstarted + sum(not flags[i] for i in alone)
            if unstarted >= 2:  # not one config: train_fn, most likely, for every run
                assert tally.broken is not None
                for i in pending:
                    tally.record(i, False, tally.error(tally.broken, i, alone=False), 0.0)
                pending = []
        except BaseException:  # KeyboardInterrupt: stop the workers, not wait for them
            for p in pools:
                _stop(p)
            raise
        for p in pools:
            p.shutdown(wait=True, cancel_futures=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down now: its queued runs cancelled and its workers terminated (a
    worker that caught the interrupt would take the next queued run)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14's public way
    if terminate is not None:
        terminate()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()


# A run whose worker died alone, in a pool of its own: it was that run's doing.
_ALONE = ("\n(the worker died while running this run alone, in a pool of its own: the run "
          "ended its process (os._exit), crashed in native code, or was killed, e.g. by "
          "the out-of-memory killer; the other runs were run again)")
_UNSTARTED = ("\n(the worker died before this run started, alone in a pool of its own: its "
              "config, or train_fn, could not be unpickled there. If every run failed this "
              "way, the workers could not import train_fn: a function that a script defines "
              "under `if __name__ == '__main__':` is unknown to a spawned worker; define it "
              "at the top level of the script or of a module. Or the script calls sweep.run "
              "at its top level: each spawned worker imports the script, so the call belongs "
              "under `if __name__ == '__main__':`, the function above it)")
# A config going to a worker process, or a result coming back, that does not pickle.
_UNPICKLABLE = ("\n(a config sent to a worker process, or the result a run returned, could "
                "not be pickled: funcdl's layers, optimizers, schedules and initializers "
                "are closures, which pickle cannot send (cloudpickle, a Dask cluster's, "
                "can). Put their settings in the config (an lr, the layer sizes) and build "
                "them inside train_fn; return plain values (params, optimizer states, "
                "arrays, numbers, dicts, lists, NamedTuples), not the model or optimizer; "
                "or pass executor=ThreadPoolExecutor(...))")
# A worker that could not unpickle train_fn breaks the whole pool: say what usually causes it.
_BROKEN_HINT = ("\n(if every run failed this way, the workers could not import train_fn: "
                "a function that a script defines under `if __name__ == '__main__':` is "
                "unknown to a spawned worker; define it at the top level of the script or of "
                "a module)")


class _Tally:
    """The results as they come (in config order), the failures, and the progress lines."""

    def __init__(self, configs: list[Any], progress: bool) -> None:
        self.configs, self.progress = configs, progress
        self.results: list[Any] = [None] * len(configs)
        self.failures: list[Failure] = []
        self.done, self.start = 0, time.perf_counter()
        # A broken pool raises one exception object for all its futures, each raise adding
        # frames to it: format it once (100 runs gave 2.2 MB of traceback, growing as n²).
        self.told: dict[tuple[BaseException, str], str] = {}  # the object hashes by identity
        self.broken: BaseException | None = None  # a dead worker's pool's error, to retry
        self.flags: Any = None  # run's own pools: a byte per run, set as the run starts

    def record(self, i: int, ok: bool, value: Any, seconds: float) -> None:
        if not ok:
            value = Failure(i, self.configs[i], *value)
            self.failures.append(value)
        self.results[i] = value
        self.done += 1
        if self.progress:
            _report(self.done, len(self.configs), len(self.failures), i, self.configs[i],
                    value, seconds, time.perf_counter() - self.start)

    def error(self, err: BaseException, i: int, alone: bool) -> tuple[str, str]:
        """``(error, traceback)`` of run ``i`` failed by ``err`` in the main process."""
        hint = ("" if not isinstance(err, BrokenProcessPool) else _BROKEN_HINT if not alone
                else _ALONE if self.flags[i] else _UNSTARTED)
        if not hint and (isinstance(err, pickle.PicklingError) or "pickle" in str(err)
                         or "Can't get local object" in str(err)):  # Python 3.13's words
            hint = _UNPICKLABLE
        if (err, hint) not in self.told:
            self.told[err, hint] = "".join(traceback.format_exception(err)) + hint
        return f"{type(err).__name__}: {err}{' ' + hint.strip() if hint else ''}", \
            self.told[err, hint]


def _gather(jobs: list[tuple[Executor, int]], train_fn: Callable[[Any], Any], tally: _Tally,
            retry: bool = False, alone: bool = False) -> list[int]:
    """Run ``configs[i]`` on its pool for each ``(pool, i)`` and record the results; with
    ``retry``, a run that a dead worker's pool failed is not recorded but returned (the
    error kept as ``tally.broken``); ``alone``: each run had a pool of its own."""
    futures: dict[Future[Any], int] = {}
    broken: list[int] = []
    try:
        for pool, i in jobs:  # the index marks the run's start: run's own pools only
            try:
                futures[_submit(pool, train_fn, tally.configs[i],
                                i if tally.flags is not None else -1)] = i
            except _Unsent as err:  # this config alone could not be sent: its run fails
                tally.record(i, False, (str(err), "".join(traceback.format_exception(
                    err.__cause__ or err))), 0.0)
        for future in as_completed(futures):
            i = futures[future]
            try:
                ok, value, seconds = future.result()
            except Exception as err:  # the worker died, or the result did not unpickle
                if retry and isinstance(err, BrokenProcessPool):
                    broken.append(i)
                    tally.broken = err
                    continue
                ok, value, seconds = False, tally.error(err, i, alone), 0.0
            tally.record(i, ok, value, seconds)
    except BaseException:  # KeyboardInterrupt included: do not leave queued runs behind
        for future in futures:
            future.cancel()
        raise
    return sorted(broken)


def _submit(pool: Executor, train_fn: Callable[[Any], Any], config: Any,
            index: int) -> Future[Any]:
    """One run handed to ``pool``; a pool that cannot take it is named, not its internals."""
    own = isinstance(pool, (ThreadPoolExecutor, ProcessPoolExecutor))
    try:
        return pool.submit(attempt, train_fn, config, index, *(() if own else (True,)))
    except NotImplementedError:  # concurrent.futures.Executor's own submit, not overridden
        raise TypeError(f"sweep.run: the executor {type(pool).__name__} does not implement "
                        f"submit(); pass a working one such as ThreadPoolExecutor(4)") from None
    except RuntimeError as err:  # "cannot schedule new futures after shutdown"
        if isinstance(err, BrokenExecutor):  # a worker died: as from a run, not a misuse
            raise
        if "bootstrapping phase" in str(err):  # multiprocessing's: a worker importing
            # the main script met its top-level sweep.run (printed in the worker's stderr)
            raise RuntimeError("sweep.run was called while a worker process imported the "
                               "script: put the script's sweep.run under `if __name__ == "
                               "'__main__':` (each spawned worker imports the script; "
                               "train_fn stays at its top level)") from None
        raise ValueError(f"sweep.run: the executor refused the run ({err}): pass an executor "
                         f"that is open, e.g. create it in a `with` around sweep.run") from err
    except Exception as err:  # another executor's own refusal: Dask's serialisation
        if own:
            raise
        why = unsendable(train_fn)
        if why is not None:
            raise TypeError(f"sweep.run: train_fn {getattr(train_fn, '__qualname__', train_fn)!r} "
                            f"cannot be sent to the executor's workers ({why}); define it at "
                            f"the top level of a module, with nothing unpicklable bound to "
                            f"it") from err
        raise _Unsent(f"{type(err).__name__}: the config could not be sent to the "
                      f"executor's workers ({err})") from err


class _Unsent(Exception):
    """A config the executor could not send (Dask's serialisation refused it): its run
    fails alone."""


def _report(done: int, total: int, failed: int, index: int, config: Any, value: Any,
            seconds: float, elapsed: float) -> None:
    status = f"FAILED: {value.error}" if isinstance(value, Failure) else "ok"
    counts = f"{done}/{total} done" + (f", {failed} failed" if failed else "")
    print(f"sweep: {counts}, {elapsed:.1f} s | run {index} {_short(config, 60)} "
          f"{seconds:.2f} s {status}", file=sys.stderr, flush=True)
    if isinstance(value, Failure):
        print("  " + value.traceback.rstrip().replace("\n", "\n  "), file=sys.stderr,
              flush=True)
