"""Tests for funcdl.io: round trips keep every tree and leaf type, save refuses what load
could not give back, and load checks against ``like``. Writing files (the exact path,
permissions, atomic on a crash, bad paths) and refusing bad files: test_io_files.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcdl as fd
from funcdl import io, tree


class Pair(NamedTuple):
    first: Any
    second: Any


class Empty(NamedTuple):
    pass


def _nested() -> Any:
    return {
        "layers": [
            {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float64)},
            (np.array([1, -2, 3], np.int64), np.array([[True, False]]), None),
        ],
        "state": Pair(first=np.float32(0.5), second=Pair(np.array(2.0), np.int64(7))),
        "scalars": (3, 2.5, True, False, -(2**62)),
        "empty": ([], (), {}, None, Empty()),
        "ints": {10: np.ones((0, 4), np.float32), 9: np.array(1.5, np.float32)},
    }


def _assert_same(a: Any, b: Any, named: str = "exact") -> None:
    """Same container and leaf types, and leaf-wise equal shape, dtype and values. With
    ``named='fields'`` a NamedTuple only has to match by class name and fields."""
    if isinstance(a, tuple) and hasattr(type(a), "_fields") and named == "fields":
        assert type(b).__name__ == type(a).__name__ and b._fields == a._fields
    else:
        assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            _assert_same(a[k], b[k], named)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y, named)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


# ---------------------------------------------------------------------------- round trips

def test_round_trip_with_like_keeps_every_type(tmp_path):
    t = _nested()
    io.save(tmp_path / "t.npz", t)
    _assert_same(t, io.load(tmp_path / "t.npz", like=t))


def test_round_trip_without_like_rebuilds_namedtuples_by_name(tmp_path):
    t = _nested()
    io.save(str(tmp_path / "t.npz"), t)
    out = io.load(str(tmp_path / "t.npz"))
    _assert_same(t, out, named="fields")
    assert out["state"].second.first.shape == ()
    assert type(out["scalars"][0]) is int and type(out["scalars"][1]) is float
    assert type(out["scalars"][2]) is bool and type(out["state"].first) is np.float32
    assert out["state"]._asdict()["first"] == np.float32(0.5)


def test_loaded_namedtuples_share_a_class_across_loads(tmp_path):
    io.save(tmp_path / "a", Pair(1, 2))
    io.save(tmp_path / "b", [Pair(3.0, 4.0)])
    a, b = io.load(tmp_path / "a"), io.load(tmp_path / "b")
    assert type(a) is type(b[0]) and type(a) is not Pair


@pytest.mark.parametrize("leaf", [
    np.float32(1.25), np.float64(-3.5), np.int64(9), np.bool_(True), 4, 0.1, False, 1 - 2j,
    np.array(3.0, np.float32), np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    np.array([[1, 2]], np.int64), np.zeros((3, 0), bool), np.array(["ab", "c"]),
])
def test_single_leaf_round_trip(tmp_path, leaf):
    io.save(tmp_path / "leaf.npz", leaf)
    _assert_same(leaf, io.load(tmp_path / "leaf.npz"))
    _assert_same(leaf, io.load(tmp_path / "leaf.npz", like=leaf))


def test_loaded_arrays_keep_layout_and_byte_order_and_are_writable(tmp_path):
    # load reads each entry's data itself, right after the header it checked
    t = [np.asfortranarray(np.arange(12.0).reshape(3, 4)),
         np.arange(6, dtype=">f4").reshape(2, 3), np.arange(5, dtype=np.int16)[::2]]
    io.save(tmp_path / "t.npz", t)
    out = io.load(tmp_path / "t.npz")
    assert out[0].flags.f_contiguous and not out[0].flags.c_contiguous
    assert out[1].dtype == np.dtype(">f4")
    for a, b in zip(t, out, strict=True):
        np.testing.assert_array_equal(a, b)
        b[...] = 0  # writable, as np.load's arrays; the saved tree is untouched
    assert t[0][2, 3] == 11.0


def test_optimizer_state_round_trips_and_keeps_training(tmp_path):
    params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    opt = fd.optim.adam(lr=fd.optim.cosine_decay_schedule(1e-2, 10))
    _, state = opt.update(opt.init(params), params, params)
    io.save(tmp_path / "opt.npz", state)
    loaded = io.load(tmp_path / "opt.npz", like=state)
    _assert_same(state, loaded)
    expected, _ = opt.update(state, params, params)
    got, _ = opt.update(loaded, params, params)
    _assert_same(expected, got)


_dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.bool_])
_leaves = st.one_of(
    _dtypes.flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3,
                                                             min_side=0, max_side=3))),
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.booleans())
_trees = st.recursive(_leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.lists(kids, max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), kids, max_size=3),
    st.tuples(kids, kids).map(lambda p: Pair(*p)), st.none()), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(_trees)
def test_round_trip_property(t):
    with tempfile.TemporaryDirectory() as d:
        io.save(Path(d) / "t.npz", t)
        _assert_same(t, io.load(Path(d) / "t.npz", like=t))
        _assert_same(t, io.load(Path(d) / "t.npz"), named="fields")


# ---------------------------------------------------------------------------- refused trees

@pytest.mark.parametrize("bad, match", [
    ({"a": [np.ones(2), np.array([1, None], dtype=object)]}, r"\['a'\]\[1\].*object"),
    (Pair(1, {"k": "text"}), r"type str at \.second\['k'\]"),
    ([2**70], r"neither int64 nor uint64 at \[0\]"),
    ({("a", 1): np.ones(1)}, r"tuple key"),
    ([{True: 1.0, "a": 2.0}], r"\[0\] mixes bool and str keys"),
    ({"x": {"a": 1, 2: 2}}, r"\['x'\] mixes int and str keys"),
    ({"z": {1.5: 1.0}, "a": {2.5: 1.0}}, r"float key 2.5 at \['a'\]"),  # sorted, as trees go
    ({"m": np.ma.masked_array([1.0, 2.0], mask=[0, 1])}, r"\['m'\] is a masked array"),
])
def test_save_refuses_what_load_could_not_give_back(tmp_path, bad, match):
    target = tmp_path / "p.npz"
    io.save(target, [1.0])
    before = target.read_bytes()
    with pytest.raises(TypeError, match=match):
        io.save(target, bad)
    assert os.listdir(tmp_path) == ["p.npz"] and target.read_bytes() == before


def test_bool_keys_round_trip_as_optim_partition_labels_them(tmp_path):
    # partition({True: adam(), False: sgd()}, mask_fn): a state keyed by bools
    tree = {"groups": {False: np.zeros(2), True: np.ones(3, np.float32)}, "n": 3}
    io.save(tmp_path / "b.npz", tree)
    back = io.load(tmp_path / "b.npz", like=tree)
    assert list(back["groups"]) == [False, True] and back["n"] == 3
    np.testing.assert_array_equal(back["groups"][True], tree["groups"][True])
    assert list(io.load(tmp_path / "b.npz")["groups"]) == [False, True]


# ---------------------------------------------------------------------------- like

def test_like_shape_mismatch_message(tmp_path):
    path = tmp_path / "params.npz"
    io.save(path, [{"w": np.zeros((2, 25), np.float32)}])
    with pytest.raises(ValueError) as info:
        io.load(path, like=[{"w": np.zeros((2, 30), np.float32)}])
    assert str(info.value) == (f"io.load: {path}: shape mismatch at [0]['w']: "
                               f"file has (2, 25), like has (2, 30)")


@pytest.mark.parametrize("like, match", [
    ({"a": [np.zeros(2, np.float64), 1]}, r"dtype mismatch at \['a'\]\[0\]: file has float32, "
                                          r"like has float64"),
    ({"a": [np.zeros(2, np.float32), 1], "c": 0}, r"at the root: file has a dict with keys "
                                                  r"\['a'\], like has a dict with keys"),
    ({"a": (np.zeros(2, np.float32), 1)}, r"at \['a'\]: file has a list of length 2, "
                                          r"like has a tuple"),
    ({"a": [np.zeros(2, np.float32), 1.0]}, r"dtype mismatch at \['a'\]\[1\]: file has int64"),
    ({"a": [np.zeros(2, np.float32), [1]]}, r"at \['a'\]\[1\]: file has a leaf, like has a list"),
])
def test_like_mismatch_names_the_path(tmp_path, like, match):
    path = tmp_path / "p.npz"
    io.save(path, {"a": [np.zeros(2, np.float32), 1]})
    with pytest.raises(ValueError, match=match) as info:
        io.load(path, like=like)
    assert str(path) in str(info.value)


def test_like_namedtuple_must_match_name_and_fields(tmp_path):
    class Other(NamedTuple):
        first: Any
        second: Any

    path = tmp_path / "p.npz"
    io.save(path, {"s": Pair(np.ones(2), 3)})
    assert type(io.load(path, like={"s": Pair(np.zeros(2), 0)})["s"]) is Pair
    with pytest.raises(ValueError, match=r"at \['s'\]: file has a NamedTuple Pair\(first, "
                                         r"second\), like has a NamedTuple Other"):
        io.load(path, like={"s": Other(np.zeros(2), 0)})
    with pytest.raises(ValueError, match=r"at \['s'\]: file has a NamedTuple Pair"):
        io.load(path, like={"s": (np.zeros(2), 0)})


def test_load_does_not_take_leaves_from_like(tmp_path):
    path = tmp_path / "p.npz"
    t = {"w": np.arange(3.0), "n": 5}
    io.save(path, t)
    out = io.load(path, like={"w": np.zeros(3), "n": 0})
    _assert_same(t, out)
    assert tree.structure(out) == tree.structure(t)


@pytest.mark.parametrize("saved, like", [(2**63, 0), (0, 2**63), (2**64 - 1, -(2**63))])
def test_like_takes_a_python_int_whatever_its_size(tmp_path, saved, like):
    # NumPy holds 2**63 as uint64 and 0 as int64: both are Python ints, as the file gives back
    path = tmp_path / "count.npz"
    io.save(path, {"count": saved, "w": np.ones(2, np.float32)})
    got = io.load(path, like={"count": like, "w": np.zeros(2, np.float32)})
    assert type(got["count"]) is int and got["count"] == saved
    with pytest.raises(ValueError, match=r"dtype mismatch at \['count'\]"):
        io.load(path, like={"count": np.uint8(0), "w": np.zeros(2, np.float32)})


def test_threads_loading_one_file_get_one_namedtuple_class(tmp_path, monkeypatch):
    # get-then-set made two classes for one (name, fields) when threads loaded at once:
    # the trees they returned then differed in structure. A slow class factory makes the
    # threads meet in that window every time.
    import collections
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from funcdl import _io_format

    cls = collections.namedtuple(f"Raced_{os.getpid()}", ["mu", "count"])
    path = tmp_path / "s.npz"
    io.save(path, cls(np.ones(2), np.int64(1)))
    _io_format._NAMEDTUPLES.pop((cls.__name__, ("mu", "count")), None)
    made = collections.namedtuple

    def slow(*args, **kwargs):
        time.sleep(0.05)
        return made(*args, **kwargs)

    monkeypatch.setattr(_io_format.collections, "namedtuple", slow)
    start = threading.Barrier(4)

    def load(_):
        start.wait()
        return io.load(path)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(load, range(4)))
    assert len({type(t) for t in got}) == 1


def test_a_mismatch_of_two_namedtuple_classes_of_one_name_says_which(tmp_path):
    import collections

    State = collections.namedtuple("State", ["mu", "count"])
    path = tmp_path / "state.npz"
    io.save(path, State(np.ones(2), np.int64(1)))
    loaded = io.load(path)  # without like=: io's own class named State
    with pytest.raises(ValueError, match=r"has a State \(class .*State\), the second tree has "
                                         r"a State \(class funcdl\._io_format\.State\); a tree "
                                         r"loaded by funcdl.io without like= .* pass like="):
        tree.map(np.add, State(np.ones(2), np.int64(1)), loaded)
