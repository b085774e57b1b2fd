"""funcdl.testing against a probe's findings: a correct per-example float32 loss failed
(its cotangent drawn in float64), an inf input raised NumPy's warning instead of the
check's AssertionError, check_loss's eps silently shadowed a loss's own eps, a vjp
reusing a stale x or W passed check_layer, an accumulating pullback passed check_vjp (and
check_layer blamed the memory layout), a correct vjp at a kink failed with no hint, and a
None dx for a float entry of a tuple input was reported as a float64 gradient."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import losses, random
from funcdl.layers import Layer
from funcdl.losses import Loss
from funcdl.testing import check_layer, check_loss, check_vjp

PRED = random.normal(random.key(0), (4, 3))  # float32
TARGET = random.normal(random.key(1), (4, 3))


# ------------------------------------------------- 1. an unreduced loss's cotangent dtype

def _per_example_sq(factor: float = 2.0) -> Loss:
    """Σ_j (pred - target)²_ij per row i, unreduced; its pullback ``factor · d · g`` takes
    its dtype from g, as JAX's does (2 is right)."""
    def vjp(pred, target):
        d = pred - target
        return (d * d).sum(-1), lambda g: factor * d * g[..., None]

    return Loss(f"per_example_sq<{factor}>", vjp)


def test_an_unreduced_float32_loss_gets_a_float32_cotangent():
    # before: g was float64, so the correct gradient came back float64 and failed
    check_loss(_per_example_sq(), PRED, TARGET)
    check_loss(_per_example_sq(), PRED.astype(np.float64), TARGET)


def test_an_unreduced_float16_loss_gets_the_dtype_message():
    # the float16 value's cotangent was drawn in float16, which random.normal refuses
    with pytest.raises(AssertionError, match=r"the gradient has shape \(4, 3\) and dtype"):
        check_loss(_per_example_sq(), PRED.astype(np.float16), TARGET.astype(np.float16))


def test_an_unreduced_loss_with_a_wrong_factor_still_fails():
    with pytest.raises(AssertionError, match=r"check_loss\(per_example_sq<3.0>\): the vjp "
                                             r"disagrees with finite differences"):
        check_loss(_per_example_sq(3.0), PRED, TARGET)


# ------------------------------------------------------------- 2. an inf in the input

def test_an_inf_input_gives_the_checks_assertion_error_not_numpys_warning():
    # pytest runs with warnings as errors: before, tier 2's `g @ v` raised RuntimeWarning
    dense = L.Dense(3)
    _, p = dense.init(random.key(0), (None, 4))
    with pytest.raises(AssertionError, match=r"\n\(note: x\[0, 0\] is inf; finite "
                                             r"differences through a non-finite value"):
        check_vjp(dense, p, np.array([[np.inf, 1.0, 2.0, 3.0]]))


# ------------------------------------------------- 3. check_loss's eps against the loss's

def test_eps_for_a_loss_with_its_own_eps_is_a_type_error_naming_partial():
    pred, target = np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 0.0])
    with pytest.raises(TypeError, match=r"check_loss\(poisson_nll\): eps=0.0001 is "
                                        r"check_loss's finite-difference step.*"
                                        r"functools.partial\(loss, eps=...\)"):
        check_loss(losses.poisson_nll, pred, target, log_input=False, eps=1e-4)
    # its eps bound: check_loss's eps is the step alone; without eps=, the default step
    check_loss(functools.partial(losses.poisson_nll, eps=1e-4), pred, target,
               log_input=False, eps=1e-5)
    check_loss(losses.poisson_nll, pred, target, log_input=False)
    check_loss(losses.mse, PRED, TARGET, eps=1e-5)  # no eps of its own: the step, as before


# ------------------------------------------------ 4. a stale residual, a kept buffer

