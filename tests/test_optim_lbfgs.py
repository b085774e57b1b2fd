"""scale_by_lbfgs, lbfgs and the two line searches: the two-loop recursion against the
explicit BFGS inverse-Hessian matrix, the ring buffer, closed-form first steps and Armijo
steps, the Wolfe conditions, convergence (quadratic, MLP), dtypes, pytrees, keyword
forwarding and bad input. optax cross-checks: test_optim_lbfgs_optax.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import optim, tree

RNG = np.random.default_rng(1)
Q = RNG.normal(size=(5, 5))
A = Q @ Q.T + np.eye(5)
B = RNG.normal(size=5)


def quad(w: Any) -> tuple[float, Any]:
    return float(0.5 * w @ A @ w - B @ w), A @ w - B


def bfgs_inverse(pairs: list[tuple[Any, Any]], gamma: float, n: int) -> Any:
    """The explicit L-BFGS matrix: H = gamma I, then H <- V^T H V + rho s s^T per pair,
    oldest first, V = I - rho y s^T."""
    H = gamma * np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


def _run_plain(memory: int, steps: int, scale_init: bool = True
               ) -> tuple[list[Any], list[Any], list[Any], Any]:
    """scale_by_lbfgs on the quadratic with a fixed step -0.1·u: the params, grads and
    outputs at each update, and the last state."""
    opt = optim.scale_by_lbfgs(memory, scale_init)
    w = RNG.normal(size=5)
    s = opt.init(w)
    ws, gs, us = [], [], []
    for _ in range(steps):
        g = quad(w)[1]
        u, s = opt.update(s, g, w)
        ws.append(w), gs.append(g), us.append(u)
        w = w - 0.1 * u
    return ws, gs, us, s


@pytest.mark.parametrize("memory,steps", [(10, 4), (2, 6), (1, 3)])
@pytest.mark.parametrize("scale_init", [True, False])
def test_two_loop_equals_explicit_bfgs_matrix(memory: int, steps: int,
                                              scale_init: bool) -> None:
    ws, gs, us, _ = _run_plain(memory, steps, scale_init)
    g0 = gs[0]
    first = min(1.0, 1.0 / np.linalg.norm(g0)) if scale_init else 1.0
    np.testing.assert_allclose(us[0], first * g0, rtol=1e-14)
    for k in range(1, steps):
        pairs = [(ws[j + 1] - ws[j], gs[j + 1] - gs[j]) for j in range(k)][-memory:]
        s, y = pairs[-1]
        gamma = (s @ y) / (y @ y) if scale_init else 1.0
        H = bfgs_inverse(pairs, gamma, 5)
        np.testing.assert_allclose(us[k], H @ gs[k], rtol=1e-10, atol=1e-12)
    # the secant condition, H y = s for the newest pair: a wrong rho or V breaks it
    np.testing.assert_allclose(bfgs_inverse(pairs, gamma, 5) @ y, s, rtol=1e-10)


def test_ring_buffer_wraps_past_memory_size() -> None:
    ws, gs, _, state = _run_plain(3, 6)
    assert int(state.count) == 6
    for k in range(1, 6):  # pair k (from update k-1 to k) in slot (k-1) % 3; the last 3 kept
        if k < 3:
            continue
        slot = (k - 1) % 3
        np.testing.assert_array_equal(state.diff_params_memory[slot], ws[k] - ws[k - 1])
        np.testing.assert_array_equal(state.diff_updates_memory[slot], gs[k] - gs[k - 1])
        s, y = ws[k] - ws[k - 1], gs[k] - gs[k - 1]
        np.testing.assert_allclose(state.weights_memory[slot], 1.0 / (s @ y), rtol=1e-14)
    np.testing.assert_array_equal(state.params, ws[-1])
    np.testing.assert_array_equal(state.updates, gs[-1])


def test_first_step_and_learning_rate_closed_form() -> None:
    opt = optim.lbfgs(learning_rate=0.5, linesearch=None)
    w = {"a": np.array([3.0, 4.0])}  # ||g|| = 5 for g = w
    u, _ = opt.update(opt.init(w), w, w)
    np.testing.assert_allclose(u["a"], -0.5 * w["a"] / 5.0, rtol=1e-15)
    small = {"a": np.array([0.3, 0.4])}  # ||g|| < 1: min(1, 1/||g||) = 1
    u, _ = opt.update(opt.init(small), small, small)
    np.testing.assert_allclose(u["a"], -0.5 * small["a"], rtol=1e-15)


def test_backtracking_armijo_closed_form() -> None:
    """f = x², x = 1, u = -g = -2: eta = 1 gives f = 1 (not below 1 - 1e-4·4), eta = 0.8
    gives 0.36: the step is -1.6."""
    opt = optim.chain(optim.scale(-1.0), optim.scale_by_backtracking_linesearch(5))
    x = np.array([1.0])
    state = opt.init(x)
    u, state = opt.update(state, 2 * x, x, value=1.0, grad=2 * x,
                          value_fn=lambda p: float(p[0] ** 2))
    np.testing.assert_allclose(u, [-1.6], rtol=1e-15)
    ls = state.states[1]
    assert float(ls.learning_rate) == pytest.approx(0.8, rel=1e-15)
    assert float(ls.value) == pytest.approx(0.36, rel=1e-14)
    assert int(ls.info.num_linesearch_steps) == 2 and float(ls.info.decrease_error) == 0.0
    # next call starts from min(1.5 · 0.8, 1) = 1 again
    u, _ = opt.update(state, 2 * x, x, value=1.0, grad=2 * x,
                      value_fn=lambda p: float(p[0] ** 2))
    np.testing.assert_allclose(u, [-1.6], rtol=1e-15)


@pytest.mark.parametrize("leaf", ["a", "b"])
def test_backtracking_slope_sums_every_leaf(leaf: str) -> None:
    """As above with the descent in one of two leaves: a slope read from the other would
    be 0, and eta = 1 (f = 1, not above 1 - 0) accepted."""
    opt = optim.chain(optim.scale(-1.0), optim.scale_by_backtracking_linesearch(5))
    p = {"a": np.zeros(1), "b": np.zeros(1), leaf: np.ones(1)}
    g = tree.map(lambda x: 2 * x, p)
    u, _ = opt.update(opt.init(p), g, p, value=1.0, grad=g,
                      value_fn=lambda q: float(q["a"][0] ** 2 + q["b"][0] ** 2))
    np.testing.assert_allclose(u[leaf], [-1.6], rtol=1e-15)


def _zoom_on_parabola(scale: float, **kw: Any) -> tuple[Any, Any]:
    """One zoom search on f = x², x = 1, along u = -scale · f'(1)."""
    opt = optim.chain(optim.scale(-scale), optim.scale_by_zoom_linesearch(
        10, initial_guess_strategy="one", **kw))
    x = np.array([1.0])

    def vg(p: Any) -> tuple[float, Any]:
        return float(p[0] ** 2), 2 * p

    u, state = opt.update(opt.init(x), 2 * x, x, value=1.0, grad=2 * x, value_and_grad_fn=vg)
    return u, state.states[1]


