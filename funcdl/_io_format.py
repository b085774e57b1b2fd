"""The inside of a ``funcdl.io`` archive: the treedef header (JSON as a uint8 array under
``__funcdl_treedef__``, with a format version), encoded and decoded, and the reading of one
``.npy`` entry, checked against what the zip member holds before NumPy allocates for it.

Everything read is checked, as a file may be truncated, corrupted or written by hand: any
defect is a ``Corrupt`` (a ValueError that ``io.load`` re-raises naming the file).
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import math
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.typing import NDArray

from funcdl._locks import ForkSafeLock
from funcdl.tree import TreeDef

# NumPy parses a .npy header with ast.literal_eval, and CPython 3.11's AST constructor keeps
# its recursion depth per interpreter, not per thread: two threads loading at once raised
# "SystemError: AST constructor recursion depth mismatch" (tests/test_threads_review.py)
_HEADER_LOCK = ForkSafeLock()

TREEDEF_KEY = "__funcdl_treedef__"
FORMAT = "funcdl.io"
VERSION = 1
_STEPS = ("leaf", "none", "tuple", "list", "dict", "namedtuple")
_KINDS = ("array", "numpy", "int", "float", "bool", "complex")
# Containers nest at most this deep in a file: save, load and funcdl.tree walk trees
# recursively, a few Python frames a level, under Python's recursion limit (1000 frames).
MAX_DEPTH = 100
_PIECE = 1 << 18  # load reads an entry's data 256 KiB at a time, as NumPy's read_array


class Corrupt(ValueError):
    """A file that is not a well-formed funcdl archive (re-raised naming the path)."""


_NAMEDTUPLES: dict[tuple[str, tuple[str, ...]], type] = {}


def namedtuple(name: str, fields: tuple[str, ...]) -> type:
    # One class per (name, fields), so trees loaded from several files share a structure;
    # setdefault, not get-then-set: two threads loading at once must not make two classes
    cls = _NAMEDTUPLES.get((name, fields))
    if cls is None:
        made = collections.namedtuple(name, fields)  # type: ignore[misc]

        # pickled by value, as (name, fields, values): the class lives in no module a
        # process pool's worker could import it from (a loaded state in a sweep's result)
        def reduce(self: Any) -> tuple[Any, ...]:
            return _rebuilt, (name, fields, tuple(self))

        setattr(made, "__reduce__", reduce)  # noqa: B010  (mypy refuses assigning a method)
        cls = _NAMEDTUPLES.setdefault((name, fields), made)
    return cls


def _rebuilt(name: str, fields: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """A loaded NamedTuple of ``namedtuple(name, fields)`` again, as unpickled."""
    return namedtuple(name, fields)(*values)


# ---------------------------------------------------------------------------- header

def encode_header(td: TreeDef, kinds: list[str]) -> NDArray[np.uint8]:
    import json  # here and below, not at the top: only a save or a load needs it

    header = {"format": FORMAT, "version": VERSION, "treedef": _encode_def(td),
              "leaves": kinds}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return np.frombuffer(raw, dtype=np.uint8)


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


def decode_header(raw: Any) -> tuple[TreeDef, list[str]]:
    """The treedef and the leaf kinds of a header entry, or a Corrupt saying what is wrong."""
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise Corrupt(f"malformed {TREEDEF_KEY!r} entry")
    import json

    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError:
        raise Corrupt(f"malformed {TREEDEF_KEY!r} entry (nested too deeply)") from None
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Corrupt(f"malformed {TREEDEF_KEY!r} entry ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise Corrupt(f"malformed {TREEDEF_KEY!r} entry (no format tag)")
    version = header.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise Corrupt(f"format version {version!r}; this funcdl reads versions 1 to "
                      f"{VERSION} (was the file written by a newer funcdl?)")
    if "treedef" not in header or "leaves" not in header:
        raise Corrupt(f"malformed {TREEDEF_KEY!r} entry (no treedef)")
    td = _decode_def(header["treedef"])  # at most MAX_DEPTH deep: no recursion limit
    kinds = header["leaves"]
    if not isinstance(kinds, list) or len(kinds) != td.num_leaves:
        raise Corrupt("malformed treedef: leaf list does not match the structure")
    return td, kinds


def _decode_def(node: Any, level: int = 0) -> TreeDef:
    if not isinstance(node, dict) or node.get("type") not in _STEPS:
        raise Corrupt("malformed treedef: unknown node")
    kind = node["type"]
    if kind in ("leaf", "none"):
        return TreeDef(kind)
    if level == MAX_DEPTH:
        raise Corrupt(f"malformed treedef: containers nested more than {MAX_DEPTH} deep, "
                      f"which io.save never writes")
    children = node.get("children")
    if not isinstance(children, list):
        raise Corrupt(f"malformed treedef: {kind} node without children")
    kids = tuple(_decode_def(c, level + 1) for c in children)
    meta: Any = None
    if kind == "dict":
        keys = node.get("keys")
        if not _sorted_keys(keys, len(kids)):
            raise Corrupt("malformed treedef: bad dict keys (save writes them sorted, "
                          "distinct, and all str, all int or all bool)")
        meta = tuple(keys or ())
    elif kind == "namedtuple":
        name, fields = node.get("name"), node.get("fields")
        if not isinstance(name, str) or not isinstance(fields, list) \
                or len(fields) != len(kids) or not all(isinstance(f, str) for f in fields):
            raise Corrupt("malformed treedef: bad NamedTuple record")
        try:
            meta = namedtuple(name, tuple(fields))
        except ValueError as e:  # not identifiers, keywords, repeated or _-led fields
            raise Corrupt(f"malformed treedef: NamedTuple {name[:40]!r}: {e}") from None
    return TreeDef(kind, meta, kids)


def _sorted_keys(keys: Any, n: int) -> bool:
    """Whether ``keys`` are n dict keys as save writes them: else the tree could not be
    walked (str mixed with int), or its leaves would not be in the file's order."""
    if not isinstance(keys, list) or len(keys) != n:
        return False
    types = {type(k) for k in keys}
    return (types <= {str} or types <= {int} or types <= {bool}) and all(
        a < b for a, b in itertools.pairwise(keys))


