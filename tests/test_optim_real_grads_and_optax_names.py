"""funcdl.optim after review: grads and updates must be real floating point (complex ones
were stepped as complex or lost their imaginary part, integer ones gave float64 steps);
the transforms take optax 0.2.8's keyword names; ``add_decayed_weights`` takes a schedule."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim, tree

GT = optim.GradientTransformation

# ---------------------------------------------------------------------------- dtypes

# Every transform and alias, each reading the grads first (the stage that refuses them).
UPDATERS: list[tuple[str, Callable[[], GT]]] = [
    ("scale", lambda: optim.scale(0.5)),
    ("scale", lambda: optim.scale(3.0)),  # a step above 1: the path without warnings
    ("scale_by_learning_rate", lambda: optim.scale_by_learning_rate(0.1)),
    ("scale_by_learning_rate", lambda: optim.scale_by_learning_rate(lambda c: 0.1)),
    ("scale_by_schedule", lambda: optim.scale_by_schedule(optim.constant_schedule(0.1))),
    ("add_decayed_weights", lambda: optim.add_decayed_weights(0.1)),
    ("add_decayed_weights", lambda: optim.add_decayed_weights(lambda c: 0.1)),
    ("trace", lambda: optim.trace(0.9)),
    ("trace", lambda: optim.trace(0.9, nesterov=True)),
    ("scale_by_adam", optim.scale_by_adam),
    ("scale_by_rms", optim.scale_by_rms),
    ("scale_by_rms", lambda: optim.scale_by_rms(centered=True)),
    ("scale_by_adagrad", optim.scale_by_adagrad),
    ("clip_by_global_norm", lambda: optim.clip_by_global_norm(1.0)),
    ("scale_by_learning_rate", lambda: optim.sgd(0.1)),
    ("trace", lambda: optim.sgd(0.1, momentum=0.9, nesterov=True)),
    ("add_decayed_weights", lambda: optim.sgd(0.1, weight_decay=1e-2)),
    ("scale_by_adam", lambda: optim.adam(1e-3)),
    ("scale_by_adam", lambda: optim.adamw(1e-3)),
    ("scale_by_rms", lambda: optim.rmsprop(1e-3, centered=True)),
    ("scale_by_adagrad", lambda: optim.adagrad(1e-2, lr_decay=0.1)),
    ("clip_by_global_norm", lambda: optim.chain(optim.clip_by_global_norm(1.0),
                                                optim.adam(1e-3))),
]
_IDS = [f"{i}-{u[0]}" for i, u in enumerate(UPDATERS)]
BAD = [np.complex64, np.complex128, np.int64, np.int32, np.uint8, np.bool_]


def _params() -> Any:
    return {"a": np.ones((2, 3), np.float32), "layer": [np.ones(3, np.float32),
                                                         np.ones(2, np.float32)]}


def _grads(bad: Any) -> Any:
    """Float32 grads for ``_params`` but for ``['layer'][1]``, of dtype ``bad``."""
    return {"a": np.full((2, 3), 0.5, np.float32),
            "layer": [np.full(3, 0.5, np.float32), np.array([1, 2]).astype(bad)]}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(("name", "make"), UPDATERS, ids=_IDS)
def test_grads_that_are_not_real_floating_point_are_refused_naming_the_leaf(
        name: str, make: Callable[[], GT], bad: Any) -> None:
    # complex: sgd gave complex steps (apply_updates then dropped the imaginary part), adam
    # a bare UFuncTypeError, rmsprop ~-1e6; int and bool: float64 steps for float32 params.
    opt, params = make(), _params()
    kind = np.dtype(bad)
    real = r"\.real" if kind.kind == "c" else ""
    with pytest.raises(TypeError, match=(
            rf"^(\w+\.update, stage '\w+': )?{name}\.update: grads\['layer'\]\[1\] has dtype "
            rf"{kind}; optimizers take real "
            rf"floating-point grads \(float16, float32 or float64\), as the params are: cast "
            rf"the grads to the params' dtype.*\(grads\['layer'\]\[1\]{real}\.astype\(np\."
            rf"float32\)\)$")):
        opt.update(opt.init(params), _grads(bad), params)


@pytest.mark.parametrize(("name", "make"), UPDATERS, ids=_IDS)
def test_float_grads_are_taken_and_float32_stays_float32(name: str, make: Callable[[], GT]
                                                         ) -> None:
    opt, params = make(), _params()
    updates, state = opt.update(opt.init(params), _grads(np.float32), params)
    assert all(u.dtype == np.float32 for u in tree.leaves(updates)), name
    # float16 grads (as float16 params allow) on float32 params: taken
    updates, _ = opt.update(state, tree.map(lambda g: g.astype(np.float16), _grads(np.float32)),
                            params)
    assert all(np.asarray(u).dtype.kind == "f" for u in tree.leaves(updates)), name


@pytest.mark.parametrize("make", [optim.scale_by_adam, lambda: optim.scale(2.0),
                                  lambda: optim.trace(0.5), optim.scale_by_rms,
                                  optim.scale_by_adagrad], ids=["adam", "scale", "trace",
                                                                "rms", "adagrad"])
def test_grads_are_checked_without_params_and_on_every_leaf(make: Callable[[], GT]) -> None:
    # every leaf complex (no fused path for adam) or a NumPy scalar leaf; no params passed:
    # the advice casts to the state's dtype (the params' at init), float32 if there is none
    opt = make()
    params = {"w": np.ones(2), "s": np.float64(1.0)}
    state = opt.init(params)
    to = "float32" if state == optim.EmptyState() else "float64"
    with pytest.raises(TypeError, match=r"\.update: grads\['s'\] has dtype complex64; .*"
                                        rf"grads\['s'\]\.real\.astype\(np\.{to}\)\)$"):
        opt.update(state, {"w": np.ones(2), "s": np.complex64(1j)})
    with pytest.raises(TypeError, match=r"grads\['s'\] has dtype int8; .*params' dtype, "
                                        r"float64 \(grads\['s'\]\.astype\(np\.float64\)\)$"):
        opt.update(state, {"w": np.ones(2), "s": np.int8(1)}, params)
    with pytest.raises(TypeError, match=r"\.update: grads\['s'\] has dtype int64; "):
        opt.update(state, {"w": np.ones(2), "s": 3})  # a Python int leaf
    with pytest.raises(TypeError, match=r"\.update: grads\['s'\] has dtype complex128; "):
        opt.update(state, {"w": np.ones(2, complex), "s": np.ones((), complex)})
    updates, _ = opt.update(state, {"w": np.ones(2), "s": 0.5})  # a Python float leaf
    assert np.asarray(updates["s"]).dtype == np.float64


def test_global_norm_alone_still_takes_any_numbers() -> None:
    # the norm of a tree is defined for complex and integer leaves; clipping grads is not
    assert optim.global_norm({"c": np.array([3j, 4.0]), "i": np.array([0])}) == 5.0
    clip = optim.clip_by_global_norm(1.0)
    with pytest.raises(TypeError, match=r"^clip_by_global_norm\.update: grads\['c'\] has "
                                        r"dtype complex128; .*cast the grads"):
        clip.update(clip.init(None), {"c": np.array([3j, 4.0])})


@pytest.mark.parametrize("bad", BAD)
def test_apply_updates_refuses_updates_that_are_not_real_floating_point(bad: Any) -> None:
    params = _params()
    kind = np.dtype(bad)
    with pytest.raises(TypeError, match=(
            rf"^apply_updates: updates\['layer'\]\[1\] has dtype {kind}; optimizers take real "
            rf"floating-point updates .*cast the updates to the params' dtype, float32 ")):
        optim.apply_updates(params, _grads(bad))


def test_apply_updates_keeps_float32_and_takes_other_floats() -> None:
    params = _params()
    for dtype in (np.float32, np.float64, np.float16):
        updates = tree.map(lambda g, d=dtype: g.astype(d), _grads(np.float32))
        out = optim.apply_updates(params, updates)
        assert all(p.dtype == np.float32 for p in tree.leaves(out))
        np.testing.assert_array_equal(out["layer"][1], [2.0, 3.0])
    out = optim.apply_updates({"s": 1.0, "t": np.float32(1.0)}, {"s": 0.5, "t": 0.25})
    assert out["s"] == 1.5 and out["t"].dtype == np.float32 and out["t"] == 1.25


def test_complex_params_are_refused_at_init_and_by_apply_updates() -> None:
    params = {"b": np.ones(2, np.float32), "w": np.ones(2, np.complex64)}
    for opt in (optim.sgd(0.1), optim.adam(), optim.trace(0.9), optim.scale_by_adam()):
        with pytest.raises(TypeError, match=r"\.init: params\['w'\] has dtype complex64; "
                                            r"optimizers work on real floating-point"):
            opt.init(params)
    with pytest.raises(TypeError, match=r"^apply_updates: params\['w'\] has dtype complex64"):
        optim.apply_updates(params, {"b": np.ones(2), "w": np.ones(2)})
    with pytest.raises(TypeError, match=r"^apply_updates: params\['n'\] has dtype int64"):
        optim.apply_updates({"n": np.ones(2, np.int64)}, {"n": np.ones(2, np.int64)})


# ---------------------------------------------------------------------------- optax's names

# optax 0.2.8's parameters, in order (inspect.signature), for each transform of the same
# name; funcdl may stop early or add its own after the shared ones (torch's options).
OPTAX = {
    "identity": [],
    "scale": ["step_size"],
    "scale_by_schedule": ["step_size_fn"],
    "scale_by_learning_rate": ["learning_rate", "flip_sign"],
    "add_decayed_weights": ["weight_decay", "mask"],
    "clip_by_global_norm": ["max_norm"],
    "clip": ["max_delta"],
    "set_to_zero": [],
    "global_norm": ["updates"],
    "trace": ["decay", "nesterov", "accumulator_dtype"],
    "scale_by_adam": ["b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov"],
    "scale_by_rms": ["decay", "eps", "initial_scale", "eps_in_sqrt", "bias_correction"],
    "apply_updates": ["params", "updates"],
}
FUNCDL_ONLY = {"clip_by_global_norm": ["eps"], "scale_by_rms": ["centered"]}


@pytest.mark.parametrize("name", OPTAX)
def test_transforms_take_optax_keyword_names(name: str) -> None:
    got = list(inspect.signature(getattr(optim, name)).parameters)
    own = FUNCDL_ONLY.get(name, [])
    shared = [p for p in got if p not in own]
    assert shared == [p for p in OPTAX[name] if p in shared], (name, got)
    assert all(p in OPTAX[name] or p in own for p in got), (name, got)


def test_renamed_keywords_work_and_the_old_ones_are_gone() -> None:
    g = {"w": np.array([1.0, -2.0], np.float32)}
    for opt, want in [(optim.scale(step_size=3.0), [3.0, -6.0]),
                      (optim.scale_by_schedule(step_size_fn=lambda c: 2.0), [2.0, -4.0]),
                      (optim.scale_by_learning_rate(learning_rate=0.5), [-0.5, 1.0])]:
        u, _ = opt.update(opt.init(g), g)
        np.testing.assert_array_equal(u["w"], want)
        assert u["w"].dtype == np.float32
    a = optim.scale_by_rms(decay=0.5, eps=0.0)
    u, state = a.update(a.init(g), g)
    np.testing.assert_allclose(u["w"], [2**0.5, -(2**0.5)], rtol=1e-6)  # g / sqrt(0.5·g²)
    np.testing.assert_allclose(state.nu["w"], [0.5, 2.0])
    assert optim.global_norm(updates={"w": np.array([3.0, 4.0])}) == 5.0
    for make, old in [(optim.scale, "step"), (optim.scale_by_schedule, "schedule"),
                      (optim.scale_by_rms, "alpha"), (optim.scale_by_learning_rate, "lr")]:
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{old}'"):
            make(**{old: 0.5})
    with pytest.raises(ValueError, match=r"^scale_by_rms: decay must be a finite number "
                                         r"in \[0, 1\]"):
        optim.scale_by_rms(decay=1.5)
    with pytest.raises(ValueError, match=r"^scale_by_learning_rate: learning_rate must be"):
        optim.scale_by_learning_rate(-1.0)


def test_rmsprop_keeps_torchs_alpha_on_top_of_scale_by_rms_decay() -> None:
    p = {"w": np.array([1.0, 2.0])}
    g = {"w": np.array([0.3, -0.4])}
    by_alias = optim.rmsprop(0.1, alpha=0.9)
    by_hand = optim.chain(optim.scale_by_rms(decay=0.9, eps_in_sqrt=False),
                          optim.scale_by_learning_rate(0.1))
    u1, _ = by_alias.update(by_alias.init(p), g, p)
    u2, _ = by_hand.update(by_hand.init(p), g, p)
    np.testing.assert_array_equal(u1["w"], u2["w"])


# ---------------------------------------------------------------------------- decay schedule

def test_add_decayed_weights_reads_a_schedule_at_every_update_as_optax() -> None:
    wd = optim.add_decayed_weights(lambda count: 0.1 * (count + 1))
    params = {"w": np.array([1.0, -2.0], np.float32)}
    grads = {"w": np.array([0.5, 0.5], np.float32)}
    state = wd.init(params)
    assert isinstance(state, optim.ScaleByScheduleState) and state.count == 0
    for t in range(3):
        updates, state = wd.update(state, grads, params)
        want = grads["w"] + np.float32(0.1 * (t + 1)) * params["w"]
        np.testing.assert_array_equal(updates["w"], want)
        assert updates["w"].dtype == np.float32
        assert type(state.count) is np.int64 and state.count == t + 1
    # in a chain, as adamw's decoupled decay on a schedule
    opt = optim.chain(optim.scale_by_adam(), optim.add_decayed_weights(
        optim.linear_schedule(0.0, 1.0, 2)), optim.scale_by_learning_rate(1.0))
    s = opt.init(params)
    u0, s = opt.update(s, grads, params)
    u1, s = opt.update(s, grads, params)
    np.testing.assert_allclose(u1["w"] - u0["w"], -0.5 * params["w"], rtol=1e-6)


def test_add_decayed_weights_schedule_is_checked() -> None:
    params = {"w": np.ones(2)}
    with pytest.raises(TypeError, match=r"^add_decayed_weights: weight_decay must take one "
                                        r"argument"):
        optim.add_decayed_weights(lambda: 0.1)  # type: ignore[arg-type, misc]
    bad = optim.add_decayed_weights(lambda count: "0.1")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match=r"^add_decayed_weights\.update: the schedule must "
                                        r"return a number at count 0, got '0.1'"):
        bad.update(bad.init(params), params, params)
    wd = optim.add_decayed_weights(optim.constant_schedule(0.1))
    with pytest.raises(ValueError, match=r"^add_decayed_weights\.update: needs the params"):
        wd.update(wd.init(params), params)
    with pytest.raises(TypeError, match=r"^add_decayed_weights\.update: got the state of "
                                        r"another optimizer or transform \(EmptyState\) "
                                        r"where add_decayed_weights's ScaleByScheduleState"):
        wd.update(optim.EmptyState(), params, params)
    with pytest.raises(TypeError, match=r"^add_decayed_weights\.update: the first argument"):
        wd.update(params, params, params)  # swapped: the message says the order
    with pytest.raises(TypeError, match=r"^add_decayed_weights: weight_decay must be a real "
                                        r"number"):
        optim.add_decayed_weights("0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{}, {"decay": 0.8, "eps": 1e-3, "initial_scale": 0.5},
                                {"eps": 1e-3, "eps_in_sqrt": False},
                                {"decay": 0.8, "eps": 1e-3, "centered": True},
                                {"decay": 0.8, "eps": 1e-3, "bias_correction": True},
                                {"decay": 0.7, "eps": 1e-3, "eps_in_sqrt": False,
                                 "initial_scale": 0.5, "bias_correction": True},
                                {"decay": 0.8, "eps": 1e-3, "centered": True,
                                 "bias_correction": True}])
def test_scale_by_rms_follows_optax_formula(kw: dict[str, Any]) -> None:
    # optax's: eps inside the root by default, decay 0.9, nu from initial_scale; it was
    # torch's (eps outside, 0.99) under optax's name
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(3, 2))}
    opt = optim.scale_by_rms(**kw)
    state = opt.init(p)
    decay, eps = kw.get("decay", 0.9), kw.get("eps", 1e-8)
    v, m = np.full((3, 2), kw.get("initial_scale", 0.0)), np.zeros((3, 2))
    for t in range(1, 4):
        g = rng.normal(size=(3, 2))
        u, state = opt.update(state, {"w": g})
        v, m = decay * v + (1 - decay) * (g * g), decay * m + (1 - decay) * g
        bc = 1 - decay**t if kw.get("bias_correction") else 1.0  # optax corrects both
        # centered: clamped at 0, as funcdl documents (optax's may go a rounding below)
        var = np.maximum(v / bc - (m / bc) ** 2, 0) if kw.get("centered") else v / bc
        want = g / (np.sqrt(var) + eps) if kw.get("eps_in_sqrt") is False \
            else g / np.sqrt(var + eps)
        np.testing.assert_allclose(u["w"], want, rtol=1e-13)


@pytest.mark.parametrize("kw", [{}, {"decay": 0.8, "eps": 1e-3, "initial_scale": 0.5},
                                {"eps": 1e-3, "eps_in_sqrt": False},
                                {"decay": 0.8, "eps": 1e-3, "bias_correction": True},
                                {"eps": 1e-3, "eps_in_sqrt": False, "bias_correction": True,
                                 "initial_scale": 0.5},
                                {"decay": 0.8, "eps": 1e-3, "centered": True},
                                {"decay": 0.8, "eps": 1e-3, "centered": True,
                                 "bias_correction": True, "eps_in_sqrt": False}])
@pytest.mark.usefixtures("jax64")
def test_scale_by_rms_against_optax(kw: dict[str, Any]) -> None:
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(1)
    p = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    ours = optim.scale_by_rms(**kw)
    kw = dict(kw)
    theirs = (optax.scale_by_stddev if kw.pop("centered", False) else optax.scale_by_rms)(**kw)
    s1, s2 = ours.init(p), theirs.init(p)
    for _ in range(20):
        g = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
        u1, s1 = ours.update(s1, g)
        u2, s2 = theirs.update(g, s2)
        for k in p:
            np.testing.assert_allclose(u1[k], np.asarray(u2[k]), rtol=1e-12)


def test_another_librarys_transform_in_a_chain_is_named_as_such() -> None:
    class Foreign:  # optax's GradientTransformation has init and update too
        def init(self, params: Any) -> Any:
            return ()

        def update(self, grads: Any, state: Any, params: Any = None) -> Any:
            return grads, state

    lib = Foreign.__module__.split(".")[0]  # this test module's name: the "library"
    with pytest.raises(TypeError, match=r"chain: argument 0 must be a funcdl "
                                        rf"GradientTransformation, got {lib}'s "
                                        r"Foreign \(funcdl.optim has its own"):
        optim.chain(Foreign(), optim.sgd(0.1))
    with pytest.raises(TypeError, match=r"argument 1 .*got function \(did you forget to call"):
        optim.chain(optim.sgd(0.1), optim.scale_by_adam)


def test_scale_by_rms_bias_correction_is_optaxs_fifth_argument_and_adams_denominator(
) -> None:
    # optax's scale_by_rms(0.9, 1e-8, 0.0, True, True) asks for bias correction, and so does
    # funcdl's (centered is keyword-only); with eps outside the root it is Adam's denominator,
    # as optax's docstring says: scale_by_adam(b1=0, b2=decay)
    rng = np.random.default_rng(2)
    p = {"w": rng.normal(size=(4, 3)).astype(np.float32)}
    rms = optim.scale_by_rms(0.95, 1e-8, 0.0, False, True)
    adam = optim.scale_by_adam(b1=0.0, b2=0.95, eps=1e-8)
    s1, s2 = rms.init(p), adam.init(p)
    assert isinstance(s1, optim.ScaleByRmsWithCountState) and s1.count == 0 and s1.mu is None
    for t in range(1, 6):
        g = {"w": rng.normal(size=(4, 3)).astype(np.float32)}
        (u1, s1), (u2, s2) = rms.update(s1, g), adam.update(s2, g)
        np.testing.assert_allclose(u1["w"], u2["w"], rtol=2e-6)
        assert u1["w"].dtype == s1.nu["w"].dtype == np.float32 and s1.count == t
    # at the first step the corrected v is g² exactly: the step is sign(g)·|g|/(|g| + eps)
    u, _ = rms.update(rms.init(p), p)
    np.testing.assert_allclose(u["w"], p["w"] / (np.abs(p["w"]) + 1e-8), rtol=1e-6)
    with pytest.raises(ValueError, match=r"^scale_by_rms: bias_correction divides by "
                                         r"1 - decay\^t, 0 for decay=1"):
        optim.scale_by_rms(1.0, bias_correction=True)
    with pytest.raises(TypeError, match=r"scale_by_rms\.update: got the state of another "):
        rms.update(optim.scale_by_rms().init(p), p)  # the uncorrected state has no count
