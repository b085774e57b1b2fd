"""Fuzz of the error contract for funcdl.testing, funcdl.sweep and funcdl.parallel (in one
process, no mpiexec); ``outcome`` is test_fuzz_io.py's.

The checkers: misuse (bad params, x, in_shape, key, state, tolerances; what is no layer or
no loss) is a ValueError or TypeError naming the checker or the layer; AssertionError is
kept for a layer or loss that fails its check (a gradient that disagrees, a vjp that
returns the wrong form), as check_layer's own tests have it. Sweeps run on a thread pool but
for one default process pool; parallel's communicators are stubs (and MPI.COMM_NULL).
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from test_fuzz_api import NUMPY_PHRASES
from test_fuzz_io import outcome

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, parallel, random, sweep, testing

K = random.key(0)
X = random.normal(K, (2, 4))
DENSE, BN = L.Dense(3), L.BatchNorm()
DP = DENSE.init(K, (None, 4))[1]
_, BP, BS = BN.init(K, (None, 4))
PASS, OK = "pass", "ok"  # must pass (the valid input's equivalent); may pass (see below)
# NaN or inf in an input is no misuse (a -inf mask before a Softmax checks fine): the check
# passes, or fails as an AssertionError that points at the non-finite entry
NONFINITE = "nonfinite"


def _id(v: Any, n: int) -> str:
    try:  # without addresses, which differ from run to run
        return re.sub(r" (object )?at 0x[0-9a-f]+", "", repr(v))[:n]
    except RuntimeError:  # BadRepr's
        return "bad-repr"


def _check(call: Any, names: Any, ok: Any) -> None:
    """A checker's misuse named, never an AssertionError; or, ``ok``, the check passes."""
    if ok == NONFINITE:  # passes, fails pointing at the entry, or the layer or loss
        try:  # itself refuses it (integer labels that are NaN); NumPy's word on inf·0 in
            with warnings.catch_warnings():  # the layer's own product is the layer's
                warnings.simplefilter("ignore", RuntimeWarning)
                call()
        except AssertionError as e:
            assert str(e).startswith("check_") and "non-finite value" in str(e), str(e)
        except (ValueError, TypeError) as e:
            assert names[1] in str(e), str(e)
        return
    outcome(call, (names,), errors=() if ok == PASS else (ValueError, TypeError),
            same=ok and _passed)


def _passed(got: Any) -> None:
    assert got is None


def _perturb_array(a: Any) -> list[tuple[str, Any, Any]]:
    """(id, bad array, PASS for an equivalent of ``a``, OK for a shape the layer or loss
    may take or refuse, as Dense takes (..., 4); else None)."""
    a = np.asarray(a)
    return [("rank+1", a[None], OK), ("last+1", np.concatenate([a, a[..., :1]], -1), OK),
            ("none", None, None), ("str", a.astype(str), None),
            ("complex", a.astype(np.complex64), None), ("object", a.astype(object), None),
            ("nan", np.where(a == a.flat[0], np.nan, a), NONFINITE),
            ("inf", np.where(a == a.flat[0], np.inf, a), NONFINITE), ("list", a.tolist(), PASS)]


SETTINGS = [("rtol", v) for v in (-1.0, math.nan, math.inf, "1e-3", None, True)] + \
    [("atol", v) for v in (-1e-8, math.nan, "0")] + \
    [("eps", v) for v in (0.0, -1e-6, math.inf, math.nan, "1e-6")] + \
    [("seed", v) for v in (-1, 1.5, "s", None)] + [("directions", v) for v in (0, 1.5, True)]


