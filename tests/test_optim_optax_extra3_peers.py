"""Float64 twins of optax 0.2.8 for funcdl.optim's flatten, scale_by_rss, scale_by_stddev,
scale_by_param_block_norm, normalize_by_update_norm, scale_by_sm3, sm3, the optimistic-gradient
transforms and aliases, fromage, the Polyak step size: updates, params and (where the records
match) every state number, over 6 steps on a (3, 4) matrix, a (4,) vector and a 0-d scalar (SM3:
a 3-d leaf instead, optax failing on 0-d). Skipped without optax and jax."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim, tree

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after

RTOL, ATOL = 1e-13, 1e-15
TARGET = {"w": np.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": np.array([0.3, -0.2, 0.5, 0.1]),
          "s": np.array(-0.4), "t": np.linspace(0.5, -0.5, 12).reshape(2, 3, 2)}


def _params(keys: str = "wbs") -> dict[str, Any]:
    rng = np.random.default_rng(7)
    return {k: rng.normal(size=TARGET[k].shape) for k in keys}


def _loss_grads(p: dict[str, Any], k: int) -> tuple[float, dict[str, Any]]:
    """A quadratic's loss and gradient, plus a step-dependent wobble so that no two
    gradients are proportional."""
    loss = float(sum(np.sum((p[n] - TARGET[n]) ** 2) for n in p))
    grads = {n: 2.0 * (p[n] - TARGET[n]) + 0.3 * np.sin(k + np.arange(p[n].size)
                                                        ).reshape(p[n].shape) for n in p}
    return loss, grads


def _close(ours: Any, theirs: Any, what: str) -> None:
    a, b = tree.leaves(ours), jax.tree.leaves(theirs)
    assert len(a) == len(b), f"{what}: {len(a)} leaves against optax's {len(b)}"
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=RTOL, atol=ATOL, err_msg=what)


def _twin(ours: Any, theirs: Any, keys: str = "wbs", value: bool = False,
          states: bool = True, steps: int = 6) -> None:
    p = _params(keys)
    q = jax.tree.map(jnp.asarray, p)
    s, t = ours.init(p), theirs.init(q)
    if states:
        _close(s, t, "init state")
    for k in range(steps):
        loss, g = _loss_grads(p, k)
        kw = {"value": loss} if value else {}
        u, s = ours.update(s, g, p, **kw)
        v, t = theirs.update(jax.tree.map(jnp.asarray, g), t, q, **kw)
        _close(u, v, f"updates at step {k}")
        if states:
            _close(s, t, f"state at step {k}")
        p, q = optim.apply_updates(p, u), optax.apply_updates(q, v)
        assert all(np.asarray(x).dtype == np.float64 for x in tree.leaves(p))
    _close(p, q, "params")


def _sched(c: Any) -> Any:
    return 0.2 / (1.0 + 0.5 * c)


# id: (funcdl's, optax's, keys, value=, states compared)
TWINS: dict[str, tuple[Callable[[], Any], Callable[[], Any], str, bool, bool]] = {
    "flatten-adam": (lambda: optim.flatten(optim.scale_by_adam()),
                     lambda: optax.flatten(optax.scale_by_adam()), "wbs", False, True),
    "flatten-polyak": (lambda: optim.flatten(optim.scale_by_polyak(max_learning_rate=0.3)),
                       lambda: optax.flatten(optax.scale_by_polyak(max_learning_rate=0.3)),
                       "wbs", True, True),
    "scale_by_rss": (optim.scale_by_rss, optax.scale_by_rss, "wbs", False, True),
    "scale_by_rss-zero": (lambda: optim.scale_by_rss(0.0, 0.0),
                          lambda: optax.scale_by_rss(0.0, 0.0), "wbs", False, True),
    "scale_by_stddev": (optim.scale_by_stddev, optax.scale_by_stddev, "wbs", False, True),
    "scale_by_stddev-options": (
        lambda: optim.scale_by_stddev(0.8, 1e-3, 0.5, eps_in_sqrt=False, bias_correction=True),
        lambda: optax.scale_by_stddev(0.8, 1e-3, 0.5, eps_in_sqrt=False,
                                      bias_correction=True), "wbs", False, True),
    "scale_by_param_block_norm": (optim.scale_by_param_block_norm,
                                  optax.scale_by_param_block_norm, "wbs", False, True),
    "scale_by_param_block_norm-min": (lambda: optim.scale_by_param_block_norm(1.5),
                                      lambda: optax.scale_by_param_block_norm(1.5), "wbs",
                                      False, True),
    "normalize_by_update_norm": (lambda: optim.normalize_by_update_norm(-0.5, 1e-3),
                                 lambda: optax.normalize_by_update_norm(-0.5, 1e-3), "wbs",
                                 False, True),
    "scale_by_sm3": (optim.scale_by_sm3, optax.scale_by_sm3, "wbt", False, True),
    "scale_by_sm3-b2": (lambda: optim.scale_by_sm3(0.5, 0.9, 1e-4),
                        lambda: optax.scale_by_sm3(0.5, 0.9, 1e-4), "wbt", False, True),
    "sm3": (lambda: optim.sm3(0.1), lambda: optax.sm3(0.1), "wbt", False, False),
    "scale_by_optimistic_gradient": (
        lambda: optim.scale_by_optimistic_gradient(0.3, 0.7),
        lambda: optax.scale_by_optimistic_gradient(0.3, 0.7), "wbs", False, True),
    "optimistic_gradient_descent": (
        lambda: optim.optimistic_gradient_descent(0.1, 0.5, 0.8),
        lambda: optax.optimistic_gradient_descent(0.1, 0.5, 0.8), "wbs", False, False),
    "optimistic_gradient_descent-schedule": (
        lambda: optim.optimistic_gradient_descent(_sched),
        lambda: optax.optimistic_gradient_descent(_sched), "wbs", False, False),
    "optimistic_adam": (lambda: optim.optimistic_adam(0.05, 0.02),
                        lambda: optax.optimistic_adam(0.05, 0.02), "wbs", False, False),
    "optimistic_adam-plain": (
        lambda: optim.optimistic_adam(0.05, b1=0.8, eps_root=1e-6, nesterov=False),
        lambda: optax.optimistic_adam(0.05, b1=0.8, eps_root=1e-6, nesterov=False), "wbs",
        False, False),
    "optimistic_adam_v2": (lambda: optim.optimistic_adam_v2(0.05, alpha=0.4, beta=0.9),
                           lambda: optax.optimistic_adam_v2(0.05, alpha=0.4, beta=0.9),
                           "wbs", False, False),
    "optimistic_adam_v2-schedule": (
        lambda: optim.optimistic_adam_v2(_sched, nesterov=False, b2=0.99),
        lambda: optax.optimistic_adam_v2(_sched, nesterov=False, b2=0.99), "wbs", False,
        False),
    "fromage": (lambda: optim.fromage(0.1), lambda: optax.fromage(0.1), "wbs", False, False),
    "fromage-schedule": (lambda: optim.fromage(_sched, 0.5), lambda: optax.fromage(_sched, 0.5),
                         "wbs", False, False),
    "scale_by_polyak": (lambda: optim.scale_by_polyak(0.1, 0.4, 1e-3),
                        lambda: optax.scale_by_polyak(0.1, 0.4, 1e-3), "wbs", True, True),
    "scale_by_polyak-sps+": (lambda: optim.scale_by_polyak(50.0, 0.4, variant="sps+"),
                             lambda: optax.scale_by_polyak(50.0, 0.4, variant="sps+"), "wbs",
                             True, True),
    "scale_by_polyak-below": (lambda: optim.scale_by_polyak(50.0, 0.4),
                              lambda: optax.scale_by_polyak(50.0, 0.4), "wbs", True, True),
    "polyak_sgd": (lambda: optim.polyak_sgd(0.5, 0.3, 0.2, 1e-4),
                   lambda: optax.polyak_sgd(0.5, 0.3, 0.2, 1e-4), "wbs", True, False),
    "polyak_sgd-schedule": (lambda: optim.polyak_sgd(scaling=_sched, variant="sps+"),
                            lambda: optax.polyak_sgd(scaling=_sched, variant="sps+"), "wbs",
                            True, False),
}


@pytest.mark.parametrize("case", list(TWINS))
def test_twin_of_optax(case: str) -> None:
    ours, theirs, keys, value, states = TWINS[case]
    with warnings.catch_warnings():  # optax deprecates optimistic_adam for its v2
        warnings.simplefilter("ignore", DeprecationWarning)
        _twin(ours(), theirs(), keys, value, states)


def test_alias_stage_states_match_optax_s() -> None:
    # the aliases' chains hold optax's stage states, by name where optax has positions
    p = _params()
    q = jax.tree.map(jnp.asarray, p)
    ours, theirs = optim.optimistic_adam_v2(0.05, beta=0.5), optax.optimistic_adam_v2(0.05,
                                                                                   beta=0.5)
    s, t = ours.init(p), theirs.init(q)
    for k in range(5):
        _, g = _loss_grads(p, k)
        u, s = ours.update(s, g, p)
        v, t = theirs.update(jax.tree.map(jnp.asarray, g), t, q)
        p, q = optim.apply_updates(p, u), optax.apply_updates(q, v)
    _close(s.states["adam"], t[0], "adam stage")
    _close(s.states["optimistic"], t[1], "optimistic stage")
    ours3, theirs3 = optim.sm3(0.1), optax.sm3(0.1)
    p = _params("wbt")
    s3 = ours3.update(ours3.init(p), _loss_grads(p, 0)[1], p)[1]
    t3 = theirs3.update(jax.tree.map(jnp.asarray, _loss_grads(p, 0)[1]),
                        theirs3.init(jax.tree.map(jnp.asarray, p)))[1]
    _close(s3.states["sm3"], t3[0], "sm3 stage")


def test_flatten_keeps_leaf_dtypes_as_optax_promotes() -> None:
    # a float32 leaf beside a float64 one: both ravel to a float64 vector; the updates come
    # back in each leaf's own dtype (optax's come back float64: its unflatten keeps the
    # vector's dtype), with optax's numbers
    p = {"a": np.array([0.5, -1.0], np.float32), "b": np.array([[2.0, 0.25]])}
    g = {"a": np.array([0.1, 0.2], np.float32), "b": np.array([[-0.3, 0.4]])}
    ours, theirs = optim.flatten(optim.scale_by_adam()), optax.flatten(optax.scale_by_adam())
    u, s = ours.update(ours.init(p), g, p)
    v, _ = theirs.update(jax.tree.map(jnp.asarray, g), theirs.init(jax.tree.map(jnp.asarray,
                                                                                p)))
    assert u["a"].dtype == np.float32 and u["b"].dtype == np.float64
    np.testing.assert_allclose(u["b"], v["b"], rtol=RTOL)
    np.testing.assert_allclose(u["a"], v["a"], rtol=1e-6)
    assert s.mu.dtype == np.float64 and s.mu.shape == (4,)
