"""The catalogue of test_dtype_sweep.py: one valid call of every loss and every callable of
funcdl.optim's ``__all__`` (transforms, schedules, helpers), with the names it cannot build
generically listed with their arguments; inputs are float64 masters, cast per test."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from test_fuzz_api_optim import OPTS, _matrices, _valued

from funcdl import losses as Lo
from funcdl import optim as O
from funcdl import random, tree

R = np.random.default_rng(0)
Z = R.normal(size=(4, 3))
PROB = 1 / (1 + np.exp(-Z))
T01 = (R.random((4, 3)) > 0.5) * 1.0
PM = 2 * T01 - 1
LABELS = np.array([0, 2, 1, 2])
SOFT = np.array([[0.2, 0.3, 0.5]] * 4)
LSM = Z - np.log(np.exp(Z).sum(-1, keepdims=True))
_CZ = R.normal(size=(4, 5, 3))
CTC_LP = _CZ - np.log(np.exp(_CZ).sum(-1, keepdims=True))
CTC_LABELS = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
MULTILABEL = np.array([[2, 0, -1], [1, -1, -1], [-1, 0, 0], [0, 1, 2]])
W3 = np.array([1.0, 2.0, 0.5])  # class weights: float64, cast per test

# id: (loss, pred (an array or a tuple of them), target, options); float arrays in the
# options are cast with the target
LOSSES: dict[str, tuple[Any, Any, Any, dict[str, Any]]] = {
    "mse": (Lo.mse, Z, T01, {}), "bce": (Lo.bce, PROB, T01, {}),
    "bce_with_logits": (Lo.bce_with_logits, Z, PROB, {}),
    "bce_with_logits-weights": (Lo.bce_with_logits, Z, T01, {"weight": W3, "pos_weight": W3}),
    "huber": (Lo.huber, Z, 2 * T01, {"delta": 0.5}), "l1": (Lo.l1, Z, T01, {}),
    "smooth_l1": (Lo.smooth_l1, Z, T01, {"beta": 0.5}),
    "softmax_cross_entropy-labels": (Lo.softmax_cross_entropy, Z, LABELS, {}),
    "softmax_cross_entropy-weights": (Lo.softmax_cross_entropy, Z, LABELS, {
        "weight": W3, "label_smoothing": 0.1, "ignore_index": 1}),
    "softmax_cross_entropy-probs": (Lo.softmax_cross_entropy, Z, SOFT, {"weight": W3}),
    "softmax_cross_entropy-int-one-hot": (Lo.softmax_cross_entropy, Z,
                                          np.eye(3, dtype=np.int64)[LABELS], {}),
    "nll": (Lo.nll, LSM, LABELS, {"weight": W3, "ignore_index": 0}),
    "ctc": (Lo.ctc, CTC_LP, CTC_LABELS, {}),
    "ctc-lengths": (Lo.ctc, CTC_LP, CTC_LABELS, {"input_lengths": np.array([5, 4, 5, 3]),
                                                 "target_lengths": np.array([2, 1, 2, 2])}),
    "kl_div": (Lo.kl_div, LSM, SOFT, {}),
    "kl_div-log-target": (Lo.kl_div, LSM, np.log(SOFT), {"log_target": True}),
    "gaussian_nll": (Lo.gaussian_nll, Z, T01, {"var": PROB}),
    "gaussian_nll-pair": (Lo.gaussian_nll, (Z, PROB), T01, {"full": True}),
    "gaussian_kl": (Lo.gaussian_kl, (Z, PROB), None, {}),
    "poisson_nll": (Lo.poisson_nll, Z, 2 * T01, {}),
    "poisson_nll-rates": (Lo.poisson_nll, PROB, 2 * T01, {"log_input": False, "full": True}),
    "sigmoid_focal": (Lo.sigmoid_focal, Z, PROB, {}),
    "log_cosh": (Lo.log_cosh, Z, T01, {}),
    "hinge_embedding": (Lo.hinge_embedding, Z, PM, {"margin": 0.5}),
    "soft_margin": (Lo.soft_margin, Z, PM, {}),
    "multi_margin": (Lo.multi_margin, Z, LABELS, {"p": 2, "weight": W3}),
    "multilabel_soft_margin": (Lo.multilabel_soft_margin, Z, T01, {"weight": W3}),
    "multilabel_margin": (Lo.multilabel_margin, Z, MULTILABEL, {}),
    "margin_ranking": (Lo.margin_ranking, (Z[:, 0], Z[:, 1]), PM[:, 0], {"margin": 0.1}),
    "cosine_embedding": (Lo.cosine_embedding, (Z, PROB), PM[:, 0], {"margin": 0.1}),
    "triplet_margin": (Lo.triplet_margin, (Z, PROB, T01), None, {"swap": True}),
    "ntxent": (Lo.ntxent, Z, np.array([0, 0, 1, 1]), {}),
    "cosine_similarity": (Lo.cosine_similarity, Z, PROB, {}),
    "cosine_distance": (Lo.cosine_distance, Z, PROB, {"epsilon": 0.5}),
    "poly_loss_cross_entropy": (Lo.poly_loss_cross_entropy, Z, SOFT, {}),
    "poly_loss_cross_entropy-labels": (Lo.poly_loss_cross_entropy, Z, LABELS, {}),
    "hinge": (Lo.hinge, Z, PM, {}), "squared_hinge": (Lo.squared_hinge, Z, PM, {}),
    "sparsemax": (Lo.sparsemax, Z, T01, {}),
    "multiclass_sparsemax": (Lo.multiclass_sparsemax, Z, LABELS, {}),
}
# the record type and the error: no values; combine builds losses of other losses (their
# dtypes: tests/test_losses_combine.py), and masked wraps one (tests/test_losses_masked.py)
NOT_LOSSES = {"Loss", "LabelDtypeError", "combine", "masked"}


# ---------------------------------------------------------------------------- optimizers

def searched(opt: O.GradientTransformation) -> O.GradientTransformation:
    """A line search (or lbfgs) fed the loss sum(p²) at the params it is given, in their
    dtype (test_fuzz_api_optim's binding holds float32 grads)."""
    def vg(p: Any) -> tuple[float, Any]:
        return (float(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in tree.leaves(p))),
                tree.map(lambda x: 2 * x, p))

    def update(state: Any, grads: Any, params: Any = None) -> Any:
        value, grad = vg(params)
        return opt.update(state, grads, params, value=value, grad=grad,
                          value_fn=lambda p: vg(p)[0], value_and_grad_fn=vg)
    return O.GradientTransformation(opt.init, update)


