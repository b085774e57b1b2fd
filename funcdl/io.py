"""Safe save / load of pytrees as ``.npz`` files: atomic writes, never unpickled.

``save(path, tree)`` writes every leaf as an array (``leaf_0``, ``leaf_1``, ... in flattening
order) and the tree structure as JSON (a uint8 array under ``__funcdl_treedef__``, with a
format version). ``load(path)`` rebuilds the tree; ``load(path, like=params)`` rebuilds it
with ``like``'s own NamedTuple classes and checks structure, shapes and dtypes first
(a dict subclass such as OrderedDict comes back a dict, as ``funcdl.tree`` rebuilds it).

What survives a round trip: dict (str or int keys), list, tuple, None, NamedTuple
(class name and field names; without ``like`` it comes back as a ``collections.namedtuple``
of that name), NumPy arrays (values, shape, dtype), NumPy scalars, and Python
int / float / bool / complex (returned as Python scalars). Object arrays are refused: files are
read with ``allow_pickle=False`` only.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import zlib
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.typing import NDArray

from funcdl import tree as pytree
from funcdl.tree import TreeDef

__all__ = ["load", "save"]

Tree = Any
TREEDEF_KEY = "__funcdl_treedef__"
FORMAT = "funcdl.io"
VERSION = 1
_STEPS = ("leaf", "none", "tuple", "list", "dict", "namedtuple")


class _Corrupt(ValueError):
    """A file that is not a well-formed funcdl archive (re-raised naming the path)."""


# ---------------------------------------------------------------------------- save

def save(path: str | os.PathLike[str], tree: Tree) -> None:
    """Write ``tree`` to ``path`` (exactly that name, no suffix added) as an ``.npz``.

    Atomic: the archive is written to a temporary file in the same directory, flushed and
    fsynced, then renamed onto ``path``. If anything fails, the temporary file is removed
    and a file already at ``path`` is left untouched. A symlink at ``path`` is followed;
    an existing file keeps its permission bits.

    Raises:
        FileNotFoundError: the directory of ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        TypeError: a dict key that is not str or int, a leaf that is not a NumPy array,
            NumPy scalar or Python int / float / bool / complex, an object-dtype leaf, or a
            masked array (its mask would be lost); the message names the path. Nothing is written
            then. Also a ``path`` that is not a str or PathLike (ValueError: an empty one).
    """
    import tempfile  # here, not at the top: `import funcdl` stays fast (tempfile pulls
    # in shutil, random, bz2 and lzma), and only a save needs it
    name = _path("io.save", path)
    arrays, header = _encode(tree)
    entries: dict[str, Any] = {TREEDEF_KEY: header, **arrays}
    target = os.path.realpath(name)
    if os.path.isdir(target):  # else the rename would name the temporary file
        raise IsADirectoryError(errno.EISDIR, f"io.save: {name!r} is a directory; give a "
                                f"file name in it, e.g. {os.path.join(name, 'params.npz')!r}",
                                name)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):  # else mkstemp would name its temporary file instead
        raise FileNotFoundError(errno.ENOENT, f"io.save: no directory {directory!r} to "
                                f"write {os.path.basename(target)!r} into (create it "
                                f"first: os.makedirs(path, exist_ok=True))", directory)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)[:64]}.",
                                   suffix=".tmp", dir=directory)
    except OSError as e:  # it named its temporary file, which the caller never asked for
        raise type(e)(e.errno, f"io.save: cannot write {name!r}: {e.strerror} (the file is "
                               f"written beside it first, then renamed)", name) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _path(where: str, path: Any) -> str:
    """``path`` as a str, or a TypeError / ValueError naming ``where``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike such as pathlib.Path, "
                        f"got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str):  # a PathLike of bytes
        raise TypeError(f"{where}: path must name a file as text, got bytes {name!r}")
    if not name:
        raise ValueError(f"{where}: the path is empty; give a file name such as 'params.npz'")
    return name


