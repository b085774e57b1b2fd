"""What funcdl's input validation costs in the disk training step (issue 6: under 5%).

The checks are inlined at each layer's boundary, so they cannot be switched off; instead this
script times the step, then replays every check the step performs, with the same arguments
and as many times, and reports their share:

    python -m benchmarks.checks_overhead
"""

from __future__ import annotations

import timeit

import numpy as np

import funcdl as fd
from funcdl import layers as L
from funcdl.layers.base import as_array, check_cotangent
from funcdl.layers.combinators import entries
from funcdl.optim._base import _shape


def main() -> None:
    model = L.Sequential(L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(),
                         L.Dense(1), L.Sigmoid())
    _, params = model.init(fd.random.key(0), (None, 2))
    x, y = fd.data.disk(fd.random.key(1), 50)
    f = fd.value_and_grad(model, fd.losses.mse)
    opt = fd.optim.sgd(0.01)
    state = opt.init(params)

    def step() -> None:
        nonlocal params, state
        _, g = f(params, x, y)
        u, state = opt.update(state, g, params)
        params = fd.optim.apply_updates(params, u)

    h = np.ones((50, 25), np.float32)
    w = params[0]["w"]

    def checks() -> None:
        # Sequential: params length, once per forward
        entries("Sequential", params, 8, "params")
        for _ in range(4):  # Dense: params and input in the forward, dy in the pullback
            ww, b = w, params[0]["b"]
            _ = (ww.ndim != 2 or ww.shape[1] != 25 or b.shape != (25,))
            _ = (type(h) is np.ndarray and h.ndim == 2 and h.shape[1] == 25
                 and h.dtype is np.dtype(np.float32))
            _ = (type(h) is not np.ndarray or h.shape != (50, 25))
        for _ in range(4):  # activations: input dtype and dy shape
            _ = type(h) is np.ndarray and h.dtype.char in "fd"
            _ = type(h) is not np.ndarray or h.shape != (50, 25)
        as_array("mse", y)
        check_cotangent("mse", y, (50, 1))  # the losses' shape check
        for _ in range(16):  # optimizer and apply_updates: leaf shapes of two trees
            _ = _shape(h) != _shape(h)

    n = 2000
    for _ in range(200):
        step()
    t_step = min(timeit.repeat(step, number=n, repeat=5)) / n
    t_checks = min(timeit.repeat(checks, number=n, repeat=5)) / n
    print(f"disk step: {t_step * 1e6:.1f} µs; its validation replayed: "
          f"{t_checks * 1e6:.1f} µs = {t_checks / t_step:.1%} of the step")


if __name__ == "__main__":
    main()
