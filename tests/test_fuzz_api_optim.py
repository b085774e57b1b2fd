"""Fuzz of the error contract for optimizers and schedules (apply_updates, global_norm and
pytrees: test_fuzz_api_tree.py): the rule, the verdict and its ``ANY`` are
test_fuzz_api.py's. An alias may name the stage that met the bad input (``scale_by_adam``
for ``adam``), as funcdl.optim documents."""

from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from test_fuzz_api import ANY, params, verdict

from funcdl import optim, random, tree

P = {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
     "b": np.array([0.5, -0.5], np.float32)}
G = {"w": np.full((3, 2), 0.25, np.float32), "b": np.array([1.0, -2.0], np.float32)}
LR, WD, ADAM = "scale_by_learning_rate", "add_decayed_weights", "scale_by_adam"


def _valued(opt: Any) -> Any:
    """reduce_on_plateau with its loss bound, so that update(state, grads, params) runs it."""
    return optim.GradientTransformation(opt.init, functools.partial(opt.update, value=1.0))


def _synced(opt: Any) -> Any:
    """lookahead on bare params: each call wraps them as LookaheadParams.init_synced."""
    def wrap(p: Any) -> Any:
        return None if p is None else optim.LookaheadParams.init_synced(p)
    return optim.GradientTransformation(
        lambda *a: opt.init(*map(wrap, a)),
        lambda s, *a: opt.update(s, *a[:1], *map(wrap, a[1:])))


def _searched(opt: Any) -> Any:
    """A line search (or lbfgs) with its keywords bound: the loss sum(p**2) and its
    gradient at the params given, as value_fn and value_and_grad_fn."""
    def vg(p: Any) -> Any:
        return (float(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in tree.leaves(p))),
                tree.map(lambda x: 2 * x, p))
    return optim.GradientTransformation(opt.init, functools.partial(
        opt.update, value=1.0, grad=G, value_fn=lambda p: vg(p)[0], value_and_grad_fn=vg))


def _matrices(p: Any) -> Any:
    """A mask function: True on the leaves of 2 dims or more."""
    return tree.map(lambda x: np.ndim(x) > 1, p)


