"""More optimizers as named chains, as in ``_alias``: ``adamax``, ``nadam`` and ``radam``
with PyTorch's update formulas (``torch.optim.Adamax``, ``NAdam``, ``RAdam``: a run matches
torch's step for step), ``lion`` and ``lamb`` with optax's (torch has neither), ``amsgrad``
as optax's (torch's is ``adam(amsgrad=True)``). Each takes
``lr`` first (DESIGN.md's name; a float or a schedule), then optax's arguments in optax's
order, then torch's weight decay options. Each ``init`` refuses params that are not real
floating point, naming the alias."""

from __future__ import annotations

from typing import Any

from funcdl._args import bool_arg
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._alias import _alias, _check_adam, _checked, _Stages, _weight_decay
from funcdl.optim._amsgrad import scale_by_amsgrad
from funcdl.optim._base import GradientTransformation, ScalarOrSchedule
from funcdl.optim._checks import check_float, check_float_or_schedule, check_lr
from funcdl.optim._more_adaptive import scale_by_adamax, scale_by_nadam, scale_by_radam
from funcdl.optim._more_transforms import scale_by_lion, scale_by_trust_ratio
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["adamax", "amsgrad", "lamb", "lion", "nadam", "radam"]


def _torch_decay(name: str, stages: _Stages, direction: tuple[str, GradientTransformation],
                 weight_decay: float, decoupled: bool) -> None:
    """torch's two weight decays around the ``direction`` stage: L2 (``g ← g + wd·p``,
    before it) or decoupled (``decoupled_weight_decay=True``: ``p ← p - lr·wd·p``, after
    it, as AdamW's)."""
    decoupled = bool_arg(decoupled, name, "decoupled_weight_decay")
    if not decoupled:
        _weight_decay(stages, weight_decay)
    stages.append(direction)
    if decoupled:
        _weight_decay(stages, weight_decay)


def adamax(lr: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float = 0.0) -> GradientTransformation:
    """Adamax, as ``torch.optim.Adamax`` (optax's ``adamax`` too, which has no weight decay):
    ``g ← g + wd·p``; ``m ← b1·m + (1-b1)·g``; ``v ← max(b2·v, |g| + eps)``;
    ``p ← p - lr · m / ((1-b1^t)·v)``, ``t = 1, 2, ...`` (see ``scale_by_adamax``).

    Stages: ``weight_decay``, ``adamax``, ``lr``.
    """
    name = "adamax"
    lr, b1, b2, eps, wd = _check_adam(name, lr, b1, b2, eps, weight_decay, b2_high_open=False)
    stages: _Stages = []
    _weight_decay(stages, wd)
    stages += [("adamax", scale_by_adamax(b1, b2, eps)), ("lr", scale_by_learning_rate(lr))]
    return _alias(name, stages, eps)


def nadam(lr: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.0, momentum_decay: float = 4e-3,
          decoupled_weight_decay: bool = False) -> GradientTransformation:
    """NAdam, as ``torch.optim.NAdam``: ``p ← p - lr·u``, ``u`` the direction of
    ``scale_by_nadam`` (torch's momentum schedule ``μ_t = b1·(1 - ½·0.96^(t·momentum_decay))``),
    with torch's L2 weight decay ``g ← g + wd·p``, or its decoupled one ``p ← p - lr·wd·p``.

    Not optax's ``nadam``, which has no momentum schedule (``μ_t = b1``): that is
    ``chain(scale_by_adam(b1, b2, eps, nesterov=True), scale_by_learning_rate(lr))``. They
    differ much: torch's ``μ_t`` starts at ``b1/2`` and reaches ``0.9·b1`` only after ~10^4
    steps, so its step weighs the current gradient more (its first step is ``lr·1.06·ĝ``,
    optax's ``lr·1.47·ĝ`` at b1 = 0.9, ``ĝ = g/(|g| + eps)``).

    Stages: ``weight_decay`` (L2), ``nadam``, ``weight_decay`` (decoupled), ``lr``.
    """
    name = "nadam"
    lr, b1, b2, eps, wd = _check_adam(name, lr, b1, b2, eps, weight_decay)
    psi = check_float(name, "momentum_decay", momentum_decay)
    stages: _Stages = []
    _torch_decay(name, stages, ("nadam", scale_by_nadam(b1, b2, eps, psi)), wd,
                 decoupled_weight_decay)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return _alias(name, stages, eps)


