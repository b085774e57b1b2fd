"""Shared fixtures. Warnings are errors (pyproject.toml), so a NumPy overflow or invalid
value anywhere fails the test that caused it."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
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


@pytest.fixture(autouse=True)
def _own_draws(request: Any) -> Any:
    """A test module's generator (``RNG = np.random.default_rng(7)``) seeded afresh for each
    test from the test's id: what a test draws from it then does not depend on which tests ran
    before it in that process (``-k``, a shard of ``make test``, a test added above it)."""
    module, saved = request.module, {}
    for name in ("RNG", "_RNG", "rng"):
        if isinstance(getattr(module, name, None), np.random.Generator):
            saved[name] = getattr(module, name)
            setattr(module, name, np.random.default_rng(zlib.crc32(request.node.nodeid.encode())))
    yield
    for name, generator in saved.items():
        setattr(module, name, generator)


# ``make test`` runs pytest as one process per core (tests/run_shards.py), each with
# ``--shard I/N``: a test belongs to shard crc32(nodeid) % N, which depends only on its id, so
# the shards split the suite exactly whatever order each collected it in. Each shard writes a
# digest of every id it collected where FUNCDL_SHARD_DIGEST says; the runner compares them,
# so ids that differ between processes (a set's order in a parametrisation) fail the run
# instead of leaving tests in no shard.
def pytest_addoption(parser: Any) -> None:
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run only shard I (0-based) of N: the tests whose crc32(nodeid) "
                          "% N == I (tests/run_shards.py starts the N processes)")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    spec = config.getoption("--shard")
    if spec is None:
        return
    i, n = shard_spec(spec)
    digest = os.environ.get("FUNCDL_SHARD_DIGEST")
    if digest:
        ids = "\n".join(sorted(item.nodeid for item in items)).encode()
        Path(digest).write_text(f"{len(items)} {hashlib.sha256(ids).hexdigest()}")
    mine: list[Any] = []
    others: list[Any] = []
    for item in items:
        (mine if zlib.crc32(item.nodeid.encode()) % n == i else others).append(item)
    config.hook.pytest_deselected(items=others)
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
