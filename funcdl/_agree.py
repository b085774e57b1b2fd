"""What opens every collective of ``funcdl.parallel``: the communicator, resolved and
checked (``resolve``: None for a single process); then the agreement, a digest of each
rank's tree (structure, shapes, dtypes) compared over ranks with one ``Allgather`` of a few
ints, so that a mismatch raises the same ValueError on every rank, naming the first
differing path, instead of hanging or summing garbage; and the cheap per-call signature of
a tree that finds its layout again without hashing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from funcdl import tree as pytree
from funcdl._args import is_int, is_masked
from funcdl._treenodes import children_of as pytree_node
from funcdl._treenodes import sorted_keys

Tree = Any
Comm = Any


# ---------------------------------------------------------------------------- communicators

# Set by MPI launchers (MPICH/Intel MPI/Slurm PMI, Open MPI, MVAPICH) in every rank.
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# Each rank's own number, from those launchers, PMIx, and Slurm's srun (which numbers its
# tasks with or without an MPI plugin): above 0, not the one process of a world of one.
_LAUNCHER_RANKS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK",
                   "SLURM_PROCID")
# Any of these in the environment: a launcher or a batch system may have started us (PMI
# and PMIx: MPICH's and Intel MPI's hydra, MS-MPI, Flux; Open MPI; MVAPICH; Intel MPI;
# Slurm, whose PMI-1 library reads SLURM_PROCID alone; Cray's ALPS and PALS; IBM's jsrun;
# LSF; PBS). Asking MPI when no launcher started us costs only MPI's start-up, so the
# list is broad: a job that is one process under Slurm or PBS asks MPI, as before.
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "MV2_", "HYDRA_", "I_MPI_", "MPI_LOCAL",
                      "SLURM_", "ALPS_", "PALS_", "FLUX_", "JSM_", "LSB_", "PBS_")


def launched() -> bool:
    """Whether a launcher or a batch system may have started this process (one of their
    variables is set), or ``FUNCDL_MPI=1`` asks for MPI regardless."""
    return (os.environ.get("FUNCDL_MPI") == "1"
            or any(k.startswith(_LAUNCHER_PREFIXES) for k in os.environ))


def mpi() -> Any:
    """mpi4py's MPI module, imported at the first collective (``import funcdl`` never does)."""
    return importlib.import_module("mpi4py.MPI")


@functools.cache
def world() -> Comm | None:
    """MPI.COMM_WORLD; or None, one process: when no launcher's or batch system's variable
    is set and the script has not imported mpi4py.MPI itself (then MPI is never started;
    ``FUNCDL_MPI=1`` in the environment makes it ask MPI all the same), or when mpi4py
    cannot be imported and nothing says there are other ranks. Else a ValueError, as the
    ranks could not talk: a launcher's variable reports more than one rank, or a rank
    above 0 (srun's SLURM_PROCID), or ``FUNCDL_MPI=1`` asked for MPI; each rank would
    otherwise train alone as rank 0, saving over the others' checkpoints."""
    if "mpi4py.MPI" not in sys.modules and not launched():
        return None
    try:
        return mpi().COMM_WORLD
    except (ImportError, RuntimeError) as err:  # no mpi4py, or no MPI library for it
        fix = (f"mpi4py cannot be imported ({err}), so the ranks cannot communicate: pip "
               f"install 'funcdl[mpi]' (mpi4py and an MPI runtime), or run a single process")
        ranks = max(_numbers(_LAUNCHER_SIZES).values(), default=1)
        if ranks > 1:
            raise ValueError(f"this process is one of {ranks} MPI ranks, but {fix} without "
                             f"mpiexec") from err
        above = [f"{v}={i}" for v, i in _numbers(_LAUNCHER_RANKS).items() if i > 0]
        if above:
            raise ValueError(f"this process is one of several ranks ({above[0]}), but {fix} "
                             f"without a launcher") from err
        if os.environ.get("FUNCDL_MPI") == "1":
            raise ValueError(f"FUNCDL_MPI=1 in the environment asks for MPI, but {fix}: "
                             f"unset FUNCDL_MPI") from err
        return None


def _numbers(names: tuple[str, ...]) -> dict[str, int]:
    """The variables of ``names`` set in the environment to a whole number, read as one."""
    values = {v: os.environ.get(v, "").strip() for v in names}
    return {v: int(s) for v, s in values.items() if s.isdigit()}


