"""The usual optimizers as short named chains, with PyTorch's update formulas, so that a run
matches ``torch.optim`` step for step. ``lr`` is a float or a schedule everywhere.

Each returns a ``named_chain``: ``state.count`` is the number of updates applied, and
``state.states`` a dict with one entry per stage, e.g. ``state.states['adam'].mu``.
Stages with a zero coefficient (weight decay, momentum) are left out. Each ``init`` refuses
integer and bool params, which ``apply_updates`` would truncate, and complex ones, naming the
alias; each ``update`` refuses grads that are not real floating point, naming the stage that
reads them first (``scale_by_adam`` for ``adam``, ``scale_by_learning_rate`` for plain
``sgd``).
"""

from __future__ import annotations

import math
from typing import Any

from funcdl._args import bool_arg
from funcdl.optim._adaptive import scale_by_adagrad, scale_by_adam, scale_by_rms
from funcdl.optim._amsgrad import torch_amsgrad
from funcdl.optim._base import GradientTransformation, ScalarOrSchedule, Tree, transform
from funcdl.optim._chain import make_named_chain
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_params,
    check_lr,
    value_at,
)
from funcdl.optim._dampening import dampened_trace
from funcdl.optim._transforms import decay_stage, scale_by_learning_rate, trace

__all__ = ["adagrad", "adam", "adamw", "rmsprop", "sgd"]

Stages = list[tuple[str, GradientTransformation]]


def make_alias(name: str, stages: Stages, eps: float | None = None) -> GradientTransformation:
    """``named_chain(*stages)`` whose ``init`` first checks the params (at init, which sees
    them once, rather than at every update): a plain sgd has no stage that would."""
    opt = make_named_chain(name, stages)
    init_stages = opt.init

    def init(params: Tree) -> Any:
        check_float_params(f"{name}.init", params, eps)
        return init_stages(params)

    return transform(name, init, opt.update)


def append_weight_decay(stages: Stages, weight_decay: ScalarOrSchedule | None, mask: Any = None,
                        name: str = "", keep_zero: bool = False) -> None:
    """Append the (masked) weight-decay stage, ``decay_stage``'s, left out at 0
    (``keep_zero``: only at None, as optax's adafactor); a mask is checked even where the
    stage is left out. The callers have checked the value, under their own bounds."""
    decay = decay_stage(name, 0.0 if weight_decay is None else weight_decay, mask,
                        low=-math.inf)
    if weight_decay is not None and (keep_zero or weight_decay != 0.0):
        stages.append(("weight_decay", decay))


def sgd(lr: ScalarOrSchedule, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, dampening: float | None = None) -> GradientTransformation:
    """Stochastic gradient descent, as ``torch.optim.SGD``:
    ``g ← g + wd·p``; ``b ← momentum·b + (1 - dampening)·g`` (``b ← g`` at the first
    update); ``g ← g + momentum·b`` if nesterov else ``b``; ``p ← p - lr·g``.

    ``dampening=None`` is torch's default 0 and keeps the plain ``trace`` stage (and
    ``inject_hyperparams(sgd)``'s hyperparams as they were); a number, 0 included, makes the
    momentum stage a dampened one with a ``DampenedTraceState(count, trace)`` state (the
    first update must be told apart), so that an injected ``dampening`` can change mid-run.

    Stages: ``weight_decay``, ``momentum`` (a ``trace``), ``lr``.
    """
    name = "sgd"
    lr = check_lr(name, lr)
    momentum = check_float(name, "momentum", momentum)
    weight_decay = check_float(name, "weight_decay", weight_decay)
    nesterov = bool_arg(nesterov, name, "nesterov")
    damp = None if dampening is None else check_float(name, "dampening", dampening, high=1.0)
    if nesterov and momentum == 0.0:
        raise ValueError(f"{name}: nesterov=True requires momentum > 0")
    if nesterov and damp:
        raise ValueError(f"{name}: nesterov=True requires dampening=0 (torch's rule), got "
                         f"dampening={damp}")
    stages: Stages = []
    append_weight_decay(stages, weight_decay)
    if momentum != 0.0:
        stages.append(("momentum", trace(momentum, nesterov) if damp is None or nesterov
                       else dampened_trace(momentum, damp)))
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages)


def check_lr_betas_eps(name: str, lr: Any, b1: float, b2: float, eps: float,
                       b2_high_open: bool = True) -> tuple[ScalarOrSchedule, float, float, float]:
    """An Adam-like alias's lr, b1, b2 and eps, checked here so that their errors name it."""
    return (check_lr(name, lr), *check_betas(name, b1, b2, b2_high_open),
            check_float(name, "eps", eps))


def check_adam_args(name: str, lr: Any, b1: float, b2: float, eps: float, weight_decay: float,
                    b2_high_open: bool = True
                    ) -> tuple[ScalarOrSchedule, float, float, float, float]:
    return (*check_lr_betas_eps(name, lr, b1, b2, eps, b2_high_open),
            check_float(name, "weight_decay", weight_decay))


