"""funcdl.optim's Adadelta, Rprop (torch's formulas), AdaBelief and Yogi (optax's): hand-written
float64 references over a few steps, float32 kept, io round trips of every state, bad inputs.
Against optax and torch: test_optim_more2_peers.py."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _optim_util import close, directions, problem, resume

import funcdl as fd
from funcdl import optim, tree
from funcdl.optim import (
    ScaleByAdaDeltaState,
    ScaleByBeliefState,
    ScaleByRpropState,
    adabelief,
    adadelta,
    rprop,
    scale_by_adadelta,
    scale_by_belief,
    scale_by_rprop,
    scale_by_yogi,
    yogi,
)
from funcdl.optim._adaptive import ScaleByAdamState

GT = optim.GradientTransformation
G = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]




# ---------------------------------------------------------------------------- hand formulas

def _adadelta_ref(gs: list[float], rho: float, eps: float) -> list[float]:
    a = d = 0.0
    out = []
    for g in gs:
        a = rho * a + (1 - rho) * g * g
        u = math.sqrt(d + eps) / math.sqrt(a + eps) * g
        d = rho * d + (1 - rho) * u * u
        out.append(u)
    return out


def test_adadelta_scales_by_the_rms_of_past_steps_over_the_rms_of_gradients() -> None:
    # a large eps and a small rho, so that both running means and eps weigh in every step
    close(directions(scale_by_adadelta(0.6, 1e-2), G), _adadelta_ref(G, 0.6, 1e-2), 1e-14)


def _rprop_ref(gs: list[float], lr: float, minus: float, plus: float, lo: float,
               hi: float) -> list[float]:
    """torch.optim.Rprop's algorithm on one entry, its direction +s·sign(g)."""
    s, prev, out = lr, 0.0, []
    for g in gs:
        prod = g * prev
        s = min(max(s * (plus if prod > 0 else minus if prod < 0 else 1.0), lo), hi)
        if prod < 0:
            g = 0.0  # torch zeroes the gradient after a sign change
        out.append(s * float(np.sign(g)))
        prev = g
    return out


RPROP_G = [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 0.5, 0.5, 0.0, -3.0, -3.0]


def test_rprop_grows_the_step_while_the_sign_holds_and_skips_a_flip() -> None:
    # grows 0.1 -> 0.15 -> 0.225 -> capped at 0.3; flips at -1 (skipped, step halved), then
    # -2 takes it (no sign to compare after a skip); a 0 gradient keeps the step; the floor
    want = _rprop_ref(RPROP_G, 0.1, 0.5, 1.5, 0.04, 0.3)
    assert want[:6] == pytest.approx([0.1, 0.15, 0.225, 0.3, 0.0, -0.15])
    close(directions(scale_by_rprop(0.1, 0.5, 1.5, 0.04, 0.3), RPROP_G), want, 1e-15)
    assert directions(scale_by_rprop(0.1, 0.5, 1.5, 0.04, 0.3), [1.0, -1.0, 1.0, -1.0]) == \
        pytest.approx([0.1, 0.0, 0.05, 0.0])


def test_rprop_clips_an_initial_step_outside_the_bounds_as_torch() -> None:
    close(directions(scale_by_rprop(2.0, 0.5, 1.5, 0.04, 0.3), [1.0, 1.0]), [0.3, 0.3], 0.0)


def _belief_ref(gs: list[float], b1: float, b2: float, eps: float, eps_root: float,
                nesterov: bool = False) -> list[float]:
    m = s = 0.0
    out = []
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        m_hat = (b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t) if nesterov
                 else m / (1 - b1**t))
        out.append(m_hat / (math.sqrt(s / (1 - b2**t)) + eps))
    return out


@pytest.mark.parametrize("nesterov", [False, True])
def test_adabelief_divides_by_the_rms_of_the_prediction_error(nesterov: bool) -> None:
    # eps_root = 1e-2 is kept in s at every step (optax's): visible at 1e-14
    want = _belief_ref(G, 0.7, 0.8, 1e-3, 1e-2, nesterov)
    close(directions(scale_by_belief(0.7, 0.8, 1e-3, 1e-2, nesterov=nesterov), G), want, 1e-14)


