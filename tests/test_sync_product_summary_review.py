"""Review of a0348e8 (parallel.sync_batch_stats), aecad25 (BatchNorm's count with Σx),
3ca816f..3ef6bf5 (_sums.product) and 3e0008b (layers.summary). Tests marked ``# DEFECT:``
failed on the code reviewed and pass since the fixes that followed; the others pin
behaviour found right."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _fake_world import World

import funcdl as fd
from funcdl import layers as L
from funcdl import parallel, tree
from funcdl.layers import _sums

F32 = np.float32
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ simulated ranks

def _ranks(shares: list[int], per_rank: Any) -> tuple[World, list[Any]]:
    world = World(len(shares))
    return world, world.run(lambda r, comm, lo, hi: per_rank(comm, lo, hi), shares)


# ------------------------------------------------------------------ 1. sync_batch_stats

def test_sync_batch_stats_with_batch_threads_inside_a_rank_is_the_global_batch() -> None:
    """BatchThreads' group passes its slices' total on to the ranks' sums (its parent): the
    share-weighted grads are the global batch's, the state equal on both ranks."""
    model = L.BatchThreads(L.Sequential(L.Dense(4), L.BatchNorm(), L.Tanh(), L.Dense(3)), 2)
    _, params, state = model.init(fd.random.key(0), (None, 5))
    params = tree.astype(params, np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 5)) * 2 + 1, rng.integers(0, 3, 8)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    _, out = _ranks([5, 3], lambda c, lo, hi: parallel.sync_batch_stats(vg, c)(
        params, x[lo:hi], y[lo:hi], state=state, train=True))
    assert not any(isinstance(o, Exception) for o in out), out
    (_, want_state), want = vg(params, x, y, state=state, train=True)
    got = tree.map(lambda a, b: 5 / 8 * a + 3 / 8 * b, out[0][1], out[1][1])
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    for a, b, c in zip(tree.leaves(out[0][0][1]), tree.leaves(out[1][0][1]),
                       tree.leaves(want_state), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-12)


def test_sync_batch_stats_keeps_wrt_input_for_data_parallel() -> None:
    vg = fd.value_and_grad(L.Sequential(L.Dense(2), L.BatchNorm()), fd.losses.mse,
                           wrt_input=True)
    synced = parallel.sync_batch_stats(vg)
    assert synced.wrt_input is True  # type: ignore[attr-defined]


