"""The bad settings and misuses of this session's optimizers, wrappers and schedules, each
named with its transform (the formulas are in test_optim_more.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim

# ---------------------------------------------------------------------------- bad inputs

_P = {"w": np.ones(2)}
BAD: list[tuple[Callable[[], Any], type, str]] = [
    (lambda: optim.scale_by_adamax(b1=1.0), ValueError, r"scale_by_adamax: b1 must be a finite "
                                                        r"number in \[0, 1\), got 1\.0"),
    (lambda: optim.scale_by_adamax(eps=-1e-8), ValueError, r"scale_by_adamax: eps must be"),
    (lambda: optim.scale_by_radam(b2=-0.1), ValueError, r"scale_by_radam: b2 must be"),
    (lambda: optim.scale_by_radam(threshold=3.0), ValueError, r"scale_by_radam: threshold must"
                                                              r" be a finite number >= 4"),
    (lambda: optim.scale_by_nadam(momentum_decay=-1.0), ValueError, r"scale_by_nadam: moment"),
    (lambda: optim.scale_by_lion(b1=1.5), ValueError, r"scale_by_lion: b1 must be"),
    (lambda: optim.scale_by_lion(mu_dtype=np.int32), TypeError, r"scale_by_lion: mu_dtype"),
    (lambda: optim.scale_by_trust_ratio(trust_coefficient=-1.0), ValueError,
     r"scale_by_trust_ratio: trust_coefficient must be a finite number >= 0"),
    (lambda: optim.scale_by_trust_ratio().update(optim.EmptyState(), _P), ValueError,
     r"scale_by_trust_ratio\.update: needs the params"),
    (lambda: optim.apply_every(0), ValueError, r"apply_every: k must be a positive int, got 0"),
    (lambda: optim.apply_every(1.5), ValueError, r"apply_every: k must be a positive int"),
    (lambda: optim.multi_steps(None, 2), TypeError, r"multi_steps: opt must be a funcdl Grad"),
    (lambda: optim.multi_steps(optim.adam(), 0), ValueError, r"multi_steps: every_k_schedule"),
    (lambda: optim.multi_steps(optim.adam(), 2, 1), TypeError, r"multi_steps: use_grad_mean"),
    (lambda: optim.multi_steps(optim.adam(), optim.constant_schedule), TypeError,
     r"multi_steps: every_k_schedule is the schedule constructor"),
    (lambda: (lambda o: o.update(o.init(_P), _P))(optim.multi_steps(optim.adam(), lambda s: 0)),
     ValueError, r"multi_steps\.update: every_k_schedule\(0\) .* must be a positive int"),
    (lambda: optim.ema(1.0), ValueError, r"ema: debias divides by 1 - decay\^t, 0 for decay=1"),
    (lambda: optim.ema(0.9, accumulator_dtype="int8"), TypeError, r"ema: accumulator_dtype"),
    (lambda: optim.adamax(lr=-1.0), ValueError, r"adamax: lr .*must be a finite number >= 0"),
    (lambda: optim.nadam(b1=1.0), ValueError, r"nadam: b1 must be"),
    (lambda: optim.radam(decoupled_weight_decay="yes"), TypeError, r"radam: decoupled_weight"),
    (lambda: optim.lion(1e-3, weight_decay=-1.0), ValueError, r"lion: weight_decay"),
    (lambda: optim.lamb(None), TypeError, r"lamb: lr .*must be a real number, got None"),
    (lambda: optim.linear_onecycle_schedule(0, 1.0), ValueError,
     r"linear_onecycle_schedule: transition_steps must be a positive int"),
    (lambda: optim.linear_onecycle_schedule(10, 1.0, 0.5, 0.4), ValueError,
     r"linear_onecycle_schedule: pct_final .* must be >= pct_start=0\.5, got 0\.4"),
    (lambda: optim.cosine_onecycle_schedule(10, 1.0, div_factor=0.0), ValueError,
     r"cosine_onecycle_schedule: div_factor must be a finite number > 0"),
    (lambda: optim.warmup_exponential_decay_schedule(0.0, 1.0, 5, 10, 0.0), ValueError,
     r"warmup_exponential_decay_schedule: decay_rate must be > 0"),
    (lambda: optim.sgdr_schedule([]), ValueError, r"sgdr_schedule: cosine_kwargs must hold"),
    (lambda: optim.sgdr_schedule(None), TypeError, r"sgdr_schedule: cosine_kwargs must be a"),
    (lambda: optim.sgdr_schedule([{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 5,
                                   "decay_steps": 5}]), ValueError,
     r"sgdr_schedule: cosine_kwargs\[0\]: warmup_cosine_decay_schedule: decay_steps is the"),
    (lambda: optim.sgdr_schedule([{"peak": 1.0}]), TypeError, r"sgdr_schedule: cosine_kwargs"),
    (lambda: optim.scale_by_nadam().update(
        optim.scale_by_nadam().init(_P)._replace(mu_product=2.0), _P), ValueError,
     r"scale_by_nadam\.update: the state's mu_product must be a float in \[0, 1\], got 2\.0")]


@pytest.mark.parametrize(("call", "kind", "match"), BAD, ids=[b[2][:40] for b in BAD])
def test_bad_settings_and_states_are_refused_naming_the_function(
        call: Callable[[], Any], kind: type, match: str) -> None:
    with pytest.raises(kind, match=rf"^{match}"):
        call()
