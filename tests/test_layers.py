"""Core layers: every layer of the module through check_layer and a float64 train-mode vjp,
Dense's known values, init and gradients, Sequential against a hand composition, dtypes
(float32 end to end, integer, Python-float and big-endian inputs, a float32 input under
float64 params) and users' own layers. Activations: test_layers_activations.py; Dropout:
test_layers_dropout.py; pools: test_layers_pooling.py; bad and overflowing inputs:
test_layers_errors.py."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random, tree
from funcdl.testing import check_layer, check_vjp

# (constructor, in_shape) — every layer of this module, several shapes including batch 1.
TABLE = [
    (lambda: L.Dense(5), (None, 3)),
    (lambda: L.Dense(4), (None, 2, 3)),
    (lambda: L.Dense(2, use_bias=False), (None, 6)),
    (lambda: L.Dense(3, w_init=fd.initializers.he_normal(),
                     b_init=fd.initializers.normal(0.5)), (None, 4)),
    (L.ReLU, (None, 7)),
    (lambda: L.LeakyReLU(0.2), (None, 3, 4)),
    (L.Tanh, (None, 5)),
    (L.Sigmoid, (None, 5)),
    (L.Softplus, (None, 5)),
    (lambda: L.Softplus(beta=2.0, threshold=1.0), (None, 5)),
    (L.GELU, (None, 6)),
    (lambda: L.GELU(approximate=True), (None, 6)),
    (L.SiLU, (None, 6)),
    (L.ELU, (None, 6)),
    (lambda: L.ELU(0.5), (None, 2, 3)),
    (L.Softmax, (None, 5)),
    (lambda: L.Softmax(axis=1), (None, 4, 3)),
    (L.LogSoftmax, (None, 5)),
    (lambda: L.LogSoftmax(axis=-2), (None, 4, 3)),
    (L.Identity, (None, 3)),
    (L.Flatten, (None, 2, 3, 4)),
    (lambda: L.Reshape((3, -1)), (None, 6, 2)),
    (lambda: L.Dropout(0.5), (None, 10)),
    (lambda: L.Sequential(L.Dense(4), L.Tanh(), L.Dense(2), L.LogSoftmax()), (None, 3)),
    (lambda: L.Sequential(L.Flatten(), L.Dense(3), L.Sequential(L.ReLU(), L.Dense(1))),
     (None, 2, 2)),
    (lambda: L.Sequential(), (None, 3)),
]
IDS = [f"{i}-{c().name}" for i, (c, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
@pytest.mark.parametrize("batch", [1, 4])
def test_check_layer(make, in_shape, batch):
    check_layer(make(), in_shape, batch=batch)


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
def test_vjp_train_mode_float64(make, in_shape, key):
    layer = make()
    _, params = layer.init(key, in_shape)
    x = random.normal(random.key(1), tuple(3 if d is None else d for d in in_shape), np.float64)
    check_vjp(layer, tree.astype(params, np.float64), x, key=random.key(2), train=True)


def test_dense_known_values_and_gradients():
    layer = L.Dense(2)
    params = {"w": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "b": np.array([0.5, -1.0])}
    x = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    y, pullback = layer.vjp(params, x)
    np.testing.assert_allclose(y, [[-3.5, -5.0], [5.5, 7.0]])
    dy = np.array([[1.0, 0.0], [0.0, 2.0]])
    grads, dx = pullback(dy)
    np.testing.assert_allclose(grads["w"], x.T @ dy)
    np.testing.assert_allclose(grads["b"], [1.0, 2.0])
    np.testing.assert_allclose(dx, [[1.0, 3.0, 5.0], [4.0, 8.0, 12.0]])


def test_float32_end_to_end(key):
    model = L.Sequential(L.Dense(8), L.GELU(), L.Dense(8), L.Softplus(), L.Dense(3),
                         L.Softmax())
    _, params = model.init(key, (None, 4))
    assert all(p.dtype == np.float32 for p in tree.leaves(params))
    x = random.normal(key, (5, 4))
    y, pullback = model.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in tree.leaves(grads))


def test_integer_input_is_cast_to_params_dtype(key):
    _, params = L.Dense(3).init(key, (None, 2))
    assert L.Dense(3).apply(params, np.array([[1, 2]])).dtype == np.float32


@pytest.mark.parametrize("x64, dy64, b64, w64", [
    (True, False, False, False), (False, True, False, False), (False, False, True, False),
    (False, False, False, True), (False, False, False, False)])
def test_dense_grads_take_each_params_dtype(key, x64, dy64, b64, w64):
    # Whichever operand is float64 (input, cotangent, or a float64 bias beside a float32
    # kernel, or the kernel beside a float32 bias: the kernel's gradient then has its
    # dtype, the bias's not), each gradient comes back in its own param's dtype, as JAX
    # gives it.
    _, params = L.Dense(3).init(key, (None, 2))
    if b64 or w64:
        params = {"w": params["w"].astype(np.float64 if w64 else np.float32),
                  "b": params["b"].astype(np.float64 if b64 else np.float32)}
    x = np.ones((4, 2), np.float64 if x64 else np.float32)
    y, pullback = L.Dense(3).vjp(params, x)
    grads, _ = pullback(np.ones(y.shape, np.float64 if dy64 else y.dtype))
    assert grads["w"].dtype == (np.float64 if w64 else np.float32)
    assert grads["b"].dtype == (np.float64 if b64 else np.float32)
    np.testing.assert_array_equal(grads["b"], [4, 4, 4])


def test_dense_default_init_is_torchs_linear(key):
    # w and b ~ U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear: here ±0.25
    _, params = L.Dense(2000).init(key, (None, 16))
    for p in (params["w"], params["b"]):
        assert p.dtype == np.float32
        assert -0.25 <= p.min() < -0.24 and 0.24 < p.max() < 0.25
        assert abs(p.mean()) < 0.02 and abs(p.var() - 0.25**2 / 3) < 0.002


def test_dense_adds_its_bias_on_outputs_of_many_rows(key, monkeypatch):
    # from _sums.TILE_FROM output entries in TILE_ROWS rows the bias goes through _sums.chan's
    # tiled rows
    from funcdl.layers._sums import TILE_FROM, TILE_ROWS
    layer = L.Dense(10)
    _, params = layer.init(key, (None, 6))
    params = tree.astype(params, np.float64)
    x = random.normal(random.key(3), (max(TILE_FROM // 10, TILE_ROWS) + 7, 6), np.float64)
    expected = x @ params["w"] + params["b"]
    assert expected.size >= TILE_FROM
    tiles, real_tile = [], np.tile  # chan calls np.tile only when it tiles
    monkeypatch.setattr(np, "tile", lambda *a: tiles.append(a) or real_tile(*a))
    np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-12, atol=1e-12)
    assert tiles
    y, pullback = layer.vjp(params, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    dy = random.normal(random.key(4), y.shape, np.float64)
    grads, dx = pullback(dy)
    np.testing.assert_allclose(grads["b"], dy.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dx, dy @ params["w"].T, rtol=1e-12, atol=1e-12)
    check_vjp(layer, params, x)


def test_sequential_equals_manual_composition(key):
    d1, act, d2 = L.Dense(4), L.Tanh(), L.Dense(2)
    model = L.Sequential(d1, act, d2)
    _, params = model.init(key, (None, 3))
    x = random.normal(random.key(5), (6, 3), np.float64)
    p64 = tree.astype(params, np.float64)
    h1, pb1 = d1.vjp(p64[0], x)
    h2, pb2 = act.vjp((), h1)
    y, pb3 = d2.vjp(p64[2], h2)
    ys, pbs = model.vjp(p64, x)
    np.testing.assert_allclose(ys, y)
    dy = random.normal(random.key(6), y.shape, np.float64)
    g3, dh2 = pb3(dy)
    _, dh1 = pb2(dh2)
    g1, dx = pb1(dh1)
    (gs1, gs2, gs3), dxs = pbs(dy)
    np.testing.assert_allclose(gs1["w"], g1["w"])
    np.testing.assert_allclose(gs3["b"], g3["b"])
    np.testing.assert_allclose(dxs, dx)
    assert gs2 == ()


def test_sequential_init_shapes_and_key_split(key):
    model = L.Sequential(L.Dense(3), L.Dense(3))
    out, (p1, p2) = model.init(key, (None, 3))
    assert out == (None, 3)
    assert not np.array_equal(p1["w"], p2["w"])  # one key per child


def test_custom_layer_composes(key):
    """A user's own layer from three functions: y = a * x, with its vjp."""

    def init(k, in_shape):
        return in_shape, {"a": np.float32(2.0) * np.ones(in_shape[-1], np.float32)}

    def apply(params, x, *, key=None, train=False):
        return params["a"] * x

    def vjp(params, x, *, key=None, train=False):
        return params["a"] * x, lambda dy: ({"a": (dy * x).sum(axis=0)}, dy * params["a"])

    scale = L.Layer(init, apply, vjp, name="Scale")
    model = L.Sequential(L.Dense(3), scale, L.Tanh())
    check_layer(model, (None, 2))
    _, params = model.init(key, (None, 2))
    check_vjp(model, params, np.ones((2, 2)))


