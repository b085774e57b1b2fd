"""float64 cross-checks of the optax losses ported to funcdl.losses (ntxent, cosine_*,
poly_loss_cross_entropy, hinge, sparsemax, multiclass_sparsemax) and of the Sparsemax
layer, against optax/JAX (values and gradients), and kl_div(log_target=True) against
torch. Run under /tmp/benchenv."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
pytestmark = pytest.mark.usefixtures("jax64")  # float64 in each test, restored after
jnp = jax.numpy

from funcdl import losses  # noqa: E402
from funcdl.layers.sparsemax import Sparsemax  # noqa: E402

R = np.random.default_rng(7)
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _ours(loss: Any, x: np.ndarray, t: Any, **kw: Any) -> tuple[float, np.ndarray]:
    value, pullback = loss.vjp(x, t, reduction="sum", **kw)
    return value, pullback(1.0)


def _theirs(f: Any, x: np.ndarray) -> tuple[float, np.ndarray]:
    value, g = jax.value_and_grad(lambda z: jnp.sum(f(z)))(jnp.asarray(x))
    return float(value), np.asarray(g)


def _agree(ours: tuple[float, np.ndarray], theirs: tuple[float, np.ndarray]) -> None:
    np.testing.assert_allclose(ours[0], theirs[0], **TOL)
    np.testing.assert_allclose(ours[1], theirs[1], **TOL)


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 3], [5, 5, 5, 1, 1, 9]])
def test_ntxent_matches_optax(temperature: float, labels: list[int]) -> None:
    x = R.normal(size=(6, 5))
    y = np.array(labels)
    value, pullback = losses.ntxent.vjp(x, y, temperature=temperature)
    theirs = _theirs(lambda z: optax.losses.ntxent(z, jnp.asarray(y), temperature), x)
    _agree((value, pullback(1.0)), theirs)


def test_ntxent_zero_embedding_matches_optax() -> None:
    x = R.normal(size=(4, 3))
    x[1] = 0.0  # optax clips the squared norm at eps: u = 0, a finite gradient
    y = np.array([0, 0, 1, 1])
    value, pullback = losses.ntxent.vjp(x, y)
    theirs = _theirs(lambda z: optax.losses.ntxent(z, jnp.asarray(y)), x)
    _agree((value, pullback(1.0)), theirs)


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 5.0])
@pytest.mark.parametrize("which", ["cosine_similarity", "cosine_distance"])
def test_cosine_matches_optax(which: str, epsilon: float) -> None:
    x, t = R.normal(size=(5, 4)), R.normal(size=(5, 4))
    x[2] *= 0.1  # a norm under a clip of 0.3 or 5: the clipped branch
    theirs = _theirs(lambda z: getattr(optax.losses, which)(z, jnp.asarray(t), epsilon=epsilon),
                     x)
    _agree(_ours(getattr(losses, which), x, t, epsilon=epsilon), theirs)


@pytest.mark.parametrize("epsilon", [2.0, -1.0, 0.0])
def test_poly_loss_matches_optax(epsilon: float) -> None:
    x = R.normal(size=(4, 5)) * 3
    t = R.random((4, 5))
    t /= t.sum(-1, keepdims=True)
    tt = jnp.asarray(t)
    theirs = _theirs(lambda z: optax.losses.poly_loss_cross_entropy(z, tt, epsilon=epsilon), x)
    _agree(_ours(losses.poly_loss_cross_entropy, x, t, epsilon=epsilon), theirs)


def test_poly_loss_large_logits_match_optax() -> None:
    x = R.normal(size=(3, 4)) * 1e4
    t = np.eye(4)[[0, 2, 3]]
    theirs = _theirs(lambda z: optax.losses.poly_loss_cross_entropy(z, jnp.asarray(t)), x)
    _agree(_ours(losses.poly_loss_cross_entropy, x, t), theirs)


def test_hinge_matches_optax_with_kinks() -> None:
    x = np.concatenate([R.normal(size=10) * 2, [1.0, -1.0, 0.5]])
    t = np.concatenate([np.sign(R.normal(size=10)), [1.0, -1.0, -1.0]])  # two on the kink
    theirs = _theirs(lambda z: optax.losses.hinge_loss(z, jnp.asarray(t)), x)
    _agree(_ours(losses.hinge, x, t), theirs)


def test_squared_hinge_matches_its_formula_by_jax() -> None:
    x, t = R.normal(size=(4, 3)) * 2, np.sign(R.normal(size=(4, 3)))
    theirs = _theirs(lambda z: jnp.maximum(0.0, 1 - z * t) ** 2, x)  # Keras's term
    _agree(_ours(losses.squared_hinge, x, t), theirs)


def test_binary_sparsemax_matches_optax() -> None:
    x = np.concatenate([R.normal(size=12) * 2, [1.0, -1.0, 3.0, -3.0]])
    y = np.concatenate([R.integers(0, 2, 12), [1, 0, 1, 0]])
    theirs = _theirs(lambda z: optax.losses.sparsemax_loss(z, jnp.asarray(y)), x)
    _agree(_ours(losses.sparsemax, x, y), theirs)


@pytest.mark.parametrize("scale", [1.0, 5.0, 1e4])
def test_multiclass_sparsemax_matches_optax(scale: float) -> None:
    x = R.normal(size=(6, 5)) * scale
    y = R.integers(0, 5, 6)
    theirs = _theirs(lambda z: optax.losses.multiclass_sparsemax_loss(z, jnp.asarray(y)), x)
    _agree(_ours(losses.multiclass_sparsemax, x, y), theirs)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_sparsemax_layer_matches_optax_projection(axis: int) -> None:
    x = R.normal(size=(3, 4, 5)) * 2
    dy = R.normal(size=x.shape)
    proj = jax.vmap(optax.projections.projection_simplex)

    def theirs(z: Any) -> Any:
        moved = jnp.moveaxis(z, axis, -1)
        flat = proj(moved.reshape(-1, moved.shape[-1])).reshape(moved.shape)
        return jnp.moveaxis(flat, -1, axis)

    y_theirs, back = jax.vjp(theirs, jnp.asarray(x))
    layer = Sparsemax(axis=axis)
    y, pullback = layer.vjp((), x)
    np.testing.assert_allclose(y, np.asarray(y_theirs), **TOL)
    np.testing.assert_allclose(pullback(dy)[1], np.asarray(back(jnp.asarray(dy))[0]), **TOL)


def test_kl_div_log_target_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    z, w = R.normal(size=(4, 5)), R.normal(size=(4, 5))
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    lt = w - np.log(np.exp(w).sum(-1, keepdims=True))
    zt = torch.tensor(lp, requires_grad=True)
    ref = torch.nn.functional.kl_div(zt, torch.tensor(lt), reduction="batchmean",
                                     log_target=True)
    ref.backward()
    value, pullback = losses.kl_div.vjp(lp, lt, reduction="batchmean", log_target=True)
    np.testing.assert_allclose(value, ref.item(), **TOL)
    assert zt.grad is not None
    np.testing.assert_allclose(pullback(1.0), zt.grad.numpy(), **TOL)
