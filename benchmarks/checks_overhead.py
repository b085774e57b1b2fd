"""What funcdl's input validation costs in the disk training step (issue 6: under 5%).

The checks are inlined at each layer's boundary, so they cannot be switched off; instead this
script times the step, then replays every check the step performs (as the code writes them:
Dense and the activation after it run as one step, see funcdl.layers._fusion),
with the same arguments and as many times, and reports their share:

    python -m benchmarks.checks_overhead
"""

from __future__ import annotations

import timeit

import numpy as np

from funcdl.layers.combinators import entries
from funcdl.losses._base import pred_array, target_like

from . import impl_funcdl
from .workloads import WORKLOADS, data


def main() -> None:
    w_disk = WORKLOADS["disk"]
    x, y = data(w_disk)
    params = impl_funcdl.init(w_disk)
    step = impl_funcdl.make_step(w_disk, params, x, y)  # the benchmark's own disk step

    h = np.ones((50, 25), np.float32)
    w = params[0]["w"]

    f32 = np.dtype(np.float32)

    def checks() -> None:
        # Sequential: params length, once per forward
        entries("Sequential", params, 8, "params")
        for _ in range(4):  # Dense + activation steps: params, input, then dy in the pullback
            ww, b = w, params[0]["b"]
            _ = (ww.ndim != 2 or ww.shape[1] != 25 or b.shape != (25,))
            _ = (type(h) is np.ndarray and h.ndim == 2 and h.shape[1] == 25
                 and (h.dtype is f32 or h.dtype is f32))
            _ = type(h) is np.ndarray and h.shape == (50, 25) and h.dtype.kind == "f"
        target_like("mse", pred_array("mse", y), y)  # the loss: pred dtype, target
        for _ in range(16):  # optimizer and apply_updates: leaf shapes of two trees, inline
            _ = type(h) is np.ndarray and type(h) is np.ndarray and h.shape != h.shape

    def loops() -> None:  # the replay's own scaffolding, subtracted from its time
        for _ in range(4):
            _ = w, params[0]["b"]  # the params lookup is the layer's work, not a check
        for _ in range(16):
            pass

    n = 2000
    for _ in range(200):
        step()
    t_step = min(timeit.repeat(step, number=n, repeat=5)) / n
    t_checks = (min(timeit.repeat(checks, number=n, repeat=5))
                - min(timeit.repeat(loops, number=n, repeat=5))) / n
    print(f"disk step: {t_step * 1e6:.1f} µs; its validation replayed (loop scaffolding "
          f"subtracted): {t_checks * 1e6:.1f} µs = {t_checks / t_step:.1%} of the step")


if __name__ == "__main__":
    main()