def _vjp_cases() -> list[Any]:
    setups = {"dense": (DENSE, DP, X, {}), "batchnorm": (BN, BP, X, {"state": BS, "train": True}),
              "dropout": (L.Dropout(0.5), (), X, {"key": K, "train": True}),
              "fan-in-sum": (L.FanInSum(), (), (X, X), {})}
    out = []
    for sid, (layer, p, x, kw) in setups.items():
        names = ("check_vjp", layer.name)
        cases: list[tuple[str, Any, Any, dict[str, Any], Any]] = []
        for pid, bad, ok in _perturb_array(x[0] if isinstance(x, tuple) else x):
            cases.append((f"x-{pid}", p, (bad, x[1]) if isinstance(x, tuple) else bad, kw, ok))
        if isinstance(p, dict):
            first = sorted(p)[0]
            for pid, bad in [("missing", {k: v for k, v in p.items() if k != first}),
                             ("extra", {**p, "z": p[first]}), ("list", list(p.values())),
                             ("empty", ()), ("none", None),
                             ("int", {k: v.astype(int) for k, v in p.items()}),
                             ("nan", {**p, first: p[first] * np.nan})]:
                cases.append((f"params-{pid}", bad, x, kw, NONFINITE if pid == "nan" else None))
        cases += [(f"{k}={v!r}", p, x, {**kw, k: v}, None) for k, v in SETTINGS]
        cases += [(f"train={v!r}", p, x, {**kw, "train": v}, None) for v in ("yes", None, 1)]
        cases += [("unknown-kw", p, x, {**kw, "foo": 1}, None)]
        if layer.stateful:
            cases += [("no-state", p, x, {"train": True}, None),
                      ("state-list", p, x, {**kw, "state": list(BS.values())}, None)]
        else:
            cases += [("state-for-stateless", p, x, {**kw, "state": BS}, None)]
        if "key" in kw:
            cases += [(f"key={v!r}", p, x, {**kw, "key": v}, None)
                      for v in (3, "k", np.zeros(3, np.uint64), None)]
        out += [pytest.param(layer, pp, xx, kk, names, ok, id=f"{sid}-{cid}")
                for cid, pp, xx, kk, ok in cases]
    return out


@pytest.mark.parametrize("layer, params, x, kw, names, ok", _vjp_cases())
def test_check_vjp_misuse_is_named_never_an_assertion(layer, params, x, kw, names, ok):
    _check(lambda: testing.check_vjp(layer, params, x, **kw), names, ok)


S = (None, 4)


@pytest.mark.parametrize("in_shape, kw, ok", [
    ([None, 4], {}, PASS), (4, {}, None), (None, {}, None), ("4", {}, None), ((None, -4), {}, None),
    ((None, 0), {}, None), ((None, 4.0), {}, None), ((None, True), {}, None), ((4,), {}, None),
    ((), {}, None), ((None, np.int64(4)), {}, PASS), (np.array([2, 4]), {}, None),
    (S, {"batch": 0}, None), (S, {"batch": -1}, None), (S, {"batch": 2.5}, None),
    (S, {"batch": True}, None), (S, {"batch": "3"}, None), (S, {"batch": None}, None),
    (S, {"key": 3}, None), (S, {"key": "k"}, None), (S, {"key": np.zeros(3, np.uint64)}, None),
    (S, {"key": np.zeros(2)}, None), (S, {"train": "no"}, None),
    (S, {"x": np.ones((2, 5), np.float32)}, None), (S, {"x": np.ones((2, 4)).tolist()}, PASS),
    (S, {"x": np.float32(1)}, None), (S, {"x": "abc"}, None), (S, {"rtol": -1.0}, None),
    (S, {"x": np.full((2, 4), np.nan, np.float32)}, NONFINITE), (S, {"atol": "x"}, None),
    (S, {"eps": 1e-3}, None),
], ids=lambda v: _id(v, 40))
def test_check_layer_misuse_is_named_never_an_assertion(in_shape, kw, ok):
    _check(lambda: testing.check_layer(DENSE, in_shape, **kw), ("check_layer", "Dense(3)"), ok)


@pytest.mark.parametrize("layer", [L.FanInSum(), L.FanInConcat(), L.Parallel(L.Dense(2),
                                                                             L.Identity()),
                                   L.Shared(L.Dense(2))],
                         ids=["fan-in-sum", "fan-in-concat", "parallel", "shared"])
def test_check_layer_of_a_list_input_checks_a_list_dx(layer):
    # a list is a pytree container: the merges return dx as a list for it, as JAX's vjp
    x = [np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32)]
    assert testing.check_layer(layer, ((None, 4), (None, 4)), x=x) is None
    _, params = layer.init(K, ((None, 4), (None, 4)))
    dx = layer.vjp(params, x)[1](layer.apply(params, x))[1]
    assert type(dx) is list and len(dx) == 2


