"""Optimizers on arrays that went through pickle (a torch.save-style checkpoint, a state sent
back from a sweep's worker process): their dtype equals np.dtype('float32') but is another
object, and NumPy carries that object on through arithmetic. The run must not notice: the
same numbers, bit for bit, as from the canonical dtypes (no float64 norms in place of
float32 BLAS, no fast path skipped). Also: float64 steps past float32's range cast into
float32 params are inf without a warning, and inject_hyperparams keeps a hyperparameter
replaced in the state in the dtype init gave it, so io.load(like=init state) reads it."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import pytest
from test_fuzz_api_optim import OPTS
from test_fuzz_api_optim import P as CATALOGUE_P

import funcdl as fd
from funcdl import optim, tree
from funcdl.optim._base import _fused

K = 4  # steps, each with its own grads: a later step reads state the earlier ones wrote
_rng = np.random.default_rng(0)
# the catalogue's shapes (its line searches hold grads of them), with values whose norms
# round differently in float32 and float64
P = {k: _rng.standard_normal(np.shape(x)).astype(np.float32) for k, x in CATALOGUE_P.items()}
GS = [{k: _rng.standard_normal(np.shape(x)).astype(np.float32) for k, x in P.items()}
      for _ in range(K)]
G = GS[0]
# lookahead on LookaheadParams itself: the catalogue's wrapper rebuilds them from bare params
# at each call, and its updates do not apply to bare params
MAKE = {**{k: v[0] for k, v in OPTS.items()},
        "lookahead": lambda: optim.lookahead(optim.adam(), 2, 0.5, reset_state=True)}


def _pickled(t: Any) -> Any:
    return pickle.loads(pickle.dumps(t))


def _steps(oid: str, params: Any, gs: Any, state: Any) -> tuple[Any, Any, Any]:
    opt, ups = MAKE[oid](), []
    for grads in gs:
        u, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, u)
        ups.append(u)
    return ups, params, state


def _same_bits(a: Any, b: Any) -> None:
    assert tree.structure(a) == tree.structure(b)
    for (path, x), y in zip(tree.leaves_with_path(a), tree.leaves(b), strict=True):
        if isinstance(x, (np.ndarray, np.generic)):
            assert type(x) is type(y) and x.dtype == y.dtype and x.shape == y.shape, path
            assert x.tobytes() == y.tobytes(), f"{path}: {x!r} != {y!r}"
        else:
            assert type(x) is type(y) and (x == y or (x != x and y != y)), path


def test_pickling_makes_equal_dtypes_that_are_not_the_canonical_objects() -> None:
    # the premise: were this ever canonical again, the tests below would prove nothing
    x = _pickled(G)["w"]
    assert x.dtype == np.float32 and x.dtype is not np.dtype(np.float32)
    assert (x + 1).dtype is not np.dtype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("oid", sorted(MAKE))
def test_a_run_from_pickled_params_grads_and_state_is_bit_identical(oid: str, dtype: Any
                                                                   ) -> None:
    params, grads = tree.astype(P, dtype), tree.astype(GS, dtype)
    if oid == "lookahead":
        params = optim.LookaheadParams.init_synced(params)
    state = MAKE[oid]().init(params)
    want = _steps(oid, params, grads, state)
    got = _steps(oid, *_pickled((params, grads, state)))
    _same_bits(got, want)


BIGGER = {"w": _rng.standard_normal((16, 8)).astype(np.float32),
          "b": _rng.standard_normal(8).astype(np.float32)}
NORMED = {"lamb": lambda: optim.lamb(1e-2), "lars": lambda: optim.lars(1e-2),
          "fromage": lambda: optim.fromage(1e-2), "muon": lambda: optim.muon(1e-2),
          "clip_by_global_norm": lambda: optim.chain(optim.trace(0.9),
                                                     optim.clip_by_global_norm(1e-3))}


@pytest.mark.parametrize("oid", sorted(NORMED))
def test_norms_of_pickled_float32_leaves_are_float32s(oid: str) -> None:
    # leaves of a size whose float32 and float64 norms round apart
    gs = [BIGGER, tree.map(lambda x: x * 2, BIGGER)]
    opt = NORMED[oid]()

    def run(params: Any, gs: Any, state: Any) -> Any:
        for g in gs:
            u, state = opt.update(state, g, params)
            params = optim.apply_updates(params, u)
        return u, params, state

    want = run(BIGGER, gs, opt.init(BIGGER))
    _same_bits(run(*_pickled((BIGGER, gs, opt.init(BIGGER)))), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pickled_leaves_beside_canonical_ones_still_take_the_fused_path(dtype: Any) -> None:
    # the one-call-over-all-leaves path of the elementwise optimizers (adam's and others')
    g = tree.astype(G, dtype)
    pickled = _pickled(g)
    out = _fused(lambda a, b: (a + b,), 1, (g, pickled))
    assert out is not None
    _same_bits(out[0], tree.map(lambda a, b: a + b, g, pickled))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_of_pickled_grads_is_the_same_float(dtype: Any) -> None:
    g = tree.astype(BIGGER, dtype)
    assert optim.global_norm(_pickled(g)) == optim.global_norm(g)
    # mixed: canonical and pickled leaves in one tree
    assert optim.global_norm({"a": g["w"], "b": _pickled(g["b"])}) == optim.global_norm(g)


# ---------------------------------------------------------------------------- overflow

P32 = {"w": np.ones(2, np.float32)}
BIG = {"w": np.full(2, -1e300)}  # float64, past float32's range
INF32 = {"w": np.full(2, -np.inf, np.float32)}  # BIG cast to float32, as JAX and torch cast


def _stepped(opt: Any) -> Any:
    return lambda u: opt.update(opt.init(P32), u, P32)[0]["w"]


@pytest.mark.parametrize("call", [
    lambda u: optim.apply_updates(P32, u)["w"],
    lambda u: optim.apply_updates({"w": np.float32(1.0)}, {"w": u["w"][0]})["w"],
    _stepped(optim.sm3(0.1)), _stepped(optim.scale_by_sm3()), _stepped(optim.scale_by_lbfgs()),
], ids=["apply_updates", "apply_updates-scalar", "sm3", "scale_by_sm3", "scale_by_lbfgs"])
def test_float64_steps_past_float32s_range_cast_to_inf_without_a_warning(call: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, want = call(BIG), call(INF32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, want)  # sm3 and lbfgs then make inf/inf = NaN
    assert not np.isfinite(out).any()


# ---------------------------------------------------------------------------- inject

@pytest.mark.parametrize("new_lr", [np.asarray(1e-4), np.float64(1e-4), 1e-4,
                                    np.asarray(1e-4, np.float16)],
                         ids=["0d-float64", "float64-scalar", "python-float", "0d-float16"])
def test_a_hyperparameter_replaced_in_the_state_keeps_inits_dtype(new_lr: Any, tmp_path: Any
                                                                  ) -> None:
    p = {"w": np.ones((3, 2), np.float32)}
    g = {"w": np.full((3, 2), 0.5, np.float32)}
    opt = optim.inject_hyperparams(optim.adam)(lr=1e-2)
    init = opt.init(p)
    _, s = opt.update(init, g, p)
    s = s._replace(hyperparams={**s.hyperparams, "lr": new_lr})  # the docstring's recipe
    u, s = opt.update(s, g, p)
    assert u["w"].dtype == np.float32
    for k, v in s.hyperparams.items():
        assert type(v) is np.ndarray and v.dtype == init.hyperparams[k].dtype, k
    assert s.hyperparams["lr"] == np.asarray(new_lr).astype(np.float32)
    fd.io.save(tmp_path / "s.npz", s)
    back = fd.io.load(tmp_path / "s.npz", like=init)
    _same_bits(back, s)
    # and the same update from there as from the state in memory
    _same_bits(opt.update(back, g, p), opt.update(s, g, p))


@pytest.mark.parametrize("p_dtype,g_dtype", [(np.float32, np.float64),
                                              (np.float64, np.float32)])
def test_without_params_each_hyperparameter_keeps_its_dtype(p_dtype, g_dtype) -> None:
    """An update without params cannot know init's dtype: each hyperparameter keeps the
    one it has in the state, not the grads' (float64 grads made a float32 state's float64,
    which io.load(like=init) refused; float32 grads rounded a float64 run's lr)."""
    p = {"w": np.ones(3, p_dtype)}
    opt, plain = optim.inject_hyperparams(optim.adam)(lr=0.1), optim.adam(0.1)
    s, s_plain = opt.init(p), plain.init(p)
    for i in range(3):
        g = {"w": np.full(3, 0.5 + i, g_dtype)}
        u, s = opt.update(s, g)
        u_plain, s_plain = plain.update(s_plain, g)
        assert {v.dtype for k, v in s.hyperparams.items() if k != "count"} == {
            np.dtype(p_dtype)}
        np.testing.assert_array_equal(u["w"], u_plain["w"])