OPTS: dict[str, tuple[Callable[[], Any], tuple[str, ...]]] = {  # id: (make, stages it names)
    "sgd": (lambda: optim.sgd(0.1), (LR,)),
    "sgd-momentum": (lambda: optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                     ("trace", WD, LR)),
    "sgd-schedule": (lambda: optim.sgd(optim.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10)),
                     (LR,)),
    "adam": (optim.adam, (LR,)), "adamw": (optim.adamw, (ADAM, WD, LR)),
    "rmsprop": (lambda: optim.rmsprop(centered=True, momentum=0.5, weight_decay=1e-3),
                ("scale_by_rms", "trace", WD, LR)),
    "adagrad": (lambda: optim.adagrad(lr_decay=0.1), (LR,)),
    "chain": (lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.scale_by_adam(),
                                  optim.scale(-0.1)), ("clip_by_global_norm", ADAM, "scale")),
    "named_chain": (lambda: optim.named_chain(("clip", optim.clip_by_global_norm(1.0)),
                                              ("lr", optim.scale_by_learning_rate(0.1))),
                    ("clip_by_global_norm", LR)),
    "identity": (optim.identity, ()), "scale": (lambda: optim.scale(-0.5), ()),
    "scale_by_schedule": (lambda: optim.scale_by_schedule(optim.exponential_decay(1.0, 5, 0.5)),
                          ()),
    "scale_by_learning_rate": (lambda: optim.scale_by_learning_rate(0.1), ()),
    "scale_by_learning_rate-schedule": (
        lambda: optim.scale_by_learning_rate(optim.linear_schedule(0.1, 0.0, 10)), ()),
    "add_decayed_weights": (lambda: optim.add_decayed_weights(1e-2), ()),
    "add_decayed_weights-schedule": (
        lambda: optim.add_decayed_weights(optim.constant_schedule(1e-2)), ()),
    "clip_by_global_norm": (lambda: optim.clip_by_global_norm(1.0), ()),
    "trace": (lambda: optim.trace(0.9, nesterov=True), ()),
    "scale_by_adam": (optim.scale_by_adam, ()),
    "scale_by_rms": (lambda: optim.scale_by_rms(centered=True), ()),
    "scale_by_adagrad": (optim.scale_by_adagrad, ()),
    "adamax": (lambda: optim.adamax(weight_decay=1e-3), (WD, "scale_by_adamax", LR)),
    "nadam": (lambda: optim.nadam(weight_decay=1e-3, decoupled_weight_decay=True),
              ("scale_by_nadam", WD, LR)),
    "radam": (optim.radam, ("scale_by_radam", LR)),
    "lion": (lambda: optim.lion(1e-3), ("scale_by_lion", WD, LR)),
    "amsgrad": (lambda: optim.amsgrad(1e-3), ("scale_by_amsgrad", LR)),
    "adam-amsgrad": (lambda: optim.adam(weight_decay=1e-3, amsgrad=True), (WD, "amsgrad", LR)),
    "scale_by_amsgrad": (lambda: optim.scale_by_amsgrad(eps_root=1e-8), ()),
    "nadamw": (lambda: optim.nadamw(1e-3, mask=_matrices), (ADAM, WD, LR)),
    "adamaxw": (lambda: optim.adamaxw(1e-3), ("scale_by_adamax", WD, LR)),
    "novograd": (lambda: optim.novograd(1e-3, weight_decay=1e-3), ("scale_by_novograd", LR)),
    "scale_by_novograd": (lambda: optim.scale_by_novograd(weight_decay=1e-3), ()),
    "lars": (lambda: optim.lars(0.1, weight_decay=1e-3, trust_ratio_mask=_matrices),
             (WD, "scale_by_trust_ratio", LR, "trace")),
    "sign_sgd": (lambda: optim.sign_sgd(0.1), ("scale_by_sign", LR)),
    "signum": (lambda: optim.signum(0.1), ("ema", "scale_by_sign", LR)),
    "scale_by_sign": (optim.scale_by_sign, ()),
    "noisy_sgd": (lambda: optim.noisy_sgd(0.1, key=random.key(0)), ("add_noise", LR)),
    "adan": (lambda: optim.adan(1e-3, weight_decay=1e-3), ("scale_by_adan", WD, LR)),
    "scale_by_adan": (optim.scale_by_adan, ()),
    "centralize": (optim.centralize, ()),
    "partition": (lambda: optim.partition(
        {"mat": optim.adam(), "vec": optim.sgd(0.1, momentum=0.9)},
        lambda p: tree.map(lambda x: "mat" if np.ndim(x) > 1 else "vec", p)),
        ("adam", "sgd", ADAM, LR, "trace")),
    "multi_transform": (lambda: optim.multi_transform(
        {"mat": optim.sgd(0.1), "vec": optim.scale(-0.5)},
        lambda p: tree.map(lambda x: "mat" if np.ndim(x) > 1 else "vec", p)),
        ("partition", "sgd", LR, "scale")),
    "freeze": (lambda: optim.freeze(lambda p: tree.map(lambda x: np.ndim(x) == 1, p)),
               ("set_to_zero",)),
    "selective_transform": (lambda: optim.selective_transform(
        optim.adam(), freeze_mask=lambda p: tree.map(lambda x: np.ndim(x) == 1, p)),
        ("adam", ADAM, LR, "set_to_zero")),
    "apply_if_finite": (lambda: optim.apply_if_finite(optim.adam(), 1),
                        ("adam", ADAM, LR)),
    "conditionally_transform": (lambda: optim.conditionally_transform(
        optim.adam(), lambda step: step % 2 == 0), ("adam", ADAM, LR)),
    "conditionally_mask": (lambda: optim.conditionally_mask(
        optim.adam(), lambda step: step % 2 == 0), ("adam", ADAM, LR)),
    "stateless": (lambda: optim.stateless(lambda g, p: tree.map(lambda x: -0.1 * x, g)), ()),
    "stateless_with_tree_map": (lambda: optim.stateless_with_tree_map(
        lambda g, p: -0.1 * g), ()),
    "lamb": (lambda: optim.lamb(1e-3, weight_decay=1e-2), (ADAM, WD, "scale_by_trust_ratio", LR)),
    "scale_by_adamax": (optim.scale_by_adamax, ()),
    "scale_by_radam": (lambda: optim.scale_by_radam(nesterov=True), ()),
    "scale_by_nadam": (optim.scale_by_nadam, ()),
    "scale_by_lion": (optim.scale_by_lion, ()),
    "scale_by_trust_ratio": (lambda: optim.scale_by_trust_ratio(0.1, 0.5, 1e-3), ()),
    "apply_every": (lambda: optim.apply_every(2), ()),
    "multi_steps": (lambda: optim.multi_steps(optim.adam(), 2), (ADAM, LR)),
    "ema": (lambda: optim.ema(0.9), ()),
    "adadelta": (lambda: optim.adadelta(weight_decay=1e-3),
                 (WD, "scale_by_adadelta", LR)),
    "rprop": (optim.rprop, ("scale_by_rprop", "scale")),
    "adabelief": (lambda: optim.adabelief(1e-3), ("scale_by_belief", LR)),
    "yogi": (lambda: optim.yogi(1e-3), ("scale_by_yogi", LR)),
    "scale_by_adadelta": (optim.scale_by_adadelta, ()),
    "scale_by_rprop": (lambda: optim.scale_by_rprop(0.01), ()),
    "scale_by_belief": (lambda: optim.scale_by_belief(nesterov=True), ()),
    "scale_by_yogi": (optim.scale_by_yogi, ()),
    "inject_hyperparams": (lambda: optim.inject_hyperparams(optim.adam)(lr=1e-3), (ADAM, LR)),
    "inject_hyperparams-schedule": (
        lambda: optim.inject_hyperparams(optim.sgd)(lr=optim.linear_schedule(0.1, 0.0, 10),
                                                    momentum=0.9), ("trace", LR)),
    "reduce_on_plateau": (lambda: _valued(optim.reduce_on_plateau(patience=1)), ()),
    "sgd-dampening": (lambda: optim.sgd(0.1, momentum=0.9, weight_decay=1e-3, dampening=0.5),
                      ("trace", WD, LR)),
    "adafactor": (lambda: optim.adafactor(1e-2, 2, momentum=0.9, weight_decay_rate=1e-3),
                  ("scale_by_factored_rms", "clip_by_block_rms", LR, "scale_by_param_block_rms",
                   "ema", WD, "scale")),
    "scale_by_factored_rms": (lambda: optim.scale_by_factored_rms(min_dim_size_to_factor=2),
                              ()),
    "clip_by_block_rms": (lambda: optim.clip_by_block_rms(1.0), ()),
    "scale_by_param_block_rms": (optim.scale_by_param_block_rms, ()),
    "lookahead": (lambda: _synced(optim.lookahead(optim.adam(), 2, 0.5, reset_state=True)),
                  (ADAM, LR)),
    "adaptive_grad_clip": (lambda: optim.adaptive_grad_clip(0.1), ()),
    "zero_nans": (optim.zero_nans, ()),
    "keep_params_nonnegative": (optim.keep_params_nonnegative, ()),
    "add_noise": (lambda: optim.add_noise(0.1, 0.55, random.key(0)), ()),
    "scale_by_lbfgs": (lambda: optim.scale_by_lbfgs(3), ()),
    "lbfgs": (lambda: _searched(optim.lbfgs(memory_size=3)),
              ("scale_by_lbfgs", "scale", "scale_by_zoom_linesearch")),
    "lbfgs-backtracking": (lambda: _searched(optim.lbfgs(
        linesearch=optim.scale_by_backtracking_linesearch(5, store_grad=True))),
        ("scale_by_lbfgs", "scale", "scale_by_backtracking_linesearch")),
    "scale_by_backtracking_linesearch": (
        lambda: _searched(optim.scale_by_backtracking_linesearch(5)), ()),
    "scale_by_zoom_linesearch": (lambda: _searched(optim.scale_by_zoom_linesearch(5)), ()),
    "schedule_free_adamw": (lambda: optim.schedule_free_adamw(1e-3, warmup_steps=2),
                            ("schedule_free", "scale_by_rms", WD, LR)),
    "schedule_free_sgd": (lambda: optim.schedule_free_sgd(0.1), ("schedule_free", LR)),
    "muon": (lambda: optim.muon(0.01), ("scale_by_muon", ADAM, WD, LR)),
    "adopt": (lambda: optim.adopt(0.01), ("scale_by_adopt", WD, LR)),
    "ademamix": (lambda: optim.ademamix(0.01), ("scale_by_ademamix", WD, LR)),
    "simplified_ademamix": (lambda: optim.simplified_ademamix(0.01),
                            ("scale_by_simplified_ademamix", WD, LR)),
    "sam": (lambda: optim.sam(optim.sgd(0.1), optim.sgd(0.1)), (LR,)),
    "prodigy": (optim.prodigy, ()),
    "prodigy-options": (lambda: optim.prodigy(optim.linear_schedule(1.0, 0.0, 10),
                                              weight_decay=1e-2, safeguard_warmup=True), ()),
    "dadapt_adamw": (lambda: optim.dadapt_adamw(weight_decay=1e-2), ()),
    "dog": (lambda: optim.dog(weight_decay=1e-2), (WD, "scale_by_dog", LR)),
    "dowg": (optim.dowg, ("identity", "scale_by_dowg", LR)),
    "scale_by_dog": (lambda: optim.scale_by_dog(("heuristic", 1e-6)), ()),
    "scale_by_dowg": (optim.scale_by_dowg, ()),
    "cocob": (lambda: optim.cocob(weight_decay=1e-2), (WD, LR, "scale_by_cocob")),
    "scale_by_cocob": (optim.scale_by_cocob, ()),
    "mechanize": (lambda: optim.mechanize(optim.adam()), (ADAM, LR)),
    "normalize": (optim.normalize, ()),
    "sam-normalized": (lambda: optim.sam(optim.sgd(0.1), optim.chain(optim.normalize(),
                                                                     optim.sgd(0.05))),
                       ("normalize", LR)),
    "madgrad": (lambda: optim.madgrad(0.01, weight_decay=1e-3), (WD, "scale_by_madgrad")),
    "scale_by_madgrad": (lambda: optim.scale_by_madgrad(0.01), ()),
    "acprop": (lambda: optim.acprop(0.01, weight_decay=1e-3, mask=_matrices),
               ("scale_by_acprop", WD, LR)),
    "scale_by_acprop": (optim.scale_by_acprop, ()),
    "momo": (lambda: _valued(optim.momo(weight_decay=1e-3, adapt_lower_bound=True)), ()),
    "momo_adam": (lambda: _valued(optim.momo_adam(weight_decay=1e-3, adapt_lower_bound=True)),
                  ()),
    "flatten": (lambda: optim.flatten(optim.scale_by_adam()), (ADAM,)),
    "scale_by_rss": (optim.scale_by_rss, ()),
    "scale_by_stddev": (optim.scale_by_stddev, ()),
    "scale_by_stddev-corrected": (lambda: optim.scale_by_stddev(bias_correction=True), ()),
    "scale_by_param_block_norm": (optim.scale_by_param_block_norm, ()),
    "normalize_by_update_norm": (optim.normalize_by_update_norm, ()),
    "scale_by_sm3": (optim.scale_by_sm3, ()),
    "sm3": (lambda: optim.sm3(0.1), ("scale_by_sm3", LR)),
    "scale_by_optimistic_gradient": (optim.scale_by_optimistic_gradient, ()),
    "optimistic_gradient_descent": (lambda: optim.optimistic_gradient_descent(0.1),
                                    ("scale_by_optimistic_gradient", LR)),
    "optimistic_adam": (lambda: optim.optimistic_adam(0.1),
                        (ADAM, "scale_by_optimistic_gradient", LR)),
    "optimistic_adam_v2": (lambda: optim.optimistic_adam_v2(0.1),
                           (ADAM, "scale_by_optimistic_gradient", LR)),
    "fromage": (lambda: optim.fromage(0.1), ("scale_by_trust_ratio", LR, WD)),
    "scale_by_polyak": (lambda: _valued(optim.scale_by_polyak()), ()),
    "polyak_sgd": (lambda: _valued(optim.polyak_sgd()), (LR, "scale_by_polyak")),
}
# Stateless transforms that read no params take any tree of grads (optax's do too); identity
# also passes any dtype through, as it passes everything.
ANY_TREE = ("identity", "clip_by_global_norm", "clip_by_block_rms", "normalize",
            "scale_by_sign", "centralize", "normalize_by_update_norm", "scale_by_polyak")