# the catalogue's ids bound to its float32 grads, and lookahead (its params are a pair):
# built here instead
REBUILT = {"lbfgs", "lbfgs-backtracking", "scale_by_backtracking_linesearch",
           "scale_by_zoom_linesearch", "lookahead"}
K = random.key(0)
# id: make; ``-per-example`` ids take grads with a leading axis of examples, ``-matrices``
# ids only 2-D params, ``-lookahead`` ids LookaheadParams
TRANSFORMS: dict[str, Callable[[], Any]] = {
    **{oid: make for oid, (make, _) in OPTS.items() if oid not in REBUILT},
    "lbfgs": lambda: searched(O.lbfgs(memory_size=3)),
    "lbfgs-backtracking": lambda: searched(O.lbfgs(
        linesearch=O.scale_by_backtracking_linesearch(5, store_grad=True))),
    "scale_by_backtracking_linesearch": lambda: searched(O.scale_by_backtracking_linesearch(5)),
    "scale_by_zoom_linesearch": lambda: searched(O.scale_by_zoom_linesearch(5)),
    "lookahead-lookahead": lambda: O.lookahead(O.adam(), 2, 0.5, reset_state=True),
    "clip": lambda: O.clip(0.5), "set_to_zero": O.set_to_zero,
    "masked": lambda: O.masked(O.adam(), _matrices),
    "schedule_free": lambda: O.schedule_free(O.sgd(1.0), 0.1),
    "scale_by_muon-matrices": O.scale_by_muon, "scale_by_adopt": O.scale_by_adopt,
    "scale_by_ademamix": O.scale_by_ademamix,
    "scale_by_simplified_ademamix": O.scale_by_simplified_ademamix,
    "dpsgd-per-example": lambda: O.dpsgd(0.1, 1.0, 0.5, K, momentum=0.9),
    "differentially_private_aggregate-per-example": lambda: O.differentially_private_aggregate(
        1.0, 0.5, K),
    "adafactor-momentum": lambda: O.adafactor(1e-2, 2, momentum=0.9),
    "inject_hyperparams-float64-lr": lambda: O.inject_hyperparams(O.adam)(lr=np.float64(1e-3)),
    "inject_hyperparams-0d-lr": lambda: O.inject_hyperparams(O.sgd)(lr=np.asarray(1e-2),
                                                                   momentum=np.float64(0.9)),
    "inject_hyperparams-float64-schedule": lambda: O.inject_hyperparams(O.adamw)(
        lr=lambda count: np.float64(1e-3) / (1 + count)),
}
# State leaves documented as not in the params' dtype: nadam's running product of the
# momentum schedule is a float64 scalar (torch's mu_product)
OTHER_DTYPE_STATE = ("mu_product",)

