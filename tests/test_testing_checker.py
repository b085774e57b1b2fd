"""funcdl.testing: the checker on hard cases. Each test fails if check_vjp, check_layer or
check_loss turns blind (or loses its diagnosis) in one way: several wrong entries, a NaN, an
error spread over a leaf, large outputs, dtypes, a pullback skipping dx, atol, high
curvature. Wrong vjps failing and arguments validated: test_testing.py."""

from __future__ import annotations

import numpy as np
import pytest
from _testing_util import _dense64, _params, _scale_layer, _tampered, _tanh64_vjp

from funcdl import layers as L
from funcdl import losses, random
from funcdl.layers import Layer
from funcdl.testing import check_layer, check_loss, check_vjp

# ---------------------------------------------------------------------------- the checker
# Each test below fails if the checker turns blind (or loses its diagnosis) in one way.

def test_the_first_of_several_wrong_entries_of_a_small_leaf_is_named_and_the_rest_counted():
    # A leaf of up to 400 entries is checked entry by entry: [0, 1] comes first even though
    # [4, 2] is further off.
    def change(dp, dx):
        w = dp["w"].copy()
        w[0, 1] *= 1.5
        w[4, 2] *= 3.0
        return {"w": w, "b": dp["b"]}, dx

    dense, params, x = _dense64()
    with pytest.raises(AssertionError, match=r"first wrong entry params\['w'\]\[0, 1\]: .* "
                                             r"\(1 more\)$"):
        check_vjp(_tampered(dense, change), params, x)


def test_a_nan_entry_of_a_large_leaf_is_found():
    # halving the leaf follows the half with the larger discrepancy: NaN counts as largest
    with pytest.raises(AssertionError, match=r"first wrong entry params\['w'\]\[1234\]: "
                                             r"expected -?0\.\d+ \(finite difference\), got nan"):
        check_layer(_scale_layer(2000, 1234, np.nan), (None, 2000))


def test_an_error_that_no_single_entry_shows_is_reported_spread_out_over_its_leaf():
    # The max of tied entries moves at half the rate when one of them moves either way, so
    # a vjp sharing dy half and half passes entry by entry; along a direction v moving all
    # three the slope is (max v + min v) / 2, not their sum over 2.
    def vjp(p, x, **kw):
        return x.max(-1, keepdims=True), lambda dy: ((), np.repeat(dy / 2, 3, axis=-1))

    tied = Layer(lambda k, s: ((s[0], 1), ()), lambda p, x, **kw: x.max(-1, keepdims=True),
                 vjp, name="TiedMax")
    # (x of zeros: its ties are what makes the error spread out, and the note says so)
    with pytest.raises(AssertionError, match=r"check_vjp\(TiedMax\): .*no single entry differs "
                                             r"beyond tolerance; the error is spread out "
                                             r"\(over x\)\n\(note: x\[0, 0\] is exactly 0; at "
                                             r"a kink \(ReLU's 0\) or a tie"):
        check_vjp(tied, (), np.zeros((2, 3)))


def test_large_outputs_pass_within_the_rounding_of_their_finite_differences():
    # Outputs near 1e8 round to 1.5e-8 each, so a central difference of step 1e-6 is only
    # good to ~1e-2: a correct vjp must pass (the rounding is part of the tolerance).
    shift = Layer(lambda k, s: (s, ()), lambda p, x, **kw: x + 1e8,
                  lambda p, x, **kw: (x + 1e8, lambda dy: ((), dy)), name="Shift")
    check_vjp(shift, (), np.linspace(-1, 1, 6).reshape(2, 3))


def test_check_vjp_differentiates_in_float64_whatever_the_dtype_given():
    # float32 params and input are checked in float64, so a tight rtol is met
    dense = L.Dense(3)
    check_vjp(dense, _params(dense, (None, 4)), random.normal(random.key(1), (2, 4)), rtol=1e-9)


