"""Layers given bad inputs: wrong shapes, ranks, cotangents, params and constructor
arguments fail naming the layer and the shapes; statistics that overflow in the norms are
quiet zeros as PyTorch's, a NaN from the mean itself is not silenced, and a Reshape to -1
of an unknown size declares None."""

from __future__ import annotations

import re

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random


def test_dense_wrong_feature_size_names_layer_and_shapes(key):
    model = L.Sequential(L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(), L.Dense(1))
    _, params = model.init(key, (None, 2))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Dense\(25\).*\(\.\.\., 2\).*\(50, 3\)"):
        model.apply(params, np.ones((50, 3), np.float32))
    bad = (params[0], (), params[0], (), params[4])  # layer 2 gets a (2, 25) kernel
    with pytest.raises(ValueError, match=r"Sequential\[2\] Dense\(25\)"):
        model.apply(bad, np.ones((50, 2), np.float32))


def test_wrong_rank_and_shape_at_init(key):
    with pytest.raises(ValueError, match=r"Dense\(3\).*\(None, None\)"):
        L.Dense(3).init(key, (None, None))
    with pytest.raises(TypeError, match="in_shape must be a tuple"):
        L.Dense(3).init(key, 5)
    with pytest.raises(ValueError, match=r"Reshape\(\(4,\)\).*\(None, 3\)"):
        L.Reshape((4,)).init(key, (None, 3))
    with pytest.raises(ValueError, match=r"Sequential\[1\] Dense\(2\)"):
        L.Sequential(L.Flatten(), L.Dense(2)).init(key, (None, 0))


def test_pullback_refuses_broadcastable_cotangent(key):
    _, params = L.Dense(1).init(key, (None, 2))
    _, pullback = L.Dense(1).vjp(params, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"Dense\(1\).*\(5, 1\).*\(5,\)"):
        pullback(np.ones(5, np.float32))
    _, pullback = L.Sigmoid().vjp((), np.ones((5, 1)))
    with pytest.raises(ValueError, match=r"Sigmoid\(\).*\(5, 1\).*\(5,\)"):
        pullback(np.ones(5))


def test_sequential_params_count_mismatch(key):
    model = L.Sequential(L.Dense(2), L.ReLU())
    with pytest.raises(ValueError, match=r"one entry per layer \(2\).*length 1"):
        model.apply(({"w": np.ones((2, 2))},), np.ones((1, 2)))


def test_uncalled_constructor_is_refused():
    with pytest.raises(TypeError, match=r"ReLU\(\), not ReLU"):
        L.Sequential(L.Dense(2), L.ReLU)  # type: ignore[arg-type]


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="Dense"):
        L.Dense(0)
    with pytest.raises(ValueError, match="Dropout"):
        L.Dropout(1.5)
    with pytest.raises(ValueError, match="Reshape"):
        L.Reshape((-1, -1))


def test_softmax_axis_out_of_range():
    with pytest.raises(ValueError, match=r"Softmax\(axis=2\).*\(3, 2\)"):
        L.Softmax(axis=2).apply((), np.ones((3, 2)))


def test_reshape_with_minus_one_of_an_unknown_size_declares_none():
    out, _ = L.Reshape((-1, 2)).init(random.key(0), (None, None, 4))
    assert out == (None, None, 2)
    # the next layer then says what it needs, not that -1 is not a size
    with pytest.raises(ValueError, match=r"Dense\(3\): the last axis of in_shape must be a "
                                         r"known size > 0, got \(None, None\)"):
        L.Sequential(L.Reshape((-1,)), L.Dense(3)).init(random.key(0), (None, None))


def test_a_nan_from_finite_inputs_to_layer_norm_is_not_silenced():
    # the mean itself overflows: x̂ is NaN, and NumPy's warning says so (only overflow of
    # the variance, which gives x̂ = 0 as in PyTorch, is silenced)
    x = np.array([[3e38, 3e38, 3e38, -1.0]], np.float32)
    layer = L.LayerNorm()
    _, params = layer.init(random.key(0), (None, 4))
    with pytest.warns(RuntimeWarning, match="invalid value"):
        layer.apply(params, x)