def radam(lr: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.0, decoupled_weight_decay: bool = False
          ) -> GradientTransformation:
    """Rectified Adam, as ``torch.optim.RAdam``: ``p ← p - lr·u``, ``u`` the direction of
    ``scale_by_radam(b1, b2, eps, eps_before_correction=True)`` (rectified once
    ``ρ >= 5``), with torch's L2 weight decay ``g ← g + wd·p``, or its decoupled one.

    optax's ``radam`` differs in ``eps`` alone: it adds ``eps`` to ``sqrt(v̂)``, torch (and
    this) ``eps / sqrt(1-b2^t)``; ``chain(scale_by_radam(b1, b2, eps),
    scale_by_learning_rate(lr))`` is optax's.

    Stages: ``weight_decay`` (L2), ``radam``, ``weight_decay`` (decoupled), ``lr``.
    """
    name = "radam"
    lr, b1, b2, eps, wd = _check_adam(name, lr, b1, b2, eps, weight_decay)
    direction = scale_by_radam(b1, b2, eps, eps_before_correction=True)
    stages: _Stages = []
    _torch_decay(name, stages, ("radam", direction), wd, decoupled_weight_decay)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return _alias(name, stages, eps)


def lion(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None,
         weight_decay: ScalarOrSchedule = 1e-3, mask: Any = None) -> GradientTransformation:
    """Lion, as optax's ``lion``: ``p ← p - lr · (sign((1-b1)·g + b1·m) + wd·p)``, then
    ``m ← (1-b2)·g + b2·m`` (see ``scale_by_lion``); decoupled weight decay, ``mask`` as
    ``adamw``'s. Its steps are ±lr per entry: take lr 3-10x smaller than AdamW's.

    Stages: ``lion``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "lion"
    lr = check_lr(name, lr)
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0)
    wd = check_float_or_schedule(name, "weight_decay", weight_decay, "wd")
    stages: _Stages = [("lion", scale_by_lion(b1, b2, mu_dtype))]
    _weight_decay(stages, wd, mask, name)  # a schedule, as optax
    stages.append(("lr", scale_by_learning_rate(lr)))
    return _alias(name, stages)


def lamb(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         eps_root: float = 0.0, weight_decay: ScalarOrSchedule = 0.0, mask: Any = None
         ) -> GradientTransformation:
    """LAMB, as optax's ``lamb``: ``d = m̂ / (sqrt(v̂ + eps_root) + eps) + wd·p`` (Adam's
    direction, decoupled weight decay), then per leaf ``p ← p - lr · ‖p‖/‖d‖ · d`` (see
    ``scale_by_trust_ratio``; ``d`` itself where either norm is 0). ``mask`` as
    ``adamw``'s.

    Stages: ``adam``, ``weight_decay`` (a ``masked`` one with a mask), ``trust_ratio``,
    ``lr``.
    """
    name = "lamb"
    lr, b1, b2, eps = _checked(name, lr, b1, b2, eps)
    eps_root = check_float(name, "eps_root", eps_root)
    wd = check_float_or_schedule(name, "weight_decay", weight_decay, "wd")
    stages: _Stages = [("adam", scale_by_adam(b1, b2, eps, eps_root))]
    _weight_decay(stages, wd, mask, name)  # a schedule, as optax
    stages += [("trust_ratio", scale_by_trust_ratio()), ("lr", scale_by_learning_rate(lr))]
    return _alias(name, stages, eps)


def amsgrad(lr: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            eps_root: float = 0.0, mu_dtype: Any = None, bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> GradientTransformation:
    """AMSGrad, as optax's ``amsgrad``: ``p ← p - lr · m̂ / (sqrt(v̂max + eps_root) + eps)``,
    ``v̂max`` the running maximum of the bias-corrected ``v̂`` (see ``scale_by_amsgrad``).
    torch's ``Adam(amsgrad=True)``, the maximum of the raw ``v``, is ``adam(amsgrad=True)``.

    Stages: ``amsgrad``, ``lr``.
    """
    name = "amsgrad"
    lr, b1, b2, eps = _checked(name, lr, b1, b2, eps)
    direction = scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu,
                                 bias_correction_nu)
    return _alias(name, [("amsgrad", direction), ("lr", scale_by_learning_rate(lr))], eps)