def resolve(comm: Comm | None, fn: str) -> Comm | None:
    """The communicator to talk over, or None when this process is the only rank."""
    if comm is None:
        try:
            comm = world()
        except ValueError as err:
            raise ValueError(f"parallel.{fn}: {err}") from err.__cause__
        return comm if comm is not None and comm.Get_size() > 1 else None
    # the size is all a one-rank communicator is asked: no other call, no other method
    if isinstance(comm, type) or not callable(getattr(comm, "Get_size", None)):
        raise _not_a_comm(fn, comm)
    size = _size(comm, fn)
    if size > 1 and not all(hasattr(comm, m) for m in ("Get_rank", "Allreduce", "Allgather")):
        raise _not_a_comm(fn, comm)
    return comm if size > 1 else None


def _not_a_comm(fn: str, comm: Any) -> TypeError:
    got = f"the class {comm.__name__}" if isinstance(comm, type) else type(comm).__name__
    return TypeError(f"parallel.{fn}: comm must be an mpi4py communicator such as "
                     f"MPI.COMM_WORLD (or None for it), got {got}")


def _size(comm: Comm, fn: str) -> int:
    """``comm.Get_size()``, an int >= 1, or an error naming ``fn``: MPI.COMM_NULL or a freed
    communicator raises in mpi4py (MPI's error stack: its first line is kept), and a
    stand-in may answer anything."""
    try:
        size = comm.Get_size()
    except Exception as err:
        first = (str(err).splitlines() or [""])[0]
        raise ValueError(f"parallel.{fn}: comm.Get_size() failed, so comm cannot be used (is "
                         f"it MPI.COMM_NULL, or freed?): {type(err).__name__}: {first}") from err
    if not is_int(size) or size < 1:
        raise TypeError(f"parallel.{fn}: comm.Get_size() gave {size!r}, not a rank count "
                        f"(an int >= 1): comm must be an mpi4py communicator such as "
                        f"MPI.COMM_WORLD")
    return int(size)


# ---------------------------------------------------------------------------- agreement

def describe(t: Tree) -> list[tuple[str, str]]:
    """``(path, description)`` of every node in preorder. Two trees first differ at their
    first differing entry, and up to it their paths agree, so that path names the place."""
    out: list[tuple[str, str]] = []
    _describe(pytree.structure(t), "", iter(pytree.leaves(t)), out)
    return out


def _describe(td: pytree.TreeDef, path: str, leaves: Iterator[Any],
              out: list[tuple[str, str]]) -> None:
    """describe's walk (a module function: one nested in describe, calling itself, would be
    a reference cycle at every call)."""
    n, steps = len(td.children), [f"[{i}]" for i in range(len(td.children))]
    if td.kind == "leaf":
        leaf = next(leaves)
        a, kind = np.asarray(leaf), "masked array" if is_masked(leaf) else "leaf"
        what = f"a {kind} of shape {a.shape} and dtype {a.dtype}"
    elif td.kind == "dict":
        what, steps = f"a dict with keys {list(td.meta)}", [f"[{k!r}]" for k in td.meta]
    elif td.kind == "namedtuple":
        what, steps = f"a {td.meta.__name__}", [f".{f}" for f in td.meta._fields]
    else:
        what = "None" if td.kind == "none" else f"a {td.kind} of length {n}"
    out.append((path, what))
    for child, step in zip(td.children, steps):
        _describe(child, path + step, leaves, out)


