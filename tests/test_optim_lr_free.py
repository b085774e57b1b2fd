"""The learning-rate-free optimizers (prodigy, dadapt_adamw, dog, dowg): closed-form first
steps, naive NumPy references over a few steps, float32 kept, dict pytrees, training
without a tuned rate, bad input, huge gradients. optax's trajectories:
test_optim_lr_free_optax.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _optim_util import mlp_losses

from funcdl import optim, tree
from funcdl.optim._lr_free import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy
from funcdl.optim._lr_free_dog import cocob, dog, dowg, scale_by_cocob, scale_by_dog, scale_by_dowg
from funcdl.optim._lr_free_mechanic import mechanize

OPTIMIZERS = {
    "prodigy": prodigy, "dadapt_adamw": dadapt_adamw, "dog": dog, "dowg": dowg,
    "prodigy-options": lambda: prodigy(0.5, (0.8, 0.99), 0.9, 1e-6, 1e-5, 0.5, 1e-2, True),
    "dadapt_adamw-options": lambda: dadapt_adamw(0.5, (0.8, 0.99), 1e-6, 1e-5, 1e-2),
    "dog-options": lambda: dog(0.5, ("distance", 1e-3), weight_decay=1e-2),
    "dowg-options": lambda: dowg(0.5, 1e-3, 1e-6, weight_decay=1e-2),
    "cocob": cocob, "cocob-options": lambda: cocob(0.5, 50.0, 1e-6, 1e-2),
    "mechanize": lambda: mechanize(optim.adam(1e-3)),
    "mechanize-options": lambda: mechanize(optim.sgd(0.1, momentum=0.9), 0.1, 1e-6, 1e-4, 3),
}


def _tree(seed: int, dtype: Any = np.float64) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)}


def _flat(t: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.ravel(t[k]) for k in sorted(t)])


def _grad(t: int) -> dict[str, Any]:
    """The grads of step ``t`` (1 at the first): a steady direction plus noise, so that
    the distance estimates grow."""
    return tree.map(lambda a, b: a + 0.3 * b, _tree(1), _tree(t + 1))


def _run(opt: Any, steps: int) -> tuple[list[np.ndarray], Any]:
    """``steps`` updates from _tree(0) with grads _grad(1), _grad(2)...: the params after
    each, flat, and the last state."""
    p = _tree(0)
    s, out = opt.init(p), []
    for i in range(steps):
        u, s = opt.update(s, _grad(i + 1), p)
        p = optim.apply_updates(p, u)
        out.append(_flat(p))
    return out, s


# ---------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("make", [prodigy, dadapt_adamw])
def test_first_step_is_minus_d0_times_the_gradients_sign(make: Any) -> None:
    # m / sqrt(v) at the first step is (1-b1)/sqrt(1-b2)·sign(g), which dlr's bias
    # correction cancels: Adam's first step, d0 for its rate
    opt = make(estim_lr0=1e-3, eps=1e-30)
    p, g = _tree(0), _tree(1)
    u, state = opt.update(opt.init(p), g, p)
    for k in p:
        np.testing.assert_allclose(u[k], -1e-3 * np.sign(g[k]), rtol=1e-12)
    assert float(state.estim_lr) == 1e-3  # <g, p0 - p> = 0 and r was 0: no estimate yet


def test_dog_first_steps_in_closed_form() -> None:
    p, g = _tree(0), _tree(1)
    norm2 = float(_flat(g) @ _flat(g))
    for init_step, rate in [(("learning_rate", 0.3), 0.3),
                            (("distance", 0.3), 0.3 / math.sqrt(norm2 + 1e-8)),
                            (("heuristic", 0.3),
                             0.3 * (1 + np.linalg.norm(_flat(p))) / math.sqrt(norm2 + 1e-8))]:
        opt = dog(init_step=init_step)
        u, _ = opt.update(opt.init(p), g, p)
        for k in p:
            np.testing.assert_allclose(u[k], -rate * g[k], rtol=1e-12)


def test_dowg_first_step_in_closed_form() -> None:
    # r² = eps; G = eps·|g|²; u = -eps / (sqrt(eps)·|g| + eps) · g
    p, g = _tree(0), _tree(1)
    norm = float(np.linalg.norm(_flat(g)))
    u, _ = dowg().update(dowg().init(p), g, p)
    for k in p:
        np.testing.assert_allclose(u[k], -1e-4 / (1e-2 * norm + 1e-4) * g[k], rtol=1e-12)


# ---------------------------------------------------------------------------- references

def _prodigy_ref(steps: int, lr: float, b1: float, b2: float, b3: float, eps: float,
                 d: float, coef: float, wd: float, safeguard: bool) -> list[np.ndarray]:
    d0, x = d, _flat(_tree(0))
    x0, m, v, r, n, out = x.copy(), 0 * x, 0 * x, 0 * x, 0.0, []
    for t in range(1, steps + 1):
        g = _flat(_grad(t))
        dlr = d * lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m = b1 * m + (1 - b1) * d * g
        v = b2 * v + (1 - b2) * (d * g) ** 2
        r = b3 * r + (d if safeguard else dlr) / d0 * d * g
        n = b3 * n + d / d0 * dlr * g @ (x0 - x)
        d = max(d, coef * n / np.abs(r).sum())
        x = x - wd * dlr * x - dlr * m / (np.sqrt(v) + d * eps)
        out.append(x)
    return out


def _dadapt_ref(steps: int, lr: float, b1: float, b2: float, eps: float, d: float,
                wd: float) -> list[np.ndarray]:
    x, q = _flat(_tree(0)), math.sqrt(b2)
    m, v, r, n, out = 0 * x, 0 * x, 0 * x, 0.0, []
    for t in range(1, steps + 1):
        g = _flat(_grad(t))
        dlr = d * lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        n = q * n + (1 - q) * dlr * g @ (r / (np.sqrt(v) + eps))
        m = b1 * m + (1 - b1) * dlr * g
        v = b2 * v + (1 - b2) * g * g
        r = q * r + (1 - q) * dlr * g
        d = max(d, n / ((1 - q) * np.abs(r).sum()))
        x = x - wd * dlr * x - m / (np.sqrt(v) + eps)
        out.append(x)
    return out


@pytest.mark.parametrize("safeguard", [False, True])
def test_prodigy_matches_a_naive_reference(safeguard: bool) -> None:
    # d grows within the 8 steps (checked below), so that the estimate is tested too
    args = (0.7, 0.8, 0.95, 0.9, 1e-6, 1e-3, 1.5, 0.1, safeguard)
    got, state = _run(prodigy(args[0], args[1:3], *args[3:]), 8)
    for a, b in zip(got, _prodigy_ref(8, *args), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert float(state.estim_lr) > 1e-3


def test_dadapt_adamw_matches_a_naive_reference() -> None:
    args = (0.7, 0.8, 0.95, 1e-6, 1e-3, 0.1)
    got, state = _run(dadapt_adamw(args[0], args[1:3], *args[3:]), 4)
    for a, b in zip(got, _dadapt_ref(4, *args), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert float(state.estim_lr) > 1e-3


def test_dog_and_dowg_match_naive_references() -> None:
    got_dog, _ = _run(dog(0.5, ("distance", 0.1)), 4)
    got_dowg, _ = _run(dowg(0.5, 0.01, 1e-3), 4)
    x0 = _flat(_tree(0))
    x, rbar, big_g = x0.copy(), 0.1, 0.0
    y, r2, big_w = x0.copy(), 0.01, 0.0
    for t in range(1, 5):
        g = _flat(_grad(t))
        rbar, big_g = max(rbar, np.linalg.norm(x - x0)), big_g + g @ g
        x = x - 0.5 * rbar / math.sqrt(big_g + 1e-8) * g
        r2 = max(r2, float((y - x0) @ (y - x0)))
        big_w += r2 * (g @ g)
        y = y - 0.5 * r2 / (math.sqrt(big_w) + 1e-3) * g
        np.testing.assert_allclose(got_dog[t - 1], x, rtol=1e-12)
        np.testing.assert_allclose(got_dowg[t - 1], y, rtol=1e-12)


def test_cocob_matches_a_naive_reference() -> None:
    # learning_rate scales the grads cocob sees, weight decay adds wd·p before it
    lr, alpha, eps, wd = 0.5, 50.0, 1e-6, 0.1
    got, _ = _run(cocob(lr, alpha, eps, wd), 4)
    x0 = _flat(_tree(0))
    x, c, big_l, big_g, r = x0.copy(), 0 * x0, eps + 0 * x0, 0 * x0, 0 * x0
    for t in range(1, 5):
        g = lr * (_flat(_grad(t)) + wd * x)
        big_l, big_g = np.maximum(big_l, np.abs(g)), big_g + np.abs(g)
        r, c = np.maximum(r - g * (x - x0), 0), c - g
        x = x0 + c / (big_l * np.maximum(big_g + big_l, alpha * big_l)) * (big_l + r)
        np.testing.assert_allclose(got[t - 1], x, rtol=1e-12)


def test_mechanize_matches_a_naive_reference() -> None:
    # base: plain SGD at 0.1, whose update is -0.1·g
    wd, eps, s_init, n = 0.1, 1e-6, 1e-3, 3
    got, _ = _run(mechanize(optim.sgd(0.1), wd, eps, s_init, n), 5)
    x0 = _flat(_tree(0))
    betas = 1 - 0.1 ** np.arange(1, n + 1)
    x, r, m, v, s = x0.copy(), np.zeros(n), np.zeros(n), np.zeros(n), np.full(n, s_init)
    for t in range(1, 6):
        g = _flat(_grad(t))
        g_wd = g + wd * s.sum() * np.linalg.norm(g) / (np.linalg.norm(x) + eps) * x
        delta_prev = (x0 - x) / (s.sum() + eps)
        h = g_wd @ delta_prev
        r = betas * r + np.clip(h, -m, m) * s
        m = np.maximum(betas * m, abs(h) + eps)
        v = betas**2 * v + h**2
        s = (s_init / n * m + np.maximum(r, 0)) / (np.sqrt(v) + eps)
        x = x0 - s.sum() * (delta_prev + 0.1 * g)
        np.testing.assert_allclose(got[t - 1], x, rtol=1e-12)
    assert abs(s - s_init).max() > 0.1 * s_init  # the scales moved: the test says something


# ---------------------------------------------------------------------------- dtypes, training

@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_float32_params_give_float32_updates_and_state(make: Any) -> None:
    params, opt = _tree(0, np.float32), make()
    state = opt.init(params)
    for step in range(3):
        u, state = opt.update(state, _tree(step + 1, np.float32), params)
        params = optim.apply_updates(params, u)
    for leaf in tree.leaves(u) + tree.leaves(params) + tree.leaves(state):
        if np.asarray(leaf).dtype.kind == "f":  # a Python float (float64) fails too
            assert np.asarray(leaf).dtype == np.float32, leaf


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_float16_grads_step_as_their_values_in_float32(make: Any) -> None:
    # float16 arithmetic on d·g would round at 1e-3: the grads take the state's dtype
    params = _tree(0, np.float32)
    g16 = [tree.map(lambda x: x.astype(np.float16), _tree(i, np.float32)) for i in (1, 2)]
    ours, ref = make(), make()
    s, r = ours.init(params), ref.init(params)
    for g in g16:
        u, s = ours.update(s, g, params)
        w, r = ref.update(r, tree.map(lambda x: x.astype(np.float32), g), params)
        for a, b in zip(tree.leaves(u), tree.leaves(w), strict=True):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("make", [prodigy, dadapt_adamw, dog, dowg, cocob,
                                  lambda: mechanize(optim.adam(1e-3))])
def test_each_trains_a_small_mlp_without_a_tuned_rate(make: Any) -> None:
    first, last = mlp_losses(make(), 200)
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw", "dowg", "prodigy-options",
                                  "dadapt_adamw-options", "cocob", "cocob-options",
                                  "mechanize"])
def test_float32_gradients_of_1e19_stay_finite_and_step_as_gradients_of_1(name: str) -> None:
    # Each rule is scale-free in g (up to eps): |g|² = 8e38 passes float32's range, so the
    # norms are summed in float64 (optax's dowg steps by 0 here), and cocob divides
    # C/L before it divides by max(G + L, alpha·L) (optax's L·alpha·L overflows, its
    # step 0); dog is left out: its
    # state keeps G = sum |g|² in the params' float32, as optax's, and G overflows
    params = tree.map(np.zeros_like, _tree(0, np.float32))
    opt = OPTIMIZERS[name]()
    state, ref = opt.init(params), opt.init(params)
    for step in range(3):
        # the reference at 1e3, where eps is as negligible as at 1e19
        g = tree.map(lambda p, v=1e3 - 100.0 * step: np.full_like(p, v), params)
        u, state = opt.update(state, tree.map(lambda x: x * np.float32(1e16), g), params)
        w, ref = opt.update(ref, g, params)
        params = optim.apply_updates(params, w)
        for a, b in zip(tree.leaves(u), tree.leaves(w), strict=True):
            assert np.isfinite(a).all()
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=0)


def test_dog_with_gradients_of_1e19_steps_finitely() -> None:
    params = tree.map(np.zeros_like, _tree(0, np.float32))
    opt = dog()
    state = opt.init(params)
    for _ in range(3):
        u, state = opt.update(state, tree.map(lambda p: np.full_like(p, 1e19), params), params)
        assert all(np.isfinite(x).all() for x in tree.leaves(u))


def test_zero_gradients_keep_the_estimate_where_optax_divides_0_by_0() -> None:
    p = _tree(0)
    for opt in (prodigy(), dadapt_adamw()):
        u, s = opt.update(opt.init(p), tree.map(np.zeros_like, p), p)
        assert float(s.estim_lr) == 1e-6
        assert all(np.all(x == 0) for x in tree.leaves(u))


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("call", "kind", "words"), [
    (lambda: prodigy(estim_lr0=0.0), ValueError, ("prodigy", "estim_lr0", "> 0", "1e-6")),
    (lambda: prodigy(estim_lr0=-1e-6), ValueError, ("prodigy", "estim_lr0", "pass e.g.")),
    (lambda: dadapt_adamw(estim_lr0=0.0), ValueError, ("dadapt_adamw", "estim_lr0", "1e-6")),
    (lambda: dadapt_adamw(eps=0.0), ValueError, ("dadapt_adamw", "eps", "1e-8")),
    (lambda: prodigy(betas=(0.9, 1.0)), ValueError, ("prodigy", "betas[1]", "[0, 1)",
                                                     "betas=(0.9, 0.999)")),
    (lambda: dadapt_adamw(betas=(-0.1, 0.9)), ValueError, ("dadapt_adamw", "betas[0]")),
    (lambda: prodigy(betas=0.9), TypeError, ("prodigy", "betas", "pair", "(0.9, 0.999)")),
    (lambda: prodigy(betas=("a", 0.9)), TypeError, ("prodigy", "betas[0]", "real number")),
    (lambda: prodigy(beta3=1.5), ValueError, ("prodigy", "beta3")),
    (lambda: prodigy(-1.0), ValueError, ("prodigy", "lr")),
    (lambda: prodigy(safeguard_warmup="yes"), TypeError, ("prodigy", "safeguard_warmup")),
    (lambda: dog(init_step=("distance", 0.0)), ValueError, ("dog", "init_step[1]", "> 0")),
    (lambda: dog(init_step=("far", 1.0)), TypeError, ("dog", "init_step", "'heuristic'")),
    (lambda: scale_by_dog(1e-6), TypeError, ("scale_by_dog", "init_step", "pass e.g.")),
    (lambda: dowg(init_estim_sq_dist=0.0), ValueError, ("dowg", "init_estim_sq_dist")),
    (lambda: scale_by_dowg(eps=0.0), ValueError, ("scale_by_dowg", "eps", "1e-4")),
    (lambda: dog(weight_decay="0.1"), TypeError, ("dog", "weight_decay")),
    (lambda: dog(mask={"w": True}), ValueError, ("dog", "mask", "weight_decay=")),
    (lambda: cocob(alpha=0.0), ValueError, ("cocob", "alpha", "100.0")),
    (lambda: mechanize(optim.adam), TypeError, ("mechanize", "base_optimizer", "forget")),
    (lambda: mechanize(object()), TypeError, ("mechanize", "base_optimizer",
                                              "GradientTransformation")),
    (lambda: mechanize(optim.adam(), num_betas=0), ValueError, ("mechanize", "num_betas")),
    (lambda: mechanize(optim.adam(), s_init=0.0), ValueError, ("mechanize", "s_init", "1e-6")),
    (lambda: scale_by_cocob(eps=-1.0), ValueError, ("scale_by_cocob", "eps", "1e-8")),
    (lambda: cocob().update(cocob().init(_tree(0)), _tree(1)), ValueError,
     ("add_decayed_weights.update", "needs the params")),
    (lambda: prodigy().update(prodigy().init(_tree(0)), _tree(1)), ValueError,
     ("prodigy.update", "needs the params")),
    (lambda: dadapt_adamw().update(_tree(1), dadapt_adamw().init(_tree(0)), _tree(0)),
     TypeError, ("dadapt_adamw.update", "first argument")),
    (lambda: prodigy().update(prodigy().init(_tree(0))._replace(estim_lr=None), _tree(1),
                              _tree(0)), TypeError, ("prodigy.update", "estim_lr", "init")),
    (lambda: prodigy().update(prodigy().init(_tree(0)), _tree(1), {"w": _tree(0)["w"]}),
     ValueError, ("prodigy.update", "params")),
    (lambda: dog().update(dog().init(_tree(0)), _tree(1), {**_tree(0), "b": np.zeros(3)}),
     ValueError, ("scale_by_dog.update", "(3,)")),
])
def test_bad_input_names_the_transform_what_came_and_the_fix(call: Any, kind: type,
                                                             words: tuple[str, ...]) -> None:
    with pytest.raises(kind) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_states_are_named_records() -> None:
    assert type(prodigy().init(_tree(0))) is ProdigyState
    assert type(dadapt_adamw().init(_tree(0))) is DAdaptAdamWState
    assert prodigy().init(_tree(0)).count == 0


def test_mechanize_anchors_at_the_params_of_the_first_update_not_of_init() -> None:
    # as optax's: init may see placeholder params
    opt = mechanize(optim.sgd(0.1))
    p = _tree(0)
    _, state = opt.update(opt.init(tree.map(np.zeros_like, p)), _grad(1), p)
    for k in p:
        np.testing.assert_array_equal(state.x0[k], p[k])