def test_zoom_brackets_by_doubling_until_the_curvature_holds() -> None:
    """u = -0.02: the slope at eta is -0.04 (1 - 0.02 eta), within 0.9 · 0.04 from eta = 5
    on: eta = 1, 2, 4 are too short, 8 is taken."""
    u, ls = _zoom_on_parabola(0.01)
    np.testing.assert_allclose(u, [-0.16], rtol=1e-15)
    assert float(ls.learning_rate) == 8.0 and int(ls.info.num_linesearch_steps) == 4
    np.testing.assert_allclose(ls.value, 0.84 ** 2, rtol=1e-15)
    np.testing.assert_allclose(ls.grad, [1.68], rtol=1e-15)


def test_zoom_interpolates_a_parabola_exactly() -> None:
    """u = -6: eta = 1 overshoots (f = 25); the quadratic through f(0), f'(0), f(1) has
    its minimum at eta = 1/6, x = 0, where both conditions hold: two evaluations."""
    u, ls = _zoom_on_parabola(3.0)
    np.testing.assert_allclose(u, [-1.0], rtol=1e-14)
    assert int(ls.info.num_linesearch_steps) == 2 and float(ls.info.curvature_error) == 0.0


def test_zoom_takes_no_step_where_the_loss_is_never_finite() -> None:
    opt = optim.chain(optim.scale(-1.0), optim.scale_by_zoom_linesearch(3))
    x = np.array([1.0])
    u, state = opt.update(opt.init(x), 2 * x, x, value=1.0, grad=2 * x,
                          value_and_grad_fn=lambda p: (np.inf, 2 * p))
    np.testing.assert_array_equal(u, [0.0])
    ls = state.states[1]
    assert float(ls.learning_rate) == 0.0 and float(ls.value) == 1.0
    assert np.isinf(ls.info.decrease_error) and int(ls.info.num_linesearch_steps) == 3


