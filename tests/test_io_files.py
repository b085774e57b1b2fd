"""Tests for funcdl.io on disk: save writes exactly the path given, keeps permission bits,
is atomic (a crash or an interrupt leaves the old file and no temporary one) and names a
bad path; load refuses bad files (truncated, foreign, pickled, a future version) with a
ValueError naming them. Round trips and ``like``: test_io.py."""

from __future__ import annotations

import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from funcdl import io, tree

# ---------------------------------------------------------------------------- writing

def test_writes_exactly_the_given_path_and_overwrites(tmp_path):
    target = tmp_path / "params.weights"
    io.save(target, {"a": np.zeros(2)})
    io.save(target, {"a": np.ones(3)})
    assert sorted(os.listdir(tmp_path)) == ["params.weights"]
    np.testing.assert_array_equal(io.load(target)["a"], np.ones(3))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_overwrite_keeps_permission_bits(tmp_path):
    target = tmp_path / "p.npz"
    io.save(target, [1])
    os.chmod(target, 0o640)
    io.save(target, [2])
    assert os.stat(target).st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------- atomic save

def _crash_in_savez(monkeypatch):
    real = np.savez

    def savez(f, **arrays):  # write a valid-looking prefix, then die
        real(f, **arrays)
        f.seek(0)
        f.truncate(100)
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", savez)


def _crash_in(name):
    def patch(monkeypatch):
        def boom(*args, **kwargs):
            raise RuntimeError(f"{name} failed")
        monkeypatch.setattr(os, name, boom)
    return patch


@pytest.mark.parametrize("crash", [_crash_in_savez, _crash_in("replace"), _crash_in("fsync")],
                         ids=["savez", "replace", "fsync"])
def test_crash_during_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch, crash):
    target = tmp_path / "params.npz"
    io.save(target, {"w": np.arange(4.0)})
    before = target.read_bytes()
    crash(monkeypatch)
    with pytest.raises(RuntimeError):
        io.save(target, {"w": np.zeros(1000)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["params.npz"]
    assert target.read_bytes() == before
    np.testing.assert_array_equal(io.load(target)["w"], np.arange(4.0))


def test_interrupt_during_save_removes_temp_and_creates_nothing(tmp_path, monkeypatch):
    def savez(f, **arrays):
        f.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        io.save(tmp_path / "new.npz", [np.ones(3)])
    assert os.listdir(tmp_path) == []



@pytest.mark.parametrize("path, error, match", [
    ("", ValueError, r"io\.(save|load): the path is empty"),
    (None, TypeError, r"io\.(save|load): path must be a str or os\.PathLike.*got NoneType"),
    (3, TypeError, r"path must be a str or os\.PathLike.*got int"),
    (b"p.npz", TypeError, r"got bytes"),
])
@pytest.mark.parametrize("call", ["save", "load"])
def test_a_bad_path_is_named_before_anything_is_written(tmp_path, monkeypatch, path, error,
                                                        match, call):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=match):
        io.save(path, [1.0]) if call == "save" else io.load(path)
    assert os.listdir(tmp_path) == []


def test_saving_onto_a_directory_names_it_not_the_temporary_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match=r"io\.save: '.*d' is a directory; give a "
                                                 r"file name in it, e\.g\. '.*params\.npz'"):
        io.save(tmp_path / "d", [1.0])
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


def test_save_into_a_directory_it_cannot_write_names_the_path_given(tmp_path, monkeypatch):
    # mkstemp's PermissionError named the hidden temporary file, '.params.npz.x1y2.tmp'
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".params.npz.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "params.npz"
    with pytest.raises(PermissionError, match=r"io.save: cannot write .*params\.npz'.*"
                                              r"Permission denied") as got:
        io.save(target, {"w": np.ones(2)})
    assert ".tmp" not in str(got.value) and got.value.filename == str(target)
    assert not target.exists()


# ---------------------------------------------------------------------------- refused files

UNPICKLED: list[str] = []


def _record_unpickle() -> str:
    UNPICKLED.append("unpickled")
    return "payload"


class Trap:
    """Unpickling this calls _record_unpickle: load must never do it."""

    def __reduce__(self):
        return (_record_unpickle, ())