def _encode(t: Tree) -> tuple[dict[str, NDArray[Any]], NDArray[np.uint8]]:
    """The leaf arrays and the JSON header, after refusing anything load could not give
    back."""
    _check_keys(t, "")
    arrays: dict[str, NDArray[Any]] = {}
    kinds: list[str] = []
    for i, (path, leaf) in enumerate(pytree.leaves_with_path(t)):
        kind, a = _leaf_array(leaf, path)
        arrays[f"leaf_{i}"] = a
        kinds.append(kind)
    header = {"format": FORMAT, "version": VERSION,
              "treedef": _encode_def(pytree.structure(t)), "leaves": kinds}
    import json

    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return arrays, np.frombuffer(raw, dtype=np.uint8)


def _where(path: str) -> str:
    return path or "the root"


def _check_keys(t: Tree, path: str) -> None:
    # pytree.structure sorts dict keys; check them here so the error names a path.
    if isinstance(t, dict):
        bad = [k for k in t if type(k) not in (str, int)]
        if bad:
            raise TypeError(
                f"io.save: dict keys must be str or int, got {type(bad[0]).__name__} key "
                f"{bad[0]!r} at {_where(path)}")
        if len({type(k) for k in t}) > 1:
            raise TypeError(f"io.save: the dict at {_where(path)} mixes str and int keys, "
                            f"which cannot be sorted")
        for k, v in t.items():
            _check_keys(v, f"{path}[{k!r}]")
    elif isinstance(t, (list, tuple)):
        fields = getattr(type(t), "_fields", None)
        if fields:
            try:  # what load will build: refuse now what it could not
                _namedtuple(type(t).__name__, tuple(fields))
            except (TypeError, ValueError) as e:
                raise ValueError(f"io.save: the NamedTuple {type(t).__name__} at "
                                 f"{_where(path)} cannot be loaded back: {e}") from None
        steps = [f".{f}" for f in fields] if fields else [f"[{i}]" for i in range(len(t))]
        for v, step in zip(t, steps, strict=True):
            _check_keys(v, path + step)


def _leaf_array(leaf: Any, path: str) -> tuple[str, NDArray[Any]]:
    if isinstance(leaf, np.ma.MaskedArray):  # the mask would be dropped without a word
        raise TypeError(f"io.save: the leaf at {_where(path)} is a masked array, which "
                        f"would lose its mask; save its .data and .mask as two leaves")
    if isinstance(leaf, np.ndarray):
        kind = "array"
    elif isinstance(leaf, np.generic):  # before float: np.float64 subclasses float
        kind = "numpy"
    elif isinstance(leaf, bool):  # before int: bool subclasses int
        kind = "bool"
    elif isinstance(leaf, int):
        kind = "int"
    elif isinstance(leaf, float):
        kind = "float"
    elif isinstance(leaf, complex):  # as np.complex128 is
        kind = "complex"
    else:
        raise TypeError(
            f"io.save: unsupported leaf of type {type(leaf).__name__} at {_where(path)}; "
            f"funcdl.io saves NumPy arrays, NumPy scalars and Python int / float / bool / "
            f"complex")
    a = np.asarray(leaf)
    if a.dtype.hasobject:
        what = ("a Python int that fits neither int64 nor uint64" if kind == "int"
                else "an object array")
        raise TypeError(f"io.save: {what} at {_where(path)} (dtype {a.dtype}) cannot be "
                        f"saved without pickle; convert it to a numeric dtype")
    return kind, a


def _encode_def(td: TreeDef) -> dict[str, Any]:
    node: dict[str, Any] = {"type": td.kind}
    if td.kind == "dict":
        node["keys"] = list(td.meta)
    elif td.kind == "namedtuple":
        node["name"] = td.meta.__name__
        node["fields"] = list(td.meta._fields)
    if td.kind not in ("leaf", "none"):
        node["children"] = [_encode_def(c) for c in td.children]
    return node


def _mode_for(target: str) -> int:
    """The existing file's permission bits, else 0o666 minus the umask (read without
    changing it, which os.umask cannot do), else 0o600 as mkstemp made it."""
    with contextlib.suppress(OSError):
        return os.stat(target).st_mode & 0o7777
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o600