def _bn_step_gathers(x: np.ndarray) -> int:
    model = L.Sequential(L.BatchNorm(), L.Dense(2))
    _, params, state = model.init(fd.random.key(0), (None, x.shape[1]))
    vg = fd.value_and_grad(model, fd.losses.mse)
    y = np.zeros((len(x), 2), x.dtype)
    world, out = _ranks([len(x) // 2, len(x) - len(x) // 2],
                        lambda c, lo, hi: parallel.sync_batch_stats(vg, c)(
                            params, x[lo:hi], y[lo:hi], state=state))
    assert not any(isinstance(o, Exception) for o in out), out
    return world.gathers


def test_one_bn_step_is_one_agreement_and_three_exchanges() -> None:
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(F32)
    assert _bn_step_gathers(x) == 1 + 3


def test_refinement_path_exchange_count_is_what_the_docs_say() -> None:
    # DEFECT (fixed): parallel.data_parallel's docstring (changed by aecad25) said each
    # BatchNorm adds three exchanges, "a fourth where the mean dwarfs the spread".
    # _norm_stats.moments' refinement takes two more sums (mean_of(xc), then mean_of(sq)):
    # 1 + 5 Allgathers. The docs now say "two more".
    x = (1e4 + np.random.default_rng(0).normal(size=(8, 3))).astype(F32)
    assert _bn_step_gathers(x) == 1 + 5
    doc = " ".join((fd.parallel.data_parallel.__doc__ or "").split())
    assert "two more where the mean dwarfs the spread" in doc


# ------------------------------------------------------------------ 2. aecad25

def _old_norm() -> Any:
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", "aecad25^:funcdl/layers/norm.py"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git history not available")
    # the helpers it calls as they are now: weak_dtype names its layer since bc7d737
    src = src.replace('weak_dtype(params, "scale")', 'weak_dtype(params, "scale", name)')
    spec = importlib.util.spec_from_loader("funcdl.layers._review_old_norm", loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, "old_norm.py", "exec"), mod.__dict__)
    return mod


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["plain", "refine", "overflow"])
@pytest.mark.parametrize("threads", [1, 3])
def test_bn_count_with_the_mean_is_bit_identical_to_before(dtype, kind, threads) -> None:
    old = _old_norm()
    rng = np.random.default_rng(0)
    x = {"plain": rng.normal(size=(9, 3)), "refine": 1e4 + rng.normal(size=(9, 3)),
         "overflow": rng.normal(size=(9, 3)) * 1e20}[kind].astype(dtype)
    res = []
    for bn in (L.BatchNorm, old.BatchNorm):
        inner = L.Sequential(L.Dense(3), bn(), L.Dense(2))
        model = L.BatchThreads(inner, threads) if threads > 1 else inner
        _, p, s = model.init(fd.random.key(0), (None, 3))
        vg = fd.value_and_grad(model, fd.losses.mse)
        with np.errstate(over="ignore"):
            res.append(vg(tree.astype(p, dtype), x, np.zeros((9, 2), dtype), state=s,
                          train=True))
    for a, b in zip(tree.leaves(res[0]), tree.leaves(res[1]), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ 3. _sums.product

def _stray(calls: list[str]) -> Any:
    """A product that raises the invalid flag on finite operands, as OpenBLAS's gemv can."""
    def f(a: np.ndarray, b: np.ndarray, **kw: Any) -> np.ndarray:
        calls.append("call")
        np.float32(np.inf) * np.float32(0)
        return np.matmul(a, b, **kw)
    return f


# Dense's 2-D product is np.dot's, which reports floating-point errors from NumPy 2.3 on
_DOT_FLAGS = pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.3.0",
                                reason="np.dot ignores the FP flags before NumPy 2.3")


def _inf_minus_inf_dense() -> tuple[L.Layer, Any, np.ndarray]:
    layer = L.Dense(1)
    params = {"w": np.ones((2, 1), F32), "b": np.zeros(1, F32)}
    return layer, params, np.array([[np.inf, -np.inf]], F32)


@_DOT_FLAGS
def test_product_keeps_a_real_invalid_flag_under_errstate_raise() -> None:
    # DEFECT: funcdl/layers/_sums.py:55 (product) retries *every* invalid-flag failure with
    # the flag ignored, so a NaN the product really makes (inf - inf here) is returned
    # silently where the user asked np.errstate(invalid='raise') to stop at it; before
    # 3ca816f Dense raised FloatingPointError here (as `x @ w` still does). A stray flag on
    # finite operands gives a finite result: re-raise when the retried result holds a NaN.
    layer, params, x = _inf_minus_inf_dense()
    with np.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError, match="invalid"):
            np.matmul(x, params["w"])  # the bare product raises
        with pytest.raises(FloatingPointError, match="invalid"):
            layer.apply(params, x)


@_DOT_FLAGS
def test_product_keeps_a_real_invalid_flag_under_warnings_as_errors() -> None:
    # DEFECT: the same under -W error (RuntimeWarning): Dense(1) on [[inf, -inf]] returned
    # NaN without the "invalid value encountered in dot" that the bare product gives.
    layer, params, x = _inf_minus_inf_dense()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="invalid value"):
            layer.apply(params, x)


def test_product_retry_with_out_writes_the_right_values_once_more() -> None:
    a = np.arange(6, dtype=F32).reshape(2, 3)
    b = np.arange(12, dtype=F32).reshape(3, 4)
    out = np.full((2, 4), -1, F32)
    calls: list[str] = []
    res = _sums.product(_stray(calls), a, b, out=out)
    assert calls == ["call", "call"] and res is out
    np.testing.assert_array_equal(out, a @ b)