def _valid(tmp_path: Path) -> Path:
    path = tmp_path / "valid.npz"
    io.save(path, {"w": np.arange(1000.0), "b": [np.ones(3, np.float32), 2]})
    return path


def _header(tmp_path: Path) -> np.ndarray:
    with np.load(_valid(tmp_path)) as f:
        return f["__funcdl_treedef__"]


def _truncated(tmp_path):
    data = _valid(tmp_path).read_bytes()
    (tmp_path / "bad.npz").write_bytes(data[: len(data) // 2])


def _random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "bad.npz").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _empty(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"")


def _flipped_byte(tmp_path):
    data = bytearray(_valid(tmp_path).read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside leaf data: the zip CRC check catches it
    (tmp_path / "bad.npz").write_bytes(bytes(data))


def _plain_npz(tmp_path):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, w=np.ones(3))


def _npy(tmp_path):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.save(f, np.ones(3))


def _object_array(tmp_path):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, __funcdl_treedef__=_header(tmp_path),
                 leaf_0=np.array([Trap()], dtype=object), leaf_1=np.ones(3, np.float32),
                 leaf_2=np.array(2), allow_pickle=True)


def _future_version(tmp_path):
    raw = _header(tmp_path).tobytes().replace(b'"version":1', b'"version":99')
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, __funcdl_treedef__=np.frombuffer(raw, np.uint8), leaf_0=np.zeros(1000),
                 leaf_1=np.ones(3, np.float32), leaf_2=np.array(2))


def _bad_json(tmp_path):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, __funcdl_treedef__=np.frombuffer(b"{not json", np.uint8))


def _missing_leaf(tmp_path):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, __funcdl_treedef__=_header(tmp_path), leaf_0=np.zeros(1000))


def _too_deep(tmp_path):  # a forged header: io.save never writes one 101 deep
    node = '{"type":"leaf"}'
    for _ in range(101):
        node = '{"type":"list","children":[' + node + ']}'
    raw = ('{"format":"funcdl.io","version":1,"treedef":' + node + ',"leaves":["array"]}')
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, __funcdl_treedef__=np.frombuffer(raw.encode(), np.uint8),
                 leaf_0=np.zeros(1))


@pytest.mark.parametrize("make, match", [
    (_too_deep, "nested more than 100 deep"),
    (_truncated, "truncated or corrupted"),
    (_random_bytes, "no zip signature"),
    (_empty, "truncated or corrupted"),
    (_flipped_byte, "truncated or corrupted"),
    (_plain_npz, "no '__funcdl_treedef__' entry"),
    (_npy, "single .npy array"),
    (_object_array, "entry .leaf_0. is an object"),
    (_future_version, "version 99"),
    (_bad_json, "malformed"),
    (_missing_leaf, "missing entry 'leaf_1'"),
])
def test_bad_file_raises_value_error_naming_it(tmp_path, make, match):
    make(tmp_path)
    bad = tmp_path / "bad.npz"
    with pytest.raises(ValueError, match=match) as info:
        io.load(bad)
    assert str(bad) in str(info.value)
    assert UNPICKLED == []


def _nested(levels: int) -> Any:
    t: Any = np.ones(2, np.float32)
    for _ in range(levels):
        t = [t]
    return t


def test_a_tree_100_deep_round_trips_and_a_deeper_one_is_refused(tmp_path):
    deep = _nested(100)
    io.save(tmp_path / "deep.npz", deep)
    assert tree.structure(io.load(tmp_path / "deep.npz", like=deep)) == tree.structure(deep)
    empty: Any = []  # 100 containers, the innermost empty: what load rebuilds
    for _ in range(99):
        empty = [empty]
    io.save(tmp_path / "empty.npz", empty)
    assert tree.structure(io.load(tmp_path / "empty.npz")) == tree.structure(empty)
    for deeper in (_nested(101), [empty], [{"a": empty}], _nested(5000)):  # 5000: before
        with pytest.raises(ValueError, match=r"io.save: the tree's containers nest more "
                                             r"than 100 deep"):  # any recursion could fail
            io.save(tmp_path / "deeper.npz", deeper)
    assert not (tmp_path / "deeper.npz").exists()


