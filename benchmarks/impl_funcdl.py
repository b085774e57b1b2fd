"""funcdl's side: the models, and a training step written as the README writes one
(``fd.value_and_grad``, ``fd.optim.sgd``, ``fd.optim.apply_updates``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import layers as L

from .workloads import LR, Workload

__all__ = ["Unavailable", "init", "make_step", "model", "parts", "step_of"]


class Unavailable(Exception):
    """A workload this funcdl cannot build (e.g. Conv2D not written yet); the message says
    why."""


def _spatial() -> tuple[Any, Any]:
    try:
        from funcdl.layers import Conv2D, MaxPool2D  # type: ignore[attr-defined]
    except ImportError:
        try:
            from funcdl.layers.conv import Conv2D
            from funcdl.layers.pool import MaxPool2D
        except ImportError as e:
            raise Unavailable(f"funcdl has no Conv2D/MaxPool2D yet ({e})") from None
    return Conv2D, MaxPool2D


def model(w: Workload) -> tuple[Any, Any]:
    """``(layer, loss)`` for workload ``w``."""
    children, loss = parts(w)
    return L.Sequential(*children), loss


def parts(w: Workload) -> tuple[list[Any], Any]:
    """``(the model's layers in order, loss)`` for workload ``w`` (``benchmarks.fusion_ab``
    rebuilds the Sequential from them)."""
    ce = fd.losses.softmax_cross_entropy
    if w.name == "disk":
        return [L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(),
                L.Dense(1), L.Sigmoid()], fd.losses.mse
    if w.name == "mlp":
        return [L.Dense(512), L.ReLU(), L.Dense(512), L.ReLU(), L.Dense(10)], ce
    if w.name == "cnn":
        Conv2D, MaxPool2D = _spatial()
        return [Conv2D(16, 3, padding="SAME"), L.ReLU(), MaxPool2D(2),
                Conv2D(32, 3, padding="SAME"), L.ReLU(), MaxPool2D(2), L.Flatten(),
                L.Dense(10)], ce
    if w.name == "resmlp":
        blocks = [L.Residual(L.Sequential(L.Dense(256), L.ReLU(), L.Dense(256)))
                  for _ in range(4)]
        return [L.Dense(256), *blocks, L.Dense(10)], ce
    raise ValueError(f"unknown workload {w.name!r}")


def init(w: Workload, seed: int = 0) -> Any:
    """funcdl's initial params for ``w`` (PyTorch's default init); the peers copy them."""
    layer, _ = model(w)
    _, params = layer.init(fd.random.key(seed), (None, *w.x_shape))
    return params


def make_step(w: Workload, params: Any, x: np.ndarray, y: np.ndarray
              ) -> Callable[[], float]:
    """``step()``: one full training step from the current params; returns the loss before
    the update. The params live in the closure, replaced (never mutated) at each step."""
    return step_of(*model(w), params, x, y)


def step_of(layer: Any, loss: Any, params: Any, x: np.ndarray, y: np.ndarray
            ) -> Callable[[], float]:
    """``make_step``'s step for a given ``layer`` and ``loss`` (``benchmarks.fusion_ab``
    times one model built two ways)."""
    loss_and_grad = fd.value_and_grad(layer, loss)
    opt = fd.optim.sgd(LR)
    state = opt.init(params)

    def step() -> float:
        nonlocal params, state
        value, grads = loss_and_grad(params, x, y)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
        return float(value)

    return step
