"""optax's extras: ``masked`` and the masks of ``add_decayed_weights`` and ``adamw``, and
``scale_by_adam``'s ``eps_root``, ``nesterov`` and ``mu_dtype``: against a NumPy reference
written here (float64), and against optax and torch when they are installed."""

from __future__ import annotations

import numpy as np
import pytest
from _optim_util import run

import funcdl as fd
from funcdl import optim, tree


def _params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(dtype),
            "b": rng.standard_normal(4).astype(dtype),
            "norm": {"scale": rng.standard_normal(4).astype(dtype),
                     "k": rng.standard_normal((2, 2)).astype(dtype)}}


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return tree.map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)


def _matrices(p):
    return tree.map(lambda x: x.ndim > 1, p)


# ---------------------------------------------------------------------------- scale_by_adam

def _adam_reference(grads, b1, b2, eps, eps_root, nesterov):
    """optax's scale_by_adam, written out for one array."""
    m = v = np.zeros_like(grads[0])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = (b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t) if nesterov
                 else m / (1 - b1**t))
        out.append(m_hat / (np.sqrt(v / (1 - b2**t) + eps_root) + eps))
    return out


@pytest.mark.parametrize("kw", [{}, {"eps_root": 1e-3}, {"nesterov": True},
                                {"nesterov": True, "eps_root": 1e-2, "b1": 0.7, "b2": 0.9}])
def test_scale_by_adam_options_follow_optax_formulas(kw):
    settings = {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "nesterov": False, **kw}
    # small gradients, so that eps_root is felt
    grads = [np.random.default_rng(s).standard_normal(5) * 0.05 for s in range(8)]
    expected = _adam_reference(grads, **settings)
    opt = optim.scale_by_adam(**kw)
    state = opt.init(np.zeros(5))
    for g, want in zip(grads, expected, strict=True):
        u, state = opt.update(state, g)
        np.testing.assert_allclose(u, want, rtol=1e-12)


@pytest.mark.parametrize("dtype,big", [(np.float32, 3e37), (np.float64, 1e307)])
def test_nesterov_step_of_a_saturated_entry_is_zero_not_nan(dtype, big):
    # v saturates at inf and the step is m̂ / inf = 0, as without nesterov; computed as
    # now·(m·ahead/now + g), m·ahead/now overflowed too (ahead/now ~ 1000 at b1 = 0.999)
    # and the step was inf/inf = NaN
    for nesterov in (False, True):
        opt = optim.scale_by_adam(b1=0.999, nesterov=nesterov)
        state = opt.init(np.zeros(2, dtype))
        for _ in range(50):
            u, state = opt.update(state, np.array([big, 1.0], dtype))
        assert u.dtype == dtype and u[0] == 0.0 and np.isfinite(u[1]), (nesterov, u)


def test_nesterov_and_eps_root_change_the_step():
    g = np.array([0.01, -0.02, 0.5])
    plain = optim.scale_by_adam()
    u0, _ = plain.update(plain.init(g), g)
    for other in (optim.scale_by_adam(nesterov=True), optim.scale_by_adam(eps_root=1e-4)):
        u, _ = other.update(other.init(g), g)
        assert not np.allclose(u, u0, rtol=1e-6)


def test_scale_by_adam_against_optax(jax64):
    jax = jax64
    optax = pytest.importorskip("optax")
    params = _params()
    for kw in ({"eps_root": 1e-6}, {"nesterov": True, "b1": 0.8}):
        ours, theirs = optim.scale_by_adam(**kw), optax.scale_by_adam(**kw)
        s_ours, s_theirs = ours.init(params), theirs.init(params)
        for k in range(6):
            g = _grads(params, k)
            u, s_ours = ours.update(s_ours, g)
            v, s_theirs = theirs.update(g, s_theirs)
            for a, b in zip(tree.leaves(u), jax.tree_util.tree_leaves(v), strict=True):
                np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12)


def test_mu_dtype_stores_the_first_moment_in_it_and_keeps_the_update_dtype():
    params = _params(np.float32)
    opt = optim.scale_by_adam(mu_dtype=np.float16)
    state = opt.init(params)
    assert {x.dtype for x in tree.leaves(state.mu)} == {np.dtype(np.float16)}
    u, state = opt.update(state, _grads(params, 1))
    assert {x.dtype for x in tree.leaves(state.mu)} == {np.dtype(np.float16)}
    assert {x.dtype for x in tree.leaves(state.nu) + tree.leaves(u)} == {np.dtype(np.float32)}
    full, _ = optim.scale_by_adam().update(optim.scale_by_adam().init(params),
                                           _grads(params, 1))
    for a, b in zip(tree.leaves(u), tree.leaves(full), strict=True):  # float16's precision
        np.testing.assert_allclose(a, b, rtol=2e-3)


