"""Helpers shared by the optimizer tests: run an optimizer over a sequence of grads."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import optim

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
