"""The rule "float32 stays float32, float64 stays float64" swept over the public API, one
test per name so a failure names the culprit (catalogues: _layer_cases.py for the layers,
_dtype_sweep_cases.py for the losses and every callable of funcdl.optim).

The rules checked, as DESIGN.md ("Numbers") and the modules' docs state them:
- layers: ``init`` gives float32 params and state; with params (and state) and x of one float
  dtype, the output, the new state, every grad and dx have it; integer ids (Embedding) give
  the params' dtype. Mixed: y in the promotion of x and the params, grads in the params'
  dtype, dx in x's, the state in its own.
- losses: the 'mean' and 'sum' values are Python floats, 'none' values and dpred have the
  pred's dtype whatever the target's, the weights' or the cotangent's dtype.
- optimizers: 3 updates on params and grads of one dtype give updates, new params and float
  state leaves of that dtype (counts are integers; nadam's ``mu_product`` is a documented
  float64 scalar), with the lr a Python float, np.float64, a 0-d float64 array or a schedule.
- tree.ravel / unravel and io.save / load give every leaf back in its dtype; value_and_grad,
  grad and the per-example grads keep the params' dtype, and dx the input's."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from _dtype_sweep_cases import (
    HELPERS,
    LOSSES,
    NON_CALLABLE,
    NOT_LOSSES,
    OTHER_DTYPE_STATE,
    SCHEDULED,
    SCHEDULES,
    TRANSFORMS,
    USERS_SCHEDULES,
    lr_factory,
)
from _layer_cases import CASES, KEY, Case

import funcdl as fd
from funcdl import io, tree
from funcdl import layers as L
from funcdl import losses as Lo
from funcdl import optim as O

F16, F32, F64 = np.float16, np.float32, np.float64
DTYPES = pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])


def floats(t: Any) -> list[np.ndarray]:
    """The float leaves of ``t`` (a Python float counts as the float64 NumPy makes it)."""
    return [np.asarray(a) for a in tree.leaves(t) if np.asarray(a).dtype.kind == "f"]


def cast(x: Any, dt: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(cast(e, dt) for e in x)
    return x.astype(dt) if x.dtype.kind == "f" else x


def cotangent(y: Any) -> Any:
    """Ones in y's dtype; None for a carried mask or lengths (no gradient)."""
    if isinstance(y, tuple):
        return tuple(cotangent(e) for e in y)
    return np.full(y.shape, 0.5, y.dtype) if y.dtype.kind == "f" else None


def shape_of(x: Any) -> Any:
    return tuple(shape_of(e) for e in x) if isinstance(x, tuple) else x.shape


def call_layer(c: Case, pdt: Any, xdt: Any) -> tuple[Any, ...]:
    """``(params, x, y, new_state, grads, dx, apply's y)``, params and state cast to
    ``pdt`` and the float inputs to ``xdt``."""
    made = c.layer.init(KEY, shape_of(c.x))
    assert all(a.dtype == F32 for a in floats(made[1:])), f"{c.id}: init is not float32"
    params = tree.astype(made[1], pdt) if floats(made[1]) else made[1]
    state = made[2] if c.layer.stateful else None
    state = tree.astype(state, pdt) if floats(state) else state
    st = {"state": state} if c.layer.stateful else {}
    x = cast(c.x, xdt)
    out = c.layer.vjp(params, x, **st, **c.kw)
    grads, dx = out[1](cotangent(out[0]))
    applied = c.layer.apply(params, x, **st, **c.kw)
    return params, x, out[0], out[2:], grads, dx, applied


LAYER_IDS = [c.id for c in CASES]


@DTYPES
@pytest.mark.parametrize("c", CASES, ids=LAYER_IDS)
def test_layer_keeps_one_dtype(c: Case, dt: Any) -> None:
    _, _, y, new_state, grads, dx, applied = call_layer(c, dt, dt)
    for what, t in (("y", y), ("new state", new_state), ("a grad", grads), ("dx", dx),
                    ("apply's y", applied)):
        for a in floats(t):
            assert a.dtype == dt, f"{c.id}: {what} is {a.dtype} for {np.dtype(dt)} in"


@pytest.mark.parametrize(("pdt", "xdt"), [(F32, F64), (F64, F32)],
                         ids=["float32-params-float64-x", "float64-params-float32-x"])
@pytest.mark.parametrize("c", [c for c in CASES if not c.own],
                         ids=[c.id for c in CASES if not c.own])