def test_hyperparam_dtype_wins_over_a_replaced_values_own() -> None:
    p = {"w": np.ones(3, np.float32)}
    opt = optim.inject_hyperparams(optim.sgd, hyperparam_dtype=np.float64)(lr=0.1)
    s = opt.init(p)
    s = s._replace(hyperparams={**s.hyperparams, "lr": np.asarray(0.5, np.float32)})
    _, s = opt.update(s, {"w": np.ones(3, np.float32)}, p)
    assert s.hyperparams["lr"].dtype == np.float64


def test_a_replaced_hyperparameter_is_cast_as_optax_casts_it() -> None:
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    p = {"w": np.ones((3, 2), np.float32)}
    g = {"w": np.full((3, 2), 0.5, np.float32)}
    ours = optim.inject_hyperparams(optim.adam)(lr=1e-2)
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)
    s, t = ours.init(p), theirs.init(p)
    s = s._replace(hyperparams={**s.hyperparams, "lr": np.asarray(1e-4)})
    t.hyperparams["learning_rate"] = np.asarray(1e-4)
    u, s = ours.update(s, g, p)
    v, t = theirs.update(g, t, p)
    assert s.hyperparams["lr"].dtype == np.asarray(t.hyperparams["learning_rate"]).dtype
    np.testing.assert_allclose(u["w"], np.asarray(v["w"]), rtol=1e-6)
    assert jnp.asarray(t.hyperparams["learning_rate"]).dtype == jnp.float32