def test_norm_statistics_that_overflow_are_right_without_a_warning(key):
    # σ² of values ~1e29 (1e30 in LayerNorm) overflows float32: NumPy warned "overflow
    # encountered in square" (an error here); PyTorch returns x̂ = 0 silently, so y = bias;
    # funcdl takes those statistics again in float64 (test_norm_overflow has the rest)
    x = np.array([[1e30, -1e30, 0.0]], np.float32)
    ln = L.LayerNorm()
    _, p_ln = ln.init(key, (None, 3))
    y, pullback = ln.vjp(p_ln, x)
    want = np.array([[1.0, -1.0, 0.0]]) * 1.5 ** 0.5
    np.testing.assert_allclose(ln.apply(p_ln, x), want, rtol=1e-6)
    np.testing.assert_array_equal(y, ln.apply(p_ln, x))
    assert np.all(np.isfinite(pullback(np.ones_like(y))[1]))
    bn = L.BatchNorm()
    _, p_bn, s_bn = bn.init(key, (None, 4))
    x = (random.normal(random.key(1), (3, 4)) * 1e29).astype(np.float32)
    y, state = bn.apply(p_bn, x, state=s_bn, train=True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y, (x64 - x64.mean(0)) / x64.std(0), rtol=1e-5, atol=1e-6)
    assert np.all(state["var"] == np.inf)  # as torch's running_var: past float32's range
    y, pullback, _ = bn.vjp(p_bn, x, state=s_bn, train=True)
    assert np.all(np.isfinite(pullback(np.ones_like(y))[1]))


# ------------------------------------------- several arrays where one is read: never stacked

# (Identity is not among them: it passes any tree through, as stax's; test_routing_inputs)
_ONE_INPUT = [lambda: L.Dense(2), lambda: L.ReLU(), lambda: L.Softmax(), lambda: L.LayerNorm(),
              lambda: L.Flatten(), lambda: L.Conv2D(2, 3),
              lambda: L.MaxPool2D(2), lambda: L.GlobalAvgPool(), lambda: L.Dropout(0.5)]


@pytest.mark.parametrize("make", _ONE_INPUT)
def test_a_tuple_of_arrays_is_refused_by_a_layer_reading_one(make):
    # np.asarray would stack a FanOut's (x, x) into one array: Flatten then merged the
    # batch axis with the branches', Dense gave a (2, 3, 2) output, silently
    layer = make()
    _, params = layer.init(random.key(0), (None, 4, 4, 2))[:2]
    x = np.ones((3, 4, 4, 2), np.float32)
    for call in (layer.apply, layer.vjp):
        with pytest.raises(TypeError, match=rf"{re.escape(layer.name)}: the input must be one "
                                            rf"array, got a tuple of 2 .*FanInSum\(\)"):
            call(params, (x, x))


def test_a_users_layer_returning_two_arrays_stops_at_the_next_layer():
    def init(key, shape):
        return (shape, shape), ()

    def apply(params, x, **kw):
        return x, 2 * x

    def vjp(params, x, **kw):
        return apply(params, x), lambda dy: ((), dy[0] + 2 * dy[1])

    model = L.Sequential(L.Layer(init, apply, vjp), L.Flatten())
    with pytest.raises(TypeError, match=r"Sequential\[1\] Flatten\(\): the input must be one"):
        model.apply(((), ()), np.ones((3, 4), np.float32))


def test_a_list_of_rows_is_still_a_batch():
    layer = L.Dense(2)
    _, params = layer.init(random.key(0), (None, 3))
    rows = [np.array([0.5, -1.0, 2.0], np.float32), np.array([1.0, 0.0, 3.0], np.float32)]
    np.testing.assert_array_equal(layer.apply(params, rows), layer.apply(params, np.stack(rows)))


@pytest.mark.parametrize("make, shape", [
    (lambda: L.Dense(2), (2, 4)), (lambda: L.Conv2D(2, 3), (2, 5, 5, 1)),
    (lambda: L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2)), (2, 4))])
