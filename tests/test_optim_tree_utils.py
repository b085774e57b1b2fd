"""optim.tree_get / tree_set / tree_get_all_with_path: a state's value by name (optax's
tree_utils). Reading and changing an inject_hyperparams learning rate deep in a chain,
ambiguity and missing names, the stateless stages skipped, no mutation, and a float64 run
whose learning rate is changed mid-way by tree_set against optax's."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from funcdl import io, optim, tree
from funcdl.optim import tree_get, tree_get_all_with_path, tree_set


def _params() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"b": rng.normal(size=3), "w": rng.normal(size=(4, 3))}


def _grad(p: dict[str, Any]) -> dict[str, Any]:
    return {k: x + x**3 + 0.3 for k, x in p.items()}  # of sum(p²/2 + p⁴/4 + 0.3·p)


def _chain() -> optim.GradientTransformation:
    return optim.chain(optim.clip_by_global_norm(1.0),
                       optim.inject_hyperparams(optim.adam)(lr=1e-2))


def test_get_reads_the_injected_learning_rate_deep_in_a_chain():
    state = _chain().init(_params())
    assert tree_get(state, "lr") == pytest.approx(1e-2)
    assert tree_get(state, "lr") is state.states[1].hyperparams["lr"]
    assert tree_get(state, "b1") == pytest.approx(0.9)


def test_set_changes_the_rate_the_next_update_uses_and_mutates_nothing():
    opt, p = _chain(), _params()
    state = opt.init(p)
    before = state.states[1].hyperparams["lr"]
    new = tree_set(state, lr=1e-3)
    assert state.states[1].hyperparams["lr"] is before  # the old state is as it was
    assert new.states[0] is state.states[0]              # untouched parts are shared
    g = {k: np.full_like(x, 0.1) for k, x in p.items()}  # under the clip: Adam's step is lr
    u_old, _ = opt.update(state, g, p)
    u_new, _ = opt.update(new, g, p)
    np.testing.assert_allclose(u_old["w"], -1e-2, rtol=1e-6)
    np.testing.assert_allclose(u_new["w"], -1e-3, rtol=1e-6)  # a 10x factor would show


def test_stateless_stage_named_like_the_key_is_skipped():
    # every alias has a stage named 'lr' holding EmptyState(): not a value
    state = optim.adam(1e-2).init(_params())
    assert "lr" in state.states
    assert tree_get(state, "lr") is None
    assert tree_get(state, "lr", default=7) == 7
    assert tree_get_all_with_path(state, "lr") == []
    with pytest.raises(KeyError, match="only under inject_hyperparams"):
        tree_set(state, lr=1e-3)


def test_several_matches_raise_naming_the_paths_and_filtering_picks_one():
    state = _chain().init(_params())
    paths = [p for p, _ in tree_get_all_with_path(state, "count")]
    assert paths == [".states[1].count", ".states[1].inner_state.states['adam'].count",
                     ".states[1].inner_state.count", ".count"]
    with pytest.raises(KeyError, match=r"4 values are named 'count', at \.states\[1\]\.count"):
        tree_get(state, "count")
    assert tree_get(state, "count", filtering=lambda path, v: path == ".count") == 0
    with pytest.raises(TypeError, match="filtering must be a function"):
        tree_get(state, "count", filtering="count")


def test_namedtuple_class_name_matches_the_whole_record():
    state = _chain().init(_params())
    adam = tree_get(state, "ScaleByAdamState")
    assert isinstance(adam, optim.ScaleByAdamState)
    assert adam is state.states[1].inner_state.states["adam"]
    zeroed = adam._replace(mu=tree.map(np.ones_like, adam.mu))
    new = tree_set(state, ScaleByAdamState=zeroed)
    assert new.states[1].inner_state.states["adam"] is zeroed


def test_nested_matches_are_all_found_and_set():
    opt = optim.apply_if_finite(optim.apply_if_finite(optim.sgd(1.0), 2), 3)
    state = opt.init(_params())
    assert [p for p, _ in tree_get_all_with_path(state, "notfinite_count")] == [
        ".notfinite_count", ".inner_state.notfinite_count"]
    assert len(tree_get_all_with_path(state, "inner_state")) == 2  # as optax finds them
    new = tree_set(state, notfinite_count=np.int64(1))
    assert new.notfinite_count == 1 and new.inner_state.notfinite_count == 1
    assert state.notfinite_count == 0 and state.inner_state.notfinite_count == 0


def test_containers_keep_their_types_and_keys_of_another_type_do_not_match():
    t = OrderedDict([("a", [1.0, {"x": 2.0}]), ("b", (3.0,))])
    new = tree_set(t, x=5.0)
    assert type(new) is OrderedDict and type(new["a"]) is list and new["a"][1]["x"] == 5.0
    assert new["b"] is t["b"] and t["a"][1]["x"] == 2.0
    labels = {0: np.zeros(2), 1: np.ones(2)}
    assert tree_get(labels, 1) is labels[1]
    assert tree_get(labels, True) is None and tree_get(labels, 1.0) is None
    with pytest.raises(KeyError, match="nothing in the tree is named 'y'"):
        tree_set(t, y=1.0)


def test_plateau_scale_read_by_name_matches_optax(jax64):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp
    ours = optim.chain(optim.sgd(0.1), optim.reduce_on_plateau(0.5, 1, cooldown=0))
    theirs = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau(0.5, 1, cooldown=0))
    p = _params()
    s, t = ours.init(p), theirs.init({k: jnp.asarray(x) for k, x in p.items()})
    scales = []
    for step in range(12):
        value = 1.0 / (1 + step) if step < 4 else 0.2  # improves, then a plateau
        _, s = ours.update(s, _grad(p), p, value=value)
        _, t = theirs.update({k: jnp.asarray(x) for k, x in _grad(p).items()}, t, None,
                             value=value)
        scales.append(float(tree_get(s, "scale")))
        assert float(tree_get(s, "scale")) == float(optax.tree_utils.tree_get(t, "scale"))
    assert min(scales) < 1.0  # the plateau was met: the check saw a change of scale


def test_rate_changed_mid_run_by_tree_set_matches_optax_in_float64(jax64):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp
    ours = _chain()
    theirs = optax.chain(optax.clip_by_global_norm(1.0),
                         optax.inject_hyperparams(optax.adam)(learning_rate=1e-2))
    p = _params()
    q = {k: jnp.asarray(x) for k, x in p.items()}
    s, t = ours.init(p), theirs.init(q)
    for step in range(10):
        if step == 4:
            s = tree_set(s, lr=3e-3)
            t = optax.tree_utils.tree_set(t, learning_rate=jnp.asarray(3e-3))
        u, s = ours.update(s, _grad(p), p)
        v, t = theirs.update({k: jnp.asarray(x) for k, x in _grad(q).items()}, t, q)
        p, q = optim.apply_updates(p, u), optax.apply_updates(q, v)
        for k in p:
            np.testing.assert_allclose(p[k], np.asarray(q[k]), rtol=0, atol=1e-12)
    assert float(tree_get(s, "lr")) == pytest.approx(3e-3)


def test_a_python_number_keeps_the_replaced_values_dtype_so_a_checkpoint_loads(tmp_path):
    p = {k: x.astype(np.float32) for k, x in _params().items()}
    opt = _chain()
    new = tree_set(opt.init(p), lr=1e-3)
    lr = tree_get(new, "lr")
    assert type(lr) is np.ndarray and lr.dtype == np.float32 and lr.shape == ()
    path = tmp_path / "state.npz"
    io.save(path, new)  # a float64 lr here: io.load's like= check refused it
    loaded = io.load(path, like=opt.init(p))
    assert tree_get(loaded, "lr") == np.float32(1e-3)
    counted = tree_set(new, lambda path, v: path == ".count", count=3)
    assert type(counted.count) is np.int64 and counted.count == 3
    with pytest.raises(ValueError, match="replaces an integer value"):
        tree_set(new, lambda path, v: path == ".count", count=2.5)
    with pytest.raises(KeyError, match="filtering comes first, by position"):
        tree_set(new, count=3, filtering=lambda path, v: path == ".count")


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, float("nan"), float("inf"), 1e30])
def test_a_number_an_integer_leaf_cannot_hold_is_refused_by_name(value: Any) -> None:
    # NumPy's OverflowError / 'cannot convert float NaN' (or, for 1e30, a cast warning and
    # a wrapped count) named neither tree_set nor the leaf's dtype
    state = _chain().init(_params())
    with pytest.raises(ValueError, match=r"^tree_set: .* replaces an integer value \(int64\)"):
        tree_set(state, lambda path, v: path == ".count", count=value)


def test_a_key_inside_a_value_another_keyword_replaces_is_named_so() -> None:
    state = {"outer": {"inner": np.float32(1.0), "other": np.float32(2.0)}}
    with pytest.raises(KeyError, match=r"'inner' \(at \['outer'\]\['inner'\]\) lies "
                                       r"inside a value .*'outer'.* two calls"):
        optim.tree_set(state, outer={"inner": np.float32(3.0)}, inner=4.0)
    with pytest.raises(KeyError, match="nothing in the tree is named 'absent'"):
        optim.tree_set(state, absent=1.0)
    out = optim.tree_set(optim.tree_set(state, outer={"inner": np.float32(3.0)}), inner=4.0)
    assert out == {"outer": {"inner": np.float32(4.0)}}
