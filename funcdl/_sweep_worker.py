"""What runs in a worker of ``sweep.run``: one run of ``train_fn`` on its config, caught
and timed there (``attempt``), and the flags by which run's own pools see which runs had
started when a worker died (``hello``, their initializer)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from funcdl._sendable import unsendable

_STARTED: Any = None  # in a worker of run's own pool: one flag per run, set as it starts


def hello(flags: Any) -> None:
    """The initializer of run's own pool's workers."""
    global _STARTED
    _STARTED = flags


def attempt(train_fn: Callable[[Any], Any], config: Any, index: int = -1,
            sent: bool = False) -> tuple[bool, Any, float]:
    """Runs in the worker: ``(True, result, seconds)`` or ``(False, (error, traceback),
    seconds)``; the traceback is formatted here, where the frames are. A run's SystemExit
    (``sys.exit``, or argparse refusing the config), or any other BaseException (asyncio's
    CancelledError), fails that run alone; KeyboardInterrupt stops the sweep. ``sent``: the
    result goes back through an executor other than Python's pools (Dask's), which is
    pickled here first: Dask's ClientExecutor never completes a future whose result does
    not serialise, so the sweep would wait forever."""
    if index >= 0:  # given by run's own pools only: never by a sweep inside a run
        _STARTED[index] = 1  # so that a worker's death is laid on the runs it had started
    start = time.perf_counter()
    try:
        result = train_fn(config)
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        text = f"{type(err).__name__}: {err}"
        return False, (text, traceback.format_exc()), time.perf_counter() - start
    why = unsendable(result) if sent else None  # (pickles the result once more)
    if why is not None:
        return (False, (f"TypeError: the result the run returned could not be pickled "
                        f"({why}); return plain data: numbers, arrays, dicts, lists",
                        traceback.format_stack()[-1]), time.perf_counter() - start)
    return True, result, time.perf_counter() - start