def test_a_header_that_lost_a_digit_is_refused_not_read_short(tmp_path):
    # the zip's CRC is checked only at the member's end: a (4000,) read of 5000 floats
    # would stop before it
    io.save(tmp_path / "a.npz", {"w": np.arange(5000, dtype=np.float32)})
    data = (tmp_path / "a.npz").read_bytes()
    assert data.count(b"(5000,)") == 1
    (tmp_path / "a.npz").write_bytes(data.replace(b"(5000,)", b"(4000,)"))
    with pytest.raises(ValueError, match=r"declares shape \(4000,\) of float32 \(16000 "
                                         r"bytes\) but holds 20000"):
        io.load(tmp_path / "a.npz")


def test_large_and_zero_itemsize_entries_round_trip(tmp_path):
    big = np.arange(300_000, dtype=np.float32) * 0.5  # read in several 256 KiB pieces
    t = {"big": big, "void": np.zeros(4, "V0"), "empty": np.zeros((0, 3))}
    io.save(tmp_path / "t.npz", t)
    out = io.load(tmp_path / "t.npz", like=t)
    np.testing.assert_array_equal(out["big"], big)
    assert out["void"].shape == (4,) and out["void"].dtype == np.dtype("V0")
    assert out["empty"].shape == (0, 3)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "nope.npz")


def test_save_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no directory '.*sub' to write 'p.npz'"):
        io.save(tmp_path / "sub" / "p.npz", {"w": np.ones(2)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_load_closes_the_file_even_on_error(tmp_path):
    good = _valid(tmp_path)
    _truncated(tmp_path)
    open_before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        io.load(good)
        with pytest.raises(ValueError):
            io.load(tmp_path / "bad.npz")
    assert len(os.listdir("/proc/self/fd")) == open_before


def _rewritten(tmp_path: Any, leaf: bytes) -> Path:
    """A saved archive whose ``leaf_0.npy`` member is ``leaf`` instead; returns its path."""
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    io.save(good, {"w": np.zeros(4)})
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as z:
        for n in zin.namelist():
            z.writestr(n, leaf if n.startswith("leaf_0") else zin.read(n))
    return bad


def _npy_header(version: int, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    text += b" " * ((64 - (12 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(text)) + text


def test_a_version_3_entry_declaring_terabytes_is_refused_before_numpy_allocates(tmp_path):
    bad = _rewritten(tmp_path, _npy_header(3, (10**6, 10**6)) + b"\0" * 64)
    with pytest.raises(ValueError, match=r"entry 'leaf_0' declares shape \(1000000, 1000000\)"):
        io.load(bad)


def test_forged_member_sizes_are_bounded_by_the_archive_size(tmp_path):
    # the zip directory claims 3.8 GB for a 64-byte member: the archive is a few hundred bytes
    n = 480_000_000
    header = _npy_header(2, (n,))
    bad = _rewritten(tmp_path, header + b"\0" * 64)
    raw = bytearray(bad.read_bytes())
    i = raw.find(b"PK\x01\x02")
    while i >= 0:  # each central directory record: sizes at +20 and +24, name at +46
        name_len = struct.unpack_from("<H", raw, i + 28)[0]
        if raw[i + 46:i + 46 + name_len].startswith(b"leaf_0"):
            struct.pack_into("<II", raw, i + 20, len(header) + 8 * n, len(header) + 8 * n)
        i = raw.find(b"PK\x01\x02", i + 4)
    bad.write_bytes(bytes(raw))
    # zipfile refuses it first from CPython 3.13 on (its check for overlapping entries)
    with pytest.raises(ValueError, match=r"entry 'leaf_0' declares shape \(480000000,\)|"
                       r"Overlapped entries"):
        io.load(bad)


def test_a_tree_loaded_without_like_pickles(tmp_path):
    """Its NamedTuple stand-ins lived in no importable module: pickle (a sweep's result
    from a process pool) failed on them (a probe of pickling)."""
    import copy
    import pickle

    from funcdl import io, optim

    opt = optim.adam(1e-3)
    path = tmp_path / "state.npz"
    io.save(path, opt.init({"w": np.ones(3, np.float32)}))
    loaded = io.load(path)
    back = pickle.loads(pickle.dumps(loaded))
    assert type(back) is type(loaded) and back._fields == loaded._fields
    np.testing.assert_array_equal(back.states["adam"].mu["w"], loaded.states["adam"].mu["w"])
    assert type(copy.deepcopy(loaded)) is type(loaded)