@pytest.mark.parametrize(("make", "in_shape", "kw"), [
    (lambda: L.Dense(3), (None, 4), {}),
    (lambda: L.Conv2D(2, 3), (None, 5, 5, 2), {}),
    (lambda: L.Conv1D(2, 3), (None, 6, 2), {}),
    (lambda: L.LayerNorm(), (None, 4), {}),
    (lambda: L.LayerNorm(axis=1), (None, 4, 3), {}),
    (lambda: L.BatchNorm(), (None, 4), {"train": True}),
    (lambda: L.BatchNorm(), (None, 4), {"train": False}),
    (lambda: L.Sequential(L.Dense(4), L.Tanh(), L.Dense(2)), (None, 4), {}),
    (lambda: L.Residual(L.Sequential(L.Dense(4), L.ReLU())), (None, 4), {}),  # dy + dx
])
def test_dx_takes_the_inputs_dtype_under_float64_params(make, in_shape, kw):
    # JAX gives an input's cotangent the input's dtype (and dparams the params'): a float32
    # x under float64 params took a float64 dx, where the dparams were cast back
    layer = make()
    got = layer.init(random.key(0), in_shape)
    params = tree.astype(got[1], np.float64)
    if layer.stateful:
        kw = {**kw, "state": got[2]}
    x64 = random.normal(random.key(1), tuple(3 if d is None else d for d in in_shape),
                        np.float64)
    out = layer.vjp(params, x64.astype(np.float32), **kw)
    y, pullback = out[0], out[1]
    assert y.dtype == np.float64  # the forward promotes, as NumPy and JAX do
    dy = random.normal(random.key(2), y.shape, np.float64)
    dparams, dx = pullback(dy)
    assert dx.dtype == np.float32
    assert {a.dtype for a in tree.leaves(dparams)} == {np.dtype(np.float64)}
    want = layer.vjp(params, x64.astype(np.float32).astype(np.float64), **kw)[1](dy)[1]
    # Residual adds dy to a dx its branch already rounded to float32: within an ulp
    np.testing.assert_allclose(dx, want.astype(np.float32), rtol=2e-7, atol=1e-7)


