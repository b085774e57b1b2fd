"""Adam's relatives as named chains, as in ``_alias``: ``adamax``, ``nadam`` and ``radam`` with
PyTorch's update formulas (``torch.optim.Adamax``, ``NAdam``, ``RAdam``: a run matches torch's
step for step), ``amsgrad`` as optax's (torch's is ``adam(amsgrad=True)``), and, with optax's
formulas, ``adabelief``, ``yogi``, ``nadamw``, ``adamaxw`` and ``acprop`` (torch has none of
these). Each takes ``lr`` first (DESIGN.md's name; a float or a schedule), but ``acprop``, which
keeps optax.contrib's ``learning_rate``; then its model's arguments in its order, then its
weight decay options (torch's for ``adamax``, ``nadam``, ``radam``; optax's ``weight_decay``
and ``mask`` for ``nadamw``, ``adamaxw``, ``acprop``); its arguments are checked here, so that
their errors name it. Each ``init`` refuses params that are not real
floating point, naming the alias."""

from __future__ import annotations

from typing import Any

from funcdl._args import bool_arg
from funcdl.optim._adam_variants import (
    scale_by_acprop,
    scale_by_adamax,
    scale_by_belief,
    scale_by_nadam,
    scale_by_radam,
    scale_by_yogi,
)
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._alias import (
    Stages,
    append_weight_decay,
    check_adam_args,
    check_lr_betas_eps,
    make_alias,
)
from funcdl.optim._amsgrad import scale_by_amsgrad
from funcdl.optim._base import GradientTransformation, ScalarOrSchedule
from funcdl.optim._checks import check_float, check_lr, decay_arg, moment_dtype_arg
from funcdl.optim._transforms import scale_by_learning_rate

__all__ = ["acprop", "adabelief", "adamax", "adamaxw", "amsgrad", "nadam", "nadamw", "radam",
           "yogi"]


def _torch_decay(name: str, stages: Stages, direction: tuple[str, GradientTransformation],
                 weight_decay: float, decoupled: bool) -> None:
    """torch's two weight decays around the ``direction`` stage: L2 (``g ← g + wd·p``,
    before it) or decoupled (``decoupled_weight_decay=True``: ``p ← p - lr·wd·p``, after
    it, as AdamW's)."""
    decoupled = bool_arg(decoupled, name, "decoupled_weight_decay")
    if not decoupled:
        append_weight_decay(stages, weight_decay)
    stages.append(direction)
    if decoupled:
        append_weight_decay(stages, weight_decay)


def adamax(lr: ScalarOrSchedule = 2e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float = 0.0) -> GradientTransformation:
    """Adamax, as ``torch.optim.Adamax`` (optax's ``adamax`` too, which has no weight decay):
    ``g ← g + wd·p``; ``m ← b1·m + (1-b1)·g``; ``v ← max(b2·v, |g| + eps)``;
    ``p ← p - lr · m / ((1-b1^t)·v)``, ``t = 1, 2, ...`` (see ``scale_by_adamax``).

    Stages: ``weight_decay``, ``adamax``, ``lr``.
    """
    name = "adamax"
    lr, b1, b2, eps, wd = check_adam_args(name, lr, b1, b2, eps, weight_decay, b2_high_open=False)
    stages: Stages = []
    append_weight_decay(stages, wd)
    stages += [("adamax", scale_by_adamax(b1, b2, eps)), ("lr", scale_by_learning_rate(lr))]
    return make_alias(name, stages, eps)


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
    lr, b1, b2, eps, wd = check_adam_args(name, lr, b1, b2, eps, weight_decay)
    psi = check_float(name, "momentum_decay", momentum_decay)
    stages: Stages = []
    _torch_decay(name, stages, ("nadam", scale_by_nadam(b1, b2, eps, psi)), wd,
                 decoupled_weight_decay)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages, eps)


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
    lr, b1, b2, eps, wd = check_adam_args(name, lr, b1, b2, eps, weight_decay)
    direction = scale_by_radam(b1, b2, eps, eps_before_correction=True)
    stages: Stages = []
    _torch_decay(name, stages, ("radam", direction), wd, decoupled_weight_decay)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages, eps)


