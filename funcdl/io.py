"""Safe save / load of pytrees as ``.npz`` files: atomic writes, never unpickled.

``save(path, tree)`` writes every leaf as an array (``leaf_0``, ``leaf_1``, ... in flattening
order) and the tree structure as JSON (a uint8 array under ``__funcdl_treedef__``, with a
format version). ``load(path)`` rebuilds the tree; ``load(path, like=params)`` rebuilds it
with ``like``'s own NamedTuple classes and checks structure, shapes and dtypes first
(a dict subclass such as OrderedDict comes back a dict without ``like``, and as ``like``'s
type with it, as ``funcdl.tree`` rebuilds it).

What survives a round trip: dict (str, int or bool keys: one type per dict), list, tuple,
None, NamedTuple (class name and field names; without ``like`` it comes back as a
``collections.namedtuple`` of that name), NumPy arrays (values, shape, dtype), NumPy
scalars, and Python int / float / bool / complex (returned as Python scalars). Object arrays
are refused: files are read with ``allow_pickle=False`` only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import zlib
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.typing import NDArray

from funcdl import tree as pytree
from funcdl._args import foreign_dtype
from funcdl._io_files import file_kind, fsync_dir, mode_for, named_error, path_arg, stat_mode
from funcdl._io_format import (
    MAX_DEPTH,
    TREEDEF_KEY,
    Corrupt,
    decode_header,
    encode_header,
    leaf_value,
    namedtuple,
    read_entry,
)
from funcdl.tree import TreeDef

__all__ = ["load", "save"]

Tree = Any


# ---------------------------------------------------------------------------- save

def save(path: str | os.PathLike[str], tree: Tree) -> None:
    """Write ``tree`` to ``path`` (exactly that name, no suffix added) as an ``.npz``.

    Atomic: the archive is written to a temporary file in the same directory, flushed and
    fsynced, then renamed onto ``path``. If anything fails, the temporary file is removed
    and a file already at ``path`` is left untouched. A symlink at ``path`` is followed;
    an existing file keeps its permission bits.

    Raises:
        FileNotFoundError: the directory of ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory, or ends in a path separator.
        TypeError: a dict key that is not str, int or bool (or keys of mixed types), a leaf
            that is not a NumPy array, NumPy scalar or Python int / float / bool / complex,
            an object-dtype leaf, or a masked array (its mask would be lost); the message
            names the path. Nothing is written then. Also a ``path`` that is not a str or
            PathLike (ValueError: an empty one, or one naming a device, FIFO or socket,
            which the rename would replace; or a tree whose containers nest more than 100
            deep).
    """
    import tempfile  # here, not at the top: `import funcdl` stays fast (tempfile pulls
    # in shutil, random, bz2 and lzma), and only a save needs it
    name = path_arg("io.save", path)
    arrays, header = _encode(tree)
    entries: dict[str, Any] = {TREEDEF_KEY: header, **arrays}
    target = os.path.realpath(name)
    mode = stat_mode(target)
    if mode is not None and stat.S_ISDIR(mode):  # else the rename would name the temporary
        raise IsADirectoryError(errno.EISDIR, f"io.save: {name!r} is a directory; give a "
                                f"file name in it, e.g. {os.path.join(name, 'params.npz')!r}",
                                name)
    if name.endswith((os.sep, os.altsep or os.sep)):  # realpath dropped it: 'p.npz/'
        raise IsADirectoryError(errno.EISDIR, f"io.save: {name!r} ends in a separator, so it "
                                f"names a directory; give a file name", name)
    if mode is not None and not stat.S_ISREG(mode):  # the rename would replace /dev/null
        raise ValueError(f"io.save: {name!r} is a {file_kind(mode)}, not a regular file; save "
                         f"writes a file beside it and renames it over the path, which would "
                         f"replace the {file_kind(mode)}: give a regular file's path")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):  # else mkstemp would name its temporary file instead
        raise FileNotFoundError(errno.ENOENT, f"io.save: no directory {directory!r} to "
                                f"write {os.path.basename(target)!r} into (create it "
                                f"first: os.makedirs(path, exist_ok=True))", directory)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)[:64]}.",
                                   suffix=".tmp", dir=directory)
    except OSError as e:  # it named its temporary file, which the caller never asked for;
        # and its errno is about that file (ENOENT for /proc/version, which exists)
        raise type(e)(e.errno, f"io.save: cannot write {name!r}: creating the temporary file "
                      f"beside it in {directory!r} failed ({e.strerror}); save writes there "
                      f"first, then renames it over the path, so the directory must be "
                      f"writable: save into a directory you can write to", name) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode_for(mode))
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:  # the rename: a name too long
            raise named_error(e, "io.save: cannot write", name) from None
        raise
    fsync_dir(directory)


def _encode(t: Tree) -> tuple[dict[str, NDArray[Any]], NDArray[np.uint8]]:
    """The leaf arrays and the JSON header, after refusing anything load could not give
    back."""
    _check_keys(t, "", 0)
    arrays: dict[str, NDArray[Any]] = {}
    kinds: list[str] = []
    for i, (path, leaf) in enumerate(pytree.leaves_with_path(t)):
        kind, a = _leaf_array(leaf, path)
        arrays[f"leaf_{i}"] = a
        kinds.append(kind)
    return arrays, encode_header(pytree.structure(t), kinds)


def _where(path: str) -> str:
    return path or "the root"


def _check_keys(t: Tree, path: str, level: int) -> None:
    """Refuse what load could not rebuild, naming its path: dict keys that are not str or
    int, or mixed (pytree.structure sorts them), NamedTuples load cannot remake, and
    containers nested more than MAX_DEPTH deep (``level``: the containers above ``t``; a
    tree that contains itself ends here too, before any recursion limit)."""
    if isinstance(t, (dict, list, tuple)) and level == MAX_DEPTH:
        raise ValueError(f"io.save: the tree's containers nest more than {MAX_DEPTH} deep; "
                         f"io files hold at most {MAX_DEPTH} levels (flatten the nesting, "
                         f"e.g. into a dict with path-like keys)")
    if isinstance(t, dict):
        bad = [k for k in t if type(k) not in (str, int, bool)]
        if bad:
            raise TypeError(
                f"io.save: dict keys must be str, int or bool, got {type(bad[0]).__name__} "
                f"key {bad[0]!r} at {_where(path)}")
        if len({type(k) for k in t}) > 1:
            kinds = " and ".join(sorted({type(k).__name__ for k in t}))
            raise TypeError(f"io.save: the dict at {_where(path)} mixes {kinds} keys; its "
                            f"keys must be of one type (optim.partition's labels, e.g.)")
        for k in sorted(t):  # the first bad path in the order trees go, as other errors
            _check_keys(t[k], f"{path}[{k!r}]", level + 1)
    elif isinstance(t, (list, tuple)):
        fields = getattr(type(t), "_fields", None)
        if fields:
            try:  # what load will build: refuse now what it could not
                namedtuple(type(t).__name__, tuple(fields))
            except (TypeError, ValueError) as e:
                raise ValueError(f"io.save: the NamedTuple {type(t).__name__} at "
                                 f"{_where(path)} cannot be loaded back: {e}") from None
        steps = [f".{f}" for f in fields] if fields else [f"[{i}]" for i in range(len(t))]
        for v, step in zip(t, steps, strict=True):
            _check_keys(v, path + step, level + 1)


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
    if foreign_dtype(a.dtype):
        # the .npz header records ml_dtypes' bfloat16 as raw bytes (|V2), which would load
        # back as bytes, not numbers
        raise TypeError(f"io.save: the leaf at {_where(path)} has dtype {a.dtype}, which "
                        f"funcdl does not support and .npz cannot store as numbers (it would "
                        f"load back as raw bytes); cast it to float32 (leaf.astype(np.float32))")
    return kind, a


# ---------------------------------------------------------------------------- load

def load(path: str | os.PathLike[str], like: Tree = None) -> Tree:
    """Read a tree written by ``save``; nothing is ever unpickled.

    Without ``like``, containers are rebuilt from the file (a NamedTuple as a
    ``collections.namedtuple`` of the stored name and fields). With ``like``, the file must
    have ``like``'s structure (NamedTuples matched by class name and fields) and every leaf
    ``like``'s shape and dtype; the result uses ``like``'s NamedTuple classes (and its
    OrderedDicts and defaultdicts, as ``tree.unflatten`` does). Leaves come
    back as they were saved (array, NumPy scalar or Python scalar), never taken from ``like``.

    Raises:
        FileNotFoundError: no file at ``path`` (IsADirectoryError: a directory; other
            OSErrors as the system gives them), named after ``io.load``.
        ValueError: a file that is not a complete funcdl archive (truncated, corrupted, not a
            zip, no treedef entry, an object array inside), not a regular file (a FIFO or a
            device, which could block), or a mismatch with ``like``; the message names the
            file and, for a mismatch, the first differing path and both values.
    """
    import zipfile  # a load's own dependency (json too, in _io_format): see save

    name = path_arg("io.load", path)
    # non-blocking: opening a FIFO with no writer would wait forever; and a terminal's path
    # must not become this process's controlling terminal
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(name, flags)
    except OSError as e:
        raise named_error(e, "io.load: cannot read", name) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, f"io.load: {name!r} is a directory; give "
                                    f"the path of a file written by io.save", name)
        raise ValueError(f"io.load: {name!r} is a {file_kind(mode)}, not a regular file; "
                         f"load reads files written by io.save")
    with os.fdopen(fd, "rb") as f:
        try:
            td, leaves = _read(f)
        except Corrupt as e:
            raise ValueError(f"io.load: {name}: {e}") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error,
                NotImplementedError, RuntimeError) as e:  # the last two: zip features, and
            # a recursion limit met when load is called from deep in the caller's stack
            raise ValueError(f"io.load: {name}: {_explain(e)}") from e
    if like is None:
        return pytree.unflatten(td, leaves)
    try:
        like_def = pytree.structure(like)
    except TypeError as e:  # a dict whose keys cannot be sorted
        raise TypeError(f"io.load: {name}: like: {e}") from None
    try:
        _compare(td, like_def, "")
        out = pytree.unflatten(like_def, [_in_order(x, y) for x, y in zip(
            leaves, pytree.leaves(like), strict=True)])
        pytree.check_same(out, like, ("file", "like"), shapes=True, dtypes=True)
    except ValueError as e:
        raise ValueError(f"io.load: {name}: {e}{_foreign_hint(like)}") from None
    return out


def _in_order(x: Any, like: Any) -> Any:
    """``x`` in ``like``'s byte order where their dtypes differ only in it (a big-endian
    array saved, a native one as ``like``): the same numbers, which the dtype check passes."""
    dx, dl = getattr(x, "dtype", None), getattr(like, "dtype", None)
    same_type = dx is not None and dl is not None and dx.newbyteorder("=") == dl.newbyteorder("=")
    return x.astype(dl) if same_type and dx != dl else x


def _foreign_hint(like: Tree) -> str:
    """What a dtype mismatch means when ``like`` holds a leaf of ml_dtypes' (bfloat16):
    io.save refuses one, and a file of an older io.save holds its raw bytes (|V2)."""
    dts = {np.asarray(x).dtype for x in pytree.leaves(like)}
    bad = sorted((d for d in dts if foreign_dtype(d)), key=str)
    if not bad:
        return ""
    return (f"; like holds {', '.join(map(str, bad))} leaves, which funcdl does not support "
            f"(io.save refuses them): pass like cast to float32; a file of an older io.save "
            f"holds them as raw bytes (|V{bad[0].itemsize}), which leaf.view({bad[0]}) reads "
            f"back")


def _explain(e: BaseException) -> str:
    return f"truncated or corrupted file, or not an .npz archive ({type(e).__name__}: {e})"


def _read(f: Any) -> tuple[TreeDef, list[Any]]:
    magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise Corrupt("a single .npy array, not an .npz archive written by funcdl.io.save")
    if not magic.startswith(b"PK"):
        raise Corrupt("not an .npz archive (no zip signature): truncated or corrupted file, "
                      "or not written by funcdl.io.save")
    size = f.seek(0, os.SEEK_END)  # the archive's bytes, which bound what a member holds
    f.seek(0)
    data = np.load(f, allow_pickle=False)
    if not isinstance(data, NpzFile):  # np.load chose by the same magic bytes
        raise Corrupt("not an .npz archive")
    with data:
        if TREEDEF_KEY not in data.files:
            raise Corrupt(f"no {TREEDEF_KEY!r} entry: not written by funcdl.io.save "
                          f"(entries: {sorted(data.files)[:8]})")
        td, kinds = decode_header(read_entry(data, TREEDEF_KEY, size))
        leaves = [leaf_value(kind, read_entry(data, f"leaf_{i}", size), i)
                  for i, kind in enumerate(kinds)]
    return td, leaves


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
