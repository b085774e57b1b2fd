"""AMSGrad: optax's ``amsgrad``/``scale_by_amsgrad`` (the maximum of the bias-corrected v̂)
and torch's ``Adam(amsgrad=True)`` as ``adam``/``adamw``'s ``amsgrad=True`` (the maximum of the
raw v, corrected by this step's bc2): against the formulas written out, and against optax and
torch in float64 when installed."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim, tree

B1, B2, EPS = 0.9, 0.999, 1e-8


def _grads(steps: int) -> list[dict[str, np.ndarray]]:
    """Gradients that shrink after a few large ones, so the running maximum decides."""
    rng = np.random.default_rng(0)
    scale = [3.0 if t < 3 else 0.2 for t in range(steps)]
    return [{"w": rng.standard_normal((3, 4)) * s, "b": np.float64(rng.standard_normal()) * s}
            for s in scale]


def _reference(grads: list[dict[str, np.ndarray]], raw_max: bool, eps_root: float = 0.0
               ) -> list[dict[str, np.ndarray]]:
    """The updates, one step at a time, from the formulas (float64)."""
    m = {k: np.zeros_like(v) for k, v in grads[0].items()}
    v, vmax = dict(m), dict(m)
    out = []
    for t, g in enumerate(grads, start=1):
        u = {}
        for k in g:
            m[k] = B1 * m[k] + (1 - B1) * g[k]
            v[k] = B2 * v[k] + (1 - B2) * g[k] ** 2
            bc1, bc2 = 1 - B1**t, 1 - B2**t
            if raw_max:
                vmax[k] = np.maximum(vmax[k], v[k])
                den = np.sqrt(vmax[k]) / np.sqrt(bc2)
            else:
                vmax[k] = np.maximum(vmax[k], v[k] / bc2)
                den = np.sqrt(vmax[k] + eps_root)
            u[k] = (m[k] / bc1) / (den + EPS)
        out.append(u)
    return out


def _run(opt: optim.GradientTransformation, grads: list[dict[str, np.ndarray]]
         ) -> list[dict[str, np.ndarray]]:
    params = tree.zeros_like(grads[0])
    state, out = opt.init(params), []
    for g in grads:
        u, state = opt.update(state, g, params)
        out.append(u)
    return out


@pytest.mark.parametrize("raw_max", [False, True], ids=["optax", "torch"])
def test_updates_follow_the_formulas(raw_max):
    grads = _grads(12)
    opt = (optim.chain(optim.adam(1.0, amsgrad=True), optim.scale(-1.0)) if raw_max
           else optim.scale_by_amsgrad())
    for got, want in zip(_run(opt, grads), _reference(grads, raw_max), strict=True):
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-13, atol=0)


def test_the_two_maxima_differ_and_neither_is_adams():
    # step 1: g = 1; step 2: g = 0.1. optax keeps v̂ of step 1 (1.0) as its maximum; torch's
    # raw v grows (0.001 -> 0.001009), so its denominator is Adam's at step 2, sqrt(v/bc2).
    grads = [{"w": np.array([1.0])}, {"w": np.array([0.1])}]
    m_hat = (0.9 * 0.1 + 0.1 * 0.1) / (1 - B1**2)
    v_hat = (B2 * 0.001 + 0.001 * 0.01) / (1 - B2**2)
    optax_u = _run(optim.scale_by_amsgrad(), grads)[1]["w"][0]
    torch_u = _run(optim.chain(optim.adam(1.0, amsgrad=True), optim.scale(-1.0)), grads)[1]
    adam_u = _run(optim.scale_by_adam(), grads)[1]["w"][0]
    assert optax_u == pytest.approx(m_hat / (1.0 + EPS), rel=1e-12)
    assert torch_u["w"][0] == pytest.approx(m_hat / (np.sqrt(v_hat) + EPS), rel=1e-12)
    assert adam_u == pytest.approx(torch_u["w"][0], rel=1e-12)
    # a later step where the raw v falls: torch's maximum holds, Adam's denominator shrinks
    grads += [{"w": np.array([0.0])}] * 5
    torch_last = _run(optim.chain(optim.adam(1.0, amsgrad=True), optim.scale(-1.0)), grads)
    adam_last = _run(optim.scale_by_adam(), grads)
    assert abs(torch_last[-1]["w"][0]) < abs(adam_last[-1]["w"][0])


def test_bias_corrections_off_and_eps_root():
    grads = _grads(6)
    got = _run(optim.scale_by_amsgrad(eps_root=1e-3), grads)
    want = _reference(grads, raw_max=False, eps_root=1e-3)
    np.testing.assert_allclose(got[-1]["w"], want[-1]["w"], rtol=1e-13)
    plain = _run(optim.scale_by_amsgrad(bias_correction_mu=False, bias_correction_nu=False),
                 [{"w": np.array([2.0])}])[0]["w"][0]
    assert plain == pytest.approx(0.2 / (np.sqrt(0.004) + EPS), rel=1e-13)


def test_alias_state_and_dtypes():
    params = {"w": np.ones((2, 3), np.float32)}
    opt = optim.amsgrad(0.1)
    state = opt.init(params)
    inner = state.states["amsgrad"]
    assert isinstance(inner, optim.ScaleByAmsgradState)
    assert inner._fields == ("count", "mu", "nu", "nu_max")
    updates, state = opt.update(state, {"w": np.full((2, 3), 0.5)}, params)  # float64 grads
    assert updates["w"].dtype == np.float32 and state.states["amsgrad"].nu_max["w"].dtype == \
        np.float32
    np.testing.assert_allclose(updates["w"], -0.1, rtol=1e-6)  # the first step: -lr·sign(g)
    half = optim.scale_by_amsgrad(mu_dtype=np.float16)
    s = half.init(params)
    _, s = half.update(s, {"w": np.full((2, 3), 0.5, np.float32)})
    assert s.mu["w"].dtype == np.float16 and s.nu["w"].dtype == np.float32
    for name, made in [("adam", optim.adam(amsgrad=True)),
                       ("adamw", optim.adamw(amsgrad=True))]:
        assert isinstance(made.init(params).states["adam"], optim.ScaleByAmsgradState), name


@pytest.mark.parametrize("call, kind, words", [
    (lambda: optim.adam(amsgrad="yes"), TypeError, "adam: amsgrad"),
    (lambda: optim.adamw(amsgrad=None), TypeError, "adamw: amsgrad"),
    (lambda: optim.amsgrad(b1=1.5), ValueError, "amsgrad"),
    (lambda: optim.scale_by_amsgrad(eps_root=-1.0), ValueError, "eps_root"),
    (lambda: optim.scale_by_amsgrad(mu_dtype=np.int32), (TypeError, ValueError), "mu_dtype"),
    (lambda: optim.scale_by_amsgrad(bias_correction_nu=2), TypeError, "bias_correction_nu"),
])
def test_bad_arguments_are_named(call, kind, words):
    with pytest.raises(kind, match=words):
        call()


def test_bad_trees_and_a_swapped_call_are_named():
    opt = optim.scale_by_amsgrad()
    params = {"w": np.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"scale_by_amsgrad.update: .*\['w'\]"):
        opt.update(state, {"w": np.ones(4)})
    with pytest.raises(TypeError, match="scale_by_amsgrad"):
        opt.update({"w": np.ones(3)}, state)
    with pytest.raises(TypeError, match=r"adam.init: params\['w'\] has dtype int64"):
        optim.adam(amsgrad=True).init({"w": np.ones(3, np.int64)})


@pytest.mark.usefixtures("jax64")
def test_against_optax_in_float64():
    optax = pytest.importorskip("optax")
    grads = _grads(15)
    for kw in [{}, {"eps_root": 1e-6}, {"bias_correction_nu": False}]:
        ours = _run(optim.amsgrad(0.01, **kw), grads)
        tx = optax.amsgrad(0.01, **kw)
        params = {"w": np.zeros((3, 4)), "b": np.float64(0.0)}
        state = tx.init(params)
        for g, mine in zip(grads, ours, strict=True):
            theirs, state = tx.update(g, state, params)
            for k in g:
                np.testing.assert_allclose(mine[k], np.asarray(theirs[k]), rtol=1e-12,
                                           atol=1e-18)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
def test_against_torch_in_float64(weight_decay, decoupled):
    torch = pytest.importorskip("torch")
    grads = _grads(20)
    w0 = np.random.default_rng(1).standard_normal((3, 4))
    tw = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    topt = cls([tw], lr=0.05, weight_decay=weight_decay, amsgrad=True)
    make = optim.adamw if decoupled else optim.adam
    opt = make(0.05, weight_decay=weight_decay, amsgrad=True)
    params = {"w": w0.copy()}
    state = opt.init(params)
    for g in grads:
        tw.grad = torch.tensor(g["w"], dtype=torch.float64)
        topt.step()
        u, state = opt.update(state, {"w": g["w"]}, params)
        params = optim.apply_updates(params, u)
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-13, atol=1e-15)
