"""funcdl.testing itself: it passes correct vjps and fails wrong ones, naming the entry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.layers import Layer
from funcdl.testing import check_layer, check_loss, check_vjp


def _tampered(layer, change):
    """The layer with its pullback's output passed through ``change(dparams, dx)``."""

    def vjp(params, x, **kw):
        y, pullback = layer.vjp(params, x, **kw)
        return y, lambda dy: change(*pullback(dy))

    return Layer(layer.init, layer.apply, vjp, name="Tampered")


def _params(layer, in_shape):
    return layer.init(random.key(0), in_shape)[1]


def test_wrong_sign_in_dx_fails():
    bad = _tampered(L.Tanh(), lambda dp, dx: (dp, -dx))
    with pytest.raises(AssertionError, match=r"Tampered.*first wrong entry x\["):
        check_vjp(bad, (), np.linspace(-1, 1, 6).reshape(2, 3))


def _dense64():
    dense = L.Dense(3)
    params = {k: v.astype(np.float64) for k, v in _params(dense, (None, 5)).items()}
    return dense, params, random.normal(random.key(1), (4, 5), np.float64)


@pytest.mark.parametrize("factor", [2.0, 1.001])
def test_wrong_factor_in_one_weight_entry_is_located(factor):
    # 1e-3 relative too: each entry is judged against its own scale, not a looser one
    def change(dp, dx):
        w = dp["w"].copy()
        w[2, 1] *= factor
        return {"w": w, "b": dp["b"]}, dx

    dense, params, x = _dense64()
    with pytest.raises(AssertionError, match=r"first wrong entry params\['w'\]\[2, 1\]: "):
        check_vjp(_tampered(dense, change), params, x)


def test_missing_bias_gradient_fails():
    bad = _tampered(L.Dense(3), lambda dp, dx: ({"w": dp["w"], "b": 0 * dp["b"]}, dx))
    with pytest.raises(AssertionError, match=r"params\['b'\]"):
        check_layer(bad, (None, 2))


def test_apply_vjp_mismatch_fails():
    layer = L.Tanh()
    bad = Layer(layer.init, lambda p, x, **kw: np.tanh(x) + 1e-3, layer.vjp, name="Off")
    with pytest.raises(AssertionError, match=r"apply and vjp\(\.\.\.\)\[0\] disagree in 4 of "
                                             r"4 entries, first at output\[0, 0\]"):
        check_vjp(bad, (), np.ones((2, 2)))
    one = Layer(layer.init, layer.apply, lambda p, x, **kw: (
        np.where(np.arange(x.size).reshape(x.shape) == 4, 0.0, np.tanh(x)),
        lambda dy: ((), dy * (1 - np.tanh(x) ** 2))), name="OneOff")
    with pytest.raises(AssertionError, match=r"check_layer\(OneOff\): apply and vjp.*1 of 6 "
                                             r"entries, first at output\[1, 1\]"):
        check_layer(one, (None, 3), x=np.full((2, 3), 0.5, np.float32))


def _tanh64_vjp(p, x, **kw):
    """Tanh's vjp with its forward in float64 whatever x's dtype (dx back in x's)."""
    return np.tanh(x.astype(np.float64)), lambda dy: ((), (dy * (1 - np.tanh(x) ** 2)).astype(
        x.dtype))


def test_a_vjp_forward_in_another_dtype_than_apply_fails():
    # training runs on the vjp: a float64 forward there upcasts silently what apply keeps
    layer = L.Tanh()
    up = Layer(layer.init, layer.apply, _tanh64_vjp, name="Upcast")
    with pytest.raises(AssertionError, match=r"check_layer\(Upcast\): apply gave output of "
                                             r"dtype float32, vjp\(\.\.\.\)\[0\] of dtype float64"):
        check_layer(up, (None, 3))


def test_wrong_declared_shape_fails():
    layer = L.Dense(3)
    bad = Layer(lambda k, s: ((None, 4), layer.init(k, s)[1]), layer.apply, layer.vjp,
                name="Liar")
    with pytest.raises(AssertionError, match=r"declared output shape \(None, 4\)"):
        check_layer(bad, (None, 2))


def test_batch_coupling_fails():
    # subtracting the batch mean couples rows: check_layer must notice
    def apply(p, x, **kw):
        return x - x.mean(axis=0)

    def vjp(p, x, **kw):
        return apply(p, x), lambda dy: ((), dy - dy.mean(axis=0))

    with pytest.raises(AssertionError, match="depends on the other rows"):
        check_layer(Layer(lambda k, s: (s, ()), apply, vjp, name="Centre"), (None, 3))


def test_coupling_of_later_rows_fails():
    # a running sum down the batch leaves row 0 alone: rows reversed must show it
    def vjp(p, x, **kw):
        return np.cumsum(x, axis=0), lambda dy: ((), np.cumsum(dy[::-1], axis=0)[::-1])

    with pytest.raises(AssertionError, match="depends on the other rows"):
        check_layer(Layer(lambda k, s: (s, ()), lambda p, x, **kw: np.cumsum(x, axis=0),
                          vjp, name="Cumsum"), (None, 3))


