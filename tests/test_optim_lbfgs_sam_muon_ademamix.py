"""The second review of the new optimizers: L-BFGS's memory rows shared between states, the
line searches' checks without raveling, the backtracking search's one call per trial with
store_grad and its optax signature, sam's sync_period >= 2, muon's norm and walks,
AdEMAMix's shared Adam moments and the bias-corrected root (_adaptive.corrected_root)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

import funcdl.optim._adaptive as adaptive
import funcdl.optim._muon as muon_module
from funcdl import optim, tree
from funcdl.optim._ademamix import scale_by_ademamix, scale_by_simplified_ademamix
from funcdl.optim._muon import muon, newton_schulz
from funcdl.optim._sam import sam

RNG = np.random.default_rng(7)
D = RNG.uniform(0.5, 3.0, size=6)


def quad(p: Any) -> tuple[float, Any]:
    """A separable quadratic over a two-leaf tree: ``sum d·w²/2 + sum b⁴``."""
    return (float(0.5 * np.sum(D * p["w"] ** 2) + np.sum(p["b"] ** 4)),
            {"b": 4.0 * p["b"] ** 3, "w": D * p["w"]})


def start(dtype: Any = np.float64) -> Any:
    return {"b": np.array([0.3, -0.2], dtype), "w": RNG.normal(size=6).astype(dtype)}


# ---------------------------------------------------------------------------- L-BFGS rows

def test_lbfgs_update_shares_the_untouched_memory_rows() -> None:
    m, opt, p = 4, optim.scale_by_lbfgs(4), start()
    state = opt.init(p)
    for k in range(7):
        old = state
        before = [r.copy() for r in old.diff_params_memory]
        u, state = opt.update(state, quad(p)[1], p)
        slot = (k - 1) % m
        assert isinstance(state.diff_params_memory, tuple)
        assert len(state.diff_params_memory) == len(state.diff_updates_memory) == m
        for j in range(m):
            if j != slot:
                assert state.diff_params_memory[j] is old.diff_params_memory[j]
                assert state.diff_updates_memory[j] is old.diff_updates_memory[j]
        # the row written is s = w_k - w_{k-1} (zeros at k = 0); the old state is unchanged
        np.testing.assert_array_equal(state.diff_params_memory[slot],
                                      tree.ravel(p)[0] - old.params if k else 0.0)
        for r, b in zip(old.diff_params_memory, before, strict=True):
            np.testing.assert_array_equal(r, b)
        p = optim.apply_updates(p, tree.map(lambda x: -0.1 * x, u))


def test_lbfgs_init_shares_one_zero_row_and_rejects_other_layouts() -> None:
    opt, p = optim.scale_by_lbfgs(3), start(np.float32)
    s = opt.init(p)
    rows = s.diff_params_memory + s.diff_updates_memory
    assert all(r is rows[0] for r in rows) and rows[0].dtype == np.float32
    assert rows[0].shape == (8,) and not rows[0].any()
    g = quad(p)[1]
    stacked = s._replace(diff_params_memory=np.stack(s.diff_params_memory))
    with pytest.raises(ValueError, match=r"^scale_by_lbfgs\.update: the state's "
                                         r"diff_params_memory has a ndarray of shape \(3, 8\), "
                                         r"expected a tuple of memory_size=3 rows \(8,\) in "
                                         r"float32, i\.e\. shape \(3, 8\); pass the state made"):
        opt.update(stacked, g, p)
    short = s._replace(diff_updates_memory=s.diff_updates_memory[:2])
    with pytest.raises(ValueError, match=r"diff_updates_memory has shape \(2, 8\) and dtype "
                                         r"float32, expected a tuple of memory_size=3"):
        opt.update(short, g, p)
    mixed = s._replace(diff_params_memory=(rows[0], rows[0].astype(np.float64), rows[0]))
    with pytest.raises(ValueError, match=r"diff_params_memory has 3 rows of shapes \[\(8,\)\] "
                                         r"and dtypes \['float32', 'float64'\]"):
        opt.update(mixed, g, p)


def test_lbfgs_memory_size_past_memory_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^scale_by_lbfgs\.init: memory_size=\d+ pairs of 2 "
                                         r"params do not fit in memory"):
        optim.scale_by_lbfgs(2**62).init(np.zeros(2))


# ---------------------------------------------------------------------------- line searches

def _count_ravels(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = tree.ravel

    def counting(t: Any) -> Any:
        calls[0] += 1
        return real(t)

    monkeypatch.setattr(tree, "ravel", counting)
    return calls


@pytest.mark.parametrize("search", ["zoom", "backtracking", "backtracking-store"])
def test_line_searches_check_without_raveling(monkeypatch: pytest.MonkeyPatch,
                                              search: str) -> None:
    """scale_by_lbfgs ravels the params and the grads once each per update (and the params
    once at init); the searches' checks (the updates, grad=, every trial's grads) ravel
    nothing."""
    linesearch = {"zoom": optim.scale_by_zoom_linesearch(20, initial_guess_strategy="one"),
                  "backtracking": optim.scale_by_backtracking_linesearch(20),
                  "backtracking-store": optim.scale_by_backtracking_linesearch(
                      20, store_grad=True)}[search]
    opt, p = optim.lbfgs(linesearch=linesearch), start()
    calls = _count_ravels(monkeypatch)
    state = opt.init(p)
    assert calls[0] == 1
    for _ in range(3):
        calls[0] = 0
        v, g = quad(p)
        u, state = opt.update(state, g, p, value=v, grad=g, value_fn=lambda q: quad(q)[0],
                              value_and_grad_fn=quad)
        assert calls[0] == 2
        assert int(state.states["linesearch"].info.num_linesearch_steps) >= 1
        p = optim.apply_updates(p, u)


def test_line_search_checks_still_name_the_search() -> None:
    opt, p = optim.chain(optim.scale(-1.0), optim.scale_by_zoom_linesearch(5)), start()
    s, (v, g) = opt.init(p), quad(p)
    with pytest.raises(ValueError, match=r"^scale_by_zoom_linesearch\.update: .*"
                                         r"value_and_grad_fn's grads"):
        opt.update(s, g, p, value=v, grad=g,
                   value_and_grad_fn=lambda q: (quad(q)[0], {"b": q["b"], "w": q["w"][:3]}))
    with pytest.raises(TypeError, match=r"^scale_by_zoom_linesearch\.update: "
                                        r"value_and_grad_fn's grads\['w'\] has dtype int64"):
        opt.update(s, g, p, value=v, grad=g,
                   value_and_grad_fn=lambda q: (quad(q)[0], {"b": q["b"],
                                                             "w": np.zeros(6, np.int64)}))
    with pytest.raises(ValueError, match=r"^scale_by_zoom_linesearch\.update: needs the "
                                         r"params; call update\(state, grads, params\), got "
                                         r"params=None"):
        optim.scale_by_zoom_linesearch(5).update(s.states[1], g, None, value=v, grad=g,
                                                 value_and_grad_fn=quad)


@pytest.mark.parametrize("with_value_fn", [False, True])
def test_backtracking_store_grad_calls_value_and_grad_once_per_trial(
        with_value_fn: bool) -> None:
    calls = {"vg": 0, "v": 0}

    def vg(q: Any) -> tuple[float, Any]:
        calls["vg"] += 1
        return quad(q)

    def v_only(q: Any) -> float:
        calls["v"] += 1
        return quad(q)[0]

    # sgd(3.0) overshoots: several trials before Armijo holds
    opt = optim.chain(optim.sgd(3.0), optim.scale_by_backtracking_linesearch(
        30, store_grad=True))
    p, most = start(), 0
    s = opt.init(p)
    for _ in range(3):
        v, g = quad(p)
        calls.update(vg=0, v=0)
        extra = {"value_fn": v_only} if with_value_fn else {}
        u, s = opt.update(s, g, p, value=v, grad=g, value_and_grad_fn=vg, **extra)
        search = s.states[1]
        steps = int(search.info.num_linesearch_steps)
        most = max(most, steps)
        assert calls == {"vg": steps, "v": 0}
        p = optim.apply_updates(p, u)
        want_v, want_g = quad(p)
        assert search.value == want_v  # the accepted trial's value and grad, kept
        np.testing.assert_array_equal(search.grad["w"], want_g["w"])
    assert most > 1  # some update backtracked: rejected trials were not called twice


def test_backtracking_search_has_optax_argument_order() -> None:
    names = list(inspect.signature(optim.scale_by_backtracking_linesearch).parameters)
    assert names == ["max_backtracking_steps", "slope_rtol", "decrease_factor",
                     "increase_factor", "max_learning_rate", "atol", "rtol", "store_grad",
                     "verbose"]
    positional = optim.scale_by_backtracking_linesearch(5, 1e-4, 0.8, 1.5, 1.0, 0.0, 0.0,
                                                        True, False)
    assert positional.init(start()).grad is not None  # store_grad=True, eighth
    with pytest.raises(TypeError, match=r"^scale_by_backtracking_linesearch: verbose must "
                                        r"be True or False, got 'yes' \(str\)"):
        optim.scale_by_backtracking_linesearch(5, verbose="yes")
    with pytest.raises(TypeError, match=r"^scale_by_backtracking_linesearch: store_grad must "
                                        r"be True or False, got 1 \(int\)"):
        optim.scale_by_backtracking_linesearch(5, store_grad=1)


def test_backtracking_verbose_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    opt = optim.chain(optim.sgd(3.0), optim.scale_by_backtracking_linesearch(
        10, verbose=True))
    p = start()
    v, g = quad(p)
    opt.update(opt.init(p), g, p, value=v, grad=g, value_fn=lambda q: quad(q)[0])
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------- sam

@pytest.mark.parametrize("period", [1, 1.0, np.int64(1)])
def test_sam_refuses_sync_period_1(period: Any) -> None:
    with pytest.raises(ValueError, match=r"^sam: sync_period must be >= 2 .*got 1; "
                                         r"sync_period=1 would be plain optimizer; pass >= 2"):
        sam(optim.sgd(0.1), optim.sgd(0.05), period)


def test_sam_period_2_alternates_ascent_and_outer_step() -> None:
    """grads = p: p=1 -> ascent to 1 + 0.05 -> back to 1, outer step of the grad there:
    1 - 0.1·1.05 = 0.895 (a wrong sign or a skipped revert would show)."""
    opt, p = sam(optim.sgd(0.1), optim.sgd(0.05), 2), {"w": np.array([1.0])}
    s = opt.init(p)
    seen = []
    for _ in range(4):
        u, s = opt.update(s, {"w": p["w"].copy()}, p)
        p = optim.apply_updates(p, u)
        seen.append(float(p["w"][0]))
    np.testing.assert_allclose(seen, [1.05, 0.895, 0.895 * 1.05, 0.895 - 0.1 * 0.895 * 1.05],
                               rtol=1e-15)


# ---------------------------------------------------------------------------- muon

def test_newton_schulz_normalises_by_the_shared_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = muon_module.leaf_norm

    def counting(x: Any) -> float:
        calls.append(x.shape)
        return real(x)

    monkeypatch.setattr(muon_module, "leaf_norm", counting)
    x = RNG.normal(size=(8, 5))
    out = newton_schulz(x, ns_steps=0)  # no iteration: the normalised (wide) input
    np.testing.assert_allclose(out, x / (np.linalg.norm(x) + 1e-8), rtol=1e-14)
    assert calls == [(5, 8)]


def test_newton_schulz_float32_beyond_1e19_is_scale_free() -> None:
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    big = newton_schulz(x * np.float32(1e20))
    assert big.dtype == np.float32 and np.isfinite(big).all()
    np.testing.assert_allclose(big, newton_schulz(x), rtol=1e-4, atol=1e-5)


def test_muon_walks_the_grads_once_and_shape_stage_is_empty_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    p = {"b": RNG.normal(size=3), "k": RNG.normal(size=(4, 6)), "z": RNG.normal(size=(6, 2))}
    g = tree.map(lambda x: 0.1 * x, p)
    opt = muon(0.02)
    state = opt.init(p)
    assert type(state.muon.states[1]) is optim.EmptyState
    seen: list[str] = []
    for fn in ("leaves", "flatten", "map", "map_multi", "leaves_with_path"):
        real = getattr(tree, fn)

        def spy(t: Any, *a: Any, _real: Any = real, _fn: str = fn, **k: Any) -> Any:
            if t is g or (a and a[0] is g):
                seen.append(_fn)
            return _real(t, *a, **k)

        monkeypatch.setattr(tree, fn, spy)
    u, _ = opt.update(state, g, p)
    monkeypatch.undo()
    assert seen.count("flatten") == 1 and "map" not in seen and "map_multi" not in seen
    assert u["k"].shape == (4, 6) and u["z"].shape == (6, 2)
    with pytest.raises(ValueError, match=r"^muon\.update: .*\['z'\]"):
        opt.update(state, g, {**p, "z": np.zeros((2, 6))})


def test_muon_shape_stage_checks_its_state() -> None:
    opt, p = muon(0.02), {"k": RNG.normal(size=(4, 6))}
    s = opt.init(p)
    bad = s._replace(muon=s.muon._replace(states=(s.muon.states[0], (),
                                                   *s.muon.states[2:])))
    with pytest.raises(TypeError, match=r"muon_shape_scale\.update"):
        opt.update(bad, p, p)


# ---------------------------------------------------------------------------- AdEMAMix, roots

def test_ademamix_moments_are_adams_bit_for_bit() -> None:
    p = {"a": RNG.normal(size=(3, 4)).astype(np.float32), "b": np.float32(0.5)}
    ours, adam = scale_by_ademamix(0.8, 0.95), optim.scale_by_adam(0.8, 0.95)
    s, t = ours.init(p), adam.init(p)
    for i in range(4):
        g = tree.map(lambda x, i=i: np.asarray(np.cos(x + i) * 3.0, np.float32), p)
        m1, nu = adaptive.adam_moments(g["a"], s.m1["a"], s.nu["a"], 0.8, 0.95)
        _, s = ours.update(s, g, p)
        _, t = adam.update(t, g, p)
        np.testing.assert_array_equal(s.m1["a"], m1)
        np.testing.assert_array_equal(s.nu["a"], nu)
        for k in p:
            np.testing.assert_array_equal(s.m1[k], t.mu[k])
            np.testing.assert_array_equal(s.nu[k], t.nu[k])
        assert int(s.count_m2) == int(s.count) == i + 1


def test_corrected_root_is_sqrt_times_factor_and_keeps_float32_in_range() -> None:
    v = RNG.uniform(0.0, 4.0, size=5).astype(np.float32)
    out = adaptive.corrected_root(v, 3.5)
    assert out.dtype == np.float32 and out is not v
    np.testing.assert_array_equal(out, np.sqrt(v) * np.float32(3.5))
    np.testing.assert_array_equal(adaptive.corrected_root(v, 1.0), np.sqrt(v))
    huge = np.full(3, 3e38, np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(np.sqrt(huge / np.float32(0.001))).all()  # the form it replaces
    np.testing.assert_allclose(adaptive.corrected_root(huge, 1.0 / np.sqrt(0.001)),
                               np.sqrt(3e38 / 0.001), rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: optim.scale_by_rms(eps_in_sqrt=False, bias_correction=True),
    lambda: scale_by_ademamix(), lambda: scale_by_simplified_ademamix()])
def test_first_step_of_a_float32_gradient_near_1e19_is_finite(make: Any) -> None:
    g = {"w": np.array([3e19, -1.0], np.float32)}
    opt = make()
    u, _ = opt.update(opt.init(g), g, g)
    assert u["w"].dtype == np.float32 and np.isfinite(u["w"]).all() and u["w"][0] > 0.5


def test_sam_opaque_checks_grad_fns_grads_shapes_and_dtypes_in_its_own_name():
    """grad_fn's grads of a wrong shape or an int dtype raise naming sam's update, not an
    inner transform's shape mismatch."""
    import funcdl as fd

    params = {"w": np.ones(3, np.float32)}
    opt = fd.optim.sam(fd.optim.sgd(0.1), fd.optim.sgd(0.05), opaque_mode=True)
    state = opt.init(params)
    grads = {"w": np.ones(3, np.float32)}
    for bad, words in (({"w": np.ones(4, np.float32)}, r"shape"),
                       ({"w": np.ones(3, np.int64)}, r"grad_fn's grads\['w'\] has dtype int64")):
        with pytest.raises((ValueError, TypeError), match=r"^sam\.update: .*" + words):
            opt.update(state, grads, params, grad_fn=lambda p, i, b=bad: b)