# Keeping per-param state (or being an alias), init refuses params that are not floats.
INIT_CHECKS = ("sgd", "sgd-momentum", "sgd-schedule", "adam", "adamw", "rmsprop", "adagrad",
               "chain", "trace", "scale_by_adam", "scale_by_rms", "scale_by_adagrad",
               "adamax", "nadam", "radam", "lion", "lamb", "scale_by_adamax", "scale_by_radam",
               "amsgrad", "adam-amsgrad", "scale_by_amsgrad",
               "nadamw", "adamaxw", "novograd", "scale_by_novograd", "lars", "sign_sgd",
               "signum", "noisy_sgd", "adan", "scale_by_adan",
               "partition", "selective_transform", "apply_if_finite",
               "conditionally_transform", "conditionally_mask",
               "scale_by_nadam", "scale_by_lion", "apply_every", "multi_steps", "ema",
               "adadelta", "rprop", "adabelief", "yogi", "scale_by_adadelta", "scale_by_rprop",
               "scale_by_belief", "scale_by_yogi", "inject_hyperparams",
               "inject_hyperparams-schedule", "reduce_on_plateau", "sgd-dampening",
               "adafactor", "scale_by_factored_rms", "lookahead", "zero_nans", "add_noise",
               "scale_by_lbfgs", "lbfgs", "lbfgs-backtracking",
               "scale_by_backtracking_linesearch", "scale_by_zoom_linesearch",
               "schedule_free_adamw", "schedule_free_sgd", "muon", "adopt", "ademamix",
               "simplified_ademamix", "sam", "prodigy", "prodigy-options", "dadapt_adamw",
               "dog", "dowg", "scale_by_dog", "scale_by_dowg", "cocob", "scale_by_cocob",
               "mechanize", "madgrad", "scale_by_madgrad", "acprop", "scale_by_acprop", "momo",
               "momo_adam", "flatten", "scale_by_rss", "scale_by_stddev",
               "scale_by_stddev-corrected", "scale_by_sm3", "sm3", "scale_by_optimistic_gradient",
               "optimistic_gradient_descent", "optimistic_adam", "optimistic_adam_v2",
               "fromage", "polyak_sgd")


