"""Shared fixtures. Warnings are errors (pyproject.toml), so a NumPy overflow or invalid
value anywhere fails the test that caused it."""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from funcdl import random

# Every property test draws the same examples on every run (hypothesis is pinned), so CI is
# red only for a reason that reproduces: drawn afresh, the conv-stack test once met a
# MaxPool window whose top two values were 3.7e-6 apart, where finite differences cross the
# max's switch point. No example database either: a failure kept in .hypothesis/ must not
# change what the next run checks.
settings.register_profile("funcdl", derandomize=True, database=None)
settings.load_profile("funcdl")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    return load_module(EXAMPLES / f"{name}.py")


def load_module(path: Path) -> ModuleType:
    """Import the script at ``path`` as a module named after its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def key() -> np.ndarray:
    return random.key(0)


def refused(main: Callable[[list[str]], Any], argv: list[str], capsys: Any) -> str:
    """An example's ``main(argv)`` refused while parsing: exit status 2, nothing on stdout
    (nothing ran); returns what argparse wrote on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    return str(captured.err)


@pytest.fixture
def jax64() -> Any:
    """jax with float64 on for one test, as it was after (skipped without jax)."""
    jax = pytest.importorskip("jax")
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", was)


@pytest.fixture(params=["im2col", "offsets"])
def conv_path(request: Any, monkeypatch: Any) -> str:
    """Both ways a convolution runs: one product of the im2col buffer (small buffers; with
    few channels, the channel-major fold), and one kernel offset at a time (large ones),
    forced here on every size."""
    if request.param == "offsets":
        from funcdl.layers import conv
        monkeypatch.setattr(conv, "_COLS_BYTES", 0)
        monkeypatch.setattr(conv, "_FEW_CHANNELS", 0)
    return str(request.param)


# ``make test`` runs pytest as one process per core (tests/run_shards.py), each with
# ``--shard I/N``. A shard takes whole test files, so each process imports, and pytest
# rewrites the asserts of, only its own: that was 11 of the 21 s each shard spent collecting.
# The split is the longest-first greedy one over each file's seconds in tests/durations.json
# (a file missing there counts as the median), so it depends only on the files in tests/ and
# that record, and every shard computes the same split; each writes the split's digest and
# its own count where FUNCDL_SHARD_DIGEST says, and the runner checks the digests agree. A
# file named on the command line is collected by every shard and kept by its own; a test
# outside tests/ goes by crc32 of its id. ``run_shards.py --store-durations`` renews the
# record (--store-durations=PATH here: this process's seconds per file, collection included).
TESTS = Path(__file__).resolve().parent
DURATIONS = TESTS / "durations.json"
_SHARD = pytest.StashKey[tuple[int, int, dict[str, int]]]()
_SPENT: collections.Counter[str] = collections.Counter()


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run only shard I (0-based) of N, whole test files split by their "
                          "seconds in tests/durations.json (tests/run_shards.py starts the N "
                          "processes)")
    parser.addoption("--store-durations", default=None, metavar="PATH",
                     help="write the seconds each test file took here (collection included), "
                          "as JSON")


def pytest_configure(config: Any) -> None:
    spec = config.getoption("--shard")
    if spec is not None:
        i, n = shard_spec(spec)
        config.stash[_SHARD] = (i, n, file_shards(n))


def file_shards(n: int, tests: Path = TESTS, record: Path = DURATIONS) -> dict[str, int]:
    """Each test file of ``tests`` and its shard of ``n``: heaviest first, each to the shard
    with the fewest seconds so far (ties to the lowest), by the seconds in ``record``."""
    names = sorted(path.name for path in tests.glob("test_*.py"))
    known = json.loads(record.read_text()) if record.exists() else {}
    seen = [float(known[name]) for name in names if name in known]
    weight = {name: float(known.get(name, statistics.median(seen) if seen else 1.0))
              for name in names}
    loads, shards = [0.0] * n, {}
    for name in sorted(names, key=lambda name: (-weight[name], name)):
        shards[name] = loads.index(min(loads))
        loads[shards[name]] += weight[name]
    return shards


def pytest_ignore_collect(collection_path: Path, config: Any) -> bool | None:
    if _SHARD not in config.stash:
        return None
    i, _, shards = config.stash[_SHARD]
    if collection_path.parent == TESTS and shards.get(collection_path.name, i) != i:
        return True  # another shard's file: not even imported here
    return None


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if _SHARD not in config.stash:
        return
    i, n, shards = config.stash[_SHARD]

    def owner(item: Any) -> int:
        path = Path(item.path)
        if path.parent == TESTS and path.name in shards:
            return shards[path.name]
        return zlib.crc32(item.nodeid.encode()) % n

    mine = [item for item in items if owner(item) == i]
    digest = os.environ.get("FUNCDL_SHARD_DIGEST")
    if digest:  # the split, and the ids split by crc32, which every shard must see alike
        loose = sorted(item.nodeid for item in items if Path(item.path).parent != TESTS)
        split = json.dumps([sorted(shards.items()), loose]).encode()
        Path(digest).write_text(f"{len(mine)} {hashlib.sha256(split).hexdigest()}")
    config.hook.pytest_deselected(items=[item for item in items if owner(item) != i])
    items[:] = mine


def shard_spec(spec: str) -> tuple[int, int]:
    """``'I/N'`` as ``(I, N)``, 0 <= I < N, or a usage error naming the option."""
    try:
        i, n = (int(part) for part in spec.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise pytest.UsageError(f"--shard expects I/N with 0 <= I < N (shard I of N), got "
                                f"{spec!r}")
    return i, n


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: Any) -> Any:
    start = time.perf_counter()
    report = yield
    if isinstance(collector, pytest.Module):  # importing the file and making its items
        _SPENT[collector.path.name] += time.perf_counter() - start
    return report


_DRAW_NAMES = ("RNG", "_RNG", "rng")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: Any) -> Any:
    """Times each test for --store-durations, and gives it its module's generator
    (``RNG = np.random.default_rng(7)``) seeded afresh from its id: what a test draws then
    does not depend on which tests ran before it in that process (``-k``, a shard of ``make
    test``, a test added above it). A hook, not an autouse fixture: 0.3 ms less a test. Unlike
    that fixture's, the reseed comes before the module- or session-scoped fixtures that the
    test's setup starts, so such a fixture must draw from a generator of its own (none in
    tests/ reads a module's RNG)."""
    start = time.perf_counter()  # setup, call, teardown and pytest's reporting around them
    module, saved = getattr(item, "module", None), {}
    for name in _DRAW_NAMES:
        if isinstance(getattr(module, name, None), np.random.Generator):
            saved[name] = getattr(module, name)
            setattr(module, name, np.random.default_rng(zlib.crc32(item.nodeid.encode())))
    try:
        return (yield)
    finally:
        for name, generator in saved.items():
            setattr(module, name, generator)
        _SPENT[Path(item.path).name] += time.perf_counter() - start


def pytest_sessionfinish(session: Any) -> None:
    path = session.config.getoption("--store-durations")
    if path:
        Path(path).write_text(json.dumps({name: round(seconds, 3) for name, seconds in
                                          sorted(_SPENT.items())}))
