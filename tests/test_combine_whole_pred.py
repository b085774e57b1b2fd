"""losses.combine with index None: several losses on one model's output (a segmentation's
Dice + cross-entropy on the same logits, segmentation_models' ``DiceLoss() +
CrossEntropyLoss()``): the weighted sum and its one cotangent, finite differences, a
model trained through value_and_grad, torch's sum of the same losses, and the refusals."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses
from funcdl.testing import check_loss

rng = np.random.default_rng(0)
Z = rng.standard_normal((2, 4, 5, 3))
Y = rng.integers(0, 3, (2, 4, 5))
Y[:, 0, 0] = 255
CE = partial(losses.softmax_cross_entropy, ignore_index=255)


def _soft_dice_vjp(pred, target):
    """1 - mean_c (2 Σ p t + 1) / (Σ p + Σ t + 1) over the labelled pixels, p = softmax."""
    valid = (target != 255)[..., None]
    t = np.eye(pred.shape[-1])[np.where(target == 255, 0, target)] * valid
    e = np.exp(pred - pred.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    axes = tuple(range(pred.ndim - 1))
    inter, card = (p * t * valid).sum(axes), (p * valid).sum(axes) + t.sum(axes)

    def pullback(g=1.0):
        dp = -g / len(inter) * (2 * t / (card + 1) - (2 * inter + 1) / (card + 1) ** 2) * valid
        return p * (dp - (dp * p).sum(-1, keepdims=True))
    return 1 - ((2 * inter + 1) / (card + 1)).mean(), pullback


DICE = losses.Loss("dice", _soft_dice_vjp)


def test_value_and_cotangent_are_the_weighted_sums():
    loss = losses.combine((DICE, None), (CE, None, 0.5))
    value, pullback = loss.vjp(Z, (Y, Y))
    v_dice, pb_dice = DICE.vjp(Z, Y)
    v_ce, pb_ce = losses.softmax_cross_entropy.vjp(Z, Y, ignore_index=255)
    assert value == pytest.approx(v_dice + 0.5 * v_ce, abs=1e-15)
    dz = pullback()
    assert isinstance(dz, np.ndarray) and dz.shape == Z.shape
    np.testing.assert_allclose(dz, pb_dice() + 0.5 * pb_ce(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(pullback(2.0), 2 * dz, rtol=1e-14)
    assert loss(Z, (Y, Y)) == value
    assert loss.name == "combine(dice, 0.5*softmax_cross_entropy(ignore_index=255))"


def test_finite_differences():
    check_loss(losses.combine((DICE, None), (CE, None, 0.5)), Z, (Y, Y))


def test_one_term_is_the_loss_itself():
    value, pullback = losses.combine((CE, None)).vjp(Z, (Y,))
    v, pb = losses.softmax_cross_entropy.vjp(Z, Y, ignore_index=255)
    assert value == v
    np.testing.assert_array_equal(pullback(), pb())


def test_trains_a_model_through_value_and_grad():
    model = L.Sequential(L.Conv2D(4, 3), L.ReLU(), L.Conv2D(3, 1))
    x = rng.standard_normal((2, 4, 5, 1)).astype(np.float32)
    _, params = model.init(fd.random.key(0), (None, 4, 5, 1))
    loss = losses.combine((losses.sigmoid_focal, None), (losses.mse, None, 2.0))
    target = rng.random((2, 4, 5, 3)).astype(np.float32)
    value, grads = fd.value_and_grad(model, loss)(params, x, (target, target))
    logits = model.apply(params, x)
    assert value == pytest.approx(losses.sigmoid_focal(logits, target)
                                  + 2.0 * losses.mse(logits, target), rel=1e-6)
    assert {g.dtype for g in fd.tree.leaves(grads)} == {np.dtype(np.float32)}


def test_matches_torch_sum_of_losses():
    torch = pytest.importorskip("torch")
    onehot = np.eye(3)[np.where(Y == 255, 0, Y)]
    loss = losses.combine((CE, None), (losses.sigmoid_focal, None, 0.25))
    value, pullback = loss.vjp(Z, (Y, onehot))
    zt = torch.tensor(Z.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    t = torch.tensor(onehot.transpose(0, 3, 1, 2).copy())
    p = torch.sigmoid(zt)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(zt, t, reduction="none")
    focal = (0.25 * t + 0.75 * (1 - t)) * ce * (1 - (p * t + (1 - p) * (1 - t))) ** 2
    total = (torch.nn.functional.cross_entropy(zt, torch.tensor(Y), ignore_index=255)
             + 0.25 * focal.mean())
    total.backward()
    assert value == pytest.approx(total.item(), abs=1e-13)
    np.testing.assert_allclose(pullback(), zt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-15)


def test_mixing_none_and_entries_is_refused():
    with pytest.raises(ValueError, match=r"combine\(dice, softmax_cross_entropy.*@1\).*every "
                       r"term or in none"):
        losses.combine((DICE, None), (CE, 1))


def test_an_array_pred_with_entries_says_to_pass_none():
    with pytest.raises(TypeError, match=r"got ndarray; for several losses on one output, "
                       r"pass index None"):
        losses.combine((DICE, 0), (CE, 0))(Z, (Y, Y))


def test_the_target_still_needs_one_entry_per_term():
    with pytest.raises(ValueError, match="target must be a tuple of 2 entries"):
        losses.combine((DICE, None), (CE, None))(Z, Y)