def adam(lr: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0, amsgrad: bool = False) -> GradientTransformation:
    """Adam, as ``torch.optim.Adam`` (L2 weight decay enters the gradient):
    ``g ← g + wd·p``; ``p ← p - lr · m̂ / (sqrt(v̂) + eps)`` with ``m̂, v̂`` the bias-corrected
    moments of ``g`` (see ``scale_by_adam``). ``amsgrad=True`` is torch's AMSGrad:
    ``sqrt(v̂)`` from the running maximum of ``v`` (see ``_amsgrad``; optax's ``amsgrad``,
    the maximum of ``v̂``, is ``optim.amsgrad``).

    Stages: ``weight_decay``, ``adam``, ``lr``.
    """
    lr, b1, b2, eps, weight_decay = check_adam_args("adam", lr, b1, b2, eps, weight_decay)
    stages: Stages = []
    append_weight_decay(stages, weight_decay)
    stages += [("adam", _direction("adam", b1, b2, eps, amsgrad)),
               ("lr", scale_by_learning_rate(lr))]
    return make_alias("adam", stages, eps)


def _direction(name: str, b1: float, b2: float, eps: float, amsgrad: bool
               ) -> GradientTransformation:
    """Adam's direction, or torch's AMSGrad one."""
    if bool_arg(amsgrad, name, "amsgrad"):
        return torch_amsgrad(b1, b2, eps)
    return scale_by_adam(b1, b2, eps)


def adamw(lr: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2, mask: Any = None, amsgrad: bool = False
          ) -> GradientTransformation:
    """AdamW, as ``torch.optim.AdamW`` (decoupled weight decay):
    ``p ← p - lr · (m̂ / (sqrt(v̂) + eps) + wd·p)``. ``mask`` (as optax's): a tree of bools,
    or a function of the params returning one, True where weights decay (torch: the param
    groups with a ``weight_decay``); e.g. ``lambda p: tree.map(lambda x: x.ndim > 1, p)``
    leaves biases and norm scales alone. ``amsgrad=True``: torch's AMSGrad, as ``adam``'s.

    Stages: ``adam``, ``weight_decay`` (a ``masked`` one with a mask), ``lr``.
    """
    lr, b1, b2, eps, weight_decay = check_adam_args("adamw", lr, b1, b2, eps, weight_decay)
    stages: Stages = [("adam", _direction("adamw", b1, b2, eps, amsgrad))]
    append_weight_decay(stages, weight_decay, mask, "adamw")
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias("adamw", stages, eps)


def rmsprop(lr: ScalarOrSchedule = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
            weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False
            ) -> GradientTransformation:
    """RMSprop, as ``torch.optim.RMSprop``: ``g ← g + wd·p``; ``v ← α·v + (1-α)·g²``;
    ``d = g / (sqrt(v) + eps)`` (``sqrt(v - m²)`` when centered, ``m`` the running mean of
    ``g``); ``b ← momentum·b + d``; ``p ← p - lr·b`` (``p ← p - lr·d`` without momentum).
    Not ``optax.rmsprop``, whose decay is 0.9 and whose eps is inside the root,
    ``g / sqrt(v + eps)``: that one is ``chain(scale_by_rms(0.9, eps), scale_by_learning_rate(
    lr))`` (``centered=True`` likewise; its momentum a ``trace`` stage between the two).

    Stages: ``weight_decay``, ``rms``, ``momentum``, ``lr``.
    """
    name = "rmsprop"
    lr = check_lr(name, lr)
    alpha = check_float(name, "alpha", alpha, high=1.0)  # > 1: v goes negative, then NaN
    eps = check_float(name, "eps", eps)
    weight_decay = check_float(name, "weight_decay", weight_decay)
    momentum = check_float(name, "momentum", momentum)
    centered = bool_arg(centered, name, "centered")
    stages: Stages = []
    append_weight_decay(stages, weight_decay)
    stages.append(("rms", scale_by_rms(alpha, eps, eps_in_sqrt=False, centered=centered)))
    if momentum != 0.0:
        stages.append(("momentum", trace(momentum)))
    stages.append(("lr", scale_by_learning_rate(lr)))
    return make_alias(name, stages, eps)


def adagrad(lr: ScalarOrSchedule = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
            initial_accumulator_value: float = 0.0, eps: float = 1e-10
            ) -> GradientTransformation:
    """Adagrad, as ``torch.optim.Adagrad``: ``g ← g + wd·p``; ``s ← s + g²``;
    ``p ← p - lr / (1 + t·lr_decay) · g / (sqrt(s) + eps)``, ``t`` the updates already applied.

    Stages: ``weight_decay``, ``adagrad``, ``lr`` (a schedule when ``lr_decay > 0``).
    """
    name = "adagrad"
    lr = check_lr(name, lr)
    decay = check_float(name, "lr_decay", lr_decay)
    weight_decay = check_float(name, "weight_decay", weight_decay)
    init_acc = check_float(name, "initial_accumulator_value", initial_accumulator_value)
    eps = check_float(name, "eps", eps)
    if decay != 0.0:
        base = lr

        def decayed(count: int) -> float:
            rate = value_at(name, "lr", base, count)
            return rate / (1.0 + count * decay)

        lr = decayed
    stages: Stages = []
    append_weight_decay(stages, weight_decay)
    stages += [("adagrad", scale_by_adagrad(init_acc, eps)), ("lr", scale_by_learning_rate(lr))]
    return make_alias(name, stages, eps)
