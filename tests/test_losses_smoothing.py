"""softmax_cross_entropy's label_smoothing, as torch's: the target (1 - ε) t + ε / C, for
integer labels and for probabilities; against a NumPy reference written here, finite
differences, and torch's F.cross_entropy when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import losses, testing

RNG = np.random.default_rng(0)
Z = RNG.standard_normal((6, 5))
LABELS = RNG.integers(0, 5, 6)
PROBS = RNG.dirichlet(np.ones(5), 6)


def _reference(z, t, eps):
    """Per-example -Σ_c t'_c log softmax(z)_c and its gradient, t' the smoothed target."""
    t = np.eye(z.shape[-1])[t] if t.dtype.kind == "i" else t
    t = (1 - eps) * t + eps / z.shape[-1]
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return -(t * logp).sum(-1), np.exp(logp) * t.sum(-1, keepdims=True) - t


@pytest.mark.parametrize("target", [LABELS, PROBS], ids=["labels", "probabilities"])
@pytest.mark.parametrize("eps", [0.1, 0.7, 1.0])
def test_label_smoothing_matches_the_smoothed_target(target, eps):
    per, dz = _reference(Z, target, eps)
    value, pullback = losses.softmax_cross_entropy.vjp(Z, target, label_smoothing=eps)
    np.testing.assert_allclose(value, per.mean(), rtol=1e-13)
    np.testing.assert_allclose(pullback(1.0), dz / len(Z), rtol=1e-12, atol=1e-16)
    rows, pb = losses.softmax_cross_entropy.vjp(Z, target, "none", label_smoothing=eps)
    np.testing.assert_allclose(rows, per, rtol=1e-13)
    c = RNG.standard_normal(len(Z))
    np.testing.assert_allclose(pb(c), dz * c[:, None], rtol=1e-12, atol=1e-15)
    testing.check_loss(losses.softmax_cross_entropy, Z, target, label_smoothing=eps)


def test_smoothing_changes_the_loss_and_zero_is_the_default():
    plain = losses.softmax_cross_entropy(Z, LABELS)
    assert losses.softmax_cross_entropy(Z, LABELS, label_smoothing=0.0) == plain
    assert losses.softmax_cross_entropy(Z, LABELS, label_smoothing=0.2) != plain


def test_full_smoothing_ignores_an_impossible_label_without_a_warning():
    z = np.array([[0.0, -np.inf, 1.0]])  # class 1 masked out, and labelled: -log p = inf
    assert losses.softmax_cross_entropy(z, np.array([1])) == np.inf
    assert losses.softmax_cross_entropy(z, np.array([1]), label_smoothing=0.5) == np.inf
    value = losses.softmax_cross_entropy(z, np.array([1]), label_smoothing=1.0)
    assert value == np.inf  # the uniform target still weighs the masked class (torch: NaN,
    # from inf · 0 in its label term, which ε = 1 drops)


def test_float32_stays_float32():
    z = Z.astype(np.float32)
    for target in (LABELS, PROBS.astype(np.float32)):
        value, pullback = losses.softmax_cross_entropy.vjp(z, target, label_smoothing=0.1)
        assert pullback(1.0).dtype == np.float32
        np.testing.assert_allclose(value, _reference(Z, target, 0.1)[0].mean(), rtol=1e-5)


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.5, ValueError),
                                        ("0.1", TypeError), (np.nan, ValueError)])
def test_bad_label_smoothing_is_named(bad, error):
    with pytest.raises(error, match=r"softmax_cross_entropy.*label_smoothing"):
        losses.softmax_cross_entropy(Z, LABELS, label_smoothing=bad)


def test_label_smoothing_against_torch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    for target in (LABELS, PROBS):
        for reduction in ("mean", "sum", "none"):
            value, pullback = losses.softmax_cross_entropy.vjp(Z, target, reduction,
                                                               label_smoothing=0.3)
            zt = torch.tensor(Z, requires_grad=True)
            ref = functional.cross_entropy(zt, torch.tensor(target), reduction=reduction,
                                           label_smoothing=0.3)
            ref.backward(torch.ones_like(ref))
            c = np.ones(len(Z)) if reduction == "none" else 1.0
            np.testing.assert_allclose(value, ref.detach().numpy(), rtol=1e-13)
            np.testing.assert_allclose(pullback(c), zt.grad.numpy(), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("smooth", [0.0, 0.1])
@pytest.mark.parametrize("layout", ["swapaxes", "fortran"])
def test_cross_entropy_of_permuted_logits_has_the_same_gradient(smooth, layout):
    # the softmax took the logits' layout, so reshaping it to (examples, classes) copied,
    # and the label's -1 went into the copy: the value was right, dz off by up to 0.08
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (3, 4))
    z = (rng.normal(size=(3, 5, 4)).transpose(0, 2, 1) if layout == "swapaxes"
         else np.asfortranarray(rng.normal(size=(3, 4, 5))))
    loss = losses.softmax_cross_entropy
    value, pullback = loss.vjp(z, labels, label_smoothing=smooth)
    value_c, pullback_c = loss.vjp(np.ascontiguousarray(z), labels, label_smoothing=smooth)
    assert value == value_c
    np.testing.assert_array_equal(pullback(), pullback_c())
    np.testing.assert_allclose(pullback().sum(axis=-1), 0.0, atol=1e-15)
