"""The checkers take what users pass, as JAX's check_grads and torch's gradcheck do: scalar
predictions, lists as pytrees (dx in the same container), NaN or inf where a layer or loss is
meant to meet them (a -inf mask, NaN targets read as missing), a stateless child's ``()``
state; and a failure at a non-finite input says where that input is."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _testing_util import _tampered

from funcdl import layers as L
from funcdl import losses, random, testing, tree

KEY = random.key(0)


@pytest.mark.parametrize("loss, pred, target", [
    (losses.mse, 1.5, 2.0), (losses.huber, 1.5, 4.0), (losses.bce, 0.3, 1.0),
    (losses.bce_with_logits, 0.3, 1.0), (losses.mse, np.array(1.5, np.float32), 2.0)])
def test_check_loss_takes_a_scalar_prediction(loss, pred, target):
    # a 0-d pred's gradient comes back as a NumPy scalar: no mismatch of kind or dtype
    testing.check_loss(loss, pred, target)


def test_check_loss_takes_a_vjp_returning_a_list():
    # value_and_grad trains with such a loss; its check passes too
    loss = losses.Loss("listed", lambda p, t: [float(np.sum((p - t) ** 2)),
                                               lambda g: 2 * g * (p - t)])
    testing.check_loss(loss, random.normal(KEY, (3, 2), np.float64), np.zeros((3, 2)))


def _nanmse_vjp(p: Any, t: Any) -> Any:
    seen = ~np.isnan(t)  # NaN targets are missing: no loss, no gradient there
    d = np.where(seen, p - np.where(seen, t, 0.0), 0.0)
    return float(np.sum(d * d) / seen.sum()), lambda g: 2 * g * d / seen.sum()


def test_check_loss_of_a_loss_that_reads_nan_targets_as_missing():
    t = np.array([[1.0, np.nan], [np.nan, -2.0]])
    testing.check_loss(losses.Loss("nanmse", _nanmse_vjp), random.normal(KEY, (2, 2),
                                                                          np.float64), t)


def _mask(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[:, 0] = -np.inf  # an attention-style mask: that class never gets any weight
    return out


def test_check_vjp_at_a_masked_softmax_input_passes_and_still_catches_a_wrong_vjp():
    x = _mask(random.normal(KEY, (3, 4), np.float64))
    testing.check_vjp(L.Softmax(-1), (), x)
    off = _tampered(L.Softmax(-1), lambda dp, dx: (dp, 1.01 * dx))  # 1% off
    with pytest.raises(AssertionError, match=r"finite differences"):
        testing.check_vjp(off, (), x)


def test_a_failure_at_a_nan_input_points_at_the_entry():
    x = random.normal(KEY, (2, 3), np.float64)
    x[1, 2] = np.nan
    with pytest.raises(AssertionError, match=r"note: x\[1, 2\] is nan; finite differences "
                                             r"through a non-finite value are NaN"):
        testing.check_vjp(L.ReLU(), (), x)  # ReLU's dx at NaN is 0; the difference is NaN


def _weighted_sum() -> L.Layer:
    """``x[0] + 2 x[1]`` on a list of two arrays; dx a list, as the input came."""
    def init(key: Any, in_shape: Any) -> Any:
        return tuple(in_shape[0]), ()

    def apply(params: Any, xs: Any, **kw: Any) -> Any:
        return xs[0] + 2 * xs[1]

    def vjp(params: Any, xs: Any, **kw: Any) -> Any:
        return apply(params, xs), lambda dy: ((), [dy, 2 * dy])

    return L.Layer(init, apply, vjp)


def test_check_vjp_keeps_a_list_input_a_list():
    x = random.normal(KEY, (2, 3), np.float64)
    testing.check_vjp(_weighted_sum(), (), [x, x])
    testing.check_layer(_weighted_sum(), ((None, 3), (None, 3)),
                        x=[x.astype(np.float32), x.astype(np.float32)])


def test_check_vjp_takes_the_empty_state_of_a_stateless_child():
    layer = L.Dense(2)
    _, params = layer.init(KEY, (None, 3))
    x = random.normal(KEY, (4, 3), np.float64)
    testing.check_vjp(layer, tree.astype(params, np.float64), x, state=())
    with pytest.raises(TypeError, match=r"state= given, but the layer is not stateful"):
        testing.check_vjp(layer, params, x, state={"mean": np.zeros(2)})


def test_check_vjp_reads_a_list_of_rows_or_of_numpy_scalars_as_the_layer_does():
    testing.check_vjp(L.ReLU(), (), [np.float32(1.0), np.float32(-2.0)])
    layer = L.Dense(2)
    params = tree.astype(layer.init(KEY, (None, 3))[1], np.float64)
    row = np.array([0.5, -1.0, 2.0])
    testing.check_vjp(layer, params, [row, 2 * row])  # Dense reads it as a (2, 3) array


def test_a_ragged_list_is_named_by_the_checker_not_by_numpy():
    dense = L.Dense(2)
    _, params = dense.init(KEY, (None, 2))
    with pytest.raises(ValueError, match=r"check_vjp\(Dense\(2\)\): x is not a rectangular"):
        testing.check_vjp(dense, params, [[0.0, 1.0], [2.0]])
    with pytest.raises(ValueError, match=r"check_loss\(mse\): pred is not a rectangular"):
        testing.check_loss(losses.mse, [[0.5], [0.5, 0.5]], np.ones((2, 2)))


def _user_scale(init_form=tuple, vjp_form=tuple, back_form=tuple):
    def init(key, s):
        return init_form((s, {"w": np.full(s[-1], 2.0, np.float32)}))

    def vjp(p, x, **kw):
        return vjp_form((x * p["w"], lambda dy: back_form(({"w": (dy * x).sum(0)},
                                                          dy * p["w"]))))

    return L.Layer(init, lambda p, x, **kw: x * p["w"], vjp, name="U")


def test_the_checkers_take_the_lists_the_combinators_take_and_refuse_what_they_refuse():
    # a vjp or pullback returning a list trains in any combinator: its checks pass too
    x = random.normal(KEY, (3, 4), np.float64)
    for layer in (_user_scale(vjp_form=list), _user_scale(back_form=list)):
        testing.check_layer(layer, (None, 4))
        testing.check_vjp(layer, {"w": np.full(4, 2.0)}, x)
        L.Sequential(L.Dense(4), layer).init(KEY, (None, 3))
    # init returning a list is refused by both, each saying what to return
    listed = _user_scale(init_form=list)
    with pytest.raises(AssertionError, match=r"check_layer\(U\): init must return \(out_shape, "
                                             r"params\), got list"):
        testing.check_layer(listed, (None, 4))
    with pytest.raises(TypeError, match=r"Sequential\[1\] U: init must return \(out_shape, "
                                        r"params\), out_shape a tuple, got a list of length 2: "
                                        r"return a tuple, not a list$"):
        L.Sequential(L.Dense(4), listed).init(KEY, (None, 3))


def test_check_layer_names_an_init_returning_params_before_the_shape():
    # (params, out_shape) swapped: apply was called with the shape as params and the
    # user's own TypeError came out, not an AssertionError naming the layer
    def init(key, s):
        return {"w": np.ones(s[-1], np.float32)}, s

    swapped = L.Layer(init, lambda p, x, **kw: x * p["w"],
                      lambda p, x, **kw: (x * p["w"], lambda dy: ({"w": (dy * x).sum(0)},
                                                                   dy * p["w"])), name="U")
    with pytest.raises(AssertionError, match=r"^check_layer\(U\): init must return \(out_shape, "
                                             r"params\), out_shape first \(a tuple such as "
                                             r"\(None, 3\)\), got dict first$"):
        testing.check_layer(swapped, (None, 3))
