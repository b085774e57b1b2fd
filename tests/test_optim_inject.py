"""funcdl.optim's inject_hyperparams (optax's): hyperparameters in the state, read back at every
update, changed by hand or by a schedule; dtypes, io round trips, static arguments, keyword
forwarding, bad inputs. Against optax.inject_hyperparams: test_optim_more2_peers.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import optim, tree
from funcdl.optim import InjectHyperparamsState, inject_hyperparams, reduce_on_plateau

GT = optim.GradientTransformation
rng = np.random.default_rng(0)
P = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
GS = [tree.map(lambda x: rng.normal(size=x.shape), P) for _ in range(6)]


def run(opt: GT, gs: list[Any], state: Any = None, params: Any = P) -> tuple[list[Any], Any]:
    state = opt.init(params) if state is None else state
    out = []
    for g in gs:
        u, state = opt.update(state, g, params)
        out.append(u)
    return out, state


def same(a: Any, b: Any) -> None:
    for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_an_injected_optimizer_steps_as_the_plain_one_and_keeps_its_state_inside() -> None:
    want, plain = run(optim.adam(0.05, b1=0.8, weight_decay=1e-2), GS)
    got, state = run(inject_hyperparams(optim.adam)(0.05, b1=0.8, weight_decay=1e-2), GS)
    same(got, want)
    same(state.inner_state, plain)
    assert type(state) is InjectHyperparamsState and state.count == len(GS)
    assert set(state.hyperparams) == {"lr", "b1", "b2", "eps", "weight_decay"}
    assert all(type(v) is np.ndarray and v.shape == () and v.dtype == np.float64
               for v in state.hyperparams.values())
    assert state.hyperparams["lr"] == 0.05


def test_a_learning_rate_replaced_in_the_state_takes_effect_at_the_next_update() -> None:
    opt = inject_hyperparams(optim.sgd)(lr=0.1, momentum=0.9)
    _, state = run(opt, GS[:3])
    state = state._replace(hyperparams={**state.hyperparams, "lr": np.asarray(0.01)})
    got, state = run(opt, GS[3:], state)
    # the reference: sgd(0.01) carrying on from sgd(0.1)'s momentum after 3 updates
    _, inner = run(optim.sgd(0.1, momentum=0.9), GS[:3])
    want, _ = run(optim.sgd(0.01, momentum=0.9), GS[3:], inner)
    same(got, want)
    assert state.hyperparams["lr"] == 0.01 and state.count == 6
    # a Python float put there is stored back as the params' float dtype
    state = state._replace(hyperparams={**state.hyperparams, "lr": 0.5})
    _, state = run(opt, GS[:1], state)
    assert state.hyperparams["lr"].dtype == np.float64 and state.hyperparams["lr"] == 0.5


def test_a_schedule_is_read_from_the_count_at_every_update() -> None:
    def schedule(c: int) -> float:
        return 0.1 * (c + 1)

    opt = inject_hyperparams(optim.sgd)(lr=schedule)
    state = opt.init(P)
    assert state.hyperparams["lr"] == pytest.approx(0.1)
    for c, g in enumerate(GS[:4]):
        u, state = opt.update(state, g, P)
        np.testing.assert_allclose(u["w"], -schedule(c) * g["w"], rtol=1e-15)
        assert state.hyperparams["lr"] == schedule(c)  # the value this update used
    # overriding a scheduled value has no effect: the schedule wins
    state = state._replace(hyperparams={**state.hyperparams, "lr": np.asarray(100.0)})
    u, _ = opt.update(state, GS[0], P)
    np.testing.assert_allclose(u["w"], -schedule(4) * GS[0]["w"], rtol=1e-15)


def test_float32_params_keep_float32_hyperparams_ints_stay_int64_and_bools_static() -> None:
    f32 = tree.map(lambda x: x.astype(np.float32), P)
    opt = inject_hyperparams(optim.sgd)(lr=0.1, momentum=0.5, nesterov=True)
    state = opt.init(f32)
    assert set(state.hyperparams) == {"lr", "momentum", "weight_decay"}  # nesterov: a bool
    assert {v.dtype for v in state.hyperparams.values()} == {np.dtype(np.float32)}
    u, state = opt.update(state, tree.map(lambda x: x.astype(np.float32), GS[0]), f32)
    assert {x.dtype for x in tree.leaves((u, state))} <= {np.dtype(np.float32),
                                                         np.dtype(np.int64)}
    acc = inject_hyperparams(optim.apply_every)(k=2)
    assert acc.init(P).hyperparams["k"].dtype == np.int64
    as16 = inject_hyperparams(optim.sgd, hyperparam_dtype=np.float16)(lr=0.1)
    assert as16.init(P).hyperparams["lr"].dtype == np.float16


def test_static_args_pass_a_callable_that_is_no_schedule() -> None:
    def decay_matrices(p: Any) -> Any:
        return tree.map(lambda x: np.ndim(x) > 1, p)

    opt = inject_hyperparams(optim.adamw, static_args="mask")(lr=0.1, mask=decay_matrices)
    want, _ = run(optim.adamw(0.1, mask=decay_matrices), GS)
    same(run(opt, GS)[0], want)
    assert "mask" not in opt.init(P).hyperparams
    with pytest.raises(TypeError, match=r"inject_hyperparams\(adamw\) \(mask\): the schedule "
                                        r"must return a number at count 0"):
        inject_hyperparams(optim.adamw)(lr=0.1, mask=decay_matrices)


def test_state_saved_and_loaded_mid_run_continues_the_same(tmp_path: Any) -> None:
    def make() -> GT:
        return inject_hyperparams(optim.adam)(lr=lambda c: 0.1 / (c + 1), b1=0.8)

    want, _ = run(make(), GS)
    _, mid = run(make(), GS[:3])
    mid = mid._replace(hyperparams={**mid.hyperparams, "b1": np.asarray(0.8)})
    fd.io.save(tmp_path / "s.npz", mid)
    loaded = fd.io.load(tmp_path / "s.npz", like=make().init(P))
    assert type(loaded) is InjectHyperparamsState
    assert loaded.hyperparams.keys() == mid.hyperparams.keys()
    assert loaded.hyperparams["lr"] == mid.hyperparams["lr"] == 0.1 / 3
    got, _ = run(make(), GS[3:], loaded)
    same(got, want[3:])


def test_keywords_reach_an_inner_transform_that_takes_them() -> None:
    opt = inject_hyperparams(reduce_on_plateau)(factor=0.5, patience=1)
    state = opt.init(P)
    for loss in (1.0, 1.0):
        u, state = opt.update(state, GS[0], P, value=loss)
    np.testing.assert_array_equal(u["w"], 0.5 * GS[0]["w"])
    assert state.hyperparams["factor"] == 0.5 and state.hyperparams["patience"] == 1
    chained = optim.chain(optim.sgd(1.0), opt)
    chained.update(chained.init(P), GS[0], P, value=1.0)
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(reduce_on_plateau\)\.update: got "
                                        r"an unexpected keyword argument 'loss'"):
        opt.update(state, GS[0], P, loss=1.0)
    plain = inject_hyperparams(optim.sgd)(0.1)
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(sgd\)\.update: got an "
                                        r"unexpected keyword argument 'value'"):
        plain.update(plain.init(P), GS[0], P, value=1.0)


def test_bad_hyperparams_in_the_state_are_refused_naming_them() -> None:
    opt = inject_hyperparams(optim.adam)(lr=0.1)
    state = opt.init(P)
    with pytest.raises(ValueError, match=r"^inject_hyperparams\(adam\)\.update: the hyperparams "
                                         r"at count 0: adam: lr .*>= 0, got -1\.0"):
        opt.update(state._replace(hyperparams={**state.hyperparams, "lr": -1.0}), GS[0], P)
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(adam\)\.update: "
                                        r"state\.hyperparams\['lr'\] must be a real number"):
        opt.update(state._replace(hyperparams={**state.hyperparams, "lr": "0.1"}), GS[0], P)
    with pytest.raises(ValueError, match=r"^inject_hyperparams\(adam\)\.update: state\."
                                         r"hyperparams must be a dict with the keys"):
        opt.update(state._replace(hyperparams={"lr": 0.1}), GS[0], P)
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(adam\)\.update: the first "
                                        r"argument must be the optimizer state"):
        opt.update(GS[0], state, P)
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(adam\)\.update: the state's "
                                        r"count"):
        opt.update(state._replace(count=None), GS[0], P)


def test_a_stage_a_zero_left_out_cannot_be_switched_on_mid_run() -> None:
    opt = inject_hyperparams(optim.sgd)(lr=0.1)  # momentum 0: no momentum stage
    state = opt.init(P)
    with pytest.raises(ValueError, match=r"the state's stages are .* \(built from the "
                                         r"hyperparams .*'momentum': 0\.9.*needs a new init\)"):
        opt.update(state._replace(hyperparams={**state.hyperparams, "momentum": 0.9}), GS[0], P)


def test_bad_arguments_are_refused_when_made() -> None:
    with pytest.raises(TypeError, match=r"^inject_hyperparams: inner_factory must be the "
                                        r"function that makes the transform"):
        inject_hyperparams(optim.adam())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^inject_hyperparams: inner_factory must be a "
                                        r"function"):
        inject_hyperparams(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^inject_hyperparams: static_args must name "
                                         r"parameters of adam, got \['mask'\]"):
        inject_hyperparams(optim.adam, static_args=["mask"])
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(adam\): got an unexpected "
                                        r"keyword argument 'learning_rate'"):
        inject_hyperparams(optim.adam)(learning_rate=0.1)
    with pytest.raises(ValueError, match=r"^adam: b1 must be a finite number in \[0, 1\)"):
        inject_hyperparams(optim.adam)(b1=2.0)  # checked at once, by adam itself
    with pytest.raises(TypeError, match=r"^inject_hyperparams\(sgd\): lr must take one "
                                        r"argument"):
        inject_hyperparams(optim.sgd)(lr=lambda: 0.1)
    with pytest.raises(TypeError, match=r"^inject_hyperparams: hyperparam_dtype"):
        inject_hyperparams(optim.sgd, hyperparam_dtype=np.int32)


def test_an_unchanged_inner_transform_is_not_rebuilt() -> None:
    made: list[float] = []

    def factory(lr: float) -> GT:
        made.append(lr)
        return optim.sgd(lr)

    opt = inject_hyperparams(factory)(lr=0.1)
    _, state = run(opt, GS[:4])
    assert made == [0.1]  # at construction; init and the updates reuse it
    state = state._replace(hyperparams={"lr": np.asarray(0.2)})
    run(opt, GS[:2], state)
    assert made == [0.1, 0.2]


def test_a_default_callable_is_the_factorys_not_a_schedule() -> None:
    """adopt's clip_value_fn defaults to a function of the count: inject_hyperparams leaves
    it as it is (it evaluated it as a schedule, and adopt refused the float it got); a
    callable the caller passes is still a schedule."""
    p = {"w": np.ones(3)}
    opt = optim.inject_hyperparams(optim.adopt)(learning_rate=1e-2)
    state = opt.init(p)
    assert sorted(state.hyperparams) == ["b1", "b2", "eps", "learning_rate"]
    plain = optim.adopt(learning_rate=1e-2)
    ps, pp, s_plain = p, p, plain.init(p)
    for g in (np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.5, -4.0]), np.ones(3)):
        u, state = opt.update(state, {"w": g}, ps)
        v, s_plain = plain.update(s_plain, {"w": g}, pp)
        np.testing.assert_array_equal(u["w"], v["w"])
        ps, pp = optim.apply_updates(ps, u), optim.apply_updates(pp, v)
    sched = optim.inject_hyperparams(optim.adopt)(learning_rate=lambda c: 1e-2 / (1 + c))
    assert "learning_rate" in sched.init(p).hyperparams
