"""Fuzz of the error contract (DESIGN.md, Errors) for funcdl.io; test_fuzz_io_scale.py does
funcdl.testing, sweep and parallel with this file's ``outcome``. From one valid tree and
its file, fixed products of perturbations (no randomness): leaves and dict keys that cannot
be saved, bad paths, ``like`` perturbed at each leaf, the file truncated and flipped, every
field of its treedef header and every leaf entry tampered with. A bad call raises
ValueError or TypeError (an OSError subclass where the disk says no) naming io.save or
io.load, or gives what the valid call gives; a tampered file may load only as a tree whose
i-th leaf is its ``leaf_i``, which funcdl.tree walks and io.save writes back.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import io as pyio
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_fuzz_api import FOREIGN, NUMPY_PHRASES

from funcdl import io, tree

HEADER = "__funcdl_treedef__"


def outcome(call: Callable[[], Any], parts: tuple[Any, ...], same: Any = None,
            errors: tuple[type[BaseException], ...] = (ValueError, TypeError)) -> Any:
    """``call()`` raises one of ``errors`` whose message holds every one of ``parts`` (a
    tuple among them: any one of its strings) and none of NumPy's words; or, ``same``
    given, returns what ``same(got)`` accepts (a function) or equals (a value)."""
    try:
        got = call()
    except errors as e:
        msg, kind = str(e), type(e)
        assert not isinstance(e, FOREIGN) and not kind.__module__.startswith("numpy"), msg
        missing = [p for p in parts if not any(q in msg for q in np.atleast_1d(p))]
        numpy_words = [p for p in NUMPY_PHRASES if p in msg]
        assert not missing + numpy_words, f"{kind.__name__} {missing} {numpy_words}: {msg}"
        return e
    if same is None:
        pytest.fail(f"accepted silently, giving {got!r:.300}")
    same(got) if callable(same) else assert_same(got, same)
    return got


def assert_same(got: Any, want: Any) -> None:
    """Same structure (NamedTuples by name and fields), leaf types, dtypes and values."""
    assert repr(tree.structure(got)) == repr(tree.structure(want)), (got, want)
    for g, w in zip(tree.leaves(got), tree.leaves(want), strict=True):
        assert type(g) is type(w), (g, w)
        np.testing.assert_array_equal(g, w, strict=True)


Pair = collections.namedtuple("Pair", "a b")
TREE = {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": [np.linspace(0, 1, 3), 7, 2.5, True, None], "p": Pair(np.int32(3), 1j)}
LEAVES = tree.leaves(TREE)
WHERE = [p for p, _ in tree.leaves_with_path(TREE)]  # ['b'][0] ... ['w']


def _with_leaf(i: int, value: Any) -> Any:
    return tree.unflatten(tree.structure(TREE), [*LEAVES[:i], value, *LEAVES[i + 1:]])


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "t.npz"
    io.save(path, TREE)
    return path


# ---------------------------------------------------------------------------- save: leaves

REFUSED_LEAVES = {
    "object-array": np.array([1, "a"], object), "object-0d": np.array(None, object),
    "object-field": np.zeros(2, [("a", object)]), "python-object": object(),
    "lambda": lambda: 0, "set": {1}, "frozenset": frozenset(), "int-2**70": 2**70,
    "int--2**70": -(2**70), "datetime": datetime.datetime(2020, 1, 1), "str": "x",
    "bytes": b"x", "bytearray": bytearray(b"x"), "memoryview": memoryview(b"x"),
    "decimal": decimal.Decimal(1), "ellipsis": ..., "type": int, "range": range(2),
    "deque": collections.deque([1.0]), "masked": np.ma.masked_array([1.0, 2.0], mask=[0, 1])}
ACCEPTED_LEAVES = {  # load gives them back as they were (an IntEnum as its int)
    "str-array": np.array(["a", "bc"]), "bytes-array": np.array([b"a"]),
    "datetime64": np.array(["2020-01-01"], "M8[D]"), "timedelta": np.timedelta64(5, "s"),
    "structured": np.zeros(2, [("a", "f4"), ("b", "i4")]), "empty": np.zeros((0, 3)),
    "big-endian": np.arange(3, dtype=">f8"), "strided": np.ones((4, 4))[::2, ::3],
    "float16": np.float16(1.5), "uint64-max": 2**64 - 1, "nan": float("nan"),
    "intenum": enum.IntEnum("E", "A").A, "0d": np.array(2.0)}


@pytest.mark.parametrize("i", range(len(WHERE)), ids=WHERE)
@pytest.mark.parametrize("leaf", [*REFUSED_LEAVES.values(), *ACCEPTED_LEAVES.values()],
                         ids=[*REFUSED_LEAVES, *ACCEPTED_LEAVES])
def test_save_refuses_a_leaf_it_could_not_load_back_and_keeps_the_rest(tmp_path, i, leaf):
    target = tmp_path / "t.npz"
    io.save(target, TREE)
    before = target.read_bytes()
    back = _with_leaf(i, int(leaf) if isinstance(leaf, enum.IntEnum) else leaf)
    refused = any(leaf is v for v in REFUSED_LEAVES.values())
    outcome(lambda: (io.save(target, _with_leaf(i, leaf)), io.load(target))[1],
            ("io.save", WHERE[i]), errors=(TypeError,) if refused else (), same=back)
    if refused:  # and nothing written
        assert os.listdir(tmp_path) == ["t.npz"] and target.read_bytes() == before


# ---------------------------------------------------------------------------- save: keys

BAD_KEYS = {"tuple": (1, 2), "float": 1.5, "none": None, "bytes": b"k",
            "np.int64": np.int64(1), "np.str_": np.str_("k"), "frozenset": frozenset()}
GOOD_KEYS = {"zero": 0, "negative": -1, "int-2**70": 2**70, "empty": "", "unicode": "é",
             "bool": True,  # optim.partition's labels may be bools
             "leaf_0": "leaf_0", "header-name": HEADER, "quote": "'\""}


@pytest.mark.parametrize("key", [*BAD_KEYS.values(), *GOOD_KEYS.values()],
                         ids=[*BAD_KEYS, *GOOD_KEYS])
def test_save_refuses_a_dict_key_it_could_not_load_back(tmp_path, key):
    good = any(key is v for v in GOOD_KEYS.values())
    for t, where in [({key: 1.0}, "the root"), ({"d": {key: 1.0}, "e": {0: 2.0}}, "['d']")]:
        outcome(lambda t=t: (io.save(tmp_path / "k.npz", t), io.load(tmp_path / "k.npz"))[1],
                ("io.save", where), errors=() if good else (TypeError,), same=t)
    assert os.listdir(tmp_path) == (["k.npz"] if good else [])


def test_a_tree_that_contains_itself_is_refused_as_too_deep(tmp_path):
    # No pytree contains itself; walking one ends in RecursionError in funcdl.tree and
    # jax.tree_util alike (test_fuzz_api_optim.py), but io.save measures the depth first.
    loop: list[Any] = [1.0]
    loop.append(loop)
    with pytest.raises(ValueError, match=r"io\.save: the tree's containers nest more than"):
        io.save(tmp_path / "l.npz", loop)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- paths

def _fifo(tmp: Path, link: bool = False) -> Path:
    os.mkfifo(tmp / "fifo")
    if link:
        os.symlink(tmp / "fifo", tmp / "link")
    return tmp / ("link" if link else "fifo")


OS = (OSError,)  # the disk says no: the OSError subclass Python gives, named after io.*
BAD_PATHS: dict[str, tuple[Callable[[Path], Any], tuple[type[BaseException], ...]]] = {
    "none": (lambda t: None, ()), "int": (lambda t: 3, ()), "float": (lambda t: 1.5, ()),
    "list": (lambda t: [str(t / "a")], ()), "bytes": (lambda t: os.fsencode(t / "a"), ()),
    "bytes-pathlike": (lambda t: type("P", (), {"__fspath__": lambda _: b"a"})(), ()),
    "empty": (lambda t: "", ()),
    "nul": (lambda t: f"{t}/a\0b.npz", ()), "directory": (lambda t: t, OS),
    "directory-slash": (lambda t: f"{t}/", OS), "no-directory": (lambda t: t / "no" / "a", OS),
    "file-slash": (lambda t: f"{t / 'a.npz'}/", OS), "too-long": (lambda t: t / ("a" * 300), OS),
    "fifo": (_fifo, ()), "link-to-fifo": (lambda t: _fifo(t, link=True), ()),
}


@pytest.mark.parametrize("call", ["save", "load"])
@pytest.mark.parametrize("make, oserrors", list(BAD_PATHS.values()), ids=list(BAD_PATHS))
def test_a_bad_path_is_refused_naming_the_function_and_nothing_is_written(
        tmp_path, monkeypatch, call, make, oserrors):
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with ThreadPoolExecutor(1) as pool:  # a load blocked on a FIFO must not hang the suite
        done = pool.submit(outcome, lambda: io.save(path, TREE) if call == "save" else
                           io.load(path), (f"io.{call}",), errors=(ValueError, TypeError,
                                                                   *oserrors))
        try:
            done.result(timeout=10)
        except FutureTimeout:  # free it by opening the FIFO's other end, then fail
            open(tmp_path / "fifo", "wb").close()
            pytest.fail("io.load blocked opening a FIFO")
    assert sorted(os.listdir(tmp_path)) == before
    assert "fifo" not in before or not os.path.isfile(tmp_path / "fifo")


@pytest.mark.parametrize("name", ["params", "p.npz.bak", ".hidden", "with space.npz"])
def test_any_file_name_is_written_exactly_and_read_back(tmp_path, name):
    io.save(tmp_path / name, TREE)
    assert os.listdir(tmp_path) == [name]
    assert_same(io.load(str(tmp_path / name)), TREE)


# ---------------------------------------------------------------------------- like

def _likes() -> list[Any]:
    out = []
    for i, (where, leaf) in enumerate(zip(WHERE, LEAVES)):
        a = np.asarray(leaf)
        for pid, value in [("rank+1", a[None]), ("none", None), ("lambda", lambda: 0),
                           ("dtype", a.astype("c8" if a.dtype.kind == "c" else "f2")),
                           ("str", "x"), ("list", [leaf]),
                           ("shape", a[0] if a.ndim else np.stack([a, a]))]:
            out.append(pytest.param(_with_leaf(i, value), where, id=f"{where}-{pid}"))
    b, nt = TREE["b"], collections.namedtuple("Pair", "a c")
    return out + [pytest.param(v, "", id=k) for k, v in {
        "scalar": 1.0, "empty-list": [], "empty-dict": {}, "missing-key": {"w": 1, "b": b},
        "extra-key": {**TREE, "x": 1.0}, "tuple-for-list": {**TREE, "b": tuple(b)},
        "list-for-namedtuple": {**TREE, "p": list(TREE["p"])}, "shorter": {**TREE, "b": b[:-1]},
        "other-namedtuple": {**TREE, "p": nt(*TREE["p"])}, "mixed-keys": {1: 1.0, "a": 2.0},
        "generator": (x for x in [1.0]), "deque": collections.deque([1.0])}.items()]


@pytest.mark.parametrize("like, where", _likes())
def test_like_mismatch_names_the_file_and_the_path(saved, like, where):
    outcome(lambda: io.load(saved, like=like), ("io.load", "t.npz", where))


@pytest.mark.parametrize("like", [
    _with_leaf(1, np.int64(7)),
    _with_leaf(6, np.ma.masked_array(TREE["w"])),
    {**TREE, "p": collections.namedtuple("Pair", "a b")(np.int32(0), 0j)},
], ids=["numpy-int-for-python-int", "masked", "namedtuple-by-name"])
def test_like_of_the_same_structure_shapes_and_dtypes_loads_the_file(saved, like):
    # leaves come back as the file holds them, never taken from like (io.load's docstring)
    outcome(lambda: io.load(saved, like=like), (), errors=(), same=TREE)


def test_like_an_ordered_dict_loads_the_file_as_one(saved):
    # the containers are like's, as its NamedTuple classes are; the leaves the file's
    got = outcome(lambda: io.load(saved, like=collections.OrderedDict(TREE)), (), errors=(),
                  same=lambda got: assert_same(dict(got), TREE))
    assert type(got) is collections.OrderedDict and list(got) == ["b", "p", "w"]


# ---------------------------------------------------------------------------- broken files

def _entries(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _rewrite(path: Path, **changed: Any) -> Path:
    """The archive at ``path`` again, with ``changed`` entries (None: dropped)."""
    entries = {**_entries(path), **changed}
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in entries.items() if v is not None}, allow_pickle=True)
    return path


def _consistent(path: Path) -> Callable[[Any], None]:
    """What a successful load of a tampered file must be: leaf i is the file's leaf_i (a
    Python scalar by value), in a tree that io.save writes back."""
    raw = _entries(path)

    def check(got: Any) -> None:
        leaves = tree.leaves(got)
        assert len(leaves) == len([k for k in raw if k.startswith("leaf_")]), got
        for i, leaf in enumerate(leaves):
            python = isinstance(leaf, (int, float, complex))
            want = raw[f"leaf_{i}"]
            np.testing.assert_array_equal(leaf, want[()] if python else want, strict=not python)
        io.save(path.with_name("again.npz"), got)
        assert_same(io.load(path.with_name("again.npz")), got)
    return check


N = 2468  # bytes in TREE's file (asserted below): the offsets are fixed


@pytest.mark.parametrize("cut", [-1, 0, 1, 5, 30, 100, N // 2, N - 22, N - 1])
@pytest.mark.parametrize("flip", [False, True], ids=["truncated", "flipped"])
def test_a_truncated_or_flipped_file_is_refused_naming_it_or_loads_the_same(saved, cut, flip):
    data = bytearray(saved.read_bytes())
    assert len(data) == N
    if flip:
        data[cut] ^= 0xFF
    saved.write_bytes(bytes(data if flip else data[:cut]))
    outcome(lambda: io.load(saved), ("io.load", str(saved)), same=flip and TREE)


UNPICKLED: list[str] = []


class Trap:  # unpickling it records the fact: load must never
    def __reduce__(self) -> Any:
        return (UNPICKLED.append, ("unpickled",))


def _npy(shape: Any, descr: str = "<f8", payload: bytes = b"") -> bytes:
    b = pyio.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False,
                                             "shape": shape})
    return b.getvalue() + payload


def _zip(path: Path, **members: bytes) -> Path:
    """The archive with raw bytes as some of its members."""
    entries = _entries(path)
    with zipfile.ZipFile(path, "w") as z:
        for k, v in entries.items():
            b = pyio.BytesIO()
            np.save(b, v)
            z.writestr(f"{k}.npy", members.pop(k, b.getvalue()))
    return path


DEEP = b'{"type":"list","children":[' * 5000 + b'{"type":"leaf"}' + b"]}" * 5000
FOREIGN_FILES: dict[str, tuple[Callable[[Path], Any], str]] = {  # and a word the error says
    "plain-savez": (lambda p: np.savez(p, w=np.ones(3)), "no '__funcdl_treedef__'"),
    "compressed": (lambda p: np.savez_compressed(p, leaf_0=np.ones(2)), "not written by"),
    "single-npy": (lambda p: p.write_bytes(_npy((3,), payload=bytes(24))), "single .npy"),
    "pickle": (lambda p: p.write_bytes(b"\x80\x04\x95" + bytes(20)), "no zip signature"),
    "text": (lambda p: p.write_text("not an archive\n"), "no zip signature"),
    "empty-zip": (lambda p: zipfile.ZipFile(p, "w").close(), "not written by"),
    "pickled-leaf": (lambda p: _rewrite(p, leaf_0=np.array([Trap()], object)), "pickled"),
    "pickled-header": (lambda p: _rewrite(p, **{HEADER: np.array([Trap()], object)}), "pickled"),
    "leaf-not-npy": (lambda p: _zip(p, leaf_0=b"hello"), "'leaf_0' is not a .npy"),
    "header-not-npy": (lambda p: _zip(p, **{HEADER: b"{}"}), "is not a .npy"),
    "leaf-huge-shape": (lambda p: _zip(p, leaf_0=_npy((2**40,))), "'leaf_0' declares shape"),
    "header-huge": (lambda p: _zip(p, **{HEADER: _npy((2**40,), "|u1")}), "declares shape"),
    "leaf-short": (lambda p: _zip(p, leaf_0=_npy((3,), payload=bytes(10))), "holds 10"),
    "leaf-negative-shape": (lambda p: _zip(p, leaf_0=_npy((-3,))), "declares shape (-3,)"),
    "leaf-bad-descr": (lambda p: _zip(p, leaf_0=_npy((3,), "<zz")), "malformed .npy header"),
    "leaf-object-descr": (lambda p: _zip(p, leaf_0=_npy((3,), "|O", b"\x80\x04N.")), "pickled"),
    "leaf-missing": (lambda p: _rewrite(p, leaf_6=None), "missing entry 'leaf_6'"),
    "too-deep": (lambda p: _rewrite(p, **{HEADER: np.frombuffer(
        b'{"format":"funcdl.io","version":1,"leaves":["array"],"treedef":' + DEEP + b"}",
        np.uint8)}), "nested too deeply"),
}


@pytest.mark.parametrize("make, word", list(FOREIGN_FILES.values()), ids=list(FOREIGN_FILES))
def test_a_foreign_or_broken_archive_is_refused_naming_it_and_never_unpickled(saved, make, word):
    make(saved)
    outcome(lambda: io.load(saved), ("io.load", str(saved), word))
    assert UNPICKLED == []


def _header() -> Any:
    with tempfile.TemporaryDirectory() as d:
        io.save(Path(d) / "t.npz", TREE)
        return json.loads(_entries(Path(d) / "t.npz")[HEADER].tobytes())


def _header_mutations() -> list[Any]:
    """Every field of every node of TREE's header dropped, or set to each of ``values``;
    each entry of its lists (keys, fields, leaves) replaced."""
    values = ["drop", None, 0, -1, 1.5, True, "", "x", "leaf", "dict", "b", [], {}, [1]]
    out: list[Any] = []

    def walk(node: Any, route: tuple[Any, ...]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            at = (*route, k)
            if isinstance(v, (dict, list)) and isinstance(node, list):
                walk(v, at)
                continue
            news = values if isinstance(node, dict) else [None, 1, 1.5, "zz", "b", "a", "int"]
            out.extend(pytest.param(at, x, id=f"{'/'.join(map(str, at))}={x!r}") for x in news)
            if isinstance(v, (dict, list)):
                walk(v, at)

    walk(_header(), ())
    return out


@pytest.mark.parametrize("route, value", _header_mutations())
def test_a_tampered_header_is_refused_or_read_consistently(saved, route, value):
    header = node = json.loads(_entries(saved)[HEADER].tobytes())
    for step in route[:-1]:
        node = node[step]
    if value == "drop":
        del node[route[-1]]
    else:
        node[route[-1]] = value
    _rewrite(saved, **{HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    outcome(lambda: io.load(saved), ("io.load", str(saved), ("malformed", "version")),
            same=_consistent(saved))


LEAF_ENTRIES = {"2d": np.ones((2, 2)), "0d-float": np.array(1.5), "0d-int": np.array(3),
                "0d-bool": np.array(True), "0d-complex": np.array(1j), "0d-str": np.array("s"),
                "0d-void": np.zeros((), [("a", "i4")]), "0d-datetime": np.array("2020", "M8[Y]"),
                "0d-float16": np.array(1, np.float16), "0d-uint64": np.array(2**64 - 1, "u8"),
                "empty": np.zeros(0)}


@pytest.mark.parametrize("i", range(len(WHERE)), ids=[f"leaf_{i}" for i in range(len(WHERE))])
@pytest.mark.parametrize("entry", list(LEAF_ENTRIES.values()), ids=list(LEAF_ENTRIES))
def test_a_tampered_leaf_entry_is_refused_or_read_consistently(saved, i, entry):
    _rewrite(saved, **{f"leaf_{i}": entry})
    for like in (None, TREE):
        outcome(lambda like=like: io.load(saved, like=like), ("io.load", str(saved)),
                same=_consistent(saved))
