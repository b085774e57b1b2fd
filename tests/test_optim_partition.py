"""partition / multi_transform, freeze, selective_transform, apply_if_finite,
conditionally_transform / conditionally_mask, stateless / stateless_with_tree_map,
incremental_update and periodic_update: hand-computed values, dtypes, state fields, errors,
and float64 twins against optax 0.2.8 (skipped without it)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from funcdl import optim, tree
from funcdl.optim import EmptyState, MaskedState, adam, sgd
from funcdl.optim._conditional import (
    ApplyIfFiniteState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    apply_if_finite,
    conditionally_mask,
    conditionally_transform,
)
from funcdl.optim._partition import (
    MultiTransformState,
    PartitionState,
    freeze,
    multi_transform,
    partition,
    selective_transform,
)
from funcdl.optim._stateless import (
    incremental_update,
    periodic_update,
    stateless,
    stateless_with_tree_map,
)
from funcdl.optim._transforms import scale

P = {"s": np.float64(0.5), "w": np.arange(12.0).reshape(3, 4) / 10}
G = {"s": np.float64(-2.0), "w": np.full((3, 4), 0.5)}


def _by_ndim(p: Any) -> Any:
    return tree.map(lambda x: "mat" if np.ndim(x) > 1 else "vec", p)


# ---------------------------------------------------------------------------- values

def test_partition_each_group_gets_its_own_transform():
    opt = partition({"mat": scale(-0.1), "vec": scale(3.0)}, {"s": "vec", "w": "mat"})
    u, state = opt.update(opt.init(P), G, P)
    assert u["s"] == -6.0  # 3·(-2), not -0.1·(-2)
    np.testing.assert_array_equal(u["w"], np.full((3, 4), -0.05))
    assert isinstance(state, PartitionState) and state._fields == ("inner_states",)
    assert MultiTransformState is PartitionState and multi_transform is partition
    assert list(state.inner_states) == ["mat", "vec"]
    assert isinstance(state.inner_states["mat"], MaskedState)


def test_partition_inner_state_covers_its_leaves_only():
    opt = partition({"mat": adam(0.1), "vec": sgd(1.0)}, _by_ndim)
    state = opt.init(P)
    mu = state.inner_states["mat"].inner_state.states["adam"].mu
    assert mu["s"] is None and mu["w"].shape == (3, 4)
    u, _ = opt.update(state, G, P)
    assert u["s"] == 2.0  # sgd: -lr·g
    np.testing.assert_allclose(u["w"], -0.1, rtol=1e-6)  # adam's first step: -lr·sign(g)


def test_partition_prefix_labels_and_unused_transform():
    params = {"embed": {"table": np.ones((4, 2))}, "dense": {"w": np.ones((2, 3)),
                                                             "b": np.zeros(3)}}
    grads = tree.map(np.ones_like, params)
    opt = partition({"embed": scale(-1.0), "dense": scale(-2.0), "spare": scale(5.0)},
                    {"embed": "embed", "dense": "dense"})
    u, _ = opt.update(opt.init(params), grads, params)
    np.testing.assert_array_equal(u["embed"]["table"], -np.ones((4, 2)))
    np.testing.assert_array_equal(u["dense"]["b"], -2 * np.ones(3))


def test_partition_keeps_float32():
    p32 = tree.astype(P, np.float32)
    opt = partition({"mat": adam(0.1), "vec": sgd(0.5)}, _by_ndim)
    u, state = opt.update(opt.init(p32), tree.astype(G, np.float32), p32)
    assert all(np.asarray(x).dtype == np.float32 for x in tree.leaves(u))
    assert state.inner_states["mat"].inner_state.states["adam"].nu["w"].dtype == np.float32


def test_freeze_zeros_masked_leaves_only():
    opt = freeze({"s": True, "w": False})
    u, state = opt.update(opt.init(P), G, P)
    assert u["s"] == 0.0
    np.testing.assert_array_equal(u["w"], G["w"])
    assert isinstance(state, MaskedState)
    u, _ = freeze(True).update(freeze(True).init(P), G)
    assert all(np.all(x == 0) for x in tree.leaves(u))


def test_selective_transform_keeps_frozen_leaves_out_of_the_optimizer():
    opt = selective_transform(sgd(1.0, momentum=0.9), freeze_mask={"s": False, "w": True})
    state = opt.init(P)
    assert set(state.inner_states) == {"train", "freeze"}
    trace = state.inner_states["train"].inner_state.states["momentum"].trace
    assert trace["w"] is None
    u, _ = opt.update(state, G, P)
    assert u["s"] == 2.0 and np.all(u["w"] == 0)
    fn = selective_transform(sgd(1.0), freeze_mask=lambda p: tree.map(lambda x: np.ndim(x) > 1, p))
    u2, _ = fn.update(fn.init(P), G, P)
    assert u2["s"] == 2.0 and np.all(u2["w"] == 0)


def test_apply_if_finite_skips_then_gives_up():
    opt = apply_if_finite(sgd(1.0), 2)
    state = opt.init(P)
    assert isinstance(state, ApplyIfFiniteState)
    assert state._fields == ("notfinite_count", "last_finite", "total_notfinite",
                             "inner_state")
    bad = {**G, "s": np.float64(np.inf)}
    seen = []
    for g in [G, bad, bad, bad, bad, G, bad]:
        u, state = opt.update(state, g, P)
        seen.append((float(u["w"][0, 0]), int(state.notfinite_count),
                     bool(state.last_finite), int(state.total_notfinite)))
    assert seen == [(-0.5, 0, True, 0), (0.0, 1, False, 1), (0.0, 2, False, 2),
                    (-0.5, 3, False, 3), (-0.5, 4, False, 4), (-0.5, 0, True, 4),
                    (0.0, 1, False, 5)]


def test_apply_if_finite_keeps_inner_state_on_a_skip():
    opt = apply_if_finite(adam(0.1), 0)
    state = opt.init(P)
    _, s1 = opt.update(state, {**G, "s": np.float64(np.nan)}, P)  # 1 > 0: applied
    assert s1.inner_state.states["adam"].count == 1
    opt = apply_if_finite(adam(0.1), 1)
    _, s2 = opt.update(opt.init(P), {**G, "s": np.float64(np.nan)}, P)
    assert s2.inner_state.states["adam"].count == 0


def test_conditionally_transform_and_mask():
    ct = conditionally_transform(scale(-1.0), lambda step: step % 2 == 1)
    cm = conditionally_mask(scale(-1.0), lambda step: step % 2 == 1)
    st, sm = ct.init(P), cm.init(P)
    assert st._fields == ("inner_state", "step") and sm._fields == ("step", "inner_state")
    assert isinstance(st, ConditionallyTransformState)
    assert isinstance(sm, ConditionallyMaskState)
    ut, st = ct.update(st, G, P)
    um, sm = cm.update(sm, G, P)
    assert ut["s"] == -2.0 and um["s"] == 0.0  # step 0: passed through / zeroed
    ut, st = ct.update(st, G, P)
    um, sm = cm.update(sm, G, P)
    assert ut["s"] == 2.0 and um["s"] == 2.0 and st.step == 2 and sm.step == 2


def test_conditionally_forwards_extra_args():
    seen = []

    def cond(step: Any, value: Any = None) -> bool:
        seen.append(value)
        return True

    opt = conditionally_transform(scale(1.0), cond, forward_extra_args=True)
    opt.update(opt.init(P), G, P, value=3.0)
    assert seen == [3.0]


def test_stateless_and_tree_map():
    opt = stateless(lambda g, p: tree.map(lambda x, y: x + 2 * y, g, p))
    u, s = opt.update(opt.init(P), G, P)
    assert u["s"] == -1.0 and isinstance(s, EmptyState)
    opt = stateless_with_tree_map(lambda g, p: -g if p is None else g - p)
    u, _ = opt.update(opt.init(P), G, P)
    np.testing.assert_array_equal(u["w"], G["w"] - P["w"])
    u, _ = opt.update(opt.init(P), G)
    assert u["s"] == 2.0
    g32 = tree.astype(G, np.float32)
    u, _ = opt.update(opt.init(P), g32)
    assert all(np.asarray(x).dtype == np.float32 for x in tree.leaves(u))


def test_incremental_and_periodic_update():
    new, old = {"a": np.array([1.0, 3.0], np.float32)}, {"a": np.array([5.0, 7.0], np.float32)}
    got = incremental_update(new, old, 0.25)
    np.testing.assert_array_equal(got["a"], [4.0, 6.0])  # 0.25·new + 0.75·old
    assert got["a"].dtype == np.float32
    assert periodic_update(new, old, np.int64(6), 3) is new
    assert periodic_update(new, old, 7, 3) is old


def test_inf_nan_pass_silently():
    with np.errstate(all="raise"):
        got = incremental_update({"a": np.array([np.inf])}, {"a": np.array([1.0])}, 0.5)
    assert np.isinf(got["a"][0])


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make", [
    lambda: partition({"mat": sgd(0.1), "vec": sgd(0.1)}, _by_ndim),
    lambda: freeze({"s": True, "w": False}),
    lambda: selective_transform(sgd(0.1), freeze_mask=False),
    lambda: apply_if_finite(sgd(0.1), 2),
    lambda: conditionally_transform(sgd(0.1), lambda s: True),
    lambda: conditionally_mask(sgd(0.1), lambda s: True),
    lambda: stateless(lambda g, p: g),
    lambda: stateless_with_tree_map(lambda g, p: g)])
def test_swapped_update_raises(make):
    opt = make()
    with pytest.raises(TypeError, match=r"\.update: the first argument"):
        opt.update(G, opt.init(P), P)


def test_partition_bad_inputs():
    with pytest.raises(TypeError, match="partition: transforms must be a dict"):
        partition([sgd(0.1)], "a")
    with pytest.raises(TypeError, match=r"partition: transforms\['a'\] must be a funcdl"):
        partition({"a": sgd}, "a")
    with pytest.raises(ValueError, match="partition: transforms is empty"):
        partition({}, "a")
    with pytest.raises(ValueError, match=r"partition: param_labels\['w'\] is 'x', which has "
                                         r"no transform"):
        partition({"a": sgd(0.1)}, {"s": "a", "w": "x"})
    with pytest.raises(TypeError, match=r"partition: param_labels\['w'\] is a ndarray"):
        partition({"a": sgd(0.1)}, {"s": "a", "w": np.zeros(2)})
    opt = partition({"a": sgd(0.1)}, {"s": "a", "x": "a"})
    with pytest.raises(ValueError, match=r"partition.init: tree structure mismatch at the "
                                         r"root: params has .*param_labels has"):
        opt.init(P)
    opt = partition({"a": sgd(0.1)}, lambda p: tree.map(lambda x: "b", p))
    with pytest.raises(ValueError, match=r"partition.init: param_labels\['s'\] is 'b'"):
        opt.init(P)
    opt = partition({"a": sgd(0.1)}, "a")
    with pytest.raises(ValueError, match=r"partition.update: .*grads"):
        opt.update(opt.init(P), G, {"s": P["s"]})
    with pytest.raises(ValueError, match=r"partition\.update: the state's inner_states"):
        opt.update(PartitionState({}), G, P)


def test_wrappers_bad_inputs():
    with pytest.raises(TypeError, match="freeze: the mask must hold a bool"):
        freeze({"s": "yes", "w": True})
    with pytest.raises(ValueError, match=r"freeze.init: tree structure mismatch"):
        freeze({"s": True}).init(P)
    opt = freeze({"s": True, "w": False})
    with pytest.raises(ValueError, match=r"freeze\.update: .*\['w'\]"):
        opt.update(opt.init(P), {**G, "w": G["w"].T}, P)
    with pytest.raises(TypeError, match=r"freeze\.update: grads\['w'\] has dtype complex"):
        opt.update(opt.init(P), {**G, "w": G["w"] + 0j})
    opt = stateless_with_tree_map(lambda g, p: g)
    with pytest.raises(TypeError, match=r"stateless_with_tree_map\.update: params\['w'\]"):
        opt.update(opt.init(P), G, {**P, "w": P["w"] + 0j})
    with pytest.raises(TypeError, match="selective_transform: the mask must hold a bool"):
        selective_transform(sgd(0.1), freeze_mask={"s": 1.0, "w": True})
    with pytest.raises(TypeError, match="apply_if_finite: inner must be a funcdl"):
        apply_if_finite(None, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="apply_if_finite: max_consecutive_errors"):
        apply_if_finite(sgd(0.1), -1)
    with pytest.raises(TypeError, match="conditionally_mask: should_transform_fn must be"):
        conditionally_mask(sgd(0.1), 3)  # type: ignore[arg-type]
    opt = conditionally_transform(sgd(0.1), lambda s: 1)
    with pytest.raises(TypeError, match=r"conditionally_transform\.update: should_transform_fn"):
        opt.update(opt.init(P), G, P)
    with pytest.raises(TypeError, match="stateless: f must be a function"):
        stateless(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stateless_with_tree_map: f must be a function"):
        stateless_with_tree_map("f")  # type: ignore[arg-type]
    opt = stateless(lambda g, p: {"s": g["s"]})
    with pytest.raises(ValueError, match=r"stateless.update: .*f\(grads, params\)"):
        opt.update(opt.init(P), G, P)
    opt = stateless(lambda g, p: g)
    with pytest.raises(TypeError, match=r"stateless.update: grads\['w'\] has dtype int64"):
        opt.update(opt.init(P), {**G, "w": np.ones((3, 4), np.int64)}, P)
    with pytest.raises(ValueError, match=r"incremental_update: tree structure mismatch"):
        incremental_update({"a": 1.0, "b": 1.0}, {"a": 1.0, "c": 1.0}, 0.5)
    with pytest.raises(ValueError, match="incremental_update: step_size"):
        incremental_update(P, P, 1.5)
    with pytest.raises(TypeError, match=r"incremental_update: old_tensors\['w'\] has dtype"):
        incremental_update(P, {**P, "w": np.ones((3, 4), int)}, 0.5)
    with pytest.raises(ValueError, match="periodic_update: update_period"):
        periodic_update(P, P, 3, 0)
    with pytest.raises(ValueError, match=r"periodic_update: .*\['w'\]"):
        periodic_update(P, {**P, "w": P["w"].T}, 3, 2)


# ---------------------------------------------------------------------------- optax twins

def _optax() -> Any:
    """optax; its callers take conftest's jax64 (float64 on for the test)."""
    return pytest.importorskip("optax")


