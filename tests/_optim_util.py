"""Helpers shared by the optimizer tests: run an optimizer over a sequence of grads."""

from __future__ import annotations

from typing import Any

import numpy as np

import funcdl as fd
from funcdl import optim, tree

GT = optim.GradientTransformation


def run(opt: GT, params: Any, grads_seq: list[Any]) -> tuple[list[Any], Any]:
    """Apply ``opt`` for each grads in turn; return the params after every step and the state."""
    state = opt.init(params)
    history = []
    for grads in grads_seq:
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        history.append(params)
    return history, state


def scalar_run(opt: GT, p0: float, gs: list[float]) -> list[float]:
    """One-leaf problem: the param after each step, as floats."""
    hist, _ = run(opt, {"p": np.array([p0])}, [{"p": np.array([g])} for g in gs])
    return [float(h["p"][0]) for h in hist]


def close(got: list[float], want: list[float], rtol: float = 1e-12) -> None:
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0.0)


def problem(dtype: Any, steps: int = 4, positive: bool = False) -> tuple[Any, list[Any]]:
    """Params {'w' (3, 2), 'b' (2,), 's' 0-d} of ``dtype`` (``positive``: |normal|) and
    ``steps`` grads like them, from a fixed seed."""
    rng = np.random.default_rng(0)
    mag = np.abs if positive else (lambda a: a)
    params = {"w": mag(rng.normal(size=(3, 2))).astype(dtype),
              "b": mag(rng.normal(size=2)).astype(dtype), "s": np.asarray(0.5, dtype)}
    return params, [tree.map(lambda x: rng.normal(size=x.shape).astype(dtype), params)
                    for _ in range(steps)]


def resume(opt: GT, params: Any, grads_seq: list[Any], state: Any = None) -> tuple[Any, Any]:
    """Apply ``opt`` for each grads in turn from ``state`` (None: ``opt.init(params)``);
    the last params and state."""
    state = opt.init(params) if state is None else state
    for grads in grads_seq:
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
    return params, state


def directions(opt: GT, gs: list[float], p0: float = 1.0) -> list[float]:
    """``opt``'s updates for a one-entry param held at ``p0``, as floats."""
    state, params, out = opt.init({"p": np.array([p0])}), {"p": np.array([p0])}, []
    for g in gs:
        u, state = opt.update(state, {"p": np.array([g])}, params)
        out.append(float(u["p"][0]))
    return out


def mlp_losses(opt: GT, steps: int, evaluate: Any = None) -> tuple[float, float]:
    """The mse of a Dense(16)-Tanh-Dense(1) model on a fixed regression, before and after
    ``steps`` updates by ``opt`` (float32); ``evaluate(state, params)`` gives the params to
    score at the end (schedule_free's eval params), by default the params."""
    model = fd.layers.Sequential(fd.layers.Dense(16), fd.layers.Tanh(), fd.layers.Dense(1))
    _, params = model.init(fd.random.key(1), (None, 3))
    x = np.random.default_rng(2).normal(size=(64, 3)).astype(np.float32)
    target = np.sin(x @ np.array([[1.0], [-2.0], [0.5]], np.float32))
    loss_grad = fd.value_and_grad(model, fd.losses.mse)
    state = opt.init(params)
    first, _ = loss_grad(params, x, target)
    for _ in range(steps):
        _, grads = loss_grad(params, x, target)
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
    if evaluate is not None:
        params = evaluate(state, params)
    return first, loss_grad(params, x, target)[0]
