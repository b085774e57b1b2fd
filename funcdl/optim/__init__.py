"""Pure optimizers, built optax-style from small transforms, ``chain`` and schedules.

Note the argument order: ``update(state, grads, params)``, state first (optax's is
``update(updates, state, params)``). A swapped call raises TypeError: each transform checks
that ``state`` is its own state record.

Example::

    opt = funcdl.optim.adam(lr=1e-3)
    state = opt.init(params)
    updates, state = opt.update(state, grads, params)   # params only where a rule needs it
    params = funcdl.optim.apply_updates(params, updates)

* Every state is a NamedTuple with named fields (``ScaleByAdamState(count, mu, nu)``);
  ``count`` is the number of updates already applied, an int64 NumPy scalar that survives
  ``funcdl.io`` save / load.
* A schedule is any callable ``count -> lr``, read at every update; it is accepted wherever
  ``lr`` is, and by ``add_decayed_weights`` for its ``weight_decay`` (as optax).
* The transforms take optax's keywords (``scale(step_size)``, ``scale_by_schedule(
  step_size_fn)``, ``scale_by_learning_rate(learning_rate)``, ``scale_by_rms(decay)``...);
  the aliases take DESIGN.md's (``lr``, and torch's ``alpha`` for ``rmsprop``).
* The aliases (``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``) follow PyTorch's
  formulas and are ``named_chain``s: ``state.count`` counts the updates, and
  ``state.states['adam']`` is a stage's state.
* Nothing passed in is mutated. Returned updates and states may share arrays with each other
  or with the grads (``identity`` returns them as they are): treat them as read-only, as in JAX.
* Coefficients are Python floats, so float32 params and grads give float32 updates and state;
  state leaves keep the dtype ``init`` gave them; ``apply_updates`` keeps each param's dtype.
  Params must be real floating point: ``init`` refuses integer and bool ones, which that
  would truncate, and complex ones. Grads must be real floating point too (float16, float32
  or float64): ``update`` refuses complex, integer and bool ones with a TypeError naming
  the leaf, and ``apply_updates`` such updates. A stage with state steps in the state's
  dtype (float64 grads on float32 params give float32 updates); plain ``sgd``, which keeps
  none, in the grads'.
* inf and NaN gradients give inf and NaN steps, as in optax and torch, without NumPy warnings.
* Schedules and hyperparameters are checked when made (a schedule constructor passed
  uncalled, ``sgd(lr=constant_schedule)``, is refused there), params at ``init``.

Modules: ``_base`` (records, ``chain``, ``apply_updates``), ``_checks`` (argument checks),
``_transforms`` (stateless ones, momentum, clipping), ``_adaptive`` (Adam, RMSprop, Adagrad),
``_masked`` (a transform on some leaves only),
``_schedules``, ``_alias``.
"""

from funcdl.optim._adaptive import (
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_rms,
)
from funcdl.optim._alias import adagrad, adam, adamw, rmsprop, sgd
from funcdl.optim._base import (
    ChainState,
    Count,
    EmptyState,
    GradientTransformation,
    NamedChainState,
    ScalarOrSchedule,
    Schedule,
    TransformInit,
    TransformUpdate,
    apply_updates,
    chain,
    named_chain,
)
from funcdl.optim._masked import MaskedState, masked
from funcdl.optim._schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    warmup_cosine_decay_schedule,
)
from funcdl.optim._transforms import (
    ScaleByScheduleState,
    TraceState,
    add_decayed_weights,
    clip,
    clip_by_global_norm,
    global_norm,
    identity,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
    set_to_zero,
    trace,
)

__all__ = [
    "ChainState",
    "Count",
    "EmptyState",
    "GradientTransformation",
    "MaskedState",
    "NamedChainState",
    "ScalarOrSchedule",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByScheduleState",
    "Schedule",
    "TraceState",
    "TransformInit",
    "TransformUpdate",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "global_norm",
    "identity",
    "join_schedules",
    "linear_schedule",
    "masked",
    "named_chain",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "rmsprop",
    "scale",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_schedule",
    "set_to_zero",
    "sgd",
    "trace",
    "warmup_cosine_decay_schedule",
]