Z = random.normal(K, (4, 3))
Y = np.zeros((4, 3), np.float32)
LOSSES = {"mse": (losses.mse, Z, Y, {}), "huber": (losses.huber, Z, Y, {"delta": 0.5}),
          "sce": (losses.softmax_cross_entropy, Z, np.array([0, 1, 2, 0]), {})}


def _loss_cases() -> list[Any]:
    out = []
    for sid, (loss, pred, target, kw) in LOSSES.items():
        names = ("check_loss", loss.name)
        for pid, bad, ok in _perturb_array(pred):
            out.append(pytest.param(loss, bad, target, kw, names, ok, id=f"{sid}-pred-{pid}"))
        for pid, bad, ok in _perturb_array(target):
            out.append(pytest.param(loss, pred, bad, kw, names, ok, id=f"{sid}-target-{pid}"))
        out += [pytest.param(loss, pred, target, {**kw, k: v}, names, None, id=f"{sid}-{k}={v!r}")
                for k, v in [*SETTINGS[:-3], ("reduction", "avg"), ("foo", 1), ("key", K)]]
    return out


@pytest.mark.parametrize("loss, pred, target, kw, names, ok", _loss_cases())
def test_check_loss_misuse_is_named_never_an_assertion(loss, pred, target, kw, names, ok):
    _check(lambda: testing.check_loss(loss, pred, target, **kw), names, ok)


class VjpOnly:
    def vjp(self, pred: Any, target: Any) -> Any:
        return 0.0, lambda g: pred


@pytest.mark.parametrize("loss", ["mse", None, DENSE, lambda p, t: 0.0, fd.optim.adam(),
                                  losses.Loss, VjpOnly(), np.mean],
                         ids=["str", "none", "layer", "function", "optimizer", "class",
                              "vjp-only", "numpy"])
def test_what_is_no_loss_is_refused_by_check_loss(loss):
    outcome(lambda: testing.check_loss(loss, Z, Y), ("check_loss",), errors=(TypeError,))


def _loss(vjp: Any) -> losses.Loss:
    return losses.Loss("custom", vjp)


ONES = np.ones_like(Z)


@pytest.mark.parametrize("vjp", [
    lambda p, t: 1.0, lambda p, t: (1.0,), lambda p, t: None, lambda p, t: ("a", lambda g: p),
    lambda p, t: (None, lambda g: p), lambda p, t: (np.ones(3), lambda g: ONES),
    lambda p, t: (float(np.sum(p)), 3), lambda p, t: (float(np.sum(p)), lambda g: None),
    lambda p, t: (float(np.sum(p)), lambda g: (ONES, None)),
    lambda p, t: (float(np.sum(p)), lambda g: 2 * g * np.ones_like(p)),
], ids=["scalar", "1-tuple", "none", "str-value", "none-value", "array-value",
        "no-pullback", "pullback-none", "pullback-tuple", "twice-the-gradient"])
def test_a_loss_that_fails_its_check_is_an_assertion_naming_it(vjp):
    with pytest.raises(AssertionError, match=r"^check_loss\(custom\): ") as info:
        testing.check_loss(_loss(vjp), Z, Y)
    assert not [p for p in NUMPY_PHRASES if p in str(info.value)], str(info.value)


def test_check_loss_checks_a_loss_with_aux_on_its_value():
    for vjp in (lambda p, t: ((np.sum(p), {"n": 1}), lambda g: g * np.ones_like(p)),
                lambda p, t: (np.sum(p), lambda g: g * np.ones_like(p), {"n": 1})):
        assert testing.check_loss(_loss(vjp), Z, Y) is None


# ---------------------------------------------------------------------------- sweep

POOL = ThreadPoolExecutor(2)
CLOSED = ThreadPoolExecutor(1)
CLOSED.shutdown()


class NoSubmit(Executor):
    pass


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        return "bad-repr"


def _sweep(**kw: Any) -> Any:
    args = {"train_fn": str, "configs": [1, 2], "executor": POOL, "progress": False, **kw}
    return lambda: sweep.run(**args)


