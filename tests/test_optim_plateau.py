"""funcdl.optim's reduce_on_plateau (optax.contrib's) and the keyword forwarding of chain and
named_chain that carries its ``value=``: scripted loss sequences with their scales worked out
by hand, dtypes, io round trips, bad inputs. Against optax and torch's ReduceLROnPlateau:
test_optim_more2_peers.py."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import optim, tree
from funcdl.optim import ReduceLROnPlateauState, reduce_on_plateau

GT = optim.GradientTransformation
P = {"w": np.array([1.0, -2.0]), "b": np.array(0.5)}
G = {"w": np.array([0.5, 2.0]), "b": np.array(-1.0)}


def scales(opt: GT, losses: list[float]) -> tuple[list[float], Any]:
    """The factor ``opt`` put on G at each update, and the last state."""
    state, out = opt.init(P), []
    for loss in losses:
        u, state = opt.update(state, G, P, value=loss)
        np.testing.assert_array_equal(u["w"] / G["w"], u["b"] / G["b"])
        out.append(float(u["b"] / G["b"]))
    return out, state


# ---------------------------------------------------------------------------- hand sequences

def test_scale_drops_by_factor_after_patience_updates_without_a_relative_improvement() -> None:
    # 9.5 < 10 but not by rtol = 10%: not an improvement; 8 is, then 8s are a plateau again
    got, state = scales(reduce_on_plateau(0.5, patience=2, rtol=0.1),
                        [10, 9.5, 9.5, 8.0, 8.0, 8.0, 8.0, 8.0])
    assert got == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert state.best_value == 8.0 and state.plateau_count == 0


def test_cooldown_skips_updates_after_a_reduction_but_still_tracks_the_best() -> None:
    # atol = 1 alone: an improvement is a drop by more than 1. 5.0 improves during the
    # cooldown (best = 5), so 4.5 after it is a bad update and reduces at once (patience 1)
    got, state = scales(reduce_on_plateau(0.5, patience=1, rtol=0.0, atol=1.0, cooldown=2),
                        [10, 9.5, 9.5, 9.5, 9.5, 5.0, 4.5, 4.5])
    assert got == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    assert state.best_value == 5.0 and state.cooldown_count == 2


def test_an_improvement_must_beat_the_threshold_strictly() -> None:
    # best 10, rtol 0.5, atol 1: the threshold is 10·0.5 - 1 = 4; 4.0 is not below it
    opt = reduce_on_plateau(0.5, patience=1, rtol=0.5, atol=1.0)
    assert scales(opt, [10.0, 4.0])[0] == [1, 0.5]
    assert scales(opt, [10.0, 3.999])[0] == [1, 1]


def test_losses_are_averaged_over_accumulation_size_and_the_scale_floors_at_min_scale() -> None:
    # means 3, 3 (bad: reduce), 3 (bad: reduce to 0.25, floored at 0.3), 1 (improves)
    opt = reduce_on_plateau(0.5, patience=1, accumulation_size=2, min_scale=0.3)
    got, _ = scales(opt, [4, 2, 3, 3, 3.5, 2.5, 1, 1])
    assert got == [1, 1, 1, 0.5, 0.5, 0.3, 0.3, 0.3]
    _, mid = scales(opt, [4, 2, 3, 3, 3.5])
    assert (mid.count, mid.avg_value, mid.best_value) == (1, 3.5, 3.0)
    _, end = scales(opt, [4, 2, 3, 3, 3.5, 2.5, 1, 1])
    assert (end.count, end.avg_value, end.best_value) == (0, 0.0, 1.0)


def test_nan_and_inf_losses_never_improve_and_raise_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, state = scales(reduce_on_plateau(0.5, patience=2),
                            [1.0, np.nan, np.inf, 2.0, -np.inf])
    assert got == [1, 1, 0.5, 0.5, 0.5] and state.best_value == -np.inf


# ---------------------------------------------------------------------------- chains

def test_chain_and_named_chain_forward_value_to_the_stage_that_takes_it() -> None:
    losses = [3.0, 3.0, 3.0]
    want = [-1.0, -1.0, -0.5]  # sgd(1) then the scale
    for opt in (optim.chain(optim.sgd(1.0), reduce_on_plateau(0.5, patience=2)),
                optim.named_chain(("sgd", optim.sgd(1.0)),
                                  ("plateau", reduce_on_plateau(0.5, patience=2))),
                optim.chain(optim.clip_by_global_norm(1e9),
                            optim.chain(optim.sgd(1.0), reduce_on_plateau(0.5, patience=2)))):
        assert scales(opt, losses)[0] == want
        assert "value" in inspect.signature(opt.update).parameters


def test_masked_and_multi_steps_forward_value_to_the_transform_they_wrap() -> None:
    # masked: the scale reaches the masked leaf only ('b' keeps sgd's step); multi_steps:
    # the loss reaches the inner chain at its k-th updates, as optax's MultiSteps
    opt = optim.chain(optim.sgd(1.0), optim.masked(reduce_on_plateau(0.5, patience=2),
                                                   {"w": True, "b": False}))
    state, got = opt.init(P), []
    for loss in [3.0, 3.0, 3.0]:
        u, state = opt.update(state, G, P, value=loss)
        got.append((float(u["w"][0] / G["w"][0]), float(u["b"] / G["b"])))
    assert got == [(-1.0, -1.0), (-1.0, -1.0), (-0.5, -1.0)]
    assert "value" in inspect.signature(opt.update).parameters
    multi = optim.multi_steps(optim.chain(optim.sgd(1.0), reduce_on_plateau(0.5, patience=1)),
                              2)
    state, got = multi.init(P), []
    for loss in [3.0] * 6:
        u, state = multi.update(state, G, P, value=loss)
        got.append(float(u["b"] / G["b"]))
    assert got == [0.0, -1.0, 0.0, -0.5, 0.0, -0.25]
    for wrapper in (optim.masked(optim.sgd(1.0), {"w": True, "b": False}),
                    optim.multi_steps(optim.sgd(1.0), 2)):
        name = wrapper.update.__qualname__.split(".")[0]
        with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'value'"):
            wrapper.update(wrapper.init(P), G, P, value=1.0)
        assert "value" not in inspect.signature(wrapper.update).parameters, name


def test_a_keyword_no_stage_takes_is_refused_naming_it() -> None:
    opt = optim.chain(optim.sgd(1.0), reduce_on_plateau())
    state = opt.init(P)
    with pytest.raises(TypeError, match=r"^chain\.update: got an unexpected keyword argument "
                                        r"'loss'; its transforms take value="):
        opt.update(state, G, P, loss=1.0)
    for plain, name in [(optim.chain(optim.sgd(1.0)), "chain"), (optim.adam(), "adam"),
                        (optim.named_chain(("a", optim.scale(2.0))), "named_chain")]:
        with pytest.raises(TypeError, match=rf"^{name}\.update: got an unexpected keyword "
                                            r"argument 'value'; none of its transforms"):
            plain.update(plain.init(P), G, P, value=1.0)
        assert list(inspect.signature(plain.update).parameters) == ["state", "grads", "params"]


def test_a_stage_taking_any_keyword_gets_them_all() -> None:
    seen: list[dict[str, Any]] = []
    inner = optim.identity()

    def update(state: Any, grads: Any, params: Any = None, **kw: Any) -> Any:
        seen.append(kw)
        return inner.update(state, grads, params)

    opt = optim.chain(optim.GradientTransformation(inner.init, update), reduce_on_plateau())
    opt.update(opt.init(P), G, P, value=1.0, other=2)
    assert seen == [{"value": 1.0, "other": 2}]


def test_the_loss_is_required_and_must_be_a_number() -> None:
    opt = reduce_on_plateau()
    state = opt.init(P)
    with pytest.raises(TypeError, match=r"^reduce_on_plateau\.update: needs the loss: call "
                                        r"update\(state, grads, params, value=loss\)"):
        opt.update(state, G, P)
    with pytest.raises(TypeError, match=r"^reduce_on_plateau\.update: needs the loss"):
        optim.chain(optim.sgd(0.1), opt).update(optim.chain(optim.sgd(0.1), opt).init(P), G)
    for bad, got in [("1.0", r"'1\.0' \(str\)"), (np.ones(2), "an array of shape"),
                     (True, "True")]:
        with pytest.raises(TypeError, match=rf"^reduce_on_plateau\.update: value \(the loss\) "
                                            rf"must be a real number, got {got}"):
            opt.update(state, G, P, value=bad)
    u, _ = opt.update(state, G, P, value=np.array([2.5]))  # a 1-entry array is the loss
    np.testing.assert_array_equal(u["w"], G["w"])


# ---------------------------------------------------------------------------- dtypes, io

def test_scale_keeps_the_lowest_float_dtype_and_the_loss_the_highest() -> None:
    f32 = tree.map(lambda x: x.astype(np.float32), P)
    opt = reduce_on_plateau(0.5, patience=1)
    state = opt.init(f32)
    assert type(state) is ReduceLROnPlateauState
    for loss in (1.0, 2.0):
        u, state = opt.update(state, tree.map(lambda x: x.astype(np.float32), G), f32,
                              value=loss)
    assert {x.dtype for x in tree.leaves(u)} == {np.dtype(np.float32)}
    assert type(state.scale) is np.float32 and state.scale == 0.5
    assert type(state.best_value) is np.float32 and type(state.avg_value) is np.float32
    mixed = {"h": np.zeros(2, np.float16), "d": np.zeros(2)}
    state = opt.init(mixed)
    assert type(state.scale) is np.float16 and type(state.best_value) is np.float64
    assert {type(c) for c in state[2:5]} == {np.int64}


def test_state_saved_and_loaded_mid_run_continues_the_same(tmp_path: Any) -> None:
    losses = [5.0, 4.0, 4.5, 4.5, 4.2, 3.0, 3.1, 3.2, 3.3]

    def make() -> GT:
        return optim.chain(optim.adam(0.1), reduce_on_plateau(0.5, 2, cooldown=1,
                                                              accumulation_size=2))

    def run(state: Any, ls: list[float]) -> tuple[list[Any], Any]:
        out, opt = [], make()
        for loss in ls:
            u, state = opt.update(state, G, P, value=loss)
            out.append(u)
        return out, state

    want, _ = run(make().init(P), losses)
    _, mid = run(make().init(P), losses[:5])
    fd.io.save(tmp_path / "s.npz", mid)
    loaded = fd.io.load(tmp_path / "s.npz", like=make().init(P))
    assert type(loaded.states[1]) is ReduceLROnPlateauState
    got, _ = run(loaded, losses[5:])
    for x, y in zip(tree.leaves(got), tree.leaves(want[5:]), strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("kw", "error", "match"), [
    ({"factor": 0.0}, ValueError, r"factor must be in \(0, 1\), got 0\.0"),
    ({"factor": 1.0}, ValueError, r"factor \(the scale's multiplier at a plateau\) must be a "
                                  r"finite number in \[0, 1\), got 1\.0"),
    ({"patience": 0}, ValueError, r"patience must be a positive int, got 0"),
    ({"patience": 2.5}, ValueError, r"patience must be a positive int"),
    ({"rtol": 0.0, "atol": 0.0}, ValueError, r"rtol and atol are both 0"),
    ({"rtol": 1.5}, ValueError, r"rtol must be a finite number in \[0, 1\]"),
    ({"atol": -1.0}, ValueError, r"atol must be a finite number >= 0"),
    ({"cooldown": -1}, ValueError, r"cooldown must be an int >= 0"),
    ({"accumulation_size": 0}, ValueError, r"accumulation_size must be a positive int"),
    ({"min_scale": -0.1}, ValueError, r"min_scale must be a finite number in \[0, 1\]"),
    ({"factor": "0.1"}, TypeError, r"factor .* must be a real number"),
])
def test_bad_settings_are_refused_naming_it(kw: dict[str, Any], error: type,
                                            match: str) -> None:
    with pytest.raises(error, match=rf"^reduce_on_plateau: {match}"):
        reduce_on_plateau(**kw)


@pytest.mark.parametrize(("edit", "error"), [
    (lambda s: s._replace(scale="1"), TypeError),
    (lambda s: s._replace(plateau_count=-1), ValueError),
    (lambda s: s._replace(count=None), TypeError),
])
def test_a_state_edited_wrongly_is_refused(edit: Callable[[Any], Any], error: type) -> None:
    opt = reduce_on_plateau()
    with pytest.raises(error, match=r"^reduce_on_plateau\.update: the state's"):
        opt.update(edit(opt.init(P)), G, P, value=1.0)
    with pytest.raises(TypeError, match=r"^reduce_on_plateau\.update: the first argument"):
        opt.update(G, opt.init(P), P, value=1.0)


def test_a_partial_binding_value_is_a_plain_transform() -> None:
    # how a caller with a fixed metric (or the fuzz catalogue) runs it without value=
    opt = reduce_on_plateau(0.5, patience=1)
    fixed = optim.GradientTransformation(opt.init, functools.partial(opt.update, value=1.0))
    state = fixed.init(P)
    for _ in range(3):
        u, state = fixed.update(state, G, P)
    np.testing.assert_array_equal(u["w"], 0.25 * G["w"])