def _grad(p: dict[str, Any], k: int, infs: tuple[int, ...] = ()) -> dict[str, Any]:
    """Gradients of a fixed quartic-plus-bilinear loss at ``p`` (so each run feeds back its
    own params), ``g['s']`` inf at the steps ``infs``."""
    w = np.asarray(p["w"])
    s = float(np.asarray(p["s"]))
    g = {"s": np.float64(4 * s ** 3 + w.sum() - 0.3), "w": w ** 3 - 0.5 * w + s}
    if k in infs:
        g["s"] = np.float64(np.inf)
    return g


def _twin(ours: Any, theirs: Any, steps: int = 10, infs: tuple[int, ...] = ()) -> None:
    optax = _optax()
    import jax.numpy as jnp
    p = P
    q = tree.map(jnp.asarray, p)
    s, t = ours.init(p), theirs.init(q)
    for k in range(steps):
        g = _grad(p, k, infs)
        u, s = ours.update(s, g, p)
        v, t = theirs.update(tree.map(jnp.asarray, g), t, q)
        p, q = tree.map(lambda a, b: np.asarray(a + b), p, u), optax.apply_updates(q, v)
        for a, b in zip(tree.leaves(p), tree.leaves(dict(q)), strict=True):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("jax64")
def test_twin_partition():
    optax = _optax()
    labels = {"s": "vec", "w": "mat"}
    _twin(partition({"mat": adam(0.05), "vec": sgd(0.01, momentum=0.9)}, labels),
          optax.partition({"mat": optax.adam(0.05), "vec": optax.sgd(0.01, momentum=0.9)},
                          labels))
    _twin(multi_transform({"mat": sgd(0.02), "vec": adam(0.1)}, _by_ndim),
          optax.multi_transform({"mat": optax.sgd(0.02), "vec": optax.adam(0.1)},
                                lambda p: {"s": "vec", "w": "mat"}))


