"""parallel.sharded: one process here (no MPI touched), two and three ranks under mpiexec
(tests/mpi_scripts/check_sharded.py)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from _parallel_util import (
    PATHS,
    SCRIPTS,
    OneRank,
    every_rank_ok,
    needs_mpi,
    ok,
    path_env,
    run,
)
from conftest import EXAMPLES, load_example

import funcdl as fd
from funcdl import parallel

# ---------------------------------------------------------------------------- ranks


@needs_mpi
@PATHS
@pytest.mark.parametrize("ranks", [2, 3])
def test_sharded_steps_equal_a_whole_optimizer_in_one_process(path, ranks):
    script = str(SCRIPTS / "check_sharded.py")
    out = ok(run([script, "equivalence"], env=path_env(path), ranks=ranks, timeout=120))
    every_rank_ok(out, "equivalence", "shared" if path == "shared" else "messages", ranks)


# what each call of check_sharded.py's mismatch case must raise, on every rank
MISMATCHES = [
    r"shape ValueError: parallel.sharded: the trees differ across ranks at \['grads'\]\['w'\]: "
    r"rank 0 has a leaf of shape \(4, 2\).*rank 1 has a leaf of shape \(5, 2\)",
    r"state ValueError: .*state of rank\(s\) \[0\] was not made for",
    r"state-adam ValueError: .*state of rank\(s\) \[0, 1\] was not made for",
    r"grads-params ValueError: .*\['w'\]: grads has \(2, 4\), params has \(4, 2\)",
    r"grads-params-size ValueError: .*\['w'\]: grads has \(3, 1\), params has \(4, 2\)",
    r"int-on-one ValueError: .*differ across ranks at \['grads'\]\['w'\]: rank 0 has "
    r".*float64, rank 1 has .*int64",
    r"int-on-all TypeError: .*grads leaf at \['w'\] has dtype int64",
    r"count-on-one ValueError: parallel.sharded: the ranks \[0\] gave no example count, the "
    r"others did \(\[None, 4\]\); give examples= on every rank or on none",
]


@needs_mpi
def test_sharded_bad_input_raises_on_every_rank_without_hanging():
    out = ok(run([str(SCRIPTS / "check_sharded.py"), "mismatch"], timeout=60))
    for r in (0, 1):
        for pattern in MISMATCHES:
            assert re.search(rf"rank {r} {pattern}", out), (r, pattern)
        assert f"rank {r} ok mismatch" in out
    # a fault on one rank: that rank raises its own error, the other one naming that rank
    says = [
        (1, "negative-count", r"ValueError: parallel.sharded: examples must be >= 0"),
        (1, "float-count", r"TypeError: parallel.sharded: examples must be an int"),
        (1, "huge-count", r"ValueError: parallel.sharded: examples=4611686018427387904 is no "
                          r"example count"),
        (1, "whole-state-on-one", r"TypeError: parallel.sharded.step: got the state of "
                                  r"another optimizer"),
        (1, "other-inner-on-one", r"ValueError: sgd.update: the state's stages are "
                                  r"\['lr'\], expected \['momentum', 'lr'\]"),
        (1, "small-inner-on-one",
         r"ValueError: sgd\.update, stage 'momentum': trace\.update: shape mismatch"),
        (0, "state-and-count", r"TypeError: parallel.sharded.step: got the state of another "
                               r"optimizer"),
        (1, "state-and-count", r"TypeError: parallel.sharded: examples must be an int, got "
                               r"2.5"),
    ]
    says += [(0, case, r"ValueError: parallel.sharded: rank\(s\) \[1\] gave an examples= "
                       r"that is no example count")
             for case in ("negative-count", "float-count", "huge-count")]
    says += [(0, case, r"ValueError: parallel.sharded: the state of rank\(s\) \[1\] was not "
                       r"made for")
             for case in ("whole-state-on-one", "other-inner-on-one", "small-inner-on-one")]
    for r, case, message in says:
        assert re.search(rf"rank {r} {case} {message}", out), (r, case)


# ---------------------------------------------------------------------------- one process

def setup(dtype=np.float32):
    model = fd.layers.Sequential(fd.layers.Dense(7), fd.layers.Tanh(), fd.layers.Dense(2))
    _, params = model.init(fd.random.key(0), (None, 3))
    params = fd.tree.astype(params, dtype)
    x = fd.random.normal(fd.random.key(1), (16, 3), dtype=dtype)
    y = fd.random.normal(fd.random.key(2), (16, 2), dtype=dtype)
    return fd.value_and_grad(model, fd.losses.mse), params, x, y


@pytest.mark.parametrize("make", [lambda: fd.optim.sgd(0.1, momentum=0.9),
                                  lambda: fd.optim.adam(1e-2),
                                  lambda: fd.optim.adamw(1e-2, weight_decay=0.5),
                                  lambda: fd.optim.rmsprop(1e-2), lambda: fd.optim.adagrad(0.1)])
@pytest.mark.parametrize("comm", [None, OneRank()])
def test_one_process_steps_equal_the_whole_optimizer(make, comm):
    vg, params, x, y = setup(np.float64)
    opt, zero = make(), parallel.sharded(make(), comm)
    ref, ref_state = params, opt.init(params)
    got, state = params, zero.init(params)
    for _ in range(4):
        _, g = vg(ref, x, y)
        u, ref_state = opt.update(ref_state, g, ref)
        ref = fd.optim.apply_updates(ref, u)
        _, g = vg(got, x, y)
        got, state = zero.step(state, g, got)
    assert state.span.tolist() == [0, 44, 44] and int(state.count) == 4
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def test_one_sgd_step_is_p_minus_lr_g_in_float32_and_new_arrays():
    vg, params, x, y = setup()
    zero = parallel.sharded(fd.optim.sgd(0.25))
    _, g = vg(params, x, y)
    got, state = zero.step(zero.init(params), g, params, examples=16)
    for p, gr, new in zip(fd.tree.leaves(params), fd.tree.leaves(g), fd.tree.leaves(got)):
        assert new.dtype == np.float32 and new.shape == p.shape and not new.flags.writeable
        np.testing.assert_array_equal(new, p - np.float32(0.25) * gr)
        assert not np.shares_memory(new, p) and not np.shares_memory(new, gr)
    zero.step(state, g, got)   # the first result is not overwritten by the next
    for p, gr, new in zip(fd.tree.leaves(params), fd.tree.leaves(g), fd.tree.leaves(got)):
        np.testing.assert_array_equal(new, p - np.float32(0.25) * gr)


def test_the_state_holds_only_this_ranks_entries_in_ravel_order():
    _, params, _, _ = setup()
    state = parallel.sharded(fd.optim.adam()).init(params)
    mu = state.inner.states["adam"].mu
    assert isinstance(mu, tuple) and [m.shape for m in mu] == [(7,), (21,), (2,), (14,)]
    assert all(m.dtype == np.float32 for m in mu)


def test_an_optimizer_that_mixes_entries_is_refused():
    clipped = fd.optim.chain(fd.optim.clip_by_global_norm(1.0), fd.optim.sgd(0.1))
    with pytest.raises(TypeError, match=r"does not treat entries independently.*elementwise"):
        parallel.sharded(clipped)
    with pytest.raises(TypeError, match="GradientTransformation such as"):
        parallel.sharded(fd.optim.sgd)


def test_an_optimizer_that_needs_the_loss_is_refused_saying_so():
    # reduce_on_plateau is elementwise, but its value= would have to reach every rank alike
    opt = fd.optim.chain(fd.optim.adam(1e-2), fd.optim.reduce_on_plateau())
    with pytest.raises(TypeError, match=r"update takes value= \(reduce_on_plateau's value=, "
                                        r"the loss\), which a sharded step does not pass"):
        parallel.sharded(opt)
    parallel.sharded(fd.optim.multi_steps(fd.optim.adam(1e-2), 2))  # takes no keyword


def test_an_optimizer_that_reads_the_params_structure_is_refused():
    # the sharded optimizer hands its optimizer flat pieces of the leaves: a mask by ndim
    # would never decay anything there, and a mask tree cannot match them
    by_ndim = fd.optim.adamw(0.1, mask=lambda p: fd.tree.map(lambda x: x.ndim > 1, p))
    with pytest.raises(TypeError, match=r"independently of each other and of the leaves' "
                                        r"shapes .* as a 2 x 2 matrix"):
        parallel.sharded(by_ndim)
    with pytest.raises(TypeError, match=r"cannot run on the flat pieces .*adamw.init: tree "
                                        r"structure mismatch"):
        parallel.sharded(fd.optim.adamw(0.1, mask={"w": True, "b": False}))
    parallel.sharded(fd.optim.adamw(0.1))  # without a mask, elementwise


@pytest.mark.parametrize("examples,error,match", [
    (2.0, TypeError, "examples must be an int"),
    (-1, ValueError, "examples must be >= 0"),
    (0, ValueError, "no rank had any examples"),  # as over MPI ranks, not a silent full step
])
def test_bad_examples(examples, error, match):
    vg, params, x, y = setup()
    zero = parallel.sharded(fd.optim.sgd(0.1))
    _, g = vg(params, x, y)
    with pytest.raises(error, match=match):
        zero.step(zero.init(params), g, params, examples=examples)


def test_bad_state_grads_and_params_are_named():
    vg, params, x, y = setup()
    zero = parallel.sharded(fd.optim.sgd(0.1))
    state = zero.init(params)
    _, g = vg(params, x, y)
    with pytest.raises(TypeError, match=r"sharded.step: .*state returned by init \(call "
                                        r"step\(state, grads, params\)\)"):
        zero.step(g, state, params)
    other = zero.init({"w": np.ones(5, np.float32)})
    with pytest.raises(ValueError, match=r"state covers entries \[0, 5, 5\].*all 44"):
        zero.step(other, g, params)
    with pytest.raises(ValueError, match=r"sharded: .*\[0\]\['w'\]"):
        zero.step(state, tuple({"w": gl["w"].T, "b": gl["b"]} if gl else gl for gl in g),
                  params)
    with pytest.raises(ValueError, match="differ in their dtypes"):
        zero.step(state, fd.tree.astype(g, np.float64), params)
    with pytest.raises(TypeError, match=r"params leaf at .* has dtype int64"):
        zero.init({"w": np.arange(3)})
    for count, error in ((1e30, ValueError), (-1, ValueError), ("3", TypeError)):
        with pytest.raises(error, match=r"parallel.sharded: the state's count"):
            zero.step(state._replace(count=count), g, params)


def test_sharded_docstring_example_runs_in_one_process():
    model = fd.layers.Sequential(fd.layers.Dense(4), fd.layers.ReLU(), fd.layers.Dense(3))
    _, params = model.init(fd.random.key(0), (None, 2))
    x = fd.random.normal(fd.random.key(1), (40, 2))
    y = np.arange(40) % 3
    rank, size = parallel.rank_and_size()
    key = fd.random.key(2)
    code = parallel.sharded.__doc__.split("Example::\n")[1]
    scope = {"fd": fd, "parallel": parallel, "params": params, "model": model, "x": x,
             "y": y, "rank": rank, "size": size, "key": key}
    exec(__import__("textwrap").dedent(code), scope)
    assert int(scope["state"].count) == 1


# ---------------------------------------------------------------------------- the example

@needs_mpi
def test_disk_example_sharded_on_two_ranks_trains_as_data_parallel():
    script = str(EXAMPLES / "disk_data_parallel.py")
    sharded = ok(run([script, "--epochs", "3", "--sharded"]))
    plain = ok(run([script, "--epochs", "3"]))
    final = [re.search(r"final: train error ([\d.]+)%, test error ([\d.]+)%", o).groups()
             for o in (sharded, plain)]
    assert final[0] == final[1]
    assert re.search(r"rank 1: [\d.]+ ms per step, \d+% of it in the sharded step", sharded)


def test_disk_example_sharded_in_one_process_follows_the_whole_optimizer():
    example = load_example("disk_data_parallel")
    ours = example.train(epochs=2, verbose=False, sharded=True)
    theirs = example.train(epochs=2, verbose=False)
    assert ours["curve"] == pytest.approx(theirs["curve"], rel=1e-5)
    for a, b in zip(fd.tree.leaves(ours["params"]), fd.tree.leaves(theirs["params"])):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_saved_state_loads_with_like_and_steps_on(tmp_path):
    vg, params, x, y = setup()
    zero = parallel.sharded(fd.optim.adam(1e-2))
    _, g = vg(params, x, y)
    p1, state = zero.step(zero.init(params), g, params)
    fd.io.save(tmp_path / "s.npz", state)
    loaded = fd.io.load(tmp_path / "s.npz", like=zero.init(params))
    want, _ = zero.step(state, g, p1)
    got, again = zero.step(loaded, g, p1)
    assert int(again.count) == 2
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"sharded.step: .*load the state with .*like="):
        zero.step(fd.io.load(tmp_path / "s.npz"), g, p1)


@pytest.mark.parametrize("n, size", [(10, 3), (10, 4), (3, 4), (0, 2), (7, 1), (12, 3)])
def test_the_cut_tiles_the_entries_in_ceil_n_over_size_parts(n, size):
    # rank r owns [r·m, (r+1)·m), m = ⌈n/size⌉, the last ones shorter or empty; one rank's
    # cut is the pieces of the leaves it covers
    from funcdl._reduce import span
    from funcdl._shard import cut

    m = -(-n // size)
    spans = [span(n, size, r) for r in range(size)]
    assert spans == [(min(r * m, n), min((r + 1) * m, n)) for r in range(size)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    bounds = [0, n // 3, n // 3 + 1, n] if n >= 3 else [0, n]
    for r in range(size):
        c = cut(bounds, size, r)
        assert (c.lo, c.hi) == spans[r] and c.counts == [b - a for a, b in spans]
        assert c.displs == [a for a, _ in spans]
        assert sum(b - a for _, a, b, _ in c.mine) == c.hi - c.lo
        assert sum(b - a for _, a, b, _ in c.theirs) == n - (c.hi - c.lo)


def test_an_optimizer_that_reads_the_leaves_shapes_is_refused_at_init():
    # Adafactor factors a matrix from 128 rows and columns: the flat pieces it was given
    # were never factored, and the steps silently differed from optax's (4.3 against a
    # movement of 6.8), on one process too
    params = {"w": np.zeros((128, 130)), "b": np.zeros(130)}
    for opt in (fd.optim.scale_by_factored_rms(),
                fd.optim.adafactor(1e-2, clipping_threshold=None,
                                   multiply_by_parameter_scale=False)):
        sharded = parallel.sharded(opt)
        with pytest.raises(TypeError, match=r"keeps a state of \d+ entries for a \(128, 130\) "
                                            r"leaf but of \d+ for its entries laid flat: it "
                                            r"reads the leaves' shapes"):
            sharded.init(params)
        small = {"w": np.ones((4, 5)), "b": np.ones(5)}  # unfactored: elementwise, accepted
        grads = fd.tree.map(lambda p: p * 0.5, small)
        got, _ = sharded.step(sharded.init(small), grads, small)
        updates, _ = opt.update(opt.init(small), grads, small)
        for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(fd.optim.apply_updates(small,
                                                                                updates))):
            np.testing.assert_allclose(a, b, rtol=1e-14)


def test_an_optimizer_taking_other_keywords_is_refused_without_speaking_of_the_loss():
    opt = fd.optim.sam(fd.optim.sgd(0.1), fd.optim.sgd(0.05))
    with pytest.raises(TypeError, match=r"update takes grad_fn=, which a sharded step does "
                                        r"not pass: take data_parallel's mean gradients"):
        parallel.sharded(opt)


@pytest.mark.parametrize("comm", [5, "world", object()])
def test_a_comm_that_is_no_communicator_is_refused_when_made_as_data_parallels_is(comm):
    # it was taken, and refused only at init
    for make in (lambda: parallel.sharded(fd.optim.sgd(0.1), comm=comm),
                 lambda: parallel.data_parallel(lambda p, x: (0.0, p), comm=comm)):
        with pytest.raises(TypeError, match=r"comm must be an mpi4py communicator"):
            make()
