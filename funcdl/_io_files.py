"""The file system's side of ``funcdl.io``: the path checked, errors naming the caller's
path rather than a temporary one, what kind of file stands there, the permission bits a
new file gets, and the directory's fsync that makes a rename durable."""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any


def path_arg(where: str, path: Any) -> str:
    """``path`` as a str, or a TypeError / ValueError naming ``where``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike such as pathlib.Path, "
                        f"got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str):  # a PathLike of bytes
        raise TypeError(f"{where}: path must name a file as text, got bytes {name!r}")
    if not name:
        raise ValueError(f"{where}: the path is empty; give a file name such as 'params.npz'")
    if "\0" in name:
        raise ValueError(f"{where}: the path {name!r} holds a NUL character, which no file "
                         f"name can")
    return name


def named_error(e: OSError, what: str, name: str, hint: str = "") -> OSError:
    """``e`` again, of its own class, saying ``what`` for ``name`` (not a temporary)."""
    return type(e)(e.errno, f"{what} {name!r}: {e.strerror}{hint}", name)


def stat_mode(path: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return os.stat(path).st_mode
    return None


def file_kind(mode: int) -> str:
    kinds = [(stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
             (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")]
    return next((word for test, word in kinds if test(mode)), "special file")


def mode_for(mode: int | None) -> int:
    """The existing file's permission bits (``mode``, None for no file), else 0o666 minus
    the umask (read without changing it, which os.umask cannot do), else 0o600 as mkstemp
    made it."""
    if mode is not None:
        return mode & 0o7777
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o600


def fsync_dir(directory: str) -> None:
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
