"""``parallel.sync_batch_stats``: BatchNorm's statistics over the ranks, the grads left each
rank's own (for ``parallel.sharded``). The ranks are simulated by threads over an
in-process communicator; the real ``mpiexec`` run is the ``sync_bn`` case of
tests/mpi_scripts/check_parallel.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _fake_world import World

import funcdl as fd
from funcdl import layers as L
from funcdl import parallel, tree


def _model() -> L.Layer:
    return L.Sequential(L.Dense(6), L.BatchNorm(), L.Tanh(), L.Dense(4),
                        L.BatchNorm(momentum=None), L.Dense(3))


def _setup(n: int, dtype: Any = np.float64) -> tuple[L.Layer, Any, Any, np.ndarray, np.ndarray]:
    model = _model()
    _, params, state = model.init(fd.random.key(0), (None, 5))
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(n, 5)) * 2 + 1).astype(dtype)
    return model, tree.astype(params, dtype), state, x, rng.integers(0, 3, n)


@pytest.mark.parametrize("shares", [[6, 6], [7, 3, 2], [5, 1, 4]])
def test_ranks_grads_weighted_by_share_are_the_global_batchs(shares: list[int]) -> None:
    """Each rank's grads times its share n_r/N sum to the global batch's (what sharded's
    step does with examples=), and every rank's new state is the global batch's, bit for
    bit the same on every rank; a rank of one example too (its statistics alone would be
    refused)."""
    n = sum(shares)
    model, params, state, x, y = _setup(n)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)

    def per_rank(r: int, comm: Any, lo: int, hi: int) -> Any:
        return parallel.sync_batch_stats(vg, comm)(params, x[lo:hi], y[lo:hi], state=state)

    out = World(len(shares)).run(per_rank, shares)
    (want_loss, want_state), want = vg(params, x, y, state=state)
    w = [s / n for s in shares]
    got = tree.map(lambda *g: sum(wi * gi for wi, gi in zip(w, g)), *[o[1] for o in out])
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    loss = sum(wi * o[0][0] for wi, o in zip(w, out) if wi)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    for o in out:
        for a, b, c in zip(tree.leaves(o[0][1]), tree.leaves(out[0][0][1]),
                           tree.leaves(want_state), strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=1e-12)


def test_without_it_the_ranks_grads_are_not_the_global_batchs() -> None:
    """The control: each rank's own statistics give other grads (so the test above can
    fail)."""
    model, params, state, x, y = _setup(12)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    halves = [vg(params, x[:6], y[:6], state=state), vg(params, x[6:], y[6:], state=state)]
    got = tree.map(lambda a, b: (a + b) / 2, halves[0][1], halves[1][1])
    want = vg(params, x, y, state=state)[1]
    assert not all(np.allclose(a, b, rtol=1e-6) for a, b in
                   zip(tree.leaves(got), tree.leaves(want)))


def test_float32_stays_float32_and_matches() -> None:
    model, params, state, x, y = _setup(10, np.float32)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    out = World(2).run(lambda r, c, lo, hi: parallel.sync_batch_stats(vg, c)(
        params, x[lo:hi], y[lo:hi], state=state), [5, 5])
    got = tree.map(lambda a, b: (a + b) / 2, out[0][1], out[1][1])
    want = vg(params, x, y, state=state)[1]
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_one_bn_step_is_the_agreement_and_three_sums_and_no_mean() -> None:
    """One Allgather for the agreement on the params, three per BatchNorm (the count with
    the mean's sum and the variance's forward, the cotangent sums back), none averaging the
    grads."""
    model = L.Sequential(L.Dense(4), L.BatchNorm(), L.Dense(3))
    _, params, state = model.init(fd.random.key(0), (None, 5))
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    x, y = np.ones((6, 5), np.float32), np.arange(6) % 3
    x[::2] = 2.0
    world = World(2)
    out = world.run(lambda r, c, lo, hi: parallel.sync_batch_stats(vg, c)(
        params, x[lo:hi], y[lo:hi], state=state), [3, 3])
    assert not any(isinstance(o, Exception) for o in out), out
    assert world.gathers == 4, world.gathers


def test_differing_params_raise_the_same_error_on_every_rank() -> None:
    vg = fd.value_and_grad(_model(), fd.losses.softmax_cross_entropy)
    trees = [_model().init(fd.random.key(0), (None, d))[1:] for d in (5, 6)]
    x = np.ones((4, 5))

    def per_rank(r: int, comm: Any, lo: int, hi: int) -> Any:
        params, state = trees[r]
        return parallel.sync_batch_stats(vg, comm)(params, x[:, :4 + r + 1] if r else x,
                                                   np.arange(4) % 3, state=state)

    out = World(2).run(per_rank, [2, 2])
    assert all(isinstance(o, ValueError) for o in out), out
    assert str(out[0]) == str(out[1])
    assert "parallel.sync_batch_stats" in str(out[0]) and "differ" in str(out[0])


def test_one_process_is_the_function_itself() -> None:
    model, params, state, x, y = _setup(9)
    vg = fd.value_and_grad(model, fd.losses.softmax_cross_entropy, wrt_input=True)
    synced = parallel.sync_batch_stats(vg)
    assert synced.wrt_input is True and synced.__wrapped__ is vg  # type: ignore[attr-defined]
    got, want = synced(params, x, y, state=state), vg(params, x, y, state=state)
    for a, b in zip(tree.leaves(got), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    # data_parallel around it: the same values on one process
    again = parallel.data_parallel(synced)(params, x, y, state=state)
    for a, b in zip(tree.leaves(again), tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_input_names_sync_batch_stats() -> None:
    with pytest.raises(TypeError, match=r"parallel.sync_batch_stats: value_and_grad_fn must "
                                        r"be callable.*got int"):
        parallel.sync_batch_stats(3)  # type: ignore[arg-type, type-var]
    with pytest.raises(TypeError, match=r"parallel.sync_batch_stats: comm must be an mpi4py "
                                        r"communicator.*got str"):
        parallel.sync_batch_stats(lambda p, x: (0.0, p), comm="world")
    synced = parallel.sync_batch_stats(lambda p, x: (0.0, p))
    with pytest.raises(TypeError, match=r"parallel.sync_batch_stats: cannot count the examples "
                                        r"of x"):
        synced({}, 1.0)
