"""AMSGrad (Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018): Adam
whose denominator never shrinks, from a running maximum of the second moment. Notation as in
``_adaptive``: ``m = b1·m + (1-b1)·g``, ``v = b2·v + (1-b2)·g²``, ``t`` = 1 at the first
update, ``bc_i = 1 - b_i^t``. Two forms, as the libraries differ:

- optax's (``scale_by_amsgrad``, ``amsgrad``): ``v̂max = max(v̂max, v/bc2)``, the maximum of
  the bias-corrected moments; ``u = (m/bc1) / (sqrt(v̂max + eps_root) + eps)``.
- torch's (``Adam(amsgrad=True)``, ``AdamW(amsgrad=True)``: ``adam``'s and ``adamw``'s
  ``amsgrad=True``): ``vmax = max(vmax, v)``, the maximum of the raw moments, corrected by
  this step's ``bc2``: ``u = (m/bc1) / (sqrt(vmax)/sqrt(bc2) + eps)``.

The state is ``ScaleByAmsgradState(count, mu, nu, nu_max)`` in both, optax's fields.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl.optim._adaptive import corrected_root
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    leafwise,
    like,
    next_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_params,
    moment_dtype_arg,
    zeros_in,
)

__all__ = ["ScaleByAmsgradState", "scale_by_amsgrad", "torch_amsgrad"]

Tree = Any


class ScaleByAmsgradState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree
    nu: Tree
    nu_max: Tree  # the running maximum: of v/bc2 (optax's), of v (torch's)


def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                     eps_root: float = 0.0, mu_dtype: Any = None,
                     bias_correction_mu: bool = True, bias_correction_nu: bool = True
                     ) -> GradientTransformation:
    """optax's ``scale_by_amsgrad``: ``u = m̂ / (sqrt(v̂max + eps_root) + eps)``, ``m̂ = m/bc1``,
    ``v̂max = max(v̂max, v/bc2)`` (each correction off with its ``bias_correction_*=False``).
    ``mu_dtype`` stores ``m`` in that float dtype (None: the params'), as ``scale_by_adam``'s.
    State ``ScaleByAmsgradState(count, mu, nu, nu_max)``."""
    name = "scale_by_amsgrad"
    return _amsgrad(name, b1, b2, eps, check_float(name, "eps_root", eps_root), mu_dtype,
                    bool_arg(bias_correction_mu, name, "bias_correction_mu"),
                    bool_arg(bias_correction_nu, name, "bias_correction_nu"), raw_max=False)


def torch_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                  ) -> GradientTransformation:
    """torch's AMSGrad direction (``Adam(amsgrad=True)``), the stage ``adam`` and ``adamw``
    use for ``amsgrad=True``: ``u = (m/bc1) / (sqrt(vmax)/sqrt(bc2) + eps)``,
    ``vmax = max(vmax, v)``. State ``ScaleByAmsgradState(count, mu, nu, nu_max)``."""
    return _amsgrad("amsgrad", b1, b2, eps, 0.0, None, True, True, raw_max=True)


def _amsgrad(name: str, b1: float, b2: float, eps: float, eps_root: float, mu_dtype: Any,
             correct_mu: bool, correct_nu: bool, *, raw_max: bool) -> GradientTransformation:
    b1, b2 = check_betas(name, b1, b2)
    eps = check_float(name, "eps", eps)
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)

    def init(params: Tree) -> ScaleByAmsgradState:
        check_float_params(f"{name}.init", params, eps)
        return ScaleByAmsgradState(zero_count(), zeros_in(params, mu_dt),
                                   tree.zeros_like(params), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None
               ) -> tuple[Tree, ScaleByAmsgradState]:
        del params
        count = state_count(name, state, ScaleByAmsgradState)
        t = count + 1
        inv_bc1 = 1.0 / (1.0 - b1**t) if correct_mu else 1.0
        inv_bc2 = 1.0 / (1.0 - b2**t) if correct_nu else 1.0

        def leaf(g: Any, m: Any, v: Any, v_max: Any) -> tuple[Any, Any, Any, Any]:
            real_grad(g)
            # m in v's dtype (the step's) before it is stored as mu_dtype, as optax's
            m_step = np.multiply(m, b1, dtype=np.result_type(v))
            if type(m_step) is np.ndarray:
                m_step += (1.0 - b1) * g
            else:  # a 0-d leaf's NumPy scalar: += would rebind it, float64 with a float64 g
                m_step = like(m_step + (1.0 - b1) * g, v)
            v_new = like(b2 * v + (1.0 - b2) * g * g, v)  # torch's addcmul order
            if raw_max:  # torch: the raw maximum, this step's correction on its root
                v_max = np.maximum(v_max, v_new)
                den = corrected_root(v_max, math.sqrt(inv_bc2))
            else:
                v_max = np.maximum(v_max, like(v_new * inv_bc2, v))
                den = np.sqrt(v_max + eps_root) if eps_root else np.sqrt(v_max)
            u = m_step / (den + eps)
            if inv_bc1 != 1.0:
                u = u * inv_bc1
            return u, like(m_step, m), v_new, v_max

        # inf and NaN gradients give inf and NaN steps silently, as Adam's (see _adaptive)
        with np.errstate(all="ignore"):
            out, mu, nu, nu_max = leafwise(
                f"{name}.update", leaf, (grads, state.mu, state.nu, state.nu_max),
                ("grads", "state.mu", "state.nu", "state.nu_max"), n_out=4,
                elementwise=mu_dt is None)
        return out, ScaleByAmsgradState(next_count(count), mu, nu, nu_max)

    return transform(name, init, update)