def rosen(p: Any) -> tuple[float, Any]:
    x, y = p
    return (float((1 - x) ** 2 + 100 * (y - x * x) ** 2),
            np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]))


def test_zoom_step_meets_strong_wolfe_on_rosenbrock() -> None:
    opt = optim.lbfgs()
    p = np.array([-1.2, 1.0])
    state = opt.init(p)
    for _ in range(8):
        v, g = rosen(p)
        u, state = opt.update(state, g, p, value=v, grad=g, value_and_grad_fn=rosen)
        eta = float(state.states["linesearch"].learning_rate)
        d = u / eta  # the direction searched: -H g
        v1, g1 = rosen(p + u)
        assert v1 <= v + 1e-4 * eta * (g @ d)  # sufficient decrease
        assert abs(g1 @ d) <= 0.9 * abs(g @ d)  # curvature
        assert state.states["linesearch"].value == v1
        p = p + u
    assert rosen(p)[0] < 4.2  # started at 24.2


def test_lbfgs_beats_sgd_on_ill_conditioned_quadratic() -> None:
    """Condition 1e3 in 20 dimensions: L-BFGS divides the loss by 1e10 in 111 steps (as
    optax's, checked by hand), sgd at its best fixed rate 1/L by 2e4 in 10x as many."""
    d = np.logspace(0, 3, 20)

    def f(w: Any) -> tuple[float, Any]:
        return float(0.5 * np.sum(d * w * w)), d * w

    w0 = np.ones(20)
    v0 = f(w0)[0]
    opt = optim.lbfgs()
    w, s = w0, opt.init(w0)
    n = 0
    while f(w)[0] >= 1e-10 * v0 and n < 400:
        v, g = f(w)
        u, s = opt.update(s, g, w, value=v, grad=g, value_and_grad_fn=f)
        w, n = w + u, n + 1
    sgd, w2 = optim.sgd(1.0 / d.max()), w0
    s2 = sgd.init(w2)
    for _ in range(10 * n):
        u, s2 = sgd.update(s2, f(w2)[1], w2)
        w2 = w2 + u
    assert n <= 130, n
    assert f(w2)[0] > 1e-5 * v0  # sgd after 10x as many steps: 1e5 times worse


def test_lbfgs_fits_mlp_full_batch() -> None:
    model = L.Sequential(L.Dense(16), L.Tanh(), L.Dense(1))
    k_data, k_init = fd.random.split(fd.random.key(0), 2)
    x, y = fd.data.disk(k_data, 200)
    x, y = x.astype(np.float64), y.astype(np.float64)
    _, params = model.init(k_init, (None, 2))
    params = tree.astype(params, np.float64)
    vg = fd.value_and_grad(model, fd.losses.bce_with_logits)

    def value_and_grad(p: Any) -> tuple[float, Any]:
        return vg(p, x, y)

    opt = optim.lbfgs()
    state = opt.init(params)
    loss0 = float(value_and_grad(params)[0])
    for _ in range(150):
        loss, grads = value_and_grad(params)
        updates, state = opt.update(state, grads, params, value=loss, grad=grads,
                                    value_and_grad_fn=value_and_grad)
        params = optim.apply_updates(params, updates)
    loss = float(value_and_grad(params)[0])
    assert loss < 0.05 < loss0, (loss0, loss)


def _dict_problem(p: Any) -> tuple[float, Any]:
    w = np.concatenate([p["a"], p["b"].ravel()])
    v, g = quad(w)
    return v, {"a": g[:2], "b": g[2:].reshape(3, 1)}