def test_a_users_layer_need_not_take_key_or_train():
    # combinators pass key= and train= to every child: apply(params, x) raised Python's bare
    # "unexpected keyword argument 'key'"
    def init(key, in_shape):
        return in_shape, {"a": np.float32(3.0) * np.ones(in_shape[-1], np.float32)}

    def apply(params, x):
        return params["a"] * x

    def vjp(params, x, *, train=False):  # takes one of the two: only key is dropped
        assert train is True
        return params["a"] * x, lambda dy: ({"a": (dy * x).sum(axis=0)}, params["a"] * dy)

    scale = L.Layer(init, apply, vjp, name="Scale")
    model = L.Sequential(L.Dense(2), scale, L.Dropout(0.5))
    _, params = model.init(random.key(0), (None, 3))
    x = random.normal(random.key(1), (4, 3), np.float32)
    y = model.apply(params, x, key=random.key(2), train=False)
    np.testing.assert_allclose(y, 3 * L.Dense(2).apply(params[0], x), rtol=1e-6)
    loss, grads = fd.value_and_grad(model, fd.losses.mse)(params, x, np.zeros((4, 2)),
                                                         key=random.key(2))
    assert grads[1]["a"].shape == (2,) and np.isfinite(loss)
    def takes_all(params, x, **kw):
        return x

    assert L.Layer(init, takes_all, vjp).apply is takes_all  # kept as given
    assert scale.apply is not apply and scale.apply.__name__ == "apply"  # wrapped


@pytest.mark.parametrize("make", [lambda: L.Dense(2), lambda: L.ReLU(), lambda: L.LayerNorm(),
                                  lambda: L.Sequential(L.Dense(3), L.Tanh(), L.Dense(2))])