def _fsync_dir(directory: str) -> None:
    """Make the rename durable; best effort (not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- load

def load(path: str | os.PathLike[str], like: Tree = None) -> Tree:
    """Read a tree written by ``save``; nothing is ever unpickled.

    Without ``like``, containers are rebuilt from the file (a NamedTuple as a
    ``collections.namedtuple`` of the stored name and fields). With ``like``, the file must
    have ``like``'s structure (NamedTuples matched by class name and fields) and every leaf
    ``like``'s shape and dtype; the result uses ``like``'s NamedTuple classes. Leaves come
    back as they were saved (array, NumPy scalar or Python scalar), never taken from ``like``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a file that is not a complete funcdl archive (truncated, corrupted, not a
            zip, no treedef entry, an object array inside), or a mismatch with ``like``; the
            message names the file and, for a mismatch, the first differing path and both
            values.
    """
    import zipfile  # a load's own dependency (json too, in _header): see save

    name = _path("io.load", path)
    with open(name, "rb") as f:  # FileNotFoundError and other OS errors pass through
        try:
            td, leaves = _read(f)
        except _Corrupt as e:
            raise ValueError(f"io.load: {name}: {e}") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error,
                NotImplementedError, RuntimeError) as e:  # the last two: zip features, depth
            raise ValueError(f"io.load: {name}: {_explain(e)}") from e
    if like is None:
        return pytree.unflatten(td, leaves)
    like_def = pytree.structure(like)
    try:
        _compare(td, like_def, "")
        out = pytree.unflatten(like_def, leaves)
        pytree.check_same(out, like, ("file", "like"), shapes=True, dtypes=True)
    except ValueError as e:
        raise ValueError(f"io.load: {name}: {e}") from None
    return out


def _explain(e: BaseException) -> str:
    return f"truncated or corrupted file, or not an .npz archive ({type(e).__name__}: {e})"


def _read(f: Any) -> tuple[TreeDef, list[Any]]:
    magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise _Corrupt("a single .npy array, not an .npz archive written by funcdl.io.save")
    if not magic.startswith(b"PK"):
        raise _Corrupt("not an .npz archive (no zip signature): truncated or corrupted file, "
                       "or not written by funcdl.io.save")
    f.seek(0)
    data = np.load(f, allow_pickle=False)
    if not isinstance(data, NpzFile):  # np.load chose by the same magic bytes
        raise _Corrupt("not an .npz archive")
    with data:
        if TREEDEF_KEY not in data.files:
            raise _Corrupt(f"no {TREEDEF_KEY!r} entry: not written by funcdl.io.save "
                           f"(entries: {sorted(data.files)[:8]})")
        header = _header(_entry(data, TREEDEF_KEY))
        kinds = header["leaves"]
        td = _decode_def(header["treedef"])
        if not isinstance(kinds, list) or len(kinds) != td.num_leaves:
            raise _Corrupt("malformed treedef: leaf list does not match the structure")
        leaves = []
        for i, kind in enumerate(kinds):
            if f"leaf_{i}" not in data.files:
                raise _Corrupt(f"missing entry 'leaf_{i}'")
            leaves.append(_leaf_value(kind, _entry(data, f"leaf_{i}"), i))
    return td, leaves


def _entry(data: NpzFile, name: str) -> NDArray[Any]:
    try:
        return data[name]
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise
        raise _Corrupt(f"entry {name!r} is an object (pickled) array, which funcdl.io never "
                       f"loads") from None


def _header(raw: NDArray[Any]) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _Corrupt(f"malformed {TREEDEF_KEY!r} entry")
    import json

    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _Corrupt(f"malformed {TREEDEF_KEY!r} entry ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _Corrupt(f"malformed {TREEDEF_KEY!r} entry (no format tag)")
    version = header.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise _Corrupt(f"format version {version!r}; this funcdl reads versions 1 to "
                       f"{VERSION} (was the file written by a newer funcdl?)")
    if "treedef" not in header or "leaves" not in header:
        raise _Corrupt(f"malformed {TREEDEF_KEY!r} entry (no treedef)")
    return header


_NAMEDTUPLES: dict[tuple[str, tuple[str, ...]], type] = {}


def _namedtuple(name: str, fields: tuple[str, ...]) -> type:
    # One class per (name, fields), so trees loaded from several files share a structure.
    cls = _NAMEDTUPLES.get((name, fields))
    if cls is None:
        cls = _NAMEDTUPLES[(name, fields)] = collections.namedtuple(name, fields)
    return cls


def _decode_def(node: Any) -> TreeDef:
    if not isinstance(node, dict) or node.get("type") not in _STEPS:
        raise _Corrupt("malformed treedef: unknown node")
    kind = node["type"]
    if kind in ("leaf", "none"):
        return TreeDef(kind)
    children = node.get("children")
    if not isinstance(children, list):
        raise _Corrupt(f"malformed treedef: {kind} node without children")
    kids = tuple(_decode_def(c) for c in children)
    meta: Any = None
    if kind == "dict":
        keys = node.get("keys")
        if not isinstance(keys, list) or len(keys) != len(kids) \
                or any(type(k) not in (str, int) for k in keys) or len(set(keys)) != len(keys):
            raise _Corrupt("malformed treedef: bad dict keys")
        meta = tuple(keys)
    elif kind == "namedtuple":
        name, fields = node.get("name"), node.get("fields")
        if not isinstance(name, str) or not isinstance(fields, list) \
                or len(fields) != len(kids) or not all(isinstance(f, str) for f in fields):
            raise _Corrupt("malformed treedef: bad NamedTuple record")
        meta = _namedtuple(name, tuple(fields))  # ValueError on invalid identifiers
    return TreeDef(kind, meta, kids)


def _leaf_value(kind: Any, a: NDArray[Any], i: int) -> Any:
    if kind == "array":
        return a
    if kind not in ("numpy", "int", "float", "bool", "complex") or a.ndim != 0:
        raise _Corrupt(f"malformed treedef: leaf_{i} has kind {kind!r} and shape {a.shape}")
    x = a[()]
    if kind == "numpy":
        return x
    expected = {"int": "iu", "float": "f", "bool": "b", "complex": "c"}[kind]
    if a.dtype.kind not in expected:
        raise _Corrupt(f"malformed treedef: leaf_{i} is a Python {kind} stored as {a.dtype}")
    return {"int": int, "float": float, "bool": bool, "complex": complex}[kind](x)


# ---------------------------------------------------------------------------- like

def _describe(td: TreeDef) -> str:
    if td.kind == "leaf":
        return "a leaf"
    if td.kind == "none":
        return "None"
    if td.kind == "dict":
        return f"a dict with keys {list(td.meta)}"
    if td.kind == "namedtuple":
        return f"a NamedTuple {td.meta.__name__}({', '.join(td.meta._fields)})"
    return f"a {td.kind} of length {len(td.children)}"


def _compare(file: TreeDef, like: TreeDef, path: str) -> None:
    """Raise ValueError at the first path where the file's structure differs from like's;
    NamedTuples match by class name and field names (the file knows no classes)."""
    same = file.kind == like.kind and len(file.children) == len(like.children)
    if same and file.kind == "dict":
        same = tuple(file.meta) == tuple(like.meta)
    elif same and file.kind == "namedtuple":
        same = (file.meta.__name__, tuple(file.meta._fields)) == \
            (like.meta.__name__, tuple(like.meta._fields))
    if not same:
        raise ValueError(f"structure mismatch at {_where(path)}: file has {_describe(file)}, "
                         f"like has {_describe(like)}")
    if file.kind == "dict":
        steps = [f"[{k!r}]" for k in file.meta]
    elif file.kind == "namedtuple":
        steps = [f".{f}" for f in file.meta._fields]
    else:
        steps = [f"[{i}]" for i in range(len(file.children))]
    for a, b, step in zip(file.children, like.children, steps, strict=True):
        _compare(a, b, path + step)
