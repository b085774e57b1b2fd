"""losses.masked: a loss counted at a padded batch's valid entries only, the mask or the
lengths travelling with the target; against the mean by hand, PyTorch's
``loss(reduction='none')[mask].mean()``, finite differences, and bad targets."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses as Lo
from funcdl import testing

N, T, F = 4, 5, 3
LENGTHS = np.array([5, 0, 2, 3])
MASK = np.arange(T) < LENGTHS[:, None]


def data(dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p, y = rng.normal(size=(2, N, T, F)).astype(dtype)
    return p, y


def test_value_and_grad_are_the_mean_over_valid_entries() -> None:
    p, y = data()
    value, pullback = Lo.masked(Lo.mse, "lengths").vjp(p, (y, LENGTHS))
    m = MASK[..., None]
    count = MASK.sum() * F  # each valid step's F entries
    assert value == pytest.approx(((p - y) ** 2 * m).sum() / count, rel=1e-14)
    # factor and sign: d/dp of Σ m (p - y)² / count, 0 at the padding
    np.testing.assert_allclose(pullback(1.0), 2 * (p - y) * m / count, rtol=1e-14, atol=0)
    np.testing.assert_allclose(pullback(-0.5), -(p - y) * m / count, rtol=1e-14, atol=0)


@pytest.mark.parametrize("valid", ["lengths", "valid", "full valid", "padding"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("inner", ["mse", "huber", "l1"])
def test_finite_differences(valid: str, reduction: str, inner: str) -> None:
    p, y = data()
    loss = {"mse": Lo.mse, "huber": functools.partial(Lo.huber, delta=0.3), "l1": Lo.l1}[inner]
    v = {"lengths": LENGTHS, "valid": MASK, "padding": ~MASK,
         "full valid": np.broadcast_to(MASK[..., None], (N, T, F)).copy()}[valid]
    kind = "valid" if valid == "full valid" else valid
    testing.check_loss(functools.partial(Lo.masked(loss, kind), reduction=reduction), p, (y, v))


def test_nan_and_inf_in_the_padding_reach_nothing() -> None:
    p, y = data()
    y = y.copy()
    y[~MASK] = np.nan
    y[1, 0, 0] = np.inf  # sequence 1 has no valid step
    with np.errstate(all="raise"):  # and no warning on the way
        value, pullback = Lo.masked(Lo.mse).vjp(p, (y, ~MASK))  # True at padding
        d = pullback(1.0)
    clean = np.where(MASK[..., None], y, 0.0)
    assert value == Lo.masked(Lo.mse, "valid")(p, (clean, MASK))
    assert np.isfinite(d).all() and not d[~MASK].any()
    np.testing.assert_array_equal(Lo.masked(Lo.mse, "valid").vjp(p, (clean, MASK))[1](1.0), d)


def test_cross_entropy_masked_is_ignore_index() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(N, T, 6))
    labels = rng.integers(0, 6, (N, T))
    value, pullback = Lo.masked(Lo.softmax_cross_entropy, "lengths").vjp(z, (labels, LENGTHS))
    ignored = np.where(MASK, labels, -100)
    want, want_pb = Lo.softmax_cross_entropy.vjp(z, ignored, ignore_index=-100)
    assert value == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(pullback(1.0), want_pb(1.0), rtol=1e-13, atol=1e-16)


def test_a_tuple_pred_gets_a_tuple_of_gradients_zeroed_at_the_padding() -> None:
    rng = np.random.default_rng(2)
    mean, y = rng.normal(size=(2, N, T, 1))
    var = rng.uniform(0.5, 2.0, (N, T, 1))
    value, pullback = Lo.masked(Lo.gaussian_nll, "lengths").vjp((mean, var), (y, LENGTHS))
    want = (0.5 * (np.log(var) + (mean - y) ** 2 / var))[MASK].mean()
    assert value == pytest.approx(want, rel=1e-13)
    dmean, dvar = pullback(1.0)
    assert not dmean[~MASK].any() and not dvar[~MASK].any()
    testing.check_loss(Lo.masked(Lo.gaussian_nll), (mean, var), (y, ~MASK))


def test_float32_stays_float32() -> None:
    p, y = data(np.float32)
    _, pullback = Lo.masked(Lo.mse, "lengths").vjp(p, (y, LENGTHS))
    assert pullback(1.0).dtype == np.float32
    terms, pb = Lo.masked(Lo.mse).vjp(p, (y, ~MASK), reduction="none")
    assert terms.dtype == np.float32 and pb(np.ones_like(terms)).dtype == np.float32


def test_sum_and_none() -> None:
    p, y = data()
    terms = Lo.masked(Lo.mse, "valid")(p, (y, MASK), reduction="none")
    np.testing.assert_array_equal(terms, np.where(MASK[..., None], (p - y) ** 2, 0.0))
    assert Lo.masked(Lo.mse, "valid")(p, (y, MASK), reduction="sum") == pytest.approx(terms.sum())


def test_a_padded_gru_forecaster_end_to_end() -> None:
    """value_and_grad with the lengths in the input and in the target; the per-example
    gradients' mean is the batch's."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, N, T, 2))
    y = np.where(MASK[..., None], y, np.nan)
    model = L.Sequential(L.Carry(L.GRU(3, lengths=True)), L.Select(0), L.Dense(2))
    _, params = model.init(fd.random.key(0), ((None, T, 2), (None,)))
    params = fd.tree.map(lambda a: a.astype(np.float64), params)
    loss = Lo.masked(Lo.mse, "lengths")
    value, grads = fd.value_and_grad(model, loss)(params, (x, LENGTHS), (y, LENGTHS))
    pred = model.apply(params, (x, LENGTHS))
    assert value == pytest.approx(((pred - np.nan_to_num(y)) ** 2)[MASK].mean(), rel=1e-14)
    assert all(np.isfinite(g).all() for g in fd.tree.leaves(grads))
    each = fd.per_example_grad(model, loss)(params, (x, LENGTHS), (y, LENGTHS))
    for g, e in zip(fd.tree.leaves(grads), fd.tree.leaves(each), strict=True):
        np.testing.assert_allclose(e.mean(axis=0), g, rtol=1e-12, atol=1e-15)


