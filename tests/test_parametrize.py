"""WeightNorm and SpectralNorm (funcdl.layers.parametrize): finite differences (check_layer,
check_vjp in float64, train and eval), the reparametrised weight against its formula, the
gradients against hand-written per-slice references and the invariances that catch a wrong
sign or factor (w is unchanged by scaling v or W, so ⟨dv, v⟩ = 0 per slice and ⟨dW, W⟩ = 0),
the initial output equal to the bare layer's, σ against np.linalg.svd, the state in train
and eval mode, composition (Sequential, value_and_grad, an optimizer), save/load, and bad
arguments named."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import random
from funcdl.layers import BatchNorm, Conv2D, ConvTranspose2D, Dense, ReLU, Sequential, Tanh
from funcdl.layers.parametrize import SpectralNorm, WeightNorm
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)


def rand(*shape, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def to64(tree):
    return fd.tree.map(lambda a: np.asarray(a, np.float64), tree)


def conv_ref(w, b, x):
    """A SAME 3x3 stride-1 convolution (NHWC, kernel (kh, kw, in, out)) by explicit offsets."""
    kh, kw = w.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, wd = x.shape[1:3]
    y = sum(xp[:, i:i + h, j:j + wd] @ w[i, j] for i in range(kh) for j in range(kw))
    return y + b


def naive_power(mat, u, v, n, eps=1e-12):
    for _ in range(n):
        u = mat @ v
        u = u / max(np.sqrt(u @ u), eps)
        v = mat.T @ u
        v = v / max(np.sqrt(v @ v), eps)
    return u, v


# ---------------------------------------------------------------------------- WeightNorm

@pytest.mark.parametrize("layer, in_shape", [
    (WeightNorm(Dense(3)), (None, 4)),
    (WeightNorm(Conv2D(2, 3)), (None, 5, 5, 3)),
    (WeightNorm(Dense(3), dim=None), (None, 4)),
    (WeightNorm(Conv2D(2, 3, use_bias=False), dim=0), (None, 4, 4, 2)),
], ids=lambda a: getattr(a, "name", str(a)))
def test_weight_norm_check_layer(layer, in_shape):
    check_layer(layer, in_shape)


def test_weight_norm_params_and_initial_output():
    """params: g (1, out) = column norms of the child's initial w, v = that w; the first
    output is the bare Dense's (same key), and b passes through unchanged."""
    x = rand(5, 4, dtype=np.float32)
    _, p_dense = Dense(3).init(KEY, (None, 4))
    _, p = WeightNorm(Dense(3)).init(KEY, (None, 4))
    assert sorted(p) == ["b", "g", "v"] and p["g"].shape == (1, 3)
    assert p["g"].dtype == p["v"].dtype == np.float32
    np.testing.assert_array_equal(p["v"], p_dense["w"])
    np.testing.assert_array_equal(p["b"], p_dense["b"])
    np.testing.assert_allclose(p["g"][0], np.linalg.norm(p_dense["w"], axis=0), rtol=1e-6)
    np.testing.assert_allclose(WeightNorm(Dense(3)).apply(p, x), Dense(3).apply(p_dense, x),
                               rtol=1e-5, atol=1e-6)
    _, pc = WeightNorm(Conv2D(2, 3)).init(KEY, (None, 4, 4, 3))
    _, pc_bare = Conv2D(2, 3).init(KEY, (None, 4, 4, 3))
    assert pc["g"].shape == (1, 1, 1, 2)
    xc = rand(2, 4, 4, 3, dtype=np.float32)
    np.testing.assert_allclose(WeightNorm(Conv2D(2, 3)).apply(pc, xc),
                               Conv2D(2, 3).apply(pc_bare, xc), rtol=1e-5, atol=1e-5)