def _yogi_ref(gs: list[float], b1: float, b2: float, eps: float, start: float,
              eps_root: float = 0.0) -> list[float]:
    m = v = start
    out = []
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * float(np.sign(v - g * g)) * g * g
        out.append(m / (1 - b1**t) / (math.sqrt(v / (1 - b2**t) + eps_root) + eps))
    return out


def test_yogi_moves_v_additively_towards_g_squared_from_the_initial_value() -> None:
    # v starts at 0.5: g² = 0.25 < v (v falls), then 1 > v (v rises); m starts at 0.5 too
    want = _yogi_ref(G, 0.7, 0.8, 1e-2, 0.5, 1e-3)
    close(directions(scale_by_yogi(0.7, 0.8, 1e-2, 1e-3, 0.5), G), want, 1e-14)
    close(directions(scale_by_yogi(0.7, 0.8, 1e-2), G), _yogi_ref(G, 0.7, 0.8, 1e-2, 1e-6),
          1e-14)


# ---------------------------------------------------------------------------- aliases

def test_adadelta_alias_adds_l2_decay_and_steps_by_minus_lr() -> None:
    gs, p, want = G[:4], 1.0, []
    a = d = 0.0
    for g in gs:  # torch.optim.Adadelta(lr=0.5, rho=0.6, eps=1e-2, weight_decay=0.1)
        g = g + 0.1 * p
        a = 0.6 * a + 0.4 * g * g
        u = math.sqrt(d + 1e-2) / math.sqrt(a + 1e-2) * g
        d = 0.6 * d + 0.4 * u * u
        p -= 0.5 * u
        want.append(p)
    opt = adadelta(0.5, 0.6, 1e-2, 0.1)
    params, state, got = {"p": np.array([1.0])}, None, []
    state = opt.init(params)
    for g in gs:
        u, state = opt.update(state, {"p": np.array([g])}, params)
        params = optim.apply_updates(params, u)
        got.append(float(params["p"][0]))
    close(got, want, 1e-14)
    assert list(state.states) == ["weight_decay", "adadelta", "lr"]


def test_rprop_alias_moves_against_the_gradient() -> None:
    want = [-u for u in _rprop_ref(RPROP_G, 0.1, 0.5, 1.5, 0.04, 0.3)]
    close(directions(rprop(0.1, (0.5, 1.5), (0.04, 0.3)), RPROP_G), want, 1e-15)


@pytest.mark.parametrize(("make", "ref"), [
    (lambda: adabelief(0.1, 0.7, 0.8, 1e-3, 1e-2), lambda: _belief_ref(G, 0.7, 0.8, 1e-3, 1e-2)),
    (lambda: adabelief(0.1, 0.7, 0.8, 1e-3, 1e-2, nesterov=True),
     lambda: _belief_ref(G, 0.7, 0.8, 1e-3, 1e-2, True)),
    (lambda: yogi(0.1, 0.7, 0.8, 1e-2), lambda: _yogi_ref(G, 0.7, 0.8, 1e-2, 1e-6))])
def test_adabelief_and_yogi_aliases_step_by_minus_lr(make: Callable[[], GT],
                                                     ref: Callable[[], list[float]]) -> None:
    close(directions(make(), G), [-0.1 * u for u in ref()], 1e-14)


# ---------------------------------------------------------------------------- catalogue

MAKERS: list[tuple[str, Callable[[], GT], type]] = [  # (errors' name, make, stage state)
    ("scale_by_adadelta", scale_by_adadelta, ScaleByAdaDeltaState),
    ("scale_by_rprop", lambda: scale_by_rprop(0.01), ScaleByRpropState),
    ("scale_by_belief", lambda: scale_by_belief(nesterov=True), ScaleByBeliefState),
    ("scale_by_yogi", scale_by_yogi, ScaleByAdamState),
    ("adadelta", lambda: adadelta(weight_decay=0.1), ScaleByAdaDeltaState),
    ("rprop", rprop, ScaleByRpropState),
    ("adabelief", lambda: adabelief(1e-2), ScaleByBeliefState),
    ("yogi", lambda: yogi(1e-2), ScaleByAdamState),
]
_IDS = [m[0] for m in MAKERS]
FIRST = {"adadelta": "add_decayed_weights", "rprop": "scale_by_rprop",
         "adabelief": "scale_by_belief", "yogi": "scale_by_yogi"}