@pytest.mark.parametrize("kw, same", [
    ({"train_fn": None}, None), ({"train_fn": 3}, None), ({"train_fn": "str"}, None),
    ({"configs": 3}, None), ({"configs": None}, None), ({"configs": {"lr": 1}}, None),
    ({"configs": "ab"}, None), ({"configs": b"ab"}, None), ({"configs": bytearray(b"ab")}, None),
    ({"configs": memoryview(b"ab")}, None), ({"configs": np.array(1)}, None),
    ({"configs": (c for c in [1, 2])}, ["1", "2"]), ({"configs": iter([1, 2])}, ["1", "2"]),
    ({"configs": (1, 2)}, ["1", "2"]), ({"configs": range(1, 3)}, ["1", "2"]),
    ({"configs": np.arange(1, 3)}, ["1", "2"]), ({"configs": {"a": 1}.keys()}, ["a"]),
    ({"configs": iter([])}, []), ({"executor": "local"}, None),
    ({"executor": ThreadPoolExecutor}, None), ({"executor": True}, None),
    ({"executor": CLOSED}, None), ({"executor": NoSubmit()}, None),
    ({"strict": 1}, None), ({"strict": "no"}, None), ({"progress": None}, None),
    ({"progress": 0.0}, None), ({"strict": np.True_}, ["1", "2"]),
    ({"configs": [BadRepr()], "progress": True}, ["bad-repr"]),
], ids=lambda v: _id(v, 50))
def test_sweep_run_misuse_is_named(kw, same):
    outcome(_sweep(**kw), ("sweep.run",), same=same, errors=(TypeError, ValueError)
            if same is None else ())


def keeps_what_pickles(config: Any) -> Any:  # at module level: spawned workers import it
    return threading.Lock() if config == "lock" else config


def test_a_process_pool_fails_in_place_the_runs_whose_config_or_result_cannot_travel():
    results = sweep.run(keeps_what_pickles, ["a", "lock", threading.Lock(), "b"],
                        progress=False)  # the default pool, spawned: once in this file
    assert results[0] == "a" and results[3] == "b"
    assert [type(r) for r in results[1:3]] == [sweep.Failure] * 2
    assert all("pickle" in r.error for r in results[1:3]), results


# ---------------------------------------------------------------------------- parallel

class Stub:
    def __init__(self, size: Any) -> None:
        self.size = size

    def Get_size(self) -> Any:
        if isinstance(self.size, Exception):
            raise self.size
        return self.size

    def Get_rank(self) -> int:
        return 0


T = {"w": np.ones(3, np.float32), "b": [np.zeros(2, np.float32)]}
VG = fd.value_and_grad(L.Sequential(L.Dense(1)), losses.mse)
MP = L.Sequential(L.Dense(1)).init(K, (None, 4))[1]
TY = np.zeros((2, 1), np.float32)
CALLS = {"rank_and_size": lambda c: parallel.rank_and_size(c),
         "pmean": lambda c: parallel.pmean(T, c), "broadcast": lambda c: parallel.broadcast(T, c),
         "data_parallel": lambda c: parallel.data_parallel(VG, c)(MP, X, TY),
         "sync_batch_stats": lambda c: parallel.sync_batch_stats(VG, c)(MP, X, TY),
         "sharded": lambda c: parallel.sharded(fd.optim.sgd(0.1), c).init(T)}
COMMS = {"size-0": Stub(0), "size--1": Stub(-1), "size-str": Stub("1"), "size-float": Stub(1.0),
         "size-true": Stub(True), "size-none": Stub(None), "size-nan": Stub(math.nan),
         "size-array": Stub(np.array([1])), "raises": Stub(RuntimeError("freed")),
         "class": Stub, "str": "COMM_WORLD", "int": 0, "size-2-no-methods": Stub(2)}


@pytest.mark.parametrize("fn", list(CALLS))
@pytest.mark.parametrize("comm", list(COMMS.values()), ids=list(COMMS))
def test_a_bad_communicator_is_named(fn, comm):
    outcome(lambda: CALLS[fn](comm), (f"parallel.{fn}",))


@pytest.mark.parametrize("fn", list(CALLS))
def test_a_null_communicator_is_named(fn):
    mpi = pytest.importorskip("mpi4py.MPI")
    outcome(lambda: CALLS[fn](mpi.COMM_NULL), (f"parallel.{fn}",))


@pytest.mark.parametrize("comm", [None, Stub(1), Stub(np.int64(1))], ids=["world", "1", "np-1"])
def test_one_rank_is_the_identity(comm):
    assert parallel.pmean(T, comm) is T and parallel.broadcast(T, comm) is T
    assert parallel.rank_and_size(comm) == (0, 1)