def test_a_gradient_beyond_float32_is_inf_in_the_params_dtype_without_a_warning(make, shape):
    # a finite float64 input on float32 params: the float64 gradient exceeds float32's range,
    # and its cast gave NumPy's overflow warning (an error under pytest)
    layer = make()
    _, params = layer.init(random.key(0), (None, *shape[1:]))
    y, pullback = layer.vjp(params, np.full(shape, 1e300))
    dparams, _ = pullback(np.ones_like(y))
    w = dparams["w"] if isinstance(dparams, dict) else dparams[-1]["w"]  # relu(x W1)ᵀ dy
    assert w.dtype == np.float32 and np.isinf(w).any()
    # and dx beyond a float32 input's range, under float64 params
    p64 = {"w": params["w"].astype(np.float64) * 1e300, "b": params["b"].astype(np.float64)} \
        if isinstance(params, dict) else None
    if p64 is not None:
        y, pullback = layer.vjp(p64, np.ones(shape, np.float32))
        dx = pullback(np.ones_like(y))[1]
        assert dx.dtype == np.float32 and np.isinf(dx).any()


def _init(key, shape):
    return shape, ()


def _apply(params, x, **kw):
    return x


def _vjp(params, x, **kw):
    return x, lambda dy: ((), dy)


@pytest.mark.parametrize("kw, match", [
    ({"stateful": "no"}, r"Layer: stateful must be True or False, got 'no'"),
    ({"dx_optional": 1}, r"Layer: dx_optional must be True or False"),
    ({"name": None}, r"Layer: name must be a str"),
    ({"name": "Mine", "pointwise": 3}, r"Layer Mine: pointwise must be None or a Pointwise"),
    ({"vjp_then": "f"}, r"Layer: vjp_then must be None or a function"),
    ({"ids": 0}, r"Layer: ids must be None or an int >= 1"),
])
def test_a_users_layer_fields_are_checked_when_built(kw, match):
    # stateful='no' counted as True; pointwise=3 failed inside Sequential with an
    # AttributeError; name=None broke repr
    with pytest.raises(TypeError, match=match):
        L.Layer(_init, _apply, _vjp, **kw)
    flagged = L.Layer(_init, _apply, _vjp, dx_optional=np.True_)
    assert flagged.dx_optional is True and flagged.stateful is False


@pytest.mark.parametrize("bad", ["f", "df"])
def test_a_users_pointwise_of_the_wrong_shape_is_named_in_a_fused_step(bad):
    # its dx went into Dense's pullback, and NumPy's "shapes not aligned" blamed the Dense
    from funcdl.layers.base import Pointwise

    def softsign(x):
        return x / (1 + np.abs(x))

    def df(x, y, dy):
        return dy / (1 + np.abs(x)) ** 2

    act = Pointwise("Softsign", (lambda x: softsign(x)[:, :1]) if bad == "f" else softsign,
                    (lambda x, y, dy: dy[:, :1]) if bad == "df" else df)
    layer = L.Layer(_init, lambda p, x: softsign(x),
                    lambda p, x: (softsign(x), lambda dy: ((), df(x, None, dy))),
                    name="Softsign", pointwise=act)
    model = L.Sequential(L.Dense(3), layer)
    _, params = model.init(random.key(0), (None, 4))
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=rf"Sequential\[1\] Softsign: its Pointwise {bad} "
                                         rf"returned .* of shape \(3, 1\); an elementwise map "
                                         rf"keeps the shape, \(3, 3\)"):
        _, pullback = model.vjp(params, x)
        pullback(np.ones((3, 3), np.float32))


def test_a_stax_batch_of_minus_one_and_a_stax_initializer_are_named():
    with pytest.raises(ValueError, match=r"got \(-1, 4\) \(stax's -1 for an unknown batch is "
                                         r"None here\)"):
        L.Dense(3).init(random.key(0), (-1, 4))
    # an init(key, shape) failed with Python's bare "takes 2 positional arguments"
    dense = L.Dense(4, w_init=lambda k, s: np.zeros(s, np.float32))
    with pytest.raises(TypeError, match=r"Dense\(4\): w_init\(key, shape, dtype\) failed: "
                                        r"TypeError: .*takes 2 positional arguments"):
        dense.init(random.key(0), (None, 3))