INIT: Any = object()  # _run's default state: init's


def _run(oid: str, state: Any = INIT, grads: Any = G, ps: Any = P) -> Any:
    """Two updates from ``state``: (updates, state) after the second."""
    opt = OPTS[oid][0]()
    s = opt.init(P) if state is INIT else state
    _, s = opt.update(s, grads, ps)
    return opt.update(s, grads, ps)


def _leaf(**kw: Any) -> dict[str, Any]:
    return {**G, **kw}


def _f16(t: Any) -> Any:  # float32 values that float16 holds
    return tree.map(lambda g: g.astype(np.float16).astype(np.float32), t)


GRAD_PERTURBATIONS: list[tuple[str, Any, str | None]] = [  # (id, grads, kind of expectation)
    ("missing-key", {"w": G["w"]}, "tree"), ("extra-key", _leaf(c=G["b"]), "tree"),
    ("leaf-transposed", _leaf(w=G["w"].T), "tree"),
    ("leaf-broadcastable", _leaf(w=G["w"][:1]), "tree"), ("leaf-scalar", _leaf(w=0.25), "tree"),
    ("leaf-nested-list", _leaf(w=G["w"].tolist()), "tree"), ("leaf-none", _leaf(w=None), "tree"),
    ("leaf-empty", _leaf(w=G["w"][:0]), "tree"), ("list-for-dict", [G["b"], G["w"]], "tree"),
    ("tuple-for-dict", (G["b"], G["w"]), "tree"), ("none", None, "tree"),
    ("bare-array", G["w"], "tree"),
    *[(f"leaf-{d}", _leaf(w=G["w"].astype(d)), "dtype")
      for d in ("complex64", "int64", "bool", "object", "str")],
    ("leaf-float16", _leaf(w=G["w"].astype(np.float16)), "float16"),
    ("leaf-float64", _leaf(w=G["w"].astype(np.float64)), "float64"),
    ("leaf-inf", _leaf(w=G["w"] * np.inf), "any"), ("leaf-nan", _leaf(w=G["w"] * np.nan), "any"),
    ("leaf-huge", _leaf(w=np.full((3, 2), 3e38, np.float32)), "any"),
]
COUNTS = [("none", None, False), ("str", "3", False), ("float", 2.5, False),
          ("negative", -1, False), ("array", np.array([1, 2]), False),
          ("python-int", 0, True), ("0d-array", np.array(0), True), ("int32", np.int32(0), True),
          ("nan", np.nan, False), ("inf", np.inf, False), ("negative-float", -1.0, False),
          ("huge-float", 1e30, False), ("int64-max", np.int64(2**63 - 1), False),
          # a whole float is a count: torch keeps its step as a float tensor
          ("float-whole", 0.0, True), ("0d-float64", np.array(0.0), True),
          ("float32", np.float32(0), True)]


