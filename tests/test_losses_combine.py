"""losses.combine: the weighted sum of losses on a tuple pred. Finite differences in float64
over several term layouts (int and tuple indices, an entry read by two terms, a term
without a target, weights, options bound by partial), torch's autograd on the same sum,
a two-head model trained through it equal to a hand-written Loss, None for an unread head,
float32 kept, and bad terms, indices, targets and weights refused by name."""

from __future__ import annotations

import functools
import pickle
import sys

import numpy as np
import pytest
from _torch_util import numpy_of, t64

import funcdl as fd
from funcdl import layers as L
from funcdl import losses
from funcdl.testing import check_loss

RNG = np.random.default_rng(20261208)
N = 6
LOGITS, VALUE = RNG.normal(size=(N, 4)), RNG.normal(size=(N, 1))
VAR = RNG.uniform(0.5, 2.0, (N, 1))
LABELS, RET = RNG.integers(0, 4, N), RNG.normal(size=(N, 1))

LAYOUTS = {
    "two-heads": ([(losses.softmax_cross_entropy, 0), (losses.mse, 1, 0.5)],
                  (LOGITS, VALUE), (LABELS, RET)),
    # entry 0 read by gaussian_nll's pair and by l1: their cotangents add
    "tuple-index-shared": ([(losses.gaussian_nll, (0, 1)), (losses.mse, 0, 0.3)],
                           (VALUE, VAR), (RET, RET + 0.5)),
    # triplet_margin takes no target (None), and one weight is negative
    "no-target": ([(losses.triplet_margin, (0, 1, 2)), (losses.mse, 1, -0.25)],
                  (LOGITS, LOGITS[::-1] * 0.5, LOGITS + 1), (None, LOGITS)),
    "partial-and-order": ([(functools.partial(losses.huber, delta=0.5), 1, 2.0),
                           (losses.gaussian_kl, (1, 0)), (losses.softmax_cross_entropy, 0)],
                          (LOGITS, 0.3 * LOGITS[:, ::-1]),
                          (RET.repeat(4, 1), None, LABELS)),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_finite_differences_in_float64(layout: str) -> None:
    terms, pred, target = LAYOUTS[layout]
    check_loss(losses.combine(*terms), pred, target)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_is_the_weighted_sum_of_its_terms(layout: str) -> None:
    # by hand, each term on its own: a wrong weight, or a cotangent dropped where two terms
    # read one entry (the last term's kept), fails
    terms, pred, target = LAYOUTS[layout]
    value, pullback = losses.combine(*terms).vjp(pred, target)
    want, grads = 0.0, [np.zeros_like(p) for p in pred]
    for (loss, index, *w), t in zip(terms, target):
        weight = w[0] if w else 1.0
        loss = losses.bound(loss)
        sub = tuple(pred[i] for i in index) if isinstance(index, tuple) else pred[index]
        v, pb = loss.vjp(sub, t)
        want += weight * v
        d = pb(-0.7 * weight)
        for i, di in zip(index if isinstance(index, tuple) else (index,),
                         d if isinstance(index, tuple) else (d,)):
            grads[i] += di
    assert value == pytest.approx(want, rel=1e-14)
    for got, w in zip(pullback(-0.7), grads, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-13, atol=1e-15)


def test_shared_entry_sums_both_terms() -> None:
    # mse read twice at weights 1 and 2 is mse at weight 3: a missing sum gives 1 or 2
    once = losses.combine((losses.mse, 0, 3.0))
    twice = losses.combine((losses.mse, 0), (losses.mse, 0, 2.0))
    pred, target = (VALUE,), (RET,)
    assert twice(pred, target + target) == pytest.approx(once(pred, target), rel=1e-15)
    np.testing.assert_allclose(twice.vjp(pred, target + target)[1](0.5)[0],
                               once.vjp(pred, target)[1](0.5)[0], rtol=1e-15)
    np.testing.assert_allclose(once.vjp(pred, target)[1](0.5)[0],
                               3.0 * 0.5 * 2 * (VALUE - RET) / N, rtol=1e-15)


def test_name_shows_the_terms_and_pickles() -> None:
    loss = losses.combine((losses.softmax_cross_entropy, 0), (losses.mse, 1, 0.5),
                          (functools.partial(losses.huber, delta=0.5), (0, 1)))
    assert loss.name == ("combine(softmax_cross_entropy@0, 0.5*mse@1, "
                         "huber(delta=0.5)@(0, 1))")
    back = pickle.loads(pickle.dumps(loss))
    pred, target = (LOGITS, VALUE), (LABELS, RET, None)
    loss2 = losses.combine((losses.softmax_cross_entropy, 0), (losses.mse, 1, 0.5))
    assert pickle.loads(pickle.dumps(loss2))(pred, target[:2]) == loss2(pred, target[:2])
    assert back.name == loss.name


def test_reduction_none_terms_take_a_cotangent_per_example() -> None:
    none = functools.partial
    loss = losses.combine((none(losses.softmax_cross_entropy, reduction="none"), 0),
                          (none(losses.gaussian_kl, reduction="none"), (1, 1), 0.5))
    check_loss(loss, (LOGITS, 0.2 * LOGITS), (LABELS, None))
    value, pullback = loss.vjp((LOGITS, 0.2 * LOGITS), (LABELS, None))
    assert value.shape == (N,)
    np.testing.assert_array_equal(pullback(None)[0], pullback(np.ones(N))[0])


def two_heads() -> L.Layer:
    return L.Sequential(L.Dense(8), L.Tanh(), L.FanOut(2), L.Parallel(L.Dense(3), L.Dense(1)))


def hand_written(pred, target):
    (logits, value), (labels, ret) = pred, target
    a, pa = losses.softmax_cross_entropy.vjp(logits, labels)
    b, pb = losses.mse.vjp(value, ret)
    return a + 0.5 * b, lambda g=1.0: (pa(g), pb(0.5 * g))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_equals_a_hand_written_loss(dtype) -> None:
    model = two_heads()
    _, params0 = model.init(fd.random.key(0), (None, 5))
    params0 = fd.tree.astype(params0, dtype)
    x = fd.random.normal(fd.random.key(1), (16, 5), dtype)
    target = (fd.random.randint(fd.random.key(2), (16,), 0, 3),
              fd.random.normal(fd.random.key(3), (16, 1), dtype))
    runs = []
    for loss in (losses.combine((losses.softmax_cross_entropy, 0), (losses.mse, 1, 0.5)),
                 losses.Loss("a2c", hand_written)):
        vg, opt, params = fd.value_and_grad(model, loss), fd.optim.adam(1e-2), params0
        state, curve = opt.init(params), []
        for _ in range(4):
            value, grads = vg(params, x, target)
            assert all(g.dtype == dtype for g in fd.tree.leaves(grads))
            updates, state = opt.update(state, grads, params)
            params = fd.optim.apply_updates(params, updates)
            curve.append(value)
        runs.append((curve, params))
    (c1, p1), (c2, p2) = runs
    assert c1 == c2 and c1[-1] < c1[0]
    for a, b in zip(fd.tree.leaves(p1), fd.tree.leaves(p2), strict=True):
        assert a.dtype == dtype and np.array_equal(a, b)


def test_an_unread_head_gets_none_and_zero_gradients() -> None:
    model = two_heads()
    _, params = model.init(fd.random.key(0), (None, 5))
    x = fd.random.normal(fd.random.key(1), (16, 5))
    y = fd.random.normal(fd.random.key(2), (16, 1))
    loss = losses.combine((losses.mse, 1))
    _, pullback = loss.vjp(model.apply(params, x), (y,))
    d0, d1 = pullback(1.0)
    assert d0 is None and d1.dtype == np.float32
    _, grads = fd.value_and_grad(model, loss)(params, x, (y,))
    head0, head1 = grads[-1]
    assert not any(g.any() for g in fd.tree.leaves(head0))
    assert all(g.any() and g.dtype == np.float32 for g in fd.tree.leaves(head1))
    _, want = fd.value_and_grad(model, losses.Loss("head1", lambda p, t: (
        losses.mse(p[1], t[0]), lambda g=1.0: (None, losses.mse.vjp(p[1], t[0])[1](g)))))(
        params, x, (y,))
    for a, b in zip(fd.tree.leaves(grads), fd.tree.leaves(want), strict=True):
        assert np.array_equal(a, b)


def test_float32_stays_float32() -> None:
    pred = (LOGITS.astype(np.float32), VALUE.astype(np.float32))
    loss = losses.combine((losses.softmax_cross_entropy, 0), (losses.mse, 1, 0.5),
                          (losses.l1, 1, 0.25))
    check_loss(loss, pred, (LABELS, RET.astype(np.float32), RET), rtol=1e-3, atol=1e-5)
    _, pullback = loss.vjp(pred, (LABELS, RET, RET))
    assert [d.dtype for d in pullback(np.float64(0.5))] == [np.float32, np.float32]


def test_matches_torch_autograd_in_float64() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    mean = VALUE + 0.1
    loss = losses.combine((losses.softmax_cross_entropy, 0), (losses.mse, 1, 0.5),
                          (losses.gaussian_nll, (1, 2), 0.2), (losses.gaussian_kl, (1, 2)))
    pred = (LOGITS, mean, VAR)
    value, pullback = loss.vjp(pred, (LABELS, RET, RET, None))
    z, m, v = (t64(p, grad=True) for p in pred)
    want = (F.cross_entropy(z, torch.tensor(LABELS)) + 0.5 * F.mse_loss(m, t64(RET))
            + 0.2 * F.gaussian_nll_loss(m, t64(RET), v)
            + torch.distributions.kl_divergence(
                torch.distributions.Normal(m, torch.exp(0.5 * v)),
                torch.distributions.Normal(0.0, 1.0)).sum(-1).mean())
    (-0.6 * want).backward()
    assert value == pytest.approx(float(want.detach()), rel=1e-13)
    for got, t in zip(pullback(-0.6), (z, m, v), strict=True):
        np.testing.assert_allclose(got, numpy_of(t.grad), rtol=1e-12, atol=1e-14)


def _bad(fn, exc, *parts):
    with pytest.raises(exc) as info:
        fn()
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


def test_bad_terms_are_named() -> None:
    mse, combine = losses.mse, losses.combine
    _bad(lambda: combine(), TypeError, "losses.combine", "at least one term")
    _bad(lambda: combine(mse), TypeError, "losses.combine: term 0", "(loss, index)")
    _bad(lambda: combine((mse, 0), (mse, 1, 0.5, 2)), TypeError, "term 1",
         "(loss, index, weight)")
    _bad(lambda: combine((np.mean, 0)), TypeError, "term 0", "is not a loss")
    _bad(lambda: combine((losses.Loss, 0)), TypeError, "term 0", "is not a loss")
    _bad(lambda: combine((mse, -1)), ValueError, "term 0 (mse@-1)", ">= 0")
    _bad(lambda: combine((mse, True)), TypeError, "term 0 (mse@True)", "int")
    _bad(lambda: combine((mse, "1")), TypeError, "mse@'1'", "int or a tuple")
    _bad(lambda: combine((mse, ())), ValueError, "mse@()", "at least one")
    _bad(lambda: combine((mse, (0, 1.5))), TypeError, "mse@(0, 1.5)", "int")
    for w in (float("inf"), float("nan"), -float("inf")):
        _bad(lambda w=w: combine((mse, 0), (mse, 1, w)), ValueError, "losses.combine",
             "term 1 (mse@1)", "weight")
    _bad(lambda: combine((mse, 0, "half")), TypeError, "term 0 (mse@0)", "weight")


def test_bad_calls_are_named() -> None:
    loss = losses.combine((losses.softmax_cross_entropy, 0), (losses.mse, 2, 0.5))
    name = "losses.combine(softmax_cross_entropy@0, 0.5*mse@2)"
    pred = (LOGITS, VALUE, VALUE)
    _bad(lambda: loss((LOGITS, VALUE), (LABELS, RET)), ValueError, name, "0.5*mse@2",
         "pred[2]", "2 entries")
    _bad(lambda: loss(pred, (LABELS,)), ValueError, name, "2 entries", "a tuple of 1")
    _bad(lambda: loss(pred, (LABELS, RET, None)), ValueError, name, "a tuple of 3")
    _bad(lambda: loss(pred, [LABELS, RET]), ValueError, name, "got list")
    _bad(lambda: loss(LOGITS, (LABELS, RET)), TypeError, name, "ndarray")
    mixed = losses.combine((losses.mse, 0),
                           (functools.partial(losses.mse, reduction="none"), 1))
    _bad(lambda: mixed((VALUE, VALUE), (RET, RET)), ValueError, "mse(reduction='none')@1",
         "shape (6, 1)")
    with pytest.raises(ValueError, match=r"mse: pred has shape \(6, 1\)") as info:
        loss(pred, (LABELS, RET[:3]))
    if sys.version_info >= (3, 11):
        assert any("0.5*mse@2" in note for note in info.value.__notes__)


def test_check_loss_reads_an_unread_entry_as_zeros_and_checks_it() -> None:
    # a combine leaving pred[2] unread: check_loss takes its None as zeros, which the
    # finite differences confirm; a None hiding an entry the loss does read is caught
    rng = np.random.default_rng(3)
    pred = (rng.standard_normal((5, 3)), rng.standard_normal((5, 1)),
            rng.standard_normal((5, 2)))
    target = (np.arange(5) % 3, rng.standard_normal((5, 1)))
    fd.testing.check_loss(losses.combine((losses.softmax_cross_entropy, 0),
                                         (losses.mse, 1, 0.5)), pred, target)

    def hiding(p, t):
        value = float((p[0] ** 2).sum() + (p[1] ** 2).sum())
        return value, lambda g=1.0: (2 * g * p[0], None)

    with pytest.raises(AssertionError, match=r"disagrees with finite differences"):
        fd.testing.check_loss(losses.Loss("hiding", hiding), pred[:2], None)
