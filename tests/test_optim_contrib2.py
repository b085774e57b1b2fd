"""MADGRAD, ACProp, MoMo (``_madgrad``, ``_adam_variants`` / ``_adam_aliases``, ``_polyak``) and
DP-SGD (``_dpsgd``) without a peer library: steps computed by hand, float32 kept, value= and key
handling, bad arguments named, and the DP noise's law and reproducibility. The optax twins are
in test_optim_contrib2_peers.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from funcdl import optim, random
from funcdl.optim._adam_aliases import acprop
from funcdl.optim._adam_variants import scale_by_acprop
from funcdl.optim._dpsgd import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    dpsgd,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from funcdl.optim._madgrad import MadgradState, madgrad, scale_by_madgrad
from funcdl.optim._polyak import MomoAdamState, MomoState, momo, momo_adam

LR = "learning_rate"  # optax.contrib's name, which these keep


def _a(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


# ---------------------------------------------------------------------------- by hand

def test_madgrad_two_steps_by_hand() -> None:
    # λ = lr·sqrt(t+1) (eps 0); G += λg²; s += λg; z = x0 - s/cbrt(G); u = (1-m)z + m·p - p
    opt = scale_by_madgrad(0.1, momentum=0.25, eps=0.0)
    p = {"p": _a(1.0)}
    s = opt.init(p)
    u, s = opt.update(s, {"p": _a(2.0)}, p)
    np.testing.assert_allclose(u["p"], [-0.15 / np.cbrt(0.4)], rtol=1e-14)
    p1 = 1.0 - 0.15 / np.cbrt(0.4)
    u, s = opt.update(s, {"p": _a(1.0)}, {"p": _a(p1)})
    lam = 0.1 * math.sqrt(2.0)
    z = 1.0 - (0.2 + lam) / np.cbrt(0.4 + lam)
    np.testing.assert_allclose(u["p"], [0.75 * z + 0.25 * p1 - p1], rtol=1e-14)
    assert isinstance(s, MadgradState) and int(s.count) == 2
    np.testing.assert_array_equal(s.x0["p"], [1.0])  # x0 stays the params at init


def test_madgrad_weight_decay_enters_the_grads() -> None:
    # madgrad(wd) = the scale on g + wd·p: g = 1 + 0.5·2 = 2 at p = 2
    p = {"p": _a(2.0)}
    ours = madgrad(0.1, 0.5, 0.5, eps=0.0)
    u, _ = ours.update(ours.init(p), {"p": _a(1.0)}, p)
    plain = scale_by_madgrad(0.1, momentum=0.5, eps=0.0)
    v, _ = plain.update(plain.init(p), {"p": _a(2.0)}, p)
    np.testing.assert_allclose(u["p"], v["p"], rtol=1e-15)


def test_acprop_two_steps_by_hand() -> None:
    # step 1: u = -lr·g/(1 + eps); m = 0.2, s = (1-b2)·(g1 - m)² = 0.01·1.8², so step 2
    # divides by sqrt(s/(1-b2)) = 1.8: u = -0.1·3/1.8
    opt = acprop(0.1, b1=0.9, b2=0.99, eps=0.0, eps_root=0.0)
    p = {"p": _a(1.0)}
    s = opt.init(p)
    u, s = opt.update(s, {"p": _a(2.0)}, p)
    np.testing.assert_allclose(u["p"], [-0.2], rtol=1e-15)
    u, s = opt.update(s, {"p": _a(3.0)}, p)
    np.testing.assert_allclose(u["p"], [-1.0 / 6.0], rtol=1e-14)
    # m from 0: 0.2 then 0.9·0.2 + 0.1·3; the residual g - m, m the new one: 1.8, 2.52
    np.testing.assert_allclose(s.states["acprop"].mu["p"], [0.48], rtol=1e-14)
    np.testing.assert_allclose(s.states["acprop"].nu["p"],
                               [0.99 * 0.01 * 1.8**2 + 0.01 * 2.52**2], rtol=1e-14)


def test_momo_first_step_by_hand() -> None:
    # p = g = [1, 2], loss 2.5: barf = 2.5, γ = <g,p> = 5, ‖m‖² = <m,p> = 5;
    # τ = min(1, (2.5 - 0 - 5 + 5)/5) = 0.5, u = -0.5·m
    p, g = {"a": _a(1.0), "b": _a(2.0)}, {"a": _a(1.0), "b": _a(2.0)}
    opt = momo()
    u, s = opt.update(opt.init(p), g, p, value=2.5)
    np.testing.assert_allclose([u["a"][0], u["b"][0]], [-0.5, -1.0], rtol=1e-15)
    assert isinstance(s, MomoState) and float(s.barf) == 2.5 and float(s.gamma) == 5.0
    # weight decay 0.1: k = 1.1, τ = (1.1·(2.5 - 5) + 5)/5 = 0.45, p + u = (p - 0.45·m)/1.1:
    # (2 - 0.9)/1.1 = 1, u = -1 (optax 0.2.8's -(0.1/1.1)·2 - 0.45·2 = -1.082)
    opt = momo(weight_decay=0.1)
    u, _ = opt.update(opt.init(p), g, p, value=2.5)
    np.testing.assert_allclose(u["b"], [-1.0], rtol=1e-14)
    # a small lr caps the step: τ = lr
    opt = momo(0.1)
    u, _ = opt.update(opt.init(p), g, p, value=2.5)
    np.testing.assert_allclose(u["b"], [-0.2], rtol=1e-15)


def test_momo_adam_first_step_by_hand() -> None:
    # eps 0: D = |g|, c = 0.1, m = 0.1g, <m, m/D> = 0.01·Σ|g|, and γ cancels <m,p>:
    # τ = min(lr/0.1, 10·loss/Σ|g|), u = -τ·m/D = -τ·0.1·sign(g)
    p, g = {"a": _a(1.0), "b": _a(-2.0)}, {"a": _a(1.0), "b": _a(-2.0)}
    opt = momo_adam(1.0, eps=0.0)
    u, s = opt.update(opt.init(p), g, p, value=2.5)
    np.testing.assert_allclose([u["a"][0], u["b"][0]], [-2.5 / 3.0, 2.5 / 3.0], rtol=1e-14)
    assert isinstance(s, MomoAdamState)
    opt = momo_adam(0.05, eps=0.0)  # capped: τ = 0.5
    u, _ = opt.update(opt.init(p), g, p, value=2.5)
    np.testing.assert_allclose(u["a"], [-0.05], rtol=1e-14)


def test_per_example_global_norm_clip_by_hand() -> None:
    # example norms 0, 5, 5, 5 clipped to 1.25: a quarter of each nonzero row
    g = [np.array([[0.0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
    (s,), k = per_example_global_norm_clip(g, 1.25)
    np.testing.assert_allclose(s, [1.75, 1.75, 1.75], rtol=1e-15)
    assert k == 3 and type(k) is np.int64
    (s,), k = per_example_global_norm_clip(g, np.inf)
    np.testing.assert_allclose(s, [7.0, 7.0, 7.0])
    assert k == 0
    # the norm spans the leaves: [3] and [4] make one example of norm 5
    s2, k = per_example_global_norm_clip({"a": _a(3.0), "b": _a(4.0)}, 1.0)
    np.testing.assert_allclose([s2["a"], s2["b"]], [0.6, 0.8], rtol=1e-15)


def test_per_example_layer_norm_clip_by_hand() -> None:
    # two leaves, uniform: each clipped to 2/sqrt(2) on its own norm (3 and 4)
    g = {"a": np.array([[3.0, 0.0]]), "b": np.array([[0.0, 4.0]])}
    s, k = per_example_layer_norm_clip(g, 2.0)
    np.testing.assert_allclose(s["a"], [math.sqrt(2.0), 0.0], rtol=1e-15)
    np.testing.assert_allclose(s["b"], [0.0, math.sqrt(2.0)], rtol=1e-15)
    assert k == {"a": 1, "b": 1}
    # by size: leaf a holds 1 of 4 entries per example, its clip 2·sqrt(1/4) = 1
    g = {"a": np.array([[3.0]]), "b": np.array([[1.0, 0.0, 0.0]])}
    s, k = per_example_layer_norm_clip(g, 2.0, uniform=False)
    np.testing.assert_allclose(s["a"], [1.0], rtol=1e-15)
    np.testing.assert_allclose(s["b"], [1.0, 0.0, 0.0])
    assert k == {"a": 1, "b": 0}


def test_dpsgd_without_noise_is_sgd_on_the_clipped_mean() -> None:
    # examples of norm 5 and 1 clipped to 1: (0.6, 0.8) and (1, 0), mean (0.8, 0.4)
    opt = dpsgd(0.5, 1.0, 0.0, random.key(0))
    p = {"w": _a(0.0, 0.0)}
    u, s = opt.update(opt.init(p), {"w": np.array([[3.0, 4.0], [1.0, 0.0]])}, p)
    np.testing.assert_allclose(u["w"], [-0.4, -0.2], rtol=1e-15)
    assert isinstance(s.states["dp_aggregate"], DifferentiallyPrivateAggregateState)


# ---------------------------------------------------------------------------- float32

def _f32(opt: Any, kw: dict[str, Any] | None = None, per_example: bool = False) -> None:
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": np.ones(2, np.float32)}
    s = opt.init(p)
    for _ in range(3):
        g = {k: rng.normal(size=((4,) if per_example else ()) + x.shape).astype(np.float32)
             for k, x in p.items()}
        u, s = opt.update(s, g, p, **(kw or {}))
        for x in u.values():
            assert x.dtype == np.float32
        p = optim.apply_updates(p, u)
    leaves = [x for x in _leaves(s) if isinstance(x, (np.ndarray, np.floating))
              and np.asarray(x).dtype.kind == "f"]
    assert leaves and all(np.asarray(x).dtype == np.float32 for x in leaves)


def _leaves(x: Any) -> list[Any]:
    if isinstance(x, dict):
        return [y for v in x.values() for y in _leaves(v)]
    if isinstance(x, tuple):
        return [y for v in x for y in _leaves(v)]
    return [x]


@pytest.mark.parametrize("make", [lambda: madgrad(0.1, weight_decay=0.01),
                                  lambda: acprop(0.1, weight_decay=0.01)])
def test_float32_kept(make: Any) -> None:
    _f32(make())


@pytest.mark.parametrize("make", [lambda: momo(weight_decay=0.1, adapt_lower_bound=True),
                                  lambda: momo_adam(adapt_lower_bound=True)])
def test_momo_float32_kept(make: Any) -> None:
    _f32(make(), {"value": np.float32(1.5)})


def test_dpsgd_float32_kept() -> None:
    _f32(dpsgd(0.1, 1.0, 1.0, random.key(1), momentum=0.9), per_example=True)


# ---------------------------------------------------------------------------- value=

@pytest.mark.parametrize("make", [momo, momo_adam])
def test_momo_value_errors_name_it(make: Any) -> None:
    name = make.__name__
    p = {"w": _a(1.0, 2.0)}
    opt = make()
    s = opt.init(p)
    with pytest.raises(TypeError, match=f"^{name}.update: needs the loss"):
        opt.update(s, p, p)
    for bad in (np.ones(3), "1.0", True):
        with pytest.raises(TypeError, match=f"^{name}.update: value"):
            opt.update(s, p, p, value=bad)
    with pytest.raises(ValueError, match=f"^{name}.update: needs the params"):
        opt.update(s, p, value=1.0)
    u, _ = opt.update(s, p, p, value=np.array([1.0]))  # a one-entry array is a number
    assert np.all(np.isfinite(u["w"]))


def test_momo_value_flows_through_chains() -> None:
    p, g = {"w": _a(1.0, 2.0)}, {"w": _a(1.0, 2.0)}
    alone = momo()
    want, _ = alone.update(alone.init(p), g, p, value=2.5)
    for opt in (optim.chain(optim.identity(), momo()),
                optim.named_chain(("momo", momo()), ("id", optim.identity()))):
        got, _ = opt.update(opt.init(p), g, p, value=2.5)
        np.testing.assert_array_equal(got["w"], want["w"])
        with pytest.raises(TypeError, match=r"^(named_chain\.update, stage 'momo': )?momo\.update: "
                                            r"needs the loss"):
            opt.update(opt.init(p), g, p)


# ---------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("make,kw,err", [
    (madgrad, {LR: -1.0}, ValueError), (madgrad, {LR: 0.1, "momentum": 1.5}, ValueError),
    (madgrad, {LR: 0.1, "eps": -1e-6}, ValueError),
    (madgrad, {LR: 0.1, "weight_decay": "x"}, TypeError),
    (scale_by_madgrad, {LR: None}, TypeError),
    (acprop, {LR: 0.1, "b2": 1.0}, ValueError), (acprop, {LR: 0.1, "b1": -0.1}, ValueError),
    (scale_by_acprop, {"eps_root": -1.0}, ValueError),
    (momo, {"beta": 1.5}, ValueError), (momo, {"lower_bound": "0"}, TypeError),
    (momo, {"adapt_lower_bound": "yes"}, TypeError), (momo, {"weight_decay": -0.1}, ValueError),
    (momo_adam, {"b1": 1.0}, ValueError), (momo_adam, {LR: optim.constant_schedule}, TypeError),
    (dpsgd, {LR: 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "key": None}, TypeError),
    (dpsgd, {LR: 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "key": 0}, TypeError),
    (dpsgd, {LR: 0.1, "l2_norm_clip": -1.0, "noise_multiplier": 1.0, "key": random.key(0)},
     ValueError),
    (dpsgd, {LR: 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "key": random.key(0),
             "nesterov": True}, ValueError),
    (differentially_private_aggregate, {"l2_norm_clip": 1.0, "noise_multiplier": -1.0,
                                        "key": random.key(0)}, ValueError),
])
def test_bad_arguments_name_the_constructor(make: Any, kw: dict[str, Any], err: type) -> None:
    with pytest.raises(err, match=f"^{make.__name__}: "):
        make(**kw)


def test_per_example_functions_refuse_unbatched_grads() -> None:
    for fn in (per_example_global_norm_clip, per_example_layer_norm_clip):
        with pytest.raises(ValueError, match=f"^{fn.__name__}: expects per-example"):
            fn({"a": np.ones((3, 2)), "b": np.ones((2, 2))}, 1.0)
        with pytest.raises(ValueError, match=f"^{fn.__name__}: expects per-example"):
            fn({"a": np.ones(3), "b": np.asarray(1.0)}, 1.0)
        with pytest.raises(ValueError, match=f"^{fn.__name__}: "):
            fn({"a": np.ones((3, 2))}, -1.0)
        with pytest.raises(TypeError, match=f"^{fn.__name__}: grads\\['a'\\]"):
            fn({"a": np.ones((3, 2), np.int64)}, 1.0)
        with pytest.raises(ValueError, match=f"^{fn.__name__}: grads has no leaves"):
            fn({}, 1.0)


def test_aggregate_update_errors_name_it() -> None:
    agg = differentially_private_aggregate(1.0, 1.0, random.key(0))
    p = {"w": np.zeros(3)}
    s = agg.init(p)
    where = "^differentially_private_aggregate.update: "
    with pytest.raises(ValueError, match=where + "grads\\['w'\\] has shape \\(2, 4\\)"):
        agg.update(s, {"w": np.ones((2, 4))}, p)  # per-example rows of the wrong size
    with pytest.raises(ValueError, match=where + "the per-example grads hold 0 examples"):
        agg.update(s, {"w": np.ones((0, 3))}, p)
    with pytest.raises(TypeError, match=where[:-2] + " \\(state.rng_key\\)"):
        agg.update(s._replace(rng_key=None), {"w": np.ones((2, 3))}, p)


# ---------------------------------------------------------------------------- DP noise

def test_aggregate_noise_has_the_std_c_times_multiplier_over_b() -> None:
    n, size, clip, mult = 5, 50_000, 2.0, 1.5
    agg = differentially_private_aggregate(clip, mult, random.key(11))
    p = {"a": np.zeros(size), "b": np.zeros(size, np.float32)}
    # zero grads: the update is the noise alone, std C·mult / B
    u, _ = agg.update(agg.init(p), {k: np.zeros((n, size), x.dtype) for k, x in p.items()}, p)
    want = clip * mult / n
    for x in u.values():
        assert abs(float(np.std(x)) / want - 1.0) < 0.02
        assert abs(float(np.mean(x))) < 5.0 * want / math.sqrt(size)
    assert abs(np.corrcoef(u["a"], u["b"])[0, 1]) < 0.03  # a key per leaf


def test_aggregate_noise_is_reproducible_and_new_each_step() -> None:
    p = {"w": np.zeros(64)}
    g = {"w": np.ones((3, 64))}

    def two_steps(seed: int) -> tuple[Any, Any]:
        agg = differentially_private_aggregate(1.0, 1.0, random.key(seed))
        s = agg.init(p)
        u1, s = agg.update(s, g, p)
        u2, s = agg.update(s, g, p)
        assert int(s.count) == 2
        return u1["w"], u2["w"]

    a1, a2 = two_steps(4)
    b1, b2 = two_steps(4)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(a1, a2)  # the count is folded in
    c1, _ = two_steps(5)
    assert not np.allclose(a1, c1)


def test_float16_params_whose_eps_rounds_to_0_are_refused_at_init() -> None:
    # eps (1e-8) and acprop's eps and eps_root (1e-16) are 0 in float16: a zero gradient
    # entry gave 0/0, NaN in every entry of momo_adam's step (its dot products), silently;
    # funcdl's adam refuses such params at init, and so do these now
    p16 = {"w": np.array([0.5, -1.0, 2.0], np.float16)}
    for opt in (momo_adam(), scale_by_acprop(), acprop(1e-3)):
        with pytest.raises(ValueError, match=r"is 0 in float16 \(params\[.w.\]\), so a zero "
                                             r"gradient entry would give 0/0"):
            opt.init(p16)
    momo().init(p16)  # no eps: accepted
    p32 = {"w": p16["w"].astype(np.float32)}
    for opt in (momo_adam(), scale_by_acprop(), acprop(1e-3), madgrad(1e-2)):
        opt.init(p32)


def test_a_stray_keyword_names_what_takes_value() -> None:
    g = {"w": np.ones(2)}
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'loss'; its transforms "
                                        r"take value= \(value= is the loss\)$"):
        optim.chain(optim.clip_by_global_norm(1.0), momo()).update(
            optim.chain(optim.clip_by_global_norm(1.0), momo()).init(g), g, g, loss=1.0)
    with pytest.raises(TypeError, match=r"'value'; none of its transforms takes a keyword "
                                        r"argument \(reduce_on_plateau, momo, .* take value="):
        optim.chain(optim.sgd(0.1)).update(optim.chain(optim.sgd(0.1)).init(g), g, g, value=1.0)
