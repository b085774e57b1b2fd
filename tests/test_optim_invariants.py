"""funcdl.optim: every optimizer minimises a quadratic and the Rosenbrock function; nothing
passed in is mutated; dtypes and state structures are kept, counts increment; inf and NaN
gradients give inf or NaN without warnings. The checks run over the catalogue of every
transform and alias are here too: swapped update arguments, grads of another structure and
integer params are refused. Bad hyperparameters and other wrong calls:
test_optim_invariants_errors.py."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim, tree

GT = optim.GradientTransformation


# ---------------------------------------------------------------------------- convergence

_TARGET = np.array([1.0, -2.0, 0.5])
_CURV = np.array([1.0, 3.0, 0.5])


def _quadratic_grad(p: Any) -> Any:
    return {"x": _CURV * (p["x"] - _TARGET)}


def _rosenbrock_grad(p: Any) -> Any:
    x, y = p["x"]
    return {"x": np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])}


# (name, optimizer, steps, tolerance): optax's _OPTIMIZERS_UNDER_TEST in miniature.
QUADRATIC = [
    ("sgd", optim.sgd(0.1), 500, 1e-8),
    ("sgd-momentum", optim.sgd(0.05, momentum=0.9), 500, 1e-8),
    ("sgd-nesterov", optim.sgd(0.05, momentum=0.9, nesterov=True), 500, 1e-8),
    ("adam", optim.adam(0.05), 500, 1e-5),
    ("adamw", optim.adamw(0.05, weight_decay=1e-4), 500, 1e-3),
    ("rmsprop", optim.rmsprop(3e-3), 2000, 2e-2),
    ("rmsprop-centered", optim.rmsprop(3e-3, centered=True), 2000, 1e-4),
    ("rmsprop-momentum", optim.rmsprop(1e-3, momentum=0.9), 2000, 1e-4),
    ("adagrad", optim.adagrad(0.5), 500, 1e-5),
    ("adagrad-decay", optim.adagrad(1.0, lr_decay=1e-3), 1000, 1e-5),
    ("adam-cosine", optim.adam(optim.cosine_decay_schedule(0.1, 800)), 800, 1e-5),
]


@pytest.mark.parametrize(("name", "opt", "steps", "tol"), QUADRATIC, ids=[q[0] for q in QUADRATIC])
def test_minimises_quadratic(name: str, opt: GT, steps: int, tol: float) -> None:
    params = {"x": np.array([3.0, 3.0, 3.0])}
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(state, _quadratic_grad(params), params)
        params = optim.apply_updates(params, updates)
    assert np.max(np.abs(params["x"] - _TARGET)) < tol, name


ROSENBROCK = [
    ("sgd-momentum", optim.sgd(1e-3, momentum=0.9), 5000, 1e-4),
    ("sgd-nesterov", optim.sgd(1e-3, momentum=0.9, nesterov=True), 5000, 1e-4),
    ("adam", optim.adam(1e-2), 5000, 1e-3),
]


@pytest.mark.parametrize(("name", "opt", "steps", "tol"), ROSENBROCK,
                         ids=[r[0] for r in ROSENBROCK])
def test_minimises_rosenbrock(name: str, opt: GT, steps: int, tol: float) -> None:
    params = {"x": np.array([-1.2, 1.0])}
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(state, _rosenbrock_grad(params), params)
        params = optim.apply_updates(params, updates)
    np.testing.assert_allclose(params["x"], [1.0, 1.0], atol=tol, err_msg=name)


# ---------------------------------------------------------------------------- invariants

ALIASES: list[tuple[str, Callable[[], GT]]] = [
    ("sgd", lambda: optim.sgd(0.1)),
    ("sgd-momentum-wd", lambda: optim.sgd(0.1, momentum=0.9, weight_decay=0.01)),
    ("sgd-nesterov", lambda: optim.sgd(0.1, momentum=0.9, nesterov=True)),
    ("sgd-schedule", lambda: optim.sgd(optim.linear_schedule(0.1, 0.0, 10))),
    ("adam", lambda: optim.adam(1e-2)),
    ("adam-wd", lambda: optim.adam(1e-2, weight_decay=0.1)),
    ("adamw", lambda: optim.adamw(1e-2)),
    ("rmsprop", lambda: optim.rmsprop()),
    ("rmsprop-all", lambda: optim.rmsprop(centered=True, momentum=0.9, weight_decay=0.1)),
    ("adagrad", lambda: optim.adagrad()),
    ("adagrad-all", lambda: optim.adagrad(lr_decay=0.1, weight_decay=0.1,
                                          initial_accumulator_value=0.5)),
    ("clip-adam", lambda: optim.chain(optim.clip_by_global_norm(0.5), optim.adam(1e-2))),
]
_ALIAS_IDS = [a[0] for a in ALIASES]


def _problem(dtype: Any) -> tuple[Any, list[Any]]:
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype),
              "s": np.asarray(0.5, dtype=dtype)}
    grads = [tree.map(lambda x: rng.normal(size=x.shape).astype(dtype), params)
             for _ in range(3)]
    return params, grads


@pytest.mark.parametrize(("name", "make"), ALIASES, ids=_ALIAS_IDS)
def test_nothing_passed_in_is_mutated(name: str, make: Callable[[], GT]) -> None:
    opt = make()
    params, grads_seq = _problem(np.float64)
    state = opt.init(params)
    for grads in grads_seq:
        before = copy.deepcopy((params, grads, state))
        updates, new_state = opt.update(state, grads, params)
        new_params = optim.apply_updates(params, updates)
        after = (params, grads, state)
        assert tree.structure(after) == tree.structure(before)
        for x, y in zip(tree.leaves(after), tree.leaves(before), strict=True):
            assert np.array_equal(x, y), name
        for x, y in zip(tree.leaves(new_params), tree.leaves(params), strict=True):
            assert x is not y
        params, state = new_params, new_state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "make"), ALIASES, ids=_ALIAS_IDS)
def test_dtype_is_kept(name: str, make: Callable[[], GT], dtype: Any) -> None:
    opt = make()
    params, grads_seq = _problem(dtype)
    state = opt.init(params)
    for grads in grads_seq:
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        for leaf in tree.leaves((updates, params)):
            assert leaf.dtype == dtype, name
        for leaf in tree.leaves(state):
            kind = np.asarray(leaf).dtype
            assert kind == dtype or kind == np.int64, (name, kind)


@pytest.mark.parametrize(("name", "make"), ALIASES, ids=_ALIAS_IDS)
def test_state_structure_is_kept_and_counts_increment(name: str, make: Callable[[], GT]) -> None:
    opt = make()
    params, grads_seq = _problem(np.float64)
    state = opt.init(params)
    structure = tree.structure(state)
    for step, grads in enumerate(grads_seq, start=1):
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        assert tree.structure(state) == structure, name
        counts = _counts(state)
        assert all(int(c) == step and np.asarray(c).dtype == np.int64 for c in counts), name
        # Every optimizer's own record has its step count, whatever its stages keep.
        assert type(state.count) is np.int64 and state.count == step, name
    assert opt.init(params).count == 0


def _counts(state: Any) -> list[Any]:
    """Every ``count`` field in a state, found by walking its NamedTuples."""
    found = []
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        if "count" in state._fields:
            found.append(state.count)
        for field in state:
            found += _counts(field)
    elif isinstance(state, (tuple, list)):
        for x in state:
            found += _counts(x)
    elif isinstance(state, dict):
        for x in state.values():
            found += _counts(x)
    return found


def test_counts_loaded_as_0d_arrays_still_work() -> None:
    # funcdl.io may give back counts as 0-d int64 arrays: the result must not change.
    opt = optim.adam(optim.linear_schedule(0.1, 0.01, 5))
    params, grads_seq = _problem(np.float32)
    _, state = opt.update(opt.init(params), grads_seq[0], params)

    def to_array(x: Any) -> Any:
        return np.asarray(x) if isinstance(x, np.integer) else x

    loaded = tree.map(to_array, state)
    assert isinstance(loaded.states["adam"].count, np.ndarray)
    u1, s1 = opt.update(state, grads_seq[1], params)
    u2, s2 = opt.update(loaded, grads_seq[1], params)
    for x, y in zip(tree.leaves((u1, s1)), tree.leaves((u2, s2)), strict=True):
        assert np.array_equal(x, y)
    assert int(s2.states["adam"].count) == 2 and u2["w"].dtype == np.float32


def test_apply_updates_keeps_param_dtype() -> None:
    params: dict[str, Any] = {"w": np.ones(3, np.float32), "c": np.ones(2, np.float64)}
    updates = {"w": np.full(3, 0.5, np.float64), "c": np.full(2, 0.5, np.float32)}
    out = optim.apply_updates(params, updates)
    assert out["w"].dtype == np.float32 and out["c"].dtype == np.float64
    np.testing.assert_array_equal(out["w"], [1.5, 1.5, 1.5])
    assert params["w"][0] == 1.0


# ---------------------------------------------------------------------------- errors

TRANSFORMS: list[tuple[str, Callable[[], GT]]] = [
    ("identity", optim.identity),
    ("scale", lambda: optim.scale(2.0)),
    ("scale_by_learning_rate", lambda: optim.scale_by_learning_rate(0.1)),
    ("scale_by_schedule", lambda: optim.scale_by_schedule(optim.constant_schedule(0.1))),
    ("add_decayed_weights", lambda: optim.add_decayed_weights(0.1)),
    ("trace", lambda: optim.trace(0.9)),
    ("scale_by_adam", optim.scale_by_adam),
    ("scale_by_rms", optim.scale_by_rms),
    ("scale_by_adagrad", optim.scale_by_adagrad),
    ("clip_by_global_norm", lambda: optim.clip_by_global_norm(1.0)),
    ("chain", lambda: optim.chain(optim.scale_by_adam(), optim.scale(-0.1))),
    ("named_chain", lambda: optim.named_chain(("a", optim.trace(0.9)))),
    ("sgd", lambda: optim.sgd(0.1)),
    ("adam", optim.adam),
    ("adamw", optim.adamw),
    ("rmsprop", optim.rmsprop),
    ("adagrad", optim.adagrad),
]


@pytest.mark.parametrize(("name", "make"), TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_swapped_update_arguments_raise_type_error(name: str, make: Callable[[], GT]) -> None:
    opt = make()
    params, grads_seq = _problem(np.float64)
    state = opt.init(params)
    with pytest.raises(TypeError, match=rf"^{name}\.update: the first argument must be the "
                                        r"optimizer state .*update\(state, grads, params\).*"
                                        r"got dict"):
        opt.update(grads_seq[0], state, params)


@pytest.mark.parametrize(("name", "make"), ALIASES, ids=_ALIAS_IDS)
def test_grads_with_another_structure_raise_naming_the_path(
        name: str, make: Callable[[], GT]) -> None:
    opt = make()
    params, grads_seq = _problem(np.float64)
    state = opt.init(params)
    nested = {**grads_seq[0], "b": (grads_seq[0]["b"],)}
    with pytest.raises(ValueError, match=r"\.update: .*mismatch at \['b'\].*grads"):
        opt.update(state, nested, params)
    wrong_shape = {**grads_seq[0], "w": np.ones((2, 3))}
    with pytest.raises(ValueError, match=r"\.update: shape mismatch at \['w'\]: grads has"):
        opt.update(state, wrong_shape, params)
    missing = {"w": grads_seq[0]["w"], "b": grads_seq[0]["b"]}
    with pytest.raises(ValueError, match=r"\.update: tree structure mismatch at the root"):
        opt.update(state, missing, params)


# ---------------------------------------------------------------------------- params dtypes

_NO_STATE = ("sgd", "sgd-schedule")  # plain sgd: no state in the params' dtype
STATEFUL: list[tuple[str, Callable[[], GT]]] = [
    ("trace", lambda: optim.trace(0.9)), ("scale_by_adam", optim.scale_by_adam),
    ("scale_by_rms", optim.scale_by_rms), ("scale_by_adagrad", optim.scale_by_adagrad)]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize(("name", "make"), ALIASES + STATEFUL,
                         ids=_ALIAS_IDS + [s[0] for s in STATEFUL])
def test_integer_and_bool_params_are_refused_at_init(name: str, make: Callable[[], GT],
                                                     dtype: Any) -> None:
    # apply_updates keeps each param's dtype: sgd(0.1) turned the int params [1, 2] into
    # [0, 1], and rmsprop into [-999999, -999998], silently.
    params = {"b": np.ones(2, np.float32), "w": np.array([1, 2]).astype(dtype)}
    with pytest.raises(TypeError, match=rf"^\w+\.init: params\['w'\] has dtype "
                                        rf"{np.dtype(dtype)}; optimizers work on floating"):
        make().init(params)
    with pytest.raises(TypeError, match=r"params\[1\] has dtype int64"):
        make().init([np.ones(2), 3])  # a Python int leaf too


@pytest.mark.parametrize(("name", "make"), ALIASES, ids=_ALIAS_IDS)
def test_float64_grads_on_float32_params_give_float32_steps_where_there_is_state(
        name: str, make: Callable[[], GT]) -> None:
    # Adam and momentum gave float32 updates, nesterov, rmsprop and adagrad float64 ones.
    params, grads_seq = _problem(np.float32)
    opt = make()
    state = opt.init(params)
    for grads in grads_seq:
        updates, state = opt.update(state, tree.map(lambda g: g.astype(np.float64), grads),
                                    params)
        # plain sgd keeps nothing in params' dtype: its update is -lr·g, g's dtype
        # (apply_updates still casts it to each param's dtype).
        want = np.float64 if name in _NO_STATE else np.float32
        assert all(np.asarray(u).dtype == want for u in tree.leaves(updates)), name
        params = optim.apply_updates(params, updates)
        assert all(p.dtype == np.float32 for p in tree.leaves(params))


# ---------------------------------------------------------------------------- inf and NaN

NONFINITE_CASES = [
    *ALIASES,
    ("sgd-lr-0", lambda: optim.sgd(0.0)),
    ("sgd-warmup-from-0", lambda: optim.sgd(optim.linear_schedule(0.0, 0.1, 5))),
    ("sgd-lr-above-1", lambda: optim.sgd(10.0)),
    ("adam-eps-0", lambda: optim.adam(eps=0.0)), ("rmsprop-eps-0", lambda: optim.rmsprop(eps=0.0)),
    ("adagrad-eps-0", lambda: optim.adagrad(eps=0.0))]


@pytest.mark.parametrize(("name", "make"), NONFINITE_CASES, ids=[c[0] for c in NONFINITE_CASES])
def test_inf_nan_and_huge_gradients_give_inf_or_nan_without_warnings(
        name: str, make: Callable[[], GT]) -> None:
    # As optax and torch: the bad entries come back inf or NaN, and NumPy does not warn
    # (a RuntimeWarning is an error here). adam/rmsprop/adagrad warned on an inf entry,
    # rmsprop/adagrad on 1e30 float32 (g² overflows), sgd at lr 0 (inf·0).
    params, grads_seq = _problem(np.float32)
    opt = make()
    state = opt.init(params)
    for bad in (np.inf, -np.inf, np.nan, 1e30, -3e38, 0.0):
        grads = {**grads_seq[0], "w": grads_seq[0]["w"].copy()}
        grads["w"][0, 0] = bad
        grads["w"][1] = 0.0
        updates, state = opt.update(state, grads, params)
        assert updates["w"].dtype == np.float32
        if not math.isfinite(bad):
            assert not np.isfinite(updates["w"][0, 0]), (name, bad)
