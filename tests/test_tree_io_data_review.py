"""Adversarial review of funcdl.tree, funcdl.random, funcdl.io and funcdl.data (with
parallel.shard / parallel.batches), against DESIGN.md and, where it is silent, JAX and NumPy."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import pytest

from funcdl import data, io, parallel, random, tree


class Pair(NamedTuple):
    w: Any
    b: Any


def _mixed_tree() -> Any:
    return {"z": [np.arange(3.0, dtype=np.float32), (None, Pair(np.int8(4), {"q": 1.5}))],
            "a": {2: np.ones((2, 0), np.float16), 1: np.array(True)},
            "m": None, "e": (), "l": [], "d": {}}


# ------------------------------------------------------------------------------- tree

def test_leaves_and_paths_follow_jax_order():
    jtu = pytest.importorskip("jax").tree_util
    t = _mixed_tree()
    ours = tree.leaves_with_path(t)
    theirs = jtu.tree_leaves_with_path(t)
    assert [p for p, _ in ours] == [jtu.keystr(p) for p, _ in theirs]
    assert all(a is b for (_, a), (_, b) in zip(ours, theirs))
    assert tree.structure(t).num_leaves == jtu.tree_structure(t).num_leaves == 5


def test_dict_keys_are_visited_sorted_not_in_insertion_order():
    t = {"b": 1, "a": 2, "B": 3, "_": 4}
    assert tree.leaves(t) == [3, 4, 2, 1]
    assert tree.leaves({10: "x", 2: "y", -1: "z"}) == ["z", "y", "x"]
    assert list(tree.map(lambda x: x, t)) == sorted(t)


def test_none_is_an_empty_node_everywhere():
    t = [None, (None,), {"a": None, "b": np.zeros(2)}]
    leaves, td = tree.flatten(t)
    assert len(leaves) == 1 and td.num_leaves == 1
    assert tree.unflatten(td, [np.ones(2)])[0] is None
    out = tree.map(lambda x: x + 1, t)
    assert out[0] is None and out[1] == (None,) and out[2]["a"] is None
    assert tree.map(lambda x: 1 / 0, None) is None  # f never called
    assert tree.leaves(None) == [] and tree.ravel(None)[0].shape == (0,)


@pytest.mark.parametrize("t", [
    _mixed_tree(), 3.0, np.float32(2), [], (), {}, None, Pair(1, Pair(2, [3, {"k": None}])),
    OrderedDict([("y", 1), ("x", 2)]), [[[[np.zeros(())]]]]])
def test_flatten_unflatten_round_trips_type_and_identity(t):
    leaves, td = tree.flatten(t)
    back = tree.unflatten(td, leaves)
    assert tree.structure(back) == td
    assert type(back) is type(t)
    assert all(a is b for a, b in zip(tree.leaves(back), leaves))
    if isinstance(t, Pair):
        assert type(back.b) is Pair


def test_ravel_mixed_dtypes_restores_each_leaf_dtype_and_shape():
    t = {"f16": np.arange(4, dtype=np.float16).reshape(2, 2), "f32": np.float32(7.5),
         "i8": np.array([-3, 4], np.int8), "u8": np.array([250], np.uint8),
         "b": np.array([True, False]), "empty": np.zeros((3, 0), np.float32),
         "zero_d": np.array(2.25, np.float32)}
    vec, unravel = tree.ravel(t)
    assert vec.ndim == 1 and vec.size == 4 + 1 + 2 + 1 + 2 + 0 + 1
    assert vec.dtype == np.result_type(*[np.asarray(x).dtype for x in tree.leaves(t)])
    assert vec.dtype == np.float32  # no silent upcast to float64
    back = unravel(vec)
    for k, x in t.items():
        assert back[k].dtype == np.asarray(x).dtype, k
        assert back[k].shape == np.shape(x), k
        np.testing.assert_array_equal(back[k], x)
    # a float64 vector (an external optimiser's) gives back the leaves' dtypes
    back64 = unravel(vec.astype(np.float64))
    assert {k: v.dtype for k, v in back64.items()} == {k: v.dtype for k, v in back.items()}


# was a DEFECT: unravel leaked NumPy's bare "overflow encountered in cast" (no leaf named)
# for an entry beyond a float32/float16 leaf's range; now inf, as JAX's cast gives
def test_unravel_of_an_out_of_range_float_entry_is_inf():
    _, unravel = tree.ravel({"a": np.zeros(2, np.float32), "h": np.zeros(1, np.float16)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = unravel(np.array([1e300, -1e300, 7e4]))
    assert np.isposinf(out["a"][0]) and np.isneginf(out["a"][1]) and np.isposinf(out["h"][0])
    assert out["a"].dtype == np.float32 and out["h"].dtype == np.float16


def test_ravel_vector_is_a_copy_and_matches_jax_order():
    fu = pytest.importorskip("jax.flatten_util")
    t = {"w": np.arange(6, dtype=np.float32).reshape(2, 3).T,
         "b": [np.float32(9), np.ones(2, np.float32)]}
    vec, _ = tree.ravel(t)
    jvec, _ = fu.ravel_pytree(t)
    np.testing.assert_array_equal(vec, np.asarray(jvec))
    assert vec.dtype == np.asarray(jvec).dtype
    vec[:] = -1
    assert t["w"][0, 0] == 0  # ravel did not hand out a view of a leaf


@pytest.mark.parametrize("trees, path", [
    (([1, {"w": 1}], [1, {"w": [2]}]), r"at \[1\]\['w'\]:"),
    (([1, {"w": 1}], [1, {"w": 1, "v": 2}]), r"at \[1\]:"),
    ((Pair([1, 2], 3), Pair([1, (2,)], 3)), r"at \.w\[1\]:"),
    (({"a": (1, 2)}, {"a": [1, 2]}), r"at \['a'\]:"),
    (({"a": 1, "b": [1]}, {"a": 1, "b": [1]}, {"a": 1, "b": [None]}), r"at \['b'\]\[0\]:.*third"),
    (([np.zeros(2), np.zeros(2)], [np.zeros(2)]), "at the root"),
    (([{"b": 1, "a": 1}], [{"b": [2], "a": (1,)}]), r"at \[0\]\['a'\]"),  # first in order
])
def test_map_mismatch_is_a_value_error_naming_the_first_differing_path(trees, path):
    with pytest.raises(ValueError, match=path):
        tree.map(lambda *xs: xs[0], *trees)


def test_map_shapes_mismatch_names_the_path():
    with pytest.raises(ValueError, match=r"\[1\]\['w'\].*\(2,\).*\(3,\)"):
        tree.map(lambda a, b: a, [0, {"w": np.zeros(2)}], [0, {"w": np.zeros(3)}], shapes=True)


def test_map_several_trees_pairs_leaves_by_key_not_position():
    a = {"x": 1.0, "y": 10.0}
    b = OrderedDict([("y", 20.0), ("x", 2.0)])
    c = {"y": 300.0, "x": 3.0}
    assert tree.map(lambda *v: sum(v), a, b, c) == {"x": 6.0, "y": 330.0}


# ------------------------------------------------------------------------------- random

SAMPLERS = {
    "normal": lambda k, dt: random.normal(k, (64,), dt),
    "uniform": lambda k, dt: random.uniform(k, (64,), -2.0, 3.0, dt),
    "truncated_normal": lambda k, dt: random.truncated_normal(k, -1.0, 2.0, (64,), dt),
    "gamma": lambda k, dt: random.gamma(k, np.array([0.5, 3.0]), (32, 2), dt),
    "exponential": lambda k, dt: random.exponential(k, (64,), dt),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_same_key_same_numbers_other_key_other_numbers_and_dtype_kept(name, dt):
    f = SAMPLERS[name]
    a, b = f(random.key(3), dt), f(random.key(3), dt)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == dt
    assert not np.array_equal(a, f(random.key(4), dt))


def test_split_and_fold_in_give_distinct_deterministic_keys():
    k = random.key(0)
    kids = random.split(k, 5)
    assert len(kids) == 5 and all(c.dtype == np.uint64 and c.shape == (2,) for c in kids)
    folded = [random.fold_in(k, d) for d in range(5)]
    all_keys = {tuple(x.tolist()) for x in [k, *kids, *folded]}
    assert len(all_keys) == 11
    np.testing.assert_array_equal(random.fold_in(k, 3), folded[3])
    np.testing.assert_array_equal(random.split(k, 5)[2], kids[2])
    draws = np.stack([random.normal(c, (2000,), np.float64) for c in [*kids, *folded]])
    corr = np.corrcoef(draws)
    assert np.abs(corr[~np.eye(len(corr), dtype=bool)]).max() < 0.1


def test_uniform_low_inclusive_high_exclusive():
    for dt in (np.float32, np.float64):
        one = dt(1.0)
        nxt = np.nextafter(one, dt(2.0))
        u = random.uniform(random.key(1), (5000,), one, nxt, dt)
        assert (u == one).all()  # the only value in [1, nextafter(1)) is 1
        u = random.uniform(random.key(2), (200_000,), -1.0, 1.0, dt)
        assert u.min() >= -1.0 and u.max() < 1.0 and u.dtype == dt
        assert abs(float(u.mean())) < 0.01
        lo, hi = np.array([0.0, 10.0]), np.array([1e-3, 11.0])  # float64 array bounds
        u = random.uniform(random.key(3), (1000, 2), lo, hi, dt)
        assert u.dtype == dt and (u >= lo.astype(dt)).all() and (u < hi.astype(dt)).all()


def test_bernoulli_edges_and_broadcast():
    k = random.key(5)
    assert not random.bernoulli(k, 0.0, (10_000,)).any()
    assert random.bernoulli(k, 1.0, (10_000,)).all()
    p = np.array([0.0, 1.0, 0.25])
    b = random.bernoulli(k, p, (4000, 3))
    assert b.dtype == np.bool_ and b.shape == (4000, 3)
    assert not b[:, 0].any() and b[:, 1].all() and abs(b[:, 2].mean() - 0.25) < 0.03
    assert random.bernoulli(k, p).shape == (3,)
    with pytest.raises(ValueError, match="broadcast"):
        random.bernoulli(k, p, (4, 2))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
def test_permutation_is_a_permutation(n):
    perm = random.permutation(random.key(n), n)
    assert perm.dtype.kind == "i"
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    x = np.arange(2 * n).reshape(n, 2)
    np.testing.assert_array_equal(random.permutation(random.key(n), x), x[perm])


@pytest.mark.parametrize("call, exc, match", [
    (lambda: random.normal(np.array([1, 2]), (2,)), TypeError, "random.normal.*key"),
    (lambda: random.normal(np.zeros(3, np.uint64), (2,)), TypeError, "key"),
    (lambda: random.uniform(None, (2,)), TypeError, "random.uniform.*key"),
    (lambda: random.normal((2,), random.key(0)), TypeError, "key"),
    (lambda: random.normal(random.key(0), (2, -1)), ValueError, "-1"),
    (lambda: random.normal(random.key(0), (2.0,)), TypeError, "int"),
    (lambda: random.normal(random.key(0), (2,), np.int32), TypeError, "float32 or float64"),
    (lambda: random.uniform(random.key(0), (2,), 1.0, 0.0), ValueError, "low <= high"),
    (lambda: random.uniform(random.key(0), (2,), 0.0, np.inf), ValueError, "finite"),
    (lambda: random.bernoulli(random.key(0), 1.5, (2,)), ValueError, r"\[0, 1\]"),
    (lambda: random.bernoulli(random.key(0), np.nan, (2,)), ValueError, r"\[0, 1\]"),
    (lambda: random.split(random.key(0), 2.0), TypeError, "num"),
    (lambda: random.fold_in(random.key(0), -1), ValueError, "data"),
    (lambda: random.permutation(random.key(0), -3), ValueError, "n"),
    (lambda: random.key(1.5), TypeError, "seed"),
])
def test_bad_arguments_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------------------- io

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
          np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128]


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_and_layout_round_trips(tmp_path, dt):
    base = (np.arange(24) % 7).astype(dt).reshape(4, 6)
    t = {"c": base, "nc": base[::2, ::-3], "f": np.asfortranarray(base),
         "zero_d": base[1, 1].copy().reshape(()), "scalar": base[0, 1],
         "empty": np.zeros((0, 3), dt),
         "be": base.astype(np.dtype(dt).newbyteorder(">"))}
    for path in (tmp_path / "p.npz", str(tmp_path / "s.npz")):
        io.save(path, t)
        back = io.load(path)
        for k, x in t.items():
            assert type(back[k]) is type(x), k
            assert back[k].dtype == x.dtype and np.shape(back[k]) == np.shape(x), k
            np.testing.assert_array_equal(back[k], x)
        io.load(path, like=t)
    assert sorted(os.listdir(tmp_path)) == ["p.npz", "s.npz"]


def test_every_container_and_python_scalar_round_trips(tmp_path):
    t = {"nt": Pair(np.ones(2, np.float32), None),
         "tup": (1, 2.5, True, 1 + 2j, -(2**63), 2**64 - 1), "lst": [[], (), {}, None],
         "strs": np.array(["ab", "c"]), "deep": [[[[np.int8(1)]]]]}
    io.save(tmp_path / "c.npz", t)
    back = io.load(tmp_path / "c.npz")
    assert back["tup"] == t["tup"]
    assert [type(x) for x in back["tup"]] == [type(x) for x in t["tup"]]
    assert back["lst"] == [[], (), {}, None]
    assert type(back["nt"]).__name__ == "Pair" and back["nt"]._fields == ("w", "b")
    assert back["nt"].b is None and back["nt"].w.dtype == np.float32
    assert type(io.load(tmp_path / "c.npz", like=t)["nt"]) is Pair
    assert back["deep"][0][0][0][0] == 1 and type(back["deep"][0][0][0][0]) is np.int8


def test_object_arrays_are_refused_and_nothing_is_written(tmp_path):
    p = tmp_path / "o.npz"
    io.save(p, {"a": np.zeros(2)})
    before = p.read_bytes()
    with pytest.raises(TypeError, match=r"\['b'\].*pickle"):
        io.save(p, {"a": np.zeros(2), "b": np.array([1, "x"], dtype=object)})
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["o.npz"]


@pytest.mark.parametrize("where", ["savez", "replace"])
def test_a_failure_mid_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, where):
    p = tmp_path / "params.npz"
    io.save(p, {"w": np.arange(3.0)})
    before = p.read_bytes()
    real_savez = np.savez

    def broken_savez(f, **entries):
        real_savez(f, **entries)
        f.truncate(f.tell() // 2)
        raise OSError(28, "No space left on device")

    def broken_replace(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(*((np, "savez", broken_savez) if where == "savez"
                          else (os, "replace", broken_replace)))
    with pytest.raises(OSError, match=r"params\.npz") as info:
        io.save(p, {"w": np.arange(1000.0)})
    assert ".tmp" not in str(info.value)  # names the caller's path, not the temporary
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["params.npz"]
    assert p.read_bytes() == before
    np.testing.assert_array_equal(io.load(p)["w"], np.arange(3.0))


def test_load_never_unpickles_even_a_forged_object_entry(tmp_path, monkeypatch):
    good = tmp_path / "good.npz"
    io.save(good, {"a": np.zeros(2)})
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        zout.writestr("__funcdl_treedef__.npy", zin.read("__funcdl_treedef__.npy"))
        with zout.open("leaf_0.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"x": 1}, None], dtype=object),
                                      allow_pickle=True)

    def boom(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    with pytest.raises(ValueError, match=r"bad\.npz.*(object|pickle)"):
        io.load(bad)


CORRUPT = {
    "truncate": lambda p, raw: p.write_bytes(raw[: len(raw) * 2 // 3]),
    "empty": lambda p, raw: p.write_bytes(b""),
    "garbage": lambda p, raw: p.write_bytes(bytes(range(256)) * 2),
    "plain_npz": lambda p, raw: np.savez(p, a=np.zeros(2)),  # a .npz name is kept as is
    "npy": lambda p, raw: p.write_bytes(b"\x93NUMPY" + raw[6:]),
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPT))
def test_truncated_or_foreign_files_raise_a_clear_value_error(tmp_path, corrupt):
    p = tmp_path / "x.npz"
    io.save(p, {"a": np.arange(100.0), "b": [1, 2]})
    CORRUPT[corrupt](p, p.read_bytes())
    with pytest.raises(ValueError, match=r"x\.npz"):
        io.load(p)


def test_like_mismatch_names_path_and_both_dtypes(tmp_path):
    p = tmp_path / "m.npz"
    io.save(p, [np.zeros(2, np.float32), {"w": np.zeros(3, np.float32)}])
    with pytest.raises(ValueError, match=r"\[1\]\['w'\].*float(32.*float64|64.*float32)"):
        io.load(p, like=[np.zeros(2, np.float32), {"w": np.zeros(3, np.float64)}])
    with pytest.raises(ValueError, match=r"\[1\]\['w'\].*\(3,\).*\(4,\)"):
        io.load(p, like=[np.zeros(2, np.float32), {"w": np.zeros(4, np.float32)}])


# ------------------------------------------------------------------------------- data

@pytest.mark.parametrize("n, bs, drop", [(10, 3, False), (10, 3, True), (9, 3, False),
                                        (5, 8, False), (5, 8, True), (0, 2, False), (1, 1, True)])
def test_batches_cover_every_example_once_in_permutation_order(n, bs, drop):
    k = random.key(n + bs)
    x = np.arange(n) * 10
    y = np.arange(2 * n).reshape(n, 2).astype(np.float32)
    out = list(data.batches(k, x, y, batch_size=bs, drop_last=drop))
    sizes = [len(b[0]) for b in out]
    assert all(s == bs for s in sizes[:-1])
    expected_len = (n // bs) * bs if drop else n
    assert sum(sizes) == expected_len and (not drop or all(s == bs for s in sizes))
    got = np.concatenate([b[0] for b in out]) if out else np.zeros(0, int)
    np.testing.assert_array_equal(got, x[random.permutation(k, n)][:expected_len])
    for bx, by in out:  # the arrays stay aligned, dtypes kept
        np.testing.assert_array_equal(by[:, 0], bx // 5)
        assert by.dtype == np.float32


def test_shuffle_depends_on_the_key_only():
    x = np.arange(50)
    a = np.concatenate([b for (b,) in data.batches(random.key(1), x, batch_size=7)])
    b = np.concatenate([b for (b,) in data.batches(random.key(1), x, batch_size=7)])
    c = np.concatenate([b for (b,) in data.batches(random.key(2), x, batch_size=7)])
    d = np.concatenate([b for (b,) in data.batches(None, x, batch_size=7, shuffle=False)])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(d, x)
    np.testing.assert_array_equal(np.sort(c), x)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: data.batches(random.key(0), np.zeros(5), np.zeros(4), batch_size=2), ValueError,
     r"\(5,\).*\(4,\)"),
    (lambda: data.batches(random.key(0), np.zeros(5), batch_size=0), ValueError, "batch_size"),
    (lambda: data.batches(None, np.zeros(5), batch_size=2), ValueError, "key"),
    (lambda: data.batches(np.zeros(5), np.zeros(5), batch_size=2), TypeError, "key"),
    (lambda: data.batches(random.key(0), batch_size=2), ValueError, "array"),
    (lambda: parallel.shard(random.key(0), np.arange(2), rank=0, size=3), ValueError,
     "2 examples.*3 ranks"),
    (lambda: parallel.shard(random.key(0), np.arange(9), rank=3, size=3), ValueError, "rank 3"),
])
def test_batches_and_shard_misuse_is_refused_at_the_call(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("n, size", [(10, 3), (3, 3), (7, 1), (100, 8)])
def test_shard_puts_every_example_on_exactly_one_rank(n, size):
    k = random.key(9)
    x, y = np.arange(n), np.arange(n) * 2
    parts = [parallel.shard(k, x, y, rank=r, size=size) for r in range(size)]
    got = np.concatenate([p[0] for p in parts])
    np.testing.assert_array_equal(np.sort(got), x)
    lens = [len(p[0]) for p in parts]
    assert max(lens) - min(lens) <= 1 and min(lens) >= 1
    assert all(np.array_equal(py, px * 2) for px, py in parts)
    for bs in (size, size + 1, 2 * size + 1):
        seen = [b[0] for r in range(size)
                for b in parallel.batches(k, x, batch_size=bs, rank=r, size=size)]
        assert all(len(b) >= 1 for b in seen)  # no rank ever gets an empty batch
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), x)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_disk_matches_its_definition(dt):
    k = random.key(11)
    x, y = data.disk(k, 4000, dt)
    assert x.shape == (4000, 2) and y.shape == (4000, 1) and x.dtype == y.dtype == dt
    assert x.min() >= 0.0 and x.max() < 1.0
    inside = ((x.astype(np.float64) - 0.5) ** 2).sum(axis=1) < 1.0 / (2.0 * np.pi)
    np.testing.assert_array_equal(y[:, 0], inside.astype(dt))
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    assert abs(float(y.mean()) - 0.5) < 0.03  # area pi r^2 = 1/2
    x2, _y2 = data.disk(k, 4000, dt)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, data.disk(random.key(12), 4000, dt)[0])


def test_a_big_endian_save_loads_with_a_native_like_and_a_real_mismatch_still_fails(tmp_path):
    # was noticed by the review: like= refused '>f8' against '<f8', the same numbers
    p = tmp_path / "be.npz"
    x = np.arange(6.0).reshape(2, 3)
    io.save(p, {"w": x.astype(">f8"), "n": np.int16(3).astype(">i2")})
    back = io.load(p, like={"w": x, "n": np.int16(0)})
    assert back["w"].dtype == np.float64 and back["w"].dtype.isnative
    np.testing.assert_array_equal(back["w"], x)
    assert back["n"] == 3 and back["n"].dtype == np.int16
    assert io.load(p)["w"].dtype == np.dtype(">f8")  # without like: as saved
    with pytest.raises(ValueError, match=r"\['w'\].*float32"):
        io.load(p, like={"w": x.astype(np.float32), "n": np.int16(0)})
