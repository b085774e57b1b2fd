"""Tests that kill mutants of funcdl.parallel's buffer handling (_reduce.py, _shard.py,
parallel.py) which the other tests let through: a shared window's results taken in turn,
not always the lowest free one, and data_parallel's scaling of this rank's dx written into
the array value_and_grad_fn returned, and a sharded step's new params written over the
gradient buffer an optimizer's state may keep. Each test names the mutant it kills."""

from __future__ import annotations

import numpy as np
from _parallel_util import needs_mpi, ok, path_env, run

from funcdl import parallel
from funcdl.optim import GradientTransformation

_TURN_SCRIPT = r'''
import numpy as np
from mpi4py import MPI

from funcdl import parallel

comm = MPI.COMM_WORLD.Dup()  # a reducer and a window of its own
rank = comm.Get_rank()
reducer = parallel._reducer(comm)
taken = []
for i in range(11):  # each result dropped before the next mean: every result free
    r = parallel.pmean({"b": np.full(3, float(i + rank))}, comm)
    assert np.array_equal(r["b"], [i + 0.5] * 3), r
    (window,) = reducer.windows.values()
    taken.append(next(g for g, res in enumerate(window.results)
                      if np.shares_memory(r["b"], res)))
    del r
# 8 results of a tiny window, taken in turn (the other core's caches have dropped one
# before it comes back), not the lowest free one every time
assert taken == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2], taken
print(f"rank {rank} ok turn")

# data_parallel with wrt_input=True: dx is this rank's share of the global loss's
# gradient, a new array; the one value_and_grad_fn returned (here, one it keeps) is untouched
held = np.full((rank + 1, 2), 3.0)


def vg(params, x):
    return 1.0, ({"w": np.ones(2)}, held)


step = parallel.data_parallel(vg, comm, wrt_input=True)
for _ in range(2):
    loss, (dparams, dx) = step(None, np.zeros((rank + 1, 2)))
    share = (rank + 1) / 3
    np.testing.assert_allclose(dx, np.full((rank + 1, 2), 3.0 * share), rtol=1e-15)
    assert np.array_equal(held, np.full((rank + 1, 2), 3.0)), "the returned dx scaled in place"
    np.testing.assert_allclose(dparams["w"], [1.0, 1.0], rtol=1e-15)
print(f"rank {rank} ok dx")
'''


@needs_mpi
def test_window_results_taken_in_turn_and_dx_scaled_into_a_new_array(tmp_path):
    # kills _reduce.py negotiate: `ahead = (free >> turn | ...)` -> `ahead, turn = free, 0`
    # (always the lowest free result: the usual loop would alternate results 0 and 1);
    # kills parallel.py data_parallel: `lambda d: d * share` -> `np.multiply(d, share, out=d)`
    script = tmp_path / "turns.py"
    script.write_text(_TURN_SCRIPT)
    out = ok(run([str(script)], timeout=60, env=path_env("shared")))
    for r in range(2):
        assert f"rank {r} ok turn" in out and f"rank {r} ok dx" in out


# ---------------------------------------------------------------------------- one process


def test_a_sharded_state_that_keeps_the_gradient_it_was_given_is_not_overwritten():
    # an optimizer whose state is the last gradient as given (a view of the step's summed
    # gradient buffer): that buffer must not be the one the new params are written into.
    # Kills _shard.py Sharder.step: `total_g = self.reducer.take(hi - lo, ...)` ->
    # `total_g = out if comm is None else ...`
    keep_last = GradientTransformation(
        lambda params: tuple(np.zeros_like(p) for p in params),
        lambda state, grads, params=None: (tuple(-0.5 * g for g in grads), grads))
    opt = parallel.sharded(keep_last)
    params = {"w": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "b": np.zeros(2, np.float32)}
    state = opt.init(params)
    for i, scale in enumerate((1.0, -2.0)):
        grads = {"w": np.full((2, 2), scale, np.float32), "b": np.array([scale, 0], np.float32)}
        new, state = opt.step(state, grads, params)
        np.testing.assert_array_equal(new["w"], params["w"] - 0.5 * scale)
        # the state holds this step's gradient, in ravel order (b first, then w)
        got = np.concatenate([np.ravel(s) for s in state.inner])
        np.testing.assert_array_equal(got, [scale, 0.0] + [scale] * 4, err_msg=f"step {i}")
        params = new