def test_product_under_errstate_all_raise_retries_a_stray_flag_and_keeps_overflow() -> None:
    a, b = np.ones((2, 3), F32), np.ones((3, 1), F32)
    calls: list[str] = []
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(_sums.product(_stray(calls), a, b), a @ b)
        with pytest.raises(FloatingPointError, match="overflow"):
            _sums.product(np.matmul, np.full((1, 2), 3e38, F32), np.full((2, 1), 10, F32))
    assert calls == ["call", "call"]
    assert np.geterr()["invalid"] == "warn"  # nothing leaked


def test_product_under_record_warnings_is_called_once_and_the_warning_shows() -> None:
    calls: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = _sums.product(_stray(calls), np.ones((2, 2), F32), np.ones((2, 2), F32))
    assert calls == ["call"] and np.all(got == 2)
    assert any("invalid value" in str(w.message) for w in seen)


def test_product_in_threads_leaves_each_threads_errstate_alone() -> None:
    errs: list[Any] = []

    def work() -> None:
        try:
            with np.errstate(invalid="raise"):
                for _ in range(200):
                    _sums.product(_stray([]), np.ones((3, 3), F32), np.ones((3, 1), F32))
                assert np.geterr()["invalid"] == "raise"
        except Exception as e:
            errs.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errs


# ------------------------------------------------------------------ 4. layers.summary

def _body(table: str) -> list[str]:
    return table.splitlines()[2:-1]


def test_layer_catalogue_still_imports() -> None:
    # DEFECT: 3e0008b added "summary" to funcdl.layers.__all__ but not to the exemptions of
    # tests/_layer_cases.py:231, whose import-time assert now fails: 8 test files that import
    # it (test_fuzz_layers*, test_no_reference_cycles, test_ndarray_subclasses,
    # test_layers_batch_threads_catalogue, ...) error at collection. Fix: add "summary" to the
    # set of names without a case.
    importlib.import_module("_layer_cases")


def test_summary_nested_inside_an_init_starts_at_depth_zero() -> None:
    # DEFECT: funcdl/layers/summary.py:39 sets TRACE but not _children._DEPTH, so a summary
    # made inside an init that runs under another summary (a user layer that logs its part's
    # table) indents every row by the outer depth. Fix: also set _DEPTH to 0 (and reset it).
    inner_tables: list[str] = []
    part = L.Sequential(L.Dense(2), L.ReLU())

    def init(key: Any, in_shape: Any) -> Any:
        inner_tables.append(L.summary(part, in_shape))
        return part.init(key, in_shape)

    user = L.Layer(init, part.apply, part.vjp, name="Logged")
    L.summary(L.Sequential(L.Sequential(user)), (None, 3))
    assert _body(inner_tables[0]) == _body(L.summary(part, (None, 3)))


def test_summary_survives_a_child_init_error_a_layer_catches() -> None:
    # DEFECT: funcdl/layers/_children.py:55 appends the row before init; when the init raises
    # and a layer catches it (a user's layer probing a shape, then falling back) the row stays
    # with out shape None, and summary fails with "TypeError: 'NoneType' object is not
    # iterable" on a model whose init works. Fix: on an exception, del rows[i:] (the row and
    # its children's) before re-raising.
    part = L.Sequential(L.Dense(3), L.ReLU())

    def init(key: Any, in_shape: Any) -> Any:
        try:
            return part.init(key, (None,))  # a probe that fails
        except ValueError:
            return part.init(key, in_shape)

    user = L.Layer(init, part.apply, part.vjp, name="Fallback")
    assert user.init(fd.random.key(0), (None, 4))[0] == (None, 3)
    table = L.summary(user, (None, 4))
    assert table.splitlines()[-1].startswith("Total: 15 params")


