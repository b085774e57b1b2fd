"""Tests for funcdl.tree beyond map: flatten/unflatten, structure equality, leaves_with_path,
ravel/unravel, zeros_like, astype, check_same, and a property test of the round trips.
Containers, map and mismatch paths: test_tree.py."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _tree_util import Adam, Pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import funcdl as fd
from funcdl import tree


def _assert_trees_equal(a: Any, b: Any) -> None:
    """Same structure, and leaf-wise the same shape, dtype and values."""
    assert tree.structure(a) == tree.structure(b)
    for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------- flatten / unflatten

def test_flatten_unflatten_round_trip():
    t = {"layers": [Adam(mu=np.ones(2), nu=None), ((), np.zeros((2, 3)))], "step": 3}
    leaves, treedef = tree.flatten(t)
    assert len(leaves) == 3
    assert leaves[0] is t["layers"][0].mu
    assert leaves[1] is t["layers"][1][1]
    assert leaves[2] == 3
    assert treedef.num_leaves == 3
    back = tree.unflatten(treedef, leaves)
    _assert_trees_equal(back, t)
    assert type(back["layers"][0]) is Adam
    assert back["layers"][0].nu is None


def test_unflatten_accepts_new_leaves_in_flatten_order():
    _, treedef = tree.flatten({"w": 0, "b": 0, "c": [0, 0]})
    assert tree.unflatten(treedef, iter([1, 2, 3, 4])) == {"b": 1, "c": [2, 3], "w": 4}


@pytest.mark.parametrize("n", [2, 4, 0])
def test_unflatten_wrong_leaf_count(n):
    _, treedef = tree.flatten([1, (2, 3)])
    with pytest.raises(ValueError, match="3 leaves"):
        tree.unflatten(treedef, list(range(n)))


def test_structure_equality():
    assert tree.structure({"a": 1, "b": [2, 3]}) == tree.structure({"b": [4.0, 5.0], "a": 6})
    assert tree.structure(Adam(1, None)) == tree.structure(Adam(np.ones(3), None))
    assert tree.structure(np.zeros(3)) == tree.structure(7)
    assert hash(tree.structure({"a": (1,)})) == hash(tree.structure({"a": (2,)}))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 2], (1, 2)),
        ([1, 2], [1, 2, 3]),
        ({"a": 1}, {"b": 1}),
        (Adam(1, 2), (1, 2)),
        (Adam(1, 2), Pair(1, 2)),
        (None, 1),
        (None, ()),
        ((), []),
        ([1], [[1]]),
    ],
)
def test_structure_inequality(a, b):
    assert tree.structure(a) != tree.structure(b)


def test_leaves_with_path():
    t = [np.ones(1), {"w": Adam(mu=[5, 6], nu=7), "b": None}]
    paths = [p for p, _ in tree.leaves_with_path(t)]
    assert paths == ["[0]", "[1]['w'].mu[0]", "[1]['w'].mu[1]", "[1]['w'].nu"]
    assert [x for _, x in tree.leaves_with_path(t)][1:] == [5, 6, 7]
    assert tree.leaves_with_path(3) == [("", 3)]
    assert tree.leaves_with_path(None) == []


# ------------------------------------------------------------------------------ ravel

def test_ravel_unravel_restores_shapes_and_dtypes():
    t = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "b": np.array([0.1, 0.2], dtype=np.float64),
        "s": Adam(mu=np.float32(1.5) * np.ones((1, 1, 2), np.float32), nu=None),
    }
    vec, unravel = tree.ravel(t)
    assert vec.shape == (6 + 2 + 2,)
    assert vec.dtype == np.float64
    # flatten order: b, s.mu, w
    np.testing.assert_array_equal(vec[:2], t["b"])
    np.testing.assert_array_equal(vec[2:4], [1.5, 1.5])
    np.testing.assert_array_equal(vec[4:], t["w"].ravel())
    back = unravel(vec)
    _assert_trees_equal(back, t)
    assert back["w"].dtype == np.float32
    assert back["s"].mu.dtype == np.float32
    assert back["b"].dtype == np.float64


def test_ravel_all_float32_gives_float32_vector():
    vec, unravel = tree.ravel([np.ones(2, np.float32), np.zeros((2, 2), np.float32)])
    assert vec.dtype == np.float32
    out = unravel(np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(out[1], [[2.0, 3.0], [4.0, 5.0]])


@pytest.mark.parametrize("t", [
    {"w": np.ones(2, np.float32), "count": np.int64(2**24 + 1)},  # an optimizer state
    {"w": np.ones(2, np.float32), "lr": 0.1, "n": 3, "flag": True},
    {"i": np.arange(2, dtype=np.int32), "j": np.array([2**62 + 1])},
])
def test_ravel_round_trips_every_leaf_exactly(t):
    # NumPy's promotion (float64 here), where JAX's ravel_pytree would keep float32 and
    # round 2**24 + 1 and 0.1.
    vec, unravel = tree.ravel(t)
    assert vec.dtype == np.result_type(*[np.asarray(x) for x in tree.leaves(t)])
    for (path, a), b in zip(tree.leaves_with_path(t), tree.leaves(unravel(vec)), strict=True):
        assert np.asarray(b).dtype == np.asarray(a).dtype and np.array_equal(b, a), path


def test_ravel_does_not_alias_the_tree():
    t = {"a": np.ones(3)}
    vec, _ = tree.ravel(t)
    vec[:] = 5.0
    np.testing.assert_array_equal(t["a"], np.ones(3))


@pytest.mark.parametrize("empty", [(), None, {"a": [], "b": None}])
def test_ravel_empty_tree(empty):
    vec, unravel = tree.ravel(empty)
    assert vec.shape == (0,)
    assert unravel(vec) == empty
    with pytest.raises(ValueError, match="unravel"):
        unravel(np.zeros(1))


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros(6), np.zeros((1, 5)), np.zeros(())])
def test_unravel_wrong_size_vector(bad):
    _, unravel = tree.ravel({"a": np.ones(2), "b": np.ones((1, 3))})
    with pytest.raises(ValueError, match=r"\(5,\)"):
        unravel(bad)


# ---------------------------------------------------------------- zeros_like / astype

def test_zeros_like():
    t = Adam(mu={"w": np.ones((2, 3), np.float32)}, nu=[np.full(2, 7, np.int64), None])
    z = tree.zeros_like(t)
    assert type(z) is Adam
    assert z.mu["w"].shape == (2, 3) and z.mu["w"].dtype == np.float32
    assert z.nu[0].dtype == np.int64
    assert z.nu[1] is None
    assert all(np.all(x == 0) for x in tree.leaves(z))
    np.testing.assert_array_equal(t.mu["w"], np.ones((2, 3)))  # input untouched


def test_astype_casts_float_leaves_only():
    ints = np.array([1, 2], np.int32)
    flags = np.array([True, False])
    t = {"w": np.ones(2, np.float32), "n": ints, "m": flags, "h": np.ones(1, np.float16)}
    out = tree.astype(t, np.float64)
    assert out["w"].dtype == np.float64
    assert out["h"].dtype == np.float64
    assert out["n"].dtype == np.int32
    assert out["m"].dtype == np.bool_
    np.testing.assert_array_equal(out["n"], ints)
    assert t["w"].dtype == np.float32  # input untouched
    back = tree.astype(out, np.float32)
    assert back["w"].dtype == np.float32 and back["n"].dtype == np.int32


# ------------------------------------------------------------------------ check_same

def test_check_same_passes_on_equal_structure():
    a = {"w": np.ones((2, 3), np.float32), "s": Adam(1, None)}
    b = {"w": np.zeros((2, 3), np.float32), "s": Adam(2, None)}
    tree.check_same(a, b, shapes=True, dtypes=True)


def test_check_same_structure_mismatch_path_and_names():
    with pytest.raises(ValueError, match=r"at \['s'\]\.mu") as info:
        tree.check_same({"s": Adam([1], 2)}, {"s": Adam((1,), 2)}, ("params", "grads"))
    assert "params" in str(info.value) and "grads" in str(info.value)


def test_check_same_shapes_only_when_asked():
    a = [np.ones(2), {"w": np.ones((2, 3))}]
    b = [np.ones(2), {"w": np.ones((3, 2))}]
    tree.check_same(a, b)  # structure only
    with pytest.raises(ValueError, match=r"shape mismatch at \[1\]\['w'\]") as info:
        tree.check_same(a, b, shapes=True)
    assert "(2, 3)" in str(info.value) and "(3, 2)" in str(info.value)


def test_check_same_dtypes_only_when_asked():
    a = Adam(mu=np.ones(2, np.float32), nu=np.ones(2, np.float32))
    b = Adam(mu=np.ones(2, np.float32), nu=np.ones(2, np.float64))
    tree.check_same(a, b, shapes=True)
    with pytest.raises(ValueError, match=r"dtype mismatch at \.nu") as info:
        tree.check_same(a, b, dtypes=True)
    assert "float32" in str(info.value) and "float64" in str(info.value)


# -------------------------------------------------------------------------- property

_leaf = hnp.arrays(
    dtype=st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
    elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
)
_key = st.text(alphabet="abcxyz", min_size=1, max_size=3)
_trees = st.recursive(
    st.one_of(_leaf, st.none()),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(_key, kids, max_size=3),
        st.builds(Pair, kids, kids),
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_property_round_trips(t):
    leaves, treedef = tree.flatten(t)
    assert treedef == tree.structure(t)
    back = tree.unflatten(treedef, leaves)
    _assert_trees_equal(back, t)

    vec, unravel = tree.ravel(t)
    assert vec.ndim == 1
    assert vec.size == sum(np.size(x) for x in leaves)
    _assert_trees_equal(unravel(vec), t)
    # unravel is a function of the vector, not a replay of the tree
    _assert_trees_equal(unravel(vec * 0), tree.zeros_like(t))


@pytest.mark.parametrize("t, path", [(["abc", np.ones(2)], r"\[0\]"),
                                     ({"x": [np.ones(1), np.array([object()])]}, r"\['x'\]\[1\]")])
def test_ravel_refuses_leaves_that_are_not_numbers(t, path):
    with pytest.raises(TypeError, match=rf"tree\.ravel: the leaf at {path} has dtype"):
        tree.ravel(t)


def test_unravel_of_a_complex_vector_gives_real_leaves_their_real_part():
    t = {"a": np.array([1 + 2j, 3j], np.complex64), "b": np.array([1.5, -2.0], np.float32)}
    v, unravel = tree.ravel(t)
    assert v.dtype == np.complex64
    back = unravel(v)  # no ComplexWarning (an error under the test settings)
    assert back["b"].dtype == np.float32
    np.testing.assert_array_equal(back["b"], t["b"])
    np.testing.assert_array_equal(back["a"], t["a"])
    with pytest.raises(ValueError, match="float32 leaf have non-zero imaginary parts"):
        unravel(v * 1j)


def test_bad_arguments_of_map_multi_unflatten_and_astype_are_named():
    with pytest.raises(TypeError, match=r"tree\.map_multi: n_out must be an int, got 2\.0"):
        tree.map_multi(lambda x: (x, x), 2.0, [1.0])
    with pytest.raises(ValueError, match=r"tree\.map_multi: n_out must be >= 1"):
        tree.map_multi(lambda x: (x, x), 0, [1.0])
    with pytest.raises(TypeError, match=r"unflatten: leaves must be a list.*got NoneType"):
        tree.unflatten(tree.structure([1.0]), None)
    with pytest.raises(TypeError, match=r"tree\.astype: 'floaty' is not a NumPy dtype"):
        tree.astype([1.0], "floaty")


def test_unravel_refuses_an_imaginary_part_in_a_single_entry_of_a_real_leaf():
    t = {"a": np.array([1 + 2j]), "b": np.array([1.5, -2.0, 0.5])}
    v, unravel = tree.ravel(t)
    v = v.copy()
    v[3] += 1e-3j  # the last entry of b only
    with pytest.raises(ValueError, match="float64 leaf have non-zero imaginary parts"):
        unravel(v)


def test_astype_keeps_complex_leaves():
    # only floating-point leaves are cast: a complex one would lose its imaginary part
    t = {"c": np.array([1 + 2j]), "w": np.ones(1, np.float32)}
    out = tree.astype(t, np.float64)
    assert out["c"].dtype == np.complex128 and out["c"][0] == 1 + 2j
    assert out["w"].dtype == np.float64


def test_unravel_truncates_into_an_integer_leaf_before_its_range_is_checked():
    _, unravel = tree.ravel({"a": np.array([1, 2], np.uint8), "b": np.array([1], np.int8)})
    out = unravel(np.array([-0.3, 255.9, -128.5]))  # 0, 255, -128 once truncated: they fit
    np.testing.assert_array_equal(out["a"], [0, 255])
    np.testing.assert_array_equal(out["b"], [-128])
    with pytest.raises(ValueError, match=r"the uint8 leaf at \['a'\]"):
        unravel(np.array([-1.0, 0.0, 0.0]))


def test_unravel_of_an_int_vector_refuses_entries_past_a_narrower_int_leaf():
    # only float vectors were checked: 300 came back as 44 in an int8 leaf, -1 as 255
    vec, unravel = tree.ravel({"a": np.array([1, 2], np.int8), "b": np.array([3], np.int64)})
    bad = vec.copy()
    bad[0] = 300
    with pytest.raises(ValueError, match=r"the int8 leaf at \['a'\] .*within int8's range; "
                                         r"got 300"):
        unravel(bad)
    vec16, unravel16 = tree.ravel({"s": np.array([1], np.int16), "u": np.array([2], np.uint8)})
    with pytest.raises(ValueError, match=r"the uint8 leaf at \['u'\].*got -1"):
        unravel16(np.array([1, -1], np.int16))
    assert unravel16(vec16)["u"][0] == 2


def test_ravel_refuses_integers_a_float_vector_cannot_hold():
    # a uint64 random key beside an int64 count promotes to float64: it came back as another
    # key, silently (JAX's ravel_pytree too)
    key = fd.random.split(fd.random.key(1234))[0]
    with pytest.raises(ValueError, match=r"the uint64 leaf at \['key'\] holds values beyond "
                                         r"2\*\*53, which the float64 vector"):
        tree.ravel({"count": np.int64(3), "key": key})
    vec, unravel = tree.ravel({"w": np.ones(2, np.float32), "n": np.int64(2**53)})
    assert int(unravel(vec)["n"]) == 2**53  # within reach: exact


def test_astype_refuses_an_integer_or_bool_dtype():
    # torch's module.to(torch.int32) refuses; astype truncated 0.7 to 0, -1.9 to -1
    for dt in (np.int32, np.bool_, "uint8"):
        with pytest.raises(TypeError, match=r"tree.astype: casts the floating-point leaves to "
                                            r"a floating-point dtype"):
            tree.astype({"w": np.array([0.7, -1.9])}, dt)
    assert tree.astype({"w": np.ones(1)}, np.complex64)["w"].dtype == np.complex64


def test_leaves_with_path_leaves_no_reference_cycle():
    import gc
    import weakref

    big = np.ones(10)
    alive = weakref.ref(big)
    gc.disable()
    try:
        tree.leaves_with_path({"a": big, "b": [big]})
        del big
        assert alive() is None  # freed at once, not at the next cycle collection
    finally:
        gc.enable()