@pytest.mark.parametrize(("shape", "factor"), [((60, 50), 1.1), ((60, 50), 1.01),
                                               ((256, 128), 2.0)])
def test_one_wrong_entry_in_a_large_weight_is_caught_and_named(shape, factor):
    # 3,000 or 32,768 entries: the 2-norm scale keeps one wrong entry visible in the
    # projection, and halving the moved entries finds it where sampling would miss it.
    def change(dp, dx):
        w = dp["w"].copy()
        w[3, 5] *= factor
        return {"w": w, "b": dp["b"]}, dx

    dense = L.Dense(shape[1])
    bad = _tampered(dense, change)
    params = {k: v.astype(np.float64) for k, v in _params(dense, (None, shape[0])).items()}
    x = random.normal(random.key(1), (4, shape[0]), np.float64)
    with pytest.raises(AssertionError, match=r"first wrong entry params\['w'\]\[3, 5\]: "):
        check_vjp(bad, params, x)
    check_vjp(dense, params, x)  # and the honest layer passes


def test_pullback_of_the_wrong_arity_is_an_assertion():
    layer = L.Tanh()
    bad = Layer(layer.init, layer.apply,
                lambda p, x, **kw: (np.tanh(x), lambda dy: ((), dy, None)), name="Three")
    with pytest.raises(AssertionError, match=r"must return \(dparams, dx\), got tuple of "
                                             r"length 3"):
        check_vjp(bad, (), np.ones((2, 2)))


@pytest.mark.parametrize(("change", "says"), [
    (lambda dp, dx: (dp, dx.astype(np.float64)), r"^check_layer\(Tampered\): .*dx has dtype "
                                                 r"float64"),
    (lambda dp, dx: (tree.astype(dp, np.float64), dx),
     r"^check_layer\(Tampered\): dparams\['b'\] has dtype float64 for float32 params"),
], ids=["dx", "dparams"])
def test_float64_gradient_for_float32_layer_fails(change, says):
    with pytest.raises(AssertionError, match=says):
        check_layer(_tampered(L.Dense(2), change), (None, 2))


def test_wrong_loss_gradient_fails():
    def half(pred, target):
        value, pullback = losses.mse.vjp(pred, target)
        return value, lambda g=1.0: 0.5 * pullback(g)

    with pytest.raises(AssertionError, match=r"^check_loss\(half\).*first wrong entry pred\["):
        check_loss(losses.Loss("half", half), np.linspace(0, 1, 6), np.zeros(6))


def test_correct_layers_pass():
    check_layer(L.Dense(3), (None, 2))
    check_loss(losses.mse, np.linspace(0, 1, 6), np.zeros(6))


def _scale_layer(n, wrong, factor):
    """``y = x ∘ w`` over ``n`` features, with entry ``wrong`` of dw multiplied by
    ``factor``: a user's layer with one wrong gradient entry in a large leaf."""

    def vjp(p, x, **kw):
        def pullback(dy):
            dw = (dy * x).sum(0)
            dw[wrong] *= factor
            return {"w": dw.astype(x.dtype)}, (dy * p["w"]).astype(x.dtype)

        return x * p["w"], pullback

    return Layer(lambda k, s: (s, {"w": np.linspace(0.5, 1.5, n).astype(np.float32)}),
                 lambda p, x, **kw: x * p["w"], vjp, name="Scale")


def test_one_wrong_entry_of_20000_is_named_with_its_path_and_index():
    # The projection that failed moved entry 1234 far; a fresh random direction on the
    # leaf did not, so tier 2 skipped it and blamed a spread-out error. It re-uses it now.
    with pytest.raises(AssertionError, match=r"first wrong entry params\['w'\]\[1234\]: "
                                             r"expected -0.25\d+ \(finite difference\), "
                                             r"got -0.28\d+ \(vjp\)$"):
        check_layer(_scale_layer(20000, 1234, 1.1), (None, 20000))
    check_layer(_scale_layer(20000, 1234, 1.0), (None, 20000))


@pytest.mark.parametrize(("directions", "error", "says"), [
    (0, ValueError, ">= 1"), (-1, ValueError, ">= 1"), (1.5, TypeError, "an int"),
    (True, TypeError, "an int")])
def test_directions_must_be_a_positive_int(directions, error, says):
    # 0 checked nothing (a wrong layer passed); -1 blamed random.split
    bad = _tampered(L.Tanh(), lambda dp, dx: (dp, -dx))
    with pytest.raises(error, match=rf"check_vjp\(Tampered\): directions must .*{says}"):
        check_vjp(bad, (), np.ones((2, 2)), directions=directions)