def _optimizer_cases() -> list[Any]:
    out = []
    for oid, (make, stages) in OPTS.items():
        names = (oid.split("-")[0], *stages)

        def run(oid: str = oid, **kw: Any) -> Any:
            return lambda: _run(oid, **kw)

        valid = run()
        for gid, g, kind in GRAD_PERTURBATIONS:
            same: Any = {"tree": ANY if oid in ANY_TREE else None,
                         "dtype": ANY if oid == "identity" else None,
                         "float16": run(grads=_f16(G)), "float64": valid, "any": ANY}[kind]
            out.append((f"{oid}-grads-{gid}", run(grads=g), names, same))
        init = make().init(P)
        other = (optim.sgd(0.1) if oid == "adam" else optim.adam()).init(P)
        for sid, state in [("none", None), ("tuple", tuple(init)), ("dict", {}),
                           ("of-another-optimizer", other),
                           ("on-other-params", make().init({"w": P["w"]}))]:
            out.append((f"{oid}-state-{sid}", run(state=state), names, valid))
        out.append((f"{oid}-swapped", lambda m=make, s=init: m().update(G, s, P), names, None))
        if "count" in getattr(init, "_fields", ()):
            for cid, count, ok in COUNTS:
                out.append((f"{oid}-state-count-{cid}", run(state=init._replace(count=count)),
                            names, valid if ok else None))
        if "states" in getattr(init, "_fields", ()):
            out.append((f"{oid}-state-states-none", run(state=init._replace(states=None)),
                        names, None))
        for pid, ps in [("none", None), ("missing-key", {"w": P["w"]}),
                        ("leaf-transposed", {**P, "w": P["w"].T}), ("list", [P["b"], P["w"]]),
                        ("leaf-str", {**P, "w": P["w"].astype(str)}),
                        ("leaf-complex", {**P, "w": P["w"].astype(complex)})]:
            # Accepted: a bare add_decayed_weights reads the params unchecked (a check per
            # leaf costs 2% of its update): complex params make complex updates, which
            # apply_updates refuses, naming the params (test below)
            accepted = pid == "leaf-complex" and oid.startswith("add_decayed_weights")
            out.append((f"{oid}-params-{pid}", run(ps=ps), names, ANY if accepted else valid))
        rounded = {**P, "w": np.round(P["w"])}
        out.append((f"{oid}-params-leaf-int", run(ps={**P, "w": rounded["w"].astype(int)}),
                    names, run(ps=rounded)))
        refuse = None if oid in INIT_CHECKS else ANY
        for iid, ps, same in [
                *[(f"leaf-{d}", {**P, "w": P["w"].astype(d)}, refuse)
                  for d in ("int64", "bool", "complex64", "str", "object")],
                ("init-output", ((None, 2), P), refuse), ("leaf-float16", _f16(P), ANY),
                ("none", None, ANY), ("empty", {}, ANY)]:
            out.append((f"{oid}-init-{iid}", lambda m=make, ps=ps: m().init(ps), names, same))
        out.append((f"{oid}-init-no-argument", lambda m=make: m().init(), names, None))
        out.append((f"{oid}-update-no-grads", lambda m=make, s=init: m().update(s), names, None))
    return out