@pytest.mark.parametrize("search", ["zoom", "backtracking"])
def test_dict_of_arrays_follows_the_flat_trajectory(search: str) -> None:
    def make() -> Any:
        return optim.lbfgs(memory_size=3, linesearch=(
            optim.scale_by_backtracking_linesearch(20, store_grad=True)
            if search == "backtracking" else optim.scale_by_zoom_linesearch(
                20, initial_guess_strategy="one")))
    opt, flat = make(), make()
    p = {"a": np.array([1.0, -1.0]), "b": np.array([[0.5], [2.0], [0.0]])}
    w = np.array([1.0, -1.0, 0.5, 2.0, 0.0])
    s, t = opt.init(p), flat.init(w)
    for _ in range(8):
        v, g = _dict_problem(p)
        u, s = opt.update(s, g, p, value=v, grad=g, value_and_grad_fn=_dict_problem)
        p = optim.apply_updates(p, u)
        v, g = quad(w)
        u, t = flat.update(t, g, w, value=v, grad=g, value_and_grad_fn=quad)
        w = w + u
        np.testing.assert_allclose(np.concatenate([p["a"], p["b"].ravel()]), w,
                                   rtol=1e-12, atol=1e-14)
    assert quad(w)[0] < quad(np.array([1.0, -1.0, 0.5, 2.0, 0.0]))[0] - 1.0


def test_float32_stays_float32() -> None:
    p = {"a": np.array([1.0, -2.0], np.float32), "b": np.ones((2, 2), np.float32)}

    def f(q: Any) -> tuple[Any, Any]:
        return (np.float32(np.sum(q["a"] ** 2) + np.sum(q["b"] ** 2)),
                {"a": 2 * q["a"], "b": 2 * q["b"]})

    for opt in (optim.lbfgs(), optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(
            10, store_grad=True))):
        state = opt.init(p)
        for _ in range(3):
            v, g = f(p)
            u, state = opt.update(state, g, p, value=v, grad=g, value_and_grad_fn=f)
            assert all(x.dtype == np.float32 for x in tree.leaves(u))
            p = optim.apply_updates(p, u)
        dtypes = {np.asarray(x).dtype for x in tree.leaves(state)} - {np.dtype(np.int64)}
        assert dtypes == {np.dtype(np.float32)}, dtypes
        assert all(x.dtype == np.float32 for x in tree.leaves(p))


def test_chain_forwards_value_fn_to_backtracking() -> None:
    opt = optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(20))
    w = np.zeros(5)
    s = opt.init(w)
    for _ in range(20):
        v, g = quad(w)
        u, s = opt.update(s, g, w, value=v, grad=g, value_fn=lambda p: quad(p)[0])
        w = w + u
    np.testing.assert_allclose(w, np.linalg.solve(A, B), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------- bad input

W = np.zeros(5)
G = quad(W)[1]


def _update(opt: Any, **kw: Any) -> Any:
    return opt.update(opt.init(W), G, W, **kw)


BAD = [
    ("zoom-no-value", optim.lbfgs, dict(grad=G, value_and_grad_fn=quad), TypeError,
     r"scale_by_zoom_linesearch\.update: needs value=.*value=loss"),
    ("zoom-value-fn-only", optim.lbfgs, dict(value=0.0, grad=G, value_fn=lambda p: 0.0),
     TypeError, r"scale_by_zoom_linesearch\.update: needs value_and_grad_fn=.*vg\(p, x, y\)"),
    ("zoom-no-grad", optim.lbfgs, dict(value=0.0, value_and_grad_fn=quad), TypeError,
     r"scale_by_zoom_linesearch\.update: needs grad="),
    ("backtracking-no-value-fn",
     lambda: optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(5)),
     dict(value=0.0, grad=G), TypeError,
     r"scale_by_backtracking_linesearch\.update: needs value_fn=.*value_fn=lambda p"),
    ("backtracking-store-grad-no-vg",
     lambda: optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(5, store_grad=True)),
     dict(value=0.0, grad=G, value_fn=lambda p: 0.0), TypeError,
     r"scale_by_backtracking_linesearch\.update: needs value_and_grad_fn="),
    ("value-fn-not-callable",
     lambda: optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(5)),
     dict(value=0.0, grad=G, value_fn=3.0), TypeError,
     r"scale_by_backtracking_linesearch\.update: value_fn must be a function of the params, "
     r"got float"),
    ("vg-not-callable", optim.lbfgs, dict(value=0.0, grad=G, value_and_grad_fn="f"),
     TypeError, r"scale_by_zoom_linesearch\.update: value_and_grad_fn must be a function"),
    ("value-not-scalar", optim.lbfgs, dict(value=np.ones(3), grad=G, value_and_grad_fn=quad),
     TypeError, r"scale_by_zoom_linesearch\.update: value must be a real scalar \(the loss\), "
     r"got an array of shape \(3,\)"),
    ("value-nan", optim.lbfgs, dict(value=np.nan, grad=G, value_and_grad_fn=quad), ValueError,
     r"scale_by_zoom_linesearch\.update: value is nan; the line search needs the finite loss"),
    ("value-inf-backtracking",
     lambda: optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(5)),
     dict(value=np.inf, grad=G, value_fn=lambda p: 0.0), ValueError,
     r"scale_by_backtracking_linesearch\.update: value is inf"),
    ("vg-returns-scalar", optim.lbfgs, dict(value=0.0, grad=G, value_and_grad_fn=lambda p: 1.0),
     TypeError, r"scale_by_zoom_linesearch\.update: value_and_grad_fn\(params\) must return "
     r"\(loss, grads\), got float"),
    ("value-fn-returns-array",
     lambda: optim.lbfgs(linesearch=optim.scale_by_backtracking_linesearch(5)),
     dict(value=0.0, grad=G, value_fn=lambda p: p), TypeError,
     r"scale_by_backtracking_linesearch\.update: value_fn\(params\) must be a real scalar"),
    ("grad-wrong-shape", optim.lbfgs, dict(value=0.0, grad=G[:3], value_and_grad_fn=quad),
     ValueError, r"scale_by_zoom_linesearch\.update: shape mismatch at the root: params has "
     r"\(5,\), grad has \(3,\)"),
    ("unknown-keyword", optim.lbfgs, dict(value=0.0, grad=G, value_and_grad_fn=quad, x=1),
     TypeError, r"lbfgs\.update: got an unexpected keyword argument 'x'"),
]


