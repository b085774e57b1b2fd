"""Tests that kill mutants of the test and infrastructure modules which the other tests let
through: funcdl.testing's checks (a wrong vjp or loss gradient accepted, a check skipped),
io's load (like= checks, forged headers), sweep's order of failures and parallel's mean of
the loss over ranks. Each test names the mutant it kills."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pytest
from _parallel_util import OneRank, needs_mpi, ok, run

from funcdl import io, parallel, random, sweep
from funcdl.layers import Layer
from funcdl.losses import Loss
from funcdl.testing import check_layer, check_loss, check_vjp

# ---------------------------------------------------------------------------- testing


def _two_scales(swap: bool) -> Layer:
    """``y = a ∘ x + b ∘ x²`` with params a, b of one shape; ``swap``: the pullback gives
    da and db in each other's place (both of the params' shape)."""

    def apply(p, x, **kw):
        return p["a"] * x + p["b"] * x * x

    def vjp(p, x, **kw):
        def pullback(dy):
            da, db = (dy * x).sum(0), (dy * x * x).sum(0)
            if swap:
                da, db = db, da
            return {"a": da, "b": db}, dy * (p["a"] + 2 * p["b"] * x)

        return apply(p, x), pullback

    return Layer(lambda k, s: (s, {"a": np.ones(s[-1], np.float32),
                                   "b": np.ones(s[-1], np.float32)}), apply, vjp, name="Two")


def test_gradients_of_two_same_shaped_leaves_swapped_fail():
    # the directions of leaves of one shape must be drawn apart: with one draw for both,
    # <da, v> + <db, v> is blind to da and db trading places
    params = {"a": np.array([0.5, -1.0, 2.0]), "b": np.array([1.5, 0.25, -0.75])}
    x = random.normal(random.key(3), (4, 3), np.float64)
    check_vjp(_two_scales(False), params, x)
    with pytest.raises(AssertionError, match=r"check_vjp\(Two\): the vjp disagrees"):
        check_vjp(_two_scales(True), params, x)


def test_a_float64_pullback_drifting_by_1e_6_between_calls_fails():
    # far inside the finite differences' tolerance; a pure pullback gives the same twice
    calls = []

    def vjp(p, x, **kw):
        def pullback(dy):
            calls.append(1)
            return (), dy * np.cos(x) * (1 + 1e-6 * len(calls))

        return np.sin(x), pullback

    drifting = Layer(lambda k, s: (s, ()), lambda p, x, **kw: np.sin(x), vjp, name="Drift")
    with pytest.raises(AssertionError, match=r"different result on a second call"):
        check_vjp(drifting, (), np.linspace(-1.0, 1.0, 6).reshape(2, 3))


@pytest.mark.parametrize("mut", ["sign_g", "g_cubed"])
def test_a_loss_pullback_right_only_at_g_minus_one_fails(mut):
    # a cotangent of magnitude 1 cannot tell g from sign(g) or g³: check_loss's is drawn
    # in [-0.75, -0.25]
    def vjp(pred, target):
        d = pred - target

        def pullback(g=1.0):
            g = np.sign(g) if mut == "sign_g" else g ** 3
            return (np.asarray(g, pred.dtype) * (2.0 / d.size) * d).astype(pred.dtype)

        return np.mean(d * d), pullback

    with pytest.raises(AssertionError, match=r"first wrong entry pred\["):
        check_loss(Loss(f"ms<{mut}>", vjp), np.linspace(0, 1, 6), np.zeros(6))


def _sin_layer(apply_extra, name: str) -> Layer:
    """Sin with a correct vjp; ``apply_extra(params)`` runs inside apply first."""

    def apply(p, x, **kw):
        apply_extra(p)
        return np.sin(x) * p["w"]

    def vjp(p, x, **kw):
        return np.sin(x) * p["w"], lambda dy: (
            {"w": (dy * np.sin(x)).sum(0)}, dy * p["w"] * np.cos(x))

    return Layer(lambda k, s: (s, {"w": np.ones(s[-1], np.float32)}), apply, vjp, name=name)


def test_apply_replacing_a_params_leaf_by_another_dtype_fails():
    # the same values in float32: only the dtype tells the leaf was replaced
    def cast(p):
        p["w"] = p["w"].astype(np.float32)

    params = {"w": np.array([0.5, 1.0, 1.5])}
    with pytest.raises(AssertionError, match=r"apply wrote into params\['w'\].*dtype float64 "
                                             r"became \(3,\) and float32"):
        check_vjp(_sin_layer(cast, "Cast"), params, np.linspace(-1, 1, 6).reshape(2, 3))


def test_apply_adding_a_key_to_the_params_fails():
    # the added key sorts last: a comparison of the leaves pair by pair would stop short
    def add(p):
        p.setdefault("zz", np.zeros(1))

    params = {"w": np.array([0.5, 1.0, 1.5])}
    with pytest.raises(AssertionError, match=r"apply changed the structure of params"):
        check_vjp(_sin_layer(add, "Adds"), params, np.linspace(-1, 1, 6).reshape(2, 3))


def test_integer_outputs_of_apply_and_the_vjp_must_agree():
    def vjp(p, x, **kw):
        ids = np.argmax(x, axis=1) + 1  # apply's ids, off by one
        return (np.sin(x), ids), lambda dy: ((), dy[0] * np.cos(x))

    layer = Layer(lambda k, s: (((None, 3), (None,)), ()),
                  lambda p, x, **kw: (np.sin(x), np.argmax(x, axis=1)), vjp, name="Ids")
    with pytest.raises(AssertionError, match=r"apply and vjp\(\.\.\.\)\[0\] disagree in 2 of "
                                             r"2 entries, first at output\[1\]\[0\]"):
        check_vjp(layer, (), np.array([[0.1, 0.7, -0.2], [0.9, 0.3, 0.4]]))


def _shaped(declared, out) -> Layer:
    """A layer declaring ``declared`` whose apply gives ``out(x)`` (vjp to match)."""
    def vjp(p, x, **kw):
        y = out(x)
        return y, lambda dy: ((), np.zeros_like(x))

    return Layer(lambda k, s: (declared, ()), lambda p, x, **kw: out(x), vjp, name="Shaped")


@pytest.mark.parametrize(("declared", "out"), [
    ((None, 3), lambda x: x[1:]),  # a row short of the batch
    ((None, 3), lambda x: x[..., None]),  # an axis more than declared
], ids=["batch", "rank"])
def test_an_output_unlike_the_declared_shape_fails(declared, out):
    with pytest.raises(AssertionError, match=r"check_layer\(Shaped\): init declared output "
                                             r"shape"):
        check_layer(_shaped(declared, out), (None, 3))


# ---------------------------------------------------------------------------- io


class P(NamedTuple):
    a: Any
    b: Any


class Q(NamedTuple):  # P's name, its fields in the other order: see below
    b: Any
    a: Any


Q.__name__ = "P"


def test_load_like_a_namedtuple_of_other_fields_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    io.save(path, P(np.zeros(2), np.ones(2)))
    with pytest.raises(ValueError, match=r"structure mismatch at the root"):
        io.load(path, like=Q(np.zeros(2), np.zeros(2)))  # would swap a and b


def test_load_like_a_dict_of_other_keys_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    io.save(path, {"a": np.zeros(2), "b": np.ones(2)})
    with pytest.raises(ValueError, match=r"structure mismatch at the root: file has a dict "
                                         r"with keys \['a', 'b'\]"):
        io.load(path, like={"a": np.zeros(2), "c": np.zeros(2)})


def _forged(tmp_path, treedef: str, kinds: str, *leaves: np.ndarray):
    raw = f'{{"format":"funcdl.io","version":1,"treedef":{treedef},"leaves":{kinds}}}'
    path = tmp_path / "forged.npz"
    with open(path, "wb") as f:
        np.savez(f, __funcdl_treedef__=np.frombuffer(raw.encode(), np.uint8),
                 **{f"leaf_{i}": a for i, a in enumerate(leaves)})
    return path


_LEAF = '{"type":"leaf"}'


@pytest.mark.parametrize(("treedef", "kinds", "leaves", "message"), [
    (f'{{"type":"dict","keys":["a","a"],"children":[{_LEAF},{_LEAF}]}}', '["array","array"]',
     (np.zeros(1), np.ones(1)), "bad dict keys"),
    (_LEAF, '["int"]', (np.array(2.5),), "is a Python int stored as float64"),
    (f'{{"type":"tuple","children":[{_LEAF},{_LEAF}]}}', '["array"]', (np.zeros(1),),
     "leaf list does not match the structure"),
], ids=["repeated_keys", "int_as_float", "short_leaf_list"])
def test_a_forged_header_is_refused(tmp_path, treedef, kinds, leaves, message):
    with pytest.raises(ValueError, match=message):
        io.load(_forged(tmp_path, treedef, kinds, *leaves))


# ---------------------------------------------------------------------------- sweep


def fails_late_first(config):
    """Run 0 fails after run 1 has: a strict sweep's failures must still be in config
    order."""
    if config == 0:
        time.sleep(0.3)
    raise ValueError(f"run {config}")


def test_strict_sweep_lists_its_failures_in_config_order():
    with ThreadPoolExecutor(2) as pool, pytest.raises(sweep.SweepError) as info:
        sweep.run(fails_late_first, [0, 1], pool, progress=False, strict=True)
    assert [f.index for f in info.value.failures] == [0, 1]
    assert [f.error for f in info.value.failures] == ["ValueError: run 0", "ValueError: run 1"]


def echo(config):
    return config


def _refuse():
    raise RuntimeError("this config does not unpickle in a worker")


class _Unpicklable:
    """A config that pickles here and fails to unpickle in a worker, killing it."""

    def __reduce__(self):
        return (_refuse, ())


def test_one_config_that_kills_its_worker_before_starting_fails_alone(monkeypatch):
    # one worker: it dies on the first config before any run starts, so every run is
    # failed by the broken pool, none started; only a second such death in a row may fail
    # the runs still pending, not the first
    monkeypatch.setattr(sweep, "_cpus", lambda: 1)
    results = sweep.run(echo, [_Unpicklable(), "a", "b"], progress=False)
    assert results[1:] == ["a", "b"]
    assert isinstance(results[0], sweep.Failure)
    assert "the worker died before this run started" in results[0].traceback

# ---------------------------------------------------------------------------- parallel

_AUX_SCRIPT = '''
import numpy as np
from funcdl import parallel

rank, size = parallel.rank_and_size()
assert size == 2


def value_and_grad(params, x):  # a has_aux value: (loss, aux); rank r has r + 1 examples
    return (float(rank + 1), {"rank": rank}), {"w": np.full(2, float(rank))}


step = parallel.data_parallel(value_and_grad, wrt_input=False)
(loss, aux), grads = step(None, np.zeros((rank + 1, 1)))
# the global batch's loss, weighted by the examples (1 and 2); aux stays this rank's
assert abs(loss - 5 / 3) < 1e-12, loss
assert aux == {"rank": rank}, aux
np.testing.assert_allclose(grads["w"], [2 / 3, 2 / 3], rtol=1e-12)
print(f"rank {rank} ok")
'''


@needs_mpi
def test_data_parallel_with_aux_averages_the_loss_over_ranks(tmp_path):
    script = tmp_path / "aux.py"
    script.write_text(_AUX_SCRIPT)
    out = ok(run([str(script)], timeout=60))
    assert "rank 0 ok" in out and "rank 1 ok" in out


@pytest.mark.parametrize("form", [lambda a: a, lambda a: (a,), lambda a: {"g": a}],
                         ids=["bare", "tuple", "dict"])
def test_pmean_refuses_an_integer_tree_after_a_float_one_of_its_shapes(form):
    # the layouts are remembered by structure, shapes and dtypes: not by shapes alone
    floats = form(np.zeros(3))
    assert parallel.pmean(floats, OneRank()) is floats
    with pytest.raises(TypeError, match=r"parallel.pmean: the leaf at .* has dtype int64"):
        parallel.pmean(form(np.zeros(3, np.int64)), OneRank())
