"""The catalogue of bad inputs, continued (see test_bad_inputs.py): optimizers, pytrees,
saving, data, sampling and the rest of the API outside the layers and losses."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _catalogue import F32, KEY, case, has, ones

import funcdl as fd
from funcdl import data, optim, random, tree

# ---------------------------------------------------------------------------- optimizers

PARAMS = {"w": ones(3, 2), "b": np.zeros(2, F32)}
GRADS = {"w": ones(3, 2), "b": ones(2)}

OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd-momentum": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: optim.adam(),
    "adamw": lambda: optim.adamw(),
    "rmsprop": lambda: optim.rmsprop(centered=True),
    "adagrad": lambda: optim.adagrad(),
    "chain": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.adam()),
}


def _update(name: str, state: Any = None, grads: Any = GRADS, params: Any = PARAMS) -> Any:
    opt = OPTIMIZERS[name]()
    return opt.update(opt.init(PARAMS) if state is None else state, grads, params)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_swapped_update_arguments(name):
    opt = OPTIMIZERS[name]()
    state = opt.init(PARAMS)
    label = name.split("-")[0]
    with pytest.raises(TypeError, match=has(f"{label}.update", "update(state, grads, params)",
                                            "got dict")):
        opt.update(GRADS, state, PARAMS)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(("grads", "parts"), [
    pytest.param({"w": GRADS["w"]}, ("update", "grads", "keys ['w']", "['b', 'w']"),
                 id="missing-leaf"),
    pytest.param({**GRADS, "c": GRADS["b"]}, ("update", "grads", "['b', 'c', 'w']"),
                 id="extra-leaf"),
    pytest.param({"w": ones(2, 3), "b": GRADS["b"]}, ("update", "['w']", "(2, 3)", "(3, 2)"),
                 id="leaf-shape"),
    pytest.param([GRADS["b"], GRADS["w"]], ("update", "grads", "list of length 2"),
                 id="list-for-dict"),
])
def test_optimizer_grads_differ_from_params(name, grads, parts):
    with pytest.raises(ValueError, match=has(*parts)):
        _update(name, grads=grads)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_params_differ_from_grads(name):
    # the lr stage (or weight decay) compares grads with params, leaf by leaf
    bad = {"w": ones(2, 3), "b": PARAMS["b"]}
    with pytest.raises(ValueError, match=has("update", "['w']", "(3, 2)", "(2, 3)")):
        _update(name, params=bad)


OPTIM_CASES = [
    case("state-of-another-optimizer",
         lambda: _update("adam", state=optim.sgd(0.1).init(PARAMS)), ValueError,
         "adam.update", "['lr']", "['adam', 'lr']"),
    case("named-chain-state-to-chain",
         lambda: _update("chain", state=optim.adam().init(PARAMS)), TypeError,
         "chain.update", "NamedChainState"),
    case("adamw-without-params", lambda: _update("adamw", params=None), ValueError,
         "add_decayed_weights.update", "params=None"),
    case("adam-lr-negative", lambda: optim.adam(-1.0), ValueError, "adam", "lr", "-1.0"),
    case("adam-lr-nan", lambda: optim.adam(float("nan")), ValueError, "adam", "lr", "nan"),
    case("adam-lr-string", lambda: optim.adam("0.1"), TypeError, "adam", "lr", "'0.1'"),
    case("sgd-lr-none", lambda: optim.sgd(None), TypeError, "sgd", "lr", "None"),
    case("adam-b1-1", lambda: optim.adam(b1=1.0), ValueError, "adam", "b1", "1.0"),
    case("adam-b2-negative", lambda: optim.adam(b2=-0.1), ValueError, "adam", "b2", "-0.1"),
    case("adam-eps-negative", lambda: optim.adam(eps=-1.0), ValueError, "adam", "eps", "-1.0"),
    case("sgd-momentum-negative", lambda: optim.sgd(0.1, momentum=-0.5), ValueError,
         "sgd", "momentum", "-0.5"),
    case("sgd-nesterov-without-momentum", lambda: optim.sgd(0.1, nesterov=True), ValueError,
         "sgd", "nesterov", "momentum"),
    case("clip-max-norm-negative", lambda: optim.clip_by_global_norm(-1.0), ValueError,
         "clip_by_global_norm", "max_norm", "-1.0"),
    case("chain-uncalled-transform", lambda: optim.chain(optim.adam(), optim.scale_by_adam),
         TypeError, "chain", "argument 1", "scale_by_adam()"),
    case("schedule-returns-string",
         lambda: optim.adam(lambda c: "fast").update(optim.adam(lambda c: "fast").init(PARAMS),
                                                     GRADS, PARAMS),
         TypeError, "schedule", "'fast'"),
    case("schedule-returns-none",
         lambda: optim.sgd(lambda c: None).update(optim.sgd(lambda c: None).init(PARAMS),
                                                  GRADS, PARAMS),
         TypeError, "schedule", "None"),
    case("schedule-returns-nan",
         lambda: optim.sgd(lambda c: float("nan")).update(
             optim.sgd(lambda c: float("nan")).init(PARAMS), GRADS, PARAMS),
         ValueError, "schedule", "nan"),
    case("schedule-returns-negative-lr",
         lambda: optim.sgd(lambda c: c - 0.5).update(
             optim.sgd(lambda c: c - 0.5).init(PARAMS), GRADS, PARAMS),
         ValueError, "schedule", "-0.5", "count 0", ">= 0.0"),
    case("schedule-returns-array",
         lambda: optim.sgd(lambda c: np.array([0.1, 0.2])).update(
             optim.sgd(lambda c: np.array([0.1, 0.2])).init(PARAMS), GRADS, PARAMS),
         TypeError, "schedule", "(2,)"),
    case("apply-updates-structure", lambda: optim.apply_updates(PARAMS, {"w": GRADS["w"]}),
         ValueError, "apply_updates", "['b', 'w']", "['w']"),
    case("apply-updates-leaf-shape",
         lambda: optim.apply_updates(PARAMS, {"w": F32(1), "b": GRADS["b"]}), ValueError,
         "apply_updates", "['w']", "(3, 2)", "()"),
    case("piecewise-schedule-negative-scale",
         lambda: optim.piecewise_constant_schedule(1.0, {10: -1.0}), ValueError,
         "piecewise_constant_schedule", "-1.0"),
    case("warmup-cosine-decay-shorter-than-warmup",
         lambda: optim.warmup_cosine_decay_schedule(0.0, 1.0, 10, 5), ValueError,
         "warmup_cosine_decay_schedule", "warmup_steps=10", "decay_steps=5"),
    case("linear-schedule-fractional-steps", lambda: optim.linear_schedule(0.0, 1.0, 2.5),
         ValueError, "linear_schedule", "transition_steps", "2.5"),
    case("linear-schedule-negative-begin",
         lambda: optim.linear_schedule(0.0, 1.0, 5, transition_begin=-1), ValueError,
         "linear_schedule", "transition_begin", "-1"),
    case("rmsprop-alpha-above-one", lambda: optim.rmsprop(0.1, alpha=1.5), ValueError,
         "rmsprop", "alpha", "[0, 1]", "1.5"),
    case("scale-by-rms-decay-above-one", lambda: optim.scale_by_rms(decay=1.01), ValueError,
         "scale_by_rms", "decay", "[0, 1]"),
    case("apply-updates-integer-param",
         lambda: optim.apply_updates({"n": np.ones(3, np.int64)}, {"n": np.full(3, 0.6)}),
         TypeError, "apply_updates", "params['n']", "int64", "astype"),
]


@pytest.mark.parametrize(("call", "exc", "match"), OPTIM_CASES)
def test_optimizers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- tree


def _unravel() -> Callable[[Any], Any]:
    return tree.ravel({"a": np.ones(3), "b": np.ones((2, 2))})[1]


TREE_CASES = [
    case("map-list-lengths", lambda: tree.map(np.add, {"a": 1, "b": [1, 2]}, {"a": 1, "b": [1]}),
         ValueError, "['b']", "list of length 2", "list of length 1"),
    case("map-dict-keys", lambda: tree.map(np.add, {"a": 1, "b": 2}, {"a": 1, "c": 2}),
         ValueError, "the root", "['a', 'b']", "['a', 'c']"),
    case("map-list-vs-tuple", lambda: tree.map(np.add, [1, 2], (1, 2)), ValueError,
         "list of length 2", "tuple of length 2"),
    case("map-leaf-vs-container",
         lambda: tree.map(np.add, {"a": np.ones(2)}, {"a": [np.ones(2)]}), ValueError,
         "['a']", "shape (2,)", "list of length 1"),
    case("unflatten-too-few-leaves",
         lambda: tree.unflatten(tree.structure({"a": 1, "b": (2, 3)}), [1, 2]), ValueError,
         "unflatten", "3 leaves", "got 2"),
    case("unflatten-too-many-leaves", lambda: tree.unflatten(tree.structure({"a": 1}), [1, 2]),
         ValueError, "unflatten", "1 leaves", "got 2"),
    case("unflatten-not-a-treedef", lambda: tree.unflatten({"a": 1}, [1]), TypeError,
         "unflatten", "TreeDef"),
    case("unravel-wrong-size", lambda: _unravel()(np.ones(6)), ValueError,
         "unravel", "(7,)", "(6,)"),
    case("unravel-2d-vector", lambda: _unravel()(np.ones((7, 1))), ValueError,
         "unravel", "(7,)", "(7, 1)"),
    case("check-same-shapes",
         lambda: tree.check_same({"a": np.ones(3)}, {"a": np.ones(4)}, shapes=True), ValueError,
         "['a']", "(3,)", "(4,)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), TREE_CASES)
def test_tree(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- data

X10 = np.ones((10, 2))

DATA_CASES = [
    case("batches-first-dims-differ", lambda: data.batches(KEY, X10, np.ones((9, 1)), batch_size=4),
         ValueError, "data.batches", "(10, 2)", "(9, 1)"),
    case("batches-batch-size-0", lambda: data.batches(KEY, X10, batch_size=0), ValueError,
         "data.batches", "batch_size", "0"),
    case("batches-batch-size-negative", lambda: data.batches(KEY, X10, batch_size=-1),
         ValueError, "data.batches", "batch_size", "-1"),
    case("batches-batch-size-float", lambda: data.batches(KEY, X10, batch_size=2.0), TypeError,
         "data.batches", "batch_size", "float"),
    case("batches-shuffle-without-key", lambda: data.batches(None, X10, batch_size=4),
         ValueError, "data.batches", "shuffle=True", "key"),
    case("batches-key-not-a-key", lambda: data.batches(5, X10, batch_size=4), TypeError,
         "data.batches", "key"),
    case("batches-rank-0-array", lambda: data.batches(KEY, F32(1), batch_size=4), ValueError,
         "data.batches", "argument 1 is 0-d", "axis 0"),
    case("batches-no-arrays", lambda: data.batches(KEY, batch_size=4), ValueError,
         "data.batches", "at least one array"),
    case("disk-negative-n", lambda: data.disk(KEY, -1), ValueError, "data.disk", "n", "-1"),
    case("disk-integer-dtype", lambda: data.disk(KEY, 5, dtype=np.int32), TypeError,
         "data.disk", "int32"),
    case("disk-without-key", lambda: data.disk(None, 5), TypeError, "data.disk",
         "expected a key"),
    case("batches-dict-of-arrays", lambda: list(data.batches(KEY, {"x": np.ones(3)},
                                                             batch_size=2)),
         TypeError, "data.batches", "argument 1 is a dict, not an array"),
]


@pytest.mark.parametrize(("call", "exc", "match"), DATA_CASES)
def test_data(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- random

RANDOM_CASES = [
    case("normal-int-key", lambda: random.normal(0, (2,)), TypeError, "random.normal", "int"),
    case("normal-int64-array-key", lambda: random.normal(np.array([1, 2]), (2,)), TypeError,
         "random.normal", "(2,)", "int64"),
    case("normal-key-shape-3", lambda: random.normal(np.zeros(3, np.uint64), (2,)), TypeError,
         "random.normal", "(3,)", "uint64"),
    case("normal-integer-dtype", lambda: random.normal(KEY, (2,), np.int32), TypeError,
         "random.normal", "int32"),
    case("normal-float16-dtype", lambda: random.normal(KEY, (2,), np.float16), TypeError,
         "random.normal", "float16"),
    case("normal-negative-shape", lambda: random.normal(KEY, (-1,)), ValueError,
         "random.normal", "-1"),
    case("uniform-integer-dtype", lambda: random.uniform(KEY, (2,), dtype=np.int32), TypeError,
         "random.uniform", "int32"),
    case("uniform-low-above-high", lambda: random.uniform(KEY, (3,), 1.0, 0.0), ValueError,
         "random.uniform", "1.0", "0.0"),
    case("key-seed-below-int64", lambda: random.key(-2**63 - 1), ValueError, "random.key",
         "-9223372036854775809"),
    case("key-float-seed", lambda: random.key(1.5), TypeError, "random.key", "float"),
    case("split-not-a-key", lambda: random.split(3), TypeError, "random.split", "int"),
    case("split-negative-num", lambda: random.split(KEY, -1), ValueError, "random.split", "-1"),
    case("split-fractional-num", lambda: random.split(KEY, 2.5), TypeError,
         "random.split", "2.5"),
    case("fold-in-not-a-key", lambda: random.fold_in([1, 2], 3), TypeError,
         "random.fold_in", "list"),
    case("fold-in-string-data", lambda: random.fold_in(KEY, "a"), TypeError,
         "random.fold_in", "'a'"),
    case("bernoulli-p-above-1", lambda: random.bernoulli(KEY, 1.5), ValueError,
         "random.bernoulli", "1.5"),
    case("permutation-negative-n", lambda: random.permutation(KEY, -1), ValueError,
         "random.permutation", "-1"),
    case("permutation-fractional-n", lambda: random.permutation(KEY, 2.5), TypeError,
         "random.permutation", "2.5"),
]


@pytest.mark.parametrize(("call", "exc", "match"), RANDOM_CASES)
def test_random(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("make", [lambda: optim.adam(lr=float("inf")),
                                  lambda: optim.sgd(0.1, momentum=float("inf")),
                                  lambda: optim.adam(eps=float("inf"))])
def test_optimizer_settings_must_be_finite(make):
    with pytest.raises(ValueError, match=r"must be a finite number .*, got inf"):
        make()


def test_optimizer_settings_take_numpy_numbers_but_not_numpy_bools():
    with pytest.raises(TypeError, match=r"sgd: lr .* must be a real number, got np.True_"):
        optim.sgd(np.True_)
    optim.sgd(np.float32(0.1))
    optim.sgd(np.array(0.1))
    optim.clip_by_global_norm(float("inf"))  # no clipping: allowed, as in torch


def test_zero_d_arrays_serve_as_numbers_where_a_number_is_asked():
    # a setting computed with NumPy comes as a 0-d array
    assert random.normal(KEY, np.array(3)).shape == (3,)
    assert optim.cosine_decay_schedule(0.1, np.array(10))(5) == pytest.approx(0.05)
    batch = next(data.batches(None, np.ones((4, 2)), batch_size=np.array(2), shuffle=False))
    assert batch[0].shape == (2, 2)


HUGE = 10**5000  # Python refuses to print an int of more than 4,300 digits


@pytest.mark.parametrize("call, where", [
    (lambda: fd.optim.linear_schedule(0.1, 0, -HUGE), "linear_schedule"),
    (lambda: fd.random.split(fd.random.key(0), -HUGE), "random.split"),
    (lambda: fd.random.split(fd.random.key(0), HUGE), "random.split"),
    (lambda: fd.random.permutation(fd.random.key(0), HUGE), "random.permutation"),
    (lambda: fd.random.normal(fd.random.key(0), (HUGE,)), "random.normal"),
    (lambda: fd.random.normal(fd.random.key(0), (2, -HUGE)), "random.normal"),
    (lambda: fd.random.fold_in(fd.random.key(0), HUGE), "random.fold_in"),
    (lambda: fd.optim.sgd(HUGE), "sgd"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_an_int_too_long_to_print_is_named_by_its_length(call, where):
    # each message printed the int, and Python's own ValueError ("Exceeds the limit (4300
    # digits) for integer string conversion") came out instead of funcdl's
    with pytest.raises(ValueError, match=rf"^{re.escape(where)}: .*an int of about 5001 digits"):
        call()