def _affine(stale: str | None = None) -> Layer:
    """``x @ W + b``; its vjp keeping x or W from its first call when ``stale`` says."""
    cache: dict[str, np.ndarray] = {}

    def init(key, s):
        return (s[0], 4), {"W": random.normal(key, (s[-1], 4)) * np.float32(0.5),
                           "b": np.linspace(-0.3, 0.3, 4).astype(np.float32)}

    def apply(p, x, **kw):
        return x @ p["W"] + p["b"]

    def vjp(p, x, **kw):
        xc = cache.setdefault("x", x).astype(x.dtype) if stale == "x" else x
        w = cache.setdefault("W", p["W"]).astype(x.dtype) if stale == "W" else p["W"]
        return apply(p, x), lambda dy: ({"W": xc.T @ dy, "b": dy.sum(0)}, dy @ w.T)

    return Layer(init, apply, vjp, name=f"Affine<{stale}>")


@pytest.mark.parametrize("stale", ["x", "W"])
def test_a_vjp_reusing_x_or_w_from_its_first_call_fails_at_a_second_point(stale):
    # before: every call ran at one (params, x), where the cached value is the right one
    with pytest.raises(AssertionError, match=r"check_layer\(Affine<.>\) at a second point "
                                             r"\(params from init at another key, another "
                                             r"input draw\): the vjp disagrees.*\n\(the vjp "
                                             r"agreed .* reuse values from an earlier call"):
        check_layer(_affine(stale), (None, 4))


def test_a_stale_x_fails_with_x_given_too_its_rows_reversed():
    x = random.normal(random.key(5), (3, 4))
    with pytest.raises(AssertionError, match=r"at a second point \(params from init at "
                                             r"another key, the rows of x reversed\)"):
        check_layer(_affine("x"), (None, 4), x=x)


def test_an_honest_affine_passes_at_both_points():
    check_layer(_affine(), (None, 4))
    check_layer(_affine(), (None, 4), x=random.normal(random.key(5), (3, 4)))


def _accumulating(copy: bool = True) -> Layer:
    """``x @ W``, its pullback adding dW into a buffer it keeps and never zeroes (and
    returning that buffer itself without ``copy``)."""
    def init(key, s):
        return (s[0], 3), {"W": random.normal(key, (s[-1], 3))}

    def vjp(p, x, **kw):
        buf = np.zeros(p["W"].shape, x.dtype)

        def pullback(dy):
            buf[...] += x.T @ dy
            return {"W": buf.copy() if copy else buf}, dy @ p["W"].T

        return x @ p["W"], pullback

    return Layer(init, lambda p, x, **kw: x @ p["W"], vjp,
                 name="Accumulating" if copy else "AccumulatingNoCopy")


def test_an_accumulating_pullback_fails_check_vjp_on_its_second_call():
    # before: check_vjp called the pullback once, on a fresh buffer, and passed
    with pytest.raises(AssertionError, match=r"check_vjp\(Accumulating\): the pullback gives "
                                             r"a different result on a second call with the "
                                             r"same cotangent: .*\['W'\].*keeps"):
        check_vjp(_accumulating(), {"W": np.ones((4, 3))}, np.ones((2, 4)))


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "its-own-buffer"])
def test_an_accumulating_pullback_is_not_blamed_on_the_memory_layout(copy):
    # before: check_layer said "the gradient depends on the input's memory layout"; a
    # pullback returning its kept buffer itself changed the first result too (a review)
    with pytest.raises(AssertionError, match=r"check_layer\(Accumulating\w*\): the pullback "
                                             r"gives a different result on a second call"):
        check_layer(_accumulating(copy), (None, 4))
    with pytest.raises(AssertionError, match=r"check_vjp\(Accumulating\w*\): the pullback "
                                             r"gives a different result on a second call"):
        check_vjp(_accumulating(copy), {"W": np.ones((4, 3))}, np.ones((2, 4)))