def amsgrad(lr: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            eps_root: float = 0.0, mu_dtype: Any = None, bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> GradientTransformation:
    """AMSGrad, as optax's ``amsgrad``: ``p ← p - lr · m̂ / (sqrt(v̂max + eps_root) + eps)``,
    ``v̂max`` the running maximum of the bias-corrected ``v̂`` (see ``scale_by_amsgrad``).
    torch's ``Adam(amsgrad=True)``, the maximum of the raw ``v`` (Reddi et al.'s, who keep no
    bias correction), is ``adam(amsgrad=True)``.

    Stages: ``amsgrad``, ``lr``.
    """
    name = "amsgrad"
    lr, b1, b2, eps = check_lr_betas_eps(name, lr, b1, b2, eps)
    direction = scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu,
                                 bias_correction_nu)
    return make_alias(name, [("amsgrad", direction), ("lr", scale_by_learning_rate(lr))], eps)


def adabelief(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
              ) -> GradientTransformation:
    """AdaBelief, as optax's ``adabelief``: Adam with the running variance of ``g - m``
    in place of ``g²``: ``p ← p - lr · m̂ / (sqrt(ŝ) + eps)`` (see ``scale_by_belief``).

    Stages: ``belief``, ``lr``.
    """
    name = "adabelief"
    lr, b1, b2, eps = check_lr_betas_eps(name, lr, b1, b2, eps)
    eps_root = check_float(name, "eps_root", eps_root)
    nest = bool_arg(nesterov, name, "nesterov")
    stages: Stages = [("belief", scale_by_belief(b1, b2, eps, eps_root, nesterov=nest)),
                      ("lr", scale_by_learning_rate(lr))]
    return make_alias(name, stages)


def yogi(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3
         ) -> GradientTransformation:
    """Yogi, as optax's ``yogi``: ``p ← p - lr · m̂ / (sqrt(v̂) + eps)``, ``v`` moving
    additively towards ``g²`` (see ``scale_by_yogi``), both moments from 1e-6.

    Stages: ``yogi``, ``lr``.
    """
    name = "yogi"
    lr, b1, b2, eps = check_lr_betas_eps(name, lr, b1, b2, eps)
    stages: Stages = [("yogi", scale_by_yogi(b1, b2, eps)), ("lr", scale_by_learning_rate(lr))]
    return make_alias(name, stages, eps)


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
    lr, b1, b2, eps = check_lr_betas_eps(name, lr, b1, b2, eps)
    eps_root = check_float(name, "eps_root", eps_root)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)
    nest = bool_arg(nesterov, name, "nesterov")
    stages: Stages = [("adam", scale_by_adam(b1, b2, eps, eps_root, mu_dt, nesterov=nest))]
    append_weight_decay(stages, decay_arg(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages, eps)


def adamaxw(lr: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            weight_decay: ScalarOrSchedule = 1e-4, mask: Any = None) -> GradientTransformation:
    """AdamaxW, as optax's ``adamaxw``: ``p ← p - lr · (m / ((1-b1^t)·v) + wd·p)``,
    ``v = max(b2·v, |g| + eps)`` (see ``scale_by_adamax``), decoupled weight decay, ``mask``
    as ``adamw``'s. ``adamax(weight_decay=)`` is torch's L2 decay instead, entering ``g``.

    Stages: ``adamax``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "adamaxw"
    lr, b1, b2, eps = check_lr_betas_eps(name, lr, b1, b2, eps, b2_high_open=False)
    stages: Stages = [("adamax", scale_by_adamax(b1, b2, eps))]
    append_weight_decay(stages, decay_arg(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages, eps)


def acprop(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-16, eps_root: float = 1e-16, weight_decay: ScalarOrSchedule = 0.0,
           mask: Any = None) -> GradientTransformation:
    """ACProp with optax.contrib's ``acprop`` arguments: ``p ← p - lr·(u + wd·p)``, ``u``
    ``scale_by_acprop``'s, its residual from the new momentum as the paper's (not optax
    0.2.8's; see there), decoupled weight decay, ``mask`` as ``adamw``'s.

    Stages: ``acprop``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    name = "acprop"
    rate = check_lr(name, learning_rate)
    b1 = check_float(name, "b1", b1, high=1.0)
    b2 = check_float(name, "b2", b2, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    eps_root = check_float(name, "eps_root", eps_root)
    stages: Stages = [("acprop", scale_by_acprop(b1, b2, eps, eps_root))]
    append_weight_decay(stages, decay_arg(name, weight_decay), mask, name)
    stages.append(("lr", scale_by_learning_rate(rate)))
    return make_alias(name, stages)