def _stage(state: Any) -> Any:
    """The state of an alias's direction stage (the only one with fields), or ``state``."""
    if not isinstance(state, optim.NamedChainState):
        return state
    (inner,) = [s for s in state.states.values() if s._fields]
    return inner


@pytest.mark.parametrize(("name", "make", "kind"), MAKERS, ids=_IDS)
def test_state_types_float32_kept_and_nothing_mutated(name: str, make: Callable[[], GT],
                                                      kind: type) -> None:
    params, grads_seq = problem(np.float32)
    opt = make()
    state = opt.init(params)
    assert type(_stage(state)) is kind
    for grads in grads_seq:
        before = [x.copy() for x in tree.leaves((params, grads, state))]
        u64, _ = opt.update(state, tree.map(lambda g: g.astype(np.float64), grads), params)
        updates, state_next = opt.update(state, grads, params)
        for x, y in zip(tree.leaves((params, grads, state)), before, strict=True):
            np.testing.assert_array_equal(x, y)
        assert all(u.dtype == np.float32 for u in tree.leaves(updates)), name
        assert all(np.asarray(u).dtype == np.float32 for u in tree.leaves(u64)), name
        kinds = {np.asarray(x).dtype for x in tree.leaves(state_next)}
        assert kinds <= {np.dtype(np.float32), np.dtype(np.int64)}, (name, kinds)
        state, params = state_next, optim.apply_updates(params, updates)


@pytest.mark.parametrize(("name", "make", "kind"), MAKERS, ids=_IDS)
def test_state_saved_and_loaded_mid_run_continues_the_same(
        name: str, make: Callable[[], GT], kind: type, tmp_path: Any) -> None:
    params, grads_seq = problem(np.float32, steps=5)
    want, _ = resume(make(), params, grads_seq)
    mid, state = resume(make(), params, grads_seq[:3])
    fd.io.save(tmp_path / "state.npz", state)
    loaded = fd.io.load(tmp_path / "state.npz", like=make().init(params))
    assert type(_stage(loaded)) is kind
    got, _ = resume(make(), mid, grads_seq[3:], state=loaded)
    for x, y in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("name", "make", "kind"), MAKERS, ids=_IDS)
def test_runs_are_deterministic_and_0d_params_keep_their_shape(
        name: str, make: Callable[[], GT], kind: type) -> None:
    params, grads_seq = problem(np.float64)
    a, sa = resume(make(), params, grads_seq)
    b, sb = resume(make(), params, grads_seq)
    for x, y in zip(tree.leaves((a, sa)), tree.leaves((b, sb)), strict=True):
        np.testing.assert_array_equal(x, y)
    assert np.shape(a["s"]) == ()
    assert tree.map(np.shape, sa) == tree.map(np.shape, make().init(params))


@pytest.mark.parametrize(("name", "make", "kind"), MAKERS, ids=_IDS)
def test_inf_and_nan_gradients_give_non_finite_steps_without_warnings(
        name: str, make: Callable[[], GT], kind: type) -> None:
    params, grads_seq = problem(np.float32)
    opt = make()
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for bad in (np.inf, -np.inf, np.nan, 3e38, 0.0):
            grads = {**grads_seq[0], "w": grads_seq[0]["w"].copy()}
            grads["w"][0, 0] = bad
            updates, state = opt.update(state, grads, params)
            assert updates["w"].dtype == np.float32


