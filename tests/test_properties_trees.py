"""Property tests (hypothesis) of trees: round trips (flatten / unflatten, ravel / unravel,
io.save / io.load) preserve everything; optimizers never mutate their inputs. Layer stacks
and losses: test_properties.py.

Examples are few and small (the whole module runs in seconds); ``deadline=None`` because a
first call may import or warm up BLAS.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import hypothesis.extra.numpy as hnp
import numpy as np
from _properties_util import SMALL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funcdl import io, optim, random, tree

# ---------------------------------------------------------------------------- (c) tree round trips

class Pair(NamedTuple):
    first: Any
    second: Any


DTYPES = [np.float32, np.float64, np.int32, np.bool_]
_arrays = st.sampled_from(DTYPES).flatmap(
    lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)))
_trees = st.recursive(
    st.one_of(_arrays, st.none()),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), kids, max_size=3),
        st.builds(Pair, kids, kids)),
    max_leaves=8)


def assert_same_tree(a: Any, b: Any, *, bits: bool, by_name: bool = False) -> None:
    """Same containers (a NamedTuple matched by class, or by name and fields when
    ``by_name``), and leaves of the same type, shape and dtype, equal bit for bit when
    ``bits`` (else equal, NaN equal to NaN)."""
    if isinstance(a, tuple) and hasattr(type(a), "_fields") and by_name:
        assert type(b).__name__ == type(a).__name__ and b._fields == a._fields, (a, b)
    else:
        assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            assert_same_tree(a[k], b[k], bits=bits, by_name=by_name)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y, bits=bits, by_name=by_name)
    elif a is not None:
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        if bits:
            assert a.tobytes() == b.tobytes()
        else:
            np.testing.assert_array_equal(a, b)  # NaN == NaN here, as in numpy.testing


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_trees)
def test_tree_round_trips_preserve_structure_dtypes_shapes_and_values(t):
    before = copy.deepcopy(t)

    leaves, treedef = tree.flatten(t)
    assert treedef == tree.structure(t)
    assert len(leaves) == treedef.num_leaves == len(tree.leaves(t))
    back = tree.unflatten(treedef, leaves)
    assert tree.structure(back) == treedef
    assert_same_tree(t, back, bits=True)
    assert all(x is y for x, y in zip(tree.leaves(back), leaves, strict=True))

    vector, unravel = tree.ravel(t)
    assert vector.ndim == 1 and vector.size == sum(np.size(x) for x in leaves)
    expected = np.result_type(*leaves) if leaves else np.dtype(np.float32)
    assert vector.dtype == expected
    assert_same_tree(t, unravel(vector), bits=False)

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tree.npz"
        io.save(path, t)
        assert_same_tree(t, io.load(path, like=t), bits=True)
        assert_same_tree(t, io.load(path), bits=True, by_name=True)
        assert tree.structure(io.load(path, like=t)) == treedef

    assert_same_tree(before, t, bits=True)  # nothing above touched its input


# ---------------------------------------------------------------------------- (d) optimizers

def _optimizer(draw: Any) -> tuple[str, optim.GradientTransformation]:
    lr = draw(st.sampled_from([1e-3, 0.1, optim.linear_schedule(0.0, 0.1, 3)]))
    kind = draw(st.sampled_from(["sgd", "adam", "adamw", "rmsprop", "adagrad", "chain"]))
    if kind == "sgd":
        momentum = draw(st.sampled_from([0.0, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        wd = draw(st.sampled_from([0.0, 1e-2]))
        return kind, optim.sgd(lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    if kind == "adam":
        return kind, optim.adam(lr, weight_decay=draw(st.sampled_from([0.0, 1e-2])))
    if kind == "adamw":
        return kind, optim.adamw(lr, weight_decay=draw(st.sampled_from([0.0, 1e-2])))
    if kind == "rmsprop":
        return kind, optim.rmsprop(lr, momentum=draw(st.sampled_from([0.0, 0.9])),
                                   centered=draw(st.booleans()),
                                   weight_decay=draw(st.sampled_from([0.0, 1e-2])))
    if kind == "adagrad":
        return kind, optim.adagrad(lr, lr_decay=draw(st.sampled_from([0.0, 0.1])),
                                   initial_accumulator_value=draw(st.sampled_from([0.0, 0.1])))
    return kind, optim.chain(optim.clip_by_global_norm(draw(st.sampled_from([0.5, 1e3]))),
                             optim.adam(lr))


@st.composite
def param_trees(draw: Any) -> tuple[Any, Any]:
    """``(params, grads)``: one random tree structure of float arrays, twice."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(st.lists(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
                           min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**32 - 1))
    keys = random.split(random.key(seed), 2 * len(shapes))
    p = [random.normal(k, s, dtype) for k, s in zip(keys[::2], shapes)]
    g = [random.normal(k, s, dtype) for k, s in zip(keys[1::2], shapes)]
    if draw(st.booleans()):
        g[0] = np.zeros_like(g[0])  # a zero gradient: no 0/0 anywhere

    def build(xs: list[np.ndarray]) -> Any:
        return {"layer": [{"w": xs[0]}, (*xs[1:],)], "none": None}

    return build(p), build(g)


def assert_identical(a: Any, b: Any) -> None:
    """Same structure, and every leaf of the same dtype, shape and bytes."""
    assert tree.structure(a) == tree.structure(b)
    for (path, x), y in zip(tree.leaves_with_path(a), tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), f"{path} changed"


@SMALL
@given(data=st.data(), trees=param_trees())
def test_optimizers_never_mutate_their_inputs(data, trees):
    kind, opt = _optimizer(data.draw)
    params, grads = trees
    params_0, grads_0 = copy.deepcopy(params), copy.deepcopy(grads)

    state = opt.init(params)
    assert_identical(params, params_0)
    structure = tree.structure(state)

    for _ in range(3):
        params_0, state_0 = copy.deepcopy(params), copy.deepcopy(state)
        updates, new_state = opt.update(state, grads, params)
        assert_identical(params, params_0)
        assert_identical(grads, grads_0)
        assert_identical(state, state_0)  # the state passed in is never written
        assert tree.structure(new_state) == structure, kind
        tree.check_same(state, new_state, ("state", "new state"), shapes=True, dtypes=True)
        tree.check_same(params, updates, ("params", "updates"), shapes=True, dtypes=True)

        updates_0 = copy.deepcopy(updates)
        new_params = optim.apply_updates(params, updates)
        assert_identical(params, params_0)
        assert_identical(updates, updates_0)
        tree.check_same(params, new_params, ("params", "new params"), shapes=True, dtypes=True)
        params, state = new_params, new_state