@pytest.mark.parametrize("nesterov", [False, True])
def test_mu_dtype_steps_with_m_in_the_steps_dtype(nesterov):
    # m is stored as float16 but read in float32 for the step: m·b1 of a 5e4 gradient,
    # scaled by NAdam's 1/(1-b1^(t+1)), overflowed float16 to an inf step
    b1, b2, eps = 0.9, 0.999, 1e-8
    g = np.array([5e4, -3e4, 1e-3], np.float32)
    opt = optim.scale_by_adam(mu_dtype=np.float16, nesterov=nesterov)
    state = opt.init(np.ones(3, np.float32))
    m, v = np.zeros(3, np.float16), np.zeros(3, np.float32)
    for t in range(1, 4):
        u, state = opt.update(state, g)
        m32 = m.astype(np.float32) * b1 + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = (b1 * m32 / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t) if nesterov
                 else m32 / (1 - b1**t))
        np.testing.assert_allclose(u, m_hat / (np.sqrt(v / (1 - b2**t)) + eps), rtol=1e-5)
        m = m32.astype(np.float16)
        assert u.dtype == np.float32 and state.mu.dtype == np.float16
        np.testing.assert_array_equal(state.mu, m)


@pytest.mark.parametrize("bad", ["x", int, np.int32, 3, 2.0])
def test_mu_dtype_must_be_a_float_dtype(bad):
    with pytest.raises(TypeError, match=r"scale_by_adam: mu_dtype must be None or a NumPy "):
        optim.scale_by_adam(mu_dtype=bad)


def test_bad_adam_options_are_named():
    with pytest.raises(ValueError, match=r"scale_by_adam.*eps_root"):
        optim.scale_by_adam(eps_root=-1.0)
    with pytest.raises(TypeError, match=r"scale_by_adam.*nesterov"):
        optim.scale_by_adam(nesterov="yes")


# ---------------------------------------------------------------------------- masked

def test_masked_applies_the_inner_transform_where_true_and_passes_the_rest():
    params = _params()
    mask = {"w": True, "b": False, "norm": {"scale": False, "k": True}}
    opt = optim.masked(optim.scale(-2.0), mask)
    g = _grads(params, 3)
    u, _ = opt.update(opt.init(params), g)
    for path, x in tree.leaves_with_path(u):
        want = dict(tree.leaves_with_path(g))[path]
        keep = dict(tree.leaves_with_path(mask))[path]
        np.testing.assert_array_equal(x, -2.0 * want if keep else want)
    assert u["b"] is g["b"]  # passed through, as optax


def test_a_mask_may_be_a_prefix_of_the_params_as_in_optax():
    params = _params()
    g = _grads(params, 5)
    prefix = {"w": True, "b": False, "norm": True}  # True for the whole 'norm' subtree
    full = {"w": True, "b": False, "norm": {"scale": True, "k": True}}
    for mask in (prefix, lambda p: prefix, True):
        opt = optim.add_decayed_weights(0.5, mask=mask)
        u, _ = opt.update(opt.init(params), g, params)
        want = full if mask is not True else tree.map(lambda _: True, params)
        for (path, got), keep in zip(tree.leaves_with_path(u), tree.leaves(want), strict=True):
            p, d = dict(tree.leaves_with_path(params))[path], dict(tree.leaves_with_path(g))[path]
            np.testing.assert_array_equal(got, d + 0.5 * p if keep else d)
    with pytest.raises(ValueError, match=r"add_decayed_weights.init: tree structure mismatch "
                                         r"at \['norm'\]: params has a dict .*the mask has a "
                                         r"list"):
        optim.add_decayed_weights(0.5, mask={"w": True, "b": False, "norm": [True]}).init(
            params)


def test_masked_inner_state_covers_the_masked_in_leaves_only():
    params = _params()
    opt = optim.masked(optim.trace(0.9), _matrices)
    state = opt.init(params)
    assert isinstance(state, optim.MaskedState)
    assert state.inner_state.trace["b"] is None and state.inner_state.trace["w"].shape == (3, 4)
    g1, g2 = _grads(params, 1), _grads(params, 2)
    _, state = opt.update(state, g1)
    u, state = opt.update(state, g2)
    np.testing.assert_allclose(u["w"], g2["w"] + 0.9 * g1["w"], rtol=1e-15)
    np.testing.assert_array_equal(u["norm"]["scale"], g2["norm"]["scale"])


def test_masked_state_round_trips_through_io(tmp_path):
    params = _params(np.float32)
    opt = optim.masked(optim.trace(0.5), _matrices)
    _, state = opt.update(opt.init(params), _grads(params, 0))
    fd.io.save(tmp_path / "s.npz", state)
    loaded = fd.io.load(tmp_path / "s.npz", like=state)
    np.testing.assert_array_equal(loaded.inner_state.trace["w"], state.inner_state.trace["w"])