def test_pickles() -> None:
    loss = Lo.masked(functools.partial(Lo.huber, delta=0.5), "lengths")
    again = pickle.loads(pickle.dumps(loss))
    p, y = data()
    assert again.name == "masked(huber(delta=0.5), 'lengths')"
    assert again(p, (y, LENGTHS)) == loss(p, (y, LENGTHS))


@pytest.mark.parametrize("kind, target, error, words", [
    ("padding", "y", TypeError, "the target must be the pair (target, key_padding_mask)"),
    ("lengths", "triple", TypeError, "got a tuple of 3"),
    ("padding", "short mask", ValueError, "leading axes of the loss's terms (4, 5, 3)"),
    ("valid", "step mask", ValueError, "((N, T) for (N, T, ...), as torch's loss[mask]), "
                                       "got shape (5,)"),
    ("padding", "float mask", TypeError, "got a mask of dtype float64"),
    ("padding", "lengths", TypeError, "integer lengths need masked(..., mask='lengths')"),
    ("lengths", "bool mask", TypeError, "a boolean mask needs masked(..., mask='padding')"),
    ("lengths", "long lengths", ValueError, "lengths must lie in [0, T] = [0, 5], got 1 to 6"),
    ("lengths", "few lengths", ValueError, "lengths must have shape (4,)"),
    ("valid", "none valid", ValueError, "the number of valid terms, which is 0"),
])
def test_bad_targets_name_the_loss_and_the_shapes(kind: str, target: str, error: type,
                                                  words: str) -> None:
    p, y = data()
    given = {"y": y, "triple": (y, LENGTHS, LENGTHS), "short mask": (y, MASK[:, :4]),
             "step mask": (y, np.ones(T, bool)), "float mask": (y, MASK.astype(float)),
             "lengths": (y, LENGTHS), "bool mask": (y, MASK),
             "long lengths": (y, LENGTHS + 1), "few lengths": (y, LENGTHS[:3]),
             "none valid": (y, np.zeros_like(MASK))}[target]
    with pytest.raises(error, match=r"^masked\(mse") as info:
        Lo.masked(Lo.mse, kind)(p, given)
    assert words in str(info.value)


def test_a_mask_kind_of_another_name_is_refused() -> None:
    with pytest.raises(ValueError, match="masked: mask must be 'padding'"):
        Lo.masked(Lo.mse, "keep")


def test_padding_is_the_complement_of_valid() -> None:
    p, y = data()
    a, pa = Lo.masked(Lo.mse).vjp(p, (y, ~MASK))
    b, pb = Lo.masked(Lo.mse, "valid").vjp(p, (y, MASK))
    c, pc = Lo.masked(Lo.mse, "lengths").vjp(p, (y, LENGTHS))
    assert a == b == c
    np.testing.assert_array_equal(pa(1.0), pb(1.0))
    np.testing.assert_array_equal(pa(1.0), pc(1.0))


def test_a_loss_without_vjp_is_refused() -> None:
    with pytest.raises(TypeError, match=r"masked: expected a loss with a \.vjp"):
        Lo.masked(lambda p, t: 0.0)


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    p, y = data()
    tp = torch.tensor(p, requires_grad=True)
    m = torch.tensor(MASK)
    for ours, theirs in ((Lo.mse, torch.nn.functional.mse_loss),
                         (functools.partial(Lo.smooth_l1, beta=0.4),
                          functools.partial(torch.nn.functional.smooth_l1_loss, beta=0.4))):
        tp.grad = None
        want = theirs(tp, torch.tensor(y), reduction="none")[m].mean()
        want.backward()
        value, pullback = Lo.masked(ours, "valid").vjp(p, (y, MASK))
        assert value == pytest.approx(want.item(), rel=1e-14)
        np.testing.assert_allclose(pullback(1.0), tp.grad.numpy(), rtol=1e-13, atol=1e-16)


def test_a_mask_of_examples_counts_their_every_term() -> None:
    p, y = data()
    keep = np.array([True, False, True, True])
    value = Lo.masked(Lo.mse, "valid")(p, (y, keep))
    assert value == pytest.approx(((p - y) ** 2)[keep].mean(), rel=1e-14)