def test_weight_norm_formula_and_gradients_dense():
    """y = x (g·v/||v||) + b, per column by a loop; dg, dv by the per-column closed form
    (dv_j = (g_j/||v_j||)(I - v̂_j v̂_jᵀ) dw_j), written here independently; ⟨dv_j, v_j⟩ = 0."""
    layer = WeightNorm(Dense(3))
    p = {"g": rand(1, 3, seed=2), "v": rand(4, 3, seed=3), "b": rand(3, seed=4)}
    x, dy = rand(6, 4, seed=5), rand(6, 3, seed=6)
    w = np.empty((4, 3))
    for j in range(3):
        w[:, j] = p["g"][0, j] * p["v"][:, j] / np.sqrt(np.sum(p["v"][:, j] ** 2))
    y, pullback = layer.vjp(p, x)
    np.testing.assert_allclose(y, x @ w + p["b"], rtol=1e-12)
    grads, dx = pullback(dy)
    dw = x.T @ dy
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-12)
    np.testing.assert_allclose(grads["b"], dy.sum(0), rtol=1e-12)
    for j in range(3):
        vj = p["v"][:, j]
        n = np.linalg.norm(vj)
        vh = vj / n
        np.testing.assert_allclose(grads["g"][0, j], vh @ dw[:, j], rtol=1e-12)
        jac = p["g"][0, j] / n * (np.eye(4) - np.outer(vh, vh))
        np.testing.assert_allclose(grads["v"][:, j], jac @ dw[:, j], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.sum(grads["v"] * p["v"], axis=0), 0, atol=1e-12)


def test_weight_norm_conv_and_dim_none():
    """Conv2D: the kernel is g·v/||v|| per output channel (norm over kh, kw, in); dim=None:
    one scalar g, the norm over all of v; ⟨dv, v⟩ = 0 over the reduced axes."""
    x = rand(2, 4, 4, 2)
    p = {"g": rand(1, 1, 1, 3, seed=2), "v": rand(3, 3, 2, 3, seed=3), "b": rand(3, seed=4)}
    w = p["g"] * p["v"] / np.sqrt((p["v"] ** 2).sum(axis=(0, 1, 2), keepdims=True))
    y, pullback = WeightNorm(Conv2D(3, 3)).vjp(p, x)
    np.testing.assert_allclose(y, conv_ref(w, p["b"], x), rtol=1e-10, atol=1e-12)
    grads, _ = pullback(rand(*y.shape, seed=9))
    np.testing.assert_allclose(np.sum(grads["v"] * p["v"], axis=(0, 1, 2)), 0, atol=1e-10)
    pn = {"g": np.asarray(1.7), "v": rand(4, 3, seed=3), "b": rand(3, seed=4)}
    xd = rand(5, 4)
    yd, pb = WeightNorm(Dense(3), dim=None).vjp(pn, xd)
    np.testing.assert_allclose(yd, xd @ (1.7 * pn["v"] / np.linalg.norm(pn["v"])) + pn["b"],
                               rtol=1e-12)
    gd, _ = pb(rand(5, 3, seed=7))
    assert gd["g"].shape == () and abs(np.sum(gd["v"] * pn["v"])) < 1e-12
    _, p0 = WeightNorm(Dense(3), dim=None).init(KEY, (None, 4))
    assert p0["g"].shape == () and p0["g"].dtype == np.float32


def test_weight_norm_vjp_float64_and_need_dx():
    layer = WeightNorm(Dense(3))
    p = to64(layer.init(KEY, (None, 4))[1])
    check_vjp(layer, p, rand(5, 4))
    assert layer.dx_optional
    g1, dx = layer.vjp(p, rand(5, 4))[1](rand(5, 3), need_dx=False)
    g2, _ = layer.vjp(p, rand(5, 4))[1](rand(5, 3))
    assert dx is None and all(np.array_equal(g1[k], g2[k]) for k in g2)


# ---------------------------------------------------------------------------- SpectralNorm

@pytest.mark.parametrize("layer, in_shape, train", [
    (SpectralNorm(Dense(3)), (None, 4), False),
    (SpectralNorm(Conv2D(2, 3)), (None, 5, 5, 3), False),
    # u, v treated as constants (as torch): the finite differences agree once they converge
    (SpectralNorm(Dense(3), n_power_iterations=60), (None, 4), True),
    (SpectralNorm(Conv2D(2, 3), n_power_iterations=60), (None, 5, 5, 3), True),
], ids=lambda a: getattr(a, "name", str(a)))
def test_spectral_norm_check_layer(layer, in_shape, train):
    check_layer(layer, in_shape, train=train)