def test_add_decayed_weights_with_a_mask_decays_only_there():
    params = _params()
    g = _grads(params, 4)
    opt = optim.add_decayed_weights(0.5, mask=_matrices)
    u, _ = opt.update(opt.init(params), g, params)
    np.testing.assert_allclose(u["w"], g["w"] + 0.5 * params["w"], rtol=1e-15)
    np.testing.assert_allclose(u["norm"]["k"], g["norm"]["k"] + 0.5 * params["norm"]["k"])
    np.testing.assert_array_equal(u["b"], g["b"])


@pytest.mark.parametrize("make", [
    lambda m: optim.masked(optim.add_decayed_weights(0.5), m),
    lambda m: optim.add_decayed_weights(0.5, mask=m)])
def test_a_mask_fits_a_models_own_grads_whose_dicts_are_unsorted(make):
    # Dense's params and grads are {'w', 'b'}: the flags (in sorted order) must meet the
    # same leaves when grads and params are walked together.
    model = fd.layers.Sequential(fd.layers.Dense(4), fd.layers.ReLU(), fd.layers.Dense(1))
    _, params = model.init(fd.random.key(0), (None, 3))
    x, t = np.ones((5, 3), np.float32), np.ones((5, 1), np.float32)
    _, grads = fd.value_and_grad(model, fd.losses.mse)(params, x, t)
    assert list(grads[0]) == ["w", "b"]  # the case at stake
    opt = make(_matrices)
    u, _ = opt.update(opt.init(params), grads, params)
    for i in (0, 2):
        np.testing.assert_allclose(u[i]["w"], grads[i]["w"] + 0.5 * params[i]["w"], rtol=1e-6)
        np.testing.assert_array_equal(u[i]["b"], grads[i]["b"])


def test_adamw_mask_decays_the_masked_in_leaves_as_adamw_and_the_rest_as_adam():
    params = _params()
    runs = {"masked": optim.adamw(0.1, weight_decay=0.3, mask=_matrices),
            "decayed": optim.adamw(0.1, weight_decay=0.3), "none": optim.adam(0.1)}
    grads_seq = [_grads(params, step) for step in range(5)]
    ps = {k: run(opt, params, grads_seq)[0][-1] for k, opt in runs.items()}
    mask = _matrices(params)
    for (path, got), keep in zip(tree.leaves_with_path(ps["masked"]), tree.leaves(mask),
                                 strict=True):
        want = dict(tree.leaves_with_path(ps["decayed" if keep else "none"]))[path]
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(ps["decayed"]["b"], ps["none"]["b"])  # the decay is felt


def test_adamw_mask_against_torch_param_groups():
    torch = pytest.importorskip("torch")
    params = _params()
    names = ["w", "b"]
    opt = optim.adamw(0.05, weight_decay=0.2, mask={"w": True, "b": False})
    p = {k: params[k] for k in names}
    state = opt.init(p)
    tp = {k: torch.tensor(params[k], requires_grad=True) for k in names}
    topt = torch.optim.AdamW([{"params": [tp["w"]]},
                              {"params": [tp["b"]], "weight_decay": 0.0}],
                             lr=0.05, weight_decay=0.2)
    for step in range(6):
        g = {k: v for k, v in _grads(params, step).items() if k in names}
        u, state = opt.update(state, g, p)
        p = optim.apply_updates(p, u)
        for k in names:
            tp[k].grad = torch.tensor(g[k])
        topt.step()
    for k in names:
        np.testing.assert_allclose(p[k], tp[k].detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("kind", ["function", "prefix"])
def test_adamw_mask_against_optax(kind, jax64):
    jax = jax64
    optax = pytest.importorskip("optax")
    params = _params()
    ours_mask, their_mask = {  # a bool for the whole 'norm' subtree: a prefix mask
        "function": (_matrices, lambda p: jax.tree_util.tree_map(lambda x: x.ndim > 1, p)),
        "prefix": ({"w": True, "b": False, "norm": True},) * 2}[kind]
    ours = optim.adamw(0.1, weight_decay=0.3, mask=ours_mask)
    theirs = optax.adamw(0.1, weight_decay=0.3, mask=their_mask)
    s_ours, s_theirs, p_ours, p_theirs = ours.init(params), theirs.init(params), params, params
    for step in range(6):
        g = _grads(params, step)
        u, s_ours = ours.update(s_ours, g, p_ours)
        p_ours = optim.apply_updates(p_ours, u)
        v, s_theirs = theirs.update(g, s_theirs, p_theirs)
        p_theirs = optax.apply_updates(p_theirs, v)
    for a, b in zip(tree.leaves(p_ours), jax.tree_util.tree_leaves(p_theirs), strict=True):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12)