@pytest.mark.parametrize("leaf, pmean_ok, broadcast_ok", [
    (3, False, True), ("x", False, True), (object(), False, False), (lambda: 0, False, False),
    ({1}, False, False), (b"x", False, True), (np.array([1, None], object), False, False),
    (np.array([True]), False, True), (np.array(["2020"], "M8[Y]"), False, True),
    (np.ones(2, np.complex64), True, True), (np.ones(2, np.float16), True, True),
    (np.array([np.nan]), True, True), (np.zeros((0, 3), np.float32), True, True),
], ids=lambda v: _id(v, 30))
def test_trees_pmean_and_broadcast_refuse_or_return(leaf, pmean_ok, broadcast_ok):
    t = {"w": np.ones(2, np.float32), "x": leaf}
    outcome(lambda: parallel.pmean(t), ("parallel.pmean", "['x']"), same=pmean_ok and t)
    outcome(lambda: parallel.broadcast(t), ("parallel.broadcast", "['x']"),
            same=broadcast_ok and t)


def test_accepted_unsortable_dict_keys_are_named_by_funcdl_tree():
    # Accepted: as by every funcdl function that walks a tree (test_fuzz_api_optim.py)
    for call in (parallel.pmean, parallel.broadcast, parallel.sharded(fd.optim.sgd(0.1)).init):
        outcome(lambda call=call: call({1: np.ones(1), "a": np.ones(1)}), ("funcdl.tree",))


@pytest.mark.parametrize("root", [-1, 1, np.array(0), 2**70, 0.0, math.nan, True, "0", None, [0]],
                         ids=repr)
def test_a_bad_root_is_named(root):
    outcome(lambda: parallel.broadcast(T, root=root), ("parallel.broadcast", "root"))


@pytest.mark.parametrize("kw", [{"rank": -1}, {"rank": 0.5}, {"rank": True}, {"rank": None},
                                {"rank": 2}, {"size": 2.0}, {"size": "2"}, {"size": 0},
                                {"size": 2**70}, {"batch_size": 0}, {"batch_size": 4.0},
                                {"drop_last": "no"}, {"shuffle": None}], ids=repr)
def test_batches_misuse_is_named(kw):
    args = {"batch_size": 4, "rank": 0, "size": 2, **kw}
    outcome(lambda: list(parallel.batches(K, np.zeros((10, 2)), **args)), ("parallel.batches",))


G = VG(MP, X, TY)[1]


@pytest.mark.parametrize("result, kw, same", [
    (None, {}, None), (1.0, {}, None), ((1.0,), {}, None), ((1.0, G, 2), {}, None),
    ({"loss": 1.0, "grads": G}, {}, None), ((G, 1.0), {}, None), (("a", G), {}, None),
    ((np.ones(3), G), {}, None), ((None, G), {}, None), ((1.0, {"w": np.ones(2, int)}), {}, None),
    ((1.0, "g"), {}, None), ((1.0, object()), {}, None), ((1.0, G), {"wrt_input": True}, None),
    ([1.0, G], {}, (1.0, G)), ((np.float32(1.0), G), {}, (np.float32(1.0), G)),
    (((1.0, {"acc": 1}), G), {}, ((1.0, {"acc": 1}), G)), ((1.0, None), {}, (1.0, None)),
], ids=lambda v: _id(v, 30))
def test_data_parallel_refuses_what_is_not_value_and_grads(result, kw, same):
    step = parallel.data_parallel(lambda p, x, y: result, **kw)
    outcome(lambda: step(MP, X, TY), ("parallel.data_parallel",), same=same)


@pytest.mark.parametrize("examples, ok", [
    (0, None), (-1, None), (6.0, None), (True, None), ("6", None), (math.nan, None),
    (np.array([6]), None), (2**62, None), (2**70, None), (10**5000, None), (np.int64(6), OK),
    (np.array(6), OK),
], ids=lambda v: "10**5000" if v == 10**5000 else repr(v))  # too long for repr
def test_sharded_step_examples_must_be_a_count(examples, ok):
    opt = parallel.sharded(fd.optim.sgd(0.1))
    outcome(lambda: opt.step(opt.init(MP), G, MP, examples=examples), ("parallel.sharded",),
            same=ok and (lambda got: None))