def digest(entries: list[tuple[str, str]]) -> int:
    h = hashlib.blake2b(repr(entries).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little", signed=True)


def signature(t: Tree) -> tuple[list[Any], tuple[Any, ...]]:
    """``(tree.leaves(t), key)`` in one walk: the key, flat and hashable in C, is equal for
    two trees exactly when their structures, leaf shapes and leaf dtypes are. It lists the
    nodes in preorder, a container as its type then its length (a dict: its sorted keys),
    a leaf as its shape (a tuple, never a type) then its dtype, so it reads back one way."""
    leaves: list[Any] = []
    key: list[Any] = []
    _sign(t, leaves, key)
    return leaves, tuple(key)


def _sign(t: Tree, leaves: list[Any], key: list[Any]) -> None:
    tp = type(t)
    if tp is np.ndarray:
        leaves.append(t)
        key += (t.shape, t.dtype.str)
    elif tp is tuple or tp is list:
        key += (tp, len(t))
        for c in t:
            if type(c) is np.ndarray:  # array children here, saving a call each
                leaves.append(c)
                key += (c.shape, c.dtype.str)
            else:
                _sign(c, leaves, key)
    elif tp is dict:
        keys = sorted_keys(t)
        key += (tp, tuple(keys))
        for k in keys:
            c = t[k]
            if type(c) is np.ndarray:
                leaves.append(c)
                key += (c.shape, c.dtype.str)
            else:
                _sign(c, leaves, key)
    elif t is None:
        key.append(None)
    else:
        node = pytree_node(t)
        if node is None:
            a = np.asarray(t)
            leaves.append(t)  # a masked array's dtype marked: its layout refuses it
            key += (a.shape, "ma" + a.dtype.str if is_masked(t) else a.dtype.str)
        else:  # a NamedTuple or a dict subclass, as tree.leaves walks them
            key += (tp, tuple(node[1]) if node[0] == "dict" else len(node[2]))
            for c in node[2]:
                _sign(c, leaves, key)


# The root a rank passes when its ``root`` is not an int: the agreement then fails on every
# rank alike, where raising on that rank alone would leave the others waiting in the Bcast.
INT_BOUND = 2 ** 62  # the ints an agreement carries lie within ±INT_BOUND (int64, spared)
NOT_AN_INT = -INT_BOUND


def root_arg(root: Any) -> int:
    """``root`` as an int, or NOT_AN_INT for a float, a bool, None, a string..."""
    return int(root) if is_int(root) and abs(int(root)) < INT_BOUND else NOT_AN_INT


@functools.cache
def _called(fn: str) -> int:
    """The digest of a collective's name, mixed into the tree's: ranks calling different
    collectives on one tree (a user's bug) then differ there, and raise, where each would
    otherwise go on to its own exchange and wait for the others for ever."""
    return digest([("parallel", fn)])


def agree(comm: Comm, tree_digest: int, t: Tree, fn: str, root: int = 0, weight: int = 0,
          flags: int = 0) -> list[list[int]]:
    """Collective: compare ``(digest, root)`` over ranks, the digest of the tree and of
    ``fn``, the collective called; return every rank's ``[digest, root, weight, flags]`` as
    rows. On any difference every rank raises the same ValueError (the descriptions are
    gathered only then). ``fn`` may name how the function was called, ``"f(option=...)"``,
    a collective apart from ``f``'s own; errors open with ``parallel.f`` still."""
    size = comm.Get_size()
    gathered = np.empty((size, 4), np.int64)
    comm.Allgather(np.array([tree_digest ^ _called(fn), root, weight, flags], np.int64),
                   gathered)
    every: list[list[int]] = gathered.tolist()  # a few Python ints: faster than NumPy here
    called, fn = fn, fn.partition("(")[0]
    roots = [row[1] for row in every]
    if NOT_AN_INT in roots:
        bad = [r for r, x in enumerate(roots) if x == NOT_AN_INT]
        raise TypeError(f"parallel.{fn}: root must be an int, the rank that holds the tree; "
                        f"rank(s) {bad} passed something else. Pass the same int root on "
                        f"every rank")
    if any(r != root for r in roots):
        raise ValueError(f"parallel.{fn}: the ranks passed different roots {roots}; "
                         f"pass the same root on every rank")
    if not 0 <= root < size:
        raise ValueError(f"parallel.{fn}: root {root} is not a rank of this {size}-rank "
                         f"communicator")
    digests = [row[0] for row in every]
    if digests.count(digests[root]) == size:
        return every
    other = next(r for r, d in enumerate(digests) if d != digests[root])
    calls = comm.allgather((called, describe(t)))
    if calls[other][0] != calls[root][0]:
        raise ValueError(
            f"parallel.{fn}: rank {root} called parallel.{calls[root][0]} where rank {other} "
            f"called parallel.{calls[other][0]}; every rank must call the same collectives "
            f"in the same order (a rank that skips or adds one leaves the others waiting)")
    ref, odd = calls[root][1], calls[other][1]
    i = next((i for i, (a, b) in enumerate(zip(ref, odd)) if a != b), min(len(ref), len(odd)))
    path = (ref[i] if i < len(ref) else odd[i])[0] or "the root"
    mine = ref[i][1] if i < len(ref) else "nothing"
    theirs = odd[i][1] if i < len(odd) else "nothing"
    raise ValueError(
        f"parallel.{fn}: the trees differ across ranks at {path}: rank {root} has {mine}, "
        f"rank {other} has {theirs}. Every rank must pass a tree of the same structure, "
        f"shapes and dtypes (build it with the same code on every rank)")
