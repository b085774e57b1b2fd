"""Optimizers whose numbers follow their paper and its authors' code where optax 0.2.8's
differ: MoMo's and MoMo-Adam's proximal weight-decay step, (p - τ·d)/(1 + lr·wd) (Schaipp
et al. 2023; optax leaves τ·d undivided), and ACProp's residual g - m from the updated
momentum (Zhuang et al. 2021; optax takes the momentum before the update). Each reference
below is the published rule in float64, written from the paper; 8-10 steps on a three-leaf
tree, a 0-d leaf among them (``_optim_util.problem``). Adan's gradient-difference weight
is tested in test_optim_optax_extra.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _optim_util import problem, run

from funcdl import optim
from funcdl.optim._adam_aliases import acprop
from funcdl.optim._polyak import momo, momo_adam

STEPS = 8
P0, GRADS = problem(np.float64, STEPS + 2)  # {'w' (3, 2), 'b' (2,), 's' 0-d} and its grads


def _loss(p: dict[str, np.ndarray], step: int) -> float:
    return 0.5 * sum(float(np.sum(a * a)) for a in p.values()) + 0.1 * step


def _dot(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return sum(float(np.sum(a[k] * b[k])) for k in a)


def _close(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray], step: int) -> None:
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-11, atol=1e-14,
                                   err_msg=f"step {step}, params[{k!r}]")


@pytest.mark.parametrize("adapt", [False, True])
def test_momo_takes_the_papers_proximal_step(adapt: bool) -> None:
    lr, beta, wd, lb0 = 0.5, 0.9, 0.3, 0.2
    opt = momo(lr, beta=beta, lower_bound=lb0, weight_decay=wd, adapt_lower_bound=adapt)
    p = P0
    s = opt.init(p)
    q = {k: v.copy() for k, v in p.items()}  # the reference's params
    k_ = 1 + lr * wd
    lb = lb0
    fbar = gamma = 0.0
    d: dict[str, np.ndarray] = {}
    for step, g in enumerate(GRADS[:STEPS]):
        u, s = opt.update(s, g, p, value=_loss(p, step))
        p = optim.apply_updates(p, u)
        # reference: the first step takes loss, g and <q, g> as they are
        b = beta if step else 0.0
        fbar = b * fbar + (1 - b) * _loss(q, step)
        d = {k: b * d[k] + (1 - b) * g[k] if step else g[k].copy() for k in g}
        gamma = b * gamma + (1 - b) * _dot(q, g)
        dot, norm = _dot(q, d), _dot(d, d)
        if adapt:
            cap = k_ * fbar + dot - k_ * gamma
            lb = max(cap / (2 * k_), lb0) if cap < k_ * lb else lb
        tau = min(lr, max(k_ * (fbar - lb) + dot - k_ * gamma, 0.0) / norm)
        if adapt:
            lb = max(fbar + dot - gamma - 0.5 * tau * norm, lb0)
        q = {k: (q[k] - tau * d[k]) / k_ for k in q}
        _close(p, q, step)


@pytest.mark.parametrize("adapt", [False, True])
def test_momo_adam_takes_the_papers_proximal_step(adapt: bool) -> None:
    lr, b1, b2, eps, wd, lb0 = 0.05, 0.9, 0.99, 1e-8, 0.5, 0.1
    opt = momo_adam(lr, b1=b1, b2=b2, eps=eps, lower_bound=lb0, weight_decay=wd,
                    adapt_lower_bound=adapt)
    p = P0
    s = opt.init(p)
    q = {k: v.copy() for k, v in p.items()}
    k_ = 1 + lr * wd
    lb, fbar, gamma = lb0, 0.0, 0.0
    d = {k: np.zeros_like(v) for k, v in q.items()}
    v2 = {k: np.zeros_like(v) for k, v in q.items()}
    for step, g in enumerate(GRADS[:STEPS]):
        u, s = opt.update(s, g, p, value=_loss(p, step))
        p = optim.apply_updates(p, u)
        t = step + 1
        d = {k: b1 * d[k] + (1 - b1) * g[k] for k in g}
        v2 = {k: b2 * v2[k] + (1 - b2) * g[k] ** 2 for k in g}
        gamma = b1 * gamma + (1 - b1) * _dot(q, g)
        fbar = b1 * fbar + (1 - b1) * _loss(q, step)
        big_d = {k: np.sqrt(v2[k] / (1 - b2**t)) + eps for k in g}
        bc1 = 1 - b1**t
        dot = _dot(q, d)
        norm = sum(float(np.sum(d[k] * d[k] / big_d[k])) for k in d)
        if adapt:
            cap = k_ * fbar + dot - k_ * gamma
            lb = max(cap / (2 * k_ * bc1), lb0) if cap < k_ * bc1 * lb else lb
        tau = min(lr / bc1, max(k_ * (fbar - bc1 * lb) + dot - k_ * gamma, 0.0) / norm)
        if adapt:
            lb = max((fbar + dot - gamma - 0.5 * tau * norm) / bc1, lb0)
        q = {k: (q[k] - tau * d[k] / big_d[k]) / k_ for k in q}
        _close(p, q, step)


def test_momo_without_weight_decay_is_unchanged_by_the_division() -> None:
    """k = 1: the proximal step is the plain one, p - τ·d (optax's too)."""
    p, g = {"a": np.array([1.0]), "b": np.array([2.0])}, {"a": np.array([1.0]),
                                                          "b": np.array([2.0])}
    opt = momo()
    u, _ = opt.update(opt.init(p), g, p, value=2.5)  # τ = 0.5 (test_optim_contrib2)
    np.testing.assert_allclose([u["a"][0], u["b"][0]], [-0.5, -1.0], rtol=1e-15)


@pytest.mark.parametrize("b1", [0.9, 0.5])
def test_acprop_takes_its_residual_from_the_updated_momentum(b1: float) -> None:
    """s_t = b2·s + (1-b2)·(g_t - m_t)², and the step g_t / sqrt(ŝ_{t-1}) (eps 0)."""
    lr, b2 = 0.03, 0.95
    history, _ = run(acprop(lr, b1=b1, b2=b2, eps=0.0, eps_root=0.0), P0, GRADS)
    q = {k: v.copy() for k, v in P0.items()}
    m = {k: np.zeros_like(v) for k, v in q.items()}
    v2 = {k: np.zeros_like(v) for k, v in q.items()}
    for t, (g, p) in enumerate(zip(GRADS, history)):  # t: updates already applied
        step_dir = {k: g[k] if t == 0 else g[k] / np.sqrt(v2[k] / (1 - b2**t)) for k in g}
        m = {k: b1 * m[k] + (1 - b1) * g[k] for k in g}
        v2 = {k: b2 * v2[k] + (1 - b2) * (g[k] - m[k]) ** 2 for k in g}
        q = {k: q[k] - lr * step_dir[k] for k in q}
        _close(p, q, t)


def test_acprop_second_step_by_hand() -> None:
    """One leaf, b1 = 0.5, b2 = 0.5: g = 1 then 3. m = 0.5, s = 0.5·(1 - 0.5)² = 0.125;
    ŝ = 0.125 / 0.5 = 0.25, u_2 = 3 / 0.5 = 6 (optax 0.2.8's s = 0.5·1² gives 3)."""
    opt = acprop(1.0, b1=0.5, b2=0.5, eps=0.0, eps_root=0.0)
    p = {"a": np.zeros(1)}
    s = opt.init(p)
    u, s = opt.update(s, {"a": np.array([1.0])}, p)
    np.testing.assert_allclose(u["a"], [-1.0], rtol=1e-15)
    u, s = opt.update(s, {"a": np.array([3.0])}, p)
    np.testing.assert_allclose(u["a"], [-6.0], rtol=1e-15)
    inner: Any = s.states["acprop"]
    np.testing.assert_allclose([inner.mu["a"][0], inner.nu["a"][0]],
                               [1.75, 0.5 * 0.125 + 0.5 * (3 - 1.75) ** 2], rtol=1e-15)