def test_summary_a_name_with_a_newline_keeps_one_line_per_row() -> None:
    # DEFECT (minor): funcdl/layers/summary.py:48 shows a layer's name raw: a name holding
    # "\n" splits its row over two lines and breaks the columns. Fix: show the name's repr
    # escapes (e.g. name.replace("\n", "\\n")) or its first line.
    odd = L.Layer(lambda key, s: (s, ()), lambda p, x, **k: x,
                  lambda p, x, **k: (x, lambda d: ((), d)), name="two\nlines")
    table = L.summary(L.Sequential(odd, L.Dense(2)), (None, 3))
    assert len(table.splitlines()) == 2 + 3 + 1


def test_summary_module_doc_says_batch_threads_and_remat_show_their_parts() -> None:
    # DEFECT (docs, fixed): funcdl/layers/summary.py's module docstring said "a layer that
    # builds its parts otherwise (BatchThreads, Remat, a transformer block) is one row with
    # all its params", but BatchThreads and Remat init their child through child_init (rows
    # for the child and its parts). The docstring now says they are built like combinators.
    doc = " ".join((importlib.import_module("funcdl.layers.summary").__doc__ or "").split())
    assert "is one row with all its params" not in doc and "BatchThreads, Remat" in doc
    for model in (L.BatchThreads(L.Sequential(L.Dense(3), L.ReLU()), 2),
                  L.Remat(L.Sequential(L.Dense(3), L.ReLU()))):
        assert len(_body(L.summary(model, (None, 4)))) == 4, L.summary(model, (None, 4))


def test_summary_in_threads_at_once_gives_each_its_own_table() -> None:
    models = [L.Sequential(*[L.Dense(i + 1) for _ in range(i + 1)]) for i in range(6)]
    want = [L.summary(m, (None, 3)) for m in models]
    got: list[Any] = [None] * len(models)
    barrier = threading.Barrier(len(models), timeout=20)

    def run(i: int) -> None:
        barrier.wait()
        for _ in range(20):
            got[i] = L.summary(models[i], (None, 3))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert got == want


def test_summary_of_a_stateful_leaf_and_a_hand_made_layer() -> None:
    table = L.summary(L.BatchNorm(momentum=None), (None, 3))
    assert table.splitlines()[0].split()[-1] == "State"
    assert table.splitlines()[-1] == ("Total: 6 params, 24 bytes: 6 float32; 7 state "
                                      "entries, 32 bytes: 6 float32, 1 int64")
    hand = L.Layer(lambda key, s: ((s[0], 2), {"w": np.zeros((s[1], 2))}),
                   lambda p, x, **k: x @ p["w"], lambda p, x, **k: None, name="Hand")
    assert _body(L.summary(hand, (None, 3)))[0].split() == ["Hand", "(None,", "2)", "6"]


def test_one_value_per_channel_error_says_when_the_count_is_the_whole_split_batchs() -> None:
    # DEFECT (message, fixed): an empty part of a split batch whose whole holds one value per
    # channel read "got input of shape (0, 4) (1 per channel)", this part's shape beside the
    # whole batch's count; the count is now said to be the whole split batch's.
    from funcdl.layers import _slices

    class OneRowElsewhere:  # another part holds one row: the count grows by 1, sums by 0
        def sum(self, arrays: Any, cotangent: bool) -> Any:
            return tuple(np.asarray(a) + (1 if np.ndim(a) == 0 else 0) for a in arrays)

    bn = L.BatchNorm()
    _, params, state = bn.init(fd.random.key(0), (None, 4))
    with _slices.replicas(OneRowElsewhere()), pytest.raises(
            ValueError, match=r"shape \(0, 4\) \(1 per channel over the whole split batch\)"):
        bn.apply(params, np.ones((0, 4), F32), state=state, train=True)
    with pytest.raises(ValueError, match=r"shape \(1, 4\) \(1 per channel\)$"):
        bn.apply(params, np.ones((1, 4), F32), state=state, train=True)