def converged(layer, in_shape, calls=200):
    """float64 params and the state after ``calls`` training calls (u, v converged)."""
    _, p, s = layer.init(KEY, in_shape)
    p, s = to64(p), to64(s)
    x = rand(2, *in_shape[1:])
    for _ in range(calls):
        _, s = layer.apply(p, x, state=s, train=True)
    return p, s


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("layer, in_shape", [
    (SpectralNorm(Dense(3)), (None, 4)),
    (SpectralNorm(Conv2D(2, 3)), (None, 4, 4, 2)),
], ids=lambda a: getattr(a, "name", str(a)))
def test_spectral_norm_check_vjp(layer, in_shape, train):
    p, s = converged(layer, in_shape)
    check_vjp(layer, p, rand(3, *in_shape[1:], seed=4), state=s, train=train)


def test_spectral_norm_init_state_and_sigma():
    """init: u, v from the key, normalised, then 15 power iterations on the child's w (the
    bare Dense's from that key); training calls converge σ = uᵀWv to the largest singular
    value; the output is x (W/σ) + b."""
    layer = SpectralNorm(Dense(5))
    _, p, s = layer.init(KEY, (None, 7))
    _, p_dense = Dense(5).init(KEY, (None, 7))
    np.testing.assert_array_equal(p["w"], p_dense["w"])
    assert sorted(s) == ["u", "v"] and s["u"].shape == (5,) and s["v"].shape == (7,)
    assert s["u"].dtype == s["v"].dtype == np.float32
    ku, kv = random.split(random.fold_in(KEY, 1), 2)
    u0, v0 = random.normal(ku, (5,)), random.normal(kv, (7,))
    u, v = naive_power(p["w"].T, u0 / np.linalg.norm(u0), v0 / np.linalg.norm(v0), 15)
    np.testing.assert_allclose(s["u"], u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["v"], v, rtol=1e-5, atol=1e-6)
    p64, s64 = to64(p), to64(s)
    x = rand(4, 7)
    for _ in range(300):
        _, s64 = layer.apply(p64, x, state=s64, train=True)
    sigma = s64["u"] @ p64["w"].T @ s64["v"]
    top = np.linalg.svd(p64["w"], compute_uv=False)[0]
    assert abs(sigma - top) < 1e-10 * top
    y, s_same = layer.apply(p64, x, state=s64)
    assert s_same is s64  # eval: the state as given
    np.testing.assert_allclose(y, x @ (p64["w"] / sigma) + p64["b"], rtol=1e-12)
    np.testing.assert_allclose(np.linalg.svd(p64["w"] / sigma, compute_uv=False)[0], 1.0,
                               rtol=1e-10)


def test_spectral_norm_train_updates_and_eval_keeps():
    """train: n_power_iterations steps from the state, σ from the new u, v; eval: the
    state's u, v, no step."""
    layer = SpectralNorm(Dense(3), n_power_iterations=2)
    p = {"w": rand(4, 3), "b": rand(3, seed=2)}
    s = {"u": rand(3, seed=3), "v": rand(4, seed=4)}
    s = {k: a / np.linalg.norm(a) for k, a in s.items()}
    x = rand(5, 4, seed=5)
    y, new = layer.apply(p, x, state=s, train=True)
    u, v = naive_power(p["w"].T, s["u"], s["v"], 2)
    np.testing.assert_allclose(new["u"], u, rtol=1e-12)
    np.testing.assert_allclose(new["v"], v, rtol=1e-12)
    np.testing.assert_allclose(y, x @ (p["w"] / (u @ p["w"].T @ v)) + p["b"], rtol=1e-12)
    y_eval, same = layer.apply(p, x, state=s)
    assert same is s
    np.testing.assert_allclose(y_eval, x @ (p["w"] / (s["u"] @ p["w"].T @ s["v"])) + p["b"],
                               rtol=1e-12)
    y2, _, new2 = layer.vjp(p, x, state=s, train=True)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(new2["u"], new["u"])


