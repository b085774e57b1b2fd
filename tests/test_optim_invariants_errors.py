"""funcdl.optim: wrong calls fail loudly, naming what was expected: bad hyperparameters and
flags, an uncalled transform in a chain, the state of another optimizer, grads checked
against the state without params, weight decay without params, mismatched updates, a
layer's (out_shape, params) given to init, an eps that is 0 in float16. The refusals run
over every transform and alias: test_optim_invariants.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _optim_util import GT

import funcdl as fd
from funcdl import layers as L
from funcdl import optim

# ---------------------------------------------------------------------------- errors

def test_stateful_transforms_check_grads_against_state_without_params() -> None:
    opt = optim.adam()
    params = {"w": np.ones(2), "b": np.ones(3)}
    # the optimizer built, its stage, then the transform that found it
    with pytest.raises(ValueError, match=r"^adam\.update, stage 'adam': scale_by_adam\.update: "
                                         r".*\['b'\].*state\.mu"):
        opt.update(opt.init(params), {"w": np.ones(2), "b": [np.ones(3)]})


def test_apply_updates_mismatch_names_the_path() -> None:
    params = {"w": np.ones(2), "b": [np.ones(3)]}
    with pytest.raises(ValueError, match=r"^apply_updates: .*\['b'\]"):
        optim.apply_updates(params, {"w": np.ones(2), "b": np.ones(3)})
    with pytest.raises(ValueError, match=r"^apply_updates: shape mismatch at \['b'\]\[0\]"):
        optim.apply_updates(params, {"w": np.ones(2), "b": [np.ones(1)]})


def test_weight_decay_without_params_raises() -> None:
    wd = optim.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match=r"^add_decayed_weights\.update: needs the params"):
        wd.update(wd.init(None), {"w": np.ones(2)})
    opt = optim.sgd(0.1, weight_decay=0.1)
    params = {"w": np.ones(2)}
    with pytest.raises(ValueError, match="needs the params"):
        opt.update(opt.init(params), {"w": np.ones(2)})


def test_state_of_another_optimizer_raises() -> None:
    params = {"w": np.ones(2)}
    with pytest.raises(ValueError, match=r"^adam\.update: the state's stages"):
        optim.adam().update(optim.sgd(0.1).init(params), params, params)
    with pytest.raises(ValueError, match=r"^chain\.update: the state holds 1"):
        optim.chain(optim.identity(), optim.identity()).update(
            optim.chain(optim.identity()).init(params), params, params)


def test_uncalled_transform_in_chain_raises() -> None:
    with pytest.raises(TypeError, match="did you forget to call it"):
        optim.chain(optim.scale_by_adam)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        optim.named_chain(("a", optim.identity()), ("a", optim.identity()))


BAD_HYPERPARAMETERS: list[tuple[str, Callable[[], Any]]] = [
    ("sgd", lambda: optim.sgd(-0.1)),
    ("sgd", lambda: optim.sgd(math.nan)),
    ("sgd", lambda: optim.sgd(0.1, momentum=-0.5)),
    ("sgd", lambda: optim.sgd(0.1, nesterov=True)),
    ("sgd", lambda: optim.sgd(0.1, weight_decay=-1.0)),
    ("adam", lambda: optim.adam(-1e-3)),
    ("adam", lambda: optim.adam(b1=1.0)),
    ("adam", lambda: optim.adam(b1=-0.1)),
    ("adam", lambda: optim.adam(b2=1.0)),
    ("adam", lambda: optim.adam(eps=-1.0)),
    ("adam", lambda: optim.adam(weight_decay=-1.0)),
    ("adamw", lambda: optim.adamw(weight_decay=-1.0)),
    ("adamw", lambda: optim.adamw(b2=1.5)),
    ("rmsprop", lambda: optim.rmsprop(-1.0)),
    ("rmsprop", lambda: optim.rmsprop(alpha=-0.1)),
    ("rmsprop", lambda: optim.rmsprop(eps=-1.0)),
    ("rmsprop", lambda: optim.rmsprop(momentum=-1.0)),
    ("adagrad", lambda: optim.adagrad(-1.0)),
    ("adagrad", lambda: optim.adagrad(lr_decay=-1.0)),
    ("adagrad", lambda: optim.adagrad(initial_accumulator_value=-1.0)),
    ("adagrad", lambda: optim.adagrad(eps=-1.0)),
    ("scale_by_adam", lambda: optim.scale_by_adam(b1=1.0)),
    ("trace", lambda: optim.trace(-0.9)),
    ("clip_by_global_norm", lambda: optim.clip_by_global_norm(-1.0)),
    ("cosine_decay_schedule", lambda: optim.cosine_decay_schedule(1.0, 0)),
    ("piecewise_constant_schedule", lambda: optim.piecewise_constant_schedule(1.0, {5: -1.0})),
    ("warmup_cosine_decay_schedule", lambda: optim.warmup_cosine_decay_schedule(0, 1, 10, 10)),
    ("linear_schedule", lambda: optim.linear_schedule(0.0, 1.0, -5)),
    ("exponential_decay", lambda: optim.exponential_decay(1.0, 10, 0.0)),
    ("exponential_decay", lambda: optim.exponential_decay(1.0, 10, 0.5, transition_begin=-1)),
    ("join_schedules", lambda: optim.join_schedules([optim.constant_schedule(1.0)], [5])),
]


@pytest.mark.parametrize(("name", "make"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise(name: str, make: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: "):
        make()


def test_flags_must_be_bools() -> None:
    # A truthy string is not a yes: sgd(nesterov='no') turned Nesterov on.
    for make, what in [(lambda: optim.sgd(0.1, momentum=0.9, nesterov="no"), "sgd: nesterov"),
                       (lambda: optim.rmsprop(centered=1), "rmsprop: centered"),
                       (lambda: optim.trace(0.9, nesterov="yes"), "trace: nesterov"),
                       (lambda: optim.scale_by_rms(centered="no"), "scale_by_rms: centered"),
                       (lambda: optim.scale_by_learning_rate(0.1, flip_sign=0),
                        "scale_by_learning_rate: flip_sign")]:
        with pytest.raises(TypeError, match=rf"^{what} must be True or False, got"):
            make()
    assert optim.sgd(0.1, momentum=0.9, nesterov=np.bool_(True)) is not None


# ---------------------------------------------------------------------------- params dtypes

@pytest.mark.parametrize("stateful", [False, True])
def test_init_given_a_layers_init_output_says_to_unpack_it(stateful: bool) -> None:
    # (out_shape, params): the shape's ints were blamed as int params, with astype advice
    model = L.Sequential(L.Dense(3), *([L.BatchNorm()] if stateful else []))
    made = model.init(fd.random.key(0), (None, 4))
    with pytest.raises(TypeError, match=r"^adam\.init: params is a tuple that starts with "
                                        r"the shape \(None, 3\).*_, params = model\.init"):
        fd.optim.adam(1e-3).init(made)


@pytest.mark.parametrize("make", [optim.adam, optim.adamw, optim.rmsprop, optim.adagrad,
                                  optim.scale_by_adam, optim.scale_by_rms,
                                  optim.scale_by_adagrad])
def test_eps_that_is_zero_in_float16_is_refused_at_init(make: Callable[..., GT]) -> None:
    # 1e-8 is 0 in float16: a zero gradient entry then gave 0/0 = NaN (and a warning).
    params = {"w": np.ones(3, np.float16)}
    with pytest.raises(ValueError, match=r"\.init: eps=1e-\d+ is 0 in float16 \(params\['w'\]\)"):
        make().init(params)
    opt = make(eps=1e-4)
    updates, _ = opt.update(opt.init(params), {"w": np.array([0, 1, -1], np.float16)}, params)
    assert np.all(np.isfinite(updates["w"])) and updates["w"].dtype == np.float16



@pytest.mark.parametrize("dtype, fix", [(np.float16, "or keep float32 params"),
                                        (np.float32, "or use float64 params")])
def test_an_eps_that_is_zero_in_the_params_dtype_names_a_fix_for_that_dtype(
        dtype: Any, fix: str) -> None:
    # "keep float32 params" was the advice for float32 params too
    with pytest.raises(ValueError, match=r"pass a larger eps.*" + fix) as err:
        optim.adam(eps=1e-50).init(
            {"w": np.ones(2, dtype)})
    assert ("float32 params" in str(err.value)) == (dtype == np.float16)

def test_a_count_or_step_too_long_to_print_is_named_by_its_length() -> None:
    # Python refuses to print an int of over 4,300 digits: the messages said so instead
    opt = optim.sgd(0.1)
    state = opt.init({"w": np.ones(2)})
    with pytest.raises(ValueError, match=r"sgd\.update: the state's count .*got an int of "
                                         r"about 5001 digits"):
        opt.update(state._replace(count=10**5000), {"w": np.ones(2)})
    with pytest.raises(ValueError, match=r"piecewise_constant_schedule: .*below 2\*\*63 .*"
                                         r"got an int of about 5001 digits"):
        optim.piecewise_constant_schedule(1.0, {10**5000: 0.1})
    with pytest.raises(ValueError, match=r"below 2\*\*63 .*got 9223372036854775808$"):
        optim.piecewise_constant_schedule(1.0, {2**63: 0.1})  # a short one is printed


def test_a_stage_error_names_the_optimizer_built_and_keeps_its_class() -> None:
    params = {"w": np.ones(3)}
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.1))
    with pytest.raises(ValueError, match=r"^sgd\.update, stage 'lr': scale_by_learning_rate\."
                                         r"update: shape mismatch at \['w'\]: grads has \(4,\)"):
        opt.update(opt.init(params), {"w": np.ones(4)}, params)

    class Odd(ValueError):  # a constructor of its own: the message is placed on a ValueError
        def __init__(self, a: str, b: str) -> None:
            super().__init__(a + b)

    def update(state, grads, params=None):
        raise Odd("x", "y")

    mine = optim.named_chain(("mine", optim.GradientTransformation(
        lambda p: optim.EmptyState(), update)))
    with pytest.raises(ValueError, match=r"^named_chain\.update, stage 'mine': xy$") as e:
        mine.update(mine.init(params), params, params)
    assert isinstance(e.value.__cause__, Odd)
    # an error the chain raises itself is not placed twice
    with pytest.raises(ValueError, match=r"^named_chain\.update: the state's stages"):
        mine.update(optim.named_chain(("other", optim.identity())).init(params), params, params)
