"""funcdl.testing itself: it passes correct vjps and fails wrong ones, naming the entry;
its arguments (directions, tolerances, what a layer or a loss is) are validated. The checker
on hard cases, each a way it could turn blind: test_testing_checker.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _testing_util import _dense64, _params, _scale_layer, _tampered, _tanh64_vjp

from funcdl import layers as L
from funcdl import losses, random, tree
from funcdl.layers import Layer
from funcdl.testing import check_layer, check_loss, check_vjp


def test_wrong_sign_in_dx_fails():
    bad = _tampered(L.Tanh(), lambda dp, dx: (dp, -dx))
    with pytest.raises(AssertionError, match=r"Tampered.*first wrong entry x\["):
        check_vjp(bad, (), np.linspace(-1, 1, 6).reshape(2, 3))


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
