"""StopGradient: ``y = x``, ``dx = 0`` (jax.lax.stop_gradient, torch's detach()). The gradient
of a model holding it equals finite differences of the model with the stopped value held as
data (float64), and a SimSiam step equals torch's with ``.detach()``."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_vjp


def _x(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def test_forward_is_identity_and_backward_is_zero():
    sg = L.StopGradient()
    out_shape, params = sg.init(fd.random.key(0), (None, 3))
    assert out_shape == (None, 3) and params == ()
    x = _x(4, 3, dtype=np.float32)
    y = sg.apply((), x)
    np.testing.assert_array_equal(y, x)
    assert y.dtype == np.float32
    y2, pullback = sg.vjp((), x)
    np.testing.assert_array_equal(y2, x)
    dparams, dx = pullback(np.ones_like(x))
    assert dparams == ()
    assert dx.shape == x.shape and dx.dtype == np.float32 and not dx.any()
    assert pullback(np.ones_like(x), need_dx=False) == ((), None)
    assert sg.dx_optional and not sg.stateful


def test_tree_input_gives_zeros_of_its_structure():
    x = (_x(2, 3), {"m": _x(2, 5, dtype=np.float32)})
    sg = L.StopGradient()
    assert sg.init(fd.random.key(0), ((None, 3), {"m": (None, 5)}))[0] == (
        (None, 3), {"m": (None, 5)})
    y, pullback = sg.vjp((), x)
    assert y[0] is x[0] or np.shares_memory(y[0], x[0])  # passed on, not copied
    _, dx = pullback((np.ones((2, 3)), {"m": np.ones((2, 5), np.float32)}))
    assert isinstance(dx, tuple) and set(dx[1]) == {"m"}
    assert dx[0].dtype == np.float64 and dx[1]["m"].dtype == np.float32
    assert not dx[0].any() and not dx[1]["m"].any()


def _simsiam(stop):
    enc = L.Sequential(L.Dense(5), L.Tanh(), L.Dense(4))
    pred = L.Sequential(L.Dense(3), L.Tanh(), L.Dense(4))
    return L.Sequential(enc, L.FanOut(2), L.Parallel(pred, stop)), enc, pred


def _sim_vjp(pz, target=None):
    """-mean cos(p_i, z_swapped_i), differentiated in both p and z (StopGradient must drop
    the z part)."""
    p, z = pz
    n = len(p) // 2
    zs = np.concatenate([z[n:], z[:n]])
    v, pb_p = fd.losses.cosine_similarity.vjp(p, zs)
    _, pb_z = fd.losses.cosine_similarity.vjp(zs, p)

    def pullback(g=1.0):
        dzs = pb_z(-g)
        return pb_p(-g), np.concatenate([dzs[n:], dzs[:n]])
    return -v, pullback


SIM = fd.losses.Loss("simsiam", _sim_vjp)


def _setup():
    model, enc, pred = _simsiam(L.StopGradient())
    _, params = model.init(fd.random.key(0), (None, 3))
    return model, enc, pred, fd.tree.astype(params, np.float64), _x(8, 3, seed=1)


def test_gradient_equals_finite_differences_with_the_stopped_value_as_data():
    model, enc, pred, params, x = _setup()
    _, grads = fd.value_and_grad(model, SIM)(params, x, None)
    z0 = enc.apply(params[0], x)  # sg(z), held fixed while the params move

    def f(p):
        z = enc.apply(p[0], x)
        return SIM((pred.apply(p[2][0], z), z0), None)

    vec, unravel = fd.tree.ravel(params)
    gvec, _ = fd.tree.ravel(grads)
    h = 1e-6
    fd_grad = np.array([(f(unravel(vec + h * e)) - f(unravel(vec - h * e))) / (2 * h)
                        for e in np.eye(len(vec))])
    np.testing.assert_allclose(gvec, fd_grad, rtol=1e-6, atol=1e-9)
    # and it is not the gradient without the stop: that one also moves z
    plain, _, _ = _simsiam(L.Identity())
    _, g_plain = fd.value_and_grad(plain, SIM)(params, x, None)
    assert np.abs(fd.tree.ravel(g_plain)[0] - gvec).max() > 1e-3


def test_its_vjp_is_not_the_derivative_of_apply():
    # documented: check_vjp fails it, as JAX's check_grads fails stop_gradient
    with pytest.raises(AssertionError):
        check_vjp(L.StopGradient(), (), _x(3, 2))
    check_vjp(L.Identity(), (), _x(3, 2))  # the same check passes the identity


def test_bad_inputs_name_the_layer():
    sg = L.StopGradient()
    with pytest.raises((TypeError, ValueError), match="StopGradient"):
        sg.apply({"w": np.ones(2)}, _x(2, 2))
    _, pullback = sg.vjp((), _x(2, 3))
    with pytest.raises(ValueError, match=r"StopGradient\(\).*\(2, 3\)"):
        pullback(np.ones((2, 4)))
    with pytest.raises((TypeError, ValueError), match=r"StopGradient\(\)"):
        pullback(None)
    _, pullback = sg.vjp((), (_x(2, 3), _x(2, 3)))
    with pytest.raises(ValueError, match=r"StopGradient\(\).*tuple of 2"):
        pullback((np.ones((2, 3)),))


def test_float32_stays_float32_in_a_model():
    model, _, _, params, x = _setup()
    params32 = fd.tree.astype(params, np.float32)
    _, grads = fd.value_and_grad(model, SIM)(params32, x.astype(np.float32), None)
    assert {g.dtype for g in fd.tree.leaves(grads)} == {np.dtype(np.float32)}


def test_simsiam_steps_match_torch_detach():
    torch = pytest.importorskip("torch")
    model, _, _, params, _ = _setup()
    x = _x(16, 3, seed=2)
    tenc = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    tpred = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 4))
    tenc, tpred = tenc.double(), tpred.double()
    with torch.no_grad():
        for mod, ps in ((tenc, params[0]), (tpred, params[2][0])):
            for m, q in zip([m for m in mod if isinstance(m, torch.nn.Linear)],
                            [q for q in ps if q]):
                m.weight.copy_(torch.tensor(q["w"]).T)
                m.bias.copy_(torch.tensor(q["b"]))
    topt = torch.optim.SGD([*tenc.parameters(), *tpred.parameters()], lr=0.1)
    opt = fd.optim.sgd(0.1)
    state = opt.init(params)
    vg = fd.value_and_grad(model, SIM)
    for step in range(3):
        xb = np.concatenate([x + 0.3 * _x(*x.shape, seed=10 + step),
                             x + 0.3 * _x(*x.shape, seed=20 + step)])
        value, grads = vg(params, xb, None)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
        z = tenc(torch.tensor(xb))
        zs = torch.cat([z[16:], z[:16]]).detach()
        loss = -torch.nn.functional.cosine_similarity(tpred(z), zs, dim=-1).mean()
        topt.zero_grad()
        loss.backward()
        topt.step()
        assert abs(value - loss.item()) < 1e-12
    np.testing.assert_allclose(params[0][0]["w"], tenc[0].weight.detach().numpy().T,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(params[2][0][2]["w"], tpred[2].weight.detach().numpy().T,
                               rtol=0, atol=1e-12)