def test_python_floats_are_float32_as_jaxs_weak_floats(make):
    # np.asarray of a list is float64: the whole forward and dx of a float32 network were
    # float64, silently; a float64 ndarray still asks for float64 (NumPy's promotion)
    layer = make()
    _, params = layer.init(random.key(0), (None, 3))
    rows = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
    y, pullback = layer.vjp(params, rows)
    assert y.dtype == layer.apply(params, rows).dtype == np.float32
    assert pullback(np.ones_like(y))[1].dtype == np.float32
    np.testing.assert_array_equal(y, layer.apply(params, np.array(rows, np.float32)))
    assert layer.apply(params, np.array(rows)).dtype == np.float64
    if params:  # under float64 params they are float64, exact, as JAX's take the other's
        p64 = tree.astype(params, np.float64)
        y64, pullback64 = layer.vjp(p64, rows)
        np.testing.assert_array_equal(y64, layer.apply(p64, np.array(rows)))
        assert pullback64(np.ones_like(y64))[1].dtype == np.float64
    # float64 arrays in a list ask for float64, as an array of them does
    assert layer.apply(params, [np.array(r) for r in rows]).dtype == np.float64


def test_a_users_partial_or_callable_object_need_not_take_key_or_train():
    def scale_apply(params, x, s):
        return x * s

    class Scale:
        def __call__(self, params, x):
            return 2.0 * x

    init = lambda key, shape: (shape, ())  # noqa: E731
    vjp = lambda params, x, **kw: (2.0 * x, lambda dy: ((), 2.0 * dy))  # noqa: E731
    x = np.ones((2, 3), np.float32)
    for apply in (functools.partial(scale_apply, s=2.0), Scale()):
        model = L.Sequential(L.Layer(init, apply, vjp, name="Scale2"), L.Tanh())
        np.testing.assert_array_equal(model.apply(((), ()), x), np.tanh(2 * x))

    # a flag under another name would be dropped, and the layer run in inference: refused
    def my_dropout(params, x, rng=None, training=False):
        return x

    with pytest.raises(TypeError, match=r"Sequential\[0\] MyDrop: .*unexpected keyword "
                                        r"argument 'key'"):
        L.Sequential(L.Layer(init, my_dropout, vjp, name="MyDrop")).apply(((),), x, train=True)


def test_a_big_endian_input_gets_a_native_float32_dx():
    # np.load of a '>f4' file: dx in the input's dtype, in native byte order
    layer = L.Dense(2)
    _, params = layer.init(random.key(0), (None, 3))
    x = random.normal(random.key(1), (4, 3)).astype(">f4")
    y, pullback = layer.vjp(tree.astype(params, np.float64), x)
    dx = pullback(np.ones_like(y))[1]
    assert dx.dtype == np.dtype("=f4") and dx.dtype.isnative



_X4 = np.arange(32, dtype=np.float32).reshape(2, 4, 4, 1) % 5 - 2
_X2 = _X4.reshape(2, 16)