class _OffLoss:
    """A user's loss whose call gives 1% more than its vjp's value."""

    name = "off"

    def __call__(self, pred, target, **kw):
        return 1.01 * losses.mse(pred, target, **kw)

    def vjp(self, pred, target, **kw):
        return losses.mse.vjp(pred, target, **kw)


def test_check_loss_fails_a_loss_whose_call_and_vjp_disagree():
    with pytest.raises(AssertionError, match=r"^check_loss\(off\): loss\(\) gave 0\.\d+, "
                                             r"vjp gave"):
        check_loss(_OffLoss(), np.linspace(0, 1, 6), np.zeros(6))


def test_check_loss_fails_a_non_finite_value():
    inf = losses.Loss("inf", lambda pred, target: (np.inf, lambda g=1.0: np.zeros_like(pred)))
    with pytest.raises(AssertionError, match=r"^check_loss\(inf\): non-finite value inf"):
        check_loss(inf, np.linspace(0, 1, 6), np.zeros(6))


def test_check_loss_fails_a_gradient_in_another_dtype_than_pred():
    def up(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return value, lambda g=1.0: pullback(g).astype(np.float64)

    with pytest.raises(AssertionError, match=r"^check_loss\(up\): the gradient has shape "
                                             r"\(6,\) and dtype float64; pred has \(6,\), "
                                             r"float32"):
        check_loss(losses.Loss("up", up), np.linspace(0, 1, 6, dtype=np.float32), np.zeros(6))


def test_check_loss_fails_a_reduction_none_pullback_that_ignores_its_cotangent():
    # a cotangent of ones would not tell: check_loss draws a random one
    def ones(pred, target, reduction="mean"):
        value, pullback = losses.mse.vjp(pred, target, reduction=reduction)
        return value, lambda g=None: pullback()

    with pytest.raises(AssertionError, match=r"^check_loss\(ones\).*first wrong entry pred\["):
        check_loss(losses.Loss("ones", ones), np.linspace(0, 1, 6), np.zeros(6),
                   reduction="none")


@pytest.mark.parametrize("skip", ["doubles dparams", "returns dx"])
def test_a_pullback_skipping_dx_must_give_the_same_dparams_and_no_dx(skip):
    dense, params, x = _dense64()

    def vjp(p, xx, **kw):
        y, pb = dense.vjp(p, xx, **kw)

        def pullback(dy, need_dx=True):
            dp, dx = pb(dy)
            if need_dx:
                return dp, dx
            if skip == "returns dx":
                return dp, dx
            return {"w": 2 * dp["w"], "b": dp["b"]}, None

        return y, pullback

    bad = Layer(dense.init, dense.apply, vjp, name="Skips", dx_optional=True)
    with pytest.raises(AssertionError, match=r"check_vjp\(Skips\): pullback\(dy, "
                                             r"need_dx=False\) must give the same dparams"):
        check_vjp(bad, params, x)


def test_check_layer_notices_a_vjp_forward_off_by_one_part_in_ten_thousand():
    tanh = L.Tanh()
    off = Layer(tanh.init, tanh.apply, lambda p, x, **kw: (
        np.tanh(x) * np.float32(1.0001), lambda dy: ((), dy * (1 - np.tanh(x) ** 2))),
        name="Off4")
    with pytest.raises(AssertionError, match=r"^check_layer\(Off4\): apply and vjp\(\.\.\.\)"
                                             r"\[0\] disagree"):
        check_layer(off, (None, 3))


def test_check_layer_fails_float32_input_giving_a_float64_output():
    tanh = L.Tanh()
    up = Layer(tanh.init, lambda p, x, **kw: np.tanh(x.astype(np.float64)), _tanh64_vjp,
               name="Up64")
    with pytest.raises(AssertionError, match=r"^check_layer\(Up64\): input dtype \['float32'\] "
                                             r"gave output of dtype float64"):
        check_layer(up, (None, 3))


def test_check_layer_fails_float64_params_from_init():
    def init(key, in_shape):
        return in_shape, {"w": np.linspace(0.5, 1.5, in_shape[-1])}  # float64

    def vjp(p, x, **kw):
        w = p["w"].astype(x.dtype)
        return x * w, lambda dy: ({"w": (dy * x).sum(0).astype(p["w"].dtype)}, dy * w)

    wide = Layer(init, lambda p, x, **kw: x * p["w"].astype(x.dtype), vjp, name="Init64")
    with pytest.raises(AssertionError, match=r"^check_layer\(Init64\): init gave params\['w'\] "
                                             r"of dtype float64, expected float32"):
        check_layer(wide, (None, 3))


def test_an_absolute_error_a_few_times_atol_is_caught_with_rtol_zero():
    # the tolerance is the atol given, not a multiple of it (the finite differences of a
    # quadratic are exact, so 3e-6 off shows at atol=1e-6 and hides at 1e-5)
    def off(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return value, lambda g=1.0: pullback(g) + 3e-6

    loss, pred = losses.Loss("off", off), np.array([0.5, -0.25])
    with pytest.raises(AssertionError, match=r"^check_loss\(off\).*first wrong entry pred\[0\]"):
        check_loss(loss, pred, np.zeros(2), rtol=0, atol=1e-6)
    check_loss(loss, pred, np.zeros(2), rtol=0, atol=1e-5)


def test_check_vjp_names_a_layer_that_does_not_compute_in_float64():
    # an output cast to float32 would show as a gradient error (float32 rounding in the
    # differences), far from its cause
    def apply(p, x, **kw):
        return (x @ p["w"]).astype(np.float32)

    def vjp(p, x, **kw):
        return apply(p, x), lambda dy: ({"w": x.T @ dy}, dy @ p["w"].T)

    layer = Layer(lambda k, s: ((*s[:-1], 2), {"w": np.ones((s[-1], 2), np.float32)}),
                  apply, vjp, name="ToFloat32")
    _, params = layer.init(random.key(0), (None, 4))
    with pytest.raises(AssertionError, match=r"check_vjp\(ToFloat32\): float64 params and "
                                             r"input gave output of dtype float32"):
        check_vjp(layer, params, np.ones((3, 4)))
    with pytest.raises(AssertionError, match=r"float64 params and input gave output of dtype "
                                             r"float32"):
        check_layer(layer, (None, 4))


def test_a_right_gradient_of_high_curvature_passes():
    # bce at p = 1 - 3.7e-5: 1/(1 - p) has a third derivative of ~4e13, and the central
    # difference at eps = 1e-6 is off by 3e-4 of the gradient; its Richardson extrapolation
    # confirms a failure before it is reported
    check_loss(losses.bce, np.array([[0.999963]]), np.array([[0.23681051]]))
    wrong = losses.Loss("bce_off", lambda p, t: (losses.bce.vjp(p, t)[0],
                                                 lambda g=1.0: losses.bce.vjp(p, t)[1](g) * 1.001))
    with pytest.raises(AssertionError, match="bce_off"):
        check_loss(wrong, np.array([[0.999963]]), np.array([[0.23681051]]))


def test_check_loss_at_the_edge_of_the_losss_domain_says_the_steps_crossed_it():
    # bce refused the finite-difference step's -1.5e-06 as if the caller had passed it
    pred, target = np.array([[0.0, 0.5]], np.float32), np.array([[1.0, 0.0]], np.float32)
    with pytest.raises(ValueError, match=r"check_loss\(bce\): the finite-difference steps "
                                         r"\(up to eps=1e-06 .*took pred out of the loss's "
                                         r"domain: bce: pred must be probabilities"):
        check_loss(losses.bce, pred, target)
    check_loss(losses.bce, pred + np.float32(1e-5), target)  # inside it: passes


@pytest.mark.parametrize("shape_of", ["tuple", "missing"])
def test_check_vjp_fails_dparams_not_shaped_as_the_params(shape_of):
    # dparams as a tuple for dict params (or with a leaf left out) passed the projection
    # when the structure was not compared
    def vjp(p, x, **kw):
        def pullback(dy):
            da, db = (dy * x).sum(0), dy.sum(0)
            return ((da, db) if shape_of == "tuple" else {"a": da}), dy * p["a"]
        return x * p["a"] + p["b"], pullback

    params = {"a": np.array([0.5, -1.0]), "b": np.array([0.1, 0.2])}
    layer = Layer(lambda k, s: (s, params), lambda p, x, **kw: vjp(p, x)[0], vjp)
    with pytest.raises(AssertionError, match=r"structure mismatch"):
        check_vjp(layer, params, np.ones((3, 2)))


def test_check_loss_fails_a_gradient_that_depends_on_preds_memory_layout():
    # softmax_cross_entropy's own bug of this kind (reshape of a Fortran-ordered array
    # copies; the write went into the copy) passed every check
    def vjp(p, t):
        def pullback(g=1.0):
            d = p * 1.0  # keeps p's layout, as e / total did
            d.reshape(-1)[0] -= 1.0  # a copy unless d is C-ordered
            return d * g
        return float(np.sum(p * p) / 2 - p.reshape(-1)[0]), pullback

    bad = losses.Loss("layout", vjp)
    pred = np.random.default_rng(0).normal(size=(3, 4))
    with pytest.raises(AssertionError, match=r"check_loss\(layout\): the gradient depends on "
                                             r"the input's memory layout: dpred at \(0, 0\)"):
        check_loss(bad, pred, np.zeros((3, 4)))


def test_check_layer_fails_a_dx_that_depends_on_the_inputs_memory_layout():
    def vjp(p, x, **kw):
        def pullback(dy):
            dx = np.empty_like(x)  # x's layout
            dx[...] = 2.0 * dy
            dx.reshape(-1)[0] += 1.0  # a wrong entry, lost when dx is not C-ordered
            return (), dx
        return 2.0 * x, pullback

    layer = Layer(lambda k, s: (s, ()), lambda p, x, **kw: 2.0 * x, vjp, name="Doubling")
    with pytest.raises(AssertionError, match=r"check_layer\(Doubling\): the gradient depends "
                                             r"on the input's memory layout"):
        check_layer(layer, (None, 3, 2))


# ---------------------------------------------------------------------------- float32 paths

def _float32_only(factor: float) -> Layer:
    """``a * x`` whose pullback is off by ``factor`` for float32 input only: the finite
    differences, in float64, never run that path."""
    def init(key, s):
        return s, {"a": np.linspace(0.5, 1.5, s[-1]).astype(np.float32)}

    def apply(p, x, *, key=None, train=False):
        return p["a"] * x

    def vjp(p, x, *, key=None, train=False):
        def pullback(dy):
            da = (dy * x).sum(0)
            return {"a": da * factor if x.dtype == np.float32 else da}, dy * p["a"]
        return p["a"] * x, pullback

    return Layer(init, apply, vjp, name="Float32Only")


def test_a_wrong_float32_only_gradient_is_caught_by_check_layer_and_check_loss():
    check_layer(_float32_only(1.0), (None, 4))  # right in both dtypes: passes
    for factor in (2.0, -1.0, 1.001):
        with pytest.raises(AssertionError, match=r"check_layer\(Float32Only\): the float32 "
                                                 r"gradient \(dparams, dx\)\[0\]\['a'\] is off "
                                                 r"the float64 one"):
            check_layer(_float32_only(factor), (None, 4))

    def vjp(pred, target):
        d = pred - target
        value, k = float((d * d).mean()), (2.0 if pred.dtype == np.float32 else 1.0)
        return value, lambda g=1.0: k * g * 2 * d / d.size

    pred = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    check_loss(losses.mse, pred, np.zeros_like(pred))
    with pytest.raises(AssertionError, match=r"check_loss\(doubled\): the float32 gradient "
                                             r"dpred is off the float64 one"):
        check_loss(losses.Loss("doubled", vjp), pred, np.zeros_like(pred))


def test_a_layer_mixing_the_rows_by_design_is_checked_with_independent_rows_false():
    # BatchNorm(track_running_stats=False) normalises with the batch's statistics at
    # inference too: one row alone is refused, as PyTorch refuses it; check_layer said only
    # the layer's own error, and could not check such a model at a batch above 1
    model = L.Sequential(L.Dense(6), L.BatchNorm(track_running_stats=False))
    with pytest.raises(ValueError, match=r"refused a part of the batch .*Expected more "
                                             r"than 1 value per channel.*pass "
                                             r"independent_rows=False"):
        check_layer(model, (None, 4))
    check_layer(model, (None, 4), independent_rows=False)
    check_layer(model, (None, 4), independent_rows=False, train=True)

    def centred(on_first_row: bool) -> Layer:
        """x minus the batch's mean (rows mixed, but in no order), or minus its first row
        (then the order of the rows matters: reversing them does not reverse the output)."""
        def apply(p, x, *, key=None, train=False):
            return x - (x[:1] if on_first_row else x.mean(0))

        def vjp(p, x, *, key=None, train=False):
            def pullback(dy):
                if not on_first_row:
                    return (), dy - dy.mean(0)
                dx = dy.copy()
                dx[0] -= dy.sum(0)
                return (), dx
            return apply(p, x), pullback
        return Layer(lambda key, s: (s, ()), apply, vjp, name="Centred")

    with pytest.raises(AssertionError, match=r"a row of the output depends on the other rows "
                                             r"of the batch \(pass independent_rows=False"):
        check_layer(centred(False), (None, 3))
    check_layer(centred(False), (None, 3), independent_rows=False)
    with pytest.raises(AssertionError, match=r"a row of the output depends on the other rows"):
        check_layer(centred(True), (None, 3), independent_rows=False)  # reversal still checked


def test_check_loss_takes_a_tuple_pred_and_names_a_wrong_gradient_of_one_input():
    # losses of several inputs (margin_ranking's (x1, x2), gaussian_nll's (mean, var)) were
    # refused by check_loss ("pred must be one array"), checked by a test's own differences
    r = np.random.default_rng(0)
    x1, x2, y = r.normal(size=(5, 3)), r.normal(size=(5, 3)), np.array([1, -1, 1, 1, -1])
    check_loss(losses.cosine_embedding, (x1, x2), y)
    check_loss(losses.cosine_embedding, (x1.astype(np.float32), x2.astype(np.float32)), y)

    def flipped(pred, target):
        value, pullback = losses.cosine_embedding.vjp(pred, target)
        return value, lambda g=1.0: (lambda d: (d[0], -d[1]))(pullback(g))

    with pytest.raises(AssertionError, match=r"check_loss\(flipped\): the vjp disagrees with "
                                             r"finite differences.*pred\[1\]"):
        check_loss(losses.Loss("flipped", flipped), (x1, x2), y)

    def untupled(pred, target):
        value, pullback = losses.cosine_embedding.vjp(pred, target)
        return value, lambda g=1.0: pullback(g)[0]

    with pytest.raises(AssertionError, match=r"the gradient of a pred of 2 arrays must be a "
                                             r"tuple of 2"):
        check_loss(losses.Loss("untupled", untupled), (x1, x2), y)


def test_a_reversal_failure_does_not_advise_the_flag_already_given():
    # a layer drawing per-row noise at inference (vae.Reparameterize) failed with "pass
    # independent_rows=False", given already
    def noisy(p, x, *, key=None, train=False):
        return x + random.normal(key, x.shape, x.dtype)

    layer = Layer(lambda k, s: (s, ()), noisy,
                  lambda p, x, **kw: (noisy(p, x, **kw), lambda dy: ((), dy)), name="Noisy")
    with pytest.raises(AssertionError) as e:
        check_layer(layer, (None, 3), key=random.key(1), independent_rows=False)
    assert "reversing the rows did not reverse" in str(e.value)
    assert "pass independent_rows=False" not in str(e.value)
