"""The settings fuzz of funcdl.optim (split from test_fuzz_api_optim.py): every argument of
every optimizer and schedule constructor given each bad setting (None, a string, an array,
NaN, inf, a negative, a bool, a complex, a list, a huge int, a dict) is refused in an error
naming the constructor, unless ACCEPTED says why it is valid; the verdicts are
test_fuzz_api.py's."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from test_fuzz_api import ANY, params, verdict
from test_fuzz_api_optim import G, P

from funcdl import optim, random

CTORS: dict[Callable[..., Any], dict[str, Any]] = {  # each with the arguments it needs
    optim.sgd: {"lr": 0.1}, optim.adam: {}, optim.adamw: {}, optim.rmsprop: {},
    optim.adagrad: {}, optim.clip_by_global_norm: {"max_norm": 1.0},
    optim.scale: {"step_size": 0.5}, optim.scale_by_learning_rate: {"learning_rate": 0.1},
    optim.add_decayed_weights: {}, optim.trace: {"decay": 0.9}, optim.scale_by_adam: {},
    optim.scale_by_rms: {}, optim.scale_by_adagrad: {}, optim.constant_schedule: {"value": 0.1},
    optim.polynomial_schedule: {"init_value": 1.0, "end_value": 0.1, "power": 2.0,
                                "transition_steps": 10},
    optim.linear_schedule: {"init_value": 0.0, "end_value": 1.0, "transition_steps": 10},
    optim.piecewise_constant_schedule: {"init_value": 1.0, "boundaries_and_scales": {5: 0.1}},
    optim.cosine_decay_schedule: {"init_value": 1.0, "decay_steps": 10},
    optim.warmup_cosine_decay_schedule: {"init_value": 0.0, "peak_value": 1.0,
                                         "warmup_steps": 2, "decay_steps": 10},
    optim.exponential_decay: {"init_value": 1.0, "transition_steps": 5, "decay_rate": 0.5},
    optim.join_schedules: {"schedules": [optim.constant_schedule(1.0), lambda c: 0.5],
                           "boundaries": [5]},
    optim.scale_by_adamax: {}, optim.scale_by_radam: {}, optim.scale_by_nadam: {},
    optim.scale_by_lion: {}, optim.scale_by_trust_ratio: {}, optim.apply_every: {},
    optim.multi_steps: {"opt": optim.sgd(0.1), "every_k_schedule": 1},
    optim.ema: {"decay": 0.9}, optim.adamax: {}, optim.nadam: {}, optim.radam: {},
    optim.lion: {"lr": 1e-3}, optim.lamb: {"lr": 1e-3, "weight_decay": 1e-2},
    optim.amsgrad: {}, optim.scale_by_amsgrad: {},
    optim.nadamw: {"lr": 1e-3}, optim.adamaxw: {"lr": 1e-3},
    optim.novograd: {"lr": 1e-3}, optim.scale_by_novograd: {},
    optim.lars: {"lr": 0.1}, optim.sign_sgd: {"lr": 0.1}, optim.signum: {"lr": 0.1},
    optim.scale_by_sign: {}, optim.noisy_sgd: {"lr": 0.1, "key": random.key(0)},
    optim.adan: {"lr": 1e-3, "weight_decay": 1e-3}, optim.scale_by_adan: {},
    optim.centralize: {},
    optim.partition: {"transforms": {"w": optim.adam(), "b": optim.sgd(0.1)},
                      "param_labels": {"w": "w", "b": "b"}},
    optim.freeze: {"mask": {"w": True, "b": False}},
    optim.selective_transform: {"optimizer": optim.sgd(0.1),
                                "freeze_mask": {"w": True, "b": False}},
    optim.apply_if_finite: {"inner": optim.sgd(0.1), "max_consecutive_errors": 2},
    optim.conditionally_transform: {"inner": optim.sgd(0.1),
                                    "should_transform_fn": lambda step: step % 2 == 0},
    optim.conditionally_mask: {"inner": optim.sgd(0.1),
                               "should_transform_fn": lambda step: step % 2 == 0},
    optim.stateless: {"f": lambda g, p: g},
    optim.stateless_with_tree_map: {"f": lambda g, p: -g},
    optim.piecewise_interpolate_schedule: {"interpolate_type": "linear", "init_value": 1.0,
                                           "boundaries_and_scales": {5: 0.1}},
    optim.linear_onecycle_schedule: {"transition_steps": 10, "peak_value": 1.0},
    optim.warmup_constant_schedule: {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 4},
    optim.cosine_onecycle_schedule: {"transition_steps": 10, "peak_value": 1.0},
    optim.warmup_exponential_decay_schedule: {"init_value": 0.0, "peak_value": 1.0,
                                              "warmup_steps": 2, "transition_steps": 5,
                                              "decay_rate": 0.5},
    optim.sgdr_schedule: {"cosine_kwargs": [{"init_value": 0.0, "peak_value": 1.0,
                                             "warmup_steps": 2, "decay_steps": 10}]},
    optim.adadelta: {}, optim.rprop: {}, optim.adabelief: {"lr": 1e-3}, optim.yogi: {"lr": 1e-3},
    optim.scale_by_adadelta: {}, optim.scale_by_rprop: {"learning_rate": 0.01},
    optim.scale_by_belief: {}, optim.scale_by_yogi: {},
    optim.adafactor: {}, optim.scale_by_factored_rms: {},
    optim.clip_by_block_rms: {"threshold": 1.0}, optim.scale_by_param_block_rms: {},
    optim.lookahead: {"fast_optimizer": optim.sgd(0.1), "sync_period": 2, "slow_step_size": 0.5},
    optim.adaptive_grad_clip: {"clipping": 0.1}, optim.zero_nans: {},
    optim.keep_params_nonnegative: {},
    optim.add_noise: {"eta": 0.1, "gamma": 0.55, "key": random.key(0)},
    optim.scale_by_lbfgs: {}, optim.lbfgs: {},
    optim.scale_by_backtracking_linesearch: {"max_backtracking_steps": 5},
    optim.scale_by_zoom_linesearch: {"max_linesearch_steps": 5},
    optim.schedule_free: {"base_optimizer": optim.sgd(0.1), "learning_rate": 0.1},
    optim.schedule_free_sgd: {}, optim.schedule_free_adamw: {},
    optim.muon: {"learning_rate": 0.01}, optim.scale_by_muon: {},
    optim.adopt: {"learning_rate": 0.01}, optim.scale_by_adopt: {},
    optim.ademamix: {"learning_rate": 0.01}, optim.scale_by_ademamix: {},
    optim.simplified_ademamix: {"learning_rate": 0.01}, optim.scale_by_simplified_ademamix: {},
    optim.sam: {"optimizer": optim.sgd(0.1), "adv_optimizer": optim.sgd(0.1)},
    optim.prodigy: {}, optim.dadapt_adamw: {}, optim.dog: {}, optim.dowg: {},
    optim.scale_by_dog: {"init_step": ("heuristic", 1e-6)}, optim.scale_by_dowg: {},
    optim.cocob: {}, optim.scale_by_cocob: {},
    optim.mechanize: {"base_optimizer": optim.sgd(0.1)},
    optim.madgrad: {"learning_rate": 0.01}, optim.scale_by_madgrad: {"learning_rate": 0.01},
    optim.acprop: {"learning_rate": 0.01, "weight_decay": 1e-3}, optim.scale_by_acprop: {},
    optim.momo: {}, optim.momo_adam: {},
    optim.differentially_private_aggregate: {"l2_norm_clip": 1.0, "noise_multiplier": 1.0,
                                             "key": random.key(0)},
    optim.flatten: {"inner": optim.sgd(0.1)}, optim.scale_by_rss: {},
    optim.scale_by_stddev: {}, optim.scale_by_param_block_norm: {},
    optim.normalize_by_update_norm: {}, optim.scale_by_sm3: {}, optim.sm3: {"lr": 0.1},
    optim.scale_by_optimistic_gradient: {}, optim.optimistic_gradient_descent: {"lr": 0.1},
    optim.optimistic_adam: {"lr": 0.1}, optim.optimistic_adam_v2: {"lr": 0.1},
    optim.fromage: {"lr": 0.1},
    optim.onecycle_lr_schedule: {"total_steps": 10, "max_lr": 1.0},
    optim.onecycle_momentum_schedule: {"total_steps": 10},
}
SETTINGS = [("none", None), ("str", "0.1"), ("array", np.array([0.1, 0.2])), ("nan", np.nan),
            ("inf", np.inf), ("negative", -1.0), ("bool", True), ("complex", 1j),
            ("list", [0.1]), ("huge-int", 10**400), ("dict", {})]
# Accepted: (argument, setting) pairs that are valid, each with its reason.
ACCEPTED = {("max_norm", "inf"), ("max_norm", "huge-int"),  # no clipping, as torch's inf
            ("max_step_size", "inf"), ("max_step_size", "huge-int"),  # rprop: no cap
            ("step_size", "negative"), ("weight_decay", "negative"),  # optax allows them
            ("boundaries_and_scales", "none"), ("boundaries_and_scales", "dict"),  # no steps
            ("end_value", "none"),  # exponential_decay's default: no bound
            ("mask", "none"), ("mu_dtype", "none"),  # no mask; mu in the params' dtype
            ("should_skip_update_fn", "none"),  # multi_steps: no skipping, as optax's
            ("trust_ratio_mask", "none"), ("trust_ratio_mask", "bool"),  # lars: every leaf
            ("freeze_mask", "bool"),  # a prefix of every tree: all frozen or none, as optax's
            ("forward_extra_args", "bool"),  # conditionally_*'s flag
            ("accumulator_dtype", "none"),  # ema's: the params' dtype
            ("mask", "bool"),  # a prefix of every tree: the whole tree, as optax's
            *[(a, "bool") for a in ("centered", "nesterov", "flip_sign", "staircase",
                                    "eps_in_sqrt", "bias_correction", "debias",
                                    "use_grad_mean", "decoupled_weight_decay",
                                    "eps_before_correction", "scale_init_precond",
                                    "amsgrad", "bias_correction_mu",
                                    "bias_correction_nu")],  # flags
            ("linesearch", "none"),  # lbfgs: no line search, as optax's
            ("warmup_steps", "none"), ("state_dtype", "none"),  # no warmup; z in params' dtype
            ("weight_decay", "none"),  # schedule_free_sgd: no decay stage, as optax's
            ("adam_learning_rate", "none"),  # muon: the Adam leaves use learning_rate
            ("consistent_rms", "none"),  # muon: width scaling, as optax's
            *[(a, "bool") for a in ("adaptive", "use_clipping", "opaque_mode")],  # flags
            ("safeguard_warmup", "bool"),  # prodigy's flag
            ("three_phase", "bool"),  # onecycle_*_schedule's flag
            ("beta3", "none"),  # prodigy: sqrt(b2), as optax's
            ("init_estim_sq_dist", "none"),  # dowg: eps, as optax's
            *[(a, "negative") for a in ("value", "init_value", "end_value", "peak_value",
                                        "alpha")],  # schedules serve more than rates
            ("dampening", "none"),  # sgd: torch's 0, the plain trace stage
            ("adapt_lower_bound", "bool"),  # momo's flag
            ("lower_bound", "negative"),  # momo: a loss may be bounded below 0
            ("scale_factor", "negative"),  # normalize_by_update_norm(-1): a descent step
            ("f_min", "negative"),  # polyak: a loss's lower bound may be below 0
            ("optimism", "none"),  # optimistic_adam: lr's, as optax's
            # adafactor: each None leaves its stage out (optax's); dtype_momentum None: the
            # params' dtype; axis None: optax's unit-wise norms by rank
            *[(a, "none") for a in ("learning_rate", "clipping_threshold", "momentum",
                                    "weight_decay_rate", "weight_decay_mask",
                                    "dtype_momentum", "axis")],
            ("weight_decay_rate", "negative"),  # optax allows it, as weight_decay
            ("step_offset", "negative"), ("decay_offset", "negative"),  # count - offset
            ("clipping_threshold", "inf"), ("clipping_threshold", "huge-int"),  # no clipping
            ("threshold", "inf"), ("threshold", "huge-int"),
            ("min_dim_size_to_factor", "huge-int"),  # nothing factored
            *[(a, "bool") for a in ("factored", "multiply_by_parameter_scale",
                                    "reset_state")],
            ("weight_decay_mask", "bool"),  # as mask: a prefix of every tree
            ("weight_decay_mask", "dict")}  # adafactor: no decay by default, nothing to fit


def _settings_cases() -> list[Any]:
    out = []
    for ctor, base in CTORS.items():
        for arg in inspect.signature(ctor).parameters:
            for vid, v in SETTINGS:
                same = ANY if (arg, vid) in ACCEPTED else None
                out.append((f"{ctor.__name__}-{arg}-{vid}", _made(ctor, {**base, arg: v}),
                            (ctor.__name__,), same))
    return out


def _made(ctor: Any, kw: dict[str, Any]) -> Callable[[], Any]:
    """``ctor(**kw)`` run: a transform's step applied, a schedule read at a few counts."""
    def call() -> Any:
        made = ctor(**kw)
        if isinstance(made, optim.GradientTransformation):
            updates, _ = made.update(made.init(P), G, P)
            return optim.apply_updates(P, updates)
        return [made(c) for c in (0, 3, 7, 12)]
    return call


@params(_settings_cases())
def test_settings(call, names, same):
    verdict(call, names, same, close=True)