@pytest.mark.parametrize(("name", "make", "kind"), MAKERS, ids=_IDS)
def test_wrong_states_and_grads_are_refused_naming_the_optimizer(
        name: str, make: Callable[[], GT], kind: type) -> None:
    params, grads_seq = problem(np.float64)
    opt = make()
    state = opt.init(params)
    with pytest.raises(TypeError, match=rf"^{name}\.update: the first argument must be the "
                                        r"optimizer state .*got dict"):
        opt.update(grads_seq[0], state, params)
    with pytest.raises(TypeError, match=rf"^{name}\.update: got the state of another "
                                        r"optimizer or transform \(TraceState\)"):
        opt.update(optim.trace(0.9).init(params), grads_seq[0], params)
    first = FIRST.get(name, name)
    # the optimizer built, then the stage that found it (a chain's), then the transform
    placed = rf"{name}\.update, stage '\w+': " if first != name else ""
    with pytest.raises(ValueError, match=rf"^{placed}{first}\.update: shape mismatch at \['w'\]"):
        opt.update(state, {**grads_seq[0], "w": np.ones((2, 3))}, params)
    with pytest.raises(TypeError, match=r"\.update: grads\['b'\] has dtype complex128"):
        opt.update(state, {**grads_seq[0], "b": grads_seq[0]["b"] + 0j}, params)
    with pytest.raises(TypeError, match=rf"^{name}\.init: params\['b'\] has dtype int64"):
        opt.init({**params, "b": np.array([1, 2])})


@pytest.mark.parametrize(("call", "match"), [
    (lambda: adadelta(lr=-0.1), r"^adadelta: lr .*>= 0, got -0\.1"),
    (lambda: adadelta(rho=1.5), r"^adadelta: rho must be a finite number in \[0, 1\], got 1\.5"),
    (lambda: adadelta(eps=-1e-6), r"^adadelta: eps must be a finite number >= 0"),
    (lambda: scale_by_adadelta(rho=-0.1), r"^scale_by_adadelta: rho .*\[0, 1\]"),
    (lambda: rprop(lr=-1.0), r"^rprop: lr \(the initial step size\) must be .* >= 0"),
    (lambda: rprop(etas=(1.2, 0.5)), r"^rprop: eta_minus .* in \[0, 1\), got 1\.2"),
    (lambda: rprop(etas=(0.5, 0.9)), r"^rprop: the factors must satisfy 0 < eta_minus < 1 < "
                                     r"eta_plus .*got eta_minus=0\.5, eta_plus=0\.9; torch's"),
    (lambda: rprop(etas=(0.0, 1.2)), r"^rprop: the factors must satisfy"),
    (lambda: rprop(step_sizes=(1.0, 0.1)), r"^rprop: min_step_size must be <= max_step_size, "
                                           r"got 1\.0 > 0\.1"),
    (lambda: scale_by_rprop(0.1, eta_plus=1.0), r"^scale_by_rprop: the factors must satisfy"),
    (lambda: adabelief(1e-3, b1=1.0), r"^adabelief: b1 must be a finite number in \[0, 1\)"),
    (lambda: adabelief(1e-3, eps_root=-1.0), r"^adabelief: eps_root"),
    (lambda: yogi(-1e-3), r"^yogi: lr .*>= 0"),
    (lambda: yogi(1e-3, eps=-1.0), r"^yogi: eps must be"),
    (lambda: scale_by_yogi(initial_accumulator_value=-1.0),
     r"^scale_by_yogi: initial_accumulator_value must be"),
])
def test_bad_settings_are_refused_naming_the_optimizer(call: Callable[[], Any],
                                                       match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(("call", "match"), [
    (lambda: rprop(etas=0.5), r"^rprop: etas must be a pair of numbers, e\.g\. etas=\(0\.5, "
                              r"1\.2\), got 0\.5"),
    (lambda: rprop(step_sizes=(1e-6, 50, 3)), r"^rprop: step_sizes must be a pair"),
    (lambda: rprop(lr=lambda c: 0.1), r"^rprop: lr \(the initial step size\) must be a real"),
    (lambda: adabelief(1e-3, nesterov="yes"), r"^adabelief: nesterov"),
])
def test_bad_types_are_refused_naming_the_optimizer(call: Callable[[], Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        call()
