"""Whether a sweep's function, configs and results can reach other processes: pickle's
verdict (cloudpickle's where it is installed, as Dask uses it) and what a spawned worker
cannot import. Split from ``sweep``."""

from __future__ import annotations

import importlib
import multiprocessing
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["check_sendable", "unsendable"]


def unsendable(obj: Any) -> str | None:
    """Why ``obj`` cannot be sent to or from another process (pickle's error, or
    cloudpickle's where it is installed, as Dask's executors use it), or None."""
    try:
        pickle.dumps(obj)
        return None
    except Exception as err:
        why = f"{type(err).__name__}: {err}"
    try:  # Dask's; not a funcdl dependency
        cloudpickle = importlib.import_module("cloudpickle")
    except ImportError:
        return why
    try:
        cloudpickle.dumps(obj)
        return None
    except Exception as err:
        return f"{type(err).__name__}: {err}"


def check_sendable(train_fn: Any, pool: ProcessPoolExecutor | None) -> None:
    """A TypeError, before any run, for a ``train_fn`` that worker processes cannot get."""
    context = getattr(pool, "_mp_context", None) if pool is not None else None
    forked = (context.get_start_method() if context is not None else
              "spawn" if pool is None else multiprocessing.get_start_method()) == "fork"
    why = None if forked else unimportable(train_fn)  # a fork has __main__'s names
    if why is None:
        try:
            pickle.dumps(train_fn)
        except Exception as err:
            why = str(err)
    if why is not None:
        raise TypeError(
            f"sweep.run: train_fn {getattr(train_fn, '__qualname__', train_fn)!r} cannot "
            f"be sent to worker processes ({why}); define it at the top level of a "
            f"module file, with no funcdl layer, optimizer or schedule bound to it (those "
            f"are closures, which pickle cannot send: build them inside train_fn from "
            f"the config's numbers), or pass executor=ThreadPoolExecutor(...)")


def unimportable(train_fn: Any) -> str | None:
    """Why a spawned worker could not find ``train_fn``, as far as can be told here: a
    function pickles by name, and a spawned worker finds ``__main__``'s names by running
    its file, which an interactive session or ``python -c`` does not have."""
    main = sys.modules.get("__main__")
    if getattr(train_fn, "__module__", None) == "__main__" and not getattr(main, "__file__",
                                                                           None):
        return ("it is defined in an interactive session or `python -c`, which a spawned "
                "worker cannot import")
    return None
