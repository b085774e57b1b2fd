"""More of optax's aliases as named chains, as in ``_more_alias``, with optax's update
formulas: ``nadamw``, ``adamaxw``, ``novograd``, ``lars``, ``sign_sgd``, ``signum``,
``noisy_sgd`` and ``adan``; and optax's ``piecewise_interpolate_schedule``. Each alias takes
``lr`` first (DESIGN.md's name for optax's ``learning_rate``; a float or a schedule, no
default, as optax's), then optax's arguments in optax's order; its arguments are checked
here, so that their errors name it. Each ``init`` refuses params that are not real floating
point, naming the alias."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, choice_arg
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._alias import _alias, _checked, _Stages, _weight_decay
from funcdl.optim._base import GradientTransformation, ScalarOrSchedule, Schedule
from funcdl.optim._checks import (
    check_float,
    check_float_or_schedule,
    check_lr,
    moment_dtype_arg,
    schedule_factory,
)
from funcdl.optim._clipping_more import add_noise
from funcdl.optim._masked import make_masked
from funcdl.optim._more_adaptive import scale_by_adamax
from funcdl.optim._more_schedules import _interpolated
from funcdl.optim._more_transforms import scale_by_trust_ratio
from funcdl.optim._optax_extra import scale_by_adan, scale_by_novograd, scale_by_sign
from funcdl.optim._schedules import _boundaries, _value
from funcdl.optim._transforms import scale_by_learning_rate, trace
from funcdl.optim._wrappers import ema

__all__ = ["adamaxw", "adan", "lars", "nadamw", "noisy_sgd", "novograd",
           "piecewise_interpolate_schedule", "sign_sgd", "signum"]


def _decay(name: str, weight_decay: Any) -> ScalarOrSchedule:
    """A decoupled weight decay: a float >= 0, or a schedule (as optax)."""
    return check_float_or_schedule(name, "weight_decay", weight_decay, "wd")


def nadamw(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           eps_root: float = 0.0, mu_dtype: Any = None, weight_decay: ScalarOrSchedule = 1e-4,
           mask: Any = None, *, nesterov: bool = True) -> GradientTransformation:
    """NAdamW, as optax's ``nadamw`` (``adamw(nesterov=True)``; ``nesterov=False`` is
    ``adamw``, as optax's keyword): ``p ← p - lr · (m̂ /
    (sqrt(v̂ + eps_root) + eps) + wd·p)``, ``m̂ = b1·m / (1-b1^(t+1)) + (1-b1)·g / (1-b1^t)``
    Nesterov's look-ahead (see ``scale_by_adam(nesterov=True)``), decoupled weight decay,
    ``mask`` as ``adamw``'s. Not ``nadam(decoupled_weight_decay=True)``, which follows
    torch's NAdam and its momentum schedule (see ``nadam``).

    Stages: ``adam``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "nadamw"
    lr, b1, b2, eps = _checked(name, lr, b1, b2, eps)
    eps_root = check_float(name, "eps_root", eps_root)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)
    nest = bool_arg(nesterov, name, "nesterov")
    stages: _Stages = [("adam", scale_by_adam(b1, b2, eps, eps_root, mu_dt, nesterov=nest))]
    _weight_decay(stages, _decay(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return _alias(name, stages, eps)


def adamaxw(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            weight_decay: ScalarOrSchedule = 1e-4, mask: Any = None) -> GradientTransformation:
    """AdamaxW, as optax's ``adamaxw``: ``p ← p - lr · (m / ((1-b1^t)·v) + wd·p)``,
    ``v = max(b2·v, |g| + eps)`` (see ``scale_by_adamax``), decoupled weight decay, ``mask``
    as ``adamw``'s. ``adamax(weight_decay=)`` is torch's L2 decay instead, entering ``g``.

    Stages: ``adamax``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "adamaxw"
    lr, b1, b2, eps = _checked(name, lr, b1, b2, eps, b2_high_open=False)
    stages: _Stages = [("adamax", scale_by_adamax(b1, b2, eps))]
    _weight_decay(stages, _decay(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return _alias(name, stages, eps)


def novograd(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.25, eps: float = 1e-6,
             eps_root: float = 0.0, weight_decay: float = 0.0) -> GradientTransformation:
    """NovoGrad, as optax's ``novograd``: ``p ← p - lr·m``, ``m = b1·m + g / (sqrt(ν +
    eps_root) + eps) + wd·p`` with ``ν`` the running mean of each leaf's ``‖g‖²`` (see
    ``scale_by_novograd``). ``weight_decay`` a float (optax multiplies it into the params
    inside the moment, where a schedule would not be read).

    Stages: ``novograd``, ``lr``.
    """
    name = "novograd"
    lr = check_lr(name, lr)
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    wd = check_float(name, "weight_decay", weight_decay, low=-math.inf)
    direction = scale_by_novograd(b1, b2, eps, eps_root, wd)
    return _alias(name, [("novograd", direction), ("lr", scale_by_learning_rate(lr))], eps)


def _all_leaves(mask: Any) -> bool | None:
    """True for optax's default mask ``True`` (and None): every leaf, no ``masked`` wrapper;
    False for a plain ``False``: no leaf, no stage (a ``masked`` one over bare-array params
    would hand its inner transform params=None); None for a tree or a function."""
    if mask is None:
        return True
    return bool(mask) if isinstance(mask, (bool, np.bool_)) else None


def lars(lr: ScalarOrSchedule, weight_decay: ScalarOrSchedule = 0.0,
         weight_decay_mask: Any = True, trust_coefficient: float = 0.001, eps: float = 0.0,
         trust_ratio_mask: Any = True, momentum: float = 0.9, nesterov: bool = False
         ) -> GradientTransformation:
    """LARS (You et al. 2017), as optax's ``lars``: per leaf ``d = g + wd·p`` (where
    ``weight_decay_mask``); ``d ← d · c·‖p‖ / (‖d‖ + eps)``, ``c = trust_coefficient``
    (where ``trust_ratio_mask``; ``d`` itself where a norm is 0, see
    ``scale_by_trust_ratio``); then momentum on the lr-scaled step, ``b = -lr·d +
    momentum·b``, ``p ← p + b`` (``-lr·d + momentum·b`` with ``nesterov``). The masks: True
    (every leaf, optax's default; None too), a tree of bools or a function of the params,
    as ``adamw``'s ``mask``.

    Stages: ``weight_decay``, ``trust_ratio`` (each a ``masked`` one with a tree or function
    mask, left out with a plain False mask), ``lr``, ``momentum`` (a ``trace``; left out at
    momentum 0, as the weight decay at 0).
    """
    name = "lars"
    lr = check_lr(name, lr)
    wd = _decay(name, weight_decay)
    coef = check_float(name, "trust_coefficient", trust_coefficient)
    eps = check_float(name, "eps", eps)
    mom = check_float(name, "momentum", momentum)
    nest = bool_arg(nesterov, name, "nesterov")
    decay_all, ratio_all = _all_leaves(weight_decay_mask), _all_leaves(trust_ratio_mask)
    stages: _Stages = []
    if decay_all is not False:
        _weight_decay(stages, wd, None if decay_all else weight_decay_mask, name)
    if ratio_all is not False:
        ratio = scale_by_trust_ratio(trust_coefficient=coef, eps=eps)
        stages.append(("trust_ratio", ratio if ratio_all else
                       make_masked(name, ratio, trust_ratio_mask)))
    stages.append(("lr", scale_by_learning_rate(lr)))
    if mom != 0.0:
        stages.append(("momentum", trace(mom, nest)))
    return _alias(name, stages)


def sign_sgd(lr: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al. 2018), as optax's ``sign_sgd``: ``p ← p - lr·sign(g)``.

    Stages: ``sign``, ``lr``.
    """
    lr = check_lr("sign_sgd", lr)
    return _alias("sign_sgd", [("sign", scale_by_sign()), ("lr", scale_by_learning_rate(lr))])


def signum(lr: ScalarOrSchedule, beta: float = 0.9, accumulator_dtype: Any = None
           ) -> GradientTransformation:
    """Signum, as optax's ``signum``: ``m = beta·m + (1-beta)·g`` (from 0, not debiased: its
    sign is all that is read); ``p ← p - lr·sign(m)``. ``accumulator_dtype`` stores ``m``
    in that float dtype (None: the params'), as ``ema``'s.

    Stages: ``ema``, ``sign``, ``lr``.
    """
    name = "signum"
    lr = check_lr(name, lr)
    b = check_float(name, "beta", beta, high=1.0)
    acc = moment_dtype_arg(name, "accumulator_dtype", accumulator_dtype)
    return _alias(name, [("ema", ema(b, debias=False, accumulator_dtype=acc)),
                         ("sign", scale_by_sign()), ("lr", scale_by_learning_rate(lr))])


def noisy_sgd(lr: ScalarOrSchedule, eta: float = 0.01, gamma: float = 0.55, key: Any = None
              ) -> GradientTransformation:
    """Noisy SGD (Neelakantan et al. 2015), as optax's ``noisy_sgd``: ``p ← p - lr·(g +
    σ·n)``, ``n`` standard normal, ``σ² = eta / (t + 1)^gamma`` (see ``add_noise``).

    ``key`` is required: a ``funcdl.random.key(seed)`` (optax 0.2.8 falls back to seed 0,
    with a warning, when none is given); the noise has optax's law, not JAX's bits.
    Stages: ``noise``, ``lr``.
    """
    name = "noisy_sgd"
    lr = check_lr(name, lr)
    var = check_float(name, "eta (the noise variance at the first update)", eta)
    decay = check_float(name, "gamma (the variance's decay exponent)", gamma)
    if key is None:
        raise TypeError(f"{name}: needs key=, the noise's funcdl.random.key(seed) (funcdl "
                        f"keeps no global seed), got None")
    k = random.check_key(key, name)
    return _alias(name, [("noise", add_noise(var, decay, k)),
                         ("lr", scale_by_learning_rate(lr))])


def adan(lr: ScalarOrSchedule, b1: float = 0.98, b2: float = 0.92, b3: float = 0.99,
         eps: float = 1e-8, eps_root: float = 1e-8, weight_decay: ScalarOrSchedule = 0.0,
         mask: Any = None) -> GradientTransformation:
    """Adan (Xie et al. 2022), as optax's ``adan``: ``p ← p - lr · ((m̂ + (1-b2)·v̂) /
    (sqrt(n̂ + eps_root) + eps) + wd·p)`` (see ``scale_by_adan``; note the alias's
    ``eps_root`` default, 1e-8, as optax's, where ``scale_by_adan``'s is 0), decoupled
    weight decay, ``mask`` as ``adamw``'s.

    Stages: ``adan``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "adan"
    lr = check_lr(name, lr)
    b1, b2, b3 = (check_float(name, b, v, high=1.0, open_high=True)
                  for b, v in (("b1", b1), ("b2", b2), ("b3", b3)))
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    stages: _Stages = [("adan", scale_by_adan(b1, b2, b3, eps, eps_root))]
    _weight_decay(stages, _decay(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return _alias(name, stages, eps)


@schedule_factory
def piecewise_interpolate_schedule(interpolate_type: str, init_value: float,
                                   boundaries_and_scales: Mapping[int, float] | None = None
                                   ) -> Schedule:
    """optax's: with the boundaries sorted, ``0 = b_0 < b_1 < ...``, and their scales
    ``s_i``, the values ``v_0 = init_value``, ``v_{i+1} = v_i·s_{i+1}``; from ``b_i`` to
    ``b_{i+1}`` the schedule goes from ``v_i`` to ``v_{i+1}``, linearly or along a half
    cosine (``interpolate_type`` 'linear' or 'cosine'), at ``pct = (t - b_i) / (b_{i+1} -
    b_i)``; from the last boundary on it is the last value (``init_value`` with no
    boundaries), and before count 0 it is 0. E.g. ``('linear', 1.0, {4: 0.1, 8: 0.01})``
    gives 1, 0.55, 0.1, 0.0505, 0.001 at counts 0, 2, 4, 6, 8. A boundary at 0 sets the
    value from count 0. Boundaries are ints >= 0, scales finite and >= 0, and the values
    reached must be finite.
    """
    name = "piecewise_interpolate_schedule"
    choice_arg(interpolate_type, name, "interpolate_type", ("linear", "cosine"))
    v0 = _value(name, "init_value", init_value)
    pairs = _boundaries(name, boundaries_and_scales)
    return _interpolated(name, interpolate_type == "cosine", v0, pairs,
                         fix="pass smaller scales")
