"""The training pass the example scripts share: one epoch of shuffled mini-batches, each a
value_and_grad call, an optimizer update and the params applied; what each script does
around it (the model, the schedule, what it prints) stays in the script."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import funcdl as fd


def epoch(value_and_grad: Callable[..., Any], opt: fd.optim.GradientTransformation,
          params: Any, opt_state: Any, key: Any, x: Any, *targets: Any,
          batch_size: int, draws: Any = None) -> tuple[Any, Any, float]:
    """One pass over ``x`` and its ``targets`` in batches shuffled by ``key``: ``(params,
    opt_state, the mean loss over the examples)``. Several targets (ctc's labels and
    lengths) reach the loss as one tuple. ``draws``: a key whose ``fold_in`` with the step's
    index is passed to each step as ``key=`` (a model drawing noise: dropout, a VAE's eps)."""
    total = 0.0
    for i, (xb, *tb) in enumerate(fd.data.batches(key, x, *targets, batch_size=batch_size)):
        step_key = {} if draws is None else {"key": fd.random.fold_in(draws, i)}
        loss, grads = value_and_grad(params, xb, tb[0] if len(tb) == 1 else tuple(tb),
                                     **step_key)
        updates, opt_state = opt.update(opt_state, grads, params)
        params = fd.optim.apply_updates(params, updates)
        total += loss * len(xb)
    return params, opt_state, total / len(x)
