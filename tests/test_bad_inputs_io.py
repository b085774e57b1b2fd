"""The catalogue of bad inputs, continued (see test_bad_inputs.py): saving and loading
(funcdl.io): truncated, corrupted, pickled and foreign files, object leaves. Split from
test_bad_inputs_api.py."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _catalogue import F32, case, ones

from funcdl import io, optim

PARAMS = {"w": ones(3, 2), "b": np.zeros(2, F32)}  # as test_bad_inputs_api.py's
GRADS = {"w": ones(3, 2), "b": ones(2)}

# ---------------------------------------------------------------------------- io

CKPT = {"w": ones(3, 2), "b": np.zeros(2, F32), "l": [np.int32(3), None, (1.5, True)]}


def _saved(tmp: Path) -> Path:
    path = tmp / "ckpt.npz"
    io.save(path, CKPT)
    return path


def _truncated(tmp: Path) -> Any:
    raw = _saved(tmp).read_bytes()
    (tmp / "cut.npz").write_bytes(raw[: len(raw) // 2])
    return io.load(tmp / "cut.npz")


def _corrupted(tmp: Path) -> Any:
    raw = bytearray(_saved(tmp).read_bytes())
    for i in range(100, len(raw) - 100, 7):
        raw[i] ^= 0xFF
    (tmp / "bad.npz").write_bytes(bytes(raw))
    return io.load(tmp / "bad.npz")


def _empty(tmp: Path) -> Any:
    (tmp / "empty.npz").write_bytes(b"")
    return io.load(tmp / "empty.npz")


def _pickled(tmp: Path) -> Any:
    (tmp / "pickled.npz").write_bytes(pickle.dumps(CKPT))
    return io.load(tmp / "pickled.npz")


def _object_leaf(tmp: Path) -> Any:
    """A well-formed funcdl archive whose leaf is a pickled object array."""
    io.save(tmp / "ok.npz", {"a": np.ones(2)})
    with np.load(tmp / "ok.npz") as z:
        header = z["__funcdl_treedef__"]
    np.savez(tmp / "object.npz", __funcdl_treedef__=header,
             leaf_0=np.array([{"a": 1}, None], dtype=object))
    return io.load(tmp / "object.npz")


def _plain_npz(tmp: Path) -> Any:
    np.savez(tmp / "plain.npz", a=np.ones(3))
    return io.load(tmp / "plain.npz")


def _npy(tmp: Path) -> Any:
    np.save(tmp / "single.npy", np.ones(3))
    return io.load(tmp / "single.npy")


_Renamed = collections.namedtuple("N", ["a", "def"], rename=True)

IO_CASES = [
    case("load-truncated", _truncated, ValueError, "io.load", "cut.npz", "truncated"),
    case("load-corrupted", _corrupted, ValueError, "io.load", "bad.npz", "corrupted"),
    case("load-empty-file", _empty, ValueError, "io.load", "empty.npz", "not an .npz"),
    case("load-pickle-file", _pickled, ValueError, "io.load", "pickled.npz", "not an .npz"),
    case("load-object-array", _object_leaf, ValueError, "io.load", "object.npz", "leaf_0",
         "object"),
    case("load-npz-not-from-save", _plain_npz, ValueError, "io.load", "plain.npz",
         "__funcdl_treedef__"),
    case("load-single-npy", _npy, ValueError, "io.load", "single.npy", ".npy"),
    case("load-missing-file", lambda tmp: io.load(tmp / "nope.npz"), FileNotFoundError,
         "nope.npz"),
    case("load-like-structure",
         lambda tmp: io.load(_saved(tmp), like={"w": CKPT["w"], "b": CKPT["b"]}), ValueError,
         "io.load", "ckpt.npz", "the root", "['b', 'l', 'w']", "['b', 'w']"),
    case("load-like-list-vs-tuple",
         lambda tmp: io.load(_saved(tmp), like={**CKPT, "l": [np.int32(3), None, [1.5, True]]}),
         ValueError, "io.load", "['l'][2]", "tuple of length 2", "list of length 2"),
    case("load-like-shape",
         lambda tmp: io.load(_saved(tmp), like={**CKPT, "w": ones(2, 3)}), ValueError,
         "io.load", "['w']", "(3, 2)", "(2, 3)"),
    case("load-like-dtype",
         lambda tmp: io.load(_saved(tmp), like={**CKPT, "w": ones(3, 2, dtype=np.float64)}),
         ValueError, "io.load", "['w']", "float32", "float64"),
    case("save-object-array",
         lambda tmp: io.save(tmp / "x.npz", {"a": np.array([None], dtype=object)}), TypeError,
         "io.save", "['a']", "object"),
    case("save-string-leaf", lambda tmp: io.save(tmp / "x.npz", {"a": "hello"}), TypeError,
         "io.save", "['a']", "str"),
    case("save-tuple-dict-key", lambda tmp: io.save(tmp / "x.npz", {(1, 2): np.ones(2)}),
         TypeError, "io.save", "(1, 2)"),
    case("save-namedtuple-load-cannot-rebuild",  # a renamed field: '_1'
         lambda tmp: io.save(tmp / "x.npz", {"n": _Renamed(1, 2)}), ValueError,
         "io.save", "NamedTuple N", "['n']", "cannot be loaded back", "'_1'"),
    case("optimizer-state-loaded-without-like",
         lambda tmp: (io.save(tmp / "s.npz", optim.adam().init(PARAMS)),
                      optim.adam().update(io.load(tmp / "s.npz"), GRADS, PARAMS)),
         TypeError, "adam.update", "not funcdl's own", "like=opt.init(params)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), IO_CASES)
def test_io(call, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        call(tmp_path)


def test_failed_save_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        io.save(tmp_path / "x.npz", {"a": "hello"})
    assert list(tmp_path.iterdir()) == []