@pytest.mark.parametrize(("layer", "x"), [
    (L.ReLU(), _X2), (L.GELU(), _X2), (L.Softmax(), _X2), (L.Flatten(), _X4),
    (L.Identity(), _X2), (L.Reshape((-1,)), _X4), (L.Dropout(0.5), _X2), (L.MaxPool2D(), _X4),
    (L.AvgPool2D(), _X4), (L.GlobalAvgPool(), _X4), (L.FanOut(2), _X2),
    (L.FanInSum(), (_X2, _X2)), (L.FanInConcat(), (_X2, _X2)), (L.Slice(np.s_[0:3]), _X2)],
    ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("given", [(), None, [], {}], ids=["()", "None", "[]", "{}"])
def test_a_layer_without_params_gives_dparams_back_as_its_params_came(layer, x, given):
    # a pytree's cotangent has the primal's structure (JAX's vjp of None is None)
    y, pullback = layer.vjp(given, x)
    dparams, _ = pullback(tree.map(np.ones_like, y))
    assert dparams == given and type(dparams) is type(given)


def test_sequential_grads_keep_the_structure_of_params_given_with_none_entries(key):
    # fused pairs too: Dense + ReLU, and ReLU before MaxPool (run as the pool first)
    model = L.Sequential(L.Conv2D(2, 3), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(2),
                         L.ReLU(), L.Dense(1))
    _, params = model.init(key, (None, 4, 4, 1))
    given = (params[0], None, {}, [], params[4], None, params[6])
    f = fd.value_and_grad(model, fd.losses.mse)
    _, grads = f(given, _X4, np.zeros((2, 1), np.float32))
    assert tree.structure(grads) == tree.structure(given)
    _, plain = f(params, _X4, np.zeros((2, 1), np.float32))
    for a, b in zip(tree.leaves(grads), tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(a, b)
    check_vjp(L.ReLU(), None, random.normal(key, (3, 4), np.float64))  # away from the kink


# ---------------------------------------------------------------------------- kept outputs

KEPT = {"Tanh": L.Tanh, "Sigmoid": L.Sigmoid, "Softplus": L.Softplus, "Softmax": L.Softmax,
        "LogSoftmax": L.LogSoftmax, "SiLU": L.SiLU, "GELU": L.GELU, "ReLU": L.ReLU,
        "ELU": L.ELU, "LeakyReLU": lambda: L.LeakyReLU(0.1),
        "Dense+Tanh": lambda: L.Sequential(L.Dense(5), L.Tanh()),    # fused: one step
        "ReLU+MaxPool": lambda: L.Sequential(L.ReLU(), L.MaxPool2D((2, 2)))}  # ReLU after


@pytest.mark.parametrize("name", KEPT)
def test_an_activations_vjp_output_is_read_only(name):
    # y -= t between vjp and the pullback changed the grads silently (Tanh's dx = dy (1-y²)
    # read the edited y); torch raises there, and JAX's arrays cannot change
    layer = KEPT[name]()
    shape = (2, 4, 4, 3) if "MaxPool" in name else (3, 4)
    _, params = layer.init(random.key(0), shape)
    x = random.normal(random.key(1), shape)
    dy = random.normal(random.key(2), layer.apply(params, x).shape)
    want = layer.vjp(params, x)[1](dy)  # from a vjp whose y nobody touched
    y, pullback = layer.vjp(params, x)
    assert not y.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        y -= 1.0
    with pytest.raises(ValueError, match="read-only"):
        y[...] = 0.0
    tree.map(np.testing.assert_array_equal, pullback(dy), want)  # the attempts changed nothing
    out = layer.apply(params, x)  # apply keeps nothing: its output is the caller's
    assert out.flags.writeable
    np.testing.assert_array_equal(out, y)


def test_infinite_inputs_give_torchs_values_without_warnings():
    # a row masked with -inf everywhere: inf - inf in the shift, NaN as torch, silently
    masked = np.full((1, 3), -np.inf, np.float32)
    for layer in (L.Softmax(), L.LogSoftmax()):
        assert np.isnan(layer.apply((), masked)).all()
    # 0 · inf in max(x, 0·x) made LeakyReLU(0) NaN at +inf; torch gives inf
    x = np.array([np.inf, 1.0, -2.0], np.float32)
    np.testing.assert_array_equal(L.LeakyReLU(0.0).apply((), x), [np.inf, 1.0, 0.0])
    check_vjp(L.LeakyReLU(0.0), (), random.normal(random.key(4), (3, 5), np.float64))


def _scale_init(key, in_shape):
    return in_shape, {"a": np.ones((), np.float32)}


def _scale_apply(params, x):  # neither key= nor train=: Layer wraps it
    return params["a"] * x


def _scale_vjp(params, x):
    return params["a"] * x, lambda dy: ({"a": np.sum(dy * x)}, params["a"] * dy)


def test_a_users_layer_of_module_functions_without_key_or_train_pickles():
    # the wrapper dropping key= and train= was a closure: pickle failed with "not the same
    # object as ..._scale_apply", so a sweep's process pool could not send the layer
    import pickle

    from funcdl.layers import Layer

    layer = Layer(_scale_init, _scale_apply, _scale_vjp, name="Scale")
    back = pickle.loads(pickle.dumps(layer))
    x = np.arange(3, dtype=np.float32)
    assert back.name == "Scale"
    np.testing.assert_array_equal(back.apply({"a": np.float32(2)}, x, key=None, train=True),
                                  2 * x)


def test_a_users_function_with_attributes_named_like_the_wrappers_fields_still_runs():
    # update_wrapper copied fn.__dict__ over the wrapper's own fields (a review)
    def apply(params, x):
        return 2 * x

    apply.fn, apply.drop = "metadata", 0.1

    def vjp(params, x):
        return 2 * x, lambda dy: ((), 2 * dy)

    layer = L.Layer(lambda key, s: (s, ()), apply, vjp)
    np.testing.assert_array_equal(layer.apply((), np.ones(2), train=True), [2.0, 2.0])
