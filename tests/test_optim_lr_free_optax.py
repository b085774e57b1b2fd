"""funcdl's learning-rate-free optimizers against optax.contrib's: float64 trajectories over
30 steps on a quadratic, a logistic regression and a small MLP (gradients taken at each
run's own params, so that the runs feed back), agreeing to ~1e-10."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
import jax.numpy as jnp  # noqa: E402

from funcdl import optim  # noqa: E402
from funcdl.optim._lr_free import dadapt_adamw, prodigy  # noqa: E402
from funcdl.optim._lr_free_dog import cocob, dog, dowg  # noqa: E402
from funcdl.optim._lr_free_mechanic import mechanize  # noqa: E402

STEPS = 30
# optax reads a schedule at its int32 count and gets float32 values: steps of 1/2 keep both
# runs' multipliers exact
HALVES = {10: 0.5, 20: 0.5}
OURS_S = optim.piecewise_constant_schedule(1.0, HALVES)
THEIRS_S = optax.piecewise_constant_schedule(1.0, HALVES)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 4))
Y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 * RNG.normal(size=32) > 0).astype(float)
A = RNG.normal(size=(6, 6))
H = A @ A.T / 6 + 0.5 * np.eye(6)


def quadratic(p: Any, xp: Any) -> Any:
    return 0.5 * p["w"] @ (H @ p["w"]) + xp.sum(p["b"] ** 2) + p["w"][0] * 0.7


def logistic(p: Any, xp: Any) -> Any:
    z = X @ p["w"] + p["b"]
    return xp.mean(xp.logaddexp(0.0, z) - Y * z)


def mlp(p: Any, xp: Any) -> Any:
    h = xp.tanh(X @ p["w1"] + p["b1"])
    z = h @ p["w2"] + p["b2"]
    return xp.mean(xp.logaddexp(0.0, z[:, 0]) - Y * z[:, 0])


PROBLEMS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "quadratic": (quadratic, {"w": RNG.normal(size=6), "b": RNG.normal(size=(2, 3))}),
    "logistic": (logistic, {"w": 0.1 * RNG.normal(size=4), "b": np.array(0.2)}),
    "mlp": (mlp, {"w1": 0.5 * RNG.normal(size=(4, 5)), "b1": 0.1 * RNG.normal(size=5),
                  "w2": 0.5 * RNG.normal(size=(5, 1)), "b2": np.zeros(1)}),
}

CASES: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "prodigy": (prodigy, optax.contrib.prodigy),
    "prodigy-options": (
        lambda: prodigy(OURS_S, betas=(0.8, 0.99), beta3=0.9,
                        eps=1e-6, estim_lr0=1e-3, estim_lr_coef=0.5, weight_decay=0.1,
                        safeguard_warmup=True),
        lambda: optax.contrib.prodigy(THEIRS_S, betas=(0.8, 0.99),
                                      beta3=0.9, eps=1e-6, estim_lr0=1e-3,
                                      estim_lr_coef=0.5, weight_decay=0.1,
                                      safeguard_warmup=True)),
    "dadapt_adamw": (dadapt_adamw, optax.contrib.dadapt_adamw),
    "dadapt_adamw-options": (
        lambda: dadapt_adamw(OURS_S, betas=(0.8, 0.99), eps=1e-6,
                             estim_lr0=1e-3, weight_decay=0.1),
        lambda: optax.contrib.dadapt_adamw(THEIRS_S,
                                           betas=(0.8, 0.99), eps=1e-6, estim_lr0=1e-3,
                                           weight_decay=0.1)),
    "dog": (dog, optax.contrib.dog),
    "dog-distance": (lambda: dog(0.5, ("distance", 1e-2), weight_decay=1e-2),
                     lambda: optax.contrib.dog(0.5, ("distance", 1e-2), weight_decay=1e-2)),
    "dog-learning_rate": (lambda: dog(init_step=("learning_rate", 1e-3), eps=1e-6),
                          lambda: optax.contrib.dog(init_step=("learning_rate", 1e-3),
                                                    eps=1e-6)),
    "cocob": (cocob, optax.contrib.cocob),
    "cocob-options": (lambda: cocob(OURS_S, 50.0, 1e-6, 1e-2),
                      lambda: optax.contrib.cocob(THEIRS_S, 50.0, 1e-6, 1e-2)),
    "mechanize-adam": (lambda: mechanize(optim.adam(1e-2)),
                       lambda: optax.contrib.mechanize(optax.adam(1e-2))),
    "mechanize-sgd-options": (
        lambda: mechanize(optim.sgd(0.1, momentum=0.9), 0.1, 1e-6, 1e-4, 3),
        lambda: optax.contrib.mechanize(optax.sgd(0.1, momentum=0.9), 0.1, 1e-6, 1e-4, 3)),
    "dowg": (dowg, optax.contrib.dowg),
    "dowg-options": (lambda: dowg(OURS_S, 1e-2, 1e-6, 1e-2),
                     lambda: optax.contrib.dowg(THEIRS_S, 1e-2,
                                                1e-6, 1e-2)),
}


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("case", list(CASES))
def test_float64_trajectory_equals_optax_contribs(case: str, problem: str) -> None:
    loss, p0 = PROBLEMS[problem]
    ours, theirs = CASES[case][0](), CASES[case][1]()
    grad = jax.jit(jax.grad(lambda q: loss(q, jnp)))
    p, q = dict(p0), {k: jnp.asarray(x) for k, x in p0.items()}
    s, t = ours.init(p), theirs.init(q)
    their_update = jax.jit(theirs.update)
    moved = 0.0
    for step in range(STEPS):
        g = {k: np.asarray(x) for k, x in grad({k: jnp.asarray(x) for k, x in p.items()}).items()}
        u, s = ours.update(s, g, p)
        v, t = their_update(grad(q), t, q)
        p, q = optim.apply_updates(p, u), optax.apply_updates(q, v)
        for k in p:
            np.testing.assert_allclose(p[k], np.asarray(q[k]), rtol=1e-10, atol=1e-10,
                                       err_msg=f"step {step} leaf {k}")
            assert p[k].dtype == np.float64
    for k in p:
        moved = max(moved, float(np.max(np.abs(p[k] - p0[k]))))
    assert moved > 1e-4  # the runs went somewhere, so agreeing says something
