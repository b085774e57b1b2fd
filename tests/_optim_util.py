"""Helpers shared by the optimizer tests: run an optimizer over a sequence of grads."""

from __future__ import annotations

from typing import Any

import numpy as np

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
