"""optim.normalize (optax.contrib's): g / ‖g‖ over the whole tree, SAM's ascent direction;
and the sam docstring's example, chain(normalize(), sgd(rho)) as the adversary, which
runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funcdl import optim, tree


def test_normalize_divides_by_the_global_norm() -> None:
    opt = optim.normalize()
    g = {"w": np.array([[3.0, 0.0]], np.float32), "b": np.array([4.0], np.float32)}
    u, state = opt.update(opt.init(g), g)
    assert state == optim.EmptyState()
    np.testing.assert_array_equal(u["w"], np.array([[0.6, 0.0]], np.float32))
    np.testing.assert_array_equal(u["b"], np.array([0.8], np.float32))
    assert all(x.dtype == np.float32 for x in tree.leaves(u))


def test_normalize_of_zero_is_zero_and_of_a_huge_float32_gradient_is_a_unit() -> None:
    opt = optim.normalize()
    zero = {"w": np.zeros(3, np.float32)}
    np.testing.assert_array_equal(opt.update(opt.init(zero), zero)[0]["w"], 0.0)  # optax: NaN
    big = {"w": np.full(4, 3e19, np.float32)}  # Σg² past float32's range
    np.testing.assert_allclose(opt.update(opt.init(big), big)[0]["w"], 0.5, rtol=1e-6)


def test_sam_with_a_normalized_adversary_ascends_rho_along_g_over_its_norm() -> None:
    """The example of sam's docstring: the ascent step is rho·g/‖g‖, then the outer step
    jumps back and applies sgd to the gradient at the ascended point."""
    rho, lr = 0.05, 0.1
    opt = optim.sam(optim.sgd(lr), optim.chain(optim.normalize(), optim.sgd(rho)), 2)
    p = {"w": np.array([3.0, 4.0])}
    state = opt.init(p)
    u, state = opt.update(state, p, p)  # grads of |w|²/2 are w
    p1 = optim.apply_updates(p, u)
    np.testing.assert_allclose(p1["w"], p["w"] + rho * p["w"] / 5.0, rtol=1e-12)
    u, state = opt.update(state, p1, p1)
    p2 = optim.apply_updates(p1, u)
    np.testing.assert_allclose(p2["w"], p["w"] - lr * p1["w"], rtol=1e-12)


def test_normalize_matches_optax() -> None:
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        g = {"a": np.arange(6.0).reshape(2, 3) - 2.5, "b": np.array([1e-3, -7.0])}
        want, _ = optax.contrib.normalize().update(g, optax.contrib.normalize().init(g))
        got, _ = optim.normalize().update(optim.normalize().init(g), g)
        for k in g:
            np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=1e-14)
    assert math.isclose(optim.global_norm(got), 1.0, rel_tol=1e-14)