@pytest.mark.parametrize("make,kw,exc,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_update_keywords(make: Any, kw: Any, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        _update(make(), **kw)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: optim.scale_by_lbfgs(0), ValueError,
     r"scale_by_lbfgs: memory_size \(the number of \(s, y\) pairs kept\) must be >= 1"),
    (lambda: optim.lbfgs(memory_size=2.5), TypeError, r"scale_by_lbfgs: memory_size"),
    (lambda: optim.scale_by_lbfgs(scale_init_precond="no"), TypeError,
     r"scale_by_lbfgs: scale_init_precond must be True or False"),
    (lambda: optim.scale_by_backtracking_linesearch(-1), ValueError,
     r"scale_by_backtracking_linesearch: max_backtracking_steps"),
    (lambda: optim.scale_by_backtracking_linesearch(5, decrease_factor=1.0), ValueError,
     r"scale_by_backtracking_linesearch: decrease_factor"),
    (lambda: optim.scale_by_zoom_linesearch(5, initial_guess_strategy="two"), ValueError,
     r"scale_by_zoom_linesearch: initial_guess_strategy must be 'one'"),
    (lambda: optim.scale_by_zoom_linesearch(5, curv_rtol=-1), ValueError,
     r"scale_by_zoom_linesearch: curv_rtol"),
    (lambda: optim.lbfgs(linesearch=optim.scale_by_zoom_linesearch), TypeError,
     r"lbfgs: .*did you forget to call it"),
])
def test_bad_settings(call: Any, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_state_of_other_params_and_swapped_call() -> None:
    opt = optim.scale_by_lbfgs(3)
    with pytest.raises(ValueError, match=r"scale_by_lbfgs\.update: the params have 5 entries "
                                         r"but the state was made for 2"):
        opt.update(opt.init(np.zeros(2)), G, W)
    with pytest.raises(ValueError, match=r"scale_by_lbfgs\.update: the state's "
                                         r"diff_params_memory has shape \(3, 5\)"):
        optim.scale_by_lbfgs(4).update(opt.init(W), G, W)
    with pytest.raises(TypeError, match=r"scale_by_lbfgs\.update: the first argument must be"):
        opt.update(G, opt.init(W), W)
    with pytest.raises(ValueError, match=r"scale_by_lbfgs\.update: needs the params"):
        opt.update(opt.init(W), G)
