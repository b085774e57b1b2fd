"""A read-through of optim's core found these: each a test that failed on the code before."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import numpy.ma as ma
import pytest

from funcdl import optim


@dataclasses.dataclass
class StepDecay:
    """A schedule as a plain dataclass: callable, and unhashable (eq without frozen)."""

    lr: float
    every: int

    def __call__(self, count: int) -> float:
        return self.lr * 0.5 ** (count // self.every)


def test_an_unhashable_callable_schedule_is_a_schedule():
    # `fn in SCHEDULE_FACTORIES` hashed it: TypeError: unhashable type: 'StepDecay'
    p, g = {"w": np.ones(2)}, {"w": np.ones(2)}
    for opt in (optim.sgd(StepDecay(0.1, 10)), optim.adam(StepDecay(0.1, 10)),
                optim.scale_by_schedule(StepDecay(0.1, 10)),
                optim.inject_hyperparams(optim.sgd)(lr=StepDecay(0.1, 10))):
        u, _ = opt.update(opt.init(p), g, p)
        assert np.isfinite(u["w"]).all()


def test_a_scale_past_float32s_range_gives_inf_steps_without_a_warning():
    g = {"w": np.ones(3, np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for opt in (optim.scale(1e39), optim.scale_by_schedule(lambda c: 1e39)):
            u, _ = opt.update(opt.init(g), g, g)
            assert u["w"].dtype == np.float32 and np.isposinf(u["w"]).all()


def test_inject_hyperparams_refuses_a_constant_that_rounds_to_0_in_the_params_dtype():
    # adam's eps=1e-8 kept in float16 was 0: a zero gradient entry gave a NaN param
    p16 = {"w": np.array([0.5, 1.0, -1.0], np.float16)}
    with pytest.raises(ValueError, match=r"hyperparameter eps=1e-08 is 0 in float16.*"
                                         r"hyperparam_dtype=np.float32"):
        optim.inject_hyperparams(optim.adam)(lr=1e-3).init(p16)
    opt = optim.inject_hyperparams(optim.adam, hyperparam_dtype=np.float32)(lr=1e-3)
    with pytest.raises(ValueError, match=r"adam.init: eps=.* is 0 in float16"):  # its guard
        opt.init(p16)
    p32 = {"w": p16["w"].astype(np.float32)}
    optim.inject_hyperparams(optim.adam)(lr=1e-3).init(p32)


def test_global_norm_and_its_clip_refuse_a_masked_array():
    # the hidden entries counted: a norm of 1e6 where the visible ones give 5
    g = {"w": ma.masked_array([3.0, 4.0, 1e6], [0, 0, 1])}
    for call in (lambda: optim.global_norm(g),
                 lambda: optim.clip_by_global_norm(1.0).update(optim.EmptyState(), g)):
        with pytest.raises(ValueError, match="masked array"):
            call()


def test_amsgrad_keeps_a_0d_leafs_step_in_the_params_dtype():
    p = {"s": np.array(1.0, np.float32), "w": np.ones(2, np.float32)}
    g = {"s": np.array(0.5), "w": np.full(2, 0.5)}  # float64 grads on float32 params
    for opt in (optim.adam(1e-3, amsgrad=True), optim.adam(1e-3)):
        u, _ = opt.update(opt.init(p), g, p)
        assert {k: v.dtype for k, v in u.items()} == {"s": np.float32, "w": np.float32}


@pytest.mark.parametrize("flag", [True, np.True_, np.array(True)])
def test_a_schedule_returning_a_bool_is_refused_whatever_its_kind(flag):
    opt = optim.sgd(lambda c: flag)
    p = {"w": np.ones(2)}
    with pytest.raises(TypeError, match="the schedule must return a number"):
        opt.update(opt.init(p), p, p)


def test_inject_hyperparams_says_a_callable_that_is_no_schedule_goes_in_static_args():
    # mask(0) raised a bare AttributeError from the user's own mask function
    with pytest.raises(TypeError, match=r"mask is a callable, read as a schedule .* goes in "
                                        r"static_args=\('mask',\)"):
        optim.inject_hyperparams(optim.adamw)(
            lr=1e-3, mask=lambda p: {k: v.ndim > 1 for k, v in p.items()})
    opt = optim.inject_hyperparams(optim.adamw, static_args="mask")(
        lr=1e-3, mask=lambda p: {k: v.ndim > 1 for k, v in p.items()})
    opt.init({"w": np.ones((2, 2)), "b": np.ones(2)})


def test_inject_hyperparams_blames_the_hyperparams_only_when_the_stages_changed():
    p = {"w": np.ones(3)}
    # a schedule rebuilds the optimizer every step: a plain shape error got the hint too
    opt = optim.inject_hyperparams(optim.adam)(lr=lambda c: 1e-3)
    with pytest.raises(ValueError) as e:
        opt.update(opt.init(p), {"w": np.ones(4)}, {"w": np.ones(4)})
    assert "shape mismatch" in str(e.value) and "built from the hyperparams" not in str(e.value)
    # adagrad's lr_decay from 0.01 to 0 swaps its lr stage's state: a TypeError telling to
    # pass "the state made by this optimizer's init", which the caller had passed
    opt = optim.inject_hyperparams(optim.adagrad)(lr=0.1, lr_decay=0.01)
    state = opt.init(p)
    state.hyperparams["lr_decay"] = np.asarray(0.0)
    with pytest.raises(TypeError, match=r"a value that changes a stage's state, as adagrad's "
                                        r"lr_decay changed from 0, needs a new init"):
        opt.update(state, p, p)


@pytest.mark.parametrize("make", [lambda: optim.prodigy(), lambda: optim.dadapt_adamw(),
                                  lambda: optim.dog(), lambda: optim.dowg(),
                                  lambda: optim.mechanize(optim.sgd(0.1))])
def test_learning_rate_free_optimizers_step_through_inf_and_huge_grads(make):
    # math.fsum raised ValueError (-inf + inf) or OverflowError on one bad batch, bare;
    # optax gives NaN or inf steps
    p = {"a": np.ones(1), "b": np.ones(1)}
    opt = make()
    state = opt.init(p)
    _, state = opt.update(state, {"a": np.ones(1), "b": np.ones(1)}, p)
    for g in ({"a": np.array([np.inf]), "b": np.array([-np.inf])},
              {"a": np.array([1.2e154]), "b": np.array([1.2e154])}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the NaN steps' own arithmetic may say so
            opt.update(state, g, p)


def test_sam_keeps_a_copy_of_the_params_it_returns_to():
    # its cache was the caller's own arrays: a caller stepping them in place moved it
    p = {"w": np.array([1.0, 2.0])}
    opt = optim.sam(optim.sgd(0.1), optim.sgd(0.05), sync_period=2)
    state = opt.init(p)
    assert state.cache["w"] is not p["w"]
    _, state = opt.update(state, {"w": np.ones(2)}, p)
    assert state.cache["w"] is not p["w"]


@pytest.mark.parametrize("make", [lambda: optim.prodigy(), lambda: optim.scale_by_belief(),
                                  lambda: optim.adabelief(1e-3)])
def test_float16_params_whose_step_floor_is_0_are_refused_at_init(make):
    with pytest.raises(ValueError, match=r"is 0 in float16"):
        make().init({"w": np.ones(3, np.float16)})
    make().init({"w": np.ones(3, np.float32)})
