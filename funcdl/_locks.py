"""A lock that a forked child gets anew: the parent's copy may be held by a thread the fork
did not copy, and would then never be released in the child."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


class ForkSafeLock:
    """``with lock:`` as a ``threading.Lock``, renewed in a forked child before its threads
    run (``os.register_at_fork``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        _ALL.add(self)

    def __enter__(self) -> bool:
        return self.lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.lock.__exit__(*exc)


_ALL: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _renew() -> None:
    for lock in _ALL:
        lock.lock = threading.Lock()


os.register_at_fork(after_in_child=_renew)
