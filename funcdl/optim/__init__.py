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
  the torch-formula aliases and ``lion``, ``lamb``, ``adabelief``, ``yogi``, ``amsgrad``
  take DESIGN.md's (``lr``, and torch's ``alpha`` for ``rmsprop``); ``adafactor`` and the
  optax.contrib ones (``adopt``, ``ademamix``, ``prodigy``, ``dog``, ``muon``, ``lbfgs``,
  ``schedule_free_*``...) keep optax's ``learning_rate``.
* The aliases (``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``, ``adamax``, ``nadam``,
  ``radam``, ``adadelta``, ``rprop``) follow PyTorch's formulas, ``lion``, ``lamb``,
  ``adabelief``, ``yogi``, ``amsgrad`` and ``adafactor`` optax's; all are
  ``named_chain``s: ``state.count`` counts the updates, and ``state.states['adam']`` is a
  stage's state.
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

Modules, one family each (a family's transforms and aliases together where they fit):
- plumbing: ``_base`` (records, ``apply_updates``), ``_chain`` (``chain``, ``named_chain``),
  ``_checks`` (argument checks), ``_leaf_errors`` (the errors naming a refused leaf),
  ``_keywords`` (``value=`` forwarded by chains);
- small transforms and the DESIGN.md aliases: ``_transforms`` (stateless ones, momentum,
  clipping), ``_dampening`` (torch SGD's dampened momentum), ``_adaptive`` (Adam, RMSprop,
  Adagrad), ``_alias`` (``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``);
- more directions: ``_adam_variants`` (Adamax, RAdam, torch's NAdam, AdaBelief, Yogi, ACProp)
  with ``_adam_aliases`` (``adamax``, ``nadam``, ``radam``, ``amsgrad``, ``adabelief``,
  ``yogi``, ``nadamw``, ``adamaxw``, ``acprop``), ``_amsgrad``, ``_ademamix``, ``_adan``,
  ``_adopt``, ``_madgrad``; ``_rms_variants`` (Adadelta, ``scale_by_rss``,
  ``scale_by_stddev``); ``_sign`` (signSGD, ``signum``, Lion, Rprop); ``_layerwise`` (the
  trust ratio: LAMB, LARS; NovoGrad, Fromage, per-leaf and global update norms); ``_factored``
  (Adafactor, SM3); ``_optimistic`` (optimistic gradient descent and Adam); ``_polyak``
  (Polyak step sizes, MoMo); ``_muon`` (Muon, Newton–Schulz); ``_sam`` (SAM);
  ``_schedule_free``; learning-rate free: ``_lr_free`` (``prodigy``, ``dadapt_adamw``),
  ``_lr_free_dog`` (``dog``, ``dowg``, ``cocob``), ``_lr_free_mechanic`` (``mechanize``);
  ``_dpsgd`` (DP-SGD); L-BFGS: ``_lbfgs``, ``_linesearch`` (backtracking, the line searches'
  helpers), ``_zoom`` (strong Wolfe);
- gradient edits and wrappers: ``_gradient_ops`` (``adaptive_grad_clip``, ``centralize``,
  ``zero_nans``, ``keep_params_nonnegative``, ``add_noise`` with ``noisy_sgd``), ``_masked``
  (a transform on some leaves only), ``_partition`` (a transform per group of leaves, torch's
  param groups; ``freeze``, ``selective_transform``), ``_tree_utils`` (``tree_get`` /
  ``tree_set``: a state's value by name), ``_conditional`` (``apply_if_finite``,
  ``conditionally_transform``, ``conditionally_mask``), ``_stateless`` (``stateless``,
  ``stateless_with_tree_map``, ``incremental_update``, ``periodic_update``), ``_wrappers``
  (``apply_every``, ``multi_steps`` with ``skip_not_finite`` / ``skip_large_updates`` and
  ``has_updated``,
  ``ema``, ``flatten``), ``_inject`` (``inject_hyperparams``), ``_lookahead``, ``_plateau``
  (``reduce_on_plateau``);
- schedules: ``_schedules``, ``_joined_schedules`` (one-cycle, warmups, SGDR,
  ``piecewise_interpolate_schedule``), ``_torch_schedules`` (torch's ``OneCycleLR``).
"""

from funcdl.optim._adam_aliases import (
    acprop,
    adabelief,
    adamax,
    adamaxw,
    amsgrad,
    nadam,
    nadamw,
    radam,
    yogi,
)
from funcdl.optim._adam_variants import (
    ScaleByAdamaxState,
    ScaleByBeliefState,
    ScaleByNadamState,
    scale_by_acprop,
    scale_by_adamax,
    scale_by_belief,
    scale_by_nadam,
    scale_by_radam,
    scale_by_yogi,
)
from funcdl.optim._adan import ScaleByAdanState, adan, scale_by_adan
from funcdl.optim._adaptive import (
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_rms,
)
from funcdl.optim._ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdemamixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from funcdl.optim._adopt import adopt, scale_by_adopt
from funcdl.optim._alias import adagrad, adam, adamw, rmsprop, sgd
from funcdl.optim._amsgrad import ScaleByAmsgradState, scale_by_amsgrad
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    Schedule,
    TransformInit,
    TransformUpdate,
    apply_updates,
)
from funcdl.optim._chain import ChainState, NamedChainState, chain, named_chain
from funcdl.optim._conditional import (
    ApplyIfFiniteState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    apply_if_finite,
    conditionally_mask,
    conditionally_transform,
)
from funcdl.optim._dpsgd import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    dpsgd,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from funcdl.optim._factored import (
    FactoredState,
    ScaleBySM3State,
    adafactor,
    clip_by_block_rms,
    scale_by_factored_rms,
    scale_by_param_block_rms,
    scale_by_sm3,
    sm3,
)
from funcdl.optim._gradient_ops import (
    AddNoiseState,
    ZeroNansState,
    adaptive_grad_clip,
    add_noise,
    centralize,
    keep_params_nonnegative,
    noisy_sgd,
    zero_nans,
)
from funcdl.optim._inject import InjectHyperparamsState, inject_hyperparams
from funcdl.optim._joined_schedules import (
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    piecewise_interpolate_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_exponential_decay_schedule,
)
from funcdl.optim._layerwise import (
    ScaleByNovogradState,
    fromage,
    lamb,
    lars,
    normalize_by_update_norm,
    novograd,
    scale_by_novograd,
    scale_by_param_block_norm,
    scale_by_trust_ratio,
)
from funcdl.optim._lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from funcdl.optim._linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
)
from funcdl.optim._lookahead import LookaheadParams, LookaheadState, lookahead
from funcdl.optim._lr_free import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy
from funcdl.optim._lr_free_dog import (
    COCOBState,
    DoGState,
    DoWGState,
    cocob,
    dog,
    dowg,
    scale_by_cocob,
    scale_by_dog,
    scale_by_dowg,
)
from funcdl.optim._lr_free_mechanic import MechanicState, mechanize
from funcdl.optim._madgrad import MadgradState, madgrad, scale_by_madgrad
from funcdl.optim._masked import MaskedState, masked
from funcdl.optim._muon import MuonPartsState, MuonState, muon, newton_schulz, scale_by_muon
from funcdl.optim._optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from funcdl.optim._partition import (
    MultiTransformState,
    PartitionState,
    freeze,
    multi_transform,
    partition,
    selective_transform,
)
from funcdl.optim._plateau import ReduceLROnPlateauState, reduce_on_plateau
from funcdl.optim._polyak import (
    MomoAdamState,
    MomoState,
    momo,
    momo_adam,
    polyak_sgd,
    scale_by_polyak,
)
from funcdl.optim._rms_variants import (
    ScaleByAdaDeltaState,
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    adadelta,
    scale_by_adadelta,
    scale_by_rss,
    scale_by_stddev,
)
from funcdl.optim._sam import SAMState, normalize, sam
from funcdl.optim._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
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
from funcdl.optim._sign import (
    ScaleByLionState,
    ScaleByRpropState,
    lion,
    rprop,
    scale_by_lion,
    scale_by_rprop,
    scale_by_sign,
    sign_sgd,
    signum,
)
from funcdl.optim._stateless import (
    incremental_update,
    periodic_update,
    stateless,
    stateless_with_tree_map,
)
from funcdl.optim._torch_schedules import onecycle_lr_schedule, onecycle_momentum_schedule
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
from funcdl.optim._tree_utils import tree_get, tree_get_all_with_path, tree_set
from funcdl.optim._wrappers import (
    ApplyEveryState,
    EmaState,
    MultiStepsState,
    apply_every,
    ema,
    flatten,
    has_updated,
    multi_steps,
    skip_large_updates,
    skip_not_finite,
)
from funcdl.optim._zoom import (
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_zoom_linesearch,
)

__all__ = [
    "AddNoiseState", "ApplyEveryState", "ApplyIfFiniteState", "BacktrackingLinesearchInfo",
    "COCOBState", "ChainState", "ConditionallyMaskState", "ConditionallyTransformState", "Count",
    "DAdaptAdamWState", "DifferentiallyPrivateAggregateState", "DoGState", "DoWGState", "EmaState",
    "EmptyState", "FactoredState", "GradientTransformation", "InjectHyperparamsState",
    "LookaheadParams", "LookaheadState", "MadgradState", "MaskedState", "MechanicState",
    "MomoAdamState", "MomoState", "MultiStepsState", "MultiTransformState", "MuonPartsState",
    "MuonState", "NamedChainState", "PartitionState", "ProdigyState", "ReduceLROnPlateauState",
    "SAMState", "ScalarOrSchedule", "ScaleByAdaDeltaState", "ScaleByAdagradState",
    "ScaleByAdamState", "ScaleByAdamaxState", "ScaleByAdanState", "ScaleByAdemamixState",
    "ScaleByAmsgradState", "ScaleByBacktrackingLinesearchState", "ScaleByBeliefState",
    "ScaleByLBFGSState", "ScaleByLionState", "ScaleByNadamState", "ScaleByNovogradState",
    "ScaleByOptimisticGradientState", "ScaleByRStdDevState", "ScaleByRStdDevWithCountState",
    "ScaleByRmsState", "ScaleByRmsWithCountState", "ScaleByRpropState", "ScaleByRssState",
    "ScaleBySM3State", "ScaleByScheduleState", "ScaleBySimplifiedAdemamixState",
    "ScaleByZoomLinesearchState", "Schedule", "ScheduleFreeState", "TraceState", "TransformInit",
    "TransformUpdate", "ZeroNansState", "ZoomLinesearchInfo", "acprop", "adabelief", "adadelta",
    "adafactor", "adagrad", "adam", "adamax", "adamaxw", "adamw", "adan", "adaptive_grad_clip",
    "add_decayed_weights", "add_noise", "ademamix", "adopt", "amsgrad", "apply_every",
    "apply_if_finite", "apply_updates", "centralize", "chain", "clip", "clip_by_block_rms",
    "clip_by_global_norm", "cocob", "conditionally_mask", "conditionally_transform",
    "constant_schedule", "cosine_decay_schedule", "cosine_onecycle_schedule", "dadapt_adamw",
    "differentially_private_aggregate", "dog", "dowg", "dpsgd", "ema", "exponential_decay",
    "flatten", "freeze", "fromage", "global_norm", "has_updated", "identity",
    "incremental_update",
    "inject_hyperparams", "join_schedules", "keep_params_nonnegative", "lamb", "lars", "lbfgs",
    "linear_onecycle_schedule", "linear_schedule", "lion", "lookahead", "madgrad", "masked",
    "mechanize", "momo", "momo_adam", "multi_steps", "multi_transform", "muon", "nadam", "nadamw",
    "named_chain", "newton_schulz", "noisy_sgd", "normalize", "normalize_by_update_norm",
    "novograd", "onecycle_lr_schedule", "onecycle_momentum_schedule", "optimistic_adam",
    "optimistic_adam_v2", "optimistic_gradient_descent", "partition",
    "per_example_global_norm_clip", "per_example_layer_norm_clip", "periodic_update",
    "piecewise_constant_schedule", "piecewise_interpolate_schedule", "polyak_sgd",
    "polynomial_schedule", "prodigy", "radam", "reduce_on_plateau", "rmsprop", "rprop", "sam",
    "scale", "scale_by_acprop", "scale_by_adadelta", "scale_by_adagrad", "scale_by_adam",
    "scale_by_adamax", "scale_by_adan", "scale_by_ademamix", "scale_by_adopt", "scale_by_amsgrad",
    "scale_by_backtracking_linesearch", "scale_by_belief", "scale_by_cocob", "scale_by_dog",
    "scale_by_dowg", "scale_by_factored_rms", "scale_by_lbfgs", "scale_by_learning_rate",
    "scale_by_lion", "scale_by_madgrad", "scale_by_muon", "scale_by_nadam", "scale_by_novograd",
    "scale_by_optimistic_gradient", "scale_by_param_block_norm", "scale_by_param_block_rms",
    "scale_by_polyak", "scale_by_radam", "scale_by_rms", "scale_by_rprop", "scale_by_rss",
    "scale_by_schedule", "scale_by_sign", "scale_by_simplified_ademamix", "scale_by_sm3",
    "scale_by_stddev", "scale_by_trust_ratio", "scale_by_yogi", "scale_by_zoom_linesearch",
    "schedule_free", "schedule_free_adamw", "schedule_free_eval_params", "schedule_free_sgd",
    "selective_transform", "set_to_zero", "sgd", "sgdr_schedule", "sign_sgd", "signum",
    "simplified_ademamix", "skip_large_updates", "skip_not_finite", "sm3", "stateless",
    "stateless_with_tree_map", "trace", "tree_get", "tree_get_all_with_path", "tree_set",
    "warmup_constant_schedule", "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule", "yogi", "zero_nans"
]