# ---------------------------------------------------------------------------- entries

def read_entry(data: NpzFile, name: str, archive: int) -> NDArray[Any]:
    """Entry ``name`` of an archive ``archive`` bytes long, open, after checking that it is
    a .npy array, not an object (pickled) one, and that its member holds the bytes its
    header declares: a tampered shape would have NumPy allocate terabytes before it found
    out. The data is read right after the header it was checked by (not through
    ``data[name]``, which would parse the header again)."""
    import zipfile

    zf = data.zip
    assert zf is not None  # open: read_entry runs inside io.load's `with data:`
    for member in (f"{name}.npy", name):  # as NpzFile finds it: with .npy, or without
        with contextlib.suppress(KeyError):
            info = zf.getinfo(member)
            break
    else:
        raise Corrupt(f"missing entry {name!r}")
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            raise Corrupt(f"entry {name!r} is not a .npy array") from None
        # (3, 0) frames its header as (2, 0) does (it allows utf-8 field names, which no
        # array funcdl writes has)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
                (3, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise Corrupt(f"entry {name!r} has .npy format version {version}, which funcdl.io "
                          f"does not read")
        try:
            with _HEADER_LOCK:
                shape, fortran, dtype = read(f)
        except ValueError as e:
            raise Corrupt(f"entry {name!r} has a malformed .npy header ({e})") from None
        if dtype.hasobject:
            raise Corrupt(f"entry {name!r} is an object (pickled) array, which funcdl.io "
                          f"never loads")
        # the member's sizes come from the archive's directory, which a forged file sets
        # at will: bound them by the archive's own size (deflate expands at most ~1032x)
        held = info.file_size - f.tell()
        if info.compress_type == zipfile.ZIP_STORED:  # read up to compress_size only
            held = min(held, info.compress_size - f.tell(), archive - info.header_offset)
        else:
            held = min(held, 1032 * min(info.compress_size, archive))
        if min(shape, default=0) < 0:
            raise Corrupt(f"entry {name!r} declares shape {shape}: corrupted file")
        count = math.prod(shape)
        need = count * dtype.itemsize
        # exactly the rest of the member: a header whose shape lost a digit would read a
        # prefix of the data, and the zip's CRC is checked only on reaching the member's end
        if need > held or need != info.file_size - f.tell():
            raise Corrupt(f"entry {name!r} declares shape {shape} of {dtype} ({need} "
                          f"bytes) but holds {max(held, 0)}: truncated or corrupted file")
        try:
            raw = np.empty(need, np.uint8)  # not zero-filled, as bytearray(need) would be
        except MemoryError:  # what the bounds above let through: still the file's fault
            raise Corrupt(f"entry {name!r} declares more data than memory holds: truncated "
                          f"or corrupted file") from None
        assert isinstance(f, io.BufferedIOBase)  # a ZipExtFile, which typeshed calls IO
        view, got = raw.data, 0
        while got < need:  # in pieces: ZipExtFile.readinto reads all it is asked into a copy
            n = f.readinto(view[got:got + _PIECE])
            if not n:
                break
            got += n
        if got != need or f.read(1):  # the read at the end checks the CRC
            raise Corrupt(f"entry {name!r} holds {got} of its {need} bytes: truncated or "
                          f"corrupted file")
    # writable, as np.load's arrays (raw is ours); no bytes to view for an itemsize of 0
    flat = raw.view(dtype) if dtype.itemsize else np.empty(count, dtype)
    return flat.reshape(shape, order="F" if fortran else "C")


def leaf_value(kind: Any, a: NDArray[Any], i: int) -> Any:
    if kind == "array":
        return a
    if kind not in _KINDS or a.ndim != 0:
        raise Corrupt(f"malformed treedef: leaf_{i} has kind {kind!r} and shape {a.shape}")
    x = a[()]
    if kind == "numpy":
        return x
    expected = {"int": "iu", "float": "f", "bool": "b", "complex": "c"}[kind]
    if a.dtype.kind not in expected:
        raise Corrupt(f"malformed treedef: leaf_{i} is a Python {kind} stored as {a.dtype}")
    return {"int": int, "float": float, "bool": bool, "complex": complex}[kind](x)