# Schedules (Python floats from a count), each given as the lr of an alias
SCHEDULES: dict[str, Any] = {
    "constant_schedule": O.constant_schedule(1e-3),
    "cosine_decay_schedule": O.cosine_decay_schedule(1e-2, 5),
    "cosine_onecycle_schedule": O.cosine_onecycle_schedule(5, 1e-2),
    "exponential_decay": O.exponential_decay(1e-2, 2, 0.5),
    "join_schedules": O.join_schedules([O.constant_schedule(1e-2),
                                        O.linear_schedule(1e-2, 0.0, 3)], [1]),
    "linear_onecycle_schedule": O.linear_onecycle_schedule(5, 1e-2),
    "linear_schedule": O.linear_schedule(1e-2, 0.0, 3),
    "onecycle_lr_schedule": O.onecycle_lr_schedule(5, 1e-2),
    "onecycle_momentum_schedule": O.onecycle_momentum_schedule(5),
    "piecewise_constant_schedule": O.piecewise_constant_schedule(1e-2, {1: 0.5}),
    "piecewise_interpolate_schedule": O.piecewise_interpolate_schedule(
        "cosine", 1e-2, {1: 0.5, 3: 0.1}),
    "polynomial_schedule": O.polynomial_schedule(1e-2, 0.0, 2.0, 3),
    "sgdr_schedule": O.sgdr_schedule([{"init_value": 0.0, "peak_value": 1e-2,
                                       "warmup_steps": 1, "decay_steps": 2}] * 2),
    "warmup_constant_schedule": O.warmup_constant_schedule(0.0, 1e-2, 2),
    "warmup_cosine_decay_schedule": O.warmup_cosine_decay_schedule(0.0, 1e-2, 1, 4),
    "warmup_exponential_decay_schedule": O.warmup_exponential_decay_schedule(
        0.0, 1e-2, 1, 2, 0.5),
}
USERS_SCHEDULES: dict[str, Any] = {  # a user's, returning NumPy values
    "float64-scalar": lambda count: np.float64(1e-3), "0d-float64": lambda count: np.asarray(1e-3),
    "float32-scalar": lambda count: np.float32(1e-3)}
SCHEDULED: dict[str, Callable[[Any], Any]] = {  # an lr (or weight decay) slot for a schedule
    "sgd": lambda s: O.sgd(s, momentum=0.9, weight_decay=1e-3),
    "adam": O.adam, "lion": O.lion, "rmsprop": lambda s: O.rmsprop(s, momentum=0.5),
    "inject_hyperparams": lambda s: O.inject_hyperparams(O.adam)(lr=s),
    "add_decayed_weights": lambda s: O.chain(O.add_decayed_weights(s), O.scale_by_adam(),
                                             O.scale_by_learning_rate(1e-3)),
}
# the helpers that are not transforms: each checked by test_dtype_sweep.py's own test
HELPERS = ("apply_updates", "global_norm", "has_updated", "incremental_update",
           "periodic_update", "newton_schulz", "per_example_global_norm_clip",
           "per_example_layer_norm_clip", "schedule_free_eval_params", "skip_large_updates",
           "skip_not_finite", "tree_get", "tree_get_all_with_path", "tree_set")
# Types (states, the transformation record, aliases of the typing module): nothing to call
NON_CALLABLE = (
    "AddNoiseState", "ApplyEveryState", "ApplyIfFiniteState", "BacktrackingLinesearchInfo",
    "COCOBState", "ChainState", "ConditionallyMaskState", "ConditionallyTransformState",
    "Count", "DAdaptAdamWState", "DifferentiallyPrivateAggregateState", "DoGState",
    "DoWGState", "EmaState", "EmptyState", "FactoredState", "GradientTransformation",
    "InjectHyperparamsState", "LookaheadParams", "LookaheadState", "MadgradState",
    "MaskedState", "MechanicState", "MomoAdamState", "MomoState", "MultiStepsState",
    "MultiTransformState", "MuonPartsState", "MuonState", "NamedChainState", "PartitionState",
    "ProdigyState", "ReduceLROnPlateauState", "SAMState", "ScalarOrSchedule",
    "ScaleByAdaDeltaState", "ScaleByAdagradState", "ScaleByAdamState", "ScaleByAdamaxState",
    "ScaleByAdanState", "ScaleByAdemamixState", "ScaleByAmsgradState",
    "ScaleByBacktrackingLinesearchState", "ScaleByBeliefState", "ScaleByLBFGSState",
    "ScaleByLionState", "ScaleByNadamState", "ScaleByNovogradState",
    "ScaleByOptimisticGradientState", "ScaleByRStdDevState", "ScaleByRStdDevWithCountState",
    "ScaleByRmsState", "ScaleByRmsWithCountState", "ScaleByRpropState", "ScaleByRssState",
    "ScaleBySM3State", "ScaleByScheduleState", "ScaleBySimplifiedAdemamixState",
    "ScaleByZoomLinesearchState", "Schedule", "ScheduleFreeState", "TraceState",
    "TransformInit", "TransformUpdate", "ZeroNansState", "ZoomLinesearchInfo")
# the factories whose learning rate (first argument) is tried as np.float64 and 0-d arrays,
# with the other arguments they need
LR_NEEDS: dict[str, dict[str, Any]] = {"schedule_free": {"base_optimizer": O.sgd(1.0)},
                                      "noisy_sgd": {"key": K}}
VALUED = {"momo", "momo_adam", "polyak_sgd"}  # their update takes value=


def lr_factory(name: str, lr: Any) -> Callable[[], Any] | None:
    """``name`` built with ``lr`` as its learning rate, or None when it takes none."""
    import inspect

    fn = getattr(O, name)
    names = [p for p in inspect.signature(fn).parameters if p in ("lr", "learning_rate")]
    if not names or name in ("dpsgd", "lbfgs"):
        return None  # dpsgd: per-example grads; lbfgs: its step is the line search's
    make = functools.partial(fn, **{names[0]: lr}, **LR_NEEDS.get(name, {}))
    return (lambda: _valued(make())) if name in VALUED else make