def test_layer_mixed_dtypes_follow_the_rule(c: Case, pdt: Any, xdt: Any) -> None:
    params, x, y, new_state, grads, dx, _ = call_layer(c, pdt, xdt)
    for g in floats(grads):
        assert g.dtype == pdt, f"{c.id}: a grad is {g.dtype}, its param {np.dtype(pdt)}"
    for s in floats(new_state):
        assert s.dtype == pdt, f"{c.id}: the new state is {s.dtype}, the old {np.dtype(pdt)}"
    for d, e in zip(tree.leaves(dx), tree.leaves(x)):
        if isinstance(d, np.ndarray) and e.dtype.kind == "f":
            assert d.dtype == e.dtype, f"{c.id}: dx is {d.dtype}, x {e.dtype}"
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        want = np.result_type(x, *floats(params))
        assert all(a.dtype == want for a in floats(y)), f"{c.id}: y is not {want}"


@pytest.mark.parametrize("ids", [np.int8, np.uint8, np.int32, np.int64])
@DTYPES
def test_integer_ids_give_the_tables_dtype(dt: Any, ids: Any) -> None:
    for layer in (L.Embedding(5, 3), L.Embedding(5, 3, padding_idx=0),
                  L.Sequential(L.Embedding(5, 3), L.LSTM(2), L.Dense(2))):
        _, params = layer.init(KEY, (2, 4))
        params = tree.astype(params, dt)
        y, pullback = layer.vjp(params, (np.arange(8) % 5).reshape(2, 4).astype(ids))
        grads, dx = pullback(np.ones_like(y))
        assert y.dtype == dt and dx is None, layer.name
        assert all(g.dtype == dt for g in floats(grads)), layer.name


# ---------------------------------------------------------------------------- losses

def test_every_loss_is_swept() -> None:
    assert {loss.name for loss, *_ in LOSSES.values()} == set(Lo.__all__) - NOT_LOSSES


def _targets(target: Any, dt: Any) -> list[Any]:
    """The target in the pred's dtype, in the other float dtypes (float16 too), or integer
    labels in narrower ints."""
    if target is None:
        return [None]
    if target.dtype.kind == "f":
        return [target.astype(t) for t in (dt, F64 if dt == F32 else F32, F16)]
    return [target, target.astype(np.int32), target.astype(np.int8)]