def test_spectral_norm_new_state_is_not_what_the_pullback_reads():
    """The state a training vjp returns is the caller's: writing into it leaves the
    gradients as they were (its u, v were once the arrays the pullback reads)."""
    layer = SpectralNorm(Dense(3))
    _, p, s = layer.init(KEY, (None, 4))                # float32, as u and v
    x, dy = rand(5, 4, seed=5, dtype=np.float32), rand(5, 3, seed=6, dtype=np.float32)
    _, pullback, new = layer.vjp(p, x, state=s, train=True)
    want = pullback(dy)[0]["w"].copy()
    new["u"] *= 2
    new["v"] *= -1
    np.testing.assert_array_equal(pullback(dy)[0]["w"], want)


def test_spectral_norm_gradient_closed_form():
    """dW = dW_sn/σ - (⟨dW_sn, W⟩/σ²) u vᵀ (u, v fixed) in Dense's (in, out) layout, and
    ⟨dW, W⟩ = 0 (W/σ is unchanged by scaling W)."""
    layer = SpectralNorm(Dense(3))
    p = {"w": rand(4, 3), "b": rand(3, seed=2)}
    s = {"u": rand(3, seed=3), "v": rand(4, seed=4)}
    x, dy = rand(5, 4, seed=5), rand(5, 3, seed=6)
    _, pullback, _ = layer.vjp(p, x, state=s)
    grads, dx = pullback(dy)
    mat = p["w"].T                                  # torch's (out, in)
    sigma = s["u"] @ mat @ s["v"]
    d_sn = (x.T @ dy).T
    want = d_sn / sigma - (np.sum(d_sn * mat) / sigma ** 2) * np.outer(s["u"], s["v"])
    np.testing.assert_allclose(grads["w"], want.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.sum(grads["w"] * p["w"]), 0, atol=1e-10)
    np.testing.assert_allclose(dx, dy @ (p["w"] / sigma).T, rtol=1e-12)
    np.testing.assert_allclose(grads["b"], dy.sum(0), rtol=1e-12)


def test_spectral_norm_conv_layout():
    """Conv2D: W as (out, kh·kw·in), the output axis first; u (out,), v (kh·kw·in,)."""
    layer = SpectralNorm(Conv2D(3, 3))
    _, p, s = layer.init(KEY, (None, 4, 4, 2))
    assert s["u"].shape == (3,) and s["v"].shape == (18,)
    p, s = to64(p), to64(s)
    x = rand(2, 4, 4, 2)
    y, _ = layer.apply(p, x, state=s)
    mat = np.moveaxis(p["w"], -1, 0).reshape(3, -1)
    sigma = s["u"] @ mat @ s["v"]
    np.testing.assert_allclose(y, conv_ref(p["w"] / sigma, p["b"], x), rtol=1e-10, atol=1e-12)
    _, pb, _ = layer.vjp(p, x, state=s)
    grads, _ = pb(rand(*y.shape, seed=3))
    np.testing.assert_allclose(np.sum(grads["w"] * p["w"]), 0, atol=1e-10)


# ---------------------------------------------------------------------------- composition

def test_in_sequential_value_and_grad_and_training():
    """Both wrappers inside a stateful Sequential, through value_and_grad and adam: the
    loss falls, SpectralNorm's state moves in training, float32 kept throughout."""
    model = Sequential(WeightNorm(Dense(8)), Tanh(), SpectralNorm(Dense(8)), ReLU(),
                       WeightNorm(Dense(1)))
    assert model.stateful
    _, params, state = model.init(KEY, (None, 3))
    assert state[0] == () and sorted(state[2]) == ["u", "v"]
    x = rand(32, 3, dtype=np.float32)
    t = np.sin(x.sum(1, keepdims=True)).astype(np.float32)
    f = fd.value_and_grad(model, fd.losses.mse)
    opt = fd.optim.adam(1e-2)
    o = opt.init(params)
    (first, _), _ = f(params, x, t, state=state)
    for _ in range(60):
        (loss, new_state), grads = f(params, x, t, state=state)
        assert all(g.dtype == np.float32 for g in fd.tree.leaves(grads))
        updates, o = opt.update(o, grads, params)
        params, state = fd.optim.apply_updates(params, updates), new_state
    assert loss < 0.5 * first
    y, same = model.apply(params, x, state=state)
    assert y.dtype == np.float32 and same[2] is state[2]  # eval: SpectralNorm keeps its state
    check_vjp(model, to64(params), x.astype(np.float64), state=to64(state))