def test_window_layers_name_array_and_bool_options_as_given():
    # call_name compared an option with its default by ==: an array raised NumPy's "truth
    # value is ambiguous" before the layer could name it, and True (== 1) was hidden
    with pytest.raises(TypeError, match=r"^Conv2D\(4, 3, stride=array\(\[1, 2\]\)\): stride "):
        L.Conv2D(4, 3, stride=np.array([1, 2]))
    with pytest.raises(TypeError, match=r"^MaxPool2D\(2, stride=array\(\[1, 2\]\)\): stride "):
        L.MaxPool2D(2, stride=np.array([1, 2]))
    with pytest.raises(TypeError, match=r"^Conv2D\(4, 3, dilation=True\): dilation "):
        L.Conv2D(4, 3, dilation=True)


def test_a_nested_error_reads_as_a_path_and_a_users_layer_keeps_its_name():
    """A combinator inside a combinator is placed by `` > ``, without its repr; a user's
    layer whose message starts with a word like its name is not taken for a placed one."""
    def refuse(p, x, **kw):
        raise ValueError("mylayer failed on this input")

    mine = L.Layer(lambda k, s: (s, ()), refuse, refuse, name="mylayer(3)")
    model = L.Sequential(L.Dense(2), L.Sequential(L.Dense(2), mine))
    _, params = model.init(random.key(0), (None, 3))
    with pytest.raises(ValueError) as e:
        model.apply(params, np.ones((1, 3), np.float32))
    assert str(e.value) == ("Sequential[1] > Sequential[1] mylayer(3): mylayer failed on "
                            "this input")


def test_the_ones_kept_for_batch_sums_are_one_vector_per_dtype(monkeypatch):
    # an lru_cache of 64 sizes held 76 MiB after 40 image sizes: now the longest only
    from funcdl.layers import _sums

    monkeypatch.setattr(_sums, "_ONES", {})  # not the longer one an earlier test asked for
    sizes = [1000 * k + 7 for k in range(1, 41)]
    for n in sizes:
        v = _sums.ones(n, np.dtype(np.float32))
        assert v.shape == (n,) and not v.flags.writeable and (v == 1).all()
    kept = _sums._ONES[np.dtype(np.float32)]
    assert max(sizes) <= kept.size <= 2 * max(sizes)


@pytest.mark.parametrize("mask", [["padding"], {"padding": 1}])
def test_masked_mean_names_a_mask_argument_that_is_not_a_string(mask):
    with pytest.raises(ValueError, match=r"^MaskedMean: mask must be 'padding'"):
        L.MaskedMean(mask=mask)


def test_dense_adds_a_float64_bias_to_float32_weights_in_float64():
    # the bias was added into the float32 product in place: 1e-9 vanished, silently
    dense = L.Dense(3)
    _, p = dense.init(random.key(0), (None, 2))
    p = {"w": p["w"], "b": np.array([1e-9, 2.0, 3.0])}
    x = np.ones((4, 2), np.float32)
    y = dense.apply(p, x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, (x @ p["w"]).astype(np.float64) + p["b"])
    y2, pullback = dense.vjp(p, x)
    np.testing.assert_array_equal(y, y2)
    grads, dx = pullback(np.ones_like(y))
    assert (grads["w"].dtype, grads["b"].dtype, dx.dtype) == (np.float32, np.float64,
                                                              np.float32)


def test_casts_past_float32s_range_give_inf_without_a_warning_and_inits_keep_their_words():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, pullback = L.Tanh().vjp((), np.zeros((1, 3), np.float32))
        assert np.isinf(pullback(np.full((1, 3), 1e39))[1]).all()  # a float64 dy cast
        y = L.Tanh().apply((), [[1e39, 0.0]])  # Python floats cast to float32: inf
        assert y.dtype == np.float32 and y.tolist() == [[1.0, 0.0]]
    # a user initializer's NumPy error: its class needs (ufunc, dtypes); a bare
    # "__init__() missing 1 required positional argument" came instead of its words
    bad = L.Dense(3, w_init=lambda k, s, d: np.zeros(s, d) + "0.1")
    with pytest.raises(TypeError, match=r"^Dense\(3\): w_init\(key, shape, dtype\) failed: "
                                        r"UFuncTypeError: ufunc 'add'"):
        bad.init(random.key(0), (None, 2))
