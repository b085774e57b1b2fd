"""More optimizers as named chains, as in ``_alias``: ``adadelta`` and ``rprop`` with
PyTorch's update formulas (``torch.optim.Adadelta``, ``Rprop``: a run matches torch's step
for step), ``adabelief`` and ``yogi`` with optax's (torch has neither). Each takes ``lr``
first (DESIGN.md's name), then the arguments of its model in its order. Each ``init``
refuses params that are not real floating point, naming the alias."""

from __future__ import annotations

from typing import Any

from funcdl._args import bool_arg
from funcdl.optim._alias import _alias, _checked, _Stages, _weight_decay
from funcdl.optim._base import GradientTransformation, ScalarOrSchedule
from funcdl.optim._checks import check_float, check_lr
from funcdl.optim._more_adaptive2 import (
    check_etas,
    check_step_sizes,
    scale_by_adadelta,
    scale_by_belief,
    scale_by_rprop,
    scale_by_yogi,
)
from funcdl.optim._transforms import scale, scale_by_learning_rate

__all__ = ["adabelief", "adadelta", "rprop", "yogi"]


def _pair(name: str, what: str, value: Any, example: str) -> tuple[Any, Any]:
    """A 2-tuple setting (torch's ``etas``, ``step_sizes``), or a TypeError naming it."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}: {what} must be a pair of numbers, e.g. {what}={example}, "
                        f"got {value!r}")
    return value[0], value[1]


def adadelta(lr: ScalarOrSchedule = 1.0, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0) -> GradientTransformation:
    """Adadelta, as ``torch.optim.Adadelta``: ``g ← g + wd·p``; ``a ← rho·a + (1-rho)·g²``;
    ``u = sqrt(d + eps) / sqrt(a + eps) · g``; ``d ← rho·d + (1-rho)·u²``; ``p ← p - lr·u``
    (see ``scale_by_adadelta``).

    optax's ``adadelta(learning_rate=1.0)`` is the same chain, bit for bit, and takes a
    ``weight_decay_mask``; its default ``learning_rate=None`` is no scaling at all, not
    even the sign: its steps then climb the loss, these descend it (lr = 1, torch's
    default).

    Stages: ``weight_decay``, ``adadelta``, ``lr``.
    """
    name = "adadelta"
    lr = check_lr(name, lr)
    rho = check_float(name, "rho", rho, high=1.0)
    eps = check_float(name, "eps", eps)
    wd = check_float(name, "weight_decay", weight_decay)
    stages: _Stages = []
    _weight_decay(stages, wd)
    stages += [("adadelta", scale_by_adadelta(rho, eps)), ("lr", scale_by_learning_rate(lr))]
    return _alias(name, stages, eps)


def rprop(lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
          step_sizes: tuple[float, float] = (1e-6, 50.0)) -> GradientTransformation:
    """Rprop, as ``torch.optim.Rprop``: each entry moves by ``-s·sign(g)``, its step size
    ``s`` (from ``lr``) times ``etas[1]`` while the gradient's sign holds, times
    ``etas[0]`` after it flips (and that step is skipped, its gradient taken as 0), clipped
    to ``step_sizes`` (see ``scale_by_rprop``).

    optax's ``rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)``
    (0.2.8) returns each step one update late, its first 0 (see ``scale_by_rprop``), and
    does not clip an ``lr`` outside ``step_sizes`` until a gradient's sign is compared,
    which torch (and this) does at the first step. ``lr`` is the initial step size, a
    float: not a schedule.

    Stages: ``rprop``, ``flip`` (``scale(-1)``).
    """
    name = "rprop"
    lr = check_float(name, "lr (the initial step size)", lr)
    minus, plus = check_etas(name, *_pair(name, "etas", etas, "(0.5, 1.2)"))
    lo, hi = check_step_sizes(name, *_pair(name, "step_sizes", step_sizes, "(1e-6, 50)"))
    stages: _Stages = [("rprop", scale_by_rprop(lr, minus, plus, lo, hi)),
                       ("flip", scale(-1.0))]
    return _alias(name, stages)


def adabelief(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
              ) -> GradientTransformation:
    """AdaBelief, as optax's ``adabelief``: Adam with the running variance of ``g - m``
    in place of ``g²``: ``p ← p - lr · m̂ / (sqrt(ŝ) + eps)`` (see ``scale_by_belief``).

    Stages: ``belief``, ``lr``.
    """
    name = "adabelief"
    lr, b1, b2, eps = _checked(name, lr, b1, b2, eps)
    eps_root = check_float(name, "eps_root", eps_root)
    nest = bool_arg(nesterov, name, "nesterov")
    stages: _Stages = [("belief", scale_by_belief(b1, b2, eps, eps_root, nesterov=nest)),
                       ("lr", scale_by_learning_rate(lr))]
    return _alias(name, stages)


def yogi(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3
         ) -> GradientTransformation:
    """Yogi, as optax's ``yogi``: ``p ← p - lr · m̂ / (sqrt(v̂) + eps)``, ``v`` moving
    additively towards ``g²`` (see ``scale_by_yogi``), both moments from 1e-6.

    Stages: ``yogi``, ``lr``.
    """
    name = "yogi"
    lr, b1, b2, eps = _checked(name, lr, b1, b2, eps)
    stages: _Stages = [("yogi", scale_by_yogi(b1, b2, eps)), ("lr", scale_by_learning_rate(lr))]
    return _alias(name, stages, eps)
