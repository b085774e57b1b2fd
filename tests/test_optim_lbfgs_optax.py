"""funcdl's L-BFGS and line searches against optax's (0.2.8), float64 trajectories:
scale_by_lbfgs alone (then a fixed step), lbfgs with its zoom search, and each line search
after sgd's direction, on a quadratic, Rosenbrock and a small logistic regression."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
jnp = jax.numpy

from funcdl import optim, tree  # noqa: E402

RNG = np.random.default_rng(0)
M = RNG.normal(size=(6, 6))
A = M @ M.T + 0.5 * np.eye(6)  # SPD, condition ~100
B = RNG.normal(size=6)
X = RNG.normal(size=(40, 3))
Y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 * RNG.normal(size=40) > 0).astype(np.float64)


def quad_np(p: Any) -> tuple[float, Any]:
    x = p["x"]
    return float(0.5 * x @ A @ x - B @ x), {"x": A @ x - B}


def quad_jax(p: Any) -> Any:
    x = p["x"]
    return 0.5 * x @ jnp.asarray(A) @ x - jnp.asarray(B) @ x


def rosen_np(p: Any) -> tuple[float, Any]:
    x, y = p["x"][0], p["x"][1]
    v = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    g = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
    return float(v), {"x": g}


def rosen_jax(p: Any) -> Any:
    x, y = p["x"][0], p["x"][1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def logreg_np(p: Any) -> tuple[float, Any]:
    z = X @ p["w"] + p["b"]
    v = np.mean(np.logaddexp(0.0, z) - Y * z) + 0.05 * p["w"] @ p["w"]
    r = (1.0 / (1.0 + np.exp(-z)) - Y) / len(Y)
    return float(v), {"b": np.sum(r), "w": X.T @ r + 0.1 * p["w"]}


def logreg_jax(p: Any) -> Any:
    z = jnp.asarray(X) @ p["w"] + p["b"]
    return jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(Y) * z) + 0.05 * p["w"] @ p["w"]


PROBLEMS: dict[str, tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]] = {
    "quadratic": (quad_np, quad_jax, {"x": np.zeros(6)}),
    "rosenbrock": (rosen_np, rosen_jax, {"x": np.array([-1.2, 1.0])}),
    "logistic": (logreg_np, logreg_jax, {"b": np.array(0.0), "w": np.zeros(3)}),
}

# (funcdl optimizer, optax optimizer, keywords the update takes)
OPTS: dict[str, tuple[Callable[[], Any], Callable[[], Any], str]] = {
    "lbfgs": (optim.lbfgs, optax.lbfgs, "zoom"),
    "lbfgs-m3-noscale": (lambda: optim.lbfgs(memory_size=3, scale_init_precond=False),
                         lambda: optax.lbfgs(memory_size=3, scale_init_precond=False), "zoom"),
    "scale_by_lbfgs": (lambda: optim.chain(optim.scale_by_lbfgs(4), optim.scale(-0.02)),
                       lambda: optax.chain(optax.scale_by_lbfgs(4), optax.scale(-0.02)), ""),
    "lbfgs-backtracking": (
        lambda: optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(30)),
        lambda: optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(30)), "value"),
    "sgd-backtracking": (
        lambda: optim.chain(optim.scale(-1.0), optim.scale_by_backtracking_linesearch(
            15, slope_rtol=0.3, decrease_factor=0.5, increase_factor=2.0, store_grad=True,
            atol=1e-12, rtol=1e-9)),
        lambda: optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(
            15, slope_rtol=0.3, decrease_factor=0.5, increase_factor=2.0, store_grad=True,
            atol=1e-12, rtol=1e-9)), "both"),
    "sgd-zoom": (
        lambda: optim.chain(optim.scale(-1.0), optim.scale_by_zoom_linesearch(
            10, max_learning_rate=0.5)),
        lambda: optax.chain(optax.sgd(1.0), optax.scale_by_zoom_linesearch(
            10, max_learning_rate=0.5)), "zoom"),
}


def _numpy(f_jax: Callable[..., Any]) -> Callable[..., Any]:
    """jax's value and gradient of ``f_jax`` as NumPy: both sides then read the same
    bits, so what differs is the optimizers' own rounding (near convergence a hand-written
    gradient's last bit, over differences y of size 1e-9, would change rho by 1e-7)."""
    vg = jax.jit(jax.value_and_grad(f_jax))

    def f(p: Any) -> tuple[Any, Any]:
        v, g = vg(tree.map(jnp.asarray, p))
        return float(v), tree.map(np.asarray, g)
    return f