@pytest.mark.usefixtures("jax64")
def test_twin_freeze_and_selective():
    optax = _optax()
    chained_ours = __import__("funcdl").optim.chain(freeze({"s": True, "w": False}), sgd(0.1))
    _twin(chained_ours, optax.chain(optax.freeze({"s": True, "w": False}), optax.sgd(0.1)))
    _twin(selective_transform(adam(0.05), freeze_mask={"s": False, "w": True}),
          optax.selective_transform(optax.adam(0.05), freeze_mask={"s": False, "w": True}))


@pytest.mark.usefixtures("jax64")
def test_twin_apply_if_finite():
    optax = _optax()
    # inf at steps 3, 4, 5 and 8: all skipped with 3 allowed in a row
    _twin(apply_if_finite(adam(0.05), 3), optax.apply_if_finite(optax.adam(0.05), 3),
          infs=(3, 4, 5, 8))
    for limit in (0, 1, 2):  # some applied: compare the updates and counters at fixed params
        ours, theirs = apply_if_finite(sgd(0.01), limit), optax.apply_if_finite(
            optax.sgd(0.01), limit)
        s, t = ours.init(P), theirs.init(P)
        for k in range(10):
            g = _grad(P, k, (3, 4, 5, 8))
            u, s = ours.update(s, g, P)
            v, t = theirs.update(g, t, P)
            np.testing.assert_array_equal(u["w"], np.asarray(v["w"]))
            np.testing.assert_array_equal(u["s"], np.asarray(v["s"]))
            assert (int(s.notfinite_count), bool(s.last_finite), int(s.total_notfinite)) == (
                int(t.notfinite_count), bool(t.last_finite), int(t.total_notfinite))