@params(_optimizer_cases())
def test_optimizers(call, names, same):
    verdict(call, names, same, close=True)


def test_accepted_complex_params_are_refused_by_the_step_not_by_weight_decay():
    bad = {**P, "w": P["w"].astype(complex)}
    opt = optim.add_decayed_weights(0.1)
    updates, _ = opt.update(opt.init(bad), G, bad)
    with pytest.raises(TypeError, match=r"apply_updates: params\['w'\] has dtype complex128"):
        optim.apply_updates(bad, updates)


# ---------------------------------------------------------------------------- schedules

SITES: dict[str, tuple[Callable[[Any], Any], float]] = {  # id: (make, lowest value allowed)
    "sgd": (optim.sgd, 0.0), "adam": (optim.adam, 0.0), "adamw": (optim.adamw, 0.0),
    "rmsprop": (optim.rmsprop, 0.0), "adagrad": (optim.adagrad, 0.0),
    "adadelta": (optim.adadelta, 0.0), "adabelief": (optim.adabelief, 0.0),
    "yogi": (optim.yogi, 0.0),
    "inject_hyperparams": (lambda s: optim.inject_hyperparams(optim.sgd)(lr=s), 0.0),
    "adagrad-lr_decay": (lambda s: optim.adagrad(s, lr_decay=0.1), 0.0),
    "scale_by_learning_rate": (optim.scale_by_learning_rate, 0.0),
    "scale_by_schedule": (optim.scale_by_schedule, -np.inf),
    "add_decayed_weights": (optim.add_decayed_weights, -np.inf),
    "join_schedules": (lambda s: optim.sgd(optim.join_schedules([lambda c: 0.1, s], [1])), 0.0),
    "adamax": (optim.adamax, 0.0), "nadam": (optim.nadam, 0.0), "radam": (optim.radam, 0.0),
    "lion": (optim.lion, 0.0), "lamb": (optim.lamb, 0.0), "amsgrad": (optim.amsgrad, 0.0),
    "nadamw": (optim.nadamw, 0.0), "adamaxw": (optim.adamaxw, 0.0),
    "novograd": (optim.novograd, 0.0), "lars": (optim.lars, 0.0),
    "sign_sgd": (optim.sign_sgd, 0.0), "signum": (optim.signum, 0.0),
    "noisy_sgd": (lambda s: optim.noisy_sgd(s, key=random.key(0)), 0.0),
    "adan": (optim.adan, 0.0),
    "nadamw-weight_decay": (lambda s: optim.nadamw(1e-3, weight_decay=s), -np.inf),
    "lars-weight_decay": (lambda s: optim.lars(1e-3, weight_decay=s), -np.inf),
    "adafactor": (optim.adafactor, 0.0),
    "adafactor-weight_decay_rate": (lambda s: optim.adafactor(weight_decay_rate=s), -np.inf),
    "madgrad": (optim.madgrad, 0.0), "scale_by_madgrad": (optim.scale_by_madgrad, 0.0),
    "madgrad-weight_decay": (lambda s: optim.madgrad(1e-3, weight_decay=s), -np.inf),
    "acprop": (optim.acprop, 0.0),
    "acprop-weight_decay": (lambda s: optim.acprop(1e-3, weight_decay=s), -np.inf),
    "momo": (lambda s: _valued(optim.momo(s)), 0.0),
    "momo_adam": (lambda s: _valued(optim.momo_adam(s)), 0.0),
    "fromage": (optim.fromage, 0.0), "sm3": (optim.sm3, 0.0),
    "optimistic_gradient_descent": (optim.optimistic_gradient_descent, 0.0),
    "optimistic_adam_v2": (optim.optimistic_adam_v2, 0.0),
    "polyak_sgd-scaling": (lambda s: _valued(optim.polyak_sgd(scaling=s)), 0.0),
}
RETURNS = [("nan", np.nan, None), ("inf", np.inf, None), ("-inf", -np.inf, None),
           ("negative", -0.1, "low"), ("shape-1", np.array([0.1]), None),
           ("list", [0.1], None), ("str", "0.1", None), ("none", None, None),
           ("bool", True, None), ("complex", 0.1j, None), ("float32-nan", np.float32("nan"), None),
           ("huge-int", 10**400, None), ("function", lambda: 0.1, None),
           ("0d-array", np.array(0.1), 0.1), ("float32", np.float32(0.25), 0.25),
           ("int", 1, 1.0), ("fraction", Fraction(1, 4), 0.25),
           ("0d-object", np.array(0.1, object), 0.1)]


def _schedule_cases() -> list[Any]:
    out = []
    for sid, (make, low) in SITES.items():
        names = (sid.split("-")[0], LR, "schedule")

        def run(v: Any, make: Any = make) -> Any:  # two updates: counts 0 and 1
            opt = make(lambda count: v)
            return opt.update(opt.update(opt.init(P), G, P)[1], G, P)[0]

        for rid, v, same in RETURNS:
            want = (ANY if low < 0 else None) if same == "low" else \
                (None if same is None else (lambda s=same, r=run: r(s)))
            out.append((f"{sid}-returns-{rid}", lambda v=v, r=run: r(v), names, want))
        for aid, fn in [("no-argument", lambda: 0.1), ("two-arguments", lambda a, b: 0.1),
                        ("keyword-only", lambda *, count: 0.1),
                        ("uncalled-constructor", optim.constant_schedule)]:
            out.append((f"{sid}-schedule-{aid}", lambda m=make, fn=fn: m(fn), names, None))
    return out


@params(_schedule_cases())
def test_schedules(call, names, same):
    verdict(call, names, same, close=True)