def _trajectories(problem: str, opt: str, steps: int) -> tuple[list[Any], list[Any]]:
    _, f_jax, p0 = PROBLEMS[problem]
    f_np = _numpy(f_jax)
    make, make_ref, kind = OPTS[opt]
    ours, ref = make(), make_ref()
    p, s = p0, ours.init(p0)
    q = tree.map(jnp.asarray, p0)
    t = ref.init(q)
    vg = jax.jit(jax.value_and_grad(f_jax))
    # jitted once per case (optax's searches run a lax.while_loop: slow unjitted)
    step = jax.jit(lambda g, t, q, v: ref.update(g, t, q, value=v, grad=g, value_fn=f_jax))
    plain = jax.jit(lambda g, t, q: ref.update(g, t, q))
    out, out_ref = [], []
    for _ in range(steps):
        v, g = f_np(p)
        kw: dict[str, Any] = {
            "": {}, "zoom": {"value": v, "grad": g, "value_and_grad_fn": f_np},
            "value": {"value": v, "grad": g, "value_fn": lambda w: f_np(w)[0]},
            "both": {"value": v, "grad": g, "value_and_grad_fn": f_np}}[kind]
        u, s = ours.update(s, g, p, **kw)
        p = optim.apply_updates(p, u)
        rv, rg = vg(q)
        ru, t = plain(rg, t, q) if kind == "" else step(rg, t, q, rv)
        q = optax.apply_updates(q, ru)
        out.append(p)
        out_ref.append(tree.map(np.asarray, q))
    return out, out_ref


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_trajectory_equals_optax(problem: str, opt: str) -> None:
    # the 6-d quadratic has converged by step 10: beyond it both compare rounding noise
    steps = {"rosenbrock": 30, "logistic": 15, "quadratic": 10}[problem]
    # Rosenbrock's zoom search rounds its cubic steps apart from optax's by a few ulps, which
    # the valley's conditioning carries to ~1e-10 by step 15: up to 6e-10 relative at step
    # 23 of 30 on an AMD EPYC host, level after (under 1e-10 on an Intel Xeon one)
    tol = 2e-9 if problem == "rosenbrock" else 1e-10
    ours, ref = _trajectories(problem, opt, steps)
    for k, (p, q) in enumerate(zip(ours, ref, strict=True)):
        for key in q:
            np.testing.assert_allclose(p[key], q[key], rtol=tol, atol=1e-10,
                                       err_msg=f"step {k}, {key}")
    moved = max(float(np.max(np.abs(ours[-1][k] - PROBLEMS[problem][2][k]))) for k in ref[0])
    assert moved > 1e-3  # the comparison is not of two standing starts


def test_lbfgs_state_equals_optax() -> None:
    """The ring buffers, weights, line-search value and step size, after 7 steps (memory
    3: the buffer has wrapped twice; later, near the optimum, rho = 1/<s, y> of pairs of
    size 1e-8 is rounding noise)."""
    _, f_jax, p0 = PROBLEMS["logistic"]
    f_np = _numpy(f_jax)
    ours, ref = optim.lbfgs(memory_size=3), optax.lbfgs(memory_size=3)
    p, s, q = p0, ours.init(p0), tree.map(jnp.asarray, p0)
    t = ref.init(q)
    step = jax.jit(lambda g, t, q, v: ref.update(g, t, q, value=v, grad=g, value_fn=f_jax))
    for _ in range(7):
        v, g = f_np(p)
        u, s = ours.update(s, g, p, value=v, grad=g, value_and_grad_fn=f_np)
        p = optim.apply_updates(p, u)
        rv, rg = jax.value_and_grad(f_jax)(q)
        ru, t = step(rg, t, q, rv)
        q = optax.apply_updates(q, ru)
    mine, theirs = s.states["lbfgs"], t[0]
    assert int(mine.count) == int(theirs.count) == 7
    # optax keeps a stacked tree; ours its raveled rows, leaves in tree.ravel's order (b, w)
    for field in ("diff_params_memory", "diff_updates_memory"):
        stacked = getattr(theirs, field)
        rows = np.concatenate([np.asarray(stacked["b"])[:, None], np.asarray(stacked["w"])], 1)
        np.testing.assert_allclose(getattr(mine, field), rows, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mine.weights_memory, theirs.weights_memory, rtol=1e-9)
    ls, rls = s.states["linesearch"], t[2]
    np.testing.assert_allclose(ls.learning_rate, rls.learning_rate, rtol=1e-10)
    np.testing.assert_allclose(ls.value, rls.value, rtol=1e-12)
    assert int(ls.info.num_linesearch_steps) == int(rls.info.num_linesearch_steps)


def test_backtracking_signature_is_optaxs() -> None:
    """Names, order and defaults, so that a positional call means the same in both."""
    import inspect

    def params(fn: Any) -> list[tuple[str, Any]]:
        return [(k, v.default) for k, v in inspect.signature(fn).parameters.items()]

    assert params(optim.scale_by_backtracking_linesearch) == \
        params(optax.scale_by_backtracking_linesearch)