def test_an_accumulating_loss_pullback_is_not_blamed_on_the_memory_layout():
    def vjp(pred, target):
        buf = np.zeros_like(pred)

        def pullback(g=1.0):
            buf[...] += np.asarray(g, pred.dtype) * (2.0 / pred.size) * (pred - target)
            return buf.copy()

        return np.mean((pred - target) ** 2), pullback

    with pytest.raises(AssertionError, match=r"check_loss\(acc_ms\): the pullback gives a "
                                             r"different result on a second call"):
        check_loss(Loss("acc_ms", vjp), PRED, TARGET)


# ------------------------------------------------------------------ 5. kinks and ties

@pytest.mark.parametrize(("layer", "x", "note"), [
    (L.ReLU(), np.eye(4)[:3], r"x\[0, 1\] is exactly 0"),
    (L.MaxPool2D(2), np.kron(np.eye(2), np.ones((2, 2))).reshape(1, 4, 4, 1) + 1.0,
     r"x\[0\] holds 2 distinct values among 16 entries"),
])
def test_a_correct_vjp_failing_at_a_kink_or_a_tie_says_so(layer, x, note):
    with pytest.raises(AssertionError, match=r"the vjp disagrees with finite differences.*\n"
                                             r"\(note: " + note + r"; at a kink \(ReLU's 0\) or "
                                             r"a tie \(MaxPool's equal entries\) a finite "
                                             r"difference straddles it"):
        check_vjp(layer, (), x)


def test_a_wrong_vjp_at_ordinary_draws_gets_no_kink_note():
    half = Layer(lambda k, s: (s, ()), lambda p, x, **kw: np.tanh(x),
                 lambda p, x, **kw: (np.tanh(x), lambda dy: ((), dy * (1 - np.tanh(x)) / 2)),
                 name="HalfTanh")
    with pytest.raises(AssertionError) as info:
        check_layer(half, (None, 5))
    assert "the vjp disagrees with finite differences" in str(info.value)
    assert "note:" not in str(info.value)


# ------------------------------------------- 6. a None dx for a float entry of a tuple

def _first_of_pair(dx2: str) -> Layer:
    """``(x1, x2) -> 2 x1 + c x2``; its pullback returning None for dx2, which is right when
    ``dx2 == "unused"`` (c = 0) and wrong when ``"used"`` (c = 1)."""
    c = 0.0 if dx2 == "unused" else 1.0

    def apply(p, x, **kw):
        return 2 * x[0] + np.asarray(c, x[1].dtype) * x[1]

    return Layer(lambda k, s: (s[0], ()), apply,
                 lambda p, x, **kw: (apply(p, x), lambda dy: ((), (2 * dy, None))),
                 name=f"FirstOfPair<{dx2}>")


def test_a_none_dx_for_a_float_input_reads_as_zeros_of_its_dtype():
    # before: "dx[1] has dtype float64 for float32 x[1]", from the float64 zeros put there
    check_layer(_first_of_pair("unused"), ((None, 3), (None, 3)))


def test_a_none_dx_for_a_float_input_that_matters_fails_at_its_entry():
    with pytest.raises(AssertionError, match=r"check_vjp\(FirstOfPair<used>\): the vjp "
                                             r"disagrees.*first wrong entry x\[1\]\[0, 0\]: "
                                             r"expected -?\d.*, got 0 \(vjp\)"):
        check_layer(_first_of_pair("used"), ((None, 3), (None, 3)))


def test_a_user_x_with_a_side_input_of_numbers_is_checked_at_a_second_point():
    # the second point reversed every leaf of x, a lengths tuple's 0-d ints too: IndexError
    x = random.normal(random.key(2), (1, 4, 2))
    check_layer(L.LSTM(3, lengths=True), ((None, 4, 2), (None,)), x=(x, (4,)))


def test_a_user_x_with_per_row_numbers_has_them_reversed_with_its_rows():
    # the row-order check reversed every leaf: a lengths tuple's ints raised IndexError, and
    # kept as they were, each reversed row would have had another row's length (a review)
    x = random.normal(random.key(2), (2, 4, 2))
    check_layer(L.LSTM(3, lengths=True), ((None, 4, 2), (None,)), x=(x, (4, 3)))