@pytest.mark.parametrize("p_dtype,value", [(np.float64, 0.05), (np.float32, np.asarray(1e-4)),
                                           (np.float64, np.float32(0.05))])
def test_a_replaced_value_without_params_takes_inits_dtype(p_dtype, value) -> None:
    """A value replaced in the state, then an update without params: stored in init's dtype
    (read from adam's moments), not its own (a float64 run's Python-float lr was rounded to
    float32; a float64 array stayed float64 in a float32 run), so io.load(like=init) takes
    the checkpoint."""
    p = {"w": np.ones(3, p_dtype)}
    opt = optim.inject_hyperparams(optim.adam)(lr=0.1)
    init = opt.init(p)
    s = init._replace(hyperparams={**init.hyperparams, "lr": value})
    _, s = opt.update(s, {"w": np.full(3, 0.5, p_dtype)})
    assert {v.dtype for v in s.hyperparams.values()} == {np.dtype(p_dtype)}
    assert tree.structure(s) == tree.structure(init)
    assert all(np.asarray(a).dtype == np.asarray(b).dtype
               for a, b in zip(tree.leaves(s), tree.leaves(init)))


def test_stateless_inner_without_params_takes_the_other_hyperparameters_dtype() -> None:
    p = {"w": np.ones(3, np.float64)}
    opt = optim.inject_hyperparams(optim.sgd)(lr=0.1, dampening=0.0)
    init = opt.init(p)
    s = init._replace(hyperparams={**init.hyperparams, "lr": 0.05})
    _, s = opt.update(s, {"w": np.full(3, 0.5, np.float32)}, None)
    assert s.hyperparams["lr"].dtype == np.float64 and s.hyperparams["lr"] == 0.05