@DTYPES
@pytest.mark.parametrize("lid", LOSSES)
def test_loss_value_and_dpred_keep_the_preds_dtype(lid: str, dt: Any) -> None:
    loss, pred, target, options = LOSSES[lid]
    p = cast(pred, dt)
    reductions = ["mean", "sum", "none"] + (["batchmean"] if lid.startswith("kl_div") else [])
    for t in _targets(target, dt):
        tdt = t.dtype if t is not None and t.dtype.kind == "f" else F64
        kw = {k: (v.astype(tdt) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
              for k, v in options.items()}  # float64 weights with float32 preds, and so on
        for red in reductions:
            value, pullback = loss.vjp(p, t, reduction=red, **kw)
            where = f"{lid} {np.dtype(dt)} pred, {getattr(t, 'dtype', None)} target, {red}"
            if red == "none":
                assert value.dtype == dt, where
                dys: list[Any] = [np.ones(value.shape, F64), np.ones(value.shape, F16), None]
            else:
                assert type(value) is float, f"{where}: a {type(value).__name__}, not a float"
                dys = [2.0, np.float64(2.0), np.asarray(2.0), np.float16(2.0), None]
            assert type(loss(p, t, reduction=red, **kw)) is type(value), where
            for dy in dys:
                d = pullback() if dy is None else pullback(dy)
                for a in (d if isinstance(d, tuple) else (d,)):
                    assert a.dtype == dt, f"{where}: dpred {a.dtype} for a {type(dy)} cotangent"


# ---------------------------------------------------------------------------- optimizers

def test_every_optimizer_name_is_swept() -> None:
    for name in NON_CALLABLE:  # types only: states, records, typing aliases
        obj = getattr(O, name)
        assert inspect.isclass(obj) or not inspect.isfunction(obj), name
    covered = ({oid.split("-")[0] for oid in TRANSFORMS} | set(SCHEDULES) | set(HELPERS))
    assert covered == set(O.__all__) - set(NON_CALLABLE), \
        set(O.__all__) - set(NON_CALLABLE) ^ covered
    assert len(covered) == len(O.__all__) - len(NON_CALLABLE)


def _problem(oid: str, dt: Any) -> tuple[Any, list[Any]]:
    """Params of ``dt`` and 3 grads like them (a leading axis of 3 examples for the
    per-example transforms)."""
    rng = np.random.default_rng(3)
    shapes = {"w": (3, 2), "v": (2, 4)} if oid.endswith("-matrices") else {"w": (3, 2), "b": (2,)}
    params = {k: rng.normal(size=s).astype(dt) for k, s in shapes.items()}
    lead = (3,) if oid.endswith("-per-example") else ()
    grads = [{k: rng.normal(size=lead + s).astype(dt) for k, s in shapes.items()}
             for _ in range(3)]
    if oid.endswith("-lookahead"):
        return O.LookaheadParams.init_synced(params), grads
    return params, grads


def _state_floats(state: Any) -> list[tuple[str, np.ndarray]]:
    return [(path, np.asarray(x)) for path, x in tree.leaves_with_path(state)
            if np.asarray(x).dtype.kind == "f" and not any(n in path for n in OTHER_DTYPE_STATE)]


def run_optimizer(oid: str, make: Any, dt: Any) -> None:
    opt = make()
    params, grads = _problem(oid, dt)
    state = opt.init(params)
    for path, x in _state_floats(state):
        assert x.dtype == dt, f"{oid}: init's state{path} is {x.dtype}"
    for step, g in enumerate(grads):
        updates, state = opt.update(state, g, params)
        params = O.apply_updates(params, updates)
        for what, t in (("an update", updates), ("a new param", params)):
            for a in floats(t):
                assert a.dtype == dt, f"{oid}, step {step}: {what} is {a.dtype}"
        for path, x in _state_floats(state):
            assert x.dtype == dt, f"{oid}, step {step}: state{path} is {x.dtype}"


@DTYPES
@pytest.mark.parametrize("oid", TRANSFORMS)
def test_optimizer_keeps_the_params_dtype(oid: str, dt: Any) -> None:
    run_optimizer(oid, TRANSFORMS[oid], dt)


LRS = {"float64-scalar": np.float64(1e-3), "0d-float64": np.asarray(1e-3)}
LR_CASES = [pytest.param(make, id=f"{name}-{lid}") for name in O.__all__
            if name not in NON_CALLABLE and name not in HELPERS and name not in SCHEDULES
            for lid, lr in LRS.items() if (make := lr_factory(name, lr)) is not None]


@DTYPES
@pytest.mark.parametrize("make", LR_CASES)
def test_numpy_learning_rate_keeps_the_params_dtype(make: Any, dt: Any) -> None:
    run_optimizer("lr", make, dt)


def test_funcdl_schedules_give_python_floats() -> None:
    for name, schedule in SCHEDULES.items():
        assert all(type(schedule(c)) is float for c in range(8)), name


@DTYPES
@pytest.mark.parametrize("alias", SCHEDULED)
@pytest.mark.parametrize("sid", [*SCHEDULES, *USERS_SCHEDULES])
def test_scheduled_optimizer_keeps_the_params_dtype(sid: str, alias: str, dt: Any) -> None:
    schedule = {**SCHEDULES, **USERS_SCHEDULES}[sid]
    run_optimizer(f"{alias}({sid})", lambda: SCHEDULED[alias](schedule), dt)


def _helper(name: str, dt: Any) -> list[Any]:
    """What helper ``name`` returns on trees of ``dt`` that must be of ``dt`` (the other
    float dtype as updates, step sizes as np.float64)."""
    other = F64 if dt == F32 else F32
    p = {"w": np.ones((3, 2), dt), "b": np.full(2, 0.5, dt), "s": np.asarray(0.5, dt)}
    per_example = tree.map(lambda x: np.stack([x, -2 * x]), p)
    if name == "apply_updates":
        return [O.apply_updates(p, tree.astype(p, other)),
                O.apply_updates(p, {"w": np.full((3, 2), 0.5), "b": np.full(2, 0.5),
                                    "s": np.float64(0.5)})]
    if name == "incremental_update":  # the old tensors' dtype, as documented
        return [O.incremental_update(tree.astype(p, other), p, np.float64(0.1))]
    if name == "periodic_update":
        return [O.periodic_update(p, p, np.int64(2), 2)]
    if name == "newton_schulz":
        return [O.newton_schulz(p["w"])]
    if name == "per_example_global_norm_clip":
        return [O.per_example_global_norm_clip(per_example, np.float64(1.0))[0]]
    if name == "per_example_layer_norm_clip":
        return [O.per_example_layer_norm_clip(per_example, np.float64(1.0))[0]]
    if name == "schedule_free_eval_params":
        opt = O.schedule_free_sgd(0.1)
        updates, state = opt.update(opt.init(p), p, p)
        return [O.schedule_free_eval_params(state, O.apply_updates(p, updates))]
    # the rest return a number or a flag, not arrays of the params
    opt = O.multi_steps(O.adam(), 2)
    assert type(O.has_updated(opt.update(opt.init(p), p, p)[1])) is bool
    assert type(O.global_norm(p)) is float
    assert O.skip_large_updates(p, np.int64(0), p, 1.0)[0].dtype == np.bool_
    assert O.skip_not_finite(p, 0, p)[0].dtype == np.bool_
    return []


@DTYPES
@pytest.mark.parametrize("name", HELPERS)
def test_optimizer_helper_keeps_the_dtype(name: str, dt: Any) -> None:
    for a in floats(_helper(name, dt)):
        assert a.dtype == dt, f"{name}: gave {a.dtype} for {np.dtype(dt)}"


# ---------------------------------------------------------------------------- tree and io

MIXED = {"f16": np.full((2, 1), 1.5, F16), "f32": np.arange(3, dtype=F32),
         "f64": np.asarray(2.5, F64), "i32": np.array([1, -2], np.int32),
         "b": np.array([True, False]), "i8": np.asarray(-3, np.int8),
         "u8": np.array([200], np.uint8), "pair": (np.int64(7), np.float32(0.25))}


@pytest.mark.parametrize("keys", [["f32"], ["f32", "f16"], ["f32", "b"], ["f32", "i8"],
                                  ["f32", "u8"], ["f16", "b"], ["f32", "i32"], ["f32", "f64"],
                                  list(MIXED)], ids="+".join)
def test_ravel_unravel_round_trip_keeps_every_dtype(keys: list[str]) -> None:
    t = {k: MIXED[k] for k in keys}
    vector, unravel = tree.ravel(t)
    # NumPy's promotion, as documented: float32 with bools or int8s stays float32
    assert vector.dtype == np.result_type(*[np.asarray(a) for a in tree.leaves(t)])
    for v in (vector, vector.astype(F64), vector.astype(F32)):
        back = unravel(v)
        for a, b in zip(tree.leaves(t), tree.leaves(back), strict=True):
            assert np.asarray(b).dtype == np.asarray(a).dtype and np.shape(b) == np.shape(a)
            np.testing.assert_array_equal(b, a)


def test_io_round_trip_keeps_every_dtype(tmp_path: Any) -> None:
    path = tmp_path / "tree.npz"
    io.save(path, MIXED)
    for got in (io.load(path), io.load(path, like=MIXED)):
        for a, b in zip(tree.leaves(MIXED), tree.leaves(got), strict=True):
            assert np.asarray(b).dtype == np.asarray(a).dtype and np.shape(b) == np.shape(a)
            np.testing.assert_array_equal(b, a)


# ---------------------------------------------------------------------------- autodiff

MODELS = {
    "mlp": (L.Sequential(L.Dense(4), L.ReLU(), L.Dense(3)), (4, 5)),
    "conv": (L.Sequential(L.Conv2D(2, 3), L.GroupNorm(1), L.Flatten(), L.Dense(3)), (4, 4, 4, 1)),
    "recurrent": (L.Sequential(L.GRU(3), L.LSTM(3, return_sequences=False), L.Dense(3)),
                  (4, 5, 2)),
    "attention": (L.Sequential(L.TransformerEncoderLayer(4, 2, 6, dropout=0.0), L.Flatten(),
                               L.Dense(3)), (4, 3, 4)),
    "batchnorm": (L.Sequential(L.Dense(3), L.BatchNorm()), (4, 3)),
}


@pytest.mark.parametrize(("pdt", "xdt"), [(F32, F32), (F64, F64), (F32, F64), (F64, F32)],
                         ids=["float32", "float64", "float32-params", "float64-params"])
@pytest.mark.parametrize("mid", MODELS)
def test_gradients_keep_the_params_dtype_and_dx_the_inputs(mid: str, pdt: Any,
                                                            xdt: Any) -> None:
    model, shape = MODELS[mid]
    made = model.init(KEY, shape)
    params = tree.astype(made[1], pdt)
    x = np.random.default_rng(0).normal(size=shape).astype(xdt)
    labels = np.array([0, 2, 1, 2], np.int32)
    loss = Lo.mse if mid == "batchnorm" else Lo.softmax_cross_entropy
    target = np.ones((4, 3)) if mid == "batchnorm" else labels  # a float64 target
    kw = {"state": tree.astype(made[2], pdt), "train": False} if model.stateful else {}
    value, (grads, dx) = fd.value_and_grad(model, loss, wrt_input=True)(params, x, target, **kw)
    pe_value, pe_grads = fd.per_example_value_and_grad(model, loss)(params, x, target, **kw)
    if model.stateful:
        (value, new_state), (pe_value, _) = value, pe_value
        assert all(s.dtype == pdt for s in floats(new_state)), mid
    assert type(value) is float and type(pe_value) is float, mid
    assert dx.dtype == xdt, mid
    for t in (grads, pe_grads, fd.grad(model, loss)(params, x, target, **kw),
              fd.per_example_grad(model, loss)(params, x, target, **kw)):
        assert all(g.dtype == pdt for g in floats(t)), mid
