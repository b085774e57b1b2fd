"""optax's nadamw, adamaxw, novograd, lars, sign_sgd, signum, noisy_sgd, adan, centralize and
piecewise_interpolate_schedule (funcdl.optim's ``_adam_aliases``, ``_layerwise``, ``_sign``,
``_gradient_ops``, ``_adan``, ``_joined_schedules``): hand-computed first steps, float32 kept,
state fields, argument errors naming the optimizer, and float64 twins of optax 0.2.8 over 20
steps (skipped without optax)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim, random, tree
from funcdl.optim._adam_aliases import adamaxw, nadamw
from funcdl.optim._adan import ScaleByAdanState, adan, scale_by_adan
from funcdl.optim._gradient_ops import centralize, noisy_sgd
from funcdl.optim._joined_schedules import piecewise_interpolate_schedule
from funcdl.optim._layerwise import ScaleByNovogradState, lars, novograd, scale_by_novograd
from funcdl.optim._sign import scale_by_sign, sign_sgd, signum

MASK = {"a": False, "w": True}
# name: (funcdl's, optax's name and kwargs; lr passed as learning_rate to optax)
CASES: dict[str, tuple[Callable[[], Any], str, dict[str, Any]]] = {
    "nadamw": (lambda: nadamw(1e-2, weight_decay=0.1, mask=MASK), "nadamw",
               {"weight_decay": 0.1, "mask": MASK}),
    # optax's keyword (a probe of the signatures found it missing)
    "nadamw-nesterov=False": (lambda: nadamw(1e-2, weight_decay=0.1, nesterov=False),
                              "nadamw", {"weight_decay": 0.1, "nesterov": False}),
    "adamaxw": (lambda: adamaxw(1e-2, b2=0.99, weight_decay=0.1, mask=MASK), "adamaxw",
                {"b2": 0.99, "weight_decay": 0.1, "mask": MASK}),
    "novograd": (lambda: novograd(1e-2, weight_decay=0.1), "novograd", {"weight_decay": 0.1}),
    "lars": (lambda: lars(0.1, weight_decay=0.1, weight_decay_mask=MASK,
                          trust_ratio_mask={"a": True, "w": False}, nesterov=True),
             "lars", {"weight_decay": 0.1, "weight_decay_mask": MASK,
                      "trust_ratio_mask": {"a": True, "w": False}, "nesterov": True}),
    "lars-default": (lambda: lars(0.1, weight_decay=0.1, trust_coefficient=0.5), "lars",
                     {"weight_decay": 0.1, "trust_coefficient": 0.5}),
    "sign_sgd": (lambda: sign_sgd(1e-2), "sign_sgd", {}),
    "signum": (lambda: signum(1e-2, 0.8), "signum", {"beta": 0.8}),
    "noisy_sgd-eta0": (lambda: noisy_sgd(1e-2, eta=0.0, key=random.key(0)), "noisy_sgd",
                       {"eta": 0.0, "key": 0}),
    # optax 0.2.8 weighs adan's gradient differences 1 - b2, the paper b2: equal at 0.5
    "adan-b2=0.5": (lambda: adan(1e-2, b2=0.5, weight_decay=0.1, mask=MASK), "adan",
                    {"b2": 0.5, "weight_decay": 0.1, "mask": MASK}),
}


def _params(dtype: Any = np.float64) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"a": np.asarray(0.7, dtype), "w": rng.normal(size=(3, 4)).astype(dtype)}


def _grads(i: int, dtype: Any = np.float64) -> dict[str, Any]:
    r = np.random.default_rng(100 + i)
    return {"a": np.asarray(r.normal(), dtype), "w": r.normal(size=(3, 4)).astype(dtype)}


def _step(opt: Any, p: Any, g: Any, state: Any = None) -> tuple[Any, Any]:
    s = opt.init(p) if state is None else state
    return opt.update(s, g, p)


# ---------------------------------------------------------------------------- first steps

def test_nadamw_first_step_has_the_nesterov_factor_and_decoupled_decay():
    # m̂ = g·(1 + b1/(1+b1)) at t = 1, v̂ = g²; eps = 0: u = -lr·(1.4737·sign(g) + wd·p)
    u, _ = _step(nadamw(0.1, eps=0.0, weight_decay=0.5), np.array([1.0]), np.array([2.0]))
    np.testing.assert_allclose(u, [-0.1 * (1 + 0.9 / 1.9 + 0.5)], rtol=1e-12)


def test_adamaxw_first_step_is_sign_plus_decay():
    u, _ = _step(adamaxw(0.1, eps=0.0, weight_decay=0.5), np.array([1.0]), np.array([-2.0]))
    np.testing.assert_allclose(u, [-0.1 * (-1.0 + 0.5)], rtol=1e-12)


def test_novograd_uses_the_leaf_norm_and_sums_its_momentum():
    p, g = np.array([1.0, 0.0]), np.array([3.0, 4.0])
    opt = novograd(1.0, b1=0.9, b2=0.25, eps=0.0, weight_decay=0.5)
    u1, s = _step(opt, p, g)
    d = g / 5.0 + 0.5 * p  # ν = ‖g‖² = 25 at the first update
    np.testing.assert_allclose(u1, -d, rtol=1e-12)
    u2, s = opt.update(s, g, p)  # ν stays 25; m = b1·m + d, no (1 - b1)
    np.testing.assert_allclose(u2, -(0.9 * d + d), rtol=1e-12)
    np.testing.assert_allclose(s.states["novograd"].nu, 25.0)


def test_lars_trust_ratio_then_nesterov_momentum_on_the_lr_step():
    p, g = np.array([3.0, 4.0]), np.array([0.0, 2.0])  # ‖p‖ = 5, ‖g‖ = 2
    d = g * 0.1 * 5.0 / 2.0
    u, _ = _step(lars(1.0, trust_coefficient=0.1, momentum=0.9), p, g)
    np.testing.assert_allclose(u, -d, rtol=1e-12)
    u, _ = _step(lars(1.0, trust_coefficient=0.1, momentum=0.9, nesterov=True), p, g)
    np.testing.assert_allclose(u, -d - 0.9 * d, rtol=1e-12)
    u, _ = _step(lars(1.0, trust_coefficient=0.1, trust_ratio_mask=False), p, g)
    np.testing.assert_allclose(u, -g, rtol=1e-12)


def test_sign_sgd_and_signum():
    u, _ = _step(sign_sgd(0.1), np.zeros(3), np.array([-2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(u, [0.1, 0.0, -0.1])
    opt = signum(0.1, beta=0.9)
    u, s = _step(opt, np.zeros(2), np.array([1.0, 1.0]))
    np.testing.assert_array_equal(u, [-0.1, -0.1])
    # m = 0.9·0.1 + 0.1·g: 0.09 - 0.5 < 0 < 0.09 - 0.05
    u, _ = opt.update(s, np.array([-5.0, -0.5]), np.zeros(2))
    np.testing.assert_array_equal(u, [0.1, -0.1])


def test_adan_first_two_steps():
    opt = adan(1.0, b1=0.5, b2=0.5, b3=0.5, eps=0.0, eps_root=0.0)
    u, s = _step(opt, np.zeros(1), np.array([1.0]))
    np.testing.assert_allclose(u, [-1.0], rtol=1e-12)  # Δ = 0: m̂ = g, n̂ = g²
    u, s = opt.update(s, np.array([3.0]), np.zeros(1))
    # m = 1.75, v = 1, n = 8.25; t = 2: /0.75 each; (7/3 + 0.5·4/3) / sqrt(11)
    np.testing.assert_allclose(u, [-3.0 / math.sqrt(11.0)], rtol=1e-12)
    st = s.states["adan"]
    np.testing.assert_allclose([st.m[0], st.v[0], st.n[0], st.g[0]], [1.75, 1.0, 8.25, 3.0])


def test_adan_weighs_the_gradient_differences_by_b2():
    """b2 = 0.8 tells the paper's b2·Δ from optax 0.2.8's (1 - b2)·Δ (0.90131 there)."""
    opt = scale_by_adan(b1=0.5, b2=0.8, b3=0.5, eps=0.0)
    u, s = _step(opt, np.zeros(1), np.array([1.0]))
    np.testing.assert_allclose(u, [1.0], rtol=1e-12)
    u, s = opt.update(s, np.array([3.0]), np.zeros(1))
    # Δ = 2: m = 1.75, v = 0.2·2, n = 0.25 + 0.5·(3 + 0.8·2)²; t = 2: bc 0.75, 0.36, 0.75
    # (7/3 + 0.8·10/9) / sqrt(14.44) = (29/9) / (19/5)
    np.testing.assert_allclose(u, [145 / 171], rtol=1e-12)
    np.testing.assert_allclose([s.v[0], s.n[0]], [0.4, 10.83], rtol=1e-12)


def test_adan_follows_algorithm_1_of_the_paper():
    """12 float64 steps against Xie et al.'s Algorithm 1 written in the paper's own β (the
    weight of the new value: β = 1 - b), its default β1, β2, β3 = 0.02, 0.08, 0.01."""
    beta1, beta2, beta3, eps = 0.02, 0.08, 0.01, 1e-8
    opt = scale_by_adan(eps=eps)  # b = 1 - β: 0.98, 0.92, 0.99
    p = _params()
    s = opt.init(p)
    m = v = n = prev = None
    for k in range(1, 13):
        g = _grads(k)["w"]
        u, s = opt.update(s, _grads(k), p)
        d = np.zeros_like(g) if prev is None else g - prev
        m = beta1 * g if m is None else (1 - beta1) * m + beta1 * g
        v = beta2 * d if v is None else (1 - beta2) * v + beta2 * d
        sq = (g + (1 - beta2) * d) ** 2
        n = beta3 * sq if n is None else (1 - beta3) * n + beta3 * sq
        mh, vh, nh = (a / (1 - (1 - b) ** k) for a, b in ((m, beta1), (v, beta2), (n, beta3)))
        np.testing.assert_allclose(u["w"], (mh + (1 - beta2) * vh) / (np.sqrt(nh) + eps),
                                   rtol=1e-12)
        prev = g


def test_centralize_subtracts_the_mean_over_all_axes_but_the_first():
    c = centralize()
    g = {"k": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), "b": np.array([1.0, 5.0]),
         "t": np.arange(8.0).reshape(2, 2, 2), "e": np.zeros((3, 0))}
    u, s = c.update(c.init(g), g)
    np.testing.assert_array_equal(u["k"], [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(u["b"], g["b"])
    np.testing.assert_allclose(u["t"], g["t"] - [[[1.5]], [[5.5]]])
    assert u["e"].shape == (3, 0) and s == optim.EmptyState()


def test_piecewise_interpolate_schedule_values():
    lin = piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 0.01})
    np.testing.assert_allclose([lin(c) for c in range(0, 11, 2)],
                               [1.0, 0.55, 0.1, 0.0505, 0.001, 0.001], rtol=1e-12)
    cos = piecewise_interpolate_schedule("cosine", 1.0, {4: 0.1})
    np.testing.assert_allclose(cos(1), 0.1 + 0.45 * (math.cos(math.pi / 4) + 1), rtol=1e-12)
    assert lin(-1) == 0.0 and piecewise_interpolate_schedule("linear", 2.0)(5) == 2.0


def test_noisy_sgd_is_deterministic_by_key_and_has_the_annealed_variance():
    g, p = {"w": np.zeros(40000)}, {"w": np.zeros(40000)}

    def run(seed: int) -> list[Any]:
        opt = noisy_sgd(0.5, eta=0.3, gamma=0.55, key=random.key(seed))
        s, out = opt.init(p), []
        for _ in range(4):
            u, s = opt.update(s, g, p)
            out.append(u["w"])
        return out

    a, b, c = run(1), run(1), run(2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])
    for t, u in enumerate(a):  # u = -lr·σ·n, σ² = eta / (t + 1)^gamma
        sd = 0.5 * math.sqrt(0.3 / (t + 1) ** 0.55)
        assert abs(u.std() / sd - 1) < 0.03 and abs(u.mean()) < 4 * sd / 200
    u, _ = _step(noisy_sgd(0.5, eta=0.0, key=random.key(0)), p, {"w": np.ones(40000)})
    np.testing.assert_array_equal(u["w"], -0.5)


# ---------------------------------------------------------------------------- contracts

ALL = {**{k: v[0] for k, v in CASES.items()},
       "noisy_sgd": lambda: noisy_sgd(1e-2, key=random.key(0)),
       "scale_by_novograd": lambda: scale_by_novograd(weight_decay=0.1),
       "scale_by_adan": scale_by_adan, "scale_by_sign": scale_by_sign,
       "centralize": centralize}


@pytest.mark.parametrize("name", list(ALL))
def test_float32_kept(name):
    opt = ALL[name]()
    p, s = _params(np.float32), None
    for i in range(3):
        u, s = _step(opt, p, _grads(i, np.float32), s)
        p = optim.apply_updates(p, u)
    for x in (*tree.leaves(u), *tree.leaves(p)):
        assert np.asarray(x).dtype == np.float32, name
    for x in tree.leaves(s):
        assert np.asarray(x).dtype in (np.float32, np.int64, np.uint64), (name, x)


@pytest.mark.parametrize("name", list(ALL))
def test_swapped_update_raises_type_error(name):
    opt = ALL[name]()
    p = _params()
    with pytest.raises(TypeError, match="state"):
        opt.update(_grads(0), opt.init(p), p)


def test_state_fields_and_count():
    p = _params()
    s = scale_by_novograd().init(p)
    assert isinstance(s, ScaleByNovogradState) and s._fields == ("count", "mu", "nu")
    assert s.nu["w"].shape == () and s.count == 0
    s = scale_by_adan().init(p)
    assert isinstance(s, ScaleByAdanState) and s._fields == ("count", "m", "v", "n", "g")
    _, s = scale_by_adan().update(s, _grads(0))
    assert s.count == 1 and type(s.count) is np.int64
    opt = adan(1e-3)
    _, s = opt.update(opt.init(p), _grads(0), p)
    assert s.count == 1 and list(s.states) == ["adan", "lr"]


def test_novograd_needs_params_only_for_weight_decay():
    p, g = _params(), _grads(0)
    scale_by_novograd().update(scale_by_novograd().init(p), g)
    opt = scale_by_novograd(weight_decay=0.1)
    with pytest.raises(ValueError, match=r"scale_by_novograd\.update: needs the params"):
        opt.update(opt.init(p), g)


BAD: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: nadamw(-1.0), ValueError, "nadamw"), (lambda: nadamw(1e-3, b1=1.0), ValueError,
                                                   "nadamw"),
    (lambda: nadamw(1e-3, mu_dtype=np.int32), TypeError, "nadamw"),
    (lambda: adamaxw(1e-3, weight_decay="x"), TypeError, "adamaxw"),
    (lambda: adamaxw(1e-3, mask=3), TypeError, "adamaxw"),
    (lambda: novograd(1e-3, b2=1.5), ValueError, "novograd"),
    (lambda: novograd(1e-3, weight_decay=lambda c: 0.1), TypeError, "novograd"),
    (lambda: lars(1e-3, trust_coefficient=-1.0), ValueError, "lars"),
    (lambda: lars(1e-3, momentum=np.nan), ValueError, "lars"),
    (lambda: lars(1e-3, trust_ratio_mask="yes"), TypeError, "lars"),
    (lambda: lars(1e-3, nesterov="no"), TypeError, "lars"),
    (lambda: sign_sgd(None), TypeError, "sign_sgd"),
    (lambda: signum(1e-3, beta=1.5), ValueError, "signum"),
    (lambda: signum(1e-3, accumulator_dtype=np.int8), TypeError, "signum"),
    (lambda: noisy_sgd(1e-3), TypeError, "noisy_sgd"),
    (lambda: noisy_sgd(1e-3, key=0), TypeError, "noisy_sgd"),
    (lambda: noisy_sgd(1e-3, eta=-1.0, key=random.key(0)), ValueError, "noisy_sgd"),
    (lambda: adan(1e-3, b3=1.0), ValueError, "adan"),
    (lambda: adan(1e-3, eps_root=-1e-8), ValueError, "adan"),
    (lambda: scale_by_adan(b2=-0.1), ValueError, "scale_by_adan"),
    (lambda: scale_by_novograd(eps=np.inf), ValueError, "scale_by_novograd"),
    (lambda: piecewise_interpolate_schedule("cubic", 1.0), ValueError,
     "piecewise_interpolate_schedule"),
    (lambda: piecewise_interpolate_schedule(1, 1.0), TypeError,
     "piecewise_interpolate_schedule"),
    (lambda: piecewise_interpolate_schedule("linear", 1.0, {-1: 0.5}), ValueError,
     "piecewise_interpolate_schedule"),
    (lambda: piecewise_interpolate_schedule("linear", 1.0, {2: -0.5}), ValueError,
     "piecewise_interpolate_schedule"),
    (lambda: piecewise_interpolate_schedule("linear", 1.0, [(2, 0.5)]), TypeError,
     "piecewise_interpolate_schedule"),
    (lambda: piecewise_interpolate_schedule("linear", 1.0, {2: 1e300, 3: 1e300}), ValueError,
     "piecewise_interpolate_schedule: the value reached"),
]


@pytest.mark.parametrize(("make", "exc", "name"), BAD)
def test_bad_arguments_name_the_optimizer(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


def test_alias_init_refuses_integer_params_naming_it():
    with pytest.raises(TypeError, match=r"lars\.init"):
        lars(0.1).init({"w": np.ones(3, int)})


# ---------------------------------------------------------------------------- optax twins

def _optax(jax64: Any) -> tuple[Any, Any]:
    """optax and jax.numpy, float64 on for the test (jax64: conftest's fixture)."""
    return pytest.importorskip("optax"), jax64.numpy


def _twin(ours: Any, theirs: Any, jnp: Any, steps: int = 20) -> None:
    """20 float64 steps of each, fed the same grads; params and updates agree."""
    p, q = _params(), tree.map(jnp.asarray, _params())
    s, t = ours.init(p), theirs.init(q)
    for i in range(steps):
        g = _grads(i)
        u, s = ours.update(s, g, p)  # funcdl: state first
        v, t = theirs.update(tree.map(jnp.asarray, g), t, q)  # optax: grads first
        for k in p:
            np.testing.assert_allclose(u[k], np.asarray(v[k]), rtol=1e-9, atol=1e-13)
        p, q = optim.apply_updates(p, u), tree.map(lambda a, b: a + b, q, v)


@pytest.mark.parametrize("name", list(CASES))
def test_matches_optax(name, jax64):
    optax, jnp = _optax(jax64)
    make, oname, kw = CASES[name]
    lr = {"lars": 0.1, "lars-default": 0.1}.get(name, 1e-2)
    _twin(make(), getattr(optax, oname)(lr, **kw), jnp)


def test_transforms_match_optax(jax64):
    optax, jnp = _optax(jax64)
    _twin(optim.chain(centralize(), optim.sgd(0.1)), optax.chain(optax.centralize(),
                                                                optax.sgd(0.1)), jnp)
    _twin(optim.chain(scale_by_adan(b2=0.5, eps_root=1e-6), optim.scale(-0.01)),
          optax.chain(optax.scale_by_adan(b2=0.5, eps_root=1e-6), optax.scale(-0.01)), jnp)
    _twin(optim.chain(scale_by_novograd(b2=0.5, weight_decay=0.2), optim.scale(-0.01)),
          optax.chain(optax.scale_by_novograd(b2=0.5, weight_decay=0.2), optax.scale(-0.01)),
          jnp)
    _twin(optim.chain(scale_by_sign(), optim.scale(-0.01)),
          optax.chain(optax.scale_by_sign(), optax.scale(-0.01)), jnp)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_piecewise_interpolate_schedule_matches_optax(kind, jax64):
    optax, _ = _optax(jax64)
    for bs in ({3: 0.5, 7: 0.1, 0: 3.0}, {4: 0.1, 8: 0.01}, None, {5: 0.0, 9: 2.0}):
        ours = piecewise_interpolate_schedule(kind, 2.0, bs)
        theirs = optax.piecewise_interpolate_schedule(kind, 2.0, bs)
        np.testing.assert_allclose([ours(c) for c in range(-2, 14)],
                                   [float(theirs(c)) for c in range(-2, 14)], rtol=1e-12,
                                   atol=1e-15)