# ---------------------------------------------------------------------------- bad masks

def test_a_mask_of_another_structure_names_the_path():
    params = _params()
    with pytest.raises(ValueError, match=r"masked.init: .*params has a dict with keys "
                                         r"\['b', 'norm', 'w'\], the mask has"):
        optim.masked(optim.scale(2.0), {"w": True, "b": False}).init(params)
    opt = optim.masked(optim.scale(2.0), _matrices(params))
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"masked.update: .*at \['norm'\]: grads has an "
                                         r"array .*, the mask has a dict"):
        opt.update(state, {**params, "norm": params["w"]})
    with pytest.raises(ValueError, match=r"masked.update: .*at \['norm'\]: grads has a "
                                         r"dict .*, params has an array"):
        opt.update(state, params, {**params, "norm": params["w"]})


def test_a_mask_leaf_must_be_a_bool():
    params = {"w": np.ones((2, 2)), "b": np.ones(2)}
    with pytest.raises(TypeError, match=r"adamw: the mask must hold a bool per leaf "
                                        r".*got int at mask\['w'\]"):
        optim.adamw(mask={"w": 1, "b": False})  # a tree is checked when made
    with pytest.raises(TypeError, match=r"adamw: the mask .*got int at mask\['w'\]"):
        optim.adamw(weight_decay=0.0, mask={"w": 1})  # even where nothing decays
    with pytest.raises(TypeError, match=r"add_decayed_weights: the mask .*got str at mask"):
        optim.add_decayed_weights(0.1, mask="yes")
    by_fn = optim.masked(optim.scale(2.0), lambda p: tree.map(lambda x: x.size, p))
    with pytest.raises(TypeError, match=r"masked.init: the mask .*got int at mask\['b'\]"):
        by_fn.init(params)  # a function's tree when called
    ok = optim.masked(optim.scale(2.0), {"w": np.bool_(True), "b": np.array(False)})
    u, _ = ok.update(ok.init(params), params)
    np.testing.assert_array_equal(u["w"], 2.0)


def test_masked_refuses_a_non_transform_and_a_swapped_call():
    with pytest.raises(TypeError, match="masked: inner must be a GradientTransformation"):
        optim.masked(optim.scale, {"w": True})
    opt = optim.masked(optim.scale(2.0), {"w": True})
    state = opt.init({"w": np.ones(2)})
    with pytest.raises(TypeError, match=r"masked\.update: the first argument"):
        opt.update({"w": np.ones(2)}, state)


def _quadratic(p):
    """The loss Σ (p - 1)² over the leaves and its gradient."""
    return (float(sum(np.sum((x - 1.0) ** 2) for x in tree.leaves(p))),
            tree.map(lambda x: 2.0 * (x - 1.0), p))


def test_masked_refuses_a_transform_that_evaluates_the_loss_and_says_what_freezes() -> None:
    """A line search inside masked would call value_and_grad_fn on params with the
    masked-out leaves removed; refused, naming the chain that freezes leaves instead."""
    p = {"w": np.zeros(3), "b": np.zeros(2)}
    frozen = {"w": False, "b": True}
    opt = optim.masked(optim.lbfgs(), {"w": True, "b": False})
    value, g = _quadratic(p)
    with pytest.raises(TypeError, match=r"masked\.update: masked\(\.\.\.\) cannot wrap a "
                                        r"transform that evaluates the loss \(value_and_grad_fn="
                                        r"\).*chain\(masked\(set_to_zero\(\), frozen_mask\)"):
        opt.update(opt.init(p), g, p, value=value, grad=g, value_and_grad_fn=_quadratic)
    # the chain it names: b stays, w reaches its minimum
    opt = optim.chain(optim.masked(optim.set_to_zero(), frozen), optim.lbfgs())
    state = opt.init(p)
    for _ in range(5):
        value, g = _quadratic(p)
        u, state = opt.update(state, g, p, value=value, grad=g, value_and_grad_fn=_quadratic)
        p = optim.apply_updates(p, u)
    np.testing.assert_array_equal(p["b"], 0.0)
    np.testing.assert_allclose(p["w"], 1.0, rtol=1e-8)


def test_masked_passes_a_tree_valued_grad_keyword_masked_as_the_grads() -> None:
    seen = {}

    def update(state, grads, params=None, *, grad=None):
        seen["grad"] = grad
        return grads, state

    inner = optim.GradientTransformation(lambda p: optim.EmptyState(), update)
    opt = optim.masked(inner, {"w": True, "b": False})
    g = {"w": np.ones(2), "b": np.ones(1)}
    opt.update(opt.init(g), g, g, grad=g)
    assert seen["grad"]["b"] is None and seen["grad"]["w"] is g["w"]