def test_an_uncalled_constructor_or_a_plain_function_is_refused():
    with pytest.raises(TypeError, match=r"check_layer: expected a layer.*call the "
                                        r"constructor: ReLU\(\), not ReLU"):
        check_layer(L.ReLU, (None, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"check_vjp: expected a layer.*ReLU\(\)"):
        check_vjp(L.ReLU, (), np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"check_loss: the loss must .*\.vjp\(pred, target\)"):
        check_loss(lambda a, b: 0.0, np.ones(3), np.ones(3))


@pytest.mark.parametrize(("setting", "error", "says"), [
    ({"eps": 0.0}, ValueError, "eps must be a finite number > 0"),
    ({"eps": -1e-6}, ValueError, "eps must be a finite number > 0"),
    ({"rtol": "a"}, TypeError, "rtol must be a real number, got 'a'"),
    ({"rtol": -1.0}, ValueError, "rtol must be a finite number >= 0, got -1.0"),
    ({"rtol": float("nan")}, ValueError, "rtol must be a finite number >= 0, got nan"),
    ({"atol": float("inf")}, ValueError, "atol must be a finite number >= 0, got inf"),
    ({"atol": None}, TypeError, "atol must be a real number, got None"),
])
def test_tolerances_and_step_are_validated(setting, error, says):
    # eps=0 divided by zero; rtol=-1 and rtol=nan failed correct layers, blaming an entry
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    with pytest.raises(error, match=rf"^check_vjp\(Tanh\(\)\): {re.escape(says)}"):
        check_vjp(L.Tanh(), (), x, **setting)
    with pytest.raises(error, match=rf"^check_loss\(mse\): {re.escape(says)}"):
        check_loss(losses.mse, x, np.zeros_like(x), **setting)
    if "eps" not in setting:
        with pytest.raises(error, match=rf"^check_layer\(Tanh\(\)\): {re.escape(says)}"):
            check_layer(L.Tanh(), (None, 3), **setting)
    check_vjp(L.Tanh(), (), x, rtol=0, atol=1e-6, eps=np.float64(1e-6))  # rtol 0 is fine


def test_check_vjp_takes_a_tuple_input_with_integer_ids_beside_floats():
    # the pullback's dx is (None, array): nothing flows back into the ids
    model = L.Parallel(L.Embedding(3, 2), L.Tanh())
    _, params = model.init(random.key(0), ((None, 2), (None, 2)))
    x = (np.array([[0, 1], [2, 0]]), np.linspace(-1, 1, 4).reshape(2, 2))
    check_vjp(model, params, x)


def _scale_init(key, in_shape):
    return in_shape, {"w": np.ones(in_shape[-1:], np.float32)}


def test_check_layer_names_a_user_layer_returning_the_wrong_structure():
    def forgot_dparams(params, x, **kw):  # the pullback returns dx alone
        return x * params["w"], lambda dy: dy * params["w"]

    layer = Layer(_scale_init, lambda params, x, **kw: x * params["w"], forgot_dparams)
    with pytest.raises(AssertionError, match=r"check_layer\(Layer\): the pullback must return "
                                             r"\(dparams, dx\), got ndarray"):
        check_layer(layer, (None, 3))
    params_only = Layer(lambda key, s: {"w": np.ones(3)}, layer.apply, layer.vjp)
    with pytest.raises(AssertionError, match=r"init must return \(out_shape, params\), got dict"):
        check_layer(params_only, (None, 3))


def test_a_layer_of_things_that_are_not_functions_is_refused():
    with pytest.raises(TypeError, match=r"Layer: apply must be a function, got int"):
        Layer(_scale_init, 3, lambda p, x: x)
    params_only = Layer(lambda key, s: {"w": np.ones(3)}, lambda p, x, **kw: x,
                        lambda p, x, **kw: (x, lambda dy: ((), dy)))
    with pytest.raises(TypeError, match=r"Sequential\[0\] Layer: init must return "
                                        r"\(out_shape, params\).*got a dict"):
        L.Sequential(params_only).init(random.key(0), (None, 3))


def test_check_layer_draws_ids_for_a_layer_reading_them():
    # Embedding refuses floats: check_layer draws ids in [0, vocab) for it, and for a
    # Sequential starting with one; a wrong table gradient is still caught
    emb = L.Embedding(10, 3)
    assert emb.ids == 10 and L.Sequential(emb, L.Tanh()).ids == 10 and L.Tanh().ids is None
    check_layer(emb, (None, 4))
    check_layer(L.Sequential(L.Embedding(7, 3), L.Flatten(), L.Dense(2)), (None, 5))
    check_layer(L.Sequential(L.Embedding(1, 2), L.BatchNorm()), (None, 4), train=True)

    def doubled(params, x, **kw):
        y, pb = emb.vjp(params, x, **kw)
        return y, lambda dy: ({"table": 2 * pb(dy)[0]["table"]}, None)

    wrong = Layer(emb.init, emb.apply, doubled, name="Doubled", ids=10)
    with pytest.raises(AssertionError, match=r"first wrong entry params\['table'\]\["):
        check_layer(wrong, (None, 4))


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
    with pytest.raises(AssertionError, match=r"check_vjp\(TiedMax\): .*no single entry differs "
                                             r"beyond tolerance; the error is spread out "
                                             r"\(over x\)$"):
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