@pytest.mark.usefixtures("jax64")
def test_twin_conditional():
    optax = _optax()
    _twin(conditionally_transform(adam(0.05), lambda step: step % 3 != 1),
          optax.conditionally_transform(optax.adam(0.05), lambda step: step % 3 != 1),
          steps=3)  # a pass-through g on both sides, then diverging params: 3 steps
    _twin(conditionally_mask(adam(0.05), lambda step: step % 3 != 1),
          optax.conditionally_mask(optax.adam(0.05), lambda step: step % 3 != 1), steps=3)


@pytest.mark.usefixtures("jax64")
def test_twin_stateless_and_target_updates():
    optax = _optax()
    import jax.numpy as jnp
    _twin(stateless(lambda g, p: tree.map(lambda a, b: -0.01 * a - 0.1 * b, g, p)),
          optax.stateless(lambda g, p: tree.map(lambda a, b: -0.01 * a - 0.1 * b, g, p)),
          steps=2)
    _twin(stateless_with_tree_map(lambda a, b: -0.01 * a - 0.1 * b),
          optax.stateless_with_tree_map(lambda a, b: -0.01 * a - 0.1 * b), steps=2)
    q = tree.map(jnp.asarray, P)
    r = tree.map(jnp.asarray, G)
    for step in (0.0, 0.3, 1.0):
        got = incremental_update(G, P, step)
        want = optax.incremental_update(r, q, step)
        for k in P:
            np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=1e-15)
    for steps in range(5):
        got = periodic_update(G, P, steps, 2)
        want = optax.periodic_update(r, q, steps, 2)
        for k in P:
            np.testing.assert_array_equal(got[k], np.asarray(want[k]))


def test_stateless_with_tree_map_checks_what_f_returns():
    params = {"w": np.ones(4)}
    for f, words in [(lambda g, p: g[:1], r"f\(g, p\) per leaf has \(1,\)"),
                     (lambda g, p: 1.0, r"f\(g, p\) per leaf has \(\)"),
                     (lambda g, p: g.astype(np.int64), "int64")]:
        opt = optim.stateless_with_tree_map(f)
        with pytest.raises((TypeError, ValueError), match=r"stateless_with_tree_map.update: "):
            opt.update(opt.init(params), {"w": np.ones(4)}, params)
        try:
            opt.update(opt.init(params), {"w": np.ones(4)}, params)
        except (TypeError, ValueError) as e:
            assert re.search(words, str(e)), str(e)