def counting_linear():
    """A user's stateful layer: ``y = x @ w``, its state counting the training calls."""
    def init(key, in_shape):
        return (*in_shape[:-1], 2), {"w": random.normal(key, (in_shape[-1], 2))}, np.zeros(())

    def vjp(params, x, *, state, key=None, train=False):
        w = params["w"]
        return x @ w, lambda dy: ({"w": x.T @ dy}, dy @ w.T), state + train

    def apply(params, x, *, state, key=None, train=False):
        y, _, s = vjp(params, x, state=state, train=train)
        return y, s

    return fd.layers.Layer(init, apply, vjp, stateful=True, name="Counting")


def test_stateful_children_in_sequential():
    """WeightNorm of a user's stateful layer takes and returns that layer's state as it is;
    both wrappers next to BatchNorm in a stateful Sequential, finite differences."""
    wn = WeightNorm(counting_linear())
    assert wn.stateful
    _, p, s = wn.init(KEY, (None, 3))
    assert sorted(p) == ["g", "v"] and s.shape == ()
    x = rand(4, 3)
    _, s1 = wn.apply(to64(p), x, state=s, train=True)
    assert s1 == 1
    check_vjp(wn, to64(p), x, state=s)
    model = Sequential(WeightNorm(Dense(4)), BatchNorm(), SpectralNorm(Dense(2)))
    _, p, s = model.init(KEY, (None, 3))
    x = rand(6, 3, dtype=np.float32)
    y, s2 = model.apply(p, x, state=s, train=True)
    assert y.shape == (6, 2) and not np.array_equal(s2[1]["mean"], s[1]["mean"])
    check_vjp(model, to64(p), x.astype(np.float64), state=to64(s2))


def test_save_load(tmp_path):
    model = Sequential(WeightNorm(Conv2D(2, 3)), ReLU(), SpectralNorm(Conv2D(2, 3)))
    _, p, s = model.init(KEY, (None, 4, 4, 1))
    fd.io.save(tmp_path / "p.npz", p)
    fd.io.save(tmp_path / "s.npz", s)
    p2 = fd.io.load(tmp_path / "p.npz", like=p)
    s2 = fd.io.load(tmp_path / "s.npz", like=s)
    x = rand(2, 4, 4, 1, dtype=np.float32)
    y1, _ = model.apply(p, x, state=s, train=True)
    y2, _ = model.apply(p2, x, state=s2, train=True)
    np.testing.assert_array_equal(y1, y2)
    _, pn = WeightNorm(Dense(2), dim=None).init(KEY, (None, 3))  # a 0-d g
    fd.io.save(tmp_path / "n.npz", pn)
    back = fd.io.load(tmp_path / "n.npz", like=pn)
    assert back["g"].shape == () and np.array_equal(back["g"], pn["g"])


# ---------------------------------------------------------------------------- bad input

def raises(kind, call, *words):
    with pytest.raises(kind) as e:
        call()
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_bad_arguments_named():
    raises(ValueError, lambda: WeightNorm(ReLU()).init(KEY, (None, 3)),
           "WeightNorm(ReLU())", "expected the layer ReLU() to have a param 'w'", "got params",
           "pass name=")
    raises(ValueError, lambda: WeightNorm(Dense(3), name="kernel").init(KEY, (None, 3)),
           "WeightNorm(Dense(3), name='kernel')", "'kernel'", "got params with keys ['b', 'w']")
    raises(ValueError, lambda: SpectralNorm(ReLU()).init(KEY, (None, 3)),
           "SpectralNorm(ReLU())", "param 'w'", "pass name=")
    raises(ValueError, lambda: WeightNorm(Dense(3), dim=2).init(KEY, (None, 3)),
           "WeightNorm(Dense(3), dim=2)", "dim=2 is not an axis", "shape (3, 3)",
           "expected an int in [-2, 2)", "-1 for Dense")
    raises(ValueError, lambda: SpectralNorm(Conv2D(2, 3), dim=-5).init(KEY, (None, 4, 4, 1)),
           "SpectralNorm(Conv2D(2, 3), dim=-5)", "expected an int in [-4, 4)")
    raises(TypeError, lambda: WeightNorm(Dense(3), dim=1.5), "WeightNorm", "dim", "1.5")
    raises(TypeError, lambda: SpectralNorm(Dense(3), dim=1.5), "SpectralNorm", "dim", "1.5")
    raises(ValueError, lambda: SpectralNorm(Dense(3), n_power_iterations=0), "SpectralNorm",
           "n_power_iterations must be >= 1", "got 0", "use 1")
    raises(TypeError, lambda: SpectralNorm(Dense(3), n_power_iterations=1.5), "SpectralNorm",
           "n_power_iterations")
    raises(ValueError, lambda: SpectralNorm(Dense(3), eps=0), "SpectralNorm", "eps")
    raises(TypeError, lambda: WeightNorm(Dense(3), name=3), "WeightNorm", "name must be a str")
    raises(TypeError, lambda: WeightNorm(Dense), "WeightNorm", "Dense()")
    raises(TypeError, lambda: SpectralNorm(BatchNorm()), "SpectralNorm(BatchNorm())",
           "expected a stateless layer", "wrap the layer with the weight alone")


