"""optax's flatten, scale_by_rss, scale_by_stddev, scale_by_param_block_norm,
normalize_by_update_norm, scale_by_sm3 / sm3, the optimistic-gradient transform and aliases,
fromage and the Polyak step size (funcdl.optim's ``_wrappers``, ``_rms_variants``,
``_layerwise``, ``_factored``, ``_optimistic``, ``_polyak``): hand-computed steps, float32 kept,
state records, keyword forwarding, and errors naming the constructor or transform. The float64
twins of optax are in test_optim_optax_extra3_peers.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim, tree
from funcdl.optim._factored import ScaleBySM3State, scale_by_sm3, sm3
from funcdl.optim._layerwise import fromage, normalize_by_update_norm, scale_by_param_block_norm
from funcdl.optim._optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from funcdl.optim._polyak import polyak_sgd, scale_by_polyak
from funcdl.optim._rms_variants import (
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    scale_by_rss,
    scale_by_stddev,
)
from funcdl.optim._wrappers import flatten

A = np.array


def _run(opt: Any, p: Any, grads: list[Any], **kw: Any) -> tuple[list[Any], Any]:
    """The updates of ``opt`` for each of ``grads`` in turn, at fixed params, and the state."""
    s = opt.init(p)
    out = []
    for g in grads:
        u, s = opt.update(s, g, p, **kw)
        out.append(u)
    return out, s


# ---------------------------------------------------------------------------- hand-computed

def test_flatten_runs_inner_on_the_whole_vector():
    # one block: ‖ravel(p)‖ = ‖(3, 4)‖ = 5 scales both leaves (per leaf it would be 3 and 4)
    p, g = {"a": A([3.0]), "b": A([4.0])}, {"a": A([1.0]), "b": A([2.0])}
    (u,), s = _run(flatten(scale_by_param_block_norm()), p, [g])
    np.testing.assert_allclose(u["a"], [5.0], rtol=1e-15)
    np.testing.assert_allclose(u["b"], [10.0], rtol=1e-15)
    assert s == optim.EmptyState()
    adam = flatten(optim.scale_by_adam())
    state = adam.init({"w": np.zeros((3, 4)), "s": np.array(0.0)})
    assert isinstance(state, optim.ScaleByAdamState) and state.mu.shape == (13,)


def test_flatten_gives_back_the_tree_s_structure_shapes_and_dtypes():
    p = {"w": np.ones((2, 3), np.float32), "s": np.array(2.0, np.float32), "v": [A([1.0, 2.0])]}
    g = tree.map(lambda x: np.full_like(x, 0.5), p)
    u, _ = flatten(optim.sgd(0.1)).update(flatten(optim.sgd(0.1)).init(p), g, p)
    assert tree.structure(u) == tree.structure(p)
    for x, y in zip(tree.leaves(u), tree.leaves(p), strict=True):
        assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_allclose(x, -0.05)


def test_flatten_forwards_keywords_and_refuses_unknown_ones():
    p, g = {"a": A([3.0]), "b": A([4.0])}, {"a": A([3.0]), "b": A([4.0])}
    opt = optim.chain(flatten(scale_by_polyak()), optim.scale(1.0))
    u, _ = opt.update(opt.init(p), g, p, value=10.0)  # step 10 / 25
    np.testing.assert_allclose(u["a"], [1.2], rtol=1e-15)
    with pytest.raises(TypeError, match=r"flatten\.update: got an unexpected keyword"):
        flatten(scale_by_polyak()).update(optim.EmptyState(), g, p, loss=1.0)
    with pytest.raises(TypeError, match=r"scale_by_polyak\.update: needs the loss"):
        flatten(scale_by_polyak()).update(optim.EmptyState(), g, p)


def test_scale_by_rss_first_steps():
    (u1, u2), s = _run(scale_by_rss(), A([2.0]), [A([2.0]), A([-1.0])])
    np.testing.assert_allclose(u1, [2.0 / math.sqrt(4.1 + 1e-7)], rtol=1e-14)
    np.testing.assert_allclose(u2, [-1.0 / math.sqrt(5.1 + 1e-7)], rtol=1e-14)
    assert isinstance(s, ScaleByRssState)
    np.testing.assert_allclose(s.sum_of_squares, [5.1], rtol=1e-15)
    # a sum still 0 gives a step of 0, not 0/0
    (u,), _ = _run(scale_by_rss(0.0, 0.0), A([1.0, 1.0]), [A([0.0, 3.0])])
    np.testing.assert_array_equal(u, [0.0, 1.0])


def test_scale_by_stddev_divides_by_the_centered_root():
    # m = 0.2, v = 0.4, v - m² = 0.36: u = 2 / 0.6
    (u,), s = _run(scale_by_stddev(eps=0.0), A([1.0]), [A([2.0])])
    np.testing.assert_allclose(u, [2.0 / 0.6], rtol=1e-14)
    assert isinstance(s, ScaleByRStdDevState)
    np.testing.assert_allclose([s.mu[0], s.nu[0]], [0.2, 0.4], rtol=1e-15)
    # bias-corrected: m̂ = g, v̂ = g², a variance of 0; eps outside the root: u = g / eps
    (u,), s = _run(scale_by_stddev(eps=0.5, eps_in_sqrt=False, bias_correction=True),
                   A([1.0]), [A([2.0])])
    np.testing.assert_allclose(u, [4.0], rtol=1e-12)
    assert isinstance(s, ScaleByRStdDevWithCountState) and s.count == 1


def test_scale_by_param_block_norm_scales_by_each_leaf_s_norm():
    p, g = {"a": A([3.0, 4.0]), "b": A(0.5)}, {"a": A([1.0, -1.0]), "b": A(2.0)}
    (u,), _ = _run(scale_by_param_block_norm(), p, [g])
    np.testing.assert_allclose(u["a"], [5.0, -5.0], rtol=1e-15)
    np.testing.assert_allclose(u["b"], 1.0, rtol=1e-15)
    (u,), _ = _run(scale_by_param_block_norm(2.0), p, [g])  # ‖b‖ = 0.5 raised to 2
    np.testing.assert_allclose(u["b"], 4.0, rtol=1e-15)
    with pytest.raises(ValueError, match=r"scale_by_param_block_norm\.update: needs the params"):
        scale_by_param_block_norm().update(optim.EmptyState(), g)


def test_normalize_by_update_norm_uses_the_global_norm():
    g = {"a": A([3.0]), "b": A(4.0)}
    u, _ = normalize_by_update_norm(-1.0, 0.0).update(optim.EmptyState(), g)
    np.testing.assert_allclose(u["a"], [-0.6], rtol=1e-15)
    np.testing.assert_allclose(u["b"], -0.8, rtol=1e-15)
    u, _ = normalize_by_update_norm(2.0).update(optim.EmptyState(), g)
    np.testing.assert_allclose(u["a"], [3.0 * 2.0 / (5.0 + 1e-6)], rtol=1e-15)
    u, _ = normalize_by_update_norm(0.0).update(optim.EmptyState(), g)
    np.testing.assert_array_equal(u["a"], [0.0])


def test_scale_by_sm3_keeps_one_accumulator_per_axis():
    # b1 = 0: u = g / sqrt(a). Step 1: a = g², u = sign(g); rows' maxima (4, 16), columns'
    # (9, 16). Step 2, g = 1: ν = min(row_i, col_j) = [[4, 4], [9, 16]], a = 1 + ν.
    g1 = A([[1.0, -2.0], [3.0, 4.0]])
    (u1, u2), s = _run(scale_by_sm3(b1=0.0, eps=0.0), np.zeros((2, 2)), [g1, np.ones((2, 2))])
    np.testing.assert_allclose(u1, np.sign(g1), rtol=1e-15)
    np.testing.assert_allclose(u2, 1.0 / np.sqrt([[5.0, 5.0], [10.0, 17.0]]), rtol=1e-15)
    assert isinstance(s, ScaleBySM3State) and len(s.mu) == 2
    np.testing.assert_allclose(s.mu[0], [5.0, 17.0])
    np.testing.assert_allclose(s.mu[1], [10.0, 17.0])
    # momentum: m = (1 - b1)·r
    (u,), _ = _run(scale_by_sm3(), A([1.0, 1.0]), [A([2.0, -3.0])])
    np.testing.assert_allclose(u, [0.1, -0.1], rtol=1e-6)


def test_scale_by_sm3_takes_a_0d_leaf_as_a_1d_one():
    # optax 0.2.8 fails on a 0-d leaf; here it keeps one accumulator: a = 4, then 4 + 1
    (u1, u2), s = _run(scale_by_sm3(b1=0.0, eps=0.0), A(1.0), [A(2.0), A(1.0)])
    np.testing.assert_allclose([u1, u2], [1.0, 1.0 / math.sqrt(5.0)], rtol=1e-15)
    assert np.shape(u2) == () and len(s.mu) == 1


def test_scale_by_optimistic_gradient_steps():
    # u = alpha·g at first; then (alpha + beta)·g - beta·g_prev = 2.5·3 - 2·1
    (u1, u2), s = _run(scale_by_optimistic_gradient(0.5, 2.0), A([0.0]), [A([1.0]), A([3.0])])
    np.testing.assert_allclose([u1[0], u2[0]], [0.5, 5.5], rtol=1e-15)
    assert isinstance(s, ScaleByOptimisticGradientState)
    assert s.is_initial_step == np.False_ and s.previous_gradient[0] == 3.0


def test_scale_by_polyak_step_size():
    g = {"a": A([3.0]), "b": A(4.0)}  # ‖g‖² = 25
    cases = [({}, 10.0, 0.4), ({"f_min": 5.0}, 10.0, 0.2), ({"max_learning_rate": 0.1}, 20.0,
                                                            0.1),
             ({"f_min": 5.0}, 0.0, -0.2), ({"f_min": 5.0, "variant": "sps+"}, 0.0, 0.0),
             ({"eps": 15.0}, 10.0, 0.25)]
    for kw, value, step in cases:
        u, _ = scale_by_polyak(**kw).update(optim.EmptyState(), g, None, value=value)
        np.testing.assert_allclose([u["a"][0], u["b"]], [3.0 * step, 4.0 * step], rtol=1e-14,
                                   err_msg=str(kw))
    u, _ = scale_by_polyak().update(optim.EmptyState(), tree.zeros_like(g), value=1.0)
    np.testing.assert_array_equal(u["a"], [0.0])  # ‖g‖² + eps <= float64's eps: step 0


def test_polyak_sgd_measures_the_scaled_step():
    # d = -0.5·g = (-1.5, -2), ‖d‖² = 6.25: step min(10 / 6.25, max_learning_rate)
    for top, step in ((1.0, 1.0), (2.0, 1.6)):
        (u,), s = _run(polyak_sgd(top, 0.5), A([0.0, 0.0]), [A([3.0, 4.0])], value=10.0)
        np.testing.assert_allclose(u, [-1.5 * step, -2.0 * step], rtol=1e-14)
    assert set(s.states) == {"lr", "polyak"}


def test_fromage_first_step():
    # c = 1/sqrt(1 + 0.75²) = 0.8; trust ratio ‖p‖/‖g‖ = 5/2: p ← 0.8·(p - 0.75·(0, 5))
    p = A([3.0, 4.0])
    (u,), s = _run(fromage(0.75), p, [A([0.0, 2.0])])
    np.testing.assert_allclose(optim.apply_updates(p, u), [2.4, 0.2], rtol=1e-14)
    assert list(s.states) == ["trust_ratio", "lr", "weight_decay"]
    (v,), _ = _run(fromage(lambda c: 0.75), p, [A([0.0, 2.0])])
    np.testing.assert_allclose(v, u, rtol=1e-15)


def test_sm3_and_optimistic_aliases_first_steps():
    (u,), _ = _run(sm3(0.5, momentum=0.0), A([1.0, 1.0]), [A([2.0, -3.0])])
    np.testing.assert_allclose(u, [-0.5, 0.5], rtol=1e-6)
    (u1, u2), _ = _run(optimistic_gradient_descent(0.1), A([0.0]), [A([1.0]), A([3.0])])
    np.testing.assert_allclose([u1[0], u2[0]], [-0.1, -0.1 * (2 * 3.0 - 1.0)], rtol=1e-14)
    # Adam with b1 = 0, eps = 0 at its first step: r = sign(g); u = -lr·r there
    (u,), _ = _run(optimistic_adam(0.1, 0.3, b1=0.0, eps=0.0, nesterov=False), A([0.0]),
                   [A([-4.0])])
    np.testing.assert_allclose(u, [0.1], rtol=1e-14)
    (u,), s = _run(optimistic_adam_v2(0.1, alpha=0.5, b1=0.0, eps=0.0, nesterov=False),
                   A([0.0]), [A([-4.0])])
    np.testing.assert_allclose(u, [0.05], rtol=1e-14)
    assert list(s.states) == ["adam", "optimistic", "lr"]


# ---------------------------------------------------------------------------- float32

F32_OPTS: dict[str, Callable[[], Any]] = {
    "flatten": lambda: flatten(optim.scale_by_adam()), "scale_by_rss": scale_by_rss,
    "scale_by_stddev": lambda: scale_by_stddev(bias_correction=True),
    "scale_by_param_block_norm": scale_by_param_block_norm,
    "normalize_by_update_norm": normalize_by_update_norm, "scale_by_sm3": scale_by_sm3,
    "sm3": lambda: sm3(0.1), "scale_by_optimistic_gradient": scale_by_optimistic_gradient,
    "optimistic_gradient_descent": lambda: optimistic_gradient_descent(0.1),
    "optimistic_adam": lambda: optimistic_adam(0.1),
    "optimistic_adam_v2": lambda: optimistic_adam_v2(0.1), "fromage": lambda: fromage(0.1),
    "scale_by_polyak": scale_by_polyak, "polyak_sgd": polyak_sgd,
}


@pytest.mark.parametrize("oid", list(F32_OPTS))
def test_float32_stays_float32(oid: str) -> None:
    p = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
         "b": np.array([0.5, -0.5, 1.0, 2.0], np.float32), "s": np.array(0.25, np.float32)}
    opt = F32_OPTS[oid]()
    kw = {"value": np.float32(3.0)} if "polyak" in oid else {}
    s = opt.init(p)
    for k in range(3):
        g = tree.map(lambda x, k=k: (x * (k + 1) + 0.1).astype(np.float32), p)
        u, s = opt.update(s, g, p, **kw)
        for x in tree.leaves(u):
            assert np.asarray(x).dtype == np.float32, oid
        p = optim.apply_updates(p, u)
    for x in tree.leaves(s):
        kind = np.asarray(x).dtype
        assert kind == np.float32 or kind.kind in "ib", (oid, kind)
    assert all(np.isfinite(x).all() for x in tree.leaves(p))


# ---------------------------------------------------------------------------- bad input

BAD_ARGS = [
    (lambda: fromage(-0.1), ValueError, "fromage"),
    (lambda: fromage(0.1, min_norm=-1.0), ValueError, "fromage"),
    (lambda: sm3(-0.1), ValueError, "sm3"), (lambda: sm3(0.1, 1.5), ValueError, "sm3"),
    (lambda: optimistic_gradient_descent(-0.1), ValueError, "optimistic_gradient_descent"),
    (lambda: optimistic_gradient_descent(0.1, beta=-1.0), ValueError,
     "optimistic_gradient_descent"),
    (lambda: optimistic_adam(-0.1), ValueError, "optimistic_adam"),
    (lambda: optimistic_adam(0.1, eps=-1e-8), ValueError, "optimistic_adam"),
    (lambda: optimistic_adam(lambda c: 0.1), TypeError, "optimistic_adam: lr must be a float"),
    (lambda: optimistic_adam(0.1, nesterov="yes"), TypeError, "optimistic_adam"),
    (lambda: optimistic_adam_v2(-0.1), ValueError, "optimistic_adam_v2"),
    (lambda: optimistic_adam_v2(0.1, b2=1.0), ValueError, "optimistic_adam_v2"),
    (lambda: polyak_sgd(-1.0), ValueError, "polyak_sgd"),
    (lambda: polyak_sgd(scaling=-1.0), ValueError, "polyak_sgd"),
    (lambda: polyak_sgd(eps=-1.0), ValueError, "polyak_sgd"),
    (lambda: polyak_sgd(variant="sps-"), ValueError, "polyak_sgd: variant must be"),
    (lambda: polyak_sgd(variant=None), TypeError, "polyak_sgd: variant must be"),
    (lambda: scale_by_polyak(variant="SPS"), ValueError, "scale_by_polyak: variant"),
    (lambda: scale_by_polyak(f_min=math.nan), ValueError, "scale_by_polyak"),
    (lambda: scale_by_rss(eps=-1e-7), ValueError, "scale_by_rss"),
    (lambda: scale_by_rss(-0.1), ValueError, "scale_by_rss"),
    (lambda: scale_by_stddev(eps=-1.0), ValueError, "scale_by_stddev"),
    (lambda: scale_by_stddev(1.0, bias_correction=True), ValueError, "scale_by_stddev"),
    (lambda: scale_by_stddev(eps_in_sqrt=None), TypeError, "scale_by_stddev"),
    (lambda: scale_by_param_block_norm(-1.0), ValueError, "scale_by_param_block_norm"),
    (lambda: normalize_by_update_norm(eps=-1.0), ValueError, "normalize_by_update_norm"),
    (lambda: normalize_by_update_norm(math.inf), ValueError, "normalize_by_update_norm"),
    (lambda: scale_by_sm3(eps=-1.0), ValueError, "scale_by_sm3"),
    (lambda: scale_by_sm3(b2=2.0), ValueError, "scale_by_sm3"),
    (lambda: scale_by_optimistic_gradient(alpha=-1.0), ValueError,
     "scale_by_optimistic_gradient"),
    (lambda: flatten(3), TypeError, "flatten: inner must be a funcdl GradientTransformation"),
    (lambda: flatten(optim.scale_by_adam), TypeError, "flatten: inner"),
]


@pytest.mark.parametrize(("make", "kind", "match"), BAD_ARGS)
def test_bad_arguments_name_the_constructor(make: Any, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        make()


@pytest.mark.parametrize("value", [None, A([1.0, 2.0]), "1.0", True, [1.0]])
@pytest.mark.parametrize("make", [scale_by_polyak, polyak_sgd,
                                  lambda: flatten(scale_by_polyak())])
def test_polyak_refuses_a_missing_or_non_scalar_value(make: Any, value: Any) -> None:
    opt, p = make(), {"a": A([1.0, 2.0])}
    kw = {} if value is None else {"value": value}
    with pytest.raises(TypeError, match=r"scale_by_polyak\.update: (needs the loss|value)"):
        opt.update(opt.init(p), p, p, **kw)


def test_polyak_takes_a_one_entry_value():
    u, _ = scale_by_polyak().update(optim.EmptyState(), A([3.0, 4.0]), value=A([10.0]))
    np.testing.assert_allclose(u, [1.2, 1.6], rtol=1e-15)


def test_update_errors_name_the_transform():
    p = {"w": np.ones((2, 3)), "s": A(1.0)}
    opt = scale_by_sm3()
    s = opt.init(p)
    with pytest.raises(TypeError, match=r"scale_by_sm3\.update: the first argument"):
        opt.update(p, s)
    bad = s._replace(mu={"w": [np.zeros(2)], "s": s.mu["s"]})
    with pytest.raises(ValueError, match=r"scale_by_sm3\.update"):
        opt.update(bad, p, p)
    with pytest.raises(TypeError, match=r"scale_by_sm3.update: grads\['s'\] has dtype int"):
        opt.update(s, {"w": np.ones((2, 3)), "s": A(1)}, p)
    og = scale_by_optimistic_gradient()
    with pytest.raises(TypeError, match=r"scale_by_optimistic_gradient\.update: the state's "
                                        r"is_initial_step"):
        og.update(og.init(p)._replace(is_initial_step="yes"), p, p)
    with pytest.raises(TypeError, match=r"flatten\.update: grads"):
        fl = flatten(optim.scale_by_adam())
        fl.update(fl.init(p), {"w": np.ones((2, 3)), "s": A(1)}, p)
    with pytest.raises(ValueError, match=r"flatten\.update"):
        fl.update(fl.init(p), {"w": np.ones((3, 2)), "s": A(1.0)}, p)
    with pytest.raises(TypeError, match=r"scale_by_rss\.init: params"):
        scale_by_rss().init({"a": A([1, 2])})
    with pytest.raises(TypeError, match=r"fromage\.init: params"):
        fromage(0.1).init({"a": A([1, 2])})


def test_nan_and_inf_go_through_silently():
    g = {"a": A([np.inf, 1.0]), "b": A(np.nan)}
    p = {"a": A([1.0, 1.0]), "b": A(1.0)}
    for opt in F32_OPTS.values():
        o = opt()
        kw = {"value": 1.0} if "polyak" in str(o.update.__qualname__) else {}
        o.update(o.init(p), g, p, **kw)  # -W error: no NumPy warning may escape


@pytest.mark.parametrize("oid", ["scale_by_rss", "scale_by_stddev", "scale_by_sm3",
                                 "scale_by_optimistic_gradient"])
def test_float16_grads_step_in_the_params_dtype(oid: str) -> None:
    # v - m² cancels in scale_by_stddev: a float16 (1-d)·g would leave rounding noise there
    # that eps magnifies 10⁴-fold. Grads float16 holds exactly give float32's steps.
    p = {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)}
    g32 = {"w": np.full((3, 2), 0.25, np.float32)}
    g16 = tree.map(lambda x: x.astype(np.float16), g32)
    make = F32_OPTS[oid]
    (_, want), _ = _run(make(), p, [g32, g32])
    (_, got), _ = _run(make(), p, [g16, g16])
    assert got["w"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], want["w"])


def test_scale_by_sm3_takes_an_empty_leaf():
    p = {"e": np.zeros((0, 3)), "w": np.ones((2, 2))}
    (u,), s = _run(scale_by_sm3(), p, [tree.map(np.ones_like, p)])
    assert u["e"].shape == (0, 3) and [m.shape for m in s.mu["e"]] == [(0,), (3,)]
    np.testing.assert_array_equal(s.mu["e"][1], [0.0, 0.0, 0.0])
