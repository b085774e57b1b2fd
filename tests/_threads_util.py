"""A call that may wait on other threads (a rendezvous of BatchThreads' slices), run where a
hang fails the test instead of the run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def finishes(call: Callable[[], Any], seconds: float = 30.0) -> tuple[BaseException | None,
                                                                     Any]:
    """``(error, value)`` of ``call()`` run in a daemon thread; an AssertionError if it has
    not returned after ``seconds``."""
    box: list[Any] = [None, None]

    def target() -> None:
        try:
            box[1] = call()
        except BaseException as e:  # handed to the test
            box[0] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "a call waits for a sum that never comes"
    return box[0], box[1]


def together(work: Callable[[int], Any], n: int) -> Callable[[], None]:
    """A call that runs ``work(0)``, ..., ``work(n - 1)`` in n threads at once and waits
    for them all (for ``finishes``)."""
    def run() -> None:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run