def test_bad_params_and_state_named():
    wn = WeightNorm(Dense(3))
    _, p = wn.init(KEY, (None, 4))
    x = rand(2, 4, dtype=np.float32)
    raises(ValueError, lambda: wn.apply({**p, "g": p["g"][0]}, x), "WeightNorm(Dense(3))",
           "params['g'] must have shape (1, 3)", "got (3,)")
    raises(ValueError, lambda: wn.apply({k: a for k, a in p.items() if k != "v"}, x),
           "WeightNorm(Dense(3))", "lack 'v'")
    raises(ValueError, lambda: wn.apply({**p, "w": p["v"]}, x), "WeightNorm(Dense(3))",
           "params hold 'w'")
    raises(ValueError, lambda: wn.apply({**p, "v": np.zeros_like(p["v"])}, x), "norm 0")
    raises(ValueError, lambda: WeightNorm(Dense(3, w_init=fd.initializers.zeros())).init(
        KEY, (None, 4)), "WeightNorm(Dense(3))", "norm 0", "w_init")
    sn = SpectralNorm(Dense(3))
    _, ps, s = sn.init(KEY, (None, 4))
    raises(TypeError, lambda: sn.apply(ps, x), "SpectralNorm(Dense(3))", "state=")
    raises(ValueError, lambda: sn.apply(ps, x, state={**s, "u": s["v"]}),
           "SpectralNorm(Dense(3))", "state['u'] must have shape (3,)", "got (4,)",
           "pass the state init returned")
    raises(ValueError, lambda: sn.apply(ps, x, state={**s, "extra": s["u"]}),
           "unexpected keys ['extra']")
    raises(TypeError, lambda: sn.apply(ps, x, state=s, train="yes"), "SpectralNorm", "train")
    raises(ValueError, lambda: sn.apply({**ps, "w": np.zeros_like(ps["w"])}, x, state=s),
           "SpectralNorm(Dense(3))", "is 0")


def test_spectral_norm_defaults_to_the_childs_output_axis_as_torch():
    # torch's spectral_norm takes dim=1 for a ConvTranspose (its out channels); funcdl's
    # ConvTranspose2D kernel is (kh, kw, out, C): the default is its axis -2
    for layer, out in [(Dense(3), 3), (Conv2D(2, 3), 2), (ConvTranspose2D(5, 3), 5)]:
        shape = (None, 4) if layer.name.startswith("Dense") else (None, 4, 4, 2)
        _, _, state = SpectralNorm(layer).init(KEY, shape)
        assert state["u"].shape == (out,), layer.name
    assert SpectralNorm(ConvTranspose2D(5, 3)).name == "SpectralNorm(ConvTranspose2D(5, 3))"
    assert SpectralNorm(ConvTranspose2D(5, 3), dim=-1).name.endswith("dim=-1)")


def test_spectral_norm_of_an_embedding_takes_torchs_axis():
    # the table is torch's weight as it is: u, v came out (3,), (5,) where torch's are (5,), (3,)
    layer = fd.layers.SpectralNorm(fd.layers.Embedding(5, 3), name="table")
    _, _, state = layer.init(random.key(0), (None,))
    assert np.shape(state["u"]) == (5,) and np.shape(state["v"]) == (3,)
